/* promote.c -- probes, promotion claims, repl_promote(), switchover and the epoch watch */
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

void repl_put_info(struct repl *r, uint8_t info[INFO_BYTES])
{
	memset(info, 0, INFO_BYTES);
	repl_put64(info, (uint64_t)node_role(r->n));
	repl_put64(info + 8, r->n->st.epoch);
	repl_put64(info + 16, oplog_last(r->n->log).seq);
	repl_put64(info + 24, node_applied(r->n));
	snprintf((char *)info + 32, 64, "%s", r->n->st.name);
}


/*
 * Promises epoch to the candidate (name, seq) unless it is already promised
 * to a better one: the higher seq wins, then the lower name. Every node ranks
 * candidates the same way, so of two concurrent promotions exactly one gets
 * every promise. 1 if the promise is (now) the candidate's.
 */
int repl_promise(struct repl *r, uint64_t epoch, uint64_t seq, const char *name)
{
	int ours;

	pthread_mutex_lock(&r->mu);
	if (epoch > r->promised_epoch ||
	    (epoch == r->promised_epoch &&
	     (seq > r->promised_seq || (seq == r->promised_seq && strcmp(name, r->promised_to) < 0)))) {
		r->promised_epoch = epoch;
		r->promised_seq = seq;
		snprintf(r->promised_to, sizeof(r->promised_to), "%s", name);
	}
	ours = r->promised_epoch == epoch && !strcmp(r->promised_to, name);
	pthread_mutex_unlock(&r->mu);
	return ours;
}

/* PROBE: say who we are. STEPDOWN: a follower is being promoted; hand over. CLAIM: see repl_promise(). */
void repl_answer_probe(struct repl *r, struct chan *c, uint8_t type, const uint8_t *buf, size_t len)
{
	uint8_t info[INFO_BYTES];
	int wb_late = 0;

	if (type == MSG_STEPDOWN && len >= 8 && node_role(r->n) == ROLE_LEADER) {
		char addr[64] = "";
		snprintf(addr, sizeof(addr), "%.*s", (int)(len - 8 < 63 ? len - 8 : 63), (const char *)buf + 8);
		rlog(LOG_NOTICE, "switchover: a follower%s%s is taking over; stepping down", *addr ? " at " : "",
		     addr);
		/* new writes only while the kernel writes back (node_step_down()); what is committed keeps streaming */
		if (node_step_down(r->n, repl_get64(buf), &wb_late) == 0) {
			pthread_mutex_lock(&r->mu);
			pthread_cond_broadcast(&r->cv_ack);	/* waiting fsyncs fail: not durable here now */
			pthread_mutex_unlock(&r->mu);
			repl_start_following(r, *addr ? addr : NULL);
		}
	}
	if (type == MSG_CLAIM && len == CLAIM_BYTES) {
		char name[65];
		snprintf(name, sizeof(name), "%.64s", (const char *)buf + 16);
		/* answered with our info: role leader or a promise to another means "no";
		 * a follower that grants it leaves the old epoch behind (fencing) */
		if (node_role(r->n) == ROLE_FOLLOWER && repl_promise(r, repl_get64(buf), repl_get64(buf + 8), name) &&
		    node_raise_epoch(r->n, repl_get64(buf)) == 0) {
			pthread_mutex_lock(&r->mu);
			if (r->follow_fd >= 0)
				shutdown(r->follow_fd, SHUT_RDWR);	/* stop acknowledging the old epoch */
			pthread_mutex_unlock(&r->mu);
		}
	}
	repl_put_info(r, info);
	if (wb_late)	/* the role's high half, unused before, carries the step-down's flags */
		repl_put64(info, repl_get64(info) | STEPDOWN_WB_LATE);
	if (type == MSG_CLAIM) {
		pthread_mutex_lock(&r->mu);
		snprintf((char *)info + 32, 64, "%.63s", r->promised_to);	/* whom we promised it to */
		repl_put64(info + 8, r->promised_epoch);
		pthread_mutex_unlock(&r->mu);
	}
	chan_send(c, MSG_INFO, info, sizeof(info));
	chan_close(c);
}

/* ======================= PROMOTION ======================= */

struct info {
	enum role role;
	int wb_late;	/* a step-down's answer: the kernel's writeback outlasted the wait (fs/node.c) */
	uint64_t epoch, seq, applied;
	char name[65];
};

/* Asks the node at addr who it is (MSG_PROBE), or tells it to step down (MSG_STEPDOWN). */
static int ask_peer(const struct key *k, const char *addr, uint8_t type, const void *payload, size_t plen,
		    struct info *out)
{
	struct chan *c = NULL;
	uint8_t t;
	void *buf;
	size_t len;
	int fd, ret;

