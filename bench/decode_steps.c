/* bench/decode_steps.c: the time of every single decode step of the 110M-shape Llama of
 * bench/decode (random weights, fp32 KV cache, a 64-token prompt), printed as the fastest
 * step, the 10th percentile and the median. On a machine shared with other work a mean over
 * many steps moves with the neighbours' load (2x between rounds here); the fast percentiles
 * of per-step times move much less, so builds can be told apart in one run (issue 21).
 *   build/rel/bench/decode_steps KIND [STEPS]     (KIND: fp32, fp16, bf16, q8_0, q4_0, nf4;
 *                                                  STEPS default 300; threads: OMP_NUM_THREADS)
 * The context grows from 64 to 64 + STEPS. Uses only the session API, so the same source
 * builds against older trees to compare them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/diag.h"
#include "infer/generate.h"
#include "infer/session.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "model/model.h"
#include "plan/validate.h"

/* bench/decode's model: vocab 32000, d 768, 12 layers of 12 heads, SwiGLU 2048, untied head */
static const char MANIFEST[] =
    "version: 1\nname: decode_110m\nmodel:\n  type: TransformerModel\n  tie_embeddings: false\n"
    "  embedder: {type: token, vocab_size: 32000, d_model: 768}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 12\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 768}\n"
    "              - {type: AttentionLayer, d_model: 768, n_heads: 12}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 768}\n"
    "              - {type: SwiGLULayer, d_model: 768, d_ff: 2048}\n"
    "      - {type: RMSNormLayer, d_model: 768}\n";
#define PROMPT 64
#define VOCAB 32000

static void die(const char *what, const cb_error *e) {
    fprintf(stderr, "decode_steps: %s: %s\n", what, e ? e->msg : "failed");
    exit(e && e->code ? e->code : 4);
}

/* seconds on the monotonic clock (core/clock.h's, written out: older trees lack that header) */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    cb_kv_kind kind;
    if (argc < 2 || !cb_kv_kind_from_name(argv[1], &kind)) {
        fprintf(stderr, "usage: decode_steps KIND [STEPS]   (KIND: fp32, fp16, bf16, q8_0, q4_0, nf4)\n");
        return 2;
    }
    const int steps = argc > 2 ? atoi(argv[2]) : 300;
    if (steps < 10) {
        fprintf(stderr, "decode_steps: STEPS must be at least 10\n");
        return 2;
    }
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    cb_error e;
    cb_diags d;
    cb_diags_init(&d);
    if (cb_yaml_parse(MANIFEST, strlen(MANIFEST), "decode_110m.yml", &manifest, &e) != 0) die("manifest", &e);
    if (cb_lower(manifest, &lowered, &d) != 0 || cb_validate(lowered, &plan, &d) != 0) die("plan", NULL);
    cb_diags_free(&d);
    cb_model m;
    if (cb_model_init(&m, plan, 1, &e) != CB_OK) die("model", &e);
    cb_session s;
    cb_session_config cfg = cb_session_config_default();
    cfg.max_seq_len = PROMPT + steps + 1;
    cfg.kinds.k = cfg.kinds.k_sem = cfg.kinds.v = CB_KV_F32;
    cfg.weight_kind = kind;
    if (cb_session_init(&s, &m, &cfg, &e) != CB_OK) die("session", &e);
    int32_t prompt[PROMPT];
    for (int i = 0; i < PROMPT; i++) prompt[i] = (int32_t)((i * 7919) % VOCAB);
    float *logits = malloc(sizeof *logits * VOCAB);
    double *t = malloc(sizeof *t * (size_t)steps);
    if (!logits || !t) die("out of memory", NULL);
    if (cb_session_prefill(&s, prompt, PROMPT, logits, &e) != CB_OK) die("prefill", &e);
    int32_t tok = cb_argmax(logits, VOCAB);
    for (int i = 0; i < steps; i++) {
        const double t0 = now_s();
        if (cb_session_forward(&s, &tok, 1, logits, 0, &e) != CB_OK) die("decode", &e);
        tok = cb_argmax(logits, VOCAB);
        t[i] = now_s() - t0;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    printf("%s: step ms min %.3f p10 %.3f p50 %.3f (tok/s at p10 %.1f), %d steps\n", cb_kv_kind_name(kind), t[0] * 1e3,
           t[steps / 10] * 1e3, t[steps / 2] * 1e3, 1 / t[steps / 10], steps);
    free(t);
    free(logits);
    cb_session_free(&s);
    cb_model_free(&m);
    json_decref(plan);
    json_decref(manifest);
    json_decref(lowered);
    return 0;
}
