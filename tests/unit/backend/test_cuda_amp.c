/* test_cuda_amp.c: the CUDA backend's mixed precision (train.amp, backend/cuda/blas.c)
 * against the truth. Products first: every transpose of cb_cuda_gemm, and a linear
 * layer's forward and backward (bias, accumulated gradients, weights from their bf16
 * shadow or converted on the way, row blocks when the bf16 scratch is short), against
 * double-precision products of the same float inputs. The bound, per element:
 *   |C_gpu - C| <= (2^-8 + 2^-16 + K 2^-22) S,   S = sum_k |a_ik| |b_kj| + |beta C0_ij|
 * because each bf16 operand is the float rounded to nearest (relative error <= u = 2^-9),
 * so each product a b is off by at most 2u + u^2 < 2^-8 + 2^-16 of |a b|, and those
 * products (exact in float32: 8 + 8 significant bits) are summed in float32 (K additions,
 * each <= 2^-24 of a partial sum, doubled for the tensor cores' truncating alignment).
 * And the same products against double products of the bf16-rounded inputs within the
 * summation's share alone (2^-16 + K 2^-22) S: that holds only when the operands were
 * rounded to nearest bf16, so it also shows the products did run in bf16.
 * Then whole models (Llama: attention's projections, SwiGLU, the head) forward and
 * backward under amp against the CPU's float32: a chain of products each within the
 * bound above, held to a few products' worth of it (AMP_FWD_TOL, AMP_BWD_TOL); and the
 * bf16 shadow follows a write of the weights, and the optimizer step writes it exactly
 * (the new weights rounded to bf16). Skips where there is no GPU. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "train/optimizer.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "backend/cuda/internal.h"
#include "backend/cuda/kernels.h"
#endif

/* Whole models under amp, max |gpu - cpu| over max |cpu| per op output and per gradient:
 * the per-product bound is 2^-8 of S; a forward output sits behind up to four products
 * of a block (q/k/v, scores, values, o; gate/up, down) and the backward behind twice as
 * many, each adding its share: 4 and 16 products' worth. */
#define AMP_FWD_TOL (4.0 / 256)
#define AMP_BWD_TOL (16.0 / 256)
/* ... and the amp outputs must differ from float32 somewhere by more than float32's own
 * noise (test_cuda.c holds float32 to 2e-5): proof the bf16 path ran */
#define AMP_MIN_DIFF 1e-4

#ifdef CB_HAVE_CUDA
static unsigned long long seed = 0x5eedf00dULL;


/* float rounded to the nearest bf16 (ties to even), as __float2bfloat16_rn */
static float bf16r(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static float *rnd(size_t n, float scale) {
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = scale * cb_test_urandf(&seed);
    return x;
}

static float *to_dev(cb_backend *be, const float *h, size_t n) {
    cb_error e;
    float *d = be->alloc(be, n * sizeof *d, &e);
    if (d && be->upload(be, d, h, n * sizeof *d, &e) != CB_OK) {
        be->free(be, d);
        return NULL;
    }
    return d;
}

static float *from_dev(cb_backend *be, const float *d, size_t n) {
    cb_error e;
    float *h = malloc(n * sizeof *h);
    if (be->download(be, h, d, n * sizeof *h, &e) != CB_OK) {
        free(h);
        return NULL;
    }
    return h;
}

/* Row-major reference in double: C (M,N) = op(A) op(B) + beta C0, with S the sums of
 * magnitudes; round: the operands rounded to bf16 first. */
static void ref_gemm(double *C, double *S, int ta, int tb, int M, int N, int K, const float *A, int lda,
                     const float *B, int ldb, float beta, const float *C0, int ldc, int round) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                float b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                if (round) a = bf16r(a), b = bf16r(b);
                s += (double)a * b;
                m += fabs((double)a * b);
            }
            if (beta != 0) {
                s += (double)beta * C0[(size_t)i * ldc + j];
                m += fabs((double)beta * C0[(size_t)i * ldc + j]);
            }
            C[(size_t)i * N + j] = s;
            S[(size_t)i * N + j] = m;
        }
}

