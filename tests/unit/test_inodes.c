/* test_inodes.c -- the kernel's inodes by file id (fs/inodes.c: ino_learn, ino_forget) */
#include "../../fs/inodes.h"
#include "../../fs/node.h"
#include "../../fs/store.h"
#include "unit.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/xattr.h>

static struct unit_env ienv;

static void inodes_setup(void)
{
	unit_env_init(&ienv);
}

static void inodes_teardown(void)
{
	unit_env_fini(&ienv);
}

TestSuite(inodes, .init = inodes_setup, .fini = inodes_teardown);

/* A leader's node with a store and the inode table, nothing mounted. */
static void in_init(struct node *n)
{
	char path[512];
	int ret;

	memset(n, 0, sizeof(*n));
	n->st.role = ROLE_LEADER;
	pthread_mutex_init(&n->open_lock, NULL);
	unit_path(&ienv, "tree", path, sizeof(path));
	cr_assert_eq(mkdir(path, 0755), 0);
	ret = store_open(&n->store, path);
	cr_assert_eq(ret, 0, "store_open '%s': %s", path, strerror(-ret));
	cr_assert_eq(ino_table_setup(n), 0);
}

/*
 * The id hash grows as the kernel learns more inodes than it has chains
 * (16,384 at the start): 40,000 names learnt, each found again by its id
 * afterwards (the same kernel inode, a second reference), then forgotten.
 */
Test(inodes, every_inode_is_found_again_after_the_table_grew)
{
	enum { N = 40000 };
	struct node n;
	uint8_t (*ids)[FILE_ID_BYTES] = calloc(N, FILE_ID_BYTES);
	fuse_ino_t *ino = calloc(N, sizeof(*ino));
	struct inode *root;
	struct stat st = { .st_mode = S_IFREG | 0644, .st_nlink = 1 };
	struct fuse_entry_param e;
	char name[32];

	cr_assert(ids && ino);
	in_init(&n);
	root = ino_of(&n, FUSE_ROOT_ID);
	for (int i = 0; i < N; i++) {
		store_new_id(ids[i]);
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(ino_learn(&n, root, name, &st, ids[i], &e), 0, "learn %d", i);
		ino[i] = e.ino;
		for (int k = 0; k < i && k < 8; k++)
			cr_assert_neq(ino[k], e.ino, "two ids, one inode");
	}
	cr_assert_geq(ino_table_chains(&n), N, "%u chains for %d inodes", ino_table_chains(&n), N);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(ino_learn(&n, root, name, &st, ids[i], &e), 0);
		cr_assert_eq(e.ino, ino[i], "name %d got another inode after the table grew", i);
		cr_assert(!memcmp(ino_of(&n, e.ino)->id, ids[i], FILE_ID_BYTES));
	}
	for (int i = 0; i < N; i++)
		ino_forget(&n, ino[i], 2);
	/* forgotten: learning the id again makes a new inode (the old one was freed) */
	cr_assert_eq(ino_learn(&n, root, "f0", &st, ids[0], &e), 0);
	ino_forget(&n, e.ino, 1);
	ino_table_free(&n);
	store_free(n.store);
	free(ids);
	free(ino);
}

/*
 * Retired inodes (a stream's file at its last release, say) leave the id
 * hash for a list the kernel's forgets take them off, in constant time: five
 * retired, then forgotten from the list's middle, head and tail; the list
 * stays whole, lookups of the ids make new inodes, and the table frees
 * cleanly (ASan in the sanitizer build). retire() wants a session to tell
 * the kernel through: a stand-in that is never used, since no invalidation
 * thread runs here (the notes are dropped).
 */
Test(inodes, retired_inodes_leave_their_list_from_anywhere)
{
	enum { N = 5 };
	struct node n;
	uint8_t ids[N][FILE_ID_BYTES];
	fuse_ino_t ino[N];
	struct inode *root;
	struct stat st = { .st_mode = S_IFREG | 0644, .st_nlink = 1 };
	struct fuse_entry_param e;
	char name[32];
	static const int order[N] = { 2, 4, 0, 1, 3 };	/* list: 4 3 2 1 0; middle, head, tail, ... */

	in_init(&n);
	n.se = (struct fuse_session *)&n;	/* never dereferenced: see above */
	root = ino_of(&n, FUSE_ROOT_ID);
	for (int i = 0; i < N; i++) {
		store_new_id(ids[i]);
		snprintf(name, sizeof(name), "r%d", i);
		cr_assert_eq(ino_learn(&n, root, name, &st, ids[i], &e), 0);
		ino[i] = e.ino;
	}
	for (int i = 0; i < N; i++) {
		ino_retire_soon(&n, ino_of(&n, ino[i]), 0);
		cr_assert_eq(ino_table_retired(&n), i + 1, "after retiring %d", i);
		cr_assert(ino_of(&n, ino[i])->retired);
	}
	/* a lookup of a retired id makes a new inode; the retired one lives until forgotten */
	cr_assert_eq(ino_learn(&n, root, "r0", &st, ids[0], &e), 0);
	cr_assert_neq(e.ino, ino[0], "a retired inode was found again");
	ino_forget(&n, e.ino, 1);
	for (int k = 0; k < N; k++) {
		ino_forget(&n, ino[order[k]], 1);
		cr_assert_eq(ino_table_retired(&n), N - 1 - k, "after forgetting %d", order[k]);
	}
	ino_table_free(&n);
	store_free(n.store);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int k = 0;

	cr_assert(d);
	while (readdir(d))
		k++;
	closedir(d);
	return k;
}

