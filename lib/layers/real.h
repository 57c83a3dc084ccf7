/* real.h: each layer is written once over `real` and compiled twice: as float for
 * the runtime (lib/layers/NAME.c) and as double for the finite-difference checks
 * (lib/layers/f64/NAME_f64.c defines CB_REAL_F64 and includes NAME.c).
 * CB_FN(cb_x_forward) names the float function cb_x_forward and the double one
 * cb_x_forward_f64. Headers declare both prototypes explicitly. */
#ifndef CB_LAYERS_REAL_H
#define CB_LAYERS_REAL_H

#include <cblas.h>
#include <math.h>

#ifdef CB_REAL_F64
typedef double real;
#define CB_FN(name) name##_f64
#define CB_GEMM cblas_dgemm
#define CB_GEMV cblas_dgemv
#define REAL_EXP exp
#define REAL_SQRT sqrt
#define REAL_TANH tanh
#define REAL_LOG log
#define REAL_MAX_ABS fabs
#else
typedef float real;
#define CB_FN(name) name
#define CB_GEMM cblas_sgemm
#define CB_GEMV cblas_sgemv
#define REAL_EXP expf
#define REAL_SQRT sqrtf
#define REAL_TANH tanhf
#define REAL_LOG logf
#define REAL_MAX_ABS fabsf
#endif

#endif
