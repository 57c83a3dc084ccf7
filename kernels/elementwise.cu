/* elementwise.cu: residual add, accumulation, scaling and concatenation of
 * layers/elementwise.c. */
#include "common.cuh"

static __global__ void add(float *out, const float *a, const float *b, size_t n) {
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    CBK_FOR(i, n) out[i] = a[i] + b[i];
}
static __global__ void axpy(float *dst, const float *src, float s, size_t n) {
    CBK_FOR(i, n) dst[i] += s * src[i];
}
static __global__ void accumulate(float *dst, const float *src, size_t n) {
    CBK_FOR(i, n) dst[i] += src[i];
}
static __global__ void scale(float *x, size_t n, float s) {
    CBK_FOR(i, n) x[i] *= s;
}
static __global__ void concat_part(float *out, const float *part, int W, int col0, int w, size_t n) {
    CBK_FOR(i, n) out[(i / w) * W + col0 + i % w] = part[i];
}
static __global__ void concat_part_backward(float *dpart, const float *dout, int W, int col0, int w, size_t n) {
    CBK_FOR(i, n) dpart[i] += dout[(i / w) * W + col0 + i % w];
}

void cbk_add(float *out, const float *a, const float *b, size_t n) {
    if (n) cbk_launch(add, cbk_grid(n), CBK_THREADS, 0, out, a, b, n);
}
/* s = 1 adds plainly, as the CPU's cb_accumulate (1 * x is x, but keep the same op) */
void cbk_axpy(float *dst, const float *src, float s, size_t n) {
    if (!n) return;
    if (s == 1.0f) accumulate<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(dst, src, n);
    else axpy<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(dst, src, s, n);
}
void cbk_copy(float *dst, const float *src, size_t n) {
    if (n && dst != src) cudaMemcpyAsync(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice, cbk_stream);
}
void cbk_scale(float *x, size_t n, float s) {
    if (n) scale<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(x, n, s);
}
void cbk_concat_part(float *out, const float *part, int N, int W, int col0, int w) {
    size_t n = (size_t)N * w;
    if (n) concat_part<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(out, part, W, col0, w, n);
}
void cbk_concat_part_backward(float *dpart, const float *dout, int N, int W, int col0, int w) {
    size_t n = (size_t)N * w;
    if (n) concat_part_backward<<<cbk_grid(n), CBK_THREADS>>>(dpart, dout, W, col0, w, n);
}
