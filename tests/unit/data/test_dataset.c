/* test_dataset.c: token datasets: .npy files numpy wrote (every token dtype, versions
 * 1.0/2.0/3.0), caramba's writer byte for byte against numpy, hand-made headers, .tokens
 * files, every hostile file in tests/bad/data/, the vocabulary check, and the batcher
 * (exact window starts, determinism, resuming, wrapping, too little data). */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include "core/atomic_file.h"
#include "core/sha256.h"
#include "data/dataset.h"
#include "data/npy_header.h"
#include "data/npy_write.h"
#include "tmp_dir.h"

/* the ids tests/reference/make_npy_fixtures.py saved */
static const int64_t IDS[] = {0, 1, 50256, 65535, 7, 42};
static const int64_t IDS_U32[] = {0, 70000, 2147483647, 5, 65536, 3};
#define N_IDS 6

static const char *ref_path(const char *name, char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/reference/npy/%s", tree_root(), name);
    return buf;
}

static void expect_ids(const cb_dataset *ds, const int64_t *want, size_t n) {
    EXPECT_EQ_INT(n, ds->n_tokens);
    if (ds->n_tokens != n) return;
    int64_t max = -1;
    for (size_t i = 0; i < n; i++) {
        if (cb_dataset_token(ds, i) != want[i])
            FAILF("%s: token %zu: expected %lld, got %lld", ds->path, i, (long long)want[i], (long long)cb_dataset_token(ds, i));
        if (want[i] > max) max = want[i];
    }
    EXPECT_EQ_INT(max, ds->max_token);
}

TEST(numpy_files_of_every_dtype_and_version) {
    static const struct { const char *name; enum cb_dtype dtype; const int64_t *ids; size_t n; } cases[] = {
        {"u16.npy", CB_DTYPE_U16, IDS, N_IDS},      {"u32.npy", CB_DTYPE_U32, IDS_U32, N_IDS},
        {"i32.npy", CB_DTYPE_I32, IDS, N_IDS},      {"i64.npy", CB_DTYPE_I64, IDS, N_IDS},
        {"u16_v2.npy", CB_DTYPE_U16, IDS, N_IDS},   {"u16_v3.npy", CB_DTYPE_U16, IDS, N_IDS},
        {"empty_u16.npy", CB_DTYPE_U16, IDS, 0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[4096];
        cb_dataset ds;
        cb_error e;
        cb_error_clear(&e);
        if (cb_dataset_open(&ds, ref_path(cases[c].name, path, sizeof path), &e) != CB_OK) {
            FAILF("%s: %s", cases[c].name, e.msg);
            continue;
        }
        EXPECT_EQ_INT(cases[c].dtype, ds.dtype);
        EXPECT(ds.map_base != NULL); /* mapped, not copied */
        expect_ids(&ds, cases[c].ids, cases[c].n);
        cb_dataset_close(&ds);
    }
}

/* The writer's file equals numpy's byte for byte, and the SHA-256 it reports is the file's. */
TEST(writer_matches_numpy) {
    static const struct { const char *name; const int64_t *ids; enum cb_dtype dtype; } cases[] = {
        {"u16.npy", IDS, CB_DTYPE_U16}, {"u32.npy", IDS_U32, CB_DTYPE_U32}, {"empty_u16.npy", IDS, CB_DTYPE_U16},
    };
    for (size_t c = 0; c < 3; c++) {
        int32_t ids[N_IDS];
        size_t n = c == 2 ? 0 : N_IDS;
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)cases[c].ids[i];
        char out[4096], ref[4096], hex[65], want_hex[65];
        enum cb_dtype dtype = CB_DTYPE_F32;
        cb_error e;
        if (cb_npy_write_tokens(tmp_path(cases[c].name, out, sizeof out), ids, n, &dtype, hex, &e) != CB_OK) {
            FAILF("write %s: %s", cases[c].name, e.msg);
            continue;
        }
        EXPECT_EQ_INT(cases[c].dtype, dtype);
        char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        if (cb_read_file(out, 0, &a, &na, &e) != CB_OK || cb_read_file(ref_path(cases[c].name, ref, sizeof ref), 0, &b, &nb, &e) != CB_OK) {
            FAILF("read: %s", e.msg);
        } else {
            if (na != nb || memcmp(a, b, na) != 0) FAILF("%s: %zu bytes written differ from numpy's %zu", cases[c].name, na, nb);
            cb_sha256_hex(a, na, want_hex);
            EXPECT_EQ_STR(want_hex, hex);
        }
        free(a);
        free(b);
    }
}

