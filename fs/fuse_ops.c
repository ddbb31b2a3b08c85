/* fuse_ops.c -- FUSE operations (libfuse low-level API): reads pass through, changes become records
 *
 * Each mutating operation builds a record naming its objects by path and id
 * and hands it to node_commit(), which logs and applies it. Permission checks
 * are the kernel's (default_permissions); new objects belong to the caller.
 * The project's own metadata (the id xattr) is neither listed nor readable
 * nor writable through the mount.
 *
 * The kernel's inodes, the paths records name and the invalidations are
 * fs/inodes.c's.
 */
#include "fuse_ops.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "acl.h"
#include "fuse_ring.h"
#include "inodes.h"
#include "node.h"

struct dirhandle {
	DIR *dp;
	struct dirent *entry;
	off_t offset;
};

static struct node *node_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static struct handle *fh_of(const struct fuse_file_info *fi)
{
	return (struct handle *)(uintptr_t)fi->fh;
}

static double negative_timeout(struct node *n)
{
	return mount_is_follower(n) ? 0 : 1.0;	/* short: a leader may step down and follow */
}

/*
 * /dev/fuse through our own read and writev (fuse_session_custom_io()), so
 * that the INIT reply can carry what libfuse 3.14 cannot ask for
 * (fs/kernel_init.c), and so that replies to requests that came through a
 * FUSE ring go back there (fs/fuse_ring.c). Replies that splice data go out
 * as libfuse's would.
 */
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;	/* the INIT handshake */

/* the kernel's opcodes of the requests that need not wait (<linux/fuse.h>; libfuse's copy is private) */
enum { OP_FORGET = 2, OP_WRITE = 16, OP_RELEASE = 18, OP_INTERRUPT = 36, OP_BATCH_FORGET = 42 };

/* (a release's descriptor is closed after the writes through it: node_close_behind()) */
void fuse_ops_before(struct node *n, uint32_t opcode)
{
	if (opcode != OP_WRITE && opcode != OP_RELEASE && opcode != OP_FORGET && opcode != OP_BATCH_FORGET &&
	    opcode != OP_INTERRUPT)
		node_settle(n);
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	struct node *n = userdata;
	ssize_t r;
	uint32_t opcode;

	ino_dir_temps_release();	/* the thread's last request is done: its directory descriptors */
	r = read(fd, buf, len);
	if (r >= 8) {
		int cancel;
		/* libfuse's loop may cancel this thread here: not while it does queued jobs (their locks) */
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
		memcpy(&opcode, (const char *)buf + 4, 4);
		fuse_ops_before(n, opcode);
		pthread_setcancelstate(cancel, NULL);
	}

	if (r > 0 && !__atomic_load_n(&n->kinit.done, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&init_lock);
		if (!n->kinit.unique) {
			kinit_note_request(&n->kinit, buf, (size_t)r);
			/* the rings must exist before the reply grants them */
			if (n->kinit.ring_offered && !n->ring_off && n->se && (n->ring_new = fring_open(n->se, fd, n))) {
				n->kinit.ring_want = 1;
				n->kinit.ring_have = fuse_ops_max_payload();
			}
		}
		pthread_mutex_unlock(&init_lock);
	}
	return r;
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	struct node *n = userdata;
	struct fring *ring = __atomic_load_n(&n->ring, __ATOMIC_ACQUIRE);
	ssize_t r;

	if (ring && fring_reply(ring, iov, count, &r))
		return r;
	if (__atomic_load_n(&n->kinit.done, __ATOMIC_ACQUIRE))
		return writev(fd, iov, count);
	/* a notification may race the INIT reply: only the reply itself goes on */
	pthread_mutex_lock(&init_lock);
	if (kinit_edit_reply(&n->kinit, iov, count) < 0) {
		pthread_mutex_unlock(&init_lock);
		return writev(fd, iov, count);
	}
	if (n->kinit.granted)
		rlog(LOG_INFO, "the kernel leaves dropping privileges on write, truncate and chown to us "
			       "(FUSE_HANDLE_KILLPRIV_V2)");
	r = writev(fd, iov, count);
	if (n->ring_new && n->kinit.ring_granted && r >= 0) {
		/* published before its threads can take a request and reply */
		__atomic_store_n(&n->ring, n->ring_new, __ATOMIC_RELEASE);
		fring_start(n->ring_new);
	} else if (n->ring_new) {
		fring_free(n->ring_new);
	}
	n->ring_new = NULL;
	__atomic_store_n(&n->kinit.done, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&init_lock);
	return r;
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len, unsigned int flags,
			      void *userdata)
{
	size_t cap;

	(void)userdata;
	if (fring_payload(&cap)) {	/* a ring's reply cannot go into /dev/fuse (see op_read) */
		errno = EIO;
		return -1;
	}
	return splice(fdin, offin, fdout, offout, len, flags);
}

int fuse_ops_attach_io(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.read = io_read,
		.writev = io_writev,
		.splice_send = io_splice_send,
	};

	return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

size_t fuse_ops_max_payload(void)
{
	return REC_MAX_DATA;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct node *n = userdata;

	ino_invalq_init(n);
	/*
	 * The writeback cache (on by default; not with --writeback off or
	 * --commit write) on a mount that starts as a leader: writes are
	 * gathered in the kernel's pages and reach us at fsync, close, or the
	 * kernel's writeback, in large pieces (streams go around it:
	 * wants_direct()). Asynchronous followers then get unsynced writes
	 * only when they are written back. The kernel then keeps each
	 * regular file's size and mtime and never takes ours again, which a
	 * follower's records change behind its back: a follower's mount goes
	 * without it (for the mount's life, promoted or not), and one that
	 * steps down gives each file a records change a new kernel inode
	 * (fs/inodes.c). --commit write needs every write(2) here when it is
	 * made. See docs/decisions.md 3.
	 * Privileges on write, truncate and chown are ours to drop where the
	 * kernel offers it (FUSE_HANDLE_KILLPRIV_V2): it then marks files
	 * S_NOSEC and stops asking for security.capability before each write.
	 */
	if (!mount_is_follower(n)) {
		n->kinit.want = 1;
		if (n->wb_on && !n->commit_write && (conn->capable & FUSE_CAP_WRITEBACK_CACHE)) {
			conn->want |= FUSE_CAP_WRITEBACK_CACHE;
			n->wb = 1;
		} else if (n->wb_on) {
			rlog(LOG_WARNING, "the kernel offers no writeback cache; writes go to the log as made");
		}
	}
	/*
	 * Without FUSE_HANDLE_KILLPRIV_V2 the kernel drops setuid and setgid
	 * bits itself, by setattr requests (libfuse's default, the first
	 * version, would leave it to us on truncate and chown too).
	 */
	conn->want &= ~FUSE_CAP_HANDLE_KILLPRIV;
	conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;	/* truncation arrives as a setattr record */
	conn->want &= ~FUSE_CAP_READDIRPLUS;
	conn->max_write = REC_MAX_DATA;
	conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	conn->max_readahead = 1 << 20;
	/*
	 * POSIX ACLs: the kernel checks permissions against them (asking for
	 * an inode's system.posix_acl_access when a caller is not its owner,
	 * and caching it until the inode or a name of it changes) and leaves
	 * the umask to us, as a file system that stores ACLs must apply it
	 * only where no default ACL does (new_owner()). The tree's file system
	 * stores them and inherits default ACLs; one that cannot (tmpfs built
	 * without them), or --acl off, leaves the mount with mode bits alone.
	 * The kernel never caches the ACL of the mount's root (made before
	 * this reply, and an invalidation does not change that on 6.18): a
	 * caller that is not its owner costs a getxattr request per path
	 * walked through it (op_getxattr() answers it from memory).
	 */
	if (!n->acl_off && (conn->capable & FUSE_CAP_POSIX_ACL) && (conn->capable & FUSE_CAP_DONT_MASK)) {
		if (getxattr(store_path(n->store), ACL_XATTR_ACCESS, NULL, 0) >= 0 || errno == ENODATA) {
			conn->want |= FUSE_CAP_POSIX_ACL | FUSE_CAP_DONT_MASK;
			n->acl = 1;
		} else {
			rlog(LOG_NOTICE, "the file system of '%s' keeps no POSIX ACLs: permissions are mode bits only",
			     store_path(n->store));
		}
	}
}

