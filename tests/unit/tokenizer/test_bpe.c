/* test_bpe.c: the BPE engine on small vocabularies whose merges are worked out by hand,
 * its errors, and the agreement of its two merge paths (rescan and heap) and its cache. */
#include "test.h"

#include <stdlib.h>
#include "tokenizer/bpe.h"

/* ids 0..255 are the bytes; extra tokens from 256 on, in the order given */
static void init_bytes(cb_bpe *b, size_t n_ids, const char **extra) {
    cb_error e;
    if (cb_bpe_init(b, n_ids, &e) != CB_OK) { FAILF("init: %.200s", e.msg); return; }
    for (int i = 0; i < 256; i++) {
        uint8_t c = (uint8_t)i;
        cb_bpe_add_token(b, i, &c, 1, &e);
    }
    for (int i = 0; extra && extra[i]; i++)
        if (cb_bpe_add_token(b, 256 + i, (const uint8_t *)extra[i], strlen(extra[i]), &e) != CB_OK) FAILF("%.200s", e.msg);
}

static int32_t id_of(const cb_bpe *b, const char *s) { return cb_bpe_find(b, (const uint8_t *)s, strlen(s)); }

static void merge(cb_bpe *b, const char *l, const char *r, uint32_t rank) {
    cb_error e;
    if (cb_bpe_add_merge(b, id_of(b, l), id_of(b, r), rank, &e) != CB_OK) FAILF("merge %s %s: %.200s", l, r, e.msg);
}

/* ids of text joined as "1,2,3" */
static const char *enc(cb_bpe *b, const char *text) {
    static char out[512];
    cb_ids ids = {0};
    cb_error e;
    if (cb_bpe_encode(b, (const uint8_t *)text, strlen(text), &ids, &e) != CB_OK) {
        snprintf(out, sizeof out, "error: %.200s", e.msg);
        return out;
    }
    size_t k = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ids.n; i++) k += (size_t)snprintf(out + k, sizeof out - k, "%s%d", i ? "," : "", (int)ids.v[i]);
    cb_ids_free(&ids);
    return out;
}

TEST(lowest_rank_merges_first) {
    cb_bpe b;
    const char *extra[] = {"ab", "bc", "abc", NULL};
    init_bytes(&b, 260, extra);
    merge(&b, "a", "b", 0);  /* -> 256 */
    merge(&b, "b", "c", 1);  /* -> 257 */
    merge(&b, "ab", "c", 2); /* -> 258 */
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_bpe_finish(&b, &e));
    EXPECT_EQ_STR("258", enc(&b, "abc"));
    /* b c a b: (a,b) has rank 0 and goes first though to the right; then (b,c) */
    EXPECT_EQ_STR("257,256", enc(&b, "bcab"));
    EXPECT_EQ_STR("120", enc(&b, "x"));
    EXPECT_EQ_STR("99,256", enc(&b, "cab")); /* no merge (c,ab) */
    /* a later merge of the same pair replaces the earlier (Hugging Face's map), and
     * empties the cache of pieces encoded with the old merges */
    merge(&b, "a", "b", 5);
    EXPECT_EQ_STR("97,257", enc(&b, "abc")); /* now (b,c) rank 1 goes first; (a,bc) does not merge */
    cb_bpe_free(&b);
}

TEST(ties_go_to_the_leftmost_pair) {
    cb_bpe b;
    const char *extra[] = {"aa", "aaa", NULL};
    init_bytes(&b, 258, extra);
    merge(&b, "a", "a", 0);  /* 256 */
    merge(&b, "aa", "a", 1); /* 257 */
    /* "aaa": (a,a) at 0 and at 1 tie; the left one merges: [aa, a]; then (aa,a) -> aaa */
    EXPECT_EQ_STR("257", enc(&b, "aaa"));
    /* "aaaa": aa at 0, then (a,a) at 2 (rank 0) before (aa,a) (rank 1): [aa, aa] */
    EXPECT_EQ_STR("256,256", enc(&b, "aaaa"));
    /* "aaaaa": [aa, aa, a] then (aa,a) at the end: [aa, aaa] */
    EXPECT_EQ_STR("256,257", enc(&b, "aaaaa"));
    cb_bpe_free(&b);
}

TEST(ignore_merges_takes_whole_tokens) {
    cb_bpe b;
    const char *extra[] = {"ca", NULL};
    init_bytes(&b, 257, extra);
    EXPECT_EQ_STR("99,97", enc(&b, "ca")); /* no merge makes "ca" */
    b.ignore_merges = 1;
    EXPECT_EQ_STR("256", enc(&b, "ca"));
    cb_bpe_free(&b);
}

