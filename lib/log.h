/* log.h -- the one logger: levels, git's message style, the node name on every line
 *
 * Messages are lower case without a full stop, subjects quoted:
 *   rlog(LOG_ERR, "unable to open '%s': %s", path, strerror(-ret));
 * Lines go to the node's log file (DATADIR/repfs.log) and, while the process
 * still has a terminal (before daemonizing, or with -f), to stderr.
 * Never pass key material to it.
 */
#ifndef REPFS_LOG_H
#define REPFS_LOG_H

#include <syslog.h>

/* Sets the node name shown on every line and the file to append to (-1: none). */
void rlog_setup(const char *node, int fd, int to_stderr);
/*
 * Once the file (rlog_setup()'s, named name in directory dirfd) reaches
 * max_bytes, it is renamed name.1, replacing the one before, and a new one
 * is begun: a daemon's log takes at most twice max_bytes.
 */
#define RLOG_MAX_BYTES (16ul << 20)
void rlog_rotate(int dirfd, const char *name, unsigned long max_bytes);
void rlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
