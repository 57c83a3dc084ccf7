/* test_blas.c: the BLAS kernel decision as a table of cases (what OpenBLAS reports, what the
 * CPU offers, what the environment says), the self-check products, and the self-check of a
 * core in a child process, including a simulated wrong product and an unknown core. */
#include "test.h"

#include <stdlib.h>

#include "backend/cpu/blas.h"

static cb_cpu_features cpu_of(int level) {
    cb_cpu_features f;
    memset(&f, 0, sizeof f);
    f.avx = level >= CB_BLAS_LEVEL_AVX;
    f.avx2 = f.fma = level >= CB_BLAS_LEVEL_AVX2;
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512cd = level >= CB_BLAS_LEVEL_AVX512;
    f.avx512_bf16 = level >= CB_BLAS_LEVEL_AVX512BF16;
    f.amx_tile = f.amx_bf16 = level >= CB_BLAS_LEVEL_AMX;
    return f;
}

TEST(blas_levels) {
    EXPECT_EQ_INT(CB_BLAS_LEVEL_SSE, cb_blas_core_level("Prescott"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_SSE, cb_blas_core_level("Nehalem"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_SSE, cb_blas_core_level("NEOVERSEN1"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_SSE, cb_blas_core_level(NULL));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX, cb_blas_core_level("Sandybridge"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX2, cb_blas_core_level("haswell"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX2, cb_blas_core_level("Zen"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX512, cb_blas_core_level("SkylakeX"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX512BF16, cb_blas_core_level("Cooperlake"));
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AMX, cb_blas_core_level("SapphireRapids"));
    for (int level = CB_BLAS_LEVEL_SSE; level <= CB_BLAS_LEVEL_AMX; level++) {
        cb_cpu_features f = cpu_of(level);
        EXPECT_EQ_INT(level, cb_cpu_level(&f));
    }
    /* AVX-512F without BW/VL (Knights Landing) is not SkylakeX's level */
    cb_cpu_features knl = cpu_of(CB_BLAS_LEVEL_AVX2);
    knl.avx512f = knl.avx512cd = true;
    EXPECT_EQ_INT(CB_BLAS_LEVEL_AVX2, cb_cpu_level(&knl));
}

TEST(blas_decide_table) {
    static const struct {
        const char *name, *running;
        int cpu_level;
        const char *user, *marker;
        cb_blas_chooser chooser;
        bool below;
        const char *tries; /* space-separated, best first */
    } cases[] = {
        /* the machine: Sapphire Rapids (AMX), Debian's OpenBLAS took Prescott */
        {"spr_fallback", "Prescott", CB_BLAS_LEVEL_AMX, NULL, NULL, CB_BLAS_BY_BLAS, true,
         "SapphireRapids Cooperlake SkylakeX Haswell Sandybridge"},
        {"skx_fallback", "Prescott", CB_BLAS_LEVEL_AVX512, NULL, NULL, CB_BLAS_BY_BLAS, true,
         "SkylakeX Haswell Sandybridge"},
        {"avx2_fallback_nehalem", "Nehalem", CB_BLAS_LEVEL_AVX2, "", NULL, CB_BLAS_BY_BLAS, true, "Haswell Sandybridge"},
        {"zen4_took_zen", "Zen", CB_BLAS_LEVEL_AVX512BF16, NULL, NULL, CB_BLAS_BY_BLAS, true, "Cooperlake SkylakeX"},
        {"right_core", "SkylakeX", CB_BLAS_LEVEL_AVX512, NULL, NULL, CB_BLAS_BY_BLAS, false, ""},
        {"above_cpu", "Haswell", CB_BLAS_LEVEL_AVX, NULL, NULL, CB_BLAS_BY_BLAS, false, ""},
        {"no_avx", "Prescott", CB_BLAS_LEVEL_SSE, NULL, NULL, CB_BLAS_BY_BLAS, false, ""},
        {"unknown_arch", "NEOVERSEN1", CB_BLAS_LEVEL_SSE, NULL, NULL, CB_BLAS_BY_BLAS, false, ""},
        /* the user's OPENBLAS_CORETYPE is respected: no tries, reported when below */
        {"user_below", "Haswell", CB_BLAS_LEVEL_AVX512BF16, "Haswell", NULL, CB_BLAS_BY_USER, true, ""},
        {"user_equal", "SkylakeX", CB_BLAS_LEVEL_AVX512, "SkylakeX", NULL, CB_BLAS_BY_USER, false, ""},
        {"user_prescott", "Prescott", CB_BLAS_LEVEL_AMX, "Prescott", NULL, CB_BLAS_BY_USER, true, ""},
        /* a marker that does not match the setting is the user's setting */
        {"user_changed_it", "Haswell", CB_BLAS_LEVEL_AVX512, "Haswell", "SkylakeX Prescott", CB_BLAS_BY_USER, true, ""},
        {"marker_prefix_only", "Sky", CB_BLAS_LEVEL_AVX512, "Sky", "SkylakeX Prescott", CB_BLAS_BY_USER, true, ""},
        /* after caramba's re-execution: no loop */
        {"caramba_chose", "SkylakeX", CB_BLAS_LEVEL_AMX, "SkylakeX", "SkylakeX Prescott", CB_BLAS_BY_CARAMBA, true, ""},
        {"caramba_chose_eq", "SkylakeX", CB_BLAS_LEVEL_AVX512, "SkylakeX", "SkylakeX Prescott", CB_BLAS_BY_CARAMBA,
         false, ""},
        /* a stale marker without the setting: the BLAS chose again */
        {"stale_marker", "Prescott", CB_BLAS_LEVEL_AVX2, NULL, "Haswell Prescott", CB_BLAS_BY_BLAS, true,
         "Haswell Sandybridge"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cb_cpu_features f = cpu_of(cases[i].cpu_level);
        cb_blas_decision d;
        cb_blas_decide(&d, cases[i].running, &f, cases[i].user, cases[i].marker);
        char tries[256] = "";
        for (int t = 0; t < d.n_tries; t++) {
            strcat(tries, t ? " " : "");
            strcat(tries, d.tries[t]);
        }
        if (d.chooser != cases[i].chooser || d.below != cases[i].below || strcmp(tries, cases[i].tries) != 0)
            FAILF("%s: expected chooser %d below %d tries \"%s\", got %d %d \"%s\"", cases[i].name, cases[i].chooser,
                  cases[i].below, cases[i].tries, d.chooser, d.below, tries);
    }
}

TEST(blas_selfcheck_products) {
    EXPECT_EQ_INT(0, cb_blas_selfcheck_products(false));
    EXPECT(cb_blas_selfcheck_products(true) != 0);
}

/* The real thing: children re-execute this test program under another OPENBLAS_CORETYPE. */
TEST(blas_check_core_in_child) {
    cb_cpu_features f;
    cb_cpu_features_read(&f);
    char why[128];
    /* Prescott (SSE3) runs on every x86-64 CPU */
    if (cb_cpu_level(&f) == CB_BLAS_LEVEL_SSE && !f.vendor[0]) SKIP("not an x86 CPU");
    if (cb_blas_check_core("Prescott", why, sizeof why) != 0) FAILF("Prescott: %s", why);
    /* a name OpenBLAS does not know: it runs another core, which the check sees */
    if (cb_blas_check_core("NoSuchCore", why, sizeof why) == 0) FAILF("NoSuchCore passed");
    else EXPECT_EQ_STR("the BLAS does not know this core", why);
    /* a build that computes wrong results under a core */
    setenv("CB_BLAS_TEST_WRONG", "Haswell,Prescott", 1);
    if (cb_blas_check_core("Prescott", why, sizeof why) == 0) FAILF("a wrong product passed");
    else EXPECT_EQ_STR("wrong results", why);
    unsetenv("CB_BLAS_TEST_WRONG");
    fprintf(stderr, "  self-check of Prescott in a child: passed; NoSuchCore and a wrong product: refused\n");
}

/* The fallback, simulated: the decision sees Prescott; the best candidate that passes is
 * where the process would go; with every candidate wrong, it stays and says why. */
TEST(blas_choose_simulated_fallback) {
    cb_cpu_features f;
    cb_cpu_features_read(&f);
    if (cb_cpu_level(&f) < CB_BLAS_LEVEL_AVX2) SKIP("this CPU has no AVX2: no fallback to simulate");
    char *user = getenv("OPENBLAS_CORETYPE") ? strdup(getenv("OPENBLAS_CORETYPE")) : NULL;
    unsetenv("OPENBLAS_CORETYPE"); /* in this process only, restored below */
    setenv("CB_BLAS_TEST_CORE", "Prescott", 1);
    cb_blas_state s;
    cb_blas_choose(&s, NULL);
    EXPECT_EQ_INT(CB_BLAS_BY_BLAS, s.chooser);
    EXPECT(s.below);
    EXPECT(s.would[0] != 0);
    EXPECT(cb_blas_core_level(s.would) > CB_BLAS_LEVEL_SSE);
    fprintf(stderr, "  simulated Prescott fallback: caramba would run %s (best for this CPU: %s)\n", s.would, s.best);

    setenv("CB_BLAS_TEST_WRONG", "*", 1);
    cb_blas_choose(&s, NULL);
    EXPECT(s.would[0] == 0);
    EXPECT(strstr(s.failed, "wrong results") != NULL);
    char note[512];
    cb_blas_note(&s, note, sizeof note);
    EXPECT(strstr(note, "staying there") != NULL);
    fprintf(stderr, "  every candidate wrong: %s\n", note);
    unsetenv("CB_BLAS_TEST_WRONG");
    unsetenv("CB_BLAS_TEST_CORE");
    if (user) {
        setenv("OPENBLAS_CORETYPE", user, 1);
        free(user);
    }
}
