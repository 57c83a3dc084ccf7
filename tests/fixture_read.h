/* fixture_read.h: test access to safetensors fixtures for the PyTorch fixtures under
 * tests/reference/ (header-only): the library's validating reader (lib/tensor/safetensors.h)
 * plus aligned copies of tensors, which fx_close frees, and failure text for the test line. */
#ifndef CB_TESTS_FIXTURE_READ_H
#define CB_TESTS_FIXTURE_READ_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tensor/safetensors.h"

#define FX_MAX_COPIES 64

typedef struct {
    cb_safetensors st;    // the library's validated, memory-mapped view
    int open;
    void *copies[FX_MAX_COPIES];
    int n_copies;
    char why[1400];        // what went wrong, for the test's failure line
} fx_file;

static inline void fx_close(fx_file *f) {
    for (int i = 0; i < f->n_copies; i++) free(f->copies[i]);
    f->n_copies = 0;
    if (f->open) cb_safetensors_close(&f->st);
    f->open = 0;
}

/* Opens tests/reference/REL under $CB_ROOT (tests/run.sh sets it) or the current directory.
 * Returns 0, or -1 with f->why filled. */
static inline int fx_open(fx_file *f, const char *rel) {
    memset(f, 0, sizeof *f);
    const char *root = getenv("CB_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/reference/%s", root && *root ? root : ".", rel);
    cb_error e;
    if (cb_safetensors_open(&f->st, path, &e) != CB_OK) {
        snprintf(f->why, sizeof f->why, "%.300s: %.1000s", e.where, e.msg);
        return -1;
    }
    f->open = 1;
    return 0;
}

/* A copy of tensor NAME, which must have dtype DTYPE ("F32", "F64", "I32", "I64") and, when
 * want_elems != 0, that many elements; *n_elems (if non-NULL) gets its element count.
 * NULL with f->why filled on mismatch. Copies are aligned for any element type. */
static inline void *fx_tensor(fx_file *f, const char *name, const char *dtype, size_t want_elems, size_t *n_elems) {
    const cb_safetensors_entry *t = cb_safetensors_find(&f->st, name);
    if (!t) {
        snprintf(f->why, sizeof f->why, "tensor %s: missing", name);
        return NULL;
    }
    if (strcmp(cb_dtype_name(t->dtype), dtype) != 0) {
        snprintf(f->why, sizeof f->why, "tensor %s: dtype %s, expected %s", name, cb_dtype_name(t->dtype), dtype);
        return NULL;
    }
    size_t elems = t->nbytes / cb_dtype_size(t->dtype);
    if (want_elems && elems != want_elems) {
        snprintf(f->why, sizeof f->why, "tensor %s: %zu elements, expected %zu", name, elems, want_elems);
        return NULL;
    }
    if (f->n_copies == FX_MAX_COPIES) {
        snprintf(f->why, sizeof f->why, "tensor %s: too many copies open", name);
        return NULL;
    }
    void *copy = malloc(t->nbytes + 1);
    if (!copy) {
        snprintf(f->why, sizeof f->why, "tensor %s: out of memory", name);
        return NULL;
    }
    memcpy(copy, f->st.data + t->begin, t->nbytes);
    f->copies[f->n_copies++] = copy;
    if (n_elems) *n_elems = elems;
    return copy;
}

#endif
