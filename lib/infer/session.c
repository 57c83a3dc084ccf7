/* session.c: forward passes over new tokens against the KV cache. The ops are those of
 * model/program.h compiled for (1, chunk); a pass of m <= chunk rows uses the first m rows
 * of every slot and goes through the one dispatch loop of backend/pass.h as a decoding
 * pass: the device's backend runs attention against its KV caches and the products over
 * the weights in their decoding storage kind (the CPU's: backend/cpu/decode.c). The
 * session itself only checks, chunks, places RoPE rows and keeps the token history. */
#include "infer/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "infer/sample.h"
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
    cb_backend *be = s->be;
    if (be) {
        if (s->dec.mats || s->dec.work) be->decode_free(be, &s->dec);
        be->free(be, s->slots);
        if (s->rope != s->rope_host) be->free(be, s->rope);
        be->free(be, s->pass_tokens);
        if (s->weights != s->model->weights && !s->cfg.weights_from) be->free(be, (void *)s->weights);
    }
    free(s->rope_host);
    free(s->rope_inv_freq);
    free(s->tokens);
    cb_program_free(&s->prog);
    memset(s, 0, sizeof *s);
}

/* The model's weights on the session's device: the model's own buffer where the device
 * shares host memory, else a copy. */
static int place_weights(cb_session *s, cb_error *e) {
    cb_backend *be = s->be;
    if (be->unified) {
        s->weights = s->model->weights;
        return CB_OK;
    }
    const size_t bytes = s->model->params.total_floats * sizeof(float);
    float *w = be->alloc(be, bytes, e);
    if (!w) return e->code;
    s->weights = w;
    return be->upload(be, w, s->model->weights, bytes, e);
}

int cb_session_init(cb_session *s, const cb_model *m, const cb_session_config *cfg, cb_error *e) {
    memset(s, 0, sizeof *s);
    s->model = m;
    s->cfg = *cfg;
    if (!s->cfg.backend) s->cfg.backend = cb_backend_cpu();
    int model_ctx = cb_model_max_seq_len(m);
    if (s->cfg.max_seq_len < 0) return cb_fail(e, CB_E_USAGE, "", "max_seq_len %d is negative", cfg->max_seq_len);
    if (s->cfg.max_seq_len == 0) s->cfg.max_seq_len = model_ctx ? model_ctx : CB_SESSION_DEFAULT_CONTEXT;
    if (model_ctx && s->cfg.max_seq_len > model_ctx)
        return cb_fail(e, CB_E_USAGE, "", "max_seq_len %d exceeds the model's max_seq_len %d", s->cfg.max_seq_len,
                       model_ctx);
    if (s->cfg.chunk <= 0) s->cfg.chunk = CB_SESSION_DEFAULT_CHUNK;
    if (s->cfg.chunk > s->cfg.max_seq_len) s->cfg.chunk = s->cfg.max_seq_len;
    if (!cb_kv_kind_valid(s->cfg.weight_kind))
        return cb_fail(e, CB_E_USAGE, "", "unknown weight kind %d", s->cfg.weight_kind);
    const int C = s->cfg.chunk;
    CB_TRY(cb_program_init(&s->prog, m->plan, &m->params, 1, C, e));
    s->be = s->cfg.backend;
    cb_backend *be = s->be;
    const cb_program *p = &s->prog;
    s->vocab = p->vocab_size;
    s->d_model = p->d_model;

    int rc = CB_OK;
    size_t inv_freq_n = 0;
    for (int i = 0; i < p->n_ops; i++) {
        const cb_op *op = &p->ops[i];
        if (op->kind == CB_OP_ATTENTION && !op->attn.is_causal && rc == CB_OK)
            rc = cb_fail(e, CB_E_INVALID, op->id, "attention with is_causal false cannot be decoded token by token");
        if ((op->kind == CB_OP_COMBINE || op->kind == CB_OP_CONCAT) && op->n_in > MAX_FANIN && rc == CB_OK)
            rc = cb_fail(e, CB_E_INVALID, op->id, "%d inputs (at most %d)", op->n_in, MAX_FANIN);
    }
    for (int i = 0; i < p->n_ropes; i++) inv_freq_n += (size_t)p->ropes[i].dim / 2;
    if (rc == CB_OK) {
        s->rope_host = cb_malloc(p->rope_elems ? p->rope_elems : 1, sizeof *s->rope_host, e);
        s->rope_inv_freq = cb_malloc(inv_freq_n ? inv_freq_n : 1, sizeof *s->rope_inv_freq, e);
        s->tokens = cb_malloc((size_t)s->cfg.max_seq_len, sizeof *s->tokens, e);
        if (!s->rope_host || !s->rope_inv_freq || !s->tokens) rc = CB_E_RUNTIME;
    }
    const cb_session *from = s->cfg.weights_from;
    if (rc == CB_OK && from && (from->model != m || from->be != be || from->cfg.weight_kind != s->cfg.weight_kind))
        rc = cb_fail(e, CB_E_USAGE, "", "a session shares the weights only of one of the same model, device and weight kind");
    if (rc == CB_OK && from) s->weights = from->weights;
    else if (rc == CB_OK) rc = place_weights(s, e);
    if (rc == CB_OK) {
        s->slots = be->alloc(be, (p->slot_elems ? p->slot_elems : 1) * sizeof *s->slots, e);
        s->rope = be->unified ? s->rope_host : be->alloc(be, (p->rope_elems ? p->rope_elems : 1) * sizeof(float), e);
        if (!be->unified) s->pass_tokens = be->alloc(be, (size_t)C * sizeof *s->pass_tokens, e);
        if (!s->slots || !s->rope || (!be->unified && !s->pass_tokens)) rc = CB_E_RUNTIME;
    }
    if (rc == CB_OK) {
        double *f = s->rope_inv_freq;
        for (int i = 0; i < p->n_ropes; i++) {
            cb_rope_inv_freq(f, p->ropes[i].dim, p->ropes[i].theta, &p->ropes[i].scaling);
            f += p->ropes[i].dim / 2;
        }
        const cb_decode_config dc = {.kinds = s->cfg.kinds, .weight_kind = s->cfg.weight_kind, .rows = C,
                                     .plan = &s->cfg.plan, .graphs_off = s->cfg.graphs_off,
                                     .kv_layout = s->cfg.kv_layout, .weights_of = from ? &from->dec : NULL};
        rc = be->decode_init(be, &s->dec, p, &m->params, s->weights, &dc, e);
    }
    if (rc != CB_OK) cb_session_free(s);
    return rc;
}

