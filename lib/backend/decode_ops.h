/* decode_ops.h: what every backend's decoding needs to know of a program's ops: an
 * attention op's per-head widths, the work floats an op needs for m rows, and which
 * parameter roles are weight matrices (the products decoding converts and runs). */
#ifndef CB_BACKEND_DECODE_OPS_H
#define CB_BACKEND_DECODE_OPS_H

#include <stddef.h>
#include "model/program.h"

/* Per-head widths of an attention op: H query heads on Hkv key/value heads; semantic ds,
 * rotary (RoPE path) dr and value dv dims (a standard or GQA op: ds 0, dr = dv = head_dim);
 * gated: a decoupled op mixes its paths by a gate. */
typedef struct cb_head_dims { int H, Hkv, ds, dr, dv, gated; } cb_head_dims;
cb_head_dims cb_head_dims_of(const cb_attention_config *a);

/* Floats of work an op needs for m rows (the CPU pass's layout: attention's q, k, v,
 * q_sem, k_sem, gate and output; the MLPs' hidden rows; the norms' statistics). */
size_t cb_decode_op_work(const cb_op *op, size_t m);

/* 1 when parameter role of op is a weight matrix. */
int cb_decode_is_matrix(const cb_op *op, int role);

#endif
