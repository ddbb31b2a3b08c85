#!/bin/bash
# torn_tail.sh -- a torn tail in the last log segment (part of a record, zero
# fill, a length field with too little after it) is cut at the next start:
# the leader comes up, status reports the bytes cut, the log verifies, and
# nothing stored is lost. Pure garbage at the tail is either cut the same way
# or refused with a clear error naming the position, losing nothing.
. "$(dirname "$0")/../integration/lib.sh" || exit 1

SEG() { python3 "$TOOLS_DIR/segtool.py" "$@"; }
D=$T/data
M=$T/mnt
start_leader "$D" "$M"
mkdir "$M/d"
for i in $(seq 1 20); do echo "file $i" >"$M/d/f$i"; done
setfattr -n user.x -v y "$M/d/f1"
stop_node "$M" "$D"

records=$(log_count "$D")
seg=$(SEG last "$D/log")
[ -n "$seg" ] || fail "no log segment in '$D/log'"
last_len=$(SEG records "$seg" | tail -n 1 | cut -d' ' -f3)

round=0
for kind in "prefix 1" "prefix 39" "prefix 100" "prefix $((last_len - 1))" "zeros 4096" "lenhdr 150" "lenhdr 3"; do
	round=$((round + 1))
	set -- $kind
	size=$(stat -c %s "$seg")
	SEG tail "$seg" "$1" "$2" || fail "segtool tail $kind failed"
	note "torn tail: $kind bytes"
	start_leader "$D" "$M"
	st=$(status_json "$D") || fail "status failed"
	check_eq "$(json_get "$st" torn_bytes_cut_at_start)" "$2" "torn bytes cut at start after a '$kind' tail"
	check_eq "$(stat -c %s "$seg")" "$size" "segment size after cutting a '$kind' tail"
	check_eq "$(json_get "$st" seq)" "$records" "last seq after cutting a '$kind' tail"
	grep -q "cut a torn log tail of $2 bytes" "$D/repfs.log" || soft_fail "repfs.log does not mention the cut of $2 bytes"
	check_eq "$(cat "$M/d/f20")" "file 20" "last file written before the torn tail"
	# the node goes on writing after the cut
	echo "after $round" >"$M/after$round"
	stop_node "$M" "$D"
	log_verify "$D"
	records=$(log_count "$D")
	check_eq "$(cat "$D/tree/after$round")" "after $round" "write after the cut"
done

# pure garbage: cut, or refused with a clear error naming the next seq
size=$(stat -c %s "$seg")
cp -a "$D/tree" "$T/tree.before"
SEG tail "$seg" random 300
mkdir -p "$M"
track_mount "$M"
if err=$("$REPFS" mount --key "$KEY" "$D" "$M" 2>&1); then
	wait_for 20 _running "$D"
	track_pid "$(daemon_pid "$D" | head -n 1)"
	st=$(status_json "$D")
	check_eq "$(json_get "$st" torn_bytes_cut_at_start)" 300 "garbage tail cut"
	stop_node "$M" "$D"
else
	note "garbage tail refused: $err"
	check_eq "$(echo "$err" | wc -l)" 1 "refusal of a garbage tail is one line"
	case "$err" in *"seq $((records + 1))"*) ;; *) soft_fail "refusal of a garbage tail does not name seq $((records + 1)): $err" ;; esac
	is_mounted "$M" && soft_fail "a refused mount is mounted"
	v=$("$REPFS" log "$D" --verify 2>&1) && soft_fail "log --verify passes with a garbage tail the mount refuses"
	case "$v" in *"seq $((records + 1))"*) ;; *) soft_fail "log --verify does not name seq $((records + 1)): $v" ;; esac
	treecmp "$T/tree.before" "$D/tree" || soft_fail "the refused mount changed the tree"
	truncate -s "$size" "$seg"
fi
log_verify "$D"
check_eq "$(log_count "$D")" "$records" "records after the garbage tail"

start_leader "$D" "$M"
compare3 "$M" "$D"
stop_node "$M" "$D"
exit 0
