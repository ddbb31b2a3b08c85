# repl_lib.sh -- helpers for the replication tests (repl_*.sh; sourced, not run)
#
#   . "$(dirname "$0")/../integration/repl_lib.sh"    (from tests/fault/)
#   . "$(dirname "$0")/repl_lib.sh"                   (from tests/integration/)
#
# Sources lib.sh (fail, note, wait_for, treecmp, $T, $KEY, cleanup on exit)
# and adds, for clusters on loopback:
#
#   rl_leader NAME DATA MNT [OPTS...]        first start of a leader on a free
#                                           port (retried on bind failure); sets RL_PORT
#                                           (RL_NOFILE=N: every start under a descriptor
#                                           limit of N, soft and hard)
#   rl_follower NAME DATA MNT PORT [OPTS...] first start of a follower of 127.0.0.1:PORT
#   rl_restart DATA MNT [OPTS...]            start again without --role (--key added)
#   rl_stop DATA MNT                         clean unmount; waits for the daemon to exit
#   rl_kill DATA MNT                         kill -9 of the daemon, lazy unmount of the dead mount
#   rl_pid DATA                              the daemon's pid (`fuser DATA/lock`)
#   rl_status DATA                           `repfs status DATA --json` (retried)
#   rl_get DATA FIELD                        a field of the status; FIELD may be
#                                           peers.NAME.FIELD for a leader's peer
#   rl_wait_get SECS DATA FIELD VALUE        poll until FIELD == VALUE (fails after SECS)
#   rl_wait_converged SECS LDATA FDATA...    poll until every follower's applied (and
#                                           the leader's applied) equals the leader's seq
#   rl_log_records DATA                      the log's records, segment headers stripped
#   rl_log_prefix FDATA LDATA [equal]        the follower's log is byte for byte a prefix
#                                           of (or equal to) the leader's
#   rl_no_key_leak KEYFILE FILE...           none of the files holds the key (raw, hex, base64)
#   rl_still_running PID MS MSG              fails if PID ends within MS milliseconds
#   rl_wait_exit SECS PID MSG                waits until PID ends (RL_RC: its status); fails after SECS
#   rl_bg CMD...                             runs CMD in the background in its own
#                                           process group; sets RL_BG_PID; killed at exit
#   rl_bg_kill PID                           ends one such background job (its group)
#   rl_proxy LISTEN_PORT TARGET_PORT [ARGS]  starts tests/helpers/tcpproxy with control
#                                           file $RL_PROXY_CTL; sets RL_PROXY_PORT, RL_PROXY_PID
#   rl_proxy_mode MODE [N [DIR]]             switches the proxy (rename of the control file)
#   rl_py ARGS...                            the python helper below
#
# On exit the background jobs and the proxy are ended first (by their recorded
# pids), then lib.sh's cleanup unmounts everything and ends the daemons.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "repl_lib.sh is the library of the repl_* tests, not a test"
	exit 77
fi

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RL_PY=$T/repl_lib.py
RL_BG_PIDS=()
RL_PORT=
RL_PROXY_PID=
RL_PROXY_PORT=
RL_PROXY_CTL=$T/proxy.ctl
RL_PROXY_LOG=$T/proxy.out

cat >"$RL_PY" <<'PYEOF'
import base64, json, os, subprocess, sys, time

REPFS = os.environ["REPFS"]


def status(data, tries=40):
    err = ""
    for _ in range(tries):
        try:
            p = subprocess.run([REPFS, "status", data, "--json"], capture_output=True, text=True)
        except OSError as e:	# the binary being rebuilt right now (ETXTBSY, EACCES)
            err = str(e)
            time.sleep(0.1)
            continue
        if p.returncode == 0:
            try:
                return json.loads(p.stdout)
            except ValueError as e:
                err = "bad JSON from repfs status: %s: %r" % (e, p.stdout[:300])
        else:
            err = p.stderr.strip()
        time.sleep(0.02)
    raise RuntimeError("repfs status %s failed: %s" % (data, err))


