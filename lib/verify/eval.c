/* eval.c: scoring one behavioural case on one model. Generation goes through the decoding
 * session (infer/generate.h), as cb-generate runs it; the choices are scored on the same
 * session, the prompt run once and each choice appended and rolled back. */
#include "verify/eval.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "infer/generate.h"

int cb_eval_first_int(const char *text, size_t n, long long *v) {
    for (size_t i = 0; i < n; i++) {
        if (text[i] < '0' || text[i] > '9') continue;
        size_t start = i > 0 && text[i - 1] == '-' ? i - 1 : i, end = i;
        while (end < n && text[end] >= '0' && text[end] <= '9') end++;
        char buf[32];
        if (end - start >= sizeof buf) return 0; /* more digits than a long long holds */
        memcpy(buf, text + start, end - start);
        buf[end - start] = 0;
        errno = 0;
        long long x = strtoll(buf, NULL, 10);
        if (errno) return 0;
        *v = x;
        return 1;
    }
    return 0;
}

double cb_eval_logprob(const float *logits, int V, int32_t id) {
    double max = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - max);
    return (double)logits[id] - max - log(sum);
}

void cb_eval_outcome_free(cb_eval_outcome *o) {
    free(o->output);
    free(o->logprob);
    free(o->choice_tokens);
    memset(o, 0, sizeof *o);
}

static int encode(cb_tokenizer *tok, const char *text, cb_ids *ids, cb_error *e) {
    return cb_tokenizer_encode(tok, (const uint8_t *)text, strlen(text), 0, ids, e);
}

static int run_int_greedy(cb_eval_outcome *o, cb_session *s, cb_tokenizer *tok, const cb_eval_case *c,
                          const cb_eval_config *cfg, const cb_ids *prompt, cb_error *e) {
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = cfg->max_new_tokens;
    g.stop.n_eos = cfg->n_eos;
    memcpy(g.stop.eos, cfg->eos, sizeof g.stop.eos);
    g.truncate = 1;
    cb_generate_io io = {.tok = tok};
    cb_generate_output out;
    memset(&out, 0, sizeof out);
    cb_session_reset(s);
    int rc = cb_session_generate(s, prompt->v, (int)prompt->n, &g, &io, &out, e);
    if (rc == CB_OK) {
        o->output = cb_malloc(out.text.n + 1, 1, e);
        if (!o->output) rc = CB_E_RUNTIME;
    }
    if (rc == CB_OK) {
        if (out.text.n) memcpy(o->output, out.text.p, out.text.n);
        o->output[out.text.n] = 0;
        o->output_len = out.text.n;
        o->prompt_tokens = out.stats.prompt_tokens;
        o->truncated = out.stats.truncated;
        o->new_tokens = out.stats.new_tokens;
        o->has_int = cb_eval_first_int(o->output, o->output_len, &o->value);
        o->correct = o->has_int && o->value == c->answer;
    }
    cb_generate_output_free(&out);
    return rc;
}

static int run_choices(cb_eval_outcome *o, cb_session *s, cb_tokenizer *tok, const cb_eval_case *c,
                       const cb_ids *prompt, cb_error *e) {
    int n = c->n_choices, V = s->vocab, ctx = s->cfg.max_seq_len, longest = 0, rc = CB_OK;
    cb_ids *ids = cb_calloc((size_t)n, sizeof *ids, e);
    o->logprob = cb_calloc((size_t)n, sizeof *o->logprob, e);
    o->choice_tokens = cb_calloc((size_t)n, sizeof *o->choice_tokens, e);
    if (!ids || !o->logprob || !o->choice_tokens) rc = CB_E_RUNTIME;
    for (int j = 0; rc == CB_OK && j < n; j++) {
        rc = encode(tok, c->choices[j], &ids[j], e);
        if (rc == CB_OK && ids[j].n == 0)
            rc = cb_fail(e, CB_E_INVALID, c->where, "%s.choices[%d]: \"%s\" has no tokens, so it cannot be scored",
                         c->path, j, c->choices[j]);
        if (rc == CB_OK && (long)ids[j].n > longest) longest = (int)ids[j].n;
        if (rc == CB_OK) o->choice_tokens[j] = (int)ids[j].n;
    }
    /* the prompt's last tokens that leave room for the longest choice (its last token is
     * scored, never run), the same for every choice */
    int keep = (int)prompt->n;
    if (rc == CB_OK && keep + longest - 1 > ctx) keep = ctx - (longest - 1);
    if (rc == CB_OK && keep < 1)
        rc = cb_fail(e, CB_E_INVALID, c->where, "%s: a choice of %d tokens leaves no room for the prompt in a "
                     "context of %d", c->path, longest, ctx);
    float *first = cb_malloc((size_t)V, sizeof *first, e);
    float *rows = cb_malloc((size_t)(longest > 1 ? longest - 1 : 1) * (size_t)V, sizeof *rows, e);
    if (rc == CB_OK && (!first || !rows)) rc = CB_E_RUNTIME;
    if (rc == CB_OK) {
        o->prompt_tokens = keep;
        o->truncated = (int)prompt->n - keep;
        cb_session_reset(s);
        rc = cb_session_forward(s, prompt->v + o->truncated, keep, first, 0, e);
    }
    if (rc == CB_OK) rc = cb_generate_check_logits(first, V, 0, e);
    for (int j = 0; rc == CB_OK && j < n; j++) {
        int k = (int)ids[j].n;
        cb_session_truncate(s, keep);
        double lp = cb_eval_logprob(first, V, ids[j].v[0]);
        if (k > 1) rc = cb_session_forward(s, ids[j].v, k - 1, rows, 1, e);
        for (int i = 1; rc == CB_OK && i < k; i++) {
            rc = cb_generate_check_logits(rows + (size_t)(i - 1) * V, V, i, e);
            if (rc == CB_OK) lp += cb_eval_logprob(rows + (size_t)(i - 1) * V, V, ids[j].v[i]);
        }
        o->logprob[j] = lp;
        if (j == 0 || lp > o->logprob[o->picked]) o->picked = j;
    }
    if (rc == CB_OK) o->correct = o->picked == c->answer_choice;
    for (int j = 0; ids && j < n; j++) cb_ids_free(&ids[j]);
    free(ids);
    free(first);
    free(rows);
    return rc;
}

int cb_eval_case_run(cb_eval_outcome *o, cb_session *s, cb_tokenizer *tok, const cb_eval_case *c,
                     const cb_eval_config *cfg, cb_error *e) {
    memset(o, 0, sizeof *o);
    cb_ids prompt = {0};
    int rc = encode(tok, c->prompt, &prompt, e);
    if (rc == CB_OK && prompt.n == 0)
        rc = cb_fail(e, CB_E_INVALID, c->where, "%s.prompt: the prompt has no tokens; a case needs one to start from",
                     c->path);
    if (rc == CB_OK)
        rc = c->kind == CB_EVAL_INT_GREEDY ? run_int_greedy(o, s, tok, c, cfg, &prompt, e)
                                           : run_choices(o, s, tok, c, &prompt, e);
    cb_ids_free(&prompt);
    if (rc != CB_OK) {
        if (rc != CB_E_INVALID) cb_error_prefix(e, "%s (case %s)", c->path, c->id); /* the others name it */
        cb_eval_outcome_free(o);
    }
    return rc;
}
