// bench_flops.c: this machine's float32 fused multiply-add peak, for `make bench`.
//
//   bench_flops [ISA] [passes] [max threads]    (default: best ISA, 7 passes, 2 threads)
//
// Each thread runs many independent multiply-add chains (acc = acc * b + c)
// held in vector registers: enough chains to cover the FMA latency on every
// FMA port, no loads or stores in the loop. The widest instruction set the
// CPU supports is picked at run time (__builtin_cpu_supports on x86-64:
// AVX-512F, then AVX2+FMA, then SSE2 as two separate instructions), NEON
// on arm64, plain C vectors elsewhere; ISA = avx512 | avx2 | sse2 | neon |
// portable forces one. A multiply-add counts as 2 FLOPs. Output, one line per
// thread count, for tests/bench.py to parse:
//
//   flops threads=1 isa=avx2+fma best_GFLOPs=98.10 median_GFLOPs=97.60 passes=7
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#define X86 1
#include <immintrin.h>
#endif
#if defined(__aarch64__)
#include <arm_neon.h>
#endif

#define MAX_THREADS 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A kernel runs `iters` rounds of its chains and returns the sum of the
// accumulators (so nothing can be optimised away); flops_per_iter says how
// many FLOPs one round is.
typedef struct {
    const char *name;
    double (*run)(long iters, float b, float c);
    double flops_per_iter;
} Kernel;

// The chains converge to c / (1 - b): values stay finite and normal.
#define B_VALUE 0.9999999f
#define C_VALUE 1e-7f

// The chains are separate named variables (not an array) so they stay in
// registers: CHAINS12 / CHAINS16 apply a macro to each chain's index.
#define CHAINS12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define CHAINS16(X) CHAINS12(X) X(12) X(13) X(14) X(15)

#ifdef X86
// AVX-512F: 16 chains of the 32 zmm registers
#define D512(i) __m512 a##i = _mm512_set1_ps((float)(i));
#define F512(i) a##i = _mm512_fmadd_ps(a##i, vb, vc);
#define S512(i) s = _mm512_add_ps(s, a##i);
__attribute__((target("avx512f")))
static double run_avx512(long iters, float b, float c) {
    __m512 vb = _mm512_set1_ps(b), vc = _mm512_set1_ps(c), s = _mm512_setzero_ps();
    CHAINS16(D512)
    for (long i = 0; i < iters; i++) { CHAINS16(F512) }
    CHAINS16(S512)
    float out[16];
    _mm512_storeu_ps(out, s);
    double t = 0.0;
    for (int j = 0; j < 16; j++) t += out[j];
    return t;
}

// AVX2 + FMA: 12 chains of the 16 ymm registers (two more hold b and c)
#define D256(i) __m256 a##i = _mm256_set1_ps((float)(i));
#define F256(i) a##i = _mm256_fmadd_ps(a##i, vb, vc);
#define S256(i) s = _mm256_add_ps(s, a##i);
__attribute__((target("avx2,fma")))
static double run_avx2(long iters, float b, float c) {
    __m256 vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(c), s = _mm256_setzero_ps();
    CHAINS12(D256)
    for (long i = 0; i < iters; i++) { CHAINS12(F256) }
    CHAINS12(S256)
    float out[8];
    _mm256_storeu_ps(out, s);
    double t = 0.0;
    for (int j = 0; j < 8; j++) t += out[j];
    return t;
}

// SSE2: no FMA instruction, a multiply then an add (still 2 FLOPs)
#define D128(i) __m128 a##i = _mm_set1_ps((float)(i));
#define F128(i) a##i = _mm_add_ps(_mm_mul_ps(a##i, vb), vc);
#define S128(i) s = _mm_add_ps(s, a##i);
__attribute__((target("sse2")))
static double run_sse2(long iters, float b, float c) {
    __m128 vb = _mm_set1_ps(b), vc = _mm_set1_ps(c), s = _mm_setzero_ps();
    CHAINS12(D128)
    for (long i = 0; i < iters; i++) { CHAINS12(F128) }
    CHAINS12(S128)
    float out[4];
    _mm_storeu_ps(out, s);
    return (double)out[0] + out[1] + out[2] + out[3];
}
#endif

#if defined(__aarch64__)
// NEON: 16 chains of the 32 v registers
#define DNEON(i) float32x4_t a##i = vdupq_n_f32((float)(i));
#define FNEON(i) a##i = vfmaq_f32(vc, a##i, vb);
#define SNEON(i) s = vaddq_f32(s, a##i);
static double run_neon(long iters, float b, float c) {
    float32x4_t vb = vdupq_n_f32(b), vc = vdupq_n_f32(c), s = vdupq_n_f32(0.0f);
    CHAINS16(DNEON)
    for (long i = 0; i < iters; i++) { CHAINS16(FNEON) }
    CHAINS16(SNEON)
    return (double)vaddvq_f32(s);
}
#endif

