/* test_safetensors_bad.c: every hostile file in tests/bad/safetensors/ is rejected
 * with CB_E_INVALID, the file named as `where`, and the reason its name promises. */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include "tensor/safetensors.h"

/* file stem -> a piece of the message it must give */
static const struct { const char *stem, *reason; } expected[] = {
    {"empty", "file is empty"},
    {"seven_bytes", "file is 7 bytes, shorter than the 8-byte header length"},
    {"truncated_header", "header length 57 past the end of the file (12 bytes after the length)"},
    {"truncated_data", "tensor 'w': data_offsets end 16 past the data section (11 bytes)"},
    {"header_len_past_end", "header length 1000 past the end of the file"},
    {"header_len_over_100mb", "header length 100000001 exceeds the limit of 100000000 bytes"},
    {"header_len_2pow64", "header length 18446744073709551615 exceeds the limit"},
    {"invalid_json", "header is not valid JSON"},
    {"invalid_utf8", "header is not valid JSON"},
    {"not_object", "header is an array, not a JSON object"},
    {"tensor_not_object", "tensor 'w': is an integer, not an object"},
    {"unknown_dtype", "tensor 'w': dtype 'F8_E4M3' unknown"},
    {"dtype_not_string", "tensor 'w': dtype is an integer, not a string"},
    {"missing_dtype", "tensor 'w': dtype missing"},
    {"missing_shape", "tensor 'w': shape missing"},
    {"missing_offsets", "tensor 'w': data_offsets missing"},
    {"shape_negative", "tensor 'w': shape[1] is -3, not a non-negative integer"},
    {"shape_real", "tensor 'w': shape[0] is a real number, not a non-negative integer"},
    {"shape_nine_dims", "tensor 'w': shape has 9 dimensions, more than 8"},
    {"shape_2pow40_elements", "tensor 'w': data_offsets [0, 16] hold 16 bytes, but F32 [1048576, 1048576] needs 4398046511104"},
    {"shape_overflow_elements", "tensor 'w': shape [4294967296, 4294967296, 2] has more than 2^64 elements"},
    {"shape_overflow_zero_first", "tensor 'w': shape [0, 4294967296, 4294967296] has more than 2^64 elements"},
    {"shape_overflow_bytes", "tensor 'w': shape [4611686018427387904] of F32 is more than 2^64 bytes"},
    {"offsets_past_end", "tensor 'w': data_offsets end 1234 past the data section (16 bytes)"},
    {"offsets_begin_after_end", "tensor 'w': data_offsets begin 16 after end 8"},
    {"offsets_negative", "tensor 'w': data_offsets begin is -4, not a non-negative integer"},
    {"offsets_one_entry", "tensor 'w': data_offsets is not an array [begin, end]"},
    {"size_mismatch", "tensor 'w': data_offsets [0, 12] hold 12 bytes, but F32 [2, 2] needs 16"},
    {"overlap", "tensor 'b': data_offsets [4, 12] overlap tensor 'a' at [0, 8]"},
    {"overlap_contained", "tensor 'b': data_offsets [8, 12] overlap tensor 'a' at [0, 16]"},
    {"duplicate_names", "header names a key twice: duplicate object key"},
    {"metadata_non_string", "__metadata__ 'step': value is an integer, not a string"},
    {"metadata_not_object", "__metadata__ is a string, not an object of strings"},
};
#define N_EXPECTED (sizeof expected / sizeof expected[0])

static const char *bad_dir(char *buf, size_t n) {
    const char *root = getenv("CB_ROOT");
    snprintf(buf, n, "%s/tests/bad/safetensors", root ? root : ".");
    return buf;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

TEST(every_bad_file_is_rejected_for_its_reason) {
    char dir[4096];
    DIR *d = opendir(bad_dir(dir, sizeof dir));
    if (!d) {
        FAILF("cannot open %.200s", dir);
        return;
    }
    int seen[N_EXPECTED] = {0};
    int n_files = 0;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (!ends_with(ent->d_name, ".safetensors")) continue;
        n_files++;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        cb_safetensors st;
        cb_error e;
        cb_error_clear(&e);
        int rc = cb_safetensors_open(&st, path, &e);
        if (rc != CB_E_INVALID) {
            FAILF("%.200s: expected CB_E_INVALID (3), got %d: %.200s", ent->d_name, rc, e.msg);
            if (rc == CB_OK) cb_safetensors_close(&st);
            continue;
        }
        if (strcmp(e.where, path) != 0) FAILF("%.200s: where is '%.200s', expected the path '%.200s'", ent->d_name, e.where, path);
        size_t stem_len = strlen(ent->d_name) - strlen(".safetensors");
        int known = 0;
        for (size_t i = 0; i < N_EXPECTED; i++) {
            if (strlen(expected[i].stem) != stem_len || strncmp(expected[i].stem, ent->d_name, stem_len) != 0) continue;
            known = 1;
            seen[i] = 1;
            if (!strstr(e.msg, expected[i].reason))
                FAILF("%.200s: message '%.200s' lacks '%.200s'", ent->d_name, e.msg, expected[i].reason);
        }
        if (!known) FAILF("%.200s: not in this test's table of reasons (rejected with: %.200s)", ent->d_name, e.msg);
        /* the state is closed after a failure: closing again must be harmless */
        cb_safetensors_close(&st);
    }
    closedir(d);
    for (size_t i = 0; i < N_EXPECTED; i++)
        if (!seen[i]) FAILF("%.200s.safetensors missing from %.200s (run make_bad.py there)", expected[i].stem, dir);
    fprintf(stderr, "  %d hostile files rejected\n", n_files);
}

TEST(bad_file_through_stdin_names_stdin) {
    char dir[4096], path[8192];
    snprintf(path, sizeof path, "%s/size_mismatch.safetensors", bad_dir(dir, sizeof dir));
    if (!freopen(path, "rb", stdin)) {
        FAILF("cannot reopen stdin on %.200s", path);
        return;
    }
    cb_safetensors st;
    cb_error e;
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_open(&st, "-", &e));
    EXPECT_EQ_STR("<stdin>", e.where);
    EXPECT(strstr(e.msg, "hold 12 bytes") != NULL);
    if (!freopen("/dev/null", "rb", stdin)) FAILF("cannot reopen stdin on /dev/null");
}
