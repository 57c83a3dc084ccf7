/* gguf.c: the GGUF v3 writer and the Llama export (see gguf.h for the layout and the
 * choices). Tensors are converted one row at a time as the file is written, so an export
 * holds no second copy of the model beyond the permuted Q and K matrices. */
#include "io/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/atomic_dir.h"
#include "core/atomic_file.h"
#include "infer/model_dir.h"
#include "io/hf_llama.h"
#include "io/model_dir.h"
#include "layers/rope.h"
#include "model/program.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

/* ---- types ---------------------------------------------------------------------------- */

static const struct {
    cb_gguf_type t;
    const char *name;
    uint32_t file_type; /* general.file_type of a file whose matrices are all this type */
} TYPES[] = {{CB_GGUF_F32, "f32", 0}, {CB_GGUF_F16, "f16", 1}, {CB_GGUF_BF16, "bf16", 32},
             {CB_GGUF_Q8_0, "q8_0", 7}, {CB_GGUF_Q4_0, "q4_0", 2}};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

int cb_gguf_type_from_name(const char *name, cb_gguf_type *t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(name, TYPES[i].name) == 0) {
            *t = TYPES[i].t;
            return 1;
        }
    return 0;
}

const char *cb_gguf_type_name(cb_gguf_type t) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (TYPES[i].t == t) return TYPES[i].name;
    return "?";
}

size_t cb_gguf_row_bytes(cb_gguf_type t, size_t cols) {
    switch (t) {
    case CB_GGUF_F32: return cols * 4;
    case CB_GGUF_F16:
    case CB_GGUF_BF16: return cols * 2;
    case CB_GGUF_Q8_0: return cols / CB_QK8_0 * sizeof(cb_block_q8_0);
    case CB_GGUF_Q4_0: return cols / CB_QK4_0 * sizeof(cb_block_q4_0);
    }
    return 0;
}

/* ---- writer ----------------------------------------------------------------------------- */

void cb_gguf_writer_init(cb_gguf_writer *w) { memset(w, 0, sizeof *w); }

void cb_gguf_writer_free(cb_gguf_writer *w) {
    free(w->kv);
    for (int i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].owned);
    }
    free(w->t);
    memset(w, 0, sizeof *w);
}

static void put(cb_gguf_writer *w, const void *p, size_t n) {
    if (w->failed) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n) cap *= 2;
        unsigned char *k = realloc(w->kv, cap);
        if (!k) {
            w->failed = 1;
            return;
        }
        w->kv = k;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}
