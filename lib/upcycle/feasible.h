/* feasible.h: whether surgery can turn a teacher's attention layer into a student's
 * (cb-build(1) SURGERY): the student keeps the teacher's width and heads, its geometric
 * (RoPE) path rotates at frequencies the teacher has, its value path is no wider than the
 * teacher's. Used by cb-validate (a student that cannot be made is an error at the
 * override's line) and by the surgery itself (lib/upcycle/surgery.h). */
#ifndef CB_UPCYCLE_FEASIBLE_H
#define CB_UPCYCLE_FEASIBLE_H

#include <jansson.h>
#include "layers/attention.h"
#include "layers/rope.h"

/* One attention layer as surgery sees it: its config and its RoPE frequencies' setting. */
typedef struct cb_surgery_attn {
    cb_attention_config cfg;
    double rope_theta;
    cb_rope_scaling scaling;
} cb_surgery_attn;

/* From the "config" of a planned AttentionLayer node (cb-plan(5)). */
void cb_surgery_attn_from_config(cb_surgery_attn *a, const json_t *config);

/* 1 when both layers have the same shape and settings (surgery copies the tensors). */
int cb_surgery_attn_same(const cb_surgery_attn *t, const cb_surgery_attn *s);

#define CB_SURGERY_WHY_MAX 320

/* Whether surgery maps teacher layer t onto student layer s. 0 when it can: the tensors
 * are copied (same), or s is decoupled with t's d_model, n_heads and n_kv_heads, no
 * biases, a per-head geometric width d_geo <= t's head_dim whose every RoPE frequency is
 * one of t's, and a per-head value width d_v <= t's head_dim. Then pair_map (d_geo / 2
 * entries, may be NULL) receives, for each rotated pair i of the student, the teacher's
 * pair of the same frequency. Else -1 with *field the student's field at fault
 * ("n_heads", "geo_dim", ...) and why a sentence saying why. */
int cb_surgery_attn_check(const cb_surgery_attn *t, const cb_surgery_attn *s, int *pair_map, const char **field,
                          char why[CB_SURGERY_WHY_MAX]);

#endif
