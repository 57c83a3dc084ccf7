/* quant_mm.c: the integer matrix-matrix product of quant_mm.h (AVX512-VNNI; without it the
 * caller keeps the decode kernel's tiles, which have AVX-512BW, AVX2 and portable paths). */
#include "backend/cpu/quant_mm.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/parallel.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QMM_X86 1
#include <immintrin.h>
#else
#define QMM_X86 0
#endif

#define MIN_TOKENS 16 /* below, the row tiles are as fast (the repacking is per product) */
#define LANES 16      /* weight rows a register holds */
#define MT 12         /* tokens a register tile holds: 12 int32 and 12 f32 accumulators */
#define ITEM_ROWS 64  /* rows a parallel item repacks (4 groups of 16) and runs every token over */
#define REC (10 * MT) /* int32 words per token tile and block: 8 x MT bytes-of-4, MT offsets, MT scales */

static atomic_int g_enabled = 1;

void cb_qmm_enable(int enable) { atomic_store_explicit(&g_enabled, enable != 0, memory_order_relaxed); }

int cb_qmm_takes(const cb_weight_matrix *W, int n) {
    return QMM_X86 && n > MIN_TOKENS && cb_qi_kind(W->kind) && cb_qi_path_current() == CB_QI_AVX512VNNI &&
           atomic_load_explicit(&g_enabled, memory_order_relaxed);
}

/* 32-value blocks of a row of cols values (nf4's 64-value blocks count twice). */
static int blocks_of(cb_kv_kind kind, int cols) {
    return kind == CB_KV_NF4 ? 2 * ((cols + 63) / 64) : (cols + 31) / 32;
}

/* The offset added to a stored weight to make it an unsigned byte. */
static int offset_of(cb_kv_kind kind) { return kind == CB_KV_Q4_0 ? 8 : 128; }

/* Tokens as tiles of MT: rec = xa + (t * nbk + b) * REC holds, for token i of tile t and block
 * b, rec[q * MT + i] = its values 4q .. 4q + 3 (bytes), rec[8 MT + i] = -offset * sum(q),
 * rec[9 MT + i] = its scale (f32 bits); tokens past n zero. */
static void pack_tokens(int32_t *xa, const cb_act_q8 *a, int n, int nbk, int off) {
    const int tiles = (n + MT - 1) / MT;
    for (int t = 0; t < tiles; t++)
        for (int b = 0; b < nbk; b++) {
            int32_t *rec = xa + ((size_t)t * nbk + b) * REC;
            for (int i = 0; i < MT; i++) {
                const int tok = t * MT + i;
                if (tok >= n) {
                    for (int q = 0; q < 10; q++) rec[q * MT + i] = 0;
                    continue;
                }
                const cb_act_q8 *A = a + tok;
                for (int q = 0; q < 8; q++) memcpy(&rec[q * MT + i], A->q + (size_t)b * 32 + 4 * q, 4);
                rec[8 * MT + i] = off * A->c8[(size_t)b * 8]; // c8 = -sum(q)
                memcpy(&rec[9 * MT + i], &A->d[(size_t)b * 8], 4);
            }
        }
}

/* One stored row as nbk blocks of 32 unsigned bytes (weight + offset) and a scale each. */
static void unpack_row(cb_kv_kind kind, uint8_t *u, float *ds, const unsigned char *row, int nbk) {
    if (kind == CB_KV_Q8_0) {
        for (int b = 0; b < nbk; b++) {
            const cb_block_q8_0 *w = (const cb_block_q8_0 *)(const void *)row + b;
            for (int j = 0; j < 32; j++) u[b * 32 + j] = (uint8_t)(w->qs[j] ^ 0x80);
            ds[b] = cb_f16_to_f32(w->d);
        }
    } else if (kind == CB_KV_Q4_0) {
        for (int b = 0; b < nbk; b++) {
            const cb_block_q4_0 *w = (const cb_block_q4_0 *)(const void *)row + b;
            for (int j = 0; j < 16; j++) {
                u[b * 32 + j] = w->qs[j] & 15;
                u[b * 32 + 16 + j] = w->qs[j] >> 4;
            }
            ds[b] = cb_f16_to_f32(w->d);
        }
    } else { // nf4: a 64-value block is two 32-value ones with the same scale
        for (int bb = 0; bb < nbk / 2; bb++) {
            const cb_block_nf4 *w = (const cb_block_nf4 *)(const void *)row + bb;
            for (int j = 0; j < 32; j++) {
                u[bb * 64 + j] = (uint8_t)(cb_nf4_levels_i8[w->qs[j] & 15] ^ 0x80);
                u[bb * 64 + 32 + j] = (uint8_t)(cb_nf4_levels_i8[w->qs[j] >> 4] ^ 0x80);
            }
            ds[2 * bb] = ds[2 * bb + 1] = cb_f16_to_f32(w->d) * (1.0f / 127); // levels held x 127
        }
    }
}

typedef struct qmm_job {
    float *y;
    const cb_weight_matrix *W;
    const int32_t *xa;
    const cb_act_q8 *a;
    const float *bias;
    int n, nbk;
} qmm_job;

#if QMM_X86
#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* y[i * ldy + r] for i < m tokens, r < nrv rows of a 16-row group: wp (nbk * 8 * 64 bytes:
 * block b, column group q, lane r holds the row's 4 bytes), dw (nbk * 16) the scales. */
