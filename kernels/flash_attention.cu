/* flash_attention.cu: causal (or full) attention of the mixed-precision path without the
 * (T, T) score matrix, FlashAttention-2 style, for every mode of layers/attention.c at
 * once. The score is a dot product of the concatenations
 *     qcat = [q_sem c_sem, q c_rot],  kcat = [k_sem, k]
 * (c_sem = 1/sqrt(ds) and c_rot = 1/sqrt(dr), times 2g and 2 - 2g under DBA's gate;
 * standard and GQA have ds = 0), so one kernel of key width dqk = ds + dr and value width
 * dv (each padded to 64, 128 or 256) serves standard, GQA and DBA; a query head h reads
 * the keys and values of kv head h / group.
 *
 * Inputs and outputs are float32 in the projections' row layouts; a tile is rounded to
 * bf16 when it is loaded into shared memory (the query after its scale), the products run
 * on the tensor cores (mma.sync m16n8k16, bf16 in, float32 sums) and everything else
 * (the online softmax, the log-sum-exp, dS = P (dP - D)) in float32.
 *
 * Forward: a block of 8 warps owns 128 query rows of one (batch, head), 16 rows a warp,
 * and walks the key blocks of 64 up to the causal edge, keeping the running max and sum
 * per row; it writes out = P v / l and lse = m + log l (natural log, as the CPU's).
 * Backward, deterministic (no atomics): D = rowsum(dout * out) first; then one kernel
 * per query block recomputes P and dP = dout v^T key block by key block and sums
 * dqcat = dS kcat (written scaled into dq_sem, dq, and the gate logit's gradient from
 * dqcat . q), and one kernel per key block of a kv head walks every query block of every
 * head of its group and sums dv = P^T dout and dkcat = dS^T qcat in registers. That
 * recomputes S and dP twice (7 products where FlashAttention-2 with atomics has 5), the
 * price of sums in a fixed order. */
#include "common.cuh"

#include <cuda_bf16.h>

#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
/* 8 warps of 16 rows: 128 query rows share each key tile (128 keys each query tile in
 * dk/dv), which halves the tile traffic per product against 4 warps; the first device
 * run (4 warps, bench/RESULTS.md) was bound by that traffic */
#define FA_WARPS 8
#define FA_THREADS (32 * FA_WARPS)
#define FA_BM (16 * FA_WARPS) /* query rows of a forward / dq block; key rows of a dk/dv block */
#define FA_BN 64 /* key rows of a forward / dq step */

typedef __nv_bfloat16 bf16;

struct fa_params {
    int B, T, H, Hkv, group, causal, ds, dr, dv;
    float s0, s1; /* 1/sqrt(ds) (0 when ds = 0), 1/sqrt(dr) */
    const float *q_sem, *q, *k_sem, *k, *v, *gate;
    int vec_q, vec_k, vec_v, vec_o; /* float4 loads: widths multiples of 4, 16-byte aligned */
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

__device__ __forceinline__ void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldsm_x4(uint32_t *r, const bf16 *p) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const bf16 *p) {
    uint32_t s = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
}

/* acc (16 x 8 NT, C fragments) += A (16 x 16 KS, row-major at A, stride lda) times
 * B^T where B is stored [n][k] (NT 8 rows, row-major at Bnk, stride ldb): S = Q K^T. */
