// run.c: GPT-2 inference in one file of C.
//
// The file is in four parts. Read Part I from the top like a lecture: it is
// the whole model in plain loops, and with --plain-kernels the program runs
// on it alone. The rest is machinery around the lesson.
//
//   PART I    the lesson: how a GPT turns tokens into the next token
//     I.1  errors and exit codes
//     I.2  the checkpoint and its Config
//     I.3  Weights and RunState
//     I.4  the plain kernels (each with the shapes it works on)
//     I.5  the kernel table: the operations the forward pass calls
//     I.6  the forward pass: embeddings, attention, MLP, logits
//     I.7  sampling
//     I.8  streaming output
//     I.9  the generation loop
//   PART II   making it fast: worker pool, SIMD kernels, blocked prefill, huge pages
//   PART III  looking inside: attention maps, sampling explained, the HTML page
//   PART IV   the command line and main()
//
// The checkpoint is made by export.py from a Hugging Face GPT-2 directory;
// its layout is described in README.md and tests/SPEC.md. It is memory-mapped
// read-only, so several processes on one checkpoint share its pages.
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tokenizer.h"

#ifndef DEFAULT_MODEL
#define DEFAULT_MODEL "models/model.bin"
#endif
#define RUN_VERSION "0.1.0"

// ============================================================================
// PART I. THE LESSON
// ============================================================================

// ----------------------------------------------------------------------------
// I.1 Errors and exit codes

enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,  // I/O error, out of memory, write error
    EXIT_USAGE = 2,    // bad flag or value
    EXIT_MODEL = 3,    // bad model or tokenizer file
    EXIT_INPUT = 4,    // text or ids that cannot be processed
};

_Noreturn static void die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die(EXIT_RUNTIME, "out of memory (asked for %zu bytes)", n);
    return p;
}

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die(EXIT_RUNTIME, "out of memory (asked for %zu x %zu bytes)", n, size);
    return p;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}


// ----------------------------------------------------------------------------
// I.2 The checkpoint and its Config
//
// A 256-byte header, the tokenizer section, then float32 weights, each tensor
// 64-byte aligned. All numbers little-endian. (Format 2 may instead hold the
// weight matrices in 8 bits: Q8_BLOCK weights of a row share one scale.)

#define HEADER_BYTES 256
#define WEIGHT_ALIGN 64
#define Q8_BLOCK 32  // weights per scale in an 8-bit checkpoint

enum { ACT_GELU_TANH = 0, ACT_GELU_ERF = 1, ACT_RELU = 2, ACT_SILU = 3 };
enum {
    FLAG_UNTIED_LM_HEAD = 1u << 0,
    FLAG_SCALE_ATTN = 1u << 1,        // scores / sqrt(head_dim)
    FLAG_SCALE_BY_LAYER = 1u << 2,    // scores / (layer + 1) as well
};
// Format version 2 names the parts of the block in which the other families
// differ from GPT-2 (tests/SPEC.md, 1b). Version 1 is GPT-2: the last four.
enum {
    BLOCK_POST_LN = 1u << 0,      // x = ln_1(x + attn(x)), x = ln_2(x + mlp(x))  (OPT-350m)
    BLOCK_PARALLEL = 1u << 1,     // x = x + attn(ln_1 x) + mlp(ln_2 x)           (GPT-NeoX)
    BLOCK_ROTARY = 1u << 2,       // rotary positions on q and k, no table        (GPT-NeoX)
    BLOCK_QKV_BIAS = 1u << 3,     // biases on q, k, v                            (not GPT-Neo)
    BLOCK_PROJ_BIAS = 1u << 4,    // a bias on the attention's output projection
    BLOCK_MLP_BIAS = 1u << 5,     // biases in the MLP
    BLOCK_FINAL_NORM = 1u << 6,   // a LayerNorm before the logits                (not OPT-350m)
    BLOCK_RMSNORM = 1u << 7,      // RMSNorm instead of LayerNorm: no mean, no bias (Llama)
    BLOCK_GATED_MLP = 1u << 8,    // down(act(gate x) * up x) instead of fc_proj(act(fc x)) (Llama)
    BLOCK_GPT2 = BLOCK_QKV_BIAS | BLOCK_PROJ_BIAS | BLOCK_MLP_BIAS | BLOCK_FINAL_NORM,
    BLOCK_KNOWN = 0x1ff,
};
enum { FAMILY_GPT2, FAMILY_GPT_NEO, FAMILY_GPT_NEOX, FAMILY_OPT, FAMILY_LLAMA, FAMILY_QWEN2 };
enum { ROPE_PLAIN = 0, ROPE_LLAMA3 = 1 };  // how the rotary frequencies are scaled
// The form a chat model's conversations were written in (its chat template).
enum { CHAT_NONE, CHAT_CHATML, CHAT_ZEPHYR, CHAT_LLAMA3 };
// How the weight matrices are stored: float32, or 8-bit blocks (export.py --dtype q8).
enum { WEIGHTS_F32 = 0, WEIGHTS_Q8 = 1 };

typedef struct {
    int n_layer;     // transformer blocks
    int n_head;      // attention heads per block
    int n_embd;      // C: width of the residual stream
    int n_inner;     // F: width of the MLP's hidden layer
    int n_ctx;       // longest sequence (learned positions)
    int vocab_size;  // V: rows of the token embedding
    float ln_eps;    // LayerNorm epsilon
    int activation;  // ACT_*
    uint32_t flags;  // FLAG_*
    int eos_id, bos_id;  // -1 when the model has none
    int version;     // of the checkpoint format: 1 (GPT-2) or 2
    int family;      // FAMILY_*, for messages
    uint32_t block;  // BLOCK_*
    int pos_offset;  // learned positions: position p is row p + pos_offset (OPT: 2)
    int rotary_dims; // BLOCK_ROTARY: the first rotary_dims of each head turn
    float rotary_base;
    int rope_scaling;  // ROPE_*; with ROPE_LLAMA3 the four values below
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_ctx;
    int n_kv_head;   // heads of keys and values (< n_head: grouped-query attention)
    int embed_dim;   // E: width of the token embedding (< n_embd: project_in/out)
    const unsigned char *windows;  // version 2: u32 per layer, 0 = global attention
    int chat;        // CHAT_*: how -i writes a conversation (Part IV)
    const unsigned char *chat_system;  // the template's own system message (chat_system_len bytes)
    uint32_t chat_system_len;
    int weight_type; // WEIGHTS_F32 or WEIGHTS_Q8
    uint64_t header_bytes, tok_offset, tok_bytes, weights_offset, weights_bytes, file_bytes;
} Config;

static const char *FAMILY_NAMES[] = {"gpt2", "gpt_neo", "gpt_neox", "opt", "llama", "qwen2"};

static uint64_t read_u64(const unsigned char *p) {
    return (uint64_t)read_u32le(p) | (uint64_t)read_u32le(p + 4) << 32;
}
static float read_f32(const unsigned char *p) {
    uint32_t u = read_u32le(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// A memory-mapped file.
typedef struct {
    unsigned char *data;
    size_t size;
} Mapping;

// Part II: mmap read-only, at a huge-page boundary where that helps.
static void *map_at_huge_boundary(int fd, size_t size);

static void map_file(Mapping *m, const char *path) {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) die(EXIT_MODEL, "cannot open model '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) die(EXIT_MODEL, "cannot stat model '%s': %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) die(EXIT_MODEL, "model '%s' is not a regular file", path);
    if (st.st_size < 16) die(EXIT_MODEL, "model '%s' is too short (%lld bytes) to be a checkpoint", path, (long long)st.st_size);
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX) die(EXIT_MODEL, "model '%s' is too large to map", path);
    m->size = (size_t)st.st_size;
    void *p = map_at_huge_boundary(fd, m->size);
    if (p == MAP_FAILED) die(EXIT_MODEL, "cannot map model '%s': %s", path, strerror(errno));
    close(fd);
    m->data = p;
}

static void unmap_file(Mapping *m) {
    if (m->data) munmap(m->data, m->size);
    m->data = NULL;
}

// The bytes of weights a Config implies: I.3 walks the list of tensors.
static uint64_t expected_weight_bytes(const Config *c);

// Write a message into err and return -1.
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

// Version 2's description of the block (a version 1 file is GPT-2's block).
static int read_block(Config *c, const unsigned char *h, char *err, size_t errlen) {
    int hd = c->n_embd / c->n_head;
    if (c->version == 1) {
        c->family = FAMILY_GPT2;
        c->block = BLOCK_GPT2;
        c->pos_offset = 0;
        c->rotary_dims = 0;
        c->rotary_base = 0.0f;
        c->embed_dim = c->n_embd;
        c->windows = NULL;
        c->n_kv_head = c->n_head;
        c->rope_scaling = ROPE_PLAIN;
        c->chat = CHAT_NONE;
        c->chat_system_len = 0;
        c->weight_type = WEIGHTS_F32;
        return 0;
    }
    uint32_t family = read_u32le(h + 100), block = read_u32le(h + 104), offset = read_u32le(h + 108);
    uint32_t rotary = read_u32le(h + 112), embed = read_u32le(h + 120);
    float base = read_f32(h + 116);
    if (family > FAMILY_QWEN2) return fail(err, errlen, "unknown family code %u", family);
    if (block & ~(uint32_t)BLOCK_KNOWN) return fail(err, errlen, "unknown block bits 0x%x", block);
    uint32_t kv = read_u32le(h + 124), scaling = read_u32le(h + 128);
    if (kv == 0) kv = (uint32_t)c->n_head;  // 0: as many as query heads
    if (kv > (uint32_t)c->n_head || c->n_head % kv)
        return fail(err, errlen, "n_kv_head %u must divide n_head %d", kv, c->n_head);
    c->n_kv_head = (int)kv;
    if (scaling > ROPE_LLAMA3) return fail(err, errlen, "unknown rope scaling code %u", scaling);
    c->rope_scaling = (int)scaling;
    c->rope_factor = read_f32(h + 132);
    c->rope_low_freq_factor = read_f32(h + 136);
    c->rope_high_freq_factor = read_f32(h + 140);
    c->rope_original_ctx = (int)read_u32le(h + 144);
    uint32_t chat = read_u32le(h + 148);
    if (chat > CHAT_LLAMA3) return fail(err, errlen, "unknown chat template code %u", chat);
    c->chat = (int)chat;
    c->chat_system_len = read_u32le(h + 152);  // where it lies is checked with the sections
    uint32_t weight_type = read_u32le(h + 156);
    if (weight_type > WEIGHTS_Q8) return fail(err, errlen, "unknown weight type code %u", weight_type);
    c->weight_type = (int)weight_type;
    if (scaling == ROPE_LLAMA3 &&
        !(c->rope_factor >= 1.0f && c->rope_factor < 1e6f && c->rope_low_freq_factor > 0.0f &&
          c->rope_high_freq_factor > c->rope_low_freq_factor && c->rope_high_freq_factor < 1e6f &&
          c->rope_original_ctx > 0 && c->rope_original_ctx <= (1 << 24) && (block & BLOCK_ROTARY)))
        return fail(err, errlen, "llama3 rope scaling (factor %g, low %g, high %g, original context %d) is out of range",
                    c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_ctx);
    if ((block & BLOCK_POST_LN) && (block & BLOCK_PARALLEL))
        return fail(err, errlen, "block bits 0x%x: post-LN and a parallel residual exclude each other", block);
    if (offset > (1u << 20)) return fail(err, errlen, "position_offset %u is out of range (0..%u)", offset, 1u << 20);
    if (block & BLOCK_ROTARY) {
        if (rotary < 2 || rotary > (uint32_t)hd || rotary % 2)
            return fail(err, errlen, "rotary_dims %u: must be even and 2..%d (the head size)", rotary, hd);
        if (!(base > 1.0f && base < 1e30f)) return fail(err, errlen, "rotary_base %g is out of range (> 1)", base);
    } else if (rotary != 0) {
        return fail(err, errlen, "rotary_dims %u without rotary positions (block bit 2)", rotary);
    }
    if (embed == 0 || embed > (uint32_t)c->n_embd)
        return fail(err, errlen, "embed_dim %u is out of range (1..n_embd %d)", embed, c->n_embd);
    c->family = (int)family;
    c->block = block;
    c->pos_offset = (int)offset;
    c->rotary_dims = (int)rotary;
    c->rotary_base = base;
    c->embed_dim = (int)embed;
    c->windows = h + HEADER_BYTES;
    for (int l = 0; l < c->n_layer; l++)
        if (read_u32le(c->windows + 4 * l) > (1u << 20))
            return fail(err, errlen, "layer %d: attention window %u is out of range (0..%u)", l,
                        read_u32le(c->windows + 4 * l), 1u << 20);
    return 0;
}

// The attention window of layer l: 0 for global attention.
static int layer_window(const Config *c, int l) {
    return c->windows ? (int)read_u32le(c->windows + 4 * l) : 0;
}

// Parse and check the header against the file's size; every field is
// validated before any weight is touched. Returns 0, or -1 with a reason in
// err. Dimensions are bounded so that all size arithmetic fits comfortably
// in 64 bits.
static int read_config(Config *c, const unsigned char *h, size_t size, char *err, size_t errlen) {
    if (size < HEADER_BYTES) return fail(err, errlen, "file is %zu bytes, shorter than the %d-byte header", size, HEADER_BYTES);
    uint32_t version = read_u32le(h + 8), header_bytes = read_u32le(h + 12);
    if (version != 1 && version != 2) return fail(err, errlen, "format version %u, this run reads versions 1 and 2", version);
    c->version = (int)version;
    uint32_t raw[6];
    const char *names[6] = {"n_layer", "n_head", "n_embd", "n_inner", "n_ctx", "vocab_size"};
    const uint32_t limits[6] = {4096, 4096, 1u << 16, 1u << 20, 1u << 20, 1u << 24};
    for (int i = 0; i < 6; i++) {
        raw[i] = read_u32le(h + 16 + 4 * i);
        if (raw[i] == 0 || raw[i] > limits[i])
            return fail(err, errlen, "%s = %u is out of range (1..%u)", names[i], raw[i], limits[i]);
    }
    c->n_layer = raw[0]; c->n_head = raw[1]; c->n_embd = raw[2];
    c->n_inner = raw[3]; c->n_ctx = raw[4]; c->vocab_size = raw[5];
    uint64_t want_header = version == 1 ? HEADER_BYTES : HEADER_BYTES + ((uint64_t)4 * c->n_layer + 63) / 64 * 64;
    if (header_bytes != want_header)
        return fail(err, errlen, "header size %u, expected %llu for version %u", header_bytes, (unsigned long long)want_header, version);
    if (header_bytes > size) return fail(err, errlen, "file is %zu bytes, shorter than its %u-byte header", size, header_bytes);
    c->header_bytes = header_bytes;
    if (read_block(c, h, err, errlen) != 0) return -1;
    if (c->n_embd % c->n_head != 0)
        return fail(err, errlen, "n_embd %d is not a multiple of n_head %d", c->n_embd, c->n_head);
    c->ln_eps = read_f32(h + 40);
    if (!(c->ln_eps >= 0 && c->ln_eps < 1))
        return fail(err, errlen, "layer_norm_epsilon %g is out of range (0 <= eps < 1)", c->ln_eps);
    c->activation = (int)read_u32le(h + 44);
    if (c->activation < 0 || c->activation > ACT_SILU) return fail(err, errlen, "unknown activation code %u", read_u32le(h + 44));
    c->flags = read_u32le(h + 48);
    if (c->flags & ~7u) return fail(err, errlen, "unknown flag bits 0x%x", c->flags);
    c->eos_id = (int32_t)read_u32le(h + 52);
    c->bos_id = (int32_t)read_u32le(h + 96);
    if (c->eos_id < -1 || c->eos_id >= c->vocab_size) return fail(err, errlen, "eos_token_id %d is not a token id", c->eos_id);
    if (c->bos_id < -1 || c->bos_id >= c->vocab_size) return fail(err, errlen, "bos_token_id %d is not a token id", c->bos_id);
    c->tok_offset = read_u64(h + 56);
    c->tok_bytes = read_u64(h + 64);
    c->weights_offset = read_u64(h + 72);
    c->weights_bytes = read_u64(h + 80);
    c->file_bytes = read_u64(h + 88);
    if (c->file_bytes != size)
        return fail(err, errlen, "header says %llu bytes but the file has %zu (truncated or damaged?)", (unsigned long long)c->file_bytes, size);
    if (c->tok_offset != c->header_bytes || c->tok_bytes > size - c->header_bytes)
        return fail(err, errlen, "tokenizer section (offset %llu, %llu bytes) lies outside the file",
            (unsigned long long)c->tok_offset, (unsigned long long)c->tok_bytes);
    if (c->weights_offset % WEIGHT_ALIGN || c->weights_offset < c->tok_offset + c->tok_bytes || c->weights_offset > size)
        return fail(err, errlen, "weights offset %llu is misplaced", (unsigned long long)c->weights_offset);
    // version 2: the chat template's system message follows the tokenizer section
    if (c->chat_system_len > c->weights_offset - (c->tok_offset + c->tok_bytes))
        return fail(err, errlen, "the chat system message (%u bytes) runs into the weights", c->chat_system_len);
    if (c->chat_system_len && c->chat == CHAT_NONE)
        return fail(err, errlen, "a chat system message without a chat template");
    c->chat_system = h + c->tok_offset + c->tok_bytes;
    uint64_t want = expected_weight_bytes(c);
    if (c->weights_bytes != want)
        return fail(err, errlen, "weights section is %llu bytes, but the config implies %llu",
            (unsigned long long)c->weights_bytes, (unsigned long long)want);
    if (c->weights_bytes != size - c->weights_offset)
        return fail(err, errlen, "weights section (%llu bytes at %llu) does not end at the end of the file (%zu)",
            (unsigned long long)c->weights_bytes, (unsigned long long)c->weights_offset, size);
    return 0;
}

// ----------------------------------------------------------------------------
// I.3 Weights and RunState

// A weight matrix W (rows, cols), as the checkpoint stores it: float32, or
// 8-bit, where each run of Q8_BLOCK weights along a row shares one scale:
// W[r][i] = scale[r][i / Q8_BLOCK] * q[r][i], q in -127..127. Every matrix of
// a checkpoint is stored the same way; a matrix the model lacks has both NULL.
typedef struct {
    const float *f;       // (rows, cols) float32; NULL when 8-bit
    const int8_t *q;      // (rows, cols) 8-bit weights; NULL when float32
    const float *scale;   // (rows, ceil(cols / Q8_BLOCK)) their scales
} Matrix;

static int matrix_present(const Matrix *W) { return W->f || W->q; }

// Row r of W (rows, cols) as float32: out (cols)
static void matrix_row(float *out, const Matrix *W, int r, int cols) {
    if (W->f) { memcpy(out, W->f + (size_t)r * cols, cols * sizeof(float)); return; }
    const int8_t *q = W->q + (size_t)r * cols;
    const float *scale = W->scale + (size_t)r * ((cols + Q8_BLOCK - 1) / Q8_BLOCK);
    for (int i = 0; i < cols; i++) out[i] = scale[i / Q8_BLOCK] * q[i];
}

// A bias the block does not have is NULL (matmul then adds nothing).
typedef struct {
    const float *ln1_w, *ln1_b;      // (C)
    Matrix qkv_w; const float *qkv_b;      // (3C, C), (3C)
    Matrix proj_w; const float *proj_b;    // (C, C), (C)
    const float *ln2_w, *ln2_b;      // (C)
    Matrix fc_w; const float *fc_b;        // (F, C), (F); the gate with a gated MLP
    Matrix up_w;                     // (F, C): a gated MLP's other half, else absent
    Matrix fc_proj_w; const float *fc_proj_b;  // (C, F), (C)
} LayerWeights;

typedef struct {
    Matrix wte;          // (V, E) token embeddings (E = C but for OPT-350m)
    const float *wpe;    // (n_ctx + pos_offset, C) position embeddings; NULL with rotary positions
    Matrix project_in;   // (C, E), absent when E = C
    LayerWeights *layers;
    const float *lnf_w, *lnf_b;  // (C); NULL without a final LayerNorm
    Matrix project_out;  // (E, C), absent when E = C
    Matrix lm_head;      // (V, E): wte when tied
} Weights;

