#!/bin/bash
# fuse_ring.sh -- FUSE over io_uring (fs/fuse_ring.c): where the kernel has
# it, requests are served through the rings; the same programs give the
# same trees with --io-uring off (/dev/fuse only); an fsync held for a
# follower does not hold up the other requests made on its CPU.
. "$(dirname "$0")/lib.sh" || exit 1

KNOB=/sys/module/fuse/parameters/enable_uring
command -v taskset >/dev/null || skip "taskset not installed"
NCPU=$(nproc)
# the rings are expected where the kernel has them and io_uring is allowed
RINGS=0
[ -e "$KNOB" ] && [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ] && RINGS=1

# writes, reads at odd offsets and sizes past one request, parallel writers
# with fsync on both CPUs (more than a CPU's ring threads), names, links, modes
workload() { # MNT
	local m=$1 i
	mkdir "$m/w" || fail "mkdir in '$m' failed"
	cp -a /usr/include/linux "$m/w/inc" || fail "cp -a into '$m' failed"
	tar -C "$m/w" -cf "$T/inc.tar" inc || fail "tar of '$m/w/inc' failed"
	mkdir "$m/w/untar" && tar -C "$m/w/untar" -xf "$T/inc.tar" || fail "untar into '$m' failed"
	treecmp --max 25 "$m/w/inc" "$m/w/untar/inc" || fail "the untar differs from what was tarred"
	cp "$T/blob" "$m/w/blob" || fail "cp of the blob failed"
	cmp "$T/blob" "$m/w/blob" || fail "the blob reads back different"
	cmp <(dd if="$m/w/blob" bs=3000 skip=7 count=900 status=none) \
		<(dd if="$T/blob" bs=3000 skip=7 count=900 status=none) || fail "odd-sized reads differ"
	cmp <(dd if="$m/w/blob" bs=3M skip=1 status=none) <(dd if="$T/blob" bs=3M skip=1 status=none) ||
		fail "3 MiB reads differ"
	pids=()
	for i in $(seq 1 12); do
		taskset -c $((i % NCPU)) dd if=/dev/urandom of="$m/w/p$i" bs=64k count=8 conv=fsync status=none &
		pids+=($!)
	done
	for i in "${pids[@]}"; do
		wait "$i" || fail "a parallel writer failed"
	done
	for i in $(seq 1 12); do
		[ "$(stat -c %s "$m/w/p$i")" = 524288 ] || fail "parallel file p$i has $(stat -c %s "$m/w/p$i") bytes"
	done
	mv "$m/w/p1" "$m/w/moved" && ln "$m/w/moved" "$m/w/hard" && ln -s moved "$m/w/soft" &&
		chmod 640 "$m/w/hard" && setfattr -n user.k -v v "$m/w/hard" || fail "names, links, modes in '$m' failed"
	rm -r "$m/w/inc/netfilter" || fail "rm -r in '$m' failed"
}

dd if=/dev/urandom of="$T/blob" bs=1M count=9 status=none

note "the default: requests through the rings where the kernel has them"
D=$T/data
M=$T/mnt
start_leader "$D" "$M"
st=$(status_json "$D")
if [ "$RINGS" = 1 ]; then
	assert_eq "$(cat "$KNOB")" Y "the kernel's enable_uring after a mount as root"
	wait_for 10 sh -c "'$REPFS' status '$D' --json | grep -q '\"fuse_io\":\"io_uring\"'"
	grep -q "FUSE requests go through io_uring" "$D/repfs.log" || fail "the log does not say the rings serve"
	n=$(ps -L -o comm= -p "$LEADER_PID" | grep -c '^repfs-ring')
	[ "$n" -ge $((4 * NCPU)) ] || fail "$n ring threads for $NCPU CPUs (at least 4 each)"
else
	note "this kernel has no FUSE over io_uring: only the fallback is checked"
	assert_eq "$(json_get "$st" fuse_io)" /dev/fuse "fuse_io in status"
fi
# the mount's readahead is raised to the largest request (tools/mount.c)
dev=$(mountpoint -d "$M") || fail "mountpoint -d '$M' failed"
ra=/sys/class/bdi/$dev/read_ahead_kb
[ ! -e "$ra" ] || assert_eq "$(cat "$ra")" 1024 "the mount's read_ahead_kb"
before=$(json_get "$st" fuse_ring_requests)
workload "$M"
after=$(json_get "$(status_json "$D")" fuse_ring_requests)
if [ "$RINGS" = 1 ]; then
	[ "$after" -gt $((before + 1000)) ] || fail "only $((after - before)) requests went through the rings"
fi
compare3 "$M" "$D" "(rings)"
stop_node "$M" "$D"

note "--io-uring off: everything through /dev/fuse"
D2=$T/data2
M2=$T/mnt2
start_leader "$D2" "$M2" --io-uring off
st=$(status_json "$D2")
assert_eq "$(json_get "$st" fuse_io)" /dev/fuse "fuse_io with --io-uring off"
assert_eq "$(json_get "$st" fuse_ring_requests)" 0 "ring requests with --io-uring off"
workload "$M2"
compare3 "$M2" "$D2" "(/dev/fuse)"
stop_node "$M2" "$D2"

if [ "$RINGS" = 1 ]; then
	note "an fsync held for a follower leaves its CPU's other requests served"
	D3=$T/data3
	M3=$T/mnt3
	# a peer nobody listens on: quorum=1 holds each fsync until the timeout
	start_leader "$D3" "$M3" --peer 127.0.0.1:9 --sync quorum=1 --sync-timeout 10000
	wait_for 10 sh -c "'$REPFS' status '$D3' --json | grep -q '\"fuse_io\":\"io_uring\"'"
	echo seen >"$M3/other"
	taskset -c 0 dd if=/dev/zero of="$M3/held" bs=4k count=1 conv=fsync status=none &
	held=$!
	wait_for 5 test -s "$M3/held"
	for i in 1 2 3; do
		assert_eq "$(taskset -c 0 cat "$M3/other")" seen "a read on the held fsync's CPU"
		taskset -c 0 stat "$M3" >/dev/null || fail "a stat on the held fsync's CPU failed"
		taskset -c 0 touch "$M3/t$i" || fail "a create on the held fsync's CPU failed"
	done
	pid_alive "$held" || fail "the fsync returned before the others were served (it should wait ~10 s)"
	wait "$held" || fail "the held fsync failed after the timeout"
	stop_node "$M3" "$D3"
fi
echo ok
