/* matvec.c: y = W x with W stored in any cb_kv_kind, parallel over the rows of W; each row
 * is dequantised in registers by the kernels of backend/cpu/quant_dot.h, except the block
 * formats q8_0, q4_0 and nf4: there the input is quantised to int8 blocks once per product
 * and each row is an integer dot (backend/cpu/quant_int.h, which states the error bound). Many
 * tokens (a prefill chunk, more than 16) go to the matrix-matrix kernels where the CPU has
 * them (backend/cpu/matmul_float.h for fp32/fp16/bf16, quant_mm.h for the block kinds on
 * AVX512-VNNI); else the block kinds go as tiles: an item's rows (ITEM_BYTES of weights, in
 * L1/L2) against 8 tokens at a time, each row read from memory once, and the float kinds
 * through BLAS. */
#include "backend/cpu/matvec.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/matmul_float.h"
#include "backend/cpu/parallel.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/quant_int.h"
#include "backend/cpu/quant_mm.h"
#include "backend/cpu/quant_x16.h"
#include "core/env_switch.h"

/* Below this many weights a parallel region costs more than it saves. */
#define PARALLEL_MIN 65536
/* Stored bytes of weight rows per parallel item: items of a few microseconds, many per
 * thread (a thread that is descheduled holds up at most one), few enough that claiming them
 * costs nothing. */
#define ITEM_BYTES 32768
/* One token's items are larger: each item's start is a claim (an atomic add whose cache line
 * moves between the cores) and a lane of rows that dot_pf has not prefetched, its last rows'
 * prefetches `ahead` landing in the next item, mostly another thread's. On 2 threads (Zen 5)
 * 128 KiB items decoded 3 to 10% faster than 32 KiB ones for every kind (fp32 to q4_0, in
 * alternate tokens of one run); on 1 thread they ran the same. Still about 5 us an item. */
#define ITEM_BYTES_ONE_TOKEN 131072

int cb_weight_matrix_from_f32(cb_weight_matrix *m, cb_kv_kind kind, const float *w, int rows,
                              int cols, cb_error *e) {
    memset(m, 0, sizeof *m);
    if (!cb_kv_kind_valid((int)kind))
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: unknown storage kind %d", (int)kind);
    if (rows <= 0 || cols <= 0)
        return cb_fail(e, CB_E_INVALID, "", "weight matrix: bad shape (%d, %d)", rows, cols);
    const size_t row_bytes = cb_kv_kind_bytes(kind, (size_t)cols);
    // 64-byte aligned: with malloc's 16, every 512-bit load of an fp32 row straddled two
    // cache lines, and a 5-token product read memory at half the speed
    const size_t bytes = (size_t)rows * row_bytes;
    void *data = bytes / row_bytes == (size_t)rows ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
    if (!data) return cb_fail(e, CB_E_RUNTIME, "", "weight matrix: out of memory (%d x %zu bytes)", rows, row_bytes);
    const int x16 = cb_x16_wanted(kind, rows);
    if (x16) { // each group's 16 rows quantised into a thread's scratch, then regrouped
        int failed = 0;
        #pragma omp parallel for if ((long long)rows * cols >= PARALLEL_MIN) reduction(|: failed)
        for (int g = 0; g < rows / CB_X16_ROWS; g++) {
            unsigned char *tmp = cb_parallel_scratch(CB_X16_ROWS * row_bytes);
            if (!tmp) {
                failed = 1;
                continue;
            }
            for (int r = 0; r < CB_X16_ROWS; r++)
                cb_kv_quantize_row(kind, tmp + (size_t)r * row_bytes, w + ((size_t)g * CB_X16_ROWS + r) * cols,
                                   (size_t)cols);
            cb_x16_pack_group((unsigned char *)data + (size_t)g * CB_X16_ROWS * row_bytes, tmp, kind, cols);
        }
        if (failed) {
            free(data);
            return cb_fail(e, CB_E_RUNTIME, "", "weight matrix: out of memory (16 x %zu bytes of scratch)", row_bytes);
        }
    } else {
        #pragma omp parallel for if ((long long)rows * cols >= PARALLEL_MIN)
        for (int r = 0; r < rows; r++)
            cb_kv_quantize_row(kind, (unsigned char *)data + (size_t)r * row_bytes,
                               w + (size_t)r * cols, (size_t)cols);
    }
    m->x16 = x16;
    m->kind = kind;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = row_bytes;
    m->data = data;
    m->owned = data;
    return CB_OK;
}

