/* repl_int.h -- what the parts of replication share: messages, state, helpers
 *
 * Internal to replication/: repl.c (the leader's side and the lifecycle),
 * follower.c (the follower's side), promote.c (probes, claims, promotion,
 * the epoch watch). Everything in struct repl marked "under mu" is read and
 * written with r->mu held.
 */
#ifndef REPFS_REPL_INT_H
#define REPFS_REPL_INT_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "../lib/crypto.h"
#include "repl.h"

struct chan;

/* application messages inside the secure channel */
enum msg {
	MSG_HELLO = 1,	   /* follower: epoch u64, seq u64, mac[32], name[64] */
	MSG_WELCOME = 2,   /* leader: epoch u64, last seq u64, name[64], flags u64 (WELCOME_F_*) */
	MSG_REFUSE = 3,	   /* leader: a one-line reason */
	MSG_RECORD = 4,	   /* leader: one encoded log record */
	MSG_HEARTBEAT = 5, /* leader: epoch u64, last u64, durable u64, time_ns i64 */
	MSG_ACK = 6,	   /* follower: received u64, durable u64, applied u64 */
	MSG_PROBE = 7,	   /* anyone: who are you? answered by MSG_INFO */
	MSG_INFO = 8,	   /* role u64, epoch u64, last seq u64, applied u64, name[64] */
	MSG_STEPDOWN = 9,  /* a promoting follower to the leader: epoch u64, its address; answered by MSG_INFO */
	MSG_DIVERGED = 11, /* leader: your history left mine after seq S (u64) whose MAC is mac[32] */
	MSG_CLAIM = 10,	   /* a promoting follower to the others: epoch u64, seq u64, name[64]; answered by MSG_INFO */
	/* snapshots (snapshot.c): the leader answers a hello with these instead of MSG_WELCOME */
	MSG_SNAP_BEGIN = 12, /* leader: epoch u64, seq u64, mac[32] of S; its epoch u64, files u64, bytes u64 */
	MSG_SNAP_HAVE = 13,  /* follower: what it holds by id: {id[16], size u64, n u32, digest[16] * n}*; empty: done */
	MSG_SNAP_ENTRY = 14, /* leader: one object of the tree (snapshot.c: put_entry) */
	MSG_SNAP_DATA = 15,  /* leader: off u64, bytes of the current file */
	MSG_SNAP_SAME = 16,  /* leader: off u64, len u64: the follower holds these bytes already */
	MSG_SNAP_HOLE = 17,  /* leader: off u64, len u64: a hole */
	MSG_SNAP_END = 18,   /* leader: seq u64 up to which the follower must replay before the tree is whole */
	/* verify (verify.c), on a connection of its own */
	MSG_VERIFY = 19,     /* follower: compare trees; answered by MSG_VERIFY_AT */
	MSG_VERIFY_AT = 20,  /* leader: seq u64 (its digest tree is built) */
	MSG_VLIST = 21,	     /* follower: path; answered by MSG_VKIDS: the directory's children */
	MSG_VKIDS = 22,	     /* leader: more u8, {namelen u16, name, mode u32, meta[16], sum[16]}* ("." first) */
	MSG_VPIN = 23,	     /* follower: {len u16, path}* to compare exactly; answered by MSG_VPINNED */
	MSG_VPINNED = 24,    /* leader: seq u64, {exists u8, mode u32, meta[16]}* in the order asked */
	MSG_SNAP_PACE = 25,  /* leader, in a snapshot: u8 1 = it is serving writes: use one CPU; 0 = any */
};

/*
 * WELCOME flags. ASYNC: the leader never waits for a follower's durable
 * position (--sync async), so the follower may acknowledge at its leisure
 * (ACK_LAZY_MS). A WELCOME of 80 bytes (no flags) comes from a leader that
 * may wait.
 */
#define WELCOME_F_ASYNC 1u


/* flags of MSG_HELLO */
#define HELLO_F_SNAPSHOT 0x1	/* the follower needs a snapshot (new, or one was interrupted) */
#define HELLO_F_PACE 0x2	/* the follower understands MSG_SNAP_PACE (without it a snapshot is not paced) */

#define CLAIM_BYTES (16 + 64)

/* role u64, epoch u64, seq u64, applied u64, name[64]; the role's high half: flags of a step-down's answer */
#define INFO_BYTES (32 + 64)
#define STEPDOWN_WB_LATE (1ull << 32)	/* the kernel still wrote back when the old leader stopped waiting */

/* epoch u64, seq u64, mac[32], name[64], epoch of the last record u64, flags u64 */
#define HELLO_BYTES (8 + 8 + CRYPTO_MAC_BYTES + 64 + 8 + 8)
/* branch seq u64, the leader's MAC of that record [32] */
#define DIVERGED_BYTES (8 + CRYPTO_MAC_BYTES)
#define HANDSHAKE_MS 5000
#define MAX_CONNS 64

