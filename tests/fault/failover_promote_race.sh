#!/bin/bash
# failover_promote_race.sh -- G8, G10: the leader dies and two `repfs
# promote` run at once, one for B and one for C (two operators, or a script
# run twice). Whatever the interleaving, the cluster must end with exactly
# one leader (never two, never none), it must be a node whose promote said
# it succeeded, its mount takes writes, and the other node follows it.
. "$(dirname "$0")/../integration/failover_lib.sh"

fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"
fo_kill A
fo_wait_get 10 "$B" following false
fo_wait_get 10 "$C" following false

note "repfs promote B and repfs promote C at once"
"$REPFS" promote "$BM" >"$T/promote.B" 2>&1 &
pb=$!
"$REPFS" promote "$CM" >"$T/promote.C" 2>&1 &
pc=$!
wait $pb
rb=$?
wait $pc
rc=$?
note "promote B: exit $rb: $(cat "$T/promote.B")"
note "promote C: exit $rc: $(cat "$T/promote.C")"
[ "$rb" = 0 ] || [ "$rc" = 0 ] || fail "neither promotion succeeded: promote B said '$(cat "$T/promote.B")', promote C said '$(cat "$T/promote.C")'; roles now: B $(fo_get "$B" role), C $(fo_get "$C" role)"

_one_leader() {
	local lb lc
	lb=$(fo_get "$B" role)
	lc=$(fo_get "$C" role)
	[ "$lb" = leader ] && [ "$lc" = leader ] && fail "two leaders: B (epoch $(fo_get "$B" epoch)) and C (epoch $(fo_get "$C" epoch))"
	[ "$lb" = leader ] || [ "$lc" = leader ]
}
end=$(($(now_ms) + 10000))
until _one_leader; do
	[ "$(now_ms)" -lt "$end" ] || fail "no leader 10 s after both promotions returned \
(B: exit $rb, role $(fo_get "$B" role), epoch $(fo_get "$B" epoch); C: exit $rc, role $(fo_get "$C" role), \
epoch $(fo_get "$C" epoch)): promote B said '$(cat "$T/promote.B")', promote C said '$(cat "$T/promote.C")'"
	sleep 0.1
done
if [ "$(fo_get "$B" role)" = leader ]; then P=B O=C; else P=C O=B; fi
[ "$(eval echo "\$r$(echo $P | tr 'BC' 'bc')")" = 0 ] || fail "$P leads, but its promote failed"
fo_writes "$(fo_mnt $P)" "the leader $P after the race"
fo_wait_leader 20 $O $P
fo_wait_converged 20 "$(fo_data $P)" "$(fo_data $O)"
treecmp "$(fo_mnt $P)" "$(fo_mnt $O)" || fail "$O differs from the leader $P"
out=$("$HELPERS/ackwriter" check "$(fo_mnt $P)/records" 20) || fail "acknowledged records missing on $P: $out"
for i in 1 2 3; do
	_one_leader || fail "no leader any more"
	sleep 0.2
done
exit 0
