/* custom.c: custom benchmark suites from YAML files (see custom.h). */
#include "bench/custom.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench/bench.h"
#include "bench/generation.h"
#include "bench/results_json.h"
#include "bench/tokenizer_spec.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "infer/model_dir.h"
#include "manifest/yaml_parse.h"
#include "tokenizer/load.h"

#define DEFAULT_MAX_NEW 256

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

int cb_bench_is_suite_doc(const json_t *doc) {
    const json_t *m = json_object_get(doc, "manifest");
    return json_is_object(json_object_get(m, "benchmark"));
}

/* a string list (patterns), or CB_E_INVALID at key */
static int string_list(const json_t *o, const char *key, const char *path, const json_t **out, cb_error *e) {
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v) return CB_OK;
    if (!json_is_array(v)) return cb_fail(e, CB_E_INVALID, cb_loc(o, key), "%s.%s: not a list", path, key);
    for (size_t i = 0; i < json_array_size(v); i++)
        if (!json_is_string(json_array_get(v, i)))
            return cb_fail(e, CB_E_INVALID, cb_loc(o, key), "%s.%s[%zu]: not a string", path, key, i);
    *out = v;
    return CB_OK;
}

static int int_field(const json_t *o, const char *key, const char *path, long lo, long def, long *out, cb_error *e) {
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return CB_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > 1000000000)
        return cb_fail(e, CB_E_INVALID, cb_loc(o, key), "%s.%s: not an integer >= %ld", path, key, lo);
    *out = (long)json_integer_value(v);
    return CB_OK;
}

static int num_field(const json_t *o, const char *key, const char *path, double lo, double hi, double def, double *out,
                     cb_error *e) {
    const json_t *v = json_object_get(o, key);
    *out = def;
    if (!v) return CB_OK;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
        return cb_fail(e, CB_E_INVALID, cb_loc(o, key), "%s.%s: not a number in [%g, %g]", path, key, lo, hi);
    *out = json_number_value(v);
    return CB_OK;
}

/* regex: POSIX extended. The seed's one use of a lookahead, ^(?!X).*$ ("X matches nowhere
 * from the start"), is read as the negation of ^X; other Python-only syntax is an error. */
static int compile_regex(cb_suite_item *it, const json_t *val, const char *path, cb_error *e) {
    const char *pat = str(val, "pattern");
    if (!pat) return cb_fail(e, CB_E_INVALID, cb_loc(val, NULL), "%s.validation: type regex needs pattern", path);
    int flags = REG_EXTENDED | REG_NOSUB, dotall = 0;
    const json_t *fl = json_object_get(val, "flags");
    for (size_t i = 0; i < json_array_size(fl); i++) {
        const char *f = json_string_value(json_array_get(fl, i));
        if (!f) return cb_fail(e, CB_E_INVALID, cb_loc(val, "flags"), "%s.validation.flags[%zu]: not a string", path, i);
        if (strcmp(f, "dotall") == 0 || strcmp(f, "s") == 0) dotall = 1;
        else if (strcmp(f, "ignorecase") == 0 || strcmp(f, "i") == 0) flags |= REG_ICASE;
        else if (strcmp(f, "multiline") == 0 || strcmp(f, "m") == 0) flags |= REG_NEWLINE;
        else
            return cb_fail(e, CB_E_INVALID, cb_loc(val, "flags"),
                           "%s.validation.flags: unknown flag %s (dotall, ignorecase, multiline)", path, f);
    }
    /* without dotall Python's '.' stops at a newline; POSIX's does only under REG_NEWLINE */
    if (!dotall) flags |= REG_NEWLINE;
    char buf[2048];
    const char *use = pat;
    size_t n = strlen(pat);
    if (strncmp(pat, "^(?!", 4) == 0 && n > 6) {
        const char *end = pat + n;
        if (n >= 8 && strcmp(end - 4, ").*$") == 0) end -= 4;
        else if (end[-1] == ')') end -= 1;
        else end = NULL;
        if (end && end > pat + 4) {
            snprintf(buf, sizeof buf, "^%.*s", (int)(end - pat - 4), pat + 4);
            use = buf;
            it->negate = 1;
        }
    }
    int rc = regcomp(&it->re, use, flags);
    if (rc != 0) {
        char why[256];
        regerror(rc, &it->re, why, sizeof why);
        regfree(&it->re);
        return cb_fail(e, CB_E_INVALID, cb_loc(val, "pattern"),
                       "%s.validation.pattern: not a POSIX extended regular expression (%s): %s", path, why, pat);
    }
    it->have_re = 1;
    return CB_OK;
}

