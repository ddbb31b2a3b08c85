#!/bin/bash
# snapshot_moves.sh -- G5 when names move between directories during a
# snapshot. The walk lists each directory once, so a file or a whole
# directory moved, while it runs, out of a directory not listed yet into one
# listed already is in no listing, or lands in the wrong place after the
# replay (docs/snapshot.md §3). A follower whose snapshot replayed such moves
# checks itself against the leader once installed and repairs what differs
# by a resync. Here the walk is slowed down (REPFS_TEST_SNAP_PAUSE_MS after
# each directory) while a mover shuffles files and subdirectories among 40
# directories; once the mover stops, the follower must end identical to the
# leader without anyone running `repfs verify --repair`.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F=$T/f LM=$T/lm FM=$T/fm

REPFS_TEST_SNAP_PAUSE_MS=60 rl_leader L "$L" "$LM"

note "40 directories of files and a subdirectory each"
for d in $(seq -w 0 39); do
	mkdir -p "$LM/d$d/s$d"
	for f in $(seq 1 5); do
		echo "file $d/$f" >"$LM/d$d/f$d-$f"
	done
	echo "deep $d" >"$LM/d$d/s$d/deep"
done

note "a mover shuffles files and subdirectories while a new follower's snapshot walks the tree"
cat >"$T/mover.sh" <<'MOVER'
#!/bin/bash
# mover.sh ROOT SECONDS: moves the first entry of a random directory into another
root=$1 end=$(($(date +%s) + $2))
RANDOM=7
while [ "$(date +%s)" -lt "$end" ]; do
	src=$(printf "d%02d" $((RANDOM % 40))) dst=$(printf "d%02d" $((RANDOM % 40)))
	for x in "$root/$src"/*; do
		[ -e "$x" ] || continue
		[ "$src" = "$dst" ] || mv "$x" "$root/$dst/" 2>/dev/null
		break
	done
done
MOVER
rl_bg bash "$T/mover.sh" "$LM" 5
MOVER=$RL_BG_PID
rl_follower F "$F" "$FM" "$RL_PORT"
wait_for 60 sh -c "'$REPFS' status '$F' --json | grep -q '\"completed\":1'"
rl_wait_exit 30 "$MOVER" "the mover"
rl_wait_converged 60 "$L" "$F"

note "the follower checks itself against the leader and repairs what the walk missed"
wait_for 120 sh -c "'$REPFS' status '$F' --json | grep -Eq '\"check\":\"(identical|repaired|differs|failed)\"'"
check=$(rl_status "$F" | grep -o '"check": *"[a-z]*"')
echo "$check" | grep -Eq '"(identical|repaired)"' || fail "the check after the snapshot: $check ($(grep -i 'check' "$F/repfs.log" | tail -n 2))"
grep -q "checking it against the leader" "$F/repfs.log" || fail "the follower's log does not say it checked the snapshot"
rl_wait_converged 60 "$L" "$F"
treecmp "$LM" "$FM" || fail "the follower's mount differs from the leader's after its check"
out=$("$REPFS" verify "$FM" 2>&1) || fail "verify after the check: $out"
echo "$out" | grep -q identical || fail "verify after the check did not say identical: $out"
[ "$(find "$FM" -type f | wc -l)" = $((40 * 6)) ] || fail "the follower has $(find "$FM" -type f | wc -l) files, not $((40 * 6))"
"$REPFS" status "$F" | grep -Eq "checked against the leader: (identical|repaired)" || fail "status does not show the check"
grep -E "checked against the leader|paths differ" "$F/repfs.log" >&2
log_verify "$F"
