/* digest.c -- XXH3 digests of a tree and of a file's blocks (see digest.h) */
#include "digest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <xxhash.h>

#include "../fs/store.h"
#include "../lib/util.h"

#define XATTR_LIST_MAX_BYTES 65536
#define XATTR_VALUE_MAX_BYTES 65536

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The user-visible xattrs of fd (or, if -1, of path itself, not followed), sorted by name, into x. */
static int hash_xattrs(XXH3_state_t *x, int fd, const char *path)
{
	char *list = malloc(XATTR_LIST_MAX_BYTES), *names[1024];
	uint8_t *val = malloc(XATTR_VALUE_MAX_BYTES);
	ssize_t len;
	size_t n = 0;
	int ret = 0;

	if (!list || !val) {
		ret = -ENOMEM;
		goto out;
	}
	len = fd >= 0 ? flistxattr(fd, list, XATTR_LIST_MAX_BYTES) : llistxattr(path, list, XATTR_LIST_MAX_BYTES);
	if (len < 0) {
		ret = errno == ENOTSUP ? 0 : -errno;
		goto out;
	}
	for (char *p = list; p < list + len && n < 1024; p += strlen(p) + 1)
		if (!store_hidden_xattr(p))
			names[n++] = p;
	qsort(names, n, sizeof(names[0]), cmp_str);
	for (size_t i = 0; i < n; i++) {
		ssize_t vl = fd >= 0 ? fgetxattr(fd, names[i], val, XATTR_VALUE_MAX_BYTES)
				     : lgetxattr(path, names[i], val, XATTR_VALUE_MAX_BYTES);
		uint32_t l32;
		if (vl < 0) {
			if (errno == ENODATA)
				continue;	/* removed meanwhile */
			ret = -errno;
			goto out;
		}
		XXH3_128bits_update(x, names[i], strlen(names[i]) + 1);
		l32 = (uint32_t)vl;
		XXH3_128bits_update(x, &l32, 4);
		XXH3_128bits_update(x, val, (size_t)vl);
	}
out:
	free(list);
	free(val);
	return ret;
}

/* The content: its XXH3-128 (the one store_range_digest() also gives REC_COPY), into x. */
static int hash_content(XXH3_state_t *x, int fd)
{
	uint8_t d[STORE_DIGEST_BYTES];
	int ret = store_range_digest(fd, 0, UINT64_MAX, d);

	if (!ret)
		XXH3_128bits_update(x, d, sizeof(d));
	return ret;
}

static void put_digest(XXH3_state_t *x, uint8_t out[DIGEST_BYTES])
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(x));
	memcpy(out, c.digest, DIGEST_BYTES);
}

/*
 * The meta digest of name in dirfd, whose lstat is sb. Files and
 * directories are opened to read their xattrs (and content); the xattrs of
 * other types (a FIFO's ACL) are read through their path.
 */
static int entry_meta(int dirfd, const char *name, const struct stat *sb, uint8_t id[FILE_ID_BYTES],
		      uint8_t out[DIGEST_BYTES])
{
	XXH3_state_t *x = XXH3_createState();
	struct {
		uint32_t mode, uid, gid, pad;
		uint64_t nlink, size, rdev;
		int64_t mtime_ns;
	} m;
	int fd = -1, ret = 0;

	if (!x)
		return -ENOMEM;
	memset(id, 0, FILE_ID_BYTES);
	memset(&m, 0, sizeof(m));
	m.mode = sb->st_mode;
	m.uid = sb->st_uid;
	m.gid = sb->st_gid;
	m.mtime_ns = ns_of_ts(sb->st_mtim);
	if (!S_ISDIR(sb->st_mode)) {
		m.nlink = store_nlink(sb);
		m.size = (uint64_t)sb->st_size;
		m.rdev = (uint64_t)sb->st_rdev;
	}
	XXH3_128bits_reset(x);
	XXH3_128bits_update(x, &m, sizeof(m));
	if (S_ISREG(sb->st_mode) || S_ISDIR(sb->st_mode)) {
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC |
					   (S_ISDIR(sb->st_mode) ? O_DIRECTORY : O_NONBLOCK));
		if (fd < 0) {
			ret = -errno;
			goto out;
		}
		if (store_fget_id(fd, id) < 0)
			memset(id, 0, FILE_ID_BYTES);
		ret = hash_xattrs(x, fd, NULL);
		if (!ret && S_ISREG(sb->st_mode))
			ret = hash_content(x, fd);
	} else if (S_ISLNK(sb->st_mode)) {
		char target[PATH_MAX + 1];
		ssize_t n = readlinkat(dirfd, name, target, PATH_MAX);
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		XXH3_128bits_update(x, target, (size_t)n);
	}
	if (!S_ISREG(sb->st_mode) && !S_ISDIR(sb->st_mode)) {
		char path[64 + NAME_MAX];
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", dirfd, name);
		ret = hash_xattrs(x, -1, path);
		if (ret)
			goto out;
	}
	XXH3_128bits_update(x, id, FILE_ID_BYTES);
	put_digest(x, out);
