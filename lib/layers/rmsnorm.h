/* rmsnorm.h: RMS normalisation over the last axis (Llama): out = in / sqrt(mean(in^2) + eps) * weight.
 * Forward saves the reciprocal rms of each row; gradients accumulate (+=), pointers may be NULL. */
#ifndef CB_LAYERS_RMSNORM_H
#define CB_LAYERS_RMSNORM_H

/* out (N,C), rstd (N) saved for backward, in (N,C), weight (C) */
void cb_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int N, int C, float eps);
/* din (N,C) +=, dweight (C) +=; dout (N,C), in (N,C), weight (C), rstd (N) from forward */
void cb_rmsnorm_backward(float *din, float *dweight, const float *dout, const float *in, const float *weight,
                         const float *rstd, int N, int C);

void cb_rmsnorm_forward_f64(double *out, double *rstd, const double *in, const double *weight, int N, int C,
                            double eps);
void cb_rmsnorm_backward_f64(double *din, double *dweight, const double *dout, const double *in,
                             const double *weight, const double *rstd, int N, int C);

#endif
