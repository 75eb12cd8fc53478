# Beyond loopback IPv4 and HTTP: a mount finds a libtorrent seeder through
# opentracker's UDP port alone (BEP 15), then a libtorrent leecher on ::1
# downloads from the mount over IPv6. Bytes compared.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 3000000
start_opentracker "$(info_hash "$SCRATCH/content.torrent")"
"$SWARMFS" -q create "$SCRATCH/content" -l 32k --no-date -f -o "$SCRATCH/content.torrent" \
    -t "udp://127.0.0.1:$TRACKER_PORT" >/dev/null

# 1. UDP tracker: nothing else introduces the mount to the seeder.
/usr/bin/python3 "$LT_PEER" seed "$SCRATCH/content.torrent" "$SCRATCH" "$(free_port)" 300 \
    >"$SCRATCH/lt-seed.log" 2>&1 &
seeder=$!
track_pid "$seeder"
wait_until 20 grep -qs seeding "$SCRATCH/lt-seed.log" || fail "libtorrent did not seed"
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
port=$(free_port)
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=$port"
pid=$(swarmfs_pid "$mnt")
track_pid "$pid"
wait_until 60 grep -qx 'state seeding' "$mnt/stats" || fail "nothing through the UDP tracker: $(cat "$mnt/stats")"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs (UDP tracker)"
kill "$seeder"

# 2. IPv6: a libtorrent leecher on ::1, without trackers, dials the mount at
#    [::1] (it listens on [::], both families): IPv6 is the only way.
mkdir "$SCRATCH/lt"
LT_LISTEN_HOST=::1 LT_NO_TRACKERS=1 timeout 90 /usr/bin/python3 "$LT_PEER" leech "$SCRATCH/content.torrent" "$SCRATCH/lt" \
    "$(free_port)" 80 "[::1]:$port" >"$SCRATCH/lt-leech.log" 2>&1 ||
    fail "libtorrent did not download over IPv6: $(tail -5 "$SCRATCH/lt-leech.log")"
cmp "$SCRATCH/content/sub/two.bin" "$SCRATCH/lt/content/sub/two.bin" || fail "two.bin differs (IPv6)"
grep -q 'peer connected.*addr: \[::1\]' "$SCRATCH/swarmfs.log" || fail "no IPv6 peer in the log"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