static double bound_bf16(int K) { return ldexp(1, -8) + ldexp(1, -16) + K * ldexp(1, -22); }
static double bound_sum(int K) { return ldexp(1, -16) + K * ldexp(1, -22); }

/* max over elements of |got - want| / S; NaN anywhere gives NaN */
static double rel_err(const float *got, int ldg, const double *want, const double *S, int M, int N) {
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double d = fabs((double)got[(size_t)i * ldg + j] - want[(size_t)i * N + j]);
            double s = S[(size_t)i * N + j];
            double r = s > 0 ? d / s : d;
            if (isnan(r)) return NAN;
            if (r > worst) worst = r;
        }
    return worst;
}

/* got against both references of one product */
static void check_product(const char *what, const float *got, int ldg, int ta, int tb, int M, int N, int K,
                          const float *A, int lda, const float *B, int ldb, float beta, const float *C0, int ldc) {
    double *C = malloc((size_t)M * N * sizeof *C), *S = malloc((size_t)M * N * sizeof *S);
    ref_gemm(C, S, ta, tb, M, N, K, A, lda, B, ldb, beta, C0, ldc, 0);
    double e = rel_err(got, ldg, C, S, M, N);
    ref_gemm(C, S, ta, tb, M, N, K, A, lda, B, ldb, beta, C0, ldc, 1);
    double er = rel_err(got, ldg, C, S, M, N);
    char label[200];
    snprintf(label, sizeof label, "%s (exact inputs)", what);
    REPORT_DIFF(label, e, bound_bf16(K));
    snprintf(label, sizeof label, "%s (bf16 inputs)", what);
    REPORT_DIFF(label, er, bound_sum(K));
    if (!(e <= bound_bf16(K))) FAILF("%s: error %.3g of S over the bf16 bound %.3g", what, e, bound_bf16(K));
    if (!(er <= bound_sum(K)))
        FAILF("%s: error %.3g of S against the bf16-rounded inputs, over the summation's %.3g", what, er,
              bound_sum(K));
    free(C);
    free(S);
}

/* One cb_cuda_gemm under amp: A and B activations (converted into h16), or B inside a
 * weights buffer with a shadow. */
static void one_gemm(cb_backend *be, int ta, int tb, int M, int N, int K, float beta, int shadowed) {
    cuda_ctx *c = be->ctx;
    cb_error e;
    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2; /* leading dimensions past the widths */
    size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
    float *A = rnd(na, 1.0f), *B = rnd(nb, 0.5f), *C0 = rnd(nc, 2.0f);
    float *dA = to_dev(be, A, na), *dC = to_dev(be, C0, nc);
    /* a weights buffer: 40 floats of something else, then B */
    float *wbuf = calloc(nb + 40, sizeof *wbuf);
    memcpy(wbuf + 40, B, nb * sizeof *B);
    float *dW = to_dev(be, wbuf, nb + 40), *dB = dW + 40;
    if (!dA || !dC || !dW) {
        FAILF("device buffers: out of memory");
        goto done;
    }
    if (shadowed) {
        EXPECT(cb_cuda_shadow_weights(c, dW, &e) == CB_OK);
        EXPECT(cb_cuda_shadow_of(c, dB, nb) != NULL);
    } else
        EXPECT(cb_cuda_shadow_of(c, dB, nb) == NULL);
    cb_cuda_gemm(c, ta, tb, M, N, K, 1.0f, dA, lda, dB, ldb, beta, dC, ldc);
    float *got = from_dev(be, dC, nc);
    if (be->synchronize(be, &e) != CB_OK || !got) {
        FAILF("gemm: %s", e.msg);
        free(got);
        goto done;
    }
    char what[160];
    snprintf(what, sizeof what, "gemm %c%c %dx%dx%d beta %g%s", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, beta,
             shadowed ? ", B from the shadow" : "");
    check_product(what, got, ldc, ta, tb, M, N, K, A, lda, B, ldb, beta, C0, ldc);
    free(got);
    if (shadowed) {
        /* a write to the weights: the shadow is stale until the next pass makes it again,
         * and products read the new values either way */
        for (size_t i = 0; i < nb; i++) wbuf[40 + i] = B[i] = -0.75f * B[i] + 0.125f;
        be->upload(be, dW, wbuf, (nb + 40) * sizeof *wbuf, &e);
        EXPECT(cb_cuda_shadow_of(c, dB, nb) == NULL);
        for (int pass = 0; pass < 2; pass++) {
            if (pass == 1) {
                EXPECT(cb_cuda_shadow_weights(c, dW, &e) == CB_OK);
                EXPECT(cb_cuda_shadow_of(c, dB, nb) != NULL);
            }
            be->upload(be, dC, C0, nc * sizeof *C0, &e);
            cb_cuda_gemm(c, ta, tb, M, N, K, 1.0f, dA, lda, dB, ldb, beta, dC, ldc);
            got = from_dev(be, dC, nc);
            if (be->synchronize(be, &e) != CB_OK || !got) {
                FAILF("gemm: %s", e.msg);
                free(got);
                goto done;
            }
            snprintf(what, sizeof what, "gemm %c%c after a write of B, %s", ta ? 'T' : 'N', tb ? 'T' : 'N',
                     pass ? "shadow made again" : "shadow stale");
            check_product(what, got, ldc, ta, tb, M, N, K, A, lda, B, ldb, beta, C0, ldc);
            free(got);
        }
    }
done:
    be->free(be, dA);
    be->free(be, dC);
    be->free(be, dW);
    free(A);
    free(B);
    free(C0);
    free(wbuf);
}

