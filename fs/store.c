/* store.c -- the backing tree: opening it, file ids, xattr paths */
#include "store.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <xxhash.h>

#include "../lib/crypto.h"

const uint8_t store_root_id[FILE_ID_BYTES] = { 'r', 'e', 'p', 'f', 's', '-', 'r', 'o', 'o', 't' };

#define FDCACHE_SIZE 64

struct store {
	int rootfd;
	int idxfd;	/* <tree>.ids: one marker per id ever created (see store.h) */
	/* open files by id, for followers applying streams of writes (see store_cached_fd) */
	struct {
		uint8_t id[FILE_ID_BYTES];
		int fd;
	} fdcache[FDCACHE_SIZE];
	int fdcache_next;
	char *path;	/* absolute path of the tree */
	size_t pathlen;
	unsigned gen;	/* bumped by store_reopen() (atomic) */
	uint64_t moves;	/* bumped by store_moved() and store_reopen() (atomic) */
	uint64_t acl_gen;	/* bumped by store_acl_changed() and store_reopen() (atomic) */
	/* tombstones made since store_prune_ids() last walked the index, or an
	 * index not walked yet (atomic) */
	uint64_t tombs_new;
	uint64_t tombs_left;	/* tombstones that walk left (atomic) */
};

void store_id_hex(const uint8_t id[FILE_ID_BYTES], char out[2 * FILE_ID_BYTES + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < FILE_ID_BYTES; i++) {
		out[2 * i] = digits[id[i] >> 4];
		out[2 * i + 1] = digits[id[i] & 15];
	}
	out[2 * FILE_ID_BYTES] = 0;
}

