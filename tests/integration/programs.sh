#!/bin/bash
# programs.sh -- ordinary programs on a leader mount (cp -a, tar, git, sqlite3,
# dd, mv, ln, chmod, chown, xattrs, touch -d), then the mount, its DATADIR/tree
# and a `repfs replay` of its log must be identical, also after a restart.
. "$(dirname "$0")/lib.sh" || exit 1
both_writeback_modes

D=$T/data
M=$T/mnt
start_leader "$D" "$M"

note "cp -a"
# --- cp -a of a real tree (part of /usr/include/linux, or a generated one),
# with a symlink, a hard link, xattrs, odd modes and owners and a sparse file ---
SRC=$T/src
mkdir -p "$SRC"
if [ -d /usr/include/linux/netfilter ]; then
	for d in netfilter usb can tc_act dvb; do
		[ -d "/usr/include/linux/$d" ] && cp -a "/usr/include/linux/$d" "$SRC/"
	done
	find /usr/include/linux -maxdepth 1 -type f -name '[a-f]*.h' -exec cp -a {} "$SRC/" \;
else
	for i in $(seq 1 60); do
		mkdir -p "$SRC/d$((i % 4))/e$((i % 3))"
		head -c $((i * 1537)) /dev/urandom >"$SRC/d$((i % 4))/e$((i % 3))/f$i"
	done
fi
echo "linked" >"$SRC/hard1"
ln "$SRC/hard1" "$SRC/hard2"
ln -s hard1 "$SRC/sym"
setfattr -n user.origin -v source "$SRC/hard1"
echo secret >"$SRC/private"
chmod 0600 "$SRC/private"
chown 1000:1000 "$SRC/private"
truncate -s 3M "$SRC/sparse"
echo tail | dd of="$SRC/sparse" bs=1 seek=$((2 * 1024 * 1024)) conv=notrunc status=none
touch -d "2010-10-10 10:10:10.101010101 UTC" "$SRC/private"
cp -a "$SRC" "$M/src" || fail "cp -a '$SRC' into the mount failed"
treecmp --ignore holes "$SRC" "$M/src" || soft_fail "cp -a copy in the mount differs from '$SRC'"

note "tar"
# --- tar c/x (pax keeps nanosecond times) ---
tar --format=posix --xattrs --xattrs-include="user.*" --sparse -cf "$M/src.tar" -C "$M" src || fail "tar c from the mount failed"
mkdir "$M/untar"
tar --format=posix --xattrs --xattrs-include="user.*" -xf "$M/src.tar" -C "$M/untar" || fail "tar x into the mount failed"
treecmp "$M/src" "$M/untar/src" || fail "tar round trip in the mount differs"
tar -tf "$M/src.tar" >/dev/null || fail "tar t of the archive in the mount failed"

note "git"
# --- git ---
(
	set -e
	mkdir "$M/repo"
	cd "$M/repo"
	export GIT_CONFIG_NOSYSTEM=1 HOME=$T GIT_AUTHOR_DATE="2020-01-02T03:04:05Z" GIT_COMMITTER_DATE="2020-01-02T03:04:05Z"
	git init -q -b main .
	git config user.email t@example.com
	git config user.name tester
	cp -a "$M/src/netfilter/." .
	git add -A
	git commit -q -m "first"
	echo change >>"$(git ls-files | head -n 1)"
	git commit -q -am "second"
	git mv "$(git ls-files | sed -n 2p)" moved-file
	git commit -q -m "third"
	git gc -q
	test "$(git log --oneline | wc -l)" -eq 3
	test -z "$(git status --porcelain)"
	git fsck --strict 2>&1
) >"$T/git.out" 2>&1 || fail "git in the mount failed: $(tail -n 5 "$T/git.out")"

note "sqlite3"
# --- sqlite3 ---
if command -v sqlite3 >/dev/null; then
	out=$(
		sqlite3 "$M/db.sqlite" <<'EOF'
PRAGMA journal_mode=DELETE;
CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, blob BLOB);
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO t SELECT i, 'row ' || i, randomblob(100) FROM n;
COMMIT;
BEGIN;
DELETE FROM t WHERE id % 3 = 0;
UPDATE t SET name = 'changed' WHERE id % 5 = 0;
COMMIT;
PRAGMA journal_mode=WAL;
INSERT INTO t (name) VALUES ('wal row');
PRAGMA wal_checkpoint(TRUNCATE);
PRAGMA journal_mode=DELETE;
PRAGMA integrity_check;
SELECT count(*) FROM t;
EOF
	) || fail "sqlite3 in the mount failed: $out"
	assert_eq "$(echo "$out" | tail -n 2 | tr '\n' ' ')" "ok 1335 " "sqlite3 integrity_check and row count"
else
	note "sqlite3 not installed; skipping that part"
fi

note "dd"
# --- dd, including a sparse file past 4 GiB ---
dd if=/dev/urandom of="$M/dd.bin" bs=64k count=16 conv=fsync status=none || fail "dd conv=fsync failed"
assert_eq "$(stat -c %s "$M/dd.bin")" 1048576 "size of dd.bin"
dd if="$M/dd.bin" of="$T/dd.copy" bs=1M status=none || fail "dd read back failed"
cmp -s "$M/dd.bin" "$T/dd.copy" || fail "dd read back differs"
dd if=/dev/urandom of="$M/sparse.bin" bs=1M count=1 seek=5000 conv=fsync,notrunc status=none ||
	fail "dd seek=5000 (past 4 GiB) failed"
