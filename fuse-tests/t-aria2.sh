# aria2 (aria2c 1.36) in both directions, peers found through opentracker:
# a mount downloads from an aria2 seeder, then an aria2 leecher downloads
# from the mount alone. DHT, local discovery and PEX off. Bytes compared.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 20000001 http
aria=(aria2c --interface=127.0.0.1 --enable-dht=false --enable-dht6=false --bt-enable-lpd=false
    --enable-peer-exchange=false --summary-interval=0 --console-log-level=warn)

# 1. aria2 seeds; the mount finds it through the tracker.
"${aria[@]}" --dir="$SCRATCH" --seed-ratio=0 --seed-time=10 --check-integrity=true \
    --listen-port="$(free_port)" "$SCRATCH/content.torrent" >"$SCRATCH/aria2-seed.log" 2>&1 &
aria_seeder=$!
track_pid "$aria_seeder"
sleep 1 # let it check its data and announce
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,bind=127.0.0.1"
pid=$MOUNT_PID
wait_complete "$mnt" 60 "no download from aria2"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs (from aria2)"
cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs (from aria2)"
kill "$aria_seeder" 2>/dev/null || true # only the mount seeds now

# 2. an aria2 leecher, whose only source is the mount.
mkdir "$SCRATCH/aria2-data"
timeout 90 "${aria[@]}" --dir="$SCRATCH/aria2-data" --seed-time=0 --listen-port="$(free_port)" \
    "$SCRATCH/content.torrent" >"$SCRATCH/aria2-leech.log" 2>&1 ||
    fail "aria2 could not download from swarmfs: $(tail -5 "$SCRATCH/aria2-leech.log")"
cmp "$SCRATCH/content/one.bin" "$SCRATCH/aria2-data/content/one.bin" || fail "one.bin differs (aria2 from swarmfs)"
cmp "$SCRATCH/content/sub/two.bin" "$SCRATCH/aria2-data/content/sub/two.bin" || fail "two.bin differs (aria2 from swarmfs)"
grep -q '^uploaded [1-9]' "$mnt/stats" || fail "the mount uploaded nothing"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
