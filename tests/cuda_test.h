/* cuda_test.h: the GPU tests' way to the CUDA backend: the backend, or NULL with the test
 * marked skipped and why (no GPU on this machine, or a build without nvcc), so each
 * GPU test skips cleanly where CI runs and runs for real on the device machine. */
#ifndef CB_TESTS_CUDA_TEST_H
#define CB_TESTS_CUDA_TEST_H

#include <stdio.h>
#include "backend/backend.h"
#include "test.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

static inline cb_backend *gpu(void) {
#ifdef CB_HAVE_CUDA
    cb_backend *be = cb_backend_cuda();
    if (!be) {
        snprintf(cb_test_why, sizeof cb_test_why, "%s", cb_backend_cuda_absent());
        cb_test_skipped = 1;
    }
    return be;
#else
    snprintf(cb_test_why, sizeof cb_test_why, "this build has no cuda backend (no nvcc)");
    cb_test_skipped = 1;
    return NULL;
#endif
}

#endif
