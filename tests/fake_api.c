/* fake_api.c: a small real HTTP/1.1 server on 127.0.0.1 that plays scripted answers, so
 * the tests of cb-paper and cb-review talk to "the model", "arXiv" and "Semantic Scholar"
 * over a real socket without any network. Test-only; built by tests/cli/paper_lib.sh.
 *
 *   fake_api SCRIPT PORTFILE LOGDIR [MAX_REQUESTS [MAX_SECONDS]]
 *
 * It listens on an ephemeral port of 127.0.0.1, writes that port to PORTFILE, and answers
 * one connection at a time. SCRIPT has one rule a line ('#' starts a comment):
 *
 *   METHOD PATH STATUS BODY [delay=MS] [retry-after=S] [type=MIME] [repeat]
 *
 * A request takes the first rule not yet used whose METHOD matches and whose PATH is a
 * prefix of the request's path (query string included); a rule marked `repeat` is never
 * used up. STATUS is an HTTP status, or `close` to close the connection without a word.
 * BODY is a file beside SCRIPT, or `-` for none. A request that no rule answers gets 404.
 * LOGDIR receives log.txt, one line a request ("N METHOD PATH STATUS auth=ok|none|other"),
 * and body_N.txt, the body of request N. The key itself is never logged: auth=ok says the
 * Authorization header was "Bearer $FAKE_API_EXPECT_KEY", auth=s2key that the x-api-key
 * header was $FAKE_API_EXPECT_S2_KEY (Semantic Scholar's).
 * It stops by itself after MAX_REQUESTS requests (default 64) or MAX_SECONDS (default 60). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RULES 128
#define MAX_REQ (1 << 22)

typedef struct rule {
    char method[16], path[512], status[16], body[512], type[64];
    int delay_ms, retry_after, repeat, used;
} rule;

static rule rules[MAX_RULES];
static int n_rules;
static char script_dir[1024];

static void die(const char *msg) {
    fprintf(stderr, "fake_api: %s: %s\n", msg, strerror(errno));
    exit(2);
}

static void load_script(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    snprintf(script_dir, sizeof script_dir, "%s", path);
    char *slash = strrchr(script_dir, '/');
    if (slash) slash[1] = 0; else snprintf(script_dir, sizeof script_dir, "./");
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        rule r = {.type = "application/json"};
        char opt[4][128] = {{0}};
        int n = sscanf(line, "%15s %511s %15s %511s %127s %127s %127s %127s", r.method, r.path, r.status, r.body,
                       opt[0], opt[1], opt[2], opt[3]);
        if (n <= 0) continue;
        if (n < 4) { fprintf(stderr, "fake_api: bad rule: %s", line); exit(2); }
        for (int i = 0; i < n - 4; i++) {
            if (strncmp(opt[i], "delay=", 6) == 0) r.delay_ms = atoi(opt[i] + 6);
            else if (strncmp(opt[i], "retry-after=", 12) == 0) r.retry_after = atoi(opt[i] + 12);
            else if (strncmp(opt[i], "type=", 5) == 0) snprintf(r.type, sizeof r.type, "%s", opt[i] + 5);
            else if (strcmp(opt[i], "repeat") == 0) r.repeat = 1;
            else { fprintf(stderr, "fake_api: bad option %s\n", opt[i]); exit(2); }
        }
        if (n_rules == MAX_RULES) { fprintf(stderr, "fake_api: too many rules\n"); exit(2); }
        rules[n_rules++] = r;
    }
    fclose(f);
}

static rule *match(const char *method, const char *path) {
    for (int i = 0; i < n_rules; i++) {
        rule *r = &rules[i];
        if (r->used || strcmp(r->method, method) != 0) continue;
        if (strncmp(r->path, path, strlen(r->path)) != 0) continue;
        if (!r->repeat) r->used = 1;
        return r;
    }
    return NULL;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return; /* the client gave up (a timeout test): nothing to do */
        p += w;
        n -= (size_t)w;
    }
}

