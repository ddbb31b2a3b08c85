/* fuse_ring.c -- FUSE over io_uring: a CPU's requests answered by threads on that CPU
 *
 * Through /dev/fuse, a request wakes whichever daemon thread is reading,
 * usually on the other CPU: on the 2-core bench machine most of a small
 * file's cost is those cross-CPU wakeups (docs/decisions.md 3). Since 6.14
 * the kernel can instead hand requests over io_uring (FUSE_OVER_IO_URING):
 * one queue per CPU, and a request goes to the queue of the CPU its caller
 * runs on. Each queue here is served by a few threads pinned to that CPU,
 * each with its own small io_uring and one ring entry (a header buffer and
 * a payload buffer registered with the kernel).
 *
 * libfuse 3.14 knows nothing of this, so the request in an entry is laid
 * out as /dev/fuse would deliver it (in header, per-op header, payload,
 * contiguous: the payload buffer has room in front) and handed to
 * fuse_session_process_buf(). Its reply comes back through the custom
 * writev hook (fs/fuse_ops.c), which calls fring_reply(): a reply whose
 * unique is an entry's request in hand is copied into that entry, and the
 * entry's thread commits it and fetches the next request in one
 * io_uring_enter(). Notifications, interrupts and forgets still go through
 * /dev/fuse, as the kernel wants.
 *
 * A ring thread is pinned to its CPU, and a thread it makes inherits that:
 * request handlers make no threads (fs/inodes.c starts its queue at INIT).
 *
 * Wire structures are declared here: libfuse's headers cannot be mixed
 * with the kernel's <linux/fuse.h>, and Debian 12's is older than the ring.
 */
#include "fuse_ring.h"

#include "fuse_ops.h"
#include "inodes.h"
#include "../lib/log.h"
#include "../lib/util.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <unistd.h>

enum { CMD_REGISTER = 1, CMD_COMMIT_AND_FETCH = 2 };
enum { UD_CMD = 1, UD_STOP = 2 };	/* user_data of our two kinds of SQE */

/*
 * Threads per CPU queue: a request that waits (an fsync for followers, every
 * write with --commit write) holds one, and the kernel never hands a CPU's
 * requests to another queue. 64 in all (libfuse's /dev/fuse loop allows 32),
 * at least 4 and at most 16 per CPU.
 */
static int threads_per_cpu(int ncpu)
{
	int k = 64 / ncpu;

	return k < 4 ? 4 : k > 16 ? 16 : k;
}
#define HEAD_ROOM 4096		/* before the payload: in header + per-op header */
#define SQE_SIZE 128		/* IORING_SETUP_SQE128: 80 bytes of command */

struct wire_in {
	uint32_t len, opcode;
	uint64_t unique, nodeid;
	uint32_t uid, gid, pid;
	uint16_t total_extlen, padding;
};

struct wire_out {
	uint32_t len;
	int32_t error;
	uint64_t unique;
};

struct ring_ent_io {
	uint64_t flags, commit_id;
	uint32_t payload_sz, padding;
	uint64_t reserved;
};

struct ring_header {
	char in_out[128];	/* wire_in from the kernel, wire_out back */
	char op_in[128];	/* the request's first argument, if it has one */
	struct ring_ent_io io;
};

struct ring_cmd {
	uint64_t flags, commit_id;
	uint16_t qid;
	uint8_t padding[6];
};

struct worker {
	struct fring *r;
	unsigned qid;
	int fd;			/* this thread's io_uring */
	void *sq_map, *cq_map, *sqe_map;
	size_t sq_len, cq_len, sqe_len;
	_Atomic unsigned *sq_head, *sq_tail, *cq_head, *cq_tail;
	unsigned sq_mask, cq_mask, *sq_array;
	struct io_uring_cqe *cqes;
	struct ring_header *hdr;	/* page aligned */
	char *area;			/* HEAD_ROOM, then the payload */
	size_t area_len;
	struct iovec iov[2];
	_Atomic uint64_t unique;	/* the request in hand, 0 if none */
	int replied;		/* under lock: a reply may come from another thread */
	pthread_mutex_t lock;
	pthread_t tid;
	_Atomic pid_t os_tid;	/* for fring_repin() */
	_Atomic int state;	/* W_IDLE, W_SERVING (an entry registered), W_GONE */
	int running;
};

enum { W_IDLE, W_SERVING, W_GONE };

