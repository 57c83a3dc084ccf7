/* quant_int.c: int8 activation blocks and the integer row products of q8_0, q4_0 and nf4
 * weights (see quant_int.h for the formats' error bounds). Four paths compute the same exact
 * integer block sums and differ only in the order of the f32 additions:
 *   avx512vnni: two 32-value blocks per 512-bit register; a signed weight w is fed to vpdpbusd
 *     (unsigned x signed) as w + 128 (xor 0x80, or an nf4 level table stored + 128) and the
 *     accumulator starts at -128 * sum(q) of the activation block (cb_act_q8.c128), so the
 *     offset cancels exactly; q4_0's nibbles are already unsigned (offset 8: c8);
 *   avx512bw: the same layout through vpmaddubsw, whose int16 pair sums saturate at 32767: a
 *     signed weight goes in as |w| with its sign moved onto the activation (127 * 127 * 2 fits),
 *     then vpmaddwd against ones;
 *   avx2: one 32-value block per 256-bit register, the same tricks with vpsignb;
 *   portable: plain C integer sums.
 * Each x86 function carries its target attribute, so the file compiles for any x86-64 and the
 * path is picked by cpuid (__builtin_cpu_supports, which also checks the OS saves the
 * registers). M tokens per pass over a row are compile-time constants (a switch instantiates
 * 1..8) so that the M accumulators stay in registers. */
#include "backend/cpu/quant_int.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/env_switch.h"
#include "tensor/dtype.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define QI_X86 1
#include <immintrin.h>
#else
#define QI_X86 0
#endif

const int8_t cb_nf4_levels_i8[16] = {-127, -88, -67, -50, -36, -23, -12, 0,
                                     10,   20,  31,  43,  56,  71,  92,  127};

/* ---- activations ---------------------------------------------------------------------- */

static size_t even_blocks(size_t n) {
    size_t nb = (n + CB_QI_BLOCK - 1) / CB_QI_BLOCK;
    return nb + (nb & 1) + (nb == 0 ? 2 : 0);
}

/* Three-block groups of q4_0 weight blocks over n values (cb_act_q8.g3). */
static size_t g3_groups(size_t n) { return ((n + 31) / 32 + 2) / 3; }

size_t cb_act_q8_bytes(size_t n) { return even_blocks(n) * CB_QI_BLOCK * 5 + g3_groups(n) * CB_QI_G3_BYTES; }

void cb_act_q8_init(cb_act_q8 *a, void *buf, size_t n) {
    const size_t nb = even_blocks(n);
    unsigned char *p = buf;
    a->n = n;
    a->nb = nb;
    a->q = (int8_t *)p;
    a->d = (float *)(p + nb * CB_QI_BLOCK);
    a->c128 = (int32_t *)(p + 2 * nb * CB_QI_BLOCK);
    a->c8 = (int32_t *)(p + 4 * nb * CB_QI_BLOCK);
    a->g3 = NULL; // cb_act_q8_layout_q4 places it at p + 5 * nb * CB_QI_BLOCK
}

static void quantize_portable(cb_act_q8 *a, const float *x) {
    const size_t n = a->n;
    for (size_t b = 0; b < a->nb; b++) {
        const size_t j0 = b * CB_QI_BLOCK;
        const size_t cnt = j0 >= n ? 0 : n - j0 < CB_QI_BLOCK ? n - j0 : CB_QI_BLOCK;
        int8_t *q = a->q + j0;
        float amax = 0.0f;
        int finite = 1;
        for (size_t j = 0; j < cnt; j++) {
            const float v = fabsf(x[j0 + j]);
            amax = v > amax ? v : amax;
            finite &= isfinite(x[j0 + j]) != 0;
        }
        float d;
        int32_t sum = 0;
        if (!finite) { // NaN or infinity: a NaN scale, so the products come out NaN as in f32
            d = NAN;
            memset(q, 0, CB_QI_BLOCK);
        } else {
            const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
            d = amax / 127.0f;
            for (size_t j = 0; j < cnt; j++) {
                const float v = nearbyintf(x[j0 + j] * id); // |v| <= 127 up to id's rounding: clamp
                q[j] = (int8_t)(v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v);
                sum += q[j];
            }
            for (size_t j = cnt; j < CB_QI_BLOCK; j++) q[j] = 0;
        }
        for (int l = 0; l < 8; l++) {
            a->d[b * 8 + l] = d;
            a->c128[b * 8 + l] = -16 * sum;
            a->c8[b * 8 + l] = -sum;
        }
    }
}

