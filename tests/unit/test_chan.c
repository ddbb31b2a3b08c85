/* test_chan.c -- the secure channel: handshake, messages, wrong keys, tampering, truncation
 *
 * Most tests put a relay between the two ends: two socketpairs and a thread
 * per direction that re-frames the byte stream and can flip a bit, drop,
 * duplicate, swap, replay, inject or cut a frame on the way. Whatever it
 * does, the receiver must deliver only the messages the sender sent, in
 * order, and then fail -- never return wrong data, never report a clean end.
 */
#include "unit.h"

#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>

#include "../../net/chan.h"
#include "../../net/frame.h"

#define TIMEOUT 5000 /* ms: generous, tests never wait for it unless they mean to */
#define NMSG	6

static struct unit_env cenv;
static char other_keypath[300];
static struct key *other_key; /* a second, different cluster key */

static void chan_setup(void)
{
	unit_env_init(&cenv);
	unit_new_key(cenv.dir, "other", other_keypath, sizeof(other_keypath), &other_key);
}

static void chan_teardown(void)
{
	key_free(other_key);
	other_key = NULL;
	unit_env_fini(&cenv);
}

TestSuite(chan, .init = chan_setup, .fini = chan_teardown, .timeout = 60);

/* ---- helpers ---- */

static int64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t xrnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ull;
}

/* Message k of a test stream: its type, length and bytes are a function of k. */
static uint8_t msg_type(int k)
{
	return (uint8_t)((k + 1) * 37);
}

static size_t msg_len(int k)
{
	return (size_t)k * 997 % 5000;
}

static void msg_fill(int k, uint8_t *buf, size_t len)
{
	uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(k + 1);

	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)xrnd(&s);
}

static void check_msg(int k, uint8_t type, const void *buf, size_t len)
{
	uint8_t want[5000];

	cr_assert_eq(type, msg_type(k), "message %d: type", k);
	cr_assert_eq(len, msg_len(k), "message %d: length", k);
	msg_fill(k, want, len);
	cr_assert_eq(memcmp(buf, want, len), 0, "message %d: content", k);
}

static int send_msg(struct chan *c, int k)
{
	uint8_t buf[5000];

	msg_fill(k, buf, msg_len(k));
	return chan_send(c, msg_type(k), buf, msg_len(k));
}

static void sockpair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0, "socketpair: %s",
		     strerror(errno));
}

/* One side of a handshake, run on a thread. */
struct side {
	int fd;
	const struct key *k;
	int initiator;
	int timeout;
	struct chan *c;
	int ret;
	pthread_t th;
};

static void *side_main(void *arg)
{
	struct side *s = arg;

	s->ret = chan_handshake(&s->c, s->fd, s->k, s->initiator, s->timeout);
	return NULL;
}

static void side_start(struct side *s, int fd, const struct key *k, int initiator)
{
	s->fd = fd;
	s->k = k;
	s->initiator = initiator;
	if (!s->timeout)
		s->timeout = TIMEOUT;
	s->c = NULL;
	s->ret = 1;
	cr_assert_eq(pthread_create(&s->th, NULL, side_main, s), 0);
}

static void side_join(struct side *s)
{
	pthread_join(s->th, NULL);
	if (s->ret)
		cr_assert_null(s->c, "a failed handshake must leave *out NULL");
}

/* Runs both handshakes on ifd (initiator, key ki) and rfd (responder, key kr). */
static void handshake(int ifd, int rfd, const struct key *ki, const struct key *kr, struct side *i,
		      struct side *r)
{
	memset(i, 0, sizeof(*i));
	memset(r, 0, sizeof(*r));
	side_start(r, rfd, kr, 0);
	side_start(i, ifd, ki, 1);
	side_join(i);
	side_join(r);
}

static void handshake_ok(int ifd, int rfd, struct chan **ci, struct chan **cr)
{
	struct side i, r;

	handshake(ifd, rfd, cenv.key, cenv.key, &i, &r);
	cr_assert_eq(i.ret, 0, "initiator: %s", chan_strerror(i.ret));
	cr_assert_eq(r.ret, 0, "responder: %s", chan_strerror(r.ret));
	*ci = i.c;
	*cr = r.c;
}

/* Reads one raw frame from fd (blocking); returns its type, or -1 at EOF. */
static int raw_frame(int fd, uint8_t *payload, size_t cap, uint32_t *len)
{
	uint8_t h[FRAME_HDR_BYTES], type;
	ssize_t n = recv(fd, h, sizeof(h), MSG_WAITALL);

	if (n <= 0)
		return -1;
	cr_assert_eq(n, (ssize_t)sizeof(h));
	cr_assert_eq(frame_get_header(h, (uint32_t)cap, &type, len), 0);
	if (*len)
		cr_assert_eq(recv(fd, payload, *len, MSG_WAITALL), (ssize_t)*len);
	return type;
}

