#!/usr/bin/python3
"""swarmfs against the clients people use, side by side in one run.

Makes a torrent of random data, runs opentracker and N libtorrent seeders in
one network namespace (198.18.0.1), and times a full, cold download by each
client in another (198.18.0.2), joined by a veth pair: every client crosses
the same link (Transmission makes no connections to 127.0.0.1 peers, so
loopback alone would leave it out). Then streaming through the mount against
btfs, files/ reads against direct reads, `swarmfs check` against sha1sum,
and the machine's own limits. Writes results.json, runs.csv, progress.png
and summary.md to the output directory and prints the summary.

Run as root (network namespaces, FUSE, dropping the page cache) with
Debian's /usr/bin/python3 (python3-libtorrent, python3-matplotlib); see
docs/performance.md. `contrib/bench/bench --help` lists the options.
"""
import argparse
import csv
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# SWARMFS_BIN: another build to measure (an A/B of two builds, say).
SWARMFS = os.environ.get("SWARMFS_BIN") or os.path.join(ROOT, "target", "release", "swarmfs")
# SWARMFS_LOG: swarmfs's verbosity flag (-v for debug logs in OUT/logs).
SWARMFS_VERBOSITY = os.environ.get("SWARMFS_LOG", "-q")
LT_PEER = os.path.join(ROOT, "tests", "support", "lt_peer.py")
SEQREAD = os.path.join(HERE, "seqread.py")
# A FUSE filesystem that answers reads from memory (examples/nullfs.rs):
# what a read through FUSE costs at the least, beside a download.
NULLFS = os.path.join(ROOT, "target", "release", "examples", "nullfs")
SRC_IP, DST_IP = "198.18.0.1", "198.18.0.2"
TRACKER_PORT = 6969
MiB = 1 << 20
GiB = 1 << 30
ALL_CLIENTS = ["swarmfs", "aria2", "transmission", "libtorrent", "rqbit"]


class BenchError(Exception):
    pass


def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