/* ---- path choice ---------------------------------------------------------------------- */

static const char *const PATH_NAMES[CB_QI_PATH_COUNT] = {"portable", "avx2", "avx512bw", "avx512vnni"};

const char *cb_qi_path_name(cb_qi_path path) {
    return (int)path >= 0 && path < CB_QI_PATH_COUNT ? PATH_NAMES[path] : "?";
}

int cb_qi_path_supported(cb_qi_path path) {
#if QI_X86
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                     __builtin_cpu_supports("f16c");
    const int bw = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    switch (path) {
    case CB_QI_PORTABLE: return 1;
    case CB_QI_AVX2: return avx2;
    case CB_QI_AVX512BW: return bw;
    case CB_QI_AVX512VNNI: return bw && __builtin_cpu_supports("avx512vnni");
    default: return 0;
    }
#else
    return path == CB_QI_PORTABLE;
#endif
}

static atomic_int g_path = -1;

cb_qi_path cb_qi_path_current(void) {
    int p = atomic_load_explicit(&g_path, memory_order_relaxed);
    if (p < 0) {
        p = CB_QI_PORTABLE;
        for (int c = CB_QI_PATH_COUNT - 1; c > 0; c--)
            if (cb_qi_path_supported((cb_qi_path)c)) {
                p = c;
                break;
            }
        atomic_store_explicit(&g_path, p, memory_order_relaxed);
    }
    return (cb_qi_path)p;
}

int cb_qi_path_force(cb_qi_path path) {
    if (!cb_qi_path_supported(path)) return 0;
    atomic_store_explicit(&g_path, (int)path, memory_order_relaxed);
    return 1;
}

int cb_qi_kind(cb_kv_kind kind) { return kind == CB_KV_Q8_0 || kind == CB_KV_Q4_0 || kind == CB_KV_NF4; }

/* 1 unless CB_QI_G3=0: one token's q4_0 rows three blocks a step (cb_act_q8.g3) instead of
 * two through vpermw. Read once. */
static int g3_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_QI_G3");
}

/* Rows this far ahead of the one being read are prefetched (whole rows, at least 8 KiB: a
 * core streaming on the hardware prefetchers alone fell short of its bandwidth; matvec.c). */
#define PREFETCH_BYTES 8192
static inline size_t prefetch_ahead(size_t row_bytes) {
    return (PREFETCH_BYTES + row_bytes - 1) / row_bytes * row_bytes;
}
static inline __attribute__((always_inline)) void prefetch_row(const unsigned char *p, size_t bytes) {
    for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off, 0, 3);
}

/* 1 unless CB_QI_ROWS4=0 in the environment: the 4-row one-token kernel off, to tell its
 * effect (bench) or a fault in it apart. Read once. */
static int rows4_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_QI_ROWS4");
}

/* 1 unless CB_QI_ROWS8=0: one token's q4_0 rows (three-block layout) 8 at a time, then 4,
 * where 8 rows fit in PREFETCH_BYTES (768 columns: 3.4 KiB). Short rows spend a large share
 * of their time on a group's fixed work (activation loads, setup, the reduction of its sums);
 * 8 longer rows read side by side were slower from memory (4096 columns: 0.88x), as q8_0's
 * 4 rows are (quant_int_512.inc kern512_rows4). Read once. */
static int rows8_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_QI_ROWS8");
}

/* 1 unless CB_QI_Q4PERM=0: q4_0's AVX-512 kernels take two blocks' nibbles and scales from
 * one masked load through two vpermw (quant_int_512.inc weights2) instead of two loads, an
 * insert, a vpermq and two scale broadcasts. Read once. */
static int q4perm_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_QI_Q4PERM");
}

/* 1 unless CB_QI_PFREAD=0: one token's q8_0 rows on AVX-512 prefetch the row ahead a cache
 * line as each 64 bytes are read (as matvec.c's dot_pf) instead of whole before reading it. */
static int pfread_enabled(void) {
    static atomic_int on = -1;
    return cb_env_switch_on(&on, "CB_QI_PFREAD");
}

static size_t weight_blocks(cb_kv_kind kind, size_t n) {
    const size_t bv = (size_t)cb_kv_kind_block_values(kind);
    return (n + bv - 1) / bv;
}

/* ---- portable --------------------------------------------------------------------------- */

