#!/bin/bash
# checkpoint_idle.sh -- the periodic checkpoint (a syncfs() of the whole file
# system under DATADIR, other programs' dirty pages included) is skipped
# while nothing was applied since the last one, and taken again once
# something is. Checkpoints every second here (REPFS_TEST_CHECKPOINT_INTERVAL_S);
# the delay hook logs each one ("test: checkpoint held").
. "$(dirname "$0")/lib.sh" || exit 1

D=$T/data
M=$T/mnt
REPFS_TEST_CHECKPOINT_INTERVAL_S=1 REPFS_TEST_CHECKPOINT_DELAY_MS=10 start_leader "$D" "$M"

field() { json_get "$(status_json "$D")" "$1"; }
held() { grep -c "test: checkpoint held" "$D/repfs.log"; }

echo one >"$M/f" || fail "write failed"
seq=$(field seq)
_covered() { [ "$(field checkpoint)" -ge "$seq" ]; }
wait_for 10 _covered
n=$(held)
note "checkpoint at $(field checkpoint) ($n taken); idle for 3 s"
t0=$(now_ms)
while [ $(($(now_ms) - t0)) -lt 3000 ]; do
	[ "$(held)" = "$n" ] || fail "a checkpoint was taken while nothing was applied ($(held) after $n)"
	sleep 0.1
done

note "a change: the next checkpoint covers it"
echo two >"$M/g" || fail "write failed"
seq=$(field seq)
wait_for 10 _covered
[ "$(held)" -gt "$n" ] || fail "the checkpoint covering seq $seq was not taken by the checkpointer"
stop_node "$M" "$D"
exit 0
