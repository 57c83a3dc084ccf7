/* test_yaml_parse.c: cb_yaml_parse: core-schema typing, tags, anchors, merge keys, exact
 * source locations, and every rejection with the file:line:col it names. */
#include "test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "manifest/yaml_parse.h"

/* Parse text as "t.yml"; the manifest object (borrowed from *doc) or NULL with e filled. */
static json_t *parse(const char *text, json_t **doc, cb_error *e) {
    cb_error_clear(e);
    *doc = NULL;
    if (cb_yaml_parse(text, strlen(text), "t.yml", doc, e) != CB_OK) return NULL;
    return json_object_get(*doc, "manifest");
}

/* Expect text to be rejected as invalid at where, with msg_part in the message. */
static void expect_reject(const char *name, const char *text, size_t len, const char *where,
                          const char *msg_part) {
    json_t *doc = NULL;
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_yaml_parse(text, len, "t.yml", &doc, &e);
    if (rc != CB_E_INVALID) FAILF("%.100s: status %d, expected %d (%.200s)", name, rc, CB_E_INVALID, e.msg);
    if (doc) FAILF("%.100s: a document came back with the error", name);
    if (strcmp(e.where, where) != 0)
        FAILF("%.100s: where \"%.100s\", expected \"%.100s\" (%.200s)", name, e.where, where, e.msg);
    if (!strstr(e.msg, msg_part)) FAILF("%.100s: message \"%.200s\" lacks \"%.200s\"", name, e.msg, msg_part);
    if (strchr(e.msg, '\n')) FAILF("%.100s: message spans lines: %.200s", name, e.msg);
    json_decref(doc);
}
#define REJECT(text, where, part) expect_reject(#text, (text), strlen(text), (where), (part))

/* One plain or tagged scalar and what it must become. */
typedef struct {
    const char *yaml;   /* written after "v: " */
    json_type type;
    long long i;        /* JSON_INTEGER */
    double d;           /* JSON_REAL (compared exactly) */
    const char *s;      /* JSON_STRING */
} typing_case;

