/* cb-review: review a draft (structural checks offline, the reviewer agent online) and
 * propose experiments whose manifests cb-validate accepts (man/cb-review.1). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/json_doc.h"
#include "paper/chat.h"
#include "paper/draft.h"
#include "paper/endpoint.h"
#include "paper/review.h"

#pragma GCC diagnostic ignored "-Wformat-truncation"

static const char usage[] =
    "usage: cb-review [-q] [-p dir] [-o file] [-r dir] [--offline] [--strictness level]\n"
    "       [--persona persona] [endpoint options] manifest\n"
    "Review the draft paper.tex of a manifest's paper folder and write review.json (kind\n"
    "review): score, action, strengths, weaknesses, requested changes, proposed experiments\n"
    "(each manifest written as proposed_NAME.yml only when cb-validate accepts it).\n"
    "  -p, --paper-dir dir      the paper folder (default as cb-paper's)\n"
    "  -o, --output file        the review (default: PAPER_DIR/review.json; - for stdout)\n"
    "  -r, --results dir        the result files (default: the paper folder's parent)\n"
    "      --offline            the structural checks only, no model\n"
    "      --strictness s       workshop, conference, journal or top_venue\n"
    "      --persona p          senior_researcher, methodology_expert or practitioner\n"
    "      --base-url url  --model name  --temperature t  --api-key-env NAME  --max-steps n\n"
    "      --timeout s  --retries n  --backoff-ms ms\n"
    "  -q, --quiet              no progress lines\n"
    "Exit 0 approved; 1 not approved; 2 usage or I/O; 3 invalid manifest or bad answer;\n"
    "4 unreachable.\n";

enum { O_OFFLINE = 256, O_STRICT, O_PERSONA };

static int one_of(const char *v, const char *const *list) {
    for (int i = 0; list[i]; i++) if (!strcmp(v, list[i])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *tool = "cb-review";
    if (cb_cli_start(tool, argc, argv, 0)) return cb_cli_close_stdout(tool);
    const char *paper_opt = NULL, *out_opt = NULL, *results = NULL, *strictness = NULL, *persona = NULL;
    int offline = 0, quiet = 0;
    cb_endpoint_opts ep;
    cb_endpoint_opts_init(&ep);
    static const char *const stricts[] = {"workshop", "conference", "journal", "top_venue", NULL};
    static const char *const personas[] = {"senior_researcher", "methodology_expert", "practitioner", NULL};
    static const struct option opts[] = {
        {"paper-dir", required_argument, NULL, 'p'}, {"output", required_argument, NULL, 'o'},
        {"results", required_argument, NULL, 'r'},   {"offline", no_argument, NULL, O_OFFLINE},
        {"strictness", required_argument, NULL, O_STRICT}, {"persona", required_argument, NULL, O_PERSONA},
        CB_ENDPOINT_LONGOPTS,
        {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    opterr = 0;
    cb_error e;
    cb_error_clear(&e);
    while ((c = getopt_long(argc, argv, "p:o:r:qh", opts, NULL)) != -1) {
        int taken = cb_endpoint_opt(&ep, c, optarg, &e);
        if (taken < 0) return cb_cli_usage_error(tool, "%s: %s", e.where, e.msg);
        if (taken) continue;
        switch (c) {
        case 'p': paper_opt = optarg; break;
        case 'o': out_opt = optarg; break;
        case 'r': results = optarg; break;
        case 'q': quiet = 1; break;
        case O_OFFLINE: offline = 1; break;
        case O_STRICT:
            if (!one_of(optarg, stricts)) return cb_cli_usage_error(tool, "--strictness: workshop, conference, journal or top_venue, got '%s'", optarg);
            strictness = optarg;
            break;
        case O_PERSONA:
            if (!one_of(optarg, personas)) return cb_cli_usage_error(tool, "--persona: senior_researcher, methodology_expert or practitioner, got '%s'", optarg);
            persona = optarg;
            break;
        case 'h': fputs(usage, stdout); return cb_cli_close_stdout(tool);
        default: return cb_cli_usage_error(tool, "unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 1) return cb_cli_usage_error(tool, "expected one manifest file");

    cb_diags d;
    cb_diags_init(&d);
    cb_paper_inputs in;
    int rc = cb_paper_inputs_load(&in, argv[optind], NULL, &d, &e);
    if (rc != CB_OK) {
        if (d.n == 0) { cb_paper_inputs_free(&in); return cb_cli_report(tool, &e); }
        for (int i = 0; i < d.n; i++) {
            if (!d.items[i].where[0]) snprintf(d.items[i].where, sizeof d.items[i].where, "%s", argv[optind]);
            cb_cli_report(tool, &d.items[i]);
        }
        rc = cb_diags_status(&d) ? cb_diags_status(&d) : rc;
        cb_diags_free(&d);
        cb_paper_inputs_free(&in);
        return rc;
    }
    char paper_dir[PATH_MAX], results_dir[PATH_MAX], out_path[PATH_MAX], tex_path[PATH_MAX];
    cb_paper_dirs(in.plan, in.paper, paper_opt, results, paper_dir, sizeof paper_dir, results_dir, sizeof results_dir);
    snprintf(out_path, sizeof out_path, "%s", out_opt ? out_opt : "");
    if (!out_opt) snprintf(out_path, sizeof out_path, "%s/review.json", paper_dir);
    snprintf(tex_path, sizeof tex_path, "%s/paper.tex", paper_dir);
    cb_paper_inputs_free(&in);
    rc = cb_paper_inputs_load(&in, argv[optind], results_dir, &d, &e);
    cb_diags_free(&d);
    char *tex = NULL;
    size_t tex_len = 0;
    if (rc == CB_OK) rc = cb_read_file(tex_path, 64u << 20, &tex, &tex_len, &e);
    if (rc != CB_OK) { cb_paper_inputs_free(&in); return cb_cli_report(tool, &e); }
    if (strictness) json_object_set_new(in.review, "strictness", json_string(strictness));
    if (persona) json_object_set_new(in.review, "reviewer_persona", json_string(persona));

    cb_llm llm;
    cb_llm_init(&llm);
    llm.temperature = 0.3;
    cb_endpoint_apply(&ep, in.review, &llm, tool);
    int online = !offline && llm.key != NULL;
    if (!offline && !online && !quiet)
        fprintf(stderr, "cb-review: no key in $%s: structural checks only\n",
                json_string_value(json_object_get(in.review, "api_key_env")));

    json_t *checks = cb_review_checks(tex, &in);
    json_t *review = NULL;
    cb_review_agent agent;
    memset(&agent, 0, sizeof agent);
    if (!online) {
        review = cb_review_offline(checks, &in);
    } else {
        char trace_path[PATH_MAX];
        snprintf(trace_path, sizeof trace_path, "%s/review_trace.jsonl", paper_dir);
        llm.trace = fopen(trace_path, "a");
        if (!llm.trace) rc = cb_fail(&e, CB_E_IO, trace_path, "cannot open the agent trace");
        if (rc == CB_OK && !quiet) fprintf(stderr, "cb-review: reviewing with %s at %s\n", llm.model, llm.base_url);
        cb_review_agent_init(&agent, &in, &llm, tex, checks);
        if (rc == CB_OK) rc = cb_review_agent_run(&agent, &review, &e);
        if (llm.trace) fclose(llm.trace);
    }
    if (rc == CB_OK) {
        json_object_set_new(review, "paper", json_string(tex_path));
        /* proposed manifests go beside the review */
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", strcmp(out_path, "-") == 0 ? paper_dir : out_path);
        if (strcmp(out_path, "-") != 0) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
        }
        rc = cb_review_write_proposals(review, dir, &e);
    }
    if (rc == CB_OK) rc = cb_doc_save(review, out_path, &e);
    int approved = review && json_is_true(json_object_get(review, "approved"));
    if (rc == CB_OK && !quiet && strcmp(out_path, "-") != 0)
        fprintf(stderr, "cb-review: score %.1f, %s%s\n", json_number_value(json_object_get(review, "score")),
                json_string_value(json_object_get(review, "action")), approved ? " (approved)" : "");
    json_decref(review);
    json_decref(checks);
    if (online) cb_review_agent_free(&agent);
    free(tex);
    cb_paper_inputs_free(&in);
    if (rc != CB_OK) {
        cb_redact(e.msg, sizeof e.msg, llm.key);
        return cb_cli_report(tool, &e);
    }
    rc = cb_cli_close_stdout(tool);
    return rc ? rc : approved ? CB_OK : CB_E_VERDICT;
}
