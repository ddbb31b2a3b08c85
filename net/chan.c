/* chan.c -- the secure channel: handshake, then one secretstream per direction
 *
 * Handshake (docs/protocol.md has the rationale; I = initiator, R = responder,
 * M(x) = BLAKE2b-256 keyed with the handshake subkey of the cluster key,
 * P = the protocol name, hello/reply below are the payloads without frame
 * headers):
 *
 *   I -> R  HELLO    ver u16, role 'I', 0, e_i[32], mac1 = M(P || 1 || hello[0..36))
 *   R -> I  REPLY    ver u16, role 'R', 0, e_r[32], mac2 = M(P || 2 || hello || reply[0..36))
 *   I -> R  CONFIRM  mac3 = M(P || 3 || hello || reply)
 *   I -> R  STREAM   initiator's secretstream header   (sent with CONFIRM)
 *   R -> I  STREAM   responder's secretstream header
 *
 * then SEALED frames both ways. Each side checks every MAC (constant time)
 * before it sends anything further; a check that fails is answered with a
 * REJECT frame naming the reason, and the handshake fails on both sides.
 * Session keys: session_derive() in lib/crypto.c (crypto_kx, mixed with the
 * PSK and hello || reply). Each STREAM header is sent only after the peer's
 * proof checked out, so a peer without the key receives nothing encrypted.
 *
 * A sealed frame's plaintext is (type u8, payload), or empty with the FINAL
 * tag for chan_close().
 */
#include "chan.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../lib/crypto.h"

#define HS_MAX_FRAME   128 /* largest handshake frame accepted before the peer is proven */
#define HELLO_BYTES    (4 + SESSION_PUBLIC_BYTES + CRYPTO_MAC_BYTES) /* HELLO and REPLY */
#define HELLO_SIGNED   (4 + SESSION_PUBLIC_BYTES)		     /* the part mac1/mac2 cover */
#define REJECT_BYTES   3
#define ROLE_INITIATOR 'I'
#define ROLE_RESPONDER 'R'
#define RBUF_BYTES     65536

/* REJECT reasons */
enum { REJ_KEY = 1, REJ_VERSION = 2, REJ_PROTO = 3 };

static const char proto_name[] = "repfs chan v1: NNpsk0-like, X25519, BLAKE2b-256, XChaCha20-Poly1305";

struct chan {
	int fd;
	atomic_int dead;      /* 0, or the first fatal error */
	struct session *sess; /* tx half under send_lock, rx half the receiver's */

	/* the senders' half, protected by send_lock */
	pthread_mutex_t send_lock;
	int send_timeout_ms;
	int closed;    /* FINAL sent */
	uint8_t *mbuf; /* plaintext of the message being sealed */
	size_t mcap;
	uint8_t *tbuf; /* sealed frames not yet written: tbuf[0..tlen) */
	size_t tlen, tcap;

	/* the receiver's half: one receiving thread at a time */
	struct frame_dec *dec;
	int eof;       /* FINAL received */
	uint8_t *pbuf; /* plaintext of the last message received */
	size_t pcap;
	size_t roff, rlen; /* unconsumed bytes: rbuf[roff..rlen) */
	uint8_t rbuf[RBUF_BYTES];
};

/* ---- time and socket I/O ---- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -1: none */
static int64_t deadline_after(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

static int remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - now_ms();
	if (left < 0)
		return 0;
	return left > 1000000000 ? 1000000000 : (int)left;
}

/* 0 once fd is ready for events (or in error: the next call says which), -ETIMEDOUT, -errno */
static int wait_fd(int fd, short events, int64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = events};

	for (;;) {
		int n = poll(&p, 1, remaining(deadline));
		if (n > 0)
			return 0;
		if (n == 0)
			return -ETIMEDOUT;
		if (errno != EINTR)
			return -errno;
	}
}

/*
 * Writes all of buf, waiting at most stall_ms (-1: forever) each time the
 * socket accepts nothing. A failure may leave a partial write behind.
 */
static int send_all(int fd, const uint8_t *buf, size_t len, int stall_ms)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int ret = wait_fd(fd, POLLOUT, deadline_after(stall_ms));
		if (ret)
			return ret;
	}
	return 0;
}

/* Reads what the socket has into the empty rbuf, waiting until deadline. -ECONNRESET at end of stream. */
static int fill(struct chan *c, int64_t deadline)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->rbuf, sizeof(c->rbuf), MSG_DONTWAIT);
		if (n > 0) {
			c->roff = 0;
			c->rlen = (size_t)n;
			return 0;
		}
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int ret = wait_fd(c->fd, POLLIN, deadline);
		if (ret)
			return ret;
	}
}

