/* posix_edge.c -- POSIX edge cases against a (repfs) directory, one line per case
 *
 * usage: posix_edge [-t TREE] [-u UID:GID] DIR [CASE...]
 *        posix_edge -l            lists the cases
 *
 * Runs each case (all by default) in its own subdirectory of DIR and prints
 * "PASS name" or "FAIL name: what went wrong (file:line, errno)". With -t, TREE
 * is the backing directory that DIR is mounted from (DATADIR/tree plus the
 * same relative part), and cases also check that the changes reached it.
 * Cases for an unprivileged user run in a child with -u's ids (default
 * 1000:1000). Exits 1 if any case failed, 2 on usage errors. Must run as root.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
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

#define GIB (1024LL * 1024 * 1024)

static const char *tree_root;	/* backing dir of the current case, or NULL */
static char tree_case[PATH_MAX];
static uid_t user_uid = 1000;
static gid_t user_gid = 1000;
static char *detail;		/* shared with children (MAP_SHARED) */
#define DETAIL_LEN 1024

static int fail_at(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail_at(int line, const char *fmt, ...)
{
	va_list ap;
	int e = errno;
	size_t n;

	if (detail[0])
		return -1;	/* keep the first failure */
	va_start(ap, fmt);
	vsnprintf(detail, DETAIL_LEN, fmt, ap);
	va_end(ap);
	n = strlen(detail);
	snprintf(detail + n, DETAIL_LEN - n, " (line %d, errno %d %s)", line, e, strerror(e));
	return -1;
}

/* cond must hold */
#define CHECK(cond, ...)                                       \
	do {                                                   \
		if (!(cond))                                   \
			return fail_at(__LINE__, __VA_ARGS__); \
	} while (0)
/* a call returning -1/errno must succeed */
#define OK(call) CHECK((call) >= 0, "%s failed", #call)
/* a call must fail with errno e */
#define ERR(call, e)                                                                                   \
	do {                                                                                           \
		errno = 0;                                                                             \
		long long r_ = (long long)(call);                                                      \
		if (r_ != -1 || errno != (e))                                                          \
			return fail_at(__LINE__, "%s returned %lld, want -1 with %s", #call, r_, #e);  \
	} while (0)

static long sys_renameat2(int olddfd, const char *oldp, int newdfd, const char *newp, unsigned flags)
{
	return syscall(SYS_renameat2, olddfd, oldp, newdfd, newp, flags);
}

static int put_file(const char *path, const char *data, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
	size_t len = strlen(data);

	if (fd < 0)
		return -1;
	if (write(fd, data, len) != (ssize_t)len) {
		close(fd);
		return -1;
	}
	return close(fd);
}

/* Reads up to len-1 bytes of path into buf (NUL-terminated); -1 on error. */
static ssize_t get_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n >= 0)
		buf[n] = 0;
	return n;
}

#define CONTENT(path, want)                                                                        \
	do {                                                                                       \
		char b_[4096];                                                                     \
		CHECK(get_file(path, b_, sizeof(b_)) >= 0, "unable to read %s", path);            \
		CHECK(!strcmp(b_, want), "%s holds '%.40s', want '%.40s'", path, b_, want);       \
	} while (0)

/* Backing-store path of rel in the current case ("" if no -t). */
static const char *tb(const char *rel, char *buf, size_t len)
{
	int n;

	if (!tree_root)
		return NULL;
	n = snprintf(buf, len, "%s/%s", tree_case, rel);
	if (n < 0 || (size_t)n >= len)
		return "/nonexistent/path/too/long";
	return buf;
}

static int exists(const char *p)
{
	struct stat st;

	return lstat(p, &st) == 0;
}

/* ---- cases ---- */

static int t_rename_noreplace(void)
{
	OK(put_file("a", "AAA", 0644));
	OK(put_file("b", "BBB", 0644));
	ERR(sys_renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE), EEXIST);
	CONTENT("a", "AAA");
	CONTENT("b", "BBB");
	OK(mkdir("d", 0755));
	ERR(sys_renameat2(AT_FDCWD, "a", AT_FDCWD, "d", RENAME_NOREPLACE), EEXIST);
	OK(sys_renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE));
	CHECK(!exists("a"), "a still exists after rename to c");
	CONTENT("c", "AAA");
	ERR(sys_renameat2(AT_FDCWD, "nosuch", AT_FDCWD, "e", RENAME_NOREPLACE), ENOENT);
	/* plain rename replaces */
	OK(rename("c", "b"));
	CONTENT("b", "AAA");
	CHECK(!exists("c"), "c still exists");
	return 0;
}

static int t_rename_exchange(void)
{
	struct stat st;

	OK(put_file("a", "AAA", 0644));
	OK(put_file("b", "BBB", 0600));
	OK(sys_renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_EXCHANGE));
	CONTENT("a", "BBB");
	CONTENT("b", "AAA");
	OK(stat("a", &st));
	CHECK((st.st_mode & 0777) == 0600, "mode of a after exchange is %o", st.st_mode & 0777);
	OK(mkdir("d1", 0755));
	OK(mkdir("d2", 0700));
	OK(put_file("d1/x", "X", 0644));
	OK(put_file("d2/y", "Y", 0644));
	OK(sys_renameat2(AT_FDCWD, "d1", AT_FDCWD, "d2", RENAME_EXCHANGE));
	CONTENT("d1/y", "Y");
	CONTENT("d2/x", "X");
	/* file <-> directory */
	OK(sys_renameat2(AT_FDCWD, "a", AT_FDCWD, "d1", RENAME_EXCHANGE));
	OK(lstat("a", &st));
	CHECK(S_ISDIR(st.st_mode), "a is not a directory after exchange with d1");
	CONTENT("a/y", "Y");
	CONTENT("d1", "BBB");
	/* across directories */
	OK(sys_renameat2(AT_FDCWD, "b", AT_FDCWD, "d2/x", RENAME_EXCHANGE));
	CONTENT("b", "X");
	CONTENT("d2/x", "AAA");
	ERR(sys_renameat2(AT_FDCWD, "b", AT_FDCWD, "nosuch", RENAME_EXCHANGE), ENOENT);
	ERR(sys_renameat2(AT_FDCWD, "b", AT_FDCWD, "d2/x", RENAME_EXCHANGE | RENAME_NOREPLACE), EINVAL);
	CONTENT("b", "X");
	return 0;
}

static int t_rename_dirs(void)
{
	OK(mkdir("src", 0755));
	OK(put_file("src/f", "F", 0644));
	OK(mkdir("empty", 0755));
	OK(mkdir("full", 0755));
	OK(put_file("full/g", "G", 0644));
	ERR(rename("src", "full"), ENOTEMPTY);
	OK(rename("src", "empty"));
	CONTENT("empty/f", "F");
	CHECK(!exists("src"), "src still exists");
	ERR(rename("empty", "empty/f/sub"), ENOTDIR);
	ERR(rename("full", "full/inside"), EINVAL);
	OK(put_file("file", "x", 0644));
	ERR(rename("file", "full"), EISDIR);
	ERR(rename("full", "file"), ENOTDIR);
	/* rename a directory into a sibling and back */
	OK(rename("full", "empty/full"));
	CONTENT("empty/full/g", "G");
	OK(rename("empty/full", "full2"));
	CONTENT("full2/g", "G");
	return 0;
}

static int t_hardlinks(void)
{
	struct stat a, b;
	char buf[64];
	int fd;

	OK(put_file("a", "one", 0644));
	OK(link("a", "b"));
	OK(mkdir("sub", 0755));
	OK(link("a", "sub/c"));
	OK(stat("a", &a));
	OK(stat("sub/c", &b));
	CHECK(a.st_nlink == 3 && b.st_nlink == 3, "link counts %lu/%lu, want 3", (unsigned long)a.st_nlink,
	      (unsigned long)b.st_nlink);
	CHECK(a.st_ino == b.st_ino, "a and sub/c have different inode numbers %lu %lu", (unsigned long)a.st_ino,
	      (unsigned long)b.st_ino);
	/* read through b so that its pages are cached, then write through a */
	CONTENT("b", "one");
	fd = open("a", O_WRONLY);
	OK(fd);
	OK(pwrite(fd, "TWO", 3, 0));
	OK(close(fd));
	CONTENT("b", "TWO");
	CONTENT("sub/c", "TWO");
	OK(stat("b", &b));
	CHECK(b.st_size == 3, "size of b is %lld", (long long)b.st_size);
	OK(unlink("a"));
	OK(stat("b", &b));
	CHECK(b.st_nlink == 2, "link count of b after unlinking a is %lu, want 2", (unsigned long)b.st_nlink);
	OK(stat("sub/c", &b));
	CHECK(b.st_nlink == 2, "link count of sub/c is %lu, want 2", (unsigned long)b.st_nlink);
	ERR(link("sub", "sublink"), EPERM);
	ERR(link("b", "sub/c"), EEXIST);
	ERR(link("nosuch", "x"), ENOENT);
	/* rename one link onto another name of the same inode: a no-op */
	OK(rename("b", "sub/c"));
	CHECK(exists("b") && exists("sub/c"), "rename onto a hard link of itself removed a name");
	if (tree_root) {
		char p[PATH_MAX + 8];
		OK(lstat(tb("b", p, sizeof(p)), &a));
		OK(lstat(tb("sub/c", p, sizeof(p)), &b));
		/* two names, and (in a repfs tree) the file's entry in the id index beside it (fs/store.h) */
		struct stat ids;
		char idx[PATH_MAX + 8];
		nlink_t want;
		/* the index sits beside the tree's root, some level above the case's directory */
		snprintf(idx, sizeof(idx), "%s", tree_root);
		want = 2;
		for (char *slash; want == 2 && (slash = strrchr(idx, '/')) && slash != idx; *slash = 0) {
			char probe[PATH_MAX + 16];
			snprintf(probe, sizeof(probe), "%s.ids", idx);
			if (stat(probe, &ids) == 0)
				want = 3;
		}
		CHECK(a.st_ino == b.st_ino && a.st_nlink == want,
		      "backing b and sub/c are not one inode with %lu links: %lu", (unsigned long)want,
		      (unsigned long)a.st_nlink);
	}
	(void)buf;
	return 0;
}

