/* schema.c: the engine that walks a manifest against the schema tables and records
 * every type, range, enum, required, unknown and applicability error it finds. */
#include "manifest/schema.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "core/json_doc.h"
#include "manifest/schema_table.h"
#include "manifest/suggest.h"

#define PATH_MAX_LEN 512

/* a path too deep for buf ends in "..." rather than silently cut */
static const char *mark_cut(char *buf, size_t n, int written) {
    if ((written < 0 || (size_t)written >= n) && n >= 4) memcpy(buf + n - 4, "...", 4);
    return buf;
}

const char *cb_path_key(char *buf, size_t n, const char *base, const char *key) {
    if (!base || !base[0]) return mark_cut(buf, n, snprintf(buf, n, "%s", key));
    return mark_cut(buf, n, snprintf(buf, n, "%s.%s", base, key));
}

const char *cb_path_index(char *buf, size_t n, const char *base, size_t i) {
    return mark_cut(buf, n, snprintf(buf, n, "%s[%zu]", base ? base : "", i));
}

void cb_schema_errorf(cb_check_ctx *c, const char *where, const char *path, const char *fmt, ...) {
    char text[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    where = where ? where : "";
    int limit = c->d->limit ? c->d->limit : 1000;
    /* Defaults merged into every run carry the location of the defaults entry:
     * one problem there is one error, not one per run, and an entry already found
     * wrong as a default is not reported again in the runs. (A full list only counts.) */
    if (where[0] && c->d->n < limit) {
        for (int i = 0; i < c->d->n; i++) {
            const cb_error *o = &c->d->items[i];
            const char *tail = strstr(o->msg, ": ");
            if (strcmp(o->where, where) != 0) continue;
            if ((tail && strcmp(tail + 2, text) == 0) || strncmp(o->msg, "defaults.", 9) == 0) return;
        }
    }
    if (path && path[0]) cb_diags_addf(c->d, CB_E_INVALID, where, "%s: %s", path, text);
    else cb_diags_addf(c->d, CB_E_INVALID, where, "%s", text);
    c->n_errors++;
}

/* "the string \"abc\"", "the integer 5", ... for "expected X, got Y" */
static const char *describe(const json_t *v, char *buf, size_t n) {
    switch (json_typeof(v)) {
    case JSON_STRING: {
        const char *s = json_string_value(v);
        if (strlen(s) > 40) snprintf(buf, n, "the string \"%.37s...\"", s);
        else snprintf(buf, n, "the string \"%s\"", s);
        break;
    }
    case JSON_INTEGER: snprintf(buf, n, "the integer %" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, n, "the number %g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, n, "true"); break;
    case JSON_FALSE: snprintf(buf, n, "false"); break;
    case JSON_NULL: snprintf(buf, n, "null (an empty value)"); break;
    case JSON_ARRAY: snprintf(buf, n, "a list"); break;
    case JSON_OBJECT: snprintf(buf, n, "a mapping"); break;
    }
    return buf;
}

static void join_values(const char *const *values, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; values[i] && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", i ? ", " : "", values[i]);
}

static const char *expected_phrase(const cb_type *t, char *buf, size_t n) {
    char vals[400];
    switch (t->kind) {
    case CB_K_SCALAR: snprintf(buf, n, "a string, number or boolean"); break;
    case CB_K_INT: snprintf(buf, n, "an integer"); break;
    case CB_K_FLOAT: snprintf(buf, n, "a number"); break;
    case CB_K_BOOL: snprintf(buf, n, "true or false"); break;
    case CB_K_STRING: snprintf(buf, n, "a string"); break;
    case CB_K_ENUM:
        join_values(t->values, vals, sizeof vals);
        snprintf(buf, n, "one of %s", vals);
        break;
    case CB_K_LIST:
        if (t->flags & CB_F_ONE_OR_LIST) {
            char inner[480];
            expected_phrase(t->elem, inner, sizeof inner);
            snprintf(buf, n, "%s, or a list of them", inner);
        } else {
            snprintf(buf, n, "a list");
        }
        break;
    default: snprintf(buf, n, "a mapping"); break;
    }
    return buf;
}

static void type_error(cb_check_ctx *c, const json_t *v, const cb_type *t, const char *path,
                       const char *where) {
    char want[520], got[80];
    cb_schema_errorf(c, where, path, "expected %s, got %s", expected_phrase(t, want, sizeof want),
                     describe(v, got, sizeof got));
}

static void fmt_num(char *buf, size_t n, double x, int is_int) {
    if (is_int && fabs(x) < 9.0e15) snprintf(buf, n, "%.0f", x);
    else snprintf(buf, n, "%g", x);
}

static void check_range(cb_check_ctx *c, double x, const cb_type *t, const char *path,
                        const char *where, const json_t *v) {
    unsigned r = t->range;
    if (!r) return;
    int ok = 1;
    if ((r & CB_R_MIN) && !(x >= t->min)) ok = 0;
    if ((r & CB_R_MIN_EXCL) && !(x > t->min)) ok = 0;
    if ((r & CB_R_MAX) && !(x <= t->max)) ok = 0;
    if ((r & CB_R_MAX_EXCL) && !(x < t->max)) ok = 0;
    if (ok) return;
    int is_int = t->kind == CB_K_INT;
    char lo[40], hi[40], got[40];
    fmt_num(lo, sizeof lo, t->min, is_int);
    fmt_num(hi, sizeof hi, t->max, is_int);
    if (json_is_integer(v)) snprintf(got, sizeof got, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else snprintf(got, sizeof got, "%g", x);
    int has_lo = (r & (CB_R_MIN | CB_R_MIN_EXCL)) != 0, has_hi = (r & (CB_R_MAX | CB_R_MAX_EXCL)) != 0;
    if (has_lo && has_hi) {
        if ((r & CB_R_MIN) && (r & CB_R_MAX) && t->min == t->max)
            cb_schema_errorf(c, where, path, "must be %s, got %s", lo, got);
        else
            cb_schema_errorf(c, where, path, "must be in %c%s, %s%c, got %s", (r & CB_R_MIN) ? '[' : '(',
                             lo, hi, (r & CB_R_MAX) ? ']' : ')', got);
    } else if (has_lo) {
        cb_schema_errorf(c, where, path, "must be %s %s, got %s", (r & CB_R_MIN) ? ">=" : ">", lo, got);
    } else {
        cb_schema_errorf(c, where, path, "must be %s %s, got %s", (r & CB_R_MAX) ? "<=" : "<", hi, got);
    }
}

static int is_ident(const char *s) {
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int is_file_name(const char *s) {
    if (*s == '.') return 0;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return 0;
    return 1;
}

static int is_node_id(const char *s) {
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '*'))
            return 0;
    return 1;
}

const cb_field *cb_schema_field(const cb_schema *s, const char *name) {
    for (int i = 0; i < s->n_fields; i++)
        if (strcmp(s->fields[i].name, name) == 0) return &s->fields[i];
    return NULL;
}

const cb_schema *cb_schema_variant(const cb_union *u, const char *tag_value) {
    for (int i = 0; i < u->n_variants; i++)
        if (strcmp(u->variants[i]->name, tag_value) == 0) return u->variants[i];
    return NULL;
}

static void check_union(cb_check_ctx *c, const json_t *obj, const cb_union *u, const char *path);

static void check_list(cb_check_ctx *c, const json_t *v, const cb_type *t, const char *path,
                       const char *where) {
    size_t n = json_array_size(v);
    if ((t->flags & CB_F_NONEMPTY) && n == 0) {
        cb_schema_errorf(c, where, path, "must not be empty");
        return;
    }
    if (t->min_len && t->min_len == t->max_len && n != (size_t)t->min_len) {
        cb_schema_errorf(c, where, path, "expected exactly %d elements, got %zu", t->min_len, n);
    } else if (t->min_len && n < (size_t)t->min_len) {
        cb_schema_errorf(c, where, path, "expected at least %d elements, got %zu", t->min_len, n);
    } else if (t->max_len && n > (size_t)t->max_len) {
        cb_schema_errorf(c, where, path, "expected at most %d elements, got %zu", t->max_len, n);
    }
    char p[PATH_MAX_LEN];
    /* unique_key value -> first index; a hash, as hostile lists can be long */
    json_t *seen = t->unique_key ? json_object() : NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        /* scalars carry no location of their own: point at the list */
        const char *ewhere = json_is_object(e) && cb_loc(e, NULL)[0] ? cb_loc(e, NULL) : where;
        cb_path_index(p, sizeof p, path, i);
        cb_schema_check_value(c, e, t->elem, p, ewhere);
        const json_t *k = seen && json_is_object(e) ? json_object_get(e, t->unique_key) : NULL;
        if (!json_is_string(k)) continue;
        const json_t *first = json_object_get(seen, json_string_value(k));
        if (!first) {
            json_object_set_new(seen, json_string_value(k), json_integer((json_int_t)i));
            continue;
        }
        char kp[PATH_MAX_LEN], op[PATH_MAX_LEN];
        cb_path_key(kp, sizeof kp, p, t->unique_key);
        cb_path_index(op, sizeof op, path, (size_t)json_integer_value(first));
        cb_schema_errorf(c, cb_loc(e, t->unique_key), kp, "duplicate %s \"%s\" (also %s)", t->unique_key,
                         json_string_value(k), op);
    }
    json_decref(seen);
}

void cb_schema_check_value(cb_check_ctx *c, const json_t *v, const cb_type *t, const char *path,
                           const char *where) {
    if (json_is_null(v) && (t->flags & CB_F_NULLABLE)) return;
    switch (t->kind) {
    case CB_K_ANY: return;
    case CB_K_SCALAR:
        if (!json_is_string(v) && !json_is_number(v) && !json_is_boolean(v)) type_error(c, v, t, path, where);
        return;
    case CB_K_INT:
        if (!json_is_integer(v)) { type_error(c, v, t, path, where); return; }
        check_range(c, (double)json_integer_value(v), t, path, where, v);
        return;
    case CB_K_FLOAT:
        if (!json_is_number(v)) { type_error(c, v, t, path, where); return; }
        if (!isfinite(json_number_value(v))) {
            cb_schema_errorf(c, where, path, "must be a finite number");
            return;
        }
        check_range(c, json_number_value(v), t, path, where, v);
        return;
    case CB_K_BOOL:
        if (!json_is_boolean(v)) type_error(c, v, t, path, where);
        return;
    case CB_K_STRING: {
        if (!json_is_string(v)) { type_error(c, v, t, path, where); return; }
        const char *s = json_string_value(v);
        if ((t->flags & CB_F_NONEMPTY) && !s[0]) cb_schema_errorf(c, where, path, "must not be empty");
        else if ((t->flags & CB_F_NODE_ID) && !is_node_id(s))
            cb_schema_errorf(c, where, path, "\"%s\" is not a valid id (letters, digits and _ only)", s);
        else if ((t->flags & CB_F_FILE_NAME) && !is_file_name(s))
            cb_schema_errorf(c, where, path,
                             "\"%s\" is not a valid name (letters, digits, _, - and ., not starting with .)", s);
        return;
    }
    case CB_K_ENUM: {
        if (!json_is_string(v)) { type_error(c, v, t, path, where); return; }
        const char *s = json_string_value(v);
        for (int i = 0; t->values[i]; i++)
            if (strcmp(t->values[i], s) == 0) return;
        int n = 0;
        while (t->values[n]) n++;
        const char *near = cb_suggest(s, t->values, n);
        char vals[400];
        join_values(t->values, vals, sizeof vals);
        if (near)
            cb_schema_errorf(c, where, path, "unknown value \"%s\" (did you mean %s? expected one of %s)", s,
                             near, vals);
        else
            cb_schema_errorf(c, where, path, "unknown value \"%s\" (expected one of %s)", s, vals);
        return;
    }
    case CB_K_LIST:
        if (!json_is_array(v)) {
            if (t->flags & CB_F_ONE_OR_LIST) {
                /* one element stands for a list of one */
                if (json_is_object(v) || json_is_null(v)) type_error(c, v, t, path, where);
                else cb_schema_check_value(c, v, t->elem, path, where);
                return;
            }
            type_error(c, v, t, path, where);
            return;
        }
        check_list(c, v, t, path, where);
        return;
    case CB_K_MAP: {
        if (!json_is_object(v)) { type_error(c, v, t, path, where); return; }
        const char *key;
        json_t *m;
        char p[PATH_MAX_LEN];
        size_t n = 0;
        json_object_foreach((json_t *)v, key, m) {
            if (cb_is_annotation(key)) continue;
            n++;
            cb_path_key(p, sizeof p, path, key);
            if ((t->flags & CB_F_KEY_IDENT) && !is_ident(key))
                cb_schema_errorf(c, cb_loc(v, key), p,
                                 "\"%s\" is not a valid name (letters, digits and _, not starting with a digit)",
                                 key);
            if (t->elem) cb_schema_check_value(c, m, t->elem, p, cb_loc(v, key));
        }
        if ((t->flags & CB_F_NONEMPTY) && n == 0) cb_schema_errorf(c, where, path, "must not be empty");
        return;
    }
    case CB_K_OBJECT:
        if (!json_is_object(v)) { type_error(c, v, t, path, where); return; }
        cb_schema_check_object(c, v, t->schema, path);
        return;
    case CB_K_UNION:
        if (!json_is_object(v)) { type_error(c, v, t, path, where); return; }
        check_union(c, v, t->un, path);
        return;
    }
}

/* Is field f of schema s in force on obj? 1 yes, 0 no (why says so), -1 cannot tell
 * (the field it depends on has an error of its own). */
static int field_applies(const json_t *obj, const cb_schema *s, const cb_field *f, char *why, size_t n) {
    if (f->needs && !json_object_get(obj, f->needs)) {
        snprintf(why, n, "%s is only valid with %s", f->name, f->needs);
        return 0;
    }
    if (!f->when_key) return 1;
    json_t *w = cb_schema_effective(obj, s, f->when_key);
    if (!json_is_string(w)) { json_decref(w); return -1; }
    const char *val = json_string_value(w);
    int ok = 0;
    for (int i = 0; f->when_in[i]; i++)
        if (strcmp(f->when_in[i], val) == 0) ok = 1;
    if (!ok) {
        char vals[300];
        size_t used = 0;
        vals[0] = '\0';
        for (int i = 0; f->when_in[i]; i++)
            used += (size_t)snprintf(vals + used, sizeof vals - used, "%s%s", i ? " or " : "", f->when_in[i]);
        snprintf(why, n, "%s is only valid with %s %s (%s is %s%s)", f->name, f->when_key, vals, f->when_key,
                 val, json_object_get(obj, f->when_key) ? "" : " by default");
    }
    json_decref(w);
    return ok;
}

static void unknown_field(cb_check_ctx *c, const json_t *obj, const cb_schema *s, const cb_union *u,
                          const char *key, const char *path) {
    char p[PATH_MAX_LEN];
    cb_path_key(p, sizeof p, path, key);
    const char *where = cb_loc(obj, key);
    if (u) { /* a field of a sibling type: say so rather than guess a spelling */
        char owners[400];
        size_t used = 0;
        int n_owners = 0;
        owners[0] = '\0';
        for (int i = 0; i < u->n_variants; i++)
            if (u->variants[i] != s && cb_schema_field(u->variants[i], key) && used < sizeof owners)
                used += (size_t)snprintf(owners + used, sizeof owners - used, "%s%s", n_owners++ ? ", " : "",
                                         u->variants[i]->name);
        if (n_owners) {
            cb_schema_errorf(c, where, p, "%s is only valid for %s %s, not %s", key, u->tag, owners, s->name);
            return;
        }
    }
    const char *names[128];
    int n = 0;
    for (int i = 0; i < s->n_fields && n < 128; i++) names[n++] = s->fields[i].name;
    const char *near = cb_suggest(key, names, n);
    if (near) cb_schema_errorf(c, where, p, "unknown field %s (did you mean %s?)", key, near);
    else cb_schema_errorf(c, where, p, "unknown field %s", key);
}

static void check_object_as(cb_check_ctx *c, const json_t *obj, const cb_schema *s, const cb_union *u,
                            const char *path) {
    const char *key;
    json_t *v;
    char p[PATH_MAX_LEN], why[600];
    json_object_foreach((json_t *)obj, key, v) {
        if (cb_is_annotation(key)) continue;
        if (u && strcmp(key, u->tag) == 0) continue;
        const cb_field *f = cb_schema_field(s, key);
        if (!f) { unknown_field(c, obj, s, u, key, path); continue; }
        cb_path_key(p, sizeof p, path, key);
        if (!c->partial && field_applies(obj, s, f, why, sizeof why) == 0) {
            cb_schema_errorf(c, cb_loc(obj, key), p, "%s", why);
            continue;
        }
        cb_schema_check_value(c, v, &f->t, p, cb_loc(obj, key));
    }
    if (c->partial) return;
    for (int i = 0; i < s->n_fields; i++) {
        const cb_field *f = &s->fields[i];
        if (!f->required || json_object_get(obj, f->name)) continue;
        if (field_applies(obj, s, f, why, sizeof why) != 1) continue;
        if (u) cb_schema_errorf(c, cb_loc(obj, NULL), path, "missing required field %s (%s %s)", f->name,
                                u->tag, s->name);
        else cb_schema_errorf(c, cb_loc(obj, NULL), path, "missing required field %s", f->name);
    }
    if (s->check) s->check(c, obj, path);
}

void cb_schema_check_object(cb_check_ctx *c, const json_t *obj, const cb_schema *s, const char *path) {
    check_object_as(c, obj, s, NULL, path);
}

static void check_union(cb_check_ctx *c, const json_t *obj, const cb_union *u, const char *path) {
    const json_t *tag = json_object_get(obj, u->tag);
    char p[PATH_MAX_LEN];
    cb_path_key(p, sizeof p, path, u->tag);
    if (!tag) {
        cb_schema_errorf(c, cb_loc(obj, NULL), path, "missing required field %s", u->tag);
        return;
    }
    const char *names[64];
    int n = 0;
    for (int i = 0; i < u->n_variants && n < 64; i++) names[n++] = u->variants[i]->name;
    if (!json_is_string(tag)) {
        char got[80];
        cb_schema_errorf(c, cb_loc(obj, u->tag), p, "expected a %s name, got %s", u->what,
                         describe(tag, got, sizeof got));
        return;
    }
    const char *t = json_string_value(tag);
    const cb_schema *s = cb_schema_variant(u, t);
    if (!s) {
        const char *near = cb_suggest(t, names, n);
        if (near) {
            cb_schema_errorf(c, cb_loc(obj, u->tag), p, "unknown %s %s (did you mean %s?)", u->what, t, near);
        } else {
            char vals[600];
            size_t used = 0;
            vals[0] = '\0';
            for (int i = 0; i < n && used < sizeof vals; i++)
                used += (size_t)snprintf(vals + used, sizeof vals - used, "%s%s", i ? ", " : "", names[i]);
            cb_schema_errorf(c, cb_loc(obj, u->tag), p, "unknown %s %s (expected one of %s)", u->what, t, vals);
        }
        return;
    }
    check_object_as(c, obj, s, u, path);
}

/* ---- entry points ---- */

static const struct {
    const char *name;
    const cb_schema *schema;
    const cb_union *un;
} named[] = {
    {"node", NULL, &cb_node_union},
    {"model", &cb_model_schema, NULL},
    {"embedder", &cb_embedder_schema, NULL},
    {"head", &cb_head_schema, NULL},
    {"rope_scaling", &cb_rope_scaling_schema, NULL},
    {"group", &cb_group_schema, NULL},
    {"run", &cb_run_schema, NULL},
    {"train", &cb_train_schema, NULL},
    {"model_ref", &cb_model_ref_schema, NULL},
    {"generate", &cb_generate_schema, NULL},
    {"verify", NULL, &cb_verify_union},
    {"benchmark", &cb_benchmark_schema, NULL},
    {"benchmark_config", NULL, &cb_benchmark_config_union},
    {"paper", &cb_paper_schema, NULL},
    {"citations", &cb_citations_schema, NULL},
    {"review", &cb_review_schema, NULL},
    {"research", &cb_research_schema, NULL},
    {"manifest", &cb_manifest_schema, NULL},
};

/* A schema name: one of the table above, or a node type. */
static int lookup(const char *name, const cb_schema **s, const cb_union **u) {
    *s = NULL;
    *u = NULL;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if (strcmp(named[i].name, name) == 0) {
            *s = named[i].schema;
            *u = named[i].un;
            return 1;
        }
    *s = cb_schema_variant(&cb_node_union, name);
    return *s != NULL;
}

int cb_schema_check_node(const json_t *node, const char *schema_name, const char *path_prefix, cb_diags *d) {
    cb_check_ctx c = {.d = d};
    const cb_schema *s;
    const cb_union *u;
    const char *path = path_prefix ? path_prefix : "";
    if (!lookup(schema_name, &s, &u)) {
        cb_schema_errorf(&c, "", path, "no schema named %s", schema_name);
        return c.n_errors;
    }
    /* a node type named directly is checked as a node, whose type must say the same */
    int node_type = !u && cb_schema_variant(&cb_node_union, schema_name);
    if (node_type) u = &cb_node_union;
    cb_type t = {.kind = u ? CB_K_UNION : CB_K_OBJECT, .schema = s, .un = u};
    cb_schema_check_value(&c, node, &t, path, cb_loc(node, NULL));
    const json_t *tag = json_is_object(node) ? json_object_get(node, "type") : NULL;
    if (node_type && json_is_string(tag) && strcmp(json_string_value(tag), schema_name) != 0) {
        char p[PATH_MAX_LEN];
        cb_schema_errorf(&c, cb_loc(node, "type"), cb_path_key(p, sizeof p, path, "type"), "expected type %s, got %s",
                         schema_name, json_string_value(tag));
    }
    return c.n_errors;
}

int cb_schema_check(const json_t *doc, cb_diags *d) {
    cb_check_ctx c = {.d = d};
    const json_t *m = json_object_get(doc, "manifest");
    if (!json_is_object(m)) {
        const json_t *src = json_object_get(doc, "source");
        cb_schema_errorf(&c, json_is_string(src) ? json_string_value(src) : "", "",
                         "the document has no \"manifest\" mapping");
        return c.n_errors;
    }
    /* defaults first: cb-lower copied them into the runs with their locations, and the
     * error should name the defaults entry, not the first run that received it */
    const json_t *defaults = json_object_get(m, "defaults");
    if (json_is_object(defaults)) cb_schema_check_defaults(&c, defaults, "defaults");
    cb_schema_check_object(&c, m, &cb_manifest_schema, "");
    return c.n_errors;
}

int cb_schema_fill_defaults(json_t *node, const char *schema_name) {
    const cb_schema *s;
    const cb_union *u;
    if (!json_is_object(node) || !lookup(schema_name, &s, &u)) return CB_E_INVALID;
    if (u) return cb_schema_fill_union(node, u, 1);
    cb_schema_fill_object(node, s, 1);
    return CB_OK;
}

int cb_schema_is_layer_type(const char *type) {
    return type && cb_schema_variant(&cb_node_union, type) && !strstr(type, "Topology");
}

int cb_schema_is_topology_type(const char *type) {
    return type && cb_schema_variant(&cb_node_union, type) && strstr(type, "Topology") != NULL;
}
