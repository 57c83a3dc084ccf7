/* test_clip.c: the global gradient norm and clipping by it. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include "test.h"
#include "train/clip.h"

TEST(norm_and_clip_by_hand) {
    float g[4] = {3, 0, 4, 0};
    EXPECT_NEAR(5.0, cb_grad_norm(g, 4), 1e-12);
    EXPECT_NEAR(5.0, cb_grad_clip(g, 4, 10.0), 1e-12); /* below the bound: untouched */
    EXPECT_NEAR(3.0, g[0], 0);
    EXPECT_NEAR(5.0, cb_grad_clip(g, 4, 1.0), 1e-12);  /* returns the norm before */
    EXPECT_NEAR(3.0 / (5.0 + 1e-6), g[0], 1e-7);
    EXPECT_NEAR(4.0 / (5.0 + 1e-6), g[2], 1e-7);
    EXPECT_NEAR(1.0, cb_grad_norm(g, 4), 1e-6);
    float h[2] = {3, 4};
    cb_grad_clip(h, 2, 0.0); /* 0: off */
    EXPECT_NEAR(3.0, h[0], 0);
}

TEST(non_finite) {
    float g[3] = {1, NAN, 2};
    EXPECT(isnan(cb_grad_norm(g, 3)));
    float h[3] = {1, INFINITY, 2};
    EXPECT(isinf(cb_grad_clip(h, 3, 1.0)));
    EXPECT_NEAR(1.0, h[0], 0); /* not scaled by a meaningless factor */
}

TEST(same_norm_for_any_thread_count) {
    size_t n = 1000003;
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (float)sin((double)i * 0.37) * (float)(1 + i % 7);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    double one = cb_grad_norm(g, n);
    omp_set_num_threads(3);
    double three = cb_grad_norm(g, n);
    omp_set_num_threads(saved);
    EXPECT(one == three);
    double direct = 0;
    for (size_t i = 0; i < n; i++) direct += (double)g[i] * g[i];
    EXPECT_NEAR(sqrt(direct), one, 1e-9 * one);
    free(g);
}
