/* embedding.h: token embedding lookup, optionally plus learned absolute positions (GPT-2).
 * Backward scatter-adds into the tables without atomics: threads own disjoint column blocks, so
 * the sums are formed in token order whatever the thread count. */
#ifndef CB_LAYERS_EMBEDDING_H
#define CB_LAYERS_EMBEDDING_H

#include <stdint.h>

/* out (B,T,C) = wte[tokens[b,t]] + wpe[pos0 + t]; tokens (B,T) each in [0,V), wte (V,C),
 * wpe (maxT,C) or NULL (token embedding only); the caller checks pos0 + T <= maxT */
void cb_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T,
                          int C, int pos0);
/* dwte (V,C) += dout rows scattered by token; dwpe (maxT,C) += dout summed over the batch
 * (either may be NULL); dout (B,T,C), tokens (B,T) */
void cb_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                           int C, int pos0);

void cb_embedding_forward_f64(double *out, const int32_t *tokens, const double *wte, const double *wpe, int B,
                              int T, int C, int pos0);
void cb_embedding_backward_f64(double *dwte, double *dwpe, const double *dout, const int32_t *tokens, int B,
                               int T, int C, int pos0);

#endif
