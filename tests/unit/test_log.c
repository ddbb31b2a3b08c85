/* test_log.c -- the logger's file: lines in order, rotated past its size */
#include "../../lib/log.h"
#include "unit.h"

static struct unit_env lenv;

static void log_setup(void)
{
	unit_env_init(&lenv);
}

static void log_teardown(void)
{
	unit_env_fini(&lenv);
}

TestSuite(log, .init = log_setup, .fini = log_teardown);

static size_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* The number in the last line of path, -1 if none: lines end in "line N". */
static long last_line(const char *path, long *first)
{
	FILE *f = fopen(path, "r");
	char buf[512];
	long last = -1, n;

	*first = -1;
	cr_assert(f, "%s: %s", path, strerror(errno));
	while (fgets(buf, sizeof(buf), f)) {
		char *p = strstr(buf, "line ");
		cr_assert(p, "a line without its number: %s", buf);
		n = strtol(p + 5, NULL, 10);
		cr_assert(last < 0 || n == last + 1, "line %ld after %ld", n, last);
		if (*first < 0)
			*first = n;
		last = n;
	}
	fclose(f);
	return last;
}

Test(log, rotates_past_its_size)
{
	char path[512], old[520];
	int dirfd = open(lenv.dir, O_RDONLY | O_DIRECTORY), fd;
	long first_new, first_old, last_old, last_new;

	snprintf(path, sizeof(path), "%s/t.log", lenv.dir);
	snprintf(old, sizeof(old), "%s/t.log.1", lenv.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	cr_assert(dirfd >= 0 && fd >= 0);
	rlog_setup("unit", fd, 0);
	rlog_rotate(dirfd, "t.log", 8192);
	for (int i = 0; i < 1000; i++)
		rlog(LOG_NOTICE, "some words to fill the file, line %d", i);
	cr_assert(file_size(path) < 8192 + 1200, "t.log is %zu bytes", file_size(path));
	cr_assert(file_size(old) >= 8192 && file_size(old) < 8192 + 1200, "t.log.1 is %zu bytes", file_size(old));
	last_old = last_line(old, &first_old);
	last_new = last_line(path, &first_new);
	cr_assert_eq(last_new, 999, "the last line written is the last in t.log");
	cr_assert_eq(first_new, last_old + 1, "t.log goes on where t.log.1 ends (%ld, %ld)", last_old, first_new);
	cr_assert_gt(first_old, 0, "older lines went with the rotation before");
	rlog(LOG_NOTICE, "through the same descriptor: line %d", 1000);
	cr_assert_eq(last_line(path, &first_new), 1000);
	close(dirfd);
}

Test(log, no_rotation_where_the_directory_refuses)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/t.log", lenv.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
	cr_assert(fd >= 0);
	rlog_setup("unit", fd, 0);
	rlog_rotate(-1, "t.log", 4096);
	for (int i = 0; i < 200; i++)
		rlog(LOG_NOTICE, "some words to fill the file, line %d", i);
	cr_assert_gt(file_size(path), 4096, "without a directory the file grows");
}
