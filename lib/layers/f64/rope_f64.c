#define CB_REAL_F64
#include "layers/rope.c"
