/* test_digest.c -- digest trees and block digests (replication/digest.h), and the
 * replay onto a snapshot that skips changes of names its listing already holds
 */
#include <sys/xattr.h>
#include <xxhash.h>

#include "../../fs/store.h"
#include "../../replication/digest.h"
#include "unit.h"

static struct unit_env denv;

static void digest_setup(void)
{
	unit_env_init(&denv);
}

static void digest_teardown(void)
{
	unit_env_fini(&denv);
}

TestSuite(digest, .init = digest_setup, .fini = digest_teardown);

static void dg_write(const char *root, const char *rel, const char *text, int id)
{
	char path[512];
	uint8_t fid[FILE_ID_BYTES] = { (uint8_t)id, 1, 2, 3 };
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "w");
	cr_assert_not_null(f, "fopen '%s': %s", path, strerror(errno));
	fputs(text, f);
	fclose(f);
	cr_assert_eq(lsetxattr(path, ID_XATTR, fid, FILE_ID_BYTES, 0), 0);
}

/* root/a (dir) with a/x and a/y, root/z; fixed ids and times */
static void dg_tree(const char *name, char *root, size_t len)
{
	char p[512];
	struct timespec ts[2] = { { 1000, 0 }, { 2000, 5 } };

	unit_path(&denv, name, root, len);
	cr_assert_eq(mkdir(root, 0755), 0);
	snprintf(p, sizeof(p), "%s/a", root);
	cr_assert_eq(mkdir(p, 0750), 0);
	dg_write(root, "a/x", "hello", 1);
	dg_write(root, "a/y", "world", 2);
	dg_write(root, "z", "zzz", 3);
	for (const char *rel = "a/x"; rel; rel = !strcmp(rel, "a/x") ? "a/y" : !strcmp(rel, "a/y") ? "z" : !strcmp(rel, "z") ? "a" : NULL) {
		snprintf(p, sizeof(p), "%s/%s", root, rel);
		cr_assert_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	}
	cr_assert_eq(utimensat(AT_FDCWD, root, ts, 0), 0);
}

static struct dnode *dg_digest(const char *root)
{
	struct dnode *t = NULL;
	int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC), ret;

	cr_assert_geq(fd, 0);
	ret = digest_tree(fd, &t, NULL, NULL);
	cr_assert_eq(ret, 0, "digest_tree '%s': %s", root, strerror(-ret));
	close(fd);
	return t;
}

Test(digest, equal_trees_have_equal_sums_and_a_change_shows_its_path)
{
	char a[300], b[300], p[512];
	struct dnode *ta, *tb;
	struct timespec ts[2] = { { 1000, 0 }, { 2000, 5 } };
	FILE *f;

	dg_tree("a", a, sizeof(a));
	dg_tree("b", b, sizeof(b));
	ta = dg_digest(a);
	tb = dg_digest(b);
	cr_assert_arr_eq(ta->sum, tb->sum, DIGEST_BYTES, "identical trees");
	cr_assert_eq(ta->nkids, 2);
	digest_tree_free(tb);

	/* one byte of a/y, same size and time: only a and a/y differ */
	snprintf(p, sizeof(p), "%s/a/y", b);
	f = fopen(p, "r+");
	fputc('W', f);
	fclose(f);
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);
	tb = dg_digest(b);
	cr_assert(memcmp(ta->sum, tb->sum, DIGEST_BYTES) != 0, "a changed byte changes the root's sum");
	cr_assert_arr_eq(digest_find(ta, "z")->sum, digest_find(tb, "z")->sum, DIGEST_BYTES);
	cr_assert_arr_eq(digest_find(ta, "a/x")->sum, digest_find(tb, "a/x")->sum, DIGEST_BYTES);
	cr_assert(memcmp(digest_find(ta, "a/y")->meta, digest_find(tb, "a/y")->meta, DIGEST_BYTES) != 0);
	cr_assert_arr_eq(digest_find(ta, "a")->meta, digest_find(tb, "a")->meta, DIGEST_BYTES,
			 "the directory itself is unchanged; only its sum differs");
	cr_assert_null(digest_find(ta, "a/nothing"));
	digest_tree_free(ta);
	digest_tree_free(tb);
}

