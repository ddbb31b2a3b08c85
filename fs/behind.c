/* behind.c -- writes applied behind their answer, and new files made ahead
 *
 * The leader's write-behind helper (docs/apply.md, "Small writes, and the
 * last steps of a new file, are applied behind their answer"): a small
 * write, and the last steps of a new file or directory, are logged by the
 * request's thread, which answers; a helper thread applies them to the tree
 * in log order, on the other CPU. The helper also makes new files ahead
 * for creates to take. The node's commit() (fs/node.c) decides what goes
 * behind (fs/behind.h).
 */
#include "behind.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../replication/repl.h"
#include "inodes.h"
#include "store.h"

/*
 * A write through a handle is logged by the request's thread, which then
 * answers; a helper thread, on the other CPU, applies it to the tree. So
 * are the last steps of a new regular file or directory (the parent's
 * mtime, the id index's link or marker: apply_create_tail()). (An untar spent about a fifth of its
 * time in the tree's pwrite of each of tar's 10 KiB writes, on the CPU where
 * tar waits, while the other idled: docs/decisions.md 14.) Order is kept
 * three ways:
 *  - the queue is applied in log order, and a record that does not go
 *    behind (any other change, or a write that cannot) first waits, under
 *    seq_lock, until the queue is empty;
 *  - applied moves past a record only once the tree has it (the helper
 *    moves it), so that a checkpoint, a snapshot or a follower's stream
 *    never counts one that is not there;
 *  - every request but a write or a release waits for the queue first
 *    (node_settle(), from fs/fuse_ring.c and fs/fuse_ops.c): a read or a
 *    stat comes after every write answered before it; a released handle's
 *    descriptor, which the queue borrows, is closed by the helper after the
 *    writes through it (node_close_behind()).
 * The tree's apply can now fail after the answer, so a record goes behind
 * only while the log's and the tree's file systems have BEHIND_MARGIN free
 * beyond what may go behind before the next look (a disk that fills takes
 * the inline path, which takes a failed change back and answers ENOSPC).
 * If one fails anyway, the node refuses writes from then on (`status` says
 * why) and the record stays in the log, where a restart applies it from.
 */
#define BEHIND_SLOTS 64
#define BEHIND_MAX_DATA (128u << 10)
/*
 * A write that ends past this goes inline, where a failure is answered: far
 * below the largest file of the file systems a tree lives on (ext4 with 4 KiB
 * blocks: 16 TiB; 4 TiB with 1 KiB ones), so that a write past the largest
 * file gets its EFBIG from the tree (tests/integration/failed_ops.sh).
 */
#define BEHIND_MAX_END (1ull << 40)
#define BEHIND_MARGIN (256ull << 20)
#define BEHIND_ROOM_MAX (64ull << 20)	/* bytes that go behind between two looks at the free space */
#define BEHIND_SPIN_NS 200000		/* the helper looks for more this long before it sleeps */
/*
 * New regular files made ahead. Of a create's 24 us on the request's thread
 * in an untar, about 15 were ext4's create of the inode in the tree. The
 * helper makes up to AHEAD_MAX unnamed files ahead (O_TMPFILE, in the id
 * index's directory: ours, it passes no ACL on) while it has no job; a
 * create of a regular file takes one, logs its record, answers, and queues
 * the job that gives the file the record's owner, mode, id and times and
 * names it (linkat; apply_create_adopt()); its parent's mtime and the
 * index's link follow as for any create. The name is looked for in the
 * tree and among the names still queued before the record is logged: the
 * leader's create must fail with EEXIST where ext4's would. A create makes
 * its file inline as before where none is left, or where the parent passes
 * on what a file made ahead would lack (a default ACL, inode flags, a
 * project: fs/fuse_ops.c, ahead_may()). A file made ahead has no name until
 * its job: a kill -9 frees it, and the record, in the log, is replayed as
 * any create.
 */
#define AHEAD_MAX 16

struct behind_job {
	struct record r;	/* its data and path point into buf */
	int ahead;	/* a create whose file was made ahead: the job names it (apply_create_adopt()) */
	int fd;		/* the handle's, borrowed: its release waits for the queue */
	uint8_t *buf;	/* copies of the data and the path (the request's are gone once answered) */
	size_t cap;
};

/*
 * A file made ahead, with all a create takes from it made ahead too: a
 * duplicate of its descriptor for the job, and what fstat() said of it
 * (an unnamed file nobody else reaches does not change).
 */
