/* store.c -- the backing tree: opening it, file ids, xattr paths */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../lib/crypto.h"

const uint8_t store_root_id[FILE_ID_BYTES] = { 'r', 'e', 'p', 'f', 's', '-', 'r', 'o', 'o', 't' };

struct store {
	int rootfd;
	char *path;	/* absolute path of the tree */
	size_t pathlen;
};

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
	st->rootfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (st->rootfd < 0) {
		ret = -errno;
		goto fail;
	}
	/* every node's root has the same id, so records about "/" apply anywhere */
	ret = store_fget_id(st->rootfd, id);
	if (ret == -ENODATA || (!ret && memcmp(id, store_root_id, FILE_ID_BYTES))) {
		ret = fsetxattr(st->rootfd, ID_XATTR, store_root_id, FILE_ID_BYTES, 0) < 0 ? -errno : 0;
	}
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
	free(st->path);
	free(st);
}

int store_rootfd(const struct store *st)
{
	return st->rootfd;
}

const char *store_rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

void store_new_id(uint8_t id[FILE_ID_BYTES])
{
	crypto_random(id, FILE_ID_BYTES);
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

int store_fget_id(int fd, uint8_t id[FILE_ID_BYTES])
{
	ssize_t n = fgetxattr(fd, ID_XATTR, id, FILE_ID_BYTES);

	if (n < 0)
		return -errno;
	return n == FILE_ID_BYTES ? 0 : -ENODATA;
}
