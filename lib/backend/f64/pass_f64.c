/* pass_f64.c: the dispatch loop again in double precision, for finite-difference checks. */
#define CB_REAL_F64
#include "backend/pass.c"
