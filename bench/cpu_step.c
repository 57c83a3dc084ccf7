/* cpu_step.c: times one training step (forward + backward, no optimizer) of the model of a
 * manifest (bench/llama110m.yml by default) on the CPU, measures OpenBLAS sgemm's peak on the
 * same machine in the same run, and prints model FLOPs per second as a fraction of that peak
 * (FLOPs counted as PaLM and llm.c count them: 6 N + 12 L T d per token, N the parameters
 * besides the token embedding, LM head included), with a per-op-kind breakdown of the step.
 *   build/rel/bench/cpu_step [-m manifest] [-b batch] [-t seq] [-n steps] [-w warmup]
 * from the repository root; bench/cpu_step.sh runs it beside PyTorch (bench/RESULTS.md). */
#include <getopt.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <cblas.h>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/rng.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "model/run.h"
#include "plan/validate.h"

/* CPU seconds of every thread of the process, and its minor page faults so far. */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* The 1-minute load average (other processes compete for the same cores), or -1. */
static double loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v (n), sorted in place. */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* ---- sgemm peak ------------------------------------------------------------------------ */

typedef struct gemm_shape {
    const char *what;
    int ta, tb; /* 1: that operand transposed, as the layers call it */
    int M, N, K;
} gemm_shape;

/* Best GFLOP/s of reps calls of C (M,N) = op(A) op(B), row-major, after one untimed call. */
static double gemm_gflops(const gemm_shape *s, int reps, float *a, float *b, float *c) {
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double best = 0;
    for (int r = -1; r < reps; r++) {
        double t0 = cb_clock_s();
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans,
                    s->M, s->N, s->K, 1.0f, a, lda, b, ldb, 0.0f, c, s->N);
        double dt = cb_clock_s() - t0;
        double gf = 2.0 * s->M * s->N * (double)s->K / dt * 1e-9;
        if (r >= 0 && gf > best) best = gf;
    }
    return best;
}

/* The products the probe times: square ones, then those of one training step of the model. */
typedef struct gemm_probe {
    gemm_shape shapes[11];
    int n_shapes;
    float *a, *b, *c;
} gemm_probe;

static int gemm_probe_init(gemm_probe *p, int B, int T, int d, int F, int V) {
    const int n = B * T;
    const gemm_shape shapes[] = {
        {"square 1024", 0, 0, 1024, 1024, 1024},
        {"square 2048", 0, 0, 2048, 2048, 2048},
        {"square 3072", 0, 0, 3072, 3072, 3072},
        {"q/k/v/o fwd  x W^T", 0, 1, n, d, d},
        {"mlp up fwd   x W^T", 0, 1, n, F, d},
        {"mlp down fwd h W^T", 0, 1, n, d, F},
        {"head fwd     x W^T", 0, 1, n, V, d},
        {"mlp dW    dy^T x", 1, 0, F, d, n},
        {"mlp dx    dy W", 0, 0, n, d, F},
        {"head dW   dy^T x", 1, 0, V, d, n},
        {"head dx   dy W", 0, 0, n, d, V},
    };
    p->n_shapes = (int)(sizeof shapes / sizeof *shapes);
    memcpy(p->shapes, shapes, sizeof shapes);
    size_t most = 0;
    for (int i = 0; i < p->n_shapes; i++) {
        const gemm_shape *s = &p->shapes[i];
        size_t ab = (size_t)s->M * s->K > (size_t)s->K * s->N ? (size_t)s->M * s->K : (size_t)s->K * s->N;
        size_t cc = (size_t)s->M * s->N;
        if (ab > most) most = ab;
        if (cc > most) most = cc;
    }
    p->a = aligned_alloc(64, most * sizeof(float));
    p->b = aligned_alloc(64, most * sizeof(float));
    p->c = aligned_alloc(64, most * sizeof(float));
    if (!p->a || !p->b || !p->c) return CB_E_RUNTIME;
    cb_rng rng;
    cb_rng_init(&rng, 5);
    for (size_t i = 0; i < most; i++) {
        p->a[i] = (float)cb_rng_normal(&rng);
        p->b[i] = (float)cb_rng_normal(&rng);
        p->c[i] = 0;
    }
    return CB_OK;
}

static void gemm_probe_free(gemm_probe *p) {
    free(p->a);
    free(p->b);
    free(p->c);
}

