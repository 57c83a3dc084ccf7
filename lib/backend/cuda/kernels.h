/* kernels.h: the CUDA kernels of kernels/ (one .cu a layer) as C functions that launch them on the
 * backend's stream (the legacy default stream: every launch, copy and cuBLAS call of the
 * backend is ordered by it; a decode step's launches go to decode.c's stream, which is
 * ordered with it, see cbk_set_stream). Each group mirrors the lib/ file named before it and is
 * written to give that file's results: the same formulas in the same float operations
 * (nvcc is told -fmad=false, as the CPU's C11 build contracts nothing), sums in another
 * order. Every pointer is device memory; sizes are elements. "work" arguments are device
 * scratch of the size the matching *_work function names. */
#ifndef CB_BACKEND_CUDA_KERNELS_H
#define CB_BACKEND_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the stream every launch below goes to: NULL (the default) is the legacy default
 * stream, the backend's; decode.c points it at its own stream around a decode step, which
 * it captures as a CUDA graph (decode_step.cu defines it) ---- */
void cbk_set_stream(void *stream);
/* 1: decode_fused.cu's kernels launch under programmatic dependent launch (sm_90): each
 * may start while the kernel before it ends, waiting inside for its results; 0: not */
void cbk_set_pdl(int on);

/* ---- reduce.cu: column sums (bias and norm weight gradients), deterministic ---- */
/* floats of work cbk_colsum_* needs for (N, C) */
size_t cbk_colsum_work(int N, int C);
/* dst (C) += sum over rows of src (N, C) */
void cbk_colsum(float *dst, float *work, const float *src, int N, int C);

/* ---- convert.cu: bf16 copies for the mixed-precision products (backend/cuda/blas.c) ---- */
/* dst (n bf16, as their bits) = src rounded to nearest even */
void cbk_to_bf16(uint16_t *dst, const float *src, size_t n);

/* ---- embedding.cu (layers/embedding.c) ---- */
void cbk_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe, int B, int T,
                           int C, int pos0);
/* the same for one sequence of T rows whose first position is *dpos (device memory: a
 * graphed decode step reads it there) */
void cbk_embedding_forward_at(float *out, const int32_t *tokens, const float *wte, const float *wpe, int T, int C,
                              const int *dpos);
/* dwte rows shared between positions are added with atomics (order not fixed) */
void cbk_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens, int B, int T,
                            int C);

/* ---- rmsnorm.cu (layers/rmsnorm.c) ---- */
void cbk_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int N, int C, float eps);
void cbk_rmsnorm_backward(float *din, float *dweight, float *work, const float *dout, const float *in,
                          const float *weight, const float *rstd, int N, int C);
/* a residual add and the RMSNorm of its sum (CB_CUDA_FUSE_ADDNORM), the bits of cbk_add
 * then cbk_rmsnorm_forward: sum = a + b, out = rmsnorm(sum) */
void cbk_add_rmsnorm_forward(float *sum, float *out, float *rstd, const float *a, const float *b, const float *weight,
                             int N, int C, float eps);
/* the bits of cbk_rmsnorm_backward into dsum then the add's backward: with g = dsum +
 * the norm's din, da += g and db += g (dsum itself not written) */
void cbk_rmsnorm_backward_add(float *da, float *db, float *dweight, float *work, const float *dsum,
                              const float *dout, const float *in, const float *weight, const float *rstd, int N,
                              int C);

/* ---- layernorm.cu (layers/layernorm.c) ---- */
void cbk_layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *weight,
                           const float *bias, int N, int C, float eps);
void cbk_layernorm_backward(float *din, float *dweight, float *dbias, float *work, const float *dout,
                            const float *in, const float *weight, const float *mean, const float *rstd, int N,
                            int C);

/* ---- linear.cu (layers/linear.c): the bias rows a product starts from ---- */
/* out (N, C) = bias broadcast over rows */
void cbk_bias_rows(float *out, const float *bias, int N, int C);

/* ---- swiglu.cu (layers/swiglu.c) ---- */
/* h = silu(gate) up */
void cbk_swiglu_forward(float *h, const float *gate, const float *up, size_t n);
/* dgate holds dh on entry: dup = dh silu(gate), dgate = dh up silu'(gate) */
void cbk_swiglu_backward(float *dgate, float *dup, const float *gate, const float *up, size_t n);
/* amp, bf16 throughout (bits as uint16_t), float32 arithmetic: gu (N, 2F) holds a row's
 * gate then its up; h (N, F) = silu(gate) up; backward: dgu (N, 2F) = [dh up silu'(gate),
 * dh silu(gate)], each rounded to bf16 once */