static void raw_send(int fd, uint8_t type, const void *payload, size_t len)
{
	uint8_t buf[512];
	size_t n;

	cr_assert_eq(frame_encode(buf, sizeof(buf), type, payload, len, &n), 0);
	cr_assert_eq(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* ---- the relay ---- */

enum op {
	OP_NONE,
	OP_FLIP,    /* flip bit `bit` of frame `frame` (header included) */
	OP_RAWFLIP, /* flip bit `bit` of stream byte `frame`, framing ignored */
	OP_DROP,    /* leave frame out */
	OP_DUP,	    /* send frame twice */
	OP_SWAP,    /* send frame + 1 before frame */
	OP_REPLAY,  /* after frame, send frame `src` of this direction again */
	OP_INJECT,  /* send inject[] instead of frame */
	OP_CUT,	    /* pass `cut` bytes of frame, then end the stream */
	OP_SPLIT,   /* pass half of frame, pause, then the rest */
};

struct tamper {
	enum op op;
	int dir; /* 0: initiator -> responder, 1: responder -> initiator */
	int frame;
	size_t bit;
	int src;
	size_t cut;
	const uint8_t *inject;
	size_t inject_len;
};

#define MAX_CAPT 64

struct relay;

struct relay_dir {
	struct relay *r;
	int dir, from, to;
	pthread_t th;
	uint8_t *frames[MAX_CAPT]; /* a copy of each frame that came in */
	size_t lens[MAX_CAPT];
	int n;
};

struct relay {
	int ifd, rfd;	  /* the ends the initiator and the responder use */
	int iside, rside; /* the relay's ends */
	struct tamper t;
	struct relay_dir d[2];
};

/* 0, or -1 once the receiving end is gone */
static int put(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void *relay_main(void *arg)
{
	struct relay_dir *p = arg;
	const struct tamper *t = &p->r->t;
	int mine = t->op != OP_NONE && t->dir == p->dir, discard = 0, idx = 0;
	uint8_t *buf = malloc(65536), *held = NULL;
	size_t raw = 0, held_len = 0;
	struct frame_dec *d;
	struct frame f;

	if (!buf || frame_dec_new(&d, 0))
		abort();
	for (;;) {
		ssize_t n = recv(p->from, buf, 65536, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (discard)
			continue;
		if (mine && t->op == OP_RAWFLIP) {
			if ((size_t)t->frame >= raw && (size_t)t->frame < raw + (size_t)n)
				buf[(size_t)t->frame - raw] ^= (uint8_t)(1u << t->bit);
			raw += (size_t)n;
			if (put(p->to, buf, (size_t)n))
				discard = 1;
			continue;
		}
		const uint8_t *q = buf;
		size_t left = (size_t)n;
		int ret;
		while (!discard && (ret = frame_dec_feed(d, &q, &left, &f)) == 1) {
			size_t fl = FRAME_HDR_BYTES + f.len;
			uint8_t *fb = malloc(fl);
			int keep = 0, bad = 0;

			if (!fb || frame_put_header(fb, f.type, f.len))
				abort();
			if (f.len)
				memcpy(fb + FRAME_HDR_BYTES, f.payload, f.len);
			if (idx < MAX_CAPT) {
				p->frames[idx] = malloc(fl);
				memcpy(p->frames[idx], fb, fl);
				p->lens[idx] = fl;
				p->n = idx + 1;
			}
			if (mine && idx == t->frame) {
				switch (t->op) {
				case OP_FLIP:
					fb[t->bit / 8] ^= (uint8_t)(1u << (t->bit % 8));
					bad = put(p->to, fb, fl);
					break;
				case OP_DROP:
					break;
				case OP_DUP:
					bad = put(p->to, fb, fl) || put(p->to, fb, fl);
					break;
				case OP_SWAP:
					held = fb;
					held_len = fl;
					keep = 1;
					break;
				case OP_REPLAY:
					bad = put(p->to, fb, fl) ||
					      put(p->to, p->frames[t->src], p->lens[t->src]);
					break;
				case OP_INJECT:
					bad = put(p->to, t->inject, t->inject_len);
					break;
				case OP_CUT:
					put(p->to, fb, t->cut < fl ? t->cut : fl);
					bad = 1; /* pass nothing more */
					break;
				case OP_SPLIT:
					bad = put(p->to, fb, fl / 2);
					usleep(300 * 1000);
					bad = bad || put(p->to, fb + fl / 2, fl - fl / 2);
					break;
				default:
					bad = put(p->to, fb, fl);
				}
			} else {
				bad = put(p->to, fb, fl);
				if (held && !bad) {
					bad = put(p->to, held, held_len);
					free(held);
					held = NULL;
				}
			}
			if (!keep)
				free(fb);
			if (bad) {
				discard = 1;
				shutdown(p->to, SHUT_WR);
			}
			idx++;
		}
		if (!discard && ret < 0)
			abort(); /* the ends only ever send well-formed frames */
	}
	shutdown(p->to, SHUT_WR);
	free(held);
	free(buf);
	frame_dec_free(d);
	return NULL;
}

static void relay_start(struct relay *r, const struct tamper *t)
{
	int a[2], b[2];

	memset(r, 0, sizeof(*r));
	if (t)
		r->t = *t;
	sockpair(a);
	sockpair(b);
	r->ifd = a[0];
	r->iside = a[1];
	r->rfd = b[0];
	r->rside = b[1];
	r->d[0] = (struct relay_dir){.r = r, .dir = 0, .from = r->iside, .to = r->rside};
	r->d[1] = (struct relay_dir){.r = r, .dir = 1, .from = r->rside, .to = r->iside};
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&r->d[i].th, NULL, relay_main, &r->d[i]), 0);
}

/* Closes the ends' descriptors and waits for the relay threads; the captured frames stay. */
static void relay_stop(struct relay *r)
{
	close(r->ifd);
	close(r->rfd);
	for (int i = 0; i < 2; i++)
		pthread_join(r->d[i].th, NULL);
	close(r->iside);
	close(r->rside);
}

static void relay_free(struct relay *r)
{
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < r->d[i].n; j++)
			free(r->d[i].frames[j]);
}

static uint8_t frame_type_at(const struct relay *r, int dir, int idx)
{
	return r->d[dir].frames[idx][4];
}

/* Sends NMSG messages then FINAL, on a thread. */
struct sender {
	struct chan *c;
	int n;
	pthread_t th;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;

	for (int k = 0; k < s->n; k++)
		if (send_msg(s->c, k))
			return NULL; /* the receiver gave up: fine */
	chan_close(s->c);
	return NULL;
}

/*
 * Handshakes through a relay doing t, streams NMSG messages one way (from
 * the initiator if dir is 0) and receives them. Returns the receiver's final
 * result (0: clean end) and sets *delivered; every delivered message was
 * checked to be the right one.
 */
static int stream_through(const struct tamper *t, int dir, int *delivered)
{
	struct chan *ci, *cr, *tx, *rx;
	struct sender s = {.n = NMSG};
	struct relay r;
	uint8_t type;
	void *buf;
	size_t len;
	int ret, k = 0;

	relay_start(&r, t);
	handshake_ok(r.ifd, r.rfd, &ci, &cr);
	tx = dir == 0 ? ci : cr;
	rx = dir == 0 ? cr : ci;
	s.c = tx;
	cr_assert_eq(pthread_create(&s.th, NULL, sender_main, &s), 0);
	while ((ret = chan_recv(rx, &type, &buf, &len, TIMEOUT)) == 1) {
		cr_assert_lt(k, NMSG, "more messages than were sent");
		check_msg(k, type, buf, len);
		k++;
	}
	cr_assert_neq(ret, -ETIMEDOUT, "the receiver must fail, not hang");
	/* a dead channel stays dead */
	if (ret < 0)
		cr_assert_eq(chan_recv(rx, &type, &buf, &len, 0), ret);
	pthread_join(s.th, NULL);
	chan_free(ci);
	chan_free(cr);
	relay_stop(&r);
	relay_free(&r);
	*delivered = k;
	return ret;
}

/* Index of the frame carrying message k in direction dir (after HELLO, CONFIRM, STREAM / REPLY, STREAM). */
static int frame_of(int dir, int k)
{
	return (dir == 0 ? 3 : 2) + k;
}

/* ---- handshake and messages ---- */

Test(chan, handshake_and_messages_both_ways)
{
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	cr_assert_eq(chan_fd(ci), sv[0]);
	cr_assert_eq(chan_fd(cr), sv[1]);
	for (int round = 0; round < 20; round++) {
		cr_assert_eq(send_msg(ci, round), 0);
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
		check_msg(round, type, buf, len);
		cr_assert_eq(send_msg(cr, round + 100), 0);
		cr_assert_eq(chan_recv(ci, &type, &buf, &len, TIMEOUT), 1);
		check_msg(round + 100, type, buf, len);
	}
	/* empty messages and every type byte */
	cr_assert_eq(chan_send(ci, 0, NULL, 0), 0);
	cr_assert_eq(chan_send(ci, 255, "x", 1), 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	cr_assert_eq(type, 0);
	cr_assert_eq(len, 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	cr_assert_eq(type, 255);
	cr_assert_eq(len, 1);
	cr_assert_eq(*(uint8_t *)buf, 'x');
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

Test(chan, clean_close_both_ways)
{
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	cr_assert_eq(send_msg(ci, 3), 0);
	cr_assert_eq(chan_close(ci), 0);
	cr_assert_eq(chan_close(ci), 0, "a second close is a no-op");
	cr_assert_eq(send_msg(ci, 4), -EPIPE);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	check_msg(3, type, buf, len);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 0, "the end stays the end");
	/* the other direction still works after a half close */
	cr_assert_eq(send_msg(cr, 5), 0);
	cr_assert_eq(chan_close(cr), 0);
	cr_assert_eq(chan_recv(ci, &type, &buf, &len, TIMEOUT), 1);
	check_msg(5, type, buf, len);
	cr_assert_eq(chan_recv(ci, &type, &buf, &len, TIMEOUT), 0);
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

static int queue_msg(struct chan *c, int k)
{
	uint8_t buf[5000];

	msg_fill(k, buf, msg_len(k));
	return chan_queue(c, msg_type(k), buf, msg_len(k));
}

Test(chan, queued_messages_go_out_in_order_at_flush)
{
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	for (int k = 0; k < 10; k++)
		cr_assert_eq(queue_msg(ci, k), 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, 50), -ETIMEDOUT, "queued messages wait for a flush");
	cr_assert_eq(chan_flush(ci), 0);
	cr_assert_eq(chan_flush(ci), 0, "an empty flush is a no-op");
	for (int k = 0; k < 10; k++) {
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
		check_msg(k, type, buf, len);
	}
	/* chan_send() writes what was queued before it, in order */
	cr_assert_eq(queue_msg(ci, 10), 0);
	cr_assert_eq(send_msg(ci, 11), 0);
	for (int k = 10; k < 12; k++) {
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
		check_msg(k, type, buf, len);
	}
	/* so does chan_close(), before its FINAL */
	cr_assert_eq(queue_msg(ci, 12), 0);
	cr_assert_eq(chan_close(ci), 0);
	cr_assert_eq(queue_msg(ci, 13), -EPIPE);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	check_msg(12, type, buf, len);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 0);
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

struct queue_job {
	struct chan *c;
	int n;
	int ret;
	pthread_t th;
};

static void *queue_many(void *arg)
{
	struct queue_job *j = arg;

	for (int k = 0; k < j->n && !j->ret; k++)
		j->ret = queue_msg(j->c, k);
	if (!j->ret)
		j->ret = chan_flush(j->c);
	return NULL;
}

Test(chan, a_full_queue_writes_itself)
{
	struct chan *ci, *cr;
	struct queue_job j = { 0 };
	int sv[2], n = 0;
	uint8_t type;
	void *buf;
	size_t len, bytes = 0;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	/* more than CHAN_QUEUE_BYTES: the first ones arrive before the flush */
	while (bytes <= 2 * CHAN_QUEUE_BYTES)
		bytes += msg_len(n++);
	j.c = ci;
	j.n = n;
	cr_assert_eq(pthread_create(&j.th, NULL, queue_many, &j), 0);
	for (int k = 0; k < n; k++) {
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1, "message %d", k);
		check_msg(k, type, buf, len);
	}
	pthread_join(j.th, NULL);
	cr_assert_eq(j.ret, 0, "%s", chan_strerror(j.ret));
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

struct big_job {
	struct chan *c;
	const uint8_t *data;
	size_t len;
	int ret;
	pthread_t th;
};

static void *big_send(void *arg)
{
	struct big_job *j = arg;

	j->ret = chan_send(j->c, 7, j->data, j->len);
	if (!j->ret)
		j->ret = chan_send(j->c, 8, j->data, CHAN_MAX_PAYLOAD);
	return NULL;
}

Test(chan, large_frames_both_ways_at_once)
{
	size_t mib = 1u << 20;
	uint8_t *data = malloc(CHAN_MAX_PAYLOAD);
	struct big_job a, b;
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;

	cr_assert_not_null(data);
	for (size_t i = 0; i < CHAN_MAX_PAYLOAD; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 12));
	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	cr_assert_eq(chan_send(ci, 1, data, CHAN_MAX_PAYLOAD + 1), -EMSGSIZE);
	cr_assert_eq(chan_send(ci, 1, NULL, 5), -EINVAL);
	/* both send 1 MiB and the largest message while both receive: no deadlock */
	a = (struct big_job){.c = ci, .data = data, .len = mib};
	b = (struct big_job){.c = cr, .data = data, .len = mib};
	cr_assert_eq(pthread_create(&a.th, NULL, big_send, &a), 0);
	cr_assert_eq(pthread_create(&b.th, NULL, big_send, &b), 0);
	for (int i = 0; i < 2; i++) {
		struct chan *rx = i ? ci : cr;
		cr_assert_eq(chan_recv(rx, &type, &buf, &len, TIMEOUT), 1);
		cr_assert_eq(type, 7);
		cr_assert_eq(len, mib);
		cr_assert_eq(memcmp(buf, data, mib), 0);
		cr_assert_eq(chan_recv(rx, &type, &buf, &len, TIMEOUT), 1);
		cr_assert_eq(type, 8);
		cr_assert_eq(len, CHAN_MAX_PAYLOAD);
		cr_assert_eq(memcmp(buf, data, CHAN_MAX_PAYLOAD), 0);
	}
	pthread_join(a.th, NULL);
	pthread_join(b.th, NULL);
	cr_assert_eq(a.ret, 0);
	cr_assert_eq(b.ret, 0);
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
	free(data);
}

struct pump {
	struct chan *c;
	int n, base, ret;
	pthread_t th;
};

static void *pump_send(void *arg)
{
	struct pump *p = arg;

	for (int k = 0; k < p->n && !p->ret; k++)
		p->ret = send_msg(p->c, p->base + k);
	return NULL;
}

static void *pump_recv(void *arg)
{
	struct pump *p = arg;
	uint8_t type;
	void *buf;
	size_t len;

	for (int k = 0; k < p->n; k++) {
		p->ret = chan_recv(p->c, &type, &buf, &len, TIMEOUT);
		if (p->ret != 1)
			return NULL;
		if (type != msg_type(p->base + k) || len != msg_len(p->base + k)) {
			p->ret = -EBADMSG;
			return NULL;
		}
	}
	p->ret = 0;
	return NULL;
}

Test(chan, send_and_receive_on_different_threads)
{
	struct chan *ci, *cr;
	struct pump p[6];
	int sv[2];

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	/* two senders per side (serialised inside), one receiver per side */
	p[0] = (struct pump){.c = ci, .n = 300, .base = 0};
	p[1] = (struct pump){.c = cr, .n = 300, .base = 0};
	cr_assert_eq(pthread_create(&p[0].th, NULL, pump_send, &p[0]), 0);
	cr_assert_eq(pthread_create(&p[1].th, NULL, pump_send, &p[1]), 0);
	p[2] = (struct pump){.c = cr, .n = 300, .base = 0};
	p[3] = (struct pump){.c = ci, .n = 300, .base = 0};
	cr_assert_eq(pthread_create(&p[2].th, NULL, pump_recv, &p[2]), 0);
	cr_assert_eq(pthread_create(&p[3].th, NULL, pump_recv, &p[3]), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(p[i].th, NULL);
		cr_assert_eq(p[i].ret, 0, "pump %d: %d", i, p[i].ret);
	}
	/* now two concurrent senders on one channel: every message arrives whole */
	p[4] = (struct pump){.c = ci, .n = 100, .base = 1000};
	p[5] = (struct pump){.c = ci, .n = 100, .base = 2000};
	cr_assert_eq(pthread_create(&p[4].th, NULL, pump_send, &p[4]), 0);
	cr_assert_eq(pthread_create(&p[5].th, NULL, pump_send, &p[5]), 0);
	int next[2] = {1000, 2000};
	for (int k = 0; k < 200; k++) {
		uint8_t type;
		void *buf;
		size_t len;
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
		int which = type == msg_type(next[0]) && len == msg_len(next[0]) ? 0 : 1;
		check_msg(next[which], type, buf, len);
		next[which]++;
	}
	cr_assert_eq(next[0], 1100);
	cr_assert_eq(next[1], 2100);
	for (int i = 4; i < 6; i++) {
		pthread_join(p[i].th, NULL);
		cr_assert_eq(p[i].ret, 0);
	}
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

Test(chan, recv_timeout_is_not_fatal)
{
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;
	int64_t t0;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	t0 = ms_now();
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, 100), -ETIMEDOUT);
	cr_assert_geq(ms_now() - t0, 90);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, 0), -ETIMEDOUT);
	cr_assert_eq(send_msg(ci, 1), 0);
	cr_assert_eq(send_msg(ci, 2), 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	check_msg(1, type, buf, len);
	/* both frames came in one read: the second waits in the channel, not the socket */
	cr_assert_eq(chan_buffered(cr), 1);
	struct pollfd pfd = {.fd = chan_fd(cr), .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 0), 0);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, 0), 1);
	check_msg(2, type, buf, len);
	cr_assert_eq(chan_buffered(cr), 0);
	chan_free(ci);
	chan_free(cr);
	close(sv[0]);
	close(sv[1]);
}

