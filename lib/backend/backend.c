/* backend.c: the backends this build has, found by the name --device takes. A new
 * backend adds its entry here (under the build flag that compiles it) and nothing else. */
#include "backend/backend.h"

#include <string.h>
#ifdef CB_HAVE_CUDA
#include "backend/cuda/cuda.h"
#endif

typedef struct backend_entry {
    const char *name;
    cb_backend *(*get)(void);   /* NULL: a device this build has no backend for */
    const char *(*absent)(void); /* why get() found no device, or NULL */
} backend_entry;

static const backend_entry BACKENDS[] = {
#ifdef CB_HAVE_CUDA
    {"cuda", cb_backend_cuda, cb_backend_cuda_absent},
#else
    {"cuda", NULL, NULL},
#endif
    {"cpu", cb_backend_cpu, NULL},
};
#define N_BACKENDS (sizeof BACKENDS / sizeof BACKENDS[0])

const char *cb_backend_names(void) { return "cpu|cuda|auto"; }

const char *cb_backend_built(void) {
#ifdef CB_HAVE_CUDA
    return "cpu cuda";
#else
    return "cpu";
#endif
}

int cb_backend_open(const char *name, cb_backend **be, cb_error *e) {
    *be = NULL;
    if (!name || !*name || strcmp(name, "auto") == 0) { /* the first built, in the table's order */
        for (size_t i = 0; i < N_BACKENDS && !*be; i++)
            if (BACKENDS[i].get) *be = BACKENDS[i].get();
        return CB_OK;
    }
    for (size_t i = 0; i < N_BACKENDS; i++) {
        if (strcmp(name, BACKENDS[i].name) != 0) continue;
        if (!BACKENDS[i].get)
            return cb_fail(e, CB_E_USAGE, "", "device %s: this build has no %s backend (built: %s)", name, name,
                           cb_backend_built());
        *be = BACKENDS[i].get();
        if (!*be)
            return cb_fail(e, CB_E_USAGE, "", "device %s: none is present on this machine%s%s%s", name,
                           BACKENDS[i].absent ? " (" : "", BACKENDS[i].absent ? BACKENDS[i].absent() : "",
                           BACKENDS[i].absent ? ")" : "");
        return CB_OK;
    }
    return cb_fail(e, CB_E_USAGE, "", "unknown device '%s' (one of %s)", name, cb_backend_names());
}
