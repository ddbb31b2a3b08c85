/* unit.h -- shared fixtures of the unit tests: a fresh temporary directory per
 * test, a test key in it, and small file helpers
 *
 * Every test file links into one binary (build/unit-tests), so everything here
 * is static inline: each file gets its own copy and an unused helper costs no
 * warning. A test file keeps one `static struct unit_env` and calls
 * unit_env_init() / unit_env_fini() from its suite's .init / .fini.
 *
 * The directory is made under $REPFS_TEST_TMP (default /var/tmp), which must
 * support trusted.* extended attributes (ext4, xfs, btrfs, tmpfs; run as root).
 * Helpers abort the test with a message on any unexpected failure.
 */
#ifndef REPFS_UNIT_H
#define REPFS_UNIT_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/crypto.h"

struct unit_env {
	char dir[256];		/* fresh directory of this test, removed by unit_env_fini() */
	int dirfd;		/* O_DIRECTORY descriptor of dir */
	char keypath[300];	/* dir/key: a key made by key_generate() */
	struct key *key;	/* that key, loaded */
};

static inline int unit_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path);
	return unlink(path);
}

/* rm -rf path; missing is fine */
static inline void unit_rm_rf(const char *path)
{
	nftw(path, unit_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes dir/name (path in out) with a fresh key and loads it into *k. */
static inline void unit_new_key(const char *dir, const char *name, char *out, size_t outlen,
				struct key **k)
{
	int ret;

	snprintf(out, outlen, "%s/%s", dir, name);
	ret = key_generate(out);
	cr_assert_eq(ret, 0, "key_generate '%s': %s", out, strerror(-ret));
	ret = key_load(k, out);
	cr_assert_eq(ret, 0, "key_load '%s': %s", out, strerror(-ret));
}

static inline void unit_env_init(struct unit_env *e)
{
	const char *base = getenv("REPFS_TEST_TMP");

	memset(e, 0, sizeof(*e));
	e->dirfd = -1;
	cr_assert_eq(crypto_init(), 0, "crypto_init failed");
	snprintf(e->dir, sizeof(e->dir), "%s/repfs-unit-XXXXXX", base && *base ? base : "/var/tmp");
	cr_assert_not_null(mkdtemp(e->dir), "mkdtemp '%s': %s", e->dir, strerror(errno));
	e->dirfd = open(e->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(e->dirfd, 0, "open '%s': %s", e->dir, strerror(errno));
	unit_new_key(e->dir, "key", e->keypath, sizeof(e->keypath), &e->key);
}

static inline void unit_env_fini(struct unit_env *e)
{
	key_free(e->key);
	e->key = NULL;
	if (e->dirfd >= 0)
		close(e->dirfd);
	e->dirfd = -1;
	if (e->dir[0])
		unit_rm_rf(e->dir);
}

/* out = e->dir/name */
static inline const char *unit_path(const struct unit_env *e, const char *name, char *out,
				    size_t outlen)
{
	snprintf(out, outlen, "%s/%s", e->dir, name);
	return out;
}

/* Reads a whole file into a malloc'd buffer (NUL-terminated past *len). */
static inline uint8_t *unit_read_file(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0, "open '%s': %s", path, strerror(errno));
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		cr_assert_gt(n, 0, "read '%s': %s", path, strerror(errno));
		got += (size_t)n;
	}
	buf[got] = 0;
	close(fd);
	*len = got;
	return buf;
}

/* Replaces the whole content of path (which keeps its mode). */
static inline void unit_write_file(const char *path, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0, "open '%s': %s", path, strerror(errno));
	while (len) {
		ssize_t n = write(fd, p, len);
		cr_assert_gt(n, 0, "write '%s': %s", path, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

static inline uint64_t unit_file_size(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0, "stat '%s': %s", path, strerror(errno));
	return (uint64_t)st.st_size;
}

#endif
