/* attention.c: causal self-attention (standard, GQA, DBA) of a full-sequence pass on the
 * GPU, the algorithm of layers/attention.c: the projections, RoPE and the DBA gate as
 * there, then the attention core in one of two ways.
 *
 * float32 (c->amp == 0, what the tests hold to the CPU): whole-batch products. Every
 * (batch, query head) at once: qcat, kcat (B,H,T,dqk) and vh (B,H,T,dv) gathered (GQA's kv
 * heads repeated per query head), the scores S = qcat kcat^T (B*H, T, T) as one strided
 * batched product, the causal softmax, and P vh. As on the CPU, causal rows go in blocks
 * of rb queries whose products stop at the block's last key (with 8 blocks, 56% of the
 * full square's work and traffic), and backward recomputes P from the saved log-sum-exp.
 * The score matrices live in the backend's scratch (ws): 2 B H T^2 floats in backward.
 *
 * amp (mixed precision): kernels/flash_attention.cu, bf16 tiles on the tensor cores with
 * float32 sums, reading the projections where they lie and never forming S. The saved
 * layout is the CPU's (cb_attention_acts): q, k, q_sem, k_sem, v and gate as forward
 * computed them (float32, q and k after RoPE, unscaled), lse (B,H,T) the log-sum-exp of
 * each row of scaled scores as the flash kernel's online softmax found it, and att
 * (B,T,H*dv) the kernel's output, which the output projection reads and backward's
 * D = rowsum(datt att) needs. The scratch (ws) holds the kernels' bf16 copies of q, k, v
 * (and in backward of datt, with D and the log-sum-exp per row), after the projections'
 * gradients in backward: no T^2 term. */
#include "backend/cuda/internal.h"

#include <string.h>
#include "backend/cuda/kernels.h"

static cbk_attn_dims dims_of(const cb_attention_config *cfg, int B, int T) {
    cbk_attn_dims m;
    memset(&m, 0, sizeof m);
    m.B = B;
    m.T = T;
    m.H = cfg->n_heads;
    m.Hkv = cfg->n_kv_heads;
    m.group = m.H / m.Hkv;
    if (cfg->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = cfg->sem_dim / m.H;
        m.dr = cfg->geo_dim / m.H;
        m.dv = cfg->v_dim / m.H;
    } else {
        m.dr = cfg->head_dim;
        m.dv = cfg->head_dim;
    }
    m.dqk = m.ds + m.dr;
    m.causal = cfg->is_causal;
    /* at most 8 row blocks of at least 64 queries: smaller products lose more to launch
     * and tile overheads than the masked keys they skip */
    m.rb = (T + 7) / 8 < 64 ? 64 : (T + 7) / 8;
    if (!m.causal || m.rb > T) m.rb = T;
    return m;
}

static int gated(const cb_attention_config *cfg) {
    return cfg->mode == CB_ATTENTION_DECOUPLED && (cfg->decoupled_gate || cfg->decoupled_gate_dynamic);
}

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* flash kernels for this op: amp on and widths they take */
static int use_flash(const cuda_ctx *c, const cbk_attn_dims *m) { return c->amp && cbk_flash_supported(m->dqk, m->dv); }

/* the kernels' shapes, no tensors yet */
static cbk_flash_args flash_dims(const cbk_attn_dims *m) {
    cbk_flash_args f;
    memset(&f, 0, sizeof f);
    f.B = m->B;
    f.T = m->T;
    f.H = m->H;
    f.Hkv = m->Hkv;
    f.causal = m->causal;
    f.ds = m->ds;
    f.dr = m->dr;
    f.dv = m->dv;
    return f;
}

