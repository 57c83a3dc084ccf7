/* test_parallel.c: the infer pool runs every item of a loop exactly once, over many loops
 * back to back (the case a stale claim would break), for loops of 1 item to more than the
 * 65535 claims a lane word holds, and runs a loop started inside an item serially. */
#include "test.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend/cpu/parallel.h"

typedef struct count_job {
    _Atomic int *hits; /* (n) times each item ran */
    int n;
} count_job;

static void count_item(void *ctx, int i) {
    count_job *j = ctx;
    if (i >= 0 && i < j->n) atomic_fetch_add(&j->hits[i], 1);
}

TEST(every_item_once) {
    const int sizes[] = {1, 2, 3, 7, 64, 1000, 70001, 200000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const int n = sizes[si], loops = n > 10000 ? 3 : 200;
        _Atomic int *hits = calloc((size_t)n, sizeof *hits);
        count_job j = {hits, n};
        for (int l = 0; l < loops; l++) cb_parallel_for(n, count_item, &j);
        int bad = -1;
        for (int i = 0; i < n && bad < 0; i++)
            if (atomic_load(&hits[i]) != loops) bad = i;
        if (bad >= 0) FAILF("%d items: item %d ran %d times in %d loops", n, bad, atomic_load(&hits[bad]), loops);
        free(hits);
    }
    EXPECT(cb_parallel_threads() >= 1);
}

typedef struct nested_job {
    _Atomic int *hits; /* (outer * inner) */
    int inner;
} nested_job;

typedef struct inner_job {
    nested_job *outer;
    int row;
} inner_job;

static void inner_item(void *ctx, int i) {
    inner_job *j = ctx;
    atomic_fetch_add(&j->outer->hits[j->row * j->outer->inner + i], 1);
}

static void outer_item(void *ctx, int row) {
    inner_job j = {ctx, row};
    cb_parallel_for(((nested_job *)ctx)->inner, inner_item, &j);
}

TEST(nested_loops_run_serially_inside_an_item) {
    enum { OUTER = 9, INNER = 33 };
    _Atomic int *hits = calloc(OUTER * INNER, sizeof *hits);
    nested_job j = {hits, INNER};
    for (int l = 0; l < 50; l++) cb_parallel_for(OUTER, outer_item, &j);
    for (int i = 0; i < OUTER * INNER; i++)
        if (atomic_load(&hits[i]) != 50) {
            FAILF("nested item %d ran %d times, expected 50", i, atomic_load(&hits[i]));
            break;
        }
    free(hits);
}

/* An item's scratch: 64-byte aligned, the whole size writable, kept while requests fit, grown
 * for a larger one; each thread's its own (items on two threads write theirs at once). */
typedef struct scratch_job {
    _Atomic int bad;
} scratch_job;

static void scratch_item(void *ctx, int item) {
    scratch_job *j = ctx;
    const size_t bytes = 1000 + (size_t)item * 37;
    unsigned char *p = cb_parallel_scratch(bytes);
    if (!p || (uintptr_t)p % 64) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    memset(p, item & 0xFF, bytes);
    for (size_t i = 0; i < bytes; i++)
        if (p[i] != (unsigned char)(item & 0xFF)) {
            atomic_fetch_add(&j->bad, 1);
            return;
        }
}

TEST(scratch_per_thread) {
    unsigned char *a = cb_parallel_scratch(100);
    EXPECT(a != NULL && (uintptr_t)a % 64 == 0);
    EXPECT(cb_parallel_scratch(50) == a);
    unsigned char *b = cb_parallel_scratch(1 << 20);
    EXPECT(b != NULL && (uintptr_t)b % 64 == 0);
    memset(b, 1, 1 << 20);
    EXPECT(cb_parallel_scratch(4096) == b);
    scratch_job j = {0};
    for (int l = 0; l < 20; l++) cb_parallel_for(64, scratch_item, &j);
    EXPECT_EQ_INT(0, atomic_load(&j.bad));
}
