/* test_fsdp.c: fsdp's memory by region (train/fsdp.h) on one process. The CPU backend's
 * reserved memory: released bytes read zero, whole pages go back (mincore counts them).
 * The plan: the blocks' sharded ranges and the ranges kept whole cut the buffer without
 * overlap, the embeddings and final norm kept. The block hooks of the pass loop
 * (backend/pass.c): a hook that zeroes each block's sharded range after its forward and
 * backward and restores it before them must leave the loss and every gradient bit for bit
 * those of a plain pass, with and without activation checkpointing; a range too narrow,
 * or a hook called late, reads zeros. The gradient sums of a rank 0 of 2 (no MPI: the sum
 * itself is the identity): after the pass only its part holds memory and values, equal
 * to the plain gradients there. FULL_SHARD's own hooks the same way: the pass over the
 * sharded weights is the plain pass over the weights with rank 1's parts zeroed. Two-rank
 * runs are in tests/cli/train_mpi.sh. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "backend/pass.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/run.h"
#include "model_util.h"
#include "train/fsdp.h"

static const char *LLAMA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: TIE\n"
    "  embedder: {type: token, vocab_size: 11, d_model: 32}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 4\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 32}\n"
    "              - {type: AttentionLayer, d_model: 32, n_heads: 4, n_kv_heads: 2}\n"
    "              - {type: DropoutLayer, p: 0.2}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 32}\n"
    "              - {type: SwiGLULayer, d_model: 32, d_ff: 64}\n"
    "      - {type: RMSNormLayer, d_model: 32}\n";

enum { B = 2, T = 6 };

typedef struct fixture {
    json_t *plan;
    cb_model m;
    cb_program prog;
    int32_t tokens[B * T], targets[B * T];
    cb_dist dist;       /* rank 0 of 2, no MPI: the collectives do nothing */
    cb_dist_parts parts;
    size_t begin[2], count[2];
} fixture;

static int fixture_init(fixture *f, int tie, int checkpoint) {
    memset(f, 0, sizeof *f);
    char yaml[2048];
    const char *at = strstr(LLAMA, "TIE");
    snprintf(yaml, sizeof yaml, "%.*s%s%s", (int)(at - LLAMA), LLAMA, tie ? "true" : "false", at + 3);
    cb_error e;
    if (!(f->plan = test_compile(yaml, "fsdp"))) return 0;
    if (cb_model_init(&f->m, f->plan, 7, &e) != CB_OK ||
        cb_program_init(&f->prog, f->plan, &f->m.params, B, T, &e) != CB_OK) {
        FAILF("fsdp: %s", e.msg);
        return 0;
    }
    if (checkpoint) cb_program_recompute(&f->prog, 0);
    for (size_t i = 0; i < f->m.params.total_floats; i++) f->m.weights[i] *= 4.0f; /* signal on every path */
    cb_rng rng;
    cb_rng_init(&rng, 5);
    for (int i = 0; i < B * T; i++) {
        f->tokens[i] = (int32_t)(cb_rng_next(&rng) % 11);
        f->targets[i] = (int32_t)(cb_rng_next(&rng) % 11);
    }
    f->dist = (cb_dist){0, 2, 0, NULL};
    const size_t n = f->m.params.total_floats, half = (n / 2 + 15) / 16 * 16; /* as train/shard.c cuts */
    f->begin[0] = 0, f->count[0] = half, f->begin[1] = half, f->count[1] = n - half;
    f->parts.begin = f->begin;
    f->parts.count = f->count;
    return 1;
}

static void fixture_free(fixture *f) {
    cb_program_free(&f->prog);
    cb_model_free(&f->m);
    json_decref(f->plan);
}

/* One training pass; hooks as given. The loss comes back, the gradients in g. */
static float pass(fixture *f, const float *w, float *g, void (*on_block)(void *, int, int), void *block_ctx,
                  void (*on_backward)(void *, int), void *backward_ctx) {
    cb_error e;
    cb_run r;
    if (cb_run_init(&r, &f->prog, 1, &e) != CB_OK) return -1;
    r.dropout_seed = 77;
    r.on_block = on_block;
    r.on_block_ctx = block_ctx;
    float loss = (float)cb_run_forward(&r, &f->prog, w, f->tokens, f->targets);
    r.on_backward = on_backward;
    r.on_backward_ctx = backward_ctx;
    cb_run_backward(&r, &f->prog, w, g);
    cb_run_free(&r);
    return loss;
}

TEST(fsdp_reserved_pages_release) {
    cb_backend *be = cb_backend_cpu();
    cb_error e;
    const size_t n = 16 * 1024; /* 16 pages of 4 KiB */
    int reserved;
    float *x = cb_fsdp_buffer(be, n, &reserved, &e);
    if (!x) {
        FAILF("reserve: %s", e.msg);
        return;
    }
    size_t untouched = cb_fsdp_resident(be, x, n);
    for (size_t i = 0; i < n; i++) x[i] = (float)i + 1;
    size_t all = cb_fsdp_resident(be, x, n);
    cb_fsdp_release(be, x, 100, 5000); /* bytes 400 .. 20000: pages 1-3 whole, the ends partial */
    size_t after = cb_fsdp_resident(be, x, n);
    int zero = 1, kept = 1;
    for (size_t i = 0; i < n; i++) {
        if (i >= 100 && i < 5000) zero &= x[i] == 0;
        else kept &= x[i] == (float)i + 1;
    }
    printf("  resident: %zu untouched, %zu written, %zu after releasing 3 whole pages\n", untouched, all, after);
    EXPECT(untouched == 0);
    EXPECT(all == n * sizeof(float));
    EXPECT(after == all - 3 * 4096);
    EXPECT(zero);
    EXPECT(kept);
    cb_fsdp_buffer_free(be, x, n);
}

