/* report.c: report.json (kind "report"): what the experiment was (the plan, its hash, the
 * git revision, the machine), what ran and how long it took, and the summary (the
 * comparison of the models, training, verification, sample texts), with every input file
 * and its sha256, so each number can be traced to the file it came from. */
#include "artifacts/artifacts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "core/json_doc.h"
#include "core/sha256.h"
#include "bench/results_json.h"

static const char *str(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* the first line of a command's output, or "" */
static int command_line(const char *cmd, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    if (!fgets(buf, (int)cap, p)) buf[0] = 0;
    int any = buf[0] != 0;
    char rest[256];
    while (fgets(rest, sizeof rest, p)) any = 1;
    int st = pclose(p);
    buf[strcspn(buf, "\r\n")] = 0;
    return st == 0 ? any : -1;
}

json_t *cb_artifacts_git_revision(const char *dir) {
    char q[4300], cmd[4500], rev[128], dirty[256];
    size_t at = 0;
    q[at++] = '\'';
    for (const char *p = dir; *p && at < sizeof q - 6; p++) { /* ' inside '...': '\'' */
        if (*p == '\'') {
            memcpy(q + at, "'\\''", 4);
            at += 4;
        } else {
            q[at++] = *p;
        }
    }
    q[at++] = '\'';
    q[at] = 0;
    snprintf(cmd, sizeof cmd, "git -C %s rev-parse HEAD 2>/dev/null", q);
    if (command_line(cmd, rev, sizeof rev) <= 0) return json_null();
    snprintf(cmd, sizeof cmd, "git -C %s status --porcelain --untracked-files=no 2>/dev/null", q);
    int d = command_line(cmd, dirty, sizeof dirty);
    return json_pack("{s:s, s:o}", "revision", rev, "dirty", d < 0 ? json_null() : json_boolean(d > 0));
}

/* seconds between two ISO 8601 UTC times "YYYY-MM-DDTHH:MM:SSZ"; NaN when unreadable */
static double iso_seconds(const char *a, const char *b) {
    struct tm t[2];
    const char *s[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        memset(&t[k], 0, sizeof t[k]);
        if (!s[k] || sscanf(s[k], "%d-%d-%dT%d:%d:%d", &t[k].tm_year, &t[k].tm_mon, &t[k].tm_mday, &t[k].tm_hour,
                            &t[k].tm_min, &t[k].tm_sec) != 6)
            return NAN;
        t[k].tm_year -= 1900;
        t[k].tm_mon -= 1;
    }
    return difftime(timegm(&t[1]), timegm(&t[0]));
}

static json_t *training_summary(const json_t *t) {
    const json_t *rows = json_object_get(t, "rows"), *rj = json_object_get(t, "run_json");
    const json_t *last = json_array_get(rows, json_array_size(rows) - 1);
    json_t *o = json_pack("{s:s, s:s}", "run", str(t, "run"), "path", str(t, "path"));
    json_object_set(o, "step", json_object_get(last, "step"));
    json_object_set(o, "loss", json_object_get(last, "loss"));
    json_object_set(o, "tokens", json_object_get(last, "tokens"));
    double tok_s = 0;
    int n = 0;
    const json_t *vl = NULL;
    size_t i;
    json_t *r;
    json_array_foreach(rows, i, r) {
        if (json_is_number(json_object_get(r, "tok_s"))) {
            tok_s += json_number_value(json_object_get(r, "tok_s"));
            n++;
        }
        if (json_is_number(json_object_get(r, "val_loss"))) vl = json_object_get(r, "val_loss");
    }
    if (vl) {
        json_object_set(o, "val_loss", (json_t *)vl);
        json_object_set_new(o, "val_ppl", json_real(exp(json_number_value(vl))));
    }
    if (n) json_object_set_new(o, "mean_tokens_per_s", json_real(tok_s / n));
    if (json_is_object(rj)) {
        static const char *const KEYS[] = {"group", "status", "plan_sha256", "seed", "steps", "params", "data", "init"};
        for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++)
            if (json_object_get(rj, KEYS[k])) json_object_set(o, KEYS[k], json_object_get(rj, KEYS[k]));
        double w = iso_seconds(str(rj, "started"), str(rj, "updated"));
        if (isfinite(w)) json_object_set_new(o, "wall_s", json_real(w));
    }
    return o;
}

