/* test_apply.c -- the one apply path: every record type, strict failures,
 * record times, and replay (twice, onto a newer state, into an empty tree)
 *
 * Records go through the real encoding: each is encoded (MAC-chained with the
 * test key), kept, and decoded again before it is applied, so a replay applies
 * exactly what a follower or crash recovery would read from the log.
 * Trees are compared with a snapshot: for every object its path, type, mode,
 * owner, link count, size, content digest or link target, mtime, id and
 * extended attributes (trusted.repfs.* aside; the id is shown on its own).
 */
#include <dirent.h>
#include <limits.h>
#include <linux/falloc.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <xxhash.h>

#include "../../fs/store.h"
#include "unit.h"

static struct unit_env aenv;
static struct store *ast;	/* aenv.dir/tree */
static char atree[300];

/* the records applied so far, encoded */
#define AP_MAX 256
static struct {
	uint8_t *buf[AP_MAX];
	size_t len[AP_MAX];
	int n;
	uint8_t prev[CRYPTO_MAC_BYTES];
	int check_twice;	/* after each apply: apply again as a replay, compare */
} aplog;

#define AP_T0 1700000000000000000ll	/* 2023-11-14, in ns */

static int64_t ap_time(uint64_t seq)
{
	return AP_T0 + (int64_t)seq * 1000003ll + 17;
}

static struct store *ap_new_tree(const char *name, char *path, size_t len)
{
	struct store *st;
	int ret;

	unit_path(&aenv, name, path, len);
	cr_assert_eq(mkdir(path, 0755), 0);
	ret = store_open(&st, path);
	cr_assert_eq(ret, 0, "store_open '%s': %s", path, strerror(-ret));
	return st;
}

static void apply_setup(void)
{
	unit_env_init(&aenv);
	memset(&aplog, 0, sizeof(aplog));
	ast = ap_new_tree("tree", atree, sizeof(atree));
}

static void apply_teardown(void)
{
	store_free(ast);
	ast = NULL;
	for (int i = 0; i < aplog.n; i++)
		free(aplog.buf[i]);
	aplog.n = 0;
	unit_env_fini(&aenv);
}

TestSuite(apply, .init = apply_setup, .fini = apply_teardown);

/* ---- snapshots ---- */

static int ap_not_dots(const struct dirent *d)
{
	return strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
}

static int ap_cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ap_hex(FILE *f, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%02x", p[i]);
}

static void ap_snap_xattrs(FILE *f, const char *full)
{
	char names[4096], *v[64];
	uint8_t id[64], val[4096];
	ssize_t n = llistxattr(full, names, sizeof(names)), idn;
	int cnt = 0;

	cr_assert_geq(n, 0, "llistxattr '%s': %s", full, strerror(errno));
	idn = lgetxattr(full, ID_XATTR, id, sizeof(id));
	fprintf(f, " id=");
	if (idn < 0)
		fprintf(f, "none");
	else
		ap_hex(f, id, (size_t)idn);
	for (char *p = names; p < names + n; p += strlen(p) + 1)
		if (!store_hidden_xattr(p) && cnt < 64)
			v[cnt++] = p;
	qsort(v, (size_t)cnt, sizeof(v[0]), ap_cmp_str);
	for (int i = 0; i < cnt; i++) {
		ssize_t vl = lgetxattr(full, v[i], val, sizeof(val));
		cr_assert_geq(vl, 0);
		fprintf(f, " x:%s=", v[i]);
		ap_hex(f, val, (size_t)vl);
	}
}