/* Integers are written little-endian (the x86-64 and arm64 hosts caramba builds on). */
static void put_u32(cb_gguf_writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(cb_gguf_writer *w, uint64_t v) { put(w, &v, 8); }
static void put_str(cb_gguf_writer *w, const char *s, size_t n) {
    put_u64(w, n);
    put(w, s, n);
}
static void put_key(cb_gguf_writer *w, const char *key, uint32_t type) {
    put_str(w, key, strlen(key));
    put_u32(w, type);
    w->n_kv++;
}

void cb_gguf_kv_u32(cb_gguf_writer *w, const char *key, uint32_t v) {
    put_key(w, key, CB_GGUF_V_UINT32);
    put_u32(w, v);
}
void cb_gguf_kv_f32(cb_gguf_writer *w, const char *key, float v) {
    put_key(w, key, CB_GGUF_V_FLOAT32);
    put(w, &v, 4);
}
void cb_gguf_kv_bool(cb_gguf_writer *w, const char *key, int v) {
    const uint8_t b = v != 0;
    put_key(w, key, CB_GGUF_V_BOOL);
    put(w, &b, 1);
}
void cb_gguf_kv_str(cb_gguf_writer *w, const char *key, const char *v) {
    put_key(w, key, CB_GGUF_V_STRING);
    put_str(w, v, strlen(v));
}
void cb_gguf_kv_str_array(cb_gguf_writer *w, const char *key, const char *const *s, const size_t *len, size_t n) {
    put_key(w, key, CB_GGUF_V_ARRAY);
    put_u32(w, CB_GGUF_V_STRING);
    put_u64(w, n);
    for (size_t i = 0; i < n; i++) put_str(w, s[i], len[i]);
}
void cb_gguf_kv_i32_array(cb_gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    put_key(w, key, CB_GGUF_V_ARRAY);
    put_u32(w, CB_GGUF_V_INT32);
    put_u64(w, n);
    put(w, v, n * 4);
}

void cb_gguf_add_tensor(cb_gguf_writer *w, const char *name, cb_gguf_type type, int n_dims, uint64_t rows,
                        uint64_t cols, const float *data, float *owned) {
    if (w->n_t == w->cap_t) {
        const int cap = w->cap_t ? 2 * w->cap_t : 64;
        cb_gguf_tensor *t = realloc(w->t, sizeof *t * (size_t)cap);
        if (!t) {
            w->failed = 1;
            free(owned);
            return;
        }
        w->t = t;
        w->cap_t = cap;
    }
    cb_gguf_tensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->type = type;
    t->n_dims = n_dims;
    t->rows = rows;
    t->cols = cols;
    t->data = data;
    t->owned = owned;
    if (!t->name) w->failed = 1;
}

static uint64_t align_up(uint64_t x) { return (x + CB_GGUF_ALIGN - 1) / CB_GGUF_ALIGN * CB_GGUF_ALIGN; }

static void convert_row(void *dst, cb_gguf_type type, const float *src, size_t cols) {
    switch (type) {
    case CB_GGUF_F32: memcpy(dst, src, cols * 4); break;
    case CB_GGUF_F16:
        for (size_t j = 0; j < cols; j++) ((uint16_t *)dst)[j] = cb_f32_to_f16(src[j]);
        break;
    case CB_GGUF_BF16:
        for (size_t j = 0; j < cols; j++) ((uint16_t *)dst)[j] = cb_f32_to_bf16(src[j]);
        break;
    case CB_GGUF_Q8_0: cb_quantize_row_q8_0(dst, src, cols); break;
    case CB_GGUF_Q4_0: cb_quantize_row_q4_0(dst, src, cols); break;
    }
}

int cb_gguf_write(cb_gguf_writer *w, const char *path, cb_error *e) {
    if (w->failed) return cb_fail(e, CB_E_RUNTIME, path, "out of memory building the GGUF header");
    // the tensor infos go into a second buffer, after the pairs
    cb_gguf_writer info;
    cb_gguf_writer_init(&info);
    uint64_t off = 0;
    size_t max_row = 0;
    for (int i = 0; i < w->n_t; i++) {
        cb_gguf_tensor *t = &w->t[i];
        t->offset = off;
        put_str(&info, t->name, strlen(t->name));
        put_u32(&info, (uint32_t)t->n_dims);
        put_u64(&info, t->cols);
        if (t->n_dims == 2) put_u64(&info, t->rows);
        put_u32(&info, (uint32_t)t->type);
        put_u64(&info, t->offset);
        const size_t rb = cb_gguf_row_bytes(t->type, t->cols);
        max_row = rb > max_row ? rb : max_row;
        off = align_up(off + rb * t->rows);
    }
    unsigned char *row = malloc(max_row ? max_row : 1);
    if (info.failed || !row) {
        cb_gguf_writer_free(&info);
        free(row);
        return cb_fail(e, CB_E_RUNTIME, path, "out of memory building the GGUF header");
    }
    cb_atomic_file af;
    int rc = cb_atomic_open(&af, path, e);
    if (rc == CB_OK) {
        FILE *fp = af.fp;
        static const unsigned char zeros[CB_GGUF_ALIGN];
        const uint32_t version = 3;
        const uint64_t n_t = (uint64_t)w->n_t;
        int ok = fwrite("GGUF", 1, 4, fp) == 4 && fwrite(&version, 4, 1, fp) == 1 && fwrite(&n_t, 8, 1, fp) == 1 &&
                 fwrite(&w->n_kv, 8, 1, fp) == 1 && fwrite(w->kv, 1, w->kv_len, fp) == w->kv_len &&
                 fwrite(info.kv, 1, info.kv_len, fp) == info.kv_len;
        uint64_t pos = 24 + w->kv_len + info.kv_len;
        ok = ok && fwrite(zeros, 1, align_up(pos) - pos, fp) == align_up(pos) - pos;
        for (int i = 0; ok && i < w->n_t; i++) {
            const cb_gguf_tensor *t = &w->t[i];
            const size_t rb = cb_gguf_row_bytes(t->type, t->cols);
            for (uint64_t r = 0; ok && r < t->rows; r++) {
                convert_row(row, t->type, t->data + r * t->cols, t->cols);
                ok = fwrite(row, 1, rb, fp) == rb;
            }
            const uint64_t bytes = rb * t->rows;
            ok = ok && fwrite(zeros, 1, align_up(bytes) - bytes, fp) == align_up(bytes) - bytes;
        }
        if (!ok) {
            cb_atomic_abort(&af);
            rc = cb_fail(e, CB_E_IO, path, "cannot write the GGUF file");
        } else {
            rc = cb_atomic_commit(&af, e);
        }
    }
    free(row);
    cb_gguf_writer_free(&info);
    return rc;
}

/* ---- the Llama export ------------------------------------------------------------------- */

/* GPT-2's byte-level alphabet: byte b as a printable code point (bytes that are printable
 * already map to themselves, the rest to 256 + n in order), UTF-8 encoded into out. */
static size_t byte_unicode(unsigned char b, char *out) {
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) cp = b;
    else {
        unsigned n = 0;
        for (unsigned c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | cp >> 6);
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* A growing list of strings (the vocabulary, the merges). */
typedef struct str_list {
    char **s;
    size_t *len, n;
    int failed;
} str_list;

static void str_list_push(str_list *l, const char *p, size_t n) {
    char **s = realloc(l->s, sizeof *s * (l->n + 1));
    size_t *len = s ? realloc(l->len, sizeof *len * (l->n + 1)) : NULL;
    char *copy = malloc(n + 1);
    if (s) l->s = s;
    if (len) l->len = len;
    if (!s || !len || !copy) {
        free(copy);
        l->failed = 1;
        return;
    }
    memcpy(copy, p, n);
    copy[n] = 0;
    l->s[l->n] = copy;
    l->len[l->n++] = n;
}

static void str_list_free(str_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
}

/* Token bytes in the byte-level alphabet. */
static void push_byte_level(str_list *l, const uint8_t *b, size_t n) {
    char *buf = malloc(2 * n + 1);
    if (!buf) {
        l->failed = 1;
        return;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += byte_unicode(b[i], buf + k);
    str_list_push(l, buf, k);
    free(buf);
}

typedef struct merge {
    uint32_t rank;
    int32_t left, right;
} merge;

static int merge_cmp(const void *a, const void *b) {
    const merge *x = a, *y = b;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* tokenizer.ggml.* from t (NULL: the 256 bytes and placeholders) over vocab ids. */
static int add_tokenizer(cb_gguf_writer *w, const cb_tokenizer *t, int vocab, const int32_t *eos, int n_eos,
                         cb_error *e) {
    str_list toks = {0}, merges = {0};
    int32_t *types = malloc(sizeof *types * (size_t)vocab);
    int rc = types ? CB_OK : cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    enum { NORMAL = 1, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5 };
    for (int id = 0; rc == CB_OK && id < vocab; id++) {
        size_t n = 0;
        const uint8_t *b = NULL;
        uint8_t byte = (uint8_t)id;
        if (t) b = (size_t)id < t->n_vocab ? cb_tokenizer_token(t, id, &n) : NULL;
        else if (id < 256) {
            b = &byte;
            n = 1;
        }
        int type = NORMAL, added = 0;
        for (size_t k = 0; t && k < t->added.n; k++)
            if (t->added.v[k].id == id) {
                added = 1;
                type = t->added.v[k].special ? CONTROL : USER_DEFINED;
            }
        if (!b || n == 0) {
            char name[48];
            snprintf(name, sizeof name, "[cb_unused_%d]", id);
            str_list_push(&toks, name, strlen(name));
            type = UNUSED;
        } else if (added) {
            str_list_push(&toks, (const char *)b, n); // added tokens keep their text
        } else {
            push_byte_level(&toks, b, n);
        }
        types[id] = type;
    }
    if (rc == CB_OK && t && !t->bytes_only) { // the merges in rank order
        const cb_bpe *bp = &t->bpe;
        merge *ms = malloc(sizeof *ms * (bp->n_pairs + 1));
        size_t nm = 0;
        if (!ms) rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        for (size_t s = 0; ms && bp->pair_key && s <= bp->pair_mask; s++)
            if (bp->pair_key[s] != UINT64_MAX && nm < bp->n_pairs + 1)
                ms[nm++] = (merge){(uint32_t)(bp->pair_val[s] >> 32), (int32_t)(bp->pair_key[s] >> 32),
                                   (int32_t)(bp->pair_key[s] & 0xFFFFFFFFu)};
        if (ms) qsort(ms, nm, sizeof *ms, merge_cmp);
        for (size_t k = 0; rc == CB_OK && k < nm; k++) {
            size_t nl, nr;
            const uint8_t *l = cb_tokenizer_token(t, ms[k].left, &nl), *r = cb_tokenizer_token(t, ms[k].right, &nr);
            if (!l || !r) continue;
            char *buf = malloc(2 * (nl + nr) + 2);
            if (!buf) {
                rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
                break;
            }
            size_t q = 0;
            for (size_t i = 0; i < nl; i++) q += byte_unicode(l[i], buf + q);
            buf[q++] = ' ';
            for (size_t i = 0; i < nr; i++) q += byte_unicode(r[i], buf + q);
            str_list_push(&merges, buf, q);
            free(buf);
        }
        free(ms);
    }
    if (rc == CB_OK && (toks.failed || merges.failed)) rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    if (rc == CB_OK) {
        const char *pre = "default";
        if (t && t->n_split > 0)
            pre = t->split[0] == CB_SPLIT_GPT2 ? "gpt-2"
                  : t->split[0] == CB_SPLIT_O200K ? "gpt-4o"
                  : t->split[0] == CB_SPLIT_NONE ? "default"
                                                 : "llama-bpe";
        cb_gguf_kv_str(w, "tokenizer.ggml.model", "gpt2");
        cb_gguf_kv_str(w, "tokenizer.ggml.pre", pre);
        cb_gguf_kv_str_array(w, "tokenizer.ggml.tokens", (const char *const *)toks.s, toks.len, toks.n);
        cb_gguf_kv_i32_array(w, "tokenizer.ggml.token_type", types, (size_t)vocab);
        cb_gguf_kv_str_array(w, "tokenizer.ggml.merges", (const char *const *)merges.s, merges.len, merges.n);
        if (n_eos > 0) {
            cb_gguf_kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos[0]);
            cb_gguf_kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)eos[0]);
        }
        cb_gguf_kv_bool(w, "tokenizer.ggml.add_bos_token", 0);
        cb_gguf_kv_bool(w, "tokenizer.ggml.add_eos_token", 0);
    }
    free(types);
    str_list_free(&toks);
    str_list_free(&merges);
    return rc;
}

/* Hugging Face name -> GGUF name; *heads_of_rope: 1 for q_proj, 2 for k_proj (rows to
 * permute), else 0. NULL for a name with no counterpart. */
static const char *gguf_name(const char *hf, char *out, size_t n, int *rope) {
    static const struct {
        const char *hf, *gg;
        int rope;
    } MAP[] = {{"input_layernorm.weight", "attn_norm.weight", 0},
               {"self_attn.q_proj.weight", "attn_q.weight", 1},
               {"self_attn.k_proj.weight", "attn_k.weight", 2},
               {"self_attn.v_proj.weight", "attn_v.weight", 0},
               {"self_attn.o_proj.weight", "attn_output.weight", 0},
               {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
               {"mlp.gate_proj.weight", "ffn_gate.weight", 0},
               {"mlp.up_proj.weight", "ffn_up.weight", 0},
               {"mlp.down_proj.weight", "ffn_down.weight", 0}};
    *rope = 0;
    if (strcmp(hf, "model.embed_tokens.weight") == 0) return "token_embd.weight";
    if (strcmp(hf, "model.norm.weight") == 0) return "output_norm.weight";
    if (strcmp(hf, "lm_head.weight") == 0) return "output.weight";
    int layer, used = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &used) != 1 || used == 0) return NULL;
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++)
        if (strcmp(hf + used, MAP[i].hf) == 0) {
            snprintf(out, n, "blk.%d.%s", layer, MAP[i].gg);
            *rope = MAP[i].rope;
            return out;
        }
    return NULL;
}

