/* perplexity.c: perplexity over a dataset through full-sequence forward passes
 * (model/run.h) on the chosen device, or through a decode session with a quantized KV cache
 * (infer/session.h), and the benchmark that reports it. */
#include "bench/perplexity.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/results_json.h"
#include "core/json_doc.h"
#include "infer/session.h"
#include "model/program.h"
#include "model/run.h"

/* The batches there are: *nb of B windows of T + 1 tokens, at most num_batches. */
static int batches_of(const cb_model *m, const cb_dataset *ds, int B, int T, int num_batches, int *nb, cb_error *e) {
    int ctx = cb_model_max_seq_len(m);
    if (ctx > 0 && T > ctx)
        return cb_fail(e, CB_E_INVALID, ds->path, "block_size %d is longer than the model's context (%d)", T, ctx);
    /* windows start at k*T and need T+1 tokens: k*T + T + 1 <= n */
    long windows = ds->n_tokens >= (size_t)T + 1 ? (long)((ds->n_tokens - (size_t)T - 1) / (size_t)T) + 1 : 0;
    long avail = windows / B;
    if (avail < 1)
        return cb_fail(e, CB_E_INVALID, ds->path, "%zu tokens are fewer than one batch of %d x %d (+1)", ds->n_tokens,
                       B, T);
    *nb = avail < num_batches ? (int)avail : num_batches;
    return CB_OK;
}

static void summarize(cb_ppl_result *r, const double *losses, int nb, int B, int T) {
    cb_stats_summarize(&r->batch_loss, losses, nb);
    r->batches = nb;
    r->tokens = (long)nb * B * T;
    r->loss = r->batch_loss.mean; /* every batch scores B*T positions: the mean of means */
    r->perplexity = exp(r->loss);
}

int cb_perplexity_measure(cb_ppl_result *r, const cb_model *m, cb_backend *be, const cb_dataset *ds,
                          int batch_size, int block_size, int num_batches, cb_error *e) {
    memset(r, 0, sizeof *r);
    if (!be) be = cb_backend_cpu();
    const int B = batch_size, T = block_size;
    int nb;
    CB_TRY(batches_of(m, ds, B, T, num_batches, &nb, e));
    cb_program prog;
    CB_TRY(cb_program_init(&prog, m->plan, &m->params, B, T, e));
    cb_program_forward_only(&prog);
    CB_TRY(cb_dataset_check_vocab(ds, prog.vocab_size, e));
    cb_run run;
    int rc = cb_run_init_loss(&run, be, &prog, 0, e); /* the loss alone: no (B,T,V) logits kept */
    if (rc != CB_OK) {
        cb_program_free(&prog);
        return rc;
    }
    size_t n = (size_t)B * T;
    int32_t *x = cb_malloc(n, sizeof *x, e), *y = cb_malloc(n, sizeof *y, e);
    double *losses = cb_malloc((size_t)nb, sizeof *losses, e);
    const float *w = m->weights;
    float *dw = NULL;
    int32_t *dx = x, *dy = y;
    if (!x || !y || !losses) rc = CB_E_RUNTIME;
    if (rc == CB_OK && !be->unified) { /* weights and batches live in the device's memory */
        size_t wbytes = m->params.total_floats * sizeof(float);
        dw = be->alloc(be, wbytes, e);
        dx = dw ? be->alloc(be, n * sizeof *x, e) : NULL;
        dy = dx ? be->alloc(be, n * sizeof *y, e) : NULL;
        if (!dy) rc = CB_E_RUNTIME;
        else rc = be->upload(be, dw, m->weights, wbytes, e);
        w = dw;
    }
    for (int b = 0; rc == CB_OK && b < nb; b++) {
        for (int row = 0; row < B; row++) {
            size_t start = ((size_t)b * B + row) * (size_t)T;
            for (int t = 0; t < T; t++) {
                x[row * T + t] = (int32_t)cb_dataset_token(ds, start + t);
                y[row * T + t] = (int32_t)cb_dataset_token(ds, start + t + 1);
            }
        }
        if (!be->unified) {
            rc = be->upload(be, dx, x, n * sizeof *x, e);
            if (rc == CB_OK) rc = be->upload(be, dy, y, n * sizeof *y, e);
            if (rc != CB_OK) break;
        }
        float loss = cb_run_forward(&run, &prog, w, dx, dy);
        if (rc == CB_OK && be->synchronize) rc = be->synchronize(be, e);
        if (rc == CB_OK && !isfinite(loss))
            rc = cb_fail(e, CB_E_RUNTIME, ds->path, "the loss of batch %d is not finite (%g)", b, (double)loss);
        losses[b] = loss;
    }
    if (rc == CB_OK) summarize(r, losses, nb, B, T);
    if (!be->unified) {
        be->free(be, dw);
        if (dx != x) be->free(be, dx);
        if (dy != y) be->free(be, dy);
    }
    free(x);
    free(y);
    free(losses);
    cb_run_free(&run);
    cb_program_free(&prog);
    return rc;
}

