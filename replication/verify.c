/* verify.c -- `repfs verify`: does this follower's tree equal the leader's?
 *
 * Both trees change while we look (the leader keeps writing, the follower
 * keeps applying), so the comparison has two steps:
 *
 *  1. Fuzzy, cheap, lock-free: each side builds its digest tree (digest.h);
 *     the follower walks down from the root asking the leader for the
 *     children of each directory whose sum differs (MSG_VLIST), and notes
 *     every path where the two differ. A path that differs here may only
 *     have been caught mid-change.
 *  2. Exact, for those paths only: the follower holds its apply where it is
 *     (records keep arriving and being acknowledged), asks the leader for the
 *     digests of those paths under its sequencer, at its position L
 *     (MSG_VPIN), applies up to exactly L, digests the same paths, and
 *     releases. What still differs at the same position differs.
 *
 * A difference that step 1 misses would need two different trees with equal
 * XXH3-128 sums. `--repair` asks the leader for a resync (snapshot.c: only
 * what differs travels), waits for it, and verifies again.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/node.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../net/chan.h"
#include "digest.h"
#include "repl_int.h"

#define VERIFY_TIMEOUT_MS 120000
/*
 * While the other side digests its whole tree: every byte, holes hashed as
 * the zeros they read as (about 5 GB/s of apparent size here: 200 GB of
 * sparse files took 36 s), so a tree of sparse terabytes (disk images)
 * takes minutes. 120 s failed such a verify outright.
 */
#define VERIFY_DIGEST_TIMEOUT_MS (30 * 60 * 1000)
#define VERIFY_MAX_PINS 4096	/* paths compared exactly per round */
#define KID_BYTES (2 + 4 + 2 * DIGEST_BYTES)

/* ======================= LEADER ======================= */

static void put_kid(uint8_t **p, const char *name, const struct dnode *d)
{
	uint16_t nl = (uint16_t)strlen(name);

	memcpy(*p, &nl, 2);
	memcpy(*p + 2, name, nl);
	memcpy(*p + 2 + nl, &d->mode, 4);
	memcpy(*p + 6 + nl, d->meta, DIGEST_BYTES);
	memcpy(*p + 6 + nl + DIGEST_BYTES, d->sum, DIGEST_BYTES);
	*p += KID_BYTES + nl;
}

/* Answers MSG_VLIST: the directory itself (named "."), then its children, in chunks. */
static int send_kids(struct chan *c, const struct dnode *t, const char *rel)
{
	const struct dnode *d = digest_find(t, rel);
	size_t cap = CHAN_MAX_PAYLOAD, i = 0;
	uint8_t *buf = malloc(cap), *p;
	int ret = 0, self = 1;

	if (!buf)
		return -ENOMEM;
	do {
		p = buf + 1;
		if (self && d) {
			put_kid(&p, ".", d);
			self = 0;
		}
		while (d && i < d->nkids && (size_t)(p - buf) + KID_BYTES + strlen(d->kids[i].name) <= cap)
			put_kid(&p, d->kids[i].name, &d->kids[i]), i++;
		buf[0] = d && i < d->nkids;	/* more to come */
		ret = chan_send(c, MSG_VKIDS, buf, (size_t)(p - buf));
	} while (!ret && buf[0]);
	free(buf);
	return ret;
}

/* Answers MSG_VPIN: the entries asked for, digested under the sequencer at one position. */
static int send_pinned(struct repl *r, struct chan *c, const uint8_t *req, size_t len)
{
	struct node *n = r->n;
	uint8_t *out = malloc(8 + (len / 2 + 1) * (1 + 4 + DIGEST_BYTES)), *p = out + 8;
	size_t off = 0;
	int ret;

	if (!out)
		return -ENOMEM;
	node_lock_settled(n);	/* the digests are of applied: nothing may be on its way to the tree */
	repl_put64(out, n->applied);
	while (off + 2 <= len) {
		uint16_t pl;
		char rel[PATH_MAX];
		struct dnode d;
		memcpy(&pl, req + off, 2);
		if (off + 2 + pl > len || pl >= sizeof(rel))
			break;
		memcpy(rel, req + off + 2, pl);
		rel[pl] = 0;
		off += 2 + (size_t)pl;
		*p = digest_entry(store_rootfd(n->store), rel, &d) == 0;
		memcpy(p + 1, &d.mode, 4);
		memcpy(p + 5, d.meta, DIGEST_BYTES);
		p += 5 + DIGEST_BYTES;
	}
	pthread_mutex_unlock(&n->seq_lock);
	ret = chan_send(c, MSG_VPINNED, out, (size_t)(p - out));
	free(out);
	return ret;
}

