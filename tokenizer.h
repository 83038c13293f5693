// tokenizer.h: byte-level BPE as GPT-2's (encode, decode, streaming UTF-8
// output), with the additions of section version 2: NFC normalization, added
// tokens matched in the text, a BOS id prepended to every text; and of
// version 3: the pre-tokenizers of Llama-3 (cl100k_base), Qwen2 and SmolLM2,
// and ignore_merges; and of version 4: SentencePiece-style BPE over the
// characters of the text with byte fallback (Llama-2, TinyLlama), spaces as
// "▁", the hub's Prepend/Replace normalizer or the Metaspace pre-tokenizer,
// unk_token and fuse_unk. With version 4, tokenizer_token gives a token's
// decoded bytes ("▁" a space, "<0xNN>" its byte), and a decoded text may drop
// one space at its start (tokenizer_decode_strip, tokenizer_decode_token).
//
// The tokenizer reads the tokenizer section of a checkpoint (tests/SPEC.md,
// section 2) straight from memory; it validates the whole section first.
#ifndef TOKENIZER_H
#define TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct Tokenizer Tokenizer;

// A growable list of token ids.
typedef struct {
    int *ids;
    size_t len, cap;
} TokenList;

// Load from a tokenizer section of `len` bytes at `section`. The memory is
// referenced, not copied: it must outlive the tokenizer. On failure returns
// NULL and writes a one-line reason (no trailing newline) into err[errlen].
Tokenizer *tokenizer_load(const void *section, size_t len, char *err, size_t errlen);
void tokenizer_free(Tokenizer *t);

// Number of ids in the vocabulary (ids 0 .. n-1).
int tokenizer_n_tokens(const Tokenizer *t);

// Raw bytes of token `id` (length in *len); NULL when id is out of range.
// An id absent from the vocabulary gives a zero-length string. (Version 4:
// the token's decoded bytes, not its string in the vocabulary.)
const unsigned char *tokenizer_token(const Tokenizer *t, int id, size_t *len);

// Id of the special token spelled exactly `text` (e.g. "<|endoftext|>"), or -1.
int tokenizer_special_id(const Tokenizer *t, const char *text);

// Encode `len` bytes of `text` (any bytes, not necessarily valid UTF-8),
// appending ids to `out`, as Hugging Face's encode does: the section's BOS id
// first when it has one (tokenizer_bos_id), then the text's ids. With
// `special` nonzero, special tokens written in the text are recognised
// (tiktoken's allowed_special="all"); otherwise they are plain text
// (encode_ordinary; HF's split_special_tokens). Added tokens that are not
// special are always recognised. Returns 0, or -1 when out of memory.
int tokenizer_encode(Tokenizer *t, const unsigned char *text, size_t len,
                     int special, TokenList *out);

// The same without the BOS id: for text that continues what was encoded
// before (a later line of a conversation).
int tokenizer_encode_continuation(Tokenizer *t, const unsigned char *text, size_t len,
                                  int special, TokenList *out);

// The same without the BOS id for text that starts a text all the same (the
// start of a chat template's text: Metaspace's prepend_scheme "first" puts
// its "▁" there).
int tokenizer_encode_start(Tokenizer *t, const unsigned char *text, size_t len,
                           int special, TokenList *out);

// The id tokenizer_encode puts before every text, or -1 (GPT-2: none).
int tokenizer_bos_id(const Tokenizer *t);

// Decoding a whole text as Hugging Face's decode does (section version 4:
// Llama's decoder strips one space at the start of the text). Start a text
// with `strip` = tokenizer_decode_strip(t) (0 or 1), then pass &strip with
// each id in turn: returns the bytes to print for it (tokenizer_token's,
// less the stripped space), their length in *len; "" for an id out of range.
int tokenizer_decode_strip(const Tokenizer *t);
const unsigned char *tokenizer_decode_token(const Tokenizer *t, int id, int *strip, size_t *len);

void tokenlist_free(TokenList *l);

// Streaming decoder: feed it token bytes as they come, and it hands back
// only whole UTF-8 characters, holding an incomplete one until the rest
// arrives. Bytes that can never become a valid character are passed through
// as they are, so the concatenated output always equals the input bytes.
typedef struct {
    unsigned char held[4];
    int n_held;
} Utf8Stream;

// Append `len` bytes to the stream. Writes the bytes that are ready into
// `out` (which must hold len + 4 bytes) and returns how many were written.
size_t utf8_stream_push(Utf8Stream *s, const unsigned char *bytes, size_t len,
                        unsigned char *out);
// End of stream: writes any held bytes into `out` (4 bytes) and returns how many.
size_t utf8_stream_flush(Utf8Stream *s, unsigned char *out);

// ---------------------------------------------------------------------------
// Additions (tests and tools; the engine needs none of these).

// End of the pre-token (piece of the section's pre-tokenizer) that starts at
// text[pos]; pos < len.
size_t tokenizer_next_piece(const Tokenizer *t, const unsigned char *text, size_t len,
                            size_t pos);

// Pre-tokenizer class of a code point: 'L' letter, 'N' number, 'S' White_Space,
// 'O' anything else (surrogates and values above U+10FFFF included).
int tokenizer_char_class(const Tokenizer *t, uint32_t cp);

// Tuning knobs for tests and benchmarks: pieces of up to `small_piece` bytes
// use the direct BPE scan, longer ones the heap (default 48); `use_cache` 0
// turns the word cache off (default 1). Results never depend on either.
void tokenizer_set_options(Tokenizer *t, size_t small_piece, int use_cache);

// NFC of `len` bytes of `text` with Unicode 9.0's data, as Hugging Face
// tokenizers' NFC normalizer (ill-formed UTF-8 bytes pass through): *out
// is `text` itself when it is already NFC, else the tokenizer's scratch
// buffer (valid until the next call on t). Returns 0, or -1 when out of memory.
int tokenizer_nfc(Tokenizer *t, const unsigned char *text, size_t len,
                  const unsigned char **out, size_t *out_len);

// Unicode version of the class table, e.g. "16.0.0".
const char *tokenizer_unicode_version(void);

// ---------------------------------------------------------------------------
// Shared with run.c, so that each rule has one home.

// The little-endian 32-bit number at p (the checkpoint's byte order).
uint32_t read_u32le(const unsigned char *p);

// The well-formed UTF-8 character at s[i] (i < len): its code point, with
// its length (1 to 4) in *n; for bytes that do not form one, UINT32_MAX and
// *n = 1. The tokenizer's own rules (no overlong forms, no surrogates).
uint32_t utf8_char(const unsigned char *s, size_t len, size_t i, int *n);

#endif
