/* dist.c: ranks through MPI (dist.h). Without MPI in the build a process is rank 0 of 1,
 * and one that mpirun started among several is refused rather than left to train alone
 * on a slice of every batch. A device whose memory is not host memory goes through a host
 * copy here; NCCL, when built, sums on the device instead. */
#include "dist/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef CB_HAVE_MPI
#include <mpi.h>
#endif
#if defined(CB_HAVE_MPI) && defined(CB_HAVE_CUDA)
#include <cuda_runtime.h>
#include <nccl.h>
#define CB_HAVE_NCCL 1
#endif

static cb_dist the_process = {0, 1, 0, NULL};
static int owns_mpi; /* this process called MPI_Init: finalize ends MPI */

/* The process's started sums: MPI requests (host memory), or NCCL on its own stream. */
static struct {
    int none; /* keeps the struct whole in a build without MPI */
#ifdef CB_HAVE_MPI
    MPI_Request *reqs;
    int n, cap;
#endif
#ifdef CB_HAVE_NCCL
    cudaStream_t stream;     /* non-blocking: no implicit order with the legacy stream */
    cudaEvent_t queued, done; /* the backend's work so far; the stream's sums */
    int started;
#endif
} pending;

/* How many ranks the launcher says there are (OpenMPI's, or a PMI launcher's); 0 when no
 * launcher started this process. */
static int launcher_world(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

#ifdef CB_HAVE_MPI
static int mpi_failed(int rc, const char *what, cb_error *e) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    return cb_fail(e, CB_E_RUNTIME, "mpi", "%s failed: %.*s (a rank may have stopped)", what, len, msg);
}
#endif

int cb_dist_init(cb_dist *d, cb_error *e) {
    d->rank = 0;
    d->world = 1;
    d->mpi = 0;
    d->nccl = NULL;
    int world = launcher_world();
    if (world == 0) {
        the_process = *d;
        return CB_OK;
    }
#ifdef CB_HAVE_MPI
    int ready = 0;
    MPI_Initialized(&ready);
    if (!ready) {
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return cb_fail(e, CB_E_RUNTIME, "mpi", "MPI_Init failed");
        owns_mpi = 1;
    }
    d->mpi = 1;
    /* a failed transfer comes back as an error code, to be reported as one line */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    the_process = *d;
    return CB_OK;
#else
    if (world == 1) { /* a launcher's single rank trains alone */
        the_process = *d;
        return CB_OK;
    }
    return cb_fail(e, CB_E_USAGE, "mpirun", "started as one of %d ranks, but this build has no MPI "
                   "(install libopenmpi-dev and rebuild: make deps && make)", world);
#endif
}

void cb_dist_finalize(cb_dist *d) {
#ifdef CB_HAVE_NCCL
    if (pending.stream) {
        cudaStreamSynchronize(pending.stream);
        cudaEventDestroy(pending.queued);
        cudaEventDestroy(pending.done);
        cudaStreamDestroy(pending.stream);
        pending.stream = NULL;
    }
    if (d->nccl) ncclCommDestroy((ncclComm_t)d->nccl);
#endif
#ifdef CB_HAVE_MPI
    free(pending.reqs);
    pending.reqs = NULL;
    pending.n = pending.cap = 0;
#endif
    d->nccl = NULL;
#ifdef CB_HAVE_MPI
    if (owns_mpi) MPI_Finalize();
    owns_mpi = 0;
#endif
    d->mpi = 0;
}

#ifdef CB_HAVE_NCCL
static int nccl_failed(ncclResult_t r, const char *what, cb_error *e) {
    return cb_fail(e, CB_E_RUNTIME, "nccl", "%s failed: %s (a rank may have stopped)", what, ncclGetErrorString(r));
}
/* NCCL queues on the CUDA backend's stream (the legacy default stream, kernels.h); waiting
 * for it here turns a failure into this call's error */