json_t *cb_artifacts_report(const cb_artifacts_input *in, const json_t *compare, const json_t *models,
                            const json_t *plots, const cb_report_meta *meta) {
    json_t *doc = cb_doc_new("report");
    json_object_set_new(doc, "name", json_string(meta->name));
    json_object_set_new(doc, "created", json_string(meta->created));
    if (meta->plan) {
        json_t *man = json_object();
        static const char *const KEYS[] = {"name", "source", "notes"};
        for (int k = 0; k < 3; k++)
            if (json_object_get(meta->plan, KEYS[k])) json_object_set(man, KEYS[k], json_object_get(meta->plan, KEYS[k]));
        if (meta->group) json_object_set_new(man, "group", json_string(meta->group));
        json_object_set(man, "plan", (json_t *)meta->plan);
        json_object_set_new(doc, "manifest", man);
        char sha[65];
        if (cb_bench_plan_sha256(meta->plan, sha) == 0) json_object_set_new(doc, "plan_sha256", json_string(sha));
    } else {
        json_object_set_new(doc, "manifest", json_null());
    }
    /* the plan hashes and machines the results name */
    json_t *hashes = json_array(), *machines = json_array(), *counts = json_object(), *timings = json_array();
    size_t i;
    json_t *r;
    double bench_s = 0;
    json_array_foreach(in->bench, i, r) {
        const char *h = str(r, "plan_sha256");
        int seen = 0;
        for (size_t k = 0; h && k < json_array_size(hashes); k++) seen |= strcmp(json_string_value(json_array_get(hashes, k)), h) == 0;
        if (h && !seen) json_array_append_new(hashes, json_string(h));
        const json_t *m = json_object_get(r, "machine");
        seen = 0;
        for (size_t k = 0; m && k < json_array_size(machines); k++) seen |= json_equal(json_array_get(machines, k), (json_t *)m);
        if (m && !seen) json_array_append(machines, (json_t *)m);
        const char *type = str(r, "type");
        char key[160];
        snprintf(key, sizeof key, "%s%s", type ? type : "?", json_object_get(r, "skipped") ? " (skipped)" : "");
        json_object_set_new(counts, key, json_integer(json_integer_value(json_object_get(counts, key)) + 1));
        /* timings: seconds per benchmark and model */
        const char *id = str(r, "benchmark"), *model = str(r, "model");
        double s = json_number_value(json_object_get(r, "elapsed_s"));
        bench_s += s;
        json_t *slot = NULL;
        size_t k;
        json_t *t;
        json_array_foreach(timings, k, t) {
            if (id && model && strcmp(str(t, "benchmark"), id) == 0 && strcmp(str(t, "model"), model) == 0) slot = t;
        }
        if (!slot && id && model) {
            slot = json_pack("{s:s, s:s, s:s, s:i, s:f}", "benchmark", id, "type", type ? type : "?", "model", model,
                             "measurements", 0, "seconds", 0.0);
            json_array_append_new(timings, slot);
        }
        if (slot) {
            json_object_set_new(slot, "measurements", json_integer(json_integer_value(json_object_get(slot, "measurements")) + 1));
            json_object_set_new(slot, "seconds", json_real(json_number_value(json_object_get(slot, "seconds")) + s));
        }
    }
    json_object_set_new(doc, "results_plan_sha256", hashes);
    if (json_array_size(machines) == 1) json_object_set(doc, "machine", json_array_get(machines, 0));
    else json_object_set(doc, "machine", json_array_size(machines) ? machines : json_null());
    json_object_set_new(doc, "machines_seen", json_integer((json_int_t)json_array_size(machines)));
    json_decref(machines);
    char cwd[4096];
    json_object_set_new(doc, "git", cb_artifacts_git_revision(getcwd(cwd, sizeof cwd) ? cwd : "."));
    json_t *training = json_array();
    double train_s = 0;
    json_array_foreach(in->training, i, r) {
        json_t *t = training_summary(r);
        if (json_is_number(json_object_get(t, "wall_s"))) train_s += json_number_value(json_object_get(t, "wall_s"));
        json_array_append_new(training, t);
    }
    json_object_set_new(doc, "timings", json_pack("{s:o, s:f, s:f, s:f}", "benchmarks", timings, "benchmark_seconds",
                                                  bench_s, "training_seconds", train_s, "artifacts_seconds", meta->wall_s));
    json_t *samples = json_array();
    json_array_foreach(in->bench, i, r) {
        const char *text = str(json_object_get(r, "values"), "text");
        if (!text || !str(r, "type") || strcmp(str(r, "type"), "generation") != 0) continue;
        json_array_append_new(samples, json_pack("{s:s?, s:s?, s:s}", "model", str(r, "model"), "prompt",
                                                 str(json_object_get(r, "params"), "prompt"), "text", text));
    }
    json_t *verify = json_array();
    json_array_foreach(in->verify, i, r) json_array_append(verify, json_object_get(r, "doc"));
    json_object_set_new(doc, "summary",
                        json_pack("{s:O, s:s?, s:O, s:o, s:o, s:o, s:o}", "models", models, "reference",
                                  cb_artifacts_reference(models), "comparison", compare, "training", training, "verify",
                                  verify, "samples", samples, "measurements", counts));
    json_object_set(doc, "plots", (json_t *)plots);
    json_object_set(doc, "inputs", in->files);
    return doc;
}
