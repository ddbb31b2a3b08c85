/* store.h -- the backing store: DATADIR/tree, file ids, and the apply function
 *
 * The tree is an ordinary directory. Every file and directory in it carries a
 * 128-bit id in the extended attribute "trusted.repfs.id" (hard links share it,
 * being one inode); the mount hides and protects that attribute.
 *
 * apply_record() is the one apply path: the leader applies each record it
 * has just appended, followers and crash recovery apply what they replay.
 * Each record carries preconditions (the ids of what it touches). With
 * APPLY_STRICT (the leader, live) a failed precondition is an error the caller
 * reports; otherwise (replay) it means the effect is already there or was
 * superseded, and the record is skipped. Applying a record twice, or onto a
 * newer state, is harmless. Every timestamp the operation changes is set to
 * the record's time, so all nodes end with the same mtimes.
 *
 * Functions return 0 or a negative errno; apply_record() returns 1 for a skip.
 */
#ifndef REPFS_STORE_H
#define REPFS_STORE_H

#include <stdint.h>
#include <sys/stat.h>

#include "../replication/record.h"

#define ID_XATTR "trusted.repfs.id"
/*
 * On a directory of a snapshot being received: the seq (u64) of the last
 * record whose change of names its listing on the leader reflects. Replaying
 * onto the snapshot (replay_snapshot()), a change of names in it (create,
 * link, unlink, rmdir, rename: in every directory it touches) at or before
 * that seq is already there or was undone before the listing: it is skipped.
 */
#define SNAP_LISTED_XATTR "trusted.repfs.listed"
#define ID_XATTR_PREFIX "trusted.repfs."

struct store;

/* The id of every tree's root directory. */
extern const uint8_t store_root_id[FILE_ID_BYTES];

/* Opens the tree at path, giving its root an id if it has none. */
int store_open(struct store **out, const char *path);
void store_free(struct store *st);
int store_rootfd(const struct store *st);
/*
 * 1 if a new inode made in the index directory and linked into directory
 * dirfd (an O_PATH descriptor will do) is what a create in dirfd would make,
 * ACLs aside: the same file system, and no inode flags or project that dirfd
 * would pass on (or that could refuse the link) other than the index's.
 */
int store_like_index(struct store *st, int dirfd);

/* "" (the root) becomes "." so that it can be passed to the *at calls. */
const char *store_rel(const char *path);

/* The id of the object at rel (not following a final symlink). -ENODATA if none. */
int store_get_id(struct store *st, const char *rel, uint8_t id[FILE_ID_BYTES]);
int store_fget_id(int fd, uint8_t id[FILE_ID_BYTES]);
void store_new_id(uint8_t id[FILE_ID_BYTES]);
/* Gives the object at rel (not following a final symlink) the id. */
int store_set_id(struct store *st, const char *rel, const uint8_t id[FILE_ID_BYTES]);
/* The id in hex, as the index names it; store_id_parse(): 1 if name is exactly such a name. */
void store_id_hex(const uint8_t id[FILE_ID_BYTES], char out[2 * FILE_ID_BYTES + 1]);
int store_id_parse(const char *name, uint8_t id[FILE_ID_BYTES]);

/*
 * The l*xattr calls take a path, not a dirfd: store_xpath() gives a path for
 * rel that they accept even when the tree's own path plus rel would pass
 * PATH_MAX. *tmpfd (>= 0) must be closed by the caller afterwards.
 */
int store_xpath(struct store *st, const char *rel, char *buf, size_t len, int *tmpfd);

/* lgetxattr() of name (one component) in directory dfd: the value's size, or -1 with errno. */
ssize_t store_getxattr_at(int dfd, const char *name, const char *attr, void *buf, size_t len);

/*
 * The id index, a directory "<tree>.ids" beside the tree (as GlusterFS's
 * .glusterfs): every live file, symlink or special file is hard-linked there
 * under its id (hex), every live directory has an empty marker there, and
 * every object that died leaves a tombstone "<id>.d" (mtime = the seq of its
 * death). Replay consults it so that a create replayed onto a newer tree
 * never makes a second copy of an object that lives elsewhere now or died
 * later, and so that a change to a file reaches it by id when its old name
 * now belongs to another file. Tombstones below the checkpoint can never
 * matter again and are pruned. The index link is one more link of each
 * file: store_nlink() takes it back out of what the mount reports.
 */
enum { ID_UNKNOWN = 0, ID_ALIVE = 1, ID_DEAD = 2 };
int store_id_state(struct store *st, const uint8_t id[FILE_ID_BYTES]);
/* rel: the object's path in the tree (linked into the index unless isdir). */
int store_id_born(struct store *st, const uint8_t id[FILE_ID_BYTES], const char *rel, int isdir);
/* The same for the regular file open as fd (at rel). */
int store_id_born_fd(struct store *st, const uint8_t id[FILE_ID_BYTES], int fd, const char *rel);
int store_id_died(struct store *st, const uint8_t id[FILE_ID_BYTES], uint64_t seq);
/*
 * Deletes the tombstones of deaths at or below seq upto (*pruned: how many).
 * The walk of the index this takes is skipped unless a tombstone may be
 * there: made through st since the last walk, left by it, or in an index st
 * has not walked yet (opened, or swapped in by store_reopen()). Tombstones
 * made behind st's back are not looked for.
 */
