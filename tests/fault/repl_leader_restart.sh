#!/bin/bash
# repl_leader_restart.sh -- a leader that is stopped cleanly and mounted again
# is found again by its followers, which retry with backoff meanwhile (not in
# a tight loop); they resume where they were and converge.
. "$(dirname "$0")/../integration/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM"
PORT=$RL_PORT
rl_follower F1 "$F1" "$F1M" "$PORT"
rl_follower F2 "$F2" "$F2M" "$PORT"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
"$HELPERS/busywriter" "$LM" 2 1 3 >"$T/busy1.out" || fail "busywriter failed: $(cat "$T/busy1.out")"
sync "$LM" || fail "fsync on the leader failed"
rl_wait_converged 20 "$L" "$F1" "$F2"
seq_before=$(rl_get "$L" seq)

note "stop the leader"
rl_stop "$L" "$LM"
rl_wait_get 10 "$F1" following false
rl_wait_get 10 "$F2" following false
_f_error() { [ -n "$(rl_py get "$1" last_error)" ]; }
wait_for 10 _f_error "$F1"
note "F1 without its leader: $(rl_get "$F1" last_error)"
treecmp "$L/tree" "$F1M" "$F2M" || fail "the followers differ from the stopped leader's tree"

note "the followers retry with backoff"
# something that accepts and drops every connection on the leader's port
# counts the followers' attempts for 3 s
rl_proxy_mode cut 0
rl_proxy "$PORT" "$(rl_free_port)"
start=$(now_ms)
_three_s() { [ $(($(now_ms) - start)) -ge 3000 ]; }
wait_for 10 _three_s
rl_proxy_stop
attempts=$(grep -c " open$" "$RL_PROXY_LOG")
note "connection attempts of 2 followers in 3 s: $attempts ($(awk '/ open$/{printf "%s ", $1}' "$RL_PROXY_LOG"))"
[ "$attempts" -ge 2 ] || fail "the followers tried only $attempts times in 3 s to reach the leader"
[ "$attempts" -le 30 ] || fail "the followers tried $attempts times in 3 s: no backoff"

note "the leader comes back"
start=$(now_ms)
rl_restart "$L" "$LM" --listen "127.0.0.1:$PORT"
assert_eq "$(rl_get "$L" role)" leader "role after the restart"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true
note "both followers back after $(($(now_ms) - start)) ms"
rl_wait_get 10 "$F1" following true
assert_eq "$(rl_get "$F1" leader)" L "F1's leader"
for f in F1 F2; do
	at=$(sed -n "s/.*follower '$f' connected from .* at seq \([0-9]*\)$/\1/p" "$L/repfs.log" | tail -n 1)
	assert_eq "$at" "$seq_before" "where $f resumed after the leader's restart"
done

note "more writes; all converge"
"$HELPERS/busywriter" "$LM" 2 1 4 >"$T/busy2.out" || fail "busywriter failed: $(cat "$T/busy2.out")"
out=$(timeout 20 "$HELPERS/ackwriter" write "$LM/acked" 5) || fail "fsync after the leader's restart failed: $out"
rl_wait_converged 20 "$L" "$F1" "$F2"
treecmp "$LM" "$F1M" "$F2M" || fail "the followers differ from the leader after its restart"
rl_log_prefix "$F1" "$L" equal
rl_log_prefix "$F2" "$L" equal
exit 0
