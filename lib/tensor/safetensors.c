/* safetensors.c: the safetensors reader (every header field checked before any
 * size from the file is trusted) and writer (the order and padding of the Python
 * library, data aligned, atomic replace). */
#include "tensor/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_file.h"

#define META_KEY "__metadata__"

/* ------------------------------------------------------------------ reader */

void cb_safetensors_close(cb_safetensors *st) {
    if (!st) return;
    if (st->file) {
        if (st->mapped) munmap(st->file, st->file_size);
        else free(st->file);
    }
    free(st->tensors);
    free(st->metadata_keys);
    free(st->metadata_values);
    if (st->header) json_decref(st->header);
    memset(st, 0, sizeof *st);
}

static int entry_name_cmp(const void *a, const void *b) {
    return strcmp(((const cb_safetensors_entry *)a)->name, ((const cb_safetensors_entry *)b)->name);
}

/* Orders entries by where their bytes start (then end), for the overlap check. */
static int entry_offset_cmp(const void *a, const void *b) {
    const cb_safetensors_entry *x = *(const cb_safetensors_entry *const *)a;
    const cb_safetensors_entry *y = *(const cb_safetensors_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names in messages are cut, so that a hostile 1 MB name still gives one line. */
#define NAME_FMT "'%.200s'"

/* A JSON integer >= 0 into *out (0), or -1. */
static int json_nonneg(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "a JSON value";
}

static int parse_entry(const cb_safetensors *st, const char *name, json_t *v, cb_safetensors_entry *en,
                       cb_error *e) {
    const char *where = st->path;
    memset(en, 0, sizeof *en);
    en->name = name;
    if (!json_is_object(v))
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": is %s, not an object", name, json_kind(v));

    json_t *dtype = json_object_get(v, "dtype");
    if (!dtype) return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": dtype missing", name);
    if (!json_is_string(dtype))
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": dtype is %s, not a string", name, json_kind(dtype));
    if (!cb_dtype_from_name(json_string_value(dtype), &en->dtype))
        return cb_fail(e, CB_E_INVALID, where,
                       "tensor " NAME_FMT ": dtype '%.40s' unknown (known: F32 F16 BF16 F64 I8 U8 I16 U16 I32 U32 "
                       "I64 U64 BOOL)", name, json_string_value(dtype));

    json_t *shape = json_object_get(v, "shape");
    if (!shape) return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape missing", name);
    if (!json_is_array(shape))
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape is %s, not an array", name, json_kind(shape));
    size_t ndim = json_array_size(shape);
    if (ndim > CB_TENSOR_MAX_DIMS)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape has %zu dimensions, more than %d", name,
                       ndim, CB_TENSOR_MAX_DIMS);
    en->ndim = (int)ndim;
    for (size_t i = 0; i < ndim; i++) {
        json_t *s = json_array_get(shape, i);
        uint64_t dim;
        if (json_nonneg(s, &dim) != 0) {
            if (json_is_integer(s))
                return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape[%zu] is %lld, not a non-negative integer",
                               name, i, (long long)json_integer_value(s));
            return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape[%zu] is %s, not a non-negative integer",
                           name, i, json_kind(s));
        }
        en->shape[i] = (int64_t)dim;
    }
    char shape_buf[256];
    uint64_t numel;
    if (cb_shape_numel(en->ndim, en->shape, &numel) != 0)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape %s has more than 2^64 elements", name,
                       cb_shape_str(en->ndim, en->shape, shape_buf, sizeof shape_buf));
    if (cb_shape_nbytes(en->dtype, en->ndim, en->shape, &en->nbytes) != 0)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": shape %s of %s is more than 2^64 bytes", name,
                       cb_shape_str(en->ndim, en->shape, shape_buf, sizeof shape_buf), cb_dtype_name(en->dtype));

    json_t *offsets = json_object_get(v, "data_offsets");
    if (!offsets) return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets missing", name);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets is not an array [begin, end]", name);
    static const char *const which[2] = {"begin", "end"};
    uint64_t be[2];
    for (int i = 0; i < 2; i++) {
        json_t *o = json_array_get(offsets, (size_t)i);
        if (json_nonneg(o, &be[i]) != 0) {
            if (json_is_integer(o))
                return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets %s is %lld, not a non-negative integer",
                               name, which[i], (long long)json_integer_value(o));
            return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets %s is %s, not a non-negative integer",
                           name, which[i], json_kind(o));
        }
    }
    en->begin = be[0];
    en->end = be[1];
    if (en->begin > en->end)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets begin %llu after end %llu", name,
                       (unsigned long long)en->begin, (unsigned long long)en->end);
    if (en->end > st->data_size)
        return cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT ": data_offsets end %llu past the data section (%zu bytes)",
                       name, (unsigned long long)en->end, st->data_size);
    if (en->end - en->begin != en->nbytes)
        return cb_fail(e, CB_E_INVALID, where,
                       "tensor " NAME_FMT ": data_offsets [%llu, %llu] hold %llu bytes, but %s %s needs %zu", name,
                       (unsigned long long)en->begin, (unsigned long long)en->end,
                       (unsigned long long)(en->end - en->begin), cb_dtype_name(en->dtype),
                       cb_shape_str(en->ndim, en->shape, shape_buf, sizeof shape_buf), en->nbytes);
    return CB_OK;
}