// Bytes of one tensor padded to the alignment; 0 on overflow.
static uint64_t aligned_tensor_bytes(uint64_t n_floats) {
    if (n_floats > (UINT64_MAX / 8)) return 0;
    uint64_t b = n_floats * 4;
    return (b + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
}

// The next tensor of n floats at *offset in the weights section: its address
// (NULL when only counting, base NULL), and *offset moves past its padding.
static const float *next_tensor(const unsigned char *base, uint64_t *offset, uint64_t n) {
    const float *t = base ? (const float *)(base + *offset) : NULL;
    *offset += aligned_tensor_bytes(n);
    return t;
}

// The next weight matrix (rows, cols): one float32 tensor, or (8-bit) the
// rows*cols int8 weights, padded, then the rows*ceil(cols/Q8_BLOCK) float
// scales as a tensor.
static Matrix next_matrix(const unsigned char *base, uint64_t *offset, uint64_t rows, uint64_t cols, int type) {
    Matrix m = {0};
    if (type == WEIGHTS_F32) {
        m.f = next_tensor(base, offset, rows * cols);
        return m;
    }
    m.q = base ? (const int8_t *)(base + *offset) : NULL;
    *offset += aligned_tensor_bytes((rows * cols + 3) / 4);  // bytes, counted as floats rounded up
    m.scale = next_tensor(base, offset, rows * ((cols + Q8_BLOCK - 1) / Q8_BLOCK));
    return m;
}

// The tensors in the order export.py writes them: the one list both for
// counting the bytes a Config implies and for pointing Weights into the
// mapping. With w->layers NULL the per-layer pointers are not kept. Returns
// the size of the weights section.
static uint64_t walk_weights(Weights *w, const Config *c, const unsigned char *base) {
    uint64_t C = c->n_embd, F = c->n_inner, V = c->vocab_size, E = c->embed_dim, off = 0;
    uint64_t QKV = C + 2 * (C / c->n_head) * c->n_kv_head;  // rows of q, then k, then v
    uint32_t b = c->block;
    int projected = E < C, ln_bias = !(b & BLOCK_RMSNORM);
    LayerWeights scratch;
    Matrix none = {0};
#define TENSOR(n) next_tensor(base, &off, (n))
#define TENSOR_IF(cond, n) ((cond) ? TENSOR(n) : NULL)
#define MATRIX(rows, cols) next_matrix(base, &off, (rows), (cols), c->weight_type)
#define MATRIX_IF(cond, rows, cols) ((cond) ? MATRIX(rows, cols) : none)
    w->wte = MATRIX(V, E);
    w->wpe = TENSOR_IF(!(b & BLOCK_ROTARY), ((uint64_t)c->n_ctx + c->pos_offset) * C);
    w->project_in = MATRIX_IF(projected, C, E);
    for (int l = 0; l < c->n_layer; l++) {
        LayerWeights *L = w->layers ? &w->layers[l] : &scratch;
        L->ln1_w = TENSOR(C);            L->ln1_b = TENSOR_IF(ln_bias, C);
        L->qkv_w = MATRIX(QKV, C);       L->qkv_b = TENSOR_IF(b & BLOCK_QKV_BIAS, QKV);
        L->proj_w = MATRIX(C, C);        L->proj_b = TENSOR_IF(b & BLOCK_PROJ_BIAS, C);
        L->ln2_w = TENSOR(C);            L->ln2_b = TENSOR_IF(ln_bias, C);
        L->fc_w = MATRIX(F, C);          L->fc_b = TENSOR_IF(b & BLOCK_MLP_BIAS, F);
        L->up_w = MATRIX_IF(b & BLOCK_GATED_MLP, F, C);
        L->fc_proj_w = MATRIX(C, F);     L->fc_proj_b = TENSOR_IF(b & BLOCK_MLP_BIAS, C);
    }
    w->lnf_w = TENSOR_IF(b & BLOCK_FINAL_NORM, C);
    w->lnf_b = TENSOR_IF((b & BLOCK_FINAL_NORM) && ln_bias, C);
    w->project_out = MATRIX_IF(projected, E, C);
    w->lm_head = (c->flags & FLAG_UNTIED_LM_HEAD) ? MATRIX(V, E) : w->wte;
#undef MATRIX_IF
#undef MATRIX
#undef TENSOR_IF
#undef TENSOR
    return off;
}

static uint64_t expected_weight_bytes(const Config *c) {
    Weights counting = {0};
    return walk_weights(&counting, c, NULL);
}

// Point each tensor into the mapping (read_config has checked the sizes).
static void weights_map(Weights *w, const Config *c, const unsigned char *file) {
    memset(w, 0, sizeof *w);
    w->layers = xcalloc(c->n_layer, sizeof(LayerWeights));
    walk_weights(w, c, file + c->weights_offset);
}

static void weights_free(Weights *w) {
    free(w->layers);
    w->layers = NULL;
}

// Activations for a tile of up to max_T positions, and the KV cache.
typedef struct {
    int max_T;      // positions processed together (1 when decoding)
    int seq_len;    // positions the KV cache holds (<= n_ctx)
    float *x;       // (T, C) residual stream
    float *xn;      // (T, C) LayerNorm output
    float *qkv;     // (T, C + 2 KVd) queries, keys, values (KVd = n_kv_head * hd; = C but with GQA)
    float *att_out; // (T, C) attention output, heads side by side
    float *att;     // (H, 6, seq_len rounded up to 16) scratch: scores, then weights, per head
    float *kpack;   // (H, seq_len rounded up to 16, hd) scratch: a head's keys in panels (prefill)
    float *hidden;  // (T, F) MLP hidden layer
    float *up;      // (T, F) a gated MLP's second half, else NULL
    float *logits;  // (logits_rows, V)
    int logits_rows;  // min(max_T, LOGITS_TILE)
    float *k_cache; // (L, KVH, seq_len, hd): KVH = n_kv_head key/value heads
    float *v_cache; // (L, KVH, seq_len, hd)
    size_t cache_floats;  // in each of k_cache and v_cache
    float *rope_cos, *rope_sin;  // (seq_len, rotary_dims / 2): rotary positions' angles, NULL without
} RunState;

// With --attention and friends, the attention weights of every layer and
// head are kept: for each, a lower-triangular matrix whose row i holds the
// weights of query i over keys 0..i (section 9 shows them).
typedef struct AttentionLog {
    int n_layer, n_head;
    size_t tri;                // floats per (layer, head): cap (cap + 1) / 2 for cap positions
    float *w;                  // (L, H, tri)
} AttentionLog;

#define PREFILL_TILE 256  // prompt positions that go through the layers together
#define LOGITS_TILE 64     // positions per tile when every position's logits are kept

// Part II: the KV cache's memory (zeroed, in huge pages where offered).
static float *cache_alloc(size_t n_floats);
static void cache_free(float *p, size_t n_floats);


// Llama 3's rope scaling stretches the slow rotations (long wavelengths) by
// `factor`, keeps the fast ones, and blends in between.
static float llama3_scaled(float inv_freq, const Config *c) {
    float old = (float)c->rope_original_ctx, factor = c->rope_factor;
    float low_wavelen = old / c->rope_low_freq_factor, high_wavelen = old / c->rope_high_freq_factor;
    float wavelen = 2.0f * 3.14159265358979323846f / inv_freq;
    if (wavelen < high_wavelen) return inv_freq;
    if (wavelen > low_wavelen) return inv_freq / factor;
    float smooth = (old / wavelen - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
    return (1.0f - smooth) * inv_freq / factor + smooth * inv_freq;
}

// Rotary positions (GPT-NeoX, Llama): the pair of dimensions (i, i + d/2) of
// a head's query and key at position p turns by the angle
// theta = p * base^(-2i/d), d = rotary_dims; cos and sin of every angle,
// computed once, in float32 as transformers computes them.
static void rope_tables(RunState *s, const Config *c) {
    int half = c->rotary_dims / 2;
    s->rope_cos = xcalloc((size_t)s->seq_len * half, sizeof(float));
    s->rope_sin = xcalloc((size_t)s->seq_len * half, sizeof(float));
    for (int i = 0; i < half; i++) {
        float inv_freq = 1.0f / powf(c->rotary_base, (float)(2 * i) / (float)c->rotary_dims);
        if (c->rope_scaling == ROPE_LLAMA3) inv_freq = llama3_scaled(inv_freq, c);
        for (int p = 0; p < s->seq_len; p++) {
            float theta = (float)p * inv_freq;
            s->rope_cos[(size_t)p * half + i] = cosf(theta);
            s->rope_sin[(size_t)p * half + i] = sinf(theta);
        }
    }
}

static void runstate_init(RunState *s, const Config *c, int seq_len) {
    int max_T = seq_len < PREFILL_TILE ? seq_len : PREFILL_TILE;
    size_t C = c->n_embd, F = c->n_inner, V = c->vocab_size, T = max_T;
    size_t KVd = (C / c->n_head) * c->n_kv_head;
    s->max_T = max_T;
    s->seq_len = seq_len;
    s->x = xcalloc(T * C, sizeof(float));
    s->xn = xcalloc(T * C, sizeof(float));
    s->qkv = xcalloc(T * (C + 2 * KVd), sizeof(float));
    s->att_out = xcalloc(T * C, sizeof(float));
    size_t S16 = ((size_t)seq_len + 15) / 16 * 16;
    s->att = xcalloc((size_t)c->n_head * 6 * S16, sizeof(float));
    s->kpack = xcalloc(S16 * C, sizeof(float));
    s->hidden = xcalloc(T * F, sizeof(float));
    s->up = c->block & BLOCK_GATED_MLP ? xcalloc(T * F, sizeof(float)) : NULL;
    s->logits_rows = max_T < LOGITS_TILE ? max_T : LOGITS_TILE;
    s->logits = xcalloc((size_t)s->logits_rows * V, sizeof(float));
    size_t cache = (size_t)c->n_layer * seq_len * KVd;
    s->cache_floats = cache;
    s->k_cache = cache_alloc(cache);
    s->v_cache = cache_alloc(cache);
    if (c->block & BLOCK_ROTARY) rope_tables(s, c);
}

static void runstate_free(RunState *s) {
    free(s->x); free(s->xn); free(s->qkv); free(s->att_out); free(s->att); free(s->kpack);
    free(s->hidden); free(s->up); free(s->logits); free(s->rope_cos); free(s->rope_sin);
    cache_free(s->k_cache, s->cache_floats);
    cache_free(s->v_cache, s->cache_floats);
    memset(s, 0, sizeof *s);
}

static AttentionLog *attention_log_new(const Config *c, int cap) {
    AttentionLog *g = xcalloc(1, sizeof *g);
    g->n_layer = c->n_layer;
    g->n_head = c->n_head;
    g->tri = (size_t)cap * (cap + 1) / 2;
    g->w = xcalloc((size_t)c->n_layer * c->n_head * g->tri, sizeof(float));
    return g;
}

static void attention_log_free(AttentionLog *g) {
    if (!g) return;
    free(g->w);
    free(g);
}

// ----------------------------------------------------------------------------
// I.4 The plain kernels
//
// Each kernel is the plain loop that says what it computes, with the shapes
// it works on. Part II has faster versions of each, checked against these.

// s = a (n) . b (n)
static float dot_plain(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// With 8-bit weights the input is put in 8 bits too, the same way (as the
// leading C++ engine's Q8_0 does): each block of Q8_BLOCK values gets the
// scale max|x| / 127 and the values rint(x / scale), x (n) -> q (n), scale.
// A product of two blocks is then one integer dot product times two scales,
// which vector units do 32 at a time.
static void quantize_q8(int8_t *q, float *scale, const float *x, int n) {
    for (int j = 0; j * Q8_BLOCK < n; j++) {
        int lo = j * Q8_BLOCK, hi = lo + Q8_BLOCK < n ? lo + Q8_BLOCK : n;
        float m = 0.0f;
        for (int i = lo; i < hi; i++) m = fmaxf(m, fabsf(x[i]));
        float s = m / 127.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
        scale[j] = s;
        for (int i = lo; i < hi; i++) {
            float v = rintf(x[i] * inv);  // to nearest, ties to even
            q[i] = (int8_t)(v == v ? fmaxf(-127.0f, fminf(127.0f, v)) : 0.0f);  // (NaN from a broken model: 0)
        }
    }
}

// s = x (n) . w (n), both in 8 bits (values qx, qw and their blocks' scales):
// per block, the integer dot product times the two scales
static float dot_q8_plain(const int8_t *qx, const float *sx, const int8_t *qw, const float *sw, int n) {
    float s = 0.0f;
    for (int j = 0; j * Q8_BLOCK < n; j++) {
        int32_t d = 0;
        for (int i = j * Q8_BLOCK; i < n && i < (j + 1) * Q8_BLOCK; i++) d += qx[i] * qw[i];
        s += (float)d * (sx[j] * sw[j]);
    }
    return s;
}

// The rows of inp (T,C) in 8 bits, for a product with an 8-bit W
typedef struct { int8_t *q; float *scale; int blocks; } Q8Rows;

static Q8Rows q8_rows_new(const float *inp, int T, int C) {
    Q8Rows r = {xmalloc((size_t)T * C), NULL, (C + Q8_BLOCK - 1) / Q8_BLOCK};
    r.scale = xmalloc(sizeof(float) * T * r.blocks);
    for (int t = 0; t < T; t++) quantize_q8(r.q + (size_t)t * C, r.scale + (size_t)t * r.blocks, inp + (size_t)t * C, C);
    return r;
}

static void q8_rows_free(Q8Rows *r) {
    free(r->q);
    free(r->scale);
}

// out (T,OC) = inp (T,C) @ W^T (OC,C) + b (OC)
static void matmul_plain(float *out, const float *inp, const Matrix *W, const float *b, int T, int C, int OC) {
    if (W->q) {  // 8-bit W: inp in 8 bits too, then integer dot products
        Q8Rows x = q8_rows_new(inp, T, C);
        for (int t = 0; t < T; t++)
            for (int o = 0; o < OC; o++)
                out[(size_t)t * OC + o] = dot_q8_plain(x.q + (size_t)t * C, x.scale + (size_t)t * x.blocks,
                                                       W->q + (size_t)o * C, W->scale + (size_t)o * x.blocks, C) +
                                          (b ? b[o] : 0.0f);
        q8_rows_free(&x);
        return;
    }
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++)
            out[(size_t)t * OC + o] = dot_plain(inp + (size_t)t * C, W->f + (size_t)o * C, C) + (b ? b[o] : 0.0f);
}

// out (C) = (x (C) - mean) / sqrt(var + eps) * w (C) + b (C)
static void layernorm(float *out, const float *x, const float *w, const float *b, int C, float eps) {
    float mean = 0.0f;
    for (int i = 0; i < C; i++) mean += x[i];
    mean /= C;
    float var = 0.0f;
    for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    float rstd = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < C; i++) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

// out (C) = x (C) / sqrt(mean(x^2) + eps) * w (C): RMSNorm (Llama), a
// LayerNorm that neither subtracts the mean nor adds a bias
static void rmsnorm(float *out, const float *x, const float *w, int C, float eps) {
    float ms = 0.0f;
    for (int i = 0; i < C; i++) ms += x[i] * x[i];
    ms /= C;
    float r = 1.0f / sqrtf(ms + eps);
    for (int i = 0; i < C; i++) out[i] = w[i] * (x[i] * r);
}

// GELU, tanh approximation (GPT-2's "gelu_new"):
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
static float gelu_tanh(float x) {
    const float k = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// x (n) = act(x), in place
static void activate_plain(float *x, size_t n, int activation) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        switch (activation) {
        case ACT_GELU_TANH: x[i] = gelu_tanh(v); break;
        case ACT_GELU_ERF: x[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        case ACT_RELU: x[i] = v > 0 ? v : 0; break;
        default: x[i] = v / (1.0f + expf(-v)); break;  // SiLU
        }
    }
}

// x (n) = softmax(x) = exp(x - max) / sum exp(x - max)
static void softmax_plain(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

// scores (n) = K (n,hd) @ q (hd) * scale: one query against n keys
static void scores_plain(float *scores, const float *q, const float *K, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) scores[j] = dot_plain(q, K + (size_t)j * hd, hd) * scale;
}

// out (hd) = w (n) @ V (n,hd): the values mixed by the attention weights
static void weighted_sum_plain(float *out, const float *w, const float *V, int n, int hd) {
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < hd; i++) out[i] += w[j] * V[(size_t)j * hd + i];
}

// x (n) += y (n)
static void residual_add(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// x (n) *= y (n), elementwise: a gated MLP's gate times its other half
static void multiply(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] *= y[i];
}

// out (T,C) = layernorm of each row of x (T,C)
static void layernorm_rows_plain(float *out, const float *x, const float *w, const float *b, int T, int C, float eps) {
    for (int t = 0; t < T; t++) layernorm(out + (size_t)t * C, x + (size_t)t * C, w, b, C, eps);
}

// out (T,C) = rmsnorm of each row of x (T,C)
static void rmsnorm_rows_plain(float *out, const float *x, const float *w, int T, int C, float eps) {
    for (int t = 0; t < T; t++) rmsnorm(out + (size_t)t * C, x + (size_t)t * C, w, C, eps);
}

// x (T,F) = act(x), in place
static void activate_rows_plain(float *x, int T, int F, int activation) {
    activate_plain(x, (size_t)T * F, activation);
}

// x (T,F) = act(x) * up (T,F), in place
static void gate_rows_plain(float *x, const float *up, int T, int F, int activation) {
    activate_plain(x, (size_t)T * F, activation);
    multiply(x, up, (size_t)T * F);
}

// ----------------------------------------------------------------------------
// I.5 The kernel table
//
// The forward pass calls its heavy operations through a table chosen once at
// start-up: PLAIN_KERNELS below, the loops of I.4 on one thread
// (--plain-kernels), or the fast table of Part II, the same operations with
// vector instructions and blocked products, spread over worker threads. The
// forward pass reads the same either way.

// A slice [start, end) of some work of n items, run by parallel_for.
typedef void (*RangeFn)(void *ctx, int start, int end);

typedef struct {
    // out (T,OC) = inp (T,C) @ W^T (OC,C) + b (OC); b may be NULL
    void (*matmul)(float *out, const float *inp, const Matrix *W, const float *b, int T, int C, int OC);
    // out (T,C) = layernorm of each row of x (T,C)
    void (*layernorm)(float *out, const float *x, const float *w, const float *b, int T, int C, float eps);
    // out (T,C) = rmsnorm of each row of x (T,C)
    void (*rmsnorm)(float *out, const float *x, const float *w, int T, int C, float eps);
    // x (T,F) = act(x)
    void (*activate)(float *x, int T, int F, int activation);
    // x (T,F) = act(x) * up (T,F): a gated MLP's two halves combined
    void (*gate)(float *x, const float *up, int T, int F, int activation);
    // attention's steps for one query (see attention_heads)
    void (*scores)(float *scores, const float *q, const float *K, int n, int hd, float scale);
    void (*softmax)(float *x, int n);
    void (*weighted_sum)(float *out, const float *w, const float *V, int n, int hd);
    // all T queries of one head at once, as blocked products; returns 0 when
    // it does not apply (then the per-query loop runs). NULL: never.
    int (*attend_tile)(float *out, size_t ldo, const float *q, size_t ldq, const float *K, const float *V,
                       int T, int pos0, int hd, float scale, float *kpack, float *p, size_t ldp, float *log);
    // fn(ctx, start, end) over [0, n): in one call, or in chunks over threads
    void (*parallel_for)(int n, RangeFn fn, void *ctx);
} Kernels;

static void serial_for(int n, RangeFn fn, void *ctx) { fn(ctx, 0, n); }

static const Kernels PLAIN_KERNELS = {
    .matmul = matmul_plain, .layernorm = layernorm_rows_plain, .rmsnorm = rmsnorm_rows_plain, .activate = activate_rows_plain,
    .gate = gate_rows_plain,
    .scores = scores_plain, .softmax = softmax_plain, .weighted_sum = weighted_sum_plain,
    .attend_tile = NULL, .parallel_for = serial_for,
};

// ----------------------------------------------------------------------------
// I.6 The forward pass
//
// forward() runs T new tokens at positions pos0 .. pos0+T-1 through the model,
// with the keys and values of all earlier positions already in the cache.
// Decoding calls it with T = 1; a prompt goes through in tiles of T tokens.

typedef struct {
    Config config;
    Weights weights;
    RunState state;
    Mapping file;
    Tokenizer *tokenizer;
    const Kernels *k;       // PLAIN_KERNELS, or Part II's fast_kernels()
    AttentionLog *att_log;  // kept attention weights, NULL unless asked for
    // Part III's look at the forward pass as it goes (--logit-lens, --trace):
    // called at the named steps below; NULL, never called
    void (*probe)(void *ctx, int step, int layer, const float *x, int T, int pos0);
    void *probe_ctx;
} Model;

// The steps a probe sees: x (T, C) is the embedding, a sublayer's input or
// output, or the residual stream after a layer.
enum { PROBE_EMBEDDING, PROBE_ATTN_IN, PROBE_ATTN_OUT, PROBE_MLP_IN, PROBE_MLP_OUT, PROBE_LAYER };

// What one layer's attention works on (groups of heads are independent, so
// the worker pool may take them in any order). qkv (T, ld) holds the
// queries, keys and values of the new positions: C query columns (head h at
// h*hd), then KVd key columns, then KVd value columns (kv head g at g*hd);
// GPT-2 has as many key/value heads as query heads, Llama-style models fewer
// (grouped-query attention: query head h reads kv head h / (H / KVH)). The
// layer's cache holds (KVH, S, hd) keys and values; out (T,C) gets each
// head's result in its hd columns; att (H, 6, S16) is each head's scratch
// for scores and weights, kpack (H, S16, hd) for its keys in panels (Part II).
typedef struct {
    const Kernels *k;
    float *out, *att, *kpack, *k_cache, *v_cache;
    float *qkv;
    int T, pos0, C, n_head, n_kv_head, S, S16;
    float scale;
    int window;      // 0, or how many keys back a query sees (GPT-Neo's local layers)
    const float *rope_cos, *rope_sin;  // rotary positions (GPT-NeoX), else NULL
    int rope_half;   // rotary_dims / 2
    float *log;      // NULL, or where to keep this layer's weights: (H, tri)
    size_t log_tri;  // floats per head in the log
} AttentionArgs;

// Rotary positions (GPT-NeoX): a query's or key's dimensions (i, i + half),
// i < half, turn by the angle of its position (cos, sin: (half) each).
static void rotate_by_position(float *x, const float *cos, const float *sin, int half) {
    for (int i = 0; i < half; i++) {
        float a = x[i], b = x[i + half];
        x[i] = a * cos[i] - b * sin[i];
        x[i + half] = b * cos[i] + a * sin[i];
    }
}

// Attention of one query head h over the keys K and values V (S, hd) in the
// cache: for each of the tile's queries, scores against every key it may see,
// softmax, and the weighted sum of the values.
static void attend_head(AttentionArgs *a, int h, const float *K, const float *V) {
    const Kernels *k = a->k;
    int C = a->C, hd = C / a->n_head, KVd = hd * a->n_kv_head;
    size_t ld = (size_t)C + 2 * KVd;
    const float *q0 = a->qkv + h * hd;  // this head's query of the tile's first position
    float *out0 = a->out + h * hd;
    float *scores = a->att + (size_t)h * 6 * a->S16;
    float *log = a->log ? a->log + h * a->log_tri : NULL;
    // (Part II may take the whole tile at once as two blocked products: the same maths)
    if (k->attend_tile && (!a->window || a->pos0 + a->T <= a->window) &&
        k->attend_tile(out0, C, q0, ld, K, V, a->T, a->pos0, hd, a->scale,
                       a->kpack + (size_t)h * a->S16 * hd, scores, a->S16, log))
        return;
    for (int t = 0; t < a->T; t++) {  // one query at a time
        int pos = a->pos0 + t;
        const float *q = q0 + t * ld;
        // keys j <= pos only: the causal mask; a local layer (GPT-Neo)
        // also forgets keys more than `window` back
        int first = a->window && pos >= a->window ? pos - a->window + 1 : 0, n = pos + 1 - first;
        // scores[j] = q . k_j * scale
        k->scores(scores, q, K + (size_t)first * hd, n, hd, a->scale);
        // weights = softmax(scores)
        k->softmax(scores, n);
        if (log)  // --attention: keep row `pos` of this head's matrix
            memcpy(log + (size_t)pos * (pos + 1) / 2 + first, scores, n * sizeof(float));
        // out = sum_j weights[j] * v_j
        k->weighted_sum(out0 + (size_t)t * C, scores, V + (size_t)first * hd, n, hd);
    }
}

// Key/value heads [g_start, g_end): the tile's keys (and the queries that
// read them) turned by their positions where the model says so, then this
// tile's keys and values stored in the cache after those of earlier positions.
static void store_keys_values(void *ctx, int g_start, int g_end) {
    AttentionArgs *a = ctx;
    int C = a->C, hd = C / a->n_head, KVd = hd * a->n_kv_head, group = a->n_head / a->n_kv_head;
    size_t ld = (size_t)C + 2 * KVd;  // floats per position in qkv
    for (int g = g_start; g < g_end; g++) {
        float *K = a->k_cache + (size_t)g * a->S * hd;  // (S, hd)
        float *V = a->v_cache + (size_t)g * a->S * hd;  // (S, hd)
        float *k0 = a->qkv + C + g * hd, *v0 = k0 + KVd;  // this kv head's key and value, first position
        // GPT-2 added its positions to the embeddings; GPT-NeoX and Llama turn
        // the queries and keys instead, each by the angle of its position
        for (int t = 0; t < a->T && a->rope_cos; t++) {
            size_t at = (size_t)(a->pos0 + t) * a->rope_half;
            rotate_by_position(k0 + t * ld, a->rope_cos + at, a->rope_sin + at, a->rope_half);
            for (int h = g * group; h < (g + 1) * group; h++)
                rotate_by_position(a->qkv + t * ld + h * hd, a->rope_cos + at, a->rope_sin + at, a->rope_half);
        }
        // the KV cache: store this tile's keys and values after those of earlier positions
        for (int t = 0; t < a->T; t++) {
            memcpy(K + (size_t)(a->pos0 + t) * hd, k0 + t * ld, hd * sizeof(float));
            memcpy(V + (size_t)(a->pos0 + t) * hd, v0 + t * ld, hd * sizeof(float));
        }
    }
}

// Causal self-attention of query heads [h_start, h_end): each new query looks
// at the keys of every position up to its own and mixes their values. Query
// head h reads key/value head h / (H / KVH).
static void attention_heads(void *ctx, int h_start, int h_end) {
    AttentionArgs *a = ctx;
    int hd = a->C / a->n_head, group = a->n_head / a->n_kv_head;
    for (int h = h_start; h < h_end; h++) {
        size_t g = (size_t)(h / group);
        attend_head(a, h, a->k_cache + g * a->S * hd, a->v_cache + g * a->S * hd);
    }
}

// out (T,C): multi-head causal attention of the new positions over the cache
static void attention(Model *m, int layer, int T, int pos0) {
    Config *c = &m->config;
    RunState *s = &m->state;
    int C = c->n_embd, H = c->n_head, hd = C / H, S = s->seq_len;
    size_t KVd = (size_t)hd * c->n_kv_head;
    // GPT-2 divides the scores by sqrt(head size) (GPT-Neo does not); some configs also by layer + 1
    float scale = (c->flags & FLAG_SCALE_ATTN) ? 1.0f / sqrtf((float)hd) : 1.0f;
    if (c->flags & FLAG_SCALE_BY_LAYER) scale /= (float)(layer + 1);
    AttentionArgs a = {.k = m->k, .out = s->att_out, .att = s->att, .kpack = s->kpack,
                       .k_cache = s->k_cache + (size_t)layer * S * KVd, .v_cache = s->v_cache + (size_t)layer * S * KVd,
                       .qkv = s->qkv, .T = T, .pos0 = pos0, .C = C, .n_head = H, .n_kv_head = c->n_kv_head,
                       .S = S, .S16 = (S + 15) / 16 * 16,
                       .scale = scale, .window = layer_window(c, layer), .rope_cos = s->rope_cos,
                       .rope_sin = s->rope_sin, .rope_half = c->rotary_dims / 2};
    if (m->att_log) {
        a.log = m->att_log->w + (size_t)layer * H * m->att_log->tri;
        a.log_tri = m->att_log->tri;
    }
    m->k->parallel_for(c->n_kv_head, store_keys_values, &a);  // the cache first: every head reads it
    m->k->parallel_for(H, attention_heads, &a);
}

// out (T,C) = proj(attention(qkv(inp))) of layer l; out may be inp.
static void attention_sublayer(Model *m, int l, const float *inp, float *out, int T, int pos0) {
    const LayerWeights *L = &m->weights.layers[l];
    RunState *s = &m->state;
    int C = m->config.n_embd, KVd = C / m->config.n_head * m->config.n_kv_head;
    if (m->probe) m->probe(m->probe_ctx, PROBE_ATTN_IN, l, inp, T, pos0);
    m->k->matmul(s->qkv, inp, &L->qkv_w, L->qkv_b, T, C, C + 2 * KVd);  // qkv (T,3C): q, k, v
    attention(m, l, T, pos0);                                        // att_out (T,C)
    m->k->matmul(out, s->att_out, &L->proj_w, L->proj_b, T, C, C);     // out (T,C)
    if (m->probe) m->probe(m->probe_ctx, PROBE_ATTN_OUT, l, out, T, pos0);
}

// out (T,C) = fc_proj(act(fc(inp))) of layer l; out may be inp.
static void mlp_sublayer(Model *m, int l, const float *inp, float *out, int T, int pos0) {
    const LayerWeights *L = &m->weights.layers[l];
    RunState *s = &m->state;
    int C = m->config.n_embd, F = m->config.n_inner;
    if (m->probe) m->probe(m->probe_ctx, PROBE_MLP_IN, l, inp, T, pos0);
    m->k->matmul(s->hidden, inp, &L->fc_w, L->fc_b, T, C, F);         // hidden (T,F)
    if (matrix_present(&L->up_w)) {  // Llama's gated MLP (SwiGLU): hidden = silu(gate x) * (up x)
        m->k->matmul(s->up, inp, &L->up_w, NULL, T, C, F);
        m->k->gate(s->hidden, s->up, T, F, m->config.activation);
    } else {
        m->k->activate(s->hidden, T, F, m->config.activation);
    }
    m->k->matmul(out, s->hidden, &L->fc_proj_w, L->fc_proj_b, T, F, C);  // out (T,C)
    if (m->probe) m->probe(m->probe_ctx, PROBE_MLP_OUT, l, out, T, pos0);
}

// Run tokens[0..T) at positions pos0.. through the model. Logits are written
// for every position (LOGITS_ALL), only for the last one at row 0 of
// s->logits (LOGITS_LAST), or not at all (LOGITS_NONE: a prompt tile that
// is not the last).
enum { LOGITS_NONE, LOGITS_LAST, LOGITS_ALL };

// out (T,C) = the normalised rows of x (T,C): GPT-2 uses LayerNorm (minus
// the mean, over the standard deviation, times w plus b); Llama uses RMSNorm
// (over the root mean square, times w).
static void normalize(Model *m, float *out, const float *x, const float *w, const float *b, int T) {
    if (m->config.block & BLOCK_RMSNORM) m->k->rmsnorm(out, x, w, T, m->config.n_embd, m->config.ln_eps);
    else m->k->layernorm(out, x, w, b, T, m->config.n_embd, m->config.ln_eps);
}

// logits (n,V) of n rows x (n,C) of the residual stream: the final
// LayerNorm, then xn (n,C) @ lm_head^T (V,C), the token embedding used
// backwards unless the model has a head of its own. s->xn (and s->att_out)
// are its scratch. The logit lens (Part III) reads every layer through it.
static void unembed(Model *m, float *logits, const float *x, int n) {
    Weights *w = &m->weights;
    RunState *s = &m->state;
    int C = m->config.n_embd, E = m->config.embed_dim, V = m->config.vocab_size;
    if (w->lnf_w) normalize(m, s->xn, x, w->lnf_w, w->lnf_b, n);
    else memcpy(s->xn, x, sizeof(float) * n * C);  // OPT-350m has no final LayerNorm
    int projected = matrix_present(&w->project_out);
    if (projected) m->k->matmul(s->att_out, s->xn, &w->project_out, NULL, n, C, E);  // (n,E)
    m->k->matmul(logits, projected ? s->att_out : s->xn, &w->lm_head, NULL, n, E, V);
}

static void forward(Model *m, const int *tokens, int T, int pos0, int logits) {
    Config *c = &m->config;
    Weights *w = &m->weights;
    RunState *s = &m->state;
    const Kernels *k = m->k;
    int C = c->n_embd, E = c->embed_dim;

    // token embedding + position embedding: x (T,C)
    float *emb = matrix_present(&w->project_in) ? s->att_out : s->x;  // OPT-350m: (T,E), then project_in to (T,C)
    for (int t = 0; t < T; t++) matrix_row(emb + (size_t)t * E, &w->wte, tokens[t], E);
    if (matrix_present(&w->project_in)) k->matmul(s->x, emb, &w->project_in, NULL, T, E, C);
    for (int t = 0; t < T && w->wpe; t++) {  // learned positions (GPT-NeoX's are rotary: in attention)
        const float *pe = w->wpe + (size_t)(pos0 + t + c->pos_offset) * C;
        for (int i = 0; i < C; i++) s->x[(size_t)t * C + i] += pe[i];
    }
    if (m->probe) m->probe(m->probe_ctx, PROBE_EMBEDDING, -1, s->x, T, pos0);

    for (int l = 0; l < c->n_layer; l++) {
        const LayerWeights *L = &w->layers[l];
        if (!(c->block & (BLOCK_PARALLEL | BLOCK_POST_LN))) {
            // GPT-2: attention block, x = x + proj(attention(ln_1(x)))
            normalize(m, s->xn, s->x, L->ln1_w, L->ln1_b, T);
            attention_sublayer(m, l, s->xn, s->xn, T, pos0);
            residual_add(s->x, s->xn, (size_t)T * C);
            // MLP block: x = x + fc_proj(act(fc(ln_2(x))))
            normalize(m, s->xn, s->x, L->ln2_w, L->ln2_b, T);
            mlp_sublayer(m, l, s->xn, s->xn, T, pos0);
            residual_add(s->x, s->xn, (size_t)T * C);
        } else if (c->block & BLOCK_PARALLEL) {
            // GPT-NeoX: attention and MLP both read the same x, x = x + attn(ln_1 x) + mlp(ln_2 x)
            normalize(m, s->xn, s->x, L->ln1_w, L->ln1_b, T);
            attention_sublayer(m, l, s->xn, s->xn, T, pos0);              // xn = attn
            normalize(m, s->att_out, s->x, L->ln2_w, L->ln2_b, T);
            mlp_sublayer(m, l, s->att_out, s->att_out, T, pos0);          // att_out = mlp
            residual_add(s->xn, s->att_out, (size_t)T * C);
            residual_add(s->x, s->xn, (size_t)T * C);
        } else {
            // OPT-350m: the LayerNorm after each residual add, x = ln_1(x + attn(x)), x = ln_2(x + mlp(x))
            attention_sublayer(m, l, s->x, s->xn, T, pos0);
            residual_add(s->x, s->xn, (size_t)T * C);
            normalize(m, s->xn, s->x, L->ln1_w, L->ln1_b, T);
            mlp_sublayer(m, l, s->xn, s->x, T, pos0);
            residual_add(s->x, s->xn, (size_t)T * C);
            normalize(m, s->xn, s->x, L->ln2_w, L->ln2_b, T);
            memcpy(s->x, s->xn, sizeof(float) * T * C);
        }
        if (m->probe) m->probe(m->probe_ctx, PROBE_LAYER, l, s->x, T, pos0);  // the residual stream after layer l
    }

    // final LayerNorm, then logits (T,V) = xn (T,C) @ wte^T (V,C)
    if (logits == LOGITS_NONE) return;
    int first = logits == LOGITS_ALL ? 0 : T - 1, n = T - first;
    if (n > s->logits_rows) die(EXIT_RUNTIME, "internal error: logits for %d positions, room for %d", n, s->logits_rows);
    unembed(m, s->logits, s->x + (size_t)first * C, n);
}

// Feed a whole sequence, in tiles, starting at position pos0. With
// all_logits, the caller's callback sees the logits of each tile.
typedef void (*TileFn)(void *ctx, const float *logits, int pos0, int T);

static void prefill(Model *m, const int *tokens, int n, int pos0, int all_logits, TileFn on_tile, void *ctx) {
    int tile = all_logits ? m->state.logits_rows : m->state.max_T;
    for (int done = 0; done < n;) {
        int T = n - done < tile ? n - done : tile;
        int last = done + T == n;
        forward(m, tokens + done, T, pos0 + done, all_logits ? LOGITS_ALL : last ? LOGITS_LAST : LOGITS_NONE);
        if (on_tile) on_tile(ctx, m->state.logits, pos0 + done, all_logits ? T : 1);
        done += T;
    }
}

// ----------------------------------------------------------------------------
// I.7 Sampling
//
// The logits of the next token become a choice in four steps:
//   1. penalties against repetition (off by default), on the logits l:
//      repetition (--repeat-penalty r over the last --repeat-last-n tokens of
//      the context, prompt included; each such token once):
//          l = l / r where l > 0, l * r otherwise
//      presence and frequency (--presence-penalty a, --frequency-penalty b;
//      c = how often the token was generated so far):
//          l = l - b c - a [c > 0]
//   2. temperature 0 takes the largest; otherwise p = softmax(l / T)
//   3. the candidates: the top_k most likely, then the smallest set whose
//      probability reaches top_p, then those with p >= min_p * max p
//   4. a draw among them in proportion to p, with the seeded generator

typedef struct {
    float temperature;   // 0: greedy
    int top_k;           // 0: off
    float top_p;         // 1: off
    float min_p;         // 0: off
    float repeat_penalty;     // 1: off
    int repeat_last_n;        // tokens of context it looks back over
    float presence_penalty, frequency_penalty;  // 0: off
} SamplerSettings;

typedef struct {
    SamplerSettings set;
    float temperature, top_p;  // (copies of set's, as the views read them)
    int top_k;
    uint64_t rng;       // xorshift64* state
    int *order;         // (V) candidate ids, scratch
    float *probs;       // (V) scratch
    int n_kept;         // candidates the last draw chose from (order[0..n_kept))
    float *penalized;   // (V) the logits after step 1
    int *recent;        // (repeat_last_n) the last tokens of the context, a ring
    int n_recent, next_recent;
    int *count;         // (V) how often each token was generated
    int *stamp;         // (V) scratch: the penalty step a token was last penalised in
    int step;
} Sampler;

static Sampler *sampler_new(int V, const SamplerSettings *set, uint64_t seed) {
    Sampler *sp = xcalloc(1, sizeof *sp);
    sp->set = *set;
    sp->temperature = set->temperature;
    sp->top_k = set->top_k;
    sp->top_p = set->top_p;
    sp->rng = seed * 0x9E3779B97F4A7C15ULL + 1;  // spread the seed's bits
    if (sp->rng == 0) sp->rng = 1;               // xorshift needs a nonzero state
    sp->order = xcalloc(V, sizeof(int));
    sp->probs = xcalloc(V, sizeof(float));
    sp->penalized = xcalloc(V, sizeof(float));
    sp->recent = xcalloc(set->repeat_last_n > 0 ? set->repeat_last_n : 1, sizeof(int));
    sp->count = xcalloc(V, sizeof(int));
    sp->stamp = xcalloc(V, sizeof(int));
    return sp;
}

static void sampler_free(Sampler *sp) {
    if (!sp) return;
    free(sp->order);
    free(sp->probs);
    free(sp->penalized);
    free(sp->recent);
    free(sp->count);
    free(sp->stamp);
    free(sp);
}

// A token joined the context: the prompt's (generated 0) or a generated one.
static void sampler_accept(Sampler *sp, int id, int generated) {
    if (sp->set.repeat_last_n > 0) {
        sp->recent[sp->next_recent] = id;
        sp->next_recent = (sp->next_recent + 1) % sp->set.repeat_last_n;
        if (sp->n_recent < sp->set.repeat_last_n) sp->n_recent++;
    }
    if (generated) sp->count[id]++;
}

static int sampler_penalizes(const Sampler *sp) {
    return (sp->set.repeat_penalty != 1.0f && sp->n_recent > 0) || sp->set.presence_penalty != 0.0f ||
           sp->set.frequency_penalty != 0.0f;
}

// Step 1: the logits (V) with the penalties applied (the logits themselves
// when there are none).
static const float *penalize(Sampler *sp, const float *logits, int V) {
    if (!sampler_penalizes(sp)) return logits;
    float *l = sp->penalized;
    memcpy(l, logits, (size_t)V * sizeof(float));
    sp->step++;
    float r = sp->set.repeat_penalty;
    for (int i = 0; i < sp->n_recent && r != 1.0f; i++) {
        int id = sp->recent[i];
        if (sp->stamp[id] == sp->step) continue;  // each token once
        sp->stamp[id] = sp->step;
        l[id] = l[id] > 0 ? l[id] / r : l[id] * r;
    }
    float a = sp->set.presence_penalty, b = sp->set.frequency_penalty;
    if (a != 0.0f || b != 0.0f)
        for (int i = 0; i < V; i++)
            if (sp->count[i]) l[i] -= b * (float)sp->count[i] + a;
    return l;
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

// A uniform float in [0, 1).
static float rng_float(uint64_t *s) {
    return (rng_next(s) >> 40) * (1.0f / 16777216.0f);
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

// p (V) = softmax(logits / temperature)
static void probabilities(float *p, const float *logits, int V, float temperature) {
    for (int i = 0; i < V; i++) p[i] = logits[i] / temperature;
    softmax_plain(p, V);
}

// Does token a come before token b: more likely, or as likely and a smaller id?
static int ranks_before(int a, int b, const float *p) {
    return p[a] != p[b] ? p[a] > p[b] : a < b;
}

// Move the k most likely of order[0..n) to order[0..k), in no particular
// order (quickselect: linear time on average).
static void select_top(int *order, int n, int k, const float *p) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int pivot = order[lo + (hi - lo) / 2], i = lo, j = hi;
        while (i <= j) {
            while (ranks_before(order[i], pivot, p)) i++;
            while (ranks_before(pivot, order[j], p)) j--;
            if (i <= j) { int t = order[i]; order[i] = order[j]; order[j] = t; i++; j--; }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

// Heap sort of order[0..n), most likely first (the order is total, so the
// result does not depend on the algorithm).
static void sift_down(int *order, int root, int n, const float *p) {
    for (;;) {
        int child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && ranks_before(order[child], order[child + 1], p)) child++;  // the less likely child
        if (!ranks_before(order[root], order[child], p)) return;
        int t = order[root]; order[root] = order[child]; order[child] = t;
        root = child;
    }
}

static void sort_by_rank(int *order, int n, const float *p) {
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(order, i, n, p);
    for (int end = n - 1; end > 0; end--) {
        int t = order[0]; order[0] = order[end]; order[end] = t;
        sift_down(order, 0, end, p);
    }
}

// Of the candidates order[0..n), keep the k most likely (k 0: all), sorted
// most likely first; returns how many are kept.
static int keep_most_likely(int *order, int n, int k, const float *p) {
    if (k > 0 && k < n) {
        select_top(order, n, k, p);
        n = k;
    }
    sort_by_rank(order, n, p);
    return n;
}

// Step 3: the tokens sampling may draw from: sp->probs = softmax(logits / T)
// (V), then the top_k most likely are kept, then the smallest set whose
// probability reaches top_p, then those with p >= min_p * max p. The kept
// ids go to sp->order[0..n); returns n.
static int sample_candidates(Sampler *sp, const float *logits, int V) {
    float *p = sp->probs;
    int *order = sp->order;
    probabilities(p, logits, V, sp->temperature);
    for (int i = 0; i < V; i++) order[i] = i;
    if (!((sp->top_k > 0 && sp->top_k < V) || sp->top_p < 1.0f || sp->set.min_p > 0.0f)) return V;
    // Only candidates that can survive the cut need sorting: with top_p, a
    // token below (1 - top_p) / (V - 1) can never be in the kept set (all
    // such tokens together hold less than 1 - top_p).
    int n = 0;
    float floor_p = sp->top_p < 1.0f ? (1.0f - sp->top_p) / (V - 1) : 0.0f;
    if (sp->set.min_p > 0.0f) {  // below min_p * max p a token is out whatever else holds
        float max = p[argmax(p, V)] * sp->set.min_p;
        if (max > floor_p) floor_p = max;
    }
    for (int i = 0; i < V; i++) if (p[i] >= floor_p) order[n++] = i;
    n = keep_most_likely(order, n, sp->top_k, p);
    if (sp->top_p < 1.0f) {
        float cum = 0.0f;
        for (int i = 0; i < n; i++) {
            cum += p[order[i]];
            if (cum >= sp->top_p) { n = i + 1; break; }
        }
    }
    return n;
}

// Pick the next token from logits (V): greedy (argmax) at temperature 0;
// otherwise draw from the candidates in proportion to their probability.
static int sample(Sampler *sp, const float *logits, int V) {
    logits = penalize(sp, logits, V);
    if (sp->temperature == 0.0f) return argmax(logits, V);
    int n = sp->n_kept = sample_candidates(sp, logits, V);
    const float *p = sp->probs;
    const int *order = sp->order;
    float total = 0.0f;
    for (int i = 0; i < n; i++) total += p[order[i]];
    float r = rng_float(&sp->rng) * total, cum = 0.0f;
    for (int i = 0; i < n; i++) {
        cum += p[order[i]];
        if (r < cum) return order[i];
    }
    return order[n - 1];
}

// ----------------------------------------------------------------------------
// I.8 Streaming output

// Everything printed on stdout goes through here; a reader that went away
// (| head) ends the program quietly, any other write error loudly.
static void write_out(const void *buf, size_t n) {
    if (n && fwrite(buf, 1, n, stdout) != n) {
        if (errno == EPIPE) exit(EXIT_OK);
        die(EXIT_RUNTIME, "cannot write to standard output: %s", strerror(errno));
    }
}

static void flush_out(void) {
    if (fflush(stdout) != 0) {
        if (errno == EPIPE) exit(EXIT_OK);
        die(EXIT_RUNTIME, "cannot write to standard output: %s", strerror(errno));
    }
}

// Generated text passes through a hold-back buffer (so that a --stop string
// is never printed, even in part) and then the UTF-8 stream (so that only
// whole characters reach the terminal).
typedef struct {
    char **stops;
    int n_stops;
    unsigned char *held;  // bytes that may be the start of a stop string
    size_t n_held, cap;
    Utf8Stream utf8;
    int stopped;          // a stop string was seen
    int line_open;        // bytes have been printed since the last newline
} TextOut;

// Print bytes that are ready, and note whether they ended a line.
static void text_write(TextOut *o, const unsigned char *b, size_t n) {
    if (!n) return;
    write_out(b, n);
    o->line_open = b[n - 1] != '\n';
}

static void emit_text(TextOut *o, const unsigned char *b, size_t n) {
    unsigned char buf[256 + 4];
    for (size_t done = 0; done < n;) {  // in pieces: no allocation per token
        size_t piece = n - done < 256 ? n - done : 256;
        text_write(o, buf, utf8_stream_push(&o->utf8, b + done, piece, buf));
        done += piece;
    }
}

// Does some stop string start with the last `n` bytes of held?
static int partial_stop(TextOut *o, size_t n) {
    for (int i = 0; i < o->n_stops; i++) {
        size_t len = strlen(o->stops[i]);
        if (n < len && memcmp(o->held + o->n_held - n, o->stops[i], n) == 0) return 1;
    }
    return 0;
}

static void text_push(TextOut *o, const unsigned char *b, size_t n) {
    if (o->stopped || !n) return;
    if (o->n_held + n > o->cap) {
        o->cap = (o->n_held + n) * 2 + 64;
        unsigned char *p = realloc(o->held, o->cap);
        if (!p) die(EXIT_RUNTIME, "out of memory");
        o->held = p;
    }
    memcpy(o->held + o->n_held, b, n);
    o->n_held += n;
    // the earliest complete stop string ends generation; print what precedes it
    size_t cut = o->n_held;
    for (int i = 0; i < o->n_stops; i++) {
        size_t len = strlen(o->stops[i]);
        for (size_t at = 0; len && at + len <= o->n_held && at < cut; at++)
            if (memcmp(o->held + at, o->stops[i], len) == 0) { cut = at; o->stopped = 1; break; }
    }
    if (o->stopped) {
        emit_text(o, o->held, cut);
        o->n_held = 0;
        return;
    }
    // keep back the longest tail that could still grow into a stop string
    size_t keep = 0, longest = 0;
    for (int i = 0; i < o->n_stops; i++) if (strlen(o->stops[i]) > longest) longest = strlen(o->stops[i]);
    for (size_t k = o->n_held < longest ? o->n_held : longest; k > 0; k--)
        if (partial_stop(o, k)) { keep = k; break; }
    emit_text(o, o->held, o->n_held - keep);
    memmove(o->held, o->held + o->n_held - keep, keep);
    o->n_held = keep;
}

static void text_finish(TextOut *o) {
    if (!o->stopped) emit_text(o, o->held, o->n_held);
    o->n_held = 0;
    unsigned char tail[4];
    text_write(o, tail, utf8_stream_flush(&o->utf8, tail));
    flush_out();
}

// The bytes of a token, or none for an id outside the tokenizer's vocabulary
// (a model's embedding may have more rows than the tokenizer has tokens).
static const unsigned char *token_bytes(Tokenizer *t, int id, size_t *len) {
    const unsigned char *b = tokenizer_token(t, id, len);
    if (!b) { *len = 0; return (const unsigned char *)""; }
    return b;
}

// A token id on stdout, a space before all but the first of a line.
static void put_id(int id, int first) {
    char buf[16];
    write_out(buf, (size_t)snprintf(buf, sizeof buf, first ? "%d" : " %d", id));
}

// Where generated tokens go: their text through TextOut, or (--ids) their
// ids. In a terminal the output ends with a newline, and a note on stderr
// (--explain, a warning) starts on a line of its own when both streams
// end up in the same place; into a pipe or file, stdout gets exactly the
// generated bytes.
typedef struct {
    Tokenizer *tok;
    int as_ids;
    int n_ids;            // ids already on the current line
    int end_line;         // end the text with a newline if it did not end with one (a terminal)
    int notes_share, strip;  // stderr goes where stdout goes (same_output); spaces to drop at the text's start
    int stop_at_newline;  // a newline after some text ends the text (-i: one line per turn)
    TextOut text;
} TokenSink;

// Do stdout and stderr end up in one place: the same terminal, or the same
// pipe or file (2>&1)?
static int same_output(void) {
    struct stat a, b;
    if (fstat(STDOUT_FILENO, &a) != 0 || fstat(STDERR_FILENO, &b) != 0) return 0;
    if (isatty(STDOUT_FILENO) && isatty(STDERR_FILENO)) return a.st_rdev == b.st_rdev;
    return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static TokenSink sink_new(Tokenizer *tok, int as_ids, char **stops, int n_stops) {
    int tty = isatty(STDOUT_FILENO);
    TokenSink s = {.tok = tok, .as_ids = as_ids, .end_line = tty, .notes_share = same_output(),
                   .text = {.stops = stops, .n_stops = n_stops}};
    return s;
}

// Before a note on stderr: end the text's open line where both show.
static void sink_note(TokenSink *s) {
    if (!s->notes_share || !s->text.line_open) return;
    flush_out();
    fputc('\n', stderr);
    s->text.line_open = 0;  // the terminal's cursor is at the start of a line
}

// The prompt before the generated text (--echo): printed as it is, never
// cut by a stop string.
static void sink_echo(TokenSink *s, const int *ids, int n) {
    for (int i = 0; i < n; i++) {
        if (s->as_ids) {
            put_id(ids[i], s->n_ids++ == 0);
            s->text.line_open = 1;
            continue;
        }
        size_t len;
        const unsigned char *b = tokenizer_decode_token(s->tok, ids[i], &s->strip, &len);
        emit_text(&s->text, b, len);
    }
    flush_out();
}

// Print one token; returns 1 when a stop string has ended the text.
static int sink_put(TokenSink *s, int id) {
    if (s->as_ids) {
        put_id(id, s->n_ids++ == 0);
        s->text.line_open = 1;
    } else {
        size_t n;
        const unsigned char *b = tokenizer_decode_token(s->tok, id, &s->strip, &n);
        if (s->stop_at_newline && !s->text.line_open)  // a reply starts at its first non-blank line
            while (n && (*b == '\n' || *b == '\r')) { b++; n--; }
        const unsigned char *nl = s->stop_at_newline ? memchr(b, '\n', n) : NULL;
        text_push(&s->text, b, nl ? (size_t)(nl - b) + 1 : n);
        if (nl && !s->text.stopped) {  // the line is done (-i): the rest of the token is dropped
            text_finish(&s->text);
            s->text.stopped = 1;
        }
    }
    flush_out();
    return s->text.stopped;
}

// The end of the output: held text is let out; the ids' line ends, and so
// does the text's in a terminal.
static void sink_finish(TokenSink *s) {
    if (!s->as_ids) text_finish(&s->text);
    if (s->as_ids || (s->end_line && s->text.line_open)) {
        write_out("\n", 1);
        s->text.line_open = 0;
    }
    flush_out();
    free(s->text.held);
    s->text.held = NULL;
}

// ----------------------------------------------------------------------------
// I.9 The generation loop
//
// After the prompt has gone through the model (prefill), its last position's
// logits are in m->state.logits. Each step then picks a token from them,
// prints it, and runs it through the model at the next position, which
// leaves the logits for the step after.

typedef enum { STOP_STEPS, STOP_EOS, STOP_STRING, STOP_CONTEXT, STOP_INTERRUPT } StopReason;

// Part III may look at each pick (--explain, the HTML page's steps).
typedef struct {
    void (*on_pick)(void *ctx, const float *logits, int picked, int pos);
    void *ctx;
} PickHook;

typedef struct {
    int max_new;        // tokens to generate at most
    int feed_last;      // run the last token through the model too (the views want its attention row)
    int context_shift;  // when the context is full, keep its last half and go on
    int end_id;         // a token that ends the text as end-of-text does (a chat's end of turn); -1: none (0 is a token)
    const volatile sig_atomic_t *interrupted;  // stop when it is set (Ctrl-C in -i); NULL: never
} GenerateSettings;

typedef struct {
    int generated;  // tokens picked and printed
    int pos;        // tokens in the context (the cache), prompt included
    StopReason why;
    int last;       // the last token picked (-1: none)
    int last_fed;   // ... and it went through the model
    int shifts;     // times the context was shifted
} Generation;

// The context is full (pos = n_ctx) and `next` does not fit: keep the most
// recent half, next included, as the whole context. GPT-2's positions are
// learned, so the keys and values of the kept tokens change with their new
// positions 0, 1, ..: they are computed again (a prefill). Returns the new
// number of tokens in the context.
static int shift_context(Model *m, int *seq, int pos, int next) {
    int keep = m->config.n_ctx / 2 > 1 ? m->config.n_ctx / 2 : 1;
    memmove(seq, seq + pos - (keep - 1), sizeof(int) * (keep - 1));
    seq[keep - 1] = next;
    prefill(m, seq, keep, 0, 0, NULL, NULL);
    return keep;
}

// Generate after the n_ctx0 tokens of seq that are in the cache (seq has
// room for m->state.seq_len tokens).
static Generation generate(Model *m, Sampler *sp, TokenSink *out, PickHook hook, int *seq, int n_ctx0,
                           const GenerateSettings *set) {
    Config *c = &m->config;
    Generation g = {0, n_ctx0, STOP_STEPS, -1, 0, 0};
    while (g.generated < set->max_new) {
        if (set->interrupted && *set->interrupted) { g.why = STOP_INTERRUPT; break; }
        // pick the next token
        int next = sample(sp, m->state.logits, c->vocab_size);
        if (hook.on_pick) hook.on_pick(hook.ctx, m->state.logits, next, g.pos);
        g.last = next;
        g.last_fed = 0;
        if (next == c->eos_id || next == set->end_id) { g.why = STOP_EOS; break; }
        sampler_accept(sp, next, 1);
        if (g.pos < m->state.seq_len) seq[g.pos] = next;
        g.generated++;
        // print it
        if (sink_put(out, next)) { g.why = STOP_STRING; break; }
        if (g.generated == set->max_new && !set->feed_last) break;
        // run it through the model at the next position
        if (g.pos >= c->n_ctx) {
            if (!set->context_shift) {
                if (g.generated < set->max_new) g.why = STOP_CONTEXT;
                break;
            }
            g.pos = shift_context(m, seq, g.pos, next);
            g.shifts++;
        } else {
            forward(m, &next, 1, g.pos, LOGITS_LAST);
            g.pos++;
        }
        g.last_fed = 1;
    }
    return g;
}

// ============================================================================
// PART II. MAKING IT FAST
// ============================================================================
//
// Everything here computes what Part I computes, faster. Each fast path
// replaces one plain loop and is checked against it by tests/test_kernels.c
// (on sizes that are not multiples of the vector width or block sizes, with
// 1 to 3 threads), and the whole model against transformers by the tests:
//
//   worker pool       parallel_for spreads rows or heads over threads instead
//                     of serial_for; split by outputs, never inside a sum, so
//                     every thread count gives the same bits (tested)
//   matmul_rows_fast  replaces matmul_plain for decoding and short tiles:
//                     AVX2+FMA or NEON sums, several rows and positions at once
//   matmul_cols_gemm  replaces matmul_plain for prompt tiles of GEMM_MIN_T or
//                     more positions: packed panels and a 6x16 register block
//   attend_tile_fast  replaces attention_heads' per-query loop for a prompt
//                     tile: scores and the weighted sum as blocked products
//   layernorm_fast, activate_fast, softmax_fast, scores_fast,
//   weighted_sum_fast replace layernorm, activate_plain, softmax_plain,
//                     scores_plain and weighted_sum_plain (vector lanes)
//   FAST_KERNELS      the kernel table of I.5 made of the above
//   PORTABLE_KERNELS  the plain loops over the worker pool, for a CPU (or a
//                     compiler) without those vector units
//   fast_kernels()    which of the two this CPU runs
//   huge pages        the checkpoint mapped at a 2 MB boundary, the KV cache
//                     in anonymous huge pages: fewer TLB misses, same bytes
//
// Results differ from the plain loops only in the order floating-point sums
// are taken (the last bits); --plain-kernels runs the model on Part I alone.

// Which vector code is compiled in: SIMD_AVX2 when the compiler may use AVX2
// and FMA everywhere (make: -march=native on a machine that has them);
// SIMD_NEON on arm64, where NEON is always there. A build for any x86-64
// (make install: no -march) compiles the AVX2 code too, but for that target
// alone (between AVX2_BEGIN and AVX2_END), beside PORTABLE_KERNELS, and
// fast_kernels() asks the CPU at start-up which to run (SIMD_DISPATCH).
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SIMD_AVX2 1
#elif defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SIMD_AVX2 1
#define SIMD_DISPATCH 1
#elif defined(__ARM_NEON) && defined(__aarch64__)
#include <arm_neon.h>
#define SIMD_NEON 1
#endif

#if SIMD_DISPATCH && defined(__clang__)
#define AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define AVX2_END _Pragma("clang attribute pop")
#elif SIMD_DISPATCH
#define AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define AVX2_END _Pragma("GCC pop_options")
#else
#define AVX2_BEGIN
#define AVX2_END
#endif

// ----------------------------------------------------------------------------
// II.1 The worker pool
//
// Threads are started once and wait for work. parallel_for(n, fn, ctx)
// cuts the range [0, n) into chunks and the threads, the caller among them,
// take chunks until none is left, running fn(ctx, start, end) on each; on a
// busy machine a thread that is held up simply takes fewer chunks.
// Kernels split by their outputs (rows, heads), never inside a sum, so the
// results are bit-identical for any number of threads.
//
// Between jobs a worker spins briefly (a decode step posts a job every few
// tens of microseconds), then sleeps on a condition variable.

#include <stdatomic.h>

typedef struct {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t lock;
    pthread_cond_t wake, done;
    RangeFn fn;                 // the current job, published by `generation`
    void *ctx;
    int n, chunk;
    atomic_int next;            // the first index not yet handed out
    atomic_long generation;     // bumped for each job
    atomic_int pending;         // workers still on the current job
    atomic_int quit;
} Pool;

static Pool pool;

#define SPIN_LIMIT 4000  // about a few microseconds of pause instructions

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

// Take chunks of the current job until it is all handed out.
static void run_chunks(void) {
    for (;;) {
        int start = atomic_fetch_add_explicit(&pool.next, pool.chunk, memory_order_relaxed);
        if (start >= pool.n) return;
        int end = start + pool.chunk < pool.n ? start + pool.chunk : pool.n;
        pool.fn(pool.ctx, start, end);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    long seen = 0;
    for (;;) {
        long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen) {
            if (atomic_load(&pool.quit)) return NULL;
            if (++spins < SPIN_LIMIT) { cpu_relax(); continue; }
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(&pool.generation) == seen && !atomic_load(&pool.quit))
                pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = g;
        run_chunks();
        if (atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool.lock);  // the last one out wakes the caller
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

static void pool_start(int n_threads) {
    pool.n_threads = n_threads;
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.threads = xcalloc(n_threads, sizeof(pthread_t));
    pthread_attr_t attr;  // 2 MB stacks, whatever the C library's default (musl's is 128 KB)
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)2 << 20);
    sigset_t all, old;  // the workers take no signals: Ctrl-C reaches the main thread (-i)
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i < n_threads; i++)  // thread 0 is the caller
        if (pthread_create(&pool.threads[i], &attr, worker_main, NULL) != 0)
            die(EXIT_RUNTIME, "cannot start worker thread %d of %d", i, n_threads);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
}

static void pool_stop(void) {
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.quit, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.n_threads; i++) pthread_join(pool.threads[i], NULL);
    free(pool.threads);
}

static void parallel_for(int n, RangeFn fn, void *ctx) {
    if (pool.n_threads <= 1 || n < 2) { fn(ctx, 0, n); return; }
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    // about 8 chunks per thread, in multiples of 4 (matmul's row block) when large
    int chunk = (n + 8 * pool.n_threads - 1) / (8 * pool.n_threads);
    pool.chunk = chunk >= 16 ? (chunk + 3) / 4 * 4 : chunk;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    atomic_store(&pool.pending, pool.n_threads - 1);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_mutex_lock(&pool.lock);  // wake the workers that went to sleep
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks();
    for (int spins = 0; spins < SPIN_LIMIT; spins++) {
        if (atomic_load_explicit(&pool.pending, memory_order_acquire) == 0) return;
        cpu_relax();
    }
    pthread_mutex_lock(&pool.lock);
    while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

// ----------------------------------------------------------------------------
// II.2 Vector kernels: AVX2 + FMA (x86-64), NEON (arm64)
// (Without them, PORTABLE_KERNELS in II.3 runs the plain loops of Part I.)
// Prefill's matrix product works on blocks of GEMM_NB output columns when
// there are at least GEMM_MIN_T positions (see matmul_cols_gemm).
#define GEMM_MIN_T 6   // fewer positions than one 6-row block: use matmul_rows_fast
#define GEMM_KC 256    // k per panel: a (256,16) panel is 16 KB, L1-resident
#define GEMM_NB 64     // output columns per unit of work (4 panels)

#if SIMD_AVX2
// --- fast paths, x86-64 AVX2 + FMA ---
// In a build for any x86-64, everything from here to the end of FAST_KERNELS
// in II.3 is compiled for AVX2 + FMA (and runs only where fast_kernels() finds them).
AVX2_BEGIN

// An empty asm that claims to change x: the value must sit in a register.
#define IN_REGISTER(x) __asm__("" : "+x"(x))

// Sum of the 8 lanes, always in the same order.
static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Largest of the 8 lanes.
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// exp(x) for 8 floats: x = n ln2 + r with |r| <= ln2/2, exp(r) by its
// degree-6 Taylor polynomial (relative error ~1e-7), times 2^n.
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln2, high part
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);      // ln2, low part
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// One output: 8-lane FMA over the vector part, the lanes summed, the scalar
// tail added. The blocked paths of matmul_rows_fast reduce each output
// exactly so, so a value never depends on how rows and positions were
// blocked, nor on the thread count. (Decoding, T = 1, adds four such sums;
// prompt tiles of GEMM_MIN_T or more positions take matmul_cols_gemm, which
// sums in yet another order: the same position can differ in the last bits
// between a prompt tile and decoding.)
static inline float finish_dot(__m256 acc, const float *x, const float *w, int C8, int C) {
    float s = hsum8(acc);
    for (int i = C8; i < C; i++) s += x[i] * w[i];
    return s;
}

// out rows [o0, o1) of out (T,OC) = inp (T,C) @ W^T (OC,C) + b, in blocks of
// 4 weight rows x 3 positions: 12 accumulators, each loaded weight used 3 times.
static void matmul_rows_fast(float *out, const float *inp, const float *W, const float *b,
                             int T, int C, int OC, int o0, int o1) {
    int C8 = C & ~7;
    int o = o0;
    if (T == 1) {  // decoding: one weight row at a time, so W is read front to back in one stream
        for (; o < o1; o++) {
            const float *w0 = W + (size_t)o * C;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            int i = 0;
            for (; i + 32 <= C8; i += 32) {  // four independent sums keep the FMAs from waiting on each other
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(inp + i), _mm256_loadu_ps(w0 + i), a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(inp + i + 8), _mm256_loadu_ps(w0 + i + 8), a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(inp + i + 16), _mm256_loadu_ps(w0 + i + 16), a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(inp + i + 24), _mm256_loadu_ps(w0 + i + 24), a3);
            }
            for (; i < C8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(inp + i), _mm256_loadu_ps(w0 + i), a0);
            __m256 acc = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
            out[o] = finish_dot(acc, inp, w0, C8, C) + (b ? b[o] : 0.0f);
        }
        return;
    }
    for (; o + 4 <= o1; o += 4) {
        const float *w0 = W + (size_t)o * C, *w1 = w0 + C, *w2 = w1 + C, *w3 = w2 + C;
        int t = 0;
        for (; t + 3 <= T; t += 3) {
            const float *x0 = inp + (size_t)t * C, *x1 = x0 + C, *x2 = x1 + C;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
            __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
            __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
            for (int i = 0; i < C8; i += 8) {
                // 3 inputs and then one weight vector at a time in registers:
                // 7 loads for 12 FMAs (12 accumulators + 4 = 16 registers).
                // IN_REGISTER stops the compiler from loading a vector again for each use.
                __m256 p = _mm256_loadu_ps(x0 + i), q = _mm256_loadu_ps(x1 + i), r = _mm256_loadu_ps(x2 + i);
                IN_REGISTER(p); IN_REGISTER(q); IN_REGISTER(r);
                __m256 v = _mm256_loadu_ps(w0 + i);
                IN_REGISTER(v);
                a00 = _mm256_fmadd_ps(p, v, a00); a10 = _mm256_fmadd_ps(q, v, a10); a20 = _mm256_fmadd_ps(r, v, a20);
                v = _mm256_loadu_ps(w1 + i);
                IN_REGISTER(v);
                a01 = _mm256_fmadd_ps(p, v, a01); a11 = _mm256_fmadd_ps(q, v, a11); a21 = _mm256_fmadd_ps(r, v, a21);
                v = _mm256_loadu_ps(w2 + i);
                IN_REGISTER(v);
                a02 = _mm256_fmadd_ps(p, v, a02); a12 = _mm256_fmadd_ps(q, v, a12); a22 = _mm256_fmadd_ps(r, v, a22);
                v = _mm256_loadu_ps(w3 + i);
                IN_REGISTER(v);
                a03 = _mm256_fmadd_ps(p, v, a03); a13 = _mm256_fmadd_ps(q, v, a13); a23 = _mm256_fmadd_ps(r, v, a23);
            }
            __m256 acc[3][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}};
            const float *xs[3] = {x0, x1, x2}, *ws[4] = {w0, w1, w2, w3};
            for (int r = 0; r < 3; r++)
                for (int k = 0; k < 4; k++)
                    out[(size_t)(t + r) * OC + o + k] = finish_dot(acc[r][k], xs[r], ws[k], C8, C) + (b ? b[o + k] : 0.0f);
        }
        for (; t < T; t++) {  // leftover positions (and rows past the 8-row blocks when decoding)
            const float *x0 = inp + (size_t)t * C;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < C8; i += 8) {
                __m256 x = _mm256_loadu_ps(x0 + i);
                a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w0 + i), a0);
                a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w1 + i), a1);
                a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w2 + i), a2);
                a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(w3 + i), a3);
            }
            __m256 acc[4] = {a0, a1, a2, a3};
            const float *ws[4] = {w0, w1, w2, w3};
            for (int k = 0; k < 4; k++)
                out[(size_t)t * OC + o + k] = finish_dot(acc[k], x0, ws[k], C8, C) + (b ? b[o + k] : 0.0f);
        }
    }
    for (; o < o1; o++) {  // leftover rows
        const float *w0 = W + (size_t)o * C;
        for (int t = 0; t < T; t++) {
            const float *x0 = inp + (size_t)t * C;
            __m256 a0 = _mm256_setzero_ps();
            for (int i = 0; i < C8; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), _mm256_loadu_ps(w0 + i), a0);
            out[(size_t)t * OC + o] = finish_dot(a0, x0, w0, C8, C) + (b ? b[o] : 0.0f);
        }
    }
}

