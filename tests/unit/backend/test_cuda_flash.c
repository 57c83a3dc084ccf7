/* test_cuda_flash.c: the flash-attention kernels of the mixed-precision path
 * (kernels/flash_attention.cu) against the CPU. First the kernels alone, for standard,
 * GQA and DBA with and without its gate, causal and not, at sequence lengths that are
 * and are not multiples of the tiles (128 query rows, 64 keys), head widths 64 and 128,
 * odd DBA widths (8 + 16 keys with 24 values, 6 + 10 with 10: the packed copies' zero
 * padding) and every padded width up to 256, with both arrangements of the forward's
 * warps: out, lse and every gradient (dq_sem, dq, dk_sem, dk, dv, and the gate logit's
 * dz) against a float64 reference of layers/attention.c's formulas. The work buffer
 * starts as NaN, so padding the kernels leave unwritten shows in the results. Then whole
 * models with attention ops (GQA, DBA with both gates) through the CUDA backend with amp
 * on against the CPU backend, op by op.
 *
 * Tolerance: the kernels round q (after its scale), k, v, dout, P and dS to bf16 (8-bit
 * significand: relative error at most 2^-9 = 0.2%) and sum in float32. A product of two
 * rounded operands is off by at most 2^-8 relative per term; the terms' errors have
 * random signs, so a sum of n terms is off by about sqrt(n) 2^-8 of a typical term,
 * below 2^-8 of the sum's largest value. Backward chains three rounded operands (dP from
 * dout and v, dS, then k or q), so about 3 2^-8 = 1.2% of the largest value at worst:
 * 2e-2 of max |reference| holds with margin, while a wrong mask, a lost key block, a
 * missing head of a kv group or a wrong scale moves results by far more than 2% (a lost
 * block of 64 keys among at most a few hundred is a tenth or more of a row's weight).
 * The model tests (one attention layer each, weights four times the init's as in
 * test_cuda) allow 5e-2: the op's input gradient and the embedding's are sums of the q, k
 * and v projections' back-products, each about 1% off its own scale, which partly cancel
 * in the sum; and those small models' nearly flat softmax rows make dP - D a small
 * difference of larger terms. The first device run measured 2.2% at worst (DBA with 2 + 4
 * key dims a head); a broken mask, scale or group gives errors of order one. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#include "backend/cuda/kernels.h"
#endif

#define TOL 2e-2
/* Whole models: see the end of the comment above. */
#define MODEL_TOL 5e-2

#ifdef CB_HAVE_CUDA

/* max |a - b| / max(max |b|, floor); NaN anywhere gives NaN */
static double norm_err(const float *a, const double *b, size_t n, double floor) {
    double d = 0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]);
        if (isnan(x)) return NAN;
        d = x > d ? x : d;
        m = fabs(b[i]) > m ? fabs(b[i]) : m;
    }
    return m > 0 ? d / m : d;
}

typedef struct fcase {
    const char *name;
    int B, T, H, Hkv, ds, dr, dv, gated, causal;
} fcase;

/* The float64 reference of layers/attention.c's core. Inputs as cbk_flash_args; outputs
 * out (B,T,H*dv), lse (B,H,T), then from dout: dq_sem, dq, dk_sem, dk, dv, dz. */
typedef struct ref_io {
    const float *q_sem, *q, *k_sem, *k, *v, *gate, *dout;
    double *out, *lse, *dq_sem, *dq, *dk_sem, *dk, *dv, *dz;
} ref_io;

