/* linear.h: fully connected layer, out = in @ weight^T + bias, weight in PyTorch's (out, in) layout.
 * Gradients accumulate (+=); any gradient pointer may be NULL when that gradient is not wanted. */
#ifndef CB_LAYERS_LINEAR_H
#define CB_LAYERS_LINEAR_H

/* out (N,OC), in (N,IC), weight (OC,IC), bias (OC) or NULL */
void cb_linear_forward(float *out, const float *in, const float *weight, const float *bias,
                       int N, int IC, int OC);
/* din (N,IC) += dout @ weight; dweight (OC,IC) += dout^T @ in; dbias (OC) += column sums of dout.
 * dout (N,OC), in (N,IC), weight (OC,IC) */
void cb_linear_backward(float *din, float *dweight, float *dbias, const float *dout,
                        const float *in, const float *weight, int N, int IC, int OC);

void cb_linear_forward_f64(double *out, const double *in, const double *weight, const double *bias,
                           int N, int IC, int OC);
void cb_linear_backward_f64(double *din, double *dweight, double *dbias, const double *dout,
                            const double *in, const double *weight, int N, int IC, int OC);

#endif
