/* flash_attention.cu: causal (or full) attention of the mixed-precision path without the
 * (T, T) score matrix, FlashAttention-2 style, for every mode of layers/attention.c at
 * once. The score is a dot product of the concatenations
 *     qcat = [q_sem c_sem, q c_rot],  kcat = [k_sem, k]
 * (c_sem = 1/sqrt(ds) and c_rot = 1/sqrt(dr), times 2g and 2 - 2g under DBA's gate;
 * standard and GQA have ds = 0), so one kernel of key width dqk = ds + dr and value width
 * dv (each padded to 64, 128 or 256) serves standard, GQA and DBA; a query head h reads
 * the keys and values of kv head h / group.
 *
 * Inputs and outputs are float32 in the projections' row layouts. Each pass first packs
 * what its tiles read into bf16 copies in the caller's work buffer, head-major and padded
 * (B, heads, Tp, DP): Tp = T rounded up to 128 rows, DP the padded width, zeros past T and
 * past the width, the query's scales applied (and backward's dout, with the rows' lse and
 * D beside it). A tile is then one contiguous block of rows: cp.async copies it into
 * shared memory with no conversion and no bounds checks, double-buffered so that the next
 * key (or query) tile arrives while the tensor cores multiply this one (mma.sync
 * m16n8k16, bf16 in, float32 sums); everything else (the online softmax, the log-sum-exp,
 * dS = P (dP - D)) is float32. The copies halve the tiles' traffic against float32 loads,
 * and each row is converted once per pass instead of once per tile that reads it.
 *
 * Forward: a block owns 128 query rows of one (batch, head) and walks the key blocks of
 * 64 up to the causal edge, keeping the running max and sum per row; it writes
 * out = P v / l and lse = m + log l (natural log, as the CPU's). Up to width 128 its 4
 * warps take 32 rows each (two m-tiles: every K and V fragment read from shared memory
 * serves both), at 256 8 warps take 16 rows each.
 * Backward, deterministic (no atomics): D = rowsum(dout * out) first (with dout's bf16
 * copy); then one kernel per query block recomputes P and dP = dout v^T key block by key
 * block and sums dqcat = dS kcat (written scaled into dq_sem, dq, and the gate logit's
 * gradient from dqcat . q), and one kernel per key block of a kv head walks every query
 * block of every head of its group and sums dv = P^T dout and dkcat = dS^T qcat in
 * registers. That recomputes S and dP twice (7 products where FlashAttention-2 with
 * atomics has 5), the price of sums in a fixed order. A warp whose rows the causal mask
 * hides from a whole tile skips its products. */
#include "common.cuh"

#include <cuda_bf16.h>

#define FA_LOG2E 1.4426950408889634f
#define FA_LN2 0.6931471805599453f
/* 128 rows a block: 128 query rows share each key tile (128 keys each query tile in
 * dk/dv), which halves the tile traffic per product against 64; the first device run
 * (64 rows, bench/RESULTS.md) was bound by that traffic. The backward kernels use 8
 * warps of 16 rows. */
#define FA_WARPS 8
#define FA_THREADS (32 * FA_WARPS)
#define FA_BM (16 * FA_WARPS) /* query rows of a forward / dq block; key rows of a dk/dv block */

typedef __nv_bfloat16 bf16;

struct fa_params {
    int B, T, Tp, H, Hkv, group, causal, ds, dr, dv;
    float s0, s1; /* 1/sqrt(ds) (0 when ds = 0), 1/sqrt(dr) */
    const float *q_sem, *q, *gate; /* float32, for dq's gate gradient */
    /* the packed copies: Q (B,H,Tp,DK) scaled, K (B,Hkv,Tp,DK), V (B,Hkv,Tp,DV), and in
     * backward dO (B,H,Tp,DV), L (B,H,Tp) = lse log2(e) (+inf past T), D (B,H,Tp) (0 past T) */
    const bf16 *Q, *K, *V, *dO;
    const float *L, *D;
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

/* 16 bytes global -> shared without passing through registers (cp.async, L2 only) */
__device__ __forceinline__ void cp16(void *s, const void *g) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(s);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(a), "l"(g));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

/* R rows of a packed array (row length DP, contiguous from g) into s (stride DP + 8: the
 * 16 bytes of padding put ldmatrix's 8 rows in different banks) */
