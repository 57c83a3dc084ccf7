/* decode.c: decoding on the GPU (backend.h's decode_init ... decode_end, and the ops of a
 * decoding pass). Not built yet (issue 16): a session on this backend is refused with one
 * message, before anything is allocated. */
#include <string.h>
#include "backend/cuda/internal.h"

static int not_built(cb_error *e) {
    return cb_fail(e, CB_E_USAGE, "", "device cuda: GPU decoding is not built yet; use --device cpu for generation");
}

int cb_cuda_decode_init(cb_backend *be, cb_decode *d, const cb_program *prog, const struct cb_param_table *params,
                        const float *weights, const cb_decode_config *cfg, cb_error *e) {
    (void)be, (void)prog, (void)params, (void)weights, (void)cfg;
    memset(d, 0, sizeof *d);
    return not_built(e);
}
int cb_cuda_decode_reserve(cb_backend *be, cb_decode *d, int pos0, int m, cb_error *e) {
    (void)be, (void)d, (void)pos0, (void)m;
    return not_built(e);
}
void cb_cuda_decode_truncate(cb_backend *be, cb_decode *d, int len) { (void)be, (void)d, (void)len; }
void cb_cuda_decode_free(cb_backend *be, cb_decode *d) {
    (void)be;
    memset(d, 0, sizeof *d);
}
void cb_cuda_decode_begin(cb_backend *be) { (void)be; }
void cb_cuda_decode_end(cb_backend *be) { (void)be; }
int cb_cuda_decode_op_forward(cuda_ctx *c, cb_pass *p, int i, cb_error *e) {
    (void)c, (void)p, (void)i;
    return not_built(e);
}