static void reference(const fcase *c, ref_io *r) {
    const int T = c->T, H = c->H, Hkv = c->Hkv, ds = c->ds, dr = c->dr, dv = c->dv, grp = H / Hkv;
    const double rs = ds ? 1.0 / sqrt((double)ds) : 0.0, rr = 1.0 / sqrt((double)dr);
    double *s = malloc((size_t)T * sizeof *s), *dp = malloc((size_t)T * sizeof *dp);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < H; h++) {
            const int kh = h / grp;
            for (int t = 0; t < T; t++) {
                const size_t n = (size_t)b * T + t;
                const double g = c->gated ? r->gate[n * H + h] : 0.5;
                const double cs = c->gated ? 2 * g * rs : rs, cr = c->gated ? (2 - 2 * g) * rr : rr;
                const float *qs = ds ? r->q_sem + (n * H + h) * ds : NULL, *qr = r->q + (n * H + h) * dr;
                const int vis = c->causal ? t + 1 : T;
                double mx = -INFINITY;
                for (int j = 0; j < vis; j++) {
                    const size_t m = (size_t)b * T + j;
                    double a0 = 0, a1 = 0;
                    for (int i = 0; i < ds; i++) a0 += (double)qs[i] * r->k_sem[(m * Hkv + kh) * ds + i];
                    for (int i = 0; i < dr; i++) a1 += (double)qr[i] * r->k[(m * Hkv + kh) * dr + i];
                    s[j] = cs * a0 + cr * a1;
                    mx = s[j] > mx ? s[j] : mx;
                }
                double sum = 0;
                for (int j = 0; j < vis; j++) sum += exp(s[j] - mx);
                const double lse = mx + log(sum);
                r->lse[((size_t)b * H + h) * T + t] = lse;
                double *o = r->out + (n * H + h) * dv;
                const float *go = r->dout + (n * H + h) * dv;
                for (int i = 0; i < dv; i++) o[i] = 0;
                double D = 0;
                for (int j = 0; j < vis; j++) {
                    const size_t m = (size_t)b * T + j;
                    const double p = exp(s[j] - lse);
                    const float *vj = r->v + (m * Hkv + kh) * dv;
                    double d = 0;
                    for (int i = 0; i < dv; i++) {
                        o[i] += p * vj[i];
                        d += (double)go[i] * vj[i];
                    }
                    dp[j] = d;
                    D += p * d;
                    s[j] = p;
                }
                double dcs = 0, dcr = 0;
                for (int j = 0; j < vis; j++) {
                    const size_t m = (size_t)b * T + j;
                    const double dS = s[j] * (dp[j] - D);
                    for (int i = 0; i < ds; i++) {
                        const double kk = r->k_sem[(m * Hkv + kh) * ds + i];
                        r->dq_sem[(n * H + h) * ds + i] += cs * dS * kk;
                        dcs += dS * kk * qs[i];
                        r->dk_sem[(m * Hkv + kh) * ds + i] += dS * cs * qs[i];
                    }
                    for (int i = 0; i < dr; i++) {
                        const double kk = r->k[(m * Hkv + kh) * dr + i];
                        r->dq[(n * H + h) * dr + i] += cr * dS * kk;
                        dcr += dS * kk * qr[i];
                        r->dk[(m * Hkv + kh) * dr + i] += dS * cr * qr[i];
                    }
                    for (int i = 0; i < dv; i++) r->dv[(m * Hkv + kh) * dv + i] += s[j] * go[i];
                }
                if (c->gated) r->dz[n * H + h] = (2 * rs * dcs - 2 * rr * dcr) * g * (1 - g);
            }
        }
    free(s);
    free(dp);
}

