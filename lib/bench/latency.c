/* latency.c: prefill time and decode speed over prompt and generation lengths (see
 * latency.h), through the decoding session and generation loop of lib/infer. */
#include "bench/latency.h"

#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/results_json.h"
#include "core/json_doc.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "infer/batch.h"
#include "infer/generate.h"

int cb_bench_prompt_ids(int32_t *out, int n, int vocab, const char *data, cb_error *e) {
    if (!data) {
        cb_rng r;
        cb_rng_init(&r, CB_BENCH_PROMPT_SEED);
        for (int i = 0; i < n; i++) out[i] = (int32_t)(cb_rng_next(&r) % (uint64_t)vocab);
        return CB_OK;
    }
    cb_dataset ds;
    CB_TRY(cb_dataset_open(&ds, data, e));
    int rc = CB_OK;
    if (ds.n_tokens < (size_t)n)
        rc = cb_fail(e, CB_E_INVALID, data, "%zu tokens are fewer than a prompt of %d", ds.n_tokens, n);
    for (int i = 0; rc == CB_OK && i < n; i++) {
        int64_t t = cb_dataset_token(&ds, (size_t)i);
        if (t >= vocab) rc = cb_fail(e, CB_E_INVALID, data, "token id %lld at index %d is past the vocabulary (%d)",
                                     (long long)t, i, vocab);
        out[i] = (int32_t)t;
    }
    cb_dataset_close(&ds);
    return rc;
}

/* The result from the timed runs' values (pre, tot: timed_runs; dec, mspt: nd). */
static void summarize(cb_latency_result *r, const double *pre, const double *tot, int timed_runs, const double *dec,
                      const double *mspt, int nd) {
    cb_stats_summarize(&r->prefill_ms, pre, timed_runs);
    cb_stats_summarize(&r->total_tok_s, tot, timed_runs);
    cb_stats_summarize(&r->decode_tok_s, dec, nd);
    cb_stats_summarize(&r->decode_ms_per_token, mspt, nd);
}

int cb_latency_measure(cb_latency_result *r, cb_session *s, const int32_t *prompt, int prompt_len, int gen_len,
                       int warmup_runs, int timed_runs, cb_error *e) {
    memset(r, 0, sizeof *r);
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0; /* greedy: the same work every run */
    g.stop.max_new_tokens = gen_len;
    g.stop.n_eos = 0;
    double *pre = cb_malloc((size_t)timed_runs * 4, sizeof *pre, e);
    if (!pre) return CB_E_RUNTIME;
    double *dec = pre + timed_runs, *mspt = dec + timed_runs, *tot = mspt + timed_runs;
    int rc = CB_OK, nd = 0;
    for (int i = 0; rc == CB_OK && i < warmup_runs + timed_runs; i++) {
        cb_session_reset(s);
        cb_generate_output out;
        cb_generate_io io = {0}; /* ids only: no text to decode */
        rc = cb_session_generate(s, prompt, prompt_len, &g, &io, &out, e);
        if (rc != CB_OK) break;
        const cb_generate_stats *st = &out.stats;
        if (st->new_tokens != gen_len)
            rc = cb_fail(e, CB_E_RUNTIME, "", "generated %d tokens, not %d (stopped: %s)", st->new_tokens, gen_len,
                         cb_stop_reason_name(st->stop_reason));
        int k = i - warmup_runs;
        if (rc == CB_OK && k >= 0) {
            pre[k] = 1e3 * st->prefill_s;
            tot[k] = gen_len / (st->prefill_s + st->decode_s);
            if (gen_len > 1 && st->decode_s > 0) {
                dec[nd] = (gen_len - 1) / st->decode_s;
                mspt[nd] = 1e3 * st->decode_s / (gen_len - 1);
                nd++;
            }
        }
        cb_generate_output_free(&out);
    }
    if (rc == CB_OK) summarize(r, pre, tot, timed_runs, dec, mspt, nd);
    free(pre);
    return rc;
}

