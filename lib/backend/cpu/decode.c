/* decode.c: decoding on the CPU. The state (weights converted once to their storage kind,
 * one KV cache per attention op, scratch) and the ops of a decoding pass that differ from
 * a full-sequence pass: attention projects the new rows, rotates them at their positions,
 * appends their keys and values to its cache and attends against the whole cache
 * (attention_decode.h); products read the converted weights (matvec.h). */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/attention_decode.h"
#include "backend/cpu/parallel.h"
#include "backend/decode_ops.h"
#include "layers/activation.h"
#include "layers/rope.h"

/* Products that read the same input (attention's q, k, v; SwiGLU's gate and up) go through
 * one parallel loop for a single token when their matrices lie back to back in memory:
 * one fork-join instead of three, and no thread idles at the end of a small one. The
 * model's fp32 buffer lays them out so; converted matrices are converted into one block
 * (merge_rows). Returns 1 and sets *w to the matrix of all their rows when roles[0..n) of
 * op i are contiguous, of one kind and width. */
static int joined(const cb_decode *d, int i, const int *roles, int n, cb_weight_matrix *w) {
    const cb_weight_matrix *a = &d->mats[i * CB_OP_MAX_PARAMS + roles[0]];
    if (!a->data) return 0;
    *w = *a;
    w->owned = NULL;
    for (int r = 1; r < n; r++) {
        const cb_weight_matrix *b = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!b->data || b->kind != a->kind || b->cols != a->cols || b->x16 != a->x16 ||
            (const unsigned char *)b->data != (const unsigned char *)a->data + (size_t)w->rows * a->row_bytes)
            return 0;
        w->rows += b->rows;
    }
    return 1;
}

/* Convert roles[0..n) of op i (already converted, each its own block, used by no other op)
 * into one block, so that joined() finds them. A matrix another op views stays as it is. */
static int merge_rows(cb_decode *d, const cb_program *prog, int i, const int *roles, int n, cb_error *e) {
    const int nm = prog->n_ops * CB_OP_MAX_PARAMS;
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        const cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!w->owned || w->kind != d->mats[i * CB_OP_MAX_PARAMS + roles[0]].kind ||
            w->cols != d->mats[i * CB_OP_MAX_PARAMS + roles[0]].cols ||
            w->x16 != d->mats[i * CB_OP_MAX_PARAMS + roles[0]].x16)
            return CB_OK;
        for (int j = 0; j < nm; j++)
            if (j != i * CB_OP_MAX_PARAMS + roles[r] && d->mats[j].data == w->data) return CB_OK;
        total += cb_weight_matrix_bytes(w);
    }
    unsigned char *block = aligned_alloc(64, (total + 63) / 64 * 64);
    if (!block) return cb_fail(e, CB_E_RUNTIME, "", "out of memory joining weight matrices (%zu bytes)", total);
    size_t off = 0;
    for (int r = 0; r < n; r++) {
        cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        const size_t bytes = cb_weight_matrix_bytes(w);
        memcpy(block + off, w->data, bytes);
        free(w->owned);
        w->data = block + off;
        w->owned = r == 0 ? block : NULL; /* the first frees the block */
        off += bytes;
    }
    return CB_OK;
}

/* Rows a pass may have and still take joined products: a few tokens (a batched step, a
 * speculative verification), where each product's fork-join is a good part of its time
 * (three for q, k, v and two for gate, up cost a 2-row q4_0 step of the 110M model more
 * than its second row's arithmetic); a prefill chunk's products are long enough alone. */
#define JOIN_MAX_ROWS 8

static const int QKV_ROLES[3] = {CB_P_Q_W, CB_P_K_W, CB_P_V_W};
static const int GATE_UP_ROLES[2] = {CB_P_GATE, CB_P_UP};

/* Convert every weight matrix of the program to kind; a tensor used by several ops is
 * converted once and viewed by the others. fp32 views the model's buffer: one token's
 * products then run on cb_matvec's threads instead of a BLAS call per matrix, several
 * tokens' still on BLAS (cb_matvec_n). */
