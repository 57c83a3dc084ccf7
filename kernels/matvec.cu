/* matvec.cu: lib/backend/cpu/matvec.c on the GPU: y (m, rows) = x (m, cols) W^T + bias
 * for W stored in any kind (fp32, fp16, bf16, q8_0, q4_0, nf4), and the conversion of f32
 * rows into a kind (weights once at decode_init, keys and values as they are cached).
 *
 * The products of decoding read every weight once per token: memory-bound. A warp takes
 * one row of W at a time; its lanes read the row in 16-byte pieces of 8 values (quant.cuh's
 * cbk_load8: one 128-bit load for fp16/bf16, two for fp32, a block's scale and 8 quants for
 * the block kinds), dequantise in registers and multiply them into up to TOK tokens at
 * once, so a row is read from memory once for TOK tokens (a prefill chunk of m tokens
 * reads W ceil(m/TOK) times). The input (m, cols) is small and stays in L1/L2.
 *
 * Unlike the CPU, which quantises the input to int8 blocks for the block kinds
 * (backend/cpu/quant_int.h), the input stays float: the GPU's result is the exact product
 * over the dequantised weights, up to float rounding. */
#include "quant.cuh"

#define MV_WARPS 8 /* rows per block of 256 threads */
#define MV_TOK 8   /* tokens a pass over W multiplies at once */

/* KIND a compile-time kind: the loads of an unrolled stretch of a row go out together */
template <int KIND, int TOK>
static __global__ void matvec_rows(float *y, const unsigned char *W, size_t row_bytes, int vec,
                                   const float *x, int xvec, const float *bias, int rows, int cols, int m) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    if (r >= rows) return;
    const unsigned char *row = W + (size_t)r * row_bytes;
    const int chunks = (cols + 7) / 8; /* block kinds: the padded tail reads zero quants */
    for (int t0 = 0; t0 < m; t0 += TOK) {
        const int nt = m - t0 < TOK ? m - t0 : TOK;
        float acc[TOK];
#pragma unroll
        for (int t = 0; t < TOK; t++) acc[t] = 0.0f;
#pragma unroll 4
        for (int c = lane; c < chunks; c += 32) {
            const int j = c * 8;
            float w[8];
            cbk_load8(KIND, row, j, cols, vec, w);
#pragma unroll
            for (int t = 0; t < TOK; t++) {
                if (t >= nt) break;
                const float *xr = x + (size_t)(t0 + t) * cols + j;
                float xv[8];
                if (xvec && j + 8 <= cols) {
                    float4 a = *(const float4 *)xr, b = *(const float4 *)(xr + 4);
                    xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z,
                    xv[7] = b.w;
                } else {
                    for (int u = 0; u < 8; u++) xv[u] = j + u < cols ? xr[u] : 0.0f;
                }
                float s = acc[t];
#pragma unroll
                for (int u = 0; u < 8; u++) s = __fmaf_rn(w[u], xv[u], s);
                acc[t] = s;
            }
        }
#pragma unroll
        for (int t = 0; t < TOK; t++) {
            if (t >= nt) break;
            float s = cbk_warp_sum(acc[t]);
            if (lane == 0) y[(size_t)(t0 + t) * rows + r] = bias ? s + bias[r] : s;
        }
    }
}

void cbk_matvec(float *y, const void *W, size_t row_bytes, int kind, const float *x, const float *bias, int rows,
                int cols, int m) {
    if (rows <= 0 || m <= 0) return;
    /* the float kinds' 128-bit loads need whole, aligned 8-value pieces */
    const int fl = kind == CB_KV_F32 || kind == CB_KV_F16 || kind == CB_KV_BF16;
    const int vec = !fl || (cols % 8 == 0 && (uintptr_t)W % 16 == 0);
    /* x rows 16-byte aligned (an op's input may start anywhere in the slot arena) */
    const int xvec = cols % 4 == 0 && (uintptr_t)x % 16 == 0;
    const unsigned grid = (unsigned)((rows + MV_WARPS - 1) / MV_WARPS), threads = 32 * MV_WARPS;
    const unsigned char *w = (const unsigned char *)W;
#define MV_LAUNCH(K)                                                                                   \
    cbk_launch(m == 1 ? matvec_rows<K, 1> : matvec_rows<K, MV_TOK>, grid, threads, 0, y, w, row_bytes, vec, x, xvec, \
               bias, rows, cols, m);
    switch (kind) {
    case CB_KV_F32: MV_LAUNCH(CB_KV_F32) break;
    case CB_KV_F16: MV_LAUNCH(CB_KV_F16) break;
    case CB_KV_BF16: MV_LAUNCH(CB_KV_BF16) break;
    case CB_KV_Q8_0: MV_LAUNCH(CB_KV_Q8_0) break;
    case CB_KV_Q4_0: MV_LAUNCH(CB_KV_Q4_0) break;
    default: MV_LAUNCH(CB_KV_NF4) break;
    }
#undef MV_LAUNCH
}

