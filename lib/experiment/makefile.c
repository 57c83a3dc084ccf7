/* makefile.c: EXP/Makefile and EXP/stage.sh from a graph (see makefile.h). */
#include "experiment/makefile.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/atomic_file.h"

/* characters that mean nothing to sh or make: such a word goes unquoted, for a readable Makefile */
static int plain_word(const char *s) {
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./=:,+-@", *p)) return 0;
    return 1;
}

int cb_shell_quote(char *buf, size_t cap, size_t *len, const char *s, int for_make) {
    size_t n = *len;
    if (plain_word(s)) {
        size_t k = strlen(s);
        if (n + k + 1 > cap) return -1;
        memcpy(buf + n, s, k + 1);
        *len = n + k;
        return 0;
    }
#define PUT(c)                         \
    do {                               \
        if (n + 1 >= cap) return -1;   \
        buf[n++] = (c);                \
    } while (0)
    PUT('\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'') {
            PUT('\'');
            PUT('\\');
            PUT('\'');
            PUT('\'');
        } else if (*p == '$' && for_make) {
            PUT('$');
            PUT('$');
        } else PUT(*p);
    }
    PUT('\'');
    buf[n] = 0;
    *len = n;
    return 0;
#undef PUT
}

/* a growing string */
typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->n + k + 1) cap *= 2;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->oom = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_add(b, tmp);
}

static void sb_quote(sbuf *b, const char *s) {
    size_t cap = 4 * strlen(s) + 64, len = 0;
    char *q = malloc(cap);
    if (!q || cb_shell_quote(q, cap, &len, s, 0) != 0) b->oom = 1;
    else sb_add(b, q);
    free(q);
}

/* An argument holding newlines (a prompt written as a YAML block) cannot stand in a
 * one-line recipe: it is written as "$(printf 'a\nb')", its \, % and ' escaped. */
static void sb_arg(sbuf *b, const char *s) {
    if (!strchr(s, '\n')) {
        sb_quote(b, s);
        return;
    }
    sb_add(b, "\"$(printf '");
    for (const char *p = s; *p; p++) {
        if (*p == '\n') sb_add(b, "\\n");
        else if (*p == '\\') sb_add(b, "\\\\");
        else if (*p == '%') sb_add(b, "%%");
        else if (*p == '\'') sb_add(b, "'\\''");
        else sb_add(b, (char[]){*p, 0});
    }
    sb_add(b, "')\"");
}

