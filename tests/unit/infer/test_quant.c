/* test_quant.c: the storage kinds: table, block bytes built by hand from the format
 * definitions (ggml's q8_0/q4_0, QLoRA's nf4), per-value error bounds on random data,
 * partial blocks, and the dot/axpy kernels of every kind against a double reference. */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>

#include "tensor/dtype.h"
#include "tensor/quant.h"
#include "backend/cpu/quant_dot.h"

static unsigned long long rng_state = 0x2545F4914F6CDD1DULL;
static double urand(void) { // uniform in [-1, 1)
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

TEST(quant_kind_table) {
    const char *names[CB_KV_COUNT] = {"fp32", "fp16", "bf16", "q8_0", "q4_0", "nf4"};
    const int values[CB_KV_COUNT] = {1, 1, 1, 32, 32, 64};
    const int bytes[CB_KV_COUNT] = {4, 2, 2, 34, 18, 34};
    EXPECT_EQ_INT(6, CB_KV_COUNT);
    EXPECT_EQ_INT(0, CB_KV_F32);
    EXPECT_EQ_INT(5, CB_KV_NF4);
    for (int k = 0; k < CB_KV_COUNT; k++) {
        EXPECT_EQ_STR(names[k], cb_kv_kind_name((cb_kv_kind)k));
        cb_kv_kind back = CB_KV_COUNT;
        EXPECT(cb_kv_kind_from_name(names[k], &back));
        EXPECT_EQ_INT(k, back);
        EXPECT_EQ_INT(values[k], cb_kv_kind_block_values((cb_kv_kind)k));
        EXPECT_EQ_INT(bytes[k], cb_kv_kind_block_bytes((cb_kv_kind)k));
    }
    cb_kv_kind out;
    EXPECT(!cb_kv_kind_from_name("Q8_0", &out));
    EXPECT(!cb_kv_kind_from_name("int8", &out));
    EXPECT(cb_kv_kind_name((cb_kv_kind)CB_KV_COUNT) == NULL);
    EXPECT(!cb_kv_kind_valid(-1) && !cb_kv_kind_valid(CB_KV_COUNT));
    // n values rounded up to whole blocks
    EXPECT_EQ_INT(400, cb_kv_kind_bytes(CB_KV_F32, 100));
    EXPECT_EQ_INT(200, cb_kv_kind_bytes(CB_KV_BF16, 100));
    EXPECT_EQ_INT(34, cb_kv_kind_bytes(CB_KV_Q8_0, 4));
    EXPECT_EQ_INT(4 * 34, cb_kv_kind_bytes(CB_KV_Q8_0, 100));
    EXPECT_EQ_INT(4 * 18, cb_kv_kind_bytes(CB_KV_Q4_0, 128));
    EXPECT_EQ_INT(2 * 34, cb_kv_kind_bytes(CB_KV_NF4, 65));
    EXPECT_EQ_INT(0, cb_kv_kind_bytes(CB_KV_NF4, 0));
}

/* q8_0 by hand: absmax 127 gives d = 1 (fp16 0x3C00) and q = roundf(x), halves away from 0. */
TEST(quant_q8_0_bytes_by_hand) {
    float x[32] = {0};
    int8_t want[32] = {0};
    const float vals[] = {127, -127, 63.5f, -2.5f, 0.49f, -0.51f, 100.2f, 1.5f, -1.5f, 7};
    const int8_t qs[] = {127, -127, 64, -3, 0, -1, 100, 2, -2, 7};
    for (int j = 0; j < 10; j++) {
        x[3 * j] = vals[j];
        want[3 * j] = qs[j];
    }
    cb_block_q8_0 b;
    cb_quantize_row_q8_0(&b, x, 32);
    EXPECT_EQ_INT(0x3C00, b.d);
    for (int j = 0; j < 32; j++)
        if (b.qs[j] != want[j]) FAILF("q8_0 qs[%d]: expected %d, got %d", j, want[j], b.qs[j]);
    // x_j = (j - 16) / 4: absmax 4, d = 4/127 = 0.0314960... -> fp16 0x2808 (1.0078125 * 2^-5);
    // q_j = roundf((j - 16) * 0.25 * 31.75) = roundf((j - 16) * 7.9375)
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f;
    cb_quantize_row_q8_0(&b, x, 32);
    EXPECT_EQ_INT(0x2808, b.d);
    const int8_t ramp[32] = {-127, -119, -111, -103, -95, -87, -79, -71, -64, -56, -48,
                             -40,  -32,  -24,  -16,  -8,  0,   8,   16,  24,  32,  40,
                             48,   56,   64,   71,   79,  87,  95,  103, 111, 119};
    for (int j = 0; j < 32; j++)
        if (b.qs[j] != ramp[j]) FAILF("q8_0 ramp qs[%d]: expected %d, got %d", j, ramp[j], b.qs[j]);
    // an all-zero block: d = 0, q = 0
    memset(x, 0, sizeof x);
    cb_quantize_row_q8_0(&b, x, 32);
    EXPECT_EQ_INT(0, b.d);
    for (int j = 0; j < 32; j++) EXPECT_EQ_INT(0, b.qs[j]);
}

/* q4_0 by hand. Block 1: m = -3 (largest magnitude, negative): d = -3 / -8 = 0.375
 * (fp16 0x3600), id = 1/0.375; q = min(15, (int)(x id + 8.5)). Value j -> low nibble of
 * byte j, value j + 16 -> high nibble of byte j. */
TEST(quant_q4_0_bytes_by_hand) {
    float x[32] = {0};
    int q[32];
    for (int j = 0; j < 32; j++) q[j] = 8; // zeros
    const float v1[18] = {-3, 3, 0, 0.375f, -0.375f, 0.75f, 1.5f, -1.5f, 2.7f,
                          2.8f, 0.1f, -0.1f, 0.2f, -0.2f, 1.0f, -1.0f, -2.9f, -2.0f};
    // 3/0.375 = 8 -> 16.5 -> clamped 15; 2.7/0.375 = 7.2 -> 15.7 -> 15; 0.1/0.375 = 0.27 -> 8
    // -0.2/0.375 = -0.53 -> 7.97 -> 7; -2.9/0.375 = -7.73 -> 0.77 -> 0; -2/0.375 = -5.33 -> 3
    const int q1[18] = {0, 15, 8, 9, 7, 10, 12, 4, 15, 15, 8, 8, 9, 7, 11, 5, 0, 3};
    for (int j = 0; j < 18; j++) {
        int at = (j * 7) % 32; // spread over both halves of the block
        x[at] = v1[j];
        q[at] = q1[j];
    }
    cb_block_q4_0 b;
    cb_quantize_row_q4_0(&b, x, 32);
    EXPECT_EQ_INT(0x3600, b.d);
    for (int j = 0; j < 16; j++) {
        int want = q[j] | (q[j + 16] << 4);
        if (b.qs[j] != want) FAILF("q4_0 (m=-3) byte %d: expected 0x%02x, got 0x%02x", j, want, b.qs[j]);
    }
    float y[32];
    cb_dequantize_row_q4_0(y, &b, 32);
    for (int j = 0; j < 32; j++) EXPECT_NEAR((q[j] - 8) * 0.375, y[j], 0);

    // Block 2: m = +2 (first of the tie 2, -2): d = 2 / -8 = -0.25 (fp16 0xB400), id = -4
    memset(x, 0, sizeof x);
    for (int j = 0; j < 32; j++) q[j] = 8;
    const float v2[6] = {2, -2, 1, -1, 0.3f, -0.3f};
    const int q2[6] = {0, 15, 4, 12, 7, 9}; // 2 -> -8 -> 0; -2 -> 16.5 -> 15; 1 -> 4.5 -> 4
    for (int j = 0; j < 6; j++) {
        x[5 * j + 1] = v2[j];
        q[5 * j + 1] = q2[j];
    }
    cb_quantize_row_q4_0(&b, x, 32);
    EXPECT_EQ_INT(0xB400, b.d);
    for (int j = 0; j < 16; j++) {
        int want = q[j] | (q[j + 16] << 4);
        if (b.qs[j] != want) FAILF("q4_0 (m=+2) byte %d: expected 0x%02x, got 0x%02x", j, want, b.qs[j]);
    }
    // all zeros: d = 0 / -8 = -0 (fp16 0x8000, as ggml writes it), every q = 8: bytes 0x88
    memset(x, 0, sizeof x);
    cb_quantize_row_q4_0(&b, x, 32);
    EXPECT_EQ_INT(0x8000, b.d);
    for (int j = 0; j < 16; j++) EXPECT_EQ_INT(0x88, b.qs[j]);
}

/* nf4: the 16 levels of QLoRA exactly; level values quantize to themselves; nibble order. */
TEST(quant_nf4_levels_and_nibbles) {
    const float want[16] = {-1.0f, -0.6961928009986877f, -0.5250730514526367f,
                            -0.39491748809814453f, -0.28444138169288635f, -0.18477343022823334f,
                            -0.09105003625154495f, 0.0f, 0.07958029955625534f,
                            0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
                            0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};
    for (int i = 0; i < 16; i++) EXPECT_NEAR(want[i], cb_nf4_levels[i], 0);
    // value j = level (j % 16) * 2 (absmax 2, fp16 exact), value j + 32 = level (15 - j % 16) * 2
    float x[64], y[64];
    for (int j = 0; j < 32; j++) {
        x[j] = 2.0f * want[j % 16];
        x[j + 32] = 2.0f * want[15 - j % 16];
    }
    cb_block_nf4 b;
    cb_quantize_row_nf4(&b, x, 64);
    EXPECT_EQ_INT(0x4000, b.d); // 2.0
    for (int j = 0; j < 32; j++) {
        int byte = (j % 16) | ((15 - j % 16) << 4);
        if (b.qs[j] != byte) FAILF("nf4 byte %d: expected 0x%02x, got 0x%02x", j, byte, b.qs[j]);
    }
    cb_dequantize_row_nf4(y, &b, 64);
    for (int j = 0; j < 64; j++) EXPECT_NEAR(x[j], y[j], 0);
    // midpoint rule: just above the midpoint of levels 7 (0) and 8 goes up, just below down
    float mid = 0.5f * want[8];
    memset(x, 0, sizeof x);
    x[0] = 1.0f;
    x[1] = mid * 1.001f;
    x[2] = mid * 0.999f;
    cb_quantize_row_nf4(&b, x, 64);
    EXPECT_EQ_INT(15, b.qs[0] & 15);
    EXPECT_EQ_INT(8, b.qs[1] & 15);
    EXPECT_EQ_INT(7, b.qs[2] & 15);
}

/* Per-value error bounds on random blocks of varied scale, with d the exact f32 scale and
 * d16 the stored fp16 one:
 *   q8_0 |x - x^| <= d/2 + |q| |d - d16|           (+ 1e-6 d for the f32 product x * id)
 *   q4_0 |x - x^| <= |d|/2 + 8 |d - d16|, or |d| + ... where x/d >= 7.5 (clamped to 15)
 *   nf4  the index is the nearest level to x/d16; |x - x^| <= d16 * 0.15190 (half the
 *        widest gap, -1 .. -0.696)
 * Relative to the block's absmax, where the fp16 scale is a normal number (rel. error
 * 2^-11): q8_0 1/254 + 2^-11, q4_0 1/8 + 2^-11, nf4 0.15190 (1 + 2^-11) + 2^-11. Scales in
 * fp16's subnormal range (q8_0 absmax < 127 * 2^-14) lose more, within the bounds above. */
TEST(quant_error_bounds) {
    enum { NB = 400 };
    float *x = malloc(sizeof(float) * NB * 64), *y = malloc(sizeof(float) * NB * 64);
    cb_block_q8_0 *b8 = malloc(sizeof *b8 * NB * 2);
    cb_block_q4_0 *b4 = malloc(sizeof *b4 * NB * 2);
    cb_block_nf4 *bn = malloc(sizeof *bn * NB);
    for (int i = 0; i < NB; i++) {
        double scale = pow(10.0, 4.0 * (urand() * 0.5 + 0.5) - 3.0); // 1e-3 .. 10
        for (int j = 0; j < 64; j++) x[i * 64 + j] = (float)(scale * urand());
    }
    const size_t n = (size_t)NB * 64;
    double worst8 = 0, worst4 = 0, worstn = 0; // error / bound
    double rel8 = 0, rel4 = 0, reln = 0;       // error / block absmax
    cb_quantize_row_q8_0(b8, x, n);
    cb_dequantize_row_q8_0(y, b8, n);
    for (size_t bi = 0; bi < n / 32; bi++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[bi * 32 + j]));
        double d = amax / 127.0f, d16 = cb_f16_to_f32(b8[bi].d);
        for (int j = 0; j < 32; j++) {
            double err = fabs((double)x[bi * 32 + j] - y[bi * 32 + j]);
            double bound = d / 2 + fabs((double)b8[bi].qs[j]) * fabs(d - d16) + 1e-6 * d;
            worst8 = cb_test_worst(worst8, err / bound);
            if (d16 >= 0x1p-14 && err / amax > rel8) rel8 = err / amax;
        }
    }
    cb_quantize_row_q4_0(b4, x, n);
    cb_dequantize_row_q4_0(y, b4, n);
    for (size_t bi = 0; bi < n / 32; bi++) {
        float amax = 0, m = 0;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[bi * 32 + j])) { amax = fabsf(x[bi * 32 + j]); m = x[bi * 32 + j]; }
        double d = m / -8.0f, d16 = cb_f16_to_f32(b4[bi].d);
        for (int j = 0; j < 32; j++) {
            double t = x[bi * 32 + j] / d, err = fabs((double)x[bi * 32 + j] - y[bi * 32 + j]);
            double bound = (t >= 7.5 ? fabs(d) : fabs(d) / 2) + 8 * fabs(d - d16) + 1e-6 * fabs(d);
            worst4 = cb_test_worst(worst4, err / bound);
            if (fabs(d16) >= 0x1p-14 && err / amax > rel4) rel4 = err / amax;
        }
    }
    cb_quantize_row_nf4(bn, x, n);
    cb_dequantize_row_nf4(y, bn, n);
    int not_nearest = 0;
    for (size_t bi = 0; bi < n / 64; bi++) {
        float amax = 0;
        for (int j = 0; j < 64; j++) amax = fmaxf(amax, fabsf(x[bi * 64 + j]));
        float d16 = cb_f16_to_f32(bn[bi].d), id = 1.0f / d16;
        for (int j = 0; j < 64; j++) {
            int idx = j < 32 ? (bn[bi].qs[j] & 15) : (bn[bi].qs[j - 32] >> 4);
            float v = x[bi * 64 + j] * id;
            for (int l = 0; l < 16; l++)
                if (fabsf(v - cb_nf4_levels[l]) < fabsf(v - cb_nf4_levels[idx])) not_nearest++;
            double err = fabs((double)x[bi * 64 + j] - y[bi * 64 + j]);
            double bound = d16 * 0.1519036 + fabs((double)amax - d16) + 1e-6 * d16;
            worstn = cb_test_worst(worstn, err / bound);
            reln = cb_test_worst(reln, err / amax);
        }
    }
    EXPECT_EQ_INT(0, not_nearest);
    REPORT_DIFF("q8_0 error / bound", worst8, 1.0);
    REPORT_DIFF("q4_0 error / bound", worst4, 1.0);
    REPORT_DIFF("nf4 error / bound", worstn, 1.0);
    const double tol8 = 1.0 / 254 + 0x1p-11, tol4 = 1.0 / 8 + 0x1p-11;
    const double toln = 0.1519036 * (1 + 0x1p-11) + 0x1p-11;
    REPORT_DIFF("q8_0 max error / block absmax", rel8, tol8);
    REPORT_DIFF("q4_0 max error / block absmax", rel4, tol4);
    REPORT_DIFF("nf4 max error / block absmax", reln, toln);
    if (!(worst8 <= 1.0)) FAILF("q8_0 error %.3f times its bound", worst8);
    if (!(worst4 <= 1.0)) FAILF("q4_0 error %.3f times its bound", worst4);
    if (!(worstn <= 1.0)) FAILF("nf4 error %.3f times its bound", worstn);
    EXPECT(rel8 <= tol8);
    EXPECT(rel4 <= tol4);
    EXPECT(reln <= toln);
    free(x); free(y); free(b8); free(b4); free(bn);
}

