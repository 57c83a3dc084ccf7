/* mlp.h: GPT-2 feed-forward block: out = gelu_tanh(in Wfc^T + bfc) Wproj^T + bproj.
 * Forward saves the pre-activation and h; gradients accumulate (+=), pointers may be NULL. */
#ifndef CB_LAYERS_MLP_H
#define CB_LAYERS_MLP_H

/* out (N,C); saved: pre (N,F) = in Wfc^T + bfc, h (N,F) = gelu_tanh(pre);
 * in (N,C), wfc (F,C), bfc (F) or NULL, wproj (C,F), bproj (C) or NULL */
void cb_mlp_forward(float *out, float *pre, float *h, const float *in, const float *wfc, const float *bfc,
                    const float *wproj, const float *bproj, int N, int C, int F);
/* din (N,C) +=, dwfc (F,C) +=, dbfc (F) +=, dwproj (C,F) +=, dbproj (C) +=; scratch (N*F) is
 * overwritten; dout (N,C), the rest as in forward */
void cb_mlp_backward(float *din, float *dwfc, float *dbfc, float *dwproj, float *dbproj, float *scratch,
                     const float *dout, const float *in, const float *pre, const float *h, const float *wfc,
                     const float *wproj, int N, int C, int F);

void cb_mlp_forward_f64(double *out, double *pre, double *h, const double *in, const double *wfc,
                        const double *bfc, const double *wproj, const double *bproj, int N, int C, int F);
void cb_mlp_backward_f64(double *din, double *dwfc, double *dbfc, double *dwproj, double *dbproj,
                         double *scratch, const double *dout, const double *in, const double *pre,
                         const double *h, const double *wfc, const double *wproj, int N, int C, int F);

#endif