/* One block of a block kind (or one value of a float kind) per thread: rows (rows, cols)
 * floats with stride src_ld into rows of dst_ld bytes, as lib/tensor/quant.c's
 * cb_kv_quantize_row (a partial last block padded with zeros). */
static __global__ void quantize_rows(unsigned char *dst, size_t dst_ld, const float *src, size_t src_ld, int kind,
                                     int rows, int cols, int bv, size_t per_row, const int *dpos, size_t pos_ld) {
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    if (dpos) dst += (size_t)*dpos * pos_ld;
    CBK_FOR(i, (size_t)rows * per_row) {
        const size_t r = i / per_row;
        const int b = (int)(i % per_row);
        const float *x = src + r * src_ld;
        unsigned char *o = dst + r * dst_ld;
        cbk_quantize_unit(o, x, kind, b, bv, cols);
    }
}

void cbk_quantize_rows_at(void *dst, size_t dst_ld, const int *dpos, size_t pos_ld, const float *src,
                          size_t src_ld, int kind, int rows, int cols) {
    const int bv = kind == CB_KV_Q8_0 || kind == CB_KV_Q4_0 ? 32 : kind == CB_KV_NF4 ? 64 : 1;
    const size_t per_row = (size_t)(cols + bv - 1) / bv, n = (size_t)rows * per_row;
    if (n)
        cbk_launch(quantize_rows, cbk_grid(n), CBK_THREADS, 0, (unsigned char *)dst, dst_ld, src, src_ld, kind, rows,
                   cols, bv, per_row, dpos, pos_ld);
}

void cbk_quantize_rows(void *dst, size_t dst_ld, const float *src, size_t src_ld, int kind, int rows, int cols) {
    cbk_quantize_rows_at(dst, dst_ld, NULL, 0, src, src_ld, kind, rows, cols);
}

/* dst (rows, cols) floats = the stored rows, 8 values a thread (prefill chunks multiply the
 * dequantised matrix through cuBLAS) */
template <int KIND>
static __global__ void dequantize_rows(float *dst, const unsigned char *src, size_t row_bytes, int vec, int rows,
                                       int cols, int per_row) {
    CBK_FOR(i, (size_t)rows * per_row) {
        const size_t r = i / per_row;
        const int j = (int)(i % per_row) * 8;
        float w[8];
        cbk_load8(KIND, src + r * row_bytes, j, cols, vec, w);
        float *o = dst + r * cols + j;
        for (int u = 0; u < 8 && j + u < cols; u++) o[u] = w[u];
    }
}

void cbk_dequantize_rows(float *dst, const void *src, size_t row_bytes, int kind, int rows, int cols) {
    const int per_row = (cols + 7) / 8;
    const size_t n = (size_t)rows * per_row;
    if (!n) return;
    const int fl = kind == CB_KV_F32 || kind == CB_KV_F16 || kind == CB_KV_BF16;
    const int vec = !fl || (cols % 8 == 0 && (uintptr_t)src % 16 == 0);
    const unsigned char *s = (const unsigned char *)src;
    switch (kind) {
    case CB_KV_F32: dequantize_rows<CB_KV_F32><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    case CB_KV_F16: dequantize_rows<CB_KV_F16><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    case CB_KV_BF16: dequantize_rows<CB_KV_BF16><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    case CB_KV_Q8_0: dequantize_rows<CB_KV_Q8_0><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    case CB_KV_Q4_0: dequantize_rows<CB_KV_Q4_0><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    default: dequantize_rows<CB_KV_NF4><<<cbk_grid(n), CBK_THREADS>>>(dst, s, row_bytes, vec, rows, cols, per_row); break;
    }
}
