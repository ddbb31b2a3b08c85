#!/bin/bash
# corrupt_log.sh -- a flipped byte inside the log (not a torn tail) is found:
# `repfs log --verify` exits 1 naming the seq, `repfs log` and `repfs replay`
# refuse, the mount refuses with a clear one-line error, and nothing stored
# (tree, state, log) is changed by the attempts. Also: a flipped byte in the
# last record, one that was durable and checkpointed, must not be silently
# dropped as if it were a torn write (G6).
. "$(dirname "$0")/../integration/lib.sh" || exit 1

SEG() { python3 "$TOOLS_DIR/segtool.py" "$@"; }
D=$T/data
M=$T/mnt
start_leader "$D" "$M"
for i in $(seq 1 30); do echo "content $i" >"$M/f$i"; done
mkdir "$M/dir"
stop_node "$M" "$D"
log_verify "$D"
total=$(log_count "$D")
seg=$(SEG last "$D/log")

snapshot() { # DIR: copy of tree, state and log to compare with later
	rm -rf "$1"
	mkdir -p "$1"
	cp -a "$D/tree" "$1/tree"
	cp -a "$D/state" "$D/log" "$1/"
}
unchanged() { # DIR WHEN
	treecmp --ignore holes "$1/tree" "$D/tree" || soft_fail "the tree changed $2"
	cmp -s "$1/state" "$D/state" || soft_fail "the state file changed $2"
	diff -r "$1/log" "$D/log" >/dev/null || soft_fail "the log changed $2"
}
one_line_error() { # OUTPUT WHAT
	[ "$(printf '%s\n' "$1" | wc -l)" = 1 ] || soft_fail "$2: error is not one line: $1"
	case "$1" in repfs:\ [a-z]*) ;; *) soft_fail "$2: error does not read 'repfs: <lower case>': $1" ;; esac
}

# --- a byte in the middle of the log ---
mid=$((total / 2))
SEG flip "$seg" "$mid" >/dev/null || fail "unable to flip a byte of record $mid"
snapshot "$T/snap"

out=$("$REPFS" log "$D" --verify 2>&1) && fail "repfs log --verify passes a log with a flipped byte at seq $mid"
one_line_error "$out" "log --verify"
case "$out" in *"seq $mid "* | *"seq $mid)"* | *"seq $mid") ;; *) soft_fail "log --verify does not name seq $mid: $out" ;; esac
"$REPFS" log "$D" >/dev/null 2>&1 && soft_fail "repfs log exits 0 on a damaged log"
out=$("$REPFS" replay "$D" "$T/replayed" 2>&1) && soft_fail "repfs replay exits 0 on a damaged log"
one_line_error "$out" "replay"

mkdir -p "$M"
track_mount "$M"
out=$("$REPFS" mount --key "$KEY" "$D" "$M" 2>&1) && fail "mount of a DATADIR with a damaged log succeeded"
one_line_error "$out" "mount"
case "$out" in *"seq $mid"*) ;; *) soft_fail "mount error does not name seq $mid: $out" ;; esac
is_mounted "$M" && fail "a refused mount is mounted"
[ -z "$(daemon_pid "$D")" ] || fail "a refused mount left a process holding '$D/lock'"
unchanged "$T/snap" "after the refused mount, log and replay"
grep -q "$(basename "$T")" /proc/self/mountinfo && fail "something is mounted after the refused mount"

# --- repair: put the byte back and everything works again ---
SEG flip "$seg" "$mid" >/dev/null
log_verify "$D"
start_leader "$D" "$M"
for i in $(seq 1 30); do
	[ "$(cat "$M/f$i")" = "content $i" ] || fail "f$i lost after repairing the log"
done
echo last >"$M/last"
stop_node "$M" "$D"
total=$(log_count "$D")

# --- a flipped byte in the last record, which was durable and checkpointed ---
ckpt=$(sed -n 's/^checkpoint //p' "$D/state")
check_eq "$ckpt" "$total" "checkpoint after a clean stop"
SEG flip "$seg" "$total" >/dev/null
snapshot "$T/snap2"
out=$("$REPFS" log "$D" --verify 2>&1) && soft_fail "log --verify passes a flipped byte in the last record"
case "$out" in *"seq $total"*) ;; *) soft_fail "log --verify does not name seq $total: $out" ;; esac
if out=$("$REPFS" mount --key "$KEY" "$D" "$M" 2>&1); then
	wait_for 20 _running "$D"
	track_pid "$(daemon_pid "$D" | head -n 1)"
	st=$(status_json "$D")
	soft_fail "a flipped byte in checkpointed record $total was cut as a torn tail (torn_bytes_cut_at_start=$(json_get "$st" torn_bytes_cut_at_start), seq now $(json_get "$st" seq)); a durable record must be refused (G6), not dropped"
	compare3 "$M" "$D" "after the checkpointed last record was cut"
	stop_node "$M" "$D"
else
	one_line_error "$out" "mount with a flipped last record"
	case "$out" in *"seq $total"*) ;; *) soft_fail "mount error does not name seq $total: $out" ;; esac
	unchanged "$T/snap2" "after refusing a flipped last record"
fi
exit 0
