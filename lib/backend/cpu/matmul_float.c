/* matmul_float.c: the packed, register-tiled products of matmul_float.h. Why not BLAS: the
 * fp16/bf16 panels went to f32 and then through OpenBLAS's sgemm, which this workplace's
 * environment pins to its Haswell (AVX2) kernels, and BLAS packs the panel again per call;
 * 512-token prefill ran at a third of llama.cpp's (bench/RESULTS.md, issue 21). Here the
 * panel is packed once, straight from the stored kind, and the tile is AVX-512 (or vdpbf16ps,
 * two multiply-adds a lane per instruction, for bf16 weights). */
#include "backend/cpu/matmul_float.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/parallel.h"
#include "backend/cpu/quant_dot.h"
#include "backend/cpu/transpose16.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define MF_X86 1
#include <immintrin.h>
#else
#define MF_X86 0
#endif

/* Below this many tokens the row kernels of matvec.c are as fast (the packing is per product). */
#define MF_MIN_TOKENS 16

/* ---- path choice ------------------------------------------------------------------------ */

static const char *const PATH_NAMES[CB_MF_PATH_COUNT] = {"none", "avx2", "avx512", "avx512bf16"};

const char *cb_mf_path_name(cb_mf_path path) {
    return (int)path >= 0 && path < CB_MF_PATH_COUNT ? PATH_NAMES[path] : "?";
}

int cb_mf_path_supported(cb_mf_path path) {
#if MF_X86
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                     __builtin_cpu_supports("f16c");
    const int f512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                     __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    switch (path) {
    case CB_MF_NONE: return 1;
    case CB_MF_AVX2: return avx2;
    case CB_MF_AVX512: return f512;
    case CB_MF_AVX512BF16: return f512 && __builtin_cpu_supports("avx512bf16");
    default: return 0;
    }
#else
    return path == CB_MF_NONE;
#endif
}

static atomic_int g_path = -1;

cb_mf_path cb_mf_path_current(void) {
    int p = atomic_load_explicit(&g_path, memory_order_relaxed);
    if (p < 0) {
        p = CB_MF_NONE;
        for (int c = CB_MF_PATH_COUNT - 1; c > 0; c--)
            if (cb_mf_path_supported((cb_mf_path)c)) {
                p = c;
                break;
            }
        atomic_store_explicit(&g_path, p, memory_order_relaxed);
    }
    return (cb_mf_path)p;
}

int cb_mf_path_force(cb_mf_path path) {
    if (!cb_mf_path_supported(path)) return 0;
    atomic_store_explicit(&g_path, (int)path, memory_order_relaxed);
    return 1;
}

static atomic_int g_panels = -1;

int cb_mf_panels(void) {
    int v = atomic_load_explicit(&g_panels, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("CB_MF_PANELS");
        v = env && env[0] == '1';
        atomic_store_explicit(&g_panels, v, memory_order_relaxed);
    }
    return v;
}

void cb_mf_panels_force(int on) { atomic_store_explicit(&g_panels, on != 0, memory_order_relaxed); }

int cb_mf_takes(const cb_weight_matrix *W, int n) {
    return n > MF_MIN_TOKENS && cb_mf_path_current() != CB_MF_NONE &&
           (W->kind == CB_KV_F32 || W->kind == CB_KV_F16 || W->kind == CB_KV_BF16);
}

/* ---- packing ---------------------------------------------------------------------------- */

/* The tile of a path: MR tokens x NR rows; bf: the bf16 kernel (values in pairs). */
typedef struct mf_shape {
    int mr, nr, bf;
} mf_shape;

static mf_shape shape_of(cb_mf_path path, cb_kv_kind kind) {
    if (path == CB_MF_AVX2) return (mf_shape){4, 24, 0};
    return (mf_shape){8, 48, path == CB_MF_AVX512BF16 && kind == CB_KV_BF16};
}

/* Tokens x (n, cols) as f32 tiles: xp[(t * cols + k) * mr + i] = x[t * mr + i][k], tokens past
 * n zero. */
static void pack_x_f32(float *xp, const float *x, int n, int cols, int mr) {
    const int tiles = (n + mr - 1) / mr;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < mr; i++) {
            const int tok = t * mr + i;
            float *dst = xp + (size_t)t * cols * mr + i;
            if (tok < n) {
                const float *src = x + (size_t)tok * cols;
                for (int k = 0; k < cols; k++) dst[(size_t)k * mr] = src[k];
            } else {
                for (int k = 0; k < cols; k++) dst[(size_t)k * mr] = 0.0f;
            }
        }
}