TEST(cuda_amp_gemm) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_error e;
    cuda_ctx *c = be->ctx;
    if (cb_cuda_reserve_h16(c, (size_t)1 << 22, &e) != CB_OK) {
        FAILF("%s", e.msg);
        return;
    }
    cb_backend_cuda_set_amp(1);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            one_gemm(be, ta, tb, 37, 53, 64, 0.0f, 0);
            one_gemm(be, ta, tb, 19, 130, 300, 1.0f, tb);
            one_gemm(be, ta, tb, 64, 31, 1000, 1.0f, !tb);
        }
    cb_backend_cuda_set_amp(0);
}

/* A linear layer's forward and backward under amp: out = in w^T + b; din += dy w,
 * dw += dy^T in, db += column sums of dy; h16_rows > 0: h16 made to hold about that many
 * rows, so the products run in row blocks. */
static void one_linear(cb_backend *be, int N, int IC, int OC, int shadowed, int h16_rows) {
    cuda_ctx *c = be->ctx;
    cb_error e;
    size_t nw = (size_t)OC * IC;
    float *in = rnd((size_t)N * IC, 1.0f), *dy = rnd((size_t)N * OC, 1.0f), *wb = rnd(nw + OC, 0.25f);
    float *din0 = rnd((size_t)N * IC, 1.0f), *dw0 = rnd(nw, 1.0f), *db0 = rnd(OC, 1.0f);
    float *w = wb, *b = wb + nw;
    float *d_in = to_dev(be, in, (size_t)N * IC), *d_dy = to_dev(be, dy, (size_t)N * OC), *d_wb = to_dev(be, wb, nw + OC);
    float *d_out = to_dev(be, dy, (size_t)N * OC), *d_din = to_dev(be, din0, (size_t)N * IC);
    float *d_dw = to_dev(be, dw0, nw), *d_db = to_dev(be, db0, OC);
    float *got = NULL, *gdin = NULL, *gdw = NULL, *gdb = NULL;
    size_t keep = c->h16_elems;
    if (!d_in || !d_dy || !d_wb || !d_out || !d_din || !d_dw || !d_db) {
        FAILF("device buffers: out of memory");
        goto done;
    }
    if (shadowed) EXPECT(cb_cuda_shadow_weights(c, d_wb, &e) == CB_OK);
    if (h16_rows) c->h16_elems = (size_t)h16_rows * (IC + OC) + (shadowed ? 0 : nw + 8) + 16;
    cb_cuda_linear_forward(c, d_out, d_in, d_wb, d_wb + nw, N, IC, OC);
    cb_cuda_linear_backward(c, d_din, d_dw, d_db, d_dy, d_in, d_wb, N, IC, OC);
    c->h16_elems = keep;
    got = from_dev(be, d_out, (size_t)N * OC);
    gdin = from_dev(be, d_din, (size_t)N * IC);
    gdw = from_dev(be, d_dw, nw);
    gdb = from_dev(be, d_db, OC);
    if (be->synchronize(be, &e) != CB_OK || !got || !gdin || !gdw || !gdb) {
        FAILF("linear: %s", e.msg);
        goto done;
    }
    char what[160], tag[80];
    snprintf(tag, sizeof tag, "%dx%d->%d%s%s", N, IC, OC, shadowed ? ", shadow" : ", converted w",
             h16_rows ? ", row blocks" : "");
    float *bias_rows = malloc((size_t)N * OC * sizeof *bias_rows);
    for (int i = 0; i < N; i++) memcpy(bias_rows + (size_t)i * OC, b, OC * sizeof *b);
    snprintf(what, sizeof what, "linear forward %s", tag);
    check_product(what, got, OC, 0, 1, N, OC, IC, in, IC, w, IC, 1.0f, bias_rows, OC);
    snprintf(what, sizeof what, "linear din %s", tag);
    check_product(what, gdin, IC, 0, 0, N, IC, OC, dy, OC, w, IC, 1.0f, din0, IC);
    snprintf(what, sizeof what, "linear dw %s", tag);
    check_product(what, gdw, IC, 1, 0, OC, IC, N, dy, OC, in, IC, 1.0f, dw0, IC);
    free(bias_rows);
    /* db: float32 column sums, as without amp */
    double worst = 0;
    for (int j = 0; j < OC; j++) {
        double s = db0[j], m = fabs(db0[j]);
        for (int i = 0; i < N; i++) s += dy[(size_t)i * OC + j], m += fabs(dy[(size_t)i * OC + j]);
        double r = fabs(gdb[j] - s) / m;
        worst = r > worst || isnan(r) ? r : worst;
    }
    snprintf(what, sizeof what, "linear db %s", tag);
    REPORT_DIFF(what, worst, N * ldexp(1, -23));
    if (!(worst <= N * ldexp(1, -23))) FAILF("%s: %.3g", what, worst);
done:
    free(got);
    free(gdin);
    free(gdw);
    free(gdb);
    float *devs[] = {d_in, d_dy, d_wb, d_out, d_din, d_dw, d_db};
    for (int i = 0; i < 7; i++) be->free(be, devs[i]);
    free(in);
    free(dy);
    free(wb);
    free(din0);
    free(dw0);
    free(db0);
}

