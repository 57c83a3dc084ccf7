/* perplexity.h: the perplexity of a model over a token dataset: consecutive windows of
 * block_size + 1 tokens from the start (no overlap, no wrap-around), batch_size rows a
 * batch, num_batches batches at most; the mean next-token cross-entropy over every
 * position, exp of it, and a 95% interval over the batches' means. */
#ifndef CB_BENCH_PERPLEXITY_H
#define CB_BENCH_PERPLEXITY_H

#include "backend/backend.h"
#include "bench/stats.h"
#include "core/error.h"
#include "data/dataset.h"
#include "infer/kv_cache.h"
#include "model/model.h"

typedef struct cb_ppl_result {
    int batches;      /* batches evaluated (fewer than asked where the data end) */
    long tokens;      /* positions scored: batches * batch_size * block_size */
    double loss;      /* mean cross-entropy in nats */
    double perplexity;/* exp(loss) */
    cb_stats batch_loss; /* over the batches' mean losses */
} cb_ppl_result;

/* be NULL: the CPU. A dataset shorter than one batch, ids past the model's vocabulary, or a
 * block longer than the model's context: CB_E_INVALID naming the dataset. */
int cb_perplexity_measure(cb_ppl_result *r, const cb_model *m, cb_backend *be, const cb_dataset *ds,
                          int batch_size, int block_size, int num_batches, cb_error *e);

/* The same windows and positions through a decode session whose KV cache stores kinds
 * (infer/kv_cache.h), teacher-forced in the session's prefill chunks: every key and value a
 * position's attention reads went through the cache's kinds (the chunk's own tokens are
 * appended before its attention runs), as a decode step at that position reads them; the
 * one exception is a packed tensor's open group (rows shorter than a block: at most
 * group - 1 of the newest tokens up to the position), which a step, and so each query
 * here, reads from the float stage (cb_kv_tensor_read_at). be NULL: the CPU. */
int cb_perplexity_measure_cached(cb_ppl_result *r, const cb_model *m, cb_backend *be, const cb_dataset *ds,
                                 int batch_size, int block_size, int num_batches, const cb_kv_kinds *kinds,
                                 cb_error *e);

#endif