// An 8x8 block given as 8 rows stored transposed: row i of the block becomes
// column i of 8 rows of a panel (16 floats apart); unpack, shuffle, swap
// 128-bit halves.
static inline void store_transposed8(float *d, __m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5,
                                     __m256 r6, __m256 r7) {
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d + 0 * 16, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d + 1 * 16, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d + 2 * 16, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d + 3 * 16, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d + 4 * 16, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d + 5 * 16, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d + 6 * 16, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d + 7 * 16, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// panel (kc,16) = W[o .. o+16, k0 .. k0+kc]^T, rows past OC as zeros: 8x8
// blocks are loaded as rows and stored transposed, as columns of the panel.
static void pack_panel(float *panel, const float *W, int C, int OC, int o, int k0, int kc) {
    for (int half = 0; half < 2; half++) {
        const float *rows[8];
        int valid = 0;
        for (int i = 0; i < 8; i++) {
            int row = o + 8 * half + i;
            rows[i] = W + (size_t)(row < OC ? row : o) * C + k0;  // a past-the-end row reads row o, zeroed below
            valid += row < OC;
        }
        float *dst = panel + 8 * half;
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) r[i] = i < valid ? _mm256_loadu_ps(rows[i] + k) : _mm256_setzero_ps();
            store_transposed8(dst + (size_t)k * 16, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        }
        for (; k < kc; k++)
            for (int i = 0; i < 8; i++) dst[(size_t)k * 16 + i] = i < valid ? rows[i][k] : 0.0f;
    }
}

// 8 weights of an 8-bit row from q, dequantised: scale * q[0..8)
static inline __m256 q8_load8(const int8_t *q, float scale) {
    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
    return _mm256_mul_ps(v, _mm256_set1_ps(scale));
}

// pack_panel for an 8-bit W (the weights dequantised as they are packed;
// k0 is a multiple of Q8_BLOCK, so each run of 8 has one scale)
static void pack_panel_q8(float *panel, const Matrix *W, int C, int OC, int o, int k0, int kc) {
    size_t blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    for (int half = 0; half < 2; half++) {
        const int8_t *rows[8];
        const float *scales[8];
        int valid = 0;
        for (int i = 0; i < 8; i++) {
            int row = o + 8 * half + i, r = row < OC ? row : o;
            rows[i] = W->q + (size_t)r * C + k0;
            scales[i] = W->scale + (size_t)r * blocks + k0 / Q8_BLOCK;
            valid += row < OC;
        }
        float *dst = panel + 8 * half;
        int k = 0;
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < valid ? q8_load8(rows[i] + k, scales[i][k / Q8_BLOCK]) : _mm256_setzero_ps();
            store_transposed8(dst + (size_t)k * 16, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]);
        }
        for (; k < kc; k++)
            for (int i = 0; i < 8; i++) dst[(size_t)k * 16 + i] = i < valid ? scales[i][k / Q8_BLOCK] * rows[i][k] : 0.0f;
    }
}

// rows [o0, o1) of out (T,OC) = x (T,C) @ W^T (OC,C) + b with W and x in 8
// bits (x's values qx, scales sx): replaces matmul_plain's dot_q8_plain for
// decoding and short tiles. Per block of 32: |x| and w with x's sign
// (sign_epi8), 32 products summed in pairs to 16 bits (maddubs: at most
// 2 * 127 * 127, no overflow), then to 8 sums of 32 bits (madd), to float,
// times the two scales. 1.125 bytes a weight instead of 4, and a handful of
// instructions per 32 weights: decoding stays bound by memory.
static void matmul_rows_q8(float *out, const int8_t *qx, const float *sx, const Matrix *W, const float *b,
                           int T, int C, int OC, int o0, int o1) {
    int full = C / Q8_BLOCK;
    size_t blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int o = o0; o < o1; o++) {
        const int8_t *qw = W->q + (size_t)o * C;
        const float *sw = W->scale + (size_t)o * blocks;
        for (int t = 0; t < T; t++) {
            const int8_t *q = qx + (size_t)t * C;
            const float *s = sx + (size_t)t * blocks;
            __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
            int j = 0;
            for (; j + 2 <= full; j += 2) {  // two blocks at a time: two independent sums
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(q + j * Q8_BLOCK));
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(qw + j * Q8_BLOCK));
                __m256i x1 = _mm256_loadu_si256((const __m256i *)(q + (j + 1) * Q8_BLOCK));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(qw + (j + 1) * Q8_BLOCK));
                __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x0, x0), _mm256_sign_epi8(w0, x0)), ones);
                __m256i d1 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x1, x1), _mm256_sign_epi8(w1, x1)), ones);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(s[j] * sw[j]), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d1), _mm256_set1_ps(s[j + 1] * sw[j + 1]), acc1);
            }
            for (; j < full; j++) {
                __m256i x0 = _mm256_loadu_si256((const __m256i *)(q + j * Q8_BLOCK));
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(qw + j * Q8_BLOCK));
                __m256i d0 = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(x0, x0), _mm256_sign_epi8(w0, x0)), ones);
                acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d0), _mm256_set1_ps(s[j] * sw[j]), acc0);
            }
            float sum = hsum8(_mm256_add_ps(acc0, acc1));
            if (full < (int)blocks) {  // a last, shorter block
                int32_t d = 0;
                for (int i = full * Q8_BLOCK; i < C; i++) d += q[i] * qw[i];
                sum += (float)d * (s[full] * sw[full]);
            }
            out[(size_t)t * OC + o] = sum + (b ? b[o] : 0.0f);
        }
    }
}

// quantize_q8 (I.4) of x (n) with AVX2, the same values (the block's max and
// the rounding are exact in any order): the 8-bit values into q and the
// scales into scale, or, with q NULL, the values they stand for
// (scale * value) into deq, for a prompt tile's blocked product.
static void quantize_q8_fast(int8_t *q, float *scale, float *deq, const float *x, int n) {
    int full = n / Q8_BLOCK;
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    for (int j = 0; j < full; j++) {
        const float *xj = x + j * Q8_BLOCK;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(xj + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], abs_mask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float s = _mm_cvtss_f32(m4) / 127.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
        scale[j] = s;
        __m256i r[4];
        for (int i = 0; i < 4; i++) {
            __m256 t = _mm256_round_ps(_mm256_mul_ps(v[i], _mm256_set1_ps(inv)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            t = _mm256_max_ps(lo, _mm256_min_ps(hi, t));
            if (!q) _mm256_storeu_ps(deq + j * Q8_BLOCK + 8 * i, _mm256_mul_ps(t, _mm256_set1_ps(s)));
            r[i] = _mm256_cvtps_epi32(t);
        }
        if (q) {  // 32 x 32 bits -> 32 x 8 bits; the packs interleave 128-bit halves, the permute undoes it
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(q + j * Q8_BLOCK), p);
        }
    }
    if (full * Q8_BLOCK < n) {  // a last, shorter block: the plain loop
        int m = n - full * Q8_BLOCK;
        int8_t tail[Q8_BLOCK];
        quantize_q8(q ? q + full * Q8_BLOCK : tail, scale + full, x + full * Q8_BLOCK, m);
        if (!q)
            for (int i = 0; i < m; i++) deq[full * Q8_BLOCK + i] = scale[full] * tail[i];
    }
}

// c (6,16) = (first ? bias : c) + a (6,kc) @ b (kc,16), rows of a, b and c
// `lda`, `ldb` and `ldc` apart (b is a packed panel, ldb = 16, or any
// row-major matrix); only the first mr rows of c are read and written (the
// others repeat row 0's input and are thrown away).
static void gemm_6x16(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb, int kc,
                      int mr, int first, const float *bias) {
    const float *a0 = a, *a1 = mr > 1 ? a0 + lda : a0, *a2 = mr > 2 ? a1 + lda : a0;
    const float *a3 = mr > 3 ? a2 + lda : a0, *a4 = mr > 4 ? a3 + lda : a0, *a5 = mr > 5 ? a4 + lda : a0;
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (first) {
        c00 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        c01 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
        c10 = c20 = c30 = c40 = c50 = c00;
        c11 = c21 = c31 = c41 = c51 = c01;
    } else {
        __m256 z = _mm256_setzero_ps();
        c00 = _mm256_loadu_ps(c);                  c01 = _mm256_loadu_ps(c + 8);
        c10 = mr > 1 ? _mm256_loadu_ps(c + ldc) : z;     c11 = mr > 1 ? _mm256_loadu_ps(c + ldc + 8) : z;
        c20 = mr > 2 ? _mm256_loadu_ps(c + 2 * ldc) : z; c21 = mr > 2 ? _mm256_loadu_ps(c + 2 * ldc + 8) : z;
        c30 = mr > 3 ? _mm256_loadu_ps(c + 3 * ldc) : z; c31 = mr > 3 ? _mm256_loadu_ps(c + 3 * ldc + 8) : z;
        c40 = mr > 4 ? _mm256_loadu_ps(c + 4 * ldc) : z; c41 = mr > 4 ? _mm256_loadu_ps(c + 4 * ldc + 8) : z;
        c50 = mr > 5 ? _mm256_loadu_ps(c + 5 * ldc) : z; c51 = mr > 5 ? _mm256_loadu_ps(c + 5 * ldc + 8) : z;
    }
    for (int k = 0; k < kc; k++) {
        __m256 b0 = _mm256_loadu_ps(b + (size_t)k * ldb), b1 = _mm256_loadu_ps(b + (size_t)k * ldb + 8), x;
        x = _mm256_broadcast_ss(a0 + k); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + k); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + k); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + k); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + k); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + k); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    _mm256_storeu_ps(c, c00); _mm256_storeu_ps(c + 8, c01);
    if (mr > 1) { _mm256_storeu_ps(c + ldc, c10); _mm256_storeu_ps(c + ldc + 8, c11); }
    if (mr > 2) { _mm256_storeu_ps(c + 2 * ldc, c20); _mm256_storeu_ps(c + 2 * ldc + 8, c21); }
    if (mr > 3) { _mm256_storeu_ps(c + 3 * ldc, c30); _mm256_storeu_ps(c + 3 * ldc + 8, c31); }
    if (mr > 4) { _mm256_storeu_ps(c + 4 * ldc, c40); _mm256_storeu_ps(c + 4 * ldc + 8, c41); }
    if (mr > 5) { _mm256_storeu_ps(c + 5 * ldc, c50); _mm256_storeu_ps(c + 5 * ldc + 8, c51); }
}