Test(chan, partial_frame_survives_timeouts)
{
	struct tamper t = {.op = OP_SPLIT, .dir = 0, .frame = frame_of(0, 1)};
	struct chan *ci, *cr;
	struct relay r;
	uint8_t type;
	void *buf;
	size_t len;
	int timeouts = 0, ret;

	relay_start(&r, &t);
	handshake_ok(r.ifd, r.rfd, &ci, &cr);
	cr_assert_eq(send_msg(ci, 0), 0);
	cr_assert_eq(send_msg(ci, 1), 0); /* arrives in two halves, 300 ms apart */
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	check_msg(0, type, buf, len);
	while ((ret = chan_recv(cr, &type, &buf, &len, 50)) == -ETIMEDOUT)
		timeouts++;
	cr_assert_eq(ret, 1);
	check_msg(1, type, buf, len);
	cr_assert_geq(timeouts, 2);
	chan_free(ci);
	chan_free(cr);
	relay_stop(&r);
	relay_free(&r);
}

/* ---- wrong keys ---- */

static void expect_refused(const struct key *ki, const struct key *kr)
{
	struct side i, r;
	struct relay rl;

	relay_start(&rl, NULL);
	handshake(rl.ifd, rl.rfd, ki, kr, &i, &r);
	cr_assert_eq(i.ret, -EKEYREJECTED, "initiator: %d %s", i.ret, chan_strerror(i.ret));
	cr_assert_eq(r.ret, -EKEYREJECTED, "responder: %d %s", r.ret, chan_strerror(r.ret));
	relay_stop(&rl);
	/* nothing but the hello and a refusal went over the wire */
	cr_assert_eq(rl.d[0].n, 1);
	cr_assert_eq(frame_type_at(&rl, 0, 0), FRAME_HELLO);
	cr_assert_eq(rl.d[1].n, 1);
	cr_assert_eq(frame_type_at(&rl, 1, 0), FRAME_REJECT);
	relay_free(&rl);
}

