/* test_bad_manifests.c: every hostile manifest of tests/bad/manifest/ fails to compile
 * (parse, lower, validate: what `cb compile` runs in one process) with the status and the
 * first error line its .expect file gives (line 1: status; line 2: an extended regex),
 * the line built as cb compile prints it ("STAGE: where: message"). In one process, so the
 * sanitizer pass covers the library over all of them cheaply; tests/cli/bad_manifests.sh
 * checks the tool itself (status, one line, nothing on stdout). */
#include "test.h"

#include <dirent.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "core/diag.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "plan/validate.h"

/* the first line cb compile prints for path and its exit status; 0: it compiled */
static int compile_line(const char *path, char *line, size_t n) {
    cb_error e;
    cb_error_clear(&e);
    cb_diags d;
    cb_diags_init(&d);
    json_t *manifest = NULL, *lowered = NULL, *plan = NULL;
    char msg[2048];
    int status = 0;
    if (cb_yaml_parse_file(path, &manifest, &e) != CB_OK) {
        snprintf(line, n, "cb-parse: %s", cb_error_line(&e, msg, sizeof msg));
        status = e.code ? e.code : CB_E_RUNTIME;
    } else {
        const char *stage = "cb-lower";
        int rc = cb_lower(manifest, &lowered, &d);
        if (rc == CB_OK) {
            stage = "cb-validate";
            rc = cb_validate(lowered, &plan, &d);
        }
        if (rc != CB_OK && d.n > 0) {
            if (!d.items[0].where[0]) snprintf(d.items[0].where, sizeof d.items[0].where, "%s", path);
            snprintf(line, n, "%s: %s", stage, cb_error_line(&d.items[0], msg, sizeof msg));
        } else if (rc != CB_OK) {
            snprintf(line, n, "%s: (no error line)", stage);
        }
        if (rc != CB_OK) status = cb_diags_status(&d) ? cb_diags_status(&d) : CB_E_INVALID;
    }
    for (char *p = line; status && *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    json_decref(manifest);
    json_decref(lowered);
    json_decref(plan);
    cb_diags_free(&d);
    return status;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

TEST(every_hostile_manifest_fails_with_its_status_and_line) {
    /* from the tree's root, so the paths in the lines are the ones bad_manifests.sh gives cb */
    const char *root = getenv("CB_ROOT"), *dir = "tests/bad/manifest";
    if (root && root[0] && chdir(root) != 0) {
        FAILF("cannot enter CB_ROOT %s", root);
        return;
    }
    DIR *dp = opendir(dir);
    if (!dp) {
        FAILF("cannot open %s (run from the tree, or set CB_ROOT)", dir);
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (!ends_with(de->d_name, ".yml")) continue;
        char yml[4400], exp[4400], want_status[32] = "", want_regex[1024] = "", line[4096] = "";
        snprintf(yml, sizeof yml, "%s/%s", dir, de->d_name);
        snprintf(exp, sizeof exp, "%.*s.expect", (int)(strlen(yml) - 4), yml);
        FILE *f = fopen(exp, "r");
        if (!f || !fgets(want_status, sizeof want_status, f) || !fgets(want_regex, sizeof want_regex, f)) {
            FAILF("%s: no status and regex in %s", de->d_name, exp);
            if (f) fclose(f);
            continue;
        }
        fclose(f);
        want_regex[strcspn(want_regex, "\n")] = 0;
        n++;
        int status = compile_line(yml, line, sizeof line);
        if (status != atoi(want_status)) {
            FAILF("%s: status %d, expected %d (%s)", de->d_name, status, atoi(want_status), line);
            continue;
        }
        regex_t re;
        if (regcomp(&re, want_regex, REG_EXTENDED | REG_NOSUB) != 0) {
            FAILF("%s: the regex of %s does not compile", de->d_name, exp);
            continue;
        }
        if (regexec(&re, line, 0, NULL, 0) != 0) FAILF("%s: '%s' does not match '%s'", de->d_name, line, want_regex);
        regfree(&re);
    }
    closedir(dp);
    if (n < 1) FAILF("no hostile manifests in %s", dir);
}
