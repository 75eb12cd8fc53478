# https:// trackers: opentracker behind a TLS front end (socat) with a
# certificate from a CA the test makes. A mount that trusts the CA (through
# SSL_CERT_FILE) finds a libtorrent seeder through the https tracker alone
# and downloads from it; a mount that does not trust it reports the
# certificate failure on `event` instead.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

make_tracked_torrent 3000000 http
# libtorrent seeds the http:// copy; the mounts get the https:// copy (the
# info dictionary, hence the info-hash, is the same).
start_lt_seeder
http_hash=$(info_hash "$SCRATCH/content.torrent")

# A CA, and a certificate for 127.0.0.1 signed by it; a second CA nobody uses.
tls="$SCRATCH/tls"
mkdir "$tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=swarmfs-test-ca \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca \
    -keyout "$tls/other.key" -out "$tls/other.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$tls/san"
openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/san" -out "$tls/server.pem" 2>/dev/null

tls_port=$(free_port)
socat "OPENSSL-LISTEN:$tls_port,bind=127.0.0.1,reuseaddr,fork,verify=0,cert=$tls/server.pem,key=$tls/server.key" \
    "TCP:127.0.0.1:$TRACKER_PORT" 2>"$SCRATCH/socat.log" &
track_pid $!
wait_until 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$tls_port" 2>/dev/null || fail "socat did not start"

create_torrent "$SCRATCH" -t "https://127.0.0.1:$tls_port/announce"
expect_eq "info-hash of the https copy" "$http_hash" "$(info_hash "$SCRATCH/content.torrent")"

# 1. An untrusted certificate: a tracker error that says so, no download.
mkdir "$SCRATCH/untrusted"
mnt="$SCRATCH/mnt-untrusted"
SSL_CERT_FILE="$tls/other.pem" mount_swarmfs "$SCRATCH/content.torrent" "$mnt" \
    "data=$SCRATCH/untrusted,port=$(free_port)"
pid=$MOUNT_PID
timeout 30 grep -m1 '^tracker error' "$mnt/event" >"$SCRATCH/untrusted.event" &
reader=$!
sleep 0.5
echo track >"$mnt/ctl"
wait "$reader" || fail "no tracker error for an untrusted certificate: $(cat "$mnt/stats")"
grep -qi 'certificate\|issuer' "$SCRATCH/untrusted.event" ||
    fail "the tracker error does not name the certificate: $(cat "$SCRATCH/untrusted.event")"
expect_eq "peers known through an untrusted tracker" 0 "$(grep -c . "$mnt/peers/list" || true)"
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"

# 2. The CA trusted: the https tracker introduces the seeder; bytes compared.
mkdir "$SCRATCH/data"
mnt="$SCRATCH/mnt"
SSL_CERT_FILE="$tls/ca.pem" mount_swarmfs "$SCRATCH/content.torrent" "$mnt" \
    "data=$SCRATCH/data,port=$(free_port)"
pid=$MOUNT_PID
wait_until 60 grep -qx 'state seeding' "$mnt/stats" ||
    fail "nothing through the https tracker: $(cat "$mnt/stats"); $(grep -i tracker "$SCRATCH/swarmfs.log" | tail -3)"
for f in one.bin sub/two.bin sub/three.txt empty; do
    cmp "$SCRATCH/content/$f" "$mnt/files/content/$f" || fail "$f differs"
done
echo quit >"$mnt/ctl"
wait_exit "$pid" 10 || fail "still running after quit"
echo ok
