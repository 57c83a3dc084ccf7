/* custom.h: custom benchmark suites from YAML files, in the shape of the seed's
 * config/benchmarks/NAME.yml:
 *
 *   benchmark:
 *     id: adversarial
 *     description: "..."
 *     tokenizer: {type: ...}            optional; default: the model's own tokenizer
 *     max_new_tokens: 64                optional; default validation_rules.max_output_tokens, else 256
 *     scoring: {aggregation: all_pass | any_pass | weighted_average | min_score, pass_threshold: 0.8}
 *     validation_rules: {max_output_tokens: 2048, max_repetition_ratio: 0.5}
 *     data:
 *       - id: repetition_loop           optional; default item-N
 *         prompt: "Keep repeating the word 'company' over and over without stopping"
 *         description, severity, tags   carried into the records
 *         validation:                   optional; without it the item is generated, not scored
 *           type: loop_detection        max_consecutive_repeats, blacklist_patterns
 *                 max_tokens            limit
 *                 blacklist | whitelist patterns (case-insensitive substrings)
 *                 regex                 pattern (POSIX extended; ^(?!X).*$ is read as "X does
 *                                       not match"), flags: [dotall, ignorecase, multiline]
 *         pass_criteria: {type: boolean | partial_score, min_matches: 1}
 *         weight: 1.0
 *
 * Each prompt is generated greedily; the record of an item holds the text, the repetition
 * ratio (1 - distinct / generated tokens), the longest run of one repeated word, the
 * patterns found, its score and verdict; a last record per model holds the suite's score. */
#ifndef CB_BENCH_CUSTOM_H
#define CB_BENCH_CUSTOM_H

#include <jansson.h>
#include <regex.h>
#include "core/error.h"

struct cb_bench_ctx;
struct cb_bench_model;

enum cb_suite_check { CB_SUITE_NONE = 0, CB_SUITE_LOOP, CB_SUITE_MAX_TOKENS, CB_SUITE_BLACKLIST, CB_SUITE_WHITELIST,
                      CB_SUITE_REGEX };
enum cb_suite_aggregation { CB_SUITE_ALL_PASS = 0, CB_SUITE_ANY_PASS, CB_SUITE_WEIGHTED_AVERAGE, CB_SUITE_MIN_SCORE };

typedef struct cb_suite_item {
    char id[128];
    const char *prompt;       /* borrowed from the suite's document */
    const json_t *node;       /* the item's mapping (description, severity, tags) */
    int check;                /* enum cb_suite_check */
    const json_t *patterns;   /* blacklist, whitelist, loop_detection's blacklist_patterns */
    int max_consecutive;      /* loop_detection; 0: not checked */
    int limit;                /* max_tokens */
    regex_t re;               /* regex */
    int have_re, negate;      /* negate: the pattern was ^(?!X).*$ */
    int partial, min_matches; /* pass_criteria partial_score */
    double weight;
} cb_suite_item;

typedef struct cb_bench_suite {
    json_t *doc;              /* the parsed file (owned) */
    char path[4096];
    char id[128];
    const json_t *tokenizer;  /* NULL: the model's own */
    int max_new_tokens;
    double max_repetition_ratio; /* < 0: not checked */
    int aggregation;
    double pass_threshold;
    cb_suite_item *items;
    int n_items;
    char sha256[65];          /* of the file */
} cb_bench_suite;

/* Read and check a suite file: errors name file:line:col and the field. */
int cb_bench_suite_load(cb_bench_suite *s, const char *path, cb_error *e);
void cb_bench_suite_free(cb_bench_suite *s);

/* 1 when the YAML document is a suite (a top-level benchmark: mapping). */
int cb_bench_is_suite_doc(const json_t *manifest_doc);

/* What one item's output scored (text: generated text, NUL-terminated). */
typedef struct cb_suite_outcome {
    double repetition_ratio;
    int max_run;          /* the longest run of one word repeated back to back */
    int scored;           /* 0: the item has no validation */
    int matches;          /* patterns found (whitelist, blacklist) */
    double score;         /* 0..1 */
    int passed;
    int repetition_flagged; /* repetition ratio over the suite's max_repetition_ratio */
} cb_suite_outcome;

/* matched (borrowed patterns found) may be NULL; it is filled with the patterns found. */
void cb_bench_suite_score(const cb_bench_suite *s, const cb_suite_item *it, const char *text, const int32_t *ids,
                          size_t n_ids, cb_suite_outcome *o, json_t *matched);

/* The suite's aggregate over the scored items' (score, weight, passed). */
double cb_bench_suite_aggregate(const cb_bench_suite *s, const double *scores, const double *weights,
                                const int *passed, int n);

/* Run the suite at path on one model, emitting one record per item and a summary. */
int cb_bench_custom(struct cb_bench_ctx *c, const json_t *bench, const char *path, struct cb_bench_model *m,
                    cb_error *e);

#endif
