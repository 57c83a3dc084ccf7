/* review.c: the structural checks, the offline review, and the reviewer agent. */
#include "paper/review.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "manifest/lower.h"
#include "manifest/yaml_parse.h"
#include "paper/paper_agent.h"
#include "plan/validate.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

/* case-insensitive strstr (strcasestr is a GNU extension) */
static const char *ci_find(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++) if (strncasecmp(hay, needle, n) == 0) return hay;
    return NULL;
}

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static int words(const char *s) {
    int n = 0, in = 0;
    for (; *s; s++) {
        int w = isalpha((unsigned char)*s);
        if (w && !in) n++;
        in = w;
    }
    return n;
}

static const char *const claim_words[] = {"outperform", "improve", "better", "faster", "reduces", "significant",
                                          "state-of-the-art", "state of the art", "superior", "surpass", NULL};

/* sentences of the body (after \begin{document}) with a claim word but neither a \ref
 * nor a \cite nor a number */
static json_t *unsupported_claims(const char *tex) {
    json_t *out = json_array();
    const char *body = strstr(tex, "\\begin{document}");
    const char *p = body ? body : tex;
    while (*p) {
        const char *end = p;
        while (*end && !(*end == '.' && (end[1] == ' ' || end[1] == '\n' || !end[1])) && !(end[0] == '\n' && end[1] == '\n')) end++;
        size_t n = (size_t)(end - p);
        char *s = strndup(p, n);
        int claim = 0, support = strstr(s, "\\ref") || strstr(s, "\\cite");
        for (char *q = s; *q && !support; q++) if (isdigit((unsigned char)*q)) support = 1;
        for (int i = 0; claim_words[i]; i++) if (ci_find(s, claim_words[i])) claim = 1;
        if (claim && !support && s[0] != '%' && !strstr(s, "\\begin{") && !strstr(s, "\\caption")) {
            char *t = s;
            while (isspace((unsigned char)*t)) t++;
            json_array_append_new(out, json_string(t));
        }
        free(s);
        p = *end ? end + 1 : end;
    }
    return out;
}

static int section_present(const char *tex, const char *name) {
    if (strcmp(name, "abstract") == 0) return strstr(tex, "\\begin{abstract}") != NULL;
    char *b = cb_tex_section_body(tex, name);
    int ok = b != NULL && words(b) > 0;
    free(b);
    return ok;
}

/* keywords that no sentence with a \cite mentions */
static json_t *uncited_keywords(const char *tex, const json_t *keywords) {
    json_t *out = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(keywords, i, k) {
        const char *kw = json_string_value(k);
        int cited = 0;
        for (const char *p = ci_find(tex, kw); p && !cited; p = ci_find(p + 1, kw)) {
            const char *s = p, *e = p;
            while (s > tex && s[-1] != '.' && !(s[-1] == '\n' && s > tex + 1 && s[-2] == '\n')) s--;
            while (*e && *e != '.') e++;
            for (const char *c = strstr(s, "\\cite"); c && c < e; c = NULL) cited = 1;
        }
        if (!cited) json_array_append(out, k);
    }
    return out;
}

json_t *cb_review_checks(const char *tex, const cb_paper_inputs *in) {
    const json_t *r = in->review;
    json_t *c = json_object();
    const char *body = strstr(tex, "\\begin{document}");
    json_object_set_new(c, "structure",
                        json_pack("{s:i,s:i,s:i,s:i,s:i}", "sections", count(tex, "\\section{"), "words",
                                  words(body ? body : tex), "figures", count(tex, "\\begin{figure}"), "tables",
                                  count(tex, "\\begin{table}"), "citations", count(tex, "\\cite")));
    if (json_is_true(json_object_get(r, "check_writing")) || json_is_true(json_object_get(r, "check_methodology"))) {
        json_t *missing = json_array();
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(in->paper, "sections"), i, s)
            if (!section_present(tex, json_string_value(s))) json_array_append(missing, s);
        json_object_set_new(c, "missing_sections", missing);
    }
    if (json_is_true(json_object_get(r, "check_results")))
        json_object_set_new(c, "untraced_numbers", cb_numbers_untraced(tex, &in->numbers));
    if (json_is_true(json_object_get(r, "check_experiments"))) {
        json_object_set_new(c, "unsupported_claims", unsupported_claims(tex));
        json_object_set_new(c, "results_shown", json_boolean(count(tex, "\\begin{table}") + count(tex, "\\begin{figure}") > 1 ||
                                                             json_array_size(in->csvs) + json_array_size(in->pngs) > 0));
    }
    if (json_is_true(json_object_get(r, "check_citations")))
        json_object_set_new(c, "uncited_keywords", uncited_keywords(tex, json_object_get(in->paper, "keywords")));
    return c;
}

