/* test_surgery.c: the SVD surgery needs (against reconstruction and Eckart-Young), and
 * surgery itself: a student with the teacher's own attention dims reproduces the
 * teacher exactly; a bottlenecked student starts far closer to the teacher's attention
 * outputs than the same student with its attention initialised at random. */
#include "test.h"

#include <stdlib.h>
#include "backend/backend.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "plan/plan.h"
#include "upcycle/attn_pair.h"
#include "upcycle/surgery.h"
#include "upcycle/svd.h"

static void random_matrix(double *a, int m, int n, unsigned long long *st) {
    for (int i = 0; i < m * n; i++) a[i] = cb_test_urandf(st);
}

TEST(svd_reconstructs_and_is_orthonormal) {
    unsigned long long st = 42;
    enum { M = 23, N = 7 };
    double A[M * N], U[M * N], s[N], V[N * N];
    random_matrix(A, M, N, &st);
    for (int j = 0; j < M; j++) A[j * N + 6] = A[j * N + 2] * 0.5; /* rank-deficient */
    cb_error e;
    if (cb_svd(U, s, V, A, M, N, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    double worst = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double x = 0;
            for (int k = 0; k < N; k++) x += U[i * N + k] * s[k] * V[j * N + k];
            worst = fmax(worst, fabs(x - A[i * N + j]));
        }
    REPORT_DIFF("svd: U S V^T - A", worst, 1e-12);
    EXPECT(worst < 1e-12);
    for (int k = 1; k < N; k++) EXPECT(s[k] <= s[k - 1]);
    EXPECT(s[N - 1] == 0); /* the dependent column */
    double orth = 0;
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++) {
            double u = 0, v = 0;
            for (int i = 0; i < M; i++) u += U[i * N + a] * U[i * N + b];
            for (int i = 0; i < N; i++) v += V[i * N + a] * V[i * N + b];
            double want = a == b ? 1 : 0;
            if (s[a] > 0 && s[b] > 0) orth = fmax(orth, fabs(u - want));
            orth = fmax(orth, fabs(v - want));
        }
    REPORT_DIFF("svd: U^T U - I, V^T V - I", orth, 1e-12);
    EXPECT(orth < 1e-12);
}

/* L R against the product's own SVD: the error is the energy of the dropped values */
TEST(lowrank_product_is_eckart_young) {
    unsigned long long st = 7;
    enum { M = 30, R = 6, N = 11, K = 3 };
    double A[M * R], B[R * N], P[M * N], L[M * K], Rm[K * N], sv[K], U[M * N], s[N], V[N * N];
    random_matrix(A, M, R, &st);
    random_matrix(B, R, N, &st);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double x = 0;
            for (int t = 0; t < R; t++) x += A[i * R + t] * B[t * N + j];
            P[i * N + j] = x;
        }
    cb_error e;
    if (cb_lowrank_product(L, Rm, sv, A, B, M, R, N, K, &e) != CB_OK || cb_svd(U, s, V, P, M, N, &e) != CB_OK) {
        FAILF("%s", e.msg);
        return;
    }
    double err2 = 0, want2 = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double x = 0;
            for (int t = 0; t < K; t++) x += L[i * K + t] * Rm[t * N + j];
            err2 += (x - P[i * N + j]) * (x - P[i * N + j]);
        }
    for (int t = K; t < N; t++) want2 += s[t] * s[t];
    for (int t = 0; t < K; t++) EXPECT_NEAR(s[t], sv[t], 1e-10);
    REPORT_DIFF("lowrank: |AB - LR|^2 - sum of dropped s^2", fabs(err2 - want2), 1e-10);
    EXPECT_NEAR(want2, err2, 1e-10);
}

/* A Llama-shaped teacher (d 32, 4 heads on 2 KV heads of 8 dims, 2 blocks) and its student
 * given by the overrides of run g/up. */
static char *manifest(const char *overrides) {
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
             "  embedder: {type: token, vocab_size: 40, d_model: 32}\n"
             "  topology:\n    type: StackedTopology\n    layers:\n"
             "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: 32}\n"
             "              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2, rope_theta: 10000}\n"
             "          - type: ResidualTopology\n            layers:\n"
             "              - {type: RMSNormLayer, d_model: 32}\n"
             "              - {type: SwiGLULayer, d_model: 32, d_ff: 48}\n"
             "      - {type: RMSNormLayer, d_model: 32}\n"
             "groups:\n  - name: g\n    data: x.npy\n    runs:\n      - id: up\n        steps: 1\n"
             "        train:\n          phase: upcycle\n          teacher: {ckpt: t}\n"
             "          student:\n            overrides:\n              AttentionLayer: {%s}\n",
             overrides);
    return buf;
}

