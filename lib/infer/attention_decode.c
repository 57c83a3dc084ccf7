/* attention_decode.c: attention of new query tokens against a layer's KV cache.
 *
 * One work item is (query token i, kv head kh) with the `group` query heads that share kh
 * (GQA; group = 1 for standard attention). The item scales its queries the way
 * cb_attention_forward does (c_sem = 2g/sqrt(d_sem), c_rot = (2-2g)/sqrt(d_rot)), then walks
 * the visible keys once: for each key it reads the cached head segment (whole blocks of the
 * cache's kind) and takes its dot product with all group queries at once (cb_kv_dot_m),
 * so a key is dequantised once per group, in registers. Scores are kept per head,
 * S (group, keys), so each head's softmax runs over contiguous memory; the second pass
 * reads each cached value once for the group, out[group heads] += S[:, key] v[key]
 * (cb_kv_axpy_m). */
#include "infer/attention_decode.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/quant_dot.h"

typedef struct decode_dims {
    int H, Hkv, group;
    int ds, dr, dv; /* semantic (0 unless decoupled), rotary (hd or d_geo), value widths */
} decode_dims;

static decode_dims dims_of(const cb_attention_config *cfg) {
    decode_dims m;
    m.H = cfg->n_heads;
    m.Hkv = cfg->n_kv_heads;
    m.group = m.H / m.Hkv;
    if (cfg->mode == CB_ATTENTION_DECOUPLED) {
        m.ds = cfg->sem_dim / m.H;
        m.dr = cfg->geo_dim / m.H;
        m.dv = cfg->v_dim / m.H;
    } else {
        m.ds = 0;
        m.dr = cfg->head_dim;
        m.dv = cfg->head_dim;
    }
    return m;
}

static int chunk_of(const cb_decode_plan *plan, int n) {
    return plan && plan->q_chunk > 0 && plan->q_chunk < n ? plan->q_chunk : n;
}

/* Most keys one query can see. */
static int keys_max(const cb_decode_plan *plan, int kv_len) {
    return plan && plan->local_window > 0 && plan->local_window < kv_len ? plan->local_window : kv_len;
}

/* Floats of one item: S (group, L), the scaled queries (group, ds) and (group, dr), and
 * three (group) vectors: one key's scores, its semantic scores, one value's weights. */
static size_t item_floats(const decode_dims *m, int L) {
    return (size_t)m->group * ((size_t)L + m->ds + m->dr + 3);
}

size_t cb_attention_decode_scratch_size(const cb_attention_config *cfg, int n, int kv_len,
                                        const cb_decode_plan *plan) {
    decode_dims m = dims_of(cfg);
    return (size_t)chunk_of(plan, n) * m.Hkv * item_floats(&m, keys_max(plan, kv_len));
}

/* The softmax's exp: the same branch-free polynomial as cb_attention_forward (Cephes
 * style, within 1.4 ulp of exp; arguments below -87 taken as -87), so that decoding and the
 * training-time forward agree to rounding, and so that the loops vectorise. */
static inline float softmax_exp(float x) {
    x = x < -87.0f ? -87.0f : x;
    float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } two_k = {((int32_t)k + 127) << 23};
    return p * two_k.f;
}

/* Softmax of one row of scores s (nk), in place. */
static void softmax_row(float *s, int nk) {
    float m = s[0], sum = 0.0f;
    #pragma omp simd reduction(max : m)
    for (int j = 1; j < nk; j++) m = s[j] > m ? s[j] : m;
    #pragma omp simd reduction(+ : sum)
    for (int j = 0; j < nk; j++) {
        s[j] = softmax_exp(s[j] - m);
        sum += s[j];
    }
    const float inv = 1.0f / sum;
    #pragma omp simd
    for (int j = 0; j < nk; j++) s[j] *= inv;
}

