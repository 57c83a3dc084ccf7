/* decode_plan.h: choosing the attention's q_chunk and local_window for each forward pass of
 * decoding (the seed's decode_plan auto|fixed|none): fixed values, none (the layer's
 * defaults: all queries at once, every key), or by the number of tokens attended to, in
 * three buckets (short / mid / long) with their own settings. */
#ifndef CB_INFER_DECODE_PLAN_H
#define CB_INFER_DECODE_PLAN_H

#include "backend/cpu/attention_decode.h"

typedef enum cb_decode_plan_mode {
    CB_DECODE_PLAN_AUTO = 0,
    CB_DECODE_PLAN_FIXED = 1,
    CB_DECODE_PLAN_NONE = 2,
} cb_decode_plan_mode;

typedef struct cb_decode_plan_config {
    cb_decode_plan_mode mode;
    cb_decode_plan fixed;       /* fixed: decode_q_chunk, decode_local_window */
    int bucket_short;           /* auto: fewer keys than this is short (default 512) */
    int bucket_mid;             /* auto: fewer than this (and not short) is mid (default 2048) */
    cb_decode_plan when_short;  /* default {0, 0}: the layer defaults */
    cb_decode_plan when_mid;    /* default q_chunk 128, no window */
    cb_decode_plan when_long;   /* default q_chunk 64, no window: a window changes what the
                                   model computes, so it is only used when asked for */
} cb_decode_plan_config;

/* Mode auto with the defaults above. */
cb_decode_plan_config cb_decode_plan_config_default(void);

/* "auto", "fixed", "none" -> mode; 0 when s is none of them. */
int cb_decode_plan_mode_parse(const char *s, cb_decode_plan_mode *mode);
const char *cb_decode_plan_mode_name(cb_decode_plan_mode mode);

/* The plan for a pass whose queries attend to kv_len tokens (the cache after appending
 * the new ones). *bucket (may be NULL) gets "short", "mid", "long", "fixed" or "none". */
cb_decode_plan cb_decode_plan_pick(const cb_decode_plan_config *c, int kv_len, const char **bucket);

#endif
