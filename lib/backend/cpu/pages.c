/* pages.c: the CPU backend's reserved memory (backend.h reserve/release): an anonymous
 * private mapping, which the kernel backs page by page on first touch, and
 * madvise(MADV_DONTNEED), after which a page is given back and reads zero. Partial pages
 * at a region's ends are zeroed in place (they stay, shared with their neighbours). */
#include "backend/cpu/cpu.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size(void) {
    static size_t page;
    if (!page) {
        long p = sysconf(_SC_PAGESIZE);
        page = p > 0 ? (size_t)p : 4096;
    }
    return page;
}

void *cb_cpu_reserve(cb_backend *be, size_t bytes, cb_error *e) {
    (void)be;
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        cb_fail(e, CB_E_RUNTIME, "", "out of address space: %zu MB", bytes >> 20);
        return NULL;
    }
    return p;
}

void cb_cpu_release(cb_backend *be, void *base, size_t from, size_t to) {
    (void)be;
    if (from >= to) return;
    const size_t page = page_size();
    size_t lo = (from + page - 1) / page * page, hi = to / page * page; /* the whole pages inside */
    if (lo >= hi) {
        memset((char *)base + from, 0, to - from);
        return;
    }
    memset((char *)base + from, 0, lo - from);
    memset((char *)base + hi, 0, to - hi);
    /* cannot fail on a private anonymous mapping's own pages; if it did, zero them */
    if (madvise((char *)base + lo, hi - lo, MADV_DONTNEED) != 0) memset((char *)base + lo, 0, hi - lo);
}

void cb_cpu_unreserve(cb_backend *be, void *base, size_t bytes) {
    (void)be;
    if (base) munmap(base, bytes ? bytes : 1);
}

size_t cb_cpu_resident(cb_backend *be, const void *base, size_t bytes) {
    (void)be;
    const size_t page = page_size();
    if (!base || !bytes) return 0;
    const size_t skip = (uintptr_t)base % page; /* mincore takes whole pages: the first one's start */
    base = (const char *)base - skip;
    bytes += skip;
    const size_t pages = (bytes + page - 1) / page;
    unsigned char *in = malloc(pages);
    if (!in) return 0;
    size_t n = 0;
    if (mincore((void *)base, bytes, in) == 0)
        for (size_t i = 0; i < pages; i++) n += in[i] & 1;
    free(in);
    return n * page;
}
