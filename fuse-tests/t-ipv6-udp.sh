# Beyond loopback IPv4 and HTTP: a mount finds a libtorrent seeder through
# opentracker's UDP port alone (BEP 15), then a libtorrent leecher on ::1
# downloads from the mount over IPv6. Bytes compared.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 3000000 udp

# 1. UDP tracker: nothing else introduces the mount to the seeder.
start_lt_seeder
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
port=$(free_port)
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=$port"
pid=$MOUNT_PID
wait_complete "$mnt" 60 "nothing through the UDP tracker"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs (UDP tracker)"
kill "$LT_SEEDER"

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
