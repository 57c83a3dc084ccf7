/* cite.h: citations from real API answers: arXiv's query API (Atom XML, parsed with
 * libxml2) and Semantic Scholar's Graph API (JSON); BibTeX entries made from those
 * answers only, kept in references.bib without duplicates. */
#ifndef CB_PAPER_CITE_H
#define CB_PAPER_CITE_H

#include <jansson.h>
#include "core/error.h"
#include "paper/http.h"

/* A paper, as both parsers give it:
 * {"source": "arxiv"|"semantic_scholar", "id": "arxiv:2305.13245" | "s2:<paperId>",
 *  "title", "authors": [..], "year": int|null, "eprint"?, "doi"?, "venue"?, "url"?} */

typedef struct cb_cite_cfg {
    char arxiv_url[512];   /* the query endpoint, "http://export.arxiv.org/api/query" */
    char s2_url[512];      /* the Graph API base, "https://api.semanticscholar.org/graph/v1" */
    int max_results;       /* per search */
    int prefer_recent;     /* recent papers first */
    int recent_years;      /* "recent": published in the last recent_years years */
    int this_year;
    cb_http_opts http;
} cb_cite_cfg;

void cb_cite_cfg_init(cb_cite_cfg *c);

/* Parse an arXiv Atom feed into a list of papers (new reference). An error feed or
 * text that is not Atom is CB_E_INVALID. */
int cb_cite_parse_arxiv(const char *xml, size_t len, json_t **papers, cb_error *e);
/* Parse a Semantic Scholar /paper/search answer ({"data": [...]}) into a list of papers. */
int cb_cite_parse_s2(const char *text, size_t len, json_t **papers, cb_error *e);
/* Search source ("arxiv" or "semantic_scholar") for query; papers ordered as the
 * configuration prefers. */
int cb_cite_search(const cb_cite_cfg *c, const char *source, const char *query, json_t **papers, cb_error *e);

/* The bibliography: existing entries (from references.bib) and added ones. */
typedef struct cb_bib {
    json_t *entries; /* [{"key", "title_norm", "eprint", "doi", "text"}] in file order */
} cb_bib;

void cb_bib_init(cb_bib *b);
void cb_bib_free(cb_bib *b);
/* Read references.bib; a missing file is an empty bibliography. */
int cb_bib_load(cb_bib *b, const char *path, cb_error *e);
/* Add paper unless an entry with the same eprint, DOI or title is there; key_out gets
 * the entry's key either way. Returns 1 when added, 0 when it was already there. */
int cb_bib_add(cb_bib *b, const json_t *paper, char *key_out, size_t key_n);
/* The whole file's text (malloc'd). */
char *cb_bib_text(const cb_bib *b);
size_t cb_bib_count(const cb_bib *b);
/* 1 when key names an entry. */
int cb_bib_has(const cb_bib *b, const char *key);

/* LaTeX-escape text into a malloc'd string (for titles and author names). */
char *cb_tex_escape(const char *s);

#endif
