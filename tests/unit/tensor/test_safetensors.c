/* test_safetensors.c: cb_tensor, and safetensors files: round trips of every dtype,
 * layout (order, padding, alignment), determinism, metadata, f32 loading, failed
 * writes, a golden file, and the fixtures PyTorch's safetensors package wrote. */
#include "test.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/sha256.h"
#include "tensor/safetensors.h"

/* ------------------------------------------------------------ helpers */

static char tmp_dir[64];

static const char *tmp_path(const char *name, char *buf, size_t n) {
    if (!tmp_dir[0]) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/cbst.XXXXXX");
        if (!mkdtemp(tmp_dir)) tmp_dir[0] = '\0';
    }
    snprintf(buf, n, "%s/%s", tmp_dir, name);
    return buf;
}

__attribute__((destructor)) static void remove_tmp_dir(void) {
    if (!tmp_dir[0]) return;
    static const char *const names[] = {"all.safetensors", "a.safetensors", "b.safetensors", "small.safetensors",
                                        "meta.safetensors", "f32.safetensors", "hand.safetensors",
                                        "keep.safetensors", "golden.safetensors", "torch.safetensors",
                                        "mapped.bin"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i], path, sizeof path));
    rmdir(tmp_dir);
}

/* The whole file at path (malloc'd), or NULL with a test failure. */
static char *slurp(const char *path, size_t *len) {
    char *buf = NULL;
    cb_error e;
    if (cb_read_file(path, 0, &buf, len, &e) != CB_OK) FAILF("cannot read %.200s: %.200s", path, e.msg);
    return buf;
}

static uint64_t le64(const void *p) {
    const unsigned char *b = p;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
    return v;
}

static const char *root_path(const char *rel, char *buf, size_t n) {
    const char *root = getenv("CB_ROOT");
    snprintf(buf, n, "%s/%s", root ? root : ".", rel);
    return buf;
}

/* ------------------------------------------------------------ cb_tensor */

TEST(shape_numel_checks_overflow) {
    uint64_t n = 99;
    EXPECT_EQ_INT(0, cb_shape_numel(0, NULL, &n));
    EXPECT_EQ_INT(1, n);
    int64_t s1[] = {2, 3, 4};
    EXPECT_EQ_INT(0, cb_shape_numel(3, s1, &n));
    EXPECT_EQ_INT(24, n);
    int64_t s2[] = {0, 5};
    EXPECT_EQ_INT(0, cb_shape_numel(2, s2, &n));
    EXPECT_EQ_INT(0, n);
    int64_t big[] = {(int64_t)1 << 40, (int64_t)1 << 40};
    EXPECT_EQ_INT(-1, cb_shape_numel(2, big, &n));
    int64_t zero_then_big[] = {0, (int64_t)1 << 40, (int64_t)1 << 40};
    EXPECT_EQ_INT(-1, cb_shape_numel(3, zero_then_big, &n)); /* same verdict whatever the order */
    int64_t edge[] = {(int64_t)1 << 32, ((int64_t)1 << 32) - 1};
    EXPECT_EQ_INT(0, cb_shape_numel(2, edge, &n));
    EXPECT(n == (((uint64_t)1 << 32) - 1) << 32);
    int64_t neg[] = {3, -1};
    EXPECT_EQ_INT(-1, cb_shape_numel(2, neg, &n));
    int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    EXPECT_EQ_INT(-1, cb_shape_numel(9, nine, &n));
    size_t bytes;
    int64_t s3[] = {(int64_t)1 << 62};
    EXPECT_EQ_INT(0, cb_shape_nbytes(CB_DTYPE_U8, 1, s3, &bytes));
    EXPECT_EQ_INT(-1, cb_shape_nbytes(CB_DTYPE_F32, 1, s3, &bytes)); /* 2^64 bytes */
    char buf[64];
    EXPECT_EQ_STR("[2, 3, 4]", cb_shape_str(3, s1, buf, sizeof buf));
    EXPECT_EQ_STR("[]", cb_shape_str(0, NULL, buf, sizeof buf));
}