static int convert_weights(cb_decode *d, const cb_program *p, const cb_param_table *t, const float *weights,
                           cb_kv_kind kind, cb_error *e) {
    d->mats = cb_calloc((size_t)p->n_ops * CB_OP_MAX_PARAMS, sizeof *d->mats, e);
    if (!d->mats) return e->code;
    for (int i = 0; i < p->n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            const cb_op *op = &p->ops[i];
            if (op->p[r] == CB_NO_PARAM || !cb_decode_is_matrix(op, r)) continue;
            const cb_weight_matrix *seen = NULL;
            for (int j = 0; j < i * CB_OP_MAX_PARAMS + r && !seen; j++)
                if (d->mats[j].data && p->ops[j / CB_OP_MAX_PARAMS].p[j % CB_OP_MAX_PARAMS] == op->p[r]) seen = &d->mats[j];
            cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + r];
            if (seen) {
                cb_weight_matrix_view(w, kind, seen->data, seen->rows, seen->cols);
                w->x16 = seen->x16;
                continue;
            }
            const cb_param *par = NULL;
            for (int k = 0; k < t->n && !par; k++)
                if (t->items[k].offset == op->p[r]) par = &t->items[k];
            if (!par || par->ndim != 2) return cb_fail(e, CB_E_INVALID, op->id, "weight matrix without a 2-d tensor");
            if (kind == CB_KV_F32) { /* the model's own buffer */
                cb_weight_matrix_view(w, kind, weights + op->p[r], (int)par->shape[0], (int)par->shape[1]);
                continue;
            }
            CB_TRY(cb_weight_matrix_from_f32(w, kind, weights + op->p[r], (int)par->shape[0], (int)par->shape[1], e));
            d->weight_bytes += cb_weight_matrix_bytes(w);
        }
    if (kind != CB_KV_F32)
        for (int i = 0; i < p->n_ops; i++) {
            const cb_op *op = &p->ops[i];
            if (op->kind == CB_OP_ATTENTION && op->attn.mode != CB_ATTENTION_DECOUPLED && !op->attn.bias)
                CB_TRY(merge_rows(d, p, i, QKV_ROLES, 3, e));
            if (op->kind == CB_OP_SWIGLU) CB_TRY(merge_rows(d, p, i, GATE_UP_ROLES, 2, e));
        }
    return CB_OK;
}

void cb_cpu_decode_free(cb_backend *be, cb_decode *d) {
    (void)be;
    free(d->work);
    free(d->attn_scratch);
    free(d->op_layer);
    if (d->mats && !d->mats_borrowed) {
        for (size_t i = 0; i < d->n_mats; i++) cb_weight_matrix_free(&d->mats[i]);
        free(d->mats);
    }
    cb_kv_cache_free(&d->kv);
    memset(d, 0, sizeof *d);
}

int cb_cpu_decode_init(cb_backend *be, cb_decode *d, const cb_program *p, const cb_param_table *params,
                       const float *weights, const cb_decode_config *cfg, cb_error *e) {
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    d->prog = p;
    d->n_mats = (size_t)p->n_ops * CB_OP_MAX_PARAMS;
    int n_layers = 0;
    for (int i = 0; i < p->n_ops; i++) {
        n_layers += p->ops[i].kind == CB_OP_ATTENTION;
        size_t w = cb_decode_op_work(&p->ops[i], (size_t)cfg->rows);
        if (w > d->work_elems) d->work_elems = w;
    }
    const cb_attention_config **cfgs = cb_malloc(n_layers ? (size_t)n_layers : 1, sizeof *cfgs, e);
    d->work = cb_malloc(d->work_elems ? d->work_elems : 1, sizeof *d->work, e);
    d->op_layer = cb_malloc((size_t)p->n_ops, sizeof *d->op_layer, e);
    int rc = cfgs && d->work && d->op_layer ? CB_OK : CB_E_RUNTIME;
    if (rc == CB_OK) {
        int li = 0;
        for (int i = 0; i < p->n_ops; i++) {
            d->op_layer[i] = p->ops[i].kind == CB_OP_ATTENTION ? li : -1;
            if (p->ops[i].kind == CB_OP_ATTENTION) cfgs[li++] = &p->ops[i].attn;
        }
        rc = cb_kv_cache_init_layout(&d->kv, n_layers, cfgs, &cfg->kinds, 0, cfg->kv_layout, e);
    }
    if (rc == CB_OK && cfg->weights_of) { /* a batch's other sequence: the first's matrices */
        d->mats = cfg->weights_of->mats;
        d->mats_borrowed = 1;
    } else if (rc == CB_OK) {
        rc = convert_weights(d, p, params, weights, cfg->weight_kind, e);
    }
    free(cfgs);
    if (rc != CB_OK) cb_cpu_decode_free(be, d);
    return rc;
}

