/* quant_int.h: products of q8_0, q4_0 and nf4 weight rows with activation vectors quantised
 * once per token to int8 blocks (llama.cpp's q8_0 activations), multiplied byte by byte with
 * integer dot products: AVX512-VNNI (vpdpbusd), AVX-512BW and AVX2 (vpmaddubsw + vpmaddwd),
 * or portable C, chosen at run time by cpuid; one binary runs on any x86-64 (each path's
 * functions carry their own target attribute) and elsewhere on the portable path.
 *
 * Why: converting every weight to f32 and multiplying in f32 made these products bound by
 * arithmetic on a 2 GHz core (issue 21: q4_0 at 41% of the memory bound); one integer dot
 * instruction multiplies 64 weights by 64 inputs.
 *
 * Activations: each 32-value block of x is stored as q[j] = round(x[j] / d), d = amax / 127
 * (f32), |q| <= 127; a block of zeros has d = 0, q = 0; a block holding NaN or infinity has
 * d = NaN, so every product touching it is NaN as in f32.
 *
 * Weight values as the kernels see them: q8_0 and q4_0 exactly their stored values (int8,
 * or nibble - 8, times the fp16 scale). nf4 levels are replaced by cb_nf4_levels_i8[i] / 127
 * (the level rounded to the nearest 1/127): at most CB_NF4_I8_LEVEL_ERR times the block's
 * scale from the stored value.
 *
 * Error of one product y = sum_j w_j x_j against the exact sum over the stored weights w_j
 * (fp64), derived:
 *   activation rounding: |x_j - q_j d_b| <= d_b (1/2 + 2^-12) (the 1/2 of rounding to
 *     nearest; 2^-12 covers the f32 roundings of 127 / amax and of x * that), so the sum
 *     moves by at most sum_j |w_j| d_b(j) (1/2 + 2^-12);
 *   nf4 only: + sum_j (|x_j| + d_b(j)) |scale_w(j)| CB_NF4_I8_LEVEL_ERR;
 *   f32: each block's integer sum is exact (|sum| <= 64 * 255 * 127 < 2^24, converted
 *     exactly), scaled by the product of two scales (one rounding; nf4 three, its scale
 *     also divided by 127) and added into one of 8 or 16 lanes (at most nb additions a lane;
 *     one token's q8_0/q4_0 rows on AVX-512 split them over two accumulators, added once;
 *     then 4 of the horizontal sum): at most (nb + 8) 2^-24 sum_j |w_j q_j d_b(j)|, nb the
 *     number of 32-value blocks.
 * tests/unit/backend/test_quant_int.c asserts this bound on every path the CPU running it has. */
#ifndef CB_BACKEND_CPU_QUANT_INT_H
#define CB_BACKEND_CPU_QUANT_INT_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/quant.h"

#define CB_QI_BLOCK 32 /* activation values per scale */
#define CB_QI_MAX_M 8  /* tokens one pass over a weight row serves */

/* The nf4 levels as the integer kernels hold them: round(127 * cb_nf4_levels[i]). */
extern const int8_t cb_nf4_levels_i8[16];
/* max_i |cb_nf4_levels_i8[i] / 127 - cb_nf4_levels[i]| (computed from the two tables by
 * tests/unit/backend/test_quant_int.c, which checks this constant is not below it). */
#define CB_NF4_I8_LEVEL_ERR 0.00368f

/* One token's activations. Every array is padded to an even number of blocks (an nf4 block
 * spans two), padding blocks zero; the per-block values are repeated over 8 int32/f32 lanes
 * so that a 512-bit kernel loads two blocks' lanes with one load.
 *   q (nb * 32) int8; d (nb * 8) scale; c128 (nb * 8) = -16 * sum(q of the block), so the 8
 *   lanes add to -128 * sum (the offset of a signed weight stored as unsigned); c8 (nb * 8) =
 *   -sum(q), the 8 lanes adding to -8 * sum (q4_0's offset). With B = nb * 32 bytes, d
 *   starts B bytes after q, c128 2B and c8 4B (B to 3B unused): the kernels reach them from
 *   q by fixed offsets, one pointer a token. */