TEST(tensor_init_free_pairs) {
    cb_error e;
    cb_tensor t;
    int64_t shape[] = {2, 3};
    EXPECT_EQ_INT(CB_OK, cb_tensor_init(&t, CB_DTYPE_BF16, 2, shape, &e));
    EXPECT_EQ_INT(12, t.nbytes);
    EXPECT_EQ_INT(6, cb_tensor_numel(&t));
    EXPECT_EQ_INT(CB_TENSOR_OWNED, t.ownership);
    const unsigned char *bytes = t.data;
    int zero = 1;
    for (size_t i = 0; i < t.nbytes; i++) zero &= bytes[i] == 0;
    EXPECT(zero);
    EXPECT(cb_tensor_has_shape(&t, 2, shape));
    int64_t other[] = {3, 2};
    EXPECT(!cb_tensor_has_shape(&t, 2, other));
    cb_tensor_free(&t);
    EXPECT(t.data == NULL && t.nbytes == 0);
    cb_tensor_free(&t); /* twice is harmless */

    EXPECT_EQ_INT(CB_OK, cb_tensor_init(&t, CB_DTYPE_F32, 0, NULL, &e)); /* scalar */
    EXPECT_EQ_INT(4, t.nbytes);
    cb_tensor_free(&t);
    int64_t empty[] = {0, 7};
    EXPECT_EQ_INT(CB_OK, cb_tensor_init(&t, CB_DTYPE_F64, 2, empty, &e));
    EXPECT(t.nbytes == 0 && t.data != NULL);
    cb_tensor_free(&t);

    int64_t huge[] = {(int64_t)1 << 40, (int64_t)1 << 40};
    EXPECT_EQ_INT(CB_E_INVALID, cb_tensor_init(&t, CB_DTYPE_F32, 2, huge, &e));
    EXPECT(strstr(e.msg, "[1099511627776, 1099511627776]") != NULL);
    EXPECT(t.data == NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_tensor_init(&t, (enum cb_dtype)77, 1, shape, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_tensor_init(&t, CB_DTYPE_F32, 9, shape, &e));

    float buf[6] = {1, 2, 3, 4, 5, 6};
    EXPECT_EQ_INT(CB_OK, cb_tensor_init_borrowed(&t, CB_DTYPE_F32, 2, shape, buf, sizeof buf, &e));
    EXPECT(t.data == buf && t.ownership == CB_TENSOR_BORROWED);
    cb_tensor_free(&t); /* does not free buf */
    EXPECT(buf[5] == 6);
    EXPECT_EQ_INT(CB_E_INVALID, cb_tensor_init_borrowed(&t, CB_DTYPE_F32, 2, shape, buf, 20, &e));
    EXPECT(strstr(e.msg, "needs 24 bytes, got 20") != NULL);
}

TEST(tensor_owns_a_mapping) {
    char path[128];
    tmp_path("mapped.bin", path, sizeof path);
    float values[5] = {0, 1.5f, -2, 3, 4};
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_atomic_write(path, values, sizeof values, &e));
    FILE *fp = fopen(path, "rb");
    if (!fp) { FAILF("cannot open %.200s", path); return; }
    void *map = mmap(NULL, sizeof values, PROT_READ, MAP_PRIVATE, fileno(fp), 0);
    fclose(fp);
    if (map == MAP_FAILED) { FAILF("mmap failed"); return; }
    cb_tensor t;
    int64_t shape[] = {2};
    EXPECT_EQ_INT(CB_E_INVALID, cb_tensor_init_mapped(&t, CB_DTYPE_F32, 1, shape, map, sizeof values, 16, &e));
    EXPECT_EQ_INT(CB_OK, cb_tensor_init_mapped(&t, CB_DTYPE_F32, 1, shape, map, sizeof values, 4, &e));
    float got[2];
    memcpy(got, t.data, sizeof got);
    EXPECT(got[0] == 1.5f && got[1] == -2);
    EXPECT_EQ_INT(CB_TENSOR_MMAPPED, t.ownership);
    cb_tensor_free(&t);
    EXPECT(t.map_base == NULL);
}

/* ------------------------------------------------------------ round trips */

/* One tensor of every dtype, with a scalar and zero-size ones, data patterns
 * that differ per tensor. Storage is static so views stay valid. */
static struct {
    const char *name;
    enum cb_dtype dtype;
    int ndim;
    int64_t shape[3];
    unsigned char bytes[96];
} all_tensors[] = {
    {"w.f32", CB_DTYPE_F32, 2, {2, 3}, {0}},
    {"w.f16", CB_DTYPE_F16, 1, {5}, {0}},
    {"w.bf16", CB_DTYPE_BF16, 3, {1, 3, 1}, {0}},
    {"scalar.f64", CB_DTYPE_F64, 0, {0}, {0}},
    {"w.i8", CB_DTYPE_I8, 1, {7}, {0}},
    {"w.u8", CB_DTYPE_U8, 2, {3, 3}, {0}},
    {"w.i16", CB_DTYPE_I16, 1, {3}, {0}},
    {"w.u16", CB_DTYPE_U16, 1, {1}, {0}},
    {"w.i32", CB_DTYPE_I32, 2, {2, 2}, {0}},
    {"w.u32", CB_DTYPE_U32, 1, {3}, {0}},
    {"w.i64", CB_DTYPE_I64, 1, {2}, {0}},
    {"w.u64", CB_DTYPE_U64, 1, {1}, {0}},
    {"mask", CB_DTYPE_BOOL, 1, {5}, {0}},
    {"empty.f32", CB_DTYPE_F32, 2, {0, 4}, {0}},
    {"empty.u8", CB_DTYPE_U8, 1, {0}, {0}},
    {"a.scalar.u8", CB_DTYPE_U8, 0, {0}, {0}},
};
#define N_ALL (sizeof all_tensors / sizeof all_tensors[0])

static int add_all(cb_safetensors_writer *w, int reverse, cb_error *e) {
    for (size_t k = 0; k < N_ALL; k++) {
        size_t i = reverse ? N_ALL - 1 - k : k;
        for (size_t b = 0; b < sizeof all_tensors[i].bytes; b++)
            all_tensors[i].bytes[b] = (unsigned char)(i * 31 + b * 7 + 1);
        if (all_tensors[i].dtype == CB_DTYPE_BOOL)
            for (size_t b = 0; b < sizeof all_tensors[i].bytes; b++) all_tensors[i].bytes[b] &= 1;
        CB_TRY(cb_safetensors_writer_add(w, all_tensors[i].name, all_tensors[i].dtype, all_tensors[i].ndim,
                                         all_tensors[i].shape, all_tensors[i].bytes, e));
    }
    return CB_OK;
}

