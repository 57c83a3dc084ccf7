/* blas.c: reading which kernels OpenBLAS took and what the CPU offers, the decision, the
 * self-check of a candidate core in a child process, and the re-execution under it. */
#include "backend/cpu/blas.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/* The environment variable that marks a process as a self-check child (its value: the core
 * it checks); the child exits from a constructor, before main, with one of these. */
#define SELFCHECK_ENV "CB_BLAS_SELFCHECK"
#define SELFCHECK_OK 0
#define SELFCHECK_UNKNOWN_CORE 20 /* the BLAS runs another core than asked: it does not know it */
#define SELFCHECK_WRONG 21        /* the product differs from the reference */
#define SELFCHECK_SECONDS 30      /* a child that hangs is killed by SIGALRM */

/* ---------------------------------------------------------------- the CPU */

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

void cb_cpu_features_read(cb_cpu_features *f) {
    memset(f, 0, sizeof *f);
#if defined(__x86_64__) || defined(__i386__)
    unsigned a = 0, b = 0, c = 0, d = 0, max_leaf = 0;
    if (!__get_cpuid(0, &max_leaf, &b, &c, &d)) return;
    memcpy(f->vendor, &b, 4);
    memcpy(f->vendor + 4, &d, 4);
    memcpy(f->vendor + 8, &c, 4);
    __get_cpuid(1, &a, &b, &c, &d);
    int base_family = (int)((a >> 8) & 0xf), base_model = (int)((a >> 4) & 0xf);
    int ext_family = (int)((a >> 20) & 0xff), ext_model = (int)((a >> 16) & 0xf);
    f->family = base_family == 0xf ? base_family + ext_family : base_family;
    f->model = (base_family == 0x6 || base_family == 0xf) ? base_model | ext_model << 4 : base_model;
    bool osxsave = c & (1u << 27);
    unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
    bool os_ymm = (xcr0 & 0x6) == 0x6;                  /* SSE and AVX state */
    bool os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;       /* opmask, ZMM_Hi256, Hi16_ZMM */
    bool os_amx = (xcr0 & (3ull << 17)) == (3ull << 17); /* XTILECFG, XTILEDATA */
    f->avx = os_ymm && (c & (1u << 28));
    f->fma = os_ymm && (c & (1u << 12));
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = os_ymm && (b & (1u << 5));
        f->avx512f = os_zmm && (b & (1u << 16));
        f->avx512dq = os_zmm && (b & (1u << 17));
        f->avx512cd = os_zmm && (b & (1u << 28));
        f->avx512bw = os_zmm && (b & (1u << 30));
        f->avx512vl = os_zmm && (b & (1u << 31));
        f->amx_bf16 = os_amx && (d & (1u << 22));
        f->amx_tile = os_amx && (d & (1u << 24));
        unsigned max_sub = a;
        if (max_sub >= 1) {
            __cpuid_count(7, 1, a, b, c, d);
            f->avx512_bf16 = os_zmm && (a & (1u << 5));
        }
    }
#endif
}

void cb_cpu_features_text(const cb_cpu_features *f, char *buf, int cap) {
    const struct { bool on; const char *name; } all[] = {
        {f->avx, "avx"},           {f->avx2, "avx2"},         {f->fma, "fma"},
        {f->avx512f, "avx512f"},   {f->avx512bw, "avx512bw"}, {f->avx512vl, "avx512vl"},
        {f->avx512dq, "avx512dq"}, {f->avx512cd, "avx512cd"}, {f->avx512_bf16, "avx512_bf16"},
        {f->amx_tile, "amx_tile"}, {f->amx_bf16, "amx_bf16"},
    };
    int n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++)
        if (all[i].on) n += snprintf(buf + n, cap - n, "%s%s", n ? " " : "", all[i].name);
}

/* ---------------------------------------------------------------- the decision */

