/* oldepoch.c -- a dead leader's epoch, replayed by a key holder (for the failover tests)
 *
 * usage: oldepoch KEYFILE PORT LOGDIR NAME
 *
 * What no proxy can do (a proxy without the key cannot get a replayed frame
 * or handshake past the secure channel, docs/protocol.md): this helper holds
 * the cluster key, so its traffic passes the channel and only the
 * replication protocol's fencing (docs/replication.md 8) stands between it
 * and a follower. It plays a leader that lost its epoch -- a dead leader
 * come back as a zombie that ignores every epoch it hears of -- by replaying
 * that leader's own log.
 *
 * Listens on 127.0.0.1:PORT (SO_REUSEADDR: a dead node's port will do) and
 * answers every connection in turn, as NAME, the leader of E, the epoch of
 * the last record in LOGDIR (the DATADIR/log of the dead leader): the secure
 * handshake with the key in KEYFILE, then the follower's HELLO, then, whatever
 * that HELLO says (a live leader of E refuses a follower of a later epoch and
 * steps down), WELCOME (E, the log's last seq, NAME), every record of the log
 * after the follower's last seq -- or the whole log if the follower is ahead
 * of it -- exactly as the leader wrote and sent them, and a HEARTBEAT of E
 * every 200 ms until the follower hangs up or 5 s have passed. Acknowledgements
 * are read and dropped. A connection whose first message is not HELLO (a
 * PROBE, a CLAIM) is closed unanswered.
 *
 * OLDEPOCH_LIE=1 in the environment: the WELCOME claims the follower's own
 * epoch (a key holder lying to get past the check of the leader's epoch), no
 * record follows, and the heartbeats still carry E: the follower must refuse
 * them (docs/replication.md 8).
 *
 * Prints one line per event, flushed: "listening PORT", "log: N records,
 * seq A..B, epoch E", "conn K hello epoch E seq S name N", "conn K welcome
 * epoch E seq S", "conn K sent R records, H heartbeats; ended: WHY".
 * SIGTERM or SIGINT ends it (exit 0).
 *
 * It is built from the daemon's own channel and crypto code (included below,
 * so the helper rule of the Makefile needs nothing more): rebuild it (make
 * clean, or touch this file) after changing net/chan.c, net/frame.c or
 * lib/crypto.c.
 */
#include "../../lib/crypto.c"
#include "../../net/chan.c"
#include "../../net/frame.c"

#include <arpa/inet.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>

enum { MSG_HELLO = 1, MSG_WELCOME = 2, MSG_RECORD = 4, MSG_HEARTBEAT = 5 };
#define HELLO_LEN (8 + 8 + 32 + 64 + 8 + 8)	/* replication/repl_int.h: HELLO_BYTES */

struct rec {
	uint8_t *p;
	size_t len;
	uint64_t epoch, seq;
};

static volatile sig_atomic_t stop;
static struct rec *recs;
static size_t nrecs;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int seg_only(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n == 20 && !strcmp(d->d_name + 16, ".seg");
}

/* Reads every whole record of the log in dir (segments in name order, 64-byte headers). */
static int load_log(const char *dir)
{
	struct dirent **names;
	int n = scandir(dir, &names, seg_only, by_name);

	if (n < 0) {
		perror(dir);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		uint8_t *b = NULL;
		size_t len = 0, cap = 0, at = 64, r;
		FILE *f;

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		f = fopen(path, "re");
		if (!f) {
			perror(path);
			return -1;
		}
		for (;;) {
			if (len == cap) {
				cap = cap ? 2 * cap : 1 << 20;
				b = realloc(b, cap);
				if (!b)
					return -1;
			}
			r = fread(b + len, 1, cap - len, f);
			if (!r)
				break;
			len += r;
		}
		fclose(f);
		while (at + 56 <= len) {
			size_t rl = (size_t)b[at] | (size_t)b[at + 1] << 8 | (size_t)b[at + 2] << 16 |
				    (size_t)b[at + 3] << 24;
			struct rec *nr;
			if (rl < 56 || at + rl > len)
				break;	/* a torn tail */
			nr = realloc(recs, (nrecs + 1) * sizeof(*recs));
			if (!nr)
				return -1;
			recs = nr;
			recs[nrecs].p = malloc(rl);
			if (!recs[nrecs].p)
				return -1;
			memcpy(recs[nrecs].p, b + at, rl);
			recs[nrecs].len = rl;
			recs[nrecs].epoch = get64(b + at + 8);
			recs[nrecs].seq = get64(b + at + 16);
			nrecs++;
			at += rl;
		}
		free(b);
	}
	free(names);
	return nrecs ? 0 : -1;
}

