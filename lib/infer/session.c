/* session.c: forward passes over new tokens against the KV cache. The ops are those of
 * model/program.h compiled for (1, chunk); a pass of m <= chunk rows uses the first m rows
 * of every slot. Attention is the only op that looks across positions: it is replaced by
 * projection + RoPE at the rows' positions + cache append + cb_attention_decode. */
#include "infer/session.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/parallel.h"
#include "layers/activation.h"
#include "layers/elementwise.h"
#include "layers/embedding.h"
#include "layers/layernorm.h"
#include "layers/rmsnorm.h"
#include "layers/rope.h"

#define MAX_FANIN 64

cb_session_config cb_session_config_default(void) {
    cb_session_config c;
    memset(&c, 0, sizeof c);
    c.kinds.k = c.kinds.k_sem = c.kinds.v = CB_KV_F32;
    c.plan = cb_decode_plan_config_default();
    return c;
}

int cb_model_max_seq_len(const cb_model *m) {
    const json_t *emb = json_object_get(json_object_get(m->plan, "model"), "embedder");
    const json_t *v = json_object_get(emb, "max_seq_len");
    return json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= INT32_MAX
               ? (int)json_integer_value(v) : 0;
}

/* Per-head widths of an attention op: semantic, rotary (RoPE path), value. */
typedef struct head_dims { int H, Hkv, ds, dr, dv, gated; } head_dims;
static head_dims dims_of(const cb_attention_config *a) {
    head_dims m = {a->n_heads, a->n_kv_heads, 0, a->head_dim, a->head_dim, 0};
    if (a->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = a->sem_dim / a->n_heads;
        m.dr = a->geo_dim / a->n_heads;
        m.dv = a->v_dim / a->n_heads;
        m.gated = a->decoupled_gate || a->decoupled_gate_dynamic;
    }
    return m;
}

/* Floats an attention op needs for m rows: q, k, v, q_sem, k_sem, gate, att. */
static size_t attention_work(const cb_attention_config *a, size_t m) {
    head_dims d = dims_of(a);
    return m * ((size_t)d.H * d.dr + (size_t)d.Hkv * d.dr + (size_t)d.Hkv * d.dv + (size_t)d.H * d.ds +
                (size_t)d.Hkv * d.ds + (size_t)d.H + (size_t)d.H * d.dv);
}

static size_t op_work(const cb_op *op, size_t m) {
    switch (op->kind) {
    case CB_OP_RMSNORM: return m;
    case CB_OP_LAYERNORM: return 2 * m;
    case CB_OP_SWIGLU: return 3 * m * (size_t)op->d_ff;
    case CB_OP_MLP: return 2 * m * (size_t)op->d_ff;
    case CB_OP_ATTENTION: return attention_work(&op->attn, m);
    default: return 0;
    }
}

/* 1 when role of op names a weight matrix (the products decode runs). */
static int is_matrix(const cb_op *op, int role) {
    switch (op->kind) {
    case CB_OP_ATTENTION:
        return role == CB_P_Q_W || role == CB_P_K_W || role == CB_P_V_W || role == CB_P_O_W || role == CB_P_QSEM_W ||
               role == CB_P_KSEM_W || role == CB_P_QGEO_W || role == CB_P_KGEO_W || role == CB_P_GATE_PROJ;
    case CB_OP_SWIGLU: return role == CB_P_GATE || role == CB_P_UP || role == CB_P_DOWN;
    case CB_OP_MLP: return role == CB_P_FC_W || role == CB_P_PROJ_W;
    case CB_OP_LINEAR:
    case CB_OP_HEAD: return role == CB_P_WEIGHT;
    default: return 0;
    }
}

/* Products that read the same input (attention's q, k, v; SwiGLU's gate and up) go through
 * one parallel loop for a single token when their matrices lie back to back in memory:
 * one fork-join instead of three, and no thread idles at the end of a small one. The
 * model's fp32 buffer lays them out so; converted matrices are converted into one block
 * (merge_rows). Returns 1 and sets *w to the matrix of all their rows when roles[0..n) of
 * op i are contiguous, of one kind and width. */
