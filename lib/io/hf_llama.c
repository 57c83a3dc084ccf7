/* hf_llama.c: Llama checkpoints in Hugging Face's layout <-> caramba models. The match
 * is structural: the plan's ops, in execution order, must read as a Llama. */
#include "io/hf_llama.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/atomic_dir.h"
#include "core/atomic_file.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "model/program.h"
#include "plan/validate.h"
#include "tensor/safetensors.h"

int cb_hf_is_dir(const char *dir) {
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/config.json", dir);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* What a Llama plan's ops tell about the model (for names and for config.json). */
typedef struct llama_shape {
    int n_layers, d_model, n_heads, n_kv_heads, d_ff, vocab, tied;
    float eps;
    double rope_theta;
    cb_rope_scaling scaling;
} llama_shape;

static int set_name(char **names, const cb_model *m, size_t offset, const char *fmt, int layer) {
    for (int i = 0; i < m->params.n; i++)
        if (m->params.items[i].offset == offset) {
            char buf[160];
            snprintf(buf, sizeof buf, fmt, layer);
            free(names[i]);
            names[i] = strdup(buf);
            return names[i] ? 0 : -1;
        }
    return -1;
}

static int llama_walk(const cb_model *m, char **names, llama_shape *s, cb_error *e) {
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, 1, 1, e));
    memset(s, 0, sizeof *s);
    s->vocab = prog.vocab_size;
    s->d_model = prog.d_model;
    /* expected sequence: EMBED (RMSNORM ATTENTION ADD RMSNORM SWIGLU ADD)* RMSNORM HEAD */
    static const int block[6] = {CB_OP_RMSNORM, CB_OP_ATTENTION, CB_OP_ADD, CB_OP_RMSNORM, CB_OP_SWIGLU, CB_OP_ADD};
    int rc = CB_OK, i = 1, layer = 0;
    const cb_op *ops = prog.ops;
    if (prog.n_ops < 3 || ops[0].kind != CB_OP_EMBED || ops[0].p[CB_P_POS] != CB_NO_PARAM)
        rc = cb_fail(e, CB_E_INVALID, "plan", "not a Llama-shaped model: it must start with a token embedding");
    if (rc == CB_OK && names) rc = set_name(names, m, ops[0].p[CB_P_WEIGHT], "model.embed_tokens.weight", 0);
    while (rc == CB_OK && i + 6 <= prog.n_ops - 2) {
        for (int k = 0; k < 6 && rc == CB_OK; k++)
            if (ops[i + k].kind != block[k])
                rc = cb_fail(e, CB_E_INVALID, "plan", "not a Llama-shaped model: %s (%s) where block %d expects %s",
                             ops[i + k].id, ops[i + k].type, layer,
                             k == 1 ? "an attention layer" : k == 4 ? "a SwiGLU layer" : k % 3 == 2 ? "a residual add" : "an RMSNorm");
        if (rc != CB_OK) break;
        const cb_op *n1 = &ops[i], *at = &ops[i + 1], *ad1 = &ops[i + 2], *n2 = &ops[i + 3], *mlp = &ops[i + 4];
        const int *in = prog.inputs;
        /* residual wiring: each add sums the block input and the sublayer output */
        int x0 = n1->in_first >= 0 ? in[n1->in_first] : -1;
        if (in[at->in_first] != n1->out || in[ad1->in_first] != x0 || in[ad1->in_first + 1] != at->out ||
            in[n2->in_first] != ad1->out || in[mlp->in_first] != n2->out)
            rc = cb_fail(e, CB_E_INVALID, "plan", "not a Llama-shaped model: block %d is not wired as pre-norm residuals", layer);
        const cb_attention_config *a = &at->attn;
        if (rc == CB_OK && (a->mode == CB_ATTENTION_DECOUPLED || a->bias || !a->rope_enabled || !a->is_causal))
            rc = cb_fail(e, CB_E_INVALID, "plan", "%s: only standard or GQA attention with RoPE and no bias exports as Llama", at->id);
        if (rc == CB_OK && layer > 0 &&
            (a->n_heads != s->n_heads || a->n_kv_heads != s->n_kv_heads || mlp->d_ff != s->d_ff || n1->eps != s->eps))
            rc = cb_fail(e, CB_E_INVALID, "plan", "%s: Llama layers must all have the same shape", at->id);
        if (rc != CB_OK) break;
        s->n_heads = a->n_heads;
        s->n_kv_heads = a->n_kv_heads;
        s->d_ff = mlp->d_ff;
        s->eps = n1->eps;
        s->rope_theta = prog.ropes[at->rope].theta;
        s->scaling = prog.ropes[at->rope].scaling;
        if (names) {
            static const char *attn_names[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
            static const int attn_roles[] = {CB_P_Q_W, CB_P_K_W, CB_P_V_W, CB_P_O_W};
            char fmt[128];
            rc |= set_name(names, m, n1->p[CB_P_WEIGHT], "model.layers.%d.input_layernorm.weight", layer);
            for (int k = 0; k < 4; k++) {
                snprintf(fmt, sizeof fmt, "model.layers.%%d.self_attn.%s.weight", attn_names[k]);
                rc |= set_name(names, m, at->p[attn_roles[k]], fmt, layer);
            }
            rc |= set_name(names, m, n2->p[CB_P_WEIGHT], "model.layers.%d.post_attention_layernorm.weight", layer);
            rc |= set_name(names, m, mlp->p[CB_P_GATE], "model.layers.%d.mlp.gate_proj.weight", layer);
            rc |= set_name(names, m, mlp->p[CB_P_UP], "model.layers.%d.mlp.up_proj.weight", layer);
            rc |= set_name(names, m, mlp->p[CB_P_DOWN], "model.layers.%d.mlp.down_proj.weight", layer);
            if (rc) rc = cb_fail(e, CB_E_INVALID, "plan", "block %d: a tensor is missing from the plan", layer);
        }
        i += 6;
        layer++;
    }
    if (rc == CB_OK && (layer == 0 || i != prog.n_ops - 2 || ops[i].kind != CB_OP_RMSNORM || ops[i + 1].kind != CB_OP_HEAD ||
                        prog.inputs[ops[i].in_first] != ops[i - 1].out || ops[i + 1].p[CB_P_BIAS] != CB_NO_PARAM))
        rc = cb_fail(e, CB_E_INVALID, "plan", "not a Llama-shaped model: it must end with blocks, an RMSNorm and a head without bias");
    if (rc == CB_OK) {
        s->n_layers = layer;
        s->tied = ops[i + 1].p[CB_P_WEIGHT] == ops[0].p[CB_P_WEIGHT];
        if (ops[i].eps != s->eps) rc = cb_fail(e, CB_E_INVALID, "plan", "the final norm's eps differs from the blocks'");
        if (names && rc == CB_OK) {
            rc = set_name(names, m, ops[i].p[CB_P_WEIGHT], "model.norm.weight", 0);
            if (rc == 0 && !s->tied) rc = set_name(names, m, ops[i + 1].p[CB_P_WEIGHT], "lm_head.weight", 0);
            if (rc) rc = cb_fail(e, CB_E_INVALID, "plan", "final norm or head tensor missing from the plan");
        }
    }
    cb_program_free(&prog);
    return rc;
}

