/* cb-verify: Compare a student model with its teacher. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    if (cb_cli_start("cb-verify", argc, argv, 0)) return cb_cli_close_stdout("cb-verify");
    return cb_cli_unbuilt("cb-verify", "cb-verify [-o file] teacher student", "Compare a student model with its teacher", argc, argv);
}
