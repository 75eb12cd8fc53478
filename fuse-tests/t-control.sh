# Driving a mounted torrent with shell tools: stats, pieces, ctl (good and
# bad lines), event, peers/ID/state, peers/list, disconnect, files/ content.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_torrent "$SCRATCH" 3000000
start_seeder "$SCRATCH/content.torrent" "$SCRATCH" --up 1M
port=$SEEDER_PORT
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
mount_swarmfs "$SCRATCH/content.torrent" "$mnt" "data=$SCRATCH/data,port=0,no_trackers"
track_pid "$(swarmfs_pid "$mnt")"

# Clear refusals: the mount point is taken, the port is taken.
mkdir "$SCRATCH/mnt2" "$SCRATCH/data2"
if out=$("$SWARMFS" "$SCRATCH/content.torrent" "$mnt" -o "data=$SCRATCH/data2,port=0" 2>&1); then
    fail "mounted twice on $mnt"
fi
case "$out" in *"is busy"*) ;; *) fail "second mount said: $out" ;; esac
if out=$("$SWARMFS" "$SCRATCH/content.torrent" "$SCRATCH/mnt2" -o "data=$SCRATCH/data2,port=$port" 2>&1); then
    fail "mounted with a port in use"
fi
case "$out" in *"Address already in use"*) ;; *) fail "port in use said: $out" ;; esac
mountpoint -q "$SCRATCH/mnt2" && fail "a failed mount left a mount behind"

# The tree.
expect_eq "root" "ctl event files peers pieces stats" "$(ls "$mnt" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "files" "content" "$(ls "$mnt/files")"
expect_eq "content" "empty one.bin sub" "$(ls "$mnt/files/content" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "size of one.bin" "$(stat -c %s "$SCRATCH/content/one.bin")" "$(stat -c %s "$mnt/files/content/one.bin")"
expect_eq "modes" "-rw------- -r--r--r-- -r--r--r--" "$(stat -c %A "$mnt/ctl" "$mnt/stats" "$mnt/files/content/one.bin" | tr '\n' ' ' | sed 's/ $//')"
expect_eq "owner" "$(id -u)" "$(stat -c %u "$mnt/stats")"
expect_eq "name" "content" "$(stat_of "$mnt" name)"
expect_eq "infohash" "$("$SWARMFS" info "$SCRATCH/content.torrent" | sed -n 's/^info-hash: //p')" "$(stat_of "$mnt" infohash)"
total=$(stat_of "$mnt" pieces | cut -d/ -f2)
expect_eq "pieces length" "$((total + 1))" "$(wc -c <"$mnt/pieces")"
df "$mnt" >/dev/null || fail "statfs"

# An event stream: the first line is the bitstring at open.
exec 3<"$mnt/event"
read -r first <&3
case "$first" in "pieces "*) ;; *) fail "first event line: $first" ;; esac

# Nobody to talk to until we say so.
expect_eq "peers before connect" 0 "$(stat_of "$mnt" peers)"
echo "connect 127.0.0.1:$port" >"$mnt/ctl"

# ctl: a limit shows in stats; reading ctl shows the settings.
echo 'down 512k' >"$mnt/ctl"
expect_eq "down_limit" 524288 "$(stat_of "$mnt" down_limit)"
grep -qx 'down 524288' "$mnt/ctl" || fail "ctl does not show the limit: $(cat "$mnt/ctl")"
printf 'up 2M\ndown 0\n' >"$mnt/ctl"
expect_eq "up_limit" 2097152 "$(stat_of "$mnt" up_limit)"
expect_eq "down_limit after two lines" 0 "$(stat_of "$mnt" down_limit)"

# A bad line: "Invalid argument", nothing changes, the reason is on event.
if out=$( { echo 'bogus' >"$mnt/ctl"; } 2>&1); then fail "bogus ctl line accepted"; fi
case "$out" in *"Invalid argument"*) ;; *) fail "bad ctl line said: $out" ;; esac
# bash writes line by line; cat makes this one write of two lines.
printf 'up 1k\nnonsense\n' >"$SCRATCH/cmds"
if cat "$SCRATCH/cmds" >"$mnt/ctl" 2>/dev/null; then fail "half-bad write accepted"; fi
expect_eq "up_limit unchanged by a rejected write" 2097152 "$(stat_of "$mnt" up_limit)"

# Wait for the download; the event stream saw it happen.
wait_complete "$mnt" 60 "download did not complete"
# Everything queued since open, then the reader is parked until timeout's
# SIGTERM interrupts it (mawk would wait for a full buffer: use cat).
timeout 3 cat <&3 >"$SCRATCH/events" || true
grep -qx done "$SCRATCH/events" || fail "no done event: $(grep -v '^piece' "$SCRATCH/events")"
exec 3<&-
grep -Eq "^connected [0-9]+ 127.0.0.1:$port\$" "$SCRATCH/events" || fail "no connected line: $(head "$SCRATCH/events")"
grep -q '^error ctl: unknown command "bogus"$' "$SCRATCH/events" || fail "no ctl error line"
expect_eq "piece lines" "$total" "$(grep -c '^piece [0-9]*$' "$SCRATCH/events")"
cmp "$SCRATCH/content/one.bin" "$mnt/files/content/one.bin" || fail "one.bin differs"
cmp "$SCRATCH/content/sub/two.bin" "$mnt/files/content/sub/two.bin" || fail "two.bin differs"
cmp "$SCRATCH/content/sub/three.txt" "$mnt/files/content/sub/three.txt" || fail "three.txt differs"
expect_eq "empty file" 0 "$(stat -c %s "$mnt/files/content/empty")"
expect_eq "pieces all 1" "" "$(tr -d '1\n' <"$mnt/pieces")"

# peers/: the seeder, its state, the known list.
id=$(ls "$mnt/peers" | grep -E '^[0-9]+$' | head -1)
[ -n "$id" ] || fail "no peer directory: $(ls "$mnt/peers")"
grep -qx "addr 127.0.0.1:$port" "$mnt/peers/$id/state" || fail "state: $(cat "$mnt/peers/$id/state")"
grep -q '^client swarmfs' "$mnt/peers/$id/state" || fail "client: $(cat "$mnt/peers/$id/state")"
grep -qx 'client 1 swarmfs [0-9.]*' "$mnt/stats" || fail "stats clients: $(grep client "$mnt/stats")"
grep -qx "127.0.0.1:$port" "$mnt/peers/list" || fail "peers/list: $(cat "$mnt/peers/list")"
expect_eq "peers/bad" "" "$(cat "$mnt/peers/bad")"

# disconnect through peers/ID/ctl: the directory goes away.
exec 4<"$mnt/event"
echo disconnect >"$mnt/peers/$id/ctl"
wait_until 5 bash -c "! test -e '$mnt/peers/$id'" || fail "peers/$id still there"
line=$(timeout 5 grep -m1 '^disconnected' <&4) || fail "no disconnected event"
case "$line" in "disconnected $id 127.0.0.1:$port disconnected by user") ;; *) fail "event: $line" ;; esac
exec 4<&-

# quit unmounts and ends the process.
pid=$(swarmfs_pid "$mnt")
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "swarmfs still running after quit"
mountpoint -q "$mnt" && fail "still mounted after quit"
test -s "$SCRATCH/data/content.torrent.pieces" || fail "no resume file"
echo "ok"