// s = a (n) . b (n)
static float dot_fast(const float *a, const float *b, int n) {
    int n8 = n & ~7;
    __m256 acc = _mm256_setzero_ps();
    for (int i = 0; i < n8; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    return finish_dot(acc, a, b, n8, n);
}

// out (C) = layernorm(x (C)): the sums over 8 lanes
static void layernorm_fast(float *out, const float *x, const float *w, const float *b, int C, float eps) {
    int C8 = C & ~7, i;
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i < C8; i += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + i));
    float mean = hsum8(acc);
    for (; i < C; i++) mean += x[i];
    mean /= C;
    __m256 vmean = _mm256_set1_ps(mean);
    acc = _mm256_setzero_ps();
    for (i = 0; i < C8; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + i), vmean);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float var = hsum8(acc);
    for (; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    float rstd = 1.0f / sqrtf(var + eps);
    __m256 vr = _mm256_set1_ps(rstd);
    for (i = 0; i < C8; i += 8) {
        __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmean), vr);
        _mm256_storeu_ps(out + i, _mm256_fmadd_ps(d, _mm256_loadu_ps(w + i), _mm256_loadu_ps(b + i)));
    }
    for (; i < C; i++) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

// x (n) = softmax(x), with exp8
static void softmax_fast(float *x, int n) {
    int n8 = n & ~7, i;
    float max = x[0];
    if (n8) {
        __m256 m8 = _mm256_loadu_ps(x);
        for (i = 8; i < n8; i += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(x + i));
        max = hmax8(m8);
    }
    for (i = n8; i < n; i++) if (x[i] > max) max = x[i];
    __m256 vmax = _mm256_set1_ps(max), vsum = _mm256_setzero_ps();
    for (i = 0; i < n8; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmax));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum8(vsum);
    for (; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++) x[i] *= 1.0f / sum;
}

// scores (n) = K (n,hd) @ q (hd) * scale, four keys at a time
static void scores_fast(float *scores, const float *q, const float *K, int n, int hd, float scale) {
    int h8 = hd & ~7, j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = K + (size_t)j * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < h8; i += 8) {
            __m256 x = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + i), a0);
            a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k1 + i), a1);
            a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k2 + i), a2);
            a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k3 + i), a3);
        }
        scores[j] = finish_dot(a0, q, k0, h8, hd) * scale;
        scores[j + 1] = finish_dot(a1, q, k1, h8, hd) * scale;
        scores[j + 2] = finish_dot(a2, q, k2, h8, hd) * scale;
        scores[j + 3] = finish_dot(a3, q, k3, h8, hd) * scale;
    }
    for (; j < n; j++) scores[j] = dot_fast(q, K + (size_t)j * hd, hd) * scale;
}

// out (hd) = w (n) @ V (n,hd), with the output held in registers for hd <= 128
static void weighted_sum_fast(float *out, const float *w, const float *V, int n, int hd) {
    if (hd > 128 || hd % 8) { weighted_sum_plain(out, w, V, n, hd); return; }
    __m256 acc[16];
    int nv = hd / 8;
    for (int v = 0; v < nv; v++) acc[v] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        __m256 a = _mm256_set1_ps(w[j]);
        const float *row = V + (size_t)j * hd;
        for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(a, _mm256_loadu_ps(row + 8 * v), acc[v]);
    }
    for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + 8 * v, acc[v]);
}

// x (n) *= s
static void scale_fast(float *x, int n, float s) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_set1_ps(s)));
    for (; i < n; i++) x[i] *= s;
}

// out (C) = rmsnorm(x (C)): the sum of squares over 8 lanes
static void rmsnorm_fast(float *out, const float *x, const float *w, int C, float eps) {
    int C8 = C & ~7, i;
    __m256 acc = _mm256_setzero_ps();
    for (i = 0; i < C8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ms = hsum8(acc);
    for (; i < C; i++) ms += x[i] * x[i];
    ms /= C;
    __m256 r = _mm256_set1_ps(1.0f / sqrtf(ms + eps));
    for (i = 0; i < C8; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), r)));
    for (; i < C; i++) out[i] = w[i] * (x[i] * _mm256_cvtss_f32(r));
}

// x (n) = silu(x) * up (n) (up NULL: silu(x) alone), silu(x) = x / (1 + exp(-x))
static void silu_fast(float *x, const float *up, size_t n) {
    size_t n8 = n & ~(size_t)7, i;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        v = _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
        _mm256_storeu_ps(x + i, up ? _mm256_mul_ps(v, _mm256_loadu_ps(up + i)) : v);
    }
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i])) * (up ? up[i] : 1.0f);
}

// x (n) = gelu_tanh(x), with tanh(u) = 1 - 2 / (1 + exp(2u)), or silu(x);
// other activations take the plain loop.
static void activate_fast(float *x, size_t n, int activation) {
    if (activation == ACT_SILU) { silu_fast(x, NULL, n); return; }
    if (activation != ACT_GELU_TANH) { activate_plain(x, n, activation); return; }
    size_t n8 = n & ~(size_t)7, i;
    const __m256 k = _mm256_set1_ps(0.7978845608028654f), c = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f), two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    for (i = 0; i < n8; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 u = _mm256_mul_ps(k, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        __m256 th = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, exp8(_mm256_add_ps(u, u)))));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, th)));
    }
    for (; i < n; i++) x[i] = gelu_tanh(x[i]);
}

#elif SIMD_NEON
// --- fast paths, arm64 NEON ---

static inline float finish_dot4(float32x4_t acc, const float *x, const float *w, int C4, int C) {
    float s = vaddvq_f32(acc);
    for (int i = C4; i < C; i++) s += x[i] * w[i];
    return s;
}

// out rows [o0, o1) of out (T,OC) = inp (T,C) @ W^T (OC,C) + b, 4 weight rows at a time
static void matmul_rows_fast(float *out, const float *inp, const float *W, const float *b,
                             int T, int C, int OC, int o0, int o1) {
    int C4 = C & ~3;
    int o = o0;
    for (; o + 4 <= o1; o += 4) {
        const float *ws[4] = {W + (size_t)o * C, W + (size_t)(o + 1) * C, W + (size_t)(o + 2) * C, W + (size_t)(o + 3) * C};
        for (int t = 0; t < T; t++) {
            const float *x0 = inp + (size_t)t * C;
            float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i < C4; i += 4) {
                float32x4_t x = vld1q_f32(x0 + i);
                a0 = vfmaq_f32(a0, x, vld1q_f32(ws[0] + i));
                a1 = vfmaq_f32(a1, x, vld1q_f32(ws[1] + i));
                a2 = vfmaq_f32(a2, x, vld1q_f32(ws[2] + i));
                a3 = vfmaq_f32(a3, x, vld1q_f32(ws[3] + i));
            }
            float32x4_t acc[4] = {a0, a1, a2, a3};
            for (int k = 0; k < 4; k++)
                out[(size_t)t * OC + o + k] = finish_dot4(acc[k], x0, ws[k], C4, C) + (b ? b[o + k] : 0.0f);
        }
    }
    for (; o < o1; o++) {
        const float *w0 = W + (size_t)o * C;
        for (int t = 0; t < T; t++) {
            const float *x0 = inp + (size_t)t * C;
            float32x4_t a0 = vdupq_n_f32(0);
            for (int i = 0; i < C4; i += 4) a0 = vfmaq_f32(a0, vld1q_f32(x0 + i), vld1q_f32(w0 + i));
            out[(size_t)t * OC + o] = finish_dot4(a0, x0, w0, C4, C) + (b ? b[o] : 0.0f);
        }
    }
}

static float dot_fast(const float *a, const float *b, int n) {
    int n4 = n & ~3;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n4; i += 4) acc = vfmaq_f32(acc, vld1q_f32(a + i), vld1q_f32(b + i));
    return finish_dot4(acc, a, b, n4, n);
}

// panel (kc,16) = W[o .. o+16, k0 .. k0+kc]^T, rows past OC as zeros
static void pack_panel(float *panel, const float *W, int C, int OC, int o, int k0, int kc) {
    for (int i = 0; i < 16; i++) {
        const float *row = W + (size_t)(o + i < OC ? o + i : o) * C + k0;  // rows past OC read row o, stored as 0
        for (int k = 0; k < kc; k++) panel[(size_t)k * 16 + i] = o + i < OC ? row[k] : 0.0f;
    }
}

// pack_panel for an 8-bit W, the weights dequantised as they are packed
static void pack_panel_q8(float *panel, const Matrix *W, int C, int OC, int o, int k0, int kc) {
    size_t blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    for (int i = 0; i < 16; i++) {
        int r = o + i < OC ? o + i : o;
        const int8_t *row = W->q + (size_t)r * C + k0;
        const float *scale = W->scale + (size_t)r * blocks + k0 / Q8_BLOCK;
        for (int k = 0; k < kc; k++) panel[(size_t)k * 16 + i] = o + i < OC ? scale[k / Q8_BLOCK] * row[k] : 0.0f;
    }
}

// rows [o0, o1) of out (T,OC) = x (T,C) @ W^T (OC,C) + b, W and x in 8 bits,
// as the AVX2 kernel: per block of 32, products of 8 pairs to 16 bits
// (vmull, vmlal: two products, at most 2 * 127 * 127), summed in pairs to
// 32 bits (vpadal), to float, times the two scales
static void matmul_rows_q8(float *out, const int8_t *qx, const float *sx, const Matrix *W, const float *b,
                           int T, int C, int OC, int o0, int o1) {
    int full = C / Q8_BLOCK;
    size_t blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    for (int o = o0; o < o1; o++) {
        const int8_t *qw = W->q + (size_t)o * C;
        const float *sw = W->scale + (size_t)o * blocks;
        for (int t = 0; t < T; t++) {
            const int8_t *q = qx + (size_t)t * C;
            const float *s = sx + (size_t)t * blocks;
            float32x4_t acc = vdupq_n_f32(0);
            for (int j = 0; j < full; j++) {
                const int8_t *a = q + j * Q8_BLOCK, *w = qw + j * Q8_BLOCK;
                int16x8_t p0 = vmull_s8(vld1_s8(a), vld1_s8(w));
                p0 = vmlal_s8(p0, vld1_s8(a + 8), vld1_s8(w + 8));
                int16x8_t p1 = vmull_s8(vld1_s8(a + 16), vld1_s8(w + 16));
                p1 = vmlal_s8(p1, vld1_s8(a + 24), vld1_s8(w + 24));
                int32x4_t d = vpadalq_s16(vpaddlq_s16(p0), p1);
                acc = vfmaq_n_f32(acc, vcvtq_f32_s32(d), s[j] * sw[j]);
            }
            float sum = vaddvq_f32(acc);
            if (full < (int)blocks) {  // a last, shorter block
                int32_t d = 0;
                for (int i = full * Q8_BLOCK; i < C; i++) d += q[i] * qw[i];
                sum += (float)d * (s[full] * sw[full]);
            }
            out[(size_t)t * OC + o] = sum + (b ? b[o] : 0.0f);
        }
    }
}

// quantize_q8 of x (n): the plain loop (into q), or the values it stands for
// (q NULL: scale * value into deq)
static void quantize_q8_fast(int8_t *q, float *scale, float *deq, const float *x, int n) {
    int8_t tmp[Q8_BLOCK];
    for (int j = 0; j * Q8_BLOCK < n; j++) {
        int lo = j * Q8_BLOCK, m = n - lo < Q8_BLOCK ? n - lo : Q8_BLOCK;
        quantize_q8(q ? q + lo : tmp, scale + j, x + lo, m);
        if (!q)
            for (int i = 0; i < m; i++) deq[lo + i] = scale[j] * tmp[i];
    }
}

// c (6,16) = (first ? bias : c) + a (6,kc) @ b (kc,16), as the AVX2 kernel:
// 24 accumulators of 4 lanes, each output one chain of FMAs in k order
#define GEMM_ROW(i) \
    c##i##0 = vfmaq_n_f32(c##i##0, b0, a##i[k]); c##i##1 = vfmaq_n_f32(c##i##1, b1, a##i[k]); \
    c##i##2 = vfmaq_n_f32(c##i##2, b2, a##i[k]); c##i##3 = vfmaq_n_f32(c##i##3, b3, a##i[k]);
#define GEMM_LOAD(i) \
    if (first || mr <= i) { c##i##0 = bv0; c##i##1 = bv1; c##i##2 = bv2; c##i##3 = bv3; } \
    else { const float *ci = c + i * ldc; c##i##0 = vld1q_f32(ci); c##i##1 = vld1q_f32(ci + 4); \
           c##i##2 = vld1q_f32(ci + 8); c##i##3 = vld1q_f32(ci + 12); }
#define GEMM_STORE(i) \
    if (mr > i) { float *ci = c + i * ldc; vst1q_f32(ci, c##i##0); vst1q_f32(ci + 4, c##i##1); \
                  vst1q_f32(ci + 8, c##i##2); vst1q_f32(ci + 12, c##i##3); }
static void gemm_6x16(float *c, size_t ldc, const float *a, size_t lda, const float *b, size_t ldb, int kc,
                      int mr, int first, const float *bias) {
    const float *a0 = a, *a1 = mr > 1 ? a0 + lda : a0, *a2 = mr > 2 ? a1 + lda : a0;
    const float *a3 = mr > 3 ? a2 + lda : a0, *a4 = mr > 4 ? a3 + lda : a0, *a5 = mr > 5 ? a4 + lda : a0;
    float32x4_t z = vdupq_n_f32(0);
    float32x4_t bv0 = bias ? vld1q_f32(bias) : z, bv1 = bias ? vld1q_f32(bias + 4) : z;
    float32x4_t bv2 = bias ? vld1q_f32(bias + 8) : z, bv3 = bias ? vld1q_f32(bias + 12) : z;
    float32x4_t c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23;
    float32x4_t c30, c31, c32, c33, c40, c41, c42, c43, c50, c51, c52, c53;
    GEMM_LOAD(0) GEMM_LOAD(1) GEMM_LOAD(2) GEMM_LOAD(3) GEMM_LOAD(4) GEMM_LOAD(5)
    for (int k = 0; k < kc; k++) {
        const float *bk = b + (size_t)k * ldb;
        float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8), b3 = vld1q_f32(bk + 12);
        GEMM_ROW(0) GEMM_ROW(1) GEMM_ROW(2) GEMM_ROW(3) GEMM_ROW(4) GEMM_ROW(5)
    }
    GEMM_STORE(0) GEMM_STORE(1) GEMM_STORE(2) GEMM_STORE(3) GEMM_STORE(4) GEMM_STORE(5)
}
#undef GEMM_ROW
#undef GEMM_LOAD
#undef GEMM_STORE

// exp(x) for 4 floats, as exp8 above
static inline float32x4_t exp4(float32x4_t x) {
    x = vmaxq_f32(vminq_f32(x, vdupq_n_f32(88.0f)), vdupq_n_f32(-87.0f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.0f / 720);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 120), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 24), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f / 6), p, r);
    p = vfmaq_f32(vdupq_n_f32(0.5f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.0f), p, r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

// x (n) = softmax(x), with exp4
static void softmax_fast(float *x, int n) {
    int n4 = n & ~3, i;
    float max = x[0];
    if (n4) {
        float32x4_t m4 = vld1q_f32(x);
        for (i = 4; i < n4; i += 4) m4 = vmaxq_f32(m4, vld1q_f32(x + i));
        max = vmaxvq_f32(m4);
    }
    for (i = n4; i < n; i++) if (x[i] > max) max = x[i];
    float32x4_t vmax = vdupq_n_f32(max), vsum = vdupq_n_f32(0);
    for (i = 0; i < n4; i += 4) {
        float32x4_t e = exp4(vsubq_f32(vld1q_f32(x + i), vmax));
        vst1q_f32(x + i, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (i = 0; i < n4; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), 1.0f / sum));
    for (; i < n; i++) x[i] *= 1.0f / sum;
}

// out (C) = layernorm(x (C)): the sums over 4 lanes
static void layernorm_fast(float *out, const float *x, const float *w, const float *b, int C, float eps) {
    int C4 = C & ~3, i;
    float32x4_t acc = vdupq_n_f32(0);
    for (i = 0; i < C4; i += 4) acc = vaddq_f32(acc, vld1q_f32(x + i));
    float mean = vaddvq_f32(acc);
    for (; i < C; i++) mean += x[i];
    mean /= C;
    float32x4_t vmean = vdupq_n_f32(mean);
    acc = vdupq_n_f32(0);
    for (i = 0; i < C4; i += 4) {
        float32x4_t d = vsubq_f32(vld1q_f32(x + i), vmean);
        acc = vfmaq_f32(acc, d, d);
    }
    float var = vaddvq_f32(acc);
    for (; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    float rstd = 1.0f / sqrtf(var + eps);
    for (i = 0; i < C4; i += 4) {
        float32x4_t d = vmulq_n_f32(vsubq_f32(vld1q_f32(x + i), vmean), rstd);
        vst1q_f32(out + i, vfmaq_f32(vld1q_f32(b + i), d, vld1q_f32(w + i)));
    }
    for (; i < C; i++) out[i] = (x[i] - mean) * rstd * w[i] + b[i];
}

// out (C) = rmsnorm(x (C)): the sum of squares over 4 lanes
static void rmsnorm_fast(float *out, const float *x, const float *w, int C, float eps) {
    int C4 = C & ~3, i;
    float32x4_t acc = vdupq_n_f32(0);
    for (i = 0; i < C4; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        acc = vfmaq_f32(acc, v, v);
    }
    float ms = vaddvq_f32(acc);
    for (; i < C; i++) ms += x[i] * x[i];
    ms /= C;
    float r = 1.0f / sqrtf(ms + eps);
    for (i = 0; i < C4; i += 4) vst1q_f32(out + i, vmulq_f32(vld1q_f32(w + i), vmulq_n_f32(vld1q_f32(x + i), r)));
    for (; i < C; i++) out[i] = w[i] * (x[i] * r);
}

// x (n) = silu(x) * up (n) (up NULL: silu(x) alone), silu(x) = x / (1 + exp(-x))
static void silu_fast(float *x, const float *up, size_t n) {
    size_t n4 = n & ~(size_t)3, i;
    const float32x4_t one = vdupq_n_f32(1.0f);
    for (i = 0; i < n4; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        v = vdivq_f32(v, vaddq_f32(one, exp4(vnegq_f32(v))));
        vst1q_f32(x + i, up ? vmulq_f32(v, vld1q_f32(up + i)) : v);
    }
    for (; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i])) * (up ? up[i] : 1.0f);
}

// x (n) = gelu_tanh(x), with tanh(u) = 1 - 2 / (1 + exp(2u)), or silu(x);
// other activations take the plain loop.
static void activate_fast(float *x, size_t n, int activation) {
    if (activation == ACT_SILU) { silu_fast(x, NULL, n); return; }
    if (activation != ACT_GELU_TANH) { activate_plain(x, n, activation); return; }
    size_t n4 = n & ~(size_t)3, i;
    const float32x4_t one = vdupq_n_f32(1.0f), two = vdupq_n_f32(2.0f);
    for (i = 0; i < n4; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t u = vmulq_n_f32(vfmaq_f32(v, vmulq_n_f32(v, 0.044715f), vmulq_f32(v, v)), 0.7978845608028654f);
        float32x4_t th = vsubq_f32(one, vdivq_f32(two, vaddq_f32(one, exp4(vaddq_f32(u, u)))));
        vst1q_f32(x + i, vmulq_f32(vmulq_n_f32(v, 0.5f), vaddq_f32(one, th)));
    }
    for (; i < n; i++) x[i] = gelu_tanh(x[i]);
}

// x (n) *= s
static void scale_fast(float *x, int n, float s) {
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, vmulq_n_f32(vld1q_f32(x + i), s));
    for (; i < n; i++) x[i] *= s;
}

// scores (n) = K (n,hd) @ q (hd) * scale
static void scores_fast(float *scores, const float *q, const float *K, int n, int hd, float scale) {
    for (int j = 0; j < n; j++) scores[j] = dot_fast(q, K + (size_t)j * hd, hd) * scale;
}

// out (hd) = w (n) @ V (n,hd), with the output held in registers for hd <= 64
static void weighted_sum_fast(float *out, const float *w, const float *V, int n, int hd) {
    if (hd > 64 || hd % 4) { weighted_sum_plain(out, w, V, n, hd); return; }
    float32x4_t acc[16];
    int nv = hd / 4;
    for (int v = 0; v < nv; v++) acc[v] = vdupq_n_f32(0);
    for (int j = 0; j < n; j++) {
        const float *row = V + (size_t)j * hd;
        for (int v = 0; v < nv; v++) acc[v] = vfmaq_n_f32(acc[v], vld1q_f32(row + 4 * v), w[j]);
    }
    for (int v = 0; v < nv; v++) vst1q_f32(out + 4 * v, acc[v]);
}

#endif

#if SIMD_AVX2 || SIMD_NEON
// --- prefill: blocked products on top of gemm_6x16 (AVX2 or NEON) ---
//
// For T >= GEMM_MIN_T positions the product is done the way fast BLAS
// libraries do it: W is copied, 16 rows at a time, into a transposed "panel"
// (kc, 16) that stays in the L1 cache (pack_panel), and gemm_6x16 keeps a
// 6 x 16 block of outputs in registers while k runs (AVX2: per k, two loads
// of the panel, six broadcast inputs, twelve FMAs). Each output is one chain
// of FMAs in k order, starting from its bias, so the value does not depend
// on the thread count or on how positions are tiled (it can differ in the
// last bits from matmul_rows_fast, which sums in lanes and then adds them).

// The weights a pack_panel reads next, fetched into the caches ahead of it.
// Packing reads rows of W in pieces of kc values, many rows apart, and the
// hardware prefetcher does not see such short runs coming: left alone, the
// packing waits on memory for each line (with a prompt of 128 positions a
// third of the time). While the products of one piece run, the lines of the
// next (the next kc of the same rows, or the first of the next rows) are
// requested a few at a time, spread over the gemm_6x16 calls.
typedef struct {
    const char *base;     // the first line of row 0
    size_t row_bytes;     // from one row to the next
    int rows, lines;      // rows, and lines of 64 bytes in each
    int next;             // the next line to ask for: row next / lines, line next % lines
} Prefetch;

static Prefetch prefetch_piece(const Matrix *W, int C, int OC, int o, int nb, int k0, int kc) {
    Prefetch p = {0};
    if (o >= OC || k0 >= C) return p;
    p.rows = OC - o < nb ? OC - o : nb;
    size_t esize = W->f ? sizeof(float) : 1;
    p.base = W->f ? (const char *)(W->f + (size_t)o * C + k0) : (const char *)(W->q + (size_t)o * C + k0);
    p.row_bytes = (size_t)C * esize;
    p.lines = (int)(((size_t)kc * esize + 63) / 64) + 1;  // + 1: the piece need not start on a line
    return p;
}

static void prefetch_some(Prefetch *p, int n) {
    for (; n > 0 && p->next < p->rows * p->lines; n--, p->next++)
        __builtin_prefetch(p->base + (size_t)(p->next / p->lines) * p->row_bytes + (size_t)(p->next % p->lines) * 64, 0, 3);
}

// output columns [o0, o1) of out (T,OC) = inp (T,C) @ W^T (OC,C) + b (any T;
// matmul uses it for T >= GEMM_MIN_T), o1 - o0 <= GEMM_NB
static void matmul_cols_gemm(float *out, const float *inp, const Matrix *W, const float *b,
                             int T, int C, int OC, int o0, int o1) {
    _Alignas(32) float panels[GEMM_NB / 16][GEMM_KC * 16];
    _Alignas(32) float edge[6 * 16], edge_bias[16];
    int calls = (o1 - o0 + 15) / 16 * ((T + 5) / 6);  // gemm_6x16 calls per piece
    for (int k0 = 0; k0 < C; k0 += GEMM_KC) {
        int kc = C - k0 < GEMM_KC ? C - k0 : GEMM_KC, first = k0 == 0;
        for (int o = o0, p = 0; o < o1; o += 16, p++) {
            if (W->f) pack_panel(panels[p], W->f, C, OC, o, k0, kc);
            else pack_panel_q8(panels[p], W, C, OC, o, k0, kc);  // 8 bits: dequantised here, once per tile
        }
        int k1 = k0 + GEMM_KC;  // the next piece: the next kc of these rows, or the first of the next rows
        Prefetch ahead = k1 < C ? prefetch_piece(W, C, OC, o0, o1 - o0, k1, C - k1 < GEMM_KC ? C - k1 : GEMM_KC)
                                : prefetch_piece(W, C, OC, o1, o1 - o0, 0, C < GEMM_KC ? C : GEMM_KC);
        int per_call = (ahead.rows * ahead.lines + calls - 1) / calls;
        for (int o = o0, p = 0; o < o1; o += 16, p++) {
            int nr = o1 - o < 16 ? o1 - o : 16;
            const float *bias = b ? b + o : NULL;
            if (nr < 16 && b) {  // the bias of a partial panel, padded
                memset(edge_bias, 0, sizeof edge_bias);
                memcpy(edge_bias, b + o, nr * sizeof(float));
                bias = edge_bias;
            }
            for (int t = 0; t < T; t += 6) {
                int mr = T - t < 6 ? T - t : 6;
                float *c = out + (size_t)t * OC + o;
                prefetch_some(&ahead, per_call);
                if (nr == 16) { gemm_6x16(c, OC, inp + (size_t)t * C + k0, C, panels[p], 16, kc, mr, first, bias); continue; }
                // a partial panel (the last columns of W): through a (6,16) scratch block
                for (int i = 0; i < mr && !first; i++) memcpy(edge + 16 * i, c + (size_t)i * OC, nr * sizeof(float));
                gemm_6x16(edge, 16, inp + (size_t)t * C + k0, C, panels[p], 16, kc, mr, first, bias);
                for (int i = 0; i < mr; i++) memcpy(c + (size_t)i * OC, edge + 16 * i, nr * sizeof(float));
            }
        }
    }
}

// Causal attention of one head over a tile of T queries, query t at position
// pos0 + t, as two blocked products, 6 queries at a time:
//   p (6,n)    = q (6,hd) @ K^T (hd,n) * scale, masked, softmax per row
//   out (6,hd) = p (6,n) @ V (n,hd)
// K and V (n,hd) hold keys 0 .. n-1, n = pos0 + T; q rows are ldq apart,
// out rows ldo apart. Scratch: kpack (n rounded up to 16, hd) for K in
// panels, p (6, ldp). With log, row `pos` of the weights is kept there.
// The plain per-query loop that says the same is in attention_heads below.
static void attention_tile_fast(float *out, size_t ldo, const float *q, size_t ldq, const float *K, const float *V,
                                int T, int pos0, int hd, float scale, float *kpack, float *p, size_t ldp, float *log) {
    int n = pos0 + T;
    for (int j = 0; j < n; j += 16) pack_panel(kpack + (size_t)j * hd, K, hd, n, j, 0, hd);
    for (int t = 0; t < T; t += 6) {
        int mr = T - t < 6 ? T - t : 6, nk = pos0 + t + mr;  // keys this block can see
        const float *qt = q + (size_t)t * ldq;
        for (int j = 0; j < nk; j += 16)
            gemm_6x16(p + j, ldp, qt, ldq, kpack + (size_t)j * hd, 16, hd, mr, 1, NULL);
        for (int i = 0; i < mr; i++) {
            int pos = pos0 + t + i;
            float *row = p + (size_t)i * ldp;
            scale_fast(row, pos + 1, scale);
            softmax_fast(row, pos + 1);
            if (log) memcpy(log + (size_t)pos * (pos + 1) / 2, row, (pos + 1) * sizeof(float));
            for (int j = pos + 1; j < nk; j++) row[j] = 0.0f;  // the causal mask
        }
        for (int c0 = 0; c0 < hd; c0 += 16)
            gemm_6x16(out + (size_t)t * ldo + c0, ldo, p, ldp, V + c0, hd, nk, mr, 1, NULL);
    }
}
#endif

// ----------------------------------------------------------------------------
// II.3 FAST_KERNELS and PORTABLE_KERNELS: the kernel table of I.5, spread
// over the worker pool

typedef struct {
    float *out; const float *inp, *b;
    const Matrix *W;
    const int8_t *qx; const float *sx;  // with an 8-bit W, decoding: inp in 8 bits
    int T, C, OC;
    int nb;  // output columns per unit of work of the blocked product
} MatmulArgs;

typedef struct { float *x; const float *up; size_t per_row; int activation; } ActivateArgs;

typedef struct { float *out; const float *x, *w, *b; int C; float eps; } LayernormArgs;

typedef struct { float *out; const float *x, *w; int C; float eps; } RmsnormArgs;

#if SIMD_AVX2 || SIMD_NEON
static void matmul_slice(void *ctx, int o0, int o1) {
    MatmulArgs *a = ctx;
    if (a->W->f) matmul_rows_fast(a->out, a->inp, a->W->f, a->b, a->T, a->C, a->OC, o0, o1);
    else matmul_rows_q8(a->out, a->qx, a->sx, a->W, a->b, a->T, a->C, a->OC, o0, o1);
}

// blocks [u0, u1) of a->nb output columns
static void matmul_blocks(void *ctx, int u0, int u1) {
    MatmulArgs *a = ctx;
    for (int u = u0; u < u1; u++) {
        int o0 = u * a->nb, o1 = o0 + a->nb < a->OC ? o0 + a->nb : a->OC;
        matmul_cols_gemm(a->out, a->inp, a->W, a->b, a->T, a->C, a->OC, o0, o1);
    }
}

// Output columns per unit of work: GEMM_NB, or 32 or 16 when the units
// would not share out evenly over the threads (a Llama key/value product of
// 192 columns is 3 units of 64 for 2 threads: one thread would do two).
static int gemm_unit(int OC) {
    int nb = GEMM_NB, n = pool.n_threads > 1 ? pool.n_threads : 1;
    for (; nb > 16; nb /= 2) {
        int units = (OC + nb - 1) / nb, rounds = (units + n - 1) / n;
        if (10 * rounds * n <= 11 * units) break;  // within 10% of an even share
    }
    return nb;
}

typedef struct { const float *x; int8_t *q; float *scale, *deq; int C, blocks; } QuantizeArgs;

// rows [t0, t1) of x (T,C) in 8 bits (q), or the values that stands for (deq)
static void quantize_slice(void *ctx, int t0, int t1) {
    QuantizeArgs *a = ctx;
    for (int t = t0; t < t1; t++)
        quantize_q8_fast(a->q ? a->q + (size_t)t * a->C : NULL, a->scale + (size_t)t * a->blocks,
                         a->deq ? a->deq + (size_t)t * a->C : NULL, a->x + (size_t)t * a->C, a->C);
}

// The product with an 8-bit W; replaces matmul_plain's 8-bit branch. The
// input rows go into 8 bits as quantize_q8 puts them. Decoding and short
// tiles then take matmul_rows_q8's integer dot products; a prompt tile takes
// the blocked product on the values the 8-bit input stands for, with W
// dequantised as it is packed: the same products, summed in float.
static void matmul_q8_fast(MatmulArgs *a) {
    int T = a->T, C = a->C, blocks = (C + Q8_BLOCK - 1) / Q8_BLOCK;
    float *scale = xmalloc(sizeof(float) * T * blocks);
    if (T < GEMM_MIN_T) {
        int8_t *q = xmalloc((size_t)T * C);
        QuantizeArgs qa = {a->inp, q, scale, NULL, C, blocks};
        quantize_slice(&qa, 0, T);
        a->qx = q;
        a->sx = scale;
        parallel_for(a->OC, matmul_slice, a);
        free(q);
    } else {
        float *deq = xmalloc(sizeof(float) * T * C);
        QuantizeArgs qa = {a->inp, NULL, scale, deq, C, blocks};
        parallel_for(T, quantize_slice, &qa);
        a->inp = deq;
        parallel_for((a->OC + a->nb - 1) / a->nb, matmul_blocks, a);
        free(deq);
    }
    free(scale);
}

// out (T,OC) = inp (T,C) @ W^T (OC,C) + b (OC); replaces matmul_plain
static void matmul_fast(float *out, const float *inp, const Matrix *W, const float *b, int T, int C, int OC) {
    MatmulArgs a = {.out = out, .inp = inp, .b = b, .W = W, .T = T, .C = C, .OC = OC, .nb = gemm_unit(OC)};
    if (W->q) matmul_q8_fast(&a);
    else if (T >= GEMM_MIN_T) parallel_for((OC + a.nb - 1) / a.nb, matmul_blocks, &a);
    else parallel_for(OC, matmul_slice, &a);
}

static void activate_slice(void *ctx, int r0, int r1) {
    ActivateArgs *a = ctx;
    activate_fast(a->x + (size_t)r0 * a->per_row, (size_t)(r1 - r0) * a->per_row, a->activation);
}

// x (T,F) = act(x); replaces activate_rows_plain
static void activate_rows_fast(float *x, int T, int F, int activation) {
    ActivateArgs a = {x, NULL, (size_t)F, activation};
    parallel_for(T, activate_slice, &a);
}

static void gate_slice(void *ctx, int r0, int r1) {
    ActivateArgs *a = ctx;
    size_t at = (size_t)r0 * a->per_row, n = (size_t)(r1 - r0) * a->per_row;
    if (a->activation == ACT_SILU) { silu_fast(a->x + at, a->up + at, n); return; }
    activate_fast(a->x + at, n, a->activation);
    multiply(a->x + at, a->up + at, n);
}

// x (T,F) = act(x) * up (T,F); replaces gate_rows_plain
static void gate_rows_fast(float *x, const float *up, int T, int F, int activation) {
    ActivateArgs a = {x, up, (size_t)F, activation};
    parallel_for(T, gate_slice, &a);
}

static void rmsnorm_fast_slice(void *ctx, int t0, int t1) {
    RmsnormArgs *a = ctx;
    for (int t = t0; t < t1; t++) rmsnorm_fast(a->out + (size_t)t * a->C, a->x + (size_t)t * a->C, a->w, a->C, a->eps);
}

// out (T,C) = rmsnorm of each row of x (T,C); replaces rmsnorm_rows_plain
static void rmsnorm_rows_fast(float *out, const float *x, const float *w, int T, int C, float eps) {
    RmsnormArgs a = {out, x, w, C, eps};
    parallel_for(T, rmsnorm_fast_slice, &a);
}

// rows [t0, t1) of out (T,C) = layernorm(x (T,C))
static void layernorm_slice(void *ctx, int t0, int t1) {
    LayernormArgs *a = ctx;
    for (int t = t0; t < t1; t++) layernorm_fast(a->out + (size_t)t * a->C, a->x + (size_t)t * a->C, a->w, a->b, a->C, a->eps);
}

// out (T,C) = layernorm of each row of x (T,C); replaces layernorm_rows_plain
static void layernorm_rows_fast(float *out, const float *x, const float *w, const float *b, int T, int C, float eps) {
    LayernormArgs a = {out, x, w, b, C, eps};
    parallel_for(T, layernorm_slice, &a);
}

// A prompt tile's attention for one head as blocked products, when the tile
// has GEMM_MIN_T or more queries and the head size is a multiple of 16.
static int attend_tile_fast(float *out, size_t ldo, const float *q, size_t ldq, const float *K, const float *V,
                            int T, int pos0, int hd, float scale, float *kpack, float *p, size_t ldp, float *log) {
    if (T < GEMM_MIN_T || hd % 16) return 0;
    attention_tile_fast(out, ldo, q, ldq, K, V, T, pos0, hd, scale, kpack, p, ldp, log);
    return 1;
}

static const Kernels FAST_KERNELS = {
    .matmul = matmul_fast, .layernorm = layernorm_rows_fast, .rmsnorm = rmsnorm_rows_fast, .activate = activate_rows_fast,
    .gate = gate_rows_fast,
    .scores = scores_fast, .softmax = softmax_fast, .weighted_sum = weighted_sum_fast,
    .attend_tile = attend_tile_fast, .parallel_for = parallel_for,
};
#endif
AVX2_END  // the end of the code compiled for AVX2 + FMA

#if !(SIMD_AVX2 || SIMD_NEON) || SIMD_DISPATCH
#define HAVE_PORTABLE_KERNELS 1
// --- PORTABLE_KERNELS: the plain loops of I.4 split over the worker pool as
// FAST_KERNELS is; the same bits as PLAIN_KERNELS, on any CPU ---

// rows [o0, o1) of out (T,OC) = inp (T,C) @ W^T (OC,C) + b, as matmul_plain
static void matmul_slice_portable(void *ctx, int o0, int o1) {
    MatmulArgs *a = ctx;
    size_t blocks = (a->C + Q8_BLOCK - 1) / Q8_BLOCK;
    for (int t = 0; t < a->T; t++)
        for (int o = o0; o < o1; o++) {
            float d = a->W->f ? dot_plain(a->inp + (size_t)t * a->C, a->W->f + (size_t)o * a->C, a->C)
                              : dot_q8_plain(a->qx + (size_t)t * a->C, a->sx + t * blocks,
                                             a->W->q + (size_t)o * a->C, a->W->scale + o * blocks, a->C);
            a->out[(size_t)t * a->OC + o] = d + (a->b ? a->b[o] : 0.0f);
        }
}

static void matmul_portable(float *out, const float *inp, const Matrix *W, const float *b, int T, int C, int OC) {
    MatmulArgs a = {.out = out, .inp = inp, .b = b, .W = W, .T = T, .C = C, .OC = OC};
    Q8Rows x = {0};
    if (W->q) {  // an 8-bit W: the input in 8 bits first, as matmul_plain does
        x = q8_rows_new(inp, T, C);
        a.qx = x.q;
        a.sx = x.scale;
    }
    parallel_for(OC, matmul_slice_portable, &a);
    q8_rows_free(&x);
}

static void activate_slice_portable(void *ctx, int r0, int r1) {
    ActivateArgs *a = ctx;
    activate_plain(a->x + (size_t)r0 * a->per_row, (size_t)(r1 - r0) * a->per_row, a->activation);
}

static void activate_rows_portable(float *x, int T, int F, int activation) {
    ActivateArgs a = {x, NULL, (size_t)F, activation};
    parallel_for(T, activate_slice_portable, &a);
}

static void gate_slice_portable(void *ctx, int r0, int r1) {
    ActivateArgs *a = ctx;
    size_t at = (size_t)r0 * a->per_row, n = (size_t)(r1 - r0) * a->per_row;
    activate_plain(a->x + at, n, a->activation);
    multiply(a->x + at, a->up + at, n);
}

static void gate_rows_portable(float *x, const float *up, int T, int F, int activation) {
    ActivateArgs a = {x, up, (size_t)F, activation};
    parallel_for(T, gate_slice_portable, &a);
}

static void layernorm_slice_portable(void *ctx, int t0, int t1) {
    LayernormArgs *a = ctx;
    for (int t = t0; t < t1; t++) layernorm(a->out + (size_t)t * a->C, a->x + (size_t)t * a->C, a->w, a->b, a->C, a->eps);
}

static void layernorm_rows_portable(float *out, const float *x, const float *w, const float *b, int T, int C, float eps) {
    LayernormArgs a = {out, x, w, b, C, eps};
    parallel_for(T, layernorm_slice_portable, &a);
}

static void rmsnorm_slice_portable(void *ctx, int t0, int t1) {
    RmsnormArgs *a = ctx;
    for (int t = t0; t < t1; t++) rmsnorm(a->out + (size_t)t * a->C, a->x + (size_t)t * a->C, a->w, a->C, a->eps);
}

static void rmsnorm_rows_portable(float *out, const float *x, const float *w, int T, int C, float eps) {
    RmsnormArgs a = {out, x, w, C, eps};
    parallel_for(T, rmsnorm_slice_portable, &a);
}

static const Kernels PORTABLE_KERNELS = {
    .matmul = matmul_portable, .layernorm = layernorm_rows_portable, .rmsnorm = rmsnorm_rows_portable,
    .activate = activate_rows_portable, .gate = gate_rows_portable,
    .scores = scores_plain, .softmax = softmax_plain, .weighted_sum = weighted_sum_plain,
    .attend_tile = NULL, .parallel_for = parallel_for,
};
#endif

// The table run_model uses unless --plain-kernels: FAST_KERNELS where this
// CPU has its vector unit, else PORTABLE_KERNELS. (__builtin_cpu_supports
// also checks that the OS saves the AVX registers.)
static const Kernels *fast_kernels(void) {
#if SIMD_DISPATCH
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? &FAST_KERNELS : &PORTABLE_KERNELS;
#elif SIMD_AVX2 || SIMD_NEON
    return &FAST_KERNELS;
#else
    return &PORTABLE_KERNELS;
#endif
}

// What -v says about the kernel table in use.
static const char *kernels_name(const Kernels *k) {
    if (k == &PLAIN_KERNELS) return "plain loops on one thread (--plain-kernels)";
#if SIMD_DISPATCH
    return k == &FAST_KERNELS ? "AVX2+FMA (chosen by CPU at start-up)" : "portable C (chosen by CPU at start-up)";
#elif SIMD_AVX2
    return "AVX2+FMA (compiled for this machine)";
#elif SIMD_NEON
    return "NEON";
#else
    return "portable C";
#endif
}

// ----------------------------------------------------------------------------
// II.4 Huge pages
//
// mmap the whole file read-only. On Linux the mapping starts at a 2 MB
// boundary and is marked MADV_HUGEPAGE: file offsets and addresses then agree
// modulo 2 MB, so when the kernel reads the file into its page cache in 2 MB
// pieces it maps them with one TLB entry each instead of 512. Streaming the
// weights then costs far fewer TLB misses (most of all in a virtual machine),
// and the pages are still the page cache's, shared by every process. (With
// 16 or 64 KB base pages, as on some arm64 kernels, huge pages are larger
// and this alignment simply does not help.)
static void *map_at_huge_boundary(int fd, size_t size) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const size_t huge = (size_t)2 << 20;
    long page = sysconf(_SC_PAGESIZE);
    if (page > 0 && size <= SIZE_MAX - 2 * huge) {
        // reserve size + 2 MB of address space, then map the file over its first
        // 2 MB boundary (MAP_FIXED replaces the reservation there; this runs
        // before any thread is started, so nothing else can map in between)
        unsigned char *r = mmap(NULL, size + huge, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (r != MAP_FAILED) {
            unsigned char *a = (unsigned char *)(((uintptr_t)r + huge - 1) & ~(uintptr_t)(huge - 1));
            if (mmap(a, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) == a) {
                unsigned char *end = a + (size + (size_t)page - 1) / (size_t)page * (size_t)page;
                if (a > r) munmap(r, (size_t)(a - r));                          // the reservation before
                if (r + size + huge > end) munmap(end, (size_t)(r + size + huge - end));  // and after
                madvise(a, size, MADV_HUGEPAGE);
                return a;
            }
            munmap(r, size + huge);
        }
    }
#endif
    return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
}

// The KV cache: zeroed anonymous memory, in huge pages where the system
// offers them, so that filling it does not take a page fault every 4 KB.
static float *cache_alloc(size_t n_floats) {
    if (n_floats > SIZE_MAX / sizeof(float)) die(EXIT_RUNTIME, "out of memory: KV cache of %zu floats", n_floats);
    size_t bytes = n_floats * sizeof(float);
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die(EXIT_RUNTIME, "out of memory: KV cache of %zu bytes", bytes);
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void cache_free(float *p, size_t n_floats) {
    if (p) munmap(p, n_floats ? n_floats * sizeof(float) : 1);
}

// The weights will all be read: on Linux map every page up front (unless
// the model is over half the RAM), so the first forward pass does not
// fault them in; otherwise just ask for them to be read ahead.
static void prefault_weights(const Mapping *file) {
    int populated = 0;
#ifdef MADV_POPULATE_READ
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && file->size < (size_t)pages * (size_t)page / 2)
        populated = madvise(file->data, file->size, MADV_POPULATE_READ) == 0;
#endif
    if (!populated) madvise(file->data, file->size, MADV_WILLNEED);
}

// ============================================================================
// PART III. LOOKING INSIDE
// ============================================================================
//
// With --attention, --attention-overview or --attention-html, forward()
// keeps every attention weight it computes in an AttentionLog (I.3): row i
// of each head's matrix is softmax(q_i . k_j) over the keys j <= i. Without
// those flags the log is NULL and nothing is kept. --explain shows, at each
// step of generation, the tokens the model found most likely and which one
// the sampler picked.

// Row i of the matrix for (layer, head): weights over keys 0..i.
static float *attention_row(const AttentionLog *g, int layer, int head, int i) {
    return g->w + ((size_t)layer * g->n_head + head) * g->tri + (size_t)i * (i + 1) / 2;
}

// ----------------------------------------------------------------------------
// Token labels: the text a token carries, as a reader should see it.
//
// A whole character shows as itself. A character whose bytes are split over
// several tokens (a Chinese character is three bytes, and byte-level BPE may
// cut it) shows on each of them with its part: 我(1/3) 我(2/3) 我(3/3).
// Control characters and bytes that are not UTF-8 show as \n, \t, \xNN, and
// a backslash as \\, so a token "\n" and a newline differ; in quoted labels
// (--explain) a quote shows as \".

typedef struct {
    char *s;
    size_t len, cap;
} Str;

static void str_put(Str *s, const char *b, size_t n) {
    if (s->len + n + 1 > s->cap) {
        s->cap = (s->len + n + 1) * 2;
        char *p = realloc(s->s, s->cap);
        if (!p) die(EXIT_RUNTIME, "out of memory");
        s->s = p;
    }
    memcpy(s->s + s->len, b, n);
    s->len += n;
    s->s[s->len] = '\0';
}

// One character (len bytes at b, code point cp; UINT32_MAX: a byte that is
// not UTF-8) as the label shows it.
static void label_char(Str *s, const unsigned char *b, int len, uint32_t cp, int quote) {
    char esc[8];
    if (cp == UINT32_MAX || cp < 0x20 || cp == 0x7f) {
        int k = cp == '\n' ? snprintf(esc, sizeof esc, "\\n") : cp == '\t' ? snprintf(esc, sizeof esc, "\\t")
              : cp == '\r' ? snprintf(esc, sizeof esc, "\\r") : snprintf(esc, sizeof esc, "\\x%02X", b[0]);
        str_put(s, esc, (size_t)k);
    } else if (cp == '\\' || (quote && cp == '"')) {
        esc[0] = '\\';
        esc[1] = (char)cp;
        str_put(s, esc, 2);
    } else {
        str_put(s, (const char *)b, (size_t)len);
    }
}

// Labels of the n tokens ids[0..n), read as one text: labels[i] is a string
// the caller frees with labels_free.
static char **labels_new(Tokenizer *tok, const int *ids, int n, int quote) {
    size_t total = 0, len;
    for (int i = 0; i < n; i++) { token_bytes(tok, ids[i], &len); total += len; }
    unsigned char *text = xmalloc(total);
    int *owner = xmalloc(sizeof(int) * (total ? total : 1));  // the token each byte came from
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const unsigned char *b = token_bytes(tok, ids[i], &len);
        memcpy(text + at, b, len);
        for (size_t k = 0; k < len; k++) owner[at + k] = i;
        at += len;
    }
    Str *out = xcalloc(n, sizeof(Str));
    for (size_t i = 0; i < total;) {
        int clen;
        uint32_t cp = utf8_char(text, total, i, &clen);
        int first = owner[i], last = owner[i + clen - 1];
        for (int t = first; t <= last; t++) {
            label_char(&out[t], text + i, clen, cp, quote);
            if (last > first) {  // a character shared by tokens first..last
                char part[32];
                str_put(&out[t], part, (size_t)snprintf(part, sizeof part, "(%d/%d)", t - first + 1, last - first + 1));
            }
        }
        i += clen;
    }
    char **labels = xmalloc(sizeof(char *) * (n ? n : 1));
    for (int i = 0; i < n; i++) {
        if (!out[i].s) str_put(&out[i], "", 0);
        labels[i] = out[i].s;
    }
    free(out);
    free(owner);
    free(text);
    return labels;
}