static int parse_metadata(cb_safetensors *st, json_t *meta, cb_error *e) {
    if (!json_is_object(meta))
        return cb_fail(e, CB_E_INVALID, st->path, META_KEY " is %s, not an object of strings", json_kind(meta));
    size_t n = json_object_size(meta);
    st->metadata_keys = cb_calloc(n, sizeof *st->metadata_keys, e);
    st->metadata_values = cb_calloc(n, sizeof *st->metadata_values, e);
    if (!st->metadata_keys || !st->metadata_values) return CB_E_RUNTIME;
    const char *key;
    json_t *value;
    json_object_foreach(meta, key, value) {
        if (!json_is_string(value))
            return cb_fail(e, CB_E_INVALID, st->path, META_KEY " " NAME_FMT ": value is %s, not a string", key,
                           json_kind(value));
        st->metadata_keys[st->n_metadata++] = key;
    }
    qsort(st->metadata_keys, st->n_metadata, sizeof *st->metadata_keys, str_ptr_cmp);
    for (size_t i = 0; i < st->n_metadata; i++)
        st->metadata_values[i] = json_string_value(json_object_get(meta, st->metadata_keys[i]));
    return CB_OK;
}

/* Validate st->file[0, file_size) and fill the tables. */
static int parse_file(cb_safetensors *st, cb_error *e) {
    const char *where = st->path;
    if (st->file_size == 0)
        return cb_fail(e, CB_E_INVALID, where, "file is empty; a safetensors file starts with an 8-byte header length");
    if (st->file_size < 8)
        return cb_fail(e, CB_E_INVALID, where, "file is %zu bytes, shorter than the 8-byte header length",
                       st->file_size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | st->file[i];
    if (header_len > CB_SAFETENSORS_MAX_HEADER)
        return cb_fail(e, CB_E_INVALID, where, "header length %llu exceeds the limit of %u bytes",
                       (unsigned long long)header_len, CB_SAFETENSORS_MAX_HEADER);
    if (header_len > st->file_size - 8)
        return cb_fail(e, CB_E_INVALID, where, "header length %llu past the end of the file (%zu bytes after the length)",
                       (unsigned long long)header_len, st->file_size - 8);
    st->data = st->file + 8 + header_len;
    st->data_size = st->file_size - 8 - (size_t)header_len;

    json_error_t jerr;
    st->header = json_loadb((const char *)st->file + 8, (size_t)header_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->header) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return cb_fail(e, CB_E_INVALID, where, "header names a key twice: %s", jerr.text);
        return cb_fail(e, CB_E_INVALID, where, "header is not valid JSON: %s (byte %d of the header)", jerr.text,
                       jerr.position);
    }
    if (!json_is_object(st->header))
        return cb_fail(e, CB_E_INVALID, where, "header is %s, not a JSON object", json_kind(st->header));

    /* The header is at most 100 MB, so its member count bounds this allocation. */
    size_t n_members = json_object_size(st->header);
    st->tensors = cb_calloc(n_members, sizeof *st->tensors, e);
    if (!st->tensors) return CB_E_RUNTIME;
    const char *key;
    json_t *value;
    json_object_foreach(st->header, key, value) {
        if (strcmp(key, META_KEY) == 0) {
            CB_TRY(parse_metadata(st, value, e));
            continue;
        }
        CB_TRY(parse_entry(st, key, value, &st->tensors[st->n_tensors], e));
        st->n_tensors++;
    }

    /* Overlaps: in offset order, each non-empty tensor must start at or after the
     * furthest end seen so far. Gaps are allowed (the format does not forbid them). */
    cb_safetensors_entry **by_offset = cb_calloc(st->n_tensors, sizeof *by_offset, e);
    if (!by_offset) return CB_E_RUNTIME;
    for (size_t i = 0; i < st->n_tensors; i++) by_offset[i] = &st->tensors[i];
    qsort(by_offset, st->n_tensors, sizeof *by_offset, entry_offset_cmp);
    const cb_safetensors_entry *furthest = NULL;
    int rc = CB_OK;
    for (size_t i = 0; i < st->n_tensors && rc == CB_OK; i++) {
        const cb_safetensors_entry *en = by_offset[i];
        if (en->nbytes == 0) continue;
        if (furthest && en->begin < furthest->end)
            rc = cb_fail(e, CB_E_INVALID, where,
                         "tensor " NAME_FMT ": data_offsets [%llu, %llu] overlap tensor " NAME_FMT " at [%llu, %llu]",
                         en->name, (unsigned long long)en->begin, (unsigned long long)en->end, furthest->name,
                         (unsigned long long)furthest->begin, (unsigned long long)furthest->end);
        if (!furthest || en->end > furthest->end) furthest = en;
    }
    free(by_offset);
    CB_TRY(rc);
    qsort(st->tensors, st->n_tensors, sizeof *st->tensors, entry_name_cmp);
    return CB_OK;
}

