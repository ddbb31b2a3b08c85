/* opfuzz.c -- the same random file system calls on two directories, compared
 *
 * usage: opfuzz [-s SEED] [-n COUNT] [-u UID:GID] [-v] NATIVE MOUNT
 *
 * Makes COUNT random calls (default 2000) from SEED (default 1), each on
 * both directories in turn: opens, reads, writes (some past 4 GiB), appends,
 * truncates, fallocate's modes (those FUSE passes on: FUSE answers
 * EOPNOTSUPP to FALLOC_FL_COLLAPSE_RANGE and INSERT_RANGE), SEEK_DATA/SEEK_HOLE, copy_file_range,
 * fsync, shared writable mappings, mkdir, rmdir, unlink, rename (with
 * RENAME_NOREPLACE and RENAME_EXCHANGE), link, symlink, readlink, chmod,
 * chown, utimensat, mkfifo, user.* xattrs, POSIX ACLs (access and
 * default, with entries for -u's ids), access, stat and directory listings, over a small pool of names
 * three levels deep, so that calls collide (EEXIST, ENOENT, ENOTEMPTY,
 * EISDIR, ENOTDIR, EXDEV-free renames of directories into their own
 * subtrees...), and through descriptors that stay open while their names
 * are unlinked or renamed. NATIVE is a directory on a local file system
 * (the reference), MOUNT the directory under test: every call must give
 * the same result and errno on both, every read the same bytes, every stat
 * the same type, mode, owner, link count and (for non-directories) size.
 * SEEK_DATA and SEEK_HOLE must say ENXIO past the end, and each answer
 * before it must lie between the offset and the end: where the holes are
 * is the file system's own choice (unwritten extents, cached pages).
 * With -u, a quarter of the calls are made with those file system ids
 * (setfsuid/setfsgid), so that permission checks are compared too.
 *
 * Prints the first difference (the call's number and arguments) and exits 1;
 * exits 0 when all calls agreed, 2 on usage errors. -v prints every call.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif
#ifndef FALLOC_FL_KEEP_SIZE
#define FALLOC_FL_KEEP_SIZE 0x01
#endif
#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif
#ifndef FALLOC_FL_ZERO_RANGE
#define FALLOC_FL_ZERO_RANGE 0x10
#endif

#define SLOTS 6			/* descriptors kept open at once, per side */
#define MAXIO (40 << 10)	/* largest read or write */

struct side {
	const char *name;
	int root;		/* the directory's descriptor */
	int fd[SLOTS];		/* -1: free */
	uint8_t *buf;
};

static struct side sides[2];
static uint64_t rng;
static long step;
static int verbose;
static uid_t user_uid = (uid_t)-1;
static gid_t user_gid = (gid_t)-1;
static int as_user;		/* this call runs with the user's fs ids */
static char what[512];		/* the current call, for the report */
static uint8_t *wdata;

