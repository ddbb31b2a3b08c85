/* snapshot.c -- a follower's live snapshot of the leader's tree, and resyncs (G5)
 *
 * Like pg_basebackup plus rsync: the leader records its position S first,
 * then walks its tree while it keeps serving writes; the follower builds
 * what it receives in DATADIR/tree.snap (its own tree stays as it was), then
 * replays the records after S into it, swaps it in, and follows as usual.
 *
 *   follower                              leader
 *   HELLO (flags: snapshot)       ->
 *                                 <-      SNAP_BEGIN  S (epoch, seq, MAC), totals
 *   SNAP_HAVE ... SNAP_HAVE(empty) ->     what it holds already: per file id,
 *                                         the XXH3 digest of every 64 KiB block
 *                                 <-      per object: SNAP_ENTRY, then for a file
 *                                         SNAP_DATA / SNAP_SAME / SNAP_HOLE ranges
 *                                 <-      SNAP_END  E (the leader's seq then)
 *                                 <-      WELCOME, then the records S+1, ...
 *   logs them without applying; at E: replays S+1..E into tree.snap, swaps it
 *   in for tree, applies what came after E, follows.
 *
 * The tree the leader sends is fuzzy (each object as it was when the walk
 * reached it, somewhere between S and E). Replaying S+1..E on top converges
 * because apply is idempotent by file id (DESIGN: File identity): each record
 * applies where its precondition holds and is skipped where its effect is
 * already there. No leader write waits on the snapshot: the walk holds no
 * lock; the leader only keeps its log from S+1 until the follower has it.
 *
 * Only what differs travels: a block whose digest the follower already has
 * (for the same file id, in tree.snap from an interrupted attempt or in its
 * old tree) is sent as SNAP_SAME and copied locally. So a stale follower
 * (behind the leader's retention) resyncs with about what changed, and an
 * interrupted snapshot resumes where it stopped. Holes stay holes: the
 * leader sends its files' layout (SEEK_DATA, SEEK_HOLE) and the follower
 * writes exactly the data ranges.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <xxhash.h>

#include "../fs/fuse_ring.h"
#include "../fs/inodes.h"
#include "../fs/node.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../net/chan.h"
#include "digest.h"
#include "repl_int.h"

#define SNAP_TIMEOUT_MS 120000	/* either side may be busy reading a large tree */
/*
 * Bytes of file data per message. Small enough that no syscall of a snapshot
 * (the leader's send, the follower's recv and pwrite) holds a CPU for long: a
 * kernel without preemption (PREEMPT_NONE, as here) switches to a woken
 * writer only when the syscall ends. With 1 MiB messages the leader's 4 KiB
 * write p99 during a snapshot was 3 ms, with 128 KiB 0.8-1.4 ms, at the same
 * snapshot speed (docs/snapshot.md §6).
 */
#define SNAP_CHUNK (128u << 10)
#define SNAP_SAME_MAX (256ull << 20)	/* longest SAME run per message: keeps messages flowing */
#define SNAP_WRITEBACK (8u << 20)	/* bytes of one file written between writeback kicks */
#define SNAP_WRITEBACK_FILE (1u << 20)	/* a finished file with this much unkicked gets a kick of its own */
#define SNAP_SMALL_DIRTY_MAX (64u << 20)	/* small files' bytes left to the kernel before a syncfs */

enum { KIND_DIR = 1, KIND_FILE = 2, KIND_SYMLINK = 3, KIND_SPECIAL = 4, KIND_LINK = 5 };

/* ======================= ENCODING ======================= */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void wb_put(struct wbuf *b, const void *d, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		uint8_t *p;
		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p) {
			b->err = -ENOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void wb_u16(struct wbuf *b, uint16_t v) { wb_put(b, &v, 2); }
static void wb_u32(struct wbuf *b, uint32_t v) { wb_put(b, &v, 4); }
static void wb_u64(struct wbuf *b, uint64_t v) { wb_put(b, &v, 8); }

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	int err;
};

static const void *rb_get(struct rbuf *b, size_t n)
{
	const void *p;

	if (b->err || n > b->len - b->off) {
		b->err = -EBADMSG;
		return NULL;
	}
	p = b->p + b->off;
	b->off += n;
	return p;
}

static uint64_t rb_u(struct rbuf *b, size_t n)
{
	const void *p = rb_get(b, n);
	uint64_t v = 0;

	if (p)
		memcpy(&v, p, n);	/* little-endian hosts only (README) */
	return v;
}

/* ======================= SETS ======================= */

/* An open-addressing set of 64-bit keys (0 is never stored). */
struct u64set {
	uint64_t *k;
	size_t cap, n;
};

static int set_add(struct u64set *s, uint64_t key)
{
	key |= 1;	/* never 0 */
	if ((s->n + 1) * 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *k = calloc(cap, 8);
		if (!k)
			return -ENOMEM;
		for (size_t i = 0; i < s->cap; i++)
			if (s->k[i])
				for (size_t j = s->k[i] % cap;; j = (j + 1) % cap)
					if (!k[j]) {
						k[j] = s->k[i];
						break;
					}
		free(s->k);
		s->k = k;
		s->cap = cap;
	}
	for (size_t j = key % s->cap;; j = (j + 1) % s->cap) {
		if (s->k[j] == key)
			return 0;
		if (!s->k[j]) {
			s->k[j] = key;
			s->n++;
			return 0;
		}
	}
}

static int set_has(const struct u64set *s, uint64_t key)
{
	key |= 1;
	if (!s->cap)
		return 0;
	for (size_t j = key % s->cap;; j = (j + 1) % s->cap) {
		if (s->k[j] == key)
			return 1;
		if (!s->k[j])
			return 0;
	}
}

static uint64_t key_of_id(const uint8_t id[FILE_ID_BYTES])
{
	return XXH3_64bits(id, FILE_ID_BYTES);
}

static uint64_t key_of_path(const char *rel)
{
	return XXH3_64bits(rel, strlen(rel));
}

/* ======================= PROGRESS ======================= */

static void progress(struct repl *r, uint64_t files, uint64_t done, uint64_t received)
{
	pthread_mutex_lock(&r->mu);
	r->snap.files_done += files;
	r->snap.bytes_done += done;
	r->snap.bytes_received += received;
	pthread_mutex_unlock(&r->mu);
}

int snap_status_json(const struct snap_progress *sp, char *buf, size_t len)
{
	static const char *const names[] = { "none", "transferring", "replaying", "done", "failed" };
	static const char *const checks[] = { "none", "running", "identical", "repaired", "differs", "failed" };
	struct snap_progress s = *sp;
	double elapsed, rate, eta = -1;
	char esc[420];

	/* the totals are the leader's when its walk began: what is made meanwhile can pass them */
	if (s.files_total < s.files_done)
		s.files_total = s.files_done;
	if (s.bytes_total < s.bytes_done)
		s.bytes_total = s.bytes_done;

	elapsed = s.started_ns ? (double)((s.finished_ns ? s.finished_ns : now_ns()) - s.started_ns) / 1e9 : 0;
	rate = elapsed > 0 ? (double)s.bytes_done / elapsed : 0;
	if (s.state == SNAP_TRANSFER && rate > 0)
		eta = (double)(s.bytes_total > s.bytes_done ? s.bytes_total - s.bytes_done : 0) / rate;
	json_escape(esc, sizeof(esc), s.error);
	return snprintf(buf, len,
			"\"snapshot\":{\"state\":\"%s\",\"from_seq\":%" PRIu64 ",\"until_seq\":%" PRIu64
			",\"files_done\":%" PRIu64 ",\"files_total\":%" PRIu64 ",\"bytes_done\":%" PRIu64
			",\"bytes_total\":%" PRIu64 ",\"bytes_received\":%" PRIu64
			",\"rate_bytes_per_s\":%.0f,\"eta_s\":%.1f,\"elapsed_s\":%.1f,\"completed\":%u,\"yielding\":%s,"
			"\"check\":\"%s\",\"error\":\"%s\"}",
			names[s.state], s.from_seq, s.until_seq, s.files_done, s.files_total, s.bytes_done, s.bytes_total,
			s.bytes_received, rate, eta, elapsed, s.completed, s.yielding ? "true" : "false", checks[s.check], esc);
}

/*
 * A snapshot yields the CPU to the node's own work (the leader's writers,
 * the follower's mount): its thread runs at a lower priority while it sends
 * or receives the tree (like DRBD's resync rate, without a fixed rate).
 */
#define SNAP_NICE 10

static void snap_nice(int on)
{
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), on ? SNAP_NICE : 0) < 0)
		rlog(LOG_DEBUG, "unable to change the snapshot thread's priority: %s", strerror(errno));
}

/*
 * While the leader is serving writes, a snapshot keeps to one CPU on each
 * node -- the last one its thread may use -- and uses any CPU otherwise. The
 * leader's sender looks before each piece of the tree and tells the follower
 * when that changes (MSG_SNAP_PACE). On a kernel without preemption a woken
 * writer waits until a running snapshot thread leaves its syscall; with the
 * snapshot kept to one CPU (and the leader's other threads kept off it:
 * pace_others()) the writer finds the other one free. On separate
 * machines this costs the snapshot nothing (each side is one thread); when
 * both nodes share a machine it halves the snapshot's speed while writes go
 * on (docs/snapshot.md §6).
 */
