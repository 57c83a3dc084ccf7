/* test_speculative.c: speculative decoding. greedy: the output equals the target's plain
 * greedy output exactly, whatever the draft, k, adaptivity, extra token or fallback.
 * reject_sampling: a chi-square goodness-of-fit test of the generated tokens against the
 * target's exact distribution (computed from full forward passes over every continuation)
 * on a 12-token vocabulary; plain sampling from the target passes the same test and
 * sampling from the draft fails it, so the test has the power to see a wrong rule. */
#include <omp.h>
#include <stdlib.h>
#include "infer/speculative.h"
#include "infer_util.h"
#include "test.h"

static int session_of(cb_session *s, const cb_model *m, int max_seq_len) {
    cb_session_config c = cb_session_config_default();
    c.max_seq_len = max_seq_len;
    cb_error e;
    if (cb_session_init(s, m, &c, &e) != CB_OK) {
        FAILF("session: %s", e.msg);
        return 1;
    }
    return 0;
}

/* A copy of m's weights plus noise of the given size: a draft that mostly agrees. */
static void perturb(cb_model *m, double size, uint64_t seed) {
    cb_rng r;
    cb_rng_init(&r, seed);
    for (size_t i = 0; i < m->params.total_floats; i++) m->weights[i] += (float)(size * cb_rng_normal(&r));
}

TEST(accept_or_resample_rule) {
    double p[3] = {0.5, 0.5, 0}, q[3] = {0.9, 0.1, 0}, w[3];
    int ok;
    // accept x = 0 with probability 0.5 / 0.9
    EXPECT_EQ_INT(0, cb_spec_accept_or_resample(p, q, 3, 0, 0.55, 0.3, w, &ok));
    EXPECT(ok);
    EXPECT_EQ_INT(1, cb_spec_accept_or_resample(p, q, 3, 0, 0.56, 0.3, w, &ok)); // residual (0, 0.4, 0)
    EXPECT(!ok);
    EXPECT_EQ_INT(1, cb_spec_accept_or_resample(p, q, 3, 1, 0.99, 0.3, w, &ok)); // p >= q: always kept
    EXPECT(ok);
}

