/* log.c -- the process's one logger */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

void rlog_setup(const char *node, int fd, int to_stderr)
{
	snprintf(sink.node, sizeof(sink.node), "%s", node ? node : "repfs");
	sink.fd = fd;
	sink.to_stderr = to_stderr;
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
	if (sink.to_stderr && level <= LOG_WARNING)
		fprintf(stderr, "repfs: %s\n", msg);
}
