/* fixture_read.h: a minimal, test-only safetensors reader for the PyTorch fixtures under
 * tests/reference/ (header-only, static functions). It checks the header length, every tensor's
 * dtype, shape and byte range against the file, and returns aligned copies that fx_close frees.
 * Meant to be replaced by the library's own reader (lib/tensor/safetensors.h) once it lands. */
#ifndef CB_TESTS_FIXTURE_READ_H
#define CB_TESTS_FIXTURE_READ_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_MAX_COPIES 64

typedef struct {
    unsigned char *bytes; // the whole file
    size_t size;
    size_t data_start;    // 8 + header length
    json_t *header;
    void *copies[FX_MAX_COPIES];
    int n_copies;
    char why[1400];        // what went wrong, for the test's failure line
} fx_file;

static inline void fx_close(fx_file *f) {
    for (int i = 0; i < f->n_copies; i++) free(f->copies[i]);
    f->n_copies = 0;
    json_decref(f->header);
    f->header = NULL;
    free(f->bytes);
    f->bytes = NULL;
}

/* Opens tests/reference/REL under $CB_ROOT (tests/run.sh sets it) or the current directory.
 * Returns 0, or -1 with f->why filled. */
static inline int fx_open(fx_file *f, const char *rel) {
    memset(f, 0, sizeof *f);
    const char *root = getenv("CB_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/%s", root && *root ? root : ".", rel);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        snprintf(f->why, sizeof f->why, "%s: cannot open", path);
        return -1;
    }
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->bytes = size > 0 ? malloc((size_t)size) : NULL;
    if (!f->bytes || fread(f->bytes, 1, (size_t)size, fp) != (size_t)size) {
        fclose(fp);
        snprintf(f->why, sizeof f->why, "%s: cannot read", path);
        fx_close(f);
        return -1;
    }
    fclose(fp);
    f->size = (size_t)size;
    uint64_t header_len = 0;
    for (int i = 7; i >= 0 && f->size >= 8; i--) header_len = header_len << 8 | f->bytes[i];
    if (f->size < 8 || header_len > f->size - 8) {
        snprintf(f->why, sizeof f->why, "%s: header length out of range", path);
        fx_close(f);
        return -1;
    }
    json_error_t err;
    f->header = json_loadb((const char *)f->bytes + 8, (size_t)header_len, 0, &err);
    if (!json_is_object(f->header)) {
        snprintf(f->why, sizeof f->why, "%s: header is not a JSON object: %s", path, err.text);
        fx_close(f);
        return -1;
    }
    f->data_start = 8 + (size_t)header_len;
    return 0;
}

static inline size_t fx_dtype_size(const char *dtype) {
    if (!strcmp(dtype, "F32") || !strcmp(dtype, "I32")) return 4;
    if (!strcmp(dtype, "F64") || !strcmp(dtype, "I64")) return 8;
    return 0;
}

/* A copy of tensor NAME, which must have dtype DTYPE and, when want_elems != 0, that many
 * elements; *n_elems (if non-NULL) gets its element count. NULL with f->why filled on mismatch. */
static inline void *fx_tensor(fx_file *f, const char *name, const char *dtype, size_t want_elems, size_t *n_elems) {
    json_t *t = json_object_get(f->header, name);
    json_t *shape = json_object_get(t, "shape"), *offsets = json_object_get(t, "data_offsets");
    const char *got_dtype = json_string_value(json_object_get(t, "dtype"));
    if (!t || !json_is_array(shape) || json_array_size(offsets) != 2 || !got_dtype) {
        snprintf(f->why, sizeof f->why, "tensor %s: missing or malformed", name);
        return NULL;
    }
    if (strcmp(got_dtype, dtype) != 0) {
        snprintf(f->why, sizeof f->why, "tensor %s: dtype %s, expected %s", name, got_dtype, dtype);
        return NULL;
    }
    size_t elems = 1;
    for (size_t i = 0; i < json_array_size(shape); i++) {
        json_int_t d = json_integer_value(json_array_get(shape, i));
        if (!json_is_integer(json_array_get(shape, i)) || d < 0) {
            snprintf(f->why, sizeof f->why, "tensor %s: bad shape", name);
            return NULL;
        }
        elems *= (size_t)d;
    }
    json_int_t begin = json_integer_value(json_array_get(offsets, 0));
    json_int_t end = json_integer_value(json_array_get(offsets, 1));
    size_t esize = fx_dtype_size(dtype);
    if (begin < 0 || end < begin || (size_t)(end - begin) != elems * esize ||
        (size_t)end > f->size - f->data_start) {
        snprintf(f->why, sizeof f->why, "tensor %s: byte range [%lld,%lld) does not fit %zu elements",
                 name, (long long)begin, (long long)end, elems);
        return NULL;
    }
    if (want_elems && elems != want_elems) {
        snprintf(f->why, sizeof f->why, "tensor %s: %zu elements, expected %zu", name, elems, want_elems);
        return NULL;
    }
    if (f->n_copies == FX_MAX_COPIES) {
        snprintf(f->why, sizeof f->why, "tensor %s: too many copies open", name);
        return NULL;
    }
    void *copy = malloc(elems * esize + 1);
    if (!copy) {
        snprintf(f->why, sizeof f->why, "tensor %s: out of memory", name);
        return NULL;
    }
    // the fixtures are little-endian, as is every machine caramba runs on
    memcpy(copy, f->bytes + f->data_start + begin, elems * esize);
    f->copies[f->n_copies++] = copy;
    if (n_elems) *n_elems = elems;
    return copy;
}

#endif
