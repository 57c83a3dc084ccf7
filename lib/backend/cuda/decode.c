/* decode.c: decoding on the GPU, backend/cpu/decode.c's twin: the state (the weight
 * matrices in their storage kind on the device, one KV cache per attention op in device
 * memory, scratch) and every op of a decoding pass (ops.c hands them all here). Attention
 * projects the new rows, rotates them at their positions, quantises their keys and values
 * into its cache (kernels/matvec.cu's cbk_quantize_rows, the CPU's bytes) and attends
 * against the whole cache in one split pass (kernels/attention_decode.cu); products read
 * the converted weights (cbk_matvec); the row-wise ops are those of a full-sequence pass.
 *
 * The cb_decode of pass.h is shared with the CPU: its matrices' data and owned, its caches'
 * data, work and attn_scratch are device pointers here (allocated with the backend's
 * alloc, never with malloc). The caches' shapes and lengths are infer/kv_cache.h's, set
 * up by cb_kv_cache_init with no storage (capacity 0) and grown here.
 *
 * A pass of one row (a decode step) runs on the state's own stream and reads everything
 * that changes from one step to the next from device memory: its position (uploaded
 * before the step, 4 bytes), the token (the session's upload), the RoPE rows (tables for
 * every position the caches hold, kept on the device), the cache row it writes and the
 * attention's length (kernels read the position; attention's grid is the cache
 * capacity's). So the step is captured once as a CUDA graph and replayed every token, one
 * launch instead of ~15 a layer; it is captured again only when a pointer it holds moves
 * (a cache or a scratch grows: capacities double, so a few times over a context), or the
 * decode plan's window or the head's rows change. CB_CUDA_GRAPHS=0 in the environment
 * runs the same launches uncaptured (what the tests compare the graphs with). A batched
 * step (infer/batch.h: one token of each of k sequences, each against its own caches) is
 * captured the same way, its rows' positions on the device, and replays while the same
 * sequences run in the same order and none of their caches moves. Passes of several rows
 * (prefill chunks) run as before on the legacy stream, the position an argument. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cuda/cuda.h"
#include "backend/cuda/internal.h"
#include "backend/cuda/kernels.h"
#include "backend/decode_ops.h"
#include "layers/rope.h"

/* kernels/quant.cuh repeats these values (tensor/quant.h is C only) */
_Static_assert(CB_KV_F32 == 0 && CB_KV_F16 == 1 && CB_KV_BF16 == 2 && CB_KV_Q8_0 == 3 && CB_KV_Q4_0 == 4 &&
                   CB_KV_NF4 == 5 && sizeof(cb_block_q8_0) == 34 && sizeof(cb_block_q4_0) == 18 &&
                   sizeof(cb_block_nf4) == 34,
               "kernels/quant.cuh's kinds and block sizes");

static const int QKV_ROLES[3] = {CB_P_Q_W, CB_P_K_W, CB_P_V_W};
static const int GATE_UP_ROLES[2] = {CB_P_GATE, CB_P_UP};

/* As the CPU's joined(): roles[0..n) of op i back to back in device memory, of one kind and
 * width, as one matrix of all their rows (one launch for q, k, v of a token). */
static int joined(const cb_decode *d, int i, const int *roles, int n, cb_weight_matrix *w) {
    const cb_weight_matrix *a = &d->mats[i * CB_OP_MAX_PARAMS + roles[0]];
    if (!a->data) return 0;
    *w = *a;
    w->owned = NULL;
    for (int r = 1; r < n; r++) {
        const cb_weight_matrix *b = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!b->data || b->kind != a->kind || b->cols != a->cols ||
            (const unsigned char *)b->data != (const unsigned char *)a->data + (size_t)w->rows * a->row_bytes)
            return 0;
        w->rows += b->rows;
    }
    return 1;
}

/* As the CPU's merge_rows: roles[0..n) of op i (converted, each its own block, viewed by no
 * other op) copied into one block on the device, so that joined() finds them. */
static int merge_rows(cb_backend *be, cb_decode *d, const cb_program *prog, int i, const int *roles, int n,
                      cb_error *e) {
    const int nm = prog->n_ops * CB_OP_MAX_PARAMS;
    const cb_weight_matrix *w0 = &d->mats[i * CB_OP_MAX_PARAMS + roles[0]];
    size_t total = 0;
    for (int r = 0; r < n; r++) {
        const cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        if (!w->owned || w->kind != w0->kind || w->cols != w0->cols) return CB_OK;
        for (int j = 0; j < nm; j++)
            if (j != i * CB_OP_MAX_PARAMS + roles[r] && d->mats[j].data == w->data) return CB_OK;
        total += cb_weight_matrix_bytes(w);
    }
    unsigned char *block = be->alloc(be, total, e);
    if (!block) return e->code;
    size_t off = 0;
    for (int r = 0; r < n; r++) {
        cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + roles[r]];
        const size_t bytes = cb_weight_matrix_bytes(w);
        if (cudaMemcpy(block + off, w->data, bytes, cudaMemcpyDeviceToDevice) != cudaSuccess) {
            be->free(be, block);
            return cb_fail(e, CB_E_RUNTIME, "cuda", "joining weight matrices: copy failed");
        }
        be->free(be, w->owned);
        w->data = block + off;
        w->owned = r == 0 ? block : NULL; /* the first frees the block */
        off += bytes;
    }
    return CB_OK;
}

/* Every weight matrix of the program in kind on the device: fp32 views the model's buffer
 * (already there), the others converted once by cbk_quantize_rows from it; a tensor used
 * by several ops is converted once and viewed by the others. */
static int convert_weights(cb_backend *be, cb_decode *d, const cb_program *p, const cb_param_table *t,
                           const float *weights, cb_kv_kind kind, cb_error *e) {
    d->mats = cb_calloc((size_t)p->n_ops * CB_OP_MAX_PARAMS, sizeof *d->mats, e);
    if (!d->mats) return e->code;
    for (int i = 0; i < p->n_ops; i++)
        for (int r = 0; r < CB_OP_MAX_PARAMS; r++) {
            const cb_op *op = &p->ops[i];
            if (op->p[r] == CB_NO_PARAM || !cb_decode_is_matrix(op, r)) continue;
            const cb_weight_matrix *seen = NULL;
            for (int j = 0; j < i * CB_OP_MAX_PARAMS + r && !seen; j++)
                if (d->mats[j].data && p->ops[j / CB_OP_MAX_PARAMS].p[j % CB_OP_MAX_PARAMS] == op->p[r]) seen = &d->mats[j];
            cb_weight_matrix *w = &d->mats[i * CB_OP_MAX_PARAMS + r];
            if (seen) {
                cb_weight_matrix_view(w, kind, seen->data, seen->rows, seen->cols);
                continue;
            }
            const cb_param *par = NULL;
            for (int k = 0; k < t->n && !par; k++)
                if (t->items[k].offset == op->p[r]) par = &t->items[k];
            if (!par || par->ndim != 2) return cb_fail(e, CB_E_INVALID, op->id, "weight matrix without a 2-d tensor");
            const int rows = (int)par->shape[0], cols = (int)par->shape[1];
            if (kind == CB_KV_F32) { /* the model's own buffer */
                cb_weight_matrix_view(w, kind, weights + op->p[r], rows, cols);
                continue;
            }
            cb_weight_matrix_view(w, kind, NULL, rows, cols);
            void *data = be->alloc(be, cb_weight_matrix_bytes(w), e);
            if (!data) return e->code;
            cbk_quantize_rows(data, w->row_bytes, weights + op->p[r], (size_t)cols, (int)kind, rows, cols);
            w->data = w->owned = data;
            d->weight_bytes += cb_weight_matrix_bytes(w);
        }
    if (kind != CB_KV_F32)
        for (int i = 0; i < p->n_ops; i++) {
            const cb_op *op = &p->ops[i];
            if (op->kind == CB_OP_ATTENTION && op->attn.mode != CB_ATTENTION_DECOUPLED && !op->attn.bias)
                CB_TRY(merge_rows(be, d, p, i, QKV_ROLES, 3, e));
            if (op->kind == CB_OP_SWIGLU) CB_TRY(merge_rows(be, d, p, i, GATE_UP_ROLES, 2, e));
        }
    return be->synchronize(be, e);
}

