/* attention_cuda.c: times the attention core of the mixed-precision path alone
 * (kernels/flash_attention.cu: forward, backward, and forward + backward) on random float32
 * inputs in the projections' layouts, for causal standard attention, GQA and DBA of the
 * same total query-key width, at the shapes of the T1 model: T 1024 with B 16,
 * T 4096 with B 4, H 12, head widths 64 and 128. Prints one line per case:
 *   case NAME fwd_ms F bwd_ms B total_ms S tflops X
 * with X the model FLOPs of the causal core (forward 2 B H T^2 (dqk + dv) / 2, backward
 * 2.5 times that, as FlashAttention counts them) per second of forward + backward.
 * bench/attention_cuda.sh runs it beside PyTorch's SDPA in the same call.
 * -l 1 runs the forward up to width 128 as 8 warps of one m-tile instead of 4 warps of two
 * (cbk_flash_forward_layout), to compare the two.
 *   build/rel/bench/attention_cuda [-n iterations] [-w warmup] [-l layout] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/clock.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "backend/cuda/kernels.h"
#endif

#ifdef CB_HAVE_CUDA
typedef struct bcase {
    const char *name;
    int B, T, H, Hkv, ds, dr, dv, gated;
} bcase;

static float *rand_dev(cb_backend *be, size_t n, float scale, unsigned long long *st) {
    cb_error e;
    float *h = malloc((n ? n : 1) * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        *st ^= *st << 13;
        *st ^= *st >> 7;
        *st ^= *st << 17;
        h[i] = scale * (float)((double)(*st >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    float *d = n ? be->alloc(be, n * sizeof *d, &e) : NULL;
    if (n && !d) {
        fprintf(stderr, "attention_cuda: %s\n", e.msg);
        exit(1);
    }
    if (d) be->upload(be, d, h, n * sizeof *d, &e);
    free(h);
    return d;
}

static float *zeros_dev(cb_backend *be, size_t n) {
    cb_error e;
    float *d = n ? be->alloc(be, n * sizeof *d, &e) : NULL;
    if (n && !d) {
        fprintf(stderr, "attention_cuda: %s\n", e.msg);
        exit(1);
    }
    return d;
}

static void run(cb_backend *be, const bcase *c, int iters, int warmup) {
    unsigned long long st = 88172645463325252ull;
    const size_t N = (size_t)c->B * c->T;
    cbk_flash_args f = {c->B, c->T, c->H, c->Hkv, 1, c->ds, c->dr, c->dv, NULL, NULL, NULL, NULL, NULL, NULL};
    f.q_sem = rand_dev(be, N * c->H * c->ds, 1.0f, &st);
    f.q = rand_dev(be, N * c->H * c->dr, 1.0f, &st);
    f.k_sem = rand_dev(be, N * c->Hkv * c->ds, 1.0f, &st);
    f.k = rand_dev(be, N * c->Hkv * c->dr, 1.0f, &st);
    f.v = rand_dev(be, N * c->Hkv * c->dv, 1.0f, &st);
    float *gate = c->gated ? rand_dev(be, N * c->H, 0.4f, &st) : NULL; /* its values do not change the time */
    f.gate = gate;
    float *dout = rand_dev(be, N * c->H * c->dv, 1.0f, &st);
    float *out = zeros_dev(be, N * c->H * c->dv), *lse = zeros_dev(be, N * c->H);
    float *work = zeros_dev(be, cbk_flash_backward_work(&f));
    float *dqs = zeros_dev(be, N * c->H * c->ds), *dq = zeros_dev(be, N * c->H * c->dr);
    float *dks = zeros_dev(be, N * c->Hkv * c->ds), *dk = zeros_dev(be, N * c->Hkv * c->dr);
    float *dv = zeros_dev(be, N * c->Hkv * c->dv), *dz = c->gated ? zeros_dev(be, N * c->H) : NULL;
    cb_error e;
    double tf = 0, tb = 0;
    for (int it = -warmup; it < iters; it++) {
        be->synchronize(be, &e);
        double t0 = cb_clock_s();
        cbk_flash_forward(out, lse, work, &f);
        be->synchronize(be, &e);
        double t1 = cb_clock_s();
        cbk_flash_backward(dqs, dq, dks, dk, dv, dz, work, dout, out, lse, &f);
        be->synchronize(be, &e);
        double t2 = cb_clock_s();
        if (it >= 0) {
            tf += t1 - t0;
            tb += t2 - t1;
        }
    }
    const char *le = cbk_last_error();
    if (le || be->synchronize(be, &e) != CB_OK) {
        fprintf(stderr, "attention_cuda: %s: %s\n", c->name, le ? le : e.msg);
        exit(1);
    }
    tf /= iters;
    tb /= iters;
    const double fwd_flops = 2.0 * c->B * c->H * (double)c->T * c->T * (c->ds + c->dr + c->dv) / 2;
    printf("case %s fwd_ms %.3f bwd_ms %.3f total_ms %.3f tflops %.1f\n", c->name, 1e3 * tf, 1e3 * tb,
           1e3 * (tf + tb), 3.5 * fwd_flops / (tf + tb) / 1e12);
    fflush(stdout);
    float *bufs[] = {(float *)f.q_sem, (float *)f.q, (float *)f.k_sem, (float *)f.k, (float *)f.v, gate, dout,
                     out, lse, work, dqs, dq, dks, dk, dv, dz};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be->free(be, bufs[i]);
}
#endif

int main(int argc, char **argv) {
    int iters = 10, warmup = 2, layout = 0, opt;
    while ((opt = getopt(argc, argv, "n:w:l:")) != -1) {
        if (opt == 'n') iters = atoi(optarg);
        else if (opt == 'w') warmup = atoi(optarg);
        else if (opt == 'l') layout = atoi(optarg);
        else {
            fprintf(stderr, "usage: attention_cuda [-n iterations] [-w warmup] [-l layout]\n");
            return 2;
        }
    }
#ifndef CB_HAVE_CUDA
    (void)iters;
    (void)warmup;
    (void)layout;
    fprintf(stderr, "attention_cuda: this build has no cuda backend (no nvcc)\n");
    return 1;
#else
    cb_backend *be = cb_backend_cuda();
    if (!be) {
        fprintf(stderr, "attention_cuda: %s\n", cb_backend_cuda_absent());
        return 1;
    }
    if (iters < 1) iters = 1;
    cbk_flash_forward_layout(layout);
    /* name, B, T, H, Hkv, ds, dr, dv, gated: DBA's sem + geo is the standard head width
     * (bench/llama110m_dba.yml's 16 + 48 per head at 64) */
    static const bcase cases[] = {
        {"std_d64_T1024", 16, 1024, 12, 12, 0, 64, 64, 0},   {"gqa4_d64_T1024", 16, 1024, 12, 4, 0, 64, 64, 0},
        {"dba_d64_T1024", 16, 1024, 12, 12, 16, 48, 64, 1},  {"std_d128_T1024", 16, 1024, 12, 12, 0, 128, 128, 0},
        {"dba_d128_T1024", 16, 1024, 12, 12, 32, 96, 128, 1}, {"std_d64_T4096", 4, 4096, 12, 12, 0, 64, 64, 0},
        {"dba_d64_T4096", 4, 4096, 12, 12, 16, 48, 64, 1},   {"std_d128_T4096", 4, 4096, 12, 12, 0, 128, 128, 0},
        {"dba_d128_T4096", 4, 4096, 12, 12, 32, 96, 128, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run(be, &cases[i], iters, warmup);
    return 0;
#endif
}