out:
	if (fd >= 0)
		close(fd);
	XXH3_freeState(x);
	return ret;
}

static int cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct dnode *)a)->name, ((const struct dnode *)b)->name);
}

static void node_release(struct dnode *d)
{
	for (size_t i = 0; i < d->nkids; i++)
		node_release(&d->kids[i]);
	free(d->kids);
	free(d->name);
}

/* Fills d (whose name is set) from name in dirfd; recurses into directories. */
static int walk(int parent, const char *name, struct dnode *d, uint64_t *files, uint64_t *bytes)
{
	struct stat sb;
	XXH3_state_t *x = NULL;
	DIR *dir = NULL;
	struct dirent *de;
	size_t cap = 0;
	int fd = -1, ret;

	if (fstatat(parent, name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	d->mode = sb.st_mode;
	ret = entry_meta(parent, name, &sb, d->id, d->meta);
	if (ret)
		return ret;
	(*files)++;
	if (S_ISREG(sb.st_mode))
		*bytes += (uint64_t)sb.st_size;
	memcpy(d->sum, d->meta, DIGEST_BYTES);
	if (!S_ISDIR(sb.st_mode))
		return 0;
	fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (d->nkids == cap) {
			struct dnode *k = realloc(d->kids, (cap = cap ? 2 * cap : 16) * sizeof(*k));
			if (!k) {
				ret = -ENOMEM;
				goto out;
			}
			d->kids = k;
		}
		memset(&d->kids[d->nkids], 0, sizeof(d->kids[0]));
		d->kids[d->nkids].name = strdup(de->d_name);
		if (!d->kids[d->nkids].name) {
			ret = -ENOMEM;
			goto out;
		}
		ret = walk(dirfd(dir), de->d_name, &d->kids[d->nkids], files, bytes);
		if (ret == -ENOENT) {
			/* gone while we looked */
			node_release(&d->kids[d->nkids]);
			ret = 0;
			continue;
		}
		d->nkids++;
		if (ret)
			goto out;
	}
	if (d->nkids > 1)	/* an empty directory has no array: qsort(NULL, 0) is undefined */
		qsort(d->kids, d->nkids, sizeof(d->kids[0]), cmp_node);
	x = XXH3_createState();
	if (!x) {
		ret = -ENOMEM;
		goto out;
	}
	XXH3_128bits_reset(x);
	XXH3_128bits_update(x, d->meta, DIGEST_BYTES);
	for (size_t i = 0; i < d->nkids; i++) {
		XXH3_128bits_update(x, d->kids[i].name, strlen(d->kids[i].name) + 1);
		XXH3_128bits_update(x, d->kids[i].sum, DIGEST_BYTES);
	}
	put_digest(x, d->sum);
out:
	XXH3_freeState(x);
	closedir(dir);
	return ret;
}

int digest_tree(int rootfd, struct dnode **out, uint64_t *files, uint64_t *bytes)
{
	struct dnode *t = calloc(1, sizeof(*t));
	uint64_t f = 0, b = 0;
	int ret;

	*out = NULL;
	if (!t || !(t->name = strdup(""))) {
		free(t);
		return -ENOMEM;
	}
	ret = walk(rootfd, ".", t, &f, &b);
	if (ret) {
		digest_tree_free(t);
		return ret;
	}
	if (files)
		*files = f;
	if (bytes)
		*bytes = b;
	*out = t;
	return 0;
}

void digest_tree_free(struct dnode *t)
{
	if (!t)
		return;
	node_release(t);
	free(t);
}

const struct dnode *digest_find(const struct dnode *t, const char *rel)
{
	char part[NAME_MAX + 1];

	while (t && *rel) {
		const char *slash = strchr(rel, '/');
		size_t len = slash ? (size_t)(slash - rel) : strlen(rel);
		struct dnode key;
		if (len > NAME_MAX)
			return NULL;
		memcpy(part, rel, len);
		part[len] = 0;
		key.name = part;
		t = t->nkids ? bsearch(&key, t->kids, t->nkids, sizeof(key), cmp_node) : NULL;
		rel = slash ? slash + 1 : rel + len;
	}
	return t;
}

int digest_entry(int rootfd, const char *rel, struct dnode *out)
{
	struct stat sb;

	memset(out, 0, sizeof(*out));
	if (fstatat(rootfd, store_rel(rel), &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	out->mode = sb.st_mode;
	return entry_meta(rootfd, store_rel(rel), &sb, out->id, out->meta);
}

/*
 * A block that lies in a hole reads as zeros: its digest is that of zeros,
 * and it is not read (a resync's list of what the follower has read every
 * hole of its sparse files: 40 GB of them took minutes). SEEK_DATA says
 * where the next data is; a file system without it is read throughout.
 */
int digest_blocks(int fd, uint64_t size, uint8_t (**out)[DIGEST_BYTES], uint32_t *n)
{
	uint32_t count = (uint32_t)((size + DIGEST_BLOCK - 1) / DIGEST_BLOCK);
	uint8_t(*d)[DIGEST_BYTES] = calloc(count ? count : 1, DIGEST_BYTES);
	uint8_t *buf = malloc(DIGEST_BLOCK), zero[DIGEST_BYTES] = { 0 };
	uint64_t data = 0;	/* where data may start: before it, a hole (when seek) */
	int ret = 0, seek = 1, have_zero = 0;
	XXH128_canonical_t c;

	*out = NULL;
	*n = 0;
	if (!d || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	for (uint32_t i = 0; i < count; i++) {
		uint64_t off = (uint64_t)i * DIGEST_BLOCK;
		size_t want = size - off < DIGEST_BLOCK ? (size_t)(size - off) : DIGEST_BLOCK, got = 0;
		if (seek && off >= data) {
			off_t at = lseek(fd, (off_t)off, SEEK_DATA);
			if (at >= 0)
				data = (uint64_t)at;
			else if (errno == ENXIO)
				data = UINT64_MAX;	/* a hole to the end */
			else
				seek = 0;
		}
		if (seek && data >= off + want) {
			if (want < DIGEST_BLOCK || !have_zero) {
				memset(buf, 0, want);
				XXH128_canonicalFromHash(&c, XXH3_128bits(buf, want));
				if (want == DIGEST_BLOCK) {
					memcpy(zero, c.digest, DIGEST_BYTES);
					have_zero = 1;
				}
				memcpy(d[i], c.digest, DIGEST_BYTES);
			} else {
				memcpy(d[i], zero, DIGEST_BYTES);
			}
			continue;
		}
		while (got < want) {
			ssize_t r = pread(fd, buf + got, want - got, (off_t)(off + got));
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0) {
				ret = -errno;
				goto out;
			}
			if (r == 0)
				break;
			got += (size_t)r;
		}
		memset(buf + got, 0, want - got);	/* the file shrank meanwhile */
		XXH128_canonicalFromHash(&c, XXH3_128bits(buf, want));
		memcpy(d[i], c.digest, DIGEST_BYTES);
	}
	*out = d;
	d = NULL;
	*n = count;
out:
	free(d);
	free(buf);
	return ret;
}
