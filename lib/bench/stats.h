/* stats.h: the summary of a measurement that repeats (timed runs, evaluation batches):
 * mean, standard deviation, percentiles and a 95% confidence interval of the mean. */
#ifndef CB_BENCH_STATS_H
#define CB_BENCH_STATS_H

#include <jansson.h>

typedef struct cb_stats {
    int n;
    double mean, sd;       /* sd: sample standard deviation (n - 1); 0 when n == 1 */
    double min, max;
    double p50, p90;       /* percentiles, linear between closest ranks (numpy's default) */
    double ci95_lo, ci95_hi; /* mean -+ t(0.975, n-1) sd / sqrt(n); NaN when n < 2 */
} cb_stats;

/* Summarise x[0..n) (n >= 1; x is not changed). */
void cb_stats_summarize(cb_stats *s, const double *x, int n);

/* The two-sided 95% critical value of Student's t with df degrees of freedom (df >= 1). */
double cb_stats_t975(int df);

/* {"n", "mean", "sd", "min", "max", "p50", "p90", "ci95": [lo, hi]} (ci95 null when n < 2). */
json_t *cb_stats_json(const cb_stats *s);

#endif
