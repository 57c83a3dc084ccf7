/* surgery.h: a student made from its teacher (cb-build(1) SURGERY): every tensor the two
 * share is copied, and each decoupled attention layer of the student is initialised
 * from the teacher's grouped-query attention by truncated SVD per key/value group:
 *   - geometric path: the teacher's RoPE pairs the student rotates at the same
 *     frequency, copied (their share of every score is kept exactly);
 *   - semantic path: the rest of the teacher's query/key pairs, their rotation averaged
 *     over the distances of a causal window of `context` tokens, factorised at rank d_sem
 *     with the keys shared by the group's query heads;
 *   - values: copied when d_v is the teacher's head_dim, else the group's value and
 *     output projections factorised at rank d_v.
 * Dimensions the factorisation leaves empty keep the student's fresh initialisation on
 * the key (value) side and start at zero on the query (output) side, so they change no
 * output at first and still receive gradients. */
#ifndef CB_UPCYCLE_SURGERY_H
#define CB_UPCYCLE_SURGERY_H

#include "core/error.h"
#include "model/model.h"

typedef struct cb_surgery_options {
    int context; /* tokens of the causal window the semantic path is averaged over (>= 1) */
} cb_surgery_options;

/* Overwrite student's weights (initialised per its plan by the caller) from teacher.
 * A teacher that does not fit (another layer count, a shared tensor of another shape
 * or missing) is CB_E_INVALID naming the tensor; a layer surgery cannot make is
 * CB_E_INVALID naming the student's field (upcycle/feasible.h). */
int cb_surgery(cb_model *student, const cb_model *teacher, const cb_surgery_options *o, cb_error *e);

#endif
