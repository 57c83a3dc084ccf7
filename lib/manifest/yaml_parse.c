/* yaml_parse.c: libyaml events -> manifest JSON with "@loc" annotations. Plain scalars are
 * typed by the YAML 1.2 core schema; anchors, aliases and "<<" merges are expanded under
 * bounds on nodes, bytes and depth, so a hostile file fails fast instead of eating memory. */
#include "manifest/yaml_parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"

#define YP_TAG_PREFIX "tag:yaml.org,2002:"

/* A mapping entry, kept until the mapping ends so that merges can be expanded in place. */
typedef struct {
    char *key;         /* NUL-terminated (keys holding NUL are rejected) */
    int key_line, key_col;
    json_t *value;     /* NULL while the value is still being parsed */
    json_t *value_loc; /* "file:line:col" where the value starts */
    int is_merge;      /* plain "<<" key: value is merged, not stored */
} yp_entry;

/* An open mapping or sequence. nodes/bytes/height describe the subtree built so far,
 * so that an anchor on it knows what an alias to it will cost. */
typedef struct {
    int is_map;
    json_t *seq;              /* sequence: elements so far */
    yp_entry *entries;        /* mapping: entries so far */
    size_t n_entries, cap_entries;
    json_t *seen;             /* mapping: explicit key -> index into entries */
    int have_key;             /* mapping: the last entry waits for its value */
    int merge_line, merge_col;/* mapping: where a "<<" key was seen (0 = none) */
    char *anchor;             /* anchor name on this node, or NULL */
    int line, col;            /* 1-based start */
    long nodes;
    size_t bytes;
    int height;               /* 1 + the deepest child collection */
} yp_frame;

typedef struct {
    json_t *value; /* NULL while the anchored node is still open (an alias to it is recursive) */
    long nodes;
    size_t bytes;
    int height;
} yp_anchor;

typedef struct {
    const char *file;
    const char *text;
    size_t len;
    cb_error *e;
    yp_frame stack[CB_YAML_MAX_DEPTH];
    int depth;
    yp_anchor *anchors;
    size_t n_anchors, cap_anchors;
    json_t *anchor_index; /* name -> index into anchors (the latest definition wins) */
    long total_nodes;
    size_t total_bytes;
    json_t *root;
    int root_seen;
} yp_parser;

/* A finished node on its way into its parent. */
typedef struct {
    json_t *value;
    int line, col;
    long nodes;
    size_t bytes;
    int height;
} yp_node;