static double strictness_factor(const char *s) {
    if (strcmp(s, "workshop") == 0) return 0.75;
    if (strcmp(s, "journal") == 0) return 1.25;
    if (strcmp(s, "top_venue") == 0) return 1.5;
    return 1.0;
}

static double capped(size_t n, double each, double cap) { return fmin((double)n * each, cap); }

json_t *cb_review_offline(const json_t *checks, const cb_paper_inputs *in) {
    const json_t *r = in->review;
    const char *strictness = json_string_value(json_object_get(r, "strictness"));
    double min_score = json_number_value(json_object_get(r, "min_score_to_approve"));
    size_t n_missing = json_array_size(json_object_get(checks, "missing_sections"));
    size_t n_untraced = json_array_size(json_object_get(checks, "untraced_numbers"));
    size_t n_claims = json_array_size(json_object_get(checks, "unsupported_claims"));
    size_t n_uncited = json_array_size(json_object_get(checks, "uncited_keywords"));
    json_t *shown = json_object_get(checks, "results_shown");
    int no_results = json_is_false(shown);
    double deduct = capped(n_missing, 1.0, 3) + capped(n_untraced, 1.0, 3) + capped(n_claims, 0.5, 2) +
                    capped(n_uncited, 0.5, 2) + (no_results ? 3.0 : 0);
    double score = 10 - deduct * strictness_factor(strictness ? strictness : "conference");
    if (score < 0) score = 0;
    score = round(score * 10) / 10;
    json_t *weak = json_array(), *strong = json_array(), *changes = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(json_object_get(checks, "missing_sections"), i, x) {
        char m[300];
        snprintf(m, sizeof m, "the section '%s' is missing or empty", json_string_value(x));
        json_array_append_new(weak, json_string(m));
        snprintf(m, sizeof m, "write the %s section", json_string_value(x));
        json_array_append_new(changes, json_string(m));
    }
    json_array_foreach(json_object_get(checks, "untraced_numbers"), i, x) {
        char m[300];
        snprintf(m, sizeof m, "line %d: the number %s is not in any result file", (int)json_integer_value(json_object_get(x, "line")),
                 json_string_value(json_object_get(x, "text")));
        json_array_append_new(weak, json_string(m));
        json_array_append_new(changes, json_string("report only numbers found in the experiment's results"));
    }
    json_array_foreach(json_object_get(checks, "unsupported_claims"), i, x) {
        char m[600];
        snprintf(m, sizeof m, "a claim without a supporting table, figure or citation: \"%.200s\"", json_string_value(x));
        json_array_append_new(weak, json_string(m));
    }
    if (n_claims) json_array_append_new(changes, json_string("support each claim with a table, figure or citation"));
    json_array_foreach(json_object_get(checks, "uncited_keywords"), i, x) {
        char m[300];
        snprintf(m, sizeof m, "no citation for the key topic '%s'", json_string_value(x));
        json_array_append_new(weak, json_string(m));
    }
    if (n_uncited) json_array_append_new(changes, json_string("cite prior work on each key topic"));
    if (no_results) {
        json_array_append_new(weak, json_string("no results are shown: no table or figure from the experiment"));
        json_array_append_new(changes, json_string("run the experiment's benchmarks and report them"));
    }
    if (!n_missing) json_array_append_new(strong, json_string("every planned section is present"));
    if (!n_untraced && json_object_get(checks, "untraced_numbers"))
        json_array_append_new(strong, json_string("every number is found in the experiment's result files"));
    if (!no_results && shown) json_array_append_new(strong, json_string("results are shown in tables or figures"));
    const char *action;
    int issues = json_array_size(weak) > 0;
    if (no_results) action = "new_experiment";
    else if (n_missing > 2) action = "major_revision";
    else if (n_untraced || n_claims) action = "clarification";
    else if (issues || score < min_score) action = "style_fix";
    else action = "approve";
    int approved = strcmp(action, "approve") == 0 && score >= min_score;
    if (!approved && strcmp(action, "approve") == 0) action = "style_fix";
    json_t *doc = cb_doc_new("review");
    json_object_set_new(doc, "mode", json_string("offline"));
    json_object_set(doc, "strictness", json_object_get(r, "strictness"));
    json_object_set(doc, "reviewer_persona", json_object_get(r, "reviewer_persona"));
    json_object_set_new(doc, "score", json_real(score));
    json_object_set_new(doc, "min_score_to_approve", json_real(min_score));
    json_object_set_new(doc, "action", json_string(action));
    json_object_set_new(doc, "approved", json_boolean(approved));
    json_object_set_new(doc, "summary", json_string(approved ? "The structural checks found nothing to change."
                                                             : "The structural checks found issues; see weaknesses."));
    json_object_set_new(doc, "strengths", strong);
    json_object_set_new(doc, "weaknesses", weak);
    json_object_set_new(doc, "requested_changes", changes);
    json_object_set_new(doc, "proposed_experiments", json_array());
    json_object_set(doc, "checks", (json_t *)checks);
    return doc;
}

