/* latency.h: the time to first token and the decode speed of a model for one prompt
 * length and generation length: warmup runs, then timed runs, each on an emptied cache
 * (nothing of the prompt reused), greedy, no end-of-text stop, so every run generates
 * exactly gen_len tokens. */
#ifndef CB_BENCH_LATENCY_H
#define CB_BENCH_LATENCY_H

#include <stdint.h>
#include "bench/stats.h"
#include "core/error.h"
#include "infer/session.h"

typedef struct cb_latency_result {
    cb_stats prefill_ms;       /* the prompt's pass and the first token's sample */
    cb_stats decode_tok_s;     /* the other gen_len - 1 tokens per second (n 0 when gen_len 1) */
    cb_stats decode_ms_per_token;
    cb_stats total_tok_s;      /* gen_len over prefill + decode */
} cb_latency_result;

/* s: a session with room for prompt_len + gen_len tokens; prompt (prompt_len) ids. */
int cb_latency_measure(cb_latency_result *r, cb_session *s, const int32_t *prompt, int prompt_len, int gen_len,
                       int warmup_runs, int timed_runs, cb_error *e);

/* The same for b->n sequences decoded together (infer/batch.h), from prompts[0..b->n) of
 * prompt_len ids each: prefill_ms all their prompt passes (they run one after another),
 * decode_tok_s all their other tokens over the steps' time (they run together),
 * decode_ms_per_token a step's, total_tok_s all their tokens over the run's time. */
struct cb_batch;
int cb_latency_measure_batch(cb_latency_result *r, struct cb_batch *b, const int32_t *const *prompts, int prompt_len,
                             int gen_len, int warmup_runs, int timed_runs, cb_error *e);

/* Prompt ids: the first n of data (a .npy or .tokens file) when data is not NULL, else
 * uniform over [0, vocab) from CB_BENCH_PROMPT_SEED. out (n). */
int cb_bench_prompt_ids(int32_t *out, int n, int vocab, const char *data, cb_error *e);

#endif
