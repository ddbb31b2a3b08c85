#!/bin/bash
# frozen_disk.sh -- a disk that stops answering: the file system under a
# node's DATADIR frozen (fsfreeze) while a change is on its way to it. The
# change waits, holding the node's locks, for as long as the disk does not
# answer; `repfs status` must still answer at once, and say "busy"; once the
# disk answers again the change completes, status is no longer busy, and
# nothing is lost. On a leader (a program's write waits), on a follower
# (its append and apply of the leader's records wait), and on a leader with
# --sync all whose follower stopped (its replication thread logs the
# fallback to async, to the frozen disk, with replication's lock held); and
# during a switchover to a follower whose disk is frozen (status answers
# while the promote waits).
# (Requests that need the names the waiting change holds wait too: a create
# holds them.)
. "$(dirname "$0")/../integration/repl_lib.sh"

command -v fsfreeze >/dev/null || skip "fsfreeze (util-linux) is not installed"
FROZEN=()
_thaw_all() {
	local f
	for f in "${FROZEN[@]}"; do fsfreeze -u "$f" 2>/dev/null; done
}
# thawed first: nothing on a frozen file system can be unmounted
STOPPED=
trap 'rc=$?; _thaw_all; [ -n "$STOPPED" ] && kill -CONT "$STOPPED" 2>/dev/null; (exit $rc); _rl_exit' EXIT

# loopfs NAME: a fresh ext4 in a file, loop-mounted at $T/NAME
loopfs() {
	truncate -s 512M "$T/$1.img" && mkfs.ext4 -q -F "$T/$1.img" && mkdir -p "$T/$1" &&
		mount -o loop "$T/$1.img" "$T/$1" || skip "unable to loop-mount an ext4 here"
	track_tmpfs "$T/$1"
}
# (a safety thaw after 120 s: a run killed outright leaves no frozen file system for long)
freeze() {
	fsfreeze -f "$1" || fail "fsfreeze -f '$1' failed"
	FROZEN+=("$1")
	rl_bg sh -c "sleep 120; fsfreeze -u '$1' 2>/dev/null"
}
thaw() { fsfreeze -u "$1" || fail "fsfreeze -u '$1' failed"; FROZEN=(); }

# status answers within 2 s (it waits 0.2 s at most for a lock a change holds)
quick_status() { timeout 2 "$REPFS" status "$1" --json; }
_busy_is() { # DATA True|False
	local s
	s=$(quick_status "$1") || return 1
	[ "$(json_get "$s" busy)" = "$2" ]
}
_busy() { _busy_is "$1" True; }
_not_busy() { _busy_is "$1" False; }

# pair LNAME LDATA LMNT FNAME FDATA FMNT [LEADER OPTS...]: a leader and its follower, connected
pair() {
	local ln=$1 ld=$2 lm=$3 fn=$4 fd=$5 fm=$6
	shift 6
	rl_leader "$ln" "$ld" "$lm" "$@"
	rl_follower "$fn" "$fd" "$fm" "$RL_PORT"
	rl_wait_get 20 "$ld" "peers.$fn.connected" true
}

loopfs lfs
loopfs ffs
L=$T/lfs/data LM=$T/lm F1=$T/ffs/data F1M=$T/f1m
pair L "$L" "$LM" F1 "$F1" "$F1M"
echo before >"$LM/before"
rl_wait_converged 30 "$L" "$F1"

note "the leader's disk stops answering while a program writes"
freeze "$T/lfs"
rl_bg dd if=/dev/urandom of="$LM/during" bs=64k count=4 conv=fsync status=none
writer=$RL_BG_PID
wait_for 10 _busy "$L"
s=$(quick_status "$L") || fail "status of the leader did not answer while its disk was frozen"
check_eq "$(json_get "$s" role)" leader "role in the busy status"
[ -n "$(json_get "$s" seq)" ] || soft_fail "no seq in the busy status: $s"
text=$(timeout 2 "$REPFS" status "$L") || fail "the text status did not answer while the disk was frozen"
grep -q '^busy .*is the disk of the data directory answering' <<<"$text" ||
	soft_fail "the text status does not say it is busy: $text"
