/* cb-bench: Benchmark model directories. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    if (cb_cli_start("cb-bench", argc, argv, 0)) return cb_cli_close_stdout("cb-bench");
    return cb_cli_unbuilt("cb-bench", "cb-bench [-o file] model ...", "Benchmark model directories", argc, argv);
}
