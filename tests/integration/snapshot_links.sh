#!/bin/bash
# snapshot_links.sh -- G5 for hard links changed between a directory's
# listing and the walk reaching its entries (docs/snapshot.md §3). The walk
# is slowed down (REPFS_TEST_SNAP_PAUSE_MS after each directory listed), and
# while it pauses after listing h:
#   * pairs p/q of names of one file lose one name each (which of the two the
#     walk meets first depends on the directory's hash order, so half the
#     pairs lose p and half q): the file must survive under the other name;
#   * files with names a/b are renamed over y and z, which are then removed:
#     the file dies, and y and z must go on the follower as on the leader.
# Both ended with the follower diverged before the walk sent every listed
# name of a file as a link (a stand-in's too). These are moves within one
# directory, so no check after the snapshot repairs anything here. A FIFO
# and a symlink with two names each must arrive with both.
. "$(dirname "$0")/repl_lib.sh"

L=$T/l F=$T/f LM=$T/lm FM=$T/fm

REPFS_TEST_SNAP_PAUSE_MS=2500 rl_leader L "$L" "$LM"

note "a directory of hard-linked files"
mkdir "$LM/h"
for i in $(seq 1 16); do
	echo "pair $i" >"$LM/h/p$i"
	ln "$LM/h/p$i" "$LM/h/q$i"
	echo "dies $i" >"$LM/h/a$i"
	ln "$LM/h/a$i" "$LM/h/b$i"
	echo "y $i" >"$LM/h/y$i"
	echo "z $i" >"$LM/h/z$i"
done

# hard links of a FIFO and of a symlink (sent as links, as a file's, since 2026-11-29)
mkfifo "$LM/fifo" && ln "$LM/fifo" "$LM/h/fifo2" && ln -s h/p1 "$LM/sym" && ln "$LM/sym" "$LM/h/sym2" ||
	fail "unable to make hard links of a FIFO and a symlink"

note "a follower joins; while the walk pauses after listing h, names change"
rl_follower F "$F" "$FM" "$RL_PORT"
# the root's entry arrives once the walk has listed the root and paused; h is
# listed right after it, and its pause leaves 2.5 s for the changes
wait_for 30 sh -c "[ \"\$('$REPFS' status '$F' --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"snapshot\"][\"files_done\"])')\" -ge 1 ]"
for i in $(seq 1 16); do
	if ((i % 2)); then rm "$LM/h/p$i"; else rm "$LM/h/q$i"; fi
	mv "$LM/h/a$i" "$LM/h/y$i" && mv "$LM/h/b$i" "$LM/h/z$i" && rm "$LM/h/y$i" "$LM/h/z$i" ||
		fail "changing the names of set $i failed"
done
wait_for 60 sh -c "'$REPFS' status '$F' --json | grep -q '\"completed\":1'"
rl_wait_converged 60 "$L" "$F"

note "identical"
treecmp "$LM" "$FM" || fail "the follower's mount differs from the leader's"
treecmp "$L/tree" "$F/tree" || fail "the follower's tree differs from the leader's"
rl_status "$F" | grep -Eq '"check": ?"none"' || fail "a check ran after the snapshot (it should not be needed here)"
exit 0
