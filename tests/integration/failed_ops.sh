#!/bin/bash
# failed_ops.sh -- an operation that fails leaves no record in the log (and no
# trace in the tree): the record count is unchanged after each failed call.
. "$(dirname "$0")/lib.sh" || exit 1
both_writeback_modes

D=$T/data
M=$T/mnt
start_leader "$D" "$M"

mkdir -p "$M/dir/sub" "$M/full" "$M/empty"
echo data >"$M/file"
echo other >"$M/other"
echo x >"$M/full/x"
setfattr -n user.present -v yes "$M/file"
ln -s file "$M/link"
sync -f "$M/file"

cp -a "$D/tree" "$T/before"
WB=$(json_get "$(status_json "$D")" writeback_cache)

python3 - "$M" "$REPFS" "$D" "$WB" <<'EOF' || soft_fail "some failed operations left records or gave the wrong error (see above)"
import ctypes, errno, os, re, subprocess, sys

mnt, repfs, data, wb = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2
os.chdir(mnt)

def records():
    out = subprocess.run([repfs, "log", data, "--verify"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"intact: (\d+) records", out).group(1))

def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))

def efbig_write():
    fd = os.open("file", os.O_WRONLY)
    try:
        os.pwrite(fd, b"x", 16 << 40)    # past ext4's largest file
        os.fsync(fd)
    finally:
        os.close(fd)

libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]

def falloc(mode, off, length):
    fd = os.open("file", os.O_WRONLY)
    try:
        if libc.fallocate(fd, mode, off, length) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)

def as_user(fn):
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([]); os.setresgid(1000, 1000, 1000); os.setresuid(1000, 1000, 1000)
            fn()
        except OSError as e:
            os._exit(e.errno)
        os._exit(0)
    _, st = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(st)
    if code:
        raise OSError(code, os.strerror(code))

cases = [
    ("mkdir of an existing directory", lambda: os.mkdir("dir"), {errno.EEXIST}),
    ("mkdir over a file", lambda: os.mkdir("file"), {errno.EEXIST}),
    ("mkdir in a missing directory", lambda: os.mkdir("nosuch/d"), {errno.ENOENT}),
    ("rmdir of a non-empty directory", lambda: os.rmdir("full"), {errno.ENOTEMPTY}),
    ("rmdir of a file", lambda: os.rmdir("file"), {errno.ENOTDIR}),
    ("unlink of a directory", lambda: os.unlink("dir"), {errno.EISDIR}),
    ("unlink of a missing file", lambda: os.unlink("nosuch"), {errno.ENOENT}),
    ("create O_EXCL of an existing file", lambda: os.open("file", os.O_WRONLY | os.O_CREAT | os.O_EXCL), {errno.EEXIST}),
    ("create with a 256-byte name", lambda: os.open("n" * 256, os.O_WRONLY | os.O_CREAT), {errno.ENAMETOOLONG}),
    ("mkdir with a 256-byte name", lambda: os.mkdir("n" * 256), {errno.ENAMETOOLONG}),
    ("symlink with a 256-byte name", lambda: os.symlink("t", "n" * 256), {errno.ENAMETOOLONG}),
    ("rename to a 256-byte name", lambda: os.rename("other", "n" * 256), {errno.ENAMETOOLONG}),
    ("mknod over an existing name", lambda: os.mkfifo("file"), {errno.EEXIST}),
    ("symlink over an existing name", lambda: os.symlink("x", "file"), {errno.EEXIST}),
    ("link onto an existing name", lambda: os.link("file", "other"), {errno.EEXIST}),
    ("link of a directory", lambda: os.link("dir", "dirlink"), {errno.EPERM}),
    ("rename NOREPLACE onto a file", lambda: renameat2("file", "other", RENAME_NOREPLACE), {errno.EEXIST}),
    ("rename NOREPLACE onto a directory", lambda: renameat2("dir", "empty", RENAME_NOREPLACE), {errno.EEXIST}),
    ("rename EXCHANGE with a missing name", lambda: renameat2("file", "nosuch", RENAME_EXCHANGE), {errno.ENOENT}),
    ("rename of a missing name", lambda: os.rename("nosuch", "x"), {errno.ENOENT}),
    ("rename of a directory onto a non-empty one", lambda: os.rename("dir", "full"), {errno.ENOTEMPTY}),
    ("rename of a directory into itself", lambda: os.rename("dir", "dir/sub/in"), {errno.EINVAL}),
    ("rename of a file onto a directory", lambda: os.rename("file", "dir"), {errno.EISDIR}),
    ("rename of a directory onto a file", lambda: os.rename("dir", "file"), {errno.ENOTDIR}),
    ("setxattr CREATE of an existing name", lambda: os.setxattr("file", "user.present", b"v", os.XATTR_CREATE), {errno.EEXIST}),
    ("setxattr REPLACE of a missing name", lambda: os.setxattr("file", "user.absent", b"v", os.XATTR_REPLACE), {errno.ENODATA}),
    ("removexattr of a missing name", lambda: os.removexattr("file", "user.absent"), {errno.ENODATA}),
    ("user.* xattr on a symlink", lambda: os.setxattr("link", "user.x", b"v", follow_symlinks=False), {errno.EPERM}),
    ("setxattr of the hidden id", lambda: os.setxattr("file", "trusted.repfs.id", b"0123456789abcdef"), {errno.EPERM}),
    ("removexattr of the hidden id", lambda: os.removexattr("file", "trusted.repfs.id"), {errno.EPERM, errno.ENODATA}),
    ("truncate past the largest file", lambda: os.truncate("file", 17 << 40), {errno.EFBIG, errno.EINVAL}),
] + ([] if wb == "True" else [
    # with the writeback cache the kernel stamps the file's mtime first (below)
    ("write past the largest file", efbig_write, {errno.EFBIG, errno.EINVAL}),
]) + [
    ("truncate of a directory", lambda: os.truncate("dir", 0), {errno.EISDIR}),
] + ([] if wb == "True" else [
    ("fallocate past the largest file", lambda: falloc(0, 17 << 40, 4096), {errno.EFBIG, errno.EINVAL}),
]) + [
    ("fallocate punch without keep-size", lambda: falloc(2, 0, 4096), {errno.EOPNOTSUPP}),
    ("chmod by another user", lambda: as_user(lambda: os.chmod(os.path.join(mnt, "file"), 0o777)), {errno.EPERM}),
    ("chown by another user", lambda: as_user(lambda: os.chown(os.path.join(mnt, "file"), 1000, 1000)), {errno.EPERM}),
    ("write by another user", lambda: as_user(lambda: os.open(os.path.join(mnt, "file"), os.O_WRONLY)), {errno.EACCES}),
    ("utimes by another user", lambda: as_user(lambda: os.utime(os.path.join(mnt, "file"), ns=(1, 1))), {errno.EPERM}),
]