void verify_serve(struct repl *r, struct chan *c)
{
	struct dnode *t = NULL;
	uint8_t at[8];
	int64_t t0 = now_ns();
	int ret;

	if (node_role(r->n) != ROLE_LEADER) {
		const char *why = "not the leader";
		chan_send(c, MSG_REFUSE, why, strlen(why));
		return;
	}
	ret = digest_tree(store_rootfd(r->n->store), &t, NULL, NULL);
	if (ret) {
		char why[128];
		snprintf(why, sizeof(why), "unable to read the leader's tree: %s", strerror(-ret));
		chan_send(c, MSG_REFUSE, why, strlen(why));
		return;
	}
	repl_put64(at, node_applied(r->n));
	ret = chan_send(c, MSG_VERIFY_AT, at, sizeof(at));
	while (!ret) {
		uint8_t type;
		void *buf;
		size_t len;
		char rel[PATH_MAX];
		if (chan_recv(c, &type, &buf, &len, VERIFY_DIGEST_TIMEOUT_MS) != 1)
			break;
		if (type == MSG_VLIST && len < sizeof(rel)) {
			memcpy(rel, buf, len);
			rel[len] = 0;
			ret = send_kids(c, t, rel);
		} else if (type == MSG_VPIN) {
			ret = send_pinned(r, c, buf, len);
		} else {
			break;
		}
	}
	rlog(LOG_INFO, "answered a verify (%.1f s)", (double)(now_ns() - t0) / 1e9);
	digest_tree_free(t);
}

/* ======================= FOLLOWER ======================= */

struct kid {
	char *name;
	uint32_t mode;
	uint8_t meta[DIGEST_BYTES], sum[DIGEST_BYTES];
};

struct verifier {
	struct repl *r;
	struct chan *c;
	char **cand;		/* paths that differ in the fuzzy pass */
	uint8_t *whole;		/* 1: the fuzzy pass did not look below it (one side had no directory there) */
	size_t ncand, capcand;
	size_t unsure;		/* such directories the exact pass found equal: what is below them was not compared */
	int overflow;
};

static int add_cand(struct verifier *v, const char *rel, int whole)
{
	if (v->ncand == VERIFY_MAX_PINS) {
		v->overflow = 1;
		return 0;
	}
	if (v->ncand == v->capcand) {
		size_t cap = v->capcand ? v->capcand * 2 : 64;
		char **c = realloc(v->cand, cap * sizeof(*c));
		uint8_t *w;
		if (!c)
			return -ENOMEM;
		v->cand = c;
		if (!(w = realloc(v->whole, cap)))
			return -ENOMEM;
		v->whole = w;
		v->capcand = cap;
	}
	v->cand[v->ncand] = strdup(rel);
	if (!v->cand[v->ncand])
		return -ENOMEM;
	v->whole[v->ncand++] = (uint8_t)whole;
	return 0;
}

static int cmp_kid(const void *a, const void *b)
{
	return strcmp(((const struct kid *)a)->name, ((const struct kid *)b)->name);
}

static void free_kids(struct kid *k, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(k[i].name);
	free(k);
}