int cb_review_validate_manifest(const char *yaml, const char *name, char **errors) {
    *errors = NULL;
    cb_error e;
    cb_error_clear(&e);
    json_t *m = NULL, *lowered = NULL, *plan = NULL;
    cb_sb b = {0};
    int rc = cb_yaml_parse(yaml, strlen(yaml), name, &m, &e);
    if (rc != CB_OK) {
        char line[1600];
        cb_sb_printf(&b, "cb-parse: %s\n", cb_error_line(&e, line, sizeof line));
        *errors = b.s;
        return CB_E_INVALID;
    }
    cb_diags d;
    cb_diags_init(&d);
    rc = cb_lower(m, &lowered, &d);
    const char *stage = "cb-lower";
    if (rc == CB_OK) { rc = cb_validate(lowered, &plan, &d); stage = "cb-validate"; }
    if (rc != CB_OK) {
        for (int i = 0; i < d.n && i < 20; i++) {
            char line[1600];
            cb_sb_printf(&b, "%s: %s\n", stage, cb_error_line(&d.items[i], line, sizeof line));
        }
        if (!b.s) cb_sb_printf(&b, "%s: invalid\n", stage);
        *errors = b.s;
    }
    cb_diags_free(&d);
    json_decref(m);
    json_decref(lowered);
    json_decref(plan);
    return rc == CB_OK ? CB_OK : CB_E_INVALID;
}

/* ---- the reviewer agent -------------------------------------------------------------- */

void cb_review_agent_init(cb_review_agent *a, const cb_paper_inputs *in, cb_llm *llm, const char *tex, json_t *checks) {
    memset(a, 0, sizeof *a);
    a->in = in;
    a->llm = llm;
    a->tex = tex;
    a->checks = checks;
    a->proposals = json_array();
    a->manifest_failures = json_object();
    a->max_manifest_tries = 3;
}

void cb_review_agent_free(cb_review_agent *a) {
    json_decref(a->proposals);
    json_decref(a->review);
    json_decref(a->manifest_failures);
    memset(a, 0, sizeof *a);
}

static char *jtext(json_t *v) {
    char *s = json_dumps(v, JSON_INDENT(1) | JSON_ENSURE_ASCII);
    json_decref(v);
    return s ? s : strdup("{}");
}

static int file_name_ok(const char *s) {
    if (!s || !s[0] || s[0] == '.' || strlen(s) > 80) return 0;
    for (; *s; s++) if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return 0;
    return 1;
}

static json_t *find_proposal(json_t *list, const char *name) {
    size_t i;
    json_t *p;
    json_array_foreach(list, i, p) if (strcmp(json_string_value(json_object_get(p, "name")), name) == 0) return p;
    return NULL;
}

static const char *const actions[] = {"approve", "style_fix", "clarification", "new_experiment", "major_revision", NULL};

