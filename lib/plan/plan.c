/* plan.c: cb_plan_build, the lowered manifest's model made into the plan document:
 * embedder, topology tree, LM head, totals, plus the runs carried through. */
#include "plan/plan.h"

#include <math.h>
#include <string.h>
#include "core/json_doc.h"
#include "plan/count.h"
#include "plan/walk.h"

static json_t *count_json(int64_t v) { return v == CB_PLAN_UNKNOWN ? json_null() : json_integer(v); }
static json_t *copy_or(const json_t *v, json_t *absent) {
    if (!v) return absent;
    json_decref(absent);
    return json_deep_copy(v);
}

/* embed.tok [V, d] (+ embed.pos [max_seq_len, d] for token_position). */
static json_t *embedder(cb_plan_walk *w, const json_t *model, int64_t *vocab, int64_t *d, int64_t *params) {
    static const char *const types[] = {"token", "token_position", NULL};
    const char *path = "model.embedder";
    json_t *e = json_object();
    *vocab = *d = *params = CB_PLAN_UNKNOWN;
    const json_t *src = json_object_get(model, "embedder");
    json_object_set_new(e, "id", json_string("embed"));
    if (!json_is_object(src)) {
        cb_plan_errf(w, model, "embedder", "model", "%s",
                     src ? "must be a mapping with type, vocab_size and d_model"
                         : "missing (a mapping with type, vocab_size and d_model)");
        return e;
    }
    const char *type = cb_plan_str(w, src, "type", NULL, types, path);
    if (!json_object_get(src, "type")) cb_plan_errf(w, src, "type", path, "missing (token or token_position)");
    int positions = type && strcmp(type, "token_position") == 0;
    *vocab = cb_plan_int(w, src, "vocab_size", 0, path);
    *d = cb_plan_int(w, src, "d_model", 0, path);
    int64_t max_seq_len = positions || json_object_get(src, "max_seq_len")
                              ? cb_plan_int(w, src, "max_seq_len", 0, path) : 0;
    json_object_set_new(e, "type", type ? json_string(type) : json_null());
    json_object_set_new(e, "vocab_size", count_json(*vocab));
    json_object_set_new(e, "d_model", count_json(*d));
    if (max_seq_len) json_object_set_new(e, "max_seq_len", count_json(max_seq_len));
    json_object_set_new(e, "dropout", json_real(cb_plan_num(w, src, "dropout", 0, 0, 1, path)));
    json_t *tensors = json_array();
    int ovf = 0;
    if (*vocab != CB_PLAN_UNKNOWN && *d != CB_PLAN_UNKNOWN && max_seq_len != CB_PLAN_UNKNOWN) {
        *params = 0;
        cb_plan_tensor(tensors, "embed.tok", *vocab, *d, "normal", w->init_std, params, &ovf);
        if (positions) cb_plan_tensor(tensors, "embed.pos", max_seq_len, *d, "normal", w->init_std, params, &ovf);
        if (ovf) {
            cb_plan_errf(w, src, NULL, path, "parameter count overflows a 64-bit integer");
            *params = CB_PLAN_UNKNOWN;
        }
    }
    json_object_set_new(e, "params", count_json(*params));
    json_object_set_new(e, "tensors", tensors);
    json_object_set_new(e, "loc", json_string(cb_loc(src, NULL)));
    return e;
}

