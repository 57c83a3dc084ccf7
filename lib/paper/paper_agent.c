/* paper_agent.c: the drafting agent's tools and prompt. */
#include "paper/paper_agent.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/atomic_file.h"
#include "paper/latex.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

json_t *cb_strip_locs(const json_t *v) {
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) if (k[0] != '@' && strcmp(k, "loc") != 0 && strcmp(k, "tensors") != 0)
            json_object_set_new(o, k, cb_strip_locs(x));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) json_array_append_new(a, cb_strip_locs(x));
        return a;
    }
    return json_deep_copy(v);
}

/* [start, end) of the body of section `name`: after its \section{...} line, up to the
 * next \section, \bibliographystyle, \bibliography or \end{document} */
static int find_section(const char *tex, const char *name, const char **start, const char **end) {
    char label[300];
    snprintf(label, sizeof label, "\\label{sec:%s}", name);
    for (const char *p = strstr(tex, "\\section"); p; p = strstr(p + 1, "\\section")) {
        const char *brace = strchr(p, '{'), *close = brace ? strchr(brace, '}') : NULL;
        if (!close) return 0;
        size_t tl = (size_t)(close - brace - 1);
        char title[300];
        snprintf(title, sizeof title, "%.*s", (int)(tl < 299 ? tl : 299), brace + 1);
        /* "related work" matches related_work */
        char want[300];
        snprintf(want, sizeof want, "%s", name);
        for (char *w = want; *w; w++) if (*w == '_') *w = ' ';
        const char *eol = strchr(close, '\n');
        const char *body = eol ? eol + 1 : close + 1;
        int hit = strcasecmp(title, want) == 0 || strncmp(body, label, strlen(label)) == 0;
        if (!hit) continue;
        if (strncmp(body, "\\label{", 7) == 0) { const char *e2 = strchr(body, '\n'); if (e2) body = e2 + 1; }
        const char *stop = NULL;
        const char *cands[] = {"\\section", "\\bibliographystyle", "\\bibliography{", "\\end{document}", "\\appendix"};
        for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
            const char *q = strstr(body, cands[i]);
            if (q && (!stop || q < stop)) stop = q;
        }
        *start = body;
        *end = stop ? stop : body + strlen(body);
        return 1;
    }
    return 0;
}

char *cb_tex_section_body(const char *tex, const char *name) {
    const char *s, *e;
    if (!find_section(tex, name, &s, &e)) return NULL;
    return strndup(s, (size_t)(e - s));
}

char *cb_tex_replace_section(const char *tex, const char *name, const char *content) {
    const char *s, *e;
    if (!find_section(tex, name, &s, &e)) return NULL;
    cb_sb b = {0};
    cb_sb_printf(&b, "%.*s%s", (int)(s - tex), tex, content);
    if (content[0] && content[strlen(content) - 1] != '\n') cb_sb_puts(&b, "\n");
    cb_sb_puts(&b, "\n");
    cb_sb_puts(&b, e);
    return b.s;
}

void cb_paper_agent_init(cb_paper_agent *a, const cb_paper_inputs *in, cb_llm *llm, cb_bib *bib,
                         const char *paper_dir, const char *start_tex, int update) {
    memset(a, 0, sizeof *a);
    a->in = in;
    a->llm = llm;
    a->bib = bib;
    cb_cite_cfg_init(&a->cite);
    snprintf(a->paper_dir, sizeof a->paper_dir, "%s", paper_dir);
    a->tex = strdup(start_tex);
    a->found = json_object();
    a->update = update;
    json_t *c = json_object_get(in->paper, "citations");
    a->citations_enabled = json_is_true(json_object_get(c, "enabled"));
    a->max_citations = (int)json_integer_value(json_object_get(c, "max_citations"));
    a->cite.prefer_recent = json_is_true(json_object_get(c, "prefer_recent"));
    a->cite.recent_years = (int)json_integer_value(json_object_get(c, "recent_years"));
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(c, "sources"), i, s) {
        if (strcmp(json_string_value(s), "arxiv") == 0) a->use_arxiv = 1;
        if (strcmp(json_string_value(s), "semantic_scholar") == 0) a->use_s2 = 1;
    }
    if (!a->citations_enabled) a->use_arxiv = a->use_s2 = 0;
}

void cb_paper_agent_free(cb_paper_agent *a) {
    free(a->tex);
    json_decref(a->found);
    a->tex = NULL;
    a->found = NULL;
}

