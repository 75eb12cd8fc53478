# The mount command exists but mounting arrives with the filesystem issue:
# until then it must refuse clearly, exit 2, and leave no mount behind.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_content "$SCRATCH/content"
"$SWARMFS" -q create "$SCRATCH/content" -o "$SCRATCH/c.torrent" >/dev/null
mkdir "$SCRATCH/mnt"

set +e
"$SWARMFS" "$SCRATCH/c.torrent" "$SCRATCH/mnt" 2>"$SCRATCH/err"
code=$?
set -e
expect_eq "exit status" 2 "$code"
grep -q "mounting arrives in a later version" "$SCRATCH/err" || fail "message: $(cat "$SCRATCH/err")"
if mountpoint -q "$SCRATCH/mnt"; then
    fusermount3 -uz "$SCRATCH/mnt" || true
    fail "a mount was left behind"
fi