/* head.weight [V, d_last] unless tied to embed.tok; head.bias [V] with bias. */
static json_t *head(cb_plan_walk *w, const json_t *model, int tied, int64_t vocab, int64_t d_embed,
                    int64_t d_last, int64_t *params) {
    const char *path = "model.head";
    const json_t *src = json_object_get(model, "head");
    json_t *h = json_object();
    if (src && !json_is_null(src) && !json_is_object(src)) {
        cb_plan_errf(w, model, "head", "model", "must be a mapping");
        src = NULL;
    }
    int bias = src ? cb_plan_bool(w, src, "bias", 0, path) : 0;
    if (src && json_object_get(src, "vocab_size")) {
        int64_t v = cb_plan_int(w, src, "vocab_size", 0, path);
        if (v != CB_PLAN_UNKNOWN && vocab != CB_PLAN_UNKNOWN && v != vocab)
            cb_plan_errf(w, src, "vocab_size", path, "%lld differs from the embedder's vocab_size %lld",
                         (long long)v, (long long)vocab);
    }
    if (tied && d_last != CB_PLAN_UNKNOWN && d_embed != CB_PLAN_UNKNOWN && d_last != d_embed)
        cb_plan_errf(w, model, "tie_embeddings", "model",
                     "true needs the topology's output width %lld to equal the embedder's d_model %lld",
                     (long long)d_last, (long long)d_embed);
    json_object_set_new(h, "id", json_string("head"));
    json_object_set_new(h, "d_in", count_json(d_last));
    json_object_set_new(h, "vocab_size", count_json(vocab));
    json_object_set_new(h, "tied", json_boolean(tied));
    json_object_set_new(h, "bias", json_boolean(bias));
    json_t *tensors = json_array();
    int ovf = 0;
    *params = CB_PLAN_UNKNOWN;
    if (vocab != CB_PLAN_UNKNOWN && d_last != CB_PLAN_UNKNOWN) {
        *params = 0;
        if (!tied) cb_plan_tensor(tensors, "head.weight", vocab, d_last, "normal", w->init_std, params, &ovf);
        if (bias) cb_plan_tensor(tensors, "head.bias", vocab, 0, "zeros", 0, params, &ovf);
        if (ovf) {
            cb_plan_errf(w, src ? src : model, NULL, path, "parameter count overflows a 64-bit integer");
            *params = CB_PLAN_UNKNOWN;
        }
    }
    json_object_set_new(h, "params", count_json(*params));
    json_object_set_new(h, "tensors", tensors);
    json_object_set_new(h, "loc", json_string(cb_loc(src ? src : model, NULL)));
    return h;
}

static json_t *totals(cb_plan_walk *w, const json_t *model, int64_t p_embed, int64_t p_topo, int64_t p_head) {
    json_t *t = json_object();
    int ovf = 0;
    int64_t all = CB_PLAN_UNKNOWN;
    if (p_embed != CB_PLAN_UNKNOWN && p_topo != CB_PLAN_UNKNOWN && p_head != CB_PLAN_UNKNOWN)
        all = cb_count_add(cb_count_add(p_embed, p_topo, &ovf), p_head, &ovf);
    if (ovf) {
        cb_plan_errf(w, model, NULL, "model", "parameter or KV-cache total overflows a 64-bit integer");
        all = CB_PLAN_UNKNOWN;
    }
    json_object_set_new(t, "params", count_json(all));
    json_object_set_new(t, "params_embedding", count_json(p_embed));
    json_object_set_new(t, "params_head", count_json(p_head));
    json_object_set_new(t, "params_topology", count_json(p_topo));
    json_object_set_new(t, "kv_cache_elems_per_token", json_integer(w->kv_elems_per_token));
    json_object_set_new(t, "attention_layers", json_integer(w->attention_layers));
    return t;
}

