/* memory_info.c: the CPU backend's memory: the host's RAM. free is what a process may take
 * now without pushing others into swap: MemAvailable of /proc/meminfo (the kernel's own
 * estimate, reclaimable page cache included), lowered to the room under a cgroup v2
 * memory.max when the process runs in a container that sets one (MemAvailable there is the
 * host's, not the container's). total: MemTotal, or the cgroup's limit when lower. */
#include "backend/cpu/cpu.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* "Key: N kB" of /proc/meminfo in bytes; 0 when absent */
static double meminfo(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%lf", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

/* a cgroup v2 file holding one number of bytes ("max": no limit); 0 when absent */
static double cgroup_bytes(const char *name) {
    char path[128], text[64];
    snprintf(path, sizeof path, "/sys/fs/cgroup/%s", name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    double v = 0;
    if (fgets(text, sizeof text, f) && strncmp(text, "max", 3) != 0) sscanf(text, "%lf", &v);
    fclose(f);
    return v;
}

int cb_cpu_memory_info(cb_backend *be, size_t *free_bytes, size_t *total_bytes, cb_error *e) {
    (void)be;
    double avail = meminfo("MemAvailable"), total = meminfo("MemTotal");
    if (total <= 0) { /* no /proc: what sysconf knows (free pages only, page cache not counted) */
        long page = sysconf(_SC_PAGESIZE), phys = sysconf(_SC_PHYS_PAGES), av = sysconf(_SC_AVPHYS_PAGES);
        if (page <= 0 || phys <= 0 || av < 0)
            return cb_fail(e, CB_E_RUNTIME, "", "the host's memory is unknown (no /proc/meminfo, no sysconf pages)");
        total = (double)page * (double)phys;
        avail = (double)page * (double)av;
    }
    double limit = cgroup_bytes("memory.max");
    if (limit > 0 && limit < total) {
        double used = cgroup_bytes("memory.current"), room = limit > used ? limit - used : 0;
        total = limit;
        if (room < avail) avail = room;
    }
    *free_bytes = (size_t)avail;
    *total_bytes = (size_t)total;
    return CB_OK;
}