typedef struct cb_act_q8 {
    size_t n, nb; /* values, blocks (even) */
    int8_t *q;
    float *d;
    int32_t *c128, *c8;
    /* NULL, or the same values laid out for one token's q4_0 rows three blocks at a time
     * (cb_act_q8_layout_q4): per three weight blocks, CB_QI_G3_BYTES of
     *   lo[64], hi[64]: int8, at the byte where a 64-byte load of the three blocks (18 bytes
     *     each: fp16 scale, 16 bytes of nibbles) holds a value's nibble, the activation that
     *     nibble multiplies (low nibbles: values 0-15 of a block, high: 16-31); 0 at the
     *     scales' bytes and past the blocks;
     *   c[16] int32: -8 * the sum of lo and hi over the 4 bytes of each 32-bit lane (q4_0's
     *     offset of 8);
     *   d[16] f32: the activation scale of the block a lane's bytes belong to (lanes 0-4 the
     *     first block, 5-8 the second, 9-13 the third), 0 in lanes 14-15.
     * No 32-bit lane holds bytes of two blocks (a block's 16 nibble bytes start 2 bytes
     * after its scale, 18 bytes apart), so one load, two shifts/masks and two integer dot
     * products serve three blocks, against a permute a pair of blocks before. */
    unsigned char *g3;
} cb_act_q8;

#define CB_QI_G3_BYTES 256 /* the q4_0 layout's bytes per three weight blocks */

/* Bytes a cb_act_q8 of n values needs from cb_act_q8_init's buffer (64-byte aligned), the
 * q4_0 layout included. */
size_t cb_act_q8_bytes(size_t n);
/* Lay a (n values) over buf (cb_act_q8_bytes(n) bytes, 64-byte aligned); g3 NULL. */
void cb_act_q8_init(cb_act_q8 *a, void *buf, size_t n);
/* a = x (a->n values) quantised as above; on the AVX-512 paths 16 values at a time, the same
 * bytes as the portable loop (the same f32 operations). Leaves g3 NULL. */
void cb_act_q8_quantize(cb_act_q8 *a, const float *x);
/* After cb_act_q8_quantize: write the q4_0 layout (g3) where the current path has kernels
 * for it (AVX-512) and CB_QI_G3 is not 0 in the environment; else leave g3 NULL. One
 * token's q4_0 rows (cb_qi_rows_dot, m = 1) then go three blocks a step. */
void cb_act_q8_layout_q4(cb_act_q8 *a);

/* The instruction sets of the kernels, best last. */
typedef enum cb_qi_path {
    CB_QI_PORTABLE = 0,
    CB_QI_AVX2,      /* AVX2, FMA, F16C */
    CB_QI_AVX512BW,  /* AVX-512 F/BW/VL/DQ */
    CB_QI_AVX512VNNI, /* the above and AVX512-VNNI */
    CB_QI_PATH_COUNT
} cb_qi_path;

/* 1 when this CPU (and OS) can run path. */
int cb_qi_path_supported(cb_qi_path path);
/* The path in use: the best supported one unless cb_qi_path_force chose another. */
cb_qi_path cb_qi_path_current(void);
/* Use path from now on (tests run every supported path so); 0 and no change when the CPU
 * cannot run it. Not thread-safe against running products. */
int cb_qi_path_force(cb_qi_path path);
/* "portable", "avx2", "avx512bw", "avx512vnni". */
const char *cb_qi_path_name(cb_qi_path path);

/* 1 when kind has integer kernels (q8_0, q4_0, nf4). */
int cb_qi_kind(cb_kv_kind kind);

/* y[i * ldy + r] = row r . token i for r < nrows, i < m (1 <= m <= CB_QI_MAX_M): nrows
 * stored rows of kind (cb_qi_kind) at rows, row_bytes apart, each of a[0].n values; a (m),
 * all of a[0].n values. Rows ahead of the one being read are prefetched. */
void cb_qi_rows_dot(cb_kv_kind kind, float *y, size_t ldy, const void *rows, size_t row_bytes, int nrows,
                    const cb_act_q8 *a, int m);

#endif
