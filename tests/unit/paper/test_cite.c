/* test_cite.c: arXiv Atom and Semantic Scholar answers into papers, papers into BibTeX
 * without duplicates, and references.bib read back. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "paper/cite.h"
#include "test.h"

static const char atom[] =
    "<?xml version=\"1.0\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\" xmlns:arxiv=\"http://arxiv.org/schemas/atom\">"
    "<entry><id>http://arxiv.org/abs/2305.13245v3</id><published>2023-05-22T17:16:38Z</published>"
    "<title>GQA: Training Generalized\n   Multi-Query Transformer Models</title>"
    "<author><name>Joshua Ainslie</name></author><author><name>Sumit &amp; Sanghai</name></author>"
    "<arxiv:doi>10.1/x</arxiv:doi></entry>"
    "<entry><id>http://arxiv.org/abs/hep-th/9901001v1</id><published>1999-01-01T00:00:00Z</published>"
    "<title>Old_Paper {with} $math$</title><author><name>A. Old</name></author></entry>"
    "<entry><id>http://arxiv.org/abs/1234.5678</id><title></title></entry></feed>";

TEST(arxiv_atom) {
    json_t *p = NULL;
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_cite_parse_arxiv(atom, strlen(atom), &p, &e);
    EXPECT_EQ_INT(CB_OK, rc);
    if (rc != CB_OK) return;
    EXPECT_EQ_INT(2, json_array_size(p)); /* the entry without a title is left out */
    json_t *a = json_array_get(p, 0), *b = json_array_get(p, 1);
    EXPECT_EQ_STR("arxiv:2305.13245", json_string_value(json_object_get(a, "id")));
    EXPECT_EQ_STR("2305.13245", json_string_value(json_object_get(a, "eprint")));
    EXPECT_EQ_STR("GQA: Training Generalized Multi-Query Transformer Models", json_string_value(json_object_get(a, "title")));
    EXPECT_EQ_INT(2023, json_integer_value(json_object_get(a, "year")));
    EXPECT_EQ_STR("Sumit & Sanghai", json_string_value(json_array_get(json_object_get(a, "authors"), 1)));
    EXPECT_EQ_STR("10.1/x", json_string_value(json_object_get(a, "doi")));
    EXPECT_EQ_STR("hep-th/9901001", json_string_value(json_object_get(b, "eprint")));
    json_decref(p);
}

