/* test_cuda_vmm.c: the CUDA backend's memory reserved by region (backend/cuda/vmm.c),
 * which fsdp's sharded buffers live in (train/fsdp.h). A reservation holds no memory;
 * commit backs the granules a region overlaps, zeroed; release zeroes the backed bytes
 * of a region and gives back the granules wholly inside (resident falls by exactly
 * those); what stays keeps its values. Then fsdp's gradient sums of a rank 0 of 2 (no
 * MPI: the sum is the identity) on the GPU: every block's gradients are committed before
 * its backward writes them (a missing commit is an illegal address), only this rank's
 * part holds values afterwards (those of a plain GPU pass, within 1e-6 normalised: the
 * same kernels, which may add in another order) and less memory than the whole buffer.
 * And FULL_SHARD's weights committed before each block's passes read them. Skips where
 * there is no GPU. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "train/fsdp.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

#ifdef CB_HAVE_CUDA

TEST(cuda_vmm_commit_release) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_error e;
    const size_t bytes = 5u << 21; /* 10 MiB */
    char *p = be->reserve(be, bytes, &e);
    if (!p) {
        FAILF("reserve: %s", e.msg);
        return;
    }
    size_t none = be->resident(be, p, bytes);
    EXPECT(be->commit(be, p, 0, 1, &e) == CB_OK);
    const size_t g = be->resident(be, p, bytes); /* one granule */
    EXPECT(be->commit(be, p, 0, 3 * g, &e) == CB_OK);
    size_t three = be->resident(be, p, bytes);
    size_t n = 3 * g / sizeof(float);
    float *h = malloc(3 * g), *back = malloc(3 * g);
    for (size_t i = 0; i < n; i++) h[i] = (float)(i % 1000) + 1;
    EXPECT(be->upload(be, p, h, 3 * g, &e) == CB_OK);
    be->release(be, p, g / 2, 2 * g + g / 2); /* granule 1 whole inside, halves of 0 and 2 */
    size_t after = be->resident(be, p, bytes);
    /* granule 1 is unmapped now: granules 0 and 2 alone are read */
    EXPECT(be->download(be, back, p, g, &e) == CB_OK);
    EXPECT(be->download(be, (char *)back + 2 * g, p + 2 * g, g, &e) == CB_OK);
    EXPECT(be->synchronize(be, &e) == CB_OK);
    int kept = 1, zero = 1;
    for (size_t i = 0; i < n; i++) {
        size_t b = i * sizeof(float);
        if (b < g / 2 || b >= 2 * g + g / 2) kept &= back[i] == h[i];
        else if (b < g || b >= 2 * g) zero &= back[i] == 0;
    }
    EXPECT(be->commit(be, p, g, 2 * g, &e) == CB_OK); /* backed again: zero */
    EXPECT(be->download(be, back, p + g, g, &e) == CB_OK);
    for (size_t i = 0; i < g / sizeof(float); i++) zero &= back[i] == 0;
    printf("  granule %zu KiB; resident %zu, 1 granule %zu, 3 granules %zu, after releasing one %zu\n", g >> 10, none,
           g, three, after);
    EXPECT(none == 0);
    EXPECT(g > 0 && three == 3 * g);
    EXPECT(after == 2 * g);
    EXPECT(kept);
    EXPECT(zero);
    be->unreserve(be, p, bytes);
    EXPECT(be->synchronize(be, &e) == CB_OK);
    free(h);
    free(back);
}

static const char *MODEL =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
    "  embedder: {type: token, vocab_size: 11, d_model: 256}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 8\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 256}\n"
    "              - {type: AttentionLayer, d_model: 256, n_heads: 4, n_kv_heads: 2}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 256}\n"
    "              - {type: SwiGLULayer, d_model: 256, d_ff: 512}\n"
    "      - {type: RMSNormLayer, d_model: 256}\n";

