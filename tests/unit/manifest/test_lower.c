/* test_lower.c: cb_lower on hand-written manifest documents: substitution, vars,
 * defaults, run groups, node ids, and the errors (with file:line:col and path). */
#include "test.h"

#include <stdlib.h>
#include "core/json_doc.h"
#include "manifest/lower.h"

/* A manifest document (source "t.yml") around the JSON text of its manifest section. */
static json_t *doc_of(const char *manifest_json) {
    json_error_t je;
    json_t *m = json_loads(manifest_json, 0, &je);
    if (!m) {
        FAILF("test JSON does not parse: %s (line %d col %d)", je.text, je.line, je.column);
        m = json_object();
    }
    json_t *doc = cb_doc_new("manifest");
    json_object_set_new(doc, "source", json_string("t.yml"));
    json_object_set_new(doc, "manifest", m);
    return doc;
}

/* Lower, expecting success; returns the lowered document (caller frees). */
static json_t *lower_ok(const char *manifest_json) {
    json_t *doc = doc_of(manifest_json), *out = NULL;
    cb_diags d;
    cb_diags_init(&d);
    int rc = cb_lower(doc, &out, &d);
    if (rc != CB_OK) {
        FAILF("lowering failed: %.400s: %.400s", d.n ? d.items[0].where : "", d.n ? d.items[0].msg : "?");
        out = cb_doc_new("lowered");
    }
    cb_diags_free(&d);
    json_decref(doc);
    return out;
}

/* Lower, expecting failure; fills d (caller frees) and returns the first "where: msg". */
static const char *lower_err(const char *manifest_json, cb_diags *d, char *line, size_t n) {
    json_t *doc = doc_of(manifest_json), *out = NULL;
    cb_diags_init(d);
    int rc = cb_lower(doc, &out, d);
    json_decref(doc);
    if (rc != CB_E_INVALID || out || d->n == 0) {
        FAILF("expected lowering to fail with status 3, got %d", rc);
        json_decref(out);
        snprintf(line, n, "(no error)");
        return line;
    }
    return cb_error_line(&d->items[0], line, n);
}

/* Message i of d, shortened to what the checks need. */
static const char *msg_of(const cb_diags *d, int i) {
    static char buf[400];
    size_t n = strnlen(d->items[i].msg, sizeof buf - 1);
    memcpy(buf, d->items[i].msg, n);
    buf[n] = '\0';
    return buf;
}

/* The value at a path like "model.topology.layers[1].id" under the manifest section. */
static json_t *at(json_t *doc, const char *path) {
    json_t *v = json_object_get(doc, "manifest");
    char key[256];
    const char *p = path;
    while (v && *p) {
        if (*p == '.') p++;
        if (*p == '[') {
            char *end;
            long i = strtol(p + 1, &end, 10);
            v = json_array_get(v, (size_t)i);
            p = end + 1;
            continue;
        }
        size_t k = strcspn(p, ".[");
        snprintf(key, sizeof key, "%.*s", (int)k, p);
        v = json_object_get(v, key);
        p += k;
    }
    return v;
}

static const char *str_at(json_t *doc, const char *path) {
    return json_string_value(at(doc, path));
}

/* ---- substitution -------------------------------------------------------------- */

TEST(exact_reference_keeps_the_type) {
    json_t *out = lower_ok("{\"vars\": {\"i\": 512, \"f\": 0.25, \"b\": true, \"s\": \"gelu\","
                           " \"l\": [1, 2], \"m\": {\"k\": \"v\"}, \"n\": null},"
                           " \"x\": {\"i\": \"${i}\", \"f\": \"${f}\", \"b\": \"${ b }\", \"s\": \"${s}\","
                           " \"l\": \"${l}\", \"m\": \"${m}\", \"n\": \"${n}\"}}");
    EXPECT_EQ_STR("lowered", json_string_value(json_object_get(out, "kind")));
    EXPECT(json_is_integer(at(out, "x.i")) && json_integer_value(at(out, "x.i")) == 512);
    EXPECT(json_is_real(at(out, "x.f")));
    EXPECT_NEAR(0.25, json_real_value(at(out, "x.f")), 0);
    EXPECT(json_is_true(at(out, "x.b")));
    EXPECT_EQ_STR("gelu", str_at(out, "x.s"));
    EXPECT_EQ_INT(2, json_integer_value(at(out, "x.l[1]")));
    EXPECT_EQ_STR("v", str_at(out, "x.m.k"));
    EXPECT(json_is_null(at(out, "x.n")));
    json_decref(out);
}

TEST(interpolation_gives_text) {
    json_t *out = lower_ok("{\"vars\": {\"d\": 512, \"lr\": 0.001, \"on\": false, \"one\": 1.0, \"tag\": \"dba\"},"
                           " \"name\": \"${tag}_d${d}_lr${lr}_${on}_${one}\","
                           " \"heads\": \"h${d / 64}x\", \"list\": [\"a${d}\", \"${d}\"]}");
    EXPECT_EQ_STR("dba_d512_lr0.001_false_1.0", str_at(out, "name"));
    EXPECT_EQ_STR("h8x", str_at(out, "heads"));
    EXPECT_EQ_STR("a512", str_at(out, "list[0]"));
    EXPECT_EQ_INT(512, json_integer_value(at(out, "list[1]")));
    json_decref(out);
}