def field(st, path):
    if path.startswith("peers."):
        _, name, f = path.split(".", 2)
        for p in st.get("peers") or []:
            if p.get("name") == name:
                return p.get(f)
        return None
    return st.get(path)


def show(v):
    if isinstance(v, str):
        return v
    return json.dumps(v)


def positions(ldata, fdatas):
    ls = status(ldata)
    out = {"leader": (ls["seq"], ls["applied"])}
    for f in fdatas:
        fs = status(f)
        out[f] = (fs["applied"], fs["seq"], fs.get("following"), fs.get("last_error"))
    return ls, out


def converged(ldata, fdatas):
    ls, pos = positions(ldata, fdatas)
    seq = ls["seq"]
    ok = ls["applied"] == seq and all(pos[f][0] == seq and pos[f][1] == seq for f in fdatas)
    return ok, pos


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "status":
        print(json.dumps(status(a[0])))
    elif cmd == "get":
        print(show(field(status(a[0]), a[1])))
    elif cmd == "wait-get":
        secs, data, path, want = float(a[0]), a[1], a[2], a[3]
        end = time.time() + secs
        while True:
            v = show(field(status(data), path))
            if v == want:
                return 0
            if time.time() > end:
                print("after %gs %s of %s is %s, not %s" % (secs, path, data, v, want))
                return 1
            time.sleep(0.05)
    elif cmd == "wait-converged":
        secs, ldata, fdatas = float(a[0]), a[1], a[2:]
        end = time.time() + secs
        while True:
            ok, pos = converged(ldata, fdatas)
            if ok:
                # stable: the leader's seq did not move meanwhile
                ok2, pos2 = converged(ldata, fdatas)
                if ok2 and pos2["leader"] == pos["leader"]:
                    print("converged at seq %d" % pos["leader"][0])
                    return 0
            if time.time() > end:
                print("not converged after %gs: leader (seq, applied) %s; followers (applied, seq, following, last_error): %s"
                      % (secs, pos["leader"], {k: v for k, v in pos.items() if k != "leader"}))
                return 1
            time.sleep(0.05)
    elif cmd == "records":
        # the log's records, in order, without the 64-byte segment headers
        d = os.path.join(a[0], "log")
        out = sys.stdout.buffer
        for name in sorted(n for n in os.listdir(d) if n.endswith(".seg")):
            with open(os.path.join(d, name), "rb") as f:
                f.seek(64)
                out.write(f.read())
    elif cmd == "log-prefix":
        def recs(data):
            # the whole records of each segment: a torn tail (kill -9 mid-append)
            # is not held, the node cuts it at its next start
            d = os.path.join(data, "log")
            b = b""
            for name in sorted(n for n in os.listdir(d) if n.endswith(".seg")):
                with open(os.path.join(d, name), "rb") as f:
                    f.seek(64)
                    s = f.read()
                at = 0
                while at + 4 <= len(s):
                    n = int.from_bytes(s[at:at + 4], "little")
                    if n < 4 or at + n > len(s):
                        break
                    at += n
                b += s[:at]
            return b
        f, l = recs(a[0]), recs(a[1])
        equal = len(a) > 2 and a[2] == "equal"
        if l[:len(f)] != f:
            i = next(i for i in range(min(len(f), len(l))) if f[i] != l[i]) if min(len(f), len(l)) and \
                f[:min(len(f), len(l))] != l[:min(len(f), len(l))] else min(len(f), len(l))
            print("log of %s (%d bytes) is not a prefix of the log of %s (%d bytes): first difference at byte %d"
                  % (a[0], len(f), a[1], len(l), i))
            return 1
        if equal and len(f) != len(l):
            print("log of %s has %d bytes of records, the log of %s %d" % (a[0], len(f), a[1], len(l)))
            return 1
        return 0
    elif cmd == "keyleak":
        key = open(a[0], "rb").read()
        forms = {"raw bytes": key, "hex": key.hex().encode(), "HEX": key.hex().upper().encode(),
                 "base64": base64.b64encode(key).rstrip(b"="), "base64url": base64.urlsafe_b64encode(key).rstrip(b"="),
                 "hex of the first 12 bytes": key[:12].hex().encode(),
                 "hex of the last 12 bytes": key[-12:].hex().encode()}
        bad = 0
        for path in a[1:]:
            try:
                data = open(path, "rb").read()
            except OSError as e:
                print("unable to read %s: %s" % (path, e))
                bad += 1
                continue
            for name, v in forms.items():
                if v in data or v in data.lower():
                    print("%s holds the key (%s)" % (path, name))
                    bad += 1
        return 1 if bad else 0
    elif cmd == "lag":
        # samples the leader's seq and the follower's applied until the
        # writer (pid) ends, then until the follower caught up; prints
        # the replication lag percentiles in ms
        ldata, fdata, pid = a[0], a[1], int(a[2])
        ls, fs = [], []
        def alive():
            try:  # gone between any two of these steps: not alive
                os.kill(pid, 0)
                with open("/proc/%d/stat" % pid) as f:
                    st = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return False
            return st not in ("Z", "X")
        while alive():
            ls.append((time.monotonic(), status(ldata)["seq"]))
            fs.append((time.monotonic(), status(fdata)["applied"]))
        last = status(ldata)["seq"]
        end = time.monotonic() + 20
        while time.monotonic() < end:
            fs.append((time.monotonic(), status(fdata)["applied"]))
            if fs[-1][1] >= last:
                break
        lags = []
        j = 0
        for t, s in ls:
            # the first follower sample taken after t that holds s
            while j < len(fs) and (fs[j][0] < t or fs[j][1] < s):
                j += 1
            lags.append((fs[j][0] - t) * 1000 if j < len(fs) else float("inf"))
        lags.sort()
        if not lags:
            print("no samples")
            return 1
        def pct(p):
            return lags[min(len(lags) - 1, int(round(p / 100.0 * (len(lags) - 1))))]
        period = (ls[-1][0] - ls[0][0]) / max(1, len(ls) - 1) * 1000
        print("lag samples=%d sample_period_ms=%.1f p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f max_ms=%.1f records=%d"
              % (len(lags), period, pct(50), pct(90), pct(99), lags[-1], ls[-1][1] - ls[0][1]))
        return 0
    else:
        print("unknown command " + cmd)
        return 2
    return 0


