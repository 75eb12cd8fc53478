# Ctrl-C on a reader parked in `event` or in a files/ read of data that is
# not there yet returns within half a second, and other requests are not
# held up meanwhile.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 1000000
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
# No peers at all: nothing will ever arrive.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,no_trackers"
pid=$MOUNT_PID

ms() { echo $(($(date +%s%N) / 1000000)); }

# interrupt_reader WHAT COMMAND...: starts COMMAND, lets it park, sends
# SIGINT, and checks it is gone within 500 ms.
interrupt_reader() {
    local what=$1; shift
    # Background jobs start with SIGINT ignored; a terminal's foreground job
    # does not, so restore the default before running the reader.
    python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
        "$@" >/dev/null 2>&1 &
    local pid=$!
    track_pid "$pid"
    sleep 0.5
    kill -0 "$pid" 2>/dev/null || fail "$what: the reader did not block"
    # Meanwhile the mount answers other requests at once.
    local t0
    t0=$(ms)
    cat "$mnt/stats" >/dev/null || fail "$what: cat stats failed ($?)"
    ls "$mnt/peers" >/dev/null
    [ $(($(ms) - t0)) -lt 300 ] || fail "$what: stats/ls took $(($(ms) - t0)) ms while a read was parked"
    t0=$(ms)
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    local took=$(($(ms) - t0))
    [ "$took" -lt 500 ] || fail "$what: Ctrl-C took $took ms"
    echo "$what: interrupted in $took ms"
}

interrupt_reader "event" cat "$mnt/event"
interrupt_reader "files/ read" cat "$mnt/files/content/one.bin"
interrupt_reader "files/ seek+read" dd if="$mnt/files/content/sub/two.bin" bs=4096 skip=50 count=1
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
