/* sha256.h: SHA-256 (FIPS 180-4), for content fingerprints such as cb.plan_sha256. */
#ifndef CB_CORE_SHA256_H
#define CB_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct cb_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;
    unsigned char block[64];
    size_t n_block;
} cb_sha256;

void cb_sha256_init(cb_sha256 *s);
void cb_sha256_update(cb_sha256 *s, const void *data, size_t n);
void cb_sha256_final(cb_sha256 *s, unsigned char digest[32]);
/* hex (65 bytes incl. NUL) of data */
void cb_sha256_hex(const void *data, size_t n, char hex[65]);

#endif
