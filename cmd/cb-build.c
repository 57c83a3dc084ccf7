/* cb-build: a model directory from a plan (fresh weights), from a Hugging Face Llama
 * checkpoint, or exported as one; a forward check that can trace node outputs
 * (model/trace.h); a check that every weight is finite. */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "io/gguf.h"
#include "io/hf_llama.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "model/trace.h"
#include "plan/plan.h"
#include "train/config.h"
#include "upcycle/surgery.h"
#include "tokenizer/ids_text.h"

static const char *TOOL = "cb-build";

static void usage(void) {
    printf("usage: cb-build [-o dir] [--seed n] [plan]\n"
           "       cb-build --from hf_dir [-o dir] [plan]\n"
           "       cb-build --surgery teacher_dir [--group name] [--run id] [--context n] [--seed n] -o dir plan\n"
           "       cb-build --export-hf dir model_dir\n"
           "       cb-build --export-gguf dir [--gguf-type type] model_dir\n"
           "       cb-build --forward tokens [--trace pattern] [-o file] model_dir\n"
           "       cb-build --check-weights model_dir\n"
           "Build a model directory (plan.json + model.safetensors) from a plan with weights\n"
           "initialised per the plan, or from a Hugging Face Llama checkpoint; export a model\n"
           "directory as a Hugging Face Llama checkpoint or as dir/model.gguf for llama.cpp; or run one forward pass over tokens and\n"
           "write its logits and traced node outputs as safetensors; or check that every weight\n"
           "of a model directory is finite. --surgery builds the student of a run (its\n"
           "train.student.overrides) from the teacher's weights (cb-build(1), SURGERY).\n");
}

/* The student of run group/run of plan_path, made from the teacher in teacher_dir. */
static int do_surgery(const char *plan_path, const char *teacher_dir, const char *group, const char *run, int context,
                      unsigned long long seed, const char *out, cb_error *e) {
    json_t *plan = NULL, *splan = NULL;
    CB_TRY(cb_doc_load(plan_path, "plan", &plan, e));
    const json_t *g, *r;
    int rc = cb_train_find_run(plan, group, run, &g, &r, e);
    const char *gname = rc == CB_OK ? json_string_value(json_object_get(g, "name")) : NULL;
    const char *rid = rc == CB_OK ? json_string_value(json_object_get(r, "id")) : NULL;
    if (rc == CB_OK && !(splan = cb_plan_student_doc(plan, gname ? gname : "", rid ? rid : "")))
        rc = cb_fail(e, CB_E_USAGE, plan_path, "run %s/%s has no student (train.student.overrides)", gname ? gname : "?",
                     rid ? rid : "?");
    cb_model t, s;
    int have_t = 0, have_s = 0;
    if (rc == CB_OK) {
        json_object_del(plan, "students");
        rc = cb_model_init_empty(&t, plan, e);
        have_t = rc == CB_OK;
    }
    if (rc == CB_OK && (rc = cb_model_load_weights_dir(&t, teacher_dir, e)) == CB_E_INVALID) {
        char why[sizeof e->msg];
        snprintf(why, sizeof why, "%s", e->msg);
        rc = cb_fail(e, e->code, e->where, "the teacher does not match the plan's model: %s", why);
    }
    if (rc == CB_OK) {
        rc = cb_model_init(&s, splan, seed, e);
        have_s = rc == CB_OK;
    }
    cb_surgery_options o = {.context = context};
    if (rc == CB_OK) rc = cb_surgery(&s, &t, &o, e);
    json_t *meta = json_object();
    json_object_set_new(meta, "cb.source", json_string(teacher_dir));
    json_object_set_new(meta, "cb.surgery", json_string("svd"));
    if (rc == CB_OK) rc = cb_model_save_dir(&s, out, meta, e);
    json_decref(meta);
    if (have_t) cb_model_free(&t);
    if (have_s) cb_model_free(&s);
    json_decref(plan);
    json_decref(splan);
    return rc;
}

static int do_forward(const char *model_dir, const char *tokens_arg, const char *trace, const char *out, cb_error *e) {
    cb_ids tokens = {0};
    cb_model m;
    int rc = cb_ids_parse_arg(tokens_arg, "--forward", &tokens, e);
    if (rc == CB_OK && (rc = cb_model_open_dir(&m, model_dir, e)) == CB_OK) {
        cb_trace t;
        rc = cb_trace_forward(&t, &m, tokens.v, (int)tokens.n, "--forward", e);
        if (rc == CB_OK) {
            rc = cb_trace_write(&t, trace, out, e);
            cb_trace_free(&t);
        }
        cb_model_free(&m);
    }
    cb_ids_free(&tokens);
    return rc;
}

