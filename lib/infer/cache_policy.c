/* cache_policy.c: cache_kind auto (budget, quality gates, benchmark, decisions file). */
#include "infer/cache_policy.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "bench/machine.h"
#include "core/clock.h"
#include "core/json_doc.h"
#include "core/rng.h"
#include "core/sha256.h"
#include "infer/sample.h"

static const cb_kv_kind CANDIDATES[CB_CACHE_CANDIDATES] = {CB_KV_F16, CB_KV_Q8_0, CB_KV_NF4, CB_KV_Q4_0};
#define QUALITY_SEED 0x6361636865ULL /* the gates' token sequence: the same on every run */

cb_cache_policy_config cb_cache_policy_config_default(void) {
    cb_cache_policy_config c;
    memset(&c, 0, sizeof c);
    c.max_delta_nll = -1;
    c.max_ppl_ratio = 0;
    c.max_mean_kl = -1;
    c.quality_prompt_len = 64;
    c.quality_steps = 16;
    c.bench_steps = 8;
    c.bench_prompt_len = 64;
    c.probe_interval_sec = 3600;
    return c;
}

static cb_kv_kinds uniform(cb_kv_kind k) {
    cb_kv_kinds s = {k, k, k};
    return s;
}

int cb_cache_bytes_per_token(const cb_model *m, const cb_kv_kinds *kinds, double *bytes, cb_error *e) {
    cb_attention_config *cfgs;
    int n;
    CB_TRY(cb_model_attention_configs(m, &cfgs, &n, e));
    const cb_attention_config **ptrs = cb_malloc(n ? (size_t)n : 1, sizeof *ptrs, e);
    int rc = ptrs ? CB_OK : e->code;
    cb_kv_cache kv;
    if (rc == CB_OK) {
        for (int i = 0; i < n; i++) ptrs[i] = &cfgs[i];
        rc = cb_kv_cache_init(&kv, n, ptrs, kinds, 0, e);
    }
    if (rc == CB_OK) {
        *bytes = cb_kv_cache_bytes_per_token(&kv);
        cb_kv_cache_free(&kv);
    }
    free(ptrs);
    free(cfgs);
    return rc;
}

/* ---- measurements ---- */

static double log_softmax_at(const float *logits, int V, int id) {
    float mx = logits[cb_argmax(logits, V)];
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)logits[i] - mx);
    return (double)logits[id] - mx - log(s);
}

/* KL(p || q) of the softmaxes of logits a (p) and b (q), (V) each */
static double kl_logits(const float *a, const float *b, int V) {
    float ma = a[cb_argmax(a, V)], mb = b[cb_argmax(b, V)];
    double za = 0, zb = 0;
    for (int i = 0; i < V; i++) za += exp((double)a[i] - ma), zb += exp((double)b[i] - mb);
    double lza = log(za), lzb = log(zb), kl = 0;
    for (int i = 0; i < V; i++) {
        double la = (double)a[i] - ma - lza, lb = (double)b[i] - mb - lzb;
        kl += exp(la) * (la - lb);
    }
    return kl > 0 ? kl : 0;
}

typedef struct probe {
    const cb_model *m;
    cb_session_config sc;
    int V;
    float *logits;   /* (V) */
    int32_t *toks;   /* the NLL sequence: P prompt + S scored */
    int P, S;
    int32_t *needle; /* the needle prompt (NP tokens) then the S greedy tokens of fp32 */
    int NP;
    float *needle_logits; /* (S, V) fp32's logits along the greedy chain */
} probe;

static int open_with(const probe *p, cb_kv_kind kind, cb_session *s, cb_error *e) {
    cb_session_config c = p->sc;
    c.kinds = uniform(kind);
    return cb_session_init(s, p->m, &c, e);
}

/* Mean NLL of toks[P .. P+S) given what precedes each, decoded one token at a time. */
static int mean_nll(probe *p, cb_kv_kind kind, double *nll, cb_error *e) {
    cb_session s;
    CB_TRY(open_with(p, kind, &s, e));
    int rc = cb_session_forward(&s, p->toks, p->P, p->logits, 0, e);
    double sum = 0;
    for (int i = 0; rc == CB_OK && i < p->S; i++) {
        sum -= log_softmax_at(p->logits, p->V, p->toks[p->P + i]);
        if (i + 1 < p->S) rc = cb_session_forward(&s, &p->toks[p->P + i], 1, p->logits, 0, e);
    }
    cb_session_free(&s);
    *nll = sum / p->S;
    return rc;
}