/* ---- the one-row step: its stream, graph and device state (d->dev) ---- */

/* how the ops of the pass running launch (enum step_mode) */
enum step_mode {
    STEP_HOST = 0,    /* several rows: the legacy stream, the position an argument */
    STEP_PLAIN = 1,   /* one row on the step's stream, the position on the device, uncaptured */
    STEP_CAPTURE = 2, /* the same, captured into a graph launched at the last op */
    STEP_REPLAY = 3   /* the graph launched at op 0: the ops only keep the host's lengths */
};

/* Rows of a batched step whose positions go to the device (cuda_step.dpos_rows): a batch
 * of more runs with the positions as arguments, uncaptured. */
#define BATCH_ROWS_MAX 64

/* What a captured step holds fixed: a graph replays only under the same. */
typedef struct step_key {
    unsigned long gen; /* cuda_step.gen: the caches, scratch and RoPE tables where they are */
    const void *slots, *tokens, *weights, *rope;
    int head_rows, window, fused, pdl, products, ahead, stage, attn, combine;
} step_key;

/* What a captured batched step (infer/batch.h: one token of each of k sequences) holds
 * fixed: the sequences in their row order, where each one's caches and scratch are (their
 * gen) and each one's attention window. */
typedef struct batch_key {
    int k, head_rows, pdl, attn;
    const void *slots, *tokens, *weights, *rope;
    const cb_decode *rows[BATCH_ROWS_MAX];
    unsigned long gens[BATCH_ROWS_MAX];
    int windows[BATCH_ROWS_MAX];
} batch_key;

typedef struct cuda_step {
    cudaStream_t stream;  /* blocking: ordered with the legacy stream both ways */
    int *dpos;            /* device (1): the step's position */
    int32_t *argmax;      /* device (2): cbk_argmax's id and non-finite flag */
    float *rope;          /* device: per RoPE table, cos (rope_cap, dim/2) then sin */
    size_t *rope_off;     /* (n_ropes) each table's offset in rope */
    int rope_cap;         /* positions the tables hold */
    int graphs;           /* capture steps (CB_CUDA_GRAPHS=0: no) */
    int fused;            /* a step folds ops into its products (CB_DECODE_FUSED=1: yes) */
    int pdl;              /* its kernels under programmatic dependent launch (CB_CUDA_PDL=1) */
    int products;         /* an unfused step's one-row products through cbk_matvec_step (CB_DECODE_PRODUCTS=step) */
    int ahead, stage;     /* cbk_set_step_tuning's (CB_DECODE_AHEAD=8, CB_DECODE_STAGE=1) */
    int attn;             /* cbk_set_attn_step_kernel's (CB_DECODE_ATTN=step) */
    int combine;          /* attention's last split combines (CB_DECODE_COMBINE=split) */
    int *attn_done;       /* device (max heads): cbk_attn_decode_at's counts, zero between launches */
    int *norm_of;         /* (n_ops) the RMSNorm op folded into op i's products, or -1 */
    int *add_of;          /* (n_ops) the residual add op i's last product writes, or -1 */
    int *resid_of;        /* (n_ops) that add's other input slot */
    unsigned char *folded; /* (n_ops) 1: the op runs inside a neighbour in a fused step */
    int mode;             /* enum step_mode of the pass running */
    int batch;            /* 1 while that pass is a batched step (its positions in dpos_rows) */
    unsigned long gen;    /* where what a graph points at is: new_gen() at every move */
    cudaGraphExec_t exec; /* NULL: none captured */
    step_key key;         /* what exec was captured under */
    int *dpos_rows;       /* device (BATCH_ROWS_MAX): a batched step's positions, row by row */
    cudaGraphExec_t batch_exec; /* a batched step's graph, run by this state's pass; NULL: none */
    batch_key bkey;       /* what batch_exec was captured under */
    long captures, replays;
} cuda_step;

/* A value no state's gen held before, so that a graph naming another state's buffers never
 * replays over a state made later at the same address. */
static unsigned long new_gen(void) {
    static unsigned long moves;
    return __atomic_add_fetch(&moves, 1, __ATOMIC_RELAXED);
}

static cuda_step *step_of(const cb_decode *d) { return (cuda_step *)d->dev; }

static void step_free(cb_backend *be, cb_decode *d) {
    cuda_step *st = step_of(d);
    if (!st) return;
    if (st->exec) cudaGraphExecDestroy(st->exec);
    if (st->batch_exec) cudaGraphExecDestroy(st->batch_exec);
    if (st->stream) cudaStreamDestroy(st->stream);
    be->free(be, st->dpos);
    be->free(be, st->dpos_rows);
    be->free(be, st->argmax);
    be->free(be, st->attn_done);
    be->free(be, st->rope);
    free(st->rope_off);
    free(st->norm_of);
    free(st->add_of);
    free(st->resid_of);
    free(st->folded);
    free(st);
    d->dev = NULL;
}

/* Which ops a fused step folds into a neighbour: an RMSNorm into the attention, SwiGLU,
 * linear op or head right after it that reads its output (the only reader of that slot),
 * whose products then normalise their input themselves; a residual add into the attention or SwiGLU right
 * before it whose output it alone reads, whose last product (wo, w_down) then writes the
 * add's output, the other input added. Programs of another shape keep their ops. */
static int plan_fusion(cuda_step *st, const cb_program *p, cb_error *e) {
    const int n = p->n_ops;
    st->norm_of = cb_malloc((size_t)n, sizeof *st->norm_of, e);
    st->add_of = st->norm_of ? cb_malloc((size_t)n, sizeof *st->add_of, e) : NULL;
    st->resid_of = st->add_of ? cb_malloc((size_t)n, sizeof *st->resid_of, e) : NULL;
    st->folded = st->resid_of ? cb_calloc((size_t)n, 1, e) : NULL;
    int *readers = st->folded ? cb_calloc(p->n_slots ? (size_t)p->n_slots : 1, sizeof *readers, e) : NULL;
    if (!readers) return e->code;
    for (int i = 0; i < n; i++) {
        st->norm_of[i] = st->add_of[i] = st->resid_of[i] = -1;
        for (int k = 0; k < p->ops[i].n_in; k++) readers[p->inputs[p->ops[i].in_first + k]]++;
    }
    for (int i = 0; i + 1 < n; i++) {
        const cb_op *op = &p->ops[i], *nx = &p->ops[i + 1];
        const int *nin = p->inputs + nx->in_first;
        const int only = readers[op->out] == 1 && op->out != p->logits_slot;
        if (op->kind == CB_OP_RMSNORM && op->n_in == 1 && only && op->d_in <= CBK_STEP_MAX_COLS &&
            op->p[CB_P_WEIGHT] != CB_NO_PARAM &&
            (nx->kind == CB_OP_ATTENTION || nx->kind == CB_OP_SWIGLU || nx->kind == CB_OP_HEAD ||
             nx->kind == CB_OP_LINEAR) &&
            nx->n_in == 1 && nin[0] == op->out && !st->folded[i]) {
            st->norm_of[i + 1] = i;
            st->folded[i] = 1;
        }
        if ((op->kind == CB_OP_ATTENTION || op->kind == CB_OP_SWIGLU) && only && nx->kind == CB_OP_ADD &&
            nx->n_in == 2 && (nin[0] == op->out) != (nin[1] == op->out)) {
            st->add_of[i] = i + 1;
            st->resid_of[i] = nin[0] == op->out ? nin[1] : nin[0];
            st->folded[i + 1] = 1;
        }
    }
    free(readers);
    return CB_OK;
}

