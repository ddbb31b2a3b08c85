/* repl.h -- streaming the log from a leader to its followers
 *
 * Leader: a listener accepts followers that prove the cluster key (net/chan.h);
 * per follower one thread streams committed records (never beyond the
 * leader's applied position, so an undone record is never shipped) and
 * heartbeats, and one thread reads the follower's acknowledgements
 * (received, durable, applied). node_sync() waits in repl_wait() for the
 * durable acknowledgements the mode requires.
 *
 * Follower: one thread connects to the leader among --peer addresses (with
 * backoff), says where its log ends (seq and MAC, so the leader can check the
 * follower's history is a prefix of its own), then appends each record it
 * receives through oplog_append_raw() -- which checks the MAC, the chain and
 * the epoch before anything touches the node -- applies it, fsyncs in
 * batches and acknowledges.
 *
 * States of a follower, as the leader sees it:
 *   connected   streaming; acks arrive
 *   gone        the connection ended; still counted by --sync all (a down
 *               follower blocks until --sync-timeout, then async fallback)
 */
#ifndef REPFS_REPL_H
#define REPFS_REPL_H

#include <stddef.h>
#include <stdint.h>

struct node;
struct repl;

enum sync_mode { SYNC_ASYNC = 0, SYNC_QUORUM = 1, SYNC_ALL = 2 };

#define REPL_MAX_PEERS 16
#define REPL_DEFAULT_HEARTBEAT_MS 500
#define REPL_DEFAULT_LEADER_TIMEOUT_MS 3000

struct repl_opts {
	const char *listen;		/* HOST:PORT or NULL */
	const char *peers[REPL_MAX_PEERS];
	int npeers;
	enum sync_mode mode;
	int quorum;			/* N of quorum=N */
	int commit_write;		/* --commit write */
	int sync_timeout_ms;		/* 0: wait forever */
	int heartbeat_ms;
	int leader_timeout_ms;
};

/* Parses "async", "all", "quorum=N". 0 or -EINVAL. */
int repl_parse_mode(const char *s, struct repl_opts *o);

/* Binds and listens on HOST:PORT (before daemonizing, so errors reach the user). fd or -errno. */
int repl_listen_socket(const char *hostport);

/*
 * Starts serving followers on listenfd (-1: none; the repl takes it over) and,
 * on a follower, following. Call after daemonizing: threads do not survive fork.
 */
int repl_start(struct repl **out, struct node *n, const struct repl_opts *o, int listenfd);
void repl_stop(struct repl *r);	/* NULL is a no-op */

/* Wakes the senders: records up to the node's applied position may be shipped. */
void repl_notify(struct repl *r);

/*
 * Waits until the mode's followers hold every record up to seq durably.
 * 0, or -EIO when the wait ended without them (never reported durable).
 */
int repl_wait(struct repl *r, uint64_t seq);

/*
 * Promotes this follower (see docs): refuses if a reachable follower is
 * further ahead (naming it) unless force; a reachable leader is asked to step
 * down and hand over first (switchover). A one-line outcome goes to msg.
 */
int repl_promote(struct repl *r, int force, char *msg, size_t len);

/*
 * A leader forgets the follower named name (repfs forget): its slot, the
 * log kept for it and, with --sync all, the wait for it. Refused (-EBUSY)
 * while it is connected, -ENOENT if no such follower is known. msg: one line.
 */
int repl_forget(struct repl *r, const char *name, char *msg, size_t len);

/*
 * Asks the peers for their epochs (before a leader starts serving): returns
 * how many answered, the highest epoch in *epoch and its holder's name in who.
 */
struct key;
int repl_highest_epoch(const struct key *k, const char *const *peers, int npeers, uint64_t *epoch, char *who,
		       size_t wholen);

/* The lowest durable position of the known followers; UINT64_MAX if none (or r is NULL). */
uint64_t repl_min_durable(struct repl *r);

/* The oldest seq a follower that is taking a snapshot still needs (UINT64_MAX: none). */
uint64_t repl_snapshot_pin(struct repl *r);

/* The name of the leader a follower follows; -ENOENT if none now. */
int repl_leader(struct repl *r, char *buf, size_t len, long wait_ms);	/* -ENOENT also if its lock did not come within wait_ms */

/*
 * `repfs verify` on a follower (verify.c): compares its tree with the
 * leader's at one position. Returns 0 if identical, 1 if not (out lists the
 * paths: "missing|extra|differs /path" lines), -errno if it could not
 * compare (err says why). repair: on a difference, resync from the leader
 * and compare again.
 */
int repl_verify(struct repl *r, int repair, char *out, size_t outlen, char *err, size_t errlen);

/*
 * A verify run by a thread repl does not own (the control socket's): taken
 * before the thread starts, given back when its repl_verify() returned.
 * repl_stop() waits until every one is given back, so r outlives them.
 * repl_verify_take() fails (-ESHUTDOWN) once repl_stop() began.
 */
int repl_verify_take(struct repl *r);
void repl_verify_give(struct repl *r);

/*
 * Appends the "mode", "sync" and "peers" members of the status JSON;
 * applied, last and end are the node's applied seq and the log's last seq
 * and end, as node_status_json() read them. Waits wait_ms at most for the
 * replication state's lock (a thread that holds it may wait on a disk that
 * does not answer: its log line): then only "mode", "sync" and an empty
 * "peers", and *busy set.
 */
int repl_status_json(struct repl *r, char *buf, size_t len, uint64_t applied, uint64_t last, uint64_t end,
		     long wait_ms, int *busy);

#endif
