/* fuse_ops.c -- FUSE operations (libfuse low-level API): reads pass through, changes become records
 *
 * Each mutating operation builds a record naming its objects by path and id
 * and hands it to node_commit(), which logs and applies it. Permission checks
 * are the kernel's (default_permissions); new objects belong to the caller.
 * The project's own metadata (the id xattr) is neither listed nor readable
 * nor writable through the mount.
 *
 * Inodes. The kernel knows each object by a node id we hand out at lookup;
 * here it is the address of a struct inode, keyed by the object's file id,
 * so every name of a hard-linked file is one kernel inode with one set of
 * cached attributes and pages, as on a local file system. How an inode
 * reaches its backing object:
 *   - a directory holds an O_PATH descriptor of it (dirfd). Its path, which a
 *     record needs, is what the kernel says that descriptor names
 *     (/proc/self/fd), so it is right after renames made here or by records a
 *     follower applied. A descriptor opened before store_reopen() replaced
 *     the tree (a snapshot, a rewind) is reopened through the parent's.
 *   - anything else is reached by id through the tree's id index
 *     (store_open_by_id()), whatever its names are now; a file that lost its
 *     last name while open through one of its open descriptors. Its path is
 *     one of the names (parent id, name) the kernel looked it up by.
 *
 * Locking. itab.mu protects the table, the lookup counts, the names and the
 * descriptors' replacement. itab.ns orders changes of names against the
 * records that name paths: an operation that changes names holds it for
 * writing from computing its paths to updating the names, one that names an
 * object by path without a descriptor (setattr, xattrs) for reading. Writes
 * do not take it: their records carry a descriptor, and the path in them is
 * only a hint for followers, who reach the file by id when it is stale.
 */
#include "fuse_ops.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

struct dirhandle {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

#define NAMES_MAX 8	/* names remembered per inode (hard links); the oldest goes first */

struct iname {
	uint8_t parent[FILE_ID_BYTES];
	struct iname *next;
	char s[];
};

struct inode {
	uint8_t id[FILE_ID_BYTES];
	mode_t type;		/* S_IFMT bits */
	uint64_t nlookup;	/* the kernel's references: protected by itab.mu */
	int dirfd;		/* directories: O_PATH descriptor, swapped in place (itab.mu); else -1 */
	unsigned gen;		/* store_gen() when dirfd was opened (itab.mu) */
	struct iname *names;	/* protected by itab.mu */
	int nnames;
	struct inode *hnext;	/* hash chain (itab.mu) */
};

#define ITAB_BUCKETS 16384

struct itab {
	pthread_mutex_t mu;
	pthread_rwlock_t ns;	/* see "Locking" above */
	struct inode *bucket[ITAB_BUCKETS];	/* protected by mu */
	struct inode root;
	uint64_t count;		/* protected by mu */
};

static struct node *node_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int is_follower(const struct node *n)
{
	return n->st.role != ROLE_LEADER;
}

static struct handle *fh_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

/* ---------------------------------------------------------------- inodes */

static unsigned bucket_of(const uint8_t id[FILE_ID_BYTES])
{
	uint64_t h;

	memcpy(&h, id + 8, sizeof(h));	/* ids are random */
	h ^= h >> 29;
	return (unsigned)(h % ITAB_BUCKETS);
}

static struct inode *ino_of(struct node *n, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &n->itab->root : (struct inode *)(uintptr_t)ino;
}

static fuse_ino_t nodeid_of(struct node *n, struct inode *in)
{
	return in == &n->itab->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in;
}

/* Under itab.mu. */
static struct inode *tab_find(struct itab *t, const uint8_t id[FILE_ID_BYTES])
{
	struct inode *in;

	if (!memcmp(id, t->root.id, FILE_ID_BYTES))
		return &t->root;
	for (in = t->bucket[bucket_of(id)]; in; in = in->hnext)
		if (!memcmp(in->id, id, FILE_ID_BYTES))
			return in;
	return NULL;
}

static void names_free(struct inode *in)
{
	while (in->names) {
		struct iname *x = in->names;
		in->names = x->next;
		free(x);
	}
	in->nnames = 0;
}

/* Under itab.mu. Remembers (parent, name) as a name of in: first in the list. */
static void name_add(struct inode *in, const uint8_t parent[FILE_ID_BYTES], const char *name)
{
	struct iname **pp, *x;
	size_t len = strlen(name);

	if (S_ISDIR(in->type))
		names_free(in);	/* a directory has one name */
	for (pp = &in->names; *pp; pp = &(*pp)->next) {
		if (!memcmp((*pp)->parent, parent, FILE_ID_BYTES) && !strcmp((*pp)->s, name)) {
			x = *pp;
			*pp = x->next;
			x->next = in->names;
			in->names = x;
			return;
		}
	}
	x = malloc(sizeof(*x) + len + 1);
	if (!x)
		return;
	memcpy(x->parent, parent, FILE_ID_BYTES);
	memcpy(x->s, name, len + 1);
	x->next = in->names;
	in->names = x;
	if (++in->nnames > NAMES_MAX) {
		for (pp = &in->names; (*pp)->next; pp = &(*pp)->next)
			;
		free(*pp);
		*pp = NULL;
		in->nnames--;
	}
}

/* Under itab.mu. */
static void name_del(struct inode *in, const uint8_t parent[FILE_ID_BYTES], const char *name)
{
	for (struct iname **pp = &in->names; *pp; pp = &(*pp)->next) {
		if (!memcmp((*pp)->parent, parent, FILE_ID_BYTES) && !strcmp((*pp)->s, name)) {
			struct iname *x = *pp;
			*pp = x->next;
			free(x);
			in->nnames--;
			return;
		}
	}
}

/* The name (parent, name) now belongs to nobody we know but the object id (NULL: nobody at all). */
static void names_moved(struct node *n, const uint8_t parent[FILE_ID_BYTES], const char *name,
			const uint8_t *from_id, const uint8_t *to_id)
{
	struct itab *t = n->itab;
	struct inode *in;

	pthread_mutex_lock(&t->mu);
	if (from_id && (in = tab_find(t, from_id)))
		name_del(in, parent, name);
	if (to_id && (in = tab_find(t, to_id)))
		name_add(in, parent, name);
	pthread_mutex_unlock(&t->mu);
}

/*
 * The id of the object name in directory dfd (not following a final
 * symlink). An object without one (a tree made by hand) gets a stand-in
 * from its inode number, which no record ever names.
 */
static int id_at(int dfd, const char *name, const struct stat *st, uint8_t id[FILE_ID_BYTES])
{
	char p[64 + NAME_MAX];
	ssize_t r;

	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dfd, name);
	r = lgetxattr(p, ID_XATTR, id, FILE_ID_BYTES);
	if (r == FILE_ID_BYTES)
		return 0;
	if (r >= 0 || errno == ENODATA) {
		memset(id, 0xff, FILE_ID_BYTES);
		memcpy(id + 8, &st->st_ino, sizeof(st->st_ino));
		return 0;
	}
	return -errno;
}

