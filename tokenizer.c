// tokenizer.c: GPT-2 byte-level BPE tokenizer (see tokenizer.h, tests/SPEC.md section 2).
//
// Encoding has two stages, as in GPT-2:
//
// 1. Pre-tokenization splits the text into pieces exactly as the regular expression
//      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    does (leftmost match, first alternative that matches wins), written by hand
//    in next_piece(). Every code point falls in one of four classes: L (letter),
//    N (number), S (White_Space) or O (anything else); the class table is
//    generated from Unicode 16.0, the version tiktoken and Hugging Face
//    tokenizers use (tests/gen_unicode_tables.py regenerates it).
//
//    Invalid UTF-8: wherever the bytes do not start a well-formed UTF-8 sequence
//    (Unicode table 3-7: no overlongs, no surrogates, nothing above U+10FFFF, no
//    truncated sequence), that single byte is taken as one character of class O
//    and decoding resumes at the next byte. So "\xff\xfe!" is one piece, " \xff"
//    is one piece (the optional space of " ?[^\s\p{L}\p{N}]+"), and a stray byte
//    never merges with letters or digits. Since BPE works on raw bytes and every
//    byte is a token, decode(encode(b)) == b for every byte string b.
//
// 2. Byte-level BPE on each piece: start from one token per byte, then merge
//    adjacent pairs by merge rank, lowest rank first and, among equal ranks,
//    leftmost first (Hugging Face's BPE model; the same as tiktoken for GPT-2).
//    Short pieces use a direct scan; long ones a binary heap over adjacent
//    pairs with a linked list of symbols (O(n log n), so a 10,000-character
//    word is fast). Results for pieces up to CACHE_KEY_MAX bytes are cached.
//
// Special tokens (the section's special ids) are plain text unless `special`
// is set; then each occurrence is emitted as its id (the leftmost occurrence
// first; the longest when several start at the same byte) and the text
// between occurrences is pre-tokenized separately.
//
// Duplicate merge pairs in a section: the later (higher rank) one wins, as in
// the reference implementations.
#include "tokenizer.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C_O = 0, C_L = 1, C_N = 2, C_S = 3 };

