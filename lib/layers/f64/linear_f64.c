/* linear_f64.c: the double-precision twin of layers/linear.c, for finite-difference checks. */
#define CB_REAL_F64
#include "layers/linear.c"
