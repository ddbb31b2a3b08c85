/* node.h -- one repfs node: its DATADIR, log, tree and sequencer
 *
 * The node owns everything the daemon holds: the lock on DATADIR, the key, the
 * state file, the log and the tree. Every change goes through node_commit(),
 * the sequencer: under seq_lock it appends the record to the log and applies
 * it to the tree with the one apply function; if the apply fails the record
 * is taken back out of the log, so failed operations leave none. (A small
 * write may be applied just after it is answered: node_commit_behind().)
 *
 * Durability: node_sync() returns once the log holds everything up to a seq
 * durably. A flusher thread makes every change durable within
 * NODE_COMMIT_INTERVAL_MS (group commit); a checkpointer thread takes
 * checkpoints (syncfs of the tree, then the applied position in the state
 * file), so that crash recovery replays only the log after the last
 * checkpoint.
 */
#ifndef REPFS_NODE_H
#define REPFS_NODE_H

#include <limits.h>
#include <sys/stat.h>
#include <pthread.h>
#include <stdint.h>

#include "../replication/oplog.h"
#include "../replication/state.h"
#include "kernel_init.h"
#include "store.h"

#define NODE_COMMIT_INTERVAL_MS 100	/* bound on un-synced changes (group commit) */
#define NODE_CHECKPOINT_INTERVAL_S 30
#define NODE_DEFAULT_LOG_RETAIN (1ull << 30)	/* bytes of log kept for lagging followers */
#define NODE_PIECE_BYTES (256u << 10)	/* a larger write is logged in pieces of this size (node.c) */

struct node_opts {
	const char *datadir;
	const char *keyfile;
	const char *name;	/* NULL: keep the stored one (or the host name) */
	enum role role;		/* 0: keep the stored one */
	uint64_t log_retain;	/* 0: NODE_DEFAULT_LOG_RETAIN */
};

struct node {
	char datadir[PATH_MAX];
	char mountpoint[PATH_MAX];
	int dfd;		/* DATADIR */
	int logdirfd;		/* DATADIR/log */
	int lockfd;		/* DATADIR/lock, flock'd for our lifetime */
	int logfile;		/* DATADIR/repfs.log */
	int appliedfd;		/* DATADIR/applied: last applied seq and boot id (see node.c) */
	uint64_t *applied_map;	/* its first 8 bytes, mapped; NULL: written with pwrite */
	struct key *key;
	struct store *store;
	struct oplog *log;

	pthread_mutex_t seq_lock;	/* the sequencer */
	struct node_state st;		/* protected by seq_lock */
	uint64_t applied;		/* protected by seq_lock */
	/*
	 * Records applied whose cached views the mount has not dropped yet
	 * (a follower invalidates after the apply, outside seq_lock), and the
	 * lowest of their seqs: node_applied() reports below it, so that no
	 * reader told "applied" can still meet the kernel's stale cache.
	 */
	int inval_pending;		/* protected by seq_lock */
	uint64_t inval_low;		/* protected by seq_lock */
	uint64_t replayed_at_start;	/* records crash recovery replayed */
	uint64_t cut_at_start;		/* torn-tail bytes cut at start */
	int fault;			/* errno of a failure that stops writes, 0 if none */
	int test_die_before_undo;	/* test hook (REPFS_TEST_DIE_BEFORE_UNDO): SIGKILL before an undo */
	int snap_pending;		/* receiving a snapshot: records are logged, not applied (seq_lock) */
	uint64_t history;		/* bumped when a rewind or snapshot replaces log or tree (seq_lock) */
	int64_t last_commit_ns;		/* when the leader last committed a change (atomic) */
	uint64_t hold_at;		/* apply nothing past this seq; UINT64_MAX: no hold (seq_lock) */
	uint64_t ns_changes;		/* bumped before and after each change of names (atomic):
					   a snapshot's directory listing that saw it unchanged was not raced */
	uint64_t priv_gen;		/* bumped by every change that can give a file privileges (atomic;
					   fs/fuse_ops.c, drop_privs()) and at every role change */

	pthread_mutex_t bg_lock;	/* protects stopping */
	pthread_cond_t bg_wake;
	int stopping;
	int bg_started;
	pthread_t flusher;		/* group commit */
	pthread_t checkpointer;		/* checkpoints (syncfs can take seconds) */
	struct apply_helper *helper;	/* applies a large write's pieces (node.c), or NULL */
	struct behind *behind;		/* applies small writes after their reply (node.c), or NULL */
	int64_t started_ns;

