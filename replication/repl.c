/* repl.c -- replication's lifecycle and the leader's side: listening, streaming, waiting for acks */
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

int repl_parse_mode(const char *s, struct repl_opts *o)
{
	char *end;
	long q;

	if (!strcmp(s, "async")) {
		o->mode = SYNC_ASYNC;
		return 0;
	}
	if (!strcmp(s, "all")) {
		o->mode = SYNC_ALL;
		return 0;
	}
	if (strncmp(s, "quorum=", 7))
		return -EINVAL;
	q = strtol(s + 7, &end, 10);
	if (*end || q < 1 || q > REPL_MAX_PEERS)
		return -EINVAL;
	o->mode = SYNC_QUORUM;
	o->quorum = (int)q;
	return 0;
}

static int split_hostport(const char *s, char *host, size_t hlen, char *port, size_t plen)
{
	const char *colon = strrchr(s, ':');

	if (!colon || (size_t)(colon - s) >= hlen || strlen(colon + 1) >= plen)
		return -EINVAL;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = 0;
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

int repl_tcp_socket(const char *hostport, int listening, int timeout_ms)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL, *ai;
	char host[256], port[16];
	int fd = -1, ret;

	if (split_hostport(hostport, host, sizeof(host), port, sizeof(port)))
		return -EINVAL;
	hints.ai_flags = listening ? AI_PASSIVE : 0;
	ret = getaddrinfo(*host ? host : NULL, port, &hints, &res);
	if (ret)
		return -EHOSTUNREACH;
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		if (listening) {
			int one = 1;
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
				ret = 0;
				break;
			}
		} else {
			struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
				tv = (struct timeval){ 0, 0 };
				setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
				ret = 0;
				break;
			}
		}
		ret = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return ret ? ret : fd;
}

/* Sleeps up to ms unless stopping; returns nonzero when stopping. */
int repl_nap(struct repl *r, pthread_cond_t *cv, int ms)
{
	struct timespec until = deadline_in_ms(CLOCK_REALTIME, ms);
	int stop;

	pthread_mutex_lock(&r->mu);
	if (!r->stopping)
		pthread_cond_timedwait(cv, &r->mu, &until);
	stop = r->stopping;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

int repl_track_fd(struct repl *r, int fd)
{
	int ret = -EMFILE;

	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < MAX_CONNS; i++) {
		if (r->conn_fds[i] < 0) {
			r->conn_fds[i] = fd;
			ret = 0;
			break;
		}
	}
	if (r->stopping)
		ret = -ESHUTDOWN;
	pthread_mutex_unlock(&r->mu);
	return ret;
}

void repl_untrack_fd(struct repl *r, int fd)
{
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < MAX_CONNS; i++)
		if (r->conn_fds[i] == fd)
			r->conn_fds[i] = -1;
	pthread_mutex_unlock(&r->mu);
}

/* ======================= LEADER ======================= */

struct conn {
	struct repl *r;
	int fd;
	struct chan *c;
	struct peer *p;
	int dead;	/* under r->mu */
	char addr[64];
};

static struct peer *peer_get(struct repl *r, const char *name)
{
	struct peer *free_slot = NULL;

	for (int i = 0; i < REPL_MAX_PEERS; i++) {
		if (r->peers[i].used && !strcmp(r->peers[i].name, name))
			return &r->peers[i];
		if (!r->peers[i].used && !free_slot)
			free_slot = &r->peers[i];
	}
	if (free_slot) {
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->used = 1;
		snprintf(free_slot->name, sizeof(free_slot->name), "%.63s", name);
	}
	return free_slot;
}