template <int DP, int R, int NT = FA_THREADS>
__device__ __forceinline__ void tile_async(bf16 *s, const bf16 *g) {
    constexpr int C = DP / 8;
#pragma unroll
    for (int i = threadIdx.x; i < R * C; i += NT) {
        const int r = i / C, c = (i % C) * 8;
        cp16(s + r * (DP + 8) + c, g + (size_t)r * DP + c);
    }
}
/* n floats (a multiple of 4) */
__device__ __forceinline__ void floats_async(float *s, const float *g, int n) {
    for (int i = threadIdx.x * 4; i < n; i += FA_THREADS * 4) cp16(s + i, g + i);
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

/* The same for MT m-tiles of 16 rows (A's tiles 16 lda apart): each B fragment loaded
 * from shared memory once serves MT products, which divides the B operand's ldmatrix
 * traffic (the whole key or value tile, read by every warp) by MT. */
template <int MT, int KS, int NT>
__device__ __forceinline__ void mma_a_bnk_m(float (*acc)[NT][4], const bf16 *A, int lda, const bf16 *Bnk, int ldb,
                                            int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) ldsm_x4(a[mt], A + (mt * 16 + (lane & 15)) * lda + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldsm_x4(b, Bnk + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * ldb + kk * 16 + ((lane >> 3) & 1) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16(acc[mt][2 * np], a[mt], b[0], b[1]);
                mma_bf16(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
            }
        }
    }
}
template <int MT, int KS, int NT, int NP>
__device__ __forceinline__ void mma_p_bkn_m(float (*acc)[NT][4], const float (*p)[NP][4], const bf16 *Bkn, int ldb,
                                            int lane) {
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            a[mt][0] = pack_bf16(p[mt][2 * kk][0], p[mt][2 * kk][1]);
            a[mt][1] = pack_bf16(p[mt][2 * kk][2], p[mt][2 * kk][3]);
            a[mt][2] = pack_bf16(p[mt][2 * kk + 1][0], p[mt][2 * kk + 1][1]);
            a[mt][3] = pack_bf16(p[mt][2 * kk + 1][2], p[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            uint32_t b[4];
            ldsm_x4_t(b, Bkn + (kk * 16 + (lane & 15)) * ldb + np * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                mma_bf16(acc[mt][2 * np], a[mt], b[0], b[1]);
                mma_bf16(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
            }
        }
    }
}

/* ---- packing: dst (B, heads, Tp, DP) bf16 = rows of [p0 (rows of heads*w0) c0,
 * p1 (rows of heads*w1) c1], zero past w0 + w1 and past T. With gate (rows of heads =
 * H), DBA's query scales c0 = 2 g s0, c1 = (2 - 2g) s1; else c0 = s0, c1 = s1. Each
 * thread writes 8 columns (16 bytes). ---- */
static __global__ void flash_pack(bf16 *dst, int DP, int B, int T, int Tp, int heads, const float *p0, int w0,
                                  float s0, const float *p1, int w1, float s1, const float *gate) {
    const int C = DP / 8;
    const size_t n8 = (size_t)B * heads * Tp * C;
    CBK_FOR(i, n8) {
        const int c0 = (int)(i % C) * 8;
        const size_t r = i / C;
        const int t = (int)(r % Tp);
        const size_t bh = r / Tp;
        const int h = (int)(bh % heads);
        const size_t b = bh / heads;
        float x[8];
#pragma unroll
        for (int e = 0; e < 8; e++) x[e] = 0.0f;
        if (t < T) {
            const size_t n = b * T + t;
            const float g = gate ? gate[n * heads + h] : 0.0f;
            const float sc0 = gate ? 2.0f * g * s0 : s0, sc1 = gate ? (2.0f - 2.0f * g) * s1 : s1;
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const int c = c0 + e;
                if (c < w0) x[e] = p0[(n * heads + h) * w0 + c] * sc0;
                else if (c < w0 + w1) x[e] = p1[(n * heads + h) * w1 + (c - w0)] * sc1;
            }
        }
        uint4 u;
        u.x = pack_bf16(x[0], x[1]);
        u.y = pack_bf16(x[2], x[3]);
        u.z = pack_bf16(x[4], x[5]);
        u.w = pack_bf16(x[6], x[7]);
        *reinterpret_cast<uint4 *>(dst + r * DP + c0) = u;
    }
}

