/* bpe.c: vocabulary and merge tables (open-addressing hashes), merging of one piece,
 * and the cache of recent pieces. */
#include "tokenizer/bpe.h"

#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS (1u << 17)
#define CACHE_MAX_PIECE 64          /* longer pieces are not cached */
#define CACHE_ARENA (16u << 20)     /* bytes of keys (or ids) before the cache is emptied */
#define SMALL_MAX 256               /* stack arrays of the rescanning merge */

static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    return h | 1; /* never 0: the cache's empty mark */
}

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 32);
}

int cb_bpe_init(cb_bpe *b, size_t n_ids, cb_error *e) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < 256; i++) b->byte_id[i] = -1;
    b->heap_threshold = 128;
    if (n_ids > INT32_MAX) return cb_fail(e, CB_E_INVALID, "", "%zu token ids are too many", n_ids);
    b->n_ids = n_ids;
    b->tok_off = cb_calloc(n_ids, sizeof *b->tok_off, e);
    b->tok_len = cb_malloc(n_ids, sizeof *b->tok_len, e);
    size_t cap = 1024;
    while (cap < 2 * n_ids) cap *= 2;
    b->tok_slot = cb_malloc(cap, sizeof *b->tok_slot, e);
    b->cache = cb_calloc(CACHE_SLOTS, sizeof *b->cache, e);
    if (!b->tok_off || !b->tok_len || !b->tok_slot || !b->cache) {
        cb_bpe_free(b);
        return CB_E_RUNTIME;
    }
    for (size_t i = 0; i < n_ids; i++) b->tok_len[i] = -1;
    for (size_t i = 0; i < cap; i++) b->tok_slot[i] = -1;
    b->tok_mask = cap - 1;
    b->cache_mask = CACHE_SLOTS - 1;
    return CB_OK;
}

void cb_bpe_free(cb_bpe *b) {
    free(b->tok_off);
    free(b->tok_len);
    cb_bytes_free(&b->blob);
    free(b->tok_slot);
    free(b->pair_key);
    free(b->pair_val);
    free(b->cache);
    cb_bytes_free(&b->cache_keys);
    cb_ids_free(&b->cache_ids);
    memset(b, 0, sizeof *b);
}

static void cache_clear(cb_bpe *b) {
    memset(b->cache, 0, (b->cache_mask + 1) * sizeof *b->cache);
    b->cache_keys.n = 0;
    b->cache_ids.n = 0;
}

static inline const uint8_t *tok_bytes(const cb_bpe *b, int32_t id) { return b->blob.p + b->tok_off[id]; }

static int32_t find_hashed(const cb_bpe *b, const uint8_t *p, size_t n, uint64_t h) {
    for (size_t i = h & b->tok_mask;; i = (i + 1) & b->tok_mask) {
        int32_t id = b->tok_slot[i];
        if (id < 0) return -1;
        if ((size_t)b->tok_len[id] == n && memcmp(tok_bytes(b, id), p, n) == 0) return id;
    }
}

int32_t cb_bpe_find(const cb_bpe *b, const uint8_t *bytes, size_t n) {
    return find_hashed(b, bytes, n, hash_bytes(bytes, n));
}

static int grow_tokens(cb_bpe *b, cb_error *e) {
    size_t cap = (b->tok_mask + 1) * 2;
    int32_t *slot = cb_malloc(cap, sizeof *slot, e);
    if (!slot) return CB_E_RUNTIME;
    for (size_t i = 0; i < cap; i++) slot[i] = -1;
    for (size_t i = 0; i <= b->tok_mask; i++) {
        int32_t id = b->tok_slot[i];
        if (id < 0) continue;
        size_t j = hash_bytes(tok_bytes(b, id), (size_t)b->tok_len[id]) & (cap - 1);
        while (slot[j] >= 0) j = (j + 1) & (cap - 1);
        slot[j] = id;
    }
    free(b->tok_slot);
    b->tok_slot = slot;
    b->tok_mask = cap - 1;
    return CB_OK;
}

