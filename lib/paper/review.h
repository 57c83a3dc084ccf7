/* review.h: reviewing a draft. The structural checks (sections missing, numbers not in
 * the results, claims without a table or figure, key topics without a citation) give a
 * review offline; the reviewer agent adds its judgement through its tools. Every manifest
 * it proposes is checked as cb-validate checks it and is never kept invalid. */
#ifndef CB_PAPER_REVIEW_H
#define CB_PAPER_REVIEW_H

#include <jansson.h>
#include "paper/chat.h"
#include "paper/draft.h"

/* The checks of a draft: {"structure": {...}, "missing_sections": [...],
 * "untraced_numbers": [...], "unsupported_claims": [...], "uncited_keywords": [...]},
 * each list only where its check_* switch of the review section is on. */
json_t *cb_review_checks(const char *tex, const cb_paper_inputs *in);

/* A review document (kind "review") from the checks alone. */
json_t *cb_review_offline(const json_t *checks, const cb_paper_inputs *in);

/* Validate a proposed manifest's YAML text (parse, lower, validate). CB_OK, or
 * CB_E_INVALID with every error, one a line, in *errors (malloc'd). */
int cb_review_validate_manifest(const char *yaml, const char *name, char **errors);

typedef struct cb_review_agent {
    const cb_paper_inputs *in;
    cb_llm *llm;
    const char *tex;
    json_t *checks;
    json_t *proposals;     /* [{name, rationale, hypothesis, benchmarks, priority, manifest_yaml?}] */
    json_t *review;        /* the submitted review, NULL until submit_review */
    json_t *manifest_failures; /* name -> failed tries */
    int max_manifest_tries;
} cb_review_agent;

void cb_review_agent_init(cb_review_agent *a, const cb_paper_inputs *in, cb_llm *llm, const char *tex, json_t *checks);
void cb_review_agent_free(cb_review_agent *a);
/* Run the reviewer; on CB_OK *review is the review document (new reference). A model that
 * ends without submit_review is CB_E_INVALID. */
int cb_review_agent_run(cb_review_agent *a, json_t **review, cb_error *e);

/* Write each proposal's manifest as dir/proposed_NAME.yml (validated again first) and
 * record the file name in the review. */
int cb_review_write_proposals(json_t *review, const char *dir, cb_error *e);

#endif
