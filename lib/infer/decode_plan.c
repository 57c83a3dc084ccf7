/* decode_plan.c: the decode-plan buckets. */
#include "infer/decode_plan.h"

#include <string.h>

cb_decode_plan_config cb_decode_plan_config_default(void) {
    cb_decode_plan_config c;
    memset(&c, 0, sizeof c);
    c.mode = CB_DECODE_PLAN_AUTO;
    c.bucket_short = 512;
    c.bucket_mid = 2048;
    c.when_mid.q_chunk = 128;
    c.when_long.q_chunk = 64;
    return c;
}

int cb_decode_plan_mode_parse(const char *s, cb_decode_plan_mode *mode) {
    static const char *names[] = {"auto", "fixed", "none"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *mode = (cb_decode_plan_mode)i;
            return 1;
        }
    return 0;
}

const char *cb_decode_plan_mode_name(cb_decode_plan_mode mode) {
    return mode == CB_DECODE_PLAN_FIXED ? "fixed" : mode == CB_DECODE_PLAN_NONE ? "none" : "auto";
}

cb_decode_plan cb_decode_plan_pick(const cb_decode_plan_config *c, int kv_len, const char **bucket) {
    const char *b;
    cb_decode_plan p = {0, 0};
    switch (c->mode) {
    case CB_DECODE_PLAN_NONE: b = "none"; break;
    case CB_DECODE_PLAN_FIXED: b = "fixed"; p = c->fixed; break;
    default:
        if (kv_len < c->bucket_short) b = "short", p = c->when_short;
        else if (kv_len < c->bucket_mid) b = "mid", p = c->when_mid;
        else b = "long", p = c->when_long;
    }
    if (bucket) *bucket = b;
    return p;
}
