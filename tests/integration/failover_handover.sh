#!/bin/bash
# failover_handover.sh -- the two ways a switchover's hand-over can fall
# short (replication/promote.c, repl_promote()):
# * the leader cannot step down (its state file cannot be saved: its data
#   directory is made immutable here): `repfs promote` refuses, A leads on
#   and takes writes, B stays a follower;
# * the candidate does not get the old leader's last records within 5 s (B
#   holds its stream here, REPFS_TEST_FOLLOW_HOLD): with --force B leads
#   after 5 s, and says which seqs it does not have instead of "nothing
#   lost".
. "$(dirname "$0")/failover_lib.sh"

export REPFS_TEST_FOLLOW_HOLD=1
fo_cluster
echo base >"$AM/base" || fail "a write on the leader failed"
fo_wait_converged 20 "$A" "$B" "$C"

note "A cannot save its state file: the switchover is refused"
chattr +i "$A" || skip "chattr +i is not supported under $T"
fo_promote B
chattr -i "$A"
[ "$FO_RC" != 0 ] || fail "a switchover from a leader that could not step down succeeded: $FO_OUT"
case $FO_OUT in
*"the leader at '127.0.0.1:$FO_PORT_A' did not step down (see its log); not promoting"*) ;;
*) fail "a switchover from a leader that could not step down said: $FO_OUT" ;;
esac
assert_eq "$(fo_get "$A" role)" leader "A's role after a refused switchover"
assert_eq "$(fo_get "$B" role)" follower "B's role after a refused switchover"
echo still >"$AM/still" || fail "a write on A after the refused switchover failed"

note "B holds its stream: a forced switchover names the seqs left behind"
fo_wait_converged 20 "$A" "$B" "$C"
b_seq=$(fo_get "$B" seq)
touch "$B/test-follow-hold"
for i in 1 2 3; do echo "$i" >"$AM/held-$i" || fail "a write on the leader failed"; done
a_seq=$(fo_get "$A" seq)
[ "$a_seq" -gt "$b_seq" ] || fail "A's seq $a_seq is not beyond B's $b_seq"
fo_promote B --force
rm -f "$B/test-follow-hold"
[ "$FO_RC" = 0 ] || fail "a forced switchover failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in
"'B' is the leader of epoch 2 from seq "*"(switchover, forced: seq $((b_seq + 1))-$a_seq of the old leader's log are not here)"*) ;;
*) fail "a forced switchover short of seq $((b_seq + 1))-$a_seq said: $FO_OUT" ;;
esac
assert_eq "$(fo_get "$B" role)" leader "B's role after the forced switchover"
assert_eq "$(fo_get "$A" role)" follower "A's role after the forced switchover"
[ ! -e "$BM/held-1" ] || fail "B has a file it was held from receiving"
echo after >"$BM/after" || fail "a write on the new leader B failed"
exit 0