static void ap_snap_obj(FILE *f, const char *root, const char *rel)
{
	char full[PATH_MAX];
	struct stat st;

	snprintf(full, sizeof(full), "%s/%s", root, rel);
	cr_assert_eq(lstat(full, &st), 0, "lstat '%s': %s", full, strerror(errno));
	fprintf(f, "%s type=%o mode=%04o uid=%u gid=%u nlink=%lu mtime=%lld.%09ld", rel,
		(unsigned)(st.st_mode & S_IFMT) >> 12, (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
		(unsigned)st.st_gid, (unsigned long)st.st_nlink, (long long)st.st_mtim.tv_sec,
		st.st_mtim.tv_nsec);
	if (S_ISREG(st.st_mode)) {
		size_t len;
		uint8_t *data = unit_read_file(full, &len);
		fprintf(f, " size=%lld data=%016llx", (long long)st.st_size, (unsigned long long)XXH64(data, len, 0));
		free(data);
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(full, target, sizeof(target) - 1);
		cr_assert_geq(n, 0);
		target[n] = 0;
		fprintf(f, " size=%lld target=%s", (long long)st.st_size, target);
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		fprintf(f, " rdev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
	}
	ap_snap_xattrs(f, full);
	fprintf(f, "\n");
	if (S_ISDIR(st.st_mode)) {
		struct dirent **list;
		int n = scandir(full, &list, ap_not_dots, alphasort);
		cr_assert_geq(n, 0, "scandir '%s': %s", full, strerror(errno));
		for (int i = 0; i < n; i++) {
			char sub[PATH_MAX];
			snprintf(sub, sizeof(sub), "%s/%s", rel, list[i]->d_name);
			ap_snap_obj(f, root, sub);
			free(list[i]);
		}
		free(list);
	}
}

/* The tree at root as text, one line per object; the caller frees it. */
static char *ap_snapshot(const char *root)
{
	char *s = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&s, &len);

	cr_assert_not_null(f);
	ap_snap_obj(f, root, ".");
	fclose(f);
	return s;
}

/* Is the line l[0..n) one of the lines of text? */
static int ap_has_line(const char *text, const char *l, size_t n)
{
	while (*text) {
		size_t m = strcspn(text, "\n");
		if (m == n && !memcmp(text, l, n))
			return 1;
		text += m + (text[m] ? 1 : 0);
	}
	return 0;
}

/* Appends to out the lines of a that b lacks, each prefixed with tag. */
static void ap_lines_missing(FILE *out, const char *a, const char *b, const char *tag, int *count)
{
	while (*a) {
		size_t m = strcspn(a, "\n");
		if (!ap_has_line(b, a, m) && (*count)++ < 8)
			fprintf(out, "\n  %s %.*s", tag, (int)m, a);
		a += m + (a[m] ? 1 : 0);
	}
}

/*
 * Fails listing the objects whose lines differ between two snapshots. Frees
 * both (also on failure, so that a failing test leaks nothing).
 */
static void ap_expect_same(char *want, char *got, const char *what)
{
	static char report[8192];
	char *msg = NULL;
	size_t len = 0;
	int count = 0;
	FILE *f;

	if (!strcmp(want, got)) {
		free(want);
		free(got);
		return;
	}
	f = open_memstream(&msg, &len);
	ap_lines_missing(f, want, got, "expected:", &count);
	ap_lines_missing(f, got, want, "got:     ", &count);
	fclose(f);
	snprintf(report, sizeof(report), "%s", msg);
	free(msg);
	free(want);
	free(got);
	cr_assert_fail("%s: trees differ (%d lines)%s", what, count, report);
}

/* ---- records ---- */

static void ap_id(uint8_t id[FILE_ID_BYTES], int n)
{
	memset(id, 0, FILE_ID_BYTES);
	if (n) {
		id[0] = 0xa5;
		id[1] = (uint8_t)(n >> 8);
		id[FILE_ID_BYTES - 1] = (uint8_t)n;
	}
}

/* Decodes log entry i into *r (pointing into the log's copy). */
static void ap_decode(int i, struct record *r)
{
	cr_assert_eq(record_decode(aplog.buf[i], aplog.len[i], r), 0);
	cr_assert_eq(record_verify(aenv.key, i ? record_mac_of(aplog.buf[i - 1], aplog.len[i - 1]) : aplog.prev,
				   aplog.buf[i], aplog.len[i]),
		     0);
}

/* Logs r as the next record (seq, epoch, time set here) and returns its index. */
static int ap_log(struct record *r)
{
	static const uint8_t zero[CRYPTO_MAC_BYTES];
	int i = aplog.n;

	cr_assert_lt(i, AP_MAX);
	r->seq = (uint64_t)i + 1;
	r->epoch = 1;
	r->time_ns = ap_time(r->seq);
	crypto_random(r->nonce, sizeof(r->nonce));
	cr_assert_eq(record_encode(aenv.key, i ? record_mac_of(aplog.buf[i - 1], aplog.len[i - 1]) : zero, r,
				   &aplog.buf[i], &aplog.len[i]),
		     0);
	aplog.n++;
	return i;
}

/* Logs r and applies it to st with flags; returns apply_record's result. */
static int ap_emit(struct store *st, struct record *r, unsigned flags)
{
	struct record d;
	int i = ap_log(r);

	ap_decode(i, &d);
	return apply_record(st, &d, flags, -1, NULL);
}

/* Logs and strictly applies r, which must succeed (and, if asked, survive a second apply). */
static void ap_ok(struct record *r)
{
	struct record d;
	int ret = ap_emit(ast, r, APPLY_STRICT);

	cr_assert_eq(ret, 0, "strict apply of %s '%s' (seq %llu): %d %s", record_type_name(r->type),
		     r->path ? r->path : "", (unsigned long long)r->seq, ret, ret < 0 ? strerror(-ret) : "");
	if (aplog.check_twice) {
		char *before = ap_snapshot(atree), *after, what[160];
		ap_decode(aplog.n - 1, &d);
		ret = apply_record(ast, &d, 0, -1, NULL);
		snprintf(what, sizeof(what), "%s '%s' (seq %llu) applied twice", record_type_name(r->type),
			 r->path ? r->path : "", (unsigned long long)r->seq);
		cr_assert(ret == 0 || ret == 1, "%s: second apply returned %d (%s)", what, ret,
			  ret < 0 ? strerror(-ret) : "");
		after = ap_snapshot(atree);
		ap_expect_same(before, after, what);
	}
}

static void ap_create(const char *path, mode_t mode, uid_t uid, gid_t gid, const char *target, int id)
{
	struct record r = { .type = REC_CREATE, .path = path, .mode = mode, .uid = uid, .gid = gid };

	ap_id(r.id, id);
	if (target) {
		r.data = target;
		r.data_len = (uint32_t)strlen(target) + 1;
	}
	ap_ok(&r);
}

static void ap_write(const char *path, int id, uint64_t off, const void *data, uint32_t len)
{
	struct record r = { .type = REC_WRITE, .path = path, .off = off, .data = data, .data_len = len };

	ap_id(r.id, id);
	ap_ok(&r);
}

static void ap_setattr(const char *path, int id, uint32_t mask, mode_t mode, uid_t uid, gid_t gid,
		       uint64_t size, int64_t atime, int64_t mtime)
{
	struct record r = { .type = REC_SETATTR, .path = path, .op_flags = mask, .mode = mode, .uid = uid,
			    .gid = gid, .len = size, .atime_ns = atime, .mtime_ns = mtime };

	ap_id(r.id, id);
	ap_ok(&r);
}

static void ap_two_paths(uint16_t type, const char *from, const char *to, int id, int id2, uint32_t flags)
{
	struct record r = { .type = type, .path = from, .path2 = to, .op_flags = flags };

	ap_id(r.id, id);
	ap_id(r.id2, id2);
	ap_ok(&r);
}

static void ap_remove(uint16_t type, const char *path, int id)
{
	struct record r = { .type = type, .path = path };

	ap_id(r.id, id);
	ap_ok(&r);
}

static void ap_falloc(const char *path, int id, uint32_t mode, uint64_t off, uint64_t len)
{
	struct record r = { .type = REC_FALLOCATE, .path = path, .op_flags = mode, .off = off, .len = len };

	ap_id(r.id, id);
	ap_ok(&r);
}

static void ap_copy(const char *from, int id, uint64_t off, const char *to, int id2, uint64_t off2, uint64_t len)
{
	struct record r = { .type = REC_COPY, .path = from, .off = off, .path2 = to, .off2 = off2, .len = len };
	uint8_t digest[STORE_DIGEST_BYTES];
	int fd;

	/* as the leader does: the digest of the source range at the time of the copy */
	fd = openat(store_rootfd(ast), store_rel(from), O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "open '%s': %s", from, strerror(errno));
	cr_assert_eq(store_range_digest(fd, off, len, digest), 0);
	close(fd);
	r.data = digest;
	r.data_len = STORE_DIGEST_BYTES;
	ap_id(r.id, id);
	ap_id(r.id2, id2);
	ap_ok(&r);
}

static void ap_xattr(uint16_t type, const char *path, int id, const char *name, const void *val, uint32_t len,
		     uint32_t flags)
{
	struct record r = { .type = type, .path = path, .name = name, .data = val, .data_len = len, .op_flags = flags };

	ap_id(r.id, id);
	ap_ok(&r);
}

enum { ID_D = 1, ID_F, ID_L, ID_P, ID_S, ID_G, ID_X, ID_E1, ID_E2, ID_SUB, ID_FA, ID_R1, ID_R2, ID_MV };

/* Builds a small tree with every record type, strictly. */
static void ap_scenario(void)
{
	static uint8_t big[65536];
	static const uint8_t bin[] = { 0, 1, 2, 0, 255 };
	struct record branch = { .type = REC_BRANCH };

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 1);
	ap_ok(&branch);
	ap_create("d", S_IFDIR | 0755, 0, 0, NULL, ID_D);
	ap_create("d/f", S_IFREG | 0644, 1000, 1000, NULL, ID_F);
	ap_write("d/f", ID_F, 0, "hello, world", 12);
	ap_write("d/f", ID_F, 8192, "tail", 4);
	ap_create("d/l", S_IFLNK | 0777, 1000, 1000, "f", ID_L);
	ap_create("p", S_IFIFO | 0640, 5, 6, NULL, ID_P);
	ap_create("sock", S_IFSOCK | 0600, 0, 0, NULL, ID_S);
	ap_setattr("d/f", ID_F, SA_UID | SA_GID, 0, 1001, 1002, 0, 0, 0);
	ap_setattr("d/f", ID_F, SA_MODE, 04750, 0, 0, 0, 0, 0);
	ap_setattr("d/f", ID_F, SA_SIZE, 0, 0, 0, 6000, 0, 0);
	ap_setattr("p", ID_P, SA_MODE, 0604, 0, 0, 0, 0, 0);
	ap_two_paths(REC_LINK, "d/f", "hard", ID_F, 0, 0);
	ap_create("g", S_IFREG | 0644, 0, 0, NULL, ID_G);
	ap_write("g", ID_G, 0, "gggg", 4);
	ap_two_paths(REC_RENAME, "g", "g2", ID_G, 0, 0);
	ap_create("x", S_IFREG | 0600, 0, 0, NULL, ID_X);
	ap_write("x", ID_X, 0, "xxxxxxxx", 8);
	ap_two_paths(REC_RENAME, "x", "g2", ID_X, ID_G, 0);	/* replaces g2 */
	ap_create("e1", S_IFREG | 0644, 0, 0, NULL, ID_E1);
	ap_write("e1", ID_E1, 0, "one", 3);
	ap_create("e2", S_IFDIR | 0700, 0, 0, NULL, ID_E2);
	ap_two_paths(REC_RENAME, "e1", "e2", ID_E1, ID_E2, RENAME_EXCHANGE);
	ap_two_paths(REC_RENAME, "e1", "d/e3", ID_E2, 0, RENAME_NOREPLACE);	/* a dir, across parents */
	ap_remove(REC_UNLINK, "hard", ID_F);
	ap_create("d/sub", S_IFDIR | 0755, 0, 0, NULL, ID_SUB);
	ap_remove(REC_RMDIR, "d/sub", ID_SUB);
	ap_create("fa", S_IFREG | 0644, 0, 0, NULL, ID_FA);
	ap_falloc("fa", ID_FA, 0, 0, 65536);
	ap_write("fa", ID_FA, 0, big, sizeof(big));
	ap_falloc("fa", ID_FA, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 8192);
	ap_falloc("fa", ID_FA, 0, 65536, 4096);	/* grows it */
	ap_copy("d/f", ID_F, 0, "fa", ID_FA, 100, 12);
	ap_xattr(REC_SETXATTR, "d/f", ID_F, "user.color", "blue", 4, 0);
	ap_xattr(REC_SETXATTR, "d", ID_D, "user.dir", "x", 1, XATTR_CREATE);
	ap_xattr(REC_SETXATTR, "d/f", ID_F, "user.tmp", "t", 1, 0);
	ap_xattr(REC_REMOVEXATTR, "d/f", ID_F, "user.tmp", NULL, 0, 0);
	ap_xattr(REC_SETXATTR, "d/f", ID_F, "user.color", "red", 3, XATTR_REPLACE);
	ap_xattr(REC_SETXATTR, "fa", ID_FA, "user.bin", bin, sizeof(bin), 0);
	ap_xattr(REC_SETXATTR, "fa", ID_FA, "user.empty", "", 0, 0);
	ap_create("re", S_IFREG | 0644, 0, 0, NULL, ID_R1);
	ap_remove(REC_UNLINK, "re", ID_R1);
	ap_create("re", S_IFREG | 0640, 7, 7, NULL, ID_R2);
	ap_write("re", ID_R2, 0, "second", 6);
	ap_setattr("re", ID_R2, SA_ATIME | SA_MTIME, 0, 0, 0, 0, AP_T0 - 5000000000ll + 123, AP_T0 - 1000000000ll + 456);
	ap_create("mv", S_IFDIR | 0755, 0, 0, NULL, ID_MV);
	ap_two_paths(REC_RENAME, "d/l", "mv/l", ID_L, 0, 0);
}

