/* bench/decode.c: batch-1 decode tokens/s of a 110M-shape Llama (llama2.c's stories110M
 * widths, untied head) per weight kind and KV-cache kind at short and long context, each
 * beside the machine's memory read bandwidth, the bound it sets (bandwidth / bytes read per
 * token) and the share of it reached, and the share of a read of a buffer the size of the
 * token's working set; then greedy speculative decoding against plain.
 *   build/rel/bench/decode [-w KINDS] [-c KINDS] [-x CONTEXTS] [-n STEPS] [-r REPEATS]
 *                          [-s SPEC_NEW] [-k SPEC_KS] [-A K0] [-t TARGET_KINDS] [-d DRAFTS] [-S]
 *                          [-M MODEL_DIR [-D DRAFT_DIR] [-P TOKENS.npy [-p PROMPTS] [-l LEN]]] [-W WARM]
 * Lists are comma separated (-w fp32,bf16 -x 64,4096 -k 2,3,4,6); a draft is KIND[@LAYERS],
 * the model's weights stored as KIND, its first LAYERS layers (default all: -d q8_0,q4_0@4).
 * -A K0: also spec_k_adaptive from K0 (up to 2 K0). -S: speculative decoding only; -s 0: none.
 * Random weights (cb_model_init) by default: speed does not depend on them, acceptance does,
 * and is reported for what it is. Defaults: weights fp32, bf16, fp16, q8_0; caches fp32,
 * fp16, q8_0, q4_0; contexts 64, 4096; 32 steps, 5 repeats; targets fp32, bf16; drafts q4_0,
 * q8_0; k 4; 128 new tokens; one prompt of 16 random ids.
 * -M: a trained model directory (as cb-generate opens it) instead of the random 110M model;
 * drafts are its own weights (stored KIND, truncated to LAYERS) or, with -D, another model
 * directory's (same vocabulary; -d applies to it). -P: prompts of LEN tokens (default 32)
 * from a token file (held-out text), PROMPTS of them (default 8) at fixed spread offsets: the
 * centres of PROMPTS equal slices of the file; results are means over the prompts. With -M
 * the defaults become context 64, k 2,3,4,6, -A 4 and 96 new tokens. -W WARM: after the
 * session's first prefill (the "prefill" column: first touch of its buffers and caches
 * included) WARM more of the same prompt in the same session, reset between them; their
 * median is a last column, "warm" (as llama-bench's pp, which runs a warm-up first and
 * clears its cache between repeats). The decoder's threads:
 * OMP_NUM_THREADS (backend/cpu/parallel.h). */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bandwidth.h"
#include "core/diag.h"
#include "data/dataset.h"
#include "infer/generate.h"
#include "infer/model_dir.h"
#include "backend/cpu/parallel.h"
#include "infer/session.h"
#include "infer/speculative.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "plan/validate.h"

/* vocab 32000, d 768, %d layers of 12 heads (RoPE), SwiGLU 2048, RMSNorm, untied head */
static const char MANIFEST[] =
    "version: 1\nname: decode_110m\nmodel:\n  type: TransformerModel\n  tie_embeddings: false\n"
    "  embedder: {type: token, vocab_size: 32000, d_model: 768}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: %d\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 768}\n"
    "              - {type: AttentionLayer, d_model: 768, n_heads: 12}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 768}\n"
    "              - {type: SwiGLULayer, d_model: 768, d_ff: 2048}\n"
    "      - {type: RMSNormLayer, d_model: 768}\n";
#define LAYERS 12
#define SEED 1 /* a tensor's initial values depend on the seed and its name only, so a model
                  of fewer layers from the same seed is the first layers of this one, with
                  the same embedding and head: a truncated draft */

#define MAX_KINDS 8
#define STREAM_FLOATS ((size_t)128 << 20) /* 512 MiB: 16x the 32 MiB L3 */

static void die(const char *what, const cb_error *e) {
    fprintf(stderr, "decode: %s: %s%s%s\n", what, e->where, e->where[0] ? ": " : "", e->msg);
    exit(e->code ? e->code : 4);
}

/* ---- memory bandwidth: bench/bandwidth.h ---- */

static double stream_gbs(const float *x, size_t n, float *sink) {
    return bench_stream_gbs(x, n, cb_parallel_threads(), sink);
}

/* ---- bytes one decode step reads ---- */

