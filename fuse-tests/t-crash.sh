# kill -9 of the mounted swarmfs at 20 random moments of a download (during
# its start-up check, between resume records, mid-block), remounting each
# time. After every kill the resume file marks no piece that is not on
# disk with the right hash (checked by an independent reader), and the
# pieces verified before a kill are still there after the remount; in the
# end the data is complete and right, and the seeder sent little more than
# the torrent's size: verified pieces are not downloaded again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KILLS=20
size=16000000
make_torrent "$SCRATCH" "$size"
torrent="$SCRATCH/content.torrent"
seed_port=$(free_port)
# Slow (200 kB/s) so that 20 lives of 0.2 to 6 s all fall mid-download.
mount_swarmfs "$torrent" "$SCRATCH/seedmnt" "data=$SCRATCH,port=$seed_port,bind=127.0.0.1,no_trackers,up=200k"
wait_complete "$SCRATCH/seedmnt" 30 "seeder not ready"

mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
opts="data=$SCRATCH/data,port=0,bind=127.0.0.1,no_trackers,peer=127.0.0.1:$seed_port"
check_resume() {
    /usr/bin/python3 "$ROOT/tests/support/check_resume.py" "$torrent" "$SCRATCH/data" ||
        fail "after kill $1: the resume file claims pieces not on disk"
}

seen_have=0
for kill in $(seq "$KILLS"); do
    mount_swarmfs "$torrent" "$mnt" "$opts"
    life_ms=$((200 + RANDOM % 5800))
    sleep "$((life_ms / 1000)).$(printf %03d $((life_ms % 1000)))"
    # What was verified a moment before the kill must survive it.
    have=$(stat_of "$mnt" pieces | cut -d/ -f1)
    [ "$(stat_of "$mnt" state)" != seeding ] || fail "finished before kill $kill; the test needs a slower seeder"
    kill -9 "$MOUNT_PID"
    wait_exit "$MOUNT_PID" 10 || fail "kill -9 did not stop $MOUNT_PID"
    fusermount3 -uz "$mnt"
    resume=$(check_resume "$kill")
    echo "kill $kill after ${life_ms} ms: $have pieces verified; resume file: $resume"
    seen_have=$have
    # The next mount's start: checked data must include those pieces.
    mount_swarmfs "$torrent" "$mnt" "$opts"
    wait_until 30 grep -qE '^state (downloading|seeding)' "$mnt/stats" || fail "no start after kill $kill"
    after=$(stat_of "$mnt" pieces | cut -d/ -f1)
    [ "$after" -ge "$have" ] || fail "kill $kill: $have pieces verified before, $after after the remount"
    kill -9 "$MOUNT_PID"
    wait_exit "$MOUNT_PID" 10 || fail "second kill -9 did not stop $MOUNT_PID"
    fusermount3 -uz "$mnt"
    check_resume "$kill" >/dev/null
done

echo 'up 0' >"$SCRATCH/seedmnt/ctl"
mount_swarmfs "$torrent" "$mnt" "$opts"
wait_complete "$mnt" 60 "not complete after the kills"
for f in one.bin sub/two.bin sub/three.txt empty; do
    cmp "$SCRATCH/content/$f" "$SCRATCH/data/content/$f" || fail "$f differs"
done
echo quit >"$mnt/ctl"
wait_exit "$MOUNT_PID" 10 || fail "still running after quit"
check_resume final
sent=$(stat_of "$SCRATCH/seedmnt" uploaded)
echo "seeder sent $sent bytes for $size after $((KILLS * 2)) kills ($seen_have pieces before the last)"
# A kill loses only pieces half done (a few 32 KiB pieces) and what was in
# flight; refetching verified pieces would cost megabytes per kill.
[ "$sent" -le $((size + size / 4)) ] || fail "the seeder sent $sent bytes for a $size byte torrent"
