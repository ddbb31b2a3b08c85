#!/bin/bash
# posix_edge.sh -- POSIX edge cases on a leader mount (tests/helpers/posix_edge.c),
# calibrated on a native directory first, then mount == tree == replay.
. "$(dirname "$0")/lib.sh" || exit 1
both_writeback_modes

EDGE=$HELPERS/posix_edge
[ -x "$EDGE" ] || fail "helper '$EDGE' is not built"
id 1000 >/dev/null 2>&1 || note "uid 1000 has no passwd entry; using it anyway"

# Every case (but those about repfs's own metadata) must pass on a plain
# directory: if one does not, the expectation is wrong, not repfs.
CASES=$("$EDGE" -l) || fail "posix_edge -l failed"
NATIVE_CASES=$(echo "$CASES" | grep -v -x -e hidden_id -e mtime_coherence)
mkdir -m 755 "$T/native"
# shellcheck disable=SC2086
out=$("$EDGE" -t "$T/native" "$T/native" $NATIVE_CASES 2>&1) ||
	fail "posix_edge fails on a native directory (a test bug on this system): $(echo "$out" | grep -v '^PASS')"
rm -rf "$T/native"

D=$T/data
M=$T/mnt
start_leader "$D" "$M"
mkdir -m 755 "$M/edge"
before=$(log_count "$D")
out=$("$EDGE" -t "$D/tree/edge" "$M/edge" 2>&1)
rc=$?
echo "$out" | grep -v '^PASS' | while IFS= read -r line; do echo "$line"; done
[ "$rc" = 0 ] || soft_fail "posix_edge: $(echo "$out" | grep -c '^FAIL') case(s) failed on the mount: $(echo "$out" | sed -n 's/^FAIL \([a-z_0-9]*\):.*/\1/p' | tr '\n' ' ')"
[ "$(log_count "$D")" -gt "$before" ] || fail "posix_edge left no records in the log"

# the same through ordinary tools as an unprivileged user
mkdir -m 1777 "$M/shared"
echo root >"$M/shared/rootfile"
chmod 644 "$M/shared/rootfile"
as_user() { setpriv --reuid=1000 --regid=1000 --clear-groups "$@"; }
as_user touch "$M/shared/userfile" || fail "uid 1000 cannot create a file in a 1777 directory"
as_user mkdir "$M/shared/userdir" || fail "uid 1000 cannot mkdir in a 1777 directory"
check_eq "$(stat -c %u:%g "$M/shared/userfile" "$M/shared/userdir" | tr '\n' ' ')" "1000:1000 1000:1000 " \
	"owner of files made by uid 1000 (mount)"
check_eq "$(stat -c %u:%g "$D/tree/shared/userfile" "$D/tree/shared/userdir" | tr '\n' ' ')" "1000:1000 1000:1000 " \
	"owner of files made by uid 1000 (tree)"
err=$(as_user sh -c "echo x >'$M/shared/rootfile'" 2>&1) && fail "uid 1000 could write a root-owned 0644 file"
case "$err" in *"Permission denied"*) ;; *) soft_fail "writing a root 0644 file as uid 1000: '$err', want Permission denied" ;; esac
err=$(as_user rm -f "$M/shared/rootfile" 2>&1) && fail "uid 1000 removed root's file from a sticky directory"
case "$err" in *"Operation not permitted"*) ;; *) soft_fail "rm of root's file in a sticky dir as uid 1000: '$err'" ;; esac
check_eq "$(cat "$M/shared/rootfile")" root "root's file after the denied writes"

# the hidden id, through the usual tools
getfattr --absolute-names -d -m - "$M/shared/userfile" 2>/dev/null | grep -q repfs && soft_fail "getfattr -m - lists a repfs xattr"
getfattr --absolute-names -n trusted.repfs.id "$M/shared/userfile" >/dev/null 2>&1 && soft_fail "trusted.repfs.id readable through the mount"
setfattr -n trusted.repfs.id -v 0x00 "$M/shared/userfile" 2>/dev/null && soft_fail "trusted.repfs.id settable through the mount"
getfattr --absolute-names -n trusted.repfs.id "$D/tree/shared/userfile" >/dev/null 2>&1 || fail "the tree lacks trusted.repfs.id"

compare3 "$M" "$D"
log_verify "$D"
stop_node "$M" "$D"
exit 0
