/* attention_decode.cu: lib/backend/cpu/attention_decode.c on the GPU: the attention of m
 * new queries (positions pos0 .. pos0+m-1) against a layer's KV cache, which already holds
 * their keys and values, read in each tensor's own kind (fp32, fp16, bf16, q8_0, q4_0,
 * nf4; the layout of lib/infer/kv_cache.h), for standard attention, GQA and DBA.
 *
 * One pass over the cache, split over keys (flash-decoding): a block takes one kv head (or
 * a share of its query heads), a tile of queries and one split of S keys. Its rows are
 * (query, head) pairs, R <= 32 of them, whose scaled queries sit in shared memory; so a key
 * is read and dequantised once for every head of its group and every query of the tile.
 *   1. each thread takes keys of the split, reads the cached segment in 8-value pieces
 *      (quant.cuh) and writes the R scores (DBA: semantic plus geometric part) to shared
 *      memory, masked outside a query's causal window;
 *   2. a warp per row takes the row's max and the sum of e^(s - max) (the split's share of
 *      the online softmax), leaving the unnormalised probabilities;
 *   3. threads over (value dim, key slice) add p v over the split, the slices summed in a
 *      fixed order (deterministic);
 * and a second kernel combines the splits of each row: out = sum_s e^(m_s - M) o_s / L.
 * The number of splits is chosen from the length (enough blocks to fill the GPU at one
 * query; one split when the queries alone do), bounded so the scores fit shared memory.
 * A graphed decode step (cbk_attn_decode_at) reads its position from device memory: its
 * grid is that of the cache's capacity, and the kernel takes the split length from the
 * length it reads, so one graph serves every length up to the capacity. */
#include "quant.cuh"

#define AD_THREADS 256
#define AD_RMAX 32                /* (query, head) rows a block holds */
#define AD_SMEM (160 * 1024)      /* shared memory a block may take */
#define AD_VEC_R 8                /* rows of step 3's 8-value pieces (registers: 8 x 8) */
#define AD_STEP_R 4               /* rows of the split kernel for few rows (a decode step's) */

typedef struct ad_plan {
    int hsplit, gsub; /* a kv group's heads over hsplit blocks of gsub heads */
    int qt, R;        /* queries per block, rows per block (qt * gsub) */
    int S, nsplit;    /* keys per split, splits */
    long want, smax;  /* splits that would fill the GPU; the most keys a split may hold */
    int ds8, dr8, nsl; /* nsl: key slices of step 3 */
    int vec2;          /* step 3 in 8-value pieces (R <= 8, dv a multiple of 8) */
    size_t smem;
} ad_plan;

/* keys a split holds for span keys: enough splits to make want, each a multiple of 64 keys
 * and at most smax (the host plans with it, and a graphed step's kernel from its length) */
__host__ __device__ static inline int split_keys(long span, long want, long smax) {
    long S = ((span + want - 1) / want + 63) / 64 * 64;
    if (S < 64) S = 64;
    if (S > smax) S = smax;
    return (int)S;
}

static ad_plan plan_of(int m, int H, int Hkv, int ds, int dr, int dv, int span) {
    ad_plan p;
    const int group = H / Hkv;
    p.hsplit = (group + AD_RMAX - 1) / AD_RMAX;
    p.gsub = (group + p.hsplit - 1) / p.hsplit;
    p.qt = AD_RMAX / p.gsub;
    if (p.qt > m) p.qt = m;
    if (p.qt < 1) p.qt = 1;
    p.R = p.qt * p.gsub;
    p.ds8 = (ds + 7) / 8 * 8;
    p.dr8 = (dr + 7) / 8 * 8;
    p.vec2 = p.R <= AD_VEC_R && dv % 8 == 0 && dv / 8 <= AD_THREADS;
    if (p.vec2) {
        p.nsl = AD_THREADS / (dv / 8);
    } else {
        const int DL = dv < AD_THREADS ? dv : AD_THREADS;
        p.nsl = AD_THREADS / DL;
    }
    const size_t fixed = (size_t)p.R * (p.ds8 + p.dr8) + (size_t)p.nsl * p.R * dv + 2 * (size_t)p.R;
    long smax = ((long)(AD_SMEM / 4) - (long)fixed) / p.R / 64 * 64;
    if (smax < 64) smax = 64;
    if (smax > 4096) smax = 4096;
    const long base = (long)Hkv * p.hsplit * ((m + p.qt - 1) / p.qt);
    const long want_blocks = 4L * cbk_sm_count();
    long want = (want_blocks + base - 1) / base;
    if (want < 1) want = 1;
    const int S = split_keys(span, want, smax);
    p.S = S;
    p.want = want;
    p.smax = smax;
    p.nsplit = span > 0 ? (int)((span + S - 1) / S) : 1;
    p.smem = 4 * (fixed + (size_t)p.R * p.S);
    return p;
}

