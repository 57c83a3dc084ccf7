/* rope.cu: rotary position embedding, layers/rope.c's rope_apply (rotate_half pairs i
 * and i + D/2); the tables are the CPU's, uploaded once per run. */
#include "common.cuh"

static __global__ void rope_apply(float *out, const float *in, const float *cos_t, const float *sin_t, int T,
                                  int H, int D, int pos0, float sign, int accumulate, size_t n) {
    const int half = D / 2;
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    CBK_FOR(j, n) { // j over (B, T, H, half)
        int i = (int)(j % half);
        size_t rest = j / half; // (b, t, h)
        int t = (int)((rest / H) % T);
        size_t off = rest * D;
        float c = cos_t[(size_t)(pos0 + t) * half + i], si = sign * sin_t[(size_t)(pos0 + t) * half + i];
        float x1 = in[off + i], x2 = in[off + i + half];
        float y1 = x1 * c - x2 * si;
        float y2 = x2 * c + x1 * si;
        if (accumulate) {
            out[off + i] += y1;
            out[off + i + half] += y2;
        } else {
            out[off + i] = y1;
            out[off + i + half] = y2;
        }
    }
}

void cbk_rope(float *out, const float *in, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
              int pos0, float sign, int accumulate) {
    size_t n = (size_t)B * T * H * (D / 2);
    if (n) cbk_launch(rope_apply, cbk_grid(n), CBK_THREADS, 0, out, in, cos_t, sin_t, T, H, D, pos0, sign, accumulate, n);
}
