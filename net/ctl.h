/* ctl.h -- the control socket: DATADIR/ctl.sock (mode 0600), one request a connection
 *
 * A client sends one line ("status"), the daemon answers with one JSON object
 * and closes; each connection is served on a thread of its own (ctl.c). Only
 * the data directory's owner (root) can connect.
 */
#ifndef REPFS_CTL_H
#define REPFS_CTL_H

#include <stddef.h>

struct node;
struct ctl_server;

/*
 * Creates and listens on the socket (before daemonizing, so that the socket
 * exists when 'repfs mount' returns; connections wait in the backlog).
 */
int ctl_open(struct ctl_server **out, struct node *n);
/* Starts serving on a thread (after daemonizing). */
int ctl_start(struct ctl_server *s);
void ctl_stop(struct ctl_server *s);	/* NULL is a no-op; removes the socket */

/*
 * Sends request to the daemon of datadir and reads the reply into buf
 * (NUL-terminated). -ECONNREFUSED or -ENOENT when no daemon runs there.
 */
int ctl_request(const char *datadir, const char *request, char *buf, size_t len);

#endif