TEST(arithmetic_gives_an_integer) {
    json_t *out = lower_ok("{\"vars\": {\"d\": 2048, \"h\": 32, \"kv\": 8},"
                           " \"a\": \"${d / h}\", \"b\": \"${(d / h) * kv}\", \"c\": \"${d - h * kv}\","
                           " \"e\": \"${-h % 5}\", \"f\": \"${ 3 }\"}");
    EXPECT_EQ_INT(64, json_integer_value(at(out, "a")));
    EXPECT_EQ_INT(512, json_integer_value(at(out, "b")));
    EXPECT_EQ_INT(1792, json_integer_value(at(out, "c")));
    EXPECT_EQ_INT(-2, json_integer_value(at(out, "e")));
    EXPECT(json_is_integer(at(out, "f")) && json_integer_value(at(out, "f")) == 3);
    json_decref(out);
}

TEST(dollar_dollar_escapes) {
    json_t *out = lower_ok("{\"vars\": {\"d\": 4, \"lit\": \"$${d}\"},"
                           " \"a\": \"$${d}\", \"b\": \"cost $5 and $${x} and ${d}\", \"c\": \"${lit}\","
                           " \"e\": \"a$b$\"}");
    EXPECT_EQ_STR("${d}", str_at(out, "a"));
    EXPECT_EQ_STR("cost $5 and ${x} and 4", str_at(out, "b"));
    EXPECT_EQ_STR("${d}", str_at(out, "c")); /* not substituted a second time */
    EXPECT_EQ_STR("${d}", str_at(out, "vars.lit"));
    EXPECT_EQ_STR("a$b$", str_at(out, "e"));
    json_decref(out);
}

TEST(vars_reference_vars_in_any_order) {
    json_t *out = lower_ok("{\"vars\": {\"c\": \"${b + a}\", \"b\": \"${a * 3}\", \"a\": 2,"
                           " \"list\": [\"${a}\", {\"k\": \"${c}\"}], \"alias\": \"${list}\","
                           " \"text\": \"n${c}\", \"from_text\": \"${text}\", \"numtext\": \"${a}${a}\","
                           " \"sum\": \"${numtext + 1}\"},"
                           " \"x\": \"${alias}\", \"y\": \"${sum}\"}");
    EXPECT_EQ_INT(8, json_integer_value(at(out, "vars.c")));
    EXPECT_EQ_INT(6, json_integer_value(at(out, "vars.b")));
    EXPECT_EQ_INT(2, json_integer_value(at(out, "x[0]")));
    EXPECT_EQ_INT(8, json_integer_value(at(out, "x[1].k")));
    EXPECT_EQ_STR("n8", str_at(out, "vars.from_text"));
    EXPECT_EQ_STR("22", str_at(out, "vars.numtext"));
    EXPECT_EQ_INT(23, json_integer_value(at(out, "y"))); /* a string holding an integer */
    json_decref(out);
}

TEST(keys_are_substituted_but_not_var_names) {
    json_t *out = lower_ok("{\"vars\": {\"n\": 3, \"k\": \"run\"},"
                           " \"@loc\": {\"\": \"t.yml:1:1\", \"x\": \"t.yml:2:4\"},"
                           " \"x\": {\"@loc\": {\"\": \"t.yml:2:4\", \"${k}_${n}\": \"t.yml:3:9\"}, \"${k}_${n}\": 1}}");
    EXPECT_EQ_INT(1, json_integer_value(at(out, "x.run_3")));
    EXPECT(at(out, "x.${k}_${n}") == NULL);
    EXPECT_EQ_STR("t.yml:3:9", cb_loc(at(out, "x"), "run_3"));
    EXPECT_EQ_INT(3, json_integer_value(at(out, "vars.n")));
    json_decref(out);
}

TEST(input_document_is_unchanged) {
    json_t *doc = doc_of("{\"vars\": {\"a\": 1}, \"x\": \"${a}\", \"runs\": [{\"id\": \"r\"}]}");
    char *before = json_dumps(doc, JSON_SORT_KEYS);
    json_t *out = NULL;
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_OK, cb_lower(doc, &out, &d));
    char *after = json_dumps(doc, JSON_SORT_KEYS);
    EXPECT_EQ_STR(before, after);
    EXPECT_EQ_STR("manifest", json_string_value(json_object_get(doc, "kind")));
    EXPECT_EQ_STR("t.yml", json_string_value(json_object_get(out, "source")));
    free(before);
    free(after);
    json_decref(out);
    json_decref(doc);
    cb_diags_free(&d);
}

/* ---- substitution errors ----------------------------------------------------------- */