/* A window shortens the span a pass splits; for any span <= kv_len the splits are at most
 * max(want, ceil(kv_len / smax)): S is either at least span / want, or smax. */
size_t cbk_attn_decode_work(int m, int H, int Hkv, int ds, int dr, int dv, int kv_len) {
    ad_plan p = plan_of(m, H, Hkv, ds, dr, dv, kv_len);
    long n = (kv_len + p.smax - 1) / p.smax;
    if (n < p.want) n = p.want;
    if (n < p.nsplit) n = p.nsplit;
    return (size_t)m * H * (size_t)n * (dv + 2);
}

typedef struct ad_args {
    cbk_kv_view k, ks, v;
    const float *q, *q_sem, *gate;
    int m, H, Hkv, group, ds, dr, dv, pos0, window, kstart, kv_len;
    const int *dpos; /* non-NULL: pos0 is *dpos (device memory), the split length follows
                        from it, and p.nsplit is the grid's (splits past the keys empty) */
    float rs, rr;
    ad_plan p;
    float *part; /* (m, H, nsplit, dv + 2): unnormalised output, then max and sum */
    float *out;  /* with done: where the last split of a block's rows combines them */
    int *done;   /* non-NULL: a count per (query tile, head share) of its splits finished */
} ad_args;

/* acc[r] += w . q[r] over 8 values, for the block's R rows (R <= RM) */
template <int RM>
__device__ __forceinline__ void dot8_rows(float *acc, const float *w, const float *qs, int ld, int j, int R) {
#pragma unroll
    for (int r = 0; r < RM; r++) {
        if (r >= R) break;
        const float *qr = qs + r * ld + j;
        float s = acc[r];
#pragma unroll
        for (int u = 0; u < 8; u++) s = __fmaf_rn(w[u], qr[u], s);
        acc[r] = s;
    }
}

/* the vector path of a float kind's segment: whole 16-byte aligned pieces of 8 */
static int seg_vec(const cbk_kv_view *t) {
    return t->kind == CB_KV_F32 || t->kind == CB_KV_F16 || t->kind == CB_KV_BF16 ? t->head_dim % 8 == 0 : 1;
}

/* RM: the most rows a block holds, AD_RMAX or (a step's few rows: its one query times the
 * heads of a kv group of 4 or fewer; cbk_set_attn_step_kernel) AD_STEP_R, which keeps the
 * rows' sums in fewer registers: 127 a thread at AD_RMAX (2 blocks of 256 an SM), at
 * most 85 at AD_STEP_R (3 blocks an SM, a few registers spilled), for more keys in flight
 * an SM. The same sums in the same order either way. */