assert_eq "$(stat -c %s "$M/sparse.bin")" $((5001 * 1048576)) "size of the sparse file"
[ "$(stat -c %b "$D/tree/sparse.bin")" -lt 10000 ] || fail "sparse.bin is not sparse in the tree"
dd if=/dev/zero of="$M/sparse.bin" bs=1 count=10 seek=$((4 * 1024 * 1024 * 1024 + 5)) conv=notrunc status=none ||
	fail "dd write at 4 GiB + 5 failed"

note "mv, ln, chmod, chown, xattrs, touch"
# --- mv, ln, ln -s, chmod, chown, xattrs, touch -d ---
mkdir -p "$M/ops/a/b" "$M/ops/c"
echo one >"$M/ops/a/one"
mv "$M/ops/a/one" "$M/ops/c/uno" || fail "mv across directories failed"
mv "$M/ops/a" "$M/ops/c/a-moved" || fail "mv of a directory failed"
# records name a directory by the path the daemon last found for it: after a
# move of the directory's parent, and back, new names inside must land there
echo x >"$M/ops/c/a-moved/b/before-move" || fail "create in a moved directory failed"
mv "$M/ops/c/a-moved" "$M/ops/a-again" || fail "second mv of a directory failed"
echo y >"$M/ops/a-again/b/after-move" || fail "create after the parent moved failed"
mv "$M/ops/a-again" "$M/ops/c/a-moved" || fail "mv of a directory back failed"
mkdir "$M/ops/c/a-moved/b/sub" || fail "mkdir after the parent moved back failed"
assert_eq "$(cat "$D/tree/ops/c/a-moved/b/after-move")" y "the tree's file made after its directory's parent moved"
[ -d "$D/tree/ops/c/a-moved/b/sub" ] || fail "the tree lacks a directory made after its parent moved back"
ln "$M/ops/c/uno" "$M/ops/hard" || fail "ln failed"
ln -s ../ops/c/uno "$M/ops/soft" || fail "ln -s failed"
assert_eq "$(cat "$M/ops/soft")" one "reading through a symlink"
assert_eq "$(stat -c %h "$M/ops/hard")" 2 "link count after ln"
chmod 0751 "$M/ops/c" || fail "chmod failed"
chmod u+s,g+s "$M/ops/hard" || fail "chmod u+s failed"
chown 1000:1000 "$M/ops/c/uno" || fail "chown failed"
chown -R 1234:4321 "$M/ops/c/a-moved" || fail "chown -R failed"
chown -h 1000:1000 "$M/ops/soft" || fail "chown -h of a symlink failed"
assert_eq "$(stat -c %u:%g "$M/ops/c/a-moved/b")" 1234:4321 "owner after chown -R"
setfattr -n user.comment -v "hello world" "$M/ops/hard" || fail "setfattr failed"
setfattr -n user.bin -v 0x00ff10 "$M/ops/c" || fail "setfattr on a directory failed"
setfattr -n trusted.admin -v x "$M/ops/c/uno" || fail "setfattr trusted.* failed"
assert_eq "$(getfattr --absolute-names --only-values -n user.comment "$M/ops/c/uno")" "hello world" "getfattr through a hard link"
setfattr -x user.comment "$M/ops/hard" || fail "setfattr -x failed"
getfattr --absolute-names -n user.comment "$M/ops/hard" >/dev/null 2>&1 && fail "removed xattr still readable"
stat "$M/ops/hard" >/dev/null # its attributes are now cached by the kernel
touch -d "2001-02-03 04:05:06.123456789 UTC" "$M/ops/c/uno" || fail "touch -d failed"
check_eq "$(stat -c %y "$M/ops/hard")" "$(stat -c %y "$M/ops/c/uno")" \
	"mtime of a hard link after touch -d of its other name (stale attribute cache?)"
touch -h -d "1999-12-31 23:59:59.987654321 UTC" "$M/ops/soft" || fail "touch -h failed"
touch -a -d "2002-01-01 00:00:00.5 UTC" "$M/ops/c/uno"
touch -d "1970-01-01 00:00:01.000000001 UTC" "$M/ops/c/a-moved" || fail "touch -d of a directory failed"
assert_eq "$(TZ=UTC stat -c %y "$M/ops/c/uno")" "2001-02-03 04:05:06.123456789 +0000" "mtime with ns after touch -d"
assert_eq "$(TZ=UTC stat -c %y "$D/tree/ops/c/uno")" "2001-02-03 04:05:06.123456789 +0000" "tree mtime after touch -d"
assert_eq "$(TZ=UTC stat -c %x "$M/ops/c/uno")" "2002-01-01 00:00:00.500000000 +0000" "atime after touch -a -d"
assert_eq "$(TZ=UTC stat -c %y "$M/ops/soft")" "1999-12-31 23:59:59.987654321 +0000" "symlink mtime after touch -h"
rm -r "$M/untar" || fail "rm -r failed"
rm "$M/src.tar"

note "compare"
# --- everything identical: mount, tree, replay ---
compare3 "$M" "$D"
log_verify "$D"

note "restart"
# --- and after a clean restart ---
cp -a "$M/." "$T/before" 2>/dev/null
stop_node "$M" "$D"
start_leader "$D" "$M"
treecmp --ignore holes "$T/before" "$M" || fail "the mount differs after a restart"
rm -rf "$T/before"
compare3 "$M" "$D"
stop_node "$M" "$D"
exit 0
