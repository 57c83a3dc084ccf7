/* quant_x16.c: q8_0 and q4_0 weights as 16-row groups and their integer products (see
 * quant_x16.h for the layout and the error bound): an AVX512-VNNI kernel for 1 to 8 tokens
 * (a compile-time count each, so the accumulators stay in registers) and a portable loop
 * with the same block sums. */
#include "backend/cpu/quant_x16.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/env_switch.h"
#include "tensor/dtype.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define X16_X86 1
#include <immintrin.h>
#else
#define X16_X86 0
#endif

/* Stored bytes of one block of a row, and of one block's values over a group's 16 rows. */
static size_t block_bytes(cb_kv_kind kind) {
    return kind == CB_KV_Q8_0 ? sizeof(cb_block_q8_0) : sizeof(cb_block_q4_0);
}
static size_t values_bytes(cb_kv_kind kind) { return kind == CB_KV_Q8_0 ? 512 : 256; }
static int blocks_of(int cols) { return (cols + 31) / 32; }
static size_t group_bytes(cb_kv_kind kind, int cols) {
    return (size_t)CB_X16_ROWS * blocks_of(cols) * block_bytes(kind);
}
/* The offset added to a stored weight to make it unsigned (q4_0's nibbles hold value + 8). */
static int offset_of(cb_kv_kind kind) { return kind == CB_KV_Q8_0 ? 128 : 8; }

int cb_x16_wanted(cb_kv_kind kind, int rows) {
    static atomic_int on = -1;
    return (kind == CB_KV_Q8_0 || kind == CB_KV_Q4_0) && rows > 0 && rows % CB_X16_ROWS == 0 &&
           cb_qi_path_current() == CB_QI_AVX512VNNI && cb_env_switch_on(&on, "CB_QI_X16");
}

void cb_x16_pack_group(void *dst, const void *rows16, cb_kv_kind kind, int cols) {
    const int nbk = blocks_of(cols);
    const size_t bsize = block_bytes(kind), vb = values_bytes(kind), row_bytes = (size_t)nbk * bsize;
    uint8_t *V = dst;
    uint8_t *S = V + (size_t)nbk * vb;
    for (int b = 0; b < nbk; b++)
        for (int r = 0; r < CB_X16_ROWS; r++) {
            const unsigned char *blk = (const unsigned char *)rows16 + (size_t)r * row_bytes + (size_t)b * bsize;
            memcpy(S + ((size_t)b * CB_X16_ROWS + r) * 2, blk, 2); // the fp16 scale leads a block
            for (size_t k = 0; k < vb / 64; k++)
                for (int t = 0; t < 4; t++) {
                    const uint8_t v = blk[2 + 4 * k + t];
                    V[(size_t)b * vb + k * 64 + 4 * r + t] = kind == CB_KV_Q8_0 ? (uint8_t)(v ^ 0x80) : v;
                }
        }
}

void cb_x16_get_row(void *row, const void *data, cb_kv_kind kind, int cols, int r) {
    const int nbk = blocks_of(cols), rr = r % CB_X16_ROWS;
    const size_t bsize = block_bytes(kind), vb = values_bytes(kind);
    const uint8_t *G = (const uint8_t *)data + (size_t)(r / CB_X16_ROWS) * group_bytes(kind, cols);
    const uint8_t *S = G + (size_t)nbk * vb;
    for (int b = 0; b < nbk; b++) {
        unsigned char *blk = (unsigned char *)row + (size_t)b * bsize;
        memcpy(blk, S + ((size_t)b * CB_X16_ROWS + rr) * 2, 2);
        for (size_t k = 0; k < vb / 64; k++)
            for (int t = 0; t < 4; t++) {
                const uint8_t v = G[(size_t)b * vb + k * 64 + 4 * rr + t];
                blk[2 + 4 * k + t] = kind == CB_KV_Q8_0 ? (uint8_t)(v ^ 0x80) : v;
            }
    }
}

/* Row r's unsigned value j (0..31) of block b of a group: stored + offset. */
static inline int value_u(cb_kv_kind kind, const uint8_t *V, size_t vb, int b, int r, int j) {
    if (kind == CB_KV_Q8_0) return V[(size_t)b * vb + (size_t)(j / 4) * 64 + 4 * r + j % 4];
    const int byte = j % 16;
    const uint8_t v = V[(size_t)b * vb + (size_t)(byte / 4) * 64 + 4 * r + byte % 4];
    return j < 16 ? v & 15 : v >> 4;
}

static inline float scale_of(const uint8_t *S, int b, int r) {
    uint16_t h;
    memcpy(&h, S + ((size_t)b * CB_X16_ROWS + r) * 2, 2);
    return cb_f16_to_f32(h);
}