TEST(cuda_vmm_fsdp_gradients_kept_to_the_part) {
    cb_backend *be = gpu();
    if (!be) return;
    enum { B = 2, T = 8 };
    cb_error e;
    json_t *plan = test_compile(MODEL, "vmm");
    cb_model m;
    cb_program prog;
    if (!plan || cb_model_init(&m, plan, 3, &e) != CB_OK) {
        FAILF("model: %s", plan ? e.msg : "does not compile");
        json_decref(plan);
        return;
    }
    const size_t n = m.params.total_floats, bytes = n * sizeof(float);
    int32_t tok[2 * B * T];
    cb_rng rng;
    cb_rng_init(&rng, 4);
    for (int i = 0; i < 2 * B * T; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % 11);
    cb_run r;
    float *w = NULL, *g0 = NULL, *g = NULL;
    int32_t *dtok = NULL;
    int reserved = 0;
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK || cb_run_init_on(&r, be, &prog, 1, &e) != CB_OK) {
        FAILF("program: %s", e.msg);
        cb_model_free(&m);
        json_decref(plan);
        return;
    }
    w = be->alloc(be, bytes, &e);
    g0 = be->alloc(be, bytes, &e);
    dtok = be->alloc(be, sizeof tok, &e);
    g = cb_fsdp_buffer(be, n, &reserved, &e);
    EXPECT(w && g0 && g && dtok && reserved);
    be->upload(be, w, m.weights, bytes, &e);
    be->upload(be, dtok, tok, sizeof tok, &e);
    /* the plain pass */
    cb_run_forward(&r, &prog, w, dtok, dtok + B * T);
    cb_run_backward(&r, &prog, w, g0);
    /* rank 0 of 2 */
    cb_dist d = {0, 2, 0, NULL};
    size_t half = (n / 2 + 15) / 16 * 16, begin[2] = {0, half}, count[2] = {half, n - half};
    cb_dist_parts parts = {begin, count};
    cb_fsdp z;
    EXPECT(cb_fsdp_init(&z, &d, be, &prog, &m.params, &parts, 0, &e) == CB_OK);
    z.reserved = reserved;
    EXPECT(cb_fsdp_commit_part(&z, g, &e) == CB_OK);
    cb_fsdp_begin(&z, w, g);
    z.measuring = 1;
    r.on_block = cb_fsdp_on_block;
    r.on_block_ctx = &z;
    r.on_backward = cb_fsdp_on_backward;
    r.on_backward_ctx = &z;
    cb_run_forward(&r, &prog, w, dtok, dtok + B * T);
    cb_run_backward(&r, &prog, w, g);
    EXPECT(cb_fsdp_finish(&z, &e) == CB_OK);
    EXPECT(be->synchronize(be, &e) == CB_OK);
    float *h0 = malloc(bytes), *h = malloc(bytes);
    size_t resident = be->resident(be, g, bytes);
    be->download(be, h0, g0, bytes, &e);
    EXPECT(be->commit(be, g, 0, bytes, &e) == CB_OK); /* the released granules are unmapped: back first */
    EXPECT(be->download(be, h, g, bytes, &e) == CB_OK);
    double err = 0, norm = 0;
    int zero = 1;
    for (size_t i = 0; i < half; i++) {
        err += ((double)h[i] - h0[i]) * ((double)h[i] - h0[i]);
        norm += (double)h0[i] * h0[i];
    }
    for (size_t i = half; i < n; i++) zero &= h[i] == 0;
    double rel = norm > 0 ? sqrt(err / norm) : 1;
    printf("  %zu floats (%.1f MB), part %zu; %d sums; held at the peak %.1f MB, after %.1f MB; part error %.3g "
           "(tol 1e-6)\n", n, bytes / 1048576.0, half, z.sums, z.peak_g / 1048576.0, resident / 1048576.0, rel);
    EXPECT(rel <= 1e-6);
    EXPECT(zero);
    EXPECT(z.peak_g < bytes);
    EXPECT(resident < bytes); /* the part and the granule it shares with rank 1's, not the whole */
    cb_fsdp_free(&z);
    free(h0);
    free(h);
    be->free(be, w);
    be->free(be, g0);
    be->free(be, dtok);
    cb_fsdp_buffer_free(be, g, n);
    cb_run_free(&r);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

/* FULL_SHARD's weights on the GPU, rank 0 of 2 without MPI (a gather is the identity, so
 * rank 1's parts of the blocks read zero once released): the pass must read its weights
 * only from committed memory (an uncommitted read is an illegal address) and give the
 * loss and gradients of a plain pass over the weights with those parts zeroed; after the
 * pass the blocks hold less memory than the whole buffer. */
