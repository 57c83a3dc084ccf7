/* test.h: a tiny unit-test harness. Each TEST registers itself; test_main.c runs them.
 * Output is one line per check group: "ok - name", "not ok - name: why", "skip - name: why".
 * tests/run.sh counts those lines across every test program and CLI script. */
#ifndef CB_TEST_H
#define CB_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

/* FAILF formats into a fixed buffer on purpose: a long message is cut, not an error */
#pragma GCC diagnostic ignored "-Wformat-truncation"

typedef void (*cb_test_fn)(void);
void cb_test_register(const char *name, cb_test_fn fn);

/* state of the running test */
extern int cb_test_failed;
extern int cb_test_skipped;
extern char cb_test_why[1024];

#define TEST(name)                                                              \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void register_##name(void) {           \
        cb_test_register(#name, test_##name);                                  \
    }                                                                          \
    static void test_##name(void)

/* Fail the current test with a message, but keep running it (more context). */
#define FAILF(...)                                                               \
    do {                                                                         \
        if (!cb_test_failed) snprintf(cb_test_why, sizeof cb_test_why, __VA_ARGS__); \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                       \
        fprintf(stderr, __VA_ARGS__);                                            \
        fprintf(stderr, "\n");                                                   \
        cb_test_failed = 1;                                                      \
    } while (0)

#define SKIP(...)                                                      \
    do {                                                               \
        snprintf(cb_test_why, sizeof cb_test_why, __VA_ARGS__);        \
        cb_test_skipped = 1;                                           \
        return;                                                        \
    } while (0)

#define EXPECT(cond)                                          \
    do {                                                      \
        if (!(cond)) FAILF("expected %s", #cond);             \
    } while (0)

#define EXPECT_EQ_INT(want, got)                                                          \
    do {                                                                                  \
        long long w_ = (long long)(want), g_ = (long long)(got);                          \
        if (w_ != g_) FAILF("%s: expected %lld, got %lld", #got, w_, g_);                 \
    } while (0)

#define EXPECT_EQ_STR(want, got)                                                          \
    do {                                                                                  \
        const char *w_ = (want), *g_ = (got);                                             \
        if (!g_ || strcmp(w_, g_) != 0) FAILF("%s: expected \"%s\", got \"%s\"", #got, w_, g_ ? g_ : "(null)"); \
    } while (0)

#define EXPECT_NEAR(want, got, tol)                                                       \
    do {                                                                                  \
        double w_ = (want), g_ = (got);                                                   \
        if (!(fabs(w_ - g_) <= (tol))) FAILF("%s: expected %.9g, got %.9g (tol %g)", #got, w_, g_, (double)(tol)); \
    } while (0)

/* Print a measured difference with its tolerance (numbers are part of the record). */
#define REPORT_DIFF(what, diff, tol) \
    fprintf(stderr, "  %-40s max diff %.3e (tol %.1e)\n", (what), (double)(diff), (double)(tol))

/* A seeded xorshift64 stream for test data: uniform floats in [-1, 1) from its top 53 bits.
 * Each test file keeps its own state, so its data do not depend on other files. */
static inline float cb_test_urandf(unsigned long long *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The running maximum of differences, where a NaN wins and stays: fmax and `d > worst`
 * both drop a NaN, so an all-NaN result would score 0. One rule for every comparison of
 * the tests: a non-finite value is a failure. Use it as worst = cb_test_worst(worst, d)
 * and check the result with !(worst <= tol), which a NaN fails. */
static inline double cb_test_worst(double worst, double d) {
    return isnan(worst) || d <= worst ? worst : d;
}

/* max |a - b| / max |b| over n values: a float result against a double reference; NaN
 * when either holds a NaN, infinite or NaN when either holds an infinity. */
static inline double cb_test_rel_diff(const float *a, const double *b, size_t n) {
    double m = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        m = cb_test_worst(m, fabs(a[i] - b[i]));
        mb = cb_test_worst(mb, fabs(b[i]));
    }
    return m / fmax(mb, 1e-30);
}

#endif