static void labels_free(char **labels, int n) {
    for (int i = 0; i < n; i++) free(labels[i]);
    free(labels);
}

// The label of token id if it came right after ctx[0..n_ctx) (the last three
// tokens are enough to complete a character it finishes). Caller frees.
static char *label_after(Tokenizer *tok, const int *ctx, int n_ctx, int id, int quote) {
    int ids[4], k = 0;
    for (int i = n_ctx > 3 ? n_ctx - 3 : 0; i < n_ctx; i++) ids[k++] = ctx[i];
    ids[k++] = id;
    char **labels = labels_new(tok, ids, k, quote);
    char *label = labels[k - 1];
    labels[k - 1] = NULL;
    labels_free(labels, k);
    return label;
}

// Columns a character takes in a terminal: 2 for the wide East Asian
// scripts and emoji, 0 for combining marks, else 1 (what wcwidth would say
// in a UTF-8 locale, without needing one).
static int char_width(uint32_t cp) {
    if ((cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x200B && cp <= 0x200F) || cp == 0xFE0F) return 0;
    if ((cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0x303E) || (cp >= 0x3041 && cp <= 0x33FF) ||
        (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xA000 && cp <= 0xA4CF) ||
        (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0xFE30 && cp <= 0xFE4F) ||
        (cp >= 0xFF00 && cp <= 0xFF60) || (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
        (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD))
        return 2;
    return 1;
}

// Columns a label takes in a terminal.
static int label_width(const char *s) {
    size_t n = strlen(s);
    int cols = 0, len;
    for (size_t i = 0; i < n; i += len) cols += char_width(utf8_char((const unsigned char *)s, n, i, &len));
    return cols;
}

// Print a label padded or cut to `width` terminal columns (a cut one ends in ~).
static void put_label(FILE *f, const char *s, int width) {
    size_t n = strlen(s);
    int cols = 0, len, fits = label_width(s) <= width;
    for (size_t i = 0; i < n; i += len) {
        int w = char_width(utf8_char((const unsigned char *)s, n, i, &len));
        if (!fits && cols + w > width - 1) break;
        fwrite(s + i, 1, (size_t)len, f);
        cols += w;
    }
    if (!fits) { fputc('~', f); cols++; }
    for (; cols < width; cols++) fputc(' ', f);
}

// The terminal's width in columns: the window's size, else $COLUMNS, else 80.
static int terminal_columns(int fd) {
#ifdef TIOCGWINSZ
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
#else
    (void)fd;
#endif
    const char *c = getenv("COLUMNS");
    long v = c ? strtol(c, NULL, 10) : 0;
    return v > 0 && v < 10000 ? (int)v : 80;
}

// Colour escapes only on a terminal that has them, and not with NO_COLOR.
static int colour_wanted(int tty) {
    const char *term = getenv("TERM");
    return tty && !getenv("NO_COLOR") && !(term && strcmp(term, "dumb") == 0);
}

// A weight in [0, 1] as a shade block: blank, light, medium, dark, full.
static const char *shade(float w) {
    static const char *SHADES[] = {" ", "\u2591", "\u2592", "\u2593", "\u2588"};
    return SHADES[w <= 0.02f ? 0 : w < 0.15f ? 1 : w < 0.4f ? 2 : w < 0.7f ? 3 : 4];
}

// One heatmap cell: on a white-to-red ramp of the 256-colour palette, or
// as a shade block when colour is off (NO_COLOR).
static void put_cell(FILE *f, float w, int colour) {
    static const int RAMP[] = {231, 224, 217, 210, 203, 196, 160, 124, 88};
    if (colour) {
        int k = (int)lroundf(w * 8.0f);
        fprintf(f, "\033[48;5;%dm  \033[0m", RAMP[k < 0 ? 0 : k > 8 ? 8 : k]);
    } else {
        fprintf(f, "%s%s", shade(w), shade(w));
    }
}

#define MAP_ROWS 40  // the terminal map shows at most the last this many queries

// --attention: the matrix of one layer and head, queries by keys. On a
// terminal as a heatmap of the last MAP_ROWS queries and as many of the last
// keys as the width holds (a < marks rows whose earlier keys are cut);
// otherwise as plain numbers, one line per query: "i<TAB>token<TAB>w_0 .. w_i".
static void show_attention(FILE *f, const AttentionLog *g, char **labels, int n, int n_prompt, int layer, int head,
                           int tty, int colour, int columns) {
    if (!tty) {
        fprintf(f, "# attention layer %d head %d: query<TAB>token<TAB>weights over keys 0..query\n", layer, head);
        for (int i = 0; i < n; i++) {
            const float *row = attention_row(g, layer, head, i);
            fprintf(f, "%d\t%s\t", i, labels[i]);
            for (int j = 0; j <= i; j++) fprintf(f, j ? " %.6f" : "%.6f", row[j]);
            fputc('\n', f);
        }
        return;
    }
    enum { PREFIX = 20 };  // "%4d* " (6), the label (12), a space, the cut mark
    int fit = (columns - PREFIX) / 2 > 1 ? (columns - PREFIX) / 2 : 1;
    int first_row = n > MAP_ROWS ? n - MAP_ROWS : 0, first_key = n > fit ? n - fit : 0;
    fprintf(f, "\nattention in layer %d, head %d\n"
               "each row is a token (query) looking back at the tokens\n"
               "before it (keys); the stronger the colour, the more weight;\n"
               "each row sums to 1; generated tokens are marked *\n", layer, head);
    if (first_row) fprintf(f, "only the last %d queries are shown\n", n - first_row);
    if (first_key) fprintf(f, "%d columns: keys 0..%d are cut (<)\n", columns, first_key - 1);
    fputc('\n', f);
    for (int i = first_row; i < n; i++) {
        const float *row = attention_row(g, layer, head, i);
        fprintf(f, "%4d%c ", i, i >= n_prompt ? '*' : ' ');
        put_label(f, labels[i], 12);
        fputs(first_key ? " <" : "  ", f);
        for (int j = first_key; j <= i; j++) put_cell(f, row[j], colour);
        fputc('\n', f);
    }
    // the keys' positions under their columns: tens, then units
    for (int r = 0; r < 2; r++) {
        fprintf(f, "%*s", PREFIX, "");
        for (int j = first_key; j < n; j++) fprintf(f, "%-2d", r == 0 ? (j / 10) % 10 : j % 10);
        fputc('\n', f);
    }
}

// Simple measures of what a head does, averaged over queries 1..n-1: the
// weight on the previous token, on the first token, on itself, and the
// entropy of its rows in bits.
typedef struct { float prev, first, self, entropy; } HeadStats;

static HeadStats head_stats(const AttentionLog *g, int layer, int head, int n) {
    HeadStats st = {0, 0, 0, 0};
    if (n < 2) return st;
    for (int i = 1; i < n; i++) {
        const float *row = attention_row(g, layer, head, i);
        st.prev += row[i - 1];
        st.first += row[0];
        st.self += row[i];
        for (int j = 0; j <= i; j++) if (row[j] > 0) st.entropy -= row[j] * log2f(row[j]);
    }
    st.prev /= n - 1; st.first /= n - 1; st.self /= n - 1; st.entropy /= n - 1;
    return st;
}

static const char *head_pattern(HeadStats st) {
    if (st.prev >= 0.5f) return "previous token";
    if (st.first >= 0.5f) return "first token (sink)";
    if (st.self >= 0.5f) return "itself";
    return st.entropy > 2.0f ? "spread out" : "mixed";
}

#define OVERVIEW_CELLS 10  // each head's map is shrunk to at most this many rows and columns

// --attention-overview: every head of every layer as a small map (on a
// terminal), with the measures above; otherwise a table of the measures.
static void show_attention_overview(FILE *f, const AttentionLog *g, int n, int tty, int columns) {
    if (!tty) {
        fprintf(f, "# layer\thead\tprev\tfirst\tself\tentropy_bits\tpattern\n");
        for (int l = 0; l < g->n_layer; l++)
            for (int h = 0; h < g->n_head; h++) {
                HeadStats st = head_stats(g, l, h, n);
                fprintf(f, "%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%s\n", l, h, st.prev, st.first, st.self, st.entropy, head_pattern(st));
            }
        return;
    }
    int cells = n < OVERVIEW_CELLS ? n : OVERVIEW_CELLS;
    int per_line = columns / (cells * 2 + 2) > 1 ? columns / (cells * 2 + 2) : 1;  // maps side by side
    fprintf(f, "\nattention of every head over %d tokens\n(each map: queries down, keys across, %dx%d)\n", n, cells, cells);
    for (int l = 0; l < g->n_layer; l++) {
        for (int h0 = 0; h0 < g->n_head; h0 += per_line) {
            int h1 = h0 + per_line < g->n_head ? h0 + per_line : g->n_head;
            fputc('\n', f);
            for (int h = h0; h < h1; h++) {
                char name[32];
                snprintf(name, sizeof name, "L%d H%d", l, h);
                fprintf(f, "%-*s", cells * 2 + 2, name);
            }
            fputc('\n', f);
            for (int r = 0; r < cells; r++) {
                for (int h = h0; h < h1; h++) {
                    // cell (r, c): the mean weight over its block of queries and keys
                    int q0 = r * n / cells, q1 = (r + 1) * n / cells;
                    for (int col = 0; col < cells; col++) {
                        int k0 = col * n / cells, k1 = (col + 1) * n / cells;
                        float sum = 0;
                        int count = 0;
                        for (int i = q0; i < q1; i++)
                            for (int j = k0; j < k1 && j <= i; j++) { sum += attention_row(g, l, h, i)[j]; count++; }
                        // scale by the block's width so a block holding one strong key stays dark
                        float w = count ? sum / (q1 - q0) : 0.0f;
                        fprintf(f, "%s%s", shade(w), shade(w));
                    }
                    fputs("  ", f);
                }
                fputc('\n', f);
            }
            for (int h = h0; h < h1; h++) {
                char name[32];
                snprintf(name, sizeof name, "%.14s", head_pattern(head_stats(g, l, h, n)));
                fprintf(f, "%-*s", cells * 2 + 2, name);
            }
            fputc('\n', f);
        }
    }
}

// ----------------------------------------------------------------------------
// Head roles (--find-heads). Three scores of a head's weights w[i][j] over a
// sequence ids[0..n), each a mean over queries:
//   previous token  mean over i = 1..n-1 of w[i][i-1]
//   sink            mean over i = 1..n-1 of w[i][0]
//   induction       mean, over the queries i whose token came before (its
//                   latest earlier copy at j, with j + 1 < i), of w[i][j+1]:
//                   the weight on the token that followed it last time
// On a random sequence repeated (A B C .. A B C ..) an induction head looks
// from each token of the second copy at the token after its first copy.

typedef struct { float prev, induction, sink; } HeadRoles;

static HeadRoles head_roles(const AttentionLog *g, int layer, int head, const int *ids, int n) {
    HeadRoles r = {0, 0, 0};
    int repeats = 0;
    for (int i = 1; i < n; i++) {
        const float *row = attention_row(g, layer, head, i);
        r.prev += row[i - 1];
        r.sink += row[0];
        int j = i - 1;
        while (j >= 0 && ids[j] != ids[i]) j--;  // the latest earlier copy of this token
        if (j >= 0 && j + 1 < i) { r.induction += row[j + 1]; repeats++; }
    }
    if (n > 1) { r.prev /= n - 1; r.sink /= n - 1; }
    if (repeats) r.induction /= repeats;
    return r;
}

#define FIND_HEADS_TOKENS 50  // --find-heads: random tokens in each sequence (before its repeat) ...
#define FIND_HEADS_RUNS 4      // ... and how many sequences

#define ROLE_INDUCTION 0.3f  // a head is named by the first of its scores over these
#define ROLE_PREVIOUS 0.4f
#define ROLE_SINK 0.5f

static const char *head_role(HeadRoles r) {
    return r.induction >= ROLE_INDUCTION ? "induction" : r.prev >= ROLE_PREVIOUS ? "previous token"
         : r.sink >= ROLE_SINK ? "sink" : "-";
}

// A role's rank (induction first) and the score it is ranked by.
static int role_rank(HeadRoles r, float *score) {
    const char *role = head_role(r);
    if (role[0] == 'i') { *score = r.induction; return 0; }
    if (role[0] == 'p') { *score = r.prev; return 1; }
    if (role[0] == 's') { *score = r.sink; return 2; }
    *score = fmaxf(r.induction, fmaxf(r.prev, r.sink));
    return 3;
}

// --find-heads's table: every head, ranked (induction heads first, then
// previous-token heads, then sinks, each by its score; the rest by their
// largest score).
static void show_head_roles(FILE *f, const HeadRoles *r, int L, int H, int half, int tty, int weighted) {
    int *order = xmalloc(sizeof(int) * L * H);
    for (int i = 0; i < L * H; i++) order[i] = i;
    for (int i = 1; i < L * H; i++)  // insertion sort by (role, score)
        for (int j = i; j > 0; j--) {
            float sa, sb;
            int ra = role_rank(r[order[j - 1]], &sa), rb = role_rank(r[order[j]], &sb);
            if (ra < rb || (ra == rb && sa >= sb)) break;
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    if (tty) {
        fprintf(f, "heads by role, over %d random sequences of %d tokens, each repeated once\n"
                   "previous: mean weight on the token before; induction: on the token after\n"
                   "this token's earlier copy; sink: on the first token%s\n\n"
                   "  rank  layer  head  previous  induction   sink  role\n", FIND_HEADS_RUNS, half,
                weighted ? "\n(value-weighted: each weight times the norm of the value it reads)" : "");
    } else {
        fprintf(f, "# find-heads%s: rank<TAB>layer<TAB>head<TAB>previous<TAB>induction<TAB>sink<TAB>role\n",
                weighted ? " (value-weighted)" : "");
    }
    for (int k = 0; k < L * H; k++) {
        HeadRoles x = r[order[k]];
        int l = order[k] / H, h = order[k] % H;
        if (tty) fprintf(f, "  %4d  %5d  %4d  %8.3f  %9.3f  %5.3f  %s\n", k + 1, l, h, x.prev, x.induction, x.sink, head_role(x));
        else fprintf(f, "%d\t%d\t%d\t%.4f\t%.4f\t%.4f\t%s\n", k + 1, l, h, x.prev, x.induction, x.sink, head_role(x));
    }
    free(order);
}

// Value-weighted attention (--value-weighted): a weight says how much a
// query reads a key, but a key whose value vector is near zero adds almost
// nothing (models often park their attention on the first token that way).
// Each weight times the norm of the value it reads, w[i][j] |v_j|, shown
// renormalised so that each row sums to 1 again (a row whose values are
// all zero reads nothing: all 0). The values are those of the KV cache
// (layer, kv head, position), as attention read them.
static void weight_by_values(AttentionLog *g, const Model *m, int n) {
    const Config *c = &m->config;
    int hd = c->n_embd / c->n_head, group = c->n_head / c->n_kv_head, S = m->state.seq_len;
    float *norm = xmalloc(sizeof(float) * (n ? n : 1));
    for (int l = 0; l < g->n_layer; l++)
        for (int h = 0; h < g->n_head; h++) {
            const float *V = m->state.v_cache + ((size_t)l * c->n_kv_head + h / group) * S * hd;
            for (int j = 0; j < n; j++) norm[j] = sqrtf(dot_plain(V + (size_t)j * hd, V + (size_t)j * hd, hd));
            for (int i = 0; i < n; i++) {
                float *row = attention_row(g, l, h, i), sum = 0;
                for (int j = 0; j <= i; j++) sum += row[j] * norm[j];
                for (int j = 0; j <= i; j++) row[j] = sum > 0 ? row[j] * norm[j] / sum : 0;
            }
        }
    free(norm);
}

// What the views are asked for on the command line.
typedef struct {
    int explain;              // --explain N: the N most likely tokens at each step (0: off)
    int attention, overview;  // --attention (of layer, head), --attention-overview
    int layer, head;
    const char *html_path;    // --attention-html
    int lens;                 // --logit-lens
    int find_heads;           // --find-heads
    int value_weighted;       // --value-weighted: the attention views show weight times |value|
    int trace;                // --trace
} ViewOptions;

// One generated token and the five most likely at its step, for the HTML page.
typedef struct {
    int picked;
    int top_ids[5];
    float top_p[5];
} StepInfo;

// What the views keep while generation runs.
typedef struct {
    ViewOptions opt;
    Model *m;
    const Sampler *sp;
    AttentionLog *log;  // when a view of attention is asked for (also m->att_log)
    StepInfo *steps;    // (max_new + 1) for the HTML page
    int n_steps;
    float *p;           // (V) scratch for top_tokens
    int *order;         // (V)
    TokenSink *sink;    // the generated text, so that a note starts on its own line
    const int *seq;     // the tokens so far (labels of candidates read on from them)
    int lens_rows;      // --logit-lens: L + 1 rows a position, the embedding and each layer
    int *lens_top;      // (seq_len, lens_rows) the most likely next token ...
    float *lens_p;      // (seq_len, lens_rows) ... and its probability
    struct Trace *trace;  // --trace: the followed token's steps
    HeadRoles *roles;   // --find-heads: (L, H) mean scores over its sequences, for the page
    int weighted;       // the log already holds value-weighted weights
} Views;

static int views_keep_attention(const ViewOptions *o) {
    return o->attention || o->overview || o->html_path || o->find_heads || o->trace;
}

// Views that go through the model's last token too (its row of attention,
// its row of the logit lens).
static int views_feed_last(const ViewOptions *o) {
    return views_keep_attention(o) || o->lens;
}

// ----------------------------------------------------------------------------
// The logit lens (--logit-lens): what the model would predict if it stopped
// after layer l. The residual stream after each layer (and the embedding
// before any) goes through the final LayerNorm and the unembedding, exactly
// as the last layer's does in forward() (unembed): the most likely token and
// its probability, for every position. After the last layer these are the
// model's own predictions.

static void lens_record(Views *v, int row, const float *x, int T, int pos0) {
    Model *m = v->m;
    RunState *s = &m->state;
    int C = m->config.n_embd, V = m->config.vocab_size;
    for (int t0 = 0; t0 < T; t0 += s->logits_rows) {  // s->logits is free until forward() ends
        int n = T - t0 < s->logits_rows ? T - t0 : s->logits_rows;
        unembed(m, s->logits, x + (size_t)t0 * C, n);
        for (int t = 0; t < n; t++) {
            const float *l = s->logits + (size_t)t * V;
            int best = argmax(l, V);
            double sum = 0;
            for (int j = 0; j < V; j++) sum += exp((double)l[j] - l[best]);
            size_t at = (size_t)(pos0 + t0 + t) * v->lens_rows + row;
            v->lens_top[at] = best;
            v->lens_p[at] = (float)(1.0 / sum);
        }
    }
}

typedef struct Trace Trace;
static void trace_step(Trace *tr, Model *m, int step, int layer, const float *x, int T, int pos0);
static void trace_free(Trace *tr);

// The forward pass's probe (Model.probe) while the views want it.
static void views_probe(void *ctx, int step, int layer, const float *x, int T, int pos0) {
    Views *v = ctx;
    if (v->lens_top && (step == PROBE_EMBEDDING || step == PROBE_LAYER)) lens_record(v, layer + 1, x, T, pos0);
    if (v->trace) trace_step(v->trace, v->m, step, layer, x, T, pos0);
}

// The label of the lens's token at (position i, row r): read on from the
// tokens up to i, so a character it finishes shows whole.
static char *lens_label(const Views *v, const int *seq, int i, int r, int quote) {
    return label_after(v->m->tokenizer, seq, i + 1, v->lens_top[(size_t)i * v->lens_rows + r], quote);
}

#define LENS_CELL_MIN 9   // terminal columns of a layer's cell: at least this many ...
#define LENS_CELL_MAX 16  // ... at most this many

// --logit-lens on stdout: on a terminal a table, a row per position (the
// last MAP_ROWS), a column per layer (as many of the last as the width
// holds), each cell the top token and its probability in percent, shaded by
// it; otherwise one line per position and layer:
// "i<TAB>token<TAB>layer<TAB>id<TAB>top token<TAB>probability".
static void show_lens(FILE *f, const Views *v, const int *seq, char **labels, int n, int n_prompt, int tty, int colour,
                      int columns) {
    int R = v->lens_rows;
    if (!tty) {
        fprintf(f, "# logit lens: position<TAB>token<TAB>layer (emb: the embedding)<TAB>top id<TAB>top token<TAB>probability\n");
        for (int i = 0; i < n; i++)
            for (int r = 0; r < R; r++) {
                char *label = lens_label(v, seq, i, r, 0);
                fprintf(f, "%d\t%s\t", i, labels[i]);
                if (r == 0) fputs("emb", f);
                else fprintf(f, "%d", r - 1);
                fprintf(f, "\t%d\t%s\t%.6f\n", v->lens_top[(size_t)i * R + r], label, v->lens_p[(size_t)i * R + r]);
                free(label);
            }
        return;
    }
    static const int RAMP[] = {231, 224, 217, 210, 203, 196, 160, 124, 88};
    enum { PREFIX = 20 };
    int cell = (columns - PREFIX) / R;
    cell = cell < LENS_CELL_MIN ? LENS_CELL_MIN : cell > LENS_CELL_MAX ? LENS_CELL_MAX : cell;
    int fit = (columns - PREFIX) / cell > 1 ? (columns - PREFIX) / cell : 1;
    int first_r = R > fit ? R - fit : 0, first_row = n > MAP_ROWS ? n - MAP_ROWS : 0;
    fprintf(f, "\nlogit lens: after each layer, the most likely\n"
               "next token and its probability in %%, reading\n"
               "the residual stream through the final norm\n"
               "and the unembedding; the last layer's column\n"
               "is the model's own prediction\n");
    if (first_row) fprintf(f, "only the last %d positions are shown\n", n - first_row);
    if (first_r) fprintf(f, "%d columns: the first %d columns are cut\n", columns, first_r);
    fprintf(f, "\n%*s", PREFIX, "");
    for (int r = first_r; r < R; r++) {
        char head[32];
        if (r == 0) snprintf(head, sizeof head, " embedding");
        else snprintf(head, sizeof head, " layer %d", r - 1);
        put_label(f, head, cell);
    }
    fputc('\n', f);
    for (int i = first_row; i < n; i++) {
        fprintf(f, "%4d%c ", i, i >= n_prompt ? '*' : ' ');
        put_label(f, labels[i], 12);
        fputs("  ", f);
        for (int r = first_r; r < R; r++) {
            float p = v->lens_p[(size_t)i * R + r];
            char *label = lens_label(v, seq, i, r, 0);
            int k = (int)lroundf(p * 8.0f);
            if (colour) fprintf(f, "\033[48;5;%dm\033[38;5;%dm", RAMP[k < 0 ? 0 : k > 8 ? 8 : k], k > 4 ? 231 : 16);
            fputc(' ', f);
            put_label(f, label, cell - 5);
            fprintf(f, "%3d", (int)lroundf(p * 100.0f));
            if (colour) fputs("\033[0m", f);
            fputc(' ', f);
            free(label);
        }
        fputc('\n', f);
    }
}

// The views of a generation of up to max_new tokens into a cache of seq_len
// positions; the model keeps its attention weights while they live.
static Views *views_new(const ViewOptions *o, Model *m, const Sampler *sp, int seq_len, int max_new) {
    Views *v = xcalloc(1, sizeof *v);
    v->opt = *o;
    v->m = m;
    v->sp = sp;
    if (views_keep_attention(o)) m->att_log = v->log = attention_log_new(&m->config, seq_len);
    if (o->html_path) v->steps = xcalloc((size_t)max_new + 1, sizeof(StepInfo));
    v->p = xcalloc(m->config.vocab_size, sizeof(float));
    v->order = xcalloc(m->config.vocab_size, sizeof(int));
    if (o->lens) {
        v->lens_rows = m->config.n_layer + 1;
        v->lens_top = xcalloc((size_t)seq_len * v->lens_rows, sizeof(int));
        v->lens_p = xcalloc((size_t)seq_len * v->lens_rows, sizeof(float));
    }
    if (o->lens || o->trace) {  // only then does the forward pass call out
        m->probe = views_probe;
        m->probe_ctx = v;
    }
    return v;
}

static void views_free(Views *v) {
    if (v->m->probe_ctx == v) { v->m->probe = NULL; v->m->probe_ctx = NULL; }
    free(v->lens_top);
    free(v->lens_p);
    trace_free(v->trace);
    free(v->roles);
    if (v->m->att_log == v->log) v->m->att_log = NULL;
    attention_log_free(v->log);
    free(v->steps);
    free(v->p);
    free(v->order);
    free(v);
}

// The n most likely tokens under the model (temperature 1), most likely
// first, into v->order[0..n); v->p (V) gets softmax(logits).
static int top_tokens(Views *v, const float *logits, int n) {
    int V = v->m->config.vocab_size;
    probabilities(v->p, logits, V, 1.0f);
    for (int i = 0; i < V; i++) v->order[i] = i;
    return keep_most_likely(v->order, V, n < V ? n : V, v->p);
}

// --explain N: why this token. The N most likely next tokens under the model
// (temperature 1), their probability after temperature and the top-k/top-p
// cut, and which one was picked.
static void explain_step(FILE *f, Views *v, const float *logits, int picked, int pos) {
    const Sampler *sp = v->sp;
    Tokenizer *tok = v->m->tokenizer;
    int V = v->m->config.vocab_size;
    int n = top_tokens(v, logits, v->opt.explain);
    const float *p = v->p;
    const int *order = v->order;
    int kept = 1;
    float kept_total = 1.0f;
    if (sp->temperature == 0.0f) {
        fprintf(f, "[explain] position %d: greedy (temperature 0) takes the most likely token\n", pos);
    } else {
        // the candidates of the draw that just happened are still in the sampler
        kept = sp->n_kept;
        kept_total = 0.0f;
        for (int i = 0; i < kept; i++) kept_total += sp->probs[sp->order[i]];
        fprintf(f, "[explain] position %d: temperature %g", pos, sp->temperature);
        if (sp->top_k > 0) fprintf(f, ", top-k %d", sp->top_k);
        if (sp->top_p < 1.0f) fprintf(f, ", top-p %g", sp->top_p);
        if (sp->set.min_p > 0.0f) fprintf(f, ", min-p %g", sp->set.min_p);
        fprintf(f, ": drawn from %d of %d tokens\n", kept, V);
    }
    if (sampler_penalizes(sp)) {  // the picks were made from the penalised logits
        fprintf(f, "  penalties on the logits:");
        if (sp->set.repeat_penalty != 1.0f)
            fprintf(f, " repeat %g over the last %d tokens", sp->set.repeat_penalty, sp->n_recent);
        if (sp->set.presence_penalty != 0.0f) fprintf(f, "%s presence %g", sp->set.repeat_penalty != 1.0f ? "," : "", sp->set.presence_penalty);
        if (sp->set.frequency_penalty != 0.0f) fprintf(f, "%s frequency %g", sp->set.repeat_penalty != 1.0f || sp->set.presence_penalty != 0.0f ? "," : "", sp->set.frequency_penalty);
        fputc('\n', f);
    }
    fprintf(f, "  rank  model p  sampled p  token\n");
    int shown_picked = 0;
    const int *ctx = v->seq;  // the tokens before this one: a character they began is finished here
    for (int r = 0; r < n; r++) {
        int id = order[r];
        float q;
        if (sp->temperature == 0.0f) q = id == picked ? 1.0f : 0.0f;
        else {
            int in = kept == V;
            for (int i = 0; i < kept && !in; i++) in = sp->order[i] == id;
            q = in ? sp->probs[id] / kept_total : 0.0f;
        }
        char *label = label_after(tok, ctx, pos, id, 1);
        fprintf(f, "  %4d  %7.4f  %9.4f  \"%s\"%s\n", r + 1, p[id], q, label, id == picked ? "   <- picked" : "");
        free(label);
        shown_picked |= id == picked;
    }
    if (!shown_picked) {
        char *label = label_after(tok, ctx, pos, picked, 1);
        fprintf(f, "     .  %7.4f             \"%s\"   <- picked (outside the top %d)\n", p[picked], label, n);
        free(label);
    }
}

static void record_step(Views *v, StepInfo *st, const float *logits, int picked) {
    int n = top_tokens(v, logits, 5);
    st->picked = picked;
    for (int r = 0; r < 5; r++) {
        st->top_ids[r] = v->order[r < n ? r : n - 1];
        st->top_p[r] = v->p[st->top_ids[r]];
    }
}

// The generation loop's PickHook: explain the pick, keep it for the page.
static void views_on_pick(void *ctx, const float *logits, int picked, int pos) {
    Views *v = ctx;
    if (v->opt.explain) {
        if (v->sink) sink_note(v->sink);
        explain_step(stderr, v, logits, picked, pos);
    }
    if (v->steps) record_step(v, &v->steps[v->n_steps++], logits, picked);
}

// --attention-html FILE: one self-contained page (no network, no external
// scripts or fonts) with the tokens, a layer and head selector, the matrix as
// a heatmap with the weights on hover, and the generation step by step.
// The weights travel as base64 of 16-bit fractions, row after row.

static const char *HTML_HEAD =
"<!DOCTYPE html>\n"
"<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<title>attention</title>\n"
"<style>\n"
"body { font: 14px/1.4 system-ui, sans-serif; margin: 20px; color: #222; background: #fafafa; }\n"
"h1 { font-size: 18px; margin: 0 0 4px; }\n"
"h2 { font-size: 16px; margin: 24px 0 4px; }\n"
".sub { color: #666; margin-bottom: 12px; max-width: 1100px; }\n"
"#controls { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-bottom: 10px; }\n"
"#tokens { margin: 10px 0; line-height: 2; max-width: 1100px; }\n"
".tok { font-family: ui-monospace, monospace; white-space: pre; padding: 2px 1px; margin: 1px; border: 1px solid #ddd; border-radius: 3px; cursor: pointer; }\n"
".gen { border-color: #c77; }\n"
".cur { outline: 2px solid #c00; }\n"
".future { opacity: .3; }\n"
"#wrap { display: flex; gap: 24px; align-items: flex-start; }\n"
"canvas { background: #fff; border: 1px solid #ccc; }\n"
"#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 4px 8px; border-radius: 4px; font-size: 12px; display: none; white-space: pre; }\n"
"#steps { font-family: ui-monospace, monospace; font-size: 12px; max-height: 560px; overflow: auto; min-width: 280px; }\n"
".step { padding: 3px 6px; border-bottom: 1px solid #eee; cursor: pointer; white-space: pre; }\n"
".step.sel { background: #fee; }\n"
"#grid { display: grid; gap: 6px; align-items: start; }\n"
".cell { font-size: 11px; color: #555; text-align: center; cursor: pointer; }\n"
".cell canvas { display: block; border: 3px solid #ddd; }\n"
".cell.sel canvas { outline: 2px solid #06c; }\n"
".role-induction canvas { border-color: #8e44ad; }\n"
".role-previous canvas { border-color: #27ae60; }\n"
".role-sink canvas { border-color: #999; }\n"
".legend span { display: inline-block; padding: 0 8px; margin-right: 8px; border-left: 12px solid; }\n"
"#headsel label { margin-right: 10px; white-space: nowrap; }\n"
"#lens { border-collapse: collapse; font-family: ui-monospace, monospace; font-size: 12px; }\n"
"#lens td, #lens th { border: 1px solid #eee; padding: 1px 6px; white-space: pre; text-align: left; }\n"
"</style></head><body>\n"
"<h1>Attention</h1>\n"
"<div class=\"sub\" id=\"sub\"></div>\n"
"<div id=\"controls\">\n"
"<label>layer <select id=\"layer\"></select></label>\n"
"<label>head <select id=\"head\"></select></label>\n"
"<label>step <input type=\"range\" id=\"step\" min=\"0\" value=\"0\"> <span id=\"steplabel\"></span></label>\n"
"</div>\n"
"<div id=\"tokens\"></div>\n"
"<div id=\"wrap\"><canvas id=\"map\" width=\"600\" height=\"600\"></canvas><div id=\"steps\"></div></div>\n"
"<h2>Every layer and head</h2>\n"
"<div class=\"sub\">Each map is one head over the same tokens (queries down, keys across). Click one to open it above. <span class=\"legend\" id=\"legend\"></span></div>\n"
"<div id=\"grid\"></div>\n"
"<h2>Head view</h2>\n"
"<div class=\"sub\">The heads of the chosen layer: a line from each query (left) to each key it reads (right), as strong as its weight. Hover a token on the left to see only its lines; tick heads on and off.</div>\n"
"<div id=\"headsel\"></div>\n"
"<canvas id=\"lines\" width=\"560\" height=\"200\"></canvas>\n"
"<div id=\"lenspanel\"></div>\n"
"<div id=\"tip\"></div>\n"
"<script>\n";

static const char *HTML_SCRIPT =
"window.onerror = function (message) {\n"
"  document.title = 'error: ' + message;\n"
"  document.body.setAttribute('data-error', String(message));\n"
"};\n"
"(function () {\n"
"  const D = DATA, N = D.n, P = D.n_prompt, L = D.layers, H = D.heads, tri = N * (N + 1) / 2;\n"
"  // the weights: one byte each, q = round(255 sqrt(w)), row after row\n"
"  const raw = atob(D.att);\n"
"  const u8 = new Uint8Array(raw.length);\n"
"  for (let i = 0; i < u8.length; i++) {\n"
"    u8[i] = raw.charCodeAt(i);\n"
"  }\n"
"  function w(l, h, i, j) {\n"
"    const q = u8[(l * H + h) * tri + i * (i + 1) / 2 + j] / 255;\n"
"    return q * q;\n"
"  }\n"
"  const $ = id => document.getElementById(id);\n"
"  const quote = t => '\\u201c' + t + '\\u201d';\n"
"  const ROLE = ['induction', 'previous', 'sink'];\n"
"  const ROLE_NAME = {induction: 'induction', previous: 'previous token', sink: 'sink (first token)'};\n"
"  function role(l, h) {\n"
"    const r = D.roles[l * H + h];\n"
"    if (r[1] >= D.thresholds[1]) {\n"
"      return 'induction';\n"
"    }\n"
"    if (r[0] >= D.thresholds[0]) {\n"
"      return 'previous';\n"
"    }\n"
"    if (r[2] >= D.thresholds[2]) {\n"
"      return 'sink';\n"
"    }\n"
"    return '';\n"
"  }\n"
"  $('sub').textContent = D.model + ': ' + L + ' layers x ' + H + ' heads; ' + P + ' prompt tokens, ' +\n"
"    (N - P) + ' generated (red border). ' + (D.value_weighted ? 'Value-weighted: each weight times the norm of the value it reads, rows renormalised. ' : '') +\n"
"    'Hover a cell for its weight; click a token to see where it looks.';\n"
"  ROLE.forEach(r => {\n"
"    const s = document.createElement('span');\n"
"    s.className = 'role-' + r;\n"
"    s.style.borderColor = r === 'induction' ? '#8e44ad' : r === 'previous' ? '#27ae60' : '#999';\n"
"    s.textContent = ROLE_NAME[r];\n"
"    $('legend').appendChild(s);\n"
"  });\n"
"  for (let l = 0; l < L; l++) {\n"
"    $('layer').add(new Option('layer ' + l, l));\n"
"  }\n"
"  for (let h = 0; h < H; h++) {\n"
"    $('head').add(new Option('head ' + h, h));\n"
"  }\n"
"  const step = $('step');\n"
"  step.max = N - P;\n"
"  step.value = N - P;\n"
"  let query = N - 1;\n"
"  // the tokens, each a button that makes it the query\n"
"  const toks = D.tokens.map((t, i) => {\n"
"    const s = document.createElement('span');\n"
"    s.className = 'tok' + (i >= P ? ' gen' : '');\n"
"    s.textContent = t;\n"
"    s.title = 'position ' + i;\n"
"    s.onclick = () => { query = i; draw(); };\n"
"    $('tokens').appendChild(s);\n"
"    return s;\n"
"  });\n"
"  // the generation, step by step, with the five most likely tokens of each\n"
"  D.steps.forEach((s, k) => {\n"
"    const d = document.createElement('div');\n"
"    d.className = 'step';\n"
"    const top = s.top.map(t => quote(t[0]) + ' ' + t[1].toFixed(3));\n"
"    d.textContent = 'step ' + (k + 1) + ': ' + quote(D.tokens[P + k] || '') + '\\n  ' + top.join('\\n  ');\n"
"    d.onclick = () => { step.value = k + 1; query = P + k; draw(); };\n"
"    $('steps').appendChild(d);\n"
"  });\n"
"  const cv = $('map');\n"
"  const cx = cv.getContext('2d');\n"
"  function shown() {\n"
"    return Math.max(1, Math.min(P + Number(step.value), N));\n"
"  }\n"
"  function shade(v) {\n"
"    const c = Math.round(255 * (1 - v));\n"
"    return 'rgb(255,' + c + ',' + c + ')';\n"
"  }\n"
"  // the matrix of one head, its rows and columns labelled with their tokens\n"
"  let geo = {cell: 1, n: 1, left: 0, top: 0};\n"
"  function drawMatrix(l, h, n) {\n"
"    const cell = Math.max(1, Math.floor(600 / n));\n"
"    const every = Math.max(1, Math.ceil(11 / cell));\n"
"    const font = Math.min(12, Math.max(9, cell));\n"
"    cx.font = font + 'px ui-monospace, monospace';\n"
"    let label = 0;\n"
"    for (let i = 0; i < n; i += every) {\n"
"      label = Math.max(label, cx.measureText(D.tokens[i]).width);\n"
"    }\n"
"    const left = Math.ceil(Math.min(label, 120)) + 40, top = Math.ceil(Math.min(label, 120) * 0.75) + 24;\n"
"    cv.width = left + cell * n + top;\n"
"    cv.height = top + cell * n + 2;\n"
"    cx.fillStyle = '#fff';\n"
"    cx.fillRect(0, 0, cv.width, cv.height);\n"
"    cx.font = font + 'px ui-monospace, monospace';\n"
"    cx.fillStyle = '#333';\n"
"    cx.textBaseline = 'middle';\n"
"    for (let i = 0; i < n; i += every) {\n"
"      cx.textAlign = 'right';\n"
"      cx.fillText(i + ' ' + D.tokens[i].slice(0, 16), left - 4, top + i * cell + cell / 2);\n"
"      cx.save();\n"
"      cx.translate(left + i * cell + cell / 2, top - 4);\n"
"      cx.rotate(-Math.PI / 4);\n"
"      cx.textAlign = 'left';\n"
"      cx.fillText(D.tokens[i].slice(0, 16), 0, 0);\n"
"      cx.restore();\n"
"    }\n"
"    let cells = 0;\n"
"    for (let i = 0; i < n; i++) {\n"
"      for (let j = 0; j <= i; j++) {\n"
"        cx.fillStyle = shade(w(l, h, i, j));\n"
"        cx.fillRect(left + j * cell, top + i * cell, cell, cell);\n"
"        cells++;\n"
"      }\n"
"    }\n"
"    cx.strokeStyle = '#06c';\n"
"    cx.lineWidth = Math.max(1, cell / 8);\n"
"    cx.strokeRect(left, top + query * cell, n * cell, cell);\n"
"    geo = {cell: cell, n: n, left: left, top: top};\n"
"    return cells;\n"
"  }\n"
"  // every layer and head, each a small map of the same tokens\n"
"  const G = Math.max(48, Math.min(120, Math.floor(1100 / H) - 12));\n"
"  $('grid').style.gridTemplateColumns = 'repeat(' + H + ', ' + (G + 6) + 'px)';\n"
"  const grid = [];\n"
"  for (let l = 0; l < L; l++) {\n"
"    for (let h = 0; h < H; h++) {\n"
"      const d = document.createElement('div');\n"
"      const r = role(l, h);\n"
"      d.className = 'cell' + (r ? ' role-' + r : '');\n"
"      const c = document.createElement('canvas');\n"
"      c.width = c.height = G;\n"
"      const t = document.createElement('div');\n"
"      const s = D.roles[l * H + h];\n"
"      t.textContent = 'L' + l + ' H' + h + (r ? ' ' + r : '');\n"
"      d.title = 'layer ' + l + ', head ' + h + ': previous ' + s[0].toFixed(2) + ', induction ' + s[1].toFixed(2) + ', sink ' + s[2].toFixed(2);\n"
"      d.appendChild(c);\n"
"      d.appendChild(t);\n"
"      d.onclick = () => {\n"
"        $('layer').value = l;\n"
"        $('head').value = h;\n"
"        draw();\n"
"        cv.scrollIntoView();\n"
"      };\n"
"      $('grid').appendChild(d);\n"
"      grid.push({l: l, h: h, canvas: c, div: d});\n"
"    }\n"
"  }\n"
"  function drawGrid(n) {\n"
"    let done = 0;\n"
"    grid.forEach(g => {\n"
"      const c = g.canvas.getContext('2d');\n"
"      const img = c.createImageData(G, G);\n"
"      for (let y = 0; y < G; y++) {\n"
"        const i = Math.floor(y * n / G);\n"
"        for (let x = 0; x < G; x++) {\n"
"          const j = Math.floor(x * n / G);\n"
"          const v = j <= i ? w(g.l, g.h, i, j) : 0;\n"
"          const k = 4 * (y * G + x);\n"
"          img.data[k] = 255;\n"
"          img.data[k + 1] = img.data[k + 2] = Math.round(255 * (1 - v));\n"
"          img.data[k + 3] = 255;\n"
"        }\n"
"      }\n"
"      c.putImageData(img, 0, 0);\n"
"      g.div.classList.toggle('sel', g.l === Number($('layer').value) && g.h === Number($('head').value));\n"
"      done++;\n"
"    });\n"
"    return done;\n"
"  }\n"
"  // the head view: queries on the left, keys on the right, a line per weight\n"
"  const on = [];\n"
"  for (let h = 0; h < H; h++) {\n"
"    on.push(true);\n"
"    const lab = document.createElement('label');\n"
"    const box = document.createElement('input');\n"
"    box.type = 'checkbox';\n"
"    box.checked = true;\n"
"    box.onchange = () => { on[h] = box.checked; drawLines(); };\n"
"    lab.appendChild(box);\n"
"    lab.appendChild(document.createTextNode(' head ' + h));\n"
"    lab.style.color = colour(h, 1);\n"
"    $('headsel').appendChild(lab);\n"
"  }\n"
"  function colour(h, a) {\n"
"    return 'hsla(' + Math.round(360 * h / H) + ',75%,42%,' + a + ')';\n"
"  }\n"
"  const lc = $('lines');\n"
"  const lx = lc.getContext('2d');\n"
"  let focus = -1;\n"
"  function drawLines() {\n"
"    const n = shown(), l = Number($('layer').value);\n"
"    const row = Math.max(8, Math.min(18, Math.floor(900 / n)));\n"
"    lc.height = row * n + 10;\n"
"    lx.clearRect(0, 0, lc.width, lc.height);\n"
"    lx.font = Math.min(12, row - 2) + 'px ui-monospace, monospace';\n"
"    lx.textBaseline = 'middle';\n"
"    for (let i = 0; i < n; i++) {\n"
"      lx.fillStyle = i === focus ? '#c00' : '#333';\n"
"      lx.textAlign = 'right';\n"
"      lx.fillText(D.tokens[i].slice(0, 18), 170, 5 + i * row + row / 2);\n"
"      lx.textAlign = 'left';\n"
"      lx.fillText(D.tokens[i].slice(0, 18), 390, 5 + i * row + row / 2);\n"
"    }\n"
"    let lines = 0;\n"
"    lx.lineWidth = 2;\n"
"    for (let h = 0; h < H; h++) {\n"
"      if (!on[h]) {\n"
"        continue;\n"
"      }\n"
"      for (let i = 0; i < n; i++) {\n"
"        if (focus >= 0 && i !== focus) {\n"
"          continue;\n"
"        }\n"
"        for (let j = 0; j <= i; j++) {\n"
"          const v = w(l, h, i, j);\n"
"          if (v < 0.02) {\n"
"            continue;\n"
"          }\n"
"          lx.strokeStyle = colour(h, Math.min(1, v));\n"
"          lx.beginPath();\n"
"          lx.moveTo(176, 5 + i * row + row / 2);\n"
"          lx.lineTo(384, 5 + j * row + row / 2);\n"
"          lx.stroke();\n"
"          lines++;\n"
"        }\n"
"      }\n"
"    }\n"
"    lc.dataset.lines = lines;\n"
"    lc.dataset.row = row;\n"
"  }\n"
"  lc.onmousemove = e => {\n"
"    const r = lc.getBoundingClientRect();\n"
"    const i = Math.floor((e.clientY - r.top - 5) / Number(lc.dataset.row));\n"
"    const f = e.clientX - r.left < 200 && i >= 0 && i < shown() ? i : -1;\n"
"    if (f !== focus) {\n"
"      focus = f;\n"
"      drawLines();\n"
"    }\n"
"  };\n"
"  lc.onmouseleave = () => { focus = -1; drawLines(); };\n"
"  // the logit lens: what the model would predict after each layer\n"
"  if (D.lens) {\n"
"    const h2 = document.createElement('h2');\n"
"    h2.textContent = 'Logit lens';\n"
"    $('lenspanel').appendChild(h2);\n"
"    const sub = document.createElement('div');\n"
"    sub.className = 'sub';\n"
"    sub.textContent = 'For each position, the most likely next token and its probability if the model stopped after each layer (the residual stream through the final norm and the unembedding). The last column is the model\\'s own prediction.';\n"
"    $('lenspanel').appendChild(sub);\n"
"    const table = document.createElement('table');\n"
"    table.id = 'lens';\n"
"    const head = table.insertRow();\n"
"    ['position', 'token', 'embedding'].concat(Array.from({length: L}, (_, l) => 'layer ' + l)).forEach(t => {\n"
"      const th = document.createElement('th');\n"
"      th.textContent = t;\n"
"      head.appendChild(th);\n"
"    });\n"
"    for (let i = 0; i < N; i++) {\n"
"      const tr = table.insertRow();\n"
"      tr.insertCell().textContent = i;\n"
"      tr.insertCell().textContent = D.tokens[i];\n"
"      D.lens[i].forEach(c => {\n"
"        const td = tr.insertCell();\n"
"        td.textContent = c[0] + ' ' + (100 * c[1]).toFixed(0) + '%';\n"
"        td.style.background = 'rgba(0,110,220,' + (0.6 * c[1]).toFixed(3) + ')';\n"
"        td.title = quote(c[0]) + ' p = ' + c[1].toFixed(4);\n"
"      });\n"
"    }\n"
"    $('lenspanel').appendChild(table);\n"
"  }\n"
"  function draw() {\n"
"    const l = Number($('layer').value), h = Number($('head').value);\n"
"    const n = shown();\n"
"    if (query >= n) {\n"
"      query = n - 1;\n"
"    }\n"
"    const cells = drawMatrix(l, h, n);\n"
"    toks.forEach((s, i) => {\n"
"      s.classList.toggle('future', i >= n);\n"
"      s.classList.toggle('cur', i === query);\n"
"      s.style.background = i <= query && i < n ? 'rgba(220,0,0,' + w(l, h, query, i).toFixed(3) + ')' : '';\n"
"    });\n"
"    $('steplabel').textContent = (n - P) + ' of ' + (N - P) + ' generated';\n"
"    document.querySelectorAll('.step').forEach((d, k) => d.classList.toggle('sel', P + k === query));\n"
"    const heads = drawGrid(n);\n"
"    drawLines();\n"
"    document.body.setAttribute('data-rendered', String(cells));\n"
"    document.body.setAttribute('data-grid', String(heads));\n"
"    document.body.setAttribute('data-lines', lc.dataset.lines);\n"
"  }\n"
"  cv.onmousemove = e => {\n"
"    const r = cv.getBoundingClientRect();\n"
"    const j = Math.floor((e.clientX - r.left - geo.left) / geo.cell), i = Math.floor((e.clientY - r.top - geo.top) / geo.cell);\n"
"    const tip = $('tip');\n"
"    if (i < 0 || j < 0 || i >= geo.n || j > i) {\n"
"      tip.style.display = 'none';\n"
"      return;\n"
"    }\n"
"    const weight = w(Number($('layer').value), Number($('head').value), i, j);\n"
"    tip.textContent = 'query ' + i + ' ' + quote(D.tokens[i]) + '\\nkey ' + j + ' ' + quote(D.tokens[j]) + '\\nweight ' + weight.toFixed(4);\n"
"    tip.style.display = 'block';\n"
"    tip.style.left = (e.clientX + 14) + 'px';\n"
"    tip.style.top = (e.clientY + 14) + 'px';\n"
"  };\n"
"  cv.onmouseleave = () => { $('tip').style.display = 'none'; };\n"
"  cv.onclick = e => {\n"
"    const r = cv.getBoundingClientRect();\n"
"    const i = Math.floor((e.clientY - r.top - geo.top) / geo.cell);\n"
"    if (i >= 0 && i < geo.n) {\n"
"      query = i;\n"
"      draw();\n"
"    }\n"
"  };\n"
"  $('layer').onchange = draw;\n"
"  $('head').onchange = draw;\n"
"  step.oninput = () => { query = shown() - 1; draw(); };\n"
"  draw();\n"
"})();\n"
"</script></body></html>\n";

// Write s as a JSON string literal.
static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else if (c == '<') fputs("\\u003c", f);  // never "</script>" inside the page
        else fputc(c, f);
    }
    fputc('"', f);
}