void cb_weight_matrix_view(cb_weight_matrix *m, cb_kv_kind kind, const void *data, int rows,
                           int cols) {
    m->kind = kind;
    m->rows = rows;
    m->cols = cols;
    m->row_bytes = cb_kv_kind_bytes(kind, (size_t)cols);
    m->data = data;
    m->owned = NULL;
    m->x16 = 0;
}

void cb_weight_matrix_free(cb_weight_matrix *m) {
    free(m->owned);
    memset(m, 0, sizeof *m);
}

const void *cb_weight_matrix_row(const cb_weight_matrix *m, int r, void *buf) {
    if (!m->x16) return (const unsigned char *)m->data + (size_t)r * m->row_bytes;
    cb_x16_get_row(buf, m->data, m->kind, m->cols, r);
    return buf;
}

size_t cb_weight_matrix_bytes(const cb_weight_matrix *m) { return (size_t)m->rows * m->row_bytes; }

static const void *row_of(const cb_weight_matrix *W, int r) {
    return (const unsigned char *)W->data + (size_t)r * W->row_bytes;
}

/* Rows this far ahead of the one being read are prefetched: a core streaming a lane of rows
 * on the hardware prefetchers alone fell short of the bandwidth one core can draw (decode
 * attention measured half of it). Whole rows, at least PREFETCH_BYTES. */
#ifndef CB_MATVEC_PREFETCH
#define CB_MATVEC_PREFETCH 8192
#endif
static inline size_t prefetch_ahead(size_t row_bytes) {
    return (CB_MATVEC_PREFETCH + row_bytes - 1) / row_bytes * row_bytes;
}
/* A weight line is read once a token, so the prefetches that stream it ahead are
 * non-temporal: on Zen 5 a T0 prefetch installs every line in L2, and each line L2 then
 * evicts is written into the L3 (a victim cache) on its way out, hundreds of MB a token;
 * alternated step by step in one decode (the 110M model, fp16 cache), NTA decoded fp32 1.24
 * to 1.45x faster, bf16 1.07-1.16x and fp16 1.02-1.25x (1 and 2 threads). An NTA line lands
 * in L1 alone, so only distances L1 holds with room to spare use it (the default 8 KiB, a
 * few rows); rows longer than that keep T0. */
#define PREFETCH_NTA_MAX 16384
/* Inlined always: GCC drops calls of a function that only prefetches. */
static inline __attribute__((always_inline)) void prefetch_bytes(const unsigned char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
}

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define DOT_PF 1
/* One token's dot product with an fp32, fp16 or bf16 row (K, a compile-time constant at
 * each call), the row's bytes `ahead` on prefetched as it goes, one cache line of the row a
 * step: prefetching the whole row before reading it (as the other kinds do) stalled a core
 * at each row's start, and on this VM the hardware prefetchers alone leave a core far below
 * its bandwidth. The same products as cb_kv_dot, summed in another order.
 * The kernel is one per kind and not the bound: a 64-byte line costs 2 loads, 2 conversions
 * and 2 FMAs, a few cycles against the ~8 a line takes at one core's bandwidth, so what
 * counts is how many lines are in flight. A prefetch a line keeps that number steady; a
 * whole-row burst (the old path, 24 to 64 prefetches) asks for more lines than the core's
 * miss buffers hold, and the loads behind the burst wait. Intel cores have fewer such buffers
 * than Zen 5, so the burst costs there no less (dot_pf was the faster on a Xeon too). On Zen
 * 5, in alternate tokens of one decode run, dot_pf beat the old path for fp16 by 6 to 9% and
 * bf16 by 5 to 8% (1 and 2 threads) and tied it for fp32; runs of each path in turn, seconds
 * apart, said the opposite as often, the machine's bandwidth moving by a third between them.
 * Tried and no faster: 4 accumulators, 512-bit fp32 loads, two rows at a time, prefetching
 * 4 to 32 KiB ahead.
 *   row: cols values of kind K; x (cols). */
