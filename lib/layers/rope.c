/* rope.c: rotary position embedding (HF Llama rotate_half convention) and its tables,
 * written over `real` (layers/real.h); lib/layers/f64/rope_f64.c compiles the double twin. */
#include "layers/rope.h"

#include "layers/real.h"

/* Float32 arithmetic on purpose: transformers builds inv_freq as float32 tensors, and
 * `x / tensor` in torch is reciprocal(tensor) * x, reproduced here step by step. */
static float rope_inv_freq_one(int i, int D, double theta, const cb_rope_scaling *scaling) {
    float exponent = (float)(2 * i) / (float)D;
    float f = 1.0f / powf((float)theta, exponent);
    if (!scaling || scaling->type != CB_ROPE_SCALING_LLAMA3) return f;
    const float factor = (float)scaling->factor;
    const float low = (float)scaling->low_freq_factor;
    const float high = (float)scaling->high_freq_factor;
    const double old_len = scaling->original_max_position_embeddings;
    const float low_freq_wavelen = (float)(old_len / scaling->low_freq_factor);
    const float high_freq_wavelen = (float)(old_len / scaling->high_freq_factor);
    float wavelen = (1.0f / f) * (float)(2.0 * M_PI);
    float scaled = wavelen > low_freq_wavelen ? f / factor : f;
    float smooth = ((1.0f / wavelen) * (float)old_len - low) / (high - low);
    float smoothed = (1.0f - smooth) * scaled / factor + smooth * scaled;
    int medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    return medium ? smoothed : scaled;
}

#ifndef CB_REAL_F64
void cb_rope_inv_freq(double *inv_freq, int D, double theta, const cb_rope_scaling *scaling) {
    for (int i = 0; i < D / 2; i++) inv_freq[i] = rope_inv_freq_one(i, D, theta, scaling);
}
#endif

// cos, sin (T_max, D/2)
void CB_FN(cb_rope_tables)(real *cos_t, real *sin_t, int T_max, int D, double theta,
                           const cb_rope_scaling *scaling) {
    const int half = D / 2;
    #pragma omp parallel for if ((long)T_max * half >= 65536)
    for (int i = 0; i < half; i++) {
        float inv_freq = rope_inv_freq_one(i, D, theta, scaling);
        for (int t = 0; t < T_max; t++) {
            float angle = (float)t * inv_freq;
            cos_t[(size_t)t * half + i] = (real)cos((double)angle);
            sin_t[(size_t)t * half + i] = (real)sin((double)angle);
        }
    }
}

/* The H heads of one position (y, x: (H,D)) rotated by c, s (D/2). */
static inline void rope_position(real *y, const real *x0, const real *c, const real *s, int H, int D, real sign,
                                 int accumulate) {
    const int half = D / 2;
    for (int h = 0; h < H; h++) {
        const real *x = x0 + (size_t)h * D;
        real *yh = y + (size_t)h * D;
        #pragma omp simd
        for (int i = 0; i < half; i++) {
            real x1 = x[i], x2 = x[i + half], si = sign * s[i];
            real y1 = x1 * c[i] - x2 * si;
            real y2 = x2 * c[i] + x1 * si;
            if (accumulate) {
                yh[i] += y1;
                yh[i + half] += y2;
            } else {
                yh[i] = y1;
                yh[i + half] = y2;
            }
        }
    }
}

/* One (B,T,H,D) pass: sign +1 rotates by the position's angle, -1 by its negative. */
static void rope_apply(real *out, const real *in, const real *cos_t, const real *sin_t, int B,
                       int T, int H, int D, int pos0, real sign, int accumulate) {
    const int half = D / 2;
#define ROPE_POSITION(b, t)                                                                                \
    rope_position(out + ((size_t)(b) * T + (t)) * H * D, in + ((size_t)(b) * T + (t)) * H * D,             \
                  cos_t + (size_t)(pos0 + (t)) * half, sin_t + (size_t)(pos0 + (t)) * half, H, D, sign, accumulate)
    if ((long)B * T * H * D >= 65536) { // (no if clause: each decoded token's q and k, layers/loops.h)
        #pragma omp parallel for collapse(2)
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) ROPE_POSITION(b, t);
    } else {
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) ROPE_POSITION(b, t);
    }
#undef ROPE_POSITION
}

// out, in (B,T,H,D); cos, sin (T_max, D/2) with pos0 + T <= T_max
void CB_FN(cb_rope_forward)(real *out, const real *in, const real *cos_t, const real *sin_t,
                            int B, int T, int H, int D, int pos0) {
    rope_apply(out, in, cos_t, sin_t, B, T, H, D, pos0, (real)1, 0);
}

// din += R^T dout; din, dout (B,T,H,D)
void CB_FN(cb_rope_backward)(real *din, const real *dout, const real *cos_t, const real *sin_t,
                             int B, int T, int H, int D, int pos0) {
    if (!din) return;
    rope_apply(din, dout, cos_t, sin_t, B, T, H, D, pos0, (real)-1, 1);
}

// x (B,T,H,D) <- R^T x
void CB_FN(cb_rope_unrotate)(real *x, const real *cos_t, const real *sin_t, int B, int T, int H,
                             int D, int pos0) {
    rope_apply(x, x, cos_t, sin_t, B, T, H, D, pos0, (real)-1, 0);
}
