# lib.sh -- shared helpers for the integration and fault tests (sourced, not run)
#
# Each test script does   . "$(dirname "$0")/lib.sh" || exit 1
# (from tests/fault/: "$(dirname "$0")/../integration/lib.sh") and gets: a private temp dir $T (removed on exit), a key $KEY, the binary
# $REPFS and the helpers dir $HELPERS, and these functions:
#
#   fail MSG...               print "FAIL: MSG" and exit 1
#   skip MSG...               print the reason last and exit 77
#   note MSG...               progress line on stderr
#   assert_eq GOT WANT MSG    fail unless GOT == WANT
#   soft_fail MSG / check_eq GOT WANT MSG   record a failure, go on; exit 1 at the end
#   wait_for SECS CMD...      poll CMD until it succeeds, fail after SECS
#   start_leader DATA MNT [OPTS...]   mount a leader (daemonized; LEADER_NOFILE=N: under
#                             a descriptor limit of N), wait until its
#                             control socket answers; sets LEADER_PID
#   stop_node MNT             clean unmount, wait for the daemon to exit
#   kill_node DATA MNT        kill -9 the daemon of DATA, lazy-unmount the dead mount
#   daemon_pid DATA           pid of the process holding DATA/lock
#   status_json TARGET        `repfs status TARGET --json` (retried a few times;
#                             cli.sh asserts that single calls never fail)
#   json_get JSON FIELD       value of a top-level field
#   treecmp A B [C...]        tests/tools/treecmp.py
#   compare3 MNT DATA [WHEN]  mount == DATA/tree == replay (soft)
#   replay DATA OUT           `repfs replay` into a fresh dir
#   log_count DATA            number of records in the log
#   log_verify DATA           `repfs log --verify` must pass
#   make_key [FILE]           `repfs keygen` ($KEY by default)
#   is_mounted DIR / pid_alive PID
#   track_pid PID / track_mount DIR / track_tmpfs DIR   cleaned up on exit
#
# Cleanup (trap on EXIT): unmounts every mount the test made (fusermount3 -u,
# falling back to -uz), waits for and then kill -9s only the processes this
# test started (by recorded pid, never by name), unmounts tmpfs, removes $T
# (copied first to $REPFS_TEST_KEEP, if set, when the test failed).
# Under ASan the sanitizer's reports (of daemons too, whose stderr is gone)
# are written under $T/asan and make the test fail.

set -u
set -o pipefail

: "${REPFS:?REPFS must name the repfs binary}"
: "${HELPERS:?HELPERS must name the helpers directory}"
LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_DIR=$(cd "$LIB_DIR/../tools" && pwd)
TEST_NAME=$(basename "$0" .sh)

[ "$(id -u)" = 0 ] || { echo "integration tests need root (FUSE mounts, chown, trusted xattrs)"; exit 77; }
[ -e /dev/fuse ] || { echo "no /dev/fuse"; exit 77; }
command -v fusermount3 >/dev/null || { echo "fusermount3 not installed"; exit 77; }

T=$(mktemp -d "/tmp/repfs-$TEST_NAME.XXXXXX") || exit 1
chmod 755 "$T"
KEY=$T/key
_MOUNTS=()
_PIDS=()
_TMPFS=()
_FAIL_MSG=""
_SOFT_FAILS=0

if [ -n "${ASAN_OPTIONS:-}" ] || [ -n "${UBSAN_OPTIONS:-}" ]; then
	mkdir -p "$T/asan"
	export ASAN_OPTIONS="${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}log_path=$T/asan/asan"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-}${UBSAN_OPTIONS:+:}log_path=$T/asan/ubsan"
fi

note() { echo "[$TEST_NAME $(date +%T.%3N)] $*" >&2; }

fail() {
	_FAIL_MSG="FAIL: $*"
	echo "$_FAIL_MSG"
	exit 1
}

skip() {
	echo "$*"
	exit 77
}

assert_eq() { # GOT WANT MSG
	[ "$1" = "$2" ] || fail "${3:-values differ}: got '$1', want '$2'"
}

# soft_fail MSG...: a failure that lets the test go on (to show more); the
# test still fails at the end.
soft_fail() {
	_SOFT_FAILS=$((_SOFT_FAILS + 1))
	_FAIL_MSG="FAIL: $*"
	echo "$_FAIL_MSG"
}