void cb_hf_names_free(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

int cb_hf_names(const cb_model *m, char ***out, cb_error *e) {
    *out = NULL;
    char **names = calloc((size_t)m->params.n + 1, sizeof *names);
    if (!names) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    llama_shape s;
    int rc = llama_walk(m, names, &s, e);
    for (int i = 0; rc == CB_OK && i < m->params.n; i++)
        if (!names[i]) rc = cb_fail(e, CB_E_INVALID, "plan", "tensor %s has no Llama counterpart", m->params.items[i].name);
    if (rc != CB_OK) {
        cb_hf_names_free(names, m->params.n);
        return rc;
    }
    *out = names;
    return CB_OK;
}

/* ---- config.json -> plan ---- */

static json_t *layer(const char *type) {
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(type));
    return o;
}

static int cfg_get_int(const json_t *cfg, const char *key, const char *path, int required, json_int_t *out, cb_error *e) {
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required) return cb_fail(e, CB_E_INVALID, path, "config.json: %s is missing", key);
        return CB_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return cb_fail(e, CB_E_INVALID, path, "config.json: %s must be a positive integer", key);
    *out = json_integer_value(v);
    return CB_OK;
}

int cb_hf_plan_from_config(const char *dir, json_t **plan, cb_error *e) {
    *plan = NULL;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text;
    size_t len;
    CB_TRY(cb_read_file(path, 1 << 20, &text, &len, e));
    json_error_t je;
    json_t *cfg = json_loadb(text, len, 0, &je);
    free(text);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        char where[4300];
        snprintf(where, sizeof where, "%s:%d:%d", path, je.line, je.column);
        return cb_fail(e, CB_E_INVALID, where, "config.json is not a JSON object: %s", je.text);
    }
    json_int_t d = 0, L = 0, H = 0, Hkv = 0, F = 0, V = 0, hd = 0;
    int rc = cfg_get_int(cfg, "hidden_size", path, 1, &d, e);
    if (rc == CB_OK) rc = cfg_get_int(cfg, "num_hidden_layers", path, 1, &L, e);
    if (rc == CB_OK) rc = cfg_get_int(cfg, "num_attention_heads", path, 1, &H, e);
    if (rc == CB_OK) rc = cfg_get_int(cfg, "intermediate_size", path, 1, &F, e);
    if (rc == CB_OK) rc = cfg_get_int(cfg, "vocab_size", path, 1, &V, e);
    Hkv = H;
    if (rc == CB_OK) rc = cfg_get_int(cfg, "num_key_value_heads", path, 0, &Hkv, e);
    if (rc == CB_OK) rc = cfg_get_int(cfg, "head_dim", path, 0, &hd, e);
    if (rc == CB_OK && hd && H && hd * H != d)
        rc = cb_fail(e, CB_E_INVALID, path, "config.json: head_dim %lld * heads %lld differs from hidden_size %lld",
                     (long long)hd, (long long)H, (long long)d);
    const char *type = json_string_value(json_object_get(cfg, "model_type"));
    if (rc == CB_OK && type && strcmp(type, "llama") != 0)
        rc = cb_fail(e, CB_E_INVALID, path, "config.json: model_type \"%s\" is not llama", type);
    if (rc == CB_OK && (json_is_true(json_object_get(cfg, "attention_bias")) || json_is_true(json_object_get(cfg, "mlp_bias"))))
        rc = cb_fail(e, CB_E_INVALID, path, "config.json: attention_bias/mlp_bias are not supported");
    const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
    if (rc == CB_OK && act && strcmp(act, "silu") != 0)
        rc = cb_fail(e, CB_E_INVALID, path, "config.json: hidden_act \"%s\" is not silu", act);
    if (rc != CB_OK) {
        json_decref(cfg);
        return rc;
    }
    /* RoPE: rope_theta and rope_scaling (transformers 4, the files Meta ships), or one
     * rope_parameters object holding both (what transformers 5 writes) */
    const json_t *rp = json_object_get(cfg, "rope_parameters");
    const json_t *eps = json_object_get(cfg, "rms_norm_eps"), *theta = json_object_get(cfg, "rope_theta");
    if (!json_is_number(theta) && json_is_object(rp)) theta = json_object_get(rp, "rope_theta");
    json_t *norm = layer("RMSNormLayer");
    json_object_set_new(norm, "d_model", json_integer(d));
    json_object_set_new(norm, "eps", json_real(json_is_number(eps) ? json_number_value(eps) : 1e-6));
    json_t *attn = layer("AttentionLayer");
    json_object_set_new(attn, "d_model", json_integer(d));
    json_object_set_new(attn, "n_heads", json_integer(H));
    json_object_set_new(attn, "n_kv_heads", json_integer(Hkv));
    json_object_set_new(attn, "mode", json_string(Hkv == H ? "standard" : "gqa"));
    json_object_set_new(attn, "rope_theta", json_real(json_is_number(theta) ? json_number_value(theta) : 10000.0));
    const json_t *sc = json_object_get(cfg, "rope_scaling");
    if (!json_is_object(sc) && json_is_object(rp)) sc = rp;
    const char *st = json_is_object(sc) ? json_string_value(json_object_get(sc, "rope_type")) : NULL;
    if (!st && json_is_object(sc)) st = json_string_value(json_object_get(sc, "type"));
    if (json_is_object(sc) && !(st && strcmp(st, "default") == 0)) { /* "default": no scaling */
        json_t *s = json_object();
        json_object_set_new(s, "type", json_string(st ? st : "?"));
        static const char *keys[] = {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"};
        for (int k = 0; k < 4; k++)
            if (json_object_get(sc, keys[k])) json_object_set(s, keys[k], json_object_get(sc, keys[k]));
        json_object_set_new(attn, "rope_scaling", s);
    }
    json_t *mlp = layer("SwiGLULayer");
    json_object_set_new(mlp, "d_model", json_integer(d));
    json_object_set_new(mlp, "d_ff", json_integer(F));
    json_t *res1 = layer("ResidualTopology"), *res2 = layer("ResidualTopology");
    json_object_set_new(res1, "layers", json_pack("[OO]", norm, attn));
    json_object_set_new(res2, "layers", json_pack("[OO]", norm, mlp));
    json_t *blocks = layer("NestedTopology");
    json_object_set_new(blocks, "repeat", json_integer(L));
    json_object_set_new(blocks, "layers", json_pack("[oo]", res1, res2));
    json_t *topo = layer("StackedTopology");
    json_object_set_new(topo, "layers", json_pack("[oO]", blocks, norm));
    json_t *emb = json_pack("{s:s, s:I, s:I}", "type", "token", "vocab_size", (json_int_t)V, "d_model", (json_int_t)d);
    json_t *model = json_pack("{s:s, s:b, s:o, s:o}", "type", "TransformerModel", "tie_embeddings",
                              json_is_true(json_object_get(cfg, "tie_word_embeddings")), "embedder", emb, "topology", topo);
    json_t *body = json_pack("{s:i, s:s, s:o}", "version", 1, "name", "hf-llama", "model", model);
    json_t *doc = cb_doc_new("manifest");
    json_object_set_new(doc, "source", json_string(path));
    json_object_set_new(doc, "manifest", body);
    json_decref(norm);
    json_decref(attn);
    json_decref(mlp);
    json_decref(cfg);
    json_t *lowered = NULL;
    cb_diags diags;
    cb_diags_init(&diags);
    rc = cb_lower(doc, &lowered, &diags);
    if (rc == CB_OK) rc = cb_validate(lowered, plan, &diags);
    if (rc != CB_OK) {
        if (diags.n) {
            *e = diags.items[0];
            snprintf(e->where, sizeof e->where, "%.500s", path);
        } else {
            cb_fail(e, CB_E_INVALID, path, "config.json does not describe a valid model");
        }
        rc = CB_E_INVALID;
    }
    cb_diags_free(&diags);
    json_decref(lowered);
    json_decref(doc);
    return rc;
}

