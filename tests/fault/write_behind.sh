#!/bin/bash
# write_behind.sh -- a leader answers a small write once it is in the log and
# applies it to the tree after, and a new file's create before its last
# steps (the parent's mtime, the id index's link) are made (fs/node.c,
# "writes applied behind"). Every other request waits for those first, so a
# program that reads, stats, truncates or renames right after writing sees
# its writes; applied counts a record only once the tree has it.
# REPFS_TEST_FAIL_BEHIND=N makes the Nth of those (creates' tails and writes)
# fail after it was answered: the leader then refuses writes (EIO, `status`
# names the tree), keeps the record in its log, and a restart applies it:
# every answered file and byte is there. Last, a stat that came while a
# file's write was queued waits for the write to it queued after, which sets
# the file's mtime in its place (REPFS_TEST_BEHIND_DELAY_MS). Then eight
# threads race for the same names with O_EXCL, the files made ahead taken
# by creates answered before the file has its name.
. "$(dirname "$0")/../integration/lib.sh" || exit 1

D=$T/data
M=$T/mnt

# four writers at once, each a file of 4 KiB-1 writes read back and checked
# by another descriptor after every write; then a truncate and a rename,
# each right after a write (applied inline: after the writes behind them)
writers() {
	python3 - "$1" <<'PY'
import os, sys, threading
root = sys.argv[1]
errors = []
def work(k):
    path = os.path.join(root, "w%d" % k)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    rd = os.open(path, os.O_RDONLY)
    want = b""
    for i in range(300):
        chunk = bytes([(k * 31 + i) % 251]) * 4095
        if os.write(fd, chunk) != len(chunk):
            errors.append("short write")
        want += chunk
        if os.fstat(rd).st_size != len(want) or os.pread(rd, len(chunk), len(want) - len(chunk)) != chunk:
            errors.append("%s: write %d not seen by the next read" % (path, i))
            break
    os.ftruncate(fd, 5000)
    if os.pread(rd, 6000, 0) != want[:5000]:
        errors.append("%s: truncate after writes" % path)
    os.pwrite(fd, b"tail", 5000)
    os.rename(path, path + ".done")
    os.close(fd)
    os.close(rd)
    if open(path + ".done", "rb").read() != want[:5000] + b"tail":
        errors.append("%s: content after rename" % path)
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
for t in ts: t.start()
for t in ts: t.join()
print("\n".join(errors) if errors else "ok")
PY
}

_settled() { # DATA: applied has caught up with seq
	local st
	st=$(status_json "$1")
	[ "$(json_get "$st" applied)" = "$(json_get "$st" seq)" ]
}

for wb in on off; do
	note "writers, --writeback $wb"
	start_leader "$D" "$M" --writeback "$wb"
	mkdir -p "$M/$wb"
	check_eq "$(writers "$M/$wb")" ok "the writers' checks (--writeback $wb)"
	for k in 0 1 2 3; do
		check_eq "$(stat -c %s "$M/$wb/w$k.done")" 5004 "size of w$k.done (--writeback $wb)"
	done
	wait_for 10 _settled "$D" || fail "applied did not reach seq: $(status_json "$D")"
	check_eq "$(json_get "$(status_json "$D")" faults)" "[]" "faults after the writers"
	compare3 "$M" "$D" "after the writers (--writeback $wb)"
	stop_node "$M" "$D"
done

note "the 40th apply behind (the file's create is the 1st) fails after its write was answered"
REPFS_TEST_FAIL_BEHIND=40 start_leader "$D" "$M" --writeback off
python3 - "$M/failing" >"$T/acked" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
for i in range(200):
    try:
        os.write(fd, bytes([i % 251]) * 1000)
    except OSError as e:
        print("error", e.errno)
        break
    print("acked", i)
try:
    os.fsync(fd)
    print("fsync ok")
except OSError as e:
    print("fsync error", e.errno)
try:
    os.close(fd)
except OSError:
    pass
