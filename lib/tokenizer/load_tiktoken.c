/* load_tiktoken.c: tiktoken's .tiktoken rank files ("<base64 token> <rank>" per line) and
 * the named encodings' split patterns and special tokens (tiktoken_ext/openai_public.py). */
#include "tokenizer/load.h"

#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"

typedef struct special {
    const char *text;
    int32_t id;
} special;

static const struct encoding {
    const char *name;
    cb_split_kind split;
    special specials[6];
} encodings[] = {
    {"r50k_base", CB_SPLIT_GPT2, {{"<|endoftext|>", 50256}}},
    {"p50k_base", CB_SPLIT_GPT2, {{"<|endoftext|>", 50256}}},
    {"cl100k_base", CB_SPLIT_CL100K_TIKTOKEN,
     {{"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
      {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276}}},
    {"o200k_base", CB_SPLIT_O200K, {{"<|endoftext|>", 199999}, {"<|endofprompt|>", 200018}}},
};
#define N_ENCODINGS (sizeof encodings / sizeof encodings[0])

static const struct encoding *find_encoding(const char *name) {
    for (size_t i = 0; i < N_ENCODINGS; i++)
        if (strcmp(encodings[i].name, name) == 0) return &encodings[i];
    return NULL;
}

int cb_tiktoken_known(const char *name) { return find_encoding(name) != NULL; }

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 (padded to a multiple of 4, no stray bits): returns the decoded
 * length, or -1. out has room for 3 * n / 4 bytes. */
static long b64_decode(const char *s, size_t n, uint8_t *out) {
    if (n == 0 || n % 4) return -1;
    size_t pad = s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int j = 0; j < 4; j++) {
            if (i + (size_t)j >= n - pad) v[j] = 0;
            else if ((v[j] = b64_value((unsigned char)s[i + (size_t)j])) < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        size_t bytes = i + 4 < n ? 3 : 3 - pad;
        if (pad && i + 4 >= n && (w & (pad == 1 ? 0xFFu : 0xFFFFu))) return -1; /* stray bits */
        for (size_t j = 0; j < bytes; j++) out[k++] = (uint8_t)(w >> (16 - 8 * j));
    }
    return (long)k;
}

typedef struct rank_line {
    size_t off, len; /* token bytes in the decoded blob */
    long rank;
    size_t line;
} rank_line;

static int parse(cb_tokenizer *t, const char *path, const char *text, size_t len, cb_error *e) {
    /* pass 1: decode every line into lines[] and blob */
    size_t n_lines = 0, cap = 1;
    for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
    rank_line *lines = cb_malloc(cap, sizeof *lines, e);
    uint8_t *blob = cb_malloc(len + 1, 1, e);
    int rc = lines && blob ? CB_OK : CB_E_RUNTIME;
    size_t pos = 0, line = 0, blob_n = 0;
    long max_rank = -1;
    char where[512];
    while (rc == CB_OK && pos < len) {
        line++;
        snprintf(where, sizeof where, "%s:%zu", path, line);
        const char *s = text + pos, *nl = memchr(s, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - s) : len - pos;
        pos += n + (nl != NULL);
        if (n > 0 && s[n - 1] == '\r') n--;
        if (n == 0) continue; /* tiktoken skips empty lines */
        const char *sp = memchr(s, ' ', n);
        if (!sp) { rc = cb_fail(e, CB_E_INVALID, where, "expected \"<base64 token> <rank>\""); break; }
        long k = b64_decode(s, (size_t)(sp - s), blob + blob_n);
        if (k <= 0) { rc = cb_fail(e, CB_E_INVALID, where, "bad base64 \"%.*s\"", (int)(sp - s > 60 ? 60 : sp - s), s); break; }
        long rank = 0;
        const char *r = sp + 1, *end = s + n;
        if (r == end) { rc = cb_fail(e, CB_E_INVALID, where, "no rank after the token"); break; }
        for (; r < end; r++) {
            if (*r < '0' || *r > '9' || rank > (INT32_MAX - 9) / 10) break;
            rank = rank * 10 + (*r - '0');
        }
        if (r != end) { rc = cb_fail(e, CB_E_INVALID, where, "rank \"%.*s\" is not a number from 0 to %d", (int)(end - sp - 1 > 30 ? 30 : end - sp - 1), sp + 1, INT32_MAX - 10); break; }
        lines[n_lines++] = (rank_line){blob_n, (size_t)k, rank, line};
        blob_n += (size_t)k;
        if (rank > max_rank) max_rank = rank;
    }
    /* pass 2: the vocabulary */
    if (rc == CB_OK && n_lines == 0) rc = cb_fail(e, CB_E_INVALID, path, "no ranks in the file");
    /* ranks are bounded by what the file holds; never below 2^18, where every known
     * encoding's special tokens lie (a rank there meets them and is named for it) */
    size_t rank_limit = cb_tokenizer_id_limit(n_lines) > (1u << 18) ? cb_tokenizer_id_limit(n_lines) : (1u << 18);
    for (size_t i = 0; rc == CB_OK && i < n_lines; i++)
        if ((size_t)lines[i].rank >= rank_limit) {
            snprintf(where, sizeof where, "%s:%zu", path, lines[i].line);
            rc = cb_fail(e, CB_E_INVALID, where, "rank %ld is far past the %zu tokens the file holds (ranks below %zu "
                         "accepted)", lines[i].rank, n_lines, rank_limit);
        }
    if (rc == CB_OK) rc = cb_bpe_init(&t->bpe, (size_t)max_rank + 1, e);
    for (size_t i = 0; rc == CB_OK && i < n_lines; i++) {
        if (cb_bpe_add_token(&t->bpe, (int32_t)lines[i].rank, blob + lines[i].off, lines[i].len, e) != CB_OK) {
            snprintf(e->where, sizeof e->where, "%s:%zu", path, lines[i].line);
            rc = CB_E_INVALID;
        }
    }
    free(lines);
    free(blob);
    return rc;
}

int cb_tokenizer_load_tiktoken(cb_tokenizer *t, const char *path, const char *encoding, cb_error *e) {
    cb_tokenizer_init(t);
    char name[256];
    if (!encoding) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        snprintf(name, sizeof name, "%s", base);
        size_t n = strlen(name);
        if (n > 9 && strcmp(name + n - 9, ".tiktoken") == 0) name[n - 9] = '\0';
        encoding = name;
    }
    const struct encoding *enc = find_encoding(encoding);
    if (!enc)
        return cb_fail(e, CB_E_INVALID, path, "unknown tiktoken encoding \"%s\" (known: r50k_base, p50k_base, "
                       "cl100k_base, o200k_base; a rank file is named after its encoding)", encoding);
    char *text = NULL;
    size_t len = 0;
    CB_TRY(cb_read_file(path, 0, &text, &len, e));
    int rc = parse(t, path, text, len, e);
    free(text);
    if (rc == CB_OK) rc = cb_bpe_merges_from_ranks(&t->bpe, e);
    t->bpe.ignore_merges = 1; /* tiktoken looks a piece up whole before merging */
    t->split[t->n_split++] = enc->split;
    for (size_t i = 0; rc == CB_OK && i < sizeof enc->specials / sizeof enc->specials[0] && enc->specials[i].text; i++) {
        const special *sp = &enc->specials[i];
        if ((size_t)sp->id < t->bpe.n_ids && t->bpe.tok_len[sp->id] >= 0)
            rc = cb_fail(e, CB_E_INVALID, path, "rank %d is the special token %s of %s", (int)sp->id, sp->text, enc->name);
        else
            rc = cb_added_add(&t->added, sp->id, (const uint8_t *)sp->text, strlen(sp->text), 1, 0, 0, e);
    }
    if (rc == CB_OK) {
        rc = cb_tokenizer_finish(t, e);
        if (rc == CB_E_INVALID && !e->where[0]) snprintf(e->where, sizeof e->where, "%s", path);
    }
    if (rc != CB_OK) cb_tokenizer_free(t);
    snprintf(t->name, sizeof t->name, "%s", enc->name);
    return rc;
}