int cb_latency_measure_batch(cb_latency_result *r, cb_batch *b, const int32_t *const *prompts, int prompt_len,
                             int gen_len, int warmup_runs, int timed_runs, cb_error *e) {
    memset(r, 0, sizeof *r);
    const int B = b->n;
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = gen_len;
    g.stop.n_eos = 0;
    double *pre = cb_malloc((size_t)timed_runs * 4, sizeof *pre, e);
    int *lens = pre ? cb_malloc((size_t)B, sizeof *lens, e) : NULL;
    cb_generate_output *outs = lens ? cb_calloc((size_t)B, sizeof *outs, e) : NULL;
    if (!outs) {
        free(pre);
        free(lens);
        return CB_E_RUNTIME;
    }
    double *dec = pre + timed_runs, *mspt = dec + timed_runs, *tot = mspt + timed_runs;
    for (int i = 0; i < B; i++) lens[i] = prompt_len;
    int rc = CB_OK, nd = 0;
    for (int i = 0; rc == CB_OK && i < warmup_runs + timed_runs; i++) {
        for (int q = 0; q < B; q++) cb_session_reset(&b->seqs[q]);
        cb_generate_io io = {0};
        double t0 = cb_bench_now();
        rc = cb_batch_generate(b, prompts, lens, B, &g, &io, outs, e);
        double wall = cb_bench_now() - t0, prefill = 0, decode = 0;
        for (int q = 0; rc == CB_OK && q < B; q++) {
            const cb_generate_stats *st = &outs[q].stats;
            if (st->new_tokens != gen_len && rc == CB_OK)
                rc = cb_fail(e, CB_E_RUNTIME, "", "sequence %d generated %d tokens, not %d (stopped: %s)", q,
                             st->new_tokens, gen_len, cb_stop_reason_name(st->stop_reason));
            prefill += st->prefill_s; /* the prompts run one after another */
            if (st->decode_s > decode) decode = st->decode_s; /* the steps run together */
        }
        int k = i - warmup_runs;
        if (rc == CB_OK && k >= 0) {
            pre[k] = 1e3 * prefill;
            tot[k] = (double)B * gen_len / wall;
            if (gen_len > 1 && decode > 0) {
                dec[nd] = (double)B * (gen_len - 1) / decode;
                mspt[nd] = 1e3 * decode / (gen_len - 1);
                nd++;
            }
        }
        for (int q = 0; rc == CB_OK && q < B; q++) cb_generate_output_free(&outs[q]);
    }
    if (rc == CB_OK) summarize(r, pre, tot, timed_runs, dec, mspt, nd);
    free(outs);
    free(lens);
    free(pre);
    return rc;
}

static const char *kind_of(const json_t *cfg, const char *key) {
    const char *k = json_string_value(json_object_get(cfg, key));
    return k ? k : "fp32";
}