/* Weight bytes one token touches: every weight matrix once (a shared one once), one row of
 * each embedding table, every norm's parameters. */
static double weight_bytes_per_token(const cb_session *s) {
    const cb_program *p = &s->prog;
    double bytes = 0;
    const int nm = p->n_ops * CB_OP_MAX_PARAMS;
    for (int i = 0; i < nm; i++) {
        const cb_weight_matrix *w = &s->dec.mats[i];
        if (!w->data) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++) seen = s->dec.mats[j].data == w->data;
        if (!seen) bytes += (double)cb_weight_matrix_bytes(w);
    }
    for (int i = 0; i < p->n_ops; i++) {
        const cb_op *op = &p->ops[i];
        if (op->kind == CB_OP_EMBED) bytes += (op->p[CB_P_POS] != CB_NO_PARAM ? 2.0 : 1.0) * op->d_out * sizeof(float);
        else if (op->kind == CB_OP_RMSNORM) bytes += (double)op->d_in * sizeof(float);
        else if (op->kind == CB_OP_LAYERNORM) bytes += 2.0 * op->d_in * sizeof(float);
    }
    return bytes;
}

/* ---- lists on the command line ---- */

/* The storage kind named tok, or exit 2 naming it. */
static cb_kv_kind kind_of_name(const char *tok) {
    cb_kv_kind k;
    if (!cb_kv_kind_from_name(tok, &k)) {
        fprintf(stderr, "decode: unknown kind '%s'\n", tok);
        exit(2);
    }
    return k;
}

static int parse_kinds(const char *arg, cb_kv_kind *out) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < MAX_KINDS; tok = strtok(NULL, ",")) out[n++] = kind_of_name(tok);
    return n;
}

/* Drafts KIND[@LAYERS],...: the model's weights stored as KIND, its first LAYERS layers
 * (0: all; checked against the draft model once it is loaded). */
static int parse_drafts(const char *arg, cb_kv_kind *kinds, int *layers) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < MAX_KINDS; tok = strtok(NULL, ",")) {
        char *at = strchr(tok, '@');
        layers[n] = 0;
        if (at) {
            *at = 0;
            layers[n] = atoi(at + 1);
            if (layers[n] < 1) {
                fprintf(stderr, "decode: draft layers must be at least 1\n");
                exit(2);
            }
        }
        kinds[n++] = kind_of_name(tok);
    }
    return n;
}

static int parse_ints(const char *arg, int *out) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", arg);
    int n = 0;
    for (char *tok = strtok(buf, ","); tok && n < MAX_KINDS; tok = strtok(NULL, ",")) {
        char *end;
        long v = strtol(tok, &end, 10);
        if (*end || v < 1 || v > 1 << 20) {
            fprintf(stderr, "decode: bad number '%s'\n", tok);
            exit(2);
        }
        out[n++] = (int)v;
    }
    return n;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The 110M model, or its first `layers` layers, with weights from SEED. */
static void model_init(cb_model *m, int layers) {
    char text[sizeof MANIFEST + 16];
    snprintf(text, sizeof text, MANIFEST, layers);
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    cb_error e;
    cb_diags d;
    cb_diags_init(&d);
    if (cb_yaml_parse(text, strlen(text), "decode_110m.yml", &manifest, &e) != 0) die("manifest", &e);
    if (cb_lower(manifest, &lowered, &d) != 0 || cb_validate(lowered, &plan, &d) != 0) {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "decode: %s: %s\n", d.items[i].where, d.items[i].msg);
        exit(3);
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    if (cb_model_init(m, plan, SEED, &e) != CB_OK) die("model", &e);
    json_decref(plan);
}

static void random_tokens(int32_t *t, int n, int vocab, unsigned long long seed) {
    for (int i = 0; i < n; i++) {
        seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
        t[i] = (int32_t)(seed % (unsigned long long)vocab);
    }
}

/* ---- a trained model: its depth, a truncated copy, prompts from held-out text ---- */

/* The first NestedTopology of the plan (the repeated block stack), or NULL. */
static json_t *find_stack(json_t *node) {
    if (!json_is_object(node)) return NULL;
    const char *type = json_string_value(json_object_get(node, "type"));
    if (type && strcmp(type, "NestedTopology") == 0 && json_is_integer(json_object_get(node, "repeat"))) return node;
    json_t *children = json_object_get(node, "children"), *child;
    size_t i;
    json_array_foreach(children, i, child) {
        json_t *found = find_stack(child);
        if (found) return found;
    }
    return NULL;
}

