/* fixture_read_attn.h: reads the small float32 safetensors fixtures that
 * tests/reference/make_attention_fixtures.py writes into tests/reference/attention/,
 * and compares computed tensors with them (max|a-b| / max|b|, reported per tensor).
 * Header-only, for tests; the files are found under $CB_ROOT (default: the cwd). */
#ifndef CB_TEST_FIXTURE_READ_ATTN_H
#define CB_TEST_FIXTURE_READ_ATTN_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

typedef struct cb_fixture {
    char path[512];
    unsigned char *bytes; /* whole file */
    size_t size;
    size_t data_start;    /* 8 + header length */
    json_t *header;       /* name -> {dtype, shape, data_offsets}, "__metadata__" */
    double floor;         /* least denominator of relative differences (default 0), for
                           * tensors whose reference is zero up to rounding */
} cb_fixture;

/* Reported comparisons, a failure above tol. */

/* Opens tests/reference/attention/NAME.safetensors. 0, or -1 with why filled. */
static inline int cb_fixture_open(cb_fixture *fx, const char *name, char *why, size_t why_n) {
    memset(fx, 0, sizeof *fx);
    const char *root = getenv("CB_ROOT");
    snprintf(fx->path, sizeof fx->path, "%s/tests/reference/attention/%s.safetensors",
             root && *root ? root : ".", name);
    FILE *f = fopen(fx->path, "rb");
    if (!f) {
        snprintf(why, why_n, "%.200s: cannot open", fx->path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    fx->bytes = malloc(n > 0 ? (size_t)n : 1);
    fx->size = n > 0 ? (size_t)n : 0;
    size_t got = fx->bytes ? fread(fx->bytes, 1, fx->size, f) : 0;
    fclose(f);
    if (got != fx->size || fx->size < 8) {
        snprintf(why, why_n, "%.200s: short read", fx->path);
        return -1;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | fx->bytes[i];
    if (hlen > fx->size - 8) {
        snprintf(why, why_n, "%.200s: header length %llu past the end", fx->path, (unsigned long long)hlen);
        return -1;
    }
    fx->data_start = 8 + (size_t)hlen;
    json_error_t je;
    fx->header = json_loadb((const char *)fx->bytes + 8, (size_t)hlen, 0, &je);
    if (!fx->header) {
        snprintf(why, why_n, "%.200s: header: %.40s", fx->path, je.text);
        return -1;
    }
    return 0;
}

static inline void cb_fixture_close(cb_fixture *fx) {
    json_decref(fx->header);
    free(fx->bytes);
    memset(fx, 0, sizeof *fx);
}

/* A metadata value (a string), or NULL when absent. */
static inline const char *cb_fixture_meta_str(cb_fixture *fx, const char *key) {
    return json_string_value(json_object_get(json_object_get(fx->header, "__metadata__"), key));
}

/* A metadata value as a number (metadata values are strings); NaN and a failure when absent. */
static inline double cb_fixture_meta_num(cb_fixture *fx, const char *key) {
    json_t *v = json_object_get(json_object_get(fx->header, "__metadata__"), key);
    if (!json_is_string(v)) {
        FAILF("%s: no metadata %s", fx->path, key);
        return NAN;
    }
    return strtod(json_string_value(v), NULL);
}

/* The F32 tensor NAME, which must hold n elements; NULL (and a failure) otherwise. */
static inline const float *cb_fixture_tensor(cb_fixture *fx, const char *name, size_t n) {
    json_t *t = json_object_get(fx->header, name);
    json_t *off = json_object_get(t, "data_offsets");
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    if (!dtype || strcmp(dtype, "F32") != 0 || json_array_size(off) != 2) {
        FAILF("%s: no F32 tensor %s", fx->path, name);
        return NULL;
    }
    size_t a = (size_t)json_integer_value(json_array_get(off, 0));
    size_t b = (size_t)json_integer_value(json_array_get(off, 1));
    if (b < a || b - a != n * sizeof(float) || fx->data_start + b > fx->size) {
        FAILF("%s: tensor %s holds %zu bytes, expected %zu", fx->path, name, b - a, n * sizeof(float));
        return NULL;
    }
    return (const float *)(fx->bytes + fx->data_start + a);
}

/* max|got - want| / max(max|want|, floor) over n values. */
static inline double cb_fixture_rel_diff(const float *want, const void *got, int got_is_double,
                                         size_t n, double floor) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got_is_double ? ((const double *)got)[i] : ((const float *)got)[i];
        worst = fmax(worst, fabs(g - want[i]));
        scale = fmax(scale, fabs((double)want[i]));
    }
    scale = fmax(scale, floor);
    return scale > 0 ? worst / scale : worst;
}

/* max|want| of tensor NAME (0 when absent). */
static inline double cb_fixture_max_abs(cb_fixture *fx, const char *name) {
    json_t *t = json_object_get(fx->header, name);
    json_t *off = json_object_get(t, "data_offsets");
    if (json_array_size(off) != 2) return 0;
    size_t a = (size_t)json_integer_value(json_array_get(off, 0));
    size_t b = (size_t)json_integer_value(json_array_get(off, 1));
    const float *v = cb_fixture_tensor(fx, name, (b - a) / sizeof(float));
    double m = 0;
    for (size_t i = 0; v && i < (b - a) / sizeof(float); i++) m = fmax(m, fabs((double)v[i]));
    return m;
}

static inline void cb_fixture_check(cb_fixture *fx, const char *name, const void *got,
                                    int got_is_double, size_t n, double tol, const char *what) {
    const float *want = cb_fixture_tensor(fx, name, n);
    if (!want) return;
    double rel = cb_fixture_rel_diff(want, got, got_is_double, n, fx->floor);
    char label[160];
    snprintf(label, sizeof label, "%s: %s", what, name);
    REPORT_DIFF(label, rel, tol);
    if (!(rel <= tol)) FAILF("%s: relative difference %.3e above %.1e", label, rel, tol);
}

static inline void cb_fixture_expect(cb_fixture *fx, const char *name, const float *got, size_t n,
                                     double tol, const char *what) {
    cb_fixture_check(fx, name, got, 0, n, tol, what);
}

static inline void cb_fixture_expect_f64(cb_fixture *fx, const char *name, const double *got,
                                         size_t n, double tol, const char *what) {
    cb_fixture_check(fx, name, got, 1, n, tol, what);
}

#endif
