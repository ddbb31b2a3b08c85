/* ackwriter.c -- appends numbered records with fsync, acknowledging each one
 *
 * usage: ackwriter write FILE COUNT [RECSIZE]
 *            Appends records 1..COUNT (COUNT 0: until an error) of RECSIZE
 *            bytes (default 100) to FILE, fsync()ing after each, and prints
 *            "ack N" once record N's fsync has returned 0. On an error prints
 *            "error N ERRNONAME: message" (N: the record that failed) and exits 1.
 *        ackwriter check FILE ACKED [RECSIZE]
 *            Checks that records 1..ACKED are in FILE intact, in order (exit 1
 *            if not). What follows should be further whole records or one
 *            partial record at the end; anything else there is reported
 *            ("unacknowledged record N is damaged") but exits 0. Prints
 *            "ok N whole records ..." at the end.
 *
 * A record is "rec NNNNNNNNNN " followed by filler derived from N and a
 * final newline, so any damage or misplacement is detected.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
	case ENOSPC:
		return "ENOSPC";
	case EIO:
		return "EIO";
	case EDQUOT:
		return "EDQUOT";
	case ENOTCONN:
		return "ENOTCONN";
	case ECONNABORTED:
		return "ECONNABORTED";
	case EROFS:
		return "EROFS";
	case EFBIG:
		return "EFBIG";
	default:
		return "E?";
	}
}

static int do_write(const char *path, unsigned long count, size_t size)
{
	char *buf = malloc(size);
	int fd = -1, ret = 1;

	if (!buf)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0) {
		printf("error 1 %s: open: %s\n", errname(errno), strerror(errno));
		goto out;
	}
	for (unsigned long n = 1; count == 0 || n <= count; n++) {
		size_t done = 0;

		make_record(buf, size, n);
		while (done < size) {
			ssize_t w = write(fd, buf + done, size - done);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				printf("error %lu %s: write: %s\n", n, errname(errno), strerror(errno));
				goto out;
			}
			done += (size_t)w;
		}
		if (fsync(fd) < 0) {
			printf("error %lu %s: fsync: %s\n", n, errname(errno), strerror(errno));
			goto out;
		}
		printf("ack %lu\n", n);
	}
	ret = close(fd) < 0 ? 1 : 0;
	fd = -1;
	if (ret)
		printf("error 0 %s: close: %s\n", errname(errno), strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static int do_check(const char *path, unsigned long acked, size_t size)
{
	char *want = malloc(size), *got = malloc(size);
	struct stat st;
	unsigned long n, unacked_bad = 0;
	int fd = -1, ret = 1;

	if (!want || !got) {
		ret = 2;
		goto out;
	}
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("unable to open '%s': %s\n", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		printf("unable to stat '%s': %s\n", path, strerror(errno));
		goto out;
	}
	for (n = 1;; n++) {
		off_t off = (off_t)((n - 1) * size);
		ssize_t r;

		if (off >= st.st_size)
			break;
		r = pread(fd, got, size, off);
		if (r < 0) {
			printf("read error at record %lu: %s\n", n, strerror(errno));
			goto out;
		}
		make_record(want, size, n);
		if ((size_t)r < size) {
			/* a partial last record: a prefix of the right one */
			if (n <= acked || memcmp(got, want, (size_t)r)) {
				printf("record %lu is cut short (%zd of %zu bytes)%s\n", n, r, size,
				       n <= acked ? " but was acknowledged" : " and is not a prefix");
				if (n <= acked)
					goto out;
				unacked_bad++;
			}
			break;
		}
		if (memcmp(got, want, size)) {
			printf("%s record %lu is damaged: '%.20s'\n", n <= acked ? "acknowledged" : "unacknowledged",
			       n, got);
			if (n <= acked)
				goto out;
			unacked_bad++;
			break;
		}
	}
	if (n - 1 < acked) {
		printf("only %lu whole records, but %lu were acknowledged\n", n - 1, acked);
		goto out;
	}
	printf("ok %lu whole records (%lu acknowledged)%s\n", n - 1, acked,
	       unacked_bad ? "; past them, data that was never acknowledged is wrong (see above)" : "");
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	free(want);
	free(got);
	return ret;
}

int main(int argc, char **argv)
{
	size_t size = 100;

	if (argc >= 5)
		size = strtoul(argv[4], NULL, 10);
	if (argc < 4 || argc > 5 || size < 20 || size > (64u << 20)) {
		fprintf(stderr, "usage: ackwriter write|check FILE COUNT|ACKED [RECSIZE]\n");
		return 2;
	}
	if (!strcmp(argv[1], "write"))
		return do_write(argv[2], strtoul(argv[3], NULL, 10), size);
	if (!strcmp(argv[1], "check"))
		return do_check(argv[2], strtoul(argv[3], NULL, 10), size);
	fprintf(stderr, "usage: ackwriter write|check FILE COUNT|ACKED [RECSIZE]\n");
	return 2;
}