/* The same as bf16 pairs (RNE): xp[(t * kp + p) * mr + i] = bf16(x[2p]) | bf16(x[2p + 1]) << 16,
 * kp = ceil(cols / 2), a missing odd column 0. */
static void pack_x_bf16(uint32_t *xp, const float *x, int n, int cols, int mr) {
    const int tiles = (n + mr - 1) / mr, kp = (cols + 1) / 2;
    for (int t = 0; t < tiles; t++)
        for (int i = 0; i < mr; i++) {
            const int tok = t * mr + i;
            uint32_t *dst = xp + (size_t)t * kp * mr + i;
            const float *src = tok < n ? x + (size_t)tok * cols : NULL;
            for (int p = 0; p < kp; p++) {
                uint32_t v = 0;
                if (src) {
                    v = cb_f32_to_bf16(src[2 * p]);
                    if (2 * p + 1 < cols) v |= (uint32_t)cb_f32_to_bf16(src[2 * p + 1]) << 16;
                }
                dst[(size_t)p * mr] = v;
            }
        }
}

static const unsigned char *row_of(const cb_weight_matrix *W, int r) {
    return (const unsigned char *)W->data + (size_t)r * W->row_bytes;
}

/* Rows r0 .. r0 + nrows of W as an f32 panel: wp[k * nr + r], rows past nrows zero; tmp
 * (cols) a row's scratch. */
static void pack_w_f32(float *wp, float *tmp, const cb_weight_matrix *W, int r0, int nrows, int nr) {
    const int cols = W->cols;
    for (int r = 0; r < nr; r++) {
        if (r < nrows) {
            const float *src = (const float *)(const void *)row_of(W, r0 + r);
            if (W->kind != CB_KV_F32) {
                cb_kv_dequantize_row(W->kind, tmp, row_of(W, r0 + r), (size_t)cols);
                src = tmp;
            }
            for (int k = 0; k < cols; k++) wp[(size_t)k * nr + r] = src[k];
        } else {
            for (int k = 0; k < cols; k++) wp[(size_t)k * nr + r] = 0.0f;
        }
    }
}

/* Rows of stored bf16 as pairs: wp[p * nr + r] = w[r][2p] | w[r][2p + 1] << 16. */
static void pack_w_bf16(uint32_t *wp, const cb_weight_matrix *W, int r0, int nrows, int nr) {
    const int cols = W->cols, kp = (cols + 1) / 2;
    for (int r = 0; r < nr; r++) {
        const uint16_t *src = r < nrows ? (const uint16_t *)(const void *)row_of(W, r0 + r) : NULL;
        for (int p = 0; p < kp; p++) {
            uint32_t v = 0;
            if (src) {
                v = src[2 * p];
                if (2 * p + 1 < cols) v |= (uint32_t)src[2 * p + 1] << 16;
            }
            wp[(size_t)p * nr + r] = v;
        }
    }
}

#if MF_X86
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* pack_w_f32 (bf 0) or pack_w_bf16 (bf 1) by 16 x 16 blocks transposed in registers: the
 * scalar scatter spent about 1 ns a weight, as much as 64 tokens' multiply-adds of it. Each
 * block: 16 rows' next 16 values (f32, f16 or bf16 widened; for bf 16 pairs of bf16) loaded,
 * masked past the row's end, transposed, stored as 16 columns of 16 rows. */
T512 static void pack_w_512(void *panel, const cb_weight_matrix *W, int r0, int nrows, int nr, int bf) {
    const int cols = W->cols, kk = bf ? (cols + 1) / 2 : cols, K = W->kind;
    const size_t esize = bf ? 4 : K == CB_KV_F32 ? 4 : 2; // bytes of one packed column's value
    for (int g = 0; g < nr; g += 16) {
        const unsigned char *src[16];
        for (int i = 0; i < 16; i++) src[i] = g + i < nrows ? row_of(W, r0 + g + i) : NULL;
        for (int k0 = 0; k0 < kk; k0 += 16) {
            const int cnt = kk - k0 < 16 ? kk - k0 : 16;
            const __mmask16 m = cnt >= 16 ? 0xFFFF : (__mmask16)((1u << cnt) - 1);
            // bf: cnt pairs of bf16, a missing odd value 0 (vals >= 1 there; not used otherwise)
            const int vals = bf ? (2 * k0 + 2 * cnt <= cols ? 2 * cnt : cols - 2 * k0) : 32;
            const __mmask32 m2 = vals >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << vals) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                if (!src[i]) {
                    r[i] = _mm512_setzero_ps();
                    continue;
                }
                const unsigned char *p = src[i] + (size_t)k0 * esize;
                // the rows come from memory once per product, 16 side by side: fetch ahead
                _mm_prefetch((const char *)p + 256, _MM_HINT_T0);
                if (bf)
                    r[i] = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(m2, p));
                else if (K == CB_KV_F32)
                    r[i] = _mm512_maskz_loadu_ps(m, p);
                else if (K == CB_KV_F16)
                    r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
                else
                    r[i] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
            }
            cb_transpose16(r);
            float *dst = (float *)panel + (size_t)k0 * nr + g;
            for (int c = 0; c < cnt; c++) _mm512_store_ps(dst + (size_t)c * nr, r[c]);
        }
    }
}
#endif

