# Helpers for fuse-tests/t-*.sh: sourced, not run.

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

# Makes a directory of files with random content under $1.
make_content() {
    mkdir -p "$1/sub"
    head -c 300000 /dev/urandom >"$1/one.bin"
    head -c 70001 /dev/urandom >"$1/sub/two.bin"
    : >"$1/empty"
}
