/* csv.c: perplexity.csv, latency.csv and memory.csv (RFC 4180: a field holding a comma, a
 * quote or a line break is quoted, quotes doubled); one row per measured point. */
#include "artifacts/artifacts.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include "core/atomic_file.h"

static void put_text(FILE *f, const char *s) {
    if (!s) s = "";
    if (strpbrk(s, ",\"\r\n")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
}

/* a JSON number as written (integers as integers), empty for null or missing */
static void put_num(FILE *f, const json_t *v) {
    if (json_is_integer(v)) fprintf(f, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v) && isfinite(json_real_value(v))) fprintf(f, "%.9g", json_real_value(v));
}

static const json_t *at(const json_t *r, const char *obj, const char *key) {
    return json_object_get(json_object_get(r, obj), key);
}

/* a column: "params.KEY", "values.KEY", "values.KEY.STAT" (a stats member; ci95_lo/ci95_hi),
 * or a top-level member */
static void put_col(FILE *f, const json_t *r, const char *col) {
    char buf[128];
    snprintf(buf, sizeof buf, "%s", col);
    char *dot = strchr(buf, '.');
    const json_t *v;
    if (!dot) {
        v = json_object_get(r, buf);
    } else {
        *dot = 0;
        char *key = dot + 1, *stat = strchr(key, '.');
        if (stat) *stat++ = 0;
        v = at(r, buf, key);
        if (stat) {
            if (strcmp(stat, "ci95_lo") == 0 || strcmp(stat, "ci95_hi") == 0)
                v = json_array_get(json_object_get(v, "ci95"), stat[5] == 'l' ? 0 : 1);
            else
                v = json_object_get(v, stat);
        } else if (json_is_array(v) && strstr(key, "ci95")) {
            v = NULL;
        }
    }
    if (json_is_string(v)) put_text(f, json_string_value(v));
    else put_num(f, v);
}

typedef struct csv_spec {
    const char *file, *type;
    const char *const *cols;
    const char *const *names;
    int n;
} csv_spec;

static const char *const PPL_COLS[] = {"benchmark", "model", "params.dataset", "params.block_size", "params.batch_size",
                                       "values.batches", "values.tokens", "values.loss", "values.perplexity",
                                       "values.batch_loss.ci95_lo", "values.batch_loss.ci95_hi"};
static const char *const PPL_NAMES[] = {"benchmark", "model", "dataset", "block_size", "batch_size", "batches",
                                        "tokens", "loss", "perplexity", "loss_ci95_lo", "loss_ci95_hi"};
static const char *const LAT_COLS[] = {
    "benchmark", "model", "params.cache_kind", "params.prompt_length", "params.generation_length",
    "params.timed_runs", "values.prefill_ms.mean", "values.prefill_ms.p50", "values.prefill_ms.p90",
    "values.prefill_ms.ci95_lo", "values.prefill_ms.ci95_hi", "values.decode_tokens_per_s.mean",
    "values.decode_tokens_per_s.p50", "values.decode_tokens_per_s.p90", "values.decode_tokens_per_s.ci95_lo",
    "values.decode_tokens_per_s.ci95_hi", "values.tokens_per_s.p50"};
static const char *const LAT_NAMES[] = {
    "benchmark", "model", "cache_kind", "prompt_length", "generation_length", "timed_runs", "prefill_ms_mean",
    "prefill_ms_p50", "prefill_ms_p90", "prefill_ms_ci95_lo", "prefill_ms_ci95_hi", "decode_tok_s_mean",
    "decode_tok_s_p50", "decode_tok_s_p90", "decode_tok_s_ci95_lo", "decode_tok_s_ci95_hi", "total_tok_s_p50"};
static const char *const MEM_COLS[] = {"benchmark", "model", "params.cache_kind", "params.sequence_length",
                                       "values.tokens", "values.kv_bytes", "values.kv_bytes_per_token",
                                       "values.kv_allocated_bytes", "values.weight_bytes", "values.peak_rss_bytes",
                                       "values.rss_bytes", "values.baseline_rss_bytes", "values.device_bytes"};
static const char *const MEM_NAMES[] = {"benchmark", "model", "cache_kind", "sequence_length", "tokens", "kv_bytes",
                                        "kv_bytes_per_token", "kv_allocated_bytes", "weight_bytes", "peak_rss_bytes",
                                        "rss_bytes", "baseline_rss_bytes", "device_bytes"};
#define N(a) (int)(sizeof(a) / sizeof *(a))
_Static_assert(N(PPL_COLS) == N(PPL_NAMES), "perplexity.csv columns");
_Static_assert(N(LAT_COLS) == N(LAT_NAMES), "latency.csv columns");
_Static_assert(N(MEM_COLS) == N(MEM_NAMES), "memory.csv columns");

static int write_csv(const cb_artifacts_input *in, const char *dir, const csv_spec *s, cb_error *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, s->file);
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path, e));
    for (int c = 0; c < s->n; c++) fprintf(af.fp, "%s%s", c ? "," : "", s->names[c]);
    fputc('\n', af.fp);
    size_t i;
    json_t *r;
    json_array_foreach(in->bench, i, r) {
        const char *type = json_string_value(json_object_get(r, "type"));
        if (!type || strcmp(type, s->type) != 0 || json_object_get(r, "skipped")) continue;
        for (int c = 0; c < s->n; c++) {
            if (c) fputc(',', af.fp);
            put_col(af.fp, r, s->cols[c]);
        }
        fputc('\n', af.fp);
    }
    return cb_atomic_commit(&af, e);
}

int cb_artifacts_write_csvs(const cb_artifacts_input *in, const char *dir, cb_error *e) {
    const csv_spec specs[] = {{"perplexity.csv", "perplexity", PPL_COLS, PPL_NAMES, N(PPL_COLS)},
                              {"latency.csv", "latency", LAT_COLS, LAT_NAMES, N(LAT_COLS)},
                              {"memory.csv", "memory", MEM_COLS, MEM_NAMES, N(MEM_COLS)}};
    for (int k = 0; k < 3; k++) CB_TRY(write_csv(in, dir, &specs[k], e));
    return CB_OK;
}
