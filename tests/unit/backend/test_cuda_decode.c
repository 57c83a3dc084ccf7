/* test_cuda_decode.c: decoding on the GPU (backend/cuda/decode.c, kernels/matvec.cu,
 * kernels/attention_decode.cu) against the CPU's decoding path, the reference:
 *  - weights converted on the device are the CPU's bytes for every kind, and the products
 *    over them are the float products over the dequantised weights;
 *  - a session's logits (a prompt in chunks, then decode steps) per weight kind and per
 *    cache kind, for Llama/GQA, DBA with both gates, GPT-2 (biases, learned positions) and
 *    the topologies (Parallel, Branching, Cyclic, Recurrent, RoPE and linear layers);
 *  - a long context (many splits over the keys, at one query and at prefill chunks), with
 *    and without a local window, over fp32 and q8_0 caches;
 *  - greedy generation on the GPU gives the CPU's tokens, prefill in one pass and chunked;
 *  - truncate (speculative rollback) then continue, across a growth of the cache;
 *  - batched decoding (several sequences a step, each at its own length) against each
 *    sequence alone, on the CPU and on the GPU, and batched greedy generation's ids;
 *  - decode steps captured as CUDA graphs give the logits of the same steps uncaptured,
 *    bit for bit, and the CPU's within TOL, over hundreds of steps across growths of the
 *    cache and of the RoPE tables and changes of the decode plan's window (each a new
 *    capture), and greedy sampling on the GPU picks the CPU's tokens; the same with the
 *    step fused (CB_DECODE_FUSED=1's), and each under programmatic dependent launch, with
 *    the fused step's product kernel for the unfused step's products, and with that
 *    kernel's loads in flight and staging changed (bit for bit equal to op by op or fused);
 *  - the fused step's kernels (decode_fused.cu): its products (norm, bias, residual,
 *    gate/up with SwiGLU; 4 or 8 pieces in flight, staged or not; warps of several rows)
 *    against double sums, its RoPE and cache rows against the unfused kernels byte for
 *    byte.
 * Skips, saying why, where the build has no CUDA backend or the machine no GPU. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../infer/batch_util.h"
#include "../infer/infer_util.h"
#include "backend/backend.h"
#include "backend/cpu/matvec.h"
#include "backend/decode_ops.h"
#include "infer/generate.h"
#include "infer/session.h"
#include "tensor/quant.h"
#include "cuda_test.h"
#ifdef CB_HAVE_CUDA
#include <cuda_runtime_api.h>
#include "backend/cuda/cuda.h"
#include "backend/cuda/kernels.h"
#endif

/* float32 on both sides over the same stored weights and cache: the products and the
 * softmax sum in another order, and the GPU's expf is not the CPU's polynomial: a few ulp
 * per op, grown through two layers of weights scaled 5x (attention far from uniform). */
#define TOL 1e-4


#define LLAMA_UNTIED IU_HEAD \
    "  embedder: {type: token, vocab_size: 70, d_model: 64}\n" \
    "  topology:\n    type: StackedTopology\n    layers:\n" \
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 64}\n" \
    "              - {type: AttentionLayer, d_model: 64, n_heads: 8, n_kv_heads: 2, rope_theta: 500}\n" \
    "          - type: ResidualTopology\n            layers:\n" \
    "              - {type: RMSNormLayer, d_model: 64}\n" \
    "              - {type: SwiGLULayer, d_model: 64, d_ff: 100}\n" \
    "      - {type: RMSNormLayer, d_model: 64}\n"

typedef struct model_case { const char *name, *yaml; } model_case;
/* untied models: converting the head then leaves the embedding's lookups alone */
static const model_case CASES[] = {{"llama_gqa_untied", LLAMA_UNTIED},
                                   {"llama_gqa_tied", IU_LLAMA},
                                   {"dba_gated", IU_DBA},
                                   {"gpt2_positions", IU_GPT2},
                                   {"topologies", IU_TOPOLOGIES}};
#define N_CASES ((int)(sizeof CASES / sizeof *CASES))

static int vocab_of(const cb_model *m) {
    return (int)json_integer_value(json_object_get(json_object_get(m->plan, "model"), "vocab_size"));
}

typedef struct sess_opts {
    cb_backend *be;
    int chunk;
    cb_kv_kind weights, cache;
    int window; /* > 0: a fixed plan with this local window */
} sess_opts;

static int open_session(cb_session *s, const cb_model *m, const sess_opts *o) {
    cb_session_config c = cb_session_config_default();
    c.backend = o->be;
    c.chunk = o->chunk;
    c.weight_kind = o->weights;
    c.kinds.k = c.kinds.k_sem = c.kinds.v = o->cache;
    c.kv_layout = CB_KV_LAYOUT_HEADS; /* the CPU's caches laid out as the GPU's: per head, padded */
    if (o->window > 0) {
        c.plan.mode = CB_DECODE_PLAN_FIXED;
        c.plan.fixed.local_window = o->window;
    }
    cb_error e;
    if (cb_session_init(s, m, &c, &e) != CB_OK) {
        FAILF("session on %s: %s: %s", o->be->name, e.where, e.msg);
        return 1;
    }
    return 0;
}

/* The session's logits of tokens[0..T): a prompt of P tokens in one call (all rows, in
 * passes of chunk), then one token per call. out (T, V). */
static int session_logits(const cb_model *m, const sess_opts *o, const int32_t *tokens, int T, int P, float *out) {
    cb_session s;
    if (open_session(&s, m, o)) return 1;
    cb_error e;
    int rc = cb_session_forward(&s, tokens, P, out, 1, &e);
    for (int t = P; rc == CB_OK && t < T; t++) rc = cb_session_forward(&s, tokens + t, 1, out + (size_t)t * s.vocab, 0, &e);
    if (rc != CB_OK) FAILF("forward on %s: %s", o->be->name, e.msg);
    cb_session_free(&s);
    return rc != CB_OK;
}

/* The weight matrices of m's program (the roles decoding converts) replaced by their
 * round trip through kind, each tensor once: the fp32 model the converted one computes. */
static int round_trip_weights(cb_model *m, cb_kv_kind kind) {
    cb_program prog;
    cb_error e;
    if (cb_program_init(&prog, m->plan, &m->params, 1, 1, &e) != CB_OK) return 1;
    char *done = calloc(m->params.total_floats, 1);
    for (int i = 0; i < prog.n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            const cb_op *op = &prog.ops[i];
            if (op->p[r] == CB_NO_PARAM || !cb_decode_is_matrix(op, r) || done[op->p[r]]) continue;
            done[op->p[r]] = 1;
            for (int k = 0; k < m->params.n; k++) {
                const cb_param *par = &m->params.items[k];
                if (par->offset != op->p[r]) continue;
                const int rows = (int)par->shape[0], cols = (int)par->shape[1];
                unsigned char *buf = malloc(cb_kv_kind_bytes(kind, (size_t)cols));
                for (int row = 0; row < rows; row++) {
                    float *w = m->weights + par->offset + (size_t)row * cols;
                    cb_kv_quantize_row(kind, buf, w, (size_t)cols);
                    cb_kv_dequantize_row(kind, w, buf, (size_t)cols);
                }
                free(buf);
            }
        }
    free(done);
    cb_program_free(&prog);
    return 0;
}