int cb_bpe_add_token(cb_bpe *b, int32_t id, const uint8_t *bytes, size_t n, cb_error *e) {
    if (id < 0 || (size_t)id >= b->n_ids) return cb_fail(e, CB_E_INVALID, "", "token id %d is out of range", (int)id);
    if (n == 0) return cb_fail(e, CB_E_INVALID, "", "token %d is empty", (int)id);
    if (n > INT32_MAX || b->blob.n > UINT32_MAX - n)
        return cb_fail(e, CB_E_INVALID, "", "token %d makes the vocabulary too large", (int)id);
    if (b->tok_len[id] >= 0) return cb_fail(e, CB_E_INVALID, "", "token id %d is given twice", (int)id);
    uint64_t h = hash_bytes(bytes, n);
    int32_t other = find_hashed(b, bytes, n, h);
    if (other >= 0) return cb_fail(e, CB_E_INVALID, "", "ids %d and %d are the same token", (int)other, (int)id);
    if (b->cache_keys.n) cache_clear(b); /* what was cached may merge otherwise now */
    if (2 * (b->n_tokens + 1) > b->tok_mask + 1) CB_TRY(grow_tokens(b, e));
    b->tok_off[id] = (uint32_t)b->blob.n;
    CB_TRY(cb_bytes_append(&b->blob, bytes, n, e));
    b->tok_len[id] = (int32_t)n;
    size_t i = h & b->tok_mask;
    while (b->tok_slot[i] >= 0) i = (i + 1) & b->tok_mask;
    b->tok_slot[i] = id;
    b->n_tokens++;
    if (n == 1) b->byte_id[bytes[0]] = id;
    return CB_OK;
}