static int joined(const cb_session *s, int i, const int *roles, int n, cb_weight_matrix *w) {
    const cb_weight_matrix *a = &s->mats[i * CB_OP_MAX_PARAMS + roles[0]];
    if (!a->data) return 0;
    *w = *a;
    w->owned = NULL;
    for (int r = 1; r < n; r++) {
        const cb_weight_matrix *b = &s->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!b->data || b->kind != a->kind || b->cols != a->cols ||
            (const unsigned char *)b->data != (const unsigned char *)a->data + (size_t)w->rows * a->row_bytes)
            return 0;
        w->rows += b->rows;
    }
    return 1;
}

/* Convert roles[0..n) of op i (already converted, each its own block, used by no other op)
 * into one block, so that joined() finds them. A matrix another op views stays as it is. */
static int merge_rows(cb_session *s, int i, const int *roles, int n, cb_error *e) {
    const int nm = s->prog.n_ops * CB_OP_MAX_PARAMS;
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        const cb_weight_matrix *w = &s->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!w->owned || w->kind != s->mats[i * CB_OP_MAX_PARAMS + roles[0]].kind ||
            w->cols != s->mats[i * CB_OP_MAX_PARAMS + roles[0]].cols)
            return CB_OK;
        for (int j = 0; j < nm; j++)
            if (j != i * CB_OP_MAX_PARAMS + roles[r] && s->mats[j].data == w->data) return CB_OK;
        total += cb_weight_matrix_bytes(w);
    }
    unsigned char *block = aligned_alloc(64, (total + 63) / 64 * 64);
    if (!block) return cb_fail(e, CB_E_RUNTIME, "", "out of memory joining weight matrices (%zu bytes)", total);
    size_t off = 0;
    for (int r = 0; r < n; r++) {
        cb_weight_matrix *w = &s->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        const size_t bytes = cb_weight_matrix_bytes(w);
        memcpy(block + off, w->data, bytes);
        free(w->owned);
        w->data = block + off;
        w->owned = r == 0 ? block : NULL; /* the first frees the block */
        off += bytes;
    }
    return CB_OK;
}

static const int QKV_ROLES[3] = {CB_P_Q_W, CB_P_K_W, CB_P_V_W};
static const int GATE_UP_ROLES[2] = {CB_P_GATE, CB_P_UP};

/* Convert every weight matrix of the program to kind; a tensor used by several ops is
 * converted once and viewed by the others. fp32 views the model's buffer: one token's
 * products then run on cb_matvec's threads instead of a BLAS call per matrix, several
 * tokens' still on BLAS (cb_matvec_n). */
static int convert_weights(cb_session *s, cb_kv_kind kind, cb_error *e) {
    const cb_program *p = &s->prog;
    const cb_param_table *t = &s->model->params;
    s->mats = cb_calloc((size_t)p->n_ops * CB_OP_MAX_PARAMS, sizeof *s->mats, e);
    if (!s->mats) return e->code;
    for (int i = 0; i < p->n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            const cb_op *op = &p->ops[i];
            if (op->p[r] == CB_NO_PARAM || !is_matrix(op, r)) continue;
            const cb_weight_matrix *seen = NULL;
            for (int j = 0; j < i * CB_OP_MAX_PARAMS + r && !seen; j++)
                if (s->mats[j].data && p->ops[j / CB_OP_MAX_PARAMS].p[j % CB_OP_MAX_PARAMS] == op->p[r]) seen = &s->mats[j];
            cb_weight_matrix *w = &s->mats[i * CB_OP_MAX_PARAMS + r];
            if (seen) {
                cb_weight_matrix_view(w, kind, seen->data, seen->rows, seen->cols);
                continue;
            }
            const cb_param *par = NULL;
            for (int k = 0; k < t->n && !par; k++)
                if (t->items[k].offset == op->p[r]) par = &t->items[k];
            if (!par || par->ndim != 2) return cb_fail(e, CB_E_INVALID, op->id, "weight matrix without a 2-d tensor");
            if (kind == CB_KV_F32) { /* the model's own buffer */
                cb_weight_matrix_view(w, kind, s->model->weights + op->p[r], (int)par->shape[0], (int)par->shape[1]);
                continue;
            }
            CB_TRY(cb_weight_matrix_from_f32(w, kind, s->model->weights + op->p[r], (int)par->shape[0],
                                             (int)par->shape[1], e));
            s->weight_bytes += cb_weight_matrix_bytes(w);
        }
    if (kind != CB_KV_F32)
        for (int i = 0; i < p->n_ops; i++) {
            const cb_op *op = &p->ops[i];
            if (op->kind == CB_OP_ATTENTION && op->attn.mode != CB_ATTENTION_DECOUPLED && !op->attn.bias)
                CB_TRY(merge_rows(s, i, QKV_ROLES, 3, e));
            if (op->kind == CB_OP_SWIGLU) CB_TRY(merge_rows(s, i, GATE_UP_ROLES, 2, e));
        }
    return CB_OK;
}

