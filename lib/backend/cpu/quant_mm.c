/* quant_mm.c: the integer matrix-matrix product of quant_mm.h (AVX512-VNNI; without it the
 * caller keeps the decode kernel's tiles, which have AVX-512BW, AVX2 and portable paths). */
#include "backend/cpu/quant_mm.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/parallel.h"
#include "backend/cpu/quant_x16.h"
#include "backend/cpu/transpose16.h"
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
 * rec[9 MT + i] = its scale (f32 bits); tokens past n zero. One tile t. */
static void pack_tokens(int32_t *xa, const cb_act_q8 *a, int n, int nbk, int off, int t) {
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

typedef struct qmm_job {
    float *y;
    const cb_weight_matrix *W;
    int32_t *xa;
    const cb_act_q8 *a;
    const float *bias;
    int n, nbk;
} qmm_job;

/* One token tile packed (the tiles on the pool: serial, they left the other thread idle). */
static void pack_item(void *ctx, int t) {
    const qmm_job *j = ctx;
    pack_tokens(j->xa, j->a, j->n, j->nbk, offset_of(j->W->kind), t);
}

#if QMM_X86
#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* y[i * ldy + r] for i < m tokens, r < nrv rows of a 16-row group: wp (nbk * 8 * 64 bytes:
 * block b, column group q, lane r holds the row's 4 bytes), dw (nbk * 16) the scales; npf
 * lines from pf fetched ahead on the way (the next group's stored rows). */
TV static void tile_vnni(float *y, size_t ldy, const int32_t *xa, const uint8_t *wp, const float *dw, int nbk,
                         int m, int nrv, const char *pf, int npf) {
    __m512 facc[MT];
    #pragma GCC unroll 12
    for (int i = 0; i < MT; i++) facc[i] = _mm512_setzero_ps();
    for (int b = 0; b < nbk; b++) {
        for (int l = b; l < npf; l += nbk) _mm_prefetch(pf + (size_t)l * 64, _MM_HINT_T0);
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

#if QMM_X86
/* One group of 16 rows (R0 .. R0 + nv - 1, the rest zero) packed as pack_and_run's scalar
 * loop does, two blocks at a time: each row's 64 unsigned bytes (q8_0 xor 0x80, q4_0's
 * nibbles, nf4's levels + 128 by a byte shuffle) as 16 words, the 16 rows transposed in
 * registers, so that word q of block b of every row lands in one 64-byte column group. */
TV static void pack_group_vnni(uint8_t *wp, float *dw, const cb_weight_matrix *W, int R0, int nv, int nbk) {
    const cb_kv_kind K = W->kind;
    const __m256i lv = _mm256_broadcastsi128_si256(
        _mm_xor_si128(_mm_loadu_si128((const __m128i *)(const void *)cb_nf4_levels_i8), _mm_set1_epi8((char)0x80)));
    const __m256i f = _mm256_set1_epi8(15), s80 = _mm256_set1_epi8((char)0x80);
    // stored bytes of one 32-value block (nf4: half a 64-value block)
    const size_t bsize = K == CB_KV_Q8_0 ? sizeof(cb_block_q8_0) : K == CB_KV_Q4_0 ? sizeof(cb_block_q4_0)
                                                                               : sizeof(cb_block_nf4) / 2;
    for (int b = 0; b < nbk; b += 2) {
        const int two = b + 1 < nbk;
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            float d0 = 0.0f, d1 = 0.0f;
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            if (i < nv) {
                const unsigned char *row = (const unsigned char *)W->data + (size_t)(R0 + i) * W->row_bytes;
                // 16 rows side by side, each from memory once per product: fetch 256 bytes
                // ahead (as matmul_float's packing: the hardware alone left it latency-bound)
                _mm_prefetch((const char *)row + (size_t)b * bsize + 256, _MM_HINT_T0);
                if (K == CB_KV_Q8_0) {
                    const cb_block_q8_0 *w = (const cb_block_q8_0 *)(const void *)row + b;
                    lo = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)w[0].qs), s80);
                    d0 = _cvtsh_ss(w[0].d);
                    if (two) {
                        hi = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)w[1].qs), s80);
                        d1 = _cvtsh_ss(w[1].d);
                    }
                } else if (K == CB_KV_Q4_0) {
                    const cb_block_q4_0 *w = (const cb_block_q4_0 *)(const void *)row + b;
                    const __m128i x0 = _mm_loadu_si128((const __m128i *)(const void *)w[0].qs);
                    lo = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x0, 4), x0), f);
                    d0 = _cvtsh_ss(w[0].d);
                    if (two) {
                        const __m128i x1 = _mm_loadu_si128((const __m128i *)(const void *)w[1].qs);
                        hi = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x1, 4), x1), f);
                        d1 = _cvtsh_ss(w[1].d);
                    }
                } else { // nf4: blocks b, b + 1 are one 64-value block (nbk is even)
                    const cb_block_nf4 *w = (const cb_block_nf4 *)(const void *)row + b / 2;
                    const __m256i x = _mm256_loadu_si256((const __m256i *)(const void *)w->qs);
                    lo = _mm256_shuffle_epi8(lv, _mm256_and_si256(x, f));
                    hi = _mm256_shuffle_epi8(lv, _mm256_and_si256(_mm256_srli_epi16(x, 4), f));
                    d0 = d1 = _cvtsh_ss(w->d) * (1.0f / 127); // levels held x 127
                }
            }
            r[i] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
            dw[(size_t)b * LANES + i] = d0;
            if (two) dw[(size_t)(b + 1) * LANES + i] = d1;
        }
        cb_transpose16(r);
        for (int c = 0; c < (two ? 16 : 8); c++) _mm512_store_ps((float *)(void *)(wp + ((size_t)b * 8 + c) * 64), r[c]);
    }
}
#endif