static int step_init(cb_backend *be, cb_decode *d, cb_error *e) {
    cuda_step *st = cb_calloc(1, sizeof *st, e);
    if (!st) return e->code;
    d->dev = st;
    const char *env = getenv("CB_CUDA_GRAPHS");
    st->graphs = !d->cfg.graphs_off && !(env && strcmp(env, "0") == 0);
    env = getenv("CB_DECODE_FUSED"); /* off by default: slower on the device as it stands */
    st->fused = env && strcmp(env, "1") == 0;
    env = getenv("CB_CUDA_PDL");
    st->pdl = env && strcmp(env, "1") == 0;
    env = getenv("CB_DECODE_PRODUCTS");
    st->products = env && strcmp(env, "step") == 0;
    env = getenv("CB_DECODE_AHEAD");
    st->ahead = env && strcmp(env, "8") == 0 ? 8 : 4;
    env = getenv("CB_DECODE_STAGE");
    st->stage = env && strcmp(env, "1") == 0;
    env = getenv("CB_DECODE_ATTN");
    st->attn = env && strcmp(env, "step") == 0;
    env = getenv("CB_DECODE_COMBINE");
    st->combine = env && strcmp(env, "split") == 0;
    CB_TRY(plan_fusion(st, d->prog, e));
    st->rope_off = cb_calloc(d->prog->n_ropes ? (size_t)d->prog->n_ropes : 1, sizeof *st->rope_off, e);
    if (!st->rope_off) return e->code;
    if (cudaStreamCreate(&st->stream) != cudaSuccess) {
        st->stream = NULL;
        return cb_fail(e, CB_E_RUNTIME, "cuda", "decode: no stream could be created");
    }
    st->gen = new_gen();
    if (!(st->dpos = be->alloc(be, sizeof *st->dpos, e))) return e->code;
    if (!(st->dpos_rows = be->alloc(be, BATCH_ROWS_MAX * sizeof *st->dpos_rows, e))) return e->code;
    if (!(st->argmax = be->alloc(be, 2 * sizeof *st->argmax, e))) return e->code;
    int heads = 1;
    for (int i = 0; i < d->prog->n_ops; i++)
        if (d->prog->ops[i].kind == CB_OP_ATTENTION && d->prog->ops[i].attn.n_heads > heads)
            heads = d->prog->ops[i].attn.n_heads;
    if (!(st->attn_done = be->alloc(be, (size_t)heads * sizeof *st->attn_done, e))) return e->code;
    if (cudaMemset(st->attn_done, 0, (size_t)heads * sizeof *st->attn_done) != cudaSuccess)
        return cb_fail(e, CB_E_RUNTIME, "cuda", "decode: clearing the attention's counts failed");
    cbk_attn_decode_prepare(); /* not a stream operation: before any capture */
    d->rope_on_device = 1;
    return CB_OK;
}

/* The RoPE tables for positions 0 .. need-1 on the device (at least doubling), computed as
 * infer/session.c's fill_rope computes a pass's rows (float angle, double cos and sin). */
static int rope_reserve(cb_backend *be, cb_decode *d, int need, cb_error *e) {
    cuda_step *st = step_of(d);
    const cb_program *p = d->prog;
    if (!p->n_ropes || need <= st->rope_cap) return CB_OK;
    long long want = st->rope_cap ? 2LL * st->rope_cap : 256;
    if (want < need) want = need;
    if (want > INT32_MAX) want = need;
    const int cap = (int)want;
    size_t total = 0;
    int max_half = 1;
    for (int i = 0; i < p->n_ropes; i++) {
        const int half = p->ropes[i].dim / 2;
        st->rope_off[i] = total;
        total += 2 * (size_t)cap * half;
        if (half > max_half) max_half = half;
    }
    float *host = cb_malloc(total ? total : 1, sizeof *host, e);
    double *f = host ? cb_malloc((size_t)max_half, sizeof *f, e) : NULL;
    if (!f) {
        free(host);
        return e->code;
    }
    for (int i = 0; i < p->n_ropes; i++) {
        const int half = p->ropes[i].dim / 2;
        cb_rope_inv_freq(f, p->ropes[i].dim, p->ropes[i].theta, &p->ropes[i].scaling);
        float *cos_t = host + st->rope_off[i], *sin_t = cos_t + (size_t)cap * half;
        for (int t = 0; t < cap; t++)
            for (int j = 0; j < half; j++) {
                float angle = (float)t * (float)f[j];
                cos_t[(size_t)t * half + j] = (float)cos((double)angle);
                sin_t[(size_t)t * half + j] = (float)sin((double)angle);
            }
    }
    free(f);
    float *dev = be->alloc(be, total * sizeof *dev, e);
    int rc = dev ? be->upload(be, dev, host, total * sizeof *dev, e) : e->code;
    free(host);
    if (rc != CB_OK) {
        be->free(be, dev);
        return rc;
    }
    be->free(be, st->rope);
    st->rope = dev;
    st->rope_cap = cap;
    st->gen = new_gen();
    return CB_OK;
}

int cb_cuda_decode_graph_counts(const cb_decode *d, long *captures, long *replays) {
    const cuda_step *st = step_of(d);
    if (!st) return 0;
    *captures = st->captures;
    *replays = st->replays;
    return st->graphs;
}

static void free_tensor(cb_backend *be, cb_kv_tensor *t) {
    be->free(be, t->data);
    t->data = NULL;
    t->cap = 0;
}

void cb_cuda_decode_free(cb_backend *be, cb_decode *d) {
    step_free(be, d);
    be->free(be, d->work);
    be->free(be, d->attn_scratch);
    free(d->op_layer);
    if (d->mats && !d->mats_borrowed) {
        for (size_t i = 0; i < d->n_mats; i++) be->free(be, d->mats[i].owned);
        free(d->mats);
    }
    for (int l = 0; l < d->kv.n_layers; l++) {
        free_tensor(be, &d->kv.layers[l].k);
        free_tensor(be, &d->kv.layers[l].k_sem);
        free_tensor(be, &d->kv.layers[l].v);
    }
    cb_kv_cache_free(&d->kv); /* the host side: shapes, the layer array */
    memset(d, 0, sizeof *d);
}