static void op_destroy(void *userdata)
{
	ino_invalq_free(userdata);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node *n = node_of(req);
	struct fuse_entry_param e;
	int ret = ino_lookup(n, ino_of(n, parent), name, &e);

	if (ret == -ENOENT) {
		memset(&e, 0, sizeof(e));
		e.entry_timeout = negative_timeout(n);
		fuse_reply_entry(req, &e);
	} else if (ret) {
		fuse_reply_err(req, -ret);
	} else {
		fuse_reply_entry(req, &e);
	}
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ino_forget(node_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	for (size_t i = 0; i < count; i++)
		ino_forget(node_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* The object's attributes through its open file h if there is one (a file unlinked while open), else its inode. */
static int stat_of(struct node *n, struct inode *in, struct handle *h, struct stat *st)
{
	if (h && fstat(h->fd, st) == 0) {
		st->st_nlink = store_nlink(st);
		return 0;
	}
	return ino_stat(n, in, st);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct stat st;
	int ret = stat_of(n, in, fi && !S_ISDIR(in->type) ? fh_of(fi) : NULL, &st);

	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(req);
	char buf[PATH_MAX + 1];
	int fd = ino_file_open(n, ino_of(n, ino), O_PATH);
	ssize_t r;

	if (fd < 0) {
		fuse_reply_err(req, -fd);
		return;
	}
	r = readlinkat(fd, "", buf, sizeof(buf) - 1);
	if (r < 0) {
		fuse_reply_err(req, errno);
	} else {
		buf[r] = 0;
		fuse_reply_readlink(req, buf);
	}
	close(fd);
}

/*
 * The permission bits directory p's default ACL lets a new object keep
 * (*perms), 1 if it has one, 0 if not; cached in p until an ACL changes in
 * the tree (store_acl_gen(): the change is applied under the names lock
 * that creates hold for writing, commit_record_on()).
 */
static int dir_default_acl(struct node *n, struct inode *p, int pfd, mode_t *perms)
{
	uint64_t gen = store_acl_gen(n->store);
	char path[64];
	uint8_t small[4 + 8 * 32], *buf = small;
	ssize_t len;
	int ret;

	if (p->dacl_gen == gen) {
		*perms = p->dacl_perms;
		return p->dacl;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", pfd);	/* an O_PATH descriptor */
	len = getxattr(path, ACL_XATTR_DEFAULT, buf, sizeof(small));
	if (len < 0 && errno == ERANGE) {
		/* a long ACL */
		if (!(buf = malloc(XATTR_SIZE_MAX)))
			return -ENOMEM;
		len = getxattr(path, ACL_XATTR_DEFAULT, buf, XATTR_SIZE_MAX);
	}
	if (len < 0 && errno != ENODATA) {
		ret = -errno;
	} else if (len >= 0 && acl_default_perms(buf, (size_t)len, &p->dacl_perms) < 0) {
		rlog(LOG_ERR, "the default ACL of a directory in '%s' is malformed", store_path(n->store));
		ret = -EIO;
	} else {
		p->dacl = len >= 0;
		p->dacl_gen = gen;
		*perms = p->dacl_perms;
		ret = p->dacl;
	}
	if (buf != small)
		free(buf);
	return ret;
}

/*
 * Owner and mode of a new object in p: the caller's, with BSD group
 * semantics under setgid directories. Where the kernel enforces ACLs it
 * sends the mode unmasked: the umask applies unless p has a default ACL,
 * which bounds the mode instead (as posix_acl_create() does on ext4; the
 * tree then gives the object the inherited ACL, and the mode in the record
 * is already the one it ends with).
 */
/*
 * *inherits: 1 if the parent has a default ACL, from which the tree's file
 * system derives the new object's (with --acl off too), or if that is not known
 */
static int new_owner(fuse_req_t req, struct inode *p, int pfd, mode_t *mode, uid_t *uid, gid_t *gid, int *inherits)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct node *n = node_of(req);
	struct stat pst;
	mode_t perms = 0777;
	int ret;

	*uid = c->uid;
	*gid = c->gid;
	*inherits = 0;
	if (fstatat(pfd, "", &pst, AT_EMPTY_PATH) == 0 && (pst.st_mode & S_ISGID)) {
		*gid = pst.st_gid;
		if (S_ISDIR(*mode))
			*mode |= S_ISGID;
	}
	if (S_ISLNK(*mode))
		return 0;
	ret = dir_default_acl(n, p, pfd, &perms);
	if (!n->acl) {
		/* the mode stands, but the tree's file system still passes a default ACL on */
		*inherits = ret != 0;
		return 0;
	}
	if (ret < 0)
		return ret;
	*inherits = ret > 0;
	*mode &= ret ? ~(0777 & ~perms) : ~(c->umask & 0777);
	return 0;
}

/*
 * 1 if a file made ahead may take a name in directory p (pfd): one made
 * there would inherit nothing the one made ahead lacks (store_like_index()).
 * Asked once per directory and tree (the names lock held for writing).
 */
static int ahead_may(struct node *n, struct inode *p, int pfd)
{
	unsigned gen = store_gen(n->store) + 1;	/* 0: never asked */

	if (p->ahead_gen != gen) {
		p->ahead_ok = store_like_index(n->store, pfd);
		p->ahead_gen = gen;
	}
	return p->ahead_ok;
}

/*
 * Creates name in parent (a create record) and fills e for the reply; for a
 * regular file *out_fd (if not NULL) receives a read-write descriptor.
 */
static int create_object(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev,
			 const char *target, int *out_fd, struct fuse_entry_param *e)
{
	struct node *n = node_of(req);
	struct inode *p = ino_of(n, parent);
	struct record r = { .type = REC_CREATE };
	char dir[PATH_MAX], path[PATH_MAX];
	struct stat st;
	int pfd, ret, fd = -1, tail_behind = 0, inherits;
	uid_t uid;
	gid_t gid;

	if (out_fd)
		*out_fd = -1;
	if (mount_is_follower(n))
		return -EROFS;
	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	ino_names_lock(n, 1);
	pfd = ino_dir_fd(n, p);
	ret = pfd < 0 ? pfd : ino_dir_path(n, p, dir, sizeof(dir));
	if (!ret)
		ret = path_join(path, sizeof(path), dir, name);
	if (ret)
		goto out;
	ret = new_owner(req, p, pfd, &mode, &uid, &gid, &inherits);
	if (ret)
		goto out;
	r.path = path;
	store_new_id(r.id);
	r.mode = mode;
	r.uid = uid;
	r.gid = gid;
	r.rdev = rdev;
	if (target) {
		r.data = target;
		r.data_len = (uint32_t)strlen(target) + 1;
	}
	if (out_fd)
		ret = node_commit_create(n, &r, &fd, &tail_behind,
					 inherits || !ahead_may(n, p, pfd) ? NULL : &(struct create_at){ pfd, name, &st });
	else if (S_ISDIR(mode))
		ret = node_commit_create(n, &r, &fd, &tail_behind, NULL);	/* fd stays -1: its tail may go behind */
	else
		ret = node_commit(n, &r, -1, NULL);
	if (ret)
		goto out;
	if (tail_behind != 2) {
		ret = (fd >= 0 ? fstat(fd, &st) : fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW)) < 0 ? -errno : 0;
	} else {
		/* made ahead (st: as it was made): what its job gives it (its inode number, device and size it has) */
		st.st_mode = r.mode;
		st.st_uid = r.uid;
		st.st_gid = r.gid;
		st.st_atim = st.st_mtim = st.st_ctim = ts_of_ns(r.time_ns);
	}
	if (!ret && tail_behind && S_ISREG(mode) && st.st_nlink < 2)
		st.st_nlink = 2;	/* its name and the id index's link, which may still be to come */
	if (!ret)
		ret = ino_learn(n, p, name, &st, r.id, e);	/* the id it was made with */
	if (ret && fd >= 0) {
		close(fd);
		fd = -1;
	}
out:
	ino_names_unlock(n);
	if (out_fd)
		*out_fd = fd;
	return ret;
}

static void reply_entry_or_err(fuse_req_t req, int ret, struct fuse_entry_param *e)
{
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_entry(req, e);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct fuse_entry_param e;

	if (!S_ISREG(mode) && !S_ISFIFO(mode) && !S_ISCHR(mode) && !S_ISBLK(mode) && !S_ISSOCK(mode)) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	reply_entry_or_err(req, create_object(req, parent, name, mode, rdev, NULL, NULL, &e), &e);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct fuse_entry_param e;

	reply_entry_or_err(req, create_object(req, parent, name, (mode & 07777) | S_IFDIR, 0, NULL, NULL, &e),
			   &e);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	if (strlen(target) >= PATH_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	reply_entry_or_err(req, create_object(req, parent, name, S_IFLNK | 0777, 0, target, NULL, &e), &e);
}

/* path of name in directory parent, and (with id) the id of what it holds: -ENOENT if nothing. */
static int name_path(struct node *n, struct inode *parent, const char *name, char *path, size_t len,
		     uint8_t *id)
{
	char dir[PATH_MAX];
	struct stat st;
	int pfd, ret;

	if (strlen(name) > NAME_MAX)
		return -ENAMETOOLONG;
	ret = ino_dir_path(n, parent, dir, sizeof(dir));
	if (!ret)
		ret = path_join(path, len, dir, name);
	if (ret || !id)
		return ret;
	pfd = ino_dir_fd(n, parent);
	if (pfd < 0)
		return pfd;
	if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return ino_id_at(pfd, name, &st, id);
}

static int remove_object(fuse_req_t req, fuse_ino_t parent, const char *name, int type)
{
	struct node *n = node_of(req);
	struct inode *p = ino_of(n, parent);
	struct record r = { .type = (uint16_t)type };
	char path[PATH_MAX];
	int ret;

	if (mount_is_follower(n))
		return -EROFS;
	ino_names_lock(n, 1);
	ret = name_path(n, p, name, path, sizeof(path), r.id);
	if (!ret) {
		r.path = path;
		if (type == REC_RMDIR)
			ino_dir_hold(n, r.id);
		else
			ino_hold_special(n, &r);
		ret = node_commit(n, &r, -1, NULL);
	}
	if (!ret)
		ino_names_moved(n, p->id, name, r.id, NULL);
	ino_names_unlock(n);
	return ret;
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -remove_object(req, parent, name, REC_UNLINK));
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_reply_err(req, -remove_object(req, parent, name, REC_RMDIR));
}

static int do_rename(struct node *n, struct inode *p, const char *name, struct inode *np, const char *newname,
		     unsigned int flags)
{
	struct record r = { .type = REC_RENAME };
	char from[PATH_MAX], to[PATH_MAX];
	int ret;

	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return -EINVAL;
	ret = name_path(n, p, name, from, sizeof(from), r.id);
	if (ret)
		return ret;
	ret = name_path(n, np, newname, to, sizeof(to), r.id2);
	if (ret == -ENOENT && !(flags & RENAME_EXCHANGE))
		memset(r.id2, 0, sizeof(r.id2));
	else if (ret)
		return ret;
	else if (flags & RENAME_NOREPLACE)
		return -EEXIST;
	else if (!memcmp(r.id, r.id2, FILE_ID_BYTES))
		return 0;	/* two names of one object: rename(2) does nothing, so there is nothing to log */
	r.path = from;
	r.path2 = to;
	r.op_flags = flags;
	ino_hold_special(n, &r);
	ret = node_commit(n, &r, -1, NULL);
	if (ret)
		return ret;
	if (flags & RENAME_EXCHANGE) {
		ino_names_moved(n, p->id, name, r.id, r.id2);
		ino_names_moved(n, np->id, newname, r.id2, r.id);
	} else {
		ino_names_moved(n, p->id, name, r.id, NULL);
		ino_names_moved(n, np->id, newname, id_is_zero(r.id2) ? NULL : r.id2, r.id);
	}
	return 0;
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct node *n = node_of(req);
	int ret;

	if (mount_is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	ino_names_lock(n, 1);
	ret = do_rename(n, ino_of(n, parent), name, ino_of(n, newparent), newname, flags);
	ino_names_unlock(n);
	fuse_reply_err(req, -ret);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct node *n = node_of(req);
	struct inode *f = ino_of(n, ino), *np = ino_of(n, newparent);
	struct record r = { .type = REC_LINK };
	char from[PATH_MAX], to[PATH_MAX];
	struct fuse_entry_param e;
	int ret;

	if (mount_is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	ino_names_lock(n, 1);
	ret = ino_file_path(n, f, from, sizeof(from), 1);
	if (!ret)
		ret = name_path(n, np, newname, to, sizeof(to), NULL);
	if (!ret) {
		memcpy(r.id, f->id, FILE_ID_BYTES);
		r.path = from;
		r.path2 = to;
		ret = node_commit(n, &r, -1, NULL);
	}
	if (!ret)
		ret = ino_lookup(n, np, newname, &e);
	ino_names_unlock(n);
	reply_entry_or_err(req, ret, &e);
}

/*
 * A record of a change to the object in itself (setattr, xattrs): through
 * the open file h if there is one, else by a path of the object; an
 * object with no name left (unlinked while open) is named by id alone and
 * reached through a descriptor of one of its opens.
 */
/* r, a change through h, named by h's id and in's path; behind: see node_commit_behind(). */
static int commit_through(struct node *n, struct inode *in, struct handle *h, struct record *r, int behind)
{
	char path[PATH_MAX];

	memcpy(r->id, h->id, FILE_ID_BYTES);
	if (ino_path(n, in, path, sizeof(path), 0) == 0) {
		r->path = path;
	} else {
		r->path = "";
		r->flags |= REC_F_NOPATH;
	}
	return behind ? node_commit_behind(n, r, h->fd) : node_commit(n, r, h->fd, NULL);
}

static int commit_record_on(struct node *n, struct inode *in, struct handle *h, struct handle *lent,
			    struct record *r)
{
	char path[PATH_MAX];
	struct handle *own = NULL;
	int ret, held = -1;

	memcpy(r->id, in->id, FILE_ID_BYTES);
	if (h)
		return commit_through(n, in, h, r, 0);
	/* named as without a handle; a lent one only spares the apply the walks of the path */
	ino_names_lock(n, 0);
	ret = ino_path(n, in, path, sizeof(path), 1);
	if (ret == 0) {
		r->path = path;
	} else if (ret == -ENOENT && !S_ISDIR(in->type)) {
		/* unlinked while open: through a handle, or a FIFO's, socket's or device's held descriptor */
		if (!lent)
			lent = own = handle_borrow(n, in->id);
		if (!lent && !S_ISREG(in->type))
			ret = held = ino_held_fd(n, in);
		if (lent || held >= 0) {
			r->path = "";
			r->flags |= REC_F_NOPATH;
			ret = 0;
		}
	}
	if (!ret)
		ret = node_commit(n, r, lent ? lent->fd : held, NULL);
	ino_names_unlock(n);
	if (own)
		handle_return(n, own);
	if (held >= 0)
		close(held);
	return ret;
}

/*
 * A change that can give a file privileges tells drop_privs() once it is
 * applied: a check that read the file before it is then not trusted.
 */
static int commit_lent(struct node *n, struct inode *in, struct handle *h, struct handle *lent, struct record *r)
{
	int ret = commit_record_on(n, in, h, lent, r);

	if ((r->type == REC_SETATTR && (r->op_flags & (SA_MODE | SA_UID | SA_GID))) || r->type == REC_SETXATTR)
		__atomic_add_fetch(&n->priv_gen, 1, __ATOMIC_SEQ_CST);
	return ret;
}

static int commit_on(struct node *n, struct inode *in, struct handle *h, struct record *r)
{
	return commit_lent(n, in, h, NULL, r);
}

static int kill_suidgid(fuse_req_t req, fuse_ino_t ino, struct inode *in, struct handle *h, const struct stat *st);
static mode_t privs_dropped(fuse_req_t req, const struct stat *st);

/*
 * A chown that names an owner or group (record r). Its apply is root's
 * fchown, which drops setuid, and setgid where the file is group-executable;
 * ext4 also drops the setgid of a file that is not when the caller is
 * neither root nor in the file's group (setattr_should_drop_sgid(), as
 * privs_dropped()): that takes a mode record after it. Directories keep both.
 */
static int chown_logged(fuse_req_t req, struct node *n, struct inode *in, struct handle *h, struct handle *lent,
			struct record *r)
{
	struct record m = { .type = REC_SETATTR, .op_flags = SA_MODE };
	struct stat st;
	int ret, sgid = 0;

	if (!S_ISDIR(in->type) && fuse_req_ctx(req)->uid != 0) {
		ret = stat_of(n, in, h ? h : lent, &st);
		if (ret)
			return ret;
		sgid = (st.st_mode & (S_ISGID | S_IXGRP)) == S_ISGID && (privs_dropped(req, &st) & S_ISGID);
	}
	ret = commit_lent(n, in, h, lent, r);
	if (!ret && sgid) {
		m.mode = st.st_mode & 07777 & ~(mode_t)(S_ISUID | S_ISGID);
		ret = commit_lent(n, in, h, lent, &m);
	}
	return ret;
}

/* what the writeback cache's setattr of a written file's times sets */
#define WB_TIMES (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME | FUSE_SET_ATTR_ATIME_NOW | \
		  FUSE_SET_ATTR_MTIME_NOW)

/*
 * The writeback cache's times of a file with no open handle whose names we
 * do not know (retired, or its names never looked up) or that has none left:
 * recorded through its id; a file that is gone (unlinked and closed before
 * the kernel wrote its inode back: syncfs, say) nobody can see any more.
 */
static int times_by_id(struct node *n, struct inode *in, struct record *r, struct stat *st, int *stated)
{
	struct handle tmp = { .fd = store_open_by_id(n->store, in->id, O_RDONLY) };
	int ret;

	*stated = 1;
	if (tmp.fd == -ENOENT) {
		memset(st, 0, sizeof(*st));
		st->st_mode = in->type | 0600;
		return 0;
	}
	if (tmp.fd < 0)
		return tmp.fd;
	memcpy(tmp.id, in->id, FILE_ID_BYTES);
	r->path = NULL;
	r->flags = 0;
	ret = commit_lent(n, in, &tmp, NULL, r);
	if (!ret)
		ret = stat_of(n, in, &tmp, st);
	close(tmp.fd);
	return ret;
}

/* 1 if the caller of req is in group gid (its fsgid or a supplementary group). */
static int caller_in_group(fuse_req_t req, gid_t gid)
{
	gid_t groups[256];
	int k;

	if (fuse_req_ctx(req)->gid == gid)
		return 1;
	k = fuse_req_getgroups(req, (int)(sizeof(groups) / sizeof(groups[0])), groups);
	for (int i = 0; i < k && i < (int)(sizeof(groups) / sizeof(groups[0])); i++)
		if (groups[i] == gid)
			return 1;
	return 0;
}

/*
 * What a change by req's caller drops from a file of mode st (Linux's
 * setattr_should_drop_suidgid() and setattr_should_drop_sgid()): setuid,
 * and setgid if the file is group-executable or the caller is neither in
 * its group nor root.
 */
static mode_t privs_dropped(fuse_req_t req, const struct stat *st)
{
	mode_t kill = st->st_mode & S_ISUID;

	if ((st->st_mode & S_ISGID) &&
	    ((st->st_mode & S_IXGRP) || (fuse_req_ctx(req)->uid != 0 && !caller_in_group(req, st->st_gid))))
		kill |= S_ISGID;
	return kill;
}

/*
 * A setattr that sets nothing comes from chown(f, -1, -1), or from the
 * kernel's drop of privileges before a write (file_remove_privs()): the
 * kernel sends neither an owner nor FATTR_KILL_SUIDGID (it adds that only
 * to a chown that names one) and leaves the drop of setuid and setgid to us
 * (FUSE_HANDLE_KILLPRIV_V2; security.capability it removes itself, by a
 * removexattr request). ext4 drops setuid, and setgid if the file is
 * group-executable or the caller is neither in its group nor root
 * (setattr_should_drop_sgid()): a mode record drops them the same way
 * wherever it is applied. ext4's chown is then a mode change, refused
 * (EPERM) to a caller who is neither the owner nor root; the drop before a
 * write is allowed to any writer. Only with the writeback cache does a chown
 * say so (FUSE_SET_ATTR_CTIME): without it, a caller who may not change the
 * mode gets no drop and no error (a write's drop then comes from
 * op_write(), drop_privs()).
 */
static int chown_none(fuse_req_t req, struct node *n, struct inode *in, struct handle *h, int to_set)
{
	struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE };
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct stat st;
	mode_t kill;
	int ret = stat_of(n, in, h, &st);

	if (ret)
		return ret;
	kill = privs_dropped(req, &st);
	if (!kill)
		return 0;	/* nothing to drop: only the ctime changes, which records do not carry */
	if (ctx->uid != 0 && ctx->uid != st.st_uid)
		return (to_set & FUSE_SET_ATTR_CTIME) ? -EPERM : 0;
	r.mode = (st.st_mode & 07777) & ~kill;
	return commit_lent(n, in, h, NULL, &r);
}

/*
 * A setattr of the mtime and ctime alone on a writeback-cache mount's
 * regular file is most often the kernel's write-back of the mtime it holds
 * (fuse_flush_times()): after every link, rename or unlink of the file, and
 * when it writes a dirty inode back (fsync, close, its writeback). Usually
 * that mtime is the file's own: nothing is logged (a rename would otherwise
 * log two records), nor is the tree's ctime touched (records carry none;
 * the kernel keeps its own). After a stream's direct writes the kernel's
 * mtime is behind the file's (inode->mtime_behind), and used to take it
 * back. An older mtime changes nothing when it comes with a handle of the
 * file while mtime_behind is set (a program's futimens() and utimensat()
 * never carry one), or is the one the kernel's inode was left with
 * (inode->kmtime) while mtime_behind is set (after the file's last close,
 * before its release reaches us: `cp f tmp && mv tmp f`) or on a retired
 * inode (the kernel still held one after its retirement at the release).
 * Otherwise it is applied: a program's own, and the kernel's own stamp of
 * a write through its pages, which can be older than our last one (its
 * clock is coarse). Returns 1 if the setattr was answered here.
 */
static int mtime_flush(fuse_req_t req, struct node *n, struct inode *in, struct handle *h, const struct stat *attr,
		       int to_set)
{
	struct stat st;
	int64_t want, have;
	int behind, stale;

	if (!n->wb || !S_ISREG(in->type) || !(to_set & FUSE_SET_ATTR_MTIME) ||
	    (to_set & ~(FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_CTIME)))
		return 0;
	if (stat_of(n, in, h, &st) < 0)
		return 0;	/* (a file gone meanwhile: times_by_id()) */
	want = ns_of_ts(attr->st_mtim);
	have = ns_of_ts(st.st_mtim);
	behind = __atomic_load_n(&in->mtime_behind, __ATOMIC_RELAXED);
	stale = want == __atomic_load_n(&in->kmtime, __ATOMIC_RELAXED);
	if (want != have &&
	    (want > have || !((h && behind) || (stale && (behind || __atomic_load_n(&in->retired, __ATOMIC_RELAXED))))))
		return 0;
	fuse_reply_attr(req, &st, 1.0);
	return 1;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct handle *h = fi && !S_ISDIR(in->type) ? fh_of(fi) : NULL, *lent = NULL;
	struct stat st;
	int ret = 0, stated = 0, behind = 0;

	if (mount_is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (mtime_flush(req, n, in, h, attr, to_set))
		return;
	/*
	 * fchown(), fchmod() and futimens() come without the file's handle:
	 * one of its open handles, lent, spares the apply two walks of its
	 * path; the records name it as without a handle (a truncate needs a
	 * writable one: the kernel sends it).
	 */
	if (!h && !S_ISDIR(in->type) && !(to_set & FUSE_SET_ATTR_SIZE))
		lent = handle_borrow(n, in->id);
	/*
	 * The kernel's mtime, which it sends: once set, its and ours agree
	 * (cleared first: a direct write meanwhile sets it again).
	 */
	if (to_set & FUSE_SET_ATTR_MTIME)
		behind = __atomic_exchange_n(&in->mtime_behind, 0, __ATOMIC_RELAXED);
	if (n->kinit.granted && !S_ISDIR(in->type) && !(to_set & ~(FUSE_SET_ATTR_CTIME | FUSE_SET_ATTR_FORCE)))
		ret = chown_none(req, n, in, h ? h : lent, to_set);
	/* one record per kind, in the order libfuse's path API gave them: mode, owner, size, times */
	if (!ret && (to_set & FUSE_SET_ATTR_MODE)) {
		struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE, .mode = attr->st_mode & 07777 };
		ret = commit_lent(n, in, h, lent, &r);
	}
	if (!ret && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
		struct record r = { .type = REC_SETATTR, .uid = attr->st_uid, .gid = attr->st_gid };
		if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != (uid_t)-1)
			r.op_flags |= SA_UID;
		if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != (gid_t)-1)
			r.op_flags |= SA_GID;
		if (r.op_flags)
			ret = chown_logged(req, n, in, h, lent, &r);
	}
	if (!ret && (to_set & FUSE_SET_ATTR_SIZE) && n->kinit.granted && !S_ISDIR(in->type)) {
		/* FUSE_HANDLE_KILLPRIV_V2: a truncate drops privileges here too */
		ret = stat_of(n, in, h, &st);
		if (!ret)
			ret = kill_suidgid(req, ino, in, h, &st);
	}
	if (!ret && (to_set & FUSE_SET_ATTR_SIZE)) {
		struct record r = { .type = REC_SETATTR, .op_flags = SA_SIZE, .len = (uint64_t)attr->st_size };
		ret = attr->st_size < 0 ? -EINVAL : commit_lent(n, in, h, lent, &r);
	}
	if (!ret && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
		struct record r = { .type = REC_SETATTR };
		int64_t now = now_ns();
		if (to_set & FUSE_SET_ATTR_ATIME) {
			r.op_flags |= SA_ATIME;
			r.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW)
					     ? now
					     : ns_of_ts(attr->st_atim);
		}
		if (to_set & FUSE_SET_ATTR_MTIME) {
			r.op_flags |= SA_MTIME;
			r.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW)
					     ? now
					     : ns_of_ts(attr->st_mtim);
		}
		ret = commit_lent(n, in, h, lent, &r);
		if (ret == -ENOENT && !h && !lent && n->wb && S_ISREG(in->type) && !(to_set & ~WB_TIMES))
			ret = times_by_id(n, in, &r, &st, &stated);
		if (!ret && (r.op_flags & SA_MTIME))
			__atomic_store_n(&in->kmtime, r.mtime_ns, __ATOMIC_RELAXED);	/* the kernel's now */
	}
	if (ret && behind)
		__atomic_store_n(&in->mtime_behind, 1, __ATOMIC_RELAXED);
	if (!ret && !stated)
		ret = stat_of(n, in, h ? h : lent, &st);
	if (lent)
		handle_return(n, lent);
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_attr(req, &st, 1.0);
}