/* ---- forward: grid (query blocks, B H), the last query block (the most keys) first;
 * NW warps of MT m-tiles (16 rows each): NW 16 MT = FA_BM rows a block ---- */
template <int DK, int DV, int BN, int NW, int MINB>
__global__ void __launch_bounds__(32 * NW, MINB) flash_fwd(const fa_params a, float *out, float *lse) {
    constexpr int LK = DK + 8, LV = DV + 8, MT = FA_BM / (16 * NW), NTH = 32 * NW, WR = 16 * MT;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(fa_smem), *sK = sQ + FA_BM * LK, *sV = sK + 2 * BN * LK; /* K, V: 2 stages */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = a.Tp / FA_BM, q0 = (nqb - 1 - (int)blockIdx.x) * FA_BM;
    const int b = blockIdx.y / a.H, h = blockIdx.y % a.H, kh = h / a.group;
    const bf16 *Kg = a.K + (size_t)(b * a.Hkv + kh) * a.Tp * DK, *Vg = a.V + (size_t)(b * a.Hkv + kh) * a.Tp * DV;
    tile_async<DK, FA_BM, NTH>(sQ, a.Q + ((size_t)(b * a.H + h) * a.Tp + q0) * DK);
    tile_async<DK, BN, NTH>(sK, Kg);
    tile_async<DV, BN, NTH>(sV, Vg);
    cp_commit();

    float o[MT][DV / 8][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int j = 0; j < DV / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.0f;
    }
    const int w0 = q0 + warp * WR;            /* the warp's first row */
    const int r0 = w0 + (lane >> 2);          /* the rows of c[0..1] and (+8) c[2..3], + 16 mt */
    const int kend = a.causal ? min(a.T, q0 + FA_BM) : a.T, nkb = (kend + BN - 1) / BN;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * BN, st = kb & 1;
        if (kb + 1 < nkb) { /* the next tiles into the other stage, read two barriers ago */
            tile_async<DK, BN, NTH>(sK + (st ^ 1) * BN * LK, Kg + (size_t)(k0 + BN) * DK);
            tile_async<DV, BN, NTH>(sV + (st ^ 1) * BN * LV, Vg + (size_t)(k0 + BN) * DV);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        if (!a.causal || k0 <= w0 + WR - 1) {
            const bf16 *tK = sK + st * BN * LK, *tV = sV + st * BN * LV;
            float s[MT][BN / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < BN / 8; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.0f;
            mma_a_bnk_m<MT, DK / 16, BN / 8>(s, sQ + warp * WR * LK, LK, tK, LK, lane);
            const bool edge = k0 + BN > a.T || (a.causal && k0 + BN - 1 > w0);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float x = s[mt][j][e] * FA_LOG2E;
                        if (edge) {
                            int col = k0 + j * 8 + (lane & 3) * 2 + (e & 1), row = r0 + mt * 16 + (e >> 1) * 8;
                            if (col >= a.T || (a.causal && col > row)) x = -INFINITY;
                        }
                        s[mt][j][e] = x;
                    }
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    float mx = -INFINITY;
#pragma unroll
                    for (int j = 0; j < BN / 8; j++) mx = fmaxf(mx, fmaxf(s[mt][j][2 * i], s[mt][j][2 * i + 1]));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                    float mn = fmaxf(m[mt][i], mx), mu = mn == -INFINITY ? 0.0f : mn;
                    float alpha = exp2f(m[mt][i] - mu), sum = 0.0f;
                    m[mt][i] = mn;
#pragma unroll
                    for (int j = 0; j < BN / 8; j++) {
                        s[mt][j][2 * i] = exp2f(s[mt][j][2 * i] - mu);
                        s[mt][j][2 * i + 1] = exp2f(s[mt][j][2 * i + 1] - mu);
                        sum += s[mt][j][2 * i] + s[mt][j][2 * i + 1];
                    }
                    l[mt][i] = l[mt][i] * alpha + sum; /* this thread's columns; the quad's summed at the end */
#pragma unroll
                    for (int j = 0; j < DV / 8; j++) {
                        o[mt][j][2 * i] *= alpha;
                        o[mt][j][2 * i + 1] *= alpha;
                    }
                }
            }
            mma_p_bkn_m<MT, BN / 16, DV / 8, BN / 8>(o, s, tV, LV, lane);
        }
        __syncthreads(); /* this stage is read before the next iteration refills it */
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 2; i++) {
            float li = l[mt][i];
            li += __shfl_xor_sync(0xffffffffu, li, 1);
            li += __shfl_xor_sync(0xffffffffu, li, 2);
            const int row = r0 + mt * 16 + 8 * i;
            if (row >= a.T) continue;
            const float inv = 1.0f / li;
            float *orow = out + (((size_t)b * a.T + row) * a.H + h) * a.dv;
#pragma unroll
            for (int j = 0; j < DV / 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int c = j * 8 + (lane & 3) * 2 + e;
                    if (c < a.dv) orow[c] = o[mt][j][2 * i + e] * inv;
                }
            if ((lane & 3) == 0) lse[((size_t)b * a.H + h) * a.T + row] = (m[mt][i] + log2f(li)) * FA_LN2;
        }
}