int repl_forget(struct repl *r, const char *name, char *msg, size_t len)
{
	struct peer *p = NULL;
	int ret = 0;

	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < REPL_MAX_PEERS && !p; i++)
		if (r->peers[i].used && !strcmp(r->peers[i].name, name))
			p = &r->peers[i];
	if (r->n->st.role != ROLE_LEADER) {
		snprintf(msg, len, "'%s' is not the leader; only a leader keeps followers", r->n->st.name);
		ret = -EINVAL;
	} else if (!p) {
		snprintf(msg, len, "no follower '%s' is known to this leader", name);
		ret = -ENOENT;
	} else if (p->connected) {
		snprintf(msg, len, "follower '%s' is connected (from %s); stop it first", name, p->addr);
		ret = -EBUSY;
	} else {
		memset(p, 0, sizeof(*p));
		snprintf(msg, len, "follower '%s' forgotten: the leader no longer keeps its log or waits for it", name);
		rlog(LOG_NOTICE, "%s", msg);
		pthread_cond_broadcast(&r->cv_ack);	/* --sync all: one follower fewer to wait for */
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

/* Called with mu held after --sync-timeout fell back: back to the mode once the followers have caught up. */
static void maybe_resume(struct repl *r)
{
	int have, known, need;

	repl_count_durable(r, oplog_last(r->n->log).seq, &have, &known);
	need = r->o.mode == SYNC_QUORUM ? r->o.quorum : known;
	if (need > 0 && have >= need) {
		r->fell_back = 0;
		rlog(LOG_NOTICE, "followers caught up; synchronous replication resumed");
	}
}

static void *ack_main(void *arg)
{
	struct conn *cn = arg;
	struct repl *r = cn->r;

	thread_name("repfs-ackread");
	for (;;) {
		uint8_t type;
		void *buf;
		size_t len;
		/* acks come with every heartbeat: silence means the follower is gone */
		int ret = chan_recv(cn->c, &type, &buf, &len, r->o.heartbeat_ms + r->o.leader_timeout_ms);

		if (ret <= 0) {
			if (ret == -ETIMEDOUT)
				rlog(LOG_WARNING, "no word from follower '%s' for %d ms; dropping it", cn->p->name,
				     r->o.heartbeat_ms + r->o.leader_timeout_ms);
			else if (ret < 0 && ret != -ECONNRESET)
				rlog(LOG_WARNING, "dropping follower '%s': %s", cn->p->name, chan_strerror(ret));
			break;
		}
		if (type != MSG_ACK || len != 24)
			break;
		pthread_mutex_lock(&r->mu);
		cn->p->received = repl_get64(buf);
		cn->p->durable = repl_get64((uint8_t *)buf + 8);
		cn->p->applied = repl_get64((uint8_t *)buf + 16);
		cn->p->last_ack_ns = now_ns();
		if (cn->p->ring_seq[cn->p->applied % 256] == cn->p->applied)
			cn->p->applied_pos = cn->p->ring_pos[cn->p->applied % 256];
		if (r->fell_back)
			maybe_resume(r);
		pthread_cond_broadcast(&r->cv_ack);
		pthread_mutex_unlock(&r->mu);
	}
	pthread_mutex_lock(&r->mu);
	cn->dead = 1;
	pthread_cond_broadcast(&r->cv_new);
	pthread_mutex_unlock(&r->mu);
	shutdown(cn->fd, SHUT_RDWR);
	return NULL;
}

static int send_refuse(struct chan *c, const char *why)
{
	rlog(LOG_WARNING, "%s", why);
	return chan_send(c, MSG_REFUSE, why, strlen(why));
}

/* Checks that the follower's log ends at a record of ours. 0 or a refusal. */
/*
 * Where a follower whose last record is of epoch fepoch left our history: the
 * branch record of the first later epoch in our log says after which seq.
 * 0 and *seq set, or -ENOENT.
 */
static int branch_point(struct repl *r, uint64_t fepoch, uint64_t *seq, uint8_t mac[CRYPTO_MAC_BYTES])
{
	struct oplog_reader *rd = NULL;
	struct record rec;
	int ret = -ENOENT, found = 0;

	if (oplog_reader_open(&rd, r->n->logdirfd, r->n->key, oplog_first_seq(r->n->log)))
		return -ENOENT;
	oplog_reader_trust(rd);
	while (!found && oplog_reader_next(rd, &rec) == 1) {
		if (rec.type == REC_BRANCH && rec.epoch > fepoch && rec.off <= fepoch) {
			*seq = rec.len;
			found = 1;
		}
	}
	oplog_reader_free(rd);
	if (!found)
		return -ENOENT;
	memset(mac, 0, CRYPTO_MAC_BYTES);
	if (*seq == 0)
		return 0;
	if (oplog_reader_open(&rd, r->n->logdirfd, r->n->key, *seq) == 0 && oplog_reader_next(rd, &rec) == 1 &&
	    rec.seq == *seq) {
		size_t len;
		const uint8_t *raw = oplog_reader_raw(rd, &len);
		memcpy(mac, record_mac_of(raw, len), CRYPTO_MAC_BYTES);
		ret = 0;
	}
	oplog_reader_free(rd);
	return ret;
}

/* A follower that diverged: tell it where, if our log knows (it can then rewind). */
static void refuse_diverged(struct repl *r, struct chan *c, const char *name, uint64_t fepoch, const char *why)
{
	uint8_t msg[DIVERGED_BYTES];
	uint64_t s;

	if (branch_point(r, fepoch, &s, msg + 8) == 0) {
		rlog(LOG_WARNING, "%s: its epoch %" PRIu64 " records after seq %" PRIu64 " are not ours; it must rewind",
		     why, fepoch, s);
		repl_put64(msg, s);
		chan_send(c, MSG_DIVERGED, msg, sizeof(msg));
		return;
	}
	send_refuse(c, why);
	(void)name;
}

static int check_follower(struct repl *r, struct chan *c, const char *name, uint64_t seq, const uint8_t *mac,
			  uint64_t fepoch)
{
	struct node *n = r->n;
	struct oplog_reader *rd = NULL;
	struct record rec;
	char why[300];
	uint64_t applied = node_applied(n);
	int ok = 0;

	if (seq == 0)
		return oplog_first_seq(n->log) <= 1 ? 0 : -ERANGE;
	if (seq > applied) {
		snprintf(why, sizeof(why), "follower '%s' has records up to seq %" PRIu64 " but the leader only %" PRIu64
			 "; it diverged", name, seq, applied);
		refuse_diverged(r, c, name, fepoch, why);
		return -EPROTO;
	}
	if (seq < oplog_first_seq(n->log))
		return -ERANGE;
	if (oplog_reader_open(&rd, n->logdirfd, n->key, seq) == 0 && oplog_reader_next(rd, &rec) == 1 &&
	    rec.seq == seq) {
		size_t len;
		const uint8_t *raw = oplog_reader_raw(rd, &len);
		ok = mac_equal(record_mac_of(raw, len), mac) == 0;
	}
	oplog_reader_free(rd);
	if (!ok) {
		snprintf(why, sizeof(why), "follower '%s' diverged from the leader at or before seq %" PRIu64, name, seq);
		refuse_diverged(r, c, name, fepoch, why);
		return -EPROTO;
	}
	return 0;
}

static int send_heartbeat(struct repl *r, struct chan *c)
{
	uint8_t hb[32];
	struct pos last = oplog_last(r->n->log);

	repl_put64(hb, last.epoch);
	repl_put64(hb + 8, node_applied(r->n));
	repl_put64(hb + 16, oplog_durable(r->n->log));
	repl_put64(hb + 24, (uint64_t)now_ns());
	return chan_send(c, MSG_HEARTBEAT, hb, sizeof(hb));
}

/* How many bytes of records the stream queues before it writes them out. */
#define STREAM_BATCH_BYTES (CHAN_QUEUE_BYTES - 4096)

/*
 * How long a stream waits for a few records to become more (when nobody
 * waits for followers to hold them), and what counts as a few.
 */
#define STREAM_GATHER_NS 500000
#define STREAM_GATHER_RECORDS 64

static int stream_may_gather(struct repl *r)
{
	int may;

	pthread_mutex_lock(&r->mu);
	may = r->o.mode == SYNC_ASYNC || r->fell_back;
	pthread_mutex_unlock(&r->mu);
	return may && node_role(r->n) == ROLE_LEADER;
}

/*
 * A stepped-down leader has sent its last record: it waits (a few seconds at
 * most) until the follower says it has them before the connection closes.
 * Closed at once, the acknowledgements still unread here make the close a
 * reset, which drops what is still queued for the follower (and the
 * follower, seeing the reset, stops reading what it already holds): the
 * promotion would find the last records missing (failover_wb_late.sh).
 */
static void hand_over(struct conn *cn, uint64_t sent)
{
	struct repl *r = cn->r;
	int64_t deadline = now_ns() + 5000000000LL;
	uint64_t received;
	int dead;

	for (;;) {
		pthread_mutex_lock(&r->mu);
		received = cn->p->received;
		dead = cn->dead;
		pthread_mutex_unlock(&r->mu);
		if (received >= sent || dead || now_ns() >= deadline || repl_nap(r, &r->cv_ack, 10))
			break;
	}
	if (received >= sent)
		rlog(LOG_NOTICE, "stepped down: handed over to '%s' up to seq %" PRIu64, cn->p->name, sent);
	else
		rlog(LOG_WARNING, "stepped down: '%s' acknowledged seq %" PRIu64 " of the %" PRIu64 " sent to it",
		     cn->p->name, received, sent);
}

/* Ships records after p->sent up to the committed position; heartbeats. */
static void stream(struct conn *cn)
{
	struct repl *r = cn->r;
	struct oplog_reader *rd = NULL;
	int64_t next_hb = 0;
	int misses = 0;	/* looks in a row that did not find a record applied says is there */
	int gathered = 0;	/* napped to let records gather (once per send) */

	for (;;) {
		/*
		 * The role before applied: once it reads follower, everything the
		 * node committed as leader is in applied (the step-down waited for
		 * it). Read after, a record committed between the two reads was
		 * never sent (failover_wb_late.sh, one run in five).
		 */
		int leader = node_role(r->n) == ROLE_LEADER;
		uint64_t applied = node_applied(r->n), sent;
		int dead, stop;

		pthread_mutex_lock(&r->mu);
		dead = cn->dead;
		stop = r->stopping;
		sent = cn->p->sent;
		pthread_mutex_unlock(&r->mu);
		if (dead || stop)
			break;
		if (applied <= sent && !leader) {
			hand_over(cn, sent);
			break;	/* stepped down and handed everything over: let it find the new leader */
		}
		if (applied > sent && applied - sent < STREAM_GATHER_RECORDS && !gathered && stream_may_gather(r)) {
			/*
			 * A few records and nobody waiting for them: let more come
			 * so that one write carries them, instead of waking this
			 * thread, the follower's threads and our acknowledger for
			 * every record.
			 */
			struct timespec ts = { 0, STREAM_GATHER_NS };
			nanosleep(&ts, NULL);
			gathered = 1;
			continue;
		}
		gathered = 0;
		if (applied > sent) {
			struct record rec;
			size_t batch = 0;
			int ret = 0, lost = 0;

			if (!rd) {
				if (oplog_reader_open(&rd, r->n->logdirfd, r->n->key, sent + 1))
					break;
				oplog_reader_trust(rd);	/* the follower checks every MAC itself */
			}
			/*
			 * Everything committed so far, up to STREAM_BATCH_BYTES, goes in
			 * one write: a sealed frame per record, queued in the channel.
			 */
			while (sent < applied && batch < STREAM_BATCH_BYTES) {
				size_t len;
				const uint8_t *raw;
				uint64_t pos;

				ret = oplog_reader_next(rd, &rec);
				if (ret != 1 || rec.seq != sent + 1)
					break;
				raw = oplog_reader_raw(rd, &len);
				pos = oplog_reader_pos(rd);
				if (chan_queue(cn->c, MSG_RECORD, raw, len)) {
					lost = 1;
					break;
				}
				batch += len;
				sent = rec.seq;
				pthread_mutex_lock(&r->mu);
				cn->p->sent = rec.seq;
				cn->p->ring_seq[rec.seq % 256] = rec.seq;
				cn->p->ring_pos[rec.seq % 256] = pos;
				cn->p->ring_time[rec.seq % 256] = rec.time_ns;
				if (!cn->p->applied_pos || cn->p->applied < rec.seq - 1)
					cn->p->applied_pos = cn->p->applied_pos ? cn->p->applied_pos : pos - len;
				pthread_mutex_unlock(&r->mu);
			}
			if (lost || (batch && chan_flush(cn->c)))
				break;	/* the channel is dead */
			if (ret == 1 && rec.seq == sent) {
				misses = 0;
				continue;	/* stopped at applied or at the batch limit */
			}
			if (ret < 0) {
				rlog(LOG_ERR, "unable to read the log at seq %" PRIu64 " for '%s'", sent + 1, cn->p->name);
				break;
			}
			if (ret == 1) {
				/* the record it needs was trimmed past --log-retain */
				rlog(LOG_WARNING, "follower '%s' needs seq %" PRIu64 ", no longer in the log; it needs a resync",
				     cn->p->name, sent + 1);
				pthread_mutex_lock(&r->mu);
				cn->p->needs_resync = 1;
				pthread_mutex_unlock(&r->mu);
				break;
			}
			/*
			 * The record is not in the log yet, though applied says so:
			 * not expected (the reader follows the log's growth and its
			 * rollovers). Look again with the same reader a few times --
			 * a new one reads its segment from the start -- then with a
			 * new one, in case the log was replaced under it.
			 */
			if (++misses >= 10) {
				oplog_reader_free(rd);
				rd = NULL;
				misses = 0;
			}
			if (repl_nap(r, &r->cv_new, 1))
				break;
			continue;
		}
		if (now_ns() >= next_hb) {
			if (send_heartbeat(r, cn->c))
				break;
			next_hb = now_ns() + (int64_t)r->o.heartbeat_ms * 1000000;
		}
		pthread_mutex_lock(&r->mu);
		if (!r->stopping && !cn->dead && node_applied(r->n) <= cn->p->sent) {
			struct timespec until;
			int64_t t = next_hb;
			/* CLOCK_REALTIME deadline for the heartbeat */
			until.tv_sec = (time_t)(t / 1000000000);
			until.tv_nsec = (long)(t % 1000000000);
			pthread_cond_timedwait(&r->cv_new, &r->mu, &until);
		}
		pthread_mutex_unlock(&r->mu);
	}
	oplog_reader_free(rd);
}

static void *conn_main(void *arg)
{
	struct conn *cn = arg;
	struct repl *r = cn->r;
	uint8_t type, *hello;
	void *buf;
	size_t len;
	char name[65];
	pthread_t acker;
	int ret, have_acker = 0, want_snap;

	thread_name("repfs-conn");
	ret = chan_handshake(&cn->c, cn->fd, r->n->key, 0, HANDSHAKE_MS);
	if (ret) {
		rlog(LOG_WARNING, "refused a connection from %s: %s", cn->addr, chan_strerror(ret));
		goto out;
	}
	ret = chan_recv(cn->c, &type, &buf, &len, HANDSHAKE_MS);
	if (ret == 1 && (type == MSG_PROBE || type == MSG_STEPDOWN || type == MSG_CLAIM)) {
		repl_answer_probe(r, cn->c, type, buf, len);
		goto out;
	}
	if (ret == 1 && type == MSG_VERIFY) {
		verify_serve(r, cn->c);
		goto out;
	}
	if (ret != 1 || type != MSG_HELLO || len != HELLO_BYTES) {
		rlog(LOG_WARNING, "peer at %s did not say hello%s%s", cn->addr, ret < 0 ? ": " : "",
		     ret < 0 ? chan_strerror(ret) : "");
		goto out;
	}
	if (node_role(r->n) != ROLE_LEADER) {
		char why[120];
		snprintf(why, sizeof(why), "'%s' is not the leader", r->n->st.name);
		chan_send(cn->c, MSG_REFUSE, why, strlen(why));
		goto out;
	}
	hello = buf;
	memcpy(name, hello + 48, 64);
	name[64] = 0;
	if (!*name || strchr(name, '"') || strchr(name, '\\')) {
		send_refuse(cn->c, "invalid node name");
		goto out;
	}
	if (repl_get64(hello) > r->n->st.epoch) {
		char why[160];
		snprintf(why, sizeof(why), "follower '%s' is at epoch %" PRIu64 ", above this leader's", name,
			 repl_get64(hello));
		send_refuse(cn->c, why);
		/* another node was promoted: this one is superseded */
		if (node_role(r->n) == ROLE_LEADER && node_step_down(r->n, repl_get64(hello), NULL) == 0) {
			pthread_mutex_lock(&r->mu);
			pthread_cond_broadcast(&r->cv_ack);
			pthread_mutex_unlock(&r->mu);
			repl_start_following(r, NULL);
		}
		goto out;
	}
	/*
	 * A snapshot (snapshot.c) for a follower that asks for one (it is new,
	 * or one was interrupted), that holds nothing while this leader holds
	 * more than its first record, or that lacks what the log no longer holds.
	 */
	want_snap = (repl_get64(hello + 120) & HELLO_F_SNAPSHOT) != 0;
	if (!want_snap) {
		ret = check_follower(r, cn->c, name, repl_get64(hello + 8), hello + 16, repl_get64(hello + 112));
		if (ret == -ERANGE || (ret == 0 && repl_get64(hello + 8) == 0 && node_applied(r->n) > 1)) {
			if (ret == -ERANGE)
				rlog(LOG_NOTICE, "follower '%s' is at seq %" PRIu64 " and the log starts at seq %" PRIu64
						 ": it resyncs from a snapshot", name, repl_get64(hello + 8),
				     oplog_first_seq(r->n->log));
			want_snap = 1;
			ret = 0;
		}
		if (ret)
			goto out;
	}
	pthread_mutex_lock(&r->mu);
	cn->p = peer_get(r, name);
	if (cn->p) {
		cn->p->connected++;
		oplog_readers(r->n->log, 1);	/* its stream reads the log: keep its pages cached */
		cn->p->needs_resync = 0;
		cn->p->snap_until = 0;
		cn->p->applied_pos = 0;
		cn->p->sent = cn->p->received = cn->p->durable = repl_get64(hello + 8);
		cn->p->snap_paces = (repl_get64(hello + 120) & HELLO_F_PACE) != 0;
		snprintf(cn->p->addr, sizeof(cn->p->addr), "%s", cn->addr);
		cn->p->last_ack_ns = now_ns();
	}
	pthread_mutex_unlock(&r->mu);
	if (!cn->p) {
		send_refuse(cn->c, "too many followers");
		goto out;
	}
	if (want_snap) {
		uint64_t at, until = 0;
		ret = snap_serve(r, cn->c, cn->p, &at, &until);
		pthread_mutex_lock(&r->mu);
		cn->p->needs_resync = ret != 0;
		cn->p->snap_until = until;	/* no sync mode waits on it while it installs the snapshot */
		cn->p->sent = cn->p->received = cn->p->durable = cn->p->applied = at;
		pthread_mutex_unlock(&r->mu);
		if (ret)
			goto out_peer;
	}
	{
		uint8_t w[16 + 64 + 8] = { 0 };
		repl_put64(w, r->n->st.epoch);
		repl_put64(w + 8, node_applied(r->n));
		snprintf((char *)w + 16, 64, "%s", r->n->st.name);
		repl_put64(w + 80, r->o.mode == SYNC_ASYNC ? WELCOME_F_ASYNC : 0);
		if (chan_send(cn->c, MSG_WELCOME, w, sizeof(w)))
			goto out_peer;
	}
	rlog(LOG_NOTICE, "follower '%s' connected from %s at seq %" PRIu64, name, cn->addr, cn->p->sent);
	if (pthread_create(&acker, NULL, ack_main, cn) == 0)
		have_acker = 1;
	else
		goto out_peer;
	stream(cn);
	rlog(LOG_NOTICE, "follower '%s' disconnected", name);
out_peer:
	shutdown(cn->fd, SHUT_RDWR);
	if (have_acker)
		pthread_join(acker, NULL);
	pthread_mutex_lock(&r->mu);
	cn->p->connected--;
	oplog_readers(r->n->log, -1);
	cn->p->snap_from = 0;
	cn->p->snapshotting = 0;
	cn->p->snap_yielding = 0;
	pthread_cond_broadcast(&r->cv_ack);
	pthread_mutex_unlock(&r->mu);
out:
	chan_free(cn->c);
	repl_untrack_fd(r, cn->fd);
	close(cn->fd);
	pthread_mutex_lock(&r->mu);
	r->conns--;
	pthread_cond_broadcast(&r->cv_ack);
	pthread_mutex_unlock(&r->mu);
	free(cn);
	return NULL;
}

static void *listen_main(void *arg)
{
	struct repl *r = arg;

	thread_name("repfs-listen");
	for (;;) {
		struct sockaddr_storage sa;
		socklen_t salen = sizeof(sa);
		struct conn *cn;
		pthread_t t;
		int fd = accept4(r->listenfd, (struct sockaddr *)&sa, &salen, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;	/* shut down */
		}
		cn = calloc(1, sizeof(*cn));
		if (!cn || repl_track_fd(r, fd)) {
			free(cn);
			close(fd);
			continue;
		}
		cn->r = r;
		cn->fd = fd;
		if (sa.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&sa;
			char ip[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
			snprintf(cn->addr, sizeof(cn->addr), "%s:%u", ip, ntohs(in->sin_port));
		} else {
			snprintf(cn->addr, sizeof(cn->addr), "a peer");
		}
		pthread_mutex_lock(&r->mu);
		r->conns++;
		pthread_mutex_unlock(&r->mu);
		if (pthread_create(&t, NULL, conn_main, cn)) {
			pthread_mutex_lock(&r->mu);
			r->conns--;
			pthread_mutex_unlock(&r->mu);
			repl_untrack_fd(r, fd);
			close(fd);
			free(cn);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

/* ======================= BOTH ======================= */

int repl_listen_socket(const char *hostport)
{
	return repl_tcp_socket(hostport, 1, 0);
}

int repl_start(struct repl **out, struct node *n, const struct repl_opts *o, int listenfd)
{
	struct repl *r;
	int ret;

	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->n = n;
	r->o = *o;
	if (!r->o.heartbeat_ms)
		r->o.heartbeat_ms = REPL_DEFAULT_HEARTBEAT_MS;
	if (!r->o.leader_timeout_ms)
		r->o.leader_timeout_ms = REPL_DEFAULT_LEADER_TIMEOUT_MS;
	r->listenfd = listenfd;
	r->follow_fd = -1;
	r->verify_fd = -1;
	for (int i = 0; i < MAX_CONNS; i++)
		r->conn_fds[i] = -1;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv_new, NULL);
	pthread_cond_init(&r->cv_ack, NULL);
	if (r->listenfd >= 0) {
		ret = -pthread_create(&r->listener, NULL, listen_main, r);
		if (ret)
			goto fail;
		r->have_listener = 1;
	}
	if (n->st.role == ROLE_FOLLOWER && o->npeers) {
		ret = repl_start_following(r, NULL);
		if (ret)
			goto fail;
	}
	if (o->npeers) {
		ret = -pthread_create(&r->watch, NULL, repl_watch_main, r);
		if (ret)
			goto fail;
		r->have_watch = 1;
	}
	*out = r;
	return 0;
fail:
	repl_stop(r);
	return ret;
}

void repl_stop(struct repl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	for (int i = 0; i < MAX_CONNS; i++)
		if (r->conn_fds[i] >= 0)
			shutdown(r->conn_fds[i], SHUT_RDWR);
	if (r->verify_fd >= 0)
		shutdown(r->verify_fd, SHUT_RDWR);
	pthread_cond_broadcast(&r->cv_new);
	pthread_cond_broadcast(&r->cv_ack);
	pthread_mutex_unlock(&r->mu);
	if (r->listenfd >= 0)
		shutdown(r->listenfd, SHUT_RDWR);
	if (r->have_listener)
		pthread_join(r->listener, NULL);
	if (r->have_follower)
		pthread_join(r->follower, NULL);
	if (r->have_watch)
		pthread_join(r->watch, NULL);
	pthread_mutex_lock(&r->mu);
	int checker = r->have_checker;
	r->have_checker = 0;
	pthread_mutex_unlock(&r->mu);
	if (checker)
		pthread_join(r->checker, NULL);
	pthread_mutex_lock(&r->mu);
	while (r->conns > 0 || r->verifiers > 0) {
		if (r->verify_fd >= 0)
			shutdown(r->verify_fd, SHUT_RDWR);
		for (int i = 0; i < MAX_CONNS; i++)
			if (r->conn_fds[i] >= 0)
				shutdown(r->conn_fds[i], SHUT_RDWR);
		pthread_cond_broadcast(&r->cv_new);
		pthread_mutex_unlock(&r->mu);
		repl_nap(r, &r->cv_ack, 50);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	if (r->listenfd >= 0)
		close(r->listenfd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv_new);
	pthread_cond_destroy(&r->cv_ack);
	free(r);
}

int repl_verify_take(struct repl *r)
{
	int ret = 0;

	pthread_mutex_lock(&r->mu);
	if (r->stopping)
		ret = -ESHUTDOWN;
	else
		r->verifiers++;
	pthread_mutex_unlock(&r->mu);
	return ret;
}

void repl_verify_give(struct repl *r)
{
	pthread_mutex_lock(&r->mu);
	r->verifiers--;
	pthread_cond_broadcast(&r->cv_ack);	/* repl_stop() may be waiting */
	pthread_mutex_unlock(&r->mu);
}

int repl_stopping(struct repl *r)
{
	int stopping;

	pthread_mutex_lock(&r->mu);
	stopping = r->stopping;
	pthread_mutex_unlock(&r->mu);
	return stopping;
}

void repl_notify(struct repl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->mu);
	pthread_cond_broadcast(&r->cv_new);
	pthread_mutex_unlock(&r->mu);
}

/* Called with mu held: how many followers hold seq durably, and how many are known. */
void repl_count_durable(struct repl *r, uint64_t seq, int *have, int *known)
{
	*have = *known = 0;
	for (int i = 0; i < REPL_MAX_PEERS; i++) {
		if (!r->peers[i].used || r->peers[i].needs_resync ||
		    (r->peers[i].snap_until && r->peers[i].applied < r->peers[i].snap_until))
			continue;	/* one that needs a resync, or is installing one, counts once it follows */
		(*known)++;
		if (r->peers[i].durable >= seq)
			(*have)++;
	}
}

int repl_wait(struct repl *r, uint64_t seq)
{
	int64_t deadline;
	int ret = 0;

	if (!r || r->o.mode == SYNC_ASYNC)
		return 0;
	deadline = r->o.sync_timeout_ms ? now_ns() + (int64_t)r->o.sync_timeout_ms * 1000000 : 0;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		int have, known, need;
		struct timespec until;

		repl_count_durable(r, seq, &have, &known);
		need = r->o.mode == SYNC_QUORUM ? r->o.quorum : known;
		if (known == 0 && r->o.npeers == 0)
			break;	/* standalone: nobody to wait for */
		if (have >= need && need > 0) {
			if (r->fell_back) {
				r->fell_back = 0;
				rlog(LOG_NOTICE, "followers caught up; synchronous replication resumed");
			}
			break;
		}
		if (r->fell_back)
			break;
		if (r->stopping || r->n->st.role != ROLE_LEADER) {
			ret = -EIO;	/* stepped down while waiting: this node can no longer promise it */
			break;
		}
		if (deadline && now_ns() >= deadline) {
			r->fell_back = 1;
			rlog(LOG_WARNING, "no durable acknowledgement within %d ms; falling back to async",
			     r->o.sync_timeout_ms);
			break;
		}
		until = deadline_in_ms(CLOCK_REALTIME, 100);
		pthread_cond_timedwait(&r->cv_ack, &r->mu, &until);
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

uint64_t repl_min_durable(struct repl *r)
{
	uint64_t m = UINT64_MAX;

	if (!r)
		return m;
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < REPL_MAX_PEERS; i++)
		if (r->peers[i].used && r->peers[i].durable < m)
			m = r->peers[i].durable;
	pthread_mutex_unlock(&r->mu);
	return m;
}

uint64_t repl_snapshot_pin(struct repl *r)
{
	uint64_t m = UINT64_MAX;

	if (!r)
		return m;
	pthread_mutex_lock(&r->mu);
	for (int i = 0; i < REPL_MAX_PEERS; i++) {
		struct peer *p = &r->peers[i];
		/* until a follower that took a snapshot holds what followed it */
		if (p->used && p->snap_from) {
			uint64_t need = p->durable + 1 > p->snap_from ? p->durable + 1 : p->snap_from;
			if (need < m)
				m = need;
		}
	}
	pthread_mutex_unlock(&r->mu);
	return m;
}

int repl_leader(struct repl *r, char *buf, size_t len, long wait_ms)
{
	int ret = -ENOENT;

	if (!r || lock_within(&r->mu, wait_ms))
		return ret;
	if (r->following && r->leader[0]) {
		snprintf(buf, len, "%s", r->leader);
		ret = 0;
	}
	pthread_mutex_unlock(&r->mu);
	return ret;
}

/* The "mode" and "sync" members of the status; known: followers served since the start (0 if not known) */
static int mode_sync_json(struct repl *r, int known, char *buf, size_t len)
{
	char quorum[16] = "";

	if (r->o.mode == SYNC_QUORUM)
		snprintf(quorum, sizeof(quorum), "=%d", r->o.quorum);
	return snprintf(buf, len, "\"mode\":\"%s\",\"sync\":\"%s%s%s\"",
			__atomic_load_n(&r->n->st.role, __ATOMIC_RELAXED) == ROLE_FOLLOWER ? "follower"
			: (known || r->o.npeers)					    ? "replicating"
											    : "standalone",
			r->o.mode == SYNC_ASYNC ? "async" : r->o.mode == SYNC_ALL ? "all" : "quorum", quorum,
			r->o.commit_write ? " commit=write" : "");
}

int repl_status_json(struct repl *r, char *buf, size_t len, uint64_t applied, uint64_t last, uint64_t end,
		     long wait_ms, int *busy)
{
	int64_t now = now_ns();
	struct snap_progress snap;
	size_t off = 0;
	int n, known = 0;

	if (!r)
		return snprintf(buf, len, "\"mode\":\"standalone\",\"sync\":\"none\",\"peers\":[]");
	if (lock_within(&r->mu, wait_ms)) {
		*busy = 1;
		n = mode_sync_json(r, 0, buf, len);
		if (n < 0 || (size_t)n >= len)
			return n;
		return n + snprintf(buf + n, len - (size_t)n, ",\"peers\":[]");
	}
	snap = r->snap;
	for (int i = 0; i < REPL_MAX_PEERS; i++)
		known += r->peers[i].used;
	n = mode_sync_json(r, known, buf, len);
	off = n > 0 && (size_t)n < len ? (size_t)n : 0;
	n = snprintf(buf + off, len - off, ",\"fell_back_to_async\":%s,", r->fell_back ? "true" : "false");
	off += n > 0 ? (size_t)n : 0;
	if (r->n->st.role == ROLE_FOLLOWER) {
		char err[2 * sizeof(r->last_error)];
		n = snprintf(buf + off, len - off,
			     "\"following\":%s,\"leader_addr\":\"%s\",\"leader_seq\":%" PRIu64
			     ",\"lag\":%" PRIu64 ",\"ms_since_leader\":%" PRId64 ",\"last_error\":\"%s\",",
			     r->following ? "true" : "false", r->leader_addr, r->leader_seq,
			     r->leader_seq > applied ? r->leader_seq - applied : 0,
			     r->last_heard_ns ? (now - r->last_heard_ns) / 1000000 : -1,
			     json_escape(err, sizeof(err), r->last_error));
		off += n > 0 ? (size_t)n : 0;
	}
	n = snprintf(buf + off, len - off, "\"peers\":[");
	off += n > 0 ? (size_t)n : 0;
	for (int i = 0, first = 1; i < REPL_MAX_PEERS && off < len; i++) {
		struct peer *p = &r->peers[i];
		uint64_t next;
		int64_t lag_ms;
		if (!p->used)
			continue;
		/* how old the oldest record it lacks is */
		next = p->applied + 1;
		lag_ms = last <= p->applied ? 0
			 : p->ring_seq[next % 256] == next ? (now - p->ring_time[next % 256]) / 1000000
							   : (now - p->last_ack_ns) / 1000000;
		n = snprintf(buf + off, len - off,
			     "%s{\"name\":\"%s\",\"addr\":\"%s\",\"connected\":%s,\"seq\":%" PRIu64 ",\"received\":%" PRIu64
			     ",\"durable\":%" PRIu64 ",\"applied\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"lag\":%" PRIu64
			     ",\"lag_bytes\":%" PRIu64 ",\"lag_ms\":%" PRId64 ",\"needs_resync\":%s"
			     ",\"snapshotting\":%s,\"snapshot_objects_sent\":%" PRIu64 ",\"snapshot_bytes_sent\":%" PRIu64
			     ",\"snapshot_yielding\":%s}",
			     first ? "" : ",", p->name, p->addr, p->connected > 0 ? "true" : "false", p->received,
			     p->received, p->durable, p->applied, p->sent, last > p->applied ? last - p->applied : 0,
			     last > p->applied && end > p->applied_pos ? end - p->applied_pos : 0,
			     lag_ms, p->needs_resync && !p->snapshotting ? "true" : "false",
			     p->snapshotting ? "true" : "false", p->snap_files, p->snap_bytes_sent,
			     p->snap_yielding ? "true" : "false");
		off += n > 0 ? (size_t)n : 0;
		first = 0;
	}
	pthread_mutex_unlock(&r->mu);
	if (off < len)
		off += (size_t)snprintf(buf + off, len - off, "],");
	if (off < len)
		off += (size_t)snap_status_json(&snap, buf + off, len - off);
	return (int)off;
}
