/* svd.h: the singular value decomposition surgery needs, in double: one-sided Jacobi
 * (Hestenes) on the columns, accurate to the working precision for the small ranks
 * (a head's width) of attention surgery, and the best rank-k factorisation of a product
 * of two thin matrices without forming it. */
#ifndef CB_UPCYCLE_SVD_H
#define CB_UPCYCLE_SVD_H

#include "core/error.h"

/* Thin SVD of A (m x n, row-major, m >= n): A = U diag(s) V^T with U (m x n) and V
 * (n x n) orthonormal columns, s (n) descending and >= 0. A column of U whose singular
 * value is 0 is left 0. CB_E_RUNTIME on no memory or no convergence. */
int cb_svd(double *U, double *s, double *V, const double *A, int m, int n, cb_error *e);

/* The best rank-k approximation (Eckart-Young, Frobenius norm) of the product A B,
 * A (m x r), B (r x n), m >= r, n >= r, row-major: L (m x k) and R (k x n) with
 * L R = U_k diag(s_k) V_k^T, the singular values split evenly (L = U_k sqrt(s_k),
 * R = sqrt(s_k) V_k^T); sv (k) receives s_k. Where k > r, the extra columns of L, rows
 * of R and entries of sv are 0. Costs two thin SVDs and one r x r SVD. */
int cb_lowrank_product(double *L, double *R, double *sv, const double *A, const double *B, int m, int r, int n,
                       int k, cb_error *e);

#endif
