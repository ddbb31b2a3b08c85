#!/bin/bash
# acl.sh -- POSIX ACLs: enforced on a leader's mount as on ext4 (calibrated on
# a native directory: access, chmod's mask, default ACLs and the umask, the
# setgid bit an ACL change drops), then mount == tree == replay, and a
# follower that enforces the same ACLs and forgets a cached one a record changes.
. "$(dirname "$0")/repl_lib.sh" || exit 1

command -v setfacl >/dev/null && command -v getfacl >/dev/null || skip "setfacl/getfacl not installed (package acl)"
command -v setpriv >/dev/null || skip "setpriv not installed"

as() { setpriv --reuid="$1" --regid="${2:-$1}" --clear-groups "${@:3}"; }
can() { # UID GID DESC CMD...: prints whether CMD succeeded as UID:GID
	if as "$1" "$2" "${@:4}" >/dev/null 2>&1; then echo "$3: yes"; else echo "$3: no"; fi
}

# What a user sees of a sequence of ACL changes in directory $1.
acl_story() (
	cd "$1" || exit 1
	echo secret >f
	chmod 600 f
	can 1000 1000 "1000 reads a 600 file" cat f
	setfacl -m u:1000:r f
	can 1000 1000 "1000 reads it with an ACL entry" cat f
	stat -c "f %a" f
	getfacl -cp f
	chmod 600 f
	stat -c "f after chmod %a" f
	getfacl -cp f
	can 1000 1000 "1000 reads it once chmod emptied the mask" cat f
	mkdir dd
	setfacl -d -m u:1000:rwx,m::rwx,o::r-x dd
	(
		umask 077
		touch dd/new
		mkdir dd/sub
		mkfifo dd/fifo
		echo x >dd/redirected
	)
	stat -c "%n %a" dd/new dd/sub dd/fifo dd/redirected
	getfacl -cp dd/new dd/sub
	can 1000 1000 "1000 appends to a file that inherited its entry" sh -c 'echo hi >>dd/new'
	can 1000 1000 "1000 makes a file in the directory" touch dd/sub/by1000
	can 1000 1000 "1000 makes a directory in it" sh -c 'umask 077; mkdir dd/sub/dir1000; mkfifo -m 640 dd/sub/fifo1000'
	stat -c "%n %a %u" dd/sub/by1000 dd/sub/dir1000 dd/sub/fifo1000
	getfacl -cp dd/sub/by1000 dd/sub/dir1000 dd/sub/fifo1000
	mkdir plain
	(
		umask 027
		touch plain/a
		mkdir plain/b
		mknod plain/c p
	)
	stat -c "%n %a" plain/a plain/b plain/c
	touch sg
	chown 1000:0 sg
	chmod 2775 sg
	as 1000 1000 setfacl -m u:1001:r sg
	stat -c "sg after its owner, not in its group, set an ACL: %a" sg
	can 1001 1001 "1001 reads sg" cat sg
	echo x >g
	chmod 640 g
	chgrp 2000 g
	setfacl -m g:3000:r g
	can 1002 3000 "group 3000 reads g" cat g
	can 1002 3001 "group 3001 reads g" cat g
	setfacl -b g
	getfacl -cp g
	stat -c "g %a" g
	can 1002 3000 "group 3000 reads g without the ACL" cat g
	can 1000 1000 "1000 sets an ACL on root's file" setfacl -m u:1000:rw f
	mkdir big
	setfacl -d -m "$(seq -s, -f 'u:%g:r' 2000 2060),m::r-x" big
	touch big/x
	mkdir big/y
	stat -c "%n %a" big/x big/y
	getfacl -cp big/x | wc -l
	setfacl -d -m u:1000:rwx dd/sub
	setfacl -k dd
	touch dd/after-k
	getfacl -cp dd/after-k
	stat -c "%n %a" dd/after-k
)

mkdir -m 755 "$T/native"
setfacl -m u:1000:r "$T/native" 2>/dev/null || skip "the file system under $T keeps no POSIX ACLs"
setfacl -b "$T/native"
acl_story "$T/native" >"$T/native.out" 2>&1 || fail "the ACL story fails on a native directory: $(tail -n 3 "$T/native.out")"

