# Mounting the way other FUSE filesystems are mounted: mount -t fuse.swarmfs
# (through Debian's mount.fuse3 helper) and an fstab line; umount ends it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# mount(8) runs mount.fuse3 with a fixed PATH, which runs `swarmfs` from it:
# link ours into /usr/local/bin for this test unless one is installed.
if [ ! -e /usr/local/bin/swarmfs ]; then
    ln -s "$SWARMFS" /usr/local/bin/swarmfs || fail "cannot link /usr/local/bin/swarmfs (needs root)"
    remove_at_exit /usr/local/bin/swarmfs
fi

make_torrent "$SCRATCH" 500000
start_seeder "$SCRATCH/content.torrent" "$SCRATCH"
mkdir "$SCRATCH/data" "$SCRATCH/mnt"
mnt="$SCRATCH/mnt"
track_mount "$mnt"
opts="data=$SCRATCH/data,port=0,peer=127.0.0.1:$SEEDER_PORT,no_trackers,log=$SCRATCH/swarmfs.log"

# 1. mount -t
mount -t fuse.swarmfs "$SCRATCH/content.torrent" "$mnt" -o "$opts" || fail "mount -t failed: $(tail -3 "$SCRATCH/swarmfs.log")"
mountpoint -q "$mnt" || fail "not mounted"
pid=$(pgrep -f -- "swarmfs $SCRATCH/content.torrent $mnt" | head -1)
track_pid "$pid"
wait_complete "$mnt" 30 "no download"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs"
umount "$mnt" || fail "umount failed"
wait_exit "$pid" 10 || fail "still running after umount"

# 2. an fstab line (in a file of our own: mount -T)
printf '%s %s fuse.swarmfs %s,noauto 0 0\n' "$SCRATCH/content.torrent" "$mnt" "$opts" >"$SCRATCH/fstab"
mount -T "$SCRATCH/fstab" "$mnt" || fail "mount from fstab failed"
mountpoint -q "$mnt" || fail "not mounted from fstab"
pid=$(pgrep -f -- "swarmfs $SCRATCH/content.torrent $mnt" | head -1)
track_pid "$pid"
grep -qx 'state seeding' "$mnt/stats" || fail "not resumed complete: $(cat "$mnt/stats")"
umount "$mnt" || fail "umount failed"
wait_exit "$pid" 10 || fail "still running after umount"
echo ok
