/* dropout.h: inverted dropout whose mask is a pure function of (seed, offset + element index),
 * so backward regenerates the forward's mask without storing it, and the result does not depend
 * on the thread count. Element i is kept when its hash, as a uniform in [0,1), is >= p; kept
 * elements are scaled by 1/(1-p). p <= 0 is the identity; p >= 1 drops everything. */
#ifndef CB_LAYERS_DROPOUT_H
#define CB_LAYERS_DROPOUT_H

#include <stddef.h>
#include <stdint.h>

/* 1 when element index `index` of the stream `seed` is kept at drop probability p (shared by both
 * precisions: the mask is the same for float and double) */
int cb_dropout_keep(uint64_t seed, uint64_t index, double p);

/* out (n) = in * mask / (1-p); in (n); element i uses index offset + i */
void cb_dropout_forward(float *out, const float *in, size_t n, float p, uint64_t seed, uint64_t offset);
/* din (n) += dout * mask / (1-p), the same mask as forward with the same seed and offset */
void cb_dropout_backward(float *din, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset);

void cb_dropout_forward_f64(double *out, const double *in, size_t n, double p, uint64_t seed, uint64_t offset);
void cb_dropout_backward_f64(double *din, const double *dout, size_t n, double p, uint64_t seed,
                             uint64_t offset);

#endif
