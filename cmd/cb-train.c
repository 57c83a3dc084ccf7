/* cb-train: train a model on the run a plan describes: its settings from the plan's
 * group, checkpoints and metrics into a run directory, resumable on the same trajectory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/atomic_dir.h"
#include "core/json_doc.h"
#include "dist/dist.h"
#include "io/model_dir.h"
#include "model/model.h"
#include "plan/plan.h"
#include "runtime/runtime_plan.h"
#include "upcycle/surgery.h"
#include "train/config.h"
#include "train/progress.h"
#include "train/trainer.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

static const char *TOOL = "cb-train";
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void usage(void) {
    printf("usage: cb-train [--run id] [--group name] [-o run_dir] [--resume checkpoint_dir]\n"
           "       [--data train.npy] [--val val.npy] [--steps n] [--device cpu|cuda|auto] [--force] [--quiet]\n"
           "       [--runtime-plan] plan\n"
           "Train the model of a plan on one of its runs (mode train): the run's seed, steps and\n"
           "train settings come from the plan's group. Writes run_dir/metrics.jsonl, checkpoints\n"
           "run_dir/step-NNNNNNNN/, the trained model run_dir/final/ and run_dir/run.json; prints\n"
           "the final model directory. SIGINT or SIGTERM saves a checkpoint at the end of the\n"
           "step and exits 0; --resume continues a run on the trajectory it would have taken.\n"
           "A run_dir holding another run is refused unless --resume or --force (write over it).\n"
           "--runtime-plan: batch size, threads and dtype decided for this machine, cached (cb(1));\n"
           "train.batch_size: auto asks for it too.\n");
}

/* mkdir -p */
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
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return cb_fail(e, CB_E_IO, buf, "not a directory");
    return CB_OK;
}

/* Hold run_dir/.lock (flock) for the rest of the process: two runs writing one directory
 * would overwrite each other's checkpoints, so the second stops here, at the start. */
static int lock_run_dir(const char *run_dir, cb_error *e) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) return cb_fail(e, CB_E_IO, path, "cannot create the lock file: %s", strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(fd);
        if (err == EWOULDBLOCK)
            return cb_fail(e, CB_E_IO, run_dir, "another cb-train is writing to this directory (it holds .lock); "
                           "wait for it to end or give another -o");
        return cb_fail(e, CB_E_IO, path, "cannot lock: %s", strerror(err));
    }
    return CB_OK; /* fd stays open, and the lock held, until the process ends */
}

/* What an earlier run left in run_dir, for a message: "final/, metrics.jsonl, 4 checkpoints" */
static void describe_run_dir(const char *run_dir, char *buf, size_t n) {
    char path[4200];
    struct stat st;
    int checkpoints = 0;
    DIR *d = opendir(run_dir);
    struct dirent *ent;
    while (d && (ent = readdir(d))) checkpoints += strncmp(ent->d_name, "step-", 5) == 0;
    if (d) closedir(d);
    size_t k = 0;
    snprintf(path, sizeof path, "%s/final", run_dir);
    if (stat(path, &st) == 0) k += (size_t)snprintf(buf + k, n - k, "final/, ");
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    if (k < n && stat(path, &st) == 0) k += (size_t)snprintf(buf + k, n - k, "metrics.jsonl, ");
    if (k < n) snprintf(buf + k, n - k, "%d checkpoint%s", checkpoints, checkpoints == 1 ? "" : "s");
}

/* A new run into a directory that holds another run (its run.json names another plan,
 * group or run) would overwrite it, and keep_last would then delete the new run's own
 * checkpoints as older than the earlier run's: refused, unless force, which first removes
 * the earlier run's checkpoints, final model, metrics and run.json. */