/* BEGIN GENERATED UNICODE TABLE (tests/gen_unicode_tables.py) */
/* Unicode 16.0.0: L=141028 N=1911 S=25 code points; 1609 ranges. Do not edit by hand. */
#define UCLASS_UNICODE_VERSION "16.0.0"
#define UCLASS_LIMIT 0x323B0
static const uint32_t uclass_ranges[1609] = {
  0x0, 0x27, 0x38, 0x83, 0x84, 0xC2, 0xE8, 0x105, 0x16C, 0x185, 0x1EC, 0x217, 0x218, 0x283, 0x284,
  0x2A9, 0x2AC, 0x2CA, 0x2D0, 0x2D5, 0x2D8, 0x2E6, 0x2E9, 0x2EC, 0x2F2, 0x2FC, 0x301, 0x35C, 0x361,
  0x3DC, 0x3E1, 0xB08, 0xB19, 0xB48, 0xB81, 0xB94, 0xBB1, 0xBB4, 0xBB9, 0xBBC, 0xDC1, 0xDD4, 0xDD9,
  0xDE0, 0xDE9, 0xDF8, 0xDFD, 0xE00, 0xE19, 0xE1C, 0xE21, 0xE2C, 0xE31, 0xE34, 0xE39, 0xE88, 0xE8D,
  0xFD8, 0xFDD, 0x1208, 0x1229, 0x14C0, 0x14C5, 0x155C, 0x1565, 0x1568, 0x1581, 0x1624, 0x1741,
  0x17AC, 0x17BD, 0x17CC, 0x1881, 0x192C, 0x1982, 0x19A8, 0x19B9, 0x19C0, 0x19C5, 0x1B50, 0x1B55,
  0x1B58, 0x1B95, 0x1B9C, 0x1BB9, 0x1BC2, 0x1BE9, 0x1BF4, 0x1BFD, 0x1C00, 0x1C41, 0x1C44, 0x1C49,
  0x1CC0, 0x1D35, 0x1E98, 0x1EC5, 0x1EC8, 0x1F02, 0x1F29, 0x1FAC, 0x1FD1, 0x1FD8, 0x1FE9, 0x1FEC,
  0x2001, 0x2058, 0x2069, 0x206C, 0x2091, 0x2094, 0x20A1, 0x20A4, 0x2101, 0x2164, 0x2181, 0x21AC,
  0x21C1, 0x2220, 0x2225, 0x223C, 0x2281, 0x2328, 0x2411, 0x24E8, 0x24F5, 0x24F8, 0x2541, 0x2544,
  0x2561, 0x2588, 0x259A, 0x25C0, 0x25C5, 0x2604, 0x2615, 0x2634, 0x263D, 0x2644, 0x264D, 0x26A4,
  0x26A9, 0x26C4, 0x26C9, 0x26CC, 0x26D9, 0x26E8, 0x26F5, 0x26F8, 0x2739, 0x273C, 0x2771, 0x2778,
  0x277D, 0x2788, 0x279A, 0x27C1, 0x27C8, 0x27D2, 0x27E8, 0x27F1, 0x27F4, 0x2815, 0x282C, 0x283D,
  0x2844, 0x284D, 0x28A4, 0x28A9, 0x28C4, 0x28C9, 0x28D0, 0x28D5, 0x28DC, 0x28E1, 0x28E8, 0x2965,
  0x2974, 0x2979, 0x297C, 0x299A, 0x29C0, 0x29C9, 0x29D4, 0x2A15, 0x2A38, 0x2A3D, 0x2A48, 0x2A4D,
  0x2AA4, 0x2AA9, 0x2AC4, 0x2AC9, 0x2AD0, 0x2AD5, 0x2AE8, 0x2AF5, 0x2AF8, 0x2B41, 0x2B44, 0x2B81,
  0x2B88, 0x2B9A, 0x2BC0, 0x2BE5, 0x2BE8, 0x2C15, 0x2C34, 0x2C3D, 0x2C44, 0x2C4D, 0x2CA4, 0x2CA9,
  0x2CC4, 0x2CC9, 0x2CD0, 0x2CD5, 0x2CE8, 0x2CF5, 0x2CF8, 0x2D71, 0x2D78, 0x2D7D, 0x2D88, 0x2D9A,
  0x2DC0, 0x2DC5, 0x2DCA, 0x2DE0, 0x2E0D, 0x2E10, 0x2E15, 0x2E2C, 0x2E39, 0x2E44, 0x2E49, 0x2E58,
  0x2E65, 0x2E6C, 0x2E71, 0x2E74, 0x2E79, 0x2E80, 0x2E8D, 0x2E94, 0x2EA1, 0x2EAC, 0x2EB9, 0x2EE8,
  0x2F41, 0x2F44, 0x2F9A, 0x2FCC, 0x3015, 0x3034, 0x3039, 0x3044, 0x3049, 0x30A4, 0x30A9, 0x30E8,
  0x30F5, 0x30F8, 0x3161, 0x316C, 0x3175, 0x3178, 0x3181, 0x3188, 0x319A, 0x31C0, 0x31E2, 0x31FC,
  0x3201, 0x3204, 0x3215, 0x3234, 0x3239, 0x3244, 0x3249, 0x32A4, 0x32A9, 0x32D0, 0x32D5, 0x32E8,
  0x32F5, 0x32F8, 0x3375, 0x337C, 0x3381, 0x3388, 0x339A, 0x33C0, 0x33C5, 0x33CC, 0x3411, 0x3434,
  0x3439, 0x3444, 0x3449, 0x34EC, 0x34F5, 0x34F8, 0x3539, 0x353C, 0x3551, 0x355C, 0x3562, 0x357D,
  0x3588, 0x359A, 0x35E4, 0x35E9, 0x3600, 0x3615, 0x365C, 0x3669, 0x36C8, 0x36CD, 0x36F0, 0x36F5,
  0x36F8, 0x3701, 0x371C, 0x379A, 0x37C0, 0x3805, 0x38C4, 0x38C9, 0x38D0, 0x3901, 0x391C, 0x3942,
  0x3968, 0x3A05, 0x3A0C, 0x3A11, 0x3A14, 0x3A19, 0x3A2C, 0x3A31, 0x3A90, 0x3A95, 0x3A98, 0x3A9D,
  0x3AC4, 0x3AC9, 0x3AD0, 0x3AF5, 0x3AF8, 0x3B01, 0x3B14, 0x3B19, 0x3B1C, 0x3B42, 0x3B68, 0x3B71,
  0x3B80, 0x3C01, 0x3C04, 0x3C82, 0x3CD0, 0x3D01, 0x3D20, 0x3D25, 0x3DB4, 0x3E21, 0x3E34, 0x4001,
  0x40AC, 0x40FD, 0x4102, 0x4128, 0x4141, 0x4158, 0x4169, 0x4178, 0x4185, 0x4188, 0x4195, 0x419C,
  0x41B9, 0x41C4, 0x41D5, 0x4208, 0x4239, 0x423C, 0x4242, 0x4268, 0x4281, 0x4318, 0x431D, 0x4320,
  0x4335, 0x4338, 0x4341, 0x43EC, 0x43F1, 0x4924, 0x4929, 0x4938, 0x4941, 0x495C, 0x4961, 0x4964,
  0x4969, 0x4978, 0x4981, 0x4A24, 0x4A29, 0x4A38, 0x4A41, 0x4AC4, 0x4AC9, 0x4AD8, 0x4AE1, 0x4AFC,
  0x4B01, 0x4B04, 0x4B09, 0x4B18, 0x4B21, 0x4B5C, 0x4B61, 0x4C44, 0x4C49, 0x4C58, 0x4C61, 0x4D6C,
  0x4DA6, 0x4DF4, 0x4E01, 0x4E40, 0x4E81, 0x4FD8, 0x4FE1, 0x4FF8, 0x5005, 0x59B4, 0x59BD, 0x5A03,
  0x5A05, 0x5A6C, 0x5A81, 0x5BAC, 0x5BBA, 0x5BC5, 0x5BE4, 0x5C01, 0x5C48, 0x5C7D, 0x5CC8, 0x5D01,
  0x5D48, 0x5D81, 0x5DB4, 0x5DB9, 0x5DC4, 0x5E01, 0x5ED0, 0x5F5D, 0x5F60, 0x5F71, 0x5F74, 0x5F82,
  0x5FA8, 0x5FC2, 0x5FE8, 0x6042, 0x6068, 0x6081, 0x61E4, 0x6201, 0x6214, 0x621D, 0x62A4, 0x62A9,
  0x62AC, 0x62C1, 0x63D8, 0x6401, 0x647C, 0x651A, 0x6541, 0x65B8, 0x65C1, 0x65D4, 0x6601, 0x66B0,
  0x66C1, 0x6728, 0x6742, 0x676C, 0x6801, 0x685C, 0x6881, 0x6954, 0x6A02, 0x6A28, 0x6A42, 0x6A68,
  0x6A9D, 0x6AA0, 0x6C15, 0x6CD0, 0x6D15, 0x6D34, 0x6D42, 0x6D68, 0x6E0D, 0x6E84, 0x6EB9, 0x6EC2,
  0x6EE9, 0x6F98, 0x7001, 0x7090, 0x7102, 0x7128, 0x7135, 0x7142, 0x7169, 0x71F8, 0x7201, 0x722C,
  0x7241, 0x72EC, 0x72F5, 0x7300, 0x73A5, 0x73B4, 0x73B9, 0x73D0, 0x73D5, 0x73DC, 0x73E9, 0x73EC,
  0x7401, 0x7700, 0x7801, 0x7C58, 0x7C61, 0x7C78, 0x7C81, 0x7D18, 0x7D21, 0x7D38, 0x7D41, 0x7D60,
  0x7D65, 0x7D68, 0x7D6D, 0x7D70, 0x7D75, 0x7D78, 0x7D7D, 0x7DF8, 0x7E01, 0x7ED4, 0x7ED9, 0x7EF4,
  0x7EF9, 0x7EFC, 0x7F09, 0x7F14, 0x7F19, 0x7F34, 0x7F41, 0x7F50, 0x7F59, 0x7F70, 0x7F81, 0x7FB4,
  0x7FC9, 0x7FD4, 0x7FD9, 0x7FF4, 0x8003, 0x802C, 0x80A3, 0x80A8, 0x80BF, 0x80C0, 0x817F, 0x8180,
  0x81C2, 0x81C5, 0x81C8, 0x81D2, 0x81E8, 0x81FD, 0x8202, 0x8228, 0x8241, 0x8274, 0x8409, 0x840C,
  0x841D, 0x8420, 0x8429, 0x8450, 0x8455, 0x8458, 0x8465, 0x8478, 0x8491, 0x8494, 0x8499, 0x849C,
  0x84A1, 0x84A4, 0x84A9, 0x84B8, 0x84BD, 0x84E8, 0x84F1, 0x8500, 0x8515, 0x8528, 0x8539, 0x853C,
  0x8542, 0x860D, 0x8616, 0x8628, 0x9182, 0x9270, 0x93AA, 0x9400, 0x9DDA, 0x9E50, 0xB001, 0xB394,
  0xB3AD, 0xB3BC, 0xB3C9, 0xB3D0, 0xB3F6, 0xB3F8, 0xB401, 0xB498, 0xB49D, 0xB4A0, 0xB4B5, 0xB4B8,
  0xB4C1, 0xB5A0, 0xB5BD, 0xB5C0, 0xB601, 0xB65C, 0xB681, 0xB69C, 0xB6A1, 0xB6BC, 0xB6C1, 0xB6DC,
  0xB6E1, 0xB6FC, 0xB701, 0xB71C, 0xB721, 0xB73C, 0xB741, 0xB75C, 0xB761, 0xB77C, 0xB8BD, 0xB8C0,
  0xC003, 0xC004, 0xC015, 0xC01E, 0xC020, 0xC086, 0xC0A8, 0xC0C5, 0xC0D8, 0xC0E2, 0xC0ED, 0xC0F4,
  0xC105, 0xC25C, 0xC275, 0xC280, 0xC285, 0xC3EC, 0xC3F1, 0xC400, 0xC415, 0xC4C0, 0xC4C5, 0xC63C,
  0xC64A, 0xC658, 0xC681, 0xC700, 0xC7C1, 0xC800, 0xC882, 0xC8A8, 0xC922, 0xC940, 0xC946, 0xC980,
  0xCA02, 0xCA28, 0xCAC6, 0xCB00, 0xD001, 0x13700, 0x13801, 0x29234, 0x29341, 0x293F8, 0x29401,
  0x29834, 0x29841, 0x29882, 0x298A9, 0x298B0, 0x29901, 0x299BC, 0x299FD, 0x29A78, 0x29A81, 0x29B9A,
  0x29BC0, 0x29C5D, 0x29C80, 0x29C89, 0x29E24, 0x29E2D, 0x29F38, 0x29F41, 0x29F48, 0x29F4D, 0x29F50,
  0x29F55, 0x29F74, 0x29FC9, 0x2A008, 0x2A00D, 0x2A018, 0x2A01D, 0x2A02C, 0x2A031, 0x2A08C, 0x2A0C2,
  0x2A0D8, 0x2A101, 0x2A1D0, 0x2A209, 0x2A2D0, 0x2A342, 0x2A368, 0x2A3C9, 0x2A3E0, 0x2A3ED, 0x2A3F0,
  0x2A3F5, 0x2A3FC, 0x2A402, 0x2A429, 0x2A498, 0x2A4C1, 0x2A51C, 0x2A581, 0x2A5F4, 0x2A611, 0x2A6CC,
  0x2A73D, 0x2A742, 0x2A768, 0x2A781, 0x2A794, 0x2A799, 0x2A7C2, 0x2A7E9, 0x2A7FC, 0x2A801, 0x2A8A4,
  0x2A901, 0x2A90C, 0x2A911, 0x2A930, 0x2A942, 0x2A968, 0x2A981, 0x2A9DC, 0x2A9E9, 0x2A9EC, 0x2A9F9,
  0x2AAC0, 0x2AAC5, 0x2AAC8, 0x2AAD5, 0x2AADC, 0x2AAE5, 0x2AAF8, 0x2AB01, 0x2AB04, 0x2AB09, 0x2AB0C,
  0x2AB6D, 0x2AB78, 0x2AB81, 0x2ABAC, 0x2ABC9, 0x2ABD4, 0x2AC05, 0x2AC1C, 0x2AC25, 0x2AC3C, 0x2AC45,
  0x2AC5C, 0x2AC81, 0x2AC9C, 0x2ACA1, 0x2ACBC, 0x2ACC1, 0x2AD6C, 0x2AD71, 0x2ADA8, 0x2ADC1, 0x2AF8C,
  0x2AFC2, 0x2AFE8, 0x2B001, 0x35E90, 0x35EC1, 0x35F1C, 0x35F2D, 0x35FF0, 0x3E401, 0x3E9B8, 0x3E9C1,
  0x3EB68, 0x3EC01, 0x3EC1C, 0x3EC4D, 0x3EC60, 0x3EC75, 0x3EC78, 0x3EC7D, 0x3ECA4, 0x3ECA9, 0x3ECDC,
  0x3ECE1, 0x3ECF4, 0x3ECF9, 0x3ECFC, 0x3ED01, 0x3ED08, 0x3ED0D, 0x3ED14, 0x3ED19, 0x3EEC8, 0x3EF4D,
  0x3F4F8, 0x3F541, 0x3F640, 0x3F649, 0x3F720, 0x3F7C1, 0x3F7F0, 0x3F9C1, 0x3F9D4, 0x3F9D9, 0x3FBF4,
  0x3FC42, 0x3FC68, 0x3FC85, 0x3FCEC, 0x3FD05, 0x3FD6C, 0x3FD99, 0x3FEFC, 0x3FF09, 0x3FF20, 0x3FF29,
  0x3FF40, 0x3FF49, 0x3FF60, 0x3FF69, 0x3FF74, 0x40001, 0x40030, 0x40035, 0x4009C, 0x400A1, 0x400EC,
  0x400F1, 0x400F8, 0x400FD, 0x40138, 0x40141, 0x40178, 0x40201, 0x403EC, 0x4041E, 0x404D0, 0x40502,
  0x405E4, 0x4062A, 0x40630, 0x40A01, 0x40A74, 0x40A81, 0x40B44, 0x40B86, 0x40BF0, 0x40C01, 0x40C82,
  0x40C90, 0x40CB5, 0x40D06, 0x40D09, 0x40D2A, 0x40D2C, 0x40D41, 0x40DD8, 0x40E01, 0x40E78, 0x40E81,
  0x40F10, 0x40F21, 0x40F40, 0x40F46, 0x40F58, 0x41001, 0x41278, 0x41282, 0x412A8, 0x412C1, 0x41350,
  0x41361, 0x413F0, 0x41401, 0x414A0, 0x414C1, 0x41590, 0x415C1, 0x415EC, 0x415F1, 0x4162C, 0x41631,
  0x4164C, 0x41651, 0x41658, 0x4165D, 0x41688, 0x4168D, 0x416C8, 0x416CD, 0x416E8, 0x416ED, 0x416F4,
  0x41701, 0x417D0, 0x41801, 0x41CDC, 0x41D01, 0x41D58, 0x41D81, 0x41DA0, 0x41E01, 0x41E18, 0x41E1D,
  0x41EC4, 0x41EC9, 0x41EEC, 0x42001, 0x42018, 0x42021, 0x42024, 0x42029, 0x420D8, 0x420DD, 0x420E4,
  0x420F1, 0x420F4, 0x420FD, 0x42158, 0x42162, 0x42181, 0x421DC, 0x421E6, 0x42201, 0x4227C, 0x4229E,
  0x422C0, 0x42381, 0x423CC, 0x423D1, 0x423D8, 0x423EE, 0x42401, 0x4245A, 0x42470, 0x42481, 0x424E8,
  0x42601, 0x426E0, 0x426F2, 0x426F9, 0x42702, 0x42740, 0x4274A, 0x42801, 0x42804, 0x42841, 0x42850,
  0x42855, 0x42860, 0x42865, 0x428D8, 0x42902, 0x42924, 0x42981, 0x429F6, 0x429FC, 0x42A01, 0x42A76,
  0x42A80, 0x42B01, 0x42B20, 0x42B25, 0x42B94, 0x42BAE, 0x42BC0, 0x42C01, 0x42CD8, 0x42D01, 0x42D58,
  0x42D62, 0x42D81, 0x42DCC, 0x42DE2, 0x42E01, 0x42E48, 0x42EA6, 0x42EC0, 0x43001, 0x43124, 0x43201,
  0x432CC, 0x43301, 0x433CC, 0x433EA, 0x43401, 0x43490, 0x434C2, 0x434E8, 0x43502, 0x43529, 0x43598,
  0x435BD, 0x43618, 0x43982, 0x439FC, 0x43A01, 0x43AA8, 0x43AC1, 0x43AC8, 0x43B09, 0x43B14, 0x43C01,
  0x43C76, 0x43C9D, 0x43CA0, 0x43CC1, 0x43D18, 0x43D46, 0x43D54, 0x43DC1, 0x43E08, 0x43EC1, 0x43F16,
  0x43F30, 0x43F81, 0x43FDC, 0x4400D, 0x440E0, 0x4414A, 0x441C0, 0x441C5, 0x441CC, 0x441D5, 0x441D8,
  0x4420D, 0x442C0, 0x44341, 0x443A4, 0x443C2, 0x443E8, 0x4440D, 0x4449C, 0x444DA, 0x44500, 0x44511,
  0x44514, 0x4451D, 0x44520, 0x44541, 0x445CC, 0x445D9, 0x445DC, 0x4460D, 0x446CC, 0x44705, 0x44714,
  0x44742, 0x44769, 0x4476C, 0x44771, 0x44774, 0x44786, 0x447D4, 0x44801, 0x44848, 0x4484D, 0x448B0,
  0x448FD, 0x44904, 0x44A01, 0x44A1C, 0x44A21, 0x44A24, 0x44A29, 0x44A38, 0x44A3D, 0x44A78, 0x44A7D,
  0x44AA4, 0x44AC1, 0x44B7C, 0x44BC2, 0x44BE8, 0x44C15, 0x44C34, 0x44C3D, 0x44C44, 0x44C4D, 0x44CA4,
  0x44CA9, 0x44CC4, 0x44CC9, 0x44CD0, 0x44CD5, 0x44CE8, 0x44CF5, 0x44CF8, 0x44D41, 0x44D44, 0x44D75,
  0x44D88, 0x44E01, 0x44E28, 0x44E2D, 0x44E30, 0x44E39, 0x44E3C, 0x44E41, 0x44ED8, 0x44EDD, 0x44EE0,
  0x44F45, 0x44F48, 0x44F4D, 0x44F50, 0x45001, 0x450D4, 0x4511D, 0x4512C, 0x45142, 0x45168, 0x4517D,
  0x45188, 0x45201, 0x452C0, 0x45311, 0x45318, 0x4531D, 0x45320, 0x45342, 0x45368, 0x45601, 0x456BC,
  0x45761, 0x45770, 0x45801, 0x458C0, 0x45911, 0x45914, 0x45942, 0x45968, 0x45A01, 0x45AAC, 0x45AE1,
  0x45AE4, 0x45B02, 0x45B28, 0x45B42, 0x45B90, 0x45C01, 0x45C6C, 0x45CC2, 0x45CF0, 0x45D01, 0x45D1C,
  0x46001, 0x460B0, 0x46281, 0x46382, 0x463CC, 0x463FD, 0x4641C, 0x46425, 0x46428, 0x46431, 0x46450,
  0x46455, 0x4645C, 0x46461, 0x464C0, 0x464FD, 0x46500, 0x46505, 0x46508, 0x46542, 0x46568, 0x46681,
  0x466A0, 0x466A9, 0x46744, 0x46785, 0x46788, 0x4678D, 0x46790, 0x46801, 0x46804, 0x4682D, 0x468CC,
  0x468E9, 0x468EC, 0x46941, 0x46944, 0x46971, 0x46A28, 0x46A75, 0x46A78, 0x46AC1, 0x46BE4, 0x46F01,
  0x46F84, 0x46FC2, 0x46FE8, 0x47001, 0x47024, 0x47029, 0x470BC, 0x47101, 0x47104, 0x47142, 0x471B4,
  0x471C9, 0x47240, 0x47401, 0x4741C, 0x47421, 0x47428, 0x4742D, 0x474C4, 0x47519, 0x4751C, 0x47542,
  0x47568, 0x47581, 0x47598, 0x4759D, 0x475A4, 0x475A9, 0x47628, 0x47661, 0x47664, 0x47682, 0x476A8,
  0x47B81, 0x47BCC, 0x47C09, 0x47C0C, 0x47C11, 0x47C44, 0x47C49, 0x47CD0, 0x47D42, 0x47D68, 0x47EC1,
  0x47EC4, 0x47F02, 0x47F54, 0x48001, 0x48E68, 0x49002, 0x491BC, 0x49201, 0x49510, 0x4BE41, 0x4BFC4,
  0x4C001, 0x4D0C0, 0x4D105, 0x4D11C, 0x4D181, 0x50FEC, 0x51001, 0x5191C, 0x58401, 0x58478, 0x584C2,
  0x584E8, 0x5A001, 0x5A8E4, 0x5A901, 0x5A97C, 0x5A982, 0x5A9A8, 0x5A9C1, 0x5AAFC, 0x5AB02, 0x5AB28,
  0x5AB41, 0x5ABB8, 0x5AC01, 0x5ACC0, 0x5AD01, 0x5AD10, 0x5AD42, 0x5AD68, 0x5AD6E, 0x5AD88, 0x5AD8D,
  0x5ADE0, 0x5ADF5, 0x5AE40, 0x5B501, 0x5B5B4, 0x5B5C2, 0x5B5E8, 0x5B901, 0x5BA02, 0x5BA5C, 0x5BC01,
  0x5BD2C, 0x5BD41, 0x5BD44, 0x5BE4D, 0x5BE80, 0x5BF81, 0x5BF88, 0x5BF8D, 0x5BF90, 0x5C001, 0x61FE0,
  0x62001, 0x63358, 0x633FD, 0x63424, 0x6BFC1, 0x6BFD0, 0x6BFD5, 0x6BFF0, 0x6BFF5, 0x6BFFC, 0x6C001,
  0x6C48C, 0x6C4C9, 0x6C4CC, 0x6C541, 0x6C54C, 0x6C555, 0x6C558, 0x6C591, 0x6C5A0, 0x6C5C1, 0x6CBF0,
  0x6F001, 0x6F1AC, 0x6F1C1, 0x6F1F4, 0x6F201, 0x6F224, 0x6F241, 0x6F268, 0x733C2, 0x733E8, 0x74B02,
  0x74B50, 0x74B82, 0x74BD0, 0x74D82, 0x74DE4, 0x75001, 0x75154, 0x75159, 0x75274, 0x75279, 0x75280,
  0x75289, 0x7528C, 0x75295, 0x7529C, 0x752A5, 0x752B4, 0x752B9, 0x752E8, 0x752ED, 0x752F0, 0x752F5,
  0x75310, 0x75315, 0x75418, 0x7541D, 0x7542C, 0x75435, 0x75454, 0x75459, 0x75474, 0x75479, 0x754E8,
  0x754ED, 0x754FC, 0x75501, 0x75514, 0x75519, 0x7551C, 0x75529, 0x75544, 0x75549, 0x75A98, 0x75AA1,
  0x75B04, 0x75B09, 0x75B6C, 0x75B71, 0x75BEC, 0x75BF1, 0x75C54, 0x75C59, 0x75CD4, 0x75CD9, 0x75D3C,
  0x75D41, 0x75DBC, 0x75DC1, 0x75E24, 0x75E29, 0x75EA4, 0x75EA9, 0x75F0C, 0x75F11, 0x75F30, 0x75F3A,
  0x76000, 0x77C01, 0x77C7C, 0x77C95, 0x77CAC, 0x780C1, 0x781B8, 0x78401, 0x784B4, 0x784DD, 0x784F8,
  0x78502, 0x78528, 0x78539, 0x7853C, 0x78A41, 0x78AB8, 0x78B01, 0x78BB0, 0x78BC2, 0x78BE8, 0x79341,
  0x793B0, 0x793C2, 0x793E8, 0x79741, 0x797B8, 0x797C1, 0x797C6, 0x797EC, 0x79F81, 0x79F9C, 0x79FA1,
  0x79FB0, 0x79FB5, 0x79FBC, 0x79FC1, 0x79FFC, 0x7A001, 0x7A314, 0x7A31E, 0x7A340, 0x7A401, 0x7A510,
  0x7A52D, 0x7A530, 0x7A542, 0x7A568, 0x7B1C6, 0x7B2B0, 0x7B2B6, 0x7B2C0, 0x7B2C6, 0x7B2D4, 0x7B406,
  0x7B4B8, 0x7B4BE, 0x7B4F8, 0x7B801, 0x7B810, 0x7B815, 0x7B880, 0x7B885, 0x7B88C, 0x7B891, 0x7B894,
  0x7B89D, 0x7B8A0, 0x7B8A5, 0x7B8CC, 0x7B8D1, 0x7B8E0, 0x7B8E5, 0x7B8E8, 0x7B8ED, 0x7B8F0, 0x7B909,
  0x7B90C, 0x7B91D, 0x7B920, 0x7B925, 0x7B928, 0x7B92D, 0x7B930, 0x7B935, 0x7B940, 0x7B945, 0x7B94C,
  0x7B951, 0x7B954, 0x7B95D, 0x7B960, 0x7B965, 0x7B968, 0x7B96D, 0x7B970, 0x7B975, 0x7B978, 0x7B97D,
  0x7B980, 0x7B985, 0x7B98C, 0x7B991, 0x7B994, 0x7B99D, 0x7B9AC, 0x7B9B1, 0x7B9CC, 0x7B9D1, 0x7B9E0,
  0x7B9E5, 0x7B9F4, 0x7B9F9, 0x7B9FC, 0x7BA01, 0x7BA28, 0x7BA2D, 0x7BA70, 0x7BA85, 0x7BA90, 0x7BA95,
  0x7BAA8, 0x7BAAD, 0x7BAF0, 0x7C402, 0x7C434, 0x7EFC2, 0x7EFE8, 0x80001, 0xA9B80, 0xA9C01, 0xADCE8,
  0xADD01, 0xAE078, 0xAE081, 0xB3A88, 0xB3AC1, 0xBAF84, 0xBAFC1, 0xBB978, 0xBE001, 0xBE878, 0xC0001,
  0xC4D2C, 0xC4D41,
};
/* END GENERATED UNICODE TABLE */