/* The leader's children of rel (and rel itself as "."), sorted by name. */
static int ask_kids(struct verifier *v, const char *rel, struct kid **out, size_t *nout, struct kid *self)
{
	struct kid *k = NULL;
	size_t n = 0, cap = 0;
	int ret, more = 1, have_self = 0;

	ret = chan_send(v->c, MSG_VLIST, rel, strlen(rel));
	while (!ret && more) {
		uint8_t type, *p, *end;
		void *buf;
		size_t len;
		ret = chan_recv(v->c, &type, &buf, &len, VERIFY_TIMEOUT_MS);
		if (ret != 1 || type != MSG_VKIDS || len < 1) {
			ret = ret < 0 ? ret : -EPROTO;
			break;
		}
		ret = 0;
		p = buf;
		end = p + len;
		more = *p++;
		while (!ret && p + KID_BYTES <= end) {
			uint16_t nl;
			struct kid e;
			memcpy(&nl, p, 2);
			if (p + KID_BYTES + nl > end) {
				ret = -EBADMSG;
				break;
			}
			e.name = strndup((char *)p + 2, nl);
			memcpy(&e.mode, p + 2 + nl, 4);
			memcpy(e.meta, p + 6 + nl, DIGEST_BYTES);
			memcpy(e.sum, p + 6 + nl + DIGEST_BYTES, DIGEST_BYTES);
			p += KID_BYTES + nl;
			if (!e.name) {
				ret = -ENOMEM;
				break;
			}
			if (!have_self && !strcmp(e.name, ".")) {
				*self = e;
				have_self = 1;
				continue;
			}
			if (n == cap) {
				struct kid *g = realloc(k, (cap = cap ? cap * 2 : 64) * sizeof(*k));
				if (!g) {
					free(e.name);
					ret = -ENOMEM;
					break;
				}
				k = g;
			}
			k[n++] = e;
		}
	}
	if (ret) {
		free_kids(k, n);
		if (have_self)
			free(self->name);
		return ret;
	}
	if (!have_self)
		self->name = NULL;	/* the leader has no such directory */
	if (n > 1)
		qsort(k, n, sizeof(*k), cmp_kid);
	*out = k;
	*nout = n;
	return 0;
}

static void join(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s%s%s", dir, *dir ? "/" : "", name);
}

/* Step 1 below directory rel, whose node here is mine. */
static int descend(struct verifier *v, const char *rel, const struct dnode *mine)
{
	struct kid *k = NULL, self;
	size_t nk = 0, i = 0, j = 0;
	char path[PATH_MAX];
	int ret;

	ret = ask_kids(v, rel, &k, &nk, &self);
	if (ret)
		return ret;
	if (!self.name) {
		free_kids(k, nk);
		return add_cand(v, rel, 1);
	}
	if (!memcmp(self.sum, mine->sum, DIGEST_BYTES))
		goto out;	/* changed back meanwhile */
	if (memcmp(self.meta, mine->meta, DIGEST_BYTES) || self.mode != mine->mode)
		ret = add_cand(v, rel, 0);
	while (!ret && (i < nk || j < mine->nkids)) {
		int c = i == nk ? 1 : j == mine->nkids ? -1 : strcmp(k[i].name, mine->kids[j].name);
		if (c < 0) {
			join(path, sizeof(path), rel, k[i++].name);	/* only the leader has it */
			ret = add_cand(v, path, 1);
		} else if (c > 0) {
			join(path, sizeof(path), rel, mine->kids[j++].name);	/* only we have it */
			ret = add_cand(v, path, 1);
		} else {
			const struct dnode *m = &mine->kids[j];
			join(path, sizeof(path), rel, k[i].name);
			if (memcmp(k[i].sum, m->sum, DIGEST_BYTES)) {
				if (S_ISDIR(k[i].mode) && S_ISDIR(m->mode))
					ret = descend(v, path, m);
				else
					ret = add_cand(v, path, S_ISDIR(k[i].mode) || S_ISDIR(m->mode));
			}
			i++, j++;
		}
	}
out:
	free(self.name);
	free_kids(k, nk);
	return ret;
}