template <int RM>
static __global__ void __launch_bounds__(AD_THREADS, RM <= AD_STEP_R ? 3 : 2) attn_decode_split(const ad_args a, const int vec_k,
                                                                        const int vec_ks) {
    constexpr int VR = RM < AD_VEC_R ? RM : AD_VEC_R; /* step 3's rows in registers */
    extern __shared__ float sh[];
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    ad_plan p = a.p;
    int pos0 = a.pos0, kv_len = a.kv_len, kstart = a.kstart;
    if (a.dpos) { /* as cbk_attn_decode plans on the host, from the length read here */
        pos0 = *a.dpos;
        kv_len = pos0 + a.m;
        kstart = a.window > 0 && pos0 - a.window + 1 > 0 ? pos0 - a.window + 1 : 0;
        p.S = split_keys(kv_len - kstart, p.want, p.smax);
    }
    const int R = p.R, S = p.S, ldq = p.ds8 + p.dr8;
    float *qs = sh;                           /* (R, ds8 + dr8): semantic then rotary part */
    float *sc = qs + (size_t)R * ldq;         /* (R, S) scores, then probabilities */
    float *red = sc + (size_t)R * S;          /* (nsl, R, dv) partial outputs */
    float *mrow = red + (size_t)p.nsl * R * a.dv, *lrow = mrow + R;
    const int split = blockIdx.x;
    const int kvh = blockIdx.y / p.hsplit, g0 = (blockIdx.y % p.hsplit) * p.gsub;
    const int i0 = blockIdx.z * p.qt;
    const int tid = threadIdx.x;

    // the tile's queries, scaled as layers/attention.c's query_scales; rows past m or the
    // group read as zero
    for (int idx = tid; idx < R * ldq; idx += AD_THREADS) {
        const int r = idx / ldq, c = idx % ldq;
        const int i = i0 + r / p.gsub, g = g0 + r % p.gsub;
        float val = 0.0f;
        if (i < a.m && g < a.group) {
            const int h = kvh * a.group + g;
            float c_sem = a.rs, c_rot = a.rr;
            if (a.gate) {
                const float gt = a.gate[(size_t)i * a.H + h];
                c_sem = 2 * gt * a.rs;
                c_rot = (2 - 2 * gt) * a.rr;
            }
            if (c < p.ds8) {
                if (c < a.ds) val = a.q_sem[((size_t)i * a.H + h) * a.ds + c] * c_sem;
            } else if (c - p.ds8 < a.dr) {
                val = a.q[((size_t)i * a.H + h) * a.dr + (c - p.ds8)] * c_rot;
            }
        }
        qs[idx] = val;
    }
    __syncthreads();

    // 1. scores
    const int k0 = kstart + split * S;
    int kend = k0 + S;
    if (kend > kv_len) kend = kv_len;
    const int nk = kend - k0;
    for (int kk = tid; kk < S; kk += AD_THREADS) {
        const int key = k0 + kk;
        float acc[RM];
#pragma unroll
        for (int r = 0; r < RM; r++) acc[r] = 0.0f;
        if (kk < nk) {
            float w[8];
            if (a.ds) {
                const unsigned char *seg = (const unsigned char *)a.ks.data + (size_t)key * a.ks.row_bytes +
                                           (size_t)kvh * a.ks.head_bytes;
                for (int j = 0; j < a.ds; j += 8) {
                    cbk_load8(a.ks.kind, seg, j, a.ds, vec_ks, w);
                    dot8_rows<RM>(acc, w, qs, ldq, j, R);
                }
            }
            const unsigned char *seg =
                (const unsigned char *)a.k.data + (size_t)key * a.k.row_bytes + (size_t)kvh * a.k.head_bytes;
            for (int j = 0; j < a.dr; j += 32) { /* four pieces' loads out together */
                float w4[4][8];
#pragma unroll
                for (int u = 0; u < 4; u++)
                    if (j + 8 * u < a.dr) cbk_load8(a.k.kind, seg, j + 8 * u, a.dr, vec_k, w4[u]);
#pragma unroll
                for (int u = 0; u < 4; u++)
                    if (j + 8 * u < a.dr) dot8_rows<RM>(acc, w4[u], qs + p.ds8, ldq, j + 8 * u, R);
            }
        }
#pragma unroll
        for (int r = 0; r < RM; r++) {
            if (r >= R) break;
            const int pos = pos0 + i0 + r / p.gsub; /* the query's position */
            const int lo = a.window > 0 ? pos - a.window + 1 : 0;
            sc[(size_t)r * S + kk] = kk < nk && key <= pos && key >= lo ? acc[r] : -INFINITY;
        }
    }
    __syncthreads();

    // 2. the split's softmax statistics, a warp per row
    const int lane = tid & 31, warp = tid >> 5;
    for (int r = warp; r < R; r += AD_THREADS / 32) {
        float *s = sc + (size_t)r * S;
        float mx = -INFINITY;
        for (int kk = lane; kk < nk; kk += 32) mx = fmaxf(mx, s[kk]);
        mx = cbk_warp_max(mx);
        float sum = 0.0f;
        for (int kk = lane; kk < nk; kk += 32) {
            const float e = mx == -INFINITY ? 0.0f : expf(s[kk] - mx);
            s[kk] = e;
            sum += e;
        }
        sum = cbk_warp_sum(sum);
        if (lane == 0) mrow[r] = mx, lrow[r] = sum;
    }
    __syncthreads();

    // 3. p v over the split's keys
    if (p.vec2) { /* a thread: one 8-value piece of the value rows of a slice of the keys */
        const int CL = a.dv / 8, sl = tid / CL, cl = tid % CL;
        if (sl < p.nsl) {
            float acc[VR][8];
#pragma unroll
            for (int r = 0; r < VR; r++)
#pragma unroll
                for (int u = 0; u < 8; u++) acc[r][u] = 0.0f;
#pragma unroll 2
            for (int kk = sl; kk < nk; kk += p.nsl) {
                const unsigned char *seg = (const unsigned char *)a.v.data + (size_t)(k0 + kk) * a.v.row_bytes +
                                           (size_t)kvh * a.v.head_bytes;
                float w[8];
                cbk_load8(a.v.kind, seg, cl * 8, a.dv, 1, w);
#pragma unroll
                for (int r = 0; r < VR; r++) {
                    if (r >= R) break;
                    const float pr = sc[(size_t)r * S + kk];
#pragma unroll
                    for (int u = 0; u < 8; u++) acc[r][u] = __fmaf_rn(pr, w[u], acc[r][u]);
                }
            }
#pragma unroll
            for (int r = 0; r < VR; r++) {
                if (r >= R) break;
#pragma unroll
                for (int u = 0; u < 8; u++) red[((size_t)sl * R + r) * a.dv + cl * 8 + u] = acc[r][u];
            }
        }
    }
    const int DL = AD_THREADS / p.nsl, sl = tid / DL, dl = tid % DL;
    if (!p.vec2 && sl < p.nsl) {
        for (int d = dl; d < a.dv; d += DL) {
            float acc[RM];
#pragma unroll
            for (int r = 0; r < RM; r++) acc[r] = 0.0f;
            for (int kk = sl; kk < nk; kk += p.nsl) {
                const unsigned char *seg = (const unsigned char *)a.v.data + (size_t)(k0 + kk) * a.v.row_bytes +
                                           (size_t)kvh * a.v.head_bytes;
                const float val = cbk_load1(a.v.kind, seg, d);
#pragma unroll
                for (int r = 0; r < RM; r++) {
                    if (r >= R) break;
                    acc[r] = __fmaf_rn(sc[(size_t)r * S + kk], val, acc[r]);
                }
            }
#pragma unroll
            for (int r = 0; r < RM; r++) {
                if (r >= R) break;
                red[((size_t)sl * R + r) * a.dv + d] = acc[r];
            }
        }
    }
    __syncthreads();
    for (int idx = tid; idx < R * a.dv; idx += AD_THREADS) {
        const int r = idx / a.dv, d = idx % a.dv;
        const int i = i0 + r / p.gsub, g = g0 + r % p.gsub;
        if (i >= a.m || g >= a.group) continue;
        float o = 0.0f;
        for (int s2 = 0; s2 < p.nsl; s2++) o += red[((size_t)s2 * R + r) * a.dv + d];
        float *part = a.part + (((size_t)i * a.H + kvh * a.group + g) * p.nsplit + split) * (a.dv + 2);
        part[d] = o;
        if (d == 0) part[a.dv] = mrow[r], part[a.dv + 1] = lrow[r];
    }
    if (!a.done) return;
    /* The split of these rows that finishes last combines them (attn_decode_combine's
     * sums, in its order), so a step needs no second launch: each split's partials are
     * seen device-wide before it counts itself; the last resets the count for the next
     * launch. The factors go where step 3's slices were (nsl R dv >= R (nsplit + 1)
     * floats: the host's condition). */
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        int *cnt = a.done + (size_t)blockIdx.z * gridDim.y + blockIdx.y;
        last = atomicAdd(cnt, 1) == (int)gridDim.x - 1;
        if (last) *cnt = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    const int ns = p.nsplit;
    float *fac = red; /* (R, ns + 1): a row's factors, then its sum's inverse */
    if (tid < R) {
        const int r = tid, i = i0 + r / p.gsub, g = g0 + r % p.gsub;
        if (i < a.m && g < a.group) {
            const float *pr = a.part + ((size_t)i * a.H + kvh * a.group + g) * ns * (a.dv + 2);
            float *fr = fac + (size_t)r * (ns + 1);
            float M = -INFINITY;
            for (int s2 = 0; s2 < ns; s2++) M = fmaxf(M, __ldcg(pr + (size_t)s2 * (a.dv + 2) + a.dv));
            float L = 0.0f;
            for (int s2 = 0; s2 < ns; s2++) {
                const float ms = __ldcg(pr + (size_t)s2 * (a.dv + 2) + a.dv);
                const float f = ms == -INFINITY ? 0.0f : expf(ms - M);
                fr[s2] = f;
                L += f * __ldcg(pr + (size_t)s2 * (a.dv + 2) + a.dv + 1);
            }
            fr[ns] = 1.0f / L;
        }
    }
    __syncthreads();
    for (int idx = tid; idx < R * ns; idx += AD_THREADS) {
        const int r = idx / ns, s2 = idx % ns;
        fac[(size_t)r * (ns + 1) + s2] *= fac[(size_t)r * (ns + 1) + ns];
    }
    __syncthreads();
    for (int idx = tid; idx < R * a.dv; idx += AD_THREADS) {
        const int r = idx / a.dv, d = idx % a.dv;
        const int i = i0 + r / p.gsub, g = g0 + r % p.gsub;
        if (i >= a.m || g >= a.group) continue;
        const size_t row = (size_t)i * a.H + kvh * a.group + g;
        const float *pr = a.part + row * ns * (a.dv + 2);
        const float *fr = fac + (size_t)r * (ns + 1);
        float o = 0.0f;
        for (int s2 = 0; s2 < ns; s2++) o = __fmaf_rn(fr[s2], __ldcg(pr + (size_t)s2 * (a.dv + 2) + d), o);
        a.out[row * a.dv + d] = o;
    }
}