/* Blocks in m's stack (0 when it has none). */
static int model_layers(const cb_model *m) {
    json_t *stack = find_stack(json_object_get(json_object_get(m->plan, "model"), "topology"));
    return stack ? (int)json_integer_value(json_object_get(stack, "repeat")) : 0;
}

/* A copy of m with its first `layers` blocks, the same embedding, final norm and head (the
 * parameters of the same names). */
static void model_truncate(cb_model *out, const cb_model *m, int layers) {
    cb_error e;
    json_t *plan = json_deep_copy(m->plan);
    json_t *stack = find_stack(json_object_get(json_object_get(plan, "model"), "topology"));
    json_object_set_new(stack, "repeat", json_integer(layers));
    json_t *config = json_object_get(stack, "config");
    if (json_is_object(config)) json_object_set_new(config, "repeat", json_integer(layers));
    if (cb_model_init_empty(out, plan, &e) != CB_OK) die("truncated model", &e);
    json_decref(plan);
    for (int i = 0; i < out->params.n; i++) {
        const cb_param *p = &out->params.items[i];
        const cb_param *src = cb_params_find(&m->params, p->name);
        if (!src || src->numel != p->numel) {
            fprintf(stderr, "decode: truncated model: no parameter %s in the model\n", p->name);
            exit(4);
        }
        memcpy(out->weights + p->offset, m->weights + src->offset, sizeof(float) * p->numel);
    }
}

/* Prompts: n of len tokens each, back to back. */
typedef struct prompts {
    int32_t *ids;
    int n, len;
    char rule[160];
} prompts;

/* n prompts of len tokens from the token file path: prompt i starts at the centre of the
 * i-th of n equal slices of the file (less len), so they are spread over it and fixed. */
static void prompts_from_file(prompts *ps, const char *path, int n, int len, int vocab) {
    cb_error e;
    cb_dataset ds;
    if (cb_dataset_open(&ds, path, &e) != CB_OK) die("prompts", &e);
    if (cb_dataset_check_vocab(&ds, vocab, &e) != CB_OK) die("prompts", &e);
    if (ds.n_tokens < (size_t)len * 2) {
        fprintf(stderr, "decode: %s: %zu tokens, too few for prompts of %d\n", path, ds.n_tokens, len);
        exit(2);
    }
    ps->n = n;
    ps->len = len;
    ps->ids = malloc(sizeof *ps->ids * (size_t)n * (size_t)len);
    const size_t span = ds.n_tokens - (size_t)len;
    for (int i = 0; i < n; i++) {
        const size_t start = span * (size_t)(2 * i + 1) / (size_t)(2 * n);
        for (int j = 0; j < len; j++) ps->ids[(size_t)i * len + j] = (int32_t)cb_dataset_token(&ds, start + (size_t)j);
    }
    const char *base = strrchr(path, '/');
    snprintf(ps->rule, sizeof ps->rule, "%d prompts of %d tokens of %s (%zu tokens), each at the centre of its 1/%d",
             n, len, base ? base + 1 : path, ds.n_tokens, n);
    cb_dataset_close(&ds);
}

/* ---- plain decode ---- */

typedef struct decode_result {
    double tps_median, tps_min, tps_max;   /* tokens/s over the repeats */
    double bw_median, bw_min, bw_max;      /* GB/s, every measurement around the repeats */
    double frac_median;                    /* median over repeats of tokens/s / bound */
    double ws_gbs;                         /* GB/s over a buffer of the bytes a token reads */
    double weight_bytes, kv_bytes;         /* per token */
    double prefill_s;
    double prefill_warm_s; /* median of g_warm prefills after the first (0: none) */
} decode_result;

static int g_warm; /* -W: warm prefills after the first */

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* Prefill `context` tokens, then `repeats` times: `steps` greedy decode steps timed and
 * rolled back to the context, with the bandwidth measured before the first and after
 * every repeat; each repeat's bound uses the mean of the measurements on either side. */