int cb_safetensors_open(cb_safetensors *st, const char *path, cb_error *e) {
    memset(st, 0, sizeof *st);
    int from_stdin = strcmp(path, "-") == 0;
    snprintf(st->path, sizeof st->path, "%s", from_stdin ? "<stdin>" : path);
    int read_whole = from_stdin;
    if (!from_stdin) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return cb_fail(e, CB_E_IO, path, "cannot open: %s", strerror(errno));
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            int err = errno;
            close(fd);
            return cb_fail(e, CB_E_IO, path, "cannot stat: %s", strerror(err));
        }
        if (S_ISDIR(sb.st_mode)) {
            close(fd);
            return cb_fail(e, CB_E_IO, path, "is a directory, not a safetensors file");
        }
        if (!S_ISREG(sb.st_mode) || sb.st_size < 8) {
            read_whole = 1; /* a pipe cannot be mapped; nor can an empty file */
        } else if ((uint64_t)sb.st_size > SIZE_MAX) {
            close(fd);
            return cb_fail(e, CB_E_IO, path, "file too large to map");
        } else {
            void *map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (map == MAP_FAILED) {
                int err = errno;
                close(fd);
                return cb_fail(e, CB_E_IO, path, "cannot map: %s", strerror(err));
            }
            st->file = map;
            st->file_size = (size_t)sb.st_size;
            st->mapped = 1;
        }
        close(fd);
    }
    if (read_whole) {
        char *buf = NULL;
        size_t len = 0;
        CB_TRY(cb_read_file(path, 0, &buf, &len, e));
        st->file = (unsigned char *)buf;
        st->file_size = len;
    }
    int rc = parse_file(st, e);
    if (rc != CB_OK) cb_safetensors_close(st);
    return rc;
}