TEST(tiktoken_ranks_make_the_merges) {
    /* tiktoken: any two parts whose bytes form a token merge, with that token's rank */
    cb_bpe b;
    const char *extra[] = {"bc", "ab", "abc", NULL}; /* ranks 256, 257, 258 */
    init_bytes(&b, 259, extra);
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_bpe_merges_from_ranks(&b, &e));
    EXPECT_EQ_INT(4, (long long)b.n_pairs); /* (b,c) (a,b) (a,bc) (ab,c): the last two make abc */
    EXPECT_EQ_STR("258", enc(&b, "abc"));    /* [a, bc] then (a,bc) */
    EXPECT_EQ_STR("256,256", enc(&b, "bcbc"));
    cb_bpe_free(&b);
}

TEST(vocabulary_errors) {
    cb_bpe b;
    cb_error e;
    const char *extra[] = {"ab", NULL};
    init_bytes(&b, 300, extra);
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_add_token(&b, 257, (const uint8_t *)"ab", 2, &e));
    EXPECT(strstr(e.msg, "ids 256 and 257 are the same token") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_add_token(&b, 256, (const uint8_t *)"xy", 2, &e));
    EXPECT(strstr(e.msg, "given twice") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_add_token(&b, 300, (const uint8_t *)"xy", 2, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_add_merge(&b, 'x', 'y', 0, &e));
    EXPECT(strstr(e.msg, "makes no token") != NULL);
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_add_merge(&b, 'x', 299, 0, &e));
    cb_bpe_free(&b);

    EXPECT_EQ_INT(CB_OK, cb_bpe_init(&b, 10, &e));
    EXPECT_EQ_INT(CB_OK, cb_bpe_add_token(&b, 0, (const uint8_t *)"a", 1, &e));
    EXPECT_EQ_INT(CB_E_INVALID, cb_bpe_finish(&b, &e));
    EXPECT(strstr(e.msg, "no token for the byte 0x00") != NULL);
    cb_bpe_free(&b);
}

TEST(heap_and_rescan_paths_agree) {
    /* every string over {a,b,c,d} of length 2..4 is a token with a random rank */
    cb_bpe b;
    cb_error e;
    size_t n_extra = 16 + 64 + 256;
    EXPECT_EQ_INT(CB_OK, cb_bpe_init(&b, 256 + n_extra, &e));
    for (int i = 0; i < 256; i++) {
        uint8_t c = (uint8_t)i;
        cb_bpe_add_token(&b, i, &c, 1, &e);
    }
    int32_t *perm = malloc(n_extra * sizeof *perm);
    for (size_t i = 0; i < n_extra; i++) perm[i] = (int32_t)i;
    srand(7);
    for (size_t i = n_extra - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1);
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    size_t k = 0;
    for (int len = 2; len <= 4; len++) {
        int count = 1 << (2 * len);
        for (int v = 0; v < count; v++) {
            uint8_t s[4];
            for (int i = 0; i < len; i++) s[i] = (uint8_t)('a' + ((v >> (2 * i)) & 3));
            EXPECT_EQ_INT(CB_OK, cb_bpe_add_token(&b, 256 + perm[k++], s, (size_t)len, &e));
        }
    }
    free(perm);
    EXPECT_EQ_INT(CB_OK, cb_bpe_merges_from_ranks(&b, &e));
    EXPECT_EQ_INT(CB_OK, cb_bpe_finish(&b, &e));
    uint8_t text[300];
    int mismatches = 0;
    for (int trial = 0; trial < 300; trial++) {
        size_t n = 1 + (size_t)rand() % sizeof text;
        for (size_t i = 0; i < n; i++) text[i] = (uint8_t)("abcdx"[rand() % 5]);
        cb_ids r1 = {0}, r2 = {0}, r3 = {0};
        b.heap_threshold = SIZE_MAX;
        cb_bpe_encode(&b, text, n, &r1, &e);
        cb_bpe_encode(&b, text, n, &r3, &e); /* again: from the cache when short */
        b.heap_threshold = 0;
        cb_bpe_encode(&b, text, n, &r2, &e);
        if (r1.n != r2.n || memcmp(r1.v, r2.v, r1.n * sizeof *r1.v) != 0 || r1.n != r3.n ||
            memcmp(r1.v, r3.v, r1.n * sizeof *r1.v) != 0)
            mismatches++;
        /* the ids spell the text */
        size_t pos = 0;
        for (size_t i = 0; i < r2.n; i++) {
            int32_t id = r2.v[i];
            if (pos + (size_t)b.tok_len[id] > n || memcmp(b.blob.p + b.tok_off[id], text + pos, (size_t)b.tok_len[id])) {
                FAILF("ids do not spell the text at %zu", pos);
                break;
            }
            pos += (size_t)b.tok_len[id];
        }
        if (pos != n) FAILF("ids cover %zu of %zu bytes", pos, n);
        cb_ids_free(&r1);
        cb_ids_free(&r2);
        cb_ids_free(&r3);
    }
    EXPECT_EQ_INT(0, mismatches);
    cb_bpe_free(&b);
}