check_eq() { # GOT WANT MSG: soft assert_eq
	[ "$1" = "$2" ] || soft_fail "${3:-values differ}: got '$1', want '$2'"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# wait_for SECS CMD...: polls CMD (every 50 ms) until it exits 0.
wait_for() {
	local secs=$1 deadline
	shift
	deadline=$(($(now_ms) + secs * 1000))
	until "$@" >/dev/null 2>&1; do
		[ "$(now_ms)" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for: $*"
		sleep 0.05
	done
}

track_pid() { _PIDS+=("$1"); }
track_mount() { _MOUNTS+=("$(realpath -m "$1")"); }
track_tmpfs() { _TMPFS+=("$(realpath -m "$1")"); }

is_mounted() { # DIR: something is mounted exactly there
	local d
	d=$(realpath -m "$1")
	awk -v d="$d" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo
}

pid_alive() { # PID: alive and not a zombie
	local s
	[ -r "/proc/$1/stat" ] || return 1
	s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# daemon_pid DATA: the process(es) holding DATA/lock open (the daemon flock()s it).
daemon_pid() {
	local lock
	lock=$(realpath -m "$1/lock")
	find /proc/[0-9]*/fd -maxdepth 1 -lname "$lock" 2>/dev/null | cut -d/ -f3 | sort -un
}

# status_json TARGET: the daemon's status, retried a few times so that other
# tests do not depend on it (cli.sh asserts that every single call succeeds).
status_json() {
	local i out
	for i in 1 2 3 4 5 6 7 8 9 10; do
		if out=$("$REPFS" status "$1" --json 2>/dev/null); then
			echo "$out"
			return 0
		fi
		sleep 0.02
	done
	"$REPFS" status "$1" --json
}

json_get() { # JSON FIELD
	python3 -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(json.dumps(v) if isinstance(v,(list,dict)) or v is None else v)' "$1" "$2"
}

_running() { # DATA: the daemon answers status and says it is running
	local s
	s=$("$REPFS" status "$1" --json 2>/dev/null) || return 1
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if d.get("running", True) and "seq" in d else 1)' "$s"
}

make_key() { # [FILE]
	"$REPFS" keygen "${1:-$KEY}" || fail "repfs keygen failed"
}

# start_leader DATA MNT [OPTS...]: mounts a leader and waits until it answers
# (LEADER_NOFILE=N: under a descriptor limit of N, soft and hard).
start_leader() {
	local data=$1 mnt=$2 out pre=()
	shift 2
	mkdir -p "$mnt"
	track_mount "$mnt"
	[ -e "$KEY" ] || make_key
	[ -n "${LEADER_NOFILE:-}" ] && pre=(prlimit "--nofile=$LEADER_NOFILE:$LEADER_NOFILE")
	out=$("${pre[@]}" "$REPFS" mount --role leader --name "${NODE_NAME:-leader}" --key "$KEY" \
		${REPFS_TEST_WRITEBACK:+--writeback "$REPFS_TEST_WRITEBACK"} "$@" "$data" "$mnt" 2>&1) ||
		fail "mount of '$data' on '$mnt' failed: $out"
	wait_for 20 is_mounted "$mnt"
	wait_for 20 _running "$data"
	LEADER_PID=$(daemon_pid "$data" | head -n 1)
	[ -n "$LEADER_PID" ] || fail "no process holds '$data/lock' after mounting"
	track_pid "$LEADER_PID"
}

# both_writeback_modes: called first thing after sourcing this file, runs the
# whole test once more, before, with leaders mounted --writeback off (the
# writeback cache is on by default): the test's own --writeback options win.
both_writeback_modes() {
	[ -n "${REPFS_TEST_WRITEBACK:-}" ] && return 0
	echo "== the same with --writeback off"
	REPFS_TEST_WRITEBACK=off "$BASH" "$0" || fail "with --writeback off (above)"
	echo "== with the writeback cache (the default)"
}

# stop_node MNT [DATA]: clean stop; waits for the daemon to exit.
stop_node() {
	local mnt=$1 data=${2:-} pids="" p
	[ -n "$data" ] && pids=$(daemon_pid "$data")
	fusermount3 -u "$mnt" || fail "fusermount3 -u '$mnt' failed"
	for p in $pids; do
		wait_for 30 _dead "$p"
	done
	if [ -n "$data" ]; then
		wait_for 30 _lock_free "$data"
	fi
}
_dead() { ! pid_alive "$1"; }
_lock_free() { [ -z "$(daemon_pid "$1")" ]; }

# kill_node DATA MNT: kill -9 of the daemon (found by its lock), then the
# dead mount is lazily unmounted.
kill_node() {
	local data=$1 mnt=$2 pids p
	pids=$(daemon_pid "$data")
	[ -n "$pids" ] || fail "no daemon holds '$data/lock'"
	for p in $pids; do kill -9 "$p"; done
	for p in $pids; do wait_for 20 _dead "$p"; done
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	wait_for 20 _not_mounted "$mnt"
}
_not_mounted() { ! is_mounted "$1"; }

seq_at_least() { # DATA N: the node's log has reached seq N (for wait_for)
	local s
	s=$("$REPFS" status "$1" --json 2>/dev/null) || return 1
	[ "$(json_get "$s" seq)" -ge "$2" ]
}

treecmp() { python3 "$TOOLS_DIR/treecmp.py" "$@"; }

replay() { # DATA OUT
	rm -rf "$2"
	"$REPFS" replay "$1" "$2" >/dev/null || fail "repfs replay '$1' '$2' failed"
}

log_count() { # DATA: number of records in the log (from `repfs log --verify`)
	local out
	out=$("$REPFS" log "$1" --verify) || fail "repfs log --verify '$1' failed: $out"
	echo "$out" | sed -n 's/.* intact: \([0-9]*\) records.*/\1/p'
}

log_verify() { # DATA: repfs log --verify must pass
	local out
	out=$("$REPFS" log "$1" --verify 2>&1) || fail "repfs log --verify '$1' failed: $out"
}

# compare3 MNT DATA [WHEN]: mount == tree == replay of the log (a soft failure).
# A log that no longer starts at seq 1 (trimmed after a checkpoint) cannot be
# replayed into an empty directory: then only mount == tree is checked.
# COMPARE3_IGNORE: treecmp fields not compared (e.g. holes: ext4 reports an
# unwritten extent as data where pages happen to be cached over it).
compare3() {
	local mnt=$1 data=$2 out=$T/replay.$RANDOM v
	v=$("$REPFS" log "$data" --verify 2>&1) || {
		soft_fail "repfs log --verify failed${3:+ $3}: $v"
		return
	}
	case "$v" in
	*" seq 1.."*)
		replay "$data" "$out"
		treecmp --max 25 ${COMPARE3_IGNORE:+--ignore "$COMPARE3_IGNORE"} "$mnt" "$data/tree" "$out" || soft_fail "trees differ (mount / tree / replay)${3:+ $3}"
		rm -rf "$out"
		;;
	*)
		note "the log was trimmed ($v); comparing the mount with the tree only"
		treecmp --max 25 ${COMPARE3_IGNORE:+--ignore "$COMPARE3_IGNORE"} "$mnt" "$data/tree" || soft_fail "trees differ (mount / tree)${3:+ $3}"
		;;
	esac
}