static void base64_put(FILE *f, const unsigned char *b, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        fputc(A[v >> 18], f);
        fputc(A[(v >> 12) & 63], f);
        fputc(i + 1 < n ? A[(v >> 6) & 63] : '=', f);
        fputc(i + 2 < n ? A[v & 63] : '=', f);
    }
}

static void write_attention_html(const char *path, const char *model_path, const Views *v, const int *ids, int n,
                                 int n_prompt) {
    const AttentionLog *g = v->log;
    Tokenizer *tok = v->m->tokenizer;
    // write beside the target, then rename: a failure never leaves half a page
    size_t plen = strlen(path) + 32;
    char *tmp = xmalloc(plen);
    snprintf(tmp, plen, "%s.tmp-%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) die(EXIT_RUNTIME, "cannot create --attention-html file '%s': %s", path, strerror(errno));
    fputs(HTML_HEAD, f);
    fputs("const DATA={\"model\":", f);
    json_string(f, model_path);
    fprintf(f, ",\"layers\":%d,\"heads\":%d,\"n\":%d,\"n_prompt\":%d,\"value_weighted\":%d,\"tokens\":[", g->n_layer,
            g->n_head, n, n_prompt, v->opt.value_weighted);
    char **labels = labels_new(tok, ids, n, 0);
    for (int i = 0; i < n; i++) {
        if (i) fputc(',', f);
        json_string(f, labels[i]);
    }
    labels_free(labels, n);
    fputs("],\"steps\":[", f);
    for (int k = 0; k < n - n_prompt && v->steps; k++) {
        const StepInfo *st = &v->steps[k];
        fprintf(f, "%s{\"picked\":%d,\"top\":[", k ? "," : "", st->picked);
        for (int r = 0; r < 5; r++) {
            fprintf(f, "%s[", r ? "," : "");
            char *label = label_after(tok, ids, n_prompt + k, st->top_ids[r], 0);  // read on from the step's tokens
            json_string(f, label);
            free(label);
            fprintf(f, ",%.4f]", st->top_p[r]);
        }
        fputs("]}", f);
    }
    // each head's role scores: --find-heads's means, else measured on this page's tokens
    fprintf(f, "],\"thresholds\":[%g,%g,%g],\"roles\":[", ROLE_PREVIOUS, ROLE_INDUCTION, ROLE_SINK);
    for (int l = 0; l < g->n_layer; l++)
        for (int h = 0; h < g->n_head; h++) {
            HeadRoles r = v->roles ? v->roles[l * g->n_head + h] : head_roles(g, l, h, ids, n);
            fprintf(f, "%s[%.4f,%.4f,%.4f]", l || h ? "," : "", r.prev, r.induction, r.sink);
        }
    fputc(']', f);
    if (v->lens_top) {  // the logit lens: [label, p] per position and row
        fputs(",\"lens\":[", f);
        for (int i = 0; i < n; i++) {
            fputs(i ? ",[" : "[", f);
            for (int r = 0; r < v->lens_rows; r++) {
                char *label = lens_label(v, ids, i, r, 0);
                fputs(r ? ",[" : "[", f);
                json_string(f, label);
                fprintf(f, ",%.4f]", v->lens_p[(size_t)i * v->lens_rows + r]);
                free(label);
            }
            fputc(']', f);
        }
        fputc(']', f);
    }
    // the weights, one byte each: round(255 sqrt(w)), fine where weights are small
    fputs(",\"att\":\"", f);
    size_t tri = (size_t)n * (n + 1) / 2, count = (size_t)g->n_layer * g->n_head * tri;
    unsigned char *packed = xmalloc(count ? count : 1);
    size_t k = 0;
    for (int l = 0; l < g->n_layer; l++)
        for (int h = 0; h < g->n_head; h++)
            for (int i = 0; i < n; i++) {
                const float *row = attention_row(g, l, h, i);
                for (int j = 0; j <= i; j++) {
                    float w = row[j] < 0 ? 0 : row[j] > 1 ? 1 : row[j];
                    packed[k++] = (unsigned char)lroundf(sqrtf(w) * 255.0f);
                }
            }
    base64_put(f, packed, k);
    free(packed);
    fputs("\"};\n", f);
    fputs(HTML_SCRIPT, f);
    if (ferror(f) | (fclose(f) != 0)) {
        remove(tmp);
        die(EXIT_RUNTIME, "cannot write --attention-html file '%s'", path);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        die(EXIT_RUNTIME, "cannot create --attention-html file '%s': %s", path, strerror(errno));
    }
    free(tmp);
}

// ----------------------------------------------------------------------------
// --trace: one token (the last of the prompt) followed through the forward
// pass, step by step as README's walk through forward() tells it, with each
// tensor's shape and its first TRACE_SHOW numbers. It runs on the plain
// kernels, so the numbers are those of Part I's loops. Attention is shown
// for head 0; the others do the same with their own columns.

#define TRACE_SHOW 6

typedef struct Trace {
    int pos;   // the position followed
    Str text;  // the lines so far
} Trace;

static void trace_line(Trace *tr, const char *name, const char *shape, const float *x, int n) {
    char buf[96];
    str_put(&tr->text, buf, (size_t)snprintf(buf, sizeof buf, "  %-13s %-13s", name, shape));
    for (int i = 0; i < n && i < TRACE_SHOW; i++) str_put(&tr->text, buf, (size_t)snprintf(buf, sizeof buf, " %.6g", x[i]));
    str_put(&tr->text, n > TRACE_SHOW ? " ...\n" : "\n", n > TRACE_SHOW ? 5 : 1);
}

static void trace_step(Trace *tr, Model *m, int step, int layer, const float *x, int T, int pos0) {
    if (tr->pos < pos0 || tr->pos >= pos0 + T) return;
    const Config *c = &m->config;
    RunState *s = &m->state;
    int t = tr->pos - pos0, C = c->n_embd, F = c->n_inner, hd = C / c->n_head, V = c->vocab_size;
    int KVd = hd * c->n_kv_head, pos = tr->pos;
    const float *row = x + (size_t)t * C;
    char shape[32], head[64];
    snprintf(shape, sizeof shape, "(%d)", C);
    switch (step) {
    case PROBE_EMBEDDING:
        trace_line(tr, c->block & BLOCK_ROTARY ? "x = wte[id]" : "x = wte+wpe", shape, row, C);
        break;
    case PROBE_ATTN_IN: {
        char name[32];
        snprintf(name, sizeof name, "layer %d", layer);
        str_put(&tr->text, name, strlen(name));
        str_put(&tr->text, "\n", 1);
        trace_line(tr, c->block & BLOCK_POST_LN ? "x" : "ln_1(x)", shape, row, C);
        break;
    }
    case PROBE_ATTN_OUT: {
        // q, k, v of head 0 (q and k turned by the position where the model does so)
        const float *qkv = s->qkv + (size_t)t * (C + 2 * KVd);
        snprintf(head, sizeof head, "(%d) head 0", hd);
        trace_line(tr, "q", head, qkv, hd);
        trace_line(tr, "k", head, qkv + C, hd);
        trace_line(tr, "v", head, qkv + C + KVd, hd);
        // scores over the keys this query sees, as attention computed them
        float scale = (c->flags & FLAG_SCALE_ATTN) ? 1.0f / sqrtf((float)hd) : 1.0f;
        if (c->flags & FLAG_SCALE_BY_LAYER) scale /= (float)(layer + 1);
        int window = layer_window(c, layer), first = window && pos >= window ? pos - window + 1 : 0, n = pos + 1 - first;
        const float *K = s->k_cache + (size_t)layer * s->seq_len * KVd;
        float *scores = xmalloc(sizeof(float) * n);
        for (int j = 0; j < n; j++) scores[j] = dot_plain(qkv, K + (size_t)(first + j) * hd, hd) * scale;
        snprintf(head, sizeof head, "(%d) head 0", n);
        trace_line(tr, "scores", head, scores, n);
        free(scores);
        if (m->att_log) trace_line(tr, "softmax", head, attention_row(m->att_log, layer, 0, pos) + first, n);
        snprintf(head, sizeof head, "(%d) head 0", hd);
        trace_line(tr, "weighted sum", head, s->att_out + (size_t)t * C, hd);
        trace_line(tr, "projection", shape, row, C);
        break;
    }
    case PROBE_MLP_IN:
        if (!(c->block & (BLOCK_PARALLEL | BLOCK_POST_LN))) trace_line(tr, "x + attention", shape, s->x + (size_t)t * C, C);
        trace_line(tr, "ln_2(x)", shape, row, C);
        break;
    case PROBE_MLP_OUT: {
        char fshape[32];
        snprintf(fshape, sizeof fshape, "(%d)", F);
        trace_line(tr, c->block & BLOCK_GATED_MLP ? "act(gate)*up" : "act(fc)", fshape, s->hidden + (size_t)t * F, F);
        trace_line(tr, "mlp", shape, row, C);
        break;
    }
    case PROBE_LAYER:
        trace_line(tr, "x", shape, row, C);
        if (layer == c->n_layer - 1) {  // the final norm and the logits, as forward() ends
            unembed(m, s->logits, row, 1);
            str_put(&tr->text, "output\n", 7);
            if (m->weights.lnf_w) trace_line(tr, "ln_f(x)", shape, s->xn, C);
            snprintf(shape, sizeof shape, "(%d)", V);
            trace_line(tr, "logits", shape, s->logits, V);
            int best = argmax(s->logits, V);
            char buf[64];
            str_put(&tr->text, buf, (size_t)snprintf(buf, sizeof buf, "  %-13s %-13s %d\n", "argmax", "", best));
        }
        break;
    }
}

static void trace_free(Trace *tr) {
    if (!tr) return;
    free(tr->text.s);
    free(tr);
}

// Follow position pos through the forward passes to come.
static void views_trace(Views *v, int pos) {
    v->trace = xcalloc(1, sizeof(Trace));
    v->trace->pos = pos;
}

static void show_trace(FILE *f, const Trace *tr, const Model *m, const int *seq, char **labels) {
    fprintf(f, "trace of position %d, token %d \"%s\", through the forward pass\n"
               "(each step's shape and first numbers; attention's for head 0 of %d)\n",
            tr->pos, seq[tr->pos], labels[tr->pos], m->config.n_head);
    if (tr->text.s) fputs(tr->text.s, f);
}

// After generation: the views of attention on stdout (the text has ended),
// and the page. seq holds the n tokens that went through the model.
static void views_finish(Views *v, const int *seq, int n, int n_prompt, const char *model_path, int line_open) {
    if (v->log && v->opt.value_weighted && !v->weighted) {
        weight_by_values(v->log, v->m, n);
        v->weighted = 1;
    }
    int tty = isatty(STDOUT_FILENO);
    int colour = colour_wanted(tty);
    int columns = tty ? terminal_columns(STDOUT_FILENO) : 0;
    Tokenizer *tok = v->m->tokenizer;
    if (line_open && (v->opt.attention || v->opt.overview || v->opt.lens || v->opt.trace))
        write_out("\n", 1);  // a view starts on its own line
    char **labels = labels_new(tok, seq, n, 0);
    if (v->trace) show_trace(stdout, v->trace, v->m, seq, labels);
    if (v->opt.attention)
        show_attention(stdout, v->log, labels, n, n_prompt, v->opt.layer, v->opt.head, tty, colour, columns);
    if (v->opt.overview) show_attention_overview(stdout, v->log, n, tty, columns);
    if (v->lens_top) show_lens(stdout, v, seq, labels, n, n_prompt, tty, colour, columns);
    labels_free(labels, n);
    flush_out();
    if (v->opt.html_path) write_attention_html(v->opt.html_path, model_path, v, seq, n, n_prompt);
}

// ============================================================================
// PART IV. THE COMMAND LINE
// ============================================================================

// ----------------------------------------------------------------------------
// IV.1 Options, input, and the modes: generate, tokenize, detokenize, score

typedef struct {
    const char *model_path;
    const char *prompt;       // -p
    const char *prompt_file;  // -f
    int steps;
    SamplerSettings sampling;
    uint64_t seed;
    int seed_given;
    int threads;
    char **stops;
    int n_stops;
    int echo, verbose, ids, special, plain_kernels;
    int keep_newline;   // --keep-newline: a prompt from a file or stdin keeps its final newline
    int interactive;    // -i
    int chat;           // --chat: --tokenize reads a conversation ("role: text" lines)
    int no_chat;        // --no-chat: -i continues text even with a chat model
    const char *system; // --system: the chat's system message
    int context_shift;  // --context-shift
    enum { MODE_GENERATE, MODE_TOKENIZE, MODE_DETOKENIZE, MODE_SCORE } mode;
    int pieces;         // --pieces: --tokenize prints each id with its text
    const char *dump_logits;
    ViewOptions view;
    int stdin_closed;  // standard input was closed when run started
} Options;

// Standard streams that were closed: stdin and stderr are pointed at
// /dev/null, so no file opened later takes their place; a closed stdout is
// an error, as there would be nowhere to put the output. Returns 1 when
// stdin was closed.
static int check_std_streams(void) {
    int stdin_closed = 0;
    if (fcntl(STDOUT_FILENO, F_GETFD) < 0) die(EXIT_RUNTIME, "standard output is closed");
    if (fcntl(STDIN_FILENO, F_GETFD) < 0) {
        stdin_closed = 1;
        if (open("/dev/null", O_RDONLY) != STDIN_FILENO) exit(EXIT_RUNTIME);
    }
    if (fcntl(STDERR_FILENO, F_GETFD) < 0 && open("/dev/null", O_WRONLY) != STDERR_FILENO) exit(EXIT_RUNTIME);
    return stdin_closed;
}

// Read all of a file, or of stdin for "-", into a NUL-terminated buffer.
static char *read_all(const char *path, int stdin_closed, size_t *len) {
    if (strcmp(path, "-") == 0 && stdin_closed) die(EXIT_INPUT, "cannot read the prompt: standard input is closed");
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) die(EXIT_INPUT, "cannot open prompt file '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char *p = realloc(buf, cap);
            if (!p) die(EXIT_RUNTIME, "out of memory reading '%s'", path);
            buf = p;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    if (ferror(f)) die(EXIT_INPUT, "cannot read '%s': %s", strcmp(path, "-") == 0 ? "standard input" : path, strerror(errno));
    if (f != stdin) fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

// The input text: -p, -f, or stdin when it is not a terminal.
static char *read_input(const Options *o, size_t *len) {
    if (o->prompt) {
        *len = strlen(o->prompt);
        char *s = xmalloc(*len + 1);
        memcpy(s, o->prompt, *len + 1);
        return s;
    }
    if (o->prompt_file) return read_all(o->prompt_file, o->stdin_closed, len);
    if (o->stdin_closed || !isatty(STDIN_FILENO)) return read_all("-", o->stdin_closed, len);
    *len = 0;
    char *s = xmalloc(1);
    s[0] = '\0';
    return s;
}

// Append one id to a list.
static void push_id(TokenList *l, int id) {
    if (l->len == l->cap) {
        l->cap = l->cap * 2 + 64;
        int *p = realloc(l->ids, l->cap * sizeof(int));
        if (!p) die(EXIT_RUNTIME, "out of memory");
        l->ids = p;
    }
    l->ids[l->len++] = id;
}

// Whitespace-separated decimal ids, each checked against the vocabulary.
static void parse_ids(const char *text, size_t len, int vocab_size, TokenList *out) {
    if (memchr(text, '\0', len)) die(EXIT_INPUT, "--ids: the input contains a NUL byte");
    size_t i = 0;
    while (i < len) {
        while (i < len && strchr(" \t\r\n\v\f", text[i])) i++;
        if (i >= len) break;
        size_t j = i;
        while (j < len && !strchr(" \t\r\n\v\f", text[j])) j++;
        char word[32];
        size_t wl = j - i;
        int ok = wl > 0 && wl < sizeof word;
        long v = -1;
        if (ok) {
            memcpy(word, text + i, wl);
            word[wl] = '\0';
            char *end;
            errno = 0;
            v = strtol(word, &end, 10);
            ok = *end == '\0' && errno == 0 && word[0] != '+' && word[0] != '-';
        }
        if (!ok) die(EXIT_INPUT, "--ids: '%.*s' is not a token id", (int)(wl > 40 ? 40 : wl), text + i);
        if (v >= vocab_size) die(EXIT_INPUT, "--ids: token id %ld is out of range (vocabulary has %d ids)", v, vocab_size);
        push_id(out, (int)v);
        i = j;
    }
}

// The prompt as token ids, from text or (--ids) from numbers. A prompt for
// generation read from a file or stdin loses one final newline (what `echo`
// and editors add), unless --keep-newline; other modes keep every byte.
static void input_tokens(const Options *o, Tokenizer *tok, int vocab_size, TokenList *out) {
    size_t len;
    char *text = read_input(o, &len);
    if (o->mode == MODE_GENERATE && !o->prompt && !o->ids && !o->keep_newline && len && text[len - 1] == '\n') {
        len--;
        if (len && text[len - 1] == '\r') len--;  // a Windows line ending
    }
    if (o->ids) parse_ids(text, len, vocab_size, out);
    else if (tokenizer_encode(tok, (const unsigned char *)text, len, o->special, out) != 0)
        die(EXIT_RUNTIME, "out of memory while tokenizing");
    free(text);
}

static void print_ids(const int *ids, size_t n) {
    for (size_t i = 0; i < n; i++) put_id(ids[i], i == 0);
    write_out("\n", 1);
    flush_out();
}

// --tokenize --pieces: each id and the text it carries, one per line, as
// the views label it ("id<TAB>piece").
static void print_pieces(Tokenizer *tok, const int *ids, size_t n) {
    char **labels = labels_new(tok, ids, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        char buf[32];
        write_out(buf, (size_t)snprintf(buf, sizeof buf, "%d\t", ids[i]));
        write_out(labels[i], strlen(labels[i]));
        write_out("\n", 1);
    }
    flush_out();
    labels_free(labels, (int)n);
}

static void chat_conversation(const Options *o, const Config *c, Tokenizer *tok, const char *text, size_t len,
                              TokenList *out);

static void run_tokenize(const Options *o, const Config *c, Tokenizer *tok) {
    TokenList ids = {0};
    size_t len;
    if (o->chat && c->chat == CHAT_NONE)
        die(EXIT_USAGE, "--chat: model '%s' has no chat template (export.py records ChatML, Zephyr and Llama 3)", o->model_path);
    char *text = read_input(o, &len);
    if (o->chat) chat_conversation(o, c, tok, text, len, &ids);
    else if (tokenizer_encode(tok, (const unsigned char *)text, len, o->special, &ids) != 0)
        die(EXIT_RUNTIME, "out of memory while tokenizing");
    free(text);
    if (o->pieces) print_pieces(tok, ids.ids, ids.len);
    else print_ids(ids.ids, ids.len);
    tokenlist_free(&ids);
}

static void run_detokenize(const Options *o, Tokenizer *tok) {
    TokenList ids = {0};
    size_t len;
    char *text = read_input(o, &len);
    parse_ids(text, len, tokenizer_n_tokens(tok), &ids);
    free(text);
    int strip = tokenizer_decode_strip(tok);  // HF's decode of a whole text (Llama: its first space)
    for (size_t i = 0; i < ids.len; i++) {
        size_t n;
        const unsigned char *b = tokenizer_decode_token(tok, ids.ids[i], &strip, &n);
        write_out(b, n);
    }
    flush_out();
    tokenlist_free(&ids);
}

// --score: the log-probability of each token given the ones before it.
typedef struct {
    const int *tokens;   // the whole input
    int chunk_start;     // index in tokens of the chunk's first token
    int chunk_len;
    int V;
    double nll;          // running sum of -logprob
    long count;
    FILE *dump;
} ScoreState;

// ln softmax(logits)[id], in double precision
static double log_prob(const float *logits, int V, int id) {
    float max = logits[0];
    for (int i = 1; i < V; i++) if (logits[i] > max) max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - max);
    return (double)logits[id] - max - log(sum);
}

static void score_tile(void *ctx, const float *logits, int pos0, int T) {
    ScoreState *sc = ctx;
    if (sc->dump && fwrite(logits, sizeof(float), (size_t)T * sc->V, sc->dump) != (size_t)T * sc->V)
        die(EXIT_RUNTIME, "cannot write --dump-logits file: %s", strerror(errno));
    for (int t = 0; t < T; t++) {
        int pos = pos0 + t;               // position within the chunk
        if (pos + 1 >= sc->chunk_len) break;
        int index = sc->chunk_start + pos + 1;  // the token being predicted
        int id = sc->tokens[index];
        double lp = log_prob(logits + (size_t)t * sc->V, sc->V, id);
        sc->nll -= lp;
        sc->count++;
        char line[64];
        int k = snprintf(line, sizeof line, "%d\t%d\t%.6f\n", index, id, lp);
        write_out(line, (size_t)k);
    }
}

static void run_score(const Options *o, Model *m) {
    Config *c = &m->config;
    TokenList ids = {0};
    input_tokens(o, m->tokenizer, c->vocab_size, &ids);
    if (ids.len < 2)
        die(EXIT_INPUT, "--score: the input has %zu token(s); scoring needs at least 2", ids.len);
    runstate_init(&m->state, c, (int)(ids.len < (size_t)c->n_ctx ? ids.len : (size_t)c->n_ctx));
    ScoreState sc = {ids.ids, 0, 0, c->vocab_size, 0.0, 0, NULL};
    if (o->dump_logits) {
        sc.dump = fopen(o->dump_logits, "wb");
        if (!sc.dump) die(EXIT_RUNTIME, "cannot create --dump-logits file '%s': %s", o->dump_logits, strerror(errno));
    }
    double t0 = now_seconds();
    // consecutive independent chunks of at most n_ctx tokens
    for (size_t start = 0; start < ids.len; start += c->n_ctx) {
        sc.chunk_start = (int)start;
        sc.chunk_len = (int)(ids.len - start < (size_t)c->n_ctx ? ids.len - start : (size_t)c->n_ctx);
        prefill(m, ids.ids + start, sc.chunk_len, 0, 1, score_tile, &sc);
    }
    flush_out();
    if (sc.dump && fclose(sc.dump) != 0) die(EXIT_RUNTIME, "cannot write --dump-logits file '%s': %s", o->dump_logits, strerror(errno));
    double dt = now_seconds() - t0;
    if (o->verbose) fprintf(stderr, "scored %zu tokens in %.2f s (%.1f tokens/s)\n", ids.len, dt, ids.len / dt);
    if (sc.count == 0)  // every chunk is one token: a context of 1
        die(EXIT_INPUT, "--score: the model's context of %d token(s) leaves no token to predict", c->n_ctx);
    double mean = sc.nll / sc.count;
    fprintf(stderr, "score: tokens=%ld mean_nll=%.6f perplexity=%.6f\n", sc.count, mean, exp(mean));
    tokenlist_free(&ids);
    runstate_free(&m->state);
}

// The prompt's tokens; an empty prompt starts from the beginning-of-text
// token, as GPT-2 does (*empty is then set).
static void prompt_tokens(const Options *o, Model *m, TokenList *prompt, int *empty) {
    Config *c = &m->config;
    input_tokens(o, m->tokenizer, c->vocab_size, prompt);
    *empty = prompt->len == 0;
    if (*empty) {
        int start = c->bos_id >= 0 ? c->bos_id : c->eos_id;
        if (start < 0) die(EXIT_INPUT, "empty prompt, and the model has no bos/eos token to start from");
        if (!prompt->cap) { prompt->ids = xmalloc(sizeof(int)); prompt->cap = 1; }
        prompt->ids[prompt->len++] = start;
    } else if (prompt->len > (size_t)c->n_ctx) {
        die(EXIT_INPUT, "the prompt has %zu tokens, more than the model's context of %d", prompt->len, c->n_ctx);
    }
}

static const char *stop_reason(StopReason why) {
    switch (why) {
    case STOP_EOS: return "end of text";
    case STOP_STRING: return "stop string";
    case STOP_CONTEXT: return "context full";
    default: return "step limit";
    }
}

static void run_generate(const Options *o, Model *m, Sampler *sp) {
    Config *c = &m->config;
    TokenList prompt = {0};
    int empty_prompt;
    prompt_tokens(o, m, &prompt, &empty_prompt);
    int n_prompt = (int)prompt.len;
    // the cache needs room for the prompt and what follows it, not always n_ctx
    long need = (long)n_prompt + o->steps;
    int seq_len = (int)(need < c->n_ctx && !o->context_shift ? need : c->n_ctx);
    runstate_init(&m->state, c, seq_len);
    Views *views = views_new(&o->view, m, sp, seq_len, o->steps);
    if (o->view.trace) views_trace(views, n_prompt - 1);  // the token whose logits pick the first new one
    int *seq = xmalloc(sizeof(int) * seq_len);  // the tokens in the context
    memcpy(seq, prompt.ids, sizeof(int) * n_prompt);
    for (int i = 0; i < n_prompt; i++) sampler_accept(sp, prompt.ids[i], 0);

    double t0 = now_seconds();
    prefill(m, prompt.ids, n_prompt, 0, 0, NULL, NULL);
    double t1 = now_seconds();
    if (o->verbose)
        fprintf(stderr, "prompt: %d tokens in %.3f s (%.1f tokens/s)\n", n_prompt, t1 - t0, n_prompt / (t1 - t0));
    TokenSink out = sink_new(m->tokenizer, o->ids, o->stops, o->n_stops);
    if (empty_prompt || o->echo || (n_prompt == 1 && prompt.ids[0] == tokenizer_bos_id(m->tokenizer)))
        out.strip = tokenizer_decode_strip(m->tokenizer);  // the printed text starts the text
    if (o->echo && !empty_prompt) sink_echo(&out, prompt.ids, n_prompt);  // --echo: the prompt first
    views->sink = &out;
    views->seq = seq;
    PickHook hook = {views_on_pick, views};
    GenerateSettings set = {.max_new = o->steps, .feed_last = views_feed_last(&o->view),
                            .context_shift = o->context_shift, .end_id = -1};
    Generation g = generate(m, sp, &out, hook, seq, n_prompt, &set);
    if (g.why == STOP_CONTEXT) {
        sink_note(&out);
        fprintf(stderr, "run: stopping: the context window of %d tokens is full (--context-shift goes on)\n", c->n_ctx);
    }
    sink_finish(&out);
    views_finish(views, seq, g.pos, n_prompt, o->model_path, out.text.line_open);
    double t2 = now_seconds();
    if (o->verbose) {
        sink_note(&out);
        fprintf(stderr, "generated %d tokens in %.3f s (%.1f tokens/s), stopped by %s", g.generated, t2 - t1,
                g.generated / (t2 - t1), stop_reason(g.why));
        if (g.shifts) fprintf(stderr, "; the context was shifted %d time(s)", g.shifts);
        fputc('\n', stderr);
    }
    views_free(views);
    free(seq);
    tokenlist_free(&prompt);
    runstate_free(&m->state);
}

// --find-heads: FIND_HEADS_RUNS random sequences of FIND_HEADS_TOKENS
// distinct tokens, each followed by itself again (after the model's BOS
// token, if it has one), go through the model; each head's role scores
// (section III, head_roles) are averaged over them and ranked: induction
// heads first, then previous-token heads, then sinks, each by its score.
// The other views (--attention, --attention-html, ...) show the last sequence.
static void run_find_heads(const Options *o, Model *m, uint64_t seed) {
    Config *c = &m->config;
    int bos = c->bos_id >= 0, L = c->n_layer, H = c->n_head;
    int half = (c->n_ctx - bos) / 2 < FIND_HEADS_TOKENS ? (c->n_ctx - bos) / 2 : FIND_HEADS_TOKENS;
    int vocab = tokenizer_n_tokens(m->tokenizer) < c->vocab_size ? tokenizer_n_tokens(m->tokenizer) : c->vocab_size;
    if (half < 3 || vocab < half + 2)
        die(EXIT_USAGE, "--find-heads: the model's context (%d) or vocabulary (%d) is too small for a repeated sequence",
            c->n_ctx, vocab);
    int n = bos + 2 * half;
    runstate_init(&m->state, c, n);
    Views *views = views_new(&o->view, m, NULL, n, 0);
    HeadRoles *mean = xcalloc((size_t)L * H, sizeof(HeadRoles));
    int *seq = xmalloc(sizeof(int) * n);
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 1;  // spread the seed's bits, as the sampler does
    if (rng == 0) rng = 1;                            // xorshift needs a nonzero state
    for (int run = 0; run < FIND_HEADS_RUNS; run++) {
        if (bos) seq[0] = c->bos_id;
        for (int k = 0; k < half; k++) {
            int id, fresh;
            do {  // distinct tokens, none of them the end or the start of text
                id = (int)(rng_next(&rng) % (uint64_t)vocab);
                fresh = id != c->eos_id && id != c->bos_id;
                for (int j = 0; j < k && fresh; j++) fresh = seq[bos + j] != id;
            } while (!fresh);
            seq[bos + k] = seq[bos + half + k] = id;
        }
        prefill(m, seq, n, 0, 0, NULL, NULL);
        if (o->view.value_weighted) weight_by_values(views->log, m, n);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                HeadRoles r = head_roles(views->log, l, h, seq, n);
                mean[l * H + h].prev += r.prev / FIND_HEADS_RUNS;
                mean[l * H + h].induction += r.induction / FIND_HEADS_RUNS;
                mean[l * H + h].sink += r.sink / FIND_HEADS_RUNS;
            }
    }
    views->weighted = o->view.value_weighted;
    show_head_roles(stdout, mean, L, H, half, isatty(STDOUT_FILENO), o->view.value_weighted);
    views->roles = mean;
    views_finish(views, seq, n, n, o->model_path, 0);
    views_free(views);
    free(seq);
    runstate_free(&m->state);
}