int cb_cuda_decode_init(cb_backend *be, cb_decode *d, const cb_program *p, const struct cb_param_table *params,
                        const float *weights, const cb_decode_config *cfg, cb_error *e) {
    memset(d, 0, sizeof *d);
    d->cfg = *cfg;
    d->prog = p;
    d->n_mats = (size_t)p->n_ops * CB_OP_MAX_PARAMS;
    int n_layers = 0;
    for (int i = 0; i < p->n_ops; i++) {
        n_layers += p->ops[i].kind == CB_OP_ATTENTION;
        size_t w = cb_decode_op_work(&p->ops[i], (size_t)cfg->rows);
        if (w > d->work_elems) d->work_elems = w;
    }
    const cb_attention_config **cfgs = cb_malloc(n_layers ? (size_t)n_layers : 1, sizeof *cfgs, e);
    d->op_layer = cb_malloc((size_t)p->n_ops, sizeof *d->op_layer, e);
    int rc = cfgs && d->op_layer ? CB_OK : CB_E_RUNTIME;
    if (rc == CB_OK) rc = (d->work = be->alloc(be, (d->work_elems ? d->work_elems : 1) * sizeof(float), e)) ? CB_OK
                                                                                                      : e->code;
    if (rc == CB_OK) {
        int li = 0;
        for (int i = 0; i < p->n_ops; i++) {
            d->op_layer[i] = p->ops[i].kind == CB_OP_ATTENTION ? li : -1;
            if (p->ops[i].kind == CB_OP_ATTENTION) cfgs[li++] = &p->ops[i].attn;
        }
        /* no storage yet; per head: the CUDA kernels read a head of a token as whole blocks */
        rc = cb_kv_cache_init_layout(&d->kv, n_layers, cfgs, &cfg->kinds, 0, CB_KV_LAYOUT_HEADS, e);
    }
    if (rc == CB_OK && cfg->weights_of) { /* a batch's other sequence: the first's matrices */
        d->mats = cfg->weights_of->mats;
        d->mats_borrowed = 1;
    } else if (rc == CB_OK) {
        rc = convert_weights(be, d, p, params, weights, cfg->weight_kind, e);
    }
    if (rc == CB_OK) rc = step_init(be, d, e);
    free(cfgs);
    if (rc != CB_OK) cb_cuda_decode_free(be, d);
    return rc;
}

/* Room for cap tokens, growing as infer/kv_cache.c does (at least doubling, from 16): a
 * new device block, the held tokens copied over. */
static int tensor_reserve(cb_backend *be, cb_kv_tensor *t, int cap, cb_error *e) {
    if (cap <= t->cap || t->row_bytes == 0) return CB_OK;
    long long grown = t->cap > 0 ? 2LL * t->cap : 16;
    long long want = cap > grown ? cap : grown;
    if (want > INT32_MAX) want = cap;
    unsigned char *p = be->alloc(be, (size_t)want * t->row_bytes, e);
    if (!p) {
        cb_error_prefix(e, "kv cache of %lld tokens", want);
        return e->code;
    }
    if (t->len && cudaMemcpy(p, t->data, (size_t)t->len * t->row_bytes, cudaMemcpyDeviceToDevice) != cudaSuccess) {
        be->free(be, p);
        return cb_fail(e, CB_E_RUNTIME, "cuda", "kv cache: copy while growing failed");
    }
    be->free(be, t->data);
    t->data = p;
    t->cap = (int)want;
    return CB_OK;
}

/* Make room for m more tokens in every cache and in the attention scratch, before any state
 * changes, so that a pass either runs whole or leaves the state as it was. */
int cb_cuda_decode_reserve(cb_backend *be, cb_decode *d, int pos0, int m, cb_error *e) {
    cuda_step *st = step_of(d);
    size_t need = 0;
    for (int i = 0; i < d->prog->n_ops; i++) {
        const cb_op *op = &d->prog->ops[i];
        if (op->kind != CB_OP_ATTENTION) continue;
        const cb_head_dims h = cb_head_dims_of(&op->attn);
        cb_layer_cache *c = &d->kv.layers[d->op_layer[i]];
        const void *was[3] = {c->k.data, c->k_sem.data, c->v.data};
        CB_TRY(tensor_reserve(be, &c->k, pos0 + m, e));
        CB_TRY(tensor_reserve(be, &c->k_sem, pos0 + m, e));
        CB_TRY(tensor_reserve(be, &c->v, pos0 + m, e));
        if (was[0] != c->k.data || was[1] != c->k_sem.data || was[2] != c->v.data) st->gen = new_gen();
        size_t n = cbk_attn_decode_work(m, h.H, h.Hkv, h.ds, h.dr, h.dv, pos0 + m);
        if (n > need) need = n;
        /* a step's attention plans for the whole capacity (cbk_attn_decode_at) */
        n = cbk_attn_decode_work(1, h.H, h.Hkv, h.ds, h.dr, h.dv, c->v.cap);
        if (n > need) need = n;
    }
    if (need > d->attn_scratch_elems) {
        size_t cap = d->attn_scratch_elems * 2 > need ? d->attn_scratch_elems * 2 : need;
        float *q = be->alloc(be, cap * sizeof *q, e);
        if (!q) return e->code;
        be->free(be, d->attn_scratch);
        d->attn_scratch = q;
        d->attn_scratch_elems = cap;
        st->gen = new_gen();
    }
    return rope_reserve(be, d, pos0 + m, e);
}

void cb_cuda_decode_truncate(cb_backend *be, cb_decode *d, int len) {
    (void)be;
    cb_kv_cache_truncate(&d->kv, len); /* lengths only: the host side */
}

/* Nothing to hold around a pass: a step's stream and graph are taken at its first op and
 * given back at its last (cb_cuda_decode_op_forward). */
void cb_cuda_decode_begin(cb_backend *be) { (void)be; }
void cb_cuda_decode_end(cb_backend *be) { (void)be; }

/* 1 while a step's ops launch on its stream with the position on the device */
static int on_step(const cb_decode *d) {
    const int mode = step_of(d)->mode;
    return mode == STEP_PLAIN || mode == STEP_CAPTURE;
}

static const float *W(const cb_pass *p, const cb_op *op, int role) {
    return op->p[role] == CB_NO_PARAM ? NULL : p->weights + op->p[role];
}

static const cb_weight_matrix *mat(const cb_pass *p, int i, int role) {
    return &p->decode->mats[i * CB_OP_MAX_PARAMS + role];
}

/* The context of the op running (decode_op_forward sets it): products of many rows go
 * through its cuBLAS handle and scratch. */
static cuda_ctx *ctx_now;
/* 1 while an unfused step's ops launch and its one-row products go through cbk_matvec_step
 * (cuda_step.products; step_begin sets it, step_end and step_abandon clear it) */
static int step_products_now;

/* From this many rows (prefill chunks) a product goes through cuBLAS's sgemm over the
 * matrix dequantised into scratch: the matvec kernel reads W once for 8 rows at a time,
 * which is memory-bound at one row and compute-bound far below sgemm at hundreds. */
#define GEMM_ROWS 16

/* out (n, rows of W) = in (n, cols of W) W^T + bias */
static void matvec(float *out, const cb_weight_matrix *w, const float *in, const float *bias, int n) {
    cuda_ctx *c = ctx_now;
    if (n == 1 && step_products_now) { /* the same sums in the same order as cbk_matvec's */
        cbk_matvec_step(out, w->data, w->row_bytes, (int)w->kind, in, bias, w->rows, w->cols, NULL, 0.0f, 0, NULL);
        return;
    }
    if (n >= GEMM_ROWS && c) {
        if (w->kind == CB_KV_F32) {
            cb_cuda_linear_forward(c, out, in, w->data, bias, n, w->cols, w->rows);
            return;
        }
        cb_error e;
        if (cb_cuda_reserve(c, (size_t)w->rows * w->cols, 0, &e) == CB_OK) {
            cbk_dequantize_rows(c->ws, w->data, w->row_bytes, (int)w->kind, w->rows, w->cols);
            cb_cuda_linear_forward(c, out, in, c->ws, bias, n, w->cols, w->rows);
            return;
        } /* no room for the dequantised matrix: the matvec kernel needs none */
    }
    cbk_matvec(out, w->data, w->row_bytes, (int)w->kind, in, bias, w->rows, w->cols, n);
}
static void proj(const cb_pass *p, int i, int role, float *out, const float *in, const float *bias) {
    matvec(out, mat(p, i, role), in, bias, p->T);
}

static void rope_rows(const cb_pass *p, const cb_op *op, const float **cos_t, const float **sin_t) {
    *cos_t = *sin_t = NULL;
    if (op->rope < 0) return;
    const cb_rope_table *t = &p->prog->ropes[op->rope];
    *cos_t = p->rope + t->offset;
    *sin_t = *cos_t + (size_t)p->prog->T * (t->dim / 2);
}

