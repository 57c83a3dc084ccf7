/* mlp_f64.c: the double-precision twin of layers/mlp.c, for finite-difference checks. */
#define CB_REAL_F64
#include "layers/mlp.c"