TEST(cuda_amp_linear) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_error e;
    if (cb_cuda_reserve_h16(be->ctx, (size_t)1 << 22, &e) != CB_OK ||
        cb_cuda_reserve(be->ctx, 0, cbk_colsum_work(300, 160), &e) != CB_OK) { /* red: db's partial sums */
        FAILF("%s", e.msg);
        return;
    }
    cb_backend_cuda_set_amp(1);
    one_linear(be, 300, 96, 160, 1, 0);
    one_linear(be, 300, 96, 160, 0, 0);
    one_linear(be, 300, 96, 160, 1, 37);
    one_linear(be, 257, 72, 40, 0, 50);
    cb_backend_cuda_set_amp(0);
}

static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}
/* max |a - b| / max(max |a|, floor); NaN anywhere gives NaN */
static double norm_err(const float *a, const float *b, size_t n, double floor) {
    double d = 0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (isnan(x)) return NAN;
        d = x > d ? x : d;
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    }
    return m > 0 ? d / m : d;
}

/* The model of yaml at (B,T) forward and backward under amp on the GPU against float32
 * on the CPU; then the weights scaled by 0.75 and written to the device again, and the
 * forward once more (the shadow must follow). first non-NULL: the first round's GPU slots
 * (prog.slot_elems, malloc'd) handed back there. */
