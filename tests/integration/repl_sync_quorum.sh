#!/bin/bash
# repl_sync_quorum.sh -- G3, section 3: with the default quorum=1 an fsync on
# the leader returns only once a follower holds the change durably: with both
# followers stopped it blocks until one comes back (a write without fsync
# does not wait). With --commit write every write() waits the same way.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM"
PORT=$RL_PORT
rl_follower F1 "$F1" "$F1M" "$PORT"
rl_follower F2 "$F2" "$F2M" "$PORT"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
assert_eq "$(rl_get "$L" sync)" "quorum=1" "the default sync mode"

note "quorum=1, both followers up: fsync returns"
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/a" 3) || fail "fsync with both followers up failed: $out"

note "quorum=1, both followers stopped: fsync blocks"
rl_stop "$F1" "$F1M"
rl_stop "$F2" "$F2M"
rl_wait_get 10 "$L" peers.F1.connected false
rl_wait_get 10 "$L" peers.F2.connected false
start=$(now_ms)
echo "no fsync" >"$LM/plain" || fail "a write without fsync failed with the followers down"
[ $(($(now_ms) - start)) -lt 3000 ] || fail "a write without fsync waited for the followers"
rl_bg "$HELPERS/ackwriter" write "$LM/b" 1 >"$T/b.out" 2>&1
w=$RL_BG_PID
rl_still_running "$w" 1500 "fsync on the leader returned with no follower up (quorum=1)"
grep -q '^ack' "$T/b.out" && fail "the writer acknowledged a record with no follower up"

note "F1 comes back: the fsync returns"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$PORT"
rl_wait_exit 15 "$w" "fsync on the leader after F1 came back"
assert_eq "$(cat "$T/b.out")" "ack 1" "the blocked writer's result"
seq=$(rl_get "$L" seq)
[ "$(rl_get "$F1" durable)" -ge "$seq" ] ||
	fail "the fsync returned but F1 holds only seq $(rl_get "$F1" durable) durably of $seq"
out=$("$HELPERS/ackwriter" check "$F1M/b" 1) || fail "F1's copy of the acknowledged record: $out"

note "--commit write: a plain write() waits for a follower"
rl_restart "$F2" "$F2M" --peer "127.0.0.1:$PORT"
rl_wait_converged 20 "$L" "$F1" "$F2"
rl_stop "$L" "$LM"
rl_restart "$L" "$LM" --listen "127.0.0.1:$PORT" --commit write
assert_eq "$(rl_get "$L" sync)" "quorum=1 commit=write" "sync mode shown with --commit write"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
start=$(now_ms)
dd if=/dev/urandom of="$LM/cw1" bs=4k count=4 status=none || fail "a write with --commit write and followers up failed"
note "4 writes with --commit write, followers up: $(($(now_ms) - start)) ms"
rl_stop "$F1" "$F1M"
rl_stop "$F2" "$F2M"
rl_wait_get 10 "$L" peers.F1.connected false
rl_wait_get 10 "$L" peers.F2.connected false
rl_bg dd if=/dev/urandom of="$LM/cw2" bs=4k count=1 status=none
w=$RL_BG_PID
rl_still_running "$w" 1500 "a write() without fsync returned with no follower up (--commit write)"
rl_restart "$F2" "$F2M" --peer "127.0.0.1:$PORT"
rl_wait_exit 15 "$w" "the write() after F2 came back"
[ "$RL_RC" = 0 ] || fail "the write with --commit write failed once F2 was back (exit $RL_RC)"
seq=$(rl_get "$L" seq)
[ "$(rl_get "$F2" durable)" -ge "$seq" ] || fail "the write returned but F2 holds only seq $(rl_get "$F2" durable) of $seq"

note "all converge"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$PORT"
rl_wait_converged 20 "$L" "$F1" "$F2"
treecmp "$LM" "$F1M" "$F2M" || fail "the followers differ from the leader"
exit 0
