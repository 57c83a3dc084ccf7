/* gemm_f64.c: the double-precision twin of backend/cpu/gemm.c, for finite-difference checks. */
#define CB_REAL_F64
#include "backend/cpu/gemm.c"
