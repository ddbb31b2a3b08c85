#!/bin/bash
# repl_programs.sh -- G1: a leader and two followers. Ordinary programs change
# the leader's mount (cp -a, tar x, git, sqlite3, dd with a sparse file past
# 4 GiB, mv, hard links, chmod/chown, xattrs, symlinks, truncate, fallocate,
# mkfifo, an unlinked-while-open file); once both followers have applied the
# leader's last seq, the three mounts must be identical (names, types,
# contents, holes, modes, owners, mtimes, xattrs, link targets and counts),
# and each follower's log must be the leader's, byte for byte.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM"
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
rl_follower F2 "$F2" "$F2M" "$RL_PORT"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
assert_eq "$(rl_get "$L" sync)" "quorum=1" "default sync mode"

note "cp -a"
SRC=$T/src
mkdir -p "$SRC"
if [ -d /usr/include/linux/netfilter ]; then
	# a real tree of about 1 MB: the subdirectories of /usr/include/linux
	cp -a /usr/include/linux/*/ "$SRC/" || fail "unable to copy /usr/include/linux/*/"
fi
for i in $(seq 1 40); do
	mkdir -p "$SRC/d$((i % 4))/e$((i % 3))"
	head -c $((i * 1537)) /dev/urandom >"$SRC/d$((i % 4))/e$((i % 3))/f$i"
done
ln -s d0 "$SRC/link"
cp -a "$SRC" "$LM/src" || fail "cp -a into the leader failed"

note "tar x"
tar --format=posix -cf "$T/src.tar" -C "$(dirname "$SRC")" "$(basename "$SRC")" || fail "tar c failed"
mkdir "$LM/untar"
tar --format=posix -xf "$T/src.tar" -C "$LM/untar" || fail "tar x into the leader failed"

note "git"
(
	set -e
	mkdir "$LM/repo"
	cd "$LM/repo"
	export GIT_CONFIG_NOSYSTEM=1 HOME=$T GIT_AUTHOR_DATE="2020-01-02T03:04:05Z" GIT_COMMITTER_DATE="2020-01-02T03:04:05Z"
	git init -q -b main .
	git config user.email t@example.com
	git config user.name tester
	git config core.fsync all 2>/dev/null || true
	for i in $(seq 1 30); do echo "file $i" >"f$i.txt"; done
	git add -A
	git commit -q -m first
	echo change >>f1.txt
	git commit -q -am second
	git mv f2.txt moved.txt
	git commit -q -m third
	git gc -q
	test "$(git log --oneline | wc -l)" -eq 3
	git fsck --strict 2>&1
) >"$T/git.out" 2>&1 || fail "git on the leader failed: $(tail -n 5 "$T/git.out")"

note "sqlite3"
if command -v sqlite3 >/dev/null; then
	out=$(
		sqlite3 "$LM/db.sqlite" <<'EOF'
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
PRAGMA integrity_check;
SELECT count(*) FROM t;
EOF
	) || fail "sqlite3 on the leader failed: $out"
	assert_eq "$(echo "$out" | tail -n 2 | tr '\n' ' ')" "ok 1334 " "sqlite3 integrity_check and row count"
else
	note "sqlite3 not installed; skipping that part"
fi

note "dd"
dd if=/dev/urandom of="$LM/dd.bin" bs=64k count=16 conv=fsync status=none || fail "dd conv=fsync failed"
dd if=/dev/urandom of="$LM/sparse.bin" bs=1M count=1 seek=5000 conv=fsync,notrunc status=none ||
	fail "dd seek=5000 (past 4 GiB) failed"
dd if=/dev/urandom of="$LM/sparse.bin" bs=4k count=1 seek=$((4 * 1024 * 256 + 3)) conv=notrunc status=none ||
	fail "dd at 4 GiB + 12 KiB failed"
dd if=/dev/urandom of="$LM/sparse.bin" bs=1 count=10 seek=100 conv=notrunc status=none || fail "dd at byte 100 failed"