static int backing_flags(struct node *n, int flags)
{
	/* the kernel gives every write its offset (O_APPEND included); we log that */
	flags &= ~(O_CREAT | O_EXCL | O_TRUNC | O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOCTTY);
	/* with the writeback cache the kernel reads pages it writes in part, through any open */
	if (n->wb && (flags & O_ACCMODE) == O_WRONLY)
		flags = (flags & ~O_ACCMODE) | O_RDWR;
	return flags | O_CLOEXEC | O_NOFOLLOW;
}

/*
 * Without the writeback cache, write-only opens on a leader go around the
 * kernel's page cache (direct I/O; see op_write()): nothing is read through
 * them, and a write through the cache costs a copy (and, where the kernel
 * cannot leave privileges to us, a security.capability round trip). With
 * it, only a write-only open that created its file and does not append
 * does (a stream: cp, tar, a compiler's output): the cache would cost it a
 * copy into fresh pages and a trip at close, and buy nothing. A direct
 * write leaves the kernel's mtime, which it no longer takes from us,
 * behind: the file's inode is retired at its last release (op_release()).
 * Appends (logs, held open for long) and writes in place keep the cache.
 */
static int wants_direct(struct node *n, int flags, int created)
{
	if (mount_is_follower(n) || (flags & O_ACCMODE) != O_WRONLY)
		return 0;
	return !n->wb || (created && !(flags & O_APPEND));
}

