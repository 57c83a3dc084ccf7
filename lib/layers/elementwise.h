/* elementwise.h: small element-wise layers the topologies are wired from: residual add, scale,
 * concat/split along the last axis (Branching), sum/mean combine (Parallel), GELU (tanh) and SiLU.
 * Backward functions accumulate (+=); an input-gradient pointer may be NULL. */
#ifndef CB_LAYERS_ELEMENTWISE_H
#define CB_LAYERS_ELEMENTWISE_H

#include <stddef.h>

/* out (n) = a + b; a, b (n) */
void cb_add_forward(float *out, const float *a, const float *b, size_t n);
/* da (n) += dout; db (n) += dout */
void cb_add_backward(float *da, float *db, const float *dout, size_t n);
/* out (n) = s * in */
void cb_scale_forward(float *out, const float *in, float s, size_t n);
/* din (n) += s * dout */
void cb_scale_backward(float *din, const float *dout, float s, size_t n);
/* dst (n) += src (n): adds one gradient path into another */
void cb_accumulate(float *dst, const float *src, size_t n);

/* out (N, sum widths) = [parts[0] | parts[1] | ...], parts[k] (N, widths[k]) */
void cb_concat_forward(float *out, const float *const *parts, const int *widths, int n_parts, int N);
/* dparts[k] (N, widths[k]) += its columns of dout (N, sum widths); dparts[k] may be NULL */
void cb_concat_backward(float *const *dparts, const float *dout, const int *widths, int n_parts, int N);
/* parts[k] (N, widths[k]) = its columns of in (N, sum widths) */
void cb_split_forward(float *const *parts, const float *in, const int *widths, int n_parts, int N);
/* din (N, sum widths) += [dparts[0] | dparts[1] | ...]; a NULL dparts[k] counts as zeros */
void cb_split_backward(float *din, const float *const *dparts, const int *widths, int n_parts, int N);

/* out (n) = sum_k ins[k] (n), divided by n_ins when mean != 0 */
void cb_combine_forward(float *out, const float *const *ins, int n_ins, size_t n, int mean);
/* dins[k] (n) += dout (divided by n_ins when mean != 0); dins[k] may be NULL */
void cb_combine_backward(float *const *dins, const float *dout, int n_ins, size_t n, int mean);

/* out (n) = gelu_tanh(in) = 0.5 in (1 + tanh(sqrt(2/pi) (in + 0.044715 in^3))), as GPT-2 */
void cb_gelu_forward(float *out, const float *in, size_t n);
/* din (n) += gelu_tanh'(in) * dout; in is the forward's input */
void cb_gelu_backward(float *din, const float *dout, const float *in, size_t n);
/* out (n) = silu(in) = in * sigmoid(in) */
void cb_silu_forward(float *out, const float *in, size_t n);
/* din (n) += silu'(in) * dout */
void cb_silu_backward(float *din, const float *dout, const float *in, size_t n);

void cb_add_forward_f64(double *out, const double *a, const double *b, size_t n);
void cb_add_backward_f64(double *da, double *db, const double *dout, size_t n);
void cb_scale_forward_f64(double *out, const double *in, double s, size_t n);
void cb_scale_backward_f64(double *din, const double *dout, double s, size_t n);
void cb_accumulate_f64(double *dst, const double *src, size_t n);
void cb_concat_forward_f64(double *out, const double *const *parts, const int *widths, int n_parts, int N);
void cb_concat_backward_f64(double *const *dparts, const double *dout, const int *widths, int n_parts, int N);
void cb_split_forward_f64(double *const *parts, const double *in, const int *widths, int n_parts, int N);
void cb_split_backward_f64(double *din, const double *const *dparts, const int *widths, int n_parts, int N);
void cb_combine_forward_f64(double *out, const double *const *ins, int n_ins, size_t n, int mean);
void cb_combine_backward_f64(double *const *dins, const double *dout, int n_ins, size_t n, int mean);
void cb_gelu_forward_f64(double *out, const double *in, size_t n);
void cb_gelu_backward_f64(double *din, const double *dout, const double *in, size_t n);
void cb_silu_forward_f64(double *out, const double *in, size_t n);
void cb_silu_backward_f64(double *din, const double *dout, const double *in, size_t n);

#endif
