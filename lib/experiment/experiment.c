/* experiment.c: `cb run` from manifest to results (see experiment.h). */
#include "experiment/experiment.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "experiment/graph.h"
#include "experiment/makefile.h"
#include "experiment/preflight.h"
#include "experiment/provenance.h"
#include "experiment/stamps.h"
#include "experiment/tools.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int make_dirs(const char *path, cb_error *e) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return cb_fail(e, CB_E_USAGE, path, "path too long");
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, buf, "cannot create: %s", strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, buf, "cannot create: %s", strerror(errno));
    return CB_OK;
}

/* a JSON array of numbers, strings, booleans and nulls (context_lengths=[1024,4096]) */
static int is_scalar_list(const json_t *v) {
    size_t i;
    json_t *x;
    if (!json_is_array(v)) return 0;
    json_array_foreach(v, i, x) if (json_is_object(x) || json_is_array(x)) return 0;
    return 1;
}

/* --var NAME=VALUE into the manifest's vars: VALUE as JSON when it reads as a number,
 * boolean, null or a list of those (steps=30, context_lengths=[1024,4096]), else as a
 * string. Mappings stay strings: the manifest's own mappings carry their YAML lines. */
static int set_vars(json_t *manifest, const cb_run_request *rq, json_t *overrides, cb_error *e) {
    json_t *vars = json_object_get(json_object_get(manifest, "manifest"), "vars");
    for (int i = 0; i < rq->n_vars; i++) {
        const char *eq = strchr(rq->vars[i], '=');
        if (!eq || eq == rq->vars[i]) return cb_fail(e, CB_E_USAGE, "", "--var %s: expected NAME=VALUE", rq->vars[i]);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(eq - rq->vars[i]), rq->vars[i]);
        if (!json_is_object(vars) || !json_object_get(vars, name))
            return cb_fail(e, CB_E_USAGE, rq->manifest, "--var %s: the manifest has no var %s", rq->vars[i], name);
        json_t *v = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (!v || json_is_object(v) || (json_is_array(v) && !is_scalar_list(v))) {
            json_decref(v);
            v = json_string(eq + 1);
        }
        json_object_set(overrides, name, v);
        json_object_set_new(vars, name, v);
    }
    return CB_OK;
}

/* parse, set vars, lower, validate; errors into d under the stage's name */
static int compile(const cb_run_request *rq, json_t *overrides, json_t **lowered_out, json_t **plan_out, cb_diags *d,
                   cb_run_result *res, cb_error *e) {
    json_t *manifest = NULL, *lowered = NULL;
    int rc = cb_yaml_parse_file(rq->manifest, &manifest, e);
    if (rc != CB_OK) {
        snprintf(res->compile_stage, sizeof res->compile_stage, "cb-parse");
        cb_diags_add(d, e);
        return rc;
    }
    rc = set_vars(manifest, rq, json_object_get(overrides, "vars"), e);
    if (rc != CB_OK) {
        json_decref(manifest);
        return rc;
    }
    rc = cb_lower(manifest, &lowered, d);
    json_decref(manifest);
    if (rc != CB_OK) {
        snprintf(res->compile_stage, sizeof res->compile_stage, "cb-lower");
        return rc;
    }
    rc = cb_validate(lowered, plan_out, d);
    if (rc != CB_OK) {
        json_decref(lowered);
        snprintf(res->compile_stage, sizeof res->compile_stage, "cb-validate");
        return rc;
    }
    *lowered_out = lowered;
    return CB_OK;
}

/* --steps, --seed, --data: into every run of the plan, where cb-train reads them */
static void apply_overrides(json_t *plan, const cb_run_request *rq, json_t *overrides) {
    if (rq->steps >= 0) json_object_set_new(overrides, "steps", json_integer(rq->steps));
    if (rq->seed >= 0) json_object_set_new(overrides, "seed", json_integer(rq->seed));
    if (rq->data) json_object_set_new(overrides, "data", json_string(rq->data));
    if (rq->resume) json_object_set_new(overrides, "resume", json_string(rq->resume));
    size_t i, k;
    json_t *g, *run;
    json_array_foreach(json_object_get(plan, "groups"), i, g) {
        json_array_foreach(json_object_get(g, "runs"), k, run) {
            json_t *train = json_object_get(run, "train");
            const char *mode = str(run, "mode");
            int trains = !mode || strcmp(mode, "train") == 0;
            if (rq->seed >= 0) {
                json_object_set_new(run, "seed", json_integer(rq->seed));
                if (json_is_object(train) && json_object_get(train, "seed"))
                    json_object_set_new(train, "seed", json_integer(rq->seed));
            }
            if (!trains) continue;
            if (rq->steps >= 0) {
                json_object_set_new(run, "steps", json_integer(rq->steps));
                if (json_is_object(train)) json_object_del(train, "steps");
            }
            if (rq->data && json_is_object(train)) json_object_set_new(train, "data", json_string(rq->data));
        }
    }
}