const cb_safetensors_entry *cb_safetensors_find(const cb_safetensors *st, const char *name) {
    cb_safetensors_entry key = {.name = name};
    return bsearch(&key, st->tensors, st->n_tensors, sizeof *st->tensors, entry_name_cmp);
}

const char *cb_safetensors_meta(const cb_safetensors *st, const char *key) {
    const char **found = bsearch(&key, st->metadata_keys, st->n_metadata, sizeof *st->metadata_keys, str_ptr_cmp);
    return found ? st->metadata_values[found - st->metadata_keys] : NULL;
}

void cb_safetensors_view(const cb_safetensors *st, size_t i, cb_tensor *out) {
    const cb_safetensors_entry *en = &st->tensors[i];
    memset(out, 0, sizeof *out);
    out->dtype = en->dtype;
    out->ndim = en->ndim;
    memcpy(out->shape, en->shape, sizeof out->shape);
    out->data = (void *)(st->data + en->begin); /* read-only: the mapping is PROT_READ */
    out->nbytes = en->nbytes;
    out->ownership = CB_TENSOR_BORROWED;
}

static const cb_safetensors_entry *find_or_fail(const cb_safetensors *st, const char *name, cb_error *e) {
    const cb_safetensors_entry *en = cb_safetensors_find(st, name);
    if (!en) cb_fail(e, CB_E_INVALID, st->path, "no tensor " NAME_FMT " in the file", name);
    return en;
}

int cb_safetensors_get(const cb_safetensors *st, const char *name, cb_tensor *out, cb_error *e) {
    const cb_safetensors_entry *en = find_or_fail(st, name, e);
    if (!en) {
        memset(out, 0, sizeof *out);
        return CB_E_INVALID;
    }
    cb_safetensors_view(st, (size_t)(en - st->tensors), out);
    return CB_OK;
}

int cb_safetensors_check_shape(const cb_safetensors *st, const char *name, int ndim, const int64_t *shape,
                               cb_error *e) {
    const cb_safetensors_entry *en = find_or_fail(st, name, e);
    if (!en) return CB_E_INVALID;
    int same = en->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = en->shape[i] == shape[i];
    if (!same) {
        char got[256], want[256];
        return cb_fail(e, CB_E_INVALID, st->path, "tensor " NAME_FMT ": shape %s, expected %s", name,
                       cb_shape_str(en->ndim, en->shape, got, sizeof got), cb_shape_str(ndim, shape, want, sizeof want));
    }
    return CB_OK;
}

/* Convert n elements of src (aligned for dtype d) into dst. */
static void convert_to_f32(float *dst, const void *src, enum cb_dtype d, size_t n) {
    switch (d) {
    case CB_DTYPE_F32: memcpy(dst, src, n * sizeof(float)); break;
    case CB_DTYPE_BF16: cb_bf16_to_f32_n(dst, src, n); break;
    case CB_DTYPE_F16: cb_f16_to_f32_n(dst, src, n); break;
    case CB_DTYPE_F64: cb_f64_to_f32_n(dst, src, n); break;
    default: break;
    }
}

int cb_safetensors_read_f32(const cb_safetensors *st, const char *name, float *dst, size_t n, cb_error *e) {
    const cb_safetensors_entry *en = find_or_fail(st, name, e);
    if (!en) return CB_E_INVALID;
    if (en->dtype != CB_DTYPE_F32 && en->dtype != CB_DTYPE_BF16 && en->dtype != CB_DTYPE_F16 &&
        en->dtype != CB_DTYPE_F64)
        return cb_fail(e, CB_E_INVALID, st->path, "tensor " NAME_FMT ": dtype %s cannot be read as F32 "
                       "(F32, BF16, F16 or F64 expected)", name, cb_dtype_name(en->dtype));
    size_t size = cb_dtype_size(en->dtype);
    size_t numel = en->nbytes / size;
    if (numel != n) {
        char buf[256];
        return cb_fail(e, CB_E_INVALID, st->path, "tensor " NAME_FMT ": shape %s has %zu elements, expected %zu",
                       name, cb_shape_str(en->ndim, en->shape, buf, sizeof buf), numel, n);
    }
    const unsigned char *src = st->data + en->begin;
    if ((uintptr_t)src % size == 0) {
        convert_to_f32(dst, src, en->dtype, n);
        return CB_OK;
    }
    /* A file whose writer did not align this tensor: copy through an aligned buffer. */
    uint64_t chunk[512];
    size_t per_chunk = sizeof chunk / size;
    for (size_t i = 0; i < n; i += per_chunk) {
        size_t m = n - i < per_chunk ? n - i : per_chunk;
        memcpy(chunk, src + i * size, m * size);
        convert_to_f32(dst + i, chunk, en->dtype, m);
    }
    return CB_OK;
}