TEST(cuda_vmm_fsdp_full_shard_weights) {
    cb_backend *be = gpu();
    if (!be) return;
    enum { B = 2, T = 8 };
    cb_error e;
    json_t *plan = test_compile(MODEL, "vmm");
    cb_model m;
    cb_program prog;
    if (!plan || cb_model_init(&m, plan, 5, &e) != CB_OK) {
        FAILF("model: %s", plan ? e.msg : "does not compile");
        json_decref(plan);
        return;
    }
    const size_t n = m.params.total_floats, bytes = n * sizeof(float);
    int32_t tok[2 * B * T];
    cb_rng rng;
    cb_rng_init(&rng, 6);
    for (int i = 0; i < 2 * B * T; i++) tok[i] = (int32_t)(cb_rng_next(&rng) % 11);
    cb_run r;
    if (cb_program_init(&prog, plan, &m.params, B, T, &e) != CB_OK || cb_run_init_on(&r, be, &prog, 1, &e) != CB_OK) {
        FAILF("program: %s", e.msg);
        cb_model_free(&m);
        json_decref(plan);
        return;
    }
    cb_dist d = {0, 2, 0, NULL};
    size_t half = (n / 2 + 15) / 16 * 16, begin[2] = {0, half}, count[2] = {half, n - half};
    cb_dist_parts parts = {begin, count};
    cb_fsdp z;
    EXPECT(cb_fsdp_init(&z, &d, be, &prog, &m.params, &parts, 1, &e) == CB_OK);
    /* the reference weights: rank 1's parts of the sharded blocks zeroed */
    float *ref = malloc(bytes), *h0 = malloc(bytes), *h = malloc(bytes);
    memcpy(ref, m.weights, bytes);
    for (int s = 0; s < z.n_segments; s++)
        for (size_t i = z.unit_lo[s] > half ? z.unit_lo[s] : half; i < z.unit_hi[s]; i++) ref[i] = 0;
    int wres = 0, gres = 0;
    float *w0 = be->alloc(be, bytes, &e), *g0 = be->alloc(be, bytes, &e);
    int32_t *dtok = be->alloc(be, sizeof tok, &e);
    float *w = cb_fsdp_buffer(be, n, &wres, &e), *g = cb_fsdp_buffer(be, n, &gres, &e);
    EXPECT(w0 && g0 && dtok && w && g && wres && gres);
    z.reserved = wres && gres;
    be->upload(be, w0, ref, bytes, &e);
    be->upload(be, dtok, tok, sizeof tok, &e);
    float l0 = (float)cb_run_forward(&r, &prog, w0, dtok, dtok + B * T);
    cb_run_backward(&r, &prog, w0, g0);
    /* as the trainer sets it up: the weights whole, then the blocks cut to this rank's part */
    EXPECT(be->commit(be, w, 0, bytes, &e) == CB_OK);
    EXPECT(be->upload(be, w, m.weights, bytes, &e) == CB_OK);
    EXPECT(cb_fsdp_commit_part(&z, g, &e) == CB_OK);
    cb_fsdp_shard_weights(&z, w);
    size_t sharded = be->resident(be, w, bytes);
    cb_fsdp_begin(&z, w, g);
    r.on_block = cb_fsdp_on_block;
    r.on_block_ctx = &z;
    r.on_backward = cb_fsdp_on_backward;
    r.on_backward_ctx = &z;
    float l1 = (float)cb_run_forward(&r, &prog, w, dtok, dtok + B * T);
    cb_run_backward(&r, &prog, w, g);
    EXPECT(cb_fsdp_finish(&z, &e) == CB_OK);
    EXPECT(be->synchronize(be, &e) == CB_OK);
    size_t after = be->resident(be, w, bytes);
    be->download(be, h0, g0, bytes, &e);
    EXPECT(be->commit(be, g, 0, bytes, &e) == CB_OK);
    EXPECT(be->download(be, h, g, bytes, &e) == CB_OK);
    double err = 0, norm = 0;
    for (size_t i = 0; i < half; i++) {
        err += ((double)h[i] - h0[i]) * ((double)h[i] - h0[i]);
        norm += (double)h0[i] * h0[i];
    }
    double rel = norm > 0 ? sqrt(err / norm) : 1;
    printf("  loss %.7f plain, %.7f sharded; part gradient error %.3g (tol 1e-6); weights held %.1f MB sharded, "
           "%.1f MB after the pass, %.1f MB whole\n", l0, l1, rel, sharded / 1048576.0, after / 1048576.0,
           bytes / 1048576.0);
    EXPECT(fabsf(l1 - l0) <= 1e-6f * fabsf(l0));
    EXPECT(rel <= 1e-6);
    EXPECT(sharded < bytes && after < bytes);
    cb_fsdp_free(&z);
    free(ref), free(h0), free(h);
    be->free(be, w0);
    be->free(be, g0);
    be->free(be, dtok);
    cb_fsdp_buffer_free(be, w, n);
    cb_fsdp_buffer_free(be, g, n);
    cb_run_free(&r);
    cb_program_free(&prog);
    cb_model_free(&m);
    json_decref(plan);
}

#else
TEST(cuda_vmm) { SKIP("this build has no cuda backend (no nvcc)"); }
#endif
