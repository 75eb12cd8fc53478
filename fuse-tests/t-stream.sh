# Streaming from a real swarm: a libtorrent seeder found through a real
# opentracker. Reads at random offsets of files that are still downloading
# return the right bytes (they pull their pieces forward) without filling
# the page cache, a mapping of such a file reads right too, a full
# sequential read equals the source, and peers/ID/state shows libtorrent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 6000000 http
start_lt_seeder

mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
# Slow enough that the reads below happen while the download runs.
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,down=1M"
pid=$MOUNT_PID

# Random seeks into the second file, before most of it can have arrived.
src="$SCRATCH/content/sub/two.bin"
size=$(stat -c %s "$src")
for offset in $((size - 5000)) 1234567 17 2000000 $((size / 2)); do
    a=$(dd if="$src" bs=1 skip="$offset" count=4096 iflag=skip_bytes,count_bytes 2>/dev/null | sha1sum)
    b=$(timeout 60 dd if="$mnt/files/content/sub/two.bin" bs=4096 skip="$offset" count=4096 \
        iflag=skip_bytes,count_bytes 2>/dev/null | sha1sum) || fail "read at $offset timed out"
    expect_eq "4 KiB at offset $offset" "$a" "$b"
done
# Opened while downloading, the file is read with direct I/O: the seeks
# left nothing in the mount's page cache (fincore opens it while it is still
# incomplete too, so it sees that inode's cache, not the data file's).
# Each read of it is a round trip through swarmfs, so it asks for big ones
# (st_blksize, which cat, cp, stdio and Python size their reads by).
expect_eq "st_blksize of a files/ entry" "1048576" "$(stat -c %o "$mnt/files/content/sub/two.bin")"
resident=$(fincore --noheadings --output PAGES "$mnt/files/content/sub/two.bin")
expect_eq "pages of two.bin cached after the seeks" "0" "$(echo $resident)"
# ...and can still be mapped (FUSE_DIRECT_IO_ALLOW_MMAP): a read through a
# shared mapping waits for its piece like a read() does.
a=$(dd if="$src" bs=4096 skip=300 count=2 2>/dev/null | sha1sum)
b=$(timeout 60 /usr/bin/python3 -c '
import mmap, sys
with open(sys.argv[1], "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    sys.stdout.buffer.write(m[300 * 4096:302 * 4096])
' "$mnt/files/content/sub/two.bin" | sha1sum) || fail "read through mmap failed or timed out"
expect_eq "8 KiB read through a shared mapping" "$a" "$b"
have=$(stat_of "$mnt" have)
[ "$have" -lt 6000000 ] || fail "the download finished before the seeks; nothing was streamed"

# The tracker found the peer; its state names the client.
id=$(ls "$mnt/peers" | grep -E '^[0-9]+$' | head -1)
[ -n "$id" ] || fail "no peer connected"
grep -q '^client libtorrent' "$mnt/peers/$id/state" || fail "client: $(grep client "$mnt/peers/$id/state")"
grep -q '^client 1 libtorrent/' "$mnt/stats" || fail "stats clients: $(grep client "$mnt/stats")"

# A full sequential read of a file still downloading equals the source.
timeout 120 cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs"
timeout 120 cmp "$src" "$mnt/files/content/sub/two.bin" || fail "two.bin differs"
echo 'down 0' >"$mnt/ctl"
wait_complete "$mnt" 60 "not complete"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo "ok: streamed with $have bytes verified at the last seek"
