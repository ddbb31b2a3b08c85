/* follower.c -- the follower's side: finding the leader, receiving, acknowledging */
#include "repl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../fs/node.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../net/chan.h"
#include "oplog.h"
#include "repl_int.h"

/* ======================= FOLLOWER ======================= */

static void set_error(struct repl *r, const char *fmt, const char *a, const char *b)
{
	pthread_mutex_lock(&r->mu);
	snprintf(r->last_error, sizeof(r->last_error), fmt, a, b);
	pthread_mutex_unlock(&r->mu);
}

static int send_ack(struct repl *r, struct chan *c)
{
	uint8_t a[24];

	repl_put64(a, oplog_last(r->n->log).seq);
	repl_put64(a + 8, oplog_durable(r->n->log));
	repl_put64(a + 16, node_applied(r->n));
	return chan_send(c, MSG_ACK, a, sizeof(a));
}

/*
 * After a snapshot: once the log holds everything up to until, replays it into
 * the received tree and swaps that in. 1 when done, 0 while records are
 * missing, -errno on failure.
 */
static int finish_snapshot(struct repl *r, uint64_t until)
{
	char err[300];
	int ret, unsure = 0;

	if (!node_snapshot_pending(r->n) || oplog_last(r->n->log).seq < until)
		return node_snapshot_pending(r->n) ? 0 : 1;
	ret = node_snapshot_finish(r->n, until, &unsure, err, sizeof(err));
	pthread_mutex_lock(&r->mu);
	if (ret) {
		r->snap.state = SNAP_FAILED;
		snprintf(r->snap.error, sizeof(r->snap.error), "%.190s", err);
	} else {
		r->snap.state = SNAP_DONE;
		r->snap.finished_ns = now_ns();
		r->snap.completed++;
	}
	pthread_mutex_unlock(&r->mu);
	if (ret) {
		set_error(r, "%s%s", err, "");
		rlog(LOG_ERR, "%s", err);
		return ret;
	}
	rlog(LOG_NOTICE, "snapshot installed at seq %" PRIu64 " in %.1f s; following as usual", until,
	     (double)(now_ns() - r->snap.started_ns) / 1e9);
	if (unsure)
		repl_check_snapshot(r);
	return 1;
}

/*
 * The acknowledger: makes what the receiver appended durable and says so.
 * The receiver appends and applies records as they arrive and only signals
 * it, so a follower's fdatasync never stalls its apply (nor the lag a reader
 * sees); one fdatasync covers everything appended while the previous one
 * ran (group commit), and an ACK follows each. A sync or send failure ends
 * the connection: the acknowledger shuts the socket down, which ends the
 * receiver's chan_recv().
 */
struct acker {
	struct repl *r;
	struct chan *c;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int want;	/* an ACK is due (records or a heartbeat arrived); under mu */
	int stop;	/* under mu */
	int failed;	/* it ended the connection (and logged why); under mu */
	int lazy;	/* the leader never waits for us (WELCOME_F_ASYNC): see ACK_LAZY_MS */
	int64_t last_ns;	/* when the last ACK went out (mono_ns()) */
};

/*
 * How often a follower of a leader that never waits for it (--sync async)
 * syncs its log and acknowledges, at most. Such a leader uses the positions
 * only for status and for trimming its log; a sync and an ACK for every
 * burst of a stream of small records cost a fifth of a follower's CPU time
 * and woke the leader's acknowledgement reader as often.
 */
#define ACK_LAZY_MS 10