static float *rand_buf(size_t n, float scale, unsigned long long *st) {
    float *x = malloc((n ? n : 1) * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = scale * cb_test_urandf(st);
    return x;
}

static float *to_dev(cb_backend *be, const float *h, size_t n) {
    cb_error e;
    if (!h || !n) return NULL;
    float *d = be->alloc(be, n * sizeof *d, &e);
    if (d) be->upload(be, d, h, n * sizeof *d, &e);
    return d;
}

static float *from_dev(cb_backend *be, const float *d, size_t n) {
    cb_error e;
    float *h = malloc((n ? n : 1) * sizeof *h);
    if (d && n) be->download(be, h, d, n * sizeof *h, &e);
    return h;
}

/* one case; the worst normalised error over its outputs into *worst */
static void run_case(cb_backend *be, const fcase *c, double *worst, char *wname, size_t wn) {
    unsigned long long st = 0x9e3779b97f4a7c15ull ^ (unsigned long long)(c->T * 131 + c->dv * 7 + c->ds);
    const size_t N = (size_t)c->B * c->T;
    const size_t nqs = N * c->H * c->ds, nq = N * c->H * c->dr, nks = N * c->Hkv * c->ds, nk = N * c->Hkv * c->dr,
                 nv = N * c->Hkv * c->dv, no = N * c->H * c->dv, nl = N * c->H, ng = c->gated ? N * c->H : 0;
    /* inputs of about unit size, scaled so the softmax is neither flat nor one-hot */
    float *q_sem = rand_buf(nqs, 2.0f, &st), *q = rand_buf(nq, 2.0f, &st), *k_sem = rand_buf(nks, 2.0f, &st),
          *k = rand_buf(nk, 2.0f, &st), *v = rand_buf(nv, 1.0f, &st), *dout = rand_buf(no, 1.0f, &st),
          *gate = rand_buf(ng, 0.45f, &st);
    for (size_t i = 0; i < ng; i++) gate[i] += 0.5f; /* g in (0.05, 0.95) */
    double *ref = calloc(2 * no + nl + nqs + nq + nks + nk + nv + nl, sizeof *ref);
    ref_io r;
    r.q_sem = q_sem;
    r.q = q;
    r.k_sem = k_sem;
    r.k = k;
    r.v = v;
    r.gate = c->gated ? gate : NULL;
    r.dout = dout;
    r.out = ref;
    r.lse = r.out + no;
    r.dq_sem = r.lse + nl;
    r.dq = r.dq_sem + nqs;
    r.dk_sem = r.dq + nq;
    r.dk = r.dk_sem + nks;
    r.dv = r.dk + nk;
    r.dz = r.dv + nv;
    reference(c, &r);

    cbk_flash_args f = {c->B, c->T, c->H, c->Hkv, c->causal, c->ds, c->dr, c->dv, NULL, NULL, NULL, NULL, NULL, NULL};
    f.q_sem = to_dev(be, q_sem, nqs);
    f.q = to_dev(be, q, nq);
    f.k_sem = to_dev(be, k_sem, nks);
    f.k = to_dev(be, k, nk);
    f.v = to_dev(be, v, nv);
    f.gate = c->gated ? to_dev(be, gate, ng) : NULL;
    float *d_dout = to_dev(be, dout, no);
    cb_error e;
    float *d_out = be->alloc(be, no * sizeof(float), &e), *d_lse = be->alloc(be, nl * sizeof(float), &e);
    /* one work buffer for both passes (backward's is the larger), filled with NaN so that
     * a packed copy's padding the kernels forget to write shows in every result */
    const size_t nwork = cbk_flash_backward_work(&f) > cbk_flash_forward_work(&f) ? cbk_flash_backward_work(&f)
                                                                                  : cbk_flash_forward_work(&f);
    float *nans = malloc(nwork * sizeof *nans);
    for (size_t i = 0; i < nwork; i++) nans[i] = NAN;
    float *d_work = to_dev(be, nans, nwork);
    free(nans);
    float *g_qs = nqs ? be->alloc(be, nqs * sizeof(float), &e) : NULL, *g_q = be->alloc(be, nq * sizeof(float), &e);
    float *g_ks = nks ? be->alloc(be, nks * sizeof(float), &e) : NULL, *g_k = be->alloc(be, nk * sizeof(float), &e);
    float *g_v = be->alloc(be, nv * sizeof(float), &e), *g_z = ng ? be->alloc(be, ng * sizeof(float), &e) : NULL;

    cbk_flash_forward(d_out, d_lse, d_work, &f);
    cbk_flash_backward(g_qs, g_q, g_ks, g_k, g_v, g_z, d_work, d_dout, d_out, d_lse, &f);
    const char *le = cbk_last_error();
    if (le) FAILF("%s: launch: %s", c->name, le);
    if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s: %s", c->name, e.where, e.msg);

    struct {
        const char *what;
        const float *dev;
        const double *ref;
        size_t n;
    } outs[] = {{"out", d_out, r.out, no},    {"lse", d_lse, r.lse, nl},  {"dq_sem", g_qs, r.dq_sem, nqs},
                {"dq", g_q, r.dq, nq},        {"dk_sem", g_ks, r.dk_sem, nks}, {"dk", g_k, r.dk, nk},
                {"dv", g_v, r.dv, nv},        {"dz", g_z, r.dz, ng}};
    /* a gradient that is zero in exact arithmetic (dq, dk with one visible key) compares
     * its rounding noise against 1e-3 of the case's largest gradient, as test_cuda does */
    double gmax = 0;
    for (size_t i = 2; i < sizeof outs / sizeof outs[0]; i++)
        for (size_t j = 0; j < outs[i].n; j++) gmax = fabs(outs[i].ref[j]) > gmax ? fabs(outs[i].ref[j]) : gmax;
    char line[512];
    int at = snprintf(line, sizeof line, "%-24s", c->name);
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        if (!outs[i].n) continue;
        float *h = from_dev(be, outs[i].dev, outs[i].n);
        /* lse is compared on a scale of at least 1 (its error is the scores' absolute one) */
        double err = norm_err(h, outs[i].ref, outs[i].n, i == 0 ? 1e-12 : i == 1 ? 1.0 : 1e-3 * gmax);
        if (at < (int)sizeof line) at += snprintf(line + at, sizeof line - at, " %s %.2e", outs[i].what, err);
        if (!(err <= TOL)) FAILF("%s: %s: normalised error %.3g (tol %.1g)", c->name, outs[i].what, err, TOL);
        if (!(err <= *worst)) {
            *worst = err;
            snprintf(wname, wn, "%s %s", c->name, outs[i].what);
        }
        free(h);
    }
    fprintf(stderr, "  %s\n", line);

    be->free(be, (void *)f.q_sem);
    be->free(be, (void *)f.q);
    be->free(be, (void *)f.k_sem);
    be->free(be, (void *)f.k);
    be->free(be, (void *)f.v);
    be->free(be, (void *)f.gate);
    float *devs[] = {d_dout, d_out, d_lse, d_work, g_qs, g_q, g_ks, g_k, g_v, g_z};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++) be->free(be, devs[i]);
    free(q_sem);
    free(q);
    free(k_sem);
    free(k);
    free(v);
    free(dout);
    free(gate);
    free(ref);
}
#endif

