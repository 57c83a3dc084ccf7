/* model_dir.c: opening model directories, caramba's or Hugging Face's. */
#include "io/model_dir.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "io/hf_llama.h"

int cb_model_open_dir(cb_model *m, const char *dir, cb_error *e) {
    if (!cb_hf_is_dir(dir)) return cb_model_load_dir(m, dir, e);
    json_t *plan;
    CB_TRY(cb_hf_plan_from_config(dir, &plan, e));
    int rc = cb_model_init_empty(m, plan, e);
    json_decref(plan);
    if (rc == CB_OK && (rc = cb_hf_load(m, dir, e)) != CB_OK) cb_model_free(m);
    return rc;
}

int cb_model_load_weights_dir(cb_model *m, const char *dir, cb_error *e) {
    if (cb_hf_is_dir(dir)) return cb_hf_load(m, dir, e);
    char path[4200];
    struct stat st;
    if (stat(dir, &st) != 0) return cb_fail(e, CB_E_IO, dir, "cannot open: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return cb_fail(e, CB_E_INVALID, dir, "not a model directory (no model.safetensors, no config.json)");
    return cb_model_load_weights(m, path, e);
}
