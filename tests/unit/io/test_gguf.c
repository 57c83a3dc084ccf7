/* test_gguf.c: a caramba Llama exported as GGUF (f32, f16, bf16, q8_0, q4_0) and parsed back
 * by a small reader written here from the GGUF v3 layout: header, key/value pairs (the llama.*
 * hyperparameters, the tokenizer's arrays), tensor infos (names, dims, types), alignment of
 * the data section and of every tensor, and each tensor's bytes equal to the model's weights
 * stored as the type (Q and K rows in ggml's interleaved RoPE order); a DBA model refused. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_dir.h"
#include "io/gguf.h"
#include "io/hf_llama.h"
#include "model/model.h"
#include "model_util.h"
#include "tensor/dtype.h"
#include "tensor/quant.h"

#define VOCAB 37
#define D 64
#define HEADS 4
#define KV_HEADS 2
#define FF 96
#define LAYERS 2

static const char *LLAMA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: false\n"
    "  embedder: {type: token, vocab_size: 37, d_model: 64}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n"
    "              - {type: AttentionLayer, d_model: 64, n_heads: 4, n_kv_heads: 2, rope_theta: 10000.0}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n"
    "              - {type: SwiGLULayer, d_model: 64, d_ff: 96}\n"
    "      - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n";

/* ---- the reader ---- */
typedef struct rd {
    const unsigned char *p;
    size_t n, at;
    int bad;
} rd;
static uint64_t rd_u(rd *r, int bytes) {
    uint64_t v = 0;
    if (r->at + (size_t)bytes > r->n) {
        r->bad = 1;
        return 0;
    }
    for (int i = 0; i < bytes; i++) v |= (uint64_t)r->p[r->at + (size_t)i] << (8 * i);
    r->at += (size_t)bytes;
    return v;
}
/* A string: its bytes at r->p + *off, its length returned. */
static size_t rd_str(rd *r, size_t *off) {
    *off = 0;
    const uint64_t len = rd_u(r, 8);
    if (r->bad || len > r->n - r->at) {
        r->bad = 1;
        return 0;
    }
    *off = r->at;
    r->at += (size_t)len;
    return (size_t)len;
}
static int str_is(const rd *r, size_t off, size_t len, const char *s) {
    return len == strlen(s) && memcmp(r->p + off, s, len) == 0;
}
/* Skip a value of type t (scalars, strings, arrays of them); returns the array count or 1. */
static uint64_t rd_skip(rd *r, uint32_t t) {
    static const int size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == CB_GGUF_V_STRING) {
        size_t off;
        rd_str(r, &off);
        return 1;
    }
    if (t == CB_GGUF_V_ARRAY) {
        const uint32_t et = (uint32_t)rd_u(r, 4);
        const uint64_t n = rd_u(r, 8);
        for (uint64_t i = 0; i < n && !r->bad; i++) rd_skip(r, et);
        return n;
    }
    if (t > 12 || size[t] == 0) {
        r->bad = 1;
        return 0;
    }
    rd_u(r, size[t]);
    return 1;
}

typedef struct tinfo {
    char name[64];
    uint32_t n_dims, type;
    uint64_t ne[4], offset;
} tinfo;

/* The HF name of a GGUF tensor name (this test's own table), *rope 1 for q, 2 for k. */
static int hf_of(const char *gg, char *hf, size_t n, int *rope) {
    *rope = 0;
    int layer, used = 0;
    if (!strcmp(gg, "token_embd.weight")) snprintf(hf, n, "model.embed_tokens.weight");
    else if (!strcmp(gg, "output_norm.weight")) snprintf(hf, n, "model.norm.weight");
    else if (!strcmp(gg, "output.weight")) snprintf(hf, n, "lm_head.weight");
    else if (sscanf(gg, "blk.%d.%n", &layer, &used) == 1 && used > 0) {
        const char *rest = gg + used;
        const char *what = !strcmp(rest, "attn_norm.weight")     ? "input_layernorm.weight"
                           : !strcmp(rest, "attn_q.weight")      ? "self_attn.q_proj.weight"
                           : !strcmp(rest, "attn_k.weight")      ? "self_attn.k_proj.weight"
                           : !strcmp(rest, "attn_v.weight")      ? "self_attn.v_proj.weight"
                           : !strcmp(rest, "attn_output.weight") ? "self_attn.o_proj.weight"
                           : !strcmp(rest, "ffn_norm.weight")    ? "post_attention_layernorm.weight"
                           : !strcmp(rest, "ffn_gate.weight")    ? "mlp.gate_proj.weight"
                           : !strcmp(rest, "ffn_up.weight")      ? "mlp.up_proj.weight"
                           : !strcmp(rest, "ffn_down.weight")    ? "mlp.down_proj.weight"
                                                                 : NULL;
        if (!what) return 0;
        *rope = !strcmp(rest, "attn_q.weight") ? 1 : !strcmp(rest, "attn_k.weight") ? 2 : 0;
        snprintf(hf, n, "model.layers.%d.%s", layer, what);
    } else return 0;
    return 1;
}