static decode_result run_decode(const cb_model *m, cb_kv_kind wkind, cb_kv_kind ckind, int context, int steps,
                                int repeats, const float *stream, float *sink) {
    decode_result r;
    memset(&r, 0, sizeof r);
    cb_error e;
    cb_session s;
    cb_session_config cfg = cb_session_config_default();
    cfg.max_seq_len = context + steps;
    cfg.kinds.k = cfg.kinds.k_sem = cfg.kinds.v = ckind;
    cfg.weight_kind = wkind;
    if (cb_session_init(&s, m, &cfg, &e) != CB_OK) die("session", &e);
    int32_t *prompt = malloc(sizeof *prompt * (size_t)context);
    float *logits = malloc(sizeof *logits * (size_t)s.vocab);
    double *tps = malloc(sizeof *tps * (size_t)repeats), *frac = malloc(sizeof *frac * (size_t)repeats);
    double *bw = malloc(sizeof *bw * (size_t)(repeats + 1));
    random_tokens(prompt, context, s.vocab, 0x9E3779B97F4A7C15ULL + (unsigned)context);
    double t0 = cb_clock_s();
    if (cb_session_prefill(&s, prompt, context, logits, &e) != CB_OK) die("prefill", &e);
    r.prefill_s = cb_clock_s() - t0;
    if (g_warm > 0) {
        double *pw = malloc(sizeof *pw * (size_t)g_warm);
        for (int i = 0; i < g_warm; i++) {
            cb_session_reset(&s);
            const double t1 = cb_clock_s();
            if (cb_session_prefill(&s, prompt, context, logits, &e) != CB_OK) die("prefill", &e);
            pw[i] = cb_clock_s() - t1;
        }
        r.prefill_warm_s = median(pw, g_warm);
        free(pw);
    }
    const int32_t first = cb_argmax(logits, s.vocab);
    r.weight_bytes = weight_bytes_per_token(&s);
    // step i (0-based) attends to context + i + 1 keys
    r.kv_bytes = (double)cb_kv_cache_bytes_per_token(&s.dec.kv) * (context + (steps + 1) / 2.0);
    const double bytes = r.weight_bytes + r.kv_bytes;
    bw[0] = stream_gbs(stream, STREAM_FLOATS, sink);
    // the working set's own read: a buffer of the bytes a token reads, read again and again as
    // the decode reads its weights, so the part the L3 keeps between tokens counts for both (a
    // good part of a 62 MB q4_0 model in a 32 MiB L3, almost nothing of a 438 MB fp32 one)
    const size_t ws = (size_t)(bytes / sizeof(float) + 63) / 64 * 64;
    const size_t ws_floats = ws < STREAM_FLOATS ? ws : STREAM_FLOATS;
    const double ws0 = stream_gbs(stream, ws_floats, sink);
    for (int rep = 0; rep < repeats; rep++) {
        cb_session_truncate(&s, context);
        int32_t tok = first;
        double t1 = cb_clock_s();
        for (int i = 0; i < steps; i++) {
            if (cb_session_forward(&s, &tok, 1, logits, 0, &e) != CB_OK) die("decode", &e);
            tok = cb_argmax(logits, s.vocab);
        }
        tps[rep] = steps / (cb_clock_s() - t1);
        *sink += (float)tok;
        bw[rep + 1] = stream_gbs(stream, STREAM_FLOATS, sink);
        frac[rep] = tps[rep] / (0.5 * (bw[rep] + bw[rep + 1]) * 1e9 / bytes);
    }
    r.frac_median = median(frac, repeats);
    r.ws_gbs = 0.5 * (ws0 + stream_gbs(stream, ws_floats, sink));
    r.tps_median = median(tps, repeats); // sorts tps
    r.tps_min = tps[0];
    r.tps_max = tps[repeats - 1];
    r.bw_median = median(bw, repeats + 1);
    r.bw_min = bw[0];
    r.bw_max = bw[repeats];
    free(prompt);
    free(logits);
    free(tps);
    free(frac);
    free(bw);
    cb_session_free(&s);
    return r;
}

/* ---- speculative decoding ---- */

/* Median ms of a pass of n tokens appended to what s holds (rolled back after each),
 * logits of every row when all_rows (a verification pass) else of the last. */
static double pass_ms(cb_session *s, int n, int all_rows) {
    enum { REPS = 9 };
    int32_t tok[32];
    float *logits = malloc(sizeof *logits * (size_t)s->vocab * (size_t)n);
    double t[REPS];
    cb_error e;
    random_tokens(tok, n, s->vocab, 777);
    const int len = s->len;
    for (int r = 0; r < REPS; r++) {
        double t0 = cb_clock_s();
        if (cb_session_forward(s, tok, n, logits, all_rows, &e) != CB_OK) die("pass", &e);
        t[r] = (cb_clock_s() - t0) * 1e3;
        cb_session_truncate(s, len);
    }
    free(logits);
    return median(t, REPS);
}