TEST(round_trip_every_dtype) {
    char path[128];
    tmp_path("all.safetensors", path, sizeof path);
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, add_all(&w, 0, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_meta(&w, "cb.format_version", "0.1", &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);

    cb_safetensors st;
    if (cb_safetensors_open(&st, path, &e) != CB_OK) { FAILF("open: %.300s", e.msg); return; }
    EXPECT(st.mapped);
    EXPECT_EQ_INT(N_ALL, st.n_tensors);
    for (size_t i = 0; i < N_ALL; i++) {
        cb_tensor t;
        if (cb_safetensors_get(&st, all_tensors[i].name, &t, &e) != CB_OK) { FAILF("%.300s", e.msg); continue; }
        size_t nbytes;
        cb_shape_nbytes(all_tensors[i].dtype, all_tensors[i].ndim, all_tensors[i].shape, &nbytes);
        if (t.dtype != all_tensors[i].dtype || !cb_tensor_has_shape(&t, all_tensors[i].ndim, all_tensors[i].shape) ||
            t.nbytes != nbytes || memcmp(t.data, all_tensors[i].bytes, nbytes) != 0)
            FAILF("tensor %s differs after the round trip", all_tensors[i].name);
        /* every tensor is aligned to its element size, in the file and in memory */
        if ((uintptr_t)t.data % cb_dtype_size(t.dtype) != 0) FAILF("tensor %s misaligned", all_tensors[i].name);
        EXPECT_EQ_INT(CB_TENSOR_BORROWED, t.ownership);
    }
    EXPECT_EQ_STR("0.1", cb_safetensors_meta(&st, "cb.format_version"));
    EXPECT(cb_safetensors_meta(&st, "format") == NULL);
    EXPECT(cb_safetensors_find(&st, "nothing") == NULL);
    cb_tensor t;
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_get(&st, "nothing", &t, &e));
    EXPECT_EQ_STR(path, e.where);
    EXPECT(strstr(e.msg, "no tensor 'nothing'") != NULL);
    /* iteration in name order */
    for (size_t i = 1; i < st.n_tensors; i++)
        if (strcmp(st.tensors[i - 1].name, st.tensors[i].name) >= 0) FAILF("entries not in name order at %zu", i);
    cb_safetensors_close(&st);
    cb_safetensors_close(&st); /* twice is harmless */
}

TEST(layout_order_padding_contiguity) {
    char path[128];
    tmp_path("all.safetensors", path, sizeof path);
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, add_all(&w, 0, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);
    size_t len;
    char *file = slurp(path, &len);
    if (!file) return;
    uint64_t header_len = le64(file);
    EXPECT_EQ_INT(0, (8 + header_len) % 64);
    EXPECT(file[8] == '{');
    size_t end = 8 + header_len;
    while (end > 8 && file[end - 1] == ' ') end--;
    EXPECT(file[end - 1] == '}');
    EXPECT(8 + header_len - end < 64);
    EXPECT(strstr(file + 8, "__metadata__") == NULL || strstr(file + 8, "__metadata__") > file + end);
    /* the Python library's order: 8-byte types, then 4, 2, 1 (by its dtype enum),
     * then names; offsets contiguous from 0 to the end of the file */
    static const char *const want_order[] = {"w.u64", "w.i64", "scalar.f64", "empty.f32", "w.f32", "w.u32",
                                             "w.i32", "w.bf16", "w.f16", "w.u16", "w.i16", "w.i8",
                                             "a.scalar.u8", "empty.u8", "w.u8", "mask"};
    json_error_t jerr;
    json_t *header = json_loadb(file + 8, header_len, 0, &jerr);
    if (!header) { FAILF("header: %.200s", jerr.text); free(file); return; }
    size_t i = 0;
    uint64_t offset = 0;
    const char *key;
    json_t *value;
    json_object_foreach(header, key, value) {
        if (i < N_ALL && strcmp(key, want_order[i]) != 0) FAILF("header member %zu is %s, expected %s", i, key, want_order[i]);
        json_int_t begin = json_integer_value(json_array_get(json_object_get(value, "data_offsets"), 0));
        json_int_t stop = json_integer_value(json_array_get(json_object_get(value, "data_offsets"), 1));
        if ((uint64_t)begin != offset) FAILF("%s starts at %lld, expected %llu", key, (long long)begin, (unsigned long long)offset);
        offset = (uint64_t)stop;
        i++;
    }
    EXPECT_EQ_INT(N_ALL, i);
    EXPECT_EQ_INT(len, 8 + header_len + offset);
    json_decref(header);
    free(file);
}