#define SNAP_BUSY_MS 200	/* a commit this recent: the leader is serving writes */

struct pace {
	cpu_set_t all;	/* the thread's CPUs when the snapshot started */
	cpu_set_t last;	/* the last of them; empty: nothing to pace (one CPU, or unknown) */
	int one;	/* kept to one CPU now */
};

static void pace_init(struct pace *pc)
{
	pc->one = 0;
	CPU_ZERO(&pc->last);
	if (sched_getaffinity(0, sizeof(pc->all), &pc->all) < 0 || CPU_COUNT(&pc->all) < 2)
		return;
	for (int i = CPU_SETSIZE - 1; i >= 0; i--)
		if (CPU_ISSET(i, &pc->all)) {
			CPU_SET(i, &pc->last);
			break;
		}
}

/*
 * The node's other threads (its FUSE handlers above all) keep off the
 * snapshot's CPU while it is paced, and get all back after: a handler woken
 * on that CPU would wait there behind a snapshot syscall (PREEMPT_NONE),
 * with the other CPU free. A thread made while its maker was kept off
 * inherits that; one made during the first pass of giving back is there
 * for the second.
 */
static void pace_others(const struct pace *pc, int one, struct fring *ring)
{
	pid_t self = (pid_t)syscall(SYS_gettid);
	cpu_set_t rest;

	if (!CPU_COUNT(&pc->last))
		return;
	CPU_XOR(&rest, &pc->all, &pc->last);	/* last is one of all */
	for (int pass = 0; pass < (one ? 1 : 2); pass++) {
		DIR *d = opendir("/proc/self/task");
		struct dirent *de;
		if (!d)
			return;
		while ((de = readdir(d))) {
			pid_t tid = (pid_t)atoi(de->d_name);
			if (tid > 0 && tid != self)	/* one gone meanwhile: ESRCH */
				sched_setaffinity(tid, sizeof(cpu_set_t), one ? &rest : &pc->all);
		}
		closedir(d);
	}
	if (!one)
		fring_repin(ring);	/* each FUSE ring thread back to its own CPU */
}

/* Keeps the calling thread to the last of its CPUs (one), or gives it back all it had. */
static void pace_set(struct pace *pc, int one)
{
	if (one == pc->one)
		return;
	pc->one = one;
	if (CPU_COUNT(&pc->last) && sched_setaffinity(0, sizeof(cpu_set_t), one ? &pc->last : &pc->all) < 0)
		rlog(LOG_DEBUG, "unable to change the snapshot thread's CPUs: %s", strerror(errno));
}

/* ======================= LEADER ======================= */

struct have {
	int used;
	uint8_t id[FILE_ID_BYTES];
	uint64_t size;
	uint32_t n;
	const uint8_t (*d)[DIGEST_BYTES];
};

/*
 * Reading the tree past the page cache. On the bench VM a cold buffered read
 * costs the reader 1.4-1.9 s of CPU per GiB (filling the page cache: every
 * new page is a host fault there), against 0.05 s for O_DIRECT reads of 8
 * MiB into a reused buffer (0.6 s of waiting for the disk); the sender's
 * reads were two fifths of its time, and it is the busier end of a snapshot.
 * So what is not in the page cache already is read directly, a window at a
 * time, while a helper thread reads the file's next window (the kernel's
 * readahead did that for the cache); what is in the cache (the leader's
 * recent writes, the prefetched heads of small files) is read from there,
 * which is cheap and sees dirty pages. Either way the data is the file as it
 * was at some moment after the snapshot's position, which is all the replay
 * after it needs (§3). A file system without O_DIRECT reads through the
 * cache as before.
 */
#define SNAP_DIRECT_WINDOW (8u << 20)
#define SNAP_DIRECT_ALIGN 4096u
_Static_assert(SNAP_DIRECT_WINDOW % DIGEST_BLOCK == 0 && DIGEST_BLOCK % SNAP_DIRECT_ALIGN == 0,
	       "windows hold whole digest blocks, and those start where O_DIRECT may");

struct window {
	uint8_t *buf;		/* SNAP_DIRECT_WINDOW bytes, aligned; NULL: direct reads are off */
	int dfd;		/* the current file opened O_DIRECT, -1 if not (yet) */
	uint64_t off, len;	/* what buf holds of it */
	/* the helper: reads dfd at next into spare while the sender works (under mu) */
	pthread_t helper;
	int have_helper, stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint8_t *spare;		/* like buf */
	int busy;		/* a read of next is asked for or running */
	uint64_t next;
	ssize_t got;		/* its result: bytes, or -errno */
	uint64_t direct;	/* bytes read directly, for the log */
};

struct sender {
	struct repl *r;
	struct node *n;
	struct chan *c;
	struct peer *p;
	struct have *have;	/* open addressing by id, hcap slots */
	size_t hcap;
	uint8_t *manifest;	/* what the have entries point into */
	struct u64set sent;	/* ids sent: each object once, further names as links */
	uint8_t *buf;		/* SNAP_CHUNK + 8 */
	struct window win;	/* the file being sent, as read past the page cache */
	char path[PATH_MAX];
	uint64_t files, bytes;
	struct pace pace;
	unsigned pause_ms;		/* tests: REPFS_TEST_SNAP_PAUSE_MS after each directory listed */
	int paces;			/* the follower understands MSG_SNAP_PACE (HELLO_F_PACE) */
	uint64_t yields;		/* times it kept to one CPU */
	int64_t yield_ns, yield_since;	/* for how long in all; since when now */
};

/* Before each piece of the tree: is the leader serving writes? The follower hears of each change. */
static int sender_pace(struct sender *s)
{
	int64_t now = now_ns();
	int busy = now - __atomic_load_n(&s->n->last_commit_ns, __ATOMIC_RELAXED) < SNAP_BUSY_MS * 1000000LL;
	uint8_t b = (uint8_t)busy;

	if (!s->paces || busy == s->pace.one)
		return 0;	/* unchanged, or a follower that would not understand MSG_SNAP_PACE */
	pace_set(&s->pace, busy);
	pace_others(&s->pace, busy, __atomic_load_n(&s->n->ring, __ATOMIC_ACQUIRE));	/* the direct-read helper too: paced, the sender reads through the cache */
	if (busy) {
		s->yields++;
		s->yield_since = now;
	} else {
		s->yield_ns += now - s->yield_since;
	}
	pthread_mutex_lock(&s->r->mu);
	s->p->snap_yielding = busy;
	pthread_mutex_unlock(&s->r->mu);
	return chan_send(s->c, MSG_SNAP_PACE, &b, 1);
}

static const struct have *have_find(const struct sender *s, const uint8_t id[FILE_ID_BYTES])
{
	if (!s->hcap)
		return NULL;
	for (size_t j = key_of_id(id) % s->hcap;; j = (j + 1) % s->hcap) {
		if (!s->have[j].used)
			return NULL;
		if (!memcmp(s->have[j].id, id, FILE_ID_BYTES))
			return &s->have[j];
	}
}

/* Receives the follower's SNAP_HAVE messages into s->have. */
static int recv_manifest(struct sender *s)
{
	struct wbuf all = { 0 };
	size_t count = 0;
	int ret;

	for (;;) {
		uint8_t type;
		void *buf;
		size_t len;
		ret = chan_recv(s->c, &type, &buf, &len, SNAP_TIMEOUT_MS);
		if (ret != 1 || type != MSG_SNAP_HAVE) {
			ret = ret < 0 ? ret : -EPROTO;
			goto fail;
		}
		if (!len)
			break;
		wb_put(&all, buf, len);
	}
	if (all.err) {
		ret = all.err;
		goto fail;
	}
	/* two passes: count, then index */
	for (int pass = 0; pass < 2; pass++) {
		struct rbuf rb = { all.p, all.len, 0, 0 };
		while (rb.off < rb.len && !rb.err) {
			const uint8_t *id = rb_get(&rb, FILE_ID_BYTES);
			uint64_t size = rb_u(&rb, 8);
			uint32_t n = (uint32_t)rb_u(&rb, 4);
			const void *d = rb_get(&rb, (size_t)n * DIGEST_BYTES);
			if (rb.err)
				break;
			if (pass == 0) {
				count++;
				continue;
			}
			for (size_t j = key_of_id(id) % s->hcap;; j = (j + 1) % s->hcap) {
				struct have *h = &s->have[j];
				if (!h->used || !memcmp(h->id, id, FILE_ID_BYTES)) {
					h->used = 1;
					memcpy(h->id, id, FILE_ID_BYTES);
					h->size = size;
					h->n = n;
					h->d = d;
					break;
				}
			}
		}
		if (rb.err) {
			ret = rb.err;
			goto fail;
		}
		if (pass == 0 && count) {
			s->hcap = count * 2 + 1;
			s->have = calloc(s->hcap, sizeof(*s->have));
			if (!s->have) {
				ret = -ENOMEM;
				goto fail;
			}
		}
	}
	s->manifest = all.p;
	return 0;
fail:
	free(all.p);
	return ret;
}