/* ---- backward, first: one warp a padded row (b, h, t < Tp): dO = dout rounded to bf16
 * (zero past dv and past T), D = rowsum(dO * out) with the dO that the dq and dk/dv
 * kernels' dP = dout v^T sees, so dS = P (dP - D) sums to zero over a row up to float32
 * rounding (with one visible key, dS is 0, not bf16 noise), and L = lse log2(e); past T,
 * D = 0 and L = +inf, so P = 2^(S - L) = 0 there. ---- */
static __global__ void flash_bwd_prep(bf16 *dO, float *L, float *D, const float *dout, const float *out,
                                      const float *lse, int T, int Tp, int H, int dv, int DVP, size_t rows) {
    const size_t row = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const size_t bh = row / Tp;
    const int t = (int)(row % Tp), h = (int)(bh % H);
    const size_t b = bh / H;
    bf16 *drow = dO + row * DVP;
    float acc = 0.0f;
    if (t < T) {
        const size_t off = ((b * T + t) * H + h) * dv;
        for (int c = 2 * lane; c < DVP; c += 64) {
            const float x0 = c < dv ? dout[off + c] : 0.0f, x1 = c + 1 < dv ? dout[off + c + 1] : 0.0f;
            const __nv_bfloat162 r = __floats2bfloat162_rn(x0, x1);
            *reinterpret_cast<__nv_bfloat162 *>(drow + c) = r;
            if (c < dv) acc += __low2float(r) * out[off + c];
            if (c + 1 < dv) acc += __high2float(r) * out[off + c + 1];
        }
    } else {
        for (int c = 2 * lane; c < DVP; c += 64)
            *reinterpret_cast<__nv_bfloat162 *>(drow + c) = __floats2bfloat162_rn(0.0f, 0.0f);
    }
    acc = cbk_warp_sum(acc);
    if (lane == 0) {
        D[row] = acc;
        L[row] = t < T ? lse[bh * T + t] * FA_LOG2E : INFINITY;
    }
}

/* ---- backward, dq: grid (query blocks, B H), the most keys first. dqcat = dS kcat is
 * written scaled into dq_sem and dq; dz (gated) = dg g (1 - g) with
 * dg = 2 s0 (dqcat_sem . q_sem) - 2 s1 (dqcat_rot . q), as layers/attention.c ---- */
template <int DK, int DV, int BN, int MINB>
__global__ void __launch_bounds__(FA_THREADS, MINB)
    flash_bwd_dq(const fa_params a, float *dq_sem, float *dq, float *dz) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sQ = reinterpret_cast<bf16 *>(fa_smem), *sO = sQ + FA_BM * LK, *sK = sO + FA_BM * LV,
         *sV = sK + 2 * BN * LK;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int nqb = a.Tp / FA_BM, q0 = (nqb - 1 - (int)blockIdx.x) * FA_BM;
    const int b = blockIdx.y / a.H, h = blockIdx.y % a.H, kh = h / a.group;
    const size_t qrow = (size_t)(b * a.H + h) * a.Tp + q0;
    const bf16 *Kg = a.K + (size_t)(b * a.Hkv + kh) * a.Tp * DK, *Vg = a.V + (size_t)(b * a.Hkv + kh) * a.Tp * DV;
    tile_async<DK, FA_BM>(sQ, a.Q + qrow * DK);
    tile_async<DV, FA_BM>(sO, a.dO + qrow * DV);
    tile_async<DK, BN>(sK, Kg);
    tile_async<DV, BN>(sV, Vg);
    cp_commit();
    const int r0 = q0 + warp * 16 + (lane >> 2);
    float lr[2], dr[2];