/* ---- tiles -------------------------------------------------------------------------------- */
/* y[i * ldy + r] = sum_k xp[k * MR + i] wp[k * NR + r] for i < m, r < nrv: MR x NR
 * accumulators over all K columns (pairs for bf16), then the valid part stored. */

#if MF_X86
#define TBF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")))
#define TAVX2 __attribute__((target("avx2,fma,f16c")))

T512 static void store48(float *y, size_t ldy, __m512 acc[8][3], int m, int nrv) {
    for (int i = 0; i < m; i++)
        for (int v = 0; v < 3; v++) {
            const int lanes = nrv - 16 * v;
            if (lanes <= 0) break;
            const __mmask16 mask = lanes >= 16 ? 0xFFFF : (__mmask16)((1u << lanes) - 1);
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * v, mask, acc[i][v]);
        }
}

T512 static void tile_512(float *y, size_t ldy, const float *xp, const float *wp, int K, int m, int nrv) {
    __m512 acc[8][3];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *w = wp + (size_t)k * 48, *xk = xp + (size_t)k * 8;
        const __m512 w0 = _mm512_load_ps(w), w1 = _mm512_load_ps(w + 16), w2 = _mm512_load_ps(w + 32);
        #pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m512 b = _mm512_set1_ps(xk[i]);
            acc[i][0] = _mm512_fmadd_ps(w0, b, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, b, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(w2, b, acc[i][2]);
        }
    }
    store48(y, ldy, acc, m, nrv);
}

TBF16 static void tile_bf16(float *y, size_t ldy, const uint32_t *xp, const uint32_t *wp, int KP, int m, int nrv) {
    __m512 acc[8][3];
    #pragma GCC unroll 8
    for (int i = 0; i < 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm512_setzero_ps();
    for (int p = 0; p < KP; p++) {
        const uint32_t *w = wp + (size_t)p * 48, *xk = xp + (size_t)p * 8;
        const __m512bh w0 = (__m512bh)_mm512_load_si512((const void *)w);
        const __m512bh w1 = (__m512bh)_mm512_load_si512((const void *)(w + 16));
        const __m512bh w2 = (__m512bh)_mm512_load_si512((const void *)(w + 32));
        #pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)xk[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], w0, b);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], w1, b);
            acc[i][2] = _mm512_dpbf16_ps(acc[i][2], w2, b);
        }
    }
    store48(y, ldy, acc, m, nrv);
}

/* pack_x_f32 (mr 8) and pack_x_bf16 (mr 8) by register transposes: 8 tokens' next 16
 * values (or pairs) as rows 0-7 of a 16 x 16 transpose (8-15 zero), the low 8 lanes of each
 * column stored. The scalar loops cost a twentieth of a 64-token prefill. vcvtne2ps2bf16
 * rounds to nearest even as cb_f32_to_bf16 does, but reads an input below 2^-126 as 0
 * (matmul_float.h's bound allows it). */
T512 static void pack_x_512(float *xp, const float *x, int n, int cols) {
    const int tiles = (n + 7) / 8;
    for (int t = 0; t < tiles; t++)
        for (int k0 = 0; k0 < cols; k0 += 16) {
            const int cnt = cols - k0 < 16 ? cols - k0 : 16;
            const __mmask16 m = cnt >= 16 ? 0xFFFF : (__mmask16)((1u << cnt) - 1);
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const int tok = t * 8 + i;
                r[i] = i < 8 && tok < n ? _mm512_maskz_loadu_ps(m, x + (size_t)tok * cols + k0) : _mm512_setzero_ps();
            }
            cb_transpose16(r);
            float *dst = xp + ((size_t)t * cols + k0) * 8;
            for (int c = 0; c < cnt; c++) _mm256_storeu_ps(dst + (size_t)c * 8, _mm512_castps512_ps256(r[c]));
        }
}