/* Arrays longer than the writer's conversion buffer, both dtypes, read back exactly. */
TEST(writer_round_trip_large) {
    size_t n = 100003;
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) { FAILF("out of memory"); return; }
    for (int big = 0; big < 2; big++) {
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)((i * 2654435761u) % (big ? 1000000u : 65536u));
        char path[4096];
        cb_error e;
        cb_dataset ds;
        tmp_path(big ? "large_u32.npy" : "large_u16.npy", path, sizeof path);
        if (cb_npy_write_tokens(path, ids, n, NULL, NULL, &e) != CB_OK || cb_dataset_open(&ds, path, &e) != CB_OK) {
            FAILF("%s: %s", path, e.msg);
            continue;
        }
        EXPECT_EQ_INT(big ? CB_DTYPE_U32 : CB_DTYPE_U16, ds.dtype);
        EXPECT_EQ_INT(n, ds.n_tokens);
        size_t bad = 0;
        int64_t max = 0;
        for (size_t i = 0; i < n; i++) {
            bad += cb_dataset_token(&ds, i) != ids[i];
            if (ids[i] > max) max = ids[i];
        }
        EXPECT_EQ_INT(0, bad);
        EXPECT_EQ_INT(max, ds.max_token);
        cb_dataset_close(&ds);
    }
    free(ids);
}

TEST(writer_refuses_negative_ids) {
    int32_t ids[] = {3, 4, -1};
    char path[4096];
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_INVALID, cb_npy_write_tokens(tmp_path("neg.npy", path, sizeof path), ids, 3, NULL, NULL, &e));
    EXPECT_EQ_STR("negative token id -1 at index 2", e.msg);
    EXPECT(access(path, F_OK) != 0); /* nothing left under the final name */
}

/* Headers numpy can write but np.save does not: double quotes, keys in another order, a
 * Python 2 "3L", no padding (the int64 data then starts at an odd offset). */
TEST(hand_made_headers) {
    static const char *headers[] = {
        "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"<i8\"}\n",
        "{'descr':'<i8','fortran_order':False,'shape':(3,)}",
        "{'descr': '<i8', 'fortran_order': False, 'shape': (3 , ) , }   \n",
    };
    int64_t vals[3] = {5, 0, 1234567};
    for (int v = 1; v <= 3; v++) {
        for (size_t h = 0; h < 3; h++) {
            unsigned char buf[256];
            size_t hl = strlen(headers[h]), prefix = v == 1 ? 10 : 12;
            memcpy(buf, "\x93NUMPY", 6);
            buf[6] = (unsigned char)v;
            buf[7] = 0;
            memset(buf + 8, 0, 4);
            buf[8] = (unsigned char)hl;
            memcpy(buf + prefix, headers[h], hl);
            memcpy(buf + prefix + hl, vals, sizeof vals);
            char name[64], path[4096];
            snprintf(name, sizeof name, "hand_v%d_%zu.npy", v, h);
            tmp_path(name, path, sizeof path);
            cb_dataset ds;
            cb_error e;
            if (write_bytes(path, buf, prefix + hl + sizeof vals) != 0) { FAILF("cannot write %s", path); continue; }
            if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("v%d header %zu: %s", v, h, e.msg); continue; }
            EXPECT_EQ_INT(CB_DTYPE_I64, ds.dtype);
            int64_t want[3] = {5, 0, 1234567};
            expect_ids(&ds, want, 3);
            cb_dataset_close(&ds);
        }
    }
}