typedef struct spec_result {
    double speedup; /* mean speculative tok/s / mean plain tok/s over the prompts */
    double accept;  /* accepted / drafted, all prompts and repeats */
    int same;       /* every speculative output equal to the plain one */
} spec_result;

/* Greedy generation of n_new tokens after each prompt, plain on `target`, then speculative
 * with `draft` (k = spec_k, adaptive from it up to 2 spec_k when asked); both repeated; the
 * ids must agree. Per prompt the median over repeats; printed: the mean over prompts, the
 * min-max over every prompt and repeat. */
static spec_result run_spec(const cb_model *m, const cb_model *dm, const char *dname, cb_kv_kind tkind,
                            cb_kv_kind dkind, const prompts *ps, int n_new, int spec_k, int adaptive, int repeats,
                            const float *stream, float *sink) {
    cb_error e;
    cb_session t, d;
    cb_session_config cfg = cb_session_config_default();
    cfg.max_seq_len = 1024;
    const int tctx = cb_model_max_seq_len(m), dctx = cb_model_max_seq_len(dm);
    if (tctx && tctx < cfg.max_seq_len) cfg.max_seq_len = tctx;
    if (dctx && dctx < cfg.max_seq_len) cfg.max_seq_len = dctx;
    cfg.weight_kind = tkind;
    if (cb_session_init(&t, m, &cfg, &e) != CB_OK) die("target session", &e);
    cfg.weight_kind = dkind;
    if (cb_session_init(&d, dm, &cfg, &e) != CB_OK) die("draft session", &e);
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = n_new;
    cb_spec_config sc = cb_spec_config_default();
    sc.method = CB_SPEC_GREEDY;
    sc.spec_k = spec_k;
    sc.spec_k_adaptive = adaptive;
    sc.spec_k_max = 2 * spec_k;
    cb_generate_io io;
    memset(&io, 0, sizeof io);
    const int samples = ps->n * repeats;
    double *plain = malloc(sizeof *plain * (size_t)samples), *spec = malloc(sizeof *spec * (size_t)samples);
    double *tmp = malloc(sizeof *tmp * (size_t)repeats);
    double bw0 = stream_gbs(stream, STREAM_FLOATS, sink);
    long drafted = 0, accepted = 0;
    int same = 1;
    double distinct = 0, plain_mean = 0, spec_mean = 0;
    for (int pi = 0; pi < ps->n; pi++) {
        const int32_t *prompt = ps->ids + (size_t)pi * ps->len;
        for (int rep = 0; rep < repeats; rep++) {
            cb_generate_output a, b;
            cb_session_reset(&t);
            cb_session_reset(&d);
            if (cb_session_generate(&t, prompt, ps->len, &g, &io, &a, &e) != CB_OK) die("generate", &e);
            cb_session_reset(&t);
            if (cb_speculative_generate(&t, &d, prompt, ps->len, &g, &sc, &io, &b, &e) != CB_OK) die("speculative", &e);
            // the first token comes with the prefill: decode_s covers the other new_tokens - 1
            plain[pi * repeats + rep] = (a.stats.new_tokens - 1) / a.stats.decode_s;
            spec[pi * repeats + rep] = (b.stats.new_tokens - 1) / b.stats.decode_s;
            same &= a.ids.n == b.ids.n && memcmp(a.ids.v, b.ids.v, sizeof *a.ids.v * a.ids.n) == 0;
            drafted += b.stats.drafted;
            accepted += b.stats.accepted;
            if (rep == 0)
                for (size_t i = 0; i < a.ids.n; i++) {
                    size_t j = 0;
                    while (j < i && a.ids.v[j] != a.ids.v[i]) j++;
                    distinct += j == i;
                }
            cb_generate_output_free(&a);
            cb_generate_output_free(&b);
        }
        memcpy(tmp, plain + pi * repeats, sizeof *tmp * (size_t)repeats);
        plain_mean += median(tmp, repeats) / ps->n;
        memcpy(tmp, spec + pi * repeats, sizeof *tmp * (size_t)repeats);
        spec_mean += median(tmp, repeats) / ps->n;
    }
    // what a round is made of, at the context the generation reached
    cb_session_reset(&d);
    if (cb_session_forward(&d, t.tokens, t.len, NULL, 0, &e) != CB_OK) die("draft", &e);
    const double t1 = pass_ms(&t, 1, 0), tk = pass_ms(&t, spec_k + 1, 1), d1 = pass_ms(&d, 1, 0), d2 = pass_ms(&d, 2, 0);
    double bw1 = stream_gbs(stream, STREAM_FLOATS, sink);
    qsort(plain, (size_t)samples, sizeof *plain, cmp_double);
    qsort(spec, (size_t)samples, sizeof *spec, cmp_double);
    char kname[16];
    snprintf(kname, sizeof kname, adaptive ? "%da" : "%d", spec_k);
    spec_result r = {spec_mean / plain_mean, drafted ? (double)accepted / (double)drafted : 0.0, same};
    printf("%-6s %-9s %3s %5d %8.1f %6.1f-%-6.1f %8.1f %6.1f-%-6.1f %6.2fx %6.1f%% %8.0f %4s %5.1f/%-5.1f %6.2f %6.2f "
           "%6.2f %6.2f\n",
           cb_kv_kind_name(tkind), dname, kname, n_new, plain_mean, plain[0], plain[samples - 1], spec_mean, spec[0],
           spec[samples - 1], r.speedup, 100 * r.accept, distinct / ps->n, same ? "yes" : "NO", bw0, bw1, t1, tk, d1,
           d2);
    fflush(stdout);
    free(plain);
    free(spec);
    free(tmp);
    cb_session_free(&d);
    cb_session_free(&t);
    return r;
}

