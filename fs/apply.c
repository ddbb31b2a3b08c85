/* apply.c -- the one apply path: a log record becomes a change of the tree
 *
 * Each record type checks its precondition (the ids of the objects it names),
 * performs the change with *at() calls relative to the tree root, then sets
 * the timestamps the change affects to the record's time. See store.h for
 * the contract and docs/apply.md for each type's precondition and effect.
 */
#include "store.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../lib/util.h"

/* Outcome of a precondition check. */
enum match { MATCH_YES, MATCH_NONE, MATCH_OTHER, MATCH_NOID };

static enum match id_at(struct store *st, const char *rel, const uint8_t id[FILE_ID_BYTES])
{
	uint8_t have[FILE_ID_BYTES];
	int ret = store_get_id(st, rel, have);

	if (ret == -ENOENT || ret == -ENOTDIR)
		return MATCH_NONE;
	if (ret == -ENODATA)
		return MATCH_NOID;
	if (ret)
		return MATCH_NONE;
	return memcmp(have, id, FILE_ID_BYTES) ? MATCH_OTHER : MATCH_YES;
}

static int id_is_zero(const uint8_t id[FILE_ID_BYTES])
{
	for (int i = 0; i < FILE_ID_BYTES; i++)
		if (id[i])
			return 0;
	return 1;
}

/* Copies the parent of rel into buf ("." for a top-level name). */
static void parent_of(const char *rel, char *buf, size_t len)
{
	const char *slash = strrchr(rel, '/');

	if (!slash || (size_t)(slash - rel) >= len) {
		snprintf(buf, len, ".");
		return;
	}
	memcpy(buf, rel, (size_t)(slash - rel));
	buf[slash - rel] = 0;
}