static int read_item(cb_bench_suite *s, cb_suite_item *it, const json_t *node, size_t index, cb_error *e) {
    char path[64];
    snprintf(path, sizeof path, "benchmark.data[%zu]", index);
    it->node = node;
    it->weight = 1.0;
    if (!json_is_object(node)) return cb_fail(e, CB_E_INVALID, cb_loc(node, NULL), "%s: not a mapping", path);
    it->prompt = str(node, "prompt");
    if (!it->prompt || !it->prompt[0])
        return cb_fail(e, CB_E_INVALID, cb_loc(node, NULL), "%s: missing prompt (a non-empty string)", path);
    const char *id = str(node, "id");
    if (id) snprintf(it->id, sizeof it->id, "%s", id);
    else snprintf(it->id, sizeof it->id, "item-%zu", index + 1);
    CB_TRY(num_field(node, "weight", path, 0, 1e9, 1.0, &it->weight, e));
    const json_t *val = json_object_get(node, "validation");
    if (val) {
        if (!json_is_object(val)) return cb_fail(e, CB_E_INVALID, cb_loc(node, "validation"), "%s.validation: not a mapping", path);
        const char *type = str(val, "type");
        long v;
        if (!type) return cb_fail(e, CB_E_INVALID, cb_loc(val, NULL), "%s.validation: missing type", path);
        if (strcmp(type, "loop_detection") == 0) {
            it->check = CB_SUITE_LOOP;
            CB_TRY(int_field(val, "max_consecutive_repeats", path, 1, 0, &v, e));
            it->max_consecutive = (int)v;
            CB_TRY(string_list(val, "blacklist_patterns", path, &it->patterns, e));
        } else if (strcmp(type, "max_tokens") == 0) {
            it->check = CB_SUITE_MAX_TOKENS;
            if (!json_object_get(val, "limit"))
                return cb_fail(e, CB_E_INVALID, cb_loc(val, NULL), "%s.validation: type max_tokens needs limit", path);
            CB_TRY(int_field(val, "limit", path, 0, 0, &v, e));
            it->limit = (int)v;
        } else if (strcmp(type, "blacklist") == 0 || strcmp(type, "whitelist") == 0) {
            it->check = type[0] == 'b' ? CB_SUITE_BLACKLIST : CB_SUITE_WHITELIST;
            CB_TRY(string_list(val, "patterns", path, &it->patterns, e));
            if (!it->patterns || json_array_size(it->patterns) == 0)
                return cb_fail(e, CB_E_INVALID, cb_loc(val, NULL), "%s.validation: type %s needs patterns", path, type);
        } else if (strcmp(type, "regex") == 0) {
            it->check = CB_SUITE_REGEX;
            CB_TRY(compile_regex(it, val, path, e));
        } else {
            return cb_fail(e, CB_E_INVALID, cb_loc(val, "type"),
                           "%s.validation.type: unknown type %s (loop_detection, max_tokens, blacklist, whitelist, regex)",
                           path, type);
        }
    }
    const json_t *pc = json_object_get(node, "pass_criteria");
    if (pc) {
        const char *type = str(pc, "type");
        long v;
        if (!type || (strcmp(type, "boolean") != 0 && strcmp(type, "partial_score") != 0))
            return cb_fail(e, CB_E_INVALID, cb_loc(pc, "type"), "%s.pass_criteria.type: want boolean or partial_score",
                           path);
        it->partial = strcmp(type, "partial_score") == 0;
        CB_TRY(int_field(pc, "min_matches", path, 1, 1, &v, e));
        it->min_matches = (int)v;
    }
    (void)s;
    return CB_OK;
}

