/* autofit.c: a manifest's width and depth fitted to a parameter budget (see autofit.h). */
#include "runtime/autofit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"
#include "core/diag.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

long long cb_autofit_parse_count(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    double mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1e3, end++;
    else if (*end == 'M' || *end == 'm') mult = 1e6, end++;
    else if (*end == 'B' || *end == 'b' || *end == 'G' || *end == 'g') mult = 1e9, end++;
    if (*end) return -1;
    double n = v * mult;
    return n >= 1 && n < 1e15 ? (long long)llround(n) : -1;
}

typedef struct fit_vars {
    int d_model, n_layers, n_heads, n_kv_heads, d_ff; /* values to set; 0: leave */
} fit_vars;

/* the plan's parameter count of the manifest with these vars, or -1 when it does not compile */
static long long count_params(const json_t *doc, const fit_vars *v) {
    json_t *copy = json_deep_copy(doc);
    json_t *vars = json_object_get(json_object_get(copy, "manifest"), "vars");
    const struct { const char *name; int value; } set[] = {{"d_model", v->d_model}, {"n_layers", v->n_layers},
                                                           {"n_heads", v->n_heads}, {"n_kv_heads", v->n_kv_heads},
                                                           {"d_ff", v->d_ff}};
    for (size_t i = 0; i < sizeof set / sizeof *set; i++)
        if (set[i].value > 0) json_object_set_new(vars, set[i].name, json_integer(set[i].value));
    json_t *lowered = NULL, *plan = NULL;
    cb_diags d;
    cb_diags_init(&d);
    long long n = -1;
    if (cb_lower(copy, &lowered, &d) == CB_OK && cb_validate(lowered, &plan, &d) == CB_OK)
        n = (long long)json_integer_value(json_object_get(json_object_get(plan, "totals"), "params"));
    cb_diags_free(&d);
    json_decref(plan);
    json_decref(lowered);
    json_decref(copy);
    return n;
}

static int int_var(const json_t *vars, const char *name) {
    const json_t *v = json_object_get(vars, name);
    return json_is_integer(v) ? (int)json_integer_value(v) : 0;
}

/* the heads, KV heads and MLP width of width d, in the manifest's proportions */
static void shape_for(fit_vars *v, int d, const fit_vars *orig) {
    memset(v, 0, sizeof *v);
    v->d_model = d;
    int head_dim = d >= 256 ? 64 : 32;
    if (orig->n_heads) v->n_heads = d / head_dim;
    if (orig->n_kv_heads && v->n_heads) {
        int ratio = orig->n_heads / orig->n_kv_heads > 0 ? orig->n_heads / orig->n_kv_heads : 1;
        int kv = v->n_heads / ratio;
        while (kv > 1 && v->n_heads % kv != 0) kv--;
        v->n_kv_heads = kv > 0 ? kv : 1;
    }
    if (orig->d_ff) v->d_ff = (int)lround((double)orig->d_ff / orig->d_model * d / 32.0) * 32;
}

/* Replace the value starting at line:col of text (a plain or quoted YAML scalar) with
 * `value`; the rest of the line (a comment) stays. Returns the new text or NULL. */
static char *replace_scalar(char *text, int line, int col, const char *value) {
    char *p = text;
    for (int l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p) return NULL;
    char *start = p + col - 1, *eol = strchr(p, '\n');
    if (!eol) eol = p + strlen(p);
    if (start > eol) return NULL;
    char *end = start;
    if (*start == '"' || *start == '\'') {
        char *close = strchr(start + 1, *start);
        if (!close || close > eol) return NULL;
        end = close + 1;
    } else {
        while (end < eol && !(*end == '#' && end > start && (end[-1] == ' ' || end[-1] == '\t'))) end++;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    }
    size_t head = (size_t)(start - text), tail = strlen(end), vl = strlen(value);
    char *out = malloc(head + vl + tail + 1);
    if (!out) return NULL;
    memcpy(out, text, head);
    memcpy(out + head, value, vl);
    memcpy(out + head + vl, end, tail + 1);
    return out;
}

static int loc_line_col(const char *loc, int *line, int *col) {
    const char *c2 = strrchr(loc, ':');
    if (!c2 || c2 == loc) return -1;
    const char *c1 = c2 - 1;
    while (c1 > loc && *c1 != ':') c1--;
    if (*c1 != ':') return -1;
    *line = atoi(c1 + 1);
    *col = atoi(c2 + 1);
    return *line > 0 && *col > 0 ? 0 : -1;
}