struct fring {
	struct fuse_session *se;
	struct node *n;
	int devfd, stopfd;
	size_t payload;		/* each entry's payload buffer */
	int go;			/* 1: register and serve; -1: quit */
	int stopped;
	_Atomic int refused;	/* the kernel refused an entry */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	_Atomic unsigned long long served;
	int nqueues, nworkers;
	struct worker w[];
};

static __thread struct worker *current;

static int uring_setup(unsigned entries, struct io_uring_params *p)
{
	return (int)syscall(__NR_io_uring_setup, entries, p);
}

static int uring_enter(int fd, unsigned submit, unsigned wait)
{
	return (int)syscall(__NR_io_uring_enter, fd, submit, wait, wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
}

/* How many CPUs are possible: the kernel's number of queues (num_possible_cpus()). */
static int possible_cpus(void)
{
	FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
	int lo, hi, n = 0;
	char sep;

	/* a list of ranges: "0-1", "0", "0-3,8-11" */
	while (f && fscanf(f, "%d", &lo) == 1) {
		hi = lo;
		if (fscanf(f, "%c", &sep) == 1 && sep == '-' && (fscanf(f, "%d", &hi) != 1 || fscanf(f, "%c", &sep) != 1))
			sep = 0;
		if (hi >= lo)
			n += hi - lo + 1;
		if (sep != ',')
			break;
	}
	if (f)
		fclose(f);
	return n > 0 ? n : get_nprocs_conf();
}

static void worker_unmap(struct worker *w)
{
	if (w->sqe_map)
		munmap(w->sqe_map, w->sqe_len);
	if (w->cq_map)
		munmap(w->cq_map, w->cq_len);
	if (w->sq_map)
		munmap(w->sq_map, w->sq_len);
	if (w->fd >= 0)
		close(w->fd);
	if (w->area)
		munmap(w->area, w->area_len);
	if (w->hdr)
		munmap(w->hdr, 4096);
}

static int worker_map(struct worker *w, size_t payload)
{
	struct io_uring_params p;
	char *sq, *cq;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SQE128;
	w->fd = uring_setup(4, &p);
	if (w->fd < 0)
		return -errno;
	w->sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	w->cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	w->sqe_len = (size_t)p.sq_entries * SQE_SIZE;
	sq = mmap(NULL, w->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, w->fd, IORING_OFF_SQ_RING);
	w->sq_map = sq == MAP_FAILED ? NULL : sq;
	cq = mmap(NULL, w->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, w->fd, IORING_OFF_CQ_RING);
	w->cq_map = cq == MAP_FAILED ? NULL : cq;
	w->sqe_map = mmap(NULL, w->sqe_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, w->fd, IORING_OFF_SQES);
	if (w->sqe_map == MAP_FAILED)
		w->sqe_map = NULL;
	w->hdr = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->hdr == MAP_FAILED)
		w->hdr = NULL;
	w->area_len = HEAD_ROOM + payload;
	w->area = mmap(NULL, w->area_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (w->area == MAP_FAILED)
		w->area = NULL;
	if (!w->sq_map || !w->cq_map || !w->sqe_map || !w->hdr || !w->area)
		return -ENOMEM;
	w->sq_head = (_Atomic unsigned *)(sq + p.sq_off.head);
	w->sq_tail = (_Atomic unsigned *)(sq + p.sq_off.tail);
	w->sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
	w->sq_array = (unsigned *)(sq + p.sq_off.array);
	w->cq_head = (_Atomic unsigned *)(cq + p.cq_off.head);
	w->cq_tail = (_Atomic unsigned *)(cq + p.cq_off.tail);
	w->cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
	w->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
	w->iov[0] = (struct iovec){ w->hdr, sizeof(struct ring_header) };
	w->iov[1] = (struct iovec){ w->area + HEAD_ROOM, payload };
	return 0;
}

/* The next free SQE, zeroed; pushed by sqe_push(). Never more than two are out. */
static struct io_uring_sqe *sqe_next(struct worker *w)
{
	unsigned tail = atomic_load_explicit(w->sq_tail, memory_order_relaxed);
	struct io_uring_sqe *s = (void *)((char *)w->sqe_map + (size_t)(tail & w->sq_mask) * SQE_SIZE);

	memset(s, 0, SQE_SIZE);
	return s;
}

static void sqe_push(struct worker *w)
{
	unsigned tail = atomic_load_explicit(w->sq_tail, memory_order_relaxed);

	w->sq_array[tail & w->sq_mask] = tail & w->sq_mask;
	atomic_store_explicit(w->sq_tail, tail + 1, memory_order_release);
}

static unsigned sq_pending(struct worker *w)
{
	return atomic_load_explicit(w->sq_tail, memory_order_relaxed) -
	       atomic_load_explicit(w->sq_head, memory_order_acquire);
}

static void push_cmd(struct worker *w, unsigned op, uint64_t commit_id)
{
	struct io_uring_sqe *s = sqe_next(w);
	struct ring_cmd c = { .commit_id = commit_id, .qid = (uint16_t)w->qid };

	s->opcode = IORING_OP_URING_CMD;
	s->fd = w->r->devfd;
	s->cmd_op = op;
	s->user_data = UD_CMD;
	if (op == CMD_REGISTER) {
		s->addr = (uint64_t)(uintptr_t)w->iov;
		s->len = 2;
	}
	memcpy(s->cmd, &c, sizeof(c));
	sqe_push(w);
}

static void push_stop_poll(struct worker *w)
{
	struct io_uring_sqe *s = sqe_next(w);

	s->opcode = IORING_OP_POLL_ADD;
	s->fd = w->r->stopfd;
	s->poll32_events = POLLIN;
	s->user_data = UD_STOP;
	sqe_push(w);
}

/* Answers the request in w's entry with EIO. */
static void answer_eio(struct worker *w, uint64_t unique)
{
	struct wire_out out = { sizeof(out), -EIO, unique };

	memcpy(w->hdr->in_out, &out, sizeof(out));
	w->hdr->io.payload_sz = 0;
}

/* Hands the request in w's entry to libfuse; returns once it is answered. */
static void serve(struct worker *w)
{
	struct fring *r = w->r;
	struct wire_in in;
	uint32_t psz = w->hdr->io.payload_sz;
	size_t opsz;
	char *msg;

	memcpy(&in, w->hdr->in_out, sizeof(in));
	if (in.len < sizeof(in) + (size_t)psz || in.len - sizeof(in) - psz > sizeof(w->hdr->op_in) ||
	    psz > r->payload) {
		/* cannot happen with a kernel that keeps to the protocol */
		rlog(LOG_ERR, "a malformed request came through the FUSE ring (opcode %u); answering EIO", in.opcode);
		answer_eio(w, in.unique);
		return;
	}
	opsz = in.len - sizeof(in) - psz;
	msg = w->area + HEAD_ROOM - sizeof(in) - opsz;
	memcpy(msg, &in, sizeof(in));
	memcpy(msg + sizeof(in), w->hdr->op_in, opsz);
	w->replied = 0;
	atomic_store(&w->unique, in.unique);
	current = w;
	fuse_ops_before(r->n, in.opcode);
	fuse_session_process_buf(r->se, &(struct fuse_buf){ .mem = msg, .size = in.len });
	current = NULL;
	ino_dir_temps_release();	/* the request's directory descriptors (fs/inodes.c) */
	atomic_store(&w->unique, 0);
	/* every handler answers before it returns: one that did not (a reply
	 * that failed, or went to /dev/fuse) would hold the caller forever */
	pthread_mutex_lock(&w->lock);
	if (!w->replied) {
		rlog(LOG_ERR, "a request through the FUSE ring (opcode %u) got no reply; answering EIO", in.opcode);
		answer_eio(w, in.unique);
	}
	pthread_mutex_unlock(&w->lock);
	atomic_fetch_add_explicit(&r->served, 1, memory_order_relaxed);
}

static void pin(pid_t tid, unsigned cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	/* a CPU we may not run on: its queue is served from anywhere */
	(void)sched_setaffinity(tid, sizeof(set), &set);
}

void fring_repin(struct fring *r)
{
	for (int i = 0; r && i < r->nworkers; i++) {
		pid_t tid = atomic_load(&r->w[i].os_tid);

		if (tid > 0)
			pin(tid, r->w[i].qid);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fring *r = w->r;
	char name[16];
	int quit = 0, registering = 1;

	snprintf(name, sizeof(name), "repfs-ring%u", w->qid);
	thread_name(name);
	atomic_store(&w->os_tid, (pid_t)syscall(SYS_gettid));
	pin(0, w->qid);
	pthread_mutex_lock(&r->lock);
	while (!r->go)
		pthread_cond_wait(&r->cond, &r->lock);
	quit = r->go < 0;
	pthread_mutex_unlock(&r->lock);
	if (quit) {
		atomic_store(&w->state, W_GONE);
		atomic_store(&w->os_tid, 0);
		return NULL;
	}
	push_stop_poll(w);
	push_cmd(w, CMD_REGISTER, 0);
	/* submitted without waiting (a registered entry completes only with a
	 * request): a refusal is in the first batch below and undoes this */
	if (uring_enter(w->fd, sq_pending(w), 0) >= 0)
		atomic_store(&w->state, W_SERVING);
	while (!quit) {
		unsigned head, tail;

		if (uring_enter(w->fd, sq_pending(w), 1) < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EBUSY)
				continue;
			rlog(LOG_ERR, "FUSE ring %u: io_uring_enter failed: %s; this thread stops", w->qid, strerror(errno));
			break;
		}
		head = atomic_load_explicit(w->cq_head, memory_order_relaxed);
		tail = atomic_load_explicit(w->cq_tail, memory_order_acquire);
		/* the whole batch, also after a stop: a request taken is answered */
		for (; head != tail; head++) {
			struct io_uring_cqe c = w->cqes[head & w->cq_mask];

			atomic_store_explicit(w->cq_head, head + 1, memory_order_release);
			if (c.user_data == UD_STOP) {
				quit = 1;
			} else if (c.res == 0) {
				uint64_t commit = w->hdr->io.commit_id;

				registering = 0;
				serve(w);
				push_cmd(w, CMD_COMMIT_AND_FETCH, commit);
			} else if (c.res == -EINTR || c.res == -EAGAIN) {
				/* not taken: again (a commit is found by its request's id) */
				push_cmd(w, registering ? CMD_REGISTER : CMD_COMMIT_AND_FETCH, w->hdr->io.commit_id);
			} else if (c.res == -ENOTCONN || c.res == -ECONNABORTED || c.res == -ECANCELED) {
				quit = 1;	/* the connection ended */
			} else if (registering) {
				atomic_store(&w->state, W_GONE);
				atomic_store(&r->refused, 1);
				rlog(LOG_ERR, "FUSE ring %u: the kernel refused an entry: %s", w->qid, strerror(-c.res));
				quit = 1;
			} else {
				/* the entry is lost to the kernel: a fresh one on the same buffers */
				rlog(LOG_ERR, "FUSE ring %u: the kernel ended an entry: %s; registering it again", w->qid,
				     strerror(-c.res));
				registering = 1;
				push_cmd(w, CMD_REGISTER, 0);
			}
		}
	}
	/* replies made after the stop go out; what the kernel hands these
	 * entries meanwhile ends with the connection */
	if (sq_pending(w))
		uring_enter(w->fd, sq_pending(w), 0);
	atomic_store(&w->state, W_GONE);
	atomic_store(&w->os_tid, 0);
	return NULL;
}

struct fring *fring_open(struct fuse_session *se, int devfd, struct node *node)
{
	int ncpu = possible_cpus();
	int n = ncpu * threads_per_cpu(ncpu), err = 0;
	struct fring *r;

	if (ncpu > 4096) {
		rlog(LOG_WARNING, "%d possible CPUs: FUSE requests go through /dev/fuse", ncpu);
		return NULL;
	}
	r = calloc(1, sizeof(*r) + (size_t)n * sizeof(struct worker));
	if (!r)
		return NULL;
	r->se = se;
	r->n = node;
	r->devfd = devfd;
	r->payload = fuse_ops_max_payload();
	r->nqueues = ncpu;
	r->nworkers = n;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	r->stopfd = eventfd(0, EFD_CLOEXEC);
	if (r->stopfd < 0)
		err = -errno;
	for (int i = 0; i < n; i++) {
		struct worker *w = &r->w[i];

		w->r = r;
		w->qid = (unsigned)(i % ncpu);
		w->fd = -1;
		pthread_mutex_init(&w->lock, NULL);
		if (!err)
			err = worker_map(w, r->payload);
	}
	for (int i = 0; i < n && !err; i++) {
		err = -pthread_create(&r->w[i].tid, NULL, worker_main, &r->w[i]);
		r->w[i].running = !err;
	}
	if (err) {
		rlog(LOG_WARNING, "FUSE over io_uring is not usable here (%s); requests go through /dev/fuse",
		     strerror(-err));
		fring_free(r);
		return NULL;
	}
	return r;
}

void fring_start(struct fring *r)
{
	pthread_mutex_lock(&r->lock);
	r->go = 1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	rlog(LOG_INFO, "FUSE requests go through io_uring: %d CPU queues, %d threads each", r->nqueues,
	     r->nworkers / r->nqueues);
}

void fring_stop(struct fring *r)
{
	uint64_t one = 1;

	if (!r || r->stopped)
		return;
	r->stopped = 1;
	pthread_mutex_lock(&r->lock);
	if (!r->go)
		r->go = -1;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->stopfd >= 0 && write(r->stopfd, &one, sizeof(one)) != sizeof(one))
		rlog(LOG_WARNING, "unable to wake the FUSE ring threads: %s", strerror(errno));
	for (int i = 0; i < r->nworkers; i++) {
		struct worker *w = &r->w[i];

		if (w->running)
			pthread_join(w->tid, NULL);
		w->running = 0;
		worker_unmap(w);
	}
}