static int grow_pairs(cb_bpe *b, cb_error *e) {
    size_t cap = b->pair_key ? (b->pair_mask + 1) * 2 : 4096;
    uint64_t *key = cb_malloc(cap, sizeof *key, e), *val = cb_malloc(cap, sizeof *val, e);
    if (!key || !val) {
        free(key);
        free(val);
        return CB_E_RUNTIME;
    }
    memset(key, 0xff, cap * sizeof *key);
    if (b->pair_key) {
        for (size_t i = 0; i <= b->pair_mask; i++) {
            if (b->pair_key[i] == UINT64_MAX) continue;
            size_t j = hash_pair(b->pair_key[i]) & (cap - 1);
            while (key[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
            key[j] = b->pair_key[i];
            val[j] = b->pair_val[i];
        }
    }
    free(b->pair_key);
    free(b->pair_val);
    b->pair_key = key;
    b->pair_val = val;
    b->pair_mask = cap - 1;
    return CB_OK;
}

/* Insert or replace. */
static int put_pair(cb_bpe *b, int32_t left, int32_t right, uint32_t rank, int32_t merged, cb_error *e) {
    if (b->cache_keys.n) cache_clear(b);
    if (!b->pair_key || 2 * (b->n_pairs + 1) > b->pair_mask + 1) CB_TRY(grow_pairs(b, e));
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t i = hash_pair(key) & b->pair_mask;
    while (b->pair_key[i] != UINT64_MAX && b->pair_key[i] != key) i = (i + 1) & b->pair_mask;
    if (b->pair_key[i] == UINT64_MAX) b->n_pairs++;
    b->pair_key[i] = key;
    b->pair_val[i] = (uint64_t)rank << 32 | (uint32_t)merged;
    return CB_OK;
}

/* rank << 32 | merged id of the pair, or UINT64_MAX when the pair does not merge. */
static inline uint64_t get_pair(const cb_bpe *b, int32_t left, int32_t right) {
    if (!b->pair_key) return UINT64_MAX;
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    for (size_t i = hash_pair(key) & b->pair_mask;; i = (i + 1) & b->pair_mask) {
        if (b->pair_key[i] == key) return b->pair_val[i];
        if (b->pair_key[i] == UINT64_MAX) return UINT64_MAX;
    }
}

int cb_bpe_add_merge(cb_bpe *b, int32_t left, int32_t right, uint32_t rank, cb_error *e) {
    if (left < 0 || right < 0 || (size_t)left >= b->n_ids || (size_t)right >= b->n_ids ||
        b->tok_len[left] < 0 || b->tok_len[right] < 0)
        return cb_fail(e, CB_E_INVALID, "", "merge of ids %d and %d: no such token", (int)left, (int)right);
    if (rank == UINT32_MAX) return cb_fail(e, CB_E_INVALID, "", "merge rank %u is too large", rank);
    size_t nl = (size_t)b->tok_len[left], nr = (size_t)b->tok_len[right];
    uint8_t stack[256];
    uint8_t *cat = nl + nr <= sizeof stack ? stack : cb_malloc(nl + nr, 1, e);
    if (!cat) return CB_E_RUNTIME;
    memcpy(cat, tok_bytes(b, left), nl);
    memcpy(cat + nl, tok_bytes(b, right), nr);
    int32_t merged = cb_bpe_find(b, cat, nl + nr);
    if (cat != stack) free(cat);
    if (merged < 0) return cb_fail(e, CB_E_INVALID, "", "merge of ids %d and %d makes no token of the vocabulary",
                                   (int)left, (int)right);
    return put_pair(b, left, right, rank, merged, e);
}

int cb_bpe_merges_from_ranks(cb_bpe *b, cb_error *e) {
    for (size_t id = 0; id < b->n_ids; id++) {
        int32_t n = b->tok_len[id];
        if (n < 2) continue;
        const uint8_t *t = tok_bytes(b, (int32_t)id);
        for (int32_t k = 1; k < n; k++) {
            int32_t l = cb_bpe_find(b, t, (size_t)k);
            if (l < 0) continue;
            int32_t r = cb_bpe_find(b, t + k, (size_t)(n - k));
            if (r < 0) continue;
            CB_TRY(put_pair(b, l, r, (uint32_t)id, (int32_t)id, e));
        }
    }
    return CB_OK;
}

int cb_bpe_finish(cb_bpe *b, cb_error *e) {
    for (int i = 0; i < 256; i++)
        if (b->byte_id[i] < 0)
            return cb_fail(e, CB_E_INVALID, "", "the vocabulary has no token for the byte 0x%02X "
                           "(byte-level BPE needs all 256)", i);
    return CB_OK;
}

/* Rescanning merge for short pieces: sym[0..m) are the current tokens, rank[i] and
 * merged[i] describe the pair (sym[i], sym[i+1]). */
static int merge_small(const cb_bpe *b, const uint8_t *p, size_t n, cb_ids *out, cb_error *e) {
    int32_t sym[SMALL_MAX], merged[SMALL_MAX];
    uint32_t rank[SMALL_MAX];
    size_t m = n;
    for (size_t i = 0; i < m; i++) sym[i] = b->byte_id[p[i]];
    for (size_t i = 0; i + 1 < m; i++) {
        uint64_t v = get_pair(b, sym[i], sym[i + 1]);
        rank[i] = (uint32_t)(v >> 32);
        merged[i] = (int32_t)(uint32_t)v;
    }
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        size_t at = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rank[i] < best) { best = rank[i]; at = i; }
        if (best == UINT32_MAX) break;
        sym[at] = merged[at];
        /* drop sym[at+1] and the pair (at+1, at+2); pairs after it shift down by one */
        size_t tail = m - at - 2; /* symbols after at+1 */
        memmove(sym + at + 1, sym + at + 2, tail * sizeof *sym);
        if (tail > 0) {
            memmove(rank + at + 1, rank + at + 2, (tail - 1) * sizeof *rank);
            memmove(merged + at + 1, merged + at + 2, (tail - 1) * sizeof *merged);
        }
        m--;
        if (at + 1 < m) {
            uint64_t v = get_pair(b, sym[at], sym[at + 1]);
            rank[at] = (uint32_t)(v >> 32);
            merged[at] = (int32_t)(uint32_t)v;
        }
        if (at > 0) {
            uint64_t v = get_pair(b, sym[at - 1], sym[at]);
            rank[at - 1] = (uint32_t)(v >> 32);
            merged[at - 1] = (int32_t)(uint32_t)v;
        }
    }
    CB_TRY(cb_ids_reserve(out, m, e));
    memcpy(out->v + out->n, sym, m * sizeof *sym);
    out->n += m;
    return CB_OK;
}

/* A candidate merge of the symbol at pos with its right neighbour. */
typedef struct heap_item {
    uint32_t rank;
    uint32_t pos;
    int32_t merged;
} heap_item;

static inline int heap_less(heap_item a, heap_item c) {
    return a.rank < c.rank || (a.rank == c.rank && a.pos < c.pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!heap_less(it, h[parent])) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0) h[i] = last;
    return top;
}

/* Heap merge for long pieces, in the manner of Hugging Face's Word::merge_all: symbols
 * form a linked list; a popped candidate whose pair has changed since it was pushed is
 * stale and skipped (its merged id no longer matches). Lowest (rank, position) first,
 * as the rescanning merge does. */