int store_id_parse(const char *name, uint8_t id[FILE_ID_BYTES])
{
	if (strlen(name) != 2 * FILE_ID_BYTES)
		return 0;
	for (int i = 0; i < FILE_ID_BYTES; i++) {
		unsigned hi, lo;
		char c = name[2 * i], d = name[2 * i + 1];
		if (!isxdigit((unsigned char)c) || !isxdigit((unsigned char)d))
			return 0;
		hi = (unsigned)(isdigit((unsigned char)c) ? c - '0' : (tolower((unsigned char)c) - 'a' + 10));
		lo = (unsigned)(isdigit((unsigned char)d) ? d - '0' : (tolower((unsigned char)d) - 'a' + 10));
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	return 1;
}

/*
 * The index directory is ours only: a default ACL it inherited from
 * DATADIR's directory would pass on to the files the leader makes ahead
 * there (fs/behind.c). Taken off each time one is opened (a rewind's or a
 * snapshot's index is new); without ACL support there is none to take.
 */
static void index_private(int fd)
{
	fremovexattr(fd, "system.posix_acl_default");
}

static int open_index(struct store *st)
{
	char idx[PATH_MAX];

	if ((size_t)snprintf(idx, sizeof(idx), "%s.ids", st->path) >= sizeof(idx))
		return -ENAMETOOLONG;
	if (mkdir(idx, 0700) < 0 && errno != EEXIST)
		return -errno;
	st->idxfd = open(idx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->idxfd < 0)
		return -errno;
	index_private(st->idxfd);
	return 0;
}

int store_id_state(struct store *st, const uint8_t id[FILE_ID_BYTES])
{
	char hex[2 * FILE_ID_BYTES + 3];
	struct stat sb;

	store_id_hex(id, hex);
	if (fstatat(st->idxfd, hex, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		return ID_ALIVE;
	if (errno != ENOENT)
		return -errno;
	strcat(hex, ".d");
	if (fstatat(st->idxfd, hex, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		return ID_DEAD;
	return errno == ENOENT ? ID_UNKNOWN : -errno;
}

/*
 * The index already holds hex (EEXIST): fine if it is the object now at
 * (dirfd, rel, flags), else a stale entry, of an object the id no longer
 * names (a snapshot's stand-in symlink since made again, say), which the
 * object replaces (linked beside it first, then renamed over it).
 */
static int id_replace_stale(struct store *st, const char *hex, int dirfd, const char *rel, int flags)
{
	char tmp[2 * FILE_ID_BYTES + 8];
	struct stat have, now;

	if (fstatat(st->idxfd, hex, &have, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(dirfd, rel, &now, AT_SYMLINK_NOFOLLOW | (flags & AT_EMPTY_PATH)) < 0)
		return -errno;
	if (have.st_ino == now.st_ino && have.st_dev == now.st_dev)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.n", hex);
	(void)unlinkat(st->idxfd, tmp, 0);
	if (linkat(dirfd, rel, st->idxfd, tmp, flags) < 0 || renameat(st->idxfd, tmp, st->idxfd, hex) < 0)
		return -errno;
	return 0;
}

int store_id_born(struct store *st, const uint8_t id[FILE_ID_BYTES], const char *rel, int isdir)
{
	char hex[2 * FILE_ID_BYTES + 1];

	store_id_hex(id, hex);
	/* a file is linked into the index under its id; a directory gets a marker */
	if (isdir)
		return mknodat(st->idxfd, hex, S_IFREG | 0600, 0) < 0 && errno != EEXIST ? -errno : 0;
	if (linkat(st->rootfd, rel, st->idxfd, hex, 0) == 0)
		return 0;
	return errno == EEXIST ? id_replace_stale(st, hex, st->rootfd, rel, 0) : -errno;
}

int store_id_born_fd(struct store *st, const uint8_t id[FILE_ID_BYTES], int fd, const char *rel)
{
	char hex[2 * FILE_ID_BYTES + 1];

	store_id_hex(id, hex);
	/* by the descriptor: no walk of rel (this needs CAP_DAC_READ_SEARCH; else by rel) */
	if (linkat(fd, "", st->idxfd, hex, AT_EMPTY_PATH) == 0)
		return 0;
	if (errno == EEXIST)
		return id_replace_stale(st, hex, fd, "", AT_EMPTY_PATH);
	return store_id_born(st, id, rel, 0);
}

static int fdcache_find(struct store *st, const uint8_t id[FILE_ID_BYTES])
{
	for (int i = 0; i < FDCACHE_SIZE; i++)
		if (st->fdcache[i].fd >= 0 && !memcmp(st->fdcache[i].id, id, FILE_ID_BYTES))
			return i;
	return -1;
}

int store_cached_fd(struct store *st, const uint8_t id[FILE_ID_BYTES])
{
	int i = fdcache_find(st, id);
	int fd;

	if (i >= 0) {
		fd = dup(st->fdcache[i].fd);
		return fd < 0 ? -errno : fd;
	}
	fd = store_open_by_id(st, id, O_RDWR);
	if (fd < 0)
		return fd;
	i = st->fdcache_next;
	st->fdcache_next = (i + 1) % FDCACHE_SIZE;
	if (st->fdcache[i].fd >= 0)
		close(st->fdcache[i].fd);
	memcpy(st->fdcache[i].id, id, FILE_ID_BYTES);
	st->fdcache[i].fd = dup(fd);
	return fd;
}

int store_id_died(struct store *st, const uint8_t id[FILE_ID_BYTES], uint64_t seq)
{
	char hex[2 * FILE_ID_BYTES + 3];
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { (time_t)seq, 0 } };
	int fd, i = fdcache_find(st, id);

	if (i >= 0) {
		close(st->fdcache[i].fd);
		st->fdcache[i].fd = -1;
	}
	store_id_hex(id, hex);
	if (unlinkat(st->idxfd, hex, 0) < 0 && errno != ENOENT)
		return -errno;
	strcat(hex, ".d");
	/* the tombstone's mtime remembers the seq of the death, for store_prune_ids() */
	fd = openat(st->idxfd, hex, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* counted once it exists: a walk that takes the count finds it */
	__atomic_add_fetch(&st->tombs_new, 1, __ATOMIC_RELAXED);
	if (futimens(fd, ts) < 0) {
		close(fd);
		return -errno;
	}
	close(fd);
	return 0;
}

int store_open_by_id(struct store *st, const uint8_t id[FILE_ID_BYTES], int flags)
{
	char hex[2 * FILE_ID_BYTES + 1];
	int fd;

	store_id_hex(id, hex);
	/* O_NONBLOCK: FIFOs are indexed too, and opening one waits for a partner (regular files ignore it) */
	fd = openat(st->idxfd, hex, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int store_prune_ids(struct store *st, uint64_t upto, uint64_t *pruned)
{
	struct dirent *de;
	DIR *d;
	int fd, n = 0;
	uint64_t left = 0, made = __atomic_exchange_n(&st->tombs_new, 0, __ATOMIC_RELAXED);

	if (pruned)
		*pruned = 0;
	/*
	 * The index holds one name per object of the tree: a walk of it at every
	 * checkpoint (200,000 names: 0.2 s, 0.5 s cold) most often found no
	 * tombstone at all.
	 */
	if (!made && !__atomic_load_n(&st->tombs_left, __ATOMIC_RELAXED))
		return 0;
	fd = openat(st->idxfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	d = fd < 0 ? NULL : fdopendir(fd);
	if (!d) {
		int err = errno;

		if (fd >= 0)
			close(fd);
		__atomic_add_fetch(&st->tombs_new, made, __ATOMIC_RELAXED);	/* for the next one */
		return -err;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		struct stat sb;
		/* only tombstones ("ID.d") are looked at: a stat of every live id
		 * cost each checkpoint a path lookup per file of the tree */
		if (de->d_name[0] == '.' || l <= 2 || strcmp(de->d_name + l - 2, ".d") ||
		    fstatat(st->idxfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if ((uint64_t)sb.st_mtim.tv_sec <= upto && unlinkat(st->idxfd, de->d_name, 0) == 0)
			n++;
		else
			left++;
	}
	closedir(d);
	/* those made (or an index swapped in) during the walk are in tombs_new: the next one walks */
	__atomic_store_n(&st->tombs_left, left, __ATOMIC_RELAXED);
	if (pruned)
		*pruned = (uint64_t)n;
	return 0;
}

int store_open(struct store **out, const char *path)
{
	uint8_t id[FILE_ID_BYTES];
	struct store *st;
	int ret;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->path = realpath(path, NULL);
	if (!st->path) {
		ret = -errno;
		free(st);
		return ret;
	}
	st->pathlen = strlen(st->path);
	{
		/* no two stores share a value: an answer cached under another one is stale here */
		static uint64_t stores;
		st->acl_gen = __atomic_add_fetch(&stores, 1, __ATOMIC_RELAXED) << 32;
	}
	st->idxfd = -1;
	st->tombs_new = 1;	/* an index of an earlier run: walked once */
	for (int i = 0; i < FDCACHE_SIZE; i++)
		st->fdcache[i].fd = -1;
	st->rootfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->rootfd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = open_index(st);
	if (ret)
		goto fail;
	/* every node's root has the same id, so records about "/" apply anywhere */
	ret = store_fget_id(st->rootfd, id);
	if (ret == -ENODATA || (!ret && memcmp(id, store_root_id, FILE_ID_BYTES))) {
		int fresh = ret == -ENODATA;
		ret = fsetxattr(st->rootfd, ID_XATTR, store_root_id, FILE_ID_BYTES, 0) < 0 ? -errno : 0;
		if (!ret && fresh) {
			/*
			 * A new tree (its root just got its id): the ACLs it
			 * inherited from DATADIR's directory (a default ACL
			 * there) are no record's, and another node's tree would
			 * lack them, and pass them on differently.
			 */
			fremovexattr(st->rootfd, "system.posix_acl_access");
			fremovexattr(st->rootfd, "system.posix_acl_default");
		}
	}
	if (!ret)
		ret = store_id_born(st, store_root_id, ".", 1);
	if (ret)
		goto fail;
	*out = st;
	return 0;
fail:
	store_free(st);
	return ret;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	if (st->rootfd >= 0)
		close(st->rootfd);
	if (st->idxfd >= 0)
		close(st->idxfd);
	for (int i = 0; i < FDCACHE_SIZE; i++)
		if (st->fdcache[i].fd >= 0)
			close(st->fdcache[i].fd);
	free(st->path);
	free(st);
}

int store_rootfd(const struct store *st)
{
	return st->rootfd;
}

/* What a new inode inherits from directory fd besides its ACL: device, inode flags, project. */
struct inherit {
	dev_t dev;
	unsigned flags;
	uint32_t projid;
};

/*
 * Flags a directory has whatever it passes on: ext4's extents, htree index
 * and inline data, and huge-file. Any other (sync, noatime, nodump, data
 * journalling, encryption, project inheritance, casefold, immutable, ...)
 * either passes to a new inode made in it or may refuse a link into it.
 */
#define OWN_FLAGS (FS_EXTENT_FL | FS_INDEX_FL | FS_INLINE_DATA_FL | FS_HUGE_FILE_FL)

static int inherit_of(int fd, struct inherit *in)
{
	struct fsxattr fsx;
	struct stat sb;
	int flags = 0;

	if (fstat(fd, &sb) < 0)
		return -errno;
	in->dev = sb.st_dev;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		flags = 0;	/* a file system without inode flags */
	in->flags = (unsigned)flags & ~(unsigned)OWN_FLAGS;
	in->projid = ioctl(fd, FS_IOC_FSGETXATTR, &fsx) == 0 ? fsx.fsx_projid : 0;
	return 0;
}

int store_like_index(struct store *st, int dirfd)
{
	struct inherit a, b;
	int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return 0;
	ret = inherit_of(fd, &a) == 0 && inherit_of(st->idxfd, &b) == 0 && a.dev == b.dev && a.flags == b.flags &&
	      a.projid == b.projid;
	close(fd);
	return ret;
}

const char *store_rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

/* Ids are drawn from a per-thread pool: one getrandom() per 64 new objects, not one each. */
void store_new_id(uint8_t id[FILE_ID_BYTES])
{
	static __thread uint8_t pool[64 * FILE_ID_BYTES];
	static __thread size_t used = sizeof(pool);

	if (used == sizeof(pool)) {
		crypto_random(pool, sizeof(pool));
		used = 0;
	}
	memcpy(id, pool + used, FILE_ID_BYTES);
	used += FILE_ID_BYTES;
}

int store_hidden_xattr(const char *name)
{
	return strncmp(name, ID_XATTR_PREFIX, sizeof(ID_XATTR_PREFIX) - 1) == 0;
}

int store_xpath(struct store *st, const char *rel, char *buf, size_t len, int *tmpfd)
{
	const char *slash, *base;
	char dir[PATH_MAX];
	int n;

	*tmpfd = -1;
	rel = store_rel(rel);
	n = snprintf(buf, len, "%s/%s", st->path, rel);
	if (n >= 0 && (size_t)n < len && n < PATH_MAX)
		return 0;
	/* too long as one path: go through the parent's descriptor */
	slash = strrchr(rel, '/');
	if (!slash)
		return -ENAMETOOLONG;
	if ((size_t)(slash - rel) >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, rel, (size_t)(slash - rel));
	dir[slash - rel] = 0;
	base = slash + 1;
	*tmpfd = openat(st->rootfd, dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (*tmpfd < 0)
		return -errno;
	n = snprintf(buf, len, "/proc/self/fd/%d/%s", *tmpfd, base);
	if (n < 0 || (size_t)n >= len) {
		close(*tmpfd);
		*tmpfd = -1;
		return -ENAMETOOLONG;
	}
	return 0;
}

/*
 * getxattrat() (Linux 6.13; 464 in the table every architecture but alpha
 * shares for new calls, not yet in Debian 12's headers) reads a name's
 * xattr in one walk of one component. Before it, the way to a name in a
 * directory descriptor is /proc/self/fd/DFD/NAME, which walks procfs as
 * well: a LOOKUP's id read took 5.7 us that way against 0.9 (1.7 for its
 * fstatat), and was most of the request.
 */
#ifndef __NR_getxattrat
#if defined(__x86_64__) || defined(__aarch64__) || defined(__riscv) || defined(__powerpc64__) || \
	defined(__s390x__) || defined(__loongarch64)
#define __NR_getxattrat 464
#endif
#endif

ssize_t store_getxattr_at(int dfd, const char *name, const char *attr, void *buf, size_t len)
{
	static int no_xattrat = -1;	/* -1: not known yet */
	char p[64 + NAME_MAX];

	if (__atomic_load_n(&no_xattrat, __ATOMIC_RELAXED) < 0)	/* tests: the older kernels' way */
		__atomic_store_n(&no_xattrat, getenv("REPFS_TEST_NO_XATTRAT") != NULL, __ATOMIC_RELAXED);
#ifdef __NR_getxattrat
	if (!__atomic_load_n(&no_xattrat, __ATOMIC_RELAXED)) {
		struct {
			uint64_t value;
			uint32_t size, flags;
		} args = { (uintptr_t)buf, (uint32_t)len, 0 };
		long r = syscall(__NR_getxattrat, dfd, name, AT_SYMLINK_NOFOLLOW, attr, &args, sizeof(args));
		if (r >= 0 || (errno != ENOSYS && errno != EPERM))
			return r;
		/* an older kernel, or a seccomp filter that refuses calls it does not know: the way below */
		__atomic_store_n(&no_xattrat, 1, __ATOMIC_RELAXED);
	}
#endif
	if (strlen(name) > NAME_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	snprintf(p, sizeof(p), "/proc/self/fd/%d/%s", dfd, name);
	return lgetxattr(p, attr, buf, len);
}

int store_get_id(struct store *st, const char *rel, uint8_t id[FILE_ID_BYTES])
{
	char path[PATH_MAX + 64];
	int tmp, ret;
	ssize_t n;

	ret = store_xpath(st, rel, path, sizeof(path), &tmp);
	if (ret)
		return ret;
	n = lgetxattr(path, ID_XATTR, id, FILE_ID_BYTES);
	ret = n < 0 ? -errno : (n == FILE_ID_BYTES ? 0 : -ENODATA);
	if (tmp >= 0)
		close(tmp);
	return ret;
}

int store_set_id(struct store *st, const char *rel, const uint8_t id[FILE_ID_BYTES])
{
	char path[PATH_MAX + 64];
	int tmp, ret;

	ret = store_xpath(st, rel, path, sizeof(path), &tmp);
	if (ret)
		return ret;
	ret = lsetxattr(path, ID_XATTR, id, FILE_ID_BYTES, 0) < 0 ? -errno : 0;
	if (tmp >= 0)
		close(tmp);
	return ret;
}

int store_indexfd(const struct store *st)
{
	return st->idxfd;
}

int store_fget_id(int fd, uint8_t id[FILE_ID_BYTES])
{
	ssize_t n = fgetxattr(fd, ID_XATTR, id, FILE_ID_BYTES);

	if (n < 0)
		return -errno;
	return n == FILE_ID_BYTES ? 0 : -ENODATA;
}

/* len zero bytes into x, without reading them (a hole's) */
static void hash_zeros(XXH3_state_t *x, uint64_t len)
{
	static const uint8_t zeros[64 << 10];

	while (len) {
		size_t k = len < sizeof(zeros) ? (size_t)len : sizeof(zeros);
		XXH3_128bits_update(x, zeros, k);
		len -= k;
	}
}

/*
 * The digest of the logical bytes [off, off + len) (up to the end): a hole
 * counts as the zeros it reads as, hashed without reading them (a sparse
 * file of gigabytes is mostly holes), so that a hole and written zeros give
 * one digest, wherever each file system put its holes.
 */
int store_range_digest(int fd, uint64_t off, uint64_t len, uint8_t out[STORE_DIGEST_BYTES])
{
	XXH3_state_t *x = XXH3_createState();
	size_t bufsz = 256 << 10;
	uint8_t *buf = malloc(bufsz);
	XXH128_canonical_t c;
	struct stat st;
	uint64_t end;
	int ret = 0, seek = 1;

	if (!x || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	end = off > (uint64_t)st.st_size ? off : (uint64_t)st.st_size;
	if (len > end - off)
		len = end - off;
	XXH3_128bits_reset(x);
	while (len) {
		uint64_t upto = off + len;
		if (seek) {
			off_t d = lseek(fd, (off_t)off, SEEK_DATA), h;
			if (d < 0 && errno == ENXIO) {
				hash_zeros(x, len);	/* a hole to the end */
				break;
			}
			if (d < 0) {
				seek = 0;	/* no SEEK_DATA here: read everything */
				continue;
			}
			if ((uint64_t)d > off) {
				uint64_t k = (uint64_t)d - off < len ? (uint64_t)d - off : len;
				hash_zeros(x, k);
				off += k;
				len -= k;
				continue;
			}
			h = lseek(fd, (off_t)off, SEEK_HOLE);
			if (h > (off_t)off && (uint64_t)h < upto)
				upto = (uint64_t)h;
		}
		while (off < upto) {
			uint64_t want = upto - off;
			ssize_t n = pread(fd, buf, want < bufsz ? (size_t)want : bufsz, (off_t)off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				ret = -errno;
				goto out;
			}
			if (n == 0) {
				len = 0;	/* the file ended early (truncated meanwhile) */
				break;
			}
			XXH3_128bits_update(x, buf, (size_t)n);
			off += (uint64_t)n;
			len -= (uint64_t)n;
		}
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(x));
	memcpy(out, c.digest, STORE_DIGEST_BYTES);
out:
	XXH3_freeState(x);
	free(buf);
	return ret;
}

nlink_t store_nlink(const struct stat *sb)
{
	/* every live non-directory has one more link: its entry in the id index */
	if (S_ISDIR(sb->st_mode) || sb->st_nlink == 0)
		return sb->st_nlink;
	return sb->st_nlink - 1;
}

int store_reopen(struct store *st)
{
	char idx[PATH_MAX];
	int root, ids, ret = 0;

	root = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -errno;
	snprintf(idx, sizeof(idx), "%s.ids", st->path);
	ids = open(idx, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ids < 0) {
		ret = -errno;
		close(root);
		return ret;
	}
	index_private(ids);
	/* dup3 swaps what the descriptor numbers name at once: calls in flight keep the old tree */
	if (dup3(root, st->rootfd, O_CLOEXEC) < 0 || dup3(ids, st->idxfd, O_CLOEXEC) < 0)
		ret = -errno;
	close(root);
	close(ids);
	__atomic_add_fetch(&st->gen, 1, __ATOMIC_RELEASE);
	__atomic_add_fetch(&st->acl_gen, 1, __ATOMIC_RELEASE);
	/* another index: walked by the next prune */
	__atomic_add_fetch(&st->tombs_new, 1, __ATOMIC_RELAXED);
	store_moved(st);
	for (int i = 0; i < FDCACHE_SIZE; i++) {
		if (st->fdcache[i].fd >= 0)
			close(st->fdcache[i].fd);
		st->fdcache[i].fd = -1;
	}
	return ret;
}

unsigned store_gen(const struct store *st)
{
	return __atomic_load_n(&st->gen, __ATOMIC_ACQUIRE);
}

void store_acl_changed(struct store *st)
{
	__atomic_add_fetch(&st->acl_gen, 1, __ATOMIC_RELEASE);
}

uint64_t store_acl_gen(const struct store *st)
{
	return __atomic_load_n(&st->acl_gen, __ATOMIC_ACQUIRE);
}

void store_moved(struct store *st)
{
	__atomic_add_fetch(&st->moves, 1, __ATOMIC_RELEASE);
}

uint64_t store_moves(const struct store *st)
{
	return __atomic_load_n(&st->moves, __ATOMIC_ACQUIRE);
}

const char *store_path(const struct store *st)
{
	return st->path;
}
