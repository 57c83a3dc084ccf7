/* quant.c: the storage kinds' table and the scalar reference quantizers/dequantizers
 * (q8_0 and q4_0 follow ggml's quantize_row_*_ref step for step, so their bytes match). */
#include "tensor/quant.h"

#include <math.h>
#include <string.h>

#include "tensor/dtype.h"

const float cb_nf4_levels[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

static const struct {
    const char *name;
    int block_values;
    size_t block_bytes;
} kind_table[CB_KV_COUNT] = {
    [CB_KV_F32] = {"fp32", 1, 4},
    [CB_KV_F16] = {"fp16", 1, 2},
    [CB_KV_BF16] = {"bf16", 1, 2},
    [CB_KV_Q8_0] = {"q8_0", CB_QK8_0, sizeof(cb_block_q8_0)},
    [CB_KV_Q4_0] = {"q4_0", CB_QK4_0, sizeof(cb_block_q4_0)},
    [CB_KV_NF4] = {"nf4", CB_QKNF4, sizeof(cb_block_nf4)},
};

int cb_kv_kind_valid(int k) { return k >= 0 && k < CB_KV_COUNT; }

const char *cb_kv_kind_name(cb_kv_kind k) { return cb_kv_kind_valid((int)k) ? kind_table[k].name : NULL; }

int cb_kv_kind_from_name(const char *name, cb_kv_kind *out) {
    for (int k = 0; k < CB_KV_COUNT; k++) {
        if (strcmp(name, kind_table[k].name) == 0) {
            *out = (cb_kv_kind)k;
            return 1;
        }
    }
    return 0;
}

int cb_kv_kind_block_values(cb_kv_kind k) { return cb_kv_kind_valid((int)k) ? kind_table[k].block_values : 0; }

size_t cb_kv_kind_block_bytes(cb_kv_kind k) { return cb_kv_kind_valid((int)k) ? kind_table[k].block_bytes : 0; }

size_t cb_kv_kind_bytes(cb_kv_kind k, size_t n) {
    if (!cb_kv_kind_valid((int)k)) return 0;
    size_t bv = (size_t)kind_table[k].block_values;
    return (n + bv - 1) / bv * kind_table[k].block_bytes;
}

/* ---- q8_0 ---- */

void cb_quantize_row_q8_0(cb_block_q8_0 *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QK8_0; i++) {
        const float *xb = x + i * CB_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < CB_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = cb_f32_to_f16(d);
        for (int j = 0; j < CB_QK8_0; j++) y[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void cb_dequantize_row_q8_0(float *restrict y, const cb_block_q8_0 *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QK8_0; i++) {
        const float d = cb_f16_to_f32(x[i].d);
        for (int j = 0; j < CB_QK8_0; j++) y[i * CB_QK8_0 + j] = (float)x[i].qs[j] * d;
    }
}

/* ---- q4_0 ---- */

void cb_quantize_row_q4_0(cb_block_q4_0 *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QK4_0; i++) {
        const float *xb = x + i * CB_QK4_0;
        float amax = 0.0f, max = 0.0f; // largest magnitude, and that value with its sign
        for (int j = 0; j < CB_QK4_0; j++) {
            if (amax < fabsf(xb[j])) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        const float d = max / -8.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = cb_f32_to_f16(d);
        for (int j = 0; j < CB_QK4_0 / 2; j++) {
            // x * id lies in [-8, 8], so the sum is in [0.5, 16.5] and the cast truncates
            int q0 = (int)(xb[j] * id + 8.5f), q1 = (int)(xb[j + CB_QK4_0 / 2] * id + 8.5f);
            q0 = q0 < 15 ? q0 : 15;
            q1 = q1 < 15 ? q1 : 15;
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void cb_dequantize_row_q4_0(float *restrict y, const cb_block_q4_0 *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QK4_0; i++) {
        const float d = cb_f16_to_f32(x[i].d);
        for (int j = 0; j < CB_QK4_0 / 2; j++) {
            y[i * CB_QK4_0 + j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[i * CB_QK4_0 + j + CB_QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

/* ---- nf4 ---- */

/* Index of the level nearest to v (ties to the lower index): the number of midpoints
 * between adjacent levels that lie strictly below v. The midpoints are exact in double. */
static int nf4_index(float v) {
    int idx = 0;
    for (int i = 0; i < 15; i++)
        idx += (double)v > 0.5 * ((double)cb_nf4_levels[i] + (double)cb_nf4_levels[i + 1]);
    return idx;
}

void cb_quantize_row_nf4(cb_block_nf4 *restrict y, const float *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QKNF4; i++) {
        const float *xb = x + i * CB_QKNF4;
        float amax = 0.0f;
        for (int j = 0; j < CB_QKNF4; j++) amax = fmaxf(amax, fabsf(xb[j]));
        // the largest finite fp16 caps the scale, so a huge value saturates instead of inf
        amax = fminf(amax, 65504.0f);
        y[i].d = cb_f32_to_f16(amax);
        const float d = cb_f16_to_f32(y[i].d); // normalise by the stored scale
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < CB_QKNF4 / 2; j++) {
            int q0 = nf4_index(xb[j] * id), q1 = nf4_index(xb[j + CB_QKNF4 / 2] * id);
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void cb_dequantize_row_nf4(float *restrict y, const cb_block_nf4 *restrict x, size_t n) {
    for (size_t i = 0; i < n / CB_QKNF4; i++) {
        const float d = cb_f16_to_f32(x[i].d);
        for (int j = 0; j < CB_QKNF4 / 2; j++) {
            y[i * CB_QKNF4 + j] = cb_nf4_levels[x[i].qs[j] & 0x0f] * d;
            y[i * CB_QKNF4 + j + CB_QKNF4 / 2] = cb_nf4_levels[x[i].qs[j] >> 4] * d;
        }
    }
}

/* ---- any kind ---- */

static void quantize_blocks(cb_kv_kind k, void *dst, const float *src, size_t n) {
    switch (k) {
    case CB_KV_Q8_0: cb_quantize_row_q8_0(dst, src, n); break;
    case CB_KV_Q4_0: cb_quantize_row_q4_0(dst, src, n); break;
    case CB_KV_NF4: cb_quantize_row_nf4(dst, src, n); break;
    default: break;
    }
}

static void dequantize_blocks(cb_kv_kind k, float *dst, const void *src, size_t n) {
    switch (k) {
    case CB_KV_Q8_0: cb_dequantize_row_q8_0(dst, src, n); break;
    case CB_KV_Q4_0: cb_dequantize_row_q4_0(dst, src, n); break;
    case CB_KV_NF4: cb_dequantize_row_nf4(dst, src, n); break;
    default: break;
    }
}

/* The float kinds convert with plain loops over the inline converters rather than
 * dtype.h's bulk functions: those open an OpenMP region (if'd off below their threshold,
 * still about a microsecond), too much for a head segment of a few dozen values. The
 * converters are branch-free, so `omp simd` vectorises them with the same result per value
 * (GCC -O2 left them scalar: the fp16 KV append of a 512-token prefill was 3% of it). */
void cb_kv_quantize_row(cb_kv_kind k, void *restrict dst, const float *restrict src, size_t n) {
    uint16_t *h = dst;
    switch (k) {
    case CB_KV_F32: memcpy(dst, src, n * sizeof(float)); return;
    case CB_KV_F16:
        #pragma omp simd
        for (size_t i = 0; i < n; i++) h[i] = cb_f32_to_f16(src[i]);
        return;
    case CB_KV_BF16:
        #pragma omp simd
        for (size_t i = 0; i < n; i++) h[i] = cb_f32_to_bf16(src[i]);
        return;
    default: break;
    }
    const size_t bv = (size_t)cb_kv_kind_block_values(k), whole = n / bv * bv;
    if (!bv) return;
    quantize_blocks(k, dst, src, whole);
    if (whole < n) { // the partial last block, padded with zeros
        float pad[CB_QKNF4] = {0};
        memcpy(pad, src + whole, (n - whole) * sizeof(float));
        quantize_blocks(k, (unsigned char *)dst + whole / bv * cb_kv_kind_block_bytes(k), pad, bv);
    }
}

void cb_kv_dequantize_row(cb_kv_kind k, float *restrict dst, const void *restrict src, size_t n) {
    const uint16_t *h = src;
    switch (k) {
    case CB_KV_F32: memcpy(dst, src, n * sizeof(float)); return;
    case CB_KV_F16:
        for (size_t i = 0; i < n; i++) dst[i] = cb_f16_to_f32(h[i]);
        return;
    case CB_KV_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = cb_bf16_to_f32(h[i]);
        return;
    default: break;
    }
    const size_t bv = (size_t)cb_kv_kind_block_values(k), whole = n / bv * bv;
    if (!bv) return;
    dequantize_blocks(k, dst, src, whole);
    if (whole < n) {
        float pad[CB_QKNF4];
        dequantize_blocks(k, pad, (const unsigned char *)src + whole / bv * cb_kv_kind_block_bytes(k), bv);
        memcpy(dst + whole, pad, (n - whole) * sizeof(float));
    }
}
