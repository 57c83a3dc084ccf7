/* test_dtype.c: dtype table, and the f16/bf16 conversions against references
 * computed independently in double precision (exhaustive where it is cheap). */
#include "test.h"

#include <stdint.h>
#include <stdlib.h>
#include "tensor/dtype.h"

TEST(names_sizes_round_trip) {
    static const struct { enum cb_dtype d; const char *name, *numpy; size_t size; } want[] = {
        {CB_DTYPE_F32, "F32", "<f4", 4},  {CB_DTYPE_F16, "F16", "<f2", 2},  {CB_DTYPE_BF16, "BF16", NULL, 2},
        {CB_DTYPE_F64, "F64", "<f8", 8},  {CB_DTYPE_I8, "I8", "|i1", 1},    {CB_DTYPE_U8, "U8", "|u1", 1},
        {CB_DTYPE_I16, "I16", "<i2", 2},  {CB_DTYPE_U16, "U16", "<u2", 2},  {CB_DTYPE_I32, "I32", "<i4", 4},
        {CB_DTYPE_U32, "U32", "<u4", 4},  {CB_DTYPE_I64, "I64", "<i8", 8},  {CB_DTYPE_U64, "U64", "<u8", 8},
        {CB_DTYPE_BOOL, "BOOL", "|b1", 1},
    };
    EXPECT_EQ_INT(13, CB_DTYPE_COUNT);
    EXPECT_EQ_INT(sizeof want / sizeof want[0], CB_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        EXPECT_EQ_INT((int)i, want[i].d); /* values are stable: files may store them */
        EXPECT_EQ_STR(want[i].name, cb_dtype_name(want[i].d));
        EXPECT_EQ_INT(want[i].size, cb_dtype_size(want[i].d));
        enum cb_dtype got = CB_DTYPE_COUNT;
        EXPECT(cb_dtype_from_name(want[i].name, &got) && got == want[i].d);
        if (want[i].numpy) {
            EXPECT_EQ_STR(want[i].numpy, cb_dtype_numpy_name(want[i].d));
            got = CB_DTYPE_COUNT;
            EXPECT(cb_dtype_from_numpy_name(want[i].numpy, &got) && got == want[i].d);
        } else {
            EXPECT(cb_dtype_numpy_name(want[i].d) == NULL);
        }
    }
    enum cb_dtype d;
    EXPECT(!cb_dtype_from_name("f32", &d));
    EXPECT(!cb_dtype_from_name("F8_E4M3", &d));
    EXPECT(!cb_dtype_from_name("", &d));
    EXPECT(!cb_dtype_valid(-1) && !cb_dtype_valid(CB_DTYPE_COUNT));
    EXPECT_EQ_INT(0, cb_dtype_size((enum cb_dtype)CB_DTYPE_COUNT));
    EXPECT(cb_dtype_name((enum cb_dtype)99) == NULL);
    /* numpy: byte order matters for multi-byte types only */
    EXPECT(cb_dtype_from_numpy_name("u1", &d) && d == CB_DTYPE_U8);
    EXPECT(cb_dtype_from_numpy_name("<u2", &d) && d == CB_DTYPE_U16);
    EXPECT(cb_dtype_from_numpy_name("=i4", &d) && d == CB_DTYPE_I32);
    EXPECT(!cb_dtype_from_numpy_name(">u2", &d));
    EXPECT(!cb_dtype_from_numpy_name("|u2", &d));
    EXPECT(!cb_dtype_from_numpy_name("u2", &d));
    EXPECT(!cb_dtype_from_numpy_name("<f16", &d));
}

/* Value of an f16 pattern by its definition, in double (exact). */
static double f16_reference(uint16_t h) {
    int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    double sign = (h & 0x8000) ? -1.0 : 1.0;
    if (exponent == 0x1f) return mantissa ? NAN : sign * INFINITY;
    if (exponent == 0) return sign * ldexp(mantissa, -24);
    return sign * ldexp(1024 + mantissa, exponent - 25);
}

