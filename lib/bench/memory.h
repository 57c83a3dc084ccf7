/* memory.h: what decoding a sequence holds: the KV cache measured from the live session
 * (its caches' payload, block scales and padding counted: docs/DESIGN.md section 8), the
 * process's peak resident memory while it ran, and on a GPU the device memory the session
 * held. A session allocates its device buffers when it starts and keeps them (caches are
 * sized for max_seq_len), so what it holds at the end is its peak there. */
#ifndef CB_BENCH_MEMORY_H
#define CB_BENCH_MEMORY_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "model/model.h"
#include "infer/batch.h"

typedef struct cb_memory_result {
    int tokens;                /* tokens the cache holds */
    size_t kv_bytes;           /* payload of every layer's k, k_sem, v */
    size_t kv_allocated_bytes; /* what the caches allocated (room to grow) */
    size_t kv_values;          /* real values held (no padding) */
    double kv_bytes_per_token; /* kv_bytes / tokens */
    size_t weight_bytes;       /* the weights as decoding reads them */
    long peak_rss_bytes;       /* peak resident memory over the measurement; -1 unknown */
    int peak_rss_reset;        /* 1: the peak was reset before the measurement
                                  (/proc/self/clear_refs); 0: the process's peak so far */
    long rss_bytes;            /* resident memory at the end; -1 unknown */
    long baseline_rss_bytes;   /* resident memory before the session (the weights, the
                                  process), after freed memory went back to the system; -1 */
    long device_bytes;         /* a device with its own memory (the GPU): what the session
                                  held on it at the end (weights, cache, scratch): the bytes
                                  of the backend's buffers (held_bytes) the session added,
                                  else its free memory before minus after; -1 none or unknown */
    long device_total_bytes;   /* that device's memory; -1 */
} cb_memory_result;

/* Decode seq_len tokens into each of batch fresh sessions of m decoded together
 * (infer/batch.h; cache kinds kinds, device be, NULL: the CPU), each from its own seq_len
 * ids of prompts (batch x seq_len), and measure: tokens and kv_* summed over them (bytes per
 * token over all their tokens), the weights once, the peak with every cache held. */
int cb_memory_measure(cb_memory_result *r, const cb_model *m, cb_backend *be, const cb_kv_kinds *kinds,
                      const int32_t *prompts, int seq_len, int batch, cb_error *e);

/* The manifest's quantization mode as a cache kind: the kinds' names, q8 for q8_0, q4
 * for q4_0. 0 when unknown. */
int cb_memory_mode_kind(const char *mode, cb_kv_kind *k);

/* Reset the peak resident memory (VmHWM) of this process: 1 when the kernel allowed it. */
int cb_memory_reset_peak(void);
/* VmHWM / VmRSS of /proc/self/status in bytes (getrusage's maxrss for the peak where there
 * is no /proc); -1 unknown. */
long cb_memory_peak_rss(void);
long cb_memory_rss(void);

#endif
