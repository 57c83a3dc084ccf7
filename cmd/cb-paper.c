/* cb-paper: draft a paper from a manifest and its result files, offline from the plan and
 * results alone, or with a model behind an OpenAI-compatible endpoint (man/cb-paper.1). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "paper/chat.h"
#include "paper/draft.h"
#include "paper/endpoint.h"
#include "paper/latex.h"
#include "paper/paper_agent.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static const char usage[] =
    "usage: cb-paper [-q] [-o dir] [-r dir] [--offline] [--update] [--review file]\n"
    "       [endpoint options] manifest\n"
    "Draft paper/paper.tex, references.bib, figures/ and versions/ from a manifest (or its\n"
    "plan.json) and the experiment's result files. Without a key in the environment, or\n"
    "with --offline, the draft is made from the plan and results alone.\n"
    "  -o, --output-dir dir     the paper folder (default: paper.output_dir, else\n"
    "                           artifacts/NAME/paper)\n"
    "  -r, --results dir        report.json, *.csv and *.png (default: the paper folder's parent)\n"
    "      --offline            never call a model\n"
    "      --update             fold new results into the existing draft, keeping its structure\n"
    "      --review file        a review.json whose weaknesses and requested changes the model\n"
    "                           answers (online only)\n"
    "      --base-url url       the chat-completions endpoint's base (default: paper.base_url)\n"
    "      --model name         --temperature t   --api-key-env NAME   --max-steps n\n"
    "      --arxiv-url url      --semantic-scholar-url url\n"
    "      --timeout s          per request (default: paper.timeout_s)\n"
    "      --retries n          further tries on 429, 5xx, a dropped connection (default 3)\n"
    "      --backoff-ms ms      first wait between tries, doubled each time (default 1000)\n"
    "  -q, --quiet              no progress lines\n"
    "Prints a JSON summary (kind paper_draft). Exit 0; 1 when a number of the draft is not in\n"
    "any result file; 2 usage or I/O; 3 invalid manifest or a bad answer; 4 unreachable.\n";

enum { O_OFFLINE = 256, O_UPDATE, O_ARXIV, O_S2, O_REVIEW };

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Offline --update: the results section of the old draft replaced by the new one. */
static char *offline_update(const char *old, const char *fresh) {
    char *body = cb_tex_section_body(fresh, "results");
    if (!body) return NULL;
    char *t = cb_tex_replace_section(old, "results", body);
    free(body);
    return t;
}

