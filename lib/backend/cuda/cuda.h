/* cuda.h: the CUDA backend (backend/backend.h's interface on an NVIDIA GPU), built when
 * the Makefile finds nvcc (CB_HAVE_CUDA). Training passes, the loss, clipping and every
 * optimizer run on the GPU in float32 (the products in bf16 under amp), the layers as
 * kernels/ (one .cu a layer) and products through cuBLAS; decoding (decode.c) keeps the
 * weights in their storage kind and the KV caches on the GPU, a one-row step captured as a
 * CUDA graph, greedy sampling on the GPU (decode_argmax). */
#ifndef CB_BACKEND_CUDA_CUDA_H
#define CB_BACKEND_CUDA_CUDA_H

#include "backend/backend.h"

/* The backend of GPU 0, or NULL when this machine has no usable CUDA device (no
 * driver, no GPU): the CUDA runtime is asked once. */
cb_backend *cb_backend_cuda(void);
/* Products on the tensor cores in TF32 (10-bit mantissa inputs, float32 sums) when on,
 * else float32 throughout (the default, what the tests hold to the CPU). For measuring
 * (bench/cuda_step -x): no manifest field selects it yet. */
void cb_backend_cuda_set_tf32(int on);
/* Mixed precision (train.amp) when on: products and attention in bf16 on the tensor
 * cores with float32 sums and float32 master weights; else float32 throughout. */
void cb_backend_cuda_set_amp(int on);
/* Fused paths under amp, each on unless turned off (bits of cb_backend_cuda_set_fuse; the
 * environment's CB_CUDA_FUSE when the backend is first asked for: 0 none, 1 all, or
 * names separated by commas, e.g. swiglu): the same results within amp's tolerances,
 * less memory traffic. SWIGLU (amp only): the feed-forward's gate, up and h in bf16
 * (swiglu16.c). ADDNORM (float32 and amp, the same bits as unfused): a residual add and
 * the RMSNorm that reads its sum in one kernel, forward (within a block) and backward.
 * HEAD (float32 and amp): a training run's head fused with the loss (backend.h head_loss),
 * a chunk of logits at a time; not on by default until it is measured on a GPU (unset
 * CB_CUDA_FUSE means swiglu,addnorm; 1 or all turns it on too). */
enum { CB_CUDA_FUSE_SWIGLU = 1, CB_CUDA_FUSE_ADDNORM = 2, CB_CUDA_FUSE_HEAD = 4, CB_CUDA_FUSE_ALL = 7 };
#define CB_CUDA_FUSE_DEFAULT (CB_CUDA_FUSE_SWIGLU | CB_CUDA_FUSE_ADDNORM)
void cb_backend_cuda_set_fuse(int bits);
int cb_backend_cuda_fuse(void);
struct cb_decode;
/* A decoding state's one-row steps captured as CUDA graphs and replayed (on, the default
 * unless CB_CUDA_GRAPHS=0 is in the environment when the state is made), or launched op
 * by op (off): the same kernels either way. For the tests and bench/cuda_decode. */
void cb_cuda_decode_set_graphs(struct cb_decode *d, int on);
/* A decoding state's one-row steps fused (on: CB_DECODE_FUSED=1 in the environment when
 * the state is made; RMSNorms, residual adds, RoPE, cache writes and SwiGLU folded into
 * the products' kernels, decode_fused.cu) or op by op (off, the default; bench/RESULTS.md
 * has what each measured). For the tests and bench/cuda_decode. */
void cb_cuda_decode_set_fused(struct cb_decode *d, int on);
/* A step's kernels (fused or not) under programmatic dependent launch (on: CB_CUDA_PDL=1
 * in the environment when the state is made; off, the default): each may start while the
 * one before it ends, a product's first weight loads overlapping that kernel's tail. */
void cb_cuda_decode_set_pdl(struct cb_decode *d, int on);
/* An unfused step's one-row products through the fused step's product kernel
 * (step_kernel 1: CB_DECODE_PRODUCTS=step; 0, the default: matvec.cu's), and how that
 * kernel launches in any step: ahead, the 16-byte pieces a lane has in flight, 4 (the
 * default) or 8 (CB_DECODE_AHEAD=8); stage 1 (CB_DECODE_STAGE=1): its input staged in
 * shared memory even with no norm folded in. The logits are the same bit for bit either
 * way. For the tests and bench/cuda_decode. */
void cb_cuda_decode_set_products(struct cb_decode *d, int step_kernel, int ahead, int stage);
/* A step's attention through the split kernel built for its few rows (step_kernel 1:
 * CB_DECODE_ATTN=step; 0, the default: the one for up to 32 rows; kernels.h's
 * cbk_set_attn_step_kernel), and its splits combined by the last of them to finish
 * (combine_in_split 1: CB_DECODE_COMBINE=split; 0, the default: a second kernel). The
 * same logits bit for bit. */
void cb_cuda_decode_set_attn(struct cb_decode *d, int step_kernel, int combine_in_split);
/* Whether d's steps are graphed now; the graphs captured and the steps replayed so far. */
int cb_cuda_decode_graph_counts(const struct cb_decode *d, long *captures, long *replays);
/* Why cb_backend_cuda() returned NULL ("no CUDA device: ..."), or "" when it did not. */
const char *cb_backend_cuda_absent(void);

#endif
