/* checkpoint.c -- group commit, checkpoints and the log's retention
 *
 * Two threads of every node: the flusher makes the log durable every
 * NODE_COMMIT_INTERVAL_MS (group commit), and the checkpointer records how
 * far the tree is durably applied, so that recovery replays only what
 * follows, and trims the log to its --log-retain budget. A checkpoint is a
 * syncfs() of the whole file system under DATADIR: it is taken only when
 * something needs it (docs/crash-recovery.md, "Checkpoints").
 */
#include "node.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../replication/repl.h"

static void node_trim(struct node *n, uint64_t checkpoint, int prune);

/*
 * Nothing moves while a snapshot is being received (the log then starts at
 * the snapshot's position, and the tree is the old one), nor when a rewind
 * or a snapshot replaced the history during the syncfs(): what was applied
 * before it is not what the log holds now. A failed save puts
 * n->st.checkpoint back to what the state file holds, which the
 * checkpointer trims to.
 */
int node_checkpoint(struct node *n)
{
	struct node_state st;
	uint64_t applied, history, before;
	int ret;

	pthread_mutex_lock(&n->seq_lock);
	applied = n->applied;
	history = n->history;
	pthread_mutex_unlock(&n->seq_lock);
	if (node_snapshot_pending(n))
		return 0;
	ret = oplog_sync(n->log, applied);
	if (ret)
		return ret;
	if (syncfs(store_rootfd(n->store)) < 0)
		return -errno;
	if (n->bg_started && getenv("REPFS_TEST_CHECKPOINT_DELAY_MS")) {
		/* tests: a syncfs that takes long (tests/fault/checkpoint_slow.sh) */
		long ms = atol(getenv("REPFS_TEST_CHECKPOINT_DELAY_MS"));
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
		rlog(LOG_INFO, "test: checkpoint held %ld ms", ms);
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&n->seq_lock);
	if (history != n->history || n->snap_pending) {
		pthread_mutex_unlock(&n->seq_lock);
		return 0;
	}
	before = n->st.checkpoint;
	if (applied > n->st.checkpoint || n->st.checkpoint > oplog_last(n->log).seq)
		n->st.checkpoint = applied;
	st = n->st;
	ret = state_save(n->dfd, &st);
	if (ret)
		n->st.checkpoint = before;	/* not saved: the next one tries again */
	pthread_mutex_unlock(&n->seq_lock);
	if (ret)
		return ret;
	node_trim(n, st.checkpoint, 1);
	return 0;
}

/*
 * Retention (like PostgreSQL's wal_keep_size and replication slots): the log
 * is kept whole up to log_retain bytes, so followers that were away can catch
 * up from it and `repfs replay` reproduces the tree. Past that, the oldest
 * segments go -- first those every known follower holds, then, if still
 * over, those a laggard lacks (it will need a resync; status says so) --
 * but never what crash recovery needs (after the checkpoint).
 * Dead id markers below the checkpoint can never matter again (prune: a
 * walk of the whole index, left to the checkpoints).
 */
static void node_trim(struct node *n, uint64_t checkpoint, int prune)
{
	uint64_t need = repl_min_durable(n->repl), pin = repl_snapshot_pin(n->repl), removed = 0, pruned = 0,
		 more = 0, keep = checkpoint + 1;

	/* a snapshot in flight keeps what followed it whatever the budget: else it could never finish */
	if (pin < keep)
		keep = pin;
	if (need != UINT64_MAX && need + 1 < keep)
		oplog_trim(n->log, need + 1, n->log_retain, &removed);
	oplog_trim(n->log, keep, n->log_retain, &more);
	if (removed + more)
		rlog(LOG_INFO, "log over its %" PRIu64 " byte budget: %" PRIu64 " bytes before seq %" PRIu64 " removed",
		     n->log_retain, removed + more, oplog_first_seq(n->log));
	if (prune && store_prune_ids(n->store, checkpoint, &pruned) == 0 && pruned)
		rlog(LOG_DEBUG, "pruned %" PRIu64 " dead id markers", pruned);
}

/* Waits on bg_wake for ms or until stopping; returns stopping. Called with bg_lock held. */
static int bg_nap(struct node *n, long ms)
{
	struct timespec until = deadline_in_ms(CLOCK_REALTIME, ms);

	if (!n->stopping)
		pthread_cond_timedwait(&n->bg_wake, &n->bg_lock, &until);
	return n->stopping;
}

/* Group commit: every NODE_COMMIT_INTERVAL_MS, the log is made durable. */
static void *flusher_main(void *arg)
{
	struct node *n = arg;

	thread_name("repfs-flush");
	pthread_mutex_lock(&n->bg_lock);
	while (!bg_nap(n, NODE_COMMIT_INTERVAL_MS)) {
		pthread_mutex_unlock(&n->bg_lock);
		if (oplog_durable(n->log) < oplog_last(n->log).seq)
			node_sync_local(n, 0);
		pthread_mutex_lock(&n->bg_lock);
	}
	pthread_mutex_unlock(&n->bg_lock);
	return NULL;
}