/* out (m, out_dim) = in (m, in_dim) W^T + bias, W the op's weight of role (in_dim and
 * out_dim are the matrix's: (out_dim, in_dim)). */
static void proj(const cb_session *s, int op_index, int role, float *out, const float *in, const float *bias, int m,
                 int in_dim, int out_dim) {
    (void)in_dim, (void)out_dim;
    cb_matvec_n(out, &s->mats[op_index * CB_OP_MAX_PARAMS + role], in, bias, m);
}

int cb_model_attention_configs(const cb_model *m, cb_attention_config **cfgs, int *n, cb_error *e) {
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, 1, 1, e));
    int count = 0;
    for (int i = 0; i < prog.n_ops; i++) count += prog.ops[i].kind == CB_OP_ATTENTION;
    *cfgs = cb_malloc(count ? (size_t)count : 1, sizeof **cfgs, e);
    if (!*cfgs) {
        cb_program_free(&prog);
        return e->code;
    }
    *n = 0;
    for (int i = 0; i < prog.n_ops; i++)
        if (prog.ops[i].kind == CB_OP_ATTENTION) (*cfgs)[(*n)++] = prog.ops[i].attn;
    cb_program_free(&prog);
    return CB_OK;
}

void cb_session_free(cb_session *s) {
    free(s->slots);
    free(s->work);
    free(s->attn_scratch);
    free(s->rope_inv_freq);
    free(s->rope);
    free(s->op_layer);
    if (s->mats)
        for (int i = 0; i < s->prog.n_ops * CB_OP_MAX_PARAMS; i++) cb_weight_matrix_free(&s->mats[i]);
    free(s->mats);
    cb_kv_cache_free(&s->kv);
    free(s->tokens);
    cb_program_free(&s->prog);
    memset(s, 0, sizeof *s);
}

