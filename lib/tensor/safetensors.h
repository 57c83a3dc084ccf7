/* safetensors.h: reading (memory-mapped, validated before use) and writing
 * (deterministic, atomic) safetensors files, the tensor format of docs/DESIGN.md section 2.
 * File: u64 little-endian header length N, N bytes of JSON header, then the data. */
#ifndef CB_TENSOR_SAFETENSORS_H
#define CB_TENSOR_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "core/error.h"
#include "tensor/tensor.h"

/* The safetensors libraries refuse headers larger than this. */
#define CB_SAFETENSORS_MAX_HEADER 100000000u
/* The data section starts at a multiple of this in files caramba writes. */
#define CB_SAFETENSORS_ALIGN 64

typedef struct cb_safetensors_entry {
    const char *name;     /* points into the header; lives as long as the file is open */
    enum cb_dtype dtype;
    int ndim;
    int64_t shape[CB_TENSOR_MAX_DIMS];
    uint64_t begin, end;  /* byte offsets into the data section, end - begin == nbytes */
    size_t nbytes;
} cb_safetensors_entry;

typedef struct cb_safetensors {
    char path[4096];              /* as opened ("<stdin>" for "-"); the `where` of every error */
    unsigned char *file;          /* the whole file: mapped, or malloc'd when read from stdin */
    size_t file_size;
    int mapped;
    const unsigned char *data;    /* data section: file + 8 + header length */
    size_t data_size;
    size_t n_tensors;
    cb_safetensors_entry *tensors; /* sorted by name (bytewise) */
    size_t n_metadata;
    const char **metadata_keys;    /* sorted; [n_metadata] */
    const char **metadata_values;
    json_t *header;                /* owns the strings above */
} cb_safetensors;

/* Open and validate a file; path "-" reads stdin into memory. Every defect of the
 * file is CB_E_INVALID with where = the path and a message naming the tensor and
 * field; an unreadable file is CB_E_IO. On failure *st is closed already. */
int cb_safetensors_open(cb_safetensors *st, const char *path, cb_error *e);
void cb_safetensors_close(cb_safetensors *st);

/* The entry named name, or NULL. */
const cb_safetensors_entry *cb_safetensors_find(const cb_safetensors *st, const char *name);
/* Metadata value of key, or NULL. */
const char *cb_safetensors_meta(const cb_safetensors *st, const char *key);

/* A borrowed view of a tensor's bytes in the file (valid until close). A missing
 * name is CB_E_INVALID. The data pointer has the alignment the file gives it:
 * 64 bytes plus the offset for files caramba writes, maybe less for others. */
int cb_safetensors_get(const cb_safetensors *st, const char *name, cb_tensor *out, cb_error *e);
/* The same for the i-th tensor in name order (i < n_tensors). */
void cb_safetensors_view(const cb_safetensors *st, size_t i, cb_tensor *out);

/* CB_E_INVALID unless tensor name exists and has exactly this shape. */
int cb_safetensors_check_shape(const cb_safetensors *st, const char *name, int ndim, const int64_t *shape,
                               cb_error *e);
/* Copy tensor name into dst[n] as f32, converting from F32, BF16, F16 or F64.
 * A missing tensor, another dtype, or an element count other than n: CB_E_INVALID. */
int cb_safetensors_read_f32(const cb_safetensors *st, const char *name, float *dst, size_t n, cb_error *e);

/* ---- writer ---- */

typedef struct cb_safetensors_writer_tensor {
    char *name;
    enum cb_dtype dtype;
    int ndim;
    int64_t shape[CB_TENSOR_MAX_DIMS];
    const void *data; /* borrowed until the write */
    size_t nbytes;
} cb_safetensors_writer_tensor;

typedef struct cb_safetensors_writer {
    size_t n_tensors, cap_tensors;
    cb_safetensors_writer_tensor *tensors;
    size_t n_metadata, cap_metadata;
    char **metadata_keys, **metadata_values;
} cb_safetensors_writer;

void cb_safetensors_writer_init(cb_safetensors_writer *w);
void cb_safetensors_writer_free(cb_safetensors_writer *w);
/* Add a tensor; data (the shape's byte size, row-major little-endian) is read at
 * write time, not copied. A name that is not UTF-8 or is "__metadata__", a bad
 * dtype or shape: CB_E_INVALID. Names are checked for duplicates at write time. */
int cb_safetensors_writer_add(cb_safetensors_writer *w, const char *name, enum cb_dtype d, int ndim,
                              const int64_t *shape, const void *data, cb_error *e);
int cb_safetensors_writer_add_tensor(cb_safetensors_writer *w, const char *name, const cb_tensor *t,
                                     cb_error *e);
/* Set a metadata key to a value (both UTF-8; a later call for the same key
 * replaces the value). caramba's own keys start with "cb.". */
int cb_safetensors_writer_meta(cb_safetensors_writer *w, const char *key, const char *value, cb_error *e);
/* Write the file atomically (temporary file, then rename; "-" = stdout). Tensors
 * in the Python library's order: larger element types first, then by name (bytewise),
 * so every tensor is aligned to its element size without gaps; metadata first, keys
 * sorted; header padded with spaces so the data starts at a multiple of
 * CB_SAFETENSORS_ALIGN; data contiguous in header order. The same tensors and
 * metadata always give the same bytes. A failed write (full disk) is CB_E_IO and
 * leaves an existing file at path untouched. */
int cb_safetensors_writer_write(cb_safetensors_writer *w, const char *path, cb_error *e);

#endif