/* The sharded ranges are the four blocks; what is kept whole (embedding, final norm,
 * head) and the blocks cut the buffer in order without overlap. Tied or not. */
static void check_plan(int tie) {
    fixture f;
    if (!fixture_init(&f, tie, 0)) return;
    cb_error e;
    cb_fsdp z;
    if (cb_fsdp_init(&z, &f.dist, cb_backend_cpu(), &f.prog, &f.m.params, &f.parts, 1, &e) != CB_OK) {
        FAILF("plan: %s", e.msg);
        fixture_free(&f);
        return;
    }
    EXPECT_EQ_INT(4, z.n_units);
    /* walk the buffer: kept and sharded ranges alternate and meet */
    size_t at = 0;
    int k = 0, s = 0, ok = 1;
    while (at < z.n && ok) {
        if (k < z.n_kept && z.kept[2 * k] == at) at = z.kept[2 * k++ + 1];
        else if (s < z.n_segments && z.unit_lo[s] == at) at = z.unit_hi[s++];
        else ok = 0;
    }
    if (!ok || at != z.n || k != z.n_kept || s != 4)
        FAILF("tie %d: the ranges do not cut the buffer (stopped at %zu of %zu; %d kept, %d blocks)", tie, at, z.n, k, s);
    const cb_param *emb = &f.m.params.items[0];
    EXPECT(z.n_kept >= 2 && z.kept[0] == 0 && z.kept[1] >= emb->numel); /* the embedding, first */
    printf("  tie %d: %d blocks sharded (first [%zu, %zu)), %d ranges kept, %zu floats\n", tie, z.n_units, z.unit_lo[0],
           z.unit_hi[0], z.n_kept, z.n);
    cb_fsdp_free(&z);
    fixture_free(&f);
}
TEST(fsdp_plan_blocks_and_kept_ranges) {
    check_plan(0);
    check_plan(1);
}

/* A stand-in for FULL_SHARD's gathers on one process: each block's sharded range zeroed
 * after its forward and its backward, restored from the true weights before them. */
typedef struct sim {
    const cb_fsdp *z;
    float *w;          /* the pass's weights */
    const float *true_w;
    int events;
} sim;
static void sim_block(void *ctx, int s, int event) {
    sim *m = ctx;
    size_t lo = m->z->unit_lo[s], hi = m->z->unit_hi[s];
    if (event == CB_BLOCK_FORWARD || event == CB_BLOCK_BACKWARD)
        memcpy(m->w + lo, m->true_w + lo, (hi - lo) * sizeof(float));
    else
        memset(m->w + lo, 0, (hi - lo) * sizeof(float));
    m->events++;
}

static void check_hooks(int checkpoint) {
    fixture f;
    if (!fixture_init(&f, 1, checkpoint)) return;
    cb_error e;
    cb_fsdp z;
    if (cb_fsdp_init(&z, &f.dist, cb_backend_cpu(), &f.prog, &f.m.params, &f.parts, 1, &e) != CB_OK) {
        FAILF("hooks: %s", e.msg);
        fixture_free(&f);
        return;
    }
    const size_t n = f.m.params.total_floats;
    float *g0 = calloc(n, sizeof *g0), *g1 = calloc(n, sizeof *g1), *w = malloc(n * sizeof *w);
    memcpy(w, f.m.weights, n * sizeof *w);
    for (int s = 0; s < z.n_segments; s++) memset(w + z.unit_lo[s], 0, (z.unit_hi[s] - z.unit_lo[s]) * sizeof *w);
    float l0 = pass(&f, f.m.weights, g0, NULL, NULL, NULL, NULL);
    sim m = {&z, w, f.m.weights, 0};
    float l1 = pass(&f, w, g1, sim_block, &m, NULL, NULL);
    printf("  checkpointing %d: loss %.7f plain, %.7f with the blocks released between passes (%d events)\n",
           checkpoint, l0, l1, m.events);
    EXPECT_EQ_INT(4 * 4, m.events);
    if (l0 != l1) FAILF("checkpointing %d: loss %.9g, want %.9g", checkpoint, l1, l0);
    if (memcmp(g0, g1, n * sizeof *g0) != 0) FAILF("checkpointing %d: the gradients differ", checkpoint);
    free(g0), free(g1), free(w);
    cb_fsdp_free(&z);
    fixture_free(&f);
}
TEST(fsdp_block_hooks_bracket_every_read) {
    check_hooks(0);
    check_hooks(1);
}