/* Mean KL(fp32 || kind) along fp32's greedy continuation of the needle prompt; kind fp32
 * records that continuation and its logits. */
static int needle_kl(probe *p, cb_kv_kind kind, double *mean_kl, cb_error *e) {
    cb_session s;
    CB_TRY(open_with(p, kind, &s, e));
    const int V = p->V, base = kind == CB_KV_F32;
    int rc = cb_session_forward(&s, p->needle, p->NP, p->logits, 0, e);
    double sum = 0;
    for (int i = 0; rc == CB_OK && i < p->S; i++) {
        float *ref = p->needle_logits + (size_t)i * V;
        if (base) {
            memcpy(ref, p->logits, sizeof *ref * (size_t)V);
            p->needle[p->NP + i] = cb_argmax(ref, V);
        } else {
            sum += kl_logits(ref, p->logits, V);
        }
        if (i + 1 < p->S) rc = cb_session_forward(&s, &p->needle[p->NP + i], 1, p->logits, 0, e);
    }
    cb_session_free(&s);
    *mean_kl = sum / p->S;
    return rc;
}

static int bench(probe *p, cb_kv_kind kind, int prompt_len, int steps, double *tok_s, cb_error *e) {
    cb_session s;
    CB_TRY(open_with(p, kind, &s, e));
    int rc = cb_session_forward(&s, p->toks, prompt_len, p->logits, 0, e);
    double t0 = cb_clock_s();
    for (int i = 0; rc == CB_OK && i < steps; i++) {
        int32_t next = cb_argmax(p->logits, p->V);
        rc = cb_session_forward(&s, &next, 1, p->logits, 0, e);
    }
    double dt = cb_clock_s() - t0;
    cb_session_free(&s);
    *tok_s = steps / (dt > 1e-9 ? dt : 1e-9);
    return rc;
}

/* ---- the decisions file ---- */

static void settings_text(char *out, size_t n, const cb_model *m, const cb_session_config *sc,
                          const cb_cache_policy_config *pc, const char *cpu, int threads) {
    snprintf(out, n,
             "plan=%s;cpu=%s;threads=%d;max_seq_len=%d;budget_mb=%.17g;max_delta_nll=%.17g;max_ppl_ratio=%.17g;"
             "max_mean_kl=%.17g;quality=%d,%d;benchmark=%d,%d,%d",
             m->plan_sha256, cpu, threads, sc->max_seq_len, pc->budget_mb > 0 ? pc->budget_mb : 0,
             pc->max_delta_nll >= 0 ? pc->max_delta_nll : -1, pc->max_ppl_ratio > 0 ? pc->max_ppl_ratio : 0,
             pc->max_mean_kl >= 0 ? pc->max_mean_kl : -1, pc->quality_prompt_len, pc->quality_steps, pc->benchmark,
             pc->benchmark ? pc->bench_steps : 0, pc->benchmark ? pc->bench_prompt_len : 0);
}

static void warn(cb_cache_decision *d, const char *fmt, const char *a, const char *b) {
    if (d->n_warning >= 2) return;
    snprintf(d->warning[d->n_warning++], sizeof d->warning[0], fmt, a, b);
}

static int kind_of(const json_t *obj, const char *key, cb_kv_kind *k) {
    const char *s = json_string_value(json_object_get(obj, key));
    return s && cb_kv_kind_from_name(s, k);
}

/* Look the key up in the file. *doc: the file's document when it is one (kept to add to),
 * else NULL. Returns 1 and fills d->kinds for a usable entry. */
