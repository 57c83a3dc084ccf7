/* cb-generate: text (or token ids) from a model directory: one prompt, a JSON-lines file of
 * prompts, or an interactive chat; optionally with a draft model (speculative decoding) and
 * cache_kind auto. A thin main over lib/infer. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "infer/batch.h"
#include "infer/cache_policy.h"
#include "infer/chat.h"
#include "infer/generate.h"
#include "infer/model_dir.h"
#include "infer/speculative.h"
#include "model/trace.h"
#include "runtime/decode_graphs.h"
#include "tokenizer/ids_text.h"

static const char *TOOL = "cb-generate";

static void usage(void) {
    printf("usage: cb-generate [--prompt text | --ids list | --prompts file | --chat] [--tokenizer T]\n"
           "       [--max-new-tokens n] [--temperature x] [--top-k n] [--top-p x] [--seed n]\n"
           "       [--eos id] [--stop text] [--max-seq-len n] [--truncate] [--cache-kind K]\n"
           "       [--draft dir] [--spec-k n] [--batch n] [--device cpu|cuda|auto] [--runtime-plan] [--json]\n"
           "       [options] model_dir\n"
           "Generate text from a model directory (caramba or Hugging Face Llama), streamed to\n"
           "stdout token by token, or one JSON line per prompt with --json. Cache kinds: fp32,\n"
           "fp16, bf16, q8_0, q4_0, nf4, auto. More options in cb-generate(1).\n");
}

enum {
    O_PROMPT = 256, O_IDS, O_PROMPTS, O_CHAT, O_SYSTEM, O_TOKENIZER, O_SPECIAL, O_MAX_NEW, O_TEMP, O_TOP_K, O_TOP_P,
    O_SEED, O_EOS, O_STOP, O_MAX_SEQ, O_TRUNCATE, O_CHUNK, O_CACHE_KIND, O_CACHE_K, O_CACHE_K_SEM, O_CACHE_V,
    O_BUDGET, O_MAX_DNLL, O_MAX_PPL, O_MAX_KL, O_CACHE_BENCH, O_CACHE_BENCH_STEPS, O_CACHE_PLAN, O_CACHE_PROBE,
    O_DECODE_PLAN, O_DECODE_Q_CHUNK, O_DECODE_WINDOW, O_DECODE_BUCKETS, O_DECODE_WINDOW_LONG, O_DRAFT, O_SPEC_K,
    O_SPEC_METHOD, O_SPEC_ADAPTIVE, O_SPEC_K_MAX, O_NO_EXTRA, O_SPEC_DISABLE, O_JSON, O_QUIET, O_HELP, O_WEIGHT_KIND,
    O_DEVICE, O_RUNTIME_PLAN, O_BATCH
};

typedef struct opts {
    const char *prompt, *ids, *prompts, *system, *tokenizer, *draft, *cache_plan, *model_dir;
    int chat, special, json, quiet, truncate, auto_cache, n_eos_args, no_eos, runtime_plan;
    int batch; /* sequences decoded together (--prompts); 1: one at a time */
    char cache_why[256]; /* cache_kind auto: the choice and its reason */
    const char *cache_kind_names[3]; /* k, k_sem, v as given */
    cb_generate_config gen;
    cb_session_config sess;
    cb_cache_policy_config policy;
    cb_spec_config spec;
} opts;

/* ---- option values ---- */

