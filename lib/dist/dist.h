/* dist.h: the ranks of a data-parallel run. Ranks are processes started by OpenMPI's
 * mpirun (one per GPU, or several on a CPU host; several hosts the same way); caramba
 * brings no transport of its own. On the CPU the gradients are summed with MPI's
 * all-reduce; on a GPU with NCCL, its communicator set up through MPI.
 *
 * Data parallel (strategy ddp): the manifest's batch_size is the global batch; rank r
 * trains on rows [r B/W, (r+1) B/W) of every global batch (B/W rows a rank; the batcher
 * draws the same global batch everywhere), so W ranks take the step one rank would take
 * on the whole batch: gradients summed over ranks and divided by W, the loss likewise,
 * dropout masks indexed by the row in the global batch. Every rank holds the whole model
 * and optimizer state and applies the same update; rank 0 alone writes checkpoints,
 * metrics and the final model, and prints progress. */
#ifndef CB_DIST_DIST_H
#define CB_DIST_DIST_H

#include <stddef.h>
#include "backend/backend.h"
#include "core/error.h"

typedef struct cb_dist {
    int rank, world; /* 0 and 1 outside mpirun */
    int mpi;         /* 1: this process initialised MPI (finalize ends it) */
    void *nccl;      /* the NCCL communicator once cb_dist_attach saw a CUDA device, else NULL */
} cb_dist;

/* Join the run mpirun started (its environment says so), or stand alone (rank 0 of 1).
 * Started by mpirun with several ranks in a build without MPI: CB_E_USAGE saying so. */
int cb_dist_init(cb_dist *d, cb_error *e);
void cb_dist_finalize(cb_dist *d);

/* The device the ranks' buffers live on: for a CUDA backend, an NCCL communicator (its
 * id sent from rank 0 through MPI), so the collectives below run on the GPUs, on the
 * backend's stream. Other devices need nothing. Launched by mpirun with a single rank,
 * the communicator is made too (the NCCL path runs on one GPU). */
int cb_dist_attach(cb_dist *d, cb_backend *be, cb_error *e);

/* x (n), memory of be, summed over every rank in place (every rank gets the sum). A
 * transport failure is CB_E_RUNTIME. With one rank: nothing. */
int cb_dist_sum_f32(const cb_dist *d, cb_backend *be, float *x, size_t n, cb_error *e);
/* The same for host doubles (losses, counts). */
int cb_dist_sum_f64(const cb_dist *d, double *x, size_t n, cb_error *e);
/* The largest of each rank's flag (a stop request any rank saw). */
int cb_dist_any(const cb_dist *d, int flag, int *any, cb_error *e);
/* Rank 0's bytes (memory of be) to every rank. */
int cb_dist_broadcast(const cb_dist *d, cb_backend *be, void *x, size_t bytes, cb_error *e);

/* Sums that overlap other work (ddp's gradient buckets, dist/buckets.h).
 * cb_dist_sum_start starts summing x (n floats, memory of be) over the ranks in place and
 * returns at once: MPI's non-blocking all-reduce on host memory; on a GPU, NCCL on a
 * stream of its own, ordered after everything the backend has queued so far.
 * cb_dist_sum_poll lets MPI move started sums on (it progresses only inside MPI calls);
 * cb_dist_sum_wait waits for every started sum (on a GPU the backend's stream waits, the
 * host does not). A device whose memory is neither host memory nor NCCL's cannot start
 * sums (cb_dist_can_start is 0): its caller sums with cb_dist_sum_f32. */
int cb_dist_can_start(const cb_dist *d, const cb_backend *be);
int cb_dist_sum_start(const cb_dist *d, cb_backend *be, float *x, size_t n, cb_error *e);
void cb_dist_sum_poll(const cb_dist *d);
int cb_dist_sum_wait(const cb_dist *d, cb_backend *be, cb_error *e);

/* A buffer cut into one contiguous part per rank: part r is [begin[r], begin[r] + count[r]). */
typedef struct cb_dist_parts {
    size_t *begin, *count; /* (world) */
} cb_dist_parts;

/* x (n, memory of be) summed over the ranks, each rank keeping only the sum of its own
 * part (at its place in x; the rest of x is left undefined): a reduce-scatter. */
int cb_dist_sum_parts(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, cb_error *e);
/* Every rank's part of x (memory of be) to every rank: an all-gather. */
int cb_dist_gather_parts(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, cb_error *e);

/* The same on the region [from, to) of x alone: each rank's share of it is its part's
 * overlap with the region (none for a part that misses it). A sum leaves each rank the
 * sum of its share, at its place (the rest of the region undefined); a gather hands every
 * rank every share. fsdp sums each block's gradients and gathers each block's weights
 * this way (train/fsdp.h). */
int cb_dist_sum_region(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, size_t from,
                       size_t to, cb_error *e);
int cb_dist_gather_region(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, size_t from,
                          size_t to, cb_error *e);

/* The seed's utilities, for the process as cb_dist_init left it. */
int cb_is_distributed(void);
int cb_rank(void);
int cb_world_size(void);
int cb_is_main_process(void);

#endif