int cb_bench_suite_load(cb_bench_suite *s, const char *path, cb_error *e) {
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    char *text;
    size_t len;
    CB_TRY(cb_read_file(path, CB_YAML_MAX_FILE_BYTES, &text, &len, e));
    cb_sha256_hex(text, len, s->sha256);
    int rc = cb_yaml_parse(text, len, path, &s->doc, e);
    free(text);
    if (rc != CB_OK) return rc;
    const json_t *top = json_object_get(s->doc, "manifest");
    const json_t *b = json_object_get(top, "benchmark");
    if (!json_is_object(b)) {
        rc = cb_fail(e, CB_E_INVALID, cb_loc(top, NULL), "not a benchmark suite: no benchmark: mapping at the top");
        goto fail;
    }
    const char *id = str(b, "id");
    if (!id || !id[0] || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(id) ||
        id[0] == '.') {
        rc = cb_fail(e, CB_E_INVALID, cb_loc(b, id ? "id" : NULL), "benchmark.id: %s",
                     id ? "want letters, digits, _ . - (a file name)" : "missing");
        goto fail;
    }
    snprintf(s->id, sizeof s->id, "%s", id);
    s->tokenizer = json_object_get(b, "tokenizer");
    const json_t *rules = json_object_get(b, "validation_rules"), *scoring = json_object_get(b, "scoring");
    long max_out, max_new;
    double ratio;
    if ((rc = int_field(rules, "max_output_tokens", "benchmark.validation_rules", 1, DEFAULT_MAX_NEW, &max_out, e)) ||
        (rc = int_field(b, "max_new_tokens", "benchmark", 1, max_out, &max_new, e)) ||
        (rc = num_field(rules, "max_repetition_ratio", "benchmark.validation_rules", 0, 1, -1, &ratio, e)) ||
        (rc = num_field(scoring, "pass_threshold", "benchmark.scoring", 0, 1, 1.0, &s->pass_threshold, e)))
        goto fail;
    s->max_new_tokens = (int)max_new;
    s->max_repetition_ratio = ratio;
    const char *agg = str(scoring, "aggregation");
    static const char *const AGG[] = {"all_pass", "any_pass", "weighted_average", "min_score"};
    s->aggregation = CB_SUITE_ALL_PASS;
    if (agg) {
        int k = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(agg, AGG[i]) == 0) k = i;
        if (k < 0) {
            rc = cb_fail(e, CB_E_INVALID, cb_loc(scoring, "aggregation"),
                         "benchmark.scoring.aggregation: unknown %s (all_pass, any_pass, weighted_average, min_score)", agg);
            goto fail;
        }
        s->aggregation = k;
    }
    const json_t *data = json_object_get(b, "data");
    if (!json_is_array(data) || json_array_size(data) == 0) {
        rc = cb_fail(e, CB_E_INVALID, cb_loc(b, data ? "data" : NULL), "benchmark.data: %s",
                     data ? "not a non-empty list" : "missing (a list of prompts)");
        goto fail;
    }
    s->items = cb_calloc(json_array_size(data), sizeof *s->items, e);
    if (!s->items) {
        rc = CB_E_RUNTIME;
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(data); i++) {
        s->n_items = (int)i + 1;
        if ((rc = read_item(s, &s->items[i], json_array_get(data, i), i, e)) != CB_OK) goto fail;
    }
    return CB_OK;
fail:
    cb_bench_suite_free(s);
    return rc;
}

void cb_bench_suite_free(cb_bench_suite *s) {
    for (int i = 0; i < s->n_items; i++)
        if (s->items[i].have_re) regfree(&s->items[i].re);
    free(s->items);
    json_decref(s->doc);
    memset(s, 0, sizeof *s);
}

/* case-insensitive substring (ASCII) */
static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 1;
    for (const char *p = hay; *p; p++) {
        size_t k = 0;
        while (k < n && p[k] && tolower((unsigned char)p[k]) == tolower((unsigned char)needle[k])) k++;
        if (k == n) return 1;
    }
    return 0;
}

/* the longest run of one word (letters and digits, case ignored) repeated back to back */
static int longest_word_run(const char *text) {
    char prev[64] = "", word[64];
    int run = 0, best = 0;
    const char *p = text;
    while (*p) {
        while (*p && !isalnum((unsigned char)*p)) p++;
        if (!*p) break;
        size_t n = 0;
        while (*p && isalnum((unsigned char)*p)) {
            if (n < sizeof word - 1) word[n++] = (char)tolower((unsigned char)*p);
            p++;
        }
        word[n] = 0;
        run = strcmp(word, prev) == 0 ? run + 1 : 1;
        if (run > best) best = run;
        memcpy(prev, word, n + 1);
    }
    return best;
}

