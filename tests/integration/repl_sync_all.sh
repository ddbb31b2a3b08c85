#!/bin/bash
# repl_sync_all.sh -- G3, section 3: with --sync all an fsync on the leader
# waits for every follower: with one of two stopped it returns only once that
# one is back. With --sync-timeout 500 it gives up after about half a second,
# falls back to async and says so in status and in the leader's log, and goes
# back to synchronous once the follower has caught up.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM" --sync all
PORT=$RL_PORT
rl_follower F1 "$F1" "$F1M" "$PORT"
rl_follower F2 "$F2" "$F2M" "$PORT"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
assert_eq "$(rl_get "$L" sync)" all "sync mode"

note "--sync all, both up: fsync returns"
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/a" 3) || fail "fsync with --sync all and both followers up failed: $out"

note "--sync all, F2 stopped: fsync waits for it"
rl_stop "$F2" "$F2M"
rl_wait_get 10 "$L" peers.F2.connected false
rl_bg "$HELPERS/ackwriter" write "$LM/b" 1 >"$T/b.out" 2>&1
w=$RL_BG_PID
rl_still_running "$w" 1500 "fsync returned with F2 down (--sync all)"
grep -q '^ack' "$T/b.out" && fail "the writer acknowledged a record with F2 down"
[ "$(rl_get "$F1" durable)" -ge "$(rl_get "$L" seq)" ] || fail "F1 (up) does not hold the record the fsync waits for"
rl_restart "$F2" "$F2M" --peer "127.0.0.1:$PORT"
rl_wait_exit 15 "$w" "fsync after F2 came back (--sync all)"
assert_eq "$(cat "$T/b.out")" "ack 1" "the blocked writer's result"
seq=$(rl_get "$L" seq)
[ "$(rl_get "$F2" durable)" -ge "$seq" ] || fail "fsync returned but F2 holds only seq $(rl_get "$F2" durable) of $seq"
[ "$(rl_get "$F1" durable)" -ge "$seq" ] || fail "fsync returned but F1 holds only seq $(rl_get "$F1" durable) of $seq"
assert_eq "$(rl_get "$L" fell_back_to_async)" false "fell_back_to_async without --sync-timeout"

note "--sync all --sync-timeout 500, F2 stopped: fsync returns after the timeout"
rl_stop "$L" "$LM"
rl_restart "$L" "$LM" --listen "127.0.0.1:$PORT" --sync all --sync-timeout 500
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/c" 2) || fail "fsync with both followers up failed: $out"
assert_eq "$(rl_get "$L" fell_back_to_async)" false "fell_back_to_async with both followers up"
rl_stop "$F2" "$F2M"
rl_wait_get 10 "$L" peers.F2.connected false
start=$(now_ms)
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/d" 1) || fail "fsync with F2 down and --sync-timeout failed: $out"
took=$(($(now_ms) - start))
note "fsync with F2 down and --sync-timeout 500 took $took ms"
[ "$took" -ge 450 ] || fail "fsync returned after $took ms, before the 500 ms sync timeout"
[ "$took" -le 5000 ] || fail "fsync took $took ms with a 500 ms sync timeout"
assert_eq "$(rl_get "$L" fell_back_to_async)" true "fell_back_to_async after the timeout"
grep -q "falling back to async" "$L/repfs.log" || fail "the leader's log does not mention the fallback to async"
start=$(now_ms)
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/e" 5) || fail "fsync after the fallback failed: $out"
took=$(($(now_ms) - start))
note "5 fsyncs while fallen back to async: $took ms"
[ "$took" -lt 2500 ] || fail "5 fsyncs after the fallback to async took $took ms: still waiting for F2?"

note "F2 back: synchronous again"
rl_restart "$F2" "$F2M" --peer "127.0.0.1:$PORT"
rl_wait_converged 20 "$L" "$F1" "$F2"
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/f" 1) || fail "fsync after F2 came back failed: $out"
check_eq "$(rl_get "$L" fell_back_to_async)" false "fell_back_to_async after F2 caught up and a new write was fsync'd"
grep -q "synchronous replication resumed" "$L/repfs.log" ||
	soft_fail "the leader's log does not say synchronous replication resumed"
rl_stop "$F1" "$F1M"
rl_wait_get 10 "$L" peers.F1.connected false
start=$(now_ms)
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/g" 1) || fail "fsync with F1 down failed: $out"
took=$(($(now_ms) - start))
[ "$took" -ge 450 ] ||
	soft_fail "once the followers had caught up, an fsync with F1 down returned after $took ms, without waiting for the sync timeout"

note "all converge"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$PORT"
rl_wait_converged 20 "$L" "$F1" "$F2"
treecmp "$LM" "$F1M" "$F2M" || fail "the followers differ from the leader"
exit 0
