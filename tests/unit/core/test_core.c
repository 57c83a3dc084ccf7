/* test_core.c: error records, atomic writes, document loading and locations. */
#include "test.h"

#include <stdlib.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/diag.h"
#include "core/json_doc.h"

TEST(error_line_names_where) {
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_fail(&e, CB_E_INVALID, "m.yml:14:9", "model.n_heads: %d does not divide %d", 12, 1000);
    EXPECT_EQ_INT(CB_E_INVALID, rc);
    char buf[256];
    EXPECT_EQ_STR("m.yml:14:9: model.n_heads: 12 does not divide 1000", cb_error_line(&e, buf, sizeof buf));
}

TEST(malloc_overflow_is_an_error) {
    cb_error e;
    cb_error_clear(&e);
    void *p = cb_malloc((size_t)1 << 62, 16, &e);
    EXPECT(p == NULL);
    EXPECT_EQ_INT(CB_E_RUNTIME, e.code);
}

TEST(atomic_write_then_abort_keeps_old_file) {
    char dir[] = "/tmp/cbcore.XXXXXX";
    EXPECT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/f.txt", dir);
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_atomic_write(path, "first", 5, &e));
    cb_atomic_file af;
    EXPECT_EQ_INT(CB_OK, cb_atomic_open(&af, path, &e));
    fputs("second, half written", af.fp);
    cb_atomic_abort(&af);
    char *text = NULL;
    size_t n = 0;
    EXPECT_EQ_INT(CB_OK, cb_read_file(path, 0, &text, &n, &e));
    EXPECT_EQ_STR("first", text);
    free(text);
    EXPECT_EQ_INT(0, access(af.tmp_path, F_OK) == 0);
    unlink(path);
    rmdir(dir);
}

TEST(doc_kind_is_checked) {
    json_t *doc = NULL;
    cb_error e;
    const char *text = "{\"cb_version\":\"0.1\",\"kind\":\"manifest\"}";
    EXPECT_EQ_INT(CB_OK, cb_doc_parse(text, strlen(text), "x.json", "manifest", &doc, &e));
    json_decref(doc);
    EXPECT_EQ_INT(CB_E_INVALID, cb_doc_parse(text, strlen(text), "x.json", "plan", &doc, &e));
    EXPECT(strstr(e.msg, "plan") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_doc_parse("{\"a\":", 5, "x.json", NULL, &doc, &e));
    EXPECT_EQ_STR("x.json:1:5", e.where);
}

TEST(locations_fall_back_to_the_object) {
    json_t *o = json_object();
    cb_loc_set(o, NULL, "m.yml:3:5");
    cb_loc_set(o, "n_heads", "m.yml:4:12");
    EXPECT_EQ_STR("m.yml:4:12", cb_loc(o, "n_heads"));
    EXPECT_EQ_STR("m.yml:3:5", cb_loc(o, "d_model"));
    EXPECT_EQ_STR("", cb_loc(json_object_get(o, "nothing"), "x"));
    json_decref(o);
}

TEST(diags_collect_every_error) {
    cb_diags d;
    cb_diags_init(&d);
    cb_diags_addf(&d, 0, "m.yml:1:1", "first");
    cb_diags_addf(&d, CB_E_INVALID, "m.yml:2:1", "second");
    EXPECT_EQ_INT(2, d.n);
    EXPECT_EQ_INT(CB_E_INVALID, cb_diags_status(&d));
    cb_diags_free(&d);
}

#include "core/sha256.h"
TEST(sha256_known_vectors) {
    char hex[65];
    cb_sha256_hex("", 0, hex);
    EXPECT_EQ_STR("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex);
    cb_sha256_hex("abc", 3, hex);
    EXPECT_EQ_STR("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    cb_sha256_hex(m, strlen(m), hex);
    EXPECT_EQ_STR("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1", hex);
}
