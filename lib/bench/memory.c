/* memory.c: KV cache bytes from the live cache and peak resident memory, over sequence
 * lengths and cache kinds (see memory.h). */
#include "bench/memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include "bench/bench.h"
#include "bench/latency.h"
#include "bench/results_json.h"
#include "core/json_doc.h"

int cb_memory_mode_kind(const char *mode, cb_kv_kind *k) {
    if (strcmp(mode, "q8") == 0) mode = "q8_0";
    else if (strcmp(mode, "q4") == 0) mode = "q4_0";
    return cb_kv_kind_from_name(mode, k);
}

int cb_memory_reset_peak(void) {
    /* "5" resets the peak RSS to the current RSS (Linux 4.0 and later) */
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    ok = (fclose(f) == 0) && ok;
    return ok;
}

static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

long cb_memory_peak_rss(void) {
    long kb = status_kb("VmHWM");
    if (kb >= 0) return kb * 1024;
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return ru.ru_maxrss * 1024L; /* Linux: kilobytes */
    return -1;
}

long cb_memory_rss(void) {
    long kb = status_kb("VmRSS");
    return kb >= 0 ? kb * 1024 : -1;
}

int cb_memory_measure(cb_memory_result *r, const cb_model *m, cb_backend *be, const cb_kv_kinds *kinds,
                      const int32_t *prompts, int seq_len, int batch, cb_error *e) {
    memset(r, 0, sizeof *r);
#ifdef __GLIBC__
    /* give back what earlier measurements freed but the allocator kept resident, so the
       peak is this measurement's and not the largest one before it */
    malloc_trim(0);
#endif
    r->baseline_rss_bytes = cb_memory_rss();
    r->peak_rss_reset = cb_memory_reset_peak();
    r->device_bytes = r->device_total_bytes = -1;
    int on_device = be && !be->unified && be->memory_info;
    size_t free_before = 0, free_after = 0, total = 0;
    if (on_device) CB_TRY(be->memory_info(be, &free_before, &total, e));
    const size_t held_before = on_device && be->held_bytes ? be->held_bytes(be) : 0;
    cb_batch b;
    cb_session_config sc = cb_session_config_default();
    sc.max_seq_len = seq_len;
    sc.kinds = *kinds;
    sc.backend = be;
    CB_TRY(cb_batch_init(&b, m, &sc, batch, e));
    int rc = CB_OK;
    for (int i = 0; rc == CB_OK && i < batch; i++) /* cache only */
        rc = cb_session_forward(&b.seqs[i], prompts + (size_t)i * seq_len, seq_len, NULL, 0, e);
    for (int i = 0; rc == CB_OK && i < batch; i++) {
        cb_kv_bytes kb = cb_session_cache_bytes(&b.seqs[i]);
        r->tokens += b.seqs[i].len;
        r->kv_bytes += kb.payload;
        r->kv_allocated_bytes += kb.allocated;
        r->kv_values += kb.values;
    }
    if (rc == CB_OK) {
        r->kv_bytes_per_token = r->tokens ? (double)r->kv_bytes / r->tokens : 0;
        r->weight_bytes = b.seqs[0].dec.weight_bytes ? b.seqs[0].dec.weight_bytes : m->params.total_floats * sizeof(float);
        r->rss_bytes = cb_memory_rss(); /* first: the peak read after it covers it */
        r->peak_rss_bytes = cb_memory_peak_rss();
        if (on_device) rc = be->memory_info(be, &free_after, &total, e);
        if (rc == CB_OK && on_device) {
            if (be->held_bytes) { /* the sessions' buffers: exact */
                const size_t held = be->held_bytes(be);
                r->device_bytes = held > held_before ? (long)(held - held_before) : 0;
            } else
                r->device_bytes = free_before > free_after ? (long)(free_before - free_after) : 0;
            r->device_total_bytes = (long)total;
        }
    }
    cb_batch_free(&b);
    return rc;
}

