/* vmm.c: the CUDA backend's memory reserved by region (backend.h reserve, commit,
 * release, unreserve, resident), for fsdp's sharded gradients and weights
 * (train/fsdp.h): CUDA's virtual memory management, reached through the runtime's
 * driver entry points (cudaGetDriverEntryPointByVersion), so the build links no libcuda.
 * A reservation is address space alone (cuMemAddressReserve); commit backs the granules
 * (the device's allocation granularity, 2 MiB on current GPUs) a region overlaps with
 * physical memory (cuMemCreate, cuMemMap, cuMemSetAccess for this device), zeroed;
 * release zeroes a region's backed bytes and gives back the granules wholly inside it,
 * after the device finished the work queued on them. The kernels see plain device
 * pointers, so every op's pointer arithmetic is unchanged. */
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/cuda/cuda.h"
#include "backend/cuda/internal.h"
#include "backend/cuda/vmm.h"

typedef CUresult (*reserve_fn)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*address_free_fn)(CUdeviceptr, size_t);
typedef CUresult (*create_fn)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                              unsigned long long);
typedef CUresult (*release_fn)(CUmemGenericAllocationHandle);
typedef CUresult (*map_fn)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
typedef CUresult (*unmap_fn)(CUdeviceptr, size_t);
typedef CUresult (*access_fn)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*granularity_fn)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);

static struct {
    int tried, ok;
    char why[160];
    reserve_fn reserve;
    address_free_fn address_free;
    create_fn create;
    release_fn release;
    map_fn map;
    unmap_fn unmap;
    access_fn access;
    CUmemAllocationProp prop;
    CUmemAccessDesc rw;
    size_t granule;
} drv;

/* One reservation: its granules, each backed (a handle) or not (0). */
typedef struct reservation {
    char *base;
    size_t bytes, n;
    CUmemGenericAllocationHandle *h; /* (n) */
    struct reservation *next;
} reservation;
static reservation *reservations;

static int entry(const char *name, void **fn) {
    enum cudaDriverEntryPointQueryResult found;
    return cudaGetDriverEntryPointByVersion(name, fn, 12000, cudaEnableDefault, &found) == cudaSuccess &&
           found == cudaDriverEntryPointSuccess && *fn;
}

/* The driver's functions and this device's granularity, asked once. */
static int load(cb_error *e) {
    if (!drv.tried) {
        drv.tried = 1;
        int dev = 0, ok = cudaGetDevice(&dev) == cudaSuccess;
        granularity_fn granularity = NULL;
        ok = ok && entry("cuMemAddressReserve", (void **)&drv.reserve) &&
             entry("cuMemAddressFree", (void **)&drv.address_free) && entry("cuMemCreate", (void **)&drv.create) &&
             entry("cuMemRelease", (void **)&drv.release) && entry("cuMemMap", (void **)&drv.map) &&
             entry("cuMemUnmap", (void **)&drv.unmap) && entry("cuMemSetAccess", (void **)&drv.access) &&
             entry("cuMemGetAllocationGranularity", (void **)&granularity);
        if (ok) {
            drv.prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
            drv.prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
            drv.prop.location.id = dev;
            drv.rw.location = drv.prop.location;
            drv.rw.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
            ok = granularity(&drv.granule, &drv.prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) == CUDA_SUCCESS &&
                 drv.granule > 0;
        }
        drv.ok = ok;
        if (!ok) snprintf(drv.why, sizeof drv.why, "the driver has no virtual memory management (cuMem*)");
    }
    if (!drv.ok) return cb_fail(e, CB_E_RUNTIME, "cuda", "%s", drv.why);
    return CB_OK;
}

static reservation *find(const void *base) {
    for (reservation *r = reservations; r; r = r->next)
        if (r->base == base) return r;
    return NULL;
}

void *cb_cuda_vmm_reserve(cb_backend *be, size_t bytes, cb_error *e) {
    (void)be;
    if (load(e) != CB_OK) return NULL;
    reservation *r = calloc(1, sizeof *r);
    size_t n = ((bytes ? bytes : 1) + drv.granule - 1) / drv.granule;
    if (!r || !(r->h = calloc(n, sizeof *r->h))) {
        free(r);
        cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        return NULL;
    }
    CUdeviceptr p = 0;
    if (drv.reserve(&p, n * drv.granule, 0, 0, 0) != CUDA_SUCCESS) {
        free(r->h);
        free(r);
        cb_fail(e, CB_E_RUNTIME, "cuda", "cuMemAddressReserve of %zu MB failed", (n * drv.granule) >> 20);
        return NULL;
    }
    r->base = (char *)(uintptr_t)p;
    r->bytes = bytes;
    r->n = n;
    r->next = reservations;
    reservations = r;
    return r->base;
}

