// tests/fuzz_checkpoint.c: libFuzzer harness for checkpoint loading.
//
// The input is a whole checkpoint file. It goes through what `run` does
// between mapping the file and the first forward pass: read_config (which
// must either accept the header or explain why not, never exit), then the
// tokenizer section, the tokenizer/model vocabulary check, and map_weights,
// whose pointers must all land inside the file. When the tokenizer loads it
// is exercised a little: encoding must round-trip and ids must be in range.
//
// Most random headers die at the file_bytes check, so every input is also
// tried a second time with file_bytes patched to the input's length: that
// is simply another file, and it lets mutations reach the later checks.
//
//   make fuzz            (or by hand:)
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -o tests/build/fuzz_checkpoint tests/fuzz_checkpoint.c tokenizer.c -lm -lpthread
//   tests/build/fuzz_checkpoint -max_total_time=60 tests/build/fuzz-corpus-checkpoint tests/fuzz/checkpoint
#define RUN_NO_MAIN
#include "../run.c"

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_checkpoint: %s:%d: broken: %s\n", __FILE__,  \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

// A tensor of n floats at p lies inside [lo, hi) and is 64-byte aligned
// relative to the start of the file.
// A tensor lies inside the weights section, aligned; `present` says whether
// the config says it is there (a missing one must be NULL).
static void check_tensor_if(int present, const unsigned char *base, const float *p, size_t n,
                            const unsigned char *lo, const unsigned char *hi) {
    REQUIRE(!!present == (p != NULL));
    if (!p) return;
    const unsigned char *b = (const unsigned char *)p;
    REQUIRE(b >= lo && b <= hi && (size_t)(hi - b) >= n * sizeof(float));
    REQUIRE((size_t)(b - base) % WEIGHT_ALIGN == 0);
    // touch the first and the last element, so ASan checks them too
    volatile float first = p[0], last = p[n - 1];
    (void)first; (void)last;
}
#define check_tensor(base, p, n, lo, hi) check_tensor_if(1, base, p, n, lo, hi)

// A weight matrix (rows, cols) lies inside the weights section as the
// config's weight type says: a float32 tensor, or 8-bit weights and scales.
static void check_matrix_if(int present, const unsigned char *base, const Matrix *m, size_t rows, size_t cols,
                            int type, const unsigned char *lo, const unsigned char *hi) {
    if (!present || type == WEIGHTS_F32) {
        REQUIRE(m->q == NULL && m->scale == NULL);
        check_tensor_if(present, base, m->f, rows * cols, lo, hi);
        return;
    }
    REQUIRE(m->f == NULL && m->q != NULL);
    const unsigned char *b = (const unsigned char *)m->q;
    REQUIRE(b >= lo && b <= hi && (size_t)(hi - b) >= rows * cols);
    REQUIRE((size_t)(b - base) % WEIGHT_ALIGN == 0);
    volatile int8_t first = m->q[0], last = m->q[rows * cols - 1];
    (void)first; (void)last;
    REQUIRE((const unsigned char *)m->scale >= b + rows * cols);
    check_tensor(base, m->scale, rows * ((cols + Q8_BLOCK - 1) / Q8_BLOCK), lo, hi);
}
#define check_matrix(base, m, rows, cols, type, lo, hi) check_matrix_if(1, base, m, rows, cols, type, lo, hi)

// `version`: the section's. Version 4 (SentencePiece-style BPE) need not give
// back the text ("▁" put first, <unk>): its ids are checked, not the round trip.
static void exercise_tokenizer(Tokenizer *t, const Config *c, uint32_t version) {
    int n = tokenizer_n_tokens(t);
    REQUIRE(n >= (version == 4 ? 1 : 256));
    const int probe[] = {-1, 0, 1, 255, 256, n - 1, n, c->vocab_size - 1, c->vocab_size,
                         c->eos_id, c->bos_id, INT32_MAX};
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        size_t len = 12345;
        const unsigned char *b = tokenizer_token(t, probe[i], &len);
        if (probe[i] < 0 || probe[i] >= n) {
            REQUIRE(b == NULL && len == 0);
        } else {
            REQUIRE(b != NULL);
            if (len) { volatile unsigned char x = b[len - 1]; (void)x; }
        }
    }
    (void)tokenizer_special_id(t, "<|endoftext|>");
    static const char *texts[] = {"Hello, world! It's 2024 <|endoftext|> caf\xc3\xa9 \xff\xfe  \n\n",
                                  "", "a", "<|endoftext|>"};
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        for (int special = 0; special <= 1; special++) {
            TokenList ids = {0};
            size_t len = strlen(texts[k]);
            REQUIRE(tokenizer_encode(t, (const unsigned char *)texts[k], len, special, &ids) == 0);
            // decode(encode(text)) == text, for any byte-level tokenizer that loads
            // (version 4: every id a token with bytes, at most 6 a byte after the BOS)
            REQUIRE(version != 4 || ids.len <= 6 * len + 1);
            unsigned char *back = malloc(len + 1);
            size_t at = 0;
            for (size_t i = 0; i < ids.len; i++) {
                size_t l;
                const unsigned char *b = tokenizer_token(t, ids.ids[i], &l);
                REQUIRE(b != NULL && l > 0);
                if (version == 4) continue;
                REQUIRE(at + l <= len);
                memcpy(back + at, b, l);
                at += l;
            }
            REQUIRE(version == 4 || (at == len && memcmp(back, texts[k], len) == 0));
            free(back);
            tokenlist_free(&ids);
        }
    }
}