TEST(converted_weights_are_the_cpus_bytes_and_products_exact) {
#ifdef CB_HAVE_CUDA
    cb_backend *be = gpu();
    if (!be) return;
    unsigned long long st = 0x9E3779B97F4A7C15ULL;
    const int shapes[][3] = {{37, 100, 1}, {64, 256, 3}, {300, 64, 11}, {5, 33, 2}, {129, 2048, 9}, {1000, 36, 1}};
    for (int si = 0; si < 6; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], n = shapes[si][2];
        float *w = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
        float *bias = malloc(sizeof(float) * rows), *y = malloc(sizeof(float) * n * rows);
        float *deq = malloc(sizeof(float) * cols);
        for (int i = 0; i < rows * cols; i++) w[i] = cb_test_urandf(&st) * (i % 7 == 0 ? 3.0f : 0.5f);
        w[3] = 0; /* and a block of zeros, the q4_0 -0 scale */
        for (int j = 0; j < 32 && j < cols; j++) w[cols + j] = 0;
        for (int j = 0; j < n * cols; j++) x[j] = cb_test_urandf(&st);
        for (int r = 0; r < rows; r++) bias[r] = cb_test_urandf(&st);
        cb_error e;
        float *dw = be->alloc(be, sizeof(float) * rows * cols, &e), *dx = be->alloc(be, sizeof(float) * n * cols, &e);
        float *db = be->alloc(be, sizeof(float) * rows, &e), *dy = be->alloc(be, sizeof(float) * n * rows, &e);
        be->upload(be, dw, w, sizeof(float) * rows * cols, &e);
        be->upload(be, dx, x, sizeof(float) * n * cols, &e);
        be->upload(be, db, bias, sizeof(float) * rows, &e);
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_weight_matrix cpu;
            if (cb_weight_matrix_from_f32(&cpu, (cb_kv_kind)k, w, rows, cols, &e) != CB_OK) { FAILF("%s", e.msg); continue; }
            const size_t bytes = cb_weight_matrix_bytes(&cpu);
            void *dq = be->alloc(be, bytes, &e);
            unsigned char *got = malloc(bytes);
            cbk_quantize_rows(dq, cpu.row_bytes, dw, (size_t)cols, k, rows, cols);
            cbk_matvec(dy, dq, cpu.row_bytes, k, dx, db, rows, cols, n);
            if (be->synchronize(be, &e) != CB_OK) FAILF("%s: %s", cb_kv_kind_name((cb_kv_kind)k), e.msg);
            be->download(be, got, dq, bytes, &e);
            be->download(be, y, dy, sizeof(float) * n * rows, &e);
            // row by row: the CPU may hold q8_0/q4_0 as 16-row groups (quant_x16.h)
            unsigned char *rowbuf = malloc(cpu.row_bytes);
            size_t first = bytes;
            for (int r = 0; r < rows && first == bytes; r++) {
                const unsigned char *want = cb_weight_matrix_row(&cpu, r, rowbuf);
                for (size_t b = 0; b < cpu.row_bytes && first == bytes; b++)
                    if (got[(size_t)r * cpu.row_bytes + b] != want[b]) first = (size_t)r * cpu.row_bytes + b;
            }
            if (first != bytes)
                FAILF("(%d,%d) %s: byte %zu of %zu differs from the CPU's", rows, cols,
                      cb_kv_kind_name((cb_kv_kind)k), first, bytes);
            // y against double sums over the dequantised row: float sums of cols products,
            // each within cols * 2^-24 of their magnitude (sum |w x|)
            double worst = 0;
            for (int r = 0; r < rows; r++) {
                cb_kv_dequantize_row((cb_kv_kind)k, deq, cb_weight_matrix_row(&cpu, r, rowbuf), (size_t)cols);
                for (int t = 0; t < n; t++) {
                    double s = bias[r], mag = fabs(bias[r]);
                    for (int j = 0; j < cols; j++) {
                        s += (double)deq[j] * x[(size_t)t * cols + j];
                        mag += fabs((double)deq[j] * x[(size_t)t * cols + j]);
                    }
                    double err = fabs(y[(size_t)t * rows + r] - s) / (mag * (cols + 1) * 0x1p-24 + 1e-30);
                    worst = cb_test_worst(worst, err);
                }
            }
            char what[96];
            snprintf(what, sizeof what, "matvec (%d,%d) x %d %s (in units of the bound)", rows, cols, n,
                     cb_kv_kind_name((cb_kv_kind)k));
            REPORT_DIFF(what, worst, 1.0);
            if (!(worst <= 1.0)) FAILF("%s: %.3g of the bound", what, worst);
            be->free(be, dq);
            free(got);
            free(rowbuf);
            cb_weight_matrix_free(&cpu);
        }
        be->free(be, dw), be->free(be, dx), be->free(be, db), be->free(be, dy);
        free(w), free(x), free(bias), free(y), free(deq);
    }
#else
    gpu();
#endif
}

/* A fused step's product (decode_fused.cu's cbk_matvec_step) against double sums over the
 * dequantised rows, every kind, with and without the folded RMSNorm, bias and residual,
 * and gate/up with SwiGLU; one shape too wide to stage its input (no norm there). Bound,
 * in units of 2^-24 times the sum of |terms| (mag): the row's float sum, cols + 1 roundings;
 * the input times the norm's weight, 1; the norm's scale from a float sum of cols squares,
 * at most cols/2 + 2 relative: (2 cols + 8) mag covers all. SwiGLU: silu's slope is below
 * 1.1, so |u| 1.1 e_g + |silu(g)| e_u + 8 ulp of y (expf, the products). */
static double step_ref(const float *deq, const float *x, const float *nw, float eps, int cols, double *mag) {
    double ss = 0, s = 0;
    for (int j = 0; j < cols; j++) ss += (double)x[j] * x[j];
    const double r = nw ? 1.0 / sqrt(ss / cols + eps) : 1.0;
    *mag = 0;
    for (int j = 0; j < cols; j++) {
        const double xn = nw ? (double)x[j] * r * nw[j] : x[j];
        s += deq[j] * xn;
        *mag += fabs(deq[j] * xn);
    }
    return s;
}

