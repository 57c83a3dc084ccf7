/* numbers.c: collecting the numbers of result files and finding a draft's untraced ones. */
#include "paper/numbers.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cb_numsrc_init(cb_numsrc *s) { memset(s, 0, sizeof *s); }
void cb_numsrc_free(cb_numsrc *s) { free(s->v); memset(s, 0, sizeof *s); }

void cb_numsrc_add(cb_numsrc *s, double v) {
    if (!isfinite(v)) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *q = realloc(s->v, cap * sizeof *q);
        if (!q) return;
        s->v = q;
        s->cap = cap;
    }
    s->v[s->n++] = v;
}

static int whole_number(const char *t, double *out) {
    char *end;
    while (isspace((unsigned char)*t)) t++;
    if (!*t) return 0;
    double v = strtod(t, &end);
    if (end == t) return 0;
    while (*end == '%' || isspace((unsigned char)*end)) end++;
    if (*end) return 0;
    *out = v;
    return 1;
}

void cb_numsrc_add_json(cb_numsrc *s, const json_t *v) {
    double d;
    if (json_is_number(v)) cb_numsrc_add(s, json_number_value(v));
    else if (json_is_string(v) && whole_number(json_string_value(v), &d)) cb_numsrc_add(s, d);
    else if (json_is_array(v)) {
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) cb_numsrc_add_json(s, x);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (k[0] != '@') cb_numsrc_add_json(s, x);
    }
}

int cb_numsrc_add_csv(cb_numsrc *s, const char *path, cb_error *e) {
    FILE *f = fopen(path, "r");
    if (!f) return cb_fail(e, CB_E_IO, path, "cannot open");
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        char *save = NULL;
        for (char *cell = strtok_r(line, ",\r\n", &save); cell; cell = strtok_r(NULL, ",\r\n", &save)) {
            double d;
            if (*cell == '"') cell++;
            char *q = strchr(cell, '"');
            if (q) *q = 0;
            if (whole_number(cell, &d)) cb_numsrc_add(s, d);
        }
    }
    fclose(f);
    return CB_OK;
}

int cb_numsrc_has(const cb_numsrc *s, double shown, double tol) {
    for (size_t i = 0; i < s->n; i++) {
        double v = s->v[i];
        if (fabs(v - shown) <= tol * (1 + 1e-9) + 1e-12 * fabs(v)) return 1;
        /* a percentage shown for a fraction, or the other way */
        if (fabs(v * 100 - shown) <= tol * (1 + 1e-9)) return 1;
    }
    return 0;
}

static const char *const skip_args[] = {"label", "ref", "eqref", "cite", "citep", "citet", "includegraphics",
                                        "begin", "end", "bibliography", "bibliographystyle", "input", "include",
                                        "url", "href", "pageref", "autoref", "usepackage", "documentclass",
                                        "vspace", "hspace", "setlength", "graphicspath", NULL};

/* skip a balanced {...} or [...] starting at p; returns the position after it */
static const char *skip_group(const char *p, char open, char close) {
    if (*p != open) return p;
    int depth = 0;
    for (; *p; p++) {
        if (*p == '\\' && p[1]) { p++; continue; }
        if (*p == open) depth++;
        else if (*p == close && --depth == 0) return p + 1;
    }
    return p;
}

json_t *cb_numbers_untraced(const char *tex, const cb_numsrc *s) {
    json_t *out = json_array();
    const char *body = strstr(tex, "\\begin{document}");
    const char *p = body ? body : tex;
    int line = 1;
    for (const char *q = tex; q < p; q++) if (*q == '\n') line++;
    while (*p) {
        if (*p == '\n') { line++; p++; continue; }
        if (*p == '%') { while (*p && *p != '\n') p++; continue; }
        if (*p == '\\') {
            const char *name = ++p;
            while (isalpha((unsigned char)*p)) p++;
            size_t nl = (size_t)(p - name);
            if (nl == 0) { if (*p) p++; continue; } /* \%, \& ... */
            int skip = 0;
            for (int i = 0; skip_args[i]; i++)
                if (strlen(skip_args[i]) == nl && strncmp(skip_args[i], name, nl) == 0) skip = 1;
            if (*p == '*') p++;
            while (*p == '[') {
                for (const char *q = p; q < skip_group(p, '[', ']'); q++) if (*q == '\n') line++;
                p = skip_group(p, '[', ']');
            }
            if (skip) {
                while (*p == '{') {
                    const char *after = skip_group(p, '{', '}');
                    for (const char *q = p; q < after; q++) if (*q == '\n') line++;
                    p = after;
                    if (nl == 5 && strncmp(name, "begin", 5) == 0) break; /* \begin{tabular}{lrr}: spec below */
                }
                if (nl == 5 && strncmp(name, "begin", 5) == 0 && *p == '{') p = skip_group(p, '{', '}');
            }
            continue;
        }
        if (isdigit((unsigned char)*p) || ((*p == '-' || *p == '.') && isdigit((unsigned char)p[1]))) {
            const char *start = p;
            int glued = start > tex && (isalpha((unsigned char)start[-1]) || start[-1] == '_');
            char num[128];
            size_t w = 0;
            if (*p == '-') num[w++] = *p++;
            int decimals = -1, exp10 = 0;
            while (*p && w + 1 < sizeof num) {
                if (isdigit((unsigned char)*p)) { num[w++] = *p++; if (decimals >= 0) decimals++; }
                else if (*p == ',' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
                         isdigit((unsigned char)p[3]) && !isdigit((unsigned char)p[4]) && decimals < 0) p++; /* 1,234 */
                else if (*p == '.' && decimals < 0 && isdigit((unsigned char)p[1])) { num[w++] = *p++; decimals = 0; }
                else break;
            }
            if ((*p == 'e' || *p == 'E') && (isdigit((unsigned char)p[1]) || ((p[1] == '-' || p[1] == '+') && isdigit((unsigned char)p[2])))) {
                char *end;
                exp10 = (int)strtol(p + 1, &end, 10);
                p = end;
            }
            num[w] = 0;
            if (isalpha((unsigned char)*p)) glued = 1;
            if (glued) { while (isalnum((unsigned char)*p)) p++; continue; }
            double v = strtod(num, NULL) * pow(10, exp10);
            double tol = 0.5 * pow(10, exp10 - (decimals < 0 ? 0 : decimals));
            if (!cb_numsrc_has(s, v, tol)) {
                char text[160];
                snprintf(text, sizeof text, "%.*s", (int)(p - start), start);
                json_array_append_new(out, json_pack("{s:i,s:s}", "line", line, "text", text));
            }
            continue;
        }
        p++;
    }
    return out;
}