/* n rows (n, n_heads * head_dim) into tensor t at token pos (reserved); dpos non-NULL: at
 * the position it holds on the device (a step) */
static void append(cb_kv_tensor *t, const float *rows, int pos, const int *dpos, int n) {
    if (!t->n_heads) return;
    if (dpos)
        cbk_quantize_rows_at(t->data, t->head_bytes, dpos, t->row_bytes, rows, (size_t)t->head_dim, (int)t->kind,
                             n * t->n_heads, t->head_dim);
    else
        cbk_quantize_rows(t->data + (size_t)pos * t->row_bytes, t->head_bytes, rows, (size_t)t->head_dim,
                          (int)t->kind, n * t->n_heads, t->head_dim);
}

/* The host's side of an attention op's pass: dc's cache lengths after it (len), the decode
 * plan's choice for that length (its bucket kept for the runtime's report). A replayed step
 * runs only this (attention_lengths: the pass's own state). */
static cb_decode_plan cache_lengths(cb_decode *dc, int oi, int len) {
    cb_layer_cache *cache = &dc->kv.layers[dc->op_layer[oi]];
    if (cache->k.n_heads) cache->k.len = len;
    cache->k_sem.len = len;
    if (cache->v.n_heads) cache->v.len = len;
    cache->len = len;
    return cb_decode_plan_pick(dc->cfg.plan, len, &dc->last_bucket);
}
static cb_decode_plan attention_lengths(cb_pass *p, int oi) { return cache_lengths(p->decode, oi, p->pos0 + p->T); }

static cbk_kv_view view_of(const cb_kv_tensor *t) {
    cbk_kv_view v = {t->data, (int)t->kind, t->head_dim, t->row_bytes, t->head_bytes};
    return v;
}

/* The unfused step's (and a prefill chunk's) RoPE of q and k and cache appends */
static void unfused_rope_append(cb_pass *p, int oi, float *q, float *k, const float *v, const float *k_sem,
                                const int *dpos) {
    cb_decode *dc = p->decode;
    const cb_op *op = &p->prog->ops[oi];
    const cb_attention_config *a = &op->attn;
    const cb_head_dims d = cb_head_dims_of(a);
    const int m = p->T, pos0 = p->pos0, dec = a->mode == CB_ATTENTION_DECOUPLED;
    cb_layer_cache *cache = &dc->kv.layers[dc->op_layer[oi]];
    if (a->rope_enabled) {
        const float *cos_t, *sin_t;
        rope_rows(p, op, &cos_t, &sin_t);
        if (m == 1) { /* q then k: one row of H + Hkv heads */
            cbk_rope(q, q, cos_t, sin_t, 1, 1, d.H + d.Hkv, d.dr, 0, 1.0f, 0);
        } else {
            cbk_rope(q, q, cos_t, sin_t, 1, m, d.H, d.dr, 0, 1.0f, 0);
            cbk_rope(k, k, cos_t, sin_t, 1, m, d.Hkv, d.dr, 0, 1.0f, 0);
        }
    }
    append(&cache->k, k, pos0, dpos, m);
    if (dec) append(&cache->k_sem, k_sem, pos0, dpos, m);
    append(&cache->v, v, pos0, dpos, m);
}

/* A batched pass's attention (infer/batch.h): row r is one token of sequence row_seqs[r] at
 * row_pos[r] (its RoPE row filled for that position), so after the rotation of all the rows
 * at once each row goes into its own sequence's caches and attends over them alone, as that
 * sequence's own step would (cb_cpu_decode_attention's batch). The rows' products are the
 * pass's, one read of each matrix for all of them. On a step (batch_begin) the kernels read
 * each row's position from the device and plan for its cache's capacity, so a graph of the
 * step replays while no cache moves. */
static void batch_attention(cb_pass *p, int oi, float *att, float *q, float *k, const float *v, const float *q_sem,
                            const float *k_sem, const float *gate) {
    const cb_op *op = &p->prog->ops[oi];
    const cb_attention_config *a = &op->attn;
    const cb_head_dims d = cb_head_dims_of(a);
    const int m = p->T, dec = a->mode == CB_ATTENTION_DECOUPLED;
    if (a->rope_enabled) {
        const float *cos_t, *sin_t;
        rope_rows(p, op, &cos_t, &sin_t);
        cbk_rope(q, q, cos_t, sin_t, 1, m, d.H, d.dr, 0, 1.0f, 0);
        cbk_rope(k, k, cos_t, sin_t, 1, m, d.Hkv, d.dr, 0, 1.0f, 0);
    }
    const int *dpos_rows = on_step(p->decode) ? step_of(p->decode)->dpos_rows : NULL;
    for (int r = 0; r < m; r++) {
        cb_decode *sd = p->row_seqs[r];
        cb_layer_cache *c = &sd->kv.layers[sd->op_layer[oi]];
        const int pos = p->row_pos[r], *dpos = dpos_rows ? dpos_rows + r : NULL;
        append(&c->k, k + (size_t)r * d.Hkv * d.dr, pos, dpos, 1);
        if (dec) append(&c->k_sem, k_sem + (size_t)r * d.Hkv * d.ds, pos, dpos, 1);
        append(&c->v, v + (size_t)r * d.Hkv * d.dv, pos, dpos, 1);
        const cb_decode_plan plan = cache_lengths(sd, oi, pos + 1);
        const cbk_kv_view kv = view_of(&c->k), ks = view_of(&c->k_sem), vv = view_of(&c->v);
        float *out_r = att + (size_t)r * d.H * d.dv;
        const float *q_r = q + (size_t)r * d.H * d.dr, *qs_r = dec ? q_sem + (size_t)r * d.H * d.ds : NULL,
                    *g_r = d.gated ? gate + (size_t)r * d.H : NULL;
        if (dpos)
            cbk_attn_decode_at(out_r, sd->attn_scratch, q_r, qs_r, g_r, &kv, &ks, &vv, 1, d.H, d.Hkv, d.ds, d.dr, d.dv,
                               dpos, plan.local_window, c->v.cap, NULL);
        else
            cbk_attn_decode(out_r, sd->attn_scratch, q_r, qs_r, g_r, &kv, &ks, &vv, 1, d.H, d.Hkv, d.ds, d.dr, d.dv, pos,
                            plan.local_window);
    }
}

/* What a fused step folds into an op's products (all zero: nothing, the op as ever). */
typedef struct fold {
    int on;             /* the op runs fused: its one-row products through cbk_matvec_step */
    const float *norm;  /* the folded RMSNorm's weight: the op's input is the norm's input */
    float eps;
    const float *resid; /* the folded add's other input: the op's output is the add's */
} fold;

/* out = in W^T (+ bias) of one row of a fused op, its input normalised by f's norm when
 * norm; resid non-NULL: out = resid + that */
static void fused_proj(const cb_weight_matrix *w, float *out, const float *in, const float *bias, const fold *f,
                       int norm, const float *resid) {
    cbk_matvec_step(out, w->data, w->row_bytes, (int)w->kind, in, bias, w->rows, w->cols, norm ? f->norm : NULL,
                    f->eps, 0, resid);
}

/* A product of the pass reading the op's input (norm 1: f's norm folded in) */
static void proj_in(const cb_pass *p, int i, int role, float *out, const float *in, const float *bias, const fold *f) {
    if (f->on) fused_proj(mat(p, i, role), out, in, bias, f, 1, NULL);
    else proj(p, i, role, out, in, bias);
}

