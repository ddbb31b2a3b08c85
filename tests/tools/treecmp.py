#!/usr/bin/env python3
"""treecmp.py -- compare two or more directory trees exactly, for repfs tests

usage: treecmp.py [--ignore FIELD,...] [--root-meta] [--max N] A B [C ...]

Every tree is compared with the first. For each object (root excluded, see
below) it compares: presence and type, mode (all bits), uid, gid, size (not
for directories: their st_size is a file system detail), mtime in ns, link
count, rdev of device nodes, symlink target, extended attributes (names and
values; trusted.repfs.* excluded: repfs's own ids), the content of regular
files (logical content: a hole and written zeros are equal here) and their
hole map (the SEEK_DATA/SEEK_HOLE layout), and hard-link grouping (which
names share an inode). atime and ctime are not compared.

The root directory of each tree is compared for its contents, link count,
mtime and xattrs; its mode, uid and gid only with --root-meta (the root of a
`repfs replay` output is made by the replay tool, not by a record).

--ignore takes field names (type mode uid gid size mtime nlink rdev target
xattr content holes links) to skip, e.g. for file systems that lack holes.

--max N prints at most N differences (and how many there were).

Prints one line per difference and exits 1 if there is any, 0 otherwise,
2 on usage errors.
"""
import errno
import hashlib
import os
import stat
import struct
import sys

BLOCK = 4096
ZERO = bytes(BLOCK)
FIELDS = ("type", "mode", "uid", "gid", "size", "mtime", "nlink", "rdev", "target", "xattr",
          "content", "holes", "links")
HIDDEN_XATTR = "trusted.repfs."


def type_name(m):
    for test, name in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISCHR, "chardev"), (stat.S_ISBLK, "blockdev"),
                       (stat.S_ISSOCK, "socket")):
        if test(m):
            return name
    return "unknown"


def xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return out
        raise
    for n in names:
        if n.startswith(HIDDEN_XATTR):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = "<error %s>" % errno.errorcode.get(e.errno, e.errno)
    return out


def file_layout(fd, size):
    """(content digest, hole list) of an open regular file, reading only its data."""
    h = hashlib.blake2b(digest_size=16)
    holes = []
    pos = 0
    hashed = 0    # every block below this has been hashed
    while pos < size:
        try:
            d = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            d = size
        d = min(d, size)
        if d > pos:
            holes.append((pos, d))
        if d >= size:
            break
        try:
            e_ = os.lseek(fd, d, os.SEEK_HOLE)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            e_ = size
        e_ = min(max(e_, d + 1), size)
        # hash the non-zero BLOCK-aligned blocks with their offsets: the digest
        # is the same whether zeros are holes or written
        off = max(d - d % BLOCK, hashed)
        while off < e_:
            want = min(1 << 20, e_ - off)
            want += (-want) % BLOCK
            buf = os.pread(fd, want, off)
            if not buf:
                break
            for i in range(0, len(buf), BLOCK):
                b = buf[i:i + BLOCK]
                if b != ZERO[:len(b)]:
                    h.update(struct.pack("<QI", off + i, len(b)))
                    h.update(b)
            off += len(buf)
        hashed = off
        pos = e_
    h.update(struct.pack("<Q", size))
    return h.hexdigest(), holes


def fmt_ns(ns):
    return "%d.%09d" % divmod(ns, 1000000000)


