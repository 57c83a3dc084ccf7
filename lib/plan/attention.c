/* attention.c: the AttentionLayer of the plan: modes standard, gqa and decoupled (DBA),
 * their head arithmetic checks, tensors and KV-cache elements per token (docs/DESIGN.md 5). */
#include "plan/walk.h"

#include <string.h>
#include "plan/count.h"

/* Head arithmetic of one attention layer; CB_PLAN_UNKNOWN where an error left it open. */
typedef struct {
    int64_t d, heads, kv_heads;
    int64_t head_dim;                 /* standard/gqa: d / heads */
    int64_t sem_dim, geo_dim, v_dim;  /* decoupled: totals over the query heads */
    int decoupled, rope, bias, gate, gate_dynamic;
} attention_dims;

static int known(int64_t v) { return v != CB_PLAN_UNKNOWN; }

/* Checks shared by every mode; returns 1 when the dims allow listing tensors. */
static int check_heads(cb_plan_walk *w, const json_t *src, const char *path, const char *mode,
                       attention_dims *a) {
    int ok = known(a->d) && known(a->heads) && known(a->kv_heads);
    if (known(a->heads) && known(a->kv_heads)) {
        if (a->heads % a->kv_heads) {
            cb_plan_errf(w, src, "n_kv_heads", path, "%lld does not divide n_heads %lld",
                         (long long)a->kv_heads, (long long)a->heads);
            ok = 0;
        }
        if (strcmp(mode, "gqa") == 0 && a->kv_heads >= a->heads)
            cb_plan_errf(w, src, "mode", path, "gqa needs n_kv_heads < n_heads (n_kv_heads %lld, n_heads %lld)",
                         (long long)a->kv_heads, (long long)a->heads);
        if (strcmp(mode, "standard") == 0 && a->kv_heads != a->heads)
            cb_plan_errf(w, src, "mode", path,
                         "standard needs n_kv_heads == n_heads (n_kv_heads %lld, n_heads %lld); use gqa",
                         (long long)a->kv_heads, (long long)a->heads);
    }
    return ok;
}

/* standard/gqa: heads divide d_model; RoPE rotates pairs, so head_dim is even. */
static int check_standard(cb_plan_walk *w, const json_t *src, const char *path, attention_dims *a) {
    if (!known(a->d) || !known(a->heads)) return 0;
    if (a->d % a->heads) {
        cb_plan_errf(w, src, "n_heads", path, "%lld does not divide d_model %lld",
                     (long long)a->heads, (long long)a->d);
        return 0;
    }
    a->head_dim = a->d / a->heads;
    if (a->rope && a->head_dim % 2)
        cb_plan_errf(w, src, "n_heads", path,
                     "head dim %lld (d_model %lld / n_heads %lld) is odd; RoPE rotates pairs of dims",
                     (long long)a->head_dim, (long long)a->d, (long long)a->heads);
    return 1;
}

/* decoupled: sem_dim, geo_dim, v_dim split evenly over the heads; the geometric
 * (RoPE) part per head is even. */
static int check_decoupled(cb_plan_walk *w, const json_t *src, const char *path, attention_dims *a) {
    if (!known(a->heads)) return 0;
    int ok = 1;
    const char *names[3] = {"sem_dim", "geo_dim", "v_dim"};
    int64_t dims[3] = {a->sem_dim, a->geo_dim, a->v_dim};
    for (int i = 0; i < 3; i++) {
        if (!known(dims[i])) { ok = 0; continue; }
        if (dims[i] % a->heads) {
            cb_plan_errf(w, src, names[i], path, "%lld is not divisible by n_heads %lld",
                         (long long)dims[i], (long long)a->heads);
            ok = 0;
        } else if (i == 1 && a->rope && (dims[i] / a->heads) % 2) {
            cb_plan_errf(w, src, names[i], path,
                         "per-head geometric dim %lld (geo_dim %lld / n_heads %lld) is odd; RoPE rotates pairs of dims",
                         (long long)(dims[i] / a->heads), (long long)dims[i], (long long)a->heads);
        }
    }
    return ok;
}

