/* schema_defaults.c: defaults from the schema tables: the value a field takes where the
 * manifest leaves it out, filled into objects for the plan's normalised configs. */
#include <string.h>
#include "core/json_doc.h"
#include "manifest/schema_table.h"

static json_t *default_of(const json_t *obj, const cb_field *f) {
    if (f->def) return json_loads(f->def, JSON_DECODE_ANY, NULL);
    if (f->def_from) {
        json_t *v = json_object_get(obj, f->def_from);
        return v ? json_deep_copy(v) : NULL;
    }
    return NULL;
}

static int applies(json_t *obj, const cb_schema *s, const cb_field *f) {
    if (f->needs && !json_object_get(obj, f->needs)) return 0;
    if (!f->when_key) return 1;
    const json_t *w = json_object_get(obj, f->when_key);
    if (!json_is_string(w)) return 0; /* filled before these fields; absent or bad: leave out */
    for (int i = 0; f->when_in[i]; i++)
        if (strcmp(f->when_in[i], json_string_value(w)) == 0) return 1;
    return 0;
}

void cb_schema_fill_object(json_t *obj, const cb_schema *s, int recurse) {
    /* pass 0: fields in force everywhere; then derived defaults (AttentionLayer mode);
     * pass 1: fields that depend on another field's (now settled) value */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && s->fill) s->fill(obj);
        for (int i = 0; i < s->n_fields; i++) {
            const cb_field *f = &s->fields[i];
            int conditional = f->when_key || f->needs;
            if (conditional != pass) continue;
            json_t *v = json_object_get(obj, f->name);
            if (v) {
                if (!recurse) continue;
                if (f->t.kind == CB_K_OBJECT && json_is_object(v)) cb_schema_fill_object(v, f->t.schema, 1);
                else if (f->t.kind == CB_K_UNION && json_is_object(v)) cb_schema_fill_union(v, f->t.un, 1);
                continue;
            }
            if (!applies(obj, s, f)) continue;
            json_t *d = default_of(obj, f);
            if (d) json_object_set_new(obj, f->name, d);
        }
    }
}

int cb_schema_fill_union(json_t *obj, const cb_union *u, int recurse) {
    const json_t *tag = json_object_get(obj, u->tag);
    const cb_schema *s = json_is_string(tag) ? cb_schema_variant(u, json_string_value(tag)) : NULL;
    if (!s) return CB_E_INVALID;
    cb_schema_fill_object(obj, s, recurse);
    return CB_OK;
}

json_t *cb_schema_effective(const json_t *obj, const cb_schema *s, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (v) return json_incref(v);
    /* a shallow copy with this level's defaults: derived ones need their siblings */
    json_t *copy = json_copy((json_t *)obj);
    if (!copy) return NULL;
    cb_schema_fill_object(copy, s, 0);
    v = json_object_get(copy, key);
    if (v) json_incref(v);
    json_decref(copy);
    return v;
}
