#!/bin/bash
# failover_fencing_partition.sh -- G8 fencing, G3, G10, under a partial
# partition: A (the leader) and B cannot reach each other, C reaches both
# and still follows A. B is promoted (C grants it epoch 2). From then on
# records of epoch 1 must be refused everywhere (G8): C must stop taking A's
# records, so A cannot get another fsync acknowledged with C's help (quorum=1)
# -- every fsync A acknowledges after the promotion would be missing from
# the new leader's history -- and the cluster must end with one leader, B,
# which C follows.
#
# B reaches A only through one tcpproxy, A reaches B only through another;
# "cut" on both is the partition between A and B. (If B's promotion is
# refused because C still follows a live leader, A must stay the only one.)
. "$(dirname "$0")/../integration/failover_lib.sh"

fo_ports
fo_proxy ab "$FO_PORT_A"
FO_VIA_B_A=$FO_PROXY_PORT
fo_proxy ba "$FO_PORT_B"
FO_VIA_A_B=$FO_PROXY_PORT FO_PINNED="A B"
fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"

note "partition between A and B; C still reaches both"
fo_proxy_mode ab cut 0
fo_proxy_mode ba cut 0
fo_wait_get 10 "$B" following false
fo_wait_get 10 "$A" peers.B.connected false
assert_eq "$(fo_get "$C" leader)" A "C's leader during the partition"

fo_promote B
if [ "$FO_RC" != 0 ]; then
	# also right: C still hears from a live leader and does not grant
	# B the epoch; then A stays the only leader
	note "B's promotion was refused while C follows the live A"
	assert_eq "$(fo_get "$B" role)" follower "B's role after its refused promotion"
	out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/after" 20) || fail "fsync'd writes on A failed: $out"
	assert_eq "$(fo_get "$A" role)" leader "A's role"
	fo_proxy_mode ab pass
	fo_proxy_mode ba pass
	fo_wait_leader 20 B A
	fo_wait_converged 20 "$A" "$B" "$C"
	treecmp "$AM" "$BM" "$CM" || fail "the trees differ after the partition healed"
	exit 0
fi
case $FO_OUT in "'B' is the leader of epoch 2 "*) ;; *) fail "repfs promote B said: $FO_OUT" ;; esac
echo two >"$BM/d/two" || fail "a write on the new leader B failed"

note "a writer on the old leader A, after the promotion of B"
rl_bg "$HELPERS/ackwriter" write "$AM/after" 0 >"$T/writer.out" 2>&1
W=$RL_BG_PID
# C must leave A for B; A must step down (it can learn of epoch 2 from C)
end=$(($(now_ms) + 10000))
until [ "$(fo_get "$C" leader)" = B ] && [ "$(fo_get "$A" role)" = follower ]; do
	if [ "$(now_ms)" -ge "$end" ]; then
		rl_bg_kill "$W"
		fail "10 s after B's promotion: A is a $(fo_get "$A" role) (epoch $(fo_get "$A" epoch)), B a $(fo_get "$B" role) \
(epoch $(fo_get "$B" epoch)); C (epoch $(fo_get "$C" epoch)) follows '$(fo_get "$C" leader)'; \
the writer on A got $(fo_acked "$T/writer.out") fsyncs acknowledged after B's promotion"
	fi
	sleep 0.1
done
rl_wait_exit 10 "$W" "the writer on A did not end after A stepped down"
acked=$(fo_acked "$T/writer.out")
note "the writer on A after B's promotion: $acked acknowledged, then $(grep -v '^ack' "$T/writer.out" | head -n 1)"
if [ "$acked" -gt 0 ]; then
	out=$("$HELPERS/ackwriter" check "$BM/after" "$acked" 2>&1) ||
		fail "A acknowledged $acked fsyncs after B's promotion that B does not have: $out"
fi

note "one leader, B; C follows it; the partition heals and A follows it too"
assert_eq "$(fo_get "$B" role)" leader "B's role"
fo_wait_converged 20 "$B" "$C"
treecmp "$BM" "$CM" || fail "C differs from B"
fo_proxy_mode ab pass
fo_proxy_mode ba pass
end=$(($(now_ms) + 5000))
until fo_check_erofs "$AM"; do
	[ "$(now_ms)" -lt "$end" ] || fail "the old leader A: its mount is not read-only: $FO_WHY"
	sleep 0.1
done
exit 0
