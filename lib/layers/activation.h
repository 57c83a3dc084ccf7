/* activation.h: scalar GELU (tanh approximation, as GPT-2) and SiLU with their derivatives,
 * inlined into the element-wise, MLP and SwiGLU loops. Written over `real`. */
#ifndef CB_LAYERS_ACTIVATION_H
#define CB_LAYERS_ACTIVATION_H

#include "layers/real.h"

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU
#define CB_GELU_SCALE ((real)0.7978845608028654)
#define CB_GELU_CUBE ((real)0.044715)

static inline real cb_gelu_tanh(real x) {
    return (real)0.5 * x * ((real)1 + REAL_TANH(CB_GELU_SCALE * (x + CB_GELU_CUBE * x * x * x)));
}

static inline real cb_gelu_tanh_grad(real x) {
    real t = REAL_TANH(CB_GELU_SCALE * (x + CB_GELU_CUBE * x * x * x));
    real dt = CB_GELU_SCALE * ((real)1 + (real)3 * CB_GELU_CUBE * x * x) * ((real)1 - t * t);
    return (real)0.5 * ((real)1 + t) + (real)0.5 * x * dt;
}

static inline real cb_sigmoid(real x) { return (real)1 / ((real)1 + REAL_EXP(-x)); }

static inline real cb_silu(real x) { return x * cb_sigmoid(x); }

static inline real cb_silu_grad(real x) {
    real s = cb_sigmoid(x);
    return s * ((real)1 + x * ((real)1 - s));
}

#endif
