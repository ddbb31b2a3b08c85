/* log.c -- the process's one logger */
#include "log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/*
 * The sink is process-wide by nature (like syslog's): one node per process.
 * Set once at start-up by rlog_setup(), read-only afterwards.
 */
static struct {
	char node[64];
	int fd;
	int to_stderr;
} sink = { "repfs", -1, 1 };

/* Rotation of the file (rlog_rotate()): its directory and name, and the bytes it may reach. */
static struct {
	pthread_mutex_t mu;
	int dirfd;
	char name[64];
	unsigned long max;
	unsigned long size;	/* about: lines written since it was opened, plus its size then (atomic) */
} rot = { PTHREAD_MUTEX_INITIALIZER, -1, "", 0, 0 };

void rlog_setup(const char *node, int fd, int to_stderr)
{
	snprintf(sink.node, sizeof(sink.node), "%s", node ? node : "repfs");
	sink.fd = fd;
	sink.to_stderr = to_stderr;
}

void rlog_rotate(int dirfd, const char *name, unsigned long max_bytes)
{
	struct stat st;

	pthread_mutex_lock(&rot.mu);
	if (rot.dirfd >= 0)
		close(rot.dirfd);
	rot.dirfd = dirfd >= 0 ? fcntl(dirfd, F_DUPFD_CLOEXEC, 0) : -1;
	snprintf(rot.name, sizeof(rot.name), "%s", name);
	__atomic_store_n(&rot.max, rot.dirfd >= 0 ? max_bytes : 0, __ATOMIC_RELAXED);
	rot.size = sink.fd >= 0 && fstat(sink.fd, &st) == 0 ? (unsigned long)st.st_size : 0;
	pthread_mutex_unlock(&rot.mu);
}

/*
 * The file past its size: it becomes NAME.1 (the one before goes) and lines
 * go to a new NAME, through the same descriptor number (dup3()), so that
 * whoever holds it writes on where the logger does.
 */
static void rotate(void)
{
	char old[sizeof(rot.name) + 3];
	struct stat st;
	int fd;

	pthread_mutex_lock(&rot.mu);
	/* the count is about (lines of other processes, a copytruncate): the file's own size decides */
	if (fstat(sink.fd, &st) < 0)
		st.st_size = 0;
	if (!rot.max || (unsigned long)st.st_size < rot.max) {
		__atomic_store_n(&rot.size, (unsigned long)st.st_size, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&rot.mu);
		return;
	}
	snprintf(old, sizeof(old), "%s.1", rot.name);
	fd = renameat(rot.dirfd, rot.name, rot.dirfd, old) < 0
		     ? -1
		     : openat(rot.dirfd, rot.name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd >= 0) {
		if (dup3(fd, sink.fd, O_CLOEXEC) >= 0)
			__atomic_store_n(&rot.size, 0, __ATOMIC_RELAXED);
		close(fd);
	} else {
		__atomic_store_n(&rot.max, 0, __ATOMIC_RELAXED);	/* the directory refuses: the file grows, unrotated */
	}
	pthread_mutex_unlock(&rot.mu);
}

static const char *level_name(int level)
{
	switch (level) {
	case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

void rlog(int level, const char *fmt, ...)
{
	char msg[1024], line[1200], when[32];
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03dZ %s %s: %s\n", when, (int)(tv.tv_usec / 1000),
		     sink.node, level_name(level), msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	if (sink.fd >= 0 && write(sink.fd, line, (size_t)n) < 0) {
		/* nowhere better to report it */
	}
	if (sink.fd >= 0 && __atomic_load_n(&rot.max, __ATOMIC_RELAXED) &&
	    __atomic_add_fetch(&rot.size, (unsigned long)n, __ATOMIC_RELAXED) >= rot.max)
		rotate();
	if (sink.to_stderr && level <= LOG_WARNING)
		fprintf(stderr, "repfs: %s\n", msg);
}
