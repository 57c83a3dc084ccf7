/* test_embedding.c: cb_embedding (token + optional position table) against central differences
 * (double), its float twin, PyTorch (tests/reference/layers/embedding.safetensors), and across
 * thread counts (repeated tokens make the scatter-add order matter). */
#include <omp.h>
#include "fixture_read.h"
#include "layer_check.h"
#include "layers/embedding.h"

typedef struct {
    int B, T, C, V, maxT, pos0;
    int32_t *tokens;
    double *wte, *wpe, *R, *out;
} embedding_case;

static double embedding_loss(void *ctx) {
    embedding_case *c = ctx;
    cb_embedding_forward_f64(c->out, c->tokens, c->wte, c->wpe, c->B, c->T, c->C, c->pos0);
    return lc_dot(c->out, c->R, (size_t)c->B * c->T * c->C);
}

static void embedding_case_init(embedding_case *c, int B, int T, int C, int V, int maxT, int pos0) {
    c->B = B, c->T = T, c->C = C, c->V = V, c->maxT = maxT, c->pos0 = pos0;
    size_t N = (size_t)B * T;
    c->tokens = lc_alloc(N * sizeof(int32_t));
    // few distinct tokens, so most rows of the table collect several positions
    for (size_t n = 0; n < N; n++) c->tokens[n] = (int32_t)(lc_next() % (uint64_t)(V < 5 ? V : V / 2));
    c->wte = lc_rand((size_t)V * C, 1);
    c->wpe = lc_rand((size_t)maxT * C, 1);
    c->R = lc_rand(N * C, 1);
    c->out = lc_zeros(N * C);
}

TEST(embedding_gradients_match_finite_differences) {
    lc_seed(61);
    embedding_case c;
    embedding_case_init(&c, 2, 4, 5, 7, 9, 3);
    size_t nte = (size_t)c.V * c.C, npe = (size_t)c.maxT * c.C;
    double *dwte = lc_zeros(nte), *dwpe = lc_zeros(npe);
    embedding_loss(&c);
    cb_embedding_backward_f64(dwte, dwpe, c.R, c.tokens, c.B, c.T, c.C, c.pos0);
    LC_CHECK_GRAD("embedding dwte", embedding_loss, &c, c.wte, dwte, nte);
    LC_CHECK_GRAD("embedding dwpe", embedding_loss, &c, c.wpe, dwpe, npe);
    double *dwte1 = lc_copy(dwte, nte), *dwpe1 = lc_copy(dwpe, npe);
    cb_embedding_backward_f64(dwte, dwpe, c.R, c.tokens, c.B, c.T, c.C, c.pos0);
    LC_EXPECT_DIFF("embedding accumulate dwte", lc_diff_doubled(dwte, dwte1, nte), LC_ACCUM_TOL);
    LC_EXPECT_DIFF("embedding accumulate dwpe", lc_diff_doubled(dwpe, dwpe1, npe), LC_ACCUM_TOL);

    // token table only (embedder type: token)
    c.wpe = NULL;
    double *dwte_tok = lc_zeros(nte);
    embedding_loss(&c);
    cb_embedding_backward_f64(dwte_tok, NULL, c.R, c.tokens, c.B, c.T, c.C, c.pos0);
    LC_CHECK_GRAD("embedding (no positions) dwte", embedding_loss, &c, c.wte, dwte_tok, nte);
    lc_free_all();
}

