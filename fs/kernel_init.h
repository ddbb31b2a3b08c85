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
	int ring_granted;	/* the reply carried it */
	size_t ring_need;	/* then: the payload buffer the kernel asks of each ring entry */
};

/* Every message read from /dev/fuse: notes the INIT request. */
void kinit_note_request(struct kinit *k, const void *buf, size_t len);
/* Every reply before it is written: adds the flags to the INIT reply if wanted and offered; 1 if it did. */
int kinit_edit_reply(struct kinit *k, struct iovec *iov, int count);

#endif
