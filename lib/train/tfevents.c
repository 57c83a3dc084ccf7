/* tfevents.c: protocol-buffer encoding of the few Event messages caramba writes, and
 * TFRecord framing (see tfevents.h). */
#include "train/tfevents.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "train/crc32c.h"

/* a little protobuf writer: wire types 0 (varint), 1 (64-bit), 2 (length), 5 (32-bit) */
typedef struct pb {
    unsigned char *p;
    size_t n, cap;
    int overflow;
} pb;

static void pb_byte(pb *b, unsigned char c) {
    if (b->n < b->cap) b->p[b->n] = c;
    else b->overflow = 1;
    b->n++;
}
static void pb_varint(pb *b, uint64_t v) {
    while (v >= 0x80) {
        pb_byte(b, (unsigned char)(v | 0x80));
        v >>= 7;
    }
    pb_byte(b, (unsigned char)v);
}
static void pb_key(pb *b, int field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_le(pb *b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) pb_byte(b, (unsigned char)(v >> (8 * i)));
}
static void pb_double(pb *b, int field, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    pb_key(b, field, 1);
    pb_le(b, u, 8);
}
static void pb_float(pb *b, int field, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    pb_key(b, field, 5);
    pb_le(b, u, 4);
}
static void pb_bytes(pb *b, int field, const void *data, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    for (size_t i = 0; i < n; i++) pb_byte(b, ((const unsigned char *)data)[i]);
}
static size_t pb_done(pb *b) { return b->overflow ? 0 : b->n; }

static void event_head(pb *b, double wall_time, int64_t step) {
    pb_double(b, CB_TF_EVENT_WALL_TIME, wall_time);
    if (step) {
        pb_key(b, CB_TF_EVENT_STEP, 0);
        pb_varint(b, (uint64_t)step); /* int64: negative numbers take ten bytes */
    }
}

size_t cb_tf_event_file_version(unsigned char *buf, size_t cap, double wall_time) {
    pb b = {buf, 0, cap, 0};
    event_head(&b, wall_time, 0);
    const char *v = "brain.Event:2";
    pb_bytes(&b, CB_TF_EVENT_FILE_VERSION, v, strlen(v));
    return pb_done(&b);
}

size_t cb_tf_event_scalar(unsigned char *buf, size_t cap, double wall_time, int64_t step, const char *tag,
                          float value) {
    /* Value {tag, simple_value} inside Summary {value} inside Event {summary} */
    unsigned char value_msg[600];
    pb v = {value_msg, 0, sizeof value_msg, 0};
    pb_bytes(&v, CB_TF_VALUE_TAG, tag, strlen(tag));
    pb_float(&v, CB_TF_VALUE_SIMPLE, value);
    if (v.overflow) return 0;
    unsigned char summary[640];
    pb s = {summary, 0, sizeof summary, 0};
    pb_bytes(&s, 1, value_msg, v.n);
    if (s.overflow) return 0;
    pb b = {buf, 0, cap, 0};
    event_head(&b, wall_time, step);
    pb_bytes(&b, CB_TF_EVENT_SUMMARY, summary, s.n);
    return pb_done(&b);
}

size_t cb_tf_event_session_start(unsigned char *buf, size_t cap, double wall_time, int64_t step) {
    unsigned char log[8];
    pb l = {log, 0, sizeof log, 0};
    pb_key(&l, 1, 0);
    pb_varint(&l, CB_TF_SESSION_START);
    pb b = {buf, 0, cap, 0};
    event_head(&b, wall_time, step);
    pb_bytes(&b, CB_TF_EVENT_SESSION_LOG, log, l.n);
    return pb_done(&b);
}

int cb_tf_record_write(FILE *f, const void *data, size_t n) {
    unsigned char head[12], tail[4];
    uint64_t len = n;
    for (int i = 0; i < 8; i++) head[i] = (unsigned char)(len >> (8 * i));
    uint32_t c = cb_crc32c_mask(cb_crc32c(0, head, 8));
    for (int i = 0; i < 4; i++) head[8 + i] = (unsigned char)(c >> (8 * i));
    c = cb_crc32c_mask(cb_crc32c(0, data, n));
    for (int i = 0; i < 4; i++) tail[i] = (unsigned char)(c >> (8 * i));
    if (fwrite(head, 1, 12, f) != 12 || fwrite(data, 1, n, f) != n || fwrite(tail, 1, 4, f) != 4) return -1;
    return 0;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cb_tfevents_open(cb_tfevents *t, const char *dir, long start_step, cb_error *e) {
    memset(t, 0, sizeof *t);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return cb_fail(e, CB_E_IO, dir, "cannot create: %s", strerror(errno));
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    double wall = now();
    snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%ld.%s.%ld", dir, (long)wall, host, (long)getpid());
    t->f = fopen(t->path, "ab");
    if (!t->f) return cb_fail(e, CB_E_IO, t->path, "cannot create: %s", strerror(errno));
    unsigned char buf[128];
    size_t n = cb_tf_event_file_version(buf, sizeof buf, wall);
    int bad = cb_tf_record_write(t->f, buf, n) != 0;
    if (!bad && start_step >= 0) {
        n = cb_tf_event_session_start(buf, sizeof buf, wall, start_step);
        bad = cb_tf_record_write(t->f, buf, n) != 0;
    }
    if (bad || fflush(t->f) != 0) {
        fclose(t->f);
        t->f = NULL;
        return cb_fail(e, CB_E_IO, t->path, "write failed: %s", strerror(errno));
    }
    return CB_OK;
}

int cb_tfevents_scalar(cb_tfevents *t, int64_t step, const char *tag, float value, double wall_time, cb_error *e) {
    unsigned char buf[1024];
    size_t n = cb_tf_event_scalar(buf, sizeof buf, wall_time, step, tag, value);
    if (n == 0) return cb_fail(e, CB_E_INVALID, t->path, "scalar tag too long: %.40s", tag);
    if (cb_tf_record_write(t->f, buf, n) != 0 || fflush(t->f) != 0)
        return cb_fail(e, CB_E_IO, t->path, "write failed: %s", strerror(errno));
    return CB_OK;
}

int cb_tfevents_close(cb_tfevents *t, cb_error *e) {
    if (!t->f) return CB_OK;
    int bad = fclose(t->f) != 0;
    t->f = NULL;
    return bad ? cb_fail(e, CB_E_IO, t->path, "write failed: %s", strerror(errno)) : CB_OK;
}
