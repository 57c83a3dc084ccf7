/* test_batch.c: batched decoding (infer/batch.h) against each sequence decoded alone. A
 * batched step runs one token of each of several sessions, at different lengths, as one
 * pass: its logits are each session's own step's (relative 1e-5 with fp32 caches and
 * weights; the products over several rows sum in another order than over one), for
 * Llama/GQA (RoPE at each row's position), DBA with gates and GPT-2 (learned positions
 * at each row's position), and stay close over quantized caches and weights. Batched
 * greedy generation gives each prompt the ids it gets alone; a bad step changes nothing. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "infer/batch.h"
#include "infer/generate.h"
#include "infer/session.h"
#include "batch_util.h"
#include "infer_util.h"
#include "test.h"

#define REL_TOL 1e-5
/* q8_0 caches and weights: a row's k and v (and the activations the products quantize) come
 * out of products over several rows in another order, so a value near a rounding boundary
 * may round the other way: one q8_0 step (2^-8 of a block's largest value) in a few. */
#define QUANT_TOL 2e-2

typedef struct model_case { const char *name, *yaml; } model_case;
static const model_case CASES[] = {{"llama_gqa", IU_LLAMA}, {"dba_gated", IU_DBA}, {"gpt2_positions", IU_GPT2}};

static int vocab_of(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

/* Each sequence of the batch against one session of the same config alone. */
static void batch_matches_alone(const char *what, const cb_model *m, cb_kv_kind cache, cb_kv_kind weights, double tol) {
    cb_session_config c = cb_session_config_default();
    c.kinds.k = c.kinds.k_sem = c.kinds.v = cache;
    c.weight_kind = weights;
    iu_batch_matches_alone(what, m, &c, &c, tol);
}

TEST(batched_steps_match_each_sequence_alone) {
    for (size_t c = 0; c < sizeof CASES / sizeof *CASES; c++) {
        cb_model m;
        if (iu_model(&m, CASES[c].yaml, 3, 5.0)) {
            FAILF("%s: model", CASES[c].name);
            continue;
        }
        char what[128];
        snprintf(what, sizeof what, "%s, fp32", CASES[c].name);
        batch_matches_alone(what, &m, CB_KV_F32, CB_KV_F32, REL_TOL);
        snprintf(what, sizeof what, "%s, q8_0 cache and weights", CASES[c].name);
        batch_matches_alone(what, &m, CB_KV_Q8_0, CB_KV_Q8_0, QUANT_TOL);
        cb_model_free(&m);
    }
}

TEST(batched_greedy_generation_gives_each_prompt_its_own_ids) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 5, 5.0)) {
        FAILF("model");
        return;
    }
    enum { P = 5 };
    const int V = vocab_of(&m), lens[P] = {4, 1, 9, 6, 2};
    int32_t tok[P][16];
    const int32_t *prompts[P];
    for (int i = 0; i < P; i++) {
        iu_tokens(tok[i], 16, V, 70 + (uint64_t)i);
        prompts[i] = tok[i];
    }
    cb_generate_config g = cb_generate_config_default();
    g.stop.max_new_tokens = 12;
    cb_session_config c = cb_session_config_default();
    cb_batch b;
    cb_error e;
    cb_generate_output outs[P], alone;
    /* the eos: the fourth id prompt 0 generates, so it (and maybe others) stops early and
       its row makes room for the next prompt while the others go on */
    EXPECT(cb_generate(&m, &c, prompts[0], lens[0], &g, &(cb_generate_io){0}, &alone, &e) == CB_OK);
    g.stop.eos[0] = alone.ids.n > 3 ? alone.ids.v[3] : 0;
    g.stop.n_eos = 1;
    cb_generate_output_free(&alone);
    EXPECT(cb_batch_init(&b, &m, &c, 3, &e) == CB_OK);
    if (cb_batch_generate(&b, prompts, lens, P, &g, NULL, outs, &e) != CB_OK) {
        FAILF("batched generation: %s", e.msg);
    } else {
        cb_session s;
        EXPECT(cb_session_init(&s, &m, &c, &e) == CB_OK);
        int stopped_early = 0;
        for (int i = 0; i < P; i++) {
            if (cb_session_generate(&s, prompts[i], lens[i], &g, &(cb_generate_io){0}, &alone, &e) != CB_OK) {
                FAILF("prompt %d alone: %s", i, e.msg);
                break;
            }
            stopped_early += alone.stats.stop_reason == CB_STOP_EOS;
            if (alone.ids.n != outs[i].ids.n || memcmp(alone.ids.v, outs[i].ids.v, alone.ids.n * sizeof *alone.ids.v))
                FAILF("prompt %d: %zu ids batched, %zu alone, or they differ", i, outs[i].ids.n, alone.ids.n);
            if (alone.stats.stop_reason != outs[i].stats.stop_reason || alone.stats.new_tokens != outs[i].stats.new_tokens)
                FAILF("prompt %d: stopped for another reason or after another count batched", i);
            cb_generate_output_free(&alone);
        }
        cb_session_free(&s);
        for (int i = 0; i < P; i++) cb_generate_output_free(&outs[i]);
        printf("  %d of %d prompts stopped at the eos before max_new_tokens\n", stopped_early, P);
        if (!stopped_early) FAILF("no prompt stopped early: the refill of a freed row went untested");
    }
    cb_batch_free(&b);
    cb_model_free(&m);
}

