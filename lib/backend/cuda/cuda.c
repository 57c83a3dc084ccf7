/* cuda.c: the CUDA backend's interface (backend/backend.h): device memory, transfers, the
 * ops of a pass (ops.c), the loss, gradient scaling and clipping, and the optimizers of
 * train/optimizer.h, all on GPU 0 in float32 on the legacy default stream (so every
 * copy, kernel and cuBLAS call is ordered, and a blocking copy waits for what came
 * before it). Decoding is decode.c. With amp, the bf16 shadows of the weights buffers
 * the passes read: every allocation is recorded (its extent), and every write through
 * the interface (upload, zero, scale, clipping, the optimizer step) marks the shadows it
 * overlaps stale; ops write only slots, saved values and gradients, never weights. */
#include "backend/cuda/cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cuda/internal.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/vmm.h"
#include "train/optimizer.h"

static cuda_ctx ctx;
static cb_backend cuda_backend;
static int probed;          /* cb_backend_cuda asked the runtime already */
static char absent[256];    /* why there is no backend, when there is none */

void cb_cuda_fail(cuda_ctx *c, const char *what, const char *why) {
    if (c->failed) return;
    c->failed = 1;
    cb_fail(&c->err, CB_E_RUNTIME, "cuda", "%s: %s", what, why);
}

int cb_cuda_check_launch(cuda_ctx *c, const char *what) {
    const char *why = cbk_last_error();
    if (!why) return 0;
    cb_cuda_fail(c, what, why);
    return 1;
}

static int runtime_error(cb_error *e, cudaError_t err, const char *what) {
    return cb_fail(e, CB_E_RUNTIME, "cuda", "%s: %s", what, cudaGetErrorString(err));
}

/* Out of GPU memory: what did not fit, and what to try (issue 15's fault contract). */
static int no_room(cb_error *e, size_t bytes, const char *what) {
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return cb_fail(e, CB_E_RUNTIME, "cuda",
                   "out of GPU memory: %s of %zu MB did not fit (%zu MB free of %zu MB); try a smaller batch_size "
                   "or block_size",
                   what, bytes >> 20, free_b >> 20, total_b >> 20);
}

static void *dev_alloc(size_t bytes, const char *what, cb_error *e) {
    void *p = NULL;
    size_t n = bytes ? bytes : 1;
    cudaError_t err = cudaMalloc(&p, n);
    if (err != cudaSuccess) {
        cudaGetLastError(); /* clear it: an allocation failure is not sticky */
        no_room(e, n, what);
        return NULL;
    }
    err = cudaMemset(p, 0, n);
    if (err != cudaSuccess) {
        cudaFree(p);
        runtime_error(e, err, "cudaMemset");
        return NULL;
    }
    return p;
}

/* ---- amp: the bf16 shadows of weights buffers ---- */

/* The shadow whose buffer holds p, or NULL. */
static cuda_shadow *shadow_holding(cuda_ctx *c, const void *p) {
    for (int i = 0; i < CB_CUDA_SHADOWS; i++) {
        cuda_shadow *s = &c->shadows[i];
        if (s->base && (const char *)p >= (const char *)s->base && (const char *)p < (const char *)(s->base + s->n))
            return s;
    }
    return NULL;
}

/* A write to [p, p + bytes): the shadows it overlaps are stale. */
static void touched(cuda_ctx *c, const void *p, size_t bytes) {
    const char *lo = p, *hi = lo + bytes;
    for (int i = 0; i < CB_CUDA_SHADOWS; i++) {
        cuda_shadow *s = &c->shadows[i];
        if (s->base && lo < (const char *)(s->base + s->n) && hi > (const char *)s->base) s->stale = 1;
    }
}

static void drop_shadow(cuda_shadow *s) {
    cudaFree(s->w16);
    memset(s, 0, sizeof *s);
}