static int review_tool(void *ctx, const char *name, json_t *args, char **result, int *done, cb_error *e) {
    cb_review_agent *a = ctx;
    (void)e;
    char buf[600];
    if (strcmp(name, "analyze_paper_structure") == 0) {
        json_t *v = json_pack("{s:O,s:O?}", "structure", json_object_get(a->checks, "structure"), "missing_sections",
                              json_object_get(a->checks, "missing_sections"));
        *result = jtext(v);
    } else if (strcmp(name, "check_experimental_claims") == 0) {
        *result = jtext(json_pack("{s:O?,s:O?,s:O?}", "unsupported_claims", json_object_get(a->checks, "unsupported_claims"),
                                  "untraced_numbers", json_object_get(a->checks, "untraced_numbers"), "results_shown",
                                  json_object_get(a->checks, "results_shown")));
    } else if (strcmp(name, "check_citation_coverage") == 0) {
        *result = jtext(json_pack("{s:O?,s:i}", "uncited_keywords", json_object_get(a->checks, "uncited_keywords"),
                                  "citations", (int)json_integer_value(json_object_get(json_object_get(a->checks, "structure"), "citations"))));
    } else if (strcmp(name, "read_paper_section") == 0) {
        const char *s = json_string_value(json_object_get(args, "section"));
        char *b = s ? cb_tex_section_body(a->tex, s) : NULL;
        if (b) *result = b;
        else { snprintf(buf, sizeof buf, "error: no section named '%s'", s ? s : ""); *result = strdup(buf); }
    } else if (strcmp(name, "get_experiment_results_summary") == 0) {
        json_t *v = json_pack("{s:O?,s:O,s:O,s:O}", "report", a->in->report, "csv_files", a->in->csvs, "figures",
                              a->in->pngs, "totals", json_object_get(a->in->plan, "totals"));
        *result = jtext(v);
    } else if (strcmp(name, "propose_experiment") == 0) {
        const char *n = json_string_value(json_object_get(args, "name"));
        int max = (int)json_integer_value(json_object_get(a->in->review, "max_proposed_experiments"));
        if (!json_is_true(json_object_get(a->in->review, "auto_generate_experiments")))
            *result = strdup("error: auto_generate_experiments is off for this review");
        else if (!file_name_ok(n)) *result = strdup("error: name must be letters, digits, _ and - only");
        else if (find_proposal(a->proposals, n)) *result = strdup("error: an experiment of that name is proposed already");
        else if ((int)json_array_size(a->proposals) >= max) {
            snprintf(buf, sizeof buf, "error: max_proposed_experiments (%d) reached", max);
            *result = strdup(buf);
        } else {
            const char *pr = json_string_value(json_object_get(args, "priority"));
            json_t *bm = json_object_get(args, "benchmarks");
            json_t *bms = json_is_array(bm) ? json_incref(bm) : json_array();
            json_array_append_new(a->proposals,
                                  json_pack("{s:s,s:s,s:s,s:o,s:s}", "name", n, "rationale",
                                            json_string_value(json_object_get(args, "rationale")) ? json_string_value(json_object_get(args, "rationale")) : "",
                                            "hypothesis",
                                            json_string_value(json_object_get(args, "hypothesis")) ? json_string_value(json_object_get(args, "hypothesis")) : "",
                                            "benchmarks", bms, "priority",
                                            pr && (!strcmp(pr, "high") || !strcmp(pr, "medium") || !strcmp(pr, "low")) ? pr : "medium"));
            snprintf(buf, sizeof buf, "proposed '%s'; give it a runnable manifest with generate_experiment_manifest", n);
            *result = strdup(buf);
        }
    } else if (strcmp(name, "generate_experiment_manifest") == 0) {
        const char *n = json_string_value(json_object_get(args, "name"));
        const char *yaml = json_string_value(json_object_get(args, "yaml"));
        json_t *p = n ? find_proposal(a->proposals, n) : NULL;
        json_int_t tries = n ? json_integer_value(json_object_get(a->manifest_failures, n)) : 0;
        if (!p) *result = strdup("error: propose the experiment first (propose_experiment)");
        else if (!yaml) *result = strdup("error: give the manifest as yaml");
        else if (tries >= a->max_manifest_tries) {
            snprintf(buf, sizeof buf, "error: %d invalid manifests for '%s'; no more tries", a->max_manifest_tries, n);
            *result = strdup(buf);
        } else {
            char fname[128], *errors = NULL;
            snprintf(fname, sizeof fname, "proposed_%s.yml", n);
            if (cb_review_validate_manifest(yaml, fname, &errors) == CB_OK) {
                json_object_set_new(p, "manifest_yaml", json_string(yaml));
                *result = strdup("valid: cb-validate accepts it; it will be written as proposed_NAME.yml");
            } else {
                json_object_set_new(a->manifest_failures, n, json_integer(tries + 1));
                cb_sb b = {0};
                cb_sb_printf(&b, "invalid (try %lld of %d), not kept; fix these errors and call again:\n%s",
                             (long long)tries + 1, a->max_manifest_tries, errors);
                *result = b.s;
            }
            free(errors);
        }
    } else if (strcmp(name, "submit_review") == 0) {
        json_t *score = json_object_get(args, "score");
        const char *action = json_string_value(json_object_get(args, "action"));
        int known = 0;
        for (int i = 0; action && actions[i]; i++) if (!strcmp(action, actions[i])) known = 1;
        if (!json_is_number(score) || json_number_value(score) < 0 || json_number_value(score) > 10)
            *result = strdup("error: score must be a number from 0 to 10");
        else if (!known) *result = strdup("error: action must be approve, style_fix, clarification, new_experiment or major_revision");
        else {
            json_decref(a->review);
            a->review = json_deep_copy(args);
            *result = strdup("review submitted");
            *done = 1;
        }
    } else {
        snprintf(buf, sizeof buf, "error: no tool named '%s'", name);
        *result = strdup(buf);
    }
    return CB_OK;
}