/* One record: prompts of P tokens, G new tokens, B sequences together (1: one session). */
static int latency_one(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, int P, int G, int B,
                       cb_kv_kind kind, cb_kv_kind weights, int warm, int timed, int ctx, cb_error *e) {
    json_t *rec = cb_bench_record_new(c, bench, m);
    json_t *p = cb_bench_params(rec);
    json_object_set_new(p, "prompt_length", json_integer(P));
    json_object_set_new(p, "generation_length", json_integer(G));
    json_object_set_new(p, "batch_size", json_integer(B));
    json_object_set_new(p, "cache_kind", json_string(kind_of(cfg, "cache_kind")));
    json_object_set_new(p, "weights", json_string(kind_of(cfg, "weights")));
    json_object_set_new(p, "warmup_runs", json_integer(warm));
    json_object_set_new(p, "timed_runs", json_integer(timed));
    json_object_set_new(p, "prompt", json_string(c->data ? c->data : "random ids (seed 1337)"));
    double t0 = cb_bench_now();
    if (ctx > 0 && P + G > ctx) {
        char why[160];
        snprintf(why, sizeof why, "prompt %d + %d new tokens exceed the model's context (%d)", P, G, ctx);
        json_object_set_new(rec, "skipped", json_string(why));
        cb_bench_progress(c, "%s: skipped: %s", m->name, why);
        return cb_bench_emit(c, rec, 0, e);
    }
    /* B prompts: the first B P ids of the data (or of the seeded stream), P each */
    int32_t *ids = cb_malloc((size_t)P * B, sizeof *ids, e);
    const int32_t **prompts = ids ? cb_malloc((size_t)B, sizeof *prompts, e) : NULL;
    int rc = prompts ? cb_bench_prompt_ids(ids, P * B, cb_bench_vocab(&m->model), c->data, e) : CB_E_RUNTIME;
    for (int q = 0; prompts && q < B; q++) prompts[q] = ids + (size_t)q * P;
    cb_session_config sc = cb_session_config_default();
    sc.max_seq_len = P + G;
    sc.kinds.k = sc.kinds.k_sem = sc.kinds.v = kind;
    sc.weight_kind = weights;
    sc.backend = c->be;
    cb_latency_result r;
    if (rc == CB_OK && B == 1) {
        cb_session s;
        rc = cb_session_init(&s, &m->model, &sc, e);
        if (rc == CB_OK) {
            rc = cb_latency_measure(&r, &s, ids, P, G, warm, timed, e);
            cb_session_free(&s);
        }
    } else if (rc == CB_OK) {
        cb_batch b;
        rc = cb_batch_init(&b, &m->model, &sc, B, e);
        if (rc == CB_OK) {
            rc = cb_latency_measure_batch(&r, &b, prompts, P, G, warm, timed, e);
            cb_batch_free(&b);
        }
    }
    free(prompts);
    free(ids);
    if (rc != CB_OK) {
        json_decref(rec);
        return rc;
    }
    json_t *v = cb_bench_values(rec);
    json_object_set_new(v, "prefill_ms", cb_stats_json(&r.prefill_ms));
    json_object_set_new(v, "decode_tokens_per_s", cb_stats_json(&r.decode_tok_s));
    json_object_set_new(v, "decode_ms_per_token", cb_stats_json(&r.decode_ms_per_token));
    json_object_set_new(v, "tokens_per_s", cb_stats_json(&r.total_tok_s));
    cb_bench_progress(c, "%s: prompt %d, %d new, batch %d: prefill %.2f ms, decode %.1f tokens/s (p50)", m->name, P, G,
                      B, r.prefill_ms.p50, r.decode_tok_s.p50);
    return cb_bench_emit(c, rec, cb_bench_now() - t0, e);
}

int cb_bench_latency(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    const json_t *pls = json_object_get(cfg, "prompt_lengths"), *gls = json_object_get(cfg, "generation_lengths");
    const json_t *bss = json_object_get(cfg, "batch_sizes");
    int warm = (int)json_integer_value(json_object_get(cfg, "warmup_runs"));
    int timed = (int)json_integer_value(json_object_get(cfg, "timed_runs"));
    cb_kv_kind kind, weights;
    if (!cb_kv_kind_from_name(kind_of(cfg, "cache_kind"), &kind))
        return cb_fail(e, CB_E_INVALID, cb_loc(cfg, "cache_kind"), "cache_kind: unknown kind %s",
                       kind_of(cfg, "cache_kind"));
    if (!cb_kv_kind_from_name(kind_of(cfg, "weights"), &weights))
        return cb_fail(e, CB_E_INVALID, cb_loc(cfg, "weights"), "weights: unknown kind %s", kind_of(cfg, "weights"));
    int ctx = cb_model_max_seq_len(&m->model);
    int rc = CB_OK;
    for (size_t i = 0; rc == CB_OK && i < json_array_size(pls); i++) {
        int P = (int)json_integer_value(json_array_get(pls, i));
        for (size_t j = 0; rc == CB_OK && j < json_array_size(gls); j++) {
            int G = (int)json_integer_value(json_array_get(gls, j));
            for (size_t k = 0; rc == CB_OK && k < (bss ? json_array_size(bss) : 1); k++) {
                int B = bss ? (int)json_integer_value(json_array_get(bss, k)) : 1;
                rc = latency_one(c, bench, cfg, m, P, G, B, kind, weights, warm, timed, ctx, e);
            }
        }
    }
    return rc;
}
