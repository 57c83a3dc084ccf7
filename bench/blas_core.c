/* blas_core.c: OpenBLAS sgemm GFLOP/s under the kernels it took in this process and under each
 * core this CPU runs, each in a child process re-executed with OPENBLAS_CORETYPE set, side by
 * side in one run, with the self-check of lib/backend/cpu/blas.c per core; then the decision
 * caramba makes here. Shows what a fallback to lesser kernels costs (bench/RESULTS.md).
 *   build/rel/bench/blas_core [-n size] [-r reps] [--choose]
 * --choose first does what every compute tool does at start (cb_blas_choose: maybe
 * re-execute under better kernels), so "as loaded" is then caramba's choice.
 * Threads: OpenBLAS's own (OPENBLAS_NUM_THREADS, else every core). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "backend/cpu/blas.h"
#include "core/clock.h"


/* Best of reps, GFLOP/s, of C (n,n) = A (n,n) B (n,n), after one warm-up product. */
static double sgemm_gflops(int n, int reps) {
    float *A = malloc(sizeof(float) * n * n), *B = malloc(sizeof(float) * n * n), *C = malloc(sizeof(float) * n * n);
    if (!A || !B || !C) return 0;
    for (long i = 0; i < (long)n * n; i++) A[i] = (float)(i % 17) * 0.01f, B[i] = (float)(i % 13) * 0.02f, C[i] = 0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = cb_clock_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B, n, 0.0f, C, n);
        double t = cb_clock_s() - t0;
        if (t < best) best = t;
    }
    free(A), free(B), free(C);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

/* One line: core, GFLOP/s, self-check. */
static void measure_here(const char *label, int n, int reps) {
    const char *core = openblas_get_corename();
    int check = cb_blas_selfcheck_products(false);
    printf("%-18s %-16s %9.1f   %s\n", label, core, sgemm_gflops(n, reps), check ? "WRONG" : "ok");
    fflush(stdout);
}

int main(int argc, char **argv) {
    int n = 1024, reps = 5, c, choose = 0;
    const char *child = NULL;
    static const struct option opts[] = {{"size", required_argument, 0, 'n'}, {"reps", required_argument, 0, 'r'},
                                         {"child", required_argument, 0, 'c'}, {"choose", no_argument, 0, 'C'},
                                         {0, 0, 0, 0}};
    while ((c = getopt_long(argc, argv, "n:r:", opts, NULL)) != -1) {
        switch (c) {
        case 'n': n = atoi(optarg); break;
        case 'r': reps = atoi(optarg); break;
        case 'c': child = optarg; break;
        case 'C': choose = 1; break;
        default: fprintf(stderr, "usage: blas_core [-n size] [-r reps] [--choose]\n"); return 2;
        }
    }
    if (n < 16 || n > 8192 || reps < 1) {
        fprintf(stderr, "blas_core: -n 16..8192, -r >= 1\n");
        return 2;
    }
    if (child) {
        const char *core = openblas_get_corename();
        if (strcasecmp(core, child) != 0) {
            printf("%-18s %-16s %9s   the BLAS does not know it (ran %s)\n", "child, coretype", child, "-", core);
            return 0;
        }
        measure_here("child, coretype", n, reps);
        return 0;
    }

    cb_blas_state s;
    if (choose) cb_blas_choose(&s, argv); /* returns where it did not re-execute */
    cb_cpu_features f;
    cb_cpu_features_read(&f);
    char feats[256], model[160] = "?";
    cb_cpu_features_text(&f, feats, sizeof feats);
    FILE *cpuinfo = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (cpuinfo && fgets(line, sizeof line, cpuinfo))
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            snprintf(model, sizeof model, "%.150s", v ? v + 2 : line);
            model[strcspn(model, "\n")] = 0;
            break;
        }
    if (cpuinfo) fclose(cpuinfo);
    double load[1] = {0};
    getloadavg(load, 1);
    printf("cpu: %s (%s family %d model %d), %ld cores online, load %.2f\n", model, f.vendor, f.family, f.model,
           sysconf(_SC_NPROCESSORS_ONLN), load[0]);
    printf("cpu features: %s\n", feats[0] ? feats : "no avx");
    printf("blas: %s, %d threads; OPENBLAS_CORETYPE=%s\n", openblas_get_config(), openblas_get_num_threads(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");
    printf("sgemm %dx%dx%d, best of %d\n\n", n, n, n, reps);
    printf("%-18s %-16s %9s   %s\n", "kernels from", "core", "GFLOP/s", "self-check");
    measure_here("as loaded", n, reps);

    /* every core this CPU runs, lowest first, each in a child of its own */
    static const char *const cores[] = {"Prescott", "Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake",
                                        "SapphireRapids"};
    int cpu = cb_cpu_level(&f);
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++) {
        if (cb_blas_core_level(cores[i]) > cpu) continue;
        pid_t pid = fork();
        if (pid == 0) {
            setenv("OPENBLAS_CORETYPE", cores[i], 1);
            char nbuf[16], rbuf[16];
            snprintf(nbuf, sizeof nbuf, "%d", n);
            snprintf(rbuf, sizeof rbuf, "%d", reps);
            execl("/proc/self/exe", argv[0], "-n", nbuf, "-r", rbuf, "--child", cores[i], (char *)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            printf("%-18s %-16s %9s   died (status %d)\n", "child, coretype", cores[i], "-", status);
        fflush(stdout);
    }

    /* what caramba's tools decide here (without re-executing again) */
    cb_blas_choose(&s, NULL);
    char desc[512], note[512];
    cb_blas_describe(&s, desc, sizeof desc);
    cb_blas_note(&s, note, sizeof note);
    printf("\ncaramba: %s%s%s\n", desc, s.would[0] ? "; the tools re-execute under " : "", s.would);
    if (note[0]) printf("caramba: %s\n", note);
    return 0;
}
