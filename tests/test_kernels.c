// tests/test_kernels.c: every kernel table of Part II in run.c (FAST_KERNELS
// where this CPU runs it, PORTABLE_KERNELS where it is compiled in) against
// the plain loops, on sizes that are not multiples of the vector width, and
// the thread pool's promise that results do not depend on the thread count.
#define RUN_NO_MAIN
#include "../run.c"

static int passed, failed;

static void check(const char *what, int ok, const char *fmt, ...) {
    if (ok) { passed++; return; }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s: ", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static uint64_t seed = 0x1234567ULL;
static float frand(void) { return (float)((rng_next(&seed) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static void fill(float *x, size_t n, float scale) { for (size_t i = 0; i < n; i++) x[i] = frand() * scale; }

// |a - b| <= tol * (1 + |b|), elementwise; returns the worst ratio
static double worst(const float *a, const float *b, size_t n) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= w)) w = d;  // NaN counts as worst
    }
    return w;
}

// Shapes on both sides of every blocking edge: fewer than GEMM_MIN_T positions
// (row kernel) and more (blocked product), position counts that are not a
// multiple of 6, output counts that are not a multiple of 4, 8 or 16, and
// inputs longer than one GEMM_KC block (300, 513) or not a multiple of 8.
static const int mm_shapes[][3] = {{1, 1, 1}, {1, 7, 5}, {3, 9, 4}, {5, 17, 13}, {1, 768, 37}, {7, 33, 11},
                                   {64, 40, 120}, {2, 100, 3}, {65, 129, 67}, {4, 8, 8}, {6, 8, 16},
                                   {13, 300, 37}, {12, 513, 70}, {31, 256, 129}, {8, 1, 3}, {1, 45, 9}, {1, 100, 17}};
#define N_MM_SHAPES (sizeof mm_shapes / sizeof mm_shapes[0])
#define MAX_TABLES 2
// each table's output for each weight type and shape with 1 thread
static float *mm_one_thread[MAX_TABLES][2][N_MM_SHAPES];

// W (OC,C) with random values: float32, or 8-bit (random values in -127..127,
// one random scale per block of Q8_BLOCK, the last block of a row shorter
// when C is not a multiple of it). The storage is returned in *f, *q, *sc.
static Matrix random_matrix(int type, int OC, int C, float **f, int8_t **q, float **sc) {
    Matrix W = {0};
    *f = NULL; *q = NULL; *sc = NULL;
    if (type == WEIGHTS_F32) {
        *f = xmalloc(sizeof(float) * OC * C);
        fill(*f, (size_t)OC * C, 1.0f);
        W.f = *f;
        return W;
    }
    size_t blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    *q = xmalloc((size_t)OC * C);
    *sc = xmalloc(sizeof(float) * OC * blocks);
    for (size_t i = 0; i < (size_t)OC * C; i++) (*q)[i] = (int8_t)((int)(rng_next(&seed) % 255) - 127);
    for (size_t i = 0; i < OC * blocks; i++) (*sc)[i] = (0.5f + 0.5f * (frand() + 1.0f)) / 127.0f;
    W.q = *q;
    W.scale = *sc;
    return W;
}