PY
acked=$(grep -c '^acked' "$T/acked")
note "writes answered before the leader refused: $acked; then: $(grep -v '^acked' "$T/acked" | tr '\n' ' ')"
check_eq "$(grep '^error' "$T/acked")" "error 5" "the write after the failed apply"
# what it answered after the failed apply is in its log only: no follower gets it before a restart
check_eq "$(grep '^fsync' "$T/acked")" "fsync error 5" "fsync after the failed apply"
[ "$acked" -ge 39 ] || fail "only $acked writes answered before the refusal; the 39th was to fail"
st=$(status_json "$D")
case $(json_get "$st" faults) in
*"tree: Input/output error; writes refused"*) ;;
*) fail "status does not name the tree's failure: $(json_get "$st" faults)" ;;
esac
grep -q "unable to apply the write at seq [0-9]* to the tree: Input/output error; refusing writes" "$D/repfs.log" ||
	fail "repfs.log does not say which write failed: $(tail -n 3 "$D/repfs.log")"
[ "$(json_get "$st" applied)" -lt "$(json_get "$st" seq)" ] ||
	fail "applied counts the write that never reached the tree: $st"
if mkdir "$M/refused" 2>/dev/null; then fail "mkdir succeeded on a leader that refuses writes"; fi
stop_node "$M" "$D"

note "a restart applies what the log holds: every answered write is in the file"
start_leader "$D" "$M"
python3 - "$M/failing" "$acked" <<'PY' || fail "the file after the restart lacks answered writes"
import sys
data = open(sys.argv[1], "rb").read()
n = int(sys.argv[2])
want = b"".join(bytes([i % 251]) * 1000 for i in range(n))
sys.exit(0 if data == want else 1)
PY
check_eq "$(json_get "$(status_json "$D")" faults)" "[]" "faults after the restart"
echo more >"$M/after" || fail "a write after the restart failed"
compare3 "$M" "$D" "after the restart"
log_verify "$D"
stop_node "$M" "$D"

note "a create's tail fails after the create was answered"
REPFS_TEST_FAIL_BEHIND=1 start_leader "$D" "$M" --writeback off
out=$(python3 - "$M/made" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
print("created")
try:
    os.write(fd, b"hello")
    print("written")
except OSError as e:
    print("error", e.errno)
PY
)
note "the program saw: $(echo $out)"
case $out in created*) ;; *) fail "the create was not answered: $out" ;; esac
grep -q "unable to apply the create at seq [0-9]* to the tree: Input/output error; refusing writes" "$D/repfs.log" ||
	fail "repfs.log does not say which create failed: $(tail -n 3 "$D/repfs.log")"
if touch "$M/refused" 2>/dev/null; then fail "a create succeeded on a leader that refuses writes"; fi
stop_node "$M" "$D"
start_leader "$D" "$M"
check_eq "$(stat -c '%a %s %h' "$M/made")" "640 $(case $out in *written*) echo 5 ;; *) echo 0 ;; esac) 1" \
	"mode, size and links of the file whose create's tail failed, after a restart"
check_eq "$(stat -c %h "$D/tree/made")" 2 "links of the tree's file (its name and the id index's)"
compare3 "$M" "$D" "after a failed create's tail and a restart"
log_verify "$D"
stop_node "$M" "$D"

# A queued write whose next queued job is a write to the same file leaves
# the file's mtime to that one (mtime_next()). A request that came while
# only the first was queued must then wait for the second too, or its stat
# sees the tree's own stamp of the first write's bytes, a time no record
# gives the file. REPFS_TEST_BEHIND_DELAY_MS holds a queued write until a job
# queues behind it (or 3 s pass), and has the helper let a request waiting
# for the queue take it between two jobs.
note "a stat while a write is queued, and a second write to the file queued behind it"
REPFS_TEST_BEHIND_DELAY_MS=3000 start_leader "$D" "$M" --writeback off
: >"$M/two" || fail "creating the file failed"
wait_for 10 _settled "$D"
out=$(python3 - "$M/two" "$D/repfs.log" "$D/tree/two" 2>&1 <<'PY'
import os, sys, threading, time
path, log, tree = sys.argv[1:4]
W, Q = "test hook: the queued write", "test hook: a request waits for the queued jobs"
O = "test hook: a request does the next job too"
def count(s):
    with open(log) as f:
        return f.read().count(s)
def wait_count(s, n):
    end = time.time() + 20
    while count(s) < n:
        if time.time() > end:
            sys.exit("timed out waiting for the daemon's log to say %r" % s)
        time.sleep(0.01)
fd1, fd2 = os.open(path, os.O_WRONLY), os.open(path, os.O_WRONLY)
w0, q0, o0 = count(W), count(Q), count(O)
os.pwrite(fd1, b"a" * 100, 0)          # queued; its apply waits for a job behind it
wait_count(W, w0 + 1)
seen = {}
t = threading.Thread(target=lambda: seen.update(mtime=os.stat(path).st_mtime_ns))
t.start()
wait_count(Q, q0 + 1)                  # the stat waits for the queue as it is: the first write
os.pwrite(fd2, b"b" * 100, 100)        # queued behind it: the first leaves its mtime to this one
t.join()
if count(O) != o0 + 1:
    sys.exit("the stat did not wait for the write that owed the file's mtime")
print(seen["mtime"])
PY
) || fail "the stat during the queued writes: $out"
wait_for 10 _settled "$D"
check_eq "$out" "$(stat -c %.9Y "$D/tree/two" | tr -d .)" \
	"the mtime a stat saw while the file's first write was applied (the tree's after both)"