static void compare_model_amp(cb_backend *be, const char *what, const char *yaml, int B, int T, float **first) {
    json_t *plan = test_compile(yaml, what);
    cb_model m;
    cb_program prog;
    cb_error e;
    if (!plan || cb_model_init(&m, plan, 7, &e) != CB_OK) {
        FAILF("%s: does not compile", what);
        json_decref(plan);
        return;
    }
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
        cb_model_free(&m);
        json_decref(plan);
        return;
    }
    const size_t nw = m.params.total_floats, N = (size_t)B * T;
    cb_rng rng;
    cb_rng_init(&rng, 5);
    /* the init's weights as they are (std 0.02, norms at 1), the regime amp trains in;
     * test_cuda.c's 4x larger weights sharpen attention's softmax until an error of
     * bf16's 2^-9 in a logit is no longer small in its output */
    int32_t *tok = malloc(2 * N * sizeof *tok);
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
    float *g_cpu = calloc(nw, sizeof *g_cpu);
    cb_run host, dev;
    memset(&dev, 0, sizeof dev);
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    float *w = NULL, *g = NULL;
    int32_t *t = NULL;
    if (cb_run_init_on(&dev, be, &prog, 1, &e) != CB_OK || !(w = be->alloc(be, nw * sizeof *w, &e)) ||
        !(g = be->alloc(be, nw * sizeof *g, &e)) || !(t = be->alloc(be, 2 * N * sizeof *t, &e))) {
        FAILF("%s: %s", what, e.msg);
        goto done;
    }
    be->upload(be, t, tok, 2 * N * sizeof *t, &e);
    cb_backend_cuda_set_amp(1);
    for (int round = 0; round < 2; round++) {
        if (round == 1) /* new weights: the shadow must be made again */
            for (size_t i = 0; i < nw; i++) m.weights[i] *= 0.75f;
        memset(g_cpu, 0, nw * sizeof *g_cpu);
        float loss_cpu = cb_run_forward(&host, &prog, m.weights, tok, tok + N);
        cb_run_backward(&host, &prog, m.weights, g_cpu);
        be->upload(be, w, m.weights, nw * sizeof *w, &e);
        be->zero(be, g, nw * sizeof *g);
        float loss_gpu = cb_run_forward(&dev, &prog, w, t, t + N);
        float *slots = from_dev(be, dev.slots, prog.slot_elems);
        cb_run_backward(&dev, &prog, w, g);
        float *g_gpu = from_dev(be, g, nw);
        if (be->synchronize(be, &e) != CB_OK || !slots || !g_gpu) {
            FAILF("%s: %s", what, e.msg);
            free(slots);
            free(g_gpu);
            break;
        }
        double lerr = fabs((double)loss_gpu - loss_cpu) / fabs((double)loss_cpu);
        double worst_f = 0, worst_b = 0, gmax = max_abs(g_cpu, nw);
        char wf[128] = "", wb[128] = "";
        for (int i = 0; i < prog.n_ops; i++) {
            const cb_slot *s = &prog.slots[prog.ops[i].out];
            double ef = norm_err(host.slots + s->offset, slots + s->offset, N * (size_t)s->width, 1e-6);
            if (!(ef <= worst_f)) {
                worst_f = ef;
                snprintf(wf, sizeof wf, "op %d %s", i, prog.ops[i].id);
            }
        }
        for (int pi = 0; pi < m.params.n; pi++) {
            const cb_param *p = &m.params.items[pi];
            double eg = norm_err(g_cpu + p->offset, g_gpu + p->offset, p->numel, 1e-3 * gmax);
            if (!(eg <= worst_b)) {
                worst_b = eg;
                snprintf(wb, sizeof wb, "d %s", p->name);
            }
        }
        char label[300];
        snprintf(label, sizeof label, "%s%s loss (relative)", what, round ? " after a weight write" : "");
        REPORT_DIFF(label, lerr, AMP_FWD_TOL);
        snprintf(label, sizeof label, "%s%s forward (worst: %s)", what, round ? " after a weight write" : "", wf);
        REPORT_DIFF(label, worst_f, AMP_FWD_TOL);
        snprintf(label, sizeof label, "%s%s gradients (worst: %s)", what, round ? " after a weight write" : "", wb);
        REPORT_DIFF(label, worst_b, AMP_BWD_TOL);
        if (!(lerr <= AMP_FWD_TOL)) FAILF("%s: loss %.7g on the GPU (amp), %.7g on the CPU", what, loss_gpu, loss_cpu);
        if (!(worst_f <= AMP_FWD_TOL)) FAILF("%s: forward normalised error %.3g (%s)", what, worst_f, wf);
        if (!(worst_b <= AMP_BWD_TOL)) FAILF("%s: gradient normalised error %.3g (%s)", what, worst_b, wb);
        if (!(worst_f >= AMP_MIN_DIFF))
            FAILF("%s: forward within %.3g of float32: the products did not run in bf16", what, worst_f);
        if (first && round == 0) {
            *first = slots;
            slots = NULL;
        }
        free(slots);
        free(g_gpu);
    }
    cb_backend_cuda_set_amp(0);
