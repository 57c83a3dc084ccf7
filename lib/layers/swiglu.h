/* swiglu.h: gated feed-forward block (Llama): out = (silu(in Wg^T) * (in Wu^T)) Wd^T, no biases.
 * Forward saves gate, up and h; gradients accumulate (+=), pointers may be NULL. */
#ifndef CB_LAYERS_SWIGLU_H
#define CB_LAYERS_SWIGLU_H

/* out (N,C); saved: gate (N,F), up (N,F), h (N,F) = silu(gate) * up;
 * in (N,C), wg (F,C) gate.weight, wu (F,C) up.weight, wd (C,F) down.weight */
void cb_swiglu_forward(float *out, float *gate, float *up, float *h, const float *in, const float *wg,
                       const float *wu, const float *wd, int N, int C, int F);
/* din (N,C) +=, dwg (F,C) +=, dwu (F,C) +=, dwd (C,F) +=; scratch (2*N*F) is overwritten;
 * dout (N,C), the rest as in forward */
void cb_swiglu_backward(float *din, float *dwg, float *dwu, float *dwd, float *scratch, const float *dout,
                        const float *in, const float *gate, const float *up, const float *h, const float *wg,
                        const float *wu, const float *wd, int N, int C, int F);

void cb_swiglu_forward_f64(double *out, double *gate, double *up, double *h, const double *in,
                           const double *wg, const double *wu, const double *wd, int N, int C, int F);
void cb_swiglu_backward_f64(double *din, double *dwg, double *dwu, double *dwd, double *scratch,
                            const double *dout, const double *in, const double *gate, const double *up,
                            const double *h, const double *wg, const double *wu, const double *wd, int N,
                            int C, int F);

#endif
