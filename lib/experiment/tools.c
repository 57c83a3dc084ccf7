/* tools.c: the tools beside `cb` and their versions (see tools.h). */
#include "experiment/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/sha256.h"

static const char *const names[CB_TOOL_COUNT] = {"cb", "cb-train", "cb-verify", "cb-bench", "cb-artifacts",
                                                 "cb-generate"};

const char *cb_tool_name(int tool) { return tool >= 0 && tool < CB_TOOL_COUNT ? names[tool] : "?"; }

int cb_tools_find(cb_tools *t, const char *dir, cb_error *e) {
    memset(t, 0, sizeof *t);
    if (dir) snprintf(t->dir, sizeof t->dir, "%s", dir);
    else {
        ssize_t n = readlink("/proc/self/exe", t->dir, sizeof t->dir - 1);
        if (n <= 0) return cb_fail(e, CB_E_USAGE, "/proc/self/exe", "cannot find this executable's folder");
        t->dir[n] = 0;
        char *slash = strrchr(t->dir, '/');
        if (slash) *slash = 0;
    }
    for (int i = 0; i < CB_TOOL_COUNT; i++) {
        snprintf(t->path[i], sizeof t->path[i], "%s/%s", t->dir, names[i]);
        if (access(t->path[i], X_OK) != 0)
            return cb_fail(e, CB_E_USAGE, t->path[i], "%s is not beside cb (build it with make)", names[i]);
        t->built[i] = -1;
    }
    return CB_OK;
}

/* Run the tool with one argument (or none), stdout and stderr into buf; the exit status. */
static int capture(const char *path, const char *arg, char *buf, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", 0);
        if (devnull >= 0) dup2(devnull, 0);
        /* the kernels line of a compute tool, said once per process tree, must not differ between calls */
        setenv("CB_BLAS_NOTED", "1", 1);
        execl(path, path, arg, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t got;
    while ((got = read(fds[0], buf + n, cap - 1 - n)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0 && (n += (size_t)got) >= cap - 1) break;
    buf[n] = 0;
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

const char *cb_tools_version(cb_tools *t, int tool) {
    if (!t->version[tool][0]) {
        char buf[8192];
        int rc = capture(t->path[tool], "--version", buf, sizeof buf);
        if (rc != 0) snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "\nexit %d", rc);
        cb_sha256_hex(buf, strlen(buf), t->version[tool]);
    }
    return t->version[tool];
}

int cb_tools_built(cb_tools *t, int tool) {
    if (t->built[tool] < 0) {
        char buf[4096];
        capture(t->path[tool], NULL, buf, sizeof buf);
        t->built[tool] = strstr(buf, "not in this build") == NULL;
    }
    return t->built[tool];
}