static float dot_portable(cb_kv_kind kind, const void *row, const cb_act_q8 *a) {
    const size_t nbw = weight_blocks(kind, a->n);
    float acc = 0.0f;
    for (size_t b = 0; b < nbw; b++) {
        if (kind == CB_KV_Q8_0) {
            const cb_block_q8_0 *w = (const cb_block_q8_0 *)row + b;
            int32_t s = 0;
            for (int j = 0; j < 32; j++) s += (int32_t)w->qs[j] * a->q[b * 32 + j];
            acc += (float)s * (cb_f16_to_f32(w->d) * a->d[b * 8]);
        } else if (kind == CB_KV_Q4_0) {
            const cb_block_q4_0 *w = (const cb_block_q4_0 *)row + b;
            int32_t s = 0;
            for (int j = 0; j < 16; j++)
                s += ((w->qs[j] & 15) - 8) * a->q[b * 32 + j] + ((w->qs[j] >> 4) - 8) * a->q[b * 32 + 16 + j];
            acc += (float)s * (cb_f16_to_f32(w->d) * a->d[b * 8]);
        } else {
            const cb_block_nf4 *w = (const cb_block_nf4 *)row + b;
            int32_t s0 = 0, s1 = 0;
            for (int j = 0; j < 32; j++) {
                s0 += cb_nf4_levels_i8[w->qs[j] & 15] * a->q[b * 64 + j];
                s1 += cb_nf4_levels_i8[w->qs[j] >> 4] * a->q[b * 64 + 32 + j];
            }
            const float dw = cb_f16_to_f32(w->d) * (1.0f / 127); // levels held x 127
            acc += (float)s0 * (dw * a->d[(2 * b) * 8]) + (float)s1 * (dw * a->d[(2 * b + 1) * 8]);
        }
    }
    return acc;
}

static void rows_portable(cb_kv_kind kind, float *y, size_t ldy, const unsigned char *rows, size_t row_bytes,
                          int nrows, const cb_act_q8 *a, int m) {
    const size_t ahead = prefetch_ahead(row_bytes);
    for (int r = 0; r < nrows; r++) {
        const unsigned char *row = rows + (size_t)r * row_bytes;
        prefetch_row(row + ahead, row_bytes);
        for (int i = 0; i < m; i++) y[(size_t)i * ldy + r] = dot_portable(kind, row, a + i);
    }
}

#if QI_X86
/* ---- AVX2 ------------------------------------------------------------------------------- */
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))
#define INL_AVX2 static inline __attribute__((always_inline, target("avx2,fma,f16c")))

INL_AVX2 float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* 8 int32 sums of a signed weight block s against signed activations q: |s| times q with
 * s's sign (vpmaddubsw takes unsigned x signed; 127 * 127 * 2 fits its int16 pairs). */
INL_AVX2 __m256i signed_pairs_avx2(__m256i s, __m256i q) {
    const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(s, s), _mm256_sign_epi8(q, s));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

INL_AVX2 __m256i nibbles16_avx2(const uint8_t *qs) { // 16 bytes -> 32 nibbles, low ones first
    const __m128i x = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(x, 4), x), _mm256_set1_epi8(15));
}