static inline __attribute__((always_inline)) float dot_pf(const int K, const void *row, const float *x, size_t cols,
                                                          size_t ahead) {
    const size_t per = K == CB_KV_F32 ? 16 : 32; // values in a 64-byte line
    const unsigned char *pf = (const unsigned char *)row + ahead;
    const int nta = ahead <= PREFETCH_NTA_MAX;
    size_t j = 0;
#if defined(__AVX512F__)
    if (K != CB_KV_F32) { // fp16, bf16: two 16-value halves a line
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        const uint16_t *h = row;
        for (; j + per <= cols; j += per, pf += 64) {
            if (nta) _mm_prefetch((const char *)pf, _MM_HINT_NTA);
            else _mm_prefetch((const char *)pf, _MM_HINT_T0);
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)(h + j)), w1 = _mm256_loadu_si256((const __m256i *)(h + j + 16));
            __m512 v0, v1;
            if (K == CB_KV_F16) {
                v0 = _mm512_cvtph_ps(w0);
                v1 = _mm512_cvtph_ps(w1);
            } else {
                v0 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w0), 16));
                v1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w1), 16));
            }
            a0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x + j), a0);
            a1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + j + 16), a1);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
        if (j < cols) s += cb_kv_dot((cb_kv_kind)K, h + j, x + j, cols - j);
        return s;
    }
#endif
    // 256-bit loads: an fp32 row streamed faster so than with 512-bit ones (Zen 5)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; j + per <= cols; j += per, pf += 64) {
        if (nta) _mm_prefetch((const char *)pf, _MM_HINT_NTA);
        else _mm_prefetch((const char *)pf, _MM_HINT_T0);
        for (size_t q = 0; q < per; q += 16) {
            __m256 v0, v1;
            if (K == CB_KV_F32) {
                v0 = _mm256_loadu_ps((const float *)row + j + q);
                v1 = _mm256_loadu_ps((const float *)row + j + q + 8);
            } else {
                const __m128i w0 = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j + q));
                const __m128i w1 = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j + q + 8));
                if (K == CB_KV_F16) {
                    v0 = _mm256_cvtph_ps(w0);
                    v1 = _mm256_cvtph_ps(w1);
                } else {
                    v0 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w0), 16));
                    v1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(w1), 16));
                }
            }
            a0 = _mm256_fmadd_ps(v0, _mm256_loadu_ps(x + j + q), a0);
            a1 = _mm256_fmadd_ps(v1, _mm256_loadu_ps(x + j + q + 8), a1);
        }
    }
    const __m256 t = _mm256_add_ps(a0, a1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    float s = _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
    if (j < cols) s += cb_kv_dot((cb_kv_kind)K, (const unsigned char *)row + j * (K == CB_KV_F32 ? 4 : 2), x + j, cols - j);
    return s;
}

/* 1 unless CB_MATVEC_PF=0 in the environment (dot_pf off: cb_kv_dot after a whole-row
 * prefetch, as before), to tell its effect apart. Read once. */
static int dot_pf_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_MATVEC_PF");
}
#else
#define DOT_PF 0
#endif

/* One product split into items of rows_per rows. */
typedef struct matvec_job {
    float *y;
    const cb_weight_matrix *W;
    const float *x, *bias;
    int n, rows_per;
    /* q8_0, q4_0, nf4 weights: x as int8 blocks, one per token (NULL: the f32 kernels) */
    const cb_act_q8 *acts;
} matvec_job;

/* Input vectors held as int8 blocks for an integer product: in the caller's stack buffer
 * when one token's fit (up to 8192 values), else on the heap. */
#define ACT_STACK_VALUES 8192
typedef struct act_buf {
    unsigned char stack[ACT_STACK_VALUES / CB_QI_BLOCK * CB_QI_BLOCK * 5 + 320 +
                        (ACT_STACK_VALUES / 96 + 1) * CB_QI_G3_BYTES] __attribute__((aligned(64)));
    cb_act_q8 stack_act;
    unsigned char *heap;
    cb_act_q8 *heap_act;
} act_buf;

typedef struct quantise_job {
    cb_act_q8 *acts;
    const float *x;
    size_t cols;
} quantise_job;

static void quantise_token(void *ctx, int i) {
    const quantise_job *q = ctx;
    cb_act_q8_quantize(&q->acts[i], q->x + (size_t)i * q->cols);
}

/* Quantise x (n, cols) for j when W has integer kernels; 0 when the f32 kernels must do it
 * (another kind, or no memory for the heap buffer: slower, within tighter bounds). */
