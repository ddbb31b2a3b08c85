#!/bin/bash
# failover_switchover.sh -- G8, G10 (issue 5, test 3): `repfs promote B` while
# the leader A is alive and a writer fsyncs records on it is a clean
# switchover: A steps down first (its mount turns read-only, EROFS: even
# through a descriptor opened for writing before), B takes over (its mount
# takes writes), A and C follow B, nothing acknowledged on A is lost, and at
# no moment do both report role leader. Prints the writer's pause (last ack on A
# to first ack on B; not asserted).
. "$(dirname "$0")/failover_lib.sh"

fo_cluster --sync quorum=1
echo base >"$AM/base" || fail "a write on the leader failed"

note "a writer fsyncs records on A, and moves to B's mount when A refuses"
rl_bg "$HELPERS/failover_writer" -a 300 -t 15000 "$AM/records" "$BM/records" >"$T/writer.out" 2>&1
W=$RL_BG_PID
_acks() { [ "$(fo_acked "$T/writer.out")" -ge "$1" ]; }
wait_for 20 _acks 200

# roles sampled every 20 ms during the switchover: B's, then A's. A only
# ever goes from leader to follower here, so "leader" for A in a sample
# taken after B's means A was still leader when B said it was one.
cat >"$T/sampler.py" <<'PYEOF'
import json, os, subprocess, sys, time
repfs, b, a, out, stop = sys.argv[1:6]
def role(d):
    for _ in range(50):
        p = subprocess.run([repfs, "status", d, "--json"], capture_output=True, text=True)
        if p.returncode == 0:
            return json.loads(p.stdout)["role"]
        time.sleep(0.005)
    return "error:" + p.stderr.strip().replace(" ", "_")
end = time.monotonic() + 30
with open(out, "w") as f:
    while not os.path.exists(stop) and time.monotonic() < end:
        t = time.monotonic()
        rb = role(b)
        ra = role(a)
        f.write("%.3f %s %s\n" % (t * 1000, rb, ra))
        f.flush()
        time.sleep(max(0, 0.02 - (time.monotonic() - t)))
PYEOF
rl_bg python3 "$T/sampler.py" "$REPFS" "$B" "$A" "$T/samples" "$T/sampler.stop"
S=$RL_BG_PID
_sampled() { [ "$(wc -l <"$T/samples" 2>/dev/null || echo 0)" -ge "$1" ]; }
wait_for 10 _sampled 5

# besides the writer's, a file held open for writing on A across the switchover
exec 7>>"$AM/held-open"
echo "before" >&7 || fail "a write on the leader failed"

fo_promote B
[ "$FO_RC" = 0 ] || fail "switchover: repfs promote B failed (exit $FO_RC): $FO_OUT"
case $FO_OUT in
"'B' is the leader of epoch 2 from seq "*"(switchover: nothing lost)"*) ;;
*) fail "switchover: repfs promote B said: $FO_OUT" ;;
esac
assert_eq "$(fo_get "$B" role)" leader "B's role after the switchover"
assert_eq "$(fo_get "$B" epoch)" 2 "B's epoch after the switchover"
assert_eq "$(fo_get "$A" role)" follower "A's role after the switchover"
fo_promote B
[ "$FO_RC" = 1 ] || fail "a second promote of the leader B: exit $FO_RC, want 1: $FO_OUT"
case $FO_OUT in *"'B' is already the leader (epoch 2)"*) ;; *) fail "a second promote of B said: $FO_OUT" ;; esac

rl_wait_exit 30 "$W" "the writer did not finish on B"
[ "$RL_RC" = 0 ] || fail "the writer failed (exit $RL_RC): $(grep -v '^ack' "$T/writer.out" | tail -n 3)"
sleep_until=$(($(now_ms) + 200))
_later() { [ "$(now_ms)" -ge "$sleep_until" ]; }
wait_for 5 _later # a few samples after the writer's end
touch "$T/sampler.stop"
rl_wait_exit 10 "$S" "the role sampler did not stop"

note "writer: $(grep -v '^ack' "$T/writer.out" | tr '\n' ';')"
grep -q '^switch 1 ' "$T/writer.out" || fail "the writer never moved to B: $(tail -n 3 "$T/writer.out")"
last_a=$(awk '$1 == "ack" && $3 == 0 { n = $2 } END { print n + 0 }' "$T/writer.out")
acked=$(fo_acked "$T/writer.out")
pause=$(awk '$1 == "switch" { print $4; exit }' "$T/writer.out")
echo "switchover: the writer's pause (last ack on A to first ack on B): $pause ms; $last_a records acknowledged on A"
awk '$1 == "ack" && $3 == 1 { b = 1 } $1 == "ack" && $3 == 0 && b { exit 1 }' "$T/writer.out" ||
	fail "the writer got acks from A after it moved to B"

note "every acknowledged record is on B"
out=$("$HELPERS/ackwriter" check "$BM/records" "$acked") || fail "records acknowledged on A or B missing on B: $out"
note "B: $out"

note "no split brain in $(wc -l <"$T/samples") samples"
out=$(awk '
	$2 ~ /^error/ || $3 ~ /^error/ { print "status failed: " $0; bad = 1 }
	$2 == "leader" && $3 == "leader" { print "both leaders at " $1; bad = 1 }
	NR == 1 && !($2 == "follower" && $3 == "leader") { print "first sample: " $0; bad = 1 }
	$2 == "leader" { bl = 1 } bl && $2 != "leader" { print "B left the lead: " $0; bad = 1 }
	$3 == "follower" { af = 1 } af && $3 != "follower" { print "A led again: " $0; bad = 1 }
	$2 != "leader" && $3 != "leader" { gap++ }
	END { if (!bl) { print "B never seen as leader"; bad = 1 }
	      printf "samples with no leader: %d\n", gap; exit bad }' "$T/samples") || fail "$out"
note "$out"

note "A is a read-only follower of B; B takes writes; C follows B; all converge"
out=$(python3 -c '
import os
try:
    os.write(7, b"after\n")
    os.fsync(7)
    print("the write and fsync succeeded")
except OSError as e:
    print(os.strerror(e.errno))' 2>&1)
check_eq "$out" "Read-only file system" "a write through a descriptor opened on A before the switchover"
exec 7>&-
# the mount turns read-only (once nothing holds a file open for writing, at the latest)
end=$(($(now_ms) + 5000))
until fo_check_erofs "$AM"; do
	[ "$(now_ms)" -lt "$end" ] || { soft_fail "A after the switchover: its mount is not read-only: $FO_WHY"; break; }
	sleep 0.1
done
fo_writes "$BM" "B after the switchover"
fo_wait_leader 20 C B
fo_wait_leader 10 A B
fo_wait_converged 20 "$B" "$A" "$C"
treecmp "$BM" "$AM" "$CM" || fail "the trees differ after the switchover"
assert_eq "$(fo_get "$A" epoch)" 2 "A's epoch"
assert_eq "$(fo_get "$C" epoch)" 2 "C's epoch"
rl_log_prefix "$A" "$B" equal
rl_log_prefix "$C" "$B" equal
for d in "$A" "$B" "$C"; do log_verify "$d"; done
exit 0