static void *acker_main(void *arg)
{
	struct acker *a = arg;
	struct repl *r = a->r;

	thread_name("repfs-acker");
	for (;;) {
		int ret;

		pthread_mutex_lock(&a->mu);
		while (!a->want && !a->stop)
			pthread_cond_wait(&a->cv, &a->mu);
		for (int64_t due = a->last_ns + ACK_LAZY_MS * 1000000LL; a->lazy && !a->stop && mono_ns() < due;) {
			struct timespec until = { (time_t)(due / 1000000000), (long)(due % 1000000000) };
			pthread_cond_timedwait(&a->cv, &a->mu, &until);	/* cv runs on CLOCK_MONOTONIC */
		}
		if (a->stop) {
			pthread_mutex_unlock(&a->mu);
			return NULL;
		}
		a->want = 0;
		pthread_mutex_unlock(&a->mu);
		if (oplog_durable(r->n->log) < oplog_last(r->n->log).seq && node_sync_local(r->n, 0)) {
			rlog(LOG_ERR, "unable to make received records durable; reconnecting");
			break;
		}
		ret = send_ack(r, a->c);
		a->last_ns = mono_ns();	/* only this thread reads it */
		if (ret) {
			set_error(r, "connection to the leader ended: %s%s", chan_strerror(ret), "");
			rlog(LOG_WARNING, "%s", r->last_error);
			break;
		}
	}
	pthread_mutex_lock(&a->mu);
	a->failed = 1;
	pthread_mutex_unlock(&a->mu);
	shutdown(chan_fd(a->c), SHUT_RDWR);	/* end the receiver too */
	return NULL;
}

/* An ACK is due. Once one is due the acknowledger needs no waking: it is
 * syncing, or waiting out ACK_LAZY_MS, and sees want when it looks. */
static void acker_poke(struct acker *a)
{
	pthread_mutex_lock(&a->mu);
	if (!a->want) {
		a->want = 1;
		pthread_cond_signal(&a->cv);
	}
	pthread_mutex_unlock(&a->mu);
}

/*
 * Records received in a burst, copied out of the channel's buffer (valid
 * only until the next receive), appended to the log with one write and
 * applied together (node_follow_records()). A burst ends when no more
 * records are waiting, or at OPLOG_BATCH_MAX records, BURST_BYTES or
 * BURST_AGE_NS after its first record: a follower that receives as fast as
 * the leader writes always finds the next record waiting, and would
 * otherwise apply nothing until the burst is full (at 12,000 records a
 * second, 256 of them take 21 ms to arrive).
 */
#define BURST_BYTES (4u << 20)
#define BURST_AGE_NS 2000000

struct burst {
	uint8_t *arena;
	size_t used, cap;
	size_t off[OPLOG_BATCH_MAX], len[OPLOG_BATCH_MAX];
	int k;
	int64_t first_ns;	/* when its first record arrived */
};

static int burst_add(struct burst *b, const void *buf, size_t len)
{
	if (b->used + len > b->cap) {
		size_t cap = b->cap ? b->cap : (1u << 20);
		uint8_t *p;
		while (cap < b->used + len)
			cap *= 2;
		p = realloc(b->arena, cap);
		if (!p)
			return -ENOMEM;
		b->arena = p;
		b->cap = cap;
	}
	if (!b->k)
		b->first_ns = now_ns();
	memcpy(b->arena + b->used, buf, len);
	b->off[b->k] = b->used;
	b->len[b->k++] = len;
	b->used += len;
	return 0;
}

static int burst_full(const struct burst *b)
{
	return b->k == OPLOG_BATCH_MAX || b->used >= BURST_BYTES || now_ns() - b->first_ns >= BURST_AGE_NS;
}

/* Logs and applies the burst; on a refusal says which record and why. */
static int burst_apply(struct repl *r, struct burst *b)
{
	const uint8_t *bufs[OPLOG_BATCH_MAX];
	int ret;

	if (!b->k)
		return 0;
	/* tests: a follower that receives but neither logs nor applies while DATADIR/test-follow-hold exists */
	static int hold = -1;
	if (hold < 0)
		hold = getenv("REPFS_TEST_FOLLOW_HOLD") != NULL;
	if (hold)
		while (!faccessat(r->n->dfd, "test-follow-hold", F_OK, 0) && node_role(r->n) == ROLE_FOLLOWER)
			usleep(20000);
	for (int i = 0; i < b->k; i++)
		bufs[i] = b->arena + b->off[i];
	ret = node_follow_records(r->n, bufs, b->len, b->k);
	b->k = 0;
	b->used = 0;
	if (ret) {
		char why[64];
		snprintf(why, sizeof(why), "seq %" PRIu64, oplog_last(r->n->log).seq + 1);
		set_error(r, "refused the record at %s from the leader: %s", why,
			  ret == -EBADMSG ? "bad MAC, chain or sequence" : strerror(-ret));
		rlog(LOG_ERR, "%s", r->last_error);
	}
	return ret;
}