/*
 * The user-visible xattrs of fd (or, if -1, of path itself, not followed; or
 * none if both are missing), appended to b as count u16, {name, value}*.
 */
static void put_xattrs(struct wbuf *b, int fd, const char *path)
{
	char *list = malloc(XATTR_LIST_MAX);
	ssize_t len = !list ? 0 : fd >= 0 ? flistxattr(fd, list, XATTR_LIST_MAX)
			       : path ? llistxattr(path, list, XATTR_LIST_MAX) : 0;
	size_t countpos = b->len;
	uint16_t count = 0;

	if (!list || (len < 0 && errno != ENOTSUP && errno != ENOENT)) {
		/* an object's xattrs unread would go as none, and the follower drop its own */
		b->err = !list ? -ENOMEM : -errno;
		free(list);
		return;
	}

	wb_u16(b, 0);
	for (char *p = list; len > 0 && p < list + len; p += strlen(p) + 1) {
		uint8_t val[65536];
		ssize_t vl;
		if (store_hidden_xattr(p) ||
		    (vl = fd >= 0 ? fgetxattr(fd, p, val, sizeof(val)) : lgetxattr(path, p, val, sizeof(val))) < 0)
			continue;
		wb_u16(b, (uint16_t)strlen(p));
		wb_put(b, p, strlen(p));
		wb_u32(b, (uint32_t)vl);
		wb_put(b, val, (size_t)vl);
		count++;
	}
	if (!b->err)
		memcpy(b->p + countpos, &count, 2);
	free(list);
}

static int send_range(struct sender *s, uint8_t type, uint64_t off, uint64_t len)
{
	uint8_t m[16];

	repl_put64(m, off);
	repl_put64(m + 8, len);
	return chan_send(s->c, type, m, sizeof(m));
}

static void *helper_main(void *arg)
{
	struct window *w = arg;

	thread_name("repfs-snaphelp");
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->stop && !(w->busy && w->got == INT64_MIN))
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop)
			break;
		int fd = w->dfd;
		uint64_t off = w->next;
		pthread_mutex_unlock(&w->mu);
		ssize_t n = pread(fd, w->spare, SNAP_DIRECT_WINDOW, (off_t)off);
		pthread_mutex_lock(&w->mu);
		w->got = n < 0 ? -errno : n;
		pthread_cond_broadcast(&w->cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

/* Sets w up: direct reads with a helper, or (on any failure) reads through the cache. */
static void window_init(struct window *w)
{
	w->dfd = -1;
	if (posix_memalign((void **)&w->buf, SNAP_DIRECT_ALIGN, SNAP_DIRECT_WINDOW) ||
	    posix_memalign((void **)&w->spare, SNAP_DIRECT_ALIGN, SNAP_DIRECT_WINDOW))
		goto off;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	if (pthread_create(&w->helper, NULL, helper_main, w)) {
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		goto off;
	}
	w->have_helper = 1;
	return;
off:
	free(w->buf);
	free(w->spare);
	w->buf = w->spare = NULL;
}

/* Waits until the helper is idle; returns what its last read got (INT64_MIN: none asked for). */
static ssize_t helper_wait(struct window *w)
{
	ssize_t got;

	if (!w->have_helper)
		return INT64_MIN;
	pthread_mutex_lock(&w->mu);
	while (w->busy && w->got == INT64_MIN)
		pthread_cond_wait(&w->cv, &w->mu);
	got = w->busy ? w->got : INT64_MIN;
	w->busy = 0;
	pthread_mutex_unlock(&w->mu);
	return got;
}

static void helper_ask(struct window *w, uint64_t next)
{
	if (!w->have_helper)
		return;
	pthread_mutex_lock(&w->mu);
	w->busy = 1;
	w->next = next;
	w->got = INT64_MIN;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/* Done with the current file (the helper no longer reads it). */
static void window_drop(struct window *w)
{
	helper_wait(w);
	if (w->dfd >= 0)
		close(w->dfd);
	w->dfd = -1;
	w->off = w->len = 0;
}

static void window_free(struct window *w)
{
	window_drop(w);
	if (w->have_helper) {
		pthread_mutex_lock(&w->mu);
		w->stop = 1;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->helper, NULL);
		pthread_mutex_destroy(&w->mu);
		pthread_cond_destroy(&w->cv);
		w->have_helper = 0;
	}
	free(w->buf);
	free(w->spare);
	w->buf = w->spare = NULL;
}

/* Loads the window of the current file at aoff (the helper's read if it has it); 0, or -errno. */
static int window_load(struct window *w, uint64_t aoff)
{
	uint64_t next = w->next;
	ssize_t n = helper_wait(w);

	if (n != INT64_MIN && next == aoff && n >= 0) {
		uint8_t *t = w->buf;	/* the helper read it ahead: take its buffer */
		w->buf = w->spare;
		w->spare = t;
	} else {
		n = pread(w->dfd, w->buf, SNAP_DIRECT_WINDOW, (off_t)aoff);
		if (n < 0)
			return -errno;
	}
	w->off = aoff;
	w->len = (uint64_t)n;
	w->direct += (uint64_t)n;
	if (n == SNAP_DIRECT_WINDOW)
		helper_ask(w, aoff + SNAP_DIRECT_WINDOW);	/* the file goes on: read on ahead */
	return 0;
}

/*
 * Up to want bytes of fd at off into dst: from the window, else from the
 * page cache if they are there, else through the next window. Returns the
 * bytes read (fewer at the end of the file or of what the cache holds; 0 at
 * its end) or -errno.
 */
static ssize_t read_block(struct window *w, int cached, int fd, uint8_t *dst, size_t want, uint64_t off)
{
	struct iovec iov = { dst, want };
	ssize_t n;

	if (!(w->len && off >= w->off && off < w->off + w->len)) {
		if (!w->buf || cached)
			return (n = pread(fd, dst, want, (off_t)off)) < 0 ? -errno : n;
		n = preadv2(fd, &iov, 1, (off_t)off, RWF_NOWAIT);
		if (n == (ssize_t)want)
			return n;	/* all of it in the page cache */
		if (n < 0 && errno != EAGAIN)
			return -errno;
		/*
		 * Not (all) in the page cache: read directly, in windows of whole
		 * digest blocks -- a block read in two pieces is sent whole
		 * (send_content() compares only whole blocks), which cost a resync
		 * one needless block per window.
		 */
		if (w->dfd < 0) {
			char proc[64];
			snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
			w->dfd = open(proc, O_RDONLY | O_DIRECT | O_NOATIME | O_CLOEXEC);
			if (w->dfd < 0 && errno == EPERM)	/* O_NOATIME: not the owner (never as root) */
				w->dfd = open(proc, O_RDONLY | O_DIRECT | O_CLOEXEC);
		}
		if (w->dfd < 0 || window_load(w, off - off % DIGEST_BLOCK)) {
			/* no O_DIRECT here (EINVAL): through the cache, for the rest of the snapshot */
			rlog(LOG_DEBUG, "snapshot: reading through the page cache: %s", strerror(errno));
			window_free(w);
			return (n = pread(fd, dst, want, (off_t)off)) < 0 ? -errno : n;
		}
		if (off >= w->off + w->len)
			return 0;	/* the file ends before off */
	}
	n = (ssize_t)(w->off + w->len - off < want ? w->off + w->len - off : want);
	memcpy(dst, w->buf + (off - w->off), (size_t)n);
	return n;
}

/* Sends a file's content: what the follower lacks as data, what it has as SAME, holes as holes. */
static int send_content(struct sender *s, int fd, uint64_t size, const uint8_t id[FILE_ID_BYTES])
{
	const struct have *h = have_find(s, id);
	uint64_t off = 0, same_off = 0, same_len = 0, data_off = 0, data_len = 0;
	int ret = 0;

#define FLUSH_SAME()                                                               \
	do {                                                                       \
		if (same_len && (ret = send_range(s, MSG_SNAP_SAME, same_off, same_len))) \
			return ret;                                                \
		same_len = 0;                                                      \
	} while (0)
#define FLUSH_DATA()                                                                    \
	do {                                                                            \
		if (data_len) {                                                         \
			if ((ret = sender_pace(s)))                                     \
				return ret;                                             \
			repl_put64(s->buf, data_off);                                  \
			if ((ret = chan_send(s->c, MSG_SNAP_DATA, s->buf, 8 + data_len))) \
				return ret;                                             \
			s->bytes += data_len;                                           \
		}                                                                       \
		data_len = 0;                                                           \
	} while (0)

	while (off < size) {
		/* the file's layout as it is: data extents and holes, as SEEK_DATA/SEEK_HOLE see them */
		off_t data = lseek(fd, (off_t)off, SEEK_DATA), hole;
		uint64_t end;
		if (data < 0 && errno != ENXIO)
			return -errno;
		if (data < 0 || (uint64_t)data > off) {
			end = data < 0 || (uint64_t)data > size ? size : (uint64_t)data;
			FLUSH_SAME();
			FLUSH_DATA();
			if ((ret = send_range(s, MSG_SNAP_HOLE, off, end - off)))
				return ret;
			off = end;
			continue;
		}
		hole = lseek(fd, (off_t)off, SEEK_HOLE);
		end = hole < 0 || (uint64_t)hole > size ? size : (uint64_t)hole;
		while (off < end) {
			/* one 64 KiB block, or the part of it inside this extent */
			uint64_t bend = (off / DIGEST_BLOCK + 1) * DIGEST_BLOCK, want;
			ssize_t got;
			want = (bend < end ? bend : end) - off;
			if (data_len + want > SNAP_CHUNK)
				FLUSH_DATA();
			got = read_block(&s->win, s->pace.one, fd, s->buf + 8 + data_len, (size_t)want, off);
			if (got < 0)
				return (int)got;
			if (got == 0)
				goto done;	/* shrank meanwhile: the records after S cut it */
			/* a whole block the follower holds with the same digest: it copies it */
			if (h && off % DIGEST_BLOCK == 0 && off / DIGEST_BLOCK < h->n && (uint64_t)got == want &&
			    (want == DIGEST_BLOCK || off + want == size) && off + want <= h->size) {
				XXH128_canonical_t c;
				XXH128_canonicalFromHash(&c, XXH3_128bits(s->buf + 8 + data_len, (size_t)got));
				if (!memcmp(c.digest, h->d[off / DIGEST_BLOCK], DIGEST_BYTES)) {
					FLUSH_DATA();
					if (same_len && (same_off + same_len != off || same_len >= SNAP_SAME_MAX))
						FLUSH_SAME();
					if (!same_len)
						same_off = off;
					same_len += (uint64_t)got;
					off += (uint64_t)got;
					continue;
				}
			}
			FLUSH_SAME();
			if (!data_len)
				data_off = off;
			data_len += (uint64_t)got;
			off += (uint64_t)got;
		}
	}
done:
	FLUSH_SAME();
	FLUSH_DATA();
#undef FLUSH_SAME
#undef FLUSH_DATA
	return 0;
}

/* An entry of a directory listing: what was at the name when the directory was listed. */
struct lent {
	char *name;
	uint8_t id[FILE_ID_BYTES];
	mode_t fmt;		/* S_IFMT bits */
	int fd;			/* directories: opened while listing (-1: open by name later) */
};

/*
 * Subdirectories opened while listing, by every snapshot being sent: at
 * most LIST_MAX_DIRFDS, and a quarter of the daemon's share of its open
 * files (ino_fd_share()); beyond, by name. Each listing used to open up to
 * 1,024, one listing per level of the walk: under a low limit the opens of
 * the files after them failed, and the snapshot never finished.
 */
#define LIST_MAX_DIRFDS 1024
static unsigned listing_fds;	/* atomic */

static unsigned listing_fds_max(void)
{
	unsigned k = ino_fd_share() / 4;

	return k < LIST_MAX_DIRFDS ? k : LIST_MAX_DIRFDS;
}

/* A subdirectory's descriptor, if the budget has one left (-1: open it by name later). */
static int listing_fd_open(int dfd, const char *name, unsigned most)
{
	int fd = -1;

	if (__atomic_add_fetch(&listing_fds, 1, __ATOMIC_RELAXED) <= most)
		fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		__atomic_sub_fetch(&listing_fds, 1, __ATOMIC_RELAXED);
	return fd;
}

static void listing_fd_close(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		__atomic_sub_fetch(&listing_fds, 1, __ATOMIC_RELAXED);
		*fd = -1;
	}
}