note "mv, ln, chmod, chown, xattrs, symlinks, truncate, fallocate, mkfifo"
(
	set -e
	cd "$LM"
	mkdir -p ops/a/b ops/c
	echo one >ops/a/one
	echo two >ops/two
	mv ops/a/one ops/c/uno
	mv ops/a ops/c/a-moved
	mv ops/two ops/c/uno-replaced-by-two && mv -f ops/c/uno-replaced-by-two ops/c/a-moved/b/two
	ln ops/c/uno ops/hard
	ln ops/c/uno ops/c/a-moved/hard2
	ln -s ../ops/c/uno ops/soft
	ln -s /nonexistent/target ops/dangling
	ln -s "$(printf 'x%.0s' $(seq 1 200))" ops/longlink
	chmod 0751 ops/c
	chmod u+s,g+s ops/hard
	chmod 1777 ops/c/a-moved/b
	chmod 0400 ops/c/a-moved/b/two
	chown 1000:1000 ops/c/uno
	chown -R 1234:4321 ops/c/a-moved
	chown -h 1000:100 ops/soft
	setfattr -n user.comment -v "hello world" ops/hard
	setfattr -n user.bin -v 0x00ff10 ops/c
	setfattr -n trusted.admin -v x ops/c/uno
	setfattr -n user.gone -v y ops/c/uno
	setfattr -x user.gone ops/hard
	head -c 100000 /dev/urandom >ops/trunc
	truncate -s 5000 ops/trunc
	truncate -s 3M ops/trunc
	truncate -s 0 ops/c/a-moved/b/two
	head -c 300000 /dev/urandom >ops/falloc
	fallocate -l 1M ops/falloc
	fallocate -n -o 2M -l 64k ops/falloc
	# leave no unwritten extent inside the file: whether ext4 reports one as
	# a hole depends on the page cache, not on repfs
	dd if=/dev/urandom of=ops/falloc bs=4096 seek=73 count=183 conv=notrunc status=none
	fallocate -p -o 8192 -l 65536 ops/falloc
	mkfifo -m 0640 ops/fifo
	mknod ops/chr c 1 3
	touch -d "2001-02-03 04:05:06.123456789 UTC" ops/c/uno
	touch -h -d "1999-12-31 23:59:59.987654321 UTC" ops/soft
	exec 3<>ops/open-unlinked
	echo before >&3
	rm ops/open-unlinked
	echo after >&3
	exec 3>&-
	mv ops/c ops/c2
	rm -r untar/"$(basename "$SRC")"/$(ls untar/"$(basename "$SRC")" | head -n 1)
) >"$T/ops.out" 2>&1 || fail "file operations on the leader failed: $(tail -n 5 "$T/ops.out")"
sync "$LM/ops/hard" || fail "fsync on the leader failed"

note "waiting for both followers"
rl_wait_converged 120 "$L" "$F1" "$F2"

note "comparing the leader with both followers"
treecmp "$L/tree" "$F1/tree" "$F2/tree" || soft_fail "the followers' trees differ from the leader's"
treecmp "$LM" "$F1M" "$F2M" || soft_fail "the followers' mounts differ from the leader's mount"
treecmp "$L/tree" "$LM" || soft_fail "the leader's mount differs from its own tree (a leader-side cache problem)"
for f in "$F1" "$F2"; do
	log_out=$("$REPFS" log "$f" --verify 2>&1) || fail "repfs log --verify '$f' failed: $log_out"
	rl_log_prefix "$f" "$L" equal
done
assert_eq "$("$REPFS" log "$F1" | wc -l)" "$("$REPFS" log "$L" | wc -l)" "records in F1's log vs the leader's"