Test(digest, mode_owner_xattrs_and_every_name_count_but_not_atime_or_ids)
{
	char a[300], b[300], p[512];
	struct dnode *ta, *tb;
	struct timespec at[2] = { { 5, 0 }, { 0, UTIME_OMIT } };

	dg_tree("a", a, sizeof(a));
	dg_tree("b", b, sizeof(b));
	ta = dg_digest(a);
	/* what users do not see: atime */
	snprintf(p, sizeof(p), "%s/z", b);
	cr_assert_eq(utimensat(AT_FDCWD, p, at, 0), 0);
	tb = dg_digest(b);
	cr_assert_arr_eq(ta->sum, tb->sum, DIGEST_BYTES, "atime is left out");
	digest_tree_free(tb);
	/* a name of the form libfuse's path API used for open unlinked files is an ordinary name */
	snprintf(p, sizeof(p), "%s/.fuse_hidden0000000000000001", b);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	{
		struct timespec ts[2] = { { 1000, 0 }, { 2000, 5 } };
		cr_assert_eq(utimensat(AT_FDCWD, b, ts, 0), 0);	/* the create moved the directory's time */
	}
	tb = dg_digest(b);
	cr_assert(memcmp(ta->sum, tb->sum, DIGEST_BYTES) != 0, "a .fuse_hidden name counts");
	digest_tree_free(tb);
	cr_assert_eq(unlink(p), 0);
	/* what they see: a user xattr, a mode */
	snprintf(p, sizeof(p), "%s/z", b);
	cr_assert_eq(lsetxattr(p, "user.color", "blue", 4, 0), 0);
	tb = dg_digest(b);
	cr_assert(memcmp(digest_find(ta, "z")->meta, digest_find(tb, "z")->meta, DIGEST_BYTES) != 0, "an xattr counts");
	digest_tree_free(tb);
	cr_assert_eq(lremovexattr(p, "user.color"), 0);
	cr_assert_eq(chmod(p, 0600), 0);
	tb = dg_digest(b);
	cr_assert(memcmp(digest_find(ta, "z")->meta, digest_find(tb, "z")->meta, DIGEST_BYTES) != 0, "a mode counts");
	digest_tree_free(ta);
	digest_tree_free(tb);
}

Test(digest, blocks_show_which_64k_block_changed)
{
	char p[512];
	uint8_t(*d1)[DIGEST_BYTES], (*d2)[DIGEST_BYTES], buf[4096];
	uint32_t n1, n2;
	int fd;

	unit_path(&denv, "big", p, sizeof(p));
	fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	for (int i = 0; i < 60; i++) {
		memset(buf, 'a' + i % 26, sizeof(buf));
		cr_assert_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	}
	cr_assert_eq(digest_blocks(fd, 60 * 4096, &d1, &n1), 0);
	cr_assert_eq(n1, 4, "240 KiB is four blocks of 64 KiB, the last one short");
	cr_assert_eq(pwrite(fd, "X", 1, 2 * DIGEST_BLOCK + 7), 1);
	cr_assert_eq(digest_blocks(fd, 60 * 4096, &d2, &n2), 0);
	cr_assert_eq(n2, 4);
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(memcmp(d1[i], d2[i], DIGEST_BYTES) != 0, i == 2, "block %u", i);
	free(d1);
	free(d2);
	cr_assert_eq(digest_blocks(fd, 0, &d1, &n1), 0);
	cr_assert_eq(n1, 0);
	free(d1);
	close(fd);
}

/* ---- replay onto a snapshot ---- */

static int dg_create(struct store *st, struct replay *rp, uint64_t seq, const char *path, int id)
{
	struct record r = { .type = REC_CREATE, .seq = seq, .epoch = 1, .path = path, .path2 = "", .name = "",
			    .mode = S_IFREG | 0644, .time_ns = (int64_t)seq * 1000000000 };

	r.id[0] = (uint8_t)id;
	r.id[1] = 9;
	return replay_apply(rp, st, &r);
}

Test(digest, snapshot_replay_skips_changes_of_names_its_listing_holds)
{
	char root[300], p[512];
	struct store *st = NULL;
	struct replay *rp = NULL;
	uint64_t listed = 10;
	struct stat sb;

	unit_path(&denv, "tree", root, sizeof(root));
	cr_assert_eq(mkdir(root, 0755), 0);
	cr_assert_eq(store_open(&st, root), 0);
	snprintf(p, sizeof(p), "%s/d", root);
	cr_assert_eq(mkdir(p, 0755), 0);
	cr_assert_eq(setxattr(p, SNAP_LISTED_XATTR, &listed, 8, 0), 0);
	cr_assert_eq(replay_begin(&rp), 0);
	replay_snapshot(rp);
	/* born and gone before the leader listed d: the snapshot has it as it was then (absent) */
	cr_assert_eq(dg_create(st, rp, 7, "d/early", 1), 1);
	/* made after the listing: replayed */
	cr_assert_eq(dg_create(st, rp, 11, "d/late", 2), 0);
	/* the root was not listed in this snapshot: replayed as usual */
	cr_assert_eq(dg_create(st, rp, 3, "top", 3), 0);
	cr_assert_eq(replay_finish(rp, st), 0);
	snprintf(p, sizeof(p), "%s/d/early", root);
	cr_assert_eq(lstat(p, &sb), -1);
	snprintf(p, sizeof(p), "%s/d/late", root);
	cr_assert_eq(lstat(p, &sb), 0);
	snprintf(p, sizeof(p), "%s/top", root);
	cr_assert_eq(lstat(p, &sb), 0);

	/* without replay_snapshot() (crash recovery), the listing mark means nothing */
	cr_assert_eq(replay_begin(&rp), 0);
	cr_assert_eq(dg_create(st, rp, 8, "d/other", 4), 0);
	cr_assert_eq(replay_finish(rp, st), 0);
	store_free(st);
}

