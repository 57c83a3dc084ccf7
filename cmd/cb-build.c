/* cb-build: a model directory from a plan (fresh weights), from a Hugging Face Llama
 * checkpoint, or exported as one; and a forward check that can trace node outputs. */
#include <errno.h>
#include <fnmatch.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "io/hf_llama.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "model/run.h"
#include "tensor/safetensors.h"

static const char *TOOL = "cb-build";

static void usage(void) {
    printf("usage: cb-build [-o dir] [--seed n] [plan]\n"
           "       cb-build --from hf_dir [-o dir] [plan]\n"
           "       cb-build --export-hf dir model_dir\n"
           "       cb-build --forward tokens [--trace pattern] [-o file] model_dir\n"
           "Build a model directory (plan.json + model.safetensors) from a plan with weights\n"
           "initialised per the plan, or from a Hugging Face Llama checkpoint; export a model\n"
           "directory as a Hugging Face Llama checkpoint; or run one forward pass over tokens and\n"
           "write its logits and traced node outputs as safetensors.\n");
}

/* Parse "1,2,3" (or whitespace-separated) token ids. */
static int parse_tokens(const char *s, int32_t **out, int *n, cb_error *e) {
    int cap = 16, k = 0;
    int32_t *t = malloc((size_t)cap * sizeof *t);
    if (!t) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ',' || *p == ' ' || *p == '\n' || *p == '\t') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(t);
            return cb_fail(e, CB_E_USAGE, "--forward", "not a list of token ids: \"%.40s\"", p);
        }
        if (k == cap) {
            int32_t *nt = realloc(t, (size_t)(cap *= 2) * sizeof *t);
            if (!nt) { free(t); return cb_fail(e, CB_E_RUNTIME, "", "out of memory"); }
            t = nt;
        }
        t[k++] = (int32_t)v;
        p = end;
    }
    if (k == 0) { free(t); return cb_fail(e, CB_E_USAGE, "--forward", "no token ids"); }
    *out = t;
    *n = k;
    return CB_OK;
}

static int matches(const char *patterns, const cb_op *op) {
    if (!patterns) return 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", patterns);
    for (char *save, *pat = strtok_r(buf, ",", &save); pat; pat = strtok_r(NULL, ",", &save))
        if (fnmatch(pat, op->id, 0) == 0 || (op->type && fnmatch(pat, op->type, 0) == 0)) return 1;
    return 0;
}

static int do_forward(const char *model_dir, const char *tokens_arg, const char *trace, const char *out, cb_error *e) {
    int32_t *tokens = NULL;
    int T = 0;
    CB_TRY(parse_tokens(tokens_arg, &tokens, &T, e));
    cb_model m;
    int rc = cb_model_open_dir(&m, model_dir, e);
    if (rc != CB_OK) { free(tokens); return rc; }
    cb_program prog;
    rc = cb_program_init(&prog, m.plan, &m.params, 1, T, e);
    for (int i = 0; rc == CB_OK && i < T; i++)
        if (tokens[i] >= prog.vocab_size)
            rc = cb_fail(e, CB_E_USAGE, "--forward", "token id %d is past the vocabulary (%d)", tokens[i], prog.vocab_size);
    cb_run r;
    int have_run = 0;
    if (rc == CB_OK && (rc = cb_run_init(&r, &prog, 0, e)) == CB_OK) have_run = 1;
    if (rc == CB_OK) {
        cb_run_forward(&r, &prog, m.weights, tokens, NULL);
        cb_safetensors_writer w;
        cb_safetensors_writer_init(&w);
        for (int i = 0; rc == CB_OK && i < prog.n_ops; i++) {
            int is_head = prog.ops[i].kind == CB_OP_HEAD;
            if (!is_head && !matches(trace, &prog.ops[i])) continue;
            int width;
            const float *o = cb_run_op_output(&r, &prog, i, &width);
            int64_t shape[3] = {1, T, width};
            rc = cb_safetensors_writer_add(&w, is_head ? "logits" : prog.ops[i].id, CB_DTYPE_F32, 3, shape, o, e);
        }
        if (rc == CB_OK) rc = cb_safetensors_writer_meta(&w, "cb.plan_sha256", m.plan_sha256, e);
        if (rc == CB_OK) rc = cb_safetensors_writer_write(&w, out ? out : "-", e);
        cb_safetensors_writer_free(&w);
    }
    if (have_run) cb_run_free(&r);
    if (rc == CB_OK || prog.ops) cb_program_free(&prog);
    cb_model_free(&m);
    free(tokens);
    return rc;
}

