/* cb: the porcelain. `cb compile` is cb-parse | cb-lower | cb-validate in one process,
 * reporting each error under the name of the stage that found it (man/cb.1). */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "experiment/experiment.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/plan.h"
#include "plan/validate.h"
#include "runtime/autofit.h"

static const char usage[] =
    "usage: cb compile [--print-plan] [-o file] manifest\n"
    "       cb compile --fit-params n [-o fitted.yml] manifest\n"
    "       cb run [--group name] [-j n] [-o exp_dir] [--dry-run] [--force] [--quiet]\n"
    "       [--var name=value] [--steps n] [--seed n] [--data file] [--resume dir] [--runtime-plan] manifest\n"
    "       cb research [options] manifest\n"
    "       cb [--manifest m.yml] [--exp baseline|gqa|bottleneck|decoupled] [--mode train|sample|chat]\n"
    "       [--data file] [--ckpt dir] [--resume dir] [--seed n] [--prompt text] [--entity e] [--project p]\n"
    "Compose the caramba tools. compile: parse, lower and validate a YAML manifest and\n"
    "write its plan as JSON (cb-plan(5)), or as a readable tree with --print-plan;\n"
    "--fit-params writes the manifest with its width and depth fitted to n parameters.\n"
    "run: a group's runs, verifications, benchmarks and artifacts as a make graph in\n"
    "exp_dir (default runs/NAME/GROUP); a second run redoes only what changed, an\n"
    "interrupted one continues; prints exp_dir. research: the write -> review -> experiment\n"
    "loop (pipelines/research.sh, cb-paper(1), cb-review(1)). The --manifest/--exp form is\n"
    "the seed's legacy entry point over cb run and cb-generate (cb(1)).\n";

/* Every error of a stage, one line each under the stage's name; returns the status. */
static int report_all(const char *stage, cb_diags *d, const char *file) {
    for (int i = 0; i < d->n; i++) {
        if (!d->items[i].where[0]) snprintf(d->items[i].where, sizeof d->items[i].where, "%s", file);
        cb_cli_report(stage, &d->items[i]);
    }
    if (d->n_dropped) fprintf(stderr, "%s: %s: %d more errors not shown\n", stage, file, d->n_dropped);
    return cb_diags_status(d) ? cb_diags_status(d) : CB_E_INVALID;
}

/* The plan as a tree, to path (NULL = stdout), atomically. */
static int write_tree(const json_t *plan, const char *path, cb_error *e) {
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path, e));
    if (cb_plan_print(af.fp, plan) != 0) {
        int err = errno;
        cb_atomic_abort(&af);
        return cb_fail(e, CB_E_IO, path ? path : "stdout", "write failed: %s", strerror(err));
    }
    return cb_atomic_commit(&af, e);
}

/* `cb compile --fit-params N`: the manifest with its width and depth fitted to N parameters */
static int fit(const char *path, const char *count, const char *out_path) {
    long long target = cb_autofit_parse_count(count);
    if (target < 0) return cb_cli_usage_error("cb compile", "--fit-params: not a parameter count (350000, 124M, 1.2B): %s", count);
    cb_error e;
    cb_error_clear(&e);
    char *text = NULL;
    cb_fit_result r;
    int rc = cb_autofit(path, target, &text, &r, &e);
    cb_atomic_file af;
    if (rc == CB_OK) rc = cb_atomic_open(&af, out_path, &e);
    if (rc == CB_OK) {
        if (fputs(text, af.fp) < 0) {
            cb_atomic_abort(&af);
            rc = cb_fail(&e, CB_E_IO, out_path ? out_path : "stdout", "write failed");
        } else rc = cb_atomic_commit(&af, &e);
    }
    free(text);
    if (rc != CB_OK) return cb_cli_report("cb compile", &e);
    fprintf(stderr, "cb compile: fitted to %lld parameters: %lld (%+.2f%%): d_model %d, n_layers %d", r.target, r.params,
            100 * r.error, r.d_model, r.n_layers);
    if (r.n_heads) fprintf(stderr, ", n_heads %d", r.n_heads);
    if (r.n_kv_heads) fprintf(stderr, ", n_kv_heads %d", r.n_kv_heads);
    if (r.d_ff) fprintf(stderr, ", d_ff %d", r.d_ff);
    fprintf(stderr, "\n");
    return cb_cli_close_stdout("cb");
}