TEST(a_bad_batched_step_changes_nothing) {
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 3, 5.0)) {
        FAILF("model");
        return;
    }
    const int V = vocab_of(&m);
    cb_session_config c = cb_session_config_default();
    cb_batch b;
    cb_error e;
    if (cb_batch_init(&b, &m, &c, 3, &e) != CB_OK) {
        FAILF("batch: %s", e.msg);
        cb_model_free(&m);
        return;
    }
    int32_t p[4] = {1, 2, 3, 4};
    for (int i = 0; i < 3; i++) EXPECT(cb_session_forward(&b.seqs[i], p, 1 + i, NULL, 0, &e) == CB_OK);
    cb_session *seqs[3] = {&b.seqs[0], &b.seqs[1], &b.seqs[2]};
    int32_t bad[3] = {1, (int32_t)V, 2}; /* past the vocabulary */
    EXPECT(cb_session_forward_batch(seqs, 3, bad, NULL, &e) == CB_E_USAGE);
    cb_session *twice[2] = {&b.seqs[1], &b.seqs[1]};
    EXPECT(cb_session_forward_batch(twice, 2, p, NULL, &e) == CB_E_USAGE);
    for (int i = 0; i < 3; i++) EXPECT_EQ_INT(1 + i, b.seqs[i].len);
    /* a session of another model, or of the same model's weights in another kind, cannot join */
    cb_model m2;
    if (iu_model(&m2, IU_LLAMA, 4, 5.0) == 0) {
        cb_session other, q8;
        cb_session_config cq = c;
        cq.weight_kind = CB_KV_Q8_0;
        EXPECT(cb_session_init(&other, &m2, &c, &e) == CB_OK);
        EXPECT(cb_session_init(&q8, &m, &cq, &e) == CB_OK);
        cb_session *mixed[2] = {&b.seqs[0], &other}, *kinds[2] = {&b.seqs[0], &q8};
        EXPECT(cb_session_forward_batch(mixed, 2, p, NULL, &e) == CB_E_USAGE);
        EXPECT(cb_session_forward_batch(kinds, 2, p, NULL, &e) == CB_E_USAGE);
        cb_session_free(&other);
        cb_session_free(&q8);
        cb_model_free(&m2);
    }
    EXPECT(cb_session_forward_batch(seqs, 3, p, NULL, &e) == CB_OK);
    for (int i = 0; i < 3; i++) EXPECT_EQ_INT(2 + i, b.seqs[i].len);
    cb_batch_free(&b);
    cb_model_free(&m);
}