static int check_earlier_run(const char *run_dir, const cb_train_config *c, const cb_model *m, int force, cb_error *e) {
    char path[4400];
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    json_t *doc = json_load_file(path, 0, NULL);
    if (!doc) return CB_OK;
    const char *sha = json_string_value(json_object_get(doc, "plan_sha256"));
    const char *group = json_string_value(json_object_get(doc, "group"));
    const char *run = json_string_value(json_object_get(doc, "run"));
    int other_plan = !sha || strcmp(sha, m->plan_sha256) != 0;
    int other_run = !group || !run || strcmp(group, c->group) != 0 || strcmp(run, c->run) != 0;
    int rc = CB_OK;
    if ((other_plan || other_run) && !force) {
        char what[256], whose[300];
        describe_run_dir(run_dir, what, sizeof what);
        if (other_plan) snprintf(whose, sizeof whose, "another plan");
        else snprintf(whose, sizeof whose, "this plan, not run %.200s", c->run);
        rc = cb_fail(e, CB_E_IO, run_dir, "holds run %s of %s (plan_sha256 %.12s..., this plan %.12s...: %s); "
                     "--resume a checkpoint to continue it, --force to write over it, or give another -o",
                     run ? run : "?", whose, sha ? sha : "none", m->plan_sha256, what);
    } else if (other_plan || other_run) {
        DIR *d = opendir(run_dir);
        struct dirent *ent;
        while (d && (ent = readdir(d))) {
            if (strncmp(ent->d_name, "step-", 5) != 0) continue;
            snprintf(path, sizeof path, "%s/%s", run_dir, ent->d_name);
            cb_remove_tree(path);
        }
        if (d) closedir(d);
        static const char *const earlier[] = {"final", "metrics.jsonl", "run.json"};
        for (size_t i = 0; i < sizeof earlier / sizeof *earlier; i++) {
            snprintf(path, sizeof path, "%s/%s", run_dir, earlier[i]);
            cb_remove_tree(path);
        }
    }
    json_decref(doc);
    return rc;
}

static json_t *run_meta(const cb_train_config *c) {
    json_t *meta = json_object();
    if (c->wandb || c->wandb_project[0] || c->wandb_entity[0]) {
        json_t *w = json_object();
        json_object_set_new(w, "enabled", json_boolean(c->wandb));
        if (c->wandb_project[0]) json_object_set_new(w, "project", json_string(c->wandb_project));
        if (c->wandb_entity[0]) json_object_set_new(w, "entity", json_string(c->wandb_entity));
        json_object_set_new(meta, "wandb", w);
    }
    return meta;
}

static int parse_count(const char *s, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || !*s || v < 0) return -1;
    *out = v;
    return 0;
}

/* The command line of one run. */
typedef struct train_args {
    const char *plan, *run_id, *group, *out, *resume, *data, *val, *device;
    long steps;
    int quiet, force, runtime_plan;
} train_args;

static int train(cb_dist *dist, const train_args *a, cb_error *e);

