/* endpoint.c: the endpoint options cb-paper and cb-review share (endpoint.h). */
#include "paper/endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wformat-truncation"

void cb_endpoint_opts_init(cb_endpoint_opts *o) {
    memset(o, 0, sizeof *o);
    o->temperature = o->timeout_s = -1;
    o->max_steps = o->retries = -1;
    o->backoff_ms = -1;
}

/* -1 after cb_fail filled e */
static int bad(cb_error *e, int code) {
    (void)e;
    (void)code;
    return -1;
}

int cb_endpoint_opt(cb_endpoint_opts *o, int c, const char *arg, cb_error *e) {
    char *end;
    switch (c) {
    case CB_EP_BASE: o->base_url = arg; return 1;
    case CB_EP_MODEL: o->model = arg; return 1;
    case CB_EP_KEYENV: o->key_env = arg; return 1;
    case CB_EP_TEMP:
        o->temperature = strtod(arg, &end);
        if (*end || !(o->temperature >= 0 && o->temperature <= 2))
            return bad(e, cb_fail(e, CB_E_USAGE, "--temperature", "a number in [0, 2], got '%s'", arg));
        return 1;
    case CB_EP_TIMEOUT:
        o->timeout_s = strtod(arg, &end);
        if (*end || !(o->timeout_s > 0)) return bad(e, cb_fail(e, CB_E_USAGE, "--timeout", "seconds > 0, got '%s'", arg));
        return 1;
    case CB_EP_STEPS:
        o->max_steps = (int)strtol(arg, &end, 10);
        if (*end || o->max_steps < 1) return bad(e, cb_fail(e, CB_E_USAGE, "--max-steps", "an integer >= 1, got '%s'", arg));
        return 1;
    case CB_EP_RETRIES:
        o->retries = (int)strtol(arg, &end, 10);
        if (*end || o->retries < 0 || o->retries > 20) return bad(e, cb_fail(e, CB_E_USAGE, "--retries", "0 to 20, got '%s'", arg));
        return 1;
    case CB_EP_BACKOFF:
        o->backoff_ms = strtol(arg, &end, 10);
        if (*end || o->backoff_ms < 0) return bad(e, cb_fail(e, CB_E_USAGE, "--backoff-ms", "an integer >= 0, got '%s'", arg));
        return 1;
    default: return 0;
    }
}

void cb_endpoint_apply(const cb_endpoint_opts *o, json_t *section, cb_llm *l, const char *tool) {
    if (o->key_env) json_object_set_new(section, "api_key_env", json_string(o->key_env));
    cb_llm_from_section(l, section);
    if (o->base_url) snprintf(l->base_url, sizeof l->base_url, "%s", o->base_url);
    if (o->model) snprintf(l->model, sizeof l->model, "%s", o->model);
    if (o->temperature >= 0) l->temperature = o->temperature;
    if (o->max_steps > 0) l->max_steps = o->max_steps;
    if (o->timeout_s > 0) l->http.timeout_ms = (long)(o->timeout_s * 1000);
    if (o->retries >= 0) l->http.max_retries = o->retries;
    if (o->backoff_ms >= 0) l->http.backoff_ms = o->backoff_ms;
    l->http.log = stderr; /* retries are worth a line even with -q: they cost time */
    l->http.log_tool = tool;
}

void cb_paper_dirs(const json_t *plan, const json_t *paper, const char *paper_opt, const char *results_opt,
                   char *paper_dir, size_t paper_size, char *results_dir, size_t results_size) {
    const char *cfg_out = json_string_value(json_object_get(paper, "output_dir"));
    if (paper_opt) snprintf(paper_dir, paper_size, "%s", paper_opt);
    else if (cfg_out) snprintf(paper_dir, paper_size, "%s", cfg_out);
    else snprintf(paper_dir, paper_size, "artifacts/%s/paper", json_string_value(json_object_get(plan, "name")));
    if (results_opt) {
        snprintf(results_dir, results_size, "%s", results_opt);
        return;
    }
    snprintf(results_dir, results_size, "%s", paper_dir);
    char *slash = strrchr(results_dir, '/');
    if (slash) *slash = 0;
    else snprintf(results_dir, results_size, ".");
}
