/* attention.c: causal self-attention (standard, GQA, DBA) forward and backward over `real`
 * (layers/real.h); lib/layers/f64/attention_f64.c compiles the double twin.
 *
 * Every mode is computed as one score product per (batch, query head): the query and key
 * of a head are laid side by side as qcat = [c_sem q_sem, c_rot q_rot] and
 * kcat = [k_sem, k_rot] (T, d_sem + d_rot), so qcat kcat^T is docs/DESIGN.md's score
 * (standard/gqa: d_sem = 0, c_rot = 1/sqrt(hd); DBA: c_sem = 2g/sqrt(d_sem),
 * c_rot = (2-2g)/sqrt(d_geo), g = 1/2 without a gate). Rows are processed in blocks of
 * ROW_BLOCK queries so that a causal block only multiplies the keys it can see, and so
 * that the softmax rows live in a (ROW_BLOCK, T) buffer instead of (T, T). Backward
 * recomputes the probabilities from the saved log-sum-exp instead of storing them. */
#include "layers/attention.h"

#include "layers/activation.h"

#include <stdint.h>
#include <string.h>

#include "backend/cpu/gemm.h"
#include "layers/real.h"
#include "layers/rope.h"

#define ROW_BLOCK 64

/* Per-head widths of one config. */
typedef struct attn_dims {
    int d, H, Hkv, group; /* group = H / Hkv query heads per kv head */
    int ds, dr, dv, dqk;  /* semantic, rotary (RoPE path), value; dqk = ds + dr */
    int gated;            /* DBA with a static and/or dynamic gate */
} attn_dims;

static attn_dims dims_of(const cb_attention_config *cfg) {
    attn_dims m;
    m.d = cfg->d_model;
    m.H = cfg->n_heads;
    m.Hkv = cfg->n_kv_heads;
    m.group = m.H / m.Hkv;
    if (cfg->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = cfg->sem_dim / m.H;
        m.dr = cfg->geo_dim / m.H;
        m.dv = cfg->v_dim / m.H;
        m.gated = cfg->decoupled_gate || cfg->decoupled_gate_dynamic;
    } else {
        m.ds = 0;
        m.dr = cfg->head_dim;
        m.dv = cfg->head_dim;
        m.gated = 0;
    }
    m.dqk = m.ds + m.dr;
    return m;
}

static int row_block(int T) { return T < ROW_BLOCK ? T : ROW_BLOCK; }

/* Scratch of one (batch, head) item: forward needs the score rows plus qcat and kcat,
 * backward two score-sized buffers (P, dP) plus qcat, kcat and dqcat. */
static size_t item_fwd(const attn_dims *m, int T) {
    return (size_t)row_block(T) * T + 2 * (size_t)T * m->dqk;
}
static size_t item_bwd(const attn_dims *m, int T) {
    return 2 * (size_t)row_block(T) * T + 3 * (size_t)T * m->dqk;
}
#ifndef CB_REAL_F64
/* Backward's whole-batch gradient buffers, each (N, ...) : datt (H*dv), dq (H*dr),
 * dk (Hkv*dr), dq_sem (H*ds), dk_sem (Hkv*ds), dv (Hkv*dv), the per-query-head key and
 * value gradients before the GQA group sum dk_heads (H*dqk), dv_heads (H*dv), dz (H). */
static size_t bwd_global(const attn_dims *m, size_t N) {
    size_t per_row = (size_t)m->H * m->dv + (size_t)m->H * m->dr + (size_t)m->Hkv * m->dr +
                     (size_t)m->H * m->ds + (size_t)m->Hkv * m->ds + (size_t)m->Hkv * m->dv +
                     (size_t)m->H * m->dqk + (size_t)m->H * m->dv + (m->gated ? m->H : 0);
    return N * per_row;
}

