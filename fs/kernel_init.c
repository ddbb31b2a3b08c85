/* kernel_init.c -- asks the kernel for what libfuse 3.14 cannot negotiate
 *
 * Every write(2) through the kernel's page cache to a file the kernel has
 * not marked S_NOSEC costs a round trip: before it the kernel asks us for
 * security.capability (file_remove_privs()).
 * FUSE sets S_NOSEC only when the file system drops privileges itself on
 * write, truncate and chown (FUSE_HANDLE_KILLPRIV_V2, kernel 5.11). libfuse
 * 3.14 knows no such capability, so it never asks. fs/fuse_ops.c reads and
 * writes /dev/fuse through a fuse_session_custom_io() hook that calls the
 * two functions below: the first notes the kernel's INIT request and whether
 * it offers the flag, the second sets the flag in our INIT reply. This file
 * includes the kernel's <linux/fuse.h> for the wire structures, which
 * libfuse's public headers cannot be mixed with.
 *
 * The same reply grants FUSE_OVER_IO_URING when our rings are ready
 * (fs/fuse_ring.c): a flags2 bit, which needs FUSE_INIT_EXT in flags.
 */
#include "kernel_init.h"

#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

/* FUSE_OVER_IO_URING (kernel 6.14), newer than Debian 12's <linux/fuse.h> */
#define RING_FLAG (1ULL << 41)

void kinit_note_request(struct kinit *k, const void *buf, size_t len)
{
	struct fuse_in_header in;
	struct fuse_init_in init;

	/* kernels before 5.17 send only major, minor, max_readahead and flags */
	if (k->unique || len < sizeof(in) + offsetof(struct fuse_init_in, flags) + sizeof(init.flags))
		return;
	memcpy(&in, buf, sizeof(in));
	if (in.opcode != FUSE_INIT)
		return;
	memset(&init, 0, sizeof(init));
	memcpy(&init, (const char *)buf + sizeof(in), len - sizeof(in) < sizeof(init) ? len - sizeof(in) : sizeof(init));
	k->unique = in.unique;
	k->offered = (init.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
	k->ring_offered = (init.flags & FUSE_INIT_EXT) && (init.flags2 & (uint32_t)(RING_FLAG >> 32));
}

int kinit_edit_reply(struct kinit *k, struct iovec *iov, int count)
{
	struct fuse_out_header out;
	struct fuse_init_out init;
	size_t len, need;
	int edited = 0;

	if (!k->unique || count < 1 || iov[0].iov_len < sizeof(out))
		return -1;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (out.unique != k->unique)
		return -1;
	len = count < 2 ? 0 : iov[1].iov_len;
	if (out.error || len < offsetof(struct fuse_init_out, flags) + sizeof(init.flags))
		return 0;
	memset(&init, 0, sizeof(init));
	memcpy(&init, iov[1].iov_base, len < sizeof(init) ? len : sizeof(init));
	if (k->want && k->offered) {
		init.flags |= FUSE_HANDLE_KILLPRIV_V2;
		k->granted = edited = 1;
	}
	/* the kernel's max_payload_sz: FUSE_MIN_READ_BUFFER, max_write, max_pages pages */
	need = init.max_write > 8192 ? init.max_write : 8192;
	if ((size_t)init.max_pages * (size_t)sysconf(_SC_PAGESIZE) > need)
		need = (size_t)init.max_pages * (size_t)sysconf(_SC_PAGESIZE);
	if (k->ring_want && k->ring_offered && need <= k->ring_have &&
	    len >= offsetof(struct fuse_init_out, flags2) + sizeof(init.flags2)) {
		init.flags |= FUSE_INIT_EXT;
		init.flags2 |= (uint32_t)(RING_FLAG >> 32);
		k->ring_granted = edited = 1;
	}
	if (edited)
		memcpy(iov[1].iov_base, &init, len < sizeof(init) ? len : sizeof(init));
	return edited;
}
