#!/bin/bash
# failover_old_epoch_replay.sh -- G6, G7, G8 (issue 5, last test): traffic of
# an old epoch, recorded by a proxy before a failover and replayed after it,
# is refused, changes nothing, and is reported; the cluster goes on.
#
# A leads epoch 1; B and C follow. C reaches A only through the proxy "ca",
# which records every connection whole (tcpproxy -D: both directions, as each
# side sent them), and reaches B only through the proxy "cb". The epoch-1
# connection A <-> C carries a file x ("epoch 1"), a 200 KB file and fsync'd
# records. Then A is killed (-9), B is promoted (epoch 2) and overwrites x
# ("epoch 2"), C follows B through "cb". Then, one after the other:
#
#   1. "cb" injects A's recorded epoch-1 frames (records, heartbeats) into the
#      live B -> C stream (tcpproxy inject down);
#   2. "cb" injects C's recorded epoch-1 frames (its HELLO and acknowledgements
#      to A) into the live C -> B stream (inject up);
#   3. "ca", at A's address, answers C with the whole recorded epoch-1 session
#      of A, handshake included (playback down): an old leader's session
#      replayed to C;
#   4. "cb" sends B the whole recorded epoch-1 session of C, handshake
#      included (playback up): an old follower's session replayed to the new
#      leader;
#   5. at A's address, a key holder (tests/helpers/oldepoch) replays A's
#      epoch 1 from A's own log: its handshake succeeds, then WELCOME of
#      epoch 1, A's records and heartbeats of epoch 1 -- what no proxy can
#      do, so that the replication protocol's own fencing is what refuses it;
#   5b. the same key holder claims epoch 2 in its WELCOME and sends no record
#      but heartbeats of epoch 1: C refuses the heartbeats.
#
# The channel gives every connection fresh keys (docs/protocol.md), so 1 and 2
# must fail to decrypt ("message failed authentication") and end the
# connection, and 3 and 4 must fail in the handshake (the recorded proofs
# cover the old connection's ephemeral keys: "does not hold the cluster key,
# or the handshake was tampered with"); 5 must be refused at its WELCOME
# ("it leads epoch 1, below ours (2)"). Each node must say so in its log, for
# every connection it drops. Throughout, C's log stays a prefix of B's (byte
# for byte), both verify, C stays at epoch 2, x stays "epoch 2", no fault is
# reported; at the end, with the proxies passing again, C follows B, fsync'd
# writes on B (quorum=1: C's acknowledgements) complete, B and C have equal
# logs and trees, and the records after A's last one are all of epoch 2.
#
# Every connection dropped for frames that fail to decrypt must leave its
# reason in the log (checked as soft failures, so that everything else is
# still checked when one is missing).
. "$(dirname "$0")/../integration/failover_lib.sh"

REC=$T/rec
mkdir -p "$REC"
fo_ports
fo_proxy ca "$FO_PORT_A" -D "$REC"
PCA=$FO_PROXY_PORT
fo_proxy cb "$FO_PORT_B"
PCB=$FO_PROXY_PORT
FO_VIA_C_A=$PCA FO_VIA_C_B=$PCB FO_PINNED="A B"
fo_cluster --sync quorum=1
assert_eq "$(fo_get "$C" leader_addr)" "127.0.0.1:$PCA" "where C reaches A"

count() { # PATTERN FILE: lines of FILE holding PATTERN (a fixed string)
	grep -cF -- "$1" "$2" 2>/dev/null || true
}
CLOG=$C/repfs.log BLOG=$B/repfs.log
BADMSG="message failed authentication"
BADKEY="peer does not hold the cluster key, or the handshake was tampered with"

note "epoch 1: A writes, C gets it through the recording proxy"
mkdir "$AM/d" && echo "epoch 1" >"$AM/d/x" || fail "writes on A failed"
head -c 200000 /dev/urandom >"$AM/d/big" || fail "a write on A failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$AM/records1" 30) || fail "fsync'd writes on A failed: $out"
fo_wait_converged 20 "$A" "$B" "$C"
a_seq=$(fo_get "$A" seq)

