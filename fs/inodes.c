/* inodes.c -- the mount's inodes: one per object, keyed by its file id
 *
 * The kernel knows each object by a node id we hand out at lookup;
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
#include "inodes.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "node.h"
#include "../lib/log.h"
#include "../lib/util.h"

#define NAMES_MAX 8	/* names remembered per inode (hard links); the oldest goes first */

struct iname {
	uint8_t parent[FILE_ID_BYTES];
	struct iname *next;
	char s[];
};


/*
 * The id hash starts with ITAB_BUCKETS chains and doubles whenever it holds
 * more inodes than chains: a create looks its new id up, and a miss walks a
 * whole chain, one cache miss per inode (the kernel keeps every inode it
 * learnt while memory lasts: 200,000 after a few untars).
 */
#define ITAB_BUCKETS 16384
#define ITAB_BUCKETS_MAX (1u << 26)

struct itab {
	pthread_mutex_t mu;
	pthread_rwlock_t ns;	/* see "Locking" above */
	struct inode **bucket;	/* nbuckets chains, a power of two (mu) */
	unsigned nbuckets;	/* protected by mu */
	struct inode root;
	struct inode *retired;	/* ino_retire()d inodes the kernel still holds (mu) */
	uint64_t count;		/* protected by mu */
	unsigned dirfds;	/* directory descriptors held (mu) */
	unsigned dirfds_max;	/* ... at most: past it, file handles (see ino_dir_fd()) */
	int no_handles;		/* the file system or our privileges give none: every directory holds one */
	int stale_names;	/* records changed names behind the kernel: names need checking (atomic) */
};

int mount_is_follower(const struct node *n)
{
	return n->st.role != ROLE_LEADER;
}

static unsigned hash_of(const uint8_t id[FILE_ID_BYTES])
{
	uint64_t h;

	memcpy(&h, id + 8, sizeof(h));	/* ids are random */
	h ^= h >> 29;
	return (unsigned)h;
}

/* Under itab.mu. */
static struct inode **chain_of(struct itab *t, const uint8_t id[FILE_ID_BYTES])
{
	return &t->bucket[hash_of(id) & (t->nbuckets - 1)];
}

/* Under itab.mu: twice the chains, once there are more inodes than chains (a failed allocation keeps the table). */
static void maybe_grow(struct itab *t)
{
	unsigned n = t->nbuckets * 2;
	struct inode **b;

	if (t->count <= t->nbuckets || n > ITAB_BUCKETS_MAX || !(b = calloc(n, sizeof(*b))))
		return;
	for (unsigned i = 0; i < t->nbuckets; i++) {
		while (t->bucket[i]) {
			struct inode *in = t->bucket[i];
			unsigned k = hash_of(in->id) & (n - 1);
			t->bucket[i] = in->hnext;
			in->hnext = b[k];
			b[k] = in;
		}
	}
	free(t->bucket);
	t->bucket = b;
	t->nbuckets = n;
}

struct inode *ino_of(struct node *n, fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID ? &n->itab->root : (struct inode *)(uintptr_t)ino;
}

fuse_ino_t ino_nodeid(struct node *n, struct inode *in)
{
	return in == &n->itab->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in;
}

/* Under itab.mu. */
static struct inode *tab_find(struct itab *t, const uint8_t id[FILE_ID_BYTES])
{
	struct inode *in;