static int lookup(const char *path, const cb_model *m, const cb_cache_policy_config *pc, double now,
                  cb_cache_decision *d, json_t **doc) {
    *doc = NULL;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    cb_error le;
    json_t *j;
    if (cb_doc_load(path, "cache_plans", &j, &le) != CB_OK) {
        warn(d, "%.300s: ignored, not a cache plan file (%.200s); deciding again", path, le.msg);
        return 0;
    }
    json_t *plans = json_object_get(j, "plans");
    if (!json_is_object(plans)) {
        warn(d, "%.300s: ignored, no \"plans\" object%s; deciding again", path, "");
        json_decref(j);
        return 0;
    }
    *doc = j;
    json_t *entry = json_object_get(plans, d->key);
    if (!entry) {
        if (json_object_size(plans) > 0)
            warn(d, "%.300s: no decision for this model, machine and settings (the file holds others)%s; deciding", path,
                 "");
        return 0;
    }
    cb_kv_kinds k;
    const char *sha = json_string_value(json_object_get(entry, "model_plan_sha256"));
    const json_t *at = json_object_get(entry, "decided_at");
    const json_t *kinds = json_object_get(entry, "kinds");
    if (!sha || strcmp(sha, m->plan_sha256) != 0) {
        warn(d, "%.300s: entry %.16s... ignored, it was made for another model; deciding again", path, d->key);
        return 0;
    }
    if (!json_is_number(at) || !kind_of(kinds, "k", &k.k) || !kind_of(kinds, "k_sem", &k.k_sem) ||
        !kind_of(kinds, "v", &k.v)) {
        warn(d, "%.300s: entry %.16s... ignored, not valid (kinds, decided_at); deciding again", path, d->key);
        return 0;
    }
    if (pc->probe && now - json_number_value(at) >= (double)pc->probe_interval_sec) {
        char age[64];
        snprintf(age, sizeof age, "%.0f s old", now - json_number_value(at));
        warn(d, "%.300s: the decision is %.60s; probing again", path, age);
        return 0;
    }
    d->kinds = k;
    snprintf(d->why, sizeof d->why, "%s (reused from %s)", cb_kv_kind_name(k.k), path);
    return 1;
}

static json_t *number_or_null(double x) { return isnan(x) ? json_null() : json_real(x); }

static int record(const char *path, json_t *doc, const cb_model *m, const char *cpu, int threads,
                  const char *settings, double now, const cb_cache_decision *d, cb_error *e) {
    if (!doc) {
        doc = cb_doc_new("cache_plans");
        json_object_set_new(doc, "plans", json_object());
    }
    json_t *cands = json_array();
    for (int i = 0; i < d->n_cand; i++) {
        const cb_cache_candidate *c = &d->cand[i];
        json_array_append_new(cands, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:s}", "kind", cb_kv_kind_name(c->kind),
                                               "cache_mb", number_or_null(c->cache_mb), "delta_nll",
                                               number_or_null(c->delta_nll), "ppl_ratio", number_or_null(c->ppl_ratio),
                                               "mean_kl", number_or_null(c->mean_kl), "tokens_per_s",
                                               number_or_null(c->tokens_per_s), "verdict", c->verdict));
    }
    json_t *entry = json_pack("{s:s, s:s, s:i, s:s, s:{s:s, s:s, s:s}, s:f, s:s, s:o}", "model_plan_sha256",
                              m->plan_sha256, "cpu", cpu, "threads", threads, "settings", settings, "kinds", "k",
                              cb_kv_kind_name(d->kinds.k), "k_sem", cb_kv_kind_name(d->kinds.k_sem), "v",
                              cb_kv_kind_name(d->kinds.v), "decided_at", now, "why", d->why, "candidates", cands);
    json_object_set_new(json_object_get(doc, "plans"), d->key, entry);
    int rc = cb_doc_save(doc, path, e);
    json_decref(doc);
    return rc;
}

/* ---- the decision ---- */

