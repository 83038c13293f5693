// test_tokenizer.c: unit tests and a driver for tokenizer.c.
//
//   test_tokenizer unit TOK             unit tests; ends with "N passed, N failed"
//   test_tokenizer encode TOK [--special]   stdin -> ids, space-separated, one line
//   test_tokenizer decode TOK           ids on stdin -> bytes (through the streaming decoder)
//   test_tokenizer split TOK            stdin -> byte lengths of the pre-tokens, one line
//   test_tokenizer cases TOK FILE [--split]
//       FILE holds cases, each "<special 0|1> <nbytes>\n" then nbytes of text;
//       prints one line per case: the ids (or, with --split, the pre-token lengths)
//   test_tokenizer classes TOK          "<hex first code point> <class>" at every class change
//   test_tokenizer nfc TOK              stdin -> its NFC (Unicode 16.0), bytes as they are
//   test_tokenizer bench TOK FILE REPEATS [--no-cache]
//       encodes FILE REPEATS times; prints "bytes tokens seconds..." (one per repeat)
//
// TOK is a tokenizer section file (tests/SPEC.md section 2).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenizer.h"

static int n_pass, n_fail;

static void check(int ok, const char *what) {
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        printf("  FAIL %s\n", what);
        fflush(stdout);
    }
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    if (f != stdin) fclose(f);
    *len = n;
    return buf;
}

// xorshift64* with a fixed seed per test.
static uint64_t rng_state;
static void rng_seed(uint64_t s) { rng_state = s * 0x9E3779B97F4A7C15ull + 1; }
static uint64_t rng_next(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static size_t rng_below(size_t n) { return (size_t)(rng_next() % n); }

// Concatenated bytes of ids; returns length (or SIZE_MAX on a bad id).
static size_t decode_all(const Tokenizer *t, const TokenList *l, unsigned char *out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < l->len; i++) {
        size_t k;
        const unsigned char *b = tokenizer_token(t, l->ids[i], &k);
        if (!b || k == 0 || n + k > cap) return SIZE_MAX;
        memcpy(out + n, b, k);
        n += k;
    }
    return n;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) need = 1;
        else if (c >= 0xC2 && c <= 0xDF) need = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else return 0;
        if (i + need > n) return 0;
        for (size_t k = 1; k < need; k++) {
            unsigned d = s[i + k];
            if (k == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80) return 0;
        }
        i += need;
    }
    return 1;
}

// ---------------------------------------------------------------------------
// A small synthetic section builder (for corrupt-section and general-vocab tests).

typedef struct {
    unsigned char *p;
    size_t len;
} Buf;

static void put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}
static uint32_t get32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// Tokens: 256 single bytes (id = byte), then extra[] (NUL-terminated strings).
// merges: triples of ids. specials: ids.
static Buf build_section(const char **extra, int n_extra, const uint32_t (*merges)[3], int n_merges,
                         const uint32_t *specials, int n_special) {
    uint32_t n = 256 + (uint32_t)n_extra;
    size_t blob = 256;
    for (int i = 0; i < n_extra; i++) blob += strlen(extra[i]);
    size_t len = 32 + 4 * ((size_t)n + 1) + 12 * (size_t)n_merges + 4 * (size_t)n_special + blob;
    Buf b = {calloc(1, len), len};
    memcpy(b.p, "GPT2TOK_", 8);
    put32(b.p + 8, 1);
    put32(b.p + 12, n);
    put32(b.p + 16, (uint32_t)n_merges);
    put32(b.p + 20, (uint32_t)n_special);
    put32(b.p + 24, (uint32_t)blob);
    unsigned char *offs = b.p + 32, *mp = offs + 4 * ((size_t)n + 1);
    unsigned char *sp = mp + 12 * (size_t)n_merges, *bl = sp + 4 * (size_t)n_special;
    uint32_t o = 0;
    for (uint32_t i = 0; i < n; i++) {
        put32(offs + 4 * i, o);
        if (i < 256) {
            bl[o++] = (unsigned char)i;
        } else {
            size_t k = strlen(extra[i - 256]);
            memcpy(bl + o, extra[i - 256], k);
            o += (uint32_t)k;
        }
    }
    put32(offs + 4 * n, o);
    for (int i = 0; i < n_merges; i++)
        for (int k = 0; k < 3; k++) put32(mp + 12 * i + 4 * k, merges[i][k]);
    for (int i = 0; i < n_special; i++) put32(sp + 4 * i, specials[i]);
    return b;
}

// ids 256.. : "ab" "abc" "th" " th" "the" " the" "<|endoftext|>" "aa" "aaaa" "<|x|>"
static const char *SMALL_EXTRA[] = {"ab", "abc", "th", " th", "the", " the", "<|endoftext|>",
                                    "aa", "aaaa", "<|x|>"};
static const uint32_t SMALL_MERGES[][3] = {
    {'a', 'b', 256}, {256, 'c', 257}, {'t', 'h', 258}, {' ', 258, 259}, {258, 'e', 260},
    {259, 'e', 261}, {'a', 'a', 263}, {263, 263, 264},
};
static const uint32_t SMALL_SPECIALS[] = {262, 265};

static Buf small_section(void) {
    return build_section(SMALL_EXTRA, 10, SMALL_MERGES, 8, SMALL_SPECIALS, 2);
}

// ---------------------------------------------------------------------------
// Unit tests

static const char *SAMPLE_TEXT =
    "Hello, world! It's a test: 123 + 4.5e6 = ?\n\tTabs\r\n and   spaces   \n"
    "Съешь же ещё этих мягких французских булок 漢字テキスト 한국어 العربية हिन्दी ไทย "
    "👨‍👩‍👧‍👦 👍🏽 🇺🇸 e\xcc\x81 <|endoftext|> the end   ";

