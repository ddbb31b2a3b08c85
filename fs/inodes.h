/* inodes.h -- the mount's inodes, open files and cache invalidations (fs/inodes.c)
 *
 * Each object the kernel knows is one struct inode, found by its file id;
 * its node id is the struct's address (FUSE_ROOT_ID for the tree's root).
 * An inode lives while the kernel holds references to it (lookups not yet
 * forgotten). Functions return 0 or a negative errno unless they say else.
 */
#ifndef REPFS_INODES_H
#define REPFS_INODES_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "fuse_ops.h"
#include "../replication/record.h"

struct node;
struct iname;

/* An open file: the backing descriptor and the file's id. */
struct handle {
	int fd;
	int sync;	/* opened O_SYNC or O_DSYNC: each write waits for the log */
	int direct;	/* write-only on a leader: the kernel's direct I/O (see op_write) */
	int clean;	/* direct: the kernel holds no pages of the file from before (see op_write) */
	int writable;	/* opened for writing (the kernel may hold dirty pages through it) */
	int stale;	/* opened through an inode since retired (ino_retire()): writes fail with
			   this errno (atomic) */
	uint64_t priv_gen;	/* node->priv_gen when the file was found to hold no privileges, 0: not known */
	unsigned tree_gen;	/* store_gen() at the open: a rewind or snapshot install since replaced the tree */
	int lent;	/* handle_borrow()s not yet returned (open_lock) */
	int released;	/* the kernel released it while lent: the last return frees it (open_lock) */
	uint8_t id[FILE_ID_BYTES];
	struct handle *next, *prev;	/* node->open_files, under open_lock */
};

struct inode {
	uint8_t id[FILE_ID_BYTES];
	struct inode *hnext;	/* hash chain, or the retired list (itab.mu); beside the id: a
				   lookup's walk touches one cache line per inode */
	mode_t type;		/* S_IFMT bits */
	uint64_t nlookup;	/* the kernel's references: protected by itab.mu */
	int dirfd;		/* directories: O_PATH descriptor, swapped in place (itab.mu, atomic); else -1 */
	struct file_handle *fh;	/* a directory without one (past the cap): how to open it (itab.mu) */
	unsigned gen;		/* store_gen() when dirfd was opened or fh taken (itab.mu) */
	char *path;		/* directories: the path ino_dir_path() found last (itab.mu) */
	uint64_t path_moves;	/* store_moves() before it was found (itab.mu) */
	struct iname *names;	/* protected by itab.mu */
	int nnames;
	struct inode *rprev;	/* the retired list is doubly linked: a stream retires every file it
				   made, and each is forgotten one by one (itab.mu) */
	int retired;		/* ino_retire()d: no lookup finds it, it lives until forgotten (itab.mu) */
	int streamed;		/* writeback cache: made by a stream (fs/fuse_ops.c, wants_direct()); until
				   its last release its names expire at once (atomic; ino_release_stream()) */
	int mtime_behind;	/* the stream's direct writes left the kernel's mtime behind ours (atomic) */
	int64_t kmtime;		/* writeback cache: the mtime the kernel's inode was made with (ino_learn()),
				   or the last it set (atomic; fs/fuse_ops.c, mtime_flush()) */
	int keepfd;		/* a FIFO, socket or device whose last name went while the kernel held
				   it: an O_PATH descriptor, else -1 (ino_hold_special(); itab.mu) */
	/* directories, under the names lock held for writing: the default ACL's permission bits
	   (dacl_perms; dacl 0: none) read when store_acl_gen() was dacl_gen (0: not read) */
	uint64_t dacl_gen;
	int dacl;
	mode_t dacl_perms;
	/* directories, likewise: whether files made ahead may take names here (fs/fuse_ops.c,
	   ahead_may()), as store_like_index() said when store_gen() was ahead_gen + 1 */
	int ahead_ok;
	unsigned ahead_gen;
	/* store_acl_gen() when the object was found to have no access ([0]) or default ([1]) ACL,
	   0: not known (atomic; fs/fuse_ops.c, op_getxattr()) */
	uint64_t noacl_gen[2];
	/* node->priv_gen when the file was made through this mount, with no security.capability,
	   which the kernel asks for before each chown: 0 if not so (atomic; fs/fuse_ops.c) */
	uint64_t nocap_gen;
};

/* A follower's mount refuses changes: the node's role now (read without a lock, as every request does). */
int mount_is_follower(const struct node *n);