TEST(core_schema_typing_table) {
    static const typing_case cases[] = {
        {"~", JSON_NULL, 0, 0, NULL}, {"null", JSON_NULL, 0, 0, NULL}, {"Null", JSON_NULL, 0, 0, NULL},
        {"NULL", JSON_NULL, 0, 0, NULL}, {"", JSON_NULL, 0, 0, NULL}, {"nUll", JSON_STRING, 0, 0, "nUll"},
        {"true", JSON_TRUE, 0, 0, NULL}, {"True", JSON_TRUE, 0, 0, NULL}, {"TRUE", JSON_TRUE, 0, 0, NULL},
        {"false", JSON_FALSE, 0, 0, NULL}, {"False", JSON_FALSE, 0, 0, NULL}, {"FALSE", JSON_FALSE, 0, 0, NULL},
        {"TrUe", JSON_STRING, 0, 0, "TrUe"}, {"yes", JSON_STRING, 0, 0, "yes"}, {"no", JSON_STRING, 0, 0, "no"},
        {"on", JSON_STRING, 0, 0, "on"}, {"y", JSON_STRING, 0, 0, "y"},
        {"0", JSON_INTEGER, 0, 0, NULL}, {"42", JSON_INTEGER, 42, 0, NULL}, {"-12", JSON_INTEGER, -12, 0, NULL},
        {"+7", JSON_INTEGER, 7, 0, NULL}, {"007", JSON_INTEGER, 7, 0, NULL}, {"0o17", JSON_INTEGER, 15, 0, NULL},
        {"0x1F", JSON_INTEGER, 31, 0, NULL}, {"0xff", JSON_INTEGER, 255, 0, NULL},
        {"9223372036854775807", JSON_INTEGER, 9223372036854775807LL, 0, NULL},
        {"-9223372036854775808", JSON_INTEGER, -9223372036854775807LL - 1, 0, NULL},
        {"0x7fffffffffffffff", JSON_INTEGER, 9223372036854775807LL, 0, NULL},
        {"-0x10", JSON_STRING, 0, 0, "-0x10"}, {"0o8", JSON_STRING, 0, 0, "0o8"}, {"0x", JSON_STRING, 0, 0, "0x"},
        {"0b101", JSON_STRING, 0, 0, "0b101"}, {"1_000", JSON_STRING, 0, 0, "1_000"},
        {"1,000", JSON_STRING, 0, 0, "1,000"}, {"12 monkeys", JSON_STRING, 0, 0, "12 monkeys"},
        {"1.5", JSON_REAL, 0, 1.5, NULL}, {"1e-5", JSON_REAL, 0, 1e-5, NULL}, {".5", JSON_REAL, 0, 0.5, NULL},
        {"5.", JSON_REAL, 0, 5.0, NULL}, {"-.5e3", JSON_REAL, 0, -500.0, NULL}, {"+1.0E+2", JSON_REAL, 0, 100.0, NULL},
        {"3e2", JSON_REAL, 0, 300.0, NULL}, {"1e-400", JSON_REAL, 0, 0.0, NULL},
        {".", JSON_STRING, 0, 0, "."}, {"e5", JSON_STRING, 0, 0, "e5"}, {"1e", JSON_STRING, 0, 0, "1e"},
        {"1.2.3", JSON_STRING, 0, 0, "1.2.3"}, {"inf", JSON_STRING, 0, 0, "inf"}, {"nan", JSON_STRING, 0, 0, "nan"},
        {".iNf", JSON_STRING, 0, 0, ".iNf"},
        {"'12'", JSON_STRING, 0, 0, "12"}, {"\"true\"", JSON_STRING, 0, 0, "true"}, {"'~'", JSON_STRING, 0, 0, "~"},
        {"''", JSON_STRING, 0, 0, ""}, {"\"1.5\"", JSON_STRING, 0, 0, "1.5"}, {"\"a\\tb\"", JSON_STRING, 0, 0, "a\tb"},
        {"|\n  12\n", JSON_STRING, 0, 0, "12\n"}, {">-\n  true\n", JSON_STRING, 0, 0, "true"},
        {"hello world", JSON_STRING, 0, 0, "hello world"},
        {"!!str 12", JSON_STRING, 0, 0, "12"}, {"!!str ~", JSON_STRING, 0, 0, "~"}, {"!!str", JSON_STRING, 0, 0, ""},
        {"! 12", JSON_STRING, 0, 0, "12"}, {"!!int \"12\"", JSON_INTEGER, 12, 0, NULL},
        {"!!int 0x10", JSON_INTEGER, 16, 0, NULL}, {"!!float 1", JSON_REAL, 0, 1.0, NULL},
        {"!!float '2.5'", JSON_REAL, 0, 2.5, NULL}, {"!!float 0x10", JSON_REAL, 0, 16.0, NULL},
        {"!!float 99999999999999999999", JSON_REAL, 0, 1e20, NULL}, {"!!bool 'TRUE'", JSON_TRUE, 0, 0, NULL},
        {"!!bool false", JSON_FALSE, 0, 0, NULL}, {"!!null ''", JSON_NULL, 0, 0, NULL},
        {"!<tag:yaml.org,2002:int> 5", JSON_INTEGER, 5, 0, NULL},
    };
    int n_checked = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const typing_case *c = &cases[k];
        char text[256];
        snprintf(text, sizeof text, "v: %s\n", c->yaml);
        json_t *doc;
        cb_error e;
        json_t *m = parse(text, &doc, &e);
        json_t *v = json_object_get(m, "v");
        if (!v) {
            FAILF("v: %.50s: not parsed: %.100s: %.200s", c->yaml, e.where, e.msg);
            continue;
        }
        if (json_typeof(v) != c->type) FAILF("v: %s: JSON type %d, expected %d", c->yaml, json_typeof(v), c->type);
        else if (c->type == JSON_INTEGER && json_integer_value(v) != c->i)
            FAILF("v: %s: got %lld, expected %lld", c->yaml, (long long)json_integer_value(v), c->i);
        else if (c->type == JSON_REAL && json_real_value(v) != c->d)
            FAILF("v: %s: got %.17g, expected %.17g", c->yaml, json_real_value(v), c->d);
        else if (c->type == JSON_STRING && strcmp(json_string_value(v), c->s) != 0)
            FAILF("v: %s: got \"%s\", expected \"%s\"", c->yaml, json_string_value(v), c->s);
        n_checked++;
        json_decref(doc);
    }
    EXPECT_EQ_INT(sizeof cases / sizeof cases[0], n_checked);
}

