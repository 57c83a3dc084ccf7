/* generation.c: the generation benchmark (see generation.h): one record per prompt with
 * the text, why it stopped and the speed. */
#include "bench/generation.h"

#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/results_json.h"
#include "bench/tokenizer_spec.h"
#include "core/json_doc.h"
#include "infer/model_dir.h"
#include "tokenizer/load.h"

int cb_bench_generate_text(const cb_model *m, cb_backend *be, cb_tokenizer *tok, const char *prompt,
                           const cb_generate_config *g, cb_kv_kind kind, cb_generate_output *out, cb_error *e) {
    memset(out, 0, sizeof *out);
    cb_ids ids = {0};
    CB_TRY(cb_tokenizer_encode(tok, (const uint8_t *)prompt, strlen(prompt), 0, &ids, e));
    int rc = CB_OK;
    if (ids.n == 0) rc = cb_fail(e, CB_E_INVALID, "", "the prompt encodes to no tokens");
    int ctx = cb_model_max_seq_len(m);
    cb_session_config sc = cb_session_config_default();
    sc.max_seq_len = (int)ids.n + g->stop.max_new_tokens;
    cb_generate_config gg = *g;
    if (ctx > 0 && sc.max_seq_len > ctx) { /* a long prompt keeps its end */
        sc.max_seq_len = ctx;
        gg.truncate = 1;
    }
    sc.kinds.k = sc.kinds.k_sem = sc.kinds.v = kind;
    sc.backend = be;
    cb_session s;
    if (rc == CB_OK) rc = cb_session_init(&s, m, &sc, e);
    if (rc == CB_OK) {
        cb_generate_io io = {.tok = tok};
        rc = cb_session_generate(&s, ids.v, (int)ids.n, &gg, &io, out, e);
        cb_session_free(&s);
    }
    if (rc == CB_OK) { /* text cut anywhere may end inside a character */
        cb_bytes clean = {0};
        rc = cb_utf8_sanitize((const char *)out->text.p, out->text.n, &clean, e);
        if (rc == CB_OK) {
            cb_bytes_free(&out->text);
            out->text = clean;
        } else {
            cb_generate_output_free(out);
        }
    }
    cb_ids_free(&ids);
    return rc;
}

int cb_bench_generation(cb_bench_ctx *c, const json_t *bench, const json_t *cfg, cb_bench_model *m, cb_error *e) {
    char spec[CB_BENCH_PATH_MAX];
    CB_TRY(cb_bench_tokenizer_spec(json_object_get(cfg, "tokenizer"), spec, sizeof spec, e));
    cb_tokenizer tok;
    CB_TRY(cb_tokenizer_open(&tok, spec, e));
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = json_number_value(json_object_get(cfg, "temperature"));
    g.sample.top_k = (int)json_integer_value(json_object_get(cfg, "top_k"));
    g.sample.top_p = json_number_value(json_object_get(cfg, "top_p"));
    g.sample.seed = (uint64_t)json_integer_value(json_object_get(cfg, "seed"));
    g.stop.max_new_tokens = (int)json_integer_value(json_object_get(cfg, "max_new_tokens"));
    g.stop.n_eos = cb_model_eos_ids(m->dir, &tok, g.stop.eos, CB_STOP_MAX_EOS);
    const char *kname = json_string_value(json_object_get(cfg, "cache_kind"));
    cb_kv_kind kind = CB_KV_F32;
    int rc = CB_OK;
    if (kname && !cb_kv_kind_from_name(kname, &kind))
        rc = cb_fail(e, CB_E_INVALID, cb_loc(cfg, "cache_kind"), "cache_kind: unknown kind %s", kname);
    const json_t *prompts = json_object_get(cfg, "prompts");
    for (size_t i = 0; rc == CB_OK && i < json_array_size(prompts); i++) {
        const char *prompt = json_string_value(json_array_get(prompts, i));
        double t0 = cb_bench_now();
        cb_generate_output out;
        rc = cb_bench_generate_text(&m->model, c->be, &tok, prompt, &g, kind, &out, e);
        if (rc != CB_OK) break;
        json_t *rec = cb_bench_record_new(c, bench, m);
        json_t *p = cb_bench_params(rec);
        json_object_set_new(p, "prompt", json_string(prompt));
        json_object_set_new(p, "max_new_tokens", json_integer(g.stop.max_new_tokens));
        json_object_set_new(p, "temperature", json_real(g.sample.temperature));
        json_object_set_new(p, "top_k", json_integer(g.sample.top_k));
        json_object_set_new(p, "top_p", json_real(g.sample.top_p));
        json_object_set_new(p, "seed", json_integer((json_int_t)g.sample.seed));
        json_object_set_new(p, "cache_kind", json_string(cb_kv_kind_name(kind)));
        json_object_set_new(p, "tokenizer", json_string(spec));
        json_t *v = cb_bench_values(rec);
        json_object_set_new(v, "text", json_stringn(out.text.n ? (const char *)out.text.p : "", out.text.n));
        json_object_set_new(v, "prompt_tokens", json_integer(out.stats.prompt_tokens));
        json_object_set_new(v, "new_tokens", json_integer(out.stats.new_tokens));
        json_object_set_new(v, "stop", json_string(cb_stop_reason_name(out.stats.stop_reason)));
        double total = out.stats.prefill_s + out.stats.decode_s;
        json_object_set_new(v, "tokens_per_s", cb_bench_num(total > 0 ? out.stats.new_tokens / total : 0));
        cb_generate_output_free(&out);
        rc = cb_bench_emit(c, rec, cb_bench_now() - t0, e);
    }
    cb_tokenizer_free(&tok);
    return rc;
}