# the recorded connection A <-> C: the biggest one, a whole session from the handshake on
K=$(cd "$REC" && ls -S -- *.down 2>/dev/null | head -n 1)
K=${K%.down}
[ -n "$K" ] || fail "the proxy recorded no connection"
# a few heartbeats (and C's acknowledgements) more: epoch-1 traffic of every kind
size0=$(stat -c %s "$REC/$K.down")
_grown() { [ "$(stat -c %s "$REC/$K.down")" -ge $((size0 + 3 * 55)) ]; }
wait_for 10 _grown
out=$(python3 - "$REC/$K" <<'PYEOF'
import sys
def frames(path):
    b = open(path, "rb").read()
    at, out = 0, []
    while at + 5 <= len(b):
        n = int.from_bytes(b[at:at + 4], "little")
        if at + 5 + n > len(b):
            break
        out.append((b[at + 4], n))
        at += 5 + n
    return out
down, up = frames(sys.argv[1] + ".down"), frames(sys.argv[1] + ".up")
bad = []
if not down or down[0] != (2, 68):
    bad.append("the down direction does not start with a REPLY: %r" % down[:2])
if not up or up[0] != (1, 68):
    bad.append("the up direction does not start with a HELLO: %r" % up[:2])
sealed_down = [n for t, n in down if t == 6]
sealed_up = [n for t, n in up if t == 6]
if sum(sealed_down) < 200000:
    bad.append("only %d bytes of sealed frames down: not the connection that carried epoch 1" % sum(sealed_down))
if len(sealed_up) < 3:
    bad.append("only %d sealed frames up" % len(sealed_up))
print("; ".join(bad) if bad else "%d sealed frames down (%d bytes), %d up" % (len(sealed_down), sum(sealed_down), len(sealed_up)))
sys.exit(1 if bad else 0)
PYEOF
) || fail "recording $REC/$K: $out"
note "recorded epoch-1 connection $K: $out"

note "failover: kill -9 of A, promotion of B, C follows B through cb"
fo_kill A
fo_wait_get 10 "$B" following false
fo_wait_get 10 "$C" following false
fo_promote B
case $FO_OUT in "'B' is the leader of epoch 2 "*) ;; *) fail "repfs promote B (exit $FO_RC) said: $FO_OUT" ;; esac
fo_wait_leader 20 C B
assert_eq "$(fo_get "$C" leader_addr)" "127.0.0.1:$PCB" "where C reaches B"
echo "epoch 2" >"$BM/d/x" || fail "a write on the new leader B failed"
out=$(timeout 20 "$HELPERS/ackwriter" write "$BM/records2" 20) || fail "fsync'd writes on B failed: $out"
fo_wait_converged 20 "$B" "$C"
rl_log_prefix "$A" "$B"
assert_eq "$(fo_get "$C" epoch)" 2 "C's epoch after the failover"

# after each replay: nothing of it reached C's or B's store
check_unchanged() { # WHEN
	local out
	out=$("$REPFS" log "$C" --verify 2>&1) || fail "$1: repfs log --verify of C failed: $out"
	out=$("$REPFS" log "$B" --verify 2>&1) || fail "$1: repfs log --verify of B failed: $out"
	rl_log_prefix "$C" "$B"
	assert_eq "$(fo_get "$C" epoch)" 2 "$1: C's epoch"
	assert_eq "$(fo_get "$C" log_epoch)" 2 "$1: the epoch of C's last record"
	assert_eq "$(fo_get "$C" faults)" "[]" "$1: faults in C's status"
	assert_eq "$(fo_get "$B" faults)" "[]" "$1: faults in B's status"
	assert_eq "$(fo_get "$B" role)" leader "$1: B's role"
	assert_eq "$(cat "$CM/d/x")" "epoch 2" "$1: x on C"
	grep -F "refused the record" "$CLOG" && fail "$1: a replayed record got as far as C's log checks"
	return 0
}

# injected_conns PROXY DIR: how many connections PROXY injected frames into (DIR: down or up)
injected_conns() {
	awk -v d="$2" '$4 == "fault" && $5 == "inject" && $6 == d { print $3 }' "$T/proxy.$1.out" | sort -u | wc -l
}