/* out (m, H*dv): row (i, h) from its nsplit partials */
static __global__ void attn_decode_combine(float *out, const float *part, int H, int dv, int nsplit) {
    extern __shared__ float fac[]; /* (nsplit + 4): the factors, then the sum's inverse */
    float *tot = fac + nsplit;
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    const size_t row = blockIdx.x; /* i * H + h */
    const float *pr = part + row * nsplit * (dv + 2);
    if (threadIdx.x == 0) {
        float M = -INFINITY;
        for (int s = 0; s < nsplit; s++) M = fmaxf(M, pr[(size_t)s * (dv + 2) + dv]);
        float L = 0.0f;
        for (int s = 0; s < nsplit; s++) {
            const float ms = pr[(size_t)s * (dv + 2) + dv];
            const float f = ms == -INFINITY ? 0.0f : expf(ms - M);
            fac[s] = f;
            L += f * pr[(size_t)s * (dv + 2) + dv + 1];
        }
        tot[0] = 1.0f / L;
    }
    __syncthreads();
    for (int s = threadIdx.x; s < nsplit; s += blockDim.x) fac[s] *= tot[0];
    __syncthreads();
    for (int d = threadIdx.x; d < dv; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < nsplit; s++) o = __fmaf_rn(fac[s], pr[(size_t)s * (dv + 2) + d], o);
        out[row * dv + d] = o;
    }
}

