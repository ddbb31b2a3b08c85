#!/bin/bash
# bad_input.sh -- G12: wrong/missing/unsafe keys, a corrupt state file, a
# DATADIR or mountpoint in use, malformed options: each gets a clear one-line
# error ("repfs: " + lower case, the subject quoted) and a non-zero exit,
# nothing is mounted or changed, and no key bytes appear anywhere.
. "$(dirname "$0")/lib.sh" || exit 1

D=$T/data
M=$T/mnt
start_leader "$D" "$M"
mkdir "$M/dir"
echo precious >"$M/dir/file"
stop_node "$M" "$D"
"$REPFS" keygen "$T/key2" || fail "keygen of a second key failed"
OUTS=$T/outputs
: >"$OUTS"

snapshot() { # DIR
	rm -rf "$1"
	mkdir -p "$1"
	cp -a "$D/tree" "$D/state" "$D/log" "$1/"
}
unchanged() { # DIR WHEN
	treecmp --ignore holes "$1/tree" "$D/tree" >/dev/null || soft_fail "the tree changed $2"
	cmp -s "$1/state" "$D/state" || soft_fail "the state file changed $2"
	diff -r "$1/log" "$D/log" >/dev/null || soft_fail "the log changed $2"
}
snapshot "$T/snap"

# refused DESC WANT QUOTED CMD...: CMD must fail cleanly with a one-line error
# containing WANT (a grep -i pattern; "" for any); QUOTED=1: the error quotes its subject.
refused() {
	local desc=$1 want=$2 quoted=$3 out rc
	shift 3
	out=$(timeout 20 "$@" 2>&1)
	rc=$?
	printf '%s\n' "$out" >>"$OUTS"
	if [ "$rc" = 0 ]; then
		soft_fail "$desc: exit 0, want an error (output: $out)"
		is_mounted "$M" && { stop_node "$M" "$D"; }
		return
	fi
	[ "$rc" -lt 124 ] || soft_fail "$desc: exit $rc (crash or hang?): $out"
	[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && [ -n "$out" ] || soft_fail "$desc: want one line, got: $out"
	case "$out" in "repfs: "[a-z\'-]*) ;; *) soft_fail "$desc: want 'repfs: ' and lower case: $out" ;; esac
	[ "$quoted" = 1 ] && ! printf '%s' "$out" | grep -q "'[^']*'" && soft_fail "$desc: subject not quoted: $out"
	[ -n "$want" ] && ! printf '%s' "$out" | grep -qi -- "$want" && soft_fail "$desc: error does not say '$want': $out"
	is_mounted "$M" && { soft_fail "$desc: something got mounted on '$M'"; fusermount3 -u "$M"; }
	[ -z "$(daemon_pid "$D")" ] || soft_fail "$desc: a process holds '$D/lock' after the refusal"
	if [ -n "${ABSENT:-}" ] && [ -e "$ABSENT" ]; then
		soft_fail "$desc: the refused command created '$ABSENT' ($(ls -A "$ABSENT" | tr '\n' ' '))"
		rm -rf "$ABSENT"
	fi
}

mkdir -p "$M"
track_mount "$M"

# --- keys ---
refused "wrong key" "not the key" 1 "$REPFS" mount --key "$T/key2" "$D" "$M"
refused "missing key file" "does not exist" 1 "$REPFS" mount --key "$T/nokey" "$D" "$M"
cp "$KEY" "$T/key644"
chmod 644 "$T/key644"
refused "key file mode 0644" "readable" 1 "$REPFS" mount --key "$T/key644" "$D" "$M"
cp "$KEY" "$T/key640"
chmod 640 "$T/key640"
refused "key file mode 0640" "readable" 1 "$REPFS" mount --key "$T/key640" "$D" "$M"
echo "not a key" >"$T/junkkey"
chmod 600 "$T/junkkey"
refused "key file that is not a key" "key" 1 "$REPFS" mount --key "$T/junkkey" "$D" "$M"
: >"$T/emptykey"
chmod 600 "$T/emptykey"
refused "empty key file" "key" 1 "$REPFS" mount --key "$T/emptykey" "$D" "$M"
refused "key file is a directory" "key" 1 "$REPFS" mount --key "$T" "$D" "$M"
refused "no --key" "key" 0 "$REPFS" mount "$D" "$M"
refused "repfs log with the wrong key" "key" 1 "$REPFS" log "$D" --key "$T/key2"
refused "repfs replay with the wrong key" "key" 1 "$REPFS" replay "$D" "$T/out-wrongkey" --key "$T/key2"
refused "keygen over an existing key" "exists" 1 "$REPFS" keygen "$KEY"
unchanged "$T/snap" "after refused key checks"

# --- state file ---
cp -a "$D/state" "$T/state.good"
sed -i 's/^name \(.\)/name X/' "$D/state"
cmp -s "$D/state" "$T/state.good" && fail "unable to corrupt the state file for the test"
cp -a "$D/state" "$T/state.bad"
refused "corrupt state file" "state" 1 "$REPFS" mount --key "$KEY" "$D" "$M"
cmp -s "$D/state" "$T/state.bad" || soft_fail "the refused mount rewrote the corrupt state file"
head -c 20 "$T/state.good" >"$D/state"
refused "truncated state file" "state" 1 "$REPFS" mount --key "$KEY" "$D" "$M"
: >"$D/state"
refused "empty state file" "state" 1 "$REPFS" mount --key "$KEY" "$D" "$M"
cp -a "$T/state.good" "$D/state"
unchanged "$T/snap" "after refused state checks"

# --- in use ---
start_leader "$D" "$M"
mkdir -p "$T/mnt2"
track_mount "$T/mnt2"
out=$("$REPFS" mount --key "$KEY" "$D" "$T/mnt2" 2>&1) && soft_fail "a second daemon on a DATADIR in use started"
printf '%s\n' "$out" >>"$OUTS"
is_mounted "$T/mnt2" && { soft_fail "DATADIR in use: mounted a second time"; fusermount3 -u "$T/mnt2"; }
case "$out" in "repfs: "*"in use"*) ;; *) soft_fail "DATADIR in use: unclear error: $out" ;; esac
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || soft_fail "DATADIR in use: error is not one line: $out"
out=$("$REPFS" mount --role leader --key "$KEY" "$T/data2" "$M" 2>&1) && soft_fail "mount onto a mountpoint in use succeeded"
printf '%s\n' "$out" >>"$OUTS"
case "$out" in "repfs: "*"'$M'"*"in use"* | "repfs: mountpoint '"*"in use"*) ;; *) soft_fail "mountpoint in use: unclear error: $out" ;; esac
[ -e "$T/data2" ] && soft_fail "a refused mount (mountpoint in use) created its DATADIR"
[ "$(cat "$M/dir/file")" = precious ] || soft_fail "the running mount was disturbed by the refused mounts"
status_json "$D" >>"$OUTS"
"$REPFS" status "$M" >>"$OUTS" 2>&1
stop_node "$M" "$D"
snapshot "$T/snap"