/* cos, sin of every RoPE table for positions pos0 .. pos0+m-1 (pos NULL) or pos[0..m), in
 * rows 0 .. m-1, computed as cb_rope_tables does (float angle, double cos/sin) so rotations
 * match the full pass; then on the device. */
static int fill_rope(cb_session *s, int pos0, const int *pos, int m, cb_error *e) {
    const cb_program *p = &s->prog;
    const double *f = s->rope_inv_freq;
    for (int i = 0; i < p->n_ropes; i++) {
        const int half = p->ropes[i].dim / 2;
        float *cos_t = s->rope_host + p->ropes[i].offset, *sin_t = cos_t + (size_t)p->T * half;
        for (int t = 0; t < m; t++)
            for (int j = 0; j < half; j++) {
                float angle = (float)(pos ? pos[t] : pos0 + t) * (float)f[j];
                cos_t[(size_t)t * half + j] = (float)cos((double)angle);
                sin_t[(size_t)t * half + j] = (float)sin((double)angle);
            }
        f += half;
    }
    if (s->rope == s->rope_host || !p->rope_elems) return CB_OK;
    return s->be->upload(s->be, s->rope, s->rope_host, p->rope_elems * sizeof(float), e);
}

/* The decoding pass of m rows of s's program over the tokens on the device (row r at pos0 + r
 * of s, or, batched, at row_pos[r] of row_seqs[r]), through the dispatch loop. */
static int forward_rows(cb_session *s, const int32_t *dev_tokens, int m, int pos0, int head_rows, cb_decode **row_seqs,
                        const int *row_pos, cb_error *e) {
    cb_backend *be = s->be;
    cb_pass p;
    memset(&p, 0, sizeof p);
    p.prog = &s->prog;
    p.B = 1;
    p.T = m;
    p.pos0 = pos0;
    p.weights = s->weights;
    p.slots = s->slots;
    p.rope = s->rope;
    p.tokens = dev_tokens;
    p.decode = &s->dec;
    p.head_rows = head_rows;
    p.row_seqs = row_seqs;
    p.row_pos = row_pos;
    be->decode_begin(be);
    int rc = cb_pass_forward(be, &p, NULL, e);
    be->decode_end(be);
    return rc;
}

