/* surgery.c: the student's weights from the teacher's (surgery.h). */
#include "upcycle/surgery.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model/program.h"
#include "upcycle/feasible.h"
#include "upcycle/svd.h"

/* The attention ops of a program, once per tensor set (a cyclic body's later passes,
 * ids with '#', share the first pass's weights). */
static int attention_ops(const cb_program *p, int *ops, int cap) {
    int n = 0;
    for (int i = 0; i < p->n_ops; i++)
        if (p->ops[i].kind == CB_OP_ATTENTION && !strchr(p->ops[i].id, '#')) {
            if (n < cap) ops[n] = i;
            n++;
        }
    return n;
}

static void surgery_attn_of(cb_surgery_attn *a, const cb_program *p, const cb_op *op) {
    memset(a, 0, sizeof *a);
    a->cfg = op->attn;
    if (op->rope >= 0) {
        a->rope_theta = p->ropes[op->rope].theta;
        a->scaling = p->ropes[op->rope].scaling;
    }
}

/* Row r of a (rows x d) float matrix into a double row, times s. */
static void row_in(double *dst, const float *src, int d, double s) {
    for (int i = 0; i < d; i++) dst[i] = (double)src[i] * s;
}

/* One decoupled student layer from a grouped-query teacher layer. */
static int attention_layer(float *sw, const cb_op *sop, const float *tw, const cb_op *top, const int *pair_map,
                           const double *inv_freq, int context, cb_error *e) {
    const cb_attention_config *tc = &top->attn, *sc = &sop->attn;
    /* a student key/value group covers m teacher groups (m = 1 where n_kv_heads agree) */
    const int d = tc->d_model, H = tc->n_heads, Hkv = sc->n_kv_heads, G = H / Hkv, hd = tc->head_dim;
    const int m = tc->n_kv_heads / sc->n_kv_heads, Gt = H / tc->n_kv_heads;
    const int ds = sc->sem_dim / H, dr = sc->geo_dim / H, dv = sc->v_dim / H, half = hd / 2;
    const float *tq = tw + top->p[CB_P_Q_W], *tk = tw + top->p[CB_P_K_W], *tv = tw + top->p[CB_P_V_W];
    const float *to = tw + top->p[CB_P_O_W];
    float *qs = sw + sop->p[CB_P_QSEM_W], *ks = sw + sop->p[CB_P_KSEM_W], *qg = sw + sop->p[CB_P_QGEO_W];
    float *kg = sw + sop->p[CB_P_KGEO_W], *sv = sw + sop->p[CB_P_V_W], *so = sw + sop->p[CB_P_O_W];

    /* geometric: the teacher's pair j = pair_map[i] becomes the student's pair i (rows i
     * and i + dr/2, as RoPE pairs dimension i with i + D/2); scores are divided by
     * sqrt(d_geo) instead of sqrt(head_dim), hence (d_geo / head_dim)^(1/4) on q and k */
    const double geo_scale = pow((double)dr / hd, 0.25);
    int *is_geo = calloc((size_t)half, sizeof *is_geo);
    if (!is_geo) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    for (int i = 0; i < dr / 2; i++) {
        int j = pair_map ? pair_map[i] : i;
        is_geo[j] = 1;
        for (int side = 0; side < 2; side++) {
            int srow = i + side * (dr / 2), trow = j + side * half;
            for (int h = 0; h < H; h++)
                for (int c = 0; c < d; c++)
                    qg[((size_t)h * dr + srow) * d + c] = (float)(tq[((size_t)h * hd + trow) * d + c] * geo_scale);
            /* a merged group's geometric keys: the mean of its teacher groups' (mean
             * pooling, as GQA is made from multi-head attention) */
            for (int g = 0; g < Hkv; g++)
                for (int c = 0; c < d; c++) {
                    double sum = 0;
                    for (int gi = 0; gi < m; gi++) sum += tk[((size_t)(g * m + gi) * hd + trow) * d + c];
                    kg[((size_t)g * dr + srow) * d + c] = (float)(sum / m * geo_scale);
                }
        }
    }
    /* the rest pairs, with their rotation averaged over the distances of a causal window:
     * E_j = sum_D (context - D) R(-D w_j) / sum_D (context - D), D = 0 .. context-1 */
    int r = 0;
    for (int j = 0; j < half; j++) r += is_geo[j] ? 0 : 2;
    /* rm, hm: the rows a student group's keys (values) are factorised from, its teacher
     * groups' stacked; each head's block of A (Ao) sits in its own teacher group's columns */
    const int rank = ds, M = G * d, rm = r * m, hm = hd * m;
    size_t need = (size_t)M * rm + (size_t)rm * d + (size_t)M * rank + (size_t)rank * d + (size_t)rank +
                  (size_t)M * hm + (size_t)hm * d + (size_t)M * dv + (size_t)dv * d + (size_t)dv + (size_t)2 * half;
    double *buf = malloc(sizeof(double) * need);
    if (!buf) {
        free(is_geo);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    double *A = buf, *Bm = A + (size_t)M * rm, *L = Bm + (size_t)rm * d, *R = L + (size_t)M * rank;
    double *svals = R + (size_t)rank * d, *Ao = svals + rank, *Bv = Ao + (size_t)M * hm;
    double *Lv = Bv + (size_t)hm * d, *Rv = Lv + (size_t)M * dv, *svv = Rv + (size_t)dv * d, *cs = svv + dv;
    for (int j = 0; j < half; j++) {
        double wsum = 0, c = 0, s = 0;
        for (int D = 0; D < context; D++) {
            double w = (double)(context - D), ang = D * (inv_freq ? inv_freq[j] : 0);
            wsum += w;
            c += w * cos(ang);
            s += w * sin(ang);
        }
        cs[2 * j] = inv_freq ? c / wsum : 1;
        cs[2 * j + 1] = inv_freq ? s / wsum : 0;
    }
    const double sem_scale = pow((double)ds / hd, 0.25); /* 1/sqrt(d_sem) for 1/sqrt(head_dim) */
    int rc = CB_OK;
    for (int g = 0; g < Hkv && rc == CB_OK; g++) {
        /* B: the key rows of the rest pairs of teacher group g*m + gi in rows gi*r ..
         * gi*r + r-1 (rm x d); A: per query head h of the group, E_j^T applied to its
         * query rows, transposed into rows h*d .. h*d+d-1, in its teacher group's columns */
        memset(A, 0, sizeof(double) * (size_t)M * rm);
        for (int gi = 0; gi < m; gi++) {
            const int tg = g * m + gi;
            int rr = gi * r;
            for (int j = 0; j < half; j++) {
                if (is_geo[j]) continue;
                row_in(Bm + (size_t)rr * d, tk + ((size_t)tg * hd + j) * d, d, 1);
                row_in(Bm + (size_t)(rr + 1) * d, tk + ((size_t)tg * hd + j + half) * d, d, 1);
                double c = cs[2 * j], s = cs[2 * j + 1];
                for (int hh = 0; hh < G; hh++) {
                    if ((g * G + hh) / Gt != tg) continue;
                    const float *q1 = tq + ((size_t)(g * G + hh) * hd + j) * d, *q2 = q1 + (size_t)half * d;
                    for (int x = 0; x < d; x++) {
                        A[((size_t)hh * d + x) * rm + rr] = c * q1[x] - s * q2[x];
                        A[((size_t)hh * d + x) * rm + rr + 1] = s * q1[x] + c * q2[x];
                    }
                }
                rr += 2;
            }
        }
        rc = cb_lowrank_product(L, R, svals, A, Bm, M, rm, d, rank, e);
        if (rc != CB_OK) break;
        for (int t = 0; t < rank; t++) {
            int live = svals[t] > 0;
            for (int hh = 0; hh < G; hh++)
                for (int x = 0; x < d; x++)
                    qs[((size_t)(g * G + hh) * ds + t) * d + x] = live ? (float)(L[((size_t)hh * d + x) * rank + t] * sem_scale) : 0;
            if (live)
                for (int x = 0; x < d; x++) ks[((size_t)g * ds + t) * d + x] = (float)(R[(size_t)t * d + x] * sem_scale);
        }
        if (dv == hd && m == 1) continue; /* values copied below */
        /* values: the output O_h V_g of each head (g its teacher group), factorised at rank
         * d_v; Ao and Bv laid out by teacher group as A and B above */
        memset(Ao, 0, sizeof(double) * (size_t)M * hm);
        for (int hh = 0; hh < G; hh++) {
            const int gi = (g * G + hh) / Gt - g * m;
            for (int x = 0; x < d; x++)
                for (int c = 0; c < hd; c++)
                    Ao[((size_t)hh * d + x) * hm + gi * hd + c] = to[(size_t)x * H * hd + (size_t)(g * G + hh) * hd + c];
        }
        for (int gi = 0; gi < m; gi++)
            for (int c = 0; c < hd; c++)
                row_in(Bv + ((size_t)gi * hd + c) * d, tv + ((size_t)(g * m + gi) * hd + c) * d, d, 1);
        rc = cb_lowrank_product(Lv, Rv, svv, Ao, Bv, M, hm, d, dv, e);
        if (rc != CB_OK) break;
        for (int t = 0; t < dv; t++) {
            int live = svv[t] > 0;
            for (int hh = 0; hh < G; hh++)
                for (int x = 0; x < d; x++)
                    so[(size_t)x * H * dv + (size_t)(g * G + hh) * dv + t] = live ? (float)Lv[((size_t)hh * d + x) * dv + t] : 0;
            if (live)
                for (int x = 0; x < d; x++) sv[((size_t)g * dv + t) * d + x] = (float)Rv[(size_t)t * d + x];
        }
    }
    if (rc == CB_OK && dv == hd && m == 1) {
        memcpy(sv, tv, sizeof(float) * (size_t)Hkv * hd * d);
        memcpy(so, to, sizeof(float) * (size_t)d * H * hd);
    }
    free(buf);
    free(is_geo);
    return rc;
}

static const char *shape_text(const cb_param *p, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < p->ndim && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)p->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* the index of the parameter at offset off, or -1 */
static int param_at(const cb_param_table *t, size_t off) {
    for (int i = 0; i < t->n; i++)
        if (t->items[i].offset == off) return i;
    return -1;
}

int cb_surgery(cb_model *student, const cb_model *teacher, const cb_surgery_options *o, cb_error *e) {
    cb_program tp, sp;
    CB_TRY(cb_program_init(&tp, teacher->plan, &teacher->params, 1, 1, e));
    int rc = cb_program_init(&sp, student->plan, &student->params, 1, 1, e);
    if (rc != CB_OK) {
        cb_program_free(&tp);
        return rc;
    }
    int nt = attention_ops(&tp, NULL, 0), ns = attention_ops(&sp, NULL, 0);
    int *tops = malloc(sizeof(int) * (size_t)(nt + 1)), *sops = malloc(sizeof(int) * (size_t)(ns + 1));
    unsigned char *made = calloc((size_t)student->params.n + 1, 1);
    if (!tops || !sops || !made) rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    if (rc == CB_OK && nt != ns)
        rc = cb_fail(e, CB_E_INVALID, "", "the teacher has %d attention layers, the student %d", nt, ns);
    if (rc == CB_OK) {
        attention_ops(&tp, tops, nt);
        attention_ops(&sp, sops, ns);
    }
    const int context = o && o->context > 0 ? o->context : 1;
    for (int k = 0; rc == CB_OK && k < ns; k++) {
        const cb_op *top = &tp.ops[tops[k]], *sop = &sp.ops[sops[k]];
        cb_surgery_attn ta, sa;
        surgery_attn_of(&ta, &tp, top);
        surgery_attn_of(&sa, &sp, sop);
        if (cb_surgery_attn_same(&ta, &sa)) continue; /* copied by name below */
        int *pair_map = calloc((size_t)(sa.cfg.geo_dim / (sa.cfg.n_heads ? sa.cfg.n_heads : 1)) / 2 + 1, sizeof(int));
        double *inv_freq = malloc(sizeof(double) * (size_t)(ta.cfg.head_dim / 2 + 1));
        const char *field;
        char why[CB_SURGERY_WHY_MAX];
        if (!pair_map || !inv_freq) rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        else if (cb_surgery_attn_check(&ta, &sa, pair_map, &field, why) != 0)
            rc = cb_fail(e, CB_E_INVALID, "", "student %s.%s: %s", sop->id, field, why);
        if (rc == CB_OK) {
            if (ta.cfg.rope_enabled)
                cb_rope_inv_freq(inv_freq, ta.cfg.head_dim, ta.rope_theta, ta.scaling.type ? &ta.scaling : NULL);
            rc = attention_layer(student->weights, sop, teacher->weights, top, pair_map,
                                 ta.cfg.rope_enabled ? inv_freq : NULL, context, e);
        }
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            int i = sop->p[r] == CB_NO_PARAM ? -1 : param_at(&student->params, sop->p[r]);
            if (i >= 0) made[i] = 1;
        }
        free(pair_map);
        free(inv_freq);
    }
    /* every other tensor: the teacher's of the same name and shape */
    for (int i = 0; rc == CB_OK && i < student->params.n; i++) {
        if (made[i]) continue;
        const cb_param *sp_ = &student->params.items[i];
        const cb_param *tp_ = cb_params_find(&teacher->params, sp_->name);
        if (!tp_)
            rc = cb_fail(e, CB_E_INVALID, "", "the teacher has no tensor %s, which the student copies from it", sp_->name);
        else if (tp_->ndim != sp_->ndim || memcmp(tp_->shape, sp_->shape, sizeof(int64_t) * (size_t)sp_->ndim) != 0) {
            char a[64], b[64];
            rc = cb_fail(e, CB_E_INVALID, "", "tensor %s: the teacher's shape %s differs from the student's %s",
                         sp_->name, shape_text(tp_, a, sizeof a), shape_text(sp_, b, sizeof b));
        }
        else
            memcpy(student->weights + sp_->offset, teacher->weights + tp_->offset, sizeof(float) * sp_->numel);
    }
    free(tops);
    free(sops);
    free(made);
    cb_program_free(&tp);
    cb_program_free(&sp);
    return rc;
}
