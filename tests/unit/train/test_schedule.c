/* test_schedule.c: learning rates at the boundaries of warmup and decay. */
#include <math.h>
#include "test.h"
#include "train/schedule.h"

TEST(names) {
    EXPECT_EQ_INT(CB_SCHED_COSINE, cb_schedule_kind("cosine"));
    EXPECT_EQ_INT(CB_SCHED_NONE, cb_schedule_kind("none"));
    EXPECT_EQ_INT(-1, cb_schedule_kind("exponential"));
    EXPECT_EQ_STR("linear", cb_schedule_name(CB_SCHED_LINEAR));
}

TEST(cosine_boundaries) {
    cb_schedule s = {.kind = CB_SCHED_COSINE, .lr = 1e-3, .min_lr = 1e-4, .warmup = 10, .total = 110};
    EXPECT_NEAR(1e-4, cb_schedule_lr(&s, 0), 1e-15);   /* (0+1)/10 of lr */
    EXPECT_NEAR(5e-4, cb_schedule_lr(&s, 4), 1e-15);
    EXPECT_NEAR(1e-3, cb_schedule_lr(&s, 9), 1e-15);   /* last warmup step: the peak */
    EXPECT_NEAR(1e-3, cb_schedule_lr(&s, 10), 1e-15);  /* p = 0 */
    EXPECT_NEAR(5.5e-4, cb_schedule_lr(&s, 60), 1e-15); /* p = 1/2: the middle */
    double last = cb_schedule_lr(&s, 109);              /* p = 99/100 */
    EXPECT_NEAR(1e-4 + 9e-4 * 0.5 * (1 + cos(M_PI * 0.99)), last, 1e-15);
    EXPECT(last > 1e-4);
    EXPECT_NEAR(1e-4, cb_schedule_lr(&s, 110), 1e-15);  /* the end of the run */
    EXPECT_NEAR(1e-4, cb_schedule_lr(&s, 500), 1e-15);  /* past it: min_lr */
}

TEST(linear_constant_none) {
    cb_schedule s = {.kind = CB_SCHED_LINEAR, .lr = 1.0, .min_lr = 0.0, .warmup = 0, .total = 4};
    EXPECT_NEAR(1.0, cb_schedule_lr(&s, 0), 1e-15);
    EXPECT_NEAR(0.75, cb_schedule_lr(&s, 1), 1e-15);
    EXPECT_NEAR(0.25, cb_schedule_lr(&s, 3), 1e-15);
    s.kind = CB_SCHED_CONSTANT;
    s.warmup = 2;
    EXPECT_NEAR(0.5, cb_schedule_lr(&s, 0), 1e-15);
    EXPECT_NEAR(1.0, cb_schedule_lr(&s, 1), 1e-15);
    EXPECT_NEAR(1.0, cb_schedule_lr(&s, 3), 1e-15);
    s.kind = CB_SCHED_NONE; /* no warmup at all */
    EXPECT_NEAR(1.0, cb_schedule_lr(&s, 0), 1e-15);
}

TEST(warmup_as_long_as_the_run) {
    cb_schedule s = {.kind = CB_SCHED_COSINE, .lr = 2.0, .min_lr = 1.0, .warmup = 5, .total = 5};
    EXPECT_NEAR(0.4, cb_schedule_lr(&s, 0), 1e-15);
    EXPECT_NEAR(2.0, cb_schedule_lr(&s, 4), 1e-15);
    EXPECT_NEAR(1.0, cb_schedule_lr(&s, 5), 1e-15); /* no decay span: straight to min_lr */
}