static int yp_fail(yp_parser *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int yp_fail(yp_parser *p, int line, int col, const char *fmt, ...) {
    char where[600], msg[1024];
    snprintf(where, sizeof where, "%s:%d:%d", p->file, line, col);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cb_fail(p->e, CB_E_INVALID, where, "%s", msg);
}

static int yp_oom(yp_parser *p, int line, int col) {
    char where[600];
    snprintf(where, sizeof where, "%s:%d:%d", p->file, line, col);
    return cb_fail(p->e, CB_E_RUNTIME, where, "out of memory");
}

static json_t *yp_loc(const yp_parser *p, int line, int col) {
    char buf[600];
    snprintf(buf, sizeof buf, "%s:%d:%d", p->file, line, col);
    return json_string(buf);
}

/* A scalar for an error message: at most 40 bytes, cut on a UTF-8 boundary, "..." after. */
static const char *yp_quote(const char *s, size_t n, char *buf, size_t cap) {
    size_t max = cap - 4 < 40 ? cap - 4 : 40;
    size_t k = n;
    if (k > max) {
        k = max;
        while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    }
    size_t j = 0;
    for (size_t i = 0; i < k; i++) buf[j++] = (s[i] == '\n' || s[i] == '\0') ? ' ' : s[i];
    if (k < n) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = '\0';
    return buf;
}

/* "!!int" for the standard tags, the tag itself otherwise. */
static const char *yp_tag_name(const char *tag, char *buf, size_t cap) {
    size_t n = strlen(YP_TAG_PREFIX);
    if (strncmp(tag, YP_TAG_PREFIX, n) == 0) snprintf(buf, cap, "!!%s", tag + n);
    else snprintf(buf, cap, "%s", tag);
    return buf;
}

static int yp_tag_is(const char *tag, const char *short_name) {
    size_t n = strlen(YP_TAG_PREFIX);
    return strncmp(tag, YP_TAG_PREFIX, n) == 0 && strcmp(tag + n, short_name) == 0;
}

/* ---- YAML 1.2 core schema ----------------------------------------------------------- */

static int yp_eq(const char *s, size_t n, const char *word) {
    return strlen(word) == n && memcmp(s, word, n) == 0;
}

static int yp_is_null(const char *s, size_t n) {
    return n == 0 || yp_eq(s, n, "~") || yp_eq(s, n, "null") || yp_eq(s, n, "Null") ||
           yp_eq(s, n, "NULL");
}

static int yp_is_bool(const char *s, size_t n, int *value) {
    if (yp_eq(s, n, "true") || yp_eq(s, n, "True") || yp_eq(s, n, "TRUE")) return *value = 1, 1;
    if (yp_eq(s, n, "false") || yp_eq(s, n, "False") || yp_eq(s, n, "FALSE")) return *value = 0, 1;
    return 0;
}

static int yp_digit_in_base(char c, int base) {
    if (c >= '0' && c <= '9') return c - '0' < base ? c - '0' : -1;
    if (base == 16 && c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (base == 16 && c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+. Returns 1 when s matches; *overflow is set
 * when it matches but does not fit in int64. */
static int yp_is_int(const char *s, size_t n, long long *value, int *overflow) {
    size_t i = 0;
    int base = 10, negative = 0;
    *overflow = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
        base = s[1] == 'o' ? 8 : 16;
        i = 2;
    } else if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        negative = s[0] == '-';
        i = 1;
    }
    if (i == n) return 0;
    uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX, acc = 0;
    for (; i < n; i++) {
        int d = yp_digit_in_base(s[i], base);
        if (d < 0) return 0;
        if (acc > (limit - (uint64_t)d) / (uint64_t)base) *overflow = 1;
        else acc = acc * (uint64_t)base + (uint64_t)d;
    }
    if (!*overflow) *value = negative ? (long long)(0 - acc) : (long long)acc;
    return 1;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)
 * s must be NUL-terminated at s[n]. */
static int yp_is_float(const char *s, size_t n, double *value) {
    size_t i = 0;
    int negative = 0;
    if (yp_eq(s, n, ".nan") || yp_eq(s, n, ".NaN") || yp_eq(s, n, ".NAN")) return *value = NAN, 1;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) negative = s[0] == '-', i = 1;
    if (yp_eq(s + i, n - i, ".inf") || yp_eq(s + i, n - i, ".Inf") || yp_eq(s + i, n - i, ".INF"))
        return *value = negative ? -INFINITY : INFINITY, 1;
    size_t int_digits = 0, frac_digits = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++, int_digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, frac_digits++;
        if (int_digits == 0 && frac_digits == 0) return 0;
    } else if (int_digits == 0) {
        return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') i++, exp_digits++;
        if (exp_digits == 0) return 0;
    }
    if (i != n) return 0;
    *value = strtod(s, NULL); /* s[n] is NUL (libyaml ends scalars so) and s[0..n) is all number */
    return 1;
}

static int yp_number_to_json(yp_parser *p, int line, int col, const char *s, size_t n,
                             double x, json_t **out) {
    char q[64];
    if (!isfinite(x) && memchr(s, '.', n) && (memchr(s, 'n', n) || memchr(s, 'N', n)))
        return yp_fail(p, line, col, "%s: JSON has no infinite or NaN numbers", yp_quote(s, n, q, sizeof q));
    if (!isfinite(x))
        return yp_fail(p, line, col, "float %s is out of range", yp_quote(s, n, q, sizeof q));
    *out = json_real(x);
    return *out ? CB_OK : yp_oom(p, line, col);
}

/* Turn a scalar event into JSON: plain and untagged by the core schema, quoted and block
 * scalars as strings, explicit tags as they say. */
