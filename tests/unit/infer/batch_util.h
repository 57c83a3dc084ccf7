/* batch_util.h: the comparison test_batch (the CPU) and test_cuda_decode (the GPU) make of
 * batched decoding (infer/batch.h) against each sequence decoded alone. Header-only,
 * test-only. */
#ifndef CB_TEST_BATCH_UTIL_H
#define CB_TEST_BATCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include "infer/batch.h"
#include "infer/session.h"
#include "infer_util.h"

/* Four sequences of different lengths (prompts, then 5 steps) in a batch under batched (every
 * step one batched pass over all of them, the rows in another order each step), against
 * one session each under alone running the same tokens one at a time: the worst relative
 * difference of a row's logits must be within tol. */
static inline void iu_batch_matches_alone(const char *what, const cb_model *m, const cb_session_config *batched,
                                          const cb_session_config *alone_cfg, double tol) {
    enum { N = 4, STEPS = 5 };
    const int lens[N] = {3, 9, 1, 14};
    const int V = (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
    cb_batch b;
    cb_session alone[N];
    cb_error e;
    if (cb_batch_init(&b, m, batched, N, &e) != CB_OK) {
        FAILF("%s: batch: %s", what, e.msg);
        return;
    }
    int opened = 0;
    for (; opened < N; opened++)
        if (cb_session_init(&alone[opened], m, alone_cfg, &e) != CB_OK) {
            FAILF("%s: session: %s", what, e.msg);
            break;
        }
    int32_t tok[N][32];
    for (int i = 0; i < N; i++) iu_tokens(tok[i], 32, V, 40 + (uint64_t)i);
    float *got = calloc((size_t)N * V, sizeof *got), *want = calloc((size_t)V, sizeof *want);
    double worst = 0;
    for (int i = 0; i < N && opened == N; i++) { /* the prompts, each its own */
        if (cb_session_forward(&b.seqs[i], tok[i], lens[i], NULL, 0, &e) != CB_OK ||
            cb_session_forward(&alone[i], tok[i], lens[i], NULL, 0, &e) != CB_OK)
            FAILF("%s: prompt: %s", what, e.msg);
    }
    for (int s = 0; s < STEPS && opened == N && !cb_test_failed; s++) {
        cb_session *seqs[N];
        int32_t step[N];
        for (int i = 0; i < N; i++) {
            seqs[i] = &b.seqs[(i + s) % N]; /* the rows in another order each step */
            step[i] = tok[(i + s) % N][lens[(i + s) % N] + s];
        }
        if (cb_session_forward_batch(seqs, N, step, got, &e) != CB_OK) {
            FAILF("%s: batched step: %s", what, e.msg);
            break;
        }
        for (int r = 0; r < N; r++) {
            const int i = (r + s) % N;
            if (cb_session_forward(&alone[i], &step[r], 1, want, 0, &e) != CB_OK) {
                FAILF("%s: step alone: %s", what, e.msg);
                break;
            }
            double d = iu_rel_diff(got + (size_t)r * V, want, (size_t)V);
            if (!(d <= worst)) worst = d;
            if (b.seqs[i].len != lens[i] + s + 1) FAILF("%s: sequence %d holds %d tokens", what, i, b.seqs[i].len);
        }
    }
    REPORT_DIFF(what, worst, tol);
    if (!(worst <= tol)) FAILF("%s: batched logits differ from alone by %.3g (relative)", what, worst);
    free(got);
    free(want);
    for (int i = 0; i < opened; i++) cb_session_free(&alone[i]);
    cb_batch_free(&b);
}

#endif
