/* cuda_step.c: times whole training steps (zero the gradients, forward, backward, clip,
 * AdamW) of the model of a manifest (bench/llama110m.yml by default) on the CUDA backend,
 * in float32, and prints tokens/s, model FLOPs per second (6 N + 12 L T d per token, as
 * bench/cpu_step.c and llm.c count them) and that as a fraction of the H100's dense bf16
 * peak (989 TFLOP/s, the MFU) and of its float32 peak without tensor cores
 * (67 TFLOP/s); then one step op by op, each op waited for, summed by op kind: where the
 * time goes. bench/cuda_step.sh runs it beside PyTorch in the same call.
 * -x: the products in TF32 on the tensor cores instead (cb_backend_cuda_set_tf32).
 * -a: mixed precision (train.amp, cb_backend_cuda_set_amp): bf16 products with float32
 *   sums and float32 master weights.
 *   build/rel/bench/cuda_step [-m manifest] [-b batch] [-t seq] [-n steps] [-w warmup] [-x] [-a] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/pass.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/diag.h"
#include "core/rng.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "model/run.h"
#include "plan/validate.h"
#include "train/optimizer.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#define PEAK_BF16 989e12
#define PEAK_FP32 67e12

static json_t *compile_manifest(const char *path) {
    char *text = NULL;
    size_t len = 0;
    cb_error e;
    if (cb_read_file(path, 1 << 20, &text, &len, &e) != CB_OK) {
        fprintf(stderr, "cuda_step: %s: %s\n", path, e.msg);
        return NULL;
    }
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    if (cb_yaml_parse(text, len, path, &manifest, &e) != CB_OK) {
        fprintf(stderr, "cuda_step: %s: %s\n", e.where, e.msg);
        free(text);
        return NULL;
    }
    free(text);
    cb_diags d;
    cb_diags_init(&d);
    if (cb_lower(manifest, &lowered, &d) != CB_OK || cb_validate(lowered, &plan, &d) != CB_OK) {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "cuda_step: %s: %s\n", d.items[i].where, d.items[i].msg);
        plan = NULL;
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    return plan;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *const kind_names[] = {"embed", "rmsnorm", "layernorm", "attention", "swiglu", "mlp", "linear",
                                         "dropout", "rope", "add", "combine", "concat", "head"};
#define N_KINDS 13

typedef struct bench {
    cb_backend *be;
    cb_program prog;
    cb_run run;
    cb_optimizer opt;
    float *w, *g, *m, *v;
    int32_t *tok;
    size_t nw;
} bench;

/* One training step; the loss (the host waits for it, as the trainer does every step). */
static float step(bench *b) {
    cb_backend *be = b->be;
    be->zero(be, b->g, b->nw * sizeof(float));
    const size_t N = (size_t)b->prog.B * b->prog.T;
    float loss = cb_run_step(&b->run, &b->prog, b->w, b->g, b->tok, b->tok + N);
    be->grad_clip(be, b->g, b->nw, 1.0);
    be->optimizer_step(be, &b->opt, b->w, b->g, b->m, b->v, 3e-4);
    return loss;
}