static int log_over_budget(struct node *n)
{
	return oplog_bytes(n->log) > n->log_retain + OPLOG_SEGMENT_BYTES;
}

/* Everything applied is already at or below the checkpoint. */
static int node_checkpointed(struct node *n)
{
	int ret;

	pthread_mutex_lock(&n->seq_lock);
	ret = n->applied == n->st.checkpoint;
	pthread_mutex_unlock(&n->seq_lock);
	return ret;
}

static uint64_t log_end_pos(struct node *n)
{
	struct oplog_peek p;

	oplog_peek(n->log, &p, 100);	/* past it, read without the lock: close enough */
	return p.end_pos;
}

/*
 * Checkpoints every NODE_CHECKPOINT_INTERVAL_S, and when the log is over its
 * budget by more than the last checkpoint lets go (it can only shrink down
 * to the checkpoint). A thread of its own: a checkpoint's syncfs() writes
 * back the whole tree, which takes seconds after a large write, and the
 * group commit must not wait for it.
 */
static void *checkpointer_main(void *arg)
{
	struct node *n = arg;
	int64_t last_ckpt = now_ns();
	int taken = 0;		/* a checkpoint since the start, by this thread */
	uint64_t ckpt_end = 0;	/* the log's end position when it was taken */
	/* tests: checkpoints farther apart (tests/integration/log_retain.sh) */
	const char *test_interval = getenv("REPFS_TEST_CHECKPOINT_INTERVAL_S");
	unsigned interval_s = test_interval ? (unsigned)atoi(test_interval) : 0;
	int64_t interval_ns = (int64_t)(interval_s ? interval_s : NODE_CHECKPOINT_INTERVAL_S) * 1000000000;

	thread_name("repfs-ckpt");
	pthread_mutex_lock(&n->bg_lock);
	while (!bg_nap(n, NODE_COMMIT_INTERVAL_MS)) {
		int due;

		pthread_mutex_unlock(&n->bg_lock);
		due = now_ns() - last_ckpt > interval_ns;
		if (!due && log_over_budget(n) && !node_snapshot_pending(n)) {
			uint64_t end = log_end_pos(n), covered;

			/*
			 * Segments the last checkpoint covers go without another:
			 * its syncfs() writes back every dirty page of the file
			 * system, and a log over its budget is one being written
			 * (an untar in `make bench` paid two of 180 ms each). A
			 * new one frees whole segments only, so it waits for a
			 * segment's growth (a snapshot in flight holds the log
			 * over its budget: else a syncfs every 100 ms).
			 */
			pthread_mutex_lock(&n->seq_lock);
			covered = n->st.checkpoint;
			pthread_mutex_unlock(&n->seq_lock);
			if (taken)
				node_trim(n, covered, 0);
			due = log_over_budget(n) &&
			      (!taken || end < ckpt_end || end - ckpt_end >= OPLOG_SEGMENT_BYTES);
			if (due)
				rlog(LOG_INFO, "log over its %" PRIu64 " byte budget past checkpoint %" PRIu64
					       ": checkpointing", n->log_retain, covered);
		} else if (due && !log_over_budget(n) && node_checkpointed(n)) {
			/* nothing applied since: a syncfs() of the whole file system for nothing */
			last_ckpt = now_ns();
			due = 0;
		}
		if (due) {
			uint64_t end = log_end_pos(n);
			int ret = node_checkpoint(n);

			if (ret) {
				rlog(LOG_ERR, "checkpoint failed: %s", strerror(-ret));
			} else {
				taken = 1;
				ckpt_end = end;
			}
			last_ckpt = now_ns();
		}
		pthread_mutex_lock(&n->bg_lock);
	}
	pthread_mutex_unlock(&n->bg_lock);
	return NULL;
}

/* Tells the flusher and the checkpointer to stop. */
static void bg_tell_stop(struct node *n)
{
	pthread_mutex_lock(&n->bg_lock);
	n->stopping = 1;
	pthread_cond_broadcast(&n->bg_wake);
	pthread_mutex_unlock(&n->bg_lock);
}

int node_start_sync(struct node *n)
{
	int ret = pthread_create(&n->flusher, NULL, flusher_main, n);

	if (ret)
		return -ret;
	ret = pthread_create(&n->checkpointer, NULL, checkpointer_main, n);
	if (ret) {
		bg_tell_stop(n);
		pthread_join(n->flusher, NULL);
		return -ret;
	}
	return 0;
}

void node_stop_sync(struct node *n)
{
	bg_tell_stop(n);
	pthread_join(n->flusher, NULL);
	pthread_join(n->checkpointer, NULL);
}