/* Step 2: the candidates compared at one position; prints the differences into out. */
static int pin(struct verifier *v, char *out, size_t outlen, size_t *ndiff)
{
	struct node *n = v->r->n;
	uint8_t *req, type;
	void *buf;
	size_t len = 0, off = 0, used = 0;
	uint64_t at, applied;
	int64_t deadline;
	int ret;

	req = malloc(v->ncand * (2 + PATH_MAX));
	if (!req)
		return -ENOMEM;
	for (size_t i = 0; i < v->ncand; i++) {
		uint16_t pl = (uint16_t)strlen(v->cand[i]);
		memcpy(req + len, &pl, 2);
		memcpy(req + len + 2, v->cand[i], pl);
		len += 2 + (size_t)pl;
	}
	node_hold(n, 0);	/* from here on we apply only up to the leader's position */
	ret = chan_send(v->c, MSG_VPIN, req, len);
	free(req);
	if (!ret) {
		ret = chan_recv(v->c, &type, &buf, &len, VERIFY_TIMEOUT_MS);
		ret = ret == 1 && type == MSG_VPINNED && len == 8 + v->ncand * (5 + DIGEST_BYTES) ? 0
		      : ret < 0										       ? ret
											       : -EPROTO;
	}
	if (ret) {
		node_release(n);
		return ret;
	}
	at = repl_get64(buf);
	deadline = now_ns() + (int64_t)VERIFY_TIMEOUT_MS * 1000000;
	while ((applied = node_hold(n, at)) < at && now_ns() < deadline && !repl_stopping(v->r) &&
	       node_role(n) == ROLE_FOLLOWER)
		usleep(5000);	/* the records up to the leader's position are on their way */
	if (applied != at) {
		node_release(n);
		return -ETIMEDOUT;
	}
	*ndiff = 0;
	off = 8;
	for (size_t i = 0; i < v->ncand; i++, off += 5 + DIGEST_BYTES) {
		const uint8_t *e = (uint8_t *)buf + off;
		struct dnode d;
		int here = digest_entry(store_rootfd(n->store), v->cand[i], &d) == 0, there = e[0];
		uint32_t mode;
		const char *what;
		memcpy(&mode, e + 1, 4);
		if (!here && !there)
			continue;
		if (here && there && mode == d.mode && !memcmp(e + 5, d.meta, DIGEST_BYTES)) {
			if (v->whole[i] && S_ISDIR(mode))
				v->unsure++;
			continue;
		}
		what = !here ? "missing" : !there ? "extra" : "differs";
		(*ndiff)++;
		if (used + strlen(v->cand[i]) + 16 < outlen)
			used += (size_t)snprintf(out + used, outlen - used, "%s /%s\n", what, v->cand[i]);
	}
	if (getenv("REPFS_TEST_VERIFY_HOLD_MS")) {
		/* tests: keep the apply held a while (tests/fault/promote_during_verify.sh) */
		rlog(LOG_INFO, "verify: test hook: holding the apply at seq %" PRIu64, at);
		usleep((useconds_t)atoi(getenv("REPFS_TEST_VERIFY_HOLD_MS")) * 1000);
	}
	node_release(n);
	rlog(LOG_INFO, "verify: %zu of %zu paths differ at seq %" PRIu64, *ndiff, v->ncand, at);
	return 0;
}

/*
 * One verify at a time on a node: the exact comparison holds the apply at
 * one position (node_hold), and two verifiers would release each other's
 * hold (a user's `repfs verify` and the check after a snapshot, say).
 */
static pthread_mutex_t verify_one = PTHREAD_MUTEX_INITIALIZER;

/*
 * Tests: after the leader's digest and before ours, makes the file
 * $REPFS_TEST_VERIFY_PAUSE.N (this daemon's Nth pass; under verify_one) and
 * waits up to 60 s, or until the node stops, for it to go, so that a test
 * can move names between the two digests (tests/integration/verify_moves.sh).
 */
static void test_pause(struct repl *r)
{
	const char *p = getenv("REPFS_TEST_VERIFY_PAUSE");
	char path[PATH_MAX];
	int fd;

	if (!p)
		return;
	snprintf(path, sizeof(path), "%s.%u", p, ++r->verify_passes);
	rlog(LOG_INFO, "verify: test hook: waiting for '%s' to go", path);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 6000 && access(path, F_OK) == 0 && !repl_stopping(r); i++)
		usleep(10000);
}

/*
 * One verify against the leader at addr: 0 identical, 1 different, 2 not
 * known (directories moved under it: verify_settled()), -errno.
 */
