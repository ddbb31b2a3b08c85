/* busywriter.c -- several processes changing many files at once, for crash tests
 *
 * usage: busywriter DIR WORKERS SECONDS [SEED]
 *
 * Each worker gets DIR/wK and, until SECONDS pass or an operation fails,
 * creates, writes (appends, overwrites, sparse writes), truncates, renames,
 * links, unlinks, makes directories, sets xattrs and modes and times, and now
 * and then fsyncs. Prints "worker K: N ops, stopped: REASON" per worker and
 * "started" once every worker runs (flushed, so a test can wait for it).
 * Failures are expected when the file system goes away under it; exit 0
 * unless it could not start. BUSY_NO_LINKS=1 in the environment: no hard links.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define NFILES 24

static unsigned long rnd_state;

static unsigned long rnd(void)
{
	rnd_state = rnd_state * 6364136223846793005UL + 1442695040888963407UL;
	return rnd_state >> 33;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int one_op(int k, char *why, size_t whylen)
{
	static char buf[1 << 20];	/* one write in 8 may be large: logged in pieces (fs/node.c) */
	char a[64], b[64];
	int fd, r = 0;
	unsigned long op = rnd() % 100;

	snprintf(a, sizeof(a), "f%02lu", rnd() % NFILES);
	snprintf(b, sizeof(b), "f%02lu", rnd() % NFILES);
	if (op < 40) {
		size_t len = 1 + rnd() % (rnd() % 8 ? 32768 : sizeof(buf));
		off_t off = (rnd() % 4 == 0) ? (off_t)(rnd() % (4u << 20)) : 0;
		memset(buf, (int)('A' + rnd() % 26), len);
		fd = open(a, O_WRONLY | O_CREAT | (off ? 0 : O_APPEND), 0644);
		if (fd < 0) {
			snprintf(why, whylen, "open %s: %s", a, strerror(errno));
			return -1;
		}
		if ((off ? pwrite(fd, buf, len, off) : write(fd, buf, len)) < 0) {
			snprintf(why, whylen, "write %s: %s", a, strerror(errno));
			r = -1;
		}
		if (!r && rnd() % 5 == 0 && fsync(fd) < 0) {
			snprintf(why, whylen, "fsync %s: %s", a, strerror(errno));
			r = -1;
		}
		if (close(fd) < 0 && !r) {
			snprintf(why, whylen, "close %s: %s", a, strerror(errno));
			r = -1;
		}
		return r;
	}
	if (op < 50)
		r = truncate(a, (off_t)(rnd() % 100000));
	else if (op < 60)
		r = rename(a, b);
	else if (op < 65)
		r = getenv("BUSY_NO_LINKS") ? rename(a, b) : link(a, b);
	else if (op < 72)
		r = unlink(a);
	else if (op < 77) {
		snprintf(a, sizeof(a), "d%lu", rnd() % 4);
		r = mkdir(a, 0755);
		if (!r || errno == EEXIST) {
			snprintf(b, sizeof(b), "d%lu/g%lu", rnd() % 4, rnd() % 4);
			fd = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			r = fd < 0 ? -1 : close(fd);
		}
	} else if (op < 82) {
		char v[32];
		snprintf(v, sizeof(v), "value-%lu", rnd());
		r = setxattr(a, "user.busy", v, strlen(v), 0);
	} else if (op < 87)
		r = chmod(a, (mode_t)(0600 | (rnd() % 0100)));
	else if (op < 92) {
		struct timespec ts[2] = { { (time_t)(rnd() % 2000000000), (long)(rnd() % 1000000000) },
					  { (time_t)(rnd() % 2000000000), (long)(rnd() % 1000000000) } };
		r = utimensat(AT_FDCWD, a, ts, 0);
	} else if (op < 95) {
		snprintf(b, sizeof(b), "s%lu", rnd() % 4);
		unlink(b);
		r = symlink(a, b);
	} else {
		fd = open(".", O_RDONLY | O_DIRECTORY);
		r = fd < 0 ? -1 : fsync(fd);
		if (fd >= 0)
			close(fd);
	}
	/* ENOENT, EEXIST and the like are the workload's own doing */
	if (r < 0 && (errno == ENOTCONN || errno == ECONNABORTED || errno == EIO || errno == ENOSPC ||
		      errno == EROFS || errno == ENXIO)) {
		snprintf(why, whylen, "op %lu on %s: %s", op, a, strerror(errno));
		return -1;
	}
	(void)k;
	return 0;
}

static int worker(const char *dir, int k, double secs, unsigned long seed)
{
	char sub[64], why[256] = "time is up";
	double end = now_s() + secs;
	unsigned long ops = 0;

	rnd_state = seed * 1000003UL + (unsigned long)k;
	snprintf(sub, sizeof(sub), "w%d", k);
	if (chdir(dir) < 0 || (mkdir(sub, 0755) < 0 && errno != EEXIST) || chdir(sub) < 0) {
		printf("worker %d: 0 ops, stopped: unable to enter %s/%s: %s\n", k, dir, sub, strerror(errno));
		return 1;
	}
	while (now_s() < end) {
		if (one_op(k, why, sizeof(why)))
			break;
		ops++;
	}
	printf("worker %d: %lu ops, stopped: %s\n", k, ops, why);
	return 0;
}

int main(int argc, char **argv)
{
	int n, status;
	double secs;
	unsigned long seed = 1;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: busywriter DIR WORKERS SECONDS [SEED]\n");
		return 2;
	}
	n = atoi(argv[2]);
	secs = atof(argv[3]);
	if (argc == 5)
		seed = strtoul(argv[4], NULL, 10);
	if (n < 1 || n > 64 || secs <= 0) {
		fprintf(stderr, "busywriter: bad arguments\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int k = 0; k < n; k++) {
		pid_t p = fork();
		if (p < 0) {
			perror("fork");
			return 2;
		}
		if (p == 0) {
			signal(SIGPIPE, SIG_IGN);
			_exit(worker(argv[1], k, secs, seed));
		}
	}
	printf("started\n");
	while (wait(&status) > 0)
		;
	return 0;
}
