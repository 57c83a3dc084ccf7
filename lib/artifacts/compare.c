/* compare.c: the headline comparison of the models (see artifacts.h): one row per metric,
 * each model's value and its ratio to the reference model's. */
#include "artifacts/artifacts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int is(const json_t *r, const char *type) {
    const char *t = str(r, "type");
    return t && strcmp(t, type) == 0 && !json_object_get(r, "skipped");
}

/* a value: a number, or a stats object's p50 */
static double value_of(const json_t *v) {
    if (json_is_number(v)) return json_number_value(v);
    const json_t *p50 = json_object_get(v, "p50");
    return json_is_number(p50) ? json_number_value(p50) : NAN;
}

static double param(const json_t *r, const char *key) {
    const json_t *v = json_object_get(json_object_get(r, "params"), key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static double val(const json_t *r, const char *key) { return value_of(json_object_get(json_object_get(r, "values"), key)); }

static void add_row(json_t *rows, const json_t *models, const char *metric, const char *unit, const char *better,
                    json_t *values) {
    if (json_object_size(values) == 0) {
        json_decref(values);
        return;
    }
    const char *ref = cb_artifacts_reference(models);
    json_t *change = json_object();
    const json_t *rv = ref ? json_object_get(values, ref) : NULL;
    if (json_is_number(rv) && json_number_value(rv) != 0) {
        const char *m;
        json_t *v;
        json_object_foreach(values, m, v) {
            if (strcmp(m, ref) != 0) json_object_set_new(change, m, json_real(json_number_value(v) / json_number_value(rv)));
        }
    }
    json_array_append_new(rows, json_pack("{s:s, s:s, s:s, s:o, s:o}", "metric", metric, "unit", unit, "better", better,
                                          "values", values, "change", change));
}

/* ids of the benchmarks of a type, in order */
static json_t *bench_ids(const json_t *bench, const char *type) {
    json_t *ids = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(bench, i, r) {
        if (!is(r, type)) continue;
        const char *id = str(r, "benchmark");
        int seen = 0;
        for (size_t k = 0; id && k < json_array_size(ids); k++) seen |= strcmp(json_string_value(json_array_get(ids, k)), id) == 0;
        if (id && !seen) json_array_append_new(ids, json_string(id));
    }
    return ids;
}

static int same(const char *a, const char *b) { return a && b && strcmp(a, b) == 0; }

/* the largest value of params.key that every model measured in benchmark id (with the
 * param `also` equal to also_v when also is not NULL); NaN when none */
static double largest_common(const json_t *bench, const json_t *models, const char *type, const char *id,
                             const char *key, const char *also, double also_v, const char *kind) {
    double best = NAN;
    size_t i;
    json_t *r;
    json_array_foreach(bench, i, r) {
        if (!is(r, type) || !same(str(r, "benchmark"), id)) continue;
        if (kind && !same(str(json_object_get(r, "params"), "cache_kind"), kind)) continue;
        if (also && param(r, also) != also_v) continue;
        double x = param(r, key);
        if (!(x > best || isnan(best))) continue;
        int all = 1; /* every model has this x */
        for (size_t k = 0; k < json_array_size(models); k++) {
            const char *m = json_string_value(json_array_get(models, k));
            int has = 0;
            size_t j;
            json_t *q;
            json_array_foreach(bench, j, q) {
                if (is(q, type) && same(str(q, "benchmark"), id) && same(str(q, "model"), m) && param(q, key) == x &&
                    (!also || param(q, also) == also_v) &&
                    (!kind || same(str(json_object_get(q, "params"), "cache_kind"), kind)))
                    has = 1;
            }
            all &= has;
        }
        if (all) best = x;
    }
    return best;
}

static void compare_latency(json_t *rows, const cb_artifacts_input *in, const json_t *models, const char *id) {
    double P = largest_common(in->bench, models, "latency", id, "prompt_length", NULL, 0, NULL);
    if (isnan(P)) return;
    double G = largest_common(in->bench, models, "latency", id, "generation_length", "prompt_length", P, NULL);
    json_t *dec = json_object(), *pre = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        if (!is(r, "latency") || !same(str(r, "benchmark"), id) || param(r, "prompt_length") != P ||
            param(r, "generation_length") != G)
            continue;
        const char *m = str(r, "model");
        double d = val(r, "decode_tokens_per_s"), p = val(r, "prefill_ms");
        if (m && isfinite(d) && !json_object_get(dec, m)) json_object_set_new(dec, m, json_real(d));
        if (m && isfinite(p) && !json_object_get(pre, m)) json_object_set_new(pre, m, json_real(p));
    }
    char metric[160];
    snprintf(metric, sizeof metric, "Decode throughput (prompt %.0f)", P);
    add_row(rows, models, metric, "tok/s", "higher", dec);
    snprintf(metric, sizeof metric, "Prefill (prompt %.0f)", P);
    add_row(rows, models, metric, "ms", "lower", pre);
}

static void compare_memory(json_t *rows, const cb_artifacts_input *in, const json_t *models, const char *id) {
    json_t *kinds = json_array();
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        const char *k = str(json_object_get(r, "params"), "cache_kind");
        if (!is(r, "memory") || !same(str(r, "benchmark"), id) || !k) continue;
        int seen = 0;
        for (size_t j = 0; j < json_array_size(kinds); j++) seen |= same(json_string_value(json_array_get(kinds, j)), k);
        if (!seen) json_array_append_new(kinds, json_string(k));
    }
    for (size_t j = 0; j < json_array_size(kinds); j++) {
        const char *kind = json_string_value(json_array_get(kinds, j));
        double L = largest_common(in->bench, models, "memory", id, "sequence_length", NULL, 0, kind);
        if (isnan(L)) continue;
        json_t *kv = json_object(), *peak = json_object();
        json_array_foreach(in->bench, i, r) {
            if (!is(r, "memory") || !same(str(r, "benchmark"), id) || param(r, "sequence_length") != L ||
                !same(str(json_object_get(r, "params"), "cache_kind"), kind))
                continue;
            const char *m = str(r, "model");
            double b = val(r, "kv_bytes_per_token"), p = val(r, "peak_rss_bytes");
            if (m && isfinite(b) && !json_object_get(kv, m)) json_object_set_new(kv, m, json_real(b));
            if (m && isfinite(p) && !json_object_get(peak, m)) json_object_set_new(peak, m, json_real(p / 1048576.0));
        }
        char metric[160];
        snprintf(metric, sizeof metric, "KV cache, %s", kind);
        add_row(rows, models, metric, "bytes/token", "lower", kv);
        if (j == 0) {
            snprintf(metric, sizeof metric, "Peak resident memory (%.0f tokens, %s)", L, kind);
            add_row(rows, models, metric, "MB", "lower", peak);
        } else {
            json_decref(peak);
        }
    }
    json_decref(kinds);
}