static int merge_heap(const cb_bpe *b, const uint8_t *p, size_t n, cb_ids *out, cb_error *e) {
    int32_t *sym = cb_malloc(n, sizeof *sym, e);
    int32_t *prev = cb_malloc(n, sizeof *prev, e), *next = cb_malloc(n, sizeof *next, e);
    heap_item *heap = cb_malloc(3 * n, sizeof *heap, e); /* n-1 initial pairs, at most 2 per merge (n-1) */
    int rc = CB_E_RUNTIME;
    if (!sym || !prev || !next || !heap) goto done;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        sym[i] = b->byte_id[p[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint64_t v = get_pair(b, sym[i], sym[i + 1]);
        if (v != UINT64_MAX) heap_push(heap, &hn, (heap_item){(uint32_t)(v >> 32), (uint32_t)i, (int32_t)(uint32_t)v});
    }
    while (hn > 0) {
        heap_item it = heap_pop(heap, &hn);
        int32_t at = (int32_t)it.pos;
        if (sym[at] < 0 || next[at] < 0) continue; /* merged away, or now last */
        int32_t right = next[at];
        uint64_t v = get_pair(b, sym[at], sym[right]);
        if (v == UINT64_MAX || (int32_t)(uint32_t)v != it.merged) continue; /* stale */
        sym[at] = it.merged;
        sym[right] = -1;
        next[at] = next[right];
        if (next[right] >= 0) prev[next[right]] = at;
        if (prev[at] >= 0) {
            v = get_pair(b, sym[prev[at]], sym[at]);
            if (v != UINT64_MAX) heap_push(heap, &hn, (heap_item){(uint32_t)(v >> 32), (uint32_t)prev[at], (int32_t)(uint32_t)v});
        }
        if (next[at] >= 0) {
            v = get_pair(b, sym[at], sym[next[at]]);
            if (v != UINT64_MAX) heap_push(heap, &hn, (heap_item){(uint32_t)(v >> 32), (uint32_t)at, (int32_t)(uint32_t)v});
        }
    }
    rc = CB_OK;
    for (int32_t i = 0; i >= 0 && rc == CB_OK; i = next[i]) rc = cb_ids_push(out, sym[i], e);
done:
    free(sym);
    free(prev);
    free(next);
    free(heap);
    return rc;
}

int cb_bpe_encode(cb_bpe *b, const uint8_t *p, size_t n, cb_ids *out, cb_error *e) {
    if (n == 1) return cb_ids_push(out, b->byte_id[p[0]], e);
    uint64_t h = hash_bytes(p, n);
    if (b->ignore_merges) {
        int32_t id = find_hashed(b, p, n, h);
        if (id >= 0) return cb_ids_push(out, id, e);
    }
    cb_bpe_cache_slot *slot = NULL;
    if (n <= CACHE_MAX_PIECE) {
        slot = &b->cache[h & b->cache_mask];
        if (slot->hash == h && slot->key_len == n && memcmp(b->cache_keys.p + slot->key_off, p, n) == 0) {
            CB_TRY(cb_ids_reserve(out, slot->n_ids, e));
            memcpy(out->v + out->n, b->cache_ids.v + slot->ids_off, slot->n_ids * sizeof *out->v);
            out->n += slot->n_ids;
            return CB_OK;
        }
    }
    size_t first = out->n;
    if (n <= b->heap_threshold && n <= SMALL_MAX) CB_TRY(merge_small(b, p, n, out, e));
    else CB_TRY(merge_heap(b, p, n, out, e));
    if (slot) {
        size_t k = out->n - first;
        if (b->cache_keys.n + n > CACHE_ARENA || (b->cache_ids.n + k) * sizeof(int32_t) > CACHE_ARENA) cache_clear(b);
        slot->hash = 0; /* filled last, so a failed append leaves no half entry */
        uint32_t key_off = (uint32_t)b->cache_keys.n, ids_off = (uint32_t)b->cache_ids.n;
        CB_TRY(cb_bytes_append(&b->cache_keys, p, n, e));
        CB_TRY(cb_ids_reserve(&b->cache_ids, k, e));
        memcpy(b->cache_ids.v + b->cache_ids.n, out->v + first, k * sizeof *out->v);
        b->cache_ids.n += k;
        *slot = (cb_bpe_cache_slot){h, key_off, ids_off, (uint16_t)n, (uint16_t)k};
    }
    return CB_OK;
}
