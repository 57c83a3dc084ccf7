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

/* The mean of losses (N) over the rows with a target, summed in row order in double (what
 * cb_crossentropy_forward returns); 0 when every row is ignored. */
float cb_crossentropy_mean(const float *losses, const int32_t *targets, int N);
/* Rows of targets (N) that count: not ignored. */
int cb_crossentropy_valid(const int32_t *targets, int N);
/* In place: logits (N,V) become (softmax(logits) - onehot(target)) * g, rows without a target
 * zero. Some rows of a pass at a time (the fused head's chunks, backend/backend.h head_loss),
 * g the gradient of the pass's mean loss over its valid count: the same numbers as
 * cb_crossentropy_backward into zeroed dlogits, without a second (N,V) buffer. */
void cb_crossentropy_grad_inplace(float *logits, const float *lse, const int32_t *targets, int N, int V, float g);

double cb_crossentropy_forward_f64(double *losses, double *lse, const double *logits, const int32_t *targets,
                                   int N, int V);
void cb_crossentropy_backward_f64(double *dlogits, const double *logits, const double *lse,
                                  const int32_t *targets, int N, int V, double dloss);
double cb_crossentropy_mean_f64(const double *losses, const int32_t *targets, int N);
int cb_crossentropy_valid_f64(const int32_t *targets, int N);
void cb_crossentropy_grad_inplace_f64(double *logits, const double *lse, const int32_t *targets, int N, int V,
                                      double g);

#endif
