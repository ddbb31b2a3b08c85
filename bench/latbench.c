/* latbench.c -- the latency of 4 KiB writes, for `make bench` (the snapshot part)
 *
 * usage: latbench PATH SECONDS RATE
 *
 * Writes 4 KiB blocks one after the other into PATH (created, truncated),
 * RATE writes a second (paced: a steady stream, not a saturating one), for
 * SECONDS, timing each pwrite(). Prints one line:
 *   ops=N p50_us=X p99_us=Y max_us=Z
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	double secs, rate, start, *lat;
	size_t n = 0, cap;
	char buf[4096];
	int fd;

	if (argc != 4 || (secs = atof(argv[2])) <= 0 || (rate = atof(argv[3])) <= 0) {
		fputs("usage: latbench PATH SECONDS RATE\n", stderr);
		return 2;
	}
	cap = (size_t)(secs * rate) + 16;
	lat = malloc(cap * sizeof(*lat));
	fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (!lat || fd < 0) {
		fprintf(stderr, "latbench: unable to open '%s': %s\n", argv[1], strerror(errno));
		return 1;
	}
	memset(buf, 'l', sizeof(buf));
	start = now_us();
	while (n < cap) {
		double due = start + (double)n * 1e6 / rate, t0 = now_us(), t1;
		if (t0 - start > secs * 1e6)
			break;
		if (due > t0)
			usleep((useconds_t)(due - t0));
		t0 = now_us();
		if (pwrite(fd, buf, sizeof(buf), (off_t)(n % 4096) * 4096) != (ssize_t)sizeof(buf)) {
			fprintf(stderr, "latbench: write to '%s' failed: %s\n", argv[1], strerror(errno));
			return 1;
		}
		t1 = now_us();
		lat[n++] = t1 - t0;
	}
	close(fd);
	if (!n)
		return 1;
	qsort(lat, n, sizeof(*lat), cmp_double);
	printf("ops=%zu p50_us=%.0f p99_us=%.0f max_us=%.0f\n", n, lat[n / 2], lat[(size_t)((double)(n - 1) * 0.99)],
	       lat[n - 1]);
	free(lat);
	return 0;
}