/* ------------------------------------------------------------------ writer */

void cb_safetensors_writer_init(cb_safetensors_writer *w) { memset(w, 0, sizeof *w); }

void cb_safetensors_writer_free(cb_safetensors_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    for (size_t i = 0; i < w->n_metadata; i++) {
        free(w->metadata_keys[i]);
        free(w->metadata_values[i]);
    }
    free(w->tensors);
    free(w->metadata_keys);
    free(w->metadata_values);
    memset(w, 0, sizeof *w);
}

/* 1 when s is valid UTF-8 without NUL (what a JSON string can carry). */
static int is_json_string(const char *s) {
    json_t *j = json_string(s);
    if (!j) return 0;
    json_decref(j);
    return 1;
}

static char *dup_or_fail(const char *s, cb_error *e) {
    size_t n = strlen(s) + 1;
    char *d = cb_malloc(n, 1, e);
    if (d) memcpy(d, s, n);
    return d;
}

int cb_safetensors_writer_add(cb_safetensors_writer *w, const char *name, enum cb_dtype d, int ndim,
                              const int64_t *shape, const void *data, cb_error *e) {
    if (!is_json_string(name))
        return cb_fail(e, CB_E_INVALID, "", "tensor name is not valid UTF-8");
    if (strcmp(name, META_KEY) == 0)
        return cb_fail(e, CB_E_INVALID, "", "tensor name '" META_KEY "' is reserved for the metadata");
    cb_safetensors_writer_tensor t = {.dtype = d, .ndim = ndim, .data = data};
    if (!cb_dtype_valid((int)d))
        return cb_fail(e, CB_E_INVALID, "", "tensor " NAME_FMT ": dtype %d is not a known dtype", name, (int)d);
    if (ndim < 0 || ndim > CB_TENSOR_MAX_DIMS)
        return cb_fail(e, CB_E_INVALID, "", "tensor " NAME_FMT ": %d dimensions; 0 to %d are supported", name, ndim,
                       CB_TENSOR_MAX_DIMS);
    if (cb_shape_nbytes(d, ndim, shape, &t.nbytes) != 0) {
        char buf[256];
        return cb_fail(e, CB_E_INVALID, "", "tensor " NAME_FMT ": shape %s has a negative entry or overflows", name,
                       cb_shape_str(ndim, shape, buf, sizeof buf));
    }
    if (t.nbytes && !data) return cb_fail(e, CB_E_INVALID, "", "tensor " NAME_FMT ": no data", name);
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        cb_safetensors_writer_tensor *grown = cb_malloc(cap, sizeof *grown, e);
        if (!grown) return CB_E_RUNTIME;
        if (w->n_tensors) memcpy(grown, w->tensors, w->n_tensors * sizeof *grown);
        free(w->tensors);
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    t.name = dup_or_fail(name, e);
    if (!t.name) return CB_E_RUNTIME;
    w->tensors[w->n_tensors++] = t;
    return CB_OK;
}

int cb_safetensors_writer_add_tensor(cb_safetensors_writer *w, const char *name, const cb_tensor *t,
                                     cb_error *e) {
    return cb_safetensors_writer_add(w, name, t->dtype, t->ndim, t->shape, t->data, e);
}