pid_alive "$writer" || soft_fail "the writer finished while the leader's disk was frozen"
thaw "$T/lfs"
rl_wait_exit 30 "$writer" "the writer after the disk answered again"
check_eq "$RL_RC" 0 "the writer's exit status"
wait_for 10 _not_busy "$L"
check_eq "$(json_get "$(rl_status "$L")" faults)" "[]" "the leader's faults after the thaw"
rl_wait_converged 30 "$L" "$F1"
cmp "$LM/during" "$F1M/during" || soft_fail "the follower's copy of the file written across the freeze differs"
check_eq "$(stat -c %s "$LM/during")" 262144 "size of the file written across the freeze"

note "the follower's disk stops answering while records arrive"
freeze "$T/ffs"
for i in 1 2 3 4 5; do echo "record $i" >"$LM/while-frozen.$i"; done
wait_for 10 _busy "$F1"
s=$(quick_status "$F1") || fail "status of the follower did not answer while its disk was frozen"
check_eq "$(json_get "$s" role)" follower "role in the follower's busy status"
_not_busy "$L" || soft_fail "the leader is busy while only the follower's disk is frozen"
thaw "$T/ffs"
wait_for 10 _not_busy "$F1"
rl_wait_converged 30 "$L" "$F1"
for i in 1 2 3 4 5; do
	check_eq "$(cat "$F1M/while-frozen.$i" 2>&1)" "record $i" "while-frozen.$i on the follower"
done
check_eq "$(json_get "$(rl_status "$F1")" faults)" "[]" "the follower's faults after the thaw"
treecmp "$LM" "$F1M" || soft_fail "the follower's mount differs from the leader's"
log_verify "$L"
log_verify "$F1"
rl_stop "$F1" "$F1M"
rl_stop "$L" "$LM"

note "a leader that waits for a stopped follower (--sync all) while its disk stops answering"
# its replication threads log (to DATADIR) with their own lock held
L2=$T/lfs/data2 L2M=$T/l2m F2=$T/ffs/data2 F2M=$T/f2m
pair L2 "$L2" "$L2M" F2 "$F2" "$F2M" --writeback off --sync all --sync-timeout 500
rl_bg python3 -c '
import os, sys, threading
def run(t):
    i = 0
    while True:
        fd = os.open(os.path.join(sys.argv[1], "w%d.%d" % (t, i % 20)), os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(fd, b"x" * 100, 0)
        os.fsync(fd)
        os.close(fd)
        i += 1
for t in range(4):
    threading.Thread(target=run, args=(t,)).start()
' "$L2M"
writers=$RL_BG_PID
wait_for 20 seq_at_least "$L2" 100
STOPPED=$(rl_pid "$F2" | head -n 1)
kill -STOP "$STOPPED"
# the sync timeout expires with the disk frozen: the fallback's log line waits for it
freeze "$T/lfs"
wait_for 10 _busy "$L2"
thaw "$T/lfs"
kill -CONT "$STOPPED"
STOPPED=
rl_bg_kill "$writers"
wait_for 10 _not_busy "$L2"
rl_wait_converged 60 "$L2" "$F2"
treecmp "$L2M" "$F2M" || soft_fail "the follower's mount differs from the leader's (--sync all)"
log_verify "$L2"
rl_stop "$F2" "$F2M"
rl_stop "$L2" "$L2M"

note "a switchover to a follower whose disk stops answering"
# the promote waits for the disk (the new leader's state must be durable);
# status asked meanwhile answers (the control socket serves each request on
# a thread of its own: it waited behind the promote before)
L3=$T/lfs/data3 L3M=$T/l3m F3=$T/ffs/data3 F3M=$T/f3m
pair L3 "$L3" "$L3M" F3 "$F3" "$F3M"
echo before >"$L3M/before"
rl_wait_converged 30 "$L3" "$F3"
freeze "$T/ffs"
rl_bg "$REPFS" promote "$F3"
promoter=$RL_BG_PID
# busy: the promote holds the follower's locks on the frozen disk (quick_status answers within 2 s)
wait_for 10 _busy "$F3"
pid_alive "$promoter" || soft_fail "the promote finished while the new leader's disk was frozen"
thaw "$T/ffs"
rl_wait_exit 30 "$promoter" "the promote after the disk answered again"
check_eq "$RL_RC" 0 "the promote's exit status"
rl_wait_get 20 "$F3" role leader
rl_wait_get 20 "$L3" role follower	# stepped down (it has no address of F3 to follow here)
echo after >"$F3M/after" || fail "a write on the new leader failed"
check_eq "$(cat "$F3M/before")" before "a file written before the switchover, on the new leader"
log_verify "$F3"
log_verify "$L3"
rl_stop "$F3" "$F3M"
rl_stop "$L3" "$L3M"
exit 0