// Portable: plain C vectors; the compiler may or may not fuse the multiply
// and the add, a round counts as 2 FLOPs a lane either way.
typedef float pvec __attribute__((vector_size(16)));
#define DPORT(i) pvec a##i = {(float)(i), (float)(i), (float)(i), (float)(i)};
#define FPORT(i) a##i = a##i * vb + vc;
#define SPORT(i) s += a##i;
static double run_portable(long iters, float b, float c) {
    pvec vb = {b, b, b, b}, vc = {c, c, c, c}, s = {0, 0, 0, 0};
    CHAINS12(DPORT)
    for (long i = 0; i < iters; i++) { CHAINS12(FPORT) }
    CHAINS12(SPORT)
    return (double)s[0] + s[1] + s[2] + s[3];
}

static Kernel pick(const char *want) {
#ifdef X86
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if ((!want && has512) || (want && !strcmp(want, "avx512") && has512))
        return (Kernel){"avx512f", run_avx512, 2.0 * 16 * 16};
    if ((!want && has2) || (want && !strcmp(want, "avx2") && has2))
        return (Kernel){"avx2+fma", run_avx2, 2.0 * 8 * 12};
    if (!want || !strcmp(want, "sse2"))
        return (Kernel){"sse2", run_sse2, 2.0 * 4 * 12};
#endif
#if defined(__aarch64__)
    if (!want || !strcmp(want, "neon"))
        return (Kernel){"neon", run_neon, 2.0 * 4 * 16};
#endif
    if (want && strcmp(want, "portable")) {
        fprintf(stderr, "bench_flops: ISA '%s' is not available here\n", want);
        exit(2);
    }
    return (Kernel){"portable", run_portable, 2.0 * 4 * 12};
}

typedef struct {
    Kernel k;
    long iters;
    int passes;
    pthread_barrier_t *start, *stop;
    double sink;
} Worker;

static void *worker_main(void *arg) {
    Worker *w = arg;
    for (int p = 0; p < w->passes; p++) {
        pthread_barrier_wait(w->start);
        w->sink += w->k.run(w->iters, B_VALUE, C_VALUE);
        pthread_barrier_wait(w->stop);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void measure(Kernel k, long iters, int n_threads, int passes, double *best, double *median) {
    pthread_barrier_t start, stop;
    pthread_barrier_init(&start, NULL, (unsigned)n_threads);
    pthread_barrier_init(&stop, NULL, (unsigned)n_threads);
    Worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    for (int i = 0; i < n_threads; i++)
        w[i] = (Worker){k, iters, passes, &start, &stop, 0.0};
    for (int i = 1; i < n_threads; i++)
        if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench_flops: cannot start thread %d\n", i);
            exit(1);
        }
    double *rate = malloc(sizeof(double) * (size_t)passes);
    if (!rate) { fprintf(stderr, "bench_flops: out of memory\n"); exit(1); }
    for (int p = 0; p < passes; p++) {
        pthread_barrier_wait(&start);
        double t0 = now();
        w[0].sink += k.run(iters, B_VALUE, C_VALUE);
        pthread_barrier_wait(&stop);
        rate[p] = k.flops_per_iter * (double)iters * n_threads / (now() - t0) / 1e9;
    }
    for (int i = 1; i < n_threads; i++) pthread_join(tid[i], NULL);
    double sink = 0.0;
    for (int i = 0; i < n_threads; i++) sink += w[i].sink;
    if (sink == 12345.678) printf("#\n");  // keeps the results alive
    qsort(rate, (size_t)passes, sizeof(double), cmp_double);
    *best = rate[passes - 1];
    *median = rate[passes / 2];
    free(rate);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&stop);
}

int main(int argc, char **argv) {
    const char *want = argc > 1 && strcmp(argv[1], "auto") ? argv[1] : NULL;
    int passes = argc > 2 ? atoi(argv[2]) : 7;
    int max_threads = argc > 3 ? atoi(argv[3]) : 2;
    if (passes < 1 || max_threads < 1 || max_threads > MAX_THREADS) {
        fprintf(stderr, "usage: bench_flops [auto|avx512|avx2|sse2|neon|portable] [passes >= 1] [max threads 1..%d]\n",
                MAX_THREADS);
        return 2;
    }
    Kernel k = pick(want);
    // calibrate: about 0.25 s a pass on one thread
    long iters = 1 << 16;
    for (;;) {
        double t0 = now();
        volatile double s = k.run(iters, B_VALUE, C_VALUE);
        (void)s;
        double dt = now() - t0;
        if (dt > 0.05 || iters > (1L << 40)) {
            iters = (long)((double)iters * 0.25 / (dt > 1e-9 ? dt : 1e-9));
            break;
        }
        iters *= 4;
    }
    if (iters < 1) iters = 1;
    for (int t = 1; t <= max_threads; t++) {
        double best, median;
        measure(k, iters, t, passes, &best, &median);
        printf("flops threads=%d isa=%s best_GFLOPs=%.2f median_GFLOPs=%.2f passes=%d\n",
               t, k.name, best, median, passes);
        fflush(stdout);
    }
    return 0;
}