int store_prune_ids(struct store *st, uint64_t upto, uint64_t *pruned);
/* Opens a live non-directory by id through the index; -ENOENT if it has none. */
int store_open_by_id(struct store *st, const uint8_t id[FILE_ID_BYTES], int flags);
/* The index directory (for walking it: snapshots list what a node holds by id; the leader makes files ahead there, fs/behind.c). */
int store_indexfd(const struct store *st);
/*
 * A read-write descriptor of the live file id (yours to close), from a small
 * cache of open files by id: a follower applying a stream of writes to the
 * same files opens each once. Callers apply records one at a time (the
 * node's sequencer). -ENOENT if the file has no index entry.
 */
int store_cached_fd(struct store *st, const uint8_t id[FILE_ID_BYTES]);

/*
 * After the directory at the store's path (and its index) were replaced by
 * renames: makes the open store use the new ones. Safe while other threads
 * use the store: the descriptors are swapped in place.
 */
int store_reopen(struct store *st);
/* How many times store_reopen() replaced the tree: descriptors opened under an older number name the old one. */
unsigned store_gen(const struct store *st);
/*
 * Bumped after every change of an object's POSIX ACL xattrs (apply_record())
 * and when the tree is replaced: an answer "it has no ACL" read before is
 * stale once it moved (fs/fuse_ops.c, op_getxattr()).
 */
void store_acl_changed(struct store *st);
uint64_t store_acl_gen(const struct store *st);
/*
 * A count of the tree's changes that may move a directory to another path
 * (a rename or rmdir applied, the tree replaced): a directory's path found
 * while it read m stays right as long as it reads m. store_moved() counts
 * one, after the change is made.
 */
void store_moved(struct store *st);
uint64_t store_moves(const struct store *st);
const char *store_path(const struct store *st);

/* The link count to show for sb of an object in the tree (without the index link). */
nlink_t store_nlink(const struct stat *sb);

/* XXH3-128 of the bytes of fd in [off, off+len) (fewer at the end of the file). */
#define STORE_DIGEST_BYTES 16
int store_range_digest(int fd, uint64_t off, uint64_t len, uint8_t out[STORE_DIGEST_BYTES]);

/* True for the names the mount hides (our own metadata). */
int store_hidden_xattr(const char *name);

#define APPLY_STRICT 0x1
/* a write whose mtime the next record sets anyway (a follower's burst of writes to one file): no mtime */
#define APPLY_NO_MTIME 0x2
/* a create of a regular file (*out_fd wanted) without its last steps: apply_create_tail() makes them */
#define APPLY_TAIL_LATER 0x4


/*
 * Applies r to the tree. hint_fd, when >= 0, is an open descriptor of r's
 * object (the leader's open file) to use instead of its path. For a
 * REC_CREATE of a regular file, *out_fd (if not NULL) receives a read-write
 * descriptor of the new file.
 */
int apply_record(struct store *st, const struct record *r, unsigned flags, int hint_fd, int *out_fd);

/*
 * The last steps of a create applied with APPLY_TAIL_LATER, through fd (the
 * new file's; -1: by its path): the parent's mtime and the file's link in the id index. Until
 * then the file has its name, id, owner, mode and times; a crash before
 * them leaves what replay finishes (apply_create(): made, not indexed).
 */
int apply_create_tail(struct store *st, const struct record *r, int fd);

/*
 * The leader's create of a regular file made ahead (fd: an unnamed file of
 * the tree's file system, O_TMPFILE): its name, id, owner, mode and times,
 * then apply_create_tail(). The name must be free (-EEXIST otherwise). A
 * crash before it loses only the unnamed file: replay makes the record's.
 */
int apply_create_adopt(struct store *st, const struct record *r, int fd);

/*
 * Replaying a range of records onto a tree that may already hold some of
 * them (crash recovery after power loss, snapshot + replay): a record whose
 * precondition happens to hold again (a link re-made, then removed again by
 * the next record) can leave a directory's mtime older than the last record
 * that touched it. replay_note() remembers, per directory, the time of the
 * last record in the range that touched it; replay_finish() sets those times.
 */
struct replay;
int replay_begin(struct replay **out);
/* The replay goes onto a snapshot being received (see SNAP_LISTED_XATTR). */
void replay_snapshot(struct replay *rp);
/*
 * After a snapshot's replay: 1 if it met a record whose effect the fuzzy
 * walk and the replay may not bring about exactly -- a rename or link from
 * one directory into another, or a copy_file_range (docs/snapshot.md §3).
 */
int replay_unsure(const struct replay *rp);
/* Applies r (replay flags) and notes the directories it touches. Returns apply_record()'s result. */
int replay_apply(struct replay *rp, struct store *st, const struct record *r);
/* Sets the noted directory times; frees rp. NULL is a no-op. */
int replay_finish(struct replay *rp, struct store *st);

#endif
