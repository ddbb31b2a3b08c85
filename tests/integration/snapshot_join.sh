#!/bin/bash
# snapshot_join.sh -- G5: a new follower joins a leader that already holds
# a tree of thousands of files, while a writer keeps appending, truncating,
# renaming, hard-linking and deleting on the leader. It gets a live snapshot
# (status shows it transferring, then done), replays what was written
# meanwhile, and once the writer stops it is identical to the leader: names,
# types, contents, holes, modes, owners, mtimes, xattrs, links (treecmp), and
# `repfs verify` says so (exit 0). The leader's writes never waited.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM"

note "a tree of a few thousand files, a sparse one, links, xattrs, owners"
for d in $(seq 1 20); do
	mkdir -p "$LM/d$d/sub"
	for f in $(seq 1 100); do
		echo "file $d/$f" >"$LM/d$d/f$f"
	done
	head -c $((d * 7001)) /dev/urandom >"$LM/d$d/sub/big"
done
dd if=/dev/urandom of="$LM/sparse" bs=4096 count=3 seek=1000 2>/dev/null || fail "dd of the sparse file failed"
ln "$LM/d1/f1" "$LM/hardlink"
ln -s d2/f2 "$LM/symlink"
mkfifo "$LM/fifo"
setfattr -n user.color -v blue "$LM/d3/f3" || fail "setfattr failed"
chown 1234:5678 "$LM/d4/f4"
chmod 0640 "$LM/d5/f5"
chmod 0700 "$LM/d6"
touch -d '2001-02-03 04:05:06.123456789' "$LM/d7/f7"
# a name libfuse's path API once used for open unlinked files is an ordinary name
echo hidden >"$LM/d8/.fuse_hidden0123456789abcdef"

note "the writer starts; a follower with an empty DATADIR joins"
mkdir "$LM/busy"
rl_bg "$HELPERS/busywriter" "$LM/busy" 2 6 7
WRITER=$RL_BG_PID
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
wait_for 60 sh -c "'$REPFS' status '$F1' --json | grep -q '\"completed\":1'"
rl_wait_exit 90 "$WRITER" "the writer"
rl_wait_converged 60 "$L" "$F1"

note "identical"
treecmp "$LM" "$F1M" || fail "the follower's mount differs from the leader's"
[ "$(cat "$F1M/d8/.fuse_hidden0123456789abcdef" 2>&1)" = hidden ] || fail "the snapshot left out a file named .fuse_hidden*"
treecmp "$L/tree" "$F1/tree" || fail "the follower's tree differs from the leader's"
out=$("$REPFS" verify "$F1M" 2>&1) || fail "repfs verify after the snapshot: $out"
echo "$out" | grep -q "identical" || fail "verify did not say identical: $out"
[ "$(stat -c %b "$F1M/sparse")" -le 64 ] || fail "the sparse file lost its holes: $(stat -c %b "$F1M/sparse") blocks"
log_verify "$F1"
st=$(rl_status "$F1")
echo "$st" | grep -Eq '"state": ?"done"' || fail "status does not show the snapshot done: $st"
grep -q "snapshot installed at seq" "$F1/repfs.log" || fail "the follower's log does not say the snapshot was installed"
! grep -q "snapshot interrupted" "$F1/repfs.log" || fail "the snapshot was interrupted: $(grep "snapshot interrupted" "$F1/repfs.log")"
grep -q "sending a snapshot at seq" "$L/repfs.log" || fail "the leader's log does not say it sent a snapshot"
# the writer ran through the snapshot: it kept to one CPU meanwhile, and every
# thread of both daemons has all its CPUs back afterwards (a FUSE ring thread
# its own CPU: it serves the requests made there, fs/fuse_ring.c)
grep -q "kept to one CPU .* while this node served writes" "$L/repfs.log" ||
	fail "the leader's log does not say the snapshot kept to one CPU while the writer ran"
for p in $(rl_pid "$L") $(rl_pid "$F1"); do
	all=$(grep Cpus_allowed_list "/proc/$p/status" | cut -f2)
	for t in /proc/"$p"/task/*; do
		got=$(grep Cpus_allowed_list "$t/status" 2>/dev/null | cut -f2)
		comm=$(cat "$t/comm" 2>/dev/null)
		if [ "${comm#repfs-ring}" != "$comm" ]; then
			[ -z "$got" ] || [ "$got" = "${comm#repfs-ring}" ] || fail "ring thread ${t##*/} ($comm) of pid $p has CPUs $got"
			continue
		fi
		[ -z "$got" ] || [ "$got" = "$all" ] || fail "thread ${t##*/} of pid $p kept CPUs $got (the process has $all)"
	done
done
"$REPFS" status "$F1" | grep -q "^snapshot *done" || fail "status does not show the finished snapshot"

note "it follows as usual afterwards"
echo after >"$LM/after"
rl_wait_converged 30 "$L" "$F1"
[ "$(cat "$F1M/after")" = after ] || fail "a write after the snapshot did not reach the follower"

note "a second follower joins an idle leader whose tree left the page cache: same result"
# while the leader serves no writes the sender reads what is not cached past
# the page cache (O_DIRECT windows of 8 MiB, the next one read ahead)
# files larger than those windows: an odd size, and one with data past a
# hole that spans a window
head -c $((17 * 1048576 + 123)) /dev/urandom >"$LM/large" || fail "writing the large file failed"
dd if=/dev/urandom of="$LM/sparse_large" bs=1M count=3 seek=13 2>/dev/null || fail "dd of the sparse large file failed"
head -c 1000 /dev/urandom | dd of="$LM/sparse_large" bs=1 seek=$((5 * 1048576 + 77)) conv=notrunc 2>/dev/null
rl_wait_converged 30 "$L" "$F1"
rl_drop_tree_pages "$L"
rl_follower F2 "$F2" "$F2M" "$RL_PORT"
rl_wait_converged 60 "$L" "$F1" "$F2"
treecmp "$LM" "$F2M" || fail "the second follower differs from the leader"
direct=$(sed -n "s/.*snapshot for 'F2' sent: .*(\([0-9]*\) bytes read past the page cache).*/\1/p" "$L/repfs.log" | tail -n 1)
[ "${direct:-0}" -ge $((16 * 1048576)) ] ||
	fail "the sender read ${direct:-no} bytes past the page cache (the large files are $((20 * 1048576)) bytes)"
cmp "$LM/large" "$F2M/large" || fail "the large file differs on the second follower"
cmp "$LM/sparse_large" "$F2M/sparse_large" || fail "the sparse large file differs on the second follower"
exit 0