static int try_load(const unsigned char *p, size_t len, char *err, size_t errlen) {
    Tokenizer *t = tokenizer_load(p, len, err, errlen);
    if (!t) return 0;
    // A section that loads must also encode and round-trip.
    TokenList l = {0};
    size_t n = strlen(SAMPLE_TEXT);
    int ok = tokenizer_encode(t, (const unsigned char *)SAMPLE_TEXT, n, 1, &l) == 0;
    unsigned char *buf = malloc(4 * n + 64);
    ok = ok && decode_all(t, &l, buf, 4 * n + 64) == n && memcmp(buf, SAMPLE_TEXT, n) == 0;
    free(buf);
    tokenlist_free(&l);
    tokenizer_free(t);
    return ok ? 1 : -1;
}

static void test_corrupt(const unsigned char *sec, size_t len) {
    char err[256], what[160];
    unsigned char *p = malloc(len);
    // Truncation at many lengths: always a size mismatch.
    int all_rejected = 1, all_msgs = 1;
    for (size_t k = 0; k < len; k += (k < 4096 ? 1 : 997 + rng_below(4000))) {
        err[0] = 0;
        if (tokenizer_load(sec, k, err, sizeof err)) all_rejected = 0;
        if (!err[0]) all_msgs = 0;
    }
    if (tokenizer_load(sec, len - 1, err, sizeof err)) all_rejected = 0;
    check(all_rejected, "every truncated section is rejected");
    check(all_msgs, "every rejection has a message");
    // Length one byte too long.
    unsigned char *q = calloc(1, len + 1);
    memcpy(q, sec, len);
    check(!tokenizer_load(q, len + 1, err, sizeof err), "section with a trailing byte is rejected");
    free(q);
    check(!tokenizer_load(NULL, 0, err, sizeof err), "NULL section is rejected");

    uint32_t n_tokens = get32(sec + 12), n_merges = get32(sec + 16), n_special = get32(sec + 20);
    size_t offs = 32, mp = offs + 4 * ((size_t)n_tokens + 1), sp = mp + 12 * (size_t)n_merges;
    struct {
        size_t at;
        uint32_t val;
        const char *what;
    } edits[] = {
        {0, 0x58585858u, "bad magic"},
        {8, 2, "version 2"},
        {28, 1, "reserved field set"},
        {12, 255, "n_tokens below 256"},
        {12, 0xFFFFFFFFu, "n_tokens huge"},
        {12, n_tokens + 1, "n_tokens off by one"},
        {16, n_merges + 1, "n_merges off by one"},
        {16, 0xFFFFFFFFu, "n_merges huge"},
        {20, n_special + 1, "n_special off by one"},
        {24, get32(sec + 24) + 1, "blob_bytes off by one"},
        {offs, 1, "token_offsets[0] not 0"},
        {offs + 4 * 100, get32(sec + offs + 4 * 99) - 1, "token_offsets decreasing"},
        {offs + 4 * 100, 0xFFFFFFF0u, "token_offset past the blob"},
        {offs + 4 * (size_t)n_tokens, get32(sec + offs + 4 * (size_t)n_tokens) - 1,
         "last token_offset != blob_bytes"},
        {mp, n_tokens, "merge left id out of range"},
        {mp + 4, 0xFFFFFFFFu, "merge right id out of range"},
        {mp + 8, n_tokens + 5, "merged id out of range"},
        {mp + 8, 'a', "merged bytes not the concatenation"},
        {mp, 'q', "merge left part wrong"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof edits[0]; e++) {
        memcpy(p, sec, len);
        put32(p + edits[e].at, edits[e].val);
        err[0] = 0;
        Tokenizer *t = tokenizer_load(p, len, err, sizeof err);
        snprintf(what, sizeof what, "corrupt section rejected: %s", edits[e].what);
        check(t == NULL && err[0] != 0, what);
        tokenizer_free(t);
    }
    if (n_special) {
        memcpy(p, sec, len);
        put32(p + sp, n_tokens);
        check(!tokenizer_load(p, len, err, sizeof err), "special id out of range is rejected");
    }
    // A missing single-byte token: make the token of byte 'A' two bytes long by
    // moving its end offset (the next token loses a byte).
    {
        memcpy(p, sec, len);
        int id = -1;
        for (uint32_t i = 0; i < n_tokens && id < 0; i++) {
            uint32_t o = get32(sec + offs + 4 * i), e = get32(sec + offs + 4 * i + 4);
            if (e - o == 1 && sec[len - get32(sec + 24) + o] == 'A') id = (int)i;
        }
        if (id >= 0) {
            put32(p + offs + 4 * (size_t)id + 4, get32(sec + offs + 4 * (size_t)id + 4) + 1);
            Tokenizer *t = tokenizer_load(p, len, err, sizeof err);
            check(t == NULL, "vocabulary missing a single-byte token is rejected");
            tokenizer_free(t);
        }
    }
    free(p);
}

static void test_fuzz_small(void) {
    Buf b = small_section();
    char err[256];
    check(try_load(b.p, b.len, err, sizeof err) == 1, "synthetic section loads and round-trips");
    unsigned char *p = malloc(b.len);
    int bad = 0;
    rng_seed(77);
    for (int trial = 0; trial < 20000; trial++) {
        memcpy(p, b.p, b.len);
        int flips = 1 + (int)rng_below(4);
        for (int f = 0; f < flips; f++) {
            size_t at = rng_below(b.len);
            if (rng_below(2)) p[at] ^= (unsigned char)(1u << rng_below(8));
            else p[at] = (unsigned char)rng_next();
        }
        if (try_load(p, b.len, err, sizeof err) < 0) bad++;
    }
    check(bad == 0, "20,000 randomly corrupted small sections: no crash, loaded ones round-trip");
    free(p);
    free(b.p);
}

static void test_synthetic_vocab(void) {
    Buf b = small_section();
    char err[256];
    Tokenizer *t = tokenizer_load(b.p, b.len, err, sizeof err);
    check(t != NULL, "synthetic vocabulary loads");
    if (!t) return;
    check(tokenizer_n_tokens(t) == 266, "synthetic n_tokens");
    check(tokenizer_special_id(t, "<|endoftext|>") == 262, "synthetic special id");
    check(tokenizer_special_id(t, "<|x|>") == 265, "second special id");
    TokenList l = {0};
    const char *s = "abcabc the";
    tokenizer_encode(t, (const unsigned char *)s, strlen(s), 0, &l);
    check(l.len == 3 && l.ids[0] == 257 && l.ids[1] == 257 && l.ids[2] == 261,
          "synthetic BPE merges by rank: \"abcabc the\"");
    l.len = 0;
    s = "aaaaa";  // (a,a) merges leftmost first: aa aa a -> aaaa a
    tokenizer_encode(t, (const unsigned char *)s, strlen(s), 0, &l);
    check(l.len == 2 && l.ids[0] == 264 && l.ids[1] == 'a', "equal-rank pairs merge leftmost first");
    l.len = 0;
    s = "x<|x|>y<|endoftext|>";
    tokenizer_encode(t, (const unsigned char *)s, strlen(s), 1, &l);
    check(l.len == 4 && l.ids[1] == 265 && l.ids[3] == 262, "two special tokens recognised");
    l.len = 0;
    tokenizer_encode(t, (const unsigned char *)s, strlen(s), 0, &l);
    check(l.len > 4, "special tokens are plain text by default");
    tokenlist_free(&l);
    tokenizer_free(t);
    free(b.p);
}

// Pre-tokenization of invalid UTF-8 is our own definition (the references take
// only Unicode strings), so these expectations are written here.
static void test_invalid_utf8_split(Tokenizer *t) {
    struct {
        const char *text;
        size_t len;
        const char *pieces;  // lengths, e.g. "1,2"
    } cases[] = {
        {"\xff\xfe!", 3, "3"},
        {" \xff", 2, "2"},
        {"a\xff" "b", 3, "1,1,1"},
        {"ab\xe4\xbd", 4, "2,2"},          // truncated 3-byte sequence: two O bytes
        {"\xe4\xbd\xa0\xe4\xbd", 5, "3,2"},  // 你 (L) then a truncated one
        {"\xed\xa0\x80x", 4, "3,1"},       // encoded surrogate: three O bytes
        {"\xc0\xaf!", 3, "3"},             // overlong
        {"\xf4\x90\x80\x80", 4, "4"},      // above U+10FFFF
        {"1\x80" "2", 3, "1,1,1"},
        {"  \xff", 3, "1,2"},
        {"\xff  ", 3, "1,2"},
        {"'s\xff", 3, "2,1"},
        {"\xff's", 3, "2,1"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char got[64] = "";
        size_t pos = 0, n = cases[c].len;
        const unsigned char *s = (const unsigned char *)cases[c].text;
        while (pos < n) {
            size_t e = tokenizer_next_piece(t, s, n, pos);
            if (e <= pos || e > n) break;
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", pos ? "," : "", e - pos);
            pos = e;
        }
        char what[128];
        snprintf(what, sizeof what, "invalid UTF-8 split case %zu: want %s got %s", c,
                 cases[c].pieces, got);
        check(strcmp(got, cases[c].pieces) == 0, what);
    }
}

static const char *FRAGMENTS[] = {
    "a", "Z", "7", " ", "  ", "\t", "\n", "\r\n", "'", "'s", "'ll", "'T", "!", ".", ",", "<|endoftext|>",
    "<|", "|>", "\xc3\xa9", "\xc3", "\xa9", "\xe6\xbc\xa2", "\xe6\xbc", "\xf0\x9f\x98\x80", "\xf0\x9f",
    "\xe2\x80\x8d", "\xc2\xa0", "\xe3\x80\x80", "\xff", "\xfe", "\x80", "\xc0\x80", "\xed\xa0\x80",
    "\xf4\x90\x80\x80", "\x00", "\xd9\xa3", "\xe2\x85\xab", "\xc2\xb2", "\xcc\x81", "the", " the",
};

static size_t random_bytes(unsigned char *buf, size_t max, int mode) {
    size_t n = 0, target = rng_below(max);
    if (mode == 0) {  // uniform random bytes
        for (; n < target; n++) buf[n] = (unsigned char)rng_next();
        return n;
    }
    while (n < target) {  // fragments of interesting byte sequences
        const char *f = FRAGMENTS[rng_below(sizeof FRAGMENTS / sizeof FRAGMENTS[0])];
        size_t k = strlen(f);
        if (f[0] == 0) k = 1;
        if (n + k > max) break;
        memcpy(buf + n, f, k);
        n += k;
    }
    return n;
}

static void test_round_trip(Tokenizer *t) {
    enum { MAX = 300 };
    unsigned char in[MAX + 16], out[4 * MAX + 64];
    TokenList l = {0};
    int fails = 0, cover_fails = 0;
    for (int i = 0; i < 100000; i++) {
        rng_seed(1000003u + (uint64_t)i);
        int mode = i % 2, special = (i / 2) % 2;
        size_t n = random_bytes(in, i % 100 == 0 ? MAX : 64, mode);
        l.len = 0;
        if (tokenizer_encode(t, in, n, special, &l) != 0) {
            fails++;
            continue;
        }
        size_t m = decode_all(t, &l, out, sizeof out);
        if (m != n || memcmp(in, out, n) != 0) fails++;
        // The pre-tokens cover the input with non-empty pieces.
        size_t pos = 0;
        while (pos < n) {
            size_t e = tokenizer_next_piece(t, in, n, pos);
            if (e <= pos || e > n) {
                cover_fails++;
                break;
            }
            pos = e;
        }
    }
    check(fails == 0, "100,000 random byte strings round-trip (decode(encode(b)) == b)");
    check(cover_fails == 0, "pre-tokens of random byte strings are non-empty and cover the input");
    tokenlist_free(&l);
}

static void test_bpe_paths(Tokenizer *t) {
    // Direct scan, heap and cache must agree on every piece length.
    static unsigned char buf[20000];
    TokenList a = {0}, b = {0}, c = {0};
    int bad = 0;
    const char *alpha[] = {"abcdefghijklmnopqrstuvwxyz", "aaaaab", "the ", "0123456789", "!?.,",
                           "\xd0\xb0\xd0\xb1\xd0\xb2\xd0\xb3"};
    for (int i = 0; i < 600; i++) {
        rng_seed(555u + (uint64_t)i);
        const char *al = alpha[i % 6];
        size_t k = strlen(al), n = 1 + rng_below(i < 500 ? 120 : 3000);
        size_t len = 0;
        for (size_t j = 0; j < n; j++) {
            if (i % 6 == 5) {  // two-byte Cyrillic letters
                size_t at = 2 * rng_below(k / 2);
                buf[len++] = (unsigned char)al[at];
                buf[len++] = (unsigned char)al[at + 1];
            } else {
                buf[len++] = (unsigned char)al[rng_below(k)];
            }
        }
        a.len = b.len = c.len = 0;
        tokenizer_set_options(t, (size_t)-1, 0);
        tokenizer_encode(t, buf, len, 0, &a);
        tokenizer_set_options(t, 0, 0);
        tokenizer_encode(t, buf, len, 0, &b);
        tokenizer_set_options(t, 48, 1);
        tokenizer_encode(t, buf, len, 0, &c);
        tokenizer_encode(t, buf, len, 0, &c);  // second time from the cache
        if (a.len != b.len || 2 * a.len != c.len || memcmp(a.ids, b.ids, a.len * sizeof(int)) ||
            memcmp(a.ids, c.ids, a.len * sizeof(int)) ||
            memcmp(a.ids, c.ids + a.len, a.len * sizeof(int)))
            bad++;
    }
    check(bad == 0, "direct-scan BPE, heap BPE and the cache give the same ids");
    // A 20,000-byte word through the heap path is quick.
    for (size_t j = 0; j < sizeof buf; j++) buf[j] = (unsigned char)"abcdefghij"[rng_below(10)];
    clock_t t0 = clock();
    a.len = 0;
    tokenizer_encode(t, buf, sizeof buf, 0, &a);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    check(secs < 0.5, "a 20,000-byte word encodes in well under a second");
    tokenlist_free(&a);
    tokenlist_free(&b);
    tokenlist_free(&c);
}

static void test_stream(Tokenizer *t) {
    Utf8Stream s = {{0}, 0};
    unsigned char out[64];
    size_t n;
    n = utf8_stream_push(&s, (const unsigned char *)"\xe4", 1, out);
    check(n == 0, "stream holds a lead byte");
    n = utf8_stream_push(&s, (const unsigned char *)"\xbd", 1, out);
    check(n == 0, "stream holds two bytes of three");
    n = utf8_stream_push(&s, (const unsigned char *)"\xa0x", 2, out);
    check(n == 4 && memcmp(out, "\xe4\xbd\xa0x", 4) == 0, "stream emits the completed character");
    n = utf8_stream_push(&s, (const unsigned char *)"\xe4" "A", 2, out);
    check(n == 2 && memcmp(out, "\xe4" "A", 2) == 0, "broken sequence passes through");
    n = utf8_stream_push(&s, (const unsigned char *)"\xff\x80", 2, out);
    check(n == 2 && memcmp(out, "\xff\x80", 2) == 0, "never-valid bytes pass through at once");
    n = utf8_stream_push(&s, (const unsigned char *)"\xed\xa0", 2, out);
    check(n == 2 && s.n_held == 0, "encoded surrogate is not held");
    n = utf8_stream_push(&s, (const unsigned char *)"\xf0\x9f", 2, out);
    check(n == 0 && s.n_held == 2, "4-byte prefix held");
    n = utf8_stream_flush(&s, out);
    check(n == 2 && memcmp(out, "\xf0\x9f", 2) == 0 && s.n_held == 0, "flush emits held bytes");
    n = utf8_stream_flush(&s, out);
    check(n == 0, "second flush is empty");

    // Token by token over multilingual text: output is the input, and every
    // chunk of valid text is whole characters.
    const char *text = SAMPLE_TEXT;
    TokenList l = {0};
    tokenizer_encode(t, (const unsigned char *)text, strlen(text), 0, &l);
    unsigned char acc[4096], chunk[256];
    size_t m = 0;
    int chunks_ok = 1;
    Utf8Stream st = {{0}, 0};
    for (size_t i = 0; i < l.len; i++) {
        size_t k;
        const unsigned char *b = tokenizer_token(t, l.ids[i], &k);
        size_t w = utf8_stream_push(&st, b, k, chunk);
        if (!valid_utf8(chunk, w)) chunks_ok = 0;
        memcpy(acc + m, chunk, w);
        m += w;
    }
    m += utf8_stream_flush(&st, acc + m);
    check(m == strlen(text) && memcmp(acc, text, m) == 0, "streamed tokens reassemble the text");
    check(chunks_ok, "streamed chunks are whole UTF-8 characters");
    tokenlist_free(&l);

    // Random byte streams, pushed in random pieces.
    int bad = 0, partial = 0;
    for (int i = 0; i < 20000; i++) {
        rng_seed(4242u + (uint64_t)i);
        unsigned char in[200], got[260];
        size_t n_in = random_bytes(in, 200, i % 2), g = 0, pos = 0;
        Utf8Stream z = {{0}, 0};
        while (pos < n_in) {
            size_t k = 1 + rng_below(6);
            if (k > n_in - pos) k = n_in - pos;
            size_t w = utf8_stream_push(&z, in + pos, k, got + g);
            if (valid_utf8(in, n_in) && !valid_utf8(got + g, w)) partial++;
            g += w;
            pos += k;
        }
        g += utf8_stream_flush(&z, got + g);
        if (g != n_in || memcmp(got, in, n_in) != 0) bad++;
    }
    check(bad == 0, "20,000 random streams: output bytes == input bytes");
    check(partial == 0, "valid UTF-8 streams never emit a partial character");
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

// The version 1 section v1 rewritten as version 2 (tests/SPEC.md section 2)
// with the normalizer, bos_id and the same flags for every added token.
static unsigned char *to_v2(const unsigned char *v1, size_t len, uint32_t normalizer, int32_t bos,
                            uint32_t flags, size_t *out_len) {
    uint32_t n_tokens = read_u32le(v1 + 12), n_merges = read_u32le(v1 + 16), n_special = read_u32le(v1 + 20);
    size_t table = 4 * ((size_t)n_tokens + 1) + 12 * (size_t)n_merges;
    size_t blob = len - 32 - table - 4 * (size_t)n_special;
    *out_len = 48 + table + 8 * (size_t)n_special + blob;
    unsigned char *p = calloc(1, *out_len);
    memcpy(p, v1, 32);
    put_u32(p + 8, 2);
    put_u32(p + 32, normalizer);
    put_u32(p + 36, (uint32_t)bos);
    memcpy(p + 48, v1 + 32, table);
    for (uint32_t i = 0; i < n_special; i++) {
        put_u32(p + 48 + table + 8 * (size_t)i, read_u32le(v1 + 32 + table + 4 * (size_t)i));
        put_u32(p + 48 + table + 8 * (size_t)i + 4, flags);
    }
    memcpy(p + 48 + table + 8 * (size_t)n_special, v1 + 32 + table + 4 * (size_t)n_special, blob);
    return p;
}

static int encode_eq(Tokenizer *a, Tokenizer *b, const char *text, int special, int skip_first) {
    TokenList x = {0}, y = {0};
    tokenizer_encode(a, (const unsigned char *)text, strlen(text), special, &x);
    tokenizer_encode(b, (const unsigned char *)text, strlen(text), special, &y);
    int ok = x.len == y.len + (size_t)skip_first &&
             (y.len == 0 || memcmp(x.ids + skip_first, y.ids, y.len * sizeof(int)) == 0);
    tokenlist_free(&x);
    tokenlist_free(&y);
    return ok;
}

static int load_fails_with(const unsigned char *p, size_t len, const char *needle) {
    char err[256];
    Tokenizer *t = tokenizer_load(p, len, err, sizeof err);
    tokenizer_free(t);
    return !t && strstr(err, needle) != NULL;
}

// Section version 2 built from GPT-2's: the same ids where nothing of version 2
// is used; BOS, non-special added tokens, NFC, the loader's checks.
static void test_version2(Tokenizer *v1, const unsigned char *sec, size_t len) {
    size_t n;
    char err[256];
    const char *texts[] = {"Hello<|endoftext|> world", "x <|endoftext|><|endoftext|>y", "caf\xc3\xa9 ok", ""};
    unsigned char *p = to_v2(sec, len, 0, -1, 1, &n);
    Tokenizer *t = tokenizer_load(p, n, err, sizeof err);
    check(t != NULL, "v2: GPT-2's section as version 2 loads");
    if (!t) {
        printf("  load error: %s\n", err);
        free(p);
        return;
    }
    int same = 1;
    for (int i = 0; i < 4; i++)
        for (int sp = 0; sp < 2; sp++) same &= encode_eq(t, v1, texts[i], sp, 0);
    check(same, "v2 with special tokens only, no normalizer, no BOS: version 1's ids");
    check(tokenizer_bos_id(t) == -1, "v2 without BOS: tokenizer_bos_id is -1");
    tokenizer_free(t);
    free(p);

    p = to_v2(sec, len, 0, 50256, 1, &n);
    t = tokenizer_load(p, n, err, sizeof err);
    same = t != NULL;
    for (int i = 0; t && i < 4; i++)
        for (int sp = 0; sp < 2; sp++) same &= encode_eq(t, v1, texts[i], sp, 1);
    check(same, "v2 with bos_id: the BOS id, then version 1's ids (an empty text too)");
    TokenList l = {0};
    if (t) {
        tokenizer_encode(t, (const unsigned char *)"", 0, 0, &l);
        check(l.len == 1 && l.ids[0] == 50256 && tokenizer_bos_id(t) == 50256, "v2: empty text gives [BOS]");
        l.len = 0;
        tokenizer_encode_continuation(t, (const unsigned char *)"Hi", 2, 0, &l);
        check(l.len == 1 && l.ids[0] != 50256, "v2: tokenizer_encode_continuation adds no BOS");
    }
    tokenizer_free(t);
    free(p);

    p = to_v2(sec, len, 0, -1, 0, &n);  // <|endoftext|> as an added token that is not special
    t = tokenizer_load(p, n, err, sizeof err);
    if (t) {
        l.len = 0;
        tokenizer_encode(t, (const unsigned char *)"a<|endoftext|>b", 15, 0, &l);
        check(l.len == 3 && l.ids[1] == 50256 && tokenizer_special_id(t, "<|endoftext|>") == -1,
              "v2: a non-special added token is matched without --special, and is not a special id");
    } else {
        check(0, "v2 with a non-special added token loads");
    }
    tokenizer_free(t);
    free(p);

    p = to_v2(sec, len, 1, -1, 3, &n);  // NFC; <|endoftext|> special, matched after NFC
    t = tokenizer_load(p, n, err, sizeof err);
    if (t) {
        TokenList a = {0}, b = {0};
        tokenizer_encode(t, (const unsigned char *)"cafe\xcc\x81 A\xcc\x8a<|endoftext|>", 23, 1, &a);
        tokenizer_encode(v1, (const unsigned char *)"caf\xc3\xa9 \xc3\x85<|endoftext|>", 21, 1, &b);
        check(a.len == b.len && memcmp(a.ids, b.ids, a.len * sizeof(int)) == 0,
              "v2 NFC: decomposed text gives the ids of the composed text");
        tokenlist_free(&a);
        tokenlist_free(&b);
    } else {
        check(0, "v2 with NFC loads");
    }
    tokenizer_free(t);
    free(p);
    tokenlist_free(&l);

    // The loader's checks.
    p = to_v2(sec, len, 2, -1, 1, &n);
    check(load_fails_with(p, n, "unknown normalizer 2"), "v2: an unknown normalizer is refused");
    free(p);
    p = to_v2(sec, len, 0, -1, 4, &n);
    check(load_fails_with(p, n, "unknown flags 0x4"), "v2: unknown added-token flags are refused");
    free(p);
    p = to_v2(sec, len, 0, 50257, 1, &n);
    check(load_fails_with(p, n, "bos_id 50257"), "v2: a bos_id out of range is refused");
    free(p);
    p = to_v2(sec, len, 0, -2, 1, &n);
    check(load_fails_with(p, n, "bos_id -2"), "v2: a negative bos_id other than -1 is refused");
    free(p);
    p = to_v2(sec, len, 0, -1, 1, &n);
    put_u32(p + 44, 1);
    check(load_fails_with(p, n, "reserved"), "v2: a nonzero reserved field is refused");
    put_u32(p + 44, 0);
    check(load_fails_with(p, n - 1, "size mismatch"), "v2: a section one byte short is refused");
    check(load_fails_with(p, 40, "too short"), "v2: a section shorter than its header is refused");
    put_u32(p + 8, 5);
    check(load_fails_with(p, n, "unsupported version 5"), "version 5 is refused");
    put_u32(p + 8, 4);  // a version 2 section read as version 4 (a 64-byte header)
    check(load_fails_with(p, n, "tokenizer section: "), "a version-2 section labelled version 4 is refused");
    free(p);
}

// Pieces of `text` under t's pre-tokenizer: how many, and whether every one
// holding a digit is at most `max_digits` digits and nothing else.
static int digit_pieces_ok(const Tokenizer *t, const char *text, size_t max_digits) {
    size_t len = strlen(text), i = 0;
    while (i < len) {
        size_t e = tokenizer_next_piece(t, (const unsigned char *)text, len, i);
        size_t digits = 0;
        for (size_t k = i; k < e; k++) digits += text[k] >= '0' && text[k] <= '9';
        if (digits && (digits != e - i || digits > max_digits)) return 0;
        i = e;
    }
    return 1;
}

// Section version 3 built from GPT-2's: zero fields give version 1's ids;
// each pre-tokenizer kind keeps its numbers as the pattern says; the loader's
// checks of the new fields.
static void test_version3(Tokenizer *v1, const unsigned char *sec, size_t len) {
    size_t n;
    char err[256];
    const char *texts[] = {"Hello<|endoftext|> world", "x 12345 <|endoftext|>y", "caf\xc3\xa9 ok", ""};
    unsigned char *p = to_v2(sec, len, 0, -1, 1, &n);
    put_u32(p + 8, 3);
    Tokenizer *t = tokenizer_load(p, n, err, sizeof err);
    check(t != NULL, "v3: GPT-2's section as version 3 (pre-tokenizer 0, no flags) loads");
    if (t) {
        int same = 1;
        for (int i = 0; i < 4; i++)
            for (int sp = 0; sp < 2; sp++) same &= encode_eq(t, v1, texts[i], sp, 0);
        check(same, "v3 with pre-tokenizer 0 and no flags: version 1's ids");
        tokenizer_free(t);
    }
    // Numbers: GPT-2's pattern keeps a run whole (with its space), Llama-3's
    // splits it into pieces of at most 3 digits, Qwen2's and SmolLM2's into single digits.
    const char *num = "a 1234567 x12 (99999)\n 3.14159 '12";
    static const size_t max_digits[4] = {0, 3, 1, 1};
    for (uint32_t kind = 1; kind <= 3; kind++) {
        put_u32(p + 40, kind);
        t = tokenizer_load(p, n, err, sizeof err);
        char what[96];
        snprintf(what, sizeof what, "v3 pre-tokenizer %u: numbers in pieces of at most %zu digits", kind,
                 max_digits[kind]);
        check(t && digit_pieces_ok(t, num, max_digits[kind]), what);
        if (t) {
            TokenList l = {0};
            unsigned char back[128];
            tokenizer_encode(t, (const unsigned char *)num, strlen(num), 0, &l);
            size_t k = decode_all(t, &l, back, sizeof back);
            snprintf(what, sizeof what, "v3 pre-tokenizer %u: the text round-trips", kind);
            check(k == strlen(num) && memcmp(back, num, k) == 0, what);
            tokenlist_free(&l);
        }
        tokenizer_free(t);
    }
    put_u32(p + 40, 0);
    // ignore_merges: the ids still decode to the text.
    put_u32(p + 44, 1);
    t = tokenizer_load(p, n, err, sizeof err);
    check(t != NULL, "v3 with ignore_merges loads");
    if (t) {
        TokenList l = {0};
        unsigned char back[128];
        const char *x = "Hello world, it's ignore_merges 1234!";
        tokenizer_encode(t, (const unsigned char *)x, strlen(x), 0, &l);
        size_t k = decode_all(t, &l, back, sizeof back);
        check(k == strlen(x) && memcmp(back, x, k) == 0, "v3 ignore_merges: the text round-trips");
        tokenlist_free(&l);
        tokenizer_free(t);
    }
    put_u32(p + 44, 0);
    put_u32(p + 40, 4);
    check(load_fails_with(p, n, "unknown pre-tokenizer 4"), "v3: an unknown pre-tokenizer is refused");
    put_u32(p + 40, 0);
    put_u32(p + 44, 2);
    check(load_fails_with(p, n, "unknown flags 0x2"), "v3: unknown section flags are refused");
    put_u32(p + 44, 0);
    uint32_t n_tokens = read_u32le(p + 12), n_merges = read_u32le(p + 16);
    unsigned char *flag0 = p + 48 + 4 * ((size_t)n_tokens + 1) + 12 * (size_t)n_merges + 4;
    put_u32(flag0, 5);
    check(load_fails_with(p, n, "without ignore_merges"),
          "v3: added-token flag 4 (in the vocabulary) without ignore_merges is refused");
    put_u32(p + 44, 1);
    t = tokenizer_load(p, n, err, sizeof err);
    check(t != NULL, "v3: added-token flag 4 with ignore_merges loads");
    tokenizer_free(t);
    put_u32(flag0, 9);
    check(load_fails_with(p, n, "unknown flags 0x9"), "v3: unknown added-token flags are refused");
    free(p);
}

static int run_unit(const char *tokpath) {
    size_t len;
    unsigned char *sec = read_file(tokpath, &len);
    if (!sec) {
        printf("  FAIL cannot read %s\n", tokpath);
        printf("0 passed, 1 failed\n");
        return 1;
    }
    char err[256];
    Tokenizer *t = tokenizer_load(sec, len, err, sizeof err);
    check(t != NULL, "GPT-2 tokenizer section loads");
    if (!t) {
        printf("  load error: %s\n", err);
        printf("%d passed, %d failed\n", n_pass, n_fail);
        return 1;
    }
    check(strcmp(tokenizer_unicode_version(), "16.0.0") == 0, "Unicode table version 16.0.0");
    check(tokenizer_n_tokens(t) == 50257, "GPT-2 has 50257 tokens");
    check(tokenizer_special_id(t, "<|endoftext|>") == 50256, "<|endoftext|> is id 50256");
    check(tokenizer_special_id(t, "<|endoftext") == -1, "no special id for a prefix");
    size_t k;
    check(tokenizer_token(t, -1, &k) == NULL && tokenizer_token(t, 50257, &k) == NULL,
          "out-of-range ids give NULL");
    const unsigned char *eb = tokenizer_token(t, 50256, &k);
    check(eb && k == 13 && memcmp(eb, "<|endoftext|>", 13) == 0, "special token bytes");
    int bytes_ok = 1;
    TokenList l = {0};
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        l.len = 0;
        tokenizer_encode(t, &c, 1, 0, &l);
        const unsigned char *tb = l.len == 1 ? tokenizer_token(t, l.ids[0], &k) : NULL;
        if (!tb || k != 1 || tb[0] != c) bytes_ok = 0;
    }
    check(bytes_ok, "each single byte encodes to its byte token");
    l.len = 0;
    check(tokenizer_encode(t, (const unsigned char *)"", 0, 1, &l) == 0 && l.len == 0,
          "empty text gives no ids");
    tokenlist_free(&l);
    check(tokenizer_char_class(t, 'a') == 'L' && tokenizer_char_class(t, '7') == 'N' &&
              tokenizer_char_class(t, 0x3000) == 'S' && tokenizer_char_class(t, '!') == 'O' &&
              tokenizer_char_class(t, 0xD800) == 'O' && tokenizer_char_class(t, 0x110000) == 'O',
          "character classes of a few code points");

    test_invalid_utf8_split(t);
    test_version2(t, sec, len);
    test_version3(t, sec, len);
    test_round_trip(t);
    test_bpe_paths(t);
    test_stream(t);
    test_synthetic_vocab();
    rng_seed(99);
    test_corrupt(sec, len);
    Buf b = small_section();
    test_corrupt(b.p, b.len);
    free(b.p);
    test_fuzz_small();
    // A few random corruptions of the real section too.
    {
        unsigned char *p = malloc(len);
        int bad = 0;
        rng_seed(31337);
        for (int trial = 0; trial < 150; trial++) {
            memcpy(p, sec, len);
            for (int f = 0; f < 3; f++) {
                size_t at = trial % 3 == 0 ? rng_below(32 + 4 * 300) : rng_below(len);
                p[at] ^= (unsigned char)(1u << rng_below(8));
            }
            if (try_load(p, len, err, sizeof err) < 0) bad++;
        }
        check(bad == 0, "150 corrupted GPT-2 sections: no crash, loaded ones round-trip");
        free(p);
    }
    tokenizer_free(t);
    free(sec);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

// ---------------------------------------------------------------------------
// Driver modes

static size_t sec_len;

static Tokenizer *load_or_die(const char *path, unsigned char **sec) {
    size_t len;
    *sec = read_file(path, &len);
    sec_len = len;
    if (!*sec) {
        fprintf(stderr, "test_tokenizer: cannot read %s\n", path);
        exit(3);
    }
    char err[256];
    Tokenizer *t = tokenizer_load(*sec, len, err, sizeof err);
    if (!t) {
        fprintf(stderr, "test_tokenizer: %s: %s\n", path, err);
        exit(3);
    }
    return t;
}

static void print_ids(const TokenList *l, FILE *f) {
    for (size_t i = 0; i < l->len; i++) fprintf(f, i ? " %d" : "%d", l->ids[i]);
    fputc('\n', f);
}

static void print_split(const Tokenizer *t, const unsigned char *s, size_t n, FILE *f) {
    size_t pos = 0;
    while (pos < n) {
        size_t e = tokenizer_next_piece(t, s, n, pos);
        fprintf(f, pos ? " %zu" : "%zu", e - pos);
        pos = e;
    }
    fputc('\n', f);
}

static double now(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);  // C11
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_tokenizer unit|encode|decode|decodes|split|cases|classes|nfc|bench TOK ...\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "unit") == 0) return run_unit(argv[2]);
    unsigned char *sec;
    Tokenizer *t = load_or_die(argv[2], &sec);
    TokenList l = {0};
    if (strcmp(mode, "encode") == 0 || strcmp(mode, "split") == 0) {
        size_t n;
        unsigned char *in = read_file("-", &n);
        if (mode[0] == 's') {
            print_split(t, in, n, stdout);
        } else {
            int special = argc > 3 && strcmp(argv[3], "--special") == 0;
            if (tokenizer_encode(t, in, n, special, &l)) return 1;
            print_ids(&l, stdout);
        }
        free(in);
    } else if (strcmp(mode, "decode") == 0) {
        Utf8Stream s = {{0}, 0};
        int id;
        unsigned char out[1024];
        while (scanf("%d", &id) == 1) {
            size_t k;
            const unsigned char *b = tokenizer_token(t, id, &k);
            if (!b) {
                fprintf(stderr, "test_tokenizer: bad id %d\n", id);
                return 4;
            }
            while (k > 0) {
                size_t c = k > 512 ? 512 : k;
                fwrite(out, 1, utf8_stream_push(&s, b, c, out), stdout);
                b += c;
                k -= c;
            }
        }
        fwrite(out, 1, utf8_stream_flush(&s, out), stdout);
    } else if (strcmp(mode, "cases") == 0 && argc > 3) {
        size_t n;
        unsigned char *in = read_file(argv[3], &n);
        if (!in) {
            fprintf(stderr, "test_tokenizer: cannot read %s\n", argv[3]);
            return 1;
        }
        int split = argc > 4 && strcmp(argv[4], "--split") == 0;
        // --heap: every piece through the heap BPE, no word cache (the same ids)
        if (argc > 4 && strcmp(argv[4], "--heap") == 0) tokenizer_set_options(t, 0, 0);
        size_t pos = 0;
        while (pos < n) {
            int special;
            unsigned long len;
            int used;
            if (sscanf((const char *)in + pos, "%d %lu%n", &special, &len, &used) != 2) break;
            pos += (size_t)used + 1;  // the newline
            if (len > n - pos) break;
            if (split) {
                print_split(t, in + pos, len, stdout);
            } else {
                l.len = 0;
                if (tokenizer_encode(t, in + pos, len, special, &l)) return 1;
                print_ids(&l, stdout);
            }
            pos += len;
        }
        free(in);
    } else if (strcmp(mode, "decodes") == 0 && argc > 3) {
        // One line of ids a case -> "<length>\n<bytes>" a case, decoded as a
        // whole text (tokenizer_decode_token: the start's space stripped).
        size_t n;
        unsigned char *in = read_file(argv[3], &n);
        if (!in) {
            fprintf(stderr, "test_tokenizer: cannot read %s\n", argv[3]);
            return 1;
        }
        unsigned char *buf = NULL;
        size_t cap = 0;
        for (size_t pos = 0; pos < n;) {
            size_t eol = pos;
            while (eol < n && in[eol] != '\n') eol++;
            size_t used = 0;
            int strip = tokenizer_decode_strip(t);
            for (size_t i = pos; i < eol;) {
                if (in[i] < '0' || in[i] > '9') {
                    i++;
                    continue;
                }
                long id = 0;
                while (i < eol && in[i] >= '0' && in[i] <= '9') id = id * 10 + (in[i++] - '0');
                size_t k;
                const unsigned char *b = tokenizer_decode_token(t, (int)id, &strip, &k);
                if (used + k > cap) {
                    cap = (used + k) * 2;
                    unsigned char *nb = realloc(buf, cap);
                    if (!nb) return 1;
                    buf = nb;
                }
                if (k) memcpy(buf + used, b, k);
                used += k;
            }
            printf("%zu\n", used);
            if (used) fwrite(buf, 1, used, stdout);
            pos = eol + 1;
        }
        free(buf);
        free(in);
    } else if (strcmp(mode, "classes") == 0) {
        int prev = -1;
        for (uint32_t c = 0; c <= 0x10FFFF; c++) {
            int k = tokenizer_char_class(t, c);
            if (k != prev) printf("%06X %c\n", c, k);
            prev = k;
        }
    } else if (strcmp(mode, "nfc") == 0) {
        size_t n, m;
        unsigned char *in = read_file("-", &n);
        const unsigned char *out;
        if (tokenizer_nfc(t, in, n, &out, &m)) return 1;
        fwrite(out, 1, m, stdout);
        free(in);
    } else if (strcmp(mode, "bench") == 0 && argc > 4) {
        size_t n;
        unsigned char *in = read_file(argv[3], &n);
        int reps = atoi(argv[4]);
        if (!in) return 1;
        printf("%zu", n);
        size_t ntok = 0;
        double *secs = calloc((size_t)reps, sizeof(double));
        for (int r = 0; r < reps; r++) {
            // A fresh tokenizer (cold word cache) for every repeat.
            tokenizer_free(t);
            char err[256];
            t = tokenizer_load(sec, sec_len, err, sizeof err);
            if (argc > 5 && strcmp(argv[5], "--no-cache") == 0) tokenizer_set_options(t, 48, 0);
            l.len = 0;
            double t0 = now();
            tokenizer_encode(t, in, n, 0, &l);
            secs[r] = now() - t0;
            ntok = l.len;
        }
        printf(" %zu", ntok);
        for (int r = 0; r < reps; r++) printf(" %.6f", secs[r]);
        printf("\n");
        free(secs);
        free(in);
    } else {
        fprintf(stderr, "test_tokenizer: unknown mode %s\n", mode);
        return 2;
    }
    tokenlist_free(&l);
    tokenizer_free(t);
    free(sec);
    return 0;
}
