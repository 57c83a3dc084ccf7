/* test_sample.c: the sampler's distributions (temperature, top-k, top-p against brute force),
 * seeded repeatability, empirical frequencies, and the stop rules (stop strings, hold-back
 * while streaming, UTF-8 completeness). */
#include <stdlib.h>
#include "infer/sample.h"
#include "test.h"

static cb_sampler make(double temperature, int top_k, double top_p, uint64_t seed, int V) {
    cb_sample_config c = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed};
    cb_sampler s;
    cb_error e;
    if (cb_sampler_init(&s, &c, V, &e) != CB_OK) FAILF("sampler init: %s", e.msg);
    return s;
}

TEST(greedy_takes_argmax_lowest_id_on_tie) {
    float logits[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    double probs[5];
    cb_sampler s = make(0, 0, 1, 1, 5);
    EXPECT_EQ_INT(1, cb_sampler_next(&s, logits, probs));
    cb_sampler_probs(&s, logits, probs);
    EXPECT_NEAR(1.0, probs[1], 0);
    EXPECT_NEAR(0.0, probs[3], 0);
    cb_sampler_free(&s);
}

TEST(temperature_is_softmax_of_scaled_logits) {
    float logits[4] = {1.0f, 2.0f, 0.0f, -1.0f};
    double probs[4], want[4], z = 0;
    const double T = 0.7;
    for (int i = 0; i < 4; i++) z += want[i] = exp(logits[i] / T);
    cb_sampler s = make(T, 0, 1, 1, 4);
    cb_sampler_probs(&s, logits, probs);
    double diff = 0;
    for (int i = 0; i < 4; i++) diff = cb_test_worst(diff, fabs(probs[i] - want[i] / z));
    REPORT_DIFF("softmax(logits / 0.7)", diff, 1e-15);
    EXPECT(diff <= 1e-15);
    cb_sampler_free(&s);
}

TEST(top_k_keeps_k_largest_renormalised) {
    float logits[6] = {0.1f, 3.0f, 1.0f, 3.0f, 2.0f, -5.0f};
    double probs[6];
    cb_sampler s = make(1, 3, 1, 1, 6);
    cb_sampler_probs(&s, logits, probs);
    double z = exp(3.0) + exp(3.0) + exp(2.0);
    EXPECT_NEAR(exp(3.0) / z, probs[1], 1e-12);
    EXPECT_NEAR(exp(3.0) / z, probs[3], 1e-12);
    EXPECT_NEAR(exp(2.0) / z, probs[4], 1e-12);
    EXPECT_NEAR(0, probs[0] + probs[2] + probs[5], 0);
    cb_sampler_free(&s);
    // a tie at the k-th place goes to the lower id
    s = make(1, 1, 1, 1, 6);
    cb_sampler_probs(&s, logits, probs);
    EXPECT_NEAR(1.0, probs[1], 0);
    EXPECT_NEAR(0.0, probs[3], 0);
    cb_sampler_free(&s);
}

TEST(top_p_keeps_the_nucleus) {
    // probabilities 0.5, 0.3, 0.15, 0.05 as logits
    float logits[4] = {(float)log(0.15), (float)log(0.5), (float)log(0.05), (float)log(0.3)};
    double probs[4];
    cb_sampler s = make(1, 0, 0.79, 1, 4);
    cb_sampler_probs(&s, logits, probs);
    EXPECT_NEAR(0.5 / 0.8, probs[1], 1e-6);
    EXPECT_NEAR(0.3 / 0.8, probs[3], 1e-6);
    EXPECT_NEAR(0, probs[0] + probs[2], 0);
    cb_sampler_free(&s);
    s = make(1, 0, 0.81, 1, 4);
    cb_sampler_probs(&s, logits, probs);
    EXPECT(probs[0] > 0 && probs[2] == 0);
    cb_sampler_free(&s);
    s = make(1, 0, 0.0, 1, 4); // top_p 0 keeps the most likely token only
    cb_sampler_probs(&s, logits, probs);
    EXPECT_NEAR(1.0, probs[1], 0);
    cb_sampler_free(&s);
}

/* Brute force: sort every id, apply top-k then top-p on the renormalised set. */
static void brute(double *out, const float *logits, int V, double T, int k, double p) {
    cb_sample_cand *c = malloc(sizeof *c * V);
    float mx = logits[cb_argmax(logits, V)];
    for (int i = 0; i < V; i++) c[i] = (cb_sample_cand){exp(((double)logits[i] - mx) / T), i};
    for (int i = 0; i < V; i++) // insertion sort: larger p first, then smaller id
        for (int j = i; j > 0 && (c[j].p > c[j - 1].p || (c[j].p == c[j - 1].p && c[j].id < c[j - 1].id)); j--) {
            cb_sample_cand t = c[j]; c[j] = c[j - 1]; c[j - 1] = t;
        }
    int n = k > 0 && k < V ? k : V;
    double mass = 0;
    for (int i = 0; i < n; i++) mass += c[i].p;
    if (p < 1) {
        double cum = 0;
        int m = 0;
        while (m < n) { cum += c[m++].p; if (cum >= p * mass) break; }
        n = m;
        mass = cum;
    }
    for (int i = 0; i < V; i++) out[i] = 0;
    for (int i = 0; i < n; i++) out[c[i].id] = c[i].p / mass;
    free(c);
}

TEST(top_k_top_p_match_brute_force_on_random_logits) {
    const int V = 600;
    float *logits = malloc(sizeof *logits * V);
    double *got = malloc(sizeof *got * V), *want = malloc(sizeof *want * V);
    cb_rng r;
    cb_rng_init(&r, 5);
    const double ps[] = {0.1, 0.5, 0.9, 0.99, 1.0};
    const int ks[] = {0, 1, 7, 100};
    double worst = 0;
    for (int trial = 0; trial < 6; trial++) {
        for (int i = 0; i < V; i++) logits[i] = (float)(3 * cb_rng_normal(&r));
        if (trial == 5) for (int i = 0; i < V; i++) logits[i] = (float)(int)logits[i]; // many ties
        for (size_t a = 0; a < sizeof ps / sizeof *ps; a++)
            for (size_t b = 0; b < sizeof ks / sizeof *ks; b++) {
                cb_sampler s = make(0.8, ks[b], ps[a], 1, V);
                cb_sampler_probs(&s, logits, got);
                brute(want, logits, V, 0.8, ks[b], ps[a]);
                for (int i = 0; i < V; i++) {
                    if ((got[i] > 0) != (want[i] > 0)) FAILF("trial %d p %g k %d: id %d kept %d vs %d", trial, ps[a], ks[b], i, got[i] > 0, want[i] > 0);
                    worst = cb_test_worst(worst, fabs(got[i] - want[i]));
                }
                cb_sampler_free(&s);
            }
    }
    REPORT_DIFF("top-k/top-p vs brute force", worst, 1e-12);
    EXPECT(worst <= 1e-12);
    free(logits); free(got); free(want);
}

TEST(seeded_draws_repeat_and_differ_across_seeds) {
    float logits[8] = {0, 0.5f, 1, 1.5f, 0.2f, -0.3f, 0.9f, 0.1f};
    double probs[8];
    int32_t a[64], b[64], c[64];
    cb_sampler s1 = make(1, 0, 1, 42, 8), s2 = make(1, 0, 1, 42, 8), s3 = make(1, 0, 1, 43, 8);
    int same13 = 1;
    for (int i = 0; i < 64; i++) {
        a[i] = cb_sampler_next(&s1, logits, probs);
        b[i] = cb_sampler_next(&s2, logits, probs);
        c[i] = cb_sampler_next(&s3, logits, probs);
        if (a[i] != b[i]) FAILF("draw %d: %d vs %d with the same seed", i, a[i], b[i]);
        same13 &= a[i] == c[i];
    }
    EXPECT(!same13);
    cb_sampler_free(&s1); cb_sampler_free(&s2); cb_sampler_free(&s3);
}

TEST(draw_frequencies_follow_the_distribution) {
    // 40000 draws of 4 outcomes; each frequency within 5 standard errors
    float logits[4] = {0.0f, 1.0f, 2.0f, -1.0f};
    double probs[4], want[4], z = 0;
    for (int i = 0; i < 4; i++) z += want[i] = exp(logits[i]);
    int counts[4] = {0};
    const int n = 40000;
    cb_sampler s = make(1, 0, 1, 7, 4);
    for (int i = 0; i < n; i++) counts[cb_sampler_next(&s, logits, probs)]++;
    for (int i = 0; i < 4; i++) {
        double p = want[i] / z, se = sqrt(p * (1 - p) / n), f = (double)counts[i] / n;
        if (fabs(f - p) > 5 * se) FAILF("id %d: frequency %.4f, probability %.4f (5 se = %.4f)", i, f, p, 5 * se);
    }
    cb_sampler_free(&s);
}

TEST(inverse_cdf_edges) {
    double p[4] = {0, 0.25, 0, 0.75};
    EXPECT_EQ_INT(1, cb_sample_inverse_cdf(p, 4, 0.0));
    EXPECT_EQ_INT(1, cb_sample_inverse_cdf(p, 4, 0.2499));
    EXPECT_EQ_INT(3, cb_sample_inverse_cdf(p, 4, 0.25));
    EXPECT_EQ_INT(3, cb_sample_inverse_cdf(p, 4, 0.9999999999));
    double zero[3] = {0, 0, 0};
    EXPECT_EQ_INT(-1, cb_sample_inverse_cdf(zero, 3, 0.5));
}

TEST(stop_strings_found_only_in_new_bytes) {
    cb_stop_config c = {.max_new_tokens = 10, .n_strings = 2, .strings = {"\n\n", "END"}};
    const char *t = "abc\n\nxyEND";
    EXPECT_EQ_INT(3, (long long)cb_stop_find(&c, t, strlen(t), 0));
    EXPECT_EQ_INT(3, (long long)cb_stop_find(&c, t, strlen(t), 4)); // "\n\n" ends at byte 5 > 4
    EXPECT_EQ_INT(7, (long long)cb_stop_find(&c, t, strlen(t), 5));
    EXPECT(cb_stop_find(&c, "abc", 3, 0) == SIZE_MAX);
    EXPECT_EQ_INT(2, (long long)cb_stop_holdback(&c, "xxEN", 4));
    EXPECT_EQ_INT(1, (long long)cb_stop_holdback(&c, "xx\n", 3));
    EXPECT_EQ_INT(0, (long long)cb_stop_holdback(&c, "xxEND!", 6));
    c.n_eos = 2, c.eos[0] = 50256, c.eos[1] = 0;
    EXPECT(cb_stop_is_eos(&c, 0) && cb_stop_is_eos(&c, 50256) && !cb_stop_is_eos(&c, 1));
    EXPECT_EQ_STR("stop", cb_stop_reason_name(CB_STOP_STRING));
}

TEST(utf8_complete_holds_a_split_character) {
    const char *euro = "a\xe2\x82\xac"; // a + EURO SIGN (3 bytes)
    EXPECT_EQ_INT(4, (long long)cb_utf8_complete(euro, 4));
    EXPECT_EQ_INT(1, (long long)cb_utf8_complete(euro, 3));
    EXPECT_EQ_INT(1, (long long)cb_utf8_complete(euro, 2));
    EXPECT_EQ_INT(0, (long long)cb_utf8_complete("\xf0\x9f\x98", 3));
    EXPECT_EQ_INT(4, (long long)cb_utf8_complete("\xf0\x9f\x98\x80", 4));
    EXPECT_EQ_INT(2, (long long)cb_utf8_complete("a\xff", 2)); // not UTF-8: passed on
}

TEST(utf8_validation_and_sanitizing) {
    EXPECT(cb_utf8_invalid_at("plain \xe2\x82\xac \xf0\x9f\x98\x80", 14) == SIZE_MAX);
    EXPECT_EQ_INT(2, (long long)cb_utf8_invalid_at("ab\xff", 3));
    EXPECT_EQ_INT(0, (long long)cb_utf8_invalid_at("\xc0\xaf", 2));     // overlong '/'
    EXPECT_EQ_INT(0, (long long)cb_utf8_invalid_at("\xed\xa0\x80", 3)); // a surrogate
    EXPECT_EQ_INT(1, (long long)cb_utf8_invalid_at("a\xe2\x82", 3));    // cut short
    EXPECT_EQ_INT(0, (long long)cb_utf8_invalid_at("\xf4\x90\x80\x80", 4)); // past U+10FFFF
    cb_bytes b = {0};
    cb_error e;
    EXPECT(cb_utf8_sanitize("a\xff\xe2\x82\xac", 5, &b, &e) == CB_OK);
    EXPECT(b.n == 7 && memcmp(b.p, "a\xef\xbf\xbd\xe2\x82\xac", 7) == 0);
    cb_bytes_free(&b);
}