/* Rank 0 of 2: after the pass only its part holds values (the plain gradients there) and
 * memory; the rest was released block by block, so at the peak less than the whole
 * buffer was held. */
TEST(fsdp_gradients_kept_to_the_part) {
    fixture f;
    if (!fixture_init(&f, 1, 0)) return;
    cb_error e;
    cb_backend *be = cb_backend_cpu();
    cb_fsdp z;
    if (cb_fsdp_init(&z, &f.dist, be, &f.prog, &f.m.params, &f.parts, 0, &e) != CB_OK) {
        FAILF("grads: %s", e.msg);
        fixture_free(&f);
        return;
    }
    const size_t n = f.m.params.total_floats;
    int reserved;
    float *g0 = calloc(n, sizeof *g0), *g = cb_fsdp_buffer(be, n, &reserved, &e);
    float l0 = pass(&f, f.m.weights, g0, NULL, NULL, NULL, NULL);
    z.reserved = reserved;
    cb_fsdp_begin(&z, f.m.weights, g);
    z.measuring = 1;
    float l1 = pass(&f, f.m.weights, g, NULL, NULL, cb_fsdp_on_backward, &z);
    EXPECT(cb_fsdp_finish(&z, &e) == CB_OK);
    size_t resident = cb_fsdp_resident(be, g, n);
    int same = memcmp(g0 + z.own_lo, g + z.own_lo, (z.own_hi - z.own_lo) * sizeof *g) == 0, zero = 1;
    for (size_t i = z.own_hi; i < n; i++) zero &= g[i] == 0;
    printf("  part [%zu, %zu) of %zu floats; %d sums; held at the peak %zu bytes, after %zu, whole %zu\n", z.own_lo,
           z.own_hi, n, z.sums, z.peak_g, resident, n * sizeof(float));
    EXPECT(l0 == l1);
    EXPECT(same);
    EXPECT(zero);
    EXPECT(z.sums >= 4);
    EXPECT(z.peak_g < n * sizeof(float));
    EXPECT(resident <= (z.own_hi - z.own_lo) * sizeof(float) + 4096);
    free(g0);
    cb_fsdp_buffer_free(be, g, n);
    cb_fsdp_free(&z);
    fixture_free(&f);
}

/* FULL_SHARD's own hooks, rank 0 of 2 without MPI (a gather is the identity, so rank 1's
 * parts of the blocks read zero once released): the loss and gradients are those of a
 * plain pass over the weights with those parts zeroed, bit for bit, with and without
 * activation checkpointing; the embedding, final norm and this rank's part are untouched
 * after the pass and the blocks hold less memory than the whole buffer. */
static void check_full_shard(int checkpoint) {
    fixture f;
    if (!fixture_init(&f, 1, checkpoint)) return;
    cb_error e;
    cb_backend *be = cb_backend_cpu();
    cb_fsdp z;
    if (cb_fsdp_init(&z, &f.dist, be, &f.prog, &f.m.params, &f.parts, 1, &e) != CB_OK) {
        FAILF("full: %s", e.msg);
        fixture_free(&f);
        return;
    }
    const size_t n = f.m.params.total_floats, half = f.count[0];
    float *ref = malloc(n * sizeof *ref), *g0 = calloc(n, sizeof *g0);
    memcpy(ref, f.m.weights, n * sizeof *ref);
    for (int s = 0; s < z.n_segments; s++)
        for (size_t i = z.unit_lo[s] > half ? z.unit_lo[s] : half; i < z.unit_hi[s]; i++) ref[i] = 0;
    int wres, gres;
    float *w = cb_fsdp_buffer(be, n, &wres, &e), *g = cb_fsdp_buffer(be, n, &gres, &e);
    z.reserved = wres && gres;
    memcpy(w, f.m.weights, n * sizeof *w);
    cb_fsdp_shard_weights(&z, w);
    float l0 = pass(&f, ref, g0, NULL, NULL, NULL, NULL);
    cb_fsdp_begin(&z, w, g);
    float l1 = pass(&f, w, g, cb_fsdp_on_block, &z, cb_fsdp_on_backward, &z);
    EXPECT(cb_fsdp_finish(&z, &e) == CB_OK);
    size_t held = cb_fsdp_resident(be, w, n);
    int same_w = memcmp(w, ref, n * sizeof *w) == 0, same_g = memcmp(g, g0, half * sizeof *g) == 0;
    printf("  checkpointing %d: loss %.7f plain over the zeroed weights, %.7f FULL_SHARD; weights held %zu of %zu "
           "bytes\n", checkpoint, l0, l1, held, n * sizeof(float));
    if (l0 != l1) FAILF("checkpointing %d: loss %.9g, want %.9g", checkpoint, l1, l0);
    EXPECT(same_g);
    EXPECT(same_w);
    EXPECT(held < n * sizeof(float));
    free(ref), free(g0);
    cb_fsdp_buffer_free(be, w, n);
    cb_fsdp_buffer_free(be, g, n);
    cb_fsdp_free(&z);
    fixture_free(&f);
}
TEST(fsdp_full_shard_hooks) {
    check_full_shard(0);
    check_full_shard(1);
}
