# A mount downloading from a real Transmission seeder (transmission-cli 3.00,
# DHT, local discovery, PEX, uTP and port mapping off): bytes compared, and
# peers/ID/state and stats name the client. swarmfs dials Transmission on 127.0.0.1
# (Transmission itself makes no connections to loopback peers).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 20000001
mkdir -p "$SCRATCH/tr"
cat >"$SCRATCH/tr/settings.json" <<'JSON'
{"dht-enabled": false, "lpd-enabled": false, "pex-enabled": false,
 "port-forwarding-enabled": false, "utp-enabled": false, "rpc-enabled": false,
 "bind-address-ipv4": "127.0.0.1", "encryption": 0}
JSON
tport=$(free_port)
transmission-cli -g "$SCRATCH/tr" -w "$SCRATCH" -p "$tport" -et -M "$SCRATCH/content.torrent" \
    >"$SCRATCH/transmission.log" 2>&1 &
track_pid $!
wait_until 30 grep -q "Seeding" "$SCRATCH/transmission.log" ||
    fail "Transmission did not start seeding: $(tail -c 400 "$SCRATCH/transmission.log")"

mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,peer=127.0.0.1:$tport,no_trackers"
pid=$MOUNT_PID
wait_until 10 bash -c "ls '$mnt/peers' | grep -qE '^[0-9]+$'" || fail "Transmission did not connect"
id=$(ls "$mnt/peers" | grep -E '^[0-9]+$' | head -1)
grep -q '^client Transmission' "$mnt/peers/$id/state" || fail "client: $(grep client "$mnt/peers/$id/state")"
grep -q '^client 1 Transmission' "$mnt/stats" || fail "stats clients: $(grep client "$mnt/stats")"
timeout 60 cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs (Transmission)"
timeout 60 cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs (Transmission)"
wait_complete "$mnt" 60 "not complete"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
