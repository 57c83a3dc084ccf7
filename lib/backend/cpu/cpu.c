/* cpu.c: the CPU backend: host memory, the layers of layers/ through ops.c, decoding
 * through decode.c, the optimizer and clipping of train/. Every later backend is tested
 * against it. */
#include "backend/cpu/cpu.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cpu/parallel.h"
#include "train/clip.h"
#include "train/distill.h"
#include "train/optimizer.h"

static void *cpu_alloc(cb_backend *be, size_t bytes, cb_error *e) {
    (void)be;
    size_t n = ((bytes ? bytes : 1) + 63) / 64 * 64; /* never zero-sized */
    void *p = aligned_alloc(64, n);
    if (!p) {
        cb_fail(e, CB_E_RUNTIME, "", "out of memory: %zu MB", n >> 20);
        return NULL;
    }
    memset(p, 0, n);
    return p;
}

static void cpu_free(cb_backend *be, void *p) {
    (void)be;
    free(p);
}

static int cpu_copy(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e) {
    (void)be, (void)e;
    if (bytes && dst != src) memcpy(dst, src, bytes);
    return CB_OK;
}

static void cpu_zero(cb_backend *be, void *p, size_t bytes) {
    (void)be;
    memset(p, 0, bytes);
}

static int cpu_synchronize(cb_backend *be, cb_error *e) {
    (void)be, (void)e;
    return CB_OK;
}

static int cpu_op_forward(cb_backend *be, cb_pass *p, int i, cb_error *e) {
    (void)be;
    return cb_cpu_op_forward(p, i, e);
}
static void cpu_op_backward(cb_backend *be, cb_pass *p, int i) {
    (void)be;
    cb_cpu_op_backward(p, i);
}
static float cpu_loss_forward(cb_backend *be, cb_pass *p) {
    (void)be;
    return cb_cpu_loss_forward(p);
}
static void cpu_loss_backward(cb_backend *be, cb_pass *p) {
    (void)be;
    cb_cpu_loss_backward(p);
}

/* The fused head's chunk: about 32 MB of logits (256 rows of a 32000-word vocabulary), so
 * each chunk's logits are still in the caches when they become their gradient and its two
 * products read them, and no fewer than 64 rows, which keeps the products' matrices tall. */
static int cpu_head_chunk_rows(cb_backend *be, int N, int V) {
    (void)be;
    size_t rows = ((size_t)32 << 20) / ((size_t)V * sizeof(float));
    if (rows < 64) rows = 64;
    return rows < (size_t)N ? (int)rows : N;
}
static float cpu_head_loss(cb_backend *be, cb_pass *p, int chunk_rows) {
    (void)be;
    return cb_cpu_head_loss(p, chunk_rows);
}

static void cpu_scale(cb_backend *be, float *x, size_t n, float s) {
    (void)be;
#pragma omp parallel for if (n > 65536) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static double cpu_distill_kl(cb_backend *be, float *ds, const float *s, const float *t, int rows, int V, double temp,
                             double scale) {
    (void)be;
    return cb_distill_kl(ds, s, t, rows, V, temp, scale);
}

static double cpu_grad_clip(cb_backend *be, float *g, size_t n, double max_norm) {
    (void)be;
    return cb_grad_clip(g, n, max_norm);
}

static void cpu_optimizer_step(cb_backend *be, cb_optimizer *o, float *w, const float *g, float *m, float *v,
                               double lr) {
    (void)be;
    cb_optimizer_step_state(o, w, g, m, v, lr);
}

/* A decoding pass runs its products and attention on the infer pool (parallel.h); the
 * layer functions' own OpenMP regions (norms, adds over a prefill chunk) are held to one
 * thread meanwhile, since a second team of threads spinning after each of them took the
 * cores from the pool's workers (40% of a prefill). */
static int omp_threads_outside;
static void cpu_decode_begin(cb_backend *be) {
    (void)be;
    cb_parallel_threads(); /* the pool starts with all of OpenMP's threads */
    omp_threads_outside = omp_get_max_threads();
    omp_set_num_threads(1);
}
static void cpu_decode_end(cb_backend *be) {
    (void)be;
    omp_set_num_threads(omp_threads_outside);
}

static cb_backend cpu_backend = {
    .name = "cpu",
    .device = CB_DEVICE_CPU,
    .unified = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .op_forward = cpu_op_forward,
    .op_backward = cpu_op_backward,
    .loss_forward = cpu_loss_forward,
    .loss_backward = cpu_loss_backward,
    .scale = cpu_scale,
    .grad_clip = cpu_grad_clip,
    .distill_kl = cpu_distill_kl,
    .optimizer_step = cpu_optimizer_step,
    .decode_init = cb_cpu_decode_init,
    .decode_reserve = cb_cpu_decode_reserve,
    .decode_truncate = cb_cpu_decode_truncate,
    .decode_free = cb_cpu_decode_free,
    .decode_begin = cpu_decode_begin,
    .decode_end = cpu_decode_end,
    .memory_info = cb_cpu_memory_info,
    .reserve = cb_cpu_reserve,
    .release = cb_cpu_release,
    .unreserve = cb_cpu_unreserve,
    .head_chunk_rows = cpu_head_chunk_rows,
    .head_loss = cpu_head_loss,
    .resident = cb_cpu_resident,
};

cb_backend *cb_backend_cpu(void) { return &cpu_backend; }
