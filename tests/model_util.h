/* model_util.h: test helpers: compile a manifest text to a plan through the real
 * stages (cb-parse, cb-lower, cb-validate as library calls). Header-only, test-only. */
#ifndef CB_TEST_MODEL_UTIL_H
#define CB_TEST_MODEL_UTIL_H

#include <stdio.h>
#include <string.h>
#include "core/diag.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

/* The plan of a manifest given as text; NULL (and the first error printed) on failure. */
static json_t *test_compile(const char *yaml, const char *name) {
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    cb_error e;
    cb_diags d;
    cb_diags_init(&d);
    if (cb_yaml_parse(yaml, strlen(yaml), name, &manifest, &e) != 0) {
        fprintf(stderr, "  %s: %s\n", e.where, e.msg);
        return NULL;
    }
    if (cb_lower(manifest, &lowered, &d) == 0 && cb_validate(lowered, &plan, &d) == 0) {
    } else {
        for (int i = 0; i < d.n; i++) fprintf(stderr, "  %s: %s\n", d.items[i].where, d.items[i].msg);
        plan = NULL;
    }
    cb_diags_free(&d);
    json_decref(manifest);
    json_decref(lowered);
    return plan;
}

#endif