static int dir_fd_locked(struct node *n, struct inode *d);

/*
 * Reopens a directory's descriptor through its parent's, after the tree
 * was replaced (store_gen() moved on). Under itab.mu.
 */
static int dir_refresh(struct node *n, struct inode *d, unsigned gen)
{
	struct inode *parent = d->names ? tab_find(n->itab, d->names->parent) : NULL;
	uint8_t id[FILE_ID_BYTES];
	struct stat st;
	int pfd, fd, ret;

	if (!parent || parent == d)
		return -ESTALE;
	pfd = dir_fd_locked(n, parent);
	if (pfd < 0)
		return pfd;
	fd = openat(pfd, d->names->s, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -ESTALE;
	ret = fstat(fd, &st) < 0 ? -errno : id_at(pfd, d->names->s, &st, id);
	if (!ret && memcmp(id, d->id, FILE_ID_BYTES))
		ret = -ESTALE;
	if (!ret && dup3(fd, d->dirfd, O_CLOEXEC) < 0)
		ret = -errno;
	close(fd);
	if (!ret)
		d->gen = gen;
	return ret;
}

/* A descriptor of directory d (see dir_fd()), under itab.mu. */
static int dir_fd_locked(struct node *n, struct inode *d)
{
	unsigned gen = store_gen(n->store);

	if (d == &n->itab->root)
		return store_rootfd(n->store);
	if (d->dirfd < 0)
		return -ENOTDIR;
	if (d->gen != gen) {
		int ret = dir_refresh(n, d, gen);
		if (ret)
			return ret;
	}
	return d->dirfd;
}

/*
 * A descriptor of directory d, valid until d is forgotten (the number stays
 * d's: a replacement is dup3'd onto it). Takes itab.mu only if the tree
 * was replaced since it was opened.
 */
static int dir_fd(struct node *n, struct inode *d)
{
	int fd;

	if (d == &n->itab->root)
		return store_rootfd(n->store);
	if (d->dirfd >= 0 && d->gen == store_gen(n->store))
		return d->dirfd;
	pthread_mutex_lock(&n->itab->mu);
	fd = dir_fd_locked(n, d);
	pthread_mutex_unlock(&n->itab->mu);
	return fd;
}

/* The path of directory d in the tree ("" for the root), from its descriptor. */
static int dir_path(struct node *n, struct inode *d, char *buf, size_t len)
{
	const char *tree = store_path(n->store);
	size_t tl = strlen(tree);
	char proc[64], link[PATH_MAX + 1];
	ssize_t r;
	int fd;

	if (d == &n->itab->root) {
		buf[0] = 0;
		return 0;
	}
	fd = dir_fd(n, d);
	if (fd < 0)
		return fd;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	r = readlink(proc, link, sizeof(link) - 1);
	if (r < 0)
		return -errno;
	if ((size_t)r >= sizeof(link) - 1)
		return -ENAMETOOLONG;
	link[r] = 0;
	/* a removed directory reads "PATH (deleted)"; one outside the tree is another tree's */
	if ((size_t)r <= tl + 1 || memcmp(link, tree, tl) || link[tl] != '/' ||
	    ((size_t)r > 10 && !strcmp(link + r - 10, " (deleted)")))
		return -ENOENT;
	if ((size_t)r - tl - 1 >= len)
		return -ENAMETOOLONG;
	memcpy(buf, link + tl + 1, (size_t)r - tl);
	return 0;
}

/* "dir/name" ("name" in the root). */
static int join(char *buf, size_t len, const char *dir, const char *name)
{
	int k = *dir ? snprintf(buf, len, "%s/%s", dir, name) : snprintf(buf, len, "%s", name);

	return k < 0 || (size_t)k >= len ? -ENAMETOOLONG : 0;
}

/*
 * A path of non-directory f for a record: the first of its names whose
 * parent is known. With verify, a name is used only if it still holds f
 * (names a follower learned go stale as records rename and unlink). -ENOENT
 * if f has no name we know (unlinked while open).
 */
static int file_path(struct node *n, struct inode *f, char *buf, size_t len, int verify)
{
	struct itab *t = n->itab;
	struct {
		struct inode *parent;
		char name[NAME_MAX + 1];
	} cand[NAMES_MAX];
	int k = 0, ret = -ENOENT;

	pthread_mutex_lock(&t->mu);
	for (struct iname *x = f->names; x && k < NAMES_MAX; x = x->next) {
		cand[k].parent = tab_find(t, x->parent);
		if (cand[k].parent && strlen(x->s) <= NAME_MAX)
			snprintf(cand[k++].name, sizeof(cand[0].name), "%s", x->s);
	}
	pthread_mutex_unlock(&t->mu);
	/* a parent in cand stays: the kernel holds its directory while it holds a name in it */
	for (int i = 0; i < k; i++) {
		char dir[PATH_MAX];
		uint8_t id[FILE_ID_BYTES];
		if (dir_path(n, cand[i].parent, dir, sizeof(dir)) || join(buf, len, dir, cand[i].name))
			continue;
		if (verify) {
			struct stat st;
			int pfd = dir_fd(n, cand[i].parent);
			if (pfd < 0 || fstatat(pfd, cand[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    id_at(pfd, cand[i].name, &st, id) || memcmp(id, f->id, FILE_ID_BYTES)) {
				names_moved(n, cand[i].parent->id, cand[i].name, f->id, NULL);
				continue;
			}
		}
		return 0;
	}
	return ret;
}

static int ino_path(struct node *n, struct inode *in, char *buf, size_t len, int verify)
{
	return S_ISDIR(in->type) ? dir_path(n, in, buf, len) : file_path(n, in, buf, len, verify);
}

/* 1 if an open handle other than skip has this id (with caching: one that reads through the page cache). */
static int open_by(struct node *n, const uint8_t id[FILE_ID_BYTES], const struct handle *skip, int caching)
{
	int found = 0;

	pthread_mutex_lock(&n->open_lock);
	for (struct handle *o = n->open_files; o && !found; o = o->next)
		found = o != skip && !(caching && o->direct) && !memcmp(o->id, id, FILE_ID_BYTES);
	pthread_mutex_unlock(&n->open_lock);
	return found;
}

/* A dup of a descriptor of an open handle of the file id (yours to close), or -ENOENT. */
static int open_fd_of(struct node *n, const uint8_t id[FILE_ID_BYTES])
{
	int fd = -ENOENT;

	pthread_mutex_lock(&n->open_lock);
	for (struct handle *h = n->open_files; h; h = h->next) {
		if (!memcmp(h->id, id, FILE_ID_BYTES)) {
			fd = dup(h->fd);
			if (fd < 0)
				fd = -errno;
			break;
		}
	}
	pthread_mutex_unlock(&n->open_lock);
	return fd;
}

/*
 * A descriptor of non-directory f opened with flags (yours to close): by id
 * through the index, else (unlinked while open) through an open handle's,
 * else by a name.
 */
static int file_open(struct node *n, struct inode *f, int flags)
{
	char path[PATH_MAX], proc[64];
	int fd, old;

	fd = store_open_by_id(n->store, f->id, flags);
	if (fd != -ENOENT)
		return fd;
	old = open_fd_of(n, f->id);
	if (old >= 0) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", old);
		fd = open(proc, (flags & ~O_NOFOLLOW) | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		close(old);
		return fd;
	}
	if (file_path(n, f, path, sizeof(path), 1))
		return -ENOENT;
	fd = openat(store_rootfd(n->store), path, flags | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int ino_stat(struct node *n, struct inode *in, struct stat *st)
{
	char hex[2 * FILE_ID_BYTES + 1];
	int fd;

	if (S_ISDIR(in->type)) {
		fd = dir_fd(n, in);
		if (fd < 0)
			return fd;
		if (fstatat(fd, "", st, AT_EMPTY_PATH) < 0)
			return -errno;
	} else {
		store_id_hex(in->id, hex);
		if (fstatat(store_indexfd(n->store), hex, st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return -errno;
			fd = file_open(n, in, O_PATH);
			if (fd < 0)
				return fd;
			if (fstatat(fd, "", st, AT_EMPTY_PATH) < 0) {
				int ret = -errno;
				close(fd);
				return ret;
			}
			close(fd);
		}
	}
	st->st_nlink = store_nlink(st);
	return 0;
}

static void fill_entry(struct node *n, struct fuse_entry_param *e, struct inode *in, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = nodeid_of(n, in);
	e->attr = *st;
	if (is_follower(n)) {
		/* records change the tree behind the kernel's back: names are not cached */
		e->entry_timeout = 0;
	} else {
		e->entry_timeout = REPFS_LEADER_CACHE_S;
	}
	e->attr_timeout = 1.0;
}

static double negative_timeout(struct node *n)
{
	return is_follower(n) ? 0 : 1.0;	/* short: a leader may step down and follow */
}

/*
 * The kernel learns name in directory parent: finds or makes its inode and
 * counts the reference (the reply must follow). *st is the object's.
 */
static int learn(struct node *n, struct inode *parent, const char *name, const struct stat *st,
		 struct fuse_entry_param *e)
{
	struct itab *t = n->itab;
	uint8_t id[FILE_ID_BYTES];
	struct inode *in;
	struct stat sb = *st;
	int pfd, ret;

	pfd = dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	ret = id_at(pfd, name, st, id);
	if (ret)
		return ret;
	pthread_mutex_lock(&t->mu);
	in = tab_find(t, id);
	if (in && (in->type != (st->st_mode & S_IFMT) || in == &t->root)) {
		pthread_mutex_unlock(&t->mu);
		return -EIO;	/* two objects with one id */
	}
	if (!in) {
		in = calloc(1, sizeof(*in));
		if (!in) {
			pthread_mutex_unlock(&t->mu);
			return -ENOMEM;
		}
		memcpy(in->id, id, FILE_ID_BYTES);
		in->type = st->st_mode & S_IFMT;
		in->dirfd = -1;
		if (S_ISDIR(st->st_mode)) {
			in->gen = store_gen(n->store);
			in->dirfd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (in->dirfd < 0) {
				ret = -errno;
				pthread_mutex_unlock(&t->mu);
				free(in);
				return ret;
			}
		}
		in->hnext = t->bucket[bucket_of(id)];
		t->bucket[bucket_of(id)] = in;
		t->count++;
	} else if (S_ISDIR(st->st_mode) && in->gen != store_gen(n->store)) {
		int fd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0) {
			if (dup3(fd, in->dirfd, O_CLOEXEC) == 0)
				in->gen = store_gen(n->store);
			close(fd);
		}
	}
	name_add(in, parent->id, name);
	in->nlookup++;
	pthread_mutex_unlock(&t->mu);
	sb.st_nlink = store_nlink(st);
	fill_entry(n, e, in, &sb);
	return 0;
}

/* Looks name up in parent; a missing name is ret -ENOENT with e's ino 0 (a negative entry). */
static int lookup_in(struct node *n, struct inode *parent, const char *name, struct fuse_entry_param *e)
{
	struct stat st;
	int pfd;

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	pfd = dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return learn(n, parent, name, &st, e);
}

static void forget_one(struct node *n, fuse_ino_t nodeid, uint64_t nlookup)
{
	struct itab *t = n->itab;
	struct inode *in = ino_of(n, nodeid);

	if (in == &t->root)
		return;
	pthread_mutex_lock(&t->mu);
	in->nlookup = in->nlookup > nlookup ? in->nlookup - nlookup : 0;
	if (!in->nlookup) {
		for (struct inode **pp = &t->bucket[bucket_of(in->id)]; *pp; pp = &(*pp)->hnext) {
			if (*pp == in) {
				*pp = in->hnext;
				break;
			}
		}
		t->count--;
		if (in->dirfd >= 0)
			close(in->dirfd);
		names_free(in);
		free(in);
	}
	pthread_mutex_unlock(&t->mu);
}

int fuse_ops_setup(struct node *n)
{
	struct itab *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	pthread_rwlock_init(&t->ns, NULL);
	memcpy(t->root.id, store_root_id, FILE_ID_BYTES);
	t->root.type = S_IFDIR;
	t->root.dirfd = -1;
	t->root.nlookup = 1;
	n->itab = t;
	return 0;
}

void fuse_ops_free(struct node *n)
{
	struct itab *t = n->itab;

	if (!t)
		return;
	for (int b = 0; b < ITAB_BUCKETS; b++) {
		while (t->bucket[b]) {
			struct inode *in = t->bucket[b];
			t->bucket[b] = in->hnext;
			if (in->dirfd >= 0)
				close(in->dirfd);
			names_free(in);
			free(in);
		}
	}
	pthread_mutex_destroy(&t->mu);
	pthread_rwlock_destroy(&t->ns);
	free(t);
	n->itab = NULL;
}

/* ------------------------------------------------------- invalidations */

/*
 * Invalidations asked for by request handlers go through a queue that a
 * thread of its own works off. A handler must not ask the kernel to drop an
 * inode's pages itself: the kernel may hold one of those pages locked while
 * it waits for a read that only a handler can answer, and if every handler
 * is busy invalidating, nobody does (libfuse: not "in the execution path of
 * a related filesystem operation"). Seen as writers stuck in
 * request_wait_answer and daemon threads in fuse_reverse_inval_inode.
 */
#define INVALQ_MAX 256

#define INVALQ_WAIT_MS 100	/* how long a handler waits for its invalidation to be done */

struct inval {
	fuse_ino_t ino;
	off_t off, len;
};

struct invalq {
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	struct inval items[INVALQ_MAX];	/* protected by mu */
	int n, stop, started;		/* protected by mu */
	uint64_t queued, done;		/* tickets: protected by mu */
	pthread_t thread;
};

static void *invalq_main(void *arg)
{
	struct node *n = arg;
	struct invalq *q = n->invalq;

	for (;;) {
		struct inval batch[INVALQ_MAX];
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
		memcpy(batch, q->items, (size_t)k * sizeof(batch[0]));
		q->n = 0;
		pthread_mutex_unlock(&q->mu);
		for (int i = 0; i < k; i++)
			if (!q->stop && n->se)
				fuse_lowlevel_notify_inval_inode(n->se, batch[i].ino, batch[i].off, batch[i].len);
		pthread_mutex_lock(&q->mu);
		q->done = ticket;
		pthread_cond_broadcast(&q->done_cv);
		pthread_mutex_unlock(&q->mu);
	}
}

/*
 * Has the kernel drop inode ino's pages in [off, off + len) and its
 * attributes (see struct invalq), and waits up to INVALQ_WAIT_MS for it: long
 * enough that the caller's operation returns with the caches dropped in the
 * normal case, short enough that the deadlock above dissolves -- the
 * invalidation completes once the caller's request is done.
 */
static void inval_now_or_soon(struct node *n, fuse_ino_t ino, off_t off, off_t len)
{
	struct invalq *q = n->invalq;
	struct timespec until;
	uint64_t ticket;

	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	if (!q->started && !q->stop && pthread_create(&q->thread, NULL, invalq_main, n) == 0)
		q->started = 1;
	/* a full queue drops the request: the attribute timeout (1 s) still bounds staleness */
	if (!q->started || q->n >= INVALQ_MAX) {
		pthread_mutex_unlock(&q->mu);
		return;
	}
	q->items[q->n++] = (struct inval){ ino, off, len };
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
	pthread_mutex_destroy(&q->mu);
	pthread_cond_destroy(&q->cv);
	pthread_cond_destroy(&q->done_cv);
	free(q);
	n->invalq = NULL;
}

/* The node id of the object id, or 0 if the kernel does not know it. */
static fuse_ino_t known(struct node *n, const uint8_t id[FILE_ID_BYTES])
{
	struct itab *t = n->itab;
	struct inode *in;
	fuse_ino_t ino = 0;

	pthread_mutex_lock(&t->mu);
	in = tab_find(t, id);
	if (in)
		ino = nodeid_of(n, in);
	pthread_mutex_unlock(&t->mu);
	return ino;
}

static int zero_id(const uint8_t id[FILE_ID_BYTES])
{
	static const uint8_t zero[FILE_ID_BYTES];

	return !memcmp(id, zero, FILE_ID_BYTES);
}

/* For a name rel that changed: drops the kernel's entry for it and the directory's attributes. */
static void inval_name(struct node *n, const char *rel)
{
	const char *slash = strrchr(rel, '/');
	char parent[PATH_MAX];
	uint8_t pid[FILE_ID_BYTES];
	fuse_ino_t pino;

	if (!*rel)
		return;
	if (slash) {
		snprintf(parent, sizeof(parent), "%.*s", (int)(slash - rel), rel);
		if (store_get_id(n->store, parent, pid))
			return;
		pino = known(n, pid);
	} else {
		pino = FUSE_ROOT_ID;
	}
	if (!pino)
		return;
	fuse_lowlevel_notify_inval_entry(n->se, pino, slash ? slash + 1 : rel, strlen(slash ? slash + 1 : rel));
	fuse_lowlevel_notify_inval_inode(n->se, pino, -1, 0);
}

static void inval_id(struct node *n, const uint8_t id[FILE_ID_BYTES], off_t off, off_t len)
{
	fuse_ino_t ino;

	if (zero_id(id) || !(ino = known(n, id)))
		return;
	fuse_lowlevel_notify_inval_inode(n->se, ino, off, len);
}

void fuse_ops_invalidate(struct node *n, const struct record *r)
{
	int names = r->type == REC_CREATE || r->type == REC_UNLINK || r->type == REC_RMDIR ||
		    r->type == REC_RENAME || r->type == REC_LINK;

	if (!n->se || !n->itab)
		return;
	switch (r->type) {
	case REC_WRITE:
		inval_id(n, r->id, (off_t)r->off, r->data_len ? (off_t)r->data_len : 1);
		break;
	case REC_COPY:
		inval_id(n, r->id2, (off_t)r->off2, r->len ? (off_t)r->len : 1);
		break;
	case REC_CREATE:
		break;	/* the kernel cannot know a new object; its name and directory below */
	default:
		inval_id(n, r->id, 0, 0);
		if (r->type == REC_RENAME)
			inval_id(n, r->id2, 0, 0);
	}
	if (!names || (r->flags & REC_F_NOPATH))
		return;
	inval_name(n, r->path ? r->path : "");
	if (r->path2 && *r->path2)
		inval_name(n, r->path2);
}

void fuse_ops_invalidate_all(struct node *n)
{
	struct itab *t = n->itab;
	struct {
		fuse_ino_t ino, parent;
		char name[NAME_MAX + 1];
	} *all = NULL;
	size_t k = 0, cap = 0;

	if (!n->se || !t)
		return;
	pthread_mutex_lock(&t->mu);
	for (int b = 0; b < ITAB_BUCKETS; b++)
		for (struct inode *in = t->bucket[b]; in; in = in->hnext)
			cap += (size_t)in->nnames;
	all = calloc(cap + 1, sizeof(*all));
	for (int b = 0; all && b < ITAB_BUCKETS; b++) {
		for (struct inode *in = t->bucket[b]; in; in = in->hnext) {
			for (struct iname *x = in->names; x && k < cap; x = x->next) {
				struct inode *p = tab_find(t, x->parent);
				if (!p || strlen(x->s) > NAME_MAX)
					continue;
				all[k].ino = nodeid_of(n, in);
				all[k].parent = nodeid_of(n, p);
				snprintf(all[k++].name, sizeof(all[0].name), "%s", x->s);
			}
		}
	}
	pthread_mutex_unlock(&t->mu);
	fuse_lowlevel_notify_inval_inode(n->se, FUSE_ROOT_ID, 0, 0);
	for (size_t i = 0; i < k; i++) {
		fuse_lowlevel_notify_inval_entry(n->se, all[i].parent, all[i].name, strlen(all[i].name));
		fuse_lowlevel_notify_inval_inode(n->se, all[i].ino, 0, 0);
	}
	free(all);
}

/* ------------------------------------------------------------ requests */

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct node *n = userdata;

	invalq_init(n);
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;	/* truncation arrives as a setattr record */
	conn->want &= ~FUSE_CAP_READDIRPLUS;
	conn->max_write = REC_MAX_DATA;
	conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->max_readahead = 1 << 20;
}

static void op_destroy(void *userdata)
{
	invalq_free(userdata);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n = node_of(req);
	struct fuse_entry_param e;
	int ret = lookup_in(n, ino_of(n, parent), name, &e);

	if (ret == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = negative_timeout(n);
		fuse_reply_entry(req, &e);
	} else if (ret) {
		fuse_reply_err(req, -ret);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget_one(node_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		forget_one(node_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct stat st;
	int ret;

	if (fi && !S_ISDIR(ino_of(n, ino)->type) && fstat(fh_of(fi)->fd, &st) == 0) {
		st.st_nlink = store_nlink(&st);
		ret = 0;
	} else {
		ret = ino_stat(n, ino_of(n, ino), &st);
	}
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(req);
	char buf[PATH_MAX + 1];
	int fd = file_open(n, ino_of(n, ino), O_PATH);
	ssize_t r;

	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	r = readlinkat(fd, "", buf, sizeof(buf) - 1);
	if (r < 0) {
		fuse_reply_err(req, errno);
	} else {
		buf[r] = 0;
		fuse_reply_readlink(req, buf);
	}
	close(fd);
}

/* Owner and mode of a new object: the caller's, with BSD group semantics under setgid dirs. */
static void new_owner(fuse_req_t req, int pfd, mode_t *mode, uid_t *uid, gid_t *gid)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct stat pst;

	*uid = c->uid;
	*gid = c->gid;
	if (fstatat(pfd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID)) {
		*gid = pst.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
}

/*
 * Creates name in parent (a create record) and fills e for the reply; for a
 * regular file *out_fd (if not NULL) receives a read-write descriptor.
 */
static int create_object(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
			 const char *target, int *out_fd, struct fuse_entry_param *e)
{
	struct node *n = node_of(req);
	struct inode *p = ino_of(n, parent);
	struct record r = { .type = REC_CREATE };
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;
	int pfd, ret, fd = -1;
	uid_t uid;
	gid_t gid;

	if (out_fd)
		*out_fd = -1;
	if (is_follower(n))
		return -EROFS;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	pthread_rwlock_wrlock(&n->itab->ns);
	pfd = dir_fd(n, p);
	ret = pfd < 0 ? pfd : dir_path(n, p, dir, sizeof(dir));
	if (!ret)
		ret = join(path, sizeof(path), dir, name);
	if (ret)
		goto out;
	new_owner(req, pfd, &mode, &uid, &gid);
	r.path = path;
	store_new_id(r.id);
	r.mode = mode;
	r.uid = uid;
	r.gid = gid;
	r.rdev = rdev;
	if (target) {
		r.data = target;
		r.data_len = (uint32_t)strlen(target) + 1;
	}
	ret = node_commit(n, &r, -1, out_fd ? &fd : NULL);
	if (ret)
		goto out;
	ret = (fd >= 0 ? fstat(fd, &st) : fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW)) < 0 ? -errno : 0;
	if (!ret)
		ret = learn(n, p, name, &st, e);
	if (ret && fd >= 0) {
		close(fd);
		fd = -1;
	}
out:
	pthread_rwlock_unlock(&n->itab->ns);
	if (out_fd)
		*out_fd = fd;
	return ret;
}

static void reply_entry_or_err(fuse_req_t req, int ret, struct fuse_entry_param *e)
{
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_entry(req, e);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fuse_entry_param e;

	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISCHR(mode) && !S_ISBLK(mode) && !S_ISSOCK(mode)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	reply_entry_or_err(req, create_object(req, parent, name, mode, rdev, NULL, NULL, &e), &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;

	reply_entry_or_err(req, create_object(req, parent, name, (mode & 07777) | S_IFDIR, 0, NULL, NULL, &e),
			   &e);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	if (strlen(target) >= PATH_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	reply_entry_or_err(req, create_object(req, parent, name, S_IFLNK | 0777, 0, target, NULL, &e), &e);
}

/* path of name in directory parent, and (with id) the id of what it holds: -ENOENT if nothing. */
static int name_path(struct node *n, struct inode *parent, const char *name, char *path, size_t len,
		     uint8_t *id)
{
	char dir[PATH_MAX];
	struct stat st;
	int pfd, ret;

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	ret = dir_path(n, parent, dir, sizeof(dir));
	if (!ret)
		ret = join(path, len, dir, name);
	if (ret || !id)
		return ret;
	pfd = dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return id_at(pfd, name, &st, id);
}

static int remove_object(fuse_req_t req, fuse_ino_t parent, const char *name, int type)
{
	struct node *n = node_of(req);
	struct inode *p = ino_of(n, parent);
	struct record r = { .type = (uint16_t)type };
	char path[PATH_MAX];
	int ret;

	if (is_follower(n))
		return -EROFS;
	pthread_rwlock_wrlock(&n->itab->ns);
	ret = name_path(n, p, name, path, sizeof(path), r.id);
	if (!ret) {
		r.path = path;
		ret = node_commit(n, &r, -1, NULL);
	}
	if (!ret)
		names_moved(n, p->id, name, r.id, NULL);
	pthread_rwlock_unlock(&n->itab->ns);
	return ret;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -remove_object(req, parent, name, REC_UNLINK));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -remove_object(req, parent, name, REC_RMDIR));
}

static int do_rename(struct node *n, struct inode *p, const char *name, struct inode *np, const char *newname,
		     unsigned int flags)
{
	struct record r = { .type = REC_RENAME };
	char from[PATH_MAX], to[PATH_MAX];
	int ret;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	ret = name_path(n, p, name, from, sizeof(from), r.id);
	if (ret)
		return ret;
	ret = name_path(n, np, newname, to, sizeof(to), r.id2);
	if (ret == -ENOENT && !(flags & RENAME_EXCHANGE))
		memset(r.id2, 0, sizeof(r.id2));
	else if (ret)
		return ret;
	else if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	else if (!memcmp(r.id, r.id2, FILE_ID_BYTES))
		return 0;	/* two names of one object: rename(2) does nothing, so there is nothing to log */
	r.path = from;
	r.path2 = to;
	r.op_flags = flags;
	ret = node_commit(n, &r, -1, NULL);
	if (ret)
		return ret;
	if (flags & RENAME_EXCHANGE) {
		names_moved(n, p->id, name, r.id, r.id2);
		names_moved(n, np->id, newname, r.id2, r.id);
	} else {
		names_moved(n, p->id, name, r.id, NULL);
		names_moved(n, np->id, newname, zero_id(r.id2) ? NULL : r.id2, r.id);
	}
	return 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct node *n = node_of(req);
	int ret;

	if (is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_rwlock_wrlock(&n->itab->ns);
	ret = do_rename(n, ino_of(n, parent), name, ino_of(n, newparent), newname, flags);
	pthread_rwlock_unlock(&n->itab->ns);
	fuse_reply_err(req, -ret);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct node *n = node_of(req);
	struct inode *f = ino_of(n, ino), *np = ino_of(n, newparent);
	struct record r = { .type = REC_LINK };
	char from[PATH_MAX], to[PATH_MAX];
	struct fuse_entry_param e;
	int ret;

	if (is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	pthread_rwlock_wrlock(&n->itab->ns);
	ret = file_path(n, f, from, sizeof(from), 1);
	if (!ret)
		ret = name_path(n, np, newname, to, sizeof(to), NULL);
	if (!ret) {
		memcpy(r.id, f->id, FILE_ID_BYTES);
		r.path = from;
		r.path2 = to;
		ret = node_commit(n, &r, -1, NULL);
	}
	if (!ret)
		ret = lookup_in(n, np, newname, &e);
	pthread_rwlock_unlock(&n->itab->ns);
	reply_entry_or_err(req, ret, &e);
}

/*
 * A record of a change to the object in itself (setattr, xattrs): through
 * the open file h if there is one, else by a path of the object; an
 * object with no name left (unlinked while open) is named by id alone and
 * reached through a descriptor of one of its opens.
 */
static int commit_on(struct node *n, struct inode *in, struct handle *h, struct record *r)
{
	char path[PATH_MAX];
	int fd = -1, ret;

	memcpy(r->id, in->id, FILE_ID_BYTES);
	if (h) {
		memcpy(r->id, h->id, FILE_ID_BYTES);
		if (ino_path(n, in, path, sizeof(path), 0) == 0) {
			r->path = path;
		} else {
			r->path = "";
			r->flags |= REC_F_NOPATH;
		}
		return node_commit(n, r, h->fd, NULL);
	}
	pthread_rwlock_rdlock(&n->itab->ns);
	ret = ino_path(n, in, path, sizeof(path), 1);
	if (ret == 0) {
		r->path = path;
	} else if (ret == -ENOENT && !S_ISDIR(in->type) && (fd = open_fd_of(n, in->id)) >= 0) {
		r->path = "";
		r->flags |= REC_F_NOPATH;
		ret = 0;
	}
	if (!ret)
		ret = node_commit(n, r, fd, NULL);
	pthread_rwlock_unlock(&n->itab->ns);
	if (fd >= 0)
		close(fd);
	return ret;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct handle *h = fi && !S_ISDIR(in->type) ? fh_of(fi) : NULL;
	struct stat st;
	int ret = 0;

	if (is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	/* one record per kind, in the order libfuse's path API gave them: mode, owner, size, times */
	if (to_set & FUSE_SET_ATTR_MODE) {
		struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE, .mode = attr->st_mode & 07777 };
		ret = commit_on(n, in, h, &r);
	}
	if (!ret && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		struct record r = { .type = REC_SETATTR, .uid = attr->st_uid, .gid = attr->st_gid };
		if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != (uid_t)-1)
			r.op_flags |= SA_UID;
		if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != (gid_t)-1)
			r.op_flags |= SA_GID;
		if (r.op_flags)
			ret = commit_on(n, in, h, &r);
	}
	if (!ret && (to_set & FUSE_SET_ATTR_SIZE)) {
		struct record r = { .type = REC_SETATTR, .op_flags = SA_SIZE, .len = (uint64_t)attr->st_size };
		ret = attr->st_size < 0 ? -EINVAL : commit_on(n, in, h, &r);
	}
	if (!ret && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct record r = { .type = REC_SETATTR };
		int64_t now = now_ns();
		if (to_set & FUSE_SET_ATTR_ATIME) {
			r.op_flags |= SA_ATIME;
			r.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW)
					     ? now
					     : (int64_t)attr->st_atim.tv_sec * 1000000000 + attr->st_atim.tv_nsec;
		}
		if (to_set & FUSE_SET_ATTR_MTIME) {
			r.op_flags |= SA_MTIME;
			r.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW)
					     ? now
					     : (int64_t)attr->st_mtim.tv_sec * 1000000000 + attr->st_mtim.tv_nsec;
		}
		ret = commit_on(n, in, h, &r);
	}
	if (!ret) {
		if (h && fstat(h->fd, &st) == 0)
			st.st_nlink = store_nlink(&st);
		else
			ret = ino_stat(n, in, &st);
	}
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static int backing_flags(int flags)
{
	/* the kernel gives every write its offset (O_APPEND included); we log that */
	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOCTTY);
	return flags | O_CLOEXEC | O_NOFOLLOW;
}

/* id: the file's id when the caller knows it (a create), else NULL: read from the file */
static int new_handle(struct node *n, struct fuse_file_info *fi, int fd, int flags, const uint8_t *id)
{
	struct handle *h = calloc(1, sizeof(*h));
	int ret = 0;

	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->sync = (flags & (O_SYNC | O_DSYNC)) != 0;
	if ((flags & O_ACCMODE) == O_WRONLY && !is_follower(n)) {
		/* nothing is read through it: writes skip the kernel's page cache (op_write) */
		h->direct = 1;
		fi->direct_io = 1;
	} else if (!is_follower(n)) {
		/* every change goes through this mount's one inode of the file: its pages stay right */
		fi->keep_cache = 1;
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
	pthread_mutex_lock(&n->open_lock);
	h->prev = NULL;
	h->next = n->open_files;
	if (h->next)
		h->next->prev = h;
	n->open_files = h;
	pthread_mutex_unlock(&n->open_lock);
	return 0;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	int fd, ret;

	if (is_follower(n) && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fd = file_open(n, ino_of(n, ino), backing_flags(fi->flags));
	ret = fd < 0 ? fd : new_handle(n, fi, fd, fi->flags, NULL);
	if (ret)
		fuse_reply_err(req, -ret);
	else if (fuse_reply_open(req, fi) == -ENOENT)
		fuse_ops_release_handle(n, fh_of(fi));	/* the opener was interrupted */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct fuse_entry_param e;
	uint8_t id[FILE_ID_BYTES];
	int fd = -1, ret;

	ret = create_object(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, &fd, &e);
	if (ret == -EEXIST && !(fi->flags & O_EXCL)) {
		/* made meanwhile by another opener: open it */
		ret = lookup_in(n, ino_of(n, parent), name, &e);
		if (!ret) {
			fd = file_open(n, ino_of(n, e.ino), backing_flags(fi->flags));
			if (fd < 0) {
				forget_one(n, e.ino, 1);
				ret = fd;
			} else {
				ret = new_handle(n, fi, fd, fi->flags, NULL);
				if (ret)
					forget_one(n, e.ino, 1);
			}
		}
	} else if (!ret) {
		memcpy(id, ino_of(n, e.ino)->id, FILE_ID_BYTES);
		ret = new_handle(n, fi, fd, fi->flags, id);
		if (ret)
			forget_one(n, e.ino, 1);
	}
	if (ret)
		fuse_reply_err(req, -ret);
	else if (fuse_reply_create(req, &e, fi) == -ENOENT)
		fuse_ops_release_handle(n, fh_of(fi));
}

/* Reads hand the kernel the backing descriptor: libfuse splices from it, no copy through us. */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);

	(void)ino;
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fh_of(fi)->fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/* 1 if the caller of req is in group gid (its fsgid or a supplementary group). */
static int caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[256];
	int k;

	if (fuse_req_ctx(req)->gid == gid)
		return 1;
	k = fuse_req_getgroups(req, (int)(sizeof(groups) / sizeof(groups[0])), groups);
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
static int drop_privs(fuse_req_t req, struct inode *in, struct handle *h)
{
	struct node *n = node_of(req);
	struct stat st;
	mode_t kill = 0;
	int ret;

	if (fstat(h->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	if (fuse_req_ctx(req)->uid != 0 && (st.st_mode & (S_ISUID | S_ISGID))) {
		kill = st.st_mode & S_ISUID;
		if ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !caller_in_group(req, st.st_gid)))
			kill |= S_ISGID;
	}
	if (kill) {
		struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE, .mode = (st.st_mode & 07777) & ~kill };
		ret = commit_on(n, in, h, &r);
		if (ret)
			return ret;
	}
	if (fgetxattr(h->fd, "security.capability", NULL, 0) >= 0) {
		struct record r = { .type = REC_REMOVEXATTR, .name = "security.capability" };
		ret = commit_on(n, in, h, &r);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Writes of write-only files arrive as direct I/O (new_handle()): the data
 * comes straight from the writer's memory, with no copy into the kernel's
 * page cache and no security.capability lookup (a round trip) per write(2).
 * Pages of the file the kernel may hold (another open's, or left by opens
 * closed before) are dropped for the range written, as a write through the
 * cache would have updated them.
 */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct handle *h = fh_of(fi);
	struct record r = { .type = REC_WRITE };
	int ret;

	if (is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (size > REC_MAX_DATA)
		size = REC_MAX_DATA;
	if (h->direct && (ret = drop_privs(req, in, h)))
		goto out;
	r.off = (uint64_t)off;
	r.data = buf;
	r.data_len = (uint32_t)size;
	ret = commit_on(n, in, h, &r);
	if (ret)
		goto out;
	if (h->direct && (!h->clean || open_by(n, h->id, h, 1)))
		inval_now_or_soon(n, ino, off, (off_t)size);
	h->clean = 1;
	if (h->sync || n->commit_write)
		ret = node_sync(n, r.seq);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(req);
	struct statvfs st;

	(void)ino;
	if (fstatvfs(store_rootfd(n->store), &st) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if (is_follower(n))
		st.f_flag |= ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

void fuse_ops_release_handle(struct node *n, struct handle *h)
{
	pthread_mutex_lock(&n->open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		n->open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&n->open_lock);
	close(h->fd);
	free(h);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_ops_release_handle(node_of(req), fh_of(fi));
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, -node_sync(node_of(req), 0));
}

/* trusted.* is for CAP_SYS_ADMIN: the kernel leaves that check to us, as we run as root */
static int trusted_denied(fuse_req_t req, const char *name)
{
	return !strncmp(name, "trusted.", 8) && fuse_req_ctx(req)->uid != 0;
}

static int xattr_change(fuse_req_t req, fuse_ino_t ino, struct record *r)
{
	struct node *n = node_of(req);

	if (is_follower(n))
		return -EROFS;
	if (store_hidden_xattr(r->name) || trusted_denied(req, r->name))
		return -EPERM;
	return commit_on(n, ino_of(n, ino), NULL, r);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			int flags)
{
	struct record r = { .type = REC_SETXATTR };

	if (strlen(name) > XATTR_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > XATTR_SIZE_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	r.name = name;
	r.data = value;
	r.data_len = (uint32_t)size;
	r.op_flags = (uint32_t)flags;
	fuse_reply_err(req, -xattr_change(req, ino, &r));
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct record r = { .type = REC_REMOVEXATTR, .name = name };

	fuse_reply_err(req, -xattr_change(req, ino, &r));
}

/*
 * Where the xattr reads of in go: a path for the l*xattr calls (a
 * directory's descriptor through /proc, which getxattr follows to it; a
 * file's index entry), or, for a file unlinked while open, a descriptor
 * (*fd >= 0, close it).
 */
static int xattr_source(struct node *n, struct inode *in, char *path, size_t len, int *fd)
{
	char hex[2 * FILE_ID_BYTES + 1];
	struct stat st;
	int d;

	*fd = -1;
	if (S_ISDIR(in->type)) {
		d = dir_fd(n, in);
		if (d < 0)
			return d;
		snprintf(path, len, "/proc/self/fd/%d", d);
		return 0;
	}
	store_id_hex(in->id, hex);
	if (fstatat(store_indexfd(n->store), hex, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		snprintf(path, len, "%s.ids/%s", store_path(n->store), hex);
		return 0;
	}
	*fd = open_fd_of(n, in->id);
	return *fd < 0 ? *fd : 0;
}

static ssize_t xattr_get(struct inode *in, const char *path, int fd, const char *name, void *buf, size_t size)
{
	if (fd >= 0)
		return fgetxattr(fd, name, buf, size);
	return S_ISDIR(in->type) ? getxattr(path, name, buf, size) : lgetxattr(path, name, buf, size);
}

static ssize_t xattr_list(struct inode *in, const char *path, int fd, char *buf, size_t size)
{
	if (fd >= 0)
		return flistxattr(fd, buf, size);
	return S_ISDIR(in->type) ? listxattr(path, buf, size) : llistxattr(path, buf, size);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	char path[PATH_MAX + 64], *buf = NULL;
	int fd, ret;
	ssize_t r;

	if (store_hidden_xattr(name) || trusted_denied(req, name)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	ret = xattr_source(n, in, path, sizeof(path), &fd);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (size && !(buf = malloc(size))) {
		ret = -ENOMEM;
		goto out;
	}
	r = xattr_get(in, path, fd, name, buf, size);
	if (r < 0)
		ret = -errno;
	else if (size)
		fuse_reply_buf(req, buf, (size_t)r);
	else
		fuse_reply_xattr(req, (size_t)r);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	free(buf);
	if (fd >= 0)
		close(fd);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	char path[PATH_MAX + 64], *all = NULL, *out = NULL;
	size_t used = 0;
	ssize_t len;
	int fd, ret;

	ret = xattr_source(n, in, path, sizeof(path), &fd);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	for (;;) {
		len = xattr_list(in, path, fd, NULL, 0);
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
		len = xattr_list(in, path, fd, all, (size_t)len);
		if (len >= 0)
			break;
		if (errno != ERANGE) {
			ret = -errno;
			goto out;
		}
	}
	out = malloc((size_t)len + 1);
	if (!out) {
		ret = -ENOMEM;
		goto out;
	}
	for (char *p = all; p < all + len; p += strlen(p) + 1) {
		size_t l = strlen(p) + 1;
		if (store_hidden_xattr(p) || trusted_denied(req, p))
			continue;
		memcpy(out + used, p, l);
		used += l;
	}
	if (!size)
		fuse_reply_xattr(req, used);
	else if (used > size)
		ret = -ERANGE;
	else
		fuse_reply_buf(req, out, used);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	free(all);
	free(out);
	if (fd >= 0)
		close(fd);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct dirhandle *d;
	int fd, dfd = dir_fd(n, ino_of(n, ino));

	if (dfd < 0) {
		fuse_reply_err(req, -dfd);
		return;
	}
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->dp = fdopendir(fd))) {
		int err = d ? errno : ENOMEM;
		close(fd);
		free(d);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		closedir(d->dp);
		free(d);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t used = 0;
	int err = 0;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		off_t next;
		size_t k;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		next = telldir(d->dp);
		k = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name, &st, next);
		if (k > size - used)
			break;
		used += k;
		d->entry = NULL;
		d->offset = next;
	}
	if (err && !used)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dp);
	free(d);
	fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct record r = { .type = REC_FALLOCATE };

	if (is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	r.op_flags = (uint32_t)mode;
	r.off = (uint64_t)off;
	r.len = (uint64_t)len;
	fuse_reply_err(req, -commit_on(n, ino_of(n, ino), fh_of(fi), &r));
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
			       fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t size,
			       int flags)
{
	struct node *n = node_of(req);
	struct record r = { .type = REC_COPY };
	char from[PATH_MAX], to[PATH_MAX];
	uint8_t digest[STORE_DIGEST_BYTES];
	struct stat st;
	int ret;

	if (is_follower(n)) {
		ret = -EROFS;
		goto out;
	}
	ret = flags ? -EINVAL : 0;
	/* a file with no name left cannot be named by a copy record: the kernel falls back to read and write */
	if (!ret && (file_path(n, ino_of(n, ino_in), from, sizeof(from), 0) ||
		     file_path(n, ino_of(n, ino_out), to, sizeof(to), 0)))
		ret = -EOPNOTSUPP;
	if (!ret && fstat(fh_of(fi_in)->fd, &st) < 0)
		ret = -errno;
	if (ret)
		goto out;
	if (off_in >= st.st_size) {
		fuse_reply_write(req, 0);
		return;
	}
	if ((uint64_t)size > (uint64_t)(st.st_size - off_in))
		size = (size_t)(st.st_size - off_in);
	if (size > (1u << 30))
		size = 1u << 30;
	/* the source range's digest lets a replay tell whether the source still holds it */
	ret = store_range_digest(fh_of(fi_in)->fd, (uint64_t)off_in, size, digest);
	if (ret)
		goto out;
	r.data = digest;
	r.data_len = STORE_DIGEST_BYTES;
	r.path = from;
	memcpy(r.id, fh_of(fi_in)->id, FILE_ID_BYTES);
	r.off = (uint64_t)off_in;
	r.path2 = to;
	memcpy(r.id2, fh_of(fi_out)->id, FILE_ID_BYTES);
	r.off2 = (uint64_t)off_out;
	r.len = size;
	ret = node_commit(n, &r, fh_of(fi_out)->fd, NULL);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	off_t r;

	(void)ino;
	r = lseek(fh_of(fi)->fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

const struct fuse_lowlevel_ops repfs_ll_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
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
	.fsyncdir = op_fsync,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};
