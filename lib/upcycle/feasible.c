/* feasible.c: can surgery make this student attention from this teacher attention
 * (feasible.h)? */
#include "upcycle/feasible.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void cb_surgery_attn_from_config(cb_surgery_attn *a, const json_t *cfg) {
    memset(a, 0, sizeof *a);
    cb_attention_config *c = &a->cfg;
    const char *mode = json_string_value(json_object_get(cfg, "mode"));
    c->d_model = cfg_int(cfg, "d_model", 0);
    c->n_heads = cfg_int(cfg, "n_heads", 0);
    c->n_kv_heads = cfg_int(cfg, "n_kv_heads", c->n_heads);
    c->mode = !mode || strcmp(mode, "standard") == 0 ? CB_ATTENTION_STANDARD
            : strcmp(mode, "gqa") == 0 ? CB_ATTENTION_GQA : CB_ATTENTION_DECOUPLED;
    c->head_dim = c->n_heads ? c->d_model / c->n_heads : 0;
    if (c->mode == CB_ATTENTION_DECOUPLED) {
        c->sem_dim = cfg_int(cfg, "sem_dim", 0);
        c->geo_dim = cfg_int(cfg, "geo_dim", 0);
        c->v_dim = cfg_int(cfg, "v_dim", c->d_model);
        c->decoupled_gate = cfg_bool(cfg, "decoupled_gate", 0);
        c->decoupled_gate_dynamic = cfg_bool(cfg, "decoupled_gate_dynamic", 0);
    }
    c->rope_enabled = cfg_bool(cfg, "rope_enabled", 1);
    c->bias = cfg_bool(cfg, "bias", 0);
    c->is_causal = cfg_bool(cfg, "is_causal", 1);
    a->rope_theta = cfg_num(cfg, "rope_theta", 10000.0);
    const json_t *sc = json_object_get(cfg, "rope_scaling");
    if (json_is_object(sc)) {
        a->scaling.type = CB_ROPE_SCALING_LLAMA3;
        a->scaling.factor = cfg_num(sc, "factor", 8.0);
        a->scaling.low_freq_factor = cfg_num(sc, "low_freq_factor", 1.0);
        a->scaling.high_freq_factor = cfg_num(sc, "high_freq_factor", 4.0);
        a->scaling.original_max_position_embeddings = cfg_int(sc, "original_max_position_embeddings", 8192);
    }
}

int cb_surgery_attn_same(const cb_surgery_attn *t, const cb_surgery_attn *s) {
    const cb_attention_config *a = &t->cfg, *b = &s->cfg;
    int same = a->mode == b->mode && a->d_model == b->d_model && a->n_heads == b->n_heads &&
               a->n_kv_heads == b->n_kv_heads && a->rope_enabled == b->rope_enabled && a->bias == b->bias &&
               a->is_causal == b->is_causal;
    if (same && a->mode == CB_ATTENTION_DECOUPLED)
        same = a->sem_dim == b->sem_dim && a->geo_dim == b->geo_dim && a->v_dim == b->v_dim &&
               a->decoupled_gate == b->decoupled_gate && a->decoupled_gate_dynamic == b->decoupled_gate_dynamic;
    if (same && a->rope_enabled)
        same = t->rope_theta == s->rope_theta && memcmp(&t->scaling, &s->scaling, sizeof t->scaling) == 0;
    return same;
}

#define FAIL(f, ...) (*field = (f), snprintf(why, CB_SURGERY_WHY_MAX, __VA_ARGS__), -1)

int cb_surgery_attn_check(const cb_surgery_attn *t, const cb_surgery_attn *s, int *pair_map, const char **field,
                          char why[CB_SURGERY_WHY_MAX]) {
    const cb_attention_config *tc = &t->cfg, *sc = &s->cfg;
    *field = NULL;
    why[0] = 0;
    if (cb_surgery_attn_same(t, s)) return 0;
    if (tc->mode == CB_ATTENTION_DECOUPLED)
        return FAIL("mode", "the teacher's attention is already decoupled with other dims; surgery starts from a "
                            "standard or gqa teacher");
    if (sc->mode != CB_ATTENTION_DECOUPLED)
        return FAIL("mode", "%s differs from the teacher's attention, and surgery makes only decoupled students "
                            "(or copies an identical layer)",
                    sc->mode == CB_ATTENTION_GQA ? "gqa" : "standard");
    if (sc->d_model != tc->d_model)
        return FAIL("d_model", "%d differs from the teacher's %d: surgery copies the embeddings and MLPs", sc->d_model,
                    tc->d_model);
    if (sc->n_heads != tc->n_heads)
        return FAIL("n_heads", "%d differs from the teacher's %d: each student head starts from one teacher head",
                    sc->n_heads, tc->n_heads);
    if (sc->n_kv_heads < 1 || tc->n_kv_heads % sc->n_kv_heads != 0)
        return FAIL("n_kv_heads", "%d does not divide the teacher's %d: each student key/value head starts from "
                                  "a whole number of teacher key/value groups",
                    sc->n_kv_heads, tc->n_kv_heads);
    if (sc->bias || tc->bias)
        return FAIL("bias", "surgery needs attention without biases (teacher bias %s, student bias %s)",
                    tc->bias ? "true" : "false", sc->bias ? "true" : "false");
    if (!sc->is_causal || !tc->is_causal) return FAIL("is_causal", "surgery needs causal attention");
    const int H = sc->n_heads, hd = tc->head_dim, dr = sc->geo_dim / H, dv = sc->v_dim / H;
    if (sc->rope_enabled != tc->rope_enabled)
        return FAIL("rope_enabled", "%s, the teacher's is %s: the geometric path keeps the teacher's rotations",
                    sc->rope_enabled ? "true" : "false", tc->rope_enabled ? "true" : "false");
    if (dr > hd)
        return FAIL("geo_dim", "%d gives %d geometric dims per head, more than the teacher's head_dim %d",
                    sc->geo_dim, dr, hd);
    if (dv > hd)
        return FAIL("v_dim", "%d gives %d value dims per head, more than the teacher's head_dim %d", sc->v_dim, dv, hd);
    if (sc->rope_enabled) {
        /* each student pair must rotate at a frequency of a teacher pair: the teacher's
         * geometric score of that pair is then kept exactly at every distance */
        double *ft = malloc(sizeof(double) * (size_t)(hd / 2 + dr / 2 + 1));
        if (!ft) return FAIL("geo_dim", "out of memory");
        double *fs = ft + hd / 2;
        cb_rope_inv_freq(ft, hd, t->rope_theta, t->scaling.type ? &t->scaling : NULL);
        cb_rope_inv_freq(fs, dr, s->rope_theta, s->scaling.type ? &s->scaling : NULL);
        int j = 0, bad = -1;
        for (int i = 0; i < dr / 2 && bad < 0; i++) {
            while (j < hd / 2 && fabs(ft[j] - fs[i]) > 1e-4 * ft[j]) j++;
            if (j == hd / 2) bad = i;
            else if (pair_map) pair_map[i] = j++;
        }
        double missing = bad >= 0 ? fs[bad] : 0;
        free(ft);
        if (bad >= 0)
            return FAIL("geo_dim", "%d (%d per head) rotates pair %d at inverse frequency %.6g, which the teacher's "
                                   "RoPE (head_dim %d, rope_theta %g) does not have: d_geo must divide head_dim at the "
                                   "same rope_theta (every k-th pair), or rope_theta be the teacher's to the power "
                                   "d_geo/head_dim (the fastest pairs)",
                        sc->geo_dim, dr, bad, missing, hd, t->rope_theta);
    }
    return 0;
}