/* A projection [rows, d] (+ bias [rows]). */
static void projection(cb_plan_walk *w, json_t *tensors, const char *name, int64_t rows,
                       int64_t cols, double std, int bias, int64_t *params, int *ovf) {
    char tname[64];
    snprintf(tname, sizeof tname, "%s.weight", name);
    cb_plan_tensor(tensors, tname, rows, cols, "normal", std, params, ovf);
    if (bias) {
        snprintf(tname, sizeof tname, "%s.bias", name);
        cb_plan_tensor(tensors, tname, rows, 0, "zeros", 0, params, ovf);
    }
}

/* Tensors and KV elements per token. Returns the KV elements. */
static int64_t list_tensors(cb_plan_walk *w, const attention_dims *a, json_t *tensors,
                            int64_t *params, int *ovf) {
    int64_t d = a->d, h = a->heads, hkv = a->kv_heads;
    if (!a->decoupled) {
        int64_t q = cb_count_mul(h, a->head_dim, ovf), kv = cb_count_mul(hkv, a->head_dim, ovf);
        projection(w, tensors, "q", q, d, w->init_std, a->bias, params, ovf);
        projection(w, tensors, "k", kv, d, w->init_std, a->bias, params, ovf);
        projection(w, tensors, "v", kv, d, w->init_std, a->bias, params, ovf);
        projection(w, tensors, "o", d, q, w->residual_std, a->bias, params, ovf);
        return cb_count_mul(2, kv, ovf);
    }
    int64_t k_sem = cb_count_mul(hkv, a->sem_dim / h, ovf);
    int64_t k_geo = cb_count_mul(hkv, a->geo_dim / h, ovf);
    int64_t v = cb_count_mul(hkv, a->v_dim / h, ovf);
    projection(w, tensors, "q_sem", a->sem_dim, d, w->init_std, a->bias, params, ovf);
    projection(w, tensors, "k_sem", k_sem, d, w->init_std, a->bias, params, ovf);
    projection(w, tensors, "q_geo", a->geo_dim, d, w->init_std, a->bias, params, ovf);
    projection(w, tensors, "k_geo", k_geo, d, w->init_std, a->bias, params, ovf);
    projection(w, tensors, "v", v, d, w->init_std, a->bias, params, ovf);
    projection(w, tensors, "o", d, a->v_dim, w->residual_std, a->bias, params, ovf);
    /* the gate starts at sigmoid(0) = 1/2: both paths weighted 1 */
    if (a->gate) cb_plan_tensor(tensors, "gate", h, 0, "zeros", 0, params, ovf);
    if (a->gate_dynamic) cb_plan_tensor(tensors, "gate_proj.weight", h, d, "zeros", 0, params, ovf);
    return cb_count_add(cb_count_add(k_sem, k_geo, ovf), v, ovf);
}

