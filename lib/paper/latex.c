/* latex.c: find pdflatex and bibtex, run them in a scratch folder. */
#include "paper/latex.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/atomic_dir.h"
#include "core/atomic_file.h"

static int on_path(const char *tool) {
    const char *path = getenv("PATH");
    if (!path) return 0;
    char dir[4096];
    for (const char *p = path; *p;) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        snprintf(dir, sizeof dir, "%.*s/%s", (int)n, p, tool);
        if (access(dir, X_OK) == 0) return 1;
        if (!colon) break;
        p = colon + 1;
    }
    return 0;
}

int cb_latex_check_tools(cb_error *e) {
    if (!on_path("pdflatex"))
        return cb_fail(e, CB_E_RUNTIME, "", "pdflatex not found on PATH (install texlive-latex-base and "
                                            "texlive-latex-recommended); nothing was drafted");
    if (!on_path("bibtex"))
        return cb_fail(e, CB_E_RUNTIME, "", "bibtex not found on PATH (install texlive-latex-base); nothing was drafted");
    return CB_OK;
}

/* run argv in dir, output to log; returns the exit status (or -1) */
static int run_in(const char *dir, char *const argv[], const char *log) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(127);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int nul = open("/dev/null", O_RDONLY);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
        if (nul >= 0) dup2(nul, 0);
        /* a draft is text a model wrote: it may read and write only below the scratch
         * folder (kpathsea's paranoid setting), and -no-shell-escape runs nothing */
        setenv("openin_any", "p", 1);
        setenv("openout_any", "p", 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int write_text(const char *dir, const char *name, const char *text, cb_error *e) {
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return cb_fail(e, CB_E_IO, p, "cannot write");
    fputs(text, f);
    if (fclose(f) != 0) return cb_fail(e, CB_E_IO, p, "write failed");
    return CB_OK;
}

int cb_latex_compile(const char *tex, const char *bib, const char *figures_dir, const char *pdf_out,
                     char **log_tail, cb_error *e) {
    if (log_tail) *log_tail = NULL;
    char dir[1024]; /* short, so the names below always fit */
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%.900s/cb-latex.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) return cb_fail(e, CB_E_IO, dir, "cannot make a scratch folder");
    int rc = write_text(dir, "paper.tex", tex, e);
    if (rc == CB_OK) rc = write_text(dir, "references.bib", bib ? bib : "", e);
    if (rc == CB_OK && figures_dir) {
        char link[PATH_MAX], abs[PATH_MAX];
        snprintf(link, sizeof link, "%s/figures", dir);
        if (realpath(figures_dir, abs) && symlink(abs, link) != 0) rc = cb_fail(e, CB_E_IO, link, "cannot link figures");
    }
    char log[PATH_MAX];
    snprintf(log, sizeof log, "%s/build.log", dir);
    char *pdflatex[] = {"pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "paper.tex", NULL};
    char *bibtex[] = {"bibtex", "paper", NULL};
    int st = 0;
    if (rc == CB_OK) st = run_in(dir, pdflatex, log);
    int cites = rc == CB_OK && st == 0 && pdf_out && strstr(tex, "\\cite") && bib && bib[0];
    if (cites) {
        run_in(dir, bibtex, log); /* a bibtex warning is not a failed draft; pdflatex judges */
        st = run_in(dir, pdflatex, log);
        if (st == 0) st = run_in(dir, pdflatex, log);
    }
    if (rc == CB_OK) {
        char *text = NULL;
        size_t n = 0;
        cb_error e2;
        if (cb_read_file(log, 0, &text, &n, &e2) == CB_OK) {
            if (log_tail) *log_tail = strdup(n > 3000 ? text + n - 3000 : text);
            if (st != 0) {
                char first[300] = "see the log";
                const char *bang = strstr(text, "\n! ");
                if (bang) {
                    const char *nl = strchr(bang + 1, '\n');
                    const char *l = strstr(bang, "\nl.");
                    const char *lnl = l ? strchr(l + 1, '\n') : NULL;
                    snprintf(first, sizeof first, "%.*s%s%.*s", nl ? (int)(nl - bang - 1) : 200, bang + 1,
                             l ? " at " : "", l && lnl ? (int)(lnl - l - 1 > 60 ? 60 : lnl - l - 1) : 0, l ? l + 1 : "");
                }
                rc = cb_fail(e, CB_E_INVALID, "paper.tex", "does not compile with pdflatex: %s", first);
            }
            free(text);
        } else if (st != 0) {
            rc = cb_fail(e, CB_E_RUNTIME, "paper.tex", "pdflatex failed to run");
        }
    }
    if (rc == CB_OK && pdf_out) {
        char pdf[PATH_MAX];
        snprintf(pdf, sizeof pdf, "%s/paper.pdf", dir);
        char *data = NULL;
        size_t n = 0;
        rc = cb_read_file(pdf, 0, &data, &n, e);
        if (rc == CB_OK) rc = cb_atomic_write(pdf_out, data, n, e);
        free(data);
    }
    cb_remove_tree(dir);
    return rc;
}
