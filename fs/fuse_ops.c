/* fuse_ops.c -- FUSE operations: reads pass through, changes become records
 *
 * Each mutating operation builds a record naming its objects by path and id
 * and hands it to node_commit(), which logs and applies it. Permission checks
 * are the kernel's (default_permissions); new objects belong to the caller.
 * The project's own metadata (the id xattr) is neither listed nor readable
 * nor writable through the mount.
 */
#include "fuse_ops.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../lib/log.h"
#include "node.h"

/* An open file: the backing descriptor and the file's id. */
struct handle {
	int fd;
	int sync;	/* opened O_SYNC or O_DSYNC: each write waits for the log */
	int direct;	/* write-only on a leader: the kernel's direct I/O (see op_write) */
	int clean;	/* direct: the kernel holds no pages of the file from before (see op_write) */
	uint8_t id[FILE_ID_BYTES];
	struct handle *next, *prev;	/* node->open_files, under open_lock */
};

/*
 * Unlinked while open. libfuse's high-level API keeps such a file alive by
 * renaming it to ".fuse_hidden<n>" and unlinking that name on the last close.
 * We log the rename as the unlink it stands for, remove the name from the tree
 * (the open descriptors keep the inode), and remember the hidden name here so
 * that fstat, fchmod, ftruncate, f*xattr and the final unlink keep working
 * on the descriptor. Nothing of it is ever visible in the tree or the log.
 */
struct hidden {
	char name[64];
	uint8_t id[FILE_ID_BYTES];
	struct hidden *next;	/* node->hidden, under open_lock */
};

#define HIDDEN_PREFIX ".fuse_hidden"

/*
 * Hard links. libfuse's path-based API gives each name of a file its own
 * kernel inode, each with its own cached attributes and pages. So that a
 * change through one name shows at once through the others (as on ext4), we
 * remember the names of multiply-linked files the kernel has asked about and
 * invalidate the other names' caches after every change of such a file.
 */
#define LINKS_MAX 1024
struct links {
	uint64_t ino[LINKS_MAX];
	char *path[LINKS_MAX];
	int next;	/* ring: the oldest entry is replaced first */
	int used;
};

struct dirhandle {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

static struct node *node_of(void)
{
	return fuse_get_context()->private_data;
}

static int is_follower(const struct node *n)
{
	return n->st.role != ROLE_LEADER;
}

static struct handle *fh_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* The path a record names for an open file: none once it is unlinked. */
static const char *open_path(const char *path, struct record *r);

/* "/a/b" -> "a/b"; the root is "". */
static const char *rec_path(const char *path)
{
	while (path && *path == '/')
		path++;
	return path ? path : "";
}

/*
 * The name in path if it has the form libfuse gives hidden files
 * (".fuse_hidden" and 16 hex digits), else NULL. Whether it really is one of
 * ours is up to the hidden table: a user's own file may bear such a name.
 */
static const char *hidden_name(const char *path)
{
	const char *base = path ? strrchr(path, '/') : NULL;
	size_t plen = sizeof(HIDDEN_PREFIX) - 1;

	base = base ? base + 1 : path;
	if (!base || strncmp(base, HIDDEN_PREFIX, plen) || strlen(base) != plen + 16)
		return NULL;
	for (const char *p = base + plen; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return NULL;
	return base;
}

/*
 * 1 if an open handle other than skip (NULL: none) has this id -- with
 * caching set, one that may hold pages in the kernel: one that reads through
 * the page cache (not direct), or a shared mapping, which keeps its handle
 * open until it is unmapped.
 */
static int open_by(struct node *n, const uint8_t id[FILE_ID_BYTES], const struct handle *skip, int caching)
{
	int found = 0;

	pthread_mutex_lock(&n->open_lock);
	for (struct handle *o = n->open_files; o && !found; o = o->next)
		found = o != skip && !(caching && o->direct) && !memcmp(o->id, id, FILE_ID_BYTES);
	pthread_mutex_unlock(&n->open_lock);
	return found;
}

static void track_handle(struct node *n, struct handle *h)
{
	pthread_mutex_lock(&n->open_lock);
	h->prev = NULL;
	h->next = n->open_files;
	if (h->next)
		h->next->prev = h;
	n->open_files = h;
	pthread_mutex_unlock(&n->open_lock);
}

static void untrack_handle(struct node *n, struct handle *h)
{
	pthread_mutex_lock(&n->open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		n->open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&n->open_lock);
}

/*
 * For a hidden path: a dup of an open descriptor of the file and its id.
 * -ENOENT if the name is unknown or no descriptor is open any more.
 */
static int hidden_fd(struct node *n, const char *name, uint8_t id[FILE_ID_BYTES])
{
	struct hidden *x;
	struct handle *h;
	int fd = -ENOENT;

	pthread_mutex_lock(&n->open_lock);
	for (x = n->hidden; x && strcmp(x->name, name); x = x->next)
		;
	for (h = n->open_files; x && h; h = h->next) {
		if (!memcmp(h->id, x->id, FILE_ID_BYTES)) {
			fd = dup(h->fd);
			if (fd < 0)
				fd = -errno;
			memcpy(id, x->id, FILE_ID_BYTES);
			break;
		}
	}
	pthread_mutex_unlock(&n->open_lock);
	return fd;
}

static int hide(struct node *n, const char *name, const uint8_t id[FILE_ID_BYTES])
{
	struct hidden *x = calloc(1, sizeof(*x));

	if (!x)
		return -ENOMEM;
	snprintf(x->name, sizeof(x->name), "%s", name);
	memcpy(x->id, id, FILE_ID_BYTES);
	pthread_mutex_lock(&n->open_lock);
	x->next = n->hidden;
	n->hidden = x;
	pthread_mutex_unlock(&n->open_lock);
	return 0;
}

static int unhide(struct node *n, const char *name)
{
	struct hidden **pp, *x;
	int ret = -ENOENT;

	pthread_mutex_lock(&n->open_lock);
	for (pp = &n->hidden; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->name, name)) {
			x = *pp;
			*pp = x->next;
			free(x);
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&n->open_lock);
	return ret;
}

static const char *open_path(const char *path, struct record *r)
{
	if (!path || hidden_name(path)) {
		r->flags |= REC_F_NOPATH;
		return "";
	}
	return rec_path(path);
}

#define REFUSE_ON_FOLLOWER(n)            \
	do {                             \
		if (is_follower(n))      \
			return -EROFS;   \
	} while (0)

static void invalq_init(struct node *n);

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	struct node *n = node_of();

