# failover_lib.sh -- helpers for the failover tests (failover_*.sh; sourced, not run)
#
#   . "$(dirname "$0")/failover_lib.sh"                  (from tests/integration/)
#   . "$(dirname "$0")/../integration/failover_lib.sh"   (from tests/fault/)
#
# Sources repl_lib.sh (and so lib.sh) and adds a three-node cluster on
# loopback in which every node lists the other two as --peer:
#
#   fo_cluster [LEADER_OPTS...]   A leads, B and C follow; waits until both are
#                                 connected. Sets A B C (data dirs), AM BM CM
#                                 (mounts), and the ports in FO_PORT_<NAME>
#                                 (picked by fo_ports unless done before; if
#                                 a port is taken meanwhile, the cluster is
#                                 made again on others, except for the nodes
#                                 named in FO_PINNED). FO_VIA_<NAME>=PORT: the
#                                 others reach NAME there (a proxy) instead of
#                                 at its port; FO_VIA_<FROM>_<NAME>: only FROM.
#   fo_proxy ID TARGET_PORT [OPTS...]  another tcpproxy (sets FO_PROXY_PORT);
#                                 OPTS: more tcpproxy options (-D DIR, ...)
#   fo_proxy_mode ID MODE...      switches it
#   fo_data NAME / fo_mnt NAME    DATADIR / mountpoint of node NAME
#   fo_start NAME [OPTS...]       later start of NAME (no --role) with its
#                                 --listen and --peer options
#   fo_stop NAME / fo_kill NAME   clean stop / kill -9 (rl_stop, rl_kill)
#   fo_promote NAME [--force]     `repfs promote`; sets FO_RC and FO_OUT (stdout+stderr)
#   fo_erofs MNT WHAT             a create, a write to an existing file and a
#                                 mkdir on MNT fail with EROFS, and statvfs says
#                                 ST_RDONLY (fails the test otherwise)
#   fo_check_erofs MNT            the same check, returning 1 with the reasons in FO_WHY
#   fo_writes MNT WHAT            a create + fsync on MNT works
#   fo_wait_leader SECS NAME LEADER   NAME's status says it follows LEADER
#   fo_acked FILE                 the last record number acknowledged in a
#                                 writer's output ("ack N ..."), 0 if none

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "failover_lib.sh is the library of the failover_* tests, not a test"
	exit 77
fi

. "$(dirname "${BASH_SOURCE[0]}")/repl_lib.sh"

A=$T/a B=$T/b C=$T/c
AM=$T/am BM=$T/bm CM=$T/cm
FO_NODES="A B C"

# Status without python (python's start costs ~0.3 s on a loaded 2-CPU box):
#   fo_status DATA            `repfs status DATA --json` (retried)
#   fo_json JSON FIELD        the first "FIELD": value in JSON (strings unquoted;
#                             top-level fields come before the peers' in repfs's output)
#   fo_get DATA FIELD         a field of DATA's status; FIELD may be peers.NAME.FIELD
#   fo_wait_get SECS DATA FIELD VALUE      poll until FIELD == VALUE
#   fo_wait_converged SECS LDATA FDATA...  poll until the leader's applied and
#                             every follower's seq and applied equal the leader's seq
#                             (twice in a row, the leader's seq unchanged)
fo_status() {
	local i out
	for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		out=$("$REPFS" status "$1" --json 2>/dev/null) && { echo "$out"; return 0; }
		sleep 0.02
	done
	"$REPFS" status "$1" --json 2>&1
	return 1
}

fo_json() { # JSON FIELD
	local v
	v=$(printf '%s' "$1" | grep -o '"'"$2"'":\("\([^"\\]\|\\.\)*"\|[^,}]*\)' | head -n 1)
	v=${v#\"$2\":}
	case $v in \"*\") v=${v#\"} v=${v%\"} ;; esac
	echo "$v"
}

fo_get() { # DATA FIELD
	local st peer f
	st=$(fo_status "$1") || fail "repfs status '$1' failed: $st"
	case $2 in
	peers.*.*)
		peer=${2#peers.} f=${peer#*.} peer=${peer%%.*}
		st=$(printf '%s' "$st" | grep -o "{\"name\":\"$peer\"[^}]*}")
		[ -n "$st" ] || { echo null; return 0; }
		fo_json "$st" "$f"
		;;
	*) fo_json "$st" "$2" ;;
	esac
}

fo_wait_get() { # SECS DATA FIELD VALUE
	local end=$(($(now_ms) + $1 * 1000)) v
	while :; do
		v=$(fo_get "$2" "$3")
		[ "$v" = "$4" ] && return 0
		[ "$(now_ms)" -lt "$end" ] || fail "after $1 s $3 of $2 is '$v', not '$4'"
		sleep 0.05
	done
}