TEST(document_header_and_locations_exact) {
    const char *text =
        "name: demo\n"                 /* 1 */
        "model:\n"                     /* 2 */
        "  type: TransformerModel\n"   /* 3 */
        "  topology:\n"                /* 4 */
        "    layers:\n"                /* 5 */
        "      - {type: RMSNormLayer, d_model: 64}\n" /* 6 */
        "      -   type: SwiGLULayer\n" /* 7 */
        "          d_ff: 256\n"        /* 8 */
        "note: |\n"                    /* 9 */
        "  two\n"                      /* 10 */
        "  lines\n"                    /* 11 */
        "empty:\n"                     /* 12 */
        "\"quoted key\":   'x'\n";     /* 13 */
    json_t *doc;
    cb_error e;
    json_t *m = parse(text, &doc, &e);
    if (!m) {
        FAILF("parse failed: %.100s: %.200s", e.where, e.msg);
        return;
    }
    EXPECT_EQ_STR("0.1", json_string_value(json_object_get(doc, "cb_version")));
    EXPECT_EQ_STR("manifest", json_string_value(json_object_get(doc, "kind")));
    EXPECT_EQ_STR("t.yml", json_string_value(json_object_get(doc, "source")));
    EXPECT_EQ_STR("t.yml:1:1", cb_loc(m, NULL));
    EXPECT_EQ_STR("t.yml:1:7", cb_loc(m, "name"));
    EXPECT_EQ_STR("t.yml:3:3", cb_loc(m, "model"));
    EXPECT_EQ_STR("t.yml:9:7", cb_loc(m, "note")); /* a block scalar starts at its "|" */
    EXPECT_EQ_STR("t.yml:12:7", cb_loc(m, "empty"));
    EXPECT_EQ_STR("t.yml:13:17", cb_loc(m, "quoted key"));
    json_t *model = json_object_get(m, "model");
    EXPECT_EQ_STR("t.yml:3:3", cb_loc(model, NULL));
    EXPECT_EQ_STR("t.yml:3:9", cb_loc(model, "type"));
    EXPECT_EQ_STR("t.yml:5:5", cb_loc(model, "topology"));
    json_t *topo = json_object_get(model, "topology");
    EXPECT_EQ_STR("t.yml:6:7", cb_loc(topo, "layers"));
    json_t *layers = json_object_get(topo, "layers");
    EXPECT(json_is_array(layers) && json_array_size(layers) == 2);
    json_t *l0 = json_array_get(layers, 0), *l1 = json_array_get(layers, 1);
    EXPECT_EQ_STR("t.yml:6:9", cb_loc(l0, NULL));
    EXPECT_EQ_STR("t.yml:6:16", cb_loc(l0, "type"));
    EXPECT_EQ_STR("t.yml:6:39", cb_loc(l0, "d_model"));
    EXPECT_EQ_INT(64, json_integer_value(json_object_get(l0, "d_model")));
    EXPECT_EQ_STR("t.yml:7:11", cb_loc(l1, NULL));
    EXPECT_EQ_STR("t.yml:8:17", cb_loc(l1, "d_ff"));
    EXPECT_EQ_STR("two\nlines\n", json_string_value(json_object_get(m, "note")));
    EXPECT(json_is_null(json_object_get(m, "empty")));
    /* the annotation lists exactly the keys plus "" */
    EXPECT_EQ_INT(json_object_size(m), json_object_size(json_object_get(m, CB_LOC_KEY)));
    /* the document survives the trip through text */
    char *dump = json_dumps(doc, 0);
    json_t *back = NULL;
    EXPECT_EQ_INT(CB_OK, cb_doc_parse(dump, strlen(dump), "dump", "manifest", &back, &e));
    EXPECT(json_equal(doc, back));
    json_decref(back);
    free(dump);
    json_decref(doc);
}

