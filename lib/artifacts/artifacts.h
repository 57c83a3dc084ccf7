/* artifacts.h: from an experiment's results to paper-ready artifacts (docs/DESIGN.md
 * section 2): the inputs (cb-bench's JSON lines, cb-verify's verify.json, cb-train's run
 * directories) gathered, the comparison of the models (teacher against student), and the
 * files written from them: report.json, perplexity.csv, latency.csv, memory.csv, the
 * gnuplot charts, tables.tex and tables.md. */
#ifndef CB_ARTIFACTS_ARTIFACTS_H
#define CB_ARTIFACTS_ARTIFACTS_H

#include <jansson.h>
#include "core/error.h"

/* Everything read, as JSON arrays (owned). */
typedef struct cb_artifacts_input {
    json_t *bench;    /* cb-bench records (kind "bench"), skipped points included */
    json_t *verify;   /* {"path", "doc"} per verify.json */
    json_t *training; /* per run: {"run", "path", "rows": [metrics lines], "run_json": {...} or null} */
    json_t *files;    /* {"path", "sha256", "what"} per input */
} cb_artifacts_input;

void cb_artifacts_input_init(cb_artifacts_input *in);
void cb_artifacts_input_free(cb_artifacts_input *in);

/* Read one input: a directory is a training run (DIR/metrics.jsonl, DIR/run.json if there);
 * a file holding one JSON document of kind verify is a verification; any other file is
 * JSON lines, each a cb-bench record or a metrics line. A file that is none of these, or a
 * line that is not JSON: CB_E_INVALID naming path:line. Unreadable: CB_E_IO. */
int cb_artifacts_read(cb_artifacts_input *in, const char *path, cb_error *e);

/* The models in the order they first appear in the records, and the reference (baseline)
 * of the comparisons: "teacher" where there is one, else the first. */
json_t *cb_artifacts_models(const cb_artifacts_input *in);
const char *cb_artifacts_reference(const json_t *models);

/* The headline comparison, one row per metric:
 *   {"metric", "unit", "better": "lower"|"higher", "values": {model: v}, "change": {model: v / ref}}
 * perplexity (per perplexity benchmark), decode throughput and prefill time at the longest
 * prompt every model measured, KV cache bytes per token per cache kind, peak resident memory,
 * accuracy and custom suite scores. */
json_t *cb_artifacts_compare(const cb_artifacts_input *in, const json_t *models);

/* CSV files (header always, one row per measured point; skipped points left out). */
int cb_artifacts_write_csvs(const cb_artifacts_input *in, const char *dir, cb_error *e);

/* tables.tex (booktabs) and tables.md from the comparison (and the sample texts). */
int cb_artifacts_write_tables(const json_t *compare, const json_t *models, const cb_artifacts_input *in,
                              const char *caption, const char *dir, cb_error *e);

/* The gnuplot charts (pngcairo): summary.png (perplexity, throughput and KV cache panels),
 * latency_vs_context.png, memory_scaling.png; their scripts and data stay in dir/plots/.
 * plots (an object, filled): file name -> "drawn" or why not. A chart without data is left
 * out (CB_OK). gnuplot missing or failing: CB_E_RUNTIME with one line saying which and why
 * (the charts already drawn stay). gnuplot: the program to run (NULL: "gnuplot" on PATH). */
#define CB_SUMMARY_PNG_W 1500
#define CB_SUMMARY_PNG_H 500
#define CB_CHART_PNG_W 900
#define CB_CHART_PNG_H 600
int cb_artifacts_plot(const cb_artifacts_input *in, const json_t *compare, const json_t *models, const char *dir,
                      const char *gnuplot, json_t *plots, cb_error *e);

/* report.json's document (kind "report"). plan may be NULL; plots as filled above. */
typedef struct cb_report_meta {
    const char *name;       /* the experiment's name */
    const char *created;    /* ISO 8601 UTC */
    const json_t *plan;     /* the plan document, or NULL */
    const char *group;      /* or NULL */
    double wall_s;          /* cb-artifacts' own time */
} cb_report_meta;
json_t *cb_artifacts_report(const cb_artifacts_input *in, const json_t *compare, const json_t *models,
                            const json_t *plots, const cb_report_meta *meta);

/* The git revision of the repository holding dir ({"revision", "dirty"}), or null. */
json_t *cb_artifacts_git_revision(const char *dir);

#endif