int main(int argc, char **argv) {
    cb_kv_kind wkinds[MAX_KINDS] = {CB_KV_F32, CB_KV_BF16, CB_KV_F16, CB_KV_Q8_0};
    cb_kv_kind ckinds[MAX_KINDS] = {CB_KV_F32, CB_KV_F16, CB_KV_Q8_0, CB_KV_Q4_0};
    cb_kv_kind tkinds[MAX_KINDS] = {CB_KV_F32, CB_KV_BF16}, dkinds[MAX_KINDS] = {CB_KV_Q4_0, CB_KV_Q8_0};
    int dlayers[MAX_KINDS] = {0, 0};
    int contexts[MAX_KINDS] = {64, 4096}, spec_ks[MAX_KINDS] = {4};
    int nw = 4, nc = 4, nx = -1, nt = 2, nd = 2, nk = -1, steps = 32, repeats = 5, spec_new = -1, spec_only = 0;
    int adaptive_k0 = -1, n_prompts = 8, prompt_len = 32;
    const char *model_dir = NULL, *draft_dir = NULL, *prompt_file = NULL;
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "w:c:x:n:r:s:k:A:t:d:SM:D:P:p:l:W:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'w': nw = parse_kinds(optarg, wkinds); break;
        case 'c': nc = parse_kinds(optarg, ckinds); break;
        case 't': nt = parse_kinds(optarg, tkinds); break;
        case 'd': nd = parse_drafts(optarg, dkinds, dlayers); break;
        case 'x': nx = parse_ints(optarg, contexts); break;
        case 'k': nk = parse_ints(optarg, spec_ks); break;
        case 'A': adaptive_k0 = atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case 'r': repeats = atoi(optarg); break;
        case 'W': g_warm = atoi(optarg); break;
        case 's': spec_new = atoi(optarg); break;
        case 'S': spec_only = 1; break;
        case 'M': model_dir = optarg; break;
        case 'D': draft_dir = optarg; break;
        case 'P': prompt_file = optarg; break;
        case 'p': n_prompts = atoi(optarg); break;
        case 'l': prompt_len = atoi(optarg); break;
        case 'h':
            printf("usage: decode [-w KINDS] [-c KINDS] [-x CONTEXTS] [-n STEPS] [-r REPEATS]\n"
                   "              [-s SPEC_NEW] [-k SPEC_KS] [-A K0] [-t TARGET_KINDS] [-d KIND[@LAYERS],...] [-S]\n"
                   "              [-M MODEL_DIR [-D DRAFT_DIR] [-P TOKENS.npy [-p PROMPTS] [-l LEN]]] [-W WARM]\n");
            return 0;
        default: return 2;
        }
    }
    if ((draft_dir || prompt_file) && !model_dir) {
        fprintf(stderr, "decode: -D and -P need -M\n");
        return 2;
    }
    // a trained model: one short context, every k, adaptive k, within its training context
    if (nx < 0) nx = model_dir ? 1 : 2;
    if (nk < 0) {
        nk = model_dir ? 4 : 1;
        if (model_dir) memcpy(spec_ks, (int[]){2, 3, 4, 6}, sizeof(int) * 4);
    }
    if (adaptive_k0 < 0) adaptive_k0 = model_dir ? 4 : 0;
    if (spec_new < 0) spec_new = model_dir ? 96 : 128;
    int kmax = adaptive_k0;
    for (int i = 0; i < nk; i++) kmax = spec_ks[i] > kmax ? spec_ks[i] : kmax;
    if (steps < 1 || repeats < 1 || spec_new < 0 || kmax > 16 || adaptive_k0 > 16 || n_prompts < 1 ||
        n_prompts > 1024 || prompt_len < 1 || prompt_len > 512) {
        fprintf(stderr, "decode: -n, -r, -p, -l must be at least 1 (-p at most 1024, -l at most 512), -s at least "
                        "0, -k and -A at most 16\n");
        return 2;
    }

    cb_error e;
    cb_model m, dsrc;
    int layers = LAYERS;
    if (model_dir) {
        if (cb_model_open_dir(&m, model_dir, &e) != CB_OK) die(model_dir, &e);
        layers = model_layers(&m);
    } else {
        model_init(&m, LAYERS);
    }
    const cb_model *draft_base = &m; // what the drafts are made of
    if (draft_dir) {
        if (cb_model_open_dir(&dsrc, draft_dir, &e) != CB_OK) die(draft_dir, &e);
        if (cb_spec_check_models(&m, &dsrc, &e) != CB_OK) die(draft_dir, &e);
        draft_base = &dsrc;
    }
    const int draft_base_layers = draft_dir ? model_layers(&dsrc) : layers;
    for (int i = 0; i < nd; i++) {
        if (dlayers[i] == 0) dlayers[i] = draft_base_layers;
        if (dlayers[i] > draft_base_layers || (dlayers[i] < draft_base_layers && !model_layers(draft_base))) {
            fprintf(stderr, "decode: draft layers must be 1..%d\n", draft_base_layers);
            return 2;
        }
    }
    prompts ps;
    const int vocab = (int)json_integer_value(json_object_get(json_object_get(m.plan, "model"), "vocab_size"));
    if (prompt_file) {
        prompts_from_file(&ps, prompt_file, n_prompts, prompt_len, vocab);
    } else { // one prompt of 16 random ids
        ps.n = 1;
        ps.len = 16;
        ps.ids = malloc(sizeof *ps.ids * 16);
        random_tokens(ps.ids, 16, vocab, 12345);
        snprintf(ps.rule, sizeof ps.rule, "prompt 16 random ids");
    }
    float *stream = malloc(sizeof *stream * STREAM_FLOATS), sink = 0;
    if (!stream) {
        fprintf(stderr, "decode: out of memory\n");
        return 4;
    }
    // random contents: pages that repeat (a pattern with a 4 KiB period, zeros) read back far
    // faster than memory allows on this VM, as if the host merged them into one
    unsigned long long state = 0x2545F4914F6CDD1DULL;
    for (size_t i = 0; i < STREAM_FLOATS; i++) {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17;
        stream[i] = (float)(state >> 40) * 0x1p-24f;
    }
    if (model_dir)
        printf("decode: %s (V %d, %d layers), %zu params, %d threads\n", model_dir, vocab, layers,
               m.params.total_floats, cb_parallel_threads());
    else
        printf("decode: 110M shape (V 32000, d 768, 12 layers x 12 heads, d_ff 2048, untied), %zu params, "
               "%d threads\n", m.params.total_floats, cb_parallel_threads());
    printf("bandwidth (bw, GB/s): streaming read of %zu MiB on all threads, best of 5, before and after every "
           "repeat;\nbound = median bw / MB per token; %%bound = median over repeats of tok/s / (mean bw around "
           "it / MB per token);\nws_bw = the same read over a buffer of MB per token (the working set: the part "
           "of it the L3 keeps reads faster), before and after the repeats; %%ws = median tok/s / (ws_bw / MB "
           "per token)\n\n",
           STREAM_FLOATS * sizeof(float) >> 20);

    if (!spec_only) {
        printf("%-6s %-6s %5s %7s %13s %7s %7s %7s %6s %13s %7s %6s %6s %5s %8s%s\n", "weight", "cache", "ctx", "tok/s",
               "min-max", "w_MB", "kv_MB", "MB/tok", "bw", "bw min-max", "bound", "%bound", "ws_bw", "%ws", "prefill",
               g_warm > 0 ? "     warm" : "");
        for (int xi = 0; xi < nx; xi++)
            for (int wi = 0; wi < nw; wi++)
                for (int ci = 0; ci < nc; ci++) {
                    decode_result r = run_decode(&m, wkinds[wi], ckinds[ci], contexts[xi], steps, repeats, stream, &sink);
                    const double bytes = r.weight_bytes + r.kv_bytes;
                    printf("%-6s %-6s %5d %7.1f %6.1f-%-6.1f %7.1f %7.1f %7.1f %6.1f %6.1f-%-6.1f %7.1f %5.0f%% %6.1f %4.0f%% "
                           "%7.3fs",
                           cb_kv_kind_name(wkinds[wi]), cb_kv_kind_name(ckinds[ci]), contexts[xi], r.tps_median,
                           r.tps_min, r.tps_max, r.weight_bytes / 1e6, r.kv_bytes / 1e6, bytes / 1e6, r.bw_median,
                           r.bw_min, r.bw_max, r.bw_median * 1e9 / bytes, 100 * r.frac_median, r.ws_gbs,
                           100 * r.tps_median / (r.ws_gbs * 1e9 / bytes), r.prefill_s);
                    if (g_warm > 0) printf(" %7.3fs", r.prefill_warm_s);
                    printf("\n");
                    fflush(stdout);
                }
    }
    if (spec_new > 0) {
        printf("\nspeculative decoding, greedy, fp32 cache, %s: mean over prompts of the median tok/s of %d repeats "
               "(min-max over all)\n",
               ps.rule, repeats);
        if (draft_dir) printf("drafts: %s, stored KIND, its first LAYERS layers (KIND@LAYERS)\n", draft_dir);
        else printf("drafts: the target's own weights stored KIND, its first LAYERS layers (KIND@LAYERS)\n");
        printf("k: draft tokens per round; Na: adaptive from N up to 2N\n");
        printf("%-6s %-9s %3s %5s %8s %13s %8s %13s %7s %7s %8s %4s %11s %6s %6s %6s %6s\n", "target", "draft", "k",
               "new", "plain", "min-max", "spec", "min-max", "speedup", "accept", "distinct", "same", "bw GB/s",
               "T1 ms", "Tk+1", "D1", "D2");
        for (int di = 0; di < nd; di++) {
            cb_model dm;
            const int cut = dlayers[di] < draft_base_layers;
            if (cut && model_dir) model_truncate(&dm, draft_base, dlayers[di]);
            else if (cut) model_init(&dm, dlayers[di]); // the random model's first layers (SEED)
            char dname[32];
            snprintf(dname, sizeof dname, "%s@%d", cb_kv_kind_name(dkinds[di]), dlayers[di]);
            for (int ti = 0; ti < nt; ti++) {
                spec_result best = {0, 0, 0};
                char best_k[16] = "";
                for (int ki = 0; ki <= nk; ki++) {
                    if (ki == nk && adaptive_k0 <= 0) break;
                    const int k = ki < nk ? spec_ks[ki] : adaptive_k0, adaptive = ki == nk;
                    spec_result r = run_spec(&m, cut ? &dm : draft_base, dname, tkinds[ti], dkinds[di], &ps, spec_new,
                                             k, adaptive, repeats, stream, &sink);
                    if (r.same && r.speedup > best.speedup) {
                        best = r;
                        snprintf(best_k, sizeof best_k, adaptive ? "%da" : "%d", k);
                    }
                }
                if (nk + (adaptive_k0 > 0) > 1)
                    printf("  best k for %s / %s: %s, %.2fx at %.1f%% acceptance\n", cb_kv_kind_name(tkinds[ti]),
                           dname, best_k[0] ? best_k : "none", best.speedup, 100 * best.accept);
            }
            if (cut) cb_model_free(&dm);
        }
    }
    fprintf(stderr, "(checksum %g)\n", (double)sink);
    free(stream);
    free(ps.ids);
    if (draft_dir) cb_model_free(&dsrc);
    cb_model_free(&m);
    return 0;
}