/* Any n: a partial last block is stored padded with zeros; the float kinds round-trip. */
TEST(quant_rows_any_length) {
    float x[100], y[128];
    for (int j = 0; j < 100; j++) x[j] = (float)urand();
    unsigned char buf[512];
    for (int k = 0; k < CB_KV_COUNT; k++) {
        const size_t ns[] = {1, 4, 31, 33, 64, 65, 100};
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            size_t nv = ns[t];
            memset(buf, 0xAB, sizeof buf);
            cb_kv_quantize_row((cb_kv_kind)k, buf, x, nv);
            size_t bytes = cb_kv_kind_bytes((cb_kv_kind)k, nv);
            EXPECT_EQ_INT(0xAB, buf[bytes]); // nothing written past the row
            // padding values of a partial block read back as zeros
            size_t bv = (size_t)cb_kv_kind_block_values((cb_kv_kind)k), padded = (nv + bv - 1) / bv * bv;
            cb_kv_dequantize_row((cb_kv_kind)k, y, buf, padded);
            for (size_t j = nv; j < padded; j++)
                if (y[j] != 0.0f) FAILF("%s n=%zu: padding value %zu is %g", cb_kv_kind_name((cb_kv_kind)k), nv, j, y[j]);
            float z[100];
            cb_kv_dequantize_row((cb_kv_kind)k, z, buf, nv);
            double tol = k == CB_KV_F32 ? 0 : k == CB_KV_F16 ? 1.0 / 2048 : k == CB_KV_BF16 ? 1.0 / 256 : 0.2;
            for (size_t j = 0; j < nv; j++)
                if (fabs(z[j] - x[j]) > tol * fabs(x[j]) + (k >= CB_KV_Q8_0 ? tol : 0))
                    FAILF("%s n=%zu: value %zu: %g vs %g", cb_kv_kind_name((cb_kv_kind)k), nv, j, z[j], x[j]);
        }
    }
}