struct ahead_file {
	int fd, job_fd;
	struct stat st;
};

struct behind {
	struct node *n;
	pthread_t thread;
	uint64_t head;		/* the next job to apply: the helper's (atomic) */
	uint64_t tail;		/* the next free slot: written under seq_lock (atomic) */
	struct behind_job job[BEHIND_SLOTS];
	int sleeping, stop;	/* atomic; the helper sleeps on sleeping (a futex), behind_post() wakes it */
	pthread_mutex_t apply_mu;	/* who does the job at head: the helper, or a waiter (behind_wait()) */
	uint64_t done;		/* apply_mu: the seq of the last record applied, not yet in applied */
	int owed;		/* atomic: the last job done left its file's mtime to the next (mtime_next()) */
	int failed;		/* errno of the apply that failed (atomic; set under seq_lock) */
	uint64_t room;		/* seq_lock: bytes that may go behind before the next look */
	int64_t room_next;	/* seq_lock: no look before then (mono_ns) after one found no room */
	uint64_t max_end;	/* BEHIND_MAX_END, or the daemon's RLIMIT_FSIZE if lower */
	unsigned served, fail_at;	/* test hook: the fail_at'th apply fails (REPFS_TEST_FAIL_BEHIND) */
	/* test hook (REPFS_TEST_BEHIND_DELAY_MS): a queued write waits up to delay_ms for a job behind it,
	   and the helper lets requests waiting for the queue (waiting, atomic) take it between jobs */
	unsigned delay_ms;
	int waiting;
	struct ahead_file ahead[AHEAD_MAX];	/* seq_lock: regular files made ahead, unnamed (ahead_fill()) */
	int ahead_n;		/* seq_lock (read without it as a hint) */
	int ahead_off;		/* the helper's: no files made ahead (the file system makes no O_TMPFILE) */
	int64_t ahead_next;	/* the helper's: no try before then (mono_ns) after one failed */
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/*
 * A lock the helper and the request threads pass between them, taken
 * without sleeping on it while its holder, on the other CPU, finishes (for
 * microseconds). A thread that sleeps on a lock is woken by the holder's
 * unlock across CPUs, which costs tens of microseconds on a virtual machine,
 * where the wakeup is an interrupt to a CPU that has gone idle; and the
 * holder then pays for the wakeup's system call too.
 */
void lock_spinning(pthread_mutex_t *mu)
{
	static int cpus;

	if (!cpus)
		__atomic_store_n(&cpus, (int)sysconf(_SC_NPROCESSORS_ONLN), __ATOMIC_RELAXED);
	for (int i = 0; cpus > 1 && i < 20000; i++) {
		if (pthread_mutex_trylock(mu) == 0)
			return;
		cpu_relax();
	}
	pthread_mutex_lock(mu);
}

static void futex_wait_int(int *addr, int val)
{
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_int(int *addr)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void behind_do(struct behind *b);

/* 1 while a job before upto is queued, or a write done has left its mtime to the next job */
static int behind_pending(struct behind *b, uint64_t upto)
{
	return __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) < upto || __atomic_load_n(&b->owed, __ATOMIC_ACQUIRE);
}

/*
 * Returns once every job before upto is done: spins a little (the helper,
 * on the other CPU, takes microseconds a job), then does them itself. (A
 * helper that had slept, or that the scheduler had put aside, made a few
 * waits in every untar last a millisecond or more.)
 */
static void behind_wait(struct behind *b, uint64_t upto)
{
	for (int i = 0; i < 256 && behind_pending(b, upto); i++)
		cpu_relax();
	if (!behind_pending(b, upto))
		return;
	if (b->delay_ms) {
		rlog(LOG_INFO, "test hook: a request waits for the queued jobs before job %" PRIu64, upto);
		__atomic_add_fetch(&b->waiting, 1, __ATOMIC_SEQ_CST);
	}
	lock_spinning(&b->apply_mu);	/* the helper is in a job: it takes microseconds */
	while (behind_pending(b, upto)) {
		if (b->delay_ms && __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) >= upto)
			rlog(LOG_INFO, "test hook: a request does the next job too: the one before left its mtime to it");
		behind_do(b);
	}
	pthread_mutex_unlock(&b->apply_mu);
	if (b->delay_ms)
		__atomic_sub_fetch(&b->waiting, 1, __ATOMIC_SEQ_CST);
}

void node_settle(struct node *n)
{
	struct behind *b = n->behind;

	if (b)
		behind_wait(b, __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE));
}

