/* graph.c: a group's stages from the plan (see graph.h). */
#include "experiment/graph.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/json_doc.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int cb_graph_find_group(const json_t *plan, const char *group, const json_t **out, cb_error *e) {
    const json_t *groups = json_object_get(plan, "groups");
    size_t n = json_is_array(groups) ? json_array_size(groups) : 0;
    if (n == 0) return cb_fail(e, CB_E_USAGE, str(plan, "source") ? str(plan, "source") : "", "the manifest has no groups");
    char names[1024] = "";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(groups, i);
        const char *name = str(g, "name");
        if (name && group && strcmp(name, group) == 0) {
            *out = g;
            return CB_OK;
        }
        if (name && k < sizeof names)
            k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", k ? ", " : "", name);
    }
    if (!group && n == 1) {
        *out = json_array_get(groups, 0);
        return CB_OK;
    }
    const char *where = str(plan, "source") ? str(plan, "source") : "";
    if (!group) return cb_fail(e, CB_E_USAGE, where, "the manifest has %zu groups (%s): choose one with --group", n, names);
    return cb_fail(e, CB_E_USAGE, where, "no group %s (the manifest has %s)", group, names);
}

int cb_graph_find(const cb_graph *g, const char *id) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->stages[i].id, id) == 0) return i;
    return -1;
}