_cleanup() {
	local rc=$? m p i
	trap - EXIT
	set +e
	[ "$rc" = 0 ] && [ "$_SOFT_FAILS" -gt 0 ] && rc=1
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${_MOUNTS[i]}
		if is_mounted "$m"; then
			timeout 20 fusermount3 -u "$m" 2>/dev/null || timeout 20 fusermount3 -uz "$m" 2>/dev/null ||
				umount -l "$m" 2>/dev/null
		fi
	done
	for p in "${_PIDS[@]}"; do
		for i in $(seq 1 100); do
			pid_alive "$p" || break
			sleep 0.05
		done
		pid_alive "$p" && kill -9 "$p" 2>/dev/null
	done
	for ((i = ${#_TMPFS[@]} - 1; i >= 0; i--)); do
		m=${_TMPFS[i]}
		is_mounted "$m" && { umount "$m" 2>/dev/null || umount -l "$m"; }
	done
	if [ -d "$T/asan" ] && [ -n "$(ls -A "$T/asan" 2>/dev/null)" ]; then
		echo "sanitizer reports:"
		cat "$T"/asan/* | head -n 80
		[ "$rc" = 0 ] && rc=1
	fi
	if [ "$rc" != 0 ] && [ "$rc" != 77 ]; then
		for f in "$T"/*/repfs.log; do
			[ -f "$f" ] && { echo "--- $f (tail)"; tail -n 8 "$f"; }
		done
		[ -n "$_FAIL_MSG" ] && echo "$_FAIL_MSG"
		# REPFS_TEST_KEEP=DIR: a failed run's temp dir (logs, trees) is copied there
		if [ -n "${REPFS_TEST_KEEP:-}" ] && mkdir -p "$REPFS_TEST_KEEP" &&
			cp -a "$T" "$REPFS_TEST_KEEP/" 2>/dev/null; then
			echo "kept in $REPFS_TEST_KEEP/${T##*/}"
		fi
	fi
	if grep -q " $T/" /proc/self/mountinfo; then
		echo "warning: still mounted under $T; not removing it"
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM
