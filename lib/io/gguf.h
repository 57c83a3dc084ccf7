/* gguf.h: GGUF v3 files (llama.cpp's model format) written from a caramba model: a small
 * writer (typed key/value pairs, tensors converted row by row as the file is written) and
 * the export of a Llama-shaped model directory with its tokenizer, so a model trained or
 * upcycled here can be served by llama.cpp-based tools.
 *
 * Layout written (GGUF v3, little-endian): "GGUF", version 3, tensor count (u64), key/value
 * count (u64); the pairs (key: u64 length + bytes; u32 type; value); the tensor infos (name,
 * u32 n_dims, u64 dims innermost first, u32 ggml type, u64 offset from the data start); zero
 * padding to CB_GGUF_ALIGN; each tensor's data, padded to CB_GGUF_ALIGN. */
#ifndef CB_IO_GGUF_H
#define CB_IO_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CB_GGUF_ALIGN 32 /* general.alignment's default */

/* ggml's tensor types that the writer converts f32 rows to (ggml's numbering). q8_0 and
 * q4_0 blocks are tensor/quant.h's, byte for byte. */
typedef enum cb_gguf_type {
    CB_GGUF_F32 = 0,
    CB_GGUF_F16 = 1,
    CB_GGUF_Q4_0 = 2,
    CB_GGUF_Q8_0 = 8,
    CB_GGUF_BF16 = 30,
} cb_gguf_type;

/* "f32", "f16", "bf16", "q8_0", "q4_0" -> *t; 0 for another name. */
int cb_gguf_type_from_name(const char *name, cb_gguf_type *t);
const char *cb_gguf_type_name(cb_gguf_type t);
/* Bytes of one row of cols values stored as t (cols a multiple of 32 for q8_0, q4_0). */
size_t cb_gguf_row_bytes(cb_gguf_type t, size_t cols);

/* GGUF value types (the key/value section). */
enum {
    CB_GGUF_V_UINT32 = 4,
    CB_GGUF_V_INT32 = 5,
    CB_GGUF_V_FLOAT32 = 6,
    CB_GGUF_V_BOOL = 7,
    CB_GGUF_V_STRING = 8,
    CB_GGUF_V_ARRAY = 9,
};

typedef struct cb_gguf_tensor {
    char *name;
    cb_gguf_type type;
    uint64_t rows, cols;   /* dims written as (cols, rows); rows 1 and n_dims 1 for a vector */
    int n_dims;
    const float *data;     /* (rows, cols) f32, converted when written */
    float *owned;          /* what the writer frees (a permuted copy); NULL for a view */
    uint64_t offset;       /* from the start of the data section */
} cb_gguf_tensor;

typedef struct cb_gguf_writer {
    unsigned char *kv;     /* the key/value section as it will be written */
    size_t kv_len, kv_cap;
    uint64_t n_kv;
    cb_gguf_tensor *t;
    int n_t, cap_t;
    int failed;            /* an allocation failed: cb_gguf_write reports it */
} cb_gguf_writer;

void cb_gguf_writer_init(cb_gguf_writer *w);
void cb_gguf_writer_free(cb_gguf_writer *w);
void cb_gguf_kv_u32(cb_gguf_writer *w, const char *key, uint32_t v);
void cb_gguf_kv_f32(cb_gguf_writer *w, const char *key, float v);
void cb_gguf_kv_bool(cb_gguf_writer *w, const char *key, int v);
void cb_gguf_kv_str(cb_gguf_writer *w, const char *key, const char *v);
/* An array of n strings, string i of len[i] bytes (not NUL-terminated). */
void cb_gguf_kv_str_array(cb_gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n);
void cb_gguf_kv_i32_array(cb_gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* A tensor of rows x cols f32 values at data (kept until cb_gguf_write; owned: freed by
 * the writer), stored as type; n_dims 1 (rows must be 1) or 2. */
void cb_gguf_add_tensor(cb_gguf_writer *w, const char *name, cb_gguf_type type, int n_dims, uint64_t rows,
                        uint64_t cols, const float *data, float *owned);
/* The whole file at path, atomically (temp then rename). */
int cb_gguf_write(cb_gguf_writer *w, const char *path, cb_error *e);

/* Export the Llama-shaped model of model_dir (embed -> L x [RMSNorm, attention with RoPE,
 * RMSNorm, SwiGLU] -> RMSNorm -> head, io/hf_llama.h's check) as out_dir/model.gguf,
 * the directory written atomically: general.architecture "llama", the llama.*
 * hyperparameters, the model's tokenizer as tokenizer.ggml.* ("gpt2" byte-level BPE:
 * vocabulary, merges, added tokens; a model without a tokenizer gets its 256 byte tokens
 * and placeholder names for the other ids), weight matrices as type (a matrix whose rows
 * are not whole 32-value blocks as f16), norms as f32. Q and K rows are permuted from
 * caramba's rotate-half RoPE layout (Hugging Face's) to ggml's interleaved pairs, as
 * llama.cpp's convert_hf_to_gguf.py does. Anything not Llama-shaped (DBA attention, biases,
 * another block order) is CB_E_INVALID naming what differs. */
int cb_gguf_export_llama(const char *model_dir, const char *out_dir, cb_gguf_type type, cb_error *e);

#endif