static int set_mtime_at(struct store *st, const char *rel, int64_t t)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, ts_of_ns(t) };

	return utimensat(store_rootfd(st), rel, ts, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int touch_parent(struct store *st, const char *rel, int64_t t)
{
	char parent[PATH_MAX];

	parent_of(rel, parent, sizeof(parent));
	return set_mtime_at(st, parent, t);
}

/*
 * The object with this id, by the index, or -ENOENT: a directory's entry
 * there is only a marker (a plain empty file, without the id), and a change
 * applied to it would be lost and, for a default ACL, refused (EACCES).
 */
static int open_by_id(struct store *st, const uint8_t id[FILE_ID_BYTES], int flags)
{
	uint8_t have[FILE_ID_BYTES];
	int fd = store_open_by_id(st, id, flags);

	if (fd >= 0 && (store_fget_id(fd, have) || memcmp(have, id, FILE_ID_BYTES))) {
		close(fd);
		return -ENOENT;
	}
	return fd;
}

/* Opens the regular file named by r (path, id) for writing, or uses hint. */
static int open_obj(struct store *st, const struct record *r, const char *path, const uint8_t *id,
		    int hint_fd, int flags, int *fd)
{
	uint8_t have[FILE_ID_BYTES];
	int ret;

	*fd = -1;
	if (hint_fd >= 0) {
		*fd = hint_fd;
		return 0;
	}
	/* replay and followers: records name files by id, and live files are linked by id */
	if ((*fd = store_cached_fd(st, id)) >= 0)
		return 0;
	*fd = -1;
	if (r->flags & REC_F_NOPATH) {
		ret = -ENOENT;
		goto by_id;
	}
	/* O_NONBLOCK: a FIFO that took the name (a follower's tree, names moved) must not hang the apply */
	*fd = openat(store_rootfd(st), store_rel(path), flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (*fd < 0) {
		ret = -errno;
		*fd = -1;
		goto by_id;
	}
	ret = store_fget_id(*fd, have);
	if (!ret && memcmp(have, id, FILE_ID_BYTES))
		ret = -ESTALE;
	if (ret) {
		close(*fd);
		*fd = -1;
		goto by_id;
	}
	return 0;
by_id:
	/* its name now belongs to another object (or to none): reach the file by its id */
	if ((ret == -ENOENT || ret == -ESTALE) && (*fd = open_by_id(st, id, flags)) >= 0)
		return 0;
	*fd = -1;
	return ret;
}

static void close_obj(int fd, int hint_fd)
{
	if (fd >= 0 && fd != hint_fd)
		close(fd);
}

/*
 * Creates the object of a REC_CREATE without its final attributes. A
 * regular file or directory for our own user (root) is made with its final
 * mode (finish_object() then has nothing to change); one for another user
 * is private to us until it has its owner.
 */
static int make_object(struct store *st, const struct record *r, const char *rel, int *fd)
{
	int root = store_rootfd(st);
	mode_t type = r->mode & S_IFMT;
	int ours = r->uid == geteuid();

	switch (type) {
	case S_IFREG:
		*fd = openat(root, rel, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			   ours ? r->mode & 07777 : 0600);
		return *fd < 0 ? -errno : 0;
	case S_IFDIR:
		if (mkdirat(root, rel, ours ? r->mode & 07777 : 0700) < 0)
			return -errno;
		/* finished through a descriptor: one walk of rel instead of four */
		*fd = openat(root, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		return 0;
	case S_IFLNK:
		if (!r->data_len || ((const char *)r->data)[r->data_len - 1])
			return -EINVAL;
		return symlinkat(r->data, root, rel) < 0 ? -errno : 0;
	case S_IFIFO:
	case S_IFCHR:
	case S_IFBLK:
	case S_IFSOCK:
		return mknodat(root, rel, type | 0600, (dev_t)r->rdev) < 0 ? -errno : 0;
	default:
		return -EINVAL;
	}
}

/* Gives a just-made object its id, owner, mode and times. */
static int finish_object(struct store *st, const struct record *r, const char *rel, int fd, int tail_later)
{
	int root = store_rootfd(st);
	struct timespec ts[2] = { ts_of_ns(r->time_ns), ts_of_ns(r->time_ns) };
	char path[PATH_MAX + 64];
	int tmp = -1, ret;

	if (fd >= 0) {
		/*
		 * A regular file or directory we just made and opened: no path
		 * walks, and no chown or chmod where it already has the owner
		 * and mode (a root caller's file: tar, cp as root).
		 */
		struct stat sb;
		if (fsetxattr(fd, ID_XATTR, r->id, FILE_ID_BYTES, 0) < 0 || fstat(fd, &sb) < 0)
			return -errno;
		if ((sb.st_uid != r->uid || sb.st_gid != r->gid) && fchown(fd, r->uid, r->gid) < 0)
			return -errno;
		/* after the chown, which can clear setgid bits */
		if ((sb.st_uid != r->uid || sb.st_gid != r->gid || (sb.st_mode & 07777) != (r->mode & 07777)) &&
		    fchmod(fd, r->mode & 07777) < 0)
			return -errno;
		if (futimens(fd, ts) < 0)
			return -errno;
		return tail_later ? 0 : touch_parent(st, rel, r->time_ns);
	}
	ret = store_xpath(st, rel, path, sizeof(path), &tmp);
	if (!ret && lsetxattr(path, ID_XATTR, r->id, FILE_ID_BYTES, 0) < 0)
		ret = -errno;
	if (tmp >= 0)
		close(tmp);
	if (ret)
		return ret;
	if (fchownat(root, rel, r->uid, r->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if ((r->mode & S_IFMT) != S_IFLNK && fchmodat(root, rel, r->mode & 07777, 0) < 0)
		return -errno;
	if (utimensat(root, rel, ts, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return touch_parent(st, rel, r->time_ns);
}

static int apply_create(struct store *st, const struct record *r, unsigned flags, int *out_fd)
{
	const char *rel = store_rel(r->path);
	int fd = -1, ret, tail_later;

	/* strict (the leader): whatever holds the name makes make_object() fail with EEXIST */
	switch ((flags & APPLY_STRICT) ? MATCH_NONE : id_at(st, rel, r->id)) {
	case MATCH_YES:
		/* made, and given its id, but a crash came before it was finished and indexed */
		if (!(flags & APPLY_STRICT) && store_id_state(st, r->id) == ID_UNKNOWN)
			break;
		return (flags & APPLY_STRICT) ? -EEXIST : 1;
	case MATCH_OTHER:
		return (flags & APPLY_STRICT) ? -EEXIST : 1;
	case MATCH_NOID:
		if (flags & APPLY_STRICT)
			return -EEXIST;
		break;	/* made but not finished before a crash: finish it */
	case MATCH_NONE:
		/* replayed onto a newer tree: the object lives elsewhere now, or died later */
		if (!(flags & APPLY_STRICT) && store_id_state(st, r->id) != ID_UNKNOWN)
			return 1;
		ret = make_object(st, r, rel, &fd);
		if (ret)
			return ret;
		break;
	}
	/* a regular file's with a descriptor for its caller; a directory's (made through one) */
	tail_later = (flags & APPLY_TAIL_LATER) && fd >= 0 &&
		     ((r->mode & S_IFMT) == S_IFREG ? out_fd != NULL : (r->mode & S_IFMT) == S_IFDIR);
	ret = finish_object(st, r, rel, fd, tail_later);
	if (!ret && !tail_later)
		ret = fd >= 0 && (r->mode & S_IFMT) == S_IFREG ? store_id_born_fd(st, r->id, fd, rel)
							       : store_id_born(st, r->id, rel, (r->mode & S_IFMT) == S_IFDIR);
	if (ret) {
		if (fd >= 0)
			close(fd);
		if (flags & APPLY_STRICT)
			unlinkat(store_rootfd(st), rel, (r->mode & S_IFMT) == S_IFDIR ? AT_REMOVEDIR : 0);
		return ret;
	}
	if (out_fd && fd >= 0 && (r->mode & S_IFMT) == S_IFREG)
		*out_fd = fd;
	else if (fd >= 0)
		close(fd);
	return 0;
}

int apply_create_adopt(struct store *st, const struct record *r, int fd)
{
	const char *rel = store_rel(r->path);
	int ret;

	/* finished before it has a name: the name never shows it ours, without its id */
	ret = finish_object(st, r, rel, fd, 1);
	if (ret)
		return ret;
	/* by the descriptor (this needs CAP_DAC_READ_SEARCH; else through /proc) */
	if (linkat(fd, "", store_rootfd(st), rel, AT_EMPTY_PATH) < 0) {
		char proc[64];
		if (errno != ENOENT && errno != EPERM)
			return -errno;
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
		if (linkat(AT_FDCWD, proc, store_rootfd(st), rel, AT_SYMLINK_FOLLOW) < 0)
			return -errno;
	}
	return apply_create_tail(st, r, fd);
}

int apply_create_tail(struct store *st, const struct record *r, int fd)
{
	const char *rel = store_rel(r->path);
	int ret = touch_parent(st, rel, r->time_ns);

	if (ret)
		return ret;
	return fd >= 0 ? store_id_born_fd(st, r->id, fd, rel)
		       : store_id_born(st, r->id, rel, (r->mode & S_IFMT) == S_IFDIR);
}

/*
 * The seq of the last rename or link that gave an object a name, kept in its
 * inode (8 bytes, native order, as SNAP_LISTED_XATTR; hidden like every
 * trusted.repfs.* attribute). An id at a path says only that the object has
 * that name now, not that it has had it since before the record: replayed
 * onto a newer tree, an object renamed away and later back (a -> b, b -> c,
 * c -> a) meets the precondition of its first rename again; replaying it
 * moved the object to b, and when a later hop was then skipped because a
 * newer object holds its target (c), the object stayed at b, a name the
 * log no longer gives it. With the mark, a rename, link or unlink of an
 * object whose names changed at or after the record's seq is skipped: the
 * tree is past it.
 */
#define NAMED_XATTR ID_XATTR_PREFIX "named"

/* True if the object at rel got a name by a rename or link at seq or later. */
static int named_since(struct store *st, const char *rel, uint64_t seq)
{
	char path[PATH_MAX + 64];
	uint64_t named;
	int tmp, ok;

	if (store_xpath(st, rel, path, sizeof(path), &tmp))
		return 0;
	ok = lgetxattr(path, NAMED_XATTR, &named, sizeof(named)) == sizeof(named) && named >= seq;
	if (tmp >= 0)
		close(tmp);
	return ok;
}

/* Best effort: an object without the mark replays as before the mark existed. */
static void mark_named(struct store *st, const char *rel, uint64_t seq)
{
	char path[PATH_MAX + 64];
	int tmp;

	if (store_xpath(st, rel, path, sizeof(path), &tmp))
		return;
	(void)lsetxattr(path, NAMED_XATTR, &seq, sizeof(seq), 0);
	if (tmp >= 0)
		close(tmp);
}

static int apply_link(struct store *st, const struct record *r, unsigned flags)
{
	const char *from = store_rel(r->path), *to = store_rel(r->path2);
	int root = store_rootfd(st);

	if (id_at(st, to, r->id) == MATCH_YES)
		return (flags & APPLY_STRICT) ? -EEXIST : 1;
	if (id_at(st, from, r->id) != MATCH_YES)
		return (flags & APPLY_STRICT) ? -ENOENT : 1;
	if (!(flags & APPLY_STRICT) && named_since(st, from, r->seq))
		return 1;
	if (linkat(root, from, root, to, 0) < 0)
		return (!(flags & APPLY_STRICT) && errno == EEXIST) ? 1 : -errno;
	mark_named(st, to, r->seq);
	return touch_parent(st, to, r->time_ns);
}

/* True if removing the name rel removes the object itself (its last name). */
static int last_name(struct store *st, const char *rel)
{
	struct stat sb;

	if (fstatat(store_rootfd(st), rel, &sb, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return S_ISDIR(sb.st_mode) || store_nlink(&sb) <= 1;
}

static int apply_remove(struct store *st, const struct record *r, unsigned flags)
{
	const char *rel = store_rel(r->path);
	int last, ret;

	if (id_at(st, rel, r->id) != MATCH_YES)
		return (flags & APPLY_STRICT) ? -ENOENT : 1;
	/* replayed onto a newer tree: the object got this name again later */
	if (!(flags & APPLY_STRICT) && r->type == REC_UNLINK && named_since(st, rel, r->seq))
		return 1;
	last = last_name(st, rel);
	if (unlinkat(store_rootfd(st), rel, r->type == REC_RMDIR ? AT_REMOVEDIR : 0) < 0)
		return -errno;
	if (r->type == REC_RMDIR)
		store_moved(st);
	if (last && (ret = store_id_died(st, r->id, r->seq)))
		return ret;
	return touch_parent(st, rel, r->time_ns);
}

static int apply_rename(struct store *st, const struct record *r, unsigned flags)
{
	const char *from = store_rel(r->path), *to = store_rel(r->path2);
	int root = store_rootfd(st), ret, replaced;
	enum match src = id_at(st, from, r->id), dst = id_at(st, to, r->id2);

	/* replayed onto a newer tree: the object is at path again, by a later rename or link */
	if (!(flags & APPLY_STRICT) && src == MATCH_YES && named_since(st, from, r->seq))
		return 1;
	if (r->op_flags & RENAME_EXCHANGE) {
		if (src != MATCH_YES || dst != MATCH_YES)
			return (flags & APPLY_STRICT) ? -ENOENT : 1;
	} else if (!(flags & APPLY_STRICT) && src == MATCH_YES && id_at(st, to, r->id) == MATCH_YES) {
		/*
		 * The object is at both names: a snapshot's tree holds the name of
		 * a listing made after the rename and the one of a listing made
		 * before it. The rename leaves it at "to" only. (A leader never
		 * logs a rename between two names of one object: it changes nothing.)
		 */
		if (unlinkat(root, from, 0) < 0)
			return errno == ENOENT ? 1 : -errno;
		ret = touch_parent(st, from, r->time_ns);
		if (!ret)
			ret = touch_parent(st, to, r->time_ns);
		return ret;
	} else {
		if (src != MATCH_YES)
			return (flags & APPLY_STRICT) ? -ENOENT : 1;
		if (id_is_zero(r->id2) ? dst != MATCH_NONE : dst != MATCH_YES) {
			if (flags & APPLY_STRICT)
				return (r->op_flags & RENAME_NOREPLACE) ? -EEXIST : -ESTALE;
			if (dst != MATCH_NONE)
				return 1;	/* a newer object is there now */
		}
	}
	replaced = !(r->op_flags & RENAME_EXCHANGE) && dst == MATCH_YES && !id_is_zero(r->id2) &&
		   last_name(st, to);
	if (renameat2(root, from, root, to, r->op_flags) < 0)
		return -errno;
	store_moved(st);
	mark_named(st, to, r->seq);
	if (r->op_flags & RENAME_EXCHANGE)
		mark_named(st, from, r->seq);
	if (replaced && (ret = store_id_died(st, r->id2, r->seq)))
		return ret;
	ret = touch_parent(st, from, r->time_ns);
	if (!ret)
		ret = touch_parent(st, to, r->time_ns);
	return ret;
}

/*
 * A nameless FIFO, socket or device reaches the apply as an O_PATH
 * descriptor (ino_hold_special()), which fchmod(), futimens() and
 * fsetxattr() refuse: its /proc/self/fd link leads to the inode instead.
 * buf, or NULL for an ordinary descriptor (only a record without a path can
 * come with one: the others are not looked at).
 */
static const char *held_path(const struct record *r, int fd, char buf[32])
{
	int fl;

	if (!(r->flags & REC_F_NOPATH) || fd < 0 || (fl = fcntl(fd, F_GETFL)) < 0 || !(fl & O_PATH))
		return NULL;
	snprintf(buf, 32, "/proc/self/fd/%d", fd);
	return buf;
}

static int setattr_on(struct store *st, const struct record *r, unsigned flags, const char *rel, int root,
		      int hint_fd, struct timespec ts[2])
{
	char proc[32];
	const char *held = held_path(r, hint_fd, proc);
	int ret = 0, fd = -1;

	if (held) {
		if (r->op_flags & SA_SIZE)
			return -EINVAL;	/* a FIFO, socket or device has no size to set (nothing changed yet) */
		/* the link is followed: to the held object, never past it */
		root = AT_FDCWD;
		rel = held;
		hint_fd = -1;
	}
	if (r->op_flags & (SA_UID | SA_GID)) {
		uid_t u = (r->op_flags & SA_UID) ? r->uid : (uid_t)-1;
		gid_t g = (r->op_flags & SA_GID) ? r->gid : (gid_t)-1;
		if (hint_fd >= 0 ? fchown(hint_fd, u, g) : fchownat(root, rel, u, g, held ? 0 : AT_SYMLINK_NOFOLLOW))
			return -errno;
	}
	if (r->op_flags & SA_MODE) {
		if (hint_fd >= 0 ? fchmod(hint_fd, r->mode & 07777) : fchmodat(root, rel, r->mode & 07777, 0))
			return -errno;
	}
	if (r->op_flags & SA_SIZE) {
		ret = open_obj(st, r, r->path, r->id, hint_fd, O_WRONLY, &fd);
		if (ret)
			return (flags & APPLY_STRICT) ? ret : 1;
		if (ftruncate(fd, (off_t)r->len) < 0)
			ret = -errno;
		close_obj(fd, hint_fd);
		if (ret)
			return ret;
		ts[1] = ts_of_ns(r->time_ns);
	}
	if (r->op_flags & SA_ATIME)
		ts[0] = ts_of_ns(r->atime_ns);
	if (r->op_flags & SA_MTIME)
		ts[1] = ts_of_ns(r->mtime_ns);
	if (ts[0].tv_nsec != UTIME_OMIT || ts[1].tv_nsec != UTIME_OMIT) {
		if (hint_fd >= 0 ? futimens(hint_fd, ts) : utimensat(root, rel, ts, held ? 0 : AT_SYMLINK_NOFOLLOW))
			return -errno;
	}
	return 0;
}


static int apply_setattr(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	const char *rel = store_rel(r->path);
	int root = store_rootfd(st), ret, own = -1;
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { 0, UTIME_OMIT } };

	if (hint_fd < 0 && ((r->flags & REC_F_NOPATH) || id_at(st, rel, r->id) != MATCH_YES)) {
		if (flags & APPLY_STRICT)
			return -ENOENT;
		/* its name now belongs to another object (or none): reach the file by its id */
		own = open_by_id(st, r->id, (r->op_flags & SA_SIZE) ? O_WRONLY : O_RDONLY);
		if (own < 0)
			return 1;
		hint_fd = own;
	}
	ret = setattr_on(st, r, flags, rel, root, hint_fd, ts);
	if (own >= 0)
		close(own);
	return ret;
}

static int set_fd_mtime(int fd, int64_t t)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, ts_of_ns(t) };

	return futimens(fd, ts) < 0 ? -errno : 0;
}

static int apply_write(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	const uint8_t *p = r->data;
	uint64_t off = r->off;
	size_t left = r->data_len;
	int fd, ret;

	ret = open_obj(st, r, r->path, r->id, hint_fd, O_WRONLY, &fd);
	if (ret)
		return (flags & APPLY_STRICT) ? ret : 1;
	while (left) {
		ssize_t n = pwrite(fd, p, left, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		p += n;
		off += (uint64_t)n;
		left -= (size_t)n;
	}
	if (flags & APPLY_NO_MTIME)
		ret = 0;
	else
		ret = set_fd_mtime(fd, (r->flags & REC_F_KEEP_MTIME) ? r->mtime_ns : r->time_ns);
out:
	close_obj(fd, hint_fd);
	return ret;
}

static int apply_fallocate(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	int fd, ret;

	ret = open_obj(st, r, r->path, r->id, hint_fd, O_WRONLY, &fd);
	if (ret)
		return (flags & APPLY_STRICT) ? ret : 1;
	if (fallocate(fd, (int)r->op_flags, (off_t)r->off, (off_t)r->len) < 0)
		ret = -errno;
	if (!ret)	/* ext4 stamps even KEEP_SIZE; a writeback-cache leader keeps the kernel's */
		ret = set_fd_mtime(fd, (r->flags & REC_F_KEEP_MTIME) ? r->mtime_ns : r->time_ns);
	close_obj(fd, hint_fd);
	return ret;
}

static int apply_copy(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	int in = -1, out = -1, ret;
	loff_t off_in = (loff_t)r->off, off_out = (loff_t)r->off2;
	uint64_t left = r->len;

	ret = open_obj(st, r, r->path, r->id, -1, O_RDONLY, &in);
	if (!ret)
		ret = open_obj(st, r, r->path2, r->id2, hint_fd, O_WRONLY, &out);
	if (ret) {
		ret = (flags & APPLY_STRICT) ? ret : 1;
		goto out;
	}
	if (!(flags & APPLY_STRICT) && r->data_len == STORE_DIGEST_BYTES) {
		/* replayed onto a newer tree where the source has changed since: the
		 * destination got the old bytes then, and later records own it now */
		uint8_t d[STORE_DIGEST_BYTES];
		ret = store_range_digest(in, r->off, r->len, d);
		if (ret)
			goto out;
		if (memcmp(d, r->data, STORE_DIGEST_BYTES)) {
			ret = 1;
			goto out;
		}
	}
	while (left) {
		ssize_t n = copy_file_range(in, &off_in, out, &off_out, left, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;	/* the source ends early: same on every node */
		left -= (uint64_t)n;
	}
	ret = set_fd_mtime(out, r->time_ns);
out:
	close_obj(in, -1);
	close_obj(out, hint_fd);
	return ret;
}

static int change_xattr(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	char path[PATH_MAX + 64];
	const char *rel = store_rel(r->path);
	int tmp = -1, ret;

	if (store_hidden_xattr(r->name))
		return -EPERM;
	if (held_path(r, hint_fd, path)) {
		if (r->type == REC_SETXATTR)
			ret = setxattr(path, r->name, r->data, r->data_len, (int)r->op_flags);
		else
			ret = removexattr(path, r->name);
		return ret < 0 ? -errno : 0;
	}
	if (hint_fd >= 0) {
		if (r->type == REC_SETXATTR)
			ret = fsetxattr(hint_fd, r->name, r->data, r->data_len, (int)r->op_flags);
		else
			ret = fremovexattr(hint_fd, r->name);
		return ret < 0 ? -errno : 0;
	}
	if ((r->flags & REC_F_NOPATH) || id_at(st, rel, r->id) != MATCH_YES) {
		int own;
		if (flags & APPLY_STRICT)
			return -ENOENT;
		own = open_by_id(st, r->id, O_RDONLY);
		if (own < 0)
			return 1;
		ret = change_xattr(st, r, flags, own);
		close(own);
		return (ret == -EEXIST || ret == -ENODATA) ? 1 : ret;
	}
	ret = store_xpath(st, rel, path, sizeof(path), &tmp);
	if (ret)
		return ret;
	if (r->type == REC_SETXATTR)
		ret = lsetxattr(path, r->name, r->data, r->data_len, (int)r->op_flags) < 0 ? -errno : 0;
	else
		ret = lremovexattr(path, r->name) < 0 ? -errno : 0;
	if (tmp >= 0)
		close(tmp);
	/* replayed onto a state where it already took effect */
	if (!(flags & APPLY_STRICT) && (ret == -EEXIST || ret == -ENODATA))
		ret = 1;
	return ret;
}

/* An ACL's change (or an attempt) makes the mount ask the tree again whether objects have one. */
static int apply_xattr(struct store *st, const struct record *r, unsigned flags, int hint_fd)
{
	int ret = change_xattr(st, r, flags, hint_fd);

	/* (XFS also keeps them under trusted.SGI_ACL_*, which root may set directly) */
	if (!strncmp(r->name, "system.posix_acl_", 17) || !strncmp(r->name, "trusted.SGI_ACL_", 16))
		store_acl_changed(st);
	return ret;
}

int apply_record(struct store *st, const struct record *r, unsigned flags, int hint_fd, int *out_fd)
{
	if (out_fd)
		*out_fd = -1;
	switch (r->type) {
	case REC_BRANCH:
		return 0;
	case REC_CREATE:
		return apply_create(st, r, flags, out_fd);
	case REC_LINK:
		return apply_link(st, r, flags);
	case REC_UNLINK:
	case REC_RMDIR:
		return apply_remove(st, r, flags);
	case REC_RENAME:
		return apply_rename(st, r, flags);
	case REC_SETATTR:
		return apply_setattr(st, r, flags, hint_fd);
	case REC_WRITE:
		return apply_write(st, r, flags, hint_fd);
	case REC_FALLOCATE:
		return apply_fallocate(st, r, flags, hint_fd);
	case REC_COPY:
		return apply_copy(st, r, flags, hint_fd);
	case REC_SETXATTR:
	case REC_REMOVEXATTR:
		return apply_xattr(st, r, flags, hint_fd);
	default:
		return -EINVAL;
	}
}

/* ---- replaying a range ---- */

#define REPLAY_MAX_DIRS 4096

struct replay {
	struct {
		char *path;
		int64_t t;
	} dirs[REPLAY_MAX_DIRS];
	int n;
	int overflow;
	int snapshot;	/* replay_snapshot() */
	int unsure;	/* replay_unsure() */
};

int replay_begin(struct replay **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -ENOMEM;
}

void replay_snapshot(struct replay *rp)
{
	rp->snapshot = 1;
}

/* True if the directory holding rel was listed after seq on the leader (see SNAP_LISTED_XATTR). */
static int listed_after(struct store *st, const char *rel, uint64_t seq)
{
	char parent[PATH_MAX], path[PATH_MAX + 64];
	uint64_t listed;
	int tmp, ok;

	parent_of(rel, parent, sizeof(parent));
	if (store_xpath(st, parent, path, sizeof(path), &tmp))
		return 0;
	ok = lgetxattr(path, SNAP_LISTED_XATTR, &listed, 8) == 8 && seq <= listed;
	if (tmp >= 0)
		close(tmp);
	return ok;
}

/* The note of directory dir, or -1 */
static int note_of(const struct replay *rp, const char *dir)
{
	for (int i = 0; i < rp->n; i++)
		if (!strcmp(rp->dirs[i].path, dir))
			return i;
	return -1;
}

/* Notes that directory dir (relative, "." for the root) ends with mtime t so far. */
static void note_path(struct replay *rp, const char *dir, int64_t t)
{
	int i = note_of(rp, dir);

	if (i >= 0) {
		rp->dirs[i].t = t;
		return;
	}
	if (rp->n == REPLAY_MAX_DIRS || !(rp->dirs[rp->n].path = strdup(dir))) {
		rp->overflow = 1;
		return;
	}
	rp->dirs[rp->n++].t = t;
}

static void note_dir(struct replay *rp, const char *rel, int64_t t)
{
	char parent[PATH_MAX];

	parent_of(rel, parent, sizeof(parent));
	note_path(rp, parent, t);
}

static int under(const char *p, const char *dir, size_t dl)
{
	return !strncmp(p, dir, dl) && (!p[dl] || p[dl] == '/');
}

/* The directory at path is gone: so are the notes about it and below it. */
static void note_gone(struct replay *rp, const char *path)
{
	size_t pl = strlen(path);

	for (int i = 0; i < rp->n; i++) {
		if (under(rp->dirs[i].path, path, pl)) {
			free(rp->dirs[i].path);
			rp->dirs[i--] = rp->dirs[--rp->n];
		}
	}
}

/* A directory moved from "from" to "to": so do the notes about it and below it. */
static void note_moved(struct replay *rp, const char *from, const char *to, int replace)
{
	size_t fl = strlen(from), tl = strlen(to);

	/* what "to" named before is gone */
	for (int i = 0; replace && i < rp->n; i++) {
		if (under(rp->dirs[i].path, to, tl) && !under(rp->dirs[i].path, from, fl)) {
			free(rp->dirs[i].path);
			rp->dirs[i--] = rp->dirs[--rp->n];
		}
	}
	for (int i = 0; i < rp->n; i++) {
		char *p = rp->dirs[i].path, *np;
		if (strncmp(p, from, fl) || (p[fl] && p[fl] != '/'))
			continue;
		if (asprintf(&np, "%s%s", to, p + fl) < 0) {
			rp->overflow = 1;
			return;
		}
		free(p);
		rp->dirs[i].path = np;
	}
}

static int is_dir_at(struct store *st, const char *rel)
{
	struct stat sb;

	return fstatat(store_rootfd(st), rel, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode);
}

/*
 * A change of names that every directory it touches was listed after, on
 * the leader, while the snapshot was taken: the snapshot shows its effect
 * (or what undid it later), and replaying it could only move names that
 * later records made. Changes of contents always apply: by id they are exact.
 */
static int reflected(struct store *st, const struct record *r)
{
	if (r->flags & REC_F_NOPATH)
		return 0;
	switch (r->type) {
	case REC_CREATE:
	case REC_UNLINK:
	case REC_RMDIR:
		return listed_after(st, store_rel(r->path), r->seq);
	case REC_LINK:
		return listed_after(st, store_rel(r->path2), r->seq);
	case REC_RENAME:
		return listed_after(st, store_rel(r->path), r->seq) && listed_after(st, store_rel(r->path2), r->seq);
	default:
		return 0;
	}
}

/* A rename or link from one directory into another. */
static int between_dirs(const struct record *r)
{
	const char *a, *b;

	if ((r->type != REC_RENAME && r->type != REC_LINK) || !r->path || !r->path2)
		return 0;
	a = strrchr(r->path, '/');
	b = strrchr(r->path2, '/');
	return (a ? a - r->path : 0) != (b ? b - r->path2 : 0) || (a && strncmp(r->path, r->path2, (size_t)(a - r->path)));
}

int replay_unsure(const struct replay *rp)
{
	return rp->unsure;
}

int replay_apply(struct replay *rp, struct store *st, const struct record *r)
{
	int ret;

	if (rp->snapshot && !(r->flags & REC_F_NOPATH) && (r->type == REC_COPY || between_dirs(r)))
		rp->unsure = 1;

	if (rp->snapshot && reflected(st, r))
		ret = 1;	/* the snapshot holds its effect, or what undid it */
	else
		ret = apply_record(st, r, 0, -1, NULL);
	if (rp->snapshot && (ret == -ENOENT || ret == -ENOTDIR || ret == -EISDIR || ret == -ENOTEMPTY)) {
		/*
		 * The snapshot's names are its listings', made at other moments:
		 * a path here can lead through a file, or to nothing, that the
		 * record's did not (names moved between directories during the
		 * walk). Left out; the check after the install finds what that
		 * leaves different and repairs it, where the whole snapshot used
		 * to be tried again, and again while the names kept moving.
		 */
		rp->unsure = 1;
		ret = 1;
	}

	if ((r->flags & REC_F_NOPATH) || ret < 0)
		return ret;	/* (refused: the directories' times are what they were) */
	switch (r->type) {
	case REC_CREATE:
		note_dir(rp, store_rel(r->path), r->time_ns);
		if ((r->mode & S_IFMT) == S_IFDIR)
			note_path(rp, store_rel(r->path), r->time_ns);	/* a new directory's own time */
		break;
	case REC_RMDIR:
		note_gone(rp, store_rel(r->path));
		note_dir(rp, store_rel(r->path), r->time_ns);
		break;
	case REC_UNLINK:
		note_dir(rp, store_rel(r->path), r->time_ns);
		break;
	case REC_LINK:
		note_dir(rp, store_rel(r->path2), r->time_ns);
		break;
	case REC_RENAME:
		if (r->op_flags & RENAME_EXCHANGE) {
			note_moved(rp, store_rel(r->path), "\x01", 0);
			note_moved(rp, store_rel(r->path2), store_rel(r->path), 0);
			note_moved(rp, "\x01", store_rel(r->path2), 0);
		} else {
			note_moved(rp, store_rel(r->path), store_rel(r->path2), 1);
		}
		note_dir(rp, store_rel(r->path), r->time_ns);
		note_dir(rp, store_rel(r->path2), r->time_ns);
		break;
	case REC_SETATTR:
		/*
		 * An explicit time on a directory (tar restores them last). The
		 * notes follow the records' names, applied or left out; a note
		 * at the path says it names a directory there, where a
		 * snapshot's tree may have none (its listing shows it under a
		 * later name: a note that missed this time would give it an
		 * older one at the finish).
		 */
		if ((r->op_flags & SA_MTIME) &&
		    (note_of(rp, store_rel(r->path)) >= 0 || is_dir_at(st, store_rel(r->path))))
			note_path(rp, store_rel(r->path), r->mtime_ns);
		break;
	default:
		break;
	}
	return ret;
}

int replay_finish(struct replay *rp, struct store *st)
{
	int ret = 0;

	if (!rp)
		return 0;
	for (int i = 0; i < rp->n; i++) {
		int r = rp->overflow || !is_dir_at(st, rp->dirs[i].path) ? 0
									   : set_mtime_at(st, rp->dirs[i].path, rp->dirs[i].t);
		if (r && r != -ENOENT && r != -ENOTDIR && !ret)
			ret = r;
		free(rp->dirs[i].path);
	}
	free(rp);
	return ret;
}
