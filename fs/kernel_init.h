/* kernel_init.h -- FUSE_HANDLE_KILLPRIV_V2 and FUSE_OVER_IO_URING in the INIT handshake (see kernel_init.c) */
#ifndef REPFS_KERNEL_INIT_H
#define REPFS_KERNEL_INIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct kinit {
	uint64_t unique;	/* the INIT request's, 0 until it is read */
	int offered;		/* the kernel offers FUSE_HANDLE_KILLPRIV_V2 */
	int want;		/* set before the reply: we drop privileges ourselves */
	int done;		/* the reply went out */
	int granted;		/* it carried the flag: the kernel leaves privileges to us */
	int ring_offered;	/* the kernel offers FUSE_OVER_IO_URING */
	int ring_want;		/* set before the reply: our rings are ready (fs/fuse_ring.c) */
	size_t ring_have;	/* and the payload buffer of each of their entries */
	int ring_granted;	/* the reply carried it (the kernel's payload fits ring_have) */
};

/* Every message read from /dev/fuse: notes the INIT request. */
void kinit_note_request(struct kinit *k, const void *buf, size_t len);
/*
 * Every reply before it is written: -1 if it is not the INIT reply (or the
 * INIT request was not seen); else adds the flags wanted and offered and
 * returns 1 if it did, 0 if not. The caller marks done.
 */
int kinit_edit_reply(struct kinit *k, struct iovec *iov, int count);

#endif
