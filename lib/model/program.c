/* program.c: compile a plan's embedder, topology tree and head into ops and slots. */
#include "model/program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "layers/attention.h"

typedef struct ctx {
    cb_program *prog;
    const cb_param_table *params;
    cb_error *e;
    char suffix[32]; /* appended to op ids inside repeated cyclic/recurrent bodies */
    int in_segment;  /* compiling inside a block (cb_segment): nested repeats are not blocks */
} ctx;

static int grow(void **items, int *cap, int need, size_t size, cb_error *e) {
    if (need <= *cap) return CB_OK;
    int nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *p = realloc(*items, (size_t)nc * size);
    if (!p) return cb_fail(e, CB_E_RUNTIME, "", "out of memory compiling the model");
    *items = p;
    *cap = nc;
    return CB_OK;
}

static int new_slot(ctx *c, int width, int *slot) {
    cb_program *p = c->prog;
    CB_TRY(grow((void **)&p->slots, &p->cap_slots, p->n_slots + 1, sizeof *p->slots, c->e));
    p->slots[p->n_slots].width = width;
    p->slots[p->n_slots].offset = p->slot_elems;
    p->slot_elems += (size_t)p->B * p->T * (size_t)width;
    *slot = p->n_slots++;
    return CB_OK;
}

/* Appends an op reading n_in slots; returns it through *out_op (valid until the next append). */
static int new_op(ctx *c, int kind, const char *id, const char *type, const int *in, int n_in,
                  cb_op **out_op) {
    cb_program *p = c->prog;
    CB_TRY(grow((void **)&p->ops, &p->cap_ops, p->n_ops + 1, sizeof *p->ops, c->e));
    CB_TRY(grow((void **)&p->inputs, &p->cap_inputs, p->n_inputs + n_in, sizeof *p->inputs, c->e));
    cb_op *op = &p->ops[p->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    snprintf(op->id, sizeof op->id, "%s%s", id, c->suffix);
    op->type = type;
    op->in_first = p->n_inputs;
    op->n_in = n_in;
    for (int i = 0; i < n_in; i++) p->inputs[p->n_inputs++] = in[i];
    for (int i = 0; i < CB_OP_MAX_PARAMS; i++) op->p[i] = CB_NO_PARAM;
    op->out = -1;
    op->rope = -1;
    op->segment = -1;
    *out_op = op;
    return CB_OK;
}

/* What op saves for backward: n elements of the saved arena, after the last op's. */
static void reserve_saved(cb_program *p, cb_op *op, size_t n) {
    op->saved = p->saved_elems;
    op->n_saved = n;
    p->saved_elems += n;
}

/* Ops [first, last] are one block; they save for backward what they were laid out to. */
static int new_segment(ctx *c, int first, int last) {
    cb_program *p = c->prog;
    CB_TRY(grow((void **)&p->segments, &p->cap_segments, p->n_segments + 1, sizeof *p->segments, c->e));
    cb_segment *s = &p->segments[p->n_segments];
    memset(s, 0, sizeof *s);
    s->first = first;
    s->last = last;
    for (int i = first; i <= last; i++) p->ops[i].segment = p->n_segments;
    p->n_segments++;
    return CB_OK;
}

static void join_id(char *out, size_t n, const char *prefix, const char *name) {
    if (!prefix[0]) snprintf(out, n, "%s", name);
    else if (!name[0]) snprintf(out, n, "%s", prefix);
    else snprintf(out, n, "%s.%s", prefix, name);
}

/* Offset of tensor id.local; required ones must exist. */
static int param(ctx *c, const char *id, const char *local, int required, size_t *off) {
    char full[CB_PARAM_NAME_MAX + 64];
    join_id(full, sizeof full, id, local);
    const cb_param *p = cb_params_find(c->params, full);
    if (!p) {
        *off = CB_NO_PARAM;
        if (required) return cb_fail(c->e, CB_E_INVALID, "plan", "tensor %s missing from the plan", full);
        return CB_OK;
    }
    *off = p->offset;
    return CB_OK;
}

static int cfg_int(const json_t *cfg, const char *key, int dflt) {
    const json_t *v = json_object_get(cfg, key);
    return json_is_integer(v) ? (int)json_integer_value(v) : dflt;
}
static double cfg_num(const json_t *cfg, const char *key, double dflt) {
    const json_t *v = json_object_get(cfg, key);
    return json_is_number(v) ? json_number_value(v) : dflt;
}
static int cfg_bool(const json_t *cfg, const char *key, int dflt) {
    const json_t *v = json_object_get(cfg, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int rope_table(ctx *c, int dim, const json_t *cfg, int *index) {
    cb_program *p = c->prog;
    cb_rope_table t;
    memset(&t, 0, sizeof t);
    t.dim = dim;
    t.theta = cfg_num(cfg, "rope_theta", 10000.0);
    const json_t *sc = json_object_get(cfg, "rope_scaling");
    if (json_is_object(sc)) {
        const char *type = json_string_value(json_object_get(sc, "type"));
        if (!type) type = json_string_value(json_object_get(sc, "rope_type"));
        if (!type || strcmp(type, "llama3") != 0)
            return cb_fail(c->e, CB_E_INVALID, "plan", "rope_scaling type \"%s\" is not supported",
                           type ? type : "?");
        t.scaling.type = CB_ROPE_SCALING_LLAMA3;
        t.scaling.factor = cfg_num(sc, "factor", 8.0);
        t.scaling.low_freq_factor = cfg_num(sc, "low_freq_factor", 1.0);
        t.scaling.high_freq_factor = cfg_num(sc, "high_freq_factor", 4.0);
        t.scaling.original_max_position_embeddings = cfg_int(sc, "original_max_position_embeddings", 8192);
    }
    for (int i = 0; i < p->n_ropes; i++) {
        const cb_rope_table *r = &p->ropes[i];
        if (r->dim == t.dim && r->theta == t.theta && memcmp(&r->scaling, &t.scaling, sizeof t.scaling) == 0) {
            *index = i;
            return CB_OK;
        }
    }
    if (p->n_ropes == (int)(sizeof p->ropes / sizeof p->ropes[0]))
        return cb_fail(c->e, CB_E_INVALID, "plan", "too many distinct RoPE settings");
    t.offset = p->rope_elems;
    p->rope_elems += (size_t)p->T * (size_t)dim; /* cos and sin, each T * dim/2 */
    p->ropes[p->n_ropes] = t;
    *index = p->n_ropes++;
    return CB_OK;
}

static void need_scratch(cb_program *p, size_t n) {
    if (n > p->scratch_elems) p->scratch_elems = n;
}

static int compile_node(ctx *c, const json_t *node, const char *id, int in, int *out, int depth);

static int compile_chain(ctx *c, const json_t *children, const char *id, int in, int *out, int depth) {
    size_t i;
    const json_t *child;
    int cur = in;
    json_array_foreach(children, i, child) {
        const char *name = json_string_value(json_object_get(child, "name"));
        char cid[CB_PARAM_NAME_MAX];
        join_id(cid, sizeof cid, id, name ? name : "");
        CB_TRY(compile_node(c, child, cid, cur, &cur, depth + 1));
    }
    *out = cur;
    return CB_OK;
}

static int compile_attention(ctx *c, const json_t *cfg, const char *id, const char *type, int in, int *out) {
    cb_program *p = c->prog;
    cb_attention_config a;
    memset(&a, 0, sizeof a);
    const char *mode = json_string_value(json_object_get(cfg, "mode"));
    a.d_model = cfg_int(cfg, "d_model", 0);
    a.n_heads = cfg_int(cfg, "n_heads", 0);
    a.n_kv_heads = cfg_int(cfg, "n_kv_heads", a.n_heads);
    a.mode = !mode || strcmp(mode, "standard") == 0 ? CB_ATTENTION_STANDARD
           : strcmp(mode, "gqa") == 0 ? CB_ATTENTION_GQA : CB_ATTENTION_DECOUPLED;
    if (mode && strcmp(mode, "standard") && strcmp(mode, "gqa") && strcmp(mode, "decoupled"))
        return cb_fail(c->e, CB_E_INVALID, "plan", "%s: unknown attention mode \"%s\"", id, mode);
    a.head_dim = a.n_heads ? a.d_model / a.n_heads : 0;
    a.sem_dim = cfg_int(cfg, "sem_dim", 0);
    a.geo_dim = cfg_int(cfg, "geo_dim", 0);
    a.v_dim = cfg_int(cfg, "v_dim", a.d_model);
    a.rope_enabled = cfg_bool(cfg, "rope_enabled", 1);
    a.bias = cfg_bool(cfg, "bias", 0);
    a.decoupled_gate = cfg_bool(cfg, "decoupled_gate", 0);
    a.decoupled_gate_dynamic = cfg_bool(cfg, "decoupled_gate_dynamic", 0);
    a.is_causal = cfg_bool(cfg, "is_causal", 1);
    a.dropout = cfg_num(cfg, "dropout", 0.0);
    cb_error ae;
    if (cb_attention_check(&a, &ae) != CB_OK)
        return cb_fail(c->e, CB_E_INVALID, "plan", "%s: %s", id, ae.msg);
    cb_op *op;
    CB_TRY(new_op(c, CB_OP_ATTENTION, id, type, &in, 1, &op));
    op->attn = a;
    op->d_in = op->d_out = a.d_model;
    int dec = a.mode == CB_ATTENTION_DECOUPLED;
    static const char *names[] = {"q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
                                  "o.weight", "o.bias", "q_sem.weight", "q_sem.bias", "k_sem.weight",
                                  "k_sem.bias", "q_geo.weight", "q_geo.bias", "k_geo.weight",
                                  "k_geo.bias", "gate", "gate_proj.weight"};
    for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
        int is_bias = strstr(names[r], "bias") != NULL;
        int want = r <= CB_P_K_B ? !dec : r <= CB_P_O_B ? 1 : r <= CB_P_KGEO_B ? dec
                 : r == CB_P_GATE_A ? dec && a.decoupled_gate : dec && a.decoupled_gate_dynamic;
        if (!want || (is_bias && !a.bias)) continue;
        CB_TRY(param(c, id, names[r], 1, &p->ops[p->n_ops - 1].p[r]));
    }
    if (a.rope_enabled) {
        int idx;
        CB_TRY(rope_table(c, cb_attention_rope_dim(&a), cfg, &idx));
        p->ops[p->n_ops - 1].rope = idx;
    }
    op = &p->ops[p->n_ops - 1];
    reserve_saved(p, op, cb_attention_acts_size(&a, p->B, p->T));
    need_scratch(p, cb_attention_scratch_size(&a, p->B, p->T));
    int o;
    CB_TRY(new_slot(c, a.d_model, &o));
    p->ops[p->n_ops - 1].out = o;
    *out = o;
    return CB_OK;
}

/* Layers with plain weight (and bias) tensors. */
static int compile_layer(ctx *c, const json_t *node, const char *type, const char *id, int in, int *out) {
    cb_program *p = c->prog;
    const json_t *cfg = json_object_get(node, "config");
    if (!json_is_object(cfg)) cfg = node;
    if (strcmp(type, "AttentionLayer") == 0) return compile_attention(c, cfg, id, type, in, out);
    size_t N = (size_t)p->B * p->T;
    int d_in = p->slots[in].width, d_out = d_in, kind;
    cb_op *op;
    if (strcmp(type, "RMSNormLayer") == 0 || strcmp(type, "LayerNormLayer") == 0) {
        int ln = type[0] == 'L';
        kind = ln ? CB_OP_LAYERNORM : CB_OP_RMSNORM;
        CB_TRY(new_op(c, kind, id, type, &in, 1, &op));
        op->eps = (float)cfg_num(cfg, "eps", 1e-5);
        reserve_saved(p, op, (ln ? 2 : 1) * N);
        CB_TRY(param(c, id, "weight", 1, &p->ops[p->n_ops - 1].p[CB_P_WEIGHT]));
        if (ln) CB_TRY(param(c, id, "bias", cfg_bool(cfg, "bias", 1), &p->ops[p->n_ops - 1].p[CB_P_BIAS]));
    } else if (strcmp(type, "SwiGLULayer") == 0) {
        CB_TRY(new_op(c, CB_OP_SWIGLU, id, type, &in, 1, &op));
        op->d_ff = cfg_int(cfg, "d_ff", 0);
        reserve_saved(p, op, 3 * N * (size_t)op->d_ff);
        need_scratch(p, 2 * N * (size_t)op->d_ff);
        CB_TRY(param(c, id, "gate.weight", 1, &p->ops[p->n_ops - 1].p[CB_P_GATE]));
        CB_TRY(param(c, id, "up.weight", 1, &p->ops[p->n_ops - 1].p[CB_P_UP]));
        CB_TRY(param(c, id, "down.weight", 1, &p->ops[p->n_ops - 1].p[CB_P_DOWN]));
    } else if (strcmp(type, "MLPLayer") == 0) {
        CB_TRY(new_op(c, CB_OP_MLP, id, type, &in, 1, &op));
        op->d_ff = cfg_int(cfg, "d_ff", 0);
        reserve_saved(p, op, 2 * N * (size_t)op->d_ff);
        need_scratch(p, N * (size_t)op->d_ff);
        int bias = cfg_bool(cfg, "bias", 1);
        CB_TRY(param(c, id, "fc.weight", 1, &p->ops[p->n_ops - 1].p[CB_P_FC_W]));
        CB_TRY(param(c, id, "fc.bias", bias, &p->ops[p->n_ops - 1].p[CB_P_FC_B]));
        CB_TRY(param(c, id, "proj.weight", 1, &p->ops[p->n_ops - 1].p[CB_P_PROJ_W]));
        CB_TRY(param(c, id, "proj.bias", bias, &p->ops[p->n_ops - 1].p[CB_P_PROJ_B]));
    } else if (strcmp(type, "LinearLayer") == 0) {
        CB_TRY(new_op(c, CB_OP_LINEAR, id, type, &in, 1, &op));
        d_out = cfg_int(cfg, "d_out", 0);
        CB_TRY(param(c, id, "weight", 1, &p->ops[p->n_ops - 1].p[CB_P_WEIGHT]));
        CB_TRY(param(c, id, "bias", cfg_bool(cfg, "bias", 1), &p->ops[p->n_ops - 1].p[CB_P_BIAS]));
    } else if (strcmp(type, "DropoutLayer") == 0) {
        CB_TRY(new_op(c, CB_OP_DROPOUT, id, type, &in, 1, &op));
        op->p_drop = (float)cfg_num(cfg, "p", 0.1);
    } else if (strcmp(type, "RoPE") == 0) {
        CB_TRY(new_op(c, CB_OP_ROPE, id, type, &in, 1, &op));
        int heads = cfg_int(cfg, "n_heads", 1);
        if (heads <= 0 || d_in % heads || (d_in / heads) % 2)
            return cb_fail(c->e, CB_E_INVALID, "plan", "%s: RoPE width %d does not split into %d even heads",
                           id, d_in, heads);
        p->ops[p->n_ops - 1].heads = heads;
        p->ops[p->n_ops - 1].head_dim = d_in / heads;
        int idx;
        CB_TRY(rope_table(c, d_in / heads, cfg, &idx));
        p->ops[p->n_ops - 1].rope = idx;
    } else {
        return cb_fail(c->e, CB_E_INVALID, "plan", "%s: unknown layer type \"%s\"", id, type);
    }
    op = &p->ops[p->n_ops - 1];
    op->d_in = d_in;
    op->d_out = d_out;
    int o;
    CB_TRY(new_slot(c, d_out, &o));
    p->ops[p->n_ops - 1].out = o;
    *out = o;
    return CB_OK;
}

static int add_op(ctx *c, const char *id, const char *type, int a, int b, int *out) {
    int ins[2] = {a, b};
    cb_op *op;
    CB_TRY(new_op(c, CB_OP_ADD, id, type, ins, 2, &op));
    int o;
    CB_TRY(new_slot(c, c->prog->slots[a].width, &o));
    c->prog->ops[c->prog->n_ops - 1].out = o;
    *out = o;
    return CB_OK;
}

static int compile_node(ctx *c, const json_t *node, const char *id, int in, int *out, int depth) {
    cb_program *p = c->prog;
    if (depth > 256) return cb_fail(c->e, CB_E_INVALID, "plan", "topology nested too deeply");
    const char *type = json_string_value(json_object_get(node, "type"));
    if (!type) return cb_fail(c->e, CB_E_INVALID, "plan", "%s: node without a type", id);
    const json_t *children = json_object_get(node, "children");
    if (!strstr(type, "Topology")) return compile_layer(c, node, type, id, in, out);
    if (!json_is_array(children) || json_array_size(children) == 0)
        return cb_fail(c->e, CB_E_INVALID, "plan", "%s: topology without children", id);

    if (strcmp(type, "StackedTopology") == 0 || strcmp(type, "SequentialTopology") == 0)
        return compile_chain(c, children, id, in, out, depth);
    if (strcmp(type, "ResidualTopology") == 0) {
        int f;
        CB_TRY(compile_chain(c, children, id, in, &f, depth));
        if (p->slots[f].width != p->slots[in].width)
            return cb_fail(c->e, CB_E_INVALID, "plan", "%s: residual body returns width %d, takes %d", id,
                           p->slots[f].width, p->slots[in].width);
        return add_op(c, id, type, in, f, out);
    }
    if (strcmp(type, "NestedTopology") == 0) {
        int repeat = (int)json_integer_value(json_object_get(node, "repeat"));
        int cur = in;
        const int outer = !c->in_segment; /* the outermost repeats are the blocks */
        for (int r = 0; r < repeat; r++) {
            char idx[16], rid[CB_PARAM_NAME_MAX];
            snprintf(idx, sizeof idx, "%d", r);
            join_id(rid, sizeof rid, id, idx);
            const int first = p->n_ops;
            c->in_segment = 1;
            int rc = compile_chain(c, children, rid, cur, &cur, depth);
            c->in_segment = !outer;
            CB_TRY(rc);
            if (outer && p->n_ops > first) CB_TRY(new_segment(c, first, p->n_ops - 1));
        }
        *out = cur;
        return CB_OK;
    }
    if (strcmp(type, "ParallelTopology") == 0 || strcmp(type, "BranchingTopology") == 0) {
        int n = (int)json_array_size(children), width = 0;
        if (n > CB_OP_MAX_INPUTS)
            return cb_fail(c->e, CB_E_INVALID, "plan", "%s: %d branches, at most %d are supported", id, n,
                           CB_OP_MAX_INPUTS);
        int *outs = malloc((size_t)n * sizeof *outs);
        if (!outs) return cb_fail(c->e, CB_E_RUNTIME, "", "out of memory");
        int rc = CB_OK;
        for (int i = 0; i < n && rc == CB_OK; i++) {
            const json_t *child = json_array_get(children, (size_t)i);
            const char *name = json_string_value(json_object_get(child, "name"));
            char cid[CB_PARAM_NAME_MAX];
            join_id(cid, sizeof cid, id, name ? name : "");
            rc = compile_node(c, child, cid, in, &outs[i], depth + 1);
            if (rc == CB_OK) width += p->slots[outs[i]].width;
        }
        int concat = type[0] == 'B';
        const char *combine = json_string_value(json_object_get(node, "combine"));
        cb_op *op;
        if (rc == CB_OK) rc = new_op(c, concat ? CB_OP_CONCAT : CB_OP_COMBINE, id, type, outs, n, &op);
        if (rc == CB_OK) {
            op->mean = combine && strcmp(combine, "mean") == 0;
            if (!concat) {
                width = p->slots[outs[0]].width;
                for (int i = 1; i < n; i++)
                    if (p->slots[outs[i]].width != width)
                        rc = cb_fail(c->e, CB_E_INVALID, "plan", "%s: parallel outputs differ in width", id);
            }
        }
        free(outs);
        int o;
        if (rc == CB_OK) rc = new_slot(c, width, &o);
        if (rc == CB_OK) p->ops[p->n_ops - 1].out = o, *out = o;
        return rc;
    }
    if (strcmp(type, "CyclicTopology") == 0 || strcmp(type, "RecurrentTopology") == 0) {
        int recurrent = type[0] == 'R';
        const json_t *nv = json_object_get(node, recurrent ? "steps" : "cycles");
        int n = json_is_integer(nv) ? (int)json_integer_value(nv) : 2;
        char saved_suffix[sizeof c->suffix];
        memcpy(saved_suffix, c->suffix, sizeof saved_suffix);
        int cur = in;
        for (int s = 0; s < n; s++) {
            /* the same tensors every time; later passes get distinct op ids for tracing */
            if (s > 0) snprintf(c->suffix, sizeof c->suffix, "%s#%d", saved_suffix, s);
            int f;
            CB_TRY(compile_chain(c, children, id, cur, &f, depth));
            if (p->slots[f].width != p->slots[in].width)
                return cb_fail(c->e, CB_E_INVALID, "plan", "%s: body returns width %d, takes %d", id,
                               p->slots[f].width, p->slots[in].width);
            if (recurrent) CB_TRY(add_op(c, id, type, f, in, &cur));
            else cur = f;
        }
        memcpy(c->suffix, saved_suffix, sizeof saved_suffix);
        *out = cur;
        return CB_OK;
    }
    return cb_fail(c->e, CB_E_INVALID, "plan", "%s: unknown topology type \"%s\"", id, type);
}

static void saved_sizes(cb_program *prog) {
    for (int s = 0; s < prog->n_segments; s++) {
        cb_segment *g = &prog->segments[s];
        g->saved_elems = 0;
        for (int i = g->first; i <= g->last; i++) g->saved_elems += prog->ops[i].n_saved;
    }
}

int cb_program_init(cb_program *prog, const json_t *plan, const cb_param_table *params, int B, int T,
                    cb_error *e) {
    memset(prog, 0, sizeof *prog);
    prog->B = B;
    prog->T = T;
    ctx c = {.prog = prog, .params = params, .e = e};
    const json_t *model = json_object_get(plan, "model");
    const json_t *emb = json_object_get(model, "embedder");
    const json_t *head = json_object_get(model, "head");
    const json_t *topo = json_object_get(model, "topology");
    int rc = CB_OK;
    if (!json_is_object(emb) || !json_is_object(topo))
        rc = cb_fail(e, CB_E_INVALID, "plan", "the plan's model has no embedder or topology");
    prog->vocab_size = (int)json_integer_value(json_object_get(emb, "vocab_size"));
    prog->d_model = (int)json_integer_value(json_object_get(emb, "d_model"));
    if (rc == CB_OK && (prog->vocab_size <= 0 || prog->d_model <= 0))
        rc = cb_fail(e, CB_E_INVALID, "plan", "embedder without vocab_size or d_model");
    if (rc == CB_OK && (B <= 0 || T <= 0))
        rc = cb_fail(e, CB_E_USAGE, "", "batch shape (%d, %d) is empty", B, T);
    const json_t *max_seq = json_object_get(emb, "max_seq_len");
    if (rc == CB_OK && json_is_integer(max_seq) && json_integer_value(max_seq) > 0 &&
        T > json_integer_value(max_seq))
        rc = cb_fail(e, CB_E_USAGE, "", "sequence length %d exceeds the model's max_seq_len %lld", T,
                     (long long)json_integer_value(max_seq));
    int x = -1;
    cb_op *op;
    if (rc == CB_OK) rc = new_op(&c, CB_OP_EMBED, "embed", "embedder", NULL, 0, &op);
    if (rc == CB_OK) rc = param(&c, "embed", "tok", 1, &prog->ops[0].p[CB_P_WEIGHT]);
    if (rc == CB_OK) rc = param(&c, "embed", "pos", 0, &prog->ops[0].p[CB_P_POS]);
    if (rc == CB_OK) rc = new_slot(&c, prog->d_model, &x);
    if (rc == CB_OK) prog->ops[0].out = x, prog->ops[0].d_out = prog->d_model;
    double emb_drop = json_number_value(json_object_get(emb, "dropout"));
    if (rc == CB_OK && emb_drop > 0) {
        rc = new_op(&c, CB_OP_DROPOUT, "embed.dropout", "DropoutLayer", &x, 1, &op);
        if (rc == CB_OK) {
            prog->ops[prog->n_ops - 1].p_drop = (float)emb_drop;
            rc = new_slot(&c, prog->d_model, &x);
            prog->ops[prog->n_ops - 1].out = x;
        }
    }
    if (rc == CB_OK) rc = compile_node(&c, topo, "", x, &x, 0);
    if (rc == CB_OK) rc = new_op(&c, CB_OP_HEAD, "head", "head", &x, 1, &op);
    if (rc == CB_OK) {
        int tied = json_is_true(json_object_get(head, "tied")) ||
                   json_is_true(json_object_get(model, "tie_embeddings"));
        cb_op *h = &prog->ops[prog->n_ops - 1];
        h->d_in = prog->slots[x].width;
        h->d_out = prog->vocab_size;
        if (tied) {
            h->p[CB_P_WEIGHT] = prog->ops[0].p[CB_P_WEIGHT];
            if (h->d_in != prog->d_model)
                rc = cb_fail(e, CB_E_INVALID, "plan", "tied head needs width %d, topology gives %d",
                             prog->d_model, h->d_in);
        } else {
            rc = param(&c, "head", "weight", 1, &h->p[CB_P_WEIGHT]);
        }
        if (rc == CB_OK) rc = param(&c, "head", "bias", 0, &prog->ops[prog->n_ops - 1].p[CB_P_BIAS]);
    }
    if (rc == CB_OK) rc = new_slot(&c, prog->vocab_size, &prog->logits_slot);
    if (rc == CB_OK) prog->ops[prog->n_ops - 1].out = prog->logits_slot;
    if (rc == CB_OK) {
        prog->saved_full_elems = prog->saved_elems;
        saved_sizes(prog);
    }
    if (rc != CB_OK) cb_program_free(prog);
    return rc;
}

size_t cb_program_activation_elems(const cb_program *prog) {
    return 2 * prog->slot_elems + prog->saved_elems;
}

void cb_program_recompute(cb_program *prog, size_t budget_elems) {
    if (prog->n_recompute) return; /* laid out already */
    /* choose: blocks in order until the rest fits (a checkpointed block costs nothing of
     * its own, the shared region the largest checkpointed block's saved values) */
    size_t kept = prog->saved_elems, shared = 0;
    int n = 0;
    while (n < prog->n_segments &&
           (budget_elems == 0 || 2 * prog->slot_elems + kept + shared > budget_elems)) {
        const cb_segment *g = &prog->segments[n];
        kept -= g->saved_elems;
        if (g->saved_elems > shared) shared = g->saved_elems;
        n++;
    }
    for (int s = 0; s < prog->n_segments; s++) prog->segments[s].recompute = s < n;
    /* lay out: ops that keep their saved values packed in order, then the shared region */
    size_t at = 0;
    for (int i = 0; i < prog->n_ops; i++) {
        int s = prog->ops[i].segment;
        if (s >= 0 && prog->segments[s].recompute) continue;
        prog->ops[i].saved = at;
        at += prog->ops[i].n_saved;
    }
    for (int s = 0; s < n; s++) {
        size_t off = at;
        for (int i = prog->segments[s].first; i <= prog->segments[s].last; i++) {
            prog->ops[i].saved = off;
            off += prog->ops[i].n_saved;
        }
    }
    prog->saved_elems = at + shared;
    prog->n_recompute = n;
}

void cb_program_free(cb_program *prog) {
    free(prog->segments);
    free(prog->ops);
    free(prog->inputs);
    free(prog->slots);
    memset(prog, 0, sizeof *prog);
}

void cb_program_forward_only(cb_program *prog) { cb_program_recompute(prog, 0); }
