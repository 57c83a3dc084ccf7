/* h5metrics.c: the HDF5 metrics file (see h5metrics.h); compiled to a CB_E_USAGE answer
 * when the build has no HDF5 (CB_HAVE_HDF5 unset). */
#include "train/h5metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const cb_h5_metric_names[CB_H5_N_METRICS] = {"step",   "loss",     "lr",      "tok_s",
                                                         "grad_norm", "tokens", "val_loss", "val_ppl"};

#ifdef CB_HAVE_HDF5
#include <hdf5.h>

#define CHUNK_ROWS 1024

static int h5_fail(cb_h5metrics *h, cb_error *e, const char *what) {
    int rc = cb_fail(e, CB_E_IO, h->path, "HDF5: %s", what);
    cb_h5metrics_close(h);
    return rc;
}

static hid_t type_of(int i) { return i == 0 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE; }
static hid_t file_type_of(int i) { return i == 0 ? H5T_STD_I64LE : H5T_IEEE_F64LE; }

int cb_h5metrics_open(cb_h5metrics *h, const char *path, long keep_step, cb_error *e) {
    memset(h, 0, sizeof *h);
    h->file = -1;
    for (int i = 0; i < CB_H5_N_METRICS; i++) h->sets[i] = -1;
    snprintf(h->path, sizeof h->path, "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported as one line, not a stack dump */
    int reopen = keep_step >= 0 && access(path, F_OK) == 0;
    if (reopen) {
        h->file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        if (h->file < 0) return h5_fail(h, e, "cannot open the metrics file of the run being resumed");
        for (int i = 0; i < CB_H5_N_METRICS; i++) {
            h->sets[i] = H5Dopen2(h->file, cb_h5_metric_names[i], H5P_DEFAULT);
            if (h->sets[i] < 0) return h5_fail(h, e, "a metric dataset is missing");
        }
        hid_t space = H5Dget_space(h->sets[0]);
        hsize_t n = 0;
        H5Sget_simple_extent_dims(space, &n, NULL);
        H5Sclose(space);
        int64_t *steps = n ? malloc(n * sizeof *steps) : NULL;
        if (n && (!steps || H5Dread(h->sets[0], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, steps) < 0)) {
            free(steps);
            return h5_fail(h, e, "cannot read the step dataset");
        }
        hsize_t keep = 0;
        while (keep < n && steps[keep] <= keep_step) keep++;
        free(steps);
        for (int i = 0; i < CB_H5_N_METRICS; i++)
            if (H5Dset_extent(h->sets[i], &keep) < 0) return h5_fail(h, e, "cannot cut a dataset back");
        h->rows = keep;
        return CB_OK;
    }
    h->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (h->file < 0) return h5_fail(h, e, "cannot create the file");
    hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = CHUNK_ROWS;
    for (int i = 0; i < CB_H5_N_METRICS; i++) {
        hid_t space = H5Screate_simple(1, &zero, &unlimited);
        hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(plist, 1, &chunk);
        h->sets[i] = H5Dcreate2(h->file, cb_h5_metric_names[i], file_type_of(i), space, H5P_DEFAULT, plist, H5P_DEFAULT);
        H5Pclose(plist);
        H5Sclose(space);
        if (h->sets[i] < 0) return h5_fail(h, e, "cannot create a dataset");
    }
    return CB_OK;
}

static int append_one(hid_t set, hsize_t row, hid_t mem_type, const void *value) {
    hsize_t size = row + 1, one = 1;
    if (H5Dset_extent(set, &size) < 0) return -1;
    hid_t space = H5Dget_space(set);
    hid_t mem = H5Screate_simple(1, &one, NULL);
    int bad = H5Sselect_hyperslab(space, H5S_SELECT_SET, &row, NULL, &one, NULL) < 0 ||
              H5Dwrite(set, mem_type, mem, space, H5P_DEFAULT, value) < 0;
    H5Sclose(mem);
    H5Sclose(space);
    return bad ? -1 : 0;
}

int cb_h5metrics_append(cb_h5metrics *h, int64_t step, const double values[CB_H5_N_METRICS - 1], cb_error *e) {
    int bad = append_one(h->sets[0], h->rows, type_of(0), &step) < 0;
    for (int i = 1; !bad && i < CB_H5_N_METRICS; i++) bad = append_one(h->sets[i], h->rows, type_of(i), &values[i - 1]) < 0;
    if (bad || H5Fflush(h->file, H5F_SCOPE_LOCAL) < 0) return cb_fail(e, CB_E_IO, h->path, "HDF5: write failed");
    h->rows++;
    return CB_OK;
}

void cb_h5metrics_close(cb_h5metrics *h) {
    for (int i = 0; i < CB_H5_N_METRICS; i++)
        if (h->sets[i] >= 0) H5Dclose(h->sets[i]), h->sets[i] = -1;
    if (h->file >= 0) H5Fclose(h->file);
    h->file = -1;
}

#else

int cb_h5metrics_open(cb_h5metrics *h, const char *path, long keep_step, cb_error *e) {
    memset(h, 0, sizeof *h);
    h->file = -1;
    (void)keep_step;
    return cb_fail(e, CB_E_USAGE, path, "train.instrument hdf5: this build has no HDF5 (install libhdf5-dev)");
}
int cb_h5metrics_append(cb_h5metrics *h, int64_t step, const double values[CB_H5_N_METRICS - 1], cb_error *e) {
    (void)step, (void)values;
    return cb_fail(e, CB_E_USAGE, h->path, "this build has no HDF5");
}
void cb_h5metrics_close(cb_h5metrics *h) { h->file = -1; }

#endif