/* Under seq_lock; returns under it with nothing behind (the helper takes seq_lock to finish a job). */
void behind_drain_locked(struct node *n)
{
	struct behind *b = n->behind;
	uint64_t tail;

	while (b && __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) < (tail = __atomic_load_n(&b->tail, __ATOMIC_RELAXED))) {
		pthread_mutex_unlock(&n->seq_lock);
		behind_wait(b, tail);
		pthread_mutex_lock(&n->seq_lock);
	}
}

void node_lock_settled(struct node *n)
{
	pthread_mutex_lock(&n->seq_lock);
	behind_drain_locked(n);
}

/* Free bytes on the file system of fd, 0 if unknown. */
static uint64_t fs_avail(int fd)
{
	struct statvfs sv;

	return fstatvfs(fd, &sv) < 0 ? 0 : (uint64_t)sv.f_bavail * sv.f_frsize;
}

/* Under seq_lock: room for len more bytes behind (the log's and the tree's file systems looked at now and then). */
static int behind_room(struct node *n, struct behind *b, uint32_t len)
{
	uint64_t avail, tree;
	int64_t now;

	if (b->room >= len) {
		b->room -= len;
		return 1;
	}
	now = mono_ns();
	if (now < b->room_next)
		return 0;
	b->room_next = now + 1000000000LL;	/* until the next look, if this one finds no room */
	avail = fs_avail(n->logdirfd);
	tree = fs_avail(store_rootfd(n->store));
	avail = tree < avail ? tree : avail;
	if (avail < BEHIND_MARGIN + 2ull * len)
		return 0;
	/* half of what is left past the margin: each byte goes to the log and to the tree */
	b->room = (avail - BEHIND_MARGIN) / 2 < BEHIND_ROOM_MAX ? (avail - BEHIND_MARGIN) / 2 : BEHIND_ROOM_MAX;
	b->room_next = 0;
	b->room -= len;
	return 1;
}

/*
 * Under seq_lock: the job at tail is ready; the helper may have it. The
 * helper says it sleeps before it looks at tail a last time, and we look
 * whether it sleeps after tail moved: one of the two sees the other
 * (sequentially consistent), and no lock is shared, so a request never
 * waits here for the helper to let go of one.
 */
static void behind_post(struct behind *b)
{
	__atomic_store_n(&b->tail, b->tail + 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&b->sleeping, __ATOMIC_SEQ_CST) && __atomic_exchange_n(&b->sleeping, 0, __ATOMIC_SEQ_CST))
		futex_wake_int(&b->sleeping);
}

/* Under seq_lock: 1 if r, a write about to be committed, is to go behind (its slot made ready). */
int behind_may(struct node *n, const struct record *r, int hint_fd, int *out_fd)
{
	struct behind *b = n->behind;
	struct behind_job *j;
	size_t need;

	if (!b || __atomic_load_n(&b->failed, __ATOMIC_RELAXED) || r->path2 || r->name ||
	    b->tail - __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) >= BEHIND_SLOTS)
		return 0;
	if (r->type == REC_CREATE) {
		/* a regular file's or a directory's: its tail (apply_create_tail()); a directory entry's room */
		if (!out_fd || ((r->mode & S_IFMT) != S_IFREG && (r->mode & S_IFMT) != S_IFDIR) || r->data_len)
			return 0;
	} else if (r->type != REC_WRITE || hint_fd < 0 || (r->flags & REC_F_KEEP_MTIME) || !r->data_len ||
		   r->data_len > BEHIND_MAX_DATA || r->off + r->data_len > b->max_end) {
		return 0;
	}
	j = &b->job[b->tail % BEHIND_SLOTS];
	need = r->data_len + strlen(r->path) + 1;
	if (j->cap < need) {
		uint8_t *p = realloc(j->buf, need);
		if (!p)
			return 0;
		j->buf = p;
		j->cap = need;
	}
	return behind_room(n, b, r->data_len ? r->data_len : 4096);
}

/* Under seq_lock, r in the log: queues its apply, or a create's tail (behind_may() said yes). */
void behind_push(struct behind *b, const struct record *r, int fd, int ahead)
{
	struct behind_job *j = &b->job[b->tail % BEHIND_SLOTS];

	j->ahead = ahead;
	j->r = *r;
	if (r->data_len)
		memcpy(j->buf, r->data, r->data_len);
	j->r.data = j->buf;
	j->r.path = strcpy((char *)j->buf + r->data_len, r->path);
	j->fd = fd;
	behind_post(b);
}