static void free_listing(struct lent *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
		listing_fd_close(&e[i].fd);
	}
	free(e);
}

/*
 * Directory fd as one consistent listing: names, ids and types as they were
 * at one moment (readdir during a rename may return a name twice or not at
 * all), with each subdirectory opened, so that it is sent as it is even if
 * it moves before the walk gets there. A listing during which no name
 * changed anywhere (node->ns_changes) is one; after two raced ones, the
 * listing is made under the sequencer (writes wait a few microseconds per
 * name).
 */
static int list_dir_once(struct node *n, int fd, int locked, struct lent **out, size_t *nout, uint64_t *at)
{
	DIR *d = opendir_at(fd, ".");
	struct lent *e = NULL;
	size_t ne = 0, cap = 0;
	struct dirent *de;
	unsigned most = listing_fds_max();
	int ret = 0;

	*out = NULL;
	*nout = 0;
	if (!d)
		return -errno;
	if (locked)
		node_lock_settled(n);
	*at = locked ? n->applied : node_applied(n);
	while (!ret && (de = readdir(d))) {
		struct stat sb;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if (ne == cap) {
			struct lent *g = realloc(e, (cap = cap ? cap * 2 : 64) * sizeof(*e));
			if (!g) {
				ret = -ENOMEM;
				break;
			}
			e = g;
		}
		memset(&e[ne], 0, sizeof(e[ne]));
		e[ne].fd = -1;
		e[ne].fmt = sb.st_mode & S_IFMT;
		e[ne].name = strdup(de->d_name);
		if (!e[ne].name) {
			ret = -ENOMEM;
			break;
		}
		if (store_getxattr_at(dirfd(d), de->d_name, ID_XATTR, e[ne].id, FILE_ID_BYTES) != FILE_ID_BYTES)
			memset(e[ne].id, 0, FILE_ID_BYTES);
		if (S_ISDIR(sb.st_mode))
			e[ne].fd = listing_fd_open(dirfd(d), de->d_name, most);
		ne++;
	}
	if (locked)
		pthread_mutex_unlock(&n->seq_lock);
	closedir(d);
	if (ret) {
		free_listing(e, ne);
		return ret;
	}
	*out = e;
	*nout = ne;
	return 0;
}

/* *at: the seq of the last record whose change of names the listing reflects. */
static int list_dir(struct node *n, int fd, struct lent **out, size_t *nout, uint64_t *at)
{
	for (int attempt = 0;; attempt++) {
		uint64_t c0 = __atomic_load_n(&n->ns_changes, __ATOMIC_SEQ_CST);
		int ret = list_dir_once(n, fd, attempt == 2, out, nout, at);
		/* an odd count: a change of names was under way when the listing began */
		if (ret || attempt == 2 || (!(c0 & 1) && __atomic_load_n(&n->ns_changes, __ATOMIC_SEQ_CST) == c0))
			return ret;
		free_listing(*out, *nout);	/* names changed meanwhile: again */
	}
}

/*
 * Sends the object the listing entry e names (s->path is its path in the
 * tree); recurses into directories. The object may have moved since the
 * listing: then it is found through the id index (a file, symlink or special
 * file) or its descriptor (a directory), and sent under the listed name --
 * the records after S move it on the follower as they moved it here. If it
 * died meanwhile, an empty stand-in goes: the record that removed it removes
 * that on the follower.
 */
/*
 * Reading a cold tree, the sender would wait for the disk at every small
 * file. So it asks for the start of the files some entries ahead of the one
 * it sends (the kernel reads them meanwhile), and for the rest of a large
 * file the kernel's own readahead takes over.
 */
#define SNAP_PREFETCH 32		/* entries ahead */
#define SNAP_PREFETCH_BYTES (128u << 10)	/* of each file */