#define LOC_MODEL                                                                                \
    "\"@loc\": {\"\": \"t.yml:1:1\", \"vars\": \"t.yml:2:3\", \"model\": \"t.yml:6:3\"},"        \
    "\"model\": {\"@loc\": {\"\": \"t.yml:6:3\", \"topology\": \"t.yml:7:5\"}, \"topology\": "   \
    "{\"@loc\": {\"\": \"t.yml:7:5\", \"type\": \"t.yml:7:11\", \"layers\": \"t.yml:8:7\"},"     \
    "\"type\": \"StackedTopology\", \"layers\": [{\"type\": \"RMSNormLayer\"}, "                  \
    "{\"@loc\": {\"\": \"t.yml:10:9\", \"type\": \"t.yml:10:15\", \"n_heads\": \"t.yml:11:18\"}," \
    "\"type\": \"AttentionLayer\", \"n_heads\": "

TEST(error_names_file_line_col_and_path) {
    cb_diags d;
    char line[400];
    lower_err("{" LOC_MODEL "\"${d_model / n_heads}\"}]}},"
              "\"vars\": {\"@loc\": {\"\": \"t.yml:2:3\", \"d_model\": \"t.yml:3:14\", \"n_heads\": \"t.yml:4:14\"},"
              " \"d_model\": 1000, \"n_heads\": 12}}",
              &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:11:18: model.topology.layers[1].n_heads: d_model / n_heads = 1000 / 12 is not exact",
                  line);
    EXPECT_EQ_INT(1, d.n);
    EXPECT_EQ_INT(CB_E_INVALID, cb_diags_status(&d));
    cb_diags_free(&d);
}

TEST(undefined_var_suggests_a_name) {
    cb_diags d;
    char line[400];
    lower_err("{" LOC_MODEL "\"${n_haeds}\"}]}}, \"vars\": {\"n_heads\": 8, \"d_model\": 512}}", &d, line,
              sizeof line);
    EXPECT_EQ_STR("t.yml:11:18: model.topology.layers[1].n_heads: undefined variable \"n_haeds\" "
                  "(did you mean \"n_heads\"?)", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"alpha\": 1}, \"x\": \"${zzz}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: undefined variable \"zzz\"", line); /* no @loc: the file */
    cb_diags_free(&d);
    lower_err("{\"x\": [\"${D_MODEL}\"], \"vars\": {\"d_model\": 1}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x[0]: undefined variable \"D_MODEL\" (did you mean \"d_model\"?)", line);
    cb_diags_free(&d);
    lower_err("{\"x\": \"${a}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: undefined variable \"a\" (no vars are defined)", line);
    cb_diags_free(&d);
}

TEST(cycles_are_reported_once) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"@loc\": {\"\": \"t.yml:2:3\", \"a\": \"t.yml:2:6\", \"b\": \"t.yml:3:6\"},"
              " \"a\": \"${b}\", \"b\": [\"${a}\"]}, \"x\": \"${a}\", \"y\": \"${b}\"}",
              &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:3:6: vars.b[0]: vars cycle: a -> b -> a", line);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"a\": \"x${a}\"}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: vars.a: vars cycle: a -> a", line);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"z\": \"${a}\", \"a\": \"${b + 1}\", \"b\": \"${c}\", \"c\": \"${a * 2}\"}}", &d,
              line, sizeof line);
    EXPECT_EQ_STR("t.yml: vars.c: vars cycle: a -> b -> c -> a", line);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
}

TEST(arithmetic_needs_integers) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"f\": 0.5}, \"x\": \"${f * 2}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: f is a float (0.5); arithmetic needs an integer", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"s\": \"gelu\"}, \"x\": \"${s + 1}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: s is a string (\"gelu\"); arithmetic needs an integer", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"l\": [1]}, \"x\": \"${-l}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: l is a list; arithmetic needs an integer", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"b\": true}, \"x\": \"${(b)}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: b is a bool (true); arithmetic needs an integer", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"m\": {\"a\": 1}}, \"x\": \"n${m}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: m is a mapping; only a string, number or bool can be put inside a longer string",
                  line);
    cb_diags_free(&d);
}

TEST(arithmetic_errors) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"z\": 0}, \"x\": \"${8 / z}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: 8 / z: division by zero", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"big\": 4611686018427387904}, \"x\": \"${big * 2}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: big * 2 = 4611686018427387904 * 2 does not fit in 64 bits", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"a\": 1}, \"x\": \"${a +}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: syntax error in ${a +}: expected a name, a number or '(' at end", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": {\"a\": 1}, \"x\": \"w${a\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: syntax error: \"${\" without a closing '}' in \"w${a\"", line);
    cb_diags_free(&d);
    lower_err("{\"x\": \"${}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x: syntax error in ${}: empty expression", line);
    cb_diags_free(&d);
}