static char *dup_json(json_t *v) {
    char *s = json_dumps(v, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(v);
    return s ? s : strdup("{}");
}

static char *errorf(const char *fmt, const char *arg) {
    char buf[2048];
    snprintf(buf, sizeof buf, fmt, arg ? arg : "");
    return strdup(buf);
}

/* Accept text as the draft if it compiles; else say why, keeping the draft. */
static char *accept_tex(cb_paper_agent *a, char *text) {
    char *bib = cb_bib_text(a->bib);
    char figs[PATH_MAX];
    snprintf(figs, sizeof figs, "%s/figures", a->paper_dir);
    cb_error e;
    cb_error_clear(&e);
    int rc = cb_latex_compile(text, bib, figs, NULL, NULL, &e);
    free(bib);
    if (rc != CB_OK) {
        free(text);
        return errorf("error: the text was not accepted, the previous draft is kept: %s", e.msg);
    }
    free(a->tex);
    a->tex = text;
    json_t *bad = cb_numbers_untraced(a->tex, &a->in->numbers);
    if (json_array_size(bad) == 0) { json_decref(bad); return strdup("ok: the draft compiles; every number is found in the results"); }
    cb_sb b = {0};
    cb_sb_puts(&b, "ok: the draft compiles, but these numbers are not in any result file; use only numbers from "
                   "get_experiment_results:");
    size_t i;
    json_t *x;
    json_array_foreach(bad, i, x)
        cb_sb_printf(&b, " %s (line %d)", json_string_value(json_object_get(x, "text")),
                     (int)json_integer_value(json_object_get(x, "line")));
    json_decref(bad);
    return b.s;
}

static char *results_text(const cb_paper_agent *a) {
    cb_sb b = {0};
    if (a->in->report) {
        char *r = json_dumps(a->in->report, JSON_INDENT(1));
        cb_sb_printf(&b, "report.json:\n%s\n", r ? r : "{}");
        free(r);
    }
    size_t i;
    json_t *f;
    json_array_foreach(a->in->csvs, i, f) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", a->in->results_dir, json_string_value(f));
        char *text = NULL;
        size_t n = 0;
        cb_error e;
        if (cb_read_file(p, 1 << 20, &text, &n, &e) == CB_OK) {
            cb_sb_printf(&b, "%s:\n%.20000s\n", json_string_value(f), text);
            free(text);
        }
    }
    if (!b.s) cb_sb_puts(&b, "no result files yet");
    return b.s;
}

static char *search(cb_paper_agent *a, const char *source, json_t *args) {
    const char *q = json_string_value(json_object_get(args, "query"));
    if (!q || !q[0]) return strdup("error: give a query");
    json_t *papers = NULL;
    cb_error e;
    cb_error_clear(&e);
    cb_cite_cfg c = a->cite;
    json_t *mr = json_object_get(args, "max_results");
    if (json_is_integer(mr) && json_integer_value(mr) > 0 && json_integer_value(mr) <= 50)
        c.max_results = (int)json_integer_value(mr);
    if (cb_cite_search(&c, source, q, &papers, &e) != CB_OK) {
        a->n_search_errors++;
        if (c.http.log) fprintf(c.http.log, "%s: warning: %s\n", c.http.log_tool ? c.http.log_tool : "cb", e.msg);
        return errorf("error: the search failed: %s", e.msg);
    }
    json_t *out = json_array();
    size_t i;
    json_t *p;
    json_array_foreach(papers, i, p) {
        json_object_set(a->found, json_string_value(json_object_get(p, "id")), p);
        json_t *authors = json_array();
        for (size_t k = 0; k < 3 && k < json_array_size(json_object_get(p, "authors")); k++)
            json_array_append(authors, json_array_get(json_object_get(p, "authors"), k));
        json_array_append_new(out, json_pack("{s:O,s:O,s:o,s:O}", "id", json_object_get(p, "id"), "title",
                                             json_object_get(p, "title"), "authors", authors, "year",
                                             json_object_get(p, "year")));
    }
    json_decref(papers);
    return dup_json(json_pack("{s:o,s:s}", "papers", out, "note", "cite one with add_citation(id)"));
}

