// tests/fuzz_tokenizer.c: libFuzzer harness for the tokenizer.
//
// The first byte of the input picks what the rest is:
//   even: text for the real GPT-2 tokenizer (tests/build/fuzz-gpt2.tok, made
//         by `make fuzz`, or the file named by $FUZZ_TOKENIZER). Checked, with special tokens off
//         and on: every id is in range and has bytes; decode(encode(b)) == b;
//         the ids do not depend on the tokenizer's tuning knobs (heap BPE for
//         every piece, word cache off); pushing the token bytes through the
//         streaming UTF-8 decoder, and pushing the raw text in chunks whose
//         sizes come from the input, both give back exactly b.
//   odd:  a tokenizer section (seeds: the fixtures' sections). It must load
//         or be refused with a reason; when it loads, it must round-trip its
//         own bytes and a few fixed strings (after its BOS id, when it has
//         one; with an NFC section (version 2 or 3), only the ids are checked, as
//         the text comes back normalized).
//
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -o tests/build/fuzz_tokenizer tests/fuzz_tokenizer.c tokenizer.c -lm
//   tests/build/fuzz_tokenizer -max_total_time=60 tests/build/fuzz-corpus-tokenizer tests/fuzz/tokenizer
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz_tokenizer: %s:%d: broken: %s\n", __FILE__,   \
                    __LINE__, #cond);                                          \
            abort();                                                           \
        }                                                                      \
    } while (0)

static unsigned char *gpt2_section;
static Tokenizer *gpt2, *gpt2_heap, *gpt2_nocache;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *path = getenv("FUZZ_TOKENIZER");
    if (!path) path = "tests/build/fuzz-gpt2.tok";
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_tokenizer: cannot open %s (make it with: python3 export.py "
                        "--tokenizer-only tests/data/gpt2 tests/build/fuzz-gpt2.tok, or set FUZZ_TOKENIZER)\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    gpt2_section = malloc((size_t)n);
    if (!gpt2_section || fread(gpt2_section, 1, (size_t)n, f) != (size_t)n) exit(1);
    fclose(f);
    char err[256];
    gpt2 = tokenizer_load(gpt2_section, (size_t)n, err, sizeof err);
    gpt2_heap = tokenizer_load(gpt2_section, (size_t)n, err, sizeof err);
    gpt2_nocache = tokenizer_load(gpt2_section, (size_t)n, err, sizeof err);
    if (!gpt2 || !gpt2_heap || !gpt2_nocache) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err);
        exit(1);
    }
    tokenizer_set_options(gpt2_heap, 0, 1);
    tokenizer_set_options(gpt2_nocache, 48, 0);
    return 0;
}

// Encode, check ids and (unless `normalized`) the byte round trip after the
// BOS id; returns the ids (caller frees). normalized 2: a version-4 section
// (SentencePiece-style: "▁" put first, spaces as "▁", <unk>), whose ids are
// checked (in range, with bytes, at most 6 a byte) but not the text.
static TokenList encode_checked_as(Tokenizer *t, const unsigned char *b, size_t n, int special,
                                   int normalized) {
    TokenList ids = {0};
    REQUIRE(tokenizer_encode(t, b, n, special, &ids) == 0);
    size_t first = tokenizer_bos_id(t) >= 0;
    REQUIRE(ids.len >= first && (!first || ids.ids[0] == tokenizer_bos_id(t)));
    // NFC at most triples the bytes; version 4: a space is "▁" (3 byte tokens at worst), and a
    // "▁" is put before each stretch of text
    REQUIRE(ids.len - first <= (normalized == 2 ? 6 * n : normalized ? 3 * n : n));
    if (normalized == 2) {
        for (size_t i = first; i < ids.len; i++) {
            size_t l;
            REQUIRE(tokenizer_token(t, ids.ids[i], &l) != NULL && l > 0);
        }
        return ids;
    }
    unsigned char *back = malloc(3 * n + 1);
    size_t at = 0;
    for (size_t i = first; i < ids.len; i++) {
        size_t l;
        const unsigned char *tb = tokenizer_token(t, ids.ids[i], &l);
        REQUIRE(tb != NULL && l > 0 && at + l <= 3 * n);
        memcpy(back + at, tb, l);
        at += l;
    }
    REQUIRE(normalized || (at == n && memcmp(back, b, n) == 0));
    free(back);
    return ids;
}

static TokenList encode_checked(Tokenizer *t, const unsigned char *b, size_t n, int special) {
    return encode_checked_as(t, b, n, special, 0);
}

static int same_ids(const TokenList *a, const TokenList *b) {
    return a->len == b->len && (a->len == 0 || memcmp(a->ids, b->ids, a->len * sizeof(int)) == 0);
}