static json_t *review_tools(void) {
    json_t *t = json_array();
    const char *none = "{\"type\":\"object\",\"properties\":{}}";
    json_array_append_new(t, cb_tool_schema("analyze_paper_structure", "Section, word, figure, table and citation counts; missing sections", none));
    json_array_append_new(t, cb_tool_schema("check_experimental_claims", "Claims without support and numbers not in the results", none));
    json_array_append_new(t, cb_tool_schema("check_citation_coverage", "Key topics without a citation", none));
    json_array_append_new(t, cb_tool_schema("read_paper_section", "The LaTeX of one section",
                                            "{\"type\":\"object\",\"properties\":{\"section\":{\"type\":\"string\"}},\"required\":[\"section\"]}"));
    json_array_append_new(t, cb_tool_schema("get_experiment_results_summary", "The experiment's report and result files", none));
    json_array_append_new(t, cb_tool_schema("propose_experiment", "Propose a new experiment",
                                            "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"rationale\":{\"type\":\"string\"},"
                                            "\"hypothesis\":{\"type\":\"string\"},\"benchmarks\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                                            "\"priority\":{\"type\":\"string\",\"enum\":[\"high\",\"medium\",\"low\"]}},\"required\":[\"name\",\"rationale\",\"hypothesis\"]}"));
    json_array_append_new(t, cb_tool_schema("generate_experiment_manifest", "A runnable caramba YAML manifest for a proposed experiment; checked with cb-validate",
                                            "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"yaml\":{\"type\":\"string\"}},\"required\":[\"name\",\"yaml\"]}"));
    json_array_append_new(t, cb_tool_schema("submit_review", "Submit the review; ends the review",
                                            "{\"type\":\"object\",\"properties\":{\"score\":{\"type\":\"number\"},\"action\":{\"type\":\"string\","
                                            "\"enum\":[\"approve\",\"style_fix\",\"clarification\",\"new_experiment\",\"major_revision\"]},"
                                            "\"summary\":{\"type\":\"string\"},\"strengths\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                                            "\"weaknesses\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
                                            "\"requested_changes\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},\"required\":[\"score\",\"action\",\"summary\"]}"));
    return t;
}

static const char *persona_focus(const char *p) {
    if (p && !strcmp(p, "methodology_expert")) return "experimental design, statistical rigour, reproducibility and ablations";
    if (p && !strcmp(p, "practitioner")) return "practical applicability, efficiency claims and deployment";
    return "novelty, significance, complete evaluation and clear presentation";
}

static json_t *strings_or_empty(json_t *v) {
    json_t *out = json_array();
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) if (json_is_string(x)) json_array_append(out, x);
    return out;
}

