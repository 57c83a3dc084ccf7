/* stats.c: summaries of repeated measurements (see stats.h). */
#include "bench/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* t(0.975, df) for df 1..30 (the usual table); past 30 the series below is within 1e-3 */
static const double T975[30] = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
                                2.201,  2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
                                2.080,  2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042};

double cb_stats_t975(int df) {
    if (df < 1) return NAN;
    if (df <= 30) return T975[df - 1];
    /* Cornish-Fisher expansion of t in powers of 1/df around z = 1.959964 */
    double z = 1.959964, d = df;
    return z + (z * z * z + z) / (4 * d) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * d * d);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* the q-th percentile (0..100) of sorted[0..n), interpolating between closest ranks */
static double percentile(const double *sorted, int n, double q) {
    double pos = q / 100.0 * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1) return sorted[n - 1];
    double f = pos - lo;
    return sorted[lo] + f * (sorted[lo + 1] - sorted[lo]);
}

void cb_stats_summarize(cb_stats *s, const double *x, int n) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->ci95_lo = s->ci95_hi = NAN;
    if (n < 1) {
        s->mean = s->sd = s->min = s->max = s->p50 = s->p90 = NAN;
        return;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) sum += x[i];
    s->mean = sum / n;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (x[i] - s->mean) * (x[i] - s->mean);
    s->sd = n > 1 ? sqrt(ss / (n - 1)) : 0;
    double *sorted = malloc((size_t)n * sizeof *sorted);
    if (sorted) {
        memcpy(sorted, x, (size_t)n * sizeof *sorted);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_double);
        s->min = sorted[0];
        s->max = sorted[n - 1];
        s->p50 = percentile(sorted, n, 50);
        s->p90 = percentile(sorted, n, 90);
        free(sorted);
    } else {
        s->min = s->max = s->p50 = s->p90 = NAN;
    }
    if (n > 1) {
        double half = cb_stats_t975(n - 1) * s->sd / sqrt((double)n);
        s->ci95_lo = s->mean - half;
        s->ci95_hi = s->mean + half;
    }
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *cb_stats_json(const cb_stats *s) {
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer(s->n));
    json_object_set_new(o, "mean", num(s->mean));
    json_object_set_new(o, "sd", num(s->sd));
    json_object_set_new(o, "min", num(s->min));
    json_object_set_new(o, "max", num(s->max));
    json_object_set_new(o, "p50", num(s->p50));
    json_object_set_new(o, "p90", num(s->p90));
    json_object_set_new(o, "ci95", s->n > 1 && isfinite(s->ci95_lo)
                                       ? json_pack("[f,f]", s->ci95_lo, s->ci95_hi)
                                       : json_null());
    return o;
}