bad = 0
n = records()
for what, fn, want in cases:
    try:
        fn()
        got = "success"
    except OSError as e:
        got = errno.errorcode.get(e.errno, str(e.errno))
        if e.errno in want:
            got = None
    m = records()
    if got:
        print("FAIL %s: got %s, want %s" % (what, got, "/".join(errno.errorcode[w] for w in want)))
        bad += 1
    if m != n:
        print("FAIL %s: the log grew from %d to %d records" % (what, n, m))
        subprocess.run([repfs, "log", data, "--from", str(n + 1)])
        bad += 1
        n = m
sys.exit(1 if bad else 0)
EOF

# nothing of it reached the tree, and the mount agrees
treecmp --ignore holes "$T/before" "$D/tree" || soft_fail "failed operations changed the tree"
check_eq "$(stat -c %s "$M/file")" 5 "size of 'file' seen through the mount after failed writes"
compare3 "$M" "$D"

if [ "$WB" = True ]; then
	# The writeback cache takes a write past the largest file into the
	# kernel's pages (its size and mtime with it); the error comes at fsync,
	# no data reaches the log, and the mount then shows the file's real size.
	# The kernel also stamps the mtime before it sends a fallocate (which
	# then fails). Both mtimes reach the log as setattr records, nothing else.
	n=$(log_count "$D")
	python3 - "$M/file" <<'EOF' || soft_fail "a write or fallocate past the largest file: no EFBIG"
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
fd = os.open(sys.argv[1], os.O_WRONLY)
try:
    os.pwrite(fd, b"x", 16 << 40)
    os.fsync(fd)
    sys.exit(1)
except OSError as e:
    if e.errno not in (errno.EFBIG, errno.EINVAL):
        sys.exit(1)
finally:
    try:
        os.close(fd)
    except OSError:
        pass    # close may report the write's error again
fd = os.open(sys.argv[1], os.O_WRONLY)
bad = libc.fallocate(fd, 0, 17 << 40, 4096) == 0 or ctypes.get_errno() not in (errno.EFBIG, errno.EINVAL)
os.close(fd)
sys.exit(1 if bad else 0)
EOF
	"$REPFS" log "$D" --from $((n + 1)) | grep -v ' setattr ' && soft_fail "a write or fallocate past the largest file left records other than mtimes"
	check_eq "$(stat -c %s "$M/file")" 5 "size of 'file' through the mount after a write past the largest file"
	check_eq "$(cat "$M/file")" data "'file' after a write past the largest file"
	compare3 "$M" "$D"
fi

# rename(2) between two names of one file succeeds and does nothing (POSIX):
# nothing to log, and the tree keeps both names
ln "$M/file" "$M/file2" || fail "ln failed"
n=$(log_count "$D")
python3 -c 'import os, sys; os.rename(sys.argv[1], sys.argv[2])' "$M/file2" "$M/file" ||
	fail "a rename between two names of one file failed"
check_eq "$(log_count "$D")" "$n" "records after a rename between two names of one file"
[ -f "$D/tree/file" ] && [ -f "$D/tree/file2" ] || fail "a rename between two names of one file changed the tree"
stop_node "$M" "$D"
exit 0