static int compile(int argc, char **argv) {
    const char *tool = "cb compile", *out_path = NULL, *fit_params = NULL;
    int print_plan = 0;
    static const struct option opts[] = {{"print-plan", no_argument, NULL, 'p'},
                                         {"fit-params", required_argument, NULL, 'f'},
                                         {"output", required_argument, NULL, 'o'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        if (c == 'p') print_plan = 1;
        else if (c == 'f') fit_params = optarg;
        else if (c == 'o') out_path = optarg;
        else if (c == 'h') { fputs(usage, stdout); return cb_cli_close_stdout("cb"); }
        else return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
    }
    if (argc - optind != 1) return cb_cli_usage_error(tool, "expected one manifest file");
    const char *path = argv[optind];
    const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
    if (fit_params && print_plan) return cb_cli_usage_error(tool, "--fit-params writes a manifest, not a plan: drop --print-plan");
    if (fit_params) return fit(path, fit_params, out_path);

    cb_error e;
    cb_error_clear(&e);
    cb_diags d;
    cb_diags_init(&d);
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    int rc = cb_yaml_parse_file(path, &manifest, &e);
    if (rc != CB_OK) return cb_cli_report("cb-parse", &e);
    rc = cb_lower(manifest, &lowered, &d);
    json_decref(manifest);
    if (rc != CB_OK) {
        rc = report_all("cb-lower", &d, name);
        cb_diags_free(&d);
        return rc;
    }
    rc = cb_validate(lowered, &plan, &d);
    json_decref(lowered);
    if (rc != CB_OK) {
        rc = report_all("cb-validate", &d, name);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    rc = print_plan ? write_tree(plan, out_path, &e) : cb_doc_save(plan, out_path, &e);
    json_decref(plan);
    if (rc != CB_OK) return cb_cli_report("cb", &e);
    return cb_cli_close_stdout("cb");
}

/* `cb research`: run pipelines/research.sh with the tools beside this binary (CB_BIN),
 * found from this executable's folder (bin/ or build/VARIANT/bin/), or $CB_PIPELINES. */
static int research(int argc, char **argv) {
    char exe[PATH_MAX], script[PATH_MAX + 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return cb_cli_usage_error("cb research", "cannot find this executable's folder");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *dir = getenv("CB_PIPELINES");
    script[0] = 0;
    if (dir && dir[0]) snprintf(script, sizeof script, "%s/research.sh", dir);
    else {
        static const char *const up[] = {"/../pipelines/research.sh", "/../../../pipelines/research.sh"};
        for (int i = 0; i < 2 && !script[0]; i++) {
            char cand[PATH_MAX + 64];
            snprintf(cand, sizeof cand, "%s%s", exe, up[i]);
            if (access(cand, R_OK) == 0) snprintf(script, sizeof script, "%s", cand);
        }
    }
    if (!script[0] || access(script, R_OK) != 0) {
        fprintf(stderr, "cb research: pipelines/research.sh not found beside %s (set CB_PIPELINES)\n", exe);
        return CB_E_USAGE;
    }
    setenv("CB_BIN", exe, 1);
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (!args) return CB_E_RUNTIME;
    args[0] = "bash";
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    execvp("bash", args);
    fprintf(stderr, "cb research: cannot run bash: %s\n", strerror(errno));
    free(args);
    return CB_E_RUNTIME;
}

static int parse_long(const char *tool, const char *opt, const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || !*s || v < 0) return cb_cli_usage_error(tool, "%s: not a non-negative integer: %s", opt, s);
    *out = v;
    return 0;
}

/* Run a request; prints the experiment folder on stdout. */
static int run_request(const char *tool, cb_run_request *rq) {
    cb_error e;
    cb_error_clear(&e);
    cb_diags d;
    cb_diags_init(&d);
    cb_run_result res;
    int rc = cb_experiment_run(rq, &res, &d, stderr, &e);
    if (res.compile_stage[0]) {
        rc = d.n ? report_all(res.compile_stage, &d, rq->manifest) : cb_cli_report(res.compile_stage, &e);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    /* a failed stage (4) and failed verifications (1) were named on stderr already */
    if (rc != CB_OK && rc != CB_E_VERDICT && !(rc == CB_E_RUNTIME && !e.msg[0])) return cb_cli_report(tool, &e);
    if (!rq->dry_run && res.exp_dir[0] && rc != CB_E_RUNTIME) printf("%s\n", res.exp_dir);
    int out = cb_cli_close_stdout("cb");
    return rc ? rc : out;
}

static int run(int argc, char **argv, int full_argc, char **full_argv) {
    const char *tool = "cb run";
    cb_run_request rq = {.steps = -1, .seed = -1, .argc = full_argc, .argv = full_argv};
    static const struct option opts[] = {
        {"group", required_argument, NULL, 'g'},  {"output", required_argument, NULL, 'o'},
        {"jobs", required_argument, NULL, 'j'},   {"dry-run", no_argument, NULL, 'n'},
        {"force", no_argument, NULL, 'F'},        {"quiet", no_argument, NULL, 'q'},
        {"var", required_argument, NULL, 'V'},    {"steps", required_argument, NULL, 's'},
        {"seed", required_argument, NULL, 'S'},   {"data", required_argument, NULL, 'd'},
        {"resume", required_argument, NULL, 'R'}, {"help", no_argument, NULL, 'h'},
        {"runtime-plan", no_argument, NULL, 'P'}, {NULL, 0, NULL, 0}};
    int c;
    long n;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "g:o:j:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'g': rq.group = optarg; break;
        case 'o': rq.exp_dir = optarg; break;
        case 'j':
            if (parse_long(tool, "-j", optarg, &n) || n < 1 || n > 256)
                return cb_cli_usage_error(tool, "-j: expected 1 to 256 jobs: %s", optarg);
            rq.jobs = (int)n;
            break;
        case 'n': rq.dry_run = 1; break;
        case 'F': rq.force = 1; break;
        case 'q': rq.quiet = 1; break;
        case 'V':
            if (rq.n_vars == CB_RUN_MAX_VARS) return cb_cli_usage_error(tool, "--var: at most %d", CB_RUN_MAX_VARS);
            rq.vars[rq.n_vars++] = optarg;
            break;
        case 's':
            if (parse_long(tool, "--steps", optarg, &rq.steps)) return CB_E_USAGE;
            break;
        case 'S':
            if (parse_long(tool, "--seed", optarg, &rq.seed)) return CB_E_USAGE;
            break;
        case 'd': rq.data = optarg; break;
        case 'R': rq.resume = optarg; break;
        case 'P': rq.runtime_plan = 1; break;
        case 'h': fputs(usage, stdout); return cb_cli_close_stdout("cb");
        default: return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) return cb_cli_usage_error(tool, "expected one manifest file");
    rq.manifest = argv[optind];
    return run_request(tool, &rq);
}

/* presets/NAME.yml beside this build: $CB_PRESETS, or ../presets from bin/ or build/VARIANT/bin/ */
static int find_preset(const char *name, char *out, size_t n) {
    const char *dir = getenv("CB_PRESETS");
    if (dir && dir[0]) {
        snprintf(out, n, "%s/%s.yml", dir, name);
        return access(out, R_OK) == 0 ? 0 : -1;
    }
    char exe[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0) return -1;
    exe[k] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    static const char *const up[] = {"/../presets/", "/../../../presets/"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, "%s%s%s.yml", exe, up[i], name);
        if (access(out, R_OK) == 0) return 0;
    }
    return -1;
}

/* The run the legacy options name: the run labelled `exp:` (the legacy presets label theirs),
 * or without --exp the manifest's first training run; its group's name, or NULL. */
static const char *legacy_group(const json_t *plan, const char *exp, const char **run_id) {
    size_t i, k;
    const json_t *g, *r;
    *run_id = NULL;
    json_array_foreach(json_object_get(plan, "groups"), i, g) {
        json_array_foreach(json_object_get(g, "runs"), k, r) {
            const char *rexp = json_string_value(json_object_get(r, "exp"));
            const char *rmode = json_string_value(json_object_get(r, "mode"));
            if (exp ? !rexp || strcmp(rexp, exp) != 0 : rmode && strcmp(rmode, "train") != 0) continue;
            *run_id = json_string_value(json_object_get(r, "id"));
            return json_string_value(json_object_get(g, "name"));
        }
    }
    return NULL;
}

/* The seed's entry point: `cb --manifest m.yml --mode train|sample|chat --exp E ...`.
 * train is cb run on the group holding the experiment's run; sample and chat run
 * cb-generate on --ckpt, or on that run's final model. */
static int legacy(int argc, char **argv) {
    const char *tool = "cb", *manifest = NULL, *mode = "train", *exp = NULL, *data = NULL, *ckpt = NULL,
               *resume = NULL, *prompt = NULL, *entity = NULL, *project = NULL;
    long seed = -1;
    static const struct option opts[] = {
        {"manifest", required_argument, NULL, 'm'}, {"mode", required_argument, NULL, 'M'},
        {"exp", required_argument, NULL, 'x'},      {"data", required_argument, NULL, 'd'},
        {"ckpt", required_argument, NULL, 'c'},     {"resume", required_argument, NULL, 'R'},
        {"seed", required_argument, NULL, 'S'},     {"prompt", required_argument, NULL, 'p'},
        {"entity", required_argument, NULL, 'E'},   {"project", required_argument, NULL, 'P'},
        {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': manifest = optarg; break;
        case 'M': mode = optarg; break;
        case 'x': exp = optarg; break;
        case 'd': data = optarg; break;
        case 'c': ckpt = optarg; break;
        case 'R': resume = optarg; break;
        case 'p': prompt = optarg; break;
        case 'E': entity = optarg; break;
        case 'P': project = optarg; break;
        case 'S':
            if (parse_long(tool, "--seed", optarg, &seed)) return CB_E_USAGE;
            break;
        default: return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (optind != argc) return cb_cli_usage_error(tool, "unexpected argument: %s", argv[optind]);
    if (strcmp(mode, "train") && strcmp(mode, "sample") && strcmp(mode, "chat"))
        return cb_cli_usage_error(tool, "--mode: expected train, sample or chat: %s", mode);
    static const char *const exps[] = {"baseline", "gqa", "bottleneck", "decoupled"};
    int known = !exp;
    for (int i = 0; i < 4 && exp; i++) known |= strcmp(exp, exps[i]) == 0;
    if (!known) return cb_cli_usage_error(tool, "--exp: expected baseline, gqa, bottleneck or decoupled: %s", exp);
    char preset[PATH_MAX + 64];
    if (!manifest) {
        if (!exp) return cb_cli_usage_error(tool, "give --manifest or --exp");
        if (find_preset(exp, preset, sizeof preset) != 0) {
            fprintf(stderr, "cb: presets/%s.yml not found beside this build (set CB_PRESETS)\n", exp);
            return CB_E_USAGE;
        }
        manifest = preset;
    }
    if ((entity || project) && strcmp(mode, "train") != 0)
        return cb_cli_usage_error(tool, "--entity and --project label training runs (--mode train)");

    cb_error e;
    cb_error_clear(&e);
    json_t *doc = NULL, *lowered = NULL, *plan = NULL;
    cb_diags d;
    cb_diags_init(&d);
    int rc = cb_yaml_parse_file(manifest, &doc, &e);
    if (rc != CB_OK) return cb_cli_report("cb-parse", &e);
    rc = cb_lower(doc, &lowered, &d);
    json_decref(doc);
    if (rc == CB_OK) rc = cb_validate(lowered, &plan, &d);
    json_decref(lowered);
    if (rc != CB_OK) {
        rc = report_all(plan ? "cb-validate" : "cb-lower", &d, manifest);
        cb_diags_free(&d);
        return rc;
    }
    cb_diags_free(&d);
    const char *run_id = NULL;
    const char *group = legacy_group(plan, exp, &run_id);
    if (exp && !group) {
        json_decref(plan);
        fprintf(stderr, "cb: %s: no run labelled exp: %s\n", manifest, exp);
        return CB_E_USAGE;
    }
    char group_buf[256] = "", run_buf[256] = "", name[256];
    snprintf(group_buf, sizeof group_buf, "%s", group ? group : "");
    snprintf(run_buf, sizeof run_buf, "%s", run_id ? run_id : "");
    snprintf(name, sizeof name, "%s", json_string_value(json_object_get(plan, "name")) ? json_string_value(json_object_get(plan, "name")) : "experiment");
    if (!prompt && strcmp(mode, "sample") == 0) {
        /* the prompt of the manifest's first sample run */
        size_t i, k;
        const json_t *g, *r;
        json_array_foreach(json_object_get(plan, "groups"), i, g) json_array_foreach(json_object_get(g, "runs"), k, r) {
            const char *p = json_string_value(json_object_get(r, "prompt"));
            if (p && !prompt) {
                static char first_prompt[4096];
                snprintf(first_prompt, sizeof first_prompt, "%s", p);
                prompt = first_prompt;
            }
        }
    }
    json_decref(plan);

    if (strcmp(mode, "train") == 0) {
        cb_run_request rq = {.manifest = manifest, .group = group_buf[0] ? group_buf : NULL, .steps = -1,
                             .seed = seed, .data = data, .resume = resume, .argc = argc, .argv = argv};
        if (entity || project)
            fprintf(stderr, "cb: --entity and --project are W&B labels; caramba has no W&B client, so they are "
                            "kept in provenance.json only\n");
        return run_request("cb", &rq);
    }
    /* sample, chat: cb-generate on the checkpoint */
    char model[PATH_MAX + 300], gen[PATH_MAX + 64], seed_text[32];
    if (ckpt) snprintf(model, sizeof model, "%s", ckpt);
    else {
        if (!run_buf[0]) {
            fprintf(stderr, "cb: %s: no training run to sample from; give --ckpt\n", manifest);
            return CB_E_USAGE;
        }
        snprintf(model, sizeof model, "runs/%s/%s/runs/%s/final", name, group_buf, run_buf);
        if (access(model, R_OK) != 0) {
            fprintf(stderr, "cb: %s: no trained model (train it with --mode train first, or give --ckpt)\n", model);
            return CB_E_USAGE;
        }
    }
    ssize_t k = readlink("/proc/self/exe", gen, sizeof gen - 1);
    if (k <= 0) return cb_cli_usage_error(tool, "cannot find this executable's folder");
    gen[k] = 0;
    char *slash = strrchr(gen, '/');
    snprintf(slash ? slash + 1 : gen, sizeof gen - (size_t)(slash ? slash + 1 - gen : 0), "cb-generate");
    char *args[12];
    int n = 0;
    args[n++] = gen;
    if (strcmp(mode, "chat") == 0) args[n++] = "--chat";
    else {
        if (!prompt) {
            fprintf(stderr, "cb: --mode sample needs --prompt (the manifest has no sample run with one)\n");
            return CB_E_USAGE;
        }
        args[n++] = "--prompt";
        args[n++] = (char *)prompt;
    }
    if (seed >= 0) {
        snprintf(seed_text, sizeof seed_text, "%ld", seed);
        args[n++] = "--seed";
        args[n++] = seed_text;
    }
    args[n++] = model;
    args[n] = NULL;
    fflush(stdout);
    execv(gen, args);
    fprintf(stderr, "cb: cannot run %s: %s\n", gen, strerror(errno));
    return CB_E_RUNTIME;
}

int main(int argc, char **argv) {
    if (cb_cli_start("cb", argc, argv, 0)) return cb_cli_close_stdout("cb");
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) return cb_cli_usage_error("cb", "expected a command: compile, run or research");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        fputs(usage, stdout);
        return cb_cli_close_stdout("cb");
    }
    if (strcmp(cmd, "compile") == 0) return compile(argc - 1, argv + 1);
    if (strcmp(cmd, "research") == 0) return research(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0) return run(argc - 1, argv + 1, argc, argv);
    if (strncmp(cmd, "--", 2) == 0) return legacy(argc, argv);
    return cb_cli_usage_error("cb", "unknown command '%s' (compile, run or research)", cmd);
}