TEST(location_columns_count_characters_and_crlf) {
    json_t *doc;
    cb_error e;
    json_t *m = parse("\xc3\xa9t\xc3\xa9: 1\r\nb: [x, \xe2\x82\xac, z]\r\nc: 2\r\n", &doc, &e);
    if (!m) {
        FAILF("parse failed: %.100s: %.200s", e.where, e.msg);
        return;
    }
    EXPECT_EQ_STR("t.yml:1:6", cb_loc(m, "\xc3\xa9t\xc3\xa9"));
    EXPECT_EQ_STR("t.yml:3:4", cb_loc(m, "c"));
    EXPECT_EQ_STR("\xe2\x82\xac", json_string_value(json_array_get(json_object_get(m, "b"), 1)));
    json_decref(doc);
}

TEST(anchors_and_aliases_copy) {
    const char *text =
        "width: &w 64\n"
        "dims: &d [*w, 128]\n"
        "block: &blk\n"
        "  d_model: *w\n"
        "  act: gelu\n"
        "copy: *blk\n"
        "again: *d\n"
        "name: &k dims2\n"
        "*k : 7\n";
    json_t *doc;
    cb_error e;
    json_t *m = parse(text, &doc, &e);
    if (!m) {
        FAILF("parse failed: %.100s: %.200s", e.where, e.msg);
        return;
    }
    EXPECT_EQ_INT(64, json_integer_value(json_object_get(json_object_get(m, "block"), "d_model")));
    EXPECT(json_equal(json_object_get(m, "block"), json_object_get(m, "copy")));
    EXPECT(json_object_get(m, "block") != json_object_get(m, "copy")); /* a copy, not shared */
    EXPECT(json_equal(json_object_get(m, "dims"), json_object_get(m, "again")));
    EXPECT_EQ_INT(64, json_integer_value(json_array_get(json_object_get(m, "dims"), 0)));
    EXPECT_EQ_INT(7, json_integer_value(json_object_get(m, "dims2")));
    /* an alias value is located where the alias is written; its insides where the anchor was */
    EXPECT_EQ_STR("t.yml:6:7", cb_loc(m, "copy"));
    EXPECT_EQ_STR("t.yml:4:12", cb_loc(json_object_get(m, "copy"), "d_model"));
    /* the copy can be changed without touching the original */
    json_object_set_new(json_object_get(m, "copy"), "act", json_string("relu"));
    EXPECT_EQ_STR("gelu", json_string_value(json_object_get(json_object_get(m, "block"), "act")));
    json_decref(doc);
}

TEST(anchor_redefinition_uses_the_latest) {
    json_t *doc;
    cb_error e;
    json_t *m = parse("a: &x 1\nb: *x\nc: &x 2\nd: *x\n", &doc, &e);
    EXPECT(m != NULL);
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(m, "b")));
    EXPECT_EQ_INT(2, json_integer_value(json_object_get(m, "d")));
    json_decref(doc);
}

