/* digest.h -- XXH3 digests of a tree and of a file's blocks (snapshots, resyncs, `repfs verify`)
 *
 * A digest tree mirrors a directory tree. Each entry has a meta digest over
 * what a user can see of it: its type, mode, owner, mtime, and for
 * non-directories the link count and size, its user-visible xattrs, and its
 * content (the bytes of a file, the target of a symlink, the number of a
 * device). Its sum is the meta for a non-directory; for a directory, a digest
 * of its meta and every child's name and sum, in name order. Two trees are
 * equal where their sums are; where they are not, only the children whose
 * sums differ need a look (a Merkle tree).
 *
 * Left out: atime and ctime (reading changes the one, nothing can set the
 * other), the size of a directory (file systems count it differently), the
 * project's own metadata (file ids, the id index).
 *
 * Functions return 0 or a negative errno.
 */
#ifndef REPFS_DIGEST_H
#define REPFS_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"

#define DIGEST_BYTES 16
#define DIGEST_BLOCK (64u << 10)	/* the unit a snapshot compares and sends */

struct dnode {
	char *name;		/* "" for the root */
	uint8_t id[FILE_ID_BYTES];	/* zero if it has none */
	uint32_t mode;		/* type and permission bits */
	uint8_t meta[DIGEST_BYTES];
	uint8_t sum[DIGEST_BYTES];
	struct dnode *kids;	/* directories: children sorted by name */
	size_t nkids;
};


/*
 * The digest tree of the directory rootfd (its root named ""). *files and
 * *bytes (may be NULL) count the entries and the bytes of regular files.
 * Entries that vanish while the walk runs are left out. Free with
 * digest_tree_free().
 */
int digest_tree(int rootfd, struct dnode **out, uint64_t *files, uint64_t *bytes);
void digest_tree_free(struct dnode *t);

/* The node at rel ("" for the root, no leading slash) in t, or NULL. */
const struct dnode *digest_find(const struct dnode *t, const char *rel);

/*
 * One entry's meta digest (no children): *out gets name = NULL, kids = NULL.
 * -ENOENT if rel does not exist.
 */
int digest_entry(int rootfd, const char *rel, struct dnode *out);

/*
 * XXH3-128 of each DIGEST_BLOCK block of fd's first size bytes, into a
 * malloc'd array of *n digests (yours to free).
 */
int digest_blocks(int fd, uint64_t size, uint8_t (**out)[DIGEST_BYTES], uint32_t *n);

#endif