void cb_cuda_attention_work(const cuda_ctx *c, const cb_attention_config *cfg, int B, int T, size_t *ws, size_t *red) {
    const cbk_attn_dims m = dims_of(cfg, B, T);
    const size_t N = (size_t)B * T, X = N * m.H, S = (size_t)B * m.H * T * T;
    size_t grads = N * ((size_t)m.H * m.dv + (size_t)m.H * m.dr + (size_t)m.Hkv * m.dr + (size_t)m.H * m.ds +
                        (size_t)m.Hkv * m.ds + (size_t)m.Hkv * m.dv + (gated(cfg) ? m.H : 0));
    if (use_flash(c, &m)) {
        const cbk_flash_args f = flash_dims(&m);
        *ws = max_z(cbk_flash_forward_work(&f), grads + cbk_flash_backward_work(&f));
    } else {
        size_t fwd = 2 * X * m.dqk + 2 * X * m.dv + S;
        size_t bwd = grads + 4 * X * m.dqk + 3 * X * m.dv + 2 * S;
        *ws = max_z(fwd, bwd);
    }
    int widest = cfg->d_model;
    const int widths[] = {m.H * m.dr, m.Hkv * m.dr, m.H * m.ds, m.Hkv * m.ds, m.Hkv * m.dv, m.H};
    for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++)
        if (widths[k] > widest) widest = widths[k];
    *red = cbk_colsum_work((int)N, widest);
}

typedef struct attn_params {
    const float *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b, *qs_w, *qs_b, *ks_w, *ks_b, *gate, *gate_proj;
} attn_params;

/* The op's tensors in base (weights or gradients): the rotary path's q and k are q/k
 * (standard, GQA) or q_geo/k_geo (DBA); biases only when the config has them. */
static attn_params params_of(const float *base, const cb_op *op) {
#define AT(role) (!base || op->p[role] == CB_NO_PARAM ? NULL : base + op->p[role])
    const int dec = op->attn.mode == CB_ATTENTION_DECOUPLED, bias = op->attn.bias;
    attn_params a;
    a.q_w = dec ? AT(CB_P_QGEO_W) : AT(CB_P_Q_W);
    a.q_b = !bias ? NULL : dec ? AT(CB_P_QGEO_B) : AT(CB_P_Q_B);
    a.k_w = dec ? AT(CB_P_KGEO_W) : AT(CB_P_K_W);
    a.k_b = !bias ? NULL : dec ? AT(CB_P_KGEO_B) : AT(CB_P_K_B);
    a.v_w = AT(CB_P_V_W);
    a.v_b = bias ? AT(CB_P_V_B) : NULL;
    a.o_w = AT(CB_P_O_W);
    a.o_b = bias ? AT(CB_P_O_B) : NULL;
    a.qs_w = dec ? AT(CB_P_QSEM_W) : NULL;
    a.qs_b = dec && bias ? AT(CB_P_QSEM_B) : NULL;
    a.ks_w = dec ? AT(CB_P_KSEM_W) : NULL;
    a.ks_b = dec && bias ? AT(CB_P_KSEM_B) : NULL;
    a.gate = dec && op->attn.decoupled_gate ? AT(CB_P_GATE_A) : NULL;
    a.gate_proj = dec && op->attn.decoupled_gate_dynamic ? AT(CB_P_GATE_PROJ) : NULL;
#undef AT
    return a;
}

static void rope_of(const cb_pass *p, const cb_op *op, const float **cos, const float **sin) {
    const cb_rope_table *t = &p->prog->ropes[op->rope];
    *cos = p->rope + t->offset;
    *sin = *cos + (size_t)p->prog->T * (t->dim / 2);
}

/* Row block [r0, r1) of the queries and the keys it sees, [0, cols). */
#define FOR_ROW_BLOCKS(m, r0, r1, rows, cols)                                                \
    for (int r0 = 0, r1, rows, cols; r0 < (m)->T &&                                          \
         (r1 = r0 + (m)->rb < (m)->T ? r0 + (m)->rb : (m)->T, rows = r1 - r0,              \
         cols = (m)->causal ? r1 : (m)->T, 1);                                              \
         r0 += (m)->rb)