/* The bytes a row of the model's f32 values must have as type. */
static void expect_row(unsigned char *out, uint32_t type, const float *x, size_t cols) {
    if (type == CB_GGUF_F32) memcpy(out, x, cols * 4);
    else if (type == CB_GGUF_F16) for (size_t j = 0; j < cols; j++) ((uint16_t *)out)[j] = cb_f32_to_f16(x[j]);
    else if (type == CB_GGUF_BF16) for (size_t j = 0; j < cols; j++) ((uint16_t *)out)[j] = cb_f32_to_bf16(x[j]);
    else cb_kv_quantize_row(type == CB_GGUF_Q8_0 ? CB_KV_Q8_0 : CB_KV_Q4_0, out, x, cols);
}

static void check_file(const char *path, cb_gguf_type want, const cb_model *m, char **names) {
    FILE *f = fopen(path, "rb");
    if (!f) { FAILF("%s: not written", path); return; }
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)size);
    EXPECT(fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    rd r = {buf, (size_t)size, 0, 0};
    EXPECT(memcmp(buf, "GGUF", 4) == 0);
    r.at = 4;
    EXPECT_EQ_INT(3, (int)rd_u(&r, 4));
    const uint64_t n_t = rd_u(&r, 8), n_kv = rd_u(&r, 8);
    int seen = 0, arch = 0;
    uint64_t n_tokens = 0, n_types = 0, alignment = 32;
    for (uint64_t i = 0; i < n_kv && !r.bad; i++) {
        size_t ko;
        const size_t kl = rd_str(&r, &ko);
        const uint32_t t = (uint32_t)rd_u(&r, 4);
        static const struct { const char *key; uint32_t v; } U32[] = {
            {"llama.block_count", LAYERS}, {"llama.embedding_length", D}, {"llama.feed_forward_length", FF},
            {"llama.attention.head_count", HEADS}, {"llama.attention.head_count_kv", KV_HEADS},
            {"llama.rope.dimension_count", D / HEADS}, {"llama.vocab_size", VOCAB}};
        int matched = 0;
        for (size_t k = 0; k < sizeof U32 / sizeof U32[0]; k++)
            if (str_is(&r, ko, kl, U32[k].key)) {
                EXPECT_EQ_INT(CB_GGUF_V_UINT32, (int)t);
                EXPECT_EQ_INT((int)U32[k].v, (int)rd_u(&r, 4));
                seen++;
                matched = 1;
            }
        if (matched) continue;
        if (str_is(&r, ko, kl, "general.architecture")) {
            size_t vo;
            const size_t vl = rd_str(&r, &vo);
            arch = t == CB_GGUF_V_STRING && str_is(&r, vo, vl, "llama");
        } else if (str_is(&r, ko, kl, "general.alignment")) {
            alignment = rd_u(&r, 4);
        } else if (str_is(&r, ko, kl, "llama.attention.layer_norm_rms_epsilon")) {
            const uint32_t bits = (uint32_t)rd_u(&r, 4);
            EXPECT(cb_f32_from_bits(bits) == 1.0e-5f);
        } else if (str_is(&r, ko, kl, "llama.rope.freq_base")) {
            EXPECT(cb_f32_from_bits((uint32_t)rd_u(&r, 4)) == 10000.0f);
        } else if (str_is(&r, ko, kl, "tokenizer.ggml.tokens")) {
            n_tokens = rd_skip(&r, t);
        } else if (str_is(&r, ko, kl, "tokenizer.ggml.token_type")) {
            n_types = rd_skip(&r, t);
        } else {
            rd_skip(&r, t);
        }
    }
    EXPECT(!r.bad);
    EXPECT(arch);
    EXPECT_EQ_INT(7, seen);
    EXPECT_EQ_INT(VOCAB, (int)n_tokens);
    EXPECT_EQ_INT(VOCAB, (int)n_types);
    EXPECT_EQ_INT(32, (int)alignment);
    // untied: every parameter is a tensor
    EXPECT_EQ_INT(m->params.n, (int)n_t);
    tinfo *ti = calloc(n_t + 1, sizeof *ti);
    for (uint64_t i = 0; i < n_t && !r.bad; i++) {
        size_t no;
        const size_t nl = rd_str(&r, &no);
        snprintf(ti[i].name, sizeof ti[i].name, "%.*s", (int)nl, (const char *)buf + no);
        ti[i].n_dims = (uint32_t)rd_u(&r, 4);
        for (uint32_t d = 0; d < ti[i].n_dims && d < 4; d++) ti[i].ne[d] = rd_u(&r, 8);
        ti[i].type = (uint32_t)rd_u(&r, 4);
        ti[i].offset = rd_u(&r, 8);
    }
    EXPECT(!r.bad);
    const size_t data = (r.at + alignment - 1) / alignment * alignment;
    for (size_t p = r.at; p < data && p < (size_t)size; p++) EXPECT_EQ_INT(0, buf[p]);
    int checked = 0;
    for (uint64_t i = 0; i < n_t; i++) {
        char hf[128];
        int rope;
        if (!hf_of(ti[i].name, hf, sizeof hf, &rope)) { FAILF("unexpected tensor %s", ti[i].name); continue; }
        int k = -1;
        for (int q = 0; q < m->params.n; q++)
            if (!strcmp(names[q], hf)) k = q;
        if (k < 0) { FAILF("%s: no parameter %s", ti[i].name, hf); continue; }
        const cb_param *p = &m->params.items[k];
        const uint64_t rows = p->ndim == 2 ? (uint64_t)p->shape[0] : 1, cols = (uint64_t)p->shape[p->ndim - 1];
        EXPECT_EQ_INT(p->ndim, (int)ti[i].n_dims);
        EXPECT_EQ_INT((int)cols, (int)ti[i].ne[0]);
        if (p->ndim == 2) EXPECT_EQ_INT((int)rows, (int)ti[i].ne[1]);
        EXPECT_EQ_INT(0, (int)(ti[i].offset % alignment));
        EXPECT_EQ_INT(p->ndim == 1 ? CB_GGUF_F32 : (int)want, (int)ti[i].type);
        const size_t rb = cb_gguf_row_bytes((cb_gguf_type)ti[i].type, cols);
        if (data + ti[i].offset + rb * rows > (size_t)size) { FAILF("%s: past the end", ti[i].name); continue; }
        unsigned char *row = malloc(rb);
        const int hd = D / HEADS;
        int same = 1;
        for (uint64_t q = 0; q < rows; q++) {
            // ggml row q = h*hd + 2i + s holds the rotate-half row h*hd + s*hd/2 + i
            uint64_t src = q;
            if (rope) src = q / hd * hd + (q % hd % 2) * (hd / 2) + (q % hd) / 2;
            expect_row(row, ti[i].type, m->weights + p->offset + src * cols, cols);
            same &= memcmp(row, buf + data + ti[i].offset + q * rb, rb) == 0;
        }
        if (!same) FAILF("%s (%s): data differs", ti[i].name, cb_gguf_type_name(want));
        checked++;
        free(row);
    }
    EXPECT_EQ_INT((int)n_t, checked);
    free(ti);
    free(buf);
}

