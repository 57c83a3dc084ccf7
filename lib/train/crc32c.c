/* crc32c.c: CRC-32C, reflected polynomial 0x82f63b78; slicing-by-8 tables, or the SSE4.2
 * crc32 instruction when the compiler targets it. */
#include "train/crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

#ifndef __SSE4_2__
static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
}
#endif

uint32_t cb_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
#ifdef __SSE4_2__
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    crc = (uint32_t)c;
    for (; n; n--, p++) crc = _mm_crc32_u8(crc, *p);
#else
    pthread_once(&table_once, table_init);
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        crc = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^ table[4][lo >> 24] ^
              table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
    }
    for (; n; n--, p++) crc = (crc >> 8) ^ table[0][(crc ^ *p) & 0xff];
#endif
    return ~crc;
}

uint32_t cb_crc32c_mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

int cb_crc32c_file(const char *path, uint32_t *crc, uint64_t *size, cb_error *e) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cb_fail(e, CB_E_IO, path, "cannot open: %s", strerror(errno));
    size_t cap = 1 << 20;
    unsigned char *buf = cb_malloc(cap, 1, e);
    if (!buf) {
        close(fd);
        return CB_E_RUNTIME;
    }
    uint32_t c = 0;
    uint64_t total = 0;
    for (;;) {
        ssize_t got = read(fd, buf, cap);
        if (got < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            close(fd);
            free(buf);
            return cb_fail(e, CB_E_IO, path, "read failed: %s", strerror(err));
        }
        if (got == 0) break;
        c = cb_crc32c(c, buf, (size_t)got);
        total += (uint64_t)got;
    }
    close(fd);
    free(buf);
    *crc = c;
    *size = total;
    return CB_OK;
}