/*
 * id: the file's id when the caller knows it (a create), else NULL: read
 * from the file. in: the kernel's inode it is opened through.
 */
static int new_handle(struct node *n, struct inode *in, struct fuse_file_info *fi, int fd, int flags,
		      const uint8_t *id)
{
	struct handle *h = calloc(1, sizeof(*h));
	int ret = 0;

	/* the caller's slot (open_slot()) goes to the handle; on failure it stays the caller's */
	if (!h) {
		close(fd);
		return -ENOMEM;
	}
	h->fd = fd;
	h->tree_gen = store_gen(n->store);
	h->sync = (flags & (O_SYNC | O_DSYNC)) != 0;
	h->writable = (flags & O_ACCMODE) != O_RDONLY;
	if (wants_direct(n, flags, id != NULL)) {
		h->direct = 1;
		fi->direct_io = 1;
	} else if (!mount_is_follower(n)) {
		/* every change goes through this mount's one inode of the file: its pages stay right */
		fi->keep_cache = 1;
	}
	h->clean = id != NULL;	/* a create: the kernel has no pages of a file just made */
	if (id)
		memcpy(h->id, id, FILE_ID_BYTES);
	else
		ret = store_fget_id(fd, h->id);
	if (ret && ret != -ENODATA) {
		close(fd);
		free(h);
		return ret;
	}
	fi->fh = (uintptr_t)h;
	pthread_mutex_lock(&n->open_lock);
	if (__atomic_load_n(&in->retired, __ATOMIC_RELAXED)) {
		/*
		 * Looked up just before it was retired (ino_release_stream(),
		 * ino_retire()): a handle on it would give the file a second
		 * kernel inode, with its own size. ESTALE has the kernel look
		 * the name up again (LOOKUP_REVAL) and open the new one.
		 */
		pthread_mutex_unlock(&n->open_lock);
		close(fd);
		free(h);
		return -ESTALE;
	}
	h->prev = NULL;
	h->next = n->open_files;
	if (h->next)
		h->next->prev = h;
	n->open_files = h;
	pthread_mutex_unlock(&n->open_lock);
	return 0;
}

