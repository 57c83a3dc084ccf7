/* test_compare.c: compare's L1 distances against values computed apart from it: zero for a
 * model against itself; for a student whose head differs in one weight, the logits differ
 * in one column by delta times the final norm's output, known from the traced pass; for a
 * perturbed attention projection, per-layer distances from batch-1 traced passes. */
#include "test.h"
#include "verify/compare.h"
#include "verify_util.h"

enum { V = 64, N_TOK = 600, B = 2, T = 8, BATCHES = 3 };

static int32_t tokens[N_TOK];

/* the sequential batcher's window of row r of batch b (data/dataset.h) */
static const int32_t *window(int b, int r) { return tokens + ((size_t)(b * B + r) * T) % (N_TOK - T); }

static int open_data(cb_dataset *ds) {
    char path[512];
    if (!vu_tokens("cmp.tokens", tokens, N_TOK, V, path, sizeof path)) return 1;
    cb_error e;
    return cb_dataset_open(ds, path, &e) != CB_OK;
}

TEST(compare_self_is_zero) {
    char y[4096];
    cb_model a, b;
    cb_dataset ds;
    if (vu_model(&a, vu_manifest(y, sizeof y, V, "n_kv_heads: 2", "block_size: 8", ""), 3) || vu_copy(&b, &a) ||
        open_data(&ds)) {
        FAILF("setup");
        return;
    }
    cb_compare_result r;
    cb_error e;
    int rc = cb_compare_run(&r, &a, &b, &ds, B, T, BATCHES, NULL, &e);
    EXPECT_EQ_INT(CB_OK, rc);
    if (rc == CB_OK) {
        EXPECT_EQ_INT(2, r.n_layers);
        for (int l = 0; l < r.n_layers; l++) {
            EXPECT(r.layers[l].l1.sum == 0 && r.layers[l].l1.max == 0);
            EXPECT_EQ_INT((size_t)BATCHES * B * T * 16, r.layers[l].l1.n);
        }
        EXPECT(r.logits.sum == 0 && r.logits.max == 0);
        EXPECT_EQ_INT((size_t)BATCHES * B * T * V, r.logits.n);
        EXPECT_EQ_STR("blocks.1.res.attn", r.layers[1].teacher_op);
        cb_compare_result_free(&r);
    }
    cb_model_free(&a);
    cb_model_free(&b);
    cb_dataset_close(&ds);
}

/* the final norm's output (T,16) over one window: the head's input */
static int head_input(const cb_model *m, const int32_t *x, float *h) {
    cb_trace t;
    cb_error e;
    if (cb_trace_forward(&t, m, x, T, "test", &e) != CB_OK) return 1;
    for (int i = 0; i < t.prog.n_ops; i++) {
        const cb_op *op = &t.prog.ops[i];
        if (op->kind != CB_OP_HEAD) continue;
        int s = t.prog.inputs[op->in_first];
        memcpy(h, t.run.slots + t.prog.slots[s].offset, (size_t)T * 16 * sizeof *h);
    }
    cb_trace_free(&t);
    return 0;
}