static int yp_scalar_to_json(yp_parser *p, const yaml_event_t *ev, json_t **out) {
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    char q[64], t[128];
    long long iv = 0;
    double dv = 0;
    int bv = 0, overflow = 0;
    *out = NULL;

    if (!tag && !plain) tag = YP_TAG_PREFIX "str";
    if (!tag) {
        if (yp_is_null(s, n)) *out = json_null();
        else if (yp_is_bool(s, n, &bv)) *out = json_boolean(bv);
        else if (yp_is_int(s, n, &iv, &overflow)) {
            if (overflow)
                return yp_fail(p, line, col, "integer %s does not fit in 64 bits",
                               yp_quote(s, n, q, sizeof q));
            *out = json_integer(iv);
        } else if (yp_is_float(s, n, &dv)) {
            return yp_number_to_json(p, line, col, s, n, dv, out);
        } else {
            *out = json_stringn(s, n);
        }
    } else if (strcmp(tag, "!") == 0 || yp_tag_is(tag, "str")) {
        *out = json_stringn(s, n);
    } else if (yp_tag_is(tag, "null")) {
        if (!yp_is_null(s, n))
            return yp_fail(p, line, col, "!!null value \"%s\" is not null", yp_quote(s, n, q, sizeof q));
        *out = json_null();
    } else if (yp_tag_is(tag, "bool")) {
        if (!yp_is_bool(s, n, &bv))
            return yp_fail(p, line, col, "!!bool value \"%s\" is not true or false",
                           yp_quote(s, n, q, sizeof q));
        *out = json_boolean(bv);
    } else if (yp_tag_is(tag, "int")) {
        if (!yp_is_int(s, n, &iv, &overflow))
            return yp_fail(p, line, col, "!!int value \"%s\" is not an integer", yp_quote(s, n, q, sizeof q));
        if (overflow)
            return yp_fail(p, line, col, "integer %s does not fit in 64 bits", yp_quote(s, n, q, sizeof q));
        *out = json_integer(iv);
    } else if (yp_tag_is(tag, "float")) {
        /* decimal integers match the float pattern; 0o and 0x ones go through int64 */
        if (!yp_is_float(s, n, &dv)) {
            if (!yp_is_int(s, n, &iv, &overflow))
                return yp_fail(p, line, col, "!!float value \"%s\" is not a number", yp_quote(s, n, q, sizeof q));
            if (overflow)
                return yp_fail(p, line, col, "integer %s does not fit in 64 bits", yp_quote(s, n, q, sizeof q));
            dv = (double)iv;
        }
        return yp_number_to_json(p, line, col, s, n, dv, out);
    } else if (yp_tag_is(tag, "map") || yp_tag_is(tag, "seq")) {
        return yp_fail(p, line, col, "tag %s on a scalar", yp_tag_name(tag, t, sizeof t));
    } else {
        return yp_fail(p, line, col, "unknown tag %s (known: !!str !!int !!float !!bool !!null !!map !!seq)",
                       yp_tag_name(tag, t, sizeof t));
    }
    return *out ? CB_OK : yp_oom(p, line, col);
}

/* ---- bounds and anchors ------------------------------------------------------------- */

/* Count nodes and scalar bytes as they are produced (an alias counts its whole expansion,
 * before it is copied). alias is the alias name, or NULL for a node written out. */
static int yp_account(yp_parser *p, int line, int col, long nodes, size_t bytes, const char *alias) {
    if (nodes > CB_YAML_MAX_NODES - p->total_nodes) {
        if (alias)
            return yp_fail(p, line, col, "alias *%s expands the manifest past %d nodes", alias, CB_YAML_MAX_NODES);
        return yp_fail(p, line, col, "manifest too large: more than %d nodes", CB_YAML_MAX_NODES);
    }
    if (bytes > CB_YAML_MAX_SCALAR_BYTES - p->total_bytes) {
        if (alias)
            return yp_fail(p, line, col, "alias *%s expands the manifest past %zu MiB of text", alias,
                           CB_YAML_MAX_SCALAR_BYTES >> 20);
        return yp_fail(p, line, col, "manifest too large: more than %zu MiB of text", CB_YAML_MAX_SCALAR_BYTES >> 20);
    }
    p->total_nodes += nodes;
    p->total_bytes += bytes;
    return CB_OK;
}