typedef struct pair {
    json_t *plan, *splan;
    cb_model t, s;
} pair;

static int make_pair(pair *p, const char *overrides, uint64_t seed) {
    memset(p, 0, sizeof *p);
    cb_error e;
    p->plan = test_compile(manifest(overrides), "surgery");
    if (!p->plan) return -1;
    p->splan = cb_plan_student_doc(p->plan, "g", "up");
    if (!p->splan) return -1;
    if (cb_model_init(&p->t, p->plan, seed, &e) != CB_OK || cb_model_init(&p->s, p->splan, seed + 1, &e) != CB_OK) {
        fprintf(stderr, "  %s\n", e.msg);
        return -1;
    }
    /* a teacher with more than the init's 0.02 in its weights, so attention is not uniform */
    cb_rng rng;
    cb_rng_init(&rng, seed + 2);
    for (int i = 0; i < p->t.params.n; i++) {
        const cb_param *q = &p->t.params.items[i];
        for (size_t k = 0; k < q->numel; k++) p->t.weights[q->offset + k] += (float)(0.15 * cb_rng_normal(&rng));
    }
    return 0;
}

static void free_pair(pair *p) {
    cb_model_free(&p->t);
    cb_model_free(&p->s);
    json_decref(p->plan);
    json_decref(p->splan);
}

/* Group 1's key and value rows of every teacher attention made group 0's, so that the
 * teacher's two KV groups are one in all but name. */
static void teacher_groups_equal(pair *p) {
    for (int i = 0; i < p->t.params.n; i++) {
        const cb_param *q = &p->t.params.items[i];
        const char *n = strrchr(q->name, '.');
        if (!n || !strstr(q->name, ".attn.") || (!strstr(q->name, ".k.weight") && !strstr(q->name, ".v.weight")))
            continue;
        const size_t half = q->numel / 2; /* [2 groups x 8 dims, 32] */
        memcpy(p->t.weights + q->offset + half, p->t.weights + q->offset, half * sizeof(float));
    }
}

/* p: the pair of overrides ov (seed), the teacher's KV groups made equal where asked, and
 * the student made from the teacher by surgery. 0, or -1 after a failure (reported, p freed). */
static int surgery_pair(pair *p, const char *ov, uint64_t seed, int equal_groups) {
    if (make_pair(p, ov, seed)) {
        FAILF("setup");
        free_pair(p);
        return -1;
    }
    if (equal_groups) teacher_groups_equal(p);
    cb_error e;
    cb_surgery_options o = {.context = 16};
    if (cb_surgery(&p->s, &p->t, &o, &e) != CB_OK) {
        FAILF("%s", e.msg);
        free_pair(p);
        return -1;
    }
    return 0;
}

static double logits_diff(pair *p, const int32_t *tokens, int T) {
    cb_error e;
    cb_program tp, sp;
    cb_run tr, sr;
    double worst = INFINITY;
    if (cb_program_init(&tp, p->t.plan, &p->t.params, 1, T, &e) || cb_program_init(&sp, p->s.plan, &p->s.params, 1, T, &e) ||
        cb_run_init(&tr, &tp, 0, &e) || cb_run_init(&sr, &sp, 0, &e)) {
        FAILF("%s", e.msg);
        return worst;
    }
    cb_run_forward(&tr, &tp, p->t.weights, tokens, NULL);
    cb_run_forward(&sr, &sp, p->s.weights, tokens, NULL);
    const float *a = tr.slots + tp.slots[tp.logits_slot].offset, *b = sr.slots + sp.slots[sp.logits_slot].offset;
    worst = 0;
    for (int i = 0; i < T * tp.vocab_size; i++) worst = fmax(worst, fabs((double)a[i] - b[i]) / (1 + fabs(a[i])));
    cb_run_free(&tr);
    cb_run_free(&sr);
    cb_program_free(&tp);
    cb_program_free(&sp);
    return worst;
}