	invalq_init(n);
	cfg->use_ino = 1;
	cfg->readdir_ino = 1;
	cfg->hard_remove = 0;	/* see struct hidden */
	cfg->nullpath_ok = 0;
	if (!is_follower(n)) {
		/*
		 * Every change goes through us, so names can be cached long.
		 * libfuse's path-based API gives each hard link its own kernel
		 * inode, so attributes are cached briefly and pages are kept
		 * only while the file's mtime and size are unchanged
		 * (auto_cache), lest one name show stale data written through
		 * another. No writeback cache, for the same reason: with it the
		 * kernel keeps each inode's own mtime and size and never takes
		 * ours again; and --commit write needs every write to reach us
		 * when it is made.
		 */
		cfg->entry_timeout = REPFS_LEADER_CACHE_S;
		cfg->negative_timeout = 1.0;	/* short: a leader may step down and follow */
		cfg->attr_timeout = 1.0;
		cfg->auto_cache = 1;
	} else {
		/*
		 * Records change the tree behind the kernel's back: names are
		 * not cached at all, attributes and pages are dropped for every
		 * path a record touches (fuse_ops_invalidate).
		 */
		cfg->entry_timeout = cfg->negative_timeout = 0;
		cfg->attr_timeout = 1.0;
	}
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;	/* truncation arrives as a setattr record */
	n->links = calloc(1, sizeof(*n->links));
	conn->max_write = REC_MAX_DATA;
	conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->max_readahead = 1 << 20;
	return n;
}

static void links_note(struct node *n, const char *path, const struct stat *st)
{
	struct links *l = n->links;

	if (!l || !path || S_ISDIR(st->st_mode) || st->st_nlink < 2)
		return;
	pthread_mutex_lock(&n->open_lock);
	for (int i = 0; i < l->used; i++) {
		if (l->ino[i] == st->st_ino && !strcmp(l->path[i], path))
			goto out;
	}
	free(l->path[l->next]);
	l->path[l->next] = strdup(path);
	l->ino[l->next] = l->path[l->next] ? st->st_ino : 0;
	l->next = (l->next + 1) % LINKS_MAX;
	if (l->used < LINKS_MAX)
		l->used++;
out:
	pthread_mutex_unlock(&n->open_lock);
}

/*
 * Invalidations asked for by request handlers go through a queue that a
 * thread of its own works off. A handler must not ask the
 * kernel to drop an inode's pages itself: the kernel may hold one of those
 * pages locked while it waits for a read that only a handler can answer, and
 * if every handler is busy invalidating, nobody does (libfuse: not "in the
 * execution path of a related filesystem operation"). Seen as writers stuck
 * in request_wait_answer and daemon threads in fuse_reverse_inval_inode.
 */
#define INVALQ_MAX 256

#define INVALQ_WAIT_MS 100	/* how long a handler waits for its invalidation to be done */

struct invalq {
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	char *paths[INVALQ_MAX];	/* protected by mu */
	int n, stop, started;		/* protected by mu */
	uint64_t queued, done;		/* tickets: protected by mu */
	pthread_t thread;
};