int cb_attention_check(const cb_attention_config *cfg, cb_error *e) {
    const int d = cfg->d_model, H = cfg->n_heads, Hkv = cfg->n_kv_heads;
    if (d <= 0 || H <= 0 || Hkv <= 0)
        return cb_fail(e, CB_E_INVALID, "", "attention: d_model %d, n_heads %d, n_kv_heads %d must be positive", d, H, Hkv);
    if (H % Hkv != 0)
        return cb_fail(e, CB_E_INVALID, "", "attention: n_kv_heads %d does not divide n_heads %d", Hkv, H);
    if (cfg->dropout != 0.0)
        return cb_fail(e, CB_E_INVALID, "", "attention: dropout %g is not implemented (must be 0)", cfg->dropout);
    int rot;
    switch (cfg->mode) {
    case CB_ATTENTION_STANDARD:
    case CB_ATTENTION_GQA:
        if (cfg->mode == CB_ATTENTION_STANDARD && Hkv != H)
            return cb_fail(e, CB_E_INVALID, "", "attention: standard mode needs n_kv_heads %d == n_heads %d", Hkv, H);
        if (d % H != 0 || cfg->head_dim != d / H)
            return cb_fail(e, CB_E_INVALID, "", "attention: head_dim %d must be d_model %d / n_heads %d", cfg->head_dim, d, H);
        rot = cfg->head_dim;
        break;
    case CB_ATTENTION_DECOUPLED:
        if (cfg->sem_dim <= 0 || cfg->geo_dim <= 0 || cfg->v_dim <= 0)
            return cb_fail(e, CB_E_INVALID, "", "attention: sem_dim %d, geo_dim %d, v_dim %d must be positive", cfg->sem_dim, cfg->geo_dim, cfg->v_dim);
        if (cfg->sem_dim % H || cfg->geo_dim % H || cfg->v_dim % H)
            return cb_fail(e, CB_E_INVALID, "", "attention: n_heads %d must divide sem_dim %d, geo_dim %d and v_dim %d", H, cfg->sem_dim, cfg->geo_dim, cfg->v_dim);
        rot = cfg->geo_dim / H;
        break;
    default:
        return cb_fail(e, CB_E_INVALID, "", "attention: unknown mode %d", (int)cfg->mode);
    }
    if (cfg->mode != CB_ATTENTION_DECOUPLED && (cfg->decoupled_gate || cfg->decoupled_gate_dynamic))
        return cb_fail(e, CB_E_INVALID, "", "attention: decoupled_gate needs mode decoupled");
    if (cfg->rope_enabled && rot % 2 != 0)
        return cb_fail(e, CB_E_INVALID, "", "attention: RoPE needs an even per-head width, got %d", rot);
    return CB_OK;
}

int cb_attention_rope_dim(const cb_attention_config *cfg) {
    attn_dims m = dims_of(cfg);
    return m.dr;
}

size_t cb_attention_acts_size(const cb_attention_config *cfg, int B, int T) {
    attn_dims m = dims_of(cfg);
    size_t N = (size_t)B * T;
    size_t per_row = (size_t)m.H * m.dr + (size_t)m.Hkv * m.dr + (size_t)m.H * m.ds +
                     (size_t)m.Hkv * m.ds + (size_t)m.Hkv * m.dv + (m.gated ? m.H : 0) +
                     (size_t)m.H /* lse */ + (size_t)m.H * m.dv;
    return N * per_row;
}

size_t cb_attention_scratch_size(const cb_attention_config *cfg, int B, int T) {
    attn_dims m = dims_of(cfg);
    size_t items = (size_t)B * m.H;
    size_t fwd = items * item_fwd(&m, T);
    size_t bwd = bwd_global(&m, (size_t)B * T) + items * item_bwd(&m, T);
    return fwd > bwd ? fwd : bwd;
}
#endif

void CB_FN(cb_attention_acts_layout)(CB_FN(cb_attention_acts) *acts, real *buf,
                                     const cb_attention_config *cfg, int B, int T) {
    attn_dims m = dims_of(cfg);
    size_t N = (size_t)B * T;
    real *p = buf;
    acts->q = p; p += N * m.H * m.dr;
    acts->k = p; p += N * m.Hkv * m.dr;
    acts->q_sem = m.ds ? p : NULL; p += N * m.H * m.ds;
    acts->k_sem = m.ds ? p : NULL; p += N * m.Hkv * m.ds;
    acts->v = p; p += N * m.Hkv * m.dv;
    acts->gate = m.gated ? p : NULL; p += m.gated ? N * m.H : 0;
    acts->lse = p; p += N * m.H;
    acts->att = p;
}

/* OpenBLAS (pthread build) runs a large GEMM on all its threads and serialises such
 * calls; inside our per-(batch, head) OpenMP loop each GEMM must stay on its thread.
 * The OpenMP build already keeps a GEMM called inside a parallel region on the calling
 * thread, and its openblas_set_num_threads(1) is omp_set_num_threads(1), which would run
 * that loop itself on one thread: there nothing is changed. */