/* one row from the records of benchmark id: value key per model (the last record wins) */
static void compare_simple(json_t *rows, const cb_artifacts_input *in, const json_t *models, const char *type,
                           const char *id, const char *key, int summary_only, const char *metric, const char *unit,
                           const char *better) {
    json_t *values = json_object();
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        if (!is(r, type) || !same(str(r, "benchmark"), id)) continue;
        if (summary_only && !json_is_true(json_object_get(r, "summary"))) continue;
        const char *m = str(r, "model");
        double v = val(r, key);
        if (m && isfinite(v)) json_object_set_new(values, m, json_real(v));
    }
    add_row(rows, models, metric, unit, better, values);
}

json_t *cb_artifacts_compare(const cb_artifacts_input *in, const json_t *models) {
    json_t *rows = json_array();
    struct {
        const char *type;
    } order[] = {{"perplexity"}, {"latency"}, {"memory"}, {"accuracy"}, {"custom"}};
    for (size_t t = 0; t < sizeof order / sizeof *order; t++) {
        json_t *ids = bench_ids(in->bench, order[t].type);
        for (size_t k = 0; k < json_array_size(ids); k++) {
            const char *id = json_string_value(json_array_get(ids, k));
            char metric[200];
            int many = json_array_size(ids) > 1;
            if (strcmp(order[t].type, "perplexity") == 0) {
                snprintf(metric, sizeof metric, many ? "Perplexity (%s)" : "Perplexity", id);
                compare_simple(rows, in, models, "perplexity", id, "perplexity", 0, metric, "", "lower");
            } else if (strcmp(order[t].type, "latency") == 0) {
                compare_latency(rows, in, models, id);
            } else if (strcmp(order[t].type, "memory") == 0) {
                compare_memory(rows, in, models, id);
            } else if (strcmp(order[t].type, "accuracy") == 0) {
                snprintf(metric, sizeof metric, "Accuracy (%s)", id);
                compare_simple(rows, in, models, "accuracy", id, "accuracy", 0, metric, "", "higher");
            } else {
                snprintf(metric, sizeof metric, "Suite score (%s)", id);
                compare_simple(rows, in, models, "custom", id, "score", 1, metric, "", "higher");
            }
        }
        json_decref(ids);
    }
    return rows;
}
