/* layernorm.h: layer normalisation over the last axis (GPT-2): out = (in - mean) * rstd * weight + bias.
 * Forward saves each row's mean and reciprocal std; gradients accumulate (+=), pointers may be NULL. */
#ifndef CB_LAYERS_LAYERNORM_H
#define CB_LAYERS_LAYERNORM_H

/* out (N,C), mean (N), rstd (N) saved for backward, in (N,C), weight (C), bias (C) or NULL */
void cb_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *weight,
                          const float *bias, int N, int C, float eps);
/* din (N,C) +=, dweight (C) +=, dbias (C) +=; dout (N,C), in (N,C), weight (C), mean, rstd (N) */
void cb_layernorm_backward(float *din, float *dweight, float *dbias, const float *dout, const float *in,
                           const float *weight, const float *mean, const float *rstd, int N, int C);

void cb_layernorm_forward_f64(double *out, double *mean, double *rstd, const double *in, const double *weight,
                              const double *bias, int N, int C, double eps);
void cb_layernorm_backward_f64(double *din, double *dweight, double *dbias, const double *dout,
                               const double *in, const double *weight, const double *mean,
                               const double *rstd, int N, int C);

#endif
