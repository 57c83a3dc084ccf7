/* test_config.c: a run's settings from a compiled plan: the chosen run, the defaults of
 * cb-manifest(5), and what the CPU trainer refuses. */
#include <stdlib.h>
#include "model_util.h"
#include "test.h"
#include "train/config.h"

#define MODEL                                                                            \
    "version: 1\nname: cfg\nmodel:\n  type: TransformerModel\n"                          \
    "  embedder: {type: token, vocab_size: 32, d_model: 8}\n"                            \
    "  topology:\n    type: StackedTopology\n    layers:\n"                              \
    "      - {type: RMSNormLayer, d_model: 8}\n"

TEST(defaults_and_overrides) {
    json_t *plan = test_compile(MODEL
                                "defaults: {weight_decay: 0.1, instrument: [jsonl, hdf5, tensorboard]}\n"
                                "groups:\n  - name: g\n    data: d.npy\n    runs:\n"
                                "      - {id: s, mode: sample, ckpt: x}\n"
                                "      - {id: a, mode: train, steps: 9, train: {optimizer: lion, lr_schedule: linear,\n"
                                "         betas: [0.8, 0.98], decay_embeddings: false}}\n",
                                "cfg.yml");
    if (!plan) { FAILF("compile"); return; }
    const json_t *g, *r;
    cb_error e;
    cb_train_config c;
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, NULL, NULL, &g, &r, &e)); /* the first training run */
    EXPECT_EQ_INT(CB_OK, cb_train_config_read(&c, g, r, &e));
    EXPECT_EQ_STR("a", c.run);
    EXPECT_EQ_STR("g", c.group);
    EXPECT_EQ_STR("d.npy", c.data);
    EXPECT_EQ_INT(9, c.steps);
    EXPECT_EQ_INT(9, c.schedule.total);
    EXPECT_EQ_INT(1337, c.seed);
    EXPECT_EQ_INT(8, c.batch_size);
    EXPECT_EQ_INT(512, c.block_size);
    EXPECT_NEAR(3e-4, c.schedule.lr, 0);
    EXPECT_EQ_INT(CB_SCHED_LINEAR, c.schedule.kind);
    EXPECT_EQ_INT(CB_OPT_LION, c.optimizer.kind);
    EXPECT_NEAR(0.8, c.optimizer.beta1, 0);
    EXPECT_NEAR(0.98, c.optimizer.beta2, 0);
    EXPECT_NEAR(0.1, c.optimizer.weight_decay, 0);
    EXPECT_EQ_INT(0, c.optimizer.decay_embeddings);
    EXPECT_EQ_INT(0, c.optimizer.decay_norms_and_biases);
    EXPECT_NEAR(1.0, c.grad_clip, 0);
    EXPECT_EQ_INT(10, c.log_every);
    EXPECT_EQ_INT(100, c.eval_every);
    EXPECT_EQ_INT(20, c.eval_iters);
    EXPECT_EQ_INT(2, c.keep_last);
    EXPECT_EQ_INT(2, c.prefetch);
    EXPECT_NEAR(0.05, c.val_frac, 0);
    EXPECT_EQ_INT(CB_INSTR_HDF5 | CB_INSTR_TENSORBOARD, c.instruments);
    EXPECT_EQ_STR("", c.init_ckpt);
    /* a run that is not mode train */
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, "g", "s", &g, &r, &e));
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_config_read(&c, g, r, &e));
    EXPECT(strstr(e.msg, "not train") != NULL);
    EXPECT(strstr(e.where, "cfg.yml:") != NULL);
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_find_run(plan, "nope", NULL, &g, &r, &e));
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_find_run(plan, NULL, "nope", &g, &r, &e));
    json_decref(plan);
}

TEST(refused_settings_name_their_line) {
    json_t *plan = test_compile(MODEL "groups:\n  - name: g\n    runs:\n"
                                      "      - {id: a, steps: 1, train: {dtype: bfloat16}}\n"
                                      "      - {id: b, steps: 1, train: {student: {ckpt: x, overrides: {RMSNormLayer: {eps: 0.1}}}}}\n"
                                      "      - {id: c, train: {lr: 0.1}}\n"
                                      "      - {id: d, steps: 2, train: {teacher_ckpt: t/dir}}\n"
                                      "  - name: h\n    runs:\n      - {id: a, steps: 1}\n",
                                "bad.yml");
    if (!plan) { FAILF("compile"); return; }
    const json_t *g, *r;
    cb_error e;
    cb_train_config c;
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_find_run(plan, NULL, "a", &g, &r, &e)); /* in two groups */
    EXPECT(strstr(e.msg, "--group") != NULL);
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_find_run(plan, NULL, NULL, &g, &r, &e)); /* two groups */
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, "g", "a", &g, &r, &e));
    EXPECT_EQ_INT(CB_E_USAGE, cb_train_config_read(&c, g, r, &e));
    EXPECT(strstr(e.msg, "train.dtype: bfloat16") != NULL);
    EXPECT_EQ_STR("bad.yml:13:42", e.where);
    /* a student with overrides trains the student's plan, from its own weights */
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, "g", "b", &g, &r, &e));
    EXPECT_EQ_INT(CB_OK, cb_train_config_read(&c, g, r, &e));
    EXPECT_EQ_INT(1, c.student);
    EXPECT_EQ_INT(0, c.surgery);
    EXPECT_EQ_STR("x", c.init_ckpt);
    EXPECT_EQ_STR("student", c.init_from);
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, "g", "c", &g, &r, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_train_config_read(&c, g, r, &e));
    EXPECT(strstr(e.msg, "no steps") != NULL);
    EXPECT_EQ_INT(CB_OK, cb_train_find_run(plan, "g", "d", &g, &r, &e));
    EXPECT_EQ_INT(CB_OK, cb_train_config_read(&c, g, r, &e));
    EXPECT_EQ_STR("t/dir", c.init_ckpt);
    EXPECT_EQ_STR("teacher", c.init_from);
    json_decref(plan);
}