# --- malformed options (on a DATADIR that must not even be created) ---
N=$T/never
ABSENT=$N
refused "--role boss" "boss" 1 "$REPFS" mount --role boss --key "$KEY" "$N" "$M"
refused "--sync bogus" "bogus" 1 "$REPFS" mount --role leader --sync bogus --key "$KEY" "$N" "$M"
refused "--sync quorum=0" "quorum=0" 1 "$REPFS" mount --role leader --sync quorum=0 --key "$KEY" "$N" "$M"
refused "--sync quorum=x" "quorum=x" 1 "$REPFS" mount --role leader --sync quorum=x --key "$KEY" "$N" "$M"
refused "--commit maybe" "maybe" 1 "$REPFS" mount --role leader --commit maybe --key "$KEY" "$N" "$M"
refused "--heartbeat -5" "-5" 1 "$REPFS" mount --role leader --heartbeat -5 --key "$KEY" "$N" "$M"
refused "--heartbeat abc" "abc" 1 "$REPFS" mount --role leader --heartbeat abc --key "$KEY" "$N" "$M"
refused "--heartbeat 10x" "10x" 1 "$REPFS" mount --role leader --heartbeat 10x --key "$KEY" "$N" "$M"
refused "--leader-timeout 0" "'0'" 1 "$REPFS" mount --role leader --leader-timeout 0 --key "$KEY" "$N" "$M"
refused "--sync-timeout ''" "" 1 "$REPFS" mount --role leader --sync-timeout "" --key "$KEY" "$N" "$M"
refused "--log-retain 0" "log-retain" 1 "$REPFS" mount --role leader --log-retain 0 --key "$KEY" "$N" "$M"
refused "--log-retain lots" "lots" 1 "$REPFS" mount --role leader --log-retain lots --key "$KEY" "$N" "$M"
refused "--peer without a port" "nohost" 1 "$REPFS" mount --role leader --peer nohost --key "$KEY" "$N" "$M"
refused "--listen with a bad port" "99999" 1 "$REPFS" mount --role leader --listen 127.0.0.1:99999 --key "$KEY" "$N" "$M"
refused "--name with a space" "a b" 1 "$REPFS" mount --role leader --name "a b" --key "$KEY" "$N" "$M"
refused "--name too long" "" 1 "$REPFS" mount --role leader --name "$(printf 'n%.0s' $(seq 1 80))" --key "$KEY" "$N" "$M"
refused "unknown option" "frobnicate" 1 "$REPFS" mount --frobnicate --key "$KEY" "$N" "$M"
refused "unknown short option" "-z" 1 "$REPFS" mount -z --key "$KEY" "$N" "$M"
refused "--key without its value" "value" 1 "$REPFS" mount --role leader --key
refused "-o without its value" "value" 1 "$REPFS" mount --role leader -o
refused "missing MOUNTPOINT" "usage" 0 "$REPFS" mount --role leader --key "$KEY" "$N"
refused "extra argument" "usage" 0 "$REPFS" mount --role leader --key "$KEY" "$N" "$M" extra
refused "first start without --role" "role" 1 "$REPFS" mount --key "$KEY" "$N" "$M"
refused "first start with a missing key file" "does not exist" 1 "$REPFS" mount --role leader --key "$T/nokey" "$N" "$M"
refused "first start with a key readable by others" "readable" 1 "$REPFS" mount --role leader --key "$T/key644" "$N" "$M"
refused "mountpoint does not exist" "$T/nomnt" 1 "$REPFS" mount --role leader --key "$KEY" "$N" "$T/nomnt"
echo f >"$T/afile"
refused "mountpoint is a file" "$T/afile" 1 "$REPFS" mount --role leader --key "$KEY" "$N" "$T/afile"
ABSENT=

