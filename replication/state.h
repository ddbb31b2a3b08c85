/* state.h -- DATADIR/state: a node's identity, role, epoch and checkpoint
 *
 * A small text file replaced atomically (write a temporary, fsync, rename,
 * fsync the directory) and sealed with an XXH64 checksum, so that a torn or
 * edited file is detected rather than half read.
 */
#ifndef REPFS_STATE_H
#define REPFS_STATE_H

#include <stdint.h>

#include "../lib/crypto.h"

enum role { ROLE_LEADER = 1, ROLE_FOLLOWER = 2 };

struct node_state {
	char name[64];
	enum role role;
	uint64_t epoch;		/* highest epoch this node has seen */
	uint64_t checkpoint;	/* every record up to here is durable in tree/ */
	uint8_t key_fpr[CRYPTO_MAC_BYTES];
};

/* -ENOENT if there is no state file, -EBADMSG if it is corrupt. */
int state_load(int dirfd, struct node_state *s);
int state_save(int dirfd, const struct node_state *s);
const char *role_name(enum role r);

#endif