TEST(compare_head_weight_known_l1) {
    char y[4096];
    cb_model a, b;
    cb_dataset ds;
    if (vu_model(&a, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", ""), 5) || vu_copy(&b, &a) ||
        open_data(&ds)) {
        FAILF("setup");
        return;
    }
    const int row = 17, col = 5;
    const double delta = 0.5;
    vu_param(&b, "head.weight")[row * 16 + col] += (float)delta;
    /* by hand: logits[., row] move by delta * h[., col]; nothing else moves */
    double sum = 0, max = 0;
    float h[T * 16];
    for (int bt = 0; bt < BATCHES; bt++)
        for (int r = 0; r < B; r++) {
            if (head_input(&a, window(bt, r), h)) FAILF("trace");
            for (int t = 0; t < T; t++) {
                double d = fabs(delta * h[t * 16 + col]);
                sum += d;
                if (d > max) max = d;
            }
        }
    cb_compare_result res;
    cb_error e;
    int rc = cb_compare_run(&res, &a, &b, &ds, B, T, BATCHES, NULL, &e);
    EXPECT_EQ_INT(CB_OK, rc);
    if (rc == CB_OK) {
        for (int l = 0; l < res.n_layers; l++) EXPECT(res.layers[l].l1.sum == 0 && res.layers[l].l1.max == 0);
        double n = (double)BATCHES * B * T * V;
        REPORT_DIFF("logits mean_l1 vs delta*h", fabs(cb_l1_mean(&res.logits) - sum / n), 1e-6 * sum / n);
        EXPECT_NEAR(sum / n, cb_l1_mean(&res.logits), 1e-5 * sum / n);
        EXPECT_NEAR(max, res.logits.max, 1e-5 * max);
        EXPECT(max > 0.1); /* the test moves something */
        cb_compare_result_free(&res);
    }
    cb_model_free(&a);
    cb_model_free(&b);
    cb_dataset_close(&ds);
}

/* per-layer L1 of the attention outputs from traced batch-1 passes of both models */
static void traced_l1(const cb_model *a, const cb_model *b, double *sum, double *max, int n_layers) {
    for (int l = 0; l < n_layers; l++) sum[l] = max[l] = 0;
    for (int bt = 0; bt < BATCHES; bt++)
        for (int r = 0; r < B; r++) {
            cb_trace ta, tb;
            cb_error e;
            if (cb_trace_forward(&ta, a, window(bt, r), T, "t", &e) || cb_trace_forward(&tb, b, window(bt, r), T, "t", &e))
                return;
            for (int i = 0, l = 0, j = 0; i < ta.prog.n_ops; i++) {
                if (ta.prog.ops[i].kind != CB_OP_ATTENTION) continue;
                while (tb.prog.ops[j].kind != CB_OP_ATTENTION) j++;
                int w;
                const float *x = cb_run_op_output(&ta.run, &ta.prog, i, &w);
                const float *z = cb_run_op_output(&tb.run, &tb.prog, j++, &w);
                for (int k = 0; k < T * w; k++) {
                    double d = fabs((double)x[k] - z[k]);
                    sum[l] += d;
                    if (d > max[l]) max[l] = d;
                }
                l++;
            }
            cb_trace_free(&ta);
            cb_trace_free(&tb);
        }
}

TEST(compare_perturbed_attention_per_layer) {
    char y[4096], y2[4096];
    cb_model a, b;
    cb_dataset ds;
    /* a GQA student beside a standard teacher, both from seed 11: layer pairs by order */
    if (vu_model(&a, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", ""), 11) ||
        vu_model(&b, vu_manifest(y2, sizeof y2, V, "n_kv_heads: 2", "block_size: 8", ""), 11) || open_data(&ds)) {
        FAILF("setup");
        return;
    }
    double sum[2], max[2];
    traced_l1(&a, &b, sum, max, 2);
    cb_compare_result r;
    cb_error e;
    int rc = cb_compare_run(&r, &a, &b, &ds, B, T, BATCHES, NULL, &e);
    EXPECT_EQ_INT(CB_OK, rc);
    if (rc == CB_OK) {
        EXPECT_EQ_INT(2, r.n_layers);
        for (int l = 0; l < 2; l++) {
            REPORT_DIFF(l ? "layer 1 L1 sum vs traced" : "layer 0 L1 sum vs traced", fabs(sum[l] - r.layers[l].l1.sum),
                        1e-5 * sum[l]);
            EXPECT(sum[l] > 0);
            EXPECT_NEAR(sum[l], r.layers[l].l1.sum, 1e-5 * sum[l]);
            EXPECT_NEAR(max[l], r.layers[l].l1.max, 1e-5 * max[l] + 1e-7);
        }
        cb_compare_result_free(&r);
    }
    /* a DBA student: decoupled attention, paired the same way */
    cb_model c;
    if (vu_model(&c, vu_manifest(y2, sizeof y2, V, "mode: decoupled, sem_dim: 8, geo_dim: 8", "block_size: 8", ""), 11))
        FAILF("dba model");
    else {
        traced_l1(&a, &c, sum, max, 2);
        rc = cb_compare_run(&r, &a, &c, &ds, B, T, BATCHES, NULL, &e);
        EXPECT_EQ_INT(CB_OK, rc);
        if (rc == CB_OK) {
            for (int l = 0; l < 2; l++) EXPECT_NEAR(sum[l], r.layers[l].l1.sum, 1e-5 * sum[l]);
            cb_compare_result_free(&r);
        }
        cb_model_free(&c);
    }
    cb_model_free(&a);
    cb_model_free(&b);
    cb_dataset_close(&ds);
}

TEST(compare_refuses_other_shapes) {
    char y[4096], y2[4096];
    cb_model a, b;
    cb_dataset ds;
    if (vu_model(&a, vu_manifest(y, sizeof y, V, "n_kv_heads: 4", "block_size: 8", ""), 1) ||
        vu_model(&b, vu_manifest(y2, sizeof y2, 2 * V, "n_kv_heads: 4", "block_size: 8", ""), 1) || open_data(&ds)) {
        FAILF("setup");
        return;
    }
    cb_compare_result r;
    cb_error e;
    EXPECT_EQ_INT(CB_E_INVALID, cb_compare_run(&r, &a, &b, &ds, B, T, 1, NULL, &e));
    EXPECT(strstr(e.msg, "vocabulary") != NULL);
    cb_model_free(&a);
    cb_model_free(&b);
    cb_dataset_close(&ds);
}

TEST(l1_stat_nan_is_kept) {
    cb_l1_stat s = {0};
    float a[3] = {0, 1, 2}, b[3] = {0, NAN, 1};
    cb_l1_add(&s, a, b, 3);
    EXPECT(isnan(s.max));
    float c[1] = {5}, d[1] = {0};
    cb_l1_add(&s, c, d, 1);
    EXPECT(isnan(s.max)); /* a later larger value does not hide it */
}