static int ad_step_kernel; /* cbk_set_attn_step_kernel */

void cbk_set_attn_step_kernel(int on) { ad_step_kernel = on != 0; }

void cbk_attn_decode_prepare(void) {
    static int done;
    if (!done) {
        cudaFuncSetAttribute(attn_decode_split<AD_RMAX>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)AD_SMEM);
        cudaFuncSetAttribute(attn_decode_split<AD_STEP_R>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)AD_SMEM);
    }
    done = 1;
}

static void args_of(ad_args *a, const float *q, const float *q_sem, const float *gate, const cbk_kv_view *k,
                    const cbk_kv_view *k_sem, const cbk_kv_view *v, int m, int H, int Hkv, int ds, int dr, int dv,
                    int window) {
    a->k = *k;
    a->ks = ds ? *k_sem : *k;
    a->v = *v;
    a->q = q, a->q_sem = q_sem, a->gate = gate;
    a->m = m, a->H = H, a->Hkv = Hkv, a->group = H / Hkv, a->ds = ds, a->dr = dr, a->dv = dv;
    a->window = window;
    a->dpos = NULL;
    a->out = NULL;
    a->done = NULL;
    a->rs = ds ? 1.0f / sqrtf((float)ds) : 0.0f;
    a->rr = 1.0f / sqrtf((float)dr);
}