TEST(exact_bytes_of_a_small_file) {
    char path[128];
    tmp_path("small.safetensors", path, sizeof path);
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    float data[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[] = {1, 2, 3};
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "attn.0", CB_DTYPE_F32, 3, shape, data, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);
    size_t len;
    char *file = slurp(path, &len);
    if (!file) return;
    const char *json = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    EXPECT_EQ_INT(8 + 120 + 24, len);
    EXPECT_EQ_INT(120, le64(file));
    EXPECT(memcmp(file + 8, json, strlen(json)) == 0);
    int spaces = 1;
    for (size_t i = 8 + strlen(json); i < 128; i++) spaces &= file[i] == ' ';
    EXPECT(spaces);
    EXPECT(memcmp(file + 128, data, sizeof data) == 0);
    free(file);
}

TEST(same_inputs_same_bytes) {
    char a[128], b[128];
    tmp_path("a.safetensors", a, sizeof a);
    tmp_path("b.safetensors", b, sizeof b);
    cb_error e;
    cb_safetensors_writer w1, w2;
    cb_safetensors_writer_init(&w1);
    cb_safetensors_writer_init(&w2);
    EXPECT_EQ_INT(CB_OK, add_all(&w1, 0, &e));
    EXPECT_EQ_INT(CB_OK, add_all(&w2, 1, &e)); /* other order of adds */
    cb_safetensors_writer_meta(&w1, "cb.plan_sha256", "abc", &e);
    cb_safetensors_writer_meta(&w1, "format", "pt", &e);
    cb_safetensors_writer_meta(&w2, "format", "pt", &e);
    cb_safetensors_writer_meta(&w2, "cb.plan_sha256", "old", &e);
    cb_safetensors_writer_meta(&w2, "cb.plan_sha256", "abc", &e); /* replaced */
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w1, a, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w2, b, &e));
    cb_safetensors_writer_free(&w1);
    cb_safetensors_writer_free(&w2);
    size_t la, lb;
    char *fa = slurp(a, &la), *fb = slurp(b, &lb);
    if (fa && fb) {
        EXPECT_EQ_INT(la, lb);
        EXPECT(la == lb && memcmp(fa, fb, la) == 0);
        /* metadata first, keys sorted */
        const char *head = "{\"__metadata__\":{\"cb.plan_sha256\":\"abc\",\"format\":\"pt\"},";
        EXPECT(strncmp(fa + 8, head, strlen(head)) == 0);
    }
    free(fa);
    free(fb);
}

TEST(metadata_and_stdin) {
    char path[128];
    tmp_path("meta.safetensors", path, sizeof path);
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_meta(&w, "format", "pt", &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_meta(&w, "cb.note", "π ≈ 3.14159, \"quoted\"\n", &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_meta(&w, "cb.empty", "", &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_meta(&w, "bad", "\xff\xfe", &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_meta(&w, "\xc3", "x", &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e)); /* metadata, no tensors */
    cb_safetensors_writer_free(&w);

    if (!freopen(path, "rb", stdin)) { FAILF("cannot reopen stdin"); return; }
    cb_safetensors st;
    if (cb_safetensors_open(&st, "-", &e) != CB_OK) { FAILF("open stdin: %.300s", e.msg); return; }
    EXPECT(!st.mapped);
    EXPECT(strcmp("<stdin>", st.path) == 0);
    EXPECT_EQ_INT(0, st.n_tensors);
    EXPECT_EQ_INT(3, st.n_metadata);
    EXPECT_EQ_STR("cb.empty", st.metadata_keys[0]);
    EXPECT_EQ_STR("cb.note", st.metadata_keys[1]);
    EXPECT_EQ_STR("format", st.metadata_keys[2]);
    EXPECT_EQ_STR("π ≈ 3.14159, \"quoted\"\n", cb_safetensors_meta(&st, "cb.note"));
    EXPECT_EQ_STR("", cb_safetensors_meta(&st, "cb.empty"));
    EXPECT_EQ_STR("pt", cb_safetensors_meta(&st, "format"));
    cb_safetensors_close(&st);
    if (!freopen("/dev/null", "rb", stdin)) FAILF("cannot reopen stdin on /dev/null");

    /* an empty file with no metadata: {} */
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);
    size_t len;
    char *file = slurp(path, &len);
    if (file) {
        EXPECT_EQ_INT(64, len);
        EXPECT(strncmp(file + 8, "{}  ", 4) == 0);
    }
    free(file);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_open(&st, path, &e));
    EXPECT(st.n_tensors == 0 && st.n_metadata == 0 && st.data_size == 0);
    cb_safetensors_close(&st);
}

TEST(read_f32_converts_and_checks) {
    char path[128];
    tmp_path("f32.safetensors", path, sizeof path);
    cb_error e;
    float f32[4] = {1.5f, -2.0f, 0.1f, 65504.0f};
    uint16_t bf16[4], f16[4];
    double f64[4] = {1.5, -2.0, 0.1, 1e300};
    int64_t i64[4] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++) {
        bf16[i] = cb_f32_to_bf16(f32[i]);
        f16[i] = cb_f32_to_f16(f32[i]);
    }
    int64_t s22[] = {2, 2}, s4[] = {4};
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "f32", CB_DTYPE_F32, 2, s22, f32, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "bf16", CB_DTYPE_BF16, 2, s22, bf16, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "f16", CB_DTYPE_F16, 1, s4, f16, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "f64", CB_DTYPE_F64, 1, s4, f64, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "i64", CB_DTYPE_I64, 1, s4, i64, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);

    cb_safetensors st;
    if (cb_safetensors_open(&st, path, &e) != CB_OK) { FAILF("open: %.300s", e.msg); return; }
    float got[4];
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "f32", got, 4, &e));
    EXPECT(memcmp(got, f32, sizeof got) == 0);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "bf16", got, 4, &e));
    EXPECT(got[0] == 1.5f && got[1] == -2.0f && got[2] == 0.10009765625f && got[3] == 65536.0f);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "f16", got, 4, &e));
    EXPECT(got[0] == 1.5f && got[1] == -2.0f && got[2] == 0.0999755859375f && got[3] == 65504.0f);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "f64", got, 4, &e));
    EXPECT(got[0] == 1.5f && got[1] == -2.0f && got[2] == 0.1f && isinf(got[3]));

    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_read_f32(&st, "i64", got, 4, &e));
    EXPECT_EQ_STR(path, e.where);
    EXPECT(strstr(e.msg, "tensor 'i64': dtype I64 cannot be read as F32") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_read_f32(&st, "f32", got, 3, &e));
    EXPECT(strstr(e.msg, "tensor 'f32': shape [2, 2] has 4 elements, expected 3") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_read_f32(&st, "missing", got, 4, &e));
    EXPECT(strstr(e.msg, "no tensor 'missing'") != NULL);

    EXPECT_EQ_INT(CB_OK, cb_safetensors_check_shape(&st, "bf16", 2, s22, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_check_shape(&st, "bf16", 1, s4, &e));
    EXPECT(strstr(e.msg, "tensor 'bf16': shape [2, 2], expected [4]") != NULL);
    cb_safetensors_close(&st);
}

