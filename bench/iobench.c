/* iobench.c -- the workloads of 'make bench' (see bench/README.md)
 *
 *   iobench seqwrite PATH SIZE        write SIZE bytes in 1 MiB blocks, fsync; prints MB/s
 *   iobench seqread PATH              read PATH to its end in 1 MiB blocks; prints MB/s
 *   iobench randwrite PATH SECONDS    4 KiB writes at random 4 KiB-aligned offsets inside the
 *                                     existing file for SECONDS, then fsync; prints ops/s
 *                                     (the final fsync counts in the elapsed time)
 *   iobench smallfiles DIR COUNT      mkdir DIR, then create+write 4 KiB+close COUNT files
 *                                     DIR/fNNNNNN; prints files/s
 *   iobench statfiles DIR COUNT       stat every DIR/fNNNNNN once (warm-up), then again, timed;
 *                                     prints stats/s of the second pass
 *   iobench appendfsync PATH SECONDS  append 4 KiB and fsync, in a loop, for SECONDS; prints ops/s
 *
 * Every subcommand prints exactly one number on stdout (MB/s are 10^6 bytes per
 * second) and exits 0, or prints an error on stderr and exits 1. SIZE takes a
 * K, M or G suffix (powers of 1024).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOCK (1u << 20)
#define SMALL 4096u

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fail(const char *what, const char *path)
{
	fprintf(stderr, "iobench: %s '%s': %s\n", what, path, strerror(errno));
	exit(1);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'G': case 'g':
		v <<= 10;
		/* fall through */
	case 'M': case 'm':
		v <<= 10;
		/* fall through */
	case 'K': case 'k':
		v <<= 10;
		end++;
		break;
	case 0:
		break;
	default:
		goto bad;
	}
	if (*end || v == 0)
		goto bad;
	return v;
bad:
	fprintf(stderr, "iobench: invalid size '%s'\n", s);
	exit(2);
}

static double parse_seconds(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v <= 0) {
		fprintf(stderr, "iobench: invalid duration '%s'\n", s);
		exit(2);
	}
	return v;
}

static long parse_count(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (end == s || *end || v <= 0 || v > 999999) {
		fprintf(stderr, "iobench: invalid count '%s'\n", s);
		exit(2);
	}
	return v;
}

static void *alloc_buf(size_t len)
{
	void *p = NULL;
	unsigned char *b;

	if (posix_memalign(&p, 4096, len)) {
		fputs("iobench: out of memory\n", stderr);
		exit(1);
	}
	/* incompressible-ish, non-zero content */
	b = p;
	for (size_t i = 0; i < len; i++)
		b[i] = (unsigned char)(i * 131 + (i >> 12) * 7 + 1);
	return p;
}

