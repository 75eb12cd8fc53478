#!/usr/bin/python3
"""Usage: seqread.py FILE REF [RATE]

Reads FILE from start to end as `cat` would (reads of 128 KiB, or of
the file's st_blksize if that is larger), prints (at once) the seconds
that took, the monotonic time it ended and the CPU seconds the reads took
(user and system), then checks what was read against REF
through the same open file: the bytes come back from the mount's page
cache (or the filesystem again), never from a second path. Exit 1 if
they differ.

With RATE (bytes a second), no faster than that: the benchmark reads
its null FUSE filesystem (examples/nullfs.rs) at the pace of a download
beside it. REF `-` skips the check, for that filesystem's made-up bytes.

The check is kept out of the timed read on purpose: comparing as it goes
(`cmp FILE REF`) would also time reading REF and comparing, work that no
client's plain download is charged with.
"""
import mmap
import os
import resource
import sys
import time

IO_BUFSIZE = 128 * 1024
CHECK = 1 << 20


def pread_full(fd, size, offset):
    """Up to `size` bytes at `offset`, short only at the end of the file
    (a single pread may return less)."""
    parts = []
    while size > 0:
        part = os.pread(fd, size, offset)
        if not part:
            break
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return b"".join(parts)


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_size(st):
    """What `cat` (coreutils' io_blksize) reads at a time: at least 128 KiB,
    a multiple of the file's st_blksize."""
    blksize = st.st_blksize if st.st_blksize > 0 else IO_BUFSIZE
    return blksize + (IO_BUFSIZE - 1) - (IO_BUFSIZE - 1) % blksize


def main():
    path, ref = sys.argv[1], sys.argv[2]
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else None
    start = time.monotonic()
    cpu_start = cpu_seconds()
    fd = os.open(path, os.O_RDONLY)
    # Page-aligned, as cat's buffer is: a direct-I/O read into a buffer
    # that starts mid-page spans one page more than its size, and the
    # kernel splits a 1 MiB read into two FUSE requests (1 MiB - 16 bytes
    # and 16 bytes for a bytearray's buffer).
    buf = mmap.mmap(-1, read_size(os.fstat(fd)))
    view = memoryview(buf)
    total = 0
    while True:
        n = os.readv(fd, [view])
        if n == 0:
            break
        total += n
        if rate:
            ahead = start + total / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    end = time.monotonic()
    cpu_end = cpu_seconds()
    seconds = end - start
    # The caller's clock is CLOCK_MONOTONIC too: it times from the mount.
    # Printed before the check, which reads FILE again: the caller takes
    # the end of the read from this line.
    print("%.6f %.6f %.3f" % (seconds, end, cpu_end - cpu_start), flush=True)
    if ref == "-":
        return 0
    with open(ref, "rb") as r:
        offset = 0
        while True:
            want = r.read(CHECK)
            # At the end of REF, one byte more: FILE must end there too.
            got = pread_full(fd, len(want) or 1, offset)
            if want != got:
                print("%s differs from %s at or after byte %d" % (path, ref, offset), file=sys.stderr)
                return 1
            if not want:
                break
            offset += len(want)
    os.close(fd)
    if offset != total:
        print("read %d bytes of %s in order, but it holds %d" % (total, path, offset), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
