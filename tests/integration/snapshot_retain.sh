#!/bin/bash
# snapshot_retain.sh -- a snapshot in flight holds the leader's log whatever
# its --log-retain budget (docs/replication.md §6), so a checkpoint cannot
# bring the log back under it. The checkpointer must then not take one
# every 100 ms (each a syncfs() of the whole file system), only one per
# segment (64 MiB) the log grows. The snapshot walk is slowed down
# (REPFS_TEST_SNAP_PAUSE_MS after each directory listed) while 140 MiB are
# written.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F=$T/f LM=$T/lm FM=$T/fm

REPFS_TEST_SNAP_PAUSE_MS=2000 REPFS_TEST_CHECKPOINT_INTERVAL_S=3600 rl_leader L "$L" "$LM" --log-retain 1M
mkdir "$LM/d1" "$LM/d2" && echo one >"$LM/d1/a" && echo two >"$LM/d2/b" || fail "unable to fill the leader"

note "a follower joins; while its snapshot walks, 140 MiB are written"
rl_follower F "$F" "$FM" "$RL_PORT"
_walking() { [ "$("$REPFS" status "$F" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["files_done"])')" -ge 1 ]; }
wait_for 30 _walking
dd if=/dev/zero of="$LM/big" bs=1M count=140 status=none || fail "dd of 140 MiB failed"
t0=$(now_ms)
# the walk still has directories to list: the log stays over its budget
while [ $(($(now_ms) - t0)) -lt 2000 ]; do sleep 0.1; done
"$REPFS" status "$F" --json | grep -q '"completed":1' && fail "the snapshot ended too soon for this test"
n=$(grep -c "byte budget past checkpoint" "$L/repfs.log")
note "checkpoints for the budget while the snapshot held the log: $n"
[ "$n" -ge 1 ] || fail "no checkpoint for the log's budget (the log never went over it?)"
[ "$n" -le 3 ] || fail "$n checkpoints for the log's budget while a snapshot held the log (want at most one per 64 MiB)"

note "the snapshot completes and the follower converges"
wait_for 60 sh -c "'$REPFS' status '$F' --json | grep -q '\"completed\":1'"
rl_wait_converged 60 "$L" "$F"
treecmp "$LM" "$FM" || fail "the follower's mount differs from the leader's"
exit 0
