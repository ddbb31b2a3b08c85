#!/bin/bash
# crash_busy.sh -- SIGKILL of the daemon in the middle of a busy multi-process
# workload (writes, truncates, renames, links, unlinks, xattrs, ...). After a
# restart, crash recovery must leave the tree exactly what the log says:
# tree == replay, the log verifies, and the mount shows the tree. Then the
# node keeps working, and survives a second crash the same way.
. "$(dirname "$0")/../integration/lib.sh" || exit 1

B=$HELPERS/busywriter
[ -x "$B" ] || fail "helper '$B' is not built"
D=$T/data
M=$T/mnt
started() { grep -q '^started' "$1" 2>/dev/null; }
start_leader "$D" "$M"
mkdir "$M/work"

for round in 1 2; do
	seq0=$(json_get "$(status_json "$D")" seq)
	"$B" "$M/work" 4 4 "$round" >"$T/busy$round" 2>&1 &
	bpid=$!
	track_pid "$bpid"
	wait_for 20 started "$T/busy$round"
	wait_for 20 seq_at_least "$D" $((seq0 + 300))
	note "round $round: killing the daemon at seq $(json_get "$(status_json "$D")" seq)"
	kill_node "$D" "$M"
	wait_for 30 _dead "$bpid"
	wait "$bpid" 2>/dev/null
	note "round $round: $(tr '\n' ';' <"$T/busy$round")"
	log_verify "$D"
	# the log alone, replayed, must give what crash recovery gives
	start_leader "$D" "$M"
	st=$(status_json "$D")
	note "round $round: restarted: replayed $(json_get "$st" replayed_at_start), cut $(json_get "$st" torn_bytes_cut_at_start) bytes, seq $(json_get "$st" seq)"
	check_eq "$(json_get "$st" applied)" "$(json_get "$st" seq)" "applied = seq after crash recovery"
	# the applied hint (DATADIR/applied, docs/crash-recovery.md) survived the kill: recovery
	# replays at most the write in flight (up to 4 pieces), not everything since the checkpoint
	[ "$(json_get "$st" replayed_at_start)" -le 5 ] ||
		soft_fail "round $round: recovery replayed $(json_get "$st" replayed_at_start) records: the applied hint was lost"
	compare3 "$M" "$D" "after crash $round"
	# and it keeps working
	echo "after crash $round" >"$M/work/after$round"
	check_eq "$(cat "$M/work/after$round")" "after crash $round" "a write after the restart"
done
stop_node "$M" "$D"
log_verify "$D"
replay "$D" "$T/final"
treecmp --max 25 "$D/tree" "$T/final" || soft_fail "tree and replay differ after the final clean stop"
exit 0