/* Rows of a Q or K matrix (heads x hd rows of cols) from rotate-half order (row h*hd + s*hd/2
 * + i, s the half) to interleaved pairs (row h*hd + 2i + s): convert_hf_to_gguf.py's permute. */
static float *permute_rope_rows(const float *w, int heads, int hd, int cols) {
    float *out = malloc(sizeof(float) * (size_t)heads * hd * cols);
    if (!out) return NULL;
    for (int h = 0; h < heads; h++)
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < hd / 2; i++)
                memcpy(out + ((size_t)h * hd + 2 * i + s) * cols, w + ((size_t)h * hd + s * (hd / 2) + i) * cols,
                       sizeof(float) * (size_t)cols);
    return out;
}

int cb_gguf_export_llama(const char *model_dir, const char *out_dir, cb_gguf_type type, cb_error *e) {
    cb_model m;
    CB_TRY(cb_model_open_dir(&m, model_dir, e));
    char **names = NULL;
    int rc = cb_hf_names(&m, &names, e);
    cb_program prog;
    int have_prog = 0;
    if (rc == CB_OK && (rc = cb_program_init(&prog, m.plan, &m.params, 1, 1, e)) == CB_OK) have_prog = 1;
    const cb_op *attn = NULL, *mlp = NULL, *norm = NULL;
    int layers = 0;
    for (int i = 0; have_prog && i < prog.n_ops; i++) {
        const cb_op *op = &prog.ops[i];
        if (op->kind == CB_OP_ATTENTION) {
            layers++;
            if (!attn) attn = op;
        }
        if (op->kind == CB_OP_SWIGLU && !mlp) mlp = op;
        if (op->kind == CB_OP_RMSNORM && !norm) norm = op;
    }
    if (rc == CB_OK && (!attn || !mlp || !norm))
        rc = cb_fail(e, CB_E_INVALID, "plan", "not a Llama-shaped model: no attention, SwiGLU or RMSNorm layer");
    cb_tokenizer tok;
    int found = 0;
    char used[4200] = "";
    if (rc == CB_OK) rc = cb_model_tokenizer(&tok, NULL, model_dir, &m, &found, used, sizeof used, e);
    int tok_open = rc == CB_OK && found;
    cb_gguf_writer w;
    cb_gguf_writer_init(&w);
    if (rc == CB_OK) {
        const int hd = prog.d_model / attn->attn.n_heads;
        const cb_rope_scaling *sc = &prog.ropes[attn->rope].scaling;
        uint32_t file_type = 0;
        for (size_t i = 0; i < N_TYPES; i++)
            if (TYPES[i].t == type) file_type = TYPES[i].file_type;
        cb_gguf_kv_str(&w, "general.architecture", "llama");
        cb_gguf_kv_str(&w, "general.name", "caramba");
        cb_gguf_kv_u32(&w, "general.file_type", file_type);
        cb_gguf_kv_u32(&w, "general.alignment", CB_GGUF_ALIGN);
        cb_gguf_kv_u32(&w, "llama.context_length", sc->type ? 131072 : 8192);
        cb_gguf_kv_u32(&w, "llama.embedding_length", (uint32_t)prog.d_model);
        cb_gguf_kv_u32(&w, "llama.block_count", (uint32_t)layers);
        cb_gguf_kv_u32(&w, "llama.feed_forward_length", (uint32_t)mlp->d_ff);
        cb_gguf_kv_u32(&w, "llama.rope.dimension_count", (uint32_t)hd);
        cb_gguf_kv_u32(&w, "llama.attention.head_count", (uint32_t)attn->attn.n_heads);
        cb_gguf_kv_u32(&w, "llama.attention.head_count_kv", (uint32_t)attn->attn.n_kv_heads);
        cb_gguf_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", norm->eps);
        cb_gguf_kv_f32(&w, "llama.rope.freq_base", (float)prog.ropes[attn->rope].theta);
        cb_gguf_kv_u32(&w, "llama.vocab_size", (uint32_t)prog.vocab_size);
        int32_t eos[8];
        const int n_eos = cb_model_eos_ids(model_dir, tok_open ? &tok : NULL, eos, 8);
        rc = add_tokenizer(&w, tok_open ? &tok : NULL, prog.vocab_size, eos, n_eos, e);
        if (rc == CB_OK && sc->type == CB_ROPE_SCALING_LLAMA3) { // llama.cpp divides each frequency by its factor
            double *plain = malloc(sizeof(double) * (size_t)hd), *scaled = malloc(sizeof(double) * (size_t)hd);
            float *factors = malloc(sizeof(float) * (size_t)hd / 2);
            if (plain && scaled && factors) {
                cb_rope_inv_freq(plain, hd, prog.ropes[attn->rope].theta, NULL);
                cb_rope_inv_freq(scaled, hd, prog.ropes[attn->rope].theta, sc);
                for (int i = 0; i < hd / 2; i++) factors[i] = (float)(plain[i] / scaled[i]);
                cb_gguf_add_tensor(&w, "rope_freqs.weight", CB_GGUF_F32, 1, 1, (uint64_t)hd / 2, factors, factors);
                factors = NULL;
            } else {
                rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
            }
            free(plain);
            free(scaled);
            free(factors);
        }
        for (int i = 0; rc == CB_OK && i < m.params.n; i++) {
            const cb_param *p = &m.params.items[i];
            char buf[96];
            int rope;
            const char *gg = gguf_name(names[i], buf, sizeof buf, &rope);
            if (!gg) {
                rc = cb_fail(e, CB_E_INVALID, "plan", "tensor %s has no GGUF counterpart", p->name);
                break;
            }
            const float *data = m.weights + p->offset;
            if (p->ndim == 1) {
                cb_gguf_add_tensor(&w, gg, CB_GGUF_F32, 1, 1, (uint64_t)p->shape[0], data, NULL);
                continue;
            }
            const int rows = (int)p->shape[0], cols = (int)p->shape[1];
            float *owned = NULL;
            if (rope) {
                owned = permute_rope_rows(data, rope == 1 ? attn->attn.n_heads : attn->attn.n_kv_heads, hd, cols);
                if (!owned) {
                    rc = cb_fail(e, CB_E_RUNTIME, "", "out of memory");
                    break;
                }
                data = owned;
            }
            const int blocks = type == CB_GGUF_Q8_0 || type == CB_GGUF_Q4_0;
            const cb_gguf_type tt = blocks && cols % 32 ? CB_GGUF_F16 : type;
            cb_gguf_add_tensor(&w, gg, tt, 2, (uint64_t)rows, (uint64_t)cols, data, owned);
        }
    }
    if (rc == CB_OK) {
        cb_atomic_dir ad;
        rc = cb_atomic_dir_open(&ad, out_dir, "model.gguf", e);
        if (rc == CB_OK) {
            char path[8300];
            snprintf(path, sizeof path, "%s/model.gguf", ad.tmp_path);
            rc = cb_gguf_write(&w, path, e);
            if (rc == CB_OK) rc = cb_atomic_dir_commit(&ad, e);
            else cb_atomic_dir_abort(&ad);
        }
    }
    cb_gguf_writer_free(&w);
    if (tok_open) cb_tokenizer_free(&tok);
    if (have_prog) cb_program_free(&prog);
    if (names) cb_hf_names_free(names, m.params.n);
    cb_model_free(&m);
    return rc;
}
