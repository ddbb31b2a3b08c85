#!/bin/bash
# failover_many.sh -- G1, G8 (issue 5, test 4): ten failovers in a row under
# continuous fsync'd writes, promoting B and C in turn. Odd rounds kill -9 the
# leader (the writer is paused first and the followers caught up, so that the
# old leader holds nothing the new one lacks: divergence is
# failover_divergent.sh's subject), even rounds are switchovers with the
# writer running. Each time the old leader is restarted (without --role) and
# must come back as a follower of the new leader. At the end every
# acknowledged record is on the leader, every node's tree equals the
# leader's, every log passes `repfs log --verify`, and `repfs verify` finds every
# follower identical to the leader.
. "$(dirname "$0")/failover_lib.sh"

ROUNDS=${FAILOVER_ROUNDS:-10}
fo_cluster --sync quorum=1
rl_bg "$HELPERS/failover_writer" -t 20000 "$AM/records" "$BM/records" "$CM/records" >"$T/writer.out" 2>&1
W=$RL_BG_PID
_acks() { [ "$(fo_acked "$T/writer.out")" -ge "$1" ]; }
_switches() { [ "$(grep -c '^switch ' "$T/writer.out")" -ge "$1" ]; }

L=A
t_start=$(now_ms)
for i in $(seq 1 "$ROUNDS"); do
	if [ $((i % 2)) = 1 ]; then X=B; else X=C; fi
	[ "$X" = "$L" ] && X=$([ "$L" = B ] && echo C || echo B)
	Y=$(echo A B C | tr ' ' '\n' | grep -v "^$L\$" | grep -v "^$X\$")
	LD=$(fo_data $L) XD=$(fo_data $X) YD=$(fo_data $Y)
	pid_alive "$W" || fail "round $i: the writer ended: $(grep -v '^ack' "$T/writer.out" | tail -n 3)"
	wait_for 20 _acks $(($(fo_acked "$T/writer.out") + 30))
	t0=$(now_ms)
	if [ $((i % 2)) = 1 ]; then
		kind=kill
		kill -STOP "$W"
		fo_wait_converged 20 "$LD" "$XD" "$YD"
		fo_kill $L
		fo_promote $X
		kill -CONT "$W"
	else
		kind=switchover
		fo_promote $X
	fi
	[ "$FO_RC" = 0 ] || fail "round $i ($kind): repfs promote $X failed (exit $FO_RC): $FO_OUT"
	case $FO_OUT in
	"'$X' is the leader of epoch $((i + 1)) "*) ;;
	*) fail "round $i ($kind): repfs promote $X said: $FO_OUT" ;;
	esac
	wait_for 20 _switches "$i"
	t1=$(now_ms)
	[ $kind = kill ] || fo_stop $L
	fo_start $L
	assert_eq "$(fo_get "$LD" role)" follower "round $i: the old leader $L's role after its restart"
	fo_wait_leader 20 $L $X
	fo_wait_leader 20 $Y $X
	note "round $i ($kind): $L -> $X; the writer moved after $((t1 - t0)) ms, pause $(awk '$1 == "switch" { p = $4 } END { print p }' "$T/writer.out") ms; $L follows $X again after $(($(now_ms) - t1)) ms"
	L=$X
done
wait_for 20 _acks $(($(fo_acked "$T/writer.out") + 30))
kill -TERM "$W"
rl_wait_exit 20 "$W" "the writer did not stop"
[ "$RL_RC" = 0 ] || fail "the writer failed (exit $RL_RC): $(grep -v '^ack' "$T/writer.out" | tail -n 3)"
acked=$(fo_acked "$T/writer.out")
echo "$ROUNDS failovers in $(($(now_ms) - t_start)) ms; $acked records acknowledged; writer pauses in ms (in the kill rounds 1, 3, ... they include the time the writer was held stopped): $(awk '$1 == "switch" { printf "%.0f ", $4 }' "$T/writer.out")"

LD=$(fo_data $L) LM=$(fo_mnt $L)
assert_eq "$(fo_get "$LD" role)" leader "the last leader $L's role"
assert_eq "$(fo_get "$LD" epoch)" $((ROUNDS + 1)) "the last leader $L's epoch"
out=$("$HELPERS/ackwriter" check "$LM/records" "$acked") || fail "acknowledged records missing on $L: $out"
note "$L: $out"
others=$(echo A B C | tr ' ' '\n' | grep -v "^$L\$" | tr '\n' ' ')
fo_wait_converged 30 "$LD" $(for n in $others; do fo_data $n; done)
treecmp "$LM" $(for n in $others; do fo_mnt $n; done) || fail "the trees differ from the leader $L's"
for n in $others; do
	rl_log_prefix "$(fo_data $n)" "$LD" equal
	fo_erofs "$(fo_mnt $n)" "follower $n at the end"
	assert_eq "$(fo_get "$(fo_data $n)" epoch)" $((ROUNDS + 1)) "$n's epoch at the end"
done
for n in A B C; do log_verify "$(fo_data $n)"; done
# repfs verify on every follower: its tree against the leader's, at one position
for n in $others; do
	out=$("$REPFS" verify "$(fo_mnt $n)" 2>&1) || fail "repfs verify on $n (exit $?): $out"
done
out=$("$REPFS" verify "$LM" 2>&1)
assert_eq "$?" 2 "repfs verify on the leader $L itself ($out)"
exit 0
