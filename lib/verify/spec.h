/* spec.h: what cb-verify checks, read from a plan: the run's verify block (cb-manifest(5))
 * with its defaults filled in, and the data a compare or fidelity check reads (the run's
 * train data, split, batch shape), as cb-train would read them. */
#ifndef CB_VERIFY_SPEC_H
#define CB_VERIFY_SPEC_H

#include <jansson.h>
#include <stdint.h>
#include "core/error.h"

enum cb_verify_type { CB_VERIFY_COMPARE = 0, CB_VERIFY_FIDELITY, CB_VERIFY_EVAL };
enum cb_verify_split { CB_SPLIT_AUTO = 0, CB_SPLIT_TRAIN, CB_SPLIT_VAL };

#define CB_VERIFY_PATH_MAX 4096

/* L1 thresholds of one level (attention outputs or logits). A level the block does not
 * name is measured and reported, not checked (given 0). */
typedef struct cb_l1_limits {
    int given;
    double max_mean_l1, max_max_l1;
} cb_l1_limits;

typedef struct cb_verify_spec {
    char group[256], run[256];
    int type;                   /* enum cb_verify_type */
    json_t *block;              /* the verify block, defaults filled (owned) */
    char where[512];            /* the block's manifest location */
    int fail_fast;
    /* compare and fidelity */
    int batches;
    cb_l1_limits attention, logits;
    int split;                  /* enum cb_verify_split (fidelity; compare reads auto) */
    double max_delta_nll, max_ppl_ratio;
    /* eval */
    char tokenizer[CB_VERIFY_PATH_MAX]; /* a cb_tokenizer_open spec */
    int max_new_tokens, context_window;
    int has_min_student_accuracy, has_max_accuracy_drop;
    double min_student_accuracy, max_accuracy_drop;
    const json_t *cases;        /* the block's cases (borrowed from block) */
    /* the run's data, as cb-train reads it */
    char data[CB_VERIFY_PATH_MAX], val_split[CB_VERIFY_PATH_MAX];
    double val_frac;
    int batch_size, block_size;
} cb_verify_spec;

/* Read the verify block of the run that group and run choose (as cb-train chooses,
 * train/config.h cb_train_find_run). A run without a verify block is CB_E_USAGE; a block
 * that fails the schema (an unknown type, a threshold out of range) CB_E_INVALID at its
 * manifest line. */
int cb_verify_spec_read(cb_verify_spec *s, const json_t *plan, const char *group, const char *run, cb_error *e);
void cb_verify_spec_free(cb_verify_spec *s);

/* The tokenizer a manifest's tokenizer mapping names ({type: byte}, {type: tiktoken,
 * encoding: E}, {type: hf, path: P}, {type: gpt2[, path: P]}) as a name cb_tokenizer_open
 * resolves (tokenizer/load.h), into spec (n bytes). The eval block and cb-bench's accuracy
 * and generation benchmarks carry such a mapping. */
int cb_verify_tokenizer_spec(const json_t *mapping, char *spec, size_t n, cb_error *e);

const char *cb_verify_type_name(int type);
const char *cb_verify_split_name(int split);

#endif