/* S (B*H, T, T) = qcat kcat^T, one product per (batch, query head) and row block */
static void scores(cuda_ctx *c, float *S, const float *qcat, const float *kcat, const cbk_attn_dims *m) {
    const long long T = m->T, sq = T * m->dqk;
    FOR_ROW_BLOCKS(m, r0, r1, rows, cols) {
        (void)r1;
        cb_cuda_gemm_batched(c, 0, 1, rows, cols, m->dqk, 1, qcat + (size_t)r0 * m->dqk, m->dqk, sq, kcat, m->dqk,
                             sq, 0, S + (size_t)r0 * m->T, m->T, T * T, m->B * m->H);
    }
}

static cbk_flash_args flash_args(const cbk_attn_dims *m, const cb_attention_acts *a) {
    cbk_flash_args f = flash_dims(m);
    f.q_sem = a->q_sem;
    f.q = a->q;
    f.k_sem = a->k_sem;
    f.k = a->k;
    f.v = a->v;
    f.gate = a->gate;
    return f;
}

void cb_cuda_attention_forward(cuda_ctx *c, cb_pass *p, int i) {
    const cb_op *op = &p->prog->ops[i];
    const cb_attention_config *cfg = &op->attn;
    const int B = p->B, T = p->T, N = B * T, d = cfg->d_model;
    const cbk_attn_dims m = dims_of(cfg, B, T);
    const int *ins = p->prog->inputs + op->in_first;
    const float *in = p->slots + p->prog->slots[ins[0]].offset;
    float *out = p->slots + p->prog->slots[op->out].offset;
    cb_attention_acts a;
    cb_attention_acts_layout(&a, p->saved + op->saved, cfg, B, T);
    const attn_params w = params_of(p->weights, op);

    cb_cuda_linear_forward(c, a.q, in, w.q_w, w.q_b, N, d, m.H * m.dr);
    cb_cuda_linear_forward(c, a.k, in, w.k_w, w.k_b, N, d, m.Hkv * m.dr);
    cb_cuda_linear_forward(c, a.v, in, w.v_w, w.v_b, N, d, m.Hkv * m.dv);
    if (m.ds) {
        cb_cuda_linear_forward(c, a.q_sem, in, w.qs_w, w.qs_b, N, d, m.H * m.ds);
        cb_cuda_linear_forward(c, a.k_sem, in, w.ks_w, w.ks_b, N, d, m.Hkv * m.ds);
    }
    if (cfg->rope_enabled) {
        const float *cos, *sin;
        rope_of(p, op, &cos, &sin);
        cbk_rope(a.q, a.q, cos, sin, B, T, m.H, m.dr, 0, 1.0f, 0);
        cbk_rope(a.k, a.k, cos, sin, B, T, m.Hkv, m.dr, 0, 1.0f, 0);
    }
    if (a.gate) {
        if (cfg->decoupled_gate_dynamic) cb_cuda_linear_forward(c, a.gate, in, w.gate_proj, NULL, N, d, m.H);
        cbk_attn_gate(a.gate, w.gate, cfg->decoupled_gate_dynamic, (size_t)N, m.H);
    }
    if (use_flash(c, &m)) {
        const cbk_flash_args f = flash_args(&m, &a);
        cbk_flash_forward(a.att, a.lse, c->ws, &f);
        cb_cuda_linear_forward(c, out, a.att, w.o_w, w.o_b, N, m.H * m.dv, d);
        return;
    }
    const size_t X = (size_t)N * m.H;
    float *qcat = c->ws, *kcat = qcat + X * m.dqk, *vh = kcat + X * m.dqk, *oh = vh + X * m.dv, *S = oh + X * m.dv;
    cbk_attn_gather(qcat, kcat, vh, a.q_sem, a.q, a.k_sem, a.k, a.v, a.gate, &m);
    scores(c, S, qcat, kcat, &m);
    cbk_attn_softmax(S, a.lse, &m);
    const long long TT = (long long)T * T, sv = (long long)T * m.dv;
    FOR_ROW_BLOCKS(&m, r0, r1, rows, cols) { // oh[r0:r1] = P[r0:r1, 0:cols] vh[0:cols]
        (void)r1;
        cb_cuda_gemm_batched(c, 0, 0, rows, m.dv, cols, 1, S + (size_t)r0 * T, T, TT, vh, m.dv, sv, 0,
                             oh + (size_t)r0 * m.dv, m.dv, sv, B * m.H);
    }
    cbk_attn_heads_to_rows(a.att, oh, &m, m.dv);
    cb_cuda_linear_forward(c, out, a.att, w.o_w, w.o_b, N, m.H * m.dv, d);
}

