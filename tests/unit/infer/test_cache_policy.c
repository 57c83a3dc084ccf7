/* test_cache_policy.c: cache_kind auto: the budget filter (and its error when nothing fits),
 * the quality gates (numbers recorded, thresholds between measured values drop exactly the
 * candidates above them), the benchmark, and the decisions file: reuse, other models and
 * settings, corrupt files and entries ignored with a warning and replaced, re-probing. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "infer/cache_policy.h"
#include "infer_util.h"
#include "test.h"

static cb_session_config session_cfg(int max_seq_len) {
    cb_session_config c = cb_session_config_default();
    c.max_seq_len = max_seq_len;
    return c;
}

static double mb_of(const cb_model *m, cb_kv_kind k, int tokens) {
    cb_kv_kinds kinds = {k, k, k};
    double b = 0;
    cb_error e;
    if (cb_cache_bytes_per_token(m, &kinds, &b, &e) != CB_OK) FAILF("%s", e.msg);
    return b * tokens / (1024.0 * 1024.0);
}

TEST(budget_filter_and_its_error) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 1, 3.0)) { FAILF("model"); return; }
    cb_session_config sc = session_cfg(1000);
    double f16 = mb_of(&m, CB_KV_F16, 1000), q8 = mb_of(&m, CB_KV_Q8_0, 1000), q4 = mb_of(&m, CB_KV_Q4_0, 1000);
    // 2 layers x (k + v) x 2 kv heads of 8 dims: a row of 16 values; q8_0 packs two tokens'
    // rows into one 34-byte block (kv_cache.h), 17 bytes a token and tensor
    EXPECT_NEAR(2 * 2 * 2 * 8 * 2 * 1000 / 1048576.0, f16, 1e-12);
    EXPECT_NEAR(2 * 2 * 17 * 1000 / 1048576.0, q8, 1e-12);
    EXPECT(q4 < q8);
    cb_cache_policy_config pc = cb_cache_policy_config_default();
    cb_cache_decision d;
    cb_error e;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    EXPECT_EQ_INT(CB_KV_F16, d.kinds.k); // no budget: the best quality
    pc.budget_mb = (q8 + f16) / 2;       // fp16 no longer fits
    if (q8 >= f16) pc.budget_mb = q8;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    if (q8 < f16) {
        EXPECT_EQ_INT(CB_KV_Q8_0, d.kinds.k);
        EXPECT(strstr(d.cand[0].verdict, "over budget") != NULL);
    }
    EXPECT_EQ_STR("chosen", d.cand[q8 < f16 ? 1 : 0].verdict);
    pc.budget_mb = q4 / 2;
    EXPECT_EQ_INT(CB_E_INVALID, cb_cache_policy_decide(&m, &sc, &pc, &d, &e));
    EXPECT(strstr(e.msg, "no cache kind fits cache_budget_mb") != NULL);
    cb_model_free(&m);
}

TEST(quality_gates_drop_exactly_the_candidates_above_them) {
    cb_model m;
    if (iu_model(&m, IU_DBA, 2, 3.0)) { FAILF("model"); return; }
    cb_session_config sc = session_cfg(256);
    cb_cache_policy_config pc = cb_cache_policy_config_default();
    pc.quality_prompt_len = 48;
    pc.quality_steps = 12;
    pc.max_delta_nll = 1e9; // every gate on, none binding: the numbers are recorded
    pc.max_mean_kl = 1e9;
    pc.max_ppl_ratio = 1e9;
    cb_cache_decision d;
    cb_error e;
    if (cb_cache_policy_decide(&m, &sc, &pc, &d, &e) != CB_OK) { FAILF("%s", e.msg); cb_model_free(&m); return; }
    double dn[CB_CACHE_CANDIDATES], kl[CB_CACHE_CANDIDATES];
    for (int i = 0; i < d.n_cand; i++) {
        dn[i] = d.cand[i].delta_nll;
        kl[i] = d.cand[i].mean_kl;
        fprintf(stderr, "  %-5s delta NLL %+.3e  PPL ratio %.6f  needle mean KL %.3e\n", cb_kv_kind_name(d.cand[i].kind),
                dn[i], d.cand[i].ppl_ratio, kl[i]);
        EXPECT(!isnan(dn[i]) && kl[i] >= 0);
        EXPECT_NEAR(exp(dn[i]), d.cand[i].ppl_ratio, 1e-12);
    }
    // fp16 is far closer to fp32 than the 4-bit kinds
    EXPECT(fabs(dn[0]) < fabs(dn[3]) && kl[0] < kl[2] && kl[0] < kl[3]);
    // a KL threshold between fp16's and the next smallest keeps fp16 only
    double second = kl[1] < kl[2] ? (kl[1] < kl[3] ? kl[1] : kl[3]) : (kl[2] < kl[3] ? kl[2] : kl[3]);
    pc.max_mean_kl = (kl[0] + second) / 2;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    EXPECT_EQ_INT(CB_KV_F16, d.kinds.k);
    for (int i = 1; i < d.n_cand; i++)
        if (kl[i] > pc.max_mean_kl && !strstr(d.cand[i].verdict, "needle mean KL")) FAILF("%s: %s", cb_kv_kind_name(d.cand[i].kind), d.cand[i].verdict);
    // without fp16 (budget) and a KL gate under everyone else's: nothing passes, exit 3 naming each
    pc.budget_mb = (mb_of(&m, CB_KV_F16, 256) + mb_of(&m, CB_KV_Q8_0, 256)) / 2;
    if (mb_of(&m, CB_KV_Q8_0, 256) < mb_of(&m, CB_KV_F16, 256)) {
        EXPECT_EQ_INT(CB_E_INVALID, cb_cache_policy_decide(&m, &sc, &pc, &d, &e));
        EXPECT(strstr(e.msg, "no cache kind passes the budget and quality gates") && strstr(e.msg, "fp16: over budget") &&
               strstr(e.msg, "q4_0: needle mean KL"));
    }
    // a delta-NLL gate at zero ("must not raise the NLL"): the first candidate at or under it
    pc.budget_mb = 0;
    pc.max_mean_kl = -1;
    pc.max_delta_nll = 0;
    int want = -1;
    for (int i = CB_CACHE_CANDIDATES - 1; i >= 0; i--)
        if (dn[i] <= 0) want = i;
    int rc = cb_cache_policy_decide(&m, &sc, &pc, &d, &e);
    if (want < 0) {
        EXPECT_EQ_INT(CB_E_INVALID, rc);
    } else {
        EXPECT(rc == CB_OK && d.kinds.k == d.cand[want].kind);
        for (int i = 0; i < d.n_cand; i++)
            if ((dn[i] > 0) != (strstr(d.cand[i].verdict, "delta NLL") != NULL))
                FAILF("%s: delta %g, verdict %s", cb_kv_kind_name(d.cand[i].kind), dn[i], d.cand[i].verdict);
    }
    cb_model_free(&m);
}

TEST(benchmark_keeps_the_fastest_survivor) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 3, 3.0)) { FAILF("model"); return; }
    cb_session_config sc = session_cfg(128);
    cb_cache_policy_config pc = cb_cache_policy_config_default();
    pc.benchmark = 1;
    pc.bench_steps = 4;
    pc.bench_prompt_len = 16;
    cb_cache_decision d;
    cb_error e;
    if (cb_cache_policy_decide(&m, &sc, &pc, &d, &e) != CB_OK) { FAILF("%s", e.msg); cb_model_free(&m); return; }
    int best = -1;
    for (int i = 0; i < d.n_cand; i++) {
        EXPECT(d.cand[i].tokens_per_s > 0);
        if (best < 0 || d.cand[i].tokens_per_s > d.cand[best].tokens_per_s) best = i;
    }
    EXPECT_EQ_INT(d.cand[best].kind, d.kinds.k);
    EXPECT_EQ_STR("chosen", d.cand[best].verdict);
    EXPECT(strstr(d.why, "tokens/s") != NULL);
    cb_model_free(&m);
}

static char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/cb_cache_plan_%d_%s.json", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid(), name);
    return p;
}

static int count_plans(const char *path) {
    json_t *doc;
    cb_error e;
    if (cb_doc_load(path, "cache_plans", &doc, &e) != CB_OK) return -1;
    int n = (int)json_object_size(json_object_get(doc, "plans"));
    json_decref(doc);
    return n;
}

TEST(decisions_file_reuse_other_models_corruption_and_probing) {
    cb_model m, other;
    if (iu_model(&m, IU_LLAMA, 4, 3.0) || iu_model(&other, IU_DBA, 4, 1.0)) { FAILF("models"); return; }
    const char *path = tmp_path("plans");
    unlink(path);
    cb_session_config sc = session_cfg(64);
    cb_cache_policy_config pc = cb_cache_policy_config_default();
    pc.plan_path = path;
    pc.max_delta_nll = 10;
    pc.quality_prompt_len = 16;
    pc.quality_steps = 4;
    pc.now = 1000000;
    cb_cache_decision d;
    cb_error e;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    EXPECT(!d.from_plan_file && d.n_warning == 0 && d.n_cand == 4);
    EXPECT_EQ_INT(1, count_plans(path));
    // the same model, machine and settings: reused, nothing measured
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    EXPECT(d.from_plan_file && d.n_cand == 0 && d.kinds.k == CB_KV_F16);
    EXPECT(strstr(d.why, "reused from") != NULL);
    // another model: warned, decided, added beside the first
    EXPECT(cb_cache_policy_decide(&other, &sc, &pc, &d, &e) == CB_OK);
    EXPECT(!d.from_plan_file && d.n_warning == 1 && strstr(d.warning[0], "no decision for this model"));
    EXPECT_EQ_INT(2, count_plans(path));
    // other settings (threads are part of the machine): a separate entry
    pc.threads = 97;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && !d.from_plan_file);
    EXPECT_EQ_INT(3, count_plans(path));
    pc.threads = 0;
    // re-probing once the entry is older than the interval
    pc.probe = 1;
    pc.probe_interval_sec = 60;
    pc.now += 30;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && d.from_plan_file);
    pc.now += 31;
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && !d.from_plan_file);
    EXPECT(d.n_warning == 1 && strstr(d.warning[0], "probing again"));
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && d.from_plan_file); // renewed
    pc.probe = 0;
    // a corrupt file: one warning, a fresh decision, the file replaced by a valid one
    cb_atomic_write(path, "{\"cb_version\": \"0.1\", \"kind\": \"cache_pl", 40, &e);
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
    EXPECT(!d.from_plan_file && d.n_warning == 1 && strstr(d.warning[0], "ignored, not a cache plan file"));
    EXPECT_EQ_INT(1, count_plans(path));
    // another kind of document
    cb_atomic_write(path, "{\"cb_version\": \"0.1\", \"kind\": \"plan\"}", 36, &e);
    EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && d.n_warning == 1);
    // an entry under our key with a bad kind, and one made for another model
    json_t *doc;
    for (int variant = 0; variant < 2; variant++) {
        EXPECT(cb_doc_load(path, "cache_plans", &doc, &e) == CB_OK);
        json_t *entry = json_object_get(json_object_get(doc, "plans"), d.key);
        if (!entry) { FAILF("no entry under %s", d.key); break; }
        if (variant == 0) json_object_set_new(json_object_get(entry, "kinds"), "v", json_string("q3_k"));
        else json_object_set_new(entry, "model_plan_sha256", json_string(other.plan_sha256));
        cb_doc_save(doc, path, &e);
        json_decref(doc);
        EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK);
        EXPECT(!d.from_plan_file && d.n_warning == 1);
        EXPECT(strstr(d.warning[0], variant == 0 ? "not valid" : "made for another model") != NULL);
        EXPECT(cb_cache_policy_decide(&m, &sc, &pc, &d, &e) == CB_OK && d.from_plan_file); // repaired
    }
    // a file that cannot be written
    pc.plan_path = "/nonexistent-dir/plans.json";
    EXPECT_EQ_INT(CB_E_IO, cb_cache_policy_decide(&m, &sc, &pc, &d, &e));
    unlink(path);
    cb_model_free(&m);
    cb_model_free(&other);
}