sys.exit(main() or 0)
PYEOF

rl_py() { python3 "$RL_PY" "$@"; }

rl_pid() { # DATA: the pid(s) of the process holding DATA/lock
	fuser "$1/lock" 2>/dev/null | tr -s ' \t' '\n' | grep -E '^[0-9]+$' | sort -un
}

_rl_dead() { ! pid_alive "$1"; }
_rl_lock_free() { [ -z "$(rl_pid "$1")" ]; }
_rl_answers() { # DATA: the daemon answers status
	"$REPFS" status "$1" --json >/dev/null 2>&1
}

rl_status() { rl_py status "$1" || fail "repfs status '$1' failed"; }

rl_get() { # DATA FIELD
	local v
	v=$(rl_py get "$1" "$2") || fail "repfs status '$1' failed: $v"
	echo "$v"
}

rl_wait_get() { # SECS DATA FIELD VALUE
	local out
	out=$(rl_py wait-get "$@") || fail "$out"
}

rl_wait_converged() { # SECS LDATA FDATA...
	local out
	out=$(rl_py wait-converged "$@") || fail "$out"
	note "$out"
}

rl_log_records() { rl_py records "$1"; }

rl_log_prefix() { # FDATA LDATA [equal]
	local out
	out=$(rl_py log-prefix "$@") || fail "$out"
}

rl_no_key_leak() { # KEYFILE FILE...
	local out
	out=$(rl_py keyleak "$@") || fail "key material found: $out"
}