static const struct { const char *name; int level; } known_cores[] = {
    {"SapphireRapids", CB_BLAS_LEVEL_AMX}, {"Cooperlake", CB_BLAS_LEVEL_AVX512BF16},
    {"SkylakeX", CB_BLAS_LEVEL_AVX512},    {"Haswell", CB_BLAS_LEVEL_AVX2},
    {"Zen", CB_BLAS_LEVEL_AVX2},           {"Excavator", CB_BLAS_LEVEL_AVX2},
    {"Sandybridge", CB_BLAS_LEVEL_AVX},    {"Bulldozer", CB_BLAS_LEVEL_AVX},
    {"Piledriver", CB_BLAS_LEVEL_AVX},     {"Steamroller", CB_BLAS_LEVEL_AVX},
};
/* The core caramba asks for at each level (Intel's names run on AMD CPUs of the level too). */
static const char *const level_core[] = {"Prescott", "Sandybridge", "Haswell", "SkylakeX", "Cooperlake",
                                         "SapphireRapids"};

int cb_blas_core_level(const char *core) {
    if (!core) return CB_BLAS_LEVEL_SSE;
    for (size_t i = 0; i < sizeof known_cores / sizeof known_cores[0]; i++)
        if (strcasecmp(core, known_cores[i].name) == 0) return known_cores[i].level;
    return CB_BLAS_LEVEL_SSE;
}

int cb_cpu_level(const cb_cpu_features *f) {
    int level = CB_BLAS_LEVEL_SSE;
    if (!f->avx) return level;
    level = CB_BLAS_LEVEL_AVX;
    if (!(f->avx2 && f->fma)) return level;
    level = CB_BLAS_LEVEL_AVX2;
    if (!(f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512cd)) return level;
    level = CB_BLAS_LEVEL_AVX512;
    if (!f->avx512_bf16) return level;
    level = CB_BLAS_LEVEL_AVX512BF16;
    if (!(f->amx_tile && f->amx_bf16)) return level;
    return CB_BLAS_LEVEL_AMX;
}

static bool set(const char *s) { return s && *s; }

void cb_blas_decide(cb_blas_decision *d, const char *running, const cb_cpu_features *f,
                    const char *user_coretype, const char *chosen_marker) {
    memset(d, 0, sizeof *d);
    int cpu = cb_cpu_level(f), now = cb_blas_core_level(running);
    d->best = level_core[cpu];
    d->below = now < cpu;
    if (set(user_coretype)) {
        /* caramba's own setting is the marker's first word, equal to OPENBLAS_CORETYPE */
        size_t n = strlen(user_coretype);
        bool ours = set(chosen_marker) && strncmp(chosen_marker, user_coretype, n) == 0 &&
                    (chosen_marker[n] == ' ' || chosen_marker[n] == 0);
        d->chooser = ours ? CB_BLAS_BY_CARAMBA : CB_BLAS_BY_USER;
        return;
    }
    d->chooser = CB_BLAS_BY_BLAS;
    for (int level = cpu; level > now && d->n_tries < CB_BLAS_MAX_TRIES; level--)
        d->tries[d->n_tries++] = level_core[level];
}

/* ---------------------------------------------------------------- the self-check */

static unsigned next_random(unsigned *state) {
    *state = *state * 1664525u + 1013904223u;
    return *state >> 8;
}

/* C (M,N) = alpha op(A) op(B) + beta C against a double reference; A (M,K) or (K,M) transposed,
 * B (K,N) or (N,K) transposed, all row-major. */
static int check_one(int M, int N, int K, bool trans_b, float beta, bool perturb) {
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N);
    float *C = malloc(sizeof(float) * M * N);
    double *ref = malloc(sizeof(double) * M * N), *mag = malloc(sizeof(double) * M * N);
    if (!A || !B || !C || !ref || !mag) {
        free(A), free(B), free(C), free(ref), free(mag);
        return -1;
    }
    unsigned state = (unsigned)(M * 131 + N * 31 + K);
    for (int i = 0; i < M * K; i++) A[i] = (float)(next_random(&state) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < K * N; i++) B[i] = (float)(next_random(&state) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < M * N; i++) C[i] = (float)(next_random(&state) % 2001) / 1000.0f - 1.0f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0, m = 0;
            for (int k = 0; k < K; k++) {
                double b = trans_b ? B[j * K + k] : B[k * N + j];
                s += (double)A[i * K + k] * b;
                m += fabs((double)A[i * K + k] * b);
            }
            ref[i * N + j] = s + beta * (double)C[i * N + j];
            mag[i * N + j] = m + fabs(beta * (double)C[i * N + j]);
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, K, B,
                trans_b ? K : N, beta, C, N);
    if (perturb) C[(M / 2) * N + N / 2] += 1.0f;
    int bad = 0;
    for (int i = 0; i < M * N && !bad; i++)
        if (!(fabs(C[i] - ref[i]) <= 1e-5 * mag[i] + 1e-6)) bad = 1; /* NaN fails too */
    free(A), free(B), free(C), free(ref), free(mag);
    return bad;
}

