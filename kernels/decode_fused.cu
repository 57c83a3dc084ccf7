/* decode_fused.cu: the kernels of a fused decode step (backend/cuda/decode.c with
 * CB_DECODE_FUSED=1; off by default: as written the products take 160-200 registers a
 * thread for bf16 and fp32, one block of 8 warps an SM, and the step measured 1.8x slower
 * than the unfused one; bench/RESULTS.md): the ops around a one-row product folded into it, and
 * the attention's RoPE and cache writes in one launch, so that a Llama layer takes 7
 * launches instead of 14. Each computes what the separate kernels compute (rmsnorm.cu,
 * matvec.cu, swiglu.cu, elementwise.cu's add, rope.cu, matvec.cu's cbk_quantize_rows_at),
 * up to the order of float operations in the norm (see cbk_matvec_step).
 *
 * The product: a warp a row of W as matvec.cu's, each lane with MS_AHEAD 16-byte pieces of
 * its row in flight (the first ones loaded before the input is touched, so the weights
 * stream while the block stages x), the input staged once a block in shared memory (times
 * the norm's weight when a norm is folded in; the block's sum of squares gives the norm's
 * scale, which multiplies the row's sum).
 *
 * Under programmatic dependent launch (cbk_set_pdl, CB_CUDA_PDL=1) both may start while the
 * kernel before them ends: they wait for it (cbk_pdl_wait) before touching anything but
 * the weights, so a product's first weight loads overlap the tail of the kernel before. */
#include "quant.cuh"

#define MS_WARPS 8 /* rows (or gate/up pairs) per block of 256 threads */
#define MS_AHEAD 4 /* pieces of 8 values per lane and row in flight */

/* A piece of 8 values of a stored row: the 16-bit float kinds with a streaming load (W is
 * read once a token; it need not stay in L1 or L2), the others as cbk_load8 */
template <int KIND>
__device__ __forceinline__ void ms_load(const unsigned char *row, int j, int cols, int vec, float w[8]) {
    if ((KIND == CB_KV_BF16 || KIND == CB_KV_F16) && vec) {
        const uint4 u = __ldcs((const uint4 *)((const uint16_t *)row + j));
        const uint16_t h[8] = {(uint16_t)(u.x & 0xffff), (uint16_t)(u.x >> 16), (uint16_t)(u.y & 0xffff),
                               (uint16_t)(u.y >> 16),    (uint16_t)(u.z & 0xffff), (uint16_t)(u.z >> 16),
                               (uint16_t)(u.w & 0xffff), (uint16_t)(u.w >> 16)};
#pragma unroll
        for (int t = 0; t < 8; t++) w[t] = KIND == CB_KV_BF16 ? cbk_bf16_f(h[t]) : cbk_f16_f(h[t]);
    } else {
        cbk_load8(KIND, row, j, cols, vec, w);
    }
}

/* y (rows) = the product of one row, NR = 1: y[r] = resid[r] + s_r (+ bias[r]); NR = 2
 * (gate and up, W of 2 rows blocks, up row r at r + rows): y[r] = silu(s_r) * s'_r; where
 * s_r = (W_r . (x * nw)) * rstd with x's rms scale when nw (else W_r . x). staged: x is
 * copied into shared memory first (cols floats); else (no norm) read where it is. */
template <int KIND, int NR>
static __global__ void __launch_bounds__(32 * MS_WARPS)
    matvec_step(float *y, const unsigned char *W, size_t row_bytes, size_t pair_bytes, int vec, const float *x,
                int staged, int xvec, const float *bias, int rows, int cols, const float *nw, float eps,
                const float *resid) {
    extern __shared__ float4 ms_smem[];
    __shared__ float red[32];
    float *xs = (float *)ms_smem;
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * MS_WARPS + (threadIdx.x >> 5);
    const unsigned char *row0 = W + (size_t)(r < rows ? r : rows - 1) * row_bytes; /* past the end: loads only */
    const int chunks = (cols + 7) / 8;
    float w[NR][MS_AHEAD][8];
#pragma unroll
    for (int u = 0; u < MS_AHEAD; u++)
        if (lane + 32 * u < chunks)
#pragma unroll
            for (int k = 0; k < NR; k++) ms_load<KIND>(row0 + k * pair_bytes, (lane + 32 * u) * 8, cols, vec, w[k][u]);
    cbk_pdl_wait(); /* x and y: the kernels before have finished */
    float scale = 1.0f;
    if (staged) {
        float ss = 0.0f;
        for (int j = threadIdx.x; j < cols; j += blockDim.x) {
            const float v = x[j];
            ss += v * v;
            xs[j] = nw ? v * nw[j] : v;
        }
        ss = cbk_block_sum(ss, red); /* ends with a barrier: xs is whole */
        if (nw) scale = 1.0f / sqrtf(ss / (float)cols + eps); /* rmsnorm.cu's r */
    }
    if (r >= rows) return;
    const float *xr = staged ? xs : x;
    float acc[NR];
#pragma unroll
    for (int k = 0; k < NR; k++) acc[k] = 0.0f;
    for (int c0 = lane;; c0 += 32 * MS_AHEAD) {
#pragma unroll
        for (int u = 0; u < MS_AHEAD; u++) {
            const int c = c0 + 32 * u, j = c * 8;
            if (c >= chunks) break;
            float xv[8];
            if (xvec && j + 8 <= cols) {
                const float4 a = *(const float4 *)(xr + j), b = *(const float4 *)(xr + j + 4);
                xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w, xv[4] = b.x, xv[5] = b.y, xv[6] = b.z,
                xv[7] = b.w;
            } else {
                for (int t = 0; t < 8; t++) xv[t] = j + t < cols ? xr[j + t] : 0.0f;
            }
#pragma unroll
            for (int k = 0; k < NR; k++)
#pragma unroll
                for (int t = 0; t < 8; t++) acc[k] = __fmaf_rn(w[k][u][t], xv[t], acc[k]);
        }
        const int next = c0 + 32 * MS_AHEAD;
        if (next - lane >= chunks) break; /* the same for every lane of the warp */
#pragma unroll
        for (int u = 0; u < MS_AHEAD; u++)
            if (next + 32 * u < chunks)
#pragma unroll
                for (int k = 0; k < NR; k++) ms_load<KIND>(row0 + k * pair_bytes, (next + 32 * u) * 8, cols, vec, w[k][u]);
    }
    float s[NR];
#pragma unroll
    for (int k = 0; k < NR; k++) s[k] = cbk_warp_sum(acc[k]) * scale;
    if (lane != 0) return;
    if (NR == 2) {
        y[r] = cbk_silu(s[0]) * s[NR - 1]; /* swiglu.cu's h */
    } else {
        float v = bias ? s[0] + bias[r] : s[0];
        y[r] = resid ? resid[r] + v : v;
    }
}

