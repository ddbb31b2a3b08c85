#!/bin/bash
# failover_fencing.sh -- G8, G9, section 4 "Epochs and fencing" (issue 5,
# test 5): after a promotion, the old leader that comes back (even with
# --role leader) asks its peers first and is never writable: its mount is
# read-only from the start, and its status names the new leader. A follower
# of epoch N refuses a leader of an older epoch: pointed only at a stale
# leader (a copy of the old leader at epoch 1 that knows no peers), it
# refuses, says why in last_error and keeps its tree; with that stale leader
# first among its peers, it skips it and follows the real leader.
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --sync quorum=1
mkdir "$AM/d" && echo one >"$AM/d/one" || fail "writes on the leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records" 20) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"

note "A dies (nothing in flight); B is promoted"
fo_kill A
# a copy of the dead A: a leader of epoch 1, for the stale leader below
S=$T/s SM=$T/sm
cp -a "$A" "$S" || fail "unable to copy A's data directory"
rm -f "$S/lock" "$S/ctl.sock"
fo_promote B
[ "$FO_RC" = 0 ] || fail "repfs promote B failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in "'B' is the leader of epoch 2 "*) ;; *) fail "repfs promote B said: $FO_OUT" ;; esac
echo two >"$BM/d/two" || fail "a write on the new leader B failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$BM/records2" 10) || fail "fsync'd writes on B failed: $out"

note "B is down for a moment: A comes back (with --role leader) and learns of epoch 2 from C"
fo_stop B
fo_start A --role leader
opts=$(awk -v d="$(realpath "$AM")" '$5 == d { print $6 }' /proc/self/mountinfo)
case ",$opts," in *,ro,*) ;; *) fail "A's mount was made with options '$opts', not read-only" ;; esac
fo_erofs "$AM" "the old leader A as it comes back"
assert_eq "$(fo_get "$A" role)" follower "the old leader A's role"
grep -q "on '$(realpath "$AM")' as follower, epoch 2" "$A/repfs.log" || fail "A's log does not say it mounted as a follower"
grep -q "peer 'C' is at epoch 2 (ours is 1): another node was promoted; starting as a follower" "$A/repfs.log" ||
	fail "A's log does not say why it is a follower: $(tail -n 3 "$A/repfs.log")"
assert_eq "$(fo_get "$A" leader)" null "A's leader while B is down"
# A stepped down for epoch 2 (its state file and its log say so): its status
# must not show the epoch of its last record, 1, as if it knew nothing newer
check_eq "$(fo_get "$A" epoch)" 2 "the epoch in the status of A, which stepped down for epoch 2"
fo_erofs "$AM" "the old leader A while B is down"
note "B comes back (still the leader of epoch 2); A and C follow it"
fo_start B
assert_eq "$(fo_get "$B" role)" leader "B's role after its restart"
fo_wait_leader 20 C B
fo_wait_leader 20 A B
fo_wait_converged 20 "$B" "$A" "$C"
assert_eq "$(fo_get "$A" epoch)" 2 "A's epoch"
assert_eq "$(fo_get "$A" last_error)" "" "A's last_error"
treecmp "$BM" "$AM" "$CM" || fail "A differs from B after coming back"
rl_log_prefix "$A" "$B" equal
fo_erofs "$AM" "the old leader A following B"

note "a stale leader of epoch 1 (the copy of A, knowing no peers)"
for try in 1 2 3 4 5; do
	PS=$(rl_free_port)
	while [ "$PS" = "$FO_PORT_A" ] || [ "$PS" = "$FO_PORT_B" ] || [ "$PS" = "$FO_PORT_C" ]; do PS=$(rl_free_port); done
	rl_mount "$S" "$SM" --key "$KEY" --name S --listen "127.0.0.1:$PS" && break
	case $RL_MOUNT_ERR in *"unable to listen"*) [ "$try" -lt 5 ] ;; *) false ;; esac ||
		fail "start of the stale leader failed: $RL_MOUNT_ERR"
done
assert_eq "$(fo_get "$S" role)" leader "the stale copy's role"
assert_eq "$(fo_get "$S" epoch)" 1 "the stale copy's epoch"
echo stale >"$SM/stale-only" || fail "a write on the stale leader failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$SM/stale-records" 5) || fail "fsync'd writes on the stale leader failed: $out"

note "C (epoch 2), pointed only at the stale leader, refuses it"
c_seq=$(fo_get "$C" seq)
fo_stop C
rl_restart "$C" "$CM" --listen "127.0.0.1:$FO_PORT_C" --peer "127.0.0.1:$PS"
_c_error() { [ -n "$(fo_get "$C" last_error)" ]; }
wait_for 20 _c_error
err=$(fo_get "$C" last_error)
note "C: $err"
case $err in
*"127.0.0.1:$PS"*"refused"*"epoch 2"*) ;;
*) fail "C's last_error does not say it refused the stale leader for its epoch: $err" ;;
esac
# a while later: still nothing taken from it
grep -q "follower 'C' is at epoch 2, above this leader's" "$S/repfs.log" || fail "the stale leader's log names no refusal"
# hearing of epoch 2, the stale leader steps down at once (G9: a superseded node
# never goes on acting as leader) and its mount refuses changes from then on
_stale_stepped_down() { [ "$(fo_get "$S" role)" = follower ]; }
wait_for 20 _stale_stepped_down
assert_eq "$(fo_get "$S" epoch)" 2 "the stale copy's epoch after hearing of epoch 2"
fo_erofs "$SM" "the stale leader after it stepped down"
assert_eq "$(fo_get "$C" following)" false "C following the stale leader"
assert_eq "$(fo_get "$C" leader)" null "C's leader"
assert_eq "$(fo_get "$C" seq)" "$c_seq" "C's seq"
assert_eq "$(fo_get "$C" epoch)" 2 "C's epoch"
[ -e "$CM/stale-only" ] && fail "C took a file from the stale leader"
treecmp "$BM" "$CM" || fail "C's tree changed after meeting the stale leader"
assert_eq "$(fo_get "$S" peers.C.connected)" null "C among the stale leader's peers"

note "C with the stale leader first among its peers: it follows B"
fo_stop C
rl_restart "$C" "$CM" --listen "127.0.0.1:$FO_PORT_C" --peer "127.0.0.1:$PS" --peer "127.0.0.1:$FO_PORT_B"
fo_wait_leader 20 C B
echo three >"$BM/d/three" || fail "a write on B failed"
fo_wait_converged 20 "$B" "$A" "$C"
treecmp "$BM" "$AM" "$CM" || fail "the trees differ at the end"
[ -e "$CM/stale-only" ] && fail "C took a file from the stale leader"
rl_log_prefix "$C" "$B" equal
for d in "$A" "$B" "$C"; do log_verify "$d"; done
exit 0
