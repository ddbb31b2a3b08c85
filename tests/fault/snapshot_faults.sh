#!/bin/bash
# snapshot_faults.sh -- G5/G12: a snapshot under faults.
#
# 1. The leader is unreachable in the middle of a snapshot: a proxy cuts
#    every connection after 12 MB of the leader's traffic, and the tree is
#    30 MiB. A snapshot that started over each time would never finish; one
#    that resumes (only the blocks it still lacks travel) finishes in a few
#    connections, having received little more than the tree. The follower
#    ends identical to the leader.
# 2. The follower's disk is full (its DATADIR on a 16 MiB tmpfs, the tree is
#    30 MiB): the snapshot fails with a clear error in status,
#    the follower keeps serving its (empty) mount, and the leader is
#    unaffected: it keeps accepting and syncing writes.
. "$(dirname "$0")/../integration/repl_lib.sh"

L=$T/l F1=$T/f1 F2=$T/small/f2
LM=$T/lm F1M=$T/f1m F2M=$T/f2m

rl_leader L "$L" "$LM" --heartbeat 200
for i in $(seq 1 30); do head -c $((1 << 20)) /dev/urandom >"$LM/file$i"; done
mkdir "$LM/dir"
echo small >"$LM/dir/small"

note "1. a snapshot through a proxy that cuts every connection after 12 MB"
rl_proxy_mode cut 12000000 down
rl_proxy 0 "$RL_PORT"
rl_follower F1 "$F1" "$F1M" "$RL_PROXY_PORT" --leader-timeout 1000
wait_for 90 sh -c "'$REPFS' status '$F1' --json | grep -q '\"completed\":1'"
rl_proxy_mode pass
rl_wait_converged 60 "$L" "$F1"
treecmp "$LM" "$F1M" || fail "the follower differs from the leader after an interrupted snapshot"
attempts=$(grep -c "receiving a snapshot" "$F1/repfs.log")
interrupted=$(sed -n 's/.*snapshot interrupted after \([0-9]*\) bytes.*/\1/p' "$F1/repfs.log" | awk '{s+=$1} END {print s+0}')
last=$(sed -n 's/.*snapshot received: [0-9]* objects, \([0-9]*\) of.*/\1/p' "$F1/repfs.log" | tail -n 1)
total=$((interrupted + last))
note "$attempts connections; $total bytes received in all for a tree of $((30 << 20))"
[ "$attempts" -ge 3 ] || fail "the proxy did not interrupt the snapshot ($attempts attempts)"
[ "$total" -le $((40 << 20)) ] || fail "the snapshot started over instead of resuming: $total bytes received"

note "2. a follower whose disk is too small"
mkdir -p "$T/small"
mount -t tmpfs -o size=16m,mode=0755 tmpfs "$T/small" || skip "unable to mount a tmpfs (not permitted here)"
track_tmpfs "$T/small"
rl_follower F2 "$F2" "$F2M" "$RL_PORT"
wait_for 60 sh -c "'$REPFS' status '$F2' --json | grep -q 'No space left on device'"
st=$(rl_status "$F2")
echo "$st" | grep -Eq '"state": ?"failed"' || fail "status does not show the snapshot failed: $st"
# (its own log file is on the full disk too: status is where it says why)
echo "$st" | grep -q '"last_error": "snapshot from .* interrupted: No space left on device' ||
	fail "last_error does not say why the snapshot failed: $st"
ls "$F2M" >/dev/null || fail "the follower's mount stopped answering"
before=$(rl_get "$L" seq)
echo "still writable" >"$LM/after"
sync "$LM/after" || fail "fsync on the leader failed while a follower's disk is full"
[ "$(rl_get "$L" seq)" -gt "$before" ] || fail "the leader did not take the write"
rl_wait_converged 30 "$L" "$F1"
assert_eq "$(cat "$F1M/after")" "still writable" "the other follower still follows"
exit 0
