/* layer.c: what each layer type of the plan is: its config with defaults filled, its
 * width checks, and its tensors (PyTorch order: a Linear weight is [out, in]).
 * AttentionLayer lives in attention.c. */
#include "plan/walk.h"

#include <string.h>
#include "plan/count.h"

static const char *const layer_types[] = {
    "AttentionLayer", "RMSNormLayer", "LayerNormLayer", "SwiGLULayer",
    "MLPLayer", "LinearLayer", "DropoutLayer", "RoPE", NULL,
};

int cb_plan_is_layer(const char *type) {
    for (int i = 0; layer_types[i]; i++)
        if (strcmp(type, layer_types[i]) == 0) return 1;
    return 0;
}

json_t *cb_plan_rope_scaling(cb_plan_walk *w, const json_t *obj, const char *path) {
    static const char *const types[] = {"llama3", NULL};
    const json_t *v = json_object_get(obj, "rope_scaling");
    if (!v || json_is_null(v)) return json_null();
    if (!json_is_object(v)) {
        cb_plan_errf(w, obj, "rope_scaling", path, "must be null or a mapping");
        return json_null();
    }
    char sub[1024];
    snprintf(sub, sizeof sub, "%s.rope_scaling", path);
    json_t *cfg = json_object();
    const char *type = cb_plan_str(w, v, "type", NULL, types, sub);
    if (!json_object_get(v, "type")) cb_plan_errf(w, v, "type", sub, "missing (llama3)");
    json_object_set_new(cfg, "type", json_string(type ? type : "llama3"));
    /* Llama 3.1's values unless given (the schema's defaults too) */
    static const struct { const char *key; double def; } factors[] = {
        {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0}};
    for (int i = 0; i < 3; i++)
        json_object_set_new(cfg, factors[i].key, json_real(cb_plan_num(w, v, factors[i].key, factors[i].def, 1e-9, 1e9, sub)));
    int64_t orig = cb_plan_int(w, v, "original_max_position_embeddings", 8192, sub);
    json_object_set_new(cfg, "original_max_position_embeddings", json_integer(orig));
    return cfg;
}

/* RMSNorm and LayerNorm: weight [d] ones (+ bias [d] zeros for LayerNorm with bias). */
static int64_t norm_layer(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                          int layer_norm, json_t *cfg, json_t *tensors, int64_t *params, int *ovf) {
    int64_t d = cb_plan_width_in(w, src, "d_model", d_in, path);
    json_object_set_new(cfg, "d_model", json_integer(d));
    json_object_set_new(cfg, "eps", json_real(cb_plan_num(w, src, "eps", 1e-5, 1e-30, 1.0, path)));
    int bias = layer_norm && cb_plan_bool(w, src, "bias", 1, path);
    if (layer_norm) json_object_set_new(cfg, "bias", json_boolean(bias));
    if (d == CB_PLAN_UNKNOWN) { *params = CB_PLAN_UNKNOWN; return d; }
    cb_plan_tensor(tensors, "weight", d, 0, "ones", 0, params, ovf);
    if (bias) cb_plan_tensor(tensors, "bias", d, 0, "zeros", 0, params, ovf);
    return d;
}

/* SwiGLU: gate/up [F, d], down [d, F]; MLP: fc [F, d], proj [d, F] (GELU, tanh approx).
 * The projection back to d is a residual output: it gets the scaled std. */
static int64_t ffn_layer(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                         int swiglu, json_t *cfg, json_t *tensors, int64_t *params, int *ovf) {
    static const char *const activations[] = {"gelu", NULL};
    int64_t d = cb_plan_width_in(w, src, "d_model", d_in, path);
    int64_t f = cb_plan_int(w, src, "d_ff", 0, path);
    json_object_set_new(cfg, "d_model", json_integer(d));
    json_object_set_new(cfg, "d_ff", json_integer(f));
    if (!swiglu) {
        const char *act = cb_plan_str(w, src, "activation", "gelu", activations, path);
        json_object_set_new(cfg, "activation", json_string(act ? act : "gelu"));
    }
    int bias = cb_plan_bool(w, src, "bias", !swiglu, path);
    json_object_set_new(cfg, "bias", json_boolean(bias));
    if (d == CB_PLAN_UNKNOWN || f == CB_PLAN_UNKNOWN) { *params = CB_PLAN_UNKNOWN; return d; }
    if (swiglu) {
        cb_plan_tensor(tensors, "gate.weight", f, d, "normal", w->init_std, params, ovf);
        if (bias) cb_plan_tensor(tensors, "gate.bias", f, 0, "zeros", 0, params, ovf);
        cb_plan_tensor(tensors, "up.weight", f, d, "normal", w->init_std, params, ovf);
        if (bias) cb_plan_tensor(tensors, "up.bias", f, 0, "zeros", 0, params, ovf);
        cb_plan_tensor(tensors, "down.weight", d, f, "normal", w->residual_std, params, ovf);
        if (bias) cb_plan_tensor(tensors, "down.bias", d, 0, "zeros", 0, params, ovf);
    } else {
        cb_plan_tensor(tensors, "fc.weight", f, d, "normal", w->init_std, params, ovf);
        if (bias) cb_plan_tensor(tensors, "fc.bias", f, 0, "zeros", 0, params, ovf);
        cb_plan_tensor(tensors, "proj.weight", d, f, "normal", w->residual_std, params, ovf);
        if (bias) cb_plan_tensor(tensors, "proj.bias", d, 0, "zeros", 0, params, ovf);
    }
    return d;
}