json_t *cb_plan_model(cb_plan_walk *w, const json_t *model, json_t **totals_out) {
    static const char *const model_types[] = {"TransformerModel", NULL};
    const char *path = "model";
    json_t *out = json_object();
    const char *type = cb_plan_str(w, model, "type", "TransformerModel", model_types, path);
    int tied = cb_plan_bool(w, model, "tie_embeddings", 0, path);
    w->init_std = cb_plan_num(w, model, "init_std", 0.02, 0, 10, path);
    int scaled = cb_plan_bool(w, model, "scaled_residual_init", 1, path);
    const json_t *topo = json_object_get(model, "topology");
    w->attention_layers = cb_plan_count_attention(topo, 0);
    /* GPT-2's scaled init: residual outputs get std / sqrt(2 * attention layers) */
    w->residual_std = scaled && w->attention_layers > 0
                          ? w->init_std / sqrt(2.0 * (double)w->attention_layers) : w->init_std;

    int64_t vocab, d, p_embed, p_topo = CB_PLAN_UNKNOWN, p_head;
    json_t *emb = embedder(w, model, &vocab, &d, &p_embed);
    json_t *tnode = NULL;
    int64_t d_last = CB_PLAN_UNKNOWN;
    if (!json_is_object(topo)) {
        cb_plan_errf(w, model, "topology", path, "%s", topo ? "must be a topology node (a mapping)" : "missing (a topology node)");
    } else {
        int64_t d_first = cb_plan_first_width(topo, 0);
        if (d_first != CB_PLAN_UNKNOWN && d != CB_PLAN_UNKNOWN && d_first != d)
            cb_plan_errf(w, json_object_get(model, "embedder"), "d_model", "model.embedder",
                         "%lld does not match the topology's input width %lld",
                         (long long)d, (long long)d_first);
        d_last = cb_plan_node(w, topo, "model.topology", "", d_first != CB_PLAN_UNKNOWN ? d_first : d,
                              0, &tnode, &p_topo);
    }
    json_t *hd = head(w, model, tied, vocab, d, d_last, &p_head);

    json_object_set_new(out, "type", json_string(type ? type : "TransformerModel"));
    json_object_set_new(out, "vocab_size", count_json(vocab));
    json_object_set_new(out, "d_model", count_json(d));
    json_object_set_new(out, "tie_embeddings", json_boolean(tied));
    json_object_set_new(out, "init_std", json_real(w->init_std));
    json_object_set_new(out, "scaled_residual_init", json_boolean(scaled));
    json_object_set_new(out, "embedder", emb);
    json_object_set_new(out, "topology", tnode ? tnode : json_null());
    json_object_set_new(out, "head", hd);
    *totals_out = totals(w, model, p_embed, p_topo, p_head);
    return out;
}

void cb_plan_doc_error(const json_t *lowered_doc, cb_diags *d) {
    const char *kind = json_string_value(json_object_get(lowered_doc, "kind"));
    if (!kind || strcmp(kind, "lowered") != 0)
        cb_diags_addf(d, CB_E_INVALID, "", "expected a document of kind \"lowered\", got %s%s%s",
                      kind ? "\"" : "", kind ? kind : "none", kind ? "\"" : "");
    else
        cb_diags_addf(d, CB_E_INVALID, "", "manifest: missing (a lowered document carries the manifest mapping)");
}

int cb_plan_build(const json_t *lowered_doc, json_t **plan_doc, cb_diags *d) {
    *plan_doc = NULL;
    int errors_before = d->n + d->n_dropped;
    cb_plan_walk w = {.d = d, .init_std = 0.02, .residual_std = 0.02, .applications = 1};
    const json_t *m = json_object_get(lowered_doc, "manifest");
    const char *kind = json_string_value(json_object_get(lowered_doc, "kind"));
    if (!kind || strcmp(kind, "lowered") != 0 || !json_is_object(m)) {
        cb_plan_doc_error(lowered_doc, d);
        return CB_E_INVALID;
    }
    const json_t *model = json_object_get(m, "model");
    if (!json_is_object(model)) {
        cb_plan_errf(&w, m, "model", "model", "missing (a mapping with embedder and topology)");
        return CB_E_INVALID;
    }
    json_t *plan = cb_doc_new("plan");
    const json_t *v;
    json_object_set_new(plan, "source", copy_or(json_object_get(lowered_doc, "source"), json_null()));
    json_object_set_new(plan, "name", copy_or(json_object_get(m, "name"), json_null()));
    json_object_set_new(plan, "notes", copy_or(json_object_get(m, "notes"), json_null()));
    json_t *tot = NULL;
    json_object_set_new(plan, "model", cb_plan_model(&w, model, &tot));
    json_object_set_new(plan, "totals", tot);
    json_object_set_new(plan, "groups", copy_or(json_object_get(m, "groups"), json_array()));
    /* the students of runs with train.student.overrides (plan/student.c) */
    json_t *students = cb_plan_students(m, json_object_get(plan, "model"), d);
    if (json_array_size(students)) json_object_set_new(plan, "students", students);
    else json_decref(students);
    if ((v = json_object_get(m, "paper"))) json_object_set_new(plan, "paper", json_deep_copy(v));
    if ((v = json_object_get(m, "review"))) json_object_set_new(plan, "review", json_deep_copy(v));
    if ((v = json_object_get(m, "research"))) json_object_set_new(plan, "research", json_deep_copy(v));
    if (d->n + d->n_dropped > errors_before) {
        json_decref(plan);
        return CB_E_INVALID;
    }
    *plan_doc = plan;
    return CB_OK;
}
