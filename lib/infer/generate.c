/* generate.c: the plain generation loop and the emitter. */
#include "infer/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "core/clock.h"

cb_generate_config cb_generate_config_default(void) {
    cb_generate_config c;
    memset(&c, 0, sizeof c);
    c.sample = cb_sample_config_default();
    c.stop.max_new_tokens = 64;
    return c;
}

void cb_generate_output_free(cb_generate_output *o) {
    cb_ids_free(&o->ids);
    cb_bytes_free(&o->text);
    memset(o, 0, sizeof *o);
}

void cb_emitter_init(cb_emitter *em, const cb_generate_io *io, const cb_stop_config *stop, cb_generate_output *out) {
    memset(em, 0, sizeof *em);
    em->io = io;
    em->stop = stop;
    em->out = out;
}

static void emit_upto(cb_emitter *em, size_t upto) {
    if (upto <= em->settled) return;
    if (em->io->on_text) em->io->on_text(em->io->ctx, (const char *)em->out->text.p + em->settled, upto - em->settled);
    em->settled = upto;
}

static void stop_with(cb_emitter *em, int reason) {
    em->done = 1;
    em->out->stats.stop_reason = reason;
}

/* The sampler finds no id in logits that hold a NaN (their probabilities are NaN). */
#define NONFINITE "non-finite logits"

int cb_generate_is_nonfinite(const cb_error *e) {
    return e->code == CB_E_RUNTIME && strncmp(e->msg, NONFINITE, sizeof NONFINITE - 1) == 0;
}

/* Logits (V) with a NaN or an infinity: CB_E_RUNTIME, saying after how many new tokens. A
 * pass over V floats beside a forward pass that reads every weight: nothing to measure. */
static int nonfinite_error(int new_tokens, cb_error *e) {
    if (new_tokens == 0) return cb_fail(e, CB_E_RUNTIME, "", NONFINITE " over the prompt");
    return cb_fail(e, CB_E_RUNTIME, "", NONFINITE " after %d new tokens", new_tokens);
}

int cb_generate_check_logits(const float *logits, int V, int new_tokens, cb_error *e) {
    int bad = 0;
    for (int i = 0; i < V; i++) bad |= !isfinite(logits[i]);
    return bad ? nonfinite_error(new_tokens, e) : CB_OK;
}

int cb_emitter_push(cb_emitter *em, int32_t id, cb_error *e) {
    cb_generate_output *o = em->out;
    if (em->done) return CB_OK;
    if (id < 0) return cb_fail(e, CB_E_RUNTIME, "", NONFINITE " after %d new tokens (no token to sample)", o->stats.new_tokens);
    o->stats.new_tokens++;
    if (cb_stop_is_eos(em->stop, id)) {
        stop_with(em, CB_STOP_EOS);
        return CB_OK;
    }
    CB_TRY(cb_ids_push(&o->ids, id, e));
    if (em->io->on_token) em->io->on_token(em->io->ctx, id);
    if (em->io->tok) {
        size_t before = o->text.n, len;
        const uint8_t *bytes = cb_tokenizer_token(em->io->tok, id, &len);
        if (bytes && len) CB_TRY(cb_bytes_append(&o->text, bytes, len, e));
        const char *text = (const char *)o->text.p;
        size_t at = cb_stop_find(em->stop, text, o->text.n, before);
        if (at != SIZE_MAX) {
            o->text.n = at;
            emit_upto(em, at);
            stop_with(em, CB_STOP_STRING);
            return CB_OK;
        }
        size_t safe = cb_utf8_complete(text, o->text.n);
        size_t hold = cb_stop_holdback(em->stop, text, o->text.n);
        if (o->text.n - hold < safe) safe = o->text.n - hold;
        emit_upto(em, safe);
    }
    if (o->stats.new_tokens >= em->stop->max_new_tokens) stop_with(em, CB_STOP_LENGTH);
    return CB_OK;
}

void cb_emitter_finish(cb_emitter *em) { emit_upto(em, em->out->text.n); }

