/* gemm_f64.c: the double-precision twin of layers/gemm.c, for finite-difference checks. */
#define CB_REAL_F64
#include "layers/gemm.c"