static int blas_single_begin(void) {
    if (openblas_get_parallel() != 1) return 0; /* 1: pthreads; 0 sequential, 2 OpenMP */
    int n = openblas_get_num_threads();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}
static void blas_single_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}

// out (N, C) = in (N, d) w^T + b; w (C, d), b (C) or NULL
static void proj_forward(real *out, const real *in, const real *w, const real *b, int N, int d,
                         int C) {
    CB_FN(cb_gemm)(CblasNoTrans, CblasTrans, N, C, d, 1, in, d, w, d, 0, out, C);
    if (!b) return;
    #pragma omp parallel for if ((long)N * C >= 65536)
    for (int n = 0; n < N; n++) {
        real *row = out + (size_t)n * C;
        #pragma omp simd
        for (int j = 0; j < C; j++) row[j] += b[j];
    }
}

// db (C) += sum over rows of dy (N, C)
static void add_column_sums(real *db, const real *dy, int N, int C) {
    const int chunk = 256;
    #pragma omp parallel for if ((long)N * C >= 65536)
    for (int j0 = 0; j0 < C; j0 += chunk) {
        int j1 = j0 + chunk < C ? j0 + chunk : C;
        for (int n = 0; n < N; n++) {
            const real *row = dy + (size_t)n * C;
            #pragma omp simd
            for (int j = j0; j < j1; j++) db[j] += row[j];
        }
    }
}

// din (N, d) += dy (N, C) w; dw (C, d) += dy^T in; db (C) += column sums of dy
static void proj_backward(real *din, real *dw, real *db, const real *dy, const real *in,
                          const real *w, int N, int d, int C) {
    if (dw) CB_FN(cb_gemm)(CblasTrans, CblasNoTrans, C, d, N, 1, dy, C, in, d, 1, dw, d);
    if (db) add_column_sums(db, dy, N, C);
    if (din) CB_FN(cb_gemm)(CblasNoTrans, CblasNoTrans, N, d, C, 1, dy, C, w, d, 1, din, d);
}

/* Query scale factors of row n (b*T + t) and head h: c_sem and c_rot (see top). */
static void query_scales(const attn_dims *m, const real *gate, size_t n, int h, real *c_sem,
                         real *c_rot) {
    real rs = m->ds ? (real)1 / REAL_SQRT((real)m->ds) : 0;
    real rr = (real)1 / REAL_SQRT((real)m->dr);
    if (gate) {
        real g = gate[n * m->H + h];
        *c_sem = 2 * g * rs;
        *c_rot = (2 - 2 * g) * rr;
    } else {
        *c_sem = rs;
        *c_rot = rr;
    }
}

/* qcat (T, dqk) of batch b, head h: scaled semantic and rotary query side by side. */
static void gather_query(real *qcat, const CB_FN(cb_attention_acts) *a, const attn_dims *m,
                         int b, int h, int T) {
    for (int t = 0; t < T; t++) {
        size_t n = (size_t)b * T + t;
        real c_sem, c_rot;
        query_scales(m, a->gate, n, h, &c_sem, &c_rot);
        real *dst = qcat + (size_t)t * m->dqk;
        const real *qs = a->q_sem ? a->q_sem + (n * m->H + h) * m->ds : NULL;
        const real *qr = a->q + (n * m->H + h) * m->dr;
        for (int i = 0; i < m->ds; i++) dst[i] = c_sem * qs[i];
        for (int i = 0; i < m->dr; i++) dst[m->ds + i] = c_rot * qr[i];
    }
}

/* kcat (T, dqk) of batch b, kv head kh. */
static void gather_key(real *kcat, const CB_FN(cb_attention_acts) *a, const attn_dims *m, int b,
                       int kh, int T) {
    for (int t = 0; t < T; t++) {
        size_t n = (size_t)b * T + t;
        real *dst = kcat + (size_t)t * m->dqk;
        if (m->ds) memcpy(dst, a->k_sem + (n * m->Hkv + kh) * m->ds, sizeof(real) * m->ds);
        memcpy(dst + m->ds, a->k + (n * m->Hkv + kh) * m->dr, sizeof(real) * m->dr);
    }
}

