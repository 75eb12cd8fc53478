# Read-ahead past missing pieces: a read of a downloading file that goes
# to the data file asks the kernel to read on ahead of it, over the
# verified pieces among the next 16 MiB, also those past a piece still
# missing (a file downloaded rarest-first holds them scattered). Here the
# data file holds a 24 MiB file with pieces 4 and 6 (of 1 MiB) wrong, and
# no peer: a 1 MiB read at 3 MiB must bring pieces 7 to 19 into the page
# cache, which the kernel's own read-ahead of that read does not reach.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MIB=1048576
# The data file on a filesystem whose pages can leave memory: on tmpfs the
# page cache is the file, and nothing could show what was read ahead.
data="$SCRATCH/data"
if [ "$(stat -f -c %T "$SCRATCH")" = tmpfs ]; then
    data=$(mktemp -d /var/tmp/swarmfs-read-ahead.XXXXXX)
    remove_at_exit "$data"
    [ "$(stat -f -c %T "$data")" != tmpfs ] || fail "no disk-backed directory: $SCRATCH and /var/tmp are tmpfs"
fi
mkdir -p "$SCRATCH/content" "$data/content"
head -c $((24 * MIB)) /dev/urandom >"$SCRATCH/content/big.bin"
"$SWARMFS" -q create "$SCRATCH/content" -l 1m --no-date -o "$SCRATCH/content.torrent" >/dev/null
cp "$SCRATCH/content/big.bin" "$data/content/big.bin"
for piece in 4 6; do
    dd if=/dev/zero of="$data/content/big.bin" bs=$MIB seek=$piece count=1 conv=notrunc status=none
done

mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$data,port=0,bind=127.0.0.1"
pid=$MOUNT_PID
wait_until 30 grep -qx "have $((22 * MIB))" "$mnt/stats" ||
    fail "the check did not find 22 of 24 pieces: $(cat "$mnt/stats")"

# MiB of the data file's pages in the page cache from $1 to $2 MiB
# (mincore on a mapping of it that touches none).
resident() {
    /usr/bin/python3 - "$data/content/big.bin" "$1" "$2" <<'PY'
import ctypes, mmap, os, sys
path, start, end = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3]) << 20
fd = os.open(path, os.O_RDONLY)
# Private and writable only so that ctypes can take its address; nothing
# is written, so every page stays the page cache's.
m = mmap.mmap(fd, end, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
view = (ctypes.c_char * end).from_buffer(m)
page = os.sysconf("SC_PAGE_SIZE")
vec = ctypes.create_string_buffer(end // page)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mincore(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(end), vec) != 0:
    sys.exit("mincore: " + os.strerror(ctypes.get_errno()))
print(sum(b & 1 for b in vec.raw[start // page:end // page]) * page >> 20)
del view
PY
}

# Out of the page cache (written back first: dirty pages stay).
/usr/bin/python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$data/content/big.bin"
before=$(resident 7 20)
[ "$before" -le 1 ] || fail "pieces 7..19 still cached after DONTNEED: $before MiB"

want=$(dd if="$SCRATCH/content/big.bin" bs=$MIB skip=3 count=1 status=none | sha1sum)
got=$(timeout 30 dd if="$mnt/files/content/big.bin" bs=$MIB skip=3 count=1 status=none | sha1sum) ||
    fail "read of piece 3 failed"
expect_eq "piece 3" "$want" "$got"

# The read-ahead is asynchronous.
export -f resident
export data
wait_until 20 bash -c '[ "$(resident 7 20)" -ge 13 ]' ||
    fail "pieces 7..19 not read ahead: $(resident 7 20) of 13 MiB cached; pieces $(cat "$mnt/pieces")"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo "ok: pieces 7..19 read ahead past missing pieces 4 and 6"
