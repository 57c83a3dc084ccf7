/* guard_page.h: a span of memory with an unreadable page right after it, for tests that
 * place data at the span's end so that a kernel reading one byte past the data faults
 * (ASan cannot see an intrinsic load past an allocation; the MMU can). */
#ifndef CB_TESTS_GUARD_PAGE_H
#define CB_TESTS_GUARD_PAGE_H

#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

/* span bytes (a multiple of the page size) readable and writable, the next page PROT_NONE;
 * NULL if the mapping could not be made. */
static inline unsigned char *cb_test_guarded_span(size_t span) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char *map = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return NULL;
    if (mprotect(map + span, page, PROT_NONE) != 0) {
        munmap(map, span + page);
        return NULL;
    }
    return map;
}

static inline void cb_test_guarded_free(unsigned char *map, size_t span) {
    if (map) munmap(map, span + (size_t)sysconf(_SC_PAGESIZE));
}

#endif