TEST(merge_keys) {
    const char *text =
        "base: &base {lr: 0.1, steps: 100, seed: 1}\n"           /* 1 */
        "more: &more {steps: 200, mode: train, extra: 9}\n"      /* 2 */
        "one:\n"                                                  /* 3 */
        "  <<: *base\n"                                           /* 4 */
        "  steps: 5\n"                                            /* 5 */
        "list:\n"                                                 /* 6 */
        "  name: l\n"                                             /* 7 */
        "  <<: [*more, *base]\n"                                  /* 8 */
        "  seed: 3\n"                                             /* 9 */
        "inline:\n"                                               /* 10 */
        "  <<: {a: 1}\n"                                          /* 11 */
        "chain: &chain\n"                                         /* 12 */
        "  <<: *base\n"                                           /* 13 */
        "  lr: 0.5\n"                                             /* 14 */
        "top:\n"                                                  /* 15 */
        "  <<: *chain\n"                                          /* 16 */
        "quoted: {\"<<\": 1}\n";                                  /* 17 */
    json_t *doc;
    cb_error e;
    json_t *m = parse(text, &doc, &e);
    if (!m) {
        FAILF("parse failed: %.100s: %.200s", e.where, e.msg);
        return;
    }
    json_t *one = json_object_get(m, "one");
    EXPECT_EQ_INT(5, json_integer_value(json_object_get(one, "steps"))); /* explicit wins, even after */
    EXPECT_NEAR(0.1, json_real_value(json_object_get(one, "lr")), 0);
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(one, "seed")));
    EXPECT(json_object_get(one, "<<") == NULL);
    EXPECT_EQ_INT(4, json_object_size(one)); /* lr steps seed @loc */
    /* merged keys are located at their source, explicit ones at themselves */
    EXPECT_EQ_STR("t.yml:1:18", cb_loc(one, "lr"));
    EXPECT_EQ_STR("t.yml:5:10", cb_loc(one, "steps"));
    /* key order: merged keys stand where "<<" stood, explicit ones where they are written */
    const char *order[] = {"@loc", "lr", "seed", "steps"};
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(one, key, val) {
        if (k < 4 && strcmp(key, order[k]) != 0) FAILF("key %zu is %s, expected %s", k, key, order[k]);
        k++;
    }
    json_t *list = json_object_get(m, "list");
    EXPECT_EQ_INT(200, json_integer_value(json_object_get(list, "steps"))); /* earlier mapping wins */
    EXPECT_EQ_STR("train", json_string_value(json_object_get(list, "mode")));
    EXPECT_EQ_INT(3, json_integer_value(json_object_get(list, "seed")));
    EXPECT_NEAR(0.1, json_real_value(json_object_get(list, "lr")), 0);
    EXPECT_EQ_STR("l", json_string_value(json_object_get(list, "name")));
    EXPECT_EQ_INT(9, json_integer_value(json_object_get(list, "extra")));
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(json_object_get(m, "inline"), "a")));
    json_t *top = json_object_get(m, "top");
    EXPECT_NEAR(0.5, json_real_value(json_object_get(top, "lr")), 0);
    EXPECT_EQ_INT(100, json_integer_value(json_object_get(top, "steps")));
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(json_object_get(m, "quoted"), "<<")));
    json_decref(doc);
}

TEST(syntax_and_structure_rejections) {
    REJECT("a: 1\nb: 2\na: 3\n", "t.yml:3:1", "duplicate key \"a\" (first at 1:1)");
    REJECT("a:\n  x: 1\n  y: 2\n  x: 3\n", "t.yml:4:3", "duplicate key \"x\" (first at 2:3)");
    REJECT("m: {k: 1, k: 2}\n", "t.yml:1:11", "duplicate key \"k\"");
    REJECT("a: &a {x: 1}\n<<: *a\n<<: *a\n", "t.yml:3:1", "duplicate merge key");
    REJECT("a:\n\tb: 1\n", "t.yml:2:1", "tab character in indentation");
    REJECT("a:\n  b: 1\n  \tc: 2\n", "t.yml:3:3", "tab character in indentation");
    REJECT("a: [x,\t@]\n", "t.yml:1:8", "found character that cannot start any token"); /* a tab elsewhere is not blamed */
    REJECT("a: 1\n---\nb: 2\n", "t.yml:2:1", "only one YAML document per manifest");
    REJECT("a: 1\n---\n", "t.yml:2:1", "only one YAML document per manifest");
    REJECT("", "t.yml:1:1", "empty manifest");
    REJECT("# only a comment\n\n", "t.yml:1:1", "empty manifest");
    REJECT("---\n", "t.yml:2:1", "empty manifest");
    REJECT("- a\n- b\n", "t.yml:1:1", "top level of a manifest must be a mapping, not a sequence");
    REJECT("just words\n", "t.yml:1:1", "must be a mapping, not a string");
    REJECT("~\n", "t.yml:1:1", "must be a mapping, not null");
    REJECT("? [a, b]\n: 1\n", "t.yml:1:3", "a sequence used as a mapping key");
    REJECT("? {a: 1}\n: 1\n", "t.yml:1:3", "a mapping used as a mapping key");
    REJECT("a: 1\n1: x\n", "t.yml:2:1", "mapping key 1 is an integer, not a string (quote it: \"1\")");
    REJECT("true: x\n", "t.yml:1:1", "is a boolean, not a string");
    REJECT("~: x\n", "t.yml:1:1", "is null, not a string");
    REJECT("a: &a [1]\n? *a\n: x\n", "t.yml:2:3", "mapping key *a is a sequence");
    REJECT("\"@loc\": 1\n", "t.yml:1:1", "reserved for annotations");
    REJECT("a: \"open\nb: 2\n", "t.yml:3:1", "unterminated quoted string (it starts at 1:4)");
    REJECT("a: [1, 2\n", "t.yml:2:1", "did not find expected ',' or ']'");
    REJECT("a: b: c\n", "t.yml:1:5", "mapping values are not allowed");
    REJECT("a: *nothing\n", "t.yml:1:4", "alias *nothing: no anchor &nothing before it");
    REJECT("a: &r [1, *r]\n", "t.yml:1:11", "alias *r refers to a node that contains it");
    REJECT("a: 1\n<<: [{x: 1}, 2]\n", "t.yml:2:5", "element 2 of the sequence is an integer");
    REJECT("<<: 5\n", "t.yml:1:5", "needs a mapping or a sequence of mappings, not an integer");
}