# rl_free_port: a port in 20000..39999 that nothing on this machine uses now.
rl_free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 20000))
		if ! ss -Htan 2>/dev/null | awk '{print $4; print $5}' | grep -q ":$p\$"; then
			echo "$p"
			return 0
		fi
	done
	echo $((20000 + RANDOM % 20000))
}

# rl_mount DATA MNT ARGS...: `repfs mount ARGS DATA MNT`; waits until the
# daemon answers and records its pid. Returns 1 with RL_MOUNT_ERR set if the
# mount command fails.
rl_mount() {
	local data=$1 mnt=$2 pid
	shift 2
	local pre=()
	mkdir -p "$mnt"
	track_mount "$mnt"
	[ -n "${RL_NOFILE:-}" ] && pre=(prlimit "--nofile=$RL_NOFILE:$RL_NOFILE")
	RL_MOUNT_ERR=$("${pre[@]}" "$REPFS" mount "$@" "$data" "$mnt" 2>&1) || return 1
	wait_for 20 is_mounted "$mnt"
	wait_for 20 _rl_answers "$data"
	pid=$(rl_pid "$data" | head -n 1)
	[ -n "$pid" ] || fail "no process holds '$data/lock' after mounting '$mnt'"
	track_pid "$pid"
	return 0
}

rl_leader() { # NAME DATA MNT [OPTS...]
	local name=$1 data=$2 mnt=$3 try port
	shift 3
	[ -e "$KEY" ] || make_key
	for try in 1 2 3 4 5 6 7 8; do
		port=$(rl_free_port)
		if rl_mount "$data" "$mnt" --role leader --name "$name" --listen "127.0.0.1:$port" --key "$KEY" \
			${REPFS_TEST_WRITEBACK:+--writeback "$REPFS_TEST_WRITEBACK"} "$@"; then
			RL_PORT=$port
			return 0
		fi
		case $RL_MOUNT_ERR in
		*"unable to listen"*) note "port $port is taken; another one" ;;
		*) fail "mount of leader '$name' failed: $RL_MOUNT_ERR" ;;
		esac
	done
	fail "no free port for leader '$name'"
}

rl_follower() { # NAME DATA MNT PORT [OPTS...]
	local name=$1 data=$2 mnt=$3 port=$4
	shift 4
	rl_mount "$data" "$mnt" --role follower --name "$name" --peer "127.0.0.1:$port" --key "${RL_KEY:-$KEY}" "$@" ||
		fail "mount of follower '$name' failed: $RL_MOUNT_ERR"
}

rl_restart() { # DATA MNT [OPTS...]: a later start, without --role
	local data=$1 mnt=$2
	shift 2
	rl_mount "$data" "$mnt" --key "${RL_KEY:-$KEY}" "$@" || fail "restart of '$data' failed: $RL_MOUNT_ERR"
}

rl_stop() { # DATA MNT
	local data=$1 mnt=$2 pids p
	pids=$(rl_pid "$data")
	fusermount3 -u "$mnt" || fail "fusermount3 -u '$mnt' failed"
	for p in $pids; do
		wait_for 30 _rl_dead "$p"
	done
	wait_for 30 _rl_lock_free "$data"
}

rl_kill() { # DATA MNT
	local data=$1 mnt=$2 pids p
	pids=$(rl_pid "$data")
	[ -n "$pids" ] || fail "no daemon holds '$data/lock'"
	for p in $pids; do kill -9 "$p"; done
	for p in $pids; do wait_for 20 _rl_dead "$p"; done
	fusermount3 -uz "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	wait_for 20 _rl_not_mounted "$mnt"
}
_rl_not_mounted() { ! is_mounted "$1"; }

rl_still_running() { # PID MS MSG: PID must not end within MS milliseconds
	local pid=$1 end=$(($(now_ms) + $2))
	while [ "$(now_ms)" -lt "$end" ]; do
		pid_alive "$pid" || fail "$3 (it ended within $2 ms)"
		sleep 0.05
	done
}