TEST(every_error_is_reported) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"a\": 1, \"bad\": \"${nope}\"}, \"x\": \"${b}\", \"y\": [\"${c}\", \"${a / 0}\"],"
              " \"z\": \"${bad}\"}",
              &d, line, sizeof line);
    EXPECT_EQ_INT(4, d.n); /* nope, b, c, a / 0; bad is not reported again */
    if (d.n == 4) {
        EXPECT_EQ_STR("vars.bad: undefined variable \"nope\"", msg_of(&d, 0));
        EXPECT_EQ_STR("x: undefined variable \"b\"", msg_of(&d, 1));
        EXPECT_EQ_STR("y[0]: undefined variable \"c\"", msg_of(&d, 2));
        EXPECT_EQ_STR("y[1]: a / 0: division by zero", msg_of(&d, 3));
    }
    cb_diags_free(&d);
}

TEST(bad_var_names_and_vars_shape) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"d-model\": 1}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: vars.d-model: a variable name must match [A-Za-z_][A-Za-z0-9_]*", line);
    cb_diags_free(&d);
    lower_err("{\"vars\": [1, 2], \"x\": \"${a}\"}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: vars: expected a mapping of names to values, got a list", line);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    json_t *out = lower_ok("{\"vars\": null, \"x\": 1}");
    EXPECT_EQ_INT(1, json_integer_value(at(out, "x")));
    json_decref(out);
}

TEST(key_substitution_clash) {
    cb_diags d;
    char line[400];
    lower_err("{\"vars\": {\"k\": \"a\"}, \"x\": {\"a\": 1, \"${k}\": 2}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml: x.${k}: key becomes \"a\" after substitution, which is already a key here", line);
    cb_diags_free(&d);
}

