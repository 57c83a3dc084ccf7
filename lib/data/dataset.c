/* dataset.c: opening token datasets (.npy memory-mapped after checking the header against
 * the file, .tokens parsed into an int32 array) and cutting them into training windows. */
#include "data/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/rng.h"
#include "data/npy_header.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static inline int64_t token_at(const void *tokens, enum cb_dtype dtype, size_t i) {
    const unsigned char *p = tokens;
    switch (dtype) {
    /* memcpy: a hand-made file may put the data at an address not aligned for the type */
    case CB_DTYPE_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case CB_DTYPE_U32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case CB_DTYPE_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case CB_DTYPE_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return v; }
    default: return -1;
    }
}

int64_t cb_dataset_token(const cb_dataset *ds, size_t i) { return token_at(ds->tokens, ds->dtype, i); }

const char *cb_dataset_dtype_name(enum cb_dtype dtype) {
    switch (dtype) {
    case CB_DTYPE_U16: return "uint16";
    case CB_DTYPE_U32: return "uint32";
    case CB_DTYPE_I32: return "int32";
    case CB_DTYPE_I64: return "int64";
    default: return "unknown";
    }
}

/* One pass over the ids: the largest, and the first that is negative or past int32
 * (the batcher hands out int32 ids). */
static int scan_ids(cb_dataset *ds, cb_error *e) {
    int64_t max = -1;
    for (size_t i = 0; i < ds->n_tokens; i++) {
        int64_t v = token_at(ds->tokens, ds->dtype, i);
        if (v < 0) return cb_fail(e, CB_E_INVALID, ds->path, "negative token id %lld at index %zu", (long long)v, i);
        if (v > INT32_MAX)
            return cb_fail(e, CB_E_INVALID, ds->path, "token id %lld at index %zu does not fit in int32", (long long)v, i);
        if (v > max) max = v;
    }
    ds->max_token = max;
    return CB_OK;
}

