/* endpoint.h: the command-line settings of a chat endpoint that cb-paper and cb-review
 * share (--base-url, --model, --temperature, --api-key-env, --max-steps, --timeout,
 * --retries, --backoff-ms), read once and laid over a manifest section's settings; and
 * where a manifest's paper folder and result files are. */
#ifndef CB_PAPER_ENDPOINT_H
#define CB_PAPER_ENDPOINT_H

#include <getopt.h>
#include <jansson.h>
#include <stddef.h>
#include "core/error.h"
#include "paper/chat.h"

/* getopt_long codes of the endpoint options: above any a tool uses for its own */
enum { CB_EP_BASE = 512, CB_EP_MODEL, CB_EP_TEMP, CB_EP_KEYENV, CB_EP_STEPS, CB_EP_TIMEOUT, CB_EP_RETRIES,
       CB_EP_BACKOFF };

#define CB_ENDPOINT_LONGOPTS                                                                              \
    {"base-url", required_argument, NULL, CB_EP_BASE}, {"model", required_argument, NULL, CB_EP_MODEL},  \
        {"temperature", required_argument, NULL, CB_EP_TEMP},                                             \
        {"api-key-env", required_argument, NULL, CB_EP_KEYENV},                                           \
        {"max-steps", required_argument, NULL, CB_EP_STEPS},                                              \
        {"timeout", required_argument, NULL, CB_EP_TIMEOUT},                                              \
        {"retries", required_argument, NULL, CB_EP_RETRIES},                                              \
        {"backoff-ms", required_argument, NULL, CB_EP_BACKOFF}

/* What the command line set; unset: NULL or negative. */
typedef struct cb_endpoint_opts {
    const char *base_url, *model, *key_env;
    double temperature, timeout_s;
    int max_steps, retries;
    long backoff_ms;
} cb_endpoint_opts;

void cb_endpoint_opts_init(cb_endpoint_opts *o);

/* Take getopt's code c with its argument if it is an endpoint option: 1 when taken, 0
 * when c is not one, -1 (e says which option wants what) when arg is out of range. */
int cb_endpoint_opt(cb_endpoint_opts *o, int c, const char *arg, cb_error *e);

/* The client for a manifest section (paper: or review:) with the command line laid over
 * it: --api-key-env names the key's variable in section; the rest overrides what
 * cb_llm_from_section read. Retries and waits are logged to stderr under tool. */
void cb_endpoint_apply(const cb_endpoint_opts *o, json_t *section, cb_llm *l, const char *tool);

/* The paper folder (paper_opt, else paper.output_dir, else artifacts/NAME/paper) and the
 * result files' folder (results_opt, else the paper folder's parent). */
void cb_paper_dirs(const json_t *plan, const json_t *paper, const char *paper_opt, const char *results_opt,
                   char *paper_dir, size_t paper_size, char *results_dir, size_t results_size);

#endif
