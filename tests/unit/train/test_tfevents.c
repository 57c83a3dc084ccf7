/* test_tfevents.c: CRC-32C against its check values, and TensorBoard event files decoded
 * back: TFRecord framing with masked CRCs, Event protocol buffers, scalar summaries. */
#include <stdint.h>
#include <stdlib.h>
#include "core/atomic_file.h"
#include "core/atomic_dir.h"
#include "model/model.h"
#include "test.h"
#include "train/crc32c.h"
#include "train/tfevents.h"
#include "unit/train/train_util.h"

TEST(crc32c_check_values) {
    EXPECT_EQ_INT(0xe3069283u, cb_crc32c(0, "123456789", 9));       /* the CRC-32C check value */
    EXPECT_EQ_INT(0x0u, cb_crc32c(0, "", 0));
    unsigned char zeros[32] = {0};
    EXPECT_EQ_INT(0x8a9136aau, cb_crc32c(0, zeros, 32));             /* RFC 3720 B.4: 32 bytes of zeros */
    unsigned char ones[32];
    memset(ones, 0xff, sizeof ones);
    EXPECT_EQ_INT(0x62a8ab43u, cb_crc32c(0, ones, 32));              /* RFC 3720 B.4: 32 bytes of 0xff */
    /* extending in pieces gives the same as at once */
    EXPECT_EQ_INT(cb_crc32c(0, "123456789", 9), cb_crc32c(cb_crc32c(0, "1234", 4), "56789", 5));
    EXPECT_EQ_INT(((0xe3069283u >> 15) | (0xe3069283u << 17)) + 0xa282ead8u, cb_crc32c_mask(0xe3069283u));
}

/* ---- a small decoder, independent of the encoder ---- */

typedef struct {
    const unsigned char *p, *end;
    int bad;
} rd;

static uint64_t varint(rd *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) { r->bad = 1; return 0; }
        unsigned char c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return v;
    }
    r->bad = 1;
    return 0;
}

static uint64_t le(rd *r, int n) {
    uint64_t v = 0;
    if (r->end - r->p < n) { r->bad = 1; return 0; }
    for (int i = 0; i < n; i++) v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

typedef struct {
    double wall_time;
    int64_t step;
    char file_version[64];
    char tag[64];
    float value;
    int has_value, session_status;
} event;

static void parse_value(rd *r, event *ev) { /* Summary.Value */
    while (r->p < r->end && !r->bad) {
        uint64_t key = varint(r);
        if (key == (1 << 3 | 2)) {
            uint64_t n = varint(r);
            if (n >= sizeof ev->tag || (uint64_t)(r->end - r->p) < n) { r->bad = 1; return; }
            memcpy(ev->tag, r->p, n);
            ev->tag[n] = 0;
            r->p += n;
        } else if (key == (2 << 3 | 5)) {
            uint32_t u = (uint32_t)le(r, 4);
            memcpy(&ev->value, &u, 4);
            ev->has_value = 1;
        } else r->bad = 1;
    }
}

static int parse_event(const unsigned char *data, size_t n, event *ev) {
    memset(ev, 0, sizeof *ev);
    rd r = {data, data + n, 0};
    while (r.p < r.end && !r.bad) {
        uint64_t key = varint(&r);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 1) {
            uint64_t u = le(&r, 8);
            memcpy(&ev->wall_time, &u, 8);
        } else if (field == 2 && wire == 0) {
            ev->step = (int64_t)varint(&r);
        } else if (wire == 2) {
            uint64_t len = varint(&r);
            if ((uint64_t)(r.end - r.p) < len) return -1;
            rd sub = {r.p, r.p + len, 0};
            if (field == 3) {
                if (len >= sizeof ev->file_version) return -1;
                memcpy(ev->file_version, r.p, len);
                ev->file_version[len] = 0;
            } else if (field == 5) { /* Summary: repeated Value value = 1 */
                uint64_t k = varint(&sub);
                uint64_t vlen = varint(&sub);
                if (k != (1 << 3 | 2) || (uint64_t)(sub.end - sub.p) != vlen) return -1;
                parse_value(&sub, ev);
            } else if (field == 6) { /* SessionLog: status = 1 */
                if (varint(&sub) != (1 << 3 | 0)) return -1;
                ev->session_status = (int)varint(&sub);
            } else return -1;
            if (sub.bad) return -1;
            r.p += len;
        } else return -1;
    }
    return r.bad ? -1 : 0;
}

