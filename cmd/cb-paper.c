/* cb-paper: Draft a paper from a manifest and its artifacts. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    if (cb_cli_start("cb-paper", argc, argv, 0)) return cb_cli_close_stdout("cb-paper");
    return cb_cli_unbuilt("cb-paper", "cb-paper [-o dir] manifest", "Draft a paper from a manifest and its artifacts", argc, argv);
}
