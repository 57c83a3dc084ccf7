/* attention.cu: the element-wise and row-wise parts of layers/attention.c around its
 * products (which backend/cuda/attention.c runs as cuBLAS batched products over
 * (batch, query head)): the DBA gate, the gathering of scaled queries and of each query
 * head's keys and values into per-head matrices, the causal softmax and its backward,
 * and the scatter of the per-head gradients back into the projections' layouts. */
#include "common.cuh"

static __global__ void attn_gate(float *gate, const float *a, int dynamic, int H, size_t n) {
    CBK_FOR(i, n) {
        float z = (dynamic ? gate[i] : 0.0f) + (a ? a[i % H] : 0.0f);
        gate[i] = 1.0f / (1.0f + expf(-z));
    }
}

void cbk_attn_gate(float *gate, const float *a, int dynamic, size_t N, int H) {
    size_t n = N * H;
    if (n) attn_gate<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(gate, a, dynamic, H, n);
}

/* layers/attention.c's query_scales */
__device__ __forceinline__ void query_scales(const cbk_attn_dims m, const float *gate, size_t n, int h,
                                             float *c_sem, float *c_rot) {
    float rs = m.ds ? 1.0f / sqrtf((float)m.ds) : 0.0f;
    float rr = 1.0f / sqrtf((float)m.dr);
    if (gate) {
        float g = gate[n * m.H + h];
        *c_sem = 2 * g * rs;
        *c_rot = (2 - 2 * g) * rr;
    } else {
        *c_sem = rs;
        *c_rot = rr;
    }
}

// j over (B, H, T, dqk) and (B, H, T, dv)
static __global__ void attn_gather(float *qcat, float *kcat, float *vh, const float *q_sem, const float *q,
                                   const float *k_sem, const float *k, const float *v, const float *gate,
                                   const cbk_attn_dims m) {
    const size_t nqk = (size_t)m.B * m.H * m.T * m.dqk, nv = (size_t)m.B * m.H * m.T * m.dv;
    CBK_FOR(j, nqk + nv) {
        if (j < nqk) {
            int i = (int)(j % m.dqk);
            size_t bht = j / m.dqk;
            int t = (int)(bht % m.T), h = (int)((bht / m.T) % m.H), b = (int)(bht / ((size_t)m.T * m.H));
            int kh = h / m.group;
            size_t n = (size_t)b * m.T + t;
            float c_sem, c_rot;
            query_scales(m, gate, n, h, &c_sem, &c_rot);
            if (i < m.ds) {
                qcat[j] = c_sem * q_sem[(n * m.H + h) * m.ds + i];
                kcat[j] = k_sem[(n * m.Hkv + kh) * m.ds + i];
            } else {
                qcat[j] = c_rot * q[(n * m.H + h) * m.dr + (i - m.ds)];
                kcat[j] = k[(n * m.Hkv + kh) * m.dr + (i - m.ds)];
            }
        } else {
            size_t jv = j - nqk;
            int i = (int)(jv % m.dv);
            size_t bht = jv / m.dv;
            int t = (int)(bht % m.T), h = (int)((bht / m.T) % m.H), b = (int)(bht / ((size_t)m.T * m.H));
            size_t n = (size_t)b * m.T + t;
            vh[jv] = v[(n * m.Hkv + h / m.group) * m.dv + i];
        }
    }
}

void cbk_attn_gather(float *qcat, float *kcat, float *vh, const float *q_sem, const float *q, const float *k_sem,
                     const float *k, const float *v, const float *gate, const cbk_attn_dims *m) {
    size_t n = (size_t)m->B * m->H * m->T * (m->dqk + m->dv);
    if (n) attn_gather<<<cbk_grid(n), CBK_THREADS>>>(qcat, kcat, vh, q_sem, q, k_sem, k, v, gate, *m);
}

/* Causal rows are processed in blocks of rb queries (backend/cuda/attention.c): the
 * products of a block read its rows up to the block's last key, so a row is written up
 * to there (zeros past the visible keys) and never further. */
__device__ __forceinline__ int row_cols(int t, int T, int rb, int causal) {
    return causal ? min(T, (t / rb + 1) * rb) : T;
}

