/* test_stats.c: summaries of repeated measurements against values worked by hand (numpy's
 * percentile, the t table). */
#include <math.h>
#include "bench/stats.h"
#include "test.h"

TEST(stats_against_hand_values) {
    const double x[] = {4, 1, 3, 2}; /* sorted 1 2 3 4 */
    cb_stats s;
    cb_stats_summarize(&s, x, 4);
    EXPECT_EQ_INT(4, s.n);
    EXPECT_NEAR(2.5, s.mean, 1e-12);
    EXPECT_NEAR(sqrt(5.0 / 3.0), s.sd, 1e-12);  /* sum of squares 5, n - 1 = 3 */
    EXPECT_NEAR(1, s.min, 0);
    EXPECT_NEAR(4, s.max, 0);
    EXPECT_NEAR(2.5, s.p50, 1e-12);             /* numpy.percentile([1,2,3,4], 50) */
    EXPECT_NEAR(3.7, s.p90, 1e-12);             /* position 0.9 * 3 = 2.7: 3 + 0.7 */
    double half = 3.182 * sqrt(5.0 / 3.0) / 2;  /* t(0.975, 3) = 3.182 */
    EXPECT_NEAR(2.5 - half, s.ci95_lo, 1e-9);
    EXPECT_NEAR(2.5 + half, s.ci95_hi, 1e-9);
}

TEST(stats_single_value_has_no_interval) {
    const double x[] = {7};
    cb_stats s;
    cb_stats_summarize(&s, x, 1);
    EXPECT_NEAR(7, s.mean, 0);
    EXPECT_NEAR(0, s.sd, 0);
    EXPECT_NEAR(7, s.p50, 0);
    EXPECT_NEAR(7, s.p90, 0);
    EXPECT(isnan(s.ci95_lo) && isnan(s.ci95_hi));
    json_t *j = cb_stats_json(&s);
    EXPECT(json_is_null(json_object_get(j, "ci95")));
    json_decref(j);
}

TEST(t_table_and_its_tail) {
    EXPECT_NEAR(12.706, cb_stats_t975(1), 1e-9);
    EXPECT_NEAR(2.042, cb_stats_t975(30), 1e-9);
    EXPECT_NEAR(2.021, cb_stats_t975(40), 1e-3);   /* tables: 2.021 */
    EXPECT_NEAR(1.984, cb_stats_t975(100), 1e-3);  /* 1.984 */
    EXPECT_NEAR(1.960, cb_stats_t975(100000), 1e-3);
}
