#!/usr/bin/env bash
# Runs each fuse-tests/t-*.sh end-to-end test with a time limit, in its own
# scratch directory, and prints one line per test and a summary.
# `run.sh t-aria2 t-stream` runs just those.
#
# Each test gets: SWARMFS (the release binary), SCRATCH (a fresh directory,
# removed afterwards) and the helpers in fuse-tests/lib.sh. A test passes
# when it exits 0.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
limit="${FUSE_TEST_TIMEOUT:-300}"

cargo build --release --quiet --manifest-path "$root/Cargo.toml" || exit 1
export SWARMFS="$root/target/release/swarmfs"

passed=0
failed=0
tests=("$here"/t-*.sh)
if [ $# -gt 0 ]; then
    tests=()
    for name in "$@"; do tests+=("$here/${name%.sh}.sh"); done
fi
for test in "${tests[@]}"; do
    [ -e "$test" ] || continue
    name="$(basename "$test" .sh)"
    SCRATCH="$(mktemp -d "/tmp/swarmfs-$name.XXXXXX")"
    export SCRATCH
    log="$SCRATCH.log"
    if timeout --kill-after=10 "$limit" bash "$test" >"$log" 2>&1; then
        echo "PASS $name: $(tail -1 "$log")"
        passed=$((passed + 1))
    else
        echo "FAIL $name (exit $?); its output:"
        sed 's/^/    /' "$log"
        failed=$((failed + 1))
    fi
    rm -rf "$SCRATCH" "$log"
done
echo "fuse-tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