/* Every file in tests/bad/data/ and the reason it must be refused for. */
static const struct { const char *name, *reason; } bad_files[] = {
    {"wrong_magic.npy", "not a .npy file (no \\x93NUMPY magic)"},
    {"short.npy", "not a .npy file (no \\x93NUMPY magic)"},
    {"bad_version.npy", ".npy format version 4.0 is not 1.0, 2.0 or 3.0"},
    {"header_past_end.npy", ".npy header length 60000 runs past the end of the file (140 bytes)"},
    {"truncated_data.npy", "header claims 6 elements (12 bytes) but the file holds 10 bytes of data"},
    {"trailing_bytes.npy", "2 bytes after the 6 elements the header claims"},
    {"huge_shape.npy", "header claims 18446744073709551615 elements"},
    {"fortran_order.npy", "Fortran order is not supported"},
    {"two_d.npy", "shape has 2 dimensions; a token array is one-dimensional"},
    {"scalar.npy", "shape has 0 dimensions; a token array is one-dimensional"},
    {"not_tuple_shape.npy", ".npy header: shape '(n)' is not a tuple (numpy writes '(n,)')"},
    {"negative_dim.npy", ".npy header: negative dimension"},
    {"unknown_descr.npy", "dtype '<f4' is not a token type (<u2, <u4, <i4, <i8)"},
    {"big_endian.npy", "dtype '>u2' is not a token type"},
    {"structured_descr.npy", "descr is not a string (structured arrays are not token arrays)"},
    {"missing_key.npy", ".npy header: missing key 'fortran_order'"},
    {"unknown_key.npy", ".npy header: unknown key 'x'"},
    {"duplicate_key.npy", ".npy header: key 'descr' given twice"},
    {"not_a_dict.npy", ".npy header: expected '{'"},
    {"negative_id.npy", "negative token id -5 at index 3"},
    {"negative_id_i64.npy", "negative token id -1 at index 1"},
    {"id_past_int32.npy", "token id 3000000000 at index 1 does not fit in int32"},
    {"negative_id.tokens", "negative token id '-4'"},
    {"not_a_number.tokens", "'six' is not a token id (a non-negative decimal)"},
    {"id_past_int32.tokens", "token id '2147483648' does not fit in int32"},
};

TEST(hostile_files_refused) {
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/bad/data/%s", tree_root(), bad_files[i].name);
        cb_dataset ds;
        cb_error e;
        cb_error_clear(&e);
        int rc = cb_dataset_open(&ds, path, &e);
        if (rc != CB_E_INVALID) {
            FAILF("%s: expected CB_E_INVALID, got %d (%s)", bad_files[i].name, rc, e.msg);
            if (rc == CB_OK) cb_dataset_close(&ds);
            continue;
        }
        if (!strstr(e.msg, bad_files[i].reason)) FAILF("%s: message '%s' lacks '%s'", bad_files[i].name, e.msg, bad_files[i].reason);
        if (!strstr(e.where, bad_files[i].name)) FAILF("%s: where '%s' does not name the file", bad_files[i].name, e.where);
        EXPECT(ds.tokens == NULL && ds.map_base == NULL && ds.owned == NULL);
    }
}

/* A .tokens error names the line and column of the bad id. */
TEST(tokens_errors_name_the_line) {
    static const struct { const char *name, *loc; } cases[] = {
        {"negative_id.tokens", "negative_id.tokens:2:3"},
        {"not_a_number.tokens", "not_a_number.tokens:3:3"},
        {"id_past_int32.tokens", "id_past_int32.tokens:3:1"},
    };
    for (size_t i = 0; i < 3; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/bad/data/%s", tree_root(), cases[i].name);
        cb_dataset ds;
        cb_error e;
        cb_error_clear(&e);
        EXPECT_EQ_INT(CB_E_INVALID, cb_dataset_open(&ds, path, &e));
        size_t lw = strlen(e.where), ll = strlen(cases[i].loc);
        if (lw < ll || strcmp(e.where + lw - ll, cases[i].loc) != 0) FAILF("where '%s', expected it to end in '%s'", e.where, cases[i].loc);
    }
}

/* Every bad file in the directory is in the table (a new one without a test fails). */
TEST(every_bad_file_listed) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/bad/data", tree_root());
    DIR *d = opendir(path);
    if (!d) { FAILF("cannot open %s", path); return; }
    struct dirent *ent;
    int files = 0;
    while ((ent = readdir(d))) {
        const char *n = ent->d_name;
        size_t len = strlen(n);
        if (!((len > 4 && strcmp(n + len - 4, ".npy") == 0) || (len > 7 && strcmp(n + len - 7, ".tokens") == 0))) continue;
        files++;
        int found = 0;
        for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) found |= strcmp(bad_files[i].name, n) == 0;
        if (!found) FAILF("tests/bad/data/%s has no expected reason in test_dataset.c", n);
    }
    closedir(d);
    EXPECT_EQ_INT(sizeof bad_files / sizeof bad_files[0], files);
}

TEST(tokens_file) {
    const char text[] = "  12 0\t7\r\n\n  2147483647\n5";
    char path[4096];
    tmp_path("good.tokens", path, sizeof path);
    if (write_bytes(path, text, sizeof text - 1) != 0) { FAILF("cannot write %s", path); return; }
    cb_dataset ds;
    cb_error e;
    if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    int64_t want[] = {12, 0, 7, 2147483647, 5};
    EXPECT_EQ_INT(CB_DTYPE_I32, ds.dtype);
    EXPECT(ds.owned != NULL && ds.map_base == NULL);
    expect_ids(&ds, want, 5);
    cb_dataset_close(&ds);

    tmp_path("empty.tokens", path, sizeof path);
    if (write_bytes(path, " \n", 2) != 0) { FAILF("cannot write %s", path); return; }
    if (cb_dataset_open(&ds, path, &e) != CB_OK) { FAILF("%s", e.msg); return; }
    EXPECT_EQ_INT(0, ds.n_tokens);
    EXPECT_EQ_INT(-1, ds.max_token);
    cb_dataset_close(&ds);
}

