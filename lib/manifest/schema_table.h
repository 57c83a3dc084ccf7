/* schema_table.h: the shape of the declarative schema tables (one cb_schema per manifest
 * object type, one cb_field per field) that both the check and the defaults read. */
#ifndef CB_MANIFEST_SCHEMA_TABLE_H
#define CB_MANIFEST_SCHEMA_TABLE_H

#include <jansson.h>
#include "core/diag.h"

enum cb_kind {
    CB_K_ANY,    /* anything */
    CB_K_SCALAR, /* a string, number or boolean */
    CB_K_INT,    /* a JSON integer */
    CB_K_FLOAT,  /* a number; integers accepted */
    CB_K_BOOL,
    CB_K_STRING,
    CB_K_ENUM,   /* a string among values */
    CB_K_LIST,   /* a list of elem */
    CB_K_MAP,    /* a mapping from names to elem */
    CB_K_OBJECT, /* a mapping checked against schema */
    CB_K_UNION,  /* a mapping whose tag member ("type") picks the schema */
};

/* range: which of min/max bound a number (or, for strings and lists, nothing) */
#define CB_R_MIN 1u      /* value >= min */
#define CB_R_MIN_EXCL 2u /* value > min */
#define CB_R_MAX 4u      /* value <= max */
#define CB_R_MAX_EXCL 8u /* value < max */

/* flags */
#define CB_F_NULLABLE 1u    /* null is accepted (rope_scaling: null) */
#define CB_F_ONE_OR_LIST 2u /* LIST: a single element is accepted too (instrument: jsonl) */
#define CB_F_NONEMPTY 4u    /* LIST, MAP, STRING: must not be empty */
#define CB_F_KEY_IDENT 8u   /* MAP: keys match [A-Za-z_][A-Za-z0-9_]* */
#define CB_F_NODE_ID 16u    /* STRING: a node id, [A-Za-z0-9_.*] only */
#define CB_F_FILE_NAME 32u  /* STRING: usable as a file name: [A-Za-z0-9_.-], not starting with '.' */

struct cb_schema;
struct cb_union;

typedef struct cb_type {
    int kind;                        /* enum cb_kind */
    unsigned flags;                  /* CB_F_* */
    unsigned range;                  /* CB_R_* */
    double min, max;
    int min_len, max_len;            /* LIST: element count bounds (0 = unbounded) */
    const char *const *values;       /* ENUM: NULL-terminated */
    const struct cb_type *elem;      /* LIST, MAP */
    const struct cb_schema *schema;  /* OBJECT */
    const struct cb_union *un;       /* UNION */
    const char *unique_key;          /* LIST of mappings: this member differs between elements */
} cb_type;

typedef struct cb_field {
    const char *name;
    cb_type t;
    int required;                /* must be present wherever it applies */
    const char *def;             /* default as JSON text ("1e-5", "\"cosine\"", "null"); NULL: none */
    const char *def_from;        /* default: a copy of this sibling field */
    const char *when_key;        /* applies only where sibling when_key (given or defaulted) */
    const char *const *when_in;  /*   is one of these (NULL-terminated) */
    const char *needs;           /* applies only where sibling `needs` is given */
} cb_field;

struct cb_check_ctx;

typedef struct cb_schema {
    const char *name;  /* "AttentionLayer", "train", ... (a union variant: its tag value) */
    const cb_field *fields;
    int n_fields;
    /* cross-field checks after the fields passed their own (NULL: none) */
    void (*check)(struct cb_check_ctx *c, const json_t *obj, const char *path);
    /* derived defaults, run after the constant ones that apply everywhere (NULL: none) */
    void (*fill)(json_t *obj);
} cb_schema;

typedef struct cb_union {
    const char *what;          /* "node type", "verify type", for messages */
    const char *tag;           /* the member that picks the variant: "type" */
    const struct cb_schema *const *variants;
    int n_variants;
} cb_union;

/* The check's running state. */
typedef struct cb_check_ctx {
    cb_diags *d;
    int n_errors;
    int partial; /* checking overrides: no required fields, no applicability rules */
} cb_check_ctx;