// one block per row (b, h, t) of S
static __global__ void attn_softmax(float *S, float *lse, int T, int rb, int causal) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    int t = (int)(row % T);
    float *s = S + row * T;
    int vis = causal ? t + 1 : T, cols = row_cols(t, T, rb, causal);
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < vis; j += blockDim.x) mx = fmaxf(mx, s[j]);
    mx = cbk_block_max(mx, sh);
    float sum = 0.0f;
    for (int j = threadIdx.x; j < vis; j += blockDim.x) {
        float e = expf(s[j] - mx);
        s[j] = e;
        sum += e;
    }
    sum = cbk_block_sum(sum, sh);
    float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s[j] = j < vis ? s[j] * inv : 0.0f;
    if (threadIdx.x == 0) lse[row] = mx + logf(sum);
}

static int row_threads(int T) { return T >= 512 ? 256 : T >= 128 ? 128 : 32; }

void cbk_attn_softmax(float *S, float *lse, const cbk_attn_dims *m) {
    size_t rows = (size_t)m->B * m->H * m->T;
    if (rows) attn_softmax<<<(unsigned)rows, row_threads(m->T)>>>(S, lse, m->T, m->rb, m->causal);
}

static __global__ void attn_probs(float *S, const float *lse, int T, int rb, int causal) {
    size_t row = blockIdx.x;
    int t = (int)(row % T);
    float *s = S + row * T;
    int vis = causal ? t + 1 : T, cols = row_cols(t, T, rb, causal);
    float l = lse[row];
    for (int j = threadIdx.x; j < cols; j += blockDim.x) s[j] = j < vis ? expf(s[j] - l) : 0.0f;
}

void cbk_attn_probs(float *S, const float *lse, const cbk_attn_dims *m) {
    size_t rows = (size_t)m->B * m->H * m->T;
    if (rows) attn_probs<<<(unsigned)rows, row_threads(m->T)>>>(S, lse, m->T, m->rb, m->causal);
}

// dS = P (dP - rowsum(P dP)), the row sum over the very P and dP it corrects (as the CPU)
static __global__ void attn_softmax_backward(float *dP, const float *P, int T, int rb, int causal) {
    __shared__ float sh[32];
    size_t row = blockIdx.x;
    int t = (int)(row % T);
    float *dp = dP + row * T;
    const float *p = P + row * T;
    int vis = causal ? t + 1 : T, cols = row_cols(t, T, rb, causal);
    float dot = 0.0f;
    for (int j = threadIdx.x; j < vis; j += blockDim.x) dot += p[j] * dp[j];
    dot = cbk_block_sum(dot, sh);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) dp[j] = j < vis ? p[j] * (dp[j] - dot) : 0.0f;
}

void cbk_attn_softmax_backward(float *dP, const float *P, const cbk_attn_dims *m) {
    size_t rows = (size_t)m->B * m->H * m->T;
    if (rows) attn_softmax_backward<<<(unsigned)rows, row_threads(m->T)>>>(dP, P, m->T, m->rb, m->causal);
}

// j over (B, H, T, w): heads[j] <-> rows[(b T + t) H w + h w + i]
static __global__ void heads_rows(float *rows, float *heads, int to_rows, int T, int H, int w, size_t n) {
    CBK_FOR(j, n) {
        int i = (int)(j % w);
        size_t bht = j / w;
        int t = (int)(bht % T), h = (int)((bht / T) % H);
        size_t b = bht / ((size_t)T * H);
        size_t r = ((b * T + t) * H + h) * w + i;
        if (to_rows) rows[r] = heads[j];
        else heads[j] = rows[r];
    }
}

void cbk_attn_heads_to_rows(float *rows, const float *heads, const cbk_attn_dims *m, int w) {
    size_t n = (size_t)m->B * m->H * m->T * w;
    if (n) heads_rows<<<cbk_grid(n), CBK_THREADS>>>(rows, (float *)heads, 1, m->T, m->H, w, n);
}
void cbk_attn_rows_to_heads(float *heads, const float *rows, const cbk_attn_dims *m, int w) {
    size_t n = (size_t)m->B * m->H * m->T * w;
    if (n) heads_rows<<<cbk_grid(n), CBK_THREADS>>>((float *)rows, heads, 0, m->T, m->H, w, n);
}

