/* dtype.c: the table of element types, and the bulk float conversions
 * (plain loops over the inline scalar conversions, which the compiler vectorises). */
#include "tensor/dtype.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "caramba reads and writes little-endian tensor data in place: a little-endian host is required"
#endif

static const struct {
    const char *name;  /* safetensors */
    const char *numpy; /* numpy descr, little-endian */
    size_t size;
} dtype_table[CB_DTYPE_COUNT] = {
    [CB_DTYPE_F32] = {"F32", "<f4", 4},
    [CB_DTYPE_F16] = {"F16", "<f2", 2},
    [CB_DTYPE_BF16] = {"BF16", NULL, 2},
    [CB_DTYPE_F64] = {"F64", "<f8", 8},
    [CB_DTYPE_I8] = {"I8", "|i1", 1},
    [CB_DTYPE_U8] = {"U8", "|u1", 1},
    [CB_DTYPE_I16] = {"I16", "<i2", 2},
    [CB_DTYPE_U16] = {"U16", "<u2", 2},
    [CB_DTYPE_I32] = {"I32", "<i4", 4},
    [CB_DTYPE_U32] = {"U32", "<u4", 4},
    [CB_DTYPE_I64] = {"I64", "<i8", 8},
    [CB_DTYPE_U64] = {"U64", "<u8", 8},
    [CB_DTYPE_BOOL] = {"BOOL", "|b1", 1},
};

int cb_dtype_valid(int d) { return d >= 0 && d < CB_DTYPE_COUNT; }

size_t cb_dtype_size(enum cb_dtype d) { return cb_dtype_valid((int)d) ? dtype_table[d].size : 0; }

const char *cb_dtype_name(enum cb_dtype d) { return cb_dtype_valid((int)d) ? dtype_table[d].name : NULL; }

const char *cb_dtype_numpy_name(enum cb_dtype d) {
    return cb_dtype_valid((int)d) ? dtype_table[d].numpy : NULL;
}

int cb_dtype_from_name(const char *name, enum cb_dtype *out) {
    for (int d = 0; d < CB_DTYPE_COUNT; d++) {
        if (strcmp(name, dtype_table[d].name) == 0) {
            *out = (enum cb_dtype)d;
            return 1;
        }
    }
    return 0;
}

int cb_dtype_from_numpy_name(const char *descr, enum cb_dtype *out) {
    char order = descr[0];
    const char *kind = descr;
    if (order == '<' || order == '|' || order == '=') kind = descr + 1;
    else order = 0;
    for (int d = 0; d < CB_DTYPE_COUNT; d++) {
        const char *np = dtype_table[d].numpy;
        if (!np || strcmp(kind, np + 1) != 0) continue;
        /* '|' (no byte order) is only right for one-byte types; a bare kind too */
        if (dtype_table[d].size > 1 && order != '<' && order != '=') return 0;
        *out = (enum cb_dtype)d;
        return 1;
    }
    return 0;
}

/* Below this many elements a thread team costs more than it saves. */
#define PARALLEL_MIN (1u << 18)

void cb_bf16_to_f32_n(float *restrict dst, const uint16_t *restrict src, size_t n) {
    #pragma omp parallel for simd if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = cb_bf16_to_f32(src[i]);
}

void cb_f32_to_bf16_n(uint16_t *restrict dst, const float *restrict src, size_t n) {
    #pragma omp parallel for simd if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = cb_f32_to_bf16(src[i]);
}

void cb_f16_to_f32_n(float *restrict dst, const uint16_t *restrict src, size_t n) {
    #pragma omp parallel for simd if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = cb_f16_to_f32(src[i]);
}

void cb_f32_to_f16_n(uint16_t *restrict dst, const float *restrict src, size_t n) {
    #pragma omp parallel for simd if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = cb_f32_to_f16(src[i]);
}

void cb_f64_to_f32_n(float *restrict dst, const double *restrict src, size_t n) {
    #pragma omp parallel for simd if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}