/* Record "path: message" at where, once per (where, message). */
void cb_schema_errorf(cb_check_ctx *c, const char *where, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Check one value against a type; path and where name it in errors. */
void cb_schema_check_value(cb_check_ctx *c, const json_t *v, const cb_type *t, const char *path,
                           const char *where);
/* Check a mapping against a schema. */
void cb_schema_check_object(cb_check_ctx *c, const json_t *obj, const cb_schema *s,
                            const char *path);
const cb_field *cb_schema_field(const cb_schema *s, const char *name);
const cb_schema *cb_schema_variant(const cb_union *u, const char *tag_value);
/* obj's value for key, or the default the schema gives it there; NULL when neither.
 * The result is owned by the caller (json_decref). */
json_t *cb_schema_effective(const json_t *obj, const cb_schema *s, const char *key);
/* "a.b" / "a[3]" into buf */
const char *cb_path_key(char *buf, size_t n, const char *base, const char *key);
const char *cb_path_index(char *buf, size_t n, const char *base, size_t i);
/* Fill defaults of obj by schema; recurse into present object-valued fields. */
void cb_schema_fill_object(json_t *obj, const cb_schema *s, int recurse);
int cb_schema_fill_union(json_t *obj, const cb_union *u, int recurse);

/* Run references inside one group (or the top-level runs): train.teacher.run,
 * train.student.run, from_run and generate.draft.run name an earlier run; benchmark
 * models are teacher, student or a run id. */
void cb_schema_check_refs(cb_check_ctx *c, const json_t *runs, const json_t *benchmarks, const char *runs_path,
                          const char *bench_path);

/* The defaults section: each key a run key (seed, steps, mode) or a train option. */
void cb_schema_check_defaults(cb_check_ctx *c, const json_t *defaults, const char *path);

/* The tables (schema_model.c, schema_run.c, schema_bench.c, schema_paper.c,
 * schema_manifest.c). */
extern const cb_union cb_node_union;      /* topology and layer nodes */
extern const cb_schema cb_model_schema, cb_embedder_schema, cb_head_schema,
    cb_rope_scaling_schema;
extern const cb_schema cb_group_schema, cb_run_schema, cb_train_schema, cb_model_ref_schema,
    cb_generate_schema;
extern const cb_union cb_verify_union;
extern const cb_schema cb_tokenizer_schema, cb_eval_case_schema;
extern const cb_schema cb_benchmark_schema;
extern const cb_union cb_benchmark_config_union;
extern const cb_schema cb_paper_schema, cb_citations_schema, cb_review_schema,
    cb_research_schema;
extern const cb_schema cb_manifest_schema;

/* Table-writing shorthands. */
#define CB_NFIELDS(a) (int)(sizeof(a) / sizeof((a)[0]))
#define CB_VALUES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define T_ANY {.kind = CB_K_ANY}
#define T_SCALAR {.kind = CB_K_SCALAR}
#define T_INT {.kind = CB_K_INT}
#define T_INT_GE(lo) {.kind = CB_K_INT, .range = CB_R_MIN, .min = (lo)}
#define T_FLOAT {.kind = CB_K_FLOAT}
#define T_FLOAT_GE(lo) {.kind = CB_K_FLOAT, .range = CB_R_MIN, .min = (lo)}
#define T_FLOAT_GT(lo) {.kind = CB_K_FLOAT, .range = CB_R_MIN_EXCL, .min = (lo)}
/* [lo, hi] and [lo, hi) */
#define T_FLOAT_IN(lo, hi) {.kind = CB_K_FLOAT, .range = CB_R_MIN | CB_R_MAX, .min = (lo), .max = (hi)}
#define T_FLOAT_IN_HALF(lo, hi) \
    {.kind = CB_K_FLOAT, .range = CB_R_MIN | CB_R_MAX_EXCL, .min = (lo), .max = (hi)}
#define T_BOOL {.kind = CB_K_BOOL}
#define T_STRING {.kind = CB_K_STRING}
#define T_NAME {.kind = CB_K_STRING, .flags = CB_F_NONEMPTY}
#define T_FILE_NAME {.kind = CB_K_STRING, .flags = CB_F_NONEMPTY | CB_F_FILE_NAME}
#define T_ENUM(...) {.kind = CB_K_ENUM, .values = CB_VALUES(__VA_ARGS__)}
#define T_LIST(elemt) {.kind = CB_K_LIST, .elem = &(const cb_type)elemt}
#define T_LIST_NE(elemt) {.kind = CB_K_LIST, .flags = CB_F_NONEMPTY, .elem = &(const cb_type)elemt}
#define T_LIST_UNIQUE(elemt, key) {.kind = CB_K_LIST, .elem = &(const cb_type)elemt, .unique_key = (key)}
#define T_OBJ(s) {.kind = CB_K_OBJECT, .schema = &(s)}
#define T_UNION(u) {.kind = CB_K_UNION, .un = &(u)}
#define FIELD(n, ty, ...) {.name = (n), .t = ty, __VA_ARGS__}

#endif
