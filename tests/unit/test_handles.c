/* test_handles.c -- open handles lent to requests that came without one
 * (fs/inodes.c: handle_borrow, handle_return, handle_release)
 */
#include "../../fs/inodes.h"
#include "../../fs/node.h"
#include "../../fs/store.h"
#include "unit.h"

static struct unit_env henv;

static void handles_setup(void)
{
	unit_env_init(&henv);
}

static void handles_teardown(void)
{
	unit_env_fini(&henv);
}

TestSuite(handles, .init = handles_setup, .fini = handles_teardown);

/* A node with only what the open-handle list needs: the lock and a store. */
static void hn_init(struct node *n)
{
	char path[512];
	int ret;

	memset(n, 0, sizeof(*n));
	pthread_mutex_init(&n->open_lock, NULL);
	unit_path(&henv, "tree", path, sizeof(path));
	cr_assert_eq(mkdir(path, 0755), 0);
	ret = store_open(&n->store, path);
	cr_assert_eq(ret, 0, "store_open '%s': %s", path, strerror(-ret));
}

/* Opens a handle of id on n (its descriptor: /dev/null), as new_handle() links it. */
static struct handle *hn_open(struct node *n, uint8_t idbyte)
{
	struct handle *h = calloc(1, sizeof(*h));

	cr_assert_not_null(h);
	h->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(h->fd, 0);
	memset(h->id, idbyte, FILE_ID_BYTES);
	h->tree_gen = store_gen(n->store);
	h->next = n->open_files;
	if (h->next)
		h->next->prev = h;
	n->open_files = h;
	return h;
}

static int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

Test(handles, borrow_finds_by_id)
{
	struct node n;
	uint8_t a[FILE_ID_BYTES], c[FILE_ID_BYTES];
	struct handle *ha, *hb;

	hn_init(&n);
	ha = hn_open(&n, 1);
	hb = hn_open(&n, 2);
	memset(a, 1, sizeof(a));
	memset(c, 3, sizeof(c));
	cr_assert_eq(handle_borrow(&n, a), ha);
	cr_assert_null(handle_borrow(&n, c), "a handle of an id nobody has open");
	handle_return(&n, ha);
	cr_assert(fd_is_open(ha->fd), "a return with the handle still open freed it");
	handle_release(&n, ha);
	handle_release(&n, hb);
	cr_assert_null(n.open_files);
	store_free(n.store);
}

Test(handles, released_while_lent_lives_until_returned)
{
	struct node n;
	uint8_t a[FILE_ID_BYTES];
	struct handle *ha, *hb, *lent1, *lent2;
	int fd;

	hn_init(&n);
	hb = hn_open(&n, 2);
	ha = hn_open(&n, 1);
	fd = ha->fd;
	memset(a, 1, sizeof(a));
	lent1 = handle_borrow(&n, a);
	lent2 = handle_borrow(&n, a);
	cr_assert(lent1 == ha && lent2 == ha);
	handle_release(&n, ha);	/* the kernel's RELEASE while two requests use it */
	cr_assert_eq(n.open_files, hb, "a released handle stays listed");
	cr_assert_null(hb->prev);
	cr_assert_null(handle_borrow(&n, a), "a released handle is lent again");
	cr_assert(fd_is_open(fd), "released under its borrowers");
	handle_return(&n, lent1);
	cr_assert(fd_is_open(fd), "freed before the last borrower returned it");
	handle_return(&n, lent2);
	cr_assert(!fd_is_open(fd), "the last return did not free it");
	handle_release(&n, hb);
	cr_assert_null(n.open_files);
	store_free(n.store);
}

Test(handles, release_unlinks_from_the_middle)
{
	struct node n;
	struct handle *h1, *h2, *h3;

	hn_init(&n);
	h1 = hn_open(&n, 1);
	h2 = hn_open(&n, 2);
	h3 = hn_open(&n, 3);	/* list: h3 h2 h1 */
	handle_release(&n, h2);
	cr_assert(n.open_files == h3 && h3->next == h1 && h1->prev == h3);
	handle_release(&n, h3);
	cr_assert(n.open_files == h1 && !h1->prev);
	handle_release(&n, h1);
	cr_assert_null(n.open_files);
	store_free(n.store);
}

Test(handles, none_lent_from_a_replaced_tree)
{
	struct node n;
	uint8_t a[FILE_ID_BYTES];
	struct handle *old, *now;

	hn_init(&n);
	old = hn_open(&n, 1);
	/* a rewind or a snapshot's install swaps the tree: old reaches the one before */
	cr_assert_eq(store_reopen(n.store), 0);
	memset(a, 1, sizeof(a));
	cr_assert_null(handle_borrow(&n, a), "a handle of the replaced tree was lent");
	now = hn_open(&n, 1);
	cr_assert_eq(handle_borrow(&n, a), now);
	handle_return(&n, now);
	handle_release(&n, now);
	handle_release(&n, old);
	store_free(n.store);
}