static void *invalq_main(void *arg)
{
	struct node *n = arg;
	struct invalq *q = n->invalq;

	for (;;) {
		char *batch[INVALQ_MAX];
		uint64_t ticket;
		int k;
		pthread_mutex_lock(&q->mu);
		while (!q->n && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->n && q->stop) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		k = q->n;
		ticket = q->queued;
		memcpy(batch, q->paths, (size_t)k * sizeof(batch[0]));
		q->n = 0;
		pthread_mutex_unlock(&q->mu);
		for (int i = 0; i < k; i++) {
			if (!q->stop && n->fuse)
				fuse_invalidate_path(n->fuse, batch[i]);
			free(batch[i]);
		}
		pthread_mutex_lock(&q->mu);
		q->done = ticket;
		pthread_cond_broadcast(&q->done_cv);
		pthread_mutex_unlock(&q->mu);
	}
}

/*
 * Has the kernel drop its caches of path (see struct invalq), and waits up
 * to INVALQ_WAIT_MS for it: long enough that the caller's operation returns
 * with the caches dropped in the normal case (POSIX: a link count or data
 * seen through another name at once), short enough that the deadlock above
 * dissolves -- the invalidation completes once the caller's request is done.
 */
static void inval_now_or_soon(struct node *n, const char *path)
{
	struct invalq *q = n->invalq;
	struct timespec until;
	uint64_t ticket;

	if (!q || !path)
		return;
	pthread_mutex_lock(&q->mu);
	if (!q->started && !q->stop && pthread_create(&q->thread, NULL, invalq_main, n) == 0)
		q->started = 1;
	/* a full queue drops the request: the attribute timeout (1 s) and auto_cache still bound staleness */
	if (!q->started || q->n >= INVALQ_MAX || !(q->paths[q->n] = strdup(path))) {
		pthread_mutex_unlock(&q->mu);
		return;
	}
	q->n++;
	ticket = ++q->queued;
	pthread_cond_signal(&q->cv);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_nsec += INVALQ_WAIT_MS * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (q->done < ticket && !q->stop)
		if (pthread_cond_timedwait(&q->done_cv, &q->mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&q->mu);
}

static void invalq_init(struct node *n)
{
	struct invalq *q = calloc(1, sizeof(*q));

	if (!q)
		return;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	pthread_cond_init(&q->done_cv, NULL);
	n->invalq = q;
}

static void invalq_free(struct node *n)
{
	struct invalq *q = n->invalq;

	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stop = 1;
	pthread_cond_broadcast(&q->cv);
	pthread_cond_broadcast(&q->done_cv);
	pthread_mutex_unlock(&q->mu);
	if (q->started)
		pthread_join(q->thread, NULL);
	for (int i = 0; i < q->n; i++)
		free(q->paths[i]);
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_cond_destroy(&q->done_cv);
	free(q);
	n->invalq = NULL;
}

/* After a change of the file with inode ino made through path: drop the other names' caches. */
static void links_changed(struct node *n, uint64_t ino, const char *path)
{
	struct links *l = n->links;
	char *others[16];
	int k = 0;

	if (!l || !ino || !n->fuse)
		return;
	pthread_mutex_lock(&n->open_lock);
	for (int i = 0; i < l->used && k < 16; i++)
		if (l->ino[i] == ino && (!path || strcmp(l->path[i], path)))
			others[k++] = strdup(l->path[i]);
	pthread_mutex_unlock(&n->open_lock);
	for (int i = 0; i < k; i++) {
		inval_now_or_soon(n, others[i]);
		free(others[i]);
	}
}

/* The inode number behind an open file or a path, if the links table has any entries. */
static uint64_t links_ino(struct node *n, const char *path, int fd)
{
	struct stat st;
	int used;

	pthread_mutex_lock(&n->open_lock);
	used = n->links ? n->links->used : 0;
	pthread_mutex_unlock(&n->open_lock);
	if (!used)
		return 0;
	if (fd >= 0 ? fstat(fd, &st) : fstatat(store_rootfd(n->store), store_rel(path), &st, AT_SYMLINK_NOFOLLOW))
		return 0;
	return S_ISDIR(st.st_mode) ? 0 : st.st_ino;
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct node *n = node_of();
	const char *hid = hidden_name(path);
	int ret;

	if (fi && fstat(fh_of(fi)->fd, st) == 0) {
		st->st_nlink = store_nlink(st);
		links_note(n, path, st);
		return 0;
	}
	if (hid) {
		uint8_t id[FILE_ID_BYTES];
		int fd = hidden_fd(n, hid, id), ret = 0;
		if (fd >= 0) {
			if (fstat(fd, st) < 0)
				ret = -errno;
			else
				st->st_nlink = store_nlink(st);
			close(fd);
			return ret;
		}
		/* not ours: an ordinary name */
	}
	ret = fstatat(store_rootfd(n->store), store_rel(path), st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (!ret) {
		st->st_nlink = store_nlink(st);
		links_note(n, path, st);
	}
	return ret;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	ssize_t r = readlinkat(store_rootfd(node_of()->store), store_rel(path), buf, size - 1);

	if (r < 0)
		return -errno;
	buf[r] = 0;
	return 0;
}

/* Owner and mode of a new object: the caller's, with BSD group semantics under setgid dirs. */
static void new_owner(struct node *n, const char *path, mode_t *mode, uid_t *uid, gid_t *gid)
{
	struct fuse_context *c = fuse_get_context();
	char parent[PATH_MAX];
	const char *rel = rec_path(path), *slash = strrchr(rel, '/');
	struct stat pst;

	*uid = c->uid;
	*gid = c->gid;
	if (slash && (size_t)(slash - rel) < sizeof(parent)) {
		memcpy(parent, rel, (size_t)(slash - rel));
		parent[slash - rel] = 0;
	} else {
		strcpy(parent, ".");
	}
	if (fstatat(store_rootfd(n->store), parent, &pst, 0) == 0 && (pst.st_mode & S_ISGID)) {
		*gid = pst.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
}

/* id (may be NULL) receives the new object's id */
static int create_object(const char *path, mode_t mode, dev_t rdev, const char *target, int *out_fd,
			 uint8_t *id)
{
	struct node *n = node_of();
	struct record r = { .type = REC_CREATE };
	uid_t uid;
	gid_t gid;

	REFUSE_ON_FOLLOWER(n);
	new_owner(n, path, &mode, &uid, &gid);
	r.path = rec_path(path);
	store_new_id(r.id);
	r.mode = mode;
	r.uid = uid;
	r.gid = gid;
	r.rdev = rdev;
	if (target) {
		r.data = target;
		r.data_len = (uint32_t)strlen(target) + 1;
	}
	if (id)
		memcpy(id, r.id, FILE_ID_BYTES);
	return node_commit(n, &r, -1, out_fd);
}

static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISCHR(mode) && !S_ISBLK(mode) && !S_ISSOCK(mode))
		return -EINVAL;
	return create_object(path, mode, rdev, NULL, NULL, NULL);
}

static int op_mkdir(const char *path, mode_t mode)
{
	return create_object(path, (mode & 07777) | S_IFDIR, 0, NULL, NULL, NULL);
}

static int op_symlink(const char *target, const char *path)
{
	if (strlen(target) >= PATH_MAX)
		return -ENAMETOOLONG;
	return create_object(path, S_IFLNK | 0777, 0, target, NULL, NULL);
}

/* Fills r->id with the id of the object at path. */
static int id_of(struct node *n, const char *path, uint8_t id[FILE_ID_BYTES])
{
	int ret = store_get_id(n->store, store_rel(path), id);

	return ret == -ENODATA ? -EIO : ret;
}

static int remove_object(const char *path, int type)
{
	struct node *n = node_of();
	struct record r = { .type = (uint16_t)type };
	uint64_t ino;
	int ret;

	REFUSE_ON_FOLLOWER(n);
	r.path = rec_path(path);
	ret = id_of(n, path, r.id);
	if (ret)
		return ret;
	ino = type == REC_UNLINK ? links_ino(n, path, -1) : 0;
	ret = node_commit(n, &r, -1, NULL);
	if (!ret)
		links_changed(n, ino, path);
	return ret;
}

static int op_unlink(const char *path)
{
	const char *hid = hidden_name(path);

	if (hid && unhide(node_of(), hid) == 0)
		return 0;	/* the last close of an unlinked file */
	return remove_object(path, REC_UNLINK);
}

static int op_rmdir(const char *path)
{
	return remove_object(path, REC_RMDIR);
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	struct node *n = node_of();
	struct record r = { .type = REC_RENAME };
	int ret;

	REFUSE_ON_FOLLOWER(n);
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	if (hidden_name(to) && !flags && id_of(n, from, r.id) == 0 && open_by(n, r.id, NULL, 0) &&
	    id_of(n, to, r.id2) == -ENOENT) {
		/* libfuse hiding a file that is unlinked while open */
		r.type = REC_UNLINK;
		r.path = rec_path(from);
		ret = hide(n, hidden_name(to), r.id);
		if (!ret) {
			ret = node_commit(n, &r, -1, NULL);
			if (ret)
				unhide(n, hidden_name(to));
		}
		return ret;
	}
	r.path = rec_path(from);
	r.path2 = rec_path(to);
	r.op_flags = flags;
	ret = id_of(n, from, r.id);
	if (ret)
		return ret;
	ret = id_of(n, to, r.id2);
	if (ret == -ENOENT && !(flags & RENAME_EXCHANGE))
		memset(r.id2, 0, sizeof(r.id2));
	else if (ret)
		return ret;
	else if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	else if (!memcmp(r.id, r.id2, FILE_ID_BYTES))
		return 0;	/* two names of one object: rename(2) does nothing, so there is nothing to log */
	return node_commit(n, &r, -1, NULL);
}

static int op_link(const char *from, const char *to)
{
	struct node *n = node_of();
	struct record r = { .type = REC_LINK };
	int ret;

	REFUSE_ON_FOLLOWER(n);
	r.path = rec_path(from);
	r.path2 = rec_path(to);
	ret = id_of(n, from, r.id);
	if (!ret)
		ret = node_commit(n, &r, -1, NULL);
	if (!ret) {
		struct stat st;
		/* the other names' link counts changed */
		if (fstatat(store_rootfd(n->store), store_rel(to), &st, AT_SYMLINK_NOFOLLOW) == 0) {
			links_note(n, from, &st);
			links_changed(n, st.st_ino, to);
		}
	}
	return ret;
}

/* A setattr record for path or the open file fi. */
static int setattr_common(const char *path, struct fuse_file_info *fi, struct record *r)
{
	struct node *n = node_of();
	int hint = -1, ret;

	REFUSE_ON_FOLLOWER(n);
	r->type = REC_SETATTR;
	r->path = rec_path(path);
	if (!fi && hidden_name(path) && (ret = hidden_fd(n, hidden_name(path), r->id)) >= 0) {
		int fd = ret;
		r->path = "";
		r->flags |= REC_F_NOPATH;
		ret = node_commit(n, r, fd, NULL);
		close(fd);
		return ret;
	}
	if (fi) {
		hint = fh_of(fi)->fd;
		memcpy(r->id, fh_of(fi)->id, FILE_ID_BYTES);
		r->path = open_path(path, r);
	} else {
		ret = id_of(n, path, r->id);
		if (ret)
			return ret;
	}
	ret = node_commit(n, r, hint, NULL);
	if (!ret)
		links_changed(n, links_ino(n, path, hint), path);
	return ret;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct record r = { .op_flags = SA_MODE, .mode = mode & 07777 };

	return setattr_common(path, fi, &r);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	struct record r = { .uid = uid, .gid = gid };

	if (uid != (uid_t)-1)
		r.op_flags |= SA_UID;
	if (gid != (gid_t)-1)
		r.op_flags |= SA_GID;
	if (!r.op_flags)
		return 0;
	return setattr_common(path, fi, &r);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct record r = { .op_flags = SA_SIZE, .len = (uint64_t)size };

	if (size < 0)
		return -EINVAL;
	return setattr_common(path, fi, &r);
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	struct record r = { 0 };
	int64_t now = now_ns();

	for (int i = 0; i < 2; i++) {
		int64_t t;
		if (tv[i].tv_nsec == UTIME_OMIT)
			continue;
		t = tv[i].tv_nsec == UTIME_NOW ? now : (int64_t)tv[i].tv_sec * 1000000000 + tv[i].tv_nsec;
		if (i == 0) {
			r.op_flags |= SA_ATIME;
			r.atime_ns = t;
		} else {
			r.op_flags |= SA_MTIME;
			r.mtime_ns = t;
		}
	}
	if (!r.op_flags)
		return 0;
	return setattr_common(path, fi, &r);
}

static int backing_flags(struct node *n, int flags)
{
	/* the kernel gives every write its offset (O_APPEND included); we log that */
	(void)n;
	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOCTTY);
	return flags | O_CLOEXEC | O_NOFOLLOW;
}