static int paper_tool(void *ctx, const char *name, json_t *args, char **result, int *done, cb_error *e) {
    cb_paper_agent *a = ctx;
    (void)done;
    (void)e;
    if (strcmp(name, "read_tex_file") == 0) { *result = strdup(a->tex); return CB_OK; }
    if (strcmp(name, "get_paper_template") == 0) { *result = cb_draft_offline(a->in, a->bib); return CB_OK; }
    if (strcmp(name, "write_tex_file") == 0) {
        const char *c = json_string_value(json_object_get(args, "content"));
        *result = c ? accept_tex(a, strdup(c)) : strdup("error: give the whole paper as content");
        return CB_OK;
    }
    if (strcmp(name, "update_section") == 0) {
        const char *s = json_string_value(json_object_get(args, "section"));
        const char *c = json_string_value(json_object_get(args, "content"));
        if (!s || !c) { *result = strdup("error: give section and content"); return CB_OK; }
        char *t = cb_tex_replace_section(a->tex, s, c);
        *result = t ? accept_tex(a, t) : errorf("error: no section named '%s' in the draft", s);
        return CB_OK;
    }
    if (strcmp(name, "search_arxiv") == 0 || strcmp(name, "search_semantic_scholar") == 0) {
        int arxiv = name[7] == 'a';
        if (!(arxiv ? a->use_arxiv : a->use_s2)) { *result = strdup("error: this source is not enabled in the manifest"); return CB_OK; }
        *result = search(a, arxiv ? "arxiv" : "semantic_scholar", args);
        return CB_OK;
    }
    if (strcmp(name, "add_citation") == 0) {
        const char *id = json_string_value(json_object_get(args, "id"));
        json_t *p = id ? json_object_get(a->found, id) : NULL;
        if (!p) { *result = errorf("error: '%s' is not a paper returned by a search of this session; cite only search results", id); return CB_OK; }
        char key[256];
        if (a->n_added >= a->max_citations) { *result = strdup("error: max_citations reached"); return CB_OK; }
        int added = cb_bib_add(a->bib, p, key, sizeof key);
        if (added) a->n_added++;
        char buf[512];
        snprintf(buf, sizeof buf, "%s: cite it as \\cite{%s}", added ? "added" : "already in references.bib", key);
        *result = strdup(buf);
        return CB_OK;
    }
    if (strcmp(name, "get_experiment_manifest") == 0) {
        json_t *v = json_pack("{s:O?,s:O?,s:o,s:o,s:o}", "name", json_object_get(a->in->plan, "name"), "notes",
                              json_object_get(a->in->plan, "notes"), "totals",
                              cb_strip_locs(json_object_get(a->in->plan, "totals")), "model",
                              cb_strip_locs(json_object_get(a->in->plan, "model")), "groups",
                              cb_strip_locs(json_object_get(a->in->plan, "groups")));
        *result = dup_json(v);
        return CB_OK;
    }
    if (strcmp(name, "get_experiment_results") == 0) { *result = results_text(a); return CB_OK; }
    if (strcmp(name, "list_artifacts") == 0) {
        *result = dup_json(json_pack("{s:O,s:O,s:b}", "csv", a->in->csvs, "figures", a->in->pngs, "report_json",
                                     a->in->report != NULL));
        return CB_OK;
    }
    if (strcmp(name, "include_figure") == 0) {
        const char *f = json_string_value(json_object_get(args, "file"));
        const char *cap = json_string_value(json_object_get(args, "caption"));
        size_t i;
        json_t *x;
        int known = 0;
        json_array_foreach(a->in->pngs, i, x) if (f && strcmp(json_string_value(x), f) == 0) known = 1;
        if (!known) { *result = errorf("error: '%s' is not a figure of this experiment (see list_artifacts)", f); return CB_OK; }
        cb_sb b = {0};
        cb_sb_printf(&b, "\\begin{figure}[t]\n\\centering\n\\includegraphics[width=0.9\\linewidth]{figures/%s}\n\\caption{", f);
        cb_sb_tex(&b, cap ? cap : f);
        cb_sb_puts(&b, "}\n\\end{figure}\n");
        *result = b.s;
        return CB_OK;
    }
    *result = errorf("error: no tool named '%s'", name);
    return CB_OK;
}