/* write_back()s opening through the mount now (the test hook below) */
static int self_opens;

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	int fd, ret;

	if (__atomic_load_n(&self_opens, __ATOMIC_SEQ_CST) && getenv("REPFS_TEST_SELF_OPEN_DELAY_MS")) {
		/* tests: a kill -9 while the daemon waits for its own open (tests/fault/crash_orphan.sh) */
		rlog(LOG_NOTICE, "test hook: an open while the daemon opens through its mount; holding it");
		usleep((useconds_t)atoi(getenv("REPFS_TEST_SELF_OPEN_DELAY_MS")) * 1000);
	}

	if (mount_is_follower(n) && ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((ret = open_slot(n))) {
		fuse_reply_err(req, -ret);
		return;
	}
	fd = ino_file_open(n, ino_of(n, ino), backing_flags(n, fi->flags));
	ret = fd < 0 ? fd : new_handle(n, ino_of(n, ino), fi, fd, fi->flags, NULL);
	if (ret) {
		open_slot_free(n);
		fuse_reply_err(req, -ret);
	}
	else if (fuse_reply_open(req, fi) == -ENOENT)
		handle_release(n, fh_of(fi));	/* the opener was interrupted */
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct fuse_entry_param e;
	uint8_t id[FILE_ID_BYTES];
	/* read before the create: a change that could give the file privileges after it bumps it */
	uint64_t gen = __atomic_load_n(&n->priv_gen, __ATOMIC_SEQ_CST);
	int fd = -1, ret;

	if ((ret = open_slot(n))) {	/* before the create: a file made but not opened would stay */
		fuse_reply_err(req, -ret);
		return;
	}
	ret = create_object(req, parent, name, S_IFREG | (mode & 07777), 0, NULL, &fd, &e);
	if (ret == -EEXIST && !(fi->flags & O_EXCL)) {
		/* made meanwhile by another opener (its last steps maybe still queued): open it */
		node_settle(n);
		ret = ino_lookup(n, ino_of(n, parent), name, &e);
		if (!ret) {
			fd = ino_file_open(n, ino_of(n, e.ino), backing_flags(n, fi->flags));
			if (fd < 0) {
				ino_forget(n, e.ino, 1);
				ret = fd;
			} else {
				ret = new_handle(n, ino_of(n, e.ino), fi, fd, fi->flags, NULL);
				if (ret)
					ino_forget(n, e.ino, 1);
			}
		}
	} else if (!ret) {
		memcpy(id, ino_of(n, e.ino)->id, FILE_ID_BYTES);
		ret = new_handle(n, ino_of(n, e.ino), fi, fd, fi->flags, id);
		if (ret) {
			ino_forget(n, e.ino, 1);
		} else {
			if (!(mode & (S_ISUID | S_ISGID)))
				fh_of(fi)->priv_gen = gen;	/* just made: nothing for drop_privs() to drop */
			__atomic_store_n(&ino_of(n, e.ino)->nocap_gen, gen, __ATOMIC_RELAXED);
			if (n->wb && fh_of(fi)->direct) {
				/* a stream (wants_direct()): its names expire at once until its release */
				__atomic_store_n(&ino_of(n, e.ino)->streamed, 1, __ATOMIC_RELAXED);
				e.entry_timeout = 0;
			}
		}
	}
	if (ret) {
		open_slot_free(n);	/* no handle holds it */
		fuse_reply_err(req, -ret);
	} else if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		/* the creator was interrupted: the kernel took neither the handle nor the reference */
		struct handle *h = fh_of(fi);
		__atomic_store_n(&ino_of(n, e.ino)->streamed, 0, __ATOMIC_RELAXED);
		handle_release(n, h);
		ino_forget(n, e.ino, 1);
	}
}

