/* batch.c: several sequences decoded together (batch.h). */
#include "infer/batch.h"

#include <stdlib.h>
#include <string.h>
#include "core/clock.h"

int cb_batch_init(cb_batch *b, const cb_model *m, const cb_session_config *cfg, int n, cb_error *e) {
    memset(b, 0, sizeof *b);
    if (n < 1) return cb_fail(e, CB_E_USAGE, "", "a batch of %d sequences", n);
    b->seqs = cb_calloc((size_t)n, sizeof *b->seqs, e);
    if (!b->seqs) return e->code;
    cb_session_config c = *cfg;
    if (c.chunk < n) c.chunk = n; /* a step is one pass of up to n rows */
    c.weights_from = NULL;
    int rc = cb_session_init(&b->seqs[0], m, &c, e);
    if (rc == CB_OK) b->n = 1;
    c.weights_from = &b->seqs[0];
    for (int i = 1; i < n && rc == CB_OK; i++) {
        rc = cb_session_init(&b->seqs[i], m, &c, e);
        if (rc == CB_OK) b->n++;
    }
    if (rc != CB_OK) cb_batch_free(b);
    return rc;
}

void cb_batch_free(cb_batch *b) {
    for (int i = b->n - 1; i >= 0; i--) cb_session_free(&b->seqs[i]); /* the first, holding the weights, last */
    free(b->seqs);
    memset(b, 0, sizeof *b);
}

/* A sequence of the batch and the prompt it generates from. */
typedef struct slot {
    int prompt; /* index of its prompt, -1: free */
    cb_sampler sampler;
    cb_emitter em;
    int32_t next;  /* the token its next step runs */
    double t0, t1; /* its prefill began; its first new token */
} slot;

typedef struct gen {
    cb_batch *b;
    const int32_t *const *prompts;
    const int *lens;
    int n_prompts, started;
    const cb_generate_config *cfg;
    cb_generate_io io; /* the tokenizer alone */
    cb_generate_output *outs;
    slot *slots;
    float *logits; /* (b->n, V) */
    double *probs; /* (V) */
    cb_session **rows; /* (b->n) a step's sequences, */
    int32_t *tokens;   /* their tokens */
    int *which;        /* and slots */
} gen;

static void stop_now(slot *sl, int reason) {
    sl->em.done = 1;
    sl->em.out->stats.stop_reason = reason;
}

static void finish(gen *g, slot *sl, const cb_session *s) {
    double now = cb_clock_s();
    cb_generate_stats *st = &sl->em.out->stats;
    st->cache_bytes = cb_session_cache_bytes(s).payload;
    if (st->new_tokens == 0) sl->t1 = now;
    st->prefill_s = sl->t1 - sl->t0;
    st->decode_s = now - sl->t1;
    cb_emitter_finish(&sl->em);
    cb_sampler_free(&sl->sampler);
    sl->prompt = -1;
    (void)g;
}

/* Take a sampled id; the sequence stops, or its next step runs the id. */
static int take(gen *g, slot *sl, cb_session *s, int32_t id, cb_error *e) {
    CB_TRY(cb_emitter_push(&sl->em, id, e));
    if (sl->em.out->stats.new_tokens == 1) sl->t1 = cb_clock_s();
    if (!sl->em.done && s->len >= s->cfg.max_seq_len) stop_now(sl, CB_STOP_CONTEXT);
    if (sl->em.done) finish(g, sl, s);
    else sl->next = id;
    return CB_OK;
}

