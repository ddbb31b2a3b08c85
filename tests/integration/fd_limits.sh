#!/bin/bash
# fd_limits.sh -- a leader under a low descriptor limit (400): every
# directory the kernel holds used to keep a descriptor in the daemon, so a
# tree with more directories than the limit made the daemon unable to open
# anything, and the log's next sync failed: writes refused until a restart.
# Now directories past their share of the limit are opened by file handle
# when a request needs them (fs/inodes.c), programs' opens past theirs fail
# with ENFILE, and the log, the state file and the rest keep their reserve:
# 600 directories created, read, renamed, removed and written through;
# files and directories held open until opens are refused (four times,
# the same count each time), a write and fsync meanwhile through a
# descriptor opened before; the
# daemon's descriptors stay under the limit, no fault, mount == tree ==
# replay. Then a leader and a follower under the same limit: records rename
# and remove directories the follower's kernel holds past the cap, and the
# follower reads through them.
. "$(dirname "$0")/repl_lib.sh"
command -v prlimit >/dev/null || skip "prlimit (util-linux) is not installed"

D=$T/data
M=$T/mnt
LEADER_NOFILE=400 start_leader "$D" "$M"
fds() { ls "/proc/$LEADER_PID/fd" | wc -l; }
CAP=$(((400 - 256) / 2)) # directories' descriptors, and programs' opens (fs/inodes.h)
base=$(fds)
no_fault() {
	local st
	st=$(status_json "$D") || fail "repfs status failed: $st"
	case $st in *'"faults":[]'*) ;; *) fail "$1: the leader reports faults: $st" ;; esac
}

note "600 directories, each with a file, then all of them read and listed"
for i in $(seq 1 600); do
	mkdir -p "$M/d$i/sub" && echo "$i" >"$M/d$i/sub/f" || fail "mkdir or write in directory $i failed"
done
sync -f "$M" || fail "sync -f after making 600 directories failed"
n=$(find "$M" -type d | wc -l)
assert_eq "$n" 1201 "directories found on the mount"
for i in 1 150 299 450 600; do
	assert_eq "$(cat "$M/d$i/sub/f")" "$i" "the file in directory $i"
done
note "the daemon holds $(fds) descriptors (limit 400; $base after mounting)"
# AHEAD: the new files the helper makes ahead (fs/behind.c, AHEAD_MAX), two descriptors each,
# maybe not all made yet at $base
AHEAD=32
[ "$(fds)" -le $((base + CAP + AHEAD + 8)) ] ||
	fail "the daemon holds $(fds) descriptors: more than $base + $CAP directories' + $AHEAD made ahead + 8"
no_fault "after 600 directories"
st=$(status_json "$D")
assert_eq "$(json_get "$st" dir_descriptors)" "$CAP" "status: directories holding a descriptor"
assert_eq "$(json_get "$st" dir_descriptors_max)" "$CAP" "status: dir_descriptors_max"
assert_eq "$(json_get "$st" open_files_max)" "$CAP" "status: open_files_max"

note "directories past the cap renamed, written through, removed"
mv "$M/d590" "$M/d1/moved" || fail "rename of a directory failed"
echo again >>"$M/d1/moved/sub/f" || fail "a write into a renamed directory failed"
assert_eq "$(cat "$M/d1/moved/sub/f")" "$(printf '590\nagain')" "the renamed directory's file"
rm -r "$M/d589" || fail "removing a directory failed"
[ ! -e "$M/d589" ] || fail "a removed directory is still there"
mkdir "$M/d600/new" && echo new >"$M/d600/new/f" || fail "mkdir in a directory past the cap failed"
mkdir "$M/cwd" || fail "mkdir failed"
assert_eq "$(json_get "$(status_json "$D")" dir_descriptors)" "$CAP" "directories holding a descriptor (cwd is past the cap)"
# stat once the kernel's cached attributes (1 s) expired, so that it asks the daemon
out=$(cd "$M/cwd" && rmdir "$M/cwd" && end=$(($(now_ms) + 1200)) &&
	until [ "$(now_ms)" -ge "$end" ]; do sleep 0.05; done && stat -c '%F %h' . 2>&1) ||
	fail "stat of a working directory past the cap once removed (ext4: a directory, 0 links): $out"
