/* activation.h: scalar exp, sigmoid, GELU (tanh approximation, as GPT-2) and SiLU with their
 * derivatives, inlined into the element-wise, MLP, SwiGLU and cross-entropy loops. Written over
 * `real`. The float exp is a polynomial without calls or branches, so loops over it vectorise
 * (libm's expf and tanhf do not without -ffast-math); the double build keeps libm for the checks. */
#ifndef CB_LAYERS_ACTIVATION_H
#define CB_LAYERS_ACTIVATION_H

#include <stdint.h>
#include <string.h>
#include "layers/real.h"

#ifdef CB_REAL_F64
static inline double cb_exp(double x) { return exp(x); }
#else
/* e^x for float, within 2 ulp of expf (tests/unit/layers/test_elementwise.c measures it):
 * x = n ln2 + r with |r| <= ln2/2, e^r by Cephes' degree-7 polynomial, 2^n built in the exponent
 * bits. Below -87.3 (where 2^n would leave the normal range) it returns 0; above 88.7, +inf;
 * NaN stays NaN. No float-to-int conversion, so any input is defined behaviour. */
static inline float cb_exp(float x) {
    const float shifter = 12582912.0f; // 1.5 * 2^23: adding it rounds to an integer kept in the low bits
    float xc = x < -87.33654f ? -87.33654f : x;
    xc = xc > 88.72283f ? 88.72283f : xc;
    float t = xc * 1.44269504088896341f + shifter;
    float n = t - shifter;
    float r = xc - n * 0.693359375f;   // ln2 split in a high part exact in float ...
    r = r - n * -2.12194440e-4f;       // ... and the rest
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    // 2^n from its bits, (n + 127) in the exponent field; at the top of the range n reaches 128,
    // which has no float, so there it is built as 2^(n-1) and the product doubled (exact)
    uint32_t top = xc > 88.0f ? 1u : 0u;
    uint32_t tb, sb;
    memcpy(&tb, &t, sizeof tb);
    sb = (tb - 0x4B400000u + 127u - top) << 23;
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    float y = p * scale;
    y = top ? y * 2.0f : y;
    y = x < -87.33654f ? 0.0f : y;
    y = x > 88.72283f ? (float)INFINITY : y;
    return y;
}
#endif

// sqrt(2/pi) and the cubic coefficient of the tanh approximation of GELU
#define CB_GELU_SCALE ((real)0.7978845608028654)
#define CB_GELU_CUBE ((real)0.044715)

static inline real cb_sigmoid(real x) { return (real)1 / ((real)1 + cb_exp(-x)); }

static inline real cb_silu(real x) { return x * cb_sigmoid(x); }

static inline real cb_silu_grad(real x) {
    real s = cb_sigmoid(x);
    return s * ((real)1 + x * ((real)1 - s));
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(z)), z = sqrt(2/pi) (x + 0.044715 x^3). Written with
 * 0.5 (1 + tanh(z)) = sigmoid(2z): one exp, and no cancellation near 1 + tanh(z) = 0. */
static inline real cb_gelu_tanh(real x) {
    real z = CB_GELU_SCALE * (x + CB_GELU_CUBE * x * x * x);
    return x * cb_sigmoid((real)2 * z);
}

/* d/dx: s + x * 2 s (1 - s) dz/dx with s = sigmoid(2z), since d tanh(z)/dz = 1 - tanh^2 = 4 s (1 - s) */
static inline real cb_gelu_tanh_grad(real x) {
    real z = CB_GELU_SCALE * (x + CB_GELU_CUBE * x * x * x);
    real s = cb_sigmoid((real)2 * z);
    real dz = CB_GELU_SCALE * ((real)1 + (real)3 * CB_GELU_CUBE * x * x);
    return s + x * (real)2 * s * ((real)1 - s) * dz;
}

#endif
