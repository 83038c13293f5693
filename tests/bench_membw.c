// bench_membw.c: this machine's memory read bandwidth, for `make bench`.
//
//   bench_membw [MiB] [passes]          (default 1024 MiB, 9 passes)
//
// A buffer far larger than the last-level cache is filled once, then read
// repeatedly by 1 and by 2 threads (each thread sums its own contiguous half,
// with the widest vector loads the compiler targets and several independent
// accumulators, so the adds never limit the rate). Each pass is timed from a
// barrier that releases all threads to the moment the last one finishes; the
// best pass is the machine's figure, the median shows the noise. Output, one
// line per thread count, for tests/bench.py to parse:
//
//   membw threads=1 best_GBps=18.53 median_GBps=18.10 bytes=1073741824 passes=9 vector_bytes=32
//
// GB/s are 10^9 bytes per second.
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX512F__)
#define VBYTES 64
#elif defined(__AVX__)
#define VBYTES 32
#else
#define VBYTES 16
#endif
typedef float vec __attribute__((vector_size(VBYTES)));
#define LANES (VBYTES / (int)sizeof(float))
#define MAX_THREADS 64

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    const vec *base;
    size_t n_vec;             // vectors this thread reads
    int passes;
    pthread_barrier_t *start, *stop;
    double sink;
} Worker;

// Sum n vectors with eight independent accumulators (bandwidth-bound, not
// latency-bound); the total is returned so the loads cannot be dropped.
static double sum_vectors(const vec *p, size_t n) {
    vec a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        a0 += p[i];     a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    for (; i < n; i++) a0 += p[i];
    vec s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
    double t = 0.0;
    for (int j = 0; j < LANES; j++) t += s[j];
    return t;
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    for (int p = 0; p < w->passes; p++) {
        pthread_barrier_wait(w->start);
        w->sink += sum_vectors(w->base, w->n_vec);
        pthread_barrier_wait(w->stop);
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Time `passes` reads of the whole buffer by n_threads threads (the caller is
// thread 0). Writes the best and the median rate in GB/s.
static void measure(const vec *buf, size_t n_vec, int n_threads, int passes, double *best, double *median) {
    pthread_barrier_t start, stop;
    pthread_barrier_init(&start, NULL, (unsigned)n_threads);
    pthread_barrier_init(&stop, NULL, (unsigned)n_threads);
    Worker w[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    size_t per = n_vec / (size_t)n_threads;
    for (int i = 0; i < n_threads; i++) {
        w[i].base = buf + (size_t)i * per;
        w[i].n_vec = i == n_threads - 1 ? n_vec - (size_t)i * per : per;
        w[i].passes = passes;
        w[i].start = &start;
        w[i].stop = &stop;
        w[i].sink = 0.0;
    }
    for (int i = 1; i < n_threads; i++)
        if (pthread_create(&tid[i], NULL, worker_main, &w[i]) != 0) {
            fprintf(stderr, "bench_membw: cannot start thread %d\n", i);
            exit(1);
        }
    double *rate = malloc(sizeof(double) * (size_t)passes);
    if (!rate) { fprintf(stderr, "bench_membw: out of memory\n"); exit(1); }
    double bytes = (double)n_vec * VBYTES;
    for (int p = 0; p < passes; p++) {
        pthread_barrier_wait(&start);
        double t0 = now();
        w[0].sink += sum_vectors(w[0].base, w[0].n_vec);
        pthread_barrier_wait(&stop);
        rate[p] = bytes / (now() - t0) / 1e9;
    }
    for (int i = 1; i < n_threads; i++) pthread_join(tid[i], NULL);
    double sink = 0.0;
    for (int i = 0; i < n_threads; i++) sink += w[i].sink;
    if (sink == 12345.678) printf("#\n");  // keeps the sums alive
    qsort(rate, (size_t)passes, sizeof(double), cmp_double);
    *best = rate[passes - 1];
    *median = rate[passes / 2];
    free(rate);
    pthread_barrier_destroy(&start);
    pthread_barrier_destroy(&stop);
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 1024;
    int passes = argc > 2 ? atoi(argv[2]) : 9;
    int max_threads = argc > 3 ? atoi(argv[3]) : 2;
    if (mib < 1 || passes < 1 || max_threads < 1 || max_threads > MAX_THREADS) {
        fprintf(stderr, "usage: bench_membw [MiB >= 1] [passes >= 1] [max threads 1..%d]\n", MAX_THREADS);
        return 2;
    }
    size_t bytes = (size_t)mib << 20;
    size_t n_vec = bytes / VBYTES;
    vec *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, n_vec * VBYTES) != 0) {
        fprintf(stderr, "bench_membw: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    // fill (and fault in) every page; small values so the sums stay finite
    float *f = (float *)buf;
    for (size_t i = 0; i < n_vec * LANES; i++) f[i] = (float)(i & 1023) * (1.0f / 1024.0f);
    for (int t = 1; t <= max_threads; t++) {
        double best, median;
        measure(buf, n_vec, t, passes, &best, &median);
        printf("membw threads=%d best_GBps=%.2f median_GBps=%.2f bytes=%zu passes=%d vector_bytes=%d\n",
               t, best, median, n_vec * (size_t)VBYTES, passes, VBYTES);
        fflush(stdout);
    }
    free(buf);
    return 0;
}