static void dot_portable(cb_kv_kind kind, float *y, size_t ldy, const uint8_t *G, int cols, const cb_act_q8 *a,
                         int m) {
    const int nbk = blocks_of(cols), off = offset_of(kind);
    const size_t vb = values_bytes(kind);
    const uint8_t *S = G + (size_t)nbk * vb;
    for (int i = 0; i < m; i++)
        for (int r = 0; r < CB_X16_ROWS; r++) {
            float acc = 0.0f;
            for (int b = 0; b < nbk; b++) {
                int32_t s = off * a[i].c8[(size_t)b * 8]; // c8 = -sum(q): the offset cancels
                for (int j = 0; j < 32; j++) s += value_u(kind, G, vb, b, r, j) * a[i].q[(size_t)b * 32 + j];
                acc = fmaf((float)s, scale_of(S, b, r) * a[i].d[(size_t)b * 8], acc);
            }
            y[(size_t)i * ldy + r] = acc;
        }
}

#if X16_X86
#define X16_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define X16_INL X16_TGT static inline __attribute__((always_inline))

#define PREFETCH_BYTES 8192 /* at least this far ahead, in whole groups (as quant_int.c's rows) */
/* Non-temporal prefetches where the distance fits L1 with room (matvec.c says why): q8_0
 * 1.00-1.14x, q4_0 0.99-1.02x, steps alternated in one decode. */
#define PREFETCH_NTA_MAX 16384

static inline int32_t bytes4(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* M tokens against one group G (K q4_0 or q8_0, nbk blocks): y[i * ldy + r], the next
 * groups' bytes at pf fetched as this one's are read. Two int32 accumulators a token per
 * block (two chains of 4 dependent vpdpbusd, not one of 8); blocks are independent chains
 * the core overlaps. */
X16_INL void kern(const int K, const int M, float *y, size_t ldy, const uint8_t *G, int nbk, const cb_act_q8 *a,
                  const char *pf, int nta) {
    const size_t vb = K == CB_KV_Q8_0 ? 512 : 256, per_block = vb + 32;
    const uint8_t *S = G + (size_t)nbk * vb;
    const int off = K == CB_KV_Q8_0 ? 128 : 8;
    const __m512i low4 = _mm512_set1_epi8(15);
    __m512 facc[8];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) facc[i] = _mm512_setzero_ps();
    size_t pf_done = 0;
    for (int b = 0; b < nbk; b++) {
        for (; pf_done < (size_t)(b + 1) * per_block; pf_done += 64)
            if (nta) _mm_prefetch(pf + pf_done, _MM_HINT_NTA);
            else _mm_prefetch(pf + pf_done, _MM_HINT_T0);
        const uint8_t *V = G + (size_t)b * vb;
        __m512i i0[8], i1[8];
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++) {
            i0[i] = _mm512_set1_epi32(off * a[i].c8[(size_t)b * 8]);
            i1[i] = _mm512_setzero_si512();
        }
        if (K == CB_KV_Q4_0) {
            #pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m512i w = _mm512_loadu_si512((const void *)(V + 64 * k));
                const __m512i lo = _mm512_and_si512(w, low4), hi = _mm512_and_si512(_mm512_srli_epi16(w, 4), low4);
                #pragma GCC unroll 8
                for (int i = 0; i < M; i++) {
                    const int8_t *q = a[i].q + (size_t)b * 32;
                    i0[i] = _mm512_dpbusd_epi32(i0[i], lo, _mm512_set1_epi32(bytes4(q + 4 * k)));
                    i1[i] = _mm512_dpbusd_epi32(i1[i], hi, _mm512_set1_epi32(bytes4(q + 16 + 4 * k)));
                }
            }
        } else {
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++) {
                const __m512i w = _mm512_loadu_si512((const void *)(V + 64 * k));
                #pragma GCC unroll 8
                for (int i = 0; i < M; i++) {
                    const __m512i x = _mm512_set1_epi32(bytes4(a[i].q + (size_t)b * 32 + 4 * k));
                    if (k % 2 == 0) i0[i] = _mm512_dpbusd_epi32(i0[i], w, x);
                    else i1[i] = _mm512_dpbusd_epi32(i1[i], w, x);
                }
            }
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(S + (size_t)b * 32)));
        #pragma GCC unroll 8
        for (int i = 0; i < M; i++)
            facc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(i0[i], i1[i])),
                                      _mm512_mul_ps(dw, _mm512_set1_ps(a[i].d[(size_t)b * 8])), facc[i]);
    }
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) _mm512_storeu_ps(y + (size_t)i * ldy, facc[i]);
}