TBF16 static void pack_x_bf16_512(uint32_t *xp, const float *x, int n, int cols) {
    const int tiles = (n + 7) / 8, kp = (cols + 1) / 2;
    for (int t = 0; t < tiles; t++)
        for (int p0 = 0; p0 < kp; p0 += 16) {
            const int cnt = kp - p0 < 16 ? kp - p0 : 16, vals = cols - 2 * p0 < 32 ? cols - 2 * p0 : 32;
            const __mmask16 m0 = vals >= 16 ? 0xFFFF : (__mmask16)((1u << vals) - 1);
            const __mmask16 m1 = vals >= 32 ? 0xFFFF : vals > 16 ? (__mmask16)((1u << (vals - 16)) - 1) : 0;
            __m512 r[16];
            for (int i = 0; i < 16; i++) {
                const int tok = t * 8 + i;
                if (i < 8 && tok < n) {
                    const float *src = x + (size_t)tok * cols + 2 * p0;
                    const __m512 a = _mm512_maskz_loadu_ps(m0, src), b = _mm512_maskz_loadu_ps(m1, src + 16);
                    r[i] = (__m512)_mm512_cvtne2ps_pbh(b, a); // values 0-15 low, 16-31 high: 16 pairs
                } else {
                    r[i] = _mm512_setzero_ps();
                }
            }
            cb_transpose16(r);
            uint32_t *dst = xp + ((size_t)t * kp + p0) * 8;
            for (int c = 0; c < cnt; c++) _mm256_storeu_ps((float *)(void *)(dst + (size_t)c * 8), _mm512_castps512_ps256(r[c]));
        }
}

TAVX2 static void tile_avx2(float *y, size_t ldy, const float *xp, const float *wp, int K, int m, int nrv) {
    __m256 acc[4][3];
    #pragma GCC unroll 4
    for (int i = 0; i < 4; i++) acc[i][0] = acc[i][1] = acc[i][2] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *w = wp + (size_t)k * 24, *xk = xp + (size_t)k * 4;
        const __m256 w0 = _mm256_load_ps(w), w1 = _mm256_load_ps(w + 8), w2 = _mm256_load_ps(w + 16);
        #pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            const __m256 b = _mm256_broadcast_ss(xk + i);
            acc[i][0] = _mm256_fmadd_ps(w0, b, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(w1, b, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(w2, b, acc[i][2]);
        }
    }
    for (int i = 0; i < m; i++) {
        float out[24];
        for (int v = 0; v < 3; v++) _mm256_storeu_ps(out + 8 * v, acc[i][v]);
        memcpy(y + (size_t)i * ldy, out, sizeof(float) * (size_t)nrv);
    }
}
#endif

/* ---- row tiles (AVX-512): the weights broadcast, the tokens as vectors ------------------ */
/* The transposed formulation of the tiles above: RT rows x up to 64 tokens (4 vectors of
 * 16) of accumulators, acc[r][v] lane i = y[16 v + i][r]; per column k the 4 token vectors
 * xb[k][0..64) are loaded and each row's w[r][k] broadcast (fp32 or fp16 rows) or its pair
 * w[r][2p], w[r][2p + 1] (bf16, vdpbf16ps). The rows are read as stored, row after row,
 * so there is no panel to pack per product (22% of an fp16 prefill on 64-token chunks);
 * only fp16 rows are widened to f32 (a straight conversion, no transpose), and what is
 * transposed is the tokens, once per product, in parallel. Each lane still sums its
 * products in column order (bf16: pair order) by one FMA (vdpbf16ps) a step: the bounds of
 * matmul_float.h hold unchanged. */
#define RT 6     /* rows of a row tile */
#define TBLK 64  /* tokens of a token block: 4 vectors */