char *cb_makefile_command(const cb_graph *g, int i, const cb_tools *t, cb_error *e) {
    const cb_stage *s = &g->stages[i];
    sbuf b = {0};
    char stamp[4400];
    snprintf(stamp, sizeof stamp, "%s/stamps/%s", g->exp_dir, s->id);
    sbuf cmd = {0};
    sb_quote(&cmd, t->path[s->tool]);
    for (int k = 0; k < s->n_args; k++) {
        sb_add(&cmd, " ");
        sb_arg(&cmd, s->args[k]);
    }
    if (cmd.oom) {
        free(cmd.p);
        free(b.p);
        cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        return NULL;
    }
    switch (s->kind) {
    case CB_STAGE_BUILD:
        /* the run folder keeps what made it: the exact manifest, the lowered plan, the plan
         * (with cb run's overrides), and how and where cb run was called */
        sb_add(&b, "mkdir -p ");
        sb_quote(&b, s->dir);
        sb_add(&b, " && for f in manifest.yml lowered.json plan.json provenance.json; do cp ");
        sb_quote(&b, g->exp_dir);
        sb_add(&b, "/$f ");
        sb_quote(&b, s->dir);
        sb_add(&b, "/.$f.tmp && mv -f ");
        sb_quote(&b, s->dir);
        sb_add(&b, "/.$f.tmp ");
        sb_quote(&b, s->dir);
        sb_add(&b, "/$f || exit 2; done");
        break;
    case CB_STAGE_TRAIN:
        if (s->fixed_resume) {
            sb_add(&b, "rm -rf ");
            sb_quote(&b, s->output);
            sb_add(&b, "; ");
        } else {
            /* the same inputs as the attempt that left checkpoints: continue from the last one;
             * other inputs: start again in a clean run folder */
            sb_add(&b, "if cmp -s ");
            sb_quote(&b, stamp);
            sb_add(&b, ".want ");
            sb_quote(&b, stamp);
            sb_add(&b, ".started && ck=$(ls -d ");
            sb_quote(&b, s->dir);
            sb_add(&b, "/step-* 2>/dev/null | sort | tail -n 1) && [ -n \"$ck\" ]; then "
                       "echo \"cb run: continuing from $ck\"; set -- --resume \"$ck\"; else rm -rf ");
            sb_quote(&b, s->dir);
            sb_add(&b, "/step-* ");
            sb_quote(&b, s->output);
            sb_add(&b, " ");
            sb_quote(&b, s->dir);
            sb_add(&b, "/metrics.jsonl ");
            sb_quote(&b, s->dir);
            sb_add(&b, "/run.json && cp ");
            sb_quote(&b, stamp);
            sb_add(&b, ".want ");
            sb_quote(&b, stamp);
            sb_add(&b, ".started || exit 2; set -- --force; fi; ");
        }
        sb_add(&b, cmd.p);
        if (!s->fixed_resume) {
            /* the plan, last, after the resume or force option */
            char *last = strrchr(b.p, ' ');
            if (last) {
                char plan[4400];
                snprintf(plan, sizeof plan, "%s", last);
                *last = 0;
                b.n = strlen(b.p);
                sb_add(&b, " \"$@\"");
                sb_add(&b, plan);
            }
        }
        /* cb-train stops at a checkpoint on SIGINT/SIGTERM with status 0: without a final
         * model the stage is not done */
        sb_add(&b, "; rc=$?; [ $rc -eq 0 ] || exit $rc; [ -d ");
        sb_quote(&b, s->output);
        sb_add(&b, " ] || { echo 'cb run: cb-train stopped before the end (interrupted); cb run again continues it' >&2; exit 4; }");
        break;
    case CB_STAGE_VERIFY:
        /* status 1 is a negative verdict: recorded, and the graph goes on unless fail_fast */
        sb_add(&b, cmd.p);
        sb_add(&b, "; rc=$?; rm -f ");
        sb_quote(&b, stamp);
        sb_add(&b, ".verdict; if [ $rc -eq 1 ]; then echo failed > ");
        sb_quote(&b, stamp);
        sb_printf(&b, ".verdict; exit %d; fi; exit $rc", s->fail_fast ? 1 : 0);
        break;
    case CB_STAGE_SAMPLE:
        sb_add(&b, cmd.p);
        sb_add(&b, " > ");
        sb_quote(&b, s->dir);
        sb_add(&b, "/.sample.txt.tmp && mv -f ");
        sb_quote(&b, s->dir);
        sb_add(&b, "/.sample.txt.tmp ");
        sb_quote(&b, s->output);
        break;
    case CB_STAGE_BENCH:
        sb_add(&b, "mkdir -p ");
        sb_quote(&b, s->dir);
        sb_add(&b, " && ");
        sb_add(&b, cmd.p);
        break;
    default: sb_add(&b, cmd.p); break;
    }
    free(cmd.p);
    if (b.oom) {
        free(b.p);
        cb_fail(e, CB_E_RUNTIME, "", "out of memory");
        return NULL;
    }
    return b.p;
}

static const char stage_sh[] =
    "#!/bin/sh\n"
    "# stage.sh ID COMMAND: run one stage of this experiment (written by cb run; man/cb.1).\n"
    "# Its output goes to logs/ID.log; stamps/ID.done is written only when it succeeded, so\n"
    "# nothing after a failed stage runs on what it left, and the next cb run redoes it.\n"
    "id=$1\n"
    "cmd=$2\n"
    "exp=$(cd \"$(dirname \"$0\")\" && pwd)\n"
    "log=\"$exp/logs/$id.log\"\n"
    "# messages go to fd 3 (cb run's stderr; make's own goes to logs/make.log), or stderr\n"
    "{ true >&3; } 2>/dev/null || exec 3>&2\n"
    "say() { [ -n \"${CB_RUN_QUIET:-}\" ] || printf 'cb run: %s\\n' \"$*\" >&3; }\n"
    "mkdir -p \"$exp/logs\" \"$exp/stamps\" || exit 2\n"
    "rm -f \"$exp/stamps/$id.done\"\n"
    "say \"$id: started (log: $log)\"\n"
    "start=$(date +%s)\n"
    "( cd \"$CB_RUN_WORKDIR\" && eval \"$cmd\" ) </dev/null >\"$log\" 2>&1\n"
    "rc=$?\n"
    "if [ $rc -ne 0 ]; then\n"
    "    printf 'cb run: stage %s failed (exit %d); its log: %s\\n' \"$id\" \"$rc\" \"$log\" >&3\n"
    "    echo \"$id\" > \"$exp/stamps/failed\"\n"
    "    exit $rc\n"
    "fi\n"
    "cp \"$exp/stamps/$id.want\" \"$exp/stamps/.$id.done.tmp\" && mv -f \"$exp/stamps/.$id.done.tmp\" "
    "\"$exp/stamps/$id.done\" || exit 2\n"
    "say \"$id: done in $(( $(date +%s) - start )) s\"\n";