TEST(huge_expansion_is_an_error) {
    /* each level references the one below 16 times: 16^6 values, far past the budget */
    cb_diags d;
    char line[400];
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "{\"vars\": {\"v0\": [1, 2, 3, 4]");
    for (int level = 1; level <= 6; level++) {
        n += (size_t)snprintf(text + n, sizeof text - n, ", \"v%d\": [", level);
        for (int k = 0; k < 16; k++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s\"${v%d}\"", k ? ", " : "", level - 1);
        n += (size_t)snprintf(text + n, sizeof text - n, "]");
    }
    snprintf(text + n, sizeof text - n, "}, \"x\": \"${v6}\"}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "expansion too large: substituting vars would produce more than 2000000 values") != NULL);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);

    /* strings that double at each level */
    n = (size_t)snprintf(text, sizeof text, "{\"vars\": {\"s0\": \"abcdefghabcdefghabcdefghabcdefgh\"");
    for (int level = 1; level <= 24; level++)
        n += (size_t)snprintf(text + n, sizeof text - n, ", \"s%d\": \"${s%d}${s%d}\"", level, level - 1,
                              level - 1);
    snprintf(text + n, sizeof text - n, "}}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "expansion too large") != NULL && strstr(line, "characters") != NULL);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
}

TEST(depth_is_bounded) {
    cb_diags d;
    char line[400];
    size_t depth = CB_LOWER_MAX_DEPTH + 10;
    char *text = malloc(4 * depth + 64);
    size_t n = (size_t)sprintf(text, "{\"x\": ");
    for (size_t i = 0; i < depth; i++) text[n++] = '[';
    for (size_t i = 0; i < depth; i++) text[n++] = ']';
    strcpy(text + n, "}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "nested deeper than 256 levels") != NULL);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    /* a var 200 deep substituted 100 levels down: too deep together */
    n = (size_t)sprintf(text, "{\"vars\": {\"deep\": ");
    for (size_t i = 0; i < 200; i++) text[n++] = '[';
    for (size_t i = 0; i < 200; i++) text[n++] = ']';
    n += (size_t)sprintf(text + n, "}, \"x\": ");
    for (size_t i = 0; i < 100; i++) text[n++] = '[';
    n += (size_t)sprintf(text + n, "\"${deep}\"");
    for (size_t i = 0; i < 100; i++) text[n++] = ']';
    strcpy(text + n, "}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "substituting ${deep} here nests deeper than 256 levels") != NULL);
    cb_diags_free(&d);
    free(text);
}

TEST(long_var_chains_are_bounded) {
    /* a0 -> a1 -> ... -> a299: resolving a0 first needs 300 vars at once */
    cb_diags d;
    char line[400];
    size_t cap = 40000, n = 0;
    char *text = malloc(cap);
    n += (size_t)snprintf(text + n, cap - n, "{\"vars\": {");
    for (int i = 0; i < 299; i++) n += (size_t)snprintf(text + n, cap - n, "\"a%d\": \"${a%d}\", ", i, i + 1);
    snprintf(text + n, cap - n, "\"a299\": 1}, \"x\": \"${a0}\"}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "vars.a255: vars refer to each other more than 256 deep: a0 -> a1 -> ") != NULL);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    /* defined the other way round, the same chain resolves one var at a time */
    n = (size_t)snprintf(text, cap, "{\"vars\": {\"a299\": 1");
    for (int i = 298; i >= 0; i--) n += (size_t)snprintf(text + n, cap - n, ", \"a%d\": \"${a%d}\"", i, i + 1);
    snprintf(text + n, cap - n, "}, \"x\": \"${a0}\"}");
    json_t *out = lower_ok(text);
    EXPECT_EQ_INT(1, json_integer_value(at(out, "x")));
    json_decref(out);
    /* vars each 200 lists deep, each referring to the next: recursion bounded as a whole */
    n = (size_t)snprintf(text, cap, "{\"vars\": {");
    for (int v = 0; v < 8; v++) {
        n += (size_t)snprintf(text + n, cap - n, "%s\"v%d\": ", v ? ", " : "", v);
        for (int i = 0; i < 200; i++) text[n++] = '[';
        n += (size_t)snprintf(text + n, cap - n, "\"${v%d}\"", v + 1);
        for (int i = 0; i < 200; i++) text[n++] = ']';
    }
    snprintf(text + n, cap - n, ", \"v8\": 0}}");
    lower_err(text, &d, line, sizeof line);
    EXPECT(strstr(line, "t.yml: vars.v5[0][0]") == line);
    EXPECT(strstr(line, "vars and values nest more than 1024 levels deep in all") != NULL);
    /* v6, left unresolved then, fails on its own afterwards: v7 inside it is too deep */
    EXPECT_EQ_INT(2, d.n);
    if (d.n == 2) EXPECT(strstr(msg_of(&d, 1), "substituting ${v7} here nests deeper than 256 levels") != NULL);
    cb_diags_free(&d);
    free(text);
}

/* ---- runs, groups, defaults ------------------------------------------------------- */

TEST(defaults_merge_into_runs) {
    json_t *out = lower_ok(
        "{\"@loc\": {\"\": \"t.yml:1:1\", \"defaults\": \"t.yml:2:3\", \"groups\": \"t.yml:9:3\"},"
        " \"defaults\": {\"@loc\": {\"\": \"t.yml:2:3\", \"seed\": \"t.yml:3:9\", \"lr\": \"t.yml:4:7\","
        " \"steps\": \"t.yml:5:10\", \"mode\": \"t.yml:6:9\", \"optimizer\": \"t.yml:7:5\", \"data\": \"t.yml:8:9\"},"
        "   \"seed\": 7, \"lr\": 0.01, \"steps\": 100, \"mode\": \"train\", \"optimizer\": {\"type\": \"adamw\"},"
        "   \"data\": \"default.npy\"},"
        " \"groups\": [{\"@loc\": {\"\": \"t.yml:10:5\", \"data\": \"t.yml:11:11\"}, \"name\": \"g\","
        "   \"data\": \"group.npy\", \"runs\": ["
        "   {\"@loc\": {\"\": \"t.yml:13:9\"}, \"id\": \"a\"},"
        "   {\"id\": \"b\", \"seed\": 1, \"train\": {\"lr\": 0.5, \"data\": \"own.npy\"}},"
        "   {\"id\": \"c\", \"train\": \"not a mapping\"}, 5]},"
        "  {\"name\": \"h\", \"runs\": [{\"id\": \"d\"}]}]}");
    EXPECT_EQ_INT(7, json_integer_value(at(out, "groups[0].runs[0].seed")));
    EXPECT_EQ_INT(100, json_integer_value(at(out, "groups[0].runs[0].steps")));
    EXPECT_EQ_STR("train", str_at(out, "groups[0].runs[0].mode"));
    EXPECT_NEAR(0.01, json_real_value(at(out, "groups[0].runs[0].train.lr")), 0);
    EXPECT_EQ_STR("adamw", str_at(out, "groups[0].runs[0].train.optimizer.type"));
    EXPECT_EQ_STR("group.npy", str_at(out, "groups[0].runs[0].train.data")); /* group before defaults */
    EXPECT(at(out, "groups[0].runs[0].lr") == NULL);
    EXPECT(at(out, "groups[0].runs[0].train.seed") == NULL);
    /* locations point at the defaults and the group */
    EXPECT_EQ_STR("t.yml:3:9", cb_loc(at(out, "groups[0].runs[0]"), "seed"));
    EXPECT_EQ_STR("t.yml:4:7", cb_loc(at(out, "groups[0].runs[0].train"), "lr"));
    EXPECT_EQ_STR("t.yml:11:11", cb_loc(at(out, "groups[0].runs[0].train"), "data"));
    EXPECT_EQ_STR("t.yml:13:9", cb_loc(at(out, "groups[0].runs[0].train"), NULL));
    /* what a run sets stays */
    EXPECT_EQ_INT(1, json_integer_value(at(out, "groups[0].runs[1].seed")));
    EXPECT_NEAR(0.5, json_real_value(at(out, "groups[0].runs[1].train.lr")), 0);
    EXPECT_EQ_STR("own.npy", str_at(out, "groups[0].runs[1].train.data"));
    EXPECT_EQ_INT(100, json_integer_value(at(out, "groups[0].runs[1].steps")));
    /* odd shapes are left for cb-validate */
    EXPECT_EQ_STR("not a mapping", str_at(out, "groups[0].runs[2].train"));
    EXPECT_EQ_INT(7, json_integer_value(at(out, "groups[0].runs[2].seed")));
    EXPECT_EQ_INT(5, json_integer_value(at(out, "groups[0].runs[3]")));
    /* a group without data gets the defaults' */
    EXPECT_EQ_STR("default.npy", str_at(out, "groups[1].runs[0].train.data"));
    /* defaults stay for the record */
    EXPECT_EQ_INT(7, json_integer_value(at(out, "defaults.seed")));
    json_decref(out);
}

TEST(top_level_runs_become_the_default_group) {
    json_t *out = lower_ok(
        "{\"@loc\": {\"\": \"t.yml:1:1\", \"runs\": \"t.yml:4:3\", \"benchmarks\": \"t.yml:9:3\", \"verify\": \"t.yml:2:3\"},"
        " \"verify\": {\"type\": \"fidelity\"}, \"defaults\": {\"steps\": 3},"
        " \"runs\": [{\"id\": \"a\"}, {\"id\": \"b\", \"verify\": {\"type\": \"compare\"}}],"
        " \"benchmarks\": [{\"id\": \"ppl\"}]}");
    EXPECT(at(out, "runs") == NULL);
    EXPECT(at(out, "benchmarks") == NULL);
    EXPECT_EQ_INT(1, json_array_size(at(out, "groups")));
    EXPECT_EQ_STR("default", str_at(out, "groups[0].name"));
    EXPECT_EQ_STR("a", str_at(out, "groups[0].runs[0].id"));
    EXPECT_EQ_STR("ppl", str_at(out, "groups[0].benchmarks[0].id"));
    EXPECT_EQ_STR("t.yml:4:3", cb_loc(at(out, "groups[0]"), NULL));
    EXPECT_EQ_STR("t.yml:9:3", cb_loc(at(out, "groups[0]"), "benchmarks"));
    EXPECT_EQ_STR("fidelity", str_at(out, "groups[0].runs[0].verify.type"));
    EXPECT_EQ_STR("t.yml:2:3", cb_loc(at(out, "groups[0].runs[0]"), "verify"));
    EXPECT_EQ_STR("compare", str_at(out, "groups[0].runs[1].verify.type"));
    EXPECT_EQ_INT(3, json_integer_value(at(out, "groups[0].runs[1].steps")));
    EXPECT_EQ_STR("fidelity", str_at(out, "verify.type"));
    json_decref(out);

    /* beside other groups it is appended */
    out = lower_ok("{\"groups\": [{\"name\": \"g\", \"runs\": []}], \"runs\": [{\"id\": \"a\"}]}");
    EXPECT_EQ_STR("g", str_at(out, "groups[0].name"));
    EXPECT_EQ_STR("default", str_at(out, "groups[1].name"));
    EXPECT_EQ_STR("a", str_at(out, "groups[1].runs[0].id"));
    json_decref(out);

    cb_diags d;
    char line[400];
    lower_err("{\"@loc\": {\"\": \"t.yml:1:1\", \"runs\": \"t.yml:5:3\"},"
              " \"groups\": [{\"name\": \"default\", \"runs\": []}], \"runs\": [{\"id\": \"a\"}]}",
              &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:5:3: runs: top-level runs go into a group named \"default\", but groups already "
                  "has one; move them into it", line);
    cb_diags_free(&d);
}

TEST(odd_shapes_do_not_crash) {
    const char *cases[] = {
        "{\"groups\": \"x\", \"runs\": 5, \"defaults\": [1], \"verify\": 2}",
        "{\"groups\": [1, \"a\", {\"runs\": {\"a\": 1}}, {\"runs\": [null]}], \"defaults\": {\"seed\": 1}}",
        "{\"model\": 5}",
        "{\"model\": {\"topology\": [1, 2]}}",
        "{\"model\": {\"topology\": {\"type\": 7, \"layers\": {\"a\": 1}}}}",
        "{\"model\": {\"topology\": {\"layers\": [1, null, [], {\"layers\": 3}]}}}",
        "{\"runs\": [1, 2], \"benchmarks\": \"b\"}",
        "{}",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out = lower_ok(cases[i]);
        EXPECT(json_is_object(at(out, "")));
        json_decref(out);
    }
    json_t *doc = cb_doc_new("manifest"), *out = NULL;
    json_object_set_new(doc, "manifest", json_array());
    cb_diags d;
    cb_diags_init(&d);
    EXPECT_EQ_INT(CB_E_INVALID, cb_lower(doc, &out, &d));
    EXPECT(out == NULL);
    EXPECT_EQ_STR("manifest: expected a mapping at the top, got a list", d.n ? msg_of(&d, 0) : "");
    cb_diags_free(&d);
    json_decref(doc);
}

/* ---- node ids ---------------------------------------------------------------------- */

TEST(default_ids_and_collisions) {
    json_t *out = lower_ok(
        "{\"model\": {\"topology\": {\"type\": \"StackedTopology\", \"layers\": ["
        " {\"type\": \"AttentionLayer\"}, {\"type\": \"RMSNormLayer\"}, {\"type\": \"AttentionLayer\"},"
        " {\"type\": \"LayerNormLayer\"}, {\"type\": \"AttentionLayer\"}, {\"type\": \"Mystery\"},"
        " {\"type\": \"ResidualTopology\", \"layers\": [{\"type\": \"SwiGLULayer\"}, {\"type\": \"MLPLayer\"}]}]}}}");
    EXPECT_EQ_STR("", str_at(out, "model.topology.id"));
    EXPECT_EQ_STR("attn", str_at(out, "model.topology.layers[0].id"));
    EXPECT_EQ_STR("norm", str_at(out, "model.topology.layers[1].id"));
    EXPECT_EQ_STR("attn_1", str_at(out, "model.topology.layers[2].id"));
    EXPECT_EQ_STR("norm_1", str_at(out, "model.topology.layers[3].id"));
    EXPECT_EQ_STR("attn_2", str_at(out, "model.topology.layers[4].id"));
    EXPECT_EQ_STR("node", str_at(out, "model.topology.layers[5].id"));
    EXPECT_EQ_STR("res", str_at(out, "model.topology.layers[6].id"));
    EXPECT_EQ_STR("res.mlp", str_at(out, "model.topology.layers[6].layers[0].id"));
    EXPECT_EQ_STR("res.mlp_1", str_at(out, "model.topology.layers[6].layers[1].id"));
    json_decref(out);
}

TEST(explicit_ids_win_over_defaults) {
    json_t *out = lower_ok(
        "{\"model\": {\"topology\": {\"type\": \"StackedTopology\", \"id\": \"ignored\", \"layers\": ["
        " {\"type\": \"AttentionLayer\"}, {\"type\": \"AttentionLayer\"}, {\"type\": \"AttentionLayer\", \"id\": \"attn_1\"},"
        " {\"type\": \"LinearLayer\", \"id\": \"attn\"}, {\"type\": \"RMSNormLayer\", \"id\": \"final_norm\"}]}}}");
    EXPECT_EQ_STR("", str_at(out, "model.topology.id"));
    EXPECT_EQ_STR("attn_2", str_at(out, "model.topology.layers[0].id"));
    EXPECT_EQ_STR("attn_3", str_at(out, "model.topology.layers[1].id"));
    EXPECT_EQ_STR("attn_1", str_at(out, "model.topology.layers[2].id"));
    EXPECT_EQ_STR("attn", str_at(out, "model.topology.layers[3].id"));
    EXPECT_EQ_STR("final_norm", str_at(out, "model.topology.layers[4].id"));
    json_decref(out);
}

TEST(nested_children_get_a_star) {
    json_t *out = lower_ok(
        "{\"vars\": {\"n\": 4}, \"model\": {\"topology\": {\"type\": \"StackedTopology\", \"layers\": ["
        " {\"type\": \"NestedTopology\", \"repeat\": \"${n}\", \"layers\": ["
        "   {\"type\": \"ResidualTopology\", \"layers\": [{\"type\": \"RMSNormLayer\"}, {\"type\": \"AttentionLayer\"}]},"
        "   {\"type\": \"ResidualTopology\", \"layers\": [{\"type\": \"RMSNormLayer\"}, {\"type\": \"SwiGLULayer\"}]},"
        "   {\"type\": \"NestedTopology\", \"id\": \"inner\", \"repeat\": 2, \"layers\": [{\"type\": \"LinearLayer\"}]}]},"
        " {\"type\": \"RMSNormLayer\"}]}}}");
    EXPECT_EQ_STR("blocks", str_at(out, "model.topology.layers[0].id"));
    EXPECT_EQ_INT(4, json_integer_value(at(out, "model.topology.layers[0].repeat")));
    EXPECT_EQ_INT(3, json_array_size(at(out, "model.topology.layers[0].layers"))); /* stays compact */
    EXPECT_EQ_STR("blocks.*.res", str_at(out, "model.topology.layers[0].layers[0].id"));
    EXPECT_EQ_STR("blocks.*.res.attn", str_at(out, "model.topology.layers[0].layers[0].layers[1].id"));
    EXPECT_EQ_STR("blocks.*.res_1.mlp", str_at(out, "model.topology.layers[0].layers[1].layers[1].id"));
    EXPECT_EQ_STR("blocks.*.inner.*.linear", str_at(out, "model.topology.layers[0].layers[2].layers[0].id"));
    EXPECT_EQ_STR("norm", str_at(out, "model.topology.layers[1].id"));
    json_decref(out);

    /* a NestedTopology at the root; "embed" is not at root level under it */
    out = lower_ok("{\"model\": {\"topology\": {\"type\": \"NestedTopology\", \"repeat\": 2, \"layers\": ["
                   " {\"type\": \"AttentionLayer\", \"id\": \"embed\"}, {\"type\": \"MLPLayer\"}]}}}");
    EXPECT_EQ_STR("*.embed", str_at(out, "model.topology.layers[0].id"));
    EXPECT_EQ_STR("*.mlp", str_at(out, "model.topology.layers[1].id"));
    json_decref(out);
}

#define LOC_TOPO                                                                                        \
    "{\"model\": {\"topology\": {\"@loc\": {\"\": \"t.yml:3:5\", \"layers\": \"t.yml:4:7\"},"           \
    "\"type\": \"StackedTopology\", \"layers\": [{\"@loc\": {\"\": \"t.yml:5:9\", \"id\": \"t.yml:5:13\"}," \
    " \"type\": \"AttentionLayer\", \"id\": "
#define LOC_TOPO2 "}, {\"@loc\": {\"\": \"t.yml:6:9\", \"id\": \"t.yml:6:13\"}, \"type\": \"MLPLayer\", \"id\": "

TEST(id_errors) {
    cb_diags d;
    char line[400];
    lower_err(LOC_TOPO "\"a\"" LOC_TOPO2 "\"a\"}]}}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:6:13: model.topology.layers[1].id: duplicate id \"a\": a sibling at t.yml:5:13 has it too",
                  line);
    EXPECT_EQ_INT(1, d.n);
    cb_diags_free(&d);
    lower_err(LOC_TOPO "\"1st\"" LOC_TOPO2 "\"ok\"}]}}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:5:13: model.topology.layers[0].id: invalid id \"1st\": an id must match "
                  "[A-Za-z_][A-Za-z0-9_]*", line);
    cb_diags_free(&d);
    lower_err(LOC_TOPO "\"a.b\"" LOC_TOPO2 "7}]}}}", &d, line, sizeof line);
    EXPECT_EQ_INT(2, d.n);
    if (d.n == 2) {
        EXPECT_EQ_STR("model.topology.layers[0].id: invalid id \"a.b\": an id must match [A-Za-z_][A-Za-z0-9_]*",
                      msg_of(&d, 0));
        EXPECT_EQ_STR("model.topology.layers[1].id: invalid id an integer: an id must match [A-Za-z_][A-Za-z0-9_]*",
                      msg_of(&d, 1));
    }
    cb_diags_free(&d);
    lower_err(LOC_TOPO "\"ok\"" LOC_TOPO2 "\"head\"}]}}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:6:13: model.topology.layers[1].id: id \"head\" is reserved at the root level "
                  "(the LM head uses it)", line);
    cb_diags_free(&d);
    lower_err(LOC_TOPO "\"embed\"" LOC_TOPO2 "\"x\"}]}}}", &d, line, sizeof line);
    EXPECT_EQ_STR("t.yml:5:13: model.topology.layers[0].id: id \"embed\" is reserved at the root level "
                  "(the embedder uses it)", line);
    cb_diags_free(&d);
    /* the same names deeper down are fine */
    json_t *out = lower_ok("{\"model\": {\"topology\": {\"type\": \"StackedTopology\", \"layers\": ["
                           "{\"type\": \"StackedTopology\", \"layers\": [{\"type\": \"LinearLayer\", \"id\": \"head\"}]}]}}}");
    EXPECT_EQ_STR("stack.head", str_at(out, "model.topology.layers[0].layers[0].id"));
    json_decref(out);
}

TEST(ids_after_substitution) {
    json_t *out = lower_ok("{\"vars\": {\"name\": \"enc\", \"block\": {\"type\": \"AttentionLayer\"}},"
                           " \"model\": {\"topology\": {\"type\": \"StackedTopology\", \"layers\": ["
                           " \"${block}\", \"${block}\", {\"type\": \"MLPLayer\", \"id\": \"${name}_mlp\"}]}}}");
    EXPECT_EQ_STR("attn", str_at(out, "model.topology.layers[0].id"));
    EXPECT_EQ_STR("attn_1", str_at(out, "model.topology.layers[1].id"));
    EXPECT_EQ_STR("enc_mlp", str_at(out, "model.topology.layers[2].id"));
    EXPECT(at(out, "vars.block.id") == NULL); /* the var's value is not touched */
    json_decref(out);
}

TEST(default_names_table) {
    EXPECT_EQ_STR("attn", cb_lower_default_name("AttentionLayer"));
    EXPECT_EQ_STR("rope", cb_lower_default_name("RoPE"));
    EXPECT_EQ_STR("stack", cb_lower_default_name("SequentialTopology"));
    EXPECT_EQ_STR("rec", cb_lower_default_name("RecurrentTopology"));
    EXPECT_EQ_STR("cycle", cb_lower_default_name("CyclicTopology"));
    EXPECT_EQ_STR("branch", cb_lower_default_name("BranchingTopology"));
    EXPECT_EQ_STR("par", cb_lower_default_name("ParallelTopology"));
    EXPECT_EQ_STR("dropout", cb_lower_default_name("DropoutLayer"));
    EXPECT_EQ_STR("node", cb_lower_default_name(NULL));
    EXPECT_EQ_STR("node", cb_lower_default_name("attention"));
}