LD=$T/leader
LM=$T/lmnt
rl_leader a "$LD" "$LM"
[ "$(rl_get "$LD" posix_acls)" = true ] || fail "the leader enforces no ACLs on a file system that keeps them: $(rl_status "$LD")"
chmod 755 "$LM"
mkdir -m 755 "$LM/story"
acl_story "$LM/story" >"$T/mount.out" 2>&1
diff -u "$T/native.out" "$T/mount.out" >"$T/diff" || fail "ACLs on the mount differ from ext4's: $(cat "$T/diff")"
compare3 "$LM" "$LD" "after the ACL story"

# objects without an ACL of their own in a directory with a default one (made
# before it, stripped, moved in): a snapshot must not give them the inherited one
mkdir -m 755 "$LM/late" "$LM/other"
echo old >"$LM/late/before"
chmod 640 "$LM/late/before"
mkdir "$LM/late/subbefore"
setfacl -d -m u:1000:rwx,m::rwx "$LM/late"
echo inherited >"$LM/late/stripped"
setfacl -b "$LM/late/stripped"
echo moved >"$LM/other/moved"
chmod 600 "$LM/other/moved"
mv "$LM/other/moved" "$LM/late/moved"
mkfifo -m 600 "$LM/other/fifo"
mv "$LM/other/fifo" "$LM/late/fifo"
mkdir "$LM/other/dirmoved"
mv "$LM/other/dirmoved" "$LM/late/dirmoved"
# a FIFO with an ACL at the end of a path of more than 4,000 bytes
long=$(printf 'x%.0s' $(seq 1 200))
deep=$LM/late
for i in $(seq 1 19); do deep=$deep/$long; done
mkdir -p "$deep"
mkfifo "$deep/$(printf 'y%.0s' $(seq 1 150))"

# a file capability (a snapshot set xattrs before the data, whose write dropped it)
head -c 100000 /dev/urandom >"$LM/late/capable"
setfattr -n security.capability -v 0x0100000200200000000000000000000000000000 "$LM/late/capable" ||
	fail "setting security.capability through the mount"

# a follower: the same ACLs, enforced by its own kernel
FD=$T/follower
FM=$T/fmnt
rl_follower b "$FD" "$FM" "$RL_PORT"
rl_wait_converged 30 "$LD" "$FD"
[ "$(rl_get "$FD" posix_acls)" = true ] || fail "the follower enforces no ACLs"
(cd "$LM" && getfacl -R -p story late) >"$T/lacl" 2>&1
(cd "$FM" && getfacl -R -p story late) >"$T/facl" 2>&1
diff -u "$T/lacl" "$T/facl" >"$T/adiff" || soft_fail "ACLs on the follower differ from the leader's: $(cat "$T/adiff")"
out=$("$REPFS" verify "$FM" 2>&1) || fail "repfs verify on the follower (exit $?): $out"
check_eq "$(getfattr --absolute-names -n security.capability -e hex "$FD/tree/late/capable" 2>&1 | tail -n +2)" \
	"$(getfattr --absolute-names -n security.capability -e hex "$LD/tree/late/capable" 2>&1 | tail -n +2)" \
	"a file capability after a snapshot"
# a FIFO's ACL counts: one the follower lacks is found and repaired
setfattr -x system.posix_acl_access "$FD/tree/story/dd/fifo"
out=$("$REPFS" verify "$FM" 2>&1) && fail "repfs verify found nothing with a FIFO's ACL removed on the follower: $out"
out=$("$REPFS" verify --repair "$FM" 2>&1) || fail "repfs verify --repair (exit $?): $out"
check_eq "$(getfacl -cp "$FD/tree/story/dd/fifo" 2>&1)" "$(getfacl -cp "$LD/tree/story/dd/fifo" 2>&1)" "the FIFO's ACL after the repair"
echo only-by-acl >"$LM/story/h"
chmod 640 "$LM/story/h"
setfacl -m u:1001:r "$LM/story/h"
rl_wait_converged 30 "$LD" "$FD"
check_eq "$(can 1001 1001 "1001 reads h" cat "$FM/story/h")" "1001 reads h: yes" "an ACL entry on the follower"
check_eq "$(can 1000 1000 "1000 reads f" cat "$FM/story/f")" "1000 reads f: no" "a mask on the follower"
check_eq "$(can 1000 1000 "1000 reads late/moved" cat "$FM/late/moved")" "1000 reads late/moved: no" \
	"a file moved into a directory with a default ACL, on the follower"
