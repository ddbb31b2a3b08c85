/* util.h -- small helpers shared by the modules */
#ifndef REPFS_UTIL_H
#define REPFS_UTIL_H

#include <dirent.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Copies s into out as the inside of a JSON string (quotes, backslashes, controls escaped). */
const char *json_escape(char *out, size_t len, const char *s);

/* Copies the file or symlink src (relative to sfd) to dst (relative to dfd). 0, -EINVAL for other types, or -errno. */
int copy_entry_at(int sfd, const char *src, int dfd, const char *dst);

/* rm -rf path: everything below it, then it; missing is fine. 0 or -errno. */
int remove_all(const char *path);

/* A directory stream of name relative to dirfd ("." for dirfd itself); NULL and errno on failure. */
DIR *opendir_at(int dirfd, const char *name);

/* clock_gettime(clk) plus ms: a deadline for pthread_cond_timedwait() on a condition using clk. */
struct timespec deadline_in_ms(clockid_t clk, long ms);
/* The timespec of a time in ns since the epoch (negative ones too). */
struct timespec ts_of_ns(int64_t ns);
/* The other way: a timespec in ns since the epoch. */
int64_t ns_of_ts(struct timespec ts);

/* CLOCK_MONOTONIC in ns. */
int64_t mono_ns(void);

/* Locks mu if it comes free within ms: 0, or -ETIMEDOUT (or another -errno of pthread_mutex_clocklock()): not locked. */
int lock_within(pthread_mutex_t *mu, long ms);

/* Names the calling thread (at most 15 characters) for ps, top and perf. */
void thread_name(const char *name);

#endif