static void write_all(int fd, const void *buf, size_t len, off_t off, const char *path)
{
	const char *p = buf;

	while (len) {
		ssize_t w = off < 0 ? write(fd, p, len) : pwrite(fd, p, len, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			fail("unable to write", path);
		}
		p += w;
		len -= (size_t)w;
		if (off >= 0)
			off += w;
	}
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static int cmd_seqwrite(const char *path, uint64_t size)
{
	char *buf = alloc_buf(BLOCK);
	double t0, t1;
	uint64_t done = 0;
	int fd;

	t0 = now_s();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("unable to create", path);
	while (done < size) {
		size_t n = size - done < BLOCK ? (size_t)(size - done) : BLOCK;
		buf[0] = (char)done;	/* blocks differ */
		write_all(fd, buf, n, -1, path);
		done += n;
	}
	if (fsync(fd) < 0)
		fail("unable to fsync", path);
	if (close(fd) < 0)
		fail("unable to close", path);
	t1 = now_s();
	printf("%.1f\n", (double)size / 1e6 / (t1 - t0));
	free(buf);
	return 0;
}

static int cmd_seqread(const char *path)
{
	char *buf = alloc_buf(BLOCK);
	uint64_t total = 0;
	double t0, t1;
	ssize_t r;
	int fd;

	t0 = now_s();
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fail("unable to open", path);
	while ((r = read(fd, buf, BLOCK)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fail("unable to read", path);
		}
		total += (uint64_t)r;
	}
	close(fd);
	t1 = now_s();
	if (!total) {
		fprintf(stderr, "iobench: '%s' is empty\n", path);
		return 1;
	}
	printf("%.1f\n", (double)total / 1e6 / (t1 - t0));
	free(buf);
	return 0;
}

static int cmd_randwrite(const char *path, double seconds)
{
	char *buf = alloc_buf(SMALL);
	uint64_t ops = 0, blocks;
	double t0, t1, end;
	struct stat st;
	int fd;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		fail("unable to open", path);
	if (fstat(fd, &st) < 0)
		fail("unable to stat", path);
	blocks = (uint64_t)st.st_size / SMALL;
	if (!blocks) {
		fprintf(stderr, "iobench: '%s' is smaller than 4 KiB (preallocate it first)\n", path);
		return 1;
	}
	rng_state ^= (uint64_t)getpid();
	t0 = now_s();
	end = t0 + seconds;
	for (;;) {
		for (int i = 0; i < 64; i++) {
			uint64_t b = rng() % blocks;
			memcpy(buf, &ops, sizeof(ops));
			write_all(fd, buf, SMALL, (off_t)(b * SMALL), path);
			ops++;
		}
		if (now_s() >= end)
			break;
	}
	if (fsync(fd) < 0)
		fail("unable to fsync", path);
	t1 = now_s();
	close(fd);
	printf("%.0f\n", (double)ops / (t1 - t0));
	free(buf);
	return 0;
}

static void small_name(char *out, size_t len, const char *dir, long i)
{
	snprintf(out, len, "%s/f%06ld", dir, i);
}

static int cmd_smallfiles(const char *dir, long count)
{
	char *buf = alloc_buf(SMALL);
	char path[4096];
	double t0, t1;

	t0 = now_s();
	if (mkdir(dir, 0755) < 0)
		fail("unable to create directory", dir);
	for (long i = 0; i < count; i++) {
		int fd;

		small_name(path, sizeof(path), dir, i);
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0)
			fail("unable to create", path);
		memcpy(buf, &i, sizeof(i));
		write_all(fd, buf, SMALL, -1, path);
		if (close(fd) < 0)
			fail("unable to close", path);
	}
	t1 = now_s();
	printf("%.0f\n", (double)count / (t1 - t0));
	free(buf);
	return 0;
}

static int cmd_statfiles(const char *dir, long count)
{
	char path[4096];
	struct stat st;
	double t0 = 0, t1 = 0;

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			t0 = now_s();
		for (long i = 0; i < count; i++) {
			small_name(path, sizeof(path), dir, i);
			if (stat(path, &st) < 0)
				fail("unable to stat", path);
		}
	}
	t1 = now_s();
	printf("%.0f\n", (double)count / (t1 - t0));
	return 0;
}

static int cmd_appendfsync(const char *path, double seconds)
{
	char *buf = alloc_buf(SMALL);
	uint64_t ops = 0;
	double t0, t1, end;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		fail("unable to create", path);
	t0 = now_s();
	end = t0 + seconds;
	do {
		memcpy(buf, &ops, sizeof(ops));
		write_all(fd, buf, SMALL, -1, path);
		if (fsync(fd) < 0)
			fail("unable to fsync", path);
		ops++;
	} while ((t1 = now_s()) < end);
	close(fd);
	printf("%.0f\n", (double)ops / (t1 - t0));
	free(buf);
	return 0;
}

static void usage(void)
{
	fputs("usage: iobench seqwrite PATH SIZE | seqread PATH | randwrite PATH SECONDS |\n"
	      "               smallfiles DIR COUNT | statfiles DIR COUNT | appendfsync PATH SECONDS\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 3)
		usage();
	cmd = argv[1];
	if (!strcmp(cmd, "seqwrite") && argc == 4)
		return cmd_seqwrite(argv[2], parse_size(argv[3]));
	if (!strcmp(cmd, "seqread") && argc == 3)
		return cmd_seqread(argv[2]);
	if (!strcmp(cmd, "randwrite") && argc == 4)
		return cmd_randwrite(argv[2], parse_seconds(argv[3]));
	if (!strcmp(cmd, "smallfiles") && argc == 4)
		return cmd_smallfiles(argv[2], parse_count(argv[3]));
	if (!strcmp(cmd, "statfiles") && argc == 4)
		return cmd_statfiles(argv[2], parse_count(argv[3]));
	if (!strcmp(cmd, "appendfsync") && argc == 4)
		return cmd_appendfsync(argv[2], parse_seconds(argv[3]));
	usage();
	return 2;
}
