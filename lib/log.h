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
void rlog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
