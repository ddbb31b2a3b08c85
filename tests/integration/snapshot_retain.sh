#!/bin/bash
# snapshot_retain.sh -- a snapshot in flight holds the leader's log whatever
# its --log-retain budget (docs/snapshot.md), so a checkpoint cannot bring the
# log back under it; the follower receiving the snapshot logs what comes
# meanwhile without applying it. Neither node may then take a checkpoint
# every 100 ms (each a syncfs() of the whole file system): at most one per
# segment (64 MiB) its log grows. The walk is slowed down
# (REPFS_TEST_SNAP_PAUSE_MS after each directory listed) while 140 MiB are
# written; the delay hook logs each checkpoint ("test: checkpoint held").
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F=$T/f LM=$T/lm FM=$T/fm
export REPFS_TEST_CHECKPOINT_INTERVAL_S=3600 REPFS_TEST_CHECKPOINT_DELAY_MS=10

REPFS_TEST_SNAP_PAUSE_MS=2000 rl_leader L "$L" "$LM" --log-retain 1M
for d in 1 2 3 4 5 6; do
	mkdir "$LM/d$d" && echo "$d" >"$LM/d$d/f" || fail "unable to fill the leader"
done
held() { grep -c "test: checkpoint held" "$1/repfs.log"; }

note "a follower joins; while its snapshot walks, 140 MiB are written"
rl_follower F "$F" "$FM" "$RL_PORT" --log-retain 1M
_walking() { [ "$("$REPFS" status "$F" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["files_done"])')" -ge 1 ]; }
wait_for 30 _walking
dd if=/dev/zero of="$LM/big" bs=1M count=140 status=none || fail "dd of 140 MiB failed"
t0=$(now_ms)
# the walk still has directories to list: the log stays over its budget
while [ $(($(now_ms) - t0)) -lt 2000 ]; do sleep 0.1; done
"$REPFS" status "$F" --json | grep -q '"completed":1' && fail "the snapshot ended too soon for this test"
n=$(held "$L")
note "the leader's checkpoints while the snapshot held its log: $n"
[ "$n" -ge 1 ] || fail "no checkpoint on the leader (its log never went over its budget?)"
[ "$n" -le 3 ] || fail "$n checkpoints on the leader while a snapshot held its log (want at most one per 64 MiB)"

note "the snapshot completes and the follower converges"
wait_for 60 sh -c "'$REPFS' status '$F' --json | grep -q '\"completed\":1'"
rl_wait_converged 60 "$L" "$F"
treecmp "$LM" "$FM" || fail "the follower's mount differs from the leader's"
t0=$(now_ms)
while [ $(($(now_ms) - t0)) -lt 1000 ]; do sleep 0.1; done
n=$(held "$F")
note "the follower's checkpoints: $n"
[ "$n" -le 4 ] || fail "$n checkpoints on the follower for 140 MiB received with its snapshot (want at most one per 64 MiB)"
exit 0
