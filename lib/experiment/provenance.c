/* provenance.c: the provenance document of a run folder (see provenance.h). */
#include "experiment/provenance.h"

#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>
#include "bench/machine.h"
#include "core/json_doc.h"
#include "infer/cache_policy.h"

json_t *cb_provenance_machine(void) {
    json_t *m = json_object();
    struct utsname u;
    if (uname(&u) == 0) {
        char line[5 * 65 + 8];
        snprintf(line, sizeof line, "%s %s %s %s", u.sysname, u.nodename, u.release, u.machine);
        json_object_set_new(m, "uname", json_string(line));
    }
    char cpu[256];
    cb_machine_cpu_model(cpu, sizeof cpu);
    json_object_set_new(m, "cpu_model", json_string(cpu));
    json_object_set_new(m, "threads", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    return m;
}

/* `git -C dir rev-parse HEAD` and whether the tree has changes, or NULL outside a git tree */
static json_t *git_revision(const char *dir) {
    char cmd[4400], rev[128] = "";
    snprintf(cmd, sizeof cmd, "git -C '%s' rev-parse HEAD 2>/dev/null", dir);
    if (strchr(dir, '\'')) return NULL;
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    if (!fgets(rev, sizeof rev, p)) rev[0] = 0;
    pclose(p);
    rev[strcspn(rev, "\n")] = 0;
    if (!rev[0]) return NULL;
    json_t *g = json_object();
    json_object_set_new(g, "revision", json_string(rev));
    snprintf(cmd, sizeof cmd, "git -C '%s' status --porcelain --untracked-files=no 2>/dev/null", dir);
    p = popen(cmd, "r");
    if (p) {
        char line[8];
        int dirty = fgets(line, sizeof line, p) != NULL;
        pclose(p);
        json_object_set_new(g, "dirty", json_boolean(dirty));
    }
    return g;
}

json_t *cb_provenance_new(int argc, char *const *argv, const json_t *overrides, const char *work_dir,
                          const char *tools_dir, const char *version_text) {
    json_t *doc = cb_doc_new("provenance");
    json_t *cl = json_array();
    for (int i = 0; i < argc; i++) json_array_append_new(cl, json_string(argv[i]));
    json_object_set_new(doc, "command_line", cl);
    json_object_set_new(doc, "overrides", overrides ? json_deep_copy(overrides) : json_object());
    json_object_set_new(doc, "work_dir", json_string(work_dir));
    json_t *git = git_revision(tools_dir);
    json_object_set_new(doc, "caramba_git", git ? git : json_null());
    git = git_revision(work_dir);
    json_object_set_new(doc, "work_dir_git", git ? git : json_null());
    json_object_set_new(doc, "machine", cb_provenance_machine());
    json_object_set_new(doc, "tools_version", json_string(version_text ? version_text : ""));
    return doc;
}
