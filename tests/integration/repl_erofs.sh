#!/bin/bash
# repl_erofs.sh -- G2: a follower's mount is read-only. Every mutating call
# fails with EROFS and changes nothing (its tree, its log and the leader stay
# as they were); statvfs reports ST_RDONLY; the usual tools fail cleanly.
# With the leader stopped, the follower still serves reads: the tree it had
# (stale but consistent: exactly the leader's last state), still read-only.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F1=$T/f1
LM=$T/lm F1M=$T/f1m

rl_leader L "$L" "$LM"
rl_follower F1 "$F1" "$F1M" "$RL_PORT"
rl_wait_get 20 "$L" peers.F1.connected true

printf 'hello\n' >"$LM/f"
setfattr -n user.x -v 1 "$LM/f"
mkdir "$LM/d" "$LM/d2"
echo g >"$LM/d2/g"
ln -s f "$LM/s"
mkfifo "$LM/p"
head -c 200000 /dev/urandom >"$LM/big"
sync "$LM/f" || fail "fsync on the leader failed"
rl_wait_converged 20 "$L" "$F1"
treecmp "$LM" "$F1M" || fail "the follower differs from the leader before the test"

seq_l=$(rl_get "$L" seq)
seq_f=$(rl_get "$F1" seq)
records_f=$("$REPFS" log "$F1" | wc -l)

note "mutating calls on the follower"
out=$("$HELPERS/repl_erofs" "$F1M") || soft_fail "calls on a follower: $(echo "$out" | grep -v '^ok')"

note "the usual tools"
for cmd in "touch $F1M/new" "touch $F1M/f" "mkdir $F1M/nd" "rm -f $F1M/f" "rm -rf $F1M/d2" "mv $F1M/f $F1M/f2" \
	"ln $F1M/f $F1M/h" "ln -s f $F1M/l2" "chmod 600 $F1M/f" "chown 1:1 $F1M/f" "truncate -s 0 $F1M/f" \
	"setfattr -n user.z -v 1 $F1M/f" "setfattr -x user.x $F1M/f" "mkfifo $F1M/p2" "fallocate -l 1M $F1M/f" \
	"cp $F1M/big $F1M/big2" "dd if=/dev/zero of=$F1M/f bs=1 count=1 conv=notrunc status=none"; do
	err=$($cmd 2>&1) && fail "'$cmd' on the follower succeeded"
	case $err in
	*"Read-only file system"*) ;;
	*) fail "'$cmd' on the follower failed without EROFS: $err" ;;
	esac
done
if (echo x >"$F1M/f") 2>/dev/null; then fail "a shell redirection into a follower's file succeeded"; fi
if (echo x >>"$F1M/f") 2>/dev/null; then fail "a shell append to a follower's file succeeded"; fi
python3 -c 'import os,sys; sys.exit(0 if os.statvfs(sys.argv[1]).f_flag & os.ST_RDONLY else 1)' "$F1M" ||
	soft_fail "statvfs of the follower's mount lacks ST_RDONLY"
python3 -c 'import os,sys; sys.exit(0 if not os.statvfs(sys.argv[1]).f_flag & os.ST_RDONLY else 1)' "$LM" ||
	fail "statvfs of the leader's mount says ST_RDONLY"

note "nothing changed"
treecmp "$LM" "$F1M" || fail "the follower's mount changed"
treecmp "$LM" "$F1/tree" || fail "the follower's tree changed"
assert_eq "$(rl_get "$F1" seq)" "$seq_f" "the follower's seq after the refused calls"
assert_eq "$(rl_get "$F1" applied)" "$seq_f" "the follower's applied position after the refused calls"
assert_eq "$("$REPFS" log "$F1" | wc -l)" "$records_f" "records in the follower's log after the refused calls"
assert_eq "$(rl_get "$L" seq)" "$seq_l" "the leader's seq after the refused calls on the follower"

note "the leader stops: the follower still reads"
rl_stop "$L" "$LM"
rl_wait_get 20 "$F1" following false
treecmp "$L/tree" "$F1M" || fail "with the leader gone the follower's mount differs from the leader's last tree"
assert_eq "$(cat "$F1M/f")" hello "content read on the follower with the leader gone"
assert_eq "$(getfattr --absolute-names --only-values -n user.x "$F1M/f")" 1 "xattr read with the leader gone"
assert_eq "$(readlink "$F1M/s")" f "symlink read with the leader gone"
cmp -s "$L/tree/big" "$F1M/big" || fail "big file read with the leader gone differs"
ls -lR "$F1M" >/dev/null || fail "ls -lR of the follower with the leader gone failed"
out=$("$HELPERS/repl_erofs" "$F1M") || soft_fail "calls with the leader gone: $(echo "$out" | grep -v '^ok')"
assert_eq "$(rl_get "$F1" role)" follower "the follower's role with the leader gone"
[ -n "$(rl_get "$F1" last_error)" ] || fail "the follower's status shows no error with its leader gone"
treecmp "$L/tree" "$F1M" || fail "the follower changed with the leader gone"
rl_stop "$F1" "$F1M"
exit 0