int main(int argc, char **argv) {
    if (cb_cli_start("cb-train", argc, argv, CB_CLI_COMPUTE)) return cb_cli_close_stdout("cb-train");
    static const struct option opts[] = {
        {"help", no_argument, 0, 'h'},         {"run", required_argument, 0, 'r'},
        {"group", required_argument, 0, 'g'},  {"output", required_argument, 0, 'o'},
        {"resume", required_argument, 0, 'R'}, {"data", required_argument, 0, 'd'},
        {"val", required_argument, 0, 'v'},    {"steps", required_argument, 0, 's'},
        {"quiet", no_argument, 0, 'q'},        {"device", required_argument, 0, 'D'},
        {"force", no_argument, 0, 'F'},        {"runtime-plan", no_argument, 0, 'P'},
        {0, 0, 0, 0}};
    const char *device = NULL, *run_id = NULL, *group = NULL, *out = NULL, *resume = NULL, *data = NULL, *val = NULL;
    long steps = -1;
    int quiet = 0, force = 0, runtime_plan = 0, c;
    while ((c = getopt_long(argc, argv, "ho:q", opts, NULL)) != -1) {
        switch (c) {
        case 'h': usage(); return 0;
        case 'r': run_id = optarg; break;
        case 'g': group = optarg; break;
        case 'o': out = optarg; break;
        case 'R': resume = optarg; break;
        case 'd': data = optarg; break;
        case 'v': val = optarg; break;
        case 'q': quiet = 1; break;
        case 'D': device = optarg; break;
        case 'F': force = 1; break;
        case 'P': runtime_plan = 1; break;
        case 's':
            if (parse_count(optarg, &steps) != 0)
                return cb_cli_usage_error(TOOL, "--steps: not a non-negative integer: %s", optarg);
            break;
        default: return cb_cli_usage_error(TOOL, "unknown option");
        }
    }
    if (argc - optind != 1) return cb_cli_usage_error(TOOL, argc - optind ? "one plan, please" : "no plan given");
    /* a full disk or a file-size limit must fail the write, not kill the run */
    signal(SIGXFSZ, SIG_IGN);

    cb_error e;
    cb_error_clear(&e);
    /* started by mpirun: one rank of a data-parallel run (dist/dist.h) */
    static cb_dist dist;
    if (cb_dist_init(&dist, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    cb_cli_note_kernels(TOOL, quiet || dist.rank != 0);
    train_args a = {.plan = argv[optind], .run_id = run_id, .group = group, .out = out, .resume = resume,
                    .data = data, .val = val, .device = device, .steps = steps, .quiet = quiet || dist.rank != 0,
                    .force = force, .runtime_plan = runtime_plan};
    int rc = train(&dist, &a, &e);
    cb_dist_finalize(&dist);
    if (rc != CB_OK) return rc;
    return dist.rank == 0 ? cb_cli_close_stdout(TOOL) : 0;
}

/* train.amp on the backend the run trains on: true, false or auto (on for the CUDA
 * backend, off elsewhere). The CPU backend has no bf16 training path, so true there is
 * a usage error naming the field. Weights, optimizer state and checkpoints stay float32
 * either way, so a run moves between devices. */
static int set_amp(const json_t *run, const cb_backend *be, cb_error *e) {
    const json_t *given = json_object_get(run, "train");
    const json_t *v = json_is_object(given) ? json_object_get(given, "amp") : NULL;
    int is_auto = json_is_string(v) && strcmp(json_string_value(v), "auto") == 0;
    if (v && !json_is_boolean(v) && !is_auto)
        return cb_fail(e, CB_E_USAGE, cb_loc(given, "amp"), "train.amp: expected true, false or auto");
    int cuda = be->device == CB_DEVICE_CUDA;
    /* fsdp_mixed_precision is PyTorch FSDP's name for it: amp true (cb-manifest(5)) */
    const json_t *fmp = json_is_object(given) ? json_object_get(given, "fsdp_mixed_precision") : NULL;
    if (json_is_true(fmp)) {
        if (json_is_false(v))
            return cb_fail(e, CB_E_USAGE, cb_loc(given, "fsdp_mixed_precision"),
                           "train.fsdp_mixed_precision: true is amp true, and train.amp says false");
        if (!cuda)
            return cb_fail(e, CB_E_USAGE, cb_loc(given, "fsdp_mixed_precision"),
                           "train.fsdp_mixed_precision: true (bf16 products, amp) needs the cuda device; the %s "
                           "backend trains in float32 only",
                           be->name);
        v = fmp;
    }
    if (json_is_true(v) && !cuda)
        return cb_fail(e, CB_E_USAGE, cb_loc(given, "amp"),
                       "train.amp: true needs the cuda device; the %s backend trains in float32 only (amp: auto "
                       "turns it on where the run trains on a GPU)",
                       be->name);
#ifdef CB_HAVE_CUDA
    if (cuda) cb_backend_cuda_set_amp(json_is_true(v) || is_auto);
#endif
    return CB_OK;
}

/* The run on this rank, rank 0 printing its result; returns the exit status. */
static int train(cb_dist *dist, const train_args *a, cb_error *ep) {
    cb_error e = *ep;
    const char *run_id = a->run_id, *group = a->group, *out = a->out, *resume = a->resume, *data = a->data,
               *val = a->val, *device = a->device;
    long steps = a->steps;
    int quiet = a->quiet, force = a->force, runtime_plan = a->runtime_plan, main_rank = dist->rank == 0;
    json_t *plan = NULL;
    if (cb_doc_load(a->plan, "plan", &plan, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    const json_t *g = NULL, *r = NULL;
    static cb_train_config cfg;
    int rc = cb_train_find_run(plan, group, run_id, &g, &r, &e);
    if (rc == CB_OK) rc = cb_train_config_read(&cfg, g, r, &e);
    if (rc != CB_OK) {
        json_decref(plan);
        return cb_cli_report(TOOL, &e);
    }
    if (steps >= 0) cfg.steps = cfg.schedule.total = steps;
    if (data) snprintf(cfg.data, sizeof cfg.data, "%s", data);
    if (val) snprintf(cfg.val_split, sizeof cfg.val_split, "%s", val);
    if (resume) snprintf(cfg.resume, sizeof cfg.resume, "%s", resume);
    if (device) snprintf(cfg.device, sizeof cfg.device, "%s", device);
    cb_backend *backend = NULL;
    if (rc == CB_OK) rc = cb_backend_open(cfg.device, &backend, &e);
    if (rc == CB_OK) rc = set_amp(r, backend, &e);
    char run_dir[4096];
    if (out) snprintf(run_dir, sizeof run_dir, "%s", out);
    else snprintf(run_dir, sizeof run_dir, "runs/%s/%s", cfg.group, cfg.run);
    if (!cfg.data[0])
        rc = cb_fail(&e, CB_E_USAGE, cb_loc(r, NULL), "run %s has no training data (train.data, the group's data, or --data)",
                     cfg.run);

    /* the teacher's plan: the plan's model (what train.teacher's weights must fit) */
    json_t *teacher_plan = rc == CB_OK ? json_deep_copy(plan) : NULL;
    if (teacher_plan) json_object_del(teacher_plan, "students");
    else if (rc == CB_OK) rc = cb_fail(&e, CB_E_RUNTIME, "", "out of memory");
    /* a run with train.student.overrides trains its student: the plan cb-validate made for it */
    if (rc == CB_OK && cfg.student) {
        json_t *student = cb_plan_student_doc(plan, cfg.group, cfg.run);
        if (!student)
            rc = cb_fail(&e, CB_E_INVALID, a->plan, "the plan has no student for run %s/%s; compile the manifest "
                         "again with this cb", cfg.group, cfg.run);
        else {
            json_decref(plan);
            plan = student;
        }
    }
    /* the teacher of the phases that train against it: the plan's model with the weights
     * train.teacher names */
    cb_model teacher;
    int have_teacher = 0;
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", run_dir);
    const char *runs_dir = dirname(parent);
    if (rc == CB_OK && (cfg.phase == CB_PHASE_BLOCKWISE || cfg.phase == CB_PHASE_UPCYCLE || cfg.phase == CB_PHASE_DISTILL)) {
        char src[4400];
        if (cfg.teacher_ckpt[0]) snprintf(src, sizeof src, "%s", cfg.teacher_ckpt);
        else snprintf(src, sizeof src, "%s/%s/final", runs_dir, cfg.teacher_run);
        rc = cb_model_init_empty(&teacher, teacher_plan, &e);
        have_teacher = rc == CB_OK;
        if (rc == CB_OK && (rc = cb_model_load_weights_dir(&teacher, src, &e)) == CB_E_INVALID) {
            char why[sizeof e.msg];
            snprintf(why, sizeof why, "%s", e.msg);
            rc = cb_fail(&e, e.code, e.where, "the teacher does not match the manifest's model: %s", why);
        }
    }
    json_decref(teacher_plan);

    /* the model: fresh from the run's seed, weights from a checkpoint the run names, or
     * made from the teacher by surgery */
    cb_model m;
    int have_model = 0;
    if (rc == CB_OK) {
        int from_weights = (cfg.init_ckpt[0] || cfg.init_run[0]) && !cfg.resume[0];
        rc = from_weights ? cb_model_init_empty(&m, plan, &e) : cb_model_init(&m, plan, cfg.seed, &e);
        have_model = rc == CB_OK;
        if (rc == CB_OK && from_weights) {
            char src[4200];
            if (cfg.init_ckpt[0]) snprintf(src, sizeof src, "%s", cfg.init_ckpt);
            else snprintf(src, sizeof src, "%s/%s/final", runs_dir, cfg.init_run);
            rc = cb_model_load_weights_dir(&m, src, &e);
        }
        if (rc == CB_OK && cfg.surgery && !cfg.resume[0]) {
            cb_surgery_options so = {.context = cfg.block_size};
            rc = cb_surgery(&m, &teacher, &so, &e);
        }
    }
    cb_train_data d;
    int have_data = 0;
    if (rc == CB_OK) {
        int64_t vocab = json_integer_value(json_object_get(json_object_get(m.plan, "model"), "vocab_size"));
        rc = cb_train_data_open(&d, cfg.data, cfg.val_split, cfg.val_frac, cfg.block_size, vocab, &e);
        have_data = rc == CB_OK;
    }
    if (rc == CB_OK && (runtime_plan || cfg.batch_auto)) {
        /* the runtime plan (lib/runtime): measured once per machine, plan and settings, then
         * cached; batch_size: auto is one of its decisions, so it asks for the plan too */
        cb_runtime_plan rp;
        cb_runtime_env env = {.backend = backend, .world = dist->world, .data_tokens = d.train.n_tokens};
        rc = cb_runtime_plan_decide(&rp, &m, json_object_get(r, "train"), &cfg, &env, NULL, 1, &e);
        /* every rank trains rank 0's batch: the free memory each one saw differs a little */
        if (dist->world > 1) {
            cb_error other;
            int any_failed = 1, arc = cb_dist_any(dist, rc != CB_OK, &any_failed, &other);
            if (rc == CB_OK && arc != CB_OK) {
                e = other;
                rc = arc;
            } else if (rc == CB_OK && any_failed) {
                rc = cb_fail(&e, CB_E_RUNTIME, "", "the runtime plan failed on another rank (its message is above)");
            }
            int shape[2] = {rp.batch_size, rp.grad_accum};
            if (rc == CB_OK) rc = cb_dist_broadcast(dist, cb_backend_cpu(), shape, sizeof shape, &e);
            rp.batch_size = shape[0];
            rp.grad_accum = shape[1];
        }
        if (rc == CB_OK) cb_runtime_plan_apply(&rp, &cfg);
        if (rc == CB_OK && !quiet && main_rank) cb_runtime_plan_print(&rp, stderr);
    }
    json_decref(plan);
    /* rank 0 owns the run directory; the other ranks write nothing */
    if (rc == CB_OK && main_rank) rc = make_dirs(run_dir, &e);
    if (rc == CB_OK && main_rank) rc = lock_run_dir(run_dir, &e);
    if (rc == CB_OK && main_rank && !cfg.resume[0]) rc = check_earlier_run(run_dir, &cfg, &m, force, &e);

    cb_train_result res;
    if (rc == CB_OK) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESETHAND; /* a second signal ends the run at once (checkpoints stay whole) */
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        cb_progress progress;
        cb_progress_init(&progress, stderr, quiet, -1, 0, cfg.steps);
        json_t *meta = run_meta(&cfg);
        cb_train_io io = {.run_dir = run_dir, .resume = cfg.resume[0] ? cfg.resume : NULL, .stop = &stop_requested,
                          .progress = main_rank ? &progress : NULL, .meta = meta, .backend = backend, .dist = dist,
                          .teacher = have_teacher ? &teacher : NULL};
        rc = cb_train_run(&cfg, &m, &d, &io, &res, &e);
        json_decref(meta);
    }
    if (have_data) cb_train_data_close(&d);
    if (have_model) cb_model_free(&m);
    if (have_teacher) cb_model_free(&teacher);
    if (rc != CB_OK) {
        *ep = e;
        return cb_cli_report(TOOL, &e);
    }
    if (!main_rank) return CB_OK;
    if (res.interrupted) {
        fprintf(stderr, "%s: interrupted after step %ld; checkpoint in %s (continue with --resume %s)\n", TOOL, res.step,
                res.checkpoint, res.checkpoint);
        return CB_OK;
    }
    printf("%s\n", res.final_dir);
    return CB_OK;
}
