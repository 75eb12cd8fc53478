# `swarmfs demo MNT`: a newcomer's first command works with nothing else
# installed: it mounts, prints what to try, downloads, and cleans up.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mnt="$SCRATCH/mnt"
mkdir "$mnt"
track_mount "$mnt"
"$SWARMFS" -q demo "$mnt" >"$SCRATCH/demo.out" 2>&1 &
pid=$!
track_pid "$pid"
wait_until 30 mountpoint -q "$mnt" || fail "demo did not mount: $(cat "$SCRATCH/demo.out")"
wait_until 5 grep -q "cat $mnt/stats" "$SCRATCH/demo.out" || fail "no instructions: $(cat "$SCRATCH/demo.out")"

# Everything the instructions suggest works.
grep -qx 'name swarmfs-demo' "$mnt/stats" || fail "stats: $(cat "$mnt/stats")"
grep -q '^pieces ' "$mnt/stats" || fail "stats has no pieces line"
echo 'down 1M' >"$mnt/ctl"
expect_eq "down_limit" 1048576 "$(stat_of "$mnt" down_limit)"
echo 'down 0' >"$mnt/ctl"
wait_until 10 bash -c "ls '$mnt/peers' | grep -qE '^[0-9]+$'" || fail "no peer in peers/"
grep -q "came to you through BitTorrent" "$mnt/files/swarmfs-demo/README.txt" || fail "README.txt"
expect_eq "numbers.txt last line" 200000 "$(tail -n 1 "$mnt/files/swarmfs-demo/numbers.txt")"
wait_complete "$mnt" 60 "demo download did not finish"
expect_eq "noise.bin size" 33554432 "$(stat -c %s "$mnt/files/swarmfs-demo/more/noise.bin")"
tmp=$(ls -d /tmp/swarmfs-demo-"$pid" 2>/dev/null || true)
[ -n "$tmp" ] || fail "no demo directory for pid $pid"
cmp "$tmp/seed/swarmfs-demo/more/noise.bin" "$mnt/files/swarmfs-demo/more/noise.bin" || fail "noise.bin differs"

echo quit >"$mnt/ctl"
wait "$pid" || fail "demo exited with $?"
mountpoint -q "$mnt" && fail "still mounted"
[ ! -e "$tmp" ] || fail "demo left $tmp behind"
echo ok