static void test_matmul(const Kernels *k, int table, const char *kname) {
    for (int type = WEIGHTS_F32; type <= WEIGHTS_Q8; type++)
    for (size_t s = 0; s < N_MM_SHAPES; s++) {
        int T = mm_shapes[s][0], C = mm_shapes[s][1], OC = mm_shapes[s][2];
        float *inp = xmalloc(sizeof(float) * T * C), *b = xmalloc(sizeof(float) * OC);
        float *ref = xmalloc(sizeof(float) * T * OC), *out = xmalloc(sizeof(float) * T * OC);
        float *wf, *sc;
        int8_t *wq;
        uint64_t saved = seed;
        seed = 1000 + s;  // the same inputs for every thread count
        fill(inp, (size_t)T * C, 1.0f); fill(b, OC, 1.0f);
        Matrix Wm = random_matrix(type, OC, C, &wf, &wq, &sc);
        const Matrix *W = &Wm;
        seed = saved;
        matmul_plain(ref, inp, W, b, T, C, OC);
        k->matmul(out, inp, W, b, T, C, OC);
        double w = worst(out, ref, (size_t)T * OC);
        char name[96];
        snprintf(name, sizeof name, "%s matmul %s T=%d C=%d OC=%d", kname, type == WEIGHTS_Q8 ? "8-bit" : "float32", T, C, OC);
        check(name, w < 1e-5, "worst relative diff %g", w);
        k->matmul(out, inp, W, NULL, T, C, OC);
        matmul_plain(ref, inp, W, NULL, T, C, OC);
        check(name, worst(out, ref, (size_t)T * OC) < 1e-5, "without bias: worst relative diff %g", worst(out, ref, (size_t)T * OC));
        // prompt tiles of GEMM_MIN_T or more positions: a position's result does
        // not depend on which tile it is in (each output is one chain in k order)
        if (T >= 2 * GEMM_MIN_T) {
            int T1 = GEMM_MIN_T + (T - 2 * GEMM_MIN_T) / 2;  // split into two tiles of >= GEMM_MIN_T
            k->matmul(ref, inp, W, b, T, C, OC);
            k->matmul(out, inp, W, b, T1, C, OC);
            k->matmul(out + (size_t)T1 * OC, inp + (size_t)T1 * C, W, b, T - T1, C, OC);
            check(name, memcmp(out, ref, sizeof(float) * T * OC) == 0, "tiles of %d and %d differ from one of %d", T1, T - T1, T);
        }
        // the thread count never changes a bit of the result
        k->matmul(out, inp, W, b, T, C, OC);
        if (pool.n_threads == 1) {
            mm_one_thread[table][type][s] = xmalloc(sizeof(float) * T * OC);
            memcpy(mm_one_thread[table][type][s], out, sizeof(float) * T * OC);
        } else {
            check(name, memcmp(out, mm_one_thread[table][type][s], sizeof(float) * T * OC) == 0,
                  "%d threads differ from 1 thread", pool.n_threads);
        }
        free(inp); free(wf); free(wq); free(sc); free(b); free(ref); free(out);
    }
}

// An 8-bit matrix's rows read back (the token embedding's lookup) equal the
// dequantised weights scale * q, and a float32 matrix's rows are copied.
static void test_matrix_row(void) {
    const int C = 45, OC = 3;
    float *wf, *sc, row[45];
    int8_t *wq;
    Matrix W = random_matrix(WEIGHTS_Q8, OC, C, &wf, &wq, &sc);
    int ok = 1;
    for (int r = 0; r < OC; r++) {
        matrix_row(row, &W, r, C);
        for (int i = 0; i < C; i++) ok &= row[i] == sc[r * 2 + i / Q8_BLOCK] * wq[r * C + i];
    }
    check("matrix_row dequantises 8-bit rows", ok, "a value differs from scale * q");
    free(wq); free(sc);
    W = random_matrix(WEIGHTS_F32, OC, C, &wf, &wq, &sc);
    matrix_row(row, &W, 2, C);
    check("matrix_row copies float32 rows", memcmp(row, wf + 2 * C, sizeof row) == 0, "differs");
    free(wf);
}