static void try_checkpoint(const unsigned char *data, size_t size) {
    Config c;
    char err[256];
    memset(&c, 0, sizeof c);
    memset(err, 0, sizeof err);
    if (read_config(&c, data, size, err, sizeof err) != 0) {
        REQUIRE(err[0] != '\0');  // a refusal always says why
        return;
    }
    // what read_config promises the rest of run.c
    REQUIRE(c.n_layer > 0 && c.n_head > 0 && c.n_embd > 0 && c.n_inner > 0 && c.n_ctx > 0 && c.vocab_size > 0);
    REQUIRE(c.n_embd % c.n_head == 0);
    REQUIRE(c.tok_offset <= size && c.tok_bytes <= size - c.tok_offset);
    REQUIRE(c.weights_offset <= size && c.weights_bytes == size - c.weights_offset);
    REQUIRE(c.eos_id >= -1 && c.eos_id < c.vocab_size && c.bos_id >= -1 && c.bos_id < c.vocab_size);

    Tokenizer *t = tokenizer_load(data + c.tok_offset, c.tok_bytes, err, sizeof err);
    if (!t) {
        REQUIRE(err[0] != '\0');
        return;
    }
    if (tokenizer_n_tokens(t) <= c.vocab_size) {  // main() refuses the file otherwise
        Weights w;
        weights_map(&w, &c, data);
        const unsigned char *lo = data + c.weights_offset, *hi = data + size;
        size_t C = c.n_embd, F = c.n_inner, V = c.vocab_size, E = c.embed_dim;
        size_t QKV = C + 2 * (C / c.n_head) * c.n_kv_head;
        uint32_t b = c.block;
        int ln_bias = !(b & BLOCK_RMSNORM);
        REQUIRE(E >= 1 && E <= C);
        REQUIRE(c.n_kv_head >= 1 && c.n_head % c.n_kv_head == 0);
        for (int l = 0; l < c.n_layer; l++) REQUIRE(layer_window(&c, l) >= 0);
        int wt = c.weight_type;
        REQUIRE(wt == WEIGHTS_F32 || (wt == WEIGHTS_Q8 && c.version == 2));
        check_matrix(data, &w.wte, V, E, wt, lo, hi);
        check_tensor_if(!(b & BLOCK_ROTARY), data, w.wpe, ((size_t)c.n_ctx + c.pos_offset) * C, lo, hi);
        check_matrix_if(E < C, data, &w.project_in, C, E, wt, lo, hi);
        for (int l = 0; l < c.n_layer; l++) {
            const LayerWeights *L = &w.layers[l];
            check_tensor(data, L->ln1_w, C, lo, hi);      check_tensor_if(ln_bias, data, L->ln1_b, C, lo, hi);
            check_matrix(data, &L->qkv_w, QKV, C, wt, lo, hi);
            check_tensor_if(b & BLOCK_QKV_BIAS, data, L->qkv_b, QKV, lo, hi);
            check_matrix(data, &L->proj_w, C, C, wt, lo, hi);
            check_tensor_if(b & BLOCK_PROJ_BIAS, data, L->proj_b, C, lo, hi);
            check_tensor(data, L->ln2_w, C, lo, hi);      check_tensor_if(ln_bias, data, L->ln2_b, C, lo, hi);
            check_matrix(data, &L->fc_w, F, C, wt, lo, hi);
            check_tensor_if(b & BLOCK_MLP_BIAS, data, L->fc_b, F, lo, hi);
            check_matrix_if(b & BLOCK_GATED_MLP, data, &L->up_w, F, C, wt, lo, hi);
            check_matrix(data, &L->fc_proj_w, C, F, wt, lo, hi);
            check_tensor_if(b & BLOCK_MLP_BIAS, data, L->fc_proj_b, C, lo, hi);
        }
        check_tensor_if(b & BLOCK_FINAL_NORM, data, w.lnf_w, C, lo, hi);
        check_tensor_if((b & BLOCK_FINAL_NORM) && ln_bias, data, w.lnf_b, C, lo, hi);
        check_matrix_if(E < C, data, &w.project_out, E, C, wt, lo, hi);
        check_matrix(data, &w.lm_head, V, E, wt, lo, hi);
        weights_free(&w);
    }
    exercise_tokenizer(t, &c, read_u32le(data + c.tok_offset + 8));  // (the loader checked the header)
    tokenizer_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) {
        Config c = {0};
        char err[128];
        REQUIRE(read_config(&c, data, 0, err, sizeof err) != 0);
        return 0;
    }
    // run maps the file, so it is page aligned; keep the same alignment here
    // (the float tensors are read in place). The copy is exactly `size` bytes
    // long, so ASan still sees any read past the end of the file.
    unsigned char *buf = NULL;
    if (posix_memalign((void **)&buf, 4096, size) != 0) return 0;
    memcpy(buf, data, size);
    try_checkpoint(buf, size);
    if (size >= HEADER_BYTES) {
        uint64_t s = size;
        for (int i = 0; i < 8; i++) buf[88 + i] = (unsigned char)(s >> (8 * i));
        try_checkpoint(buf, size);
    }
    free(buf);
    return 0;
}