INL_AVX2 void kern_avx2(const int K, const int M, float *out, const unsigned char *row, const cb_act_q8 *a) {
    const size_t nbw = weight_blocks((cb_kv_kind)K, a[0].n);
    __m256 acc[CB_QI_MAX_M];
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();
    const __m256i lv = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)cb_nf4_levels_i8));
    for (size_t b = 0; b < nbw; b++) {
        if (K == CB_KV_Q8_0) {
            const cb_block_q8_0 *w = (const cb_block_q8_0 *)row + b;
            const __m256i s = _mm256_loadu_si256((const __m256i *)w->qs);
            const __m256i as = _mm256_sign_epi8(s, s);
            const float dw = _cvtsh_ss(w->d);
            #pragma GCC unroll 8
            for (int i = 0; i < M; i++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].q + b * 32));
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(as, _mm256_sign_epi8(q, s)), _mm256_set1_epi16(1));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * a[i].d[b * 8]), acc[i]);
            }
        } else if (K == CB_KV_Q4_0) {
            const cb_block_q4_0 *w = (const cb_block_q4_0 *)row + b;
            const __m256i v = nibbles16_avx2(w->qs);
            const float dw = _cvtsh_ss(w->d);
            #pragma GCC unroll 8
            for (int i = 0; i < M; i++) {
                const __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].q + b * 32));
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(v, q), _mm256_set1_epi16(1));
                p = _mm256_add_epi32(p, _mm256_loadu_si256((const __m256i *)(a[i].c8 + b * 8)));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * a[i].d[b * 8]), acc[i]);
            }
        } else {
            const cb_block_nf4 *w = (const cb_block_nf4 *)row + b;
            const __m256i x = _mm256_loadu_si256((const __m256i *)w->qs);
            const __m256i lo = _mm256_shuffle_epi8(lv, _mm256_and_si256(x, _mm256_set1_epi8(15)));
            const __m256i hi = _mm256_shuffle_epi8(lv, _mm256_and_si256(_mm256_srli_epi16(x, 4), _mm256_set1_epi8(15)));
            const float dw = _cvtsh_ss(w->d) * (1.0f / 127); // levels held x 127
            #pragma GCC unroll 8
            for (int i = 0; i < M; i++) {
                const __m256i q0 = _mm256_loadu_si256((const __m256i *)(a[i].q + b * 64));
                const __m256i q1 = _mm256_loadu_si256((const __m256i *)(a[i].q + b * 64 + 32));
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_pairs_avx2(lo, q0)),
                                         _mm256_set1_ps(dw * a[i].d[(2 * b) * 8]), acc[i]);
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_pairs_avx2(hi, q1)),
                                         _mm256_set1_ps(dw * a[i].d[(2 * b + 1) * 8]), acc[i]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int i = 0; i < M; i++) out[i] = hsum8(acc[i]);
}

/* ---- AVX-512 (BW, and VNNI): quant_int_512.inc, compiled twice with its own target ---- */
#define TGT512 "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"
#define QI_TGT TGT512
#define QI_VNNI 0
#define QI_SUF(name) name##_bw
#include "backend/cpu/quant_int_512.inc"
#undef QI_TGT
#undef QI_VNNI
#undef QI_SUF
#define QI_TGT TGT512 ",avx512vnni"
#define QI_VNNI 1
#define QI_SUF(name) name##_vnni
#include "backend/cpu/quant_int_512.inc"
#undef QI_TGT
#undef QI_VNNI
#undef QI_SUF

/* cb_act_q8_quantize on AVX-512: the same operations as quantize_portable in the same f32
 * arithmetic (max of |x|, 127 / amax, amax / 127, x * that rounded to nearest-even, clamped),
 * so the two give the same bytes (test_quant_int checks); a block is two 16-lane registers
 * instead of 32 scalar steps. The scalar loop cost about 1.1 us per 768 values, a tenth of a
 * 768 x 768 q8_0 product's time on one core, spent by the caller while the pool waits. */