static int verify_once(struct repl *r, const char *addr, char *out, size_t outlen, char *err, size_t errlen)
{
	struct verifier v = { .r = r };
	struct dnode *mine = NULL;
	struct chan *c = NULL;
	uint8_t type;
	void *buf;
	size_t len, ndiff = 0;
	int fd, ret;

	out[0] = 0;	/* a retry's (verify_settled()) starts afresh */
	pthread_mutex_lock(&verify_one);
	fd = repl_tcp_socket(addr, 0, 2000);
	if (fd < 0) {
		pthread_mutex_unlock(&verify_one);
		snprintf(err, errlen, "unable to reach the leader at '%s': %s", addr, strerror(-fd));
		return fd;
	}
	pthread_mutex_lock(&r->mu);
	r->verify_fd = fd;	/* repl_stop() ends it */
	if (r->stopping)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&r->mu);
	ret = chan_handshake(&c, fd, r->n->key, 1, HANDSHAKE_MS);
	if (!ret)
		ret = chan_send(c, MSG_VERIFY, NULL, 0);
	if (!ret) {
		ret = chan_recv(c, &type, &buf, &len, VERIFY_DIGEST_TIMEOUT_MS);
		if (ret == 1 && type == MSG_REFUSE) {
			snprintf(err, errlen, "the leader at '%s' refused: %.*s", addr, (int)(len < 200 ? len : 200),
				 (char *)buf);
			ret = -EPROTO;
			goto out;
		}
		ret = ret == 1 && type == MSG_VERIFY_AT && len == 8 ? 0 : ret < 0 ? ret : -EPROTO;
	}
	if (!ret) {
		test_pause(r);
		ret = digest_tree(store_rootfd(r->n->store), &mine, NULL, NULL);
	}
	v.c = c;
	if (!ret)
		ret = descend(&v, "", mine);
	if (!ret && v.ncand)
		ret = pin(&v, out, outlen, &ndiff);
	if (ret) {
		snprintf(err, errlen, "verify against '%s' failed: %s", addr, chan_strerror(ret));
		goto out;
	}
	if (!ndiff && v.unsure && !v.overflow) {
		snprintf(out, outlen, "(%zu directories moved while compared: not compared below them)\n", v.unsure);
		ret = 2;
		goto out;
	}
	if (v.overflow) {
		size_t used = strlen(out);
		snprintf(out + used, outlen - used, "(more than %d paths differ; only those are listed)\n",
			 VERIFY_MAX_PINS);
		ndiff += 1;
	}
	ret = ndiff ? 1 : 0;
out:
	for (size_t i = 0; i < v.ncand; i++)
		free(v.cand[i]);
	free(v.cand);
	free(v.whole);
	digest_tree_free(mine);
	chan_free(c);
	pthread_mutex_lock(&r->mu);
	r->verify_fd = -1;
	pthread_mutex_unlock(&r->mu);
	close(fd);
	pthread_mutex_unlock(&verify_one);
	return ret;
}

/*
 * A name only one side had in the fuzzy pass (moved meanwhile) is compared
 * exactly by its own metadata: when both sides then have a directory there,
 * what is below it was compared by neither pass (a follower whose snapshot
 * left a directory's mtime wrong deep below such a name was called
 * identical). The verify runs once more, 0.2 s later (names moved by a
 * rename settle; a directory made just before the leader's digest is on
 * both sides by then). Each run digests both trees whole, hence one retry
 * only. Still 2 after it: a verify with --repair resyncs (which compares
 * everything it sends), one without says so beside its "identical".
 */
static int verify_settled(struct repl *r, const char *addr, char *out, size_t outlen, char *err, size_t errlen)
{
	int ret = verify_once(r, addr, out, outlen, err, errlen);

	if (ret == 2) {
		rlog(LOG_INFO, "verify: directories moved while compared; comparing again");
		usleep(200000);
		ret = verify_once(r, addr, out, outlen, err, errlen);
	}
	return ret;
}

int repl_verify(struct repl *r, int repair, char *out, size_t outlen, char *err, size_t errlen)
{
	char addr[64];
	unsigned done;
	int ret;

	out[0] = err[0] = 0;
	if (!r || node_role(r->n) != ROLE_FOLLOWER) {
		snprintf(err, errlen, "this node is %s: run verify on a follower",
			 r ? "the leader" : "not replicating");
		return -EINVAL;
	}
	pthread_mutex_lock(&r->mu);
	snprintf(addr, sizeof(addr), "%s", r->leader_addr);
	done = r->snap.completed;
	pthread_mutex_unlock(&r->mu);
	if (node_snapshot_pending(r->n)) {
		snprintf(err, errlen, "a snapshot is in progress: its tree is not complete yet");
		return -EBUSY;
	}
	if (!addr[0]) {
		snprintf(err, errlen, "no leader known yet (see 'repfs status')");
		return -ENOTCONN;
	}
	ret = verify_settled(r, addr, out, outlen, err, errlen);
	if (ret == 2)
		ret = repair ? 1 : 0;
	if (ret != 1 || !repair)
		return ret;
	/* repair: a resync, then look again */
	rlog(LOG_NOTICE, "verify found differences; resyncing from the leader");
	pthread_mutex_lock(&r->mu);
	r->want_snapshot = 1;
	if (r->follow_fd >= 0)
		shutdown(r->follow_fd, SHUT_RDWR);	/* reconnects asking for one */
	pthread_mutex_unlock(&r->mu);
	for (;;) {
		int state;
		unsigned now;
		usleep(50000);
		pthread_mutex_lock(&r->mu);
		now = r->snap.completed;
		state = r->snap.state;
		snprintf(addr, sizeof(addr), "%s", r->leader_addr);
		pthread_mutex_unlock(&r->mu);
		if (now != done)
			break;
		if (node_role(r->n) != ROLE_FOLLOWER) {
			snprintf(err, errlen, "promoted during the repair");
			return -EINTR;
		}
		if (repl_stopping(r)) {
			snprintf(err, errlen, "the node is stopping");
			return -EINTR;
		}
		(void)state;	/* an interrupted resync resumes by itself: keep waiting */
	}
	{
		size_t used = strlen(out);
		snprintf(out + used, outlen - used, "repaired by a resync from the leader\n");
		used = strlen(out);
		ret = verify_settled(r, addr, out + used, outlen - used, err, errlen);
		if (ret == 2)
			ret = 0;	/* what moved was just resynced */
	}
	return ret;
}