int cb_bench_memory(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    const json_t *lens = json_object_get(cfg, "sequence_lengths"), *modes = json_object_get(cfg, "quantization_modes");
    const json_t *bss = json_object_get(cfg, "batch_sizes");
    int ctx = cb_model_max_seq_len(&m->model), bmax = 1;
    for (size_t k = 0; k < json_array_size(bss); k++)
        if (json_integer_value(json_array_get(bss, k)) > bmax) bmax = (int)json_integer_value(json_array_get(bss, k));
    int rc = CB_OK;
    for (size_t i = 0; rc == CB_OK && i < json_array_size(lens); i++) {
        int L = (int)json_integer_value(json_array_get(lens, i));
        int32_t *prompt = cb_malloc((size_t)L * bmax, sizeof *prompt, e); /* the batch's prompts, L ids each */
        if (!prompt) return CB_E_RUNTIME;
        int have_prompt = 0;
        for (size_t j = 0; rc == CB_OK && j < json_array_size(modes); j++)
        for (size_t k = 0; rc == CB_OK && k < (bss ? json_array_size(bss) : 1); k++) {
            const int B = bss ? (int)json_integer_value(json_array_get(bss, k)) : 1;
            const char *mode = json_string_value(json_array_get(modes, j));
            cb_kv_kind kind;
            if (!mode || !cb_memory_mode_kind(mode, &kind)) {
                rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, "quantization_modes"), "quantization_modes: unknown mode %s",
                             mode ? mode : "?");
                break;
            }
            json_t *rec = cb_bench_record_new(c, bench, m);
            json_t *p = cb_bench_params(rec);
            json_object_set_new(p, "sequence_length", json_integer(L));
            json_object_set_new(p, "batch_size", json_integer(B));
            json_object_set_new(p, "cache_kind", json_string(cb_kv_kind_name(kind)));
            json_object_set_new(p, "quantization_mode", json_string(mode));
            if (ctx > 0 && L > ctx) {
                char why[160];
                snprintf(why, sizeof why, "sequence length %d exceeds the model's context (%d)", L, ctx);
                json_object_set_new(rec, "skipped", json_string(why));
                cb_bench_progress(c, "%s: skipped: %s", m->name, why);
                rc = cb_bench_emit(c, rec, 0, e);
                continue;
            }
            if (!have_prompt) {
                rc = cb_bench_prompt_ids(prompt, L * bmax, cb_bench_vocab(&m->model), c->data, e);
                have_prompt = rc == CB_OK;
            }
            double t0 = cb_bench_now();
            cb_kv_kinds kinds = {kind, kind, kind};
            cb_memory_result r;
            if (rc == CB_OK) rc = cb_memory_measure(&r, &m->model, c->be, &kinds, prompt, L, B, e);
            if (rc != CB_OK) {
                json_decref(rec);
                break;
            }
            json_t *v = cb_bench_values(rec);
            json_object_set_new(v, "tokens", json_integer(r.tokens));
            json_object_set_new(v, "kv_bytes", json_integer((json_int_t)r.kv_bytes));
            json_object_set_new(v, "kv_bytes_per_token", cb_bench_num(r.kv_bytes_per_token));
            json_object_set_new(v, "kv_allocated_bytes", json_integer((json_int_t)r.kv_allocated_bytes));
            json_object_set_new(v, "kv_values", json_integer((json_int_t)r.kv_values));
            json_object_set_new(v, "weight_bytes", json_integer((json_int_t)r.weight_bytes));
            if (r.peak_rss_bytes >= 0) {
                json_object_set_new(v, "peak_rss_bytes", json_integer(r.peak_rss_bytes));
                json_object_set_new(v, "peak_rss_scope", json_string(r.peak_rss_reset ? "measurement" : "process"));
            }
            if (r.rss_bytes >= 0) json_object_set_new(v, "rss_bytes", json_integer(r.rss_bytes));
            if (r.baseline_rss_bytes >= 0) json_object_set_new(v, "baseline_rss_bytes", json_integer(r.baseline_rss_bytes));
            if (r.device_bytes >= 0) {
                json_object_set_new(v, "device_bytes", json_integer(r.device_bytes));
                json_object_set_new(v, "device_total_bytes", json_integer(r.device_total_bytes));
            }
            char dev[64] = "";
            if (r.device_bytes >= 0) snprintf(dev, sizeof dev, ", device %.1f MB", r.device_bytes / 1048576.0);
            char batch[32] = "";
            if (B > 1) snprintf(batch, sizeof batch, " x %d sequences", B);
            cb_bench_progress(c, "%s: %d tokens%s, %s cache: %zu bytes (%.1f per token), peak RSS %.1f MB%s", m->name, L,
                              batch, cb_kv_kind_name(kind), r.kv_bytes, r.kv_bytes_per_token, r.peak_rss_bytes / 1048576.0,
                              dev);
            rc = cb_bench_emit(c, rec, cb_bench_now() - t0, e);
        }
        free(prompt);
    }
    return rc;
}
