/* sample.c: next-token choice and stop rules. Probabilities are formed in double so that
 * speculative decoding's accept/resample rule compares the same numbers the sampler draws
 * from. Ties are broken by id everywhere, so a run depends only on logits and seed. */
#include "infer/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

cb_sample_config cb_sample_config_default(void) {
    cb_sample_config c = {.temperature = 1.0, .top_k = 0, .top_p = 1.0, .seed = 0};
    return c;
}

int cb_sampler_init(cb_sampler *s, const cb_sample_config *cfg, int vocab, cb_error *e) {
    memset(s, 0, sizeof *s);
    if (vocab <= 0) return cb_fail(e, CB_E_INVALID, "", "sampler: vocabulary of %d tokens", vocab);
    if (!(cfg->temperature == cfg->temperature) || !(cfg->top_p == cfg->top_p))
        return cb_fail(e, CB_E_USAGE, "", "sampler: temperature and top_p must be numbers");
    s->cfg = *cfg;
    s->vocab = vocab;
    cb_rng_init(&s->rng, cfg->seed);
    s->cand = cb_malloc((size_t)vocab, sizeof *s->cand, e);
    return s->cand ? CB_OK : e->code;
}

void cb_sampler_free(cb_sampler *s) {
    free(s->cand);
    memset(s, 0, sizeof *s);
}

int cb_sampler_greedy(const cb_sampler *s) { return s->cfg.temperature <= 0; }

/* The largest value first (a vectorised reduction), then its first index: the one-pass
 * loop, each compare waiting on the load of x[best], took 1.3% of a q8_0 decode step. NaNs
 * are passed over as before; a NaN x[0] stays the answer, as before. */