static int nccl_wait(ncclResult_t r, const char *what, cb_error *e) {
    if (r != ncclSuccess) return nccl_failed(r, what, e);
    cudaError_t err = cudaStreamSynchronize(0);
    if (err != cudaSuccess) return cb_fail(e, CB_E_RUNTIME, "nccl", "%s: %s", what, cudaGetErrorString(err));
    return CB_OK;
}
#endif

int cb_dist_attach(cb_dist *d, cb_backend *be, cb_error *e) {
    if (!d->mpi || be->device != CB_DEVICE_CUDA || d->nccl) return CB_OK;
#ifdef CB_HAVE_NCCL
    ncclUniqueId id;
    if (d->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess) return nccl_failed(r, "ncclGetUniqueId", e);
    }
    int rc = MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "sending the NCCL id", e);
    ncclComm_t comm;
    ncclResult_t r = ncclCommInitRank(&comm, d->world, id, d->rank);
    if (r != ncclSuccess) return nccl_failed(r, "ncclCommInitRank", e);
    d->nccl = comm;
    the_process.nccl = comm;
    return CB_OK;
#else
    return cb_fail(e, CB_E_USAGE, "nccl", "ranks on CUDA devices need NCCL and MPI, and this build has %s",
#ifdef CB_HAVE_MPI
                   "no CUDA"
#else
                   "no MPI"
#endif
    );
#endif
}

#ifdef CB_HAVE_MPI

/* MPI counts are int: large buffers go in pieces */
static int sum_host(void *x, size_t n, MPI_Datatype type, size_t size, cb_error *e) {
    char *p = x;
    while (n > 0) {
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        int rc = MPI_Allreduce(MPI_IN_PLACE, p, k, type, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "the all-reduce", e);
        p += (size_t)k * size;
        n -= (size_t)k;
    }
    return CB_OK;
}
#endif

#ifdef CB_HAVE_NCCL
/* the communicator, when x is memory of the CUDA device it was made for */
static ncclComm_t on_gpu(const cb_dist *d, const cb_backend *be) {
    return d->nccl && be->device == CB_DEVICE_CUDA ? (ncclComm_t)d->nccl : NULL;
}
#endif

/* ---- sums started without waiting (dist.h) ---- */


int cb_dist_can_start(const cb_dist *d, const cb_backend *be) {
    if (!d->mpi) return 0;
#ifdef CB_HAVE_NCCL
    if (on_gpu(d, be)) return 1;
#endif
#ifdef CB_HAVE_MPI
    return be->unified;
#else
    (void)be;
    return 0;
#endif
}

#ifdef CB_HAVE_NCCL
static int cuda_failed(cudaError_t err, const char *what, cb_error *e) {
    return cb_fail(e, CB_E_RUNTIME, "nccl", "%s: %s", what, cudaGetErrorString(err));
}
#endif