#define CACHE_KEY_MAX 64        // longest piece (bytes) kept in the word cache
#define CACHE_SLOTS (1u << 15)  // hash slots (power of two)
#define CACHE_MAX_ENTRIES (CACHE_SLOTS / 2)
#define CACHE_ARENA (1u << 20)  // bytes of keys and ints of ids before a reset
#define SMALL_PIECE 48          // pieces up to this many bytes use the direct scan

typedef struct {
    uint64_t key;  // (left << 32) | right; EMPTY_KEY when unused
    uint32_t rank, merged;
} MergeEnt;
#define EMPTY_KEY UINT64_MAX

typedef struct {
    uint64_t hash;  // 0 = empty slot
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} CacheEnt;

typedef struct {
    int id;
    const unsigned char *bytes;
    size_t len;
} Special;

typedef struct {
    uint32_t rank, pos, merged;
} HeapEnt;

typedef struct {
    int id;
    int prev, next;  // indices in the symbol array, -1 at the ends
} Sym;

struct Tokenizer {
    const unsigned char *offs;  // u32 LE [n_tokens + 1]
    const unsigned char *blob;
    uint32_t n_tokens, n_merges, n_special, blob_bytes;
    int byte_id[256];
    MergeEnt *merges;
    size_t merge_mask;
    Special *specials;  // sorted by length, longest first
    size_t n_specials;
    unsigned char special_first[256];
    unsigned char *uclass;  // 2 bits per code point below UCLASS_LIMIT
    // word cache
    CacheEnt *cache;
    size_t cache_count;
    unsigned char *cache_keys;
    int *cache_ids;
    size_t cache_keys_used, cache_ids_used;
    // scratch space for BPE of one piece
    int *ids;
    uint32_t *ranks;
    Sym *syms;
    HeapEnt *heap;
    size_t scratch_cap;
    size_t small_piece;
    int use_cache;
};

