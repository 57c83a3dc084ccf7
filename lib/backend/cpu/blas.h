/* blas.h: which kernels the CPU backend's BLAS (OpenBLAS) runs, and making it run the ones
 * this CPU offers where the BLAS build does not know the CPU and fell back to lesser ones
 * (Debian's OpenBLAS 0.3.21 takes Prescott's SSE3 kernels on a Sapphire Rapids Xeon: a tenth
 * of the speed). OpenBLAS chooses its kernels once, when it loads, from OPENBLAS_CORETYPE or
 * cpuid, so a better choice means re-executing the program with OPENBLAS_CORETYPE set; the
 * choice is made only after a self-check under that core in a child process. */
#ifndef CB_BACKEND_CPU_BLAS_H
#define CB_BACKEND_CPU_BLAS_H

#include <stdbool.h>

/* What the CPU offers, from cpuid, each only where the OS also saves the registers it uses. */
typedef struct {
    char vendor[13];
    int family, model; /* as /proc/cpuinfo writes them (extended fields folded in) */
    bool avx, avx2, fma;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512cd;
    bool avx512_bf16;
    bool amx_tile, amx_bf16;
} cb_cpu_features;

void cb_cpu_features_read(cb_cpu_features *f);

/* "avx2 fma avx512f ..." into buf (empty on a CPU without AVX). */
void cb_cpu_features_text(const cb_cpu_features *f, char *buf, int cap);

/* Kernel levels, each a superset of the one below. */
enum {
    CB_BLAS_LEVEL_SSE = 0,   /* Prescott, Core2, Nehalem, Atom, ..., and any core not listed */
    CB_BLAS_LEVEL_AVX,       /* Sandybridge, Bulldozer, Piledriver, Steamroller */
    CB_BLAS_LEVEL_AVX2,      /* Haswell, Zen, Excavator */
    CB_BLAS_LEVEL_AVX512,    /* SkylakeX: AVX-512 F, CD, BW, DQ, VL */
    CB_BLAS_LEVEL_AVX512BF16,/* Cooperlake */
    CB_BLAS_LEVEL_AMX,       /* SapphireRapids */
};

/* The level of an OpenBLAS core name (case ignored); CB_BLAS_LEVEL_SSE for unknown names. */
int cb_blas_core_level(const char *core);
/* The highest level this CPU runs. */
int cb_cpu_level(const cb_cpu_features *f);

typedef enum {
    CB_BLAS_BY_BLAS = 0, /* OpenBLAS chose from cpuid (OPENBLAS_CORETYPE unset) */
    CB_BLAS_BY_USER,     /* the user set OPENBLAS_CORETYPE */
    CB_BLAS_BY_CARAMBA,  /* caramba set OPENBLAS_CORETYPE and re-executed (marker CB_BLAS_CHOSEN) */
} cb_blas_chooser;

#define CB_BLAS_MAX_TRIES 5

/* The decision, a pure function of what the BLAS reports, what the CPU offers and the
 * environment, so a table of cases tests it. */
typedef struct {
    cb_blas_chooser chooser;
    /* candidate cores to self-check, best first; non-empty only when the BLAS chose a core
     * below what this CPU runs and the user did not set OPENBLAS_CORETYPE */
    const char *tries[CB_BLAS_MAX_TRIES];
    int n_tries;
    bool below;       /* the running core is below what this CPU runs */
    const char *best; /* the name of the best core this CPU runs (for reports) */
} cb_blas_decision;

/* running: openblas_get_corename(); user_coretype: getenv("OPENBLAS_CORETYPE"); chosen_marker:
 * getenv("CB_BLAS_CHOSEN"), "CORE FROM" where caramba re-executed with OPENBLAS_CORETYPE=CORE
 * after the BLAS had taken FROM. NULL and "" mean unset. */
void cb_blas_decide(cb_blas_decision *d, const char *running, const cb_cpu_features *f,
                    const char *user_coretype, const char *chosen_marker);

/* What the process runs, filled by cb_blas_choose. */
typedef struct {
    char config[160];  /* openblas_get_config() */
    char core[32];     /* the core running now */
    char took[32];     /* the core the BLAS took by itself, where caramba changed it */
    char best[32];     /* the best core this CPU runs */
    char failed[160];  /* "SkylakeX: wrong results; ...", where every candidate failed its check */
    char would[32];    /* the core that passed its check, where argv was NULL (no re-execution) */
    cb_blas_chooser chooser;
    bool below;
    cb_cpu_features cpu;
} cb_blas_state;

/* Decide for this process; where a candidate core passes the self-check, set OPENBLAS_CORETYPE
 * and CB_BLAS_CHOSEN and re-execute /proc/self/exe with argv, which returns only if the exec
 * fails (then the process goes on as it is). With argv NULL it decides and checks but never
 * executes (s->would names the core that passed). Test hooks: CB_BLAS_TEST_CORE=NAME makes the
 * decision see NAME as the BLAS's own choice; CB_BLAS_TEST_WRONG=NAME[,NAME...] (or "*") makes
 * the self-check under those cores compute a wrong product. */
void cb_blas_choose(cb_blas_state *s, char **argv);

/* The self-check of one core: a forked child re-executes this program with OPENBLAS_CORETYPE=
 * core, and before main (a constructor in blas.c) checks that OpenBLAS runs that core and that
 * its sgemm matches a plain C product. 0 when it passed, else -1 and why ("wrong results",
 * "illegal instruction (SIGILL)", "the BLAS does not know this core"). */
int cb_blas_check_core(const char *core, char *why, int cap);

/* One line: "OpenBLAS 0.3.21 (DYNAMIC_ARCH), kernels SkylakeX, chosen by caramba (the BLAS
 * took Prescott)". */
void cb_blas_describe(const cb_blas_state *s, char *buf, int cap);

/* The line to tell the user once, or "" when there is nothing to tell: an OPENBLAS_CORETYPE of
 * theirs holds the BLAS below this CPU, or every better core failed its self-check. */
void cb_blas_note(const cb_blas_state *s, char *buf, int cap);

/* Self-check of the running kernels: sgemm of a few odd shapes against a plain C product.
 * Returns 0 when within tolerance. Exposed for tests. */
int cb_blas_selfcheck_products(bool perturb);

#endif