void cbk_swiglu16_forward(uint16_t *h, const uint16_t *gu, int N, int F);
void cbk_swiglu16_backward(uint16_t *dgu, const uint16_t *dh, const uint16_t *gu, int N, int F);

/* ---- mlp.cu (layers/mlp.c) ---- */
/* h = gelu_tanh(pre) */
void cbk_gelu_forward(float *h, const float *pre, size_t n);
/* dh *= gelu_tanh'(pre) */
void cbk_gelu_backward_inplace(float *dh, const float *pre, size_t n);

/* ---- dropout.cu (layers/dropout.c): the same counter-based mask ---- */
void cbk_dropout_forward(float *out, const float *in, size_t n, float p, uint64_t seed, uint64_t offset);
void cbk_dropout_backward(float *din, const float *dout, size_t n, float p, uint64_t seed, uint64_t offset);

/* ---- rope.cu (layers/rope.c) ---- */
/* (B,T,H,D): sign +1 rotates, -1 rotates back; accumulate: out += instead of out = */
void cbk_rope(float *out, const float *in, const float *cos_t, const float *sin_t, int B, int T, int H, int D,
              int pos0, float sign, int accumulate);

/* ---- elementwise.cu (layers/elementwise.c) ---- */
void cbk_add(float *out, const float *a, const float *b, size_t n);
/* dst += s src */
void cbk_axpy(float *dst, const float *src, float s, size_t n);
void cbk_copy(float *dst, const float *src, size_t n);
void cbk_scale(float *x, size_t n, float s);
/* out (N, W) columns [col0, col0+w) = part (N, w); backward: dpart += those columns */
void cbk_concat_part(float *out, const float *part, int N, int W, int col0, int w);
void cbk_concat_part_backward(float *dpart, const float *dout, int N, int W, int col0, int w);

/* ---- crossentropy.cu (layers/crossentropy.c) ---- */
/* losses, lse (N); result[0] = the mean loss over valid rows (float), count[0] = their
 * number; work: cbk_crossentropy_work(N) floats */
size_t cbk_crossentropy_work(int N);
void cbk_crossentropy_forward(float *losses, float *lse, float *result, int *count, float *work,
                              const float *logits, const int32_t *targets, int N, int V);
/* dlogits += (softmax - onehot) / count[0] */
void cbk_crossentropy_backward(float *dlogits, const float *logits, const float *lse, const int32_t *targets,
                               const int *count, int N, int V);
/* the forward's two halves: losses and lse of N rows; the mean and count over N rows */
void cbk_crossentropy_rows(float *losses, float *lse, const float *logits, const int32_t *targets, int N, int V);
void cbk_crossentropy_mean(float *result, int *count, const float *losses, const int32_t *targets, int N);
/* the fused head's (backend.h head_loss): count[0] = the rows with a target; a chunk of N
 * rows of logits turned in place into (softmax - onehot) / count[0], rows without a target 0 */
void cbk_crossentropy_count(int *count, const int32_t *targets, int N);
void cbk_crossentropy_grad_inplace(float *logits, const float *lse, const int32_t *targets, const int *count, int N,
                                   int V);

/* ---- attention.cu (layers/attention.c): the parts around the batched products ---- */
typedef struct cbk_attn_dims {
    int B, T, H, Hkv, group; /* group = H / Hkv */
    int ds, dr, dv, dqk;     /* semantic, rotary, value per head; dqk = ds + dr */
    int causal;
    int rb; /* causal: queries per row block; a row of S is used up to its block's end */
} cbk_attn_dims;
/* gate (N, H): on entry the dynamic logits (dynamic) or anything; a (H) or NULL */
void cbk_attn_gate(float *gate, const float *a, int dynamic, size_t N, int H);
/* qcat, kcat (B,H,T,dqk): query scaled as layers/attention.c's query_scales, key of the
 * query head's kv head; vh (B,H,T,dv). q_sem, k_sem NULL when ds = 0; gate NULL ungated. */
