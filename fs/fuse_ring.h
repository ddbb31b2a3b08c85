/* fuse_ring.h -- FUSE over io_uring: a CPU's requests answered by threads on that CPU (see fuse_ring.c) */
#ifndef REPFS_FUSE_RING_H
#define REPFS_FUSE_RING_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

struct fuse_session;
struct fring;
struct node;

/*
 * Sets up the rings and their threads, which wait for fring_start().
 * Called when the kernel's INIT request offers FUSE_OVER_IO_URING and
 * before the reply grants it, so that the rings exist when it does.
 * NULL (and a logged line) when io_uring cannot be used here. Each request
 * goes to fuse_ops_before(node, ...) first.
 */
struct fring *fring_open(struct fuse_session *se, int devfd, struct node *node);
/*
 * After the INIT reply granted the ring (only if the kernel's largest
 * request, max_write and max_pages, fits fuse_ops_max_payload()): register
 * the entries and serve. Once granted there is no way back to /dev/fuse:
 * the kernel holds every request until each CPU's queue has an entry.
 */
void fring_start(struct fring *r);
/* Stops and joins the threads (each finishes the request in hand). r stays
 * valid for fring_reply(), which then takes nothing, until fring_free(). */
void fring_stop(struct fring *r);
void fring_free(struct fring *r);

/*
 * Every reply before it is written to /dev/fuse: 1 when it answers a
 * request that came through a ring (it is then committed there and *res
 * is what writev would have returned), 0 for the device.
 */
int fring_reply(struct fring *r, const struct iovec *iov, int count, ssize_t *res);
/* On a ring thread with a request in hand: its reply buffer (a reply that
 * points into it is not copied) and the buffer's size; NULL elsewhere. */
void *fring_payload(size_t *cap);
/* Pins each ring thread to its CPU again (after something moved them all). */
void fring_repin(struct fring *r);
/* Requests answered through the rings so far, and whether they serve (status). */
unsigned long long fring_served(const struct fring *r);
int fring_serving(const struct fring *r);

/*
 * Before mounting: the kernel offers FUSE over io_uring only while the fuse
 * module's enable_uring parameter is on. Root turns it on (it lets FUSE
 * daemons that ask use io_uring; none is made to). Logs what it did.
 */
void fring_enable_kernel(void);

#endif