static int cmp_id(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static double repetition_ratio(const int32_t *ids, size_t n) {
    if (n == 0) return 0;
    int32_t *s = malloc(n * sizeof *s);
    if (!s) return NAN;
    memcpy(s, ids, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_id);
    size_t distinct = 1;
    for (size_t i = 1; i < n; i++) distinct += s[i] != s[i - 1];
    free(s);
    return 1.0 - (double)distinct / (double)n;
}

static int count_patterns(const json_t *patterns, const char *text, json_t *matched) {
    int k = 0;
    for (size_t i = 0; i < json_array_size(patterns); i++) {
        const char *p = json_string_value(json_array_get(patterns, i));
        if (p && contains_ci(text, p)) {
            k++;
            if (matched) json_array_append_new(matched, json_string(p));
        }
    }
    return k;
}

void cb_bench_suite_score(const cb_bench_suite *s, const cb_suite_item *it, const char *text, const int32_t *ids,
                          size_t n_ids, cb_suite_outcome *o, json_t *matched) {
    memset(o, 0, sizeof *o);
    o->repetition_ratio = repetition_ratio(ids, n_ids);
    o->max_run = longest_word_run(text);
    o->repetition_flagged = s->max_repetition_ratio >= 0 && o->repetition_ratio > s->max_repetition_ratio;
    int ok = 1;
    switch (it->check) {
    case CB_SUITE_NONE: return;
    case CB_SUITE_LOOP:
        o->matches = count_patterns(it->patterns, text, matched);
        ok = o->matches == 0 && (it->max_consecutive == 0 || o->max_run <= it->max_consecutive);
        break;
    case CB_SUITE_MAX_TOKENS: ok = n_ids <= (size_t)it->limit; break;
    case CB_SUITE_BLACKLIST:
        o->matches = count_patterns(it->patterns, text, matched);
        ok = o->matches == 0;
        break;
    case CB_SUITE_WHITELIST: o->matches = count_patterns(it->patterns, text, matched); ok = o->matches > 0; break;
    case CB_SUITE_REGEX: ok = (regexec(&it->re, text, 0, NULL, 0) == 0) != it->negate; break;
    }
    o->scored = 1;
    if (it->partial) {
        int need = it->min_matches > 0 ? it->min_matches : 1;
        int have = it->check == CB_SUITE_WHITELIST ? o->matches : ok;
        o->score = have >= need ? 1.0 : (double)have / need;
        o->passed = have >= need;
    } else {
        o->score = ok ? 1.0 : 0.0;
        o->passed = ok;
    }
}

double cb_bench_suite_aggregate(const cb_bench_suite *s, const double *scores, const double *weights,
                                const int *passed, int n) {
    if (n == 0) return NAN;
    double acc = 0, wsum = 0;
    switch (s->aggregation) {
    case CB_SUITE_ALL_PASS:
        for (int i = 0; i < n; i++)
            if (!passed[i]) return 0;
        return 1;
    case CB_SUITE_ANY_PASS:
        for (int i = 0; i < n; i++)
            if (passed[i]) return 1;
        return 0;
    case CB_SUITE_MIN_SCORE:
        acc = scores[0];
        for (int i = 1; i < n; i++) acc = scores[i] < acc ? scores[i] : acc;
        return acc;
    default:
        for (int i = 0; i < n; i++) {
            acc += weights[i] * scores[i];
            wsum += weights[i];
        }
        return wsum > 0 ? acc / wsum : NAN;
    }
}

static const char *const CHECK_NAMES[] = {"none", "loop_detection", "max_tokens", "blacklist", "whitelist", "regex"};
static const char *const AGG_NAMES[] = {"all_pass", "any_pass", "weighted_average", "min_score"};

int cb_bench_custom(cb_bench_ctx *c, const json_t *bench, const char *path, cb_bench_model *m, cb_error *e) {
    cb_bench_suite s;
    CB_TRY(cb_bench_suite_load(&s, path, e));
    cb_tokenizer tok;
    int found = 0, rc;
    char used[CB_BENCH_PATH_MAX];
    if (s.tokenizer) {
        char spec[CB_BENCH_PATH_MAX];
        rc = cb_bench_tokenizer_spec(s.tokenizer, spec, sizeof spec, e);
        if (rc == CB_OK) rc = cb_tokenizer_open(&tok, spec, e);
        found = rc == CB_OK;
    } else {
        rc = cb_model_tokenizer(&tok, NULL, m->dir, &m->model, &found, used, sizeof used, e);
        if (rc == CB_OK && !found)
            rc = cb_fail(e, CB_E_USAGE, m->dir, "no tokenizer for this model (none in the directory or its plan): "
                                                "give the suite a tokenizer: mapping");
    }
    if (rc != CB_OK) {
        cb_bench_suite_free(&s);
        return rc;
    }
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = s.max_new_tokens;
    g.stop.n_eos = cb_model_eos_ids(m->dir, &tok, g.stop.eos, CB_STOP_MAX_EOS);
    double *scores = cb_calloc((size_t)s.n_items * 2, sizeof *scores, e);
    int *passed = cb_calloc((size_t)s.n_items, sizeof *passed, e);
    if (!scores || !passed) rc = CB_E_RUNTIME;
    double *weights = scores ? scores + s.n_items : NULL, t_all = cb_bench_now();
    int n_scored = 0, n_passed = 0, n_flagged = 0;
    for (int i = 0; rc == CB_OK && i < s.n_items; i++) {
        const cb_suite_item *it = &s.items[i];
        double t0 = cb_bench_now();
        cb_generate_output out;
        rc = cb_bench_generate_text(&m->model, c->be, &tok, it->prompt, &g, CB_KV_F32, &out, e);
        if (rc != CB_OK) break;
        char *text = malloc(out.text.n + 1);
        if (!text) {
            cb_generate_output_free(&out);
            rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
            break;
        }
        memcpy(text, out.text.p, out.text.n);
        text[out.text.n] = 0;
        json_t *matched = json_array();
        cb_suite_outcome o;
        cb_bench_suite_score(&s, it, text, out.ids.v, out.ids.n, &o, matched);
        json_t *rec = cb_bench_record_new(c, bench, m);
        json_t *p = cb_bench_params(rec);
        json_object_set_new(p, "suite", json_string(s.id));
        json_object_set_new(p, "suite_file", json_string(s.path));
        json_object_set_new(p, "suite_sha256", json_string(s.sha256));
        json_object_set_new(p, "item", json_string(it->id));
        json_object_set_new(p, "prompt", json_string(it->prompt));
        json_object_set_new(p, "max_new_tokens", json_integer(s.max_new_tokens));
        json_object_set_new(p, "check", json_string(CHECK_NAMES[it->check]));
        json_object_set_new(p, "weight", json_real(it->weight));
        static const char *const CARRIED[] = {"description", "severity", "tags"};
        for (int k = 0; k < 3; k++)
            if (json_object_get(it->node, CARRIED[k])) json_object_set(p, CARRIED[k], json_object_get(it->node, CARRIED[k]));
        json_t *v = cb_bench_values(rec);
        json_object_set_new(v, "text", json_string(text));
        json_object_set_new(v, "new_tokens", json_integer(out.stats.new_tokens));
        json_object_set_new(v, "stop", json_string(cb_stop_reason_name(out.stats.stop_reason)));
        json_object_set_new(v, "repetition_ratio", cb_bench_num(o.repetition_ratio));
        json_object_set_new(v, "max_consecutive_repeats", json_integer(o.max_run));
        if (s.max_repetition_ratio >= 0) json_object_set_new(v, "repetition_flagged", json_boolean(o.repetition_flagged));
        if (o.scored) {
            json_object_set_new(v, "matched", matched);
            matched = NULL;
            json_object_set_new(v, "score", json_real(o.score));
            json_object_set_new(v, "passed", json_boolean(o.passed));
            scores[n_scored] = o.score;
            weights[n_scored] = it->weight;
            passed[n_scored] = o.passed;
            n_scored++;
            n_passed += o.passed;
        }
        n_flagged += o.repetition_flagged;
        json_decref(matched);
        free(text);
        cb_generate_output_free(&out);
        rc = cb_bench_emit(c, rec, cb_bench_now() - t0, e);
    }
    if (rc == CB_OK) {
        json_t *rec = cb_bench_record_new(c, bench, m);
        json_t *p = cb_bench_params(rec);
        json_object_set_new(p, "suite", json_string(s.id));
        json_object_set_new(p, "suite_file", json_string(s.path));
        json_object_set_new(p, "suite_sha256", json_string(s.sha256));
        json_object_set_new(p, "aggregation", json_string(AGG_NAMES[s.aggregation]));
        json_object_set_new(p, "pass_threshold", json_real(s.pass_threshold));
        json_object_set_new(rec, "summary", json_true());
        json_t *v = cb_bench_values(rec);
        json_object_set_new(v, "items", json_integer(s.n_items));
        json_object_set_new(v, "scored_items", json_integer(n_scored));
        json_object_set_new(v, "passed_items", json_integer(n_passed));
        json_object_set_new(v, "repetition_flagged_items", json_integer(n_flagged));
        if (n_scored) {
            double score = cb_bench_suite_aggregate(&s, scores, weights, passed, n_scored);
            json_object_set_new(v, "score", cb_bench_num(score));
            json_object_set_new(v, "passed", json_boolean(score >= s.pass_threshold));
        }
        rc = cb_bench_emit(c, rec, cb_bench_now() - t_all, e);
    }
    free(scores);
    free(passed);
    cb_tokenizer_free(&tok);
    cb_bench_suite_free(&s);
    return rc;
}
