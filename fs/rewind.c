/* rewind.c -- a diverged old leader rejoins: keep its extra writes, go back to the branch point
 *
 * An old leader that wrote (async) what no follower received has records the
 * new history lacks: those after the seq where the new epoch branched. It
 * keeps them under DATADIR/divergent/<epoch>-<first seq>/ -- records.txt (one
 * line per record: its time, then as `repfs log` prints it) and files/ (the versions of
 * the files they touched as they were before the rejoin) -- then rebuilds its
 * tree from its own log up to the branch point, cuts the log back there, and
 * follows the new leader from that point. `repfs divergent` lists, shows and
 * restores what was kept. Nothing is dropped silently.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "fuse_ops.h"
#include "inodes.h"
#include "node.h"

static int mkdirs(int dfd, const char *rel)
{
	char buf[PATH_MAX];

	snprintf(buf, sizeof(buf), "%s", rel);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdirat(dfd, buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdirat(dfd, buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Copies the tree's current version of rel (a file or a symlink) into files/rel of the entry. */
static void keep_version(struct node *n, int entryfd, const char *rel)
{
	char dst[PATH_MAX + 8], parent[PATH_MAX + 8];
	char *slash;
	int ret;

	if (!*rel || faccessat(store_rootfd(n->store), rel, F_OK, AT_SYMLINK_NOFOLLOW) < 0)
		return;
	snprintf(dst, sizeof(dst), "files/%s", rel);
	snprintf(parent, sizeof(parent), "%s", dst);
	slash = strrchr(parent, '/');
	if (slash) {
		*slash = 0;
		mkdirs(entryfd, parent);
	}
	ret = copy_entry_at(store_rootfd(n->store), rel, entryfd, dst);
	if (ret && ret != -EINVAL)	/* directories and special files keep nothing to copy */
		rlog(LOG_WARNING, "unable to keep '/%s': %s", rel, strerror(-ret));
}