/* Make room for m more tokens in every cache and in the decode scratch, before any state
 * changes, so that a pass either runs whole or leaves the state as it was. */
int cb_cpu_decode_reserve(cb_backend *be, cb_decode *d, int pos0, int m, cb_error *e) {
    (void)be;
    size_t need = 0;
    cb_decode_plan plan = cb_decode_plan_pick(d->cfg.plan, pos0 + m, NULL);
    for (int i = 0; i < d->prog->n_ops; i++) {
        const cb_op *op = &d->prog->ops[i];
        if (op->kind != CB_OP_ATTENTION) continue;
        const cb_layer_cache *c = &d->kv.layers[d->op_layer[i]];
        size_t n = cb_attention_decode_scratch_size(&op->attn, c, m, pos0 + m, &plan);
        if (n > need) need = n;
        CB_TRY(cb_layer_cache_reserve(&d->kv.layers[d->op_layer[i]], pos0 + m, e));
    }
    if (need > d->attn_scratch_elems) {
        /* grow geometrically: the need rises by a little with every decoded token */
        size_t cap = d->attn_scratch_elems * 2 > need ? d->attn_scratch_elems * 2 : need;
        float *q = cb_malloc(cap, sizeof *q, e);
        if (!q) return e->code;
        free(d->attn_scratch);
        d->attn_scratch = q;
        d->attn_scratch_elems = cap;
    }
    return CB_OK;
}

void cb_cpu_decode_truncate(cb_backend *be, cb_decode *d, int len) {
    (void)be;
    cb_kv_cache_truncate(&d->kv, len);
}

/* out (m, rows of W) = in (m, cols of W) W^T + bias, W the op's weight matrix of role. */
static void proj(const cb_pass *p, int op_index, int role, float *out, const float *in, const float *bias) {
    cb_matvec_n(out, &p->decode->mats[op_index * CB_OP_MAX_PARAMS + role], in, bias, p->T);
}

static const float *W(const cb_pass *p, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : p->weights + op->p[role];
}

static void rope_rows(const cb_pass *p, const cb_op *op, const float **cos_t, const float **sin_t) {
    const cb_rope_table *t = &p->prog->ropes[op->rope];
    *cos_t = p->rope + t->offset;
    *sin_t = *cos_t + (size_t)p->prog->T * (t->dim / 2);
}

