/* test_metrics.c: metrics.jsonl lines, continuing the files of a resumed run (JSON lines
 * and HDF5 cut back to the checkpoint's step), and the live plot. */
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/atomic_file.h"
#include "core/atomic_dir.h"
#include "model/model.h"
#include "test.h"
#include "train/config.h"
#include "train/metrics.h"
#include "unit/train/train_util.h"
#ifdef CB_HAVE_HDF5
#include <hdf5.h>
#endif

static cb_metric_row row(long step, double val) {
    cb_metric_row r = {.step = step, .loss = 4.0f - 0.125f * (float)step, .lr = 1e-3, .tok_s = 1234.56,
                       .grad_norm = 0.5f, .tokens = (uint64_t)step * 64, .val_loss = val, .val_ppl = exp(val)};
    return r;
}

TEST(jsonl_line) {
    char buf[512];
    cb_metric_row r = {.step = 7, .loss = (double)3.14159274f, .lr = 3e-4, .tok_s = 2048.26, .grad_norm = (double)0.1f,
                       .tokens = 896, .val_loss = NAN, .val_ppl = NAN};
    EXPECT_EQ_INT(0, cb_metrics_format(buf, sizeof buf, &r));
    EXPECT_EQ_STR("{\"step\":7,\"loss\":3.14159274,\"lr\":0.0003,\"grad_norm\":0.100000001,\"tok_s\":2048.3,\"tokens\":896}", buf);
    /* the printed loss reads back as the same float */
    EXPECT((float)strtod(strstr(buf, "loss\":") + 6, NULL) == 3.14159274f);
    r.val_loss = 2.5;
    r.val_ppl = exp(2.5);
    r.grad_norm = INFINITY;
    EXPECT_EQ_INT(0, cb_metrics_format(buf, sizeof buf, &r));
    EXPECT(strstr(buf, "\"grad_norm\":null") != NULL);
    EXPECT(strstr(buf, ",\"val_loss\":2.5,\"val_ppl\":12.182494}") != NULL);
    EXPECT_EQ_INT(-1, cb_metrics_format(buf, 20, &r));
}

static int count_lines(const char *path, long *last_step) {
    char *text;
    size_t len;
    cb_error e;
    if (cb_read_file(path, 0, &text, &len, &e) != CB_OK) return -1;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    char *last = len > 1 ? text + len - 2 : text;
    while (last > text && last[-1] != '\n') last--;
    *last_step = strtol(last + 8, NULL, 10); /* {"step":N */
    free(text);
    return n;
}

TEST(jsonl_resume_cuts_back) {
    char dir[512], path[600];
    tu_tempdir(dir, sizeof dir, "jsonl");
    cb_metrics m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, 0, -1, "t", &e));
    for (long s = 1; s <= 6; s++) {
        cb_metric_row r = row(s, NAN);
        EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r, &e));
    }
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    /* a kill in the middle of a line leaves it unfinished */
    FILE *f = fopen(path, "a");
    fputs("{\"step\":7,\"lo", f);
    fclose(f);
    long last = 0;
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, 0, 4, "t", &e)); /* resumed at step 4 */
    cb_metric_row r5 = row(5, NAN);
    EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r5, &e));
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    /* steps 1 to 4, then 5: lines past step 4 and the cut line are gone */
    EXPECT_EQ_INT(5, count_lines(path, &last));
    EXPECT_EQ_INT(5, last);
    /* a fresh run replaces the file */
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, 0, -1, "t", &e));
    EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r5, &e));
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    EXPECT_EQ_INT(1, count_lines(path, &last));
    cb_remove_tree(dir);
}

TEST(hdf5_datasets_resume) {
#ifndef CB_HAVE_HDF5
    SKIP("this build has no HDF5");
#else
    char dir[512], path[600];
    tu_tempdir(dir, sizeof dir, "h5");
    cb_metrics m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, CB_INSTR_HDF5, -1, "t", &e));
    for (long s = 1; s <= 5; s++) {
        cb_metric_row r = row(s, s == 4 ? 3.5 : NAN);
        EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r, &e));
    }
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, CB_INSTR_HDF5, 3, "t", &e)); /* resumed at step 3 */
    for (long s = 4; s <= 6; s++) {
        cb_metric_row r = row(s, NAN);
        EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r, &e));
    }
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    snprintf(path, sizeof path, "%s/metrics.h5", dir);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    EXPECT(file >= 0);
    int64_t steps[16];
    double loss[16], val[16];
    hid_t s = H5Dopen2(file, "step", H5P_DEFAULT), l = H5Dopen2(file, "loss", H5P_DEFAULT),
          v = H5Dopen2(file, "val_loss", H5P_DEFAULT);
    hid_t space = H5Dget_space(s);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, NULL);
    H5Sclose(space);
    EXPECT_EQ_INT(6, n);
    if (n == 6) {
        H5Dread(s, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps);
        H5Dread(l, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, loss);
        H5Dread(v, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, val);
        for (int i = 0; i < 6; i++) {
            EXPECT_EQ_INT(i + 1, steps[i]);
            EXPECT_NEAR(4.0 - 0.125 * (i + 1), loss[i], 1e-7);
        }
        EXPECT(isnan(val[3])); /* the val_loss of the first run's step 4 was cut with it */
    }
    H5Dclose(s);
    H5Dclose(l);
    H5Dclose(v);
    H5Fclose(file);
    cb_remove_tree(dir);
#endif
}

TEST(live_plot_png) {
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) SKIP("gnuplot is not installed");
    char dir[512], path[600];
    tu_tempdir(dir, sizeof dir, "live");
    cb_metrics m;
    cb_error e;
    EXPECT_EQ_INT(CB_OK, cb_metrics_open(&m, dir, CB_INSTR_LIVE, -1, "group/run 'quoted'", &e));
    for (long s = 1; s <= 4; s++) {
        cb_metric_row r = row(s, s == 4 ? 3.6 : NAN);
        EXPECT_EQ_INT(CB_OK, cb_metrics_log(&m, &r, &e));
    }
    EXPECT_EQ_INT(0, m.plot.failures);
    EXPECT_EQ_INT(CB_OK, cb_metrics_close(&m, &e));
    snprintf(path, sizeof path, "%s/loss.png", dir);
    FILE *f = fopen(path, "rb");
    unsigned char sig[8] = {0};
    EXPECT(f != NULL);
    if (f) {
        EXPECT_EQ_INT(8, fread(sig, 1, 8, f));
        fclose(f);
    }
    EXPECT(memcmp(sig, "\x89PNG\r\n\x1a\n", 8) == 0);
    cb_remove_tree(dir);
}
