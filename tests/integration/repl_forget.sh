#!/bin/bash
# repl_forget.sh -- `repfs forget`: a leader keeps every follower it has seen
# (16 names at most), keeps its log for it and, with --sync all, waits for
# it; `repfs forget LEADER NAME` lets go of one that is gone for good. Refused
# for a connected follower, an unknown name, or on a follower; a forgotten
# follower's slot is free again and the fsync that waited for it returns; the
# follower, started again, joins as a new one.
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --sync all
echo base >"$AM/base" || fail "a write on the leader failed"
fo_wait_converged 20 "$A" "$B" "$C"

forget() { # TARGET NAME: sets FG_RC and FG_OUT
	FG_OUT=$("$REPFS" forget "$1" "$2" 2>&1)
	FG_RC=$?
	note "repfs forget $2: exit $FG_RC: $FG_OUT"
}
forget "$A" B
assert_eq "$FG_RC" 1 "forget of a connected follower: exit status"
case $FG_OUT in *"follower 'B' is connected (from "*"); stop it first"*) ;; *) fail "forget of a connected follower said: $FG_OUT" ;; esac
forget "$A" Z
assert_eq "$FG_RC" 1 "forget of an unknown follower: exit status"
case $FG_OUT in *"no follower 'Z' is known to this leader"*) ;; *) fail "forget of an unknown name said: $FG_OUT" ;; esac
forget "$BM" A
assert_eq "$FG_RC" 1 "forget on a follower: exit status"
case $FG_OUT in *"'B' is not the leader"*) ;; *) fail "forget on a follower said: $FG_OUT" ;; esac
forget "$A" 'bad"name'
assert_eq "$FG_RC" 2 "forget of an invalid name: exit status"

note "C stops: with --sync all, an fsync on A waits for it until it is forgotten"
fo_stop C
assert_eq "$(fo_get "$A" peers.C.connected)" false "C's slot on A after it stopped"
rl_bg python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"waits for C\n")
os.fsync(fd)
print("synced")' "$AM/waits" >"$T/writer.out" 2>&1
W=$RL_BG_PID
rl_still_running "$W" 1000 "an fsync on A returned while the stopped follower C was still known (--sync all)"
forget "$A" C
assert_eq "$FG_RC" 0 "forget of the stopped follower C: exit status"
case $FG_OUT in *"follower 'C' forgotten"*) ;; *) fail "forget of C said: $FG_OUT" ;; esac
rl_wait_exit 10 "$W" "the fsync waiting for C did not return once C was forgotten"
assert_eq "$RL_RC" 0 "the writer's exit status"
assert_eq "$(cat "$T/writer.out")" synced "the writer's output"
assert_eq "$(fo_get "$A" peers.C.name)" null "C in A's status after it was forgotten"
grep -q "follower 'C' forgotten" "$A/repfs.log" || fail "A's log does not say it forgot C"

note "C starts again: it joins as a new follower"
fo_start C
fo_wait_converged 30 "$A" "$B" "$C"
assert_eq "$(cat "$CM/waits")" "waits for C" "the file written while C was gone, on C"
assert_eq "$(fo_get "$A" peers.C.connected)" true "C's slot on A after it joined again"
exit 0
