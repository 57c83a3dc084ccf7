/* latex.h: the LaTeX tools, checked before any model is called, and a compile of a draft
 * in a scratch folder so that a failed compile leaves the paper folder as it was. */
#ifndef CB_PAPER_LATEX_H
#define CB_PAPER_LATEX_H

#include "core/error.h"

/* pdflatex (and bibtex) on PATH, or CB_E_RUNTIME naming what is missing. */
int cb_latex_check_tools(cb_error *e);

/* Compile tex (with bib, which may be empty, and the figures folder figures_dir, which
 * may be NULL) in a scratch folder: one pdflatex pass when pdf_out is NULL (a check that
 * it compiles), else with bibtex and the passes that settle the references, the PDF then
 * copied to pdf_out. A draft that does not compile is CB_E_INVALID with LaTeX's first error
 * line; *log_tail (if not NULL) gets the end of LaTeX's log (malloc'd). */
int cb_latex_compile(const char *tex, const char *bib, const char *figures_dir, const char *pdf_out,
                     char **log_tail, cb_error *e);

#endif
