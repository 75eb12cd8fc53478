# Ways a mount ends: SIGTERM and fusermount3 -u unmount cleanly and write
# the resume file; after kill -9, fusermount3 -u recovers the mount point and
# a remount resumes without fetching verified pieces again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 4000000
# A slow seeder, so the kill lands mid-download.
start_seeder "$SCRATCH/content.torrent" "$SCRATCH" --up 1M
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
opts="data=$SCRATCH/data,port=0,peer=127.0.0.1:$SEEDER_PORT,no_trackers"
resume="$SCRATCH/data/content.torrent.pieces"

# 1. SIGTERM: unmounts, writes the resume file, exits.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "$opts"
pid=$(swarmfs_pid "$mnt")
wait_until 20 bash -c "[ \$(awk '\$1==\"have\" {print \$2}' '$mnt/stats') -gt 0 ]" || fail "nothing downloaded"
kill -TERM "$pid"
wait_exit "$pid" 10 || fail "still running after SIGTERM"
mountpoint -q "$mnt" && fail "still mounted after SIGTERM"
test -s "$resume" || fail "no resume file after SIGTERM"

# 2. fusermount3 -u from outside: same.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "$opts"
pid=$(swarmfs_pid "$mnt")
sleep 1
fusermount3 -u "$mnt" || fail "fusermount3 -u failed"
wait_exit "$pid" 10 || fail "still running after fusermount3 -u"
grep -q "unmounted" "$SCRATCH/swarmfs.log" || fail "no unmount in the log"

# 3. kill -9 mid-download: the mount point is stale until fusermount3 -u.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "$opts"
pid=$(swarmfs_pid "$mnt")
sleep 1.5
# What is verified on disk now is at least what the resume file will claim.
kill -9 "$pid"
wait_exit "$pid" 10 || fail "kill -9 did not end it"
if ls "$mnt" >/dev/null 2>&1; then fail "mount point is not stale after kill -9"; fi
fusermount3 -u "$mnt" || fail "fusermount3 -u did not recover the stale mount"
mountpoint -q "$mnt" && fail "still a mount point"
"$SWARMFS" -q check "$SCRATCH/content.torrent" --data "$SCRATCH/data" >"$SCRATCH/check" || true
verified=$(sed -n 's/^have \([0-9]*\)\/.*/\1/p' "$SCRATCH/check")
[ "$verified" -gt 0 ] || fail "nothing verified before the kill"

# 4. Remount: starts from the verified pieces and fetches only the rest.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "$opts"
pid=$(swarmfs_pid "$mnt")
wait_until 10 bash -c "! grep -qx 'state checking' '$mnt/stats'" || fail "stuck checking"
have_at_start=$(stat_of "$mnt" have)
[ "$have_at_start" -gt 0 ] || fail "remount started from nothing"
wait_complete "$mnt" 60 "did not finish"
size=$(stat_of "$mnt" size)
downloaded=$(stat_of "$mnt" downloaded)
# Everything fetched again was missing: no verified piece twice. One piece of
# slack per endgame duplicate is allowed.
[ "$downloaded" -le $((size - have_at_start + 32768)) ] ||
    fail "downloaded $downloaded bytes after resuming with $have_at_start of $size"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs"
cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo "ok: resumed with $have_at_start of $size bytes, fetched $downloaded more"
