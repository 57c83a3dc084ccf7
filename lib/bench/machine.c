/* machine.c: what the machine is (see machine.h), read from /proc, cpuid and the BLAS. */
#include "bench/machine.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "backend/cpu/blas.h"
#include "backend/cpu/parallel.h"
#include "core/json_doc.h"

static void trim(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    size_t k = strspn(s, " \t");
    if (k) memmove(s, s + k, strlen(s + k) + 1);
}

/* The value of the first "key: value" line of path whose key is key, into buf; 0 when none. */
static int proc_field(const char *path, const char *key, char *buf, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[512];
    int found = 0;
    size_t klen = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0) continue;
        char *colon = strchr(line + klen, ':');
        if (!colon || strspn(line + klen, " \t") != (size_t)(colon - line - (long)klen)) continue;
        snprintf(buf, (size_t)cap, "%s", colon + 1);
        trim(buf);
        found = 1;
    }
    fclose(f);
    return found;
}

void cb_machine_cpu_model(char *buf, int cap) {
    if (!proc_field("/proc/cpuinfo", "model name", buf, cap)) snprintf(buf, (size_t)cap, "unknown");
}

int cb_machine_nvidia_version(const char *line, char *buf, int cap) {
    const char *p = strchr(line, ':');
    for (p = p ? p + 1 : line; *p;) {
        p += strspn(p, " \t");
        int n = (int)strcspn(p, " \t\r\n");
        if (n > 2 && isdigit((unsigned char)p[0]) && strspn(p, "0123456789.") == (size_t)n && memchr(p, '.', (size_t)n)) {
            snprintf(buf, (size_t)cap, "%.*s", n, p);
            return 1;
        }
        if (n == 0) break;
        p += n;
    }
    return 0;
}

static int nvidia_driver(char *buf, int cap) {
    FILE *f = fopen("/proc/driver/nvidia/version", "r");
    if (!f) return 0;
    char line[512];
    int found = fgets(line, sizeof line, f) && cb_machine_nvidia_version(line, buf, cap);
    fclose(f);
    return found;
}

static json_t *nvidia_gpus(void) {
    DIR *d = opendir("/proc/driver/nvidia/gpus");
    if (!d) return NULL;
    json_t *gpus = json_array();
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char path[512], model[256];
        snprintf(path, sizeof path, "/proc/driver/nvidia/gpus/%s/information", de->d_name);
        if (proc_field(path, "Model", model, sizeof model))
            json_array_append_new(gpus, json_pack("{s:s, s:s}", "name", model, "bus", de->d_name));
    }
    closedir(d);
    if (json_array_size(gpus) == 0) {
        json_decref(gpus);
        return NULL;
    }
    return gpus;
}

json_t *cb_machine_describe(const char *device) {
    json_t *m = json_object();
    char buf[512];
    cb_machine_cpu_model(buf, sizeof buf);
    json_object_set_new(m, "cpu", json_string(buf));
    /* what cb_cli_start settled on: OPENBLAS_CORETYPE and the marker are in the environment
     * by now, so no core is checked again (argv NULL never re-executes) */
    cb_blas_state blas;
    cb_blas_choose(&blas, NULL);
    cb_cpu_features_text(&blas.cpu, buf, sizeof buf);
    json_object_set_new(m, "cpu_features", json_string(buf));
    json_object_set_new(m, "logical_cpus", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(m, "threads", json_integer(cb_parallel_threads()));
    cb_blas_describe(&blas, buf, sizeof buf);
    json_object_set_new(m, "blas", json_string(buf));
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.machine);
        json_object_set_new(m, "os", json_string(buf));
    }
    json_object_set_new(m, "device", json_string(device ? device : "cpu"));
    json_object_set_new(m, "caramba", json_string(CB_VERSION));
    json_t *gpus = nvidia_gpus();
    if (gpus) {
        json_object_set_new(m, "gpus", gpus);
        if (nvidia_driver(buf, sizeof buf)) json_object_set_new(m, "driver", json_string(buf));
    }
    return m;
}