TEST(f16_to_f32_exhaustive) {
    static float bulk[65536];
    static uint16_t patterns[65536];
    for (uint32_t h = 0; h < 65536; h++) patterns[h] = (uint16_t)h;
    cb_f16_to_f32_n(bulk, patterns, 65536);
    int bad = 0;
    for (uint32_t h = 0; h < 65536 && bad < 5; h++) {
        float got = cb_f16_to_f32((uint16_t)h);
        double want = f16_reference((uint16_t)h);
        uint32_t bits = cb_f32_bits(got);
        if (isnan(want)) {
            /* NaN keeps sign and payload, placed in the top of the f32 mantissa */
            uint32_t want_bits = ((h & 0x8000u) << 16) | 0x7f800000u | ((h & 0x3ffu) << 13);
            if (bits != want_bits) { FAILF("f16 %04x: NaN bits %08x, expected %08x", h, bits, want_bits); bad++; }
        } else if ((double)got != want || !signbit(got) != !signbit(want)) {
            FAILF("f16 %04x: got %.9g, expected %.9g", h, got, want);
            bad++;
        }
        if (cb_f32_bits(bulk[h]) != bits) { FAILF("f16 %04x: bulk %08x != scalar %08x", h, cb_f32_bits(bulk[h]), bits); bad++; }
    }
}

TEST(f16_round_trip_exhaustive) {
    static float values[65536];
    static uint16_t patterns[65536], back[65536];
    for (uint32_t h = 0; h < 65536; h++) patterns[h] = (uint16_t)h;
    cb_f16_to_f32_n(values, patterns, 65536);
    cb_f32_to_f16_n(back, values, 65536);
    int bad = 0;
    for (uint32_t h = 0; h < 65536 && bad < 5; h++) {
        uint16_t scalar = cb_f32_to_f16(cb_f16_to_f32((uint16_t)h));
        if (scalar != h) { FAILF("f16 %04x -> f32 -> f16 gives %04x", h, scalar); bad++; }
        if (back[h] != h) { FAILF("f16 %04x bulk round trip gives %04x", h, back[h]); bad++; }
    }
}

/* f32 -> f16 by definition: the nearest f16 value, ties to the even pattern;
 * |x| >= 65520 (the midpoint between 65504 and 2^16) is inf. */