/* Visible keys of query row t: causal 0..t, else all T. */
static int visible(int t, int T, int causal) { return causal ? t + 1 : T; }

// One (batch b, head h) of the forward: lse (T) of the head, att columns of the head.
static void head_forward(const CB_FN(cb_attention_acts) *a, const attn_dims *m, int b, int h,
                         int T, int causal, real *scratch) {
    const int rb = row_block(T), kh = h / m->group;
    real *S = scratch, *qcat = S + (size_t)rb * T, *kcat = qcat + (size_t)T * m->dqk;
    gather_query(qcat, a, m, b, h, T);
    gather_key(kcat, a, m, b, kh, T);
    const real *v = a->v + (size_t)b * T * m->Hkv * m->dv + (size_t)kh * m->dv;
    real *lse = a->lse + ((size_t)b * m->H + h) * T;
    for (int r0 = 0; r0 < T; r0 += rb) {
        int r1 = r0 + rb < T ? r0 + rb : T, rows = r1 - r0;
        int cols = causal ? r1 : T;
        // S (rows, cols) = qcat[r0:r1] kcat[0:cols]^T
        CB_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, m->dqk, 1,
                qcat + (size_t)r0 * m->dqk, m->dqk, kcat, m->dqk, 0, S, T);
        for (int t = r0; t < r1; t++) {
            real *s = S + (size_t)(t - r0) * T;
            int vis = visible(t, T, causal);
            real mx = s[0];
            #pragma omp simd reduction(max : mx)
            for (int j = 1; j < vis; j++) mx = s[j] > mx ? s[j] : mx;
            real sum = 0;
            #pragma omp simd reduction(+ : sum)
            for (int j = 0; j < vis; j++) {
                s[j] = cb_exp(s[j] - mx);
                sum += s[j];
            }
            real inv = (real)1 / sum;
            #pragma omp simd
            for (int j = 0; j < vis; j++) s[j] *= inv;
            if (cols > vis) memset(s + vis, 0, sizeof(real) * (cols - vis));
            lse[t] = mx + REAL_LOG(sum);
        }
        // att[b, r0:r1, h] (rows, dv) = P (rows, cols) v[0:cols]
        CB_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, m->dv, cols, 1, S, T, v,
                m->Hkv * m->dv, 0, a->att + (((size_t)b * T + r0) * m->H + h) * m->dv,
                m->H * m->dv);
    }
}

void CB_FN(cb_attention_forward)(real *out, const CB_FN(cb_attention_acts) *a, const real *in,
                                 const CB_FN(cb_attention_weights) *w,
                                 const cb_attention_config *cfg, const real *rope_cos,
                                 const real *rope_sin, real *scratch, int B, int T) {
    const attn_dims m = dims_of(cfg);
    const int N = B * T, d = m.d;
    const int decoupled = cfg->mode == CB_ATTENTION_DECOUPLED;
    const real *q_w = decoupled ? w->q_geo_weight : w->q_weight;
    const real *q_b = decoupled ? w->q_geo_bias : w->q_bias;
    const real *k_w = decoupled ? w->k_geo_weight : w->k_weight;
    const real *k_b = decoupled ? w->k_geo_bias : w->k_bias;
    proj_forward(a->q, in, q_w, cfg->bias ? q_b : NULL, N, d, m.H * m.dr);
    proj_forward(a->k, in, k_w, cfg->bias ? k_b : NULL, N, d, m.Hkv * m.dr);
    proj_forward(a->v, in, w->v_weight, cfg->bias ? w->v_bias : NULL, N, d, m.Hkv * m.dv);
    if (decoupled) {
        proj_forward(a->q_sem, in, w->q_sem_weight, cfg->bias ? w->q_sem_bias : NULL, N, d, m.H * m.ds);
        proj_forward(a->k_sem, in, w->k_sem_weight, cfg->bias ? w->k_sem_bias : NULL, N, d, m.Hkv * m.ds);
    }
    if (cfg->rope_enabled) {
        CB_FN(cb_rope_forward)(a->q, a->q, rope_cos, rope_sin, B, T, m.H, m.dr, 0);
        CB_FN(cb_rope_forward)(a->k, a->k, rope_cos, rope_sin, B, T, m.Hkv, m.dr, 0);
    }
    if (m.gated) {
        // gate (N, H) = sigmoid(a_h + in . gate_proj_h)
        if (cfg->decoupled_gate_dynamic)
            CB_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, N, m.H, d, 1, in, d,
                    w->gate_proj_weight, d, 0, a->gate, m.H);
        else
            memset(a->gate, 0, sizeof(real) * (size_t)N * m.H);
        for (size_t i = 0; i < (size_t)N * m.H; i++) {
            real z = a->gate[i] + (cfg->decoupled_gate ? w->gate[i % m.H] : 0);
            a->gate[i] = (real)1 / (1 + REAL_EXP(-z));
        }
    }
    const int items = B * m.H, causal = cfg->is_causal;
    const size_t per_item = item_fwd(&m, T);
    int blas_threads = blas_single_begin();
    #pragma omp parallel for schedule(dynamic, 1)
    for (int it = 0; it < items; it++)
        head_forward(a, &m, it / m.H, it % m.H, T, causal, scratch + (size_t)it * per_item);
    blas_single_end(blas_threads);
    proj_forward(out, a->att, w->o_weight, cfg->bias ? w->o_bias : NULL, N, m.H * m.dv, d);
}