void cbk_attn_gather(float *qcat, float *kcat, float *vh, const float *q_sem, const float *q, const float *k_sem,
                     const float *k, const float *v, const float *gate, const cbk_attn_dims *m);
/* S (B*H, T, T) in place into P; lse (B,H,T). Causal rows are read and written only up
 * to the end of their row block (rb), which is all the products of a block read. */
void cbk_attn_softmax(float *S, float *lse, const cbk_attn_dims *m);
/* S (B*H, T, T) in place into P = exp(S - lse), zero where masked */
void cbk_attn_probs(float *S, const float *lse, const cbk_attn_dims *m);
/* dP in place into dS = P (dP - rowsum(P dP)) */
void cbk_attn_softmax_backward(float *dP, const float *P, const cbk_attn_dims *m);
/* (B,H,T,w) <-> (B,T,H*w) */
void cbk_attn_heads_to_rows(float *rows, const float *heads, const cbk_attn_dims *m, int w);
void cbk_attn_rows_to_heads(float *heads, const float *rows, const cbk_attn_dims *m, int w);
/* dqcat (B,H,T,dqk) into dq_sem (N,H*ds), dq (N,H*dr) and, gated, dz (N,H) */
void cbk_attn_query_backward(float *dq_sem, float *dq, float *dz, const float *dqcat, const float *q_sem,
                             const float *q, const float *gate, const cbk_attn_dims *m);
/* the query heads of each kv group summed: dkh (B,H,T,dqk) into dk_sem (N,Hkv*ds) and
 * dk (N,Hkv*dr); dvh (B,H,T,dv) into dv (N,Hkv*dv) */
void cbk_attn_group_sum(float *dk_sem, float *dk, float *dv, const float *dkh, const float *dvh,
                        const cbk_attn_dims *m);

/* ---- optimizer.cu (train/optimizer.c): n floats of tensors that share a decay factor ---- */
/* w16 non-NULL: also w16[i] = the new w[i] in bf16 (train.amp's shadow of the weights) */
void cbk_adamw(float *w, uint16_t *w16, const float *g, float *m, float *v, size_t n, float decay_factor, float b1,
               float b2, float omb1, float omb2, float step_size, float bc2_sqrt, float eps);
void cbk_lion(float *w, uint16_t *w16, const float *g, float *m, size_t n, float decay_factor, float b1, float b2,
              float omb1, float omb2, float lr);
void cbk_sgd(float *w, uint16_t *w16, const float *g, float *buf, size_t n, float decay_factor, float momentum,
             float lr);

/* ---- clip.cu (train/clip.c) ---- */
/* result[0] (double) = sum of g^2 summed in double; work: cbk_sumsq_work() doubles */
size_t cbk_sumsq_work(void);
void cbk_sumsq(double *result, double *work, const float *g, size_t n);

/* train/distill.c's cb_distill_kl: result[0] (double) = the mean over rows of
 * KL(softmax(t / temp) || softmax(s / temp)); ds (rows, V) += scale * temp *
 * (softmax(s / temp) - softmax(t / temp)) / rows unless NULL; work: work_elems doubles
 * (partials: at most that many blocks) */
void cbk_distill_kl(double *result, double *work, size_t work_elems, float *ds, const float *s, const float *t,
                    int rows, int V, float temp, float scale);

/* The last launch error as text, or NULL: checked by the backend after its launches. */
const char *cbk_last_error(void);

/* ---- decoding (backend/cuda/decode.c): matvec.cu (backend/cpu/matvec.c), attention_decode.cu
 * (backend/cpu/attention_decode.c), the storage kinds of tensor/quant.h (kernels/quant.cuh) ---- */
/* y (m, rows) = x (m, cols) W^T + bias (bias NULL: none); W (rows, row_bytes) stored in kind
 * (enum cb_kv_kind) as backend/cpu/matvec.h's cb_weight_matrix; the input stays float */
void cbk_matvec(float *y, const void *W, size_t row_bytes, int kind, const float *x, const float *bias, int rows,
                int cols, int m);
/* dst (rows, cols) floats = the rows of W stored in kind (row_bytes each) */
void cbk_dequantize_rows(float *dst, const void *W, size_t row_bytes, int kind, int rows, int cols);
/* rows (rows, cols) floats of stride src_ld into kind, dst rows of stride dst_ld bytes, each
 * cb_kv_kind_bytes(kind, cols) bytes, the bytes tensor/quant.c's cb_kv_quantize_row writes */
