/* fuse_ops.h -- the FUSE file system a node mounts (libfuse low-level API)
 *
 * A leader's mount passes reads straight to DATADIR/tree and turns every
 * change into a record through node_commit(). A follower's mount answers
 * every mutating call with EROFS. The request's user data is the struct node.
 * Each object is one kernel inode, known to us by its file id (fuse_ops.c).
 */
#ifndef REPFS_FUSE_OPS_H
#define REPFS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops repfs_ll_ops;

struct node;
struct handle;

/* Reads and writes the session's /dev/fuse through our hook (fs/kernel_init.c); after fuse_session_mount(). */
int fuse_ops_attach_io(struct fuse_session *se);

/*
 * Called with each request before libfuse has it (opcode: the kernel's):
 * every request but a write waits until the tree has every write answered
 * before it (node_settle()).
 */
void fuse_ops_before(struct node *n, uint32_t opcode);

/* The largest request or reply payload the mount negotiates (max_write). */
size_t fuse_ops_max_payload(void);

/*
 * Kernel cache lifetime of names on a leader (seconds): long enough for warm
 * lookups, short enough that a leader that steps down sees the new leader's
 * renames soon (its own caches are not invalidated by records it follows).
 */
#define REPFS_LEADER_CACHE_S 10.0

#endif