#pragma unroll
    for (int i = 0; i < 2; i++) {
        lr[i] = a.L[qrow + warp * 16 + (lane >> 2) + 8 * i];
        dr[i] = a.D[qrow + warp * 16 + (lane >> 2) + 8 * i];
    }
    float acc[DK / 8][4];
#pragma unroll
    for (int j = 0; j < DK / 8; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const int kend = a.causal ? min(a.T, q0 + FA_BM) : a.T, nkb = (kend + BN - 1) / BN;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kb * BN, st = kb & 1;
        if (kb + 1 < nkb) {
            tile_async<DK, BN>(sK + (st ^ 1) * BN * LK, Kg + (size_t)(k0 + BN) * DK);
            tile_async<DV, BN>(sV + (st ^ 1) * BN * LV, Vg + (size_t)(k0 + BN) * DV);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        if (!a.causal || k0 <= q0 + warp * 16 + 15) {
            const bf16 *tK = sK + st * BN * LK, *tV = sV + st * BN * LV;
            float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[j][e] = dp[j][e] = 0.0f;
            mma_a_bnk<DK / 16, BN / 8>(s, sQ + warp * 16 * LK, LK, tK, LK, lane);
            mma_a_bnk<DV / 16, BN / 8>(dp, sO + warp * 16 * LV, LV, tV, LV, lane);
            const bool edge = k0 + BN > a.T || (a.causal && k0 + BN - 1 > q0 + warp * 16);
#pragma unroll
            for (int j = 0; j < BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int i = e >> 1;
                    float p = exp2f(__fmaf_rn(s[j][e], FA_LOG2E, -lr[i]));
                    if (edge) {
                        int col = k0 + j * 8 + (lane & 3) * 2 + (e & 1), row = r0 + i * 8;
                        if (col >= a.T || (a.causal && col > row)) p = 0.0f;
                    }
                    s[j][e] = p * (dp[j][e] - dr[i]); /* dS */
                }
            mma_p_bkn<BN / 16, DK / 8>(acc, s, tK, LK, lane);
        }
        __syncthreads();
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
                    if (a.gate) dcs += x * a.q_sem[at];
                } else if (c < a.ds + a.dr) {
                    const size_t at = (n * a.H + h) * a.dr + (c - a.ds);
                    if (live) dq[at] = c_rot * x;
                    if (a.gate) dcr += x * a.q[at];
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

/* ---- backward, dk and dv: grid (key blocks, B Hkv); each block walks the query tiles
 * of BQ rows at or after its keys, for every query head of its group in order, as one
 * sequence so that the next tile (q, dout, L, D) loads while this one is multiplied ---- */
template <int DK, int DV, int BQ, int MINB>
__global__ void __launch_bounds__(FA_THREADS, MINB)
    flash_bwd_dkdv(const fa_params a, float *dk_sem, float *dk, float *dv) {
    constexpr int LK = DK + 8, LV = DV + 8;
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *sK = reinterpret_cast<bf16 *>(fa_smem), *sV = sK + FA_BM * LK, *sQ = sV + FA_BM * LV,
         *sO = sQ + 2 * BQ * LK; /* Q, dO, L, D: 2 stages */
    float *sL = reinterpret_cast<float *>(sO + 2 * BQ * LV), *sD = sL + 2 * BQ;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int k0 = blockIdx.x * FA_BM, b = blockIdx.y / a.Hkv, kh = blockIdx.y % a.Hkv;
    const size_t krow = (size_t)(b * a.Hkv + kh) * a.Tp + k0;
    const int qs = a.causal ? k0 : 0, nq = ((a.T + BQ - 1) / BQ * BQ - qs) / BQ, nit = a.group * nq;
    /* tile it: query head kh group + it / nq, rows qs + (it % nq) BQ .. */
#define FA_QTILE(it, st)                                                                   \
    do {                                                                                   \
        const int h_ = kh * a.group + (it) / nq, q_ = qs + ((it) % nq) * BQ;               \
        const size_t at_ = (size_t)(b * a.H + h_) * a.Tp + q_;                             \
        tile_async<DK, BQ>(sQ + (st) * BQ * LK, a.Q + at_ * DK);                           \
        tile_async<DV, BQ>(sO + (st) * BQ * LV, a.dO + at_ * DV);                          \
        floats_async(sL + (st) * BQ, a.L + at_, BQ);                                       \
        floats_async(sD + (st) * BQ, a.D + at_, BQ);                                       \
    } while (0)
    tile_async<DK, FA_BM>(sK, a.K + krow * DK);
    tile_async<DV, FA_BM>(sV, a.V + krow * DV);
    FA_QTILE(0, 0);
    cp_commit();
    const int r0 = k0 + warp * 16 + (lane >> 2); /* key rows */
    float dka[DK / 8][4], dva[DV / 8][4];
#pragma unroll
    for (int j = 0; j < DK / 8; j++) dka[j][0] = dka[j][1] = dka[j][2] = dka[j][3] = 0.0f;
#pragma unroll
    for (int j = 0; j < DV / 8; j++) dva[j][0] = dva[j][1] = dva[j][2] = dva[j][3] = 0.0f;
    for (int it = 0; it < nit; it++) {
        const int st = it & 1, q0 = qs + (it % nq) * BQ;
        if (it + 1 < nit) {
            FA_QTILE(it + 1, st ^ 1);
            cp_commit();
            cp_wait<1>();
        } else {
            cp_wait<0>();
        }
        __syncthreads();
        if (!a.causal || q0 + BQ - 1 >= k0 + warp * 16) {
            const bf16 *tQ = sQ + st * BQ * LK, *tO = sO + st * BQ * LV;
            const float *tL = sL + st * BQ, *tD = sD + st * BQ;
            float sp[BQ / 8][4], dpt[BQ / 8][4];
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) sp[j][e] = dpt[j][e] = 0.0f;
            mma_a_bnk<DK / 16, BQ / 8>(sp, sK + warp * 16 * LK, LK, tQ, LK, lane); /* S^T */
            const bool edge = k0 + FA_BM > a.T || (a.causal && q0 < k0 + warp * 16 + 15);
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int cq = j * 8 + (lane & 3) * 2 + (e & 1);
                    float p = exp2f(__fmaf_rn(sp[j][e], FA_LOG2E, -tL[cq])); /* 0 past T: L = +inf */
                    if (edge) {
                        const int col = q0 + cq, row = r0 + (e >> 1) * 8;
                        if (row >= a.T || (a.causal && col < row)) p = 0.0f;
                    }
                    sp[j][e] = p; /* P^T */
                }
            mma_p_bkn<BQ / 16, DV / 8>(dva, sp, tO, LV, lane);                      /* dv += P^T dout */
            mma_a_bnk<DV / 16, BQ / 8>(dpt, sV + warp * 16 * LV, LV, tO, LV, lane); /* dP^T = v dout^T */
#pragma unroll
            for (int j = 0; j < BQ / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) sp[j][e] *= dpt[j][e] - tD[j * 8 + (lane & 3) * 2 + (e & 1)];
            mma_p_bkn<BQ / 16, DK / 8>(dka, sp, tQ, LK, lane); /* dkcat += dS^T qcat */
        }
        __syncthreads();
    }
#undef FA_QTILE
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

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

/* the packed copies in work, each 256-byte aligned (work itself is only float-aligned:
 * the caller's scratch past other buffers); bytes: what they span from work */
struct fa_bufs {
    bf16 *Q, *K, *V, *dO;
    float *L, *D;
    size_t bytes;
};

static fa_bufs carve(void *work, const cbk_flash_args *x, int backward) {
    const size_t Tp = round_up((size_t)x->T, FA_BM), DK = pad_width(x->ds + x->dr), DV = pad_width(x->dv);
    const size_t rq = (size_t)x->B * x->H * Tp, rk = (size_t)x->B * x->Hkv * Tp;
    const size_t sizes[6] = {rq * DK * sizeof(bf16), rk * DK * sizeof(bf16), rk * DV * sizeof(bf16),
                             backward ? rq * DV * sizeof(bf16) : 0, backward ? rq * sizeof(float) : 0,
                             backward ? rq * sizeof(float) : 0};
    const uintptr_t base = (uintptr_t)work;
    uintptr_t p = round_up(base, 256);
    void *at[6];
    for (int i = 0; i < 6; i++) {
        at[i] = (void *)p;
        p = round_up(p + sizes[i], 256);
    }
    fa_bufs f;
    f.Q = (bf16 *)at[0];
    f.K = (bf16 *)at[1];
    f.V = (bf16 *)at[2];
    f.dO = backward ? (bf16 *)at[3] : NULL;
    f.L = backward ? (float *)at[4] : NULL;
    f.D = backward ? (float *)at[5] : NULL;
    f.bytes = p - base + 256; /* the worst first alignment */
    return f;
}

static fa_params params_of(const cbk_flash_args *x, const fa_bufs &w) {
    fa_params a;
    a.B = x->B;
    a.T = x->T;
    a.Tp = (int)round_up((size_t)x->T, FA_BM);
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
    a.gate = x->gate;
    a.Q = w.Q;
    a.K = w.K;
    a.V = w.V;
    a.dO = w.dO;
    a.L = w.L;
    a.D = w.D;
    return a;
}

/* q (scaled, gated), k and v into their packed copies */
static void pack_qkv(const fa_bufs &w, const cbk_flash_args *x) {
    const int Tp = (int)round_up((size_t)x->T, FA_BM), DK = pad_width(x->ds + x->dr), DV = pad_width(x->dv);
    const float s0 = x->ds ? 1.0f / sqrtf((float)x->ds) : 0.0f, s1 = 1.0f / sqrtf((float)x->dr);
    const size_t rq = (size_t)x->B * x->H * Tp, rk = (size_t)x->B * x->Hkv * Tp;
    flash_pack<<<cbk_grid(rq * DK / 8), CBK_THREADS>>>(w.Q, DK, x->B, x->T, Tp, x->H, x->q_sem, x->ds, s0, x->q,
                                                        x->dr, s1, x->gate);
    flash_pack<<<cbk_grid(rk * DK / 8), CBK_THREADS>>>(w.K, DK, x->B, x->T, Tp, x->Hkv, x->k_sem, x->ds, 1.0f,
                                                        x->k, x->dr, 1.0f, NULL);
    flash_pack<<<cbk_grid(rk * DV / 8), CBK_THREADS>>>(w.V, DV, x->B, x->T, Tp, x->Hkv, NULL, 0, 1.0f, x->v, x->dv,
                                                        1.0f, NULL);
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

/* Tile shapes per padded width. Up to 128 wide, dq runs two blocks of 8 warps an SM
 * (__launch_bounds__' minimum: at most 128 registers a thread), taking 32 keys a step
 * past width 64 (its S, dP and dq sums in registers at once); dk/dv takes 32 query rows
 * a step where 64 would hold more than ~200 accumulator registers, and two blocks an SM
 * only at 64 + 64. */
template <int DK, int DV>
struct fa_shape {
    static constexpr int MINB = DK <= 128 && DV <= 128 ? 2 : 1;
    static constexpr int BN_FWD = 64;
    /* forward: 4 warps of 2 m-tiles (each K and V fragment serves 32 rows) up to width
     * 128, registers permitting 2 blocks an SM; 8 warps of one m-tile at 256 */
    static constexpr int NW_FWD = DK <= 128 && DV <= 128 ? 4 : 8;
    static constexpr int MINB_FWD = DK <= 64 && DV <= 64 ? 3 : DK <= 128 && DV <= 128 ? 2 : 1;
    static constexpr int BN_DQ = DK <= 64 && DV <= 64 ? 64 : 32;
    static constexpr int BQ = DK + DV <= 128 ? 64 : 32;
    static constexpr int MINB_DKDV = DK + DV <= 128 ? 2 : 1;
};

/* 1: the forward up to width 128 as 8 warps of one m-tile (cbk_flash_forward_layout) */
static int fwd_layout;

void cbk_flash_forward_layout(int layout) { fwd_layout = layout; }

template <int DK, int DV>
static void fwd_launch(const fa_params &a, float *out, float *lse) {
    typedef fa_shape<DK, DV> S;
    const size_t smem = ((size_t)FA_BM * (DK + 8) + 2 * (size_t)S::BN_FWD * (DK + DV + 16)) * sizeof(bf16);
    dim3 grid(a.Tp / FA_BM, a.B * a.H);
    static int raised, raised8;
    if (fwd_layout == 1 && S::NW_FWD != 8) {
        constexpr int MINB8 = DK <= 128 && DV <= 128 ? 2 : 1;
        raise_smem(flash_fwd<DK, DV, S::BN_FWD, 8, MINB8>, smem, &raised8);
        flash_fwd<DK, DV, S::BN_FWD, 8, MINB8><<<grid, 256, smem>>>(a, out, lse);
        return;
    }
    raise_smem(flash_fwd<DK, DV, S::BN_FWD, S::NW_FWD, S::MINB_FWD>, smem, &raised);
    flash_fwd<DK, DV, S::BN_FWD, S::NW_FWD, S::MINB_FWD><<<grid, 32 * S::NW_FWD, smem>>>(a, out, lse);
}

template <int DK, int DV>
static void bwd_launch(const fa_params &a, float *dq_sem, float *dq, float *dz, float *dk_sem, float *dk, float *dv) {
    typedef fa_shape<DK, DV> S;
    const size_t smem_q = ((size_t)FA_BM * (DK + DV + 16) + 2 * (size_t)S::BN_DQ * (DK + DV + 16)) * sizeof(bf16);
    dim3 gq(a.Tp / FA_BM, a.B * a.H);
    static int raised_q, raised_k;
    raise_smem(flash_bwd_dq<DK, DV, S::BN_DQ, S::MINB>, smem_q, &raised_q);
    flash_bwd_dq<DK, DV, S::BN_DQ, S::MINB><<<gq, FA_THREADS, smem_q>>>(a, dq_sem, dq, dz);
    const size_t smem_k = ((size_t)FA_BM * (DK + DV + 16) + 2 * (size_t)S::BQ * (DK + DV + 16)) * sizeof(bf16) +
                          4 * S::BQ * sizeof(float);
    dim3 gk(a.Tp / FA_BM, a.B * a.Hkv);
    raise_smem(flash_bwd_dkdv<DK, DV, S::BQ, S::MINB_DKDV>, smem_k, &raised_k);
    flash_bwd_dkdv<DK, DV, S::BQ, S::MINB_DKDV><<<gk, FA_THREADS, smem_k>>>(a, dk_sem, dk, dv);
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

size_t cbk_flash_forward_work(const cbk_flash_args *x) {
    return (carve(NULL, x, 0).bytes + sizeof(float) - 1) / sizeof(float);
}

void cbk_flash_forward(float *out, float *lse, float *work, const cbk_flash_args *x) {
    if ((size_t)x->B * x->T * x->H == 0) return;
    const fa_bufs w = carve(work, x, 0);
    pack_qkv(w, x);
    const fa_params a = params_of(x, w);
    FA_DISPATCH(fwd_launch, a.ds + a.dr, a.dv, a, out, lse);
}

size_t cbk_flash_backward_work(const cbk_flash_args *x) {
    return (carve(NULL, x, 1).bytes + sizeof(float) - 1) / sizeof(float);
}

void cbk_flash_backward(float *dq_sem, float *dq, float *dk_sem, float *dk, float *dv, float *dz, float *work,
                        const float *dout, const float *out, const float *lse, const cbk_flash_args *x) {
    if ((size_t)x->B * x->T * x->H == 0) return;
    const fa_bufs w = carve(work, x, 1);
    pack_qkv(w, x);
    const fa_params a = params_of(x, w);
    const size_t rows = (size_t)x->B * x->H * a.Tp;
    flash_bwd_prep<<<(unsigned)((rows * 32 + 255) / 256), 256>>>(w.dO, w.L, w.D, dout, out, lse, x->T, a.Tp, x->H,
                                                                   x->dv, pad_width(x->dv), rows);
    FA_DISPATCH(bwd_launch, a.ds + a.dr, a.dv, a, dq_sem, dq, dz, dk_sem, dk, dv);
}
