/* ops_f64.c: the CPU backend's ops again in double precision, for finite-difference checks. */
#define CB_REAL_F64
#include "backend/cpu/ops.c"