Test(chan, wrong_key_on_the_responder)
{
	expect_refused(cenv.key, other_key);
}

Test(chan, wrong_key_on_the_initiator)
{
	expect_refused(other_key, cenv.key);
}

Test(chan, same_key_loaded_twice_works)
{
	struct key *again;
	struct side i, r;
	int sv[2];

	cr_assert_eq(key_load(&again, cenv.keypath), 0);
	sockpair(sv);
	handshake(sv[0], sv[1], cenv.key, again, &i, &r);
	cr_assert_eq(i.ret, 0);
	cr_assert_eq(r.ret, 0);
	chan_free(i.c);
	chan_free(r.c);
	close(sv[0]);
	close(sv[1]);
	key_free(again);
}

Test(chan, error_strings_are_plain)
{
	const int errs[] = {-EKEYREJECTED, -EPROTONOSUPPORT, -EPROTO, -EBADMSG,
			    -ECONNRESET,   -ETIMEDOUT,	     -ENOENT};

	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		const char *s = chan_strerror(errs[i]);
		cr_assert(s && *s);
		cr_assert(s[strlen(s) - 1] != '.', "no full stop: '%s'", s);
	}
	cr_assert_str_eq(chan_strerror(-EKEYREJECTED),
			 "peer does not hold the cluster key, or the handshake was tampered with");
}