note "a FIFO open on a follower while the leader removes it"
mkfifo -m 0640 "$LM/ops/fifo2" || fail "mkfifo on the leader failed"
rl_wait_converged 30 "$L" "$F1"
exec 4<>"$F1M/ops/fifo2" || fail "unable to open the FIFO on F1"
rm "$LM/ops/fifo2"
rl_wait_converged 30 "$L" "$F1"
out=$(python3 -c 'import os, stat; s = os.fstat(4); print(stat.S_ISFIFO(s.st_mode), oct(s.st_mode & 0o7777), s.st_nlink)' 2>&1)
exec 4<&-
assert_eq "$out" "True 0o640 0" "fstat of a FIFO open on F1 once the leader removed it (type, mode, links)"
assert_eq "$(rl_get "$F1" epoch)" "$(rl_get "$L" epoch)" "F1's epoch"
assert_eq "$(rl_get "$F1" leader)" L "F1's leader"
assert_eq "$(rl_get "$L" peers.F1.durable)" "$(rl_get "$L" seq)" "F1's durable position as the leader sees it"
assert_eq "$(rl_get "$L" peers.F2.applied)" "$(rl_get "$L" seq)" "F2's applied position as the leader sees it"
assert_eq "$(cat "$F1M/ops/c2/uno")" one "content through a follower's mount"
assert_eq "$(stat -c %h "$F2M/ops/hard")" 3 "link count on a follower"
assert_eq "$(readlink "$F2M/ops/soft")" ../ops/c/uno "symlink target on a follower"
assert_eq "$(stat -c %s "$F1M/sparse.bin")" $((5001 * 1048576)) "size of the sparse file on a follower"
[ "$(stat -c %b "$F1/tree/sparse.bin")" -lt 10000 ] || fail "sparse.bin is not sparse on the follower"
(cd "$F1M/repo" && GIT_CONFIG_NOSYSTEM=1 HOME=$T git -c safe.directory='*' fsck --strict >/dev/null 2>&1) ||
	fail "git fsck of the follower's copy of the repository failed"
if command -v sqlite3 >/dev/null; then
	assert_eq "$(sqlite3 -readonly "file:$F2M/db.sqlite?immutable=1" 'PRAGMA integrity_check; SELECT count(*) FROM t;' | tr '\n' ' ')" \
		"ok 1334 " "sqlite3 on the follower's copy"
fi

note "attributes of hard links on a follower after a change through another name"
stat "$F1M/ops/hard" "$F1M/ops/c2/a-moved/hard2" >/dev/null # cached by the follower's kernel
touch -d "2011-02-03 04:05:06.5 UTC" "$LM/ops/c2/uno" || fail "touch -d on the leader failed"
chmod 0604 "$LM/ops/c2/uno" || fail "chmod on the leader failed"
rl_wait_converged 20 "$L" "$F1"
check_eq "$(TZ=UTC stat -c '%y %a' "$F1M/ops/hard")" "2011-02-03 04:05:06.500000000 +0000 604" \
	"mtime and mode of a hard link on a follower right after it applied a change made through another name"
check_eq "$(TZ=UTC stat -c '%y %a' "$F1M/ops/c2/a-moved/hard2")" "2011-02-03 04:05:06.500000000 +0000 604" \
	"mtime and mode of a second hard link on a follower right after it applied the change"
note "G2: a reader that keeps a file open on a follower sees an in-place overwrite once it is applied"
printf 'old-%04d\n' $(seq 1 2000) >"$LM/ops/kept" || fail "unable to write ops/kept on the leader"
rl_wait_converged 20 "$L" "$F1"
mkfifo "$T/go"
# reads the whole file twice through one descriptor: pages of the first read
# stay in the follower's kernel unless the applied record drops them
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
first = os.pread(fd, 1 << 20, 0)
print(first.count(b"old-"), flush=True)
open(sys.argv[2]).read()
print(os.pread(fd, 1 << 20, 0).count(b"new-"), flush=True)
' "$F1M/ops/kept" "$T/go" >"$T/kept.out" &
READER=$!
wait_for 10 sh -c "[ -s '$T/kept.out' ]"
dd if=<(printf 'new-%04d\n' $(seq 1 2000)) of="$LM/ops/kept" conv=notrunc status=none || fail "overwrite on the leader failed"
rl_wait_converged 20 "$L" "$F1"
echo go >"$T/go"
wait "$READER" || fail "the reader on the follower failed"
assert_eq "$(tr '\n' ' ' <"$T/kept.out")" "2000 2000 " "old lines before, new lines after, read through one descriptor on the follower"
exit 0
