#!/bin/bash
# opfuzz.sh -- the same random calls on a native directory and on a leader's
# mount, compared call by call (tests/helpers/opfuzz.c: results, errnos,
# bytes read, stats); then the two trees' contents, and mount == tree ==
# replay of the log, also after a restart.
. "$(dirname "$0")/lib.sh" || exit 1
both_writeback_modes

FUZZ=$HELPERS/opfuzz
[ -x "$FUZZ" ] || fail "helper '$FUZZ' is not built"
CALLS=${REPFS_FUZZ_CALLS:-5000}
# other seeds without the writeback cache: more cases for the same time
if [ "${REPFS_TEST_WRITEBACK:-on}" = off ]; then SEEDS=${REPFS_FUZZ_SEEDS:-"5 6 7 8"}; else SEEDS=${REPFS_FUZZ_SEEDS:-"1 2 3 4"}; fi

# fallocate'd (unwritten) extents count as data where pages are cached over
# them, which differs between the tree and a replay: contents are compared
COMPARE3_IGNORE=holes
D=$T/data
M=$T/mnt
start_leader "$D" "$M"
for seed in $SEEDS; do
	mkdir -m 755 "$T/native.$seed" "$M/f.$seed" || fail "mkdir for seed $seed failed"
	out=$("$FUZZ" -s "$seed" -n "$CALLS" -u 1000:1000 "$T/native.$seed" "$M/f.$seed" 2>&1) ||
		fail "opfuzz -s $seed -n $CALLS: $out"
	note "$out"
	# times are the mount's own where a call did not set them; holes are each file system's choice
	treecmp --max 25 --ignore mtime,holes "$T/native.$seed" "$M/f.$seed" ||
		soft_fail "seed $seed: the native tree and the mount's differ after the calls"
done
compare3 "$M" "$D"
log_verify "$D"

note "restart"
stop_node "$M" "$D"
start_leader "$D" "$M"
for seed in $SEEDS; do
	treecmp --max 25 --ignore mtime,holes "$T/native.$seed" "$M/f.$seed" ||
		soft_fail "seed $seed: the mount differs from the native tree after a restart"
done
compare3 "$M" "$D" "after a restart"
stop_node "$M" "$D"
exit 0
