/* test_measure.c: the measurements of lib/bench on tiny models: perplexity against a
 * direct computation (full forward pass, log-softmax in double), KV cache bytes per token
 * against the figure worked from each model's attention shapes and the cache kind's block
 * layout (docs/DESIGN.md section 5), latency fields present and consistent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "bench/latency.h"
#include "bench/memory.h"
#include "bench/perplexity.h"
#include "data/dataset.h"
#include "unit/infer/infer_util.h"
#include "test.h"

/* a .tokens file of n ids below vocab; path filled */
static int write_tokens(char *path, size_t cap, int n, int vocab, uint64_t seed) {
    snprintf(path, cap, "/tmp/cb_bench_test_%d_%llu.tokens", (int)getpid(), (unsigned long long)seed);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    int32_t *t = malloc((size_t)n * sizeof *t);
    iu_tokens(t, n, vocab, seed);
    for (int i = 0; i < n; i++) fprintf(f, "%d\n", t[i]);
    free(t);
    return fclose(f) != 0;
}

/* mean next-token NLL over the windows, computed directly from full-sequence logits */
static double direct_loss(const cb_model *m, const cb_dataset *ds, int B, int T, int nb) {
    double sum = 0;
    long count = 0;
    int32_t *x = malloc((size_t)T * sizeof *x);
    for (int b = 0; b < nb; b++)
        for (int row = 0; row < B; row++) {
            size_t start = ((size_t)b * B + row) * (size_t)T;
            for (int t = 0; t < T; t++) x[t] = (int32_t)cb_dataset_token(ds, start + t);
            float *logits = iu_full_logits(m, x, T);
            if (!logits) return NAN;
            int V = (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
            for (int t = 0; t < T; t++) {
                const float *l = logits + (size_t)t * V;
                double mx = l[0], z = 0;
                for (int v = 1; v < V; v++) mx = l[v] > mx ? l[v] : mx;
                for (int v = 0; v < V; v++) z += exp((double)l[v] - mx);
                int y = (int)cb_dataset_token(ds, start + t + 1);
                sum += -((double)l[y] - mx - log(z));
                count++;
            }
            free(logits);
        }
    free(x);
    return sum / count;
}

TEST(perplexity_matches_direct_computation) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 7, 3.0)) { FAILF("model"); return; }
    char path[256];
    if (write_tokens(path, sizeof path, 200, 48, 9)) { FAILF("tokens file"); cb_model_free(&m); return; }
    cb_dataset ds;
    cb_error e;
    if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("dataset: %s", e.msg); cb_model_free(&m); return; }
    /* B 2, T 16: windows start at 0, 16, ..., the last needing 17 tokens: (200-17)/16+1 = 12
     * windows, 6 batches; asking 10 gives the 6 there are */
    cb_ppl_result r;
    if (cb_perplexity_measure(&r, &m, NULL, &ds, 2, 16, 10, &e) != CB_OK) FAILF("measure: %s", e.msg);
    else {
        EXPECT_EQ_INT(6, r.batches);
        EXPECT_EQ_INT(6 * 2 * 16, r.tokens);
        double want = direct_loss(&m, &ds, 2, 16, 6);
        double rel = fabs(r.loss - want) / want;
        REPORT_DIFF("perplexity loss vs direct (relative)", rel, 1e-5);
        if (!(rel <= 1e-5)) FAILF("loss %.9g, direct %.9g", r.loss, want);
        EXPECT_NEAR(exp(r.loss), r.perplexity, 1e-9 * r.perplexity);
        EXPECT(r.batch_loss.ci95_lo <= r.loss && r.loss <= r.batch_loss.ci95_hi);
    }
    /* fewer tokens than one batch */
    if (cb_perplexity_measure(&r, &m, NULL, &ds, 4, 64, 1, &e) != CB_E_INVALID) FAILF("short dataset accepted");
    cb_dataset_close(&ds);
    remove(path);
    cb_model_free(&m);
}

/* Perplexity through a KV cache (a decode session, the session's prefill chunks): with an
 * fp32 cache the direct computation's within 1e-5 relative (decode attention is within
 * 1e-5 of the forward's, the other products sum in other orders); through q4_0 caches
 * (IU_LLAMA's rows of 16 are packed, 2 tokens a block; IU_DBA's rows of 8, 12, 16, 32)
 * another, finite value, within 5% (a trained-like scale of weights, 3.0: the cache's
 * rounding moves the logits a little). Each window starts from an empty cache: the same
 * value whatever ran before. */