/* Each stage's hash, in graph order (a stage's deps come before it): its kind, the tool's
 * --version, its arguments, its plan section, the model (what every stage builds on), the
 * files it reads from outside, and the hashes of the stages it reads from. */
static void hash_stages(cb_graph *g, cb_tools *t) {
    const json_t *model = json_object_get(g->plan, "model");
    for (int i = 0; i < g->n; i++) {
        cb_stage *s = &g->stages[i];
        cb_sha256 h;
        cb_sha256_init(&h);
        cb_stamp_add(&h, "stage", s->id);
        cb_stamp_add(&h, "tool", cb_tools_version(t, s->tool));
        for (int k = 0; k < s->n_args; k++) cb_stamp_add(&h, "arg", s->args[k]);
        cb_stamp_add_json(&h, "section", s->kind == CB_STAGE_ARTIFACTS ? NULL : s->section);
        cb_stamp_add_json(&h, "model", model);
        for (int k = 0; k < s->n_inputs; k++) cb_stamp_add_path(&h, "input", s->inputs[k]);
        for (int k = 0; k < s->n_deps; k++) cb_stamp_add(&h, "after", g->stages[s->deps[k]].hash);
        cb_stamp_hex(&h, s->hash);
    }
}

static int path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Which stages run: those whose .done does not hold their hash, whose output is gone, all
 * with force, and every stage after one that runs. Their .done goes, so make runs them. */
static void mark_todo(cb_graph *g, int force, int dry_run) {
    for (int i = 0; i < g->n; i++) {
        cb_stage *s = &g->stages[i];
        char done[4400];
        snprintf(done, sizeof done, "%s/stamps/%s.done", g->exp_dir, s->id);
        s->todo = force || !cb_stamp_matches(done, s->hash) || !path_exists(s->output);
        for (int k = 0; k < s->n_deps; k++) s->todo |= g->stages[s->deps[k]].todo;
        if (s->kind == CB_STAGE_CHAT) s->todo = 0; /* run after the graph, every time */
        if (s->todo && !dry_run) unlink(done);
        if (force && !dry_run && s->kind == CB_STAGE_TRAIN) {
            /* redone from the start: not continued from the checkpoints it left */
            char started[4400];
            snprintf(started, sizeof started, "%s/stamps/%s.started", g->exp_dir, s->id);
            unlink(started);
        }
    }
}

static int write_if_changed(const char *path, const char *text, size_t n, cb_error *e) {
    char *old = NULL;
    size_t old_n = 0;
    cb_error ignore;
    if (cb_read_file(path, 0, &old, &old_n, &ignore) == CB_OK && old_n == n && memcmp(old, text, n) == 0) {
        free(old);
        return CB_OK;
    }
    free(old);
    return cb_atomic_write(path, text, n, e);
}

static int write_doc(const char *path, json_t *doc, cb_error *e) {
    char *text = json_dumps(doc, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    if (!text) return cb_fail(e, CB_E_RUNTIME, path, "out of memory");
    size_t n = strlen(text);
    char *with_nl = realloc(text, n + 2);
    if (!with_nl) {
        free(text);
        return cb_fail(e, CB_E_RUNTIME, path, "out of memory");
    }
    with_nl[n] = '\n';
    with_nl[n + 1] = 0;
    int rc = write_if_changed(path, with_nl, n + 1, e);
    free(with_nl);
    return rc;
}

static char *version_text(const cb_tools *t) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "CB_BLAS_NOTED=1 '%s' --version 2>&1", t->path[CB_TOOL_CB]);
    FILE *p = popen(cmd, "r");
    char buf[4096];
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    if (p) pclose(p);
    buf[n] = 0;
    return strdup(buf);
}

/* run make (or one of its targets) with the stage messages on fd 3 = our stderr and make's
 * own chatter in logs/make.log; returns make's exit status */