int cb_autofit(const char *path, long long target, char **out_text, cb_fit_result *res, cb_error *e) {
    memset(res, 0, sizeof *res);
    res->target = target;
    *out_text = NULL;
    json_t *doc = NULL;
    CB_TRY(cb_yaml_parse_file(path, &doc, e));
    const json_t *vars = json_object_get(json_object_get(doc, "manifest"), "vars");
    fit_vars orig = {int_var(vars, "d_model"), int_var(vars, "n_layers"), int_var(vars, "n_heads"),
                     int_var(vars, "n_kv_heads"), int_var(vars, "d_ff")};
    if (!orig.d_model || !orig.n_layers) {
        json_decref(doc);
        return cb_fail(e, CB_E_INVALID, path,
                       "vars: --fit-params sets the vars d_model and n_layers (and n_heads, n_kv_heads, d_ff), "
                       "and this manifest has no integer %s",
                       orig.d_model ? "n_layers" : "d_model");
    }
    /* params(d, L) = p1(d) + (L - 1) * per_layer(d): two compiles per width */
    double best_score = INFINITY;
    fit_vars best = {0};
    long long smallest = -1;
    int ratio = orig.n_heads && orig.n_kv_heads && orig.n_heads / orig.n_kv_heads > 0 ? orig.n_heads / orig.n_kv_heads : 1;
    for (int d = 64; d <= 16384; d += 32) {
        /* whole heads, and whole groups of query heads per KV head */
        int head_dim = d >= 256 ? 64 : 32;
        if (d % head_dim != 0 || (orig.n_kv_heads && (d / head_dim) % ratio != 0)) continue;
        fit_vars v;
        shape_for(&v, d, &orig);
        v.n_layers = 1;
        long long p1 = count_params(doc, &v);
        res->candidates++;
        if (p1 < 0) continue;
        if (smallest < 0) smallest = p1;
        if (p1 > 1.5 * (double)target) break; /* wider only grows */
        v.n_layers = 2;
        long long p2 = count_params(doc, &v);
        if (p2 <= p1) continue;
        double per_layer = (double)(p2 - p1);
        long long l0 = llround((double)(target - p1) / per_layer) + 1;
        for (long long L = l0 - 1; L <= l0 + 1; L++) {
            if (L < 1 || L > 256) continue;
            double params = (double)p1 + (double)(L - 1) * per_layer;
            double err = fabs(params - (double)target) / (double)target;
            /* within 2%: the shape nearest d/L = 100 wins; beyond, the closest count */
            double score = err <= 0.02 ? fabs(log((double)d / (double)L / 100.0)) : 10.0 + err;
            if (score < best_score) {
                best_score = score;
                best = v;
                best.n_layers = (int)L;
            }
        }
    }
    if (!best.d_model) {
        json_decref(doc);
        return smallest > 0 ? cb_fail(e, CB_E_INVALID, path,
                                      "the narrowest model (d_model 64, one layer) already has %lld parameters, more "
                                      "than %lld (its vocabulary alone is most of them)",
                                      smallest, target)
                            : cb_fail(e, CB_E_INVALID, path, "no width from 64 to 16384 compiles for a fit to %lld parameters",
                                      target);
    }
    res->params = count_params(doc, &best);
    res->error = ((double)res->params - (double)target) / (double)target;
    res->d_model = best.d_model;
    res->n_layers = best.n_layers;
    res->n_heads = orig.n_heads ? best.n_heads : 0;
    res->n_kv_heads = orig.n_kv_heads ? best.n_kv_heads : 0;
    res->d_ff = orig.d_ff ? best.d_ff : 0;
    if (fabs(res->error) > 0.05) {
        json_decref(doc);
        return cb_fail(e, CB_E_INVALID, path,
                       "the closest fit to %lld parameters is %lld (d_model %d, n_layers %d), %.1f%% away: "
                       "more than 5%%",
                       target, res->params, res->d_model, res->n_layers, 100 * res->error);
    }
    /* the manifest's own text with the vars' values replaced, last in the file first */
    char *text = NULL;
    size_t len = 0;
    int rc = cb_read_file(path, 0, &text, &len, e);
    struct { const char *name; int value; int line, col; } edits[] = {
        {"d_model", res->d_model, 0, 0}, {"n_layers", res->n_layers, 0, 0}, {"n_heads", res->n_heads, 0, 0},
        {"n_kv_heads", res->n_kv_heads, 0, 0}, {"d_ff", res->d_ff, 0, 0}};
    int n_edits = (int)(sizeof edits / sizeof *edits);
    for (int i = 0; i < n_edits; i++)
        if (edits[i].value && loc_line_col(cb_loc(vars, edits[i].name), &edits[i].line, &edits[i].col) != 0)
            edits[i].value = 0;
    for (int done = 0; rc == CB_OK && done < n_edits; done++) {
        int pick = -1;
        for (int i = 0; i < n_edits; i++)
            if (edits[i].value && (pick < 0 || edits[i].line > edits[pick].line ||
                                   (edits[i].line == edits[pick].line && edits[i].col > edits[pick].col)))
                pick = i;
        if (pick < 0) break;
        char num[32];
        snprintf(num, sizeof num, "%d", edits[pick].value);
        char *next = replace_scalar(text, edits[pick].line, edits[pick].col, num);
        if (!next) rc = cb_fail(e, CB_E_INVALID, cb_loc(vars, edits[pick].name), "vars.%s: cannot rewrite its value", edits[pick].name);
        else {
            free(text);
            text = next;
        }
        edits[pick].value = 0;
    }
    json_decref(doc);
    if (rc != CB_OK) {
        free(text);
        return rc;
    }
    *out_text = text;
    return CB_OK;
}