class Tree:
    """Walks a tree with directory descriptors (*at calls), so that paths
    longer than PATH_MAX are fine."""

    def __init__(self, root):
        self.root = root
        # a raw store tree (DATADIR/tree, a replay dir) has an id index beside it,
        # which holds one more link of every live non-directory (fs/store.h)
        self.index_links = os.path.isdir(root.rstrip("/") + ".ids")
        self.objs = {}        # relpath ("/" for the root) -> dict of fields
        self.inodes = {}      # (dev, ino) -> [relpath]
        self.errors = []
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            st = os.fstat(fd)
            self.objs["/"] = self.describe("/", "/proc/self/fd/%d" % fd, st, None)
            self.walk(fd, "")
        finally:
            os.close(fd)

    def err(self, rel, e):
        self.errors.append("%s: %s: %s" % (self.root, rel or "/", e))

    def describe(self, rel, xpath, st, opener):
        m = st.st_mode
        d = {
            "type": type_name(m),
            "mode": "%o" % stat.S_IMODE(m),
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime": fmt_ns(st.st_mtime_ns),
            "nlink": st.st_nlink - (1 if self.index_links and not stat.S_ISDIR(m) and st.st_nlink > 0 else 0),
        }
        if not stat.S_ISDIR(m):
            d["size"] = st.st_size
        if stat.S_ISCHR(m) or stat.S_ISBLK(m):
            d["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
        d["xattr"] = xattrs(xpath)
        if opener:
            opener(d, m, st)
        if not stat.S_ISDIR(m):
            self.inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        return d

    def walk(self, dfd, rel):
        try:
            names = sorted(os.listdir(dfd))
        except OSError as e:
            self.err(rel, e)
            return
        for n in names:
            r = rel + "/" + n if rel else n
            try:
                st = os.lstat(n, dir_fd=dfd)

                def opener(d, m, st, n=n):
                    if stat.S_ISLNK(m):
                        d["target"] = os.readlink(n, dir_fd=dfd)
                    elif stat.S_ISREG(m):
                        fd = os.open(n, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dfd)
                        try:
                            d["content"], d["holes"] = file_layout(fd, st.st_size)
                        finally:
                            os.close(fd)
                self.objs[r] = self.describe(r, "/proc/self/fd/%d/%s" % (dfd, n), st, opener)
            except OSError as e:
                self.err(r, e)
                continue
            if stat.S_ISDIR(st.st_mode):
                try:
                    sub = os.open(n, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dfd)
                except OSError as e:
                    self.err(r, e)
                    continue
                try:
                    self.walk(sub, r)
                finally:
                    os.close(sub)

    def link_groups(self):
        """relpath -> sorted tuple of every name of the same inode (only if > 1)."""
        out = {}
        for names in self.inodes.values():
            if len(names) > 1:
                g = tuple(sorted(names))
                for n in names:
                    out[n] = g
        return out


def show(v):
    if isinstance(v, dict):
        return "{" + ", ".join("%s=%r" % (k, v[k]) for k in sorted(v)) + "}"
    if isinstance(v, list):
        return "[" + ", ".join("%d-%d" % r for r in v) + "]" if v else "[]"
    return str(v)


def compare(a, b, ignore, root_meta):
    diffs = []
    la, lb = a.link_groups(), b.link_groups()
    for rel in sorted(set(a.objs) | set(b.objs)):
        if rel not in b.objs:
            diffs.append("%s: only in %s" % (rel, a.root))
            continue
        if rel not in a.objs:
            diffs.append("%s: only in %s" % (rel, b.root))
            continue
        oa, ob = a.objs[rel], b.objs[rel]
        if oa["type"] != ob["type"]:
            if "type" not in ignore:
                diffs.append("%s: type: %s=%s %s=%s" % (rel, a.root, oa["type"], b.root, ob["type"]))
            continue
        for f in FIELDS:
            if f in ("type", "links") or f in ignore:
                continue
            if rel == "/" and not root_meta and f in ("mode", "uid", "gid"):
                continue
            va, vb = oa.get(f), ob.get(f)
            if va != vb:
                if f == "xattr":
                    for k in sorted(set(va) | set(vb)):
                        if va.get(k) != vb.get(k):
                            diffs.append("%s: xattr %s: %s=%r %s=%r" % (rel, k, a.root, va.get(k),
                                                                        b.root, vb.get(k)))
                else:
                    diffs.append("%s: %s: %s=%s %s=%s" % (rel, f, a.root, show(va), b.root, show(vb)))
        if "links" not in ignore and la.get(rel) != lb.get(rel):
            diffs.append("%s: hard links: %s=%s %s=%s" % (rel, a.root, la.get(rel, "(none)"),
                                                          b.root, lb.get(rel, "(none)")))
    return diffs


def main(argv):
    ignore = set()
    root_meta = False
    limit = None
    roots = []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a == "--ignore" and i + 1 < len(argv):
            ignore |= set(x for x in argv[i + 1].split(",") if x)
            i += 2
            continue
        if a == "--max" and i + 1 < len(argv):
            limit = int(argv[i + 1])
            i += 2
            continue
        if a == "--root-meta":
            root_meta = True
        elif a.startswith("-"):
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
        else:
            roots.append(a)
        i += 1
    bad = ignore - set(FIELDS)
    if len(roots) < 2 or bad:
        print("usage: treecmp.py [--ignore FIELD,...] [--root-meta] [--max N] A B [C ...]%s" %
              ("; unknown field(s) " + ",".join(sorted(bad)) if bad else ""), file=sys.stderr)
        return 2
    for r in roots:
        if not os.path.isdir(r):
            print("treecmp: '%s' is not a directory" % r, file=sys.stderr)
            return 2
    trees = [Tree(r) for r in roots]
    diffs = []
    for t in trees:
        diffs += ["error: " + e for e in t.errors]
    for t in trees[1:]:
        diffs += compare(trees[0], t, ignore, root_meta)
    for d in diffs[:limit]:
        print(d)
    if limit is not None and len(diffs) > limit:
        print("... and %d more" % (len(diffs) - limit))
    if diffs:
        print("treecmp: %d difference(s)" % len(diffs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