static void launch(const ad_args *a, float *out, float *work, const cbk_kv_view *k, const cbk_kv_view *k_sem) {
    if (a->p.smem > 48 * 1024) cbk_attn_decode_prepare();
    dim3 grid((unsigned)a->p.nsplit, (unsigned)(a->Hkv * a->p.hsplit), (unsigned)((a->m + a->p.qt - 1) / a->p.qt));
    cbk_launch(ad_step_kernel && a->p.R <= AD_STEP_R ? attn_decode_split<AD_STEP_R> : attn_decode_split<AD_RMAX>,
               grid, AD_THREADS, a->p.smem, *a, seg_vec(k), a->ds ? seg_vec(k_sem) : 1);
    if (!a->done) cbk_launch(attn_decode_combine, (unsigned)(a->m * a->H), 128, (a->p.nsplit + 4) * sizeof(float), out, work, a->H,
               a->dv, a->p.nsplit);
}

void cbk_attn_decode(float *out, float *work, const float *q, const float *q_sem, const float *gate,
                     const cbk_kv_view *k, const cbk_kv_view *k_sem, const cbk_kv_view *v, int m, int H, int Hkv,
                     int ds, int dr, int dv, int pos0, int window) {
    ad_args a;
    args_of(&a, q, q_sem, gate, k, k_sem, v, m, H, Hkv, ds, dr, dv, window);
    a.pos0 = pos0;
    a.kv_len = pos0 + m;
    a.kstart = window > 0 && pos0 - window + 1 > 0 ? pos0 - window + 1 : 0;
    a.p = plan_of(m, H, Hkv, ds, dr, dv, a.kv_len - a.kstart);
    a.part = work;
    launch(&a, out, work, k, k_sem);
}

/* The grid and shared memory for the longest span (kv_cap keys): the splits a span needs
 * are at most max(want, ceil(kv_cap / smax)) (cbk_attn_decode_work's count), the split
 * length grows with the span; the kernel takes its own from *dpos, the splits past the
 * keys leave partials of no weight (max -inf, sum 0), which the combine passes over. The
 * splits that hold keys are those cbk_attn_decode takes: the same sums in the same order. */
void cbk_attn_decode_at(float *out, float *work, const float *q, const float *q_sem, const float *gate,
                        const cbk_kv_view *k, const cbk_kv_view *k_sem, const cbk_kv_view *v, int m, int H, int Hkv,
                        int ds, int dr, int dv, const int *dpos, int window, int kv_cap, int *done) {
    ad_args a;
    args_of(&a, q, q_sem, gate, k, k_sem, v, m, H, Hkv, ds, dr, dv, window);
    a.dpos = dpos;
    a.pos0 = a.kv_len = a.kstart = 0;
    a.p = plan_of(m, H, Hkv, ds, dr, dv, kv_cap);
    long n = (kv_cap + a.p.smax - 1) / a.p.smax;
    if (n < a.p.want) n = a.p.want;
    if (n < a.p.nsplit) n = a.p.nsplit;
    a.p.nsplit = (int)n;
    a.part = work;
    /* the last split combines: one query (a count per head at most), and room for the
     * factors where step 3's slices were */
    if (done && m == 1 && (long)a.p.nsl * dv >= n + 1) a.out = out, a.done = done;
    launch(&a, out, work, k, k_sem);
}
