# Who may do what with a mount, and where a torrent's bytes may go:
# - by default only the mounting user gets in (another user: EACCES);
# - with allow_other, others may read but not write ctl or peers/N/ctl;
# - files/ is read-only for everyone, root included;
# - a symbolic link in the data directory that points outside it is
#   refused with a clear error, and nothing is written through it.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 300000
torrent="$SCRATCH/content.torrent"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
chmod 755 "$SCRATCH"

# Private by default.
mnt="$SCRATCH/mnt"
mount_swarmfs "$torrent" "$mnt" "data=$SCRATCH,port=0,no_trackers"
wait_complete "$mnt" 30 "not seeding"
if as_nobody cat "$mnt/stats" >/dev/null 2>"$SCRATCH/err"; then fail "another user read stats"; fi
grep -q 'Permission denied' "$SCRATCH/err" || fail "another user: $(cat "$SCRATCH/err")"
# Read-only content, even for root; ctl 0600, content 0444.
expect_eq "ctl mode" 600 "$(stat -c %a "$mnt/ctl")"
expect_eq "content mode" 444 "$(stat -c %a "$mnt/files/content/one.bin")"
for attempt in "echo x >$mnt/files/content/one.bin" "echo x >>$mnt/files/content/one.bin" \
    "truncate -s 0 $mnt/files/content/one.bin" "rm $mnt/files/content/one.bin" \
    "mkdir $mnt/files/content/new" "touch $mnt/files/content/new" "mv $mnt/files/content/one.bin $mnt/files/x"; do
    if bash -c "$attempt" 2>/dev/null; then fail "allowed: $attempt"; fi
done
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "content changed"
echo quit >"$mnt/ctl"
wait_exit "$MOUNT_PID" 10 || fail "still running after quit"

# allow_other: others read, only the owner commands.
mount_swarmfs "$torrent" "$mnt" "data=$SCRATCH,port=0,no_trackers,allow_other"
wait_complete "$mnt" 30 "not seeding (allow_other)"
as_nobody grep -q '^state seeding' "$mnt/stats" || fail "allow_other: another user cannot read stats"
as_nobody cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "allow_other: content"
if as_nobody bash -c "echo stop >$mnt/ctl" 2>/dev/null; then fail "another user wrote ctl"; fi
grep -q '^state seeding' "$mnt/stats" || fail "another user's stop took effect"
echo quit >"$mnt/ctl"
wait_exit "$MOUNT_PID" 10 || fail "still running after quit (allow_other)"

# A link in the data directory pointing outside it.
outside="$SCRATCH/outside"
mkdir -p "$outside" "$SCRATCH/linked" "$SCRATCH/mnt2"
ln -s "$outside" "$SCRATCH/linked/content"
if "$SWARMFS" "$torrent" "$SCRATCH/mnt2" -o "data=$SCRATCH/linked,port=0,no_trackers" 2>"$SCRATCH/link.err"; then
    track_mount "$SCRATCH/mnt2"
    fail "mounted through a symlink out of the data directory"
fi
grep -q 'symbolic link' "$SCRATCH/link.err" || fail "link error: $(cat "$SCRATCH/link.err")"
[ -z "$(ls -A "$outside")" ] || fail "wrote outside the data directory: $(ls "$outside")"
# `check` refuses it the same way.
if "$SWARMFS" check "$torrent" --data "$SCRATCH/linked" >/dev/null 2>"$SCRATCH/check.err"; then
    fail "check followed the link"
fi
grep -q 'symbolic link' "$SCRATCH/check.err" || fail "check: $(cat "$SCRATCH/check.err")"
echo "ok: private by default, allow_other read-only for others, files/ read-only, links refused"