/* ---- tampering with the handshake ---- */

static void handshake_through(const struct tamper *t, int want_i, int want_r)
{
	struct side i, r;
	struct relay rl;

	relay_start(&rl, t);
	handshake(rl.ifd, rl.rfd, cenv.key, cenv.key, &i, &r);
	cr_assert_eq(i.ret, want_i, "initiator: %d %s", i.ret, chan_strerror(i.ret));
	cr_assert_eq(r.ret, want_r, "responder: %d %s", r.ret, chan_strerror(r.ret));
	chan_free(i.c);
	chan_free(r.c);
	relay_stop(&rl);
	/*
	 * A failed handshake sends nothing sealed; the responder starts no
	 * stream; the initiator's stream header only ever follows its CONFIRM,
	 * i.e. once the responder has proven the key.
	 */
	if (want_i || want_r)
		for (int d = 0; d < 2; d++)
			for (int k = 0; k < rl.d[d].n; k++) {
				uint8_t type = frame_type_at(&rl, d, k);
				cr_assert_neq(type, FRAME_SEALED);
				if (type == FRAME_STREAM)
					cr_assert(d == 0 && k == 2 &&
						  frame_type_at(&rl, 0, 1) == FRAME_CONFIRM);
			}
	relay_free(&rl);
}

/* bit b of payload byte p of a handshake frame */
#define PBIT(p, b) ((size_t)(FRAME_HDR_BYTES + (p)) * 8 + (b))

