#!/bin/bash
# full_disk.sh -- G12 with a full disk: DATADIR on a 16 MiB tmpfs; a writer
# appends fsync'd records until the disk is full. The writer must get ENOSPC
# (EIO is not what the contract promises), the daemon must stay up and keep
# serving reads, everything acknowledged must survive a restart (first on the
# still-full disk, then after space is freed), and the log must verify.
# Then large writes on another full disk: each is logged in pieces whose
# tree half runs beside the next piece's append (fs/node.c); one that the
# disk stops part way is short or fails with ENOSPC, and leaves the tree
# exactly what the log holds.
. "$(dirname "$0")/../integration/lib.sh" || exit 1

W=$HELPERS/ackwriter
[ -x "$W" ] || fail "helper '$W' is not built"
SMALL=$T/small
mkdir -p "$SMALL"
mount -t tmpfs -o size=16m,mode=0755 tmpfs "$SMALL" || skip "unable to mount a tmpfs (not permitted here)"
track_tmpfs "$SMALL"
D=$SMALL/data
M=$T/mnt
start_leader "$D" "$M"

echo "written before the disk filled up" >"$M/precious"
sync -f "$M/precious" 2>/dev/null
mkdir "$M/dir"

"$W" write "$M/filler" 0 65536 >"$T/acks" 2>&1
rc=$?
acked=$(sed -n 's/^ack //p' "$T/acks" | tail -n 1)
err=$(grep '^error' "$T/acks")
note "writer: $acked records of 64 KiB acknowledged, then: $err"
[ "$rc" = 1 ] || fail "the writer did not stop with an error (rc $rc): $(tail -n 2 "$T/acks")"
[ -n "$acked" ] || fail "nothing was acknowledged before the disk was full"
case "$err" in
*" ENOSPC: "*) ;;
*" EIO: "*) soft_fail "the writer got EIO, not ENOSPC, on a full disk: $err" ;;
*) soft_fail "the writer got an unexpected error on a full disk: $err" ;;
esac

# still up: reads work, status answers, small changes fail cleanly or work
pid_alive "$LEADER_PID" || fail "the daemon died when the disk filled up"
check_eq "$(cat "$M/precious")" "written before the disk filled up" "read on a full disk"
st=$(status_json "$D") || fail "status does not answer on a full disk"
note "status on a full disk: faults $(json_get "$st" faults)"
out=$(mkdir "$M/dir/more" 2>&1) || case "$out" in *"No space left"*) ;; *) soft_fail "mkdir on a full disk: $out (want success or ENOSPC)" ;; esac
out=$("$W" check "$M/filler" "$acked" 65536) || soft_fail "acknowledged data unreadable on the full disk: $out"
case "$out" in *unacknowledged*) soft_fail "after the failed fsync the mount shows data that was never written: $(echo "$out" | head -n 1)" ;; esac
check_eq "$(stat -c %s "$M/filler")" "$(stat -c %s "$D/tree/filler")" "size of the file through the mount vs in the tree after ENOSPC"

# remove the partial file through the mount: frees tree space (or fails with ENOSPC)
out=$(rm -f "$M/filler.none" 2>&1) || soft_fail "rm of nothing failed: $out"
stop_node "$M" "$D"

# restart while still full: comes up, or refuses with one clear line
out=$("$REPFS" mount --key "$KEY" "$D" "$M" 2>&1)
if [ $? = 0 ]; then
	wait_for 20 _running "$D"
	track_pid "$(daemon_pid "$D" | head -n 1)"
	out=$("$W" check "$M/filler" "$acked" 65536) || soft_fail "acknowledged data lost after a restart on a full disk: $out"
	stop_node "$M" "$D"
else
	note "restart on a full disk refused: $out"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || soft_fail "refusal on a full disk is not one line: $out"
	case "$out" in "repfs: "*) ;; *) soft_fail "refusal on a full disk: unclear: $out" ;; esac
fi

# space freed: everything acknowledged is there, the log verifies
mount -o remount,size=64m "$SMALL" || fail "unable to grow the tmpfs"
log_verify "$D"
start_leader "$D" "$M"
out=$("$W" check "$M/filler" "$acked" 65536) || soft_fail "acknowledged data lost: $out"
check_eq "$(cat "$M/precious")" "written before the disk filled up" "file written before the disk filled up"
echo "after" >"$M/after" || soft_fail "a write after space was freed failed"
st=$(status_json "$D")
check_eq "$(json_get "$st" faults)" "[]" "faults after space was freed and a restart"
compare3 "$M" "$D"
stop_node "$M" "$D"

SMALL2=$T/small2
mkdir -p "$SMALL2"
mount -t tmpfs -o size=24m,mode=0755 tmpfs "$SMALL2" || fail "unable to mount a second tmpfs"
track_tmpfs "$SMALL2"
D2=$SMALL2/data
start_leader "$D2" "$M"
for i in 1 2 3; do
	out=$(dd if=/dev/urandom of="$M/big$i" bs=1M count=40 2>&1) && fail "40 MiB written onto a 24 MiB disk"
	case "$out" in *"No space left"*) ;; *) soft_fail "1 MiB writes onto a full disk: $out (want ENOSPC)" ;; esac
	check_eq "$(stat -c %s "$M/big$i")" "$(stat -c %s "$D2/tree/big$i")" \
		"size of big$i through the mount vs in the tree after a full disk stopped it"
	note "big$i: $(stat -c %s "$M/big$i") bytes written before the disk was full"
	rm -f "$M/big$i"
done
pid_alive "$LEADER_PID" || fail "the daemon died when large writes filled the disk"
stop_node "$M" "$D2"
mount -o remount,size=128m "$SMALL2" || fail "unable to grow the second tmpfs"
log_verify "$D2"
start_leader "$D2" "$M"
compare3 "$M" "$D2" "after large writes hit a full disk"
stop_node "$M" "$D2"
exit 0