static char *read_body_file(const char *name, size_t *len) {
    *len = 0;
    if (strcmp(name, "-") == 0) return calloc(1, 1);
    char path[2048];
    snprintf(path, sizeof path, "%s%s", script_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) die(path);
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static const char *reason(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* Read one request: headers, then Content-Length bytes of body. 0 on success. */
static int read_request(int fd, char *buf, size_t cap, size_t *head_len, size_t *total) {
    size_t n = 0;
    char *end = NULL;
    while (!end) {
        if (n + 1 >= cap) return -1;
        ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
        if (r <= 0) return -1;
        n += (size_t)r;
        buf[n] = 0;
        end = strstr(buf, "\r\n\r\n");
    }
    *head_len = (size_t)(end - buf) + 4;
    size_t content_length = 0;
    for (char *p = buf; p && p < end; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL)
        if (strncasecmp(p, "Content-Length:", 15) == 0) content_length = strtoul(p + 15, NULL, 10);
    if (*head_len + content_length >= cap) return -1;
    while (n < *head_len + content_length) {
        ssize_t r = recv(fd, buf + n, *head_len + content_length - n, 0);
        if (r <= 0) return -1;
        n += (size_t)r;
    }
    buf[n] = 0;
    *total = n;
    return 0;
}

static const char *auth_state(const char *head, size_t head_len) {
    const char *want = getenv("FAKE_API_EXPECT_KEY"), *want_s2 = getenv("FAKE_API_EXPECT_S2_KEY");
    for (const char *p = head; p && p < head + head_len; p = strstr(p, "\r\n"), p = p ? p + 2 : NULL) {
        if (strncasecmp(p, "x-api-key:", 10) == 0) { /* Semantic Scholar's key header */
            const char *v = p + 10;
            while (*v == ' ') v++;
            const char *eol = strstr(v, "\r\n");
            size_t len = eol ? (size_t)(eol - v) : strlen(v);
            return want_s2 && len == strlen(want_s2) && strncmp(v, want_s2, len) == 0 ? "s2key" : "other";
        }
        if (strncasecmp(p, "Authorization:", 14) != 0) continue;
        const char *v = p + 14;
        while (*v == ' ') v++;
        const char *eol = strstr(v, "\r\n");
        size_t len = eol ? (size_t)(eol - v) : strlen(v);
        if (want && strncmp(v, "Bearer ", 7) == 0 && len == 7 + strlen(want) && strncmp(v + 7, want, len - 7) == 0)
            return "ok";
        return "other";
    }
    return "none";
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: fake_api SCRIPT PORTFILE LOGDIR [MAX_REQUESTS [MAX_SECONDS]]\n");
        return 2;
    }
    load_script(argv[1]);
    int max_requests = argc > 4 ? atoi(argv[4]) : 64, max_seconds = argc > 5 ? atoi(argv[5]) : 60;
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)max_seconds); /* stops by itself, whatever happens */

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0) die("socket");
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) != 0) die("bind");
    if (listen(ls, 16) != 0) die("listen");
    socklen_t alen = sizeof a;
    if (getsockname(ls, (struct sockaddr *)&a, &alen) != 0) die("getsockname");

    char tmp[2048], log_path[2048];
    snprintf(tmp, sizeof tmp, "%s.tmp", argv[2]);
    FILE *pf = fopen(tmp, "w");
    if (!pf) die(tmp);
    fprintf(pf, "%d\n", ntohs(a.sin_port));
    fclose(pf);
    if (rename(tmp, argv[2]) != 0) die(argv[2]);
    snprintf(log_path, sizeof log_path, "%s/log.txt", argv[3]);
    FILE *log = fopen(log_path, "a");
    if (!log) die(log_path);

    char *buf = malloc(MAX_REQ);
    if (!buf) die("malloc");
    for (int n = 1; n <= max_requests; n++) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0) { if (errno == EINTR) continue; die("accept"); }
        size_t head_len = 0, total = 0;
        if (read_request(fd, buf, MAX_REQ, &head_len, &total) != 0) { close(fd); n--; continue; }
        char method[16] = "", path[1024] = "";
        sscanf(buf, "%15s %1023s", method, path);
        char body_path[2048];
        snprintf(body_path, sizeof body_path, "%s/body_%d.txt", argv[3], n);
        FILE *bf = fopen(body_path, "wb");
        if (bf) { fwrite(buf + head_len, 1, total - head_len, bf); fclose(bf); }

        rule *r = match(method, path);
        const char *status = r ? r->status : "404";
        fprintf(log, "%d %s %s %s auth=%s\n", n, method, path, status, auth_state(buf, head_len));
        fflush(log);
        if (r && r->delay_ms > 0) {
            struct timespec ts = {r->delay_ms / 1000, (long)(r->delay_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (r && strcmp(r->status, "close") == 0) { close(fd); continue; }
        size_t body_len = 0;
        char *body = r ? read_body_file(r->body, &body_len) : strdup("{\"error\": \"no rule\"}");
        if (!r) body_len = strlen(body);
        int code = atoi(status);
        char head[1024];
        int hn = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n",
                          code, reason(code), r ? r->type : "application/json", body_len);
        if (r && r->retry_after > 0) hn += snprintf(head + hn, sizeof head - (size_t)hn, "Retry-After: %d\r\n", r->retry_after);
        hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
        send_all(fd, head, (size_t)hn);
        send_all(fd, body, body_len);
        free(body);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    free(buf);
    fclose(log);
    close(ls);
    return 0;
}