void node_close_behind(struct node *n, int fd)
{
	struct behind *b = n->behind;

	if (b && __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) < __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&n->seq_lock);
		if (b->tail - __atomic_load_n(&b->head, __ATOMIC_ACQUIRE) >= BEHIND_SLOTS)
			behind_drain_locked(n);
		if (__atomic_load_n(&b->head, __ATOMIC_ACQUIRE) < b->tail) {
			struct behind_job *j = &b->job[b->tail % BEHIND_SLOTS];
			memset(&j->r, 0, sizeof(j->r));	/* type 0: a close */
			j->ahead = 0;
			j->fd = fd;
			behind_post(b);
			pthread_mutex_unlock(&n->seq_lock);
			return;
		}
		pthread_mutex_unlock(&n->seq_lock);
	}
	close(fd);
}

/* The helper: 1 once there is a job, 0 once told to stop with none left. */
static int behind_next(struct behind *b, uint64_t h)
{
	int64_t until = mono_ns() + BEHIND_SPIN_NS;
	int more;

	while (h == __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) && mono_ns() < until)
		cpu_relax();
	for (;;) {
		__atomic_store_n(&b->sleeping, 1, __ATOMIC_SEQ_CST);
		more = h != __atomic_load_n(&b->tail, __ATOMIC_SEQ_CST);
		if (more || __atomic_load_n(&b->stop, __ATOMIC_SEQ_CST))
			break;
		futex_wait_int(&b->sleeping, 1);	/* returns at once if a post cleared it meanwhile */
	}
	__atomic_store_n(&b->sleeping, 0, __ATOMIC_SEQ_CST);
	return more;
}

/* 1 if a and b, in that order in the log, are writes to one file: b's apply sets its mtime after a's */
int writes_one_file(const struct record *a, const struct record *b)
{
	return a->type == REC_WRITE && b->type == REC_WRITE && !memcmp(a->id, b->id, FILE_ID_BYTES);
}

/*
 * 1 if the job at h is a write and the one queued after it a write to the
 * same file: that one sets the file's mtime, so this one need not (as a
 * follower's bursts, mtime_follows()). Until it has, the write is not done:
 * applied does not move past it (a crash, or a failure of the next job,
 * replays both), and a request waiting for the queue waits for the next job
 * too (b->owed), so that no stat sees the tree's own stamp of the write.
 */
static int mtime_next(struct behind *b, uint64_t h)
{
	return h + 1 < __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) &&
	       writes_one_file(&b->job[h % BEHIND_SLOTS].r, &b->job[(h + 1) % BEHIND_SLOTS].r);
}

/*
 * Does the job at head (under apply_mu; there is one). applied moves under
 * seq_lock, which the producers hold while they log: taking it for every job
 * cost the helper about 2 us a job, and the requests that waited for it as
 * much. So a job that has another queued behind it only records its seq;
 * the last one queued (and a create's tail, for ns_changes, and a failure)
 * publishes it. A drainer that finds the queue empty under seq_lock thus
 * finds applied up to date: the job that emptied it saw no other queued, and
 * the queue cannot grow while the drainer holds seq_lock.
 */
