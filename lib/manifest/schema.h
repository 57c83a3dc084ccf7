/* schema.h: the manifest schema check of cb-validate (types, ranges, enums, required
 * and unknown fields, per-type applicability) and the defaults it knows, from one table. */
#ifndef CB_MANIFEST_SCHEMA_H
#define CB_MANIFEST_SCHEMA_H

#include <jansson.h>
#include "core/diag.h"

/* Check the "manifest" member of a lowered document (kind "lowered", or "manifest")
 * and record EVERY problem in d as CB_E_INVALID, where = "file:line:col" (from "@loc"),
 * msg = "PATH: message", e.g.
 *   "model.topology.layers[2].n_head: unknown field n_head (did you mean n_heads?)".
 * The same message at the same location is recorded once (defaults merged into many
 * runs). Shape rules (widths, head counts dividing) are not checked here.
 * Returns the number of errors this call found (those past the list's limit included). */
int cb_schema_check(const json_t *lowered_doc, cb_diags *d);

/* Check one object against a named schema (see cb_schema_fill_defaults for the names),
 * reporting paths under path_prefix (e.g. "groups[0].runs[1].generate"). A NULL or
 * empty prefix reports bare field names. Returns the number of errors recorded. */
int cb_schema_check_node(const json_t *node, const char *schema_name, const char *path_prefix,
                         cb_diags *d);

/* Add every absent field that has a default to node, in place: the table's constant
 * defaults and the derived ones (AttentionLayer n_kv_heads = n_heads, mode = standard
 * when n_kv_heads == n_heads else gqa, v_dim = d_model for mode decoupled). Fields that
 * do not apply to the node (sem_dim without mode decoupled) are not added. Object-valued
 * fields that are present (rope_scaling, citations, attention, ...) get their own
 * defaults; lists of child nodes (topology "layers", group "runs", eval "cases") are left
 * alone: call it per node. Run the check first; on fields of a wrong type it leaves the
 * dependent defaults out.
 * schema_name is one of:
 *   a node type: "AttentionLayer" "RMSNormLayer" "LayerNormLayer" "SwiGLULayer" "MLPLayer"
 *     "LinearLayer" "DropoutLayer" "RoPE" "StackedTopology" "SequentialTopology"
 *     "ResidualTopology" "NestedTopology" "ParallelTopology" "BranchingTopology"
 *     "CyclicTopology" "RecurrentTopology";
 *   "node" (picks the node type from node's "type"), "model", "embedder" (by "type"),
 *   "head", "rope_scaling", "group", "run", "train", "model_ref", "generate",
 *   "verify" (by "type"), "benchmark", "benchmark_config" (by "type"), "paper",
 *   "citations", "review", "research".
 * Returns CB_OK, or CB_E_INVALID when the name is unknown, node is not an object or a
 * "type" it needs is missing or unknown. */
int cb_schema_fill_defaults(json_t *node, const char *schema_name);

/* 1 when type names a layer (AttentionLayer ... RoPE), resp. a topology
 * (StackedTopology ... RecurrentTopology); 0 otherwise. */
int cb_schema_is_layer_type(const char *type);
int cb_schema_is_topology_type(const char *type);

#endif