/* id: the file's id when the caller knows it (a create), else NULL: read from the file */
static int new_handle(struct fuse_file_info *fi, int fd, int flags, const uint8_t *id)
{
	struct handle *h = calloc(1, sizeof(*h));
	int ret = 0;

	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->sync = (flags & (O_SYNC | O_DSYNC)) != 0;
	if ((flags & O_ACCMODE) == O_WRONLY && !is_follower(node_of())) {
		/* nothing is read through it: writes skip the kernel's page cache (op_write) */
		h->direct = 1;
		fi->direct_io = 1;
	}
	h->clean = id != NULL;	/* a create: the kernel has no pages of a file just made */
	if (id)
		memcpy(h->id, id, FILE_ID_BYTES);
	else
		ret = store_fget_id(fd, h->id);
	if (ret && ret != -ENODATA) {
		close(fd);
		free(h);
		return ret;
	}
	fi->fh = (uintptr_t)h;
	track_handle(node_of(), h);
	return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	struct node *n = node_of();
	uint8_t id[FILE_ID_BYTES];
	int fd, old;

	if (is_follower(n) && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)))
		return -EROFS;
	old = hidden_name(path) ? hidden_fd(n, hidden_name(path), id) : -1;
	if (old >= 0) {
		/* reopened through /proc/self/fd of an unlinked file */
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", old);
		fd = open(proc, backing_flags(n, fi->flags) & ~O_NOFOLLOW);
		close(old);
	} else {
		fd = openat(store_rootfd(n->store), store_rel(path), backing_flags(n, fi->flags));
	}
	if (fd < 0)
		return -errno;
	return new_handle(fi, fd, fi->flags, NULL);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	uint8_t id[FILE_ID_BYTES];
	int fd = -1, ret;

	ret = create_object(path, S_IFREG | (mode & 07777), 0, NULL, &fd, id);
	if (ret == -EEXIST && !(fi->flags & O_EXCL))
		return op_open(path, fi);
	if (ret)
		return ret;
	return new_handle(fi, fd, fi->flags, id);
}