/* One pass of m <= chunk rows at position s->len, through the dispatch loop. */
static int run_pass(cb_session *s, const int32_t *tokens, int m, int head_rows, cb_error *e) {
    cb_backend *be = s->be;
    const int pos0 = s->len;
    CB_TRY(be->decode_reserve(be, &s->dec, pos0, m, e));
    if (!(m == 1 && s->dec.rope_on_device)) CB_TRY(fill_rope(s, pos0, NULL, m, e)); /* else the device's own */
    if (s->pass_tokens) {
        CB_TRY(be->upload(be, s->pass_tokens, tokens, sizeof *tokens * (size_t)m, e));
    }
    int rc = forward_rows(s, s->pass_tokens ? s->pass_tokens : tokens, m, pos0, head_rows, NULL, NULL, e);
    if (rc != CB_OK) {
        be->decode_truncate(be, &s->dec, pos0);
        return rc;
    }
    memcpy(s->tokens + pos0, tokens, sizeof *tokens * (size_t)m);
    s->len = pos0 + m;
    return CB_OK;
}

/* rows [first, first + n) of the last pass's logits into out (n, V). */
static int read_logits(cb_session *s, float *out, int first, int n, cb_error *e) {
    const size_t V = (size_t)s->vocab;
    const float *slot = s->slots + s->prog.slots[s->prog.logits_slot].offset + (size_t)first * V;
    return s->be->download(s->be, out, slot, sizeof *out * (size_t)n * V, e);
}

static int check_tokens(const cb_session *s, const int32_t *tokens, int n, cb_error *e) {
    if (n < 0) return cb_fail(e, CB_E_USAGE, "", "negative token count %d", n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->vocab)
            return cb_fail(e, CB_E_USAGE, "", "token id %d is outside the vocabulary (%d tokens)", tokens[i], s->vocab);
    if (n > s->cfg.max_seq_len - s->len)
        return cb_fail(e, CB_E_USAGE, "", "context full: %d tokens held and %d new exceed max_seq_len %d", s->len, n,
                       s->cfg.max_seq_len);
    return CB_OK;
}

int cb_session_forward(cb_session *s, const int32_t *tokens, int n, float *logits, int all_rows, cb_error *e) {
    CB_TRY(check_tokens(s, tokens, n, e));
    const int start = s->len, V = s->vocab;
    for (int off = 0; off < n; off += s->cfg.chunk) {
        int m = n - off < s->cfg.chunk ? n - off : s->cfg.chunk;
        int last = off + m == n;
        int head = !logits ? CB_HEAD_NONE : all_rows ? CB_HEAD_ALL : last ? CB_HEAD_LAST : CB_HEAD_NONE;
        int rc = run_pass(s, tokens + off, m, head, e);
        if (rc == CB_OK && head == CB_HEAD_ALL) rc = read_logits(s, logits + (size_t)off * V, 0, m, e);
        else if (rc == CB_OK && head == CB_HEAD_LAST) rc = read_logits(s, logits, m - 1, 1, e);
        if (rc != CB_OK) {
            cb_session_truncate(s, start);
            return rc;
        }
    }
    return CB_OK;
}

/* The argmax of row `row` of the last pass's logits, on the device when it can. */
static int logits_argmax(cb_session *s, int row, int32_t *next, int *nonfinite, cb_error *e) {
    cb_backend *be = s->be;
    const int V = s->vocab;
    const float *slot = s->slots + s->prog.slots[s->prog.logits_slot].offset + (size_t)row * V;
    if (be->decode_argmax) {
        int id = 0;
        CB_TRY(be->decode_argmax(be, &s->dec, slot, V, &id, nonfinite, e));
        *next = id;
        return CB_OK;
    }
    float *host = NULL;
    if (!be->unified) {
        if (!(host = cb_malloc((size_t)V, sizeof *host, e))) return e->code;
        int rc = be->download(be, host, slot, sizeof *host * (size_t)V, e);
        if (rc != CB_OK) {
            free(host);
            return rc;
        }
    }
    const float *x = host ? host : slot;
    int bad = 0;
    for (int i = 0; i < V; i++) bad |= !isfinite(x[i]);
    *nonfinite = bad;
    *next = cb_argmax(x, V);
    free(host);
    return CB_OK;
}

