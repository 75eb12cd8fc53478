# A mixed swarm: one libtorrent seeder, and three leechers at once — a
# swarmfs mount, aria2 and libtorrent — all found through opentracker.
# Everyone finishes with the right bytes.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 24000001 http

start_lt_seeder

mkdir "$SCRATCH/data" "$SCRATCH/aria2" "$SCRATCH/lt"
mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,bind=127.0.0.1"
pid=$MOUNT_PID
aria2c --interface=127.0.0.1 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --summary-interval=0 --console-log-level=warn --seed-time=0 --dir="$SCRATCH/aria2" \
    --listen-port="$(free_port)" "$SCRATCH/content.torrent" >"$SCRATCH/aria2.log" 2>&1 &
aria=$!
track_pid "$aria"
/usr/bin/python3 "$LT_PEER" leech "$SCRATCH/content.torrent" "$SCRATCH/lt" "$(free_port)" 120 \
    >"$SCRATCH/lt-leech.log" 2>&1 &
lt=$!
track_pid "$lt"

wait_complete "$mnt" 120 "swarmfs did not finish"
wait "$aria" || fail "aria2 did not finish: $(tail -5 "$SCRATCH/aria2.log")"
wait "$lt" || fail "libtorrent did not finish: $(tail -5 "$SCRATCH/lt-leech.log")"
for f in one.bin sub/two.bin sub/three.txt; do
    cmp "$SCRATCH/content/$f" "$mnt/files/content/$f" || fail "$f differs (swarmfs)"
    cmp "$SCRATCH/content/$f" "$SCRATCH/aria2/content/$f" || fail "$f differs (aria2)"
    cmp "$SCRATCH/content/$f" "$SCRATCH/lt/content/$f" || fail "$f differs (libtorrent)"
done
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo "ok"
