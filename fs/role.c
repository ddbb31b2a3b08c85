/* role.c -- a node's role changes: promotion, a new epoch, stepping down, and the remount each makes */
#include "node.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

/* Flips the mount between read-only and read-write without unmounting it. */
static int remount(struct node *n, int rw)
{
	char src[PATH_MAX + 8];
	unsigned long flags = MS_REMOUNT | MS_NOSUID | MS_NODEV | (rw ? 0 : MS_RDONLY);

	if (!n->mountpoint[0] || !n->se)
		return 0;	/* not mounted yet: the mount will be made as the role says */
	snprintf(src, sizeof(src), "repfs:%s", n->datadir);
	if (mount(src, n->mountpoint, "fuse.repfs", flags, NULL) < 0) {
		int err = errno;
		if (err == EBUSY && !rw) {
			/* files still open for writing: changes are refused anyway (EROFS);
			 * node_settle_mount() retries until the kernel agrees */
			rlog(LOG_NOTICE, "'%s' stays mounted read-write while files are open for writing; "
					 "changes are refused", n->mountpoint);
			n->mount_rw = 1;
			return 0;
		}
		rlog(LOG_ERR, "unable to remount '%s' %s: %s", n->mountpoint, rw ? "read-write" : "read-only",
		     strerror(err));
		return -err;
	}
	n->mount_rw = rw;
	return 0;
}

void node_settle_mount(struct node *n)
{
	if (n->se && n->mount_rw && node_role(n) != ROLE_LEADER)
		remount(n, 0);
}

/*
 * Under seq_lock: role at epoch on disk, then the node's; unchanged (the
 * error) if it cannot be saved. A change of role makes the mount forget
 * what it knew of files' privileges (priv_gen): a follower's applies do not
 * tell it, and a leader's knowledge came from its own changes only.
 */
static int state_change(struct node *n, enum role role, uint64_t epoch)
{
	struct node_state save = n->st;
	int ret;

	if (role != n->st.role)
		__atomic_add_fetch(&n->priv_gen, 1, __ATOMIC_SEQ_CST);
	n->st.role = role;
	n->st.epoch = epoch;
	ret = state_save(n->dfd, &n->st);
	if (ret)
		n->st = save;
	return ret;
}

int node_promote(struct node *n, uint64_t epoch)
{
	struct record b = { .type = REC_BRANCH };
	struct pos prev;
	int ret;

	/*
	 * Records a verify holds back (node_hold()) are applied first: the
	 * branch record's commit moves applied past everything logged, and
	 * what was held would never reach the tree.
	 */
	for (;;) {
		node_release(n);
		pthread_mutex_lock(&n->seq_lock);
		if (n->st.role == ROLE_LEADER || n->snap_pending || n->applied >= oplog_last(n->log).seq)
			break;
		pthread_mutex_unlock(&n->seq_lock);	/* more came meanwhile, held again */
	}
	if (n->st.role == ROLE_LEADER) {
		pthread_mutex_unlock(&n->seq_lock);
		return -EALREADY;
	}
	n->hold_at = UINT64_MAX;
	prev = oplog_last(n->log);
	if (epoch <= n->st.epoch || epoch <= prev.epoch)
		epoch = (n->st.epoch > prev.epoch ? n->st.epoch : prev.epoch) + 1;
	/* the new epoch is on disk before its first record */
	ret = state_change(n, ROLE_LEADER, epoch);
	pthread_mutex_unlock(&n->seq_lock);
	if (ret)
		return ret;
	b.off = prev.epoch;
	b.len = prev.seq;
	ret = node_commit(n, &b, -1, NULL);
	if (!ret)
		ret = node_sync_local(n, b.seq);
	if (!ret)
		ret = remount(n, 1);
	if (!ret)
		rlog(LOG_NOTICE, "promoted: leader of epoch %" PRIu64 ", branching after %" PRIu64 ".%" PRIu64, epoch,
		     prev.epoch, prev.seq);
	return ret;
}

