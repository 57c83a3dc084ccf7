/* npy_write.h: writing a token array as a .npy file, byte for byte what numpy's np.save
 * writes for the same 1-D array, atomically (a temporary file renamed into place). */
#ifndef CB_DATA_NPY_WRITE_H
#define CB_DATA_NPY_WRITE_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tensor/dtype.h"

/* The dtype a token array is stored in: U16 when every id < 65536, else U32. */
enum cb_dtype cb_npy_token_dtype(const int32_t *ids, size_t n);

/* Write ids[0..n) to path as a 1-D array of cb_npy_token_dtype(ids, n). A negative id is
 * CB_E_INVALID naming its index; a failed write CB_E_IO. dtype_out (may be NULL) gets the
 * type written, sha256_hex (may be NULL, else 65 bytes) the SHA-256 of the whole file. */
int cb_npy_write_tokens(const char *path, const int32_t *ids, size_t n, enum cb_dtype *dtype_out,
                        char *sha256_hex, cb_error *e);

#endif
