/* cb-data: Tokenizers and datasets. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    return cb_cli_unbuilt("cb-data", "cb-data command [args]", "Tokenizers and datasets", argc, argv);
}