static uint16_t f16_from_f32_reference(float x) {
    if (isnan(x)) return 0x7e00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7c00;
    /* positive finite patterns 0..0x7bff are increasing; find the last <= a */
    uint32_t lo = 0, hi = 0x7bff;
    while (lo < hi) {
        uint32_t mid = (lo + hi + 1) / 2;
        if (f16_reference((uint16_t)mid) <= a) lo = mid; else hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff; /* a in [65504, 65520) */
    double below = f16_reference((uint16_t)lo), above = f16_reference((uint16_t)(lo + 1));
    if (a - below < above - a) return sign | (uint16_t)lo;
    if (a - below > above - a) return sign | (uint16_t)(lo + 1);
    return sign | (uint16_t)((lo & 1) ? lo + 1 : lo);
}

TEST(f32_to_f16_rounds_to_nearest_even) {
    int bad = 0;
    long checked = 0;
    /* every midpoint between neighbouring f16 values and the f32 values either side */
    for (uint32_t h = 0; h < 0x7bff && bad < 5; h++) {
        float mid = (float)((f16_reference((uint16_t)h) + f16_reference((uint16_t)(h + 1))) / 2);
        float cases[3] = {mid, nextafterf(mid, 0.0f), nextafterf(mid, INFINITY)};
        for (int k = 0; k < 3; k++) {
            for (int s = 0; s < 2; s++) {
                float x = s ? -cases[k] : cases[k];
                uint16_t got = cb_f32_to_f16(x), want = f16_from_f32_reference(x);
                checked++;
                if (got != want) { FAILF("f32 %.9g (%08x): f16 %04x, expected %04x", x, cb_f32_bits(x), got, want); bad++; }
            }
        }
    }
    /* a sweep of f32 patterns from below the smallest subnormal past the f16 range */
    for (uint32_t bits = 0x32000000u; bits < 0x48000000u && bad < 5; bits += 997) {
        float x = cb_f32_from_bits(bits);
        uint16_t got = cb_f32_to_f16(x), want = f16_from_f32_reference(x);
        checked++;
        if (got != want) { FAILF("f32 %.9g (%08x): f16 %04x, expected %04x", x, bits, got, want); bad++; }
    }
    fprintf(stderr, "  %ld f32 values checked against the f16 reference\n", checked);
    EXPECT_EQ_INT(0x7c00, cb_f32_to_f16(INFINITY));
    EXPECT_EQ_INT(0xfc00, cb_f32_to_f16(-INFINITY));
    EXPECT_EQ_INT(0x7c00, cb_f32_to_f16(1e30f));
    EXPECT_EQ_INT(0x7bff, cb_f32_to_f16(65519.996f));
    EXPECT_EQ_INT(0x7c00, cb_f32_to_f16(65520.0f));
    EXPECT_EQ_INT(0x0001, cb_f32_to_f16(5.9604645e-8f));  /* smallest subnormal */
    EXPECT_EQ_INT(0x0000, cb_f32_to_f16(2.9802322e-8f));  /* half of it: tie to even, zero */
    EXPECT_EQ_INT(0x0001, cb_f32_to_f16(2.9802326e-8f));  /* just above half */
    EXPECT_EQ_INT(0x8000, cb_f32_to_f16(-0.0f));
    EXPECT_EQ_INT(0x8000, cb_f32_to_f16(-1e-30f));
    EXPECT_EQ_INT(0x3c00, cb_f32_to_f16(1.0f));
    EXPECT_EQ_INT(0x2e66, cb_f32_to_f16(0.1f));
    /* NaN stays NaN with its sign; a payload lost to the narrowing becomes quiet */
    EXPECT_EQ_INT(0x7e00, cb_f32_to_f16(cb_f32_from_bits(0x7fc00000u)));
    EXPECT_EQ_INT(0xfe00, cb_f32_to_f16(cb_f32_from_bits(0xffc00000u)));
    EXPECT_EQ_INT(0x7e00, cb_f32_to_f16(cb_f32_from_bits(0x7f800001u)));
}

/* f32 -> bf16 by definition: the nearer of the two bf16 values around x, ties to even. */
static uint16_t bf16_reference(float x) {
    uint32_t bits = cb_f32_bits(x);
    uint16_t down = (uint16_t)(bits >> 16), up = (uint16_t)(down + 1);
    double a = (double)x, d = (double)cb_bf16_to_f32(down);
    /* `up` of the largest finite value is inf: measure it as 2^128 */
    double u = (up & 0x7fff) == 0x7f80 ? ((up & 0x8000) ? -ldexp(1, 128) : ldexp(1, 128)) : (double)cb_bf16_to_f32(up);
    if ((bits & 0xffff) == 0) return down;
    if (fabs(a - d) < fabs(u - a)) return down;
    if (fabs(a - d) > fabs(u - a)) return up;
    return (down & 1) ? up : down;
}

TEST(bf16_rounding) {
    /* ties and near-ties around 1.0, where the bf16 ulp is 2^-7 */
    EXPECT_EQ_INT(0x3f80, cb_f32_to_bf16(1.00390625f));  /* 1 + ulp/2: tie, to even 1.0 */
    EXPECT_EQ_INT(0x3f82, cb_f32_to_bf16(1.01171875f));  /* 1 + 3ulp/2: tie, to even 1 + 2ulp */
    EXPECT_EQ_INT(0x3f81, cb_f32_to_bf16(nextafterf(1.00390625f, 2.0f)));
    EXPECT_EQ_INT(0x3f80, cb_f32_to_bf16(nextafterf(1.00390625f, 0.0f)));
    EXPECT_EQ_INT(0xbf80, cb_f32_to_bf16(-1.00390625f));
    EXPECT_EQ_INT(0x3dcd, cb_f32_to_bf16(0.1f));
    EXPECT_EQ_INT(0x7f7f, cb_f32_to_bf16(cb_bf16_to_f32(0x7f7f)));    /* largest finite stays */
    EXPECT_EQ_INT(0x7f80, cb_f32_to_bf16(3.4028235e38f));             /* FLT_MAX rounds up to inf */
    EXPECT_EQ_INT(0xff80, cb_f32_to_bf16(-INFINITY));
    EXPECT_EQ_INT(0x8000, cb_f32_to_bf16(-0.0f));
    EXPECT_EQ_INT(0x0001, cb_f32_to_bf16(cb_f32_from_bits(0x00012345u))); /* subnormal */
    /* NaN: stays NaN, sign kept, quiet; never rounds into inf */
    EXPECT_EQ_INT(0x7fc0, cb_f32_to_bf16(cb_f32_from_bits(0x7fc00000u)));
    EXPECT_EQ_INT(0xffc0, cb_f32_to_bf16(cb_f32_from_bits(0xffc00000u)));
    EXPECT_EQ_INT(0x7fc0, cb_f32_to_bf16(cb_f32_from_bits(0x7f800001u)));
    EXPECT_EQ_INT(0x7fff, cb_f32_to_bf16(cb_f32_from_bits(0x7fffffffu)));

    /* a sweep over all f32 exponents, against the definition */
    int bad = 0;
    long checked = 0;
    for (uint64_t bits = 0; bits <= 0xffffffffu && bad < 5; bits += 65521) {
        float x = cb_f32_from_bits((uint32_t)bits);
        if (isnan(x)) continue;
        uint16_t got = cb_f32_to_bf16(x), want = bf16_reference(x);
        checked++;
        if (got != want) { FAILF("f32 %08x: bf16 %04x, expected %04x", (unsigned)bits, got, want); bad++; }
    }
    /* every exact tie x = bf16 value + half an ulp, both signs */
    for (uint32_t h = 0; h < 0x7f80 && bad < 5; h++) {
        for (int s = 0; s < 2; s++) {
            float x = cb_f32_from_bits((s ? 0x80000000u : 0) | ((uint32_t)h << 16) | 0x8000u);
            uint16_t got = cb_f32_to_bf16(x), want = bf16_reference(x);
            checked++;
            if (got != want) { FAILF("f32 %08x: bf16 %04x, expected %04x", cb_f32_bits(x), got, want); bad++; }
        }
    }
    fprintf(stderr, "  %ld f32 values checked against the bf16 reference\n", checked);
}

TEST(bf16_round_trip_exhaustive) {
    static uint16_t patterns[65536], back[65536];
    static float values[65536];
    for (uint32_t h = 0; h < 65536; h++) patterns[h] = (uint16_t)h;
    cb_bf16_to_f32_n(values, patterns, 65536);
    cb_f32_to_bf16_n(back, values, 65536);
    int bad = 0;
    for (uint32_t h = 0; h < 65536 && bad < 5; h++) {
        if (cb_f32_bits(values[h]) != h << 16) { FAILF("bf16 %04x: f32 %08x", h, cb_f32_bits(values[h])); bad++; }
        int is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        uint16_t want = is_nan ? (uint16_t)(h | 0x40) : (uint16_t)h; /* NaNs come back quiet */
        if (back[h] != want) { FAILF("bf16 %04x round trip gives %04x, expected %04x", h, back[h], want); bad++; }
    }
}

TEST(f64_to_f32_bulk) {
    double src[5] = {0.1, -2.5, 1e300, 1e-50, 3.0};
    float dst[5];
    cb_f64_to_f32_n(dst, src, 5);
    EXPECT(dst[0] == 0.1f && dst[1] == -2.5f && isinf(dst[2]) && dst[3] == 0.0f && dst[4] == 3.0f);
}

TEST(bulk_conversions_large_match_scalar) {
    /* above the threshold where the loops run on several threads */
    size_t n = (1u << 18) + 37;
    float *f = malloc(n * sizeof *f), *back = malloc(n * sizeof *back);
    uint16_t *h = malloc(n * sizeof *h), *b = malloc(n * sizeof *b);
    if (!f || !back || !h || !b) { FAILF("out of memory"); free(f); free(back); free(h); free(b); return; }
    for (size_t i = 0; i < n; i++) f[i] = (float)((double)i * 0.37 - 40000.0);
    cb_f32_to_f16_n(h, f, n);
    cb_f32_to_bf16_n(b, f, n);
    int bad = 0;
    for (size_t i = 0; i < n && bad < 5; i++) {
        if (h[i] != cb_f32_to_f16(f[i]) || b[i] != cb_f32_to_bf16(f[i])) { FAILF("element %zu differs", i); bad++; }
    }
    cb_f16_to_f32_n(back, h, n);
    double max_rel = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(f[i]) > 1) max_rel = cb_test_worst(max_rel, fabs(back[i] - f[i]) / fabs(f[i]));
    REPORT_DIFF("f16 round trip, relative", max_rel, ldexp(1, -11));
    EXPECT(max_rel <= ldexp(1, -11));
    free(f); free(back); free(h); free(b);
}