TEST(fused_step_products) {
#ifdef CB_HAVE_CUDA
    cb_backend *be = gpu();
    if (!be) return;
    unsigned long long st = 0x243F6A8885A308D3ULL;
    /* 9000 rows: more than the kernel's grid holds at once on any GPU of up to 280 SMs
     * (4 blocks of 8 warps an SM), so warps take several rows each */
    const int shapes[][2] = {{37, 100}, {300, 64}, {96, 2048}, {5, 33}, {70, 512}, {9, 12304}, {9000, 40}};
    for (int si = 0; si < 7; si++) {
        const int rows = shapes[si][0], cols = shapes[si][1], wide = cols > CBK_STEP_MAX_COLS;
        float *w = malloc(sizeof(float) * 2 * rows * cols), *x = malloc(sizeof(float) * cols);
        float *nw = malloc(sizeof(float) * cols), *bias = malloc(sizeof(float) * rows);
        float *res = malloc(sizeof(float) * rows), *y = malloc(sizeof(float) * rows);
        float *dg = malloc(sizeof(float) * cols), *du = malloc(sizeof(float) * cols);
        for (int i = 0; i < 2 * rows * cols; i++) w[i] = cb_test_urandf(&st) * (i % 7 == 0 ? 3.0f : 0.5f);
        for (int j = 0; j < cols; j++) x[j] = 2.0f * cb_test_urandf(&st), nw[j] = 1.0f + 0.5f * cb_test_urandf(&st);
        for (int r = 0; r < rows; r++) bias[r] = cb_test_urandf(&st), res[r] = 4.0f * cb_test_urandf(&st);
        cb_error e;
        float *dw = be->alloc(be, sizeof(float) * 2 * rows * cols, &e), *dx = be->alloc(be, sizeof(float) * cols, &e);
        float *dn = be->alloc(be, sizeof(float) * cols, &e), *db = be->alloc(be, sizeof(float) * rows, &e);
        float *dr = be->alloc(be, sizeof(float) * rows, &e), *dy = be->alloc(be, sizeof(float) * rows, &e);
        be->upload(be, dw, w, sizeof(float) * 2 * rows * cols, &e);
        be->upload(be, dx, x, sizeof(float) * cols, &e);
        be->upload(be, dn, nw, sizeof(float) * cols, &e);
        be->upload(be, db, bias, sizeof(float) * rows, &e);
        const float eps = 1e-5f;
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_weight_matrix cpu; /* 2 rows blocks: gate then up */
            if (cb_weight_matrix_from_f32(&cpu, (cb_kv_kind)k, w, 2 * rows, cols, &e) != CB_OK) { FAILF("%s", e.msg); continue; }
            void *dq = be->alloc(be, cb_weight_matrix_bytes(&cpu), &e);
            unsigned char *rowbuf = malloc(cpu.row_bytes);
            cbk_quantize_rows(dq, cpu.row_bytes, dw, (size_t)cols, k, 2 * rows, cols);
            for (int vt = 0; vt < 5 * 3; vt++) { /* plain, norm, bias, norm+bias+resid, gate/up (+norm) */
                const int v = vt % 5, tune = vt / 5; /* 4 pieces ahead; 8; 8 and staged */
                cbk_set_step_tuning(tune ? 8 : 4, tune == 2);
                const int norm = (v == 1 || v >= 3) && !wide, hasb = v == 2 || v == 3, resid = v == 3, gu = v == 4;
                be->upload(be, dr, res, sizeof(float) * rows, &e);
                /* resid: in place, y is the residual (the add's output may be its input) */
                float *out = resid ? dr : dy;
                cbk_matvec_step(out, dq, cpu.row_bytes, k, dx, hasb ? db : NULL, rows, cols, norm ? dn : NULL, eps, gu,
                                resid ? dr : NULL);
                if (be->synchronize(be, &e) != CB_OK) { FAILF("%s", e.msg); break; }
                be->download(be, y, out, sizeof(float) * rows, &e);
                double worst = 0;
                for (int r = 0; r < rows; r++) {
                    double mg, mu;
                    cb_kv_dequantize_row((cb_kv_kind)k, dg, cb_weight_matrix_row(&cpu, r, rowbuf), (size_t)cols);
                    double g = step_ref(dg, x, norm ? nw : NULL, eps, cols, &mg), want, bound;
                    const double unit = (2.0 * cols + 8) * 0x1p-24;
                    if (gu) {
                        cb_kv_dequantize_row((cb_kv_kind)k, du, cb_weight_matrix_row(&cpu, rows + r, rowbuf),
                                             (size_t)cols);
                        const double u = step_ref(du, x, norm ? nw : NULL, eps, cols, &mu);
                        const double silu = g / (1.0 + exp(-g));
                        want = silu * u;
                        bound = 1.1 * fabs(u) * mg * unit + fabs(silu) * mu * unit + 8 * 0x1p-24 * fabs(want);
                    } else {
                        want = g + (hasb ? bias[r] : 0) + (resid ? res[r] : 0);
                        bound = (mg + (hasb ? fabs(bias[r]) : 0) + (resid ? fabs(res[r]) : 0)) * unit;
                    }
                    worst = cb_test_worst(worst, fabs(y[r] - want) / (bound + 1e-30));
                }
                char what[128];
                snprintf(what, sizeof what, "step product (%d,%d) %s %s, %s (in units of the bound)", rows, cols,
                         cb_kv_kind_name((cb_kv_kind)k),
                         (const char *[]){"plain", "norm", "bias", "norm+bias+resid", "gate/up"}[v],
                         (const char *[]){"4 ahead", "8 ahead", "8 ahead, staged"}[tune]);
                REPORT_DIFF(what, worst, 1.0);
                if (!(worst <= 1.0)) FAILF("%s: %.3g of the bound", what, worst);
            }
            cbk_set_step_tuning(4, 0);
            be->free(be, dq);
            free(rowbuf);
            cb_weight_matrix_free(&cpu);
        }
        be->free(be, dw), be->free(be, dx), be->free(be, dn), be->free(be, db), be->free(be, dr), be->free(be, dy);
        free(w), free(x), free(nw), free(bias), free(res), free(y), free(dg), free(du);
    }
#else
    gpu();
#endif
}

/* The fused step's RoPE and cache writes (cbk_rope_cache_step) against the unfused
 * kernels (cbk_rope at one row, cbk_quantize_rows_at; both tested against the CPU): the
 * same float operations, so the rotated q and k and every cache byte equal, for every
 * cache kind, with and without RoPE, with a semantic key (DBA's, not rotated) and without. */
