/* cb-artifacts: Turn benchmark results into tables and charts. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    if (cb_cli_start("cb-artifacts", argc, argv, 0)) return cb_cli_close_stdout("cb-artifacts");
    return cb_cli_unbuilt("cb-artifacts", "cb-artifacts [-o dir] [results]", "Turn benchmark results into tables and charts", argc, argv);
}