static void behind_do(struct behind *b)
{
	struct node *n = b->n;
	uint64_t h = __atomic_load_n(&b->head, __ATOMIC_RELAXED);
	struct behind_job *j = &b->job[h % BEHIND_SLOTS];
	int ret = 0, create = j->r.type == REC_CREATE, skip;

	if (b->delay_ms && j->r.type == REC_WRITE) {
		/* tests: a slow tree, until a job queues behind this one (tests/fault/write_behind.sh) */
		int64_t until = mono_ns() + (int64_t)b->delay_ms * 1000000;
		rlog(LOG_INFO, "test hook: the queued write at seq %" PRIu64 " waits for a job behind it", j->r.seq);
		while (h + 1 >= __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) && mono_ns() < until)
			usleep(1000);
	}
	skip = mtime_next(b, h);

	if (!j->r.type)
		close(j->fd);	/* a released handle's descriptor, once the writes through it are in */
	else if (__atomic_load_n(&b->failed, __ATOMIC_RELAXED))
		;
	else if (++b->served == b->fail_at)
		ret = -EIO;
	else if (create && j->ahead)
		ret = apply_create_adopt(n->store, &j->r, j->fd);
	else if (create)
		ret = apply_create_tail(n->store, &j->r, j->fd);
	else if ((ret = apply_record(n->store, &j->r, APPLY_STRICT | (skip ? APPLY_NO_MTIME : 0), j->fd, NULL)) == 1)
		ret = -ESTALE;
	if (create && j->fd >= 0)
		close(j->fd);	/* its own: a duplicate of the new file's (the handle's may close first) */
	/* not past a write whose mtime the next job owes: if that one fails, a restart replays both */
	if (j->r.type && !ret && !skip && !__atomic_load_n(&b->failed, __ATOMIC_RELAXED))
		b->done = j->r.seq;
	__atomic_store_n(&b->owed, !ret && skip, __ATOMIC_RELEASE);
	if (!ret && !create && h + 1 < __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&b->head, h + 1, __ATOMIC_RELEASE);
		return;	/* the job after it publishes */
	}
	lock_spinning(&n->seq_lock);
	if (ret) {
		/* answered already: nothing to take back; the log keeps it for the next start */
		__atomic_store_n(&b->failed, -ret, __ATOMIC_RELAXED);
		n->fault = -ret;
		rlog(LOG_ERR, "unable to apply the %s at seq %" PRIu64 " to the tree: %s; refusing writes "
			      "(a restart applies it from the log)", record_type_name(j->r.type), j->r.seq,
		     strerror(-ret));
	}
	if (b->done > n->applied) {
		n->applied = b->done;
		node_applied_mark(n, b->done);
	}
	if (create)	/* after applied moved (commit()) */
		__atomic_add_fetch(&n->ns_changes, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&b->head, h + 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&n->seq_lock);
	repl_notify(n->repl);
}

/*
 * The helper, with no job: one more file made ahead, if fewer than
 * AHEAD_MAX are (a leader's only). They are made in the id index's
 * directory, ours, which passes no ACL on to them (the tree's root may);
 * a create takes one only where its parent passes nothing else on either
 * (store_like_index(), fs/fuse_ops.c). 0 once it made none.
 */
static int ahead_fill(struct behind *b)
{
	struct node *n = b->n;
	struct ahead_file f;

	if (b->ahead_off || __atomic_load_n(&b->ahead_n, __ATOMIC_RELAXED) >= AHEAD_MAX || mount_is_follower(n) ||
	    __atomic_load_n(&b->stop, __ATOMIC_RELAXED) || mono_ns() < b->ahead_next)
		return 0;
	f.fd = openat(store_indexfd(n->store), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (f.fd < 0) {
		if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
			b->ahead_off = 1;
			rlog(LOG_INFO, "the tree's file system makes no unnamed files (O_TMPFILE): creates make theirs");
		} else {
			b->ahead_next = mono_ns() + 1000000000LL;	/* a full disk, say */
		}
		return 0;
	}
	f.job_fd = -1;
	if (fstat(f.fd, &f.st) < 0 || (f.job_fd = fcntl(f.fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		close(f.fd);
		b->ahead_next = mono_ns() + 1000000000LL;	/* out of descriptors, say */
		return 0;
	}
	lock_spinning(&n->seq_lock);
	if (b->ahead_n < AHEAD_MAX) {
		b->ahead[b->ahead_n] = f;
		__atomic_store_n(&b->ahead_n, b->ahead_n + 1, __ATOMIC_RELAXED);
		f.fd = -1;
	}
	pthread_mutex_unlock(&n->seq_lock);
	if (f.fd >= 0) {
		close(f.fd);
		close(f.job_fd);
		return 0;
	}
	return 1;
}

static void *behind_main(void *arg)
{
	struct behind *b = arg;

	thread_name("repfs-behind");
	for (;;) {
		uint64_t h = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE);

		/* no job: files made ahead, one at a time while no job comes */
		while (h == __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) && ahead_fill(b))
			;
		if (h == __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) && !behind_next(b, h))
			break;
		lock_spinning(&b->apply_mu);	/* a request doing the jobs itself (behind_wait()) soon lets go */
		if (__atomic_load_n(&b->head, __ATOMIC_RELAXED) < __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE))
			behind_do(b);	/* (a waiter may have done it meanwhile) */
		pthread_mutex_unlock(&b->apply_mu);
		if (b->delay_ms) {
			/* tests: requests waiting for the queue take it between two jobs */
			int64_t until = mono_ns() + (int64_t)b->delay_ms * 1000000;
			while (__atomic_load_n(&b->waiting, __ATOMIC_SEQ_CST) && mono_ns() < until)
				usleep(1000);
		}
	}
	return NULL;
}

