#!/bin/bash
# failover_resync.sh -- G9 when the old leader's log cannot rewind: it wrote
# (async) what no follower has, then so much that --log-retain cut its log,
# then died. B is promoted and writes on. A comes back: it keeps its
# divergent writes under divergent/ as usual, but its log no longer reaches
# back to seq 1, so instead of rebuilding its tree from it, it resyncs from
# the new leader (issue 4's snapshot: only what differs travels) and ends
# identical to B; `repfs verify` agrees and `repfs divergent` lists the kept
# writes.
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --sync async --log-retain 1M
mkdir "$AM/d" && echo "shared v1" >"$AM/shared" || fail "writes on the leader failed"
head -c $((8 << 20)) /dev/urandom >"$AM/d/big" || fail "a write on the leader failed"
sync "$AM/shared"
fo_wait_converged 30 "$A" "$B" "$C"

note "B and C stop; A writes alone, then enough to cut its log"
fo_stop B
fo_stop C
MARK="divergent-marker-$RANDOM$RANDOM"
echo "$MARK A's version" >"$AM/shared" || fail "a write on A failed"
head -c $((70 << 20)) /dev/zero | tr '\0' y >"$AM/scratch" || fail "a write on A failed"
rm "$AM/scratch"
echo "$MARK new file" >"$AM/div-new" || fail "a write on A failed"
sync "$AM/shared"
wait_for 60 sh -c "[ \$('$REPFS' status '$A' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"log_first_seq\"])') -gt 1 ]"

note "A dies; B is promoted and writes on"
fo_kill A
fo_start B
fo_start C
fo_promote B
[ "$FO_RC" = 0 ] || fail "repfs promote B failed (exit $FO_RC): $FO_OUT"
echo "shared B's version" >"$BM/shared" || fail "a write on B failed"
fo_wait_leader 20 C B

note "A comes back: divergent writes kept, tree resynced from B"
fo_start A
fo_wait_get 60 "$A" divergent 1
wait_for 60 sh -c "'$REPFS' status '$A' --json | grep -q '\"completed\":1'"
fo_wait_converged 60 "$B" "$A" "$C"
treecmp "$BM" "$AM" || fail "the old leader differs from the new one after its resync"
out=$("$REPFS" verify "$AM" 2>&1) || fail "verify on the old leader: $out"
grep -q "unable to rewind from the log: resyncing" "$A/repfs.log" || fail "A's log does not say it resyncs"
assert_eq "$(cat "$AM/shared")" "shared B's version" "the shared file on A"
[ ! -e "$AM/div-new" ] || fail "A's divergent file is still in its tree"
out=$("$REPFS" divergent "$A" list 2>&1) || fail "repfs divergent list failed: $out"
entry=$(ls "$A/divergent")
grep -rq "$MARK new file" "$A/divergent/$entry/files" || fail "the divergent file is not kept: $(ls -R "$A/divergent")"
grep -q "div-new" "$A/divergent/$entry/records.txt" || fail "the divergent record is not listed"
received=$("$REPFS" status "$A" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["bytes_received"])') ||
	fail "no snapshot in A's status"
note "the resync received $received bytes (the tree holds $((8 << 20)) in one file)"
[ "$received" -lt $((1 << 20)) ] || fail "the resync sent $received bytes: more than what differs"
exit 0