/* Every weight of the model directory finite, or the first tensor that is not named. */
static int check_weights(const char *model_dir, cb_error *e) {
    cb_model m;
    CB_TRY(cb_model_open_dir(&m, model_dir, e));
    size_t at;
    int k = cb_model_first_nonfinite(&m, &at), rc = CB_OK;
    if (k >= 0) {
        char where[4200];
        snprintf(where, sizeof where, "%s%s", model_dir, cb_hf_is_dir(model_dir) ? "" : "/model.safetensors");
        const cb_param *p = &m.params.items[k];
        float v = m.weights[p->offset + at];
        rc = cb_fail(e, CB_E_INVALID, where, "tensor %s holds %s (element %zu of %zu)", p->name,
                     isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf", at, p->numel);
    }
    cb_model_free(&m);
    return rc;
}

int main(int argc, char **argv) {
    if (cb_cli_start("cb-build", argc, argv, CB_CLI_COMPUTE)) return cb_cli_close_stdout("cb-build");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},       {"output", required_argument, 0, 'o'},
        {"seed", required_argument, 0, 's'}, {"from", required_argument, 0, 'f'},
        {"export-hf", required_argument, 0, 'x'}, {"forward", required_argument, 0, 'F'},
        {"trace", required_argument, 0, 't'}, {"check-weights", no_argument, 0, 'c'},
        {"surgery", required_argument, 0, 'S'}, {"group", required_argument, 0, 'g'},
        {"run", required_argument, 0, 'r'}, {"context", required_argument, 0, 'C'},
        {"export-gguf", required_argument, 0, 'E'}, {"gguf-type", required_argument, 0, 'G'}, {0, 0, 0, 0}};
    const char *surgery = NULL, *group = NULL, *run = NULL, *gguf_dir = NULL;
    long context = 512;
    cb_gguf_type gguf_type = CB_GGUF_F32;
    const char *out = NULL, *from = NULL, *export_dir = NULL, *forward = NULL, *trace = NULL;
    unsigned long long seed = 1337;
    int c, check = 0;
    while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'o': out = optarg; break;
        case 'f': from = optarg; break;
        case 'x': export_dir = optarg; break;
        case 'F': forward = optarg; break;
        case 't': trace = optarg; break;
        case 'c': check = 1; break;
        case 'S': surgery = optarg; break;
        case 'g': group = optarg; break;
        case 'r': run = optarg; break;
        case 'C': {
            char *end;
            errno = 0;
            context = strtol(optarg, &end, 10);
            if (errno || *end || context < 1 || context > 1 << 24)
                return cb_cli_usage_error(TOOL, "--context: not a number of tokens >= 1: %s", optarg);
            break;
        }
        case 'E': gguf_dir = optarg; break;
        case 'G':
            if (!cb_gguf_type_from_name(optarg, &gguf_type))
                return cb_cli_usage_error(TOOL, "--gguf-type: one of f32, f16, bf16, q8_0, q4_0, not %s", optarg);
            break;
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
    if ((from != NULL) + (export_dir != NULL) + (forward != NULL) + check + (surgery != NULL) + (gguf_dir != NULL) > 1)
        return cb_cli_usage_error(TOOL, "--from, --export-hf, --export-gguf, --forward, --surgery and --check-weights "
                                  "exclude each other");
    if ((group || run) && !surgery) return cb_cli_usage_error(TOOL, "--group and --run need --surgery");
    if (gguf_dir) {
        if (n_args != 1) return cb_cli_usage_error(TOOL, "--export-gguf needs one model directory");
        return cb_gguf_export_llama(argv[optind], gguf_dir, gguf_type, &e) ? cb_cli_report(TOOL, &e) : 0;
    }
    if (surgery) {
        if (n_args != 1) return cb_cli_usage_error(TOOL, "--surgery needs one plan");
        if (!out) return cb_cli_usage_error(TOOL, "-o dir is required");
        cb_cli_note_kernels(TOOL, 0);
        return do_surgery(argv[optind], surgery, group, run, (int)context, seed, out, &e) ? cb_cli_report(TOOL, &e) : 0;
    }
    if (check) {
        if (n_args != 1) return cb_cli_usage_error(TOOL, "--check-weights needs one model directory");
        return check_weights(argv[optind], &e) ? cb_cli_report(TOOL, &e) : 0;
    }
    if (trace && !forward) return cb_cli_usage_error(TOOL, "--trace needs --forward");
    cb_cli_note_kernels(TOOL, 0);
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