int main(int argc, char **argv) {
    cb_cli_prefer_passive_wait(argv);
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},       {"output", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'}, {"from", required_argument, 0, 'f'},
        {"export-hf", required_argument, 0, 'x'}, {"forward", required_argument, 0, 'F'},
        {"trace", required_argument, 0, 't'}, {0, 0, 0, 0}};
    const char *out = NULL, *from = NULL, *export_dir = NULL, *forward = NULL, *trace = NULL;
    unsigned long long seed = 1337;
    int c;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'o': out = optarg; break;
        case 'f': from = optarg; break;
        case 'x': export_dir = optarg; break;
        case 'F': forward = optarg; break;
        case 't': trace = optarg; break;
        case 's': {
            char *end;
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (errno || *end || !*optarg || optarg[0] == '-')
                return cb_cli_usage_error(TOOL, "--seed: not a non-negative integer: %s", optarg);
            break;
        }
        default: return cb_cli_usage_error(TOOL, "unknown option");
        }
    }
    int n_args = argc - optind;
    cb_error e;
    cb_error_clear(&e);
    if ((from != NULL) + (export_dir != NULL) + (forward != NULL) > 1)
        return cb_cli_usage_error(TOOL, "--from, --export-hf and --forward exclude each other");
    if (trace && !forward) return cb_cli_usage_error(TOOL, "--trace needs --forward");
    if (forward) {
        if (n_args != 1) return cb_cli_usage_error(TOOL, "--forward needs one model directory");
        int rc = do_forward(argv[optind], forward, trace, out, &e);
        return rc ? cb_cli_report(TOOL, &e) : (out ? 0 : cb_cli_close_stdout(TOOL));
    }
    if (export_dir) {
        if (n_args != 1) return cb_cli_usage_error(TOOL, "--export-hf needs one model directory");
        cb_model m;
        int rc = cb_model_open_dir(&m, argv[optind], &e);
        if (rc == CB_OK) {
            rc = cb_hf_export(&m, export_dir, &e);
            cb_model_free(&m);
        }
        return rc ? cb_cli_report(TOOL, &e) : 0;
    }
    if (n_args > 1) return cb_cli_usage_error(TOOL, "too many arguments");
    if (!out) return cb_cli_usage_error(TOOL, "-o dir is required");
    json_t *plan = NULL;
    int rc = CB_OK;
    if (n_args == 1 || !from) rc = cb_doc_load(n_args == 1 ? argv[optind] : "-", "plan", &plan, &e);
    else rc = cb_hf_plan_from_config(from, &plan, &e);
    cb_model m;
    if (rc == CB_OK) {
        rc = from ? cb_model_init_empty(&m, plan, &e) : cb_model_init(&m, plan, seed, &e);
        json_decref(plan);
    }
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    if (from) rc = cb_hf_load(&m, from, &e);
    json_t *meta = json_object();
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", seed);
    if (!from) json_object_set_new(meta, "cb.seed", json_string(seed_text));
    else json_object_set_new(meta, "cb.source", json_string(from));
    if (rc == CB_OK) rc = cb_model_save_dir(&m, out, meta, &e);
    json_decref(meta);
    cb_model_free(&m);
    return rc ? cb_cli_report(TOOL, &e) : 0;
}