#if MF_X86
#define RTILE_INLINE __attribute__((always_inline)) inline
/* The tile's results into y (ldy): rows < rv, tokens < m. */
T512 static RTILE_INLINE void rtile_store(float *y, size_t ldy, __m512 acc[RT][4], int V, int rv, int m) {
    float t[RT][TBLK] __attribute__((aligned(64)));
    #pragma GCC unroll 6
    for (int r = 0; r < RT; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_store_ps(t[r] + 16 * v, acc[r][v]);
    for (int i = 0; i < m; i++)
        for (int r = 0; r < rv; r++) y[(size_t)i * ldy + r] = t[r][i];
}

/* xb: the block's tokens [k][64] (f32); w[r]: row r's K values (f32). */
T512 static RTILE_INLINE void rtile_f32(float *y, size_t ldy, const float *xb, const float *const w[RT], int K,
                                        const int V, int rv, int m, const char *pf, int npf) {
    __m512 acc[RT][4];
    #pragma GCC unroll 6
    for (int r = 0; r < RT; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    const float *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];
    for (int k = 0; k < K; k++) {
        for (int l = k; l < npf; l += K) _mm_prefetch(pf + (size_t)l * 64, _MM_HINT_T0);
        const float *xk = xb + (size_t)k * TBLK;
        __m512 xv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < V; v++) xv[v] = _mm512_load_ps(xk + 16 * v);
        const float wk[RT] = {w0[k], w1[k], w2[k], w3[k], w4[k], w5[k]};
        #pragma GCC unroll 6
        for (int r = 0; r < RT; r++) {
            const __m512 b = _mm512_set1_ps(wk[r]);
            #pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_fmadd_ps(xv[v], b, acc[r][v]);
        }
    }
    rtile_store(y, ldy, acc, V, rv, m);
}

/* xb: the block's tokens [p][64] as bf16 pairs; w[r]: row r's KP pairs. */
TBF16 static RTILE_INLINE void rtile_bf16(float *y, size_t ldy, const uint32_t *xb, const uint32_t *const w[RT],
                                          int KP, const int V, int rv, int m, const char *pf, int npf) {
    __m512 acc[RT][4];
    #pragma GCC unroll 6
    for (int r = 0; r < RT; r++)
        #pragma GCC unroll 4
        for (int v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_ps();
    const uint32_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3], *w4 = w[4], *w5 = w[5];
    for (int p = 0; p < KP; p++) {
        for (int l = p; l < npf; l += KP) _mm_prefetch(pf + (size_t)l * 64, _MM_HINT_T0);
        const uint32_t *xk = xb + (size_t)p * TBLK;
        __m512bh xv[4];
        #pragma GCC unroll 4
        for (int v = 0; v < V; v++) xv[v] = (__m512bh)_mm512_load_si512((const void *)(xk + 16 * v));
        const uint32_t wk[RT] = {w0[p], w1[p], w2[p], w3[p], w4[p], w5[p]};
        #pragma GCC unroll 6
        for (int r = 0; r < RT; r++) {
            const __m512bh b = (__m512bh)_mm512_set1_epi32((int)wk[r]);
            #pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xv[v], b);
        }
    }
    rtile_store(y, ldy, acc, V, rv, m);
}

/* One tile of V vectors (1-4, a constant in each call so that the loops unroll). */
T512 static void rtile_f32_v(float *y, size_t ldy, const float *xb, const float *const w[RT], int K, int V, int rv,
                             int m, const char *pf, int npf) {
    switch (V) {
    case 1: rtile_f32(y, ldy, xb, w, K, 1, rv, m, pf, npf); break;
    case 2: rtile_f32(y, ldy, xb, w, K, 2, rv, m, pf, npf); break;
    case 3: rtile_f32(y, ldy, xb, w, K, 3, rv, m, pf, npf); break;
    default: rtile_f32(y, ldy, xb, w, K, 4, rv, m, pf, npf); break;
    }
}

TBF16 static void rtile_bf16_v(float *y, size_t ldy, const uint32_t *xb, const uint32_t *const w[RT], int KP, int V,
                               int rv, int m, const char *pf, int npf) {
    switch (V) {
    case 1: rtile_bf16(y, ldy, xb, w, KP, 1, rv, m, pf, npf); break;
    case 2: rtile_bf16(y, ldy, xb, w, KP, 2, rv, m, pf, npf); break;
    case 3: rtile_bf16(y, ldy, xb, w, KP, 3, rv, m, pf, npf); break;
    default: rtile_bf16(y, ldy, xb, w, KP, 4, rv, m, pf, npf); break;
    }
}

/* The tokens for the row tiles: 16 tokens (group g) of x as xb[b][k][64] f32 or, bf, as
 * [b][p][64] bf16 pairs (RNE; a missing odd column 0), tokens past n zero. 16 tokens' next 16
 * values (pairs) transposed in registers, stored as 16 columns of 16 tokens. */