TEST(fused_step_rope_and_cache_rows) {
#ifdef CB_HAVE_CUDA
    cb_backend *be = gpu();
    if (!be) return;
    unsigned long long st = 0x13198A2E03707344ULL;
    const int H = 8, Hkv = 2, dr = 16, ds = 8, dv = 24, cap = 5, pos = 3;
    const int nq = (H + Hkv) * dr, n = nq + Hkv * dv + Hkv * ds; /* q, k | v | k_sem */
    float *h = malloc(sizeof(float) * n), *cs = malloc(sizeof(float) * dr);
    for (int i = 0; i < n; i++) h[i] = 3.0f * cb_test_urandf(&st);
    for (int i = 0; i < dr / 2; i++) cs[i] = cosf(0.3f * i + 1), cs[dr / 2 + i] = sinf(0.3f * i + 1);
    cb_error e;
    float *a = be->alloc(be, sizeof(float) * n, &e), *b = be->alloc(be, sizeof(float) * n, &e);
    float *dcs = be->alloc(be, sizeof(float) * dr, &e);
    int *dpos = be->alloc(be, sizeof(int), &e);
    be->upload(be, dcs, cs, sizeof(float) * dr, &e);
    be->upload(be, dpos, &pos, sizeof pos, &e);
    for (int k = 0; k < CB_KV_COUNT; k++)
        for (int v = 0; v < 4; v++) { /* rope or not, k_sem or not */
            const int rope = v & 1, sem = v >> 1;
            const int widths[3] = {dr, ds, dv};
            size_t hb[3], rb[3];
            unsigned char *c[2][3], *got[3];
            for (int t = 0; t < 3; t++) {
                hb[t] = cb_kv_kind_bytes((cb_kv_kind)k, (size_t)widths[t]);
                rb[t] = hb[t] * Hkv;
                for (int side = 0; side < 2; side++) {
                    c[side][t] = be->alloc(be, rb[t] * cap, &e);
                    cudaMemset(c[side][t], 0, rb[t] * cap);
                }
                got[t] = malloc(rb[t] * cap);
            }
            be->upload(be, a, h, sizeof(float) * n, &e);
            be->upload(be, b, h, sizeof(float) * n, &e);
            const float *vsrc[2] = {a + nq, b + nq}, *ssrc[2] = {a + nq + Hkv * dv, b + nq + Hkv * dv};
            /* unfused: side 0 */
            if (rope) cbk_rope(a, a, dcs, dcs + dr / 2, 1, 1, H + Hkv, dr, 0, 1.0f, 0);
            cbk_quantize_rows_at(c[0][0], hb[0], dpos, rb[0], a + H * dr, (size_t)dr, k, Hkv, dr);
            if (sem) cbk_quantize_rows_at(c[0][1], hb[1], dpos, rb[1], ssrc[0], (size_t)ds, k, Hkv, ds);
            cbk_quantize_rows_at(c[0][2], hb[2], dpos, rb[2], vsrc[0], (size_t)dv, k, Hkv, dv);
            /* fused: side 1 */
            cbk_kv_dst kd = {c[1][0], b + H * dr, k, Hkv, dr, rb[0], hb[0]};
            cbk_kv_dst sd = {c[1][1], ssrc[1], k, sem ? Hkv : 0, ds, rb[1], hb[1]};
            cbk_kv_dst vd = {c[1][2], vsrc[1], k, Hkv, dv, rb[2], hb[2]};
            cbk_rope_cache_step(b, H, Hkv, dr, rope ? dcs : NULL, dcs + dr / 2, dpos, &kd, &sd, &vd);
            if (be->synchronize(be, &e) != CB_OK) { FAILF("%s", e.msg); return; }
            float *qa = malloc(sizeof(float) * n), *qb = malloc(sizeof(float) * n);
            be->download(be, qa, a, sizeof(float) * n, &e);
            be->download(be, qb, b, sizeof(float) * n, &e);
            EXPECT(memcmp(qa, qb, sizeof(float) * n) == 0);
            for (int t = 0; t < 3; t++) {
                unsigned char *want = malloc(rb[t] * cap);
                be->download(be, want, c[0][t], rb[t] * cap, &e);
                be->download(be, got[t], c[1][t], rb[t] * cap, &e);
                if (memcmp(want, got[t], rb[t] * cap) != 0)
                    FAILF("%s rope %d sem %d: cache %d differs from the unfused kernels'", cb_kv_kind_name((cb_kv_kind)k),
                          rope, sem, t);
                free(want);
                be->free(be, c[0][t]), be->free(be, c[1][t]);
                free(got[t]);
            }
            free(qa), free(qb);
        }
    fprintf(stderr, "  fused rope and cache rows: every kind compared\n");
    be->free(be, a), be->free(be, b), be->free(be, dcs), be->free(be, dpos);
    free(h), free(cs);
#else
    gpu();
#endif
}

/* GPU logits with weights of kind against the CPU's fp32 decoding of the same model with
 * its matrices rounded through kind (the CPU's own products over block kinds quantise the
 * input to int8, which the GPU does not: the fp32 model is the exact reference). */
TEST(logits_per_weight_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 30, P = 20; /* the GPU's prompt in passes of 16 (cuBLAS) and 4 (matvec kernel) */
    for (int c = 0; c < N_CASES; c++) {
        if (strstr(CASES[c].name, "tied") && !strstr(CASES[c].name, "untied")) continue; /* tied: below */
        for (int k = 0; k < CB_KV_COUNT; k++) {
            cb_model m, ref;
            if (iu_model(&m, CASES[c].yaml, 3, 5.0) || iu_model(&ref, CASES[c].yaml, 3, 5.0)) {
                FAILF("%s: model", CASES[c].name);
                return;
            }
            round_trip_weights(&ref, (cb_kv_kind)k);
            const int V = vocab_of(&m);
            int32_t tokens[64];
            iu_tokens(tokens, T, V, 11 + c);
            float *want = calloc((size_t)T * V, sizeof *want), *got = calloc((size_t)T * V, sizeof *got);
            sess_opts oc = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0}, og = {be, 16, (cb_kv_kind)k, CB_KV_F32, 0};
            if (!session_logits(&ref, &oc, tokens, T, P, want) && !session_logits(&m, &og, tokens, T, P, got)) {
                double d = iu_rel_diff(got, want, (size_t)T * V);
                char what[128];
                snprintf(what, sizeof what, "%s: weights %s", CASES[c].name, cb_kv_kind_name((cb_kv_kind)k));
                REPORT_DIFF(what, d, TOL);
                if (!(d <= TOL)) FAILF("%s: relative difference %.3g", what, d);
            }
            free(want), free(got);
            cb_model_free(&m), cb_model_free(&ref);
        }
    }
}

/* The tied model (the head converted, the embedding's lookups fp32) at the CPU's own kind:
 * fp16/bf16 products read the same values on both sides; over the block kinds the two
 * differ by the CPU's int8 rounding of the input alone, which is a part of the kind's
 * whole effect on the CPU's logits (the weights' rounding plus that): bounded by it. */
TEST(logits_tied_head_per_weight_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 15, P = 5;
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 4, 5.0)) { FAILF("model"); return; }
    const int V = vocab_of(&m);
    int32_t tokens[64];
    iu_tokens(tokens, T, V, 7);
    float *f32 = calloc((size_t)T * V, sizeof *f32), *want = calloc((size_t)T * V, sizeof *want);
    float *got = calloc((size_t)T * V, sizeof *got);
    sess_opts o32 = {cb_backend_cpu(), 64, CB_KV_F32, CB_KV_F32, 0};
    if (session_logits(&m, &o32, tokens, T, P, f32)) goto out;
    for (int k = 0; k < CB_KV_COUNT; k++) {
        sess_opts oc = {cb_backend_cpu(), 64, (cb_kv_kind)k, CB_KV_F32, 0}, og = {be, 64, (cb_kv_kind)k, CB_KV_F32, 0};
        if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
        const int blocks = k == CB_KV_Q8_0 || k == CB_KV_Q4_0 || k == CB_KV_NF4;
        const double tol = TOL + (blocks ? iu_rel_diff(want, f32, (size_t)T * V) : 0);
        double d = iu_rel_diff(got, want, (size_t)T * V);
        char what[128];
        snprintf(what, sizeof what, "llama tied: weights %s vs the CPU's", cb_kv_kind_name((cb_kv_kind)k));
        REPORT_DIFF(what, d, tol);
        if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
    }