/* Whole-batch gradient buffers of backward, carved from the scratch. */
typedef struct attn_grads {
    real *datt;     // (N, H*dv)
    real *dq;       // (N, H*dr)
    real *dk;       // (N, Hkv*dr)
    real *dq_sem;   // (N, H*ds)
    real *dk_sem;   // (N, Hkv*ds)
    real *dv;       // (N, Hkv*dv)
    real *dk_heads; // (N, H, dqk) key gradient of each query head, before the group sum
    real *dv_heads; // (N, H, dv)
    real *dz;       // (N, H) gradient of the gate's pre-sigmoid value
    real *items;    // per (batch, head) scratch
} attn_grads;

// One (batch b, head h) of the backward (see the top of the file for the layout).
static void head_backward(const attn_grads *g, const CB_FN(cb_attention_acts) *a,
                          const attn_dims *m, int b, int h, int T, int causal, real *scratch) {
    const int rb = row_block(T), kh = h / m->group, dqk = m->dqk;
    real *P = scratch, *dP = P + (size_t)rb * T;
    real *qcat = dP + (size_t)rb * T, *kcat = qcat + (size_t)T * dqk, *dqcat = kcat + (size_t)T * dqk;
    gather_query(qcat, a, m, b, h, T);
    gather_key(kcat, a, m, b, kh, T);
    const size_t row0 = (size_t)b * T;
    const int ld_att = m->H * m->dv, ld_v = m->Hkv * m->dv, ld_kh = m->H * dqk;
    const real *v = a->v + row0 * ld_v + (size_t)kh * m->dv;
    const real *datt = g->datt + row0 * ld_att + (size_t)h * m->dv;
    real *dk_h = g->dk_heads + row0 * ld_kh + (size_t)h * dqk;
    real *dv_h = g->dv_heads + row0 * ld_att + (size_t)h * m->dv;
    const real *lse = a->lse + ((size_t)b * m->H + h) * T;
    for (int t = 0; t < T; t++) {
        memset(dk_h + (size_t)t * ld_kh, 0, sizeof(real) * dqk);
        memset(dv_h + (size_t)t * ld_att, 0, sizeof(real) * m->dv);
    }
    for (int r0 = 0; r0 < T; r0 += rb) {
        int r1 = r0 + rb < T ? r0 + rb : T, rows = r1 - r0;
        int cols = causal ? r1 : T;
        // P (rows, cols) = exp(qcat kcat^T - lse), zero where masked
        CB_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, dqk, 1,
                qcat + (size_t)r0 * dqk, dqk, kcat, dqk, 0, P, T);
        for (int t = r0; t < r1; t++) {
            real *p = P + (size_t)(t - r0) * T;
            int vis = visible(t, T, causal);
            const real row_lse = lse[t];
            #pragma omp simd
            for (int j = 0; j < vis; j++) p[j] = cb_exp(p[j] - row_lse);
            if (cols > vis) memset(p + vis, 0, sizeof(real) * (cols - vis));
        }
        // dP (rows, cols) = datt[r0:r1] v[0:cols]^T
        CB_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, m->dv, 1,
                datt + (size_t)r0 * ld_att, ld_att, v, ld_v, 0, dP, T);
        // dv_h[0:cols] += P^T datt[r0:r1]
        CB_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, cols, m->dv, rows, 1, P, T,
                datt + (size_t)r0 * ld_att, ld_att, 1, dv_h, ld_att);
        /* dS = P (dP - rowsum(P dP)). The row sum is taken over the very P and dP it
         * corrects (not as datt . att), so each row of dS sums to zero up to one rounding:
         * a key bias, which shifts a whole row, then gets a gradient of ~0 as it should. */
        for (int t = r0; t < r1; t++) {
            real *p = P + (size_t)(t - r0) * T, *dp = dP + (size_t)(t - r0) * T;
            int vis = visible(t, T, causal);
            real dot = 0;
            #pragma omp simd reduction(+ : dot)
            for (int j = 0; j < vis; j++) dot += p[j] * dp[j];
            #pragma omp simd
            for (int j = 0; j < vis; j++) dp[j] = p[j] * (dp[j] - dot);
            if (cols > vis) memset(dp + vis, 0, sizeof(real) * (cols - vis));
        }
        // dqcat[r0:r1] = dS kcat[0:cols]; dk_h[0:cols] += dS^T qcat[r0:r1]
        CB_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, dqk, cols, 1, dP, T, kcat, dqk,
                0, dqcat + (size_t)r0 * dqk, dqk);
        CB_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, cols, dqk, rows, 1, dP, T,
                qcat + (size_t)r0 * dqk, dqk, 1, dk_h, ld_kh);
    }
    // Undo the query scales into dq_sem, dq; the gate sees dc_sem . q_sem and dc_rot . q
    const real rs = m->ds ? (real)1 / REAL_SQRT((real)m->ds) : 0;
    const real rr = (real)1 / REAL_SQRT((real)m->dr);
    for (int t = 0; t < T; t++) {
        size_t n = row0 + t;
        real c_sem, c_rot;
        query_scales(m, a->gate, n, h, &c_sem, &c_rot);
        const real *dqc = dqcat + (size_t)t * dqk;
        const real *qs = m->ds ? a->q_sem + (n * m->H + h) * m->ds : NULL;
        const real *qr = a->q + (n * m->H + h) * m->dr;
        real *dqs = m->ds ? g->dq_sem + (n * m->H + h) * m->ds : NULL;
        real *dqr = g->dq + (n * m->H + h) * m->dr;
        real dc_sem = 0, dc_rot = 0;
        for (int i = 0; i < m->ds; i++) {
            dqs[i] = c_sem * dqc[i];
            dc_sem += dqc[i] * qs[i];
        }
        for (int i = 0; i < m->dr; i++) {
            dqr[i] = c_rot * dqc[m->ds + i];
            dc_rot += dqc[m->ds + i] * qr[i];
        }
        if (a->gate) {
            real gv = a->gate[n * m->H + h];
            real dg = 2 * rs * dc_sem - 2 * rr * dc_rot;
            g->dz[n * m->H + h] = dg * gv * (1 - gv);
        }
    }
}