TEST(flash_kernels_equal_the_cpu) {
#ifndef CB_HAVE_CUDA
    SKIP("this build has no cuda backend (no nvcc)");
#else
    cb_backend *be = gpu();
    if (!be) return;
    /* name, B, T, H, Hkv, ds, dr, dv, gated, causal */
    static const fcase cases[] = {
        {"std64 T1", 2, 1, 2, 2, 0, 64, 64, 0, 1},
        {"std64 T37", 2, 37, 3, 3, 0, 64, 64, 0, 1},
        {"std64 T64", 1, 64, 2, 2, 0, 64, 64, 0, 1},
        {"std64 T130", 2, 130, 2, 2, 0, 64, 64, 0, 1},
        {"std64 T200 full", 1, 200, 2, 2, 0, 64, 64, 0, 0},
        {"std128 T65", 2, 65, 2, 2, 0, 128, 128, 0, 1},
        {"std128 T190", 1, 190, 3, 3, 0, 128, 128, 0, 1},
        {"gqa64 4/2 T150", 2, 150, 4, 2, 0, 64, 64, 0, 1},
        {"gqa128 6/2 T97", 1, 97, 6, 2, 0, 128, 128, 0, 1},
        {"gqa64 4/1 T129", 1, 129, 4, 1, 0, 64, 64, 0, 1},
        {"gqa64 6/2 T140 full", 1, 140, 6, 2, 0, 64, 64, 0, 0},
        {"dba 8+16/24 T19", 3, 19, 4, 2, 8, 16, 24, 0, 1},
        {"dba 8+16/24 gate T100", 2, 100, 4, 2, 8, 16, 24, 1, 1},
        {"dba 6+10/10 gate T70", 2, 70, 2, 1, 6, 10, 10, 1, 1},
        {"dba 16+48/64 gate T257", 1, 257, 2, 2, 16, 48, 64, 1, 1},
        {"dba 32+96/128 T140", 1, 140, 2, 1, 32, 96, 128, 0, 1},
        {"dba 4+8/130 gate T80", 1, 80, 2, 2, 4, 8, 130, 1, 1},
        {"dba 100+128/40 T75", 1, 75, 2, 1, 100, 128, 40, 0, 1},
        {"dba 128+128/256 gate T70", 1, 70, 1, 1, 128, 128, 256, 1, 1},
    };
    double worst = 0;
    char wname[128] = "";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(be, &cases[i], &worst, wname, sizeof wname);
    /* the forward's other arrangement (8 warps of one m-tile up to width 128), which
     * bench/attention_cuda compares with the default */
    fprintf(stderr, "  forward as 8 warps of one m-tile:\n");
    cbk_flash_forward_layout(1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(be, &cases[i], &worst, wname, sizeof wname);
    cbk_flash_forward_layout(0);
    char label[200];
    snprintf(label, sizeof label, "flash kernels (worst: %s)", wname);
    REPORT_DIFF(label, worst, TOL);
#endif
}

#ifdef CB_HAVE_CUDA
static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}
/* max |a - b| / max(max |a|, floor) */
static double norm_errf(const float *a, const float *b, size_t n, double floor) {
    double d = 0, m = floor;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - (double)b[i]);
        if (isnan(x)) return NAN;
        d = x > d ? x : d;
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    }
    return m > 0 ? d / m : d;
}