const cb_bf16 *cb_cuda_shadow_of(const cuda_ctx *c, const float *x, size_t n) {
    for (int i = 0; i < CB_CUDA_SHADOWS; i++) {
        const cuda_shadow *s = &c->shadows[i];
        if (s->base && !s->stale && x >= s->base && x + n <= s->base + s->n) return s->w16 + (x - s->base);
    }
    return NULL;
}

int cb_cuda_shadow_weights(cuda_ctx *c, const float *w, cb_error *e) {
    c->clock++;
    cuda_shadow *s = NULL;
    for (int i = 0; i < CB_CUDA_SHADOWS && !s; i++)
        if (c->shadows[i].base == w) s = &c->shadows[i];
    if (!s) {
        const cuda_block *b = NULL;
        for (int i = 0; i < c->n_blocks && !b; i++)
            if ((const char *)w >= (const char *)c->blocks[i].p &&
                (const char *)w < (const char *)c->blocks[i].p + c->blocks[i].bytes)
                b = &c->blocks[i];
        if (!b) return CB_OK; /* not ours: the products convert its parts */
        size_t n = ((const char *)b->p + b->bytes - (const char *)w) / sizeof(float);
        for (int i = 0; i < CB_CUDA_SHADOWS && !s; i++) /* a free slot, else the least recently used */
            if (!c->shadows[i].base) s = &c->shadows[i];
        if (!s) {
            s = &c->shadows[0];
            for (int i = 1; i < CB_CUDA_SHADOWS; i++)
                if (c->shadows[i].used < s->used) s = &c->shadows[i];
        }
        drop_shadow(s);
        if (!(s->w16 = dev_alloc(n * sizeof(cb_bf16), "the bf16 copy of the weights (train.amp)", e))) return e->code;
        s->base = w;
        s->n = n;
        s->stale = 1;
    }
    s->used = c->clock;
    if (s->stale) {
        cbk_to_bf16(s->w16, s->base, s->n);
        s->stale = 0;
        if (cb_cuda_check_launch(c, "amp: the weights' bf16 copy")) return cb_fail(e, CB_E_RUNTIME, c->err.where, "%s", c->err.msg);
    }
    return CB_OK;
}

int cb_cuda_reserve_h16(cuda_ctx *c, size_t h16_elems, cb_error *e) {
    if (h16_elems <= c->h16_elems) return CB_OK;
    cudaFree(c->h16);
    c->h16_elems = 0;
    if (!(c->h16 = dev_alloc(h16_elems * sizeof(cb_bf16), "bf16 scratch (train.amp)", e))) return e->code;
    c->h16_elems = h16_elems;
    return CB_OK;
}

static void *cuda_alloc(cb_backend *be, size_t bytes, cb_error *e) {
    (void)be;
    if (ctx.n_blocks == ctx.cap_blocks) {
        int cap = ctx.cap_blocks ? 2 * ctx.cap_blocks : 64;
        cuda_block *nb = realloc(ctx.blocks, (size_t)cap * sizeof *nb);
        if (!nb) {
            cb_fail(e, CB_E_RUNTIME, "cuda", "out of host memory");
            return NULL;
        }
        ctx.blocks = nb;
        ctx.cap_blocks = cap;
    }
    void *p = dev_alloc(bytes, "a buffer", e);
    if (p) ctx.blocks[ctx.n_blocks++] = (cuda_block){p, bytes};
    return p;
}

static size_t cuda_held_bytes(cb_backend *be) {
    (void)be;
    size_t n = 0;
    for (int i = 0; i < ctx.n_blocks; i++) n += ctx.blocks[i].bytes;
    return n;
}

static void cuda_free(cb_backend *be, void *p) {
    (void)be;
    if (!p) return;
    for (int i = 0; i < ctx.n_blocks; i++)
        if (ctx.blocks[i].p == p) {
            for (int k = 0; k < CB_CUDA_SHADOWS; k++) {
                cuda_shadow *s = &ctx.shadows[k];
                if (s->base && (const char *)s->base >= (const char *)p &&
                    (const char *)s->base < (const char *)p + ctx.blocks[i].bytes)
                    drop_shadow(s);
            }
            ctx.blocks[i] = ctx.blocks[--ctx.n_blocks];
            break;
        }
    cudaFree(p);
}