	fd = repl_tcp_socket(addr, 0, 1000);
	if (fd < 0)
		return fd;
	ret = chan_handshake(&c, fd, k, 1, 2000);
	if (!ret)
		ret = chan_send(c, type, payload, plen);
	if (!ret) {
		/* a step-down first has the kernel write back its dirty pages (fs/node.c, WB_FLUSH_MS) */
		ret = chan_recv(c, &t, &buf, &len, type == MSG_STEPDOWN ? 35000 : 5000);
		if (ret == 1 && t == MSG_INFO && len == INFO_BYTES) {
			const uint8_t *b = buf;
			out->role = (enum role)(repl_get64(b) & 0xffffffffu);
			out->wb_late = (repl_get64(b) & STEPDOWN_WB_LATE) != 0;
			out->epoch = repl_get64(b + 8);
			out->seq = repl_get64(b + 16);
			out->applied = repl_get64(b + 24);
			snprintf(out->name, sizeof(out->name), "%.64s", (const char *)b + 32);
			ret = 0;
		} else if (ret >= 0) {
			ret = -EPROTO;
		}
	}
	chan_free(c);
	close(fd);
	return ret;
}

int repl_highest_epoch(const struct key *k, const char *const *peers, int npeers, uint64_t *epoch, char *who,
		       size_t wholen)
{
	int reached = 0;

	*epoch = 0;
	for (int i = 0; i < npeers; i++) {
		struct info in;
		if (ask_peer(k, peers[i], MSG_PROBE, NULL, 0, &in))
			continue;
		reached++;
		if (in.epoch > *epoch) {
			*epoch = in.epoch;
			snprintf(who, wholen, "%s", in.name);
		}
	}
	return reached;
}

/*
 * Fencing for a leader cut off while another node was promoted: nobody tells
 * it, so it asks. While it leads, every second it probes its peers; one at a
 * higher epoch means it was superseded: it steps down and follows.
 */
void *repl_watch_main(void *arg)
{
	struct repl *r = arg;

	int64_t next = 0;

	while (!repl_nap(r, &r->cv_ack, 1000)) {
		uint64_t epoch = 0;
		char who[65] = "";

		if (now_ns() < next)
			continue;	/* woken early (acks): once a second is enough */
		next = now_ns() + 1000000000LL;
		if (node_role(r->n) != ROLE_LEADER) {
			node_settle_mount(r->n);
			continue;
		}
		repl_highest_epoch(r->n->key, r->o.peers, r->o.npeers, &epoch, who, sizeof(who));
		if (epoch <= r->n->st.epoch || node_role(r->n) != ROLE_LEADER)
			continue;
		rlog(LOG_WARNING, "peer '%s' is at epoch %" PRIu64 " (ours is %" PRIu64 "): superseded; stepping down",
		     who, epoch, r->n->st.epoch);
		if (node_step_down(r->n, epoch, NULL) == 0) {
			pthread_mutex_lock(&r->mu);
			pthread_cond_broadcast(&r->cv_ack);
			pthread_cond_broadcast(&r->cv_new);
			pthread_mutex_unlock(&r->mu);
			repl_start_following(r, NULL);
		}
	}
	return NULL;
}