uint32_t read_u32le(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

// ---------------------------------------------------------------------------
// Unicode classes and UTF-8

static unsigned char *build_uclass(void) {
    size_t nbytes = (UCLASS_LIMIT + 3) / 4;
    unsigned char *tab = calloc(nbytes, 1);
    if (!tab) return NULL;
    size_t n = sizeof uclass_ranges / sizeof uclass_ranges[0];
    for (size_t r = 0; r < n; r++) {
        uint32_t lo = uclass_ranges[r] >> 2, cls = uclass_ranges[r] & 3;
        uint32_t hi = r + 1 < n ? uclass_ranges[r + 1] >> 2 : UCLASS_LIMIT;
        if (!cls) continue;
        for (uint32_t c = lo; c < hi; c++) tab[c >> 2] |= (unsigned char)(cls << ((c & 3) * 2));
    }
    return tab;
}

// Class of the ASCII characters: S for \t \n \v \f \r and space, L for letters,
// N for digits, O otherwise.
static const unsigned char ascii_class[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 3, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0,
};

static inline int cp_class(const unsigned char *tab, uint32_t c) {
    if (c >= UCLASS_LIMIT) return C_O;
    return (tab[c >> 2] >> ((c & 3) * 2)) & 3;
}

// Decode the character at s[i] (i < len). Returns its code point and stores its
// length in *n; an ill-formed sequence gives *n = 1 and UINT32_MAX.
static inline uint32_t utf8_decode(const unsigned char *s, size_t len, size_t i, int *n) {
    unsigned c = s[i];
    size_t left = len - i;
    if (c < 0x80) { *n = 1; return c; }
    if (c >= 0xC2 && c <= 0xDF) {
        if (left >= 2 && (s[i + 1] & 0xC0) == 0x80) {
            *n = 2;
            return (uint32_t)(c & 0x1F) << 6 | (s[i + 1] & 0x3F);
        }
    } else if (c >= 0xE0 && c <= 0xEF) {
        if (left >= 3) {
            unsigned c1 = s[i + 1], c2 = s[i + 2];
            unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80) {
                *n = 3;
                return (uint32_t)(c & 0x0F) << 12 | (uint32_t)(c1 & 0x3F) << 6 | (c2 & 0x3F);
            }
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        if (left >= 4) {
            unsigned c1 = s[i + 1], c2 = s[i + 2], c3 = s[i + 3];
            unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
            if (c1 >= lo && c1 <= hi && (c2 & 0xC0) == 0x80 && (c3 & 0xC0) == 0x80) {
                *n = 4;
                return (uint32_t)(c & 0x07) << 18 | (uint32_t)(c1 & 0x3F) << 12 |
                       (uint32_t)(c2 & 0x3F) << 6 | (c3 & 0x3F);
            }
        }
    }
    *n = 1;
    return UINT32_MAX;
}

uint32_t utf8_char(const unsigned char *s, size_t len, size_t i, int *n) {
    return utf8_decode(s, len, i, n);
}

// Class of the character at s[i] and its length in *n.
static inline int char_class(const unsigned char *tab, const unsigned char *s, size_t len,
                             size_t i, int *n) {
    unsigned c = s[i];
    if (c < 0x80) { *n = 1; return ascii_class[c]; }
    uint32_t cp = utf8_decode(s, len, i, n);
    return cp == UINT32_MAX ? C_O : cp_class(tab, cp);
}

// End of the run of characters of class `cls` starting at s[i].
static inline size_t run_end(const unsigned char *tab, const unsigned char *s, size_t len,
                             size_t i, int cls) {
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            if (ascii_class[c] != cls) break;
            i++;
            continue;
        }
        int n;
        if (char_class(tab, s, len, i, &n) != cls) break;
        i += (size_t)n;
    }
    return i;
}