/*
 * A FIFO open while its last name goes: fstat still answers, and its mode,
 * owner, times and xattrs still change, as on ext4. (The mount is nodev.)
 */
static int t_unlinked_special(void)
{
	struct timespec ts[2] = { { 1000, 1 }, { 2000, 2 } };
	char val[8];
	struct stat st;
	int fd, fd2;

	OK(mkfifo("pipe", 0640));
	fd = open("pipe", O_RDONLY | O_NONBLOCK);
	OK(fd);
	OK(unlink("pipe"));
	OK(fstat(fd, &st));
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640, "mode of unlinked FIFO %o", st.st_mode);
	CHECK(st.st_nlink == 0, "nlink of unlinked FIFO is %lu", (unsigned long)st.st_nlink);
	OK(fchmod(fd, 0604));
	OK(fstat(fd, &st));
	CHECK((st.st_mode & 07777) == 0604, "mode of unlinked FIFO after fchmod: %o", st.st_mode);
	OK(futimens(fd, ts));
	OK(fstat(fd, &st));
	CHECK(st.st_mtim.tv_sec == 2000 && st.st_mtim.tv_nsec == 2 && st.st_atim.tv_sec == 1000,
	      "times of unlinked FIFO after futimens: %ld.%09ld", (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	if (geteuid() == 0) {
		OK(fchown(fd, 4321, 4322));
		OK(fstat(fd, &st));
		CHECK(st.st_uid == 4321 && st.st_gid == 4322, "owner of unlinked FIFO after fchown: %u:%u",
		      (unsigned)st.st_uid, (unsigned)st.st_gid);
		/* user.* is refused on a FIFO (as on ext4); trusted.* is root's */
		OK(fsetxattr(fd, "trusted.edge", "v1", 2, 0));
		CHECK(fgetxattr(fd, "trusted.edge", val, sizeof(val)) == 2 && !memcmp(val, "v1", 2),
		      "xattr of unlinked FIFO not read back");
		OK(fremovexattr(fd, "trusted.edge"));
		ERR(fgetxattr(fd, "trusted.edge", val, sizeof(val)), ENODATA);
	}
	/* replaced by a rename while open */
	OK(mkfifo("pipe", 0600));
	fd2 = open("pipe", O_RDWR);
	OK(fd2);
	OK(mkfifo("pipe2", 0644));
	OK(rename("pipe2", "pipe"));
	OK(fstat(fd2, &st));
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0600 && st.st_nlink == 0,
	      "replaced FIFO: mode %o, nlink %lu", st.st_mode, (unsigned long)st.st_nlink);
	/* the pipe itself still works */
	CHECK(write(fd2, "x", 1) == 1, "write into the replaced FIFO");
	OK(close(fd2));
	OK(close(fd));
	return 0;
}

static int t_unlinked_open(void)
{
	char buf[64];
	struct stat st;
	int fd, fd2;

	fd = open("gone", O_RDWR | O_CREAT | O_EXCL, 0644);
	OK(fd);
	OK(write(fd, "hello", 5));
	OK(unlink("gone"));
	CHECK(!exists("gone"), "name still there after unlink");
	OK(write(fd, " world", 6));
	CHECK(pread(fd, buf, sizeof(buf), 0) == 11, "pread after unlink");
	buf[11] = 0;
	CHECK(!strcmp(buf, "hello world"), "read back '%s'", buf);
	OK(fstat(fd, &st));
	CHECK(st.st_nlink == 0, "nlink of unlinked file is %lu", (unsigned long)st.st_nlink);
	CHECK(st.st_size == 11, "size of unlinked file is %lld", (long long)st.st_size);
	/* SEEK_DATA and SEEK_HOLE of a file with no name left (they took everything for data) */
	CHECK(lseek(fd, 0, SEEK_DATA) == 0, "SEEK_DATA at 0 of unlinked file");
	CHECK(lseek(fd, 0, SEEK_HOLE) == 11, "SEEK_HOLE at 0 of unlinked file");
	errno = 0;
	CHECK(lseek(fd, 4096, SEEK_HOLE) == -1 && errno == ENXIO, "SEEK_HOLE past the end of unlinked file: errno %d",
	      errno);
	errno = 0;
	CHECK(lseek(fd, 20, SEEK_DATA) == -1 && errno == ENXIO, "SEEK_DATA past the end of unlinked file: errno %d",
	      errno);
	OK(ftruncate(fd, 5));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 5, "size after ftruncate is %lld", (long long)st.st_size);
	OK(fchmod(fd, 0600));
	OK(fsync(fd));
	/* a new file with the same name is a different file */
	OK(put_file("gone", "new", 0644));
	CHECK(pread(fd, buf, sizeof(buf), 0) == 5, "pread of old file");
	CONTENT("gone", "new");
	OK(close(fd));
	/* replaced by rename while open */
	OK(put_file("victim", "old", 0644));
	fd2 = open("victim", O_RDWR);
	OK(fd2);
	OK(put_file("replacement", "fresh", 0644));
	OK(rename("replacement", "victim"));
	OK(pwrite(fd2, "OLD", 3, 0));
	CHECK(pread(fd2, buf, 3, 0) == 3 && !memcmp(buf, "OLD", 3), "old file content");
	CONTENT("victim", "fresh");
	OK(close(fd2));
	/* renamed while open: writes follow the file */
	OK(put_file("moving", "m", 0644));
	fd2 = open("moving", O_WRONLY | O_APPEND);
	OK(fd2);
	OK(mkdir("to", 0755));
	OK(rename("moving", "to/moved"));
	OK(write(fd2, "oved", 4));
	OK(close(fd2));
	CONTENT("to/moved", "moved");
	return 0;
}

static int t_append(void)
{
	int a, b;
	struct stat st;

	a = open("log", O_WRONLY | O_CREAT | O_APPEND, 0644);
	b = open("log", O_WRONLY | O_APPEND);
	OK(a);
	OK(b);
	for (int i = 0; i < 50; i++) {
		OK(write(a, "a", 1));
		OK(write(b, "bb", 2));
	}
	/* pwrite on an O_APPEND fd appends on Linux */
	OK(pwrite(a, "Z", 1, 0));
	OK(close(a));
	OK(close(b));
	OK(stat("log", &st));
	CHECK(st.st_size == 151, "size %lld, want 151", (long long)st.st_size);
	{
		char buf[256];
		CHECK(get_file("log", buf, sizeof(buf)) == 151, "read");
		for (int i = 0; i < 50; i++)
			CHECK(!memcmp(buf + 3 * i, "abb", 3), "at %d: '%.3s'", 3 * i, buf + 3 * i);
		CHECK(buf[150] == 'Z', "last byte '%c'", buf[150]);
	}
	return 0;
}

