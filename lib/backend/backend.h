/* backend.h: the one interface between the runtime and a device (ggml's backend). The
 * training step (model/run.h, train/trainer.c) and the decoding session (infer/session.c)
 * drive a device only through it: its memory, transfers, the ops of a compiled program
 * forward and backward (backend/pass.h, one dispatch loop for both), the decoding state
 * (weights in their storage kind, KV caches) and the optimizer step. Each device
 * implements it in its own folder: backend/cpu/ (the numerical reference every other
 * backend is tested against), and a CUDA backend adds backend/cuda/ and kernels/ and one
 * line in backend.c's table. docs/DESIGN.md section 4.1 draws the seam. */
#ifndef CB_BACKEND_BACKEND_H
#define CB_BACKEND_BACKEND_H

#include <stddef.h>
#include "core/error.h"

/* enums only grow at the end */
enum cb_device { CB_DEVICE_CPU = 0, CB_DEVICE_CUDA = 1 };

typedef struct cb_backend cb_backend;
struct cb_pass;
struct cb_decode;
struct cb_decode_config;
struct cb_program;
struct cb_param_table;
struct cb_optimizer;

struct cb_backend {
    const char *name; /* "cpu", "cuda": what --device takes */
    int device;       /* enum cb_device */
    int unified;      /* 1: device memory is host memory, host pointers pass as they are
                         (no copy of weights, tokens or logits) */
    void *ctx;        /* the device's own state */

    /* Memory: bytes on the device, zeroed, 64-byte aligned; NULL and e filled when it
     * does not fit. free(NULL) does nothing. */
    void *(*alloc)(cb_backend *be, size_t bytes, cb_error *e);
    void (*free)(cb_backend *be, void *p);
    int (*upload)(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e);
    int (*download)(cb_backend *be, void *dst, const void *src, size_t bytes, cb_error *e);
    void (*zero)(cb_backend *be, void *p, size_t bytes);
    /* Wait for everything queued; a device fault surfaces here as CB_E_RUNTIME. */
    int (*synchronize)(cb_backend *be, cb_error *e);

    /* The ops of a pass (backend/pass.h). op_forward writes op i's output slot;
     * op_backward adds into its input slots' and parameters' gradients. */
    int (*op_forward)(cb_backend *be, struct cb_pass *p, int i, cb_error *e);
    void (*op_backward)(cb_backend *be, struct cb_pass *p, int i);
    /* Mean cross-entropy of the logits against p->targets (negative: ignored), keeping
     * what its backward needs; and its backward into the logits' gradient slot. */
    float (*loss_forward)(cb_backend *be, struct cb_pass *p);
    void (*loss_backward)(cb_backend *be, struct cb_pass *p);

    /* Gradients and the optimizer: x *= s; the global L2 norm of g (clipped to max_norm
     * as train/clip.h, which the CPU's is); one update (train/optimizer.h) of w from g
     * with the state m, v (laid out like w; v NULL but for AdamW). */
    void (*scale)(cb_backend *be, float *x, size_t n, float s);
    double (*grad_clip)(cb_backend *be, float *g, size_t n, double max_norm);
    void (*optimizer_step)(cb_backend *be, struct cb_optimizer *o, float *w, const float *g, float *m, float *v,
                           double lr);

    /* Decoding (backend/pass.h, cb_decode): the weight matrices of prog converted to
     * cfg->weight_kind, one KV cache per attention op, scratch; reserve room for tokens
     * up to cap before a pass changes anything; keep the first len tokens; free. */
    int (*decode_init)(cb_backend *be, struct cb_decode *d, const struct cb_program *prog,
                       const struct cb_param_table *params, const float *weights,
                       const struct cb_decode_config *cfg, cb_error *e);
    int (*decode_reserve)(cb_backend *be, struct cb_decode *d, int pos0, int m, cb_error *e);
    void (*decode_truncate)(cb_backend *be, struct cb_decode *d, int len);
    void (*decode_free)(cb_backend *be, struct cb_decode *d);
    /* Around each decoding pass: a device may hold its threads or streams for it. */
    void (*decode_begin)(cb_backend *be);
    void (*decode_end)(cb_backend *be);