/* One follower: handshake, HELLO, then the old epoch's WELCOME, records, heartbeats. */
static void serve(int fd, int id, const struct key *k, const char *name)
{
	struct chan *c = NULL;
	uint8_t type, w[16 + 64] = { 0 }, hb[32];
	uint64_t epoch = recs[nrecs - 1].epoch, last = recs[nrecs - 1].seq, from;
	void *buf;
	size_t len, i, sent = 0, beats = 0;
	const char *why = "the follower hung up";
	struct timespec t0, now;
	int ret, lie;

	ret = chan_handshake(&c, fd, k, 0, 5000);
	if (ret) {
		say("conn %d sent 0 records, 0 heartbeats; ended: handshake: %s", id, chan_strerror(ret));
		return;
	}
	ret = chan_recv(c, &type, &buf, &len, 5000);
	if (ret != 1 || type != MSG_HELLO || len != HELLO_LEN) {
		say("conn %d sent 0 records, 0 heartbeats; ended: no HELLO (%s)", id,
		    ret == 1 ? "another message" : chan_strerror(ret));
		goto out;
	}
	from = get64((uint8_t *)buf + 8);
	say("conn %d hello epoch %llu seq %llu name %.64s", id, (unsigned long long)get64(buf),
	    (unsigned long long)from, (char *)buf + 48);
	if (from >= last)
		from = 0;	/* ahead of this log: replay all of it */
	lie = getenv("OLDEPOCH_LIE") != NULL;
	put64(w, lie ? get64(buf) : epoch);
	put64(w + 8, last);
	snprintf((char *)w + 16, 64, "%s", name);
	if ((ret = chan_send(c, MSG_WELCOME, w, sizeof(w))) != 0) {
		why = chan_strerror(ret);
		goto done;
	}
	say("conn %d welcome epoch %llu seq %llu", id, (unsigned long long)epoch, (unsigned long long)last);
	for (i = 0; i < nrecs && !lie; i++) {
		if (recs[i].seq <= from)
			continue;
		if ((ret = chan_send(c, MSG_RECORD, recs[i].p, recs[i].len)) != 0) {
			why = chan_strerror(ret);
			goto done;
		}
		sent++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_REALTIME, &now);
		put64(hb, epoch);
		put64(hb + 8, last);
		put64(hb + 16, last);
		put64(hb + 24, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
		if ((ret = chan_send(c, MSG_HEARTBEAT, hb, sizeof(hb))) != 0) {
			why = chan_strerror(ret);
			break;
		}
		beats++;
		ret = chan_recv(c, &type, &buf, &len, 200);
		while (ret == 1)	/* acknowledgements: dropped */
			ret = chan_recv(c, &type, &buf, &len, 0);
		if (ret != -ETIMEDOUT) {
			why = ret ? chan_strerror(ret) : "the follower closed";
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (stop || now.tv_sec - t0.tv_sec >= 5) {
			why = "5 s passed";
			break;
		}
	}
done:
	say("conn %d sent %zu records, %zu heartbeats; ended: %s", id, sent, beats, why);
out:
	chan_free(c);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct sigaction act = { .sa_handler = on_signal };
	socklen_t salen = sizeof(sa);
	struct key *k = NULL;
	int lfd, one = 1, id = 0, ret;

	if (argc != 5) {
		fprintf(stderr, "usage: oldepoch KEYFILE PORT LOGDIR NAME\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (crypto_init() || (ret = key_load(&k, argv[1])) != 0) {
		fprintf(stderr, "oldepoch: unable to load the key '%s'\n", argv[1]);
		return 2;
	}
	if (load_log(argv[3])) {
		fprintf(stderr, "oldepoch: no records in '%s'\n", argv[3]);
		return 2;
	}
	say("log: %zu records, seq %llu..%llu, epoch %llu", nrecs, (unsigned long long)recs[0].seq,
	    (unsigned long long)recs[nrecs - 1].seq, (unsigned long long)recs[nrecs - 1].epoch);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return 2;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)atoi(argv[2]));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
		fprintf(stderr, "oldepoch: unable to listen on 127.0.0.1:%s: %s\n", argv[2], strerror(errno));
		return 2;
	}
	getsockname(lfd, (struct sockaddr *)&sa, &salen);
	say("listening %u", ntohs(sa.sin_port));
	while (!stop) {
		struct pollfd p = { lfd, POLLIN, 0 };
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		serve(fd, ++id, k, argv[4]);
		close(fd);
	}
	close(lfd);
	key_free(k);
	for (size_t i = 0; i < nrecs; i++)
		free(recs[i].p);
	free(recs);
	return 0;
}
