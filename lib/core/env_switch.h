/* env_switch.h: a switch that turns a code path off from the environment (NAME=0), read once
 * and kept, for telling a new kernel's effect (bench) or a fault in it apart. Each switch
 * keeps its own cache: `static atomic_int c = -1; if (cb_env_switch_on(&c, "CB_X")) ...`.
 * The relaxed atomics make the first reads from several threads race harmlessly: each
 * reads the same environment and stores the same value. */
#ifndef CB_CORE_ENV_SWITCH_H
#define CB_CORE_ENV_SWITCH_H

#include <stdatomic.h>
#include <stdlib.h>

/* 1 unless the environment sets name to a value starting with '0'. */
static inline int cb_env_switch_on(atomic_int *cache, const char *name) {
    int v = atomic_load_explicit(cache, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv(name);
        v = !(e && e[0] == '0');
        atomic_store_explicit(cache, v, memory_order_relaxed);
    }
    return v;
}

#endif