assert_eq "$out" "directory 0" "stat of a removed working directory past the cap"

note "files, then directories, held open until the daemon refuses more opens (ENFILE), twice"
cat >"$T/hold.py" <<'PYEOF'
import errno, os, sys
m, kind = sys.argv[1], sys.argv[2]
w = os.open(m + "/while-held", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # before the refusals
fds, err = [], None
for i in range(1, 400):
    try:
        if kind == "files":
            fds.append(os.open("%s/d%d/sub/f" % (m, i), os.O_RDONLY))
        else:
            fds.append(os.open("%s/d%d/sub" % (m, i), os.O_RDONLY | os.O_DIRECTORY))
    except OSError as e:
        err = e.errno
        break
print(len(fds), errno.errorcode.get(err, err), flush=True)
# while they are held, through the one opened before: a write and an fsync work
os.write(w, b"held\n")
os.fsync(w)
os.close(w)
for f in fds:
    os.close(f)
PYEOF
first=""
for kind in files dirs files dirs; do
	out=$(python3 "$T/hold.py" "$M" "$kind") || fail "holding $kind open: $out"
	note "$kind held open before the refusal, and the error: $out"
	case $out in *" ENFILE") ;; *) fail "opens of $kind were not refused with ENFILE: $out" ;; esac
	[ "${out%% *}" -ge $((CAP - 4)) ] || fail "only ${out%% *} $kind could be held open (share $CAP)"
	[ -z "$first" ] || assert_eq "${out%% *}" "$first" "$kind held open, again (slots come back at close)"
	first=${out%% *}
done
assert_eq "$(cat "$M/while-held")" "$(printf 'held\nheld\nheld\nheld')" "the file written while opens were refused"
no_fault "after opens were refused"
_none_open() { [ "$(json_get "$(status_json "$D")" open_files)" = 0 ]; }
wait_for 10 _none_open # releases come asynchronously after the closes
echo after >"$M/after" || fail "a write after the held files were closed failed"

sync -f "$M" || fail "sync -f at the end failed"
no_fault "at the end"
compare3 "$M" "$D"
stop_node "$M" "$D"
log_verify "$D"

note "a leader and a follower under the limit: records rename and remove directories the follower's kernel holds"
RL_NOFILE=400
rl_leader A "$T/a" "$T/am"
for i in $(seq 1 300); do
	mkdir -p "$T/am/d$i/sub" && echo "$i" >"$T/am/d$i/sub/f" || fail "mkdir or write in directory $i on A failed"
done
rl_follower B "$T/b" "$T/bm" "$RL_PORT"
rl_wait_converged 60 "$T/a" "$T/b"
assert_eq "$(find "$T/bm" -type d | wc -l)" 601 "directories found on the follower"
assert_eq "$(rl_get "$T/b" dir_descriptors)" "$CAP" "the follower's directories holding a descriptor"
for i in 249 250 251; do cat "$T/bm/d$i/sub/f" >/dev/null || fail "reading d$i on the follower failed"; done
mv "$T/am/d250" "$T/am/d1/moved" && rm -r "$T/am/d249" && echo more >>"$T/am/d251/sub/f" ||
	fail "rename, removal or write on A failed"
rl_wait_converged 30 "$T/a" "$T/b"
assert_eq "$(cat "$T/bm/d1/moved/sub/f")" 250 "a directory renamed by a record, on the follower"
[ ! -e "$T/bm/d249" ] || fail "a directory removed by a record is still on the follower"
assert_eq "$(cat "$T/bm/d251/sub/f")" "$(printf '251\nmore')" "a file written by a record, on the follower"
assert_eq "$(rl_get "$T/b" faults)" "[]" "the follower's faults"
out=$("$REPFS" verify "$T/bm" 2>&1) || fail "repfs verify of the follower failed: $out"
note "repfs verify: $out"
exit 0
