/* generate.h: the generation loop (prefill, then sample / feed back token by token until a
 * stop rule fires) over a session, the stateless cb_generate beside it, and the emitter
 * that turns generated ids into output text as it settles (streaming). */
#ifndef CB_INFER_GENERATE_H
#define CB_INFER_GENERATE_H

#include <stdint.h>
#include "core/error.h"
#include "infer/sample.h"
#include "infer/session.h"
#include "tokenizer/tokenizer.h"

typedef struct cb_generate_config {
    cb_sample_config sample;
    cb_stop_config stop;
    int truncate; /* a prompt that leaves no room for max_new_tokens: keep its last tokens
                     (at least one); otherwise a prompt longer than the context is an error */
} cb_generate_config;

/* max_new_tokens 64, the sampler's defaults, no eos, no stop strings, no truncation. */
cb_generate_config cb_generate_config_default(void);

/* Where output goes while it is generated. Every member may be NULL. */
typedef struct cb_generate_io {
    const cb_tokenizer *tok;                         /* decodes ids; NULL: ids only */
    void (*on_token)(void *ctx, int32_t id);         /* each id kept (not an eos) */
    void (*on_text)(void *ctx, const char *s, size_t n); /* text as it settles */
    void *ctx;
} cb_generate_io;

typedef struct cb_generate_stats {
    int prompt_tokens;   /* tokens of the prompt that was run (after truncation) */
    int truncated;       /* tokens dropped from the front of the prompt */
    int reused;          /* prompt tokens already in the cache (not run again) */
    int new_tokens;      /* ids generated, an eos included */
    int stop_reason;     /* enum cb_stop_reason */
    double prefill_s;    /* prompt pass and first sample */
    double decode_s;     /* the rest */
    /* speculative decoding (zero otherwise) */
    long drafted;        /* draft tokens proposed */
    long accepted;       /* of them accepted by the target */
    int spec_rounds;     /* draft-verify rounds */
    int spec_k;          /* spec_k at the end (adaptive) */
    int spec_fallback;   /* 1 when the acceptance fell below the floor and decoding went plain */
    size_t cache_bytes;  /* the KV cache's payload when it ended (plain and batched generation) */
} cb_generate_stats;

typedef struct cb_generate_output {
    cb_ids ids;          /* generated ids, an eos excluded */
    cb_bytes text;       /* their text up to a stop string (empty without a tokenizer) */
    cb_generate_stats stats;
} cb_generate_output;

void cb_generate_output_free(cb_generate_output *o);

/* Generation from prompt[0..n) on s, reusing what s caches of the prompt. */
int cb_session_generate(cb_session *s, const int32_t *prompt, int n, const cb_generate_config *cfg,
                        const cb_generate_io *io, cb_generate_output *out, cb_error *e);

/* The same on a fresh session of m, freed afterwards. */
int cb_generate(const cb_model *m, const cb_session_config *scfg, const int32_t *prompt, int n,
                const cb_generate_config *cfg, const cb_generate_io *io, cb_generate_output *out, cb_error *e);

/* Logits that hold a NaN or an infinity stop a generation (both loops above, and the
 * speculative one through the emitter) with CB_E_RUNTIME, "non-finite logits over the
 * prompt" or "... after N new tokens"; this says whether e is that error, for a caller that wants to say where they
 * came from (model/trace.h: cb_trace_explain_nonfinite). */
int cb_generate_is_nonfinite(const cb_error *e);
/* Logits (V) holding a NaN or an infinity: CB_E_RUNTIME with the message
 * cb_generate_is_nonfinite recognises, saying after how many new tokens; else CB_OK. */
int cb_generate_check_logits(const float *logits, int V, int new_tokens, cb_error *e);

/* The prompt window a generation runs: *first (tokens dropped from the front) for a prompt
 * of n tokens, a context of max_seq_len and max_new new tokens. CB_E_USAGE for an empty
 * prompt, or one longer than the context without truncate. */
int cb_generate_fit_prompt(int n, int max_seq_len, int max_new, int truncate, int *first, cb_error *e);

/* ---- the emitter (shared with speculative decoding) ---- */

typedef struct cb_emitter {
    const cb_generate_io *io;
    const cb_stop_config *stop;
    cb_generate_output *out;
    size_t settled; /* bytes of out->text handed to on_text */
    int done;       /* a stop rule fired: stats.stop_reason says which */
} cb_emitter;

void cb_emitter_init(cb_emitter *em, const cb_generate_io *io, const cb_stop_config *stop, cb_generate_output *out);
/* Take one generated id: count it, stop on an eos, append it and its text, stop at a stop
 * string (the text is cut before it) or at max_new_tokens. */
int cb_emitter_push(cb_emitter *em, int32_t id, cb_error *e);
/* Hand out the text still held back (the end of the generation). */
void cb_emitter_finish(cb_emitter *em);

#endif
