/* clip.c: global gradient norm, deterministic whatever the thread count. */
#include "train/clip.h"

#include <math.h>

/* the buffer is cut into this many chunks whatever the thread count; their partial sums
 * are added in chunk order, which fixes the rounding */
#define CB_CLIP_CHUNKS 64

double cb_grad_norm(const float *g, size_t n) {
    double partial[CB_CLIP_CHUNKS];
    size_t chunk = (n + CB_CLIP_CHUNKS - 1) / CB_CLIP_CHUNKS;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (int c = 0; c < CB_CLIP_CHUNKS; c++) {
        size_t lo = (size_t)c * chunk, hi = lo + chunk < n ? lo + chunk : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)g[i] * (double)g[i];
        partial[c] = s;
    }
    double total = 0;
    for (int c = 0; c < CB_CLIP_CHUNKS; c++) total += partial[c];
    return sqrt(total);
}

double cb_grad_clip(float *g, size_t n, double max_norm) {
    double norm = cb_grad_norm(g, n);
    if (max_norm > 0 && isfinite(norm)) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) {
            float c = (float)coef;
#pragma omp parallel for if (n > 65536) schedule(static)
            for (size_t i = 0; i < n; i++) g[i] *= c;
        }
    }
    return norm;
}