done:
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&dev);
    cb_run_free(&host);
    free(g_cpu);
    free(tok);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

static const char *llama_yaml(char *buf, size_t n, int vocab, int d, int H, int Hkv, int F, int tied) {
    snprintf(buf, n,
             "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: %s\n"
             "  embedder: {type: token, vocab_size: %d, d_model: %d}\n"
             "  topology:\n    type: StackedTopology\n    layers:\n"
             "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: %d}\n"
             "              - {type: AttentionLayer, d_model: %d, n_heads: %d, n_kv_heads: %d}\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: %d}\n"
             "              - {type: SwiGLULayer, d_model: %d, d_ff: %d}\n"
             "      - {type: RMSNormLayer, d_model: %d}\n",
             tied ? "true" : "false", vocab, d, d, d, H, Hkv, d, d, F, d);
    return buf;
}

TEST(cuda_amp_models) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    compare_model_amp(be, "amp llama_gqa 3x37", llama_yaml(y, sizeof y, 53, 48, 6, 2, 70, 1), 3, 37, NULL);
    compare_model_amp(be, "amp llama_mha 2x130", llama_yaml(y, sizeof y, 301, 64, 4, 4, 96, 0), 2, 130, NULL);
}

/* Each fused path (cuda.h's CB_CUDA_FUSE_*) on alone and all off: the models held to the
 * CPU within the same AMP_*_TOL, and proof each fused path ran (the backend's count of
 * fused launches grew). SWIGLU rounds where the products' operands would be rounded
 * anyway, but for gate and up, rounded to bf16 before the SiLU: one more 2^-9 relative
 * error per element, well inside a product's share of the bound; its op outputs must
 * differ from the unfused run's somewhere. ADDNORM does the unfused kernels' float
 * operations in the same order: every op output the same bits as unfused. The second
 * model's d_ff (75) x d_model (40) is no multiple of 16, so up's weights do not follow
 * gate's (model/params.c pads each tensor to 16 floats): two gate/up products there. */
TEST(cuda_amp_fused) {
    cb_backend *be = gpu();
    if (!be) return;
    const int saved = cb_backend_cuda_fuse();
    static const struct {
        const char *name;
        int bit, kind; /* kind: the op whose output must differ, -1: every output the same */
    } fused[] = {{"swiglu", CB_CUDA_FUSE_SWIGLU, CB_OP_SWIGLU}, {"addnorm", CB_CUDA_FUSE_ADDNORM, -1}};
    const cuda_ctx *c = be->ctx;
    char y[2048];
    for (int m = 0; m < 2; m++) {
        const char *yaml = m == 0 ? llama_yaml(y, sizeof y, 53, 48, 6, 2, 70, 1)
                                  : llama_yaml(y, sizeof y, 97, 40, 4, 2, 75, 0);
        const int B = m == 0 ? 3 : 2, T = m == 0 ? 37 : 61;
        float *off = NULL;
        char what[128];
        cb_backend_cuda_set_fuse(0);
        snprintf(what, sizeof what, "amp model %d unfused", m);
        compare_model_amp(be, what, yaml, B, T, &off);
        for (size_t f = 0; f < sizeof fused / sizeof fused[0]; f++) {
            float *on = NULL;
            cb_backend_cuda_set_fuse(fused[f].bit);
            snprintf(what, sizeof what, "amp model %d fused %s", m, fused[f].name);
            const unsigned long runs = c->fused_runs;
            compare_model_amp(be, what, yaml, B, T, &on);
            if (c->fused_runs == runs) FAILF("%s: no fused launch", what);
            json_t *plan = test_compile(yaml, "fused");
            cb_model mo;
            cb_program prog;
            cb_error e;
            if (on && off && plan && cb_model_init(&mo, plan, 7, &e) == CB_OK) {
                if (cb_program_init(&prog, plan, &mo.params, B, T, &e) == CB_OK) {
                    size_t differ = 0, n = 0;
                    for (int i = 0; i < prog.n_ops; i++) {
                        if (fused[f].kind >= 0 && (int)prog.ops[i].kind != fused[f].kind) continue;
                        const cb_slot *s = &prog.slots[prog.ops[i].out];
                        for (size_t k = 0; k < (size_t)B * T * s->width; k++, n++)
                            differ += memcmp(&on[s->offset + k], &off[s->offset + k], sizeof *on) != 0;
                    }
                    if (fused[f].kind >= 0 && (!n || !differ))
                        FAILF("%s: its outputs (%zu) are the unfused path's: it did not run", what, n);
                    if (fused[f].kind < 0 && differ)
                        FAILF("%s: %zu of %zu op outputs differ from the unfused path's bits", what, differ, n);
                    cb_program_free(&prog);
                }
                cb_model_free(&mo);
            }
            json_decref(plan);
            free(on);
        }
        free(off);
    }
    cb_backend_cuda_set_fuse(saved);
}

