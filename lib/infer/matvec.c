/* matvec.c: y = W x with W stored in any cb_kv_kind, parallel over the rows of W; each row
 * is dequantised in registers by the kernels of tensor/quant_dot.h. */
#include "infer/matvec.h"

#include <cblas.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "infer/parallel.h"
#include "tensor/quant_dot.h"

/* Below this many weights a parallel region costs more than it saves. */
#define PARALLEL_MIN 65536
/* Stored bytes of weight rows per parallel item: items of a few microseconds, many per
 * thread (a thread that is descheduled holds up at most one), few enough that claiming them
 * costs nothing. */
#define ITEM_BYTES 32768

int cb_weight_matrix_from_f32(cb_weight_matrix *m, cb_kv_kind kind, const float *w, int rows,
                              int cols, cb_error *e) {
    memset(m, 0, sizeof *m);
    if (!cb_kv_kind_valid((int)kind))
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: unknown storage kind %d", (int)kind);
    if (rows <= 0 || cols <= 0)
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: bad shape (%d, %d)", rows, cols);
    const size_t row_bytes = cb_kv_kind_bytes(kind, (size_t)cols);
    // 64-byte aligned: with malloc's 16, every 512-bit load of an fp32 row straddled two
    // cache lines, and a 5-token product read memory at half the speed
    const size_t bytes = (size_t)rows * row_bytes;
    void *data = bytes / row_bytes == (size_t)rows ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
    if (!data) return cb_fail(e, CB_E_RUNTIME, "", "weight matrix: out of memory (%d x %zu bytes)", rows, row_bytes);
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

/* One product split into items of rows_per rows. */
typedef struct matvec_job {
    float *y;
    const cb_weight_matrix *W;
    const float *x, *bias;
    int n, rows_per;
} matvec_job;

static int rows_per_item(const cb_weight_matrix *W, int n) {
    size_t per = ITEM_BYTES / (W->row_bytes * (size_t)n);
    return per < 1 ? 1 : per > (size_t)W->rows ? W->rows : (int)per;
}

static int items_of(const matvec_job *j) { return (j->W->rows + j->rows_per - 1) / j->rows_per; }

static void matvec_item(void *ctx, int item) {
    const matvec_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const size_t cols = (size_t)W->cols;
    const int r0 = item * j->rows_per, r1 = r0 + j->rows_per < W->rows ? r0 + j->rows_per : W->rows;
    for (int r = r0; r < r1; r++) j->y[r] = cb_kv_dot(W->kind, row_of(W, r), j->x, cols) + (j->bias ? j->bias[r] : 0.0f);
}

void cb_matvec(float *y, const cb_weight_matrix *W, const float *x, const float *bias) {
    matvec_job j = {y, W, x, bias, 1, rows_per_item(W, 1)};
    if ((long long)W->rows * W->cols >= PARALLEL_MIN) cb_parallel_for(items_of(&j), matvec_item, &j);
    else
        for (int i = 0; i < items_of(&j); i++) matvec_item(&j, i);
}

/* From this many tokens on an f32 product goes to BLAS (a prefill chunk); below, a few
 * tokens (speculative verification) cost about one pass over the weights, as one token
 * does: BLAS sgemm packed the matrix first, 2.5x the time of one token for 5 (and ran its
 * own threads beside the pool's). */
#define BLAS_MIN_TOKENS 16

/* Tokens whose outputs one pass over a weight row produces (cb_kv_dot_m keeps 8 of them in
 * registers per pass over the row; the row stays in L1/L2 between passes). */
#define TOKENS_PER_ROW_PASS 16

static void matvec_n_item(void *ctx, int item) {
    const matvec_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, cols = W->cols, n = j->n;
    const int r0 = item * j->rows_per, r1 = r0 + j->rows_per < rows ? r0 + j->rows_per : rows;
    for (int r = r0; r < r1; r++) {
        float out[TOKENS_PER_ROW_PASS];
        const void *row = row_of(W, r);
        for (int i0 = 0; i0 < n; i0 += TOKENS_PER_ROW_PASS) {
            const int m = n - i0 < TOKENS_PER_ROW_PASS ? n - i0 : TOKENS_PER_ROW_PASS;
            cb_kv_dot_m(W->kind, out, row, j->x + (size_t)i0 * cols, (size_t)cols, (size_t)cols, m);
            for (int i = 0; i < m; i++)
                j->y[(size_t)(i0 + i) * rows + r] = out[i] + (j->bias ? j->bias[r] : 0.0f);
        }
    }
}

void cb_matvec_n(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n) {
    if (n == 1) {
        cb_matvec(y, W, x, bias);
        return;
    }
    const int rows = W->rows, cols = W->cols;
    if (W->kind == CB_KV_F32 && n > BLAS_MIN_TOKENS) { // a plain f32 matrix: BLAS does it best
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                    (const float *)W->data, cols, 0.0f, y, rows);
        if (bias)
            for (int i = 0; i < n; i++)
                for (int r = 0; r < rows; r++) y[(size_t)i * rows + r] += bias[r];
        return;
    }
    matvec_job j = {y, W, x, bias, n, rows_per_item(W, n)};
    if ((long long)rows * cols >= PARALLEL_MIN) cb_parallel_for(items_of(&j), matvec_n_item, &j);
    else
        for (int i = 0; i < items_of(&j); i++) matvec_n_item(&j, i);
}