/* The cache tensor t's new row from src (a fused step's cbk_rope_cache_step) */
static cbk_kv_dst dst_of(const cb_kv_tensor *t, const float *src) {
    cbk_kv_dst d = {t->data, src, (int)t->kind, t->n_heads, t->head_dim, t->row_bytes, t->head_bytes};
    return d;
}

/* Attention of the pass's m rows at pos0, as cb_cpu_decode_attention; f: a fused step's. */
static void decode_attention(cb_pass *p, int oi, float *out, const float *in, const fold *f) {
    cb_decode *dc = p->decode;
    const cb_op *op = &p->prog->ops[oi];
    const cb_attention_config *a = &op->attn;
    const cb_head_dims d = cb_head_dims_of(a);
    const int m = p->T, pos0 = p->pos0, dec = a->mode == CB_ATTENTION_DECOUPLED, bias = a->bias;
    cb_layer_cache *cache = &dc->kv.layers[dc->op_layer[oi]];
    float *q = dc->work, *k = q + (size_t)m * d.H * d.dr, *v = k + (size_t)m * d.Hkv * d.dr;
    float *q_sem = v + (size_t)m * d.Hkv * d.dv, *k_sem = q_sem + (size_t)m * d.H * d.ds;
    float *gate = k_sem + (size_t)m * d.Hkv * d.ds, *att = gate + (size_t)m * d.H;
    cb_weight_matrix qkv;
    if (m == 1 && !dec && !bias && joined(dc, oi, QKV_ROLES, 3, &qkv)) { // q, k, v back to back in work
        if (f->on) fused_proj(&qkv, q, in, NULL, f, 1, NULL);
        else matvec(q, &qkv, in, NULL, 1);
    } else {
        proj_in(p, oi, dec ? CB_P_QGEO_W : CB_P_Q_W, q, in, bias ? W(p, op, dec ? CB_P_QGEO_B : CB_P_Q_B) : NULL, f);
        proj_in(p, oi, dec ? CB_P_KGEO_W : CB_P_K_W, k, in, bias ? W(p, op, dec ? CB_P_KGEO_B : CB_P_K_B) : NULL, f);
        proj_in(p, oi, CB_P_V_W, v, in, bias ? W(p, op, CB_P_V_B) : NULL, f);
    }
    if (dec) {
        proj_in(p, oi, CB_P_QSEM_W, q_sem, in, bias ? W(p, op, CB_P_QSEM_B) : NULL, f);
        proj_in(p, oi, CB_P_KSEM_W, k_sem, in, bias ? W(p, op, CB_P_KSEM_B) : NULL, f);
    }
    if (d.gated) { // gate (m, H) = sigmoid(a_h + in . gate_proj_h), as cb_attention_forward
        if (a->decoupled_gate_dynamic) proj_in(p, oi, CB_P_GATE_PROJ, gate, in, NULL, f);
        cbk_attn_gate(gate, a->decoupled_gate ? W(p, op, CB_P_GATE_A) : NULL, a->decoupled_gate_dynamic, (size_t)m,
                      d.H);
    }
    if (p->row_seqs) {
        batch_attention(p, oi, att, q, k, v, q_sem, k_sem, gate);
        proj(p, oi, CB_P_O_W, out, att, bias ? W(p, op, CB_P_O_B) : NULL);
        return;
    }
    const int *dpos = on_step(dc) ? step_of(dc)->dpos : NULL;
    if (f->on) { /* RoPE (the geometric part under DBA) and the caches' new rows: one launch */
        const float *cos_t = NULL, *sin_t = NULL;
        if (a->rope_enabled) rope_rows(p, op, &cos_t, &sin_t);
        cbk_kv_dst kd = dst_of(&cache->k, k), ksd = dst_of(&cache->k_sem, k_sem), vd = dst_of(&cache->v, v);
        if (!dec) ksd.n_heads = 0;
        cbk_rope_cache_step(q, d.H, d.Hkv, d.dr, cos_t, sin_t, dpos, &kd, &ksd, &vd);
    } else {
        unfused_rope_append(p, oi, q, k, v, k_sem, dpos);
    }
    const cb_decode_plan plan = attention_lengths(p, oi);
    const cbk_kv_view kv = view_of(&cache->k), ks = view_of(&cache->k_sem), vv = view_of(&cache->v);
    if (dpos)
        cbk_attn_decode_at(att, dc->attn_scratch, q, dec ? q_sem : NULL, d.gated ? gate : NULL, &kv, &ks, &vv, m, d.H,
                           d.Hkv, d.ds, d.dr, d.dv, dpos, plan.local_window, cache->v.cap,
                           step_of(dc)->combine ? step_of(dc)->attn_done : NULL);
    else
        cbk_attn_decode(att, dc->attn_scratch, q, dec ? q_sem : NULL, d.gated ? gate : NULL, &kv, &ks, &vv, m, d.H,
                        d.Hkv, d.ds, d.dr, d.dv, pos0, plan.local_window);
    if (f->on) fused_proj(mat(p, oi, CB_P_O_W), out, att, bias ? W(p, op, CB_P_O_B) : NULL, f, 0, f->resid);
    else proj(p, oi, CB_P_O_W, out, att, bias ? W(p, op, CB_P_O_B) : NULL);
}

/* out = (silu(in Wg^T) * (in Wu^T)) Wd^T; f: a fused step's (gate, up and silu(g) * u
 * one launch when the two are joined) */
static void decode_swiglu(cb_pass *p, int i, float *out, const float *in, const fold *f) {
    const cb_op *op = &p->prog->ops[i];
    const int m = p->T;
    const size_t nf = (size_t)m * op->d_ff;
    float *gate = p->decode->work, *up = gate + nf, *h = up + nf;
    cb_weight_matrix gate_up;
    const int both = m == 1 && joined(p->decode, i, GATE_UP_ROLES, 2, &gate_up);
    if (both && f->on) {
        cbk_matvec_step(h, gate_up.data, gate_up.row_bytes, (int)gate_up.kind, in, NULL, op->d_ff, gate_up.cols,
                        f->norm, f->eps, 1, NULL);
    } else {
        if (both) { // gate, up back to back in work
            matvec(gate, &gate_up, in, NULL, 1);
        } else {
            proj_in(p, i, CB_P_GATE, gate, in, NULL, f);
            proj_in(p, i, CB_P_UP, up, in, NULL, f);
        }
        cbk_swiglu_forward(h, gate, up, nf);
    }
    if (f->on) fused_proj(mat(p, i, CB_P_DOWN), out, h, NULL, f, 0, f->resid);
    else proj(p, i, CB_P_DOWN, out, h, NULL);
}

/* out = gelu_tanh(in Wfc^T + bfc) Wproj^T + bproj */
static void decode_mlp(cb_pass *p, int i, float *out, const float *in) {
    const cb_op *op = &p->prog->ops[i];
    const size_t nf = (size_t)p->T * op->d_ff;
    float *pre = p->decode->work, *h = pre + nf;
    proj(p, i, CB_P_FC_W, pre, in, W(p, op, CB_P_FC_B));
    cbk_gelu_forward(h, pre, nf);
    proj(p, i, CB_P_PROJ_W, out, h, W(p, op, CB_P_PROJ_B));
}

/* A linear op, or the head: the widest product (V columns), so only the rows asked for;
 * f: a fused step's (one row, the norm before it folded in). */