/* The fp16 and bf16 rows (vectorised loops) give the scalar converters' bits on every sign
 * and exponent and the low bits that decide the rounding (0, 1, just below, at and just past
 * the half-way point, all ones): ties to even, overflow to inf, f16 subnormals, NaN payloads. */
TEST(quant_float_rows_match_converters) {
    enum { ROW = 4096 };
    static float x[ROW];
    static uint16_t h[ROW];
    const uint32_t lows16[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff};        // f16: 13 dropped bits
    const uint32_t lows16b[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff};      // bf16: 16 dropped bits
    for (int kind = 0; kind < 2; kind++) {
        const cb_kv_kind k = kind ? CB_KV_BF16 : CB_KV_F16;
        const int shift = kind ? 16 : 13;
        const uint32_t *lows = kind ? lows16b : lows16;
        long bad = 0, n = 0;
        uint32_t first_bad = 0;
        for (uint64_t top = 0; top < (1ull << (32 - shift)); top += ROW / 6) {
            int cnt = 0;
            for (uint64_t t = top; t < top + ROW / 6 && t < (1ull << (32 - shift)); t++)
                for (int l = 0; l < 6; l++) {
                    const uint32_t bits = (uint32_t)(t << shift) | lows[l];
                    memcpy(&x[cnt++], &bits, 4);
                }
            cb_kv_quantize_row(k, h, x, (size_t)cnt);
            for (int i = 0; i < cnt; i++) {
                const uint16_t want = kind ? cb_f32_to_bf16(x[i]) : cb_f32_to_f16(x[i]);
                if (h[i] != want && bad++ == 0) memcpy(&first_bad, &x[i], 4);
            }
            n += cnt;
        }
        if (bad) FAILF("%s: %ld of %ld patterns differ from the scalar converter (first 0x%08x)", cb_kv_kind_name(k), bad,
                       n, first_bad);
    }
}