/* -log softmax(logits)[y], in double */
static double nll_at(const float *logits, int V, int y) {
    double mx = logits[0], sum = 0;
    for (int i = 1; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return mx + log(sum) - (double)logits[y];
}

int cb_perplexity_measure_cached(cb_ppl_result *r, const cb_model *m, cb_backend *be, const cb_dataset *ds,
                                 int batch_size, int block_size, int num_batches, const cb_kv_kinds *kinds,
                                 cb_error *e) {
    memset(r, 0, sizeof *r);
    const int B = batch_size, T = block_size;
    int nb;
    CB_TRY(batches_of(m, ds, B, T, num_batches, &nb, e));
    cb_session s;
    cb_session_config sc = cb_session_config_default();
    sc.max_seq_len = T;
    sc.kinds = *kinds;
    sc.backend = be;
    CB_TRY(cb_session_init(&s, m, &sc, e));
    const int chunk = s.cfg.chunk, V = s.vocab;
    int rc = cb_dataset_check_vocab(ds, V, e);
    float *logits = rc == CB_OK ? cb_malloc((size_t)chunk * V, sizeof *logits, e) : NULL;
    int32_t *x = logits ? cb_malloc((size_t)T, sizeof *x, e) : NULL;
    double *losses = x ? cb_malloc((size_t)nb, sizeof *losses, e) : NULL;
    if (rc == CB_OK && !losses) rc = CB_E_RUNTIME;
    for (int b = 0; rc == CB_OK && b < nb; b++) {
        double sum = 0;
        for (int row = 0; rc == CB_OK && row < B; row++) {
            const size_t start = ((size_t)b * B + row) * (size_t)T;
            for (int t = 0; t < T; t++) x[t] = (int32_t)cb_dataset_token(ds, start + t);
            cb_session_reset(&s);
            for (int off = 0; rc == CB_OK && off < T; off += chunk) { // teacher-forced, the session's chunks
                const int n = T - off < chunk ? T - off : chunk;
                rc = cb_session_forward(&s, x + off, n, logits, 1, e);
                for (int i = 0; rc == CB_OK && i < n; i++)
                    sum += nll_at(logits + (size_t)i * V, V, (int)cb_dataset_token(ds, start + off + i + 1));
            }
        }
        losses[b] = sum / ((double)B * T);
        if (rc == CB_OK && !isfinite(losses[b]))
            rc = cb_fail(e, CB_E_RUNTIME, ds->path, "the loss of batch %d is not finite (%g)", b, losses[b]);
    }
    if (rc == CB_OK) summarize(r, losses, nb, B, T);
    free(logits);
    free(x);
    free(losses);
    cb_session_free(&s);
    return rc;
}

int cb_bench_perplexity(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    const char *path = c->data ? c->data : json_string_value(json_object_get(cfg, "dataset"));
    int B = (int)json_integer_value(json_object_get(cfg, "batch_size"));
    int T = (int)json_integer_value(json_object_get(cfg, "block_size"));
    int nb = (int)json_integer_value(json_object_get(cfg, "num_batches"));
    // cache_kind (optional): the positions through a decode session with that KV cache
    const char *kname = json_string_value(json_object_get(cfg, "cache_kind"));
    cb_kv_kind kind = CB_KV_F32;
    if (kname && !cb_kv_kind_from_name(kname, &kind))
        return cb_fail(e, CB_E_INVALID, cb_loc(cfg, "cache_kind"), "cache_kind: unknown kind %s", kname);
    const cb_kv_kinds kinds = {kind, kind, kind};
    cb_dataset ds;
    CB_TRY(cb_dataset_open(&ds, path, e));
    double t0 = cb_bench_now();
    cb_ppl_result r;
    int rc = kname ? cb_perplexity_measure_cached(&r, &m->model, c->be, &ds, B, T, nb, &kinds, e)
                   : cb_perplexity_measure(&r, &m->model, c->be, &ds, B, T, nb, e);
    cb_dataset_close(&ds);
    if (rc != CB_OK) return rc;
    json_t *rec = cb_bench_record_new(c, bench, m);
    if (kname) json_object_set_new(cb_bench_params(rec), "cache_kind", json_string(cb_kv_kind_name(kind)));
    json_object_set_new(cb_bench_params(rec), "dataset", json_string(path));
    json_object_set_new(cb_bench_params(rec), "block_size", json_integer(T));
    json_object_set_new(cb_bench_params(rec), "batch_size", json_integer(B));
    json_object_set_new(cb_bench_params(rec), "num_batches", json_integer(nb));
    json_t *v = cb_bench_values(rec);
    json_object_set_new(v, "batches", json_integer(r.batches));
    json_object_set_new(v, "tokens", json_integer(r.tokens));
    json_object_set_new(v, "loss", cb_bench_num(r.loss));
    json_object_set_new(v, "perplexity", cb_bench_num(r.perplexity));
    json_object_set_new(v, "batch_loss", cb_stats_json(&r.batch_loss));
    if (r.batches > 1)
        json_object_set_new(v, "perplexity_ci95",
                            json_pack("[o,o]", cb_bench_num(exp(r.batch_loss.ci95_lo)), cb_bench_num(exp(r.batch_loss.ci95_hi))));
    cb_bench_progress(c, "%s: perplexity %.4g over %ld tokens%s%s", m->name, r.perplexity, r.tokens,
                      kname ? " through a KV cache of " : "", kname ? cb_kv_kind_name(kind) : "");
    return cb_bench_emit(c, rec, cb_bench_now() - t0, e);
}