__attribute__((target(TGT512))) static void quantize_512(cb_act_q8 *a, const float *x) {
    const size_t n = a->n;
    const __m512 lim = _mm512_set1_ps(127.0f);
    for (size_t b = 0; b < a->nb; b++) {
        const size_t j0 = b * CB_QI_BLOCK;
        const size_t cnt = j0 >= n ? 0 : n - j0 < CB_QI_BLOCK ? n - j0 : CB_QI_BLOCK;
        const __mmask16 m0 = cnt >= 16 ? 0xFFFF : (__mmask16)((1u << cnt) - 1);
        const __mmask16 m1 = cnt >= 32 ? 0xFFFF : cnt > 16 ? (__mmask16)((1u << (cnt - 16)) - 1) : 0;
        __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
        if (cnt) { // masked loads: lanes past n read nothing and hold 0, as the portable padding
            x0 = _mm512_maskz_loadu_ps(m0, x + j0);
            x1 = _mm512_maskz_loadu_ps(m1, x + j0 + 16);
        }
        float d;
        int32_t sum = 0;
        __m128i q0 = _mm_setzero_si128(), q1 = _mm_setzero_si128();
        // NaN (quiet 0x01, signalling 0x80) or infinity (0x08, 0x10) anywhere: a NaN scale
        if (_mm512_fpclass_ps_mask(x0, 0x99) | _mm512_fpclass_ps_mask(x1, 0x99)) {
            d = NAN;
        } else {
            const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
            const __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            d = amax / 127.0f;
            const int mode = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            __m512 v0 = _mm512_roundscale_ps(_mm512_mul_ps(x0, id), mode);
            __m512 v1 = _mm512_roundscale_ps(_mm512_mul_ps(x1, id), mode);
            v0 = _mm512_max_ps(_mm512_min_ps(v0, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
            v1 = _mm512_max_ps(_mm512_min_ps(v1, lim), _mm512_sub_ps(_mm512_setzero_ps(), lim));
            const __m512i i0 = _mm512_cvtps_epi32(v0), i1 = _mm512_cvtps_epi32(v1); // exact: integers
            sum = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
            q0 = _mm512_cvtepi32_epi8(i0);
            q1 = _mm512_cvtepi32_epi8(i1);
        }
        _mm_storeu_si128((__m128i *)(a->q + j0), q0);
        _mm_storeu_si128((__m128i *)(a->q + j0 + 16), q1);
        _mm256_storeu_ps(a->d + b * 8, _mm256_set1_ps(d));
        _mm256_storeu_si256((__m256i *)(a->c128 + b * 8), _mm256_set1_epi32(-16 * sum));
        _mm256_storeu_si256((__m256i *)(a->c8 + b * 8), _mm256_set1_epi32(-sum));
    }
}

/* cb_act_q8.g3 from a's quantised blocks (quant_int.h): the values copied 16 at a time to
 * their bytes, the lanes' sums by vpmaddubsw against ones, the scales blended into their
 * lanes. Written after the decoder's every q4_0 product of one token, on the caller while
 * the pool waits: the scalar loops cost 3% of a 110M q4_0 token on two cores. */
__attribute__((target(TGT512))) static void layout_q4_512(cb_act_q8 *a, unsigned char *g3) {
    const size_t nbw = (a->n + 31) / 32, ng = g3_groups(a->n);
    const __m512i ones8 = _mm512_set1_epi8(1), ones16 = _mm512_set1_epi16(1);
    for (size_t g = 0; g < ng; g++) {
        unsigned char *G = g3 + g * CB_QI_G3_BYTES;
        _mm512_store_si512((void *)G, _mm512_setzero_si512());
        _mm512_store_si512((void *)(G + 64), _mm512_setzero_si512());
        __m512 d = _mm512_setzero_ps();
        static const __mmask16 lanes[3] = {0x001F, 0x01E0, 0x3E00}; // lanes 0-4, 5-8, 9-13
        for (size_t j = 0; j < 3 && 3 * g + j < nbw; j++) {
            const size_t b = 3 * g + j;
            _mm_storeu_si128((__m128i *)(void *)(G + 18 * j + 2), _mm_loadu_si128((const __m128i *)(const void *)(a->q + b * 32)));
            _mm_storeu_si128((__m128i *)(void *)(G + 64 + 18 * j + 2),
                             _mm_loadu_si128((const __m128i *)(const void *)(a->q + b * 32 + 16)));
            d = _mm512_mask_blend_ps(lanes[j], d, _mm512_set1_ps(a->d[b * 8]));
        }
        // the lanes' sums of lo and hi (ones as the unsigned operand: exact, |sum| <= 8 * 127)
        const __m512i lo = _mm512_load_si512((const void *)G), hi = _mm512_load_si512((const void *)(G + 64));
        const __m512i sum = _mm512_madd_epi16(_mm512_add_epi16(_mm512_maddubs_epi16(ones8, lo), _mm512_maddubs_epi16(ones8, hi)), ones16);
        _mm512_store_si512((void *)(G + 128), _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 3)));
        _mm512_store_ps((void *)(G + 192), d);
    }
}

/* One path's row loop: K and M dispatched once per call, the kernel inlined for each; one
 * token of q4_0 goes 4 rows at a time where the path has KERN4 (HAS4), three blocks a step
 * (KERNG3) where its activations have the q4_0 layout. */
/* 1 when every one of the m tokens has its q4_0 layout (cb_act_q8_layout_q4). */
static inline int all_g3(const cb_act_q8 *a, int m) {
    for (int i = 0; i < m; i++)
        if (!a[i].g3) return 0;
    return 1;
}