static void fuzz_text(const unsigned char *b, size_t n) {
    for (int special = 0; special <= 1; special++) {
        TokenList ids = encode_checked(gpt2, b, n, special);
        TokenList h = encode_checked(gpt2_heap, b, n, special);
        TokenList nc = encode_checked(gpt2_nocache, b, n, special);
        REQUIRE(same_ids(&ids, &h));
        REQUIRE(same_ids(&ids, &nc));
        // encoding twice (now from the word cache) gives the same ids
        TokenList again = encode_checked(gpt2, b, n, special);
        REQUIRE(same_ids(&ids, &again));
        // without special tokens, no special id comes out
        if (!special) {
            int eot = tokenizer_special_id(gpt2, "<|endoftext|>");
            for (size_t i = 0; i < ids.len; i++) REQUIRE(ids.ids[i] != eot);
        }
        // streaming UTF-8 decode of the token bytes gives back the text
        Utf8Stream s = {{0}, 0};
        unsigned char *out = malloc(n + 4);
        size_t at = 0;
        for (size_t i = 0; i < ids.len; i++) {
            size_t l;
            const unsigned char *tb = tokenizer_token(gpt2, ids.ids[i], &l);
            unsigned char *o = malloc(l + 4);  // exactly what the contract asks for
            size_t k = utf8_stream_push(&s, tb, l, o);
            REQUIRE(k <= l + 4 && at + k <= n);
            memcpy(out + at, o, k);
            at += k;
            free(o);
        }
        unsigned char tail[4];
        size_t k = utf8_stream_flush(&s, tail);
        REQUIRE(k <= 4 && at + k <= n);
        memcpy(out + at, tail, k);
        at += k;
        REQUIRE(at == n && memcmp(out, b, n) == 0);
        free(out);
        tokenlist_free(&ids);
        tokenlist_free(&h);
        tokenlist_free(&nc);
        tokenlist_free(&again);
    }
    // the raw bytes in chunks of 1..8 bytes (sizes taken from the bytes themselves)
    Utf8Stream s = {{0}, 0};
    unsigned char *out = malloc(n + 4);
    size_t at = 0, i = 0;
    while (i < n) {
        size_t chunk = 1 + (b[i] & 7);
        if (chunk > n - i) chunk = n - i;
        unsigned char *o = malloc(chunk + 4);
        size_t k = utf8_stream_push(&s, b + i, chunk, o);
        REQUIRE(k <= chunk + 4 && at + k <= n);
        memcpy(out + at, o, k);
        at += k;
        free(o);
        i += chunk;
    }
    unsigned char tail[4];
    size_t k = utf8_stream_flush(&s, tail);
    REQUIRE(at + k == n);
    memcpy(out + at, tail, k);
    REQUIRE(memcmp(out, b, n) == 0);
    free(out);
}

static void fuzz_section(const unsigned char *b, size_t n) {
    // an exact-size copy so that ASan catches any read past the section
    unsigned char *sec = malloc(n ? n : 1);
    memcpy(sec, b, n);
    char err[256];
    memset(err, 0, sizeof err);
    Tokenizer *t = tokenizer_load(sec, n, err, sizeof err);
    if (!t) {
        REQUIRE(err[0] != '\0');
        free(sec);
        return;
    }
    int nt = tokenizer_n_tokens(t);
    // The loader has checked the header: version 2 or 3 with normalizer 1 is NFC;
    // version 4 is SentencePiece-style (encode_checked_as's 2).
    uint32_t version = read_u32le(sec + 8);
    REQUIRE(nt >= (version == 4 ? 1 : 256));
    int nfc = version == 4 ? 2 : version >= 2 && read_u32le(sec + 32) == 1;
    size_t l;
    REQUIRE(tokenizer_token(t, -1, &l) == NULL && tokenizer_token(t, nt, &l) == NULL);
    static const char *texts[] = {"Hello world, it's <|endoftext|>!\n  x", "\xff\x00\xc3", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (int special = 0; special <= 1; special++) {
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            size_t len = k == 1 ? 3 : strlen(texts[k]);
            TokenList ids = encode_checked_as(t, (const unsigned char *)texts[k], len, special, nfc);
            tokenlist_free(&ids);
        }
        TokenList ids = encode_checked_as(t, sec, n, special, nfc);  // its own bytes as text
        tokenlist_free(&ids);
    }
    tokenizer_set_options(t, 0, 0);
    TokenList ids = encode_checked_as(t, sec, n, 1, nfc);
    tokenlist_free(&ids);
    tokenizer_free(t);
    free(sec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1) fuzz_section(data + 1, size - 1);
    else fuzz_text(data + 1, size - 1);
    return 0;
}