static json_t *paper_tools(const cb_paper_agent *a) {
    json_t *t = json_array();
    json_array_append_new(t, cb_tool_schema("read_tex_file", "Read the current paper.tex", "{\"type\":\"object\",\"properties\":{}}"));
    json_array_append_new(t, cb_tool_schema("write_tex_file", "Replace the whole paper; refused if it does not compile",
                                            "{\"type\":\"object\",\"properties\":{\"content\":{\"type\":\"string\"}},\"required\":[\"content\"]}"));
    json_array_append_new(t, cb_tool_schema("update_section", "Replace the body of one section (by name, e.g. results)",
                                            "{\"type\":\"object\",\"properties\":{\"section\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"}},\"required\":[\"section\",\"content\"]}"));
    json_array_append_new(t, cb_tool_schema("add_citation", "Add a paper found by a search to references.bib; returns its key",
                                            "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\"}},\"required\":[\"id\"]}"));
    if (a->use_arxiv)
        json_array_append_new(t, cb_tool_schema("search_arxiv", "Search arXiv for papers",
                                                "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"max_results\":{\"type\":\"integer\"}},\"required\":[\"query\"]}"));
    if (a->use_s2)
        json_array_append_new(t, cb_tool_schema("search_semantic_scholar", "Search Semantic Scholar for papers",
                                                "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\"},\"max_results\":{\"type\":\"integer\"}},\"required\":[\"query\"]}"));
    json_array_append_new(t, cb_tool_schema("get_experiment_manifest", "The experiment's compiled plan: model, totals, groups", "{\"type\":\"object\",\"properties\":{}}"));
    json_array_append_new(t, cb_tool_schema("get_experiment_results", "report.json and the CSV files of the experiment", "{\"type\":\"object\",\"properties\":{}}"));
    json_array_append_new(t, cb_tool_schema("list_artifacts", "The experiment's CSV files and figures", "{\"type\":\"object\",\"properties\":{}}"));
    json_array_append_new(t, cb_tool_schema("include_figure", "LaTeX code for one of the experiment's figures",
                                            "{\"type\":\"object\",\"properties\":{\"file\":{\"type\":\"string\"},\"caption\":{\"type\":\"string\"}},\"required\":[\"file\"]}"));
    json_array_append_new(t, cb_tool_schema("get_paper_template", "A LaTeX template drafted from the plan and results", "{\"type\":\"object\",\"properties\":{}}"));
    return t;
}

int cb_paper_agent_run(cb_paper_agent *a, cb_error *e) {
    const json_t *p = a->in->paper;
    cb_sb sys = {0}, user = {0};
    cb_sb_puts(&sys, "You are drafting a research paper in LaTeX about an experiment run with caramba. Use the tools. "
                     "Rules: every number you write must come from get_experiment_results or get_experiment_manifest, "
                     "verbatim; cite only papers returned by search_arxiv or search_semantic_scholar, after "
                     "add_citation gives you their key; keep the document compiling with pdflatex (booktabs, graphicx, "
                     "amsmath and hyperref are loaded); end with \\bibliographystyle{plain}\\bibliography{references} "
                     "when you cite. When the paper is done, answer with a one-paragraph summary and no tool call.");
    const char *ci = json_string_value(json_object_get(p, "custom_instructions"));
    if (ci && ci[0]) cb_sb_printf(&sys, "\nInstructions from the author:\n%s", ci);
    cb_sb_printf(&user, "%s the %s titled \"%s\".", a->update ? "Update" : "Write",
                 json_string_value(json_object_get(p, "paper_type")), json_string_value(json_object_get(p, "title")));
    char *sections = json_dumps(json_object_get(p, "sections"), JSON_COMPACT);
    char *keywords = json_dumps(json_object_get(p, "keywords"), JSON_COMPACT);
    cb_sb_printf(&user, " Sections: %s. Keywords for the literature search: %s. At most %d citations.", sections,
                 keywords, a->max_citations);
    free(sections);
    free(keywords);
    cb_sb_puts(&user, a->update ? " The current draft is in read_tex_file: fold the new results in and keep its structure."
                                : " read_tex_file holds a first draft made from the plan and results: improve it.");
    if (a->review) {
        cb_sb_puts(&user, " A reviewer read the current draft; answer the review:");
        const char *lists[] = {"weaknesses", "requested_changes"};
        for (int l = 0; l < 2; l++) {
            size_t i;
            json_t *x;
            json_array_foreach(json_object_get(a->review, lists[l]), i, x)
                if (json_is_string(x)) cb_sb_printf(&user, "\n- %s", json_string_value(x));
        }
    }
    json_t *tools = paper_tools(a);
    int rc = cb_agent_run(a->llm, sys.s, user.s, tools, paper_tool, a, NULL, e);
    json_decref(tools);
    free(sys.s);
    free(user.s);
    return rc;
}
