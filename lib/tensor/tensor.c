/* tensor.c: shape arithmetic with overflow checks, and the init/free pairs of cb_tensor. */
#include "tensor/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int cb_shape_numel(int ndim, const int64_t *shape, uint64_t *numel) {
    if (ndim < 0 || ndim > CB_TENSOR_MAX_DIMS) return -1;
    uint64_t n = 1;
    int zero = 0;
    /* A zero anywhere makes the product 0, but the other entries' product must
     * not overflow either, so that the verdict does not depend on their order. */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return -1;
        uint64_t s = (uint64_t)shape[i];
        if (s == 0) { zero = 1; continue; }
        if (n > UINT64_MAX / s) return -1;
        n *= s;
    }
    *numel = zero ? 0 : n;
    return 0;
}

int cb_shape_nbytes(enum cb_dtype d, int ndim, const int64_t *shape, size_t *nbytes) {
    uint64_t numel;
    size_t size = cb_dtype_size(d);
    if (size == 0 || cb_shape_numel(ndim, shape, &numel) != 0) return -1;
    if (numel > SIZE_MAX / size) return -1;
    *nbytes = (size_t)numel * size;
    return 0;
}

const char *cb_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    if (n == 0) return buf;
    buf[0] = '\0';
    used += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

int cb_tensor_has_shape(const cb_tensor *t, int ndim, const int64_t *shape) {
    if (t->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

size_t cb_tensor_numel(const cb_tensor *t) {
    size_t size = cb_dtype_size(t->dtype);
    return size ? t->nbytes / size : 0;
}

/* Fill dtype, ndim, shape and nbytes after checking them. */
static int tensor_set_shape(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape, cb_error *e) {
    memset(t, 0, sizeof *t);
    if (!cb_dtype_valid((int)d)) return cb_fail(e, CB_E_INVALID, "", "tensor dtype %d is not a known dtype", (int)d);
    if (ndim < 0 || ndim > CB_TENSOR_MAX_DIMS)
        return cb_fail(e, CB_E_INVALID, "", "tensor has %d dimensions; caramba supports 0 to %d", ndim,
                       CB_TENSOR_MAX_DIMS);
    size_t nbytes;
    if (cb_shape_nbytes(d, ndim, shape, &nbytes) != 0) {
        char buf[256];
        return cb_fail(e, CB_E_INVALID, "", "tensor shape %s has a negative entry or overflows",
                       cb_shape_str(ndim, shape, buf, sizeof buf));
    }
    t->dtype = d;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->nbytes = nbytes;
    return CB_OK;
}

int cb_tensor_init(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape, cb_error *e) {
    CB_TRY(tensor_set_shape(t, d, ndim, shape, e));
    t->data = cb_calloc(t->nbytes, 1, e);
    if (!t->data) {
        memset(t, 0, sizeof *t);
        return CB_E_RUNTIME;
    }
    t->ownership = CB_TENSOR_OWNED;
    return CB_OK;
}

int cb_tensor_init_borrowed(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape,
                            void *data, size_t nbytes, cb_error *e) {
    CB_TRY(tensor_set_shape(t, d, ndim, shape, e));
    if (t->nbytes != nbytes) {
        char buf[256];
        int rc = cb_fail(e, CB_E_INVALID, "", "tensor %s %s needs %zu bytes, got %zu", cb_dtype_name(d),
                         cb_shape_str(ndim, shape, buf, sizeof buf), t->nbytes, nbytes);
        memset(t, 0, sizeof *t);
        return rc;
    }
    t->data = data;
    t->ownership = CB_TENSOR_BORROWED;
    return CB_OK;
}

int cb_tensor_init_mapped(cb_tensor *t, enum cb_dtype d, int ndim, const int64_t *shape,
                          void *map_base, size_t map_len, size_t offset, cb_error *e) {
    CB_TRY(tensor_set_shape(t, d, ndim, shape, e));
    if (offset > map_len || t->nbytes > map_len - offset) {
        int rc = cb_fail(e, CB_E_INVALID, "", "tensor of %zu bytes at offset %zu past the end of a %zu-byte mapping",
                         t->nbytes, offset, map_len);
        memset(t, 0, sizeof *t);
        return rc;
    }
    t->data = (char *)map_base + offset;
    t->map_base = map_base;
    t->map_len = map_len;
    t->ownership = CB_TENSOR_MMAPPED;
    return CB_OK;
}

void cb_tensor_free(cb_tensor *t) {
    if (!t) return;
    if (t->ownership == CB_TENSOR_OWNED) free(t->data);
    else if (t->ownership == CB_TENSOR_MMAPPED && t->map_base) munmap(t->map_base, t->map_len);
    memset(t, 0, sizeof *t);
}