T512 static void rpack_x_f32(float *xp, const float *x, int n, int cols, int g) {
    const int b = g / 4, lane0 = 16 * (g % 4);
    float *blk = xp + (size_t)b * cols * TBLK + lane0;
    for (int k0 = 0; k0 < cols; k0 += 16) {
        const int cnt = cols - k0 < 16 ? cols - k0 : 16;
        const __mmask16 mk = cnt >= 16 ? 0xFFFF : (__mmask16)((1u << cnt) - 1);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            const int tok = 16 * g + i;
            r[i] = tok < n ? _mm512_maskz_loadu_ps(mk, x + (size_t)tok * cols + k0) : _mm512_setzero_ps();
        }
        cb_transpose16(r);
        for (int c = 0; c < cnt; c++) _mm512_store_ps(blk + (size_t)(k0 + c) * TBLK, r[c]);
    }
}

TBF16 static void rpack_x_bf16(uint32_t *xp, const float *x, int n, int cols, int g) {
    const int b = g / 4, lane0 = 16 * (g % 4), kp = (cols + 1) / 2;
    uint32_t *blk = xp + (size_t)b * kp * TBLK + lane0;
    for (int p0 = 0; p0 < kp; p0 += 16) {
        const int cnt = kp - p0 < 16 ? kp - p0 : 16, vals = cols - 2 * p0 < 32 ? cols - 2 * p0 : 32;
        const __mmask16 m0 = vals >= 16 ? 0xFFFF : (__mmask16)((1u << vals) - 1);
        const __mmask16 m1 = vals >= 32 ? 0xFFFF : vals > 16 ? (__mmask16)((1u << (vals - 16)) - 1) : 0;
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            const int tok = 16 * g + i;
            if (tok < n) {
                const float *src = x + (size_t)tok * cols + 2 * p0;
                const __m512 a = _mm512_maskz_loadu_ps(m0, src), c = _mm512_maskz_loadu_ps(m1, src + 16);
                r[i] = (__m512)_mm512_cvtne2ps_pbh(c, a); // 16 pairs
            } else {
                r[i] = _mm512_setzero_ps();
            }
        }
        cb_transpose16(r);
        for (int c = 0; c < cnt; c++) _mm512_store_ps((float *)(void *)(blk + (size_t)(p0 + c) * TBLK), r[c]);
    }
}

/* Rows r0 .. r0 + nrows of fp16 or bf16 W widened to f32 (exactly): dst[r * cols + k]. */
T512 static void widen_rows(float *dst, const cb_weight_matrix *W, int r0, int nrows) {
    const int cols = W->cols, f16 = W->kind == CB_KV_F16;
    for (int r = 0; r < nrows; r++) {
        const uint16_t *src = (const uint16_t *)(const void *)row_of(W, r0 + r);
        float *d = dst + (size_t)r * cols;
        for (int k0 = 0; k0 < cols; k0 += 16) {
            const int cnt = cols - k0 < 16 ? cols - k0 : 16;
            const __mmask16 mk = cnt >= 16 ? 0xFFFF : (__mmask16)((1u << cnt) - 1);
            const __m256i h = _mm256_maskz_loadu_epi16(mk, src + k0);
            const __m512 v = f16 ? _mm512_cvtph_ps(h) : _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            _mm512_mask_storeu_ps(d + k0, mk, v);
        }
    }
}
#endif

/* Rows of one row item: at most 48, fewer (a multiple of RT) so that an item's widened f32
 * rows stay about 192 KB (the L2 cache beside a token block's 64 x cols). */
static int ritem_rows(int cols) {
    int groups = (int)(196608 / ((size_t)RT * cols * 4));
    groups = groups < 1 ? 1 : groups > 8 ? 8 : groups;
    return RT * groups;
}

typedef struct rf_job {
    float *y;
    const cb_weight_matrix *W;
    const float *x, *bias;
    void *xp; /* packed tokens: blocks of TBLK */
    int n, kk, bf, item_rows;
} rf_job;

#if MF_X86
static void rf_pack_item(void *ctx, int g) {
    const rf_job *j = ctx;
    if (j->bf) rpack_x_bf16(j->xp, j->x, j->n, j->W->cols, g);
    else rpack_x_f32(j->xp, j->x, j->n, j->W->cols, g);
}

/* Rows [item * item_rows, +item_rows) against every token block. The stored rows come from
 * memory once per product (a 64-token chunk reads every weight of the model again): while a
 * row group multiplies the first block, the next group's stored rows (contiguous) are fetched
 * ahead, a line per column step, so that the memory reads overlap the multiply-adds. */
