/* speculative.c: draft-verify rounds. Each round starts with one pending token: decided and
 * emitted, but in neither cache yet. The draft runs it (after catching up on tokens only
 * the target has seen) and proposes x_0 .. x_{k-1}; the target runs [pending, x_0 ..
 * x_{k-1}] in one pass, whose k+1 rows give its distribution at every proposed position
 * and after the last. The kept prefix stays in the caches, the rest is rolled back, and the
 * round's last decided token becomes the next pending one. */
#include "infer/speculative.h"

#include <stdlib.h>
#include <string.h>
#include "core/clock.h"

cb_spec_config cb_spec_config_default(void) {
    cb_spec_config c;
    memset(&c, 0, sizeof c);
    c.spec_k = 4;
    c.spec_k_max = 8;
    c.method = CB_SPEC_REJECT_SAMPLING;
    c.extra_token = 1;
    c.disable_min_rounds = 4;
    return c;
}

int cb_spec_method_parse(const char *s, cb_spec_method *m) {
    if (strcmp(s, "reject_sampling") == 0) *m = CB_SPEC_REJECT_SAMPLING;
    else if (strcmp(s, "greedy") == 0) *m = CB_SPEC_GREEDY;
    else return 0;
    return 1;
}

const char *cb_spec_method_name(cb_spec_method m) { return m == CB_SPEC_GREEDY ? "greedy" : "reject_sampling"; }

