/* parallel.c: a pool of workers that claim the items of one loop at a time.
 *
 * A loop's items are split into one contiguous lane per thread (the caller is thread 0).
 * A thread claims the items of its own lane in order, then those left in the other lanes,
 * so that each thread streams through one contiguous range of memory while no thread waits
 * for another: interleaved small items had each core's prefetcher running into the other's
 * rows (q8_0 decode 180 tokens/s against 295 with contiguous ranges).
 *
 * A lane is one 64-bit word: the loop's generation (32 bits, +1 per loop), the lane's end
 * (16 bits) and its next unclaimed item (16 bits). A claim is a compare-and-swap of next to
 * next + 1 in a word of the right generation, so it can never land in another loop; the
 * loop's fn and ctx are read only after a successful claim, and the caller publishes the
 * next loop only once every item of this one is done, so they cannot change under a
 * claimed item. Loops of more than 65535 items hand out runs of consecutive items. */
#include "backend/cpu/parallel.h"

#include <omp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 64
#define MAX_CLAIMS 65535          /* claims per loop: a 16-bit field of the lane word */
/* How long a worker waits for the next loop before it sleeps: 50 us by default, 5 ms with
 * OMP_WAIT_POLICY=active, and with passive 5 us, about the gap between one decode step's
 * loops. Sleeping at once (as OpenMP's passive does) cost a quiet machine a fifth of its
 * decode speed (q8_0: 236-267 tokens/s against 305-333), while a 5 us spin kept most of
 * it (278-305) and, on cores shared with other busy processes, decoded about as fast as
 * sleeping (173 against 182; 50 us: 142). */
#define SPIN_DEFAULT_NS 50000L
#define SPIN_PASSIVE_NS 5000L
#define SPIN_ACTIVE_NS 5000000L

typedef struct lane {
    _Alignas(64) _Atomic uint64_t word; /* gen << 32 | end << 16 | next; a cache line each */
} lane;

