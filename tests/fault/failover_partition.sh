#!/bin/bash
# failover_partition.sh -- G9, G10, section 4 "Epochs and fencing": a leader
# that was cut off (not dead) while another node was promoted must not go on
# as a second writable leader once it can reach the others again: it learns
# of the higher epoch, steps down (its mount turns read-only), follows the new
# leader and converges (it wrote nothing meanwhile, so nothing diverged).
#
# B and C reach A only through tcpproxy; "cut" partitions A away from them.
. "$(dirname "$0")/../integration/failover_lib.sh"

fo_ports
rl_proxy 0 "$FO_PORT_A"
FO_VIA_A=$RL_PROXY_PORT FO_PINNED=A
fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"

note "partition: A is cut off from B and C"
rl_proxy_mode cut 0
fo_wait_get 10 "$B" following false
fo_wait_get 10 "$C" following false
fo_promote B
[ "$FO_RC" = 0 ] || fail "repfs promote B (A cut off) failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in "'B' is the leader of epoch 2 "*) ;; *) fail "repfs promote B said: $FO_OUT" ;; esac
fo_wait_leader 20 C B
echo two >"$BM/d/two" || fail "a write on the new leader B failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$BM/records2" 10) || fail "fsync'd writes on B failed: $out"
note "during the partition A says: role $(fo_get "$A" role), epoch $(fo_get "$A" epoch)"

note "the partition heals: A must step down and follow B"
t0=$(now_ms)
rl_proxy_mode pass
_a_stepped_down() { [ "$(fo_get "$A" role)" = follower ]; }
end=$(($(now_ms) + 15000))
until _a_stepped_down; do
	if [ "$(now_ms)" -ge "$end" ]; then
		w=writable
		touch "$AM/still-writable" 2>/dev/null || w="not writable"
		fail "15 s after the partition healed, the old leader A is still a leader of epoch \
$(fo_get "$A" epoch) next to B (epoch $(fo_get "$B" epoch)), its mount $w: two leaders"
	fi
	sleep 0.1
done
note "A stepped down $(($(now_ms) - t0)) ms after the partition healed"
fo_erofs "$AM" "the old leader A after the partition"
fo_wait_leader 20 A B
fo_wait_converged 20 "$B" "$A" "$C"
treecmp "$BM" "$AM" "$CM" || fail "the trees differ after the partition healed"
rl_log_prefix "$A" "$B" equal
for d in "$A" "$B" "$C"; do log_verify "$d"; done
exit 0
