/* fixture_read_attn.h: reads the small float32 safetensors fixtures that
 * tests/reference/make_attention_fixtures.py writes into tests/reference/attention/,
 * with the library's reader, and compares computed tensors with them (max|a-b| / max|b|,
 * reported per tensor). Header-only, for tests; files are under $CB_ROOT (default: the cwd). */
#ifndef CB_TEST_FIXTURE_READ_ATTN_H
#define CB_TEST_FIXTURE_READ_ATTN_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/safetensors.h"
#include "test.h"

typedef struct cb_fixture {
    char path[512];
    cb_safetensors st;    /* the library's validated, memory-mapped view */
    int open;
    double floor;         /* least denominator of relative differences (default 0), for
                           * tensors whose reference is zero up to rounding */
} cb_fixture;

/* Opens tests/reference/attention/NAME.safetensors. 0, or -1 with why filled. */
static inline int cb_fixture_open(cb_fixture *fx, const char *name, char *why, size_t why_n) {
    memset(fx, 0, sizeof *fx);
    const char *root = getenv("CB_ROOT");
    snprintf(fx->path, sizeof fx->path, "%s/tests/reference/attention/%s.safetensors",
             root && *root ? root : ".", name);
    cb_error e;
    if (cb_safetensors_open(&fx->st, fx->path, &e) != CB_OK) {
        snprintf(why, why_n, "%.200s: %.200s", e.where, e.msg);
        return -1;
    }
    fx->open = 1;
    return 0;
}

static inline void cb_fixture_close(cb_fixture *fx) {
    if (fx->open) cb_safetensors_close(&fx->st);
    memset(fx, 0, sizeof *fx);
}

/* A metadata value (a string), or NULL when absent. */
static inline const char *cb_fixture_meta_str(cb_fixture *fx, const char *key) {
    return cb_safetensors_meta(&fx->st, key);
}

/* A metadata value as a number (metadata values are strings); NaN and a failure when absent. */
static inline double cb_fixture_meta_num(cb_fixture *fx, const char *key) {
    const char *v = cb_safetensors_meta(&fx->st, key);
    if (!v) {
        FAILF("%s: no metadata %s", fx->path, key);
        return NAN;
    }
    return strtod(v, NULL);
}

/* The F32 tensor NAME, which must hold n elements; NULL (and a failure) otherwise. The
 * fixture writer pads its header, so the data is 4-byte aligned. */
static inline const float *cb_fixture_tensor(cb_fixture *fx, const char *name, size_t n) {
    const cb_safetensors_entry *t = cb_safetensors_find(&fx->st, name);
    if (!t || t->dtype != CB_DTYPE_F32) {
        FAILF("%s: no F32 tensor %s", fx->path, name);
        return NULL;
    }
    if (t->nbytes != n * sizeof(float)) {
        FAILF("%s: tensor %s holds %zu bytes, expected %zu", fx->path, name, t->nbytes, n * sizeof(float));
        return NULL;
    }
    return (const float *)(fx->st.data + t->begin);
}

/* max|got - want| / max(max|want|, floor) over n values; NaN (or infinite) when either
 * holds a non-finite value, which fails every tolerance. */
static inline double cb_fixture_rel_diff(const float *want, const void *got, int got_is_double,
                                         size_t n, double floor) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got_is_double ? ((const double *)got)[i] : ((const float *)got)[i];
        worst = cb_test_worst(worst, fabs(g - want[i]));
        scale = cb_test_worst(scale, fabs((double)want[i]));
    }
    if (floor > scale) scale = floor;
    return scale > 0 ? worst / scale : worst;
}

/* max|want| of tensor NAME (0 when absent). */
static inline double cb_fixture_max_abs(cb_fixture *fx, const char *name) {
    const cb_safetensors_entry *t = cb_safetensors_find(&fx->st, name);
    if (!t) return 0;
    size_t n = t->nbytes / sizeof(float);
    const float *v = cb_fixture_tensor(fx, name, n);
    double m = 0;
    for (size_t i = 0; v && i < n; i++) m = cb_test_worst(m, fabs((double)v[i]));
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