static int t_fallocate(void)
{
	struct stat st;
	char buf[8192];
	int fd = open("falloc", O_RDWR | O_CREAT, 0644);
	off_t h;

	OK(fd);
	OK(fallocate(fd, 0, 0, 65536));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536, "size after fallocate %lld", (long long)st.st_size);
	OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 65536, 65536));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536, "KEEP_SIZE changed the size to %lld", (long long)st.st_size);
	memset(buf, 'x', sizeof(buf));
	for (int i = 0; i < 8; i++)
		CHECK(pwrite(fd, buf, sizeof(buf), i * 8192) == 8192, "pwrite");
	OK(fsync(fd));
	OK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 16384, 16384));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 65536, "punch changed the size to %lld", (long long)st.st_size);
	CHECK(pread(fd, buf, 8192, 16384) == 8192, "pread");
	for (int i = 0; i < 8192; i++)
		CHECK(buf[i] == 0, "punched byte %d is %d", i, buf[i]);
	CHECK(pread(fd, buf, 1, 32768) == 1 && buf[0] == 'x', "byte after the hole");
	h = lseek(fd, 0, SEEK_HOLE);
	CHECK(h == 16384, "SEEK_HOLE from 0 gives %lld, want 16384", (long long)h);
	h = lseek(fd, 16384, SEEK_DATA);
	CHECK(h == 32768, "SEEK_DATA from 16384 gives %lld, want 32768", (long long)h);
	OK(fallocate(fd, FALLOC_FL_ZERO_RANGE, 40000, 1000));
	CHECK(pread(fd, buf, 1000, 40000) == 1000, "pread");
	for (int i = 0; i < 1000; i++)
		CHECK(buf[i] == 0, "zeroed byte %d is %d", i, buf[i]);
	ERR(fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, 4096), EOPNOTSUPP);
	OK(close(fd));
	return 0;
}

static int t_copy_file_range(void)
{
	static char src[1 << 20], got[300000];
	int in, out;
	loff_t oin = 1000, oout = 5000;
	ssize_t left = 300000;
	struct stat st;

	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (char)(i * 7 + i / 4096);
	in = open("cfr_src", O_RDWR | O_CREAT | O_TRUNC, 0644);
	OK(in);
	CHECK(write(in, src, sizeof(src)) == (ssize_t)sizeof(src), "write src");
	out = open("cfr_dst", O_RDWR | O_CREAT | O_TRUNC, 0644);
	OK(out);
	while (left > 0) {
		ssize_t n = copy_file_range(in, &oin, out, &oout, (size_t)left, 0);
		OK(n);
		CHECK(n > 0, "copy_file_range returned 0 with %zd left", left);
		left -= n;
	}
	CHECK(oin == 301000 && oout == 305000, "offsets %lld %lld", (long long)oin, (long long)oout);
	OK(fstat(out, &st));
	CHECK(st.st_size == 305000, "size of destination %lld", (long long)st.st_size);
	CHECK(pread(out, got, sizeof(got), 5000) == (ssize_t)sizeof(got), "read back");
	CHECK(!memcmp(got, src + 1000, sizeof(got)), "copied bytes differ");
	CHECK(pread(out, got, 5000, 0) == 5000, "read head");
	for (int i = 0; i < 5000; i++)
		CHECK(got[i] == 0, "byte %d before the copy is %d", i, got[i]);
	/* past the end of the source copies nothing */
	oin = sizeof(src) + 10;
	CHECK(copy_file_range(in, &oin, out, NULL, 100, 0) == 0, "copy past EOF");
	OK(close(in));
	OK(close(out));
	return 0;
}

static int t_seek_hole(void)
{
	char buf[4096];
	int fd = open("sparse", O_RDWR | O_CREAT | O_TRUNC, 0644);
	off_t r;

	OK(fd);
	memset(buf, 's', sizeof(buf));
	CHECK(pwrite(fd, buf, 4096, 0) == 4096, "pwrite at 0");
	CHECK(pwrite(fd, buf, 4096, 1 << 20) == 4096, "pwrite at 1 MiB");
	OK(ftruncate(fd, 3 << 20));
	OK(fsync(fd));
	r = lseek(fd, 0, SEEK_DATA);
	CHECK(r == 0, "SEEK_DATA 0 -> %lld", (long long)r);
	r = lseek(fd, 0, SEEK_HOLE);
	CHECK(r == 4096, "SEEK_HOLE 0 -> %lld", (long long)r);
	r = lseek(fd, 4096, SEEK_DATA);
	CHECK(r == 1 << 20, "SEEK_DATA 4096 -> %lld", (long long)r);
	r = lseek(fd, 1 << 20, SEEK_HOLE);
	CHECK(r == (1 << 20) + 4096, "SEEK_HOLE 1M -> %lld", (long long)r);
	ERR(lseek(fd, (2 << 20), SEEK_DATA), ENXIO);
	r = lseek(fd, (2 << 20), SEEK_HOLE);
	CHECK(r == (2 << 20), "SEEK_HOLE in the trailing hole -> %lld", (long long)r);
	ERR(lseek(fd, (4 << 20), SEEK_HOLE), ENXIO);
	ERR(lseek(fd, (4 << 20), SEEK_DATA), ENXIO);
	OK(close(fd));
	return 0;
}

static int t_big_offsets(void)
{
	const off_t at = 5 * GIB + 7;
	char buf[16];
	struct stat st;
	int fd = open("big", O_RDWR | O_CREAT | O_TRUNC, 0644);

	OK(fd);
	CHECK(pwrite(fd, "far away", 8, at) == 8, "pwrite at 5 GiB");
	OK(fstat(fd, &st));
	CHECK(st.st_size == at + 8, "size %lld", (long long)st.st_size);
	CHECK(st.st_blocks < 1024, "a sparse 5 GiB file uses %lld blocks", (long long)st.st_blocks);
	CHECK(pread(fd, buf, 8, at) == 8 && !memcmp(buf, "far away", 8), "read back at 5 GiB");
	CHECK(pread(fd, buf, 8, 4 * GIB) == 8, "read in the hole");
	for (int i = 0; i < 8; i++)
		CHECK(buf[i] == 0, "hole byte %d is %d", i, buf[i]);
	CHECK(lseek(fd, 0, SEEK_DATA) >= 5 * GIB, "SEEK_DATA finds data below 5 GiB");
	OK(ftruncate(fd, 4 * GIB + 1));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 4 * GIB + 1, "size after truncate %lld", (long long)st.st_size);
	CHECK(pwrite(fd, "x", 1, 4 * GIB) == 1, "pwrite at 4 GiB");
	OK(close(fd));
	OK(truncate("big", 4 * GIB + 3));
	OK(stat("big", &st));
	CHECK(st.st_size == 4 * GIB + 3, "size after truncate() %lld", (long long)st.st_size);
	return 0;
}

static int t_truncate(void)
{
	struct stat st;
	char buf[20000];
	int fd;

	OK(put_file("t", "0123456789", 0644));
	OK(truncate("t", 10000));
	OK(stat("t", &st));
	CHECK(st.st_size == 10000, "size %lld", (long long)st.st_size);
	CHECK(get_file("t", buf, sizeof(buf)) == 10000, "read 10000");
	CHECK(!memcmp(buf, "0123456789", 10), "head lost");
	for (int i = 10; i < 10000; i++)
		CHECK(buf[i] == 0, "byte %d after truncate up is %d", i, buf[i]);
	OK(truncate("t", 4));
	CONTENT("t", "0123");
	fd = open("t", O_RDWR);
	OK(fd);
	OK(ftruncate(fd, 0));
	OK(fstat(fd, &st));
	CHECK(st.st_size == 0, "size after ftruncate 0: %lld", (long long)st.st_size);
	OK(pwrite(fd, "ab", 2, 6));
	OK(close(fd));
	CHECK(get_file("t", buf, sizeof(buf)) == 8, "size after write past EOF");
	CHECK(!memcmp(buf, "\0\0\0\0\0\0ab", 8), "content after write past EOF");
	/* O_TRUNC */
	fd = open("t", O_WRONLY | O_TRUNC);
	OK(fd);
	OK(write(fd, "Q", 1));
	OK(close(fd));
	CONTENT("t", "Q");
	ERR(truncate("t", -1), EINVAL);
	ERR(truncate(".", 0), EISDIR);
	return 0;
}