static void decode_linear(cb_pass *p, int i, float *out, const float *in, const fold *f) {
    const cb_op *op = &p->prog->ops[i];
    const int m = p->T;
    if (f->on) {
        if (op->kind == CB_OP_LINEAR || p->head_rows != CB_HEAD_NONE)
            fused_proj(mat(p, i, CB_P_WEIGHT), out, in, W(p, op, CB_P_BIAS), f, 1, NULL);
    } else if (op->kind == CB_OP_LINEAR || p->head_rows == CB_HEAD_ALL) {
        proj(p, i, CB_P_WEIGHT, out, in, W(p, op, CB_P_BIAS));
    } else if (p->head_rows == CB_HEAD_LAST) {
        matvec(out + (size_t)(m - 1) * op->d_out, mat(p, i, CB_P_WEIGHT), in + (size_t)(m - 1) * op->d_in,
               W(p, op, CB_P_BIAS), 1);
    }
}

static int run_op(cuda_ctx *c, cb_pass *p, int i, cb_error *e) {
    const cb_program *prog = p->prog;
    const cb_op *op = &prog->ops[i];
    const int m = p->T;
    const int *ins = prog->inputs + op->in_first;
    float *out = p->slots + prog->slots[op->out].offset;
    const float *in = op->n_in ? p->slots + prog->slots[ins[0]].offset : NULL;
    float *work = p->decode->work;
    const size_t n_out = (size_t)m * prog->slots[op->out].width;
    const cuda_step *st = step_of(p->decode);
    fold f = {0, NULL, 0.0f, NULL};
    if (st->fused && on_step(p->decode) && !st->batch) {
        if (st->folded[i]) return CB_OK; /* runs inside its neighbour */
        f.on = 1;
        if (st->norm_of[i] >= 0) {
            const cb_op *norm = &prog->ops[st->norm_of[i]];
            f.norm = W(p, norm, CB_P_WEIGHT);
            f.eps = norm->eps;
            in = p->slots + prog->slots[prog->inputs[norm->in_first]].offset;
        }
        if (st->add_of[i] >= 0) {
            out = p->slots + prog->slots[prog->ops[st->add_of[i]].out].offset;
            f.resid = p->slots + prog->slots[st->resid_of[i]].offset;
        }
    }
    switch (op->kind) {
    case CB_OP_EMBED:
        if (p->row_pos) /* a batched pass: each row at its own sequence's position */
            for (int r = 0; r < m; r++) {
                float *row = out + (size_t)r * op->d_out;
                if (on_step(p->decode))
                    cbk_embedding_forward_at(row, p->tokens + r, W(p, op, CB_P_WEIGHT), W(p, op, CB_P_POS), 1,
                                             op->d_out, step_of(p->decode)->dpos_rows + r);
                else
                    cbk_embedding_forward(row, p->tokens + r, W(p, op, CB_P_WEIGHT), W(p, op, CB_P_POS), 1, 1,
                                          op->d_out, p->row_pos[r]);
            }
        else if (on_step(p->decode))
            cbk_embedding_forward_at(out, p->tokens, W(p, op, CB_P_WEIGHT), W(p, op, CB_P_POS), m, op->d_out,
                                     step_of(p->decode)->dpos);
        else
            cbk_embedding_forward(out, p->tokens, W(p, op, CB_P_WEIGHT), W(p, op, CB_P_POS), 1, m, op->d_out,
                                  p->pos0);
        break;
    case CB_OP_RMSNORM: cbk_rmsnorm_forward(out, work, in, W(p, op, CB_P_WEIGHT), m, op->d_in, op->eps); break;
    case CB_OP_LAYERNORM:
        cbk_layernorm_forward(out, work, work + m, in, W(p, op, CB_P_WEIGHT), W(p, op, CB_P_BIAS), m, op->d_in,
                              op->eps);
        break;
    case CB_OP_ATTENTION: decode_attention(p, i, out, in, &f); break;
    case CB_OP_SWIGLU: decode_swiglu(p, i, out, in, &f); break;
    case CB_OP_MLP: decode_mlp(p, i, out, in); break;
    case CB_OP_LINEAR:
    case CB_OP_HEAD: decode_linear(p, i, out, in, &f); break;
    case CB_OP_DROPOUT: cbk_copy(out, in, n_out); break; /* decoding never trains */
    case CB_OP_ROPE: {
        const float *cos_t, *sin_t;
        rope_rows(p, op, &cos_t, &sin_t);
        cbk_rope(out, in, cos_t, sin_t, 1, m, op->heads, op->head_dim, 0, 1.0f, 0);
        break;
    }
    case CB_OP_ADD: cbk_add(out, in, p->slots + prog->slots[ins[1]].offset, n_out); break;
    case CB_OP_COMBINE:
        cbk_copy(out, in, n_out);
        for (int k = 1; k < op->n_in; k++) cbk_axpy(out, p->slots + prog->slots[ins[k]].offset, 1.0f, n_out);
        if (op->mean && op->n_in > 1) cbk_scale(out, n_out, 1.0f / (float)op->n_in);
        break;
    case CB_OP_CONCAT: {
        const int Wd = prog->slots[op->out].width;
        for (int k = 0, col = 0; k < op->n_in; k++) {
            const int wk = prog->slots[ins[k]].width;
            cbk_concat_part(out, p->slots + prog->slots[ins[k]].offset, m, Wd, col, wk);
            col += wk;
        }
        break;
    }
    }
    if (cb_cuda_check_launch(c, "decode")) return cb_fail(e, CB_E_RUNTIME, c->err.where, "%s", c->err.msg);
    return CB_OK;
}

/* The step's RoPE rows (row 0 of each table of the pass's rope arena) from the device's
 * tables at the position on the device: the first launches of a step. */
static void step_rope_rows(cb_pass *p) {
    const cuda_step *st = step_of(p->decode);
    const cb_program *prog = p->prog;
    for (int i = 0; i < prog->n_ropes; i++) {
        const int half = prog->ropes[i].dim / 2;
        float *cos_out = p->rope + prog->ropes[i].offset, *sin_out = cos_out + (size_t)prog->T * half;
        const float *cos_tab = st->rope + st->rope_off[i], *sin_tab = cos_tab + (size_t)st->rope_cap * half;
        cbk_rope_rows_at(cos_out, sin_out, cos_tab, sin_tab, st->dpos, half);
    }
}

/* Where and how the kernels of a step launch (st NULL: as any other pass's) */
static void step_launches(const cuda_step *st) {
    cbk_set_stream(st ? st->stream : NULL);
    cbk_set_pdl(st ? st->pdl : 0);
    cbk_set_step_tuning(st ? st->ahead : 4, st ? st->stage : 0);
    cbk_set_attn_step_kernel(st ? st->attn : 0);
    step_products_now = st ? st->products && !st->fused : 0;
}

/* A capture left open by a failing op is closed and dropped (its stream usable again). */
static void step_abandon(cuda_step *st) {
    if (st->mode == STEP_CAPTURE) {
        cudaGraph_t g = NULL;
        if (cudaStreamEndCapture(st->stream, &g) == cudaSuccess && g) cudaGraphDestroy(g);
        cudaGetLastError();
    }
    st->mode = STEP_HOST;
    st->batch = 0;
    step_launches(NULL);
}

/* A step's graph *exec replayed when key (n bytes) is the key it was captured under
 * (held); else dropped, and the step set up to launch on its stream, captured under key
 * when capture is 1 and graphs are on. */