static void rf_item(void *ctx, int item) {
    const rf_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, cols = W->cols, r0 = item * j->item_rows;
    const int nrows = rows - r0 < j->item_rows ? rows - r0 : j->item_rows;
    const int K = j->kk, blocks = (j->n + TBLK - 1) / TBLK;
    // fp16 (bf16 off the bf16 kernel): the rows widened to f32 (a group before its first
    // tile); bf16 with an odd cols: the rows as pairs, the last padded 0
    const float *wf = NULL;
    float *widen = NULL;
    const uint32_t *wb = NULL;
    size_t ldw = 0; // in floats or pairs
    if (W->kind == CB_KV_F32) {
        wf = (const float *)(const void *)row_of(W, r0), ldw = W->row_bytes / 4;
    } else if (!j->bf) { // fp16, or bf16 without AVX512-BF16
        widen = cb_parallel_scratch(sizeof(float) * (size_t)nrows * cols);
        if (!widen) goto rowwise;
        wf = widen, ldw = (size_t)cols;
    } else if (cols % 2 == 0 && W->row_bytes % 4 == 0 && (uintptr_t)W->data % 4 == 0) {
        wb = (const uint32_t *)(const void *)row_of(W, r0), ldw = W->row_bytes / 4;
    } else {
        uint32_t *s = cb_parallel_scratch(sizeof(uint32_t) * (size_t)nrows * K);
        if (!s) goto rowwise;
        for (int r = 0; r < nrows; r++) {
            const uint16_t *src = (const uint16_t *)(const void *)row_of(W, r0 + r);
            for (int p = 0; p < K; p++)
                s[(size_t)r * K + p] = src[2 * p] | (2 * p + 1 < cols ? (uint32_t)src[2 * p + 1] << 16 : 0u);
        }
        wb = s, ldw = (size_t)K;
    }
    for (int b = 0; b < blocks; b++) {
        const int m = j->n - b * TBLK < TBLK ? j->n - b * TBLK : TBLK, V = (m + 15) / 16;
        for (int g = 0; g < nrows; g += RT) {
            const int rv = nrows - g < RT ? nrows - g : RT;
            float *y = j->y + (size_t)b * TBLK * rows + r0 + g;
            // first block: fetch the stored rows of the next group (of this item or the next)
            const char *pf = NULL;
            int npf = 0;
            if (b == 0 && r0 + g + RT < rows) {
                const int next = r0 + g + RT, cnt = rows - next < RT ? rows - next : RT;
                pf = (const char *)row_of(W, next);
                npf = (int)(((size_t)cnt * W->row_bytes + 63) / 64);
            }
            if (wf) {
                if (widen && b == 0) widen_rows(widen + (size_t)g * cols, W, r0 + g, rv);
                const float *w[RT];
                for (int r = 0; r < RT; r++) w[r] = wf + (size_t)(g + (r < rv ? r : 0)) * ldw; // past rv: read row g, not stored
                rtile_f32_v(y, (size_t)rows, (const float *)j->xp + (size_t)b * K * TBLK, w, K, V, rv, m, pf, npf);
            } else {
                const uint32_t *w[RT];
                for (int r = 0; r < RT; r++) w[r] = wb + (size_t)(g + (r < rv ? r : 0)) * ldw;
                rtile_bf16_v(y, (size_t)rows, (const uint32_t *)j->xp + (size_t)b * K * TBLK, w, K, V, rv, m, pf, npf);
            }
        }
    }
    goto bias;
rowwise: // no memory for the widened rows: the same products a row at a time
    for (int r = r0; r < r0 + nrows; r++)
        for (int i = 0; i < j->n; i++)
            j->y[(size_t)i * rows + r] = cb_kv_dot(W->kind, row_of(W, r), j->x + (size_t)i * cols, (size_t)cols);
bias:
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r0 + nrows; r++) j->y[(size_t)i * rows + r] += j->bias[r];
}

/* The row-tile product (AVX-512 paths); 0 when no memory for the packed tokens. */
static int rf_matmul(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n, int bf) {
    const int kk = bf ? (W->cols + 1) / 2 : W->cols, blocks = (n + TBLK - 1) / TBLK;
    const size_t xp_bytes = (size_t)blocks * TBLK * kk * 4;
    void *xp = aligned_alloc(64, (xp_bytes + 63) / 64 * 64);
    if (!xp) return 0;
    rf_job j = {y, W, x, bias, xp, n, kk, bf, ritem_rows(W->cols)};
    cb_parallel_for((n + 15) / 16, rf_pack_item, &j);
    cb_parallel_for((W->rows + j.item_rows - 1) / j.item_rows, rf_item, &j);
    free(xp);
    return 1;
}
#endif

/* ---- the product -------------------------------------------------------------------------- */