TEST(embedding_float_matches_double) {
    lc_seed(62);
    embedding_case c;
    embedding_case_init(&c, 4, 32, 384, 100, 40, 5); // N*C above the OpenMP threshold
    size_t N = (size_t)c.B * c.T, nte = (size_t)c.V * c.C, npe = (size_t)c.maxT * c.C;
    double *dwte = lc_zeros(nte), *dwpe = lc_zeros(npe);
    embedding_loss(&c);
    cb_embedding_backward_f64(dwte, dwpe, c.R, c.tokens, c.B, c.T, c.C, c.pos0);
    float *wte = lc_to_float(c.wte, nte), *wpe = lc_to_float(c.wpe, npe), *R = lc_to_float(c.R, N * c.C);
    float *out = lc_zeros_f(N * c.C), *dwtef = lc_zeros_f(nte), *dwpef = lc_zeros_f(npe);
    cb_embedding_forward(out, c.tokens, wte, wpe, c.B, c.T, c.C, c.pos0);
    cb_embedding_backward(dwtef, dwpef, R, c.tokens, c.B, c.T, c.C, c.pos0);
    LC_EXPECT_DIFF("embedding out f32 vs f64", lc_diff_fd(out, c.out, N * c.C), LC_F32_TOL);
    LC_EXPECT_DIFF("embedding dwte f32 vs f64", lc_diff_fd(dwtef, dwte, nte), LC_F32_GRAD_TOL);
    LC_EXPECT_DIFF("embedding dwpe f32 vs f64", lc_diff_fd(dwpef, dwpe, npe), LC_F32_GRAD_TOL);
    lc_free_all();
}

TEST(embedding_matches_pytorch) {
    fx_file f;
    LC_FIXTURE_OPEN(&f, "layers/embedding.safetensors");
    const int B = 2, T = 3, C = 8, V = 11, maxT = 6;
    const size_t n = (size_t)B * T * C;
    int32_t *tokens = fx_tensor(&f, "tokens", "I32", (size_t)B * T, NULL);
    int32_t *pos0 = fx_tensor(&f, "pos0", "I32", 1, NULL);
    if (!tokens || !pos0) {
        FAILF("%.900s", f.why);
        fx_close(&f);
        return;
    }
    LC_FIXTURE_F32(wte, &f, "wte", (size_t)V * C);
    LC_FIXTURE_F32(wpe, &f, "wpe", (size_t)maxT * C);
    LC_FIXTURE_F32(want_out, &f, "out", n);
    LC_FIXTURE_F32(dout, &f, "dout", n);
    LC_FIXTURE_F32(want_dwte, &f, "dwte", (size_t)V * C);
    LC_FIXTURE_F32(want_dwpe, &f, "dwpe", (size_t)maxT * C);
    float *out = lc_zeros_f(n), *dwte = lc_zeros_f((size_t)V * C), *dwpe = lc_zeros_f((size_t)maxT * C);
    cb_embedding_forward(out, tokens, wte, wpe, B, T, C, pos0[0]);
    cb_embedding_backward(dwte, dwpe, dout, tokens, B, T, C, pos0[0]);
    LC_EXPECT_DIFF("embedding out vs torch", lc_diff_ff(out, want_out, n), LC_F32_TOL);
    LC_EXPECT_DIFF("embedding dwte vs torch", lc_diff_ff(dwte, want_dwte, (size_t)V * C), LC_F32_TOL);
    LC_EXPECT_DIFF("embedding dwpe vs torch", lc_diff_ff(dwpe, want_dwpe, (size_t)maxT * C), LC_F32_TOL);
    fx_close(&f);
    lc_free_all();
}

TEST(embedding_same_bits_on_any_thread_count) {
    lc_seed(63);
    embedding_case c;
    embedding_case_init(&c, 4, 64, 768, 50, 64, 0);
    size_t N = (size_t)c.B * c.T, nte = (size_t)c.V * c.C, npe = (size_t)c.maxT * c.C;
    float *wte = lc_to_float(c.wte, nte), *wpe = lc_to_float(c.wpe, npe), *dout = lc_to_float(c.R, N * c.C);
    float *out[2], *dwte[2], *dwpe[2];
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k == 0 ? 1 : 3);
        out[k] = lc_zeros_f(N * c.C), dwte[k] = lc_zeros_f(nte), dwpe[k] = lc_zeros_f(npe);
        cb_embedding_forward(out[k], c.tokens, wte, wpe, c.B, c.T, c.C, c.pos0);
        cb_embedding_backward(dwte[k], dwpe[k], dout, c.tokens, c.B, c.T, c.C, c.pos0);
    }
    omp_set_num_threads(saved);
    EXPECT(lc_same_bits(out[0], out[1], N * c.C));
    EXPECT(lc_same_bits(dwte[0], dwte[1], nte));
    EXPECT(lc_same_bits(dwpe[0], dwpe[1], npe));
    lc_free_all();
}