int cb_dist_sum_start(const cb_dist *d, cb_backend *be, float *x, size_t n, cb_error *e) {
    if (!d->mpi || n == 0) return CB_OK;
#ifdef CB_HAVE_NCCL
    ncclComm_t comm = on_gpu(d, be);
    if (comm) {
        cudaError_t err = cudaSuccess;
        if (!pending.stream) {
            err = cudaStreamCreateWithFlags(&pending.stream, cudaStreamNonBlocking);
            if (err == cudaSuccess) err = cudaEventCreateWithFlags(&pending.queued, cudaEventDisableTiming);
            if (err == cudaSuccess) err = cudaEventCreateWithFlags(&pending.done, cudaEventDisableTiming);
            if (err != cudaSuccess) return cuda_failed(err, "the communication stream", e);
        }
        /* the stream waits for the gradients queued so far on the backend's stream (0) */
        err = cudaEventRecord(pending.queued, 0);
        if (err == cudaSuccess) err = cudaStreamWaitEvent(pending.stream, pending.queued, 0);
        if (err != cudaSuccess) return cuda_failed(err, "ordering a sum after the backward pass", e);
        ncclResult_t r = ncclAllReduce(x, x, n, ncclFloat, ncclSum, comm, pending.stream);
        if (r != ncclSuccess) return nccl_failed(r, "ncclAllReduce", e);
        pending.started = 1;
        return CB_OK;
    }
#endif
#ifdef CB_HAVE_MPI
    if (!be->unified) return cb_fail(e, CB_E_USAGE, "mpi", "device %s: sums cannot start early here", be->name);
    for (char *p = (char *)x; n > 0;) { /* MPI counts are int: large buffers go in pieces */
        int k = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (pending.n == pending.cap) {
            int cap = pending.cap ? 2 * pending.cap : 64;
            MPI_Request *r = realloc(pending.reqs, (size_t)cap * sizeof *r);
            if (!r) return cb_fail(e, CB_E_RUNTIME, "", "out of memory for %d pending sums", cap);
            pending.reqs = r;
            pending.cap = cap;
        }
        int rc = MPI_Iallreduce(MPI_IN_PLACE, p, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &pending.reqs[pending.n]);
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "starting an all-reduce", e);
        pending.n++;
        p += (size_t)k * sizeof(float);
        n -= (size_t)k;
    }
    return CB_OK;
#else
    (void)be, (void)x;
    return cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
}

void cb_dist_sum_poll(const cb_dist *d) {
#ifdef CB_HAVE_MPI
    int done;
    if (d->mpi && pending.n > 0) MPI_Testall(pending.n, pending.reqs, &done, MPI_STATUSES_IGNORE);
#else
    (void)d;
#endif
}

int cb_dist_sum_wait(const cb_dist *d, cb_backend *be, cb_error *e) {
    if (!d->mpi) return CB_OK;
    (void)be;
#ifdef CB_HAVE_NCCL
    if (pending.started) { /* the backend's stream waits for the sums; the host goes on */
        pending.started = 0;
        cudaError_t err = cudaEventRecord(pending.done, pending.stream);
        if (err == cudaSuccess) err = cudaStreamWaitEvent(0, pending.done, 0);
        if (err != cudaSuccess) return cuda_failed(err, "waiting for the sums", e);
    }
#endif
#ifdef CB_HAVE_MPI
    if (pending.n > 0) {
        int rc = MPI_Waitall(pending.n, pending.reqs, MPI_STATUSES_IGNORE);
        pending.n = 0;
        if (rc != MPI_SUCCESS) return mpi_failed(rc, "an all-reduce", e);
    }
#endif
    return CB_OK;
}

int cb_dist_sum_f32(const cb_dist *d, cb_backend *be, float *x, size_t n, cb_error *e) {
    if (!d->mpi) return CB_OK;
#ifdef CB_HAVE_NCCL
    ncclComm_t comm = on_gpu(d, be);
    if (comm) return nccl_wait(ncclAllReduce(x, x, n, ncclFloat, ncclSum, comm, 0), "ncclAllReduce", e);
#endif
#ifdef CB_HAVE_MPI
    if (be->unified) return sum_host(x, n, MPI_FLOAT, sizeof(float), e);
    float *host = malloc(n * sizeof *host);
    if (!host) return cb_fail(e, CB_E_RUNTIME, "", "out of memory for %zu gradients", n);
    int rc = be->download(be, host, x, n * sizeof *host, e);
    if (rc == CB_OK) rc = sum_host(host, n, MPI_FLOAT, sizeof(float), e);
    if (rc == CB_OK) rc = be->upload(be, x, host, n * sizeof *host, e);
    free(host);
    return rc;
#else
    (void)be, (void)x, (void)n;
    return cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
}

int cb_dist_sum_f64(const cb_dist *d, double *x, size_t n, cb_error *e) {
    if (!d->mpi) return CB_OK;
#ifdef CB_HAVE_MPI
    return sum_host(x, n, MPI_DOUBLE, sizeof(double), e);
#else
    (void)x, (void)n;
    return cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
}