int32_t cb_argmax(const float *x, int n) {
    float m = x[0];
    #pragma omp simd reduction(max : m)
    for (int i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    for (int i = 0; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

/* a before b: larger probability first, then smaller id */
static int cand_before(const cb_sample_cand *a, const cb_sample_cand *b) {
    return a->p > b->p || (a->p == b->p && a->id < b->id);
}
static int cand_cmp(const void *pa, const void *pb) {
    const cb_sample_cand *a = pa, *b = pb;
    return cand_before(a, b) ? -1 : cand_before(b, a) ? 1 : 0;
}

/* heap[0..n) is a heap whose root is the candidate that comes last in order */
static void sift_down(cb_sample_cand *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_before(&h[m], &h[l])) m = l;
        if (r < n && cand_before(&h[m], &h[r])) m = r;
        if (m == i) return;
        cb_sample_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* cand[0..k) = the k first candidates of probs (vocab) in order, sorted. */
static void select_top_k(cb_sample_cand *cand, const double *probs, int vocab, int k) {
    for (int i = 0; i < k; i++) cand[i] = (cb_sample_cand){probs[i], i};
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(cand, k, i);
    for (int i = k; i < vocab; i++) {
        cb_sample_cand c = {probs[i], i};
        if (cand_before(&c, &cand[0])) {
            cand[0] = c;
            sift_down(cand, k, 0);
        }
    }
    qsort(cand, (size_t)k, sizeof *cand, cand_cmp);
}

void cb_sampler_probs(cb_sampler *s, const float *logits, double *probs) {
    const int V = s->vocab;
    if (cb_sampler_greedy(s)) {
        memset(probs, 0, sizeof *probs * (size_t)V);
        probs[cb_argmax(logits, V)] = 1;
        return;
    }
    float mx = logits[cb_argmax(logits, V)];
    double inv_t = 1.0 / s->cfg.temperature, total = 0;
    for (int i = 0; i < V; i++) {
        probs[i] = exp(((double)logits[i] - mx) * inv_t);
        total += probs[i];
    }
    const int top_k = s->cfg.top_k > 0 && s->cfg.top_k < V ? s->cfg.top_k : 0;
    const double top_p = s->cfg.top_p;
    if (!top_k && top_p >= 1) {
        for (int i = 0; i < V; i++) probs[i] /= total;
        return;
    }
    int n = 0;
    double kept = total;
    if (top_k) {
        select_top_k(s->cand, probs, V, top_k);
        n = top_k;
        kept = 0;
        for (int i = 0; i < n; i++) kept += s->cand[i].p;
    } else {
        /* A token of probability <= (1 - top_p) / V can never be in the nucleus: the
         * tokens after the nucleus's last one, it included, outweigh 1 - top_p and none
         * is larger than it. Only the others need sorting. */
        double floor_p = (1 - (top_p > 0 ? top_p : 0)) / V * total;
        for (int i = 0; i < V; i++)
            if (probs[i] > floor_p) s->cand[n++] = (cb_sample_cand){probs[i], i};
        if (n == 0) s->cand[n++] = (cb_sample_cand){probs[cb_argmax(logits, V)], cb_argmax(logits, V)};
        qsort(s->cand, (size_t)n, sizeof *s->cand, cand_cmp);
    }
    if (top_p < 1) {
        double need = top_p * kept, cum = 0;
        int m = 0;
        while (m < n) {
            cum += s->cand[m++].p;
            if (cum >= need) break;
        }
        n = m;
        kept = cum;
    }
    memset(probs, 0, sizeof *probs * (size_t)V);
    for (int i = 0; i < n; i++) probs[s->cand[i].id] = s->cand[i].p / kept;
}

double cb_sampler_uniform(cb_sampler *s) { return cb_rng_uniform(&s->rng); }

int32_t cb_sample_inverse_cdf(const double *probs, int vocab, double u) {
    double total = 0;
    for (int i = 0; i < vocab; i++) total += probs[i];
    if (!(total > 0)) return -1;
    double target = u * total, cum = 0;
    int32_t last = -1;
    for (int i = 0; i < vocab; i++) {
        if (probs[i] <= 0) continue;
        cum += probs[i];
        last = i;
        if (cum > target) return i;
    }
    return last; /* rounding left target at the very top */
}

int32_t cb_sampler_next(cb_sampler *s, const float *logits, double *probs) {
    if (cb_sampler_greedy(s)) return cb_argmax(logits, s->vocab);
    cb_sampler_probs(s, logits, probs);
    return cb_sample_inverse_cdf(probs, s->vocab, cb_sampler_uniform(s));
}

/* ---- stopping ---- */

const char *cb_stop_reason_name(int reason) {
    switch (reason) {
    case CB_STOP_EOS: return "eos";
    case CB_STOP_STRING: return "stop";
    case CB_STOP_LENGTH: return "length";
    case CB_STOP_CONTEXT: return "context";
    default: return "none";
    }
}

int cb_stop_is_eos(const cb_stop_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos[i] == id) return 1;
    return 0;
}

size_t cb_stop_find(const cb_stop_config *c, const char *text, size_t len, size_t from) {
    size_t best = SIZE_MAX;
    for (int i = 0; i < c->n_strings; i++) {
        size_t k = strlen(c->strings[i]);
        if (k == 0 || k > len) continue;
        /* a match must end after `from`: start at from - k + 1 or later */
        size_t start = from + 1 > k ? from + 1 - k : 0;
        for (size_t p = start; p + k <= len && p < best; p++)
            if (memcmp(text + p, c->strings[i], k) == 0) {
                best = p;
                break;
            }
    }
    return best;
}

size_t cb_stop_holdback(const cb_stop_config *c, const char *text, size_t len) {
    size_t hold = 0;
    for (int i = 0; i < c->n_strings; i++) {
        size_t k = strlen(c->strings[i]);
        /* the longest proper prefix of the stop string that ends text */
        for (size_t m = k > 0 ? k - 1 : 0; m > hold; m--)
            if (m <= len && memcmp(text + len - m, c->strings[i], m) == 0) {
                hold = m;
                break;
            }
    }
    return hold;
}

size_t cb_utf8_complete(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    /* look back at most 3 bytes for the lead byte of the last sequence */
    for (size_t back = 1; back <= 4 && back <= len; back++) {
        unsigned char b = s[len - back];
        if ((b & 0xC0) == 0x80) continue; /* continuation byte */
        size_t need = b >= 0xF0 && b <= 0xF4 ? 4 : b >= 0xE0 && b < 0xF0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 1;
        return back < need ? len - back : len;
    }
    return len; /* only continuation bytes: not UTF-8 we could complete; pass it on */
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    size_t k;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b >= 0xC2 && b <= 0xDF) k = 2;
    else if (b >= 0xE0 && b <= 0xEF) k = 3, lo = b == 0xE0 ? 0xA0 : 0x80, hi = b == 0xED ? 0x9F : 0xBF;
    else if (b >= 0xF0 && b <= 0xF4) k = 4, lo = b == 0xF0 ? 0x90 : 0x80, hi = b == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    if (n < k || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return k;
}

size_t cb_utf8_invalid_at(const char *text, size_t len) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (!k) return i;
        i += k;
    }
    return SIZE_MAX;
}

int cb_utf8_sanitize(const char *text, size_t len, cb_bytes *out, cb_error *e) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(s + i, len - i);
        if (k) CB_TRY(cb_bytes_append(out, s + i, k, e));
        else CB_TRY(cb_bytes_append(out, "\xef\xbf\xbd", 3, e));
        i += k ? k : 1;
    }
    return CB_OK;
}
