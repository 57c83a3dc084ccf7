/* test_loaders.c: tokenizer.json, encoder.json + vocab.bpe and .tiktoken files made by
 * hand: small valid ones (both merge spellings, added tokens with lstrip/rstrip, special
 * or not) and hostile ones, each refused with CB_E_INVALID naming the file and member. */
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/load.h"
#include "tokenizer/unicode.h"

static char dir[64];

static const char *tmp_path(const char *name) {
    static char path[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/cbtok.XXXXXX");
        if (!mkdtemp(dir)) return "/nonexistent";
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static const char *write_tmp(const char *name, const char *text) {
    const char *p = tmp_path(name);
    cb_error e;
    if (cb_atomic_write(p, text, strlen(text), &e) != CB_OK) FAILF("cannot write %s", p);
    return p;
}

/* "\"<byte-level spelling of b>\": b," for every byte, as JSON object members */
static void byte_vocab(char *out, size_t size) {
    size_t k = 0;
    for (int b = 0; b < 256; b++) {
        uint8_t u[4];
        int n = cb_utf8_put(cb_byte_level_cp((uint8_t)b), u);
        char key[16];
        if (b == '"' || b == '\\') snprintf(key, sizeof key, "\\%c", b);
        else { memcpy(key, u, (size_t)n); key[n] = '\0'; }
        k += (size_t)snprintf(out + k, size - k, "\"%s\": %d, ", key, b);
    }
}

#define LLAMA_PATTERN "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+"

/* A tokenizer.json: the 256 bytes, "ab" 256, "abc" 257, merges in both spellings, two
 * added tokens; `patch` replaces the pre-tokenizer's pattern when not NULL. */
static char *toy_json(const char *pattern, const char *normalizer, const char *merges, const char *extra_added) {
    static char vocab[8192];
    byte_vocab(vocab, sizeof vocab);
    size_t size = 16384;
    char *s = malloc(size);
    snprintf(s, size,
             "{\"version\": \"1.0\", \"normalizer\": %s,\n"
             " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
             "   {\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\", \"invert\": false},\n"
             "   {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n"
             " \"decoder\": {\"type\": \"ByteLevel\"},\n"
             " \"added_tokens\": [{\"id\": 258, \"content\": \"<s>\", \"special\": true},\n"
             "   {\"id\": 259, \"content\": \"[X]\", \"special\": false, \"lstrip\": true, \"rstrip\": true}%s],\n"
             " \"model\": {\"type\": \"BPE\", \"dropout\": null, \"ignore_merges\": false,\n"
             "   \"vocab\": {%s\"ab\": 256, \"abc\": 257},\n"
             "   \"merges\": %s}}\n",
             normalizer ? normalizer : "null", pattern ? pattern : LLAMA_PATTERN, extra_added ? extra_added : "", vocab,
             merges ? merges : "[\"a b\", [\"ab\", \"c\"]]");
    return s;
}

static const char *ids_of(cb_tokenizer *t, const char *text, int flags) {
    static char out[512];
    cb_ids ids = {0};
    cb_error e;
    if (cb_tokenizer_encode(t, (const uint8_t *)text, strlen(text), flags, &ids, &e) != CB_OK) return "(error)";
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ids.n; i++) k += (size_t)snprintf(out + k, sizeof out - k, "%s%d", i ? "," : "", (int)ids.v[i]);
    cb_ids_free(&ids);
    return out;
}

TEST(hf_small_tokenizer) {
    char *json = toy_json(NULL, NULL, NULL, NULL);
    const char *p = write_tmp("toy.json", json);
    free(json);
    cb_tokenizer t;
    cb_error e;
    if (cb_tokenizer_load_hf(&t, p, &e) != CB_OK) { FAILF("%.200s: %.300s", e.where, e.msg); return; }
    EXPECT_EQ_INT(CB_SPLIT_CL100K, t.split[0]);
    EXPECT_EQ_STR("257,32,256", ids_of(&t, "abc ab", 0));      /* " ab" has no merge for (Ġ, ab) */
    EXPECT_EQ_STR("256,258,97", ids_of(&t, "ab<s>a", CB_TOK_SPECIAL));
    EXPECT_EQ_STR("256,60,115,62,97", ids_of(&t, "ab<s>a", 0));  /* special off: its text */
    EXPECT_EQ_STR("97,259,98", ids_of(&t, "a  [X]\t b", 0));     /* not special: always; strips both sides */
    size_t len;
    const uint8_t *tok = cb_tokenizer_token(&t, 259, &len);
    EXPECT(tok && len == 3 && memcmp(tok, "[X]", 3) == 0);
    EXPECT_EQ_INT(260, (long long)t.n_vocab);
    cb_tokenizer_free(&t);
}

/* load must fail with CB_E_INVALID, e.where starting with the file, e.msg containing want */
static void expect_bad_hf(const char *name, char *json, const char *want) {
    const char *p = write_tmp(name, json);
    free(json);
    cb_tokenizer t;
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_tokenizer_load_hf(&t, p, &e);
    if (rc != CB_E_INVALID) FAILF("%s: status %d, expected 3 (%.200s)", name, rc, e.msg);
    else if (strncmp(e.where, p, strlen(p)) != 0) FAILF("%s: where \"%.200s\" does not name the file", name, e.where);
    else if (!strstr(e.msg, want)) FAILF("%s: message \"%.300s\" lacks \"%s\"", name, e.msg, want);
    if (rc == CB_OK) cb_tokenizer_free(&t);
}

static char *copy_of(const char *s) {
    char *d = malloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

TEST(hf_hostile_files) {
    expect_bad_hf("corrupt.json", copy_of("{\"model\": {\"vocab\": [1,\n"), "invalid JSON");
    expect_bad_hf("array.json", copy_of("[1, 2]"), "expected a JSON object");
    expect_bad_hf("pattern.json", toy_json("\\\\w+", NULL, NULL, NULL),
                  "pre_tokenizer.pretokenizers[0].pattern.Regex: unknown pre-tokenizer pattern \"\\w+\"");
    expect_bad_hf("normalizer.json", toy_json(NULL, "{\"type\": \"NFC\"}", NULL, NULL), "normalizer: type \"NFC\"");
    expect_bad_hf("merge_unknown.json", toy_json(NULL, NULL, "[\"a zz\"]", NULL),
                  "model.merges[0]: \"zz\" is not in the vocabulary");
    expect_bad_hf("merge_no_result.json", toy_json(NULL, NULL, "[\"a b\", \"b c\"]", NULL),
                  "model.merges[1]: \"b\" + \"c\" is not in the vocabulary");
    expect_bad_hf("merge_form.json", toy_json(NULL, NULL, "[\"a b\", \"abc\"]", NULL),
                  "model.merges[1]: \"abc\" is not two tokens separated by one space");
    expect_bad_hf("merge_type.json", toy_json(NULL, NULL, "[\"a b\", 7]", NULL), "model.merges[1]: expected");
    expect_bad_hf("single_word.json", toy_json(NULL, NULL, NULL, ", {\"id\": 260, \"content\": \"x\", \"single_word\": true}"),
                  "added_tokens[2].single_word");
    expect_bad_hf("added_same.json", toy_json(NULL, NULL, NULL, ", {\"id\": 260, \"content\": \"<s>\"}"),
                  "added_tokens[2]: added tokens 258 and 260 have the same content");
    expect_bad_hf("wordpiece.json", copy_of("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}"),
                  "model.type: \"WordPiece\" is not supported");
    expect_bad_hf("no_byte_level.json", copy_of("{\"pre_tokenizer\": null, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}"),
                  "no ByteLevel step");
    expect_bad_hf("bad_id.json", copy_of("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}"),
                  "model.vocab.\"a\": expected an id");
    expect_bad_hf("missing_bytes.json", copy_of("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}"),
                  "no token for the byte 0x00");
    expect_bad_hf("space_token.json", copy_of("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a b\": 0}, \"merges\": []}}"),
                  "has the character U+0020");
    expect_bad_hf("dropout.json", copy_of("{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}"),
                  "model.dropout");
    cb_tokenizer t;
    cb_error e;
    EXPECT_EQ_INT(CB_E_IO, cb_tokenizer_load_hf(&t, tmp_path("absent.json"), &e));
}

/* encoder.json with the 256 bytes and "ab" (256) */
static const char *toy_encoder(void) {
    static char vocab[8192], json[8400];
    byte_vocab(vocab, sizeof vocab);
    snprintf(json, sizeof json, "{%s\"ab\": 256, \"<|endoftext|>\": 257}", vocab);
    return write_tmp("encoder.json", json);
}

static void expect_bad_gpt2(const char *name, const char *merges, const char *want_where, const char *want) {
    char enc[256];
    snprintf(enc, sizeof enc, "%s", toy_encoder());
    const char *p = write_tmp(name, merges);
    cb_tokenizer t;
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_tokenizer_load_gpt2(&t, enc, p, &e);
    char where[300];
    snprintf(where, sizeof where, "%s%s", p, want_where);
    if (rc != CB_E_INVALID) FAILF("%s: status %d, expected 3", name, rc);
    else if (strcmp(e.where, where) != 0) FAILF("%s: where \"%.200s\", expected \"%s\"", name, e.where, where);
    else if (!strstr(e.msg, want)) FAILF("%s: message \"%.300s\" lacks \"%s\"", name, e.msg, want);
    if (rc == CB_OK) cb_tokenizer_free(&t);
}

TEST(gpt2_files) {
    char enc[256];
    snprintf(enc, sizeof enc, "%s", toy_encoder());
    const char *merges = write_tmp("vocab.bpe", "#version: 0.2\na b\n");
    cb_tokenizer t;
    cb_error e;
    if (cb_tokenizer_load_gpt2(&t, enc, merges, &e) != CB_OK) { FAILF("%.200s: %.300s", e.where, e.msg); return; }
    EXPECT_EQ_STR("256,99", ids_of(&t, "abc", 0));
    EXPECT_EQ_STR("256,257", ids_of(&t, "ab<|endoftext|>", CB_TOK_SPECIAL));
    cb_tokenizer_free(&t);
    expect_bad_gpt2("cut.bpe", "#version: 0.2\na b\nb", ":3", "no newline");
    expect_bad_gpt2("one.bpe", "#version: 0.2\na\n", ":2", "expected two tokens separated by one space");
    expect_bad_gpt2("three.bpe", "a b c\n", ":1", "expected two tokens");
    expect_bad_gpt2("unknown.bpe", "a zz\n", ":1", "\"zz\" is not in encoder.json");
    expect_bad_gpt2("noresult.bpe", "b c\n", ":1", "\"b c\" is not in encoder.json");
}

/* a rank file: the 256 bytes (ranks 0..255), then "ab" */
static const char *toy_ranks(const char *name, const char *extra) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static char text[8192];
    size_t k = 0;
    for (int b = 0; b < 256; b++)
        k += (size_t)snprintf(text + k, sizeof text - k, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    snprintf(text + k, sizeof text - k, "%s", extra);
    return write_tmp(name, text);
}

static void expect_bad_tiktoken(const char *name, const char *extra, const char *want_where, const char *want) {
    const char *p = toy_ranks(name, extra);
    cb_tokenizer t;
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_tokenizer_load_tiktoken(&t, p, "r50k_base", &e);
    char where[300];
    snprintf(where, sizeof where, "%s%s", p, want_where);
    if (rc != CB_E_INVALID) FAILF("%s: status %d, expected 3", name, rc);
    else if (strcmp(e.where, where) != 0) FAILF("%s: where \"%.200s\", expected \"%s\"", name, e.where, where);
    else if (!strstr(e.msg, want)) FAILF("%s: message \"%.300s\" lacks \"%s\"", name, e.msg, want);
    if (rc == CB_OK) cb_tokenizer_free(&t);
}

TEST(tiktoken_files) {
    const char *p = toy_ranks("r50k_base.tiktoken", "YWI= 256\n"); /* "ab" */
    cb_tokenizer t;
    cb_error e;
    if (cb_tokenizer_load_tiktoken(&t, p, NULL, &e) != CB_OK) { FAILF("%.200s: %.300s", e.where, e.msg); return; }
    EXPECT_EQ_STR("256,99", ids_of(&t, "abc", 0));
    EXPECT_EQ_STR("256,50256", ids_of(&t, "ab<|endoftext|>", CB_TOK_SPECIAL));
    EXPECT_EQ_INT(50257, (long long)t.n_vocab);
    cb_tokenizer_free(&t);
    expect_bad_tiktoken("b1.tiktoken", "YW!= 256\n", ":257", "bad base64");
    expect_bad_tiktoken("b2.tiktoken", "YWI 256\n", ":257", "bad base64");     /* not padded */
    expect_bad_tiktoken("b3.tiktoken", "YWJ= 256\n", ":257", "bad base64");    /* stray bits */
    expect_bad_tiktoken("b4.tiktoken", "YWI=\n", ":257", "expected");
    expect_bad_tiktoken("b5.tiktoken", "YWI= x1\n", ":257", "rank \"x1\" is not a number");
    expect_bad_tiktoken("b6.tiktoken", "YWI= 255\n", ":257", "given twice");
    expect_bad_tiktoken("b7.tiktoken", "YQ== 300\n", ":257", "the same token");
    expect_bad_tiktoken("b8.tiktoken", "YWI= 50256\n", "", "rank 50256 is the special token <|endoftext|>");
    p = toy_ranks("mystery.tiktoken", "");
    EXPECT_EQ_INT(CB_E_INVALID, cb_tokenizer_load_tiktoken(&t, p, NULL, &e));
    EXPECT(strstr(e.msg, "unknown tiktoken encoding \"mystery\"") != NULL);
}

TEST(open_resolves_names) {
    cb_tokenizer t;
    cb_error e;
    EXPECT_EQ_INT(CB_E_USAGE, cb_tokenizer_open(&t, tmp_path("no-such-thing"), &e));
    EXPECT(strstr(e.msg, "not a tokenizer name") != NULL);
    char sub[300];
    snprintf(sub, sizeof sub, "%s", tmp_path("emptydir"));
    EXPECT_EQ_INT(0, mkdir(sub, 0755));
    EXPECT_EQ_INT(CB_E_USAGE, cb_tokenizer_open(&t, sub, &e));
    EXPECT(strstr(e.msg, "neither tokenizer.json nor encoder.json") != NULL);
    rmdir(sub);
    /* a directory with encoder.json + vocab.bpe */
    toy_encoder();
    write_tmp("vocab.bpe", "#version: 0.2\na b\n");
    EXPECT_EQ_INT(CB_OK, cb_tokenizer_open(&t, dir, &e));
    EXPECT_EQ_STR("256", ids_of(&t, "ab", 0));
    cb_tokenizer_free(&t);
    /* clean up the temporary directory */
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT_EQ_INT(0, system(cmd));
}