int cb_generate_fit_prompt(int n, int max_seq_len, int max_new, int truncate, int *first, cb_error *e) {
    *first = 0;
    if (n < 1) return cb_fail(e, CB_E_USAGE, "", "empty prompt");
    if (truncate) {
        long room = (long)max_seq_len - (max_new > 0 ? max_new : 0);
        long keep = room < 1 ? 1 : room;
        if (n > keep) *first = n - (int)keep;
    } else if (n > max_seq_len) {
        return cb_fail(e, CB_E_USAGE, "", "prompt of %d tokens is longer than the context (max_seq_len %d)", n,
                       max_seq_len);
    }
    return CB_OK;
}

int cb_session_generate(cb_session *s, const int32_t *prompt, int n, const cb_generate_config *cfg,
                        const cb_generate_io *io, cb_generate_output *out, cb_error *e) {
    memset(out, 0, sizeof *out);
    int first;
    CB_TRY(cb_generate_fit_prompt(n, s->cfg.max_seq_len, cfg->stop.max_new_tokens, cfg->truncate, &first, e));
    const int V = s->vocab;
    cb_sampler sampler;
    CB_TRY(cb_sampler_init(&sampler, &cfg->sample, V, e));
    float *logits = cb_malloc((size_t)V, sizeof *logits, e);
    double *probs = logits ? cb_malloc((size_t)V, sizeof *probs, e) : NULL;
    int rc = logits && probs ? CB_OK : CB_E_RUNTIME;
    cb_emitter em;
    cb_emitter_init(&em, io, &cfg->stop, out);
    out->stats.truncated = first;
    out->stats.prompt_tokens = n - first;
    double t0 = cb_clock_s(), t1 = t0;
    if (rc == CB_OK) rc = cb_session_prefill(s, prompt + first, n - first, logits, e);
    if (rc == CB_OK) rc = cb_generate_check_logits(logits, V, 0, e);
    out->stats.reused = s->reused;
    if (rc == CB_OK && cfg->stop.max_new_tokens <= 0) stop_with(&em, CB_STOP_LENGTH);
    /* greedy: each step's argmax where the logits are (on a GPU, an id comes back, not V
     * floats); the prompt's logits are on the host already */
    const int greedy = cb_sampler_greedy(&sampler);
    int32_t next = -1;
    int have_next = 0;
    while (rc == CB_OK && !em.done) {
        int32_t id = have_next ? next : cb_sampler_next(&sampler, logits, probs);
        rc = cb_emitter_push(&em, id, e);
        if (out->stats.new_tokens == 1) t1 = cb_clock_s();
        if (rc != CB_OK || em.done) break;
        if (s->len >= s->cfg.max_seq_len) {
            stop_with(&em, CB_STOP_CONTEXT);
            break;
        }
        if (greedy) {
            int bad = 0;
            rc = cb_session_forward_argmax(s, &id, 1, &next, &bad, e);
            if (rc == CB_OK && bad) rc = nonfinite_error(out->stats.new_tokens, e);
            have_next = 1;
        } else {
            rc = cb_session_forward(s, &id, 1, logits, 0, e);
            if (rc == CB_OK) rc = cb_generate_check_logits(logits, V, out->stats.new_tokens, e);
        }
    }
    double t2 = cb_clock_s();
    out->stats.cache_bytes = cb_session_cache_bytes(s).payload;
    if (out->stats.new_tokens == 0) t1 = t2;
    out->stats.prefill_s = t1 - t0;
    out->stats.decode_s = t2 - t1;
    if (rc == CB_OK) cb_emitter_finish(&em);
    free(logits);
    free(probs);
    cb_sampler_free(&sampler);
    if (rc != CB_OK) cb_generate_output_free(out);
    return rc;
}

int cb_generate(const cb_model *m, const cb_session_config *scfg, const int32_t *prompt, int n,
                const cb_generate_config *cfg, const cb_generate_io *io, cb_generate_output *out, cb_error *e) {
    cb_session s;
    memset(out, 0, sizeof *out);
    CB_TRY(cb_session_init(&s, m, scfg, e));
    int rc = cb_session_generate(&s, prompt, n, cfg, io, out, e);
    cb_session_free(&s);
    return rc;
}
