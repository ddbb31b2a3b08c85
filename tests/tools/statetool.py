#!/usr/bin/env python3
"""statetool.py -- read and rewrite a repfs DATADIR/state file, for fault tests

usage: statetool.py get DATADIR FIELD          prints a field (name, role, epoch, checkpoint, ...)
       statetool.py set DATADIR FIELD VALUE    rewrites it with a valid checksum
       statetool.py check DATADIR              exit 0 if the checksum is right

The state file is "key value" lines followed by "checksum %016x", the XXH64
(seed 0) of everything before that line (replication/state.c).
"""
import os
import sys

M = (1 << 64) - 1
P1, P2, P3, P4, P5 = (11400714785074694791, 14029467366897019727, 1609587929392839161,
                      9650029242287828579, 2870177450012600261)


def rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M


def rnd(acc, v):
    acc = (acc + v * P2) & M
    return (rotl(acc, 31) * P1) & M


def merge(h, v):
    h ^= rnd(0, v)
    return (h * P1 + P4) & M


def xxh64(data, seed=0):
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & M
        for k in range(4):
            h = merge(h, v[k])
    else:
        h = (seed + P5) & M
    h = (h + n) & M
    while i + 8 <= n:
        h ^= rnd(0, int.from_bytes(data[i:i + 8], "little"))
        h = (rotl(h, 27) * P1 + P4) & M
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * P1) & M
        h = (rotl(h, 23) * P2 + P3) & M
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M
        h = (rotl(h, 11) * P1) & M
        i += 1
    h ^= h >> 33
    h = (h * P2) & M
    h ^= h >> 29
    h = (h * P3) & M
    h ^= h >> 32
    return h


def load(datadir):
    raw = open(os.path.join(datadir, "state"), "rb").read()
    at = raw.find(b"checksum ")
    if at < 0:
        raise ValueError("no checksum line")
    body, want = raw[:at], int(raw[at + 9:at + 25], 16)
    return body, want


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, d = argv[1], argv[2]
    body, want = load(d)
    if cmd == "check":
        ok = xxh64(body) == want
        print("ok" if ok else "bad checksum")
        return 0 if ok else 1
    lines = body.decode().splitlines()
    if cmd == "get" and len(argv) == 4:
        for l in lines:
            k, _, v = l.partition(" ")
            if k == argv[3]:
                print(v)
                return 0
        return 1
    if cmd == "set" and len(argv) == 5:
        out, found = [], False
        for l in lines:
            k, _, v = l.partition(" ")
            if k == argv[3]:
                l, found = "%s %s" % (k, argv[4]), True
            out.append(l)
        if not found:
            print("no field '%s'" % argv[3], file=sys.stderr)
            return 1
        nb = ("\n".join(out) + "\n").encode()
        tmp = os.path.join(d, "state.statetool")
        with open(tmp, "wb") as f:
            f.write(nb + b"checksum %016x\n" % xxh64(nb))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(d, "state"))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