#define ROWS_FN(NAME, ATTR, KERN, HAS4, KERN4, KERNG3, KERN4M)                                               \
    ATTR static void NAME(cb_kv_kind kind, float *y, size_t ldy, const unsigned char *rows, size_t row_bytes, \
                          int nrows, const cb_act_q8 *a, int m) {                                       \
        const size_t ahead = prefetch_ahead(row_bytes);                                                 \
        float out[CB_QI_MAX_M];                                                                          \
        int r = 0;                                                                                      \
        const int p4 = kind == CB_KV_Q4_0 && q4perm_enabled();                                          \
        const int pf_read = HAS4 && m == 1 && kind == CB_KV_Q8_0 && pfread_enabled();                   \
        if (HAS4 && m > 1 && (kind == CB_KV_Q4_0 || kind == CB_KV_Q8_0) && rows4_enabled()) {           \
            const int g3 = kind == CB_KV_Q4_0 && all_g3(a, m);                                          \
            for (; r + 4 <= nrows; r += 4)                                                              \
                for (int i0 = 0; i0 < m; i0 += 4) {                                                     \
                    const int mm = m - i0 < 4 ? m - i0 : 4;                                             \
                    const unsigned char *rr = rows + (size_t)r * row_bytes;                              \
                    float *yy = y + (size_t)i0 * ldy + r;                                               \
                    switch ((kind == CB_KV_Q4_0 ? (g3 ? 12 : p4 ? 8 : 4) : 0) + mm - 1) {               \
                    ROWS4M_CASES(KERN4M, CB_KV_Q8_0, 0, 0)                                              \
                    ROWS4M_CASES(KERN4M, CB_KV_Q4_0, 0, 4)                                              \
                    ROWS4M_CASES(KERN4M, CB_KV_Q4_0, 1, 8)                                              \
                    ROWS4M_CASES(KERN4M, CB_KV_Q4_0, 2, 12)                                             \
                    }                                                                                   \
                }                                                                                       \
        } else if (HAS4 && m == 1 && kind == CB_KV_Q4_0 && a->g3) {                                     \
            if (8 * row_bytes <= PREFETCH_BYTES && rows8_enabled())                                     \
                for (; r + 8 <= nrows; r += 8) KERNG3(8, y + r, rows + (size_t)r * row_bytes, row_bytes, a, ahead); \
            for (; r + 4 <= nrows; r += 4) KERNG3(4, y + r, rows + (size_t)r * row_bytes, row_bytes, a, ahead); \
        } else if (HAS4 && m == 1 && kind == CB_KV_Q4_0 && rows4_enabled()) {                           \
            if (p4)                                                                                     \
                for (; r + 4 <= nrows; r += 4) KERN4(CB_KV_Q4_0, 1, y + r, rows + (size_t)r * row_bytes, row_bytes, a, ahead); \
            else                                                                                        \
                for (; r + 4 <= nrows; r += 4) KERN4(CB_KV_Q4_0, 0, y + r, rows + (size_t)r * row_bytes, row_bytes, a, ahead); \
        }                                                                                               \
        for (; r < nrows; r++) {                                                                        \
            const unsigned char *row = rows + (size_t)r * row_bytes;                                    \
            if (!pf_read) prefetch_row(row + ahead, row_bytes);                                         \
            const unsigned char *pf = pf_read ? row + ahead : NULL;                                     \
            switch (kind * 16 + m) {                                                                    \
            ROWS_CASES(KERN, CB_KV_Q8_0)                                                                \
            ROWS_CASES(KERN, CB_KV_Q4_0)                                                                \
            ROWS_CASES(KERN, CB_KV_NF4)                                                                 \
            default: return;                                                                            \
            }                                                                                           \
            for (int i = 0; i < m; i++) y[(size_t)i * ldy + r] = out[i];                                \
        }                                                                                               \
    }
#define ROWS4M_CASE(KERN4M, K, P, BASE, M) \
    case BASE + M - 1: KERN4M(K, P, M, yy, ldy, rr, row_bytes, a + i0, ahead); break;
#define ROWS4M_CASES(KERN4M, K, P, BASE)                                                                 \
    ROWS4M_CASE(KERN4M, K, P, BASE, 1) ROWS4M_CASE(KERN4M, K, P, BASE, 2) ROWS4M_CASE(KERN4M, K, P, BASE, 3) \
    ROWS4M_CASE(KERN4M, K, P, BASE, 4)
#define ROWS_CASE(KERN, K, M) \
    case K * 16 + M: KERN(K, p4, M, out, row, a, pf); break;
#define ROWS_CASES(KERN, K)                                                                              \
    ROWS_CASE(KERN, K, 1) ROWS_CASE(KERN, K, 2) ROWS_CASE(KERN, K, 3) ROWS_CASE(KERN, K, 4)             \
    ROWS_CASE(KERN, K, 5) ROWS_CASE(KERN, K, 6) ROWS_CASE(KERN, K, 7) ROWS_CASE(KERN, K, 8)

