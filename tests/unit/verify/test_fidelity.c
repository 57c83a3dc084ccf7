/* test_fidelity.c: the NLL of fidelity against cross-entropy computed directly from the
 * logits of traced batch-1 passes (log-sum-exp in double), on the split cb-train holds
 * out; and the whole fidelity verification from a plan: a model against itself gives
 * delta 0 and ratio 1, a perturbed student the delta of the direct computation, and the
 * verdict follows the thresholds and fail_fast. */
#include "test.h"
#include "verify/fidelity.h"
#include "verify/spec.h"
#include "verify/split.h"
#include "verify/verify.h"
#include "verify_util.h"

enum { V = 64, N_TOK = 1000, B = 2, T = 8 };

static int32_t tokens[N_TOK];
static char data_path[512];

/* direct mean cross-entropy of `batches` batches of sequential windows from tokens+base
 * over a part of n tokens */
static double direct_nll(const cb_model *m, const int32_t *part, size_t n, int batches) {
    double total = 0;
    for (int b = 0; b < batches; b++) {
        double batch = 0;
        for (int r = 0; r < B; r++) {
            const int32_t *x = part + ((size_t)(b * B + r) * T) % (n - T);
            float *lg = vu_logits(m, x, T);
            if (!lg) return NAN;
            for (int t = 0; t < T; t++) {
                const float *row = lg + (size_t)t * V;
                double mx = row[0], s = 0;
                for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
                for (int v = 0; v < V; v++) s += exp(row[v] - mx);
                batch += mx + log(s) - row[x[t + 1]];
            }
            free(lg);
        }
        total += batch / (B * T);
    }
    return total / batches;
}

static int setup(void) {
    return !data_path[0] && !vu_tokens("fid.tokens", tokens, N_TOK, V, data_path, sizeof data_path);
}

TEST(fidelity_nll_matches_direct_cross_entropy) {
    char y[4096];
    cb_model m;
    if (setup() || vu_model(&m, vu_manifest(y, sizeof y, V, "n_kv_heads: 2", "block_size: 8", ""), 4)) {
        FAILF("setup");
        return;
    }
    /* val_frac 0.3: the last 300 tokens are the validation part, as cb-train holds them out */
    for (int split = CB_SPLIT_TRAIN; split <= CB_SPLIT_VAL; split++) {
        cb_verify_data d;
        cb_error e;
        if (cb_verify_data_open(&d, data_path, "", 0.3, T, V, split, &e) != CB_OK) {
            FAILF("data: %s", e.msg);
            break;
        }
        size_t n_val = (size_t)(N_TOK * 0.3), n = split == CB_SPLIT_VAL ? n_val : N_TOK - n_val;
        const int32_t *part = split == CB_SPLIT_VAL ? tokens + (N_TOK - n_val) : tokens;
        EXPECT_EQ_INT(n, d.tokens->n_tokens);
        double nll[3], mean;
        EXPECT_EQ_INT(CB_OK, cb_fidelity_nll(nll, &mean, &m, d.tokens, B, T, 3, "model", NULL, &e));
        double want = direct_nll(&m, part, n, 3);
        REPORT_DIFF(split == CB_SPLIT_VAL ? "NLL (val) vs direct" : "NLL (train) vs direct", fabs(mean - want), 1e-5);
        EXPECT_NEAR(want, mean, 1e-5);
        EXPECT(want > 1.0); /* a random model over 64 ids: about log 64 */
        cb_verify_data_close(&d);
    }
    /* split auto with nothing held out reads the training part; val is refused */
    cb_verify_data d;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_verify_data_open(&d, data_path, "", 0, T, V, CB_SPLIT_AUTO, &e));
    EXPECT_EQ_INT(CB_SPLIT_TRAIN, d.split);
    cb_verify_data_close(&d);
    EXPECT_EQ_INT(CB_E_USAGE, cb_verify_data_open(&d, data_path, "", 0, T, V, CB_SPLIT_VAL, &e));
    cb_model_free(&m);
}

/* the spec of a plan compiled from the manifest with this verify block */
static int spec_of(cb_verify_spec *s, const char *yaml) {
    json_t *plan = test_compile(yaml, "vu.yml");
    if (!plan) return 1;
    cb_error e;
    int rc = cb_verify_spec_read(s, plan, NULL, "r", &e);
    if (rc != CB_OK) fprintf(stderr, "  spec: %s: %s\n", e.where, e.msg);
    json_decref(plan);
    return rc != CB_OK;
}

