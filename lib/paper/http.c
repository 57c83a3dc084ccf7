/* http.c: libcurl requests with timeouts, bounded retries and backoff (see http.h). */
#include "paper/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void cb_http_opts_default(cb_http_opts *o) {
    memset(o, 0, sizeof *o);
    o->timeout_ms = 60000;
    o->max_retries = 3;
    o->backoff_ms = 1000;
    o->max_wait_ms = 60000;
    o->what = "service";
}

void cb_redact(char *buf, size_t cap, const char *secret) {
    if (!buf || !secret || !secret[0]) return;
    size_t n = strlen(secret);
    static const char mark[] = "[redacted]";
    char *p;
    while ((p = strstr(buf, secret))) {
        if (n >= sizeof mark - 1) {
            memcpy(p, mark, sizeof mark - 1);
            memmove(p + sizeof mark - 1, p + n, strlen(p + n) + 1);
        } else {
            memset(p, '*', n);
        }
    }
    (void)cap;
}

static void sleep_ms(long ms) {
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {}
}

#ifdef CB_HAVE_CURL
#include <curl/curl.h>

typedef struct buf {
    char *p;
    size_t n, cap;
    int too_big;
} buf;

#define CB_HTTP_MAX_BODY (64u << 20)

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    buf *b = ud;
    size_t n = size * nmemb;
    if (b->n + n + 1 > CB_HTTP_MAX_BODY) { b->too_big = 1; return 0; }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

/* ud: the long that receives Retry-After in ms (seconds form; an HTTP date is ignored) */
static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud) {
    size_t n = size * nmemb;
    if (n > 12 && strncasecmp(ptr, "Retry-After:", 12) == 0) {
        char *end;
        long s = strtol(ptr + 12, &end, 10);
        if (end != ptr + 12 && s >= 0) *(long *)ud = s * 1000;
    }
    return n;
}

static int curl_ready;

int cb_http_request(const char *url, const char *body, const cb_http_opts *o, char **resp, size_t *resp_len,
                    cb_error *e) {
    *resp = NULL;
    if (resp_len) *resp_len = 0;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) return cb_fail(e, CB_E_RUNTIME, "", "libcurl failed to start");
        curl_ready = 1;
    }
    char auth[1024] = "";
    if (o->bearer_key) {
        if (strlen(o->bearer_key) > 900) return cb_fail(e, CB_E_USAGE, "", "the API key is longer than 900 characters");
        if (o->key_header) snprintf(auth, sizeof auth, "%s: %s", o->key_header, o->bearer_key);
        else snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->bearer_key);
    }
    long wait = o->backoff_ms;
    for (int attempt = 0;; attempt++) {
        CURL *c = curl_easy_init();
        if (!c) return cb_fail(e, CB_E_RUNTIME, "", "libcurl: no handle");
        struct curl_slist *hdr = NULL;
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        hdr = curl_slist_append(hdr, "Expect:");
        if (auth[0]) hdr = curl_slist_append(hdr, auth);
        buf b = {0};
        char errbuf[CURL_ERROR_SIZE] = "";
        long retry_after_ms = -1;
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms < 10000 ? o->timeout_ms : 10000L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &retry_after_ms);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "caramba/0.1 (cb-paper)");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
        if (body) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        }
        CURLcode rc = curl_easy_perform(c);
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(hdr);
        curl_easy_cleanup(c);

        int retryable = 0;
        char why[512];
        int code = CB_E_RUNTIME;
        if (rc == CURLE_OK && status >= 200 && status < 300) {
            if (!b.p) b.p = calloc(1, 1);
            if (!b.p) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
            *resp = b.p;
            if (resp_len) *resp_len = b.n;
            return CB_OK;
        }
        if (rc == CURLE_OK) {
            /* the service answered with an error status: a short piece of its answer helps */
            char snippet[200] = "";
            if (b.p) {
                snprintf(snippet, sizeof snippet, "%s", b.p);
                for (char *s = snippet; *s; s++) if (*s == '\n' || *s == '\r' || *s == '\t') *s = ' ';
            }
            snprintf(why, sizeof why, "HTTP %ld%s%s", status, snippet[0] ? ": " : "", snippet);
            retryable = status == 429 || status >= 500;
            if (!retryable) code = CB_E_INVALID;
        } else if (rc == CURLE_OPERATION_TIMEDOUT) {
            snprintf(why, sizeof why, "no answer within %ld ms", o->timeout_ms);
        } else if (rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_PARTIAL_FILE ||
                   rc == CURLE_SEND_ERROR) {
            snprintf(why, sizeof why, "connection closed without an answer (%s)", errbuf[0] ? errbuf : curl_easy_strerror(rc));
            retryable = 1;
        } else if (b.too_big) {
            snprintf(why, sizeof why, "answer larger than %u bytes", CB_HTTP_MAX_BODY);
            code = CB_E_INVALID;
        } else {
            snprintf(why, sizeof why, "unreachable (%s)", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        }
        free(b.p);
        if (!retryable || attempt >= o->max_retries) {
            cb_fail(e, code, url, "%s: %s%s", o->what, why,
                    retryable ? " (retries used up)" : "");
            cb_redact(e->msg, sizeof e->msg, o->bearer_key);
            cb_redact(e->where, sizeof e->where, o->bearer_key);
            return code;
        }
        long ms = retry_after_ms >= 0 ? retry_after_ms : wait;
        if (ms > o->max_wait_ms) {
            cb_fail(e, CB_E_RUNTIME, url, "%s: %s, and asked to wait %ld s, longer than the %ld s allowed", o->what,
                    why, ms / 1000, o->max_wait_ms / 1000);
            cb_redact(e->msg, sizeof e->msg, o->bearer_key);
            return CB_E_RUNTIME;
        }
        if (o->log) {
            cb_redact(why, sizeof why, o->bearer_key);
            fprintf(o->log, "%s: %s: %s; retrying in %ld ms (%d of %d)\n", o->log_tool ? o->log_tool : "cb", o->what, why, ms, attempt + 1, o->max_retries);
        }
        sleep_ms(ms);
        wait *= 2;
    }
}

char *cb_url_escape(const char *s) {
    char *q = curl_easy_escape(NULL, s, 0);
    if (!q) return NULL;
    char *r = strdup(q);
    curl_free(q);
    return r;
}

#else

int cb_http_request(const char *url, const char *body, const cb_http_opts *o, char **resp, size_t *resp_len,
                    cb_error *e) {
    (void)body; (void)o; (void)resp_len;
    *resp = NULL;
    (void)sleep_ms;
    return cb_fail(e, CB_E_RUNTIME, url, "this build has no libcurl: online drafting is left out");
}

char *cb_url_escape(const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    char *r = malloc(strlen(s) * 3 + 1), *w = r;
    if (!r) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p))
            *w++ = (char)*p;
        else { *w++ = '%'; *w++ = hex[*p >> 4]; *w++ = hex[*p & 15]; }
    }
    *w = 0;
    return r;
}
#endif