/* Times every shape (best of reps), prints each when verbose, returns the best of all. */
static double gemm_probe_run(gemm_probe *p, int reps, int verbose) {
    double peak = 0;
    for (int i = 0; i < p->n_shapes; i++) {
        const gemm_shape *s = &p->shapes[i];
        double gf = gemm_gflops(s, reps, p->a, p->b, p->c);
        if (verbose)
            printf("  %-20s %c%c M %5d N %5d K %5d  %7.1f\n", s->what, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N',
                   s->M, s->N, s->K, gf);
        if (gf > peak) peak = gf;
    }
    return peak;
}

/* Best GFLOP/s of the square 2048 product on one thread (the OpenMP build of OpenBLAS takes
 * its thread count from OpenMP's, so both are set and restored). */
static double gemm_one_thread(gemm_probe *p, int reps) {
    int blas = openblas_get_num_threads(), omp = omp_get_max_threads();
    openblas_set_num_threads(1);
    omp_set_num_threads(1);
    double gf = gemm_gflops(&p->shapes[1], reps, p->a, p->b, p->c);
    openblas_set_num_threads(blas);
    omp_set_num_threads(omp);
    return gf;
}

/* ---- per-op-kind breakdown ------------------------------------------------------------- */

enum { K_EMBED, K_NORM, K_ATTN, K_SWIGLU, K_HEAD, K_RESID, K_XENT, K_ZERO, K_COUNT };
static const char *const kind_names[K_COUNT] = {"embedding", "rmsnorm", "attention", "swiglu",
                                                "linear/head", "residual add", "crossentropy",
                                                "zero grads"};

typedef struct breakdown {
    double fwd[K_COUNT], bwd[K_COUNT]; /* seconds */
} breakdown;

static int kind_of(int op_kind) {
    switch (op_kind) {
    case CB_OP_EMBED: return K_EMBED;
    case CB_OP_RMSNORM: return K_NORM;
    case CB_OP_ATTENTION: return K_ATTN;
    case CB_OP_SWIGLU: return K_SWIGLU;
    case CB_OP_LINEAR:
    case CB_OP_HEAD: return K_HEAD;
    case CB_OP_ADD: return K_RESID;
    default: return -1;
    }
}

/* The kinds the breakdown names (those of a Llama-style model); 0 when another appears. */
static int breakdown_supported(const cb_program *prog) {
    for (int i = 0; i < prog->n_ops; i++)
        if (kind_of(prog->ops[i].kind) < 0) return 0;
    return 1;
}

/* One step through cb_run_forward and cb_run_backward with the run's per-op clock on
 * (model/run.h, op_seconds), summed by kind; returns the loss so the caller can check it
 * equals the timed steps'. */
static float timed_step(cb_run *r, const cb_program *prog, const float *weights, float *grads,
                        size_t n_grads, const int32_t *tokens, const int32_t *targets, breakdown *bd) {
    double *secs = calloc(CB_RUN_TIMES(prog), sizeof *secs);
    if (!secs) {
        fprintf(stderr, "cpu_step: out of memory\n");
        exit(4);
    }
    r->op_seconds = secs;
    double t0 = cb_clock_s();
    memset(grads, 0, n_grads * sizeof *grads);
    bd->bwd[K_ZERO] += cb_clock_s() - t0;
    float loss = cb_run_forward(r, prog, weights, tokens, targets);
    cb_run_backward(r, prog, weights, grads);
    r->op_seconds = NULL;
    for (int i = 0; i < prog->n_ops; i++) {
        bd->fwd[kind_of(prog->ops[i].kind)] += secs[i];
        bd->bwd[kind_of(prog->ops[i].kind)] += secs[prog->n_ops + i];
    }
    bd->fwd[K_XENT] += secs[CB_RUN_T_LOSS_FWD(prog)];
    bd->bwd[K_XENT] += secs[CB_RUN_T_LOSS_BWD(prog)];
    bd->bwd[K_ZERO] += secs[CB_RUN_T_ZERO(prog)];
    free(secs);
    return loss;
}

/* ---- model FLOPs ----------------------------------------------------------------------- */

/* FLOPs of one forward per op kind (multiply-add = 2), as PaLM (appendix B) and llm.c count
 * them: every weight matrix 2 flops per parameter per token, attention's two score products
 * 2 * 2 * T * d per token and layer over the full T x T square (causality not discounted). */
