#!/bin/bash
# repl_follower_kill.sh -- G4: kill -9 of a follower while a writer keeps the
# leader busy; more writes while it is down; restarted (same DATADIR, no
# --role) it resumes from its own durable position -- not from zero, nothing
# copied twice -- converges, and its tree and log equal the leader's.
. "$(dirname "$0")/../integration/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM"
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
rl_follower F2 "$F2" "$F2M" "$RL_PORT"
rl_wait_get 20 "$L" peers.F1.connected true
rl_wait_get 20 "$L" peers.F2.connected true

note "writer on the leader"
mkdir "$LM/busy"
rl_bg "$HELPERS/busywriter" "$LM/busy" 3 6 7 >"$T/busy.out" 2>&1
writer=$RL_BG_PID
seq0=$(rl_get "$L" seq)
_f1_busy() { [ "$(rl_py get "$F1" applied)" -gt $((seq0 + 200)) ]; }
wait_for 20 _f1_busy

note "kill -9 of F1 mid-stream"
durable_before=$(rl_get "$L" peers.F1.durable)
rl_kill "$F1" "$F1M"
killed_at=$(rl_get "$L" seq)
pid_alive "$writer" || fail "the writer ended before F1 was killed; nothing was mid-stream"
note "F1 killed at leader seq $killed_at (F1 durable $durable_before)"
rl_wait_get 10 "$L" peers.F1.connected false

note "more writes while F1 is down"
_leader_moved() { [ "$(rl_py get "$L" seq)" -gt $((killed_at + 300)) ]; }
wait_for 20 _leader_moved
rl_wait_exit 30 "$writer" "the writer on the leader"
grep -q "stopped: time is up" "$T/busy.out" || fail "the writer failed: $(cat "$T/busy.out")"
mkdir "$LM/after"
for i in $(seq 1 20); do echo "after $i" >"$LM/after/$i"; done
mv "$LM/after/1" "$LM/after/one"
sync "$LM/after/2" || fail "fsync on the leader (F2 still up) failed"

note "restart F1 (no --role)"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$RL_PORT"
assert_eq "$(rl_get "$F1" role)" follower "F1's role after the restart"
rl_wait_converged 30 "$L" "$F1" "$F2"

note "compare"
treecmp "$L/tree" "$F1/tree" "$F2/tree" || fail "the trees differ after F1's restart"
treecmp "$LM" "$F1M" "$F2M" || fail "the mounts differ after F1's restart"
log_out=$("$REPFS" log "$F1" --verify 2>&1) || fail "repfs log --verify of F1 failed: $log_out"
assert_eq "$("$REPFS" log "$F1" | head -n 1 | awk '{print $2}')" 1 "seq of the first record of F1's log"
assert_eq "$("$REPFS" log "$F1" | wc -l)" "$("$REPFS" log "$L" | wc -l)" "records in F1's log vs the leader's"
dups=$("$REPFS" log "$F1" | awk '{print $2}' | sort -n | uniq -d | head -n 3)
[ -z "$dups" ] || fail "seqs repeated in F1's log: $dups"
rl_log_prefix "$F1" "$L" equal

note "F1 resumed from its own position"
resumed=$(sed -n "s/.*follower 'F1' connected from .* at seq \([0-9]*\)$/\1/p" "$L/repfs.log" | tail -n 1)
[ -n "$resumed" ] || fail "no reconnection of F1 in the leader's log"
[ "$(grep -c "follower 'F1' connected" "$L/repfs.log")" -ge 2 ] || fail "the leader saw only one connection of F1"
[ "$resumed" -gt 0 ] || fail "F1 started over from seq 0 after its restart"
[ "$resumed" -ge "$durable_before" ] ||
	fail "F1 resumed at seq $resumed, below the $durable_before it had acknowledged as durable"
[ "$resumed" -lt "$(rl_get "$L" seq)" ] || fail "F1 resumed at seq $resumed: nothing was left to catch up"
grep -q "following 'L' at .* from seq $resumed\$" "$F1/repfs.log" ||
	fail "F1's log does not say it followed from seq $resumed: $(grep following "$F1/repfs.log" | tail -n 2)"
note "F1 resumed at seq $resumed (killed at leader seq $killed_at, leader now at $(rl_get "$L" seq))"
exit 0