	struct repl *repl;		/* replication, NULL until started */
	struct fuse_session *se;	/* the mount, for cache invalidation */
	int commit_write;		/* --commit write: every write waits like an fsync */
	int mount_rw;			/* the mount is read-write for the kernel (remount) */
	uint64_t log_retain;

	/* open files and the mount's inodes, for fs/fuse_ops.c */
	pthread_mutex_t open_lock;
	struct handle *open_files;	/* protected by open_lock */
	unsigned nopen, open_max;	/* programs' open files and directories (atomic), and the most
					   allowed (ino_fd_share(); fs/fuse_ops.c, open_slot()) */
	struct itab *itab;		/* the kernel's inodes */
	struct kinit kinit;		/* FUSE_HANDLE_KILLPRIV_V2: granted, writes drop privileges here */
	int ring_off;			/* --io-uring off: requests only through /dev/fuse */
	int wb_on;			/* --writeback on */
	int wb;				/* the kernel's writeback cache is on (negotiated at INIT, for the
					   mount's life): the kernel keeps regular files' sizes and mtimes */
	int acl_off;			/* --acl off: mode bits only */
	int acl;			/* the kernel enforces POSIX ACLs and leaves the umask to us
					   (FUSE_POSIX_ACL and FUSE_DONT_MASK, negotiated at INIT) */
	struct fring *ring;		/* FUSE over io_uring once granted, else NULL (atomic; fs/fuse_ring.c) */
	struct fring *ring_new;		/* made at INIT, until the reply grants it (fs/fuse_ops.c) */
	struct invalq *invalq;		/* invalidations for the kernel, done off the request path */
};

/*
 * Opens DATADIR (creating its layout on first start), takes its lock, checks
 * the key against the state file, opens the log (cutting a torn tail) and
 * replays what the tree may lack. On failure writes a one-line reason to err.
 */
int node_open(struct node **out, const struct node_opts *o, char *err, size_t errlen);

/* Starts the flusher and checkpointer threads (after daemonizing: threads do not survive fork). */
int node_start(struct node *n);

/*
 * The sequencer. Fills r's epoch, seq and time, appends, applies (see
 * apply_record() for hint_fd and out_fd). Returns the apply's result; on
 * failure the log holds no trace of r. A write of more than
 * NODE_PIECE_BYTES through hint_fd may be logged as several records (r->seq
 * is then the last one's); if one of them fails, those before it stay, and
 * r->data_len says how many bytes they hold (on failure of any other write:
 * 0).
 */
int node_commit(struct node *n, struct record *r, int hint_fd, int *out_fd);

/*
 * A leader may apply a small write to the tree after the writer has its
 * answer (fs/behind.c): the record is in the log, and
 * applied moves past it only once the tree has it too. node_settle() returns once
 * every such write is in the tree: every request but a write or a release
 * calls it first, so that nothing reads the tree before a write answered earlier.
 * node_lock_settled() takes seq_lock with nothing left behind: for those
 * who read the tree under it (a verify's digests, a snapshot's listings).
 */
void node_settle(struct node *n);
void node_lock_settled(struct node *n);
/* Closes a released handle's descriptor, after the writes through it still queued (a release need not wait). */
void node_close_behind(struct node *n, int fd);

/* node_commit() of a write through hint_fd that may reach the tree after it returns (node_settle()). */
int node_commit_behind(struct node *n, struct record *r, int hint_fd);
/*
 * node_commit() of a regular file's create (*out_fd: its descriptor) or a
 * directory's (*out_fd stays -1) whose last steps, the parent's mtime and
 * the id index's link or marker, may come after it returns: *behind then
 * says 1 (a file's link count lacks the index's), or 2: the file was made
 * ahead and its name too comes after (*out_fd's file has no name, nor the
 * record's owner, mode and times yet). at, if not NULL, lets a regular
 * file's create take a file made ahead: the parent's descriptor and the name;
 * *st then receives what the file made ahead is (its inode, its times of
 * before: *out_fd's fstat(), which the create need not make).
 */
struct create_at {
	int dirfd;
	const char *name;
	struct stat *st;
};
int node_commit_create(struct node *n, struct record *r, int *out_fd, int *behind, const struct create_at *at);

/* The node's role now (it changes on promotion and step-down). */
enum role node_role(struct node *n);

/*
 * Promotion: persists role = leader at epoch (above every epoch known)
 * before anything of the new epoch is written, appends the epoch's branch
 * record (where it starts: the previous record's epoch and seq), makes it
 * durable and remounts the mount read-write. -EALREADY on a leader.
 */
int node_promote(struct node *n, uint64_t epoch);