TV static void tile_vnni(float *y, size_t ldy, const int32_t *xa, const uint8_t *wp, const float *dw, int nbk,
                         int m, int nrv) {
    __m512 facc[MT];
    #pragma GCC unroll 12
    for (int i = 0; i < MT; i++) facc[i] = _mm512_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        const int32_t *rec = xa + (size_t)b * REC;
        __m512i iacc[MT];
        #pragma GCC unroll 12
        for (int i = 0; i < MT; i++) iacc[i] = _mm512_set1_epi32(rec[8 * MT + i]);
        #pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            const __m512i w = _mm512_load_si512((const void *)(wp + ((size_t)b * 8 + q) * 64));
            #pragma GCC unroll 12
            for (int i = 0; i < MT; i++) iacc[i] = _mm512_dpbusd_epi32(iacc[i], w, _mm512_set1_epi32(rec[q * MT + i]));
        }
        const __m512 d = _mm512_load_ps(dw + (size_t)b * LANES);
        const float *dx = (const float *)(const void *)(rec + 9 * MT);
        #pragma GCC unroll 12
        for (int i = 0; i < MT; i++)
            facc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(iacc[i]), _mm512_mul_ps(d, _mm512_set1_ps(dx[i])), facc[i]);
    }
    const __mmask16 mask = nrv >= 16 ? 0xFFFF : (__mmask16)((1u << nrv) - 1);
    for (int i = 0; i < m; i++) _mm512_mask_storeu_ps(y + (size_t)i * ldy, mask, facc[i]);
}
#endif

/* Repack rows r0 .. r0 + nrows into groups of 16 (panel: group_bytes each, u a row's scratch)
 * and run every token tile over them. */
static void pack_and_run(const qmm_job *j, int r0, int nrows, uint8_t *panel, size_t group_bytes, uint8_t *u) {
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, nbk = j->nbk, groups = (nrows + LANES - 1) / LANES;
    float *ds = (float *)(void *)(u + (size_t)nbk * 32);
    for (int g = 0; g < groups; g++) {
        uint8_t *wp = panel + (size_t)g * group_bytes;
        float *dw = (float *)(void *)(wp + (size_t)nbk * 8 * 64);
        for (int r = 0; r < LANES; r++) {
            const int R = r0 + g * LANES + r;
            if (R < r0 + nrows) {
                unpack_row(W->kind, u, ds, (const unsigned char *)W->data + (size_t)R * W->row_bytes, nbk);
            } else { // past the last row: zero weights and scales, outputs not stored
                memset(u, 0, (size_t)nbk * 32);
                for (int b = 0; b < nbk; b++) ds[b] = 0.0f;
            }
            for (int b = 0; b < nbk; b++) {
                for (int q = 0; q < 8; q++) memcpy(wp + (((size_t)b * 8 + q) * LANES + r) * 4, u + b * 32 + 4 * q, 4);
                dw[(size_t)b * LANES + r] = ds[b];
            }
        }
    }
    const int tiles = (j->n + MT - 1) / MT;
    for (int t = 0; t < tiles; t++) { // a token tile (in L1) over the item's groups (in L2)
        const int m = j->n - t * MT < MT ? j->n - t * MT : MT;
        for (int g = 0; g < groups; g++) {
            const uint8_t *wp = panel + (size_t)g * group_bytes;
            const int nrv = nrows - g * LANES < LANES ? nrows - g * LANES : LANES;
#if QMM_X86
            tile_vnni(j->y + (size_t)t * MT * rows + r0 + g * LANES, (size_t)rows, j->xa + (size_t)t * nbk * REC, wp,
                      (const float *)(const void *)(wp + (size_t)nbk * 8 * 64), nbk, m, nrv);
#else
            (void)wp, (void)nrv, (void)m; // not reached: cb_qmm_takes refuses
#endif
        }
    }
}

static void qmm_item(void *ctx, int item) {
    const qmm_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, nbk = j->nbk, r0 = item * ITEM_ROWS;
    const int nrows = rows - r0 < ITEM_ROWS ? rows - r0 : ITEM_ROWS, groups = (nrows + LANES - 1) / LANES;
    const size_t group_bytes = (size_t)nbk * (8 * 64 + LANES * 4); // bytes, then scales
    uint8_t *panel = aligned_alloc(64, (size_t)groups * group_bytes);
    uint8_t *u = malloc((size_t)nbk * 32 + sizeof(float) * (size_t)nbk);
    if (panel && u) {
        pack_and_run(j, r0, nrows, panel, group_bytes, u);
    } else { // no memory: the decode kernel's tiles, 8 tokens at a time
        for (int i0 = 0; i0 < j->n; i0 += CB_QI_MAX_M)
            cb_qi_rows_dot(W->kind, j->y + (size_t)i0 * rows + r0, (size_t)rows,
                           (const unsigned char *)W->data + (size_t)r0 * W->row_bytes, W->row_bytes, nrows, j->a + i0,
                           j->n - i0 < CB_QI_MAX_M ? j->n - i0 : CB_QI_MAX_M);
    }
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r0 + nrows; r++) j->y[(size_t)i * rows + r] += j->bias[r];
    free(panel);
    free(u);
}

int cb_qmm(float *y, const cb_weight_matrix *W, const cb_act_q8 *a, const float *bias, int n) {
    if (!cb_qmm_takes(W, n)) return 0;
    const int nbk = blocks_of(W->kind, W->cols), tiles = (n + MT - 1) / MT;
    int32_t *xa = aligned_alloc(64, ((size_t)tiles * nbk * REC * 4 + 63) / 64 * 64);
    if (!xa) return 0;
    pack_tokens(xa, a, n, nbk, offset_of(W->kind));
    qmm_job j = {y, W, xa, a, bias, n, nbk};
    cb_parallel_for((W->rows + ITEM_ROWS - 1) / ITEM_ROWS, qmm_item, &j);
    free(xa);
    return 1;
}
