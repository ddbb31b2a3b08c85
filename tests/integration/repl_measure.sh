#!/bin/bash
# repl_measure.sh -- measurements, printed, not asserted (only that the
# follower converges): the replication lag of an async follower under a
# sustained write stream (leader seq vs follower applied, sampled with
# timestamps: for each leader sample, the time until the follower's applied
# position reached it), and the time of a 4 KiB append+fsync loop on a leader
# with quorum=1 (one follower), with async (one follower) and standalone.
# Lines starting with MEASURE are the results; set REPL_MEASURE_OUT=FILE to
# collect them in a file too.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1 S=$T/s
LM=$T/lm F1M=$T/f1m SM=$T/sm
COUNT=${REPL_FSYNC_COUNT:-200}

measure() {
	echo "MEASURE $*"
	[ -n "${REPL_MEASURE_OUT:-}" ] && echo "MEASURE $*" >>"$REPL_MEASURE_OUT"
	return 0
}

rl_leader L "$L" "$LM" --sync async
PORT=$RL_PORT
rl_follower F1 "$F1" "$F1M" "$PORT"
rl_wait_get 20 "$L" peers.F1.connected true

note "async replication lag under a sustained write stream (busywriter, 2 workers, 5 s)"
mkdir "$LM/busy"
rl_bg "$HELPERS/busywriter" "$LM/busy" 2 5 11 >"$T/busy.out" 2>&1
lag=$(rl_py lag "$L" "$F1" "$RL_BG_PID" 2>&1) || fail "lag sampling failed: $lag"
measure "async_lag $lag"
rl_wait_converged 30 "$L" "$F1"
treecmp "$LM" "$F1M" || fail "the follower differs from the leader after the stream"

note "4 KiB append+fsync x $COUNT"
out=$("$HELPERS/repl_fsyncloop" "$LM/loop-async" "$COUNT") || fail "fsync loop failed: $out"
measure "fsync_loop_async_1_follower $out"
rl_stop "$L" "$LM"
rl_restart "$L" "$LM" --listen "127.0.0.1:$PORT"
assert_eq "$(rl_get "$L" sync)" quorum=1 "sync mode after the restart"
rl_wait_get 20 "$L" peers.F1.connected true
out=$("$HELPERS/repl_fsyncloop" "$LM/loop-quorum" "$COUNT") || fail "fsync loop failed: $out"
measure "fsync_loop_quorum1_1_follower $out"
rl_wait_converged 30 "$L" "$F1"

NODE_NAME=S
rl_mount "$S" "$SM" --role leader --name S --key "$KEY" || fail "standalone leader: $RL_MOUNT_ERR"
assert_eq "$(rl_get "$S" mode)" standalone "mode of a leader without --listen or --peer"
out=$("$HELPERS/repl_fsyncloop" "$SM/loop-standalone" "$COUNT") || fail "fsync loop failed: $out"
measure "fsync_loop_standalone $out"
exit 0