/*
 * Reads hand the kernel the backing descriptor: libfuse splices from it, no
 * copy through us. A request that came through a FUSE ring cannot be
 * answered by splicing into /dev/fuse: it is read into the ring's buffer.
 */
static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
	size_t cap;
	char *ring = fring_payload(&cap);

	(void)ino;
	if (ring) {
		ssize_t k = pread(fh_of(fi)->fd, ring, size < cap ? size : cap, off);

		if (k < 0)
			fuse_reply_err(req, errno);
		else
			fuse_reply_buf(req, ring, (size_t)k);
		return;
	}
	bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv.buf[0].fd = fh_of(fi)->fd;
	bv.buf[0].pos = off;
	fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

/*
 * A caller without CAP_FSETID (here: not root) that writes or truncates a
 * file drops its setuid bit, and its setgid bit if the file is
 * group-executable or the caller is not in its group: one setattr record.
 */
static int kill_suidgid(fuse_req_t req, fuse_ino_t ino, struct inode *in, struct handle *h, const struct stat *st)
{
	struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE };
	mode_t kill = 0;
	int ret;

	if (!S_ISREG(st->st_mode) || fuse_req_ctx(req)->uid == 0 || !(st->st_mode & (S_ISUID | S_ISGID)))
		return 0;
	kill = privs_dropped(req, st);
	if (!kill)
		return 0;
	r.mode = (st->st_mode & 07777) & ~kill;
	ret = commit_on(node_of(req), in, h, &r);
	if (!ret)
		ino_inval_soon(node_of(req), ino, -1, 0);	/* the kernel's cached mode */
	return ret;
}

/*
 * Before a write through the page cache the kernel drops the privileges a
 * changed file must not keep (file_remove_privs(): through a setattr and a
 * removexattr request to us); for direct I/O, and for every write once it
 * granted FUSE_HANDLE_KILLPRIV_V2, it leaves that to the file system. As
 * the kernel: kill_suidgid(), and any write drops security.capability.
 * Each drop is its own record, before the write's.
 *
 * A file found with neither setuid nor setgid bit nor security.capability
 * has nothing to drop for any caller until some file's mode, owner or
 * xattrs change (node->priv_gen): until then its handle skips the check's
 * two system calls (tar writes a file in pieces of 10 KiB).
 */
static int drop_privs(fuse_req_t req, fuse_ino_t ino, struct inode *in, struct handle *h)
{
	struct node *n = node_of(req);
	uint64_t gen = __atomic_load_n(&n->priv_gen, __ATOMIC_SEQ_CST);
	struct stat st;
	int ret;

	if (__atomic_load_n(&h->priv_gen, __ATOMIC_RELAXED) == gen)
		return 0;
	if (fstat(h->fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return 0;
	ret = kill_suidgid(req, ino, in, h, &st);
	if (ret)
		return ret;
	if (fgetxattr(h->fd, "security.capability", NULL, 0) >= 0) {
		struct record r = { .type = REC_REMOVEXATTR, .name = "security.capability" };
		ret = commit_on(n, in, h, &r);
		if (ret)
			return ret;
	} else if (!(st.st_mode & (S_ISUID | S_ISGID))) {
		__atomic_store_n(&h->priv_gen, gen, __ATOMIC_RELAXED);
	}
	return 0;
}

/*
 * Writes of write-only files arrive as direct I/O (new_handle()): the data
 * comes straight from the writer's memory, with no copy into the kernel's
 * page cache and no security.capability lookup (a round trip) per write(2).
 * Pages of the file the kernel may hold (another open's, or left by opens
 * closed before) are dropped for the range written, as a write through the
 * cache would have updated them.
 */
static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct handle *h = fh_of(fi);
	struct record r = { .type = REC_WRITE };
	int ret;

	if (mount_is_follower(n)) {
		if (n->wb && !__atomic_load_n(&h->stale, __ATOMIC_RELAXED))
			ino_retire_soon(n, in, EROFS);	/* written into the kernel's pages before a step-down */
		fuse_reply_err(req, EROFS);
		return;
	}
	if ((ret = __atomic_load_n(&h->stale, __ATOMIC_RELAXED))) {
		fuse_reply_err(req, ret);	/* see ino_retire() */
		return;
	}
	if (size > REC_MAX_DATA)
		size = REC_MAX_DATA;
	if ((h->direct || n->kinit.granted) && (ret = drop_privs(req, ino, in, h)))
		goto out;
	r.off = (uint64_t)off;
	r.data = buf;
	r.data_len = (uint32_t)size;
	if (n->wb && !h->direct)
		r.flags |= REC_F_KEEP_MTIME;	/* the kernel's mtime comes in a setattr */
	ret = commit_through(n, in, h, &r, 1);	/* logged now, maybe applied after the answer */
	if (!ret && n->wb && h->direct)
		__atomic_store_n(&in->mtime_behind, 1, __ATOMIC_RELAXED);	/* again after a setattr */
	if (ret && n->wb && !h->direct) {
		/* the kernel's size may count bytes that never got here: a new inode takes ours */
		ino_retire_soon(n, in, -ret);
	} else if (ret && r.data_len) {
		/*
		 * Stopped part way (node_commit()): a short write, as ext4's on a
		 * full disk; the program's next write meets the error. Not for
		 * the kernel's writeback of mmap'd pages, which ignores the count
		 * (the error must reach fsync), nor through the page cache,
		 * whose pages past the cut some kernels keep: those get the
		 * error, and the kernel's pages of the range are dropped.
		 */
		if (h->direct && !fi->writepage)
			ret = 0;
		else
			ino_inval_soon(n, ino, off, (off_t)size);
	}
	if (ret)
		goto out;
	size = r.data_len;
	if (h->direct && (!h->clean || handle_open_by(n, h->id, h, HANDLE_CACHING)))
		ino_inval_soon(n, ino, off, (off_t)size);
	h->clean = 1;
	if (h->sync || n->commit_write)
		ret = node_sync(n, r.seq);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(req);
	struct statvfs st;

	(void)ino;
	if (fstatvfs(store_rootfd(n->store), &st) < 0) {
		fuse_reply_err(req, errno);
		return;
	}
	if (mount_is_follower(n))
		st.f_flag |= ST_RDONLY;
	fuse_reply_statfs(req, &st);
}

/*
 * With the writeback cache, a file that a stream's direct writes left with
 * the kernel's mtime behind ours (wants_direct()) gets a new inode once
 * nobody has it open (ino_release_stream()): the next lookup gives the
 * kernel our mtime. Retired while open, it would leave two kernel inodes of
 * the file, each with its own idea of the size. The release reaches us just
 * after the close(2) that caused it returns: until then the old mtime may
 * be seen.
 */
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct handle *h = fh_of(fi);
	struct inode *in = ino_of(n, ino);

	if (__atomic_load_n(&in->streamed, __ATOMIC_RELAXED))
		ino_release_stream(n, in, h);
	handle_release(n, h);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, -node_sync(node_of(req), 0));
}

/* trusted.* is for CAP_SYS_ADMIN: the kernel leaves that check to us, as we run as root */
static int trusted_denied(fuse_req_t req, const char *name)
{
	return !strncmp(name, "trusted.", 8) && fuse_req_ctx(req)->uid != 0;
}

static int xattr_change(fuse_req_t req, fuse_ino_t ino, struct record *r)
{
	struct node *n = node_of(req);

	if (mount_is_follower(n))
		return -EROFS;
	if (store_hidden_xattr(r->name) || trusted_denied(req, r->name))
		return -EPERM;
	return commit_on(n, ino_of(n, ino), NULL, r);
}