int cb_session_init(cb_session *s, const cb_model *m, const cb_session_config *cfg, cb_error *e) {
    memset(s, 0, sizeof *s);
    s->model = m;
    s->cfg = *cfg;
    int model_ctx = cb_model_max_seq_len(m);
    if (s->cfg.max_seq_len < 0) return cb_fail(e, CB_E_USAGE, "", "max_seq_len %d is negative", cfg->max_seq_len);
    if (s->cfg.max_seq_len == 0) s->cfg.max_seq_len = model_ctx ? model_ctx : CB_SESSION_DEFAULT_CONTEXT;
    if (model_ctx && s->cfg.max_seq_len > model_ctx)
        return cb_fail(e, CB_E_USAGE, "", "max_seq_len %d exceeds the model's max_seq_len %d", s->cfg.max_seq_len,
                       model_ctx);
    if (s->cfg.chunk <= 0) s->cfg.chunk = CB_SESSION_DEFAULT_CHUNK;
    if (s->cfg.chunk > s->cfg.max_seq_len) s->cfg.chunk = s->cfg.max_seq_len;
    const int C = s->cfg.chunk;
    CB_TRY(cb_program_init(&s->prog, m->plan, &m->params, 1, C, e));
    const cb_program *p = &s->prog;
    s->vocab = p->vocab_size;
    s->d_model = p->d_model;

    int rc = CB_OK, n_layers = 0;
    size_t inv_freq_n = 0;
    for (int i = 0; i < p->n_ops; i++) {
        const cb_op *op = &p->ops[i];
        if (op->kind == CB_OP_ATTENTION) {
            n_layers++;
            if (!op->attn.is_causal && rc == CB_OK)
                rc = cb_fail(e, CB_E_INVALID, op->id, "attention with is_causal false cannot be decoded token by token");
        }
        if ((op->kind == CB_OP_COMBINE || op->kind == CB_OP_CONCAT) && op->n_in > MAX_FANIN && rc == CB_OK)
            rc = cb_fail(e, CB_E_INVALID, op->id, "%d inputs (at most %d)", op->n_in, MAX_FANIN);
        size_t w = op_work(op, (size_t)C);
        if (w > s->work_elems) s->work_elems = w;
    }
    for (int i = 0; i < p->n_ropes; i++) inv_freq_n += (size_t)p->ropes[i].dim / 2;
    const cb_attention_config **cfgs = NULL;
    if (rc == CB_OK) {
        s->slots = cb_malloc(p->slot_elems ? p->slot_elems : 1, sizeof *s->slots, e);
        s->work = cb_malloc(s->work_elems ? s->work_elems : 1, sizeof *s->work, e);
        s->rope = cb_malloc(p->rope_elems ? p->rope_elems : 1, sizeof *s->rope, e);
        s->rope_inv_freq = cb_malloc(inv_freq_n ? inv_freq_n : 1, sizeof *s->rope_inv_freq, e);
        s->op_layer = cb_malloc((size_t)p->n_ops, sizeof *s->op_layer, e);
        s->tokens = cb_malloc((size_t)s->cfg.max_seq_len, sizeof *s->tokens, e);
        cfgs = cb_malloc(n_layers ? (size_t)n_layers : 1, sizeof *cfgs, e);
        if (!s->slots || !s->work || !s->rope || !s->rope_inv_freq || !s->op_layer || !s->tokens || !cfgs)
            rc = CB_E_RUNTIME;
    }
    if (rc == CB_OK) {
        int li = 0;
        for (int i = 0; i < p->n_ops; i++) {
            s->op_layer[i] = p->ops[i].kind == CB_OP_ATTENTION ? li : -1;
            if (p->ops[i].kind == CB_OP_ATTENTION) cfgs[li++] = &p->ops[i].attn;
        }
        double *f = s->rope_inv_freq;
        for (int i = 0; i < p->n_ropes; i++) {
            cb_rope_inv_freq(f, p->ropes[i].dim, p->ropes[i].theta, &p->ropes[i].scaling);
            f += p->ropes[i].dim / 2;
        }
        rc = cb_kv_cache_init(&s->kv, n_layers, cfgs, &s->cfg.kinds, 0, e);
    }
    if (rc == CB_OK) {
        if (!cb_kv_kind_valid(s->cfg.weight_kind)) rc = cb_fail(e, CB_E_USAGE, "", "unknown weight kind %d", s->cfg.weight_kind);
        else rc = convert_weights(s, s->cfg.weight_kind, e);
    }
    free(cfgs);
    if (rc != CB_OK) cb_session_free(s);
    return rc;
}

/* cos, sin of every RoPE table for positions pos0 .. pos0+m-1, in rows 0 .. m-1, computed
 * as cb_rope_tables does (float angle, double cos/sin) so rotations match the full pass. */
static void fill_rope(cb_session *s, int pos0, int m) {
    const cb_program *p = &s->prog;
    const double *f = s->rope_inv_freq;
    for (int i = 0; i < p->n_ropes; i++) {
        const int half = p->ropes[i].dim / 2;
        float *cos_t = s->rope + p->ropes[i].offset, *sin_t = cos_t + (size_t)p->T * half;
        for (int t = 0; t < m; t++)
            for (int j = 0; j < half; j++) {
                float angle = (float)(pos0 + t) * (float)f[j];
                cos_t[(size_t)t * half + j] = (float)cos((double)angle);
                sin_t[(size_t)t * half + j] = (float)sin((double)angle);
            }
        f += half;
    }
}

static const float *W(const cb_session *s, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : s->model->weights + op->p[role];
}

static void rope_of(const cb_session *s, const cb_op *op, const float **cos_t, const float **sin_t) {
    const cb_rope_table *t = &s->prog.ropes[op->rope];
    *cos_t = s->rope + t->offset;
    *sin_t = *cos_t + (size_t)s->prog.T * (t->dim / 2);
}

