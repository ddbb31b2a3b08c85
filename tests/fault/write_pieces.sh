#!/bin/bash
# write_pieces.sh -- a large write is logged in pieces of 256 KiB, each
# applied to the tree beside the next one's append (fs/node.c). A piece that
# fails to apply is taken back out of the log together with the piece logged
# after it; the pieces before it stay and the write is short, which the
# writer sees and carries on from. REPFS_TEST_FAIL_PIECE=N makes the Nth
# piece fail. After it: the file holds exactly what was written, the log
# verifies and holds the data once, and mount, tree and replay are equal.
# Through the page cache, and in the kernel's writeback of mmap'd pages
# (which ignores a short count), the write fails instead, and fsync or
# msync reports it; the mount still shows exactly the tree. The short write
# needs a write(2) that reaches the daemon as it is made: the first part runs
# without the writeback cache, the rest with it (the default).
. "$(dirname "$0")/../integration/lib.sh" || exit 1

D=$T/data
M=$T/mnt
head -c 3145728 /dev/urandom >"$T/src"

# rw_write rw|mmap FILE: 1 MiB through a read-write descriptor and fsync'd,
# or 2 MiB stored into a shared mapping and msync'd; prints "wrote N",
# "flushed" or "error ERRNO"
rw_write() {
	python3 - "$1" "$T/src" "$2" 2>&1 <<'PY'
import mmap, os, sys
how, src, path = sys.argv[1:4]
data = open(src, "rb").read((1 if how == "rw" else 2) << 20)
fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
try:
    if how == "rw":
        n = os.write(fd, data)
        os.fsync(fd)
        print("wrote", n)
    else:
        os.ftruncate(fd, len(data))
        m = mmap.mmap(fd, len(data), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[:] = data
        m.flush()
        print("flushed")
except OSError as e:
    print("error", e.errno)
PY
}
REPFS_TEST_FAIL_PIECE=2 start_leader "$D" "$M" --writeback off
seq0=$(json_get "$(status_json "$D")" seq)

# one 3 MiB write(2) of 1 MiB requests: piece 2 fails, piece 3 (already
# logged) goes with it, the first write(2) comes back short at 256 KiB
python3 - "$T/src" "$M/big" >"$T/writes" <<'PY' || fail "the writer failed: $(cat "$T/writes")"
import os, sys
data = open(sys.argv[1], "rb").read()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
done = 0
while done < len(data):
    n = os.write(fd, data[done:done + (1 << 20)])
    print(n)
    done += n
os.fsync(fd)
os.close(fd)
PY
check_eq "$(head -n 1 "$T/writes")" 262144 "the first write(2), whose second piece failed"
cmp -s "$T/src" "$M/big" || fail "the file differs from what was written"
cmp -s "$T/src" "$D/tree/big" || fail "the tree's file differs from what was written"

# the log: the create, then pieces of at most 256 KiB covering 3 MiB once
"$REPFS" log "$D" --from $((seq0 + 1)) >"$T/log" || fail "repfs log failed"
note "records: $(awk '$3 == "write" { printf "%s@%s ", $5, $6 }' "$T/log")"
check_eq "$(awk '$3 == "write" { s += $5 } END { print s }' "$T/log")" 3145728 "bytes of write records in the log"
check_eq "$(awk '$3 == "write" && $5 > 262144' "$T/log" | wc -l)" 0 "write records over 256 KiB"
log_verify "$D"
st=$(status_json "$D")
check_eq "$(json_get "$st" faults)" "[]" "faults after a piece failed"
compare3 "$M" "$D" "after a failed piece"

# and after a restart, nothing of the taken-back pieces comes back
stop_node "$M" "$D"
start_leader "$D" "$M"
cmp -s "$T/src" "$M/big" || fail "the file differs from what was written after a restart"
compare3 "$M" "$D" "after a restart"
stop_node "$M" "$D"

# a read-write descriptor writes through the page cache: the error, not a short count
REPFS_TEST_FAIL_PIECE=2 start_leader "$D" "$M"
out=$(rw_write rw "$M/rw")
check_eq "$out" "error 5" "a 1 MiB write through the page cache whose second piece failed"
compare3 "$M" "$D" "after a failed piece through the page cache"
stop_node "$M" "$D"

# the kernel's writeback of a shared mapping: msync must report the failure
REPFS_TEST_FAIL_PIECE=2 start_leader "$D" "$M"
out=$(rw_write mmap "$M/mapped")
check_eq "$out" "error 5" "msync of 2 MiB of mmap'd pages whose second piece failed"
compare3 "$M" "$D" "after a failed piece in mmap writeback"
stop_node "$M" "$D"
exit 0