compare3 "$M" "$D" "after the queued writes"
stop_node "$M" "$D"

# Files made ahead (fs/behind.c, AHEAD_MAX): a leader's helper keeps unnamed
# files of the tree's file system open, and a create takes one and is
# answered before the file has its name. Eight threads create the same 300
# names with O_EXCL at once, then remove what they made and race again:
# every name must be made exactly once each round (a name still queued
# counts as taken), and mount, tree and replay agree.
note "files made ahead: eight threads racing for the same names with O_EXCL"
start_leader "$D" "$M" --writeback off
made_ahead() { ls -l "/proc/$LEADER_PID/fd" 2>/dev/null | grep -q "$D/tree.ids/#[0-9]* (deleted)"; }
wait_for 10 made_ahead
out=$(python3 - "$M/race" <<'PY' 2>&1
import os, sys, threading
root = sys.argv[1]
os.mkdir(root)
won = [[0] * 300 for _ in range(2)]
lock = threading.Lock()
bar = threading.Barrier(8)
def work(k):
    for rnd in range(2):
        mine = []
        bar.wait()
        for i in range(300):
            p = os.path.join(root, "n%d" % i)
            try:
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            os.write(fd, b"%d %d %d" % (rnd, i, k))
            os.close(fd)
            mine.append(p)
            with lock:
                won[rnd][i] += 1
        bar.wait()
        if rnd == 0:
            for p in mine:
                os.unlink(p)
ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
bad = [(r, i, n) for r in range(2) for i, n in enumerate(won[r]) if n != 1]
print("ok" if not bad else "names not made exactly once (round, name, times): %r" % bad[:10])
PY
)
check_eq "$out" ok "the racing creates"
check_eq "$(ls "$M/race" | wc -l)" 300 "names left after the second round"
# what a create answers for a file made ahead (its inode and device as the
# helper found them when it made the file) is what the tree's file has
out=$(python3 - "$M/seen" <<'PY' 2>&1
import os, sys
root = sys.argv[1]
os.mkdir(root)
for i in range(40):
    fd = os.open(os.path.join(root, "f%d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    st = os.fstat(fd)	# the kernel's copy of the create's answer
    os.close(fd)
    print("f%d %d %o %d" % (i, st.st_ino, st.st_mode, st.st_size))
PY
)
wait_for 10 _settled "$D"
tree=$(for i in $(seq 0 39); do
	read -r ino mode size < <(stat -c "%i %f %s" "$D/tree/seen/f$i")
	printf 'f%d %s %o %s\n' "$i" "$ino" "$((16#$mode))" "$size"
done)
check_eq "$out" "$tree" "inode, mode and size a create answered, against the tree's file"
# a directory of the tree that passes an inode flag on (chattr +S, made on the
# tree directly): its files are made there, as they would be inline, not ahead
if command -v chattr >/dev/null && mkdir "$M/flagged" && chattr +S "$D/tree/flagged" 2>/dev/null; then
	note "a directory that passes +S on: its files are made there"
	for i in 1 2 3; do echo x >"$M/flagged/f$i" || fail "a file in a directory with +S"; done
	wait_for 10 _settled "$D"
	check_eq "$(lsattr "$D/tree/flagged/f3" 2>/dev/null | cut -c3)" S \
		"the tree's file in a directory that passes +S on"
fi
wait_for 10 _settled "$D"
compare3 "$M" "$D" "after the racing creates"
log_verify "$D"
stop_node "$M" "$D"
exit 0