/* Attention of m new rows at pos0 (their keys and values go into cache). */
static int attention_pass(cb_session *s, int oi, cb_layer_cache *cache, float *out, const float *in, int pos0, int m,
                          cb_error *e) {
    const cb_op *op = &s->prog.ops[oi];
    const cb_attention_config *a = &op->attn;
    const head_dims d = dims_of(a);
    const int dm = a->d_model, dec = a->mode == CB_ATTENTION_DECOUPLED;
    float *q = s->work, *k = q + (size_t)m * d.H * d.dr, *v = k + (size_t)m * d.Hkv * d.dr;
    float *q_sem = v + (size_t)m * d.Hkv * d.dv, *k_sem = q_sem + (size_t)m * d.H * d.ds;
    float *gate = k_sem + (size_t)m * d.Hkv * d.ds, *att = gate + (size_t)m * d.H;
    const int bias = a->bias;
    cb_weight_matrix qkv;
    if (m == 1 && !dec && !bias && joined(s, oi, QKV_ROLES, 3, &qkv)) { // q, k, v back to back in work
        cb_matvec(q, &qkv, in, NULL);
    } else {
        proj(s, oi, dec ? CB_P_QGEO_W : CB_P_Q_W, q, in, bias ? W(s, op, dec ? CB_P_QGEO_B : CB_P_Q_B) : NULL, m, dm,
             d.H * d.dr);
        proj(s, oi, dec ? CB_P_KGEO_W : CB_P_K_W, k, in, bias ? W(s, op, dec ? CB_P_KGEO_B : CB_P_K_B) : NULL, m, dm,
             d.Hkv * d.dr);
        proj(s, oi, CB_P_V_W, v, in, bias ? W(s, op, CB_P_V_B) : NULL, m, dm, d.Hkv * d.dv);
    }
    if (dec) {
        proj(s, oi, CB_P_QSEM_W, q_sem, in, bias ? W(s, op, CB_P_QSEM_B) : NULL, m, dm, d.H * d.ds);
        proj(s, oi, CB_P_KSEM_W, k_sem, in, bias ? W(s, op, CB_P_KSEM_B) : NULL, m, dm, d.Hkv * d.ds);
    }
    if (a->rope_enabled) {
        const float *cos_t, *sin_t;
        rope_of(s, op, &cos_t, &sin_t);
        cb_rope_forward(q, q, cos_t, sin_t, 1, m, d.H, d.dr, 0);
        cb_rope_forward(k, k, cos_t, sin_t, 1, m, d.Hkv, d.dr, 0);
    }
    if (d.gated) {
        // gate (m, H) = sigmoid(a_h + in . gate_proj_h), as cb_attention_forward
        const float *a_h = a->decoupled_gate ? W(s, op, CB_P_GATE_A) : NULL;
        if (a->decoupled_gate_dynamic) proj(s, oi, CB_P_GATE_PROJ, gate, in, NULL, m, dm, d.H);
        else memset(gate, 0, sizeof *gate * (size_t)m * d.H);
        for (size_t i = 0; i < (size_t)m * d.H; i++) {
            float z = gate[i] + (a_h ? a_h[i % d.H] : 0);
            gate[i] = 1.0f / (1.0f + expf(-z));
        }
    }
    CB_TRY(cb_layer_cache_append(cache, k, dec ? k_sem : NULL, v, m, e));
    cb_decode_plan plan = cb_decode_plan_pick(&s->cfg.plan, pos0 + m, &s->last_bucket);
    cb_attention_decode(att, q, dec ? q_sem : NULL, d.gated ? gate : NULL, cache, a, pos0, m, &plan, s->attn_scratch);
    proj(s, oi, CB_P_O_W, out, att, bias ? W(s, op, CB_P_O_B) : NULL, m, d.H * d.dv, dm);
    return CB_OK;
}

enum { WANT_NONE = 0, WANT_LAST = 1, WANT_ALL = 2 };

/* Make room for m more tokens in every cache and in the decode scratch, before any state
 * changes, so that a pass either runs whole or leaves the session as it was. */
static int prepare_pass(cb_session *s, int pos0, int m, cb_error *e) {
    size_t need = 0;
    for (int i = 0; i < s->prog.n_ops; i++) {
        const cb_op *op = &s->prog.ops[i];
        if (op->kind != CB_OP_ATTENTION) continue;
        cb_decode_plan plan = cb_decode_plan_pick(&s->cfg.plan, pos0 + m, NULL);
        size_t n = cb_attention_decode_scratch_size(&op->attn, m, pos0 + m, &plan);
        if (n > need) need = n;
        CB_TRY(cb_layer_cache_reserve(&s->kv.layers[s->op_layer[i]], pos0 + m, e));
    }
    if (need > s->attn_scratch_elems) {
        /* grow geometrically: the need rises by a little with every decoded token */
        size_t cap = s->attn_scratch_elems * 2 > need ? s->attn_scratch_elems * 2 : need;
        float *p = cb_malloc(cap, sizeof *p, e);
        if (!p) return e->code;
        free(s->attn_scratch);
        s->attn_scratch = p;
        s->attn_scratch_elems = cap;
    }
    return CB_OK;
}