TEST(perplexity_through_a_kv_cache) {
    const char *names[2] = {"llama_gqa", "dba"};
    const char *yamls[2] = {IU_LLAMA, IU_DBA};
    for (int mi = 0; mi < 2; mi++) {
        cb_model m;
        if (iu_model(&m, yamls[mi], 7, 3.0)) { FAILF("model"); return; }
        const int V = (int)json_integer_value(json_object_get(json_object_get(m.plan, "model"), "vocab_size"));
        char path[256];
        if (write_tokens(path, sizeof path, 200, V, 11 + mi)) { FAILF("tokens"); cb_model_free(&m); return; }
        cb_dataset ds;
        cb_error e;
        if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("dataset: %s", e.msg); cb_model_free(&m); return; }
        const cb_kv_kinds f32 = {CB_KV_F32, CB_KV_F32, CB_KV_F32}, q4 = {CB_KV_Q4_0, CB_KV_Q4_0, CB_KV_Q4_0};
        cb_ppl_result r, rf, rq, rq2;
        if (cb_perplexity_measure(&r, &m, NULL, &ds, 2, 16, 4, &e) != CB_OK ||
            cb_perplexity_measure_cached(&rf, &m, NULL, &ds, 2, 16, 4, &f32, &e) != CB_OK ||
            cb_perplexity_measure_cached(&rq, &m, NULL, &ds, 2, 16, 4, &q4, &e) != CB_OK ||
            cb_perplexity_measure_cached(&rq2, &m, NULL, &ds, 2, 16, 4, &q4, &e) != CB_OK) {
            FAILF("%s: %s", names[mi], e.msg);
        } else {
            char what[96];
            const double df = fabs(rf.loss - r.loss) / r.loss, dq = fabs(rq.perplexity / r.perplexity - 1);
            snprintf(what, sizeof what, "%s fp32 cache vs forward loss (relative)", names[mi]);
            REPORT_DIFF(what, df, 1e-5);
            if (!(df <= 1e-5)) FAILF("%s: %s %.3g", names[mi], what, df);
            snprintf(what, sizeof what, "%s q4_0 cache perplexity vs forward (ratio - 1)", names[mi]);
            REPORT_DIFF(what, dq, 0.05);
            if (!(isfinite(rq.perplexity) && rq.perplexity != r.perplexity && dq <= 0.05))
                FAILF("%s: q4_0 perplexity %.9g, forward %.9g", names[mi], rq.perplexity, r.perplexity);
            EXPECT(rq.tokens == r.tokens && rf.batches == r.batches);
            EXPECT(rq2.loss == rq.loss);
        }
        cb_dataset_close(&ds);
        remove(path);
        cb_model_free(&m);
    }
}

/* KV bytes of 40 tokens from the live cache against the hand figure, for every cache kind. */
static void check_kv(const char *name, const char *yaml, const size_t want[6]) {
    cb_model m;
    if (iu_model(&m, yaml, 5, 1.0)) { FAILF("%s: model", name); return; }
    const int L = 40;
    int32_t prompt[40];
    int V = (int)json_integer_value(json_object_get(json_object_get(m.plan, "model"), "vocab_size"));
    iu_tokens(prompt, L, V, 3);
    static const cb_kv_kind kinds[6] = {CB_KV_F32, CB_KV_F16, CB_KV_BF16, CB_KV_Q8_0, CB_KV_Q4_0, CB_KV_NF4};
    for (int k = 0; k < 6; k++) {
        cb_kv_kinds kk = {kinds[k], kinds[k], kinds[k]};
        cb_memory_result r;
        cb_error e;
        if (cb_memory_measure(&r, &m, NULL, &kk, prompt, L, 1, &e) != CB_OK) {
            FAILF("%s %s: %s", name, cb_kv_kind_name(kinds[k]), e.msg);
            continue;
        }
        if (r.tokens != L || r.kv_bytes != want[k] || r.kv_bytes_per_token != (double)want[k] / L)
            FAILF("%s %s: %d tokens, %zu bytes (%.3f per token), expected %zu", name, cb_kv_kind_name(kinds[k]),
                  r.tokens, r.kv_bytes, r.kv_bytes_per_token, want[k]);
        EXPECT(r.kv_allocated_bytes >= r.kv_bytes);
        EXPECT(r.peak_rss_bytes > 0 && r.rss_bytes > 0 && r.peak_rss_bytes >= r.rss_bytes);
    }
    cb_model_free(&m);
}

