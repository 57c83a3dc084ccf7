/* batch.h: several sequences decoded together (batched generation; the seed's caches with
 * batch_size > 1). One session a sequence holds its KV caches and tokens; the first holds
 * the weights, converted once, and the others use them (cb_session_config.weights_from).
 * A decoding step runs one new token of every live sequence as one pass of that many rows
 * (cb_session_forward_batch), so each weight matrix is read once a step for all of them
 * instead of once a sequence: the throughput of a memory-bound decode grows with the batch.
 * On the CPU and the GPU alike (each backend's decode attention takes each row to its own
 * sequence's caches: cb_pass.row_seqs). */
#ifndef CB_INFER_BATCH_H
#define CB_INFER_BATCH_H

#include "infer/generate.h"
#include "infer/session.h"

typedef struct cb_batch {
    cb_session *seqs; /* n sessions, seqs[0] holding the weights */
    int n;
} cb_batch;

/* n sessions of m with cfg (the chunk raised to n rows where it is smaller). */
int cb_batch_init(cb_batch *b, const cb_model *m, const cb_session_config *cfg, int n, cb_error *e);
void cb_batch_free(cb_batch *b);

/* Generation from prompts[i][0..lens[i]) for i < n_prompts, outs[i] each as
 * cb_session_generate gives it (cfg's sampler seeded alike for every prompt, so each output
 * is the one a generation of that prompt alone gives, up to the rounding of products over
 * several rows), b->n sequences at a time: a sequence that stops makes room for the next
 * prompt. io: its tokenizer turns ids into outs[i].text; its callbacks are not called (the
 * outputs finish out of order). Stats: prefill_s is the prompt's own pass, decode_s the
 * time from its first new token to its last, shared with the sequences beside it. On an
 * error every output is freed. */
int cb_batch_generate(cb_batch *b, const int32_t *const *prompts, const int *lens, int n_prompts,
                      const cb_generate_config *cfg, const cb_generate_io *io, cb_generate_output *outs, cb_error *e);

#endif