/* Write a file from a header and a data section given as they are. */
static int write_raw(const char *path, const char *header, const void *data, size_t n) {
    size_t hl = strlen(header);
    unsigned char *buf = malloc(8 + hl + n);
    if (!buf) return -1;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    memcpy(buf + 8 + hl, data, n);
    cb_error e;
    int rc = cb_atomic_write(path, buf, 8 + hl + n, &e);
    free(buf);
    return rc;
}

TEST(other_writers_files_misaligned_and_with_gaps) {
    /* an F32 tensor at an odd offset, a BF16 one after a gap, and a header whose
     * length is not a multiple of 8: legal, so it must read, without unaligned access */
    char path[128];
    tmp_path("hand.safetensors", path, sizeof path);
    const char *header = "{\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                         "\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[1,13]},"
                         "\"c\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[17,21]},"
                         "\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[5,5]}}";
    unsigned char data[24] = {0};
    float a[3] = {0.25f, -1.0f, 1e-20f};
    uint16_t c[2] = {cb_f32_to_bf16(3.0f), cb_f32_to_bf16(-0.5f)};
    data[0] = 42;
    memcpy(data + 1, a, sizeof a);
    memcpy(data + 17, c, sizeof c);
    EXPECT_EQ_INT(CB_OK, write_raw(path, header, data, sizeof data));
    cb_safetensors st;
    cb_error e;
    if (cb_safetensors_open(&st, path, &e) != CB_OK) { FAILF("open: %.300s", e.msg); return; }
    EXPECT_EQ_INT(4, st.n_tensors);
    float got[3];
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "a", got, 3, &e));
    EXPECT(memcmp(got, a, sizeof a) == 0);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "c", got, 2, &e));
    EXPECT(got[0] == 3.0f && got[1] == -0.5f);
    cb_tensor t;
    EXPECT_EQ_INT(CB_OK, cb_safetensors_get(&st, "b", &t, &e));
    EXPECT(t.nbytes == 1 && *(unsigned char *)t.data == 42);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_get(&st, "z", &t, &e));
    EXPECT(t.nbytes == 0 && t.ndim == 1 && t.shape[0] == 0);
    cb_safetensors_close(&st);
}

TEST(writer_rejects_bad_tensors) {
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    float x[4] = {0};
    int64_t s[] = {4}, neg[] = {-4}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 4};
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "__metadata__", CB_DTYPE_F32, 1, s, x, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "bad\xff", CB_DTYPE_F32, 1, s, x, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "neg", CB_DTYPE_F32, 1, neg, x, &e));
    EXPECT(strstr(e.msg, "tensor 'neg': shape [-4]") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "nine", CB_DTYPE_F32, 9, nine, x, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "dtype", (enum cb_dtype)CB_DTYPE_COUNT, 1, s, x, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_add(&w, "nodata", CB_DTYPE_F32, 1, s, NULL, &e));
    EXPECT_EQ_INT(0, w.n_tensors);
    /* the same name twice, with dtypes that do not sort side by side */
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "w", CB_DTYPE_F32, 1, s, x, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "v", CB_DTYPE_U8, 1, s, x, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add(&w, "w", CB_DTYPE_U8, 1, s, x, &e));
    char path[128];
    tmp_path("keep.safetensors", path, sizeof path);
    unlink(path);
    EXPECT_EQ_INT(CB_E_INVALID, cb_safetensors_writer_write(&w, path, &e));
    EXPECT(strstr(e.msg, "tensor 'w' added twice") != NULL);
    EXPECT(access(path, F_OK) != 0); /* nothing written */
    cb_safetensors_writer_free(&w);
}