int repl_promote(struct repl *r, int force, char *msg, size_t len)
{
	struct node *n = r->n;
	uint64_t best_epoch = n->st.epoch, my_seq, leader_seq = 0;
	const char *leader_addr = NULL;
	char better[65] = "";
	uint64_t better_seq = 0;
	int ret, wb_late = 0;
	uint64_t short_from = 0;	/* --force past a short hand-over: seqs short_from..leader_seq stay behind */
	char how[224] = "";

	if (node_role(n) == ROLE_LEADER) {
		snprintf(msg, len, "'%s' is already the leader (epoch %" PRIu64 ")", n->st.name, n->st.epoch);
		return -EALREADY;
	}
	if (node_snapshot_pending(n)) {
		/* even --force: its tree is a part of the leader's, not a state the leader ever had */
		snprintf(msg, len, "'%s' is taking a snapshot of the leader's tree; it cannot lead before it has it all",
			 n->st.name);
		return -EBUSY;
	}
	my_seq = oplog_last(n->log).seq;
	for (int i = 0; i < r->o.npeers; i++) {
		struct info in;
		if (ask_peer(n->key, r->o.peers[i], MSG_PROBE, NULL, 0, &in))
			continue;
		if (in.epoch > best_epoch)
			best_epoch = in.epoch;
		if (in.role == ROLE_LEADER && in.epoch >= n->st.epoch) {
			leader_addr = r->o.peers[i];
			leader_seq = in.seq;
		} else if (in.role == ROLE_FOLLOWER && in.seq > my_seq && in.seq > better_seq) {
			better_seq = in.seq;
			snprintf(better, sizeof(better), "%s", in.name);
		}
	}
	if (leader_addr) {
		/* switchover: the leader stops, hands over what it has, then we take over */
		uint8_t req[8 + 64] = { 0 };
		struct info in;
		int64_t deadline;
		int following;

		pthread_mutex_lock(&r->mu);
		following = r->following && !strcmp(r->leader_addr, leader_addr);
		pthread_mutex_unlock(&r->mu);
		if (!following || my_seq > leader_seq) {
			/* only a follower whose log is a prefix of the leader's can take over from it */
			snprintf(msg, len,
				 "'%s' is not following the leader at '%s'%s; a switchover needs a follower that is",
				 n->st.name, leader_addr, my_seq > leader_seq ? " (its log diverged)" : "");
			return -EAGAIN;
		}
		repl_put64(req, best_epoch + 1);
		snprintf((char *)req + 8, 64, "%s", r->o.listen ? r->o.listen : "");
		ret = ask_peer(n->key, leader_addr, MSG_STEPDOWN, req, 8 + strlen((char *)req + 8), &in);
		if (ret) {
			snprintf(msg, len, "the leader at '%s' did not step down: %s", leader_addr, strerror(-ret));
			return ret;
		}
		if (in.role == ROLE_LEADER) {
			/* it could not step down (its state file not saved): two leaders otherwise */
			snprintf(msg, len, "the leader at '%s' did not step down (see its log); not promoting",
				 leader_addr);
			return -EAGAIN;
		}
		leader_seq = in.seq;
		wb_late = in.wb_late;
		deadline = now_ns() + 5000000000LL;	/* from the step-down, which may have waited for writeback */
		while (node_applied(n) < leader_seq && now_ns() < deadline)
			repl_nap(r, &r->cv_new, 10);
		if (node_applied(n) < leader_seq) {
			snprintf(msg, len,
				 "the old leader stepped down but handed over only up to seq %" PRIu64 " of %" PRIu64
				 "; not promoting (run again, or --force)",
				 node_applied(n), leader_seq);
			if (!force)
				return -ETIMEDOUT;
			short_from = node_applied(n) + 1;
		}
	} else if (better[0] && !force) {
		snprintf(msg, len,
			 "'%s' is behind '%s' (seq %" PRIu64 " < %" PRIu64 "); promote '%s', or use --force", n->st.name,
			 better, my_seq, better_seq, better);
		return -EAGAIN;
	} else {
		/* no leader: make sure no other promotion takes the same epoch */
		uint8_t claim[CLAIM_BYTES] = { 0 };
		uint64_t e = best_epoch + 1, claim_seq = force ? UINT64_MAX : my_seq;

		if (!repl_promise(r, e, claim_seq, n->st.name)) {
			snprintf(msg, len, "epoch %" PRIu64 " is being taken by '%s'; not promoting", e, r->promised_to);
			return -EBUSY;
		}
		repl_put64(claim, e);
		repl_put64(claim + 8, claim_seq);
		snprintf((char *)claim + 16, 64, "%s", n->st.name);
		for (int i = 0; i < r->o.npeers; i++) {
			struct info in;
			if (ask_peer(n->key, r->o.peers[i], MSG_CLAIM, claim, sizeof(claim), &in))
				continue;	/* unreachable: it cannot be promoting either */
			if (in.role == ROLE_LEADER || in.epoch > e || strcmp(in.name, n->st.name)) {
				snprintf(msg, len, "epoch %" PRIu64 " is being taken by '%s'; not promoting",
					 in.epoch > e ? in.epoch : e, in.role == ROLE_LEADER ? "a leader" : in.name);
				return -EBUSY;
			}
		}
		/* a better candidate's claim may have arrived meanwhile */
		if (!repl_promise(r, e, claim_seq, n->st.name)) {
			snprintf(msg, len, "epoch %" PRIu64 " is being taken by '%s'; not promoting", e, r->promised_to);
			return -EBUSY;
		}
	}
	/* stop following before the first write of the new epoch */
	pthread_mutex_lock(&r->mu);
	if (r->follow_fd >= 0)
		shutdown(r->follow_fd, SHUT_RDWR);
	pthread_mutex_unlock(&r->mu);
	ret = node_promote(n, best_epoch + 1);
	if (ret) {
		snprintf(msg, len, "promotion of '%s' failed: %s", n->st.name, strerror(-ret));
		return ret;
	}
	repl_notify(r);
	if (leader_addr && short_from)
		snprintf(how, sizeof(how), " (switchover, forced: seq %" PRIu64 "-%" PRIu64 " of the old leader's log are not here)",
			 short_from, leader_seq);
	else if (leader_addr && wb_late)
		snprintf(how, sizeof(how), " (switchover: the old leader stopped waiting for its kernel's writeback; "
					   "writes still cached there are not here, and fail there at fsync or close)");
	else if (leader_addr)
		snprintf(how, sizeof(how), " (switchover: nothing lost)");
	snprintf(msg, len, "'%s' is the leader of epoch %" PRIu64 " from seq %" PRIu64 "%s", n->st.name, n->st.epoch,
		 oplog_last(n->log).seq, how);
	return 0;
}