Test(chan, tampered_hello_is_refused)
{
	struct tamper t = {.op = OP_FLIP, .dir = 0, .frame = 0};

	t.bit = PBIT(4, 0); /* ephemeral key */
	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	t.bit = PBIT(40, 5); /* MAC */
	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	t.bit = PBIT(0, 1); /* version */
	handshake_through(&t, -EPROTONOSUPPORT, -EPROTONOSUPPORT);
	t.bit = PBIT(2, 0); /* role */
	handshake_through(&t, -EPROTO, -EPROTO);
	t.bit = 4 * 8 + 1; /* frame type: not a HELLO */
	handshake_through(&t, -EPROTO, -EPROTO);
}

Test(chan, tampered_reply_is_refused)
{
	struct tamper t = {.op = OP_FLIP, .dir = 1, .frame = 0};

	t.bit = PBIT(20, 7);
	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	t.bit = PBIT(67, 0);
	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	t.bit = PBIT(3, 0); /* reserved byte */
	handshake_through(&t, -EPROTO, -EPROTO);
}

Test(chan, tampered_confirm_is_refused)
{
	struct tamper t = {.op = OP_FLIP, .dir = 0, .frame = 1, .bit = PBIT(9, 3)};

	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	t = (struct tamper){.op = OP_DROP, .dir = 0, .frame = 1};
	handshake_through(&t, -EPROTO, -EPROTO);
}

Test(chan, replayed_hello_is_refused)
{
	struct tamper t = {.op = OP_NONE};
	struct relay old;
	struct side i, r;

	/* record a genuine HELLO of an earlier session ... */
	relay_start(&old, &t);
	handshake(old.ifd, old.rfd, cenv.key, cenv.key, &i, &r);
	cr_assert_eq(i.ret, 0);
	chan_free(i.c);
	chan_free(r.c);
	relay_stop(&old);
	/* ... and play it in place of a fresh one */
	t = (struct tamper){.op = OP_INJECT,
			    .dir = 0,
			    .frame = 0,
			    .inject = old.d[0].frames[0],
			    .inject_len = old.d[0].lens[0]};
	handshake_through(&t, -EKEYREJECTED, -EKEYREJECTED);
	relay_free(&old);
}

struct fake_peer {
	int fd;
	int mode; /* 0: echo the HELLO; 1: echo it dressed as a REPLY */
	pthread_t th;
};

static void *reflector(void *arg)
{
	struct fake_peer *p = arg;
	uint8_t m[256];
	uint32_t len;

	if (raw_frame(p->fd, m, sizeof(m), &len) != FRAME_HELLO)
		return NULL;
	if (p->mode == 0) {
		raw_send(p->fd, FRAME_HELLO, m, len);
	} else {
		m[2] = 'R';
		raw_send(p->fd, FRAME_REPLY, m, len);
	}
	return NULL;
}

Test(chan, reflected_handshake_fails)
{
	for (int mode = 0; mode < 2; mode++) {
		struct fake_peer p = {.mode = mode};
		struct chan *c = NULL;
		int sv[2], ret, type;
		uint8_t m[256];
		uint32_t len;

		sockpair(sv);
		p.fd = sv[1];
		cr_assert_eq(pthread_create(&p.th, NULL, reflector, &p), 0);
		ret = chan_handshake(&c, sv[0], cenv.key, 1, TIMEOUT);
		pthread_join(p.th, NULL);
		cr_assert_eq(ret, mode == 0 ? -EPROTO : -EKEYREJECTED, "mode %d: %d %s", mode, ret,
			     chan_strerror(ret));
		cr_assert_null(c);
		/* the initiator answered with a refusal and nothing else */
		type = raw_frame(sv[1], m, sizeof(m), &len);
		cr_assert_eq(type, FRAME_REJECT);
		cr_assert_eq(raw_frame(sv[1], m, sizeof(m), &len), -1);
		close(sv[0]);
		close(sv[1]);
	}
}

Test(chan, replayed_hello_alone_gets_no_stream)
{
	struct tamper t = {.op = OP_NONE};
	struct relay old;
	struct side i, r;
	uint8_t m[256], junk[CRYPTO_MAC_BYTES] = {1, 2, 3};
	uint32_t len;
	int sv[2];

	relay_start(&old, &t);
	handshake(old.ifd, old.rfd, cenv.key, cenv.key, &i, &r);
	chan_free(i.c);
	chan_free(r.c);
	relay_stop(&old);

	/* an attacker without the key replays the HELLO and guesses a CONFIRM */
	sockpair(sv);
	memset(&r, 0, sizeof(r));
	side_start(&r, sv[1], cenv.key, 0);
	cr_assert_eq(send(sv[0], old.d[0].frames[0], old.d[0].lens[0], 0), (ssize_t)old.d[0].lens[0]);
	cr_assert_eq(raw_frame(sv[0], m, sizeof(m), &len), FRAME_REPLY);
	raw_send(sv[0], FRAME_CONFIRM, junk, sizeof(junk));
	side_join(&r);
	cr_assert_eq(r.ret, -EKEYREJECTED);
	cr_assert_eq(raw_frame(sv[0], m, sizeof(m), &len), FRAME_REJECT);
	cr_assert_eq(len, 3);
	cr_assert_eq(m[0], 1, "reason: key");
	cr_assert_eq(raw_frame(sv[0], m, sizeof(m), &len), -1, "and nothing after it");
	close(sv[0]);
	close(sv[1]);
	relay_free(&old);
}