    /* The device's memory in bytes: free, what allocations may take now, and total (the
     * runtime plan fits batch_size: auto to it). NULL: the device cannot tell. */
    int (*memory_info)(cb_backend *be, size_t *free_bytes, size_t *total_bytes, cb_error *e);

    /* Memory whose pages are given back by region (fsdp's sharded gradients and weights,
     * train/fsdp.h): reserve bytes of address space that read zero and hold no memory;
     * commit backs the pages [from, to) overlaps (bytes from the start) before anything
     * there is written, zeroed (NULL: pages are backed on first touch, as the CPU's);
     * release zeroes [from, to) and gives back the whole pages inside it (once the device
     * is done with them; where commit is not NULL they are committed again before use,
     * elsewhere they read zero); unreserve ends the range; resident counts the
     * bytes of [0, bytes) that hold memory now. reserve NULL: the device has no such
     * memory (its caller allocates and zeroes). */
    void *(*reserve)(cb_backend *be, size_t bytes, cb_error *e);
    int (*commit)(cb_backend *be, void *base, size_t from, size_t to, cb_error *e);
    void (*release)(cb_backend *be, void *base, size_t from, size_t to);
    void (*unreserve)(cb_backend *be, void *base, size_t bytes);
    size_t (*resident)(cb_backend *be, const void *base, size_t bytes);

    /* Greedy sampling where the logits are: *id = the first index of the largest of x (n
     * floats of device memory: a decoding pass's row of logits, infer/sample.c's
     * cb_argmax), *nonfinite = 1 when one of them is a NaN or an infinity (then *id means
     * nothing); only these come back to the host. NULL: the caller reads the logits. */
    int (*decode_argmax)(cb_backend *be, struct cb_decode *d, const float *x, int n, int *id, int *nonfinite,
                         cb_error *e);

    /* Distillation's KL term where the logits are (train/distill.h cb_distill_kl: s, t and
     * ds in device memory); the mean KL comes back, NaN after a device failure. */
    double (*distill_kl)(cb_backend *be, float *ds, const float *s, const float *t, int rows, int V, double temp,
                         double scale);

    /* Device memory the backend's buffers (alloc) hold now, in bytes as asked for; NULL where
     * memory is the host's. cb-bench memory counts a session by it: the device's free memory
     * moves in whole pages and not at all when the driver reuses pages freed before. */
    size_t (*held_bytes)(cb_backend *be);

    /* The head and the loss fused, for a run that keeps no (B,T,V) logits (model/run.h
     * cb_run_init_fused, cb_run_init_loss): head_chunk_rows is how many rows of a pass of N rows
     * and V logits the device takes at a time (0 or NULL: it keeps the logits). head_loss
     * runs the program's last op (its HEAD) and the mean cross-entropy against p->targets
     * chunk_rows rows at a time, each chunk's logits in the first rows of the logits slot,
     * their losses and log-sum-exps in p->losses and p->lse; with p->grads, each chunk's
     * gradient of the mean loss is turned at once into the head input's gradient slot and
     * the head's weight and bias gradients (all +=), so nothing of the chunk outlives it.
     * Returns the mean loss, NaN after a device failure. */
    int (*head_chunk_rows)(cb_backend *be, int N, int V);
    float (*head_loss)(cb_backend *be, struct cb_pass *p, int chunk_rows);
};

/* The CPU backend (backend/cpu/cpu.c): always present. */
cb_backend *cb_backend_cpu(void);

/* The backend named name ("cpu", "cuda", or "auto": the fastest built and present).
 * A name no build knows is CB_E_USAGE; a device this build has no backend for, or that
 * is not present, CB_E_USAGE naming what is missing. */
int cb_backend_open(const char *name, cb_backend **be, cb_error *e);
/* The names --device takes, for --help and messages: "cpu|cuda|auto". */
const char *cb_backend_names(void);
/* The backends this build has, space-separated ("cpu", "cpu cuda"). */
const char *cb_backend_built(void);

#endif
