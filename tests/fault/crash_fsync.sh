#!/bin/bash
# crash_fsync.sh -- G3 on one node: every record whose fsync() returned 0 before
# the daemon was killed with SIGKILL is there after a restart; the log
# verifies and mount == tree == replay. Three rounds, killed at different points,
# with the kernel's writeback cache (the default), where the fsync'd data
# reaches the daemon only at the fsync; then the same with --writeback off.
. "$(dirname "$0")/../integration/lib.sh" || exit 1

W=$HELPERS/ackwriter
[ -x "$W" ] || fail "helper '$W' is not built"
M=$T/mnt
acks_at_least() { [ "$(grep -c '^ack' "$1" 2>/dev/null)" -ge "$2" ]; }
wb_on() { [ "$(json_get "$(status_json "$1")" writeback_cache)" = True ]; }
wb_off() { [ "$(json_get "$(status_json "$1")" writeback_cache)" = False ]; }

# crash_rounds DATA on|off: with --writeback on or off
crash_rounds() {
D=$1
start_leader "$D" "$M" --writeback "$2"
wait_for 10 "wb_$2" "$D"
echo "before the crashes" >"$M/base"
sync -f "$M/base" 2>/dev/null

for round in 1 2 3; do
	want=$((round * 120))
	"$W" write "$M/acked$round" 0 100 >"$T/acks$round" 2>&1 &
	wpid=$!
	track_pid "$wpid"
	wait_for 60 acks_at_least "$T/acks$round" "$want"
	note "round $round: killing the daemon after $(grep -c '^ack' "$T/acks$round") acks"
	kill_node "$D" "$M"
	wait_for 20 _dead "$wpid"
	wait "$wpid" 2>/dev/null
	acked=$(sed -n 's/^ack //p' "$T/acks$round" | tail -n 1)
	grep -q '^error' "$T/acks$round" || soft_fail "round $round: the writer saw no error when the daemon died"
	note "round $round: writer stopped with: $(grep '^error' "$T/acks$round")"
	log_verify "$D"
	start_leader "$D" "$M" --writeback "$2"
	st=$(status_json "$D")
	note "round $round: restarted, replayed $(json_get "$st" replayed_at_start) records, cut $(json_get "$st" torn_bytes_cut_at_start) bytes"
	out=$("$W" check "$M/acked$round" "$acked" 100) || soft_fail "round $round: acknowledged data lost: $out"
	out=$("$W" check "$D/tree/acked$round" "$acked" 100) || soft_fail "round $round: acknowledged data not in the tree: $out"
	for r in $(seq 1 $((round - 1))); do
		a=$(sed -n 's/^ack //p' "$T/acks$r" | tail -n 1)
		out=$("$W" check "$M/acked$r" "$a" 100) || soft_fail "round $round: data of round $r lost: $out"
	done
	check_eq "$(cat "$M/base")" "before the crashes" "file written before the crashes"
	compare3 "$M" "$D" "after crash $round"
done
stop_node "$M" "$D"
log_verify "$D"
}

crash_rounds "$T/data" on
crash_rounds "$T/data-nowb" off
exit 0