/*
 * A follower that granted a promotion claim for epoch: from now on it refuses
 * records of older epochs (Raft's term adoption). Persisted.
 */
int node_raise_epoch(struct node *n, uint64_t epoch);

/*
 * Stepping down: persists role = follower (and epoch, if higher), refuses
 * changes from then on, remounts read-only. What was committed keeps
 * streaming to the followers (the hand-over). With the writeback cache the
 * kernel's dirty pages are written back first, for a while; *wb_late (if
 * not NULL) is 1 if that wait ran out before they all were.
 */
int node_step_down(struct node *n, uint64_t epoch, int *wb_late);

/* A follower whose mount could not yet be remounted read-only (files open for writing): try again. */
void node_settle_mount(struct node *n);

/*
 * A diverged follower (an old leader that wrote what the new history lacks):
 * keeps its records after seq and the files they touched under
 * DATADIR/divergent/, rebuilds its tree from its log up to seq (which must
 * carry mac), and cuts the log back to seq (fs/rewind.c). -EAGAIN: kept, but
 * the log cannot rebuild the tree (trimmed, or another history before seq):
 * the caller resyncs from a snapshot. On failure err says why.
 */
int node_rewind(struct node *n, uint64_t seq, const uint8_t mac[CRYPTO_MAC_BYTES], char *err, size_t errlen);
/* How many entries DATADIR/divergent/ holds. */
int node_divergent_count(struct node *n);

/* The last record applied to the tree (on a leader: the last committed one). */
uint64_t node_applied(struct node *n);

/*
 * A follower's apply path: appends k records received from the leader in a row
 * (at most OPLOG_BATCH_MAX; each record's MAC, the chain and the epoch order
 * are checked first: -EBADMSG) with one write, applies them, records the
 * applied position once, and invalidates the kernel's caches of what they
 * changed. Records before one that is refused are logged and applied; the
 * refusal is returned. Records of an older epoch are fine when they come
 * from a leader of our epoch or above (its history before its branch):
 * fencing is on the leader's epoch, checked when the connection is made.
 */
int node_follow_records(struct node *n, const uint8_t *const bufs[], const size_t lens[], int k);

/*
 * Holding a follower's tree at a position (`repfs verify` compares it with
 * the leader's there): records still arrive, are logged and acknowledged,
 * but nothing past the hold is applied. node_hold() applies what the log
 * holds up to upto (0: nothing more) and holds there; returns the applied
 * seq (less than upto while the records have not arrived yet: call again).
 * node_release() applies the backlog and lets records apply as they come.
 */
uint64_t node_hold(struct node *n, uint64_t upto);
void node_release(struct node *n);

/*
 * Snapshots (replication/snapshot.c; fs/rewind.c): a follower that cannot
 * catch up from the leader's log (it is new, or the leader trimmed what it
 * lacks) receives the leader's tree into DATADIR/tree.snap while its own
 * tree stays as it was. node_snapshot_start() marks the snapshot (the marker
 * file survives a crash: the next start resumes it), restarts the log at
 * the leader's position at, and from then on logs records without applying
 * them. node_snapshot_finish() replays the records after at up to upto into
 * the received tree, swaps it in, and applies what came after; *unsure
 * tells whether that replay met what it may not bring about exactly
 * (replay_unsure()).
 */
#define NODE_SNAPSHOT_MARKER "snapshot"
#define NODE_SNAPSHOT_TREE "tree.snap"
int node_snapshot_start(struct node *n, struct pos at, const uint8_t mac[CRYPTO_MAC_BYTES], uint64_t epoch);
int node_snapshot_finish(struct node *n, uint64_t upto, int *unsure, char *err, size_t errlen);
int node_snapshot_pending(struct node *n);

/*
 * Waits until every record up to seq (0: everything so far) is durable here
 * and, on a leader, on the followers the sync mode requires.
 */
int node_sync(struct node *n, uint64_t seq);
/* The same, here only (group commit, follower batches). */
int node_sync_local(struct node *n, uint64_t seq);

/* Flushes the tree and records the applied position in the state file. */
int node_checkpoint(struct node *n);
/* The flusher (group commit) and the checkpointer threads (fs/checkpoint.c). */
int node_start_sync(struct node *n);
void node_stop_sync(struct node *n);

/* Writes the node's status as one JSON object into buf. */
int node_status_json(struct node *n, char *buf, size_t len);

/* Stops the background thread (group commit, checkpoints); node_close() does it too. */
void node_stop_background(struct node *n);

/* Stops the flusher and checkpointer, syncs the log, checkpoints, releases everything. */
void node_close(struct node *n);

int64_t now_ns(void);

#endif