def parse_size(text):
    """1G, 512M, 64k, 1048576 (binary units)."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kmgt]?)(i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError("not a size: %r" % text)
    return int(float(match.group(1)) * 1024 ** "_kmgt".index(match.group(2) or "_"))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.workdir or tempfile.mkdtemp(prefix="swarmfs-bench.")
        os.makedirs(self.work, exist_ok=True)
        os.chmod(self.work, 0o755)  # opentracker drops to nobody
        self.out = args.out
        os.makedirs(self.out, exist_ok=True)
        self.procs = []
        self.mounts = []
        self.netns = []
        self.ns_src = "sfbs%d" % os.getpid()
        self.ns_dst = "sfbd%d" % os.getpid()
        self.port = 7000
        self.runs = []
        self.extra = {}
        self.null_path = None

    # ---- plumbing -------------------------------------------------------

    def next_port(self):
        self.port += 1
        return self.port

    def in_ns(self, ns, argv):
        return ["nsenter", "--net=/run/netns/" + ns] + argv

    def spawn(self, argv, logfile, env=None, **kw):
        out = open(logfile, "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=20):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def signal_client(self, p, sig):
        """Signals the program that /usr/bin/time runs (its child), so time
        itself lives to write its report."""
        try:
            with open("/proc/%d/task/%d/children" % (p.pid, p.pid)) as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            children = []
        for pid in children or [p.pid]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def unmount(self, mnt):
        # From the mount table, not os.path.ismount: a FUSE mount whose
        # server died fails every stat (ENOTCONN), which ismount takes for
        # "not a mount point", and the dead mount stayed behind.
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)

    def cleanup(self):
        for m in self.mounts:
            self.unmount(m)
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        for ns in self.netns:
            subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        if not self.args.keep and not self.args.workdir:
            shutil.rmtree(self.work, ignore_errors=True)

    def wait_for(self, what, predicate, limit, interval=0.05, proc=None):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic()
            if proc is not None and proc.poll() is not None and not predicate():
                raise BenchError("%s: exited with %s before it was done" % (what, proc.returncode))
            time.sleep(interval)
        raise BenchError("%s: not done within %d s" % (what, limit))

    @staticmethod
    def settle():
        """Writes back what earlier runs left dirty in the page cache
        (every client but swarmfs downloads through it, and the content
        file is written so) before a timed run starts: the kernel writes
        dirty pages back 30 s after they were written, which fell in the
        middle of whichever run came then and stalled its writes behind
        up to a GiB of someone else's data."""
        os.sync()

    def drop_caches(self):
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")

    # ---- setup ----------------------------------------------------------

    def preflight(self):
        if os.geteuid() != 0:
            raise BenchError("run as root: network namespaces, FUSE mounts, drop_caches")
        if not os.path.exists(SWARMFS):
            raise BenchError("%s missing: cargo build --release" % SWARMFS)
        if not (self.args.no_stream or self.args.no_floor) and not os.path.exists(NULLFS):
            raise BenchError("%s missing: cargo build --release --example nullfs" % NULLFS)
        need = {"opentracker": "opentracker", "aria2c": "aria2", "transmission-cli": "transmission-cli",
                "nsenter": "util-linux", "ip": "iproute2", "/usr/bin/time": "time", "btfs": "btfs",
                "fusermount3": "fuse3"}
        missing = [pkg for cmd, pkg in need.items() if shutil.which(cmd) is None]
        if missing:
            raise BenchError("missing Debian packages: " + " ".join(sorted(set(missing))))
        routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        if "198.18.0." in routes:
            raise BenchError("198.18.0.0/24 is already routed here: %s" % routes)
        rqbit = shutil.which("rqbit") or os.path.expanduser("~/.cargo/bin/rqbit")
        self.rqbit = rqbit if os.path.exists(rqbit) else None
        if "rqbit" in self.args.clients and self.rqbit is None:
            log("rqbit not found (cargo install rqbit): left out")
            self.args.clients.remove("rqbit")

    def make_netns(self):
        a, b = self.ns_src, self.ns_dst
        for ns in (a, b):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            self.netns.append(ns)
        va, vb = "vb%da" % os.getpid(), "vb%db" % os.getpid()
        for cmd in (["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
                    ["ip", "link", "set", va, "netns", a], ["ip", "link", "set", vb, "netns", b],
                    ["ip", "-n", a, "addr", "add", SRC_IP + "/24", "dev", va],
                    ["ip", "-n", b, "addr", "add", DST_IP + "/24", "dev", vb],
                    ["ip", "-n", a, "link", "set", "lo", "up"], ["ip", "-n", b, "link", "set", "lo", "up"],
                    ["ip", "-n", a, "link", "set", va, "up"], ["ip", "-n", b, "link", "set", vb, "up"]):
            subprocess.run(cmd, check=True)

    def make_content(self):
        args = self.args
        self.content = os.path.join(self.work, "seed", "content")
        os.makedirs(self.content)
        count = args.files
        sizes = [args.size // count] * count
        sizes[-1] += args.size - sum(sizes)
        self.files = []
        for i, size in enumerate(sizes):
            name = "file%d.bin" % i
            digest = hashlib.sha256()
            with open(os.path.join(self.content, name), "wb") as f:
                left = size
                while left:
                    block = os.urandom(min(left, 4 * MiB))
                    digest.update(block)
                    f.write(block)
                    left -= len(block)
            self.files.append((name, size, digest.hexdigest()))
        self.torrent = os.path.join(self.work, "content.torrent")
        subprocess.run([SWARMFS, "-q", "create", self.content, "-l", str(args.piece_length), "--no-date",
                        "-t", "http://%s:%d/announce" % (SRC_IP, TRACKER_PORT), "-o", self.torrent],
                       check=True, stdout=subprocess.DEVNULL)
        info = subprocess.run([SWARMFS, "info", self.torrent], capture_output=True, text=True, check=True).stdout
        self.info_hash = [l.split()[1] for l in info.splitlines() if l.startswith("info-hash:")][0]
        os.chmod(self.torrent, 0o644)

    def start_tracker(self):
        wl = os.path.join(self.work, "whitelist")
        conf = os.path.join(self.work, "opentracker.conf")
        with open(wl, "w") as f:
            f.write(self.info_hash + "\n")
        with open(conf, "w") as f:
            f.write("access.whitelist %s\ntracker.rootdir /\n" % wl)
        os.chmod(wl, 0o644)
        os.chmod(conf, 0o644)
        self.spawn(self.in_ns(self.ns_src, ["opentracker", "-f", conf, "-i", SRC_IP, "-p", str(TRACKER_PORT),
                                            "-P", str(TRACKER_PORT)]), os.path.join(self.work, "opentracker.log"))
        time.sleep(0.5)

    def start_seeders(self, n):
        seeders = []
        # Each seeder hashes its data once, before it is ready: in seed
        # mode it would hash each piece on its first request, and the first
        # downloads (the warm-up reaches a third of each of 3 seeders'
        # pieces) would pay for it in CPU and time: 3 seeders used 3.5 s of
        # CPU for the first timed download, 2.1 s by the fourth.
        # Send buffers sized for a fast link (--seeder-send): with
        # libtorrent's defaults a seeder queues 10 KiB for a peer in the
        # connection's first second and at most 500 KiB after, and one
        # seeder held swarmfs and rqbit alike to about 450 MB/s, however
        # fast either could take it.
        fast = "1" if self.args.seeder_send == "fast" else "0"
        env = dict(os.environ, LT_LISTEN_HOST=SRC_IP, LT_FULL_CHECK="1", LT_FAST_SEND=fast)
        for i in range(n):
            logf = os.path.join(self.work, "seeder%d.log" % i)
            open(logf, "w").close()
            p = self.spawn(self.in_ns(self.ns_src, ["/usr/bin/python3", LT_PEER, "seed", self.torrent,
                                                    os.path.join(self.work, "seed"), str(6881 + i), "100000"]),
                           logf, env=env)
            seeders.append((p, logf))
        for p, logf in seeders:
            self.wait_for("libtorrent seeder", lambda: "\nready\n" in "\n" + open(logf).read(), 60, proc=p)
        return [p for p, _ in seeders]

    # ---- one download ---------------------------------------------------

    def verify(self, client, data_dir):
        for name, size, want in self.files:
            path = os.path.join(data_dir, "content", name)
            digest = hashlib.sha256()
            try:
                with open(path, "rb") as f:
                    while True:
                        block = f.read(4 * MiB)
                        if not block:
                            break
                        digest.update(block)
            except OSError as e:
                raise BenchError("%s: %s: %s" % (client, path, e))
            if digest.hexdigest() != want:
                raise BenchError("%s: %s differs from the source (sha256)" % (client, name))

    def download(self, client, seeders, round_no, beside=None):
        """One timed download. `beside(mnt)`, for swarmfs, runs in a
        thread of its own from the start and must end with the download;
        its return value is the run's "beside"."""
        run_dir = os.path.join(self.work, "run", client)
        shutil.rmtree(run_dir, ignore_errors=True)
        data = os.path.join(run_dir, "data")
        os.makedirs(data)
        timef = os.path.join(run_dir, "time.txt")
        logf = os.path.join(run_dir, "client.log")
        port = self.next_port()
        total = self.args.size
        env = None
        finish = None
        # Bytes on disk, the blocks the data directory holds: what every
        # client has written so far (they allocate as they write).
        progress = lambda: allocated(data)
        if client == "swarmfs":
            mnt = os.path.join(run_dir, "mnt")
            os.makedirs(mnt)
            self.mounts.append(mnt)
            argv = [SWARMFS, SWARMFS_VERBOSITY, "-f", self.torrent, mnt, "-o",
                    "data=%s,bind=%s,port=%d" % (data, DST_IP, port)]

            def done():
                try:
                    with open(os.path.join(mnt, "stats")) as f:
                        return "state seeding\n" in f.read()
                except OSError:
                    return False

            def finish():
                with open(os.path.join(mnt, "ctl"), "w") as f:
                    f.write("quit\n")

            # swarmfs reserves a new file's blocks when it creates it: its
            # own count of verified bytes, each piece written once verified.
            progress = lambda: swarmfs_have(mnt)
        elif client == "aria2":
            argv = ["aria2c", "--interface=" + DST_IP, "--enable-dht=false", "--enable-dht6=false",
                    "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--seed-time=0",
                    "--file-allocation=none", "--summary-interval=0", "--console-log-level=warn",
                    "--listen-port=%d" % port, "--dir=" + data, self.torrent]
            done = None
        elif client == "transmission":
            conf = os.path.join(run_dir, "tr")
            os.makedirs(conf)
            flag = os.path.join(run_dir, "finished")
            script = os.path.join(run_dir, "finished.sh")
            with open(script, "w") as f:
                f.write("#!/bin/sh\ntouch %s\n" % flag)
            os.chmod(script, 0o755)
            with open(os.path.join(conf, "settings.json"), "w") as f:
                json.dump({"dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
                           "port-forwarding-enabled": False, "utp-enabled": False, "rpc-enabled": False,
                           "bind-address-ipv4": DST_IP, "encryption": 0}, f)
            argv = ["transmission-cli", "-g", conf, "-w", data, "-p", str(port), "-et", "-M",
                    "-f", script, self.torrent]

            def done():
                return os.path.exists(flag)
        elif client == "libtorrent":
            # TCP, as every other client here (Transmission's uTP is off
            # too): over uTP, which libtorrent prefers, it took 45 to 75 s.
            env = dict(os.environ, LT_LISTEN_HOST=DST_IP, LT_TCP_ONLY="1")
            argv = ["/usr/bin/python3", LT_PEER, "leech", self.torrent, data, str(port), str(self.args.timeout)]

            def done():
                with open(logf) as f:
                    return "\ncomplete\n" in f.read()
        elif client == "rqbit":
            argv = [self.rqbit, "-v", "warn", "--disable-dht", "--disable-dht-persistence",
                    "--disable-upnp-port-forward", "--disable-lsd", "--listen-ip", DST_IP,
                    "--listen-port", str(port), "download", "--disable-http-api", "-o", os.path.join(data, "content"),
                    "--exit-on-finish", self.torrent]
            done = None
        else:
            raise BenchError("unknown client " + client)

        argv = self.in_ns(self.ns_dst, ["/usr/bin/time", "-v", "-o", timef] + argv)
        samples = []
        stop_sampling = threading.Event()

        def sample():
            while not stop_sampling.is_set():
                samples.append((time.monotonic() - start, min(progress(), total)))
                stop_sampling.wait(0.1)

        self.settle()
        cpu_before = cpu_snapshot() if client == "swarmfs" else None
        start = time.monotonic()
        proc = self.spawn(argv, logf, env=env)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        beside_result = []
        if beside:
            beside_thread = threading.Thread(target=lambda: beside_result.append(beside(mnt)), daemon=True)
            beside_thread.start()
        try:
            if done is None:
                self.wait_for(client, lambda: proc.poll() is not None, self.args.timeout)
                if proc.returncode != 0:
                    raise BenchError("%s exited %d: %s" % (client, proc.returncode, tail(logf)))
                end = time.monotonic()
            else:
                end = self.wait_for(client, done, self.args.timeout, proc=proc)
                if cpu_before:
                    cpu = cpu_between(cpu_before, cpu_snapshot())
                if finish:
                    finish()
                    proc.wait(30)
                else:
                    self.signal_client(proc, signal.SIGINT if client == "libtorrent" else signal.SIGTERM)
                    proc.wait(30)
        except BenchError as e:
            raise BenchError("%s (log: %s)" % (e, tail(logf)))
        finally:
            stop_sampling.set()
            sampler.join()
            self.stop(proc, signal.SIGKILL, wait=5)
            if beside:
                beside_thread.join()
        samples.append((end - start, total))
        self.verify(client, data)
        usage = parse_time_v(timef)
        wall = end - start
        run = {
            "client": client, "seeders": seeders, "round": round_no, "wall_s": round(wall, 3),
            "mb_per_s": round(total / wall / 1e6, 1), "user_s": usage["user"], "sys_s": usage["sys"],
            "cpu_s": round(usage["user"] + usage["sys"], 2),
            "cpu_s_per_gib": round((usage["user"] + usage["sys"]) * GiB / total, 2),
            "peak_rss_mib": round(usage["rss_kb"] / 1024, 1), "progress": samples,
        }
        if cpu_before:
            run["cpu"] = cpu
        if beside:
            run["beside"] = beside_result[0] if beside_result else None
        log("%-12s seeders=%d round=%s  %6.2f s  %6.1f MB/s  cpu %5.2f s  rss %5.1f MiB" % (
            client, seeders, round_no, wall, run["mb_per_s"], run["cpu_s"], run["peak_rss_mib"]))
        # The client's own log stays, for a run that needs explaining.
        logs = os.path.join(self.out, "logs")
        os.makedirs(logs, exist_ok=True)
        shutil.copy(logf, os.path.join(logs, "%s-s%d-r%s.log" % (client, seeders, round_no)))
        shutil.rmtree(run_dir, ignore_errors=True)
        return run

    # ---- streaming against btfs ------------------------------------------

    def mount_fs(self, fs, run_dir, logf):
        """Mounts `fs` at RUN_DIR/mnt, its output to `logf` (kept in
        OUT/logs, so that a mount that failed can be explained). Returns
        the process, the mount point, the content's path in it, when the
        mount started, the seconds it took, and a `cpu_snapshot` from just
        before it started."""
        mnt = os.path.join(run_dir, "mnt")
        data = os.path.join(run_dir, "data")
        os.makedirs(mnt)
        os.makedirs(data)
        self.mounts.append(mnt)
        port = self.next_port()
        if fs == "swarmfs":
            argv = [SWARMFS, SWARMFS_VERBOSITY, "-f", self.torrent, mnt, "-o", "data=%s,bind=%s,port=%d" % (data, DST_IP, port)]
            prefix = os.path.join(mnt, "files", "content")
        else:
            argv = ["btfs", "-f", "--data-directory=" + data, "--min-port=%d" % port, "--max-port=%d" % port,
                    self.torrent, mnt]
            prefix = os.path.join(mnt, "content")
        self.settle()
        cpu_before = cpu_snapshot()
        start = time.monotonic()
        proc = self.spawn(self.in_ns(self.ns_dst, argv), logf)
        name = self.files[0][0]
        try:
            ready = self.wait_for(fs + " mount", lambda: os.path.exists(os.path.join(prefix, name)), 60, proc=proc)
        except BenchError as e:
            self.unmount_fs(fs, proc, mnt)
            raise BenchError("%s (log %s: %s)" % (e, logf, tail(logf)))
        return proc, mnt, prefix, start, ready - start, cpu_before

    def mount_reference(self, fs, run_dir, logf, result):
        """`mount_fs`, once more if a reference filesystem (btfs) dies
        while mounting: it aborted now and then here (SIGABRT in the
        middle of a 25-minute run), which is its own fault, not a
        measurement. swarmfs gets no second chance. The failure is kept in
        `result`."""
        try:
            return self.mount_fs(fs, run_dir, logf)
        except BenchError as e:
            if fs == "swarmfs":
                raise
            log("%s failed, mounting it again: %s" % (fs, e))
            result.setdefault("retried", []).append(str(e)[:300])
            shutil.rmtree(run_dir, ignore_errors=True)
            return self.mount_fs(fs, run_dir, logf + ".again")

    def unmount_fs(self, fs, proc, mnt):
        if fs == "swarmfs":
            try:
                with open(os.path.join(mnt, "ctl"), "w") as f:
                    f.write("quit\n")
            except OSError:
                pass
        else:
            subprocess.run(["fusermount", "-u", mnt], stderr=subprocess.DEVNULL)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            self.stop(proc, signal.SIGKILL)
        self.unmount(mnt)

    def stream(self, fs, seeders, round_no):
        name, size, _ = self.files[0]
        ref = os.path.join(self.content, name)
        result = {"fs": fs, "seeders": seeders, "round": round_no}
        # First byte of a read at a random offset, on a fresh mount.
        run_dir = os.path.join(self.work, "stream", fs)
        logs = os.path.join(self.out, "logs")
        os.makedirs(logs, exist_ok=True)
        logf = os.path.join(logs, "stream-%s-s%d-r%d" % (fs, seeders, round_no))
        shutil.rmtree(run_dir, ignore_errors=True)
        proc, mnt, prefix, _, mount_s, _ = self.mount_reference(fs, run_dir, logf + "-first.log", result)
        offset = random.randrange(size // 4, size - 16384) // 16384
        t0 = time.monotonic()
        r = subprocess.run(["timeout", "120", "dd", "if=" + os.path.join(prefix, name), "of=/dev/null",
                            "bs=16384", "skip=%d" % offset, "count=1", "status=none"])
        first = time.monotonic() - t0
        self.unmount_fs(fs, proc, mnt)
        if r.returncode != 0:
            raise BenchError("%s: random read failed (dd exit %d)" % (fs, r.returncode))
        result.update(mount_s=round(mount_s, 3), first_byte_s=round(first, 3))
        # A whole file read in order through a fresh mount, timed, then
        # checked against the source through the same open file.
        shutil.rmtree(run_dir, ignore_errors=True)
        proc, mnt, prefix, started, _, cpu_at_mount = self.mount_reference(fs, run_dir, logf + "-sequential.log", result)
        # When swarmfs has the whole file on disk: a streaming read that
        # ends well after it lagged behind the download, one that ends
        # with it was held to a download slower than a plain one.
        on_disk = OnDisk(mnt, size) if fs == "swarmfs" else None
        reader = subprocess.Popen(["timeout", str(self.args.timeout), sys.executable, SEQREAD,
                                   os.path.join(prefix, name), ref], stdout=subprocess.PIPE, text=True)
        # Its first line comes at the last byte, before it checks what it
        # read (reading the file once more): the cores are counted to there.
        timing = reader.stdout.readline()
        on_disk_at = on_disk.stop() if on_disk else None
        cpu = cpu_between(cpu_at_mount, cpu_snapshot())
        reader.stdout.read()
        reader.wait()
        self.unmount_fs(fs, proc, mnt)
        shutil.rmtree(run_dir, ignore_errors=True)
        if reader.returncode != 0 or len(timing.split()) != 3:
            raise BenchError("%s: sequential read of %s differs or failed (exit %d)" % (fs, name, reader.returncode))
        whole, end, cpu["reader"] = (float(x) for x in timing.split())
        result["cpu"] = cpu
        # From the mount's start to the last byte, like a plain download's
        # time (start to done): the engine downloads from the start, before
        # the reader opens the file.
        from_mount = end - started
        result.update(sequential_s=round(whole, 3), sequential_mb_per_s=round(size / whole / 1e6, 1),
                      from_mount_s=round(from_mount, 3), from_mount_mb_per_s=round(size / from_mount / 1e6, 1))
        lag = ""
        if on_disk_at is not None:
            result.update(on_disk_s=round(on_disk_at - started, 3), last_byte_after_s=round(end - on_disk_at, 3))
            lag = "  on disk %.2f s, last byte %+.3f s after" % (result["on_disk_s"], result["last_byte_after_s"])
        log("stream %-8s seeders=%d round=%d  mount %.2f s  first byte %.3f s  sequential %.1f MB/s%s" % (
            fs, seeders, round_no, mount_s, first, result["sequential_mb_per_s"], lag))
        return result

    def null_file(self):
        """The file of examples/nullfs, mounted on first use as large as
        the file the streaming reads read."""
        if self.null_path is None:
            mnt = os.path.join(self.work, "nullfs")
            os.makedirs(mnt, exist_ok=True)
            self.mounts.append(mnt)
            logs = os.path.join(self.out, "logs")
            os.makedirs(logs, exist_ok=True)
            proc = self.spawn([NULLFS, mnt, str(self.files[0][1])], os.path.join(logs, "nullfs.log"))
            path = os.path.join(mnt, "data")
            self.wait_for("nullfs mount", lambda: os.path.exists(path), 30, proc=proc)
            self.null_path = path
        return self.null_path

    def download_beside_null_read(self, seeders, round_no, rate):
        """A plain swarmfs download while another process reads a file as
        large as the streamed one through nullfs, from when the mount shows
        its files (as the streaming reader does) at `rate` bytes a second:
        what a read through FUSE that costs nothing to answer takes from a
        download sharing the cores: the cost of FUSE itself on this host,
        beside which the streaming ratio can be read."""
        path = self.null_file()

        def read(mnt):
            try:
                self.wait_for("swarmfs mount", lambda: os.path.exists(os.path.join(mnt, "files")), 60)
            except BenchError:
                return None
            r = subprocess.run(["timeout", str(self.args.timeout), sys.executable, SEQREAD, path, "-", "%d" % rate],
                               stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                return None
            seconds, _, cpu = (float(x) for x in r.stdout.split())
            return seconds, cpu

        run = self.download("swarmfs", seeders, "null%d" % round_no, beside=read)
        if run["beside"] is None:
            raise BenchError("the read through nullfs beside the download failed (log: %s)" % (
                tail(os.path.join(self.out, "logs", "nullfs.log"))))
        # The reader may end after the download (its threads are gone
        # then, and were not all counted): its own figure.
        run["beside"], run["cpu"]["reader"] = run["beside"]
        return run

    # ---- swarmfs alone ----------------------------------------------------

    def files_read(self, rounds):
        """files/ against the data files, cold and warm page cache."""
        mnt = os.path.join(self.work, "readmnt")
        os.makedirs(mnt, exist_ok=True)
        self.mounts.append(mnt)
        subprocess.run([SWARMFS, "-q", self.torrent, mnt, "-o",
                        "data=%s,no_trackers,bind=127.0.0.1,port=0,log=%s" % (
                            os.path.join(self.work, "seed"), os.path.join(self.work, "readmnt.log"))], check=True)
        self.wait_for("read mount", lambda: "state seeding\n" in open(os.path.join(mnt, "stats")).read(), 60)
        via = [os.path.join(mnt, "files", "content", n) for n, _, _ in self.files]
        direct = [os.path.join(self.content, n) for n, _, _ in self.files]
        times = {k: [] for k in ("files_cold", "direct_cold", "files_warm", "direct_warm")}

        def cat(paths):
            t0 = time.monotonic()
            subprocess.run(["cat"] + paths, stdout=subprocess.DEVNULL, check=True)
            return time.monotonic() - t0

        for r in range(rounds):
            order = [("files", via), ("direct", direct)]
            if r % 2:
                order.reverse()
            for what, paths in order:
                self.drop_caches()
                times[what + "_cold"].append(cat(paths))
                cat(paths)
                times[what + "_warm"].append(cat(paths))
        with open(os.path.join(mnt, "ctl"), "w") as f:
            f.write("quit\n")
        time.sleep(0.5)
        self.unmount(mnt)
        mb = self.args.size / 1e6
        res = {k: round(mb / median(v), 1) for k, v in times.items()}
        res["cold_ratio"] = round(res["files_cold"] / res["direct_cold"], 2)
        res["warm_ratio"] = round(res["files_warm"] / res["direct_warm"], 2)
        res["seconds"] = {k: [round(t, 3) for t in v] for k, v in times.items()}
        log("files/ read MB/s: %s" % res)
        return res

    def hash_check(self, rounds):
        paths = [os.path.join(self.content, n) for n, _, _ in self.files]
        subprocess.run(["cat"] + paths, stdout=subprocess.DEVNULL)  # warm
        ours, theirs = [], []
        for _ in range(rounds):
            t0 = time.monotonic()
            subprocess.run([SWARMFS, "-q", "check", self.torrent, "--data", os.path.join(self.work, "seed")],
                           check=True, stdout=subprocess.DEVNULL)
            ours.append(time.monotonic() - t0)
            t0 = time.monotonic()
            subprocess.run(["sha1sum"] + paths, check=True, stdout=subprocess.DEVNULL)
            theirs.append(time.monotonic() - t0)
        mb = self.args.size / 1e6
        res = {"swarmfs_check_mb_per_s": round(mb / median(ours), 1),
               "sha1sum_mb_per_s": round(mb / median(theirs), 1)}
        res["ratio"] = round(res["swarmfs_check_mb_per_s"] / res["sha1sum_mb_per_s"], 2)
        log("hash check: %s" % res)
        return res

    def machine(self):
        """What this machine can do at best: SHA-1, and TCP over loopback and the veth pair."""
        buf = os.urandom(256 * MiB)
        t0 = time.monotonic()
        hashlib.sha1(buf).digest()
        sha1 = 256 * MiB / (time.monotonic() - t0) / 1e6
        del buf
        res = {"sha1_one_core_mb_per_s": round(sha1, 1),
               "tcp_loopback_mb_per_s": self.tcp_speed(None, "127.0.0.1"),
               "tcp_veth_mb_per_s": self.tcp_speed(self.ns_src, SRC_IP)}
        log("machine: %s" % res)
        return res

    def tcp_speed(self, server_ns, host):
        port = self.next_port()
        amount = 2 * GiB
        server = ("import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                  "s.bind((%r,%d));s.listen(1);print('up',flush=True);c,_=s.accept();b=bytearray(1<<20)\n"
                  "while c.recv_into(b):pass\n") % (host, port)
        argv = ["/usr/bin/python3", "-c", server]
        if server_ns:
            argv = self.in_ns(server_ns, argv)
        srv = subprocess.Popen(argv, stdout=subprocess.PIPE)
        srv.stdout.readline()
        client = ("import socket,time\nc=socket.create_connection((%r,%d));b=bytes(1<<20);n=%d\n"
                  "t=time.monotonic()\nfor _ in range(n//len(b)):c.sendall(b)\nc.close();"
                  "print(n/(time.monotonic()-t)/1e6)\n") % (host, port, amount)
        argv = ["/usr/bin/python3", "-c", client]
        if server_ns:
            argv = self.in_ns(self.ns_dst, argv)
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        srv.wait(10)
        return round(float(out), 1)

    # ---- the whole run ----------------------------------------------------

    def run(self):
        args = self.args
        self.preflight()
        started = datetime.datetime.now(datetime.timezone.utc)
        log("work directory %s" % self.work)
        self.make_netns()
        self.make_content()
        self.start_tracker()
        subprocess.run(["cat"] + [os.path.join(self.content, n) for n, _, _ in self.files], stdout=subprocess.DEVNULL)
        for n in args.seeders:
            seeders = self.start_seeders(n)
            # An untimed download first, for each set of seeders: on a
            # virtual machine the first use of fresh memory for the page
            # cache costs several times what later uses do, which would
            # fall on the first client of the first round. (The seeders
            # hashed their data when they started: see start_seeders.)
            log("warm-up download (not counted)")
            self.download(args.clients[0], n, -1)
            for r in range(args.rounds):
                # Rotate the order so that no client always goes first.
                k = r % len(args.clients)
                order = list(args.clients[k:]) + list(args.clients[:k])
                for client in order:
                    self.runs.append(self.download(client, n, r))
            if n in args.stream_seeders and not args.no_stream:
                streaming = self.extra.setdefault("streaming", [])
                # swarmfs streams in at least 10 rounds, an even number (the
                # plain download goes after as often as before): a ratio of
                # two figures that each vary by 15% needs them (5 at first;
                # one run at 6dd911b had pairs from 0.67 to 1.06); btfs,
                # whose sequential read takes minutes, in the usual number.
                pairs = max(args.rounds, 10)
                plains = [x["mb_per_s"] for x in self.runs if x["client"] == "swarmfs" and x["seeders"] == n]
                for r in range(pairs + pairs % 2):
                    order = ["swarmfs", "btfs"] if r % 2 == 0 else ["btfs", "swarmfs"]
                    for fs in (f for f in order if f in args.stream_with and (f == "swarmfs" or r < args.rounds)):
                        if fs != "swarmfs":
                            streaming.append(self.stream(fs, n, r))
                            continue
                        # Streaming is held against swarmfs's own plain
                        # download, so each streaming read gets one of those
                        # next to it, from the same seeders (after it in
                        # even rounds, before it in odd ones): the host's
                        # speed drifts by more than the 10% the target
                        # allows between the download rounds above and
                        # these (not counted in that table).
                        # The floor (a read through nullfs beside a plain
                        # download, paced at the plain downloads' median
                        # speed) goes first in odd rounds, last in even
                        # ones: the plain download sits between it and the
                        # streaming read either way.
                        floor = plain = None
                        if r % 2:
                            if not args.no_floor:
                                floor = self.download_beside_null_read(n, r, median(plains) * 1e6)
                            plain = self.download("swarmfs", n, "stream%d" % r)
                        result = self.stream(fs, n, r)
                        plain = plain or self.download("swarmfs", n, "stream%d" % r)
                        plains.append(plain["mb_per_s"])
                        if not args.no_floor and floor is None:
                            floor = self.download_beside_null_read(n, r, median(plains) * 1e6)
                        result.update(paired(result, plain))
                        streaming.append(result)
                        if floor:
                            self.extra.setdefault("fuse_floor", []).append(floor_of(floor, plain, n, r))
            for p in seeders:
                self.stop(p, signal.SIGINT)
        if not args.no_alone:
            self.extra["hash_check"] = self.hash_check(args.rounds)
            self.extra["machine"] = self.machine()
            # Cold reads vary more than downloads: a cold read of either
            # path here takes 0.5 s or, one time in four or five, 0.65 to
            # 1.5 s (the host's disk, whichever path reads). At least 12
            # of them, an even number, so that a few slow ones do not set
            # the median, and files/ and the data file each go first (the
            # order alternates) as often as the other.
            rounds = max(args.rounds, 12)
            self.extra["files_read"] = self.files_read(rounds + rounds % 2)
        self.write(started)

    def write(self, started):
        args = self.args
        summary = summarize(self.runs, self.extra, args)
        meta = machine_description()
        meta.update(command=" ".join(sys.argv), started=started.isoformat(timespec="seconds"),
                    size=args.size, piece_length=args.piece_length, files=args.files, rounds=args.rounds,
                    seeder_send=args.seeder_send, versions=client_versions(self.rqbit))
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump({"meta": meta, "summary": summary, "runs": self.runs, "extra": self.extra}, f, indent=1)
        with open(os.path.join(self.out, "runs.csv"), "w", newline="") as f:
            w = csv.writer(f)
            keys = ["client", "seeders", "round", "wall_s", "mb_per_s", "user_s", "sys_s", "cpu_s",
                    "cpu_s_per_gib", "peak_rss_mib"]
            w.writerow(keys)
            for run in self.runs:
                w.writerow([run[k] for k in keys])
        text = markdown(meta, summary, self.extra)
        with open(os.path.join(self.out, "summary.md"), "w") as f:
            f.write(text)
        plot(self.runs, os.path.join(self.out, "progress.png"))
        print(text)
        log("results in %s" % self.out)


class OnDisk:
    """Watches the swarmfs mount `mnt` (every 20 ms, its `stats`) for the
    moment all `size` bytes are verified: swarmfs writes each piece whole
    once verified and counts it after, so the moment the last of them was
    written. (Not the file's disk blocks: swarmfs reserves them all when it
    creates the file.)"""

    def __init__(self, mnt, size):
        self.mnt, self.size = mnt, size
        self.at = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.done.is_set():
            if swarmfs_have(self.mnt) >= self.size:
                self.at = time.monotonic()
                return
            self.done.wait(0.02)

    def stop(self):
        """When the file was all on disk (CLOCK_MONOTONIC), or None."""
        self.done.set()
        self.thread.join()
        return self.at


def cpu_snapshot():
    """Every thread's CPU time on the machine so far (schedstat, ns), each
    with its role, and the machine's idle time: taken at a run's start and
    end, their difference says where the cores went. swarmfs's threads
    are told apart by name: `fuser-*` answer FUSE requests, the rest are
    the engine's (its runtime's workers and blocking pool)."""
    threads = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmdline = f.read()
            tids = os.listdir("/proc/%s/task" % pid)
        except OSError:
            continue
        if comm == "swarmfs":
            role = None
        elif b"lt_peer.py\0seed\0" in cmdline:
            role = "seeders"
        elif b"seqread.py" in cmdline:
            role = "reader"
        elif comm == "nullfs":
            role = "nullfs"
        else:
            role = "other"
        for tid in tids:
            try:
                with open("/proc/%s/task/%s/schedstat" % (pid, tid)) as f:
                    ns = int(f.read().split()[0])
                if role is None:
                    with open("/proc/%s/task/%s/comm" % (pid, tid)) as f:
                        thread_role = "swarmfs FUSE" if f.read().startswith("fuser") else "swarmfs engine"
                else:
                    thread_role = role
            except (OSError, ValueError, IndexError):
                continue
            threads[int(tid)] = (thread_role, ns)
    with open("/proc/stat") as f:
        cpu = f.readline().split()
    return {"threads": threads, "idle": (int(cpu[4]) + int(cpu[5])) / os.sysconf("SC_CLK_TCK")}


CPU_ROLES = ["swarmfs engine", "swarmfs FUSE", "seeders", "reader", "nullfs", "other", "idle"]


def cpu_between(before, after):
    """CPU seconds by role from `before` to `after` (see cpu_snapshot).
    The threads of a process that ended in between are not counted: the
    reader's come from its own report."""
    out = dict.fromkeys(CPU_ROLES, 0.0)
    for tid, (role, ns) in after["threads"].items():
        prev = before["threads"].get(tid)
        out[role] += (ns - (prev[1] if prev and prev[0] == role else 0)) / 1e9
    out["idle"] = after["idle"] - before["idle"]
    return {k: round(v, 3) for k, v in out.items()}


def swarmfs_have(mnt):
    """The bytes a swarmfs mount has verified (`have` in its `stats`); 0
    before it answers."""
    try:
        with open(os.path.join(mnt, "stats")) as f:
            for line in f:
                if line.startswith("have "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def allocated(path):
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_blocks * 512
            except OSError:
                pass
    return total


def is_mounted(path):
    """Is `path` a mount point in this mount namespace's table?"""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as f:
            # Spaces and the like are octal-escaped (\040) in the table.
            return any(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[1]) == path
                       for line in f if line.strip())
    except OSError:
        return False


def tail(path, n=400):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace").replace("\r", "\n")
    except OSError:
        return ""


def parse_time_v(path):
    fields = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().rpartition(": ")
            fields[key] = value
    return {"user": float(fields["User time (seconds)"]), "sys": float(fields["System time (seconds)"]),
            "rss_kb": int(fields["Maximum resident set size (kbytes)"])}


def summarize(runs, extra, args):
    out = {"downloads": [], "targets": []}
    for n in args.seeders:
        per = {}
        for c in args.clients:
            rs = [r for r in runs if r["client"] == c and r["seeders"] == n]
            if not rs:
                continue
            per[c] = {k: median([r[k] for r in rs]) for k in
                      ("wall_s", "mb_per_s", "cpu_s", "cpu_s_per_gib", "peak_rss_mib")}
            per[c]["rounds"] = len(rs)
        others = {c: v for c, v in per.items() if c != "swarmfs"}
        ours = per.get("swarmfs")
        for c, v in per.items():
            row = dict(client=c, seeders=n, **v)
            if ours and c != "swarmfs":
                row["swarmfs_time_ratio"] = round(ours["wall_s"] / v["wall_s"], 2)
            out["downloads"].append(row)
        if ours and others:
            fastest = min(others, key=lambda c: others[c]["wall_s"])
            ratio = ours["wall_s"] / others[fastest]["wall_s"]
            out["targets"].append(target("wall time, %d seeder(s): swarmfs / fastest other (%s) <= 0.8" % (n, fastest),
                                         ratio, ratio <= 0.8))
            worst = min(v["cpu_s_per_gib"] for v in others.values())
            out["targets"].append(target("CPU s/GiB, %d seeder(s): swarmfs %.2f <= every other (lowest %.2f)" % (
                n, ours["cpu_s_per_gib"], worst), ours["cpu_s_per_gib"] / worst, ours["cpu_s_per_gib"] <= worst))
        if ours:
            out["targets"].append(target("peak RSS, %d seeder(s), %s: swarmfs <= 64 MiB" % (n, human(args.size)),
                                         ours["peak_rss_mib"], ours["peak_rss_mib"] <= 64))
    fr = extra.get("files_read")
    if fr:
        out["targets"].append(target("files/ sequential read, cold: files/ / direct >= 0.9", fr["cold_ratio"],
                                     fr["cold_ratio"] >= 0.9))
        out["targets"].append(target("files/ sequential read, warm: files/ / direct >= 0.9", fr["warm_ratio"],
                                     fr["warm_ratio"] >= 0.9))
    st = extra.get("streaming") or []
    out["streaming"] = []
    for n in sorted({s["seeders"] for s in st}):
        med = {}
        for fs in ("swarmfs", "btfs"):
            runs = [s for s in st if s["fs"] == fs and s["seeders"] == n]
            if runs:
                med[fs] = {k: median([s[k] for s in runs]) for k in
                           ("mount_s", "first_byte_s", "sequential_s", "sequential_mb_per_s")}
                out["streaming"].append(dict(fs=fs, seeders=n, rounds=len(runs), **med[fs]))
        if "swarmfs" in med and "btfs" in med:
            ours, theirs = med["swarmfs"]["first_byte_s"], med["btfs"]["first_byte_s"]
            out["targets"].append(target("first byte at a random offset, %d seeder(s): swarmfs %.3f s <= btfs %.3f s" % (
                n, ours, theirs), ours / max(theirs, 1e-6), ours <= theirs))
        pairs = [s for s in st if s["fs"] == "swarmfs" and s["seeders"] == n and "streaming_to_plain" in s]
        floors = [f["to_plain"] for f in extra.get("fuse_floor", []) if f["seeders"] == n]
        if floors:
            out.setdefault("fuse_floor", []).append({"seeders": n, "rounds": len(floors), "to_plain": median(floors)})
        # Where the cores went in each kind of run, by role.
        kinds = [("plain download", [(s["plain_wall_s"], s["plain_cpu"]) for s in pairs if "plain_cpu" in s]),
                 ("streaming", [(s["from_mount_s"], s["cpu"]) for s in pairs if "cpu" in s]),
                 ("beside nullfs", [(f["wall_s"], f["cpu"]) for f in extra.get("fuse_floor", [])
                                    if f["seeders"] == n and "cpu" in f])]
        for kind, rows in kinds:
            if rows:
                out.setdefault("cpu", []).append({
                    "seeders": n, "run": kind, "rounds": len(rows), "wall_s": median([w for w, _ in rows]),
                    "cpu_s": {role: round(median([c[role] for _, c in rows]), 3) for role in CPU_ROLES}})
        if pairs:
            r = median([s["streaming_to_plain"] for s in pairs])
            out["targets"].append(target(
                "sequential read of a downloading file / plain download next to it, %d seeder(s) >= 0.9 "
                "(median of %d pairs; medians %.1f / %.1f MB/s, both from the mount's start%s)" % (
                    n, len(pairs), median([s["from_mount_mb_per_s"] for s in pairs]),
                    median([s["plain_mb_per_s"] for s in pairs]),
                    "; a read through nullfs beside a plain download: %.2f" % median(floors) if floors else ""),
                r, r >= 0.9))
    return out


def paired(streamed, plain):
    """The plain download `plain` set beside the streaming read `streamed`."""
    ratio = streamed["from_mount_mb_per_s"] / plain["mb_per_s"]
    log("stream swarmfs  seeders=%d round=%d  plain download %.1f MB/s, streaming / plain %.2f" % (
        streamed["seeders"], streamed["round"], plain["mb_per_s"], ratio))
    return {"plain_wall_s": plain["wall_s"], "plain_mb_per_s": plain["mb_per_s"], "plain_cpu": plain["cpu"],
            "streaming_to_plain": round(ratio, 3)}


def floor_of(beside, plain, seeders, round_no):
    """The download beside a read through nullfs, held against the plain
    download next to it."""
    ratio = beside["mb_per_s"] / plain["mb_per_s"]
    log("null read       seeders=%d round=%d  download beside it %.1f MB/s, plain %.1f MB/s, ratio %.2f" % (
        seeders, round_no, beside["mb_per_s"], plain["mb_per_s"], ratio))
    return {"seeders": seeders, "round": round_no, "wall_s": beside["wall_s"], "mb_per_s": beside["mb_per_s"],
            "cpu_s": beside["cpu_s"], "cpu": beside["cpu"], "read_s": round(beside["beside"], 3),
            "plain_mb_per_s": plain["mb_per_s"],
            "to_plain": round(ratio, 3)}


def target(what, value, ok):
    return {"target": what, "value": round(value, 2), "result": "pass" if ok else "MISS"}


def human(n):
    return "%g GiB" % (n / GiB) if n >= GiB else "%g MiB" % (n / MiB)


def machine_description():
    cpu = ""
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"cpu": cpu, "cores": os.cpu_count(), "sha_ni": " sha_ni" in flags, "memory_mib": mem,
            "kernel": platform.release(), "os": platform.freedesktop_os_release().get("PRETTY_NAME", "")}


def client_versions(rqbit):
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    import libtorrent
    v = {"swarmfs": first_line([SWARMFS, "--version"]), "aria2": first_line(["aria2c", "--version"]),
         "transmission": first_line(["transmission-cli", "--version"]),
         "libtorrent": "libtorrent " + libtorrent.__version__ + " (python3-libtorrent)",
         "btfs": [l for l in subprocess.run(["btfs", "--version"], capture_output=True, text=True).stdout.splitlines()
                  if l.startswith("btfs")][:1] or "?",
         "opentracker": "Debian opentracker"}
    if rqbit:
        v["rqbit"] = first_line([rqbit, "--version"])
    return v


def markdown(meta, summary, extra):
    lines = ["## Results", "",
             "Machine: %s, %d cores%s, %d MiB RAM, %s, kernel %s." % (
                 meta["cpu"], meta["cores"], " with SHA-NI" if meta["sha_ni"] else "", meta["memory_mib"],
                 meta["os"], meta["kernel"]),
             "Torrent: %s of random data in %d file(s), %d KiB pieces; %d rounds, medians. Started %s." % (
                 human(meta["size"]), meta["files"], meta["piece_length"] // 1024, meta["rounds"], meta["started"]),
             "Seeders: libtorrent, %s." % (
                 "with its default send buffers" if meta.get("seeder_send") == "default" else
                 "with send buffers sized for a fast link (those of its high_performance_seed preset)"),
             "", "Command: `%s`" % meta["command"], "",
             "| seeders | client | wall s | MB/s | CPU s | CPU s/GiB | peak RSS MiB | swarmfs time / this |",
             "|---|---|---|---|---|---|---|---|"]
    for d in summary["downloads"]:
        lines.append("| %d | %s | %.2f | %.1f | %.2f | %.2f | %.1f | %s |" % (
            d["seeders"], d["client"], d["wall_s"], d["mb_per_s"], d["cpu_s"], d["cpu_s_per_gib"],
            d["peak_rss_mib"], d.get("swarmfs_time_ratio", "")))
    st = summary.get("streaming")
    if st:
        lines += ["", "| seeders | streaming | mount s | first byte s (random offset) | sequential read s | MB/s |",
                  "|---|---|---|---|---|---|"]
        for v in st:
            lines.append("| %d | %s | %.2f | %.3f | %.2f | %.1f |" % (
                v["seeders"], v["fs"], v["mount_s"], v["first_byte_s"], v["sequential_s"], v["sequential_mb_per_s"]))
        for n in sorted({v["seeders"] for v in st}):
            pairs = [s for s in extra.get("streaming", []) if "streaming_to_plain" in s and s["seeders"] == n]
            if pairs:
                lines += ["", "Streaming through swarmfs with %d seeder(s), from the mount's start to the last byte, "
                          "against its plain download next to it, by round: " % n +
                          "; ".join("%.1f / %.1f MB/s = %.2f%s" % (
                              s["from_mount_mb_per_s"], s["plain_mb_per_s"], s["streaming_to_plain"],
                              " (all on disk at %.2f s, last byte %+.3f s after)" % (
                                  s["on_disk_s"], s["last_byte_after_s"]) if "on_disk_s" in s else "")
                              for s in pairs) + "."]
    for f in summary.get("fuse_floor", []):
        rounds = [x for x in extra.get("fuse_floor", []) if x["seeders"] == f["seeders"]]
        lines += ["", "The floor for streaming through FUSE with %d seeder(s): a plain swarmfs download while another "
                  "process reads as much through a FUSE filesystem that answers from memory (`examples/nullfs.rs`), "
                  "at the plain downloads' median speed, ran at %.2f of the plain download next to it (median of %d; "
                  "by round: %s)." % (f["seeders"], f["to_plain"], f["rounds"],
                                      "; ".join("%.1f / %.1f MB/s = %.2f" % (x["mb_per_s"], x["plain_mb_per_s"], x["to_plain"])
                                                for x in rounds))]
    cpu = summary.get("cpu")
    if cpu:
        lines += ["", "Where the cores went, from the mount to the end of the run (CPU-seconds, medians of the streaming "
                  "rounds; every thread on the machine by role, from schedstat; idle: both cores' idle time):", "",
                  "| seeders | run | wall s | " + " | ".join(CPU_ROLES) + " |", "|---|---|---|" + "---|" * len(CPU_ROLES)]
        for c in cpu:
            lines.append("| %d | %s | %.3f | " % (c["seeders"], c["run"], c["wall_s"]) +
                         " | ".join("%.3f" % c["cpu_s"][role] for role in CPU_ROLES) + " |")
    retried = [s for s in extra.get("streaming", []) if s.get("retried")]
    if retried:
        lines += ["", "Mounted a second time after a failed mount: " + "; ".join(
            "%s, %d seeder(s), round %d (%s)" % (s["fs"], s["seeders"], s["round"], " / ".join(s["retried"]))
            for s in retried) + "."]
    fr = extra.get("files_read")
    if fr:
        lines += ["", "| read, MB/s | files/ | direct | ratio |", "|---|---|---|---|",
                  "| cold cache | %.0f | %.0f | %.2f |" % (fr["files_cold"], fr["direct_cold"], fr["cold_ratio"]),
                  "| warm cache | %.0f | %.0f | %.2f |" % (fr["files_warm"], fr["direct_warm"], fr["warm_ratio"])]
    hc = extra.get("hash_check")
    if hc:
        lines += ["", "Hash check of the whole torrent (cached): `swarmfs check` %.0f MB/s, `sha1sum` %.0f MB/s (%.2fx)." % (
            hc["swarmfs_check_mb_per_s"], hc["sha1sum_mb_per_s"], hc["ratio"])]
    m = extra.get("machine")
    if m:
        lines += ["", "Machine limits: SHA-1 on one core %.0f MB/s; TCP over loopback %.0f MB/s, over the veth pair %.0f MB/s." % (
            m["sha1_one_core_mb_per_s"], m["tcp_loopback_mb_per_s"], m["tcp_veth_mb_per_s"])]
    lines += ["", "| target | value | result |", "|---|---|---|"]
    for t in summary["targets"]:
        lines.append("| %s | %s | %s |" % (t["target"], t["value"], t["result"]))
    lines += ["", "Versions: " + "; ".join("%s: %s" % kv for kv in meta["versions"].items()), ""]
    return "\n".join(lines)


def plot(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("python3-matplotlib missing: no plot")
        return
    groups = sorted({r["seeders"] for r in runs})
    # Top row: every client; bottom row: the first seconds, where the fast
    # ones are (else they are squashed against the axis by the slow ones).
    fig, axes = plt.subplots(2, len(groups), figsize=(6 * len(groups), 9), squeeze=False)
    for col, n in enumerate(groups):
        last = max(r["round"] for r in runs if r["seeders"] == n)
        shown = [r for r in runs if r["seeders"] == n and r["round"] == last]
        fastest = min(r["wall_s"] for r in shown)
        zoom = 1.2 * max(r["wall_s"] for r in shown if r["wall_s"] <= 4 * fastest)
        for row, ax in enumerate(axes[:, col]):
            for r in shown:
                xs = [t for t, _ in r["progress"]]
                ys = [b / MiB for _, b in r["progress"]]
                ax.plot(xs, ys, label="%s (%.1f s)" % (r["client"], r["wall_s"]))
            if row == 0:
                ax.set_title("%d libtorrent seeder(s), round %d" % (n, last))
            else:
                ax.set_xlim(0, zoom)
                ax.set_title("the same, first %.1f s" % zoom)
            ax.set_xlabel("seconds")
            ax.set_ylabel("MiB on disk")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=parse_size, default=GiB, help="torrent size (default 1G)")
    p.add_argument("--piece-length", type=parse_size, default=parse_size("1M"), help="default 1M")
    p.add_argument("--files", type=int, default=1, help="number of files (default 1)")
    p.add_argument("--seeders", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3],
                   help="seeder counts to run, e.g. 1,3 (default)")
    p.add_argument("--seeder-send", choices=["fast", "default"], default="fast",
                   help="the seeders' send buffers: sized for a fast link as in libtorrent's "
                        "high_performance_seed preset (default), or libtorrent's defaults, under which one "
                        "seeder caps every client alike (see docs/performance.md)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per client (default 3)")
    p.add_argument("--clients", type=lambda s: s.split(","), default=list(ALL_CLIENTS),
                   help="comma-separated, from %s (default all)" % ",".join(ALL_CLIENTS))
    p.add_argument("--stream-seeders", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3],
                   help="seeder counts to stream with, from those run (default 1,3)")
    p.add_argument("--no-stream", action="store_true", help="skip the streaming comparison with btfs")
    p.add_argument("--stream-with", type=lambda s: s.split(","), default=["swarmfs", "btfs"],
                   help="filesystems to stream through (default swarmfs,btfs)")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the plain downloads beside a read through nullfs (the streaming floor)")
    p.add_argument("--no-alone", action="store_true", help="skip files/ reads, hash check, machine limits")
    p.add_argument("--timeout", type=int, default=600, help="seconds a single download may take")
    p.add_argument("--out", default=os.path.join(os.getcwd(), "bench-results"), help="results directory")
    p.add_argument("--workdir", help="where to put data (default: a new directory in $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args()
    unknown = set(args.clients) - set(ALL_CLIENTS)
    if unknown:
        p.error("unknown clients: %s" % ", ".join(sorted(unknown)))
    bench = Bench(args)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: sys.exit(130))
    try:
        bench.run()
    except BenchError as e:
        log("FAILED: %s" % e)
        return 1
    finally:
        bench.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
