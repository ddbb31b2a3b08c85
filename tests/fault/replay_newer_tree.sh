#!/bin/bash
# replay_newer_tree.sh -- crash recovery replays the log after the checkpoint
# onto a tree that may already hold those changes (docs/apply.md: replaying
# onto a newer tree must be harmless). Simulated as the worst case of a power
# loss: a workload full of renames, re-creations, hard links, copies and
# truncations after the start's checkpoint, every change reached the disk,
# then the daemon dies (kill -9: no checkpoint) and the "same boot" hint
# (DATADIR/applied) is gone as after a reboot, so the next start replays the
# whole workload onto the final tree. It must come out exactly as the log
# says: tree == fresh replay == mount. Also: a clean stop before any crash
# gives tree == replay (this history has tripped replay's directory times).
. "$(dirname "$0")/../integration/lib.sh" || exit 1

B=$HELPERS/busywriter
[ -x "$B" ] || fail "helper '$B' is not built"
ST() { python3 "$TOOLS_DIR/statetool.py" "$@"; }
D=$T/data
M=$T/mnt
start_leader "$D" "$M"

# histories that trip a naive replay: names re-used by other objects later
(
	set -e
	cd "$M"
	echo one >a; mv a b; echo two >a; rm b; mv a c; echo three >a
	ln a h1; rm a; echo more >>h1; mv h1 a
	mkdir d; echo x >d/f; mv d e; mkdir d; mv e/f d/f; rmdir e
	ln -s a s; rm s; ln -s c s
	mkdir x; rmdir x; echo file >x
	printf 'abcdef' >t; truncate -s 2 t; printf 'zz' >>t
	echo v1 >v; setfattr -n user.k -v 1 v; setfattr -x user.k v; setfattr -n user.k -v 2 v
	echo p >p; chmod 600 p; chown 1000:1000 p; chmod 640 p; chown 0:0 p
	mkdir -p tree/a/b; echo deep >tree/a/b/f; mv tree/a tree/z; mkdir tree/a; echo new >tree/a/f
	echo gone >tmp1; mv tmp1 tmp2; mv tmp2 tmp1; rm tmp1; mkdir tmp1
	# written through a second name that is then removed and used by another file
	echo original >hl; ln hl hl2; echo "via the link" >hl2; rm hl2; echo other >hl2
) || fail "the scripted history failed in the mount"
python3 - "$M" <<'EOF' || fail "the copy/exchange history failed in the mount"
import ctypes, os, sys
os.chdir(sys.argv[1])
with open("src", "wb") as f:
    f.write(b"A" * 100000)
fi, fo = os.open("src", os.O_RDONLY), os.open("dst", os.O_WRONLY | os.O_CREAT, 0o644)
n = 0
while n < 100000:
    n += os.copy_file_range(fi, fo, 100000 - n)
os.close(fi); os.close(fo)
with open("src", "r+b") as f:       # the source changes after the copy
    f.write(b"B" * 50000)
os.rename("src", "src.old")
with open("src", "wb") as f:        # and a new file takes its name
    f.write(b"C" * 10)
libc = ctypes.CDLL(None, use_errno=True)
with open("ex1", "w") as f: f.write("1")
with open("ex2", "w") as f: f.write("2")
if libc.renameat2(-100, b"ex1", -100, b"ex2", 2) != 0:
    raise OSError(ctypes.get_errno(), "renameat2")
os.unlink("ex1")
with open("ex1", "w") as f: f.write("new 1")
EOF
mkdir "$M/busy"
# Known limit (docs/crash-recovery.md): replayed onto a newer tree, a random
# history of hard links can leave a link name too many or too few (names are
# not tracked by id; files are). Power loss only: after kill -9 recovery starts
# at the applied position. So the random part makes no hard links here; the
# scripted history above has the hard-link cases replay does handle.
BUSY_NO_LINKS=1 "$B" "$M/busy" 4 1.5 11 >"$T/busy.out" || fail "busywriter failed: $(cat "$T/busy.out")"
ckpt=$(ST get "$D" checkpoint)
seq=$(json_get "$(status_json "$D")" seq)
note "workload done: seq $seq, checkpoint $ckpt"

# no crash yet: the log, replayed, gives the tree
replay "$D" "$T/fresh"
treecmp --max 25 "$M" "$D/tree" "$T/fresh" || soft_fail "mount, tree and replay differ before any crash"
rm -rf "$T/fresh"

# power loss after everything reached the disk, with the checkpoint still old
kill_node "$D" "$M"
rm -f "$D/applied"
log_verify "$D"
start_leader "$D" "$M"
st=$(status_json "$D")
note "recovery replayed $(json_get "$st" replayed_at_start) records (checkpoint was $ckpt, seq $(json_get "$st" seq))"
[ "$(json_get "$st" replayed_at_start)" -ge $((seq - ckpt - 5)) ] ||
	note "recovery replayed fewer records than expected: a checkpoint came in between"
check_eq "$(cat "$M/hl")" "via the link" "a file written through a hard link whose name was reused, after recovery"
check_eq "$(cat "$M/ex2")" "1" "ex2 after recovery (renameat2 RENAME_EXCHANGE)"
compare3 "$M" "$D" "after recovery replayed the workload onto the final tree"
# a crash during (or right after) recovery, and recovery again
kill_node "$D" "$M"
rm -f "$D/applied"
start_leader "$D" "$M"
compare3 "$M" "$D" "after a second recovery"
stop_node "$M" "$D"
log_verify "$D"
exit 0