struct peer {
	int used;
	int connected;
	char name[64];
	char addr[64];
	uint64_t sent, received, durable, applied;
	int64_t last_ack_ns;
	int needs_resync;	/* refused: the leader no longer holds what it lacks */
	/* byte positions of recently sent records, for the lag in bytes */
	uint64_t ring_seq[256], ring_pos[256];
	int64_t ring_time[256];	/* and when the leader committed them, for the lag in ms */
	uint64_t applied_pos;	/* log byte position after the record it applied */
	int snapshotting;	/* being sent a snapshot */
	uint64_t snap_from;	/* keep the log from this seq for it (0: no pin) */
	uint64_t snap_until;	/* it counts for no sync mode until it applied this (its snapshot is in) */
	uint64_t snap_files, snap_bytes_sent;
	int snap_yielding;	/* the snapshot keeps to one CPU: the leader is serving writes */
	int snap_paces;		/* its HELLO said it understands MSG_SNAP_PACE */
};

/* A follower's snapshot, for status (under mu). */
struct snap_progress {
	int state;		/* SNAP_NONE ... */
	uint64_t from_seq, until_seq;
	uint64_t files_total, bytes_total, files_done, bytes_done, bytes_received;
	int64_t started_ns, finished_ns;
	unsigned completed;
	int yielding;		/* kept to one CPU: the leader said it is serving writes */
	int check;		/* CHECK_*: the check against the leader after it was installed */
	int by_check;		/* this snapshot is the resync of such a check (it checks again itself) */
	char error[200];
};
enum { SNAP_NONE, SNAP_TRANSFER, SNAP_REPLAY, SNAP_DONE, SNAP_FAILED };
enum { CHECK_NONE, CHECK_RUNNING, CHECK_IDENTICAL, CHECK_REPAIRED, CHECK_DIFFERS, CHECK_FAILED };

/* Follower, after a snapshot whose replay was unsure (replay_unsure()): checks it against the leader, and repairs. */
void repl_check_snapshot(struct repl *r);

/* True once repl_stop() began. */
int repl_stopping(struct repl *r);

struct repl {
	struct node *n;
	struct repl_opts o;
	pthread_mutex_t mu;
	pthread_cond_t cv_new;	/* records committed, or stopping */
	pthread_cond_t cv_ack;	/* an acknowledgement arrived, or stopping */
	int stopping;		/* everything below under mu */
	struct peer peers[REPL_MAX_PEERS];
	int fell_back;		/* --sync-timeout expired: acting async until caught up */
	int conns;		/* live connection threads */
	int conn_fds[MAX_CONNS];
	int listenfd;
	int have_listener, have_follower, have_watch;
	pthread_t listener, follower, watch;
	/* follower side */
	int follow_fd;		/* the connection to the leader, -1 if none */
	char extra_peer[64];	/* the new leader's address, learnt at a switchover */
	int following;
	char leader[64];
	char leader_addr[64];
	uint64_t leader_seq;
	int64_t last_heard_ns;
	char last_error[400];
	struct snap_progress snap;
	int want_snapshot;	/* `verify --repair`: ask for a resync at the next connection */
	/* the check after a snapshot (verify.c: repl_check_snapshot); under mu */
	pthread_t checker;
	int have_checker, checking;
	int verify_fd;		/* a verify's connection to the leader (one at a time), -1 if none: shut down at stop */
	int verifiers;		/* taken by repl_verify_take(), not yet given back */
	unsigned verify_passes;	/* test hook (REPFS_TEST_VERIFY_PAUSE): verify passes so far (verify_one) */
	/* promotion claims: the epoch this node agreed to let one candidate take (under mu) */
	uint64_t promised_epoch, promised_seq;
	char promised_to[65];
};

static inline void repl_put64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);	/* little-endian hosts only (README) */
}

static inline uint64_t repl_get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* A connected TCP socket to HOST:PORT (listening: bound and listening), or -errno. */
int repl_tcp_socket(const char *hostport, int listening, int timeout_ms);
/* Sleeps up to ms on cv unless stopping; nonzero when stopping. */
int repl_nap(struct repl *r, pthread_cond_t *cv, int ms);
/* Connections to shut down at stop. */
int repl_track_fd(struct repl *r, int fd);
void repl_untrack_fd(struct repl *r, int fd);
/* Called with mu held: followers holding seq durably, and followers that count. */
void repl_count_durable(struct repl *r, uint64_t seq, int *have, int *known);

/* follower.c: starts the follower thread; addr, if any, is tried first. */
int repl_start_following(struct repl *r, const char *addr);

/* snapshot.c */
/* Leader: sends a snapshot to the follower of p; *at: the position it was taken at, *until: its end. */
int snap_serve(struct repl *r, struct chan *c, struct peer *p, uint64_t *at, uint64_t *until);
/* Follower: receives one (begin: the MSG_SNAP_BEGIN). *until: the seq to replay to. */
int snap_receive(struct repl *r, struct chan *c, const uint8_t *begin, size_t len, uint64_t *until);
/* The "snapshot" member of the status. */
int snap_status_json(const struct snap_progress *s, char *buf, size_t len);	/* s: r->snap, copied under r->mu */

/* verify.c: the leader's side of a verify connection */
void verify_serve(struct repl *r, struct chan *c);

/* promote.c */
int repl_promise(struct repl *r, uint64_t epoch, uint64_t seq, const char *name);
void repl_put_info(struct repl *r, uint8_t info[INFO_BYTES]);
void repl_answer_probe(struct repl *r, struct chan *c, uint8_t type, const uint8_t *buf, size_t len);
void *repl_watch_main(void *arg);

#endif
