#!/usr/bin/python3
"""check_resume.py TORRENT DATA_DIR: exits 1 if the resume file beside the
data marks a piece verified whose bytes on disk do not match its hash.

Independent of swarmfs's own code on purpose: it reads the resume file as
docs/resume-file.md describes it, and the torrent with its own bencode
decoder. Prints how many pieces the file marks, or that there is none.
"""
import hashlib
import os
import sys


def bdecode(data, i=0):
    c = data[i:i + 1]
    if c == b"i":
        end = data.index(b"e", i)
        return int(data[i + 1:end]), end + 1
    if c == b"l":
        out, i = [], i + 1
        while data[i:i + 1] != b"e":
            v, i = bdecode(data, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while data[i:i + 1] != b"e":
            k, i = bdecode(data, i)
            v, i = bdecode(data, i)
            out[k] = v
        return out, i + 1
    colon = data.index(b":", i)
    n = int(data[i:colon])
    return data[colon + 1:colon + 1 + n], colon + 1 + n


def main():
    torrent, data_dir = sys.argv[1], sys.argv[2]
    info = bdecode(open(torrent, "rb").read())[0][b"info"]
    name = info[b"name"].decode()
    plen = info[b"piece length"]
    hashes = [info[b"pieces"][i:i + 20] for i in range(0, len(info[b"pieces"]), 20)]
    if b"files" in info:
        files = [(os.path.join(data_dir, name, *[p.decode() for p in f[b"path"]]), f[b"length"])
                 for f in info[b"files"]]
    else:
        files = [(os.path.join(data_dir, name), info[b"length"])]
    path = os.path.join(data_dir, name + ".torrent.pieces")
    if not os.path.exists(path):
        print("no resume file")
        return 0
    text = open(path, "rb").read()
    body, _, last = text.rstrip(b"\n").rpartition(b"\n")
    if not last.startswith(b"sha1 ") or hashlib.sha1(body + b"\n").hexdigest() != last[5:].decode():
        print("resume file %s: bad sha1 line (a torn write?)" % path)
        return 1
    fields = dict(l.split(b" ", 1) for l in body.split(b"\n"))
    count, bits = fields[b"pieces"].split(b" ")
    bitfield = bytes.fromhex(bits.decode())
    marked = [p for p in range(int(count)) if bitfield[p // 8] & (0x80 >> (p % 8))]

    def piece_bytes(p):
        start, end, out, pos = p * plen, min((p + 1) * plen, sum(l for _, l in files)), b"", 0
        for fpath, flen in files:
            lo, hi = max(start, pos), min(end, pos + flen)
            if lo < hi:
                with open(fpath, "rb") as f:
                    f.seek(lo - pos)
                    out += f.read(hi - lo)
            pos += flen
        return out

    bad = [p for p in marked if hashlib.sha1(piece_bytes(p)).digest() != hashes[p]]
    if bad:
        print("pieces marked verified but wrong on disk: %s" % bad[:20])
        return 1
    print("%d pieces marked, all correct on disk" % len(marked))
    return 0


if __name__ == "__main__":
    sys.exit(main())
