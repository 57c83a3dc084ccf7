/* sample.h: choosing the next token from logits (greedy, temperature, top-k, top-p, from a
 * seeded stream so a run repeats exactly) and deciding when generation stops (end-of-text
 * ids, stop strings on the decoded text, a token budget). */
#ifndef CB_INFER_SAMPLE_H
#define CB_INFER_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "core/rng.h"
#include "tokenizer/buf.h"

typedef struct cb_sample_config {
    double temperature; /* <= 0: greedy (argmax, lowest id on a tie) */
    int top_k;          /* keep the k most likely tokens; <= 0: all */
    double top_p;       /* keep the smallest most-likely set whose mass reaches top_p; >= 1: all */
    uint64_t seed;
} cb_sample_config;

/* The defaults: temperature 1, no top-k, no top-p, seed 0. */
cb_sample_config cb_sample_config_default(void);

/* A candidate token during top-k / top-p selection. */
typedef struct cb_sample_cand {
    double p;   /* unnormalised probability */
    int32_t id;
} cb_sample_cand;

typedef struct cb_sampler {
    cb_sample_config cfg;
    int vocab;
    cb_rng rng;
    cb_sample_cand *cand; /* (vocab) work: candidates by falling probability */
} cb_sampler;

int cb_sampler_init(cb_sampler *s, const cb_sample_config *cfg, int vocab, cb_error *e);
void cb_sampler_free(cb_sampler *s);

/* 1 when the sampler always takes the argmax. */
int cb_sampler_greedy(const cb_sampler *s);

/* probs (vocab) = the distribution the sampler draws from for logits (vocab): softmax of
 * logits / temperature restricted to the top-k and top-p set and renormalised; greedy:
 * 1 at the argmax. Speculative decoding compares two of these. */
void cb_sampler_probs(cb_sampler *s, const float *logits, double *probs);

/* The next uniform number in [0, 1) of the sampler's stream. */
double cb_sampler_uniform(cb_sampler *s);

/* The id whose cumulative probability first exceeds u * total (inverse CDF in id order);
 * probs (vocab) non-negative, not necessarily normalised; all zero: -1. */
int32_t cb_sample_inverse_cdf(const double *probs, int vocab, double u);

/* The next token for logits (vocab): argmax when greedy (no random number is drawn),
 * else a draw from cb_sampler_probs with one uniform. probs (vocab) is work space. */
int32_t cb_sampler_next(cb_sampler *s, const float *logits, double *probs);

/* Index of the largest value, the lowest on a tie. x (n). */
int32_t cb_argmax(const float *x, int n);

/* ---- stopping ---- */

enum cb_stop_reason {
    CB_STOP_NONE = 0,
    CB_STOP_EOS,     /* an end-of-text id was generated (it is not part of the output) */
    CB_STOP_STRING,  /* a stop string appeared in the decoded output (cut before it) */
    CB_STOP_LENGTH,  /* max_new_tokens reached */
    CB_STOP_CONTEXT, /* the context (max_seq_len) is full */
};
/* "eos", "stop", "length", "context" ("none" for CB_STOP_NONE). */
const char *cb_stop_reason_name(int reason);

#define CB_STOP_MAX_EOS 16
#define CB_STOP_MAX_STRINGS 16

typedef struct cb_stop_config {
    int max_new_tokens;                       /* >= 0 */
    int32_t eos[CB_STOP_MAX_EOS];             /* end-of-text ids */
    int n_eos;
    const char *strings[CB_STOP_MAX_STRINGS]; /* stop strings (non-empty; not owned) */
    int n_strings;
} cb_stop_config;

/* 1 when id is one of the end-of-text ids. */
int cb_stop_is_eos(const cb_stop_config *c, int32_t id);

/* The start of the earliest stop string in text[0..len) that ends after byte `from`
 * (bytes before `from` were searched before); SIZE_MAX when none. */
size_t cb_stop_find(const cb_stop_config *c, const char *text, size_t len, size_t from);

/* How many bytes at the end of text[0..len) could be the beginning of a stop string, so
 * a streaming writer holds them back until the next token settles it. */
size_t cb_stop_holdback(const cb_stop_config *c, const char *text, size_t len);

/* The length of the longest prefix of text[0..len) that does not end inside a UTF-8
 * sequence (a token may end in the middle of a character; the rest comes with the next). */
size_t cb_utf8_complete(const char *text, size_t len);

/* The offset of the first byte of text[0..len) that is not part of valid UTF-8 (RFC 3629:
 * no overlong forms, surrogates or values past U+10FFFF), or SIZE_MAX when it is valid. */
size_t cb_utf8_invalid_at(const char *text, size_t len);

/* text[0..len) with each invalid byte replaced by U+FFFD, appended to out (for JSON). */
int cb_utf8_sanitize(const char *text, size_t len, cb_bytes *out, cb_error *e);

#endif