/* Repack rows r0 .. r0 + nrows into groups of 16 (panel: group_bytes each) and run every
 * token tile over them. The stored rows come from memory once per product (each chunk reads
 * every weight again), so a group is packed just before the first token tile runs over it,
 * while that tile fetches the next group's stored rows ahead: the reads overlap the
 * multiply-adds instead of stalling the packing. */
static void pack_and_run(const qmm_job *j, int r0, int nrows, uint8_t *panel, size_t group_bytes) {
#if QMM_X86
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, nbk = j->nbk, groups = (nrows + LANES - 1) / LANES;
    const int tiles = (j->n + MT - 1) / MT;
    for (int t = 0; t < tiles; t++) { // a token tile (in L1) over the item's groups (in L2)
        const int m = j->n - t * MT < MT ? j->n - t * MT : MT;
        for (int g = 0; g < groups; g++) {
            uint8_t *wp = panel + (size_t)g * group_bytes;
            const int nrv = nrows - g * LANES < LANES ? nrows - g * LANES : LANES;
            const char *pf = NULL;
            int npf = 0;
            if (t == 0) {
                float *dw = (float *)(void *)(wp + (size_t)nbk * 8 * 64);
                if (W->x16) cb_x16_unpack_group(wp, dw, W->data, W->kind, W->cols, (r0 + g * LANES) / LANES);
                else pack_group_vnni(wp, dw, W, r0 + g * LANES, nrv, nbk);
                const int next = r0 + (g + 1) * LANES; // of this item or the next
                if (next < rows) {
                    const int cnt = rows - next < LANES ? rows - next : LANES;
                    pf = (const char *)W->data + (size_t)next * W->row_bytes;
                    npf = (int)(((size_t)cnt * W->row_bytes + 63) / 64);
                }
            }
            tile_vnni(j->y + (size_t)t * MT * rows + r0 + g * LANES, (size_t)rows, j->xa + (size_t)t * nbk * REC, wp,
                      (const float *)(const void *)(wp + (size_t)nbk * 8 * 64), nbk, m, nrv, pf, npf);
        }
    }
#else
    (void)j, (void)r0, (void)nrows, (void)panel, (void)group_bytes; // not reached: cb_qmm_takes refuses
#endif
}

static void qmm_item(void *ctx, int item) {
    const qmm_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, nbk = j->nbk, r0 = item * ITEM_ROWS;
    const int nrows = rows - r0 < ITEM_ROWS ? rows - r0 : ITEM_ROWS, groups = (nrows + LANES - 1) / LANES;
    const size_t group_bytes = (size_t)nbk * (8 * 64 + LANES * 4); // bytes, then scales
    uint8_t *panel = cb_parallel_scratch((size_t)groups * group_bytes);
    if (panel) {
        pack_and_run(j, r0, nrows, panel, group_bytes);
    } else { // no memory: the decode kernel's tiles, 8 tokens at a time
        for (int i0 = 0; i0 < j->n; i0 += CB_QI_MAX_M)
            if (W->x16)
                cb_x16_dot(W->kind, j->y + (size_t)i0 * rows + r0, (size_t)rows, W->data, W->cols, r0 / LANES,
                           nrows / LANES, j->a + i0, j->n - i0 < CB_QI_MAX_M ? j->n - i0 : CB_QI_MAX_M);
            else
                cb_qi_rows_dot(W->kind, j->y + (size_t)i0 * rows + r0, (size_t)rows,
                               (const unsigned char *)W->data + (size_t)r0 * W->row_bytes, W->row_bytes, nrows,
                               j->a + i0, j->n - i0 < CB_QI_MAX_M ? j->n - i0 : CB_QI_MAX_M);
    }
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r0 + nrows; r++) j->y[(size_t)i * rows + r] += j->bias[r];
}

int cb_qmm(float *y, const cb_weight_matrix *W, const cb_act_q8 *a, const float *bias, int n) {
    if (!cb_qmm_takes(W, n)) return 0;
    const int nbk = blocks_of(W->kind, W->cols), tiles = (n + MT - 1) / MT;
    int32_t *xa = aligned_alloc(64, ((size_t)tiles * nbk * REC * 4 + 63) / 64 * 64);
    if (!xa) return 0;
    qmm_job j = {y, W, xa, a, bias, n, nbk};
    cb_parallel_for(tiles, pack_item, &j);
    cb_parallel_for((W->rows + ITEM_ROWS - 1) / ITEM_ROWS, qmm_item, &j);
    free(xa);
    return 1;
}