static int measure_and_choose(const cb_model *m, const cb_session_config *sc, const cb_cache_policy_config *pc,
                              cb_cache_decision *d, cb_error *e) {
    const int L = sc->max_seq_len;
    for (int i = 0; i < CB_CACHE_CANDIDATES; i++) {
        cb_cache_candidate *c = &d->cand[i];
        c->kind = CANDIDATES[i];
        c->delta_nll = c->ppl_ratio = c->mean_kl = c->tokens_per_s = NAN;
        cb_kv_kinds k = uniform(c->kind);
        double per_token;
        CB_TRY(cb_cache_bytes_per_token(m, &k, &per_token, e));
        c->cache_mb = per_token * L / (1024.0 * 1024.0);
        snprintf(c->verdict, sizeof c->verdict, "kept");
    }
    d->n_cand = CB_CACHE_CANDIDATES;
    int alive = 0;
    for (int i = 0; i < d->n_cand; i++) {
        cb_cache_candidate *c = &d->cand[i];
        if (pc->budget_mb > 0 && c->cache_mb > pc->budget_mb)
            snprintf(c->verdict, sizeof c->verdict, "over budget (%.3f MB > %.3f MB for %d tokens)", c->cache_mb,
                     pc->budget_mb, L);
        else
            alive++;
    }
    if (!alive)
        return cb_fail(e, CB_E_INVALID, "", "no cache kind fits cache_budget_mb %.3f for %d tokens (q4_0 needs %.3f MB)",
                       pc->budget_mb, L, d->cand[CB_CACHE_CANDIDATES - 1].cache_mb);

    const int gates = pc->max_delta_nll >= 0 || pc->max_ppl_ratio > 0 || pc->max_mean_kl >= 0;
    probe p;
    memset(&p, 0, sizeof p);
    p.m = m;
    p.sc = *sc;
    p.sc.plan.mode = CB_DECODE_PLAN_NONE; /* measure the cache, not the plan */
    p.V = (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
    /* lengths that fit the context: prompt, scored tokens */
    p.S = pc->quality_steps > 0 ? pc->quality_steps : 1;
    p.P = pc->quality_prompt_len > 0 ? pc->quality_prompt_len : 1;
    if (p.S > (L - 3) / 2) p.S = (L - 3) / 2 > 1 ? (L - 3) / 2 : 1;
    if (p.P + p.S + 2 > L) p.P = L - p.S - 2 > 1 ? L - p.S - 2 : 1;
    if (p.P + p.S + 2 > L) return cb_fail(e, CB_E_USAGE, "", "max_seq_len %d is too short to measure cache kinds", L);
    int bench_prompt = pc->bench_prompt_len > 0 ? pc->bench_prompt_len : 1, bench_steps = pc->bench_steps > 0 ? pc->bench_steps : 1;
    if (bench_prompt + bench_steps > L) bench_prompt = L - bench_steps > 1 ? L - bench_steps : 1;
    if (bench_prompt + bench_steps > L) bench_steps = L - bench_prompt;
    int n_toks = p.P + p.S > bench_prompt ? p.P + p.S : bench_prompt;
    p.NP = p.P + 2;
    p.logits = cb_malloc((size_t)p.V, sizeof *p.logits, e);
    p.toks = cb_malloc((size_t)n_toks, sizeof *p.toks, e);
    p.needle = cb_malloc((size_t)(p.NP + p.S), sizeof *p.needle, e);
    p.needle_logits = cb_malloc((size_t)p.S * p.V, sizeof *p.needle_logits, e);
    int rc = p.logits && p.toks && p.needle && p.needle_logits ? CB_OK : CB_E_RUNTIME;
    if (rc == CB_OK) {
        cb_rng r;
        cb_rng_init(&r, QUALITY_SEED);
        for (int i = 0; i < n_toks; i++) p.toks[i] = (int32_t)(cb_rng_next(&r) % (uint64_t)p.V);
        /* haystack with a 4-token needle at a quarter; the prompt ends by starting it again */
        for (int i = 0; i < p.P; i++) p.needle[i] = (int32_t)(cb_rng_next(&r) % (uint64_t)p.V);
        int at = p.P / 4, nl = p.P >= 8 ? 4 : 2;
        if (at + nl > p.P) at = 0, nl = p.P < 2 ? p.P : 2;
        p.needle[p.P] = p.needle[at];
        p.needle[p.P + 1] = p.needle[at + (nl > 1)];
    }
    double base_nll = 0, base_kl;
    if (rc == CB_OK && gates) rc = mean_nll(&p, CB_KV_F32, &base_nll, e);
    if (rc == CB_OK && gates && pc->max_mean_kl >= 0) rc = needle_kl(&p, CB_KV_F32, &base_kl, e);
    for (int i = 0; rc == CB_OK && gates && i < d->n_cand; i++) {
        cb_cache_candidate *c = &d->cand[i];
        if (strcmp(c->verdict, "kept") != 0) continue;
        double nll;
        rc = mean_nll(&p, c->kind, &nll, e);
        if (rc == CB_OK && pc->max_mean_kl >= 0) rc = needle_kl(&p, c->kind, &c->mean_kl, e);
        if (rc != CB_OK) break;
        c->delta_nll = nll - base_nll;
        c->ppl_ratio = exp(c->delta_nll);
        if (pc->max_delta_nll >= 0 && c->delta_nll > pc->max_delta_nll)
            snprintf(c->verdict, sizeof c->verdict, "delta NLL %.6g > %.6g", c->delta_nll, pc->max_delta_nll), alive--;
        else if (pc->max_ppl_ratio > 0 && c->ppl_ratio > pc->max_ppl_ratio)
            snprintf(c->verdict, sizeof c->verdict, "PPL ratio %.6g > %.6g", c->ppl_ratio, pc->max_ppl_ratio), alive--;
        else if (pc->max_mean_kl >= 0 && c->mean_kl > pc->max_mean_kl)
            snprintf(c->verdict, sizeof c->verdict, "needle mean KL %.6g > %.6g", c->mean_kl, pc->max_mean_kl), alive--;
    }
    if (rc == CB_OK && !alive) {
        char list[600] = "";
        size_t off = 0;
        for (int i = 0; i < d->n_cand && off < sizeof list; i++)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s%s: %s", i ? "; " : "",
                                    cb_kv_kind_name(d->cand[i].kind), d->cand[i].verdict);
        rc = cb_fail(e, CB_E_INVALID, "", "no cache kind passes the budget and quality gates (%s)", list);
    }
    int best = -1;
    for (int i = 0; rc == CB_OK && i < d->n_cand; i++) {
        cb_cache_candidate *c = &d->cand[i];
        if (strcmp(c->verdict, "kept") != 0) continue;
        if (!pc->benchmark) {
            if (best < 0) best = i;
            continue;
        }
        rc = bench(&p, c->kind, bench_prompt, bench_steps, &c->tokens_per_s, e);
        if (rc == CB_OK && (best < 0 || c->tokens_per_s > d->cand[best].tokens_per_s)) best = i;
    }
    if (rc == CB_OK) {
        d->kinds = uniform(d->cand[best].kind);
        for (int i = 0; i < d->n_cand; i++)
            if (i != best && strcmp(d->cand[i].verdict, "kept") == 0)
                snprintf(d->cand[i].verdict, sizeof d->cand[i].verdict, pc->benchmark ? "slower" : "lower quality first");
        snprintf(d->cand[best].verdict, sizeof d->cand[best].verdict, "chosen");
        if (pc->benchmark)
            snprintf(d->why, sizeof d->why, "%s (the fastest that passes: %.1f tokens/s)", cb_kv_kind_name(d->kinds.k),
                     d->cand[best].tokens_per_s);
        else
            snprintf(d->why, sizeof d->why, "%s (the best quality that passes)", cb_kv_kind_name(d->kinds.k));
    }
    free(p.logits);
    free(p.toks);
    free(p.needle);
    free(p.needle_logits);
    return rc;
}