TEST(missing_file_and_wrong_suffix) {
    cb_dataset ds;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_IO, cb_dataset_open(&ds, "/nonexistent/data.npy", &e));
    EXPECT_EQ_INT(CB_E_IO, cb_dataset_open(&ds, "/nonexistent/data.tokens", &e));
    EXPECT_EQ_INT(CB_E_USAGE, cb_dataset_open(&ds, "/nonexistent/data.bin", &e));
    EXPECT_EQ_STR("a dataset is a .npy or .tokens file", e.msg);
}

TEST(vocab_check) {
    char path[4096];
    cb_dataset ds;
    cb_error e;
    cb_error_clear(&e);
    if (cb_dataset_open(&ds, ref_path("u16.npy", path, sizeof path), &e) != CB_OK) { FAILF("%s", e.msg); return; }
    EXPECT_EQ_INT(CB_OK, cb_dataset_check_vocab(&ds, 65536, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_dataset_check_vocab(&ds, 50257, &e));
    EXPECT_EQ_STR("token id 65535 at index 3 is past the vocabulary (50257)", e.msg);
    EXPECT_EQ_INT(CB_E_INVALID, cb_dataset_check_vocab(&ds, 50256, &e));
    EXPECT_EQ_STR("token id 50256 at index 2 is past the vocabulary (50256)", e.msg);
    cb_dataset_close(&ds);
}

/* ------------------------------------------------------------ batcher */

/* A dataset whose token i is i (uint32 when n > 65536), so a window shows its start. */
static int open_arange(cb_dataset *ds, size_t n, const char *name) {
    int32_t *ids = malloc(n * sizeof *ids);
    if (!ids) return -1;
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)i;
    char path[4096];
    cb_error e;
    int rc = cb_npy_write_tokens(tmp_path(name, path, sizeof path), ids, n, NULL, NULL, &e);
    free(ids);
    if (rc == CB_OK) rc = cb_dataset_open(ds, path, &e);
    if (rc != CB_OK) FAILF("%s: %s", name, e.msg);
    return rc;
}

/* Every row is a window of consecutive ids starting where cb_batcher_row_start says. */
static void check_windows(const cb_batcher *b, uint64_t batch, const int32_t *x, const int32_t *y) {
    for (int r = 0; r < b->B; r++) {
        uint64_t start = cb_batcher_row_start(b, batch, r);
        if (start > b->ds->n_tokens - b->T - 1) FAILF("batch %llu row %d: start %llu out of range", (unsigned long long)batch, r, (unsigned long long)start);
        for (int t = 0; t < b->T; t++) {
            if (x[r * b->T + t] != (int32_t)(start + t) || y[r * b->T + t] != (int32_t)(start + t + 1)) {
                FAILF("batch %llu row %d t %d: x %d y %d, start %llu", (unsigned long long)batch, r, t,
                      x[r * b->T + t], y[r * b->T + t], (unsigned long long)start);
                return;
            }
        }
    }
}

TEST(batcher_sequential_walks_and_wraps) {
    cb_dataset ds;
    if (open_arange(&ds, 100, "seq.npy") != CB_OK) return;
    cb_batcher b;
    cb_error e;
    enum { B = 3, T = 8 };
    if (cb_batcher_init(&b, &ds, B, T, 0, 1, &e) != CB_OK) { FAILF("%s", e.msg); cb_dataset_close(&ds); return; }
    int32_t x[B * T], y[B * T];
    for (uint64_t k = 0; k < 10; k++) {
        cb_batcher_next(&b, x, y);
        for (int r = 0; r < B; r++) {
            uint64_t want = ((k * B + r) * T) % (100 - T);
            EXPECT_EQ_INT(want, x[r * T]);
        }
        check_windows(&b, k, x, y);
    }
    EXPECT_EQ_INT(10, b.position);
    /* batch 3 row 2 starts at (11 * 8) mod 92 = 88, the window ending at id 96; batch 4
     * row 0 at 96 mod 92 = 4: wrapped */
    EXPECT_EQ_INT(88, cb_batcher_row_start(&b, 3, 2));
    EXPECT_EQ_INT(4, cb_batcher_row_start(&b, 4, 0));
    /* a batch number so large that (k * B + r) * T overflows 64 bits */
    uint64_t k = UINT64_MAX / 2;
    unsigned __int128 want = ((unsigned __int128)k * B + 1) * T % 92;
    EXPECT_EQ_INT((uint64_t)want, cb_batcher_row_start(&b, k, 1));
    cb_dataset_close(&ds);
}

