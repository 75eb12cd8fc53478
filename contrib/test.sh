#!/usr/bin/env bash
# Runs every test: cargo's unit and integration tests, then the end-to-end
# tests in fuse-tests/. Needs the Debian packages listed in README.md.
set -uo pipefail
cd "$(dirname "$0")/.."

status=0
echo "== cargo test"
cargo test --all-targets || status=1
echo "== fuse-tests"
bash fuse-tests/run.sh || status=1
# A minute per fuzz target where a nightly toolchain is at hand; skipped,
# with a note, where it is not (the corpus and kept crashers still ran in
# cargo test, through tests/fuzz_corpus.rs).
echo "== fuzz (smoke)"
bash contrib/fuzz.sh --smoke "${FUZZ_SECONDS:-60}" || status=1

if [ "$status" -ne 0 ]; then
    echo "contrib/test.sh: some tests FAILED" >&2
fi
exit "$status"
