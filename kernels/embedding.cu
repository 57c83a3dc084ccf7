/* embedding.cu: token (and learned position) embedding, mirroring layers/embedding.c. */
#include "common.cuh"

static __global__ void embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                                         int T, int C, int pos0, const int *dpos, size_t n) {
    cbk_pdl_wait(); /* a decode step's launches (cbk_launch): the kernel before has ended */
    if (dpos) pos0 += *dpos;
    CBK_FOR(i, n) {
        size_t row = i / C;
        int c = (int)(i % C);
        float y = wte[(size_t)tokens[row] * C + c];
        if (wpe) y = y + wpe[(size_t)(pos0 + (int)(row % T)) * C + c];
        out[i] = y;
    }
}

void cbk_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T,
                           int C, int pos0) {
    size_t n = (size_t)B * T * C;
    embedding_forward<<<cbk_grid(n), CBK_THREADS, 0, cbk_stream>>>(out, tokens, wte, wpe, T, C, pos0, NULL, n);
}

void cbk_embedding_forward_at(float *out, const int32_t *tokens, const float *wte, const float *wpe, int T, int C,
                              const int *dpos) {
    size_t n = (size_t)T * C;
    cbk_launch(embedding_forward, cbk_grid(n), CBK_THREADS, 0, out, tokens, wte, wpe, T, C, 0, dpos, n);
}

// a token may repeat within the batch: its row of dwte is added to by several positions
static __global__ void embedding_backward_tokens(float *dwte, const float *dout, const int32_t *tokens, int C,
                                                 size_t n) {
    CBK_FOR(i, n) {
        size_t row = i / C;
        int c = (int)(i % C);
        atomicAdd(&dwte[(size_t)tokens[row] * C + c], dout[i]);
    }
}

// each position its own row, the batch summed in order as the CPU does
static __global__ void embedding_backward_positions(float *dwpe, const float *dout, int B, int T, int C) {
    CBK_FOR(i, (size_t)T * C) {
        int t = (int)(i / C), c = (int)(i % C);
        float acc = dwpe[i];
        for (int b = 0; b < B; b++) acc += dout[((size_t)b * T + t) * C + c];
        dwpe[i] = acc;
    }
}

void cbk_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                            int C) {
    size_t n = (size_t)B * T * C;
    if (dwte) embedding_backward_tokens<<<cbk_grid(n), CBK_THREADS>>>(dwte, dout, tokens, C, n);
    if (dwpe) embedding_backward_positions<<<cbk_grid((size_t)T * C), CBK_THREADS>>>(dwpe, dout, B, T, C);
}
