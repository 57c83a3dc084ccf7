/* test_prepare.c: corpus text cleaning, Brown de-tagging, corpora from a directory and from
 * one file, and cb_prepare on a small corpus the test writes: split rules, counts, the exact
 * tokens, prepared.json, determinism, replacing an earlier output, and refusals that leave
 * nothing behind. The byte tokenizer keeps it offline; one test uses GPT-2's when cached. */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "core/sha256.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/text_clean.h"
#include "tmp_dir.h"

/* ------------------------------------------------------------ cleaning */

static const struct { const char *in, *out; size_t replaced; } clean_cases[] = {
    {"plain text", "plain text", 0},
    {"a\r\nb\rc\n", "a\nb\nc", 0},
    {"line   \nnext\t \n", "line\nnext", 0},
    {"p1\n\n\n\n\np2\n \n \t\np3", "p1\n\np2\n\np3", 0},
    {"\n\n  \n  indented\n", "  indented", 0},
    {"\xEF\xBB\xBFhello", "hello", 0},
    {"mid\xEF\xBB\xBFword", "mid\xEF\xBB\xBFword", 0},
    {"ctl\x02x\x7Fy\x1Bz", "ctlxyz", 0},
    {"c1\xC2\x85x", "c1x", 0},
    {"tab\tinside", "tab\tinside", 0},
    {"a\xFF" "b", "a\xEF\xBF\xBD" "b", 1},
    {"over\xC0\xAFlong", "over\xEF\xBF\xBD\xEF\xBF\xBDlong", 2},
    {"cut\xE2\x82", "cut\xEF\xBF\xBD\xEF\xBF\xBD", 2},
    {"caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x90\x8B", "caf\xC3\xA9 \xE2\x80\x94 \xF0\x9F\x90\x8B", 0},
    {"sp \x02 \nx", "sp\nx", 0},
    {"a \x02 b", "a  b", 0},
    {"   \n\n", "", 0},
    {"", "", 0},
};

TEST(text_clean_rules_and_idempotence) {
    for (size_t i = 0; i < sizeof clean_cases / sizeof clean_cases[0]; i++) {
        cb_bytes out = {0}, again = {0};
        size_t replaced = 99, r2 = 99;
        cb_error e;
        const char *in = clean_cases[i].in, *want = clean_cases[i].out;
        if (cb_text_clean((const uint8_t *)in, strlen(in), &out, &replaced, &e) != CB_OK ||
            cb_text_clean(out.p, out.n, &again, &r2, &e) != CB_OK) {
            FAILF("case %zu: %s", i, e.msg);
        } else {
            if (out.n != strlen(want) || (out.n && memcmp(out.p, want, out.n) != 0))
                FAILF("case %zu: got '%.*s', expected '%s'", i, (int)out.n, (const char *)out.p, want);
            EXPECT_EQ_INT(clean_cases[i].replaced, replaced);
            if (again.n != out.n || (out.n && memcmp(again.p, out.p, out.n) != 0)) FAILF("case %zu: cleaning twice changed the text", i);
            EXPECT_EQ_INT(0, r2);
        }
        cb_bytes_free(&out);
        cb_bytes_free(&again);
    }
}

TEST(name_year) {
    EXPECT_EQ_INT(1790, cb_corpus_name_year("1790_george_washington_n"));
    EXPECT_EQ_INT(2021, cb_corpus_name_year("2021"));
    EXPECT_EQ_INT(1999, cb_corpus_name_year("1999-notes"));
    EXPECT_EQ_INT(-1, cb_corpus_name_year("17900_x"));
    EXPECT_EQ_INT(-1, cb_corpus_name_year("179_x"));
    EXPECT_EQ_INT(-1, cb_corpus_name_year("chapter_1"));
    EXPECT_EQ_INT(-1, cb_corpus_name_year(""));
}