void fring_free(struct fring *r)
{
	if (!r)
		return;
	fring_stop(r);
	for (int i = 0; i < r->nworkers; i++)
		pthread_mutex_destroy(&r->w[i].lock);
	if (r->stopfd >= 0)
		close(r->stopfd);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->cond);
	free(r);
}

int fring_reply(struct fring *r, const struct iovec *iov, int count, ssize_t *res)
{
	struct worker *w = current;
	struct wire_out out;
	size_t total = 0, off = 0;
	char *p;

	if (count < 1 || iov[0].iov_len != sizeof(out))
		return 0;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (!out.unique)
		return 0;
	if (!w || atomic_load(&w->unique) != out.unique) {
		w = NULL;
		for (int i = 0; i < r->nworkers && !w; i++)
			if (atomic_load(&r->w[i].unique) == out.unique)
				w = &r->w[i];
		if (!w)
			return 0;
	}
	for (int i = 1; i < count; i++)
		total += iov[i].iov_len;
	*res = (ssize_t)(sizeof(out) + total);
	p = w->area + HEAD_ROOM;
	if (total > r->payload) {
		out.error = -EIO;
		total = 0;
	}
	for (int i = 1; i < count && total; i++) {
		if (iov[i].iov_base != p + off)
			memmove(p + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	out.len = (uint32_t)(sizeof(out) + total);
	memcpy(w->hdr->in_out, &out, sizeof(out));
	w->hdr->io.payload_sz = (uint32_t)total;
	pthread_mutex_lock(&w->lock);
	w->replied = 1;
	pthread_mutex_unlock(&w->lock);
	return 1;
}

void *fring_payload(size_t *cap)
{
	if (!current)
		return NULL;
	*cap = current->r->payload;
	return current->area + HEAD_ROOM;
}

unsigned long long fring_served(const struct fring *r)
{
	return r ? atomic_load_explicit(&r->served, memory_order_relaxed) : 0;
}

int fring_serving(const struct fring *r)
{
	if (!r || r->go != 1 || r->stopped || atomic_load(&r->refused))
		return 0;
	/* every queue has a thread with an entry registered */
	for (int q = 0; q < r->nqueues; q++) {
		int ok = 0;
		for (int i = q; i < r->nworkers && !ok; i += r->nqueues)
			ok = atomic_load(&r->w[i].state) == W_SERVING;
		if (!ok)
			return 0;
	}
	return 1;
}

void fring_enable_kernel(void)
{
	static const char knob[] = "/sys/module/fuse/parameters/enable_uring";
	char c = 0;
	int fd = open(knob, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT)
			rlog(LOG_INFO, "unable to open '%s': %s; FUSE over io_uring only if it is on", knob,
			     strerror(errno));
		return;
	}
	if (read(fd, &c, 1) == 1 && c == 'N') {
		if (pwrite(fd, "Y", 1, 0) == 1)
			rlog(LOG_NOTICE, "turned on FUSE over io_uring in the kernel ('%s')", knob);
		else
			rlog(LOG_INFO, "unable to turn on '%s': %s; requests go through /dev/fuse", knob,
			     strerror(errno));
	}
	close(fd);
}