static cb_stage *add_stage(cb_graph *g, int kind, int tool, const char *prefix, const char *name,
                           const json_t *section, cb_error *e) {
    if (g->n == g->cap) {
        int cap = g->cap ? 2 * g->cap : 16;
        cb_stage *grown = realloc(g->stages, (size_t)cap * sizeof *grown);
        if (!grown) {
            cb_fail(e, CB_E_RUNTIME, "", "out of memory");
            return NULL;
        }
        g->stages = grown;
        g->cap = cap;
    }
    cb_stage *s = &g->stages[g->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->tool = tool;
    s->section = section;
    snprintf(s->id, sizeof s->id, "%s%s%s", prefix, name[0] ? "-" : "", name);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static int arg(cb_stage *s, cb_error *e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int arg(cb_stage *s, cb_error *e, const char *fmt, ...) {
    if (s->n_args >= CB_STAGE_MAX_ARGS) return cb_fail(e, CB_E_INVALID, "", "stage %s: too many arguments", s->id);
    va_list ap;
    va_start(ap, fmt);
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *out = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (out) vsnprintf(out, (size_t)n + 1, fmt, again);
    va_end(again);
    if (!out) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    s->args[s->n_args++] = out;
    return CB_OK;
}

static int input(cb_stage *s, const char *path, cb_error *e) {
    if (!path || !path[0]) return CB_OK;
    for (int i = 0; i < s->n_inputs; i++)
        if (strcmp(s->inputs[i], path) == 0) return CB_OK;
    if (s->n_inputs >= CB_STAGE_MAX_INPUTS) return cb_fail(e, CB_E_INVALID, "", "stage %s: too many inputs", s->id);
    if (!(s->inputs[s->n_inputs] = strdup(path))) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    s->n_inputs++;
    return CB_OK;
}

static void dep(cb_stage *s, int on) {
    if (on < 0) return;
    for (int i = 0; i < s->n_deps; i++)
        if (s->deps[i] == on) return;
    if (s->n_deps < CB_STAGE_MAX_DEPS) s->deps[s->n_deps++] = on;
}

/* the final model of run `id` of this experiment, and the stage that trains it */
static int run_model(const cb_graph *g, const char *id, char *dir, size_t n) {
    snprintf(dir, n, "%s/runs/%s/final", g->exp_dir, id);
    char sid[192];
    snprintf(sid, sizeof sid, "train-%s", id);
    return cb_graph_find(g, sid);
}

/* A model reference {ckpt: path} or {run: id}: its directory, the stage that makes it (or
 * -1), and a path outside the experiment to hash (or NULL). */
static int model_ref(cb_graph *g, cb_stage *s, const json_t *ref, char *dir, size_t n, cb_error *e) {
    const char *ckpt = str(ref, "ckpt"), *run = str(ref, "run");
    if (ckpt) {
        snprintf(dir, n, "%s", ckpt);
        return input(s, ckpt, e);
    }
    if (run) {
        int at = run_model(g, run, dir, n);
        if (at < 0)
            return cb_fail(e, CB_E_INVALID, cb_loc(ref, "run"), "run %s names run %s, which trains no model", s->name, run);
        dep(s, at);
        return CB_OK;
    }
    dir[0] = 0;
    return CB_OK;
}

static int add_build(cb_graph *g, const json_t *run, cb_error *e) {
    const char *id = str(run, "id");
    cb_stage *s = add_stage(g, CB_STAGE_BUILD, CB_TOOL_CB, "build", id, run, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/runs/%s", g->exp_dir, id);
    snprintf(s->output, sizeof s->output, "%s/plan.json", s->dir);
    return CB_OK;
}

static int add_train(cb_graph *g, const json_t *run, int build, int first, const cb_graph_options *opt, cb_error *e) {
    const char *id = str(run, "id");
    cb_stage *s = add_stage(g, CB_STAGE_TRAIN, CB_TOOL_TRAIN, "train", id, run, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/runs/%s", g->exp_dir, id);
    snprintf(s->output, sizeof s->output, "%s/final", s->dir);
    dep(s, build);
    const json_t *train = json_object_get(run, "train");
    int rc = CB_OK;
    char dir[4400];
    static const char *const roles[] = {"teacher", "student"};
    for (int r = 0; r < 2 && rc == CB_OK; r++) {
        const json_t *ref = json_object_get(train, roles[r]);
        if (json_is_object(ref)) rc = model_ref(g, s, ref, dir, sizeof dir, e);
    }
    static const char *const files[] = {"data", "val_split", "teacher_ckpt"};
    for (int i = 0; i < 3 && rc == CB_OK; i++) rc = input(s, str(train, files[i]), e);
    if (rc == CB_OK) rc = arg(s, e, "--group");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->group_name);
    if (rc == CB_OK) rc = arg(s, e, "--run");
    if (rc == CB_OK) rc = arg(s, e, "%s", id);
    if (rc == CB_OK) rc = arg(s, e, "-o");
    if (rc == CB_OK) rc = arg(s, e, "%s", s->dir);
    const char *resume = first && opt && opt->resume ? opt->resume : str(train, "resume");
    if (rc == CB_OK && resume) {
        s->fixed_resume = 1;
        rc = input(s, resume, e);
        if (rc == CB_OK) rc = arg(s, e, "--resume");
        if (rc == CB_OK) rc = arg(s, e, "%s", resume);
    }
    if (rc == CB_OK && opt && opt->runtime_plan) rc = arg(s, e, "--runtime-plan");
    if (rc == CB_OK) rc = arg(s, e, "%s/plan.json", s->dir);
    return rc;
}

static int add_verify(cb_graph *g, const json_t *run, int train, cb_error *e) {
    const json_t *verify = json_object_get(run, "verify"), *tr = json_object_get(run, "train");
    const char *id = str(run, "id");
    cb_stage *s = add_stage(g, CB_STAGE_VERIFY, CB_TOOL_VERIFY, "verify", id, run, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/runs/%s", g->exp_dir, id);
    snprintf(s->output, sizeof s->output, "%s/verify.json", s->dir);
    s->fail_fast = json_is_true(json_object_get(verify, "fail_fast"));
    dep(s, train);
    char teacher[4400] = "";
    int rc = CB_OK;
    if (json_is_object(json_object_get(tr, "teacher"))) rc = model_ref(g, s, json_object_get(tr, "teacher"), teacher, sizeof teacher, e);
    else if (str(tr, "teacher_ckpt")) {
        snprintf(teacher, sizeof teacher, "%s", str(tr, "teacher_ckpt"));
        rc = input(s, teacher, e);
    }
    if (rc == CB_OK) rc = arg(s, e, "--group");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->group_name);
    if (rc == CB_OK) rc = arg(s, e, "--run");
    if (rc == CB_OK) rc = arg(s, e, "%s", id);
    if (rc == CB_OK && teacher[0]) rc = arg(s, e, "--teacher");
    if (rc == CB_OK && teacher[0]) rc = arg(s, e, "%s", teacher);
    if (rc == CB_OK) rc = arg(s, e, "--student");
    if (rc == CB_OK) rc = arg(s, e, "%s/final", s->dir);
    if (rc == CB_OK) rc = arg(s, e, "-o");
    if (rc == CB_OK) rc = arg(s, e, "%s", s->output);
    if (rc == CB_OK) rc = arg(s, e, "--quiet");
    if (rc == CB_OK) rc = arg(s, e, "%s/plan.json", s->dir);
    return rc;
}

/* The manifest's generate: settings as cb-generate options (cb-generate(1)); a setting
 * cb-generate has no option for is an error at its line rather than silently dropped. */
static int generate_args(cb_graph *g, cb_stage *s, const json_t *gen, cb_error *e) {
    static const struct { const char *key, *opt; } plain[] = {
        {"max_new_tokens", "--max-new-tokens"},
        {"temperature", "--temperature"},
        {"top_k", "--top-k"},
        {"top_p", "--top-p"},
        {"eos_token_id", "--eos"},
        {"max_seq_len", "--max-seq-len"},
        {"seed", "--seed"},
        {"cache_kind", "--cache-kind"},
        {"cache_kind_k", "--cache-k-kind"},
        {"cache_kind_v", "--cache-v-kind"},
        {"cache_budget_mb", "--cache-budget-mb"},
        {"cache_quality_max_delta_nll", "--cache-max-delta-nll"},
        {"cache_quality_max_ppl_ratio", "--cache-max-ppl-ratio"},
        {"cache_quality_max_mean_kl", "--cache-max-mean-kl"},
        {"cache_auto_bench_steps", "--cache-bench-steps"},
        {"cache_plan_path", "--cache-plan"},
        {"decode_plan", "--decode-plan"},
        {"decode_q_chunk", "--decode-q-chunk"},
        {"decode_local_window", "--decode-local-window"},
        {"decode_local_window_long", "--decode-long-window"},
        {"spec_k", "--spec-k"},
        {"spec_method", "--spec-method"},
        {"spec_disable_below_accept", "--spec-disable-below"},
    };
    int rc = CB_OK;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)gen, key, v) {
        if (cb_is_annotation(key) || rc != CB_OK) continue;
        const char *opt = NULL;
        for (size_t i = 0; i < sizeof plain / sizeof *plain; i++)
            if (strcmp(plain[i].key, key) == 0) opt = plain[i].opt;
        if (opt) {
            char *text = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            if (!text) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
            rc = arg(s, e, "%s", opt);
            if (rc == CB_OK) rc = arg(s, e, "%s", text);
            free(text);
        } else if (strcmp(key, "cache_auto_benchmark") == 0) {
            if (json_is_true(v)) rc = arg(s, e, "--cache-benchmark");
        } else if (strcmp(key, "cache_plan_probe") == 0 || strcmp(key, "cache_plan_probe_interval_sec") == 0) {
            /* cb-generate re-probes after --cache-probe seconds; probe false means never */
            if (strcmp(key, "cache_plan_probe") == 0 && json_is_true(v)) {
                const json_t *sec = json_object_get(gen, "cache_plan_probe_interval_sec");
                rc = arg(s, e, "--cache-probe");
                if (rc == CB_OK) rc = arg(s, e, "%g", json_is_number(sec) ? json_number_value(sec) : 3600.0);
            }
        } else if (strcmp(key, "decode_bucket_short") == 0) {
            const json_t *lng = json_object_get(gen, "decode_bucket_long");
            rc = arg(s, e, "--decode-buckets");
            if (rc == CB_OK)
                rc = arg(s, e, "%lld,%lld", (long long)json_integer_value(v),
                         (long long)(json_is_integer(lng) ? json_integer_value(lng) : 16384));
        } else if (strcmp(key, "decode_bucket_long") == 0 || strcmp(key, "decode_q_chunk_mid") == 0 ||
                   strcmp(key, "decode_q_chunk_long") == 0) {
            /* the buckets go with decode_bucket_short; cb-generate sizes the auto plan's query
             * chunks itself (they change memory only, never the result: cb-generate(1)) */
            if (strcmp(key, "decode_bucket_long") == 0 && !json_object_get(gen, "decode_bucket_short")) {
                rc = arg(s, e, "--decode-buckets");
                if (rc == CB_OK) rc = arg(s, e, "4096,%lld", (long long)json_integer_value(v));
            }
        } else if (strcmp(key, "spec_k_adaptive") == 0) {
            if (json_is_true(v)) rc = arg(s, e, "--spec-k-adaptive");
        } else if (strcmp(key, "spec_extra_token") == 0) {
            if (json_is_false(v)) rc = arg(s, e, "--no-spec-extra-token");
        } else if (strcmp(key, "draft") == 0) {
            char dir[4400];
            rc = model_ref(g, s, v, dir, sizeof dir, e);
            if (rc == CB_OK && dir[0]) rc = arg(s, e, "--draft");
            if (rc == CB_OK && dir[0]) rc = arg(s, e, "%s", dir);
        } else {
            rc = cb_fail(e, CB_E_INVALID, cb_loc(gen, key), "generate.%s: cb-generate has no option for it", key);
        }
    }
    return rc;
}

static int add_generate(cb_graph *g, const json_t *run, int build, int chat, cb_error *e) {
    const char *id = str(run, "id");
    cb_stage *s = add_stage(g, chat ? CB_STAGE_CHAT : CB_STAGE_SAMPLE, CB_TOOL_GENERATE, chat ? "chat" : "sample", id, run, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/runs/%s", g->exp_dir, id);
    snprintf(s->output, sizeof s->output, "%s/%s", s->dir, chat ? "chat" : "sample.txt");
    dep(s, build);
    char model[4400];
    int rc = CB_OK;
    if (str(run, "ckpt")) {
        snprintf(model, sizeof model, "%s", str(run, "ckpt"));
        rc = input(s, model, e);
    } else {
        int at = run_model(g, str(run, "from_run"), model, sizeof model);
        if (at < 0)
            return cb_fail(e, CB_E_INVALID, cb_loc(run, "from_run"), "run %s: from_run %s trains no model", id,
                           str(run, "from_run"));
        dep(s, at);
    }
    if (rc == CB_OK && chat) rc = arg(s, e, "--chat");
    if (rc == CB_OK && !chat) {
        rc = arg(s, e, "--prompt");
        if (rc == CB_OK) rc = arg(s, e, "%s", str(run, "prompt") ? str(run, "prompt") : "\n");
    }
    const json_t *gen = json_object_get(run, "generate");
    if (rc == CB_OK && !json_object_get(gen, "seed") && json_is_integer(json_object_get(run, "seed"))) {
        rc = arg(s, e, "--seed");
        if (rc == CB_OK) rc = arg(s, e, "%lld", (long long)json_integer_value(json_object_get(run, "seed")));
    }
    if (rc == CB_OK && json_is_object(gen)) rc = generate_args(g, s, gen, e);
    if (rc == CB_OK) rc = arg(s, e, "%s", model);
    return rc;
}

/* The group's teacher (the first training run's teacher) and student (the final model of
 * the last training run that starts from a teacher or student), for benchmarks. */
static void find_teacher_student(cb_graph *g) {
    const json_t *runs = json_object_get(g->group, "runs");
    size_t i;
    const json_t *run;
    json_array_foreach(runs, i, run) {
        const json_t *train = json_object_get(run, "train");
        const char *mode = str(run, "mode");
        if (mode && strcmp(mode, "train") != 0) continue;
        const json_t *t = json_object_get(train, "teacher"), *st = json_object_get(train, "student");
        char dir[4400] = "";
        if (json_is_object(t) && str(t, "ckpt")) snprintf(dir, sizeof dir, "%s", str(t, "ckpt"));
        else if (json_is_object(t) && str(t, "run")) snprintf(dir, sizeof dir, "%s/runs/%s/final", g->exp_dir, str(t, "run"));
        else if (str(train, "teacher_ckpt")) snprintf(dir, sizeof dir, "%s", str(train, "teacher_ckpt"));
        if (dir[0] && !g->teacher[0]) snprintf(g->teacher, sizeof g->teacher, "%s", dir);
        if (dir[0] || json_is_object(st))
            snprintf(g->student, sizeof g->student, "%s/runs/%s/final", g->exp_dir, str(run, "id"));
    }
}

static int add_bench(cb_graph *g, const json_t *b, cb_error *e) {
    const char *id = str(b, "id");
    cb_stage *s = add_stage(g, CB_STAGE_BENCH, CB_TOOL_BENCH, "bench", id, b, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/bench", g->exp_dir);
    snprintf(s->output, sizeof s->output, "%s/%s.jsonl", s->dir, id);
    int rc = arg(s, e, "--group");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->group_name);
    if (rc == CB_OK) rc = arg(s, e, "--bench");
    if (rc == CB_OK) rc = arg(s, e, "%s", id);
    const json_t *models = json_object_get(b, "models");
    size_t i;
    const json_t *m;
    json_array_foreach(models, i, m) {
        if (rc != CB_OK) break;
        const char *name = json_string_value(m);
        char dir[4400];
        if (!name) continue;
        if (strcmp(name, "teacher") == 0 || strcmp(name, "student") == 0) {
            const char *which = name[0] == 't' ? g->teacher : g->student;
            if (!which[0])
                return cb_fail(e, CB_E_INVALID, cb_loc(b, "models"),
                               "benchmark %s names the %s, and no training run of group %s has one", id, name,
                               g->group_name);
            snprintf(dir, sizeof dir, "%s", which);
            if (strncmp(dir, g->exp_dir, strlen(g->exp_dir)) == 0) {
                /* ".../runs/ID/final": the stage that trains it */
                char run[256];
                const char *p = dir + strlen(g->exp_dir) + strlen("/runs/");
                snprintf(run, sizeof run, "%.*s", (int)(strchr(p, '/') ? strchr(p, '/') - p : (long)strlen(p)), p);
                char sid[300];
                snprintf(sid, sizeof sid, "train-%s", run);
                dep(s, cb_graph_find(g, sid));
            } else rc = input(s, dir, e);
        } else {
            int at = run_model(g, name, dir, sizeof dir);
            if (at < 0)
                return cb_fail(e, CB_E_INVALID, cb_loc(b, "models"),
                               "benchmark %s names model %s, which no training run of group %s makes", id, name,
                               g->group_name);
            dep(s, at);
        }
        if (rc == CB_OK) rc = arg(s, e, "--model");
        if (rc == CB_OK) rc = arg(s, e, "%s=%s", name, dir);
    }
    const json_t *config = json_object_get(b, "config");
    if (rc == CB_OK && str(b, "device")) rc = arg(s, e, "--device");
    if (rc == CB_OK && str(b, "device")) rc = arg(s, e, "%s", str(b, "device"));
    if (rc == CB_OK) rc = input(s, str(config, "dataset"), e);
    if (rc == CB_OK) rc = arg(s, e, "-o");
    if (rc == CB_OK) rc = arg(s, e, "%s", s->output);
    if (rc == CB_OK) rc = arg(s, e, "--quiet");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->plan_path);
    return rc;
}

static int add_artifacts(cb_graph *g, cb_error *e) {
    int n_before = g->n;
    cb_stage *s = add_stage(g, CB_STAGE_ARTIFACTS, CB_TOOL_ARTIFACTS, "artifacts", "", g->group, e);
    if (!s) return CB_E_RUNTIME;
    snprintf(s->dir, sizeof s->dir, "%s/artifacts", g->exp_dir);
    snprintf(s->output, sizeof s->output, "%s", s->dir);
    const char *name = str(g->plan, "name");
    int rc = arg(s, e, "-o");
    if (rc == CB_OK) rc = arg(s, e, "%s", s->dir);
    if (rc == CB_OK) rc = arg(s, e, "--plan");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->plan_path);
    if (rc == CB_OK) rc = arg(s, e, "--group");
    if (rc == CB_OK) rc = arg(s, e, "%s", g->group_name);
    if (rc == CB_OK) rc = arg(s, e, "--name");
    if (rc == CB_OK) rc = arg(s, e, "%s", name ? name : g->group_name);
    for (int i = 0; i < n_before && rc == CB_OK; i++) {
        cb_stage *t = &g->stages[i];
        if (t->kind == CB_STAGE_TRAIN) rc = arg(s, e, "%s", t->dir);
        else if (t->kind == CB_STAGE_VERIFY || t->kind == CB_STAGE_BENCH) rc = arg(s, e, "%s", t->output);
        else continue;
        dep(s, i);
    }
    return rc;
}

int cb_graph_build(cb_graph *g, const json_t *plan, const json_t *group, const char *exp_dir,
                   const cb_graph_options *opt, cb_error *e) {
    memset(g, 0, sizeof *g);
    g->plan = plan;
    g->group = group;
    snprintf(g->group_name, sizeof g->group_name, "%s", str(group, "name") ? str(group, "name") : "");
    snprintf(g->exp_dir, sizeof g->exp_dir, "%s", exp_dir);
    snprintf(g->plan_path, sizeof g->plan_path, "%s/plan.json", exp_dir);
    find_teacher_student(g);
    const json_t *runs = json_object_get(group, "runs"), *benchmarks = json_object_get(group, "benchmarks");
    int rc = CB_OK, first_train = 1, verdicts = 0;
    size_t i;
    const json_t *run;
    json_array_foreach(runs, i, run) {
        if (rc != CB_OK) break;
        const char *mode = str(run, "mode") ? str(run, "mode") : "train";
        rc = add_build(g, run, e);
        int build = g->n - 1;
        if (rc != CB_OK) break;
        if (strcmp(mode, "train") == 0) {
            rc = add_train(g, run, build, first_train, opt, e);
            first_train = 0;
            if (rc == CB_OK && json_is_object(json_object_get(run, "verify"))) {
                rc = add_verify(g, run, g->n - 1, e);
                verdicts++;
            }
        } else rc = add_generate(g, run, build, strcmp(mode, "chat") == 0, e);
    }
    const json_t *b;
    json_array_foreach(benchmarks, i, b) {
        if (rc != CB_OK) break;
        rc = add_bench(g, b, e);
        verdicts++;
    }
    /* artifacts summarise verifications and benchmarks; a group of training runs alone has
     * its results in the run folders (metrics.jsonl) */
    if (rc == CB_OK && verdicts) rc = add_artifacts(g, e);
    if (rc != CB_OK) cb_graph_free(g);
    return rc;
}

void cb_graph_free(cb_graph *g) {
    for (int i = 0; i < g->n; i++) {
        for (int k = 0; k < g->stages[i].n_args; k++) free(g->stages[i].args[k]);
        for (int k = 0; k < g->stages[i].n_inputs; k++) free(g->stages[i].inputs[k]);
    }
    free(g->stages);
    g->stages = NULL;
    g->n = g->cap = 0;
}
