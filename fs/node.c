/* node.c -- opening a DATADIR, crash recovery, the sequencer (group commit and checkpoints: checkpoint.c;
 * role changes: role.c) */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../lib/crypto.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../replication/repl.h"
#include "fuse_ops.h"
#include "behind.h"
#include "fuse_ring.h"
#include "inodes.h"

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ns_of_ts(ts);
}

static void say(char *err, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static int ensure_dir(int dfd, const char *name, mode_t mode)
{
	if (mkdirat(dfd, name, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int key_error(char *err, size_t len, const char *path, int ret)
{
	switch (ret) {
	case -ENOENT:
		say(err, len, "key file '%s' does not exist (create one with 'repfs keygen')", path);
		break;
	case -EINVAL:
		say(err, len, "key file '%s' is not a repfs key (32 bytes expected)", path);
		break;
	case -EPERM:
		say(err, len, "key file '%s' is readable by group or others (chmod 600 it)", path);
		break;
	default:
		say(err, len, "unable to read key file '%s': %s", path, strerror(-ret));
	}
	return ret;
}

/*
 * DATADIR/applied holds the seq of the last record applied to the tree,
 * written (not synced) after every apply, and the boot id of the machine that
 * wrote it. After kill -9 the page cache still holds both the tree and this
 * file, so recovery replays only what the tree lacks, never onto a newer
 * tree. After a reboot (another boot id) the page cache is gone and with it
 * any promise about the order in which things reached the disk: recovery
 * falls back to the checkpoint.
 */
#define APPLIED_BYTES 64

static void boot_id(char out[40])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, out, 39) : -1;

	out[n > 0 ? n : 0] = 0;
	out[strcspn(out, "\n")] = 0;
	if (fd >= 0)
		close(fd);
}

static uint64_t applied_hint(struct node *n)
{
	uint8_t buf[APPLIED_BYTES] = { 0 };
	char now[40];
	uint64_t seq;

	boot_id(now);
	if (pread(n->appliedfd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf) || !now[0] ||
	    strncmp((char *)buf + 8, now, 40))
		return 0;
	memcpy(&seq, buf, 8);
	return seq;
}

/*
 * After every record: a store into the file's page, mapped once at start
 * (applied_reset()), instead of a pwrite per record -- a system call and
 * the file's mtime update, on every change. The page cache outlives a kill
 * -9 of the daemon either way; neither is ever synced.
 */
void node_applied_mark(struct node *n, uint64_t seq)
{
	if (n->applied_map) {
		__atomic_store_n(n->applied_map, seq, __ATOMIC_RELAXED);
	} else if (pwrite(n->appliedfd, &seq, 8, 0) != 8) {
		/* only a hint for recovery: it falls back to the checkpoint */
	}
}

static int applied_open(struct node *n)
{
	uint8_t buf[APPLIED_BYTES] = { 0 };
	struct stat st;

	n->appliedfd = openat(n->dfd, "applied", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (n->appliedfd < 0 || fstat(n->appliedfd, &st) < 0)
		return -errno;
	if (st.st_size == APPLIED_BYTES)
		return 0;
	return pwrite(n->appliedfd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) ? 0 : -EIO;
}

/* After recovery: this boot's id, and where the tree stands. */
static void applied_reset(struct node *n)
{
	uint8_t buf[APPLIED_BYTES] = { 0 };

	memcpy(buf, &n->applied, 8);
	boot_id((char *)buf + 8);
	if (pwrite(n->appliedfd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		rlog(LOG_WARNING, "unable to write '%s/applied'", n->datadir);
	if (!n->applied_map) {
		void *m = mmap(NULL, APPLIED_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, n->appliedfd, 0);
		n->applied_map = m == MAP_FAILED ? NULL : m;	/* else: a pwrite per record */
	}
}

/*
 * The errors with which a change's own apply refuses it (a rename onto a
 * directory not empty, a name taken or missing, ...): what the leader's
 * undo takes back. Not a disk's (ENOSPC, EIO): a write applied behind its
 * answer that failed so is in the log to be applied again.
 */
static int refusal(int err)
{
	switch (err) {
	case ENOTEMPTY: case EEXIST: case ENOENT: case ENOTDIR: case EISDIR: case EINVAL: case EMLINK:
	case ELOOP: case ENAMETOOLONG: case EXDEV: case EPERM: case EACCES: case ENODATA: case ERANGE:
	case E2BIG: case EFBIG: case EOPNOTSUPP:
		return 1;
	default:
		return 0;
	}
}

/* Replays the log after the checkpoint onto the tree (crash recovery). */
static int recover(struct node *n, char *err, size_t errlen)
{
	struct oplog_reader *rd = NULL;
	struct replay *rp = NULL;
	struct record r;
	uint64_t from = n->st.checkpoint + 1, last = oplog_last(n->log).seq, refused = 0;
	int ret;

	n->applied = n->st.checkpoint;
	if (faccessat(n->dfd, NODE_SNAPSHOT_MARKER, F_OK, 0) == 0) {
		/* a snapshot was being taken: the log no longer continues the tree;
		 * the leader sends the snapshot again (only what is still missing) */
		n->snap_pending = 1;
		rlog(LOG_NOTICE, "a snapshot was interrupted; it resumes once the leader is reachable");
		return 0;
	}
	if (n->st.checkpoint > last) {
		/* the tree was checkpointed past what the log kept: impossible unless
		 * the log was cut by hand; trust the log */
		rlog(LOG_WARNING, "checkpoint %" PRIu64 " is past the log's end %" PRIu64, n->st.checkpoint, last);
		n->applied = last;
		return 0;
	}
	{
		uint64_t hint = applied_hint(n);
		if (hint > n->st.checkpoint && hint <= last) {
			from = hint + 1;
			n->applied = hint;
		}
	}
	if (from > last)
		return 0;
	if (from < oplog_first_seq(n->log))
		from = oplog_first_seq(n->log);
	ret = oplog_reader_open(&rd, n->logdirfd, n->key, from);
	if (ret) {
		say(err, errlen, "unable to read the log of '%s': %s", n->datadir, strerror(-ret));
		return ret;
	}
	ret = replay_begin(&rp);
	if (ret) {
		oplog_reader_free(rd);
		say(err, errlen, "out of memory");
		return ret;
	}
	while ((ret = oplog_reader_next(rd, &r)) == 1) {
		int a = replay_apply(rp, n->store, &r);
		if (a < 0 && r.seq == last && n->st.role == ROLE_LEADER && refusal(-a)) {
			/*
			 * A leader logs a change before it applies it, and takes
			 * the record back if the apply refuses it (docs/decisions.md
			 * 1). Killed in between, it left a change that was never
			 * answered, always the log's last record (the sequencer
			 * appends nothing before the undo), and never sent to a
			 * follower (they get applied records only): cut, as the
			 * undo would have.
			 */
			rlog(LOG_NOTICE, "the log's last record, the %s at %" PRIu64 ".%" PRIu64 " on '%s', is refused "
					 "by the tree (%s): a change that failed, and was not answered, when the daemon "
					 "stopped; removing it from the log",
			     record_type_name(r.type), r.epoch, r.seq, r.path, strerror(-a));
			refused = r.seq;
			continue;
		}
		if (a < 0)
			rlog(LOG_WARNING, "replay of %s at %" PRIu64 ".%" PRIu64 " on '%s' failed: %s",
			     record_type_name(r.type), r.epoch, r.seq, r.path, strerror(-a));
		n->applied = r.seq;
		n->replayed_at_start++;
	}
	if (replay_finish(rp, n->store))
		rlog(LOG_WARNING, "unable to restore directory times after replay");
	if (ret < 0) {
		uint64_t seq;
		oplog_reader_where(rd, &seq, NULL, 0, NULL);
		say(err, errlen, "log of '%s' is damaged at seq %" PRIu64 " (see 'repfs log --verify')",
		    n->datadir, seq);
	}
	oplog_reader_free(rd);
	if (ret >= 0 && refused && (ret = oplog_rewind(n->log, refused - 1)) < 0)
		say(err, errlen, "unable to remove a refused record from the log of '%s': %s", n->datadir,
		    strerror(-ret));
	return ret < 0 ? ret : 0;
}

static int first_start(struct node *n, const struct node_opts *o, char *err, size_t errlen)
{
	char host[64] = "node";

	if (!o->role) {
		say(err, errlen, "first start of '%s' needs --role leader or --role follower", n->datadir);
		return -EINVAL;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(n->st.name, sizeof(n->st.name), "%s", o->name ? o->name : host);
	n->st.role = o->role;
	n->st.epoch = o->role == ROLE_LEADER ? 1 : 0;
	n->st.checkpoint = 0;
	key_fingerprint(n->key, n->st.key_fpr);
	return 0;
}

int node_open(struct node **out, const struct node_opts *o, char *err, size_t errlen)
{
	uint8_t fpr[CRYPTO_MAC_BYTES];
	struct pos bad = { 0, 0 };
	uint64_t cut = 0;
	struct node *n;
	int ret, fresh = 0;

	*out = NULL;
	n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->dfd = n->logdirfd = n->lockfd = n->logfile = n->appliedfd = -1;
	pthread_mutex_init(&n->seq_lock, NULL);
	n->hold_at = UINT64_MAX;
	n->priv_gen = 1;	/* a handle's 0: not known */
	pthread_mutex_init(&n->bg_lock, NULL);
	pthread_mutex_init(&n->open_lock, NULL);
	pthread_cond_init(&n->bg_wake, NULL);
	n->started_ns = now_ns();
	n->log_retain = o->log_retain ? o->log_retain : NODE_DEFAULT_LOG_RETAIN;
	n->test_die_before_undo = getenv("REPFS_TEST_DIE_BEFORE_UNDO") != NULL;

	/* check what can be checked before anything is created or locked */
	ret = key_load(&n->key, o->keyfile);
	if (ret) {
		key_error(err, errlen, o->keyfile, ret);
		goto fail;
	}
	{
		char probe[PATH_MAX + 16];
		snprintf(probe, sizeof(probe), "%s/state", o->datadir);
		if (!o->role && access(probe, F_OK) < 0 && errno == ENOENT) {
			ret = -EINVAL;
			say(err, errlen, "first start of '%s' needs --role leader or --role follower", o->datadir);
			goto fail;
		}
	}
	if (mkdir(o->datadir, 0700) < 0 && errno != EEXIST) {
		ret = -errno;
		say(err, errlen, "unable to create data directory '%s': %s", o->datadir, strerror(errno));
		goto fail;
	}
	if (!realpath(o->datadir, n->datadir)) {
		ret = -errno;
		say(err, errlen, "unable to resolve data directory '%s': %s", o->datadir, strerror(errno));
		goto fail;
	}
	n->dfd = open(n->datadir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (n->dfd < 0) {
		ret = -errno;
		say(err, errlen, "data directory '%s' is not usable: %s", o->datadir, strerror(errno));
		goto fail;
	}
	n->lockfd = openat(n->dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (n->lockfd < 0) {
		ret = -errno;
		say(err, errlen, "unable to create lock file in '%s': %s", n->datadir, strerror(errno));
		goto fail;
	}
	if (flock(n->lockfd, LOCK_EX | LOCK_NB) < 0) {
		ret = -EBUSY;
		say(err, errlen, "data directory '%s' is in use by another repfs daemon", n->datadir);
		goto fail;
	}
	ret = state_load(n->dfd, &n->st);
	if (ret == -ENOENT) {
		fresh = 1;
		ret = first_start(n, o, err, errlen);
	} else if (ret == -EBADMSG) {
		say(err, errlen, "state file '%s/state' is corrupt (restore it or start from an empty data directory)",
		    n->datadir);
	} else if (ret) {
		say(err, errlen, "unable to read state file '%s/state': %s", n->datadir, strerror(-ret));
	}
	if (ret)
		goto fail;
	key_fingerprint(n->key, fpr);
	if (mac_equal(fpr, n->st.key_fpr) != 0) {
		ret = -EKEYREJECTED;
		say(err, errlen, "key file '%s' is not the key of data directory '%s'", o->keyfile, n->datadir);
		goto fail;
	}
	if (!fresh && o->name)
		snprintf(n->st.name, sizeof(n->st.name), "%s", o->name);
	/* the tree's root is the mount's root: 0755 like a fresh ext4 */
	if ((ret = ensure_dir(n->dfd, "tree", 0755)) || (ret = ensure_dir(n->dfd, "log", 0700)) ||
	    (ret = ensure_dir(n->dfd, "divergent", 0700))) {
		say(err, errlen, "unable to lay out data directory '%s': %s", n->datadir, strerror(-ret));
		goto fail;
	}
	n->logfile = openat(n->dfd, "repfs.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	rlog_setup(n->st.name, n->logfile, 1);
	rlog_rotate(n->dfd, "repfs.log", RLOG_MAX_BYTES);
	if (!fresh && o->role && o->role != n->st.role)
		rlog(LOG_WARNING, "'%s' is a %s; ignoring --role %s", n->datadir, role_name(n->st.role),
		     role_name(o->role));
	n->logdirfd = openat(n->dfd, "log", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (n->logdirfd < 0) {
		ret = -errno;
		say(err, errlen, "unable to open '%s/log': %s", n->datadir, strerror(errno));
		goto fail;
	}
	ret = oplog_open_above(&n->log, n->logdirfd, n->key, n->st.checkpoint, &cut, &bad);
	if (ret == -EBADMSG) {
		say(err, errlen, "log of '%s' is damaged at seq %" PRIu64 " (see 'repfs log --verify')", n->datadir,
		    bad.seq);
		goto fail;
	} else if (ret) {
		say(err, errlen, "unable to open the log of '%s': %s", n->datadir, strerror(-ret));
		goto fail;
	}
	n->cut_at_start = cut;
	if (cut)
		rlog(LOG_NOTICE, "cut a torn log tail of %" PRIu64 " bytes after seq %" PRIu64, cut,
		     oplog_last(n->log).seq);
	{
		char tree[PATH_MAX + 8];
		snprintf(tree, sizeof(tree), "%s/tree", n->datadir);
		ret = store_open(&n->store, tree);
	}
	if (ret) {
		say(err, errlen, "unable to open '%s/tree': %s (the file system must support trusted.* xattrs)",
		    n->datadir, strerror(-ret));
		goto fail;
	}
	ret = applied_open(n);
	if (ret) {
		say(err, errlen, "unable to create '%s/applied': %s", n->datadir, strerror(-ret));
		goto fail;
	}
	ret = recover(n, err, errlen);
	if (ret)
		goto fail;
	applied_reset(n);
	if (n->replayed_at_start)
		rlog(LOG_NOTICE, "crash recovery replayed %" PRIu64 " records up to seq %" PRIu64,
		     n->replayed_at_start, n->applied);
	if (fresh && n->st.role == ROLE_LEADER && oplog_last(n->log).seq == 0) {
		struct record b = { .type = REC_BRANCH, .off = 0, .len = 0 };
		ret = node_commit(n, &b, -1, NULL);
		if (!ret)
			ret = oplog_sync(n->log, b.seq);
		if (ret) {
			say(err, errlen, "unable to start the log of '%s': %s", n->datadir, strerror(-ret));
			goto fail;
		}
	}
	ret = node_checkpoint(n);
	if (ret) {
		say(err, errlen, "unable to write state file '%s/state': %s", n->datadir, strerror(-ret));
		goto fail;
	}
	*out = n;
	return 0;
fail:
	node_close(n);
	return ret;
}

/*
 * Applies r, which the log holds. A write that a full disk stopped half way
 * through extending its file is taken back (the size and mtime it found), so
 * that the tree holds nothing of a record the log will not keep.
 */
static int apply_or_take_back(struct node *n, struct record *r, int hint_fd, int *out_fd, unsigned flags)
{
	struct stat before = { .st_size = -1 };
	int ret;

	if (hint_fd >= 0 && (r->type == REC_WRITE || r->type == REC_FALLOCATE || r->type == REC_COPY) &&
	    fstat(hint_fd, &before) < 0)
		before.st_size = -1;
	ret = apply_record(n->store, r, APPLY_STRICT | flags, hint_fd, out_fd);
	if (ret == 1)
		ret = -ESTALE;
	if (ret && before.st_size >= 0 && (uint64_t)before.st_size <= r->off) {
		struct timespec ts[2] = { { 0, UTIME_OMIT }, before.st_mtim };
		if (ftruncate(hint_fd, before.st_size) < 0 || futimens(hint_fd, ts) < 0)
			rlog(LOG_WARNING, "unable to take back a partial write: %s", strerror(errno));
	}
	return ret;
}

static int append_failed(const struct record *r, int ret)
{
	rlog(LOG_ERR, "unable to append %s to the log: %s", record_type_name(r->type), strerror(-ret));
	return (ret == -ENOSPC || ret == -EDQUOT) ? ret : -EIO;
}

static void undo_failed(struct node *n, const struct record *r)
{
	/* the record cannot be taken back: stop accepting changes */
	n->fault = EIO;
	rlog(LOG_ERR, "unable to undo %s at seq %" PRIu64 " after it failed; refusing writes",
	     record_type_name(r->type), r->seq);
}

/* ---- the helper threads ---- */

/* Test hooks: a number from the environment (the Nth job of a helper fails, a delay; 0: none). */
unsigned node_test_env(const char *var)
{
	const char *v = getenv(var);

	return v ? (unsigned)atoi(v) : 0;
}

/* Tells a helper thread waiting on cv under mu to stop, and joins it. */
static void helper_thread_stop(pthread_t t, pthread_mutex_t *mu, pthread_cond_t *cv, int *stop)
{
	pthread_mutex_lock(mu);
	*stop = 1;
	pthread_cond_signal(cv);
	pthread_mutex_unlock(mu);
	pthread_join(t, NULL);
}

/* ---- the apply helper: a large write's tree half, on another CPU ---- */

struct apply_helper {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;	/* a job was posted, or stop */
	pthread_cond_t done;	/* the job finished */
	int stop, posted, ret;
	struct node *n;
	struct record *r;
	int fd;
	unsigned served, fail_at;	/* test hook: the fail_at'th piece fails (REPFS_TEST_FAIL_PIECE) */
	int last_fd;		/* the descriptor and end of the last piece applied (stream_out()) */
	uint64_t last_end;
};

/*
 * The tree's pages of a sequential large write (its pieces, each after the
 * last one applied through the same descriptor) start their writeback at
 * once and are dropped STREAM_DROP_LAG further on (a random writer's hot
 * pages stay): a sequential writer's data would otherwise stay cached
 * twice (the log drops its own once synced: oplog.c, uncache()), and on the
 * bench VM a page the guest has not touched
 * lately costs 8-12 us (docs/decisions.md 14): 1 GiB written right after
 * another program's 1 GiB went at 240-380 MB/s, and at 640-730 with the
 * pages recycled. A file written so is read back from the disk, as after
 * O_DIRECT; with the writeback cache the kernel keeps its own copy. Pages
 * not yet written back are not dropped (a hint, nothing depends on it).
 */
#define STREAM_DROP_LAG (16u << 20)

static void stream_out(int fd, uint64_t off, uint32_t len)
{
	(void)sync_file_range(fd, (off_t)off, len, SYNC_FILE_RANGE_WRITE);
	if (off >= STREAM_DROP_LAG)
		(void)posix_fadvise(fd, (off_t)(off - STREAM_DROP_LAG), len, POSIX_FADV_DONTNEED);
}

static void *helper_main(void *arg)
{
	struct apply_helper *h = arg;

	thread_name("repfs-apply");
	pthread_mutex_lock(&h->mu);
	for (;;) {
		while (!h->posted && !h->stop)
			pthread_cond_wait(&h->wake, &h->mu);
		if (!h->posted)
			break;
		pthread_mutex_unlock(&h->mu);
		int ret = ++h->served == h->fail_at ? -EIO : apply_or_take_back(h->n, h->r, h->fd, NULL, 0);
		if (!ret && h->fd == h->last_fd && h->r->off == h->last_end)
			stream_out(h->fd, h->r->off, h->r->data_len);	/* a sequential writer's */
		h->last_fd = h->fd;
		h->last_end = h->r->off + h->r->data_len;
		pthread_mutex_lock(&h->mu);
		h->ret = ret;
		h->posted = 0;
		pthread_cond_signal(&h->done);
	}
	pthread_mutex_unlock(&h->mu);
	return NULL;
}

static void helper_post(struct apply_helper *h, struct record *r, int fd)
{
	pthread_mutex_lock(&h->mu);
	h->r = r;
	h->fd = fd;
	h->posted = 1;
	pthread_cond_signal(&h->wake);
	pthread_mutex_unlock(&h->mu);
}

static int helper_wait(struct apply_helper *h)
{
	int ret;

	pthread_mutex_lock(&h->mu);
	while (h->posted)
		pthread_cond_wait(&h->done, &h->mu);
	ret = h->ret;
	pthread_mutex_unlock(&h->mu);
	return ret;
}

static int helper_start(struct node *n)
{
	struct apply_helper *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return -ENOMEM;
	h->n = n;
	h->last_fd = -1;
	h->fail_at = node_test_env("REPFS_TEST_FAIL_PIECE");
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->wake, NULL);
	pthread_cond_init(&h->done, NULL);
	ret = pthread_create(&h->thread, NULL, helper_main, h);
	if (ret) {
		free(h);
		return -ret;
	}
	n->helper = h;
	return 0;
}

static void helper_stop(struct node *n)
{
	struct apply_helper *h = n->helper;

	if (!h)
		return;
	helper_thread_stop(h->thread, &h->mu, &h->wake, &h->stop);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->wake);
	pthread_cond_destroy(&h->done);
	free(h);
	n->helper = NULL;
}

/*
 * A large write is logged as pieces of NODE_PIECE_BYTES, and each piece is
 * applied to the tree by the helper thread while the next one is MAC'd and
 * appended: the log's half and the tree's half of the work on two CPUs,
 * where one write used to run both on one while the writer waited. A piece
 * goes to the tree only once it is whole in the log, so a kill -9 cannot
 * leave the tree ahead of the log. When a piece fails to apply, it and the
 * one logged after it are taken back out of the log; the pieces before it
 * stay, and r->data_len says how much they hold (the caller makes that a
 * short write, as ext4's on a full disk, or an error). All pieces go to one
 * segment (oplog_undo_to() works within one): the log rolls over first if
 * they would not fit. If a failed piece cannot be taken back, the node
 * faults and the write fails whole (r->data_len 0). Called with seq_lock
 * held; nobody sees applied move until the whole write is done.
 */
static int pieces_fit(struct node *n, const struct record *r, int hint_fd)
{
	uint64_t pieces = (r->data_len + NODE_PIECE_BYTES - 1) / NODE_PIECE_BYTES;

	/* a piece's record: header, body, path (NUL included), empty path2 and name, MAC */
	return n->helper && r->type == REC_WRITE && hint_fd >= 0 && pieces > 1 &&
	       oplog_make_room(n->log, r->data_len + pieces * (REC_HEADER_BYTES + REC_BODY_BYTES + PATH_MAX +
							       2 + CRYPTO_MAC_BYTES)) == 0;
}

static int commit_pieces(struct node *n, struct record *r, int hint_fd)
{
	struct record p[2];
	struct oplog_mark m[2];
	uint32_t logged = 0, done = 0;
	int k = 0, busy = 0, ret = 0, stuck = 0;

	for (;;) {
		int more = logged < r->data_len;

		if (more) {
			p[k] = *r;
			p[k].off = r->off + logged;
			p[k].data = (const uint8_t *)r->data + logged;
			p[k].data_len = r->data_len - logged < NODE_PIECE_BYTES ? r->data_len - logged : NODE_PIECE_BYTES;
			oplog_mark(n->log, &m[k]);
			ret = oplog_append(n->log, &p[k]);
			if (ret) {
				ret = append_failed(&p[k], ret);	/* nothing of p[k] is in the log */
				more = 0;
			}
		}
		if (busy) {
			int aret = helper_wait(n->helper);

			busy = 0;
			if (aret) {
				/* the piece before failed: it goes, and this one if logged */
				if (oplog_undo_to(n->log, &m[!k]) < 0) {
					undo_failed(n, &p[!k]);
					aret = -EIO;
					stuck = 1;
				}
				ret = aret;
				more = 0;
			} else {
				done += p[!k].data_len;
				n->applied = p[!k].seq;
			}
		}
		if (!more)
			break;
		helper_post(n->helper, &p[k], hint_fd);
		busy = 1;
		logged += p[k].data_len;
		k = !k;
	}
	if (done) {
		node_applied_mark(n, n->applied);
		r->seq = n->applied;
	}
	r->data_len = stuck ? 0 : done;
	return ret;
}

static int commit(struct node *n, struct record *r, int hint_fd, int *out_fd, int may_behind, int *went_behind,
		  const struct create_at *at)
{
	int ret, ns = 0, behind, ahead = -1, job_fd = -1;

	pthread_mutex_lock(&n->seq_lock);
	behind = may_behind && behind_may(n, r, hint_fd, out_fd);
	if (!behind)
		behind_drain_locked(n);	/* the tree has everything before r when r is applied */
	if (n->fault) {
		ret = -EIO;
		goto whole;	/* not a byte of a write logged: op_write() must not answer it as done */
	}
	if (n->st.role != ROLE_LEADER) {
		ret = -EROFS;	/* stepped down meanwhile */
		goto whole;
	}
	if (behind && r->type == REC_CREATE &&
	    (behind_name_queued(n->behind, r->path) || (at && (ahead = behind_ahead_take(n, at, &job_fd)) == -EEXIST))) {
		ret = -EEXIST;
		goto whole;
	}
	r->epoch = n->st.epoch;
	r->time_ns = now_ns();
	if ((r->type == REC_WRITE || r->type == REC_FALLOCATE) && (r->flags & REC_F_KEEP_MTIME)) {
		/*
		 * The mtime it keeps goes into the record, read here where no
		 * other change can come between: its apply, and any replay, set
		 * that one (restoring what the file has at apply time would keep
		 * the mtime of a write whose apply a crash cut short).
		 */
		struct stat st;
		if (hint_fd >= 0 && fstat(hint_fd, &st) == 0)
			r->mtime_ns = ns_of_ts(st.st_mtim);
		else
			r->flags &= ~REC_F_KEEP_MTIME;
	}
	__atomic_store_n(&n->last_commit_ns, r->time_ns, __ATOMIC_RELAXED);	/* a snapshot yields to it */
	if (pieces_fit(n, r, hint_fd)) {
		ret = commit_pieces(n, r, hint_fd);
		goto out;
	}
	ret = oplog_append(n->log, r);
	if (ret) {
		if (ahead >= 0)
			behind_ahead_put(n, ahead, job_fd, at->st);
		ret = append_failed(r, ret);
		goto whole;
	}
	if (ahead >= 0) {
		/* named by the helper: then the parent's mtime, the index's link, applied, ns_changes */
		__atomic_add_fetch(&n->ns_changes, 1, __ATOMIC_SEQ_CST);
		behind_push(n->behind, r, job_fd, 1);
		*out_fd = ahead;
		*went_behind = 2;
		pthread_mutex_unlock(&n->seq_lock);
		return 0;
	}
	if (behind && r->type == REC_WRITE) {
		behind_push(n->behind, r, hint_fd, 0);	/* applied, then counted in applied, by the helper */
		pthread_mutex_unlock(&n->seq_lock);
		return 0;
	}
	ns = r->type == REC_CREATE || r->type == REC_LINK || r->type == REC_UNLINK || r->type == REC_RMDIR ||
	     r->type == REC_RENAME;
	if (ns)
		__atomic_add_fetch(&n->ns_changes, 1, __ATOMIC_SEQ_CST);
	ret = apply_or_take_back(n, r, hint_fd, out_fd, behind ? APPLY_TAIL_LATER : 0);
	if (!ret && behind && (ret = behind_create_tail(n, r, out_fd)) == 1) {
		*went_behind = 1;
		pthread_mutex_unlock(&n->seq_lock);	/* the helper moves applied, then ns_changes */
		return 0;
	}
	if (ret) {
		if (n->test_die_before_undo && n->st.role == ROLE_LEADER)
			raise(SIGKILL);	/* test hook: killed between a refused apply and its undo */
		if (oplog_undo_last(n->log) < 0)
			undo_failed(n, r);
		goto whole;
	}
	n->applied = r->seq;
	node_applied_mark(n, r->seq);
	goto out;
whole:
	if (r->type == REC_WRITE)
		r->data_len = 0;	/* nothing of it was written */
out:
	if (ns)	/* after applied moved: a listing that saw no change knows the seq it reflects */
		__atomic_add_fetch(&n->ns_changes, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&n->seq_lock);
	if (!ret)
		repl_notify(n->repl);
	return ret;
}

int node_commit(struct node *n, struct record *r, int hint_fd, int *out_fd)
{
	return commit(n, r, hint_fd, out_fd, 0, NULL, NULL);
}

int node_commit_behind(struct node *n, struct record *r, int hint_fd)
{
	return commit(n, r, hint_fd, NULL, 1, NULL, NULL);
}

int node_commit_create(struct node *n, struct record *r, int *out_fd, int *behind, const struct create_at *at)
{
	*behind = 0;
	return commit(n, r, -1, out_fd, 1, behind, at);
}

enum role node_role(struct node *n)
{
	enum role r;

	pthread_mutex_lock(&n->seq_lock);
	r = n->st.role;
	pthread_mutex_unlock(&n->seq_lock);
	return r;
}

/*
 * applied, short of the records whose cached views the mount still has to
 * drop. Under seq_lock, or read as they are (atomic loads) by a status that
 * could not take it.
 */
static uint64_t applied_shown(const struct node *n)
{
	uint64_t applied = __atomic_load_n(&n->applied, __ATOMIC_RELAXED),
		 low = __atomic_load_n(&n->inval_low, __ATOMIC_RELAXED);

	if (__atomic_load_n(&n->inval_pending, __ATOMIC_RELAXED) && low && low - 1 < applied)
		return low - 1;
	return applied;
}

uint64_t node_applied(struct node *n)
{
	uint64_t a;

	pthread_mutex_lock(&n->seq_lock);
	a = applied_shown(n);
	pthread_mutex_unlock(&n->seq_lock);
	return a;
}

/*
 * Under seq_lock: the record at seq was applied, the mount's caches of it
 * are still to be dropped. Returns 1 if inval_end() must follow.
 */
static int inval_begin(struct node *n, uint64_t seq)
{
	if (!n->se)
		return 0;
	if (!n->inval_pending++ || seq < n->inval_low)
		n->inval_low = seq;
	return 1;
}

/* Drops the mount's caches of what r changed, then lets node_applied() count it. */
static void inval_end(struct node *n, const struct record *r, int begun)
{
	if (!begun)
		return;
	if (n->se)
		ino_invalidate_record(n, r);
	pthread_mutex_lock(&n->seq_lock);
	if (n->inval_pending && !--n->inval_pending)
		n->inval_low = 0;
	pthread_mutex_unlock(&n->seq_lock);
}

/*
 * 1 if rs[i] is a write and rs[i + 1], in the same burst, a write to the same
 * file that is applied now too (not held for a verify): the next one sets
 * the file's mtime, so this one need not (a stream of appends costs a
 * utimensat per record otherwise). Under seq_lock.
 */
static int mtime_follows(const struct node *n, const struct record *rs, int i, int done)
{
	return i + 1 < done && rs[i + 1].seq <= n->hold_at && writes_one_file(&rs[i], &rs[i + 1]);
}

int node_follow_records(struct node *n, const uint8_t *const bufs[], const size_t lens[], int k)
{
	struct record rs[OPLOG_BATCH_MAX];
	uint8_t begun[OPLOG_BATCH_MAX] = { 0 };
	int ret, done = 0, marked = 0;

	if (k > OPLOG_BATCH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&n->seq_lock);
	if (n->st.role != ROLE_FOLLOWER) {
		pthread_mutex_unlock(&n->seq_lock);
		return -EPERM;
	}
	ret = oplog_append_raw_many(n->log, bufs, lens, k, rs, &done);
	for (int i = 0; i < done; i++) {
		struct record *r = &rs[i];
		int a;
		if (r->epoch > n->st.epoch)
			n->st.epoch = r->epoch;
		if (n->snap_pending || r->seq > n->hold_at)
			continue;	/* logged (and acknowledged) now, applied later: node_release(), node_snapshot_finish() */
		ino_hold_special(n, r);	/* a FIFO the mount holds open, whose last name r takes */
		a = apply_record(n->store, r, mtime_follows(n, rs, i, done) ? APPLY_NO_MTIME : 0, -1, NULL);
		if (a == 1)
			rlog(LOG_DEBUG, "skipped %s at seq %" PRIu64 " on '/%s': already done or superseded",
			     record_type_name(r->type), r->seq, r->path);
		if (a < 0)
			rlog(LOG_WARNING, "apply of %s at seq %" PRIu64 " on '/%s' failed: %s", record_type_name(r->type),
			     r->seq, r->path, strerror(-a));
		n->applied = r->seq;
		marked = 1;
		begun[i] = (uint8_t)inval_begin(n, r->seq);
	}
	if (marked)
		node_applied_mark(n, n->applied);	/* once per burst */
	pthread_mutex_unlock(&n->seq_lock);
	for (int i = 0; i < done; i++)
		inval_end(n, &rs[i], begun[i]);
	return ret;
}

/*
 * Applies the records the log holds after applied, up to upto, one at a
 * time (the receive thread may append meanwhile). Returns the last applied.
 */
static uint64_t apply_logged(struct node *n, uint64_t upto)
{
	struct oplog_reader *rd = NULL;
	struct record r;
	uint64_t applied;

	pthread_mutex_lock(&n->seq_lock);
	applied = n->applied;
	pthread_mutex_unlock(&n->seq_lock);
	if (applied >= upto || oplog_reader_open(&rd, n->logdirfd, n->key, applied + 1))
		return applied;
	while (oplog_reader_next(rd, &r) == 1 && r.seq <= upto) {
		int a = 0, done = 0, begun = 0;
		pthread_mutex_lock(&n->seq_lock);
		if (!n->snap_pending && r.seq == n->applied + 1) {
			ino_hold_special(n, &r);
			a = apply_record(n->store, &r, 0, -1, NULL);
			n->applied = r.seq;
			node_applied_mark(n, r.seq);
			begun = inval_begin(n, r.seq);
			done = 1;
		}
		applied = n->applied;
		pthread_mutex_unlock(&n->seq_lock);
		if (a == 1)
			rlog(LOG_DEBUG, "skipped %s at seq %" PRIu64 " on '/%s': already done or superseded",
			     record_type_name(r.type), r.seq, r.path);
		if (a < 0)
			rlog(LOG_WARNING, "apply of %s at seq %" PRIu64 " on '/%s' failed: %s", record_type_name(r.type),
			     r.seq, r.path, strerror(-a));
		if (!done)
			break;
		inval_end(n, &r, begun);
	}
	oplog_reader_free(rd);
	return applied;
}

uint64_t node_hold(struct node *n, uint64_t upto)
{
	uint64_t applied;

	pthread_mutex_lock(&n->seq_lock);
	if (n->hold_at == UINT64_MAX || n->hold_at < n->applied)
		n->hold_at = n->applied;
	pthread_mutex_unlock(&n->seq_lock);
	applied = apply_logged(n, upto);
	pthread_mutex_lock(&n->seq_lock);
	if (n->hold_at < n->applied)
		n->hold_at = n->applied;
	applied = n->applied;
	pthread_mutex_unlock(&n->seq_lock);
	return applied;
}

void node_release(struct node *n)
{
	for (;;) {
		apply_logged(n, UINT64_MAX);
		pthread_mutex_lock(&n->seq_lock);
		if (n->snap_pending || n->applied >= oplog_last(n->log).seq) {
			/* nothing logged is left unapplied: the receive thread takes over */
			n->hold_at = UINT64_MAX;
			pthread_mutex_unlock(&n->seq_lock);
			return;
		}
		pthread_mutex_unlock(&n->seq_lock);
	}
}

int node_sync(struct node *n, uint64_t seq)
{
	int ret, lost;

	/*
	 * Everything done so far (seq 0): on a leader, what it applied, with
	 * nothing left behind (writes answered before are in applied). A record
	 * appended beyond is an operation still in progress, which may yet be
	 * taken back, and then no follower would ever hold it.
	 */
	node_lock_settled(n);
	if (!seq)
		seq = n->st.role == ROLE_LEADER ? n->applied : oplog_last(n->log).seq;
	/* an apply behind failed: what it answered after is in the log only, and no follower gets it */
	lost = behind_failed(n->behind) &&
	       oplog_last(n->log).seq > n->applied;
	pthread_mutex_unlock(&n->seq_lock);
	if (lost)
		return -EIO;
	ret = node_sync_local(n, seq);
	if (ret || node_role(n) != ROLE_LEADER)
		return ret;	/* a follower has nothing of its own to replicate */
	return repl_wait(n->repl, seq);
}

int node_sync_local(struct node *n, uint64_t seq)
{
	int ret;

	if (!seq)
		seq = oplog_last(n->log).seq;
	ret = oplog_sync(n->log, seq);
	if (ret && !oplog_failed(n->log)) {
		/* the log is sound (no descriptor to sync with: oplog_sync()): the next sync tries again */
		static int64_t warned;
		int64_t now = now_ns();
		if (now - __atomic_load_n(&warned, __ATOMIC_RELAXED) > 10000000000LL) {
			__atomic_store_n(&warned, now, __ATOMIC_RELAXED);
			rlog(LOG_WARNING, "unable to make the log durable now: %s; trying again", strerror(-ret));
		}
		return -EIO;
	}
	if (ret) {
		pthread_mutex_lock(&n->seq_lock);
		if (!n->fault) {
			n->fault = EIO;
			rlog(LOG_ERR, "unable to make the log durable: %s; refusing writes", strerror(-ret));
		}
		pthread_mutex_unlock(&n->seq_lock);
	}
	return ret;
}

int node_start(struct node *n)
{
	int ret = node_start_sync(n);

	if (ret)
		return ret;
	if (helper_start(n) < 0)
		rlog(LOG_WARNING, "unable to start the apply helper: large writes run on one thread");
	if (behind_start(n) < 0)
		rlog(LOG_WARNING, "unable to start the helper that applies writes behind: they are applied inline");
	n->bg_started = 1;
	return 0;
}

/*
 * How long status waits for the locks a change holds: a change whose disk
 * does not answer (a frozen or failing file system) holds them as long, and
 * status is what an operator runs then. Past it, status reads the figures
 * without the lock and says so ("busy").
 */
#define STATUS_WAIT_MS 200

static long ms_until(int64_t deadline)
{
	int64_t left = deadline - mono_ns();

	return left > 0 ? (long)(left / 1000000) : 0;
}

int node_status_json(struct node *n, char *buf, size_t len)
{
	int64_t until = mono_ns() + STATUS_WAIT_MS * 1000000LL;	/* one wait for all the locks */
	struct oplog_peek lp;
	struct pos last;
	uint64_t applied, durable, ckpt, epoch;
	char name[64], repl[8192], leader[80], dd[2 * PATH_MAX], mp[2 * PATH_MAX];
	enum role role;
	int fault, tree_fault, logfault, busy, locked;
	unsigned dirfds, dirfds_max;

	busy = oplog_peek(n->log, &lp, ms_until(until));
	last = lp.last;
	durable = lp.durable;
	logfault = lp.failed;
	/* word-sized fields written under seq_lock: read as they are if a stuck change holds it (the name does not change) */
	locked = lock_within(&n->seq_lock, ms_until(until)) == 0;
	applied = applied_shown(n);
	ckpt = __atomic_load_n(&n->st.checkpoint, __ATOMIC_RELAXED);
	role = __atomic_load_n(&n->st.role, __ATOMIC_RELAXED);
	epoch = __atomic_load_n(&n->st.epoch, __ATOMIC_RELAXED);
	fault = __atomic_load_n(&n->fault, __ATOMIC_RELAXED);
	if (locked)
		pthread_mutex_unlock(&n->seq_lock);
	else
		busy = 1;
	tree_fault = !logfault && behind_failed(n->behind);
	snprintf(name, sizeof(name), "%s", n->st.name);
	repl_status_json(n->repl, repl, sizeof(repl), applied, last.seq, lp.end_pos, ms_until(until), &busy);
	ino_table_fds(n, &dirfds, &dirfds_max);
	if (role == ROLE_LEADER)
		snprintf(leader, sizeof(leader), "\"%s\"", name);
	else if (repl_leader(n->repl, leader + 1, sizeof(leader) - 2, ms_until(until)) == 0)
		leader[0] = '"', strcat(leader, "\"");
	else
		snprintf(leader, sizeof(leader), "null");
	return snprintf(buf, len,
			"{\"name\":\"%s\",\"role\":\"%s\",\"running\":true,\"epoch\":%" PRIu64
			",\"log_epoch\":%" PRIu64 ",\"seq\":%" PRIu64
			",\"applied\":%" PRIu64 ",\"durable\":%" PRIu64 ",\"checkpoint\":%" PRIu64
			",\"leader\":%s,%s"
			",\"datadir\":\"%s\",\"mountpoint\":\"%s\",\"log_first_seq\":%" PRIu64
			",\"log_bytes\":%" PRIu64 ",\"replayed_at_start\":%" PRIu64 ",\"torn_bytes_cut_at_start\":%" PRIu64
			",\"divergent\":%d,\"fuse_io\":\"%s\",\"fuse_ring_requests\":%llu,\"writeback_cache\":%s,\"posix_acls\":%s"
			",\"open_files\":%u,\"open_files_max\":%u,\"dir_descriptors\":%u,\"dir_descriptors_max\":%u"
			",\"uptime_s\":%.1f,\"busy\":%s,\"faults\":[%s%s%s]}\n",
			name, role_name(role), epoch > last.epoch ? epoch : last.epoch, last.epoch, last.seq, applied,
			durable, ckpt,
			leader, repl, json_escape(dd, sizeof(dd), n->datadir), json_escape(mp, sizeof(mp), n->mountpoint), oplog_first_seq(n->log),
			lp.bytes, n->replayed_at_start, n->cut_at_start, node_divergent_count(n),
			fring_serving(__atomic_load_n(&n->ring, __ATOMIC_ACQUIRE)) ? "io_uring" : "/dev/fuse",
			fring_served(__atomic_load_n(&n->ring, __ATOMIC_ACQUIRE)), n->wb ? "true" : "false", n->acl ? "true" : "false",
			__atomic_load_n(&n->nopen, __ATOMIC_RELAXED), n->open_max, dirfds, dirfds_max,
			(double)(now_ns() - n->started_ns) / 1e9, busy ? "true" : "false", (fault || logfault) ? (tree_fault ? "\"tree: " : "\"log: ") : "",
			(fault || logfault) ? strerror(logfault ? logfault : fault) : "",
			(fault || logfault) ? "; writes refused\"" : "");
}

void node_stop_background(struct node *n)
{
	if (!n || !n->bg_started)
		return;
	node_stop_sync(n);
	helper_stop(n);
	n->bg_started = 0;
}

void node_close(struct node *n)
{
	if (!n)
		return;
	node_stop_background(n);
	behind_stop(n);	/* after replication stopped: its threads may wait for the queue */
	if (n->log && n->store && !n->fault && !oplog_failed(n->log)) {
		int ret = node_checkpoint(n);
		if (ret)
			rlog(LOG_ERR, "final checkpoint failed: %s", strerror(-ret));
	}
	store_free(n->store);
	oplog_free(n->log);
	key_free(n->key);
	if (n->logdirfd >= 0)
		close(n->logdirfd);
	if (n->logfile >= 0)
		close(n->logfile);
	if (n->applied_map)
		munmap(n->applied_map, APPLIED_BYTES);
	if (n->appliedfd >= 0)
		close(n->appliedfd);
	if (n->lockfd >= 0)
		close(n->lockfd);
	if (n->dfd >= 0)
		close(n->dfd);
	pthread_mutex_destroy(&n->seq_lock);
	pthread_mutex_destroy(&n->bg_lock);
	pthread_mutex_destroy(&n->open_lock);
	pthread_cond_destroy(&n->bg_wake);
	free(n);
}