static int cuda_upload(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e) {
    (void)be;
    if (!bytes) return CB_OK;
    touched(&ctx, dst, bytes);
    cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice);
    return err == cudaSuccess ? CB_OK : runtime_error(e, err, "upload");
}

static int cuda_download(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e) {
    (void)be;
    if (!bytes) return CB_OK;
    cudaError_t err = cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost);
    return err == cudaSuccess ? CB_OK : runtime_error(e, err, "download");
}

static void cuda_zero(cb_backend *be, void *p, size_t bytes) {
    (void)be;
    touched(&ctx, p, bytes);
    if (bytes && cudaMemsetAsync(p, 0, bytes, 0) != cudaSuccess) cb_cuda_fail(&ctx, "zero", "cudaMemsetAsync failed");
}

static int cuda_synchronize(cb_backend *be, cb_error *e) {
    (void)be;
    cudaError_t err = cudaDeviceSynchronize();
    if (err != cudaSuccess) cb_cuda_fail(&ctx, "synchronize", cudaGetErrorString(err));
    if (!ctx.failed) return CB_OK;
    *e = ctx.err;
    ctx.failed = 0;
    return e->code;
}

int cb_cuda_reserve(cuda_ctx *c, size_t ws_elems, size_t red_elems, cb_error *e) {
    if (ws_elems > c->ws_elems) {
        cudaFree(c->ws);
        c->ws_elems = 0;
        if (!(c->ws = dev_alloc(ws_elems * sizeof(float), "scratch", e))) return e->code;
        c->ws_elems = ws_elems;
    }
    if (red_elems > c->red_elems) {
        cudaFree(c->red);
        c->red_elems = 0;
        if (!(c->red = dev_alloc(red_elems * sizeof(float), "reduction scratch", e))) return e->code;
        c->red_elems = red_elems;
    }
    return CB_OK;
}

static int cuda_op_forward(cb_backend *be, cb_pass *p, int i, cb_error *e) {
    (void)be;
    return cb_cuda_op_forward(&ctx, p, i, e);
}
static void cuda_op_backward(cb_backend *be, cb_pass *p, int i) {
    (void)be;
    cb_cuda_op_backward(&ctx, p, i);
}

/* The mean loss comes back to the host (the trainer logs it every step); the count of
 * valid rows stays on the device for backward. NaN when the device failed. */
static float cuda_loss_forward(cb_backend *be, cb_pass *p) {
    (void)be;
    if (ctx.failed) return NAN;
    const cb_program *prog = p->prog;
    const float *logits = p->slots + prog->slots[prog->logits_slot].offset;
    cbk_crossentropy_forward(p->losses, p->lse, ctx.loss, (int *)(ctx.loss + 1), ctx.red, logits, p->targets,
                             p->B * p->T, prog->vocab_size);
    cb_cuda_check_launch(&ctx, "loss");
    float loss = NAN;
    if (cudaMemcpy(&loss, ctx.loss, sizeof loss, cudaMemcpyDeviceToHost) != cudaSuccess)
        cb_cuda_fail(&ctx, "loss", "reading the loss back failed");
    return ctx.failed ? NAN : loss;
}

static void cuda_loss_backward(cb_backend *be, cb_pass *p) {
    (void)be;
    if (ctx.failed) return;
    const cb_program *prog = p->prog;
    const float *logits = p->slots + prog->slots[prog->logits_slot].offset;
    float *dlogits = p->dslots + prog->slots[prog->logits_slot].offset;
    cbk_crossentropy_backward(dlogits, logits, p->lse, p->targets, (const int *)(ctx.loss + 1), p->B * p->T,
                              prog->vocab_size);
    cb_cuda_check_launch(&ctx, "loss backward");
}

