/* test_main.c: runs every TEST registered in the linked test file. Optional argv[1]
 * runs only tests whose name contains it. Exit 1 if any failed. */
#include "test.h"

#include <stdlib.h>

#define CB_MAX_TESTS 512
static struct { const char *name; cb_test_fn fn; } tests[CB_MAX_TESTS];
static int n_tests;
int cb_test_failed, cb_test_skipped;
char cb_test_why[1024];

void cb_test_register(const char *name, cb_test_fn fn) {
    if (n_tests == CB_MAX_TESTS) {
        fprintf(stderr, "test_main: too many tests\n");
        exit(2);
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    n_tests++;
}

int main(int argc, char **argv) {
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int failures = 0;
    for (int i = 0; i < n_tests; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        cb_test_failed = cb_test_skipped = 0;
        cb_test_why[0] = '\0';
        tests[i].fn();
        if (cb_test_failed) {
            printf("not ok - %s.%s: %s\n", prog, tests[i].name, cb_test_why);
            failures++;
        } else if (cb_test_skipped) {
            printf("skip - %s.%s: %s\n", prog, tests[i].name, cb_test_why);
        } else {
            printf("ok - %s.%s\n", prog, tests[i].name);
        }
        fflush(stdout);
    }
    return failures ? 1 : 0;
}