/* One step op by op, each waited for: seconds by op kind, forward and backward. */
static void breakdown(bench *b, double *fwd, double *bwd, double *rest) {
    cb_backend *be = b->be;
    cb_error e;
    const cb_program *prog = &b->prog;
    const size_t N = (size_t)prog->B * prog->T;
    cb_pass p;
    memset(&p, 0, sizeof p);
    p.prog = prog;
    p.B = prog->B;
    p.T = prog->T;
    p.training = 1;
    p.weights = b->w;
    p.grads = b->g;
    p.slots = b->run.slots;
    p.dslots = b->run.dslots;
    p.saved = b->run.saved;
    p.scratch = b->run.scratch;
    p.rope = b->run.rope;
    p.lse = b->run.lse;
    p.losses = b->run.losses;
    p.tokens = b->tok;
    p.targets = b->tok + N;
    p.head_chunk = b->run.head_chunk;
    /* a fused head (backend.h head_loss): the head's forward, the loss and the head's
       backward in one, timed as the loss; the gradient arena ends below the logits */
    const int fused = p.head_chunk > 0, n_fwd = fused ? prog->n_ops - 1 : prog->n_ops;
    const size_t dslot_elems = fused ? prog->slots[prog->logits_slot].offset : prog->slot_elems;
    be->synchronize(be, &e);
    double t0 = cb_clock_s();
    be->zero(be, b->g, b->nw * sizeof(float));
    for (int i = 0; i < n_fwd; i++) {
        double t = cb_clock_s();
        be->op_forward(be, &p, i, &e);
        be->synchronize(be, &e);
        fwd[prog->ops[i].kind] += cb_clock_s() - t;
    }
    double t = cb_clock_s();
    be->zero(be, p.dslots, dslot_elems * sizeof(float));
    if (fused) {
        be->head_loss(be, &p, p.head_chunk);
    } else {
        be->loss_forward(be, &p);
        be->loss_backward(be, &p);
    }
    be->synchronize(be, &e);
    rest[0] = cb_clock_s() - t;
    for (int i = n_fwd - 1; i >= 0; i--) {
        t = cb_clock_s();
        be->op_backward(be, &p, i);
        be->synchronize(be, &e);
        bwd[prog->ops[i].kind] += cb_clock_s() - t;
    }
    t = cb_clock_s();
    be->grad_clip(be, b->g, b->nw, 1.0);
    be->optimizer_step(be, &b->opt, b->w, b->g, b->m, b->v, 3e-4);
    be->synchronize(be, &e);
    rest[1] = cb_clock_s() - t;
    rest[2] = cb_clock_s() - t0;
}