/* ---- loading weights ---- */

typedef struct shard_set {
    int n;
    char files[64][256];
    cb_safetensors st[64];
} shard_set;

static int ignorable(const char *name) { return strstr(name, "rotary_emb.inv_freq") != NULL; }

int cb_hf_load(cb_model *m, const char *dir, cb_error *e) {
    char **names;
    CB_TRY(cb_hf_names(m, &names, e));
    char path[4200];
    shard_set *ss = calloc(1, sizeof *ss);
    json_t *index = NULL;
    int rc = ss ? CB_OK : cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat stt;
    const json_t *weight_map = NULL;
    if (rc == CB_OK && stat(path, &stt) == 0) {
        char *text;
        size_t len;
        rc = cb_read_file(path, 64 << 20, &text, &len, e);
        if (rc == CB_OK) {
            json_error_t je;
            index = json_loadb(text, len, 0, &je);
            free(text);
            weight_map = json_object_get(index, "weight_map");
            if (!json_is_object(weight_map)) rc = cb_fail(e, CB_E_INVALID, path, "no \"weight_map\" object");
        }
        const char *key;
        json_t *val;
        if (rc == CB_OK) json_object_foreach((json_t *)weight_map, key, val) {
            const char *file = json_string_value(val);
            if (!file || strchr(file, '/') || strlen(file) >= sizeof ss->files[0]) {
                rc = cb_fail(e, CB_E_INVALID, path, "weight_map[%s]: bad shard name", key);
                break;
            }
            int found = 0;
            for (int k = 0; k < ss->n; k++) found |= strcmp(ss->files[k], file) == 0;
            if (found) continue;
            if (ss->n == 64) { rc = cb_fail(e, CB_E_INVALID, path, "more than 64 shards"); break; }
            snprintf(ss->files[ss->n++], sizeof ss->files[0], "%s", file);
        }
    } else if (rc == CB_OK) {
        snprintf(ss->files[ss->n++], sizeof ss->files[0], "model.safetensors");
    }
    int opened = 0;
    for (int k = 0; rc == CB_OK && k < ss->n; k++, opened++) {
        char f[4500];
        snprintf(f, sizeof f, "%s/%s", dir, ss->files[k]);
        if (stat(f, &stt) != 0) {
            rc = cb_fail(e, CB_E_INVALID, f, "shard is missing from the checkpoint");
            break;
        }
        rc = cb_safetensors_open(&ss->st[k], f, e);
        if (rc != CB_OK) break;
    }
    for (int i = 0; rc == CB_OK && i < m->params.n; i++) {
        const cb_param *p = &m->params.items[i];
        int k = 0;
        while (k < ss->n && !cb_safetensors_find(&ss->st[k], names[i])) k++;
        if (k == ss->n) {
            rc = cb_fail(e, CB_E_INVALID, dir, "tensor %s is missing from the checkpoint", names[i]);
            break;
        }
        rc = cb_safetensors_check_shape(&ss->st[k], names[i], p->ndim, p->shape, e);
        if (rc == CB_OK) rc = cb_safetensors_read_f32(&ss->st[k], names[i], m->weights + p->offset, p->numel, e);
    }
    for (int k = 0; rc == CB_OK && k < ss->n; k++)
        for (size_t t = 0; rc == CB_OK && t < ss->st[k].n_tensors; t++) {
            const char *name = ss->st[k].tensors[t].name;
            int known = ignorable(name) || strcmp(name, "lm_head.weight") == 0; /* tied checkpoints may keep it */
            for (int i = 0; !known && i < m->params.n; i++) known = strcmp(names[i], name) == 0;
            if (!known) rc = cb_fail(e, CB_E_INVALID, ss->st[k].path, "unexpected tensor %s", name);
        }
    for (int k = 0; k < opened && ss; k++) cb_safetensors_close(&ss->st[k]);
    free(ss);
    json_decref(index);
    cb_hf_names_free(names, m->params.n);
    return rc;
}