// -i: a conversation with the model, one line at a time. Each line typed is
// added to the context (the KV cache keeps everything before it), and the
// model goes on until a newline, a stop string, the end of text or -n
// tokens. Ctrl-C stops a reply; Ctrl-C at the prompt, or Ctrl-D, leaves.
// With stdin not a terminal the lines are read from it, with no prompt.
static volatile sig_atomic_t interrupted;  // set by the SIGINT handler: signals have no other way in

static void on_interrupt(int sig) {
    (void)sig;
    interrupted = 1;
}

// Run tokens through the model after the context's pos tokens (and tell
// the sampler, unless sp is NULL); returns the new count, or -1 when they
// do not fit (and the context cannot shift).
static int extend_context(const Options *o, Model *m, Sampler *sp, int *seq, int pos, const int *ids, int n) {
    int n_ctx = m->config.n_ctx;
    if (pos + n > n_ctx) {
        if (!o->context_shift || n > n_ctx / 2) return -1;
        int keep = n_ctx / 2 - n;  // the most recent tokens, then the new ones: half the context
        memmove(seq, seq + pos - keep, sizeof(int) * keep);
        memcpy(seq + keep, ids, sizeof(int) * n);
        prefill(m, seq, keep + n, 0, 0, NULL, NULL);
        pos = keep + n;
    } else {
        memcpy(seq + pos, ids, sizeof(int) * n);
        prefill(m, ids, n, pos, 0, NULL, NULL);
        pos += n;
    }
    for (int i = 0; i < n && sp; i++) sampler_accept(sp, ids[i], 0);
    return pos;
}

// ----------------------------------------------------------------------------
// IV.2 Chat: a conversation written the way the model learned it
//
// A chat model was fine-tuned on conversations written in one fixed form:
// markers frame every turn and say who speaks, and the model's own turn ends
// with a token that says it is done. To chat, run writes what the user types
// in that form, lets the model go on from the start of its own turn, and
// stops at its end-of-turn token; the whole conversation stays in the KV
// cache. export.py recognises the form in the model's chat template (SPEC 1b,
// offset 148); for a user turn and the start of the model's reply:
//
//   ChatML (SmolLM2, Qwen2.5)  <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n
//   Zephyr (TinyLlama-Chat)    <|user|>\nHi</s>\n<|assistant|>\n
//   Llama 3                    <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>
//                              <|start_header_id|>assistant<|end_header_id|>\n\n
//
// A marker that the tokenizer knows as a special token becomes its id; the
// text between two such tokens is encoded as one piece, as Hugging Face's
// apply_chat_template encodes the text its template writes. What the user
// types is never read as a special token (unless --special).

static const char *CHAT_NAMES[] = {"none", "ChatML", "Zephyr", "Llama 3"};

typedef struct {
    Tokenizer *tok;
    int form;         // CHAT_*
    int eos_id;
    int special;      // --special
    char *text;       // text since the last special token, not yet encoded
    size_t len, cap;
    TokenList *out;   // the ids written so far
    int at_start;     // nothing written yet: the text starts here (Metaspace's prepend_scheme "first")
} ChatWriter;

// Append n bytes to a growing buffer.
static void append_bytes(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        char *p = realloc(*buf, *cap);
        if (!p) die(EXIT_RUNTIME, "out of memory");
        *buf = p;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
}

static void chat_text(ChatWriter *w, const char *s, size_t n) { append_bytes(&w->text, &w->len, &w->cap, s, n); }
static void chat_str(ChatWriter *w, const char *s) { chat_text(w, s, strlen(s)); }

// Encode the text written since the last special token.
static void chat_flush(ChatWriter *w) {
    if (w->len && (w->at_start ? tokenizer_encode_start : tokenizer_encode_continuation)(
                      w->tok, (const unsigned char *)w->text, w->len, w->special, w->out) != 0)
        die(EXIT_RUNTIME, "out of memory while tokenizing");
    if (w->len) w->at_start = 0;
    w->len = 0;
}

static void chat_id(ChatWriter *w, int id) {
    chat_flush(w);
    push_id(w->out, id);
    w->at_start = 0;
}

// A marker: its special token's id, or its text when the tokenizer has no
// such special token (TinyLlama's <|user|> is plain text).
static void chat_marker(ChatWriter *w, const char *marker) {
    int id = tokenizer_special_id(w->tok, marker);
    if (id >= 0) chat_id(w, id);
    else chat_str(w, marker);
}

// The token that ends the model's turn.
static int chat_end_id(Tokenizer *tok, int form, int eos_id) {
    switch (form) {
    case CHAT_CHATML: return tokenizer_special_id(tok, "<|im_end|>");
    case CHAT_ZEPHYR: return eos_id;
    case CHAT_LLAMA3: return tokenizer_special_id(tok, "<|eot_id|>");
    default: return -1;
    }
}

// What comes before the first turn.
static void chat_begin(ChatWriter *w) {
    w->at_start = 1;
    if (w->form == CHAT_LLAMA3) chat_marker(w, "<|begin_of_text|>");
}

// The start of a turn of `role` ("system", "user", "assistant").
static void chat_open(ChatWriter *w, const char *role) {
    switch (w->form) {
    case CHAT_CHATML: chat_marker(w, "<|im_start|>"); chat_str(w, role); chat_str(w, "\n"); break;
    case CHAT_ZEPHYR: {
        char m[32];
        snprintf(m, sizeof m, "<|%s|>", role);
        chat_marker(w, m);
        chat_str(w, "\n");
        break;
    }
    case CHAT_LLAMA3:
        chat_marker(w, "<|start_header_id|>");
        chat_str(w, role);
        chat_marker(w, "<|end_header_id|>");
        chat_str(w, "\n\n");
        break;
    }
}

// The end of a turn, the model's included (its end-of-turn token first).
static void chat_close(ChatWriter *w) {
    switch (w->form) {
    case CHAT_CHATML: chat_marker(w, "<|im_end|>"); chat_str(w, "\n"); break;
    case CHAT_ZEPHYR: chat_id(w, w->eos_id); chat_str(w, "\n"); break;
    case CHAT_LLAMA3: chat_marker(w, "<|eot_id|>"); break;
    }
}

static int is_ascii_space(char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }

// A whole turn. Llama 3's template trims the message's surrounding (ASCII) whitespace.
static void chat_turn(ChatWriter *w, const char *role, const char *content, size_t n) {
    chat_open(w, role);
    if (w->form == CHAT_LLAMA3) {
        while (n && is_ascii_space(*content)) content++, n--;
        while (n && is_ascii_space(content[n - 1])) n--;
    }
    chat_text(w, content, n);
    chat_close(w);
}

// The system message: --system, else the template's own (Qwen2.5's "You are
// Qwen, ..."), else none.
static void chat_system(ChatWriter *w, const Options *o, const Config *c) {
    if (o->system) chat_turn(w, "system", o->system, strlen(o->system));
    else if (c->chat_system_len) chat_turn(w, "system", (const char *)c->chat_system, c->chat_system_len);
}

// The role a line starts with ("user: ..."), or -1; *skip: the bytes of
// "role:" and one space after it.
static int line_role(const char *line, size_t n, size_t *skip) {
    static const char *const roles[] = {"system", "user", "assistant"};
    for (int k = 0; k < 3; k++) {
        size_t rl = strlen(roles[k]);
        if (n > rl && memcmp(line, roles[k], rl) == 0 && line[rl] == ':') {
            *skip = rl + 1 + (n > rl + 1 && line[rl + 1] == ' ');
            return k;
        }
    }
    return -1;
}