_fo_converged() { # LDATA FDATA...: prints the leader's seq if converged
	local l=$1 ls seq f fs
	shift
	ls=$(fo_status "$l") || return 1
	seq=$(fo_json "$ls" seq)
	[ "$(fo_json "$ls" applied)" = "$seq" ] || return 1
	for f in "$@"; do
		fs=$(fo_status "$f") || return 1
		[ "$(fo_json "$fs" seq)" = "$seq" ] && [ "$(fo_json "$fs" applied)" = "$seq" ] || return 1
	done
	echo "$seq"
}

fo_wait_converged() { # SECS LDATA FDATA...
	local secs=$1 end=$(($(now_ms) + $1 * 1000)) a b f pos
	shift
	while :; do
		if a=$(_fo_converged "$@") && b=$(_fo_converged "$@") && [ "$a" = "$b" ]; then
			note "converged at seq $a"
			return 0
		fi
		if [ "$(now_ms)" -ge "$end" ]; then
			pos=""
			for f in "$@"; do
				pos="$pos $(basename "$f"): seq $(fo_get "$f" seq) applied $(fo_get "$f" applied) \
following $(fo_get "$f" following) last_error '$(fo_get "$f" last_error)';"
			done
			fail "not converged after ${secs}s:$pos"
		fi
		sleep 0.05
	done
}

fo_data() { echo "$T/$(echo "$1" | tr 'A-Z' 'a-z')"; }
fo_mnt() { echo "$T/$(echo "$1" | tr 'A-Z' 'a-z')m"; }
fo_port() { eval "echo \$FO_PORT_$1"; }
fo_addr() { echo "127.0.0.1:$(fo_port "$1")"; }
# fo_peer_addr FROM TO: where FROM reaches TO: FO_VIA_<FROM>_<TO> or
# FO_VIA_<TO> (a proxy's port) if set, else TO's port
fo_peer_addr() {
	local via
	via=$(eval "echo \${FO_VIA_$1_$2:-\${FO_VIA_$2:-}}")
	echo "127.0.0.1:${via:-$(fo_port "$2")}"
}

# --peer options for every node but NAME
fo_peer_opts() {
	local n
	for n in $FO_NODES; do
		[ "$n" = "$1" ] || printf -- '--peer\n%s\n' "$(fo_peer_addr "$1" "$n")"
	done
}

# fo_proxy ID TARGET_PORT [OPTS...]: another tcpproxy (besides repl_lib's
# rl_proxy), on a free port (FO_PROXY_PORT), passing everything; OPTS go to
# tcpproxy before the ports; fo_proxy_mode ID MODE... switches it (see
# tests/helpers/tcpproxy.c). Ended at exit.
fo_proxy() {
	local id=$1 target=$2 i pid
	shift 2
	fo_proxy_mode "$id" pass
	"$HELPERS/tcpproxy" -c "$T/proxy.$id.ctl" "$@" 0 "$target" >>"$T/proxy.$id.out" 2>&1 &
	pid=$!
	RL_BG_PIDS+=("$pid")
	for i in $(seq 1 200); do
		FO_PROXY_PORT=$(sed -n 's/^[0-9.]* listening \([0-9]*\)$/\1/p' "$T/proxy.$id.out" | tail -n 1)
		[ -n "$FO_PROXY_PORT" ] && return 0
		pid_alive "$pid" || fail "tcpproxy did not start: $(tail -n 3 "$T/proxy.$id.out")"
		sleep 0.02
	done
	fail "tcpproxy did not say where it listens"
}
fo_proxy_mode() { # ID MODE [N [DIR]]
	local id=$1
	shift
	echo "$*" >"$T/proxy.$id.ctl.tmp" && mv -f "$T/proxy.$id.ctl.tmp" "$T/proxy.$id.ctl"
}

fo_ports() { # [NAME...]: free ports for these nodes (default: all), distinct from the others'
	local n p used=" " names=${*:-$FO_NODES}
	for n in $FO_NODES; do
		case " $names " in *" $n "*) ;; *) used="$used$(fo_port "$n") " ;; esac
	done
	for n in $names; do
		p=$(rl_free_port)
		while [[ "$used" == *" $p "* ]]; do p=$(rl_free_port); done
		used="$used$p "
		eval "FO_PORT_$n=$p"
	done
}

_fo_cluster_try() { # [LEADER_OPTS...]: 1 with RL_MOUNT_ERR if a mount fails
	local n peers
	mapfile -t peers < <(fo_peer_opts A)
	rl_mount "$A" "$AM" --role leader --name A --listen "$(fo_addr A)" "${peers[@]}" --key "$KEY" "$@" || return 1
	for n in B C; do
		mapfile -t peers < <(fo_peer_opts "$n")
		rl_mount "$(fo_data "$n")" "$(fo_mnt "$n")" --role follower --name "$n" --listen "$(fo_addr "$n")" \
			"${peers[@]}" --key "$KEY" || return 1
	done
}