// The pre-token that starts at s[i] (i < len): returns its end.
static size_t next_piece(const unsigned char *tab, const unsigned char *s, size_t len, size_t i) {
    unsigned c = s[i];
    if (c == '\'' && i + 1 < len) {  // 's 't 're 've 'm 'll 'd (lower case only)
        unsigned d = s[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < len) {
            unsigned e = s[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l'))
                return i + 3;
        }
    }
    int n;
    if (c == ' ' && i + 1 < len) {  // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+"
        int cls = char_class(tab, s, len, i + 1, &n);
        if (cls != C_S) return run_end(tab, s, len, i + 1 + (size_t)n, cls);
    }
    int cls = char_class(tab, s, len, i, &n);
    if (cls != C_S) return run_end(tab, s, len, i + (size_t)n, cls);
    // Whitespace: "\s+(?!\S)" takes the run, less its last character when a
    // non-space follows; a single space character before a non-space falls
    // through to "\s+", which takes it alone.
    size_t last = i, end = i + (size_t)n;
    while (end < len) {
        int m;
        if (char_class(tab, s, len, end, &m) != C_S) break;
        last = end;
        end += (size_t)m;
    }
    if (end < len && last > i) return last;
    return end;
}

// ---------------------------------------------------------------------------
// Loading and validation

#define HDR_BYTES 32

static size_t merge_slot(const Tokenizer *t, uint64_t key) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & t->merge_mask;
}