/*
 * Receives records until the connection ends (snap_until: finish a snapshot
 * once the log holds it; lazy: the leader never waits for acknowledgements).
 */
static void receive(struct repl *r, struct chan *c, uint64_t snap_until, int lazy)
{
	struct acker a = { .r = r, .c = c, .lazy = lazy };
	struct burst b = { 0 };
	pthread_t t;
	unsigned pending = 0;

	pthread_mutex_init(&a.mu, NULL);
	{
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&a.cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (pthread_create(&t, NULL, acker_main, &a)) {
		rlog(LOG_ERR, "unable to start the acknowledger; reconnecting");
		goto out;
	}
	for (;;) {
		uint8_t type;
		void *buf;
		size_t len;
		int ret = chan_recv(c, &type, &buf, &len, r->o.leader_timeout_ms);

		if (node_role(r->n) != ROLE_FOLLOWER)
			break;	/* promoted */
		if (ret == -ETIMEDOUT) {
			rlog(LOG_WARNING, "no word from the leader for %d ms; reconnecting", r->o.leader_timeout_ms);
			break;
		}
		if (ret <= 0) {
			if (ret < 0) {
				pthread_mutex_lock(&a.mu);
				ret = a.failed ? 0 : ret;	/* the acknowledger ended it, and said why */
				pthread_mutex_unlock(&a.mu);
			}
			if (ret < 0) {
				set_error(r, "connection to the leader ended: %s%s", chan_strerror(ret), "");
				rlog(LOG_WARNING, "%s", r->last_error);
			}
			break;
		}
		pthread_mutex_lock(&r->mu);
		r->last_heard_ns = now_ns();
		pthread_mutex_unlock(&r->mu);
		if (type == MSG_RECORD) {
			ret = burst_add(&b, buf, len);
			if (ret)
				rlog(LOG_ERR, "out of memory receiving records; reconnecting");
			else if (burst_full(&b))
				ret = burst_apply(r, &b);
			if (ret)
				break;
			pending++;
			if (pending < 512 && chan_buffered(c))
				continue;
			{
				struct pollfd p = { chan_fd(c), POLLIN, 0 };
				if (pending < 512 && poll(&p, 1, 0) == 1)
					continue;
			}
			if (burst_apply(r, &b))
				break;
		} else if (b.k && burst_apply(r, &b)) {
			break;	/* records came before this message: they go first */
		} else if (type == MSG_HEARTBEAT && len == 32) {
			uint64_t epoch;
			pthread_mutex_lock(&r->n->seq_lock);
			epoch = r->n->st.epoch;
			pthread_mutex_unlock(&r->n->seq_lock);
			if (repl_get64(buf) < epoch) {
				/* fencing: a leader of an older epoch (we promised a newer one since) */
				char why[96];
				snprintf(why, sizeof(why), "%" PRIu64 ", below ours (%" PRIu64 ")", repl_get64(buf), epoch);
				set_error(r, "refused a heartbeat of epoch %s%s", why, "");
				rlog(LOG_WARNING, "%s", r->last_error);
				break;
			}
			pthread_mutex_lock(&r->mu);
			r->leader_seq = repl_get64((uint8_t *)buf + 8);
			pthread_mutex_unlock(&r->mu);
		} else {
			rlog(LOG_WARNING, "unexpected message %u from the leader", type);
			break;
		}
		if (snap_until) {
			/* finishing a snapshot: durable first, as the snapshot's replay expects */
			if (pending && node_sync_local(r->n, 0)) {
				rlog(LOG_ERR, "unable to make received records durable; reconnecting");
				break;
			}
			ret = finish_snapshot(r, snap_until);
			if (ret < 0)
				break;
			if (ret == 1)
				snap_until = 0;
		}
		/* a batch is in (or a heartbeat): the acknowledger makes it durable and acknowledges */
		pending = 0;
		acker_poke(&a);
	}
	/*
	 * Records of a burst came whole and authenticated before the connection
	 * ended: they go into the log. A leader handing over sends its last
	 * records and closes, and the follower about to be promoted needs them.
	 */
	if (b.k && node_role(r->n) == ROLE_FOLLOWER)
		burst_apply(r, &b);
	pthread_mutex_lock(&a.mu);
	a.stop = 1;
	pthread_cond_signal(&a.cv);
	pthread_mutex_unlock(&a.mu);
	pthread_join(t, NULL);
out:
	free(b.arena);
	pthread_mutex_destroy(&a.mu);
	pthread_cond_destroy(&a.cv);
}

/* One attempt at following the leader at addr. */
static void follow_once(struct repl *r, const char *addr)
{
	uint8_t hello[HELLO_BYTES] = { 0 }, type;
	struct chan *c = NULL;
	struct pos last;
	void *buf;
	size_t len;
	uint64_t until = 0;
	int fd, ret, want_snap, snapping = 0, lazy;

	fd = repl_tcp_socket(addr, 0, 2000);
	if (fd < 0) {
		set_error(r, "unable to reach '%s': %s", addr, strerror(-fd));
		return;
	}
	if (repl_track_fd(r, fd)) {
		close(fd);
		return;
	}
	pthread_mutex_lock(&r->mu);
	r->follow_fd = fd;
	pthread_mutex_unlock(&r->mu);
	ret = chan_handshake(&c, fd, r->n->key, 1, HANDSHAKE_MS);
	if (ret) {
		set_error(r, "peer '%s' refused: %s", addr, chan_strerror(ret));
		rlog(LOG_WARNING, "%s", r->last_error);
		goto out;
	}
	last = oplog_last(r->n->log);
	repl_put64(hello, r->n->st.epoch);
	repl_put64(hello + 8, last.seq);
	oplog_last_mac(r->n->log, hello + 16);
	snprintf((char *)hello + 48, 64, "%s", r->n->st.name);
	repl_put64(hello + 112, last.epoch);
	pthread_mutex_lock(&r->mu);
	want_snap = r->want_snapshot;
	pthread_mutex_unlock(&r->mu);
	repl_put64(hello + 120, HELLO_F_PACE | (want_snap || node_snapshot_pending(r->n) ? HELLO_F_SNAPSHOT : 0));
	if (chan_send(c, MSG_HELLO, hello, sizeof(hello)))
		goto out;
	ret = chan_recv(c, &type, &buf, &len, HANDSHAKE_MS);
	if (ret != 1) {
		if (ret < 0) {
			set_error(r, "no answer to hello from '%s': %s", addr, chan_strerror(ret));
			rlog(LOG_WARNING, "%s", r->last_error);
		}
		goto out;
	}
	if (type == MSG_SNAP_BEGIN) {
		pthread_mutex_lock(&r->mu);
		r->want_snapshot = 0;
		snprintf(r->leader_addr, sizeof(r->leader_addr), "%s", addr);
		pthread_mutex_unlock(&r->mu);
		ret = snap_receive(r, c, buf, len, &until);
		if (ret) {
			set_error(r, "snapshot from '%s' interrupted: %s", addr, chan_strerror(ret));
			goto out;
		}
		ret = chan_recv(c, &type, &buf, &len, HANDSHAKE_MS);
		if (ret != 1)
			goto out;
		snapping = 1;
	}
	if (type == MSG_DIVERGED && len == DIVERGED_BYTES) {
		/* an old leader's extra writes: keep them aside, go back to the branch point, follow */
		char err[300];
		ret = node_rewind(r->n, repl_get64(buf), (const uint8_t *)buf + 8, err, sizeof(err));
		if (ret == -EAGAIN) {
			pthread_mutex_lock(&r->mu);
			r->want_snapshot = 1;	/* the next connection asks for one */
			pthread_mutex_unlock(&r->mu);
		} else if (ret) {
			set_error(r, "diverged from the leader at '%s': %s", addr, err);
			rlog(LOG_ERR, "%s", r->last_error);
		}
		goto out;
	}
	if (type == MSG_REFUSE) {
		char why[160];
		snprintf(why, sizeof(why), "%.*s", (int)(len < 150 ? len : 150), (char *)buf);
		if (strstr(why, "is not the leader")) {
			/* looking for the leader among the peers: not an error */
			rlog(LOG_DEBUG, "peer '%s': %s", addr, why);
			goto out;
		}
		set_error(r, "leader at '%s' refused: %s", addr, why);
		rlog(LOG_ERR, "%s", r->last_error);
		goto out;
	}
	if (type != MSG_WELCOME || (len != 80 && len != 88))
		goto out;
	lazy = len == 88 && (repl_get64((uint8_t *)buf + 80) & WELCOME_F_ASYNC);
	if (repl_get64(buf) < r->n->st.epoch) {
		/* fencing: never follow a leader of an epoch older than one we know of */
		char why[96];
		snprintf(why, sizeof(why), "it leads epoch %" PRIu64 ", below ours (%" PRIu64 ")", repl_get64(buf),
			 r->n->st.epoch);
		set_error(r, "refused the leader at '%s': %s", addr, why);
		rlog(LOG_WARNING, "%s", r->last_error);
		goto out;
	}
	pthread_mutex_lock(&r->mu);
	r->following = 1;
	snprintf(r->leader, sizeof(r->leader), "%.63s", (char *)buf + 16);
	snprintf(r->leader_addr, sizeof(r->leader_addr), "%s", addr);
	r->leader_seq = repl_get64((uint8_t *)buf + 8);
	r->last_heard_ns = now_ns();
	r->last_error[0] = 0;
	pthread_mutex_unlock(&r->mu);
	rlog(LOG_NOTICE, "following '%s' at %s from seq %" PRIu64, r->leader, addr, oplog_last(r->n->log).seq);
	if (snapping && finish_snapshot(r, until) < 0)
		goto out_following;
	if (send_ack(r, c) == 0)
		receive(r, c, snapping ? until : 0, lazy);
out_following:
	pthread_mutex_lock(&r->mu);
	r->following = 0;
	pthread_mutex_unlock(&r->mu);
out:
	pthread_mutex_lock(&r->mu);
	r->follow_fd = -1;
	pthread_mutex_unlock(&r->mu);
	chan_free(c);
	repl_untrack_fd(r, fd);
	close(fd);
}

static void *follow_main(void *arg)
{
	struct repl *r = arg;
	int backoff = 100;

	thread_name("repfs-follow");
	while (!repl_nap(r, &r->cv_new, 0) && node_role(r->n) == ROLE_FOLLOWER) {
		char extra[64];
		pthread_mutex_lock(&r->mu);
		snprintf(extra, sizeof(extra), "%s", r->extra_peer);
		pthread_mutex_unlock(&r->mu);
		for (int i = -1; i < r->o.npeers && node_role(r->n) == ROLE_FOLLOWER; i++) {
			int64_t t0 = now_ns();
			const char *addr = i < 0 ? extra : r->o.peers[i];
			if (!*addr || (i >= 0 && !strcmp(addr, extra)))
				continue;
			follow_once(r, addr);
			if (now_ns() - t0 > 5000000000LL)
				backoff = 100;	/* it was a working connection */
		}
		if (repl_nap(r, &r->cv_new, backoff))
			break;
		backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
	}
	return NULL;
}

/* Starts the follower thread (at start, or after a step-down); addr: another peer to try first. */
int repl_start_following(struct repl *r, const char *addr)
{
	int ret = 0;

	pthread_mutex_lock(&r->mu);
	if (addr)
		snprintf(r->extra_peer, sizeof(r->extra_peer), "%s", addr);
	if (r->have_follower) {
		/* an earlier follower thread (before a promotion) has ended or is ending */
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->follower, NULL);
		pthread_mutex_lock(&r->mu);
		r->have_follower = 0;
	}
	if (!r->stopping && (r->o.npeers || r->extra_peer[0])) {
		ret = -pthread_create(&r->follower, NULL, follow_main, r);
		if (!ret)
			r->have_follower = 1;
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