static void cuda_scale(cb_backend *be, float *x, size_t n, float s) {
    (void)be;
    touched(&ctx, x, n * sizeof *x);
    cbk_scale(x, n, s);
    cb_cuda_check_launch(&ctx, "scale");
}

/* train/clip.h's cb_grad_clip: the norm summed in double (another order than the CPU's
 * 64 chunks, so it may differ in the last bits), the same clipping coefficient. */
static double cuda_grad_clip(cb_backend *be, float *g, size_t n, double max_norm) {
    (void)be;
    double sumsq = NAN;
    if (ctx.failed) return NAN;
    cbk_sumsq(ctx.norm, ctx.norm + 1, g, n);
    cb_cuda_check_launch(&ctx, "grad_clip");
    if (cudaMemcpy(&sumsq, ctx.norm, sizeof sumsq, cudaMemcpyDeviceToHost) != cudaSuccess || ctx.failed)
        return NAN;
    double norm = sqrt(sumsq);
    if (max_norm > 0 && isfinite(norm)) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) touched(&ctx, g, n * sizeof *g);
        if (coef < 1.0) cbk_scale(g, n, (float)coef);
    }
    return norm;
}

/* train/distill.h's cb_distill_kl on the device: kernels/distill.cu, the partials in the
 * gradient norm's work (one block a row while rows are fewer than its doubles) */
static double cuda_distill_kl(cb_backend *be, float *ds, const float *s, const float *t, int rows, int V, double temp,
                              double scale) {
    (void)be;
    double kl = NAN;
    if (ctx.failed) return NAN;
    if (ds) touched(&ctx, ds, (size_t)rows * V * sizeof *ds);
    cbk_distill_kl(ctx.norm, ctx.norm + 1, cbk_sumsq_work(), ds, s, t, rows, V, (float)temp, (float)scale);
    cb_cuda_check_launch(&ctx, "distill_kl");
    if (cudaMemcpy(&kl, ctx.norm, sizeof kl, cudaMemcpyDeviceToHost) != cudaSuccess || ctx.failed) return NAN;
    return kl;
}

/* train/optimizer.c's cb_optimizer_step_state, the scalars computed here exactly as
 * there; one launch a run of tensors that follow each other in the buffer with the same
 * decay factor (the padding between them is zero in weights, gradients and state, and
 * stays zero), not one a tensor. Under amp, when the weights' shadow is current, the same
 * launches write the new weights' bf16 copy, which stays current. */
/* Where tensor p ends with the padding after it (model/params.h: every tensor starts at
 * a multiple of 16 floats), inside the buffer of total floats. An optimizer of a part of
 * the tensors (a view) never reaches past its own. */
