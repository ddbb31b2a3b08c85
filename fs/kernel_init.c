/* kernel_init.c -- asks the kernel for FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate
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
 */
#include "kernel_init.h"

#include <linux/fuse.h>
#include <stddef.h>
#include <string.h>

void kinit_note_request(struct kinit *k, const void *buf, size_t len)
{
	struct fuse_in_header in;
	uint32_t flags;

	if (k->unique || len < sizeof(in) + offsetof(struct fuse_init_in, flags) + sizeof(flags))
		return;
	memcpy(&in, buf, sizeof(in));
	if (in.opcode != FUSE_INIT)
		return;
	memcpy(&flags, (const char *)buf + sizeof(in) + offsetof(struct fuse_init_in, flags), sizeof(flags));
	k->unique = in.unique;
	k->offered = (flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
}

int kinit_edit_reply(struct kinit *k, struct iovec *iov, int count)
{
	struct fuse_out_header out;
	uint32_t flags;
	char *arg;

	if (!k->unique || k->done || count < 2 || iov[0].iov_len < sizeof(out))
		return 0;
	memcpy(&out, iov[0].iov_base, sizeof(out));
	if (out.unique != k->unique)
		return 0;
	k->done = 1;
	if (out.error || !k->want || !k->offered ||
	    iov[1].iov_len < offsetof(struct fuse_init_out, flags) + sizeof(flags))
		return 0;
	arg = iov[1].iov_base;
	memcpy(&flags, arg + offsetof(struct fuse_init_out, flags), sizeof(flags));
	flags |= FUSE_HANDLE_KILLPRIV_V2;
	memcpy(arg + offsetof(struct fuse_init_out, flags), &flags, sizeof(flags));
	k->granted = 1;
	return 1;
}