#define KERN_AVX2(K, P, M, out, row, a, pf) ((void)(pf), kern_avx2(K, M, out, row, a))
#define KERN_BW(K, P, M, out, row, a, pf) kern512_bw(K, P, M, out, row, a, pf)
#define KERN_VNNI(K, P, M, out, row, a, pf) kern512_vnni(K, P, M, out, row, a, pf)
#define KERN4_NONE(K, P, out, row, row_bytes, a, ahead) (void)0
#define KERN4_BW(K, P, out, row, row_bytes, a, ahead) kern512_rows4_bw(K, P, out, row, row_bytes, a, ahead)
#define KERN4_VNNI(K, P, out, row, row_bytes, a, ahead) kern512_rows4_vnni(K, P, out, row, row_bytes, a, ahead)
#define KERNG3_NONE(R, out, row, row_bytes, a, ahead) (void)0
#define KERNG3_BW(R, out, row, row_bytes, a, ahead) kern512_q4g3_rows_bw(R, out, row, row_bytes, a, ahead)
#define KERNG3_VNNI(R, out, row, row_bytes, a, ahead) kern512_q4g3_rows_vnni(R, out, row, row_bytes, a, ahead)
/* P 2: q4_0 with every token's g3 layout */
#define KERN4M_NONE(K, P, M, out, ldo, row, row_bytes, a, ahead) ((void)(out), (void)(row))
#define KERN4M_BW(K, P, M, out, ldo, row, row_bytes, a, ahead)                                     \
    ((P) == 2 ? kern512_q4g3_rows4_m_bw(M, out, ldo, row, row_bytes, a, ahead)                  \
              : kern512_rows4_m_bw(K, (P) == 1, M, out, ldo, row, row_bytes, a, ahead))
#define KERN4M_VNNI(K, P, M, out, ldo, row, row_bytes, a, ahead)                                   \
    ((P) == 2 ? kern512_q4g3_rows4_m_vnni(M, out, ldo, row, row_bytes, a, ahead)                \
              : kern512_rows4_m_vnni(K, (P) == 1, M, out, ldo, row, row_bytes, a, ahead))
ROWS_FN(rows_avx2, T_AVX2, KERN_AVX2, 0, KERN4_NONE, KERNG3_NONE, KERN4M_NONE)
ROWS_FN(rows_avx512bw, __attribute__((target(TGT512))), KERN_BW, 1, KERN4_BW, KERNG3_BW, KERN4M_BW)
ROWS_FN(rows_avx512vnni, __attribute__((target(TGT512 ",avx512vnni"))), KERN_VNNI, 1, KERN4_VNNI, KERNG3_VNNI,
        KERN4M_VNNI)
#endif

void cb_qi_rows_dot(cb_kv_kind kind, float *y, size_t ldy, const void *rows, size_t row_bytes, int nrows,
                    const cb_act_q8 *a, int m) {
    if (m < 1) return;
    if (m > CB_QI_MAX_M) m = CB_QI_MAX_M;
    switch (cb_qi_path_current()) {
#if QI_X86
    case CB_QI_AVX512VNNI: rows_avx512vnni(kind, y, ldy, rows, row_bytes, nrows, a, m); return;
    case CB_QI_AVX512BW: rows_avx512bw(kind, y, ldy, rows, row_bytes, nrows, a, m); return;
    case CB_QI_AVX2: rows_avx2(kind, y, ldy, rows, row_bytes, nrows, a, m); return;
#endif
    default: rows_portable(kind, y, ldy, rows, row_bytes, nrows, a, m); return;
    }
}

void cb_act_q8_quantize(cb_act_q8 *a, const float *x) {
#if QI_X86
    if (cb_qi_path_current() >= CB_QI_AVX512BW) {
        quantize_512(a, x);
        return;
    }
#endif
    quantize_portable(a, x);
}

void cb_act_q8_layout_q4(cb_act_q8 *a) {
    a->g3 = NULL;
#if QI_X86
    if (cb_qi_path_current() < CB_QI_AVX512BW || !g3_enabled()) return;
    unsigned char *g3 = (unsigned char *)a->q + 5 * a->nb * CB_QI_BLOCK; // cb_act_q8_bytes made room
    layout_q4_512(a, g3);
    a->g3 = g3;
#endif
}