void cbk_quantize_rows(void *dst, size_t dst_ld, const float *src, size_t src_ld, int kind, int rows, int cols);
/* the same into dst + *dpos * pos_ld (dpos device memory: a cache's row at the position a
 * graphed decode step reads there) */
void cbk_quantize_rows_at(void *dst, size_t dst_ld, const int *dpos, size_t pos_ld, const float *src,
                          size_t src_ld, int kind, int rows, int cols);
/* One cached tensor of infer/kv_cache.h on the device: data (len, n_heads, head_bytes). */
typedef struct cbk_kv_view {
    const void *data;
    int kind, head_dim;
    size_t row_bytes, head_bytes;
} cbk_kv_view;
/* floats of work cbk_attn_decode needs for m queries against at most kv_len keys */
size_t cbk_attn_decode_work(int m, int H, int Hkv, int ds, int dr, int dv, int kv_len);
/* out (m, H*dv): the m queries at pos0.. against the cache's pos0 + m keys, as
 * cb_attention_decode: q (m, H*dr) after RoPE, q_sem (m, H*ds) or NULL (ds 0), gate (m, H)
 * or NULL; k_sem ignored when ds is 0; window > 0: a query sees its last window keys */
void cbk_attn_decode(float *out, float *work, const float *q, const float *q_sem, const float *gate,
                     const cbk_kv_view *k, const cbk_kv_view *k_sem, const cbk_kv_view *v, int m, int H, int Hkv,
                     int ds, int dr, int dv, int pos0, int window);
/* the same with pos0 read from device memory (*dpos), for any pos0 + m <= kv_cap: the grid
 * and shared memory are kv_cap's (work: cbk_attn_decode_work(m, ..., kv_cap)), so a CUDA
 * graph captured once serves every length; the sums are cbk_attn_decode's, in its order.
 * done non-NULL (H ints, zero, device memory; left zero): at m = 1 the last split of each
 * kv head to finish combines the splits (the same sums, in the same order) instead of a
 * second kernel. */
void cbk_attn_decode_at(float *out, float *work, const float *q, const float *q_sem, const float *gate,
                        const cbk_kv_view *k, const cbk_kv_view *k_sem, const cbk_kv_view *v, int m, int H, int Hkv,
                        int ds, int dr, int dv, const int *dpos, int window, int kv_cap, int *done);
/* set the split kernel's shared-memory limit (before a capture: not a stream operation) */
void cbk_attn_decode_prepare(void);
/* Passes of few rows (at most 4 a block: a decode step's one query over a kv group of 4
 * heads or fewer) through the split kernel built for that many rows (on; off, the
 * default: the one for up to 32 rows), 3 blocks an SM instead of 2; the same sums in the
 * same order (process-wide, as cbk_set_pdl) */
void cbk_set_attn_step_kernel(int on);

/* ---- decode_fused.cu: a fused decode step's kernels (backend/cuda/decode.c) ---- */
/* the widest input a step product stages in shared memory (44 KB: 48 KB with no opt-in,
 * less the block's own); a norm folds into products of at most this many columns */
#define CBK_STEP_MAX_COLS 11264
/* One row through W (rows, cols) in kind, as cbk_matvec at m = 1, with the ops around the
 * product folded in: norm_w non-NULL: x first RMS-normalised (cbk_rmsnorm_forward's with
 * that weight and eps; cols <= CBK_STEP_MAX_COLS); gate_up: W holds 2 rows blocks, gate
 * then up, and y (rows) = silu(x Wg^T) * (x Wu^T) (cbk_swiglu_forward's; bias NULL);
 * resid non-NULL: y = resid + x W^T + bias (the residual add after the product; y may be
 * resid). The norm's scale multiplies each row's sum instead of each input: the result
 * is the separate kernels' up to float rounding. */
void cbk_matvec_step(float *y, const void *W, size_t row_bytes, int kind, const float *x, const float *bias,
                     int rows, int cols, const float *norm_w, float eps, int gate_up, const float *resid);
/* How cbk_matvec_step launches from now on (process-wide, as cbk_set_pdl; the results are
 * the same bit for bit): ahead, the 16-byte pieces a lane has in flight (4, the default, or
 * 8); stage 1: the input staged in shared memory even with no norm folded in (0, the
 * default: read where it is) */