# --- 1. A's epoch-1 frames injected into the live B -> C connection
note "1. cb injects A's recorded epoch-1 frames into B -> C"
n_bad=$(count "connection to the leader ended: $BADMSG" "$CLOG")
n_any=$(count "$BADMSG" "$CLOG")
fo_proxy_mode cb inject 1 down "$REC/$K"
# traffic for B -> C besides heartbeats (no fsync: C may be refused meanwhile)
echo "epoch 2, while old frames are injected" >"$BM/d/y" || fail "a write on B failed"
# the live connection, then new ones (each gets an old frame before B's WELCOME)
_refused_down() {
	[ "$(injected_conns cb down)" -ge 3 ] &&
		[ "$(count "connection to the leader ended: $BADMSG" "$CLOG")" -ge $((n_bad + 1)) ]
}
wait_for 20 _refused_down
assert_eq "$(fo_get "$C" following)" false "C's following while old frames are injected into every connection"
check_unchanged "after old frames were injected into B -> C"
note "C refused them: $(grep -F "$BADMSG" "$CLOG" | tail -n 1)"
fo_proxy_mode cb pass
fo_wait_get 20 "$C" following true
inj=$(injected_conns cb down)
told=$(($(count "$BADMSG" "$CLOG") - n_any))
note "C refused $inj connections carrying injected epoch-1 frames; its log names $told of them"
# every connection C dropped must leave a reason (G6: "refused with a clear
# message"; docs/protocol.md 5, -EBADMSG: "report a fault naming the peer")
[ "$told" -ge "$inj" ] || soft_fail "C dropped $inj connections to B whose frames failed authentication (injected \
epoch-1 frames), but its log gives the reason for only $told: a connection whose first message (B's WELCOME) fails \
to decrypt ends without a word in C's log or last_error (replication/follower.c, follow_once: 'if (ret != 1) goto out')"

# --- 2. C's epoch-1 frames (HELLO, acknowledgements to A) injected into C -> B
note "2. cb injects C's recorded epoch-1 frames into C -> B"
fo_wait_get 20 "$B" peers.C.connected true
b_lines=$(wc -l <"$BLOG")
fo_proxy_mode cb inject 1 up "$REC/$K"
_refused_up() {
	[ "$(injected_conns cb up)" -ge 3 ] && [ "$(fo_get "$B" peers.C.connected)" = false ]
}
wait_for 20 _refused_up
check_unchanged "after old frames were injected into C -> B"
fo_proxy_mode cb pass
fo_wait_get 20 "$C" following true
fo_wait_get 20 "$B" peers.C.connected true
note "B's log while C's old frames were injected: $(tail -n +"$((b_lines + 1))" "$BLOG" | cut -d' ' -f3- | sort | uniq -c | tr -s ' \n' ' ')"
# the leader must say why it dropped those connections (as above)
tail -n +"$((b_lines + 1))" "$BLOG" | grep -qF "$BADMSG" || soft_fail "B dropped $(injected_conns cb up) \
connections from C carrying injected epoch-1 frames without saying why: the acknowledgement reader ends the \
connection on an undecryptable frame without a word (replication/repl.c, ack_main), and an undecryptable \
first message is logged as 'peer at ADDR did not say hello' (conn_main), not as a failed authentication"

# --- 3. A's whole epoch-1 session replayed to C, at A's address
note "3. ca answers C with A's whole recorded epoch-1 session (playback down)"
n_key=$(count "peer '127.0.0.1:$PCA' refused: $BADKEY" "$CLOG")
fo_proxy_mode ca playback 1 down "$REC/$K"
# C looks for a leader again (A's address first) once cb cuts it off
fo_proxy_mode cb cut 0
_refused_session_c() {
	[ "$(count "playback down" "$T/proxy.ca.out")" -ge 2 ] &&
		[ "$(count "peer '127.0.0.1:$PCA' refused: $BADKEY" "$CLOG")" -ge $((n_key + 2)) ]
}
wait_for 20 _refused_session_c
assert_eq "$(fo_get "$C" following)" false "C's following while A's old session is replayed to it"
check_unchanged "after A's epoch-1 session was replayed to C"
note "C refused it: $(grep -F "127.0.0.1:$PCA' refused" "$CLOG" | tail -n 1)"

# --- 4. C's whole epoch-1 session replayed to B, the new leader
note "4. cb sends B C's whole recorded epoch-1 session (playback up)"
n_refb=$(count "$BADKEY" "$BLOG")
fo_proxy_mode cb playback 1 up "$REC/$K"
# C's own attempts through cb are what starts each replayed session
_refused_session_b() {
	[ "$(count "playback up" "$T/proxy.cb.out")" -ge 2 ] &&
		[ "$(count "$BADKEY" "$BLOG")" -ge $((n_refb + 2)) ]
}
wait_for 20 _refused_session_b
assert_eq "$(fo_get "$B" peers.C.connected)" false "C's connection on B while C's old session is replayed to B"
check_unchanged "after C's epoch-1 session was replayed to B"
note "B refused it: $(grep -F "$BADKEY" "$BLOG" | tail -n 1)"