Test(chan, other_version_is_refused)
{
	uint8_t hello[68] = {2, 0, 'I', 0}, m[256];
	struct side r = {0};
	uint32_t len;
	int sv[2];

	sockpair(sv);
	side_start(&r, sv[1], cenv.key, 0);
	raw_send(sv[0], FRAME_HELLO, hello, sizeof(hello));
	side_join(&r);
	cr_assert_eq(r.ret, -EPROTONOSUPPORT);
	cr_assert_eq(raw_frame(sv[0], m, sizeof(m), &len), FRAME_REJECT);
	cr_assert_eq(len, 3);
	cr_assert_eq(m[0], 2, "reason: version");
	cr_assert_eq(m[1] | m[2] << 8, CHAN_VERSION);
	close(sv[0]);
	close(sv[1]);
}

Test(chan, non_peer_is_refused)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct side r = {0};
	int sv[2];

	sockpair(sv);
	side_start(&r, sv[1], cenv.key, 0);
	cr_assert_eq(send(sv[0], http, sizeof(http) - 1, 0), (ssize_t)sizeof(http) - 1);
	side_join(&r);
	cr_assert_eq(r.ret, -EPROTO);
	close(sv[0]);
	close(sv[1]);

	/* a huge frame before authentication is refused on its header */
	uint8_t h[FRAME_HDR_BYTES];
	sockpair(sv);
	side_start(&r, sv[1], cenv.key, 0);
	cr_assert_eq(frame_put_header(h, FRAME_HELLO, 1u << 20), 0);
	cr_assert_eq(send(sv[0], h, sizeof(h), 0), (ssize_t)sizeof(h));
	side_join(&r);
	cr_assert_eq(r.ret, -EPROTO);
	close(sv[0]);
	close(sv[1]);
}

Test(chan, silent_or_vanishing_peer)
{
	struct side r = {.timeout = 200};
	int sv[2];
	int64_t t0 = ms_now();

	sockpair(sv);
	side_start(&r, sv[1], cenv.key, 0);
	side_join(&r);
	cr_assert_eq(r.ret, -ETIMEDOUT);
	cr_assert_geq(ms_now() - t0, 190);
	cr_assert_lt(ms_now() - t0, 3000);
	close(sv[0]);
	close(sv[1]);

	sockpair(sv);
	memset(&r, 0, sizeof(r));
	side_start(&r, sv[0], cenv.key, 1);
	uint8_t m[256];
	uint32_t len;
	cr_assert_eq(raw_frame(sv[1], m, sizeof(m), &len), FRAME_HELLO);
	close(sv[1]);
	side_join(&r);
	cr_assert_eq(r.ret, -ECONNRESET);
	close(sv[0]);
}

/* ---- tampering with the streams ---- */

Test(chan, untampered_stream_through_relay)
{
	for (int dir = 0; dir < 2; dir++) {
		int n, ret = stream_through(NULL, dir, &n);
		cr_assert_eq(ret, 0);
		cr_assert_eq(n, NMSG);
	}
}

Test(chan, flipped_bit_in_a_message)
{
	for (int dir = 0; dir < 2; dir++) {
		/* message 2 is 1994 bytes: a frame of 5 + 17 + 1995 bytes */
		size_t fl = FRAME_HDR_BYTES + SESSION_ABYTES + 1 + msg_len(2);
		for (size_t bit = 0; bit < fl * 8; bit += (bit < 80 ? 1 : 509)) {
			struct tamper t = {.op = OP_FLIP, .dir = dir, .frame = frame_of(dir, 2), .bit = bit};
			int n, ret = stream_through(&t, dir, &n);
			cr_assert_eq(n, 2, "dir %d bit %zu: delivered %d", dir, bit, n);
			if (bit >= FRAME_HDR_BYTES * 8)
				cr_assert_eq(ret, -EBADMSG, "dir %d bit %zu: %d", dir, bit, ret);
			else /* a changed length: a short frame fails, a long one runs into the end */
				cr_assert(ret == -EBADMSG || ret == -ECONNRESET, "dir %d bit %zu: %d", dir,
					  bit, ret);
		}
	}
}

Test(chan, flipped_bit_anywhere_in_the_stream)
{
	/* raw stream offsets past the handshake (73 + 37 + 29 bytes from the initiator) */
	for (size_t off = 139; off < 139 + 600; off += 7) {
		struct tamper t = {.op = OP_RAWFLIP, .dir = 0, .frame = (int)off, .bit = off % 8};
		int n, ret = stream_through(&t, 0, &n);
		cr_assert(ret < 0 && ret != -ETIMEDOUT, "offset %zu: %d", off, ret);
		cr_assert_lt(n, NMSG);
	}
}

Test(chan, dropped_message)
{
	for (int dir = 0; dir < 2; dir++)
		for (int k = 0; k < NMSG - 1; k++) {
			struct tamper t = {.op = OP_DROP, .dir = dir, .frame = frame_of(dir, k)};
			int n, ret = stream_through(&t, dir, &n);
			cr_assert_eq(ret, -EBADMSG, "dir %d msg %d: %d", dir, k, ret);
			cr_assert_eq(n, k);
		}
}