/* dot, axpy, dot_m, axpy_m of every kind against double sums over the dequantised row. */
TEST(quant_kernels_against_reference) {
    enum { NMAX = 300, MMAX = 11 };
    float x[MMAX * NMAX], row_f[NMAX], deq[NMAX + 64];
    static unsigned char row[NMAX * 4];
    const size_t ns[] = {1, 4, 8, 16, 31, 32, 33, 64, 100, 128, 200, 300};
    const int ms[] = {1, 2, 3, 8, 9, 11};
    double worst = 0;
    for (int k = 0; k < CB_KV_COUNT; k++) {
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            size_t n = ns[t];
            for (size_t j = 0; j < n; j++) row_f[j] = (float)urand() * 3;
            for (size_t j = 0; j < MMAX * n; j++) x[j] = (float)urand();
            cb_kv_quantize_row((cb_kv_kind)k, row, row_f, n);
            cb_kv_dequantize_row((cb_kv_kind)k, deq, row, n);
            for (int mi = 0; mi < (int)(sizeof ms / sizeof ms[0]); mi++) {
                int m = ms[mi];
                float out[MMAX];
                cb_kv_dot_m((cb_kv_kind)k, out, row, x, n, n, m);
                for (int i = 0; i < m; i++) {
                    double ref = 0, mag = 0;
                    for (size_t j = 0; j < n; j++) {
                        ref += (double)deq[j] * x[i * n + j];
                        mag += fabs((double)deq[j] * x[i * n + j]);
                    }
                    double e1 = fabs(out[i] - ref) / (mag + 1e-30);
                    double e2 = fabs(cb_kv_dot((cb_kv_kind)k, row, x + i * n, n) - ref) / (mag + 1e-30);
                    worst = cb_test_worst(worst, e1);
                    worst = cb_test_worst(worst, e2);
                    if (e1 > 1e-6 || e2 > 1e-6)
                        FAILF("%s dot n=%zu m=%d: rel err %.3g / %.3g", cb_kv_kind_name((cb_kv_kind)k), n, m, e1, e2);
                }
                // axpy: y_i = x_i + a_i row
                float a[MMAX], yv[MMAX * NMAX];
                for (int i = 0; i < m; i++) a[i] = (float)urand();
                memcpy(yv, x, sizeof(float) * m * n);
                if (m == 1) cb_kv_axpy((cb_kv_kind)k, yv, a[0], row, n);
                else cb_kv_axpy_m((cb_kv_kind)k, yv, n, a, row, n, m);
                for (int i = 0; i < m; i++)
                    for (size_t j = 0; j < n; j++) {
                        double ref = x[i * n + j] + (double)a[i] * deq[j];
                        double e = fabs(yv[i * n + j] - ref) / (fabs(x[i * n + j]) + fabs(a[i] * deq[j]) + 1e-30);
                        worst = cb_test_worst(worst, e);
                        if (!(e <= 1e-6)) FAILF("%s axpy n=%zu m=%d j=%zu: rel err %.3g", cb_kv_kind_name((cb_kv_kind)k), n, m, j, e);
                    }
            }
        }
    }
    REPORT_DIFF("kernels vs double (relative to sum |a b|)", worst, 1e-6);
}