/* Declare an anchor (value NULL: still open) or give it its finished value. */
static int yp_anchor_set(yp_parser *p, const char *name, const yp_node *node, int line, int col) {
    json_t *idx = json_object_get(p->anchor_index, name);
    size_t i;
    if (idx && !node) {
        /* redefinition: the new node takes the name from here on */
        i = (size_t)json_integer_value(idx);
        json_decref(p->anchors[i].value);
        memset(&p->anchors[i], 0, sizeof p->anchors[i]);
        return CB_OK;
    }
    if (idx) {
        i = (size_t)json_integer_value(idx);
    } else {
        if (p->n_anchors == p->cap_anchors) {
            size_t cap = p->cap_anchors ? 2 * p->cap_anchors : 16;
            yp_anchor *a = realloc(p->anchors, cap * sizeof *a);
            if (!a) return yp_oom(p, line, col);
            p->anchors = a;
            p->cap_anchors = cap;
        }
        i = p->n_anchors++;
        memset(&p->anchors[i], 0, sizeof p->anchors[i]);
        if (json_object_set_new(p->anchor_index, name, json_integer((json_int_t)i)) != 0)
            return yp_oom(p, line, col);
    }
    if (node) {
        json_decref(p->anchors[i].value);
        p->anchors[i].value = json_incref(node->value);
        p->anchors[i].nodes = node->nodes;
        p->anchors[i].bytes = node->bytes;
        p->anchors[i].height = node->height;
    }
    return CB_OK;
}

/* ---- building ----------------------------------------------------------------------- */

static void yp_frame_free(yp_frame *f) {
    json_decref(f->seq);
    for (size_t i = 0; i < f->n_entries; i++) {
        free(f->entries[i].key);
        json_decref(f->entries[i].value);
        json_decref(f->entries[i].value_loc);
    }
    free(f->entries);
    json_decref(f->seen);
    free(f->anchor);
    memset(f, 0, sizeof *f);
}

/* "a mapping", "an integer", ... for messages */
static const char *yp_kind_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "a mapping";
    case JSON_ARRAY: return "a sequence";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a float";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* The top mapping expects a key: record it (a string scalar), or refuse it. */
static int yp_add_key(yp_parser *p, const char *key, size_t n, int is_merge, int line, int col) {
    yp_frame *f = &p->stack[p->depth - 1];
    char q[64];
    if (is_merge) {
        if (f->merge_line)
            return yp_fail(p, line, col, "duplicate merge key \"<<\" (first at %d:%d)", f->merge_line, f->merge_col);
        f->merge_line = line;
        f->merge_col = col;
    } else {
        if (memchr(key, '\0', n))
            return yp_fail(p, line, col, "mapping key \"%s\" contains a NUL character", yp_quote(key, n, q, sizeof q));
        if (n > 0 && key[0] == '@')
            return yp_fail(p, line, col, "mapping key \"%s\": names starting with '@' are reserved for annotations",
                           yp_quote(key, n, q, sizeof q));
        json_t *first = json_object_get(f->seen, key);
        if (first) {
            const yp_entry *en = &f->entries[json_integer_value(first)];
            return yp_fail(p, line, col, "duplicate key \"%s\" (first at %d:%d)", yp_quote(key, n, q, sizeof q),
                           en->key_line, en->key_col);
        }
    }
    if (f->n_entries == f->cap_entries) {
        size_t cap = f->cap_entries ? 2 * f->cap_entries : 8;
        yp_entry *a = realloc(f->entries, cap * sizeof *a);
        if (!a) return yp_oom(p, line, col);
        f->entries = a;
        f->cap_entries = cap;
    }
    yp_entry *en = &f->entries[f->n_entries];
    memset(en, 0, sizeof *en);
    en->key = malloc(n + 1);
    if (!en->key) return yp_oom(p, line, col);
    memcpy(en->key, key, n);
    en->key[n] = '\0';
    en->key_line = line;
    en->key_col = col;
    en->is_merge = is_merge;
    f->n_entries++;
    if (!is_merge && json_object_set_new(f->seen, en->key, json_integer((json_int_t)(f->n_entries - 1))) != 0)
        return yp_oom(p, line, col);
    f->have_key = 1;
    f->nodes += 1;
    f->bytes += n;
    return CB_OK;
}