/* ---- export ---- */

/* eps is held as float: write the shortest decimal that reads back as it (1e-05, not
 * 9.9999997473787516e-06) */
static double shortest(float x) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    return strtod(buf, NULL);
}

int cb_hf_export(const cb_model *m, const char *dir, cb_error *e) {
    llama_shape s;
    CB_TRY(llama_walk(m, NULL, &s, e));
    char **names;
    CB_TRY(cb_hf_names(m, &names, e));
    char path[8300];
    cb_atomic_dir ad;
    int rc = cb_atomic_dir_open(&ad, dir, "config.json", e);
    const char *tmp = ad.tmp_path;
    int opened = rc == CB_OK;
    json_t *cfg = NULL;
    if (rc == CB_OK) {
        cfg = json_pack("{s:[s], s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:s, s:b, s:b, s:f, s:f, s:I, s:s, s:b}",
                        "architectures", "LlamaForCausalLM", "model_type", "llama",
                        "hidden_size", (json_int_t)s.d_model, "intermediate_size", (json_int_t)s.d_ff,
                        "num_attention_heads", (json_int_t)s.n_heads, "num_key_value_heads", (json_int_t)s.n_kv_heads,
                        "num_hidden_layers", (json_int_t)s.n_layers, "vocab_size", (json_int_t)s.vocab,
                        "head_dim", (json_int_t)(s.d_model / s.n_heads), "rms_norm_eps", shortest(s.eps),
                        "rope_theta", s.rope_theta, "tie_word_embeddings", s.tied, "hidden_act", "silu",
                        "attention_bias", 0, "mlp_bias", 0, "attention_dropout", 0.0, "initializer_range", 0.02,
                        "max_position_embeddings", (json_int_t)(s.scaling.type ? 131072 : 8192),
                        "torch_dtype", "float32", "use_cache", 1);
        if (s.scaling.type == CB_ROPE_SCALING_LLAMA3)
            json_object_set_new(cfg, "rope_scaling",
                                json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", s.scaling.factor,
                                          "low_freq_factor", s.scaling.low_freq_factor, "high_freq_factor",
                                          s.scaling.high_freq_factor, "original_max_position_embeddings",
                                          s.scaling.original_max_position_embeddings));
        else
            json_object_set_new(cfg, "rope_scaling", json_null());
        snprintf(path, sizeof path, "%s/config.json", tmp);
        char *text = json_dumps(cfg, JSON_INDENT(2));
        rc = text ? cb_atomic_write(path, text, strlen(text), e) : cb_fail(e, CB_E_RUNTIME, dir, "cannot serialise config");
        free(text);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/generation_config.json", tmp);
        const char *gen = "{\n  \"_from_model_config\": true,\n  \"do_sample\": false\n}\n";
        rc = cb_atomic_write(path, gen, strlen(gen), e);
    }
    if (rc == CB_OK) {
        cb_safetensors_writer w;
        cb_safetensors_writer_init(&w);
        for (int i = 0; rc == CB_OK && i < m->params.n; i++) {
            const cb_param *p = &m->params.items[i];
            rc = cb_safetensors_writer_add(&w, names[i], CB_DTYPE_F32, p->ndim, p->shape, m->weights + p->offset, e);
        }
        if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "format", "pt", e);
        if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.plan_sha256", m->plan_sha256, e);
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        if (rc == CB_OK) rc = cb_safetensors_writer_write(&w, path, e);
        cb_safetensors_writer_free(&w);
    }
    if (rc == CB_OK) rc = cb_atomic_dir_commit(&ad, e);
    else if (opened) cb_atomic_dir_abort(&ad);
    json_decref(cfg);
    cb_hf_names_free(names, m->params.n);
    return rc;
}