static int open_npy(cb_dataset *ds, cb_error *e) {
    int fd = open(ds->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cb_fail(e, CB_E_IO, ds->path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return cb_fail(e, CB_E_IO, ds->path, "cannot stat: %s", strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cb_fail(e, CB_E_IO, ds->path, "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return cb_fail(e, CB_E_INVALID, ds->path, "empty file, not a .npy array");
    }
    void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (base == MAP_FAILED) return cb_fail(e, CB_E_IO, ds->path, "cannot map: %s", strerror(err));
    ds->map_base = base;
    ds->map_len = size;
    cb_npy_header h;
    int rc = cb_npy_header_parse(base, size, ds->path, &h, e);
    if (rc != CB_OK) return rc;
    if (!h.dtype_known || (h.dtype != CB_DTYPE_U16 && h.dtype != CB_DTYPE_U32 && h.dtype != CB_DTYPE_I32 && h.dtype != CB_DTYPE_I64))
        return cb_fail(e, CB_E_INVALID, ds->path, "dtype '%s' is not a token type (<u2, <u4, <i4, <i8)",
                       h.descr);
    if (h.fortran_order) return cb_fail(e, CB_E_INVALID, ds->path, "Fortran order is not supported");
    if (h.ndim != 1)
        return cb_fail(e, CB_E_INVALID, ds->path, "shape has %d dimensions; a token array is one-dimensional", h.ndim);
    size_t elem = cb_dtype_size(h.dtype);
    uint64_t n = h.shape[0];
    size_t have = size - h.data_offset;
    if (n > have / elem)
        return cb_fail(e, CB_E_INVALID, ds->path, "header claims %llu elements (%llu bytes) but the file holds %zu bytes of data",
                       (unsigned long long)n, (unsigned long long)n * elem, have);
    if (n * elem != have)
        return cb_fail(e, CB_E_INVALID, ds->path, "%zu bytes after the %llu elements the header claims",
                       have - (size_t)n * elem, (unsigned long long)n);
    ds->dtype = h.dtype;
    ds->n_tokens = (size_t)n;
    ds->tokens = (const unsigned char *)base + h.data_offset;
    return scan_ids(ds, e);
}

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* .tokens: ids separated by white space, each a decimal in [0, 2^31). */
static int open_tokens(cb_dataset *ds, cb_error *e) {
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(ds->path, 0, &text, &len, e));
    /* every id takes at least two bytes with its separator: bound the array by that */
    size_t cap = len / 2 + 1, n = 0;
    int32_t *ids = cb_malloc(cap, sizeof *ids, e);
    if (!ids) { free(text); return e->code; }
    size_t line = 1, col = 1, i = 0;
    int rc = CB_OK;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n') { line++; col = 1; i++; continue; }
        if (is_space(c)) { col++; i++; continue; }
        size_t start = i, start_col = col;
        while (i < len && !is_space((unsigned char)text[i])) { i++; col++; }
        int len_tok = (int)(i - start < 40 ? i - start : 40);
        char where[4200];
        snprintf(where, sizeof where, "%s:%zu:%zu", ds->path, line, start_col);
        if (text[start] == '-') {
            rc = cb_fail(e, CB_E_INVALID, where, "negative token id '%.*s'", len_tok, text + start);
            break;
        }
        int64_t v = 0;
        for (size_t k = start; k < i && rc == CB_OK; k++) {
            if (text[k] < '0' || text[k] > '9') {
                rc = cb_fail(e, CB_E_INVALID, where, "'%.*s' is not a token id (a non-negative decimal)", len_tok, text + start);
            } else {
                v = v * 10 + (text[k] - '0');
                if (v > INT32_MAX) rc = cb_fail(e, CB_E_INVALID, where, "token id '%.*s' does not fit in int32", len_tok, text + start);
            }
        }
        if (rc != CB_OK) break;
        ids[n++] = (int32_t)v;
    }
    free(text);
    if (rc != CB_OK) { free(ids); return rc; }
    ds->owned = ids;
    ds->tokens = ids;
    ds->dtype = CB_DTYPE_I32;
    ds->n_tokens = n;
    return scan_ids(ds, e);
}

int cb_dataset_open(cb_dataset *ds, const char *path, cb_error *e) {
    memset(ds, 0, sizeof *ds);
    ds->max_token = -1;
    if (strlen(path) >= sizeof ds->path) return cb_fail(e, CB_E_IO, "", "dataset path too long");
    snprintf(ds->path, sizeof ds->path, "%s", path);
    int rc;
    if (ends_with(path, ".npy")) rc = open_npy(ds, e);
    else if (ends_with(path, ".tokens")) rc = open_tokens(ds, e);
    else rc = cb_fail(e, CB_E_USAGE, path, "a dataset is a .npy or .tokens file");
    if (rc != CB_OK) cb_dataset_close(ds);
    return rc;
}

void cb_dataset_close(cb_dataset *ds) {
    if (ds->map_base) munmap(ds->map_base, ds->map_len);
    free(ds->owned);
    ds->map_base = NULL;
    ds->owned = NULL;
    ds->tokens = NULL;
    ds->n_tokens = 0;
}

int cb_dataset_check_vocab(const cb_dataset *ds, int64_t vocab_size, cb_error *e) {
    if (ds->max_token < vocab_size) return CB_OK;
    for (size_t i = 0; i < ds->n_tokens; i++) {
        int64_t v = cb_dataset_token(ds, i);
        if (v >= vocab_size)
            return cb_fail(e, CB_E_INVALID, ds->path, "token id %lld at index %zu is past the vocabulary (%lld)",
                           (long long)v, i, (long long)vocab_size);
    }
    return cb_fail(e, CB_E_INVALID, ds->path, "token id %lld is past the vocabulary (%lld)",
                   (long long)ds->max_token, (long long)vocab_size);
}

int cb_batcher_init(cb_batcher *b, const cb_dataset *ds, int B, int T, int random, uint64_t seed, cb_error *e) {
    memset(b, 0, sizeof *b);
    if (B < 1 || T < 1) return cb_fail(e, CB_E_USAGE, ds->path, "batch size %d and sequence length %d must be positive", B, T);
    if (ds->n_tokens < (size_t)T + 1)
        return cb_fail(e, CB_E_INVALID, ds->path, "%zu tokens, fewer than sequence length + 1 (%d)", ds->n_tokens, T + 1);
    b->ds = ds;
    b->B = B;
    b->T = T;
    b->random = random != 0;
    b->seed = seed;
    b->position = 0;
    return CB_OK;
}

uint64_t cb_batcher_row_start(const cb_batcher *b, uint64_t batch, int row) {
    uint64_t n_starts = (uint64_t)b->ds->n_tokens - (uint64_t)b->T; /* starts 0 .. n - T - 1 */
    if (b->random) {
        /* counter-based: a function of (seed, batch, row) alone; the modulo's bias is
         * below n_starts / 2^64 */
        uint64_t h = cb_hash64(cb_hash64(cb_hash64(b->seed) ^ batch) ^ (uint64_t)row);
        return h % n_starts;
    }
    /* ((batch * B + row) * T) mod n_starts, without overflow for any batch number */
    unsigned __int128 k = (unsigned __int128)batch * (unsigned)b->B + (unsigned)row;
    return (uint64_t)((k % n_starts) * (unsigned)b->T % n_starts);
}

void cb_batcher_next(cb_batcher *b, int32_t *x, int32_t *y) {
    const cb_dataset *ds = b->ds;
    int T = b->T;
    for (int r = 0; r < b->B; r++) {
        size_t start = (size_t)cb_batcher_row_start(b, b->position, r);
        int32_t *xr = x + (size_t)r * T, *yr = y + (size_t)r * T;
        /* ids were checked to fit int32 at open */
        int32_t prev = (int32_t)token_at(ds->tokens, ds->dtype, start);
        for (int t = 0; t < T; t++) {
            int32_t next = (int32_t)token_at(ds->tokens, ds->dtype, start + (size_t)t + 1);
            xr[t] = prev;
            yr[t] = next;
            prev = next;
        }
    }
    b->position++;
}
