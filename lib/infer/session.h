/* session.h: a stateful generator over one model (the seed's Generator): the KV cache of
 * every attention op, the tokens it holds, and forward passes over new tokens only. Every
 * op but attention works row by row, so a pass runs the model's compiled program on the
 * new rows; attention projects them, rotates them at their positions, appends their keys
 * and values to its cache and attends against the whole cache. The passes go through the
 * one dispatch loop of backend/pass.h on the session's device. */
#ifndef CB_INFER_SESSION_H
#define CB_INFER_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "infer/decode_plan.h"
#include "infer/kv_cache.h"
#include "backend/backend.h"
#include "backend/pass.h"
#include "model/model.h"
#include "model/program.h"

#define CB_SESSION_DEFAULT_CONTEXT 2048 /* for a model that declares no max_seq_len */
#define CB_SESSION_DEFAULT_CHUNK 64     /* rows per pass of a long prefill */

typedef struct cb_session_config {
    int max_seq_len;    /* tokens the session may hold; 0: the model's max_seq_len (else
                           CB_SESSION_DEFAULT_CONTEXT); more than the model's: an error */
    int chunk;          /* rows per pass; 0: CB_SESSION_DEFAULT_CHUNK */
    cb_kv_kinds kinds;  /* storage of the cached k (k_geo), k_sem, v */
    cb_kv_kind weight_kind; /* fp32: the model's weights as they are; another kind: every
                               weight matrix converted once to it (bf16, fp16, q8_0, q4_0,
                               nf4), so each token reads fewer bytes */
    cb_decode_plan_config plan;
    cb_backend *backend; /* the device it decodes on; NULL: the CPU */
    int graphs_off;      /* on a GPU, 1: one-row steps launched op by op, not captured as
                            CUDA graphs (0, the default, captures them);
                            runtime/decode_graphs.h decides */
    cb_kv_layout kv_layout; /* CB_KV_LAYOUT_PACKED (0, the default) or _HEADS: the CPU's
                               caches as the CUDA backend lays them out (infer/kv_cache.h) */
    const struct cb_session *weights_from; /* NULL; else a session of the same model, device
                               and weight kind whose weights (on the device, converted) this
                               one uses and which must outlive it (infer/batch.h) */
} cb_session_config;

/* fp32 cache, default chunk, context from the model, decode plan auto. */
cb_session_config cb_session_config_default(void);

typedef struct cb_session {
    const cb_model *model; /* borrowed */
    cb_session_config cfg; /* max_seq_len, chunk and backend resolved */
    cb_backend *be;        /* = cfg.backend */
    cb_program prog;       /* the model compiled for (1, chunk) */
    int vocab, d_model;
    const float *weights;  /* the model's buffer on the device (the model's own on the CPU) */
    float *slots;          /* device, prog.slot_elems: each op's output rows of the current pass */
    double *rope_inv_freq; /* per program RoPE table: dim/2 inverse frequencies, back to back */
    float *rope_host;      /* prog.rope_elems: cos then sin (chunk, dim/2) of this pass */
    float *rope;           /* the same on the device (= rope_host on the CPU) */
    int32_t *pass_tokens;  /* device (chunk): the tokens of this pass (NULL on the CPU) */
    cb_decode dec;         /* weights in their storage kind, KV caches: backend/pass.h */
    int32_t *tokens;       /* (max_seq_len) the tokens whose keys and values are cached */
    int len;               /* tokens held = the next position */
    int reused;            /* tokens of the last prefill found already in the cache */
} cb_session;

/* Compile m for decoding. m must outlive the session. A non-causal attention layer cannot
 * be decoded incrementally: CB_E_INVALID. */
int cb_session_init(cb_session *s, const cb_model *m, const cb_session_config *cfg, cb_error *e);
void cb_session_free(cb_session *s);

/* Run tokens[0..n) at positions len .. len+n-1 and keep them. logits: all_rows ? (n, V)
 * : (V) of the last token; may be NULL (cache only). Rows go in passes of at most chunk
 * tokens. Ids outside the vocabulary, or more tokens than the context has room for:
 * CB_E_USAGE and nothing changes. */
int cb_session_forward(cb_session *s, const int32_t *tokens, int n, float *logits, int all_rows,
                       cb_error *e);

/* cb_session_forward of tokens[0..n), then greedy sampling where the logits are: *next =
 * the first index of the largest of the last token's logits (infer/sample.h's cb_argmax),
 * *nonfinite = 1 when one of them is a NaN or an infinity (*next then means nothing). On
 * a GPU only these come back, not the V logits (backend.h's decode_argmax). */
int cb_session_forward_argmax(cb_session *s, const int32_t *tokens, int n, int32_t *next, int *nonfinite,
                              cb_error *e);

/* One new token of each of k sessions (batched decoding, infer/batch.h): tokens[r] at
 * position seqs[r]->len, kept there, as one decoding pass of k rows whose products read
 * each weight matrix once for all k. The sessions are distinct and share the weights of
 * one (cb_session_config.weights_from); seqs[0]'s program, with chunk >= k rows, runs the
 * pass. logits (k, V), row r for seqs[r], may be NULL. An error changes none of them. */
int cb_session_forward_batch(cb_session *const *seqs, int k, const int32_t *tokens, float *logits, cb_error *e);

/* Start a generation from prompt[0..n) (n >= 1): keep the cached tokens it begins with
 * (s->reused of them; at most n - 1, so the last token is run again for its logits),
 * drop the rest, run the remainder. logits (V) of the last prompt token. */
int cb_session_prefill(cb_session *s, const int32_t *prompt, int n, float *logits, cb_error *e);

/* Keep the first n tokens (n <= len), e.g. to roll back rejected speculative tokens. */
void cb_session_truncate(cb_session *s, int n);
void cb_session_reset(cb_session *s);

/* What the cache holds now. */
cb_kv_bytes cb_session_cache_bytes(const cb_session *s);

/* The model's declared max_seq_len (embedder), or 0 when it has none. */
int cb_model_max_seq_len(const cb_model *m);

/* The attention configs of m's program, in program order (one per cached layer): *cfgs is
 * allocated (caller frees), *n set. For estimating cache sizes without a session. */
int cb_model_attention_configs(const cb_model *m, cb_attention_config **cfgs, int *n, cb_error *e);

#endif