/* Attention of the pass's m rows at pos0 (their keys and values go into the cache). */
int cb_cpu_decode_attention(cb_pass *p, int oi, float *out, const float *in, cb_error *e) {
    cb_decode *dc = p->decode;
    const cb_op *op = &p->prog->ops[oi];
    const cb_attention_config *a = &op->attn;
    const cb_head_dims d = cb_head_dims_of(a);
    const int m = p->T, pos0 = p->pos0, dec = a->mode == CB_ATTENTION_DECOUPLED;
    cb_layer_cache *cache = &dc->kv.layers[dc->op_layer[oi]];
    float *q = dc->work, *k = q + (size_t)m * d.H * d.dr, *v = k + (size_t)m * d.Hkv * d.dr;
    float *q_sem = v + (size_t)m * d.Hkv * d.dv, *k_sem = q_sem + (size_t)m * d.H * d.ds;
    float *gate = k_sem + (size_t)m * d.Hkv * d.ds, *att = gate + (size_t)m * d.H;
    const int bias = a->bias;
    cb_weight_matrix qkv;
    if (m == 1 && !dec && !bias && joined(dc, oi, QKV_ROLES, 3, &qkv)) { // q, k, v back to back in work
        cb_matvec(q, &qkv, in, NULL);
    } else if (m <= JOIN_MAX_ROWS && !dec && !bias && joined(dc, oi, QKV_ROLES, 3, &qkv)) { // one loop, then apart
        const size_t nq = (size_t)d.H * d.dr, nk = (size_t)d.Hkv * d.dr, nv = (size_t)d.Hkv * d.dv, w = nq + nk + nv;
        float *rows = att + (size_t)m * d.H * d.dv; /* cb_decode_op_work's room past att */
        cb_matvec_n(rows, &qkv, in, NULL, m);
        for (int t = 0; t < m; t++) {
            memcpy(q + t * nq, rows + t * w, nq * sizeof *q);
            memcpy(k + t * nk, rows + t * w + nq, nk * sizeof *k);
            memcpy(v + t * nv, rows + t * w + nq + nk, nv * sizeof *v);
        }
    } else {
        proj(p, oi, dec ? CB_P_QGEO_W : CB_P_Q_W, q, in, bias ? W(p, op, dec ? CB_P_QGEO_B : CB_P_Q_B) : NULL);
        proj(p, oi, dec ? CB_P_KGEO_W : CB_P_K_W, k, in, bias ? W(p, op, dec ? CB_P_KGEO_B : CB_P_K_B) : NULL);
        proj(p, oi, CB_P_V_W, v, in, bias ? W(p, op, CB_P_V_B) : NULL);
    }
    if (dec) {
        proj(p, oi, CB_P_QSEM_W, q_sem, in, bias ? W(p, op, CB_P_QSEM_B) : NULL);
        proj(p, oi, CB_P_KSEM_W, k_sem, in, bias ? W(p, op, CB_P_KSEM_B) : NULL);
    }
    if (a->rope_enabled) {
        const float *cos_t, *sin_t;
        rope_rows(p, op, &cos_t, &sin_t);
        cb_rope_forward(q, q, cos_t, sin_t, 1, m, d.H, d.dr, 0);
        cb_rope_forward(k, k, cos_t, sin_t, 1, m, d.Hkv, d.dr, 0);
    }
    if (d.gated) {
        // gate (m, H) = sigmoid(a_h + in . gate_proj_h), as cb_attention_forward
        const float *a_h = a->decoupled_gate ? W(p, op, CB_P_GATE_A) : NULL;
        if (a->decoupled_gate_dynamic) proj(p, oi, CB_P_GATE_PROJ, gate, in, NULL);
        else memset(gate, 0, sizeof *gate * (size_t)m * d.H);
        for (size_t i = 0; i < (size_t)m * d.H; i++) {
            float z = gate[i] + (a_h ? a_h[i % d.H] : 0);
            gate[i] = 1.0f / (1.0f + expf(-z));
        }
    }
    if (p->row_seqs) { /* a batch: row r is one token of its own sequence, against its own cache */
        for (int r = 0; r < m; r++) {
            cb_decode *sd = p->row_seqs[r];
            cb_layer_cache *c = &sd->kv.layers[sd->op_layer[oi]];
            CB_TRY(cb_layer_cache_append(c, k + (size_t)r * d.Hkv * d.dr, dec ? k_sem + (size_t)r * d.Hkv * d.ds : NULL,
                                         v + (size_t)r * d.Hkv * d.dv, 1, e));
            cb_decode_plan plan = cb_decode_plan_pick(sd->cfg.plan, p->row_pos[r] + 1, &sd->last_bucket);
            cb_attention_decode(att + (size_t)r * d.H * d.dv, q + (size_t)r * d.H * d.dr,
                                dec ? q_sem + (size_t)r * d.H * d.ds : NULL, d.gated ? gate + (size_t)r * d.H : NULL, c, a,
                                p->row_pos[r], 1, &plan, sd->attn_scratch);
        }
    } else {
        CB_TRY(cb_layer_cache_append(cache, k, dec ? k_sem : NULL, v, m, e));
        cb_decode_plan plan = cb_decode_plan_pick(dc->cfg.plan, pos0 + m, &dc->last_bucket);
        cb_attention_decode(att, q, dec ? q_sem : NULL, d.gated ? gate : NULL, cache, a, pos0, m, &plan, dc->attn_scratch);
    }
    proj(p, oi, CB_P_O_W, out, att, bias ? W(p, op, CB_P_O_B) : NULL);
    return CB_OK;
}

/* out = (silu(in Wg^T) * (in Wu^T)) Wd^T, as cb_swiglu_forward */
/* h = silu(gate) * up over n values, in pieces of SWIGLU_PIECE on the pool (a prefill
 * chunk's 64 x d_ff: on one thread it was 3% of a 2-thread prefill's time, the other idle). */