int main(int argc, char **argv) {
    const char *tool = "cb-paper";
    if (cb_cli_start(tool, argc, argv, 0)) return cb_cli_close_stdout(tool);
    const char *out_dir = NULL, *results = NULL, *arxiv_url = NULL, *s2_url = NULL, *review_path = NULL;
    int offline = 0, update = 0, quiet = 0;
    cb_endpoint_opts ep;
    cb_endpoint_opts_init(&ep);
    static const struct option opts[] = {
        {"output-dir", required_argument, NULL, 'o'}, {"results", required_argument, NULL, 'r'},
        {"offline", no_argument, NULL, O_OFFLINE},     {"update", no_argument, NULL, O_UPDATE},
        {"arxiv-url", required_argument, NULL, O_ARXIV},
        {"semantic-scholar-url", required_argument, NULL, O_S2},
        {"review", required_argument, NULL, O_REVIEW}, CB_ENDPOINT_LONGOPTS,
        {"quiet", no_argument, NULL, 'q'},             {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    cb_error e;
    cb_error_clear(&e);
    while ((c = getopt_long(argc, argv, "o:r:qh", opts, NULL)) != -1) {
        int taken = cb_endpoint_opt(&ep, c, optarg, &e);
        if (taken < 0) return cb_cli_usage_error(tool, "%s: %s", e.where, e.msg);
        if (taken) continue;
        switch (c) {
        case 'o': out_dir = optarg; break;
        case 'r': results = optarg; break;
        case 'q': quiet = 1; break;
        case O_OFFLINE: offline = 1; break;
        case O_UPDATE: update = 1; break;
        case O_REVIEW: review_path = optarg; break;
        case O_ARXIV: arxiv_url = optarg; break;
        case O_S2: s2_url = optarg; break;
        case 'h': fputs(usage, stdout); return cb_cli_close_stdout(tool);
        default: return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) return cb_cli_usage_error(tool, "expected one manifest file");

    cb_diags d;
    cb_diags_init(&d);
    cb_paper_inputs in;
    /* the paper folder decides the default results folder, so read the manifest first */
    int rc = cb_paper_inputs_load(&in, argv[optind], NULL, &d, &e);
    if (rc != CB_OK) {
        if (d.n == 0) return cb_cli_report(tool, &e);
        for (int i = 0; i < d.n; i++) {
            if (!d.items[i].where[0]) snprintf(d.items[i].where, sizeof d.items[i].where, "%s", argv[optind]);
            cb_cli_report(tool, &d.items[i]);
        }
        rc = cb_diags_status(&d) ? cb_diags_status(&d) : rc;
        cb_diags_free(&d);
        cb_paper_inputs_free(&in);
        return rc;
    }
    char paper_dir[PATH_MAX], results_dir[PATH_MAX];
    cb_paper_dirs(in.plan, in.paper, out_dir, results, paper_dir, sizeof paper_dir, results_dir, sizeof results_dir);
    cb_paper_inputs_free(&in);
    rc = cb_paper_inputs_load(&in, argv[optind], results_dir, &d, &e);
    cb_diags_free(&d);
    if (rc != CB_OK) { cb_paper_inputs_free(&in); return cb_cli_report(tool, &e); }

    /* the LaTeX tools first: a missing pdflatex is reported before anything is spent */
    if (cb_latex_check_tools(&e) != CB_OK) { cb_paper_inputs_free(&in); return cb_cli_report(tool, &e); }

    cb_llm llm;
    cb_llm_init(&llm);
    cb_endpoint_apply(&ep, in.paper, &llm, tool);
    int online = !offline && llm.key != NULL;
    if (!offline && !online && !quiet)
        fprintf(stderr, "cb-paper: no key in $%s: drafting offline\n",
                json_string_value(json_object_get(in.paper, "api_key_env")));

    char p_tex[PATH_MAX], p_bib[PATH_MAX], p_pdf[PATH_MAX], p_trace[PATH_MAX], p_fig[PATH_MAX];
    snprintf(p_tex, sizeof p_tex, "%s/paper.tex", paper_dir);
    snprintf(p_bib, sizeof p_bib, "%s/references.bib", paper_dir);
    snprintf(p_pdf, sizeof p_pdf, "%s/paper.pdf", paper_dir);
    snprintf(p_trace, sizeof p_trace, "%s/agent_trace.jsonl", paper_dir);
    snprintf(p_fig, sizeof p_fig, "%s/figures", paper_dir);
    if (cb_mkdirs(paper_dir, &e) != CB_OK || cb_paper_copy_figures(&in, paper_dir, &e) != CB_OK) {
        cb_paper_inputs_free(&in);
        return cb_cli_report(tool, &e);
    }
    char *old_tex = NULL;
    size_t old_len = 0;
    if (exists(p_tex) && cb_read_file(p_tex, 0, &old_tex, &old_len, &e) != CB_OK) {
        cb_paper_inputs_free(&in);
        return cb_cli_report(tool, &e);
    }
    if (update && !old_tex) {
        cb_paper_inputs_free(&in);
        return cb_cli_usage_error(tool, "--update: there is no draft at %s", p_tex);
    }
    json_t *review = NULL;
    if (review_path && cb_doc_load(review_path, "review", &review, &e) != CB_OK) {
        free(old_tex);
        cb_paper_inputs_free(&in);
        return cb_cli_report(tool, &e);
    }
    cb_bib bib;
    cb_bib_init(&bib);
    rc = cb_bib_load(&bib, p_bib, &e);

    char *tex = NULL;
    const char *mode = online ? "online" : "offline";
    cb_paper_agent agent;
    memset(&agent, 0, sizeof agent);
    if (rc == CB_OK && !online) {
        tex = cb_draft_offline(&in, &bib);
        if (update && tex) {
            char *t = offline_update(old_tex, tex);
            free(tex);
            tex = t;
            if (!tex) rc = cb_fail(&e, CB_E_INVALID, p_tex, "--update: the draft has no results section to refresh");
        }
    } else if (rc == CB_OK) {
        FILE *trace = fopen(p_trace, "a");
        if (!trace) rc = cb_fail(&e, CB_E_IO, p_trace, "cannot open the agent trace");
        llm.trace = trace;
        char *start = update ? strdup(old_tex) : cb_draft_offline(&in, &bib);
        cb_paper_agent_init(&agent, &in, &llm, &bib, paper_dir, start, update);
        agent.review = review;
        free(start);
        if (arxiv_url) snprintf(agent.cite.arxiv_url, sizeof agent.cite.arxiv_url, "%s", arxiv_url);
        if (s2_url) snprintf(agent.cite.s2_url, sizeof agent.cite.s2_url, "%s", s2_url);
        agent.cite.http.max_retries = llm.http.max_retries;
        agent.cite.http.backoff_ms = llm.http.backoff_ms;
        agent.cite.http.log = stderr;
        agent.cite.http.log_tool = tool;
        if (ep.timeout_s > 0) agent.cite.http.timeout_ms = (long)(ep.timeout_s * 1000);
        if (rc == CB_OK && !quiet) fprintf(stderr, "cb-paper: drafting with %s at %s\n", llm.model, llm.base_url);
        if (rc == CB_OK) rc = cb_paper_agent_run(&agent, &e);
        if (rc == CB_OK) { tex = agent.tex; agent.tex = NULL; }
        if (trace) fclose(trace);
    }
    /* the draft must compile before it replaces the previous one */
    char *bib_text = rc == CB_OK ? cb_bib_text(&bib) : NULL;
    char pdf_tmp[PATH_MAX + 8];
    snprintf(pdf_tmp, sizeof pdf_tmp, "%s/.paper.pdf.new", paper_dir);
    if (rc == CB_OK) rc = cb_latex_compile(tex, bib_text, exists(p_fig) ? p_fig : NULL, pdf_tmp, NULL, &e);
    json_t *untraced = NULL;
    if (rc == CB_OK) {
        untraced = cb_numbers_untraced(tex, &in.numbers);
        int auto_version = json_is_true(json_object_get(in.paper, "auto_version"));
        int max_versions = (int)json_integer_value(json_object_get(in.paper, "max_versions"));
        if (auto_version) rc = cb_paper_save_version(paper_dir, "v", max_versions, &e);
        if (rc == CB_OK) rc = cb_atomic_write(p_bib, bib_text, strlen(bib_text), &e);
        if (rc == CB_OK) rc = cb_atomic_write(p_tex, tex, strlen(tex), &e);
        if (rc == CB_OK && rename(pdf_tmp, p_pdf) != 0) rc = cb_fail(&e, CB_E_IO, p_pdf, "cannot put the PDF in place");
    }
    unlink(pdf_tmp);
    if (rc != CB_OK) {
        cb_redact(e.msg, sizeof e.msg, llm.key);
        int status = cb_cli_report(tool, &e);
        /* an offline draft that does not compile is caramba's fault, not the input's */
        if (!online && e.code == CB_E_INVALID && strstr(e.msg, "pdflatex")) status = CB_E_RUNTIME;
        free(tex); free(bib_text); free(old_tex); cb_bib_free(&bib); cb_paper_agent_free(&agent); cb_paper_inputs_free(&in);
        json_decref(untraced);
        json_decref(review);
        return status;
    }
    size_t i;
    json_t *x;
    json_array_foreach(untraced, i, x)
        fprintf(stderr, "cb-paper: %s:%d: the number %s is not in any result file\n", p_tex,
                (int)json_integer_value(json_object_get(x, "line")), json_string_value(json_object_get(x, "text")));
    json_t *summary = cb_doc_new("paper_draft");
    json_object_set_new(summary, "paper_dir", json_string(paper_dir));
    json_object_set_new(summary, "mode", json_string(mode));
    json_object_set_new(summary, "update", json_boolean(update));
    json_object_set_new(summary, "citations", json_integer((json_int_t)cb_bib_count(&bib)));
    json_object_set_new(summary, "figures", json_integer((json_int_t)json_array_size(in.pngs)));
    json_object_set_new(summary, "result_tables", json_integer((json_int_t)json_array_size(in.csvs)));
    json_object_set_new(summary, "untraced_numbers", json_incref(untraced));
    if (online) {
        json_object_set_new(summary, "model", json_string(llm.model));
        json_object_set_new(summary, "steps", json_integer(llm.steps));
        json_object_set_new(summary, "stopped_by", json_string(llm.stopped_by));
        json_object_set_new(summary, "prompt_tokens", json_integer(llm.prompt_tokens));
        json_object_set_new(summary, "completion_tokens", json_integer(llm.completion_tokens));
        if (llm.price_prompt_per_1m > 0 || llm.price_completion_per_1m > 0)
            json_object_set_new(summary, "cost", json_real((double)llm.prompt_tokens * llm.price_prompt_per_1m / 1e6 +
                                                          (double)llm.completion_tokens * llm.price_completion_per_1m / 1e6));
        json_object_set_new(summary, "search_errors", json_integer(agent.n_search_errors));
    }
    rc = cb_doc_save(summary, NULL, &e);
    json_decref(summary);
    int n_untraced = (int)json_array_size(untraced);
    json_decref(untraced);
    free(tex); free(bib_text); free(old_tex); cb_bib_free(&bib); cb_paper_agent_free(&agent); cb_paper_inputs_free(&in);
    json_decref(review);
    if (rc != CB_OK) return cb_cli_report(tool, &e);
    rc = cb_cli_close_stdout(tool);
    return rc ? rc : n_untraced ? CB_E_VERDICT : CB_OK;
}