int64_t cb_plan_attention(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                          json_t *node, int64_t *params) {
    static const char *const modes[] = {"standard", "gqa", "decoupled", NULL};
    json_t *cfg = json_object(), *tensors = json_array();
    json_object_set_new(node, "config", cfg);
    json_object_set_new(node, "tensors", tensors);
    attention_dims a = {.head_dim = CB_PLAN_UNKNOWN, .sem_dim = CB_PLAN_UNKNOWN,
                        .geo_dim = CB_PLAN_UNKNOWN, .v_dim = CB_PLAN_UNKNOWN};
    a.d = cb_plan_width_in(w, src, "d_model", d_in, path);
    a.heads = cb_plan_int(w, src, "n_heads", 0, path);
    /* n_kv_heads defaults to n_heads; unknown (not an error) when n_heads is */
    if (json_object_get(src, "n_kv_heads") || known(a.heads))
        a.kv_heads = cb_plan_int(w, src, "n_kv_heads", a.heads, path);
    else
        a.kv_heads = CB_PLAN_UNKNOWN;
    const char *mode_default = a.kv_heads == a.heads ? "standard" : "gqa";
    const char *mode = cb_plan_str(w, src, "mode", mode_default, modes, path);
    a.decoupled = mode && strcmp(mode, "decoupled") == 0;
    json_object_set_new(cfg, "d_model", json_integer(a.d));
    json_object_set_new(cfg, "n_heads", json_integer(a.heads));
    json_object_set_new(cfg, "n_kv_heads", json_integer(a.kv_heads));
    json_object_set_new(cfg, "mode", mode ? json_string(mode) : json_null());
    if (a.decoupled) {
        a.sem_dim = cb_plan_int(w, src, "sem_dim", 0, path);
        a.geo_dim = cb_plan_int(w, src, "geo_dim", 0, path);
        a.v_dim = known(a.d) ? cb_plan_int(w, src, "v_dim", a.d, path)
                             : (json_object_get(src, "v_dim") ? cb_plan_int(w, src, "v_dim", 0, path) : a.d);
        json_object_set_new(cfg, "sem_dim", json_integer(a.sem_dim));
        json_object_set_new(cfg, "geo_dim", json_integer(a.geo_dim));
        json_object_set_new(cfg, "v_dim", json_integer(a.v_dim));
    }
    a.rope = cb_plan_bool(w, src, "rope_enabled", 1, path);
    a.bias = cb_plan_bool(w, src, "bias", 0, path);
    /* the gate exists in decoupled mode only (the schema refuses it elsewhere) */
    a.gate = a.decoupled && cb_plan_bool(w, src, "decoupled_gate", 0, path);
    a.gate_dynamic = a.decoupled && cb_plan_bool(w, src, "decoupled_gate_dynamic", 0, path);
    json_object_set_new(cfg, "rope_enabled", json_boolean(a.rope));
    json_object_set_new(cfg, "rope_theta", json_real(cb_plan_num(w, src, "rope_theta", 10000, 1e-9, 1e30, path)));
    json_object_set_new(cfg, "rope_scaling", cb_plan_rope_scaling(w, src, path));
    json_object_set_new(cfg, "bias", json_boolean(a.bias));
    double dropout = cb_plan_num(w, src, "dropout", 0, 0, 1, path);
    if (dropout != 0)
        cb_plan_errf(w, src, "dropout", path,
                     "%g: attention-probability dropout is not in this build; use a DropoutLayer after the attention", dropout);
    json_object_set_new(cfg, "dropout", json_real(dropout));
    json_object_set_new(cfg, "is_causal", json_boolean(cb_plan_bool(w, src, "is_causal", 1, path)));
    if (a.decoupled) {
        json_object_set_new(cfg, "decoupled_gate", json_boolean(a.gate));
        json_object_set_new(cfg, "decoupled_gate_dynamic", json_boolean(a.gate_dynamic));
    }

    /* errors in the order of the fields: d_model / n_heads, n_kv_heads, mode, sem/geo/v */
    int ok = mode != NULL;
    if (!a.decoupled) ok &= check_standard(w, src, path, &a);
    ok &= check_heads(w, src, path, mode ? mode : "", &a);
    if (a.decoupled) ok &= check_decoupled(w, src, path, &a);
    *params = CB_PLAN_UNKNOWN;
    if (ok) {
        int ovf = 0;
        *params = 0;
        int64_t kv = list_tensors(w, &a, tensors, params, &ovf);
        json_object_set_new(node, "kv_cache_elems_per_token", json_integer(kv));
        int64_t total = cb_count_mul(kv, w->applications, &ovf);
        w->kv_elems_per_token = cb_count_add(w->kv_elems_per_token, total, &ovf);
        if (ovf) {
            cb_plan_errf(w, src, NULL, path, "parameter count overflows a 64-bit integer");
            *params = CB_PLAN_UNKNOWN;
        }
    }
    return a.d;
}