typedef struct mf_job {
    float *y;
    const cb_weight_matrix *W;
    const float *x, *bias;
    const void *xp; /* packed tokens */
    int n, kk;      /* kk: columns, or column pairs (bf) */
    mf_shape s;
    cb_mf_path path;
} mf_job;

/* One panel of NR rows against every token. */
static void mf_item(void *ctx, int item) {
    const mf_job *j = ctx;
    const cb_weight_matrix *W = j->W;
    const int rows = W->rows, nr = j->s.nr, mr = j->s.mr, r0 = item * nr;
    const int nrows = rows - r0 < nr ? rows - r0 : nr;
    const size_t panel_bytes = (size_t)nr * j->kk * 4;
    // the panel, then (f32 panels from fp16/bf16 on the scalar packing) one converted row
    unsigned char *scratch = cb_parallel_scratch(panel_bytes + sizeof(float) * (size_t)W->cols);
    void *panel = scratch;
    float *tmp = scratch ? (float *)(void *)(scratch + panel_bytes) : NULL;
    if (!panel) { // no memory: the same products a row at a time
        for (int r = r0; r < r0 + nrows; r++)
            for (int i = 0; i < j->n; i++)
                j->y[(size_t)i * rows + r] =
                    cb_kv_dot(W->kind, row_of(W, r), j->x + (size_t)i * W->cols, (size_t)W->cols);
    } else {
#if MF_X86
        if (j->path >= CB_MF_AVX512) pack_w_512(panel, W, r0, nrows, nr, j->s.bf);
        else
#endif
        if (j->s.bf) pack_w_bf16(panel, W, r0, nrows, nr);
        else pack_w_f32(panel, tmp, W, r0, nrows, nr);
        const int tiles = (j->n + mr - 1) / mr;
        for (int t = 0; t < tiles; t++) {
            const int m = j->n - t * mr < mr ? j->n - t * mr : mr;
            float *y = j->y + (size_t)t * mr * rows + r0;
            const size_t xoff = (size_t)t * j->kk * mr;
            switch (j->path) {
#if MF_X86
            case CB_MF_AVX512BF16: // bf16 weights by vdpbf16ps; fp32, fp16 on f32 panels
                if (j->s.bf) tile_bf16(y, (size_t)rows, (const uint32_t *)j->xp + xoff, panel, j->kk, m, nrows);
                else tile_512(y, (size_t)rows, (const float *)j->xp + xoff, panel, j->kk, m, nrows);
                break;
            case CB_MF_AVX512: tile_512(y, (size_t)rows, (const float *)j->xp + xoff, panel, j->kk, m, nrows); break;
            case CB_MF_AVX2: tile_avx2(y, (size_t)rows, (const float *)j->xp + xoff, panel, j->kk, m, nrows); break;
#endif
            default: break; // not reached: cb_mf_takes refused
            }
        }
    }
    if (j->bias)
        for (int i = 0; i < j->n; i++)
            for (int r = r0; r < r0 + nrows; r++) j->y[(size_t)i * rows + r] += j->bias[r];
}

int cb_mf_matmul(float *y, const cb_weight_matrix *W, const float *x, const float *bias, int n) {
    if (!cb_mf_takes(W, n)) return 0;
    const cb_mf_path path = cb_mf_path_current();
#if MF_X86
    if (path >= CB_MF_AVX512 && !cb_mf_panels())
        return rf_matmul(y, W, x, bias, n, path == CB_MF_AVX512BF16 && W->kind == CB_KV_BF16);
#endif
    const mf_shape s = shape_of(path, W->kind);
    const int tiles = (n + s.mr - 1) / s.mr, kk = s.bf ? (W->cols + 1) / 2 : W->cols;
    const size_t xp_bytes = (size_t)tiles * s.mr * kk * 4;
    void *xp = aligned_alloc(64, (xp_bytes + 63) / 64 * 64);
    if (!xp) return 0;
#if MF_X86
    if (path >= CB_MF_AVX512) { // mr 8
        if (s.bf) pack_x_bf16_512(xp, x, n, W->cols);
        else pack_x_512(xp, x, n, W->cols);
    } else
#endif
    if (s.bf) pack_x_bf16(xp, x, n, W->cols, s.mr);
    else pack_x_f32(xp, x, n, W->cols, s.mr);
    mf_job j = {y, W, x, bias, xp, n, kk, s, path};
    cb_parallel_for((W->rows + s.nr - 1) / s.nr, mf_item, &j);
    free(xp);
    return 1;
}
