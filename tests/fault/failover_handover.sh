#!/bin/bash
# failover_handover.sh -- G8, G10: a switchover (promote while the leader is
# reachable) must never leave the cluster without a leader. Here the target
# is not connected to the leader and lacks its last record: A dies, B is
# promoted, and `repfs promote C` follows at once, while C still waits out
# its reconnection backoff (it has not found B yet). Either C takes over
# (B hands over what C lacks) or C's promotion is refused and B stays the
# leader; in both cases exactly one node leads and takes writes, and the
# other follows it.
. "$(dirname "$0")/../integration/failover_lib.sh"

fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"
fo_kill A
# C looks for a leader with a growing backoff (100 ms, doubling up to 2 s):
# after its 5th look, it waits >= 1.6 s before the next one
_c_looked() { [ "$(grep -c "peer '127.0.0.1:$FO_PORT_B': 'B' is not the leader" "$C/repfs.log")" -ge 5 ]; }
wait_for 20 _c_looked

fo_promote B
[ "$FO_RC" = 0 ] || fail "repfs promote B failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in "'B' is the leader of epoch 2 "*) ;; *) fail "repfs promote B said: $FO_OUT" ;; esac
assert_eq "$(fo_get "$C" following)" false "C following someone before its promotion"
fo_promote C
rc=$FO_RC out=$FO_OUT
if [ "$rc" = 0 ]; then P=C O=B; else P=B O=C; fi
note "C's promotion: exit $rc; expecting $P to lead"

_roles() { echo "B $(fo_get "$B" role) C $(fo_get "$C" role)"; }
end=$(($(now_ms) + 10000))
until [ "$(fo_get "$(fo_data $P)" role)" = leader ]; do
	[ "$(now_ms)" -lt "$end" ] || fail "10 s after 'repfs promote C' (exit $rc: $out), $P does not lead: $(_roles); \
the cluster has no leader"
	sleep 0.1
done
assert_eq "$(fo_get "$(fo_data $O)" role)" follower "$O's role"
fo_writes "$(fo_mnt $P)" "the leader $P"
fo_wait_leader 20 $O $P
fo_wait_converged 20 "$(fo_data $P)" "$(fo_data $O)"
treecmp "$(fo_mnt $P)" "$(fo_mnt $O)" || fail "$O differs from the leader $P"
out=$("$HELPERS/ackwriter" check "$(fo_mnt $P)/records" 20) || fail "acknowledged records missing on $P: $out"
exit 0
