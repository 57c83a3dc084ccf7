/* elementwise.c: residual add, scale, concat/split, sum/mean combine, GELU and SiLU over `real`
 * (float here, double via f64/elementwise_f64.c). Plain loops the compiler vectorises. */
#include "layers/elementwise.h"

#include <string.h>
#include "layers/activation.h"
#include "layers/loops.h"

// element-wise loops: threads when large, and SIMD (the activations inline into straight-line code)
#define CB_PAR_FOR_N _Pragma("omp parallel for simd if (n > CB_OMP_MIN_WORK)")

void CB_FN(cb_add_forward)(real *restrict out, const real *restrict a, const real *restrict b, size_t n) {
    if (n > CB_OMP_MIN_WORK) { // (no if clause: a residual add of one decoded row, loops.h)
#pragma omp parallel for simd
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    } else {
#pragma omp simd
        for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    }
}

void CB_FN(cb_add_backward)(real *restrict da, real *restrict db, const real *restrict dout, size_t n) {
    if (da) CB_FN(cb_accumulate)(da, dout, n);
    if (db) CB_FN(cb_accumulate)(db, dout, n);
}

void CB_FN(cb_scale_forward)(real *restrict out, const real *restrict in, real s, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) out[i] = s * in[i];
}

void CB_FN(cb_scale_backward)(real *restrict din, const real *restrict dout, real s, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) din[i] += s * dout[i];
}

void CB_FN(cb_accumulate)(real *restrict dst, const real *restrict src, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

static int total_width(const int *widths, int n_parts) {
    int w = 0;
    for (int k = 0; k < n_parts; k++) w += widths[k];
    return w;
}

void CB_FN(cb_concat_forward)(real *restrict out, const real *const *parts, const int *widths, int n_parts,
                              int N) {
    int W = total_width(widths, n_parts);
#pragma omp parallel for if ((size_t)N * W > CB_OMP_MIN_WORK)
    for (int r = 0; r < N; r++) {
        real *dst = out + (size_t)r * W;
        for (int k = 0; k < n_parts; k++) {
            memcpy(dst, parts[k] + (size_t)r * widths[k], (size_t)widths[k] * sizeof(real));
            dst += widths[k];
        }
    }
}

void CB_FN(cb_concat_backward)(real *const *dparts, const real *restrict dout, const int *widths, int n_parts,
                               int N) {
    int W = total_width(widths, n_parts);
#pragma omp parallel for if ((size_t)N * W > CB_OMP_MIN_WORK)
    for (int r = 0; r < N; r++) {
        const real *src = dout + (size_t)r * W;
        for (int k = 0; k < n_parts; k++) {
            if (dparts[k]) {
                real *restrict dst = dparts[k] + (size_t)r * widths[k];
#pragma omp simd
                for (int c = 0; c < widths[k]; c++) dst[c] += src[c];
            }
            src += widths[k];
        }
    }
}

void CB_FN(cb_split_forward)(real *const *parts, const real *restrict in, const int *widths, int n_parts, int N) {
    int W = total_width(widths, n_parts);
#pragma omp parallel for if ((size_t)N * W > CB_OMP_MIN_WORK)
    for (int r = 0; r < N; r++) {
        const real *src = in + (size_t)r * W;
        for (int k = 0; k < n_parts; k++) {
            memcpy(parts[k] + (size_t)r * widths[k], src, (size_t)widths[k] * sizeof(real));
            src += widths[k];
        }
    }
}

void CB_FN(cb_split_backward)(real *restrict din, const real *const *dparts, const int *widths, int n_parts,
                              int N) {
    int W = total_width(widths, n_parts);
#pragma omp parallel for if ((size_t)N * W > CB_OMP_MIN_WORK)
    for (int r = 0; r < N; r++) {
        real *dst = din + (size_t)r * W;
        for (int k = 0; k < n_parts; k++) {
            if (dparts[k]) {
                const real *restrict src = dparts[k] + (size_t)r * widths[k];
#pragma omp simd
                for (int c = 0; c < widths[k]; c++) dst[c] += src[c];
            }
            dst += widths[k];
        }
    }
}

void CB_FN(cb_combine_forward)(real *restrict out, const real *const *ins, int n_ins, size_t n, int mean) {
    real s = mean ? (real)1 / (real)n_ins : (real)1;
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) {
        real acc = 0;
        for (int k = 0; k < n_ins; k++) acc += ins[k][i];
        out[i] = s * acc;
    }
}

void CB_FN(cb_combine_backward)(real *const *dins, const real *restrict dout, int n_ins, size_t n, int mean) {
    real s = mean ? (real)1 / (real)n_ins : (real)1;
    for (int k = 0; k < n_ins; k++)
        if (dins[k]) CB_FN(cb_scale_backward)(dins[k], dout, s, n);
}

void CB_FN(cb_gelu_forward)(real *restrict out, const real *restrict in, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) out[i] = cb_gelu_tanh(in[i]);
}

void CB_FN(cb_gelu_backward)(real *restrict din, const real *restrict dout, const real *restrict in, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) din[i] += cb_gelu_tanh_grad(in[i]) * dout[i];
}

void CB_FN(cb_silu_forward)(real *restrict out, const real *restrict in, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) out[i] = cb_silu(in[i]);
}

void CB_FN(cb_silu_backward)(real *restrict din, const real *restrict dout, const real *restrict in, size_t n) {
    CB_PAR_FOR_N
    for (size_t i = 0; i < n; i++) din[i] += cb_silu_grad(in[i]) * dout[i];
}
