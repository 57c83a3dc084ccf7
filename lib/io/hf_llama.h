/* hf_llama.h: Hugging Face Llama checkpoint directories (config.json, model.safetensors
 * or sharded model-0000N-of-0000M.safetensors with model.safetensors.index.json), read
 * onto a caramba plan and written from one. */
#ifndef CB_IO_HF_LLAMA_H
#define CB_IO_HF_LLAMA_H

#include <jansson.h>
#include "core/error.h"
#include "model/model.h"

/* The Hugging Face name of every parameter of a Llama-shaped model, in the order of
 * m->params (names[i] for params.items[i]); NULL for a tied head. The plan must be
 * embed(token) -> L x [RMSNorm, Attention(standard|gqa), +, RMSNorm, SwiGLU, +] ->
 * RMSNorm -> head; anything else is CB_E_INVALID naming what differs. Caller frees
 * with cb_hf_names_free. */
int cb_hf_names(const cb_model *m, char ***names, cb_error *e);
void cb_hf_names_free(char **names, int n);

/* A plan derived from dir/config.json (LlamaForCausalLM keys), through the same
 * lowering and validation as a manifest. */
int cb_hf_plan_from_config(const char *dir, json_t **plan, cb_error *e);

/* Fill m's weights from the checkpoint in dir (bf16, f16 or f32): every tensor present
 * with its shape, no unexpected tensor, a missing shard named. */
int cb_hf_load(cb_model *m, const char *dir, cb_error *e);

/* Write m as a Hugging Face Llama directory: config.json, generation_config.json and
 * model.safetensors (f32), atomically as a whole directory. */
int cb_hf_export(const cb_model *m, const char *dir, cb_error *e);

/* 1 when dir looks like a Hugging Face checkpoint (has config.json). */
int cb_hf_is_dir(const char *dir);

#endif