static int act_prepare(matvec_job *j, act_buf *buf, int n) {
    if (!cb_qi_kind(j->W->kind)) return 0;
    const size_t cols = (size_t)j->W->cols, per = (cb_act_q8_bytes(cols) + 63) / 64 * 64;
    unsigned char *mem = buf->stack;
    cb_act_q8 *acts = &buf->stack_act;
    buf->heap = NULL;
    buf->heap_act = NULL;
    if (n > 1 || per > sizeof buf->stack) {
        buf->heap = aligned_alloc(64, per * (size_t)n);
        buf->heap_act = malloc(sizeof(cb_act_q8) * (size_t)n);
        if (!buf->heap || !buf->heap_act) {
            free(buf->heap);
            free(buf->heap_act);
            return 0;
        }
        mem = buf->heap;
        acts = buf->heap_act;
    }
    for (int i = 0; i < n; i++) cb_act_q8_init(&acts[i], mem + (size_t)i * per, cols);
    quantise_job q = {acts, j->x, cols};
    if ((size_t)n * cols >= PARALLEL_MIN) cb_parallel_for(n, quantise_token, &q);
    else
        for (int i = 0; i < n; i++) quantise_token(&q, i);
    if (n <= CB_QI_MAX_M && j->W->kind == CB_KV_Q4_0 && !j->W->x16) /* a few tokens: 3 blocks a step */
        for (int i = 0; i < n; i++) cb_act_q8_layout_q4(&acts[i]);
    j->acts = acts;
    return 1;
}

static void act_release(act_buf *buf) {
    free(buf->heap);
    free(buf->heap_act);
}

/* Rows per item: ITEM_BYTES of weights whatever the tokens (a claim costs the same for any
 * n; 5 tokens' items of 2 fp32 rows spent a tenth of a verification pass claiming). One
 * token's items are about ITEM_BYTES_ONE_TOKEN, as many as a multiple of the threads: the
 * 110M model's output projection in q4_0 was 3 items for 2 threads, and one thread waited
 * for the other's last (about 100 us of a 1.2 ms token over its 49 products; balanced, a
 * token took 0.958 to 0.996 of the time, tokens alternating in one run). A multiple of 4
 * rows where it can be, for the 4-row kernels (rows4 here, and q4_0's one-token kernel in
 * quant_int.c). */
static int rows_per_item(const cb_weight_matrix *W, int n) {
    if (n == 1) {
        const size_t threads = (size_t)cb_parallel_threads(), rows = (size_t)W->rows;
        size_t items = (rows * W->row_bytes + ITEM_BYTES_ONE_TOKEN - 1) / ITEM_BYTES_ONE_TOKEN;
        items = (items + threads - 1) / threads * threads;
        size_t per = (rows + items - 1) / items;
        if (W->kind == CB_KV_Q4_0 && per > 4) per = (per + 3) & ~(size_t)3;
        if (W->x16) per = (per + CB_X16_ROWS - 1) / CB_X16_ROWS * CB_X16_ROWS;
        return per > rows ? (int)rows : (int)per;
    }
    size_t per = ITEM_BYTES / W->row_bytes;
    if (per > 4) per &= ~(size_t)3;
    if (W->x16) per = (per + CB_X16_ROWS - 1) / CB_X16_ROWS * CB_X16_ROWS;
    return per < 1 ? 1 : per > (size_t)W->rows ? W->rows : (int)per;
}

static int items_of(const matvec_job *j) { return (j->W->rows + j->rows_per - 1) / j->rows_per; }

