#!/bin/bash
# verify_moves.sh -- `repfs verify` while directories move under it.
#
# A verify compares a digest of the leader's tree with one of the follower's,
# taken a moment later; a name that moved in between is compared exactly by
# its own metadata only, so what is below a directory found on both sides
# then was compared by neither pass (replication/verify.c, verify_settled()).
# REPFS_TEST_VERIFY_PAUSE stops each pass of the follower's verify between
# the two digests until the test removes its marker file, so the test moves
# a directory on the leader exactly there:
# 1. moved during the first pass only: the verify compares again and says
#    "identical" without a note (the follower's log says it compared again);
# 2. moved during both passes: "identical", with the note that N directories
#    moved while compared, exit 0;
# 3. the same with --repair: a resync, then a verify that finds nothing.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F=$T/f
LM=$T/lm FM=$T/fm
VP=$T/vpause
PASS=0

rl_leader L "$L" "$LM" --sync async
export REPFS_TEST_VERIFY_PAUSE=$VP
rl_follower F "$F" "$FM" "$RL_PORT"
unset REPFS_TEST_VERIFY_PAUSE
rl_wait_get 20 "$L" peers.F.connected true

mkdir -p "$LM/d0/sub/deep" || fail "mkdir on the leader failed"
for i in 1 2 3; do echo "file $i" >"$LM/d0/sub/deep/f$i"; done
echo top >"$LM/top"
DIR=d0
rl_wait_converged 20 "$L" "$F"
treecmp "$LM" "$FM" || fail "not identical before the test"

# pass [move]: waits for the verify's next pass to stop at the marker; with
# "move", renames the directory on the leader and waits until the follower
# has applied it; then lets the pass go on
_marker_or_done() { [ -e "$VP.$PASS" ] || ! pid_alive "$VPID"; }
pass() {
	PASS=$((PASS + 1))
	wait_for 30 _marker_or_done
	[ -e "$VP.$PASS" ] || fail "the verify ended before a pass it should have made: $(cat "$T/verify.out")"
	if [ "${1:-}" = move ]; then
		mv "$LM/$DIR" "$LM/d$PASS" || fail "mv of '$DIR' on the leader failed"
		DIR=d$PASS
		rl_wait_converged 20 "$L" "$F"
	fi
	rm -f "$VP.$PASS"
}

# verify_bg ARGS...: the verify in the background, its output in $T/verify.out
verify_bg() {
	rl_bg "$REPFS" verify "$F" "$@" >"$T/verify.out" 2>&1
	VPID=$RL_BG_PID
}

# verify_ok SECS WHAT: the verify ends within SECS with exit 0; its output in $out
verify_ok() {
	rl_wait_exit "$1" "$VPID" "the $2 did not end"
	out=$(cat "$T/verify.out")
	note "the $2 said: $(echo "$out" | tr '\n' ' ')"
	assert_eq "$RL_RC" 0 "exit status of the $2 ($out)"
}

note "1. a directory moves during the first pass only"
verify_bg
pass move
pass
verify_ok 60 verify
echo "$out" | grep -q "identical" || fail "the verify did not say identical: $out"
echo "$out" | grep -q "moved while compared" && fail "a verify whose second pass saw nothing move has a note: $out"
grep -q "verify: directories moved while compared; comparing again" "$F/repfs.log" ||
	fail "the follower did not compare again after a directory moved under its verify"

note "2. a directory moves during both passes"
verify_bg
pass move
pass move
verify_ok 60 verify
echo "$out" | grep -q "^(1 directories moved while compared: not compared below them)$" ||
	fail "the verify did not say a directory moved while compared: $out"
echo "$out" | grep -q "identical" || fail "the verify did not say identical: $out"

note "3. the same with --repair: a resync, then nothing to find"
verify_bg --repair
pass move
pass move
# after the resync, the verify (and maybe the check after the snapshot) looks again
end=$(($(now_ms) + 60000))
while pid_alive "$VPID"; do
	[ "$(now_ms)" -lt "$end" ] || fail "the verify --repair did not end"
	if [ -e "$VP.$((PASS + 1))" ]; then
		pass
	else
		sleep 0.02
	fi
done
verify_ok 5 "verify --repair"
echo "$out" | grep -q "repaired by a resync from the leader" || fail "the verify --repair did not resync: $out"
echo "$out" | tail -n 1 | grep -q "identical" || fail "the verify after the resync did not say identical: $out"

rl_wait_converged 20 "$L" "$F"
treecmp "$LM" "$FM" || fail "the follower differs from the leader at the end"
[ "$(cat "$FM/$DIR/sub/deep/f2")" = "file 2" ] || fail "the moved directory's file on the follower"
exit 0