// one warp per (n, h): undo the query scales; the gate sees dc_sem . q_sem and dc_rot . q
static __global__ void attn_query_backward(float *dq_sem, float *dq, float *dz, const float *dqcat,
                                           const float *q_sem, const float *q, const float *gate,
                                           const cbk_attn_dims m) {
    size_t warp = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x & 31;
    size_t N = (size_t)m.B * m.T;
    if (warp >= N * m.H) return;
    size_t n = warp / m.H;
    int h = (int)(warp % m.H);
    int b = (int)(n / m.T), t = (int)(n % m.T);
    const float *dqc = dqcat + (((size_t)b * m.H + h) * m.T + t) * m.dqk;
    float c_sem, c_rot;
    query_scales(m, gate, n, h, &c_sem, &c_rot);
    float dc_sem = 0.0f, dc_rot = 0.0f;
    for (int i = lane; i < m.ds; i += 32) {
        dq_sem[(n * m.H + h) * m.ds + i] = c_sem * dqc[i];
        dc_sem += dqc[i] * q_sem[(n * m.H + h) * m.ds + i];
    }
    for (int i = lane; i < m.dr; i += 32) {
        dq[(n * m.H + h) * m.dr + i] = c_rot * dqc[m.ds + i];
        dc_rot += dqc[m.ds + i] * q[(n * m.H + h) * m.dr + i];
    }
    if (!gate) return;
    dc_sem = cbk_warp_sum(dc_sem);
    dc_rot = cbk_warp_sum(dc_rot);
    if (lane == 0) {
        float rs = m.ds ? 1.0f / sqrtf((float)m.ds) : 0.0f;
        float rr = 1.0f / sqrtf((float)m.dr);
        float gv = gate[n * m.H + h];
        float dg = 2 * rs * dc_sem - 2 * rr * dc_rot;
        dz[n * m.H + h] = dg * gv * (1 - gv);
    }
}

void cbk_attn_query_backward(float *dq_sem, float *dq, float *dz, const float *dqcat, const float *q_sem,
                             const float *q, const float *gate, const cbk_attn_dims *m) {
    size_t threads = (size_t)m->B * m->T * m->H * 32;
    if (threads)
        attn_query_backward<<<(unsigned)((threads + 255) / 256), 256>>>(dq_sem, dq, dz, dqcat, q_sem, q, gate, *m);
}

// j over (N, Hkv, dqk) and (N, Hkv, dv): the group's query heads added in order
static __global__ void attn_group_sum(float *dk_sem, float *dk, float *dv, const float *dkh, const float *dvh,
                                      const cbk_attn_dims m) {
    const size_t N = (size_t)m.B * m.T, nk = N * m.Hkv * m.dqk, nv = N * m.Hkv * m.dv;
    CBK_FOR(j, nk + nv) {
        int is_v = j >= nk;
        size_t jj = is_v ? j - nk : j;
        int w = is_v ? m.dv : m.dqk;
        int i = (int)(jj % w);
        size_t nkh = jj / w;
        int kh = (int)(nkh % m.Hkv);
        size_t n = nkh / m.Hkv;
        int b = (int)(n / m.T), t = (int)(n % m.T);
        const float *src = is_v ? dvh : dkh;
        float acc = 0.0f;
        for (int g = 0; g < m.group; g++) {
            int h = kh * m.group + g;
            acc += src[(((size_t)b * m.H + h) * m.T + t) * w + i];
        }
        if (is_v) dv[(n * m.Hkv + kh) * m.dv + i] = acc;
        else if (i < m.ds) dk_sem[(n * m.Hkv + kh) * m.ds + i] = acc;
        else dk[(n * m.Hkv + kh) * m.dr + (i - m.ds)] = acc;
    }
}

void cbk_attn_group_sum(float *dk_sem, float *dk, float *dv, const float *dkh, const float *dvh,
                        const cbk_attn_dims *m) {
    size_t n = (size_t)m->B * m->T * m->Hkv * (m->dqk + m->dv);
    if (n) attn_group_sum<<<cbk_grid(n), CBK_THREADS>>>(dk_sem, dk, dv, dkh, dvh, *m);
}
