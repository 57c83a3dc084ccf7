/* cpu.h: the CPU backend's parts (backend/backend.h names the interface they fill): the
 * ops of a pass (ops.c, float and double), and decoding over KV caches and weights in
 * their storage kind (decode.c). Internal to backend/; the runtime goes through the
 * interface, the f64 twins are called directly by the double dispatch loop. */
#ifndef CB_BACKEND_CPU_CPU_H
#define CB_BACKEND_CPU_CPU_H

#include "backend/backend.h"
#include "backend/pass.h"

/* ops.c: op i of a pass, forward (a decoding pass too) and backward; the loss. */
int cb_cpu_op_forward(cb_pass *p, int i, cb_error *e);
void cb_cpu_op_backward(cb_pass *p, int i);
float cb_cpu_loss_forward(cb_pass *p);
void cb_cpu_loss_backward(cb_pass *p);
float cb_cpu_head_loss(cb_pass *p, int chunk_rows);
int cb_cpu_op_forward_f64(cb_pass_f64 *p, int i);
void cb_cpu_op_backward_f64(cb_pass_f64 *p, int i);
double cb_cpu_loss_forward_f64(cb_pass_f64 *p);
void cb_cpu_loss_backward_f64(cb_pass_f64 *p);
double cb_cpu_head_loss_f64(cb_pass_f64 *p, int chunk_rows);

/* decode.c: the decoding state, and the ops of a decoding pass that read weight matrices
 * or look across positions. out (m, d_out), in (m, d_in), m = p->T rows. */
int cb_cpu_decode_init(cb_backend *be, cb_decode *d, const cb_program *prog, const cb_param_table *params,
                       const float *weights, const cb_decode_config *cfg, cb_error *e);
int cb_cpu_decode_reserve(cb_backend *be, cb_decode *d, int pos0, int m, cb_error *e);
void cb_cpu_decode_truncate(cb_backend *be, cb_decode *d, int len);
void cb_cpu_decode_free(cb_backend *be, cb_decode *d);
int cb_cpu_decode_attention(cb_pass *p, int i, float *out, const float *in, cb_error *e);
void cb_cpu_decode_swiglu(cb_pass *p, int i, float *out, const float *in);
void cb_cpu_decode_mlp(cb_pass *p, int i, float *out, const float *in);
void cb_cpu_decode_linear(cb_pass *p, int i, float *out, const float *in);

/* memory_info.c: the host's memory (backend.h memory_info). */
int cb_cpu_memory_info(cb_backend *be, size_t *free_bytes, size_t *total_bytes, cb_error *e);
/* pages.c: reserved memory given back by region (backend.h reserve, release, unreserve,
 * resident). */
void *cb_cpu_reserve(cb_backend *be, size_t bytes, cb_error *e);
void cb_cpu_release(cb_backend *be, void *base, size_t from, size_t to);
void cb_cpu_unreserve(cb_backend *be, void *base, size_t bytes);
size_t cb_cpu_resident(cb_backend *be, const void *base, size_t bytes);

#endif