TEST(failed_write_keeps_the_old_file) {
    char path[128];
    tmp_path("keep.safetensors", path, sizeof path);
    cb_error e;
    float small[2] = {7, 8};
    int64_t s2[] = {2};
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    cb_safetensors_writer_add(&w, "old", CB_DTYPE_F32, 1, s2, small, &e);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    cb_safetensors_writer_free(&w);
    size_t old_len;
    char *old = slurp(path, &old_len);

    /* a file-size limit makes the disk "full" after 1 MB */
    size_t n = (size_t)1 << 20; /* 4 MB of f32 */
    float *big = calloc(n, sizeof *big);
    struct rlimit saved, limit;
    if (!big || getrlimit(RLIMIT_FSIZE, &saved) != 0) { FAILF("setup"); free(big); free(old); return; }
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    limit = saved;
    limit.rlim_cur = (rlim_t)1 << 20;
    if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < limit.rlim_cur) limit.rlim_cur = saved.rlim_max;
    int64_t sn[] = {(int64_t)n};
    cb_safetensors_writer_init(&w);
    cb_safetensors_writer_add(&w, "new", CB_DTYPE_F32, 1, sn, big, &e);
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) { FAILF("setrlimit"); }
    int rc = cb_safetensors_writer_write(&w, path, &e);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, old_handler);
    cb_safetensors_writer_free(&w);
    EXPECT_EQ_INT(CB_E_IO, rc);
    EXPECT_EQ_STR(path, e.where);
    EXPECT(strstr(e.msg, "write failed") != NULL);
    size_t now_len;
    char *now = slurp(path, &now_len);
    EXPECT(old && now && old_len == now_len && memcmp(old, now, old_len) == 0);
    free(old);
    free(now);
    free(big);

    /* no such directory */
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_E_IO, cb_safetensors_writer_write(&w, "/nonexistent-dir/x.safetensors", &e));
    cb_safetensors_writer_free(&w);
    cb_safetensors st;
    EXPECT_EQ_INT(CB_E_IO, cb_safetensors_open(&st, "/nonexistent-dir/x.safetensors", &e));
    EXPECT_EQ_INT(CB_E_IO, cb_safetensors_open(&st, "/tmp", &e));
}

/* ------------------------------------------------------------ golden file */

/* The tensors of tests/reference/safetensors/caramba_golden.safetensors; the same
 * numbers are in tests/reference/check_safetensors_readable.py. */
static int add_golden(cb_safetensors_writer *w, cb_error *e) {
    static float tok[12];
    static const float bf16_src[4] = {1.0f, -2.5f, 0.1f, 3.0e38f};
    static const float f16_src[4] = {0.1f, -65504.0f, 6e-8f, 1e-3f};
    static uint16_t bf16[4], f16[4];
    static const double scalar = 3.5;
    static const int64_t ids[3] = {0, -1, (int64_t)1 << 40};
    static const uint8_t mask[3] = {1, 0, 1}, bytes[5] = {0, 1, 127, 128, 255};
    static const int8_t i8[2] = {-128, 127};
    static const int16_t i16[2] = {-32768, 32767};
    static const uint16_t u16[2] = {0, 65535};
    static const int32_t i32[2] = {INT32_MIN, INT32_MAX};
    static const uint32_t u32[2] = {0, UINT32_MAX};
    static const uint64_t u64[1] = {UINT64_MAX};
    for (int i = 0; i < 12; i++) tok[i] = (float)i * 0.25f - 1.0f;
    cb_f32_to_bf16_n(bf16, bf16_src, 4);
    cb_f32_to_f16_n(f16, f16_src, 4);
    int64_t s34[] = {3, 4}, s4[] = {4}, s22[] = {2, 2}, s3[] = {3}, s5[] = {5}, s2[] = {2}, s1[] = {1}, s04[] = {0, 4};
    CB_TRY(cb_safetensors_writer_add(w, "embed.tok", CB_DTYPE_F32, 2, s34, tok, e));
    CB_TRY(cb_safetensors_writer_add(w, "norm.weight", CB_DTYPE_BF16, 1, s4, bf16, e));
    CB_TRY(cb_safetensors_writer_add(w, "half", CB_DTYPE_F16, 2, s22, f16, e));
    CB_TRY(cb_safetensors_writer_add(w, "scalar", CB_DTYPE_F64, 0, NULL, &scalar, e));
    CB_TRY(cb_safetensors_writer_add(w, "ids", CB_DTYPE_I64, 1, s3, ids, e));
    CB_TRY(cb_safetensors_writer_add(w, "mask", CB_DTYPE_BOOL, 1, s3, mask, e));
    CB_TRY(cb_safetensors_writer_add(w, "bytes", CB_DTYPE_U8, 1, s5, bytes, e));
    CB_TRY(cb_safetensors_writer_add(w, "i8", CB_DTYPE_I8, 1, s2, i8, e));
    CB_TRY(cb_safetensors_writer_add(w, "i16", CB_DTYPE_I16, 1, s2, i16, e));
    CB_TRY(cb_safetensors_writer_add(w, "u16", CB_DTYPE_U16, 1, s2, u16, e));
    CB_TRY(cb_safetensors_writer_add(w, "i32", CB_DTYPE_I32, 1, s2, i32, e));
    CB_TRY(cb_safetensors_writer_add(w, "u32", CB_DTYPE_U32, 1, s2, u32, e));
    CB_TRY(cb_safetensors_writer_add(w, "u64", CB_DTYPE_U64, 1, s1, u64, e));
    CB_TRY(cb_safetensors_writer_add(w, "empty", CB_DTYPE_F32, 2, s04, tok, e));
    CB_TRY(cb_safetensors_writer_meta(w, "format", "pt", e));
    CB_TRY(cb_safetensors_writer_meta(w, "cb.format_version", "0.1", e));
    CB_TRY(cb_safetensors_writer_meta(w, "cb.note", "golden file, π ≈ 3.14159", e));
    return CB_OK;
}