/*
 * Before r (an unlink, or a rename over another object) is applied, on a
 * leader or a follower: if it takes the last name of a FIFO, socket or
 * device whose inode the kernel holds (a program has the FIFO open, say),
 * an O_PATH descriptor of it is kept until the kernel forgets it, so that
 * fstat() of the nameless object still reaches it, as on ext4 (regular
 * files are reached through their open handles). Its xattrs are read, and
 * changes to it (fchmod, fchown, futimens, fsetxattr, fremovexattr) are
 * made, through that descriptor; the changes are logged
 * by id without a path, as a nameless regular file's are: a replay or a
 * follower skips them (the object is gone from its tree; a follower's own
 * held copy keeps its attributes). At most 4,096 at once (past that, fstat
 * and changes get ENOENT).
 */
void ino_hold_special(struct node *n, const struct record *r);

/* The table: made before the session, freed after it. */
int ino_table_setup(struct node *n);
void ino_table_free(struct node *n);
/* The id hash's chains now (it doubles as it fills: a test's view). */
unsigned ino_table_chains(struct node *n);
/*
 * Directories hold a descriptor each only up to a cap (half the descriptor
 * limit); past it, a request that needs one gets a descriptor opened by file
 * handle that is its thread's until the thread's next request:
 * ino_dir_temps_release(), called as a thread takes its next request.
 */
void ino_dir_temps_release(void);
/*
 * Descriptors kept for the log, the state file, followers' connections and
 * the leader's files made ahead (16, two descriptors each: fs/behind.c) (FD_RESERVE of the limit);
 * of the rest, half may be directories'
 * (itab.dirfds_max), half programs' open files (the mount refuses more
 * opens with ENFILE): ino_fd_share(), one half.
 */
#define FD_RESERVE 256
unsigned ino_fd_share(void);
/*
 * A slot for a program's open file or directory (a descriptor each): -ENFILE
 * past node.open_max. The caller frees it if no handle came of it; a
 * handle's is freed with the handle (handle_release()).
 */
int open_slot(struct node *n);
void open_slot_free(struct node *n);
/*
 * Before an rmdir: a directory past the cap gets a descriptor after all, so
 * that what holds it (a working directory) can still stat it once it is
 * removed, as on ext4 (an open by handle of a removed directory fails).
 */
void ino_dir_hold(struct node *n, const uint8_t id[FILE_ID_BYTES]);
/* Directory descriptors held, and the cap (0: none, no file handles); for status and tests. */
void ino_table_fds(struct node *n, unsigned *held, unsigned *max);
/* Tests: another cap. */
void ino_table_cap_dirfds(struct node *n, unsigned max);
/* Tests: the retired inodes the kernel still holds, or -1 if the list's back links disagree. */
int ino_table_retired(struct node *n);

struct inode *ino_of(struct node *n, fuse_ino_t ino);
fuse_ino_t ino_nodeid(struct node *n, struct inode *in);

/*
 * The kernel learns name (whose stat is *st) in directory parent: finds or
 * makes its inode, counts the reference and fills e for the reply, which
 * must follow. known: the object's file id when the caller knows it (it
 * just made the object), else NULL (it is read from the tree). ino_lookup()
 * stats the name first (-ENOENT: none).
 */
int ino_learn(struct node *n, struct inode *parent, const char *name, const struct stat *st,
	      const uint8_t *known, struct fuse_entry_param *e);
int ino_lookup(struct node *n, struct inode *parent, const char *name, struct fuse_entry_param *e);
/* The kernel dropped nlookup references; the last frees the inode. */
void ino_forget(struct node *n, fuse_ino_t nodeid, uint64_t nlookup);

/*
 * Changes of names: an operation that changes them holds the names lock
 * for writing from computing its paths until ino_names_moved(); one that
 * names an object by path without a descriptor, for reading.
 */
void ino_names_lock(struct node *n, int write);
void ino_names_unlock(struct node *n);
/* The name (parent, name) left the object from_id (NULL: none) and now is to_id's (NULL: nobody's). */
void ino_names_moved(struct node *n, const uint8_t parent[FILE_ID_BYTES], const char *name,
		     const uint8_t *from_id, const uint8_t *to_id);

/* A descriptor of directory d (O_PATH; not yours to close, valid while d lives). */
int ino_dir_fd(struct node *n, struct inode *d);
/* Paths in the tree, as records name them ("" for the root). */
int ino_dir_path(struct node *n, struct inode *d, char *buf, size_t len);
/*
 * A path of non-directory f: the first of its names whose directory is
 * known; with verify, only a name that still holds f (checked once records
 * have changed names behind the kernel: on a node that follows or
 * followed). -ENOENT if none (unlinked while open).
 */