static void prefetch(int dirfd, const struct lent *e)
{
	int f;

	if (e->fmt != S_IFREG)
		return;
	f = openat(dirfd, e->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (f < 0)
		return;	/* gone or moved: send_object() finds out */
	posix_fadvise(f, 0, SNAP_PREFETCH_BYTES, POSIX_FADV_WILLNEED);
	close(f);
}

static int send_object(struct sender *s, int parentfd, const struct lent *e)
{
	struct lent *list = NULL;	/* a directory's, listed before its entry goes */
	size_t nlist = 0;
	uint64_t listed_at = 0;
	struct wbuf b = { 0 };
	struct stat sb;
	uint8_t id[FILE_ID_BYTES], kind;
	char target[PATH_MAX + 1], hex[2 * FILE_ID_BYTES + 1], xpath[64 + NAME_MAX + 1];
	const char *name = e->name;
	ssize_t tlen = 0;
	int fd = -1, ret = 0, standin = 0;
	size_t plen = strlen(s->path);

	if ((ret = sender_pace(s)))
		return ret;
	memcpy(id, e->id, FILE_ID_BYTES);
	if (e->fmt == S_IFDIR) {
		fd = e->fd >= 0 ? dup(e->fd) : openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb) < 0) {
			if (fd >= 0)
				close(fd);
			return errno == ENOENT ? 0 : -errno;	/* gone meanwhile: its records say so */
		}
	} else {
		uint8_t now[FILE_ID_BYTES];
		if (store_getxattr_at(parentfd, name, ID_XATTR, now, FILE_ID_BYTES) != FILE_ID_BYTES ||
		    memcmp(now, id, FILE_ID_BYTES)) {
			/* moved or gone since the listing: the index holds it by id while it lives */
			store_id_hex(id, hex);
			parentfd = store_indexfd(s->n->store);
			name = hex;
		}
		if (fstatat(parentfd, name, &sb, AT_SYMLINK_NOFOLLOW) < 0 || (sb.st_mode & S_IFMT) != e->fmt) {
			standin = 1;
			memset(&sb, 0, sizeof(sb));
			sb.st_mode = e->fmt | 0600;
		} else if (S_ISREG(sb.st_mode)) {
			fd = openat(parentfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0 && (errno == EMFILE || errno == ENFILE))
				return -errno;	/* alive, and not ours to send as a stand-in: the snapshot retries */
			if (fd < 0 || fstat(fd, &sb) < 0) {
				standin = 1;
				memset(&sb, 0, sizeof(sb));
				sb.st_mode = e->fmt | 0600;
			}
		}
	}
	kind = S_ISDIR(sb.st_mode) ? KIND_DIR : S_ISREG(sb.st_mode) ? KIND_FILE : S_ISLNK(sb.st_mode) ? KIND_SYMLINK
												  : KIND_SPECIAL;
	if (set_has(&s->sent, key_of_id(id))) {
		/*
		 * Seen before under another name: a hard link, or a file moved from a
		 * directory listed earlier. Either way the listing holds this name, and
		 * the follower gets it too (a link), so that its tree is the listings:
		 * the replay then takes away whichever name the records after the
		 * listings took away. Going by the link count now instead lost a file
		 * whose first-listed name was unlinked after the listing and before
		 * this name came (a link then an unlink, seen as a move: the replay
		 * took the only name). The same holds when the file died after the
		 * listing (a stand-in now): without this name a rename of it in the
		 * replay found nothing to move, and the name it should have replaced
		 * kept an object the leader no longer had there. A directory cannot
		 * be met twice but by a move, which the replay's rename does. A
		 * FIFO, socket, device or symlink can have hard links as well as
		 * a file (until 2026-11-29 their other names were not sent).
		 */
		if (kind == KIND_DIR)
			goto out;
		kind = KIND_LINK;
	} else if ((ret = set_add(&s->sent, key_of_id(id)))) {
		goto out;
	}
	if (kind == KIND_SYMLINK) {
		tlen = standin ? -1 : readlinkat(parentfd, name, target, PATH_MAX);
		if (tlen <= 0) {
			/* a stand-in (it dies in the records after S): any target will do */
			target[0] = '.';
			tlen = 1;
		}
	}
	wb_put(&b, &kind, 1);
	wb_put(&b, id, FILE_ID_BYTES);
	wb_u32(&b, sb.st_mode);
	wb_u32(&b, sb.st_uid);
	wb_u32(&b, sb.st_gid);
	wb_u64(&b, sb.st_rdev);
	wb_u64(&b, (uint64_t)sb.st_size);
	wb_u64(&b, (uint64_t)ns_of_ts(sb.st_atim));
	wb_u64(&b, (uint64_t)ns_of_ts(sb.st_mtim));
	if (kind == KIND_DIR && (ret = list_dir(s->n, fd, &list, &nlist, &listed_at)))
		goto out;
	if (kind == KIND_DIR && s->pause_ms)
		usleep(s->pause_ms * 1000);	/* a slow walk, for the tests of moves during it */
	wb_u64(&b, listed_at);
	wb_u16(&b, (uint16_t)plen);
	wb_put(&b, s->path, plen);
	wb_u16(&b, (uint16_t)tlen);
	wb_put(&b, target, (size_t)tlen);
	if (kind == KIND_SYMLINK || kind == KIND_SPECIAL) {
		/*
		 * Not opened: their xattrs (a FIFO's ACL) through the id index,
		 * which holds them while they live; where it does not (a tree
		 * from before it, one a power loss left behind), by the name,
		 * kept only if the name still holds the object stat'ed.
		 */
		struct stat at_idx, again;
		int by_idx;
		size_t at = b.len;
		store_id_hex(id, hex);
		by_idx = fstatat(store_indexfd(s->n->store), hex, &at_idx, AT_SYMLINK_NOFOLLOW) == 0 &&
			 at_idx.st_ino == sb.st_ino && at_idx.st_dev == sb.st_dev;
		if (by_idx)
			snprintf(xpath, sizeof(xpath), "/proc/self/fd/%d/%s", store_indexfd(s->n->store), hex);
		else
			snprintf(xpath, sizeof(xpath), "/proc/self/fd/%d/%s", parentfd, name);
		put_xattrs(&b, -1, standin ? NULL : xpath);
		if (!standin && !by_idx && !b.err &&
		    (fstatat(parentfd, name, &again, AT_SYMLINK_NOFOLLOW) < 0 || again.st_ino != sb.st_ino ||
		     again.st_dev != sb.st_dev)) {
			b.err = -EAGAIN;	/* replaced meanwhile: the snapshot is tried again */
			b.len = at;
		}
	} else {
		put_xattrs(&b, kind == KIND_LINK ? -1 : fd, NULL);
	}
	if (b.err) {
		ret = b.err;
		goto out;
	}
	ret = chan_send(s->c, MSG_SNAP_ENTRY, b.p, b.len);
	if (ret)
		goto out;
	s->files++;
	if (kind == KIND_FILE && fd >= 0) {
		posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);	/* read once, front to back */
		ret = send_content(s, fd, (uint64_t)sb.st_size, id);
		window_drop(&s->win);
	}
	pthread_mutex_lock(&s->r->mu);
	s->p->snap_files = s->files;
	s->p->snap_bytes_sent = s->bytes;
	pthread_mutex_unlock(&s->r->mu);
	if (ret || kind != KIND_DIR)
		goto out;
	{
		for (size_t i = 0; i < nlist && i < SNAP_PREFETCH; i++)
			prefetch(fd, &list[i]);
		for (size_t i = 0; !ret && i < nlist; i++) {
			size_t nl = strlen(list[i].name);
			if (i + SNAP_PREFETCH < nlist)
				prefetch(fd, &list[i + SNAP_PREFETCH]);
			if (plen + 1 + nl >= sizeof(s->path)) {
				ret = -ENAMETOOLONG;
				break;
			}
			snprintf(s->path + plen, sizeof(s->path) - plen, "%s%s", plen ? "/" : "", list[i].name);
			ret = send_object(s, fd, &list[i]);
			s->path[plen] = 0;
			listing_fd_close(&list[i].fd);	/* done with it: keep the open descriptors few */
		}
	}
out:
	free_listing(list, nlist);
	free(b.p);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Counts the tree's objects and file bytes, for the follower's progress. */
static void count_tree(int dirfd, uint64_t *files, uint64_t *bytes)
{
	DIR *d = opendir_at(dirfd, ".");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct stat sb;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		(*files)++;
		if (S_ISREG(sb.st_mode))
			*bytes += (uint64_t)sb.st_size;
		if (S_ISDIR(sb.st_mode)) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				count_tree(sub, files, bytes);
				close(sub);
			}
		}
	}
	closedir(d);
}

int snap_serve(struct repl *r, struct chan *c, struct peer *p, uint64_t *at_seq, uint64_t *until)
{
	struct node *n = r->n;
	struct sender s = { .r = r, .n = n, .c = c, .p = p, .win = { .dfd = -1 } };
	uint8_t begin[64 + CRYPTO_MAC_BYTES], mac[CRYPTO_MAC_BYTES], end[8];
	uint64_t files = 1, bytes = 0, epoch;
	int64_t t0 = now_ns();
	struct pos at;
	int ret;

	/* S first: the records after it are kept until the follower has them */
	node_lock_settled(n);	/* every record up to S in the tree (fs/node.c, writes applied behind) */
	if (n->fault) {
		/* a record it answered may be missing from the tree (a failed apply behind) */
		pthread_mutex_unlock(&n->seq_lock);
		rlog(LOG_WARNING, "not sending a snapshot to '%s': this leader refuses writes (see above)", p->name);
		return -EIO;
	}
	at = oplog_last(n->log);
	oplog_last_mac(n->log, mac);
	epoch = n->st.epoch;
	pthread_mutex_unlock(&n->seq_lock);
	pthread_mutex_lock(&r->mu);
	p->snap_from = at.seq + 1;
	p->snapshotting = 1;
	p->needs_resync = 1;	/* counts for no sync mode until it follows */
	p->snap_files = p->snap_bytes_sent = 0;
	pthread_mutex_unlock(&r->mu);
	snap_nice(1);
	pace_init(&s.pace);
	pthread_mutex_lock(&r->mu);
	s.paces = p->snap_paces;
	pthread_mutex_unlock(&r->mu);
	if (getenv("REPFS_TEST_SNAP_PAUSE_MS"))
		s.pause_ms = (unsigned)atoi(getenv("REPFS_TEST_SNAP_PAUSE_MS"));
	count_tree(store_rootfd(n->store), &files, &bytes);
	rlog(LOG_NOTICE, "sending a snapshot at seq %" PRIu64 " to '%s' (%" PRIu64 " objects, %" PRIu64 " bytes)",
	     at.seq, p->name, files, bytes);
	repl_put64(begin, at.epoch);
	repl_put64(begin + 8, at.seq);
	memcpy(begin + 16, mac, CRYPTO_MAC_BYTES);
	repl_put64(begin + 16 + CRYPTO_MAC_BYTES, epoch);
	repl_put64(begin + 24 + CRYPTO_MAC_BYTES, files);
	repl_put64(begin + 32 + CRYPTO_MAC_BYTES, bytes);
	ret = chan_send(c, MSG_SNAP_BEGIN, begin, 40 + CRYPTO_MAC_BYTES);
	if (!ret)
		ret = recv_manifest(&s);
	s.buf = malloc(SNAP_CHUNK + 8);
	if (!ret && !s.buf)
		ret = -ENOMEM;
	window_init(&s.win);
	if (!ret) {
		struct lent root = { .name = (char *)".", .fmt = S_IFDIR, .fd = -1 };
		memcpy(root.id, store_root_id, FILE_ID_BYTES);
		s.path[0] = 0;
		ret = send_object(&s, store_rootfd(n->store), &root);
	}
	*until = node_applied(n);
	if (!ret) {
		repl_put64(end, *until);
		ret = chan_send(c, MSG_SNAP_END, end, sizeof(end));
	}
	snap_nice(0);
	if (s.pace.one) {
		s.yield_ns += now_ns() - s.yield_since;
		pace_others(&s.pace, 0, __atomic_load_n(&s.n->ring, __ATOMIC_ACQUIRE));
	}
	pace_set(&s.pace, 0);
	pthread_mutex_lock(&r->mu);
	p->snapshotting = 0;
	p->snap_yielding = 0;
	pthread_mutex_unlock(&r->mu);
	if (s.yields)
		rlog(LOG_NOTICE, "snapshot for '%s': kept to one CPU %" PRIu64 " time(s), %.1f s in all, while this node served writes",
		     p->name, s.yields, (double)s.yield_ns / 1e9);
	if (ret)
		rlog(LOG_WARNING, "snapshot for '%s' ended early: %s", p->name, chan_strerror(ret));
	else
		rlog(LOG_NOTICE, "snapshot for '%s' sent: %" PRIu64 " objects, %" PRIu64 " bytes of data in %.1f s "
				 "(%" PRIu64 " bytes read past the page cache); it replays from seq %" PRIu64,
		     p->name, s.files, s.bytes, (double)(now_ns() - t0) / 1e9, s.win.direct, at.seq + 1);
	free(s.buf);
	window_free(&s.win);
	free(s.have);
	free(s.manifest);
	free(s.sent.k);
	*at_seq = at.seq;
	return ret;
}

