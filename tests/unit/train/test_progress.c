/* test_progress.c: the progress display: plain lines at logged steps when not a terminal,
 * a bar redrawn in place on a terminal, nothing when quiet; notes on lines of their own. */
#include <stdlib.h>
#include "test.h"
#include "train/progress.h"

static char *run(int quiet, int tty) {
    static char buf[4096];
    memset(buf, 0, sizeof buf);
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cb_progress p;
    cb_progress_init(&p, f, quiet, tty, 10, 14);
    for (long s = 11; s <= 14; s++) {
        cb_progress_step(&p, s, 2.5, 1500.0, s % 2 == 0);
        if (s == 12) cb_progress_note(&p, "step %ld: val_loss %.4f", s, 2.25);
    }
    cb_progress_end(&p);
    fclose(f);
    return buf;
}

TEST(plain_lines) {
    const char *out = run(0, 0);
    EXPECT(strncmp(out, "step 12/14  loss 2.5000  1.5k tok/s  ETA ", 41) == 0);
    EXPECT(strstr(out, "\nstep 12: val_loss 2.2500\nstep 14/14  loss 2.5000  1.5k tok/s  ETA ") != NULL);
    EXPECT(strstr(out, "step 11/") == NULL && strstr(out, "step 13/") == NULL); /* only logged steps */
    EXPECT(strchr(out, '\r') == NULL);
}

TEST(terminal_bar) {
    const char *out = run(0, 1);
    EXPECT(strncmp(out, "\r\033[K[", 5) == 0);
    EXPECT(strstr(out, "] step 11/14  loss 2.5000  1.5k tok/s") != NULL);
    EXPECT(strstr(out, "\r\033[Kstep 12: val_loss 2.2500\n") != NULL); /* the bar erased for the note */
    EXPECT(strstr(out, "[########################] step 14/14") != NULL); /* the last step is always drawn */
    size_t n = strlen(out);
    EXPECT(n > 0 && out[n - 1] == '\n');
}

TEST(quiet) { EXPECT_EQ_STR("", run(1, 1)); }

TEST(durations) {
    char b[32];
    EXPECT_EQ_STR("59s", cb_progress_duration(b, sizeof b, 59.9));
    EXPECT_EQ_STR("3m07s", cb_progress_duration(b, sizeof b, 187));
    EXPECT_EQ_STR("2h05m", cb_progress_duration(b, sizeof b, 7500));
    EXPECT_EQ_STR("?", cb_progress_duration(b, sizeof b, -1));
}