TEST(greedy_speculative_equals_target_greedy) {
    cb_model target, close_draft, other_draft;
    if (iu_model(&target, IU_LLAMA, 1, 5.0) || iu_model(&close_draft, IU_LLAMA, 1, 5.0) ||
        iu_model(&other_draft, IU_LLAMA, 77, 5.0)) {
        FAILF("models");
        return;
    }
    perturb(&close_draft, 0.003, 5);
    const cb_model *drafts[3] = {&target, &close_draft, &other_draft};
    const char *draft_names[3] = {"self", "close", "unrelated"};
    cb_session ts, ds;
    if (session_of(&ts, &target, 48)) return;
    int32_t prompt[5];
    iu_tokens(prompt, 5, 48, 3);
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = 30;
    cb_generate_io io = {0};
    cb_generate_output want, got;
    cb_error e;
    if (cb_session_generate(&ts, prompt, 5, &g, &io, &want, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    EXPECT_EQ_INT(30, (long long)want.ids.n);
    int runs = 0;
    for (int d = 0; d < 3; d++) {
        if (session_of(&ds, drafts[d], 48)) break;
        const int ks[] = {1, 2, 4, 7};
        for (int ki = 0; ki < 4; ki++)
            for (int variant = 0; variant < 4; variant++) {
                cb_spec_config sc = cb_spec_config_default();
                sc.spec_k = ks[ki];
                sc.method = variant == 3 ? CB_SPEC_REJECT_SAMPLING : CB_SPEC_GREEDY; // at temperature 0
                sc.spec_k_adaptive = variant == 1;
                sc.extra_token = variant != 2;
                if (d == 2 && ki == 3) sc.disable_below_accept = 0.9; // falls back to plain decoding
                g.sample.temperature = variant == 3 ? 0 : 0.7;     // greedy ignores the temperature
                if (cb_speculative_generate(&ts, &ds, prompt, 5, &g, &sc, &io, &got, &e) != CB_OK) {
                    FAILF("%s", e.msg);
                    continue;
                }
                runs++;
                int same = got.ids.n == want.ids.n && memcmp(got.ids.v, want.ids.v, sizeof *got.ids.v * got.ids.n) == 0;
                if (!same) FAILF("draft %s k %d variant %d: output differs from greedy", draft_names[d], ks[ki], variant);
                if (d == 0 && got.stats.accepted != got.stats.drafted)
                    FAILF("self-draft accepted %ld of %ld", got.stats.accepted, got.stats.drafted);
                if (d == 2 && ki == 3 && !got.stats.spec_fallback) FAILF("no fallback at acceptance %ld/%ld",
                                                                          got.stats.accepted, got.stats.drafted);
                if (variant == 0 && ki == 2)
                    fprintf(stderr, "  draft %-9s k 4: %d rounds, acceptance %ld/%ld\n", draft_names[d],
                            got.stats.spec_rounds, got.stats.accepted, got.stats.drafted);
                cb_generate_output_free(&got);
            }
        cb_session_free(&ds);
    }
    EXPECT_EQ_INT(48, runs);
    cb_generate_output_free(&want);
    cb_session_free(&ts);
    cb_model_free(&target);
    cb_model_free(&close_draft);
    cb_model_free(&other_draft);
}

/* Packed KV caches (infer/kv_cache.h: heads of 8 in q4_0 and nf4, a token's row of 16
 * values is half or a quarter of a block, the newest tokens on the float stage): every
 * verification appends k + 1 tokens and rolls back the rejected ones mid-block, and the
 * greedy output is still the target's plain greedy output with the same cache. */
TEST(greedy_speculative_packed_caches) {
    cb_model target, draft;
    if (iu_model(&target, IU_LLAMA, 1, 5.0) || iu_model(&draft, IU_LLAMA, 1, 5.0)) {
        FAILF("models");
        return;
    }
    perturb(&draft, 0.003, 5);
    const cb_kv_kind kinds[2] = {CB_KV_Q4_0, CB_KV_NF4};
    int32_t prompt[5];
    iu_tokens(prompt, 5, 48, 3);
    for (int ki = 0; ki < 2; ki++) {
        cb_session_config c = cb_session_config_default();
        c.max_seq_len = 48;
        c.kinds = (cb_kv_kinds){kinds[ki], kinds[ki], kinds[ki]};
        cb_session ts, ds;
        cb_error e;
        if (cb_session_init(&ts, &target, &c, &e) != CB_OK || cb_session_init(&ds, &draft, &c, &e) != CB_OK) {
            FAILF("session: %s", e.msg);
            return;
        }
        EXPECT(cb_layer_cache_packed(&ts.dec.kv.layers[0]));
        cb_generate_config g = cb_generate_config_default();
        g.sample.temperature = 0;
        g.stop.max_new_tokens = 30;
        cb_generate_io io = {0};
        cb_generate_output want, got;
        if (cb_session_generate(&ts, prompt, 5, &g, &io, &want, &e) != CB_OK) { FAILF("%s", e.msg); return; }
        const int ks[] = {1, 2, 4, 7};
        for (int i = 0; i < 4; i++) {
            cb_spec_config sc = cb_spec_config_default();
            sc.spec_k = ks[i];
            sc.method = CB_SPEC_GREEDY;
            if (cb_speculative_generate(&ts, &ds, prompt, 5, &g, &sc, &io, &got, &e) != CB_OK) {
                FAILF("%s", e.msg);
                continue;
            }
            if (!(got.ids.n == want.ids.n && memcmp(got.ids.v, want.ids.v, sizeof *got.ids.v * got.ids.n) == 0))
                FAILF("%s cache, k %d: output differs from greedy", cb_kv_kind_name(kinds[ki]), ks[i]);
            if (got.stats.accepted == got.stats.drafted)
                fprintf(stderr, "  %s k %d: nothing rejected\n", cb_kv_kind_name(kinds[ki]), ks[i]);
            cb_generate_output_free(&got);
        }
        cb_generate_output_free(&want);
        cb_session_free(&ts);
        cb_session_free(&ds);
    }
    cb_model_free(&target);
    cb_model_free(&draft);
}

TEST(context_limit_and_vocabulary_check) {
    cb_model target, draft, small;
    if (iu_model(&target, IU_LLAMA, 1, 5.0) || iu_model(&draft, IU_LLAMA, 2, 5.0) || iu_model(&small, IU_DBA, 2, 1.0)) {
        FAILF("models");
        return;
    }
    cb_error e;
    EXPECT_EQ_INT(CB_E_INVALID, cb_spec_check_models(&target, &small, &e));
    EXPECT(strstr(e.msg, "vocabulary (40 tokens) differs from the target's (48)") != NULL);
    EXPECT(cb_spec_check_models(&target, &draft, &e) == CB_OK);
    cb_session ts, ds, ss;
    if (session_of(&ts, &target, 12) || session_of(&ds, &draft, 16) || session_of(&ss, &small, 16)) return;
    int32_t prompt[5];
    iu_tokens(prompt, 5, 40, 4);
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = 30;
    cb_spec_config sc = cb_spec_config_default();
    sc.method = CB_SPEC_GREEDY;
    cb_generate_io io = {0};
    cb_generate_output want, got;
    EXPECT_EQ_INT(CB_E_INVALID, cb_speculative_generate(&ts, &ss, prompt, 5, &g, &sc, &io, &got, &e));
    EXPECT(cb_session_generate(&ts, prompt, 5, &g, &io, &want, &e) == CB_OK);
    EXPECT(cb_speculative_generate(&ts, &ds, prompt, 5, &g, &sc, &io, &got, &e) == CB_OK);
    EXPECT_EQ_INT(CB_STOP_CONTEXT, got.stats.stop_reason);
    EXPECT_EQ_INT(8, (long long)got.ids.n); // the context of 12 holds 5 + 7; one more is sampled
    EXPECT(got.ids.n == want.ids.n && memcmp(got.ids.v, want.ids.v, sizeof *got.ids.v * got.ids.n) == 0);
    cb_generate_output_free(&want);
    cb_generate_output_free(&got);
    cb_session_free(&ts);
    cb_session_free(&ds);
    cb_session_free(&ss);
    cb_model_free(&target);
    cb_model_free(&draft);
    cb_model_free(&small);
}

/* ---- the chi-square test ---- */

#define CV 12 /* vocabulary */
#define CP 3  /* prompt tokens */
#define CN 4  /* generated tokens */
#define SMALL_MODEL IU_HEAD "  tie_embeddings: true\n" \
    "  embedder: {type: token, vocab_size: 12, d_model: 16}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: ResidualTopology\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 16}\n" \
    "          - {type: AttentionLayer, d_model: 16, n_heads: 2}\n" \
    "      - type: ResidualTopology\n        layers:\n" \
    "          - {type: RMSNormLayer, d_model: 16}\n" \
    "          - {type: SwiGLULayer, d_model: 16, d_ff: 16}\n" \
    "      - {type: RMSNormLayer, d_model: 16}\n"

/* Regularised upper incomplete gamma Q(a, x) (Numerical Recipes' gammq): the chi-square
 * p-value is Q(dof / 2, X^2 / 2). */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1;
    double gln = lgamma(a);
    if (x < a + 1) { // series for P, Q = 1 - P
        double ap = a, sum = 1 / a, del = sum;
        for (int n = 0; n < 1000 && fabs(del) > fabs(sum) * 1e-15; n++) sum += del *= x / ++ap;
        return 1 - sum * exp(-x + a * log(x) - gln);
    }
    double b = x + 1 - a, c = 1 / 1e-300, d = 1 / b, h = d; // continued fraction for Q (Lentz)
    for (int i = 1; i < 1000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return exp(-x + a * log(x) - gln) * h;
}

/* Pearson's X^2 of counts against probabilities (n cells, N draws). Cells expecting fewer
 * than 5 draws are pooled into one; a pool still under 5 joins the smallest other cell.
 * Sets *x2 and *dof (cells - 1); returns the p-value. */
static double chi_square(const long *counts, const double *probs, int n, long N, double *x2, int *dof) {
    double pool_e = 0, pool_o = 0;
    int smallest = -1;
    for (int i = 0; i < n; i++) {
        double E = probs[i] * N;
        if (E < 5) pool_e += E, pool_o += counts[i];
        else if (smallest < 0 || E < probs[smallest] * N) smallest = i;
    }
    double s = 0;
    int cells = 0;
    for (int i = 0; i < n; i++) {
        double E = probs[i] * N, O = counts[i];
        if (E < 5) continue;
        if (i == smallest && pool_e < 5) E += pool_e, O += pool_o, pool_e = pool_o = 0;
        s += (O - E) * (O - E) / E;
        cells++;
    }
    if (pool_e > 0) s += (pool_o - pool_e) * (pool_o - pool_e) / pool_e, cells++;
    *x2 = s;
    *dof = cells - 1;
    return gamma_q(*dof / 2.0, s / 2);
}

/* Exact distributions of the target under the sampler: pair[y1 * CV + y2] = P(y1, y2)
 * (the 2nd and 3rd tokens), last[y3] = P(y3) (the 4th), marginalising over the others,
 * from one full forward pass per continuation (y0, y1, y2). */
static void exact_distribution(const cb_model *m, const int32_t *prompt, const cb_sample_config *sc, double *pair,
                               double *last) {
    cb_sampler s;
    cb_program prog;
    cb_run run;
    cb_error e;
    if (cb_sampler_init(&s, sc, CV, &e) || cb_program_init(&prog, m->plan, &m->params, 1, CP + 3, &e) ||
        cb_run_init(&run, &prog, 0, &e)) {
        FAILF("reference: %s", e.msg);
        return;
    }
    const float *l = run.slots + prog.slots[prog.logits_slot].offset;
    double p0[CV], p1[CV], p2[CV], p3[CV];
    memset(pair, 0, sizeof(double) * CV * CV);
    memset(last, 0, sizeof(double) * CV);
    int32_t seq[CP + 3];
    memcpy(seq, prompt, sizeof(int32_t) * CP);
    for (int y0 = 0; y0 < CV; y0++)
        for (int y1 = 0; y1 < CV; y1++)
            for (int y2 = 0; y2 < CV; y2++) {
                seq[CP] = y0, seq[CP + 1] = y1, seq[CP + 2] = y2;
                cb_run_forward(&run, &prog, m->weights, seq, NULL);
                cb_sampler_probs(&s, l + (size_t)(CP - 1) * CV, p0);
                cb_sampler_probs(&s, l + (size_t)CP * CV, p1);
                cb_sampler_probs(&s, l + (size_t)(CP + 1) * CV, p2);
                cb_sampler_probs(&s, l + (size_t)(CP + 2) * CV, p3);
                double w = p0[y0] * p1[y1] * p2[y2];
                pair[y1 * CV + y2] += w;
                for (int y3 = 0; y3 < CV; y3++) last[y3] += w * p3[y3];
            }
    cb_run_free(&run);
    cb_program_free(&prog);
    cb_sampler_free(&s);
}

typedef struct sample_counts { long pair[CV * CV], last[CV]; double accepted, drafted; } sample_counts;

/* N generations of CN tokens, seeds 1..N: plain from `plain` when draft is NULL, else
 * speculative with target/draft. */
static int count_samples(cb_session *plain_or_target, cb_session *draft, const int32_t *prompt,
                         const cb_sample_config *sc, int N, sample_counts *c) {
    memset(c, 0, sizeof *c);
    cb_generate_config g = cb_generate_config_default();
    g.sample = *sc;
    g.stop.max_new_tokens = CN;
    cb_spec_config spec = cb_spec_config_default();
    spec.spec_k = 2;
    cb_generate_io io = {0};
    cb_generate_output out;
    cb_error e;
    for (int i = 0; i < N; i++) {
        g.sample.seed = 1000 + (uint64_t)i;
        int rc = draft ? cb_speculative_generate(plain_or_target, draft, prompt, CP, &g, &spec, &io, &out, &e)
                       : cb_session_generate(plain_or_target, prompt, CP, &g, &io, &out, &e);
        if (rc != CB_OK || out.ids.n != CN) {
            FAILF("sample %d: %s (%zu tokens)", i, rc ? e.msg : "", rc ? 0 : out.ids.n);
            if (rc == CB_OK) cb_generate_output_free(&out);
            return 1;
        }
        c->pair[out.ids.v[1] * CV + out.ids.v[2]]++;
        c->last[out.ids.v[3]]++;
        c->accepted += out.stats.accepted;
        c->drafted += out.stats.drafted;
        cb_generate_output_free(&out);
    }
    return 0;
}

/* Both statistics of one set of samples; returns the smaller p-value. */
static double report(const char *what, const sample_counts *c, const double *pair, const double *last, long N) {
    double x2a, x2b;
    int dofa, dofb;
    double pa = chi_square(c->pair, pair, CV * CV, N, &x2a, &dofa);
    double pb = chi_square(c->last, last, CV, N, &x2b, &dofb);
    fprintf(stderr, "  %-34s (y2,y3): X2 %7.2f dof %3d p %.3g | y4: X2 %6.2f dof %2d p %.3g\n", what, x2a, dofa, pa,
            x2b, dofb, pb);
    return pa < pb ? pa : pb;
}

TEST(reject_sampling_keeps_the_target_distribution_chi_square) {
    const int N = 12000;
    const double ALPHA = 1e-3; // p-value threshold of the goodness-of-fit test
    /* tens of thousands of passes of a few rows: thread teams would only cost */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    cb_model target, draft;
    if (iu_model(&target, SMALL_MODEL, 31, 6.0) || iu_model(&draft, SMALL_MODEL, 31, 6.0)) { FAILF("models"); return; }
    perturb(&draft, 0.015, 9); // a draft that agrees about two times in three
    int32_t prompt[CP] = {3, 7, 1};
    cb_session ts, ds;
    if (session_of(&ts, &target, 16) || session_of(&ds, &draft, 16)) return;
    const cb_sample_config configs[2] = {{.temperature = 1.0, .top_k = 0, .top_p = 1.0},
                                         {.temperature = 0.8, .top_k = 8, .top_p = 0.95}};
    double pair[CV * CV], last[CV];
    sample_counts c;
    for (int k = 0; k < 2; k++) {
        exact_distribution(&target, prompt, &configs[k], pair, last);
        char what[96];
        snprintf(what, sizeof what, "T %.1f top-k %d top-p %.2f speculative", configs[k].temperature, configs[k].top_k,
                 configs[k].top_p);
        if (count_samples(&ts, &ds, prompt, &configs[k], N, &c)) break;
        double p = report(what, &c, pair, last, N);
        fprintf(stderr, "  acceptance rate %.3f\n", c.accepted / c.drafted);
        if (!(p >= ALPHA)) FAILF("%s: p-value %.3g < %g", what, p, ALPHA);
        if (!(c.accepted > 0.2 * c.drafted && c.accepted < 0.95 * c.drafted))
            FAILF("acceptance %.0f / %.0f: the draft should be neither ignored nor copied", c.accepted, c.drafted);
        if (k == 0) {
            if (count_samples(&ts, NULL, prompt, &configs[k], N, &c)) break;
            p = report("plain sampling from the target", &c, pair, last, N);
            if (!(p >= ALPHA)) FAILF("plain sampling: p-value %.3g < %g", p, ALPHA);
            if (count_samples(&ds, NULL, prompt, &configs[k], N, &c)) break;
            p = report("plain sampling from the draft", &c, pair, last, N);
            if (!(p < 1e-6)) FAILF("the test does not tell the draft's distribution apart: p %.3g", p);
        }
    }
    cb_session_free(&ts);
    cb_session_free(&ds);
    cb_model_free(&target);
    cb_model_free(&draft);
    omp_set_num_threads(threads);
}
