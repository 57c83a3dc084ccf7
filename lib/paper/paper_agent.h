/* paper_agent.h: the drafting agent: the seed's tools, run in C, over the agent loop.
 * The draft lives in memory until the end; a text that does not compile is refused,
 * citations come only from search answers of this session. */
#ifndef CB_PAPER_PAPER_AGENT_H
#define CB_PAPER_PAPER_AGENT_H

#include "paper/chat.h"
#include "paper/cite.h"
#include "paper/draft.h"

typedef struct cb_paper_agent {
    const cb_paper_inputs *in;
    cb_llm *llm;
    cb_cite_cfg cite;
    cb_bib *bib;
    char paper_dir[4096];
    char *tex;          /* the draft being written (owned) */
    json_t *found;      /* papers returned by searches, by id */
    int max_citations, n_added, citations_enabled;
    int use_arxiv, use_s2;
    int update;         /* fold new results into an existing draft */
    int n_search_errors;
    const json_t *review; /* the last review (weaknesses, requested changes) to answer; NULL: none */
} cb_paper_agent;

/* start_tex: the existing draft (update) or the offline draft (new paper); copied. */
void cb_paper_agent_init(cb_paper_agent *a, const cb_paper_inputs *in, cb_llm *llm, cb_bib *bib,
                         const char *paper_dir, const char *start_tex, int update);
void cb_paper_agent_free(cb_paper_agent *a);
/* Run the loop; on CB_OK a->tex is the final draft. */
int cb_paper_agent_run(cb_paper_agent *a, cb_error *e);

/* Replace the body of the section named `name` (its \section title or label sec:name)
 * in tex with content; NULL when there is no such section. */
char *cb_tex_replace_section(const char *tex, const char *name, const char *content);
/* The body of that section (malloc'd), NULL when none. */
char *cb_tex_section_body(const char *tex, const char *name);

/* The plan without source locations: what get_experiment_manifest shows. */
json_t *cb_strip_locs(const json_t *v);

#endif