	if (!memcmp(id, t->root.id, FILE_ID_BYTES))
		return &t->root;
	for (in = *chain_of(t, id); in; in = in->hnext)
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

static int held_specials;	/* keepfd descriptors open (itab.mu) */
#define HELD_SPECIALS_MAX 4096

static void inode_free(struct itab *t, struct inode *in)
{
	if (in->dirfd >= 0) {
		close(in->dirfd);
		t->dirfds--;
	}
	if (in->keepfd >= 0) {
		close(in->keepfd);
		held_specials--;
	}
	free(in->fh);
	names_free(in);
	free(in->path);
	free(in);
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
void ino_names_moved(struct node *n, const uint8_t parent[FILE_ID_BYTES], const char *name,
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
int ino_id_at(int dfd, const char *name, const struct stat *st, uint8_t id[FILE_ID_BYTES])
{
	ssize_t r = store_getxattr_at(dfd, name, ID_XATTR, id, FILE_ID_BYTES);

	if (r == FILE_ID_BYTES)
		return 0;
	if (r >= 0 || errno == ENODATA) {
		memset(id, 0xff, FILE_ID_BYTES);
		memcpy(id + 8, &st->st_ino, sizeof(st->st_ino));
		return 0;
	}
	return -errno;
}

/*
 * Directory descriptors. A directory the kernel knows holds an O_PATH
 * descriptor of itself, which also says where it is now (ino_dir_path()),
 * as long as fewer than itab.dirfds_max directories do: the kernel may keep
 * hundreds of thousands of directories cached, and one descriptor each
 * would reach the descriptor limit, after which the daemon could open
 * nothing (not the log's next segment, not a file a program opens). Past the
 * cap a directory keeps a file handle instead (name_to_handle_at(); opening
 * one takes CAP_DAC_READ_SEARCH), and a request that needs its descriptor
 * opens it by handle: that descriptor is the request's thread's until the
 * thread takes its next request (ino_dir_temps_release()), and the next
 * directory opened once a held one was freed (forgotten) keeps its own.
 * Without file handles (the file system has none, or we may not open them)
 * every directory holds one, as before the cap.
 */
struct temp {
	const struct inode *d;	/* only compared: the kernel holds d while a request on it runs */
	unsigned gen;
	int fd;
};
static __thread struct temp *temps;
static __thread unsigned ntemps, captemps;
/* a thread that ends (libfuse ends idle workers) releases its own at its end */
static pthread_key_t temps_key;
static pthread_once_t temps_once = PTHREAD_ONCE_INIT;

static void temps_at_exit(void *unused)
{
	(void)unused;
	ino_dir_temps_release();
}

static void temps_key_make(void)
{
	pthread_key_create(&temps_key, temps_at_exit);
}

void ino_dir_temps_release(void)
{
	if (!temps)
		return;
	for (unsigned i = 0; i < ntemps; i++)
		close(temps[i].fd);
	free(temps);	/* not kept: a thread that ends would leave it behind */
	temps = NULL;
	ntemps = captemps = 0;
}

/* The descriptor of d this thread opened for its request, or -1. */
static int temp_find(const struct inode *d)
{
	for (unsigned i = 0; i < ntemps; i++)
		if (temps[i].d == d && temps[i].gen == d->gen)
			return temps[i].fd;
	return -1;
}

/* fd, of d, becomes the calling thread's until its next request. */
static int temp_keep(const struct inode *d, int fd)
{
	if (ntemps == captemps) {
		unsigned cap = captemps ? captemps * 2 : 8;
		struct temp *t = realloc(temps, cap * sizeof(*t));
		if (!t) {
			close(fd);
			return -ENOMEM;
		}
		if (!temps) {
			pthread_once(&temps_once, temps_key_make);
			pthread_setspecific(temps_key, t);	/* any non-NULL value: the destructor runs */
		}
		temps = t;
		captemps = cap;
	}
	temps[ntemps++] = (struct temp){ d, d->gen, fd };
	return fd;
}

/* The file handle of name in dfd (flags: of name_to_handle_at()), allocated; NULL with errno. */
static struct file_handle *handle_of(int dfd, const char *name, int flags)
{
	_Alignas(struct file_handle) unsigned char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	struct file_handle *h = (struct file_handle *)buf, *out;
	int mnt;

	h->handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(dfd, name, h, &mnt, flags) < 0)
		return NULL;
	out = malloc(sizeof(*h) + h->handle_bytes);
	if (out)
		memcpy(out, h, sizeof(*h) + h->handle_bytes);
	return out;
}

/* A descriptor of the directory whose handle fh is: -ENOENT once it was removed. */
static int dir_open_handle(struct node *n, struct file_handle *fh)
{
	int fd = open_by_handle_at(store_rootfd(n->store), fh, O_PATH | O_DIRECTORY | O_CLOEXEC);

	return fd >= 0 ? fd : errno == ESTALE ? -ENOENT : -errno;
}

/* Under itab.mu: fd, d's, is d's from now on (its handle goes). */
static int dir_hold_fd(struct itab *t, struct inode *d, int fd)
{
	t->dirfds++;
	free(d->fh);
	d->fh = NULL;
	__atomic_store_n(&d->dirfd, fd, __ATOMIC_RELEASE);
	return fd;
}

/* Under itab.mu: fd, d's opened just now, stays d's while the cap allows, else the request's. */
static int dir_keep(struct itab *t, struct inode *d, int fd)
{
	return t->dirfds < t->dirfds_max ? dir_hold_fd(t, d, fd) : temp_keep(d, fd);
}

/* Under itab.mu: a directory the kernel learns now holds a descriptor, or past the cap a file handle. */
static int dir_learn(struct node *n, struct inode *in, int pfd, const char *name)
{
	struct itab *t = n->itab;
	int fd;

	in->gen = store_gen(n->store);
	if (t->dirfds >= t->dirfds_max && !t->no_handles && (in->fh = handle_of(pfd, name, 0)))
		return 0;
	fd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	in->dirfd = fd;
	t->dirfds++;
	return 0;
}

static int dir_fd_locked(struct node *n, struct inode *d);

/*
 * A new descriptor of directory d through its parent's, after the tree was
 * replaced (store_gen() moved on). Under itab.mu.
 */
static int dir_reopen(struct node *n, struct inode *d)
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
	ret = fstat(fd, &st) < 0 ? -errno : ino_id_at(pfd, d->names->s, &st, id);
	if (!ret && memcmp(id, d->id, FILE_ID_BYTES))
		ret = -ESTALE;
	if (ret) {
		close(fd);
		return ret;
	}
	return fd;
}

/*
 * Under itab.mu: d's descriptor in the tree of generation gen, from fd (a
 * descriptor of it there, which this takes): a held one keeps its number
 * (fd is dup3'd onto it), a handle is taken anew.
 */
static int dir_renew(struct node *n, struct inode *d, int fd, unsigned gen)
{
	struct file_handle *fh;
	int ret = 0;

	if (d->dirfd >= 0) {
		if (dup3(fd, d->dirfd, O_CLOEXEC) < 0)
			ret = -errno;
		close(fd);
		if (ret)
			return ret;
		d->gen = gen;
		return d->dirfd;
	}
	if (!(fh = handle_of(fd, "", AT_EMPTY_PATH))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	free(d->fh);
	d->fh = fh;
	d->gen = gen;
	return dir_keep(n->itab, d, fd);
}

/* A descriptor of directory d (see ino_dir_fd()), under itab.mu. */
static int dir_fd_locked(struct node *n, struct inode *d)
{
	unsigned gen = store_gen(n->store);
	int fd;

	if (d == &n->itab->root)
		return store_rootfd(n->store);
	if (d->dirfd < 0 && !d->fh)
		return -ENOTDIR;
	if (d->gen != gen) {
		fd = dir_reopen(n, d);
		return fd < 0 ? fd : dir_renew(n, d, fd, gen);
	}
	if (d->dirfd >= 0)
		return d->dirfd;
	if ((fd = temp_find(d)) >= 0)
		return fd;
	fd = dir_open_handle(n, d->fh);
	return fd < 0 ? fd : dir_keep(n->itab, d, fd);
}

/*
 * A descriptor of directory d, valid until d is forgotten (the number stays
 * d's: a replacement is dup3'd onto it), or for a directory past the cap
 * until the calling thread's next request. Takes itab.mu only if the tree
 * was replaced since it was opened, or d holds none.
 */
int ino_dir_fd(struct node *n, struct inode *d)
{
	_Alignas(struct file_handle) unsigned char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	struct file_handle *fh = (struct file_handle *)buf;
	unsigned gen = store_gen(n->store);
	int fd;

	if (d == &n->itab->root)
		return store_rootfd(n->store);
	fd = __atomic_load_n(&d->dirfd, __ATOMIC_ACQUIRE);
	if (fd >= 0 && d->gen == gen)
		return fd;
	if ((fd = temp_find(d)) >= 0)
		return fd;
	pthread_mutex_lock(&n->itab->mu);
	if (d->dirfd >= 0 || !d->fh || d->gen != gen) {	/* (a handle came from a buffer of MAX_HANDLE_SZ) */
		fd = dir_fd_locked(n, d);
		pthread_mutex_unlock(&n->itab->mu);
		return fd;
	}
	/* the open may read from the disk: not under the table's lock */
	memcpy(fh, d->fh, sizeof(*fh) + d->fh->handle_bytes);
	pthread_mutex_unlock(&n->itab->mu);
	fd = dir_open_handle(n, fh);
	if (fd < 0)
		return fd;
	pthread_mutex_lock(&n->itab->mu);
	if (d->dirfd >= 0 && d->gen == gen) {
		/* another request's open kept its descriptor meanwhile */
		close(fd);
		fd = d->dirfd;
	} else if (d->dirfd < 0 && d->gen == gen) {
		fd = dir_keep(n->itab, d, fd);
	} else {
		close(fd);	/* the tree was replaced meanwhile */
		fd = dir_fd_locked(n, d);
	}
	pthread_mutex_unlock(&n->itab->mu);
	return fd;
}

/*
 * The path of directory d in the tree ("" for the root), from its
 * descriptor: what /proc/self/fd says it names, kept until store_moves()
 * says a directory may have moved (reading the link costs more than the
 * rest of a small file's create).
 */
int ino_dir_path(struct node *n, struct inode *d, char *buf, size_t len)
{
	const char *tree = store_path(n->store);
	size_t tl = strlen(tree);
	char proc[64], link[PATH_MAX + 1];
	uint64_t moves = store_moves(n->store);
	ssize_t r;
	int fd;

	if (d == &n->itab->root) {
		buf[0] = 0;
		return 0;
	}
	pthread_mutex_lock(&n->itab->mu);
	if (d->path && d->path_moves == moves) {
		int ret = strlen(d->path) < len ? 0 : -ENAMETOOLONG;
		if (!ret)
			strcpy(buf, d->path);
		pthread_mutex_unlock(&n->itab->mu);
		return ret;
	}
	pthread_mutex_unlock(&n->itab->mu);
	fd = ino_dir_fd(n, d);
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
	{
		char *keep = strdup(buf);
		pthread_mutex_lock(&n->itab->mu);
		if (keep) {
			free(d->path);
			d->path = keep;
			d->path_moves = moves;
		}
		pthread_mutex_unlock(&n->itab->mu);
	}
	return 0;
}

/* "dir/name" ("name" in the root). */
int path_join(char *buf, size_t len, const char *dir, const char *name)
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
int ino_file_path(struct node *n, struct inode *f, char *buf, size_t len, int verify)
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
		if (ino_dir_path(n, cand[i].parent, dir, sizeof(dir)) || path_join(buf, len, dir, cand[i].name))
			continue;
		if ((verify && __atomic_load_n(&n->itab->stale_names, __ATOMIC_RELAXED)) ||
		    __atomic_load_n(&f->retired, __ATOMIC_RELAXED)) {	/* its names are no longer kept */
			struct stat st;
			int pfd = ino_dir_fd(n, cand[i].parent);
			if (pfd < 0 || fstatat(pfd, cand[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    ino_id_at(pfd, cand[i].name, &st, id) || memcmp(id, f->id, FILE_ID_BYTES)) {
				ino_names_moved(n, cand[i].parent->id, cand[i].name, f->id, NULL);
				continue;
			}
		}
		return 0;
	}
	return ret;
}

int ino_path(struct node *n, struct inode *in, char *buf, size_t len, int verify)
{
	return S_ISDIR(in->type) ? ino_dir_path(n, in, buf, len) : ino_file_path(n, in, buf, len, verify);
}

int handle_open_by(struct node *n, const uint8_t id[FILE_ID_BYTES], const struct handle *skip, int mask)
{
	int found = 0;

	pthread_mutex_lock(&n->open_lock);
	for (struct handle *o = n->open_files; o && !found; o = o->next)
		found = o != skip && !((mask & HANDLE_CACHING) && o->direct) &&
			!((mask & HANDLE_WRITABLE) && !o->writable) && !memcmp(o->id, id, FILE_ID_BYTES);
	pthread_mutex_unlock(&n->open_lock);
	return found;
}

/*
 * 1 if h was opened in the tree the store holds now: a rewind or a snapshot's
 * install replaces the tree, and a handle opened before reaches the old one.
 */
static int handle_current(struct node *n, const struct handle *h)
{
	return h->tree_gen == store_gen(n->store);
}

struct handle *handle_borrow(struct node *n, const uint8_t id[FILE_ID_BYTES])
{
	struct handle *h;

	pthread_mutex_lock(&n->open_lock);
	for (h = n->open_files; h && (memcmp(h->id, id, FILE_ID_BYTES) || !handle_current(n, h)); h = h->next)
		;
	if (h)
		h->lent++;
	pthread_mutex_unlock(&n->open_lock);
	return h;
}

static void handle_free(struct node *n, struct handle *h)
{
	node_close_behind(n, h->fd);	/* writes through it may still be on their way to the tree */
	free(h);
	open_slot_free(n);
}

int open_slot(struct node *n)
{
	if (__atomic_add_fetch(&n->nopen, 1, __ATOMIC_RELAXED) > n->open_max) {
		__atomic_sub_fetch(&n->nopen, 1, __ATOMIC_RELAXED);
		return -ENFILE;
	}
	return 0;
}

void open_slot_free(struct node *n)
{
	__atomic_sub_fetch(&n->nopen, 1, __ATOMIC_RELAXED);
}

void handle_return(struct node *n, struct handle *h)
{
	int last;

	pthread_mutex_lock(&n->open_lock);
	last = !--h->lent && h->released;
	pthread_mutex_unlock(&n->open_lock);
	if (last)
		handle_free(n, h);
}

void handle_release(struct node *n, struct handle *h)
{
	int lent;

	pthread_mutex_lock(&n->open_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		n->open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	lent = h->lent > 0;
	h->released = 1;
	pthread_mutex_unlock(&n->open_lock);
	if (!lent)
		handle_free(n, h);
}

/*
 * A descriptor of non-directory f opened with flags (yours to close): by id
 * through the index, else (unlinked while open) through an open handle's,
 * else by a name.
 */
int ino_file_open(struct node *n, struct inode *f, int flags)
{
	char path[PATH_MAX], proc[64];
	struct handle *lent;
	int fd;

	fd = store_open_by_id(n->store, f->id, flags);
	if (fd != -ENOENT)
		return fd;
	if ((lent = handle_borrow(n, f->id))) {
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", lent->fd);
		fd = open(proc, (flags & ~O_NOFOLLOW) | O_CLOEXEC);
		if (fd < 0)
			fd = -errno;
		handle_return(n, lent);
		return fd;
	}
	if (ino_file_path(n, f, path, sizeof(path), 1) == 0) {
		fd = openat(store_rootfd(n->store), path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);	/* a FIFO now there */
		return fd < 0 ? -errno : fd;
	}
	return ino_held_fd(n, f);
}

int ino_held_fd(struct node *n, struct inode *f)
{
	int fd = -ENOENT;

	pthread_mutex_lock(&n->itab->mu);
	if (f->keepfd >= 0 && (fd = fcntl(f->keepfd, F_DUPFD_CLOEXEC, 0)) < 0)
		fd = -errno;	/* EMFILE: not a missing object */
	pthread_mutex_unlock(&n->itab->mu);
	return fd;
}

static void hold_special(struct node *n, const uint8_t id[FILE_ID_BYTES], const char *rel)
{
	char hex[2 * FILE_ID_BYTES + 1];
	struct itab *t = n->itab;
	struct inode *in;
	struct stat st, idx;
	int fd;

	store_id_hex(id, hex);
	pthread_mutex_lock(&t->mu);
	in = tab_find(t, id);
	if (in && in->keepfd < 0 && held_specials < HELD_SPECIALS_MAX &&
	    (S_ISFIFO(in->type) || S_ISSOCK(in->type) || S_ISCHR(in->type) || S_ISBLK(in->type)) &&
	    (fd = openat(store_rootfd(n->store), store_rel(rel), O_PATH | O_NOFOLLOW | O_CLOEXEC)) >= 0) {
		/*
		 * The object at rel, the one the index holds under its id (changes
		 * to it are made through this descriptor: never to another object
		 * a diverged tree had there), and its last name (the index aside).
		 */
		if (fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == in->type && store_nlink(&st) == 1 &&
		    fstatat(store_indexfd(n->store), hex, &idx, AT_SYMLINK_NOFOLLOW) == 0 && idx.st_ino == st.st_ino &&
		    idx.st_dev == st.st_dev) {
			in->keepfd = fd;
			held_specials++;
		} else {
			close(fd);
		}
	}
	pthread_mutex_unlock(&t->mu);
}

void ino_hold_special(struct node *n, const struct record *r)
{
	if (!n->se || !n->itab || (r->flags & REC_F_NOPATH))
		return;
	if (r->type == REC_UNLINK)
		hold_special(n, r->id, r->path);
	else if (r->type == REC_RENAME && !(r->op_flags & RENAME_EXCHANGE) && !id_is_zero(r->id2))
		hold_special(n, r->id2, r->path2);	/* the object the rename replaces */
}

int ino_stat(struct node *n, struct inode *in, struct stat *st)
{
	char hex[2 * FILE_ID_BYTES + 1];
	int fd;

	if (S_ISDIR(in->type)) {
		fd = ino_dir_fd(n, in);
		if (fd < 0)
			return fd;
		if (fstatat(fd, "", st, AT_EMPTY_PATH) < 0)
			return -errno;
	} else {
		store_id_hex(in->id, hex);
		if (fstatat(store_indexfd(n->store), hex, st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				return -errno;
			fd = ino_file_open(n, in, O_PATH);
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
	e->ino = ino_nodeid(n, in);
	e->attr = *st;
	if (mount_is_follower(n) || __atomic_load_n(&in->streamed, __ATOMIC_RELAXED)) {
		/*
		 * Records change the tree behind the kernel's back: names are
		 * not cached. A file a stream is writing may be retired at its
		 * release (ino_release_stream()): its names expire at once.
		 */
		e->entry_timeout = 0;
	} else {
		e->entry_timeout = REPFS_LEADER_CACHE_S;
	}
	e->attr_timeout = 1.0;
}

/*
 * The kernel learns name in directory parent: finds or makes its inode and
 * counts the reference (the reply must follow). *st is the object's.
 */
int ino_learn(struct node *n, struct inode *parent, const char *name, const struct stat *st,
	      const uint8_t *known, struct fuse_entry_param *e)
{
	struct itab *t = n->itab;
	uint8_t id[FILE_ID_BYTES];
	struct inode *in;
	struct stat sb = *st;
	int pfd, ret;

	pfd = ino_dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	if (known)
		memcpy(id, known, FILE_ID_BYTES);
	else if ((ret = ino_id_at(pfd, name, st, id)))
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
		in->keepfd = -1;
		in->kmtime = ns_of_ts(st->st_mtim);	/* the kernel's new inode takes it from the reply */
		if (S_ISDIR(st->st_mode) && (ret = dir_learn(n, in, pfd, name))) {
			pthread_mutex_unlock(&t->mu);
			free(in);
			return ret;
		}
		in->hnext = *chain_of(t, id);
		*chain_of(t, id) = in;
		t->count++;
		maybe_grow(t);
	} else if (S_ISDIR(st->st_mode) && in->gen != store_gen(n->store)) {
		int fd = openat(pfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0)
			dir_renew(n, in, fd, store_gen(n->store));	/* else: through the parent when needed */
	}
	name_add(in, parent->id, name);
	in->nlookup++;
	pthread_mutex_unlock(&t->mu);
	sb.st_nlink = store_nlink(st);
	fill_entry(n, e, in, &sb);
	return 0;
}

/* Looks name up in parent; a missing name is ret -ENOENT with e's ino 0 (a negative entry). */
int ino_lookup(struct node *n, struct inode *parent, const char *name, struct fuse_entry_param *e)
{
	struct stat st;
	int pfd;

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	pfd = ino_dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return ino_learn(n, parent, name, &st, NULL, e);
}

/* Under itab.mu: takes in out of the list at *head (a hash chain or the retired list). */
static void unlink_from(struct inode **head, struct inode *in)
{
	for (struct inode **pp = head; *pp; pp = &(*pp)->hnext) {
		if (*pp == in) {
			*pp = in->hnext;
			return;
		}
	}
}

/* Under itab.mu: in, out of the hash, goes onto the retired list (ino_retire()). */
static void push_retired(struct itab *t, struct inode *in)
{
	t->count--;
	in->hnext = t->retired;
	in->rprev = NULL;
	if (t->retired)
		t->retired->rprev = in;
	t->retired = in;
	__atomic_store_n(&in->retired, 1, __ATOMIC_RELAXED);
}

/* Under itab.mu: in leaves the retired list, in constant time. */
static void unlink_retired(struct itab *t, struct inode *in)
{
	if (in->rprev)
		in->rprev->hnext = in->hnext;
	else
		t->retired = in->hnext;
	if (in->hnext)
		in->hnext->rprev = in->rprev;
}

void ino_forget(struct node *n, fuse_ino_t nodeid, uint64_t nlookup)
{
	struct itab *t = n->itab;
	struct inode *in = ino_of(n, nodeid);

	if (in == &t->root)
		return;
	pthread_mutex_lock(&t->mu);
	in->nlookup = in->nlookup > nlookup ? in->nlookup - nlookup : 0;
	if (!in->nlookup) {
		if (in->retired) {
			unlink_retired(t, in);
		} else {
			unlink_from(chain_of(t, in->id), in);
			t->count--;
		}
		inode_free(t, in);
	}
	pthread_mutex_unlock(&t->mu);
}

void ino_names_lock(struct node *n, int write)
{
	if (write)
		pthread_rwlock_wrlock(&n->itab->ns);
	else
		pthread_rwlock_rdlock(&n->itab->ns);
}

void ino_names_unlock(struct node *n)
{
	pthread_rwlock_unlock(&n->itab->ns);
}

int ino_table_setup(struct node *n)
{
	struct itab *t = calloc(1, sizeof(*t));

	if (!t || !(t->bucket = calloc(ITAB_BUCKETS, sizeof(*t->bucket)))) {
		free(t);
		return -ENOMEM;
	}
	t->nbuckets = ITAB_BUCKETS;
	pthread_mutex_init(&t->mu, NULL);
	pthread_rwlock_init(&t->ns, NULL);
	memcpy(t->root.id, store_root_id, FILE_ID_BYTES);
	t->root.type = S_IFDIR;
	t->root.dirfd = -1;
	t->root.keepfd = -1;
	t->root.nlookup = 1;
	t->dirfds_max = ino_fd_share();
	/* file handles, if the tree's file system gives them and we may open them */
	{
		struct file_handle *fh = handle_of(store_rootfd(n->store), "", AT_EMPTY_PATH);
		int fd = fh ? open_by_handle_at(store_rootfd(n->store), fh, O_PATH | O_DIRECTORY | O_CLOEXEC) : -1;
		t->no_handles = fd < 0;
		if (fd >= 0)
			close(fd);
		else
			rlog(LOG_WARNING,
			     "no file handles in '%s' (%s): every directory the kernel holds keeps a descriptor, "
			     "and more than %u of them leave the daemon unable to open files",
			     store_path(n->store), strerror(errno), t->dirfds_max);
		free(fh);
	}
	n->itab = t;
	return 0;
}

unsigned ino_fd_share(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (2u << 20))
		return 1u << 20;
	return rl.rlim_cur > FD_RESERVE + 32 ? (unsigned)(rl.rlim_cur - FD_RESERVE) / 2 : 16;
}

void ino_dir_hold(struct node *n, const uint8_t id[FILE_ID_BYTES])
{
	struct itab *t = n->itab;
	struct inode *d;
	int fd;

	pthread_mutex_lock(&t->mu);
	d = tab_find(t, id);
	/* past the cap by one while it lives: only directories removed while the kernel holds them */
	if (d && S_ISDIR(d->type) && d->dirfd < 0 && d->fh && d->gen == store_gen(n->store) &&
	    (fd = dir_open_handle(n, d->fh)) >= 0)
		dir_hold_fd(t, d, fd);
	pthread_mutex_unlock(&t->mu);
}

void ino_table_fds(struct node *n, unsigned *held, unsigned *max)
{
	*held = *max = 0;
	if (!n->itab)
		return;
	pthread_mutex_lock(&n->itab->mu);
	*held = n->itab->dirfds;
	*max = n->itab->no_handles ? 0 : n->itab->dirfds_max;
	pthread_mutex_unlock(&n->itab->mu);
}

void ino_table_cap_dirfds(struct node *n, unsigned max)
{
	pthread_mutex_lock(&n->itab->mu);
	n->itab->dirfds_max = max;
	pthread_mutex_unlock(&n->itab->mu);
}

int ino_table_retired(struct node *n)
{
	struct itab *t = n->itab;
	const struct inode *prev = NULL;
	int k = 0;

	pthread_mutex_lock(&t->mu);
	for (const struct inode *in = t->retired; in; prev = in, in = in->hnext, k++) {
		if (in->rprev != prev || !in->retired) {
			k = -1;
			break;
		}
	}
	pthread_mutex_unlock(&t->mu);
	return k;
}

unsigned ino_table_chains(struct node *n)
{
	unsigned k;

	pthread_mutex_lock(&n->itab->mu);
	k = n->itab->nbuckets;
	pthread_mutex_unlock(&n->itab->mu);
	return k;
}

void ino_table_free(struct node *n)
{
	struct itab *t = n->itab;

	if (!t)
		return;
	for (unsigned b = 0; b < t->nbuckets; b++) {
		while (t->bucket[b]) {
			struct inode *in = t->bucket[b];
			t->bucket[b] = in->hnext;
			inode_free(t, in);
		}
	}
	while (t->retired) {
		struct inode *in = t->retired;
		t->retired = in->hnext;
		inode_free(t, in);
	}
	pthread_mutex_destroy(&t->mu);
	pthread_rwlock_destroy(&t->ns);
	free(t->bucket);
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

/* What the kernel must be told of a retired inode (ino_retire()): its names and itself. */
struct retired_note {
	fuse_ino_t ino;
	int k;
	struct {
		fuse_ino_t parent;
		char name[NAME_MAX + 1];
	} names[NAMES_MAX];
	struct retired_note *next;
};

struct invalq {
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	struct inval items[INVALQ_MAX];	/* protected by mu */
	struct retired_note *notes;	/* never dropped, unlike items (mu) */
	int n, stop, started;		/* protected by mu */
	uint64_t queued, done;		/* tickets: protected by mu */
	pthread_t thread;
};

static void retired_tell(struct node *n, const struct retired_note *note);

static void *invalq_main(void *arg)
{
	struct node *n = arg;
	struct invalq *q = n->invalq;

	thread_name("repfs-inval");
	for (;;) {
		struct inval batch[INVALQ_MAX];
		struct retired_note *notes;
		uint64_t ticket;
		int k;
		pthread_mutex_lock(&q->mu);
		while (!q->n && !q->notes && !q->stop)
			pthread_cond_wait(&q->cv, &q->mu);
		if (!q->n && !q->notes && q->stop) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		k = q->n;
		ticket = q->queued;
		memcpy(batch, q->items, (size_t)k * sizeof(batch[0]));
		q->n = 0;
		notes = q->notes;
		q->notes = NULL;
		pthread_mutex_unlock(&q->mu);
		while (notes) {
			struct retired_note *x = notes;
			notes = x->next;
			if (!q->stop && n->se)
				retired_tell(n, x);
			free(x);
		}
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
void ino_inval_soon(struct node *n, fuse_ino_t ino, off_t off, off_t len)
{
	struct invalq *q = n->invalq;
	struct timespec until;
	uint64_t ticket;

	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	/* a full queue drops the request: the attribute timeout (1 s) still bounds staleness */
	if (!q->started || q->n >= INVALQ_MAX) {
		pthread_mutex_unlock(&q->mu);
		return;
	}
	q->items[q->n++] = (struct inval){ ino, off, len };
	ticket = ++q->queued;
	pthread_cond_signal(&q->cv);
	until = deadline_in_ms(CLOCK_REALTIME, INVALQ_WAIT_MS);
	while (q->done < ticket && !q->stop)
		if (pthread_cond_timedwait(&q->done_cv, &q->mu, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&q->mu);
}

void ino_invalq_init(struct node *n)
{
	struct invalq *q = calloc(1, sizeof(*q));

	if (!q)
		return;
	pthread_mutex_init(&q->mu, NULL);
	pthread_cond_init(&q->cv, NULL);
	pthread_cond_init(&q->done_cv, NULL);
	n->invalq = q;
	/* here, not at the first invalidation: a thread made by a request
	 * handler on a FUSE ring thread would inherit its CPU (fs/fuse_ring.c) */
	q->started = pthread_create(&q->thread, NULL, invalq_main, n) == 0;
}

void ino_invalq_free(struct node *n)
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
	while (q->notes) {
		struct retired_note *x = q->notes;
		q->notes = x->next;
		free(x);
	}
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
		ino = ino_nodeid(n, in);
	pthread_mutex_unlock(&t->mu);
	return ino;
}

int id_is_zero(const uint8_t id[FILE_ID_BYTES])
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

/*
 * Under itab.mu: takes regular file in out of the id hash (onto the retired
 * list, until the kernel forgets it) and notes what the kernel must be told.
 */
static void retire_locked(struct node *n, struct inode *in, struct retired_note *note)
{
	struct itab *t = n->itab;

	unlink_from(chain_of(t, in->id), in);
	push_retired(t, in);
	note->ino = ino_nodeid(n, in);
	note->k = 0;
	for (struct iname *x = in->names; x && note->k < NAMES_MAX; x = x->next) {
		struct inode *p = tab_find(t, x->parent);
		if (p && strlen(x->s) <= NAME_MAX) {
			note->names[note->k].parent = ino_nodeid(n, p);
			snprintf(note->names[note->k++].name, sizeof(note->names[0].name), "%s", x->s);
		}
	}
}

/* Tells the kernel to drop a retired inode's names and pages (not from a request handler). */
static void retired_tell(struct node *n, const struct retired_note *note)
{
	/* node ids of directories that were forgotten meanwhile name nothing: harmless */
	for (int i = 0; i < note->k; i++)
		fuse_lowlevel_notify_inval_entry(n->se, note->names[i].parent, note->names[i].name,
						 strlen(note->names[i].name));
	fuse_lowlevel_notify_inval_inode(n->se, note->ino, 0, 0);
}

/*
 * The handles open on the file now were opened through the retired inode:
 * its size is the kernel's stale one, and pages written back through it
 * would carry that (zeros past our end). Writes through them fail with err.
 */
static void handles_stale(struct node *n, const uint8_t id[FILE_ID_BYTES], int err)
{
	if (!err)
		return;
	pthread_mutex_lock(&n->open_lock);
	for (struct handle *h = n->open_files; h; h = h->next)
		if (!memcmp(h->id, id, FILE_ID_BYTES))
			__atomic_store_n(&h->stale, err, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&n->open_lock);
}

/*
 * Retires the file's inode (which, if not NULL, and only if it is still the
 * one lookups find), if the kernel has one; returns its note (yours to
 * free) or NULL.
 */
static struct retired_note *retire(struct node *n, const uint8_t id[FILE_ID_BYTES], struct inode *which, int err)
{
	struct itab *t = n->itab;
	struct retired_note *note;
	struct inode *in;

	if (!n->se || !t || id_is_zero(id) || !(note = calloc(1, sizeof(*note))))
		return NULL;
	pthread_mutex_lock(&t->mu);
	in = tab_find(t, id);
	if (!in || in == &t->root || !S_ISREG(in->type) || (which && in != which)) {
		pthread_mutex_unlock(&t->mu);
		free(note);
		return NULL;
	}
	retire_locked(n, in, note);
	pthread_mutex_unlock(&t->mu);
	handles_stale(n, id, err);
	return note;
}

int ino_retire(struct node *n, const uint8_t id[FILE_ID_BYTES])
{
	struct retired_note *note = retire(n, id, NULL, EIO);

	if (!note)
		return 0;
	retired_tell(n, note);
	free(note);
	return 1;
}

/* From a request handler: the table changes now, the kernel is told by the invalidation thread. */
static void retire_queue(struct node *n, struct retired_note *note)
{
	struct invalq *q = n->invalq;

	if (!q || !q->started) {
		free(note);	/* no thread: the kernel keeps the old inode's names until they expire */
		return;
	}
	pthread_mutex_lock(&q->mu);
	note->next = q->notes;
	q->notes = note;
	pthread_cond_signal(&q->cv);
	pthread_mutex_unlock(&q->mu);
}

void ino_retire_soon(struct node *n, struct inode *in, int err)
{
	struct retired_note *note = retire(n, in->id, in, err);

	if (note)
		retire_queue(n, note);
}

void ino_release_stream(struct node *n, struct inode *in, const struct handle *h)
{
	struct retired_note *note = NULL;
	int others = 0;

	pthread_mutex_lock(&n->open_lock);
	for (struct handle *x = n->open_files; x && !others; x = x->next)
		others = x != h && !memcmp(x->id, h->id, FILE_ID_BYTES);
	if (!others) {
		/*
		 * itab.mu inside open_lock: nothing takes them the other way round.
		 * mtime_behind stays set: a write-back of the kernel's stale mtime
		 * racing this release sees it or the retirement (mtime_flush()).
		 */
		if (__atomic_load_n(&in->mtime_behind, __ATOMIC_RELAXED))
			note = retire(n, in->id, in, 0);	/* (once: retire() takes only the inode lookups find) */
		__atomic_store_n(&in->streamed, 0, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&n->open_lock);
	if (note && note->k <= 1)
		free(note);	/* its one name expired at once (fill_entry()): the next lookup finds the new inode */
	else if (note)
		retire_queue(n, note);	/* a name it had before the create reached it (a hard link's) */
}

static void inval_id(struct node *n, const uint8_t id[FILE_ID_BYTES], off_t off, off_t len)
{
	fuse_ino_t ino;

	if (id_is_zero(id) || (n->wb && ino_retire(n, id)) || !(ino = known(n, id)))
		return;
	fuse_lowlevel_notify_inval_inode(n->se, ino, off, len);
}

void ino_invalidate_record(struct node *n, const struct record *r)
{
	int names = r->type == REC_CREATE || r->type == REC_UNLINK || r->type == REC_RMDIR ||
		    r->type == REC_RENAME || r->type == REC_LINK;

	if (!n->se || !n->itab)
		return;
	if (names)
		__atomic_store_n(&n->itab->stale_names, 1, __ATOMIC_RELAXED);
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

void ino_invalidate_all(struct node *n)
{
	struct itab *t = n->itab;
	struct {
		fuse_ino_t ino, parent;
		char name[NAME_MAX + 1];
	} *all = NULL;
	size_t k = 0, cap = 0;

	if (!n->se || !t)
		return;
	__atomic_store_n(&t->stale_names, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&t->mu);
	for (unsigned b = 0; b < t->nbuckets; b++)
		for (struct inode *in = t->bucket[b]; in; in = in->hnext)
			cap += (size_t)in->nnames;
	all = calloc(cap + 1, sizeof(*all));
	for (unsigned b = 0; all && b < t->nbuckets; b++) {
		for (struct inode *in = t->bucket[b]; in; in = in->hnext) {
			for (struct iname *x = in->names; x && k < cap; x = x->next) {
				struct inode *p = tab_find(t, x->parent);
				if (!p || strlen(x->s) > NAME_MAX)
					continue;
				all[k].ino = ino_nodeid(n, in);
				all[k].parent = ino_nodeid(n, p);
				snprintf(all[k++].name, sizeof(all[0].name), "%s", x->s);
			}
		}
	}
	/* with the writeback cache, every regular file gets a new kernel inode (ino_retire()) */
	for (unsigned b = 0; n->wb && all && b < t->nbuckets; b++) {
		struct inode **pp = &t->bucket[b];
		while (*pp) {
			struct inode *in = *pp;
			if (!S_ISREG(in->type)) {
				pp = &in->hnext;
				continue;
			}
			*pp = in->hnext;
			push_retired(t, in);
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