void cbk_matvec_step(float *y, const void *W, size_t row_bytes, int kind, const float *x, const float *bias,
                     int rows, int cols, const float *norm_w, float eps, int gate_up, const float *resid) {
    if (rows <= 0) return;
    const int fl = kind == CB_KV_F32 || kind == CB_KV_F16 || kind == CB_KV_BF16;
    const int vec = !fl || (cols % 8 == 0 && (uintptr_t)W % 16 == 0 && row_bytes % 16 == 0);
    const int staged = cols <= CBK_STEP_MAX_COLS;
    /* staged: shared memory is 16-byte aligned; else x's own rows (at most one) */
    const int xvec = cols % 4 == 0 && (staged || (uintptr_t)x % 16 == 0);
    const size_t smem = staged ? (size_t)cols * sizeof(float) : 0;
    const size_t pair = gate_up ? (size_t)rows * row_bytes : 0;
    const unsigned grid = (unsigned)((rows + MS_WARPS - 1) / MS_WARPS), threads = 32 * MS_WARPS;
    const unsigned char *w = (const unsigned char *)W;
    if (!staged) norm_w = NULL; /* the caller folds no norm then (CBK_STEP_MAX_COLS) */
#define MS_LAUNCH(K)                                                                                         \
    cbk_launch(gate_up ? matvec_step<K, 2> : matvec_step<K, 1>, grid, threads, smem, y, w, row_bytes, pair, vec, x, \
               staged, xvec, bias, rows, cols, norm_w, eps, resid);
    switch (kind) {
    case CB_KV_F32: MS_LAUNCH(CB_KV_F32) break;
    case CB_KV_F16: MS_LAUNCH(CB_KV_F16) break;
    case CB_KV_BF16: MS_LAUNCH(CB_KV_BF16) break;
    case CB_KV_Q8_0: MS_LAUNCH(CB_KV_Q8_0) break;
    case CB_KV_Q4_0: MS_LAUNCH(CB_KV_Q4_0) break;
    default: MS_LAUNCH(CB_KV_NF4) break;
    }
#undef MS_LAUNCH
}

#define RC_THREADS 512

/* One block: q and k (heads nrot of dr, back to back) rotated in place at the step's RoPE
 * row (rope.cu's rope_apply at one row), then the new rows of up to three caches written at
 * position *dpos (quantize_rows's units, from the rotated values). */
static __global__ void __launch_bounds__(RC_THREADS)
    rope_cache_step(float *q, int nrot, int dr, const float *cos_row, const float *sin_row, const int *dpos,
                    cbk_kv_dst k, cbk_kv_dst k_sem, cbk_kv_dst v) {
    cbk_pdl_wait();
    if (cos_row) {
        const int half = dr / 2;
        for (int j = threadIdx.x; j < nrot * half; j += RC_THREADS) {
            const int i = j % half;
            const size_t off = (size_t)(j / half) * dr;
            const float c = cos_row[i], si = sin_row[i];
            const float x1 = q[off + i], x2 = q[off + i + half];
            q[off + i] = x1 * c - x2 * si;
            q[off + i + half] = x2 * c + x1 * si;
        }
        __syncthreads(); /* the rotated keys, seen by the whole block */
    }
    const size_t pos = (size_t)*dpos;
    const cbk_kv_dst *t[3] = {&k, &k_sem, &v};
    for (int n = 0; n < 3; n++) {
        const cbk_kv_dst *d = t[n];
        if (!d->n_heads) continue;
        const int bv = d->kind == CB_KV_Q8_0 || d->kind == CB_KV_Q4_0 ? 32 : d->kind == CB_KV_NF4 ? 64 : 1;
        const int per_row = (d->head_dim + bv - 1) / bv;
        unsigned char *dst = (unsigned char *)d->data + pos * d->row_bytes;
        for (int i = threadIdx.x; i < d->n_heads * per_row; i += RC_THREADS) {
            const int h = i / per_row, b = i % per_row;
            cbk_quantize_unit(dst + (size_t)h * d->head_bytes, d->src + (size_t)h * d->head_dim, d->kind, b, bv,
                              d->head_dim);
        }
    }
}

void cbk_rope_cache_step(float *q, int H, int Hkv, int dr, const float *cos_row, const float *sin_row,
                         const int *dpos, const cbk_kv_dst *k, const cbk_kv_dst *k_sem, const cbk_kv_dst *v) {
    cbk_launch(rope_cache_step, 1, RC_THREADS, 0, q, H + Hkv, dr, cos_row, sin_row, dpos, *k, *k_sem, *v);
}