fo_cluster() { # [LEADER_OPTS...]
	local n try
	[ -e "$KEY" ] || make_key
	[ -n "${FO_PORT_A:-}" ] || fo_ports
	for try in 1 2 3 4 5; do
		_fo_cluster_try "$@" && break
		case $RL_MOUNT_ERR in
		*"unable to listen"*) [ "$try" -lt 5 ] || fail "no free ports for the cluster: $RL_MOUNT_ERR" ;;
		*) fail "mount failed: $RL_MOUNT_ERR" ;;
		esac
		# a port was taken meanwhile (tests run in parallel): start over with others
		note "$RL_MOUNT_ERR; again with other ports"
		for n in A B C; do
			is_mounted "$(fo_mnt "$n")" && rl_stop "$(fo_data "$n")" "$(fo_mnt "$n")"
			rm -rf "$(fo_data "$n")"
		done
		fo_ports $(for n in $FO_NODES; do [[ " ${FO_PINNED:-} " == *" $n "* ]] || echo "$n"; done)
	done
	fo_wait_get 20 "$A" peers.B.connected true
	fo_wait_get 20 "$A" peers.C.connected true
	assert_eq "$(fo_get "$A" role)" leader "A's role"
	assert_eq "$(fo_get "$A" epoch)" 1 "A's epoch"
}

fo_start() { # NAME [OPTS...]: a later start (DATADIR remembers the role)
	local n=$1 peers
	shift
	mapfile -t peers < <(fo_peer_opts "$n")
	rl_restart "$(fo_data "$n")" "$(fo_mnt "$n")" --listen "$(fo_addr "$n")" "${peers[@]}" "$@"
}

fo_stop() { rl_stop "$(fo_data "$1")" "$(fo_mnt "$1")"; }
fo_kill() { rl_kill "$(fo_data "$1")" "$(fo_mnt "$1")"; }

fo_promote() { # NAME [--force]
	local n=$1
	shift
	FO_OUT=$("$REPFS" promote "$(fo_mnt "$n")" "$@" 2>&1)
	FO_RC=$?
	note "repfs promote $n $*: exit $FO_RC: $FO_OUT"
}

# fo_erofs MNT WHAT: every kind of change fails with EROFS; statvfs is ST_RDONLY.
fo_erofs() {
	fo_check_erofs "$1" || fail "$2: the mount $1 is not read-only: $FO_WHY"
}

# fo_check_erofs MNT: the same check; returns 1 with the reasons in FO_WHY
fo_check_erofs() {
	FO_WHY=$(python3 - "$1" <<'PYEOF'
import errno, os, sys
m = sys.argv[1]
bad = []
def expect(what, f):
    try:
        f()
        bad.append("%s succeeded" % what)
    except OSError as e:
        if e.errno != errno.EROFS:
            bad.append("%s: %s (not EROFS)" % (what, os.strerror(e.errno)))
tag = "fo-probe-%d" % os.getpid()
expect("create", lambda: os.close(os.open(os.path.join(m, tag), os.O_WRONLY | os.O_CREAT, 0o644)))
expect("mkdir", lambda: os.mkdir(os.path.join(m, tag + ".d")))
files = [os.path.join(r, f) for r, _, fs in os.walk(m) for f in fs][:1]
for f in files:
    if os.path.isfile(f) and not os.path.islink(f):
        expect("open for writing", lambda: os.close(os.open(f, os.O_WRONLY | os.O_APPEND)))
if not os.statvfs(m).f_flag & os.ST_RDONLY:
    bad.append("statvfs does not say ST_RDONLY")
if os.path.lexists(os.path.join(m, tag)) or os.path.lexists(os.path.join(m, tag + ".d")):
    bad.append("a probe was created")
print("; ".join(bad))
sys.exit(1 if bad else 0)
PYEOF
)
}

fo_writes() { # MNT WHAT
	local out
	out=$(python3 - "$1" <<'PYEOF'
import os, sys
p = os.path.join(sys.argv[1], "fo-write-%d" % os.getpid())
fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"written\n")
os.fsync(fd)
os.close(fd)
os.unlink(p)
PYEOF
) || fail "$2: a write on $1 failed: $out"
}

_fo_leader_is() { [ "$(fo_get "$1" leader)" = "$2" ]; }
fo_wait_leader() { # SECS NAME LEADER
	local d
	d=$(fo_data "$2")
	local end=$(($(now_ms) + $1 * 1000))
	until _fo_leader_is "$d" "$3"; do
		[ "$(now_ms)" -lt "$end" ] ||
			fail "after $1 s $2 follows '$(fo_get "$d" leader)', not '$3' (role $(fo_get "$d" role), following $(fo_get "$d" following), last_error '$(fo_get "$d" last_error)')"
		sleep 0.05
	done
}

fo_acked() { # FILE: last "ack N" of a writer's output
	local n
	n=$(awk '$1 == "ack" { n = $2 } END { print n + 0 }' "$1")
	echo "$n"
}