template <int KS, int NT>
__device__ __forceinline__ void mma_a_bnk(float (*acc)[4], const bf16 *A, int lda, const bf16 *Bnk, int ldb,
                                          int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t a[4];
        ldsm_x4(a, A + (lane & 15) * lda + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldsm_x4(b, Bnk + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ldb + kk * 16 + ((lane >> 3) & 1) * 8);
            mma_bf16(acc[2 * np], a, b[0], b[1]);
            mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* acc (16 x 8 NT) += P (16 x 16 KS, C fragments of float32 rounded to bf16: two 8-wide
 * C tiles make one A fragment) times B stored [k][n] (row-major at Bkn, stride ldb). */
template <int KS, int NT>
__device__ __forceinline__ void mma_p_bkn(float (*acc)[4], const float (*p)[4], const bf16 *Bkn, int ldb,
                                          int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t a[4] = {pack_bf16(p[2 * kk][0], p[2 * kk][1]), pack_bf16(p[2 * kk][2], p[2 * kk][3]),
                         pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]), pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldsm_x4_t(b, Bkn + (kk * 16 + (lane & 15)) * ldb + np * 16 + (lane >> 4) * 8);
            mma_bf16(acc[2 * np], a, b[0], b[1]);
            mma_bf16(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* Rows n0 .. n0+R-1 (the first `valid` of them real, the rest zeros) of head h of the
 * concatenation [p0 (rows of heads*w0) c0, p1 (rows of heads*w1) c1] into s (R, DP + 8)
 * as bf16, zero past w0 + w1. With gate (rows of H), the query scales of DBA's gate:
 * c0 = 2 g s0, c1 = (2 - 2g) s1; else c0 = s0, c1 = s1. */
template <int DP>
__device__ __forceinline__ void load_tile(bf16 *s, int R, const float *p0, int w0, const float *p1, int w1, int heads,
                                          int h, size_t n0, int valid, const float *gate, int H, float s0, float s1,
                                          int vec) {
    constexpr int LD = DP + 8;
    if (vec) {
        constexpr int C4 = DP / 4;
        for (int i = threadIdx.x; i < R * C4; i += blockDim.x) {
            int r = i / C4, c = (i % C4) * 4;
            float4 x = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (r < valid && c < w0 + w1) {
                size_t n = n0 + r;
                float sc;
                if (c < w0) {
                    x = *reinterpret_cast<const float4 *>(p0 + (n * heads + h) * w0 + c);
                    sc = gate ? 2.0f * gate[n * H + h] * s0 : s0;
                } else {
                    x = *reinterpret_cast<const float4 *>(p1 + (n * heads + h) * w1 + (c - w0));
                    sc = gate ? (2.0f - 2.0f * gate[n * H + h]) * s1 : s1;
                }
                x.x *= sc;
                x.y *= sc;
                x.z *= sc;
                x.w *= sc;
            }
            uint2 u;
            u.x = pack_bf16(x.x, x.y);
            u.y = pack_bf16(x.z, x.w);
            *reinterpret_cast<uint2 *>(s + r * LD + c) = u;
        }
    } else {
        for (int i = threadIdx.x; i < R * DP; i += blockDim.x) {
            int r = i / DP, c = i % DP;
            float x = 0.0f;
            if (r < valid && c < w0 + w1) {
                size_t n = n0 + r;
                if (c < w0) x = p0[(n * heads + h) * w0 + c] * (gate ? 2.0f * gate[n * H + h] * s0 : s0);
                else x = p1[(n * heads + h) * w1 + (c - w0)] * (gate ? (2.0f - 2.0f * gate[n * H + h]) * s1 : s1);
            }
            s[r * LD + c] = __float2bfloat16_rn(x);
        }
    }
}

/* the query tile of head h, rows q0.. (scaled) */
template <int DK>
__device__ __forceinline__ void load_q(bf16 *s, int R, const fa_params &a, int b, int h, int q0) {
    load_tile<DK>(s, R, a.q_sem, a.ds, a.q, a.dr, a.H, h, (size_t)b * a.T + q0, min(R, a.T - q0), a.gate, a.H, a.s0,
                  a.s1, a.vec_q);
}
template <int DK>
__device__ __forceinline__ void load_k(bf16 *s, int R, const fa_params &a, int b, int kh, int k0) {
    load_tile<DK>(s, R, a.k_sem, a.ds, a.k, a.dr, a.Hkv, kh, (size_t)b * a.T + k0, min(R, a.T - k0), NULL, 0, 1.0f,
                  1.0f, a.vec_k);
}
template <int DV>
__device__ __forceinline__ void load_v(bf16 *s, int R, const fa_params &a, int b, int kh, int k0) {
    load_tile<DV>(s, R, NULL, 0, a.v, a.dv, a.Hkv, kh, (size_t)b * a.T + k0, min(R, a.T - k0), NULL, 0, 1.0f, 1.0f,
                  a.vec_v);
}
/* dout (rows of H dv) of head h */
template <int DV>
__device__ __forceinline__ void load_do(bf16 *s, int R, const fa_params &a, const float *dout, int b, int h, int q0) {
    load_tile<DV>(s, R, NULL, 0, dout, a.dv, a.H, h, (size_t)b * a.T + q0, min(R, a.T - q0), NULL, 0, 1.0f, 1.0f,
                  a.vec_o);
}

/* ---- forward: grid (query blocks, B H), the last query block (the most keys) first ---- */
template <int DK, int DV>
__global__ void __launch_bounds__(FA_THREADS) flash_fwd(const fa_params a, float *out, float *lse) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(fa_smem), *sK = sQ + FA_BM * LK, *sV = sK + FA_BN * LK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = (a.T + FA_BM - 1) / FA_BM, q0 = (nqb - 1 - (int)blockIdx.x) * FA_BM;
    const int b = blockIdx.y / a.H, h = blockIdx.y % a.H, kh = h / a.group;
    load_q<DK>(sQ, FA_BM, a, b, h, q0);

    float o[DV / 8][4];
#pragma unroll
    for (int j = 0; j < DV / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int r0 = q0 + warp * 16 + (lane >> 2); /* the rows of c[0..1] and (+8) c[2..3] */
    const int kend = a.causal ? min(a.T, q0 + FA_BM) : a.T;
    for (int k0 = 0; k0 < kend; k0 += FA_BN) {
        __syncthreads(); /* the previous tiles are read */
        load_k<DK>(sK, FA_BN, a, b, kh, k0);
        load_v<DV>(sV, FA_BN, a, b, kh, k0);
        __syncthreads();
        float s[FA_BN / 8][4];
#pragma unroll
        for (int j = 0; j < FA_BN / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
        mma_a_bnk<DK / 16, FA_BN / 8>(s, sQ + warp * 16 * LK, LK, sK, LK, lane);
        const bool edge = k0 + FA_BN > a.T || (a.causal && k0 + FA_BN - 1 > q0 + warp * 16);
#pragma unroll
        for (int j = 0; j < FA_BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float x = s[j][e] * FA_LOG2E;
                if (edge) {
                    int col = k0 + j * 8 + (lane & 3) * 2 + (e & 1), row = r0 + (e >> 1) * 8;
                    if (col >= a.T || (a.causal && col > row)) x = -INFINITY;
                }
                s[j][e] = x;
            }
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < FA_BN / 8; j++) mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mn = fmaxf(m[i], mx), mu = mn == -INFINITY ? 0.0f : mn;
            float alpha = exp2f(m[i] - mu), sum = 0.0f;
            m[i] = mn;
#pragma unroll
            for (int j = 0; j < FA_BN / 8; j++) {
                s[j][2 * i] = exp2f(s[j][2 * i] - mu);
                s[j][2 * i + 1] = exp2f(s[j][2 * i + 1] - mu);
                sum += s[j][2 * i] + s[j][2 * i + 1];
            }
            l[i] = l[i] * alpha + sum; /* this thread's columns; the quad's summed at the end */
#pragma unroll
            for (int j = 0; j < DV / 8; j++) {
                o[j][2 * i] *= alpha;
                o[j][2 * i + 1] *= alpha;
            }
        }
        mma_p_bkn<FA_BN / 16, DV / 8>(o, s, sV, LV, lane);
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
        const int row = r0 + 8 * i;
        if (row >= a.T) continue;
        const float inv = 1.0f / l[i];
        float *orow = out + (((size_t)b * a.T + row) * a.H + h) * a.dv;
#pragma unroll
        for (int j = 0; j < DV / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int c = j * 8 + (lane & 3) * 2 + e;
                if (c < a.dv) orow[c] = o[j][2 * i + e] * inv;
            }
        if ((lane & 3) == 0) lse[((size_t)b * a.H + h) * a.T + row] = (m[i] + log2f(l[i])) * FA_LN2;
    }
}

/* ---- backward: D (B,H,T) = rowsum(dout * out), one warp a row, with dout rounded to
 * bf16 as the dq and dk/dv kernels' dP = dout v^T sees it: dS = P (dP - D) then sums to
 * zero over a row up to float32 rounding (with one visible key, dS is 0, not bf16 noise) */
static __global__ void flash_bwd_dot(float *D, const float *dout, const float *out, int T, int H, int dv, size_t rows) {
    size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    size_t bh = row / T;
    int t = (int)(row % T), h = (int)(bh % H);
    size_t b = bh / H;
    const size_t off = ((b * T + t) * H + h) * dv;
    float acc = 0.0f;
    for (int c = lane; c < dv; c += 32) acc += __bfloat162float(__float2bfloat16_rn(dout[off + c])) * out[off + c];
    acc = cbk_warp_sum(acc);
    if (lane == 0) D[row] = acc;
}

/* ---- backward, dq: grid (query blocks, B H), the most keys first. dqcat = dS kcat is
 * written scaled into dq_sem and dq; dz (gated) = dg g (1 - g) with
 * dg = 2 s0 (dqcat_sem . q_sem) - 2 s1 (dqcat_rot . q), as layers/attention.c ---- */
template <int DK, int DV>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dq(const fa_params a, const float *dout, const float *lse, const float *D, float *dq_sem, float *dq,
                 float *dz) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(fa_smem), *sO = sQ + FA_BM * LK, *sK = sO + FA_BM * LV, *sV = sK + FA_BN * LK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = (a.T + FA_BM - 1) / FA_BM, q0 = (nqb - 1 - (int)blockIdx.x) * FA_BM;
    const int b = blockIdx.y / a.H, h = blockIdx.y % a.H, kh = h / a.group;
    load_q<DK>(sQ, FA_BM, a, b, h, q0);
    load_do<DV>(sO, FA_BM, a, dout, b, h, q0);
    const int r0 = q0 + warp * 16 + (lane >> 2);
    float lr[2], dr[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = r0 + 8 * i;
        const size_t at = ((size_t)b * a.H + h) * a.T + row;
        lr[i] = row < a.T ? lse[at] * FA_LOG2E : INFINITY;
        dr[i] = row < a.T ? D[at] : 0.0f;
    }
    float acc[DK / 8][4];
#pragma unroll
    for (int j = 0; j < DK / 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const int kend = a.causal ? min(a.T, q0 + FA_BM) : a.T;
    for (int k0 = 0; k0 < kend; k0 += FA_BN) {
        __syncthreads();
        load_k<DK>(sK, FA_BN, a, b, kh, k0);
        load_v<DV>(sV, FA_BN, a, b, kh, k0);
        __syncthreads();
        float s[FA_BN / 8][4], dp[FA_BN / 8][4];
#pragma unroll
        for (int j = 0; j < FA_BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
        mma_a_bnk<DK / 16, FA_BN / 8>(s, sQ + warp * 16 * LK, LK, sK, LK, lane);
        mma_a_bnk<DV / 16, FA_BN / 8>(dp, sO + warp * 16 * LV, LV, sV, LV, lane);
        const bool edge = k0 + FA_BN > a.T || (a.causal && k0 + FA_BN - 1 > q0 + warp * 16);
#pragma unroll
        for (int j = 0; j < FA_BN / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = e >> 1;
                float p = exp2f(s[j][e] * FA_LOG2E - lr[i]);
                if (edge) {
                    int col = k0 + j * 8 + (lane & 3) * 2 + (e & 1), row = r0 + i * 8;
                    if (col >= a.T || (a.causal && col > row)) p = 0.0f;
                }
                s[j][e] = p * (dp[j][e] - dr[i]); /* dS */
            }
        mma_p_bkn<FA_BN / 16, DK / 8>(acc, s, sK, LK, lane);
    }
    const float rs = a.s0, rr = a.s1;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = r0 + 8 * i, live = row < a.T;
        const size_t n = (size_t)b * a.T + (live ? row : 0);
        const float g = a.gate ? a.gate[n * a.H + h] : 0.0f;
        const float c_sem = a.gate ? 2.0f * g * rs : rs, c_rot = a.gate ? (2.0f - 2.0f * g) * rr : rr;
        float dcs = 0.0f, dcr = 0.0f;
#pragma unroll
        for (int j = 0; j < DK / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int c = j * 8 + (lane & 3) * 2 + e;
                const float x = acc[j][2 * i + e];
                if (c < a.ds) {
                    const size_t at = (n * a.H + h) * a.ds + c;
                    if (live) dq_sem[at] = c_sem * x;
                    dcs += x * a.q_sem[at];
                } else if (c < a.ds + a.dr) {
                    const size_t at = (n * a.H + h) * a.dr + (c - a.ds);
                    if (live) dq[at] = c_rot * x;
                    dcr += x * a.q[at];
                }
            }
        if (!a.gate) continue;
        dcs += __shfl_xor_sync(0xffffffffu, dcs, 1);
        dcs += __shfl_xor_sync(0xffffffffu, dcs, 2);
        dcr += __shfl_xor_sync(0xffffffffu, dcr, 1);
        dcr += __shfl_xor_sync(0xffffffffu, dcr, 2);
        if (live && (lane & 3) == 0) dz[n * a.H + h] = (2 * rs * dcs - 2 * rr * dcr) * g * (1 - g);
    }
}

/* ---- backward, dk and dv: grid (key blocks, B Hkv); each block walks the query blocks
 * of BQ rows at or after its keys, for every query head of its group in order ---- */
template <int DK, int DV, int BQ>
__global__ void __launch_bounds__(FA_THREADS)
    flash_bwd_dkdv(const fa_params a, const float *dout, const float *lse, const float *D, float *dk_sem, float *dk,
                   float *dv) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sK = reinterpret_cast<bf16 *>(fa_smem), *sV = sK + FA_BM * LK, *sQ = sV + FA_BM * LV, *sO = sQ + BQ * LK;
    float *sL = reinterpret_cast<float *>(sO + BQ * LV), *sD = sL + BQ;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int k0 = blockIdx.x * FA_BM, b = blockIdx.y / a.Hkv, kh = blockIdx.y % a.Hkv;
    load_k<DK>(sK, FA_BM, a, b, kh, k0);
    load_v<DV>(sV, FA_BM, a, b, kh, k0);
    const int r0 = k0 + warp * 16 + (lane >> 2); /* key rows */
    float dka[DK / 8][4], dva[DV / 8][4];
#pragma unroll
    for (int j = 0; j < DK / 8; j++) dka[j][0] = dka[j][1] = dka[j][2] = dka[j][3] = 0.0f;
#pragma unroll
    for (int j = 0; j < DV / 8; j++) dva[j][0] = dva[j][1] = dva[j][2] = dva[j][3] = 0.0f;
    for (int g = 0; g < a.group; g++) {
        const int h = kh * a.group + g;
        for (int q0 = a.causal ? k0 : 0; q0 < a.T; q0 += BQ) {
            __syncthreads();
            load_q<DK>(sQ, BQ, a, b, h, q0);
            load_do<DV>(sO, BQ, a, dout, b, h, q0);
            for (int i = threadIdx.x; i < BQ; i += blockDim.x) {
                const int t = q0 + i;
                const size_t at = ((size_t)b * a.H + h) * a.T + t;
                sL[i] = t < a.T ? lse[at] * FA_LOG2E : INFINITY;
                sD[i] = t < a.T ? D[at] : 0.0f;
            }
            __syncthreads();
            float st[BQ / 8][4], dpt[BQ / 8][4];
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[j][e] = dpt[j][e] = 0.0f;
            mma_a_bnk<DK / 16, BQ / 8>(st, sK + warp * 16 * LK, LK, sQ, LK, lane); /* S^T */
            const bool edge = q0 + BQ > a.T || k0 + FA_BM > a.T || (a.causal && q0 < k0 + warp * 16 + 15);
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int cq = j * 8 + (lane & 3) * 2 + (e & 1);
                    float p = exp2f(st[j][e] * FA_LOG2E - sL[cq]);
                    if (edge) {
                        const int col = q0 + cq, row = r0 + (e >> 1) * 8;
                        if (col >= a.T || row >= a.T || (a.causal && col < row)) p = 0.0f;
                    }
                    st[j][e] = p; /* P^T */
                }
            mma_p_bkn<BQ / 16, DV / 8>(dva, st, sO, LV, lane);                      /* dv += P^T dout */
            mma_a_bnk<DV / 16, BQ / 8>(dpt, sV + warp * 16 * LV, LV, sO, LV, lane); /* dP^T = v dout^T */
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[j][e] *= dpt[j][e] - sD[j * 8 + (lane & 3) * 2 + (e & 1)];
            mma_p_bkn<BQ / 16, DK / 8>(dka, st, sQ, LK, lane); /* dkcat += dS^T qcat */
        }
    }
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int row = r0 + 8 * i;
        if (row >= a.T) continue;
        const size_t n = (size_t)b * a.T + row;
#pragma unroll
        for (int j = 0; j < DK / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int c = j * 8 + (lane & 3) * 2 + e;
                if (c < a.ds) dk_sem[(n * a.Hkv + kh) * a.ds + c] = dka[j][2 * i + e];
                else if (c < a.ds + a.dr) dk[(n * a.Hkv + kh) * a.dr + (c - a.ds)] = dka[j][2 * i + e];
            }
#pragma unroll
        for (int j = 0; j < DV / 8; j++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int c = j * 8 + (lane & 3) * 2 + e;
                if (c < a.dv) dv[(n * a.Hkv + kh) * a.dv + c] = dva[j][2 * i + e];
            }
    }
}