static int run_pass_ops(cb_session *s, const int32_t *tokens, int m, int want, cb_error *e);

/* One pass of m <= chunk rows at position s->len. The products and attention run their
 * loops on the backend/cpu/parallel.h pool; the layer functions' own OpenMP regions (norms, adds
 * over a prefill chunk) are kept to one thread meanwhile, since a second team of threads
 * spinning after each of them took the cores from the pool's workers (40% of a prefill). */
static int run_pass(cb_session *s, const int32_t *tokens, int m, int want, cb_error *e) {
    cb_parallel_threads(); // the pool starts with all of OpenMP's threads
    const int omp_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    int rc = run_pass_ops(s, tokens, m, want, e);
    omp_set_num_threads(omp_threads);
    return rc;
}

static int run_pass_ops(cb_session *s, const int32_t *tokens, int m, int want, cb_error *e) {
    const cb_program *p = &s->prog;
    const int pos0 = s->len;
    CB_TRY(prepare_pass(s, pos0, m, e));
    fill_rope(s, pos0, m);
    for (int i = 0; i < p->n_ops; i++) {
        const cb_op *op = &p->ops[i];
        const int *ins = p->inputs + op->in_first;
        float *out = s->slots + p->slots[op->out].offset;
        const float *in = op->n_in ? s->slots + p->slots[ins[0]].offset : NULL;
        const size_t n_out = (size_t)m * p->slots[op->out].width;
        switch (op->kind) {
        case CB_OP_EMBED:
            cb_embedding_forward(out, tokens, W(s, op, CB_P_WEIGHT), W(s, op, CB_P_POS), 1, m, op->d_out, pos0);
            break;
        case CB_OP_RMSNORM:
            cb_rmsnorm_forward(out, s->work, in, W(s, op, CB_P_WEIGHT), m, op->d_in, op->eps);
            break;
        case CB_OP_LAYERNORM:
            cb_layernorm_forward(out, s->work, s->work + m, in, W(s, op, CB_P_WEIGHT), W(s, op, CB_P_BIAS), m,
                                 op->d_in, op->eps);
            break;
        case CB_OP_ATTENTION: {
            cb_layer_cache *cache = &s->kv.layers[s->op_layer[i]];
            int rc = attention_pass(s, i, cache, out, in, pos0, m, e);
            if (rc != CB_OK) {
                cb_kv_cache_truncate(&s->kv, pos0);
                return rc;
            }
            break;
        }
        case CB_OP_SWIGLU: { // out = (silu(in Wg^T) * (in Wu^T)) Wd^T, as cb_swiglu_forward
            const size_t nf = (size_t)m * op->d_ff;
            float *gate = s->work, *up = gate + nf, *h = up + nf;
            cb_weight_matrix gate_up;
            if (m == 1 && joined(s, i, GATE_UP_ROLES, 2, &gate_up)) { // gate, up back to back in work
                cb_matvec(gate, &gate_up, in, NULL);
            } else {
                proj(s, i, CB_P_GATE, gate, in, NULL, m, op->d_in, op->d_ff);
                proj(s, i, CB_P_UP, up, in, NULL, m, op->d_in, op->d_ff);
            }
            for (size_t k = 0; k < nf; k++) h[k] = cb_silu(gate[k]) * up[k];
            proj(s, i, CB_P_DOWN, out, h, NULL, m, op->d_ff, op->d_in);
            break;
        }
        case CB_OP_MLP: { // out = gelu_tanh(in Wfc^T + bfc) Wproj^T + bproj, as cb_mlp_forward
            const size_t nf = (size_t)m * op->d_ff;
            float *pre = s->work, *h = pre + nf;
            proj(s, i, CB_P_FC_W, pre, in, W(s, op, CB_P_FC_B), m, op->d_in, op->d_ff);
            for (size_t k = 0; k < nf; k++) h[k] = cb_gelu_tanh(pre[k]);
            proj(s, i, CB_P_PROJ_W, out, h, W(s, op, CB_P_PROJ_B), m, op->d_ff, op->d_in);
            break;
        }
        case CB_OP_LINEAR:
            proj(s, i, CB_P_WEIGHT, out, in, W(s, op, CB_P_BIAS), m, op->d_in, op->d_out);
            break;
        case CB_OP_HEAD:
            /* the head is the widest product (V columns): only the rows asked for */
            if (want == WANT_ALL)
                proj(s, i, CB_P_WEIGHT, out, in, W(s, op, CB_P_BIAS), m, op->d_in, op->d_out);
            else if (want == WANT_LAST)
                proj(s, i, CB_P_WEIGHT, out + (size_t)(m - 1) * op->d_out, in + (size_t)(m - 1) * op->d_in,
                     W(s, op, CB_P_BIAS), 1, op->d_in, op->d_out);
            break;
        case CB_OP_DROPOUT: /* inference: identity */
            memcpy(out, in, n_out * sizeof *out);
            break;
        case CB_OP_ROPE: {
            const float *cos_t, *sin_t;
            rope_of(s, op, &cos_t, &sin_t);
            cb_rope_forward(out, in, cos_t, sin_t, 1, m, op->heads, op->head_dim, 0);
            break;
        }
        case CB_OP_ADD:
            cb_add_forward(out, in, s->slots + p->slots[ins[1]].offset, n_out);
            break;
        case CB_OP_COMBINE:
        case CB_OP_CONCAT: {
            const float *parts[MAX_FANIN];
            int widths[MAX_FANIN];
            for (int k = 0; k < op->n_in; k++) {
                parts[k] = s->slots + p->slots[ins[k]].offset;
                widths[k] = p->slots[ins[k]].width;
            }
            if (op->kind == CB_OP_COMBINE) cb_combine_forward(out, parts, op->n_in, n_out, op->mean);
            else cb_concat_forward(out, parts, widths, op->n_in, m);
            break;
        }
        }
    }
    memcpy(s->tokens + pos0, tokens, sizeof *tokens * (size_t)m);
    s->len = pos0 + m;
    return CB_OK;
}

