/* util.c -- small helpers shared by the modules */
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

const char *json_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; s && *s && o + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	if (len)
		out[o < len ? o : len - 1] = 0;
	return out;
}

int copy_entry_at(int sfd, const char *src, int dfd, const char *dst)
{
	char buf[65536];
	struct stat st;
	int in = -1, out = -1, ret = 0;
	ssize_t n;

	if (fstatat(sfd, src, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		n = readlinkat(sfd, src, target, sizeof(target) - 1);
		if (n < 0)
			return -errno;
		target[n] = 0;
		unlinkat(dfd, dst, 0);
		return symlinkat(target, dfd, dst) < 0 ? -errno : 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	in = openat(sfd, src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	out = openat(dfd, dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
	if (in < 0 || out < 0)
		ret = -errno;
	while (!ret && (n = read(in, buf, sizeof(buf))) != 0) {
		if (n < 0 || write(out, buf, (size_t)n) != n)
			ret = -EIO;
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ret;
}

DIR *opendir_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;

	if (!d && fd >= 0) {
		int err = errno;
		close(fd);
		errno = err;
	}
	return d;
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

int remove_all(const char *path)
{
	if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

struct timespec deadline_in_ms(clockid_t clk, long ms)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

int64_t ns_of_ts(struct timespec ts)
{
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ns_of_ts(ts);
}

int lock_within(pthread_mutex_t *mu, long ms)
{
	struct timespec until = deadline_in_ms(CLOCK_MONOTONIC, ms);

	return -pthread_mutex_clocklock(mu, CLOCK_MONOTONIC, &until);
}

void thread_name(const char *name)
{
	pthread_setname_np(pthread_self(), name);
}

/* The timespec of a time in ns since the epoch (negative ones too). */
struct timespec ts_of_ns(int64_t ns)
{
	struct timespec t = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };

	if (t.tv_nsec < 0) {
		t.tv_nsec += 1000000000;
		t.tv_sec--;
	}
	return t;
}