static int replay_or_capture(cuda_step *st, cudaGraphExec_t *exec, void *held, const void *key, size_t n, int capture,
                             cb_error *e) {
    if (st->graphs && *exec && memcmp(key, held, n) == 0) {
        if (cudaGraphLaunch(*exec, st->stream) != cudaSuccess)
            return cb_fail(e, CB_E_RUNTIME, "cuda", "decode: launching a step's graph failed");
        st->mode = STEP_REPLAY;
        st->replays++;
        return CB_OK;
    }
    if (*exec) cudaGraphExecDestroy(*exec);
    *exec = NULL;
    step_launches(st);
    st->mode = STEP_PLAIN;
    if (!st->graphs || !capture) return CB_OK;
    if (cudaStreamBeginCapture(st->stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        memcpy(held, key, n);
        st->mode = STEP_CAPTURE;
    } else { /* no capture on this device: steps uncaptured from now on */
        cudaGetLastError();
        st->graphs = 0;
    }
    return CB_OK;
}

/* Op 0 of a batched step (p->row_seqs: one token of each of k sequences): its positions
 * uploaded, then the graph captured under the same key replayed, or one captured (or with
 * graphs off, the launches on the step's stream uncaptured). Not captured from GEMM_ROWS
 * rows (cuBLAS over scratch that may grow); more than BATCH_ROWS_MAX rows run as a pass of
 * several rows, the positions arguments. */
static int batch_begin(cb_pass *p, cb_error *e) {
    cb_decode *d = p->decode;
    cuda_step *st = step_of(d);
    const int k = p->T;
    if (k > BATCH_ROWS_MAX) return CB_OK;
    if (cudaMemcpyAsync(st->dpos_rows, p->row_pos, (size_t)k * sizeof *p->row_pos, cudaMemcpyHostToDevice,
                        st->stream) != cudaSuccess)
        return cb_fail(e, CB_E_RUNTIME, "cuda", "decode: uploading a batched step's positions failed");
    batch_key key;
    memset(&key, 0, sizeof key);
    key.k = k;
    key.head_rows = p->head_rows;
    key.pdl = st->pdl;
    key.attn = st->attn;
    key.slots = p->slots, key.tokens = p->tokens, key.weights = p->weights, key.rope = p->rope;
    for (int r = 0; r < k; r++) {
        const cb_decode *sd = p->row_seqs[r];
        key.rows[r] = sd;
        key.gens[r] = step_of(sd)->gen;
        key.windows[r] = cb_decode_plan_pick(sd->cfg.plan, p->row_pos[r] + 1, NULL).local_window;
    }
    st->batch = 1;
    return replay_or_capture(st, &st->batch_exec, &st->bkey, &key, sizeof key, k < GEMM_ROWS, e);
}

/* Op 0 of a pass: a pass of several rows runs as ever; a step uploads its position, then
 * replays the graph captured under the same key, or captures one (or, with graphs off,
 * launches on its stream uncaptured). */
static int step_begin(cb_pass *p, cb_error *e) {
    cb_decode *d = p->decode;
    cuda_step *st = step_of(d);
    st->mode = STEP_HOST;
    st->batch = 0;
    step_launches(NULL);
    if (p->row_seqs) return batch_begin(p, e);
    if (p->T != 1) return CB_OK;
    if (cudaMemcpyAsync(st->dpos, &p->pos0, sizeof p->pos0, cudaMemcpyHostToDevice, st->stream) != cudaSuccess)
        return cb_fail(e, CB_E_RUNTIME, "cuda", "decode: uploading the step's position failed");
    step_key k;
    memset(&k, 0, sizeof k);
    k.gen = st->gen;
    k.slots = p->slots, k.tokens = p->tokens, k.weights = p->weights, k.rope = p->rope;
    k.head_rows = p->head_rows;
    k.window = cb_decode_plan_pick(d->cfg.plan, p->pos0 + 1, NULL).local_window;
    k.fused = st->fused;
    k.pdl = st->pdl;
    k.products = st->products && !st->fused;
    k.ahead = st->ahead;
    k.stage = st->stage;
    k.attn = st->attn;
    k.combine = st->combine;
    CB_TRY(replay_or_capture(st, &st->exec, &st->key, &k, sizeof k, 1, e));
    if (st->mode != STEP_REPLAY) step_rope_rows(p);
    return CB_OK;
}

/* The last op: a captured step becomes the graph and runs; a graph that cannot be made
 * turns graphs off and the step runs once more uncaptured (its ops are the same). */
static int step_end(cuda_ctx *c, cb_pass *p, cb_error *e) {
    cuda_step *st = step_of(p->decode);
    const int mode = st->mode, batch = st->batch;
    cudaGraphExec_t *exec = batch ? &st->batch_exec : &st->exec;
    st->mode = STEP_HOST;
    st->batch = 0;
    step_launches(NULL);
    if (mode != STEP_CAPTURE) return CB_OK;
    cudaGraph_t g = NULL;
    cudaError_t err = cudaStreamEndCapture(st->stream, &g);
    if (err == cudaSuccess) err = cudaGraphInstantiate(exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (err == cudaSuccess) err = cudaGraphLaunch(*exec, st->stream);
    if (err == cudaSuccess) {
        st->captures++;
        return CB_OK;
    }
    cudaGetLastError();
    if (*exec) cudaGraphExecDestroy(*exec);
    *exec = NULL;
    st->graphs = 0;
    st->mode = STEP_PLAIN;
    st->batch = batch;
    step_launches(st);
    if (!batch) step_rope_rows(p); /* a batch's RoPE rows are the host's, uploaded */
    int rc = CB_OK;
    for (int i = 0; i < p->prog->n_ops && rc == CB_OK; i++) rc = run_op(c, p, i, e);
    st->mode = STEP_HOST;
    st->batch = 0;
    step_launches(NULL);
    return rc;
}

int cb_cuda_decode_op_forward(cuda_ctx *c, cb_pass *p, int i, cb_error *e) {
    cuda_step *st = step_of(p->decode);
    if (c->failed) {
        step_abandon(st);
        *e = c->err;
        return e->code;
    }
    ctx_now = c;
    int rc = i == 0 ? step_begin(p, e) : CB_OK;
    if (rc == CB_OK && st->mode == STEP_REPLAY) {
        if (p->prog->ops[i].kind == CB_OP_ATTENTION && p->row_seqs)
            for (int r = 0; r < p->T; r++) cache_lengths(p->row_seqs[r], i, p->row_pos[r] + 1);
        else if (p->prog->ops[i].kind == CB_OP_ATTENTION)
            attention_lengths(p, i);
    } else if (rc == CB_OK) {
        rc = run_op(c, p, i, e);
    }
    if (rc == CB_OK && i == p->prog->n_ops - 1) rc = step_end(c, p, e);
    if (rc != CB_OK) step_abandon(st);
    return rc;
}

void cb_cuda_decode_set_graphs(cb_decode *d, int on) {
    cuda_step *st = step_of(d);
    if (st) st->graphs = on;
}

void cb_cuda_decode_set_fused(cb_decode *d, int on) {
    cuda_step *st = step_of(d);
    if (st) st->fused = on;
}

void cb_cuda_decode_set_pdl(cb_decode *d, int on) {
    cuda_step *st = step_of(d);
    if (st) st->pdl = on;
}

void cb_cuda_decode_set_attn(cb_decode *d, int step_kernel, int combine_in_split) {
    cuda_step *st = step_of(d);
    if (!st) return;
    st->attn = step_kernel != 0;
    st->combine = combine_in_split != 0;
}

void cb_cuda_decode_set_products(cb_decode *d, int step_kernel, int ahead, int stage) {
    cuda_step *st = step_of(d);
    if (!st) return;
    st->products = step_kernel != 0;
    st->ahead = ahead == 8 ? 8 : 4;
    st->stage = stage != 0;
}

int cb_cuda_decode_argmax(cb_backend *be, cb_decode *d, const float *x, int n, int *id, int *nonfinite,
                          cb_error *e) {
    const cuda_step *st = step_of(d);
    cbk_argmax(st->argmax, x, n);
    int32_t h[2];
    CB_TRY(be->download(be, h, st->argmax, sizeof h, e));
    *id = h[0];
    *nonfinite = h[1];
    return CB_OK;
}
