#!/bin/bash
# failover_wb_late.sh -- a switchover whose old leader still holds cached
# writes when it stops waiting for the kernel's writeback (fs/node.c,
# wb_flush(); the wait is cut to 1 ms here with REPFS_TEST_WB_FLUSH_MS):
# `repfs promote` still succeeds, but says that those writes are not on the
# new leader instead of "nothing lost", the old leader logs it, and the
# writer's close there fails.
. "$(dirname "$0")/failover_lib.sh"

export REPFS_TEST_WB_FLUSH_MS=1
fo_cluster
assert_eq "$(fo_get "$A" writeback_cache)" true "A's writeback cache"

note "64 MiB written into A's page cache through a descriptor held open (no close: no flush), not fsync'd"
echo first >"$AM/cached" || fail "a write on the leader failed"
cat >"$T/holder.py" <<'PYEOF2'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)  # an existing file: not a stream, its writes are cached
block = b"x" * (1 << 20)
for i in range(64):
    os.pwrite(fd, block, i << 20)
open(sys.argv[2], "w").close()
while not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
try:
    os.close(fd)  # the kernel writes back now, to a follower's mount
except OSError as e:
    print("close:", os.strerror(e.errno))
PYEOF2
rl_bg python3 "$T/holder.py" "$AM/cached" "$T/written" "$T/close" >"$T/holder.out" 2>&1
H=$RL_BG_PID
_written() { [ -e "$T/written" ]; }
wait_for 30 _written

fo_promote B
[ "$FO_RC" = 0 ] || fail "switchover: repfs promote B failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in
"'B' is the leader of epoch 2 from seq "*"(switchover: the old leader stopped waiting for its kernel's writeback; writes still cached there are not here"*) ;;
*) fail "switchover with writes still cached on A: repfs promote B said: $FO_OUT" ;;
esac
assert_eq "$(fo_get "$B" role)" leader "B's role after the switchover"
assert_eq "$(fo_get "$A" role)" follower "A's role after the switchover"
grep -q "was still writing back '$AM' when the wait ran out" "$A/repfs.log" ||
	fail "A's log does not say that it stepped down during the writeback: $(tail -n 5 "$A/repfs.log")"
touch "$T/close"
rl_wait_exit 60 "$H" "the writer holding cached pages on A did not close"
grep -q "^close: " "$T/holder.out" || fail "closing the file whose cached writes A never logged succeeded"
note "the holder on A: $(cat "$T/holder.out")"

# (the 1 ms wait is every daemon's here, so a switchover back would depend on
# the kernel's timing; failover_switchover.sh has the one that loses nothing)
fo_wait_leader 20 A B
echo after >"$BM/after" || fail "a write on the new leader B failed"
exit 0
