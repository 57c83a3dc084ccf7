/* matvec.c: y = W x with W stored in any cb_kv_kind, parallel over the rows of W; each row
 * is dequantised in registers by the kernels of tensor/quant_dot.h. */
#include "infer/matvec.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/quant_dot.h"

/* Below this many weights a parallel region costs more than it saves. */
#define PARALLEL_MIN 65536

int cb_weight_matrix_from_f32(cb_weight_matrix *m, cb_kv_kind kind, const float *w, int rows,
                              int cols, cb_error *e) {
    memset(m, 0, sizeof *m);
    if (!cb_kv_kind_valid((int)kind))
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: unknown storage kind %d", (int)kind);
    if (rows <= 0 || cols <= 0)
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: bad shape (%d, %d)", rows, cols);
    const size_t row_bytes = cb_kv_kind_bytes(kind, (size_t)cols);
    void *data = cb_malloc((size_t)rows, row_bytes, e);
    if (!data) return e ? e->code : CB_E_RUNTIME;
    #pragma omp parallel for if ((long long)rows * cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++)
        cb_kv_quantize_row(kind, (unsigned char *)data + (size_t)r * row_bytes,
                           w + (size_t)r * cols, (size_t)cols);
    m->kind = kind;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = row_bytes;
    m->data = data;
    m->owned = data;
    return CB_OK;
}

void cb_weight_matrix_view(cb_weight_matrix *m, cb_kv_kind kind, const void *data, int rows,
                           int cols) {
    m->kind = kind;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = cb_kv_kind_bytes(kind, (size_t)cols);
    m->data = data;
    m->owned = NULL;
}

void cb_weight_matrix_free(cb_weight_matrix *m) {
    free(m->owned);
    memset(m, 0, sizeof *m);
}

size_t cb_weight_matrix_bytes(const cb_weight_matrix *m) { return (size_t)m->rows * m->row_bytes; }

static const void *row_of(const cb_weight_matrix *W, int r) {
    return (const unsigned char *)W->data + (size_t)r * W->row_bytes;
}

void cb_matvec(float *y, const cb_weight_matrix *W, const float *x, const float *bias) {
    const int rows = W->rows;
    const size_t cols = (size_t)W->cols;
    #pragma omp parallel for schedule(static) if ((long long)rows * W->cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++)
        y[r] = cb_kv_dot(W->kind, row_of(W, r), x, cols) + (bias ? bias[r] : 0.0f);
}

/* Tokens whose outputs one pass over a weight row produces (cb_kv_dot_m keeps 8 of them in
 * registers per pass over the row; the row stays in L1/L2 between passes). */
#define TOKENS_PER_ROW_PASS 16

void cb_matvec_n(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n) {
    if (n == 1) {
        cb_matvec(y, W, x, bias);
        return;
    }
    const int rows = W->rows, cols = W->cols;
    if (W->kind == CB_KV_F32) { // a plain f32 matrix: BLAS does it best
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                    (const float *)W->data, cols, 0.0f, y, rows);
        if (bias)
            for (int i = 0; i < n; i++)
                for (int r = 0; r < rows; r++) y[(size_t)i * rows + r] += bias[r];
        return;
    }
    #pragma omp parallel for schedule(static) if ((long long)rows * cols >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        float out[TOKENS_PER_ROW_PASS];
        const void *row = row_of(W, r);
        for (int i0 = 0; i0 < n; i0 += TOKENS_PER_ROW_PASS) {
            const int m = n - i0 < TOKENS_PER_ROW_PASS ? n - i0 : TOKENS_PER_ROW_PASS;
            cb_kv_dot_m(W->kind, out, row, x + (size_t)i0 * cols, (size_t)cols, (size_t)cols, m);
            for (int i = 0; i < m; i++)
                y[(size_t)(i0 + i) * rows + r] = out[i] + (bias ? bias[r] : 0.0f);
        }
    }
}