static int64_t linear_layer(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                            json_t *cfg, json_t *tensors, int64_t *params, int *ovf) {
    int64_t in = cb_plan_width_in(w, src, "d_in", d_in, path);
    int64_t out = cb_plan_int(w, src, "d_out", 0, path);
    int bias = cb_plan_bool(w, src, "bias", 1, path);
    json_object_set_new(cfg, "d_in", json_integer(in));
    json_object_set_new(cfg, "d_out", json_integer(out));
    json_object_set_new(cfg, "bias", json_boolean(bias));
    if (in == CB_PLAN_UNKNOWN || out == CB_PLAN_UNKNOWN) { *params = CB_PLAN_UNKNOWN; return out; }
    cb_plan_tensor(tensors, "weight", out, in, "normal", w->init_std, params, ovf);
    if (bias) cb_plan_tensor(tensors, "bias", out, 0, "zeros", 0, params, ovf);
    return out;
}

/* RoPE as its own layer: no weights; rotates n_heads heads of d_model / n_heads dims
 * in pairs, so the per-head dim must be even. */
static int64_t rope_layer(cb_plan_walk *w, const json_t *src, const char *path, int64_t d_in,
                          json_t *cfg) {
    int64_t d = cb_plan_width_in(w, src, "d_model", d_in, path);
    int64_t h = cb_plan_int(w, src, "n_heads", 1, path);
    json_object_set_new(cfg, "d_model", json_integer(d));
    json_object_set_new(cfg, "n_heads", json_integer(h));
    json_object_set_new(cfg, "rope_theta", json_real(cb_plan_num(w, src, "rope_theta", 10000, 1e-9, 1e30, path)));
    json_object_set_new(cfg, "rope_scaling", cb_plan_rope_scaling(w, src, path));
    if (d != CB_PLAN_UNKNOWN && h != CB_PLAN_UNKNOWN) {
        if (d % h)
            cb_plan_errf(w, src, "n_heads", path, "%lld does not divide d_model %lld", (long long)h, (long long)d);
        else if ((d / h) % 2)
            cb_plan_errf(w, src, "n_heads", path,
                         "per-head dim %lld (d_model %lld / n_heads %lld) is odd; RoPE rotates pairs of dims",
                         (long long)(d / h), (long long)d, (long long)h);
    }
    return d;
}

int64_t cb_plan_layer(cb_plan_walk *w, const json_t *src, const char *type, const char *path,
                      int64_t d_in, json_t *node, int64_t *params) {
    if (strcmp(type, "AttentionLayer") == 0) return cb_plan_attention(w, src, path, d_in, node, params);
    json_t *cfg = json_object(), *tensors = json_array();
    json_object_set_new(node, "config", cfg);
    json_object_set_new(node, "tensors", tensors);
    int ovf = 0;
    int64_t d_out;
    *params = 0;
    if (strcmp(type, "RMSNormLayer") == 0 || strcmp(type, "LayerNormLayer") == 0)
        d_out = norm_layer(w, src, path, d_in, type[0] == 'L', cfg, tensors, params, &ovf);
    else if (strcmp(type, "SwiGLULayer") == 0 || strcmp(type, "MLPLayer") == 0)
        d_out = ffn_layer(w, src, path, d_in, type[0] == 'S', cfg, tensors, params, &ovf);
    else if (strcmp(type, "LinearLayer") == 0)
        d_out = linear_layer(w, src, path, d_in, cfg, tensors, params, &ovf);
    else if (strcmp(type, "DropoutLayer") == 0) {
        json_object_set_new(cfg, "p", json_real(cb_plan_num(w, src, "p", 0.1, 0.0, 1.0, path)));
        d_out = d_in;
    } else
        d_out = rope_layer(w, src, path, d_in, cfg);
    if (ovf) {
        cb_plan_errf(w, src, NULL, path, "parameter count overflows a 64-bit integer");
        *params = CB_PLAN_UNKNOWN;
    }
    return d_out;
}