/*
 * Setting an object's access ACL also sets its mode; a caller without
 * CAP_FSETID (here: not root) who is not in the object's group loses its
 * setgid bit (posix_acl_update_mode()). The tree's file system, called by
 * root, keeps it: a setattr record drops it, as the kernel would have asked
 * us to (FUSE_SETXATTR_ACL_KILL_SGID, which libfuse 3.14 cannot take). It
 * goes first: a crash between the two records, or a setxattr that fails,
 * leaves the bit dropped rather than kept.
 */
static int acl_kill_sgid(fuse_req_t req, fuse_ino_t ino)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	struct record r = { .type = REC_SETATTR, .op_flags = SA_MODE };
	struct stat st;
	int ret;

	if (fuse_req_ctx(req)->uid == 0)
		return 0;
	ret = stat_of(n, in, NULL, &st);
	if (ret || !(st.st_mode & S_ISGID) || caller_in_group(req, st.st_gid))
		return ret;
	r.mode = st.st_mode & 07777 & ~(mode_t)S_ISGID;
	return commit_on(n, in, NULL, &r);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
			int flags)
{
	struct record r = { .type = REC_SETXATTR };
	int ret;

	if (strlen(name) > XATTR_NAME_MAX) {
		fuse_reply_err(req, ERANGE);
		return;
	}
	if (size > XATTR_SIZE_MAX) {
		fuse_reply_err(req, E2BIG);
		return;
	}
	r.name = name;
	r.data = value;
	r.data_len = (uint32_t)size;
	r.op_flags = (uint32_t)flags;
	ret = node_of(req)->acl && !strcmp(name, ACL_XATTR_ACCESS) ? acl_kill_sgid(req, ino) : 0;
	if (!ret)
		ret = xattr_change(req, ino, &r);
	fuse_reply_err(req, -ret);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct record r = { .type = REC_REMOVEXATTR, .name = name };

	fuse_reply_err(req, -xattr_change(req, ino, &r));
}

/*
 * Where the xattr reads of in go: an open handle of a file (*lent, give it
 * back with handle_return(): the kernel asks for security.capability
 * before each chown, mostly of a file just written), else a path for the
 * *xattr calls: a file's index entry, not followed; or followed, a
 * descriptor through /proc: a directory's, or the one held for a nameless
 * FIFO, socket or device (*held, yours to close).
 */
struct xsrc {
	char path[PATH_MAX + 64];
	struct handle *lent;
	int held;	/* ino_held_fd(), or -1 */
	int follow;	/* path is a /proc link to the object */
};

