/* clip.h: the global gradient norm and clipping by it (torch.nn.utils.clip_grad_norm_). */
#ifndef CB_TRAIN_CLIP_H
#define CB_TRAIN_CLIP_H

#include <stddef.h>

/* The L2 norm of g[n], summed in double over fixed blocks in a fixed order, so the
 * result does not depend on the number of threads. inf or nan when any element is. */
double cb_grad_norm(const float *g, size_t n);

/* Scale g so its norm is at most max_norm: with norm = cb_grad_norm, multiplies by
 * max_norm / (norm + 1e-6) when that is below 1 (as torch does). max_norm 0 leaves g
 * alone. Returns the norm before clipping. */
double cb_grad_clip(float *g, size_t n, double max_norm);

#endif