/* every record of a file: framing and both CRCs checked */
static int read_records(const char *path, event *evs, int max) {
    char *text;
    size_t len;
    cb_error e;
    if (cb_read_file(path, 0, &text, &len, &e) != CB_OK) return -1;
    const unsigned char *p = (const unsigned char *)text, *end = p + len;
    int n = 0;
    while (p < end && n < max) {
        if (end - p < 12) { n = -1; break; }
        uint64_t rlen = 0;
        uint32_t lcrc = 0, dcrc = 0;
        for (int i = 0; i < 8; i++) rlen |= (uint64_t)p[i] << (8 * i);
        for (int i = 0; i < 4; i++) lcrc |= (uint32_t)p[8 + i] << (8 * i);
        if (lcrc != cb_crc32c_mask(cb_crc32c(0, p, 8)) || (uint64_t)(end - p - 12) < rlen + 4) { n = -1; break; }
        const unsigned char *data = p + 12;
        for (int i = 0; i < 4; i++) dcrc |= (uint32_t)data[rlen + i] << (8 * i);
        if (dcrc != cb_crc32c_mask(cb_crc32c(0, data, rlen)) || parse_event(data, rlen, &evs[n]) != 0) { n = -1; break; }
        n++;
        p = data + rlen + 4;
    }
    free(text);
    return n;
}

TEST(scalar_event_bytes) {
    /* Event{wall_time 1.5, step 3, summary{value{tag "a", simple_value 2.0}}}, encoded by hand */
    static const unsigned char want[] = {0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, 0x10, 0x03, 0x2a, 0x0a, 0x0a, 0x08, 0x0a,
                                         0x01, 'a', 0x15, 0, 0, 0, 0x40};
    unsigned char buf[64];
    size_t n = cb_tf_event_scalar(buf, sizeof buf, 1.5, 3, "a", 2.0f);
    EXPECT_EQ_INT(sizeof want, n);
    EXPECT(n == sizeof want && memcmp(buf, want, n) == 0);
    EXPECT_EQ_INT(0, cb_tf_event_scalar(buf, 8, 1.5, 3, "a", 2.0f)); /* too small: 0, no overflow */
}

TEST(event_file_decodes_back) {
    char dir[512];
    tu_tempdir(dir, sizeof dir, "tb");
    cb_tfevents tb;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_tfevents_open(&tb, dir, 41, &e));
    EXPECT_EQ_INT(CB_OK, cb_tfevents_scalar(&tb, 41, "train/loss", 3.25f, 1700000000.5, &e));
    EXPECT_EQ_INT(CB_OK, cb_tfevents_scalar(&tb, 300000, "val/ppl", 1e6f, 1700000001.0, &e));
    EXPECT_EQ_INT(CB_OK, cb_tfevents_close(&tb, &e));
    EXPECT(strncmp(tb.path, dir, strlen(dir)) == 0 && strstr(tb.path, "/events.out.tfevents.") != NULL);
    event evs[8];
    int n = read_records(tb.path, evs, 8);
    EXPECT_EQ_INT(4, n);
    if (n == 4) {
        EXPECT_EQ_STR("brain.Event:2", evs[0].file_version);
        EXPECT(evs[0].wall_time > 1e9);
        EXPECT_EQ_INT(41, evs[1].step);
        EXPECT_EQ_INT(1, evs[1].session_status); /* START: drops what an earlier writer logged from 41 on */
        EXPECT_EQ_STR("train/loss", evs[2].tag);
        EXPECT_EQ_INT(41, evs[2].step);
        EXPECT(evs[2].has_value && evs[2].value == 3.25f);
        EXPECT(evs[2].wall_time == 1700000000.5);
        EXPECT_EQ_STR("val/ppl", evs[3].tag);
        EXPECT_EQ_INT(300000, evs[3].step);
        EXPECT(evs[3].value == 1e6f);
    }
    cb_remove_tree(dir);
}
