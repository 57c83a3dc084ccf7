/* crossentropy_f64.c: the double-precision twin of layers/crossentropy.c, for finite-difference checks. */
#define CB_REAL_F64
#include "layers/crossentropy.c"