/* Reads hand the kernel the backing descriptor: libfuse splices from it, no copy through us. */
static int op_read_buf(const char *path, struct fuse_bufvec **bufp, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	struct fuse_bufvec *bv = malloc(sizeof(*bv));

	(void)path;
	if (!bv)
		return -ENOMEM;
	*bv = FUSE_BUFVEC_INIT(size);
	bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv->buf[0].fd = fh_of(fi)->fd;
	bv->buf[0].pos = off;
	*bufp = bv;
	return 0;
}

static int op_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	ssize_t r;

	(void)path;
	r = pread(fh_of(fi)->fd, buf, size, off);
	return r < 0 ? -errno : (int)r;
}

/* 1 if the caller of this request is in group gid (its fsgid or a supplementary group). */
static int caller_in_group(gid_t gid)
{
	gid_t groups[256];
	int k;

	if (fuse_get_context()->gid == gid)
		return 1;
	k = fuse_getgroups((int)(sizeof(groups) / sizeof(groups[0])), groups);
	for (int i = 0; i < k && i < (int)(sizeof(groups) / sizeof(groups[0])); i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/*
 * Before a write through the page cache the kernel drops the privileges a
 * changed file must not keep (file_remove_privs(): through a setattr and a
 * removexattr request to us); for direct I/O it leaves that to the file
 * system. As the kernel: a caller without CAP_FSETID (here: not root) drops
 * the setuid bit, and the setgid bit if the file is group-executable or the
 * caller is not in its group; any write drops security.capability. Each
 * drop is its own record, before the write's.
 */
static int drop_privs(struct node *n, const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fh_of(fi);
	struct stat st;
	mode_t kill = 0;
	int ret;

	if (fstat(h->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	if (fuse_get_context()->uid != 0 && (st.st_mode & (S_ISUID | S_ISGID))) {
		kill = st.st_mode & S_ISUID;
		if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !caller_in_group(st.st_gid)))
			kill |= S_ISGID;
	}
	if (kill) {
		struct record r = { .op_flags = SA_MODE, .mode = (st.st_mode & 07777) & ~kill };
		ret = setattr_common(path, fi, &r);
		if (ret)
			return ret;
	}
	if (fgetxattr(h->fd, "security.capability", NULL, 0) >= 0) {
		struct record r = { .type = REC_REMOVEXATTR, .name = "security.capability" };
		r.path = open_path(path, &r);
		memcpy(r.id, h->id, FILE_ID_BYTES);
		ret = node_commit(n, &r, h->fd, NULL);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Writes of write-only files arrive as direct I/O (new_handle()): the data
 * comes straight from the writer's memory, with no copy into the kernel's
 * page cache and no security.capability lookup (a round trip) per write(2).
 * Other opens of the file may hold its pages (readers, mappings): they are
 * dropped after each such write, as a write through the cache would have
 * updated them.
 */
static int op_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct node *n = node_of();
	struct handle *h = fh_of(fi);
	struct record r = { .type = REC_WRITE };
	int ret;

	REFUSE_ON_FOLLOWER(n);
	if (size > REC_MAX_DATA)
		size = REC_MAX_DATA;
	if (h->direct && (ret = drop_privs(n, path, fi)))
		return ret;
	r.path = open_path(path, &r);
	memcpy(r.id, h->id, FILE_ID_BYTES);
	r.off = (uint64_t)off;
	r.data = buf;
	r.data_len = (uint32_t)size;
	ret = node_commit(n, &r, h->fd, NULL);
	if (ret)
		return ret;
	links_changed(n, links_ino(n, NULL, h->fd), path);
	/*
	 * Pages of the file in the kernel go stale: another handle's (it may read
	 * through the cache), or, at this handle's first write, pages left by
	 * handles closed before -- auto_cache drops those at the next open only
	 * if mtime or size changed, which a same-size overwrite within one tick
	 * of a coarse clock does not show. A file this handle created has none.
	 */
	if (h->direct && n->fuse && path && !(r.flags & REC_F_NOPATH) && (!h->clean || open_by(n, h->id, h, 1)))
		inval_now_or_soon(n, path);
	h->clean = 1;
	if (h->sync || n->commit_write) {
		ret = node_sync(n, r.seq);
		if (ret)
			return ret;
	}
	return (int)size;
}

static int op_statfs(const char *path, struct statvfs *st)
{
	struct node *n = node_of();

	(void)path;
	if (fstatvfs(store_rootfd(n->store), st) < 0)
		return -errno;
	if (is_follower(n))
		st->f_flag |= ST_RDONLY;
	return 0;
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	struct handle *h = fh_of(fi);

	(void)path;
	untrack_handle(node_of(), h);
	close(h->fd);
	free(h);
	return 0;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	(void)fi;
	return node_sync(node_of(), 0);
}

/* trusted.* is for CAP_SYS_ADMIN: the kernel leaves that check to us, as we run as root */
static int trusted_denied(const char *name)
{
	return !strncmp(name, "trusted.", 8) && fuse_get_context()->uid != 0;
}

/*
 * Where the xattr calls for path go: a path for the l*xattr calls (*fd < 0),
 * or, for an unlinked-while-open file, a descriptor (*fd >= 0, close it).
 * *tmpfd (>= 0) must be closed afterwards too.
 */
static int xattr_target(struct node *n, const char *path, char *xp, size_t len, int *tmpfd, int *fd,
			uint8_t id[FILE_ID_BYTES])
{
	*fd = *tmpfd = -1;
	if (hidden_name(path)) {
		*fd = hidden_fd(n, hidden_name(path), id);
		if (*fd >= 0)
			return 0;
		*fd = -1;	/* not ours: an ordinary name */
	}
	return store_xpath(n->store, store_rel(path), xp, len, tmpfd);
}

static void xattr_done(int tmpfd, int fd)
{
	if (tmpfd >= 0)
		close(tmpfd);
	if (fd >= 0)
		close(fd);
}

static int xattr_change(const char *path, struct record *r)
{
	struct node *n = node_of();
	int ret, fd = -1;

	REFUSE_ON_FOLLOWER(n);
	if (store_hidden_xattr(r->name) || trusted_denied(r->name))
		return -EPERM;
	r->path = rec_path(path);
	if (hidden_name(path) && (fd = hidden_fd(n, hidden_name(path), r->id)) >= 0) {
		r->path = "";
		r->flags |= REC_F_NOPATH;
	} else {
		fd = -1;
		ret = id_of(n, path, r->id);
		if (ret)
			return ret;
	}
	ret = node_commit(n, r, fd, NULL);
	if (!ret)
		links_changed(n, links_ino(n, path, fd), path);
	if (fd >= 0)
		close(fd);
	return ret;
}

static int op_setxattr(const char *path, const char *name, const char *value, size_t size, int flags)
{
	struct record r = { .type = REC_SETXATTR };

	if (strlen(name) > XATTR_NAME_MAX)
		return -ERANGE;
	if (size > XATTR_SIZE_MAX)
		return -E2BIG;
	r.name = name;
	r.data = value;
	r.data_len = (uint32_t)size;
	r.op_flags = (uint32_t)flags;
	return xattr_change(path, &r);
}

static int op_removexattr(const char *path, const char *name)
{
	struct record r = { .type = REC_REMOVEXATTR, .name = name };

	return xattr_change(path, &r);
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	struct node *n = node_of();
	char xp[PATH_MAX + 64];
	uint8_t id[FILE_ID_BYTES];
	int tmp, fd, ret;
	ssize_t r;

	if (store_hidden_xattr(name) || trusted_denied(name))
		return -ENODATA;
	ret = xattr_target(n, path, xp, sizeof(xp), &tmp, &fd, id);
	if (ret)
		return ret;
	r = fd >= 0 ? fgetxattr(fd, name, value, size) : lgetxattr(xp, name, value, size);
	ret = r < 0 ? -errno : (int)r;
	xattr_done(tmp, fd);
	return ret;
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	struct node *n = node_of();
	char xp[PATH_MAX + 64], *all = NULL;
	uint8_t id[FILE_ID_BYTES];
	ssize_t len;
	size_t out = 0;
	int tmp, fd, ret;

	ret = xattr_target(n, path, xp, sizeof(xp), &tmp, &fd, id);
	if (ret)
		return ret;
	for (;;) {
		len = fd >= 0 ? flistxattr(fd, NULL, 0) : llistxattr(xp, NULL, 0);
		if (len < 0) {
			ret = -errno;
			goto out;
		}
		free(all);
		all = malloc((size_t)len + 1);
		if (!all) {
			ret = -ENOMEM;
			goto out;
		}
		len = fd >= 0 ? flistxattr(fd, all, (size_t)len) : llistxattr(xp, all, (size_t)len);
		if (len >= 0)
			break;
		if (errno != ERANGE) {
			ret = -errno;
			goto out;
		}
	}
	for (char *p = all; p < all + len; p += strlen(p) + 1) {
		size_t l = strlen(p) + 1;
		if (store_hidden_xattr(p) || trusted_denied(p))
			continue;
		if (size) {
			if (out + l > size) {
				ret = -ERANGE;
				goto out;
			}
			memcpy(list + out, p, l);
		}
		out += l;
	}
	ret = (int)out;
out:
	free(all);
	xattr_done(tmp, fd);
	return ret;
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct node *n = node_of();
	struct dirhandle *d;
	int fd;

	fd = openat(store_rootfd(n->store), store_rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = calloc(1, sizeof(*d));
	if (!d) {
		close(fd);
		return -ENOMEM;
	}
	d->dp = fdopendir(fd);
	if (!d->dp) {
		int ret = -errno;
		close(fd);
		free(d);
		return ret;
	}
	fi->fh = (uintptr_t)d;
	return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;

	(void)path;
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		enum fuse_fill_dir_flags fill = 0;
		off_t next;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry)
				return errno ? -errno : 0;
		}
		memset(&st, 0, sizeof(st));
		if ((flags & FUSE_READDIR_PLUS) &&
		    fstatat(dirfd(d->dp), d->entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			st.st_nlink = store_nlink(&st);
			fill |= FUSE_FILL_DIR_PLUS;
		} else {
			st.st_ino = d->entry->d_ino;
			st.st_mode = (mode_t)d->entry->d_type << 12;
		}
		next = telldir(d->dp);
		if (filler(buf, d->entry->d_name, &st, next, fill))
			return 0;
		d->entry = NULL;
		d->offset = next;
	}
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;

	(void)path;
	closedir(d->dp);
	free(d);
	return 0;
}

static int op_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
	return op_fsync(path, datasync, fi);
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
	struct node *n = node_of();
	struct handle *h = fh_of(fi);
	struct record r = { .type = REC_FALLOCATE };
	int ret;

	REFUSE_ON_FOLLOWER(n);
	if (off < 0 || len <= 0)
		return -EINVAL;
	r.path = open_path(path, &r);
	memcpy(r.id, h->id, FILE_ID_BYTES);
	r.op_flags = (uint32_t)mode;
	r.off = (uint64_t)off;
	r.len = (uint64_t)len;
	ret = node_commit(n, &r, h->fd, NULL);
	if (!ret)
		links_changed(n, links_ino(n, NULL, h->fd), path);
	return ret;
}

static ssize_t op_copy_file_range(const char *path_in, struct fuse_file_info *fi_in, off_t off_in,
				  const char *path_out, struct fuse_file_info *fi_out, off_t off_out,
				  size_t size, int flags)
{
	struct node *n = node_of();
	struct record r = { .type = REC_COPY };
	uint8_t digest[16];
	struct stat st;
	int ret;

	REFUSE_ON_FOLLOWER(n);
	if (flags)
		return -EINVAL;
	if (!path_in || !path_out || hidden_name(path_in) || hidden_name(path_out))
		return -EOPNOTSUPP;	/* the kernel falls back to read and write */
	if (fstat(fh_of(fi_in)->fd, &st) < 0)
		return -errno;
	if (off_in >= st.st_size)
		return 0;
	if ((uint64_t)size > (uint64_t)(st.st_size - off_in))
		size = (size_t)(st.st_size - off_in);
	if (size > (1u << 30))
		size = 1u << 30;
	{
		/* the source range's digest lets a replay tell whether the source still holds it */
		static_assert(sizeof(digest) == STORE_DIGEST_BYTES, "digest size");
		ret = store_range_digest(fh_of(fi_in)->fd, (uint64_t)off_in, size, digest);
		if (ret)
			return ret;
		r.data = digest;
		r.data_len = STORE_DIGEST_BYTES;
	}
	r.path = rec_path(path_in);
	memcpy(r.id, fh_of(fi_in)->id, FILE_ID_BYTES);
	r.off = (uint64_t)off_in;
	r.path2 = rec_path(path_out);
	memcpy(r.id2, fh_of(fi_out)->id, FILE_ID_BYTES);
	r.off2 = (uint64_t)off_out;
	r.len = size;
	ret = node_commit(n, &r, fh_of(fi_out)->fd, NULL);
	if (!ret)
		links_changed(n, links_ino(n, NULL, fh_of(fi_out)->fd), path_out);
	return ret ? ret : (ssize_t)size;
}

static off_t op_lseek(const char *path, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r;

	(void)path;
	r = lseek(fh_of(fi)->fd, off, whence);
	return r < 0 ? -errno : r;
}

static void invalidate_with_parent(struct fuse *f, const char *rel, int parent)
{
	char path[PATH_MAX + 2];
	char *slash;

	if (!rel)
		return;
	snprintf(path, sizeof(path), "/%s", rel);
	fuse_invalidate_path(f, path);
	if (!parent)
		return;
	slash = strrchr(path, '/');
	if (slash == path)
		path[1] = 0;
	else if (slash)
		*slash = 0;
	fuse_invalidate_path(f, path);
}

void fuse_ops_invalidate(struct node *n, const struct record *r)
{
	if (r->flags & REC_F_NOPATH)
		return;
	if (r->type != REC_UNLINK && r->type != REC_RMDIR && r->type != REC_RENAME)
		links_changed(n, links_ino(n, r->type == REC_LINK ? r->path2 : r->path, -1), NULL);
	/* only changes of names touch the parent directory */
	int names = r->type == REC_CREATE || r->type == REC_UNLINK || r->type == REC_RMDIR ||
		    r->type == REC_RENAME || r->type == REC_LINK;

	invalidate_with_parent(n->fuse, r->path, names);
	if (r->path2 && *r->path2)
		invalidate_with_parent(n->fuse, r->path2, names);
}

static void op_destroy(void *private_data)
{
	struct node *n = private_data;

	invalq_free(n);
	if (n->links)
		for (int i = 0; i < LINKS_MAX; i++)
			free(n->links->path[i]);
	free(n->links);
	n->links = NULL;
}

const struct fuse_operations repfs_fuse_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.chmod = op_chmod,
	.chown = op_chown,
	.truncate = op_truncate,
	.utimens = op_utimens,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.read_buf = op_read_buf,
	.write = op_write,
	.statfs = op_statfs,
	.release = op_release,
	.fsync = op_fsync,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};
