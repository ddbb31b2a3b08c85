#!/bin/bash
# failover_caps.sh -- G1, G9: what a leader answers from memory about its own
# new files does not outlive its lead. A leader answers the kernel's question
# "has this file a security.capability" (asked before each chown) for a file
# made through its mount without reading its tree (fs/fuse_ops.c,
# op_getxattr()). Once it has stepped down, a capability the new leader gives
# that file must reach its readers: here the file stays open on the old
# leader, so its mount keeps the same inode (without the writeback cache,
# nothing else replaces it), and the answer must come from the tree.
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --writeback off
echo cap >"$AM/capable" || fail "a write on the leader failed"
exec 8<"$AM/capable"
getfattr -n security.capability "$AM/capable" >/dev/null 2>&1 &&
	fail "a file just made on A has a security.capability"
fo_wait_converged 20 "$A" "$B" "$C"

note "switchover to B; B gives the file a capability"
fo_promote B
[ "$FO_RC" = 0 ] || fail "switchover: repfs promote B failed (exit $FO_RC): $FO_OUT"
fo_wait_leader 20 A B
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$BM/capable" ||
	fail "setting security.capability on B"
fo_wait_converged 20 "$B" "$A" "$C"
want=$(getfattr --absolute-names -n security.capability -e hex "$BM/capable" 2>&1 | tail -n +2)
assert_eq "$(getfattr --absolute-names -n security.capability -e hex "$AM/capable" 2>&1 | tail -n +2)" "$want" \
	"the capability B gave a file A made, read on A (the file still open there)"
exec 8<&-
treecmp "$BM" "$AM" "$CM" || fail "the trees differ"
exit 0
