/* vmm.h: the CUDA backend's memory reserved by region (vmm.c; backend.h reserve, commit,
 * release, unreserve, resident). */
#ifndef CB_BACKEND_CUDA_VMM_H
#define CB_BACKEND_CUDA_VMM_H

#include "backend/backend.h"

void *cb_cuda_vmm_reserve(cb_backend *be, size_t bytes, cb_error *e);
int cb_cuda_vmm_commit(cb_backend *be, void *base, size_t from, size_t to, cb_error *e);
void cb_cuda_vmm_release(cb_backend *be, void *base, size_t from, size_t to);
void cb_cuda_vmm_unreserve(cb_backend *be, void *base, size_t bytes);
size_t cb_cuda_vmm_resident(cb_backend *be, const void *base, size_t bytes);

#endif
