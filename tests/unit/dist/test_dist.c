/* test_dist.c: a process that no launcher started is rank 0 of 1, and every collective
 * leaves its data as it is (the multi-rank numbers: tests/cli/train_mpi.sh under mpirun). */
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "dist/dist.h"
#include "test.h"

TEST(dist_alone) {
    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_SIZE");
    cb_dist d;
    cb_error e;
    cb_error_clear(&e);
    EXPECT(cb_dist_init(&d, &e) == CB_OK);
    EXPECT(d.rank == 0 && d.world == 1 && d.mpi == 0);
    EXPECT(!cb_is_distributed() && cb_rank() == 0 && cb_world_size() == 1 && cb_is_main_process());
    float x[3] = {1.5f, -2, 3};
    double s = 4.25;
    EXPECT(cb_dist_sum_f32(&d, cb_backend_cpu(), x, 3, &e) == CB_OK);
    EXPECT(x[0] == 1.5f && x[1] == -2 && x[2] == 3);
    EXPECT(cb_dist_sum_f64(&d, &s, 1, &e) == CB_OK && s == 4.25);
    int any = -1;
    EXPECT(cb_dist_any(&d, 1, &any, &e) == CB_OK && any == 1);
    EXPECT(cb_dist_any(&d, 0, &any, &e) == CB_OK && any == 0);
    char bytes[4] = "abc";
    EXPECT(cb_dist_broadcast(&d, cb_backend_cpu(), bytes, 4, &e) == CB_OK && strcmp(bytes, "abc") == 0);
    EXPECT(cb_dist_attach(&d, cb_backend_cpu(), &e) == CB_OK && d.nccl == NULL); /* nothing to attach */
    cb_dist_finalize(&d);
}