/* One item: query i (position p) against kv head kh; out rows of heads kh*group .. +group. */
static void decode_item(float *out, const float *q, const float *q_sem, const float *gate,
                        const cb_layer_cache *c, const decode_dims *m, int causal, int window,
                        int i, int p, int kh, float *scratch, int L) {
    const int group = m->group, h0 = kh * group, ds = m->ds, dr = m->dr, dv = m->dv;
    float *S = scratch; // (group, L): one row of scores per query head
    float *qs = S + (size_t)L * group, *qr = qs + (size_t)group * ds;
    float *sc = qr + (size_t)group * dr, *sc_sem = sc + group, *w = sc_sem + group;
    const float rs = ds ? 1.0f / sqrtf((float)ds) : 0.0f, rr = 1.0f / sqrtf((float)dr);
    for (int g = 0; g < group; g++) {
        const int h = h0 + g;
        float c_sem = rs, c_rot = rr;
        if (gate) {
            float gv = gate[(size_t)i * m->H + h];
            c_sem = 2 * gv * rs;
            c_rot = (2 - 2 * gv) * rr;
        }
        const float *src_r = q + ((size_t)i * m->H + h) * dr;
        for (int t = 0; t < dr; t++) qr[(size_t)g * dr + t] = c_rot * src_r[t];
        if (ds) {
            const float *src_s = q_sem + ((size_t)i * m->H + h) * ds;
            for (int t = 0; t < ds; t++) qs[(size_t)g * ds + t] = c_sem * src_s[t];
        }
    }
    const int hi = causal ? p : c->len - 1;
    const int lo = window > 0 && hi - window + 1 > 0 ? hi - window + 1 : 0;
    const int nk = hi - lo + 1;
    // scores: each key read once for the group's query heads
    for (int j = 0; j < nk; j++) {
        cb_kv_dot_m(c->k.kind, sc, cb_kv_tensor_head(&c->k, lo + j, kh), qr, (size_t)dr,
                    (size_t)dr, group);
        if (ds) {
            cb_kv_dot_m(c->k_sem.kind, sc_sem, cb_kv_tensor_head(&c->k_sem, lo + j, kh), qs,
                        (size_t)ds, (size_t)ds, group);
            for (int g = 0; g < group; g++) sc[g] += sc_sem[g];
        }
        for (int g = 0; g < group; g++) S[(size_t)g * L + j] = sc[g];
    }
    for (int g = 0; g < group; g++) softmax_row(S + (size_t)g * L, nk);
    // out (group, dv) of this query = sum over keys of w (group) x v[j] (dv)
    float *o = out + ((size_t)i * m->H + h0) * dv;
    memset(o, 0, sizeof(float) * (size_t)group * dv);
    for (int j = 0; j < nk; j++) {
        for (int g = 0; g < group; g++) w[g] = S[(size_t)g * L + j];
        cb_kv_axpy_m(c->v.kind, o, (size_t)dv, w, cb_kv_tensor_head(&c->v, lo + j, kh),
                     (size_t)dv, group);
    }
}

void cb_attention_decode(float *out, const float *q, const float *q_sem, const float *gate,
                         const cb_layer_cache *c, const cb_attention_config *cfg, int pos0,
                         int n, const cb_decode_plan *plan, float *scratch) {
    const decode_dims m = dims_of(cfg);
    const int qc = chunk_of(plan, n), L = keys_max(plan, c->len);
    const int window = plan ? plan->local_window : 0, causal = cfg->is_causal;
    const size_t per_item = item_floats(&m, L);
    // below about this many multiply-adds a parallel region costs more than it saves
    const long long work_min = 1 << 15;
    for (int c0 = 0; c0 < n; c0 += qc) {
        const int rows = n - c0 < qc ? n - c0 : qc, items = rows * m.Hkv;
        const long long work = (long long)items * m.group * L * (m.ds + m.dr + m.dv);
        #pragma omp parallel for schedule(dynamic, 1) if (work >= work_min && items > 1)
        for (int it = 0; it < items; it++) {
            const int i = c0 + it / m.Hkv, kh = it % m.Hkv;
            decode_item(out, q, q_sem, gate, c, &m, causal, window, i, pos0 + i, kh,
                        scratch + (size_t)it * per_item, L);
        }
    }
}
