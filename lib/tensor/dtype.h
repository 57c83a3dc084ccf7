/* dtype.h: element types of tensors, their sizes and names (safetensors, numpy),
 * and the exact conversions between f32 and the 16-bit floats bf16 and f16. */
#ifndef CB_TENSOR_DTYPE_H
#define CB_TENSOR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Values are stable: the enum only grows at the end. */
enum cb_dtype {
    CB_DTYPE_F32 = 0,
    CB_DTYPE_F16,
    CB_DTYPE_BF16,
    CB_DTYPE_F64,
    CB_DTYPE_I8,
    CB_DTYPE_U8,
    CB_DTYPE_I16,
    CB_DTYPE_U16,
    CB_DTYPE_I32,
    CB_DTYPE_U32,
    CB_DTYPE_I64,
    CB_DTYPE_U64,
    CB_DTYPE_BOOL,
    CB_DTYPE_COUNT /* not a type: the number of types, moves as the enum grows */
};

/* 1 when d is one of the types above. */
int cb_dtype_valid(int d);
/* Bytes per element (BOOL is one byte); 0 for an invalid d. */
size_t cb_dtype_size(enum cb_dtype d);
/* The safetensors name: "F32", "BF16", "BOOL", ...; NULL for an invalid d. */
const char *cb_dtype_name(enum cb_dtype d);
/* Parse a safetensors name (exact, case-sensitive). Returns 1 and sets *out, or 0. */
int cb_dtype_from_name(const char *name, enum cb_dtype *out);
/* The numpy descr of a little-endian array: "<f4", "<f2", "|u1", "|b1", ...;
 * NULL for BF16 (numpy has none) or an invalid d. */
const char *cb_dtype_numpy_name(enum cb_dtype d);
/* Parse a numpy descr. Multi-byte types need '<' (or '=' on this little-endian
 * host); one-byte types accept '|', '<', '=' or no prefix. Returns 1 or 0. */
int cb_dtype_from_numpy_name(const char *descr, enum cb_dtype *out);

/* ---- scalar conversions (inline so that loops over them vectorise) ---- */

static inline uint32_t cb_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float cb_f32_from_bits(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

/* bf16 is the top half of an f32: exact. */
static inline float cb_bf16_to_f32(uint16_t h) { return cb_f32_from_bits((uint32_t)h << 16); }

/* f32 -> bf16, round to nearest, ties to even (as PyTorch). Overflow gives inf.
 * NaN stays NaN with its sign and top payload bits, made quiet. */
static inline uint16_t cb_f32_to_bf16(float f) {
    uint32_t x = cb_f32_bits(f);
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    uint32_t nan = (x >> 16) | 0x0040u;
    return (uint16_t)((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

/* f16 -> f32, exact for every pattern: subnormals become normal f32 values,
 * inf stays inf, NaN keeps sign and payload. */
static inline float cb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t magnitude = (uint32_t)(h & 0x7fffu) << 13; /* exponent and mantissa in f32 position */
    uint32_t exponent = magnitude & (0x1fu << 23);
    uint32_t normal = magnitude + ((127u - 15u) << 23);
    uint32_t infnan = magnitude + ((255u - 31u) << 23);
    /* Subnormal: treat the mantissa as that of 2^-14 * 1.m, then subtract 2^-14;
     * the subtraction is exact and renormalises. */
    float subnormal = cb_f32_from_bits(magnitude + (113u << 23)) - cb_f32_from_bits(113u << 23);
    uint32_t bits = exponent == (0x1fu << 23) ? infnan
                  : exponent == 0 ? cb_f32_bits(subnormal)
                  : normal;
    return cb_f32_from_bits(bits | sign);
}

/* f32 -> f16, round to nearest, ties to even (as PyTorch and numpy). Values past
 * the f16 range give inf, tiny ones subnormals or zero. NaN keeps its sign and top
 * 10 payload bits (quiet bit set when those are all zero), so f16 -> f32 -> f16 is
 * the identity on all 65536 patterns. */
static inline uint16_t cb_f32_to_f16(float f) {
    uint32_t x = cb_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    x &= 0x7fffffffu;
    uint32_t payload = (x >> 13) & 0x3ffu;
    uint32_t nan = 0x7c00u | (payload ? payload : 0x200u);
    /* Subnormal or zero result (|f| < 2^-14): adding 2^-1 puts the f16 subnormal
     * mantissa in the low bits of the sum's mantissa, rounded by the FPU (RNE). */
    const uint32_t magic = (126u << 23);
    uint32_t subnormal = cb_f32_bits(cb_f32_from_bits(x) + cb_f32_from_bits(magic)) - magic;
    /* Normal result: rebias the exponent and round the 13 dropped bits to even. */
    uint32_t normal = (x + ((uint32_t)(15 - 127) << 23) + 0xfffu + ((x >> 13) & 1u)) >> 13;
    uint32_t out = x > 0x7f800000u ? nan
                 : x >= (143u << 23) ? 0x7c00u  /* >= 65520 rounds to inf; inf itself */
                 : x < (113u << 23) ? subnormal
                 : normal;
    return (uint16_t)(out | sign);
}

/* ---- bulk conversions: dst[i] = convert(src[i]), i < n; no aliasing ---- */
void cb_bf16_to_f32_n(float *restrict dst, const uint16_t *restrict src, size_t n);
void cb_f32_to_bf16_n(uint16_t *restrict dst, const float *restrict src, size_t n);
void cb_f16_to_f32_n(float *restrict dst, const uint16_t *restrict src, size_t n);
void cb_f32_to_f16_n(uint16_t *restrict dst, const float *restrict src, size_t n);
void cb_f64_to_f32_n(float *restrict dst, const double *restrict src, size_t n);

#endif