/*
 * Directories hold a descriptor each only up to the cap (4 here); the rest
 * are opened by file handle for the request that needs them (and closed
 * as the thread takes its next one), found after a rename, gone after a
 * removal; a held descriptor freed by a forget goes to the next directory
 * opened.
 */
static unsigned dirfds_held(struct node *n)
{
	unsigned held, max;

	ino_table_fds(n, &held, &max);
	return held;
}

/* Skips the test where file handles cannot be opened (no CAP_DAC_READ_SEARCH). */
static void need_handles(int dfd)
{
	_Alignas(struct file_handle) unsigned char buf[sizeof(struct file_handle) + MAX_HANDLE_SZ];
	struct file_handle *h = (struct file_handle *)buf;
	int mnt, fd;

	h->handle_bytes = MAX_HANDLE_SZ;
	fd = name_to_handle_at(dfd, "", h, &mnt, AT_EMPTY_PATH) < 0 ? -1 : open_by_handle_at(dfd, h, O_PATH);
	if (fd < 0)
		cr_skip_test("file handles cannot be opened here: %s", strerror(errno));
	close(fd);
}

Test(inodes, directories_past_the_cap_are_opened_by_handle)
{
	enum { N = 20 };
	struct node n;
	fuse_ino_t ino[N];
	struct fuse_entry_param e;
	struct inode *root;
	char name[64], path[PATH_MAX];
	struct stat st;
	int rootfd, before;

	in_init(&n);
	need_handles(store_rootfd(n.store));
	ino_table_cap_dirfds(&n, 4);
	root = ino_of(&n, FUSE_ROOT_ID);
	rootfd = store_rootfd(n.store);
	cr_assert_eq(mkdirat(rootfd, "moved", 0755), 0);
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		cr_assert_eq(mkdirat(rootfd, name, 0755), 0);
		snprintf(path, sizeof(path), "d%d/f", i);
		close(openat(rootfd, path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
		cr_assert_eq(fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
		cr_assert_eq(ino_learn(&n, root, name, &st, NULL, &e), 0, "learn %s", name);
		ino[i] = e.ino;
	}
	cr_assert_eq(dirfds_held(&n), 4, "%u directory descriptors held, cap 4", dirfds_held(&n));

	before = open_fds();
	for (int i = 0; i < N; i++) {
		int fd = ino_dir_fd(&n, ino_of(&n, ino[i]));
		cr_assert_geq(fd, 0, "d%d: %s", i, strerror(-fd));
		cr_assert_eq(fstatat(fd, "f", &st, 0), 0, "d%d's descriptor does not reach its file", i);
		cr_assert_eq(ino_dir_path(&n, ino_of(&n, ino[i]), path, sizeof(path)), 0);
		snprintf(name, sizeof(name), "d%d", i);
		cr_assert_str_eq(path, name);
	}
	cr_assert_eq(open_fds(), before + N - 4, "16 descriptors opened by handle for this request: %d -> %d", before, open_fds());
	ino_dir_temps_release();
	cr_assert_eq(open_fds(), before, "the request's descriptors were not closed");

	/* renamed behind the inode's back: the handle still finds it */
	cr_assert_eq(renameat(rootfd, "d10", rootfd, "moved/d10"), 0);
	store_moved(n.store);
	cr_assert_eq(ino_dir_path(&n, ino_of(&n, ino[10]), path, sizeof(path)), 0);
	cr_assert_str_eq(path, "moved/d10");
	/* removed: gone */
	cr_assert_eq(unlinkat(rootfd, "d11/f", 0), 0);
	cr_assert_eq(unlinkat(rootfd, "d11", AT_REMOVEDIR), 0);
	cr_assert_eq(ino_dir_fd(&n, ino_of(&n, ino[11])), -ENOENT);
	ino_dir_temps_release();

	/* two held ones forgotten: the next two opened by handle keep theirs */
	ino_forget(&n, ino[0], 1);
	ino_forget(&n, ino[1], 1);
	cr_assert_eq(dirfds_held(&n), 2);
	cr_assert_geq(ino_dir_fd(&n, ino_of(&n, ino[12])), 0);
	cr_assert_geq(ino_dir_fd(&n, ino_of(&n, ino[13])), 0);
	cr_assert_geq(ino_dir_fd(&n, ino_of(&n, ino[14])), 0);
	cr_assert_eq(dirfds_held(&n), 4);
	before = open_fds();
	ino_dir_temps_release();
	cr_assert_eq(open_fds(), before - 1, "only d14's descriptor was the request's");
	for (int i = 2; i < N; i++)
		ino_forget(&n, ino[i], 1);
	cr_assert_eq(dirfds_held(&n), 0);
	ino_table_free(&n);
	store_free(n.store);
}

struct opener {
	struct node *n;
	struct inode *d;
	int fd;
};

static void *open_and_end(void *arg)
{
	struct opener *o = arg;

	o->fd = ino_dir_fd(o->n, o->d);
	return NULL;	/* no next request: the thread's end closes it */
}

/*
 * A thread that opened a directory by handle and ends without taking
 * another request (libfuse ends idle workers) closes what it opened.
 */
Test(inodes, a_thread_that_ends_closes_its_descriptors)
{
	enum { T = 10 };
	struct node n;
	struct fuse_entry_param e;
	struct opener o[T];
	pthread_t t[T];
	struct stat st;
	char name[16];
	int rootfd, before;

	in_init(&n);
	rootfd = store_rootfd(n.store);
	need_handles(rootfd);
	ino_table_cap_dirfds(&n, 1);
	for (int i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "d%d", i);
		cr_assert_eq(mkdirat(rootfd, name, 0755), 0);
		cr_assert_eq(fstatat(rootfd, name, &st, AT_SYMLINK_NOFOLLOW), 0);
		cr_assert_eq(ino_learn(&n, ino_of(&n, FUSE_ROOT_ID), name, &st, NULL, &e), 0);
	}
	before = open_fds();
	for (int i = 0; i < T; i++) {
		o[i] = (struct opener){ &n, ino_of(&n, e.ino), -1 };
		cr_assert_eq(pthread_create(&t[i], NULL, open_and_end, &o[i]), 0);
	}
	for (int i = 0; i < T; i++) {
		pthread_join(t[i], NULL);
		cr_assert_geq(o[i].fd, 0, "thread %d: %s", i, strerror(-o[i].fd));
	}
	cr_assert_eq(open_fds(), before, "%d descriptors left behind by threads that ended", open_fds() - before);
	ino_table_free(&n);
	store_free(n.store);
}

/*
 * A name's id, read through its directory's descriptor (getxattrat(), or
 * /proc/self/fd on kernels before 6.13): a symlink's own, not its target's;
 * a missing name and a missing xattr give ENOENT and ENODATA. Run both ways.
 */
static void read_ids_at(void)
{
	char dir[512], path[600];
	uint8_t a[FILE_ID_BYTES], b[FILE_ID_BYTES], got[FILE_ID_BYTES];
	int dfd, fd;

	unit_path(&ienv, "d", dir, sizeof(dir));
	cr_assert_eq(mkdir(dir, 0755), 0);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	store_new_id(a);
	store_new_id(b);
	fd = openat(dfd, "file", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fsetxattr(fd, ID_XATTR, a, FILE_ID_BYTES, 0), 0, "fsetxattr: %s", strerror(errno));
	close(fd);
	cr_assert_eq(symlinkat("file", dfd, "link"), 0);
	snprintf(path, sizeof(path), "%s/link", dir);
	cr_assert_eq(lsetxattr(path, ID_XATTR, b, FILE_ID_BYTES, 0), 0, "lsetxattr: %s", strerror(errno));
	fd = openat(dfd, "bare", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	cr_assert_geq(fd, 0);
	close(fd);

	cr_assert_eq(store_getxattr_at(dfd, "file", ID_XATTR, got, sizeof(got)), FILE_ID_BYTES);
	cr_assert(!memcmp(got, a, FILE_ID_BYTES));
	cr_assert_eq(store_getxattr_at(dfd, "link", ID_XATTR, got, sizeof(got)), FILE_ID_BYTES);
	cr_assert(!memcmp(got, b, FILE_ID_BYTES), "the symlink's target's id, not its own");
	cr_assert_eq(store_getxattr_at(dfd, "none", ID_XATTR, got, sizeof(got)), -1);
	cr_assert_eq(errno, ENOENT);
	cr_assert_eq(store_getxattr_at(dfd, "bare", ID_XATTR, got, sizeof(got)), -1);
	cr_assert_eq(errno, ENODATA);
	close(dfd);
}

Test(inodes, an_id_is_read_through_the_directory_descriptor)
{
	read_ids_at();
}

Test(inodes, an_id_is_read_through_proc_on_kernels_without_getxattrat)
{
	setenv("REPFS_TEST_NO_XATTRAT", "1", 1);	/* each test is a process of its own */
	read_ids_at();
}
