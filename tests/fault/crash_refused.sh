#!/bin/bash
# crash_refused.sh -- a leader logs a change before it applies it, and takes
# the record back if the tree refuses it (docs/decisions.md 1). Killed in
# between (REPFS_TEST_DIE_BEFORE_UNDO: SIGKILL right there), its log ends with
# a change that failed and was never answered. The restart must remove it:
# the log stays the tree's history (a replay of it into an empty directory
# gives the tree, and `repfs replay` does not stop at it), and the next change
# takes its seq. (Found by crash_opfuzz: a rename onto a directory not empty.)
. "$(dirname "$0")/../integration/lib.sh" || exit 1

D=$T/data
M=$T/mnt

_seq() { json_get "$(status_json "$D")" seq; }

# refused NAME CMD...: CMD (python) is refused by the tree while the hook kills the daemon
refused() {
	local name=$1 before pids
	shift
	note "$name"
	REPFS_TEST_DIE_BEFORE_UNDO=1 start_leader "$D" "$M"
	mkdir -p "$M/src" "$M/dst"
	echo keep >"$M/dst/keep"
	echo file >"$M/src/file"
	sync -f "$M/src/file"
	before=$(_seq)
	pids=$(daemon_pid "$D")
	out=$(python3 -c "$@" 2>&1)
	note "the program saw: $out"
	for p in $pids; do wait_for 20 _dead "$p"; done
	fusermount3 -uz "$M" 2>/dev/null || umount -l "$M"
	wait_for 20 _not_mounted "$M"
	"$REPFS" log "$D" | tail -n 1 | grep -q "$name" ||
		fail "the hook did not stop the daemon between the $name's append and its undo: $("$REPFS" log "$D" | tail -n 2)"

	start_leader "$D" "$M"
	check_eq "$(_seq)" "$before" "seq after the restart (the refused $name removed)"
	grep -q "is refused by the tree" "$D/repfs.log" || soft_fail "repfs.log does not say the $name was removed"
	"$REPFS" log "$D" | tail -n 1 | grep -q "$name" && soft_fail "the log still ends with the refused $name"
	check_eq "$(cat "$M/src/file" "$M/dst/keep" 2>&1)" "file
keep" "the files the refused $name would have moved"
	compare3 "$M" "$D" "after the restart"
	log_verify "$D"
	echo after >"$M/after"
	[ "$(_seq)" -gt "$before" ] || soft_fail "no change logged after the restart"
	compare3 "$M" "$D" "after a change that followed"
	stop_node "$M" "$D"
	rm -rf "$D"
}

refused rename "import os; os.rename('$M/src', '$M/dst')"
refused rmdir "import os; os.rmdir('$M/dst')"
exit 0
