/* svd.c: one-sided Jacobi SVD and the low-rank factorisation of a product (svd.h). */
#include "upcycle/svd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SWEEPS 60

int cb_svd(double *U, double *s, double *V, const double *A, int m, int n, cb_error *e) {
    if (m < n || n <= 0) return cb_fail(e, CB_E_RUNTIME, "", "svd: needs m >= n > 0 (m %d, n %d)", m, n);
    /* columns stored contiguously: the rotations touch two columns at a time */
    double *W = malloc(sizeof(double) * ((size_t)m * n + (size_t)n * n));
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!W || !order) {
        free(W);
        free(order);
        return cb_fail(e, CB_E_RUNTIME, "", "svd: out of memory");
    }
    double *Vc = W + (size_t)m * n;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) W[(size_t)j * m + i] = A[(size_t)i * n + j];
    memset(Vc, 0, sizeof(double) * (size_t)n * n);
    for (int j = 0; j < n; j++) Vc[(size_t)j * n + j] = 1;
    int converged = 0;
    for (int sweep = 0; sweep < MAX_SWEEPS && !converged; sweep++) {
        converged = 1;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double *cp = W + (size_t)p * m, *cq = W + (size_t)q * m;
                double alpha = 0, beta = 0, gamma = 0;
                for (int i = 0; i < m; i++) {
                    alpha += cp[i] * cp[i];
                    beta += cq[i] * cq[i];
                    gamma += cp[i] * cq[i];
                }
                if (gamma == 0 || fabs(gamma) <= 1e-15 * sqrt(alpha * beta)) continue;
                converged = 0;
                double zeta = (beta - alpha) / (2 * gamma);
                double t = (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
                double c = 1 / sqrt(1 + t * t), sn = c * t;
                for (int i = 0; i < m; i++) {
                    double x = cp[i], y = cq[i];
                    cp[i] = c * x - sn * y;
                    cq[i] = sn * x + c * y;
                }
                double *vp = Vc + (size_t)p * n, *vq = Vc + (size_t)q * n;
                for (int i = 0; i < n; i++) {
                    double x = vp[i], y = vq[i];
                    vp[i] = c * x - sn * y;
                    vq[i] = sn * x + c * y;
                }
            }
    }
    if (!converged) {
        free(W);
        free(order);
        return cb_fail(e, CB_E_RUNTIME, "", "svd: no convergence after %d sweeps", MAX_SWEEPS);
    }
    double *norm = malloc(sizeof(double) * (size_t)n);
    if (!norm) {
        free(W);
        free(order);
        return cb_fail(e, CB_E_RUNTIME, "", "svd: out of memory");
    }
    double largest = 0;
    for (int j = 0; j < n; j++) {
        double x = 0;
        for (int i = 0; i < m; i++) x += W[(size_t)j * m + i] * W[(size_t)j * m + i];
        norm[j] = sqrt(x);
        if (norm[j] > largest) largest = norm[j];
        order[j] = j;
    }
    /* descending, by insertion (n is a head's width) */
    for (int a = 1; a < n; a++) {
        int k = order[a], b = a;
        while (b > 0 && norm[order[b - 1]] < norm[k]) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = k;
    }
    for (int jj = 0; jj < n; jj++) {
        int j = order[jj];
        /* a column left at rounding level carries no direction: 0, not noise */
        double sj = norm[j] > 1e-14 * largest ? norm[j] : 0;
        s[jj] = sj;
        for (int i = 0; i < m; i++) U[(size_t)i * n + jj] = sj > 0 ? W[(size_t)j * m + i] / sj : 0;
        for (int i = 0; i < n; i++) V[(size_t)i * n + jj] = Vc[(size_t)j * n + i];
    }
    free(norm);
    free(W);
    free(order);
    return CB_OK;
}

int cb_lowrank_product(double *L, double *R, double *sv, const double *A, const double *B, int m, int r, int n,
                       int k, cb_error *e) {
    memset(L, 0, sizeof(double) * (size_t)m * k);
    memset(R, 0, sizeof(double) * (size_t)k * n);
    memset(sv, 0, sizeof(double) * (size_t)k);
    if (r == 0 || k == 0) return CB_OK;
    if (m < r || n < r) return cb_fail(e, CB_E_RUNTIME, "", "lowrank: needs m, n >= r (m %d, r %d, n %d)", m, r, n);
    size_t need = (size_t)m * r + (size_t)n * r + 2 * (size_t)r * r + 3 * (size_t)r * r + 2 * (size_t)r + (size_t)n * r;
    double *buf = malloc(sizeof(double) * need);
    if (!buf) return cb_fail(e, CB_E_RUNTIME, "", "lowrank: out of memory");
    double *Ua = buf, *Ub = Ua + (size_t)m * r, *Va = Ub + (size_t)n * r, *Vb = Va + (size_t)r * r;
    double *C = Vb + (size_t)r * r, *Uc = C + (size_t)r * r, *Vcc = Uc + (size_t)r * r;
    double *sa = Vcc + (size_t)r * r, *sb = sa + r, *Bt = sb + r;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < n; j++) Bt[(size_t)j * r + i] = B[(size_t)i * n + j];
    int rc = cb_svd(Ua, sa, Va, A, m, r, e);
    if (rc == CB_OK) rc = cb_svd(Ub, sb, Vb, Bt, n, r, e);
    if (rc == CB_OK) {
        /* A B = Ua Sa Va^T Vb Sb Ub^T; C = Sa (Va^T Vb) Sb */
        for (int i = 0; i < r; i++)
            for (int j = 0; j < r; j++) {
                double x = 0;
                for (int t = 0; t < r; t++) x += Va[(size_t)t * r + i] * Vb[(size_t)t * r + j];
                C[(size_t)i * r + j] = sa[i] * x * sb[j];
            }
        double *sc = sa; /* sa is no longer needed */
        rc = cb_svd(Uc, sc, Vcc, C, r, r, e);
        if (rc == CB_OK) {
            int kk = k < r ? k : r;
            /* L = (Ua Uc)[:, :k] sqrt(s), R = sqrt(s) (Ub Vc)[:, :k]^T */
            for (int c = 0; c < kk; c++) {
                double h = sqrt(sc[c]);
                sv[c] = sc[c];
                for (int i = 0; i < m; i++) {
                    double x = 0;
                    for (int t = 0; t < r; t++) x += Ua[(size_t)i * r + t] * Uc[(size_t)t * r + c];
                    L[(size_t)i * k + c] = x * h;
                }
                for (int j = 0; j < n; j++) {
                    double x = 0;
                    for (int t = 0; t < r; t++) x += Ub[(size_t)j * r + t] * Vcc[(size_t)t * r + c];
                    R[(size_t)c * n + j] = x * h;
                }
            }
        }
    }
    free(buf);
    return rc;
}
