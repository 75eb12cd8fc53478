# Streaming order: a read of a file still downloading pulls forward the
# pieces after it too, in order (the read-ahead window, 32 MiB, here the
# whole torrent), so a reader going through the file finds them there. The
# download is slowed so the order shows in `pieces`: without the window,
# the pieces past the first few would come in random order.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 8000000 http
start_lt_seeder

mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,down=1M"
pid=$MOUNT_PID

# one.bin is the torrent's first file with bytes: its first read needs piece 0.
a=$(head -c 16384 "$SCRATCH/content/one.bin" | sha1sum)
b=$(timeout 60 head -c 16384 "$mnt/files/content/one.bin" | sha1sum) || fail "first read timed out"
expect_eq "first 16 KiB" "$a" "$b"

# 32 KiB pieces: wait for 64 of the 245, then count the run from piece 0.
wait_until 60 sh -c "[ \$(awk '\$1 == \"have\" { print \$2 }' '$mnt/stats') -ge $((64 * 32768)) ]" ||
    fail "64 pieces did not arrive: $(cat "$mnt/stats")"
bits=$(cat "$mnt/pieces")
run=$(printf '%s' "$bits" | sed 's/0.*//' | tr -d '\n' | wc -c)
done_count=$(printf '%s' "$bits" | tr -cd 1 | wc -c)
# A few random pieces were asked for before the read; the rest in order.
[ "$run" -ge 40 ] || fail "only pieces 0..$((run - 1)) in order of $done_count: $bits"

timeout 120 cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs"
echo 'down 0' >"$mnt/ctl"
wait_complete "$mnt" 60 "not complete"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo "ok: pieces 0..$((run - 1)) in order when $done_count were verified"