// --tokenize --chat: a conversation, one message per "role: text" line
// (role system, user or assistant; a line without a role goes on with the
// message before it, after a newline), written in the model's form and
// ended by the start of the model's turn, as apply_chat_template with
// add_generation_prompt=True writes it.
static void chat_conversation(const Options *o, const Config *c, Tokenizer *tok, const char *text, size_t len,
                              TokenList *out) {
    static const char *const roles[] = {"system", "user", "assistant"};
    ChatWriter w = {tok, c->chat, c->eos_id, o->special, NULL, 0, 0, out, 0};
    char *msg = NULL;  // the message being read
    size_t mlen = 0, mcap = 0;
    int role = -1, turns = 0;
    chat_begin(&w);
    for (size_t i = 0; i <= len; i++) {  // each line; i = len is the end
        size_t e = i, skip = 0;
        while (e < len && text[e] != '\n') e++;
        int r = i < len ? line_role(text + i, e - i, &skip) : -1;
        if ((r >= 0 || i == len) && role >= 0) {  // the message before is complete
            if (turns++ == 0 && role != 0) chat_system(&w, o, c);
            chat_turn(&w, roles[role], msg ? msg : "", mlen);
        }
        if (i == len) break;
        if (r >= 0) {
            role = r;
            mlen = 0;
        } else if (role < 0) {
            die(EXIT_INPUT, "--chat: the line '%.*s' does not start with system:, user: or assistant:",
                (int)(e - i > 40 ? 40 : e - i), text + i);
        } else {
            append_bytes(&msg, &mlen, &mcap, "\n", 1);  // a line that goes on with the message
        }
        append_bytes(&msg, &mlen, &mcap, text + i + skip, e - i - skip);
        i = e < len ? e : len - 1;  // the loop's i++ steps past the newline (or to the end)
    }
    if (turns == 0) chat_system(&w, o, c);
    chat_open(&w, "assistant");
    chat_flush(&w);
    free(msg);
    free(w.text);
}

static void run_interactive(const Options *o, Model *m, Sampler *sp) {
    Config *c = &m->config;
    int tty = isatty(STDIN_FILENO) && !o->stdin_closed;
    runstate_init(&m->state, c, c->n_ctx);
    int *seq = xmalloc(sizeof(int) * c->n_ctx);
    int pos = 0;
    TokenList ids = {0};
    // a chat model's conversation is written in its form (IV.2); other models continue the text
    int chatting = c->chat != CHAT_NONE && !o->no_chat;
    ChatWriter chat = {m->tokenizer, c->chat, c->eos_id, o->special, NULL, 0, 0, &ids, 0};
    int end_id = chatting ? chat_end_id(m->tokenizer, c->chat, c->eos_id) : -1;
    if (chatting && (o->prompt || o->prompt_file))
        die(EXIT_USAGE, "model '%s' is a chat model (%s): -i takes the conversation from standard input; "
                        "--system sets the system message, --no-chat continues -p's text instead", o->model_path, CHAT_NAMES[c->chat]);
    if (o->system && !chatting)
        die(EXIT_USAGE, "--system: model '%s' has no chat template (or --no-chat was given)", o->model_path);
    if (o->prompt || o->prompt_file) {  // a text to start from
        input_tokens(o, m->tokenizer, c->vocab_size, &ids);
        if ((pos = extend_context(o, m, sp, seq, 0, ids.ids, (int)ids.len)) < 0)
            die(EXIT_INPUT, "the prompt has %zu tokens, more than the model's context of %d", ids.len, c->n_ctx);
    }
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;  // no SA_RESTART: Ctrl-C at the prompt ends the read
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    if (tty && chatting)
        fprintf(stderr, "run: chat (%s); each line is your turn, the model answers until its end of turn. "
                        "Ctrl-C stops a reply, Ctrl-C again or Ctrl-D leaves.\n", CHAT_NAMES[c->chat]);
    else if (tty)
        fprintf(stderr, "run: interactive; a line is added to the context and the model goes on to the end of "
                        "its line. Ctrl-C stops a reply, Ctrl-C again or Ctrl-D leaves.\n");
    char *line = NULL;
    size_t cap = 0;
    sigset_t with_int, old_mask;  // SIGINT waits while the flag is reset, and arrives in pselect or a reply
    sigemptyset(&with_int);
    sigaddset(&with_int, SIGINT);
    for (;;) {
        sigprocmask(SIG_BLOCK, &with_int, &old_mask);
        interrupted = 0;
        if (tty) {
            fprintf(stderr, "[%d/%d] > ", c->n_ctx - pos, c->n_ctx);
            fd_set in;
            FD_ZERO(&in);
            FD_SET(STDIN_FILENO, &in);
            // wait for a line with SIGINT let in: a Ctrl-C at the prompt is never lost
            int ready = pselect(STDIN_FILENO + 1, &in, NULL, NULL, NULL, &old_mask);
            if (ready < 0 && interrupted) {
                fputc('\n', stderr);
                break;
            }
        }
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {  // Ctrl-D, or the end of piped input
            if (tty) fputc('\n', stderr);
            break;
        }
        ids.len = 0;
        if (chatting) {  // the user's turn, then the start of the model's
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (!len) continue;
            if (pos == 0) {
                chat_begin(&chat);
                chat_system(&chat, o, c);
            }
            chat_turn(&chat, "user", line, (size_t)len);
            chat_open(&chat, "assistant");
            chat_flush(&chat);
        } else {
            // the BOS id (OPT's </s>) starts the conversation only, as it starts one text
            int (*encode)(Tokenizer *, const unsigned char *, size_t, int, TokenList *) =
                pos == 0 ? tokenizer_encode : tokenizer_encode_continuation;
            if (encode(m->tokenizer, (const unsigned char *)line, (size_t)len, o->special, &ids) != 0)
                die(EXIT_RUNTIME, "out of memory while tokenizing");
        }
        int next_pos = extend_context(o, m, sp, seq, pos, ids.ids, (int)ids.len);
        if (next_pos < 0) {
            fprintf(stderr, "run: the context of %d tokens is full (%d left, the line has %zu); "
                            "--context-shift keeps the most recent half instead\n", c->n_ctx, c->n_ctx - pos, ids.len);
            break;
        }
        pos = next_pos;
        if (pos == 0) continue;  // an empty line and nothing before it: nothing to go on from
        TokenSink out = sink_new(m->tokenizer, 0, o->stops, o->n_stops);
        out.end_line = 1;
        out.stop_at_newline = !chatting;  // a reply is one line, or (chat) one turn
        GenerateSettings set = {.max_new = o->steps, .context_shift = o->context_shift, .end_id = end_id,
                                .interrupted = &interrupted};
        Generation g = generate(m, sp, &out, (PickHook){0}, seq, pos, &set);
        pos = g.pos;
        // the reply's last token joins the context too (generate stops before feeding it);
        // a chat's turn is then closed as its form closes it
        ids.len = 0;
        if (g.last >= 0 && !g.last_fed && !(chatting && g.why == STOP_EOS)) chat_id(&chat, g.last);
        if (chatting) {
            chat_close(&chat);
            chat_flush(&chat);
        }
        if (ids.len) {
            int p2 = extend_context(o, m, NULL, seq, pos, ids.ids, (int)ids.len);
            if (p2 >= 0) pos = p2;
        }
        sink_finish(&out);
        if (g.why == STOP_INTERRUPT) fprintf(stderr, "run: stopped\n");
        if (g.why == STOP_CONTEXT) {
            fprintf(stderr, "run: the context window of %d tokens is full\n", c->n_ctx);
            break;
        }
    }
    sigprocmask(SIG_SETMASK, &old_mask, NULL);
    sigaction(SIGINT, &old_sa, NULL);
    free(line);
    free(seq);
    free(chat.text);
    tokenlist_free(&ids);
    runstate_free(&m->state);
}

// ----------------------------------------------------------------------------
// IV.2 The command line

static void usage(FILE *f) {
    fprintf(f,
        "usage: run [MODEL] [options]\n"
        "\n"
        "Generate text with a GPT-2 checkpoint made by export.py.\n"
        "MODEL defaults to %s.\n"
        "\n"
        "Input (the prompt):\n"
        "  -p, --prompt TEXT      the prompt text\n"
        "  -f, --file PATH        read the prompt from PATH ('-' for stdin)\n"
        "                         (with neither, stdin is read when it is not a terminal)\n"
        "      --keep-newline     keep the final newline of a prompt from a file or stdin\n"
        "                         (by default one is dropped, so the text goes on the same line)\n"
        "      --ids              the input is whitespace-separated token ids, and\n"
        "                         generated tokens are printed as ids\n"
        "      --special          recognise special tokens such as <|endoftext|> in text\n"
        "\n"
        "Generation:\n"
        "  -n, --steps N          tokens to generate (default 256)\n"
        "  -t, --temperature T    0 is greedy (default 1.0)\n"
        "  -k, --top-k K          sample from the K most likely tokens (0 = off, default)\n"
        "      --top-p P          sample from the smallest set with probability P (default 1 = off)\n"
        "      --min-p P          drop tokens less likely than P times the most likely (default 0 = off)\n"
        "      --repeat-penalty R divide a positive logit by R (multiply a negative one) for each\n"
        "                         token of the last --repeat-last-n tokens (default 1 = off)\n"
        "      --repeat-last-n N  how far back --repeat-penalty looks (default 64)\n"
        "      --presence-penalty A   subtract A from the logit of each token generated so far\n"
        "      --frequency-penalty B  subtract B times the number of times it was generated\n"
        "  -s, --seed N           random seed (default: from the clock; shown with -v)\n"
        "      --stop STR         stop before STR appears in the output (repeatable)\n"
        "      --echo             print the prompt before the generated text\n"
        "      --context-shift    when the context window is full, keep its most recent half and\n"
        "                         go on; GPT-2's positions are learned, so the kept tokens are run\n"
        "                         through the model again at their new positions (default: stop)\n"
        "  -i, --interactive      a conversation: each line typed is added to the context and\n"
        "                         the model goes on to the end of its line (-n at most);\n"
        "                         Ctrl-C stops a reply, Ctrl-C at the prompt or Ctrl-D leaves;\n"
        "                         with a chat model (ChatML, Zephyr, Llama 3), each line is\n"
        "                         your turn and the model answers until its end of turn\n"
        "      --system TEXT      with -i (or --tokenize --chat): the chat's system message\n"
        "      --no-chat          with -i: continue text even with a chat model\n"
        "      --threads N        worker threads (default: online CPUs)\n"
        "\n"
        "Other modes:\n"
        "      --tokenize         print the input's token ids on one line\n"
        "      --pieces           with --tokenize: each id and its text, one per line\n"
        "      --chat             with --tokenize: the input is a conversation, one message per\n"
        "                         'system: ', 'user: ' or 'assistant: ' line; print the ids of it\n"
        "                         in the model's chat form, up to the start of the model's turn\n"
        "      --detokenize       print the text of the input ids\n"
        "      --score            print 'pos<TAB>id<TAB>logprob' for each predicted token;\n"
        "                         mean NLL and perplexity on stderr\n"
        "      --dump-logits PATH with --score: write every position's float32 logits to PATH\n"
        "\n"
        "      --plain-kernels    use the plain reference loops, one thread (slow)\n"
        "\n"
        "Looking inside (after generation, on stdout):\n"
        "      --attention        the attention weights of one head, queries by keys: a heatmap\n"
        "                         on a terminal, one line of numbers per query otherwise\n"
        "      --layer L, --head H  which head --attention shows (default 0, 0)\n"
        "      --attention-overview  every head as a small map, with what it mostly attends to\n"
        "      --attention-html FILE  write a self-contained page to explore every head\n"
        "      --explain [N]      for each generated token, the N (default 5) most likely tokens,\n"
        "                         their probabilities and which was picked (on stderr); --top N too\n"
        "      --logit-lens       for each position and layer, the most likely next token (and its\n"
        "                         probability) if the model stopped after that layer\n"
        "      --find-heads       run random tokens repeated (A B C .. A B C ..) and rank the heads\n"
        "                         by role: previous token, induction, sink (first token); -s seeds\n"
        "      --value-weighted   the attention views show each weight times the norm of the value\n"
        "                         vector it reads (rows renormalised)\n"
        "      --trace            follow the prompt's last token through the forward pass: each\n"
        "                         step's shape and first numbers (on the plain kernels)\n"
        "  -v, --verbose          the model, the seed, and the speed of the prompt and of\n"
        "                         generation in tokens/s, on stderr\n"
        "  -h, --help             this help\n"
        "  -V, --version          the version\n"
        "\n"
        "An option that does nothing in the chosen mode is an error.\n"
        "Exit status: 0 success, 1 runtime error, 2 usage error, 3 bad model file,\n"
        "4 bad input.\n",
        DEFAULT_MODEL);
}

static long parse_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno) die(EXIT_USAGE, "%s: '%s' is not a whole number", flag, s);
    if (v < lo || v > hi) die(EXIT_USAGE, "%s: %ld is out of range (%ld..%ld)", flag, v, lo, hi);
    return v;
}

static float parse_float(const char *flag, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno || !isfinite(v)) die(EXIT_USAGE, "%s: '%s' is not a number", flag, s);
    return (float)v;
}

static uint64_t parse_seed(const char *s) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *s == '-' || *end != '\0' || errno) die(EXIT_USAGE, "--seed: '%s' is not a non-negative whole number", s);
    return v;
}

enum { OPT_TOP_P = 256, OPT_THREADS, OPT_STOP, OPT_ECHO, OPT_IDS, OPT_SPECIAL, OPT_TOKENIZE,
       OPT_DETOKENIZE, OPT_SCORE, OPT_DUMP_LOGITS, OPT_PLAIN, OPT_ATTENTION, OPT_OVERVIEW, OPT_LAYER,
       OPT_HEAD, OPT_HTML, OPT_EXPLAIN, OPT_PIECES, OPT_KEEP_NEWLINE, OPT_MIN_P, OPT_REPEAT_PENALTY,
       OPT_REPEAT_LAST_N, OPT_PRESENCE, OPT_FREQUENCY, OPT_CONTEXT_SHIFT, OPT_CHAT, OPT_NO_CHAT, OPT_SYSTEM,
       OPT_LENS, OPT_FIND_HEADS, OPT_VALUE_WEIGHTED, OPT_TRACE, OPT_COUNT };

static const struct option LONG_OPTIONS[] = {
    {"prompt", required_argument, 0, 'p'},      {"file", required_argument, 0, 'f'},
    {"steps", required_argument, 0, 'n'},       {"temperature", required_argument, 0, 't'},
    {"top-k", required_argument, 0, 'k'},       {"top-p", required_argument, 0, OPT_TOP_P},
    {"min-p", required_argument, 0, OPT_MIN_P},
    {"repeat-penalty", required_argument, 0, OPT_REPEAT_PENALTY},
    {"repeat-last-n", required_argument, 0, OPT_REPEAT_LAST_N},
    {"presence-penalty", required_argument, 0, OPT_PRESENCE},
    {"frequency-penalty", required_argument, 0, OPT_FREQUENCY},
    {"seed", required_argument, 0, 's'},        {"threads", required_argument, 0, OPT_THREADS},
    {"stop", required_argument, 0, OPT_STOP},   {"echo", no_argument, 0, OPT_ECHO},
    {"context-shift", no_argument, 0, OPT_CONTEXT_SHIFT}, {"interactive", no_argument, 0, 'i'},
    {"chat", no_argument, 0, OPT_CHAT},         {"no-chat", no_argument, 0, OPT_NO_CHAT},
    {"system", required_argument, 0, OPT_SYSTEM},
    {"verbose", no_argument, 0, 'v'},           {"ids", no_argument, 0, OPT_IDS},
    {"special", no_argument, 0, OPT_SPECIAL},   {"keep-newline", no_argument, 0, OPT_KEEP_NEWLINE},
    {"tokenize", no_argument, 0, OPT_TOKENIZE}, {"pieces", no_argument, 0, OPT_PIECES},
    {"detokenize", no_argument, 0, OPT_DETOKENIZE}, {"score", no_argument, 0, OPT_SCORE},
    {"dump-logits", required_argument, 0, OPT_DUMP_LOGITS},
    {"plain-kernels", no_argument, 0, OPT_PLAIN},
    {"attention", no_argument, 0, OPT_ATTENTION}, {"attention-overview", no_argument, 0, OPT_OVERVIEW},
    {"layer", required_argument, 0, OPT_LAYER}, {"head", required_argument, 0, OPT_HEAD},
    {"attention-html", required_argument, 0, OPT_HTML}, {"explain", optional_argument, 0, OPT_EXPLAIN},
    {"top", optional_argument, 0, OPT_EXPLAIN},
    {"logit-lens", no_argument, 0, OPT_LENS},   {"find-heads", no_argument, 0, OPT_FIND_HEADS},
    {"value-weighted", no_argument, 0, OPT_VALUE_WEIGHTED}, {"trace", no_argument, 0, OPT_TRACE},
    {"help", no_argument, 0, 'h'},              {"version", no_argument, 0, 'V'},
    {0, 0, 0, 0},
};

// The modes an option does something in; given in another, it is an error.
enum { IN_GEN = 1, IN_TOK = 2, IN_DETOK = 4, IN_SCORE = 8, IN_ALL = 15 };

static int option_modes(int ch) {
    switch (ch) {
    case 'p': case 'f': case 'v': case OPT_TOKENIZE: case OPT_DETOKENIZE: case OPT_SCORE: return IN_ALL;
    case OPT_SPECIAL: return IN_GEN | IN_TOK | IN_SCORE;
    case OPT_IDS: case OPT_THREADS: case OPT_PLAIN: return IN_GEN | IN_SCORE;
    case OPT_PIECES: case OPT_CHAT: return IN_TOK;
    case OPT_SYSTEM: return IN_GEN | IN_TOK;
    case OPT_DUMP_LOGITS: return IN_SCORE;
    default: return IN_GEN;  // the sampling, stopping, echo, -i, the views
    }
}

static const char *mode_flag(int mode) {
    return mode == MODE_TOKENIZE ? "--tokenize" : mode == MODE_DETOKENIZE ? "--detokenize" : mode == MODE_SCORE ? "--score"
                                                                                                                : "generation";
}

// The long name of an option ("steps" for 'n').
static const char *option_name(int ch) {
    for (const struct option *op = LONG_OPTIONS; op->name; op++)
        if (op->val == ch) return op->name;
    return "?";
}

// Does path's directory exist and take a new file (a write target checked
// before any work)?
static void check_write_target(const char *flag, const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        die(EXIT_RUNTIME, "%s: cannot write '%s': the directory '%s' does not exist", flag, path, dir);
    if (access(dir, W_OK) != 0 && access(path, W_OK) != 0)
        die(EXIT_RUNTIME, "%s: cannot write '%s': %s", flag, path, strerror(errno));
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) die(EXIT_RUNTIME, "%s: '%s' is a directory", flag, path);
}

static void parse_args(Options *o, int argc, char **argv) {
    memset(o, 0, sizeof *o);
    o->steps = 256;
    o->sampling = (SamplerSettings){.temperature = 1.0f, .top_p = 1.0f, .repeat_penalty = 1.0f, .repeat_last_n = 64};
    SamplerSettings *sp = &o->sampling;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    o->threads = cpus > 0 ? (int)(cpus < 256 ? cpus : 256) : 1;
    o->stops = xcalloc(argc, sizeof(char *));
    int modes = 0;
    unsigned char given[OPT_COUNT + 128] = {0};  // which options were given
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":p:f:n:t:k:s:ivhV", LONG_OPTIONS, NULL)) != -1) {
        if (ch >= 0 && ch < (int)sizeof given) given[ch] = 1;
        switch (ch) {
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'n': o->steps = (int)parse_long("--steps", optarg, 0, 1L << 30); break;
        case 't':
            sp->temperature = parse_float("--temperature", optarg);
            if (sp->temperature < 0) die(EXIT_USAGE, "--temperature: %s is negative (0 means greedy)", optarg);
            break;
        case 'k': sp->top_k = (int)parse_long("--top-k", optarg, 0, 1L << 30); break;
        case OPT_TOP_P:
            sp->top_p = parse_float("--top-p", optarg);
            if (!(sp->top_p > 0.0f && sp->top_p <= 1.0f)) die(EXIT_USAGE, "--top-p: %s is outside (0, 1]", optarg);
            break;
        case OPT_MIN_P:
            sp->min_p = parse_float("--min-p", optarg);
            if (!(sp->min_p >= 0.0f && sp->min_p <= 1.0f)) die(EXIT_USAGE, "--min-p: %s is outside [0, 1]", optarg);
            break;
        case OPT_REPEAT_PENALTY:
            sp->repeat_penalty = parse_float("--repeat-penalty", optarg);
            if (!(sp->repeat_penalty > 0.0f)) die(EXIT_USAGE, "--repeat-penalty: %s is not positive (1 is off)", optarg);
            break;
        case OPT_REPEAT_LAST_N: sp->repeat_last_n = (int)parse_long("--repeat-last-n", optarg, 0, 1L << 20); break;
        case OPT_PRESENCE: sp->presence_penalty = parse_float("--presence-penalty", optarg); break;
        case OPT_FREQUENCY: sp->frequency_penalty = parse_float("--frequency-penalty", optarg); break;
        case 's': o->seed = parse_seed(optarg); o->seed_given = 1; break;
        case OPT_THREADS: o->threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case OPT_STOP:
            if (!optarg[0]) die(EXIT_USAGE, "--stop: the stop string is empty");
            o->stops[o->n_stops++] = optarg;
            break;
        case OPT_ECHO: o->echo = 1; break;
        case OPT_CONTEXT_SHIFT: o->context_shift = 1; break;
        case 'i': o->interactive = 1; break;
        case OPT_CHAT: o->chat = 1; break;
        case OPT_NO_CHAT: o->no_chat = 1; break;
        case OPT_SYSTEM: o->system = optarg; break;
        case 'v': o->verbose = 1; break;
        case OPT_IDS: o->ids = 1; break;
        case OPT_SPECIAL: o->special = 1; break;
        case OPT_KEEP_NEWLINE: o->keep_newline = 1; break;
        case OPT_PIECES: o->pieces = 1; break;
        case OPT_TOKENIZE: o->mode = MODE_TOKENIZE; modes++; break;
        case OPT_DETOKENIZE: o->mode = MODE_DETOKENIZE; modes++; break;
        case OPT_SCORE: o->mode = MODE_SCORE; modes++; break;
        case OPT_DUMP_LOGITS: o->dump_logits = optarg; break;
        case OPT_PLAIN: o->plain_kernels = 1; break;
        case OPT_ATTENTION: o->view.attention = 1; break;
        case OPT_OVERVIEW: o->view.overview = 1; break;
        case OPT_LAYER: o->view.layer = (int)parse_long("--layer", optarg, 0, 4095); break;
        case OPT_HEAD: o->view.head = (int)parse_long("--head", optarg, 0, 4095); break;
        case OPT_HTML:
            if (!optarg[0]) die(EXIT_USAGE, "--attention-html: the file name is empty");
            o->view.html_path = optarg;
            break;
        case OPT_LENS: o->view.lens = 1; break;
        case OPT_FIND_HEADS: o->view.find_heads = 1; break;
        case OPT_VALUE_WEIGHTED: o->view.value_weighted = 1; break;
        case OPT_TRACE: o->view.trace = 1; break;
        case OPT_EXPLAIN: {
            // --explain, --explain=N or --explain N (a number in the next word)
            const char *n = optarg;
            if (!n && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9') n = argv[optind++];
            o->view.explain = n ? (int)parse_long("--explain", n, 1, 1000) : 5;
            break;
        }
        case 'h': usage(stdout); exit(EXIT_OK);
        case 'V': printf("run %s\n", RUN_VERSION); exit(EXIT_OK);
        case ':': die(EXIT_USAGE, "option '%s' needs a value (see run --help)", argv[optind - 1]);
        default:
            if (optopt) die(EXIT_USAGE, "unknown option '-%c' (see run --help)", optopt);
            die(EXIT_USAGE, "unknown option '%s' (see run --help)", argv[optind - 1]);
        }
    }
    if (o->pieces && o->mode == MODE_GENERATE && !modes) { o->mode = MODE_TOKENIZE; modes++; }  // --pieces alone
    if (modes > 1) die(EXIT_USAGE, "--tokenize, --detokenize and --score exclude each other");
    if (o->prompt && o->prompt_file) die(EXIT_USAGE, "give the prompt with -p or -f, not both");
    if (o->dump_logits && o->mode != MODE_SCORE) die(EXIT_USAGE, "--dump-logits works with --score only");
    if (o->ids && (o->mode == MODE_TOKENIZE || o->mode == MODE_DETOKENIZE))
        die(EXIT_USAGE, "--ids does not apply to --tokenize/--detokenize");
    // an option that does nothing in this mode is an error, not silently ignored
    int mode_bit = o->mode == MODE_TOKENIZE ? IN_TOK : o->mode == MODE_DETOKENIZE ? IN_DETOK
                 : o->mode == MODE_SCORE ? IN_SCORE : IN_GEN;
    for (int i = 0; i < (int)sizeof given; i++)
        if (given[i] && !(option_modes(i) & mode_bit))
            die(EXIT_USAGE, "--%s does nothing with %s (see run --help)", option_name(i), mode_flag(o->mode));
    if ((given[OPT_LAYER] || given[OPT_HEAD]) && !o->view.attention)
        die(EXIT_USAGE, "%s chooses the head that --attention shows: give --attention too",
            given[OPT_LAYER] ? "--layer" : "--head");
    if (o->view.value_weighted && !(o->view.attention || o->view.overview || o->view.html_path || o->view.find_heads))
        die(EXIT_USAGE, "--value-weighted changes the attention views: give --attention, --attention-overview, "
                        "--attention-html or --find-heads too");
    if (o->view.find_heads) {  // it makes its own input and generates nothing
        static const int NOT_WITH[] = {'p', 'f', 'n', 't', 'k', OPT_TOP_P, OPT_MIN_P, OPT_REPEAT_PENALTY, OPT_REPEAT_LAST_N,
                                       OPT_PRESENCE, OPT_FREQUENCY, OPT_STOP, OPT_ECHO, OPT_IDS, OPT_SPECIAL,
                                       OPT_KEEP_NEWLINE, OPT_EXPLAIN, OPT_TRACE, 'i'};
        for (size_t i = 0; i < sizeof NOT_WITH / sizeof NOT_WITH[0]; i++)
            if (given[NOT_WITH[i]])
                die(EXIT_USAGE, "--find-heads makes its own input (random tokens, repeated) and generates nothing: "
                                "--%s does not go with it", option_name(NOT_WITH[i]));
    }
    if (o->keep_newline && (o->prompt || o->ids))
        die(EXIT_USAGE, "--keep-newline applies to a text prompt read from a file or stdin");
    if (o->interactive && (o->ids || o->echo || views_feed_last(&o->view) || o->view.explain))
        die(EXIT_USAGE, "-i is a conversation in text: --ids, --echo and the views do not go with it");
    if ((o->no_chat || o->system) && o->mode == MODE_GENERATE && !o->interactive)
        die(EXIT_USAGE, "%s belongs to a conversation: give -i too", o->no_chat ? "--no-chat" : "--system");
    if (o->system && o->mode == MODE_TOKENIZE && !o->chat)
        die(EXIT_USAGE, "--system belongs to a conversation: give --chat too");
    if (o->context_shift && views_feed_last(&o->view))
        die(EXIT_USAGE, "--context-shift moves tokens to new positions; the views need them to stay");
    if (o->view.html_path) check_write_target("--attention-html", o->view.html_path);
    if (o->dump_logits) check_write_target("--dump-logits", o->dump_logits);
    if (optind < argc) o->model_path = argv[optind++];
    if (optind < argc) die(EXIT_USAGE, "unexpected argument '%s' (one MODEL at most; quote the prompt and pass it with -p)", argv[optind]);
    if (!o->model_path) o->model_path = DEFAULT_MODEL;
}

// The two most common first mistakes get a hint: a prompt where the model
// goes (./run "Once upon a time"), and a Hugging Face model (its directory,
// or one of its weight files) where an exported checkpoint goes.
static void check_model_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && (strpbrk(path, " \t\n") || (!strchr(path, '/') && !strchr(path, '.'))))
            die(EXIT_USAGE, "there is no model file '%s'; to give a prompt, use -p: run -p \"%s\"", path, path);
        return;  // map_file says what is wrong
    }
    char config[4096];
    snprintf(config, sizeof config, "%s/config.json", path);
    if (S_ISDIR(st.st_mode) && access(config, R_OK) == 0)
        die(EXIT_MODEL, "model '%s' is not a regular file but a Hugging Face model directory; export it first: "
                        "python3 export.py %s model.bin, then run model.bin", path, path);
}

// What a file that is not a checkpoint looks like, as a hint ("" if unknown).
static const char *foreign_format_hint(const unsigned char *data, size_t size) {
    if (size >= 9 && data[8] == '{' && read_u64(data) < size)
        return "; it looks like a safetensors file: export its model directory first (python3 export.py DIR model.bin)";
    if (size >= 4 && memcmp(data, "PK\3\4", 4) == 0)
        return "; it looks like a PyTorch file: export its model directory first (python3 export.py DIR model.bin)";
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) return "; it is a GGUF file, which this program does not read";
    return "";
}

static Tokenizer *load_tokenizer(const char *path, const void *section, size_t len) {
    char err[256] = "";
    Tokenizer *t = tokenizer_load(section, len, err, sizeof err);
    if (!t) die(EXIT_MODEL, "model '%s': bad tokenizer section: %s", path, err);
    return t;
}

// Generation or scoring: the kernels, the threads, the sampler.
static void run_model(const Options *o, Model *m, double t0) {
    Config *c = &m->config;
    if (o->view.layer >= c->n_layer)
        die(EXIT_USAGE, "--layer: %d is out of range (the model has layers 0..%d)", o->view.layer, c->n_layer - 1);
    if (o->view.head >= c->n_head)
        die(EXIT_USAGE, "--head: %d is out of range (the model has heads 0..%d)", o->view.head, c->n_head - 1);
    prefault_weights(&m->file);
    m->k = o->plain_kernels || o->view.trace ? &PLAIN_KERNELS : fast_kernels();  // --trace shows Part I's loops
    if (o->verbose) fprintf(stderr, "kernels: %s\n", kernels_name(m->k));
    pool_start(o->threads);
    if (o->verbose)
        fprintf(stderr, "model %s (%s%s): %d layers, %d heads, %d wide, context %d, vocabulary %d; loaded in %.3f s; "
                "%d threads\n", o->model_path, FAMILY_NAMES[c->family],
                c->weight_type == WEIGHTS_Q8 ? ", 8-bit weights" : "", c->n_layer, c->n_head, c->n_embd, c->n_ctx,
                c->vocab_size, now_seconds() - t0, o->threads);

    if (o->mode == MODE_SCORE) {
        run_score(o, m);
    } else {
        uint64_t seed = o->seed_given ? o->seed : ((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32));
        if (o->verbose && o->sampling.temperature > 0) fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
        Sampler *sp = sampler_new(c->vocab_size, &o->sampling, seed);
        if (o->interactive) run_interactive(o, m, sp);
        else if (o->view.find_heads) run_find_heads(o, m, o->seed_given ? o->seed : 0);
        else run_generate(o, m, sp);
        sampler_free(sp);
    }
    pool_stop();
}

#ifndef RUN_NO_MAIN  // tests/test_kernels.c includes this file without main()
int main(int argc, char **argv) {
    Options o;
    int stdin_closed = check_std_streams();
    parse_args(&o, argc, argv);
    o.stdin_closed = stdin_closed;
    signal(SIGPIPE, SIG_IGN);  // a closed pipe shows up as EPIPE in write_out

    double t0 = now_seconds();
    Model m;
    memset(&m, 0, sizeof m);
    check_model_path(o.model_path);
    map_file(&m.file, o.model_path);
    if (memcmp(m.file.data, "GPT2TOK_", 8) == 0) {
        // a standalone tokenizer file: enough for --tokenize / --detokenize
        if (o.mode != MODE_TOKENIZE && o.mode != MODE_DETOKENIZE)
            die(EXIT_USAGE, "'%s' is a tokenizer file, not a model: it serves --tokenize and --detokenize only", o.model_path);
        m.tokenizer = load_tokenizer(o.model_path, m.file.data, m.file.size);
    } else {
        if (memcmp(m.file.data, "GPT2CKPT", 8) != 0)
            die(EXIT_MODEL, "model '%s' is not a checkpoint from export.py (wrong magic)%s", o.model_path,
                foreign_format_hint(m.file.data, m.file.size));
        char err[256];
        if (read_config(&m.config, m.file.data, m.file.size, err, sizeof err) != 0)
            die(EXIT_MODEL, "model '%s': %s", o.model_path, err);
        m.tokenizer = load_tokenizer(o.model_path, m.file.data + m.config.tok_offset, m.config.tok_bytes);
        if (tokenizer_n_tokens(m.tokenizer) > m.config.vocab_size)
            die(EXIT_MODEL, "model '%s': the tokenizer has %d tokens but the model only %d", o.model_path,
                tokenizer_n_tokens(m.tokenizer), m.config.vocab_size);
        weights_map(&m.weights, &m.config, m.file.data);
    }
    if (o.mode == MODE_TOKENIZE) run_tokenize(&o, &m.config, m.tokenizer);
    else if (o.mode == MODE_DETOKENIZE) run_detokenize(&o, m.tokenizer);
    else run_model(&o, &m, t0);
    weights_free(&m.weights);
    tokenizer_free(m.tokenizer);
    free(o.stops);
    unmap_file(&m.file);
    return EXIT_OK;
}

#endif
