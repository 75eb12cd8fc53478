# Peer exchange (BEP 11) with libtorrent, both ways, and no tracker at all:
# 1. a mount, downloading slowly from a libtorrent seeder A, tells a
#    libtorrent leecher B (which knows only the mount, and gets 16 KiB/s from
#    it) about A: B finishes in time only by downloading from A.
# 2. a second mount, told only of B, learns the first mount from B's PEX
#    messages and connects to it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 6000000 # no trackers in it
start_lt_seeder

mkdir "$SCRATCH/data" "$SCRATCH/data2" "$SCRATCH/lt"
mnt="$SCRATCH/mnt"
port=$(free_port)
# Slow both ways, so it is still downloading from A (connected, hence
# shared) while B runs.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" \
    "data=$SCRATCH/data,port=$port,bind=127.0.0.1,up=16k,down=32k,peer=127.0.0.1:$LT_SEEDER_PORT"
pid=$MOUNT_PID
wait_until 10 grep -qx "peers 1" "$mnt/stats" || fail "the mount did not connect to A: $(cat "$mnt/stats")"

# 1. We share: B is given only the mount.
b_port=$(free_port)
LT_KEEP_SEEDING=1 /usr/bin/python3 "$LT_PEER" leech "$SCRATCH/content.torrent" "$SCRATCH/lt" "$b_port" 300 "127.0.0.1:$port" \
    >"$SCRATCH/lt-leech.log" 2>&1 &
b=$!
track_pid "$b"
# 6 MB at 16 KiB/s from the mount alone would take six minutes.
wait_until 60 grep -q '^complete' "$SCRATCH/lt-leech.log" ||
    fail "libtorrent did not find A through our PEX in 60 s: $(tail -3 "$SCRATCH/lt-leech.log")"
cmp "$SCRATCH/content/one.bin" "$SCRATCH/lt/content/one.bin" || fail "one.bin differs (libtorrent)"
grep -qx 'state downloading' "$mnt/stats" || fail "the first mount finished too soon for the test to mean anything"

# 2. We learn: B (now seeding, and connected to the first mount) is the
#    only address the second mount is given.
mnt2="$SCRATCH/mnt2"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt2" \
    "data=$SCRATCH/data2,port=$(free_port),bind=127.0.0.1,peer=127.0.0.1:$b_port"
pid2=$MOUNT_PID
wait_until 30 grep -qx "127.0.0.1:$port" "$mnt2/peers/list" ||
    fail "the first mount not learned from libtorrent's PEX: peers/list: $(cat "$mnt2/peers/list")"
wait_complete "$mnt2" 60 "the second mount did not finish"
cmp "$SCRATCH/content/sub/two.bin" "$mnt2/files/content/sub/two.bin" || fail "two.bin differs (second mount)"

echo "down 0" >"$mnt/ctl"
wait_complete "$mnt" 60 "the first mount did not finish"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs (first mount)"
for m in "$mnt" "$mnt2"; do echo quit >"$m/ctl"; done
wait_exit "$pid" 10 || fail "first mount still running after quit"
wait_exit "$pid2" 10 || fail "second mount still running after quit"
echo ok
