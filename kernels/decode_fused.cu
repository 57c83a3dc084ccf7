/* decode_fused.cu: the kernels of a fused decode step (backend/cuda/decode.c with
 * CB_DECODE_FUSED=1; bench/RESULTS.md has what each variant measured): the ops around a
 * one-row product folded into it (the product alone serves the unfused step too, with
 * CB_DECODE_PRODUCTS=step), and the attention's RoPE and cache writes in one launch, so that a Llama layer takes 7
 * launches instead of 14. Each computes what the separate kernels compute (rmsnorm.cu,
 * matvec.cu, swiglu.cu, elementwise.cu's add, rope.cu, matvec.cu's cbk_quantize_rows_at),
 * up to the order of float operations in the norm (see cbk_matvec_step).
 *
 * The product (second version; the first kept 8 floats a piece in flight, 161-198
 * registers a thread, one block an SM, and measured 1.8x slower than the unfused step):
 * a warp a row of W as matvec.cu's, each lane with AHEAD 16-byte pieces in flight (4 or 8,
 * over the NR rows it takes at once, cbk_set_step_tuning), held as the raw 16-bit (or
 * 32-bit) words until they are multiplied, 4 registers a piece of a 16-bit kind, so a block
 * of 8 warps keeps to 64 registers a thread (4 blocks an SM; 3 with AHEAD 8). The grid is
 * at most that many blocks an SM; a warp then takes rows r, r + grid rows, ... and loads
 * the next row's first pieces before it reduces the row it has, so the loads do not stop
 * at a row's end, and a block stages x (and the norm's scale) once for all its rows. The
 * input is staged in shared memory when a norm is folded in (its scale needs the whole of
 * x), or when cbk_set_step_tuning asks for it; else read where it is (L1), as matvec.cu
 * reads it. Every lane sums its pieces in the order matvec.cu's lane does (c = lane,
 * lane + 32, ..., 8 fmas a piece), then the warp sum: with no norm folded, y is
 * cbk_matvec's at m = 1 bit for bit.
 *
 * Under programmatic dependent launch (cbk_set_pdl, CB_CUDA_PDL=1) both may start while the
 * kernel before them ends: they wait for it (cbk_pdl_wait) before touching anything but
 * the weights, so a product's first weight loads overlap the tail of the kernel before. */
#include "quant.cuh"

#define MS_WARPS 8     /* warps (rows at a time) per block of 256 threads */
#define MS_BLOCKS_SM 4 /* blocks an SM the grid holds at most (64 registers a thread) */


/* A piece of 8 values of a stored row as loaded: the 16-bit float kinds raw (one streaming
 * 128-bit load: W is read once a token, it need not stay in L1 or L2), fp32 raw (two), the
 * block kinds dequantised at once (cbk_load8) */
template <int KIND>
struct ms_piece {
    float w[8];
};
template <>
struct ms_piece<CB_KV_BF16> {
    uint4 u;
};
template <>
struct ms_piece<CB_KV_F16> {
    uint4 u;
};
template <>
struct ms_piece<CB_KV_F32> {
    float4 a, b;
};

/* values j .. j+7 of row (vec: whole and 16-byte aligned, else one at a time, 0 past cols) */
__device__ __forceinline__ uint4 ms_fetch16(const unsigned char *row, int j, int cols, int vec) {
    const uint16_t *r = (const uint16_t *)row + j;
    if (vec) return __ldcs((const uint4 *)r);
    uint32_t h[8];
    for (int t = 0; t < 8; t++) h[t] = j + t < cols ? r[t] : 0u;
    return make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
}
template <int KIND>
__device__ __forceinline__ void ms_fetch(ms_piece<KIND> &p, const unsigned char *row, int j, int cols, int vec) {
    cbk_load8(KIND, row, j, cols, vec, p.w);
}
template <>
__device__ __forceinline__ void ms_fetch<CB_KV_BF16>(ms_piece<CB_KV_BF16> &p, const unsigned char *row, int j,
                                                     int cols, int vec) {
    p.u = ms_fetch16(row, j, cols, vec);
}
template <>
__device__ __forceinline__ void ms_fetch<CB_KV_F16>(ms_piece<CB_KV_F16> &p, const unsigned char *row, int j,
                                                    int cols, int vec) {
    p.u = ms_fetch16(row, j, cols, vec);
}
template <>
__device__ __forceinline__ void ms_fetch<CB_KV_F32>(ms_piece<CB_KV_F32> &p, const unsigned char *row, int j,
                                                    int cols, int vec) {
    const float *r = (const float *)row + j;
    if (vec) {
        p.a = __ldcs((const float4 *)r);
        p.b = __ldcs((const float4 *)(r + 4));
    } else {
        float h[8];
        for (int t = 0; t < 8; t++) h[t] = j + t < cols ? r[t] : 0.0f;
        p.a = make_float4(h[0], h[1], h[2], h[3]);
        p.b = make_float4(h[4], h[5], h[6], h[7]);
    }
}