// quantize_q8_fast (Part II) gives quantize_q8's values and scales exactly,
// and, asked for the values they stand for, scale * value exactly; ties of
// rounding (x / scale = k + 1/2) go to even in both.
static void test_quantize(void) {
#if SIMD_AVX2 || SIMD_NEON
    const int sizes[] = {1, 5, 31, 32, 33, 64, 100, 768};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s], blocks = (n + Q8_BLOCK - 1) / Q8_BLOCK;
        float *x = xmalloc(sizeof(float) * n), *s0 = xmalloc(sizeof(float) * blocks), *s1 = xmalloc(sizeof(float) * blocks);
        float *deq = xmalloc(sizeof(float) * n);
        int8_t *q0 = xmalloc(n), *q1 = xmalloc(n);
        fill(x, n, 5.0f);
        if (n >= 32) { x[0] = 127.0f; x[1] = 0.5f; x[2] = -1.5f; x[3] = 2.5f; }  // scale 1: ties
        if (n >= 64) for (int i = 32; i < 64; i++) x[i] = 0.0f;           // an all-zero block
        quantize_q8(q0, s0, x, n);
        quantize_q8_fast(q1, s1, NULL, x, n);
        int ok = memcmp(q0, q1, n) == 0 && memcmp(s0, s1, sizeof(float) * blocks) == 0;
        quantize_q8_fast(NULL, s1, deq, x, n);
        for (int i = 0; i < n; i++) ok &= deq[i] == s0[i / Q8_BLOCK] * q0[i];
        char name[96];
        snprintf(name, sizeof name, "quantize_q8_fast equals quantize_q8, n=%d", n);
        check(name, ok, "values differ");
        if (n >= 32) check("quantize_q8 rounds ties to even", q0[1] == 0 && q0[2] == -2 && q0[3] == 2, "%d %d %d", q0[1], q0[2], q0[3]);
        free(x); free(s0); free(s1); free(deq); free(q0); free(q1);
    }
#endif
}

static void test_dot_softmax_activate(const Kernels *k, const char *kname) {
    const int sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 100, 1023};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        int n = sizes[s];
        float *a = xmalloc(sizeof(float) * n), *b = xmalloc(sizeof(float) * n);
        float *x = xmalloc(sizeof(float) * n), *y = xmalloc(sizeof(float) * n);
        fill(a, n, 3.0f); fill(b, n, 3.0f);
        char name[96];
#if SIMD_AVX2 || SIMD_NEON
        if (k == &FAST_KERNELS) {  // scores_fast's tail and the NEON kernels use it
            float d0 = dot_plain(a, b, n), d1 = dot_fast(a, b, n);
            snprintf(name, sizeof name, "%s dot n=%d", kname, n);
            check(name, fabsf(d0 - d1) <= 1e-5f * (1 + fabsf(d0)) * sqrtf((float)n), "plain %g fast %g", d0, d1);
        }