# --- 5. a key holder replays A's epoch 1 at A's address
note "5. at A's address, a key holder replays A's epoch 1 from A's log (oldepoch): WELCOME, records, heartbeats"
n_fence=$(count "refused the leader at '127.0.0.1:$PCA': it leads epoch 1, below ours (2)" "$CLOG")
fo_proxy_mode cb cut 0
fo_proxy_mode ca pass
rl_bg "$HELPERS/oldepoch" "$KEY" "$FO_PORT_A" "$A/log" A >"$T/oldepoch.out" 2>&1
OE=$RL_BG_PID
_oe_listening() { grep -q "^listening " "$T/oldepoch.out" || { pid_alive "$OE" || fail "oldepoch: $(cat "$T/oldepoch.out")"; false; }; }
wait_for 10 _oe_listening
_fenced() {
	[ "$(count "welcome epoch 1 " "$T/oldepoch.out")" -ge 2 ] &&
		[ "$(count "refused the leader at '127.0.0.1:$PCA': it leads epoch 1, below ours (2)" "$CLOG")" -ge $((n_fence + 2)) ]
}
wait_for 20 _fenced
assert_eq "$(fo_get "$C" following)" false "C's following while A's epoch is replayed to it"
check_unchanged "after A's epoch 1 was replayed to C by a key holder"
grep -F "hello epoch 2 seq $(fo_get "$C" seq) name C" "$T/oldepoch.out" >/dev/null ||
	fail "oldepoch did not hear C's HELLO of epoch 2: $(head -n 5 "$T/oldepoch.out" | tr '\n' '|')"
note "C refused it: $(grep -F "it leads epoch 1" "$CLOG" | tail -n 1)"
rl_bg_kill "$OE"

# --- 5b. the same key holder lies in its WELCOME (epoch 2) but heartbeats epoch 1
note "5b. a key holder that claims epoch 2 in its WELCOME but heartbeats epoch 1"
OLDEPOCH_LIE=1 rl_bg "$HELPERS/oldepoch" "$KEY" "$FO_PORT_A" "$A/log" A >"$T/oldepoch2.out" 2>&1
OE=$RL_BG_PID
_oe2_listening() { grep -q "^listening " "$T/oldepoch2.out" || { pid_alive "$OE" || fail "oldepoch: $(cat "$T/oldepoch2.out")"; false; }; }
wait_for 10 _oe2_listening
_hb_fenced() { [ "$(count "refused a heartbeat of epoch 1, below ours (2)" "$CLOG")" -ge 2 ]; }
wait_for 20 _hb_fenced
check_unchanged "after heartbeats of epoch 1 under a WELCOME of epoch 2"
note "C refused them: $(grep -F "refused a heartbeat of epoch 1" "$CLOG" | tail -n 1)"
rl_bg_kill "$OE"

# --- heal: the cluster goes on replicating
note "the proxies pass again: C follows B, fsync'd writes on B complete"
fo_proxy_mode cb pass
fo_proxy_mode ca pass
fo_wait_leader 20 C B
out=$(timeout 20 "$HELPERS/ackwriter" write "$BM/records3" 20) ||
	fail "fsync'd writes on B (quorum=1, C's acknowledgements) failed after the replays: $out"
echo "epoch 2, after the replays" >"$BM/d/z" || fail "a write on B failed"
fo_wait_converged 20 "$B" "$C"
check_unchanged "at the end"
rl_log_prefix "$C" "$B" equal
treecmp "$BM" "$CM" "$B/tree" "$C/tree" || fail "B and C differ at the end"
compare3 "$CM" "$C" "on C at the end"
compare3 "$BM" "$B" "on B at the end"
for f in records1:30 records2:20 records3:20; do
	out=$("$HELPERS/ackwriter" check "$CM/${f%:*}" "${f#*:}") || fail "C's ${f%:*}: $out"
done
assert_eq "$(cat "$CM/d/y")" "epoch 2, while old frames are injected" "y on C"
assert_eq "$(fo_get "$C" last_error)" "" "C's last_error at the end"
# the new history: A's epoch-1 log, then only epoch-2 records (the branch first)
out=$("$REPFS" log "$B" | awk -v s="$a_seq" '$2 + 0 > s + 0 && $1 != 2 { print; exit 1 }') ||
	fail "B's log holds a record of another epoch after seq $a_seq: $out"
[ "$("$REPFS" log "$B" | awk -v s="$a_seq" '$2 + 0 > s + 0' | wc -l)" -gt 40 ] ||
	fail "B's log has too few records after seq $a_seq: $("$REPFS" log "$B" | tail -n 3)"
note "B and C: $("$REPFS" log "$C" --verify); $(count "fault inject" "$T/proxy.cb.out") frames injected, \
$(count "playback down" "$T/proxy.ca.out") + $(count "playback up" "$T/proxy.cb.out") recorded sessions replayed, \
$(count "welcome epoch 1 " "$T/oldepoch.out") epoch-1 sessions by a key holder"
exit 0