/* ======================= FOLLOWER ======================= */

struct dirtime {
	char *path;
	struct timespec ts[2];
};

struct receiver {
	struct repl *r;
	struct node *n;
	struct chan *c;
	struct store *stg;	/* DATADIR/tree.snap */
	int stgfd;
	struct u64set paths, ids;	/* what this snapshot sent */
	int empty;		/* staging was made empty by this attempt: a new name or id cannot be there */
	uint64_t held_old;	/* files of the old tree offered to the leader (none: no SAME refers to it) */
	/* the file being received */
	int fd, ref, fresh;
	uint64_t dirty;		/* bytes written since the last writeback */
	uint64_t small_dirty;	/* small files' bytes left to the kernel's writeback since the last syncfs */
	int paced;		/* kept to one CPU (MSG_SNAP_PACE): the leader is serving writes */
	uint64_t size;
	struct timespec ts[2];
	uid_t uid;
	gid_t gid;
	mode_t mode;
	uint8_t *xattrs;	/* its xattrs as sent (set by finish_file()) */
	size_t xlen, xcap;
	struct dirtime *dirs;
	size_t ndirs, capdirs;
};

/* Removes whatever is at rel in the staging tree. */
static int remove_at(struct receiver *v, const char *rel)
{
	char abs[PATH_MAX * 2];
	struct stat sb;

	if (fstatat(v->stgfd, rel, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(sb.st_mode))
		return unlinkat(v->stgfd, rel, 0) < 0 ? -errno : 0;
	snprintf(abs, sizeof(abs), "%s/%s", store_path(v->stg), rel);
	return remove_all(abs);
}

/* 1 if rel in staging is an object of type fmt with id, else 0 (and whatever was there is gone). */
static int keep_or_clear(struct receiver *v, const char *rel, mode_t fmt, const uint8_t id[FILE_ID_BYTES])
{
	uint8_t have[FILE_ID_BYTES];
	struct stat sb;

	if (fstatat(v->stgfd, store_rel(rel), &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((sb.st_mode & S_IFMT) == fmt && store_get_id(v->stg, rel, have) == 0 &&
	    !memcmp(have, id, FILE_ID_BYTES))
		return 1;
	if (!*rel)
		return 1;	/* the root stays: it gets the leader's attributes */
	return remove_at(v, rel);
}

static int set_xattrs(int fd, const char *path, struct rbuf *rb, int exact)
{
	uint16_t count = (uint16_t)rb_u(rb, 2);
	char *names = malloc(XATTR_LIST_MAX), *list = malloc(XATTR_LIST_MAX);
	size_t nlen = 0;
	int ret = 0;

	if (!names || !list) {
		free(names);
		free(list);
		return -ENOMEM;
	}

	for (uint16_t i = 0; i < count && !rb->err; i++) {
		uint16_t kl = (uint16_t)rb_u(rb, 2);
		const char *k = rb_get(rb, kl);
		uint32_t vl = (uint32_t)rb_u(rb, 4);
		const void *val = rb_get(rb, vl);
		char name[XATTR_NAME_MAX + 1];
		if (rb->err || kl > XATTR_NAME_MAX) {
			ret = -EBADMSG;
			goto out;
		}
		memcpy(name, k, kl);
		name[kl] = 0;
		if (store_hidden_xattr(name))
			continue;
		if ((fd >= 0 ? fsetxattr(fd, name, val, vl, 0) : lsetxattr(path, name, val, vl, 0)) < 0)
			ret = -errno;
		if (nlen + kl + 1 <= XATTR_LIST_MAX) {
			memcpy(names + nlen, name, kl + 1);
			nlen += kl + 1;
		} else {
			exact = 0;	/* names not noted: nothing is dropped rather than one of the leader's */
		}
	}
	if (exact) {
		/* drop what the leader has not: kept from an earlier attempt, or inherited (a default ACL) */
		ssize_t len = fd >= 0 ? flistxattr(fd, list, XATTR_LIST_MAX) : llistxattr(path, list, XATTR_LIST_MAX);
		for (char *p = list; len > 0 && p < list + len; p += strlen(p) + 1) {
			int found = 0;
			for (char *q = names; q < names + nlen; q += strlen(q) + 1)
				found |= !strcmp(p, q);
			if (!found && !store_hidden_xattr(p))
				(void)(fd >= 0 ? fremovexattr(fd, p) : lremovexattr(path, p));
		}
	}
out:
	free(names);
	free(list);
	return ret;
}

/* Finishes the file being received: owner, mode, times. */
static int finish_file(struct receiver *v)
{
	int ret = 0;

	if (v->fd < 0)
		return 0;
	if (fchown(v->fd, v->uid, v->gid) < 0 || fchmod(v->fd, v->mode & 07777) < 0)
		ret = -errno;
	/*
	 * Its xattrs last: a write into the file, and the chown, would drop a
	 * security.capability set before them (the kernel does, for root too).
	 */
	if (!ret) {
		struct rbuf rb = { v->xattrs, v->xlen, 0, 0 };
		ret = set_xattrs(v->fd, NULL, &rb, 1);
	}
	if (!ret && futimens(v->fd, v->ts) < 0)
		ret = -errno;
	/*
	 * See writeback(). Small files are left to the kernel, which writes many
	 * in one batch -- unless the leader is serving writes: then this thread,
	 * kept to one CPU, starts their writeback itself rather than leave it to
	 * the kernel's flusher threads, which run on any CPU.
	 */
	if (v->dirty >= SNAP_WRITEBACK_FILE || (v->paced && v->dirty)) {
		sync_file_range(v->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	} else if ((v->small_dirty += v->dirty) >= SNAP_SMALL_DIRTY_MAX) {
		syncfs(v->stgfd);
		v->small_dirty = 0;
	}
	v->dirty = 0;
	close(v->fd);
	if (v->ref >= 0 && v->ref != v->fd)
		close(v->ref);
	v->fd = v->ref = -1;
	return ret;
}

/* Writes buf[0..len) at off (holes are the leader's SNAP_HOLE ranges, never zero bytes it sent). */

/*
 * Starts the writeback of what the snapshot wrote into the current file, a
 * window at a time (and of each large file as it is finished), without
 * waiting: its dirty pages never pile up to the kernel's limit, where every
 * writer of the machine -- a leader on the same disk too -- would be
 * throttled. Small files are not kicked one by one (a bio and a device
 * notification each: a tenth of the receiver's time for 10,000 files of
 * 4 KiB); the kernel writes them in batches, and a syncfs every
 * SNAP_SMALL_DIRTY_MAX of them bounds what waits (well under the kernel's
 * background limit, a tenth of the memory, on any machine with 1 GiB).
 */
static void writeback(struct receiver *v, size_t len)
{
	v->dirty += len;
	if (v->dirty < SNAP_WRITEBACK)
		return;
	v->dirty = 0;
	sync_file_range(v->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
}

static int write_all(struct receiver *v, const uint8_t *buf, size_t len, uint64_t off)
{
	writeback(v, len);
	while (len) {
		ssize_t n = pwrite(v->fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* SAME: copies the range from the follower's old copy (nothing to do if the file is that copy). */
static int copy_same(struct receiver *v, uint64_t off, uint64_t len)
{
	uint8_t *buf;
	int ret = 0;

	if (v->ref < 0)
		return -EPROTO;
	if (v->ref == v->fd)
		return 0;
	buf = malloc(SNAP_CHUNK);
	if (!buf)
		return -ENOMEM;
	while (len && !ret) {
		size_t want = len < SNAP_CHUNK ? (size_t)len : SNAP_CHUNK;
		ssize_t n = pread(v->ref, buf, want, (off_t)off);
		if (n <= 0) {
			ret = n < 0 ? -errno : -EPROTO;
			break;
		}
		ret = write_all(v, buf, (size_t)n, off);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	free(buf);
	return ret;
}

static int note_dir(struct receiver *v, const char *rel, const struct timespec ts[2])
{
	if (v->ndirs == v->capdirs) {
		size_t cap = v->capdirs ? v->capdirs * 2 : 256;
		struct dirtime *d = realloc(v->dirs, cap * sizeof(*d));
		if (!d)
			return -ENOMEM;
		v->dirs = d;
		v->capdirs = cap;
	}
	v->dirs[v->ndirs].path = strdup(store_rel(rel));
	if (!v->dirs[v->ndirs].path)
		return -ENOMEM;
	v->dirs[v->ndirs].ts[0] = ts[0];
	v->dirs[v->ndirs].ts[1] = ts[1];
	v->ndirs++;
	return 0;
}

static struct timespec ts_of(uint64_t ns)
{
	struct timespec t = { (time_t)((int64_t)ns / 1000000000), (long)((int64_t)ns % 1000000000) };

	if (t.tv_nsec < 0) {
		t.tv_sec--;
		t.tv_nsec += 1000000000;
	}
	return t;
}

/* One SNAP_ENTRY: makes the object in the staging tree. */
static int take_entry(struct receiver *v, const uint8_t *msg, size_t len)
{
	struct rbuf rb = { msg, len, 0, 0 };
	uint8_t kind = (uint8_t)rb_u(&rb, 1), id[FILE_ID_BYTES];
	const uint8_t *idp = rb_get(&rb, FILE_ID_BYTES);
	mode_t mode = (mode_t)rb_u(&rb, 4);
	uid_t uid = (uid_t)rb_u(&rb, 4);
	gid_t gid = (gid_t)rb_u(&rb, 4);
	dev_t rdev = (dev_t)rb_u(&rb, 8);
	uint64_t size = rb_u(&rb, 8), atime = rb_u(&rb, 8), mtime = rb_u(&rb, 8), listed_at = rb_u(&rb, 8);
	uint16_t plen = (uint16_t)rb_u(&rb, 2);
	const char *p = rb_get(&rb, plen);
	uint16_t tlen;
	const char *t;
	char rel[PATH_MAX], target[PATH_MAX + 1], xpath[64 + PATH_MAX];
	struct timespec ts[2];
	int ret, fd = -1, kept, news;

	tlen = (uint16_t)rb_u(&rb, 2);
	t = rb_get(&rb, tlen);
	if (rb.err || plen >= sizeof(rel) || tlen > PATH_MAX || (plen && (p[0] == '/' || memchr(p, 0, plen))))
		return -EBADMSG;
	memcpy(id, idp, FILE_ID_BYTES);
	memcpy(rel, p, plen);
	rel[plen] = 0;
	if (strstr(rel, "../") || !strcmp(rel, "..") || (plen >= 3 && !strcmp(rel + plen - 3, "/..")))
		return -EBADMSG;
	memcpy(target, t, tlen);
	target[tlen] = 0;
	ts[0] = ts_of(atime);
	ts[1] = ts_of(mtime);
	ret = finish_file(v);
	if (ret)
		return ret;
	/* in a staging tree this attempt began empty, a name and an id met for the first time are not there yet */
	news = v->empty && rel[0] && !set_has(&v->paths, key_of_path(rel)) && !set_has(&v->ids, key_of_id(id));
	if ((ret = set_add(&v->paths, key_of_path(rel))) || (ret = set_add(&v->ids, key_of_id(id))))
		return ret;
	switch (kind) {
	case KIND_DIR:
		kept = news ? 0 : keep_or_clear(v, rel, S_IFDIR, id);
		if (kept < 0)
			return kept;
		if (!kept && mkdirat(v->stgfd, rel, 0700) < 0)
			return -errno;
		if ((ret = store_set_id(v->stg, rel, id)) || (ret = store_id_born(v->stg, id, rel, 1)))
			return ret;
		fd = openat(v->stgfd, store_rel(rel), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		ret = set_xattrs(fd, NULL, &rb, 1);
		if (!ret && (fchown(fd, uid, gid) < 0 || fchmod(fd, mode & 07777) < 0 ||
			     fsetxattr(fd, SNAP_LISTED_XATTR, &listed_at, 8, 0) < 0))
			ret = -errno;
		close(fd);
		if (!ret)
			ret = note_dir(v, rel, ts);
		break;
	case KIND_FILE:
		/*
		 * What finish_file() gives it, noted first: a failure below
		 * leaves v->fd open for an interrupted snapshot's finish_file(),
		 * which must not give it another file's owner or xattrs.
		 */
		if (rb.len - rb.off > v->xcap) {
			uint8_t *x = realloc(v->xattrs, rb.len - rb.off);
			if (!x)
				return -ENOMEM;
			v->xattrs = x;
			v->xcap = rb.len - rb.off;
		}
		v->xlen = rb.len - rb.off;
		memcpy(v->xattrs, rb.p + rb.off, v->xlen);
		v->size = size;
		v->uid = uid;
		v->gid = gid;
		v->mode = mode;
		v->ts[0] = ts[0];
		v->ts[1] = ts[1];
		kept = news ? 0 : keep_or_clear(v, rel, S_IFREG, id);
		if (kept < 0)
			return kept;
		if (!kept && !news && store_id_state(v->stg, id) == ID_ALIVE) {
			/* received before under another name: move it (the old name goes at the end) */
			char hex[2 * FILE_ID_BYTES + 1];
			store_id_hex(id, hex);
			if (linkat(store_indexfd(v->stg), hex, v->stgfd, rel, 0) == 0)
				kept = 1;
		}
		if (kept) {
			v->fd = openat(v->stgfd, rel, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
			v->ref = v->fd;
			v->fresh = 0;
		} else {
			v->fd = openat(v->stgfd, rel, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
			v->fresh = 1;
			/* the old tree's copy, for SAME ranges (none if it offered nothing) */
			v->ref = v->held_old ? store_open_by_id(v->n->store, id, O_RDONLY) : -1;
			if (v->ref < 0)
				v->ref = -1;
			if (v->fd >= 0) {
				ret = fsetxattr(v->fd, ID_XATTR, id, FILE_ID_BYTES, 0) < 0 ? -errno : 0;
				if (!ret)
					ret = store_id_born(v->stg, id, rel, 0);
				if (ret)
					return ret;
			}
		}
		if (v->fd < 0)
			return -errno;
		if (ftruncate(v->fd, (off_t)size) < 0)
			return -errno;
		break;
	case KIND_LINK: {
		/* another name of a file, FIFO, socket, device or symlink sent before (mode: its type) */
		char hex[2 * FILE_ID_BYTES + 1];
		kept = keep_or_clear(v, rel, (mode & S_IFMT) && !S_ISDIR(mode) ? mode & S_IFMT : S_IFREG, id);
		if (kept < 0)
			return kept;
		store_id_hex(id, hex);
		if (!kept && linkat(store_indexfd(v->stg), hex, v->stgfd, rel, 0) < 0)
			return -errno;
		break;
	}
	case KIND_SYMLINK:
	case KIND_SPECIAL:
		kept = keep_or_clear(v, rel, mode & S_IFMT, id);
		if (kept < 0)
			return kept;
		if (kept && kind == KIND_SYMLINK) {
			char now[PATH_MAX + 1];
			ssize_t n = readlinkat(v->stgfd, rel, now, PATH_MAX);
			if (n != tlen || memcmp(now, target, tlen)) {
				if ((ret = remove_at(v, rel)))
					return ret;
				kept = 0;
			}
		}
		if (!kept) {
			if (kind == KIND_SYMLINK ? symlinkat(target, v->stgfd, rel) < 0
						 : mknodat(v->stgfd, rel, mode, rdev) < 0)
				return -errno;
			if ((ret = store_set_id(v->stg, rel, id)) || (ret = store_id_born(v->stg, id, rel, 0)))
				return ret;
		}
		{
			int tmp;
			if ((ret = store_xpath(v->stg, rel, xpath, sizeof(xpath), &tmp)))
				return ret;
			ret = set_xattrs(-1, xpath, &rb, 1);
			if (tmp >= 0)
				close(tmp);
			if (ret)
				return ret;
		}
		if (fchownat(v->stgfd, rel, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (kind == KIND_SPECIAL && fchmodat(v->stgfd, rel, mode & 07777, 0) < 0)
			return -errno;
		if (utimensat(v->stgfd, rel, ts, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		break;
	default:
		return -EBADMSG;
	}
	progress(v->r, 1, 0, 0);
	return ret;
}

/* Sends what this node holds by id (tree.snap first, then its old tree) with block digests. */
static int send_have(struct receiver *v)
{
	struct wbuf b = { 0 };
	int ret = 0;

	for (int pass = 0; pass < 2 && !ret; pass++) {
		struct store *st = pass == 0 ? v->stg : v->n->store;
		int idx = store_indexfd(st);
		DIR *d = opendir_at(idx, ".");
		struct dirent *de;

		if (!d) {
			ret = -errno;
			break;
		}
		while (!ret && (de = readdir(d))) {
			uint8_t id[FILE_ID_BYTES], (*dig)[DIGEST_BYTES] = NULL;
			uint32_t nd = 0;
			struct stat sb;
			int f;
			if (!store_id_parse(de->d_name, id) || (pass == 1 && store_id_state(v->stg, id) == ID_ALIVE))
				continue;
			f = openat(idx, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
			if (f < 0)
				continue;	/* a symlink or a special file: nothing to reuse */
			if (fstat(f, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
			    digest_blocks(f, (uint64_t)sb.st_size, &dig, &nd) == 0) {
				v->held_old += pass == 1;
				wb_put(&b, id, FILE_ID_BYTES);
				wb_u64(&b, (uint64_t)sb.st_size);
				wb_u32(&b, nd);
				wb_put(&b, dig, (size_t)nd * DIGEST_BYTES);
			}
			free(dig);
			close(f);
			if (b.err)
				ret = b.err;
			else if (b.len >= SNAP_CHUNK) {
				ret = chan_send(v->c, MSG_SNAP_HAVE, b.p, b.len);
				b.len = 0;
			}
		}
		closedir(d);
	}
	if (!ret && b.len)
		ret = chan_send(v->c, MSG_SNAP_HAVE, b.p, b.len);
	if (!ret)
		ret = chan_send(v->c, MSG_SNAP_HAVE, NULL, 0);
	free(b.p);
	return ret;
}

/* After SNAP_END: removes what the leader did not send (from earlier attempts or the old tree). */
static int prune(struct receiver *v, int dirfd, char *rel, size_t rlen)
{
	DIR *d = opendir_at(dirfd, ".");
	struct dirent *de;
	int ret = 0;

	if (!d)
		return -errno;
	while (!ret && (de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		struct stat sb;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (rlen + 1 + nl >= PATH_MAX)
			continue;
		snprintf(rel + rlen, PATH_MAX - rlen, "%s%s", rlen ? "/" : "", de->d_name);
		if (!set_has(&v->paths, key_of_path(rel))) {
			ret = remove_at(v, rel);
		} else if (fstatat(dirfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode)) {
			int sub = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0) {
				ret = prune(v, sub, rel, rlen + (rlen ? 1 : 0) + nl);
				close(sub);
			}
		}
		rel[rlen] = 0;
	}
	closedir(d);
	return ret;
}

static int prune_index(struct receiver *v)
{
	int idx = store_indexfd(v->stg);
	DIR *d = opendir_at(idx, ".");
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		uint8_t id[FILE_ID_BYTES];
		if (de->d_name[0] == '.')
			continue;
		/* tombstones of an earlier attempt, and ids this snapshot did not send */
		if (!store_id_parse(de->d_name, id) || !set_has(&v->ids, key_of_id(id)))
			unlinkat(idx, de->d_name, 0);
	}
	closedir(d);
	return 0;
}

int snap_receive(struct repl *r, struct chan *c, const uint8_t *begin, size_t blen, uint64_t *until)
{
	struct node *n = r->n;
	struct receiver v = { .r = r, .n = n, .c = c, .fd = -1, .ref = -1 };
	struct pace pace;
	char stg[PATH_MAX + 16], rel[PATH_MAX];
	struct pos at;
	int ret;
	int64_t t0 = now_ns();

	if (blen != 40 + CRYPTO_MAC_BYTES)
		return -EPROTO;
	at.epoch = repl_get64(begin);
	at.seq = repl_get64(begin + 8);
	ret = node_snapshot_start(n, at, begin + 16, repl_get64(begin + 16 + CRYPTO_MAC_BYTES));
	if (ret)
		return ret;
	pthread_mutex_lock(&r->mu);
	{
		unsigned completed = r->snap.completed;
		int check = r->snap.check;	/* a check's own resync keeps it running */
		memset(&r->snap, 0, sizeof(r->snap));
		r->snap.completed = completed;
		r->snap.check = check == CHECK_RUNNING ? check : CHECK_NONE;
		r->snap.by_check = r->checking;
	}
	r->snap.state = SNAP_TRANSFER;
	r->snap.from_seq = at.seq;
	r->snap.files_total = repl_get64(begin + 24 + CRYPTO_MAC_BYTES);
	r->snap.bytes_total = repl_get64(begin + 32 + CRYPTO_MAC_BYTES);
	r->snap.started_ns = t0;
	pthread_mutex_unlock(&r->mu);
	rlog(LOG_NOTICE, "receiving a snapshot of the leader's tree at seq %" PRIu64 " (%" PRIu64 " objects, %" PRIu64
			 " bytes)", at.seq, repl_get64(begin + 24 + CRYPTO_MAC_BYTES),
	     repl_get64(begin + 32 + CRYPTO_MAC_BYTES));
	snprintf(stg, sizeof(stg), "%s/%s", n->datadir, NODE_SNAPSHOT_TREE);
	v.empty = mkdir(stg, 0755) == 0;
	if (!v.empty && errno != EEXIST)
		return -errno;
	if (v.empty) {
		/* an index left by a crash between the two renames of an install belongs to no staging tree */
		char idx[PATH_MAX + 32];
		snprintf(idx, sizeof(idx), "%s.ids", stg);
		if ((ret = remove_all(idx)) && ret != -ENOENT)
			return ret;
	}
	ret = store_open(&v.stg, stg);
	if (ret)
		return ret;
	v.stgfd = store_rootfd(v.stg);
	snap_nice(1);
	pace_init(&pace);
	ret = send_have(&v);
	while (!ret) {
		uint8_t type;
		void *buf;
		size_t len;
		ret = chan_recv(c, &type, &buf, &len, SNAP_TIMEOUT_MS);
		if (ret != 1) {
			ret = ret < 0 ? ret : -ECONNRESET;
			break;
		}
		ret = 0;
		if (type == MSG_SNAP_ENTRY) {
			ret = take_entry(&v, buf, len);
		} else if (type == MSG_SNAP_DATA && len >= 8 && v.fd >= 0) {
			ret = write_all(&v, (uint8_t *)buf + 8, len - 8, repl_get64(buf));
			progress(r, 0, len - 8, len - 8);
		} else if ((type == MSG_SNAP_SAME || type == MSG_SNAP_HOLE) && len == 16 && v.fd >= 0) {
			uint64_t off = repl_get64(buf), l = repl_get64((uint8_t *)buf + 8);
			if (type == MSG_SNAP_SAME)
				ret = copy_same(&v, off, l);
			else if (!v.fresh && fallocate(v.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
						       (off_t)l) < 0)
				ret = -errno;
			progress(r, 0, l, 0);
		} else if (type == MSG_SNAP_PACE && len == 1) {
			pace_set(&pace, *(uint8_t *)buf != 0);
			v.paced = pace.one;
			pthread_mutex_lock(&r->mu);
			r->snap.yielding = pace.one;
			pthread_mutex_unlock(&r->mu);
		} else if (type == MSG_SNAP_END && len == 8) {
			*until = repl_get64(buf);
			ret = finish_file(&v);
			break;
		} else {
			ret = -EPROTO;
		}
	}
	if (v.fd >= 0)
		finish_file(&v);
	if (!ret) {
		/* directories last, deepest first: their times are final only now */
		rel[0] = 0;
		ret = prune(&v, v.stgfd, rel, 0);
		if (!ret)
			ret = prune_index(&v);
		for (size_t i = v.ndirs; !ret && i-- > 0;)
			if (utimensat(v.stgfd, v.dirs[i].path, v.dirs[i].ts, AT_SYMLINK_NOFOLLOW) < 0)
				ret = -errno;
	}
	snap_nice(0);
	pace_set(&pace, 0);
	for (size_t i = 0; i < v.ndirs; i++)
		free(v.dirs[i].path);
	free(v.dirs);
	free(v.xattrs);
	free(v.paths.k);
	free(v.ids.k);
	store_free(v.stg);
	{
		struct snap_progress sp;
		pthread_mutex_lock(&r->mu);
		r->snap.yielding = 0;
		if (ret) {
			r->snap.state = SNAP_FAILED;
			snprintf(r->snap.error, sizeof(r->snap.error), "%s", chan_strerror(ret));
		} else {
			r->snap.state = SNAP_REPLAY;
			r->snap.until_seq = *until;
		}
		sp = r->snap;
		pthread_mutex_unlock(&r->mu);
		if (ret)
			rlog(LOG_WARNING, "snapshot interrupted after %" PRIu64 " bytes received: %s (it resumes at the next connection)",
			     sp.bytes_received, chan_strerror(ret));
		else
			rlog(LOG_NOTICE, "snapshot received: %" PRIu64 " objects, %" PRIu64 " of %" PRIu64
					 " bytes transferred in %.1f s; replaying up to seq %" PRIu64,
			     sp.files_done, sp.bytes_received, sp.bytes_done, (double)(now_ns() - t0) / 1e9, *until);
	}
	return ret;
}