/* ---- host side ---- */

static int pad_width(int d) { return d <= 64 ? 64 : d <= 128 ? 128 : 256; }

static int aligned16(const void *p) { return p == NULL || ((uintptr_t)p & 15) == 0; }

static fa_params params_of(const cbk_flash_args *x) {
    fa_params a;
    a.B = x->B;
    a.T = x->T;
    a.H = x->H;
    a.Hkv = x->Hkv;
    a.group = x->H / x->Hkv;
    a.causal = x->causal;
    a.ds = x->ds;
    a.dr = x->dr;
    a.dv = x->dv;
    a.s0 = x->ds ? 1.0f / sqrtf((float)x->ds) : 0.0f;
    a.s1 = 1.0f / sqrtf((float)x->dr);
    a.q_sem = x->q_sem;
    a.q = x->q;
    a.k_sem = x->k_sem;
    a.k = x->k;
    a.v = x->v;
    a.gate = x->gate;
    const int w4 = x->ds % 4 == 0 && x->dr % 4 == 0;
    a.vec_q = w4 && aligned16(x->q_sem) && aligned16(x->q);
    a.vec_k = w4 && aligned16(x->k_sem) && aligned16(x->k);
    a.vec_v = x->dv % 4 == 0 && aligned16(x->v);
    a.vec_o = 0;
    return a;
}

