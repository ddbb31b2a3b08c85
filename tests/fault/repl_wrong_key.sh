#!/bin/bash
# repl_wrong_key.sh -- G7/G12: a follower started with another cluster key
# gets nothing: its tree stays empty, its status says the key was refused,
# the leader logs the refusal, and the leader's followers are unaffected. A
# client without any key that talks garbage is refused too and reads nothing
# of the data. No output or log ever holds either key (raw, hex or base64).
. "$(dirname "$0")/../integration/repl_lib.sh"

L=$T/l F=$T/f G=$T/g
LM=$T/lm FM=$T/fm GM=$T/gm
KEY2=$T/key2
OUT=$T/outputs
mkdir -p "$OUT"

make_key
"$REPFS" keygen "$KEY2" >"$OUT/keygen2" 2>&1 || fail "repfs keygen failed"
cmp -s "$KEY" "$KEY2" && fail "two keygens made the same key"

rl_leader L "$L" "$LM"
echo "$RL_MOUNT_ERR" >"$OUT/mount.l"
SECRET="secret-content-$RANDOM$RANDOM"
mkdir "$LM/dir"
echo "$SECRET" >"$LM/dir/file"
rl_follower G "$G" "$GM" "$RL_PORT"
echo "$RL_MOUNT_ERR" >"$OUT/mount.g"
rl_wait_converged 20 "$L" "$G"

note "a follower with another key"
RL_KEY=$KEY2 rl_follower F "$F" "$FM" "$RL_PORT"
echo "$RL_MOUNT_ERR" >"$OUT/mount.f"
_f_refused() { [ -n "$(rl_py get "$F" last_error)" ]; }
wait_for 20 _f_refused
err=$(rl_get "$F" last_error)
note "F's last_error: $err"
case $(echo "$err" | tr 'A-Z' 'a-z') in
*key*) ;;
*) fail "F's last_error does not mention the key: $err" ;;
esac
_refusal_logged() { grep -q "refused a connection from 127.0.0.1:[0-9]*: .*key" "$L/repfs.log"; }
wait_for 10 _refusal_logged
grep "refused a connection" "$L/repfs.log" | head -n 1 | sed 's/^/leader: /' >&2

echo "more $SECRET" >"$LM/dir/more"
sync "$LM/dir/more" || fail "fsync on the leader failed (G should hold it)"
_leader_tried_again() { [ "$(grep -c "refused a connection" "$L/repfs.log")" -ge 2 ]; }
wait_for 15 _leader_tried_again
assert_eq "$(ls -A "$FM")" "" "F's tree"
assert_eq "$(ls -A "$F/tree")" "" "F's tree on disk"
assert_eq "$(rl_get "$F" seq)" 0 "F's seq"
assert_eq "$(rl_get "$F" applied)" 0 "F's applied position"
assert_eq "$(rl_get "$F" following)" false "F following"
assert_eq "$(rl_get "$F" leader)" null "F's leader"
peers=$(rl_get "$L" peers)
case $peers in *'"F"'*) fail "the leader lists F among its peers: $peers" ;; esac
rl_wait_converged 20 "$L" "$G"
treecmp "$LM" "$GM" || fail "the follower with the right key differs from the leader"

note "a client without the key, talking garbage"
python3 - "$RL_PORT" "$SECRET" >"$OUT/raw" 2>&1 <<'PYEOF' || fail "raw client: $(cat "$OUT/raw")"
import os, socket, sys, time
port, secret = int(sys.argv[1]), sys.argv[2].encode()
got = b""
for payload in (b"\x05\x00\x00\x00\x01hello", os.urandom(300), b"GET / HTTP/1.0\r\n\r\n"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(payload)
    s.settimeout(6)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
if secret in got:
    print("the leader sent file content to a client without the key")
    sys.exit(1)
print("received %d bytes, no content" % len(got))
PYEOF
_refused_raw() { [ "$(grep -c "refused a connection\|did not say hello" "$L/repfs.log")" -ge 5 ]; }
wait_for 15 _refused_raw
[ "$(rl_get "$L" running)" = True ] || [ "$(rl_get "$L" running)" = true ] || fail "the leader is not running after the garbage"

note "F's data directory refuses the cluster key now (it was made with the other one)"
rl_stop "$F" "$FM"
if out=$("$REPFS" mount --key "$KEY" --peer "127.0.0.1:$RL_PORT" "$F" "$FM" 2>&1); then
	track_mount "$FM"
	fail "F's data directory accepted another key than its own"
fi
echo "$out" >"$OUT/mount.f.wrongkey"
[ "$(echo "$out" | wc -l)" = 1 ] || fail "not a one-line error: $out"
case $out in *key*) ;; *) fail "the error does not name the key: $out" ;; esac

note "no key material anywhere"
for d in "$L" "$G" "$F"; do
	rl_py status "$d" >"$OUT/status.$(basename "$d").json" 2>&1 || true
	"$REPFS" status "$d" >"$OUT/status.$(basename "$d").txt" 2>&1 || true
	"$REPFS" log "$d" >"$OUT/log.$(basename "$d")" 2>&1 || true
	"$REPFS" log "$d" --verify >"$OUT/verify.$(basename "$d")" 2>&1 || true
done
rl_no_key_leak "$KEY" "$OUT"/* "$L/repfs.log" "$G/repfs.log" "$F/repfs.log" "$L/state" "$F/state"
rl_no_key_leak "$KEY2" "$OUT"/* "$L/repfs.log" "$G/repfs.log" "$F/repfs.log" "$L/state" "$F/state"
exit 0
