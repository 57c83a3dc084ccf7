#!/usr/bin/env bash
# Every tool of cmd/ answers --help on stdout with exit 0, and its usage lines say what
# the SYNOPSIS of its man page says (whitespace aside).
. "$(dirname "$0")/lib.sh"

norm() { tr -s ' \t\n' ' ' | sed 's/^ //; s/ $//'; }

# the tools are those of cmd/*.c: one not built is a failure, not a tool to leave out
for src in cmd/*.c; do
    t=$(basename "$src" .c)
    tool=$CB_BIN/$t
    if [ ! -x "$tool" ]; then not_ok "$t.built" "no $tool (cmd/$t.c is not built)"; continue; fi
    run "$tool" --help
    expect_status "$t.help_exit" 0
    if [ -s "$TMP/err" ]; then not_ok "$t.help_quiet" "--help wrote to stderr"; else ok "$t.help_quiet"; fi
    if [ ! -f "man/$t.1" ]; then not_ok "$t.man" "no man/$t.1"; continue; fi
    # usage lines: "usage: ..." then continuation lines indented by spaces
    help_syn=$(awk 'NR==1 && /^usage: / {sub(/^usage: /, ""); print; on=1; next}
                    on && /^       [^ ]/ {print; next} {on=0}' "$TMP/out" | norm)
    man_syn=$(MANWIDTH=1000 mandoc -Tascii -O width=1000 "man/$t.1" | col -b |
              awk '/^SYNOPSIS/ {on=1; next} /^[A-Z]/ {on=0} on' | norm)
    if [ -n "$help_syn" ] && [ "$help_syn" = "$man_syn" ]; then ok "$t.synopsis"; else
        not_ok "$t.synopsis" "--help says '$help_syn', man page says '$man_syn'"; fi
done
