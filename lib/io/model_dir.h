/* model_dir.h: the one place a model directory is opened, whatever wrote it: a caramba
 * model directory (plan.json + model.safetensors: cb-build, cb-train's final/ and
 * checkpoints) or a Hugging Face Llama directory (config.json + weights). */
#ifndef CB_IO_MODEL_DIR_H
#define CB_IO_MODEL_DIR_H

#include "core/error.h"
#include "model/model.h"

/* The model of dir: its plan and weights. A Hugging Face directory (config.json) gets a
 * plan made from its config; any other is read by cb_model_load_dir. */
int cb_model_open_dir(cb_model *m, const char *dir, cb_error *e);

/* Fill the weights of m (whose plan is already set) from dir: a Hugging Face directory,
 * or one holding model.safetensors (a model directory or a training checkpoint); every
 * tensor must have the shape m's plan gives it. */
int cb_model_load_weights_dir(cb_model *m, const char *dir, cb_error *e);

#endif