static int run_make(const cb_graph *g, int jobs, int quiet, const char *target, int interactive) {
    char makefile[4400], log[4400], jflag[32];
    snprintf(makefile, sizeof makefile, "%s/Makefile", g->exp_dir);
    snprintf(log, sizeof log, "%s/logs/make.log", g->exp_dir);
    snprintf(jflag, sizeof jflag, "-j%d", jobs > 0 ? jobs : 1);
    fflush(stdout);
    fflush(stderr);
    struct sigaction ign = {.sa_handler = SIG_IGN}, old_int, old_term;
    sigemptyset(&ign.sa_mask);
    /* Ctrl-C reaches make and the tools (cb-train saves a checkpoint); cb run stays to say so */
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGTERM, &ign, &old_term);
    pid_t pid = fork();
    if (pid == 0) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        dup2(2, 3);
        if (!interactive) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
            if (fd >= 0) dup2(fd, 2);
            int null = open("/dev/null", O_RDONLY);
            if (null >= 0) dup2(null, 0);
        }
        if (quiet) setenv("CB_RUN_QUIET", "1", 1);
        setenv("CB_BLAS_NOTED", "1", 1);
        execlp("make", "make", "--no-print-directory", "-s", "-f", makefile, jflag, target, (char *)NULL);
        dprintf(3, "cb run: cannot run make (%s); install it (apt-get install make)\n", strerror(errno));
        _exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (pid < 0) return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int has_space(const char *s) { return strpbrk(s, " \t\n\"'$\\#%") != NULL; }