Test(chan, dropped_final_is_truncation)
{
	for (int dir = 0; dir < 2; dir++) {
		struct tamper t = {.op = OP_DROP, .dir = dir, .frame = frame_of(dir, NMSG)};
		int n, ret = stream_through(&t, dir, &n);
		cr_assert_eq(ret, -ECONNRESET, "dir %d: %d", dir, ret);
		cr_assert_eq(n, NMSG);
	}
}

Test(chan, duplicated_message)
{
	for (int dir = 0; dir < 2; dir++)
		for (int k = 0; k <= NMSG; k++) { /* k == NMSG: the FINAL message */
			struct tamper t = {.op = OP_DUP, .dir = dir, .frame = frame_of(dir, k)};
			int n, ret = stream_through(&t, dir, &n);
			if (k == NMSG) { /* nothing is read past FINAL */
				cr_assert_eq(ret, 0);
				cr_assert_eq(n, NMSG);
				continue;
			}
			cr_assert_eq(ret, -EBADMSG, "dir %d msg %d: %d", dir, k, ret);
			cr_assert_eq(n, k + 1);
		}
}

Test(chan, reordered_messages)
{
	for (int dir = 0; dir < 2; dir++)
		for (int k = 0; k < NMSG; k++) { /* k == NMSG - 1: swapped with FINAL */
			struct tamper t = {.op = OP_SWAP, .dir = dir, .frame = frame_of(dir, k)};
			int n, ret = stream_through(&t, dir, &n);
			cr_assert_eq(ret, -EBADMSG, "dir %d msg %d: %d", dir, k, ret);
			cr_assert_eq(n, k);
		}
}

Test(chan, replayed_old_message)
{
	for (int dir = 0; dir < 2; dir++)
		for (int k = 1; k < NMSG; k++) {
			struct tamper t = {.op = OP_REPLAY,
					   .dir = dir,
					   .frame = frame_of(dir, k),
					   .src = frame_of(dir, k - 1)};
			int n, ret = stream_through(&t, dir, &n);
			cr_assert_eq(ret, -EBADMSG, "dir %d msg %d: %d", dir, k, ret);
			cr_assert_eq(n, k + 1);
		}
}

Test(chan, message_from_another_session)
{
	struct tamper rec = {.op = OP_NONE};
	struct chan *ci, *cr;
	struct relay old;
	uint8_t type;
	void *buf;
	size_t len;

	/* session 1: the same messages, recorded */
	relay_start(&old, &rec);
	handshake_ok(old.ifd, old.rfd, &ci, &cr);
	for (int k = 0; k < 3; k++) {
		cr_assert_eq(send_msg(ci, k), 0);
		cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	}
	chan_free(ci);
	chan_free(cr);
	relay_stop(&old);
	/* session 2: message 1 replaced by session 1's message 1, same position and length */
	struct tamper t = {.op = OP_INJECT,
			   .dir = 0,
			   .frame = frame_of(0, 1),
			   .inject = old.d[0].frames[frame_of(0, 1)],
			   .inject_len = old.d[0].lens[frame_of(0, 1)]};
	int n, ret = stream_through(&t, 0, &n);
	cr_assert_eq(ret, -EBADMSG);
	cr_assert_eq(n, 1);
	/* and a stream header from session 1: nothing decrypts */
	t = (struct tamper){.op = OP_INJECT,
			    .dir = 0,
			    .frame = 2,
			    .inject = old.d[0].frames[2],
			    .inject_len = old.d[0].lens[2]};
	ret = stream_through(&t, 0, &n);
	cr_assert_eq(ret, -EBADMSG);
	cr_assert_eq(n, 0);
	relay_free(&old);
}

Test(chan, tampered_stream_header)
{
	for (int dir = 0; dir < 2; dir++) {
		struct tamper t = {.op = OP_FLIP, .dir = dir, .frame = dir == 0 ? 2 : 1, .bit = PBIT(11, 2)};
		int n, ret = stream_through(&t, dir, &n);
		cr_assert_eq(ret, -EBADMSG, "dir %d: %d", dir, ret);
		cr_assert_eq(n, 0);
	}
}

Test(chan, truncated_stream)
{
	for (int dir = 0; dir < 2; dir++)
		for (int k = 0; k <= NMSG; k++) {
			size_t fl = k < NMSG ? FRAME_HDR_BYTES + SESSION_ABYTES + 1 + msg_len(k)
					     : FRAME_HDR_BYTES + SESSION_ABYTES;
			const size_t cuts[] = {0, 3, FRAME_HDR_BYTES, fl / 2, fl - 1};
			for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
				struct tamper t = {
				    .op = OP_CUT, .dir = dir, .frame = frame_of(dir, k), .cut = cuts[c]};
				int n, ret = stream_through(&t, dir, &n);
				cr_assert_eq(ret, -ECONNRESET, "dir %d msg %d cut %zu: %d", dir, k, cuts[c],
					     ret);
				cr_assert_eq(n, k);
			}
		}
}

Test(chan, peer_vanishing_without_close)
{
	struct chan *ci, *cr;
	int sv[2];
	uint8_t type;
	void *buf;
	size_t len;

	sockpair(sv);
	handshake_ok(sv[0], sv[1], &ci, &cr);
	cr_assert_eq(send_msg(ci, 1), 0);
	chan_free(ci); /* no chan_close(): a crash, as far as the peer can tell */
	close(sv[0]);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), 1);
	check_msg(1, type, buf, len);
	cr_assert_eq(chan_recv(cr, &type, &buf, &len, TIMEOUT), -ECONNRESET);
	cr_assert_eq(chan_send(cr, 1, "x", 1), -ECONNRESET, "a dead channel stays dead");
	chan_free(cr);
	close(sv[1]);
}
