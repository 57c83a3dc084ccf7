/* npy_header.c: reading and writing the header of a .npy file. The dict is read as the
 * small Python literal numpy writes (strings, True/False, tuples of integers), nothing more. */
#include "data/npy_header.h"

#include <stdio.h>
#include <string.h>

/* numpy leaves room for the first axis to grow to this many digits (format.py) */
#define GROWTH_AXIS_MAX_DIGITS 21
#define ARRAY_ALIGN 64

typedef struct reader {
    const char *s;
    size_t n, i;
    const char *name;
    cb_error *e;
} reader;

static int bad(reader *r, const char *what) {
    return cb_fail(r->e, CB_E_INVALID, r->name, ".npy header: %s at byte %zu of the dict", what, r->i);
}

static void skip_ws(reader *r) {
    while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' || r->s[r->i] == '\r')) r->i++;
}

static int eat(reader *r, char c) {
    skip_ws(r);
    if (r->i < r->n && r->s[r->i] == c) { r->i++; return 1; }
    return 0;
}

/* A Python string literal in ' or " without escapes, into out[cap]. */
static int read_string(reader *r, char *out, size_t cap) {
    skip_ws(r);
    if (r->i >= r->n || (r->s[r->i] != '\'' && r->s[r->i] != '"')) return bad(r, "expected a string");
    char q = r->s[r->i++];
    size_t k = 0;
    while (r->i < r->n && r->s[r->i] != q) {
        char c = r->s[r->i];
        if (c == '\\' || c == '\n' || c == '\0') return bad(r, "unexpected character in a string");
        if (k + 1 >= cap) return bad(r, "string too long");
        out[k++] = c;
        r->i++;
    }
    if (r->i >= r->n) return bad(r, "unterminated string");
    r->i++;
    out[k] = '\0';
    return CB_OK;
}

/* A non-negative integer (Python 2 numpy wrote a trailing L). */
static int read_uint(reader *r, uint64_t *v) {
    skip_ws(r);
    size_t start = r->i;
    uint64_t x = 0;
    while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9') {
        unsigned d = (unsigned)(r->s[r->i] - '0');
        if (x > (UINT64_MAX - d) / 10) return bad(r, "dimension too large");
        x = x * 10 + d;
        r->i++;
    }
    if (r->i == start) return bad(r, r->i < r->n && r->s[r->i] == '-' ? "negative dimension" : "expected an integer");
    if (r->i < r->n && r->s[r->i] == 'L') r->i++;
    *v = x;
    return CB_OK;
}

/* A tuple of integers: (), (n,), (n, m), (n, m,). "(n)" is an integer, not a tuple. */
static int read_shape(reader *r, cb_npy_header *h) {
    if (!eat(r, '(')) return bad(r, "shape is not a tuple");
    h->ndim = 0;
    if (eat(r, ')')) return CB_OK;
    for (;;) {
        uint64_t v = 0;
        CB_TRY(read_uint(r, &v));
        if (h->ndim >= CB_NPY_MAX_DIMS) return bad(r, "shape has too many dimensions");
        h->shape[h->ndim++] = v;
        int comma = eat(r, ',');
        if (eat(r, ')')) {
            if (h->ndim == 1 && !comma) return bad(r, "shape '(n)' is not a tuple (numpy writes '(n,)')");
            return CB_OK;
        }
        if (!comma) return bad(r, "expected ',' or ')' in the shape");
    }
}

static int read_bool(reader *r, int *v) {
    skip_ws(r);
    if (r->n - r->i >= 4 && memcmp(r->s + r->i, "True", 4) == 0) { r->i += 4; *v = 1; return CB_OK; }
    if (r->n - r->i >= 5 && memcmp(r->s + r->i, "False", 5) == 0) { r->i += 5; *v = 0; return CB_OK; }
    return bad(r, "fortran_order is not True or False");
}