static struct {
    int threads;              /* the caller and the workers */
    long spin_ns;             /* how long a worker spins for the next loop */
    lane lanes[MAX_THREADS];
    _Alignas(64) _Atomic uint32_t gen; /* the loop in flight (workers wait for a change) */
    _Atomic int done;         /* claims of the current loop finished */
    _Atomic int sleepers;     /* workers asleep on cv */
    /* the current loop, valid while it has unfinished claims (atomic only because a worker
       may read them as the next loop is published, before its claim fails) */
    _Atomic(cb_parallel_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int n, per;       /* items, and items per claim */
    uint32_t count;           /* the caller's count of loops */
    pthread_mutex_t caller;   /* one loop at a time */
    pthread_mutex_t m;        /* with cv: sleeping workers */
    pthread_cond_t cv;
} pool = {.caller = PTHREAD_MUTEX_INITIALIZER, .m = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static _Atomic int serial_only; /* cb_parallel_set_serial */
static _Thread_local int in_item; /* a loop started from inside an item runs serially */

/* Claim and run the items left in lane l of loop gen; returns the claims it ran. */
static int drain_lane(int l, uint32_t gen) {
    _Atomic uint64_t *word = &pool.lanes[l].word;
    uint64_t w = atomic_load_explicit(word, memory_order_acquire);
    int ran = 0;
    for (;;) {
        if ((uint32_t)(w >> 32) != gen || (w & 0xffff) >= ((w >> 16) & 0xffff)) return ran;
        if (!atomic_compare_exchange_weak_explicit(word, &w, w + 1, memory_order_acq_rel, memory_order_acquire))
            continue;
        const int claim = (int)(w & 0xffff), per = atomic_load_explicit(&pool.per, memory_order_relaxed);
        const int n = atomic_load_explicit(&pool.n, memory_order_relaxed);
        const cb_parallel_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&pool.ctx, memory_order_relaxed);
        const int i1 = (claim + 1) * per < n ? (claim + 1) * per : n;
        in_item = 1;
        for (int i = claim * per; i < i1; i++) fn(ctx, i);
        in_item = 0;
        ran++;
        w = atomic_load_explicit(word, memory_order_acquire);
    }
}

/* Thread t's part of loop gen: its own lane, then what is left of the others. The claims
 * it ran are counted in once at the end (a shared counter bumped per claim cost a cache
 * line's round trip between the cores every claim). */
static void run_loop(int t, uint32_t gen) {
    int ran = 0;
    for (int k = 0; k < pool.threads; k++) ran += drain_lane((t + k) % pool.threads, gen);
    if (ran) atomic_fetch_add_explicit(&pool.done, ran, memory_order_release);
}

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static void *worker_main(void *arg) {
    const int t = (int)(intptr_t)arg;
    uint32_t seen = atomic_load(&pool.gen);
    for (;;) {
        uint32_t gen;
        const long until = now_ns() + pool.spin_ns;
        for (long spins = 1; (gen = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen; spins++) {
            CPU_RELAX();
            if (spins % 64 == 0 && now_ns() >= until) break;
        }
        if (gen == seen) { // sleep until the next loop is published
            pthread_mutex_lock(&pool.m);
            atomic_fetch_add(&pool.sleepers, 1);
            while ((gen = atomic_load(&pool.gen)) == seen) pthread_cond_wait(&pool.cv, &pool.m);
            atomic_fetch_sub(&pool.sleepers, 1);
            pthread_mutex_unlock(&pool.m);
        }
        seen = gen;
        run_loop(t, gen);
    }
    return NULL;
}

static void pool_start(void) {
    int threads = omp_get_max_threads();
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    pool.spin_ns = SPIN_DEFAULT_NS;
    const char *policy = getenv("OMP_WAIT_POLICY");
    if (policy && strcasecmp(policy, "passive") == 0) pool.spin_ns = SPIN_PASSIVE_NS;
    if (policy && strcasecmp(policy, "active") == 0) pool.spin_ns = SPIN_ACTIVE_NS;
    pool.threads = 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int t = 1; t < threads; t++) {
        pthread_t th;
        if (pthread_create(&th, &attr, worker_main, (void *)(intptr_t)t) != 0) break;
        pool.threads++;
    }
    pthread_attr_destroy(&attr);
}

void cb_parallel_set_serial(int serial) { atomic_store(&serial_only, serial != 0); }

int cb_parallel_threads(void) {
    pthread_once(&pool_once, pool_start);
    return pool.threads;
}

void cb_parallel_for(int n, cb_parallel_fn fn, void *ctx) {
    if (n <= 0) return;
    pthread_once(&pool_once, pool_start);
    if (n == 1 || pool.threads == 1 || in_item || atomic_load_explicit(&serial_only, memory_order_relaxed) ||
        pthread_mutex_trylock(&pool.caller) != 0) {
        for (int i = 0; i < n; i++) fn(ctx, i);
        return;
    }
    const int T = pool.threads, per = (n + MAX_CLAIMS - 1) / MAX_CLAIMS, claims = (n + per - 1) / per;
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.per, per, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    const uint32_t gen = ++pool.count;
    for (int t = 0; t < T; t++) {
        const uint64_t start = (uint64_t)claims * t / T, end = (uint64_t)claims * (t + 1) / T;
        atomic_store_explicit(&pool.lanes[t].word, (uint64_t)gen << 32 | end << 16 | start, memory_order_release);
    }
    atomic_store(&pool.gen, gen); // seq_cst, against the sleepers check below
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.m);
        pthread_cond_broadcast(&pool.cv);
        pthread_mutex_unlock(&pool.m);
    }
    run_loop(0, gen);
    // only claims a worker has started are left; one descheduled inside its claim needs a
    // CPU back, so yield now and then
    for (long spins = 1; atomic_load_explicit(&pool.done, memory_order_acquire) < claims; spins++) {
        CPU_RELAX();
        if (spins % 4096 == 0) sched_yield();
    }
    pthread_mutex_unlock(&pool.caller);
}

static _Thread_local struct {
    void *p;
    size_t bytes;
} t_scratch;

void *cb_parallel_scratch(size_t bytes) {
    if (bytes <= t_scratch.bytes) return t_scratch.p;
    const size_t rounded = (bytes + 4095) / 4096 * 4096;
    void *p = aligned_alloc(64, rounded);
    if (!p) return NULL;
    free(t_scratch.p);
    t_scratch.p = p;
    t_scratch.bytes = rounded;
    return p;
}
