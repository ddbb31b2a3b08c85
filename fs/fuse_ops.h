/* fuse_ops.h -- the FUSE file system a node mounts (libfuse high-level API)
 *
 * A leader's mount passes reads straight to DATADIR/tree and turns every
 * change into a record through node_commit(). A follower's mount answers
 * every mutating call with EROFS. The private data of the FUSE context is the
 * struct node.
 */
#ifndef REPFS_FUSE_OPS_H
#define REPFS_FUSE_OPS_H

#define FUSE_USE_VERSION 314
#include <fuse.h>

extern const struct fuse_operations repfs_fuse_ops;

struct node;
struct record;

/* On a follower: drops the kernel's cached names, attributes and pages that r changed. */
void fuse_ops_invalidate(struct node *n, const struct record *r);

/*
 * Kernel cache lifetime of names on a leader (seconds): long enough for warm
 * lookups, short enough that a leader that steps down sees the new leader's
 * renames soon (its own caches are not invalidated by records it follows).
 */
#define REPFS_LEADER_CACHE_S 10.0

#endif