TEST(brown_detag) {
    const char *tagged =
        "\n\n\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.\n"
        "\tIt/pps urged/vbd (/( 1/2/cd )/) ,/, didn't/dod* it/pps ?/.\n"
        "\n\n\tNext/ap ;/. done/vbn ./.\n";
    cb_bytes out = {0};
    cb_error e;
    if (cb_brown_detag(tagged, strlen(tagged), &out, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    const char *want = "The jury said \"no evidence\". It urged (1/2), didn't it?\n\nNext; done.";
    if (out.n != strlen(want) || (out.n && memcmp(out.p, want, out.n) != 0)) FAILF("got '%.*s'", (int)out.n, (const char *)out.p);
    cb_bytes_free(&out);
}

/* ------------------------------------------------------------ corpora */

static int write_text(const char *dir, const char *name, const char *text) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (write_bytes(path, text, strlen(text)) != 0) {
        FAILF("cannot write %s", path);
        return -1;
    }
    return 0;
}

/* A small corpus directory: four addresses with years, one blank file, one that is not .txt. */
static const char *corpus_dir(void) {
    static char dir[4096];
    if (dir[0]) return dir;
    tmp_path("corpus", dir, sizeof dir);
    mkdir(dir, 0777);
    if (write_text(dir, "2000_b.txt", "Second address.\n") || write_text(dir, "1999_a.txt", "First  address, \r\nwith CRLF.\r\n") ||
        write_text(dir, "2001_c.txt", "Third\n\n\n\naddress") || write_text(dir, "2002_d.txt", "Fourth \xFF address.") ||
        write_text(dir, "blank.txt", " \n\t\n") || write_text(dir, "notes.md", "not a document"))
        dir[0] = '\0';
    return dir;
}

/* the clean texts of corpus_dir() in order */
static const char *const DOC_NAMES[] = {"1999_a", "2000_b", "2001_c", "2002_d"};
static const char *const DOC_TEXTS[] = {"First  address,\nwith CRLF.", "Second address.", "Third\n\naddress",
                                        "Fourth \xEF\xBF\xBD address."};

TEST(corpus_from_directory) {
    cb_corpus c;
    cb_error e;
    if (cb_corpus_load(&c, corpus_dir(), &e) != CB_OK) { FAILF("%s: %s", e.where, e.msg); return; }
    EXPECT_EQ_INT(4, c.n);
    EXPECT_EQ_INT(1, c.n_empty);
    EXPECT_EQ_INT(1, c.n_replaced);
    EXPECT_EQ_STR(corpus_dir(), c.source);
    for (size_t i = 0; i < c.n && i < 4; i++) {
        EXPECT_EQ_STR(DOC_NAMES[i], c.docs[i].name);
        EXPECT_EQ_INT(1999 + (int)i, c.docs[i].year);
        if (c.docs[i].len != strlen(DOC_TEXTS[i]) || memcmp(c.docs[i].text, DOC_TEXTS[i], c.docs[i].len) != 0)
            FAILF("%s: text '%.*s'", DOC_NAMES[i], (int)c.docs[i].len, (const char *)c.docs[i].text);
    }
    cb_corpus_free(&c);
}

TEST(corpus_from_one_file) {
    char path[4096];
    cb_corpus c;
    cb_error e;
    /* documents between <|endoftext|> lines; an empty one is dropped */
    tmp_path("separated.txt", path, sizeof path);
    if (write_bytes(path, "one\n<|endoftext|>\ntwo\r\nlines\n<|endoftext|>\n<|endoftext|>\nthree\n", 64) != 0) { FAILF("write"); return; }
    if (cb_corpus_load(&c, path, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    EXPECT_EQ_INT(3, c.n);
    if (c.n == 3) {
        EXPECT_EQ_STR("doc_0001", c.docs[0].name);
        EXPECT_EQ_STR("doc_0003", c.docs[2].name);
        EXPECT(c.docs[1].len == 9 && memcmp(c.docs[1].text, "two\nlines", 9) == 0);
        EXPECT(c.docs[2].len == 5 && memcmp(c.docs[2].text, "three", 5) == 0);
    }
    cb_corpus_free(&c);
    /* no separators: 30 paragraphs of 1000 bytes cut into parts of at least 4096 bytes */
    size_t n = 30 * 1002;
    char *text = malloc(n + 1);
    if (!text) { FAILF("out of memory"); return; }
    for (size_t p = 0; p < 30; p++) {
        memset(text + p * 1002, 'a' + (int)(p % 26), 1000);
        memcpy(text + p * 1002 + 1000, "\n\n", 2);
    }
    tmp_path("parts.txt", path, sizeof path);
    int w = write_bytes(path, text, n);
    free(text);
    if (w != 0) { FAILF("write"); return; }
    if (cb_corpus_load(&c, path, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    /* a part closes at the first blank line once it holds >= 4096 bytes: 5 paragraphs
     * (5 * 1002 - 1 bytes), so 6 parts, the last holding the remaining 5 paragraphs */
    EXPECT_EQ_INT(6, c.n);
    size_t total = 0;
    for (size_t i = 0; i < c.n; i++) {
        char want[32];
        snprintf(want, sizeof want, "part_%04zu", i + 1);
        EXPECT_EQ_STR(want, c.docs[i].name);
        EXPECT_EQ_INT(5 * 1000 + 4 * 2, c.docs[i].len);
        total += c.docs[i].len;
    }
    EXPECT_EQ_INT(6 * 5008, total);
    cb_corpus_free(&c);
}

TEST(corpus_refusals) {
    cb_corpus c;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_USAGE, cb_corpus_load(&c, "/nonexistent/corpus", &e));
    EXPECT_EQ_STR("no such file or directory, and not a corpus name (sotu, moby-dick, brown)", e.msg);
    char dir[4096];
    tmp_path("empty_corpus", dir, sizeof dir);
    mkdir(dir, 0777);
    write_text(dir, "blank.txt", "\n\n");
    EXPECT_EQ_INT(CB_E_INVALID, cb_corpus_load(&c, dir, &e));
    EXPECT_EQ_STR("no documents (no files with text)", e.msg);
}

/* ------------------------------------------------------------ prepare */

static char *slurp(const char *path, size_t *n) {
    char *buf = NULL;
    cb_error e;
    *n = 0;
    if (cb_read_file(path, 0, &buf, n, &e) != CB_OK) FAILF("cannot read %.300s: %.200s", path, e.msg);
    return buf;
}

/* The number of temporary directories (".NAME.tmp.*") left in the scratch directory. */
static int leftover_tmp_dirs(void) {
    char dir[4096];
    tmp_path("", dir, sizeof dir);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *ent;
    while (d && (ent = readdir(d))) n += ent->d_name[0] == '.' && strstr(ent->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static int prepare(const char *corpus, const char *tokenizer, double frac, int from, const char *out_name,
                   char *out, size_t out_size, cb_prepare_stats *st, cb_error *e) {
    tmp_path(out_name, out, out_size);
    cb_prepare_opts o = {corpus, tokenizer, frac, from, out};
    cb_error_clear(e);
    return cb_prepare(&o, st, e);
}

TEST(prepare_val_from_byte_tokenizer) {
    char out[4096], path[4200];
    cb_prepare_stats st;
    cb_error e;
    if (prepare(corpus_dir(), "byte", 0, 2001, "byte_from", out, sizeof out, &st, &e) != CB_OK) {
        FAILF("%s: %s", e.where, e.msg);
        return;
    }
    /* byte ids are the bytes; documents are followed by "\n\n" (no end-of-text token) */
    EXPECT_EQ_INT(-1, st.eot_id);
    EXPECT_EQ_INT(256, st.vocab_size);
    EXPECT_EQ_INT(2, st.documents[CB_SPLIT_TRAIN]);
    EXPECT_EQ_INT(2, st.documents[CB_SPLIT_VAL]);
    EXPECT_EQ_INT(1, st.dropped_empty);
    for (int s = 0; s < 2; s++) {
        char want[256] = "";
        for (int d = 2 * s; d < 2 * s + 2; d++) {
            strcat(want, DOC_TEXTS[d]);
            strcat(want, "\n\n");
        }
        EXPECT_EQ_INT(strlen(want), st.tokens[s]);
        snprintf(path, sizeof path, "%s/%s.npy", out, s ? "val" : "train");
        cb_dataset ds;
        if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("%s", e.msg); continue; }
        EXPECT_EQ_INT(CB_DTYPE_U16, ds.dtype);
        EXPECT_EQ_INT(strlen(want), ds.n_tokens);
        for (size_t i = 0; i < ds.n_tokens && i < strlen(want); i++)
            if (cb_dataset_token(&ds, i) != (unsigned char)want[i]) { FAILF("%s: token %zu", path, i); break; }
        cb_dataset_close(&ds);
    }
    /* prepared.json */
    json_t *doc = NULL;
    snprintf(path, sizeof path, "%s/prepared.json", out);
    if (cb_doc_load(path, "dataset", &doc, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    EXPECT_EQ_STR(corpus_dir(), json_string_value(json_object_get(doc, "corpus")));
    EXPECT_EQ_STR("byte", json_string_value(json_object_get(doc, "tokenizer")));
    EXPECT_EQ_INT(256, json_integer_value(json_object_get(doc, "vocab_size")));
    EXPECT_EQ_STR("\n\n", json_string_value(json_object_get(json_object_get(doc, "document_separator"), "text")));
    EXPECT_EQ_STR("val_from", json_string_value(json_object_get(json_object_get(doc, "split"), "rule")));
    EXPECT_EQ_INT(2001, json_integer_value(json_object_get(json_object_get(doc, "split"), "val_from")));
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(doc, "documents_dropped_empty")));
    EXPECT_EQ_INT(1, json_integer_value(json_object_get(doc, "invalid_utf8_bytes_replaced")));
    for (int s = 0; s < 2; s++) {
        json_t *part = json_object_get(doc, s ? "val" : "train");
        EXPECT_EQ_STR(s ? "val.npy" : "train.npy", json_string_value(json_object_get(part, "file")));
        EXPECT_EQ_STR("uint16", json_string_value(json_object_get(part, "dtype")));
        EXPECT_EQ_INT(2, json_integer_value(json_object_get(part, "documents")));
        EXPECT_EQ_INT(st.tokens[s], json_integer_value(json_object_get(part, "tokens")));
        EXPECT_EQ_INT(st.tokens[s] - 4, json_integer_value(json_object_get(part, "text_bytes")));
        size_t n;
        snprintf(path, sizeof path, "%s/%s", out, s ? "val.npy" : "train.npy");
        char *bytes = slurp(path, &n), hex[65];
        if (bytes) {
            cb_sha256_hex(bytes, n, hex);
            EXPECT_EQ_STR(hex, json_string_value(json_object_get(part, "sha256")));
        }
        free(bytes);
    }
    json_t *names = json_object_get(json_object_get(doc, "val"), "document_names");
    EXPECT_EQ_INT(2, json_array_size(names));
    EXPECT_EQ_STR("2001_c", json_string_value(json_array_get(names, 0)));
    EXPECT_EQ_STR("2002_d", json_string_value(json_array_get(names, 1)));
    json_decref(doc);
    EXPECT_EQ_INT(0, leftover_tmp_dirs());
}

/* Two runs give byte-identical files; a third into the same directory replaces it whole. */
TEST(prepare_deterministic_and_replaces) {
    static const char *const files[] = {"train.npy", "val.npy", "prepared.json"};
    char a[4096], b[4096];
    cb_error e;
    if (prepare(corpus_dir(), "byte", 0.5, 0, "det_a", a, sizeof a, NULL, &e) != CB_OK ||
        prepare(corpus_dir(), "byte", 0.5, 0, "det_b", b, sizeof b, NULL, &e) != CB_OK) {
        FAILF("%s: %s", e.where, e.msg);
        return;
    }
    char stray[4200];
    snprintf(stray, sizeof stray, "%s/stray.txt", b);
    write_bytes(stray, "x", 1); /* an earlier output's extra file goes with it */
    if (prepare(corpus_dir(), "byte", 0.5, 0, "det_b", b, sizeof b, NULL, &e) != CB_OK) { FAILF("rerun: %s", e.msg); return; }
    EXPECT(access(stray, F_OK) != 0);
    for (int f = 0; f < 3; f++) {
        char pa[4200], pb[4200];
        snprintf(pa, sizeof pa, "%s/%s", a, files[f]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[f]);
        size_t na, nb;
        char *x = slurp(pa, &na), *y = slurp(pb, &nb);
        if (x && y && (na != nb || memcmp(x, y, na) != 0)) FAILF("%s differs between runs", files[f]);
        free(x);
        free(y);
    }
    EXPECT_EQ_INT(0, leftover_tmp_dirs());
}

/* val_frac: a pure function of the name, close to the asked share over many names. */
TEST(prepare_val_frac_by_name_hash) {
    cb_prepare_opts o = {"c", "byte", 0.25, 0, "out"};
    int n_val = 0;
    for (int i = 0; i < 4000; i++) {
        char name[32];
        snprintf(name, sizeof name, "doc_%d", i);
        cb_document d = {name, -1, NULL, 0};
        int v1 = -1, v2 = -1;
        cb_error e;
        cb_prepare_is_val(&o, &d, &v1, &e);
        cb_prepare_is_val(&o, &d, &v2, &e);
        if (v1 != v2) FAILF("%s: not deterministic", name);
        n_val += v1;
    }
    fprintf(stderr, "  val_frac 0.25: %d of 4000 names in validation\n", n_val);
    EXPECT(n_val > 900 && n_val < 1100);
    /* the default share is CB_PREPARE_VAL_FRAC */
    o.val_frac = 0;
    n_val = 0;
    for (int i = 0; i < 4000; i++) {
        char name[32];
        snprintf(name, sizeof name, "doc_%d", i);
        cb_document d = {name, -1, NULL, 0};
        int v = 0;
        cb_error e;
        cb_prepare_is_val(&o, &d, &v, &e);
        n_val += v;
    }
    EXPECT(n_val > 330 && n_val < 470);
}

TEST(prepare_refusals_leave_nothing) {
    char out[4096], path[4200];
    cb_error e;
    /* a year rule that leaves validation empty */
    EXPECT_EQ_INT(CB_E_INVALID, prepare(corpus_dir(), "byte", 0, 3000, "none", out, sizeof out, NULL, &e));
    EXPECT(strstr(e.msg, "--val-from 3000 leaves no document for validation (4 documents)") != NULL);
    EXPECT(access(out, F_OK) != 0);
    /* both rules */
    EXPECT_EQ_INT(CB_E_USAGE, prepare(corpus_dir(), "byte", 0.5, 2001, "none", out, sizeof out, NULL, &e));
    /* a frac outside (0, 1) */
    EXPECT_EQ_INT(CB_E_USAGE, prepare(corpus_dir(), "byte", 1.5, 0, "none", out, sizeof out, NULL, &e));
    /* a document without a year under --val-from */
    char dir[4096];
    tmp_path("no_year", dir, sizeof dir);
    mkdir(dir, 0777);
    write_text(dir, "2001_a.txt", "a");
    write_text(dir, "intro.txt", "b");
    EXPECT_EQ_INT(CB_E_INVALID, prepare(dir, "byte", 0, 2000, "none", out, sizeof out, NULL, &e));
    EXPECT_EQ_STR("intro", e.where);
    EXPECT_EQ_STR("document name does not start with a year; --val-from needs one", e.msg);
    EXPECT(access(out, F_OK) != 0);
    /* an existing directory that is not an earlier output is left alone */
    tmp_path("keep", dir, sizeof dir);
    mkdir(dir, 0777);
    write_text(dir, "precious.txt", "keep me");
    cb_prepare_opts o = {corpus_dir(), "byte", 0.5, 0, dir};
    EXPECT_EQ_INT(CB_E_IO, cb_prepare(&o, NULL, &e));
    EXPECT(strstr(e.msg, "exists, is not empty and holds no prepared.json; not replacing it") != NULL);
    snprintf(path, sizeof path, "%s/precious.txt", dir);
    EXPECT(access(path, F_OK) == 0);
    snprintf(path, sizeof path, "%s/train.npy", dir);
    EXPECT(access(path, F_OK) != 0);
    /* a missing parent; an unknown tokenizer */
    o.out_dir = "/nonexistent/dir/out";
    EXPECT_EQ_INT(CB_E_IO, cb_prepare(&o, NULL, &e));
    EXPECT_EQ_INT(CB_E_USAGE, prepare(corpus_dir(), "/nonexistent/tok", 0.5, 0, "none", out, sizeof out, NULL, &e));
    EXPECT(access(out, F_OK) != 0);
    EXPECT_EQ_INT(0, leftover_tmp_dirs());
}

/* GPT-2's tokenizer (r50k_base) puts <|endoftext|> (50256) after every document, and a
 * document spelling "<|endoftext|>" keeps it as text. */
TEST(prepare_gpt2_end_of_text) {
    char dir[4096], out[4096], path[4200];
    tmp_path("eot_corpus", dir, sizeof dir);
    mkdir(dir, 0777);
    write_text(dir, "1990_a.txt", "Hello world");
    write_text(dir, "2000_b.txt", "a<|endoftext|>");
    cb_prepare_stats st;
    cb_error e;
    int rc = prepare(dir, "r50k_base", 0, 2000, "eot_out", out, sizeof out, &st, &e);
    if (rc == CB_E_IO && strstr(e.msg, "npm")) SKIP("r50k_base not available (no network?): %.200s", e.msg);
    if (rc != CB_OK) { FAILF("%s: %s", e.where, e.msg); return; }
    EXPECT_EQ_INT(50256, st.eot_id);
    EXPECT_EQ_INT(50257, st.vocab_size);
    /* Hello world = [15496, 995]; a<|endoftext|> as text = [64, 27, 91, 437, 1659, 5239, 91, 29] */
    static const int64_t hello[] = {15496, 995, 50256}, a_eot[] = {64, 27, 91, 437, 1659, 5239, 91, 29, 50256};
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s.npy", out, s ? "val" : "train");
        cb_dataset ds;
        if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("%s", e.msg); continue; }
        const int64_t *want = s ? a_eot : hello;
        size_t n = s ? 9 : 3;
        EXPECT_EQ_INT(n, ds.n_tokens);
        for (size_t k = 0; k < n && k < ds.n_tokens; k++)
            if (cb_dataset_token(&ds, k) != want[k]) FAILF("%s: token %zu is %lld, expected %lld", path, k, (long long)cb_dataset_token(&ds, k), (long long)want[k]);
        cb_dataset_close(&ds);
    }
}
