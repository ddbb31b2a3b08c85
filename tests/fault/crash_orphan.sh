#!/bin/bash
# crash_orphan.sh -- a daemon killed while something else still holds its
# /dev/fuse (its own thread that cannot finish dying did, in fuzz runs that
# kill a busy daemon: below) leaves its connection alive with nobody to
# answer: programs using the mount would wait for ever. The daemon's guard process aborts the connection when the daemon
# dies (tools/mount.c, guard_connection()): an open must fail with ENOTCONN
# within seconds, and a restart must find every file. REPFS_TEST_HOLD_FUSE
# makes the daemon start a child that holds /dev/fuse. Then a clean stop,
# and another daemon's mount at once: the stopped daemon's guard must leave
# the new mount alone, though it may have taken the same connection number.
# Last, a daemon that cannot finish dying (below).
. "$(dirname "$0")/../integration/lib.sh" || exit 1

D=$T/data
M=$T/mnt

REPFS_TEST_HOLD_FUSE=1 start_leader "$D" "$M"
holder=$(sed -n 's/.*test hook: \/dev\/fuse held by pid \([0-9]*\).*/\1/p' "$D/repfs.log" | tail -n 1)
[ -n "$holder" ] || fail "the daemon did not say which process holds /dev/fuse"
track_pid "$holder"
grep -q "is guarded by pid" "$D/repfs.log" || fail "the daemon did not start its guard: $(tail -n 3 "$D/repfs.log")"
echo kept >"$M/f" || fail "a write on the leader failed"
sync "$M/f"

note "the daemon is killed; pid $holder still holds /dev/fuse"
pids=$(daemon_pid "$D")
[ -n "$pids" ] || fail "no daemon holds '$D/lock'"
for p in $pids; do kill -9 "$p"; done
for p in $pids; do wait_for 20 _dead "$p"; done
pid_alive "$holder" || fail "the process holding /dev/fuse is gone: the test tests nothing"
start=$(now_ms)
# (an open asks the daemon; a stat could be answered from the kernel's cache)
out=$(timeout -s KILL 20 cat "$M/f" 2>&1)
rc=$?
note "an open after the kill: exit $rc in $(($(now_ms) - start)) ms: $out"
[ "$rc" != 137 ] || fail "an open of the dead mount still waited after 20 s: the connection was not aborted"
case $out in
*"Transport endpoint is not connected"*) ;;
*) fail "an open of the dead mount: $out (exit $rc), not ENOTCONN" ;;
esac

note "cleanup and restart: the file is there"
kill -9 "$holder"
wait_for 20 _dead "$holder"
fusermount3 -uz "$M" 2>/dev/null || umount -l "$M" 2>/dev/null
wait_for 20 _not_mounted "$M"
# (its clean-up after the stop below lasts 1.5 s: the next mount comes first)
REPFS_TEST_STOP_DELAY_MS=1500 start_leader "$D" "$M"
assert_eq "$(cat "$M/f")" kept "the file after the restart"

# A clean stop releases the guard before the daemon's own clean-up: the
# connection's number, free once unmounted, goes to the next mount, which
# the guard must then leave alone when the daemon exits.
note "a clean stop, and another daemon's mount right after it"
conn() { sed -n 's/.*FUSE connection \([0-9]*\) is guarded.*/\1/p' "$1/repfs.log" | tail -n 1; }
pid="$(daemon_pid "$D") $(sed -n 's/.*is guarded by pid \([0-9]*\).*/\1/p' "$D/repfs.log" | tail -n 1)"
first=$(conn "$D")
fusermount3 -u "$M" || fail "unmounting '$M' failed"
start_leader "$T/data2" "$T/mnt2"
second=$(conn "$T/data2")
for p in $pid; do wait_for 20 _dead "$p"; done	# the daemon and its guard
note "connection $first, then $second for the next mount"
[ "$first" = "$second" ] || note "the number was not reused (another test mounted meanwhile): nothing to check"
echo alive >"$T/mnt2/g" || fail "the next mount failed once the stopped daemon had exited"
assert_eq "$(cat "$T/mnt2/g")" alive "a file on the next mount"
stop_node "$T/mnt2" "$T/data2"

# A daemon thread waiting for an answer from its own mount (write_back()'s
# open through it: SEEK_DATA of a file with dirty pages, writeback cache)
# that a killed thread had taken waits for ever, uninterruptibly: the
# process never finishes dying and keeps /dev/fuse open. The guard watches
# the daemon's main thread too. REPFS_TEST_SELF_OPEN_DELAY_MS holds the
# daemon's own open in the thread that took it, where the kill finds it.
note "a daemon killed while it waits for its own open through the mount"
REPFS_TEST_SELF_OPEN_DELAY_MS=3000 start_leader "$T/data3" "$T/mnt3" --writeback on
third=$(conn "$T/data3")
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x" * 8192)
try:
    print("lseek:", os.lseek(fd, 0, os.SEEK_DATA))
except OSError as e:
    print("lseek:", e.strerror)' "$T/mnt3/f" >"$T/seek.out" 2>&1 &
seeker=$!
track_pid "$seeker"
_held() { grep -q "test hook: an open while the daemon opens through its mount" "$T/data3/repfs.log"; }
wait_for 20 _held
pids=$(daemon_pid "$T/data3")
for p in $pids; do kill -9 "$p"; done
_seeker_done() { ! pid_alive "$seeker"; }
start=$(now_ms)
until _seeker_done; do
	if [ $(($(now_ms) - start)) -gt 15000 ]; then
		# the processes would stay in D state for ever: free them before failing
		echo 1 >"/sys/fs/fuse/connections/$third/abort" 2>/dev/null
		fail "15 s after the kill -9, the daemon and a program's lseek still wait for the daemon's own open"
	fi
	sleep 0.05
done
note "the program's lseek ended $(($(now_ms) - start)) ms after the kill: $(cat "$T/seek.out")"
for p in $pids; do wait_for 20 _dead "$p"; done
fusermount3 -uz "$T/mnt3" 2>/dev/null || umount -l "$T/mnt3" 2>/dev/null
log_verify "$D"
exit 0