int cb_safetensors_writer_meta(cb_safetensors_writer *w, const char *key, const char *value, cb_error *e) {
    if (!is_json_string(key)) return cb_fail(e, CB_E_INVALID, "", "metadata key is not valid UTF-8");
    if (!is_json_string(value))
        return cb_fail(e, CB_E_INVALID, "", "metadata " NAME_FMT ": value is not valid UTF-8", key);
    char *v = dup_or_fail(value, e);
    if (!v) return CB_E_RUNTIME;
    for (size_t i = 0; i < w->n_metadata; i++) {
        if (strcmp(w->metadata_keys[i], key) == 0) {
            free(w->metadata_values[i]);
            w->metadata_values[i] = v;
            return CB_OK;
        }
    }
    if (w->n_metadata == w->cap_metadata) {
        size_t cap = w->cap_metadata ? 2 * w->cap_metadata : 8;
        char **keys = cb_malloc(cap, sizeof *keys, e);
        char **values = keys ? cb_malloc(cap, sizeof *values, e) : NULL;
        if (!values) {
            free(keys);
            free(v);
            return CB_E_RUNTIME;
        }
        if (w->n_metadata) {
            memcpy(keys, w->metadata_keys, w->n_metadata * sizeof *keys);
            memcpy(values, w->metadata_values, w->n_metadata * sizeof *values);
        }
        free(w->metadata_keys);
        free(w->metadata_values);
        w->metadata_keys = keys;
        w->metadata_values = values;
        w->cap_metadata = cap;
    }
    char *k = dup_or_fail(key, e);
    if (!k) {
        free(v);
        return CB_E_RUNTIME;
    }
    w->metadata_keys[w->n_metadata] = k;
    w->metadata_values[w->n_metadata] = v;
    w->n_metadata++;
    return CB_OK;
}

/* The Python library's order (safetensors' Rust `prepare`): by dtype, larger
 * elements first, then by name. As the data section starts 64-aligned and every
 * tensor's size is a multiple of its element size, each tensor then starts at a
 * multiple of its own element size: aligned views, and no gaps (which the Python
 * reader rejects). The rank follows that library's dtype enum, so that files
 * written by both list tensors in the same order. */
static int dtype_rank(enum cb_dtype d) {
    switch (d) {
    case CB_DTYPE_U64: return 0;
    case CB_DTYPE_I64: return 1;
    case CB_DTYPE_F64: return 2;
    case CB_DTYPE_F32: return 3;
    case CB_DTYPE_U32: return 4;
    case CB_DTYPE_I32: return 5;
    case CB_DTYPE_BF16: return 6;
    case CB_DTYPE_F16: return 7;
    case CB_DTYPE_U16: return 8;
    case CB_DTYPE_I16: return 9;
    case CB_DTYPE_I8: return 10;
    case CB_DTYPE_U8: return 11;
    case CB_DTYPE_BOOL: return 12;
    case CB_DTYPE_COUNT: break;
    }
    return 13;
}

static int writer_tensor_cmp(const void *a, const void *b) {
    const cb_safetensors_writer_tensor *x = *(const cb_safetensors_writer_tensor *const *)a;
    const cb_safetensors_writer_tensor *y = *(const cb_safetensors_writer_tensor *const *)b;
    int rx = dtype_rank(x->dtype), ry = dtype_rank(y->dtype);
    if (rx != ry) return rx < ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int build_header(const cb_safetensors_writer *w, cb_safetensors_writer_tensor **order, const char *where,
                        char **out, cb_error *e) {
    json_t *root = json_object();
    int ok = root != NULL;
    if (ok && w->n_metadata) {
        /* keys sorted; jansson keeps insertion order when dumping */
        const char **keys = cb_malloc(w->n_metadata, sizeof *keys, e);
        json_t *meta = json_object();
        ok = keys && json_object_set_new(root, META_KEY, meta) == 0;
        if (ok) {
            for (size_t i = 0; i < w->n_metadata; i++) keys[i] = w->metadata_keys[i];
            qsort(keys, w->n_metadata, sizeof *keys, str_ptr_cmp);
            for (size_t i = 0; ok && i < w->n_metadata; i++) {
                size_t j = 0;
                while (w->metadata_keys[j] != keys[i]) j++;
                ok = json_object_set_new(meta, keys[i], json_string(w->metadata_values[j])) == 0;
            }
        } else if (meta && !json_object_get(root, META_KEY)) {
            json_decref(meta);
        }
        free(keys);
    }
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const cb_safetensors_writer_tensor *t = order[i];
        json_t *shape = json_array();
        for (int k = 0; shape && k < t->ndim; k++) json_array_append_new(shape, json_integer(t->shape[k]));
        json_t *info = json_pack("{s:s, s:o, s:[I, I]}", "dtype", cb_dtype_name(t->dtype), "shape", shape,
                                 "data_offsets", (json_int_t)offset, (json_int_t)(offset + t->nbytes));
        ok = info && json_object_set_new(root, t->name, info) == 0;
        offset += t->nbytes;
    }
    *out = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!*out) return cb_fail(e, CB_E_RUNTIME, where, "out of memory building the header");
    return CB_OK;
}

