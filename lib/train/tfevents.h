/* tfevents.h: TensorBoard event files written by hand: TFRecord framing (length, masked
 * CRC-32C of the length, data, masked CRC-32C of the data) around Event protocol
 * buffers holding scalar summaries, so TensorBoard plots a run without TensorFlow. */
#ifndef CB_TRAIN_TFEVENTS_H
#define CB_TRAIN_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "core/error.h"

/* Event fields (tensorflow/core/util/event.proto) */
#define CB_TF_EVENT_WALL_TIME 1    /* double */
#define CB_TF_EVENT_STEP 2         /* int64 */
#define CB_TF_EVENT_FILE_VERSION 3 /* string */
#define CB_TF_EVENT_SUMMARY 5      /* Summary {repeated Value value = 1} */
#define CB_TF_EVENT_SESSION_LOG 6  /* SessionLog {SessionStatus status = 1} */
#define CB_TF_VALUE_TAG 1          /* Summary.Value: string tag */
#define CB_TF_VALUE_SIMPLE 2       /* Summary.Value: float simple_value */
#define CB_TF_SESSION_START 1

/* Encoders into buf[cap]; each returns the bytes written, or 0 when cap is too small. */
size_t cb_tf_event_file_version(unsigned char *buf, size_t cap, double wall_time);
size_t cb_tf_event_scalar(unsigned char *buf, size_t cap, double wall_time, int64_t step, const char *tag,
                          float value);
/* SessionLog START at step: TensorBoard drops what an earlier, interrupted writer logged
 * at or after this step (a resumed run starts over from there). */
size_t cb_tf_event_session_start(unsigned char *buf, size_t cap, double wall_time, int64_t step);

/* Frame one record: [u64 len][u32 masked crc(len)][data][u32 masked crc(data)]. */
int cb_tf_record_write(FILE *f, const void *data, size_t n);

typedef struct cb_tfevents {
    FILE *f;
    char path[4096];
} cb_tfevents;

/* Create dir (if needed) and dir/events.out.tfevents.<seconds>.<host>.<pid>, starting
 * with the file_version record; with start_step >= 0 a SessionLog START follows. */
int cb_tfevents_open(cb_tfevents *t, const char *dir, long start_step, cb_error *e);
/* Append one scalar and flush. */
int cb_tfevents_scalar(cb_tfevents *t, int64_t step, const char *tag, float value, double wall_time, cb_error *e);
int cb_tfevents_close(cb_tfevents *t, cb_error *e);

#endif