int cb_review_agent_run(cb_review_agent *a, json_t **review, cb_error *e) {
    *review = NULL;
    const json_t *r = a->in->review;
    cb_sb sys = {0}, user = {0};
    const char *persona = json_string_value(json_object_get(r, "reviewer_persona"));
    cb_sb_printf(&sys, "You review a research paper as a %s, for a %s. You care most about %s. Use the tools to "
                       "inspect the paper and the experiment's results; the checks are caramba's own. ",
                 persona, json_string_value(json_object_get(r, "strictness")), persona_focus(persona));
    cb_sb_printf(&sys, "A score of %g or more approves. ", json_number_value(json_object_get(r, "min_score_to_approve")));
    if (json_is_true(json_object_get(r, "auto_generate_experiments")))
        cb_sb_printf(&sys, "Where results are missing, propose at most %lld experiments with propose_experiment and "
                           "give each a caramba manifest with generate_experiment_manifest. ",
                     (long long)json_integer_value(json_object_get(r, "max_proposed_experiments")));
    cb_sb_puts(&sys, "End by calling submit_review.");
    cb_sb_printf(&user, "Review the paper \"%s\".", json_string_value(json_object_get(a->in->paper, "title")));
    json_t *tools = review_tools();
    int rc = cb_agent_run(a->llm, sys.s, user.s, tools, review_tool, a, NULL, e);
    json_decref(tools);
    free(sys.s);
    free(user.s);
    if (rc != CB_OK) return rc;
    if (!a->review)
        return cb_fail(e, CB_E_INVALID, a->llm->base_url, "the reviewer ended (%s) without submit_review", a->llm->stopped_by);
    double min_score = json_number_value(json_object_get(r, "min_score_to_approve"));
    double score = json_number_value(json_object_get(a->review, "score"));
    const char *action = json_string_value(json_object_get(a->review, "action"));
    json_t *doc = cb_doc_new("review");
    json_object_set_new(doc, "mode", json_string("online"));
    json_object_set(doc, "strictness", json_object_get(r, "strictness"));
    json_object_set(doc, "reviewer_persona", json_object_get(r, "reviewer_persona"));
    json_object_set_new(doc, "score", json_real(score));
    json_object_set_new(doc, "min_score_to_approve", json_real(min_score));
    json_object_set_new(doc, "action", json_string(action));
    json_object_set_new(doc, "approved", json_boolean(!strcmp(action, "approve") && score >= min_score));
    const char *summary = json_string_value(json_object_get(a->review, "summary"));
    json_object_set_new(doc, "summary", json_string(summary ? summary : ""));
    json_object_set_new(doc, "strengths", strings_or_empty(json_object_get(a->review, "strengths")));
    json_object_set_new(doc, "weaknesses", strings_or_empty(json_object_get(a->review, "weaknesses")));
    json_object_set_new(doc, "requested_changes", strings_or_empty(json_object_get(a->review, "requested_changes")));
    json_object_set(doc, "proposed_experiments", a->proposals);
    json_object_set(doc, "checks", a->checks);
    json_object_set_new(doc, "usage", json_pack("{s:s,s:i,s:I,s:I}", "model", a->llm->model, "steps", a->llm->steps,
                                                "prompt_tokens", (json_int_t)a->llm->prompt_tokens, "completion_tokens",
                                                (json_int_t)a->llm->completion_tokens));
    *review = doc;
    return CB_OK;
}

int cb_review_write_proposals(json_t *review, const char *dir, cb_error *e) {
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(review, "proposed_experiments"), i, p) {
        const char *yaml = json_string_value(json_object_get(p, "manifest_yaml"));
        if (!yaml) { json_object_set_new(p, "manifest", json_null()); continue; }
        char fname[200], path[PATH_MAX], *errors = NULL;
        snprintf(fname, sizeof fname, "proposed_%s.yml", json_string_value(json_object_get(p, "name")));
        /* checked again right before it is written: never an invalid file */
        if (cb_review_validate_manifest(yaml, fname, &errors) != CB_OK) {
            free(errors);
            json_object_set_new(p, "manifest", json_null());
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, fname);
        CB_TRY(cb_atomic_write(path, yaml, strlen(yaml), e));
        json_object_set_new(p, "manifest", json_string(fname));
        json_object_del(p, "manifest_yaml");
    }
    return CB_OK;
}