#endif

        fill(x, n, 30.0f);
        memcpy(y, x, sizeof(float) * n);
        softmax_plain(x, n);
        k->softmax(y, n);
        double w = worst(y, x, n);
        float sum = 0;
        for (int i = 0; i < n; i++) sum += y[i];
        snprintf(name, sizeof name, "%s softmax n=%d", kname, n);
        check(name, w < 1e-6 && fabsf(sum - 1) < 1e-5f, "worst %g, sum %g", w, sum);

        float *gain = xmalloc(sizeof(float) * n), *bias = xmalloc(sizeof(float) * n), *ln0 = xmalloc(sizeof(float) * n);
        fill(x, n, 4.0f); fill(gain, n, 2.0f); fill(bias, n, 1.0f);
        for (int i = 0; i < n; i++) x[i] += 3.0f;  // a mean far from 0
        layernorm(ln0, x, gain, bias, n, 1e-5f);
        k->layernorm(y, x, gain, bias, 1, n, 1e-5f);
        double wl = worst(y, ln0, n);
        snprintf(name, sizeof name, "%s layernorm n=%d", kname, n);
        check(name, wl < 1e-5, "worst %g", wl);
        free(gain); free(bias); free(ln0);

        // RMSNorm and the gated MLP's act(x) * up on 3 rows (the pool splits rows)
        float *x3 = xmalloc(sizeof(float) * 3 * n), *y3 = xmalloc(sizeof(float) * 3 * n);
        float *up3 = xmalloc(sizeof(float) * 3 * n), *g3 = xmalloc(sizeof(float) * n);
        fill(x3, (size_t)3 * n, 4.0f); fill(g3, n, 2.0f); fill(up3, (size_t)3 * n, 3.0f);
        for (int t = 0; t < 3; t++) rmsnorm(y3 + (size_t)t * n, x3 + (size_t)t * n, g3, n, 1e-6f);
        float *r3 = xmalloc(sizeof(float) * 3 * n);
        k->rmsnorm(r3, x3, g3, 3, n, 1e-6f);
        snprintf(name, sizeof name, "%s rmsnorm 3 rows n=%d", kname, n);
        wl = worst(r3, y3, (size_t)3 * n);
        check(name, wl < 1e-5, "worst %g", wl);
        for (int act = 0; act <= ACT_SILU; act++) {
            fill(x3, (size_t)3 * n, 8.0f);
            if (n > 4) { x3[0] = 0.0f; x3[1] = -1e-4f; x3[2] = 40.0f; x3[3] = -40.0f; }
            memcpy(y3, x3, sizeof(float) * 3 * n);
            activate_plain(x3, (size_t)3 * n, act);
            multiply(x3, up3, (size_t)3 * n);
            k->gate(y3, up3, 3, n, act);
            wl = worst(y3, x3, (size_t)3 * n);
            snprintf(name, sizeof name, "%s gate act %d 3 rows n=%d", kname, act, n);
            check(name, wl < 6e-6, "worst %g", wl);
        }
        free(x3); free(y3); free(up3); free(g3); free(r3);

        for (int act = 0; act <= ACT_SILU; act++) {
            fill(x, n, 8.0f);
            if (n > 4) { x[0] = 0.0f; x[1] = -1e-4f; x[2] = 40.0f; x[3] = -40.0f; }
            memcpy(y, x, sizeof(float) * n);
            activate_plain(x, n, act);
            k->activate(y, 1, n, act);
            w = worst(y, x, n);
            snprintf(name, sizeof name, "%s activation %d n=%d", kname, act, n);
            check(name, w < 2e-6, "worst %g", w);
        }
        free(a); free(b); free(x); free(y);
    }
}

static void test_attention_kernels(const Kernels *k, const char *kname) {
    const int shapes[][2] = {{1, 8}, {3, 8}, {5, 12}, {7, 64}, {33, 64}, {17, 80}, {9, 6}, {130, 128}, {4, 200}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int n = shapes[s][0], hd = shapes[s][1];
        float *q = xmalloc(sizeof(float) * hd), *K = xmalloc(sizeof(float) * n * hd);
        float *s0 = xmalloc(sizeof(float) * n), *s1 = xmalloc(sizeof(float) * n);
        float *o0 = xmalloc(sizeof(float) * hd), *o1 = xmalloc(sizeof(float) * hd);
        fill(q, hd, 1.0f); fill(K, (size_t)n * hd, 1.0f);
        scores_plain(s0, q, K, n, hd, 0.125f);
        k->scores(s1, q, K, n, hd, 0.125f);
        char name[96];
        snprintf(name, sizeof name, "%s attention scores n=%d hd=%d", kname, n, hd);
        double w = worst(s1, s0, n);
        check(name, w < 1e-5, "worst %g", w);
        softmax_plain(s0, n);
        weighted_sum_plain(o0, s0, K, n, hd);
        k->weighted_sum(o1, s0, K, n, hd);
        snprintf(name, sizeof name, "%s attention weighted sum n=%d hd=%d", kname, n, hd);
        w = worst(o1, o0, hd);
        check(name, w < 1e-5, "worst %g", w);
        free(q); free(K); free(s0); free(s1); free(o0); free(o1);
    }
}

