/* tcpproxy.c -- a fault-injecting TCP proxy for the replication tests (loopback only)
 *
 * usage: tcpproxy [-c CONTROL] [-d DUMP] [-D DIR] [-s SEED] LISTEN_PORT TARGET_PORT
 *                 [MODE [N [DIR [RECORDING]]]]
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: any free port) and forwards every
 * accepted connection to 127.0.0.1:TARGET_PORT. A follower connects to the
 * proxy, the proxy to the leader: "down" is the leader -> follower direction,
 * "up" the follower -> leader one.
 *
 * The streams are cut into repfs wire frames (net/frame.h: u32 length, u8
 * type, payload), and faults hit whole frames of type SEALED (the encrypted
 * messages after the handshake), so that each fault is exactly the one its
 * name says and the handshake is left alone (except by playback):
 *
 *   pass      forward everything unchanged (the default)
 *   flip      flip one bit of the payload of a frame
 *   drop      leave a frame out
 *   dup       send a frame twice
 *   reorder   hold a frame back and send it after the next one
 *   replay    send a frame seen earlier (the oldest of the last 16, which may
 *             come from an earlier connection) before the current one
 *   inject    send the next SEALED frame of RECORDING (of the same direction,
 *             in recorded order, starting over at its end) before the current
 *             one: traffic of an earlier connection, maybe through another
 *             proxy, maybe to another node
 *   cut       close both sides of the connection (0 bytes: at once, on accept)
 *   playback  connections accepted from now on get a whole recorded
 *             connection, handshake included, instead of the live side.
 *             DIR down (default): the proxy plays the leader: the client gets
 *             the bytes of RECORDING.down at once, the target is not
 *             contacted. DIR up: the proxy plays the follower: it connects to
 *             the target and sends it RECORDING.up at once; the target's
 *             answers go to the client. Either way the client's own bytes are
 *             read and dropped, and N does not matter. Live connections are
 *             left alone.
 *
 * N (default 4096): a fault every N bytes of SEALED frames in the faulty
 * direction(s) of a connection (for cut: after N bytes). DIR: down (default),
 * up or both. RECORDING (inject and playback only): the path of a recorded
 * connection without its suffix, PREFIX for PREFIX.down and PREFIX.up (as -D
 * writes them); read when the mode is set.
 *
 * CONTROL: a file holding "MODE [N [DIR [RECORDING]]]", re-read whenever it
 * changes (checked every 20 ms); write it with a rename so it is never seen
 * half written. A new mode applies to live connections from then on.
 *
 * DUMP: every byte of the down direction, as the leader sent it, is appended
 * to this file (to check that nothing travels in clear).
 *
 * -D DIR: every connection K is recorded whole, both directions, as each side
 * sent it (before any fault): DIR/K.down (what the target sent) and DIR/K.up
 * (what the client sent). A recording for inject and playback.
 *
 * Prints one line per event, flushed: "listening PORT", "mode MODE N DIR[ RECORDING]",
 * "conn K open", "conn K fault MODE DIR at BYTES", "conn K playback DIR BYTES bytes",
 * "conn K closed: WHY", "recording PREFIX: N down frames, M up frames, B bytes".
 * SIGTERM or SIGINT ends it (exit 0).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HDR 5
#define TYPE_SEALED 6
#define MAX_PAYLOAD ((2u << 20) + 4096)
#define MAX_CONNS 32
#define RING 16
#define OUT_LIMIT (4u << 20)	/* stop reading a side while its peer has this much unsent */

enum mode { M_PASS, M_FLIP, M_DROP, M_DUP, M_REORDER, M_REPLAY, M_INJECT, M_CUT, M_PLAYBACK };
static const char *const mode_names[] = { "pass", "flip", "drop", "dup", "reorder", "replay", "inject", "cut",
					  "playback" };
#define M_LAST M_PLAYBACK
enum { D_DOWN = 1, D_UP = 2 };

struct buf {
	uint8_t *p;
	size_t len, cap;
};

/* One direction of a connection: bytes read from src, written to dst. */
struct dir {
	int which;		/* D_DOWN or D_UP */
	struct buf in;		/* read, not yet a whole frame */
	struct buf out;		/* to write to the other side */
	int raw;		/* framing lost (not repfs?): forward as is */
	uint64_t sealed;	/* bytes of sealed frames seen */
	uint64_t next_fault;
	struct buf held;	/* reorder: a frame waiting for the next one */
	int have_held;
	int eof;		/* src ended */
	int drop;		/* playback: what src sends is read and dropped */
	FILE *rec;		/* -D: this direction's recording */
};

