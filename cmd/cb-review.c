/* cb-review: Review a paper draft and propose experiments. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    if (cb_cli_start("cb-review", argc, argv, 0)) return cb_cli_close_stdout("cb-review");
    return cb_cli_unbuilt("cb-review", "cb-review [-o file] paper_dir", "Review a paper draft and propose experiments", argc, argv);
}