/* Under amp the optimizer writes the weights' bf16 copy in the same launches: after a
 * step the shadow is current and holds exactly the new weights rounded to bf16. */
TEST(cuda_amp_optimizer_writes_the_shadow) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    json_t *plan = test_compile(llama_yaml(y, sizeof y, 53, 48, 6, 2, 70, 0), "opt");
    cb_model m;
    cb_program prog;
    cb_error e;
    if (!plan || cb_model_init(&m, plan, 3, &e) != CB_OK || cb_program_init(&prog, plan, &m.params, 2, 16, &e) != CB_OK) {
        FAILF("does not compile");
        return;
    }
    const size_t nw = m.params.total_floats, N = 32;
    cb_run dev;
    int32_t tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (i * 7 + 3) % prog.vocab_size;
    EXPECT(cb_run_init_on(&dev, be, &prog, 1, &e) == CB_OK);
    float *w = to_dev(be, m.weights, nw), *g = be->alloc(be, nw * 4, &e), *mm = be->alloc(be, nw * 4, &e),
          *vv = be->alloc(be, nw * 4, &e);
    int32_t *t = be->alloc(be, sizeof tok, &e);
    uint16_t *h16 = malloc(nw * sizeof *h16);
    be->upload(be, t, tok, sizeof tok, &e);
    cb_backend_cuda_set_amp(1);
    const enum cb_optimizer_kind kinds[] = {CB_OPT_ADAMW, CB_OPT_LION, CB_OPT_SGD};
    for (int k = 0; k < 3; k++) {
        cb_optimizer_config oc = {.kind = kinds[k], .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                                  .momentum = 0.9};
        cb_optimizer opt;
        EXPECT(cb_optimizer_init(&opt, &oc, &m.params, &e) == CB_OK);
        for (int step = 0; step < 2; step++) {
            be->zero(be, g, nw * 4);
            cb_run_forward(&dev, &prog, w, t, t + N);
            cb_run_backward(&dev, &prog, w, g);
            be->optimizer_step(be, &opt, w, g, mm, vv, 1e-2);
        }
        cuda_ctx *c = be->ctx;
        const cb_bf16 *s16 = cb_cuda_shadow_of(c, w, nw);
        float *hw = from_dev(be, w, nw);
        if (!s16 || !hw || be->download(be, h16, s16, nw * sizeof *h16, &e) != CB_OK) {
            FAILF("optimizer %d: the shadow is not current after the step", k);
        } else {
            size_t bad = 0;
            for (size_t i = 0; i < nw; i++) {
                float r = bf16r(hw[i]);
                uint32_t u;
                memcpy(&u, &r, 4);
                bad += (uint16_t)(u >> 16) != h16[i];
            }
            if (bad) FAILF("optimizer %d: %zu of %zu bf16 weights are not the new weights rounded", k, bad, nw);
        }
        free(hw);
        cb_optimizer_free(&opt);
    }
    cb_backend_cuda_set_amp(0);
    free(h16);
    be->free(be, w);
    be->free(be, g);
    be->free(be, mm);
    be->free(be, vv);
    be->free(be, t);
    cb_run_free(&dev);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

