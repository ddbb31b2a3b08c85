/* failover_writer.c -- appends numbered records with fsync, following the leader across mounts
 *
 * usage: failover_writer [-c COUNT] [-a AFTER] [-t TIMEOUT_MS] [-s RECSIZE] FILE...
 *
 * Appends records in the format of ackwriter (record N: "rec NNNNNNNNNN "
 * then filler derived from N, then a newline; RECSIZE bytes, default 100,
 * each in one write()), fsync()ing after each, to the first FILE. Each FILE
 * names the same file on another node's mount. When a write, an fsync or an
 * open fails (EROFS: that node is a follower now; ENOTCONN: it died; ...),
 * the writer "switches": it tries the files in turn, starting with the next
 * one, until one takes the next record, for at most TIMEOUT_MS (default
 * 10000). The next record is the one after the whole records that file
 * already holds (what the new leader received of the old one's history), so
 * that `ackwriter check FILE ACKED` holds on the leader's copy at the end. A
 * partial record at the end (a write() that crossed a page boundary reaches
 * the daemon as two writes, and the old leader may have handed over only the
 * first) is completed.
 * Only the first file is created if missing (when switching, the file is
 * opened only if it exists: so nothing is created in a mountpoint whose mount
 * went away), and a file that is not on a FUSE file system never counts as
 * taking a record.
 *
 * Prints, line-buffered:
 *   ack N I MS          record N's fsync returned 0 on file I (0-based);
 *                        MS: CLOCK_MONOTONIC in milliseconds (3 decimals)
 *   fail N I ERR: msg    record N failed on file I
 *   completed N I B      record N, found cut at byte B on file I, was completed
 *   switch I N PAUSE_MS  now writing to file I from record N; PAUSE_MS: time
 *                        from the last ack before the switch to the first after
 *                        (printed with that first ack)
 *   end ACKED SWITCHES   at exit (SIGTERM or SIGINT: exit 0)
 *
 * Stops after COUNT acknowledged records (0, the default: until a signal), or
 * after AFTER records acknowledged since the last switch once at least one
 * switch happened (-a; 0: not used). Exit 1 when no file takes a record
 * within TIMEOUT_MS.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define FUSE_MAGIC 0x65735546

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void make_record(char *buf, size_t size, unsigned long n)
{
	int h = snprintf(buf, size, "rec %010lu ", n);

	for (size_t i = (size_t)h; i < size - 1; i++)
		buf[i] = (char)('a' + (n * 31 + i * 7) % 26);
	buf[size - 1] = '\n';
}

static const char *errname(int e)
{
	switch (e) {
	case EROFS: return "EROFS";
	case EIO: return "EIO";
	case ENOTCONN: return "ENOTCONN";
	case ECONNABORTED: return "ECONNABORTED";
	case ENOENT: return "ENOENT";
	case EXDEV: return "EXDEV";
	case ENOSPC: return "ENOSPC";
	case EINTR: return "EINTR";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	default: return "E?";
	}
}

/* Opens path for appending, only on a FUSE mount. The fd, or -errno. */
static int open_on_fuse(const char *path, int create)
{
	struct statfs sf;
	int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT : 0), 0644);

	if (fd < 0)
		return -errno;
	if (fstatfs(fd, &sf) < 0 || sf.f_type != FUSE_MAGIC) {
		close(fd);
		return -EXDEV;
	}
	return fd;
}

/* Writes record n (from byte skip on) to fd and fsyncs it: 0 or -errno. */
static int put_record(int fd, char *buf, size_t size, unsigned long n, size_t skip)
{
	size_t done = skip;

	make_record(buf, size, n);
	while (done < size) {
		ssize_t w = write(fd, buf + done, size - done);
		if (w < 0) {
			if (errno == EINTR && !stop)
				continue;
			return -errno;
		}
		done += (size_t)w;
	}
	return fsync(fd) < 0 ? -errno : 0;
}

int main(int argc, char **argv)
{
	unsigned long count = 0, after = 0, acked = 0, since_switch = 0, n = 1, switches = 0;
	long timeout_ms = 10000;
	size_t size = 100;
	double last_ack = 0, switch_from = -1;
	int c, cur = 0, fd = -1, nfiles, rc = 0;
	struct sigaction sa;
	char *buf;

	while ((c = getopt(argc, argv, "c:a:t:s:")) != -1) {
		switch (c) {
		case 'c': count = strtoul(optarg, NULL, 10); break;
		case 'a': after = strtoul(optarg, NULL, 10); break;
		case 't': timeout_ms = strtol(optarg, NULL, 10); break;
		case 's': size = strtoul(optarg, NULL, 10); break;
		default: goto usage;
		}
	}
	nfiles = argc - optind;
	if (nfiles < 1 || size < 20 || size > (1u << 20) || timeout_ms <= 0)
		goto usage;
	buf = malloc(size);
	if (!buf)
		return 2;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);

	fd = open_on_fuse(argv[optind], 1);
	if (fd < 0) {
		printf("fail 1 0 %s: open: %s\n", errname(-fd), strerror(-fd));
		goto do_switch;
	}
	while (!stop && (!count || acked < count) && !(after && switches && since_switch >= after)) {
		int ret = put_record(fd, buf, size, n, 0);
		double t;

		if (ret) {
			if (stop)
				break;
			printf("fail %lu %d %s: %s\n", n, cur, errname(-ret), strerror(-ret));
			close(fd);
			fd = -1;
do_switch:
			{
				double deadline = now_ms() + (double)timeout_ms;
				int i = (cur + 1) % nfiles, found = 0;
				struct timespec pause = { 0, 1000000 };

				if (switch_from < 0)
					switch_from = last_ack;
				while (!stop && now_ms() < deadline) {
					struct stat st;
					int f = open_on_fuse(argv[optind + i], 0);
					if (f >= 0 && fstat(f, &st) == 0) {
						/* a write() that crossed a page boundary reached the daemon as two
						 * writes: the old leader may have handed over only the first */
						unsigned long next = (unsigned long)(st.st_size / (off_t)size) + 1;
						size_t part = (size_t)(st.st_size % (off_t)size);
						if (put_record(f, buf, size, next, part) == 0) {
							if (part)
								printf("completed %lu %d from byte %zu\n", next, i, part);
							fd = f;
							cur = i;
							n = next;
							found = 1;
							break;
						}
					}
					if (f >= 0)
						close(f);
					i = (i + 1) % nfiles;
					nanosleep(&pause, NULL);
				}
				if (!found) {
					if (!stop) {
						printf("fail %lu %d E?: no file took record %lu within %ld ms\n", n, cur, n,
						       timeout_ms);
						rc = 1;
					}
					break;
				}
				switches++;
				since_switch = 0;
				t = now_ms();
				printf("switch %d %lu %.3f\n", cur, n, switch_from > 0 ? t - switch_from : -1.0);
				switch_from = -1;
				/* the record that found the new leader is acknowledged */
			}
		}
		t = now_ms();
		printf("ack %lu %d %.3f\n", n, cur, t);
		last_ack = t;
		acked++;
		since_switch++;
		n++;
	}
	if (fd >= 0)
		close(fd);
	printf("end %lu %lu\n", acked, switches);
	free(buf);
	return rc;
usage:
	fprintf(stderr, "usage: failover_writer [-c COUNT] [-a AFTER] [-t TIMEOUT_MS] [-s RECSIZE] FILE...\n");
	return 2;
}
