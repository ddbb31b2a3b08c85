/* repl_fsyncloop.c -- times an append+fsync loop
 *
 * usage: repl_fsyncloop FILE COUNT [SIZE]
 *
 * Appends SIZE bytes (default 4096) to FILE and fsync()s it, COUNT times.
 * Prints "count=N size=S total_ms=T avg_ms=A p50_ms=M p99_ms=P max_ms=X"
 * (per append+fsync) and exits 0, or prints the error and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long count, size = 4096;
	double *t, start;
	char *buf;
	int fd;

	if (argc < 3 || argc > 4 || (count = atol(argv[2])) < 1 || (argc == 4 && (size = atol(argv[3])) < 1)) {
		fprintf(stderr, "usage: repl_fsyncloop FILE COUNT [SIZE]\n");
		return 2;
	}
	t = calloc((size_t)count, sizeof(*t));
	buf = malloc((size_t)size);
	if (!t || !buf)
		return 2;
	memset(buf, 'r', (size_t)size);
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0) {
		printf("open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	start = now_ms();
	for (long i = 0; i < count; i++) {
		double t0 = now_ms();
		if (write(fd, buf, (size_t)size) != size) {
			printf("write %ld: %s\n", i, strerror(errno));
			return 1;
		}
		if (fsync(fd) < 0) {
			printf("fsync %ld: %s\n", i, strerror(errno));
			return 1;
		}
		t[i] = now_ms() - t0;
	}
	close(fd);
	{
		double total = now_ms() - start;
		qsort(t, (size_t)count, sizeof(*t), cmp);
		printf("count=%ld size=%ld total_ms=%.1f avg_ms=%.3f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", count, size,
		       total, total / (double)count, t[count / 2], t[(count * 99) / 100 < count ? (count * 99) / 100 : count - 1],
		       t[count - 1]);
	}
	free(t);
	free(buf);
	return 0;
}
