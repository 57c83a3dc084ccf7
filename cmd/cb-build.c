/* cb-build: Build a model directory from a plan. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    return cb_cli_unbuilt("cb-build", "cb-build [-o dir] [--from hf_dir] [--export-hf dir] [plan]", "Build a model directory from a plan", argc, argv);
}
