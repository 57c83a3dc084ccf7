# fake.sh: sourced by the paper and review tests after lib.sh. Builds tests/fake_api.c
# once into build/ and starts it on 127.0.0.1 with a script of tests/cli/paper/api/.
for need in pdflatex bibtex jq; do
    command -v "$need" >/dev/null || { echo "skip - $SCRIPT: $need not installed (make deps installs it)"; exit 0; }
done
FAKE_BIN=$CB_ROOT/build/fake_api
if [ ! -x "$FAKE_BIN" ] || [ tests/fake_api.c -nt "$FAKE_BIN" ]; then
    mkdir -p "$CB_ROOT/build"
    ${CC:-cc} -O1 -g -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra \
        -o "$FAKE_BIN.$$" tests/fake_api.c && mv "$FAKE_BIN.$$" "$FAKE_BIN" || { echo "not ok - $SCRIPT.fake_api_build: cc failed"; exit 1; }
fi
export CB_TEST_API_KEY=sk-test-SECRET-123456
export FAKE_API_EXPECT_KEY=$CB_TEST_API_KEY
A=tests/cli/paper/api

# start_fake NAME [MAX_REQUESTS [MAX_SECONDS]]: serve $A/NAME.script; sets FAKE_URL, FAKE_LOG
start_fake() {
    FAKE_LOG=$(mktemp -d "$TMP/fake.XXXXXX")
    "$FAKE_BIN" "$A/$1.script" "$FAKE_LOG/port" "$FAKE_LOG" "${2:-40}" "${3:-40}" 2>"$FAKE_LOG/stderr" &
    FAKE_PID=$!
    for _ in $(seq 200); do [ -s "$FAKE_LOG/port" ] && break; sleep 0.05; done
    FAKE_URL=http://127.0.0.1:$(cat "$FAKE_LOG/port")
}
stop_fake() {
    kill "$FAKE_PID" 2>/dev/null
    wait "$FAKE_PID" 2>/dev/null
}
# the endpoint options for cb-paper and cb-review against the fake server
fake_opts() {
    echo --base-url "$FAKE_URL/v1" --arxiv-url "$FAKE_URL/arxiv" --semantic-scholar-url "$FAKE_URL/s2" --backoff-ms 100
}
# no_key NAME PATH...: the key appears in none of the files under PATH (and stdout, stderr)
no_key() {
    local name=$1; shift
    if grep -rqF -- "$CB_TEST_API_KEY" "$@" "$TMP/out" "$TMP/err" 2>/dev/null; then
        not_ok "$name" "the key appears in $(grep -rlF -- "$CB_TEST_API_KEY" "$@" "$TMP/out" "$TMP/err" | head -3 | tr '\n' ' ')"
    else ok "$name"; fi
}
# the endpoint options for cb-review (no citation services)
review_opts() {
    echo --base-url "$FAKE_URL/v1" --backoff-ms 100
}
