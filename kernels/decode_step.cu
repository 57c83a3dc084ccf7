/* decode_step.cu: what a decode step captured as a CUDA graph (backend/cuda/decode.c)
 * needs beside the layers' kernels: the launch stream they all go to, the step's RoPE rows
 * taken on the device from tables kept there (the position read from device memory, so
 * one graph serves every step), and greedy sampling on the device (the argmax of the
 * logits, as infer/sample.c's cb_argmax), so that a step brings back a token id, not V
 * floats. */
#include "common.cuh"

cudaStream_t cbk_stream = 0;
int cbk_pdl = 0;

void cbk_set_stream(void *stream) { cbk_stream = (cudaStream_t)stream; }
void cbk_set_pdl(int on) { cbk_pdl = on; }

/* rows (cos then sin, half floats each) of position *dpos of a table (cap, half) each */
static __global__ void rope_rows_at(float *cos_out, float *sin_out, const float *cos_tab, const float *sin_tab,
                                    const int *dpos, int half) {
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    const size_t off = (size_t)*dpos * half;
    for (int j = threadIdx.x; j < half; j += blockDim.x) {
        cos_out[j] = cos_tab[off + j];
        sin_out[j] = sin_tab[off + j];
    }
}

void cbk_rope_rows_at(float *cos_out, float *sin_out, const float *cos_tab, const float *sin_tab, const int *dpos,
                      int half) {
    if (half > 0) cbk_launch(rope_rows_at, 1, 128, 0, cos_out, sin_out, cos_tab, sin_tab, dpos, half);
}

#define AM_THREADS 1024

/* out[0] = the first index of the largest finite value of x (n), -1 when none is finite;
 * out[1] = 1 when some value is not finite. One block: the logits were just written and
 * sit in L2; V reads of 4 bytes are a few microseconds. */
static __global__ void __launch_bounds__(AM_THREADS) argmax_first(int32_t *out, const float *x, int n) {
    __shared__ float sv[AM_THREADS / 32];
    __shared__ int si[AM_THREADS / 32], sbad[AM_THREADS / 32];
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    float best = -INFINITY;
    int at = -1, bad = 0;
    for (int i = threadIdx.x; i < n; i += AM_THREADS) { /* increasing i: the first of equals stays */
        const float v = x[i];
        if (!isfinite(v)) {
            bad = 1;
        } else if (at < 0 || v > best) {
            best = v;
            at = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, at, o);
        bad |= __shfl_xor_sync(0xffffffffu, bad, o);
        if (oi >= 0 && (at < 0 || ov > best || (ov == best && oi < at))) best = ov, at = oi;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sv[warp] = best, si[warp] = at, sbad[warp] = bad;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < AM_THREADS / 32; w++) {
            bad |= sbad[w];
            if (si[w] >= 0 && (at < 0 || sv[w] > best || (sv[w] == best && si[w] < at))) best = sv[w], at = si[w];
        }
        out[0] = at;
        out[1] = bad;
    }
}

void cbk_argmax(int32_t *out, const float *x, int n) {
    cbk_launch(argmax_first, 1, AM_THREADS, 0, out, x, n);
}