/* 1 and *f, or -errno (-EBADMSG from the decoder, -ETIMEDOUT, -ECONNRESET, ...) */
static int next_frame(struct chan *c, struct frame *f, int64_t deadline)
{
	for (;;) {
		if (c->roff < c->rlen) {
			const uint8_t *p = c->rbuf + c->roff;
			size_t n = c->rlen - c->roff;
			int ret = frame_dec_feed(c->dec, &p, &n, f);
			c->roff = c->rlen - n;
			if (ret)
				return ret;
		}
		c->roff = c->rlen = 0;
		int ret = fill(c, deadline);
		if (ret)
			return ret;
	}
}

/* Records the channel's first fatal error, ends the connection both ways, returns err. */
static int kill_chan(struct chan *c, int err)
{
	int expected = 0;

	atomic_compare_exchange_strong(&c->dead, &expected, err);
	shutdown(c->fd, SHUT_RDWR);
	return err;
}

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
	uint8_t *p;

	if (need <= *cap)
		return 0;
	p = malloc(need); /* contents are dead between messages */
	if (!p)
		return -ENOMEM;
	free(*buf);
	*buf = p;
	*cap = need;
	return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- handshake ---- */

/*
 * mac = M(P || label || a || b): the transcript MAC of message label.
 * Inputs are at most two HELLO-sized payloads.
 */
static int hs_mac(const struct session *s, uint8_t label, const uint8_t *a, size_t alen, const uint8_t *b,
		  size_t blen, uint8_t mac[CRYPTO_MAC_BYTES])
{
	uint8_t msg[sizeof(proto_name) + 1 + 2 * HELLO_BYTES];
	size_t n = sizeof(proto_name) - 1;

	if (alen + blen > 2 * HELLO_BYTES)
		return -EINVAL;
	memcpy(msg, proto_name, n);
	msg[n++] = label;
	memcpy(msg + n, a, alen);
	n += alen;
	if (blen)
		memcpy(msg + n, b, blen);
	n += blen;
	return session_mac(s, msg, n, mac);
}

/* Checks a received MAC against the one we compute; constant time. 0 or -EKEYREJECTED. */
static int hs_check(const struct session *s, uint8_t label, const uint8_t *a, size_t alen, const uint8_t *b,
		    size_t blen, const uint8_t got[CRYPTO_MAC_BYTES])
{
	uint8_t want[CRYPTO_MAC_BYTES];
	int ret = hs_mac(s, label, a, alen, b, blen, want);

	if (!ret && mac_equal(want, got) != 0)
		ret = -EKEYREJECTED;
	crypto_wipe(want, sizeof(want));
	return ret ? -EKEYREJECTED : 0;
}

static int send_frame(struct chan *c, uint8_t type, const void *payload, size_t len, int64_t deadline)
{
	uint8_t buf[HS_MAX_FRAME + FRAME_HDR_BYTES];
	size_t n;
	int ret = frame_encode(buf, sizeof(buf), type, payload, len, &n);

	if (!ret)
		ret = send_all(c->fd, buf, n, remaining(deadline));
	return ret;
}

/*
 * Refuses the peer: tells it why (best effort, never waits) and ends our
 * direction, so it learns at once. Returns err.
 */
