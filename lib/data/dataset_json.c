/* dataset_json.c: a dataset's description for cb-data info. */
#include "data/dataset_json.h"

#include "core/json_doc.h"

json_t *cb_dataset_describe(const cb_dataset *ds) {
    json_t *doc = cb_doc_new("dataset_info");
    json_object_set_new(doc, "file", json_string(ds->path));
    json_object_set_new(doc, "format", json_string(ds->map_base ? "npy" : "tokens"));
    json_object_set_new(doc, "dtype", json_string(cb_dataset_dtype_name(ds->dtype)));
    json_object_set_new(doc, "n_tokens", json_integer((json_int_t)ds->n_tokens));
    json_object_set_new(doc, "max_token", ds->max_token >= 0 ? json_integer((json_int_t)ds->max_token) : json_null());
    return doc;
}
