/* speculative.h: speculative decoding (the seed's SpeculativeGenerator): a small draft model
 * proposes spec_k tokens, the target checks them all in one pass and keeps a prefix.
 * reject_sampling keeps the target's distribution exactly (accept x with probability
 * min(1, p(x)/q(x)), else draw from max(0, p - q) renormalised); greedy keeps the target's
 * greedy output exactly. Both models must share the vocabulary. */
#ifndef CB_INFER_SPECULATIVE_H
#define CB_INFER_SPECULATIVE_H

#include "infer/generate.h"
#include "infer/session.h"

typedef enum cb_spec_method {
    CB_SPEC_REJECT_SAMPLING = 0,
    CB_SPEC_GREEDY = 1, /* argmax draft, argmax check: the target's greedy output; the
                           sampling settings are not used */
} cb_spec_method;

typedef struct cb_spec_config {
    int spec_k;                  /* draft tokens per round, >= 1 (default 4) */
    int spec_k_adaptive;         /* grow k after a round that kept every draft token,
                                    shrink it after one that kept fewer than half */
    int spec_k_max;              /* adaptive upper bound (default 2 * spec_k, at least 1) */
    cb_spec_method method;
    int extra_token;             /* a round that keeps all k also takes the target's next
                                    token from the same pass (default on) */
    double disable_below_accept; /* acceptance rate under which decoding turns plain ... */
    int disable_min_rounds;      /* ... once this many rounds have run (default 4) */
} cb_spec_config;

cb_spec_config cb_spec_config_default(void);
/* "reject_sampling", "greedy" -> method; 0 when neither. */
int cb_spec_method_parse(const char *s, cb_spec_method *m);
const char *cb_spec_method_name(cb_spec_method m);

/* CB_E_INVALID unless the two models have the same vocabulary size. */
int cb_spec_check_models(const cb_model *target, const cb_model *draft, cb_error *e);

/* Generation from prompt[0..n) with target and draft sessions (each reuses what it caches
 * of the prompt). The stats count drafted and accepted tokens, rounds and the final k. */
int cb_speculative_generate(cb_session *target, cb_session *draft, const int32_t *prompt, int n,
                            const cb_generate_config *cfg, const cb_spec_config *spec,
                            const cb_generate_io *io, cb_generate_output *out, cb_error *e);

/* One accept/resample decision of reject sampling, on the distributions p (target) and q
 * (draft) of one position, for the draft's token x, with two uniforms u_accept, u_resample.
 * Returns x when accepted (*accepted = 1), else a draw from max(0, p - q) (from p when that
 * is all zero by rounding). p, q (vocab); work (vocab). */
int32_t cb_spec_accept_or_resample(const double *p, const double *q, int vocab, int32_t x, double u_accept,
                                   double u_resample, double *work, int *accepted);

#endif