/* The digest of a range by reading every byte: what store_range_digest() must equal. */
static void dg_naive(int fd, uint64_t off, uint64_t len, uint8_t out[STORE_DIGEST_BYTES])
{
	XXH3_state_t *x = XXH3_createState();
	XXH128_canonical_t c;
	uint8_t buf[4096];

	XXH3_128bits_reset(x);
	while (len) {
		ssize_t n = pread(fd, buf, len < sizeof(buf) ? (size_t)len : sizeof(buf), (off_t)off);
		cr_assert_geq(n, 0);
		if (n == 0)
			break;
		XXH3_128bits_update(x, buf, (size_t)n);
		off += (uint64_t)n;
		len -= (uint64_t)n;
	}
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(x));
	memcpy(out, c.digest, STORE_DIGEST_BYTES);
	XXH3_freeState(x);
}

/*
 * Holes are hashed as the zeros they read as, without reading them: the
 * digest of any range of a sparse file (holes, data, fallocated extents,
 * written zeros, a hole at the end) is the one of its bytes.
 */
Test(digest, ranges_of_sparse_files_hash_their_bytes)
{
	char path[512];
	uint8_t a[STORE_DIGEST_BYTES], b[STORE_DIGEST_BYTES], data[5000];
	static const uint64_t ranges[][2] = { { 0, UINT64_MAX }, { 0, 4096 }, { 1000, 70000 }, { 65536, 1 << 20 },
					      { 200000, 300000 }, { 3u << 20, UINT64_MAX }, { 9u << 20, 100 } };
	int fd;

	unit_path(&denv, "sparse", path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	memset(data, 'x', sizeof(data));
	cr_assert_eq(pwrite(fd, data, sizeof(data), 70000), (ssize_t)sizeof(data));
	cr_assert_eq(pwrite(fd, data, 100, 300000), 100);
	memset(data, 0, sizeof(data));
	cr_assert_eq(pwrite(fd, data, sizeof(data), 500000), (ssize_t)sizeof(data));	/* written zeros */
	(void)fallocate(fd, FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20);			/* unwritten extent */
	cr_assert_eq(ftruncate(fd, 4 << 20), 0);					/* a hole to the end */
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		cr_assert_eq(store_range_digest(fd, ranges[i][0], ranges[i][1], a), 0);
		dg_naive(fd, ranges[i][0], ranges[i][1], b);
		cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "range %zu: the digest differs from its bytes'", i);
	}
	close(fd);
}

/*
 * The blocks of a sparse file: those in holes are not read but hashed as
 * the zeros they read as, and every block's digest is the one of its bytes.
 */
Test(digest, blocks_of_sparse_files_hash_their_bytes)
{
	char path[512];
	uint8_t(*d)[DIGEST_BYTES] = NULL, data[5000], *block = malloc(DIGEST_BLOCK);
	const uint64_t size = (10u << 20) + 12345;	/* a partial last block, in a hole */
	uint32_t n = 0;
	int fd;

	cr_assert_not_null(block);
	unit_path(&denv, "sparse-blocks", path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	memset(data, 'y', sizeof(data));
	cr_assert_eq(pwrite(fd, data, sizeof(data), 0), (ssize_t)sizeof(data));
	cr_assert_eq(pwrite(fd, data, sizeof(data), (3u << 20) - 100), (ssize_t)sizeof(data));	/* across blocks */
	cr_assert_eq(pwrite(fd, data, 1, 5u << 20), 1);
	(void)fallocate(fd, FALLOC_FL_KEEP_SIZE, 7u << 20, 1 << 20);			/* unwritten extent */
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);					/* a hole to the end */
	cr_assert_eq(digest_blocks(fd, size, &d, &n), 0);
	cr_assert_eq(n, (size + DIGEST_BLOCK - 1) / DIGEST_BLOCK);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = (uint64_t)i * DIGEST_BLOCK;
		size_t want = size - off < DIGEST_BLOCK ? (size_t)(size - off) : DIGEST_BLOCK;
		XXH128_canonical_t c;
		cr_assert_eq(pread(fd, block, want, (off_t)off), (ssize_t)want);
		XXH128_canonicalFromHash(&c, XXH3_128bits(block, want));
		cr_assert_eq(memcmp(d[i], c.digest, DIGEST_BYTES), 0, "block %u: the digest differs from its bytes'", i);
	}
	free(d);
	free(block);
	close(fd);
}