/* d_geo = head_dim (every RoPE pair kept), d_v = head_dim: the geometric path is the
 * teacher's attention, the semantic path starts at zero, the gate at 1/2 */
TEST(surgery_with_teachers_dims_reproduces_teacher) {
    pair p;
    if (surgery_pair(&p, "mode: decoupled, sem_dim: 8, geo_dim: 32, v_dim: 32, decoupled_gate: true", 3, 0)) return;
    int32_t tokens[12];
    for (int i = 0; i < 12; i++) tokens[i] = (i * 7 + 3) % 40;
    double d = logits_diff(&p, tokens, 12);
    REPORT_DIFF("surgery, teacher's dims: logits", d, 1e-5);
    EXPECT(d < 1e-5);
    free_pair(&p);
}

/* The attention-output L1 to the teacher over tokens (2 x 16) of the student of overrides ov
 * made by SVD surgery (*l1s) and of the same student with its attention at random, every
 * other tensor copied from the teacher (*l1r). 0, or -1 after a failure (reported). */
static int l1_surgery_and_random(const char *ov, uint64_t seed, const int32_t *tokens, double *l1s, double *l1r) {
    pair p, r;
    *l1s = *l1r = NAN;
    if (make_pair(&p, ov, seed) || make_pair(&r, ov, seed)) {
        FAILF("setup");
        free_pair(&p);
        free_pair(&r);
        return -1;
    }
    cb_error e;
    cb_surgery_options o = {.context = 16};
    int rc = cb_surgery(&p.s, &p.t, &o, &e);
    for (int i = 0; rc == CB_OK && i < r.s.params.n; i++) {
        const cb_param *q = &r.s.params.items[i];
        const cb_param *tq = cb_params_find(&r.t.params, q->name);
        if (tq && tq->numel == q->numel && !strstr(q->name, ".attn."))
            memcpy(r.s.weights + q->offset, r.t.weights + tq->offset, q->numel * sizeof(float));
    }
    if (rc != CB_OK) FAILF("%s", e.msg);
    cb_attn_pair ap, ar;
    if (rc == CB_OK && cb_attn_pair_init(&ap, cb_backend_cpu(), &p.t, &p.s, 2, 16, &e) == CB_OK) {
        *l1s = cb_attn_pair_l1(&ap, p.t.weights, p.s.weights, tokens, NULL, &e);
        cb_attn_pair_free(&ap);
    }
    if (rc == CB_OK && cb_attn_pair_init(&ar, cb_backend_cpu(), &r.t, &r.s, 2, 16, &e) == CB_OK) {
        *l1r = cb_attn_pair_l1(&ar, r.t.weights, r.s.weights, tokens, NULL, &e);
        cb_attn_pair_free(&ar);
    }
    free_pair(&p);
    free_pair(&r);
    return rc == CB_OK ? 0 : -1;
}

/* a student at 1/2 of the teacher's K+V (2 x (2 + 4 + 4) of 2 x 2 x 8 per token and
 * layer): SVD init against the same student with its attention at random */
TEST(surgery_beats_random_attention_init) {
    int32_t tokens[2 * 16];
    for (int i = 0; i < 32; i++) tokens[i] = (i * 11 + 5) % 40;
    double l1s, l1r;
    if (l1_surgery_and_random("mode: decoupled, sem_dim: 8, geo_dim: 16, v_dim: 16", 5, tokens, &l1s, &l1r)) return;
    fprintf(stderr, "  attention-output L1 to the teacher: SVD surgery %.5f, random attention %.5f (ratio %.3f)\n", l1s,
            l1r, l1s / l1r);
    EXPECT(isfinite(l1s) && isfinite(l1r));
    EXPECT(l1s < 0.7 * l1r);
}

/* n_kv_heads 1 from a teacher of 2 (each student group covers 2 teacher groups): where the
 * teacher's groups are equal, a student of the teacher's widths reproduces it exactly (the
 * geometric keys' mean is each group's, and the stacked values have rank head_dim) */