static void matvec_item(void *ctx, int item) {
    const matvec_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const size_t cols = (size_t)W->cols;
    const int r0 = item * j->rows_per, r1 = r0 + j->rows_per < W->rows ? r0 + j->rows_per : W->rows;
    const size_t ahead = prefetch_ahead(W->row_bytes);
    if (W->x16) {
        if (j->acts)
            cb_x16_dot(W->kind, j->y + r0, 0, W->data, W->cols, r0 / CB_X16_ROWS, (r1 - r0) / CB_X16_ROWS, j->acts, 1);
        else
            cb_x16_dot_f32(W->kind, j->y + r0, 0, W->data, W->cols, r0 / CB_X16_ROWS, (r1 - r0) / CB_X16_ROWS, j->x,
                           cols, 1);
        if (j->bias)
            for (int r = r0; r < r1; r++) j->y[r] += j->bias[r];
        return;
    }
    if (j->acts) {
        cb_qi_rows_dot(W->kind, j->y + r0, 0, row_of(W, r0), W->row_bytes, r1 - r0, j->acts, 1);
        if (j->bias)
            for (int r = r0; r < r1; r++) j->y[r] += j->bias[r];
        return;
    }
#if DOT_PF
    if (dot_pf_enabled() && (W->kind == CB_KV_F32 || W->kind == CB_KV_F16 || W->kind == CB_KV_BF16)) {
        for (int r = r0; r < r1; r++) {
            const float d = W->kind == CB_KV_F32   ? dot_pf(CB_KV_F32, row_of(W, r), j->x, cols, ahead)
                            : W->kind == CB_KV_F16 ? dot_pf(CB_KV_F16, row_of(W, r), j->x, cols, ahead)
                                                   : dot_pf(CB_KV_BF16, row_of(W, r), j->x, cols, ahead);
            j->y[r] = d + (j->bias ? j->bias[r] : 0.0f);
        }
        return;
    }
#endif
    for (int r = r0; r < r1; r++) {
        prefetch_bytes((const unsigned char *)row_of(W, r) + ahead, W->row_bytes);
        j->y[r] = cb_kv_dot(W->kind, row_of(W, r), j->x, cols) + (j->bias ? j->bias[r] : 0.0f);
    }
}

void cb_matvec(float *y, const cb_weight_matrix *W, const float *x, const float *bias) {
    matvec_job j = {y, W, x, bias, 1, rows_per_item(W, 1), NULL};
    act_buf buf;
    const int quantised = act_prepare(&j, &buf, 1);
    if ((long long)W->rows * W->cols >= PARALLEL_MIN) cb_parallel_for(items_of(&j), matvec_item, &j);
    else
        for (int i = 0; i < items_of(&j); i++) matvec_item(&j, i);
    if (quantised) act_release(&buf);
}

/* From this many tokens on an f32 product goes to BLAS (a prefill chunk); below, a few
 * tokens (speculative verification) cost about one pass over the weights, as one token
 * does: BLAS sgemm packed the matrix first, 2.5x the time of one token for 5 (and ran its
 * own threads beside the pool's). */
#define BLAS_MIN_TOKENS 16

/* Tokens whose outputs one pass over a weight row produces (cb_kv_dot_m keeps 8 of them in
 * registers per pass over the row; the row stays in L1/L2 between passes). */
#define TOKENS_PER_ROW_PASS 16

#if defined(__AVX512VL__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define ROWS4 1
/* A few tokens (speculative verification) against 4 float-kind rows at once: each 8 input
 * values of each token are loaded once for the 4 rows, with 4 x M accumulators in the 32
 * vector registers AVX-512 gives. One row at a time read every token's input once per row;
 * for 5 tokens over 2048 columns (40 KB) that came from L2 each time, and the 5-token pass
 * over SwiGLU's down projection took twice one token's time.
 *   y (M, ldy): y[i * ldy + q] = row q . x_i, q < 4; rows 4 x cols (row_bytes apart);
 *   x (M, cols). cols a multiple of 8. */
static inline __attribute__((always_inline)) __m256 load8_kind(const int K, const unsigned char *row, int j) {
    if (K == CB_KV_F32) return _mm256_loadu_ps((const float *)row + j);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + j));
    if (K == CB_KV_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float hsum8_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static inline __attribute__((always_inline)) void rows4_kernel(const int K, const int M, float *y, size_t ldy,
                                                               const unsigned char *row, size_t row_bytes,
                                                               const float *x, int cols) {
    __m256 acc[4][6];
    #pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) acc[q][i] = _mm256_setzero_ps();
    for (int j = 0; j < cols; j += 8) {
        __m256 w[4];
        #pragma GCC unroll 4
        for (int q = 0; q < 4; q++) w[q] = load8_kind(K, row + (size_t)q * row_bytes, j);
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m256 xi = _mm256_loadu_ps(x + (size_t)i * cols + j);
            #pragma GCC unroll 4
            for (int q = 0; q < 4; q++) acc[q][i] = _mm256_fmadd_ps(w[q], xi, acc[q][i]);
        }
    }
    #pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        #pragma GCC unroll 6
        for (int i = 0; i < M; i++) y[(size_t)i * ldy + q] = hsum8_ps(acc[q][i]);
}

