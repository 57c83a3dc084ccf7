/* crc32c.h: CRC-32C (Castagnoli), the checksum of TFRecord framing and of the files of a
 * checkpoint (hardware instruction where the CPU has SSE4.2, tables elsewhere). */
#ifndef CB_TRAIN_CRC32C_H
#define CB_TRAIN_CRC32C_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"

/* Extend crc (0 to start) over data[n]. crc32c("123456789") = 0xe3069283. */
uint32_t cb_crc32c(uint32_t crc, const void *data, size_t n);
/* TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t cb_crc32c_mask(uint32_t crc);
/* The CRC-32C of a whole file and its size. An unreadable file is CB_E_IO. */
int cb_crc32c_file(const char *path, uint32_t *crc, uint64_t *size, cb_error *e);

#endif