int cb_cache_policy_decide(const cb_model *m, const cb_session_config *scfg, const cb_cache_policy_config *pc,
                           cb_cache_decision *d, cb_error *e) {
    memset(d, 0, sizeof *d);
    cb_session_config sc = *scfg;
    int model_ctx = cb_model_max_seq_len(m);
    if (sc.max_seq_len <= 0) sc.max_seq_len = model_ctx ? model_ctx : CB_SESSION_DEFAULT_CONTEXT;
    char cpu[256], settings[2048];
    cb_machine_cpu_model(cpu, sizeof cpu);
    int threads = pc->threads > 0 ? pc->threads : omp_get_max_threads();
    settings_text(settings, sizeof settings, m, &sc, pc, cpu, threads);
    cb_sha256_hex(settings, strlen(settings), d->key);
    double now = pc->now > 0 ? pc->now : (double)time(NULL);
    json_t *doc = NULL;
    if (pc->plan_path && lookup(pc->plan_path, m, pc, now, d, &doc)) {
        d->from_plan_file = 1;
        json_decref(doc);
        return CB_OK;
    }
    int rc = measure_and_choose(m, &sc, pc, d, e);
    if (rc == CB_OK && pc->plan_path) return record(pc->plan_path, doc, m, cpu, threads, settings, now, d, e);
    json_decref(doc);
    return rc;
}