static int refuse(struct chan *c, uint8_t reason, int err)
{
	uint8_t p[REJECT_BYTES] = {reason}, buf[FRAME_HDR_BYTES + REJECT_BYTES];
	size_t n;

	put16(p + 1, CHAN_VERSION);
	if (!frame_encode(buf, sizeof(buf), FRAME_REJECT, p, sizeof(p), &n) &&
	    send(c->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		/* the peer is gone or stuck: our error says enough */
	}
	shutdown(c->fd, SHUT_WR);
	return err;
}

/* The error a REJECT frame from the peer stands for. */
static int rejected(const struct frame *f)
{
	if (f->len != REJECT_BYTES)
		return -EPROTO;
	switch (f->payload[0]) {
	case REJ_KEY:
		return -EKEYREJECTED;
	case REJ_VERSION:
		return -EPROTONOSUPPORT;
	default:
		return -EPROTO;
	}
}

/*
 * Reads the next handshake frame, which must be of type want and len bytes
 * long; a REJECT from the peer becomes its error. -EPROTO (the peer told so)
 * for anything else.
 */
static int hs_expect(struct chan *c, struct frame *f, uint8_t want, uint32_t len, int64_t deadline)
{
	int ret = next_frame(c, f, deadline);

	if (ret == -EBADMSG)
		return refuse(c, REJ_PROTO, -EPROTO);
	if (ret < 0)
		return ret;
	if (f->type == FRAME_REJECT)
		return rejected(f);
	if (f->type != want || f->len != len)
		return refuse(c, REJ_PROTO, -EPROTO);
	return 0;
}

/* Checks the fixed fields of a HELLO or REPLY. */
static int hs_fields(struct chan *c, const uint8_t *m, uint8_t role)
{
	if (get16(m) != CHAN_VERSION)
		return refuse(c, REJ_VERSION, -EPROTONOSUPPORT);
	if (m[2] != role || m[3] != 0)
		return refuse(c, REJ_PROTO, -EPROTO);
	return 0;
}

/* Derives the session keys and sends our stream header, behind the CONFIRM if confirm is not NULL. */
static int hs_start_streams(struct chan *c, int initiator, const uint8_t *peer_pub, const uint8_t *hello,
			    const uint8_t *reply, const uint8_t *confirm, int64_t deadline)
{
	uint8_t transcript[2 * HELLO_BYTES], header[SESSION_HEADER_BYTES];
	uint8_t out[2 * FRAME_HDR_BYTES + CRYPTO_MAC_BYTES + SESSION_HEADER_BYTES];
	size_t n = 0, m;
	int ret;

	memcpy(transcript, hello, HELLO_BYTES);
	memcpy(transcript + HELLO_BYTES, reply, HELLO_BYTES);
	ret = session_derive(c->sess, initiator, peer_pub, transcript, sizeof(transcript));
	if (ret)
		return refuse(c, REJ_PROTO, -EPROTO); /* a degenerate public key */
	ret = session_push_init(c->sess, header);
	if (ret)
		return ret;
	if (confirm) {
		ret = frame_encode(out, sizeof(out), FRAME_CONFIRM, confirm, CRYPTO_MAC_BYTES, &m);
		if (ret)
			return ret;
		n += m;
	}
	ret = frame_encode(out + n, sizeof(out) - n, FRAME_STREAM, header, sizeof(header), &m);
	if (ret)
		return ret;
	return send_all(c->fd, out, n + m, remaining(deadline));
}

static int hs_initiator(struct chan *c, const struct key *k, int64_t deadline)
{
	uint8_t hello[HELLO_BYTES], reply[HELLO_BYTES], confirm[CRYPTO_MAC_BYTES];
	struct frame f;
	int ret;

	put16(hello, CHAN_VERSION);
	hello[2] = ROLE_INITIATOR;
	hello[3] = 0;
	ret = session_new(&c->sess, k, hello + 4);
	if (!ret)
		ret = hs_mac(c->sess, 1, hello, HELLO_SIGNED, NULL, 0, hello + HELLO_SIGNED);
	if (!ret)
		ret = send_frame(c, FRAME_HELLO, hello, sizeof(hello), deadline);
	if (ret)
		return ret;

	ret = hs_expect(c, &f, FRAME_REPLY, HELLO_BYTES, deadline);
	if (ret)
		return ret;
	memcpy(reply, f.payload, HELLO_BYTES);
	ret = hs_fields(c, reply, ROLE_RESPONDER);
	if (ret)
		return ret;
	if (hs_check(c->sess, 2, hello, HELLO_BYTES, reply, HELLO_SIGNED, reply + HELLO_SIGNED))
		return refuse(c, REJ_KEY, -EKEYREJECTED);

	/* the responder holds the key: prove that we do, and start our stream */
	ret = hs_mac(c->sess, 3, hello, HELLO_BYTES, reply, HELLO_BYTES, confirm);
	if (!ret)
		ret = hs_start_streams(c, 1, reply + 4, hello, reply, confirm, deadline);
	if (ret)
		return ret;

	ret = hs_expect(c, &f, FRAME_STREAM, SESSION_HEADER_BYTES, deadline);
	if (ret)
		return ret;
	return session_pull_init(c->sess, f.payload);
}

static int hs_responder(struct chan *c, const struct key *k, int64_t deadline)
{
	uint8_t hello[HELLO_BYTES], reply[HELLO_BYTES];
	struct frame f;
	int ret;

	ret = hs_expect(c, &f, FRAME_HELLO, HELLO_BYTES, deadline);
	if (ret)
		return ret;
	memcpy(hello, f.payload, HELLO_BYTES);
	ret = hs_fields(c, hello, ROLE_INITIATOR);
	if (ret)
		return ret;

	put16(reply, CHAN_VERSION);
	reply[2] = ROLE_RESPONDER;
	reply[3] = 0;
	ret = session_new(&c->sess, k, reply + 4);
	if (ret)
		return ret;
	if (hs_check(c->sess, 1, hello, HELLO_SIGNED, NULL, 0, hello + HELLO_SIGNED))
		return refuse(c, REJ_KEY, -EKEYREJECTED);

	ret = hs_mac(c->sess, 2, hello, HELLO_BYTES, reply, HELLO_SIGNED, reply + HELLO_SIGNED);
	if (!ret)
		ret = send_frame(c, FRAME_REPLY, reply, sizeof(reply), deadline);
	if (ret)
		return ret;

	ret = hs_expect(c, &f, FRAME_CONFIRM, CRYPTO_MAC_BYTES, deadline);
	if (ret)
		return ret;
	if (hs_check(c->sess, 3, hello, HELLO_BYTES, reply, HELLO_BYTES, f.payload))
		return refuse(c, REJ_KEY, -EKEYREJECTED);

	/* the initiator holds the key too: start our stream */
	ret = hs_start_streams(c, 0, hello + 4, hello, reply, NULL, deadline);
	if (ret)
		return ret;

	ret = hs_expect(c, &f, FRAME_STREAM, SESSION_HEADER_BYTES, deadline);
	if (ret)
		return ret;
	return session_pull_init(c->sess, f.payload);
}

int chan_handshake(struct chan **out, int fd, const struct key *k, int initiator, int timeout_ms)
{
	int64_t deadline = deadline_after(timeout_ms);
	struct chan *c;
	int one = 1, ret;

	*out = NULL;
	if (fd < 0 || !k)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = fd;
	c->send_timeout_ms = timeout_ms;
	ret = pthread_mutex_init(&c->send_lock, NULL);
	if (ret) {
		free(c);
		return -ret;
	}
	ret = frame_dec_new(&c->dec, HS_MAX_FRAME);
	if (ret)
		goto out;
	/* latency matters more than packet count; fails harmlessly on AF_UNIX */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	ret = initiator ? hs_initiator(c, k, deadline) : hs_responder(c, k, deadline);
	if (ret)
		goto out;
	frame_dec_set_max(c->dec, FRAME_MAX_PAYLOAD);
	*out = c;
	c = NULL;
out:
	chan_free(c);
	return ret;
}

/* ---- messages ---- */

/* Writes the queued frames. Caller holds send_lock. Fatal on failure. */
static int flush_locked(struct chan *c)
{
	int ret;

	if (!c->tlen)
		return 0;
	ret = send_all(c->fd, c->tbuf, c->tlen, c->send_timeout_ms);
	c->tlen = 0;
	if (ret)
		return kill_chan(c, ret);
	return 0;
}

/*
 * Seals (type, buf) -- or nothing, tagged FINAL -- into a frame behind the
 * queued ones. Caller holds send_lock. Only -ENOMEM before anything was
 * sealed leaves the channel intact.
 */
static int seal_locked(struct chan *c, uint8_t type, const void *buf, size_t len, int final)
{
	size_t mlen = final ? 0 : 1 + len, clen = mlen + SESSION_ABYTES, need = c->tlen + FRAME_HDR_BYTES + clen;
	int ret;

	ret = grow(&c->mbuf, &c->mcap, mlen ? mlen : 1);
	if (!ret && need > c->tcap) {
		/* queued frames must survive: realloc, not grow() */
		uint8_t *p = realloc(c->tbuf, need);
		if (p) {
			c->tbuf = p;
			c->tcap = need;
		} else {
			ret = -ENOMEM;
		}
	}
	if (ret)
		return ret; /* nothing sealed: the channel is intact */
	if (!final) {
		c->mbuf[0] = type;
		if (len)
			memcpy(c->mbuf + 1, buf, len);
	}
	ret = frame_put_header(c->tbuf + c->tlen, FRAME_SEALED, clen);
	if (!ret)
		ret = session_seal(c->sess, c->tbuf + c->tlen + FRAME_HDR_BYTES, c->mbuf, mlen, final);
	if (ret)
		return kill_chan(c, ret);
	c->tlen += FRAME_HDR_BYTES + clen;
	return 0;
}

/* chan_send (flush: now) and chan_queue (flush: once CHAN_QUEUE_BYTES are queued). */
static int send_msg(struct chan *c, uint8_t type, const void *buf, size_t len, int flush)
{
	int ret;

	if (len > CHAN_MAX_PAYLOAD)
		return -EMSGSIZE;
	if (len && !buf)
		return -EINVAL;
	pthread_mutex_lock(&c->send_lock);
	ret = atomic_load(&c->dead);
	if (!ret && c->closed)
		ret = -EPIPE;
	if (!ret)
		ret = seal_locked(c, type, buf, len, 0);
	if (!ret && (flush || c->tlen >= CHAN_QUEUE_BYTES))
		ret = flush_locked(c);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int chan_send(struct chan *c, uint8_t type, const void *buf, size_t len)
{
	return send_msg(c, type, buf, len, 1);
}

int chan_queue(struct chan *c, uint8_t type, const void *buf, size_t len)
{
	return send_msg(c, type, buf, len, 0);
}

int chan_flush(struct chan *c)
{
	int ret;

	pthread_mutex_lock(&c->send_lock);
	ret = atomic_load(&c->dead);
	if (!ret)
		ret = flush_locked(c);
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int chan_close(struct chan *c)
{
	int ret;

	pthread_mutex_lock(&c->send_lock);
	ret = atomic_load(&c->dead);
	if (!ret && !c->closed) {
		ret = seal_locked(c, 0, NULL, 0, 1);
		if (!ret)
			ret = flush_locked(c);
		if (!ret) {
			c->closed = 1;
			shutdown(c->fd, SHUT_WR);
		}
	}
	pthread_mutex_unlock(&c->send_lock);
	return ret;
}

int chan_recv(struct chan *c, uint8_t *type, void **buf, size_t *len, int timeout_ms)
{
	struct frame f;
	size_t mlen;
	int final, ret;

	*type = 0;
	*buf = NULL;
	*len = 0;
	ret = atomic_load(&c->dead);
	if (ret)
		return ret;
	if (c->eof)
		return 0;
	ret = next_frame(c, &f, deadline_after(timeout_ms));
	if (ret == -ETIMEDOUT)
		return ret; /* the decoder keeps any partial frame */
	if (ret < 0)
		return kill_chan(c, ret);
	if (f.type != FRAME_SEALED || f.len < SESSION_ABYTES)
		return kill_chan(c, -EBADMSG);
	ret = grow(&c->pbuf, &c->pcap, f.len - SESSION_ABYTES + 1);
	if (ret)
		return kill_chan(c, ret); /* the frame is consumed: the stream cannot go on */
	if (session_open(c->sess, c->pbuf, &mlen, f.payload, f.len, &final))
		return kill_chan(c, -EBADMSG);
	if (final) {
		if (mlen)
			return kill_chan(c, -EBADMSG);
		c->eof = 1;
		return 0;
	}
	if (mlen == 0)
		return kill_chan(c, -EBADMSG);
	*type = c->pbuf[0];
	*buf = c->pbuf + 1;
	*len = mlen - 1;
	return 1;
}

void chan_set_send_timeout(struct chan *c, int timeout_ms)
{
	pthread_mutex_lock(&c->send_lock);
	c->send_timeout_ms = timeout_ms;
	pthread_mutex_unlock(&c->send_lock);
}

int chan_fd(const struct chan *c)
{
	return c->fd;
}

int chan_buffered(const struct chan *c)
{
	return c->roff < c->rlen;
}

void chan_free(struct chan *c)
{
	if (!c)
		return;
	session_free(c->sess);
	frame_dec_free(c->dec);
	free(c->mbuf);
	free(c->tbuf);
	free(c->pbuf);
	pthread_mutex_destroy(&c->send_lock);
	crypto_wipe(c, sizeof(*c));
	free(c);
}

const char *chan_strerror(int err)
{
	switch (err) {
	case -EKEYREJECTED:
		return "peer does not hold the cluster key, or the handshake was tampered with";
	case -EPROTONOSUPPORT:
		return "peer speaks another version of the replication protocol";
	case -EPROTO:
		return "peer does not speak the replication protocol";
	case -EBADMSG:
		return "message failed authentication (corrupted, forged, dropped, reordered or replayed)";
	case -ECONNRESET:
		return "connection ended without a clean close";
	case -ETIMEDOUT:
		return "peer did not answer in time";
	case -EMSGSIZE:
		return "message too large";
	case -EPIPE:
		return "connection closed";
	default:
		return err < 0 ? strerror(-err) : "unknown error";
	}
}