out:
    free(f32), free(want), free(got);
    cb_model_free(&m);
}

/* Per cache kind, GPU against CPU at that kind, the CPU's caches in the GPU's per-head layout
 * (open_session: kv_layout; the CPU's default packs DBA's small heads, a block spanning
 * heads and tokens, which the GPU does not read). The caches hold the same values except
 * where a key or value computed in another float order rounds to the neighbouring level
 * (rare, one level): bounded by half of the kind's own effect (CPU kind vs CPU fp32). */
TEST(logits_per_cache_kind) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 21, P = 9;
    for (int c = 0; c < N_CASES; c++) {
        cb_model m;
        if (iu_model(&m, CASES[c].yaml, 5, 5.0)) { FAILF("%s: model", CASES[c].name); continue; }
        const int V = vocab_of(&m);
        int32_t tokens[64];
        iu_tokens(tokens, T, V, 31 + c);
        float *f32 = calloc((size_t)T * V, sizeof *f32), *want = calloc((size_t)T * V, sizeof *want);
        float *got = calloc((size_t)T * V, sizeof *got);
        sess_opts o32 = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0};
        if (!session_logits(&m, &o32, tokens, T, P, f32))
            for (int k = 0; k < CB_KV_COUNT; k++) {
                sess_opts oc = {cb_backend_cpu(), 4, CB_KV_F32, (cb_kv_kind)k, 0};
                sess_opts og = {be, 4, CB_KV_F32, (cb_kv_kind)k, 0};
                if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
                const double tol = TOL + 0.5 * iu_rel_diff(want, f32, (size_t)T * V);
                double d = iu_rel_diff(got, want, (size_t)T * V);
                char what[128];
                snprintf(what, sizeof what, "%s: cache %s", CASES[c].name, cb_kv_kind_name((cb_kv_kind)k));
                REPORT_DIFF(what, d, tol);
                if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
            }
        free(f32), free(want), free(got);
        cb_model_free(&m);
    }
}

/* 700 tokens: the keys split over many blocks at prefill chunks of 64 and at one query;
 * a local window of 100 (fixed plan) on both sides; fp32 and q8_0 caches, the GQA model
 * and DBA. The last 12 rows (decode steps) and the prompt's last chunk compared. */
TEST(long_context_splits_and_windows) {
    cb_backend *be = gpu();
    if (!be) return;
    const int T = 700, P = 688;
    const model_case *cs[2] = {&CASES[0], &CASES[2]};
    for (int c = 0; c < 2; c++) {
        cb_model m;
        if (iu_model(&m, cs[c]->yaml, 6, 1.0)) { FAILF("model"); return; }
        const int V = vocab_of(&m);
        int32_t *tokens = malloc(sizeof *tokens * T);
        iu_tokens(tokens, T, V, 77);
        float *want = calloc((size_t)T * V, sizeof *want), *got = calloc((size_t)T * V, sizeof *got);
        const cb_kv_kind kinds[2] = {CB_KV_F32, CB_KV_Q8_0};
        for (int ki = 0; ki < 2; ki++)
            for (int window = 0; window <= 100; window += 100) {
                sess_opts oc = {cb_backend_cpu(), 64, CB_KV_F32, kinds[ki], window};
                sess_opts og = {be, 64, CB_KV_F32, kinds[ki], window};
                if (session_logits(&m, &oc, tokens, T, P, want) || session_logits(&m, &og, tokens, T, P, got)) break;
                const size_t from = (size_t)(P - 64) * V;
                /* q8_0: a key rounding to the neighbouring level moves a score by ~1/254 of a
                 * block's |k| |q|; over weights at their init scale that stays below 1e-3 */
                const double tol = kinds[ki] == CB_KV_F32 ? TOL : 1e-3;
                double d = iu_rel_diff(got + from, want + from, (size_t)T * V - from);
                char what[128];
                snprintf(what, sizeof what, "%s: %d tokens, cache %s, window %d", cs[c]->name, T,
                         cb_kv_kind_name(kinds[ki]), window);
                REPORT_DIFF(what, d, tol);
                if (!(d <= tol)) FAILF("%s: relative difference %.3g", what, d);
            }
        free(tokens), free(want), free(got);
        cb_model_free(&m);
    }
}

/* Greedy generation on the GPU gives the CPU's tokens: fp32 weights and cache, the prompt
 * in one pass and in chunks of 3; GQA (tied head) and DBA. */
TEST(greedy_generation_equals_the_cpus) {
    cb_backend *be = gpu();
    if (!be) return;
    const char *yamls[2] = {IU_LLAMA, IU_DBA};
    for (int c = 0; c < 2; c++) {
        cb_model m;
        if (iu_model(&m, yamls[c], 9, 5.0)) { FAILF("model"); return; }
        int32_t prompt[10];
        iu_tokens(prompt, 10, vocab_of(&m), 5);
        cb_generate_config g = cb_generate_config_default();
        g.sample.temperature = 0;
        g.stop.max_new_tokens = 20;
        g.stop.n_eos = 0;
        cb_generate_io io = {0};
        cb_generate_output cpu_out, gpu_out;
        cb_error e;
        cb_session_config sc = cb_session_config_default();
        if (cb_generate(&m, &sc, prompt, 10, &g, &io, &cpu_out, &e) != CB_OK) { FAILF("cpu: %s", e.msg); continue; }
        for (int chunk = 64; chunk >= 3; chunk -= 61) {
            sc.backend = be;
            sc.chunk = chunk;
            if (cb_generate(&m, &sc, prompt, 10, &g, &io, &gpu_out, &e) != CB_OK) { FAILF("gpu: %s", e.msg); break; }
            EXPECT_EQ_INT(cpu_out.ids.n, gpu_out.ids.n);
            for (size_t i = 0; i < cpu_out.ids.n && i < gpu_out.ids.n; i++)
                if (cpu_out.ids.v[i] != gpu_out.ids.v[i]) {
                    FAILF("model %d chunk %d: token %zu: gpu %d, cpu %d", c, chunk, i, gpu_out.ids.v[i],
                          cpu_out.ids.v[i]);
                    break;
                }
            fprintf(stderr, "  greedy model %d chunk %d: %zu tokens, gpu equal to cpu: %s\n", c, chunk,
                    gpu_out.ids.n, cb_test_failed ? "no" : "yes");
            cb_generate_output_free(&gpu_out);
        }
        cb_generate_output_free(&cpu_out);
        cb_model_free(&m);
    }
}

/* Speculative rollback: 14 tokens, 6 more (the cache grows past 16: its tokens copied to
 * the new block), truncate to 14, 4 others; the GPU's logits of those are the CPU's, and
 * the same again after a second truncate. DBA, fp16 semantic keys and bf16 values. */