/* ======================= THE CHECK AFTER A SNAPSHOT ======================= */

/*
 * A snapshot's walk lists each directory once, so an object moved between
 * two directories while it ran can be in no listing, or in the wrong place
 * after the replay (docs/snapshot.md §3). When the records the snapshot
 * replayed moved anything between directories, the follower checks itself
 * against the leader once it is installed -- a verify -- and repairs what
 * differs with a resync (which sends only that), then checks again. The
 * resync is a snapshot too, and names still moving while it runs can leave
 * it short the same way: up to CHECK_ROUNDS resyncs, then it says so.
 */
#define CHECK_ROUNDS 3

static void *check_main(void *arg)
{
	struct repl *r = arg;
	size_t len = 65536;
	char *out = malloc(len), err[400] = "out of memory";
	int ret = -ENOMEM, state, resynced = 0;

	thread_name("repfs-check");
	for (int round = 0; out && round < CHECK_ROUNDS; round++) {
		if (round)
			rlog(LOG_INFO, "the snapshot still differs from the leader after a resync (names moved "
				       "meanwhile?): resyncing again");
		ret = repl_verify(r, 1, out, len, err, sizeof(err));
		resynced |= ret >= 0 && strstr(out, "repaired by a resync") != NULL;
		if (ret != 1)
			break;
	}
	state = ret == 0 ? (resynced ? CHECK_REPAIRED : CHECK_IDENTICAL) : ret == 1 ? CHECK_DIFFERS : CHECK_FAILED;
	if (state == CHECK_IDENTICAL)
		rlog(LOG_NOTICE, "snapshot checked against the leader: identical");
	else if (state == CHECK_REPAIRED)
		rlog(LOG_NOTICE, "snapshot checked against the leader: what the walk missed was repaired by a resync");
	else if (state == CHECK_DIFFERS)
		rlog(LOG_WARNING, "snapshot checked against the leader: still differs after %d resyncs (writes moving "
				  "names between directories all along?); 'repfs verify --repair' tries again", CHECK_ROUNDS);
	else
		rlog(LOG_WARNING, "snapshot check against the leader failed: %s", err);
	pthread_mutex_lock(&r->mu);
	r->snap.check = state;
	r->checking = 0;
	pthread_mutex_unlock(&r->mu);
	free(out);
	return NULL;
}

void repl_check_snapshot(struct repl *r)
{
	int join = 0;

	pthread_mutex_lock(&r->mu);
	if (r->checking || r->stopping || r->snap.by_check) {	/* a check's own resync: it checks again itself */
		pthread_mutex_unlock(&r->mu);
		return;
	}
	join = r->have_checker;	/* the last check has ended (checking is 0): collect it */
	r->have_checker = 0;
	pthread_mutex_unlock(&r->mu);
	if (join)
		pthread_join(r->checker, NULL);
	pthread_mutex_lock(&r->mu);
	r->checking = 1;
	r->snap.check = CHECK_RUNNING;
	if (pthread_create(&r->checker, NULL, check_main, r) == 0) {
		r->have_checker = 1;
	} else {
		r->checking = 0;
		r->snap.check = CHECK_FAILED;
	}
	join = r->have_checker;
	pthread_mutex_unlock(&r->mu);
	if (join)
		rlog(LOG_INFO, "the records the snapshot replayed moved names between directories or copied ranges: "
			       "checking it against the leader");
	else
		rlog(LOG_WARNING, "unable to start the check of the snapshot against the leader; 'repfs verify' does it");
}