rl_wait_exit() { # SECS PID MSG: sets RL_RC to its exit status (if it is our child)
	local end=$(($(now_ms) + $1 * 1000))
	while pid_alive "$2"; do
		[ "$(now_ms)" -lt "$end" ] || fail "$3 (still running after $1 s)"
		sleep 0.02
	done
	wait "$2" 2>/dev/null
	RL_RC=$?
	_rl_forget "$2"
}

rl_drop_tree_pages() { # DATA: the tree's clean pages leave the page cache
	sync
	python3 - "$1/tree" <<'PY' || fail "dropping the tree's pages failed"
import os, sys
for root, dirs, files in os.walk(sys.argv[1]):
    for f in files:
        try:
            fd = os.open(os.path.join(root, f), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass
        os.close(fd)
PY
}

rl_bg() { # CMD...: in the background, in its own process group
	setsid "$@" &
	RL_BG_PID=$!
	RL_BG_PIDS+=("$RL_BG_PID")
}

# _rl_ours PID: PID is alive and still our child (not a reused pid)
_rl_ours() {
	local ppid
	pid_alive "$1" || return 1
	ppid=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f2)
	[ "$ppid" = "$$" ]
}

_rl_forget() { # PID: no longer ours to end at exit
	local keep=() p
	for p in "${RL_BG_PIDS[@]}"; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	RL_BG_PIDS=("${keep[@]}")
}

rl_bg_kill() { # PID: ends the job and its process group
	# A process inside a FUSE request the daemon is still working on (an fsync
	# waiting for followers) cannot be killed until the daemon answers or
	# dies, so this never waits long: lib.sh's cleanup ends the daemons next.
	local p=$1 i
	if ! _rl_ours "$p"; then
		wait "$p" 2>/dev/null
		_rl_forget "$p"
		return 0
	fi
	kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	for i in $(seq 1 20); do
		pid_alive "$p" || break
		sleep 0.05
	done
	_rl_ours "$p" && { kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; }
	for i in $(seq 1 20); do
		if ! pid_alive "$p"; then
			wait "$p" 2>/dev/null
			_rl_forget "$p"
			return 0
		fi
		sleep 0.05
	done
	note "background job $p is stuck (in a FUSE request?); the daemons' end will release it"
	return 0
}

rl_proxy_mode() { # MODE [N [DIR]]
	echo "$*" >"$RL_PROXY_CTL.tmp" && mv -f "$RL_PROXY_CTL.tmp" "$RL_PROXY_CTL"
}

rl_proxy() { # LISTEN_PORT(0: any) TARGET_PORT [EXTRA tcpproxy OPTIONS before the ports]
	local lport=$1 tport=$2 i
	shift 2
	[ -x "$HELPERS/tcpproxy" ] || fail "$HELPERS/tcpproxy is missing (make)"
	[ -e "$RL_PROXY_CTL" ] || rl_proxy_mode pass
	"$HELPERS/tcpproxy" -c "$RL_PROXY_CTL" "$@" "$lport" "$tport" >>"$RL_PROXY_LOG" 2>&1 &
	RL_PROXY_PID=$!
	RL_BG_PIDS+=("$RL_PROXY_PID")
	for i in $(seq 1 200); do
		RL_PROXY_PORT=$(sed -n 's/^[0-9.]* listening \([0-9]*\)$/\1/p' "$RL_PROXY_LOG" | tail -n 1)
		[ -n "$RL_PROXY_PORT" ] && return 0
		pid_alive "$RL_PROXY_PID" || fail "tcpproxy did not start: $(tail -n 3 "$RL_PROXY_LOG")"
		sleep 0.02
	done
	fail "tcpproxy did not say where it listens"
}

rl_proxy_stop() {
	[ -n "$RL_PROXY_PID" ] || return 0
	_rl_ours "$RL_PROXY_PID" && kill -TERM "$RL_PROXY_PID"
	rl_wait_exit 10 "$RL_PROXY_PID" "tcpproxy did not stop"
	RL_PROXY_PID=
}