TEST(scalar_rejections) {
    REJECT("a: 99999999999999999999\n", "t.yml:1:4", "integer 99999999999999999999 does not fit in 64 bits");
    REJECT("a: 9223372036854775808\n", "t.yml:1:4", "does not fit in 64 bits");
    REJECT("a: -9223372036854775809\n", "t.yml:1:4", "does not fit in 64 bits");
    REJECT("a: 0x8000000000000000\n", "t.yml:1:4", "does not fit in 64 bits");
    REJECT("a: !!int 99999999999999999999\n", "t.yml:1:4", "does not fit in 64 bits");
    REJECT("a: .inf\n", "t.yml:1:4", "JSON has no infinite or NaN numbers");
    REJECT("a:\n  - -.Inf\n", "t.yml:2:5", "JSON has no infinite or NaN numbers");
    REJECT("a: .nan\n", "t.yml:1:4", "JSON has no infinite or NaN numbers");
    REJECT("a: 1e999\n", "t.yml:1:4", "float 1e999 is out of range");
    REJECT("a: !foo 1\n", "t.yml:1:4", "unknown tag !foo");
    REJECT("a: !!binary aGk=\n", "t.yml:1:4", "unknown tag !!binary");
    REJECT("a: !foo {x: 1}\n", "t.yml:1:4", "unknown tag !foo");
    REJECT("a: !!int x\n", "t.yml:1:4", "!!int value \"x\" is not an integer");
    REJECT("a: !!float x\n", "t.yml:1:4", "!!float value \"x\" is not a number");
    REJECT("a: !!bool yes\n", "t.yml:1:4", "!!bool value \"yes\" is not true or false");
    REJECT("a: !!null 0\n", "t.yml:1:4", "!!null value \"0\" is not null");
    REJECT("a: !!map x\n", "t.yml:1:4", "tag !!map on a scalar");
    REJECT("a: !!str [1]\n", "t.yml:1:4", "tag !!str on a sequence");
    REJECT("a: !!seq {x: 1}\n", "t.yml:1:4", "tag !!seq on a mapping");
}

TEST(encoding_rejections) {
    REJECT("a: 1\nbb: \xff\n", "t.yml:2:5", "not UTF-8 text");
    REJECT("a: 1\nb: \xc3\n", "t.yml:2:4", "not UTF-8 text"); /* where the broken sequence starts */
    REJECT("a: 1\nb: x\xe2\x82z\n", "t.yml:2:5", "invalid trailing UTF-8 octet");
    REJECT("\x89PNG\r\n\x1a\n", "t.yml:1:1", "not UTF-8 text");
    REJECT("\xff\xfe" "a\0:\0", "t.yml:1:1", "UTF-16 text");
    static const char nul[] = "a: 1\nb: x\0y\n";
    expect_reject("nul byte", nul, sizeof nul - 1, "t.yml:2:5", "NUL byte");
    REJECT("a: \x01\n", "t.yml:1:4", "not a text file: control character U+0001");
}