#define PARAM_ALIGN 16
static size_t padded_end(const cb_param *p, size_t total) {
    size_t end = p->offset + (p->numel + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
    return end <= total ? end : p->offset + p->numel;
}

static void cuda_optimizer_step(cb_backend *be, cb_optimizer *o, float *w, const float *g, float *m, float *v,
                                double lr) {
    (void)be;
    if (ctx.failed) return; /* the gradients are not whole: leave the weights alone */
    const size_t total = o->params->total_floats;
    cuda_shadow *sh = shadow_holding(&ctx, w);
    cb_bf16 *w16 = sh && !sh->stale && sh->base == w && sh->n == total ? sh->w16 : NULL;
    touched(&ctx, w, total * sizeof *w);
    const cb_optimizer_config *c = &o->cfg;
    o->t++;
    double bc1 = 1.0 - pow(c->beta1, (double)o->t), bc2 = 1.0 - pow(c->beta2, (double)o->t);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float decayed = (float)(1.0 - lr * c->weight_decay);
    float b1 = (float)c->beta1, b2 = (float)c->beta2, omb1 = (float)(1.0 - c->beta1), omb2 = (float)(1.0 - c->beta2);
    const int n = o->params->n;
    const cb_param *items = o->params->items;
    int covered = 1; /* every float of the buffer written (w16 whole) */
    size_t done = 0;
    for (int k = 0; k < n;) {
        float df = o->decay[k] ? decayed : 1.0f;
        size_t off = items[k].offset, end = padded_end(&items[k], total);
        int j = k + 1;
        while (j < n && items[j].offset == end && (o->decay[j] ? decayed : 1.0f) == df) end = padded_end(&items[j++], total);
        if (off != done) covered = 0;
        done = end;
        size_t len = end - off;
        cb_bf16 *s16 = w16 ? w16 + off : NULL;
        switch (c->kind) {
        case CB_OPT_ADAMW:
            cbk_adamw(w + off, s16, g + off, m + off, v + off, len, df, b1, b2, omb1, omb2, step_size, bc2_sqrt,
                      (float)c->eps);
            break;
        case CB_OPT_LION: cbk_lion(w + off, s16, g + off, m + off, len, df, b1, b2, omb1, omb2, (float)lr); break;
        default: cbk_sgd(w + off, s16, g + off, m + off, len, df, (float)c->momentum, (float)lr); break;
        }
        k = j;
    }
    if (w16 && covered && done == total) sh->stale = 0; /* written alongside, every float of it */
    cb_cuda_check_launch(&ctx, "optimizer step");
}

/* The fused head's chunk (with CB_CUDA_FUSE_HEAD): 256 MB of float32 logits, whole
 * multiples of 128 rows (2048 of a 32000-word vocabulary: products of full tiles, and a
 * dW += per chunk that costs one read and write of the head's gradient, 98 MB, against
 * the 2 x 2.1 GB of logits and their gradient a T1 step no longer writes and reads). */
static int cuda_head_chunk_rows(cb_backend *be, int N, int V) {
    (void)be;
    if (!(ctx.fuse & CB_CUDA_FUSE_HEAD)) return 0;
    size_t rows = ((size_t)1 << 28) / ((size_t)V * sizeof(float)) / 128 * 128;
    if (rows < 128) rows = 128;
    return rows < (size_t)N ? (int)rows : N;
}

static float cuda_head_loss(cb_backend *be, cb_pass *p, int chunk_rows) {
    (void)be;
    return cb_cuda_head_loss(&ctx, p, chunk_rows);
}

/* The GPU's memory as the driver sees it: free is what this process may still allocate
 * (runtime/memory_fit.c sizes batch_size: auto from it). */
static int cuda_memory_info(cb_backend *be, size_t *free_bytes, size_t *total_bytes, cb_error *e) {
    (void)be;
    cudaError_t err = cudaMemGetInfo(free_bytes, total_bytes);
    if (err != cudaSuccess) return cb_fail(e, CB_E_RUNTIME, "", "cudaMemGetInfo: %s", cudaGetErrorString(err));
    return CB_OK;
}

static cb_backend cuda_backend = {
    .name = "cuda",
    .device = CB_DEVICE_CUDA,
    .unified = 0,
    .ctx = &ctx,
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .zero = cuda_zero,
    .synchronize = cuda_synchronize,
    .op_forward = cuda_op_forward,
    .op_backward = cuda_op_backward,
    .loss_forward = cuda_loss_forward,
    .loss_backward = cuda_loss_backward,
    .scale = cuda_scale,
    .grad_clip = cuda_grad_clip,
    .distill_kl = cuda_distill_kl,
    .optimizer_step = cuda_optimizer_step,
    .decode_init = cb_cuda_decode_init,
    .decode_reserve = cb_cuda_decode_reserve,
    .decode_truncate = cb_cuda_decode_truncate,
    .decode_free = cb_cuda_decode_free,
    .decode_begin = cb_cuda_decode_begin,
    .decode_end = cb_cuda_decode_end,
    .memory_info = cuda_memory_info,
    .reserve = cb_cuda_vmm_reserve,
    .commit = cb_cuda_vmm_commit,
    .release = cb_cuda_vmm_release,
    .unreserve = cb_cuda_vmm_unreserve,
    .resident = cb_cuda_vmm_resident,
    .decode_argmax = cb_cuda_decode_argmax,
    .held_bytes = cuda_held_bytes,
    .head_chunk_rows = cuda_head_chunk_rows,
    .head_loss = cuda_head_loss,
};

/* CB_CUDA_FUSE: unset the default (cuda.h), 1 or all every one, 0 none, else the named
 * ones ("swiglu,...") */
static int fuse_from_env(void) {
    const char *v = getenv("CB_CUDA_FUSE");
    if (!v) return CB_CUDA_FUSE_DEFAULT;
    if (!strcmp(v, "1") || !strcmp(v, "all")) return CB_CUDA_FUSE_ALL;
    int bits = 0;
    static const struct {
        const char *name;
        int bit;
    } names[] = {{"swiglu", CB_CUDA_FUSE_SWIGLU}, {"addnorm", CB_CUDA_FUSE_ADDNORM}, {"head", CB_CUDA_FUSE_HEAD}};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const char *at = strstr(v, names[k].name);
        size_t len = strlen(names[k].name);
        if (at && (at == v || at[-1] == ',') && (at[len] == 0 || at[len] == ',')) bits |= names[k].bit;
    }
    return bits;
}