// The blocked prompt attention against the plain per-query loops: tiles that
// start at position 0 and later, sizes that are not multiples of 6 or 16
// (every case has GEMM_MIN_T or more queries and a head size that is a
// multiple of 16, so a table with attend_tile takes it).
static void test_attention_tile(const Kernels *k, const char *kname) {
    const int cases[][3] = {{6, 0, 16}, {7, 0, 64}, {13, 5, 64}, {64, 0, 64}, {20, 100, 32}, {9, 17, 128}, {50, 3, 16}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        int T = cases[s][0], pos0 = cases[s][1], hd = cases[s][2], n = pos0 + T, n16 = (n + 15) / 16 * 16;
        size_t ldq = 3 * (size_t)hd + 5;  // queries inside wider rows, as in qkv
        float *q = xmalloc(sizeof(float) * T * ldq), *K = xmalloc(sizeof(float) * n * hd), *V = xmalloc(sizeof(float) * n * hd);
        float *kpack = xmalloc(sizeof(float) * n16 * hd), *p = xmalloc(sizeof(float) * 6 * n16);
        float *out = xmalloc(sizeof(float) * T * hd), *ref = xmalloc(sizeof(float) * T * hd), *row = xmalloc(sizeof(float) * n);
        size_t tri = (size_t)n * (n + 1) / 2;
        float *log = xcalloc(tri, sizeof(float)), *ref_log = xcalloc(tri, sizeof(float));
        fill(q, (size_t)T * ldq, 2.0f); fill(K, (size_t)n * hd, 2.0f); fill(V, (size_t)n * hd, 1.0f);
        float scale = 1.0f / sqrtf((float)hd);
        for (int t = 0; t < T; t++) {
            int pos = pos0 + t;
            scores_plain(row, q + t * ldq, K, pos + 1, hd, scale);
            softmax_plain(row, pos + 1);
            memcpy(ref_log + (size_t)pos * (pos + 1) / 2, row, sizeof(float) * (pos + 1));
            weighted_sum_plain(ref + (size_t)t * hd, row, V, pos + 1, hd);
        }
        char name[96];
        snprintf(name, sizeof name, "%s attention tile T=%d pos0=%d hd=%d", kname, T, pos0, hd);
        check(name, k->attend_tile(out, hd, q, ldq, K, V, T, pos0, hd, scale, kpack, p, n16, log), "not taken");
        double w = worst(out, ref, (size_t)T * hd);
        check(name, w < 1e-5, "output: worst %g", w);
        size_t first = (size_t)pos0 * (pos0 + 1) / 2;  // rows before pos0 are not the tile's
        w = worst(log + first, ref_log + first, tri - first);
        check(name, w < 1e-6, "weights: worst %g", w);
        free(q); free(K); free(V); free(kpack); free(p); free(out); free(ref); free(row); free(log); free(ref_log);
    }
}

// Sum of one slice per call, written into per-index slots.
static void mark(void *ctx, int start, int end) {
    int *hits = ctx;
    for (int i = start; i < end; i++) hits[i]++;
}

static void test_pool(void) {
    int hits[1000] = {0};
    for (int rep = 0; rep < 200; rep++) parallel_for(1000, mark, hits);
    int ok = 1;
    for (int i = 0; i < 1000; i++) if (hits[i] != 200) ok = 0;
    check("parallel_for covers each index exactly once per call", ok, "bad counts");
}

int main(void) {
    // the tables to test: the one fast_kernels() picks on this CPU, and
    // PORTABLE_KERNELS too where that is not it
    const Kernels *tables[MAX_TABLES];
    int n_tables = 0;
    tables[n_tables++] = fast_kernels();
#if HAVE_PORTABLE_KERNELS
    if (tables[0] != &PORTABLE_KERNELS) tables[n_tables++] = &PORTABLE_KERNELS;
#endif
    for (int threads = 1; threads <= 3; threads++) {
        pool_start(threads);
        for (int i = 0; i < n_tables; i++) {
            const Kernels *k = tables[i];
            const char *kname = kernels_name(k);
            test_matmul(k, i, kname);
            test_dot_softmax_activate(k, kname);
            test_attention_kernels(k, kname);
            if (threads == 1 && k->attend_tile) test_attention_tile(k, kname);
        }
        test_pool();
        if (threads == 1) { test_matrix_row(); test_quantize(); }
        pool_stop();
        memset(&pool, 0, sizeof pool);
    }
    for (int i = 0; i < n_tables; i++) printf("kernels: tested %s\n", kernels_name(tables[i]));
    printf("kernels: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