static void forward_flops(const cb_program *prog, double *flops) {
    const double N = (double)prog->B * prog->T, T = prog->T;
    for (int k = 0; k < K_COUNT; k++) flops[k] = 0;
    for (int i = 0; i < prog->n_ops; i++) {
        const cb_op *op = &prog->ops[i];
        switch (op->kind) {
        case CB_OP_ATTENTION: {
            const cb_attention_config *a = &op->attn;
            double hd = a->head_dim, H = a->n_heads, Hkv = a->n_kv_heads, d = a->d_model;
            flops[K_ATTN] += 2 * N * d * (H * hd + 2 * Hkv * hd) + 2 * N * H * hd * d; /* q k v o */
            flops[K_ATTN] += 2 * 2 * N * T * H * hd;                                   /* QK^T, PV */
            break;
        }
        case CB_OP_SWIGLU: flops[K_SWIGLU] += 2 * N * 3.0 * op->d_in * op->d_ff; break;
        case CB_OP_LINEAR:
        case CB_OP_HEAD: flops[K_HEAD] += 2 * N * (double)op->d_in * op->d_out; break;
        default: break;
        }
    }
}

/* ---- the run ----------------------------------------------------------------------------- */

static json_t *compile_manifest(const char *path) {
    char *text = NULL;
    size_t len = 0;
    cb_error e;
    if (cb_read_file(path, 1 << 20, &text, &len, &e) != CB_OK) {
        fprintf(stderr, "cpu_step: %s: %s\n", path, e.msg);
        return NULL;
    }
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    if (cb_yaml_parse(text, len, path, &manifest, &e) != CB_OK) {
        fprintf(stderr, "cpu_step: %s: %s\n", e.where, e.msg);
        free(text);
        return NULL;
    }
    free(text);
    cb_diags d;
    cb_diags_init(&d);
    if (cb_lower(manifest, &lowered, &d) != CB_OK || cb_validate(lowered, &plan, &d) != CB_OK) {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "cpu_step: %s: %s\n", d.items[i].where, d.items[i].msg);
        plan = NULL;
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    return plan;
}

static const char *blas_threading(void) {
    switch (openblas_get_parallel()) {
    case 0: return "sequential";
    case 1: return "pthreads";
    case 2: return "openmp";
    default: return "unknown";
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: cpu_step [-m manifest] [-b batch] [-t seq] [-n steps] [-w warmup]\n"
               "       [-r gemm_reps] [--no-gemm] [--no-breakdown]\n"
               "Time a training step (forward + backward) of the manifest's model on the CPU\n"
               "against OpenBLAS sgemm's peak on this machine.\n");
}