# the follower's kernel has cached h's ACL: the record that changes it must replace it
setfacl -x u:1001 "$LM/story/h"
rl_wait_converged 30 "$LD" "$FD"
check_eq "$(can 1001 1001 "1001 reads h" cat "$FM/story/h")" "1001 reads h: no" \
	"an ACL entry removed on the leader, on the follower"
check_eq "$(can 1001 1001 "1001 reads h" cat "$LM/story/h")" "1001 reads h: no" "the removed entry, on the leader"
rl_stop "$FD" "$FM"

# a change that fails leaves no record
before=$(log_count "$LD")
as 1000 1000 setfacl -m u:1001:r "$LM/story/g" 2>/dev/null && fail "uid 1000 set an ACL on root's file"
setfacl -d -m u:1000:r "$LM/story/f" 2>/dev/null && fail "a default ACL was set on a regular file"
check_eq "$(log_count "$LD")" "$before" "records after refused ACL changes"
compare3 "$LM" "$LD" "at the end"

# --acl off: mode bits only; an ACL is kept, and grants nothing
OD=$T/off
OM=$T/omnt
NODE_NAME=off start_leader "$OD" "$OM" --acl off
chmod 755 "$OM"
check_eq "$(rl_get "$OD" posix_acls)" false "posix_acls with --acl off"
echo secret >"$OM/f"
chmod 600 "$OM/f"
setfacl -m u:1000:r "$OM/f" || fail "setfacl with --acl off"
check_eq "$(getfacl -cpn "$OM/f" 2>&1 | grep -c "^user:1000:r--")" 1 "the ACL kept with --acl off"
check_eq "$(can 1000 1000 "1000 reads f" cat "$OM/f")" "1000 reads f: no" "an ACL entry with --acl off"
(
	umask 027
	touch "$OM/masked"
)
check_eq "$(stat -c %a "$OM/masked")" 640 "the umask with --acl off"

# --acl off, a directory given a default ACL: the tree's file system passes it on
# to the files made in it, and the leader's files made ahead (fs/node.c) take no
# name there (they would lack it: the replay would differ)
mkdir "$OM/dacl"
setfacl -d -m u:nobody:rwx "$OM/dacl" || fail "setfacl -d with --acl off"
for i in 1 2 3 4 5 6; do echo x >"$OM/dacl/f$i" || fail "a file in a directory with a default ACL"; done
check_eq "$(getfacl -cp "$OD/tree/dacl/f6" 2>/dev/null | grep -c '^user:nobody:')" 1 \
	"the default ACL's entry on a file made in its directory, --acl off"
compare3 "$OM" "$OD" "files made under a default ACL with --acl off"

# a default ACL on the root, none on a directory below: new files there get no
# ACL (the leader's files made ahead come from the id index's directory, which
# passes nothing on)
mkdir "$LM/plain"
setfacl -d -m u:nobody:rwx "$LM"
for i in $(seq 1 40); do echo x >"$LM/plain/use$i" || fail "a file in a directory without a default ACL"; done
(
	umask 027
	echo secret >"$LM/plain/private"
)
check_eq "$(getfacl -cp "$LM/plain/private" 2>/dev/null | grep -c nobody)" 0 \
	"ACL entries on a file below a directory without a default ACL"
echo public >"$LM/plain/public"
check_eq "$(can 65534 65534 "nobody reads public" cat "$LM/plain/public")" "nobody reads public: yes" \
	"a 0644 file below a root with a default ACL"
check_eq "$(can 65534 65534 "nobody reads private" cat "$LM/plain/private")" "nobody reads private: no" \
	"a 0640 root file below a root with a default ACL"
setfacl -k "$LM"
compare3 "$LM" "$LD" "files made below a root with a default ACL"

# a DATADIR in a directory with a default ACL: its tree inherits nothing (no record says so)
mkdir -m 755 "$T/inheriting"
setfacl -d -m u:1000:rwx "$T/inheriting"
ID=$T/inheriting/data
IM=$T/imnt
NODE_NAME=inh start_leader "$ID" "$IM"
check_eq "$(getfacl -cp "$ID/tree" 2>&1 | grep -c default)" 0 "default ACL entries on a new tree's root"
check_eq "$(getfacl -cp "$ID/tree.ids" 2>&1 | grep -c default)" 0 \
	"default ACL entries on the id index's directory (where the leader makes files ahead)"
touch "$IM/new"
check_eq "$(getfacl -cp "$IM/new" 2>&1 | grep -c 1000)" 0 "ACL entries on a file in a new tree's root"
echo "PASS"
