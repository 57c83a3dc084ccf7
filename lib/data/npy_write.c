/* npy_write.c: token arrays to .npy, streamed through a small conversion buffer so that
 * the file and its SHA-256 come from the same bytes. */
#include "data/npy_write.h"

#include <stdio.h>
#include <string.h>
#include "core/atomic_file.h"
#include "core/sha256.h"
#include "data/npy_header.h"

enum cb_dtype cb_npy_token_dtype(const int32_t *ids, size_t n) {
    int32_t max = 0;
    for (size_t i = 0; i < n; i++) max = ids[i] > max ? ids[i] : max;
    return max < 65536 ? CB_DTYPE_U16 : CB_DTYPE_U32;
}

static void hex_digest(cb_sha256 *s, char *hex) {
    unsigned char d[32];
    cb_sha256_final(s, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int cb_npy_write_tokens(const char *path, const int32_t *ids, size_t n, enum cb_dtype *dtype_out,
                        char *sha256_hex, cb_error *e) {
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0) return cb_fail(e, CB_E_INVALID, path, "negative token id %d at index %zu", (int)ids[i], i);
    enum cb_dtype dtype = cb_npy_token_dtype(ids, n);
    char header[256];
    size_t hlen = cb_npy_header_format_1d(header, sizeof header, cb_dtype_numpy_name(dtype), (uint64_t)n);
    if (hlen == 0) return cb_fail(e, CB_E_RUNTIME, path, "cannot format the .npy header");
    cb_sha256 sha;
    cb_sha256_init(&sha);
    cb_atomic_file af;
    CB_TRY(cb_atomic_open(&af, path, e));
    (void)!fwrite(header, 1, hlen, af.fp);
    cb_sha256_update(&sha, header, hlen);
    /* little-endian bytes, as the header's '<' says, whatever the host */
    unsigned char buf[1 << 16];
    size_t elem = cb_dtype_size(dtype), per = sizeof buf / elem;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        for (size_t k = 0; k < m; k++) {
            uint32_t v = (uint32_t)ids[i + k];
            for (size_t b = 0; b < elem; b++) buf[k * elem + b] = (unsigned char)(v >> (8 * b));
        }
        (void)!fwrite(buf, elem, m, af.fp);
        cb_sha256_update(&sha, buf, m * elem);
    }
    /* a short write leaves the stream in error, which commit reports */
    CB_TRY(cb_atomic_commit(&af, e));
    if (dtype_out) *dtype_out = dtype;
    if (sha256_hex) hex_digest(&sha, sha256_hex);
    return CB_OK;
}
