#!/bin/bash
# syncfs.sh -- sync/fsync on the mount succeed after ordinary work: files
# written and then removed or replaced must not make syncfs() or fsync() fail.
. "$(dirname "$0")/lib.sh" || exit 1

D=$T/data
M=$T/mnt
start_leader "$D" "$M"

sync -f "$M" || fail "sync -f of a fresh mount failed"

echo x >"$M/removed"
rm "$M/removed"
out=$(sync -f "$M" 2>&1) || soft_fail "sync -f after writing and removing a file: $out"

echo x >"$M/a"
echo y >"$M/b"
mv "$M/a" "$M/b"
out=$(sync -f "$M" 2>&1) || soft_fail "sync -f after replacing a file by rename: $out"

mkdir "$M/d"
echo z >"$M/d/f"
mv "$M/d/f" "$M/d/g"
rm -r "$M/d"
out=$(sync -f "$M" 2>&1) || soft_fail "sync -f after removing a directory with a written file: $out"

# fsync of descriptors whose files were renamed, replaced or unlinked meanwhile
python3 - "$M" <<'EOF' || soft_fail "fsync of a renamed/replaced/unlinked file failed"
import os, sys
m = sys.argv[1]
os.chdir(m)
bad = 0
for what in ("renamed", "replaced", "unlinked"):
    with open("f-" + what, "w") as f:
        f.write("v1")
    fd = os.open("f-" + what, os.O_RDWR)
    os.write(fd, b"v2")
    if what == "renamed":
        os.rename("f-" + what, "f-" + what + ".new")
    elif what == "replaced":
        with open("other", "w") as f:
            f.write("o")
        os.rename("other", "f-" + what)
    else:
        os.unlink("f-" + what)
    os.write(fd, b"v3")
    try:
        os.fsync(fd)
    except OSError as e:
        print("FAIL fsync of a %s file: %s" % (what, e))
        bad += 1
    try:
        os.close(fd)
    except OSError as e:
        print("FAIL close of a %s file: %s" % (what, e))
        bad += 1
try:
    os.sync()
    fd = os.open(".", os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
except OSError as e:
    print("FAIL sync: %s" % e)
    bad += 1
sys.exit(1 if bad else 0)
EOF
check_eq "$(cat "$M/f-renamed.new")" v2v3 "content of a file written before and after its rename"
out=$(sync -f "$M" 2>&1) || soft_fail "sync -f at the end: $out"

compare3 "$M" "$D"
stop_node "$M" "$D"
exit 0