_rl_exit() {
	local rc=$? p
	set +e
	for p in "${RL_BG_PIDS[@]}"; do
		if [ "$p" = "$RL_PROXY_PID" ]; then
			_rl_ours "$p" && kill -TERM "$p"
			sleep 0.1
			_rl_ours "$p" && kill -KILL "$p"
		else
			rl_bg_kill "$p"
		fi
	done
	(exit "$rc")
	_cleanup
}
trap _rl_exit EXIT

# --- the proxy rounds of tests/fault/repl_proxy_*.sh ---
#
# rl_proxy_setup: a leader (async, heartbeat 200 ms) and a follower F1 that
# reaches it only through tcpproxy (pass, dumping the down direction to
# $T/dump); sets L LM F1 F1M.
rl_proxy_setup() {
	L=$T/l F1=$T/f1
	LM=$T/lm F1M=$T/f1m
	rl_leader L "$L" "$LM" --sync async --heartbeat 200
	rl_proxy 0 "$RL_PORT" -d "$T/dump"
	rl_follower F1 "$F1" "$F1M" "$RL_PROXY_PORT" --leader-timeout 1000
	rl_wait_get 20 "$L" peers.F1.connected true
	# replication traffic is encrypted: a marker written on the leader
	# reaches the follower but never crosses the wire in clear
	RL_MARKER="plaintext-marker-$RANDOM$RANDOM-$$"
	echo "$RL_MARKER" >"$LM/marker"
	rl_wait_converged 20 "$L" "$F1"
	assert_eq "$(cat "$F1M/marker")" "$RL_MARKER" "the marker on the follower"
}

_rl_count() { # PATTERN FILE
	grep -c -- "$1" "$2" 2>/dev/null || true
}

