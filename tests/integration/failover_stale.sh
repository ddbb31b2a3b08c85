#!/bin/bash
# failover_stale.sh -- section 2, G8 (issue 5, test 2): `repfs promote` of a
# follower that is behind a reachable one is refused and names the better
# one; it changes nothing (still a read-only follower of the old epoch).
# `--force` promotes it anyway. A stopped node cannot be promoted at all.
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"

note "C stops; A goes on with B"
fo_stop C
out=$("$REPFS" promote "$C" 2>&1)
rc=$?
note "repfs promote of the stopped C: exit $rc: $out"
[ "$rc" = 1 ] || fail "promote of a stopped node: exit $rc, want 1: $out"
case $out in *"not running"*) ;; *) fail "promote of a stopped node says: $out" ;; esac
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/more" 15) || fail "fsync'd writes on A with C down failed: $out"
echo two >"$AM/d/two"
sync "$AM/d/two"
fo_wait_converged 20 "$A" "$B"

note "A dies; C comes back behind B"
fo_kill A
fo_start C
sb=$(fo_get "$B" seq)
sc=$(fo_get "$C" seq)
[ "$sc" -lt "$sb" ] || fail "C (seq $sc) is not behind B (seq $sb)"
assert_eq "$(fo_get "$C" role)" follower "C's role"
treecmp "$CM" "$BM" >/dev/null 2>&1 && fail "C's tree already equals B's"

fo_promote C
[ "$FO_RC" = 1 ] || fail "promote of the stale C: exit $FO_RC, want 1 (refused): $FO_OUT"
case $FO_OUT in
*"'C' is behind 'B' (seq $sc < $sb); promote 'B', or use --force"*) ;;
*) fail "the refusal does not name the better follower: $FO_OUT" ;;
esac
assert_eq "$(fo_get "$C" role)" follower "C's role after the refused promotion"
assert_eq "$(fo_get "$C" seq)" "$sc" "C's seq after the refused promotion"
assert_eq "$(fo_get "$C" epoch)" 1 "C's epoch after the refused promotion"
assert_eq "$(fo_get "$B" role)" follower "B's role after C's refused promotion"
fo_erofs "$CM" "C after the refused promotion"

note "promote --force of the stale C"
fo_promote C --force
[ "$FO_RC" = 0 ] || fail "promote --force of C failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in "'C' is the leader of epoch 2 from seq $((sc + 1))"*) ;; *) fail "promote --force said: $FO_OUT" ;; esac
assert_eq "$(fo_get "$C" role)" leader "C's role after promote --force"
assert_eq "$(fo_get "$C" epoch)" 2 "C's epoch after promote --force"
echo three >"$CM/d/three" || fail "the forced leader C takes no write"
out=$("$HELPERS/ackwriter" check "$CM/records" 20) || fail "C lost records it had: $out"
[ -e "$CM/d/two" ] && fail "C holds d/two, which it never received"

# B holds history C never had: it never becomes writable; it keeps what it
# alone holds under divergent/ (G9), goes back to where C branched, and follows C
_b_refused() { fo_get "$B" last_error | grep -q diverged || [ "$(fo_get "$B" divergent)" -gt 0 ] 2>/dev/null; }
wait_for 20 _b_refused
note "B: $(fo_get "$B" last_error) (divergent entries: $(fo_get "$B" divergent))"
assert_eq "$(fo_get "$B" role)" follower "B's role after C's forced promotion"
fo_erofs "$BM" "B after C's forced promotion"
out=$("$REPFS" divergent "$B" list 2>&1) || fail "repfs divergent B list failed: $out"
case $out in *"d/two"*) ;; *) fail "B's divergent writes do not name d/two: $out" ;; esac
fo_wait_converged 20 "$C" "$B"
treecmp "$CM" "$BM" || fail "B did not converge to C"
[ -e "$BM/d/two" ] && fail "B still shows d/two, which is not in C's history"

for d in "$B" "$C"; do log_verify "$d"; done
exit 0