/* The billion laughs: nine levels of nine aliases would be 9^9 nodes. */
TEST(alias_bomb_is_bounded) {
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int level = 1; level <= 9; level++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "l%d: &l%d [", level, level);
        for (int k = 0; k < 9; k++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s*l%d", k ? ", " : "", level - 1);
        n += (size_t)snprintf(text + n, sizeof text - n, "]\n");
    }
    /* l6 would reach 9^7 + ... > 1,000,000 nodes */
    expect_reject("billion laughs", text, n, "t.yml:7:10", "alias *l5 expands the manifest past 1000000 nodes");
}

TEST(scalar_bytes_after_aliases_are_bounded) {
    /* one 1 MiB string aliased 200 times: 200 MiB of text from a 1 MiB file */
    size_t big = (size_t)1 << 20, cap = big + 4096;
    char *text = malloc(cap);
    size_t n = (size_t)snprintf(text, cap, "s: &s ");
    memset(text + n, 'x', big);
    n += big;
    n += (size_t)snprintf(text + n, cap - n, "\nt: [");
    for (int k = 0; k < 200; k++) n += (size_t)snprintf(text + n, cap - n, "*s, ");
    n += (size_t)snprintf(text + n, cap - n, "]\n");
    /* the 128th alias (column 4 + 127 * 4 + 1) would pass 128 MiB */
    expect_reject("big string aliased", text, n, "t.yml:2:509", "expands the manifest past 128 MiB of text");
    free(text);
}

TEST(nesting_is_bounded) {
    size_t depth = 10000, n = 0;
    char *text = malloc(2 * depth + 16);
    n += (size_t)sprintf(text, "a: ");
    for (size_t k = 0; k < depth; k++) text[n++] = '[';
    for (size_t k = 0; k < depth; k++) text[n++] = ']';
    text[n++] = '\n';
    /* the root mapping is level 1, so the 256th '[' (column 259) is level 257 */
    expect_reject("10000 nested sequences", text, n, "t.yml:1:259", "nesting deeper than 256 levels");
    free(text);
    /* 255 levels under the root are fine */
    char ok[1024];
    n = (size_t)sprintf(ok, "a: ");
    for (int k = 0; k < 255; k++) ok[n++] = '[';
    for (int k = 0; k < 255; k++) ok[n++] = ']';
    ok[n] = '\0';
    json_t *doc;
    cb_error e;
    EXPECT(parse(ok, &doc, &e) != NULL);
    json_decref(doc);
    /* an alias may not carry its depth past the bound either */
    n = (size_t)sprintf(ok, "a: &deep ");
    for (int k = 0; k < 200; k++) ok[n++] = '[';
    for (int k = 0; k < 200; k++) ok[n++] = ']';
    n += (size_t)sprintf(ok + n, "\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*deep]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n");
    expect_reject("deep alias", ok, n, "t.yml:2:64", "alias *deep: nesting deeper than 256 levels");
}

TEST(file_size_bound_and_unreadable_file) {
    char dir[] = "/tmp/cbyaml.XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/huge.yml", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    EXPECT(fd >= 0);
    EXPECT_EQ_INT(0, ftruncate(fd, (off_t)CB_YAML_MAX_FILE_BYTES + 1)); /* sparse: costs no disk */
    close(fd);
    json_t *doc = NULL;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_INVALID, cb_yaml_parse_file(path, &doc, &e));
    EXPECT(strstr(e.msg, "larger than 64 MiB") != NULL);
    char want[300];
    snprintf(want, sizeof want, "%s:1:1", path);
    EXPECT_EQ_STR(want, e.where);
    unlink(path);

    snprintf(path, sizeof path, "%s/ok.yml", dir);
    EXPECT_EQ_INT(CB_OK, cb_atomic_write(path, "a: 1\n", 5, &e));
    EXPECT_EQ_INT(CB_OK, cb_yaml_parse_file(path, &doc, &e));
    EXPECT_EQ_STR(path, json_string_value(json_object_get(doc, "source")));
    snprintf(want, sizeof want, "%s:1:4", path);
    EXPECT_EQ_STR(want, cb_loc(json_object_get(doc, "manifest"), "a"));
    json_decref(doc);
    unlink(path);
    rmdir(dir);

    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_IO, cb_yaml_parse_file("/nonexistent/m.yml", &doc, &e));
    EXPECT(doc == NULL);
}
