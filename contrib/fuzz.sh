#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for SECONDS each (default 60),
# with cargo fuzz on the nightly toolchain; --smoke: skip, saying why, when
# nightly or cargo-fuzz cannot be had (CI's machines have only stable).
#
#   contrib/fuzz.sh [--smoke] [SECONDS] [TARGET...]
#
# Inputs that grow coverage are added to fuzz/corpus/TARGET/ (commit the
# good ones). A crash stops the run and leaves the input in
# fuzz/artifacts/TARGET/: fix the bug, then copy it to
# fuzz/regressions/TARGET/ so that `cargo test` replays it forever.
# Each input gets 10 s, the process 1 GiB (ASan included), and no single allocation may exceed
# 64 MiB: a 4 GiB length prefix must not become a 4 GiB buffer.
set -euo pipefail
cd "$(dirname "$0")/.."

smoke=0
if [ "${1:-}" = --smoke ]; then smoke=1; shift; fi
seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(metainfo wire tracker_http tracker_udp ctl resume)

unavailable() {
    if [ "$smoke" = 1 ]; then
        echo "fuzz: skipped: $*" >&2
        exit 0
    fi
    echo "fuzz: $*" >&2
    exit 1
}
rustup run nightly rustc --version >/dev/null 2>&1 ||
    timeout 300 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
    unavailable "no nightly toolchain (rustup toolchain install nightly)"
command -v cargo-fuzz >/dev/null 2>&1 ||
    timeout 600 cargo install cargo-fuzz --locked >/dev/null 2>&1 ||
    unavailable "no cargo-fuzz (cargo install cargo-fuzz)"

for t in "${targets[@]}"; do
    echo "== fuzz $t for ${seconds}s"
    mkdir -p "fuzz/corpus/$t"
    # The corpus directory comes first: new finds go there.
    log="fuzz/artifacts/$t.log"
    mkdir -p fuzz/artifacts
    status=0
    cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=64 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    # libFuzzer's chatter stays in the log; its verdict is the exit status.
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
    if [ "$status" -ne 0 ]; then
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" >&2 || tail -20 "$log" >&2
        echo "fuzz: $t failed (exit $status); log $log, input in fuzz/artifacts/$t/" >&2
        exit 1
    fi
done