/* The head fused with the loss under amp (backend.h head_loss, chunks of 7 rows that do not
 * divide the 111): the chunk's products in bf16 as the unfused head's, so the loss and every
 * gradient against the CPU's float32 unfused pass within the models' amp tolerances. */
TEST(cuda_amp_fused_head) {
    cb_backend *be = gpu();
    if (!be) return;
    char y[2048];
    json_t *plan = test_compile(llama_yaml(y, sizeof y, 301, 48, 6, 2, 70, 1), "fused head");
    cb_model m;
    cb_program prog;
    cb_error e;
    if (!plan || cb_model_init(&m, plan, 7, &e) != CB_OK || cb_program_init(&prog, plan, &m.params, 3, 37, &e) != CB_OK) {
        FAILF("fused head: does not build");
        json_decref(plan);
        return;
    }
    const size_t nw = m.params.total_floats, N = 3 * 37;
    cb_rng rng;
    cb_rng_init(&rng, 5);
    int32_t *tok = malloc(2 * N * sizeof *tok);
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);
    tok[N + 3] = -1;
    float *g_cpu = calloc(nw, sizeof *g_cpu), *w = NULL, *g = NULL, *g_gpu = NULL;
    int32_t *t = NULL;
    cb_run host, dev;
    memset(&dev, 0, sizeof dev);
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    float loss_cpu = cb_run_step(&host, &prog, m.weights, g_cpu, tok, tok + N);
    if (cb_run_init_fused(&dev, be, &prog, 7, &e) != CB_OK || !(w = be->alloc(be, nw * sizeof *w, &e)) ||
        !(g = be->alloc(be, nw * sizeof *g, &e)) || !(t = be->alloc(be, 2 * N * sizeof *t, &e))) {
        FAILF("fused head: %s", e.msg);
        goto done;
    }
    be->upload(be, t, tok, 2 * N * sizeof *t, &e);
    be->upload(be, w, m.weights, nw * sizeof *w, &e);
    cb_backend_cuda_set_amp(1);
    float loss_gpu = cb_run_step(&dev, &prog, w, g, t, t + N);
    g_gpu = from_dev(be, g, nw);
    cb_backend_cuda_set_amp(0);
    if (be->synchronize(be, &e) != CB_OK || !g_gpu) {
        FAILF("fused head: %s", e.msg);
        goto done;
    }
    double lerr = fabs((double)loss_gpu - loss_cpu) / fabs((double)loss_cpu), worst = 0, gmax = max_abs(g_cpu, nw);
    for (int pi = 0; pi < m.params.n; pi++) {
        const cb_param *p = &m.params.items[pi];
        double eg = norm_err(g_cpu + p->offset, g_gpu + p->offset, p->numel, 1e-3 * gmax);
        if (!(eg <= AMP_BWD_TOL)) FAILF("fused head under amp: gradient of %s: normalised error %.3g", p->name, eg);
        if (!(eg <= worst)) worst = eg;
    }
    if (!(lerr <= AMP_FWD_TOL)) FAILF("fused head under amp: loss %.9g on the GPU, %.9g on the CPU", loss_gpu, loss_cpu);
    REPORT_DIFF("fused head under amp: loss", lerr, AMP_FWD_TOL);
    REPORT_DIFF("fused head under amp: parameter gradients", worst, AMP_BWD_TOL);
    if (!(worst >= AMP_MIN_DIFF)) FAILF("fused head under amp: the gradients are float32's (%.3g): bf16 did not run", worst);
done:
    free(g_gpu);
    free(g_cpu);
    free(tok);
    be->free(be, w);
    be->free(be, g);
    be->free(be, t);
    cb_run_free(&dev);
    cb_run_free(&host);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

#else
TEST(cuda_amp) { SKIP("this build has no cuda backend (no nvcc)"); }
#endif