static int model_vocab(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

int cb_spec_check_models(const cb_model *target, const cb_model *draft, cb_error *e) {
    int vt = model_vocab(target), vd = model_vocab(draft);
    if (vt != vd)
        return cb_fail(e, CB_E_INVALID, "", "the draft model's vocabulary (%d tokens) differs from the target's (%d)", vd,
                       vt);
    return CB_OK;
}

int32_t cb_spec_accept_or_resample(const double *p, const double *q, int vocab, int32_t x, double u_accept,
                                   double u_resample, double *work, int *accepted) {
    double px = p[x], qx = q[x];
    /* accept with probability min(1, p(x)/q(x)) */
    if (qx <= 0 || px >= qx || u_accept * qx < px) {
        *accepted = 1;
        return x;
    }
    *accepted = 0;
    double total = 0;
    for (int i = 0; i < vocab; i++) {
        work[i] = p[i] > q[i] ? p[i] - q[i] : 0;
        total += work[i];
    }
    return cb_sample_inverse_cdf(total > 0 ? work : p, vocab, u_resample);
}

typedef struct spec_run {
    cb_session *T, *D;
    cb_sampler ts, ds;   /* target: checks and resamples; draft: proposes */
    int greedy, V, kmax;
    float *t_logits;     /* (kmax + 1, V) rows of the verify pass */
    float *d_logits;     /* (V) */
    double *q;           /* (kmax, V) the draft's distribution at each proposed position */
    double *p, *work;    /* (V) */
    int32_t *buf;        /* (max_seq_len + 1) tokens to run */
} spec_run;

static int32_t pick(spec_run *r, cb_sampler *s, const float *logits, double *probs) {
    return r->greedy ? cb_argmax(logits, r->V) : cb_sampler_next(s, logits, probs);
}

/* One round with k draft tokens after `pending`. Emits the decided tokens; sets *pending
 * to the round's last decided token and *kept to the accepted count. */
static int round_k(spec_run *r, int k, int32_t *pending, int *kept, int extra_token, cb_emitter *em, cb_error *e) {
    cb_session *T = r->T, *D = r->D;
    const int V = r->V, base = T->len;
    /* the draft catches up on what only the target ran, then runs the pending token */
    int catch_up = T->len - D->len;
    memcpy(r->buf, T->tokens + D->len, sizeof *r->buf * (size_t)catch_up);
    r->buf[catch_up] = *pending;
    CB_TRY(cb_session_forward(D, r->buf, catch_up + 1, r->d_logits, 0, e));
    int32_t *x = r->buf + 1; /* buf[0] = pending, buf[1..k] = proposals: the verify input */
    r->buf[0] = *pending;
    for (int i = 0; i < k; i++) {
        double *q = r->q + (size_t)i * V;
        if (r->greedy) {
            x[i] = cb_argmax(r->d_logits, V);
        } else {
            cb_sampler_probs(&r->ds, r->d_logits, q);
            x[i] = cb_sample_inverse_cdf(q, V, cb_sampler_uniform(&r->ds));
        }
        if (i + 1 < k) CB_TRY(cb_session_forward(D, &x[i], 1, r->d_logits, 0, e));
    }
    CB_TRY(cb_session_forward(T, r->buf, k + 1, r->t_logits, 1, e));
    /* greedy picks an id from NaN logits too: the target's rows are checked here */
    for (int i = 0; i <= k; i++) CB_TRY(cb_generate_check_logits(r->t_logits + (size_t)i * V, V, em->out->stats.new_tokens, e));
    int a = 0, have_z = 1;
    int32_t z = -1;
    for (; a < k; a++) {
        const float *row = r->t_logits + (size_t)a * V;
        int ok;
        if (r->greedy) {
            z = cb_argmax(row, V);
            ok = z == x[a];
        } else {
            cb_sampler_probs(&r->ts, row, r->p);
            double u1 = cb_sampler_uniform(&r->ts), u2 = cb_sampler_uniform(&r->ts);
            z = cb_spec_accept_or_resample(r->p, r->q + (size_t)a * V, V, x[a], u1, u2, r->work, &ok);
        }
        if (!ok) break;
    }
    int keep = base + 1 + a;
    if (a == k) {
        if (extra_token) {
            z = pick(r, &r->ts, r->t_logits + (size_t)k * V, r->p);
        } else { /* the last proposal is not run by the target: it becomes the pending token */
            have_z = 0;
            keep = base + k;
        }
    }
    cb_session_truncate(T, keep);
    cb_session_truncate(D, keep);
    *kept = a;
    for (int i = 0; i < a && !em->done; i++) CB_TRY(cb_emitter_push(em, x[i], e));
    if (have_z && !em->done) CB_TRY(cb_emitter_push(em, z, e));
    *pending = have_z ? z : x[k - 1];
    return CB_OK;
}

int cb_speculative_generate(cb_session *target, cb_session *draft, const int32_t *prompt, int n,
                            const cb_generate_config *cfg, const cb_spec_config *spec,
                            const cb_generate_io *io, cb_generate_output *out, cb_error *e) {
    memset(out, 0, sizeof *out);
    if (target->vocab != draft->vocab)
        return cb_fail(e, CB_E_INVALID, "", "the draft model's vocabulary (%d tokens) differs from the target's (%d)",
                       draft->vocab, target->vocab);
    if (spec->spec_k < 1) return cb_fail(e, CB_E_USAGE, "", "spec_k %d must be at least 1", spec->spec_k);
    const int L = target->cfg.max_seq_len < draft->cfg.max_seq_len ? target->cfg.max_seq_len : draft->cfg.max_seq_len;
    int first;
    CB_TRY(cb_generate_fit_prompt(n, L, cfg->stop.max_new_tokens, cfg->truncate, &first, e));

    spec_run r;
    memset(&r, 0, sizeof r);
    r.T = target;
    r.D = draft;
    r.V = target->vocab;
    r.greedy = spec->method == CB_SPEC_GREEDY || cfg->sample.temperature <= 0;
    r.kmax = spec->spec_k;
    if (spec->spec_k_adaptive && spec->spec_k_max > r.kmax) r.kmax = spec->spec_k_max;
    cb_sample_config dcfg = cfg->sample;
    dcfg.seed = cb_hash64(cfg->sample.seed ^ 0x5bd1e995u); /* the draft's own stream */
    int rc = cb_sampler_init(&r.ts, &cfg->sample, r.V, e);
    if (rc == CB_OK && (rc = cb_sampler_init(&r.ds, &dcfg, r.V, e)) != CB_OK) cb_sampler_free(&r.ts);
    if (rc != CB_OK) return rc;
    r.t_logits = cb_malloc((size_t)(r.kmax + 1) * r.V, sizeof *r.t_logits, e);
    r.d_logits = cb_malloc((size_t)r.V, sizeof *r.d_logits, e);
    r.q = cb_malloc((size_t)r.kmax * r.V, sizeof *r.q, e);
    r.p = cb_malloc((size_t)r.V, sizeof *r.p, e);
    r.work = cb_malloc((size_t)r.V, sizeof *r.work, e);
    r.buf = cb_malloc((size_t)L + 1, sizeof *r.buf, e);
    if (!r.t_logits || !r.d_logits || !r.q || !r.p || !r.work || !r.buf) rc = CB_E_RUNTIME;

    cb_emitter em;
    cb_emitter_init(&em, io, &cfg->stop, out);
    out->stats.truncated = first;
    out->stats.prompt_tokens = n - first;
    double t0 = cb_clock_s(), t1 = t0;
    if (rc == CB_OK) rc = cb_session_prefill(target, prompt + first, n - first, r.t_logits, e);
    if (rc == CB_OK) rc = cb_generate_check_logits(r.t_logits, r.V, 0, e);
    out->stats.reused = target->reused;
    /* the draft keeps what it caches of the prompt; the first round runs the rest */
    if (rc == CB_OK) {
        int common = 0;
        while (common < draft->len && common < target->len && draft->tokens[common] == target->tokens[common]) common++;
        cb_session_truncate(draft, common);
    }
    int32_t pending = -1;
    if (rc == CB_OK && cfg->stop.max_new_tokens <= 0) {
        em.done = 1;
        out->stats.stop_reason = CB_STOP_LENGTH;
    }
    if (rc == CB_OK && !em.done) {
        pending = pick(&r, &r.ts, r.t_logits, r.p);
        rc = cb_emitter_push(&em, pending, e);
        t1 = cb_clock_s();
    }
    int k = spec->spec_k, plain = 0;
    while (rc == CB_OK && !em.done) {
        if (target->len >= L) {
            em.done = 1;
            out->stats.stop_reason = CB_STOP_CONTEXT;
            break;
        }
        int k_eff = k, room = L - target->len - 1, budget = cfg->stop.max_new_tokens - out->stats.new_tokens - 1;
        if (room < k_eff) k_eff = room;
        if (budget < k_eff) k_eff = budget;
        if (plain || k_eff <= 0) { /* a plain step */
            rc = cb_session_forward(target, &pending, 1, r.t_logits, 0, e);
            if (rc == CB_OK) rc = cb_generate_check_logits(r.t_logits, r.V, out->stats.new_tokens, e);
            if (rc != CB_OK) break;
            pending = pick(&r, &r.ts, r.t_logits, r.p);
            rc = cb_emitter_push(&em, pending, e);
            continue;
        }
        int a;
        rc = round_k(&r, k_eff, &pending, &a, spec->extra_token, &em, e);
        if (rc != CB_OK) break;
        out->stats.drafted += k_eff;
        out->stats.accepted += a;
        out->stats.spec_rounds++;
        if (spec->spec_k_adaptive) {
            if (a == k_eff && k_eff == k && k < r.kmax) k++;
            else if (2 * a < k_eff && k > 1) k--;
        }
        if (spec->disable_below_accept > 0 && out->stats.spec_rounds >= spec->disable_min_rounds &&
            (double)out->stats.accepted < spec->disable_below_accept * (double)out->stats.drafted) {
            plain = 1;
            out->stats.spec_fallback = 1;
        }
    }
    double t2 = cb_clock_s();
    if (out->stats.new_tokens == 0) t1 = t2;
    out->stats.prefill_s = t1 - t0;
    out->stats.decode_s = t2 - t1;
    out->stats.spec_k = k;
    if (rc == CB_OK) cb_emitter_finish(&em);
    free(r.t_logits);
    free(r.d_logits);
    free(r.q);
    free(r.p);
    free(r.work);
    free(r.buf);
    cb_sampler_free(&r.ts);
    cb_sampler_free(&r.ds);
    if (rc != CB_OK) cb_generate_output_free(out);
    return rc;
}
