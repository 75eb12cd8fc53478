# A disk that fills up mid-download: the data directory is a 3 MiB tmpfs
# and the torrent 8 MB, too large for its files' space to be reserved
# (the log warns). swarmfs says so on `event` and in `stats`, stops
# requesting (the seeder's upload counter stops), keeps every verified
# piece, and after the filesystem grows and `start` it finishes with the
# right bytes. Also: a read-only data directory is a clear error at mount
# time, and data files deleted under a running mount break nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 8000000
torrent="$SCRATCH/content.torrent"
# The seeder is mounted too, for its `uploaded` counter.
seed_port=$(free_port)
mount_swarmfs "$torrent" "$SCRATCH/seedmnt" "data=$SCRATCH,port=$seed_port,bind=127.0.0.1,no_trackers"
wait_complete "$SCRATCH/seedmnt" 30 "seeder not ready"

small="$SCRATCH/small"
mkdir "$small"
mount -t tmpfs -o size=3m tmpfs "$small"
track_fs_mount "$small"
mnt="$SCRATCH/mnt"
mount_swarmfs "$torrent" "$mnt" "data=$small,port=0,bind=127.0.0.1,no_trackers"
# Neither 4 MB file fits the 3 MiB: their space could not be reserved, and
# the log says so, naming them (the 5-byte file's was).
for f in one.bin two.bin; do
    wait_until 5 grep -q "space not reserved.*content/.*$f.*No space left on device\|space not reserved.*No space left on device.*content/.*$f" "$SCRATCH/swarmfs.log" ||
        fail "no warning for $f: $(grep -i reserved "$SCRATCH/swarmfs.log")"
done
grep -q "space not reserved.*three.txt" "$SCRATCH/swarmfs.log" && fail "three.txt was not reserved"
# Listening before the download starts: over loopback it fills 3 MiB at once.
timeout 120 cat "$mnt/event" >"$SCRATCH/events" 2>/dev/null &
track_pid $!
wait_until 5 grep -q '^pieces ' "$SCRATCH/events" || fail "event stream did not start"
echo "connect 127.0.0.1:$seed_port" >"$mnt/ctl"

wait_until 60 grep -q '^disk_error ' "$mnt/stats" || fail "no disk_error in stats: $(cat "$mnt/stats")"
grep -q '^disk_error writing piece [0-9]*: .*No space left on device' "$mnt/stats" ||
    fail "stats: $(grep disk_error "$mnt/stats")"
wait_until 5 grep -q '^error writing piece [0-9]*: .*No space left on device.*paused' "$SCRATCH/events" ||
    fail "event: $(cat "$SCRATCH/events")"
[ "$(grep -c '^error writing piece' "$SCRATCH/events")" = 1 ] || fail "the error was repeated: $(cat "$SCRATCH/events")"

# Requests stop: once the blocks in flight have landed, the seeder sends
# nothing more.
sleep 1
sent=$(stat_of "$SCRATCH/seedmnt" uploaded)
sleep 3
expect_eq "seeder's uploaded bytes while the disk is full" "$sent" "$(stat_of "$SCRATCH/seedmnt" uploaded)"
have=$(stat_of "$mnt" have)
[ "$have" -gt 0 ] || fail "nothing verified before the disk filled"
[ "$(stat_of "$mnt" state)" = downloading ] || fail "state $(stat_of "$mnt" state)"

# Room again, and `start`: the download goes on from what it had.
mount -o remount,size=64m "$small"
echo start >"$mnt/ctl"
wait_until 10 grep -qx 'writes resumed' "$SCRATCH/events" || fail "no 'writes resumed': $(cat "$SCRATCH/events")"
wait_complete "$mnt" 60 "not complete after space was freed"
grep -q '^disk_error' "$mnt/stats" && fail "disk_error still shown"
for f in one.bin sub/two.bin sub/three.txt empty; do
    cmp "$SCRATCH/content/$f" "$small/content/$f" || fail "$f differs"
done
# Verified pieces were kept: about 8 MB sent in all, not the 3 MB again.
total=$(stat_of "$SCRATCH/seedmnt" uploaded)
[ "$total" -lt $((8000000 + 2000000)) ] || fail "the seeder sent $total bytes for an 8 MB torrent"

# `-o sparse`: a new data file gets its length and no blocks (the first
# mount reserved three.txt's; without room for the rest).
mkdir "$small/sparse"
mount_swarmfs "$torrent" "$SCRATCH/sparsemnt" "data=$small/sparse,port=0,bind=127.0.0.1,no_trackers,sparse"
expect_eq "size of one.bin under -o sparse" "$(stat -c %s "$SCRATCH/content/one.bin")" "$(stat -c %s "$small/sparse/content/one.bin")"
expect_eq "blocks of one.bin under -o sparse" 0 "$(stat -c %b "$small/sparse/content/one.bin")"
echo quit >"$SCRATCH/sparsemnt/ctl"
wait_until 10 bash -c "! mountpoint -q '$SCRATCH/sparsemnt'" || fail "sparse mount did not go"

# A data file deleted under the running mount: reads still work (the open
# handle keeps the bytes), and swarmfs keeps running.
rm "$small/content/one.bin"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin through the mount after rm"
grep -q '^state seeding' "$mnt/stats" || fail "stats after rm: $(cat "$mnt/stats")"

# A read-only data directory: the mount fails, saying why, and leaves no mount.
ro="$SCRATCH/ro"
mkdir "$ro" "$SCRATCH/romnt"
mount -t tmpfs -o size=1m,ro tmpfs "$ro"
track_fs_mount "$ro"
if "$SWARMFS" "$torrent" "$SCRATCH/romnt" -o "data=$ro,port=0,no_trackers" 2>"$SCRATCH/ro.err"; then
    track_mount "$SCRATCH/romnt"
    fail "mounted over a read-only data directory"
fi
grep -q 'Read-only file system' "$SCRATCH/ro.err" || fail "error: $(cat "$SCRATCH/ro.err")"
mountpoint -q "$SCRATCH/romnt" && fail "a mount was left behind"
echo "ok: paused at $have bytes on a full disk, finished after it grew; read-only and deleted data handled"
