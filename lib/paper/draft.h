/* draft.h: what a paper is made from (the plan with its paper:, review: and research:
 * sections, and the experiment's result files), the offline draft written from those
 * alone, and the paper folder's versions/. */
#ifndef CB_PAPER_DRAFT_H
#define CB_PAPER_DRAFT_H

#include <jansson.h>
#include "core/diag.h"
#include "core/error.h"
#include "paper/cite.h"
#include "paper/numbers.h"

typedef struct cb_paper_inputs {
    char manifest_path[4096];
    json_t *plan;         /* the plan document */
    json_t *paper;        /* its paper section, defaults filled (owned) */
    json_t *review;       /* its review section, defaults filled (owned) */
    json_t *research;     /* its research section, defaults filled (owned) */
    char results_dir[4096];
    json_t *report;       /* report.json, or NULL when there is none */
    json_t *csvs, *pngs;  /* file names under results_dir, sorted */
    cb_numsrc numbers;    /* every number a draft may show */
} cb_paper_inputs;

/* Compile the manifest (parse, lower, validate; or read a plan document) and read the
 * result files of results_dir (which may be missing: a draft without results). Errors
 * of the manifest go to d, other errors to e. */
int cb_paper_inputs_load(cb_paper_inputs *in, const char *manifest_path, const char *results_dir, cb_diags *d,
                         cb_error *e);
void cb_paper_inputs_free(cb_paper_inputs *in);

/* The offline draft: a complete LaTeX paper from the inputs alone (malloc'd). Citations
 * already in bib are cited in the related work; none are invented. */
char *cb_draft_offline(const cb_paper_inputs *in, const cb_bib *bib);

/* Copy the PNGs of the results into paper_dir/figures/. */
int cb_paper_copy_figures(const cb_paper_inputs *in, const char *paper_dir, cb_error *e);

/* Keep the current paper_dir/paper.tex (if any) in versions/ as
 * paper_<tag>NNN_YYYYmmdd_HHMMSS.tex, then remove the oldest beyond max_versions
 * (0: keep all). tag is "v" for cb-paper, "iter" for the research loop. */
int cb_paper_save_version(const char *paper_dir, const char *tag, int max_versions, cb_error *e);

/* Make a folder and its parents. */
int cb_mkdirs(const char *path, cb_error *e);

/* A growable string. */
typedef struct cb_sb {
    char *s;
    size_t n, cap;
} cb_sb;
void cb_sb_printf(cb_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cb_sb_puts(cb_sb *b, const char *s);
/* LaTeX-escaped text */
void cb_sb_tex(cb_sb *b, const char *s);

#endif