static int t_utimens(void)
{
	struct timespec ts[2] = { { 1000000000, 123456789 }, { 1234567890, 987654321 } };
	struct timespec now;
	struct stat st;

	OK(put_file("u", "u", 0644));
	OK(utimensat(AT_FDCWD, "u", ts, 0));
	OK(stat("u", &st));
	CHECK(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789, "atime %lld.%09ld",
	      (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
	CHECK(st.st_mtim.tv_sec == 1234567890 && st.st_mtim.tv_nsec == 987654321, "mtime %lld.%09ld",
	      (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	/* UTIME_OMIT keeps, UTIME_NOW sets now */
	ts[0].tv_nsec = UTIME_OMIT;
	ts[1].tv_nsec = UTIME_NOW;
	clock_gettime(CLOCK_REALTIME, &now);
	OK(utimensat(AT_FDCWD, "u", ts, 0));
	OK(stat("u", &st));
	CHECK(st.st_atim.tv_sec == 1000000000 && st.st_atim.tv_nsec == 123456789, "UTIME_OMIT changed atime");
	CHECK(llabs((long long)st.st_mtim.tv_sec - now.tv_sec) <= 2, "UTIME_NOW mtime %lld, now %lld",
	      (long long)st.st_mtim.tv_sec, (long long)now.tv_sec);
	ts[0].tv_nsec = 5;
	ts[0].tv_sec = 42;
	ts[1].tv_nsec = UTIME_OMIT;
	{
		struct stat before = st;
		OK(utimensat(AT_FDCWD, "u", ts, 0));
		OK(stat("u", &st));
		CHECK(st.st_atim.tv_sec == 42 && st.st_atim.tv_nsec == 5, "atime %lld.%09ld",
		      (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec);
		CHECK(st.st_mtim.tv_sec == before.st_mtim.tv_sec && st.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
		      "UTIME_OMIT changed mtime");
	}
	/* on a directory, a symlink itself, and through futimens */
	OK(mkdir("ud", 0755));
	ts[0] = (struct timespec){ 1500000000, 1 };
	ts[1] = (struct timespec){ 1500000001, 999999999 };
	OK(utimensat(AT_FDCWD, "ud", ts, 0));
	OK(stat("ud", &st));
	CHECK(st.st_mtim.tv_sec == 1500000001 && st.st_mtim.tv_nsec == 999999999, "dir mtime");
	OK(symlink("u", "ul"));
	OK(utimensat(AT_FDCWD, "ul", ts, AT_SYMLINK_NOFOLLOW));
	OK(lstat("ul", &st));
	CHECK(st.st_mtim.tv_sec == 1500000001 && st.st_mtim.tv_nsec == 999999999, "symlink mtime %lld.%09ld",
	      (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	{
		int fd = open("u", O_RDWR);
		OK(fd);
		ts[1] = (struct timespec){ 1600000000, 55 };
		OK(futimens(fd, ts));
		OK(fstat(fd, &st));
		CHECK(st.st_mtim.tv_sec == 1600000000 && st.st_mtim.tv_nsec == 55, "futimens mtime");
		OK(close(fd));
	}
	/* a write after utimens moves mtime to now */
	{
		int fd = open("u", O_WRONLY | O_APPEND);
		OK(fd);
		OK(write(fd, "!", 1));
		OK(close(fd));
		OK(stat("u", &st));
		CHECK(st.st_mtim.tv_sec > 1600000000, "write did not update mtime");
	}
	/* and the times were set (exactly) in the backing tree too */
	if (tree_root) {
		char p[PATH_MAX + 8];
		struct stat bt;
		OK(lstat(tb("ud", p, sizeof(p)), &bt));
		CHECK(bt.st_mtim.tv_sec == 1500000001 && bt.st_mtim.tv_nsec == 999999999, "tree dir mtime %lld.%09ld",
		      (long long)bt.st_mtim.tv_sec, bt.st_mtim.tv_nsec);
	}
	return 0;
}

static int t_special(void)
{
	struct stat st;

	OK(mkfifo("fifo", 0640));
	OK(lstat("fifo", &st));
	CHECK(S_ISFIFO(st.st_mode) && (st.st_mode & 0777) == 0640, "fifo mode %o", st.st_mode);
	OK(mknod("null", S_IFCHR | 0666, makedev(1, 3)));
	OK(lstat("null", &st));
	CHECK(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3), "char device %o %lx", st.st_mode,
	      (unsigned long)st.st_rdev);
	OK(mknod("blk", S_IFBLK | 0600, makedev(7, 200)));
	OK(lstat("blk", &st));
	CHECK(S_ISBLK(st.st_mode) && st.st_rdev == makedev(7, 200), "block device");
	OK(mknod("sock", S_IFSOCK | 0600, 0));
	OK(lstat("sock", &st));
	CHECK(S_ISSOCK(st.st_mode), "socket node");
	OK(mknod("plain", S_IFREG | 0600, 0));
	OK(lstat("plain", &st));
	CHECK(S_ISREG(st.st_mode) && st.st_size == 0, "mknod S_IFREG");
	ERR(mkfifo("fifo", 0600), EEXIST);
	OK(symlink("a/target/that/does/not/exist", "dangling"));
	{
		char t[256];
		ssize_t n = readlink("dangling", t, sizeof(t));
		CHECK(n == 28 && !memcmp(t, "a/target/that/does/not/exist", 28), "readlink");
		OK(lstat("dangling", &st));
		CHECK(S_ISLNK(st.st_mode) && st.st_size == 28, "symlink size %lld", (long long)st.st_size);
	}
	ERR(symlink("x", "dangling"), EEXIST);
	return 0;
}

static int t_statfs(void)
{
	struct statvfs sv;

	OK(statvfs(".", &sv));
	CHECK(sv.f_bsize > 0 && sv.f_blocks > 0, "statvfs bsize %lu blocks %lu", sv.f_bsize,
	      (unsigned long)sv.f_blocks);
	CHECK(sv.f_bfree <= sv.f_blocks && sv.f_bavail <= sv.f_bfree, "free blocks inconsistent");
	CHECK(!(sv.f_flag & ST_RDONLY), "leader mount reports read-only");
	CHECK(sv.f_namemax >= 255, "namemax %lu", sv.f_namemax);
	return 0;
}

static int t_xattr(void)
{
	char v[256], list[1024];
	ssize_t n;
	int found = 0;

	OK(put_file("x", "x", 0644));
	OK(setxattr("x", "user.color", "blue", 4, XATTR_CREATE));
	ERR(setxattr("x", "user.color", "red", 3, XATTR_CREATE), EEXIST);
	ERR(setxattr("x", "user.nope", "red", 3, XATTR_REPLACE), ENODATA);
	OK(setxattr("x", "user.color", "green", 5, XATTR_REPLACE));
	n = getxattr("x", "user.color", v, sizeof(v));
	CHECK(n == 5 && !memcmp(v, "green", 5), "value '%.*s'", (int)(n > 0 ? n : 0), v);
	CHECK(getxattr("x", "user.color", NULL, 0) == 5, "size query");
	ERR(getxattr("x", "user.color", v, 2), ERANGE);
	OK(setxattr("x", "user.empty", "", 0, 0));
	CHECK(getxattr("x", "user.empty", v, sizeof(v)) == 0, "empty value");
	{
		static char big[3000];
		memset(big, 'b', sizeof(big));
		OK(setxattr("x", "user.big", big, sizeof(big), 0));
		CHECK(getxattr("x", "user.big", v, sizeof(v)) == -1 && errno == ERANGE, "big into small buffer");
	}
	OK(setxattr("x", "trusted.mine", "t", 1, 0));
	n = listxattr("x", list, sizeof(list));
	OK(n);
	for (char *p = list; p < list + n; p += strlen(p) + 1) {
		if (!strcmp(p, "user.color") || !strcmp(p, "user.empty") || !strcmp(p, "user.big") ||
		    !strcmp(p, "trusted.mine"))
			found++;
		CHECK(strncmp(p, "trusted.repfs.", 14), "listxattr shows '%s'", p);
	}
	CHECK(found == 4, "listxattr found %d of 4 names", found);
	CHECK(listxattr("x", NULL, 0) == n, "list size query");
	OK(removexattr("x", "user.big"));
	ERR(removexattr("x", "user.big"), ENODATA);
	ERR(getxattr("x", "user.big", v, sizeof(v)), ENODATA);
	ERR(getxattr("x", "user.never", v, sizeof(v)), ENODATA);
	/* on a directory; user.* is not allowed on symlinks */
	OK(mkdir("xd", 0755));
	OK(setxattr("xd", "user.dir", "d", 1, 0));
	CHECK(getxattr("xd", "user.dir", v, sizeof(v)) == 1, "dir xattr");
	OK(symlink("x", "xl"));
	ERR(lsetxattr("xl", "user.l", "l", 1, 0), EPERM);
	OK(lsetxattr("xl", "trusted.l", "l", 1, 0));
	CHECK(lgetxattr("xl", "trusted.l", v, sizeof(v)) == 1, "symlink trusted xattr");
	/* via a descriptor */
	{
		int fd = open("x", O_RDONLY);
		OK(fd);
		OK(fsetxattr(fd, "user.fd", "f", 1, 0));
		CHECK(fgetxattr(fd, "user.fd", v, sizeof(v)) == 1, "fgetxattr");
		OK(close(fd));
	}
	if (tree_root) {
		char p[PATH_MAX + 8];
		n = getxattr(tb("x", p, sizeof(p)), "user.color", v, sizeof(v));
		CHECK(n == 5 && !memcmp(v, "green", 5), "xattr not in the backing tree");
	}
	return 0;
}

static int t_hidden_id(void)
{
	char v[256], list[4096];
	ssize_t n;
	const char *objs[] = { "f", "d", "." };

	OK(put_file("f", "f", 0644));
	OK(mkdir("d", 0755));
	for (size_t i = 0; i < sizeof(objs) / sizeof(objs[0]); i++) {
		const char *o = objs[i];
		n = listxattr(o, list, sizeof(list));
		OK(n);
		for (char *p = list; p < list + n; p += strlen(p) + 1)
			CHECK(strncmp(p, "trusted.repfs.", 14), "listxattr of '%s' shows '%s'", o, p);
		ERR(getxattr(o, "trusted.repfs.id", v, sizeof(v)), ENODATA);
		ERR(getxattr(o, "trusted.repfs.id", NULL, 0), ENODATA);
		ERR(setxattr(o, "trusted.repfs.id", "0123456789abcdef", 16, 0), EPERM);
		ERR(setxattr(o, "trusted.repfs.id", "0123456789abcdef", 16, XATTR_CREATE), EPERM);
		ERR(setxattr(o, "trusted.repfs.other", "x", 1, 0), EPERM);
		errno = 0;
		CHECK(removexattr(o, "trusted.repfs.id") == -1 && (errno == EPERM || errno == ENODATA),
		      "removexattr trusted.repfs.id on '%s'", o);
	}
	if (tree_root) {
		char p[PATH_MAX + 8];
		/* the id is still there, and still 16 bytes */
		CHECK(getxattr(tb("f", p, sizeof(p)), "trusted.repfs.id", v, sizeof(v)) == 16,
		      "the backing file lost its id");
	}
	return 0;
}

static int t_mmap(void)
{
	const size_t len = 3 * 4096 + 100;
	char *m, buf[64];
	int fd = open("mapped", O_RDWR | O_CREAT | O_TRUNC, 0644);

	OK(fd);
	OK(ftruncate(fd, (off_t)len));
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap");
	memcpy(m, "mapped-head", 11);
	memcpy(m + 2 * 4096 + 5, "mapped-middle", 13);
	memcpy(m + len - 4, "TAIL", 4);
	CHECK(msync(m, len, MS_SYNC) == 0, "msync");
	OK(munmap(m, len));
	OK(close(fd));
	fd = open("mapped", O_RDONLY);
	OK(fd);
	CHECK(pread(fd, buf, 11, 0) == 11 && !memcmp(buf, "mapped-head", 11), "head");
	CHECK(pread(fd, buf, 13, 2 * 4096 + 5) == 13 && !memcmp(buf, "mapped-middle", 13), "middle");
	CHECK(pread(fd, buf, 4, (off_t)len - 4) == 4 && !memcmp(buf, "TAIL", 4), "tail");
	OK(close(fd));
	if (tree_root) {
		char p[PATH_MAX + 8];
		int bfd = open(tb("mapped", p, sizeof(p)), O_RDONLY);
		OK(bfd);
		CHECK(pread(bfd, buf, 13, 2 * 4096 + 5) == 13 && !memcmp(buf, "mapped-middle", 13),
		      "msync'd data not in the backing tree");
		CHECK(pread(bfd, buf, 4, (off_t)len - 4) == 4 && !memcmp(buf, "TAIL", 4), "tail in backing tree");
		close(bfd);
	}
	/* a second mapping sees writes made with write() */
	fd = open("mapped", O_RDWR);
	OK(fd);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap 2");
	OK(pwrite(fd, "WRITTEN", 7, 100));
	CHECK(!memcmp(m + 100, "WRITTEN", 7), "mapping does not see write()");
	memcpy(m + 200, "STORED", 6);
	OK(munmap(m, len));
	OK(fsync(fd));
	OK(close(fd));
	CHECK(get_file("mapped", buf, 8) >= 0, "read");
	{
		char b2[8];
		int f2 = open("mapped", O_RDONLY);
		OK(f2);
		CHECK(pread(f2, b2, 6, 200) == 6 && !memcmp(b2, "STORED", 6), "munmap'd write lost");
		close(f2);
	}
	/* a mapping and a reader see writes made through another, write-only descriptor */
	fd = open("mapped", O_RDWR);
	OK(fd);
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap 3");
	CHECK(m[100] == 'W' && pread(fd, buf, 4, 4096) == 4, "read before the write-only writes");
	{
		int w = open("mapped", O_WRONLY);
		OK(w);
		CHECK(pwrite(w, "WO-1", 4, 100) == 4 && pwrite(w, "WO-2", 4, 4096) == 4, "write-only writes");
		OK(close(w));
	}
	CHECK(!memcmp(m + 100, "WO-1", 4), "mapping does not see a write through a write-only descriptor");
	CHECK(pread(fd, buf, 4, 4096) == 4 && !memcmp(buf, "WO-2", 4),
	      "reader does not see a write through a write-only descriptor");
	OK(munmap(m, len));
	OK(close(fd));
	return 0;
}

static int t_names(void)
{
	char name[300], p[PATH_MAX + 8];
	struct stat st;

	memset(name, 'n', 255);
	name[255] = 0;
	OK(put_file(name, "255", 0644));
	CONTENT(name, "255");
	name[0] = 'D';
	OK(mkdir(name, 0755));
	name[0] = 'S';
	OK(symlink("target", name));
	name[0] = 'R';
	{
		char from[300];
		memset(from, 'n', 255);
		from[255] = 0;
		OK(rename(from, name));
		CONTENT(name, "255");
	}
	memset(name, 'm', 256);
	name[256] = 0;
	ERR(open(name, O_WRONLY | O_CREAT, 0644), ENAMETOOLONG);
	ERR(mkdir(name, 0755), ENAMETOOLONG);
	ERR(symlink("t", name), ENAMETOOLONG);
	ERR(mknod(name, S_IFIFO | 0644, 0), ENAMETOOLONG);
	ERR(stat(name, &st), ENAMETOOLONG);
	name[0] = 'R';
	memset(name + 1, 'n', 254);
	name[255] = 0;
	{
		char to[300];
		memset(to, 'r', 256);
		to[256] = 0;
		ERR(rename(name, to), ENAMETOOLONG);
		ERR(link(name, to), ENAMETOOLONG);
	}
	CONTENT(name, "255");
	/* names with odd bytes */
	OK(put_file("sp ace", "s", 0644));
	OK(put_file("new\nline", "n", 0644));
	OK(put_file("\xff\xfe-bytes", "b", 0644));
	OK(put_file("-dash", "d", 0644));
	OK(put_file("..dots", "d", 0644));
	CONTENT("new\nline", "n");
	if (tree_root)
		CHECK(lstat(tb("\xff\xfe-bytes", p, sizeof(p)), &st) == 0, "odd name not in the tree");
	return 0;
}

/* A directory chain whose deepest file has an absolute path of PATH_MAX - 1 bytes. */
static int t_deep(void)
{
	char abs[PATH_MAX + 64], seg[101], fname[300], buf[64];
	struct stat st;
	int dfd, levels = 0, fd;

	CHECK(getcwd(abs, sizeof(abs)) != NULL, "getcwd");
	memset(seg, 'd', 100);
	seg[100] = 0;
	dfd = open(".", O_RDONLY | O_DIRECTORY);
	OK(dfd);
	while (strlen(abs) + 1 + 100 + 1 + 32 < PATH_MAX - 1) {
		int nfd;
		seg[0] = (char)('a' + levels % 26);
		OK(mkdirat(dfd, seg, 0755));
		nfd = openat(dfd, seg, O_RDONLY | O_DIRECTORY);
		OK(nfd);
		close(dfd);
		dfd = nfd;
		strcat(abs, "/");
		strcat(abs, seg);
		levels++;
	}
	{
		size_t room = PATH_MAX - 1 - strlen(abs) - 1;
		CHECK(room >= 1 && room <= 255, "room %zu", room);
		memset(fname, 'f', room);
		fname[room] = 0;
	}
	strcat(abs, "/");
	strcat(abs, fname);
	CHECK(strlen(abs) == PATH_MAX - 1, "path length %zu", strlen(abs));
	fd = open(abs, O_RDWR | O_CREAT | O_EXCL, 0644);
	OK(fd);
	OK(write(fd, "deep", 4));
	OK(fsync(fd));
	OK(close(fd));
	OK(stat(abs, &st));
	CHECK(st.st_size == 4, "size %lld", (long long)st.st_size);
	CONTENT(abs, "deep");
	OK(setxattr(abs, "user.deep", "yes", 3, 0));
	CHECK(getxattr(abs, "user.deep", buf, sizeof(buf)) == 3, "getxattr on the deep file");
	OK(chmod(abs, 0600));
	OK(truncate(abs, 2));
	/* one byte more is too long for the kernel */
	{
		char longer[PATH_MAX + 64];
		snprintf(longer, sizeof(longer), "%sX", abs);
		ERR(open(longer, O_RDWR | O_CREAT, 0644), ENAMETOOLONG);
	}
	/* deeper still, relative to a descriptor: past PATH_MAX from the mount */
	OK(mkdirat(dfd, "deeper", 0755));
	fd = openat(dfd, "deeper/leaf", O_RDWR | O_CREAT, 0644);
	OK(fd);
	OK(write(fd, "leaf", 4));
	OK(close(fd));
	fd = openat(dfd, "deeper/leaf", O_RDONLY);
	OK(fd);
	CHECK(read(fd, buf, 4) == 4 && !memcmp(buf, "leaf", 4), "leaf content");
	close(fd);
	OK(renameat(dfd, "deeper/leaf", dfd, "deeper/leaf2"));
	OK(fstatat(dfd, "deeper/leaf2", &st, 0));
	close(dfd);
	return 0;
}

/* Runs fn as user_uid:user_gid in a child; its failure detail comes back in detail. */
static int as_user(int (*fn)(void))
{
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return fail_at(__LINE__, "fork");
	if (pid == 0) {
		if (setgroups(0, NULL) || setresgid(user_gid, user_gid, user_gid) ||
		    setresuid(user_uid, user_uid, user_uid)) {
			fail_at(__LINE__, "unable to become %u:%u", user_uid, user_gid);
			_exit(1);
		}
		umask(022);
		_exit(fn() ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return fail_at(__LINE__, "waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		if (!detail[0])
			snprintf(detail, DETAIL_LEN, "child died (status %d)", status);
		return -1;
	}
	return 0;
}

static int owner_is(const char *path, uid_t u, gid_t g)
{
	struct stat st;

	if (lstat(path, &st))
		return 0;
	return st.st_uid == u && st.st_gid == g;
}

static int user_creates(void)
{
	OK(put_file("pub/ufile", "mine", 0644));
	OK(mkdir("pub/udir", 0755));
	OK(symlink("ufile", "pub/ulink"));
	OK(mkfifo("pub/ufifo", 0600));
	OK(put_file("pub/udir/inner", "in", 0600));
	OK(link("pub/ufile", "pub/ufile.link"));
	OK(rename("pub/ufile.link", "pub/ufile.moved"));
	OK(chmod("pub/ufile", 0640));
	OK(setxattr("pub/ufile", "user.by", "user", 4, 0));
	{
		struct timespec ts[2] = { { 1000, 1 }, { 2000, 2 } };
		OK(utimensat(AT_FDCWD, "pub/ufile", ts, 0));
	}
	/* setgid directory: the new file takes the directory's group */
	OK(put_file("sgid/ufile", "g", 0644));
	OK(mkdir("sgid/usub", 0755));
	/* a write by a caller without CAP_FSETID drops setuid, and setgid of a group-executable
	 * file: through a write-only descriptor and through a read-write one */
	for (int rw = 0; rw < 2; rw++) {
		struct stat st;
		int fd;
		OK(put_file("pub/usuid", "s", 0644));
		OK(chmod("pub/usuid", 06755));
		fd = open("pub/usuid", rw ? O_RDWR : O_WRONLY);
		OK(fd);
		CHECK(pwrite(fd, "x", 1, 0) == 1, "write to a setuid file");
		OK(fstat(fd, &st));
		close(fd);
		CHECK((st.st_mode & 07777) == 0755, "mode %o after a write (%s)", st.st_mode & 07777,
		      rw ? "O_RDWR" : "O_WRONLY");
		OK(stat("pub/usuid", &st));
		CHECK((st.st_mode & 07777) == 0755, "mode %o of the name after a write (%s)", st.st_mode & 07777,
		      rw ? "O_RDWR" : "O_WRONLY");
	}
	return 0;
}

/* The owner, without CAP_FSETID, writes and truncates its setuid+setgid file: both bits go each time. */
static int user_kills(void)
{
	static const struct {
		int flags, trunc;
		const char *what;
	} w[] = {
		{ O_RDWR, 0, "a write through a read-write open" },
		{ O_WRONLY, 0, "a write through a write-only open" },
		{ O_WRONLY | O_APPEND, 0, "an append" },
		{ O_RDWR, 1, "ftruncate" },
		{ O_RDONLY, 2, "truncate" },
		{ O_RDWR, 3, "fallocate" },
		{ O_RDWR, 4, "fallocate (keep size)" },
		{ O_RDWR, 5, "copy_file_range into it" },
	};
	struct stat st;

	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		int fd;
		OK(chmod("pub/ukill", 06775));
		OK(stat("pub/ukill", &st));
		CHECK((st.st_mode & 07777) == 06775, "chmod 6775 by the owner gave %o", st.st_mode & 07777);
		fd = open("pub/ukill", w[i].flags);
		OK(fd);
		if (w[i].trunc == 1)
			OK(ftruncate(fd, 1));
		else if (w[i].trunc == 2)
			OK(truncate("pub/ukill", 2));
		else if (w[i].trunc == 3)
			OK(fallocate(fd, 0, 0, 8192));
		else if (w[i].trunc == 4)
			OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 16384));
		else if (w[i].trunc == 5) {
			int src = open("pub/ucopysrc", O_RDONLY);
			off_t a = 0, b = 0;
			OK(src);
			CHECK(copy_file_range(src, &a, fd, &b, 2, 0) == 2, "copy_file_range failed");
			close(src);
		} else
			CHECK(pwrite(fd, "k", 1, 0) == 1, "%s failed", w[i].what);
		close(fd);
		OK(stat("pub/ukill", &st));
		CHECK((st.st_mode & 07777) == 0775, "%s by the owner left mode %o", w[i].what, st.st_mode & 07777);
		/* no preallocated blocks stay inside the size: where SEEK_HOLE finds them depends on the page cache */
		if (w[i].trunc >= 3)
			OK(truncate("pub/ukill", 1));
	}
	/* a descriptor that wrote while the file had nothing to drop: the bits set after still go */
	{
		int fd = open("pub/ukill", O_WRONLY);
		OK(fd);
		CHECK(pwrite(fd, "a", 1, 0) == 1, "a first write failed");
		OK(fchmod(fd, 06775));
		CHECK(pwrite(fd, "b", 1, 0) == 1, "a second write failed");
		OK(fstat(fd, &st));
		close(fd);
		CHECK((st.st_mode & 07777) == 0775, "a write after fchmod 6775 left mode %o", st.st_mode & 07777);
	}
	/* chown(-1, -1) by an owner outside the file's group drops setgid, group execute or not */
	OK(chown("pub/usgid", (uid_t)-1, (gid_t)-1));
	OK(stat("pub/usgid", &st));
	CHECK((st.st_mode & 07777) == 0740, "chown(-1, -1) by its owner, outside its group, of a 2740 file left %o",
	      st.st_mode & 07777);
	/* so does a chown that names the owner's own group (fuzz seed 41600), and one that names the owner */
	OK(chown("pub/usgid2", (uid_t)-1, user_gid));
	OK(stat("pub/usgid2", &st));
	CHECK((st.st_mode & 07777) == 0740 && st.st_gid == user_gid,
	      "chown to its group by its owner, outside the old group, of a 2740 file left %o, group %u",
	      st.st_mode & 07777, (unsigned)st.st_gid);
	OK(chown("pub/usgid3", user_uid, (gid_t)-1));
	OK(stat("pub/usgid3", &st));
	CHECK((st.st_mode & 07777) == 0740, "chown to its owner by its owner, outside its group, of a 2740 file left %o",
	      st.st_mode & 07777);
	return 0;
}

static int t_user_owner(void)
{
	struct stat st;
	char p[PATH_MAX + 8];
	const char *names[] = { "pub/ufile", "pub/udir", "pub/ulink", "pub/ufifo", "pub/udir/inner" };

	OK(mkdir("pub", 0777));
	OK(chmod("pub", 01777));
	OK(mkdir("sgid", 0777));
	OK(chown("sgid", 0, 1234));
	OK(chmod("sgid", 02777));
	if (as_user(user_creates))
		return -1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		CHECK(owner_is(names[i], user_uid, user_gid), "'%s' is not owned by %u:%u", names[i], user_uid,
		      user_gid);
		if (tree_root)
			CHECK(owner_is(tb(names[i], p, sizeof(p)), user_uid, user_gid),
			      "backing '%s' is not owned by %u:%u", names[i], user_uid, user_gid);
	}
	OK(stat("pub/ufile", &st));
	CHECK((st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
	CHECK(owner_is("sgid/ufile", user_uid, 1234), "file in setgid dir not in group 1234");
	OK(stat("sgid/usub", &st));
	CHECK(st.st_gid == 1234 && (st.st_mode & S_ISGID), "dir in setgid dir: gid %u mode %o", st.st_gid,
	      st.st_mode);
	/* root gives a file away */
	OK(put_file("given", "g", 0644));
	OK(chown("given", 4321, 8765));
	CHECK(owner_is("given", 4321, 8765), "chown by root");
	OK(lchown("pub/ulink", 0, 0));
	CHECK(owner_is("pub/ulink", 0, 0), "lchown of a symlink");
	CHECK(owner_is("pub/ufile", user_uid, user_gid), "lchown followed the link");
	/* root (CAP_FSETID) writes a setuid file: the bits stay */
	OK(put_file("rsuid", "s", 0644));
	OK(chmod("rsuid", 06755));
	{
		int fd = open("rsuid", O_WRONLY);
		OK(fd);
		CHECK(pwrite(fd, "x", 1, 0) == 1, "write to a setuid file");
		close(fd);
		OK(stat("rsuid", &st));
		CHECK((st.st_mode & 07777) == 06755, "a write by root changed the mode to %o", st.st_mode & 07777);
	}
	/* any write drops security.capability, also one set after the descriptor's first write */
	{
		/* VFS_CAP_REVISION_2, no effective bit; permitted: CAP_NET_BIND_SERVICE */
		static const uint32_t cap[5] = { 0x02000000, 1u << 10, 0, 0, 0 };
		int fd;
		OK(put_file("capf", "c", 0755));
		OK(setxattr("capf", "security.capability", cap, sizeof(cap), 0));
		fd = open("capf", O_WRONLY);
		OK(fd);
		CHECK(pwrite(fd, "x", 1, 0) == 1, "write to a file with capabilities");
		CHECK(getxattr("capf", "security.capability", NULL, 0) < 0 && errno == ENODATA,
		      "a write left security.capability");
		OK(setxattr("capf", "security.capability", cap, sizeof(cap), 0));
		CHECK(getxattr("capf", "security.capability", NULL, 0) == (ssize_t)sizeof(cap),
		      "security.capability not set again");
		CHECK(pwrite(fd, "y", 1, 1) == 1, "a second write to a file with capabilities");
		close(fd);
		CHECK(getxattr("capf", "security.capability", NULL, 0) < 0 && errno == ENODATA,
		      "a write through a descriptor that wrote before left security.capability");
		/* and a chown, of a file just made too (the kernel asks whether it has one first) */
		OK(put_file("capc", "c", 0755));
		OK(setxattr("capc", "security.capability", cap, sizeof(cap), 0));
		CHECK(getxattr("capc", "security.capability", NULL, 0) == (ssize_t)sizeof(cap),
		      "security.capability of a new file not set");
		OK(chown("capc", 0, 0));
		CHECK(getxattr("capc", "security.capability", NULL, 0) < 0 && errno == ENODATA,
		      "a chown left security.capability");
	}
	/* a write or truncate by the owner clears them */
	OK(put_file("pub/ukill", "k", 0644));
	OK(chown("pub/ukill", user_uid, user_gid));
	OK(put_file("pub/ucopysrc", "cc", 0644));
	OK(put_file("pub/usgid", "g", 0644));
	OK(chown("pub/usgid", user_uid, 0));
	OK(chmod("pub/usgid", 02740));
	OK(put_file("pub/usgid2", "g", 0644));
	OK(chown("pub/usgid2", user_uid, 0));
	OK(chmod("pub/usgid2", 02740));
	OK(put_file("pub/usgid3", "g", 0644));
	OK(chown("pub/usgid3", user_uid, 0));
	OK(chmod("pub/usgid3", 02740));
	if (as_user(user_kills))
		return -1;
	/* chown clears setuid/setgid of a regular file */
	OK(put_file("suid", "s", 0644));
	OK(chmod("suid", 06755));
	OK(chown("suid", 1, 1));
	OK(stat("suid", &st));
	CHECK((st.st_mode & 06000) == 0, "chown kept setuid/setgid: %o", st.st_mode & 07777);
	/* so does a chown that changes nothing (-1, -1), by root too; setgid without group execute stays */
	OK(chmod("suid", 06755));
	OK(chown("suid", (uid_t)-1, (gid_t)-1));
	OK(stat("suid", &st));
	CHECK((st.st_mode & 07777) == 0755, "chown(-1, -1) of a 6755 file left %o", st.st_mode & 07777);
	OK(chmod("suid", 02745));
	OK(chown("suid", (uid_t)-1, (gid_t)-1));
	OK(stat("suid", &st));
	CHECK((st.st_mode & 07777) == 02745, "chown(-1, -1) of a 2745 file left %o", st.st_mode & 07777);
	return 0;
}

static int user_denied(void)
{
	struct timespec ts[2] = { { 1, 0 }, { 2, 0 } };
	char v[8];

	ERR(open("rootfile", O_WRONLY), EACCES);
	ERR(open("rootfile", O_RDWR | O_TRUNC), EACCES);
	/*
	 * A chown that changes nothing: fine, but not of a setuid file (its drop
	 * is a chmod): EPERM on ext4; on the mount without the writeback cache
	 * the kernel does not say it is a chown, and the daemon changes nothing
	 * (README, limits). The setuid bit must stay either way.
	 */
	OK(chown("rootfile", (uid_t)-1, (gid_t)-1));
	CHECK(chown("rootsuid", (uid_t)-1, (gid_t)-1) == 0 || errno == EPERM,
	      "chown(-1, -1) of root's setuid file: errno %d", errno);
	CHECK(chown("rootsgid", (uid_t)-1, (gid_t)-1) == 0 || errno == EPERM,
	      "chown(-1, -1) of root's setgid file: errno %d", errno);
	ERR(truncate("rootfile", 0), EACCES);
	ERR(open("secret", O_RDONLY), EACCES);
	ERR(unlink("rootfile"), EACCES);
	ERR(rename("rootfile", "other"), EACCES);
	ERR(mkdir("newdir", 0755), EACCES);
	ERR(open("newfile", O_WRONLY | O_CREAT, 0644), EACCES);
	ERR(symlink("x", "newlink"), EACCES);
	{
		/* fs.protected_hardlinks refuses before the directory's permission is checked */
		FILE *f = fopen("/proc/sys/fs/protected_hardlinks", "r");
		int prot = 0, e;
		if (f) {
			if (fscanf(f, "%d", &prot) != 1)
				prot = 0;
			fclose(f);
		}
		e = prot ? EPERM : EACCES;
		ERR(link("rootfile", "newlink"), e);
	}
	ERR(chmod("rootfile", 0666), EPERM);
	ERR(chown("rootfile", user_uid, user_gid), EPERM);
	ERR(utimensat(AT_FDCWD, "rootfile", ts, 0), EPERM);
	ERR(utimensat(AT_FDCWD, "rootfile", NULL, 0), EACCES);
	ERR(setxattr("rootfile", "user.x", "x", 1, 0), EACCES);
	ERR(setxattr("rootfile", "trusted.x", "x", 1, 0), EPERM);
	ERR(removexattr("rootfile", "user.keep"), EACCES);
	ERR(getxattr("rootfile", "trusted.keep", v, sizeof(v)), ENODATA);
	{
		/* trusted.* names are not listed to unprivileged users */
		char list[1024];
		ssize_t n = listxattr("rootfile", list, sizeof(list));
		OK(n);
		for (char *p = list; p < list + n; p += strlen(p) + 1)
			CHECK(strncmp(p, "trusted.", 8), "listxattr shows '%s' to an unprivileged user", p);
	}
	ERR(rmdir("lockeddir"), EACCES);
	ERR(open("lockeddir/inside", O_RDONLY), EACCES);
	/* sticky directory: another user's file cannot be removed or renamed */
	ERR(unlink("sticky/rootsfile"), EPERM);
	ERR(rename("sticky/rootsfile", "sticky/mine"), EPERM);
	/* but one's own can */
	OK(put_file("sticky/mine", "m", 0644));
	OK(unlink("sticky/mine"));
	/* reading a 0644 file works */
	CONTENT("rootfile", "root's");
	return 0;
}

static int t_user_denied(void)
{
	struct stat before, after;
	char v[16];

	OK(put_file("rootfile", "root's", 0644));
	OK(setxattr("rootfile", "user.keep", "k", 1, 0));
	OK(setxattr("rootfile", "trusted.keep", "k", 1, 0));
	OK(put_file("secret", "s", 0600));
	OK(put_file("rootsuid", "s", 0755));
	OK(chmod("rootsuid", 04755));
	OK(put_file("rootsgid", "s", 0644));
	OK(chmod("rootsgid", 02740));
	OK(mkdir("lockeddir", 0700));
	OK(put_file("lockeddir/inside", "i", 0644));
	OK(mkdir("sticky", 0777));
	OK(chmod("sticky", 01777));
	OK(put_file("sticky/rootsfile", "r", 0644));
	OK(chmod(".", 0755));
	OK(stat("rootfile", &before));
	if (as_user(user_denied))
		return -1;
	OK(stat("rootfile", &after));
	CHECK(before.st_mode == after.st_mode && before.st_uid == after.st_uid && before.st_size == after.st_size &&
		      before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec,
	      "denied operations changed rootfile");
	CONTENT("rootfile", "root's");
	OK(stat("rootsuid", &after));
	CHECK((after.st_mode & 07777) == 04755, "a refused chown(-1, -1) left mode %o", after.st_mode & 07777);
	OK(stat("rootsgid", &after));
	CHECK((after.st_mode & 07777) == 02740, "a refused chown(-1, -1) of a setgid file left mode %o",
	      after.st_mode & 07777);
	CHECK(getxattr("rootfile", "user.keep", v, sizeof(v)) == 1, "user.keep lost");
	CHECK(exists("sticky/rootsfile") && exists("lockeddir/inside"), "denied operations removed files");
	CHECK(!exists("newdir") && !exists("newfile") && !exists("newlink") && !exists("other"),
	      "denied operations created files");
	return 0;
}

static int t_misc(void)
{
	struct stat st;
	int fd;

	OK(mkdir("m", 0755));
	ERR(mkdir("m", 0755), EEXIST);
	OK(put_file("m/f", "f", 0644));
	ERR(rmdir("m"), ENOTEMPTY);
	ERR(unlink("m"), EISDIR);
	ERR(rmdir("m/f"), ENOTDIR);
	ERR(open("m/f", O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
	ERR(open("m/f/x", O_WRONLY | O_CREAT, 0644), ENOTDIR);
	ERR(open("nosuch/x", O_WRONLY | O_CREAT, 0644), ENOENT);
	ERR(open("m", O_WRONLY), EISDIR);
	/* umask applies to creation modes */
	umask(027);
	fd = open("masked", O_WRONLY | O_CREAT, 0777);
	umask(0);
	OK(fd);
	OK(close(fd));
	OK(stat("masked", &st));
	CHECK((st.st_mode & 0777) == 0750, "mode under umask 027 is %o", st.st_mode & 0777);
	OK(chmod("masked", 04751));
	OK(stat("masked", &st));
	CHECK((st.st_mode & 07777) == 04751, "setuid mode %o", st.st_mode & 07777);
	/* fsync and fdatasync of files and directories */
	fd = open("masked", O_RDWR);
	OK(fd);
	OK(fdatasync(fd));
	OK(fsync(fd));
	OK(close(fd));
	fd = open("m", O_RDONLY | O_DIRECTORY);
	OK(fd);
	OK(fsync(fd));
	OK(close(fd));
	/* O_SYNC writes */
	fd = open("osync", O_WRONLY | O_CREAT | O_SYNC, 0644);
	OK(fd);
	OK(write(fd, "sync", 4));
	OK(close(fd));
	CONTENT("osync", "sync");
	/* readdir sees every entry exactly once */
	OK(mkdir("many", 0755));
	for (int i = 0; i < 300; i++) {
		char n[32];
		snprintf(n, sizeof(n), "many/entry-%03d", i);
		OK(put_file(n, "", 0644));
	}
	{
		DIR *d = opendir("many");
		struct dirent *e;
		int count = 0;
		CHECK(d != NULL, "opendir");
		while ((e = readdir(d)))
			if (strncmp(e->d_name, "entry-", 6) == 0)
				count++;
		closedir(d);
		CHECK(count == 300, "readdir saw %d of 300 entries", count);
	}
	return 0;
}

/* What the mount shows must be what is stored (the tree), for every kind of change. */
static int t_mtime_coherence(void)
{
	static const char *const what[] = { "overwrite with O_TRUNC", "append", "truncate then write",
					     "write+fsync, still open", "ftruncate", "directory entries change" };
	char bad[DETAIL_LEN] = "";
	struct stat m, b;
	char p[PATH_MAX + 8];
	int fd;

	if (!tree_root)
		return 0;
	for (int i = 0; i < 6; i++) {
		char name[32];
		int open_fd = -1;
		snprintf(name, sizeof(name), "c%d", i);
		OK(put_file(name, "first", 0644));
		usleep(20000);	/* let the clock move on: each change must set a new mtime */
		switch (i) {
		case 0:
			OK(put_file(name, "second", 0644));
			break;
		case 1:
			fd = open(name, O_WRONLY | O_APPEND);
			OK(fd);
			OK(write(fd, "more", 4));
			OK(close(fd));
			break;
		case 2:
			OK(truncate(name, 2));
			fd = open(name, O_WRONLY);
			OK(fd);
			OK(pwrite(fd, "xy", 2, 10));
			OK(close(fd));
			break;
		case 3:
			open_fd = open(name, O_RDWR);
			OK(open_fd);
			OK(pwrite(open_fd, "sync", 4, 0));
			OK(fsync(open_fd));
			break;
		case 4:
			fd = open(name, O_RDWR);
			OK(fd);
			OK(ftruncate(fd, 1));
			OK(close(fd));
			break;
		case 5:
			OK(mkdir("cdir", 0755));
			OK(put_file("cdir/x", "x", 0644));
			OK(rename("cdir/x", "cdir/y"));
			OK(unlink("cdir/y"));
			snprintf(name, sizeof(name), "cdir");
			break;
		}
		OK(open_fd >= 0 ? fstat(open_fd, &m) : lstat(name, &m));
		OK(lstat(tb(name, p, sizeof(p)), &b));
		if (open_fd >= 0)
			close(open_fd);
		if (m.st_mtim.tv_sec != b.st_mtim.tv_sec || m.st_mtim.tv_nsec != b.st_mtim.tv_nsec ||
		    m.st_size != b.st_size) {
			size_t n = strlen(bad);
			snprintf(bad + n, sizeof(bad) - n, "%s%s: mount %lld.%09ld size %lld, tree %lld.%09ld size %lld",
				 n ? "; " : "", what[i], (long long)m.st_mtim.tv_sec, m.st_mtim.tv_nsec,
				 (long long)m.st_size, (long long)b.st_mtim.tv_sec, b.st_mtim.tv_nsec,
				 (long long)b.st_size);
		}
	}
	errno = 0;
	CHECK(!bad[0], "the mount shows other times than the tree stores: %s", bad);
	return 0;
}

struct tcase {
	const char *name;
	int (*fn)(void);
};

static const struct tcase cases[] = {
	{ "rename_noreplace", t_rename_noreplace },
	{ "rename_exchange", t_rename_exchange },
	{ "rename_dirs", t_rename_dirs },
	{ "hardlinks", t_hardlinks },
	{ "unlinked_open", t_unlinked_open },
	{ "unlinked_special", t_unlinked_special },
	{ "append", t_append },
	{ "fallocate", t_fallocate },
	{ "copy_file_range", t_copy_file_range },
	{ "seek_hole", t_seek_hole },
	{ "big_offsets", t_big_offsets },
	{ "truncate", t_truncate },
	{ "utimens", t_utimens },
	{ "special_files", t_special },
	{ "statfs", t_statfs },
	{ "xattr", t_xattr },
	{ "hidden_id", t_hidden_id },
	{ "mmap", t_mmap },
	{ "names", t_names },
	{ "deep_path", t_deep },
	{ "user_owner", t_user_owner },
	{ "user_denied", t_user_denied },
	{ "misc", t_misc },
	{ "mtime_coherence", t_mtime_coherence },
};

static int wanted(const char *name, int argc, char **argv, int first)
{
	if (first >= argc)
		return 1;
	for (int i = first; i < argc; i++)
		if (!strcmp(argv[i], name))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir;
	int opt, failures = 0, ran = 0, top;

	while ((opt = getopt(argc, argv, "lt:u:")) != -1) {
		switch (opt) {
		case 'l':
			for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
				printf("%s\n", cases[i].name);
			return 0;
		case 't':
			tree_root = optarg;
			break;
		case 'u':
			if (sscanf(optarg, "%u:%u", &user_uid, &user_gid) != 2) {
				fprintf(stderr, "posix_edge: bad -u '%s'\n", optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr, "usage: posix_edge [-t TREE] [-u UID:GID] DIR [CASE...]\n");
			return 2;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "usage: posix_edge [-t TREE] [-u UID:GID] DIR [CASE...]\n");
		return 2;
	}
	dir = argv[optind];
	detail = mmap(NULL, DETAIL_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (detail == MAP_FAILED)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	umask(0);
	top = open(dir, O_RDONLY | O_DIRECTORY);
	if (top < 0) {
		fprintf(stderr, "posix_edge: unable to open '%s': %s\n", dir, strerror(errno));
		return 2;
	}
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		int r;

		if (!wanted(c->name, argc, argv, optind + 1))
			continue;
		ran++;
		detail[0] = 0;
		if (fchdir(top) || (mkdir(c->name, 0755) && errno != EEXIST) || chdir(c->name)) {
			printf("FAIL %s: unable to enter '%s/%s': %s\n", c->name, dir, c->name, strerror(errno));
			failures++;
			continue;
		}
		if (tree_root)
			snprintf(tree_case, sizeof(tree_case), "%s/%s", tree_root, c->name);
		r = c->fn();
		umask(0);
		if (r) {
			printf("FAIL %s: %s\n", c->name, detail);
			failures++;
		} else {
			printf("PASS %s\n", c->name);
		}
	}
	close(top);
	if (!ran) {
		fprintf(stderr, "posix_edge: no such case\n");
		return 2;
	}
	return failures ? 1 : 0;
}
