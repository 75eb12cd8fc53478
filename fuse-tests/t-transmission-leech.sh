# Transmission (3.00) downloads from a mount as its only seeder. Transmission
# makes no connections to loopback peers, so swarmfs and opentracker live in
# one network namespace and Transmission in another, joined by a veth pair.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

a="sfa$$"; b="sfb$$"
make_netns_pair "$a" "$b"
# nsenter execs its command, so $! after `nsenter ... &` is the program.
in_a=(nsenter --net="/run/netns/$a")
in_b=(nsenter --net="/run/netns/$b")

make_torrent "$SCRATCH" 20000001
chmod 755 "$SCRATCH"
info_hash "$SCRATCH/content.torrent" >"$SCRATCH/whitelist"
printf 'access.whitelist %s\ntracker.rootdir /\n' "$SCRATCH/whitelist" >"$SCRATCH/opentracker.conf"
chmod 644 "$SCRATCH/whitelist" "$SCRATCH/opentracker.conf"
"${in_a[@]}" opentracker -f "$SCRATCH/opentracker.conf" -i 198.18.0.1 -p 6969 -P 6969 >"$SCRATCH/opentracker.log" 2>&1 &
track_pid $!
create_torrent "$SCRATCH" -t "http://198.18.0.1:6969/announce"

# The mount seeds from the complete content, inside namespace A.
mnt="$SCRATCH/mnt"
mkdir -p "$mnt"
track_mount "$mnt"
"${in_a[@]}" "$SWARMFS" "$SCRATCH/content.torrent" "$mnt" \
    -o "data=$SCRATCH,bind=198.18.0.1,port=6881,log=$SCRATCH/swarmfs.log" || fail "mount failed"
pid=$(swarmfs_pid "$mnt")
track_pid "$pid"
wait_complete "$mnt" 20 "not seeding"

mkdir -p "$SCRATCH/tr" "$SCRATCH/tr-data"
cat >"$SCRATCH/tr/settings.json" <<'JSON'
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
 "port-forwarding-enabled": false, "utp-enabled": false, "rpc-enabled": false,
 "bind-address-ipv4": "198.18.0.2", "encryption": 0}
JSON
"${in_b[@]}" transmission-cli -g "$SCRATCH/tr" -w "$SCRATCH/tr-data" -p 51413 -et -M "$SCRATCH/content.torrent" \
    >"$SCRATCH/transmission.log" 2>&1 &
track_pid $!
wait_until 90 cmp -s "$SCRATCH/content/sub/two.bin" "$SCRATCH/tr-data/content/sub/two.bin" ||
    fail "Transmission did not download from swarmfs: $(tail -c 600 "$SCRATCH/transmission.log")"
wait_until 30 cmp -s "$SCRATCH/content/one.bin" "$SCRATCH/tr-data/content/one.bin" || fail "one.bin differs (Transmission from swarmfs)"
cmp "$SCRATCH/content/sub/three.txt" "$SCRATCH/tr-data/content/sub/three.txt" || fail "three.txt differs"
grep -q '^uploaded [1-9]' "$mnt/stats" || fail "the mount uploaded nothing"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