TEST(arxiv_errors) {
    json_t *p = NULL;
    cb_error e;
    const char *bad[] = {"not xml at all", "<rss><channel/></rss>",
                         "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>http://arxiv.org/api/errors#x</id>"
                         "<title>Error</title></entry></feed>",
                         "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry>"};
    for (int i = 0; i < 4; i++) {
        cb_error_clear(&e);
        int rc = cb_cite_parse_arxiv(bad[i], strlen(bad[i]), &p, &e);
        if (rc != CB_E_INVALID) FAILF("case %d: expected CB_E_INVALID, got %d", i, rc);
        if (p) { FAILF("case %d: papers set on failure", i); json_decref(p); p = NULL; }
    }
    /* an external entity is not fetched nor expanded (XML_PARSE_NONET, no NOENT) */
    const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE f [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
                      "<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><id>http://arxiv.org/abs/1.2</id>"
                      "<title>t &x;</title></entry></feed>";
    cb_error_clear(&e);
    if (cb_cite_parse_arxiv(xxe, strlen(xxe), &p, &e) == CB_OK) {
        const char *t = json_string_value(json_object_get(json_array_get(p, 0), "title"));
        if (t && strstr(t, "root:")) FAILF("external entity expanded: %s", t);
        json_decref(p);
    }
}

TEST(semantic_scholar) {
    const char *s = "{\"total\":2,\"data\":[{\"paperId\":\"p1\",\"title\":\"PagedAttention\",\"year\":2023,"
                    "\"externalIds\":{\"ArXiv\":\"2309.06180\",\"DOI\":\"10.2/y\"},\"authors\":[{\"name\":\"Woosuk Kwon\"}],"
                    "\"venue\":\"SOSP\"},{\"paperId\":\"p2\",\"title\":null},{\"paperId\":\"p3\",\"title\":\"No year\","
                    "\"year\":null,\"authors\":[]}]}";
    json_t *p = NULL;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_OK, cb_cite_parse_s2(s, strlen(s), &p, &e));
    EXPECT_EQ_INT(2, json_array_size(p));
    EXPECT_EQ_STR("s2:p1", json_string_value(json_object_get(json_array_get(p, 0), "id")));
    EXPECT_EQ_STR("2309.06180", json_string_value(json_object_get(json_array_get(p, 0), "eprint")));
    EXPECT(json_is_null(json_object_get(json_array_get(p, 1), "year")));
    json_decref(p);
    p = NULL;
    EXPECT_EQ_INT(CB_E_INVALID, cb_cite_parse_s2("{\"data\": [", 10, &p, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_cite_parse_s2("{\"message\": \"x\"}", 16, &p, &e));
    EXPECT(p == NULL);
}

TEST(bibtex_no_duplicates) {
    cb_bib b;
    cb_bib_init(&b);
    json_t *a = json_pack("{s:s,s:s,s:s,s:[s,s],s:i,s:s}", "source", "arxiv", "id", "arxiv:2305.13245", "title",
                          "GQA: Training {Models} & 100% more", "authors", "Joshua Ainslie", "Sumit Sanghai", "year",
                          2023, "eprint", "2305.13245");
    json_t *same_eprint = json_pack("{s:s,s:s,s:s,s:[s],s:i,s:s}", "source", "semantic_scholar", "id", "s2:x", "title",
                                    "another title", "authors", "X Y", "year", 2023, "eprint", "2305.13245");
    json_t *same_title = json_pack("{s:s,s:s,s:s,s:[],s:i}", "source", "semantic_scholar", "id", "s2:z", "title",
                                   "gqa training models 100 more", "authors", "year", 2023);
    json_t *other = json_pack("{s:s,s:s,s:s,s:[s],s:i}", "source", "semantic_scholar", "id", "s2:o", "title",
                              "Training Revisited", "authors", "Jane Ainslie", "year", 2023);
    char key[256];
    EXPECT_EQ_INT(1, cb_bib_add(&b, a, key, sizeof key));
    EXPECT_EQ_STR("ainslie2023training", key);
    EXPECT_EQ_INT(0, cb_bib_add(&b, same_eprint, key, sizeof key));
    EXPECT_EQ_STR("ainslie2023training", key);
    EXPECT_EQ_INT(0, cb_bib_add(&b, same_title, key, sizeof key));
    EXPECT_EQ_INT(1, cb_bib_add(&b, other, key, sizeof key));
    EXPECT_EQ_STR("ainslie2023trainingb", key); /* the same key made twice gets a suffix */
    EXPECT_EQ_INT(2, cb_bib_count(&b));
    char *text = cb_bib_text(&b);
    EXPECT(strstr(text, "title = {{GQA: Training \\{Models\\} \\& 100\\% more}}") != NULL);
    EXPECT(strstr(text, "author = {Joshua Ainslie and Sumit Sanghai}") != NULL);
    /* read back: the same entries, and adding again finds them */
    char tmp_path[64];
    snprintf(tmp_path, sizeof tmp_path, "/tmp/cb_test_cite.bib.%d", (int)getpid());
    FILE *f = fopen(tmp_path, "w");
    fputs(text, f);
    fclose(f);
    cb_bib r;
    cb_bib_init(&r);
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_OK, cb_bib_load(&r, tmp_path, &e));
    EXPECT_EQ_INT(2, cb_bib_count(&r));
    EXPECT(cb_bib_has(&r, "ainslie2023trainingb"));
    EXPECT_EQ_INT(0, cb_bib_add(&r, same_eprint, key, sizeof key));
    EXPECT_EQ_STR("ainslie2023training", key);
    char *again = cb_bib_text(&r);
    EXPECT_EQ_STR(text, again);
    remove(tmp_path);
    free(again);
    free(text);
    cb_bib_free(&r);
    cb_bib_free(&b);
    json_decref(a);
    json_decref(same_eprint);
    json_decref(same_title);
    json_decref(other);
}