TEST(kv_bytes_per_token_match_the_analytic_figure) {
    /* IU_LLAMA: 2 layers, n_kv_heads 2, head_dim 32/4 = 8; k and v each 2 heads of 8 values,
     * a token's row of 16. fp32 8*4 = 32 bytes a head; fp16/bf16 16. Heads narrower than a
     * block are packed (infer/kv_cache.h): the rows of lcm(16, block) / 16 tokens share whole
     * blocks, q8_0 2 tokens a 34-byte block (17 a token), q4_0 2 tokens an 18-byte block (9),
     * nf4 4 tokens a 34-byte block (8.5); 40 tokens fill every block. 40 tokens x 2 layers x
     * (k + v) x bytes a token and tensor. */
    const size_t llama[6] = {40 * 2 * 2 * 2 * 32, 40 * 2 * 2 * 2 * 16, 40 * 2 * 2 * 2 * 16, 40 * 4 * 17, 40 * 4 * 9,
                             40 * 4 * 17 / 2};
    check_kv("llama_gqa", IU_LLAMA, llama);
    /* IU_DBA: layer 1: 4 heads, 2 kv heads, d_sem 16/4 = 4, d_geo 32/4 = 8, d_v 24/4 = 6
     * (rows of 8, 16, 12); layer 2: 2 heads (2 kv), d_sem 8/2 = 4, d_geo 16/2 = 8, d_v
     * 32/2 = 16 (rows of 8, 16, 32). fp32: 2*(4+8+6)*4 + 2*(4+8+16)*4 = 144 + 224 a token;
     * 2-byte kinds half that. Packed, tokens a row of blocks and bytes a token:
     *   q8_0 (34-byte blocks of 32): 8: 4, 8.5; 16: 2, 17; 12: lcm 96 = 8 tokens in 3
     *     blocks, 12.75; 32: 1, 34. A token 8.5 + 17 + 12.75 + 8.5 + 17 + 34 = 97.75, x 40 = 3910.
     *   q4_0 (18-byte blocks): 4.5 + 9 + 6.75 + 4.5 + 9 + 18 = 51.75, x 40 = 2070.
     *   nf4 (34-byte blocks of 64): 8: 8 tokens, 4.25; 16: 4, 8.5; 12: lcm 192 = 16 tokens in
     *     3 blocks, 6.375; 32: 2, 17. 40 tokens are 2 rows of 16 of the 12-wide tensor and 8
     *     on its float stage (8 x 12 x 4 = 384 bytes): 40 x (4.25 + 8.5 + 4.25 + 8.5 + 17)
     *     + 2 x 102 + 384 = 1700 + 588 = 2288. (Per head, padded: 12 blocks a token.) */
    const size_t dba[6] = {40 * 368, 40 * 184, 40 * 184, 3910, 2070, 2288};
    check_kv("dba", IU_DBA, dba);
}

TEST(latency_fields_present_and_consistent) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 2, 1.0)) { FAILF("model"); return; }
    cb_session s;
    cb_session_config sc = cb_session_config_default();
    sc.max_seq_len = 24;
    cb_error e;
    if (cb_session_init(&s, &m, &sc, &e) != CB_OK) { FAILF("session: %s", e.msg); cb_model_free(&m); return; }
    int32_t prompt[16];
    iu_tokens(prompt, 16, 48, 4);
    cb_latency_result r;
    if (cb_latency_measure(&r, &s, prompt, 16, 8, 1, 5, &e) != CB_OK) FAILF("measure: %s", e.msg);
    else {
        const cb_stats *all[] = {&r.prefill_ms, &r.decode_tok_s, &r.decode_ms_per_token, &r.total_tok_s};
        for (int k = 0; k < 4; k++) {
            const cb_stats *x = all[k];
            if (x->n != 5 || !(x->min > 0) || !(x->min <= x->p50 && x->p50 <= x->p90 && x->p90 <= x->max) ||
                !(x->ci95_lo <= x->mean && x->mean <= x->ci95_hi))
                FAILF("stats %d: n %d min %g p50 %g p90 %g max %g ci [%g, %g] mean %g", k, x->n, x->min, x->p50, x->p90,
                      x->max, x->ci95_lo, x->ci95_hi, x->mean);
        }
        /* tokens/s and ms per token are two views of the same runs */
        EXPECT_NEAR(1e3 / r.decode_ms_per_token.max, r.decode_tok_s.min, 1e-6 * r.decode_tok_s.min);
        /* the last run's prompt and the 7 new tokens fed back (the 8th is sampled, never run) */
        EXPECT_EQ_INT(23, s.len);
    }
    cb_session_free(&s);
    cb_model_free(&m);
}

TEST(prompt_ids_seeded_or_from_data) {
    int32_t a[32], b[32];
    cb_error e;
    EXPECT(cb_bench_prompt_ids(a, 32, 50, NULL, &e) == CB_OK);
    EXPECT(cb_bench_prompt_ids(b, 32, 50, NULL, &e) == CB_OK);
    int same = 1, in_range = 1;
    for (int i = 0; i < 32; i++) {
        same &= a[i] == b[i];
        in_range &= a[i] >= 0 && a[i] < 50;
    }
    EXPECT(same && in_range);
    char path[256];
    if (write_tokens(path, sizeof path, 40, 50, 77)) { FAILF("tokens file"); return; }
    cb_dataset ds;
    if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("open: %s", e.msg); return; }
    EXPECT(cb_bench_prompt_ids(a, 32, 50, path, &e) == CB_OK);
    for (int i = 0; i < 32; i++)
        if (a[i] != cb_dataset_token(&ds, (size_t)i)) { FAILF("prompt id %d is %d, data has %lld", i, a[i], (long long)cb_dataset_token(&ds, (size_t)i)); break; }
    EXPECT(cb_bench_prompt_ids(a, 32, 10, path, &e) == CB_E_INVALID); /* ids past a smaller vocabulary */
    EXPECT(cb_bench_prompt_ids(b, 32, 50, "/nonexistent.tokens", &e) == CB_E_IO);
    cb_dataset_close(&ds);
    remove(path);
}