/* A finished node goes into its parent (or becomes the root). Takes node->value. */
static int yp_add_value(yp_parser *p, yp_node *node) {
    if (p->depth == 0) {
        p->root = node->value;
        return CB_OK;
    }
    yp_frame *f = &p->stack[p->depth - 1];
    f->nodes += node->nodes;
    f->bytes += node->bytes;
    if (node->height + 1 > f->height) f->height = node->height + 1;
    if (!f->is_map) {
        if (json_array_append_new(f->seq, node->value) != 0) return yp_oom(p, node->line, node->col);
        return CB_OK;
    }
    yp_entry *en = &f->entries[f->n_entries - 1];
    en->value = node->value;
    en->value_loc = yp_loc(p, node->line, node->col);
    f->have_key = 0;
    if (!en->value_loc) return yp_oom(p, node->line, node->col);
    if (en->is_merge) {
        if (json_is_array(en->value)) {
            size_t i;
            json_t *v;
            json_array_foreach(en->value, i, v) {
                if (!json_is_object(v))
                    return yp_fail(p, node->line, node->col,
                                   "merge key \"<<\": element %zu of the sequence is %s, not a mapping",
                                   i + 1, yp_kind_name(v));
            }
        } else if (!json_is_object(en->value)) {
            return yp_fail(p, node->line, node->col,
                           "merge key \"<<\" needs a mapping or a sequence of mappings, not %s",
                           yp_kind_name(en->value));
        }
    }
    return CB_OK;
}

/* Merge the mappings of a "<<" entry into obj: keys given explicitly win, and among the
 * merged mappings the earlier one wins (YAML merge key semantics). Values are shared with
 * the source, which is a fresh copy or an inline mapping that nothing else holds. */
static int yp_merge_into(yp_parser *p, yp_frame *f, json_t *obj, json_t *locs, const yp_entry *en) {
    size_t n_src = json_is_array(en->value) ? json_array_size(en->value) : 1;
    for (size_t s = 0; s < n_src; s++) {
        json_t *src = json_is_array(en->value) ? json_array_get(en->value, s) : en->value;
        const char *k;
        json_t *v;
        json_object_foreach(src, k, v) {
            if (cb_is_annotation(k) || json_object_get(f->seen, k) || json_object_get(obj, k)) continue;
            const char *loc = cb_loc(src, k);
            if (json_object_set(obj, k, v) != 0 ||
                json_object_set_new(locs, k, loc[0] ? json_string(loc) : json_incref(en->value_loc)) != 0)
                return yp_oom(p, en->key_line, en->key_col);
        }
    }
    return CB_OK;
}

/* The top mapping ended: build its object with "@loc", expanding merges where they stand. */
static int yp_finish_map(yp_parser *p, yp_frame *f, json_t **out) {
    json_t *obj = json_object(), *locs = json_object();
    *out = obj;
    /* json_object_set_new steals its value even when it fails */
    if (!obj || json_object_set_new(obj, CB_LOC_KEY, locs) != 0 ||
        json_object_set_new(locs, "", yp_loc(p, f->line, f->col)) != 0)
        return yp_oom(p, f->line, f->col);
    for (size_t i = 0; i < f->n_entries; i++) {
        const yp_entry *en = &f->entries[i];
        if (en->is_merge) {
            CB_TRY(yp_merge_into(p, f, obj, locs, en));
        } else if (json_object_set(obj, en->key, en->value) != 0 ||
                   json_object_set(locs, en->key, en->value_loc) != 0) {
            return yp_oom(p, en->key_line, en->key_col);
        }
    }
    return CB_OK;
}

static int yp_on_start(yp_parser *p, const yaml_event_t *ev, int is_map) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *tag = (const char *)(is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag);
    const char *anchor = (const char *)(is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor);
    char t[128];
    if (p->depth == 0 && !is_map)
        return yp_fail(p, line, col, "the top level of a manifest must be a mapping, not a sequence");
    if (p->depth > 0 && p->stack[p->depth - 1].is_map && !p->stack[p->depth - 1].have_key)
        return yp_fail(p, line, col, "a %s used as a mapping key (keys must be strings)",
                       is_map ? "mapping" : "sequence");
    if (tag && !(strcmp(tag, "!") == 0 || yp_tag_is(tag, is_map ? "map" : "seq"))) {
        if (strncmp(tag, YP_TAG_PREFIX, strlen(YP_TAG_PREFIX)) == 0)
            return yp_fail(p, line, col, "tag %s on a %s", yp_tag_name(tag, t, sizeof t), is_map ? "mapping" : "sequence");
        return yp_fail(p, line, col, "unknown tag %s (known: !!str !!int !!float !!bool !!null !!map !!seq)",
                       yp_tag_name(tag, t, sizeof t));
    }
    if (p->depth == CB_YAML_MAX_DEPTH)
        return yp_fail(p, line, col, "nesting deeper than %d levels", CB_YAML_MAX_DEPTH);
    CB_TRY(yp_account(p, line, col, 1, 0, NULL));
    yp_frame *f = &p->stack[p->depth++];
    memset(f, 0, sizeof *f);
    f->is_map = is_map;
    f->line = line;
    f->col = col;
    f->nodes = 1;
    f->height = 1;
    if (is_map) f->seen = json_object();
    else f->seq = json_array();
    if (!(is_map ? f->seen : f->seq)) return yp_oom(p, line, col);
    if (anchor) {
        f->anchor = strdup(anchor);
        if (!f->anchor) return yp_oom(p, line, col);
        CB_TRY(yp_anchor_set(p, anchor, NULL, line, col));
    }
    return CB_OK;
}

