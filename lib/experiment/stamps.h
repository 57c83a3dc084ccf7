/* stamps.h: what a stage's result depends on, as one SHA-256 (its manifest section, the
 * tool's --version, the files it reads, the hashes of the stages before it), and the stamp
 * files that let `cb run` redo only the stages whose inputs changed (man/cb.1, "run").
 *   EXP/stamps/ID.want  the hash the stage's inputs have now (rewritten only when it changes)
 *   EXP/stamps/ID.done  the hash its outputs were made from (written after it succeeded)
 * A stage is up to date when .done holds the same hash as .want and its output exists. */
#ifndef CB_EXPERIMENT_STAMPS_H
#define CB_EXPERIMENT_STAMPS_H

#include <jansson.h>
#include "core/error.h"
#include "core/sha256.h"

/* Files up to this size are hashed by content; larger ones (checkpoints of billions of
 * parameters) by size and modification time, which a rewrite changes too. */
#define CB_STAMP_CONTENT_MAX ((long long)64 << 20)

/* The JSON value as text with its annotations ("@loc": where each value was written)
 * removed and keys sorted: moving a section or editing a comment leaves it unchanged,
 * a changed value changes it. Caller frees. NULL on allocation failure. */
char *cb_stamp_canonical_json(const json_t *v);

/* Feed a labelled item into a stage hash: "label\0value\0", so "ab"+"c" and "a"+"bc" differ. */
void cb_stamp_add(cb_sha256 *s, const char *label, const char *value);
void cb_stamp_add_json(cb_sha256 *s, const char *label, const json_t *v);

/* Feed what a file or directory holds: content for small files, size and mtime for large
 * ones, each file of a directory (recursively, in name order) the same way; "missing" for
 * a path that is not there. */
void cb_stamp_add_path(cb_sha256 *s, const char *label, const char *path);

/* The hex digest; s is finished. */
void cb_stamp_hex(cb_sha256 *s, char hex[65]);

/* 1 when path holds exactly hash (a stamp file), else 0. */
int cb_stamp_matches(const char *path, const char *hash);

/* Write hash into path atomically, unless it holds it already (its mtime then stays, so
 * make sees no change). */
int cb_stamp_write(const char *path, const char *hash, cb_error *e);

#endif