/* The digest recorded in tests/reference/safetensors/caramba_golden.verified.txt: that of
 * the golden file Hugging Face's safetensors library read and accepted there. */
static int verified_digest(char hex[65]) {
    char path[4096];
    root_path("tests/reference/safetensors/caramba_golden.verified.txt", path, sizeof path);
    size_t n;
    char *text = slurp(path, &n);
    const char *at = text ? strstr(text, "\nsha256 ") : NULL;
    int ok = at && strlen(at + 8) >= 64;
    if (ok) {
        memcpy(hex, at + 8, 64);
        hex[64] = 0;
    }
    free(text);
    return ok;
}

/* caramba's writer gives the golden file byte for byte, and that file is the one the
 * safetensors library verified (its digest). CB_UPDATE_GOLDEN=1 writes what the writer
 * gives now beside it (.new) and still fails: a new golden file must be checked with
 * tests/reference/check_safetensors_readable.py and its digest recorded before it replaces
 * the old one. */
TEST(golden_file_is_byte_identical) {
    char golden[4096], path[128];
    root_path("tests/reference/safetensors/caramba_golden.safetensors", golden, sizeof golden);
    tmp_path("golden.safetensors", path, sizeof path);
    cb_error e;
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    EXPECT_EQ_INT(CB_OK, add_golden(&w, &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, path, &e));
    if (getenv("CB_UPDATE_GOLDEN")) {
        char fresh[4200];
        snprintf(fresh, sizeof fresh, "%s.new", golden);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, fresh, &e));
        FAILF("CB_UPDATE_GOLDEN: wrote %.300s; check it with tests/reference/check_safetensors_readable.py, "
              "then replace the golden file and its digest in caramba_golden.verified.txt", fresh);
    }
    cb_safetensors_writer_free(&w);
    size_t la, lb;
    char *want = slurp(golden, &la);
    char *got = slurp(path, &lb);
    if (!want || !got) FAILF("cannot read %.300s or %.100s", golden, path);
    if (want && got) {
        EXPECT_EQ_INT(la, lb);
        EXPECT(la == lb && memcmp(want, got, la) == 0);
        char hex[65], recorded[65];
        cb_sha256_hex(want, la, hex);
        if (!verified_digest(recorded)) FAILF("no sha256 line in caramba_golden.verified.txt");
        else if (strcmp(hex, recorded) != 0)
            FAILF("the golden file's sha256 %s is not the one the safetensors library verified (%s)", hex, recorded);
    }
    free(want);
    free(got);
    /* and it reads back with the expected values */
    cb_safetensors st;
    if (cb_safetensors_open(&st, golden, &e) != CB_OK) { FAILF("open golden: %.300s", e.msg); return; }
    float tok[12], half[4];
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "embed.tok", tok, 12, &e));
    EXPECT(tok[0] == -1.0f && tok[11] == 1.75f);
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "half", half, 4, &e));
    EXPECT(half[1] == -65504.0f && half[2] == 5.9604644775390625e-08f);
    EXPECT_EQ_STR("pt", cb_safetensors_meta(&st, "format"));
    cb_safetensors_close(&st);
}

/* ------------------------------------------------------------ PyTorch fixtures */

#define FIXTURE_HINT "run tests/reference/make_safetensors_fixtures.py where torch and safetensors are installed"

static int open_fixture(const char *name, cb_safetensors *st, char *path, size_t n) {
    char rel[256];
    snprintf(rel, sizeof rel, "tests/reference/safetensors/%s", name);
    root_path(rel, path, n);
    if (access(path, F_OK) != 0) return 0;
    cb_error e;
    if (cb_safetensors_open(st, path, &e) != CB_OK) {
        FAILF("%.200s: %.300s", path, e.msg);
        return -1;
    }
    return 1;
}

static void expect_u16_bits(const cb_safetensors *st, const char *name, const float *src, size_t n,
                            uint16_t (*convert)(float)) {
    cb_tensor t;
    cb_error e;
    if (cb_safetensors_get(st, name, &t, &e) != CB_OK) { FAILF("%.300s", e.msg); return; }
    if (t.nbytes != 2 * n) { FAILF("%s: %zu bytes, expected %zu", name, t.nbytes, 2 * n); return; }
    for (size_t i = 0; i < n; i++) {
        uint16_t file_bits, ours = convert(src[i]);
        memcpy(&file_bits, (const char *)t.data + 2 * i, 2);
        if (file_bits != ours) FAILF("%s[%zu]: PyTorch wrote %04x for %.9g, caramba rounds to %04x", name, i, file_bits, src[i], ours);
    }
}

