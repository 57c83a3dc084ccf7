/* distill.c: the KL part of the distillation loss and its gradient (distill.h). */
#include "train/distill.h"

#include <math.h>
#include <stddef.h>

/* log-sum-exp of x / temp over V values */
static double lse(const float *x, int V, double temp) {
    double m = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) m = fmax(m, x[i] / temp);
    for (int i = 0; i < V; i++) sum += exp(x[i] / temp - m);
    return m + log(sum);
}

double cb_distill_kl(float *ds, const float *s, const float *t, int rows, int V, double temp, double scale) {
    double total = 0;
#pragma omp parallel for reduction(+ : total) if ((long)rows * V > 65536) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *sr = s + (size_t)r * V, *tr = t + (size_t)r * V;
        double ls = lse(sr, V, temp), lt = lse(tr, V, temp), kl = 0;
        for (int i = 0; i < V; i++) {
            double lpt = tr[i] / temp - lt, lps = sr[i] / temp - ls, pt = exp(lpt);
            kl += pt * (lpt - lps);
            if (ds) ds[(size_t)r * V + i] += (float)(scale * temp * (exp(lps) - pt) / rows);
        }
        total += kl;
    }
    return total / rows;
}