# --- other commands ---
refused "unknown command" "frob" 1 "$REPFS" frob
refused "status of a plain directory" "$T" 1 "$REPFS" status "$T"
refused "status of a missing path" "nowhere" 1 "$REPFS" status "$T/nowhere"
refused "status with an unknown option" "" 0 "$REPFS" status "$D" --yaml
refused "log --from x" "'x'" 1 "$REPFS" log "$D" --from x
refused "log of a plain directory" "$T" 1 "$REPFS" log "$T"
mkdir "$T/notempty"
echo keep >"$T/notempty/mine"
refused "replay into a non-empty directory" "$T/notempty" 1 "$REPFS" replay "$D" "$T/notempty"
[ "$(cat "$T/notempty/mine")" = keep ] || soft_fail "replay into a non-empty directory changed its file"
unchanged "$T/snap" "after the refused commands"

# --- the key never shows ---
for k in "$KEY" "$T/key2"; do
	hex=$(od -An -tx1 -v "$k" | tr -d ' \n')
	[ ${#hex} -ge 64 ] || fail "unable to read key '$k'"
	for off in 0 16 32 48; do
		part=${hex:$off:16}
		grep -qi "$part" "$OUTS" && soft_fail "bytes of key '$k' appear in command output"
		grep -qi "$part" "$D/repfs.log" && soft_fail "bytes of key '$k' appear in repfs.log"
		grep -rqi "$part" "$D/state" && soft_fail "bytes of key '$k' appear in the state file"
	done
	# (as bytes: a newline among them would split a grep -F pattern into trivial ones)
	python3 - "$k" "$OUTS" "$D/repfs.log" <<'PYEOF' || soft_fail "raw bytes of key '$k' appear in output or repfs.log"
import sys
key = open(sys.argv[1], "rb").read()
for path in sys.argv[2:]:
    try:
        data = open(path, "rb").read()
    except OSError:
        continue
    if any(key[i:i + 12] in data for i in range(0, len(key) - 11)):
        sys.exit(1)
PYEOF
done

# --- and after all that, the node starts and holds everything ---
start_leader "$D" "$M"
check_eq "$(cat "$M/dir/file")" precious "content after the refused commands"
compare3 "$M" "$D"
stop_node "$M" "$D"
exit 0
