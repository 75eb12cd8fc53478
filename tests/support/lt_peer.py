#!/usr/bin/python3
"""A libtorrent peer for swarmfs's tests: seeds or leeches one torrent on
loopback, with DHT, local discovery, UPnP and NAT-PMP off.

usage: lt_peer.py seed|leech TORRENT DATA_DIR PORT [TIMEOUT_SECONDS] [PEER_HOST:PORT ...]

It listens on 127.0.0.1, or on the address in LT_LISTEN_HOST (e.g. ::1).
With LT_NO_TRACKERS=1 it ignores the torrent's trackers (peers given only).
With LT_KEEP_SEEDING=1 a leecher goes on seeding once complete, until killed.
With LT_TCP_ONLY=1 it makes and takes no uTP connections (libtorrent prefers
uTP for the connections it makes, and over uTP it downloaded at 15 to 25
MB/s where TCP gave 340 MB/s).
With LT_FAST_SEND=1 its send buffers are sized for a fast link, as in
libtorrent's high_performance_seed preset (by default libtorrent queues 10
KiB for a peer in the connection's first second, then half a second of its
rate up to 500 KiB, so one seeder caps every downloader alike).
A seeder trusts its data and hashes each piece the first time a peer asks
for it (libtorrent's seed mode); with LT_FULL_CHECK=1 it hashes all of it
before it is ready instead, so that no download from it pays for that.

A seeder prints `ready` once it answers a BitTorrent handshake on its port
(for a moment after reaching the seeding state libtorrent still resets
incoming connections). Prints one status line a second. A leecher exits 0 once it has every piece
(its data checked by libtorrent), 1 on timeout; a seeder runs until killed
(or until the timeout, then exits 0). Run with Debian's /usr/bin/python3.
"""
import os
import signal
import socket
import sys
import time

import libtorrent as lt


def answers_handshake(host, port, info_hash):
    """True if a peer at host:port completes a handshake for info_hash."""
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-LP0000-readinessprb")
            got = b""
            while len(got) < 68:
                chunk = s.recv(68 - len(got))
                if not chunk:
                    return False
                got += chunk
            return got[28:48] == info_hash
    except OSError:
        return False


def main():
    mode, torrent, data, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 120.0
    peers = sys.argv[6:]
    host = os.environ.get("LT_LISTEN_HOST", "127.0.0.1")
    listen_host = "[%s]" % host if ":" in host else host
    settings = {
        "listen_interfaces": "%s:%d" % (listen_host, port),
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "alert_mask": lt.alert.category_t.error_notification | lt.alert.category_t.status_notification,
    }
    if os.environ.get("LT_TCP_ONLY") == "1":
        settings.update(enable_outgoing_utp=False, enable_incoming_utp=False)
    if os.environ.get("LT_FAST_SEND") == "1":
        preset = lt.high_performance_seed()
        for key in ("send_buffer_low_watermark", "send_buffer_watermark", "send_buffer_watermark_factor"):
            settings[key] = preset[key]
    session = lt.session(settings)
    params = lt.add_torrent_params()
    params.ti = lt.torrent_info(torrent)
    params.save_path = data
    if mode == "seed" and os.environ.get("LT_FULL_CHECK") != "1":
        params.flags |= lt.torrent_flags.seed_mode
    handle = session.add_torrent(params)
    if os.environ.get("LT_NO_TRACKERS") == "1":
        handle.replace_trackers([])
    for peer in peers:
        peer_host, _, peer_port = peer.rpartition(":")
        handle.connect_peer((peer_host.strip("[]"), int(peer_port)))

    ready = mode != "seed"
    stop = []
    completed = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    deadline = time.time() + timeout
    while not stop and time.time() < deadline:
        s = handle.status()
        print("%s %s %.1f%% down %d up %d peers %d" % (
            mode, s.state, s.progress * 100, s.download_rate, s.upload_rate, s.num_peers), flush=True)
        for alert in session.pop_alerts():
            print("alert:", alert.message(), flush=True)
        if not ready and s.is_seeding and answers_handshake(host, port, params.ti.info_hash().to_bytes()):
            ready = True
            print("ready", flush=True)
            continue
        if mode == "leech" and s.is_seeding and not completed:
            print("complete", flush=True)
            if os.environ.get("LT_KEEP_SEEDING") != "1":
                return 0
            completed.append(1)
        time.sleep(0.5)
    return 0 if mode == "seed" or completed else 1


if __name__ == "__main__":
    sys.exit(main())