struct conn {
	int used, id;
	int fd[2];		/* 0: the client (follower), 1: upstream (leader) */
	struct dir down, up;	/* down: fd[1] -> fd[0]; up: fd[0] -> fd[1] */
	int closing;
};

static volatile sig_atomic_t stop;
static enum mode mode = M_PASS;
static uint64_t every = 4096;
static int dirs = D_DOWN;
static struct conn conns[MAX_CONNS];
static int next_id = 1;
static FILE *dump;
static struct buf ring[RING];
static int ring_next, ring_count;
static unsigned long rnd_state = 12345;
static const char *rec_dir;		/* -D */

/* The recording of inject and playback: both directions' bytes, and where
 * the SEALED frames of each start. */
struct recording {
	char prefix[PATH_MAX];
	struct buf bytes[2];		/* 0: down, 1: up */
	size_t *sealed_at[2];		/* offsets of the SEALED frames in bytes[i] */
	size_t nsealed[2], next[2];
};
static struct recording rec;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	printf("%ld.%03ld ", (long)ts.tv_sec, ts.tv_nsec / 1000000);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static unsigned long rnd(void)
{
	rnd_state = rnd_state * 6364136223846793005UL + 1442695040888963407UL;
	return rnd_state >> 33;
}

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("tcpproxy: realloc");
			exit(3);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_consume(struct buf *b, size_t n)
{
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static const char *dir_name(int d)
{
	return d == D_DOWN ? "down" : d == D_UP ? "up" : "both";
}

static int load_part(const char *prefix, int i)
{
	static const char *const suffix[2] = { ".down", ".up" };
	char path[PATH_MAX + 8];
	uint8_t tmp[65536];
	size_t n, at = 0, cap = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", prefix, suffix[i]);
	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -1;	/* that direction was not recorded */
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_add(&rec.bytes[i], tmp, n);
	fclose(f);
	/* the offsets of its SEALED frames; a torn last frame is left out */
	while (at + HDR <= rec.bytes[i].len) {
		const uint8_t *h = rec.bytes[i].p + at;
		size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
		if (len > MAX_PAYLOAD || at + HDR + len > rec.bytes[i].len)
			break;
		if (h[4] == TYPE_SEALED) {
			if (rec.nsealed[i] == cap) {
				cap = cap ? 2 * cap : 64;
				rec.sealed_at[i] = realloc(rec.sealed_at[i], cap * sizeof(size_t));
				if (!rec.sealed_at[i]) {
					perror("tcpproxy: realloc");
					exit(3);
				}
			}
			rec.sealed_at[i][rec.nsealed[i]++] = at;
		}
		at += HDR + len;
	}
	return 0;
}

/* Reads RECORDING.down and RECORDING.up (either may be missing). */
static int load_recording(const char *prefix)
{
	for (int i = 0; i < 2; i++) {
		buf_free(&rec.bytes[i]);
		free(rec.sealed_at[i]);
		rec.sealed_at[i] = NULL;
		rec.nsealed[i] = rec.next[i] = 0;
	}
	snprintf(rec.prefix, sizeof(rec.prefix), "%s", prefix);
	for (int i = 0; i < 2; i++)
		if (load_part(prefix, i)) {
			say("recording %s: %s", prefix, strerror(errno));
			return -1;
		}
	if (!rec.bytes[0].len && !rec.bytes[1].len) {
		say("recording %s: nothing recorded there", prefix);
		return -1;
	}
	say("recording %s: %zu down frames, %zu up frames, %zu bytes", prefix, rec.nsealed[0], rec.nsealed[1],
	    rec.bytes[0].len + rec.bytes[1].len);
	return 0;
}

static int parse_mode(const char *m, const char *n, const char *d, const char *r)
{
	int i, newdirs = D_DOWN;
	char *end;
	unsigned long long v = 4096;

	for (i = 0; i <= M_LAST; i++)
		if (!strcmp(m, mode_names[i]))
			break;
	if (i > M_LAST)
		return -1;
	if (n && *n) {
		v = strtoull(n, &end, 10);
		if (*end || (v == 0 && i != M_CUT))
			return -1;
	}
	if (d && *d) {
		if (!strcmp(d, "down"))
			newdirs = D_DOWN;
		else if (!strcmp(d, "up"))
			newdirs = D_UP;
		else if (!strcmp(d, "both") && i != M_PLAYBACK)
			newdirs = D_DOWN | D_UP;
		else
			return -1;
	}
	if (i == M_INJECT || i == M_PLAYBACK) {
		if (!r || !*r || load_recording(r))
			return -1;
	} else if (r && *r) {
		return -1;
	}
	mode = (enum mode)i;
	every = v;
	dirs = newdirs;
	for (int k = 0; k < MAX_CONNS; k++) {
		if (!conns[k].used)
			continue;
		conns[k].down.next_fault = conns[k].down.sealed + every;
		conns[k].up.next_fault = conns[k].up.sealed + every;
	}
	say("mode %s %llu %s%s%s", mode_names[mode], (unsigned long long)every, dir_name(dirs),
	    mode == M_INJECT || mode == M_PLAYBACK ? " " : "", mode == M_INJECT || mode == M_PLAYBACK ? rec.prefix : "");
	return 0;
}

static void read_control(const char *path)
{
	static struct timespec last_mtime;
	static off_t last_size = -1;
	struct stat st;
	char line[PATH_MAX + 128], m[32] = "", n[32] = "", d[32] = "", r[PATH_MAX] = "";
	FILE *f;

	if (!path || stat(path, &st) < 0)
		return;
	if (st.st_mtim.tv_sec == last_mtime.tv_sec && st.st_mtim.tv_nsec == last_mtime.tv_nsec &&
	    st.st_size == last_size)
		return;
	f = fopen(path, "re");
	if (!f)
		return;
	if (fgets(line, sizeof(line), f) && sscanf(line, "%31s %31s %31s %4095s", m, n, d, r) >= 1) {
		if (parse_mode(m, n, d, r))
			say("control: bad line '%s'", strtok(line, "\n"));
	}
	fclose(f);
	last_mtime = st.st_mtim;
	last_size = st.st_size;
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void conn_close(struct conn *c, const char *why)
{
	struct linger lg = { 1, 0 };

	if (!c->used)
		return;
	for (int i = 0; i < 2; i++) {
		if (c->fd[i] < 0)
			continue;
		if (c->closing == 2)	/* cut: reset, like a crash or a middlebox */
			setsockopt(c->fd[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(c->fd[i]);
	}
	buf_free(&c->down.in);
	buf_free(&c->down.out);
	buf_free(&c->down.held);
	buf_free(&c->up.in);
	buf_free(&c->up.out);
	buf_free(&c->up.held);
	if (c->down.rec)
		fclose(c->down.rec);
	if (c->up.rec)
		fclose(c->up.rec);
	say("conn %d closed: %s", c->id, why);
	memset(c, 0, sizeof(*c));
	c->fd[0] = c->fd[1] = -1;
}

static void remember(const uint8_t *p, size_t n)
{
	struct buf *b = &ring[ring_next];

	b->len = 0;
	buf_add(b, p, n);
	ring_next = (ring_next + 1) % RING;
	if (ring_count < RING)
		ring_count++;
}

/* One whole frame from d's source: forwards it, or a fault instead. */
static void frame(struct conn *c, struct dir *d, const uint8_t *f, size_t n)
{
	int faulty = mode != M_PASS && (dirs & d->which) && f[4] == TYPE_SEALED;
	int fault = 0;

	if (f[4] == TYPE_SEALED) {
		d->sealed += n;
		if (faulty && d->sealed >= d->next_fault) {
			fault = 1;
			d->next_fault = d->sealed + every;
		}
	}
	if (!fault) {
		buf_add(&d->out, f, n);
		if (d->have_held) {
			buf_add(&d->out, d->held.p, d->held.len);
			d->held.len = 0;
			d->have_held = 0;
		}
		if (f[4] == TYPE_SEALED)
			remember(f, n);
		return;
	}
	say("conn %d fault %s %s at %llu", c->id, mode_names[mode], dir_name(d->which),
	    (unsigned long long)d->sealed);
	switch (mode) {
	case M_FLIP: {
		size_t at = n > HDR ? HDR + rnd() % (n - HDR) : rnd() % n;
		size_t start = d->out.len;
		buf_add(&d->out, f, n);
		d->out.p[start + at] ^= (uint8_t)(1u << (rnd() % 8));
		break;
	}
	case M_DROP:
		break;
	case M_DUP:
		buf_add(&d->out, f, n);
		buf_add(&d->out, f, n);
		break;
	case M_REORDER:
		if (d->have_held) {	/* already holding one: keep the order of this one */
			buf_add(&d->out, f, n);
			break;
		}
		d->held.len = 0;
		buf_add(&d->held, f, n);
		d->have_held = 1;
		break;
	case M_REPLAY:
		if (ring_count) {
			struct buf *old = &ring[(ring_next + RING - ring_count) % RING];
			buf_add(&d->out, old->p, old->len);
		}
		buf_add(&d->out, f, n);
		break;
	case M_INJECT: {
		int i = d->which == D_DOWN ? 0 : 1;
		if (rec.nsealed[i]) {
			const uint8_t *h = rec.bytes[i].p + rec.sealed_at[i][rec.next[i]];
			size_t len = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 | (size_t)h[3] << 24;
			buf_add(&d->out, h, HDR + len);
			rec.next[i] = (rec.next[i] + 1) % rec.nsealed[i];
		}
		buf_add(&d->out, f, n);
		break;
	}
	case M_CUT:
		c->closing = 2;
		break;
	case M_PASS:
	case M_PLAYBACK:
		break;
	}
}

/* Cuts what arrived into frames (or passes it on raw once framing is lost). */
static void process(struct conn *c, struct dir *d)
{
	if (d->drop) {
		d->in.len = 0;
		return;
	}
	while (!c->closing && d->in.len) {
		uint32_t len;

		if (d->raw) {
			if (dump && d->which == D_DOWN)
				fwrite(d->in.p, 1, d->in.len, dump);
			buf_add(&d->out, d->in.p, d->in.len);
			d->in.len = 0;
			break;
		}
		if (d->in.len < HDR)
			break;
		len = (uint32_t)d->in.p[0] | (uint32_t)d->in.p[1] << 8 | (uint32_t)d->in.p[2] << 16 |
		      (uint32_t)d->in.p[3] << 24;
		if (len > MAX_PAYLOAD || d->in.p[4] == 0 || d->in.p[4] > 16) {
			say("conn %d: %s stream is not repfs frames; forwarding it raw", c->id, dir_name(d->which));
			d->raw = 1;
			continue;
		}
		if (d->in.len < HDR + (size_t)len)
			break;
		if (dump && d->which == D_DOWN)
			fwrite(d->in.p, 1, HDR + (size_t)len, dump);
		frame(c, d, d->in.p, HDR + (size_t)len);
		buf_consume(&d->in, HDR + (size_t)len);
	}
	if (dump)
		fflush(dump);
}

static int connect_target(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void accept_one(int lfd, int target)
{
	int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), up, one = 1;
	struct conn *c = NULL;

	if (fd < 0)
		return;
	for (int i = 0; i < MAX_CONNS; i++)
		if (!conns[i].used) {
			c = &conns[i];
			break;
		}
	if (!c) {
		close(fd);
		return;
	}
	memset(c, 0, sizeof(*c));
	c->used = 1;
	c->id = next_id++;
	c->fd[0] = fd;
	c->fd[1] = -1;
	c->down.which = D_DOWN;
	c->up.which = D_UP;
	c->down.next_fault = c->up.next_fault = every;
	say("conn %d open", c->id);
	if (rec_dir) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/%d.down", rec_dir, c->id);
		c->down.rec = fopen(path, "we");
		snprintf(path, sizeof(path), "%s/%d.up", rec_dir, c->id);
		c->up.rec = fopen(path, "we");
		if (!c->down.rec || !c->up.rec)
			say("conn %d: unable to record it in %s: %s", c->id, rec_dir, strerror(errno));
	}
	if (mode == M_CUT && every == 0) {
		c->closing = 2;
		conn_close(c, "cut at once");
		return;
	}
	if (mode == M_PLAYBACK && dirs == D_DOWN) {
		/* the proxy is the leader: the recording is all the client gets */
		buf_add(&c->down.out, rec.bytes[0].p, rec.bytes[0].len);
		c->down.eof = 1;
		c->up.drop = 1;
		say("conn %d playback down %zu bytes", c->id, rec.bytes[0].len);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		nonblock(fd);
		return;
	}
	up = connect_target(target);
	if (up < 0) {
		conn_close(c, "the target refused");
		return;
	}
	c->fd[1] = up;
	if (mode == M_PLAYBACK && dirs == D_UP) {
		/* the proxy is the follower: the target gets the recording, not the client's bytes */
		buf_add(&c->up.out, rec.bytes[1].p, rec.bytes[1].len);
		c->up.drop = 1;
		say("conn %d playback up %zu bytes", c->id, rec.bytes[1].len);
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	nonblock(fd);
	nonblock(up);
}

/* Moves bytes for one direction; returns nonzero if the connection is over. */
static int pump(struct conn *c, struct dir *d, int src, int dst, short srev, short dstrev)
{
	uint8_t tmp[65536];

	if ((srev & (POLLIN | POLLHUP | POLLERR)) && !d->eof && d->out.len < OUT_LIMIT) {
		ssize_t r = read(src, tmp, sizeof(tmp));
		if (r > 0) {
			if (d->rec) {
				fwrite(tmp, 1, (size_t)r, d->rec);
				fflush(d->rec);
			}
			buf_add(&d->in, tmp, (size_t)r);
			process(c, d);
		} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
			d->eof = 1;
		}
	}
	if (c->closing)
		return 1;
	(void)dstrev;
	if (d->out.len) {
		ssize_t w = write(dst, d->out.p, d->out.len);
		if (w > 0)
			buf_consume(&d->out, (size_t)w);
		else if (w < 0 && errno != EAGAIN && errno != EINTR)
			return 1;
	}
	if (d->eof && !d->out.len) {
		shutdown(dst, SHUT_WR);
		return 2;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *control = NULL;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t salen = sizeof(sa);
	int opt, lfd, one = 1, target;
	struct sigaction act = { .sa_handler = on_signal };

	while ((opt = getopt(argc, argv, "c:d:D:s:")) != -1) {
		switch (opt) {
		case 'c':
			control = optarg;
			break;
		case 'd':
			dump = fopen(optarg, "ae");
			if (!dump) {
				perror(optarg);
				return 2;
			}
			break;
		case 'D':
			rec_dir = optarg;
			break;
		case 's':
			rnd_state = strtoul(optarg, NULL, 10);
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind < 2 || argc - optind > 6)
		goto usage;
	for (int i = 0; i < MAX_CONNS; i++)
		conns[i].fd[0] = conns[i].fd[1] = -1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc - optind >= 3 &&
	    parse_mode(argv[optind + 2], argc - optind >= 4 ? argv[optind + 3] : NULL,
		       argc - optind >= 5 ? argv[optind + 4] : NULL, argc - optind >= 6 ? argv[optind + 5] : NULL))
		goto usage;
	target = atoi(argv[optind + 1]);
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return 2;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)atoi(argv[optind]));
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
		fprintf(stderr, "tcpproxy: unable to listen on 127.0.0.1:%s: %s\n", argv[optind], strerror(errno));
		return 2;
	}
	getsockname(lfd, (struct sockaddr *)&sa, &salen);
	read_control(control);
	say("listening %u", ntohs(sa.sin_port));
	while (!stop) {
		struct pollfd p[1 + 2 * MAX_CONNS];
		int idx[MAX_CONNS], np = 1;

		p[0] = (struct pollfd){ lfd, POLLIN, 0 };
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			idx[i] = -1;
			if (!c->used)
				continue;
			idx[i] = np;
			p[np++] = (struct pollfd){ c->fd[0],
						   (short)((c->up.eof || c->up.out.len >= OUT_LIMIT ? 0 : POLLIN) |
							   (c->down.out.len ? POLLOUT : 0)),
						   0 };
			p[np++] = (struct pollfd){ c->fd[1],
						   (short)((c->down.eof || c->down.out.len >= OUT_LIMIT ? 0 : POLLIN) |
							   (c->up.out.len ? POLLOUT : 0)),
						   0 };
		}
		if (poll(p, (nfds_t)np, 20) < 0 && errno != EINTR)
			break;
		read_control(control);
		if (p[0].revents & POLLIN)
			accept_one(lfd, target);
		for (int i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &conns[i];
			int a, b;
			if (!c->used || idx[i] < 0)
				continue;
			a = pump(c, &c->down, c->fd[1], c->fd[0], p[idx[i] + 1].revents, p[idx[i]].revents);
			if (a == 1) {
				conn_close(c, c->closing ? "cut" : "write failed");
				continue;
			}
			b = pump(c, &c->up, c->fd[0], c->fd[1], p[idx[i]].revents, p[idx[i] + 1].revents);
			if (b == 1) {
				conn_close(c, c->closing ? "cut" : "write failed");
				continue;
			}
			if (c->down.eof && c->up.eof && !c->down.out.len && !c->up.out.len)
				conn_close(c, "both sides ended");
			else if ((c->down.eof || c->up.eof) &&
				 (p[idx[i]].revents | p[idx[i] + 1].revents) & (POLLERR))
				conn_close(c, "socket error");
		}
	}
	for (int i = 0; i < MAX_CONNS; i++)
		conn_close(&conns[i], "proxy stopping");
	close(lfd);
	if (dump)
		fclose(dump);
	return 0;
usage:
	fprintf(stderr, "usage: tcpproxy [-c CONTROL] [-d DUMP] [-D DIR] [-s SEED] LISTEN_PORT TARGET_PORT "
			"[pass|flip|drop|dup|reorder|replay|inject|cut|playback [N [down|up|both [RECORDING]]]]\n");
	return 2;
}