/* 1 when rows4 takes W with n tokens: a float kind, 2 to 6 tokens, whole 8-value groups,
 * and inputs too wide to stay in L1 (below that one row at a time is faster: 4 rows read
 * side by side stream less well). */
static int rows4_ok(const cb_weight_matrix *W, int n) {
    return (W->kind == CB_KV_F32 || W->kind == CB_KV_F16 || W->kind == CB_KV_BF16) && n >= 2 && n <= 6 &&
           W->cols % 8 == 0 && (size_t)n * W->cols * sizeof(float) > 24576;
}

static void rows4(const cb_weight_matrix *W, int n, float *y, size_t ldy, const unsigned char *row, const float *x) {
#define ROWS4_M(K)                                                                             \
    switch (n) {                                                                               \
    case 2: rows4_kernel(K, 2, y, ldy, row, W->row_bytes, x, W->cols); break;                  \
    case 3: rows4_kernel(K, 3, y, ldy, row, W->row_bytes, x, W->cols); break;                  \
    case 4: rows4_kernel(K, 4, y, ldy, row, W->row_bytes, x, W->cols); break;                  \
    case 5: rows4_kernel(K, 5, y, ldy, row, W->row_bytes, x, W->cols); break;                  \
    default: rows4_kernel(K, 6, y, ldy, row, W->row_bytes, x, W->cols); break;                 \
    }
    if (W->kind == CB_KV_F32) ROWS4_M(CB_KV_F32)
    else if (W->kind == CB_KV_F16) ROWS4_M(CB_KV_F16)
    else ROWS4_M(CB_KV_BF16)
#undef ROWS4_M
}
#else
#define ROWS4 0
#endif

static void matvec_n_item(void *ctx, int item) {
    const matvec_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, cols = W->cols, n = j->n;
    const int r0 = item * j->rows_per, r1 = r0 + j->rows_per < rows ? r0 + j->rows_per : rows;
    const size_t ahead = prefetch_ahead(W->row_bytes);
    int r = r0;
    if (W->x16) { // the item's groups against 8 tokens at a time
        const int g0 = r0 / CB_X16_ROWS, ng = (r1 - r0) / CB_X16_ROWS;
        for (int i0 = 0; i0 < n; i0 += CB_QI_MAX_M) {
            const int m = n - i0 < CB_QI_MAX_M ? n - i0 : CB_QI_MAX_M;
            if (j->acts)
                cb_x16_dot(W->kind, j->y + (size_t)i0 * rows + r0, (size_t)rows, W->data, cols, g0, ng, j->acts + i0, m);
            else
                cb_x16_dot_f32(W->kind, j->y + (size_t)i0 * rows + r0, (size_t)rows, W->data, cols, g0, ng,
                               j->x + (size_t)i0 * cols, (size_t)cols, m);
        }
        if (j->bias)
            for (int i = 0; i < n; i++)
                for (int q = r0; q < r1; q++) j->y[(size_t)i * rows + q] += j->bias[q];
        return;
    }
#if ROWS4
    if (rows4_ok(W, n)) {
        for (; r + 4 <= r1; r += 4) {
            prefetch_bytes((const unsigned char *)row_of(W, r) + ahead, 4 * W->row_bytes);
            rows4(W, n, j->y + r, (size_t)rows, row_of(W, r), j->x);
            if (j->bias)
                for (int i = 0; i < n; i++)
                    for (int q = 0; q < 4; q++) j->y[(size_t)i * rows + r + q] += j->bias[r + q];
        }
    }
#endif
    if (j->acts) { // the item's rows against 8 tokens at a time: the rows stay in L1/L2
        for (int i0 = 0; i0 < n; i0 += CB_QI_MAX_M) {
            const int m = n - i0 < CB_QI_MAX_M ? n - i0 : CB_QI_MAX_M;
            cb_qi_rows_dot(W->kind, j->y + (size_t)i0 * rows + r, (size_t)rows, row_of(W, r), W->row_bytes, r1 - r,
                           j->acts + i0, m);
        }
        if (j->bias)
            for (int i = 0; i < n; i++)
                for (int q = r; q < r1; q++) j->y[(size_t)i * rows + q] += j->bias[q];
        return;
    }
    for (; r < r1; r++) {
        float out[TOKENS_PER_ROW_PASS];
        const void *row = row_of(W, r);
        prefetch_bytes((const unsigned char *)row + ahead, W->row_bytes);
        for (int i0 = 0; i0 < n; i0 += TOKENS_PER_ROW_PASS) {
            const int m = n - i0 < TOKENS_PER_ROW_PASS ? n - i0 : TOKENS_PER_ROW_PASS;
            cb_kv_dot_m(W->kind, out, row, j->x + (size_t)i0 * cols, (size_t)cols, (size_t)cols, m);
            for (int i = 0; i < m; i++)
                j->y[(size_t)(i0 + i) * rows + r] = out[i] + (j->bias ? j->bias[r] : 0.0f);
        }
    }
}

