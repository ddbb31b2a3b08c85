#!/usr/bin/env python3
"""segtool.py -- look at and damage repfs log segments, for fault tests

usage: segtool.py last LOGDIR                 path of the last segment
       segtool.py records SEGMENT             "seq offset length" per whole record
       segtool.py flip SEGMENT SEQ [AT]       flips one byte of record SEQ, at AT
                                              bytes into it (default: its middle)
       segtool.py tail SEGMENT KIND N         appends N bytes of a torn tail:
            prefix   the first N bytes of (a copy of) the last record
            zeros    N zero bytes
            lenhdr   a plausible length field (larger than what follows) + random bytes
            random   N random bytes

Segment layout (replication/oplog.h, record.h): a 64-byte header, then
records; each starts with its total length (u32 LE, MAC included), its seq
is the u64 LE at offset 16.
"""
import os
import struct
import sys

SEG_HEADER = 64
REC_MIN = 40


def records(path):
    data = open(path, "rb").read()
    off = SEG_HEADER
    out = []
    while off + REC_MIN <= len(data):
        ln = struct.unpack_from("<I", data, off)[0]
        if ln < REC_MIN or off + ln > len(data):
            break
        seq = struct.unpack_from("<Q", data, off + 16)[0]
        out.append((seq, off, ln))
        off += ln
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, path = argv[1], argv[2]
    if cmd == "last":
        segs = sorted(f for f in os.listdir(path) if f.endswith(".seg"))
        if not segs:
            print("no segments in '%s'" % path, file=sys.stderr)
            return 1
        print(os.path.join(path, segs[-1]))
        return 0
    if cmd == "records":
        for seq, off, ln in records(path):
            print(seq, off, ln)
        return 0
    if cmd == "flip" and len(argv) in (4, 5):
        seq = int(argv[3])
        for s, off, ln in records(path):
            if s == seq:
                at = int(argv[4]) if len(argv) == 5 else ln // 2
                with open(path, "r+b") as f:
                    f.seek(off + at)
                    b = f.read(1)
                    f.seek(off + at)
                    f.write(bytes([b[0] ^ 0x20]))
                print("flipped byte %d of record %d (segment offset %d)" % (at, seq, off + at))
                return 0
        print("no record %d in '%s'" % (seq, path), file=sys.stderr)
        return 1
    if cmd == "tail" and len(argv) == 5:
        kind, n = argv[3], int(argv[4])
        recs = records(path)
        if kind == "prefix":
            if not recs:
                return 1
            _, off, ln = recs[-1]
            if n >= ln:
                print("prefix of %d bytes is not shorter than the last record (%d)" % (n, ln), file=sys.stderr)
                return 1
            data = open(path, "rb").read()[off:off + n]
        elif kind == "zeros":
            data = bytes(n)
        elif kind == "lenhdr":
            data = struct.pack("<I", n + 500) + os.urandom(max(0, n - 4))
            data = data[:n]
        elif kind == "random":
            data = os.urandom(n)
            # a random length field could look like a whole record: make it implausible
            data = b"\xff\xff\xff\xff" + data[4:] if n >= 4 else data
        else:
            print(__doc__, file=sys.stderr)
            return 2
        with open(path, "ab") as f:
            f.write(data)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