int behind_start(struct node *n)
{
	struct behind *b = calloc(1, sizeof(*b));
	struct rlimit fsize;
	int ret;

	if (!b)
		return -ENOMEM;
	b->n = n;
	b->max_end = BEHIND_MAX_END;
	if (getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur != RLIM_INFINITY && fsize.rlim_cur < b->max_end)
		b->max_end = fsize.rlim_cur;
	b->fail_at = node_test_env("REPFS_TEST_FAIL_BEHIND");
	b->delay_ms = node_test_env("REPFS_TEST_BEHIND_DELAY_MS");
	pthread_mutex_init(&b->apply_mu, NULL);
	ret = pthread_create(&b->thread, NULL, behind_main, b);
	if (ret) {
		free(b);
		return -ret;
	}
	n->behind = b;
	return 0;
}

/* Applies what is queued, then ends the helper. */
void behind_stop(struct node *n)
{
	struct behind *b = n->behind;

	if (!b)
		return;
	__atomic_store_n(&b->stop, 1, __ATOMIC_SEQ_CST);
	if (__atomic_exchange_n(&b->sleeping, 0, __ATOMIC_SEQ_CST))
		futex_wake_int(&b->sleeping);
	pthread_join(b->thread, NULL);
	n->behind = NULL;
	for (int i = 0; i < BEHIND_SLOTS; i++)
		free(b->job[i].buf);
	for (int i = 0; i < b->ahead_n; i++) {
		close(b->ahead[i].fd);
		close(b->ahead[i].job_fd);
	}
	pthread_mutex_destroy(&b->apply_mu);
	free(b);
}


/* errno of the apply behind that failed, 0 if none (the node then refuses writes) */
int behind_failed(const struct behind *b)
{
	return b ? __atomic_load_n(&b->failed, __ATOMIC_RELAXED) : 0;
}

/* ---- what commit() asks of the queue for creates ---- */

/* Under seq_lock, a regular file's create applied but for its tail: queues the tail (returns 1). */
int behind_create_tail(struct node *n, struct record *r, int *fd)
{
	/*
	 * Without a descriptor to spare, the job links the file by its path
	 * (a rename drains the queue first); a directory's makes its marker by
	 * its path. Not inline: applied would move past writes still queued.
	 */
	behind_push(n->behind, r, *fd >= 0 ? fcntl(*fd, F_DUPFD_CLOEXEC, 0) : -1, 0);
	return 1;
}

/*
 * Under seq_lock: 1 if a create still queued gives path its name (a file
 * made ahead is named by its job, before head passes it). A create that
 * does not wait for the queue must not take such a name.
 */
int behind_name_queued(struct behind *b, const char *path)
{
	for (uint64_t i = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE); i < b->tail; i++) {
		const struct behind_job *j = &b->job[i % BEHIND_SLOTS];
		if (j->ahead && !strcmp(j->r.path, path))
			return 1;
	}
	return 0;
}

/*
 * Under seq_lock, for a create that may take a file made ahead (a is its
 * parent's descriptor and name; none of the queued creates takes it):
 * -EEXIST if the tree has the name; else a file made ahead, or -1 (none:
 * the create makes its own), with *job_fd a duplicate for the job and
 * *a->st what the file is.
 */
int behind_ahead_take(struct node *n, const struct create_at *a, int *job_fd)
{
	struct behind *b = n->behind;
	struct ahead_file *f;
	struct stat st;

	if (!b->ahead_n)
		return -1;	/* none left: the inline create finds a name taken itself (O_EXCL) */
	if (fstatat(a->dirfd, a->name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	if (errno != ENOENT)
		return -1;	/* the inline create says what is wrong */
	f = &b->ahead[b->ahead_n - 1];
	*job_fd = f->job_fd;
	*a->st = f->st;
	__atomic_store_n(&b->ahead_n, b->ahead_n - 1, __ATOMIC_RELAXED);
	return f->fd;
}

/* Under seq_lock: a file made ahead back for the next create (its record could not be logged). */
void behind_ahead_put(struct node *n, int fd, int job_fd, const struct stat *st)
{
	struct behind *b = n->behind;

	b->ahead[b->ahead_n] = (struct ahead_file){ fd, job_fd, *st };
	__atomic_store_n(&b->ahead_n, b->ahead_n + 1, __ATOMIC_RELAXED);
}
