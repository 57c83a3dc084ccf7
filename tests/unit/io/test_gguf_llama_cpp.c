/* test_gguf_llama_cpp.c: a caramba Llama exported as an f32 GGUF file and run by llama.cpp's
 * llama-simple (found under $CB_LLAMA_CPP_DIR, a llama.cpp build directory: bin/llama-simple
 * or llama-simple) generates greedily the same tokens as caramba's decoding session (what
 * cb-generate runs) from the same prompt ids. Skips, saying so, where no such binary is at
 * hand (tests/expected-skips).
 *
 * The model: random weights over the 256 byte ids (the export's tokenizer-less vocabulary is
 * the 256 bytes, so llama.cpp's tokens of "hello" are the ids 104 101 108 108 111), with the
 * head rows of every id but the letters a-z zeroed and the row of 'f' the negative of 'e''s:
 * one of the two has a logit >= 0 > the others' 0, so greedy picks a letter every step and
 * llama-simple prints each token as itself. Q, K, V and O are scaled up so that attention is
 * sharp and moves the logits: the tokens then depend on RoPE's layout and the head grouping. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/atomic_dir.h"
#include "infer/sample.h"
#include "infer/session.h"
#include "io/gguf.h"
#include "io/hf_llama.h"
#include "model/model.h"
#include "model_util.h"

#define NEW_TOKENS 24
/* Q and K, V and O scaled so: with QK 6 and VO 4 the export without the Q/K permutation
 * still gave llama.cpp caramba's tokens; with these it does not (checked by hand). */
#define QK_SCALE 10.0f
#define VO_SCALE 8.0f

static const char *LLAMA =
    "version: 1\nname: t\nmodel:\n  type: TransformerModel\n  tie_embeddings: false\n"
    "  embedder: {type: token, vocab_size: 256, d_model: 64}\n"
    "  topology:\n    type: StackedTopology\n    layers:\n"
    "      - type: NestedTopology\n        repeat: 2\n        layers:\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n"
    "              - {type: AttentionLayer, d_model: 64, n_heads: 4, n_kv_heads: 2, rope_theta: 10000.0}\n"
    "          - type: ResidualTopology\n            layers:\n"
    "              - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n"
    "              - {type: SwiGLULayer, d_model: 64, d_ff: 128}\n"
    "      - {type: RMSNormLayer, d_model: 64, eps: 1.0e-5}\n";

static int find_simple(char *out, size_t n) {
    const char *dir = getenv("CB_LLAMA_CPP_DIR");
    if (!dir || !*dir) return 0;
    const char *cands[] = {"bin/llama-simple", "llama-simple"};
    for (int i = 0; i < 2; i++) {
        snprintf(out, n, "%s/%s", dir, cands[i]);
        if (access(out, X_OK) == 0) return 1;
    }
    return 0;
}

TEST(gguf_f32_greedy_equals_llama_cpp) {
    char simple[4200];
    if (!find_simple(simple, sizeof simple))
        SKIP("no llama.cpp: set CB_LLAMA_CPP_DIR to a llama.cpp build directory with llama-simple");
    char dir[] = "/tmp/cbggufll.XXXXXX", mdir[300], gdir[300];
    EXPECT(mkdtemp(dir) != NULL);
    snprintf(mdir, sizeof mdir, "%s/m", dir);
    snprintf(gdir, sizeof gdir, "%s/g", dir);
    json_t *plan = test_compile(LLAMA, "llama.yml");
    if (!plan) { FAILF("plan does not compile"); return; }
    cb_model m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_model_init(&m, plan, 11, &e));
    json_decref(plan);
    char **names;
    EXPECT_EQ_INT(CB_OK, cb_hf_names(&m, &names, &e));
    float *head = NULL;
    for (int i = 0; i < m.params.n; i++) {
        float *w = m.weights + m.params.items[i].offset;
        if (names[i] && !strcmp(names[i], "lm_head.weight")) head = w;
        // sharp, position-dependent attention whose output moves the logits: a wrong RoPE
        // layout (Q/K rows not permuted) or a wrong head count then changes the tokens
        const float scale = !names[i] ? 1.0f
                            : strstr(names[i], "q_proj") || strstr(names[i], "k_proj") ? QK_SCALE
                            : strstr(names[i], "v_proj") || strstr(names[i], "o_proj") ? VO_SCALE : 1.0f;
        for (size_t j = 0; j < m.params.items[i].numel; j++) w[j] *= scale;
    }
    cb_hf_names_free(names, m.params.n);
    if (!head) { FAILF("no head"); cb_model_free(&m); return; }
    for (int id = 0; id < 256; id++)
        for (int j = 0; j < 64; j++) {
            if (id < 'a' || id > 'z') head[id * 64 + j] = 0.0f;
            if (id == 'f') head[id * 64 + j] = -head['e' * 64 + j];
        }
    EXPECT_EQ_INT(CB_OK, cb_model_save_dir(&m, mdir, NULL, &e));
    if (cb_gguf_export_llama(mdir, gdir, CB_GGUF_F32, &e) != CB_OK) {
        FAILF("export: %s: %s", e.where, e.msg);
        cb_model_free(&m);
        return;
    }
    // caramba: the session cb-generate decodes with, greedy
    const char *prompt = "hello";
    int32_t ids[5], tok;
    for (int i = 0; i < 5; i++) ids[i] = (unsigned char)prompt[i];
    cb_session_config cfg = cb_session_config_default();
    cfg.max_seq_len = 64;
    cb_session s;
    float logits[256];
    char ours[NEW_TOKENS + 8] = "hello";
    EXPECT_EQ_INT(CB_OK, cb_session_init(&s, &m, &cfg, &e));
    EXPECT_EQ_INT(CB_OK, cb_session_prefill(&s, ids, 5, logits, &e));
    for (int i = 0; i < NEW_TOKENS; i++) {
        tok = cb_argmax(logits, 256);
        ours[5 + i] = (char)tok;
        if (i + 1 < NEW_TOKENS) EXPECT_EQ_INT(CB_OK, cb_session_forward(&s, &tok, 1, logits, 0, &e));
    }
    ours[5 + NEW_TOKENS] = 0;
    cb_session_free(&s);
    // llama.cpp
    char cmd[9000], theirs[256] = "";
    snprintf(cmd, sizeof cmd, "'%s' -m '%s/model.gguf' -n %d %s 2>/dev/null", simple, gdir, NEW_TOKENS, prompt);
    FILE *p = popen(cmd, "r");
    if (!p) { FAILF("cannot run %s", simple); cb_model_free(&m); return; }
    size_t got = fread(theirs, 1, sizeof theirs - 1, p);
    theirs[got] = 0;
    const int status = pclose(p);
    while (got > 0 && (theirs[got - 1] == '\n' || theirs[got - 1] == ' ')) theirs[--got] = 0;
    printf("  caramba:   %s\n  llama.cpp: %s\n", ours, theirs);
    EXPECT_EQ_INT(0, status);
    if (strcmp(ours, theirs) != 0) FAILF("greedy outputs differ: caramba %s, llama.cpp %s", ours, theirs);
    cb_model_free(&m);
    cb_remove_tree(dir);
}
