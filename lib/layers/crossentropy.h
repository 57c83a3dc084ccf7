/* crossentropy.h: fused softmax + cross-entropy over logits, ignoring positions whose target is
 * negative (-1, or PyTorch's -100). Forward keeps one number per row, the log-sum-exp, and
 * backward recomputes the softmax from it instead of storing (N,V) probabilities. */
#ifndef CB_LAYERS_CROSSENTROPY_H
#define CB_LAYERS_CROSSENTROPY_H

#include <stdint.h>

/* losses (N) = lse - logits[n, target] (0 where ignored); lse (N) = log sum_v exp(logits[n,v]),
 * saved for backward; logits (N,V), targets (N) each in [0,V) or negative (ignored).
 * Returns the mean loss over non-ignored rows (0 when every row is ignored). */
float cb_crossentropy_forward(float *losses, float *lse, const float *logits, const int32_t *targets, int N,
                              int V);
/* dlogits (N,V) += (softmax(logits) - onehot(target)) * dloss / n_valid, where dloss is the gradient
 * of the mean loss and n_valid counts non-ignored rows; ignored rows get nothing */
void cb_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                              int N, int V, float dloss);

double cb_crossentropy_forward_f64(double *losses, double *lse, const double *logits, const int32_t *targets,
                                   int N, int V);
void cb_crossentropy_backward_f64(double *dlogits, const double *logits, const double *lse,
                                  const int32_t *targets, int N, int V, double dloss);

#endif