static int read_dict(reader *r, cb_npy_header *h) {
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!eat(r, '{')) return bad(r, "expected '{'");
    while (!eat(r, '}')) {
        char key[64];
        CB_TRY(read_string(r, key, sizeof key));
        if (!eat(r, ':')) return bad(r, "expected ':'");
        int *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &have_descr;
            skip_ws(r);
            if (r->i < r->n && r->s[r->i] != '\'' && r->s[r->i] != '"')
                return bad(r, "descr is not a string (structured arrays are not token arrays)");
            CB_TRY(read_string(r, h->descr, sizeof h->descr));
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &have_fortran;
            CB_TRY(read_bool(r, &h->fortran_order));
        } else if (strcmp(key, "shape") == 0) {
            seen = &have_shape;
            CB_TRY(read_shape(r, h));
        } else {
            return cb_fail(r->e, CB_E_INVALID, r->name, ".npy header: unknown key '%s'", key);
        }
        if (*seen) return cb_fail(r->e, CB_E_INVALID, r->name, ".npy header: key '%s' given twice", key);
        *seen = 1;
        if (!eat(r, ',')) {
            if (!eat(r, '}')) return bad(r, "expected ',' or '}'");
            break;
        }
    }
    if (!have_descr || !have_fortran || !have_shape)
        return cb_fail(r->e, CB_E_INVALID, r->name, ".npy header: missing key '%s'",
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    skip_ws(r);
    if (r->i != r->n) return bad(r, "unexpected text after the dict");
    return CB_OK;
}

int cb_npy_header_parse(const void *file, size_t size, const char *name, cb_npy_header *h, cb_error *e) {
    const unsigned char *p = file;
    memset(h, 0, sizeof *h);
    if (size < 10 || memcmp(p, CB_NPY_MAGIC, 6) != 0)
        return cb_fail(e, CB_E_INVALID, name, "not a .npy file (no \\x93NUMPY magic)");
    h->major = p[6];
    h->minor = p[7];
    if (h->minor != 0 || h->major < 1 || h->major > 3)
        return cb_fail(e, CB_E_INVALID, name, ".npy format version %d.%d is not 1.0, 2.0 or 3.0", h->major, h->minor);
    size_t prefix = h->major == 1 ? 10 : 12;
    if (size < prefix) return cb_fail(e, CB_E_INVALID, name, "file ends inside the .npy header length");
    uint64_t hlen = h->major == 1 ? (uint64_t)p[8] | (uint64_t)p[9] << 8
                                  : (uint64_t)p[8] | (uint64_t)p[9] << 8 | (uint64_t)p[10] << 16 | (uint64_t)p[11] << 24;
    if (hlen > size - prefix)
        return cb_fail(e, CB_E_INVALID, name, ".npy header length %llu runs past the end of the file (%zu bytes)",
                       (unsigned long long)hlen, size);
    h->data_offset = prefix + (size_t)hlen;
    const char *text = (const char *)p + prefix;
    /* version 1 and 2 headers are latin-1, version 3 UTF-8; every key and value numpy
     * writes for a token array is ASCII, so other bytes can only be in a bad header */
    for (size_t i = 0; i < hlen; i++)
        if ((unsigned char)text[i] >= 0x80 || text[i] == '\0')
            return cb_fail(e, CB_E_INVALID, name, ".npy header: byte %zu is not printable ASCII", prefix + i);
    reader r = {text, (size_t)hlen, 0, name, e};
    CB_TRY(read_dict(&r, h));
    h->dtype_known = cb_dtype_from_numpy_name(h->descr, &h->dtype);
    return CB_OK;
}

size_t cb_npy_header_format_1d(char *out, size_t cap, const char *descr, uint64_t n) {
    char dict[256], dim[32];
    int nd = snprintf(dim, sizeof dim, "%llu", (unsigned long long)n);
    int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s,), }", descr, dim);
    if (k < 0 || (size_t)k >= sizeof dict) return 0;
    size_t growth = nd < GROWTH_AXIS_MAX_DIGITS ? (size_t)(GROWTH_AXIS_MAX_DIGITS - nd) : 0;
    size_t body = (size_t)k + growth + 1; /* + the newline */
    size_t total = 10 + body;
    total += ARRAY_ALIGN - total % ARRAY_ALIGN; /* numpy pads a whole 64 when already aligned */
    if (total > cap || total - 10 > 65535) return 0;
    size_t hlen = total - 10;
    memcpy(out, CB_NPY_MAGIC, 6);
    out[6] = 1;
    out[7] = 0;
    out[8] = (char)(hlen & 0xff);
    out[9] = (char)(hlen >> 8);
    memcpy(out + 10, dict, (size_t)k);
    memset(out + 10 + k, ' ', hlen - (size_t)k - 1);
    out[total - 1] = '\n';
    return total;
}