/* fp16/bf16 weights and many tokens (a prefill chunk) on a CPU without matmul_float's
 * kernels (no AVX2): each item converts PANEL_ROWS rows to f32 once (exact) and multiplies them by all n tokens in one single-threaded BLAS call, so a
 * row costs one conversion per chunk instead of one per token group, and the products run on
 * BLAS's register-blocked kernels. */
#define PANEL_ROWS 128

typedef struct panel_job {
    float *y;
    const cb_weight_matrix *W;
    const float *x, *bias;
    int n;
} panel_job;

static void panel_item(void *ctx, int item) {
    const panel_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, cols = W->cols, r0 = item * PANEL_ROWS;
    const int r1 = r0 + PANEL_ROWS < rows ? r0 + PANEL_ROWS : rows;
    float *panel = malloc(sizeof(float) * (size_t)(r1 - r0) * (size_t)cols);
    if (!panel) { // no memory for the panel: the same products a row at a time
        for (int r = r0; r < r1; r++)
            for (int i = 0; i < j->n; i++)
                j->y[(size_t)i * rows + r] = cb_kv_dot(W->kind, row_of(W, r), j->x + (size_t)i * cols, (size_t)cols);
    } else {
        for (int r = r0; r < r1; r++) cb_kv_dequantize_row(W->kind, panel + (size_t)(r - r0) * cols, row_of(W, r), (size_t)cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, cols, 1.0f, j->x, cols, panel, cols, 0.0f,
                    j->y + r0, rows);
        free(panel);
    }
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r1; r++) j->y[(size_t)i * rows + r] += j->bias[r];
}

static void matvec_panels(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n) {
    panel_job j = {y, W, x, bias, n};
    const int items = (W->rows + PANEL_ROWS - 1) / PANEL_ROWS;
    // OpenBLAS's pthreads build would run each item's call on all its threads
    const int pthreads = openblas_get_parallel() == 1;
    const int blas_threads = pthreads ? openblas_get_num_threads() : 1;
    if (blas_threads > 1) openblas_set_num_threads(1);
    cb_parallel_for(items, panel_item, &j);
    if (blas_threads > 1) openblas_set_num_threads(blas_threads);
}

void cb_matvec_n(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n) {
    if (n == 1) {
        cb_matvec(y, W, x, bias);
        return;
    }
    const int rows = W->rows, cols = W->cols;
    if (cb_mf_matmul(y, W, x, bias, n)) return; // fp32, fp16, bf16: packed AVX-512 / AVX2 tiles
    if (W->kind == CB_KV_F32 && n > BLAS_MIN_TOKENS) { // a plain f32 matrix: BLAS does it best
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0f, x, cols,
                    (const float *)W->data, cols, 0.0f, y, rows);
        if (bias)
            for (int i = 0; i < n; i++)
                for (int r = 0; r < rows; r++) y[(size_t)i * rows + r] += bias[r];
        return;
    }
    if ((W->kind == CB_KV_F16 || W->kind == CB_KV_BF16) && n > BLAS_MIN_TOKENS) {
        matvec_panels(y, W, x, bias, n);
        return;
    }
    matvec_job j = {y, W, x, bias, n, rows_per_item(W, n), NULL};
    act_buf buf;
    const int quantised = act_prepare(&j, &buf, n);
    if (quantised && cb_qmm(y, W, j.acts, bias, n)) { // a prefill chunk: integer matrix tiles
        act_release(&buf);
        return;
    }
    if ((long long)rows * cols >= PARALLEL_MIN) cb_parallel_for(items_of(&j), matvec_n_item, &j);
    else
        for (int i = 0; i < items_of(&j); i++) matvec_n_item(&j, i);
    if (quantised) act_release(&buf);
}
