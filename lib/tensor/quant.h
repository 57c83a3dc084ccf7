/* quant.h: the storage kinds of cached keys/values and of decode weights (fp32, fp16,
 * bf16 and the block formats q8_0, q4_0, nf4 of docs/DESIGN.md section 5), their block
 * structs, sizes and names, and row quantize/dequantize. */
#ifndef CB_TENSOR_QUANT_H
#define CB_TENSOR_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/* q8_0 (ggml's layout): 32 values, an fp16 scale d = absmax / 127, then q = round(x / d)
 * as int8. Quantized as ggml does, id = 1/d (f32), q = roundf(x * id), so the bytes
 * equal ggml's quantize_row_q8_0_ref for the same input. Value j = qs[j] * d. */
#define CB_QK8_0 32
typedef struct cb_block_q8_0 {
    uint16_t d;            /* fp16 bits */
    int8_t qs[CB_QK8_0];
} cb_block_q8_0;
static_assert(sizeof(cb_block_q8_0) == 34, "q8_0 block is 34 bytes");

/* q4_0 (ggml's layout): 32 values, an fp16 scale d = m / -8 where m is the value of
 * largest magnitude, signed (the first one on a tie); id = 1/d (0 when d = 0);
 * q = min(15, (int)(x * id + 8.5)); value j in the low nibble of byte j, value j + 16 in
 * its high nibble. Value j = (q_j - 8) * d. An all-zero block has d = 0 / -8 = -0 (fp16
 * 0x8000, as ggml writes it) and every q = 8. */
#define CB_QK4_0 32
typedef struct cb_block_q4_0 {
    uint16_t d;                /* fp16 bits */
    uint8_t qs[CB_QK4_0 / 2];
} cb_block_q4_0;
static_assert(sizeof(cb_block_q4_0) == 18, "q4_0 block is 18 bytes");

/* nf4 (QLoRA's NormalFloat4): 64 values, an fp16 absmax scale d (capped at 65504), then
 * for each value the index of the level of cb_nf4_levels nearest to x * (1/d) in f32, d the
 * stored, fp16-rounded scale (a tie goes to the lower index). Value j in the low nibble of byte j, value j + 32 in its
 * high nibble (the q4_0 convention over a 64-value block). Value j = level[idx_j] * d. */
#define CB_QKNF4 64
typedef struct cb_block_nf4 {
    uint16_t d;                /* fp16 bits */
    uint8_t qs[CB_QKNF4 / 2];
} cb_block_nf4;
static_assert(sizeof(cb_block_nf4) == 34, "nf4 block is 34 bytes");

/* The 16 NormalFloat4 levels of QLoRA (bitsandbytes' table), ascending, -1 .. 1. */
extern const float cb_nf4_levels[16];

/* Storage kinds. Values are stable: the enum only grows at the end. */
typedef enum cb_kv_kind {
    CB_KV_F32 = 0,
    CB_KV_F16,
    CB_KV_BF16,
    CB_KV_Q8_0,
    CB_KV_Q4_0,
    CB_KV_NF4,
    CB_KV_COUNT /* not a kind: the number of kinds, moves as the enum grows */
} cb_kv_kind;

/* 1 when k is one of the kinds above. */
int cb_kv_kind_valid(int k);
/* "fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4"; NULL for an invalid kind. */
const char *cb_kv_kind_name(cb_kv_kind k);
/* Parse a name above (exact). Returns 1 and sets *out, or 0. */
int cb_kv_kind_from_name(const char *name, cb_kv_kind *out);
/* Values per block: 1 (fp32, fp16, bf16), 32 (q8_0, q4_0), 64 (nf4); 0 if invalid. */
int cb_kv_kind_block_values(cb_kv_kind k);
/* Bytes per block: 4, 2, 2, 34, 18, 34; 0 if invalid. */
size_t cb_kv_kind_block_bytes(cb_kv_kind k);
/* Bytes that n values occupy stored as one row: n rounded up to whole blocks. */
size_t cb_kv_kind_bytes(cb_kv_kind k, size_t n);

/* Row conversions. n must be a multiple of the block (32 or 64).
 * y: n / block blocks; x: n floats. */
void cb_quantize_row_q8_0(cb_block_q8_0 *restrict y, const float *restrict x, size_t n);
void cb_quantize_row_q4_0(cb_block_q4_0 *restrict y, const float *restrict x, size_t n);
void cb_quantize_row_nf4(cb_block_nf4 *restrict y, const float *restrict x, size_t n);
void cb_dequantize_row_q8_0(float *restrict y, const cb_block_q8_0 *restrict x, size_t n);
void cb_dequantize_row_q4_0(float *restrict y, const cb_block_q4_0 *restrict x, size_t n);
void cb_dequantize_row_nf4(float *restrict y, const cb_block_nf4 *restrict x, size_t n);

/* Any kind, any n: dst gets cb_kv_kind_bytes(k, n) bytes; a partial last block is
 * quantized as if padded with zeros (its padding values dequantize to 0).
 * src (n) floats. */
void cb_kv_quantize_row(cb_kv_kind k, void *restrict dst, const float *restrict src, size_t n);
/* dst (n) floats = the first n values of the stored row src. */
void cb_kv_dequantize_row(cb_kv_kind k, float *restrict dst, const void *restrict src, size_t n);

#endif