/* Saves records after..last (and the files they touched) under divergent/; returns the entry's name. */
static int keep_divergent(struct node *n, uint64_t after, uint64_t last_epoch, char *entry, size_t elen)
{
	struct oplog_reader *rd = NULL;
	struct record r;
	int dfd = -1, efd = -1, ret;
	FILE *f = NULL;

	snprintf(entry, elen, "%" PRIu64 "-%" PRIu64, last_epoch, after + 1);
	dfd = openat(n->dfd, "divergent", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	ret = mkdirs(dfd, entry);
	if (!ret && (efd = openat(dfd, entry, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		ret = -errno;
	if (!ret) {
		int fd = openat(efd, "records.txt", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		f = fd >= 0 ? fdopen(fd, "w") : NULL;
		if (!f)
			ret = -errno;
	}
	if (!ret)
		ret = oplog_reader_open(&rd, n->logdirfd, n->key, after + 1);
	while (!ret && oplog_reader_next(rd, &r) == 1) {
		char line[3 * PATH_MAX], when[40];
		time_t secs = (time_t)(r.time_ns / 1000000000);
		struct tm tm;
		record_describe(&r, line, sizeof(line));
		gmtime_r(&secs, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		fprintf(f, "%s %s\n", when, line);
		if (!(r.flags & REC_F_NOPATH)) {
			keep_version(n, efd, r.path);
			if (r.path2 && *r.path2)
				keep_version(n, efd, r.path2);
		}
	}
	if (f && fclose(f) != 0 && !ret)
		ret = -EIO;
	if (!ret && fsync(efd) < 0)
		ret = -errno;
	oplog_reader_free(rd);
	if (efd >= 0)
		close(efd);
	close(dfd);
	return ret;
}

/* Removes path and its id index (path.ids), if there. */
static void remove_tree(const char *path)
{
	char ids[PATH_MAX + 64];

	remove_all(path);
	snprintf(ids, sizeof(ids), "%s.ids", path);
	remove_all(ids);
}

/*
 * Replays the records from..upto of the node's log onto st (snapshot: onto
 * a received snapshot; then *unsure, if not NULL, gets replay_unsure()).
 */
static int replay_range(struct node *n, struct store *st, uint64_t from, uint64_t upto, int snapshot, int *unsure)
{
	struct oplog_reader *rd = NULL;
	struct replay *rp = NULL;
	struct record r;
	int ret;

	ret = replay_begin(&rp);
	if (!ret && snapshot)
		replay_snapshot(rp);
	if (!ret)
		ret = oplog_reader_open(&rd, n->logdirfd, n->key, from);
	while (!ret && (ret = oplog_reader_next(rd, &r)) == 1 && r.seq <= upto) {
		int a = replay_apply(rp, st, &r);
		/* a change of names left out: the trail to follow when a replay ends wrong */
		if (a == 1 && snapshot && (r.type == REC_CREATE || r.type == REC_LINK || r.type == REC_UNLINK ||
					   r.type == REC_RMDIR || r.type == REC_RENAME))
			rlog(LOG_DEBUG, "snapshot replay: %s at seq %" PRIu64 " on '/%s' left out (listed after it, or superseded)",
			     record_type_name(r.type), r.seq, r.path);
		if (a < 0)	/* the caller says what failed; this says where */
			rlog(LOG_WARNING, "%s: the %s at seq %" PRIu64 " on '/%s' failed: %s",
			     snapshot ? "snapshot replay" : "replay", record_type_name(r.type), r.seq, r.path,
			     strerror(-a));
		ret = a < 0 ? a : 0;
	}
	if (ret == 1)
		ret = 0;	/* stopped past upto */
	if (rp && unsure)
		*unsure = replay_unsure(rp);
	if (rp && replay_finish(rp, st) < 0 && !ret)
		ret = -EIO;
	oplog_reader_free(rd);
	return ret;
}

/* Swaps DATADIR/<fresh> (and its index) in for the tree, then removes the old one. */
static int install_tree(struct node *n, const char *fresh_name)
{
	char tree[PATH_MAX + 16], fresh[PATH_MAX + 16], old[PATH_MAX + 32], a[PATH_MAX + 40], b[PATH_MAX + 40];
	int ret;

	snprintf(tree, sizeof(tree), "%s/tree", n->datadir);
	snprintf(fresh, sizeof(fresh), "%s/%s", n->datadir, fresh_name);
	snprintf(old, sizeof(old), "%s/tree.old", n->datadir);
	remove_tree(old);
	if (rename(tree, old) < 0)
		return -errno;
	snprintf(a, sizeof(a), "%s.ids", tree);
	snprintf(b, sizeof(b), "%s.ids", old);
	if (rename(a, b) < 0 || rename(fresh, tree) < 0)
		return -errno;
	snprintf(a, sizeof(a), "%s.ids", fresh);
	snprintf(b, sizeof(b), "%s.ids", tree);
	if (rename(a, b) < 0 || fsync(n->dfd) < 0)
		return -errno;
	ret = store_reopen(n->store);
	remove_tree(old);
	return ret;
}

/* Builds DATADIR/tree.rewind from the log up to seq, then swaps it in for tree. */
static int rebuild_tree(struct node *n, uint64_t seq)
{
	char fresh[PATH_MAX + 16];
	struct store *st = NULL;
	int ret;

	snprintf(fresh, sizeof(fresh), "%s/tree.rewind", n->datadir);
	remove_tree(fresh);
	if (mkdir(fresh, 0755) < 0)
		return -errno;
	ret = store_open(&st, fresh);
	if (!ret)
		ret = replay_range(n, st, 1, seq, 0, NULL);
	/* the state file will say seq is checkpointed: the tree must be on disk first */
	if (!ret && syncfs(store_rootfd(st)) < 0)
		ret = -errno;
	store_free(st);
	if (ret)
		return ret;
	{
		/* the root's owner and mode are not in the log unless changed: keep the old ones
		 * (its times are the log's: replay set them) */
		struct stat rs;
		if (fstat(store_rootfd(n->store), &rs) == 0 &&
		    (chmod(fresh, rs.st_mode & 07777) < 0 || chown(fresh, rs.st_uid, rs.st_gid) < 0))
			rlog(LOG_WARNING, "unable to keep the root's owner and mode: %s", strerror(errno));
	}
	/* the old tree served its purpose: its writes are kept under divergent/ */
	return install_tree(n, "tree.rewind");
}

int node_snapshot_start(struct node *n, struct pos at, const uint8_t mac[CRYPTO_MAC_BYTES], uint64_t epoch)
{
	int fd, ret = 0;

	pthread_mutex_lock(&n->seq_lock);
	if (n->st.role != ROLE_FOLLOWER) {
		ret = -EPERM;
		goto out;
	}
	fd = openat(n->dfd, NODE_SNAPSHOT_MARKER, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || fsync(fd) < 0 || fsync(n->dfd) < 0) {
		ret = -errno;
		if (fd >= 0)
			close(fd);
		goto out;
	}
	close(fd);
	n->snap_pending = 1;
	n->history++;
	ret = oplog_reset(n->log, at, mac);
	if (ret)
		goto out;
	if (epoch > n->st.epoch)
		n->st.epoch = epoch;
	/*
	 * The log now starts after at, and all of it is for the snapshot's
	 * replay: a checkpoint of the old history (a diverged node's, past at)
	 * must not let a trim take any of it. Recovery replays nothing while
	 * the snapshot marker is there.
	 */
	if (n->st.checkpoint > at.seq)
		n->st.checkpoint = at.seq;
	ret = state_save(n->dfd, &n->st);
out:
	pthread_mutex_unlock(&n->seq_lock);
	return ret;
}

int node_snapshot_pending(struct node *n)
{
	int p;

	pthread_mutex_lock(&n->seq_lock);
	p = n->snap_pending;
	pthread_mutex_unlock(&n->seq_lock);
	return p;
}

int node_snapshot_finish(struct node *n, uint64_t upto, int *unsure, char *err, size_t errlen)
{
	char fresh[PATH_MAX + 16];
	struct store *st = NULL;
	uint64_t first = oplog_first_seq(n->log);
	int ret;

	snprintf(fresh, sizeof(fresh), "%s/%s", n->datadir, NODE_SNAPSHOT_TREE);
	ret = store_open(&st, fresh);
	if (ret) {
		snprintf(err, errlen, "unable to open the snapshot: %s", strerror(-ret));
		return ret;
	}
	/* the records written while the tree was being sent */
	ret = replay_range(n, st, first, upto, 1, unsure);
	if (!ret && syncfs(store_rootfd(st)) < 0)
		ret = -errno;
	store_free(st);
	if (ret) {
		snprintf(err, errlen, "unable to replay the log onto the snapshot: %s", strerror(-ret));
		return ret;
	}
	pthread_mutex_lock(&n->seq_lock);
	ret = install_tree(n, NODE_SNAPSHOT_TREE);
	if (ret) {
		snprintf(err, errlen, "unable to install the snapshot: %s", strerror(-ret));
		n->fault = EIO;
		pthread_mutex_unlock(&n->seq_lock);
		return ret;
	}
	n->history++;
	n->applied = upto;
	n->st.checkpoint = upto;
	ret = state_save(n->dfd, &n->st);
	if (!ret && (unlinkat(n->dfd, NODE_SNAPSHOT_MARKER, 0) < 0 || fsync(n->dfd) < 0))
		ret = -errno;
	if (ret) {
		snprintf(err, errlen, "unable to record the snapshot's position: %s", strerror(-ret));
		pthread_mutex_unlock(&n->seq_lock);
		return ret;
	}
	/* what arrived after upto was only logged: apply it, then follow as usual */
	n->snap_pending = 0;
	n->hold_at = upto;
	pthread_mutex_unlock(&n->seq_lock);
	ino_invalidate_all(n);
	node_release(n);
	return 0;
}

int node_rewind(struct node *n, uint64_t seq, const uint8_t mac[CRYPTO_MAC_BYTES], char *err, size_t errlen)
{
	struct oplog_reader *rd = NULL;
	struct record r;
	struct pos last;
	char entry[64];
	int ret = 0, ok = 0;

	pthread_mutex_lock(&n->seq_lock);
	last = oplog_last(n->log);
	if (n->st.role != ROLE_FOLLOWER || seq >= last.seq) {
		snprintf(err, errlen, "nothing to rewind (at seq %" PRIu64 ", branch at %" PRIu64 ")", last.seq, seq);
		ret = -EINVAL;
		goto out;
	}
	/* our history up to the branch point must be the leader's, and our log must hold it all */
	if (oplog_first_seq(n->log) > 1) {
		ok = 0;
	} else if (seq == 0) {
		ok = 1;
	} else if (oplog_reader_open(&rd, n->logdirfd, n->key, seq) == 0 && oplog_reader_next(rd, &r) == 1 &&
		   r.seq == seq) {
		size_t len;
		const uint8_t *raw = oplog_reader_raw(rd, &len);
		ok = mac_equal(record_mac_of(raw, len), mac) == 0;
	}
	oplog_reader_free(rd);
	ret = keep_divergent(n, seq, last.epoch, entry, sizeof(entry));
	if (ret) {
		snprintf(err, errlen, "unable to keep the divergent writes: %s", strerror(-ret));
		goto out;
	}
	rlog(LOG_WARNING, "diverged: records %" PRIu64 "..%" PRIu64 " of epoch %" PRIu64
			  " are not in the leader's history; kept in 'divergent/%s'",
	     seq + 1, last.seq, last.epoch, entry);
	if (oplog_first_seq(n->log) > seq + 1)
		rlog(LOG_WARNING, "records %" PRIu64 "..%" PRIu64 " had already left the log (--log-retain): not kept",
		     seq + 1, oplog_first_seq(n->log) - 1);
	if (!ok) {
		/*
		 * Our log cannot rebuild the tree as it was at the branch point
		 * (it was trimmed, or our history differs before it): a resync
		 * from the leader does, sending only what differs (snapshot.c).
		 */
		snprintf(err, errlen, "diverged after seq %" PRIu64 " and unable to rewind from the log: resyncing", seq);
		rlog(LOG_NOTICE, "%s", err);
		ret = -EAGAIN;
		goto out;
	}
	ret = rebuild_tree(n, seq);
	if (!ret)
		ret = oplog_rewind(n->log, seq);
	if (ret) {
		snprintf(err, errlen, "unable to go back to seq %" PRIu64 ": %s", seq, strerror(-ret));
		n->fault = EIO;
		goto out;
	}
	n->history++;
	n->applied = seq;
	n->st.checkpoint = seq;
	ret = state_save(n->dfd, &n->st);
	rlog(LOG_NOTICE, "rewound to seq %" PRIu64 " (the branch point); following the leader from there", seq);
out:
	pthread_mutex_unlock(&n->seq_lock);
	if (!ret)
		ino_invalidate_all(n);
	return ret;
}

int node_divergent_count(struct node *n)
{
	int fd = openat(n->dfd, "divergent", O_RDONLY | O_DIRECTORY | O_CLOEXEC), count = 0;
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *de;

	while (d && (de = readdir(d)))
		count += de->d_name[0] != '.';
	if (d)
		closedir(d);
	else if (fd >= 0)
		close(fd);
	return count;
}