void cbk_set_step_tuning(int ahead, int stage);
/* A cache tensor's new row: src (n_heads, head_dim) floats into data's row at the step's
 * position, heads head_bytes apart (n_heads 0: none) */
typedef struct cbk_kv_dst {
    void *data;
    const float *src;
    int kind, n_heads, head_dim;
    size_t row_bytes, head_bytes;
} cbk_kv_dst;
/* One launch: q (H, dr) and the k (Hkv, dr) right after it rotated in place by the step's
 * RoPE row (cos_row, sin_row (dr/2); NULL: no RoPE), as cbk_rope at one row; then k
 * (k->src, normally q + H*dr), k_sem and v written into their caches at row *dpos, the
 * bytes cbk_quantize_rows_at writes */
void cbk_rope_cache_step(float *q, int H, int Hkv, int dr, const float *cos_row, const float *sin_row,
                         const int *dpos, const cbk_kv_dst *k, const cbk_kv_dst *k_sem, const cbk_kv_dst *v);

/* ---- decode_step.cu: a graphed decode step's own kernels ---- */
/* cos_out, sin_out (half) = row *dpos of the tables cos_tab, sin_tab (positions, half) */
void cbk_rope_rows_at(float *cos_out, float *sin_out, const float *cos_tab, const float *sin_tab, const int *dpos,
                      int half);
/* out[0] = the first index of the largest finite value of x (n) (infer/sample.c's
 * cb_argmax where all are finite), -1 when none is; out[1] = 1 when some is not finite */
void cbk_argmax(int32_t *out, const float *x, int n);

/* ---- flash_attention.cu (layers/attention.c's attention core, for the amp path):
 * bf16 tiles on the tensor cores with float32 sums, no (T, T) score matrix. The score of
 * query head h and kv head h / (H / Hkv) is [q_sem c_sem, q c_rot] . [k_sem, k] with
 * c_sem = 1/sqrt(ds), c_rot = 1/sqrt(dr) (times 2g and 2 - 2g with a gate), as
 * cbk_attn_gather's qcat and kcat. ---- */
typedef struct cbk_flash_args {
    int B, T, H, Hkv, causal;
    int ds, dr, dv; /* per-head widths: semantic (0 but for DBA), rotary, value */
    /* q_sem (B,T,H*ds), q (B,T,H*dr), k_sem (B,T,Hkv*ds), k (B,T,Hkv*dr), v (B,T,Hkv*dv);
     * q_sem, k_sem NULL when ds = 0; gate (B,T,H) or NULL */
    const float *q_sem, *q, *k_sem, *k, *v, *gate;
} cbk_flash_args;
/* whether the kernels take these widths: ds + dr and dv each at most 256 */
int cbk_flash_supported(int dqk, int dv);
/* floats of work cbk_flash_forward needs (bf16 copies of q, k and v, head-major, T
 * rounded up to 128 and the widths to 64, 128 or 256; any alignment of work will do) */
size_t cbk_flash_forward_work(const cbk_flash_args *a);
/* out (B,T,H*dv) = softmax(scores) v; lse (B,H,T) the log-sum-exp of each row's scores */
void cbk_flash_forward(float *out, float *lse, float *work, const cbk_flash_args *a);
/* the forward's arrangement up to width 128: 0 (the default) 4 warps of two 16-row
 * m-tiles, 1 8 warps of one; only for bench/attention_cuda's comparison of the two */
void cbk_flash_forward_layout(int layout);
/* floats of work cbk_flash_backward needs: forward's, a bf16 copy of dout and 2 B H T */
size_t cbk_flash_backward_work(const cbk_flash_args *a);
/* From dout (B,T,H*dv) and forward's out and lse: dq_sem, dq (the query projections'
 * gradients, the scales applied), dk_sem, dk, dv (summed over each kv group's heads) and,
 * gated, dz (B,T,H) the gradient of the gate's logit; all written, not added */
void cbk_flash_backward(float *dq_sem, float *dq, float *dk_sem, float *dk, float *dv, float *dz, float *work,
                        const float *dout, const float *out, const float *lse, const cbk_flash_args *a);

#ifdef __cplusplus
}
#endif

#endif