static int yp_on_end(yp_parser *p) {
    yp_frame *f = &p->stack[p->depth - 1];
    yp_node node = {NULL, f->line, f->col, f->nodes, f->bytes, f->height};
    if (f->is_map) {
        int rc = yp_finish_map(p, f, &node.value);
        if (rc != CB_OK) {
            json_decref(node.value);
            return rc;
        }
    } else {
        node.value = json_incref(f->seq);
    }
    int rc = f->anchor ? yp_anchor_set(p, f->anchor, &node, f->line, f->col) : CB_OK;
    yp_frame_free(f);
    p->depth--;
    if (rc != CB_OK) {
        json_decref(node.value);
        return rc;
    }
    return yp_add_value(p, &node);
}

static int yp_on_scalar(yp_parser *p, const yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *anchor = (const char *)ev->data.scalar.anchor;
    int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    char q[64];
    if (p->depth == 0) {
        if (plain && !tag && n == 0) return yp_fail(p, line, col, "empty manifest");
        json_t *v = NULL;
        CB_TRY(yp_scalar_to_json(p, ev, &v));
        const char *kind = yp_kind_name(v);
        json_decref(v);
        return yp_fail(p, line, col, "the top level of a manifest must be a mapping, not %s", kind);
    }
    CB_TRY(yp_account(p, line, col, 1, n, NULL));
    yp_node node = {NULL, line, col, 1, n, 0};
    CB_TRY(yp_scalar_to_json(p, ev, &node.value));
    yp_frame *f = &p->stack[p->depth - 1];
    if (f->is_map && !f->have_key) {
        int rc = CB_OK;
        if (plain && !tag && yp_eq(s, n, "<<")) rc = yp_add_key(p, s, n, 1, line, col);
        else if (!json_is_string(node.value))
            rc = yp_fail(p, line, col, "mapping key %s is %s, not a string (quote it: \"%s\")",
                         yp_quote(s, n, q, sizeof q), yp_kind_name(node.value), yp_quote(s, n, q, sizeof q));
        else rc = yp_add_key(p, s, n, 0, line, col);
        if (rc == CB_OK && anchor) {
            rc = yp_anchor_set(p, anchor, NULL, line, col);
            if (rc == CB_OK) rc = yp_anchor_set(p, anchor, &node, line, col);
        }
        json_decref(node.value);
        return rc;
    }
    if (anchor) {
        int rc = yp_anchor_set(p, anchor, NULL, line, col);
        if (rc == CB_OK) rc = yp_anchor_set(p, anchor, &node, line, col);
        if (rc != CB_OK) {
            json_decref(node.value);
            return rc;
        }
    }
    return yp_add_value(p, &node);
}

static int yp_on_alias(yp_parser *p, const yaml_event_t *ev) {
    int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
    const char *name = (const char *)ev->data.alias.anchor;
    json_t *idx = json_object_get(p->anchor_index, name);
    if (!idx) return yp_fail(p, line, col, "alias *%s: no anchor &%s before it", name, name);
    const yp_anchor *a = &p->anchors[json_integer_value(idx)];
    if (!a->value) return yp_fail(p, line, col, "alias *%s refers to a node that contains it", name);
    if (p->depth == 0) return yp_fail(p, line, col, "the top level of a manifest must be a mapping");
    yp_frame *f = &p->stack[p->depth - 1];
    if (f->is_map && !f->have_key) {
        if (!json_is_string(a->value))
            return yp_fail(p, line, col, "mapping key *%s is %s, not a string", name, yp_kind_name(a->value));
        CB_TRY(yp_account(p, line, col, 1, a->bytes, name));
        return yp_add_key(p, json_string_value(a->value), json_string_length(a->value), 0, line, col);
    }
    if (p->depth + a->height > CB_YAML_MAX_DEPTH)
        return yp_fail(p, line, col, "alias *%s: nesting deeper than %d levels", name, CB_YAML_MAX_DEPTH);
    CB_TRY(yp_account(p, line, col, a->nodes, a->bytes, name));
    yp_node node = {json_deep_copy(a->value), line, col, a->nodes, a->bytes, a->height};
    if (!node.value) return yp_oom(p, line, col);
    return yp_add_value(p, &node);
}