static int xattr_source(struct node *n, struct inode *in, struct xsrc *x)
{
	char hex[2 * FILE_ID_BYTES + 1];
	struct stat st;
	int d;

	x->lent = NULL;
	x->held = -1;
	x->follow = 1;
	if (S_ISDIR(in->type)) {
		d = ino_dir_fd(n, in);
		if (d < 0)
			return d;
		snprintf(x->path, sizeof(x->path), "/proc/self/fd/%d", d);
		return 0;
	}
	if ((x->lent = handle_borrow(n, in->id)))
		return 0;
	store_id_hex(in->id, hex);
	if (fstatat(store_indexfd(n->store), hex, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (S_ISREG(in->type) || (x->held = ino_held_fd(n, in)) < 0)
			return -ENOENT;
		snprintf(x->path, sizeof(x->path), "/proc/self/fd/%d", x->held);
		return 0;
	}
	snprintf(x->path, sizeof(x->path), "%s.ids/%s", store_path(n->store), hex);
	x->follow = 0;
	return 0;
}

static void xattr_source_done(struct node *n, struct xsrc *x)
{
	if (x->lent)
		handle_return(n, x->lent);
	if (x->held >= 0)
		close(x->held);
}

static ssize_t xattr_get(const struct xsrc *x, const char *name, void *buf, size_t size)
{
	if (x->lent)
		return fgetxattr(x->lent->fd, name, buf, size);
	return x->follow ? getxattr(x->path, name, buf, size) : lgetxattr(x->path, name, buf, size);
}

static ssize_t xattr_list(const struct xsrc *x, char *buf, size_t size)
{
	if (x->lent)
		return flistxattr(x->lent->fd, buf, size);
	return x->follow ? listxattr(x->path, buf, size) : llistxattr(x->path, buf, size);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	char *buf = NULL;
	struct xsrc x;
	uint64_t gen = 0;
	int ret, acl;
	ssize_t r;

	if (store_hidden_xattr(name) || trusted_denied(req, name)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	/*
	 * A file made here gets a security.capability only through a change
	 * that bumps priv_gen (a setxattr through this mount, or a role change,
	 * after which records applied here could give it one): until then the
	 * kernel's question before each chown is answered without the tree.
	 */
	if (!strcmp(name, "security.capability") &&
	    __atomic_load_n(&in->nocap_gen, __ATOMIC_RELAXED) == __atomic_load_n(&n->priv_gen, __ATOMIC_SEQ_CST)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	/*
	 * The kernel asks for an object's access ACL at each permission check
	 * it cannot answer from its cache, which it never keeps for the
	 * mount's root (made before ACLs were agreed) nor, on a follower,
	 * across a revalidation of a name: an object known to have none is
	 * answered from here, without reading the tree.
	 */
	acl = !n->acl ? -1 : !strcmp(name, ACL_XATTR_ACCESS) ? 0 : !strcmp(name, ACL_XATTR_DEFAULT) ? 1 : -1;
	if (acl >= 0) {
		gen = store_acl_gen(n->store);
		if (__atomic_load_n(&in->noacl_gen[acl], __ATOMIC_RELAXED) == gen) {
			fuse_reply_err(req, ENODATA);
			return;
		}
	}
	ret = xattr_source(n, in, &x);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	if (size && !(buf = malloc(size))) {
		ret = -ENOMEM;
		goto out;
	}
	r = xattr_get(&x, name, buf, size);
	/* gen was read before the tree; not through a lent handle, which may be of a tree replaced meanwhile */
	if (r < 0 && errno == ENODATA && acl >= 0 && !x.lent)
		__atomic_store_n(&in->noacl_gen[acl], gen, __ATOMIC_RELAXED);
	if (r < 0)
		ret = -errno;
	else if (size)
		fuse_reply_buf(req, buf, (size_t)r);
	else
		fuse_reply_xattr(req, (size_t)r);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	free(buf);
	xattr_source_done(n, &x);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	struct node *n = node_of(req);
	struct inode *in = ino_of(n, ino);
	char *all = NULL, *out = NULL;
	size_t used = 0;
	ssize_t len;
	struct xsrc x;
	int ret;

	ret = xattr_source(n, in, &x);
	if (ret) {
		fuse_reply_err(req, -ret);
		return;
	}
	for (;;) {
		len = xattr_list(&x, NULL, 0);
		if (len < 0) {
			ret = -errno;
			goto out;
		}
		free(all);
		all = malloc((size_t)len + 1);
		if (!all) {
			ret = -ENOMEM;
			goto out;
		}
		len = xattr_list(&x, all, (size_t)len);
		if (len >= 0)
			break;
		if (errno != ERANGE) {
			ret = -errno;
			goto out;
		}
	}
	out = malloc((size_t)len + 1);
	if (!out) {
		ret = -ENOMEM;
		goto out;
	}
	for (char *p = all; p < all + len; p += strlen(p) + 1) {
		size_t l = strlen(p) + 1;
		if (store_hidden_xattr(p) || trusted_denied(req, p))
			continue;
		memcpy(out + used, p, l);
		used += l;
	}
	if (!size)
		fuse_reply_xattr(req, used);
	else if (used > size)
		ret = -ERANGE;
	else
		fuse_reply_buf(req, out, used);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	free(all);
	free(out);
	xattr_source_done(n, &x);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct dirhandle *d;
	int fd, err, dfd = ino_dir_fd(n, ino_of(n, ino));

	if (dfd < 0) {
		fuse_reply_err(req, -dfd);
		return;
	}
	if ((err = -open_slot(n))) {
		fuse_reply_err(req, err);
		return;
	}
	fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		open_slot_free(n);
		fuse_reply_err(req, err);
		return;
	}
	d = calloc(1, sizeof(*d));
	if (!d || !(d->dp = fdopendir(fd))) {
		err = d ? errno : ENOMEM;
		close(fd);
		free(d);
		open_slot_free(n);
		fuse_reply_err(req, err);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT) {
		closedir(d->dp);
		free(d);
		open_slot_free(n);
	}
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;
	char *buf = malloc(size ? size : 1);
	size_t used = 0;
	int err = 0;

	(void)ino;
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if (offset != d->offset) {
		seekdir(d->dp, offset);
		d->entry = NULL;
		d->offset = offset;
	}
	for (;;) {
		struct stat st;
		off_t next;
		size_t k;

		if (!d->entry) {
			errno = 0;
			d->entry = readdir(d->dp);
			if (!d->entry) {
				err = errno;
				break;
			}
		}
		memset(&st, 0, sizeof(st));
		st.st_ino = d->entry->d_ino;
		st.st_mode = (mode_t)d->entry->d_type << 12;
		next = telldir(d->dp);
		k = fuse_add_direntry(req, buf + used, size - used, d->entry->d_name, &st, next);
		if (k > size - used)
			break;
		used += k;
		d->entry = NULL;
		d->offset = next;
	}
	if (err && !used)
		fuse_reply_err(req, err);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dirhandle *d = (struct dirhandle *)(uintptr_t)fi->fh;

	(void)ino;
	closedir(d->dp);
	free(d);
	open_slot_free(node_of(req));
	fuse_reply_err(req, 0);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct record r = { .type = REC_FALLOCATE };
	struct handle *h;
	int ret;

	if (mount_is_follower(n)) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	/* as ext4: an fallocate of any mode drops privileges (file_modified()) */
	if (n->kinit.granted) {
		ret = drop_privs(req, ino, ino_of(n, ino), fh_of(fi));
		if (ret) {
			fuse_reply_err(req, -ret);
			return;
		}
	}
	r.op_flags = (uint32_t)mode;
	r.off = (uint64_t)off;
	r.len = (uint64_t)len;
	/*
	 * With the writeback cache the kernel keeps a file's mtime itself and
	 * takes none from us: where it stamps one, a setattr brings it (as for
	 * writes). Through a direct handle, as a direct write: ours, and the
	 * kernel's is behind until the inode is retired.
	 */
	h = fh_of(fi);
	if (n->wb && !h->direct)
		r.flags |= REC_F_KEEP_MTIME;
	ret = commit_on(n, ino_of(n, ino), h, &r);
	if (!ret && n->wb && h->direct)
		__atomic_store_n(&ino_of(n, ino)->mtime_behind, 1, __ATOMIC_RELAXED);
	fuse_reply_err(req, -ret);
}

static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
			       fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t size,
			       int flags)
{
	struct node *n = node_of(req);
	struct record r = { .type = REC_COPY };
	char from[PATH_MAX], to[PATH_MAX];
	uint8_t digest[STORE_DIGEST_BYTES];
	struct stat st;
	int ret;

	if (mount_is_follower(n)) {
		ret = -EROFS;
		goto out;
	}
	ret = flags ? -EINVAL : 0;
	/* a file with no name left cannot be named by a copy record: the kernel falls back to read and write */
	if (!ret && (ino_file_path(n, ino_of(n, ino_in), from, sizeof(from), 0) ||
		     ino_file_path(n, ino_of(n, ino_out), to, sizeof(to), 0)))
		ret = -EOPNOTSUPP;
	if (!ret && fstat(fh_of(fi_in)->fd, &st) < 0)
		ret = -errno;
	if (ret)
		goto out;
	if (off_in >= st.st_size) {
		fuse_reply_write(req, 0);
		return;
	}
	if ((uint64_t)size > (uint64_t)(st.st_size - off_in))
		size = (size_t)(st.st_size - off_in);
	if (size > (1u << 30))
		size = 1u << 30;
	/* the destination drops privileges, as a write to it would */
	if (n->kinit.granted && (ret = drop_privs(req, ino_out, ino_of(n, ino_out), fh_of(fi_out))))
		goto out;
	/* the source range's digest lets a replay tell whether the source still holds it */
	ret = store_range_digest(fh_of(fi_in)->fd, (uint64_t)off_in, size, digest);
	if (ret)
		goto out;
	r.data = digest;
	r.data_len = STORE_DIGEST_BYTES;
	r.path = from;
	memcpy(r.id, fh_of(fi_in)->id, FILE_ID_BYTES);
	r.off = (uint64_t)off_in;
	r.path2 = to;
	memcpy(r.id2, fh_of(fi_out)->id, FILE_ID_BYTES);
	r.off2 = (uint64_t)off_out;
	r.len = size;
	ret = node_commit(n, &r, fh_of(fi_out)->fd, NULL);
out:
	if (ret)
		fuse_reply_err(req, -ret);
	else
		fuse_reply_write(req, size);
}

#define WRITE_BACKS_MAX 2	/* write_back()s at once, well below a CPU queue's threads (fs/fuse_ring.c) */
#define FUSE_FH_TYPE 0x81	/* the kernel's file handle of a FUSE inode: its nodeid and generation */

/*
 * The kernel's inode ino, which the caller holds open, opened through the
 * mount by its file handle (open_by_handle_at): it reaches a file with no
 * name left, and never another file that took the name. Our entries carry
 * generation 0.
 */
static int open_on_mount(struct node *n, fuse_ino_t ino)
{
	union {
		struct file_handle fh;
		char bytes[sizeof(struct file_handle) + 3 * sizeof(uint32_t)];
	} h;
	uint32_t w[3] = { (uint32_t)(ino >> 32), (uint32_t)ino, 0 };
	int mfd, fd;

	h.fh.handle_bytes = sizeof(w);
	h.fh.handle_type = FUSE_FH_TYPE;
	memcpy(h.fh.f_handle, w, sizeof(w));
	/* (an O_PATH descriptor does not do for open_by_handle_at) */
	if ((mfd = open(n->mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	fd = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		fd = -errno;
	close(mfd);
	return fd;
}

/*
 * Has the kernel write the dirty pages of its inode ino back to us, through
 * the mount: sync_file_range() on a descriptor of our own (open_on_mount()),
 * which (unlike fsync) takes no lock the caller's lseek holds. The requests
 * this makes (open, the writes, release) are served by other threads of the
 * caller's CPU queue, which a few of these at once cannot use up: past
 * WRITE_BACKS_MAX, -EBUSY.
 */
static int write_back(struct node *n, fuse_ino_t ino)
{
	static int running;
	int fd, ret = 0;

	if (!n->mountpoint[0])
		return -ENOENT;
	if (__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST) > WRITE_BACKS_MAX) {
		__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
		return -EBUSY;
	}
	__atomic_add_fetch(&self_opens, 1, __ATOMIC_SEQ_CST);
	fd = open_on_mount(n, ino);
	__atomic_sub_fetch(&self_opens, 1, __ATOMIC_SEQ_CST);
	if (fd < 0)
		ret = fd;
	else if (sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	__atomic_sub_fetch(&running, 1, __ATOMIC_SEQ_CST);
	return ret;
}

/*
 * SEEK_DATA and SEEK_HOLE from the backing file. With the writeback cache,
 * while the file is open for writing the kernel may hold pages the backing
 * file lacks (and its lseek writes nothing back first): they are written
 * back first (write_back()). Where that cannot be done (too many at once),
 * the answer is that everything up to the kernel's end is data, which POSIX
 * allows; we know only that its end is no sooner than ours. The kernel
 * writes a file's pages back before it releases it.
 */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info *fi)
{
	struct node *n = node_of(req);
	struct handle *h = fh_of(fi);
	struct stat st;
	off_t r;

	if (n->wb && (whence == SEEK_DATA || whence == SEEK_HOLE) && handle_open_by(n, h->id, NULL, HANDLE_WRITABLE) &&
	    write_back(n, ino)) {
		if (off < 0 || fstat(h->fd, &st) < 0) {
			fuse_reply_err(req, off < 0 ? ENXIO : errno);
			return;
		}
		/* the kernel's size may be past ours: data from off on, a hole no sooner than our end */
		fuse_reply_lseek(req, whence == SEEK_DATA || off > st.st_size ? off : st.st_size);
		return;
	}
	r = lseek(h->fd, off, whence);
	if (r < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_lseek(req, r);
}

const struct fuse_lowlevel_ops repfs_ll_ops = {
	.init = op_init,
	.destroy = op_destroy,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.statfs = op_statfs,
	.release = op_release,
	.fsync = op_fsync,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsync,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
};