/* Replays records [from, aplog.n) onto st as crash recovery does. */
static void ap_replay(struct store *st, int from, int expect_applied, const char *what)
{
	struct replay *rp;

	cr_assert_eq(replay_begin(&rp), 0);
	for (int i = from; i < aplog.n; i++) {
		struct record r;
		int ret;
		ap_decode(i, &r);
		ret = replay_apply(rp, st, &r);
		cr_assert(ret == 0 || ret == 1, "%s: replay of %s '%s' (seq %llu) returned %d (%s)", what,
			  record_type_name(r.type), r.path, (unsigned long long)r.seq, ret,
			  ret < 0 ? strerror(-ret) : "");
		if (expect_applied)
			cr_assert_eq(ret, 0, "%s: %s '%s' (seq %llu) skipped", what, record_type_name(r.type), r.path,
				     (unsigned long long)r.seq);
	}
	cr_assert_eq(replay_finish(rp, st), 0, "%s: restoring directory times", what);
}

static void ap_stat(const char *rel, struct stat *st)
{
	cr_assert_eq(fstatat(store_rootfd(ast), store_rel(rel), st, AT_SYMLINK_NOFOLLOW), 0, "stat '%s': %s", rel,
		     strerror(errno));
}

static int ap_exists(const char *rel)
{
	struct stat st;

	return fstatat(store_rootfd(ast), store_rel(rel), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int64_t ap_mtime_of(const char *rel)
{
	struct stat st;

	ap_stat(rel, &st);
	return (int64_t)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec;
}

static void ap_expect_content(const char *rel, const void *want, size_t len)
{
	char full[PATH_MAX];
	size_t got;
	uint8_t *data;

	snprintf(full, sizeof(full), "%s/%s", atree, rel);
	data = unit_read_file(full, &got);
	cr_assert_eq(got, len, "'%s' has %zu bytes, expected %zu", rel, got, len);
	cr_assert_arr_eq(data, want, len, "content of '%s' differs", rel);
	free(data);
}

static void ap_expect_id(const char *rel, int id)
{
	uint8_t have[FILE_ID_BYTES], want[FILE_ID_BYTES];

	ap_id(want, id);
	cr_assert_eq(store_get_id(ast, rel, have), 0, "no id on '%s'", rel);
	cr_assert_arr_eq(have, want, FILE_ID_BYTES, "wrong id on '%s'", rel);
}

/* ---- every type ---- */

Test(apply, every_record_type_builds_the_tree)
{
	static uint8_t want[65536 + 4096];
	char target[64], full[PATH_MAX];
	uint8_t val[16];
	struct stat st;
	ssize_t n;

	ap_scenario();
	/* d/f: written, cut to 6000, owner, setuid mode, xattrs */
	ap_stat("d/f", &st);
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 04750);
	cr_assert_eq(st.st_uid, 1001);
	cr_assert_eq(st.st_gid, 1002);
	cr_assert_eq(st.st_size, 6000);
	cr_assert_eq(store_nlink(&st), 1, "one name (and its entry in the id index)");
	cr_assert_eq(st.st_nlink, 2);
	memset(want, 0, 6000);
	memcpy(want, "hello, world", 12);
	ap_expect_content("d/f", want, 6000);
	ap_expect_id("d/f", ID_F);
	snprintf(full, sizeof(full), "%s/d/f", atree);
	n = getxattr(full, "user.color", val, sizeof(val));
	cr_assert_eq(n, 3);
	cr_assert_arr_eq(val, "red", 3);
	cr_assert_eq(getxattr(full, "user.tmp", val, sizeof(val)), -1);
	/* symlink moved to mv/, fifo, socket */
	ap_stat("mv/l", &st);
	cr_assert(S_ISLNK(st.st_mode));
	cr_assert_eq(st.st_uid, 1000);
	snprintf(full, sizeof(full), "%s/mv/l", atree);
	n = readlink(full, target, sizeof(target));
	cr_assert_eq(n, 1);
	cr_assert_eq(target[0], 'f');
	ap_expect_id("mv/l", ID_L);
	cr_assert_not(ap_exists("d/l"));
	ap_stat("p", &st);
	cr_assert(S_ISFIFO(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0604);
	cr_assert_eq(st.st_uid, 5);
	cr_assert_eq(st.st_gid, 6);
	ap_stat("sock", &st);
	cr_assert(S_ISSOCK(st.st_mode));
	/* links, renames */
	cr_assert_not(ap_exists("hard"));
	cr_assert_not(ap_exists("g"));
	cr_assert_not(ap_exists("x"));
	ap_expect_id("g2", ID_X);
	ap_expect_content("g2", "xxxxxxxx", 8);
	cr_assert_not(ap_exists("e1"));
	ap_expect_id("e2", ID_E1);
	ap_expect_content("e2", "one", 3);
	ap_stat("d/e3", &st);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0700);
	ap_expect_id("d/e3", ID_E2);
	cr_assert_not(ap_exists("d/sub"));
	/* fa: allocated, written, hole punched, grown, copied into */
	for (size_t i = 0; i < 65536; i++)
		want[i] = (uint8_t)(i * 7 + 1);
	memset(want + 4096, 0, 8192);
	memset(want + 65536, 0, 4096);
	memcpy(want + 100, "hello, world", 12);
	ap_expect_content("fa", want, 65536 + 4096);
	ap_stat("re", &st);	/* before reading it moves the atime */
	cr_assert_eq(st.st_mtim.tv_sec, (AP_T0 - 1000000000ll + 456) / 1000000000ll);
	cr_assert_eq(st.st_mtim.tv_nsec, (AP_T0 - 1000000000ll + 456) % 1000000000ll);
	cr_assert_eq(st.st_atim.tv_sec, (AP_T0 - 5000000000ll + 123) / 1000000000ll);
	cr_assert_eq(st.st_atim.tv_nsec, (AP_T0 - 5000000000ll + 123) % 1000000000ll);
	ap_expect_id("re", ID_R2);
	ap_expect_content("re", "second", 6);
}

Test(apply, applying_each_record_twice_changes_nothing)
{
	aplog.check_twice = 1;
	ap_scenario();
}

Test(apply, replay_into_empty_tree_gives_the_same_tree)
{
	char *want, *got, path2[300];
	struct store *st2;

	ap_scenario();
	want = ap_snapshot(atree);
	st2 = ap_new_tree("tree2", path2, sizeof(path2));
	ap_replay(st2, 0, 1, "replay into an empty tree");
	got = ap_snapshot(path2);
	store_free(st2);
	ap_expect_same(want, got, "replay into an empty tree");
}

Test(apply, replay_onto_the_final_tree_changes_nothing)
{
	char *want, *got;

	ap_scenario();
	want = ap_snapshot(atree);
	ap_replay(ast, 0, 0, "replay onto the final tree");
	got = ap_snapshot(atree);
	ap_expect_same(want, got, "whole log replayed onto the tree it made");
}

/* ---- replay onto a newer state, one property at a time ---- */

/* Snapshot, replay everything from the start, compare. */
static void ap_expect_replay_converges(const char *what)
{
	char *want = ap_snapshot(atree), *got;

	ap_replay(ast, 0, 0, what);
	got = ap_snapshot(atree);
	ap_expect_same(want, got, what);
}

Test(apply, replay_onto_newer_state_does_not_resurrect_a_renamed_file)
{
	ap_create("a", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("a", 1, 0, "data", 4);
	ap_two_paths(REC_RENAME, "a", "b", 1, 0, 0);
	ap_expect_replay_converges("create a, write a, rename a -> b, replayed");
}

/*
 * An object renamed away and back (a -> b replacing P, b -> c, c -> a
 * replacing Z, then Q takes c): replayed onto the final tree, its first
 * rename's precondition holds again (it is at a). Seen in
 * replay_newer_tree.sh: replaying that hop moved it to b, and the later
 * hops were skipped (c holds Q), leaving it at b. The seq of the rename
 * that gave it its name (trusted.repfs.named) says the tree is past it.
 */
Test(apply, replay_onto_newer_state_after_a_rename_cycle)
{
	ap_create("a", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_create("b", S_IFREG | 0644, 0, 0, NULL, 2);
	ap_two_paths(REC_RENAME, "a", "b", 1, 2, 0);
	ap_create("a", S_IFREG | 0644, 0, 0, NULL, 3);
	ap_two_paths(REC_RENAME, "b", "c", 1, 0, 0);
	ap_two_paths(REC_RENAME, "c", "a", 1, 3, 0);
	ap_create("c", S_IFREG | 0644, 0, 0, NULL, 4);
	ap_expect_replay_converges("a rename cycle through a name a newer object took, replayed");
}

Test(apply, rename_onto_a_name_holding_the_same_object_leaves_only_that_name)
{
	struct record r = { .type = REC_RENAME, .path = "a", .path2 = "b" };

	/* a snapshot's tree: "a" from a listing made before a move, "b" from one after it */
	ap_create("a", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("a", 1, 0, "data", 4);
	ap_two_paths(REC_LINK, "a", "b", 1, 0, 0);
	/* the move's record, as the leader logged it: "b" was free then */
	ap_id(r.id, 1);
	cr_assert_eq(ap_emit(ast, &r, 0), 0);
	cr_assert(!ap_exists("a"), "the old name is still there");
	ap_expect_id("b", 1);
	ap_expect_content("b", "data", 4);
	ap_decode(aplog.n - 1, &r);
	cr_assert_eq(apply_record(ast, &r, 0, -1, NULL), 1, "a second apply did something");
	ap_expect_id("b", 1);
}

Test(apply, replay_onto_newer_state_keeps_parent_mtime)
{
	ap_create("x", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_remove(REC_UNLINK, "x", 1);
	ap_create("y", S_IFREG | 0644, 0, 0, NULL, 2);
	ap_expect_replay_converges("create x, unlink x, create y, replayed");
}

Test(apply, replay_onto_newer_state_copies_the_old_source)
{
	ap_create("s", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_setattr("s", 1, SA_SIZE, 0, 0, 0, 16, 0, 0);
	ap_create("t", S_IFREG | 0644, 0, 0, NULL, 2);
	ap_copy("s", 1, 0, "t", 2, 0, 16);
	ap_write("s", 1, 0, "ABCD", 4);
	ap_expect_replay_converges("copy s -> t, then write s, replayed");
}

Test(apply, replay_onto_newer_state_after_truncate_and_rewrite)
{
	/* records whose effects later records overwrite: these converge */
	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("f", 1, 0, "0123456789", 10);
	ap_setattr("f", 1, SA_SIZE, 0, 0, 0, 3, 0, 0);
	ap_write("f", 1, 5, "ab", 2);
	ap_setattr("f", 1, SA_MODE, 0600, 0, 0, 0, 0, 0);
	ap_xattr(REC_SETXATTR, "f", 1, "user.a", "1", 1, XATTR_CREATE);
	ap_xattr(REC_REMOVEXATTR, "f", 1, "user.a", NULL, 0, 0);
	ap_xattr(REC_SETXATTR, "f", 1, "user.a", "2", 1, XATTR_CREATE);
	ap_expect_replay_converges("write, truncate, write, xattr create/remove/create, replayed");
	ap_expect_content("f", "012\0\0ab", 7);
}

/* ---- record times ---- */

static void ap_expect_mtime(const char *rel, int64_t t, const char *what)
{
	int64_t m = ap_mtime_of(rel);

	cr_assert_eq(m, t, "%s: mtime of '%s' is %lld, expected the record's %lld", what, rel, (long long)m,
		     (long long)t);
}

/* The time of the last record applied. */
static int64_t ap_last_time(void)
{
	return ap_time((uint64_t)aplog.n);
}

/* The log replayed into an empty tree (a little later: times must come from the records) gives the tree. */
static void ap_expect_fresh_replay_same(const char *what)
{
	char *want = ap_snapshot(atree), *got, path2[300];
	struct store *st2 = ap_new_tree("tree2", path2, sizeof(path2));

	usleep(10000);
	ap_replay(st2, 0, 1, "replay into an empty tree");
	got = ap_snapshot(path2);
	store_free(st2);
	ap_expect_same(want, got, what);
}

Test(apply, record_time_becomes_mtime_of_object_and_parent)
{
	ap_create("d", S_IFDIR | 0755, 0, 0, NULL, 1);
	ap_expect_mtime("d", ap_last_time(), "mkdir");
	ap_expect_mtime(".", ap_last_time(), "mkdir");
	ap_create("d/f", S_IFREG | 0644, 0, 0, NULL, 2);
	ap_expect_mtime("d/f", ap_last_time(), "create");
	ap_expect_mtime("d", ap_last_time(), "create");
	ap_create("d/l", S_IFLNK | 0777, 0, 0, "f", 3);
	ap_expect_mtime("d/l", ap_last_time(), "symlink");
	ap_expect_mtime("d", ap_last_time(), "symlink");
	ap_create("d/p", S_IFIFO | 0644, 0, 0, NULL, 4);
	ap_expect_mtime("d/p", ap_last_time(), "mkfifo");
	ap_expect_mtime("d", ap_last_time(), "mkfifo");
	ap_write("d/f", 2, 0, "abc", 3);
	ap_expect_mtime("d/f", ap_last_time(), "write");
	ap_setattr("d/f", 2, SA_SIZE, 0, 0, 0, 100, 0, 0);
	ap_expect_mtime("d/f", ap_last_time(), "truncate");
	ap_falloc("d/f", 2, 0, 0, 8192);
	ap_expect_mtime("d/f", ap_last_time(), "fallocate");
	ap_falloc("d/f", 2, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
	ap_expect_mtime("d/f", ap_last_time(), "punch hole");
	ap_create("e", S_IFDIR | 0755, 0, 0, NULL, 5);
	ap_two_paths(REC_LINK, "d/f", "e/h", 2, 0, 0);
	ap_expect_mtime("e", ap_last_time(), "link");
	ap_create("e/c", S_IFREG | 0644, 0, 0, NULL, 6);
	ap_copy("d/f", 2, 0, "e/c", 6, 0, 3);
	ap_expect_mtime("e/c", ap_last_time(), "copy");
	ap_two_paths(REC_RENAME, "e/c", "d/c", 6, 0, 0);
	ap_expect_mtime("e", ap_last_time(), "rename (source parent)");
	ap_expect_mtime("d", ap_last_time(), "rename (target parent)");
	ap_create("e/x", S_IFREG | 0644, 0, 0, NULL, 7);
	ap_two_paths(REC_RENAME, "e/x", "d/c", 7, 6, RENAME_EXCHANGE);
	ap_expect_mtime("e", ap_last_time(), "exchange (source parent)");
	ap_expect_mtime("d", ap_last_time(), "exchange (target parent)");
	ap_remove(REC_UNLINK, "e/h", 2);
	ap_expect_mtime("e", ap_last_time(), "unlink");
	ap_create("e/sub", S_IFDIR | 0755, 0, 0, NULL, 8);
	ap_remove(REC_RMDIR, "e/sub", 8);
	ap_expect_mtime("e", ap_last_time(), "rmdir");
	ap_setattr("d/f", 2, SA_MTIME, 0, 0, 0, 0, 0, 42424242);
	ap_expect_mtime("d/f", 42424242, "utimens");
	ap_setattr("d/f", 2, SA_SIZE | SA_MTIME, 0, 0, 0, 10, 0, 777);
	ap_expect_mtime("d/f", 777, "truncate with an explicit mtime");
}

/* The kernel stamps the current time on fallocate even with KEEP_SIZE (ext4,
 * xfs): apply must replace it by the record's, or nodes end with different mtimes. */
Test(apply, fallocate_keep_size_sets_record_time)
{
	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("f", 1, 0, "abc", 3);
	ap_falloc("f", 1, FALLOC_FL_KEEP_SIZE, 0, 1 << 20);
	ap_expect_mtime("f", ap_last_time(), "fallocate KEEP_SIZE");
	ap_expect_fresh_replay_same("fallocate KEEP_SIZE replayed into an empty tree");
}

/*
 * With the writeback cache the kernel sends the writer's mtime in a setattr
 * of its own, before or after the write (its writeback is asynchronous): a
 * write marked REC_F_KEEP_MTIME sets the mtime the file had before it
 * (node_commit() puts it in mtime_ns), through the log's encoding, applied
 * twice, and in a replay.
 */
Test(apply, write_keeping_mtime_leaves_the_setattrs_time)
{
	struct record r = { .type = REC_WRITE, .flags = REC_F_KEEP_MTIME, .path = "f", .off = 3, .data = "def",
			    .data_len = 3, .mtime_ns = 1234567890123456789LL };

	aplog.check_twice = 1;
	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("f", 1, 0, "abc", 3);
	ap_setattr("f", 1, SA_MTIME, 0, 0, 0, 0, 0, 1234567890123456789LL);
	usleep(10000);
	ap_id(r.id, 1);
	ap_ok(&r);
	ap_expect_mtime("f", 1234567890123456789LL, "a write keeping the mtime, after the setattr");
	ap_expect_content("f", "abcdef", 6);
	ap_expect_fresh_replay_same("writes keeping the mtime replayed into an empty tree");
}

/* A writeback-cache leader's fallocate keeps the kernel's mtime (REC_F_KEEP_MTIME), as its writes do. */
Test(apply, fallocate_keeping_mtime_leaves_the_setattrs_time)
{
	struct record r = { .type = REC_FALLOCATE, .flags = REC_F_KEEP_MTIME, .path = "f", .off = 0,
			    .len = 65536, .mtime_ns = 1234567890123456789LL };

	aplog.check_twice = 1;
	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_setattr("f", 1, SA_MTIME, 0, 0, 0, 0, 0, 1234567890123456789LL);
	ap_id(r.id, 1);
	ap_ok(&r);
	ap_expect_mtime("f", 1234567890123456789LL, "a fallocate keeping the mtime");
	ap_expect_fresh_replay_same("a fallocate keeping the mtime replayed into an empty tree");
}

/*
 * The id index's entry of an object made again under its id (a snapshot's
 * stand-in symlink, sent for real on the next try) is the new object, not the
 * stale one; the same object linked again changes nothing.
 */
Test(apply, id_born_replaces_a_stale_index_entry)
{
	uint8_t id[FILE_ID_BYTES];
	char hex[2 * FILE_ID_BYTES + 1], path[PATH_MAX];
	struct stat a, b;

	ap_id(id, 7);
	store_id_hex(id, hex);
	cr_assert_eq(symlinkat(".", store_rootfd(ast), "s"), 0);
	cr_assert_eq(store_id_born(ast, id, "s", 0), 0);
	cr_assert_eq(unlinkat(store_rootfd(ast), "s", 0), 0);	/* the name goes; the index keeps the old one */
	cr_assert_eq(symlinkat("target", store_rootfd(ast), "s"), 0);
	cr_assert_eq(store_id_born(ast, id, "s", 0), 0);
	cr_assert_eq(fstatat(store_indexfd(ast), hex, &a, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert_eq(fstatat(store_rootfd(ast), "s", &b, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert_eq(a.st_ino, b.st_ino, "the index holds the stale symlink");
	cr_assert_eq(b.st_nlink, 2, "the new symlink has %lu links", (unsigned long)b.st_nlink);
	cr_assert_eq(store_id_born(ast, id, "s", 0), 0, "linking the same object again");
	cr_assert_eq(fstatat(store_rootfd(ast), "s", &b, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert_eq(b.st_nlink, 2);
	snprintf(path, sizeof(path), "%s.n", hex);
	cr_assert_neq(faccessat(store_indexfd(ast), path, F_OK, AT_SYMLINK_NOFOLLOW), 0, "a temporary link was left");
}

/*
 * A replay that meets a directory under another name (a snapshot's, names
 * moved since) cannot reach it by id: the index holds only a marker for a
 * directory. Its xattr and mode changes are skipped (the check after the
 * snapshot repairs what was left out), not applied to the marker, where a
 * default ACL was refused (EACCES) and failed the whole replay.
 */
Test(apply, replay_by_id_skips_a_directory)
{
	struct record x = { .type = REC_SETXATTR, .path = "elsewhere", .name = "user.k", .data = "v", .data_len = 1 };
	struct record m = { .type = REC_SETATTR, .path = "elsewhere", .op_flags = SA_MODE, .mode = 0700 };
	char hex[2 * FILE_ID_BYTES + 1], v[8];
	struct stat st;

	ap_create("d", S_IFDIR | 0755, 0, 0, NULL, 5);
	ap_id(x.id, 5);
	ap_id(m.id, 5);
	cr_assert_eq(apply_record(ast, &x, 0, -1, NULL), 1, "an xattr by id onto a directory is left out");
	cr_assert_eq(apply_record(ast, &m, 0, -1, NULL), 1, "a chmod by id onto a directory is left out");
	store_id_hex(x.id, hex);
	cr_assert_eq(fstatat(store_indexfd(ast), hex, &st, 0), 0, "the directory's marker");
	cr_assert_eq(st.st_mode & 07777, 0600, "the marker's mode changed to %o", st.st_mode & 07777);
	{
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", store_indexfd(ast), hex);
		cr_assert_lt(getxattr(path, "user.k", v, sizeof(v)), 0, "the marker got the xattr");
	}
}

/* ---- strict failures ---- */

static int ap_try(struct record *r, unsigned flags)
{
	return ap_emit(ast, r, flags);
}

Test(apply, strict_create_over_existing_path_is_eexist)
{
	struct record r = { .type = REC_CREATE, .path = "f", .mode = S_IFREG | 0644 };
	char *before, *after;
	int fd;

	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	ap_write("f", 1, 0, "keep", 4);
	ap_create("d", S_IFDIR | 0755, 0, 0, NULL, 3);
	before = ap_snapshot(atree);
	ap_id(r.id, 1);	/* same id */
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	ap_id(r.id, 2);	/* another id */
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	r.mode = S_IFDIR | 0755;
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	r.path = "d";
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	r.mode = S_IFLNK | 0777;
	r.data = "t";
	r.data_len = 2;
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	after = ap_snapshot(atree);
	ap_expect_same(before, after, "refused creates");
	/* an object without an id (made behind repfs's back) */
	fd = openat(store_rootfd(ast), "noid", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	r.path = "noid";
	r.mode = S_IFREG | 0644;
	r.data = NULL;
	r.data_len = 0;
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
}

Test(apply, strict_ops_with_wrong_id_change_nothing)
{
	char *before, *after;
	struct record r;
	int ret;

	ap_create("d", S_IFDIR | 0755, 0, 0, NULL, 1);
	ap_create("d/f", S_IFREG | 0644, 0, 0, NULL, 2);
	ap_write("d/f", 2, 0, "data", 4);
	ap_create("e", S_IFDIR | 0755, 0, 0, NULL, 3);
	ap_create("g", S_IFREG | 0644, 0, 0, NULL, 4);
	before = ap_snapshot(atree);

	r = (struct record){ .type = REC_UNLINK, .path = "d/f" };
	ap_id(r.id, 9);
	ret = ap_try(&r, APPLY_STRICT);
	cr_assert_lt(ret, 0, "unlink with a wrong id returned %d", ret);
	cr_assert(ap_exists("d/f"), "unlink with a wrong id removed the file");
	r = (struct record){ .type = REC_RMDIR, .path = "e" };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_WRITE, .path = "d/f", .data = "XXXX", .data_len = 4 };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_SETATTR, .path = "d/f", .op_flags = SA_MODE | SA_SIZE, .mode = 0, .len = 0 };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_FALLOCATE, .path = "d/f", .len = 4096 };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_SETXATTR, .path = "d/f", .name = "user.a", .data = "1", .data_len = 1 };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_LINK, .path = "d/f", .path2 = "h" };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_RENAME, .path = "d/f", .path2 = "h" };
	ap_id(r.id, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	/* the right source, but the target is not the object the record names */
	r = (struct record){ .type = REC_RENAME, .path = "d/f", .path2 = "g" };
	ap_id(r.id, 2);
	ap_id(r.id2, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_RENAME, .path = "d/f", .path2 = "g", .op_flags = RENAME_NOREPLACE };
	ap_id(r.id, 2);
	cr_assert_eq(ap_try(&r, APPLY_STRICT), -EEXIST);
	r = (struct record){ .type = REC_RENAME, .path = "d/f", .path2 = "g", .op_flags = RENAME_EXCHANGE };
	ap_id(r.id, 2);
	ap_id(r.id2, 9);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	r = (struct record){ .type = REC_COPY, .path = "d/f", .path2 = "g", .len = 4 };
	ap_id(r.id, 9);
	ap_id(r.id2, 4);
	cr_assert_lt(ap_try(&r, APPLY_STRICT), 0);
	after = ap_snapshot(atree);
	ap_expect_same(strdup(before), after, "strict records with wrong ids");

	/* the same records replayed are skips, and change nothing either */
	for (int i = 5; i < aplog.n; i++) {
		ap_decode(i, &r);
		ret = apply_record(ast, &r, 0, -1, NULL);
		cr_assert_eq(ret, 1, "replay of %s with a wrong id returned %d, not a skip", record_type_name(r.type),
			     ret);
	}
	after = ap_snapshot(atree);
	ap_expect_same(before, after, "replayed records with wrong ids");
}

Test(apply, hidden_xattr_is_eperm)
{
	static const char *const names[] = { ID_XATTR, "trusted.repfs.other" };
	uint8_t id[FILE_ID_BYTES];
	struct record r;

	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	for (size_t i = 0; i < 2; i++) {
		for (unsigned flags = 0; flags <= APPLY_STRICT; flags++) {
			r = (struct record){ .type = REC_SETXATTR, .path = "f", .name = names[i], .data = "0123456789abcdef",
					     .data_len = FILE_ID_BYTES };
			ap_id(r.id, 1);
			cr_assert_eq(ap_try(&r, flags), -EPERM, "setxattr of %s", names[i]);
			r = (struct record){ .type = REC_REMOVEXATTR, .path = "f", .name = names[i] };
			ap_id(r.id, 1);
			cr_assert_eq(ap_try(&r, flags), -EPERM, "removexattr of %s", names[i]);
		}
	}
	/* also with the leader's open descriptor as hint */
	{
		int fd = openat(store_rootfd(ast), "f", O_RDWR | O_CLOEXEC), ret;
		struct record d;
		r = (struct record){ .type = REC_SETXATTR, .path = "f", .name = ID_XATTR, .data = "0123456789abcdef",
				     .data_len = FILE_ID_BYTES };
		ap_id(r.id, 1);
		ap_decode(ap_log(&r), &d);
		ret = apply_record(ast, &d, APPLY_STRICT, fd, NULL);
		cr_assert_eq(ret, -EPERM);
		close(fd);
	}
	ap_expect_id("f", 1);
	cr_assert_eq(store_get_id(ast, "f", id), 0);
}

/* ---- descriptors ---- */

Test(apply, create_hands_out_a_descriptor)
{
	struct record r = { .type = REC_CREATE, .path = "f", .mode = S_IFREG | 0600 }, d;
	int fd = -2, ret;

	ap_id(r.id, 1);
	ap_decode(ap_log(&r), &d);
	ret = apply_record(ast, &d, APPLY_STRICT, -1, &fd);
	cr_assert_eq(ret, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "via fd", 6, 0), 6);
	close(fd);
	ap_expect_content("f", "via fd", 6);
	/* directories have none */
	r = (struct record){ .type = REC_CREATE, .path = "d", .mode = S_IFDIR | 0700 };
	ap_id(r.id, 2);
	ap_decode(ap_log(&r), &d);
	fd = -2;
	cr_assert_eq(apply_record(ast, &d, APPLY_STRICT, -1, &fd), 0);
	cr_assert_eq(fd, -1);
}

/* replay_apply() of r alone, in a replay of its own: its result */
static int ap_replay_one(const struct record *r)
{
	struct replay *rp = NULL;
	int ret;

	cr_assert_eq(replay_begin(&rp), 0);
	ret = replay_apply(rp, ast, r);
	cr_assert_eq(replay_finish(rp, ast), 0);
	return ret;
}

/* A create record of path, as the log would hand it to replay (epoch 1, seq 5), with id {id0, id1} */
static struct record ap_create_rec(const char *path, mode_t mode, uid_t uid, gid_t gid, int64_t t, uint8_t id0,
				   uint8_t id1)
{
	struct record r = { .type = REC_CREATE, .epoch = 1, .seq = 5, .path = path, .path2 = "", .name = "",
			    .mode = mode, .uid = uid, .gid = gid, .time_ns = t };

	r.id[0] = id0;
	r.id[1] = id1;
	return r;
}

/* The regular file at rel as a create record r finished it: mode, owner, mtime, indexed, one name. */
static void ap_expect_finished(const char *rel, const struct record *r)
{
	struct stat sb;
	char p[512];

	snprintf(p, sizeof(p), "%s/%s", atree, rel);
	cr_assert_eq(lstat(p, &sb), 0, "%s", rel);
	cr_assert(S_ISREG(sb.st_mode));
	cr_assert_eq(sb.st_mode & 07777, r->mode & 07777);
	cr_assert_eq(sb.st_uid, r->uid);
	cr_assert_eq(sb.st_gid, r->gid);
	cr_assert_eq((int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec, r->time_ns);
	cr_assert_eq(store_id_state(ast, r->id), ID_ALIVE, "indexed");
	cr_assert_eq(store_nlink(&sb), 1, "its name (the index's link not counted)");
}

/*
 * The leader's create of a file made ahead (unnamed, O_TMPFILE): its job
 * gives it the record's name, id, owner, mode and times and indexes it, as
 * the inline create would; a name taken meanwhile is EEXIST and the file
 * stays unnamed. Replayed, the record finds the file made and finished.
 */
Test(apply, create_adopts_a_file_made_ahead)
{
	struct record r = ap_create_rec("a", S_IFREG | 0640, 1234, 5678, 1700000000987654321LL, 0x43, 9);
	struct stat sb;
	int fd;

	fd = openat(store_rootfd(ast), ".", O_TMPFILE | O_RDWR, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "ahead", 5, 0), 5);
	cr_assert_eq(apply_create_adopt(ast, &r, fd), 0);
	ap_expect_finished("a", &r);
	ap_expect_content("a", "ahead", 5);
	close(fd);

	/* the name is taken: EEXIST, and the file made ahead stays unnamed */
	fd = openat(store_rootfd(ast), ".", O_TMPFILE | O_RDWR, 0600);
	cr_assert_geq(fd, 0);
	r.id[0] = 0x44;
	cr_assert_eq(apply_create_adopt(ast, &r, fd), -EEXIST);
	cr_assert_eq(fstat(fd, &sb), 0);
	cr_assert_eq(sb.st_nlink, 0);
	cr_assert_eq(store_id_state(ast, r.id), ID_UNKNOWN);
	close(fd);

	/* a replay of the first record finds its file */
	r.id[0] = 0x43;
	cr_assert_eq(ap_replay_one(&r), 1);
}

Test(apply, unlinked_open_file_is_reached_through_the_hint)
{
	struct record r, d;
	struct stat st;
	int fd;

	ap_create("f", S_IFREG | 0644, 0, 0, NULL, 1);
	fd = openat(store_rootfd(ast), "f", O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	ap_remove(REC_UNLINK, "f", 1);
	r = (struct record){ .type = REC_WRITE, .flags = REC_F_NOPATH, .path = "", .data = "late", .data_len = 4 };
	ap_id(r.id, 1);
	ap_decode(ap_log(&r), &d);
	cr_assert_eq(apply_record(ast, &d, APPLY_STRICT, fd, NULL), 0);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, 4);
	cr_assert_eq(st.st_mtim.tv_nsec, ap_last_time() % 1000000000ll);
	/* a replay has no descriptor: skipped */
	cr_assert_eq(apply_record(ast, &d, 0, -1, NULL), 1);
	r = (struct record){ .type = REC_SETATTR, .flags = REC_F_NOPATH, .path = "", .op_flags = SA_MODE, .mode = 0600 };
	ap_id(r.id, 1);
	ap_decode(ap_log(&r), &d);
	cr_assert_eq(apply_record(ast, &d, APPLY_STRICT, fd, NULL), 0);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600);
	cr_assert_eq(apply_record(ast, &d, 0, -1, NULL), 1);
	close(fd);
	cr_assert_not(ap_exists("f"));
}

/* a nameless FIFO's changes come with the O_PATH descriptor the mount holds (ino_hold_special()) */
Test(apply, unlinked_held_fifo_is_changed_through_its_o_path_descriptor)
{
	struct record r, d;
	struct stat st;
	char v[4];
	int fd;

	ap_create("p", S_IFIFO | 0640, 0, 0, NULL, 1);
	fd = openat(store_rootfd(ast), "p", O_PATH | O_NOFOLLOW | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	ap_remove(REC_UNLINK, "p", 1);
	r = (struct record){ .type = REC_SETATTR, .flags = REC_F_NOPATH, .path = "",
			     .op_flags = SA_MODE | SA_UID | SA_GID | SA_MTIME, .mode = 0604, .uid = 4321, .gid = 4322,
			     .mtime_ns = 2000000000002ll };
	ap_id(r.id, 1);
	ap_decode(ap_log(&r), &d);
	cr_assert_eq(apply_record(ast, &d, APPLY_STRICT, fd, NULL), 0);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert(S_ISFIFO(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0604);
	cr_assert_eq(st.st_uid, 4321);
	cr_assert_eq(st.st_gid, 4322);
	cr_assert_eq(st.st_mtim.tv_sec, 2000);
	cr_assert_eq(st.st_mtim.tv_nsec, 2);
	/* a replay (or a follower) has no such object: skipped */
	cr_assert_eq(apply_record(ast, &d, 0, -1, NULL), 1);
	r = (struct record){ .type = REC_SETXATTR, .flags = REC_F_NOPATH, .path = "", .name = "trusted.held",
			     .data = "v1", .data_len = 2 };
	ap_id(r.id, 1);
	ap_decode(ap_log(&r), &d);
	cr_assert_eq(apply_record(ast, &d, APPLY_STRICT, fd, NULL), 0);
	{
		char proc[32];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		cr_assert_eq(getxattr(proc, "trusted.held", v, sizeof(v)), 2);
		cr_assert_eq(memcmp(v, "v1", 2), 0);
	}
	close(fd);
	cr_assert_not(ap_exists("p"));
}

Test(apply, branch_is_a_noop_and_unknown_type_is_einval)
{
	struct record r = { .type = REC_BRANCH, .off = 1, .len = 99 };
	char *before = ap_snapshot(atree), *after;

	cr_assert_eq(apply_record(ast, &r, APPLY_STRICT, -1, NULL), 0);
	cr_assert_eq(apply_record(ast, &r, 0, -1, NULL), 0);
	r.type = REC_TYPE_MAX + 1;
	cr_assert_eq(apply_record(ast, &r, APPLY_STRICT, -1, NULL), -EINVAL);
	after = ap_snapshot(atree);
	ap_expect_same(before, after, "branch");
}

/*
 * kill -9 between making a file (its id already set) and finishing it (owner,
 * mode, times, its index link): crash recovery's replay of the create must
 * finish it, not take the id for proof that it is done.
 */
Test(apply, replay_finishes_a_create_cut_short_by_a_crash)
{
	struct record r = ap_create_rec("f", S_IFREG | 0644, 1234, 5678, 1700000000123456789LL, 0x42, 7);
	char p[512];
	int fd;

	snprintf(p, sizeof(p), "%s/f", atree);
	fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fsetxattr(fd, ID_XATTR, r.id, FILE_ID_BYTES, 0), 0);
	close(fd);
	cr_assert_eq(store_id_state(ast, r.id), ID_UNKNOWN);

	cr_assert_eq(ap_replay_one(&r), 0, "the unfinished create is finished");
	ap_expect_finished("f", &r);

	/* a finished one is left alone */
	cr_assert_eq(ap_replay_one(&r), 1);
}

/* The same for a directory, whose marker in the index the leader makes behind its answer. */
Test(apply, replay_finishes_a_mkdir_cut_short_by_a_crash)
{
	struct record r = ap_create_rec("d", S_IFDIR | 0750, 0, 0, 1700000000222333444LL, 0x45, 3);
	struct stat sb;
	char p[512];

	snprintf(p, sizeof(p), "%s/d", atree);
	cr_assert_eq(mkdir(p, 0750), 0);
	cr_assert_eq(lsetxattr(p, ID_XATTR, r.id, FILE_ID_BYTES, 0), 0);
	cr_assert_eq(store_id_state(ast, r.id), ID_UNKNOWN);

	cr_assert_eq(ap_replay_one(&r), 0, "the unfinished mkdir is finished");
	cr_assert_eq(lstat(p, &sb), 0);
	cr_assert(S_ISDIR(sb.st_mode));
	cr_assert_eq(sb.st_mode & 07777, 0750);
	cr_assert_eq(store_id_state(ast, r.id), ID_ALIVE, "its marker made");
}

/*
 * A snapshot's replay follows the leader's names through records it leaves
 * out: a directory made at b/b, moved as b -> e, given an explicit mtime at
 * e/b, moved as e -> a. The snapshot's listing shows it at a/b with that
 * mtime, and none of the records apply there (their paths are not the
 * listing's). The finish must not give a/b the create's time: the explicit
 * mtime follows the directory's note even where the snapshot has no
 * directory at e/b (a repl_opfuzz run found a follower left so).
 */
Test(apply, snapshot_replay_keeps_an_explicit_directory_mtime_set_under_a_name_it_lacks)
{
	const int64_t t_create = 1795973914068130576LL, m = 1500030605238956145LL;
	struct record cr = { .type = REC_CREATE, .epoch = 1, .seq = 10, .path = "b/b", .path2 = "", .name = "",
			     .mode = S_IFDIR | 0755, .time_ns = t_create };
	struct record mv1 = { .type = REC_RENAME, .epoch = 1, .seq = 11, .path = "b", .path2 = "e", .name = "",
			      .time_ns = t_create + 1000 };
	struct record sa = { .type = REC_SETATTR, .epoch = 1, .seq = 12, .path = "e/b", .path2 = "", .name = "",
			     .op_flags = SA_MTIME, .mtime_ns = m, .time_ns = t_create + 2000 };
	struct record mv2 = { .type = REC_RENAME, .epoch = 1, .seq = 13, .path = "e", .path2 = "a", .name = "",
			      .time_ns = t_create + 3000 };
	const struct record *rs[] = { &cr, &mv1, &sa, &mv2 };
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { (time_t)(m / 1000000000), (long)(m % 1000000000) } };
	struct replay *rp = NULL;
	char p[512];

	ap_id(cr.id, 901);
	ap_id(sa.id, 901);
	ap_id(mv1.id, 902);
	ap_id(mv2.id, 903);
	/* the snapshot: e (empty), and a holding the directory, listed with its mtime */
	snprintf(p, sizeof(p), "%s/e", atree);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/a", atree);
	cr_assert_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/a/b", atree);
	cr_assert_eq(mkdir(p, 0755), 0);
	cr_assert_eq(utimensat(AT_FDCWD, p, ts, 0), 0);

	cr_assert_eq(replay_begin(&rp), 0);
	replay_snapshot(rp);
	for (size_t i = 0; i < sizeof(rs) / sizeof(rs[0]); i++) {
		int ret = replay_apply(rp, ast, rs[i]);
		cr_assert(ret == 0 || ret == 1, "replay of %s '%s' returned %d", record_type_name(rs[i]->type),
			  rs[i]->path, ret);
	}
	cr_assert_eq(replay_finish(rp, ast), 0);
	cr_assert_eq(ap_mtime_of("a/b"), m, "a/b's mtime is %lld, the listing's %lld (the create's %lld)",
		     (long long)ap_mtime_of("a/b"), (long long)m, (long long)t_create);
}

Test(apply, prune_ids_drops_only_tombstones_below_the_checkpoint)
{
	uint8_t live[FILE_ID_BYTES], old[FILE_ID_BYTES], recent[FILE_ID_BYTES];
	uint64_t pruned = 99;
	char p[512];
	int fd;

	memset(live, 0x11, sizeof(live));
	memset(old, 0x22, sizeof(old));
	memset(recent, 0x33, sizeof(recent));
	snprintf(p, sizeof(p), "%s/f", atree);
	fd = open(p, O_CREAT | O_EXCL | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(store_id_born(ast, live, "f", 0), 0);
	cr_assert_eq(store_id_died(ast, old, 5), 0);
	cr_assert_eq(store_id_died(ast, recent, 50), 0);

	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 1, "one tombstone at or below seq 10");
	cr_assert_eq(store_id_state(ast, old), ID_UNKNOWN, "the old tombstone is gone");
	cr_assert_eq(store_id_state(ast, recent), ID_DEAD, "the recent one stays");
	cr_assert_eq(store_id_state(ast, live), ID_ALIVE, "a live id is never pruned");

	cr_assert_eq(store_prune_ids(ast, 50, &pruned), 0);
	cr_assert_eq(pruned, 1);
	cr_assert_eq(store_id_state(ast, recent), ID_UNKNOWN);
	cr_assert_eq(store_id_state(ast, live), ID_ALIVE);
}

/* A tombstone of id at seq made behind the store's back, as an earlier run's. */
static void stray_tombstone(const uint8_t id[FILE_ID_BYTES], time_t seq)
{
	char hex[2 * FILE_ID_BYTES + 3];
	int fd;

	store_id_hex(id, hex);
	strcat(hex, ".d");
	fd = openat(store_indexfd(ast), hex, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(futimens(fd, (struct timespec[]){ { 0, UTIME_OMIT }, { seq, 0 } }), 0);
	close(fd);
}

Test(apply, prune_ids_walks_the_index_only_when_a_tombstone_may_be_there)
{
	uint8_t stray[FILE_ID_BYTES], dead[FILE_ID_BYTES];
	uint64_t pruned = 99;

	memset(stray, 0x44, sizeof(stray));
	memset(dead, 0x55, sizeof(dead));
	/* a fresh store walks once: tombstones of an earlier run may be there */
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 0);

	/* a tombstone this store did not make (as if the walk had met none) is not looked for */
	stray_tombstone(stray, 3);
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 0, "no tombstone made since the last walk: no walk");
	cr_assert_eq(store_id_state(ast, stray), ID_DEAD);

	/* one made: the next prune walks, and finds both */
	cr_assert_eq(store_id_died(ast, dead, 5), 0);
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 2);
	cr_assert_eq(store_id_state(ast, stray), ID_UNKNOWN);

	/* one left above the checkpoint keeps the walks going until it goes */
	cr_assert_eq(store_id_died(ast, dead, 50), 0);
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 0);
	cr_assert_eq(store_prune_ids(ast, 50, &pruned), 0);
	cr_assert_eq(pruned, 1, "the tombstone left by the last walk is found by the next");
	cr_assert_eq(store_id_state(ast, dead), ID_UNKNOWN);

	/* an index swapped in (a snapshot's, a rewind's: store_reopen) is walked by the next prune */
	memset(stray, 0x66, sizeof(stray));
	stray_tombstone(stray, 4);
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 0);
	cr_assert_eq(store_reopen(ast), 0);
	cr_assert_eq(store_prune_ids(ast, 10, &pruned), 0);
	cr_assert_eq(pruned, 1, "a reopened index is walked");
}
