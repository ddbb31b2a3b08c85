/* repl_erofs.c -- every mutating call on a follower's mount must fail with EROFS
 *
 * usage: repl_erofs DIR
 *
 * DIR is a follower's mount holding what the leader made: a file "f"
 * (content "hello\n", xattr user.x = "1"), an empty directory "d", a
 * directory "d2" holding a file "g", a symlink "s" -> "f" and a fifo "p".
 * Tries each mutating call and prints "ok CALL" when it failed with EROFS, or
 * "FAIL CALL: ..." otherwise; then checks that reads work and that statvfs
 * reports ST_RDONLY. Exit 0 if everything was as expected, 1 otherwise.
 *
 * write(), fallocate(), ftruncate() and copy_file_range() need a descriptor
 * open for writing, which the follower never hands out (the opens for
 * writing are among the calls tried); they are tried on a read-only
 * descriptor too, where the kernel refuses them (EBADF) before repfs sees
 * them: what matters is that they change nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

static int failures;

static void expect(const char *what, long r, int want_errno)
{
	int e = errno;

	if (r >= 0) {
		printf("FAIL %s: succeeded, expected %s\n", what, strerror(want_errno));
		failures++;
		if (r > 2 && strstr(what, "open"))
			close((int)r);
	} else if (e != want_errno) {
		printf("FAIL %s: %s, expected %s\n", what, strerror(e), strerror(want_errno));
		failures++;
	} else {
		printf("ok %s\n", what);
	}
}

static void expect_ok(const char *what, long r)
{
	if (r < 0) {
		printf("FAIL %s: %s, expected success\n", what, strerror(errno));
		failures++;
	} else {
		printf("ok %s\n", what);
	}
}

int main(int argc, char **argv)
{
	struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 0 } };
	struct statvfs sv;
	char buf[64];
	int fd;

	if (argc != 2 || chdir(argv[1]) < 0) {
		fprintf(stderr, "usage: repl_erofs DIR\n");
		return 2;
	}

	/* creating */
	expect("open(new, O_CREAT|O_WRONLY)", open("new", O_CREAT | O_WRONLY, 0644), EROFS);
	expect("open(new, O_CREAT|O_EXCL|O_RDONLY)", open("new", O_CREAT | O_EXCL | O_RDONLY, 0644), EROFS);
	expect("creat(d/new)", creat("d/new", 0600), EROFS);
	expect("mkdir", mkdir("newdir", 0755), EROFS);
	expect("mkdir inside a directory", mkdir("d/newdir", 0755), EROFS);
	expect("symlink", symlink("f", "newlink"), EROFS);
	expect("link", link("f", "newhard"), EROFS);
	expect("mknod S_IFREG", mknod("newreg", S_IFREG | 0644, 0), EROFS);
	expect("mkfifo", mkfifo("newfifo", 0644), EROFS);
	expect("mknod S_IFCHR", mknod("newchr", S_IFCHR | 0600, makedev(1, 3)), EROFS);

	/* opening for a change */
	expect("open(f, O_WRONLY)", open("f", O_WRONLY), EROFS);
	expect("open(f, O_RDWR)", open("f", O_RDWR), EROFS);
	expect("open(f, O_WRONLY|O_APPEND)", open("f", O_WRONLY | O_APPEND), EROFS);
	expect("open(f, O_RDONLY|O_TRUNC)", open("f", O_RDONLY | O_TRUNC), EROFS);
	expect("open(f, O_WRONLY|O_TRUNC)", open("f", O_WRONLY | O_TRUNC), EROFS);
	expect("open(f, O_CREAT|O_WRONLY) of an existing file", open("f", O_CREAT | O_WRONLY, 0644), EROFS);
	expect("open(d2/g, O_RDWR|O_SYNC)", open("d2/g", O_RDWR | O_SYNC), EROFS);

	/* removing and renaming */
	expect("unlink", unlink("f"), EROFS);
	expect("unlink of a symlink", unlink("s"), EROFS);
	expect("unlink of a fifo", unlink("p"), EROFS);
	expect("rmdir", rmdir("d"), EROFS);
	expect("rename", rename("f", "renamed"), EROFS);
	expect("rename over an existing file", rename("f", "d2/g"), EROFS);
	expect("rename of a directory", rename("d", "d-renamed"), EROFS);
	expect("renameat2 RENAME_NOREPLACE", renameat2(AT_FDCWD, "f", AT_FDCWD, "renamed", RENAME_NOREPLACE), EROFS);
	expect("renameat2 RENAME_EXCHANGE", renameat2(AT_FDCWD, "f", AT_FDCWD, "d2/g", RENAME_EXCHANGE), EROFS);

	/* attributes */
	expect("chmod", chmod("f", 0600), EROFS);
	expect("chmod of a directory", chmod("d", 0700), EROFS);
	expect("chown", chown("f", 1000, 1000), EROFS);
	expect("lchown of a symlink", lchown("s", 1000, 1000), EROFS);
	expect("truncate", truncate("f", 1), EROFS);
	expect("truncate to a larger size", truncate("f", 1 << 20), EROFS);
	expect("utimensat", utimensat(AT_FDCWD, "f", ts, 0), EROFS);
	expect("utimensat(NULL) (touch)", utimensat(AT_FDCWD, "f", NULL, 0), EROFS);
	expect("utimensat AT_SYMLINK_NOFOLLOW", utimensat(AT_FDCWD, "s", ts, AT_SYMLINK_NOFOLLOW), EROFS);
	expect("setxattr", setxattr("f", "user.y", "2", 1, 0), EROFS);
	expect("setxattr XATTR_REPLACE", setxattr("f", "user.x", "3", 1, XATTR_REPLACE), EROFS);
	expect("setxattr on a directory", setxattr("d", "user.y", "2", 1, 0), EROFS);
	expect("removexattr", removexattr("f", "user.x"), EROFS);

	/* through a read-only descriptor */
	fd = open("f", O_RDONLY);
	if (fd < 0) {
		printf("FAIL open(f, O_RDONLY): %s\n", strerror(errno));
		return 1;
	}
	expect("fchmod", fchmod(fd, 0600), EROFS);
	expect("fchown", fchown(fd, 1000, 1000), EROFS);
	expect("futimens", futimens(fd, ts), EROFS);
	expect("fsetxattr", fsetxattr(fd, "user.y", "2", 1, 0), EROFS);
	expect("fremovexattr", fremovexattr(fd, "user.x"), EROFS);
	/* refused by the kernel for a read-only descriptor: must change nothing */
	expect("write on a read-only descriptor", write(fd, "x", 1), EBADF);
	expect("ftruncate on a read-only descriptor", ftruncate(fd, 0), EINVAL);
	expect("fallocate on a read-only descriptor", fallocate(fd, 0, 0, 4096), EBADF);

	/* reads keep working */
	{
		ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
		if (r != 6 || memcmp(buf, "hello\n", 6)) {
			printf("FAIL read of f: %zd bytes\n", r);
			failures++;
		} else {
			printf("ok read\n");
		}
	}
	close(fd);
	fd = open("f", O_RDONLY | O_CREAT, 0644);
	expect_ok("open(f, O_RDONLY|O_CREAT) of an existing file (nothing to create)", fd);
	if (fd >= 0)
		close(fd);
	expect_ok("getxattr", getxattr("f", "user.x", buf, sizeof(buf)));
	expect_ok("readlink", readlink("s", buf, sizeof(buf)));
	expect_ok("listxattr", listxattr("f", buf, sizeof(buf)));
	expect_ok("access(f, R_OK)", access("f", R_OK));
	fd = open("d", O_RDONLY | O_DIRECTORY);
	expect_ok("open of a directory", fd);
	if (fd >= 0) {
		expect_ok("fsync of a directory (nothing to write)", fsync(fd));
		close(fd);
	}

	/* statvfs */
	if (statvfs(".", &sv) < 0) {
		printf("FAIL statvfs: %s\n", strerror(errno));
		failures++;
	} else if (!(sv.f_flag & ST_RDONLY)) {
		printf("FAIL statvfs: ST_RDONLY not set (f_flag %#lx)\n", sv.f_flag);
		failures++;
	} else {
		printf("ok statvfs ST_RDONLY\n");
	}
	printf("%d unexpected result(s)\n", failures);
	return failures ? 1 : 0;
}