TEST(gguf_export_parses_back_every_type) {
    char dir[] = "/tmp/cbgguf.XXXXXX", mdir[300], out[300], file[320];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    json_t *plan = test_compile(LLAMA, "llama.yml");
    if (!plan) { FAILF("plan does not compile"); return; }
    cb_model m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_model_init(&m, plan, 3, &e));
    json_decref(plan);
    EXPECT_EQ_INT(CB_OK, cb_model_save_dir(&m, mdir, NULL, &e));
    char **names;
    EXPECT_EQ_INT(CB_OK, cb_hf_names(&m, &names, &e));
    const cb_gguf_type types[] = {CB_GGUF_F32, CB_GGUF_F16, CB_GGUF_BF16, CB_GGUF_Q8_0, CB_GGUF_Q4_0};
    for (int i = 0; i < 5; i++) {
        snprintf(out, sizeof out, "%s/g_%s", dir, cb_gguf_type_name(types[i]));
        if (cb_gguf_export_llama(mdir, out, types[i], &e) != CB_OK) {
            FAILF("export %s: %s: %s", cb_gguf_type_name(types[i]), e.where, e.msg);
            continue;
        }
        snprintf(file, sizeof file, "%s/model.gguf", out);
        check_file(file, types[i], &m, names);
    }
    cb_hf_names_free(names, m.params.n);
    cb_model_free(&m);
    cb_remove_tree(dir);
}

TEST(gguf_export_refuses_dba) {
    char dir[] = "/tmp/cbgguf.XXXXXX", mdir[300], out[300];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    snprintf(out, sizeof out, "%s/g", dir);
    const char *dba =
        "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: true\n"
        "  embedder: {type: token, vocab_size: 37, d_model: 16}\n"
        "  topology:\n    type: StackedTopology\n    layers:\n"
        "      - type: ResidualTopology\n        layers:\n"
        "          - {type: RMSNormLayer, d_model: 16}\n"
        "          - {type: AttentionLayer, d_model: 16, n_heads: 2, mode: decoupled, sem_dim: 4, geo_dim: 8}\n"
        "      - type: ResidualTopology\n        layers:\n"
        "          - {type: RMSNormLayer, d_model: 16}\n"
        "          - {type: SwiGLULayer, d_model: 16, d_ff: 32}\n"
        "      - {type: RMSNormLayer, d_model: 16}\n";
    json_t *plan = test_compile(dba, "dba.yml");
    if (!plan) { FAILF("plan does not compile"); return; }
    cb_model m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_model_init(&m, plan, 3, &e));
    json_decref(plan);
    EXPECT_EQ_INT(CB_OK, cb_model_save_dir(&m, mdir, NULL, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_gguf_export_llama(mdir, out, CB_GGUF_F32, &e));
    EXPECT(strstr(e.msg, "standard or GQA attention") != NULL);
    struct stat st;
    EXPECT(stat(out, &st) != 0); // nothing written
    cb_model_free(&m);
    cb_remove_tree(dir);
}