/* Sequence si takes prompts until one of them does not stop at once, or none is left. */
static int refill(gen *g, int si, cb_error *e) {
    slot *sl = &g->slots[si];
    cb_session *s = &g->b->seqs[si];
    const int V = s->vocab;
    float *logits = g->logits + (size_t)si * V;
    while (sl->prompt < 0 && g->started < g->n_prompts) {
        const int i = g->started++, n = g->lens[i];
        cb_generate_output *out = &g->outs[i];
        int first;
        CB_TRY(cb_generate_fit_prompt(n, s->cfg.max_seq_len, g->cfg->stop.max_new_tokens, g->cfg->truncate, &first, e));
        CB_TRY(cb_sampler_init(&sl->sampler, &g->cfg->sample, V, e));
        sl->prompt = i;
        cb_emitter_init(&sl->em, &g->io, &g->cfg->stop, out);
        out->stats.truncated = first;
        out->stats.prompt_tokens = n - first;
        sl->t0 = sl->t1 = cb_clock_s();
        CB_TRY(cb_session_prefill(s, g->prompts[i] + first, n - first, logits, e));
        CB_TRY(cb_generate_check_logits(logits, V, 0, e));
        out->stats.reused = s->reused;
        if (g->cfg->stop.max_new_tokens <= 0) {
            stop_now(sl, CB_STOP_LENGTH);
            finish(g, sl, s);
            continue;
        }
        CB_TRY(take(g, sl, s, cb_sampler_next(&sl->sampler, logits, g->probs), e));
    }
    return CB_OK;
}

/* One step of every live sequence, each sampling its next token. */
static int step(gen *g, cb_error *e) {
    cb_batch *b = g->b;
    const int V = b->seqs[0].vocab;
    int k = 0;
    for (int si = 0; si < b->n; si++)
        if (g->slots[si].prompt >= 0) {
            g->which[k] = si;
            g->rows[k] = &b->seqs[si];
            g->tokens[k++] = g->slots[si].next;
        }
    CB_TRY(cb_session_forward_batch(g->rows, k, g->tokens, g->logits, e));
    for (int r = 0; r < k; r++) {
        slot *sl = &g->slots[g->which[r]];
        const float *row = g->logits + (size_t)r * V;
        CB_TRY(cb_generate_check_logits(row, V, sl->em.out->stats.new_tokens, e));
        CB_TRY(take(g, sl, g->rows[r], cb_sampler_next(&sl->sampler, row, g->probs), e));
    }
    for (int r = 0; r < k; r++) CB_TRY(refill(g, g->which[r], e));
    return CB_OK;
}

int cb_batch_generate(cb_batch *b, const int32_t *const *prompts, const int *lens, int n_prompts,
                      const cb_generate_config *cfg, const cb_generate_io *io, cb_generate_output *outs, cb_error *e) {
    memset(outs, 0, (size_t)(n_prompts > 0 ? n_prompts : 0) * sizeof *outs);
    const int V = b->seqs[0].vocab;
    gen g = {.b = b, .prompts = prompts, .lens = lens, .n_prompts = n_prompts, .cfg = cfg, .outs = outs};
    g.io.tok = io ? io->tok : NULL;
    g.slots = cb_calloc((size_t)b->n, sizeof *g.slots, e);
    g.logits = g.slots ? cb_malloc((size_t)b->n * V, sizeof *g.logits, e) : NULL;
    g.probs = g.logits ? cb_malloc((size_t)V, sizeof *g.probs, e) : NULL;
    g.rows = g.probs ? cb_malloc((size_t)b->n, sizeof *g.rows, e) : NULL;
    g.tokens = g.rows ? cb_malloc((size_t)b->n, sizeof *g.tokens, e) : NULL;
    g.which = g.tokens ? cb_malloc((size_t)b->n, sizeof *g.which, e) : NULL;
    int rc = g.which ? CB_OK : CB_E_RUNTIME;
    if (g.slots)
        for (int si = 0; si < b->n; si++) g.slots[si].prompt = -1;
    for (int si = 0; si < b->n && rc == CB_OK; si++) rc = refill(&g, si, e);
    for (;;) {
        int live = 0;
        for (int si = 0; g.slots && si < b->n; si++) live += g.slots[si].prompt >= 0;
        if (rc != CB_OK || !live) break;
        rc = step(&g, e);
    }
    for (int si = 0; g.slots && si < b->n; si++)
        if (g.slots[si].prompt >= 0) cb_sampler_free(&g.slots[si].sampler); /* an error left it live */
    free(g.slots);
    free(g.logits);
    free(g.probs);
    free(g.rows);
    free(g.tokens);
    free(g.which);
    if (rc != CB_OK)
        for (int i = 0; i < n_prompts; i++) cb_generate_output_free(&outs[i]);
    return rc;
}