# rl_proxy_round MODE N DIR: faults of one kind while the leader is written
# to; then the proxy cuts every connection, and the frozen follower must hold
# a prefix of the leader's history; then the proxy passes everything, and the
# follower must converge to exactly the leader's tree and log.
rl_proxy_round() {
	local mode=$1 n=$2 dir=$3 tag="$1-$3" faults0 ended0 follows0 seen_off=0 end w i a b out
	note "round $tag: $mode every $n bytes ($dir)"
	faults0=$(_rl_count " fault $mode $dir " "$RL_PROXY_LOG")
	ended0=$(_rl_count "connection to the leader ended" "$F1/repfs.log")
	follows0=$(_rl_count "following 'L' at" "$F1/repfs.log")
	[ "$mode" = cut ] && ended0=$(($(_rl_count "connection to the leader ended" "$F1/repfs.log") + \
		$(_rl_count "refused" "$F1/repfs.log")))
	rl_proxy_mode "$mode" "$n" "$dir"
	for i in 0 1 2 3 4 5 6; do mkdir -p "$LM/$tag/d$i"; done
	# a bounded writer: enough for faults to hit records, little enough for a
	# loaded machine to catch up quickly
	rl_bg "$HELPERS/ackwriter" write "$LM/$tag/records" 1500 >"$T/writer.$tag" 2>&1
	w=$RL_BG_PID
	end=$(($(now_ms) + 20000))
	i=0
	while :; do
		# namespace changes too, so that faults hit all kinds of records
		i=$((i + 1))
		echo "$i" >"$LM/$tag/d$((i % 7))/f$i"
		[ $((i % 3)) = 0 ] && mv "$LM/$tag/d$((i % 7))/f$i" "$LM/$tag/d$(((i + 1) % 7))/g$i"
		[ $((i % 5)) = 0 ] && setfattr -n user.i -v "$i" "$LM/$tag/d$((i % 7))"
		[ "$(rl_py get "$F1" following)" = false ] && seen_off=1
		a=$(_rl_count " fault $mode $dir " "$RL_PROXY_LOG")
		b=$(($(_rl_count "connection to the leader ended" "$F1/repfs.log") + \
			$([ "$mode" = cut ] && _rl_count "refused" "$F1/repfs.log" || echo 0)))
		[ "$a" -ge $((faults0 + 2)) ] && [ "$b" -ge $((ended0 + 2)) ] && [ "$seen_off" = 1 ] && break
		pid_alive "$w" || grep -q '^ack 1500$' "$T/writer.$tag" ||
			fail "round $tag: the writer on the leader failed: $(tail -n 2 "$T/writer.$tag")"
		[ "$(now_ms)" -lt "$end" ] || fail "round $tag: after 20 s: $((a - faults0)) faults injected, \
$((b - ended0)) connection ends in F1's log, following=false seen: $seen_off"
	done
	rl_bg_kill "$w"
	note "round $tag: $((a - faults0)) faults injected, $((b - ended0)) connections ended"

	# freeze the follower: every connection is cut at once
	rl_proxy_mode cut 0
	rl_wait_get 10 "$F1" following false
	_rl_frozen() {
		local x y
		x=$(rl_py get "$F1" applied)
		sleep 0.3
		y=$(rl_py get "$F1" applied)
		[ "$x" = "$y" ] && [ "$(rl_py get "$F1" following)" = false ]
	}
	wait_for 10 _rl_frozen
	# a prefix of the leader's history, all of it applied, the log intact
	rl_log_prefix "$F1" "$L"
	assert_eq "$(rl_get "$F1" applied)" "$(rl_get "$F1" seq)" "round $tag: F1 applied everything it logged"
	out=$("$REPFS" log "$F1" --verify 2>&1) || fail "round $tag: repfs log --verify of the frozen F1 failed: $out"
	[ -e "$F1M/$tag/records" ] && { out=$("$HELPERS/ackwriter" check "$F1M/$tag/records" 0) ||
		fail "round $tag: the frozen follower's copy of the records is not a prefix: $out"; }
	assert_eq "$(rl_get "$F1" faults)" "[]" "round $tag: faults in F1's status"
	# the channel catches every fault on the wire: none reaches the log's own checks
	grep -q "refused the record" "$F1/repfs.log" &&
		fail "round $tag: a damaged record got through the channel: $(grep "refused the record" "$F1/repfs.log" | head -n 1)"
	note "round $tag: frozen at seq $(rl_get "$F1" applied) of the leader's $(rl_get "$L" seq); a prefix"

	# heal: the follower reconnects and converges to exactly the leader
	rl_proxy_mode pass
	rl_wait_converged 30 "$L" "$F1"
	rl_wait_get 10 "$F1" following true
	rl_wait_get 10 "$L" peers.F1.connected true
	[ "$(_rl_count "following 'L' at" "$F1/repfs.log")" -gt "$follows0" ] ||
		fail "round $tag: F1's log shows no reconnection"
	treecmp "$LM" "$F1M" || fail "round $tag: the follower differs from the leader after healing"
	rl_log_prefix "$F1" "$L" equal
	out=$("$REPFS" log "$F1" --verify 2>&1) || fail "round $tag: repfs log --verify of F1 failed: $out"
	out=$("$HELPERS/ackwriter" check "$F1M/$tag/records" 0) || fail "round $tag: F1's records: $out"
	assert_eq "$(rl_get "$F1" last_error)" "" "round $tag: F1's last_error once healed"
}

# rl_proxy_finish: nothing crossed the wire in clear; the leader's log names
# the follower's reconnections.
rl_proxy_finish() {
	[ -s "$T/dump" ] || fail "the proxy dumped nothing"
	grep -qF "$RL_MARKER" "$T/dump" && fail "file content crossed the wire in clear"
	[ "$(_rl_count "follower 'F1' connected" "$L/repfs.log")" -ge 3 ] ||
		fail "the leader's log shows fewer than 3 connections of F1"
	rl_no_key_leak "$KEY" "$T/dump" "$L/repfs.log" "$F1/repfs.log" "$RL_PROXY_LOG"
	rl_proxy_stop
}