static uint64_t next(void)
{
	/* xorshift64* */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static unsigned pick(unsigned n)
{
	return (unsigned)(next() % n);
}

static void describe(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void describe(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (verbose)
		printf("%ld%s %s\n", step, as_user ? " (user)" : "", what);
}

static void differ(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void differ(const char *fmt, ...)
{
	va_list ap;

	printf("DIFF at call %ld%s: %s: ", step, as_user ? " (as user)" : "", what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	exit(1);
}

/* a result: the return value, and errno when it is -1 */
struct res {
	long ret;
	int err;
};

static struct res res_of(long ret)
{
	return (struct res){ ret, ret < 0 ? errno : 0 };
}

static void same(struct res a, struct res b)
{
	if (verbose)
		printf("    -> %ld%s%s\n", a.ret, a.err ? " " : "", a.err ? strerror(a.err) : "");
	if (a.ret != b.ret || a.err != b.err)
		differ("%s gives %ld (%s), %s gives %ld (%s)", sides[0].name, a.ret, a.err ? strerror(a.err) : "ok",
		       sides[1].name, b.ret, b.err ? strerror(b.err) : "ok");
}

/* A path of one to three names from a small pool: calls collide often. */
static void rand_path(char *buf, size_t len)
{
	static const char *names[] = { "a", "b", "c", "d", "e" };
	static const unsigned depths[] = { 1, 1, 2, 2, 3 };	/* more calls on what exists */
	unsigned depth = depths[pick(5)];
	size_t at = 0;

	for (unsigned i = 0; i < depth; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "/" : "", names[pick(5)]);
}

static mode_t rand_mode(void)
{
	static const mode_t modes[] = { 0644, 0600, 0755, 0700, 0444, 0000, 0666, 02755, 04755, 01777, 0640 };
	return modes[pick(sizeof(modes) / sizeof(modes[0]))];
}

static off_t rand_off(void)
{
	switch (pick(8)) {
	case 0:
		return 0;
	case 1:
		return (off_t)(4ull << 30) + (off_t)pick(1 << 20);	/* past 4 GiB: sparse */
	case 2:
		return (off_t)pick(16) * 4096;				/* block-aligned */
	default:
		return (off_t)pick(256 << 10);
	}
}

static void fill(uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = next();
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

static void stat_same(const struct stat *a, const struct stat *b)
{
	if ((a->st_mode & S_IFMT) != (b->st_mode & S_IFMT))
		differ("types differ: %o against %o", a->st_mode & S_IFMT, b->st_mode & S_IFMT);
	if (a->st_mode != b->st_mode)
		differ("modes differ: %o against %o", a->st_mode, b->st_mode);
	if (a->st_uid != b->st_uid || a->st_gid != b->st_gid)
		differ("owners differ: %u:%u against %u:%u", a->st_uid, a->st_gid, b->st_uid, b->st_gid);
	if (a->st_nlink != b->st_nlink)
		differ("link counts differ: %lu against %lu", (unsigned long)a->st_nlink, (unsigned long)b->st_nlink);
	if (!S_ISDIR(a->st_mode) && a->st_size != b->st_size)
		differ("sizes differ: %lld against %lld", (long long)a->st_size, (long long)b->st_size);
}

/* Runs the call on both sides; the result of side 0 in r[0], side 1 in r[1]. */
#define BOTH(expr)                                               \
	do {                                                     \
		for (int s_ = 0; s_ < 2; s_++) {                 \
			struct side *S = &sides[s_];             \
			(void)S;                                 \
			if (as_user) {                           \
				setfsgid(user_gid);              \
				setfsuid(user_uid);              \
			}                                        \
			errno = 0;                               \
			r[s_] = res_of((long)(expr));            \
			if (as_user) {                           \
				setfsuid(0);                     \
				setfsgid(0);                     \
			}                                        \
		}                                                \
	} while (0)

static void put_slot(int k, struct res r[2], int fds[2])
{
	for (int s = 0; s < 2; s++) {
		if (sides[s].fd[k] >= 0)
			close(sides[s].fd[k]);
		sides[s].fd[k] = r[0].ret >= 0 ? fds[s] : -1;
	}
}

static void op_open(void)
{
	static const int acc[] = { O_RDONLY, O_WRONLY, O_RDWR, O_RDWR };
	char p[64];
	int flags = acc[pick(4)], k = (int)pick(SLOTS), fds[2];
	mode_t mode = rand_mode() & 0777;
	struct res r[2];

	rand_path(p, sizeof(p));
	if (pick(3))
		flags |= O_CREAT;
	if (pick(4) == 0)
		flags |= O_EXCL;
	if (pick(5) == 0)
		flags |= O_TRUNC;
	if (pick(4) == 0)
		flags |= O_APPEND;
	if (pick(8) == 0)
		flags |= O_DIRECTORY;
	describe("open(%s, %#o | O_NONBLOCK, %o) -> slot %d", p, flags, mode, k);
	BOTH(fds[s_] = openat(S->root, p, flags | O_NONBLOCK | O_CLOEXEC, mode));	/* FIFOs */
	for (int s = 0; s < 2; s++)
		r[s].ret = r[s].ret >= 0 ? 0 : r[s].ret;	/* descriptors' numbers differ */
	same(r[0], r[1]);
	put_slot(k, r, fds);
}

static int live_slot(void)
{
	int k = (int)pick(SLOTS);

	return sides[0].fd[k] >= 0 ? k : -1;
}

static void op_close(void)
{
	int k = live_slot();
	struct res r[2];

	if (k < 0)
		return;
	describe("close(slot %d)", k);
	BOTH(close(S->fd[k]));
	same(r[0], r[1]);
	sides[0].fd[k] = sides[1].fd[k] = -1;
}

static void op_write(void)
{
	int k = live_slot(), pos = pick(3) != 0;
	size_t len = pick(4) == 0 ? pick(16) : pick(MAXIO);
	off_t off = rand_off();
	struct res r[2];

	if (k < 0)
		return;
	fill(wdata, len);
	describe(pos ? "pwrite(slot %d, %zu bytes, %lld)" : "write(slot %d, %zu bytes) [at %lld: lseek]", k, len,
		 (long long)off);
	if (!pos) {
		BOTH(lseek(S->fd[k], off, SEEK_SET));
		same(r[0], r[1]);
		BOTH(write(S->fd[k], wdata, len));
	} else {
		BOTH(pwrite(S->fd[k], wdata, len, off));
	}
	same(r[0], r[1]);
}

static void op_read(void)
{
	int k = live_slot();
	size_t len = pick(MAXIO);
	off_t off = pick(4) == 0 ? (off_t)(4ull << 30) + (off_t)pick(2 << 20) : (off_t)pick(300 << 10);
	struct res r[2];

	if (k < 0)
		return;
	describe("pread(slot %d, %zu, %lld)", k, len, (long long)off);
	BOTH(pread(S->fd[k], S->buf, len, off));
	same(r[0], r[1]);
	if (r[0].ret > 0 && memcmp(sides[0].buf, sides[1].buf, (size_t)r[0].ret)) {
		size_t i = 0;
		while (sides[0].buf[i] == sides[1].buf[i])
			i++;
		differ("the bytes read differ from offset %lld", (long long)off + (long long)i);
	}
}

static void op_ftruncate(void)
{
	int k = live_slot();
	off_t len = pick(6) == 0 ? (off_t)(5ull << 30) : (off_t)pick(300 << 10);
	struct res r[2];

	if (k < 0)
		return;
	describe("ftruncate(slot %d, %lld)", k, (long long)len);
	BOTH(ftruncate(S->fd[k], len));
	same(r[0], r[1]);
}

static void op_fsync(void)
{
	int k = live_slot(), data = (int)pick(2);
	struct res r[2];

	if (k < 0)
		return;
	describe("%s(slot %d)", data ? "fdatasync" : "fsync", k);
	BOTH(data ? fdatasync(S->fd[k]) : fsync(S->fd[k]));
	same(r[0], r[1]);
}

static void op_fallocate(void)
{
	static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				     FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
				     FALLOC_FL_PUNCH_HOLE };
	int k = live_slot(), mode = modes[pick(sizeof(modes) / sizeof(modes[0]))];
	off_t off = pick(2) ? (off_t)pick(64) * 4096 : (off_t)pick(256 << 10);
	off_t len = pick(2) ? (off_t)(1 + pick(16)) * 4096 : (off_t)pick(64 << 10);
	struct res r[2];

	if (k < 0)
		return;
	describe("fallocate(slot %d, %#x, %lld, %lld)", k, mode, (long long)off, (long long)len);
	BOTH(fallocate(S->fd[k], mode, off, len));
	same(r[0], r[1]);
}

static void op_lseek(void)
{
	static const int whence[] = { SEEK_DATA, SEEK_HOLE, SEEK_END, SEEK_CUR };
	int k = live_slot(), w = whence[pick(4)];
	off_t off = pick(3) == 0 ? (off_t)(4ull << 30) + (off_t)pick(1 << 20) : (off_t)pick(300 << 10);
	struct res r[2];

	if (k < 0)
		return;
	if (w == SEEK_END || w == SEEK_CUR)
		off = 0;
	{
		/* a directory's offsets are the file system's own (ext4's hash order) */
		struct stat st;
		if (fstat(sides[0].fd[k], &st) == 0 && S_ISDIR(st.st_mode))
			return;
	}
	describe("lseek(slot %d, %lld, %s)", k, (long long)off,
		 w == SEEK_DATA ? "SEEK_DATA" : w == SEEK_HOLE ? "SEEK_HOLE" : w == SEEK_END ? "SEEK_END" : "SEEK_CUR");
	BOTH(lseek(S->fd[k], off, w));
	if ((w == SEEK_DATA || w == SEEK_HOLE) && (r[0].ret >= 0 || r[0].err == ENXIO) &&
	    (r[1].ret >= 0 || r[1].err == ENXIO)) {
		/*
		 * Where holes are is the file system's choice (the unwritten
		 * extents of a zeroed range count as data where pages happen to
		 * be cached over them): past the end both must say ENXIO; before
		 * it, an answer must lie between the offset and the end, and
		 * SEEK_DATA may also find no data (ENXIO) on one side only.
		 */
		for (int s = 0; s < 2; s++) {
			struct stat st;
			if (fstat(sides[s].fd[k], &st) < 0)
				continue;
			if (off >= st.st_size && !(r[s].ret < 0 && r[s].err == ENXIO))
				differ("%s answers %ld past the end (%lld), not ENXIO", sides[s].name, r[s].ret,
				       (long long)st.st_size);
			if (r[s].ret >= 0 && (r[s].ret < off || r[s].ret > st.st_size))
				differ("%s answers %ld, outside [%lld, %lld]", sides[s].name, r[s].ret, (long long)off,
				       (long long)st.st_size);
			if (r[s].ret < 0 && r[s].err == ENXIO && off < st.st_size && w == SEEK_HOLE)
				differ("%s finds no hole before the end", sides[s].name);
		}
		/* the answers may differ, and so the positions they left: both at the native one again */
		if (r[0].ret >= 0 && r[1].ret != r[0].ret)
			lseek(sides[1].fd[k], r[0].ret, SEEK_SET);
		else if (r[0].ret < 0 && r[1].ret >= 0)
			lseek(sides[1].fd[k], lseek(sides[0].fd[k], 0, SEEK_CUR), SEEK_SET);
		return;
	}
	same(r[0], r[1]);
}

static void op_fstat(void)
{
	int k = live_slot();
	struct stat st[2];
	struct res r[2];

	if (k < 0)
		return;
	describe("fstat(slot %d)", k);
	BOTH(fstat(S->fd[k], &st[s_]));
	same(r[0], r[1]);
	if (r[0].ret == 0)
		stat_same(&st[0], &st[1]);
}

static void op_copy(void)
{
	int a = live_slot(), b = live_slot();
	loff_t offa[2], offb[2];
	size_t len = pick(MAXIO * 2);
	off_t oa = (off_t)pick(200 << 10), ob = rand_off();
	struct res r[2];

	if (a < 0 || b < 0)
		return;
	offa[0] = offa[1] = oa;
	offb[0] = offb[1] = ob;
	describe("copy_file_range(slot %d at %lld -> slot %d at %lld, %zu)", a, (long long)oa, b, (long long)ob,
		 len);
	BOTH(copy_file_range(S->fd[a], &offa[s_], S->fd[b], &offb[s_], len, 0));
	same(r[0], r[1]);
}

static void op_mkdir(void)
{
	char p[64];
	mode_t mode = rand_mode() | 0700;	/* the pool must stay reachable for root's later calls */
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("mkdir(%s, %o)", p, mode);
	BOTH(mkdirat(S->root, p, mode));
	same(r[0], r[1]);
}

static void op_rmdir(void)
{
	char p[64];
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("rmdir(%s)", p);
	BOTH(unlinkat(S->root, p, AT_REMOVEDIR));
	same(r[0], r[1]);
}

static void op_unlink(void)
{
	char p[64];
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("unlink(%s)", p);
	BOTH(unlinkat(S->root, p, 0));
	same(r[0], r[1]);
}

static void op_rename(void)
{
	static const unsigned flags[] = { 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE };
	char p[64], q[64];
	unsigned f = flags[pick(4)];
	struct res r[2];

	rand_path(p, sizeof(p));
	rand_path(q, sizeof(q));
	describe("renameat2(%s, %s, %u)", p, q, f);
	BOTH(renameat2(S->root, p, S->root, q, f));
	same(r[0], r[1]);
}

static void op_link(void)
{
	char p[64], q[64];
	struct res r[2];

	rand_path(p, sizeof(p));
	rand_path(q, sizeof(q));
	describe("link(%s, %s)", p, q);
	BOTH(linkat(S->root, p, S->root, q, 0));
	same(r[0], r[1]);
}

static void op_symlink(void)
{
	char p[64], t[64];
	struct res r[2];

	rand_path(p, sizeof(p));
	rand_path(t, sizeof(t));
	describe("symlink(%s -> %s)", p, t);
	BOTH(symlinkat(t, S->root, p));
	same(r[0], r[1]);
}

static void op_readlink(void)
{
	char p[64], t[2][128];
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("readlink(%s)", p);
	BOTH(readlinkat(S->root, p, t[s_], sizeof(t[s_])));
	same(r[0], r[1]);
	if (r[0].ret > 0 && memcmp(t[0], t[1], (size_t)r[0].ret))
		differ("targets differ");
}

static void op_chmod(void)
{
	char p[64];
	mode_t mode = rand_mode();
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("chmod(%s, %o)", p, mode);
	BOTH(fchmodat(S->root, p, mode, 0));
	same(r[0], r[1]);
}

/* 1 if the user the calls run as (setfsgid, and this process's supplementary groups) is in group g. */
static int user_in_group(gid_t g)
{
	gid_t groups[256];
	int k = getgroups(256, groups);

	if (g == user_gid)
		return 1;
	for (int i = 0; i < k; i++)
		if (groups[i] == g)
			return 1;
	return 0;
}

static void op_chown(void)
{
	static const int ids[] = { 0, 1000, -1, 1000 };
	char p[64];
	uid_t u = (uid_t)ids[pick(4)];
	gid_t g = (gid_t)ids[pick(4)];
	int flags = pick(3) == 0 ? AT_SYMLINK_NOFOLLOW : 0;
	struct res r[2];

	rand_path(p, sizeof(p));
	if (as_user && u == (uid_t)-1 && g == (gid_t)-1) {
		/*
		 * chown(-1, -1) by another than the owner of a file it would drop
		 * setuid or setgid of (setgid: group execute, or a caller outside
		 * the group): ext4 refuses (EPERM); a mount without the writeback
		 * cache cannot tell it from a write's drop and lets it change
		 * nothing (README).
		 */
		struct stat st;
		if (fstatat(sides[0].root, p, &st, flags) == 0 && st.st_uid != user_uid &&
		    ((st.st_mode & S_ISUID) ||
		     ((st.st_mode & S_ISGID) && ((st.st_mode & S_IXGRP) || !user_in_group(st.st_gid)))))
			return;
	}
	describe("fchownat(%s, %d, %d, %#x)", p, (int)u, (int)g, flags);
	BOTH(fchownat(S->root, p, u, g, flags));
	same(r[0], r[1]);
}

static void op_access(void)
{
	static const int modes[] = { F_OK, R_OK, W_OK, X_OK, R_OK | W_OK };
	char p[64];
	int mode = modes[pick(5)];
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("faccessat(%s, %d)", p, mode);
	BOTH(faccessat(S->root, p, mode, 0));
	same(r[0], r[1]);
}

/* A shared writable mapping of a slot's first pages: a few bytes stored, then msync. */
static void op_mmap(void)
{
	int k = live_slot(), sync = (int)pick(2);
	size_t len = (1 + pick(4)) * 4096, at = pick((unsigned)len), n = 1 + pick(64);
	void *m[2];
	struct res r[2];

	if (k < 0)
		return;
	if (at + n > len)
		n = len - at;
	fill(wdata, n);
	describe("mmap(slot %d, %zu) and store %zu bytes at %zu%s", k, len, n, at, sync ? ", msync" : "");
	BOTH((m[s_] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, S->fd[k], 0)) == MAP_FAILED ? -1 : 0);
	same(r[0], r[1]);
	if (r[0].ret < 0)
		return;
	for (int s = 0; s < 2; s++) {
		struct stat st;
		/* a store past the file's last page would be a SIGBUS: only within */
		if (fstat(sides[s].fd[k], &st) == 0 && (off_t)(at + n) <= st.st_size)
			memcpy((char *)m[s] + at, wdata, n);
	}
	if (sync) {
		BOTH(msync(m[s_], len, MS_SYNC));
		same(r[0], r[1]);
	}
	for (int s = 0; s < 2; s++)
		munmap(m[s], len);
}

/*
 * A store through a mapping of a file on a mount that went away (the
 * daemon killed: tests/fault/crash_opfuzz.sh) faults with SIGBUS: the end
 * of the run, as ENOTCONN is for a call, not a crash (nor, in the
 * sanitizer build, a sanitizer's report).
 */
static void on_sigbus(int sig)
{
	static const char msg[] = "opfuzz: SIGBUS storing through a mapping (the mount went away?)\n";

	(void)sig;
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* nothing more to say */
	}
	_exit(1);
}

static void op_truncate(void)
{
	char p[64], full[2][PATH_MAX];
	off_t len = (off_t)pick(300 << 10);
	struct res r[2];

	rand_path(p, sizeof(p));
	for (int s = 0; s < 2; s++)
		snprintf(full[s], sizeof(full[s]), "/proc/self/fd/%d/%s", sides[s].root, p);
	describe("truncate(%s, %lld)", p, (long long)len);
	BOTH(truncate(full[s_], len));
	same(r[0], r[1]);
}

static void op_utimens(void)
{
	char p[64];
	struct timespec ts[2];
	int flags = pick(3) == 0 ? AT_SYMLINK_NOFOLLOW : 0;
	struct res r[2];

	rand_path(p, sizeof(p));
	ts[0] = (struct timespec){ 1600000000 + (time_t)pick(1 << 20), (long)pick(1000000000) };
	ts[1] = pick(4) == 0 ? (struct timespec){ 0, UTIME_OMIT }
			     : (struct timespec){ 1500000000 + (time_t)pick(1 << 20), (long)pick(1000000000) };
	describe("utimensat(%s, %lld.%09ld, %lld.%09ld, %#x)", p, (long long)ts[0].tv_sec, ts[0].tv_nsec,
		 (long long)ts[1].tv_sec, ts[1].tv_nsec, flags);
	BOTH(utimensat(S->root, p, ts, flags));
	same(r[0], r[1]);
}

static void op_mkfifo(void)
{
	char p[64];
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("mkfifo(%s)", p);
	BOTH(mkfifoat(S->root, p, 0644));
	same(r[0], r[1]);
}

static void op_xattr(void)
{
	static const char *names[] = { "user.k0", "user.k1", "user.k2" };
	char p[64], full[2][PATH_MAX], val[2][256], v[64];
	const char *name = names[pick(3)];
	unsigned kind = pick(5);
	int flags = (int)pick(3);	/* 0, XATTR_CREATE, XATTR_REPLACE */
	size_t vlen = pick(sizeof(v));
	struct res r[2];

	rand_path(p, sizeof(p));
	for (int s = 0; s < 2; s++)
		snprintf(full[s], sizeof(full[s]), "/proc/self/fd/%d/%s", sides[s].root, p);
	fill((uint8_t *)v, vlen);
	switch (kind) {
	case 0:
	case 1:
		describe("lsetxattr(%s, %s, %zu bytes, %d)", p, name, vlen, flags);
		BOTH(lsetxattr(full[s_], name, v, vlen, flags));
		same(r[0], r[1]);
		break;
	case 2:
		describe("lremovexattr(%s, %s)", p, name);
		BOTH(lremovexattr(full[s_], name));
		same(r[0], r[1]);
		break;
	case 3:
		describe("lgetxattr(%s, %s)", p, name);
		BOTH(lgetxattr(full[s_], name, val[s_], sizeof(val[s_])));
		same(r[0], r[1]);
		if (r[0].ret > 0 && memcmp(val[0], val[1], (size_t)r[0].ret))
			differ("values differ");
		break;
	default: {
		/* the names, as sets: the order is the file system's */
		describe("llistxattr(%s)", p);
		BOTH(llistxattr(full[s_], val[s_], sizeof(val[s_])));
		same(r[0], r[1]);
		for (int s = 0; s < 2 && r[0].ret > 0; s++)
			for (const char *q = val[s]; q < val[s] + r[s].ret; q += strlen(q) + 1)
				if (strncmp(q, "user.", 5) == 0) {
					const char *o = val[!s];
					int found = 0;
					for (; o < val[!s] + r[!s].ret; o += strlen(o) + 1)
						found |= strcmp(o, q) == 0;
					if (!found)
						differ("%s lists %s, %s does not", sides[s].name, q, sides[!s].name);
				}
		break;
	}
	}
}

/* A random POSIX ACL (access, or a directory's default) in the kernel's xattr form, or its removal. */
static void op_acl(void)
{
	uint8_t acl[4 + 6 * 8];
	size_t n = 4;
	char p[64], full[2][PATH_MAX];
	const char *name = pick(3) ? "system.posix_acl_access" : "system.posix_acl_default";
	int named_user = (int)pick(2), named_group = (int)pick(2), remove = pick(5) == 0;
	struct res r[2];

	/* header: version 2; entries sorted by tag, then id: user_obj, user, group_obj, group, mask, other */
	acl[0] = 2, acl[1] = acl[2] = acl[3] = 0;
#define ENTRY(tag, perm, id)                                                      \
	do {                                                                      \
		uint16_t t_ = (tag), p_ = (uint16_t)(perm);                       \
		uint32_t i_ = (id);                                               \
		memcpy(acl + n, &t_, 2), memcpy(acl + n + 2, &p_, 2), memcpy(acl + n + 4, &i_, 4); \
		n += 8;                                                           \
	} while (0)
	ENTRY(0x01, pick(8), 0xffffffffu);
	if (named_user)
		ENTRY(0x02, pick(8), user_uid != (uid_t)-1 ? user_uid : 1000);
	ENTRY(0x04, pick(8), 0xffffffffu);
	if (named_group)
		ENTRY(0x08, pick(8), user_gid != (gid_t)-1 ? user_gid : 1000);
	if (named_user || named_group)
		ENTRY(0x10, pick(8), 0xffffffffu);
	ENTRY(0x20, pick(8), 0xffffffffu);
#undef ENTRY
	rand_path(p, sizeof(p));
	for (int s = 0; s < 2; s++)
		snprintf(full[s], sizeof(full[s]), "/proc/self/fd/%d/%s", sides[s].root, p);
	if (remove) {
		describe("removexattr(%s, %s)", p, name);
		BOTH(removexattr(full[s_], name));
	} else {
		describe("setxattr(%s, %s, %zu entries)", p, name, (n - 4) / 8);
		BOTH(setxattr(full[s_], name, acl, n, 0));
	}
	same(r[0], r[1]);
}

static void op_stat(void)
{
	char p[64];
	struct stat st[2];
	int flags = pick(2) ? AT_SYMLINK_NOFOLLOW : 0;
	struct res r[2];

	rand_path(p, sizeof(p));
	describe("fstatat(%s, %#x)", p, flags);
	BOTH(fstatat(S->root, p, &st[s_], flags));
	same(r[0], r[1]);
	if (r[0].ret == 0)
		stat_same(&st[0], &st[1]);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory, sorted, joined by '/'; -1 and errno on failure. */
static long list_dir(int root, const char *p, char *out, size_t len)
{
	char *names[64];
	int n = 0, fd = openat(root, p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d;
	struct dirent *e;
	size_t at = 0;

	if (fd < 0)
		return -1;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	while ((e = readdir(d)) && n < 64)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), cmp_str);
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		at += (size_t)snprintf(out + at, at < len ? len - at : 0, "%s/", names[i]);
		free(names[i]);
	}
	return n;
}

static void op_readdir(void)
{
	char p[64], out[2][1024];
	struct res r[2];

	if (pick(4) == 0)
		strcpy(p, ".");
	else
		rand_path(p, sizeof(p));
	describe("readdir(%s)", p);
	BOTH(list_dir(S->root, p, out[s_], sizeof(out[s_])));
	same(r[0], r[1]);
	if (r[0].ret >= 0 && strcmp(out[0], out[1]))
		differ("listings differ: '%s' against '%s'", out[0], out[1]);
}

struct op {
	void (*fn)(void);
	unsigned weight;
};

static const struct op ops[] = {
	{ op_open, 14 },     { op_close, 5 },   { op_write, 14 },  { op_read, 8 },	  { op_ftruncate, 3 },
	{ op_fsync, 2 },     { op_fallocate, 4 }, { op_lseek, 4 },  { op_fstat, 4 },	  { op_copy, 2 },
	{ op_mkdir, 8 },     { op_rmdir, 3 },   { op_unlink, 5 },  { op_rename, 8 },  { op_link, 4 },
	{ op_symlink, 2 },   { op_readlink, 1 }, { op_chmod, 4 },   { op_truncate, 2 }, { op_utimens, 2 },
	{ op_mkfifo, 1 },    { op_xattr, 5 },   { op_stat, 6 },	   { op_readdir, 3 }, { op_chown, 3 },
	{ op_access, 2 },    { op_mmap, 2 },	{ op_acl, 3 },
};

int main(int argc, char **argv)
{
	uint64_t seed = 1;
	long count = 2000;
	unsigned total = 0;
	int c;

	while ((c = getopt(argc, argv, "s:n:u:v")) != -1) {
		switch (c) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			count = strtol(optarg, NULL, 0);
			break;
		case 'u':
			if (sscanf(optarg, "%u:%u", &user_uid, &user_gid) != 2) {
				fprintf(stderr, "opfuzz: bad -u '%s' (UID:GID)\n", optarg);
				return 2;
			}
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			return 2;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "usage: opfuzz [-s SEED] [-n COUNT] [-u UID:GID] [-v] NATIVE MOUNT\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);	/* a FIFO with no reader left: EPIPE, compared like any error */
	signal(SIGBUS, on_sigbus);
	rng = seed * 0x9e3779b97f4a7c15ull + 1;
	wdata = malloc(MAXIO);
	for (int s = 0; s < 2; s++) {
		sides[s].name = s ? "the mount" : "native";
		sides[s].root = open(argv[optind + s], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		sides[s].buf = malloc(MAXIO);
		if (sides[s].root < 0 || !sides[s].buf || !wdata) {
			fprintf(stderr, "opfuzz: cannot open '%s': %s\n", argv[optind + s], strerror(errno));
			return 2;
		}
		for (int k = 0; k < SLOTS; k++)
			sides[s].fd[k] = -1;
		if (list_dir(sides[s].root, ".", (char *)sides[s].buf, MAXIO) != 0) {
			fprintf(stderr, "opfuzz: '%s' is not an empty directory\n", argv[optind + s]);
			return 2;
		}
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		total += ops[i].weight;
	for (step = 1; step <= count; step++) {
		unsigned w = pick(total);
		size_t i = 0;

		as_user = user_uid != (uid_t)-1 && pick(4) == 0;
		while (w >= ops[i].weight)
			w -= ops[i++].weight;
		ops[i].fn();
	}
	for (int s = 0; s < 2; s++)
		for (int k = 0; k < SLOTS; k++)
			if (sides[s].fd[k] >= 0)
				close(sides[s].fd[k]);
	printf("opfuzz: seed %" PRIu64 ": %ld calls agreed\n", seed, count);
	return 0;
}