TEST(reads_pytorch_fixture_mixed) {
    cb_safetensors st;
    char path[4096];
    int have = open_fixture("torch_mixed.safetensors", &st, path, sizeof path);
    if (have == 0) SKIP("%.300s absent: " FIXTURE_HINT, path);
    if (have < 0) return;
    cb_error e;
    EXPECT_EQ_INT(6, st.n_tensors);
    EXPECT_EQ_STR("pt", cb_safetensors_meta(&st, "format"));
    float a[6];
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "a.f32", a, 6, &e));
    for (int i = 0; i < 6; i++) EXPECT_NEAR(i * 0.5 - 1.0, a[i], 0);
    int64_t s23[] = {2, 3};
    EXPECT_EQ_INT(CB_OK, cb_safetensors_check_shape(&st, "a.f32", 2, s23, &e));
    /* PyTorch's rounding of f32 to bf16 and f16, bit for bit against ours */
    static const float b_src[6] = {1.0f, -2.5f, 0.1f, 1.00390625f, 1.01171875f, 3.0e38f};
    static const float c_src[6] = {0.1f, -65504.0f, 6e-8f, 1e-3f, 65520.0f, 1e-8f};
    expect_u16_bits(&st, "b.bf16", b_src, 6, cb_f32_to_bf16);
    expect_u16_bits(&st, "c.f16", c_src, 6, cb_f32_to_f16);
    cb_tensor t;
    if (cb_safetensors_get(&st, "d.i64", &t, &e) == CB_OK) {
        int64_t d[4], want[4] = {0, -1, (int64_t)1 << 40, -((int64_t)1 << 62)};
        EXPECT(t.dtype == CB_DTYPE_I64 && t.nbytes == sizeof d);
        if (t.nbytes == sizeof d) memcpy(d, t.data, sizeof d);
        EXPECT(t.nbytes == sizeof d && memcmp(d, want, sizeof d) == 0);
    } else {
        FAILF("%.300s", e.msg);
    }
    float scalar;
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "e.scalar", &scalar, 1, &e));
    EXPECT(scalar == 3.5f);
    EXPECT(cb_safetensors_find(&st, "e.scalar") && cb_safetensors_find(&st, "e.scalar")->ndim == 0);
    int64_t s04[] = {0, 4};
    EXPECT_EQ_INT(CB_OK, cb_safetensors_check_shape(&st, "f.empty", 2, s04, &e));

    /* Written again by caramba: the same header text (padding aside) and data. */
    char out[128];
    tmp_path("torch.safetensors", out, sizeof out);
    cb_safetensors_writer w;
    cb_safetensors_writer_init(&w);
    for (size_t i = 0; i < st.n_tensors; i++) {
        cb_safetensors_view(&st, i, &t);
        EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_add_tensor(&w, st.tensors[i].name, &t, &e));
    }
    for (size_t i = 0; i < st.n_metadata; i++)
        EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_meta(&w, st.metadata_keys[i], st.metadata_values[i], &e));
    EXPECT_EQ_INT(CB_OK, cb_safetensors_writer_write(&w, out, &e));
    cb_safetensors_writer_free(&w);
    size_t lt, lo;
    char *theirs = slurp(path, &lt), *ours = slurp(out, &lo);
    if (theirs && ours) {
        size_t ht = (size_t)le64(theirs), ho = (size_t)le64(ours);
        size_t jt = ht, jo = ho;
        while (jt && theirs[8 + jt - 1] == ' ') jt--;
        while (jo && ours[8 + jo - 1] == ' ') jo--;
        if (jt != jo || memcmp(theirs + 8, ours + 8, jt) != 0)
            FAILF("header differs:\n    theirs %.*s\n    ours   %.*s", (int)(jt < 400 ? jt : 400), theirs + 8,
                  (int)(jo < 400 ? jo : 400), ours + 8);
        EXPECT(lt - 8 - ht == lo - 8 - ho && memcmp(theirs + 8 + ht, ours + 8 + ho, lt - 8 - ht) == 0);
    }
    free(theirs);
    free(ours);
    cb_safetensors_close(&st);
}

TEST(reads_pytorch_fixture_without_metadata) {
    cb_safetensors st;
    char path[4096];
    int have = open_fixture("torch_nometa.safetensors", &st, path, sizeof path);
    if (have == 0) SKIP("%.300s absent: " FIXTURE_HINT, path);
    if (have < 0) return;
    cb_error e;
    EXPECT_EQ_INT(1, st.n_tensors);
    EXPECT_EQ_INT(0, st.n_metadata);
    int64_t s32[] = {3, 2};
    EXPECT_EQ_INT(CB_OK, cb_safetensors_check_shape(&st, "w", 2, s32, &e));
    float src[6];
    for (int i = 0; i < 6; i++) src[i] = (float)i / 3.0f;
    expect_u16_bits(&st, "w", src, 6, cb_f32_to_bf16);
    float got[6];
    EXPECT_EQ_INT(CB_OK, cb_safetensors_read_f32(&st, "w", got, 6, &e));
    for (int i = 0; i < 6; i++) EXPECT(got[i] == cb_bf16_to_f32(cb_f32_to_bf16(src[i])));
    cb_safetensors_close(&st);
}
