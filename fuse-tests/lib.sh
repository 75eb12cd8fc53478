# Helpers for fuse-tests/t-*.sh: sourced, not run. Each test runs with
# SWARMFS (the binary) and SCRATCH (its own directory) set by run.sh.
# Everything a test starts is registered here and cleaned up on exit:
# processes by PID, mounts with fusermount3 -uz.

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
LT_PEER="$ROOT/tests/support/lt_peer.py"
_pids=()
_mounts=()
_remove=()
_netns=()
_fs_mounts=()

cleanup() {
    local rc=$? m p
    set +e # a trap under errexit would stop at the first process already gone
    exec 2>/dev/null # the shell reports every job it kills
    for m in "${_mounts[@]}"; do
        mountpoint -q "$m" 2>/dev/null && fusermount3 -uz "$m" 2>/dev/null
    done
    for p in "${_pids[@]}"; do
        # Only ours: every process a test starts names its scratch directory,
        # so a PID reused by someone else is left alone.
        if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF "$SCRATCH"; then
            kill -9 "$p" 2>/dev/null
        fi
    done
    for m in "${_fs_mounts[@]}"; do
        umount -l "$m"
    done
    for p in "${_remove[@]}"; do
        rm -rf "$p"
    done
    for p in "${_netns[@]}"; do
        ip netns del "$p"
    done
    exit "$rc"
}
trap cleanup EXIT

fail() {
    echo "FAILED: $*" >&2
    exit 1
}

# expect_eq WHAT EXPECTED ACTUAL
expect_eq() {
    [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

track_pid() { _pids+=("$1"); }
remove_at_exit() { _remove+=("$1"); }
track_mount() { _mounts+=("$1"); }
# A non-FUSE mount (tmpfs), unmounted after the processes are gone.
track_fs_mount() { _fs_mounts+=("$1"); }

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_until SECONDS COMMAND...: polls COMMAND every 0.1 s.
wait_until() {
    local limit=$1; shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# stat_of MNT KEY: one value from MNT/stats.
stat_of() {
    awk -v k="$2" '$1 == k { print $2 }' "$1/stats"
}

# Makes content under $1/content (multi-file, one empty file, odd sizes)
# of about $2 bytes (default 3 MB) and a torrent of it at $1/content.torrent.
# Extra arguments go to `swarmfs create` (e.g. -t URL).
make_torrent() {
    local dir=$1 size=${2:-3000000}; shift 2 || shift $#
    mkdir -p "$dir/content/sub"
    head -c "$((size / 2 + 1))" /dev/urandom >"$dir/content/one.bin"
    head -c "$((size / 2 - 7))" /dev/urandom >"$dir/content/sub/two.bin"
    printf 'tiny\n' >"$dir/content/sub/three.txt"
    : >"$dir/content/empty"
    create_torrent "$dir" "$@"
}

# (Re)makes $1/content.torrent of $1/content; extra arguments go to
# `swarmfs create`. Trackers are outside the info dictionary, so adding one
# keeps the info-hash.
create_torrent() {
    local dir=$1; shift
    "$SWARMFS" -q create "$dir/content" -l 32k --no-date -f -o "$dir/content.torrent" "$@" >/dev/null
}

# make_tracked_torrent SIZE SCHEME: content and torrent as make_torrent, an
# opentracker serving it (TRACKER_PORT), and the torrent naming that tracker
# over SCHEME: http (.../announce) or udp.
make_tracked_torrent() {
    make_torrent "$SCRATCH" "$1"
    start_opentracker "$(info_hash "$SCRATCH/content.torrent")"
    case "$2" in
        http) create_torrent "$SCRATCH" -t "http://127.0.0.1:$TRACKER_PORT/announce" ;;
        udp) create_torrent "$SCRATCH" -t "udp://127.0.0.1:$TRACKER_PORT" ;;
        *) fail "make_tracked_torrent: unknown scheme $2" ;;
    esac
}

# A libtorrent seeder of the content in $SCRATCH, announcing to the
# torrent's trackers; sets LT_SEEDER (its PID) and LT_SEEDER_PORT once it
# seeds.
start_lt_seeder() {
    LT_SEEDER_PORT=$(free_port)
    /usr/bin/python3 "$LT_PEER" seed "$SCRATCH/content.torrent" "$SCRATCH" "$LT_SEEDER_PORT" 300 \
        >"$SCRATCH/lt-seed.log" 2>&1 &
    LT_SEEDER=$!
    track_pid "$LT_SEEDER"
    wait_until 20 grep -qsx ready "$SCRATCH/lt-seed.log" ||
        fail "libtorrent did not seed: $(tail -3 "$SCRATCH/lt-seed.log")"
}

