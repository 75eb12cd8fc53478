# files/ reads of complete files go through FUSE passthrough (the kernel
# reads the data file itself), and mixing with opens made while a file was
# still downloading is safe: an open held across completion keeps working,
# new opens of that file wait for it to close before passthrough, and a
# data file longer than the torrent's file is never read past its end.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 4000000
start_seeder "$SCRATCH/content.torrent" "$SCRATCH" --up 2M

mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
SWARMFS_FLAGS=-v mount_swarmfs "$SCRATCH/content.torrent" "$mnt" \
    "data=$SCRATCH/data,port=0,no_trackers,peer=127.0.0.1:$SEEDER_PORT"
pid=$MOUNT_PID
grep -qx 'state downloading' "$mnt/stats" || fail "finished before the test could open a file early"
exec 3<"$mnt/files/content/one.bin" # a cached open, made while downloading
wait_complete "$mnt" 60 "not complete"

cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs beside a held open"
cmp "$SCRATCH/content/one.bin" - <&3 || fail "one.bin differs through the open held across completion"
cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs"
exec 3<&-
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs after the held open closed"
if grep -q 'no FUSE passthrough' "$SCRATCH/swarmfs.log"; then
    echo "note: this kernel or user has no FUSE passthrough; checked the fallback only"
else
    grep -q 'passthrough, file: .*sub/two.bin' "$SCRATCH/swarmfs.log" || fail "two.bin not passed through"
    grep -c 'passthrough, file: .*/one.bin' "$SCRATCH/swarmfs.log" | grep -qx 1 ||
        fail "one.bin should pass through once, after its cached open closed: $(grep passthrough "$SCRATCH/swarmfs.log")"
fi
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"

# Bytes of the user's own past the torrent's end of a file: not shown.
printf 'extra bytes that are not part of the torrent\n' >>"$SCRATCH/data/content/sub/three.txt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,no_trackers"
pid=$MOUNT_PID
wait_complete "$mnt" 20 "remount not complete"
cmp "$SCRATCH/content/sub/three.txt" "$mnt/files/content/sub/three.txt" || fail "three.txt shows bytes past its end"
cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs after remount"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