int cbk_flash_supported(int dqk, int dv) { return dqk >= 1 && dqk <= 256 && dv >= 1 && dv <= 256; }

/* the kernel's dynamic shared memory limit raised above the default 48 KiB, once per
 * instance (done: that instance's flag) */
template <typename K>
static void raise_smem(K kernel, size_t smem, int *done) {
    if (*done) return;
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    *done = 1;
}

template <int DK, int DV>
static void fwd_launch(const fa_params &a, float *out, float *lse) {
    const size_t smem = ((size_t)(FA_BM + FA_BN) * (DK + 8) + (size_t)FA_BN * (DV + 8)) * sizeof(bf16);
    dim3 grid((a.T + FA_BM - 1) / FA_BM, a.B * a.H);
    static int raised;
    raise_smem(flash_fwd<DK, DV>, smem, &raised);
    flash_fwd<DK, DV><<<grid, FA_THREADS, smem>>>(a, out, lse);
}

template <int DK, int DV>
static void bwd_launch(const fa_params &a, const float *dout, const float *lse, const float *D, float *dq_sem,
                       float *dq, float *dz, float *dk_sem, float *dk, float *dv) {
    const size_t smem_q = ((size_t)(FA_BM + FA_BN) * (DK + 8) + (size_t)(FA_BM + FA_BN) * (DV + 8)) * sizeof(bf16);
    dim3 gq((a.T + FA_BM - 1) / FA_BM, a.B * a.H);
    static int raised_q, raised_k;
    raise_smem(flash_bwd_dq<DK, DV>, smem_q, &raised_q);
    flash_bwd_dq<DK, DV><<<gq, FA_THREADS, smem_q>>>(a, dout, lse, D, dq_sem, dq, dz);
    /* 32 query rows a step where 64 would hold more than ~200 accumulator registers */
    constexpr int BQ = DK + DV <= 128 ? 64 : 32;
    const size_t smem_k =
        ((size_t)(FA_BM + BQ) * (DK + 8) + (size_t)(FA_BM + BQ) * (DV + 8)) * sizeof(bf16) + 2 * BQ * sizeof(float);
    dim3 gk((a.T + FA_BM - 1) / FA_BM, a.B * a.Hkv);
    raise_smem(flash_bwd_dkdv<DK, DV, BQ>, smem_k, &raised_k);
    flash_bwd_dkdv<DK, DV, BQ><<<gk, FA_THREADS, smem_k>>>(a, dout, lse, D, dk_sem, dk, dv);
}