static int parse_long(const char *s, const char *opt, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        cb_cli_usage_error(TOOL, "%s: not an integer in [%ld, %ld]: %s", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_double(const char *s, const char *opt, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) {
        cb_cli_usage_error(TOOL, "%s: not a number in [%g, %g]: %s", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

static int parse_kind(const char *s, const char *opt, cb_kv_kind *k) {
    if (cb_kv_kind_from_name(s, k)) return 1;
    cb_cli_usage_error(TOOL, "%s: unknown cache kind \"%s\" (fp32, fp16, bf16, q8_0, q4_0, nf4%s)", opt, s,
                       strcmp(opt, "--cache-kind") == 0 ? ", auto" : "");
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, opts *o) {
    static const struct option table[] = {
        {"prompt", required_argument, 0, O_PROMPT}, {"ids", required_argument, 0, O_IDS},
        {"prompts", required_argument, 0, O_PROMPTS}, {"chat", no_argument, 0, O_CHAT},
        {"system", required_argument, 0, O_SYSTEM}, {"tokenizer", required_argument, 0, O_TOKENIZER},
        {"special", no_argument, 0, O_SPECIAL}, {"max-new-tokens", required_argument, 0, O_MAX_NEW},
        {"temperature", required_argument, 0, O_TEMP}, {"top-k", required_argument, 0, O_TOP_K},
        {"top-p", required_argument, 0, O_TOP_P}, {"seed", required_argument, 0, O_SEED},
        {"eos", required_argument, 0, O_EOS}, {"stop", required_argument, 0, O_STOP},
        {"max-seq-len", required_argument, 0, O_MAX_SEQ}, {"truncate", no_argument, 0, O_TRUNCATE},
        {"chunk", required_argument, 0, O_CHUNK}, {"cache-kind", required_argument, 0, O_CACHE_KIND},
        {"cache-k-kind", required_argument, 0, O_CACHE_K}, {"cache-k-sem-kind", required_argument, 0, O_CACHE_K_SEM},
        {"cache-v-kind", required_argument, 0, O_CACHE_V}, {"cache-budget-mb", required_argument, 0, O_BUDGET},
        {"cache-max-delta-nll", required_argument, 0, O_MAX_DNLL},
        {"cache-max-ppl-ratio", required_argument, 0, O_MAX_PPL},
        {"cache-max-mean-kl", required_argument, 0, O_MAX_KL}, {"cache-benchmark", no_argument, 0, O_CACHE_BENCH},
        {"cache-bench-steps", required_argument, 0, O_CACHE_BENCH_STEPS},
        {"cache-plan", required_argument, 0, O_CACHE_PLAN}, {"cache-probe", required_argument, 0, O_CACHE_PROBE},
        {"decode-plan", required_argument, 0, O_DECODE_PLAN},
        {"decode-q-chunk", required_argument, 0, O_DECODE_Q_CHUNK},
        {"decode-local-window", required_argument, 0, O_DECODE_WINDOW},
        {"decode-buckets", required_argument, 0, O_DECODE_BUCKETS},
        {"decode-long-window", required_argument, 0, O_DECODE_WINDOW_LONG},
        {"draft", required_argument, 0, O_DRAFT}, {"spec-k", required_argument, 0, O_SPEC_K},
        {"spec-method", required_argument, 0, O_SPEC_METHOD}, {"spec-k-adaptive", no_argument, 0, O_SPEC_ADAPTIVE},
        {"spec-k-max", required_argument, 0, O_SPEC_K_MAX}, {"no-spec-extra-token", no_argument, 0, O_NO_EXTRA},
        {"spec-disable-below", required_argument, 0, O_SPEC_DISABLE}, {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, O_QUIET}, {"weight-kind", required_argument, 0, O_WEIGHT_KIND}, {"help", no_argument, 0, O_HELP},
        {"device", required_argument, 0, O_DEVICE}, {"runtime-plan", no_argument, 0, O_RUNTIME_PLAN},
        {"batch", required_argument, 0, O_BATCH}, {0, 0, 0, 0}};
    o->gen = cb_generate_config_default();
    o->sess = cb_session_config_default();
    o->policy = cb_cache_policy_config_default();
    o->spec = cb_spec_config_default();
    o->batch = 1;
    long v;
    double x;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", table, NULL)) != -1) {
        switch (c) {
        case 'h':
        case O_HELP: usage(); return 0;
        case O_PROMPT: o->prompt = optarg; break;
        case O_IDS: o->ids = optarg; break;
        case O_PROMPTS: o->prompts = optarg; break;
        case O_CHAT: o->chat = 1; break;
        case O_SYSTEM: o->system = optarg; break;
        case O_TOKENIZER: o->tokenizer = optarg; break;
        case O_SPECIAL: o->special = 1; break;
        case O_MAX_NEW: if (!parse_long(optarg, "--max-new-tokens", 0, INT_MAX, &v)) return 2; o->gen.stop.max_new_tokens = (int)v; break;
        case O_TEMP: if (!parse_double(optarg, "--temperature", 0, 1e6, &o->gen.sample.temperature)) return 2; break;
        case O_TOP_K: if (!parse_long(optarg, "--top-k", 0, INT_MAX, &v)) return 2; o->gen.sample.top_k = (int)v; break;
        case O_TOP_P: if (!parse_double(optarg, "--top-p", 0, 1, &o->gen.sample.top_p)) return 2; break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (!*optarg || *end || errno || optarg[0] == '-')
                return cb_cli_usage_error(TOOL, "--seed: not a non-negative integer: %s", optarg);
            o->gen.sample.seed = s;
            break;
        }
        case O_EOS:
            if (strcmp(optarg, "none") == 0) { o->no_eos = 1; break; }
            if (!parse_long(optarg, "--eos", 0, INT32_MAX, &v)) return 2;
            if (o->gen.stop.n_eos == CB_STOP_MAX_EOS) return cb_cli_usage_error(TOOL, "--eos: at most %d ids", CB_STOP_MAX_EOS);
            o->gen.stop.eos[o->gen.stop.n_eos++] = (int32_t)v;
            o->n_eos_args++;
            break;
        case O_STOP:
            if (!*optarg) return cb_cli_usage_error(TOOL, "--stop: empty stop string");
            if (o->gen.stop.n_strings == CB_STOP_MAX_STRINGS - 1) /* one left for --chat */
                return cb_cli_usage_error(TOOL, "--stop: at most %d strings", CB_STOP_MAX_STRINGS - 1);
            o->gen.stop.strings[o->gen.stop.n_strings++] = optarg;
            break;
        case O_MAX_SEQ: if (!parse_long(optarg, "--max-seq-len", 1, INT_MAX, &v)) return 2; o->sess.max_seq_len = (int)v; break;
        case O_TRUNCATE: o->truncate = 1; break;
        case O_CHUNK: if (!parse_long(optarg, "--chunk", 1, 1 << 20, &v)) return 2; o->sess.chunk = (int)v; break;
        case O_CACHE_KIND:
            if (strcmp(optarg, "auto") == 0) { o->auto_cache = 1; break; }
            if (!parse_kind(optarg, "--cache-kind", &o->sess.kinds.k)) return 2;
            o->sess.kinds.k_sem = o->sess.kinds.v = o->sess.kinds.k;
            o->auto_cache = 0;
            break;
        case O_CACHE_K: if (!parse_kind(optarg, "--cache-k-kind", &o->sess.kinds.k)) return 2; o->cache_kind_names[0] = optarg; break;
        case O_CACHE_K_SEM: if (!parse_kind(optarg, "--cache-k-sem-kind", &o->sess.kinds.k_sem)) return 2; o->cache_kind_names[1] = optarg; break;
        case O_CACHE_V: if (!parse_kind(optarg, "--cache-v-kind", &o->sess.kinds.v)) return 2; o->cache_kind_names[2] = optarg; break;
        case O_BUDGET: if (!parse_double(optarg, "--cache-budget-mb", 1e-9, 1e12, &o->policy.budget_mb)) return 2; break;
        case O_MAX_DNLL: if (!parse_double(optarg, "--cache-max-delta-nll", 0, 1e9, &o->policy.max_delta_nll)) return 2; break;
        case O_MAX_PPL: if (!parse_double(optarg, "--cache-max-ppl-ratio", 1, 1e9, &o->policy.max_ppl_ratio)) return 2; break;
        case O_MAX_KL: if (!parse_double(optarg, "--cache-max-mean-kl", 0, 1e9, &o->policy.max_mean_kl)) return 2; break;
        case O_CACHE_BENCH: o->policy.benchmark = 1; break;
        case O_CACHE_BENCH_STEPS: if (!parse_long(optarg, "--cache-bench-steps", 1, 1 << 20, &v)) return 2; o->policy.bench_steps = (int)v; break;
        case O_CACHE_PLAN: o->cache_plan = optarg; break;
        case O_CACHE_PROBE:
            if (!parse_long(optarg, "--cache-probe", 0, LONG_MAX, &v)) return 2;
            o->policy.probe = 1;
            o->policy.probe_interval_sec = v;
            break;
        case O_DECODE_PLAN:
            if (!cb_decode_plan_mode_parse(optarg, &o->sess.plan.mode))
                return cb_cli_usage_error(TOOL, "--decode-plan: \"%s\" is not auto, fixed or none", optarg);
            break;
        case O_DECODE_Q_CHUNK: if (!parse_long(optarg, "--decode-q-chunk", 0, INT_MAX, &v)) return 2; o->sess.plan.fixed.q_chunk = (int)v; break;
        case O_DECODE_WINDOW: if (!parse_long(optarg, "--decode-local-window", 0, INT_MAX, &v)) return 2; o->sess.plan.fixed.local_window = (int)v; break;
        case O_DECODE_WINDOW_LONG: if (!parse_long(optarg, "--decode-long-window", 0, INT_MAX, &v)) return 2; o->sess.plan.when_long.local_window = (int)v; break;
        case O_DECODE_BUCKETS: {
            int a, b, n = 0;
            if (sscanf(optarg, "%d,%d%n", &a, &b, &n) != 2 || optarg[n] || a < 1 || b < a)
                return cb_cli_usage_error(TOOL, "--decode-buckets: want SHORT,MID with 1 <= SHORT <= MID: %s", optarg);
            o->sess.plan.bucket_short = a;
            o->sess.plan.bucket_mid = b;
            break;
        }
        case O_DRAFT: o->draft = optarg; break;
        case O_SPEC_K: if (!parse_long(optarg, "--spec-k", 1, 256, &v)) return 2; o->spec.spec_k = (int)v; break;
        case O_SPEC_METHOD:
            if (!cb_spec_method_parse(optarg, &o->spec.method))
                return cb_cli_usage_error(TOOL, "--spec-method: \"%s\" is not reject_sampling or greedy", optarg);
            break;
        case O_SPEC_ADAPTIVE: o->spec.spec_k_adaptive = 1; break;
        case O_SPEC_K_MAX: if (!parse_long(optarg, "--spec-k-max", 1, 256, &v)) return 2; o->spec.spec_k_max = (int)v; break;
        case O_NO_EXTRA: o->spec.extra_token = 0; break;
        case O_SPEC_DISABLE: if (!parse_double(optarg, "--spec-disable-below", 0, 1, &x)) return 2; o->spec.disable_below_accept = x; break;
        case O_WEIGHT_KIND: if (!parse_kind(optarg, "--weight-kind", &o->sess.weight_kind)) return 2; break;
        case O_DEVICE: {
            cb_error e;
            if (cb_backend_open(optarg, &o->sess.backend, &e) != CB_OK) return cb_cli_usage_error(TOOL, "--device: %s", e.msg);
            break;
        }
        case O_RUNTIME_PLAN: o->runtime_plan = 1; break;
        case O_BATCH: if (!parse_long(optarg, "--batch", 1, 4096, &v)) return 2; o->batch = (int)v; break;
        case O_JSON: o->json = 1; break;
        case O_QUIET: o->quiet = 1; break;
        default: return cb_cli_usage_error(TOOL, "unknown or incomplete option %s", argv[optind - 1]);
        }
    }
    if (argc - optind == 0) return cb_cli_usage_error(TOOL, "a model directory is required");
    if (argc - optind > 1) return cb_cli_usage_error(TOOL, "one model directory, not %d arguments", argc - optind);
    o->model_dir = argv[optind];
    int sources = (o->prompt != NULL) + (o->ids != NULL) + (o->prompts != NULL) + o->chat;
    if (sources != 1) return cb_cli_usage_error(TOOL, "one of --prompt, --ids, --prompts or --chat is required");
    if (o->system && !o->chat) return cb_cli_usage_error(TOOL, "--system goes with --chat");
    if (o->no_eos && o->n_eos_args) return cb_cli_usage_error(TOOL, "--eos none excludes --eos id");
    if (o->auto_cache && (o->cache_kind_names[0] || o->cache_kind_names[1] || o->cache_kind_names[2]))
        return cb_cli_usage_error(TOOL, "--cache-kind auto excludes --cache-k-kind, --cache-k-sem-kind, --cache-v-kind");
    if (!o->draft && (o->spec.spec_k_adaptive || o->spec.disable_below_accept > 0 || !o->spec.extra_token))
        return cb_cli_usage_error(TOOL, "speculative options need --draft");
    if (o->spec.spec_k_max < o->spec.spec_k) o->spec.spec_k_max = o->spec.spec_k;
    if (o->batch > 1 && !o->prompts) return cb_cli_usage_error(TOOL, "--batch decodes the prompts of --prompts together");
    if (o->batch > 1 && o->draft)
        return cb_cli_usage_error(TOOL, "--batch excludes --draft (speculative decoding runs one sequence at a time)");
    o->gen.truncate = o->truncate || o->chat; /* a chat drops its oldest turns when full */
    o->policy.plan_path = o->cache_plan;
    return -1;
}

/* ---- output ---- */

typedef struct out_state {
    long ids_printed; /* ids written so far (ids without a tokenizer) */
} out_state;

static void on_text(void *ctx, const char *s, size_t n) {
    (void)ctx;
    fwrite(s, 1, n, stdout);
    fflush(stdout);
}

static void on_token(void *ctx, int32_t id) {
    out_state *st = ctx;
    printf("%s%d", st->ids_printed++ ? " " : "", id);
    fflush(stdout);
}

static json_t *json_ids(const int32_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static int print_json(const opts *o, const json_t *id, const cb_generate_output *r, const cb_session_config *sc,
                      size_t cache_bytes, const cb_tokenizer *tok, cb_error *e) {
    const cb_generate_stats *st = &r->stats;
    double total = st->prefill_s + st->decode_s;
    json_t *j = json_object();
    if (id) json_object_set(j, "id", (json_t *)id);
    json_object_set_new(j, "prompt_tokens", json_integer(st->prompt_tokens));
    json_object_set_new(j, "truncated", json_integer(st->truncated));
    json_object_set_new(j, "reused", json_integer(st->reused));
    json_object_set_new(j, "ids", json_ids(r->ids.v, r->ids.n));
    if (tok) {
        cb_bytes clean = {0};
        int rc = cb_utf8_sanitize((const char *)r->text.p, r->text.n, &clean, e);
        if (rc != CB_OK) { json_decref(j); return rc; }
        json_object_set_new(j, "text", json_stringn(clean.n ? (const char *)clean.p : "", clean.n));
        cb_bytes_free(&clean);
    }
    json_object_set_new(j, "stop", json_string(cb_stop_reason_name(st->stop_reason)));
    json_object_set_new(j, "new_tokens", json_integer(st->new_tokens));
    json_object_set_new(j, "prefill_s", json_real(st->prefill_s));
    json_object_set_new(j, "decode_s", json_real(st->decode_s));
    json_object_set_new(j, "tokens_per_s", json_real(total > 0 ? st->new_tokens / total : 0));
    json_object_set_new(j, "decode_tokens_per_s",
                        json_real(st->decode_s > 0 && st->new_tokens > 1 ? (st->new_tokens - 1) / st->decode_s : 0));
    json_object_set_new(j, "weights", json_string(cb_kv_kind_name(sc->weight_kind)));
    json_t *cache = json_pack("{s:s, s:s, s:s, s:I}", "k", cb_kv_kind_name(sc->kinds.k), "k_sem",
                              cb_kv_kind_name(sc->kinds.k_sem), "v", cb_kv_kind_name(sc->kinds.v), "bytes",
                              (json_int_t)cache_bytes);
    if (o->auto_cache) json_object_set_new(cache, "auto", json_string(o->cache_why));
    json_object_set_new(j, "cache", cache);
    if (o->draft)
        json_object_set_new(j, "speculative",
                            json_pack("{s:s, s:i, s:I, s:I, s:f, s:i, s:b}", "method", cb_spec_method_name(o->spec.method),
                                      "rounds", st->spec_rounds, "drafted", (json_int_t)st->drafted, "accepted",
                                      (json_int_t)st->accepted,
                                      "acceptance", st->drafted ? (double)st->accepted / st->drafted : 0.0, "spec_k",
                                      st->spec_k, "fallback", st->spec_fallback));
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!text) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    printf("%s\n", text);
    free(text);
    fflush(stdout);
    return CB_OK;
}

/* ---- the run ---- */

typedef struct run {
    opts *o;
    cb_model model, draft_model;
    int have_model, have_draft;
    cb_tokenizer tok;
    int have_tok;
    char tok_source[4096];
    cb_session target, draft;
    int have_target, have_draft_session;
    cb_batch batch; /* --batch: its sessions in place of target */
    int have_batch;
    cb_session *lead; /* target, or the batch's first session */
} run;

/* Non-finite logits: say where they come from (a weight tensor, the first op whose output
 * is not finite), found by a traced pass over the prompt that only this path pays for. */
static void explain_nonfinite(run *r, const int32_t *prompt, int n, cb_error *e) {
    char why[600], first[sizeof e->msg];
    snprintf(first, sizeof first, "%s", e->msg);
    cb_trace_explain_nonfinite(&r->model, prompt, n, why, sizeof why);
    cb_fail(e, CB_E_RUNTIME, r->o->model_dir, "%s: %s", first, why);
}

static int generate_one(run *r, const int32_t *prompt, int n, const json_t *id, cb_error *e) {
    out_state st = {0};
    cb_generate_io io = {.tok = r->have_tok ? &r->tok : NULL, .ctx = &st};
    if (!r->o->json) {
        if (r->have_tok) io.on_text = on_text;
        else io.on_token = on_token;
    }
    cb_generate_output out;
    int rc = r->have_draft
                 ? cb_speculative_generate(&r->target, &r->draft, prompt, n, &r->o->gen, &r->o->spec, &io, &out, e)
                 : cb_session_generate(&r->target, prompt, n, &r->o->gen, &io, &out, e);
    if (rc != CB_OK && cb_generate_is_nonfinite(e)) explain_nonfinite(r, prompt, n, e);
    if (rc != CB_OK) return rc;
    if (r->o->json)
        rc = print_json(r->o, id, &out, &r->target.cfg, cb_session_cache_bytes(&r->target).payload, io.tok, e);
    else printf("\n");
    if (!r->o->quiet && r->have_draft && !r->o->json)
        fprintf(stderr, "%s: speculative: %ld of %ld draft tokens accepted (%.1f%%) in %d rounds%s\n", TOOL,
                out.stats.accepted, out.stats.drafted,
                out.stats.drafted ? 100.0 * out.stats.accepted / out.stats.drafted : 0.0, out.stats.spec_rounds,
                out.stats.spec_fallback ? ", then plain decoding" : "");
    cb_generate_output_free(&out);
    return rc;
}

/* Encode a text prompt given on the command line or in a prompts file. */
static int encode_prompt(run *r, const char *text, size_t n, const char *where, cb_ids *ids, cb_error *e) {
    size_t bad = cb_utf8_invalid_at(text, n);
    if (bad != SIZE_MAX) return cb_fail(e, CB_E_USAGE, where, "the prompt is not valid UTF-8 (byte %zu)", bad);
    if (n == 0) return cb_fail(e, CB_E_USAGE, where, "empty prompt");
    return cb_tokenizer_encode(&r->tok, (const uint8_t *)text, n, r->o->special ? CB_TOK_SPECIAL : 0, ids, e);
}

static int check_ids(const run *r, const cb_ids *ids, const char *where, int code, cb_error *e) {
    if (ids->n == 0) return cb_fail(e, CB_E_USAGE, where, "empty prompt");
    for (size_t i = 0; i < ids->n; i++)
        if (ids->v[i] >= r->lead->vocab)
            return cb_fail(e, code, where, "token id %d is past the vocabulary (%d)", ids->v[i], r->lead->vocab);
    return CB_OK;
}

/* One line of a prompts file: its prompt ids, and its "id" (borrowed from *obj, which the
 * caller frees). A blank line gives no ids and no error. */
static int parse_prompt_line(run *r, char *line, const char *where, cb_ids *prompt, json_t **obj, cb_error *e) {
    *obj = NULL;
    if (strspn(line, " \t\r") == strlen(line)) return CB_OK;
    json_error_t je;
    *obj = json_loads(line, 0, &je);
    const json_t *pr = json_object_get(*obj, "prompt"), *ids = json_object_get(*obj, "ids");
    int rc = CB_OK;
    if (!json_is_object(*obj))
        rc = cb_fail(e, CB_E_INVALID, where, "not a JSON object%s%s", *obj ? "" : ": ", *obj ? "" : je.text);
    else if (json_is_string(pr) == json_is_array(ids))
        rc = cb_fail(e, CB_E_INVALID, where, "want exactly one of \"prompt\" (a string) or \"ids\" (an array)");
    else if (json_is_string(pr) && !r->have_tok)
        rc = cb_fail(e, CB_E_USAGE, where, "a text prompt needs a tokenizer (--tokenizer)");
    else if (json_is_string(pr))
        rc = encode_prompt(r, json_string_value(pr), json_string_length(pr), where, prompt, e);
    else {
        size_t i;
        const json_t *v;
        json_array_foreach(ids, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
                rc = cb_fail(e, CB_E_INVALID, where, "ids[%zu] is not a token id", i);
                break;
            }
            if ((rc = cb_ids_push(prompt, (int32_t)json_integer_value(v), e)) != CB_OK) break;
        }
    }
    if (rc == CB_OK) rc = check_ids(r, prompt, where, CB_E_INVALID, e);
    return rc;
}

/* --batch: every line read first (a bad one stops the run before anything is generated),
 * the prompts decoded --batch at a time, then one JSON line each in the file's order. */
typedef struct prompt_list {
    cb_ids *ids;
    json_t **objs;
    int n, cap;
} prompt_list;

static int generate_batched(run *r, prompt_list *pl, cb_error *e) {
    const int32_t **prompts = cb_malloc(pl->n ? (size_t)pl->n : 1, sizeof *prompts, e);
    int *lens = prompts ? cb_malloc(pl->n ? (size_t)pl->n : 1, sizeof *lens, e) : NULL;
    cb_generate_output *outs = lens ? cb_calloc(pl->n ? (size_t)pl->n : 1, sizeof *outs, e) : NULL;
    int rc = outs ? CB_OK : CB_E_RUNTIME;
    for (int i = 0; rc == CB_OK && i < pl->n; i++) {
        prompts[i] = pl->ids[i].v;
        lens[i] = (int)pl->ids[i].n;
    }
    cb_generate_io io = {.tok = r->have_tok ? &r->tok : NULL};
    if (rc == CB_OK) rc = cb_batch_generate(&r->batch, prompts, lens, pl->n, &r->o->gen, &io, outs, e);
    for (int i = 0; rc == CB_OK && i < pl->n; i++)
        rc = print_json(r->o, json_object_get(pl->objs[i], "id"), &outs[i], &r->lead->cfg, outs[i].stats.cache_bytes,
                        io.tok, e);
    for (int i = 0; outs && i < pl->n; i++) cb_generate_output_free(&outs[i]);
    free(outs);
    free(lens);
    free(prompts);
    return rc;
}

static int run_prompts_file(run *r, cb_error *e) {
    char *text;
    size_t len;
    CB_TRY(cb_read_file(r->o->prompts, 0, &text, &len, e));
    int rc = CB_OK, line = 0;
    char where[4200];
    prompt_list pl = {0};
    for (char *p = text, *nl; rc == CB_OK && p < text + len; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        *nl = '\0';
        line++;
        snprintf(where, sizeof where, "%s:%d", r->o->prompts, line);
        cb_ids prompt = {0};
        json_t *obj;
        rc = parse_prompt_line(r, p, where, &prompt, &obj, e);
        if (rc == CB_OK && obj && r->have_batch) { /* kept for the batched run */
            if (pl.n == pl.cap) {
                int cap = pl.cap ? 2 * pl.cap : 16;
                cb_ids *ni = realloc(pl.ids, (size_t)cap * sizeof *ni);
                if (ni) pl.ids = ni;
                json_t **no = ni ? realloc(pl.objs, (size_t)cap * sizeof *no) : NULL;
                if (no) pl.objs = no;
                if (!ni || !no) rc = cb_fail(e, CB_E_RUNTIME, where, "out of memory");
                else pl.cap = cap;
            }
            if (rc == CB_OK) {
                pl.ids[pl.n] = prompt;
                pl.objs[pl.n++] = obj;
                continue;
            }
        } else if (rc == CB_OK && obj) {
            int saved_json = r->o->json;
            r->o->json = 1; /* one JSON line per prompt */
            rc = generate_one(r, prompt.v, (int)prompt.n, json_object_get(obj, "id"), e);
            r->o->json = saved_json;
        }
        if (rc != CB_OK && !e->where[0]) snprintf(e->where, sizeof e->where, "%.500s", where);
        cb_ids_free(&prompt);
        json_decref(obj);
    }
    if (rc == CB_OK && pl.n) rc = generate_batched(r, &pl, e);
    for (int i = 0; i < pl.n; i++) {
        cb_ids_free(&pl.ids[i]);
        json_decref(pl.objs[i]);
    }
    free(pl.ids);
    free(pl.objs);
    free(text);
    return rc;
}

static int run_chat(run *r, cb_error *e) {
    cb_chat chat;
    cb_chat_init(&chat, &r->tok);
    cb_chat_stop(&chat, &r->o->gen.stop);
    int tty = isatty(STDIN_FILENO);
    if (!r->o->quiet && tty)
        fprintf(stderr, "%s: chat (%s format); end with an empty line at EOF (Ctrl-D)\n", TOOL,
                cb_chat_style_name(chat.style));
    cb_ids conv = {0};
    int rc = cb_chat_begin(&chat, r->o->system, &conv, e);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    out_state st = {0};
    cb_generate_io io = {.tok = &r->tok, .on_text = on_text, .ctx = &st};
    while (rc == CB_OK) {
        if (tty) fprintf(stderr, "> ");
        if ((got = getline(&line, &cap, stdin)) < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if (got == 0) continue;
        size_t bad = cb_utf8_invalid_at(line, (size_t)got);
        if (bad != SIZE_MAX) {
            fprintf(stderr, "%s: <stdin>: the message is not valid UTF-8 (byte %zu); skipped\n", TOOL, bad);
            continue;
        }
        size_t before = conv.n;
        rc = cb_chat_user(&chat, line, (size_t)got, &conv, e);
        cb_generate_output out;
        if (rc == CB_OK)
            rc = r->have_draft ? cb_speculative_generate(&r->target, &r->draft, conv.v, (int)conv.n, &r->o->gen,
                                                         &r->o->spec, &io, &out, e)
                               : cb_session_generate(&r->target, conv.v, (int)conv.n, &r->o->gen, &io, &out, e);
        if (rc != CB_OK) {
            conv.n = before;
            break;
        }
        printf("\n");
        fflush(stdout);
        if (out.stats.stop_reason == CB_STOP_STRING) { /* keep what was shown, re-encoded */
            cb_ids kept = {0};
            rc = cb_tokenizer_encode(&r->tok, out.text.p, out.text.n, 0, &kept, e);
            if (rc == CB_OK) rc = cb_chat_assistant(&chat, kept.v, kept.n, &conv, e);
            cb_ids_free(&kept);
        } else {
            rc = cb_chat_assistant(&chat, out.ids.v, out.ids.n, &conv, e);
        }
        cb_generate_output_free(&out);
    }
    free(line);
    cb_ids_free(&conv);
    return rc;
}

static void print_cache_decision(const cb_cache_decision *d) {
    for (int i = 0; i < d->n_warning; i++) fprintf(stderr, "%s: warning: %s\n", TOOL, d->warning[i]);
    for (int i = 0; i < d->n_cand; i++) {
        const cb_cache_candidate *c = &d->cand[i];
        fprintf(stderr, "%s: cache: %-5s %9.3f MB", TOOL, cb_kv_kind_name(c->kind), c->cache_mb);
        if (!isnan(c->delta_nll)) fprintf(stderr, "  dNLL %+.3g  PPL x%.4f", c->delta_nll, c->ppl_ratio);
        if (!isnan(c->mean_kl)) fprintf(stderr, "  KL %.3g", c->mean_kl);
        if (!isnan(c->tokens_per_s)) fprintf(stderr, "  %.1f tok/s", c->tokens_per_s);
        fprintf(stderr, "  %s\n", c->verdict);
    }
    fprintf(stderr, "%s: cache: %s\n", TOOL, d->why);
}

static int main_run(run *r, cb_error *e) {
    opts *o = r->o;
    CB_TRY(cb_model_open_dir(&r->model, o->model_dir, e));
    r->have_model = 1;
    int found;
    CB_TRY(cb_model_tokenizer(&r->tok, o->tokenizer, o->model_dir, &r->model, &found, r->tok_source,
                              sizeof r->tok_source, e));
    r->have_tok = found;
    if (!found && (o->prompt || o->chat || o->gen.stop.n_strings))
        return cb_fail(e, CB_E_USAGE, o->model_dir,
                       "no tokenizer for this model (none in the directory or its plan): give --tokenizer, or --ids");
    if (!o->n_eos_args && !o->no_eos)
        o->gen.stop.n_eos = cb_model_eos_ids(o->model_dir, found ? &r->tok : NULL, o->gen.stop.eos, CB_STOP_MAX_EOS);
    if (o->draft) {
        CB_TRY(cb_model_open_dir(&r->draft_model, o->draft, e));
        r->have_draft = 1;
        int rc = cb_spec_check_models(&r->model, &r->draft_model, e);
        if (rc != CB_OK) {
            snprintf(e->where, sizeof e->where, "%.500s", o->draft);
            return rc;
        }
        if (found) { /* a draft that brings its own tokenizer must bring the same one; --tokenizer
                        names the tokenizer of both */
            cb_tokenizer dt;
            int dfound;
            char dsrc[4096];
            CB_TRY(cb_model_tokenizer(&dt, o->tokenizer, o->draft, &r->draft_model, &dfound, dsrc, sizeof dsrc, e));
            int same = !dfound || cb_tokenizer_same(&r->tok, &dt);
            if (dfound) cb_tokenizer_free(&dt);
            if (!same) return cb_fail(e, CB_E_INVALID, o->draft, "the draft's tokenizer (%s) differs from the target's (%s)", dsrc, r->tok_source);
        }
    }
    if (o->auto_cache) {
        cb_cache_decision d;
        CB_TRY(cb_cache_policy_decide(&r->model, &o->sess, &o->policy, &d, e));
        if (!o->quiet) print_cache_decision(&d);
        o->sess.kinds = d.kinds;
        snprintf(o->cache_why, sizeof o->cache_why, "%s", d.why);
    }
    if (o->runtime_plan) { /* the draft's session takes the target's decision with the rest of o->sess */
        cb_decode_graphs g;
        CB_TRY(cb_decode_graphs_decide(&g, &r->model, &o->sess, NULL, 0, e));
        if (!o->quiet) cb_decode_graphs_print(&g, stderr);
    }
    if (o->batch > 1) {
        CB_TRY(cb_batch_init(&r->batch, &r->model, &o->sess, o->batch, e));
        r->have_batch = 1;
        r->lead = &r->batch.seqs[0];
    } else {
        CB_TRY(cb_session_init(&r->target, &r->model, &o->sess, e));
        r->have_target = 1;
        r->lead = &r->target;
    }
    if (r->have_draft) {
        cb_session_config dc = o->sess;
        dc.max_seq_len = r->target.cfg.max_seq_len;
        CB_TRY(cb_session_init(&r->draft, &r->draft_model, &dc, e));
        r->have_draft_session = 1;
    }
    if (o->prompts) return run_prompts_file(r, e);
    if (o->chat) return run_chat(r, e);
    cb_ids prompt = {0};
    int rc;
    if (o->ids) {
        rc = cb_ids_parse_arg(o->ids, "--ids", &prompt, e);
        if (rc == CB_OK) rc = check_ids(r, &prompt, "--ids", CB_E_USAGE, e);
    } else {
        rc = encode_prompt(r, o->prompt, strlen(o->prompt), "--prompt", &prompt, e);
    }
    if (rc == CB_OK) rc = generate_one(r, prompt.v, (int)prompt.n, NULL, e);
    cb_ids_free(&prompt);
    return rc;
}

int main(int argc, char **argv) {
    if (cb_cli_start("cb-generate", argc, argv, CB_CLI_COMPUTE)) return cb_cli_close_stdout("cb-generate");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    opts o;
    memset(&o, 0, sizeof o);
    int status = parse_args(argc, argv, &o);
    if (status >= 0) return status;
    cb_cli_note_kernels(TOOL, o.quiet);
    run r;
    memset(&r, 0, sizeof r);
    r.o = &o;
    cb_error e;
    cb_error_clear(&e);
    int rc = main_run(&r, &e);
    if (r.have_draft_session) cb_session_free(&r.draft);
    if (r.have_target) cb_session_free(&r.target);
    if (r.have_batch) cb_batch_free(&r.batch);
    if (r.have_draft) cb_model_free(&r.draft_model);
    if (r.have_tok) cb_tokenizer_free(&r.tok);
    if (r.have_model) cb_model_free(&r.model);
    if (rc != CB_OK) {
        fflush(stdout);
        return cb_cli_report(TOOL, &e);
    }
    return cb_cli_close_stdout(TOOL);
}