#define KERN_CASES(K)                                                                                          \
    case 1: kern(K, 1, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 2: kern(K, 2, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 3: kern(K, 3, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 4: kern(K, 4, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 5: kern(K, 5, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 6: kern(K, 6, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    case 7: kern(K, 7, yy, ldy, G, nbk, a, pf, nta); break;                                                    \
    default: kern(K, 8, yy, ldy, G, nbk, a, pf, nta); break;

X16_TGT static void dot_vnni(cb_kv_kind kind, float *y, size_t ldy, const uint8_t *data, int cols, int g0, int ng,
                             const cb_act_q8 *a, int m) {
    const int nbk = blocks_of(cols);
    const size_t gb = group_bytes(kind, cols), ahead = (PREFETCH_BYTES + gb - 1) / gb * gb;
    const int nta = ahead <= PREFETCH_NTA_MAX;
    for (int g = g0; g < g0 + ng; g++) {
        const uint8_t *G = data + (size_t)g * gb;
        const char *pf = (const char *)G + ahead;
        float *yy = y + (size_t)(g - g0) * CB_X16_ROWS;
        if (kind == CB_KV_Q4_0) {
            switch (m) { KERN_CASES(CB_KV_Q4_0) }
        } else {
            switch (m) { KERN_CASES(CB_KV_Q8_0) }
        }
    }
}
#endif

void cb_x16_dot(cb_kv_kind kind, float *y, size_t ldy, const void *data, int cols, int g0, int ng,
                const cb_act_q8 *a, int m) {
#if X16_X86
    if (cb_qi_path_current() == CB_QI_AVX512VNNI) {
        dot_vnni(kind, y, ldy, data, cols, g0, ng, a, m);
        return;
    }
#endif
    const size_t gb = group_bytes(kind, cols);
    for (int g = g0; g < g0 + ng; g++)
        dot_portable(kind, y + (size_t)(g - g0) * CB_X16_ROWS, ldy, (const uint8_t *)data + (size_t)g * gb, cols, a,
                     m);
}

void cb_x16_dot_f32(cb_kv_kind kind, float *y, size_t ldy, const void *data, int cols, int g0, int ng,
                    const float *x, size_t ldx, int m) {
    const int nbk = blocks_of(cols), off = offset_of(kind);
    const size_t gb = group_bytes(kind, cols), vb = values_bytes(kind);
    for (int g = g0; g < g0 + ng; g++) {
        const uint8_t *G = (const uint8_t *)data + (size_t)g * gb, *S = G + (size_t)nbk * vb;
        for (int i = 0; i < m; i++)
            for (int r = 0; r < CB_X16_ROWS; r++) {
                float acc = 0.0f;
                for (int b = 0; b < nbk; b++) {
                    const float d = scale_of(S, b, r);
                    for (int j = 0; j < 32 && b * 32 + j < cols; j++)
                        acc += (float)(value_u(kind, G, vb, b, r, j) - off) * d * x[(size_t)i * ldx + b * 32 + j];
                }
                y[(size_t)i * ldy + (size_t)(g - g0) * CB_X16_ROWS + r] = acc;
            }
    }
}

#if X16_X86
/* cb_x16_unpack_group a vector at a time (a byte loop over q4_0's nibbles made a 64-token
 * prefill chunk 1.8x slower than packing the rows had been). */
X16_TGT static void unpack_vnni(uint8_t *wp, float *dw, const uint8_t *G, const uint8_t *S, cb_kv_kind kind, int nbk) {
    const __m512i low4 = _mm512_set1_epi8(15);
    for (int b = 0; b < nbk; b++) {
        const uint8_t *V = G + (size_t)b * values_bytes(kind);
        uint8_t *P = wp + (size_t)b * 8 * 64;
        if (kind == CB_KV_Q8_0) {
            for (int k = 0; k < 8; k++)
                _mm512_storeu_si512((void *)(P + 64 * k), _mm512_loadu_si512((const void *)(V + 64 * k)));
        } else {
            for (int k = 0; k < 4; k++) {
                const __m512i w = _mm512_loadu_si512((const void *)(V + 64 * k));
                _mm512_storeu_si512((void *)(P + 64 * k), _mm512_and_si512(w, low4));
                _mm512_storeu_si512((void *)(P + 64 * (4 + k)), _mm512_and_si512(_mm512_srli_epi16(w, 4), low4));
            }
        }
        _mm512_storeu_ps(dw + (size_t)b * CB_X16_ROWS,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(S + (size_t)b * 32))));
    }
}
#endif

void cb_x16_unpack_group(uint8_t *wp, float *dw, const void *data, cb_kv_kind kind, int cols, int g) {
    const int nbk = blocks_of(cols);
    const size_t vb = values_bytes(kind);
    const uint8_t *G = (const uint8_t *)data + (size_t)g * group_bytes(kind, cols), *S = G + (size_t)nbk * vb;
#if X16_X86
    if (cb_qi_path_current() == CB_QI_AVX512VNNI) {
        unpack_vnni(wp, dw, G, S, kind, nbk);
        return;
    }
#endif
    for (int b = 0; b < nbk; b++) {
        const uint8_t *V = G + (size_t)b * vb;
        uint8_t *P = wp + (size_t)b * 8 * 64;
        if (kind == CB_KV_Q8_0) {
            memcpy(P, V, 512); // column group q is vector q: values 4q .. 4q + 3 of each row
        } else {
            for (int k = 0; k < 4; k++) // vector k: values 4k .. (low nibbles), 16 + 4k .. (high)
                for (int l = 0; l < 64; l++) {
                    P[k * 64 + l] = V[k * 64 + l] & 15;
                    P[(4 + k) * 64 + l] = V[k * 64 + l] >> 4;
                }
        }
        for (int r = 0; r < CB_X16_ROWS; r++) dw[(size_t)b * CB_X16_ROWS + r] = scale_of(S, b, r);
    }
}