int cb_session_forward(cb_session *s, const int32_t *tokens, int n, float *logits, int all_rows, cb_error *e) {
    if (n < 0) return cb_fail(e, CB_E_USAGE, "", "negative token count %d", n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->vocab)
            return cb_fail(e, CB_E_USAGE, "", "token id %d is outside the vocabulary (%d tokens)", tokens[i], s->vocab);
    if (n > s->cfg.max_seq_len - s->len)
        return cb_fail(e, CB_E_USAGE, "", "context full: %d tokens held and %d new exceed max_seq_len %d", s->len, n,
                       s->cfg.max_seq_len);
    const int start = s->len, V = s->vocab;
    const float *slot_logits = s->slots + s->prog.slots[s->prog.logits_slot].offset;
    for (int off = 0; off < n; off += s->cfg.chunk) {
        int m = n - off < s->cfg.chunk ? n - off : s->cfg.chunk;
        int last = off + m == n;
        int want = !logits ? WANT_NONE : all_rows ? WANT_ALL : last ? WANT_LAST : WANT_NONE;
        int rc = run_pass(s, tokens + off, m, want, e);
        if (rc != CB_OK) {
            cb_session_truncate(s, start);
            return rc;
        }
        if (want == WANT_ALL) memcpy(logits + (size_t)off * V, slot_logits, sizeof *logits * (size_t)m * V);
        else if (want == WANT_LAST) memcpy(logits, slot_logits + (size_t)(m - 1) * V, sizeof *logits * (size_t)V);
    }
    return CB_OK;
}

int cb_session_prefill(cb_session *s, const int32_t *prompt, int n, float *logits, cb_error *e) {
    if (n < 1) return cb_fail(e, CB_E_USAGE, "", "empty prompt");
    int common = 0;
    while (common < s->len && common < n - 1 && s->tokens[common] == prompt[common]) common++;
    cb_session_truncate(s, common);
    s->reused = common;
    return cb_session_forward(s, prompt + common, n - common, logits, 0, e);
}

void cb_session_truncate(cb_session *s, int n) {
    if (n < 0) n = 0;
    if (n >= s->len) return;
    cb_kv_cache_truncate(&s->kv, n);
    s->len = n;
}

void cb_session_reset(cb_session *s) { cb_session_truncate(s, 0); }

cb_kv_bytes cb_session_cache_bytes(const cb_session *s) { return cb_kv_cache_bytes(&s->kv); }