/* The model of yaml at (B,T) on the GPU with amp on against the CPU: each attention op's
 * output and input gradient, and every parameter's gradient. */
static void compare_amp(cb_backend *be, const char *what, const char *yaml, int B, int T) {
    json_t *plan = test_compile(yaml, what);
    cb_model m;
    cb_program prog;
    cb_error e;
    if (!plan || cb_model_init(&m, plan, 7, &e) != CB_OK) {
        FAILF("%s: does not build", what);
        if (plan) json_decref(plan);
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
    for (size_t i = 0; i < nw; i++) m.weights[i] *= 4.0f; /* signal on every path, as test_cuda */
    for (int i = 0; i < m.params.n; i++)
        if (m.params.items[i].init != CB_INIT_NORMAL)
            for (size_t k = 0; k < m.params.items[i].numel; k++)
                m.weights[m.params.items[i].offset + k] += (float)(0.3 * cb_rng_normal(&rng));
    int32_t *tok = malloc(2 * N * sizeof *tok);
    for (size_t i = 0; i < 2 * N; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % (uint64_t)prog.vocab_size);

    cb_run host, dev;
    float *g_cpu = calloc(nw, sizeof *g_cpu);
    EXPECT(cb_run_init(&host, &prog, 1, &e) == CB_OK);
    cb_run_forward(&host, &prog, m.weights, tok, tok + N);
    cb_run_backward(&host, &prog, m.weights, g_cpu);

    cb_backend_cuda_set_amp(1);
    if (cb_run_init_on(&dev, be, &prog, 1, &e) != CB_OK) {
        FAILF("%s: %s", what, e.msg);
    } else {
        float *w = be->alloc(be, nw * sizeof *w, &e), *g = be->alloc(be, nw * sizeof *g, &e);
        int32_t *t = be->alloc(be, 2 * N * sizeof *t, &e);
        be->upload(be, w, m.weights, nw * sizeof *w, &e);
        be->upload(be, t, tok, 2 * N * sizeof *t, &e);
        cb_run_forward(&dev, &prog, w, t, t + N);
        float *slots = malloc(prog.slot_elems * sizeof *slots), *dslots = malloc(prog.slot_elems * sizeof *dslots);
        float *g_gpu = malloc(nw * sizeof *g_gpu);
        be->download(be, slots, dev.slots, prog.slot_elems * sizeof *slots, &e);
        cb_run_backward(&dev, &prog, w, g);
        be->download(be, dslots, dev.dslots, prog.slot_elems * sizeof *dslots, &e);
        be->download(be, g_gpu, g, nw * sizeof *g_gpu, &e);
        if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s: %s", what, e.where, e.msg);
        double worst = 0, gmax = max_abs(g_cpu, nw);
        char wn[160] = "";
        for (int i = 0; i < prog.n_ops; i++) {
            const cb_op *op = &prog.ops[i];
            if (op->kind != CB_OP_ATTENTION) continue;
            const cb_slot *s = &prog.slots[op->out];
            const cb_slot *si = &prog.slots[prog.inputs[op->in_first]];
            size_t n = N * (size_t)s->width, ni = N * (size_t)si->width;
            double ef = norm_errf(host.slots + s->offset, slots + s->offset, n, 1e-6);
            double eb = norm_errf(host.dslots + si->offset, dslots + si->offset, ni,
                                  1e-3 * max_abs(host.dslots + si->offset, ni) + 1e-12);
            if (!(ef <= MODEL_TOL)) FAILF("%s: attention op %d output: normalised error %.3g", what, i, ef);
            if (!(eb <= MODEL_TOL)) FAILF("%s: attention op %d input gradient: normalised error %.3g", what, i, eb);
            if (!(ef <= worst)) worst = ef, snprintf(wn, sizeof wn, "op %d output", i);
            if (!(eb <= worst)) worst = eb, snprintf(wn, sizeof wn, "op %d input gradient", i);
        }
        for (int pi = 0; pi < m.params.n; pi++) {
            const cb_param *p = &m.params.items[pi];
            double eg = norm_errf(g_cpu + p->offset, g_gpu + p->offset, p->numel, 1e-2 * gmax);
            if (!(eg <= MODEL_TOL)) FAILF("%s: gradient of %s: normalised error %.3g", what, p->name, eg);
            if (!(eg <= worst)) worst = eg, snprintf(wn, sizeof wn, "d %s", p->name);
        }
        char label[300];
        snprintf(label, sizeof label, "%s amp (worst: %s)", what, wn);
        REPORT_DIFF(label, worst, MODEL_TOL);
        free(slots);
        free(dslots);
        free(g_gpu);
        be->free(be, w);
        be->free(be, g);
        be->free(be, t);
        cb_run_free(&dev);
    }
    cb_backend_cuda_set_amp(0);
    cb_run_free(&host);
    free(g_cpu);
    free(tok);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}
#endif

TEST(flash_attention_ops_equal_the_cpu) {
#ifndef CB_HAVE_CUDA
    SKIP("this build has no cuda backend (no nvcc)");
#else
    cb_backend *be = gpu();
    if (!be) return;
    compare_amp(be, "gqa",
                "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
                "  embedder: {type: token, vocab_size: 31, d_model: 64}\n"
                "  topology:\n    type: StackedTopology\n    layers:\n"
                "      - type: ResidualTopology\n        layers:\n"
                "          - {type: RMSNormLayer, d_model: 64}\n"
                "          - {type: AttentionLayer, d_model: 64, n_heads: 4, n_kv_heads: 2}\n"
                "      - {type: RMSNormLayer, d_model: 64}\n",
                2, 75);
    compare_amp(be, "dba gated",
                "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
                "  embedder: {type: token, vocab_size: 29, d_model: 24}\n"
                "  topology:\n    type: StackedTopology\n    layers:\n"
                "      - type: ResidualTopology\n        layers:\n"
                "          - {type: RMSNormLayer, d_model: 24}\n"
                "          - {type: AttentionLayer, d_model: 24, n_heads: 4, n_kv_heads: 2, mode: decoupled,\n"
                "             sem_dim: 8, geo_dim: 16, v_dim: 12, decoupled_gate: true, decoupled_gate_dynamic: true}\n"
                "      - {type: RMSNormLayer, d_model: 24}\n",
                3, 70);
    compare_amp(be, "dba",
                "version: 1\nname: t\nmodel:\n  type: TransformerModel\n"
                "  embedder: {type: token, vocab_size: 29, d_model: 24}\n"
                "  topology:\n    type: StackedTopology\n    layers:\n"
                "      - type: ResidualTopology\n        layers:\n"
                "          - {type: RMSNormLayer, d_model: 24}\n"
                "          - {type: AttentionLayer, d_model: 24, n_heads: 2, mode: decoupled, sem_dim: 4, geo_dim: 8,\n"
                "             v_dim: 20}\n"
                "      - {type: RMSNormLayer, d_model: 24}\n",
                2, 130);
#endif
}