/* ---- libyaml errors ----------------------------------------------------------------- */

/* 1-based line and column (in characters) of a byte offset into the text. */
static void yp_offset_to_line_col(const yp_parser *p, size_t offset, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < p->len; i++) {
        unsigned char c = (unsigned char)p->text[i];
        if (c == '\n') (*line)++, *col = 1;
        else if ((c & 0xC0) != 0x80) (*col)++;
    }
}

/* Whether the line holding a scanner/parser error (0-based) has a tab in its indentation
 * or at the error column: libyaml then says "cannot start any token", which helps nobody. */
static int yp_tab_at(const yp_parser *p, size_t line0, size_t col0) {
    size_t i = 0, line = 0;
    while (line < line0 && i < p->len) {
        if (p->text[i++] == '\n') line++;
    }
    if (line < line0) return 0;
    size_t start = i, k = i, col = 0;
    int tab_in_indent = 0;
    for (; k < p->len && (p->text[k] == ' ' || p->text[k] == '\t'); k++) tab_in_indent |= p->text[k] == '\t';
    if (tab_in_indent && col0 <= k - start) return 1; /* the error is in or just after the indentation */
    for (; i < p->len && p->text[i] != '\n'; i++) { /* else: is the character at the error a tab? */
        if (((unsigned char)p->text[i] & 0xC0) == 0x80) continue;
        if (col == col0) return p->text[i] == '\t';
        col++;
    }
    return 0;
}

static int yp_libyaml_error(yp_parser *p, const yaml_parser_t *yp) {
    int line, col;
    if (yp->error == YAML_MEMORY_ERROR) return yp_oom(p, 1, 1);
    if (yp->error == YAML_READER_ERROR) {
        size_t at = yp->problem_offset;
        if (strstr(yp->problem, "trailing")) /* point at the sequence, not at the byte that broke it */
            while (at > 0 && at <= p->len && ((unsigned char)p->text[--at] & 0xC0) == 0x80) {}
        yp_offset_to_line_col(p, at, &line, &col);
        if (strstr(yp->problem, "UTF-8") || yp->problem_value == -1)
            return yp_fail(p, line, col, "not UTF-8 text: %s", yp->problem);
        if (yp->problem_value == 0) return yp_fail(p, line, col, "not a text file: NUL byte");
        return yp_fail(p, line, col, "not a text file: control character U+%04X", (unsigned)yp->problem_value);
    }
    line = (int)yp->problem_mark.line + 1;
    col = (int)yp->problem_mark.column + 1;
    if (yp->error == YAML_SCANNER_ERROR && yp_tab_at(p, yp->problem_mark.line, yp->problem_mark.column))
        return yp_fail(p, line, col, "tab character in indentation (YAML indents with spaces only)");
    const char *problem = yp->problem ? yp->problem : "syntax error";
    int cline = (int)yp->context_mark.line + 1, ccol = (int)yp->context_mark.column + 1;
    if (yp->context && strstr(yp->context, "quoted scalar") && strstr(problem, "end of stream"))
        return yp_fail(p, line, col, "unterminated quoted string (it starts at %d:%d)", cline, ccol);
    if (yp->context && (cline != line || ccol != col))
        return yp_fail(p, line, col, "%s (%s at %d:%d)", problem, yp->context, cline, ccol);
    if (yp->context) return yp_fail(p, line, col, "%s (%s)", problem, yp->context);
    return yp_fail(p, line, col, "%s", problem);
}

/* ---- entry points ------------------------------------------------------------------- */

/* A file name fit for JSON strings: bytes that are not ASCII become '?' when the name is
 * not valid UTF-8 (jansson refuses such strings). Returns a malloc'd copy. */
static char *yp_clean_name(const char *name) {
    json_t *probe = json_string(name);
    char *out = strdup(name);
    if (!probe && out)
        for (char *c = out; *c; c++)
            if ((unsigned char)*c >= 0x80) *c = '?';
    json_decref(probe);
    return out;
}

