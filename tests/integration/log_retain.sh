#!/bin/bash
# log_retain.sh -- a log over its --log-retain budget sheds its oldest
# segments. A checkpoint (whose syncfs() writes back every dirty page of the
# file system) is taken only when the excess is newer than the last one:
# segments that checkpoint already covers go without another.
. "$(dirname "$0")/lib.sh" || exit 1

D=$T/data
M=$T/mnt
# budget 128 MiB: trimmed once over 128 MiB + one 64 MiB segment. The 30 s
# checkpoints are moved out of the test's way.
REPFS_TEST_CHECKPOINT_INTERVAL_S=3600 start_leader "$D" "$M" --log-retain 128M

field() { json_get "$(status_json "$D")" "$1"; }

note "200 MiB written: the log goes over its budget; a checkpoint, then the oldest segments go"
dd if=/dev/zero of="$M/a" bs=1M count=200 conv=fsync status=none || fail "dd of 200 MiB failed"
_checkpointed() { [ "$(field checkpoint)" -gt 0 ] && [ "$(field log_first_seq)" -gt 1 ]; }
wait_for 20 _checkpointed
ckpt=$(field checkpoint)
first=$(field log_first_seq)
note "checkpoint $ckpt, log from seq $first, $(field log_bytes) bytes"

note "130 MiB more: the log goes over again, and sheds what checkpoint $ckpt covers without another"
dd if=/dev/zero of="$M/b" bs=1M count=130 conv=fsync status=none || fail "dd of 130 MiB failed"
_trimmed() { [ "$(field log_bytes)" -le $((192 << 20)) ] && [ "$(field log_first_seq)" -gt "$first" ]; }
wait_for 20 _trimmed
assert_eq "$(field checkpoint)" "$ckpt" "checkpoint after a trim the last checkpoint covered"
grep -q "log over its 134217728 byte budget" "$D/repfs.log" || fail "no line about the trim in the daemon's log"
note "log from seq $(field log_first_seq), $(field log_bytes) bytes; checkpoint still $ckpt"

note "the trimmed log still verifies, and a restart replays from the checkpoint"
stop_node "$M" "$D"
log_verify "$D"
start_leader "$D" "$M" --log-retain 128M
cmp -n $((130 << 20)) "$M/b" /dev/zero || fail "'b' differs after the restart"
[ "$(stat -c %s "$M/a")" = $((200 << 20)) ] || fail "'a' has the wrong size after the restart"
stop_node "$M" "$D"
exit 0