/* float32 core of backward from datt (B,T,H*dv): dq_sem, dq, dz, dk_sem, dk, dv; q: ws
 * past the gradients */
static void core_backward(cuda_ctx *c, const cb_attention_acts *a, const cbk_attn_dims *mp, float *q,
                          const float *datt, float *dq_sem, float *dq, float *dz, float *dk_sem, float *dk,
                          float *dv) {
    const cbk_attn_dims m = *mp;
    const int B = m.B, T = m.T;
    const size_t X = (size_t)B * T * m.H, S = (size_t)B * m.H * T * T;
    float *qcat = q; q += X * m.dqk;
    float *kcat = q; q += X * m.dqk;
    float *dqcat = q; q += X * m.dqk;
    float *dkh = q; q += X * m.dqk;
    float *vh = q; q += X * m.dv;
    float *datt_h = q; q += X * m.dv;
    float *dvh = q; q += X * m.dv;
    float *P = q; q += S;
    float *dP = q;

    cbk_attn_gather(qcat, kcat, vh, a->q_sem, a->q, a->k_sem, a->k, a->v, a->gate, &m);
    cbk_attn_rows_to_heads(datt_h, datt, &m, m.dv);
    scores(c, P, qcat, kcat, &m);
    cbk_attn_probs(P, a->lse, &m);
    const long long TT = (long long)T * T, sv = (long long)T * m.dv, sq = (long long)T * m.dqk;
    const int BH = B * m.H;
    // key-side gradients sum over the row blocks that see each key
    cudaMemsetAsync(dvh, 0, X * m.dv * sizeof *dvh, 0);
    cudaMemsetAsync(dkh, 0, X * m.dqk * sizeof *dkh, 0);
    FOR_ROW_BLOCKS(&m, r0, r1, rows, cols) { // dP = datt_h vh^T; dvh += P^T datt_h
        (void)r1;
        const float *dah = datt_h + (size_t)r0 * m.dv;
        cb_cuda_gemm_batched(c, 0, 1, rows, cols, m.dv, 1, dah, m.dv, sv, vh, m.dv, sv, 0, dP + (size_t)r0 * T, T,
                             TT, BH);
        cb_cuda_gemm_batched(c, 1, 0, cols, m.dv, rows, 1, P + (size_t)r0 * T, T, TT, dah, m.dv, sv, 1, dvh, m.dv,
                             sv, BH);
    }
    cbk_attn_softmax_backward(dP, P, &m);
    FOR_ROW_BLOCKS(&m, r0, r1, rows, cols) { // dqcat = dS kcat; dkh += dS^T qcat
        (void)r1;
        const float *dS = dP + (size_t)r0 * T;
        cb_cuda_gemm_batched(c, 0, 0, rows, m.dqk, cols, 1, dS, T, TT, kcat, m.dqk, sq, 0,
                             dqcat + (size_t)r0 * m.dqk, m.dqk, sq, BH);
        cb_cuda_gemm_batched(c, 1, 0, cols, m.dqk, rows, 1, dS, T, TT, qcat + (size_t)r0 * m.dqk, m.dqk, sq, 1, dkh,
                             m.dqk, sq, BH);
    }
    cbk_attn_query_backward(dq_sem, dq, dz, dqcat, a->q_sem, a->q, a->gate, &m);
    cbk_attn_group_sum(dk_sem, dk, dv, dkh, dvh, &m);
}

