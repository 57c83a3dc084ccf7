/* cache_policy.h: cache_kind auto, the choice of the KV cache's storage kind for a model on
 * this machine. Candidates, best quality first: fp16, q8_0, nf4, q4_0. In order:
 *   1. budget: drop candidates whose cache for max_seq_len tokens exceeds budget_mb;
 *   2. quality gates (each optional), against an fp32 cache on a fixed pseudo-random token
 *      sequence: mean NLL of the tokens after a short prompt (delta NLL and its PPL ratio),
 *      and the mean KL(fp32 || candidate) of the next-token distributions over a few greedy
 *      steps after a needle-in-a-haystack prompt;
 *   3. benchmark (optional): time decode steps with each survivor and keep the fastest;
 *      without it the best-quality survivor is kept.
 * The decision is kept in a JSON file (kind "cache_plans") under a key made of the model's
 * plan sha256, the machine (CPU model, threads) and the settings above, reused while it is
 * younger than probe_interval_sec (or forever without probe). A file that cannot be read
 * as such, or an entry that is not valid, is ignored with a warning and replaced. */
#ifndef CB_INFER_CACHE_POLICY_H
#define CB_INFER_CACHE_POLICY_H

#include "core/error.h"
#include "infer/session.h"

#define CB_CACHE_CANDIDATES 4

typedef struct cb_cache_policy_config {
    double budget_mb;          /* > 0: the cache of max_seq_len tokens must fit; <= 0: no budget */
    double max_delta_nll;      /* gates, each off when < 0 */
    double max_ppl_ratio;      /* off when <= 0 */
    double max_mean_kl;        /* off when < 0 */
    int quality_prompt_len;    /* tokens of prompt before scoring (default 64) */
    int quality_steps;         /* tokens scored / needle decode steps (default 16) */
    int benchmark;             /* time the survivors */
    int bench_steps;           /* decode steps timed (default 8) */
    int bench_prompt_len;      /* prompt before them (default 64) */
    const char *plan_path;     /* decisions file; NULL: not kept */
    int probe;                 /* decide again once an entry is older than ... */
    long probe_interval_sec;   /* ... this (default 3600) */
    int threads;               /* part of the machine key; 0: omp_get_max_threads() */
    double now;                /* unix seconds; 0: the clock (tests set it) */
} cb_cache_policy_config;

/* Gates off, no budget, no benchmark, no file; the defaults above. */
cb_cache_policy_config cb_cache_policy_config_default(void);

/* What was measured of one candidate (NAN where not measured). */
typedef struct cb_cache_candidate {
    cb_kv_kind kind;
    double cache_mb;        /* for max_seq_len tokens */
    double delta_nll, ppl_ratio, mean_kl;
    double tokens_per_s;
    char verdict[160];      /* "kept", "over budget (12.0 MB > 8.0 MB)", "delta NLL 0.21 > 0.05", ... */
} cb_cache_candidate;

typedef struct cb_cache_decision {
    cb_kv_kinds kinds;             /* the choice */
    int from_plan_file;            /* 1: reused from plan_path */
    cb_cache_candidate cand[CB_CACHE_CANDIDATES];
    int n_cand;                    /* 0 when reused */
    char why[256];                 /* one line: the choice and the rule that made it */
    char warning[2][600];          /* lines to show the user (ignored plan file, ...) */
    int n_warning;
    char key[65];                  /* the plan-file key */
} cb_cache_decision;

/* Decide for m with the session settings scfg (max_seq_len, chunk, decode plan). No
 * candidate within the budget, or none passing the gates: CB_E_INVALID saying why. A plan
 * file that cannot be written: CB_E_IO. */
int cb_cache_policy_decide(const cb_model *m, const cb_session_config *scfg, const cb_cache_policy_config *pc,
                           cb_cache_decision *d, cb_error *e);

/* Cache bytes per token of m with kinds (every attention layer, block scales and padding
 * included; the CPU's layout, infer/kv_cache.h: a fraction where blocks span tokens). */
int cb_cache_bytes_per_token(const cb_model *m, const cb_kv_kinds *kinds, double *bytes, cb_error *e);

#endif