TEST(truncate_then_continue) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_model m;
    if (iu_model(&m, IU_DBA, 5, 5.0)) { FAILF("model"); return; }
    float *logits[2][2];
    for (int side = 0; side < 2; side++) {
        cb_session s;
        cb_session_config c = cb_session_config_default();
        c.backend = side ? be : cb_backend_cpu();
        c.chunk = 8;
        c.kinds.k = CB_KV_F32;
        c.kinds.k_sem = CB_KV_F16;
        c.kinds.v = CB_KV_BF16;
        cb_error e;
        if (cb_session_init(&s, &m, &c, &e) != CB_OK) { FAILF("%s", e.msg); cb_model_free(&m); return; }
        const int V = s.vocab;
        int32_t a[20], b[4];
        iu_tokens(a, 20, V, 1);
        iu_tokens(b, 4, V, 2);
        logits[side][0] = calloc((size_t)4 * V, sizeof(float));
        logits[side][1] = calloc((size_t)4 * V, sizeof(float));
        int rc = cb_session_forward(&s, a, 14, NULL, 0, &e);
        if (rc == CB_OK) rc = cb_session_forward(&s, a + 14, 6, NULL, 0, &e);
        cb_session_truncate(&s, 14);
        EXPECT_EQ_INT(14, s.dec.kv.layers[0].len);
        if (rc == CB_OK) rc = cb_session_forward(&s, b, 4, logits[side][0], 1, &e);
        cb_session_truncate(&s, 14);
        if (rc == CB_OK) rc = cb_session_forward(&s, b, 4, logits[side][1], 1, &e);
        if (rc != CB_OK) FAILF("forward: %s", e.msg);
        cb_session_free(&s);
    }
    const size_t n = (size_t)4 * vocab_of(&m);
    double again = iu_rel_diff(logits[1][1], logits[1][0], n);
    REPORT_DIFF("gpu: after truncate, the same tokens", again, 0);
    EXPECT(again == 0);
    /* fp16/bf16: a value computed in another float order may round to the neighbouring
     * 16-bit value (rare; 2^-11 or 2^-8 of it): far below 1e-3 of the logits */
    double d = iu_rel_diff(logits[1][0], logits[0][0], n);
    REPORT_DIFF("gpu vs cpu after rollback (fp32/f16/bf16)", d, 1e-3);
    if (!(d <= 1e-3)) FAILF("gpu vs cpu after rollback: %.3g", d);
    for (int i = 0; i < 2; i++) free(logits[i][0]), free(logits[i][1]);
    cb_model_free(&m);
}

/* Batched decoding on the GPU (infer/batch.h; decode.c's batch_attention): four sequences
 * at different lengths, every step one pass of all of them, against each decoded alone on
 * the CPU (the reference) and on the GPU. fp32 weights and caches within TOL; q8_0 within
 * test_batch's bound for quantized rows that may round the other way. */
TEST(batched_steps_equal_each_sequence_alone) {
    cb_backend *be = gpu();
    if (!be) return;
    const model_case cases[3] = {{"llama_gqa", IU_LLAMA}, {"dba_gated", IU_DBA}, {"gpt2_positions", IU_GPT2}};
    for (int c = 0; c < 3; c++) {
        cb_model m;
        if (iu_model(&m, cases[c].yaml, 3, 5.0)) { FAILF("%s: model", cases[c].name); continue; }
        for (int q = 0; q < 2; q++) {
            const cb_kv_kind kind = q ? CB_KV_Q8_0 : CB_KV_F32;
            cb_session_config on = cb_session_config_default(), cpu = on;
            on.backend = be;
            on.weight_kind = cpu.weight_kind = kind;
            on.kinds.k = on.kinds.k_sem = on.kinds.v = kind;
            cpu.kinds = on.kinds;
            cpu.kv_layout = CB_KV_LAYOUT_HEADS;
            char what[128];
            snprintf(what, sizeof what, "%s %s: gpu batched vs cpu alone", cases[c].name, cb_kv_kind_name(kind));
            iu_batch_matches_alone(what, &m, &on, &cpu, q ? 2e-2 : TOL);
            snprintf(what, sizeof what, "%s %s: gpu batched vs gpu alone", cases[c].name, cb_kv_kind_name(kind));
            iu_batch_matches_alone(what, &m, &on, &on, q ? 2e-2 : TOL);
        }
        cb_model_free(&m);
    }
}

/* Batched steps captured as CUDA graphs (decode.c's batch_begin) give the logits of the
 * same steps uncaptured bit for bit, over 40 steps of 3 sequences whose caches grow at
 * different steps (each growth a new capture; the others replays). */
TEST(batched_steps_graphed_equal_uncaptured) {
    cb_backend *be = gpu();
    if (!be) return;
#ifdef CB_HAVE_CUDA
    const model_case cases[3] = {{"llama_gqa", IU_LLAMA}, {"dba_gated", IU_DBA}, {"gpt2_positions", IU_GPT2}};
    enum { N = 3, STEPS = 40 };
    const int lens[N] = {3, 9, 14};
    for (int c = 0; c < 3; c++) {
        cb_model m;
        if (iu_model(&m, cases[c].yaml, 4, 5.0)) { FAILF("%s: model", cases[c].name); continue; }
        const int V = vocab_of(&m);
        int32_t tok[N][64];
        for (int i = 0; i < N; i++) iu_tokens(tok[i], 64, V, 90 + (uint64_t)i);
        float *got[2];
        long captures = 0, replays = 0;
        for (int graphs = 0; graphs < 2; graphs++) {
            got[graphs] = calloc((size_t)STEPS * N * V, sizeof(float));
            cb_session_config sc = cb_session_config_default();
            sc.backend = be;
            sc.graphs_off = !graphs;
            cb_batch b;
            cb_error e;
            if (cb_batch_init(&b, &m, &sc, N, &e) != CB_OK) { FAILF("batch: %s", e.msg); continue; }
            int rc = CB_OK;
            for (int i = 0; i < N && rc == CB_OK; i++) rc = cb_session_forward(&b.seqs[i], tok[i], lens[i], NULL, 0, &e);
            cb_session *rows[N] = {&b.seqs[0], &b.seqs[1], &b.seqs[2]};
            for (int s = 0; s < STEPS && rc == CB_OK; s++) {
                int32_t step[N];
                for (int i = 0; i < N; i++) step[i] = tok[i][(lens[i] + s) % 64];
                rc = cb_session_forward_batch(rows, N, step, got[graphs] + (size_t)s * N * V, &e);
            }
            if (rc != CB_OK) FAILF("%s: %s", cases[c].name, e.msg);
            if (graphs) cb_cuda_decode_graph_counts(&b.seqs[0].dec, &captures, &replays);
            cb_batch_free(&b);
        }
        double d = iu_rel_diff(got[1], got[0], (size_t)STEPS * N * V);
        char what[128];
        snprintf(what, sizeof what, "%s: batched graphed vs uncaptured (%ld captures, %ld replays)", cases[c].name,
                 captures, replays);
        REPORT_DIFF(what, d, 0);
        if (!(d == 0)) FAILF("%s: %.3g", what, d);
        /* caches of 16, 32 and 64 tokens: 2 to 3 growths each, at different steps */
        EXPECT(captures >= 3 && captures + replays == STEPS && replays > 2 * captures);
        free(got[0]), free(got[1]);
        cb_model_free(&m);
    }
#endif
}