#define SWIGLU_PIECE 8192
typedef struct swiglu_job {
    float *h;            /* (m, d_ff) */
    const float *gate, *up; /* row i at i * ld */
    size_t n, d_ff, ld;  /* n = m d_ff */
} swiglu_job;

static void swiglu_piece(void *ctx, int it) {
    const swiglu_job *j = ctx;
    const size_t hi = (size_t)it * SWIGLU_PIECE + SWIGLU_PIECE < j->n ? (size_t)it * SWIGLU_PIECE + SWIGLU_PIECE : j->n;
    for (size_t lo = (size_t)it * SWIGLU_PIECE; lo < hi;) { /* the piece's part of each row */
        const size_t i = lo / j->d_ff, f0 = lo % j->d_ff, f1 = f0 + (hi - lo) < j->d_ff ? f0 + (hi - lo) : j->d_ff;
        float *h = j->h + i * j->d_ff;
        const float *gate = j->gate + i * j->ld, *up = j->up + i * j->ld;
        // GCC's -O2 leaves this loop scalar (cb_exp's polynomial, 5 ns a value: a fifteenth of a
        // 64-token fp16 prefill); simd makes it 16 lanes, the same operations per value
        #pragma omp simd
        for (size_t f = f0; f < f1; f++) h[f] = cb_silu(gate[f]) * up[f];
        lo += f1 - f0;
    }
}

void cb_cpu_decode_swiglu(cb_pass *p, int i, float *out, const float *in) {
    const cb_op *op = &p->prog->ops[i];
    const int m = p->T;
    const size_t nf = (size_t)m * op->d_ff;
    float *gate = p->decode->work, *up = gate + nf, *h = up + nf;
    size_t ld = (size_t)op->d_ff;
    cb_weight_matrix gate_up;
    if (m <= JOIN_MAX_ROWS && joined(p->decode, i, GATE_UP_ROLES, 2, &gate_up)) { // row t's gate, then its up
        cb_matvec_n(gate, &gate_up, in, NULL, m);
        up = gate + op->d_ff;
        ld = 2 * (size_t)op->d_ff;
    } else {
        proj(p, i, CB_P_GATE, gate, in, NULL);
        proj(p, i, CB_P_UP, up, in, NULL);
    }
    swiglu_job j = {h, gate, up, nf, (size_t)op->d_ff, ld};
    cb_parallel_for((int)((nf + SWIGLU_PIECE - 1) / SWIGLU_PIECE), swiglu_piece, &j);
    proj(p, i, CB_P_DOWN, out, h, NULL);
}

/* out = gelu_tanh(in Wfc^T + bfc) Wproj^T + bproj, as cb_mlp_forward */
void cb_cpu_decode_mlp(cb_pass *p, int i, float *out, const float *in) {
    const cb_op *op = &p->prog->ops[i];
    const size_t nf = (size_t)p->T * op->d_ff;
    float *pre = p->decode->work, *h = pre + nf;
    proj(p, i, CB_P_FC_W, pre, in, W(p, op, CB_P_FC_B));
    #pragma omp simd // as in swiglu
    for (size_t k = 0; k < nf; k++) h[k] = cb_gelu_tanh(pre[k]);
    proj(p, i, CB_P_PROJ_W, out, h, W(p, op, CB_P_PROJ_B));
}

/* A linear op, or the head: the widest product (V columns), so only the rows asked for. */
void cb_cpu_decode_linear(cb_pass *p, int i, float *out, const float *in) {
    const cb_op *op = &p->prog->ops[i];
    const int m = p->T;
    if (op->kind == CB_OP_LINEAR || p->head_rows == CB_HEAD_ALL) {
        proj(p, i, CB_P_WEIGHT, out, in, W(p, op, CB_P_BIAS));
    } else if (p->head_rows == CB_HEAD_LAST) {
        cb_matvec_n(out + (size_t)(m - 1) * op->d_out, &p->decode->mats[i * CB_OP_MAX_PARAMS + CB_P_WEIGHT],
                    in + (size_t)(m - 1) * op->d_in, W(p, op, CB_P_BIAS), 1);
    }
}