int cb_safetensors_writer_write(cb_safetensors_writer *w, const char *path, cb_error *e) {
    const char *where = path && strcmp(path, "-") != 0 ? path : "<stdout>";
    cb_safetensors_writer_tensor **order = cb_calloc(w->n_tensors, sizeof *order, e);
    if (!order) return CB_E_RUNTIME;
    for (size_t i = 0; i < w->n_tensors; i++) order[i] = &w->tensors[i];
    qsort(order, w->n_tensors, sizeof *order, writer_tensor_cmp);

    int rc = CB_OK;
    uint64_t total = 0;
    for (size_t i = 0; i < w->n_tensors && rc == CB_OK; i++) {
        if (order[i]->nbytes > UINT64_MAX / 2 - total)
            rc = cb_fail(e, CB_E_INVALID, where, "tensors hold more than 2^63 bytes");
        total += order[i]->nbytes;
    }
    /* Duplicate names: in dtype order they need not be neighbours, so sort the names alone. */
    if (rc == CB_OK && w->n_tensors > 1) {
        const char **names = cb_malloc(w->n_tensors, sizeof *names, e);
        if (!names) rc = CB_E_RUNTIME;
        for (size_t i = 0; names && i < w->n_tensors; i++) names[i] = w->tensors[i].name;
        if (names) qsort(names, w->n_tensors, sizeof *names, str_ptr_cmp);
        for (size_t i = 1; names && i < w->n_tensors && rc == CB_OK; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                rc = cb_fail(e, CB_E_INVALID, where, "tensor " NAME_FMT " added twice", names[i]);
        free(names);
    }
    char *header = NULL;
    if (rc == CB_OK) rc = build_header(w, order, where, &header, e);
    if (rc != CB_OK) {
        free(order);
        return rc;
    }

    /* Pad with spaces so that 8 + header length is a multiple of the alignment. */
    size_t header_len = strlen(header);
    size_t padded = (8 + header_len + CB_SAFETENSORS_ALIGN - 1) / CB_SAFETENSORS_ALIGN * CB_SAFETENSORS_ALIGN - 8;
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    char spaces[CB_SAFETENSORS_ALIGN];
    memset(spaces, ' ', sizeof spaces);

    cb_atomic_file af;
    rc = cb_atomic_open(&af, path, e);
    if (rc == CB_OK) {
        int ok = fwrite(len_bytes, 1, 8, af.fp) == 8 && fwrite(header, 1, header_len, af.fp) == header_len &&
                 fwrite(spaces, 1, padded - header_len, af.fp) == padded - header_len;
        for (size_t i = 0; ok && i < w->n_tensors; i++)
            ok = order[i]->nbytes == 0 || fwrite(order[i]->data, 1, order[i]->nbytes, af.fp) == order[i]->nbytes;
        if (!ok) {
            int err = errno;
            cb_atomic_abort(&af);
            rc = cb_fail(e, CB_E_IO, where, "write failed: %s", strerror(err));
        } else {
            rc = cb_atomic_commit(&af, e);
        }
    }
    free(header);
    free(order);
    return rc;
}