int cb_yaml_parse(const char *text, size_t len, const char *file_name,
                  json_t **out_manifest_doc, cb_error *e) {
    *out_manifest_doc = NULL;
    yp_parser p;
    memset(&p, 0, sizeof p);
    char *file = yp_clean_name(file_name ? file_name : "<input>");
    if (!file) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    p.file = file;
    p.text = text;
    p.len = len;
    p.e = e;
    p.anchor_index = json_object();
    int rc = CB_OK;
    if (len > CB_YAML_MAX_FILE_BYTES)
        rc = yp_fail(&p, 1, 1, "file larger than %zu MiB", CB_YAML_MAX_FILE_BYTES >> 20);
    else if (len >= 2 && ((text[0] == '\xFF' && text[1] == '\xFE') || (text[0] == '\xFE' && text[1] == '\xFF')))
        rc = yp_fail(&p, 1, 1, "UTF-16 text: save the manifest as UTF-8");
    else if (!p.anchor_index)
        rc = yp_oom(&p, 1, 1);

    yaml_parser_t yp;
    int have_yp = 0;
    if (rc == CB_OK) {
        if (!yaml_parser_initialize(&yp)) rc = yp_oom(&p, 1, 1);
        else have_yp = 1;
    }
    if (rc == CB_OK) {
        yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
    }
    int documents = 0, done = 0;
    while (rc == CB_OK && !done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&yp, &ev)) {
            rc = yp_libyaml_error(&p, &yp);
            break;
        }
        int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            if (documents == 0) rc = yp_fail(&p, 1, 1, "empty manifest");
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (documents++ > 0)
                rc = yp_fail(&p, line, col, "only one YAML document per manifest (a second one starts here)");
            break;
        case YAML_SCALAR_EVENT: rc = yp_on_scalar(&p, &ev); break;
        case YAML_ALIAS_EVENT: rc = yp_on_alias(&p, &ev); break;
        case YAML_MAPPING_START_EVENT: rc = yp_on_start(&p, &ev, 1); break;
        case YAML_SEQUENCE_START_EVENT: rc = yp_on_start(&p, &ev, 0); break;
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT: rc = yp_on_end(&p); break;
        default: break;
        }
        yaml_event_delete(&ev);
    }
    if (have_yp) yaml_parser_delete(&yp);

    json_t *doc = NULL;
    if (rc == CB_OK) {
        doc = cb_doc_new("manifest");
        if (!doc || json_object_set_new(doc, "source", json_string(file)) != 0 ||
            json_object_set(doc, "manifest", p.root) != 0) {
            json_decref(doc);
            doc = NULL;
            rc = cb_fail(e, CB_E_RUNTIME, file, "out of memory");
        }
    }
    while (p.depth > 0) yp_frame_free(&p.stack[--p.depth]);
    for (size_t i = 0; i < p.n_anchors; i++) json_decref(p.anchors[i].value);
    free(p.anchors);
    json_decref(p.anchor_index);
    json_decref(p.root);
    free(file);
    *out_manifest_doc = doc;
    return rc;
}

int cb_yaml_parse_file(const char *path, json_t **out_manifest_doc, cb_error *e) {
    *out_manifest_doc = NULL;
    int is_stdin = strcmp(path, "-") == 0;
    const char *name = is_stdin ? "<stdin>" : path;
    char where[600];
    snprintf(where, sizeof where, "%s:1:1", name);
    struct stat st;
    if (!is_stdin && stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
        (uintmax_t)st.st_size > (uintmax_t)CB_YAML_MAX_FILE_BYTES)
        return cb_fail(e, CB_E_INVALID, where, "file larger than %zu MiB (%jd bytes)",
                       CB_YAML_MAX_FILE_BYTES >> 20, (intmax_t)st.st_size);
    char *text = NULL;
    size_t len = 0;
    int rc = cb_read_file(path, CB_YAML_MAX_FILE_BYTES, &text, &len, e);
    if (rc == CB_E_INVALID) /* over the bound while reading a pipe */
        return cb_fail(e, CB_E_INVALID, where, "file larger than %zu MiB", CB_YAML_MAX_FILE_BYTES >> 20);
    if (rc != CB_OK) return rc;
    rc = cb_yaml_parse(text, len, name, out_manifest_doc, e);
    free(text);
    return rc;
}