int cb_session_forward_argmax(cb_session *s, const int32_t *tokens, int n, int32_t *next, int *nonfinite,
                              cb_error *e) {
    if (n < 1) return cb_fail(e, CB_E_USAGE, "", "no token to run");
    CB_TRY(check_tokens(s, tokens, n, e));
    const int start = s->len;
    for (int off = 0; off < n; off += s->cfg.chunk) {
        int m = n - off < s->cfg.chunk ? n - off : s->cfg.chunk;
        int last = off + m == n;
        int rc = run_pass(s, tokens + off, m, last ? CB_HEAD_LAST : CB_HEAD_NONE, e);
        if (rc == CB_OK && last) rc = logits_argmax(s, m - 1, next, nonfinite, e);
        if (rc != CB_OK) {
            cb_session_truncate(s, start);
            return rc;
        }
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

int cb_session_forward_batch(cb_session *const *seqs, int k, const int32_t *tokens, float *logits, cb_error *e) {
    cb_session *run = seqs[0]; /* its program, slots and work run the pass */
    if (k < 1 || k > run->cfg.chunk)
        return cb_fail(e, CB_E_USAGE, "", "a batched pass of %d rows (1 to %d)", k, run->cfg.chunk);
    for (int r = 0; r < k; r++) {
        const cb_session *s = seqs[r];
        if (s->model != run->model || s->be != run->be || s->weights != run->weights ||
            s->cfg.weight_kind != run->cfg.weight_kind)
            return cb_fail(e, CB_E_USAGE, "", "the sessions of a batched pass share one model's weights on one device");
        for (int q = 0; q < r; q++)
            if (seqs[q] == s) return cb_fail(e, CB_E_USAGE, "", "a session twice in one batched pass");
        CB_TRY(check_tokens(s, tokens + r, 1, e));
    }
    if (k == 1) return cb_session_forward(run, tokens, 1, logits, 0, e);
    cb_backend *be = run->be;
    cb_decode **decs = cb_malloc((size_t)k, sizeof *decs, e);
    int *pos = decs ? cb_malloc((size_t)k, sizeof *pos, e) : NULL;
    int rc = decs && pos ? CB_OK : CB_E_RUNTIME;
    for (int r = 0; r < k && rc == CB_OK; r++) { /* room in every cache before anything changes */
        decs[r] = &seqs[r]->dec;
        pos[r] = seqs[r]->len;
        rc = be->decode_reserve(be, decs[r], pos[r], 1, e);
    }
    if (rc == CB_OK) rc = fill_rope(run, 0, pos, k, e);
    if (rc == CB_OK && run->pass_tokens) rc = be->upload(be, run->pass_tokens, tokens, sizeof *tokens * (size_t)k, e);
    if (rc == CB_OK) {
        rc = forward_rows(run, run->pass_tokens ? run->pass_tokens : tokens, k, 0, logits ? CB_HEAD_ALL : CB_HEAD_NONE,
                          decs, pos, e);
        if (rc != CB_OK)
            for (int r = 0; r < k; r++) be->decode_truncate(be, decs[r], pos[r]);
    }
    if (rc == CB_OK) {
        for (int r = 0; r < k; r++) seqs[r]->tokens[seqs[r]->len++] = tokens[r];
        if (logits) rc = read_logits(run, logits, 0, k, e);
    }
    free(decs);
    free(pos);
    return rc;
}

void cb_session_truncate(cb_session *s, int n) {
    if (n < 0) n = 0;
    if (n >= s->len) return;
    s->be->decode_truncate(s->be, &s->dec, n);
    s->len = n;
}

void cb_session_reset(cb_session *s) { cb_session_truncate(s, 0); }

cb_kv_bytes cb_session_cache_bytes(const cb_session *s) { return cb_kv_cache_bytes(&s->dec.kv); }