static inline const MergeEnt *merge_find(const Tokenizer *t, int left, int right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = merge_slot(t, key);
    for (;;) {
        const MergeEnt *e = &t->merges[i];
        if (e->key == key) return e;
        if (e->key == EMPTY_KEY) return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

static int cmp_special(const void *a, const void *b) {
    const Special *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

Tokenizer *tokenizer_load(const void *section, size_t len, char *err, size_t errlen) {
    const unsigned char *p = section;
    if (err && errlen) err[0] = 0;
    if (!p || len < HDR_BYTES) {
        set_err(err, errlen, "tokenizer section too short (%zu bytes, need at least %d)", len,
                HDR_BYTES);
        return NULL;
    }
    if (memcmp(p, "GPT2TOK_", 8) != 0) {
        set_err(err, errlen, "tokenizer section: bad magic (expected \"GPT2TOK_\")");
        return NULL;
    }
    uint32_t version = read_u32le(p + 8), n_tokens = read_u32le(p + 12), n_merges = read_u32le(p + 16);
    uint32_t n_special = read_u32le(p + 20), blob_bytes = read_u32le(p + 24), reserved = read_u32le(p + 28);
    if (version != 1) {
        set_err(err, errlen, "tokenizer section: unsupported version %u (expected 1)", version);
        return NULL;
    }
    if (reserved != 0) {
        set_err(err, errlen, "tokenizer section: reserved header field is %u, not 0", reserved);
        return NULL;
    }
    if (n_tokens < 256 || n_tokens > (uint32_t)INT_MAX - 1) {
        set_err(err, errlen, "tokenizer section: n_tokens %u out of range (256 .. %d)", n_tokens,
                INT_MAX - 1);
        return NULL;
    }
    uint64_t want = (uint64_t)HDR_BYTES + 4 * ((uint64_t)n_tokens + 1) + 12 * (uint64_t)n_merges +
                    4 * (uint64_t)n_special + blob_bytes;
    if (want != (uint64_t)len) {
        set_err(err, errlen,
                "tokenizer section: size mismatch: header implies %llu bytes "
                "(n_tokens=%u n_merges=%u n_special=%u blob_bytes=%u) but the section has %zu",
                (unsigned long long)want, n_tokens, n_merges, n_special, blob_bytes, len);
        return NULL;
    }
    const unsigned char *offs = p + HDR_BYTES;
    const unsigned char *mp = offs + 4 * ((size_t)n_tokens + 1);
    const unsigned char *sp = mp + 12 * (size_t)n_merges;
    const unsigned char *blob = sp + 4 * (size_t)n_special;

    if (read_u32le(offs) != 0) {
        set_err(err, errlen, "tokenizer section: token_offsets[0] is %u, not 0", read_u32le(offs));
        return NULL;
    }
    int byte_id[256];
    for (int b = 0; b < 256; b++) byte_id[b] = -1;
    uint32_t prev = 0;
    for (uint32_t i = 1; i <= n_tokens; i++) {
        uint32_t o = read_u32le(offs + 4 * (size_t)i);
        if (o < prev || o > blob_bytes) {
            set_err(err, errlen,
                    "tokenizer section: token_offsets[%u] = %u is %s (previous %u, blob %u bytes)",
                    i, o, o < prev ? "decreasing" : "past the blob", prev, blob_bytes);
            return NULL;
        }
        if (o - prev == 1 && byte_id[blob[prev]] < 0) byte_id[blob[prev]] = (int)(i - 1);
        prev = o;
    }
    if (prev != blob_bytes) {
        set_err(err, errlen, "tokenizer section: token_offsets[%u] = %u, expected blob_bytes %u",
                n_tokens, prev, blob_bytes);
        return NULL;
    }
    // Special ids: in range, non-empty.
    for (uint32_t i = 0; i < n_special; i++) {
        uint32_t id = read_u32le(sp + 4 * (size_t)i);
        if (id >= n_tokens) {
            set_err(err, errlen, "tokenizer section: special token %u has id %u >= n_tokens %u", i,
                    id, n_tokens);
            return NULL;
        }
        if (read_u32le(offs + 4 * (size_t)id + 4) == read_u32le(offs + 4 * (size_t)id)) {
            set_err(err, errlen, "tokenizer section: special token id %u has no bytes", id);
            return NULL;
        }
    }
    // Single-byte tokens: prefer ids that are not special tokens.
    for (uint32_t i = 0; i < n_special; i++) {
        uint32_t id = read_u32le(sp + 4 * (size_t)i);
        uint32_t o = read_u32le(offs + 4 * (size_t)id);
        if (read_u32le(offs + 4 * (size_t)id + 4) - o == 1 && byte_id[blob[o]] == (int)id) {
            byte_id[blob[o]] = -1;
            for (uint32_t j = id + 1; j < n_tokens; j++) {
                uint32_t oj = read_u32le(offs + 4 * (size_t)j);
                if (read_u32le(offs + 4 * (size_t)j + 4) - oj == 1 && blob[oj] == blob[o]) {
                    byte_id[blob[o]] = (int)j;
                    break;
                }
            }
            if (byte_id[blob[o]] < 0) byte_id[blob[o]] = (int)id;
        }
    }
    for (int b = 0; b < 256; b++) {
        if (byte_id[b] < 0) {
            set_err(err, errlen,
                    "tokenizer section: no token for the single byte 0x%02X (not a byte-level BPE)",
                    b);
            return NULL;
        }
    }

    Tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        set_err(err, errlen, "out of memory loading the tokenizer");
        return NULL;
    }
    t->offs = offs;
    t->blob = blob;
    t->n_tokens = n_tokens;
    t->n_merges = n_merges;
    t->n_special = n_special;
    t->blob_bytes = blob_bytes;
    memcpy(t->byte_id, byte_id, sizeof byte_id);
    t->small_piece = SMALL_PIECE;
    t->use_cache = 1;

    // Merges: ids in range, parts non-empty, bytes(merged) == bytes(left) ++ bytes(right).
    size_t slots = 16;
    while (slots < 2 * (size_t)n_merges + 16) slots *= 2;
    t->merges = malloc(slots * sizeof *t->merges);
    t->uclass = build_uclass();
    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    t->cache_keys = malloc(CACHE_ARENA);
    t->cache_ids = malloc(CACHE_ARENA * sizeof(int));
    if (!t->merges || !t->uclass || !t->cache || !t->cache_keys || !t->cache_ids) {
        set_err(err, errlen, "out of memory loading the tokenizer");
        tokenizer_free(t);
        return NULL;
    }
    for (size_t i = 0; i < slots; i++) t->merges[i].key = EMPTY_KEY;
    t->merge_mask = slots - 1;
    for (uint32_t r = 0; r < n_merges; r++) {
        const unsigned char *m = mp + 12 * (size_t)r;
        uint32_t a = read_u32le(m), b = read_u32le(m + 4), c = read_u32le(m + 8);
        if (a >= n_tokens || b >= n_tokens || c >= n_tokens) {
            set_err(err, errlen, "tokenizer section: merge %u (%u, %u -> %u) has an id >= n_tokens %u",
                    r, a, b, c, n_tokens);
            tokenizer_free(t);
            return NULL;
        }
        uint32_t oa = read_u32le(offs + 4 * (size_t)a), la = read_u32le(offs + 4 * (size_t)a + 4) - oa;
        uint32_t ob = read_u32le(offs + 4 * (size_t)b), lb = read_u32le(offs + 4 * (size_t)b + 4) - ob;
        uint32_t oc = read_u32le(offs + 4 * (size_t)c), lc = read_u32le(offs + 4 * (size_t)c + 4) - oc;
        if (la == 0 || lb == 0 || (uint64_t)lc != (uint64_t)la + lb ||
            memcmp(blob + oc, blob + oa, la) != 0 || memcmp(blob + oc + la, blob + ob, lb) != 0) {
            set_err(err, errlen,
                    "tokenizer section: merge %u (%u, %u -> %u): the merged token's bytes are not "
                    "the concatenation of its (non-empty) parts",
                    r, a, b, c);
            tokenizer_free(t);
            return NULL;
        }
        uint64_t key = (uint64_t)a << 32 | b;
        size_t i = merge_slot(t, key);
        while (t->merges[i].key != EMPTY_KEY && t->merges[i].key != key) i = (i + 1) & t->merge_mask;
        t->merges[i].key = key;  // a later duplicate overwrites: the last rank wins
        t->merges[i].rank = r;
        t->merges[i].merged = c;
    }
    // Special tokens, longest first for longest-match at a position.
    if (n_special) {
        t->specials = malloc(n_special * sizeof *t->specials);
        if (!t->specials) {
            set_err(err, errlen, "out of memory loading the tokenizer");
            tokenizer_free(t);
            return NULL;
        }
        for (uint32_t i = 0; i < n_special; i++) {
            uint32_t id = read_u32le(sp + 4 * (size_t)i);
            size_t l;
            const unsigned char *s = tokenizer_token(t, (int)id, &l);
            t->specials[t->n_specials].id = (int)id;
            t->specials[t->n_specials].bytes = s;
            t->specials[t->n_specials].len = l;
            t->n_specials++;
            t->special_first[s[0]] = 1;
        }
        qsort(t->specials, t->n_specials, sizeof *t->specials, cmp_special);
    }
    return t;
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    free(t->merges);
    free(t->specials);
    free(t->uclass);
    free(t->cache);
    free(t->cache_keys);
    free(t->cache_ids);
    free(t->ids);
    free(t->ranks);
    free(t->syms);
    free(t->heap);
    free(t);
}

int tokenizer_n_tokens(const Tokenizer *t) { return (int)t->n_tokens; }

const unsigned char *tokenizer_token(const Tokenizer *t, int id, size_t *len) {
    if (id < 0 || (uint32_t)id >= t->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    uint32_t o = read_u32le(t->offs + 4 * (size_t)id), e = read_u32le(t->offs + 4 * (size_t)id + 4);
    if (len) *len = e - o;
    return t->blob + o;
}

int tokenizer_special_id(const Tokenizer *t, const char *text) {
    size_t n = strlen(text);
    for (size_t i = 0; i < t->n_specials; i++)
        if (t->specials[i].len == n && memcmp(t->specials[i].bytes, text, n) == 0)
            return t->specials[i].id;
    return -1;
}

int tokenizer_char_class(const Tokenizer *t, uint32_t cp) {
    static const char names[4] = {'O', 'L', 'N', 'S'};
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return 'O';
    return names[cp_class(t->uclass, cp)];
}

void tokenizer_set_options(Tokenizer *t, size_t small_piece, int use_cache) {
    t->small_piece = small_piece;
    t->use_cache = use_cache != 0;
}

const char *tokenizer_unicode_version(void) { return UCLASS_UNICODE_VERSION; }

size_t tokenizer_next_piece(const Tokenizer *t, const unsigned char *text, size_t len, size_t pos) {
    if (pos >= len) return len;
    return next_piece(t->uclass, text, len, pos);
}

// ---------------------------------------------------------------------------
// Encoding

void tokenlist_free(TokenList *l) {
    if (!l) return;
    free(l->ids);
    l->ids = NULL;
    l->len = l->cap = 0;
}

static int tl_reserve(TokenList *l, size_t extra) {
    if (l->cap - l->len >= extra) return 0;
    size_t cap = l->cap ? l->cap : 64;
    while (cap - l->len < extra) {
        if (cap > SIZE_MAX / 2 / sizeof(int)) return -1;
        cap *= 2;
    }
    int *ids = realloc(l->ids, cap * sizeof(int));
    if (!ids) return -1;
    l->ids = ids;
    l->cap = cap;
    return 0;
}

static int ensure_scratch(Tokenizer *t, size_t n) {
    if (n <= t->scratch_cap) return 0;
    size_t cap = t->scratch_cap ? t->scratch_cap : 256;
    while (cap < n) cap *= 2;
    int *ids = realloc(t->ids, cap * sizeof *ids);
    if (ids) t->ids = ids;
    uint32_t *ranks = realloc(t->ranks, cap * sizeof *ranks);
    if (ranks) t->ranks = ranks;
    Sym *syms = realloc(t->syms, cap * sizeof *syms);
    if (syms) t->syms = syms;
    HeapEnt *heap = realloc(t->heap, 2 * cap * sizeof *heap);
    if (heap) t->heap = heap;
    if (!ids || !ranks || !syms || !heap) return -1;
    t->scratch_cap = cap;
    return 0;
}

static inline uint64_t hash_bytes(const unsigned char *p, size_t n) {
    uint64_t h = 0x243F6A8885A308D3ull ^ (n * 0x9E3779B97F4A7C15ull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    return h | 1;  // 0 marks an empty slot
}

// Direct BPE for short pieces: repeatedly merge the lowest-rank adjacent pair
// (leftmost among equals). ids[0..n) holds the byte tokens; returns the count.
static size_t bpe_small(const Tokenizer *t, int *ids, uint32_t *ranks, size_t n) {
    const MergeEnt *e;
    for (size_t i = 0; i + 1 < n; i++) {
        e = merge_find(t, ids[i], ids[i + 1]);
        ranks[i] = e ? e->rank : UINT32_MAX;
    }
    while (n > 1) {
        uint32_t best = UINT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < n; i++)
            if (ranks[i] < best) best = ranks[i], bi = i;
        if (best == UINT32_MAX) break;
        e = merge_find(t, ids[bi], ids[bi + 1]);
        ids[bi] = (int)e->merged;
        memmove(ids + bi + 1, ids + bi + 2, (n - bi - 2) * sizeof *ids);
        if (bi + 2 < n) memmove(ranks + bi + 1, ranks + bi + 2, (n - bi - 2 - 1) * sizeof *ranks);
        n--;
        if (bi > 0) {
            e = merge_find(t, ids[bi - 1], ids[bi]);
            ranks[bi - 1] = e ? e->rank : UINT32_MAX;
        }
        if (bi + 1 < n) {
            e = merge_find(t, ids[bi], ids[bi + 1]);
            ranks[bi] = e ? e->rank : UINT32_MAX;
        }
    }
    return n;
}

static inline int heap_less(const HeapEnt *a, const HeapEnt *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(HeapEnt *h, size_t *n, HeapEnt v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static HeapEnt heap_pop(HeapEnt *h, size_t *n) {
    HeapEnt top = h[0], v = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &v)) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = v;
    return top;
}

// BPE for long pieces: a min-heap of (rank, position) over adjacent pairs and a
// doubly linked list of symbols; stale heap entries are skipped when popped.
static size_t bpe_heap(Tokenizer *t, int *ids, size_t n) {
    Sym *s = t->syms;
    HeapEnt *h = t->heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        s[i].id = ids[i];
        s[i].prev = (int)i - 1;
        s[i].next = i + 1 < n ? (int)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const MergeEnt *e = merge_find(t, ids[i], ids[i + 1]);
        if (e) heap_push(h, &hn, (HeapEnt){e->rank, (uint32_t)i, e->merged});
    }
    while (hn) {
        HeapEnt top = heap_pop(h, &hn);
        Sym *a = &s[top.pos];
        if (a->id < 0 || a->next < 0) continue;
        Sym *b = &s[a->next];
        const MergeEnt *e = merge_find(t, a->id, b->id);
        if (!e || e->merged != top.merged) continue;  // stale entry
        a->id = (int)top.merged;
        b->id = -1;
        a->next = b->next;
        if (b->next >= 0) s[b->next].prev = (int)top.pos;
        if (a->prev >= 0) {
            e = merge_find(t, s[a->prev].id, a->id);
            if (e) heap_push(h, &hn, (HeapEnt){e->rank, (uint32_t)a->prev, e->merged});
        }
        if (a->next >= 0) {
            e = merge_find(t, a->id, s[a->next].id);
            if (e) heap_push(h, &hn, (HeapEnt){e->rank, top.pos, e->merged});
        }
    }
    size_t m = 0;
    for (int i = 0; i >= 0; i = s[i].next) ids[m++] = s[i].id;
    return m;
}

static void cache_reset(Tokenizer *t) {
    memset(t->cache, 0, CACHE_SLOTS * sizeof *t->cache);
    t->cache_count = t->cache_keys_used = t->cache_ids_used = 0;
}

static int encode_piece(Tokenizer *t, const unsigned char *p, size_t n, TokenList *out) {
    if (n == 1) {
        if (tl_reserve(out, 1)) return -1;
        out->ids[out->len++] = t->byte_id[p[0]];
        return 0;
    }
    uint64_t h = 0;
    size_t slot = 0;
    int cached = t->use_cache && n <= CACHE_KEY_MAX;
    if (cached) {
        h = hash_bytes(p, n);
        slot = (size_t)h & (CACHE_SLOTS - 1);
        for (;;) {
            const CacheEnt *c = &t->cache[slot];
            if (c->hash == 0) break;
            if (c->hash == h && c->key_len == n && memcmp(t->cache_keys + c->key_off, p, n) == 0) {
                if (tl_reserve(out, c->n_ids)) return -1;
                memcpy(out->ids + out->len, t->cache_ids + c->ids_off, c->n_ids * sizeof(int));
                out->len += c->n_ids;
                return 0;
            }
            slot = (slot + 1) & (CACHE_SLOTS - 1);
        }
    }
    if (ensure_scratch(t, n)) return -1;
    int *ids = t->ids;
    for (size_t i = 0; i < n; i++) ids[i] = t->byte_id[p[i]];
    size_t m = n <= t->small_piece ? bpe_small(t, ids, t->ranks, n) : bpe_heap(t, ids, n);
    if (tl_reserve(out, m)) return -1;
    memcpy(out->ids + out->len, ids, m * sizeof(int));
    out->len += m;
    if (cached) {
        if (t->cache_count >= CACHE_MAX_ENTRIES || t->cache_keys_used + n > CACHE_ARENA ||
            t->cache_ids_used + m > CACHE_ARENA) {
            cache_reset(t);
            slot = (size_t)h & (CACHE_SLOTS - 1);
        }
        CacheEnt *c = &t->cache[slot];
        c->hash = h;
        c->key_off = (uint32_t)t->cache_keys_used;
        c->key_len = (uint16_t)n;
        c->ids_off = (uint32_t)t->cache_ids_used;
        c->n_ids = (uint16_t)m;
        memcpy(t->cache_keys + t->cache_keys_used, p, n);
        memcpy(t->cache_ids + t->cache_ids_used, ids, m * sizeof(int));
        t->cache_keys_used += n;
        t->cache_ids_used += m;
        t->cache_count++;
    }
    return 0;
}

static int encode_ordinary(Tokenizer *t, const unsigned char *s, size_t len, TokenList *out) {
    size_t i = 0;
    while (i < len) {
        size_t e = next_piece(t->uclass, s, len, i);
        if (encode_piece(t, s + i, e - i, out)) return -1;
        i = e;
    }
    return 0;
}

int tokenizer_encode(Tokenizer *t, const unsigned char *text, size_t len, int special,
                     TokenList *out) {
    if (!special || t->n_specials == 0) return encode_ordinary(t, text, len, out);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (!t->special_first[text[i]]) continue;
        for (size_t k = 0; k < t->n_specials; k++) {
            const Special *sp = &t->specials[k];
            if (sp->len <= len - i && memcmp(text + i, sp->bytes, sp->len) == 0) {
                if (encode_ordinary(t, text + start, i - start, out)) return -1;
                if (tl_reserve(out, 1)) return -1;
                out->ids[out->len++] = sp->id;
                start = i + sp->len;
                i = start - 1;
                break;
            }
        }
    }
    return encode_ordinary(t, text + start, len - start, out);
}

// ---------------------------------------------------------------------------
// Streaming UTF-8 output

// Number of bytes of the character that starts with lead byte c (0 if c can
// never start a well-formed sequence).
static int utf8_need(unsigned c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

// Can byte c follow the held bytes h[0..k) of a well-formed sequence?
static int utf8_cont_ok(const unsigned char *h, int k, unsigned c) {
    if ((c & 0xC0) != 0x80) return 0;
    if (k == 1) {
        switch (h[0]) {
            case 0xE0: return c >= 0xA0;
            case 0xED: return c <= 0x9F;
            case 0xF0: return c >= 0x90;
            case 0xF4: return c <= 0x8F;
            default: return 1;
        }
    }
    return 1;
}

size_t utf8_stream_push(Utf8Stream *s, const unsigned char *bytes, size_t len, unsigned char *out) {
    size_t w = 0;
    if (s->n_held < 0 || s->n_held > 3) s->n_held = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned c = bytes[i];
        if (s->n_held > 0) {
            if (utf8_cont_ok(s->held, s->n_held, c)) {
                s->held[s->n_held++] = (unsigned char)c;
                if (s->n_held == utf8_need(s->held[0])) {
                    memcpy(out + w, s->held, (size_t)s->n_held);
                    w += (size_t)s->n_held;
                    s->n_held = 0;
                }
                continue;
            }
            // The held bytes can never complete: pass them through as they are.
            memcpy(out + w, s->held, (size_t)s->n_held);
            w += (size_t)s->n_held;
            s->n_held = 0;
        }
        int need = utf8_need(c);
        if (need > 1) {
            s->held[0] = (unsigned char)c;
            s->n_held = 1;
        } else {
            out[w++] = (unsigned char)c;  // ASCII, or a byte that is never valid here
        }
    }
    return w;
}

size_t utf8_stream_flush(Utf8Stream *s, unsigned char *out) {
    size_t n = s->n_held > 0 && s->n_held <= 3 ? (size_t)s->n_held : 0;
    memcpy(out, s->held, n);
    s->n_held = 0;
    return n;
}