int main(int argc, char **argv) {
    const char *manifest = "bench/llama110m.yml";
    int B = 4, T = 256, steps = 5, warmup = 1, gemm_reps = 5, do_gemm = 1, do_breakdown = 1;
    static const struct option longopts[] = {
        {"manifest", required_argument, NULL, 'm'}, {"batch", required_argument, NULL, 'b'},
        {"seq", required_argument, NULL, 't'},      {"steps", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, 'w'},   {"gemm-reps", required_argument, NULL, 'r'},
        {"no-gemm", no_argument, NULL, 'G'},        {"no-breakdown", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "m:b:t:n:w:r:h", longopts, NULL)) != -1) {
        char *end = NULL;
        long v = 0;
        if (ch == 'b' || ch == 't' || ch == 'n' || ch == 'w' || ch == 'r') {
            v = strtol(optarg, &end, 10);
            if (!*optarg || *end || v < (ch == 'w' ? 0 : 1) || v > 1000000) {
                fprintf(stderr, "cpu_step: -%c: bad number '%s'\n", ch, optarg);
                return 2;
            }
        }
        switch (ch) {
        case 'm': manifest = optarg; break;
        case 'b': B = (int)v; break;
        case 't': T = (int)v; break;
        case 'n': steps = (int)v; break;
        case 'w': warmup = (int)v; break;
        case 'r': gemm_reps = (int)v; break;
        case 'G': do_gemm = 0; break;
        case 'D': do_breakdown = 0; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    json_t *plan = compile_manifest(manifest);
    if (!plan) return 3;
    cb_model m;
    cb_program prog;
    cb_run r;
    cb_error e;
    if (cb_model_init(&m, plan, 1, &e) != CB_OK) {
        fprintf(stderr, "cpu_step: %s\n", e.msg);
        return 4;
    }
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK || cb_run_init(&r, &prog, 1, &e) != CB_OK) {
        fprintf(stderr, "cpu_step: %s\n", e.msg);
        return 4;
    }
    const json_t *totals = json_object_get(plan, "totals");
    long long params = json_integer_value(json_object_get(totals, "params"));
    long long params_embedding = json_integer_value(json_object_get(totals, "params_embedding"));
    long long n_layers = json_integer_value(json_object_get(totals, "attention_layers"));
    long long params_nonemb = params - params_embedding; /* topology + LM head */

    size_t n_grads = m.params.total_floats;
    float *grads = aligned_alloc(64, (n_grads * sizeof(float) + 63) / 64 * 64);
    int32_t *tokens = malloc((size_t)B * (T + 1) * sizeof *tokens);
    int32_t *targets = malloc((size_t)B * T * sizeof *targets);
    if (!grads || !tokens || !targets) {
        fprintf(stderr, "cpu_step: out of memory\n");
        return 4;
    }
    memset(grads, 0, n_grads * sizeof *grads); /* touch every page before timing */
    cb_rng rng;
    cb_rng_init(&rng, 42);
    for (int b = 0; b < B; b++) {
        int32_t *seq = tokens + (size_t)b * (T + 1);
        for (int t = 0; t <= T; t++) seq[t] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
    }
    /* inputs are each sequence's first T tokens, targets the next ones */
    int32_t *inputs = malloc((size_t)B * T * sizeof *inputs);
    if (!inputs) return 4;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = tokens[(size_t)b * (T + 1) + t];
            targets[(size_t)b * T + t] = tokens[(size_t)b * (T + 1) + t + 1];
        }

    printf("cpu_step: %s: %lld params (%lld non-embedding, LM head included), %lld layers, B %d, T %d\n",
           manifest, params, params_nonemb, n_layers, B, T);
    printf("openblas: %s; core %s; threading %s, %d threads; OpenMP %d threads\n", openblas_get_config(),
           openblas_get_corename(), blas_threading(), openblas_get_num_threads(), omp_get_max_threads());

    /* The peak is the best of all products over two probes, one before the steps and one
     * after: other processes on the machine slow some calls, never speed one up. */
    double peak = 0, peak_after = 0, one_thread = 0;
    gemm_probe probe;
    memset(&probe, 0, sizeof probe);
    if (do_gemm) {
        int d_ff = 4 * prog.d_model; /* the model's MLP width for the shaped products */
        for (int i = 0; i < prog.n_ops; i++)
            if (prog.ops[i].kind == CB_OP_SWIGLU || prog.ops[i].kind == CB_OP_MLP) d_ff = prog.ops[i].d_ff;
        if (gemm_probe_init(&probe, B, T, prog.d_model, d_ff, prog.vocab_size) != CB_OK) {
            fprintf(stderr, "cpu_step: out of memory for the sgemm probe\n");
            return 4;
        }
        printf("sgemm (row-major, %d threads, GFLOP/s, best of %d):\n", openblas_get_num_threads(), gemm_reps);
        peak = gemm_probe_run(&probe, gemm_reps, 1);
        one_thread = gemm_one_thread(&probe, gemm_reps);
        printf("sgemm before the steps: best %.1f GFLOP/s; on 1 thread (square 2048): %.1f GFLOP/s\n", peak,
               one_thread);
    }

    /* the step: zero the gradients, forward with the loss, backward */
    int total = warmup + steps;
    double *times = malloc((size_t)total * sizeof *times);
    if (!times) return 4;
    float loss = 0;
    double load0 = loadavg(), cpu_sum = 0;
    long faults_sum = 0;
    for (int s = 0; s < total; s++) {
        double t0 = cb_clock_s(), c0 = cpu_s();
        long f0 = minor_faults();
        memset(grads, 0, n_grads * sizeof *grads);
        loss = cb_run_forward(&r, &prog, m.weights, inputs, targets);
        cb_run_backward(&r, &prog, m.weights, grads);
        times[s] = cb_clock_s() - t0;
        double cpu = cpu_s() - c0;
        long faults = minor_faults() - f0;
        if (s >= warmup) {
            cpu_sum += cpu;
            faults_sum += faults;
        }
        printf("  step %d%s: %.1f ms (CPU %.1f ms), %ld page faults, loss %.4f\n", s,
               s < warmup ? " (warm-up)" : "", times[s] * 1e3, cpu * 1e3, faults, loss);
        fflush(stdout);
    }
    double load1 = loadavg();
    if (do_gemm) {
        peak_after = gemm_probe_run(&probe, gemm_reps, 0);
        printf("sgemm after the steps: best %.1f GFLOP/s\n", peak_after);
        if (peak_after > peak) peak = peak_after;
        printf("sgemm peak: %.1f GFLOP/s\n", peak);
    }
    double *timed = times + warmup;
    double lo = timed[0], hi = timed[0];
    for (int s = 1; s < steps; s++) {
        lo = timed[s] < lo ? timed[s] : lo;
        hi = timed[s] > hi ? timed[s] : hi;
    }
    double med = median(timed, steps);
    double tokens_per_step = (double)B * T;
    /* PaLM / llm.c: 6 N + 12 L T d per token; N = non-embedding params, LM head included */
    double flops_per_token = 6.0 * (double)params_nonemb + 12.0 * (double)n_layers * T * prog.d_model;
    double step_flops = flops_per_token * tokens_per_step;
    printf("load average (1 min) before the steps %.2f, after %.2f\n", load0, load1);
    printf("step (forward + backward + zeroing grads): median %.1f ms over %d steps (min %.1f, max %.1f), "
           "%d warm-up excluded; CPU time %.2f x wall; %ld page faults per step\n",
           med * 1e3, steps, lo * 1e3, hi * 1e3, warmup, cpu_sum / steps / med, faults_sum / steps);
    printf("tokens/s: %.1f (best step: %.1f)\n", tokens_per_step / med, tokens_per_step / lo);
    printf("model FLOPs per token: 6*N + 12*L*T*d = 6*%lld + 12*%lld*%d*%d = %.4g; per step %.4g\n",
           params_nonemb, n_layers, T, prog.d_model, flops_per_token, step_flops);
    printf("achieved: %.1f GFLOP/s (best step %.1f)", step_flops / med * 1e-9, step_flops / lo * 1e-9);
    if (peak > 0)
        printf(" = %.3f of sgemm peak %.1f GFLOP/s (best step %.3f)", step_flops / med * 1e-9 / peak, peak,
               step_flops / lo * 1e-9 / peak);
    printf("\n");

    if (do_breakdown && !breakdown_supported(&prog)) {
        printf("breakdown: skipped (the model has op kinds beyond embedding, rmsnorm, attention, swiglu, "
               "linear, add)\n");
    } else if (do_breakdown) {
        /* one more step, op by op, with a clock around each */
        breakdown bd;
        memset(&bd, 0, sizeof bd);
        int reps = steps < 3 ? steps : 3;
        float tloss = 0;
        for (int s = 0; s < reps; s++)
            tloss = timed_step(&r, &prog, m.weights, grads, n_grads, inputs, targets, &bd);
        double fl[K_COUNT];
        forward_flops(&prog, fl);
        double sum = 0;
        for (int k = 0; k < K_COUNT; k++) sum += bd.fwd[k] + bd.bwd[k];
        printf("breakdown (mean of %d op-by-op steps, loss %.4f %s the timed steps'; step total %.1f ms):\n",
               reps, tloss, tloss == loss ? "equal to" : "DIFFERS from", sum / reps * 1e3);
        printf("  %-14s %9s %9s %9s %6s %9s\n", "kind", "fwd ms", "bwd ms", "total ms", "share", "GFLOP/s");
        for (int k = 0; k < K_COUNT; k++) {
            double f = bd.fwd[k] / reps, b = bd.bwd[k] / reps;
            printf("  %-14s %9.1f %9.1f %9.1f %5.1f%%", kind_names[k], f * 1e3, b * 1e3, (f + b) * 1e3,
                   100 * (f + b) * reps / sum);
            if (fl[k] > 0) printf(" %9.1f", 3 * fl[k] / (f + b) * 1e-9);
            printf("\n");
        }
    }
    if (do_gemm) gemm_probe_free(&probe);
    free(times);
    free(inputs);
    free(tokens);
    free(targets);
    free(grads);
    cb_run_free(&r);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
    if (fclose(stdout) != 0) {
        perror("cpu_step: stdout");
        return 2;
    }
    return 0;
}