static double member(const json_t *doc, const char *a, const char *b) {
    return json_number_value(json_object_get(json_object_get(doc, a), b));
}

TEST(fidelity_verification_from_a_plan) {
    char y[4096], tdir[512], sdir[512];
    cb_model t, s;
    cb_error e;
    const char *train = "block_size: 8, batch_size: 2, val_frac: 0.2";
    if (setup() || vu_model(&t, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", train, ""), 8) || vu_copy(&s, &t)) {
        FAILF("setup");
        return;
    }
    vu_param(&s, "blocks.0.res.attn.v.weight")[3] += 0.8f;
    tmp_path("fid_t", tdir, sizeof tdir);
    tmp_path("fid_s", sdir, sizeof sdir);
    if (cb_model_save_dir(&t, tdir, NULL, &e) || cb_model_save_dir(&s, sdir, NULL, &e)) {
        FAILF("save: %s", e.msg);
        return;
    }
    cb_verify_spec spec;
    if (spec_of(&spec, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", train,
                                   "{type: fidelity, batches: 4, split: val, max_delta_nll: 0.0, "
                                   "max_ppl_ratio: 1.5, fail_fast: true}"))) {
        FAILF("spec");
        return;
    }
    EXPECT_EQ_INT(CB_VERIFY_FIDELITY, spec.type);
    EXPECT_EQ_INT(CB_SPLIT_VAL, spec.split);
    EXPECT_EQ_INT(4, spec.batches);
    EXPECT_EQ_INT(8, spec.block_size);
    cb_verify_inputs in = {.teacher_dir = tdir, .student_dir = tdir, .data = data_path};
    json_t *doc;
    int status;
    /* the teacher against itself: delta 0, ratio 1, pass */
    EXPECT_EQ_INT(CB_OK, cb_verify_run(&doc, &status, &spec, &in, &e));
    if (doc) {
        EXPECT_NEAR(0, member(doc, "fidelity", "delta_nll"), 0);
        EXPECT_NEAR(1, member(doc, "fidelity", "ppl_ratio"), 0);
        EXPECT_EQ_STR("pass", json_string_value(json_object_get(doc, "verdict")));
        EXPECT_EQ_STR("val", json_string_value(json_object_get(json_object_get(doc, "data"), "split")));
        EXPECT_EQ_INT(0, status);
        json_decref(doc);
    }
    /* the perturbed student: the delta of the direct computation on the validation part */
    size_t n_val = (size_t)(N_TOK * 0.2);
    double tn = direct_nll(&t, tokens + N_TOK - n_val, n_val, 4), sn = direct_nll(&s, tokens + N_TOK - n_val, n_val, 4);
    in.student_dir = sdir;
    EXPECT_EQ_INT(CB_OK, cb_verify_run(&doc, &status, &spec, &in, &e));
    if (doc) {
        double delta = member(doc, "fidelity", "delta_nll");
        REPORT_DIFF("delta NLL vs direct", fabs(delta - (sn - tn)), 1e-5);
        EXPECT_NEAR(sn - tn, delta, 1e-5);
        EXPECT_NEAR(exp(sn - tn), member(doc, "fidelity", "ppl_ratio"), 1e-5);
        EXPECT_NEAR(tn, member(doc, "fidelity", "teacher_nll"), 1e-5);
        EXPECT(sn != tn);
        /* max_delta_nll 0: a worse student fails it, fail_fast true asks for exit 1 */
        int worse = sn > tn;
        EXPECT_EQ_STR(worse ? "fail" : "pass", json_string_value(json_object_get(doc, "verdict")));
        EXPECT_EQ_INT(worse ? 1 : 0, status);
        json_decref(doc);
    }
    cb_verify_spec_free(&spec);
    /* fail_fast false: the same failure is a warning and exit 0 */
    if (spec_of(&spec, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", train,
                                   "{type: fidelity, batches: 4, max_delta_nll: -1.0}")) == 0) {
        EXPECT_EQ_INT(CB_OK, cb_verify_run(&doc, &status, &spec, &in, &e));
        if (doc) {
            EXPECT_EQ_STR("fail", json_string_value(json_object_get(doc, "verdict")));
            EXPECT_EQ_INT(0, status);
            EXPECT(json_array_size(json_object_get(doc, "warnings")) == 1);
            EXPECT_NEAR(1.05, member(doc, "thresholds", "max_ppl_ratio"), 1e-12); /* the default */
            json_decref(doc);
        }
        cb_verify_spec_free(&spec);
    } else FAILF("spec fail_fast false");
    cb_model_free(&t);
    cb_model_free(&s);
}
