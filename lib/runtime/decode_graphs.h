/* decode_graphs.h: the runtime plan's decision for decoding on a GPU: whether a one-row
 * decode step is captured as a CUDA graph and replayed (backend/cuda/decode.c) or launched
 * op by op, the counterpart of the seed's torch.compile: auto. A graph saves the launch of
 * every small kernel of a step, but is captured again whenever a buffer moves (the cache
 * grows, the decode plan's window changes); for a model whose step is long enough both cost
 * the same. So it is measured: a session of the model with the same weight and cache
 * kinds decodes the same greedy steps uncaptured and graphed, and the faster wins (the
 * graphed one on a tie within 2%, as the backend's default). The decision is kept in the
 * runtime plan cache (runtime_plan.h cb_runtime_cache_path) under a key of the machine
 * (CPU, GPUs, driver), the model's plan and the kinds, and reused after.
 * On the CPU nothing is captured: "not applicable". CB_CUDA_GRAPHS=0 in the environment
 * turns graphs off whatever was decided (backend/cuda/cuda.h). */
#ifndef CB_RUNTIME_DECODE_GRAPHS_H
#define CB_RUNTIME_DECODE_GRAPHS_H

#include <stdio.h>
#include "core/error.h"
#include "infer/session.h"
#include "model/model.h"

typedef struct cb_decode_graphs {
    int applicable;      /* 0: the session's backend captures nothing (the CPU) */
    int on;              /* the decision: 1 graphed, 0 op by op (sc->graphs_off = !on) */
    int from_cache;      /* 1: read from the cache, nothing measured */
    double ms_graphed;   /* median milliseconds per step as measured (0 when not) */
    double ms_uncaptured;
    int steps;           /* steps timed each way (0: the context was too short to time) */
    char key[65];
    char cache_path[4096];
} cb_decode_graphs;

/* Decide for sessions of m made with sc (its backend, kinds, weight kind, plan): from the
 * cache file (cache_path; NULL: the default) when it holds the key, else by timing `steps`
 * greedy steps each way (0: 32; fewer where the model's max_seq_len holds fewer, and none,
 * graphs on, where it holds fewer than 4 after the prompt) after a 16-token prompt, and stored. The decision goes into
 * sc->graphs_off. */
int cb_decode_graphs_decide(cb_decode_graphs *g, const cb_model *m, cb_session_config *sc, const char *cache_path,
                            int steps, cb_error *e);

/* One line "runtime plan: cuda graphs on (measured now: ...)" or "... (from the cache ...)". */
void cb_decode_graphs_print(const cb_decode_graphs *g, FILE *f);

#endif