int cb_dist_any(const cb_dist *d, int flag, int *any, cb_error *e) {
    *any = flag;
    if (!d->mpi) return CB_OK;
#ifdef CB_HAVE_MPI
    int rc = MPI_Allreduce(&flag, any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? CB_OK : mpi_failed(rc, "the stop vote", e);
#else
    return cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
}

int cb_dist_broadcast(const cb_dist *d, cb_backend *be, void *x, size_t bytes, cb_error *e) {
    if (!d->mpi) return CB_OK;
#ifdef CB_HAVE_NCCL
    ncclComm_t comm = on_gpu(d, be);
    if (comm) return nccl_wait(ncclBroadcast(x, x, bytes, ncclChar, 0, comm, 0), "ncclBroadcast", e);
#endif
#ifdef CB_HAVE_MPI
    void *host = x;
    if (!be->unified && !(host = malloc(bytes))) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    int rc = be->unified || d->rank != 0 ? CB_OK : be->download(be, host, x, bytes, e);
    for (size_t done = 0; rc == CB_OK && done < bytes;) {
        int k = bytes - done > (size_t)INT_MAX ? INT_MAX : (int)(bytes - done);
        int mrc = MPI_Bcast((char *)host + done, k, MPI_BYTE, 0, MPI_COMM_WORLD);
        if (mrc != MPI_SUCCESS) rc = mpi_failed(mrc, "the broadcast", e);
        done += (size_t)k;
    }
    if (rc == CB_OK && !be->unified && d->rank != 0) rc = be->upload(be, x, host, bytes, e);
    if (host != x) free(host);
    return rc;
#else
    (void)be, (void)x, (void)bytes;
    return cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
}

/* Part r's share of the region [from, to): [lo[r], lo[r] + n[r]) (n[r] 0 where they miss).
 * Parts lie in rank order, so the shares lie in rank order too, one after the other. */
static void shares(const cb_dist *d, const cb_dist_parts *parts, size_t from, size_t to, size_t *lo, size_t *n) {
    for (int r = 0; r < d->world; r++) {
        size_t a = parts->begin[r] > from ? parts->begin[r] : from;
        size_t b = parts->begin[r] + parts->count[r] < to ? parts->begin[r] + parts->count[r] : to;
        lo[r] = a < b ? a : from;
        n[r] = a < b ? b - a : 0;
    }
}

#ifdef CB_HAVE_MPI
/* MPI's int counts and displacements (in floats, from the region's start); NULL with e
 * set when one is beyond an int */
static int *int_array(const size_t *v, size_t minus, int n, cb_error *e) {
    int *out = malloc((size_t)n * sizeof *out);
    if (!out) {
        cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (v[i] - minus > (size_t)INT_MAX) {
            free(out);
            cb_fail(e, CB_E_RUNTIME, "mpi", "a part of %zu values is more than MPI counts (2^31)", v[i] - minus);
            return NULL;
        }
        out[i] = (int)(v[i] - minus);
    }
    return out;
}

/* x is the region (host memory, its first value at offset `from`); lo, n its shares */
typedef int (*region_fn)(const cb_dist *d, float *x, size_t from, const size_t *lo, const size_t *n, cb_error *e);

static int reduce_scatter_host(const cb_dist *d, float *x, size_t from, const size_t *lo, const size_t *n,
                               cb_error *e) {
    int *counts = int_array(n, 0, d->world, e);
    if (!counts) return e->code;
    /* in place: the whole region goes in, this rank's sum comes out at its start */
    int rc = MPI_Reduce_scatter(MPI_IN_PLACE, x, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    free(counts);
    if (rc != MPI_SUCCESS) return mpi_failed(rc, "the reduce-scatter", e);
    memmove(x + (lo[d->rank] - from), x, n[d->rank] * sizeof *x);
    return CB_OK;
}

static int all_gather_host(const cb_dist *d, float *x, size_t from, const size_t *lo, const size_t *n, cb_error *e) {
    int *counts = int_array(n, 0, d->world, e), *displs = counts ? int_array(lo, from, d->world, e) : NULL;
    int rc = counts && displs ? MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts, displs, MPI_FLOAT,
                                               MPI_COMM_WORLD)
                              : MPI_SUCCESS;
    int failed = !counts || !displs;
    free(counts);
    free(displs);
    if (failed) return e->code;
    return rc == MPI_SUCCESS ? CB_OK : mpi_failed(rc, "the all-gather", e);
}

/* f on the region [from, to) of x in host memory: x itself on a unified device, else a copy */
static int on_host(const cb_dist *d, cb_backend *be, float *x, size_t from, size_t to, const size_t *lo,
                   const size_t *n, region_fn f, cb_error *e) {
    if (be->unified) return f(d, x + from, from, lo, n, e);
    float *host = malloc((to - from) * sizeof *host);
    if (!host) return cb_fail(e, CB_E_RUNTIME, "", "out of memory for %zu values", to - from);
    int rc = be->download(be, host, x + from, (to - from) * sizeof *host, e);
    if (rc == CB_OK) rc = f(d, host, from, lo, n, e);
    if (rc == CB_OK) rc = be->upload(be, x + from, host, (to - from) * sizeof *host, e);
    free(host);
    return rc;
}
#endif

/* f over the shares of [from, to), with the arrays it needs */
static int region(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, size_t from, size_t to,
                  int gather, cb_error *e) {
    if (!d->mpi || from >= to) return CB_OK;
    size_t *lo = malloc(2 * (size_t)d->world * sizeof *lo);
    if (!lo) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    size_t *n = lo + d->world;
    shares(d, parts, from, to, lo, n);
    int rc;
#ifdef CB_HAVE_NCCL
    ncclComm_t comm = on_gpu(d, be);
    if (comm) { /* shares of unequal length: one reduce to (or broadcast from) each share's rank, grouped */
        ncclGroupStart();
        for (int r = 0; r < d->world; r++) {
            if (!n[r]) continue;
            float *p = x + lo[r];
            if (gather) ncclBroadcast(p, p, n[r], ncclFloat, r, comm, 0);
            else ncclReduce(p, p, n[r], ncclFloat, ncclSum, r, comm, 0);
        }
        rc = nccl_wait(ncclGroupEnd(), gather ? "ncclBroadcast (gathered)" : "ncclReduce (scattered)", e);
        free(lo);
        return rc;
    }
#endif
#ifdef CB_HAVE_MPI
    rc = on_host(d, be, x, from, to, lo, n, gather ? all_gather_host : reduce_scatter_host, e);
#else
    (void)be, (void)x, (void)gather;
    rc = cb_fail(e, CB_E_RUNTIME, "mpi", "no MPI in this build");
#endif
    free(lo);
    return rc;
}

static size_t parts_total(const cb_dist *d, const cb_dist_parts *parts) {
    return parts->begin[d->world - 1] + parts->count[d->world - 1];
}

int cb_dist_sum_region(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, size_t from,
                       size_t to, cb_error *e) {
    return region(d, be, x, parts, from, to, 0, e);
}

int cb_dist_gather_region(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, size_t from,
                          size_t to, cb_error *e) {
    return region(d, be, x, parts, from, to, 1, e);
}

int cb_dist_sum_parts(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, cb_error *e) {
    return d->mpi ? region(d, be, x, parts, 0, parts_total(d, parts), 0, e) : CB_OK;
}

int cb_dist_gather_parts(const cb_dist *d, cb_backend *be, float *x, const cb_dist_parts *parts, cb_error *e) {
    return d->mpi ? region(d, be, x, parts, 0, parts_total(d, parts), 1, e) : CB_OK;
}

int cb_is_distributed(void) { return the_process.world > 1; }
int cb_rank(void) { return the_process.rank; }
int cb_world_size(void) { return the_process.world; }
int cb_is_main_process(void) { return the_process.rank == 0; }