/* the piece's 8 values as floats (the 16-bit kinds as quant.cuh converts them) */
template <int KIND>
__device__ __forceinline__ void ms_values(const ms_piece<KIND> &p, float w[8]) {
#pragma unroll
    for (int t = 0; t < 8; t++) w[t] = p.w[t];
}
template <>
__device__ __forceinline__ void ms_values<CB_KV_BF16>(const ms_piece<CB_KV_BF16> &p, float w[8]) {
    const uint32_t v[4] = {p.u.x, p.u.y, p.u.z, p.u.w};
#pragma unroll
    for (int t = 0; t < 4; t++) w[2 * t] = cbk_bf16_f((uint16_t)(v[t] & 0xffff)), w[2 * t + 1] = cbk_bf16_f((uint16_t)(v[t] >> 16));
}
template <>
__device__ __forceinline__ void ms_values<CB_KV_F16>(const ms_piece<CB_KV_F16> &p, float w[8]) {
    const uint32_t v[4] = {p.u.x, p.u.y, p.u.z, p.u.w};
#pragma unroll
    for (int t = 0; t < 4; t++) w[2 * t] = cbk_f16_f((uint16_t)(v[t] & 0xffff)), w[2 * t + 1] = cbk_f16_f((uint16_t)(v[t] >> 16));
}
template <>
__device__ __forceinline__ void ms_values<CB_KV_F32>(const ms_piece<CB_KV_F32> &p, float w[8]) {
    w[0] = p.a.x, w[1] = p.a.y, w[2] = p.a.z, w[3] = p.a.w, w[4] = p.b.x, w[5] = p.b.y, w[6] = p.b.z, w[7] = p.b.w;
}

/* y (rows) = the product of one row, NR = 1: y[r] = resid[r] + s_r (+ bias[r]); NR = 2
 * (gate and up, W of 2 rows blocks, up row r at r + rows): y[r] = silu(s_r) * s'_r; where
 * s_r = (W_r . (x * nw)) * rstd with x's rms scale when nw (else W_r . x). staged: x is
 * copied into shared memory first (cols floats); else read where it is. AHEAD pieces a
 * lane in flight: AHEAD / NR of each of its NR rows. */
