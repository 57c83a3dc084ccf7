/* tensor.h: a typed, shaped block of row-major little-endian bytes, which owns
 * its memory, borrows someone else's, or owns a memory mapping. */
#ifndef CB_TENSOR_TENSOR_H
#define CB_TENSOR_TENSOR_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tensor/dtype.h"

#define CB_TENSOR_MAX_DIMS 8

enum cb_ownership {
    CB_TENSOR_BORROWED = 0, /* data belongs to someone else (a safetensors mapping, a caller's buffer) */
    CB_TENSOR_OWNED,        /* data was malloc'd by cb_tensor_init; freed by cb_tensor_free */
    CB_TENSOR_MMAPPED,      /* data lies inside map_base[0, map_len), unmapped by cb_tensor_free */
};

typedef struct cb_tensor {
    enum cb_dtype dtype;
    int ndim;                           /* 0 for a scalar */
    int64_t shape[CB_TENSOR_MAX_DIMS];  /* PyTorch order, outermost first; entries >= 0 */
    void *data;                         /* nbytes bytes; not NULL even when nbytes is 0 (owned) */
    size_t nbytes;                      /* numel * cb_dtype_size(dtype) */
    enum cb_ownership ownership;
    void *map_base;                     /* CB_TENSOR_MMAPPED only: the whole mapping */
    size_t map_len;
} cb_tensor;

/* Number of elements of a shape (1 for ndim 0). Returns 0 and sets *numel, or -1
 * when ndim is out of [0, CB_TENSOR_MAX_DIMS], an entry is negative, or the
 * product overflows 64 bits. Never overflows itself. */
int cb_shape_numel(int ndim, const int64_t *shape, uint64_t *numel);
/* Same, and the byte size numel * cb_dtype_size(d), which must fit in size_t. */
int cb_shape_nbytes(enum cb_dtype d, int ndim, const int64_t *shape, size_t *nbytes);
/* "[2, 3]" (or "[]") into buf; returns buf. */
const char *cb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* 1 when t has exactly this shape. */
int cb_tensor_has_shape(const cb_tensor *t, int ndim, const int64_t *shape);

/* Element count of an initialised tensor. */
size_t cb_tensor_numel(const cb_tensor *t);

/* A new zero-filled owned tensor. A bad dtype, rank or shape: CB_E_INVALID;
 * no memory: CB_E_RUNTIME. On failure *t is zeroed (cb_tensor_free is safe). */
int cb_tensor_init(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape, cb_error *e);
/* A tensor viewing nbytes of someone else's memory; nbytes must equal the
 * shape's byte size (CB_E_INVALID otherwise). */
int cb_tensor_init_borrowed(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape,
                            void *data, size_t nbytes, cb_error *e);
/* A tensor taking ownership of the mapping map_base[0, map_len) (from mmap) whose
 * data starts at byte offset; the bytes [offset, offset + nbytes) must lie inside
 * it. On failure the mapping stays the caller's. */
int cb_tensor_init_mapped(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape,
                          void *map_base, size_t map_len, size_t offset, cb_error *e);
/* Release what t owns (nothing for a borrowed one) and zero it. */
void cb_tensor_free(cb_tensor *t);

#endif
