/* npy_header.h: the header of a .npy file (numpy's format versions 1.0, 2.0 and 3.0):
 * magic, version, header length, and the Python dict literal with descr, fortran_order
 * and shape, read strictly and checked against the file's size. */
#ifndef CB_DATA_NPY_HEADER_H
#define CB_DATA_NPY_HEADER_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tensor/dtype.h"

#define CB_NPY_MAGIC "\x93NUMPY"
#define CB_NPY_MAX_DIMS 64 /* numpy's own limit */

typedef struct cb_npy_header {
    int major, minor;             /* format version: 1.0, 2.0 or 3.0 */
    char descr[32];               /* as written: "<u2", "<i8", ... */
    int dtype_known;              /* descr is a little-endian type dtype.h knows */
    enum cb_dtype dtype;          /* valid when dtype_known */
    int fortran_order;
    int ndim;
    uint64_t shape[CB_NPY_MAX_DIMS]; /* (ndim) */
    size_t data_offset;           /* bytes before the array data */
} cb_npy_header;

/* Parse the header at the start of file[0..size). Anything malformed (wrong magic, an
 * unknown version, a header length past the file, a dict that is not numpy's, missing,
 * unknown or repeated keys, a shape that is not a tuple of non-negative integers) is
 * CB_E_INVALID with where = name. The caller checks the dtype, the shape and the data
 * size against what it needs. */
int cb_npy_header_parse(const void *file, size_t size, const char *name, cb_npy_header *h, cb_error *e);

/* The version 1.0 header numpy's np.save writes for a C-order 1-D array of n elements of
 * descr, padded with spaces and a newline so the data starts on a 64-byte boundary.
 * Returns its length (a multiple of 64), or 0 when out[cap] is too small. */
size_t cb_npy_header_format_1d(char *out, size_t cap, const char *descr, uint64_t n);

#endif
