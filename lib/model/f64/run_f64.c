/* run_f64.c: the runtime again in double precision, for finite-difference checks. */
#define CB_REAL_F64
#include "model/run.c"