int ino_file_path(struct node *n, struct inode *f, char *buf, size_t len, int verify);
int ino_path(struct node *n, struct inode *in, char *buf, size_t len, int verify);
/* "dir/name" ("name" in the root); -ENAMETOOLONG past len. */
int path_join(char *buf, size_t len, const char *dir, const char *name);

/* A descriptor of non-directory f opened with flags (yours to close). */
int ino_file_open(struct node *n, struct inode *f, int flags);
/* An O_PATH descriptor of nameless FIFO, socket or device f (ino_hold_special(); yours), or -ENOENT. */
int ino_held_fd(struct node *n, struct inode *f);
/* The object's attributes, its link count as the mount shows it. */
int ino_stat(struct node *n, struct inode *in, struct stat *st);

/* 1 if an open handle other than skip has this id and is of the kinds in mask (0: any). */
#define HANDLE_CACHING 1	/* reads through the kernel's page cache */
#define HANDLE_WRITABLE 2	/* opened for writing */
int handle_open_by(struct node *n, const uint8_t id[FILE_ID_BYTES], const struct handle *skip, int mask);
/*
 * An open handle of the file id, or NULL: lent, its descriptor stays open
 * until handle_return(), even if the kernel releases it meanwhile (no dup).
 */
struct handle *handle_borrow(struct node *n, const uint8_t id[FILE_ID_BYTES]);
void handle_return(struct node *n, struct handle *h);
/*
 * Closes an open file's handle (the kernel's release, or an open whose reply
 * found the opener gone) once nobody has it lent.
 */
void handle_release(struct node *n, struct handle *h);

/*
 * The id of the object name in directory dfd (not following a final
 * symlink), whose stat is *st. An object without one (a tree made by hand)
 * gets a stand-in from its inode number, which no record ever names.
 */
int ino_id_at(int dfd, const char *name, const struct stat *st, uint8_t id[FILE_ID_BYTES]);

int id_is_zero(const uint8_t id[FILE_ID_BYTES]);

/*
 * From a request handler: has the kernel drop inode ino's attributes and
 * its pages in [off, off + len), through a thread of its own, waiting a
 * little for it (fs/inodes.c, struct invalq).
 */
void ino_inval_soon(struct node *n, fuse_ino_t ino, off_t off, off_t len);
void ino_invalq_init(struct node *n);
void ino_invalq_free(struct node *n);

/*
 * With the writeback cache the kernel never takes a regular file's size or
 * mtime from us again once it has an inode for it. Where ours changed behind
 * it (records on a leader that stepped down; a write the kernel gathered
 * that failed), the file's inode is retired: lookups no longer find it, its
 * names and pages are dropped from the kernel's caches, and the next lookup
 * gives the file a new node id, which the kernel takes as a new inode with
 * our attributes. Descriptors opened before keep the old one and its stale
 * size: writes through them fail, with the error that retired it (a page
 * written back through it would carry zeros past our end; NFS's ESTALE),
 * other requests work, and
 * names they reach the file by are checked. ino_retire() tells the kernel
 * itself (not from a request handler); ino_retire_soon(), from a handler,
 * changes the table at once and leaves telling the kernel to the
 * invalidation thread. Returns 1 if the kernel had such a file of that id.
 */
int ino_retire(struct node *n, const uint8_t id[FILE_ID_BYTES]);
void ino_retire_soon(struct node *n, struct inode *in, int err);
/*
 * At the release of h, a handle of streamed file in: if no other handle of
 * the file is open and direct writes left the kernel's mtime behind, the
 * inode is retired (every name the kernel was given for it since the
 * create expired at once, so it is told only of names it knew before);
 * either way the file is no longer streamed. Under the open handles' lock:
 * an open of the inode that comes after finds it retired (new_handle()
 * refuses it with ESTALE, and the kernel looks the name up again).
 */
void ino_release_stream(struct node *n, struct inode *in, const struct handle *h);

/* On a follower, after applying r: drops the kernel's cached names, attributes and pages that r changed. */
void ino_invalidate_record(struct node *n, const struct record *r);
/* After the tree was rebuilt or replaced: drops every cached name, attribute and page we know of. */
void ino_invalidate_all(struct node *n);

#endif
