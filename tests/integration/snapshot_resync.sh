#!/bin/bash
# snapshot_resync.sh -- G5 for a stale follower, and `repfs verify`.
#
# 1. A follower is stopped; the leader changes 1% of a large file and a few
#    small ones, then writes and deletes a scratch file big enough that, with
#    a small --log-retain, its log no longer holds what the follower lacks.
#    Restarted, the follower resyncs from a snapshot that sends only what
#    differs: the bytes it received (status) are at most twice the bytes
#    that changed. It ends identical to the leader.
# 2. A byte changed in the follower's tree/ behind its back: `repfs verify`
#    names the file and exits 1; `verify --repair` fixes it; `verify` then
#    exits 0. verify on a leader is a clear error (exit 2).
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1
LM=$T/lm F1M=$T/f1m

rl_leader L "$L" "$LM" --log-retain 1M --sync async
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
rl_wait_get 20 "$L" peers.F1.connected true

note "a large file and small ones, replicated"
head -c $((32 << 20)) /dev/urandom >"$LM/large" || fail "unable to write the large file"
mkdir "$LM/small"
for i in $(seq 1 50); do head -c 3000 /dev/urandom >"$LM/small/s$i"; done
rl_wait_converged 60 "$L" "$F1"
treecmp "$LM" "$F1M" || fail "not identical before the test"

note "the follower stops; 1% of the large file and 3 small files change; the log is cut"
fseq=$(rl_get "$F1" seq)
rl_stop "$F1" "$F1M"
dd if=/dev/urandom of="$LM/large" bs=4096 count=82 seek=2000 conv=notrunc 2>/dev/null || fail "dd into the large file failed"
changed=$((82 * 4096))
for i in 1 2 3; do
	head -c 3000 /dev/urandom >"$LM/small/s$i"
	changed=$((changed + 3000))
done
head -c $((70 << 20)) /dev/zero | tr '\0' x >"$LM/scratch" || fail "unable to write the scratch file"
rm "$LM/scratch"
sync "$LM"
wait_for 60 sh -c "[ \$('$REPFS' status '$L' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"log_first_seq\"])') -gt $fseq ]"

# the leader reads what its page cache lacks directly, in windows of whole
# 64 KiB blocks: cold pages, with the first 20 KiB of the block where the
# second window begins cached, so that windows cut out of line with the
# blocks (each cut block is sent whole, not compared) would show
rl_drop_tree_pages "$L"
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)	# no readahead: these 20 KiB only
os.pread(fd, 20480, (8 << 20) + (128 << 10))	# where a window starts (after the 128 KiB prefetched)' "$L/tree/large" || fail "reading the first 20 KiB of a block failed"

note "restarted, it resyncs"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$RL_PORT"
wait_for 60 sh -c "'$REPFS' status '$F1' --json | grep -q '\"completed\":1'"
rl_wait_converged 60 "$L" "$F1"
treecmp "$LM" "$F1M" || fail "the follower differs from the leader after the resync"
received=$(rl_py status "$F1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["snapshot"]["bytes_received"])')
note "changed $changed bytes; the resync received $received"
[ "$received" -le $((2 * changed)) ] || fail "the resync received $received bytes for $changed changed (more than twice)"
# exactly: the six 64 KiB blocks the dd touched and the three small files
[ "$received" -le $((6 * 65536 + 3 * 3000)) ] ||
	fail "the resync received $received bytes: more than the $((6 * 65536 + 3 * 3000)) of the blocks that changed"
grep -q "resyncs from a snapshot" "$L/repfs.log" || fail "the leader's log does not say why it sent a snapshot"

note "verify: identical, then a byte changed behind the follower's back"
out=$("$REPFS" verify "$F1M" 2>&1) || fail "verify of an identical follower exited $?: $out"
printf 'Z' | dd of="$F1/tree/small/s10" bs=1 seek=100 conv=notrunc 2>/dev/null
out=$("$REPFS" verify "$F1" 2>&1)
rc=$?
assert_eq "$rc" 1 "exit status of verify with a damaged file ($out)"
echo "$out" | grep -q "^differs /small/s10$" || fail "verify did not name the damaged file: $out"
[ "$(echo "$out" | grep -c '^differs\|^missing\|^extra')" = 1 ] || fail "verify named more than the damaged file: $out"
out=$("$REPFS" verify "$F1" --repair 2>&1) || fail "verify --repair exited $?: $out"
echo "$out" | grep -q "repaired" || fail "verify --repair did not say it repaired: $out"
out=$("$REPFS" verify "$F1" 2>&1) || fail "verify after the repair exited $?: $out"
cmp "$LM/small/s10" "$F1M/small/s10" || fail "the repaired file differs"
treecmp "$LM" "$F1M" || fail "not identical after the repair"

note "a verify in flight when the follower stops: it ends with an error, the daemon cleanly"
# the leader, stopped, accepts the verify's connection but never answers it:
# the verify waits in its handshake while the follower is unmounted
lpid=$(rl_pid "$L")
est_to() { # PORT: established TCP connections to PORT on this host
	awk -v p="$(printf '%04X' "$1")" 'NR > 1 { split($3, a, ":"); if (a[2] == p && $4 == "01") n++ } END { print n + 0 }' /proc/net/tcp
}
_verify_connected() { [ "$(est_to "$RL_PORT")" -ge 2 ]; }	# the follower's stream, and the verify's
kill -STOP "$lpid"
rl_bg "$REPFS" verify "$F1"
vpid=$RL_BG_PID
wait_for 10 _verify_connected
rl_stop "$F1" "$F1M"
kill -CONT "$lpid"
rl_wait_exit 30 "$vpid" "the verify did not end after its follower stopped"
[ "$RL_RC" != 0 ] || fail "a verify cut off by the follower's stop exited 0"
rl_restart "$F1" "$F1M" --peer "127.0.0.1:$RL_PORT"
rl_wait_converged 60 "$L" "$F1"

note "verify on the leader, and bad arguments"
out=$("$REPFS" verify "$L" 2>&1)
assert_eq "$?" 2 "exit status of verify on the leader ($out)"
echo "$out" | grep -q "run verify on a follower" || fail "unclear error for verify on the leader: $out"
out=$("$REPFS" verify 2>&1)
assert_eq "$?" 2 "exit status of verify without a target"
out=$("$REPFS" verify "$T/nothing" 2>&1)
assert_eq "$?" 2 "exit status of verify of a missing directory"
echo "$out" | grep -q "'$T/nothing'" || fail "the error does not name the target: $out"
exit 0
