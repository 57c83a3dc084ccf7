/* cb-data: tokenizers and datasets. A table of subcommands, each a thin wrapper over
 * lib/tokenizer: encode (text -> ids as a JSON array), decode (ids -> bytes). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "core/atomic_file.h"
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

static const command commands[] = {
    {"encode", "encode --tokenizer T [--special] [-o file] [file]", cmd_encode},
    {"decode", "decode --tokenizer T [-o file] [file]", cmd_decode},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_help(void) {
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("%s" TOOL " %s\n", i == 0 ? "usage: " : "       ", commands[i].usage);
    printf("Tokenizers and datasets.\n"
           "  encode   text (file or stdin) -> token ids, one JSON array on one line\n"
           "  decode   token ids (a JSON array or whitespace-separated) -> the bytes\n"
           "T: a tokenizer.json, a directory with tokenizer.json or encoder.json + vocab.bpe,\n"
           "   a .tiktoken file, r50k_base, p50k_base, cl100k_base, o200k_base, or byte.\n"
           "  --special   special tokens written in the text (<|endoftext|>) become their ids\n");
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

static int cmd_encode(int argc, char **argv) {
    options o;
    int st = parse_options(argc, argv, 1, &o);
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
        if (rc == CB_OK) rc = cb_tokenizer_encode(&t, (const uint8_t *)text, len, o.special ? CB_TOK_SPECIAL : 0, &ids, &e);
        if (rc == CB_OK) rc = cb_ids_format_json(ids.v, ids.n, &out, &e);
        cb_tokenizer_free(&t);
    }
    free(text);
    cb_ids_free(&ids);
    st = rc == CB_OK ? write_output(o.output, &out) : cb_cli_report(TOOL, &e);
    cb_bytes_free(&out);
    return st;
}

static int cmd_decode(int argc, char **argv) {
    options o;
    int st = parse_options(argc, argv, 0, &o);
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
        if (rc == CB_OK) rc = cb_ids_parse(text, len, strcmp(o.input, "-") ? o.input : "<stdin>", &t, &ids, &e);
        if (rc == CB_OK) rc = cb_tokenizer_decode(&t, ids.v, ids.n, &out, &e);
        cb_tokenizer_free(&t);
    }
    free(text);
    cb_ids_free(&ids);
    st = rc == CB_OK ? write_output(o.output, &out) : cb_cli_report(TOOL, &e);
    cb_bytes_free(&out);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 2) return cb_cli_usage_error(TOOL, "a command is required (encode, decode)");
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        print_help();
        return cb_cli_close_stdout(TOOL);
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
    return cb_cli_usage_error(TOOL, "unknown command '%s' (encode, decode)", argv[1]);
}
