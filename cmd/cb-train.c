/* cb-train: Train a model from a plan run. The capability lands with its issue; until then the tool
 * exists, answers --help, and says it is not in this build (exit 2). */
#include "cli/cli.h"

int main(int argc, char **argv) {
    return cb_cli_unbuilt("cb-train", "cb-train [-o dir] [--resume dir] [plan]", "Train a model from a plan run", argc, argv);
}