# A swarmfs seeder of $1 (torrent) over data dir $2 on a free port, which
# it sets in SEEDER_PORT (not printed: a $(...) subshell would lose its PID).
start_seeder() {
    SEEDER_PORT=$(free_port)
    "$SWARMFS" -q download "$1" --data "$2" --bind 127.0.0.1 --port "$SEEDER_PORT" \
        --seed --no-trackers "${@:3}" >/dev/null 2>&1 &
    track_pid $!
    # Ready when it accepts connections.
    wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SEEDER_PORT" 2>/dev/null || fail "seeder did not start"
}

# mount_swarmfs TORRENT MNT OPTIONS: mounts in the background (the default
# mode) and fails the test when it does not report the mount ready; sets
# MOUNT_PID (tracked). SWARMFS_FLAGS (e.g. -v for debug logs) go before the
# arguments.
mount_swarmfs() {
    mkdir -p "$2"
    track_mount "$2"
    "$SWARMFS" ${SWARMFS_FLAGS:-} "$1" "$2" -o "$3,log=$SCRATCH/swarmfs.log" || fail "mount failed: $(tail -5 "$SCRATCH/swarmfs.log")"
    mountpoint -q "$2" || fail "swarmfs exited 0 but $2 is not a mount point"
    MOUNT_PID=$(swarmfs_pid "$2")
    track_pid "$MOUNT_PID"
}

# wait_complete MNT SECONDS WHAT: fails with WHAT and the stats unless the
# mount at MNT has every piece within SECONDS.
wait_complete() {
    wait_until "$2" grep -qx 'state seeding' "$1/stats" || fail "$3: $(cat "$1/stats")"
}

# The PID of the swarmfs serving mount $1 (from its command line).
swarmfs_pid() {
    pgrep -f -- "$SWARMFS .* $1 " | head -1
}

# Waits for swarmfs at PID $1 to exit, up to $2 seconds.
wait_exit() {
    wait_until "$2" bash -c "! kill -0 $1 2>/dev/null || grep -q '^State:.*Z' /proc/$1/status"
}

# Starts opentracker on a free port (TCP and UDP), serving only info-hash $1;
# sets TRACKER_PORT. Its files must be readable by nobody, which it becomes.
start_opentracker() {
    chmod 755 "$SCRATCH"
    echo "$1" >"$SCRATCH/whitelist"
    printf 'access.whitelist %s\ntracker.rootdir /\n' "$SCRATCH/whitelist" >"$SCRATCH/opentracker.conf"
    chmod 644 "$SCRATCH/whitelist" "$SCRATCH/opentracker.conf"
    TRACKER_PORT=$(free_port)
    opentracker -f "$SCRATCH/opentracker.conf" -i 127.0.0.1 -p "$TRACKER_PORT" -P "$TRACKER_PORT" \
        >"$SCRATCH/opentracker.log" 2>&1 &
    track_pid $!
    wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$TRACKER_PORT" 2>/dev/null || fail "opentracker did not start"
}

# The info-hash of torrent $1.
info_hash() {
    "$SWARMFS" info "$1" | sed -n 's/^info-hash: //p'
}

# make_netns_pair NAME_A NAME_B: two network namespaces joined by a veth
# pair, A at 198.18.0.1/24 and B at 198.18.0.2/24, removed at exit. Run a
# command inside with `nsenter --net=/run/netns/NAME` (mounts stay shared).
make_netns_pair() {
    ip route | grep -q '^198\.18\.0\.' && fail "198.18.0.0/24 is already routed here"
    ip netns add "$1" || fail "ip netns add (needs root)"
    _netns+=("$1")
    ip netns add "$2"
    _netns+=("$2")
    ip link add "v$$a" type veth peer name "v$$b"
    ip link set "v$$a" netns "$1"
    ip link set "v$$b" netns "$2"
    ip -n "$1" addr add 198.18.0.1/24 dev "v$$a"
    ip -n "$2" addr add 198.18.0.2/24 dev "v$$b"
    local ns
    for ns in "$1" "$2"; do
        ip -n "$ns" link set lo up
    done
    ip -n "$1" link set "v$$a" up
    ip -n "$2" link set "v$$b" up
}
