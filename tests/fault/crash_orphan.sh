#!/bin/bash
# crash_orphan.sh -- a daemon killed while something else still holds its
# /dev/fuse (the kernel's own references did, once in about 50 fuzz runs
# that kill a busy daemon: FUSE over io_uring on 6.18) leaves its connection
# alive with nobody to answer: programs using the mount would wait for
# ever. The daemon's guard process aborts the connection when the daemon
# dies (tools/mount.c, guard_connection()): an open must fail with ENOTCONN
# within seconds, and a restart must find every file. REPFS_TEST_HOLD_FUSE
# makes the daemon start a child that holds /dev/fuse.
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
start_leader "$D" "$M"
assert_eq "$(cat "$M/f")" kept "the file after the restart"
stop_node "$M" "$D"
log_verify "$D"
exit 0
