#!/bin/bash
# cli.sh -- the command surface scripts rely on (DESIGN.md section 2): keygen,
# status (JSON fields, by DATADIR and by MOUNTPOINT, running and stopped, and
# reliably: many calls in a row all succeed), log (--from, --verify), replay,
# the control socket's and key file's modes, status while writes go on, and
# status, promote and a stop while a control client connects and says nothing.
. "$(dirname "$0")/lib.sh" || exit 1

D=$T/data
M=$T/mnt
"$REPFS" keygen "$KEY" || fail "keygen failed"
check_eq "$(stat -c %a "$KEY")" 600 "mode of a new key file"
check_eq "$(stat -c %s "$KEY")" 32 "size of a new key file"
NODE_NAME=alpha start_leader "$D" "$M"
check_eq "$(stat -c %a "$D/ctl.sock")" 600 "mode of the control socket"

# status: one JSON object with the documented fields, by DATADIR and by MOUNTPOINT
for target in "$D" "$M"; do
	st=$("$REPFS" status "$target" --json) || fail "status '$target' --json failed"
	python3 - "$st" <<'EOF' || soft_fail "status --json of '$target' lacks fields or is not one JSON object: $st"
import json, sys
d = json.loads(sys.argv[1])
need = {"name": str, "role": str, "epoch": int, "seq": int, "applied": int, "leader": (str, type(None)), "peers": list}
bad = [k for k, t in need.items() if not isinstance(d.get(k, KeyError), t)]
if bad or d["name"] != "alpha" or d["role"] != "leader" or d["epoch"] < 1 or d["applied"] > d["seq"]:
    print("bad fields:", bad, d)
    sys.exit(1)
EOF
	check_eq "$(printf '%s\n' "$st" | grep -c .)" 1 "status --json is one line"
done
human=$("$REPFS" status "$M") || fail "status (human) failed"
echo "$human" | grep -q "alpha" || soft_fail "human status does not name the node: $human"

# status is reliable: every one of many calls in a row succeeds, also while writing
( for i in $(seq 1 2000); do echo "line $i"; done >"$M/busy" ) &
wpid=$!
track_pid "$wpid"
bad=0
for i in $(seq 1 150); do
	out=$("$REPFS" status "$D" --json 2>&1) || { bad=$((bad + 1)); last=$out; }
done
wait "$wpid"
[ "$bad" = 0 ] || soft_fail "$bad of 150 'repfs status' calls failed, e.g.: $last"

# seq grows by the records written; log --from shows exactly the new ones
s0=$(json_get "$(status_json "$D")" seq)
mkdir "$M/new-dir"
echo x >"$M/new-dir/new-file"
sync -f "$M/new-dir/new-file" 2>/dev/null
s1=$(json_get "$(status_json "$D")" seq)
[ "$s1" -gt "$s0" ] || soft_fail "seq did not grow ($s0 -> $s1)"
from=$("$REPFS" log "$D" --from $((s0 + 1))) || fail "repfs log --from failed"
echo "$from" | grep -q "create /new-dir " || soft_fail "log --from $((s0 + 1)) lacks the mkdir: $from"
echo "$from" | grep -q "create /new-dir/new-file " || soft_fail "log --from lacks the create: $from"
first=$(echo "$from" | head -n 1 | cut -d' ' -f2)
check_eq "$first" "$((s0 + 1))" "first seq printed by log --from $((s0 + 1))"
check_eq "$("$REPFS" log "$D" --from 999999999 | grep -c .)" 0 "log --from past the end prints nothing"
v=$("$REPFS" log "$D" --verify) || fail "log --verify failed: $v"
case "$v" in *"intact"*) ;; *) soft_fail "log --verify does not say intact: $v" ;; esac
status_durable() { st=$("$REPFS" status "$D" --json 2>/dev/null) && [ "$(json_get "$st" durable)" -ge "$s1" ]; }
wait_for 10 status_durable

# a client that connects and says nothing holds no other request: status and
# promote answer at once (they waited for it forever), and the stop below ends
# at once with another connected just before it (the daemon drops a silent
# client after 5 s: the stop must not wait for that)
silent_client() { # NAME: connects to the control socket and says nothing; sets SILENT
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); open(sys.argv[2], "w").close(); time.sleep(30)' \
		"$D/ctl.sock" "$T/$1.connected" &
	SILENT=$!
	track_pid "$SILENT"
	wait_for 10 test -e "$T/$1.connected"
}
silent_client silent1
timeout 3 "$REPFS" status "$D" --json >/dev/null || soft_fail "status waited for a silent control client (rc $?)"
out=$(timeout 3 "$REPFS" promote "$D" 2>&1)
rc=$?
if [ "$rc" = 124 ]; then
	soft_fail "promote waited for a silent control client"
else
	case "$out" in *"already the leader"*) ;; *) soft_fail "promote of a standalone leader: rc $rc, '$out'" ;; esac
fi

# replay output line
out=$("$REPFS" replay "$D" "$T/r") || fail "replay failed: $out"
case "$out" in "replayed "*" records ("*" skipped) into '$T/r'") ;; *) soft_fail "replay output: $out" ;; esac
[ "$(cat "$T/r/new-dir/new-file")" = x ] || soft_fail "replay lacks new-dir/new-file"

# stopped node: status from the state file says so
silent_client silent2
t0=$(now_ms)
stop_node "$M" "$D"
took=$(($(now_ms) - t0))
[ "$took" -lt 4000 ] || soft_fail "the stop waited for a silent control client ($took ms)"
kill "$SILENT" 2>/dev/null
st=$("$REPFS" status "$D" --json) || soft_fail "status of a stopped node failed"
check_eq "$(json_get "$st" running)" False "status of a stopped node: running"
check_eq "$(json_get "$st" name)" alpha "status of a stopped node: name"
[ -e "$D/ctl.sock" ] && soft_fail "the control socket is left behind after a clean stop"
"$REPFS" status "$M" --json >/dev/null 2>&1 && soft_fail "status of an unmounted mountpoint succeeded"
exit 0