template <int KIND, int NR, int AHEAD>
static __global__ void __launch_bounds__(32 * MS_WARPS, AHEAD > 4 ? 3 : MS_BLOCKS_SM)
    matvec_step(float *y, const unsigned char *W, size_t row_bytes, size_t pair_bytes, int vec, const float *x,
                int staged, int xvec, const float *bias, int rows, int cols, const float *nw, float eps,
                const float *resid) {
    constexpr int PA = AHEAD / NR; /* pieces of each row in flight */
    extern __shared__ float4 ms_smem[];
    __shared__ float red[32];
    float *xs = (float *)ms_smem;
    const int lane = threadIdx.x & 31;
    const int stride = gridDim.x * MS_WARPS;
    int r = blockIdx.x * MS_WARPS + (threadIdx.x >> 5);
    const int chunks = (cols + 7) / 8;
    ms_piece<KIND> p[NR][PA];
    if (r < rows) /* the first pieces before the input is touched (or the kernel before ends) */
#pragma unroll
        for (int u = 0; u < PA; u++)
            if (lane + 32 * u < chunks)
#pragma unroll
                for (int k = 0; k < NR; k++)
                    ms_fetch<KIND>(p[k][u], W + (size_t)r * row_bytes + k * pair_bytes, (lane + 32 * u) * 8, cols, vec);
    cbk_pdl_wait(); /* x, resid and y: the kernels before have finished */
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
    const float *xr = staged ? xs : x;
    for (; r < rows; r += stride) {
        const unsigned char *row0 = W + (size_t)r * row_bytes;
        float acc[NR];
#pragma unroll
        for (int k = 0; k < NR; k++) acc[k] = 0.0f;
        for (int c0 = lane;; c0 += 32 * PA) {
#pragma unroll
            for (int u = 0; u < PA; u++) {
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
                for (int k = 0; k < NR; k++) {
                    float w[8];
                    ms_values<KIND>(p[k][u], w);
#pragma unroll
                    for (int t = 0; t < 8; t++) acc[k] = __fmaf_rn(w[t], xv[t], acc[k]);
                }
            }
            const int next = c0 + 32 * PA;
            if (next - lane >= chunks) break; /* the same for every lane of the warp */
#pragma unroll
            for (int u = 0; u < PA; u++)
                if (next + 32 * u < chunks)
#pragma unroll
                    for (int k = 0; k < NR; k++)
                        ms_fetch<KIND>(p[k][u], row0 + k * pair_bytes, (next + 32 * u) * 8, cols, vec);
        }
        const int rn = r + stride; /* the next row's first pieces before this row's sums */
        if (rn < rows)
#pragma unroll
            for (int u = 0; u < PA; u++)
                if (lane + 32 * u < chunks)
#pragma unroll
                    for (int k = 0; k < NR; k++)
                        ms_fetch<KIND>(p[k][u], W + (size_t)rn * row_bytes + k * pair_bytes, (lane + 32 * u) * 8,
                                       cols, vec);
        float s[NR];
#pragma unroll
        for (int k = 0; k < NR; k++) s[k] = cbk_warp_sum(acc[k]) * scale;
        if (lane == 0) {
            if (NR == 2) {
                y[r] = cbk_silu(s[0]) * s[NR - 1]; /* swiglu.cu's h */
            } else {
                const float v = bias ? s[0] + bias[r] : s[0];
                y[r] = resid ? resid[r] + v : v;
            }
        }
    }
}

static int ms_ahead = 4, ms_stage = 0; /* cbk_set_step_tuning */

void cbk_set_step_tuning(int ahead, int stage) {
    ms_ahead = ahead == 8 ? 8 : 4;
    ms_stage = stage != 0;
    cbk_sm_count(); /* not a stream operation: a step sets this before its capture */
}

void cbk_matvec_step(float *y, const void *W, size_t row_bytes, int kind, const float *x, const float *bias,
                     int rows, int cols, const float *norm_w, float eps, int gate_up, const float *resid) {
    if (rows <= 0) return;
    const int fl = kind == CB_KV_F32 || kind == CB_KV_F16 || kind == CB_KV_BF16;
    const int vec = !fl || (cols % 8 == 0 && (uintptr_t)W % 16 == 0 && row_bytes % 16 == 0);
    if (cols > CBK_STEP_MAX_COLS) norm_w = NULL; /* the caller folds no norm then */
    const int staged = cols <= CBK_STEP_MAX_COLS && (norm_w || ms_stage);
    /* staged: shared memory is 16-byte aligned; else x's own rows (at most one) */
    const int xvec = cols % 4 == 0 && (staged || (uintptr_t)x % 16 == 0);
    const size_t smem = staged ? (size_t)cols * sizeof(float) : 0;
    const size_t pair = gate_up ? (size_t)rows * row_bytes : 0;
    const int most = cbk_sm_count() * (ms_ahead > 4 ? 3 : MS_BLOCKS_SM);
    const int want = (rows + MS_WARPS - 1) / MS_WARPS;
    const unsigned grid = (unsigned)(want < most ? want : most), threads = 32 * MS_WARPS;
    const unsigned char *w = (const unsigned char *)W;
#define MS_LAUNCH(K)                                                                                               \
    if (ms_ahead > 4)                                                                                              \
        cbk_launch(gate_up ? matvec_step<K, 2, 8> : matvec_step<K, 1, 8>, grid, threads, smem, y, w, row_bytes,    \
                   pair, vec, x, staged, xvec, bias, rows, cols, norm_w, eps, resid);                              \
    else                                                                                                           \
        cbk_launch(gate_up ? matvec_step<K, 2, 4> : matvec_step<K, 1, 4>, grid, threads, smem, y, w, row_bytes,    \
                   pair, vec, x, staged, xvec, bias, rows, cols, norm_w, eps, resid);
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