int cb_experiment_run(const cb_run_request *rq, cb_run_result *res, cb_diags *d, FILE *progress, cb_error *e) {
    memset(res, 0, sizeof *res);
    cb_tools tools;
    CB_TRY(cb_tools_find(&tools, rq->tools_dir, e));
    char work_dir[PATH_MAX];
    if (!getcwd(work_dir, sizeof work_dir)) return cb_fail(e, CB_E_IO, ".", "cannot read the current folder: %s", strerror(errno));

    json_t *overrides = json_object(), *lowered = NULL, *plan = NULL;
    json_object_set_new(overrides, "vars", json_object());
    int rc = compile(rq, overrides, &lowered, &plan, d, res, e);
    const json_t *group = NULL;
    if (rc == CB_OK) {
        apply_overrides(plan, rq, overrides);
        rc = cb_graph_find_group(plan, rq->group, &group, e);
        if (rc != CB_OK) snprintf(e->where, sizeof e->where, "%s", rq->manifest);
    }
    char exp[PATH_MAX] = "";
    if (rc == CB_OK) {
        if (rq->exp_dir) snprintf(exp, sizeof exp, "%s", rq->exp_dir);
        else snprintf(exp, sizeof exp, "runs/%s/%s", str(plan, "name") ? str(plan, "name") : "experiment", str(group, "name"));
        if (exp[0] != '/') {
            char rel[PATH_MAX];
            snprintf(rel, sizeof rel, "%s", exp);
            if (snprintf(exp, sizeof exp, "%s/%s", work_dir, rel) >= (int)sizeof exp)
                rc = cb_fail(e, CB_E_USAGE, rel, "path too long");
        }
        if (rc == CB_OK && (has_space(exp) || has_space(work_dir)))
            rc = cb_fail(e, CB_E_USAGE, has_space(exp) ? exp : work_dir,
                         "the experiment folder and the current folder must not hold spaces or shell characters "
                         "(they are written into a Makefile)");
    }
    cb_graph g;
    int have_graph = 0, lock_fd = -1;
    if (rc == CB_OK) {
        cb_graph_options opt = {.resume = rq->resume, .runtime_plan = rq->runtime_plan};
        rc = cb_graph_build(&g, plan, group, exp, &opt, e);
        have_graph = rc == CB_OK;
    }
    if (rc == CB_OK) rc = cb_preflight(&g, &tools, e);
    if (rc == CB_OK) {
        snprintf(res->exp_dir, sizeof res->exp_dir, "%s", exp);
        hash_stages(&g, &tools);
        mark_todo(&g, rq->force, rq->dry_run);
        res->n_stages = g.n;
        for (int i = 0; i < g.n; i++) res->n_todo += g.stages[i].todo;
    }
    if (rc == CB_OK && rq->dry_run) {
        /* what would run, and how: one line each on stdout */
        for (int i = 0; i < g.n && rc == CB_OK; i++) {
            if (!g.stages[i].todo && g.stages[i].kind != CB_STAGE_CHAT) continue;
            char *cmd = cb_makefile_command(&g, i, &tools, e);
            if (!cmd) rc = CB_E_RUNTIME;
            else printf("%s: %s\n", g.stages[i].id, cmd);
            free(cmd);
        }
        goto out;
    }
    /* the experiment folder: what made it, then the stamps, then the Makefile */
    char path[PATH_MAX + 512]; /* exp, then a stage id of up to 191 bytes */
    if (rc == CB_OK) rc = make_dirs(exp, e);
    if (rc == CB_OK) {
        /* two cb runs in one folder would rewrite each other's stamps and Makefile mid-run */
        snprintf(path, sizeof path, "%s/.lock", exp);
        lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (lock_fd < 0) rc = cb_fail(e, CB_E_IO, path, "cannot create the lock file: %s", strerror(errno));
        else if (flock(lock_fd, LOCK_EX | LOCK_NB) != 0)
            rc = cb_fail(e, CB_E_IO, exp, "another cb run is working in this folder; wait for it or give another -o");
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/stamps", exp);
        rc = make_dirs(path, e);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/logs", exp);
        rc = make_dirs(path, e);
    }
    if (rc == CB_OK) {
        char *text = NULL;
        size_t n = 0;
        rc = cb_read_file(rq->manifest, 0, &text, &n, e);
        snprintf(path, sizeof path, "%s/manifest.yml", exp);
        if (rc == CB_OK) rc = write_if_changed(path, text, n, e);
        free(text);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/lowered.json", exp);
        rc = write_doc(path, lowered, e);
    }
    if (rc == CB_OK) {
        snprintf(path, sizeof path, "%s/plan.json", exp);
        rc = write_doc(path, plan, e);
    }
    if (rc == CB_OK) {
        char *vt = version_text(&tools);
        json_t *prov = cb_provenance_new(rq->argc, rq->argv, overrides, work_dir, tools.dir, vt);
        free(vt);
        snprintf(path, sizeof path, "%s/provenance.json", exp);
        rc = write_doc(path, prov, e);
        json_decref(prov);
    }
    for (int i = 0; i < g.n && rc == CB_OK; i++) {
        snprintf(path, sizeof path, "%s/stamps/%s.want", exp, g.stages[i].id);
        rc = cb_stamp_write(path, g.stages[i].hash, e);
    }
    if (rc == CB_OK) rc = cb_makefile_write(&g, &tools, work_dir, e);
    if (rc != CB_OK) goto out;

    snprintf(path, sizeof path, "%s/stamps/failed", exp);
    unlink(path);
    if (!rq->quiet) {
        int n_graph = 0;
        for (int i = 0; i < g.n; i++) n_graph += g.stages[i].kind != CB_STAGE_CHAT;
        fprintf(progress, "cb run: %s, group %s: %d of %d stages to run", str(plan, "name") ? str(plan, "name") : "",
                g.group_name, res->n_todo, n_graph);
        const char *sep = ": ";
        for (int i = 0; i < g.n; i++)
            if (g.stages[i].todo) {
                fprintf(progress, "%s%s", sep, g.stages[i].id);
                sep = ", ";
            }
        fprintf(progress, "\n");
    }
    int status = res->n_todo ? run_make(&g, rq->jobs, rq->quiet, "all", 0) : 0;
    if (status != 0) {
        if (path_exists(path)) rc = CB_E_RUNTIME; /* stage.sh said which stage and where its log is */
        else {
            char log[PATH_MAX + 64];
            snprintf(log, sizeof log, "%s/logs/make.log", exp);
            rc = status == 127 ? CB_E_RUNTIME
                               : cb_fail(e, CB_E_RUNTIME, log,
                                         "make stopped with status %d before any stage failed (its messages are here)", status);
        }
        goto out;
    }
    for (int i = 0; i < g.n; i++) {
        cb_stage *s = &g.stages[i];
        if (s->kind == CB_STAGE_CHAT) {
            if (!rq->quiet) fprintf(progress, "cb run: %s: a conversation with the model (end it with Ctrl-D)\n", s->id);
            status = run_make(&g, 1, rq->quiet, s->id, 1);
            if (status != 0) {
                rc = cb_fail(e, CB_E_RUNTIME, "", "stage %s failed (exit %d)", s->id, status);
                goto out;
            }
        }
        if (s->kind == CB_STAGE_VERIFY) {
            snprintf(path, sizeof path, "%s/stamps/%s.verdict", exp, s->id);
            if (path_exists(path)) {
                fprintf(progress, "cb run: %s/verify.json: the verification of run %s failed\n", s->dir, s->name);
                res->failed_verdicts++;
            }
        }
    }
    if (res->failed_verdicts) rc = CB_E_VERDICT;
out:
    if (lock_fd >= 0) close(lock_fd);
    if (have_graph) cb_graph_free(&g);
    json_decref(lowered);
    json_decref(plan);
    json_decref(overrides);
    return rc;
}