int node_raise_epoch(struct node *n, uint64_t epoch)
{
	int ret = 0;

	pthread_mutex_lock(&n->seq_lock);
	if (epoch > n->st.epoch && n->st.role != ROLE_LEADER)
		ret = state_change(n, n->st.role, epoch);
	pthread_mutex_unlock(&n->seq_lock);
	return ret;
}

/*
 * How long a step-down waits for the kernel's dirty pages: long enough for
 * gigabytes (the mount's dirty pages are held only to the kernel's global
 * limits, tools/mount.c), and the age at which the kernel writes a page
 * back anyway (vm.dirty_expire_centisecs). The promoter waits a little
 * longer for the answer (replication/promote.c).
 */
#define WB_FLUSH_MS 30000

struct wb_flush {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, refs;
	char path[PATH_MAX];
};

static void wb_flush_put(struct wb_flush *f)
{
	int last;

	pthread_mutex_lock(&f->mu);
	last = !--f->refs;
	pthread_mutex_unlock(&f->mu);
	if (last) {
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cv);
		free(f);
	}
}

static void *wb_flush_main(void *arg)
{
	struct wb_flush *f = arg;
	int fd = open(f->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	thread_name("repfs-wbflush");
	if (fd >= 0) {
		if (syncfs(fd) < 0)
			rlog(LOG_WARNING, "unable to write back '%s' before stepping down: %s", f->path,
			     strerror(errno));
		close(fd);
	}
	pthread_mutex_lock(&f->mu);
	f->done = 1;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	wb_flush_put(f);
	return NULL;
}

/*
 * With the writeback cache, what programs wrote may still be in the kernel's
 * pages: it is written back through the mount while this node still leads,
 * so that it becomes records like every earlier write. In a thread of its
 * own, waited for at most WB_FLUSH_MS (a leader that cannot commit, say):
 * what is written back after the step-down fails with EROFS, which the
 * writer sees at its fsync or close. 1 if the wait ran out (the step-down's
 * answer says so: a switchover then does not carry everything).
 */
static int wb_flush(struct node *n)
{
	struct wb_flush *f;
	struct timespec until;
	pthread_t t;
	int late, ms = WB_FLUSH_MS;

	if (!n->wb || !n->se || !n->mountpoint[0] || !(f = calloc(1, sizeof(*f))))
		return 0;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->refs = 2;
	snprintf(f->path, sizeof(f->path), "%s", n->mountpoint);
	if (pthread_create(&t, NULL, wb_flush_main, f)) {
		f->refs = 1;
		wb_flush_put(f);
		return 0;
	}
	pthread_detach(t);
	/* tests: a wait that runs out while the kernel still writes back */
	if (getenv("REPFS_TEST_WB_FLUSH_MS") && atoi(getenv("REPFS_TEST_WB_FLUSH_MS")) >= 0)
		ms = atoi(getenv("REPFS_TEST_WB_FLUSH_MS"));
	until = deadline_in_ms(CLOCK_REALTIME, ms);
	pthread_mutex_lock(&f->mu);
	while (!f->done)
		if (pthread_cond_timedwait(&f->cv, &f->mu, &until) == ETIMEDOUT)
			break;
	late = !f->done;
	if (late)
		rlog(LOG_WARNING,
		     "the kernel was still writing back '%s' when the wait ran out; stepping down without it "
		     "(what it writes back from now on fails with EROFS)",
		     n->mountpoint);
	pthread_mutex_unlock(&f->mu);
	wb_flush_put(f);
	return late;
}

int node_step_down(struct node *n, uint64_t epoch, int *wb_late)
{
	int ret, late;

	late = wb_flush(n);
	if (wb_late)
		*wb_late = late;
	node_lock_settled(n);
	ret = state_change(n, ROLE_FOLLOWER, epoch > n->st.epoch ? epoch : n->st.epoch);
	pthread_mutex_unlock(&n->seq_lock);
	if (ret)
		return ret;
	rlog(LOG_NOTICE, "stepped down: now a follower (epoch %" PRIu64 ")", n->st.epoch);
	return remount(n, 0);
}