int cb_blas_selfcheck_products(bool perturb) {
    /* odd shapes reach the kernels' edge code; the larger ones their main loops */
    static const struct { int M, N, K; bool trans_b; float beta; } cases[] = {
        {37, 29, 64, false, 0.0f}, {64, 67, 130, true, 0.0f}, {130, 96, 33, false, 0.5f},
        {96, 128, 256, true, 1.0f}, {1, 50, 77, false, 0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = check_one(cases[i].M, cases[i].N, cases[i].K, cases[i].trans_b, cases[i].beta,
                           perturb && i == 1);
        if (rc) return rc;
    }
    return 0;
}

/* In a self-check child the check runs before main, under the kernels OpenBLAS took when it
 * loaded (its constructor runs before this one: it is a library this program depends on). */
__attribute__((constructor)) static void selfcheck_child(void) {
    const char *core = getenv(SELFCHECK_ENV);
    if (!set(core)) return;
    const char *running = openblas_get_corename();
    if (!running || strcasecmp(running, core) != 0) _exit(SELFCHECK_UNKNOWN_CORE);
    /* the test hook: a comma-separated list of cores, or "*" for all */
    const char *wrong = getenv("CB_BLAS_TEST_WRONG");
    bool perturb = false;
    size_t n = strlen(core);
    for (const char *p = wrong; set(p) && !perturb; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        perturb = (p[0] == '*' && (p[1] == ',' || !p[1])) ||
                  (strncasecmp(p, core, n) == 0 && (p[n] == ',' || !p[n]));
    _exit(cb_blas_selfcheck_products(perturb) == 0 ? SELFCHECK_OK : SELFCHECK_WRONG);
}

int cb_blas_check_core(const char *core, char *why, int cap) {
    why[0] = 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, cap, "fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0), dup2(null, 1), dup2(null, 2);
            if (null > 2) close(null);
        }
        setenv("OPENBLAS_CORETYPE", core, 1);
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        setenv("OMP_NUM_THREADS", "1", 1);
        setenv(SELFCHECK_ENV, core, 1);
        alarm(SELFCHECK_SECONDS);
        execl("/proc/self/exe", "cb-blas-selfcheck", (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(why, cap, "waitpid: %s", strerror(errno));
            return -1;
        }
    if (WIFEXITED(status)) {
        switch (WEXITSTATUS(status)) {
        case SELFCHECK_OK: return 0;
        case SELFCHECK_UNKNOWN_CORE: snprintf(why, cap, "the BLAS does not know this core"); break;
        case SELFCHECK_WRONG: snprintf(why, cap, "wrong results"); break;
        default: snprintf(why, cap, "exit status %d", WEXITSTATUS(status)); break;
        }
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(why, cap, "%s", sig == SIGILL    ? "illegal instruction (SIGILL)"
                                 : sig == SIGALRM ? "no answer within 30 s"
                                                  : strsignal(sig));
    } else {
        snprintf(why, cap, "status %d", status);
    }
    return -1;
}

/* ---------------------------------------------------------------- the process */

void cb_blas_choose(cb_blas_state *s, char **argv) {
    memset(s, 0, sizeof *s);
    cb_cpu_features_read(&s->cpu);
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    snprintf(s->config, sizeof s->config, "%s", config ? config : "OpenBLAS");
    snprintf(s->core, sizeof s->core, "%s", core ? core : "unknown");
    const char *user = getenv("OPENBLAS_CORETYPE"), *marker = getenv("CB_BLAS_CHOSEN");
    const char *test_core = getenv("CB_BLAS_TEST_CORE");
    if (set(test_core) && !set(user)) snprintf(s->core, sizeof s->core, "%s", test_core);

    cb_blas_decision d;
    cb_blas_decide(&d, s->core, &s->cpu, user, marker);
    s->chooser = d.chooser;
    s->below = d.below;
    snprintf(s->best, sizeof s->best, "%s", d.best);
    if (d.chooser == CB_BLAS_BY_CARAMBA) {
        const char *from = strchr(marker, ' ');
        snprintf(s->took, sizeof s->took, "%s", from ? from + 1 : "?");
    }
    int n = 0;
    for (int i = 0; i < d.n_tries; i++) {
        char why[96];
        if (cb_blas_check_core(d.tries[i], why, sizeof why) == 0) {
            if (!argv) {
                snprintf(s->would, sizeof s->would, "%s", d.tries[i]);
                s->failed[0] = 0;
                return;
            }
            char mark[80];
            snprintf(mark, sizeof mark, "%s %s", d.tries[i], s->core);
            setenv("OPENBLAS_CORETYPE", d.tries[i], 1);
            setenv("CB_BLAS_CHOSEN", mark, 1);
            execv("/proc/self/exe", argv);
            /* the exec failed: go on as we are */
            unsetenv("OPENBLAS_CORETYPE");
            unsetenv("CB_BLAS_CHOSEN");
            snprintf(why, sizeof why, "re-execution failed: %s", strerror(errno));
        }
        if (n < (int)sizeof s->failed)
            n += snprintf(s->failed + n, sizeof s->failed - n, "%s%s: %s", n ? "; " : "", d.tries[i], why);
    }
}

/* "OpenBLAS 0.3.21" from "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
static void blas_name(const cb_blas_state *s, char *buf, int cap) {
    int words = 0, i = 0;
    for (; s->config[i] && i < cap - 1; i++) {
        if (s->config[i] == ' ' && ++words == 2) break;
        buf[i] = s->config[i];
    }
    buf[i] = 0;
}

void cb_blas_describe(const cb_blas_state *s, char *buf, int cap) {
    char name[64];
    blas_name(s, name, sizeof name);
    const char *dynamic = strstr(s->config, "DYNAMIC_ARCH") ? " (DYNAMIC_ARCH)" : "";
    int n = snprintf(buf, cap, "%s%s, kernels %s, ", name, dynamic, s->core);
    if (n < 0 || n >= cap) return;
    switch (s->chooser) {
    case CB_BLAS_BY_CARAMBA: snprintf(buf + n, cap - n, "chosen by caramba (the BLAS took %s)", s->took); break;
    case CB_BLAS_BY_USER:
        if (s->below)
            snprintf(buf + n, cap - n, "set by the user (OPENBLAS_CORETYPE); this CPU runs %s", s->best);
        else
            snprintf(buf + n, cap - n, "set by the user (OPENBLAS_CORETYPE)");
        break;
    case CB_BLAS_BY_BLAS:
        if (s->failed[0])
            snprintf(buf + n, cap - n, "chosen by the BLAS; this CPU runs %s, but caramba's self-check failed (%s)",
                     s->best, s->failed);
        else
            snprintf(buf + n, cap - n, "chosen by the BLAS");
        break;
    }
}

void cb_blas_note(const cb_blas_state *s, char *buf, int cap) {
    buf[0] = 0;
    if (s->chooser == CB_BLAS_BY_USER && s->below)
        snprintf(buf, cap,
                 "OPENBLAS_CORETYPE=%s holds the BLAS to its %s kernels; this CPU runs %s (unset it to let "
                 "caramba choose)",
                 getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "", s->core, s->best);
    else if (s->chooser == CB_BLAS_BY_BLAS && s->failed[0])
        snprintf(buf, cap, "the BLAS runs its %s kernels, below this CPU (%s); staying there, since the self-check "
                 "failed: %s", s->core, s->best, s->failed);
}
