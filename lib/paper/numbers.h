/* numbers.h: tracing the numbers of a draft to the experiment's result files. Every number
 * in the body of a paper must be found in a CSV cell, a report.json field or the plan
 * (parameter and cache figures); a check lists any that is not. */
#ifndef CB_PAPER_NUMBERS_H
#define CB_PAPER_NUMBERS_H

#include <jansson.h>
#include <stddef.h>
#include "core/error.h"

typedef struct cb_numsrc {
    double *v;
    size_t n, cap;
} cb_numsrc;

void cb_numsrc_init(cb_numsrc *s);
void cb_numsrc_free(cb_numsrc *s);
void cb_numsrc_add(cb_numsrc *s, double v);
/* every number in a JSON value (numbers, and strings that are whole numbers) */
void cb_numsrc_add_json(cb_numsrc *s, const json_t *v);
/* every numeric cell of a CSV file */
int cb_numsrc_add_csv(cb_numsrc *s, const char *path, cb_error *e);
/* 1 when some source value, rounded as `shown` is written (tol = half its last digit), is shown */
int cb_numsrc_has(const cb_numsrc *s, double shown, double tol);

/* The numbers of tex's body (after \begin{document}) that no source holds:
 * [{"line": n, "text": "97.3"}] (new reference). Skipped: comments, the arguments of
 * \label, \ref, \cite, \includegraphics, \begin, \end, \bibliography..., optional arguments,
 * and digits glued to letters (identifiers such as gpt2, sm90). */
json_t *cb_numbers_untraced(const char *tex, const cb_numsrc *s);

#endif