void cb_backend_cuda_set_tf32(int on) {
    if (ctx.blas) cublasSetMathMode(ctx.blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

/* At exit: the scratch, the small buffers and cuBLAS given back before the runtime's own
 * teardown (registered before this), so a leak check of a program sees none of ours. */
static void release(void) {
    for (int i = 0; i < CB_CUDA_SHADOWS; i++) drop_shadow(&ctx.shadows[i]);
    free(ctx.blocks);
    cudaFree(ctx.h16);
    cudaFree(ctx.ws);
    cudaFree(ctx.red);
    cudaFree(ctx.loss);
    cudaFree(ctx.norm);
    if (ctx.blas) cublasDestroy(ctx.blas);
    memset(&ctx, 0, sizeof ctx);
}

/* The first call asks the runtime for a device and sets up cuBLAS and the small device
 * buffers; the answer is kept. */
cb_backend *cb_backend_cuda(void) {
    if (probed) return absent[0] ? NULL : &cuda_backend;
    probed = 1;
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
        snprintf(absent, sizeof absent, "no CUDA device: %s",
                 err != cudaSuccess ? cudaGetErrorString(err) : "the runtime sees no GPU");
        cudaGetLastError();
        return NULL;
    }
    cb_error e;
    if (cudaSetDevice(0) != cudaSuccess || cublasCreate(&ctx.blas) != CUBLAS_STATUS_SUCCESS) {
        snprintf(absent, sizeof absent, "no CUDA device: GPU 0 could not be set up");
        return NULL;
    }
    atexit(release);
    ctx.fuse = fuse_from_env();
    ctx.ahead_op = -1;
    ctx.loss = dev_alloc(2 * sizeof(float), "the loss", &e);
    ctx.norm = dev_alloc((1 + cbk_sumsq_work()) * sizeof(double), "the gradient norm", &e);
    if (!ctx.loss || !ctx.norm) {
        snprintf(absent, sizeof absent, "no CUDA device: %.200s", e.msg);
        return NULL;
    }
    return &cuda_backend;
}

const char *cb_backend_cuda_absent(void) { return absent; }

void cb_backend_cuda_set_amp(int on) { ctx.amp = on; }

void cb_backend_cuda_set_fuse(int bits) { ctx.fuse = bits & CB_CUDA_FUSE_ALL; }

int cb_backend_cuda_fuse(void) { return ctx.fuse; }