void CB_FN(cb_attention_backward)(real *din, const CB_FN(cb_attention_weights) *gw,
                                  const real *dout, const real *in,
                                  const CB_FN(cb_attention_acts) *a,
                                  const CB_FN(cb_attention_weights) *w,
                                  const cb_attention_config *cfg, const real *rope_cos,
                                  const real *rope_sin, real *scratch, int B, int T) {
    const attn_dims m = dims_of(cfg);
    const int N = B * T, d = m.d;
    const int decoupled = cfg->mode == CB_ATTENTION_DECOUPLED;
    const size_t Nz = (size_t)N;
    attn_grads g;
    real *p = scratch;
    g.datt = p; p += Nz * m.H * m.dv;
    g.dq = p; p += Nz * m.H * m.dr;
    g.dk = p; p += Nz * m.Hkv * m.dr;
    g.dq_sem = p; p += Nz * m.H * m.ds;
    g.dk_sem = p; p += Nz * m.Hkv * m.ds;
    g.dv = p; p += Nz * m.Hkv * m.dv;
    g.dk_heads = p; p += Nz * m.H * m.dqk;
    g.dv_heads = p; p += Nz * m.H * m.dv;
    g.dz = m.gated ? p : NULL; p += m.gated ? Nz * m.H : 0;
    g.items = p;

    // output projection: datt = dout o_w; do_w += dout^T att; do_b += sums of dout
    CB_FN(cb_gemm)(CblasNoTrans, CblasNoTrans, N, m.H * m.dv, d, 1, dout, d, w->o_weight, m.H * m.dv, 0,
                   g.datt, m.H * m.dv);
    proj_backward(NULL, gw->o_weight, cfg->bias ? gw->o_bias : NULL, dout, a->att, NULL, N,
                  m.H * m.dv, d);

    const int items = B * m.H, causal = cfg->is_causal;
    const size_t per_item = item_bwd(&m, T);
    int blas_threads = blas_single_begin();
    #pragma omp parallel for schedule(dynamic, 1)
    for (int it = 0; it < items; it++)
        head_backward(&g, a, &m, it / m.H, it % m.H, T, causal, g.items + (size_t)it * per_item);
    blas_single_end(blas_threads);

    // Sum the query heads of each kv group into the key and value gradients.
    #pragma omp parallel for if ((long)N * m.H * (m.dqk + m.dv) >= 65536)
    for (int n = 0; n < N; n++) {
        for (int kh = 0; kh < m.Hkv; kh++) {
            real *dks = g.dk_sem + ((size_t)n * m.Hkv + kh) * m.ds;
            real *dkr = g.dk + ((size_t)n * m.Hkv + kh) * m.dr;
            real *dvv = g.dv + ((size_t)n * m.Hkv + kh) * m.dv;
            memset(dks, 0, sizeof(real) * m.ds);
            memset(dkr, 0, sizeof(real) * m.dr);
            memset(dvv, 0, sizeof(real) * m.dv);
            for (int j = 0; j < m.group; j++) {
                int h = kh * m.group + j;
                const real *src = g.dk_heads + ((size_t)n * m.H + h) * m.dqk;
                const real *srcv = g.dv_heads + ((size_t)n * m.H + h) * m.dv;
                for (int i = 0; i < m.ds; i++) dks[i] += src[i];
                for (int i = 0; i < m.dr; i++) dkr[i] += src[m.ds + i];
                for (int i = 0; i < m.dv; i++) dvv[i] += srcv[i];
            }
        }
    }

    if (m.gated) {
        if (cfg->decoupled_gate && gw->gate) add_column_sums(gw->gate, g.dz, N, m.H);
        if (cfg->decoupled_gate_dynamic)
            proj_backward(din, gw->gate_proj_weight, NULL, g.dz, in, w->gate_proj_weight, N, d, m.H);
    }
    if (cfg->rope_enabled) {
        CB_FN(cb_rope_unrotate)(g.dq, rope_cos, rope_sin, B, T, m.H, m.dr, 0);
        CB_FN(cb_rope_unrotate)(g.dk, rope_cos, rope_sin, B, T, m.Hkv, m.dr, 0);
    }
    const real *q_w = decoupled ? w->q_geo_weight : w->q_weight;
    const real *k_w = decoupled ? w->k_geo_weight : w->k_weight;
    real *dq_w = decoupled ? gw->q_geo_weight : gw->q_weight;
    real *dq_b = cfg->bias ? (decoupled ? gw->q_geo_bias : gw->q_bias) : NULL;
    real *dk_w = decoupled ? gw->k_geo_weight : gw->k_weight;
    real *dk_b = cfg->bias ? (decoupled ? gw->k_geo_bias : gw->k_bias) : NULL;
    proj_backward(din, dq_w, dq_b, g.dq, in, q_w, N, d, m.H * m.dr);
    proj_backward(din, dk_w, dk_b, g.dk, in, k_w, N, d, m.Hkv * m.dr);
    proj_backward(din, gw->v_weight, cfg->bias ? gw->v_bias : NULL, g.dv, in, w->v_weight, N, d,
                  m.Hkv * m.dv);
    if (decoupled) {
        proj_backward(din, gw->q_sem_weight, cfg->bias ? gw->q_sem_bias : NULL, g.dq_sem, in,
                      w->q_sem_weight, N, d, m.H * m.ds);
        proj_backward(din, gw->k_sem_weight, cfg->bias ? gw->k_sem_bias : NULL, g.dk_sem, in,
                      w->k_sem_weight, N, d, m.Hkv * m.ds);
    }
}