/* Batched greedy generation on the GPU (3 rows, 5 prompts, one stopping at an eos so its
 * row takes the next prompt) gives each prompt the CPU's batched ids. */
TEST(batched_greedy_generation_equals_the_cpus) {
    cb_backend *be = gpu();
    if (!be) return;
    cb_model m;
    if (iu_model(&m, IU_LLAMA, 5, 5.0)) { FAILF("model"); return; }
    enum { P = 5 };
    const int lens[P] = {4, 1, 9, 6, 2};
    int32_t tok[P][16];
    const int32_t *prompts[P];
    for (int i = 0; i < P; i++) {
        iu_tokens(tok[i], 16, vocab_of(&m), 70 + (uint64_t)i);
        prompts[i] = tok[i];
    }
    cb_generate_config g = cb_generate_config_default();
    g.sample.temperature = 0;
    g.stop.max_new_tokens = 12;
    g.stop.n_eos = 0;
    cb_generate_output outs[2][P];
    int ok[2] = {0, 0};
    for (int side = 0; side < 2; side++) {
        cb_session_config c = cb_session_config_default();
        c.backend = side ? be : cb_backend_cpu();
        cb_batch b;
        cb_error e;
        if (cb_batch_init(&b, &m, &c, 3, &e) != CB_OK) { FAILF("batch: %s", e.msg); break; }
        if (side == 0) { /* the eos: the fourth id prompt 0 generates on the CPU */
            cb_generate_output first;
            if (cb_session_generate(&b.seqs[0], prompts[0], lens[0], &g, &(cb_generate_io){0}, &first, &e) == CB_OK) {
                g.stop.eos[0] = first.ids.n > 3 ? first.ids.v[3] : 0;
                g.stop.n_eos = 1;
                cb_generate_output_free(&first);
            }
        }
        ok[side] = cb_batch_generate(&b, prompts, lens, P, &g, NULL, outs[side], &e) == CB_OK;
        if (!ok[side]) FAILF("%s: batched generation: %s", side ? "gpu" : "cpu", e.msg);
        cb_batch_free(&b);
    }
    for (int i = 0; i < P && ok[0] && ok[1]; i++)
        if (outs[0][i].ids.n != outs[1][i].ids.n ||
            memcmp(outs[0][i].ids.v, outs[1][i].ids.v, outs[0][i].ids.n * sizeof *outs[0][i].ids.v))
            FAILF("prompt %d: %zu ids on the gpu, %zu on the cpu, or they differ", i, outs[1][i].ids.n,
                  outs[0][i].ids.n);
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < P && ok[side]; i++) cb_generate_output_free(&outs[side][i]);
    cb_model_free(&m);
}

#ifdef CB_HAVE_CUDA
/* How a GPU step runs (backend/cuda/cuda.h's setters); ref: the variant before it in
 * STEP_VARIANTS whose logits it equals bit for bit (the same sums in the same order), -1:
 * none (the fused step against op by op: a tolerance) */
typedef struct step_variant {
    const char *name;
    int fused, pdl, products, ahead, stage, attn, combine, ref;
} step_variant;
static const step_variant STEP_VARIANTS[] = {
    {"op by op", 0, 0, 0, 4, 0, 0, 0, -1},
    {"op by op, split combine, pdl", 0, 1, 0, 4, 0, 0, 1, 0},
    {"op by op, step products", 0, 0, 1, 4, 0, 0, 0, 0},
    {"op by op, step products a8 staged, step attn, pdl", 0, 1, 1, 8, 1, 1, 0, 0},
    {"fused", 1, 0, 0, 4, 0, 0, 0, -1},
    {"fused, pdl", 1, 1, 0, 4, 0, 0, 0, 4},
    {"fused a8 staged, step attn, split combine, pdl", 1, 1, 0, 8, 1, 1, 1, 4},
};
#define N_STEP_VARIANTS ((int)(sizeof STEP_VARIANTS / sizeof *STEP_VARIANTS))

/* Logits of tokens[0..T) (a prompt of P in one call, then a token a call) with the GPU's
 * steps graphed or not, as variant sv; captures and replays counted. out (T, V). */
static int graph_logits(const cb_model *m, const sess_opts *o, const cb_decode_plan_config *plan, int graphs,
                        const step_variant *sv, const int32_t *tokens, int T, int P, float *out, int32_t *argmax,
                        long *captures, long *replays) {
    cb_session s;
    cb_session_config c = cb_session_config_default();
    c.backend = o->be;
    c.chunk = o->chunk;
    c.weight_kind = o->weights;
    c.kinds.k = c.kinds.k_sem = c.kinds.v = o->cache;
    c.kv_layout = CB_KV_LAYOUT_HEADS; /* as open_session */
    c.plan = *plan;
    cb_error e;
    if (cb_session_init(&s, m, &c, &e) != CB_OK) {
        FAILF("session on %s: %s: %s", o->be->name, e.where, e.msg);
        return 1;
    }
    if (o->be->device == CB_DEVICE_CUDA) cb_cuda_decode_set_graphs(&s.dec, graphs);
    if (o->be->device == CB_DEVICE_CUDA) {
        cb_cuda_decode_set_fused(&s.dec, sv->fused);
        cb_cuda_decode_set_pdl(&s.dec, sv->pdl);
        cb_cuda_decode_set_products(&s.dec, sv->products, sv->ahead, sv->stage);
        cb_cuda_decode_set_attn(&s.dec, sv->attn, sv->combine);
    }
    int rc = cb_session_forward(&s, tokens, P, out, 1, &e);
    for (int t = P; rc == CB_OK && t < T; t++) {
        if (argmax && t % 2) { /* every other step greedy on the device: its logits read back after */
            int bad = 1;
            rc = cb_session_forward_argmax(&s, tokens + t, 1, &argmax[t], &bad, &e);
            if (rc == CB_OK && bad) FAILF("step %d: non-finite logits", t);
            const float *slot = s.slots + s.prog.slots[s.prog.logits_slot].offset;
            if (rc == CB_OK) rc = o->be->download(o->be, out + (size_t)t * s.vocab, slot, sizeof(float) * s.vocab, &e);
        } else {
            rc = cb_session_forward(&s, tokens + t, 1, out + (size_t)t * s.vocab, 0, &e);
        }
    }
    if (rc != CB_OK) FAILF("forward on %s (graphs %d, %s): %s", o->be->name, graphs, sv->name, e.msg);
    *captures = *replays = 0;
    if (o->be->device == CB_DEVICE_CUDA) cb_cuda_decode_graph_counts(&s.dec, captures, replays);
    cb_session_free(&s);
    return rc != CB_OK;
}
#endif