int cb_makefile_write(const cb_graph *g, const cb_tools *t, const char *work_dir, cb_error *e) {
    char path[4400];
    snprintf(path, sizeof path, "%s/stage.sh", g->exp_dir);
    int rc = cb_atomic_write(path, stage_sh, sizeof stage_sh - 1, e);
    if (rc != CB_OK) return rc;
    sbuf b = {0};
    sb_add(&b, "# Written by cb run: the stages of this experiment (man/cb.1). Each rule runs one\n"
               "# stage through stage.sh when its stamp stamps/ID.want (the hash of its inputs) is\n"
               "# newer than stamps/ID.done; cb run rewrites .want only when the hash changes.\n"
               "# Run it again with: cb run, or make -f THIS_FILE [-j N] [TARGET].\n");
    sb_add(&b, "EXP := ");
    sb_add(&b, g->exp_dir);
    sb_add(&b, "\nS := $(EXP)/stamps\nexport CB_RUN_WORKDIR := ");
    sb_add(&b, work_dir);
    sb_add(&b, "\nSTAGE := sh $(EXP)/stage.sh\n.DELETE_ON_ERROR:\n.PHONY: all");
    for (int i = 0; i < g->n; i++)
        if (g->stages[i].kind == CB_STAGE_CHAT) sb_printf(&b, " %s", g->stages[i].id);
    sb_add(&b, "\n\nall:");
    for (int i = 0; i < g->n; i++)
        if (g->stages[i].kind != CB_STAGE_CHAT) sb_printf(&b, " $(S)/%s.done", g->stages[i].id);
    sb_add(&b, "\n");
    for (int i = 0; i < g->n && !b.oom; i++) {
        const cb_stage *s = &g->stages[i];
        char *cmd = cb_makefile_command(g, i, t, e);
        if (!cmd) {
            free(b.p);
            return CB_E_RUNTIME;
        }
        size_t cap = 4 * strlen(cmd) + 64, len = 0;
        char *q = malloc(cap);
        if (!q || cb_shell_quote(q, cap, &len, cmd, 1) != 0) b.oom = 1;
        if (s->kind == CB_STAGE_CHAT) {
            /* interactive: the terminal's, no log, no stamp; cb run runs it after the graph */
            sb_printf(&b, "\n%s:", s->id);
            for (int k = 0; k < s->n_deps; k++) sb_printf(&b, " $(S)/%s.done", g->stages[s->deps[k]].id);
            sb_add(&b, "\n\t@cd \"$$CB_RUN_WORKDIR\" && ");
            /* the command itself, for make: '$' doubled */
            for (const char *p = cmd; *p; p++) sb_add(&b, *p == '$' ? "$$" : (char[]){*p, 0});
            sb_add(&b, "\n");
        } else if (q) {
            sb_printf(&b, "\n$(S)/%s.done: $(S)/%s.want", s->id, s->id);
            for (int k = 0; k < s->n_deps; k++) sb_printf(&b, " $(S)/%s.done", g->stages[s->deps[k]].id);
            sb_printf(&b, "\n\t@$(STAGE) %s ", s->id);
            sb_add(&b, q);
            sb_add(&b, "\n");
        }
        free(q);
        free(cmd);
    }
    if (b.oom) {
        free(b.p);
        return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    }
    snprintf(path, sizeof path, "%s/Makefile", g->exp_dir);
    rc = cb_atomic_write(path, b.p, b.n, e);
    free(b.p);
    return rc;
}
