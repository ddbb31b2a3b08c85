#!/bin/bash
# repl_opfuzz.sh -- a leader and a follower: the random calls of
# tests/helpers/opfuzz.c on the leader's mount (compared call by call with a
# native directory; three of them at once, each in its own directory), with
# a follower joined from the start, a second one joining by snapshot while
# they run and a third after them; once all have applied the leader's last
# seq, their trees and mounts must be the leader's, and F1's log its log.
# With the writeback cache and without (a fuzz campaign found a difference
# only without it).
. "$(dirname "$0")/repl_lib.sh"
both_writeback_modes

FUZZ=$HELPERS/opfuzz
[ -x "$FUZZ" ] || fail "helper '$FUZZ' is not built"
CALLS=${REPFS_FUZZ_CALLS:-5000}
SEEDS=${REPFS_FUZZ_SEEDS:-"9 10 11"}

L=$T/l F1=$T/f1 F2=$T/f2 F3=$T/f3
LM=$T/lm F1M=$T/f1m F2M=$T/f2m F3M=$T/f3m
rl_leader L "$L" "$LM"
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
rl_wait_get 20 "$L" peers.F1.connected true

# the seeds at once, each in its own directory: the daemon serves them together
pids=()
for seed in $SEEDS; do
	mkdir -m 755 "$T/native.$seed" "$LM/f.$seed" || fail "mkdir for seed $seed failed"
	"$FUZZ" -s "$seed" -n "$CALLS" -u 1000:1000 "$T/native.$seed" "$LM/f.$seed" >"$T/fuzz.$seed" 2>&1 &
	pids+=($!)
	track_pid $!
done
# a follower that joins while they run: its snapshot walks a tree that changes under it
rl_follower F3 "$F3" "$F3M" "$RL_PORT"
for i in "${!pids[@]}"; do
	wait "${pids[i]}" || soft_fail "opfuzz on the leader: $(tail -n 1 "$T/fuzz.$(echo $SEEDS | cut -d' ' -f$((i + 1)))")"
done
for seed in $SEEDS; do note "$(tail -n 1 "$T/fuzz.$seed")"; done

rl_follower F2 "$F2" "$F2M" "$RL_PORT"
rl_wait_converged 120 "$L" "$F1" "$F2" "$F3"
# F3's snapshot walked names that moved: the records it replayed may leave
# paths different until its check against the leader has repaired them
# (docs/snapshot.md): only its outcome counts
wait_for 120 sh -c "'$REPFS' status '$F3' --json | grep -Eq '\"check\":\"(none|identical|repaired|differs|failed)\"'"
case $(rl_status "$F3" | grep -o '"check": *"[a-z]*"') in
*none* | *identical* | *repaired*) ;;
*) soft_fail "F3's check after its snapshot: $(grep -i 'check' "$F3/repfs.log" | tail -n 2)" ;;
esac
rl_wait_converged 120 "$L" "$F1" "$F2" "$F3"
# contents, names, modes, owners, mtimes, xattrs, links; where holes are is
# each file system's (ext4 counts an unwritten extent with pages cached over
# it as data)
treecmp --max 25 --ignore holes "$L/tree" "$F1/tree" "$F2/tree" "$F3/tree" ||
	soft_fail "the followers' trees differ from the leader's"
treecmp --max 25 --ignore holes "$LM" "$F1M" "$F2M" "$F3M" || soft_fail "the followers' mounts differ from the leader's mount"
rl_log_prefix "$F1" "$L" equal
exit 0