int main(int argc, char **argv) {
    const char *manifest = "bench/llama110m.yml";
    int B = 16, T = 1024, steps = 10, warmup = 3, tf32 = 0, amp = 0;
    int ch;
    while ((ch = getopt(argc, argv, "m:b:t:n:w:xah")) != -1) {
        switch (ch) {
        case 'm': manifest = optarg; break;
        case 'b': B = atoi(optarg); break;
        case 't': T = atoi(optarg); break;
        case 'n': steps = atoi(optarg); break;
        case 'w': warmup = atoi(optarg); break;
        case 'x': tf32 = 1; break;
        case 'a': amp = 1; break;
        default:
            printf("usage: cuda_step [-m manifest] [-b batch] [-t seq] [-n steps] [-w warmup] [-x] [-a]\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (B < 1 || T < 1 || steps < 1 || warmup < 0) {
        fprintf(stderr, "cuda_step: -b, -t, -n must be positive\n");
        return 2;
    }
    bench b;
    memset(&b, 0, sizeof b);
    cb_error e;
    if (cb_backend_open("cuda", &b.be, &e) != CB_OK) {
        fprintf(stderr, "cuda_step: %s\n", e.msg);
        return 2;
    }
#ifdef CB_HAVE_CUDA
    cb_backend_cuda_set_tf32(tf32);
    cb_backend_cuda_set_amp(amp);
#else
    if (amp) {
        fprintf(stderr, "cuda_step: -a: this build has no CUDA backend\n");
        return 2;
    }
#endif
    json_t *plan = compile_manifest(manifest);
    if (!plan) return 2;
    cb_model m;
    if (cb_model_init(&m, plan, 1, &e) != CB_OK || cb_program_init(&b.prog, plan, &m.params, B, T, &e) != CB_OK ||
        cb_run_init_fused(&b.run, b.be, &b.prog, 0, &e) != CB_OK) { /* as the trainer's run */
        fprintf(stderr, "cuda_step: %s: %s\n", e.where, e.msg);
        return 4;
    }
    cb_optimizer_config oc = {.kind = CB_OPT_ADAMW, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
    if (cb_optimizer_init(&b.opt, &oc, &m.params, &e) != CB_OK) {
        fprintf(stderr, "cuda_step: %s\n", e.msg);
        return 4;
    }
    cb_backend *be = b.be;
    b.nw = m.params.total_floats;
    const size_t N = (size_t)B * T, bytes = b.nw * sizeof(float);
    b.w = be->alloc(be, bytes, &e);
    b.g = b.w ? be->alloc(be, bytes, &e) : NULL;
    b.m = b.g ? be->alloc(be, bytes, &e) : NULL;
    b.v = b.m ? be->alloc(be, bytes, &e) : NULL;
    b.tok = b.v ? be->alloc(be, 2 * N * sizeof(int32_t), &e) : NULL;
    if (!b.tok) {
        fprintf(stderr, "cuda_step: %s\n", e.msg);
        return 4;
    }
    int32_t *host_tok = malloc(2 * N * sizeof *host_tok);
    cb_rng rng;
    cb_rng_init(&rng, 3);
    for (size_t i = 0; i < 2 * N; i++) host_tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)b.prog.vocab_size);
    be->upload(be, b.w, m.weights, bytes, &e);
    be->upload(be, b.tok, host_tok, 2 * N * sizeof(int32_t), &e);
    free(host_tok);

    double *times = calloc((size_t)steps, sizeof *times);
    float first = 0, last = 0;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = cb_clock_s();
        last = step(&b);
        if (be->synchronize(be, &e) != CB_OK) {
            fprintf(stderr, "cuda_step: %s: %s\n", e.where, e.msg);
            return 4;
        }
        if (s == 0) first = last;
        if (s >= warmup) times[s - warmup] = cb_clock_s() - t0;
    }
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double med = times[steps / 2];
    size_t nonemb = 0;
    int n_layers = 0;
    for (int i = 0; i < m.params.n; i++)
        if (strncmp(m.params.items[i].name, "embed.", 6) != 0) nonemb += m.params.items[i].numel;
    for (int i = 0; i < b.prog.n_ops; i++) n_layers += b.prog.ops[i].kind == CB_OP_ATTENTION;
    double flops_tok = 6.0 * (double)nonemb + 12.0 * n_layers * T * b.prog.d_model;
    double flops = flops_tok * (double)N / med;
    printf("model: %s, B %d, T %d, %zu parameters (%zu besides the token embedding), %d attention layers\n",
           manifest, B, T, b.nw, nonemb, n_layers);
    printf("loss: step 1 %.4f, step %d %.4f (random tokens; AdamW lr 3e-4)\n", first, warmup + steps, last);
    printf("step (zero, forward, backward, clip, AdamW; %s): median %.1f ms over %d steps (min %.1f, max %.1f), "
           "%d warm-up excluded\n", amp    ? "amp: bf16 products, float32 sums and weights"
           : tf32 ? "float32, products in TF32"
                  : "float32", med * 1e3, steps, times[0] * 1e3, times[steps - 1] * 1e3, warmup);
    printf("tokens/s: %.0f\n", (double)N / med);
#ifdef CB_HAVE_CUDA
    {
        int f = cb_backend_cuda_fuse();
        printf("fused paths (CB_CUDA_FUSE): swiglu %s (amp only), addnorm %s, head %s (%d rows a chunk)\n",
               f & CB_CUDA_FUSE_SWIGLU ? "on" : "off", f & CB_CUDA_FUSE_ADDNORM ? "on" : "off",
               b.run.head_chunk ? "on" : "off", b.run.head_chunk);
    }
#endif
    printf("model FLOP/s: %.1f TFLOP/s = MFU %.3f of 989 (bf16 dense), %.3f of 67 (fp32)\n", flops * 1e-12,
           flops / PEAK_BF16, flops / PEAK_FP32);

    double fwd[N_KINDS] = {0}, bwd[N_KINDS] = {0}, rest[3] = {0};
    breakdown(&b, fwd, bwd, rest);
    printf("one step op by op (each op waited for): %.1f ms\n", rest[2] * 1e3);
    for (int k = 0; k < N_KINDS; k++)
        if (fwd[k] > 0 || bwd[k] > 0)
            printf("  %-10s forward %8.2f ms  backward %8.2f ms\n", kind_names[k], fwd[k] * 1e3, bwd[k] * 1e3);
    printf("  %-10s %8.2f ms\n  %-10s %8.2f ms\n", "loss", rest[0] * 1e3, "clip+adamw", rest[1] * 1e3);

    be->free(be, b.w);
    be->free(be, b.g);
    be->free(be, b.m);
    be->free(be, b.v);
    be->free(be, b.tok);
    cb_run_free(&b.run);
    cb_optimizer_free(&b.opt);
    cb_program_free(&b.prog);
    cb_model_free(&m);
    json_decref(plan);
    free(times);
    return 0;
}
