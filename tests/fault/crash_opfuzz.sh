#!/bin/bash
# crash_opfuzz.sh -- SIGKILL of the daemon while opfuzz's random calls run
# (tests/helpers/opfuzz.c: every kind of change, through descriptors kept
# open across renames and unlinks, as root and as another user). After each
# restart the tree must be what the log says (mount == tree == replay), the
# log must verify, and the node keeps working; three rounds, one data dir,
# with the writeback cache and without.
. "$(dirname "$0")/../integration/lib.sh" || exit 1
both_writeback_modes

FUZZ=$HELPERS/opfuzz
[ -x "$FUZZ" ] || fail "helper '$FUZZ' is not built"
# fallocate'd (unwritten) extents count as data where pages are cached over them
COMPARE3_IGNORE=holes
D=$T/data
M=$T/mnt
start_leader "$D" "$M"

for round in 1 2 3; do
	mkdir -m 755 "$T/native.$round" "$M/f.$round" || fail "mkdir for round $round failed"
	seq0=$(json_get "$(status_json "$D")" seq)
	# calls enough to outlast the kill; it ends when the mount goes (a difference: ENOTCONN)
	"$FUZZ" -s $((${REPFS_FUZZ_SEED_BASE:-100} + round)) -n 10000000 -u 1000:1000 "$T/native.$round" "$M/f.$round" >"$T/fuzz$round" 2>&1 &
	fpid=$!
	track_pid "$fpid"
	wait_for 30 seq_at_least "$D" $((seq0 + 150 * round))
	note "round $round: killing the daemon at seq $(json_get "$(status_json "$D")" seq)"
	kill_node "$D" "$M"
	wait_for 30 _dead "$fpid"
	wait "$fpid" 2>/dev/null
	note "round $round: opfuzz: $(tail -n 1 "$T/fuzz$round")"
	log_verify "$D"
	start_leader "$D" "$M"
	st=$(status_json "$D")
	note "round $round: restarted: replayed $(json_get "$st" replayed_at_start), cut $(json_get "$st" torn_bytes_cut_at_start) bytes, seq $(json_get "$st" seq)"
	check_eq "$(json_get "$st" applied)" "$(json_get "$st" seq)" "applied = seq after crash recovery"
	compare3 "$M" "$D" "after crash $round"
	echo "after crash $round" >"$M/after$round"
	check_eq "$(cat "$M/after$round")" "after crash $round" "a write after the restart"
done
stop_node "$M" "$D"
log_verify "$D"
replay "$D" "$T/final"
treecmp --max 25 --ignore holes "$D/tree" "$T/final" || soft_fail "tree and replay differ after the final clean stop"
exit 0
