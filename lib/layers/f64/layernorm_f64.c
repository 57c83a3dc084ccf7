/* layernorm_f64.c: the double-precision twin of layers/layernorm.c, for finite-difference checks. */
#define CB_REAL_F64
#include "layers/layernorm.c"