/* Graphed steps against uncaptured ones and the CPU, with the step's ops op by op (the
 * default), fused, and the variants of STEP_VARIANTS (programmatic dependent launch, the
 * fused step's product kernel for the unfused step's products, its loads in flight and
 * staging: the same sums in the same order, so each equals its reference variant bit
 * for bit; the product kernel's grid holds at most 4 blocks an SM, so the head's 512 rows
 * and more a warp on a small GPU, and a few tests below more): fp32 weights and cache (and bf16
 * weights with a q8_0 cache, GPU against GPU); Llama (tied, GQA) over 300 steps (the
 * cache grows 16 -> 512 tokens and the RoPE tables past 256 positions: each move a new
 * capture; the decode plan's window changes at 100 and 200 keys: a new capture each),
 * GPT-2 (learned positions, the position read on the device) and DBA (both gates). The
 * same kernels run either way, so graphed and uncaptured logits are equal bit for bit;
 * against the CPU TOL holds as in the tests above, fused or not. Fused against op by op
 * at bf16/q8_0 (no CPU run): the norm's scale applied to the sums instead of the inputs
 * moves a product by a few ulp, which may round a cached key or value to the neighbouring
 * q8_0 level: within 1e-3, as the long-context test's q8_0 bound. Greedy argmax on the
 * GPU (every other step) is the CPU's cb_argmax of the same logits. */
TEST(graphed_steps_equal_uncaptured_and_cpu) {
    cb_backend *be = gpu();
    if (!be) return;
#ifdef CB_HAVE_CUDA
    struct { const char *name, *yaml; int T, P, windows; cb_kv_kind w, c; } cases[] = {
        {"llama_tied fp32", IU_LLAMA, 300, 9, 1, CB_KV_F32, CB_KV_F32},
        {"llama_tied bf16/q8_0", IU_LLAMA, 140, 9, 0, CB_KV_BF16, CB_KV_Q8_0},
        {"gpt2 fp32", IU_GPT2, 40, 5, 0, CB_KV_F32, CB_KV_F32},
        {"dba fp32", IU_DBA, 60, 7, 0, CB_KV_F32, CB_KV_F32},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cb_model m;
        if (iu_model(&m, cases[c].yaml, 21, 5.0)) { FAILF("%s: model", cases[c].name); return; }
        const int V = vocab_of(&m), T = cases[c].T, P = cases[c].P;
        int32_t *tokens = calloc((size_t)T, sizeof *tokens), *amax = calloc((size_t)T, sizeof *amax);
        iu_tokens(tokens, T, V, 31 + (int)c);
        cb_decode_plan_config plan = cb_decode_plan_config_default();
        if (cases[c].windows) { /* no window below 100 keys, 48 below 200, then 80 */
            plan.bucket_short = 100, plan.bucket_mid = 200;
            plan.when_short.local_window = 0, plan.when_mid.local_window = 48, plan.when_long.local_window = 80;
        }
        float *cpu = calloc((size_t)T * V, sizeof *cpu), *off = calloc((size_t)T * V, sizeof *off),
              *on = calloc((size_t)T * V, sizeof *on), *unfused = calloc((size_t)T * V, sizeof *unfused),
              *fused = calloc((size_t)T * V, sizeof *fused);
        long cap_off, rep_off, cap_on, rep_on, cc, cr;
        sess_opts og = {be, 4, cases[c].w, cases[c].c, 0}, oc = {cb_backend_cpu(), 4, CB_KV_F32, CB_KV_F32, 0};
        const int fp32 = cases[c].w == CB_KV_F32 && cases[c].c == CB_KV_F32;
        if (fp32 && graph_logits(&m, &oc, &plan, 0, &STEP_VARIANTS[0], tokens, T, P, cpu, NULL, &cc, &cr)) goto next;
        for (int vi = 0; vi < N_STEP_VARIANTS; vi++) {
            const step_variant *sv = &STEP_VARIANTS[vi];
            if (graph_logits(&m, &og, &plan, 0, sv, tokens, T, P, off, NULL, &cap_off, &rep_off) ||
                graph_logits(&m, &og, &plan, 1, sv, tokens, T, P, on, amax, &cap_on, &rep_on))
                break;
            const size_t n = (size_t)T * V;
            double same = iu_rel_diff(on, off, n);
            char what[200];
            const char *how = sv->name;
            snprintf(what, sizeof what, "%s %s: graphed vs uncaptured (%ld captures, %ld replays)", cases[c].name,
                     how, cap_on, rep_on);
            REPORT_DIFF(what, same, 0);
            if (!(same == 0)) FAILF("%s: %.3g", what, same);
            EXPECT_EQ_INT(0, (int)cap_off);
            EXPECT_EQ_INT(0, (int)rep_off);
            /* one-row passes: the steps, and the prompt's last chunk when it has one row */
            EXPECT(cap_on >= 1 && cap_on + rep_on == T - P + (P % og.chunk == 1));
            if (cases[c].windows) EXPECT(cap_on >= 7); /* cache 16..512: 6 growths, tables, 2 windows */
            EXPECT(rep_on > cap_on);
            if (fp32) {
                double d = iu_rel_diff(on, cpu, n);
                snprintf(what, sizeof what, "%s %s: graphed vs cpu", cases[c].name, how);
                REPORT_DIFF(what, d, TOL);
                if (!(d <= TOL)) FAILF("%s: %.3g", what, d);
            }
            if (vi == 0) {
                memcpy(unfused, on, sizeof *on * n);
            } else if (sv->ref < 0) { /* the fused step */
                const double tol = fp32 ? TOL : 1e-3;
                double d = iu_rel_diff(on, unfused, n);
                snprintf(what, sizeof what, "%s: %s vs op by op (graphed)", cases[c].name, how);
                REPORT_DIFF(what, d, tol);
                if (!(d <= tol)) FAILF("%s: %.3g", what, d);
                memcpy(fused, on, sizeof *on * n);
            } else {
                const float *ref = STEP_VARIANTS[sv->ref].fused ? fused : unfused;
                double d = iu_rel_diff(on, ref, n);
                snprintf(what, sizeof what, "%s: %s vs %s (graphed)", cases[c].name, how, STEP_VARIANTS[sv->ref].name);
                REPORT_DIFF(what, d, 0);
                if (!(d == 0)) FAILF("%s: %.3g", what, d);
            }
            for (int t = P | 1; t < T; t += 2) /* the odd steps: graph_logits's argmax ones */
                if (amax[t] != cb_argmax(on + (size_t)t * V, V)) {
                    FAILF("%s: step %d: argmax on the gpu %d, on the host %d", cases[c].name, t, amax[t],
                          cb_argmax(on + (size_t)t * V, V));
                    break;
                }
        }
    next:
        free(tokens), free(amax), free(cpu), free(off), free(on), free(unfused), free(fused);
        cb_model_free(&m);
    }
#endif
}