void cb_cuda_attention_backward(cuda_ctx *c, cb_pass *p, int i) {
    const cb_op *op = &p->prog->ops[i];
    const cb_attention_config *cfg = &op->attn;
    const int B = p->B, T = p->T, N = B * T, d = cfg->d_model;
    const cbk_attn_dims m = dims_of(cfg, B, T);
    const int *ins = p->prog->inputs + op->in_first;
    const float *in = p->slots + p->prog->slots[ins[0]].offset;
    float *din = p->dslots + p->prog->slots[ins[0]].offset;
    const float *dout = p->dslots + p->prog->slots[op->out].offset;
    cb_attention_acts a;
    cb_attention_acts_layout(&a, p->saved + op->saved, cfg, B, T);
    const attn_params w = params_of(p->weights, op);
    const attn_params g = params_of(p->grads, op);
    const size_t Nz = (size_t)N;

    float *q = c->ws;
    float *datt = q; q += Nz * m.H * m.dv;
    float *dq = q; q += Nz * m.H * m.dr;
    float *dk = q; q += Nz * m.Hkv * m.dr;
    float *dq_sem = q; q += Nz * m.H * m.ds;
    float *dk_sem = q; q += Nz * m.Hkv * m.ds;
    float *dv = q; q += Nz * m.Hkv * m.dv;
    float *dz = a.gate ? q : NULL; q += a.gate ? Nz * m.H : 0;

    // output projection: datt = dout o_w; do_w += dout^T att; do_b += column sums of dout
    cb_cuda_gemm(c, 0, 0, N, m.H * m.dv, d, 1, dout, d, w.o_w, m.H * m.dv, 0, datt, m.H * m.dv);
    cb_cuda_linear_backward(c, NULL, (float *)g.o_w, (float *)g.o_b, dout, a.att, NULL, N, m.H * m.dv, d);

    if (use_flash(c, &m)) { // q: the kernels' bf16 copies, D and lse
        const cbk_flash_args f = flash_args(&m, &a);
        cbk_flash_backward(dq_sem, dq, dk_sem, dk, dv, dz, q, datt, a.att, a.lse, &f);
    } else {
        core_backward(c, &a, &m, q, datt, dq_sem, dq, dz, dk_sem, dk, dv);
    }

    if (a.gate) {
        if (cfg->decoupled_gate && g.gate) cbk_colsum((float *)g.gate, c->red, dz, N, m.H);
        if (cfg->decoupled_gate_dynamic)
            cb_cuda_linear_backward(c, din, (float *)g.gate_proj, NULL, dz, in, w.gate_proj, N, d, m.H);
    }
    if (cfg->rope_enabled) {
        const float *cos, *sin;
        rope_of(p, op, &cos, &sin);
        cbk_rope(dq, dq, cos, sin, B, T, m.H, m.dr, 0, -1.0f, 0);
        cbk_rope(dk, dk, cos, sin, B, T, m.Hkv, m.dr, 0, -1.0f, 0);
    }
    cb_cuda_linear_backward(c, din, (float *)g.q_w, (float *)g.q_b, dq, in, w.q_w, N, d, m.H * m.dr);
    cb_cuda_linear_backward(c, din, (float *)g.k_w, (float *)g.k_b, dk, in, w.k_w, N, d, m.Hkv * m.dr);
    cb_cuda_linear_backward(c, din, (float *)g.v_w, (float *)g.v_b, dv, in, w.v_w, N, d, m.Hkv * m.dv);
    if (m.ds) {
        cb_cuda_linear_backward(c, din, (float *)g.qs_w, (float *)g.qs_b, dq_sem, in, w.qs_w, N, d, m.H * m.ds);
        cb_cuda_linear_backward(c, din, (float *)g.ks_w, (float *)g.ks_b, dk_sem, in, w.ks_w, N, d, m.Hkv * m.ds);
    }
}
