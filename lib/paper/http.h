/* http.h: the one HTTP client of cb-paper and cb-review (libcurl): bounded time, retries
 * with backoff where they make sense (429 honouring Retry-After, 5xx, a connection closed
 * without an answer), and errors that never carry the key. */
#ifndef CB_PAPER_HTTP_H
#define CB_PAPER_HTTP_H

#include <stddef.h>
#include <stdio.h>
#include "core/error.h"

typedef struct cb_http_opts {
    long timeout_ms;       /* whole request, connection included */
    int max_retries;       /* further tries after the first, for retryable failures */
    long backoff_ms;       /* first wait; doubled each retry unless Retry-After says otherwise */
    long max_wait_ms;      /* no single wait longer than this (a Retry-After of an hour is refused) */
    const char *bearer_key;/* the key, when not NULL; never logged */
    const char *key_header;/* the key goes as "key_header: KEY"; NULL: "Authorization: Bearer KEY" */
    const char *what;      /* "chat endpoint", "arXiv": names the service in errors */
    FILE *log;             /* one line per retry ("retrying in N ms"); NULL: silent */
    const char *log_tool;  /* the tool named first on those lines, "cb-paper" */
} cb_http_opts;

void cb_http_opts_default(cb_http_opts *o);

/* GET (body NULL) or POST a JSON body to url. On CB_OK *resp is a malloc'd NUL-terminated
 * body of a 2xx answer. Errors: CB_E_RUNTIME (4) for an unreachable service, a timeout,
 * or retries used up; CB_E_INVALID (3) for an answer refused outright (4xx). */
int cb_http_request(const char *url, const char *body, const cb_http_opts *o, char **resp, size_t *resp_len,
                    cb_error *e);

/* Replace every occurrence of secret in buf (in place) by "[redacted]" where it fits,
 * else by asterisks. No-op for an empty or NULL secret. */
void cb_redact(char *buf, size_t cap, const char *secret);

/* URL-encode s into a malloc'd string. */
char *cb_url_escape(const char *s);

#endif