int cb_cuda_vmm_commit(cb_backend *be, void *base, size_t from, size_t to, cb_error *e) {
    (void)be;
    reservation *r = find(base);
    if (!r) return CB_OK; /* a plain allocation (train/fsdp.c's fallback) is backed throughout */
    size_t first = from / drv.granule, end = (to + drv.granule - 1) / drv.granule;
    for (size_t g = first; from < to && g < end && g < r->n; g++) {
        if (r->h[g]) continue;
        CUdeviceptr at = (CUdeviceptr)(uintptr_t)(r->base + g * drv.granule);
        CUmemGenericAllocationHandle h = 0;
        if (drv.create(&h, drv.granule, &drv.prop, 0) != CUDA_SUCCESS) {
            size_t free_b = 0, total_b = 0;
            cudaMemGetInfo(&free_b, &total_b);
            return cb_fail(e, CB_E_RUNTIME, "cuda",
                           "out of GPU memory: fsdp's sharded buffers could not take %zu MB more (%zu MB free of "
                           "%zu MB); try a smaller batch_size or block_size",
                           drv.granule >> 20, free_b >> 20, total_b >> 20);
        }
        if (drv.map(at, drv.granule, 0, h, 0) != CUDA_SUCCESS) {
            drv.release(h);
            return cb_fail(e, CB_E_RUNTIME, "cuda", "cuMemMap failed");
        }
        if (drv.access(at, drv.granule, &drv.rw, 1) != CUDA_SUCCESS) {
            drv.unmap(at, drv.granule);
            drv.release(h);
            return cb_fail(e, CB_E_RUNTIME, "cuda", "cuMemSetAccess failed");
        }
        r->h[g] = h;
        if (cudaMemsetAsync(r->base + g * drv.granule, 0, drv.granule, 0) != cudaSuccess)
            return cb_fail(e, CB_E_RUNTIME, "cuda", "clearing committed memory failed");
    }
    return CB_OK;
}

/* The granules of r from `first` on that are backed and wholly inside [from, to) go back;
 * the device finishes what it queued first (a kernel may still read or write them). */
static void give_back(cuda_ctx *c, reservation *r, size_t from, size_t to) {
    size_t first = (from + drv.granule - 1) / drv.granule, end = to / drv.granule, any = 0;
    for (size_t g = first; g < end && g < r->n; g++) any |= r->h[g] != 0;
    if (!any) return;
    if (cudaDeviceSynchronize() != cudaSuccess) {
        cb_cuda_fail(c, "release", "the device failed before the memory was given back");
        return;
    }
    for (size_t g = first; g < end && g < r->n; g++) {
        if (!r->h[g]) continue;
        drv.unmap((CUdeviceptr)(uintptr_t)(r->base + g * drv.granule), drv.granule);
        drv.release(r->h[g]);
        r->h[g] = 0;
    }
}

void cb_cuda_vmm_release(cb_backend *be, void *base, size_t from, size_t to) {
    cuda_ctx *c = be->ctx;
    reservation *r = find(base);
    if (from >= to) return;
    if (!r) { /* a plain allocation: zeroed, through the interface (amp's copies see it) */
        be->zero(be, (char *)base + from, to - from);
        return;
    }
    /* zero what stays backed: the parts of granules that straddle the region's ends */
    for (size_t g = from / drv.granule; g * drv.granule < to && g < r->n; g++) {
        size_t lo = g * drv.granule > from ? g * drv.granule : from;
        size_t hi = (g + 1) * drv.granule < to ? (g + 1) * drv.granule : to;
        int whole = lo == g * drv.granule && hi == (g + 1) * drv.granule;
        if (r->h[g] && !whole && cudaMemsetAsync(r->base + lo, 0, hi - lo, 0) != cudaSuccess)
            cb_cuda_fail(c, "release", "cudaMemsetAsync failed");
    }
    give_back(c, r, from, to);
}

void cb_cuda_vmm_unreserve(cb_backend *be, void *base, size_t bytes) {
    (void)bytes;
    reservation **at = &reservations;
    while (*at && (*at)->base != base) at = &(*at)->next;
    reservation *r = *at;
    if (!r) { /* a plain allocation */
        be->free(be, base);
        return;
    }
    give_back(be->ctx, r, 0, r->n * drv.granule);
    drv.address_free((CUdeviceptr)(uintptr_t)r->base, r->n * drv.granule);
    *at = r->next;
    free(r->h);
    free(r);
}

size_t cb_cuda_vmm_resident(cb_backend *be, const void *base, size_t bytes) {
    (void)be;
    const reservation *r = find(base);
    if (!r) return bytes; /* a plain allocation is all backed */
    size_t n = 0;
    for (size_t g = 0; g < r->n && g * drv.granule < bytes; g++)
        if (r->h[g]) {
            size_t hi = (g + 1) * drv.granule < bytes ? (g + 1) * drv.granule : bytes;
            n += hi - g * drv.granule;
        }
    return n;
}
