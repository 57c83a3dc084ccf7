/* dataset_json.h: what a token dataset file holds, as the JSON document cb-data info prints. */
#ifndef CB_DATA_DATASET_JSON_H
#define CB_DATA_DATASET_JSON_H

#include <jansson.h>
#include "data/dataset.h"

/* {"cb_version", "kind": "dataset_info", "file", "format": "npy"|"tokens", "dtype",
 *  "n_tokens", "max_token" (null when empty)}; a new reference. */
json_t *cb_dataset_describe(const cb_dataset *ds);

#endif
