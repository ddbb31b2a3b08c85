#!/bin/bash
# promote_during_verify.sh -- a follower promoted while a `repfs verify`
# holds its apply (the exact comparison: records go on being logged, not
# applied) applies what it holds before it leads: the branch record moves the
# applied position past everything logged, and records held then never
# reached the new leader's tree (found by review, 2026-11-28).
#
# B's tree is changed behind its daemon's back so that the verify has a path
# to compare exactly; REPFS_TEST_VERIFY_HOLD_MS keeps that comparison's hold
# for a few seconds, while A writes a file and dies and B is promoted.
. "$(dirname "$0")/../integration/failover_lib.sh"

export REPFS_TEST_VERIFY_HOLD_MS=4000
fo_cluster --sync async
echo base >"$AM/base" || fail "a write on the leader failed"
sync "$AM/base"
fo_wait_converged 20 "$A" "$B" "$C"

note "B's tree differs behind its back; a verify holds B's apply"
echo tampered >"$B/tree/base"
"$REPFS" verify "$BM" >"$T/verify.out" 2>&1 &
VERIFY_PID=$!
RL_BG_PIDS+=("$VERIFY_PID")
wait_for 20 grep -q "verify: test hook: holding the apply" "$B/repfs.log"

note "A writes while B holds, then dies; B is promoted during the hold"
echo "written during the hold" >"$AM/held" || fail "a write on A failed"
sync "$AM/held"
a_seq=$(fo_get "$A" seq)
fo_wait_get 20 "$B" seq "$a_seq"
[ "$(fo_get "$B" applied)" -lt "$a_seq" ] ||
	fail "B applied seq $a_seq while the verify held it: the test did not hold anything"
fo_kill A
fo_promote B
[ "$FO_RC" = 0 ] || fail "repfs promote B failed (exit $FO_RC): $FO_OUT"
assert_eq "$(cat "$BM/held" 2>&1)" "written during the hold" "the file A wrote while B's apply was held, on the new leader B"
wait "$VERIFY_PID"
note "the verify ended: $(tail -n 1 "$T/verify.out")"
echo "after" >"$BM/after" || fail "a write on the new leader B failed"
fo_wait_leader 20 C B
fo_wait_converged 20 "$B" "$C"
assert_eq "$(cat "$CM/held" 2>&1)" "written during the hold" "the held file on C"
log_verify "$B"
exit 0