TEST(surgery_merges_kv_groups_exactly_when_they_agree) {
    pair p;
    if (surgery_pair(&p, "mode: decoupled, n_kv_heads: 1, sem_dim: 8, geo_dim: 32, v_dim: 32, decoupled_gate: true", 7, 1)) return;
    int32_t tokens[12];
    for (int i = 0; i < 12; i++) tokens[i] = (i * 5 + 1) % 40;
    double d = logits_diff(&p, tokens, 12);
    REPORT_DIFF("surgery, 2 equal KV groups merged into 1: logits", d, 1e-5);
    EXPECT(d < 1e-5);
    free_pair(&p);
}

/* the merged student (1 KV head of 2 + 2 + 4 dims: 1/4 of the teacher's K+V) from a teacher
 * whose groups differ: SVD surgery against the same student with its attention at random */
TEST(surgery_merged_kv_groups_beat_random_init) {
    int32_t tokens[2 * 16];
    for (int i = 0; i < 32; i++) tokens[i] = (i * 13 + 2) % 40;
    double l1s, l1r;
    if (l1_surgery_and_random("mode: decoupled, n_kv_heads: 1, sem_dim: 8, geo_dim: 8, v_dim: 16", 11, tokens, &l1s, &l1r))
        return;
    fprintf(stderr, "  merged groups, attention-output L1 to the teacher: SVD surgery %.5f, random attention %.5f (ratio %.3f)\n",
            l1s, l1r, l1s / l1r);
    EXPECT(isfinite(l1s) && isfinite(l1r));
    EXPECT(l1s < 0.8 * l1r);
}

/* merged groups whose keys differ: with every RoPE pair kept (d_geo = head_dim, so pair i is
 * the teacher's pair i at scale 1) each geometric key row of the student is the mean of the
 * merged teacher groups' rows (cb-build(1) SURGERY) */
TEST(surgery_merged_geometric_keys_are_the_mean) {
    pair p;
    if (surgery_pair(&p, "mode: decoupled, n_kv_heads: 1, sem_dim: 8, geo_dim: 32, v_dim: 32", 13, 0)) return;
    double worst = 0;
    int layers = 0;
    for (int i = 0; i < p.s.params.n; i++) {
        const cb_param *sk = &p.s.params.items[i];
        if (!strstr(sk->name, ".k_geo.weight")) continue;
        char tname[256];
        snprintf(tname, sizeof tname, "%.*sk.weight", (int)(strstr(sk->name, "k_geo.weight") - sk->name), sk->name);
        const cb_param *tk = cb_params_find(&p.t.params, tname);
        if (!tk || tk->numel != 2 * sk->numel) { FAILF("no teacher %s of twice %zu floats", tname, sk->numel); break; }
        const float *a = p.t.weights + tk->offset, *b = a + sk->numel, *s = p.s.weights + sk->offset;
        for (size_t k = 0; k < sk->numel; k++) worst = fmax(worst, fabs(s[k] - 0.5 * ((double)a[k] + b[k])));
        layers++;
    }
    REPORT_DIFF("merged geometric keys against the teachers' mean", worst, 1e-6);
    EXPECT_EQ_INT(2, layers);
    EXPECT(worst <= 1e-6);
    free_pair(&p);
}

TEST(surgery_refuses_impossible_student) {
    pair p;
    if (make_pair(&p, "mode: decoupled, sem_dim: 8, geo_dim: 16, v_dim: 16", 9)) {
        FAILF("setup");
        free_pair(&p);
        return;
    }
    /* a teacher of another shape: its 1 KV head cannot be split into the student's 2 */
    cb_error e;
    char text[4096];
    snprintf(text, sizeof text, "%s", manifest("mode: decoupled, sem_dim: 8, geo_dim: 16, v_dim: 16"));
    char *at = strstr(text, "n_kv_heads: 2");
    memcpy(at, "n_kv_heads: 1", 13);
    json_t *tplan = test_compile(text, "teacher1");
    cb_model t4;
    if (!tplan || cb_model_init(&t4, tplan, 1, &e) != CB_OK) { FAILF("setup"); free_pair(&p); return; }
    cb_surgery_options o = {.context = 8};
    int rc = cb_surgery(&p.s, &t4, &o, &e);
    EXPECT_EQ_INT(CB_E_INVALID, rc);
    if (rc) fprintf(stderr, "  %s\n", e.msg);
    EXPECT(strstr(e.msg, "n_kv_heads") != NULL);
    cb_model_free(&t4);
    json_decref(tplan);
    free_pair(&p);
}