/* calls F<DK, DV> for the padded widths */
#define FA_DISPATCH(F, dk, dv, ...)                                          \
    do {                                                                     \
        const int pk_ = pad_width(dk), pv_ = pad_width(dv);                  \
        if (pk_ == 64 && pv_ == 64) F<64, 64>(__VA_ARGS__);                  \
        else if (pk_ == 64 && pv_ == 128) F<64, 128>(__VA_ARGS__);           \
        else if (pk_ == 64) F<64, 256>(__VA_ARGS__);                         \
        else if (pk_ == 128 && pv_ == 64) F<128, 64>(__VA_ARGS__);           \
        else if (pk_ == 128 && pv_ == 128) F<128, 128>(__VA_ARGS__);         \
        else if (pk_ == 128) F<128, 256>(__VA_ARGS__);                       \
        else if (pv_ == 64) F<256, 64>(__VA_ARGS__);                         \
        else if (pv_ == 128) F<256, 128>(__VA_ARGS__);                       \
        else F<256, 256>(__VA_ARGS__);                                       \
    } while (0)

void cbk_flash_forward(float *out, float *lse, const cbk_flash_args *x) {
    if ((size_t)x->B * x->T * x->H == 0) return;
    const fa_params a = params_of(x);
    FA_DISPATCH(fwd_launch, a.ds + a.dr, a.dv, a, out, lse);
}

size_t cbk_flash_backward_work(const cbk_flash_args *x) { return (size_t)x->B * x->H * x->T; }

void cbk_flash_backward(float *dq_sem, float *dq, float *dk_sem, float *dk, float *dv, float *dz, float *work,
                        const float *dout, const float *out, const float *lse, const cbk_flash_args *x) {
    const size_t rows = (size_t)x->B * x->H * x->T;
    if (!rows) return;
    fa_params a = params_of(x);
    a.vec_o = x->dv % 4 == 0 && aligned16(dout);
    flash_bwd_dot<<<(unsigned)((rows * 32 + 255) / 256), 256>>>(work, dout, out, x->T, x->H, x->dv, rows);
    FA_DISPATCH(bwd_launch, a.ds + a.dr, a.dv, a, dout, lse, work, dq_sem, dq, dz, dk_sem, dk, dv);
}