TEST(batcher_random_deterministic_and_resumable) {
    cb_dataset ds;
    if (open_arange(&ds, 70000, "rand.npy") != CB_OK) return;
    enum { B = 4, T = 16, N = 10 };
    cb_batcher a, c;
    cb_error e;
    if (cb_batcher_init(&a, &ds, B, T, 1, 1234, &e) != CB_OK) { FAILF("%s", e.msg); cb_dataset_close(&ds); return; }
    static int32_t xa[N][B * T], ya[N][B * T];
    for (int k = 0; k < N; k++) {
        cb_batcher_next(&a, xa[k], ya[k]);
        check_windows(&a, (uint64_t)k, xa[k], ya[k]);
    }
    /* draw 5, then a fresh batcher restored to position 5 draws the other 5 */
    int32_t x[B * T], y[B * T];
    cb_batcher_init(&c, &ds, B, T, 1, 1234, &e);
    for (int k = 0; k < 5; k++) cb_batcher_next(&c, x, y);
    EXPECT_EQ_INT(0, memcmp(x, xa[4], sizeof x));
    cb_batcher_init(&c, &ds, B, T, 1, 1234, &e);
    c.position = 5;
    for (int k = 5; k < N; k++) {
        cb_batcher_next(&c, x, y);
        if (memcmp(x, xa[k], sizeof x) != 0 || memcmp(y, ya[k], sizeof y) != 0) FAILF("resumed batch %d differs", k);
    }
    /* rows of one batch and batches differ; another seed gives other windows */
    EXPECT(xa[0][0] != xa[0][T] || xa[0][T] != xa[0][2 * T]);
    EXPECT(memcmp(xa[0], xa[1], sizeof xa[0]) != 0);
    cb_batcher_init(&c, &ds, B, T, 1, 1235, &e);
    cb_batcher_next(&c, x, y);
    EXPECT(memcmp(x, xa[0], sizeof x) != 0);
    cb_dataset_close(&ds);
}

/* With n = T + 3 tokens the starts are 0, 1, 2: all three come up, nothing else. */
TEST(batcher_random_covers_every_start) {
    cb_dataset ds;
    if (open_arange(&ds, 11, "tiny.npy") != CB_OK) return;
    cb_batcher b;
    cb_error e;
    if (cb_batcher_init(&b, &ds, 8, 8, 1, 7, &e) != CB_OK) { FAILF("%s", e.msg); cb_dataset_close(&ds); return; }
    int seen[3] = {0, 0, 0};
    int32_t x[64], y[64];
    for (int k = 0; k < 30; k++) {
        cb_batcher_next(&b, x, y);
        check_windows(&b, (uint64_t)k, x, y);
        for (int r = 0; r < 8; r++)
            if (x[r * 8] >= 0 && x[r * 8] < 3) seen[x[r * 8]]++;
    }
    EXPECT(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    EXPECT_EQ_INT(240, seen[0] + seen[1] + seen[2]);
    cb_dataset_close(&ds);
}

TEST(batcher_needs_t_plus_one_tokens) {
    cb_dataset ds;
    if (open_arange(&ds, 8, "short.npy") != CB_OK) return;
    cb_batcher b;
    cb_error e;
    cb_error_clear(&e);
    EXPECT_EQ_INT(CB_E_INVALID, cb_batcher_init(&b, &ds, 2, 8, 1, 0, &e));
    EXPECT_EQ_STR("8 tokens, fewer than sequence length + 1 (9)", e.msg);
    EXPECT_EQ_INT(CB_OK, cb_batcher_init(&b, &ds, 2, 7, 0, 0, &e));
    int32_t x[14], y[14];
    cb_batcher_next(&b, x, y); /* one start only: both rows are ids 0..7 */
    for (int t = 0; t < 7; t++) EXPECT(x[t] == t && x[7 + t] == t && y[t] == t + 1);
    EXPECT_EQ_INT(CB_E_USAGE, cb_batcher_init(&b, &ds, 0, 4, 0, 0, &e));
    cb_dataset_close(&ds);
}
