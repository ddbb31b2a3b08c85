/* test_acl.c -- a default ACL's permission bits, checked against the kernel's own inheritance */
#include "../../fs/acl.h"
#include "unit.h"

#include <sys/xattr.h>

static struct unit_env aenv;

static void acl_setup(void)
{
	unit_env_init(&aenv);
}

static void acl_teardown(void)
{
	unit_env_fini(&aenv);
}

TestSuite(acl, .init = acl_setup, .fini = acl_teardown);

struct ent {
	uint16_t tag, perm;
	uint32_t id;
};

/* The xattr form of the n entries (little-endian, as on x86 and arm64). */
static size_t acl_value(uint8_t *buf, const struct ent *e, int n)
{
	uint32_t version = 2;

	memcpy(buf, &version, 4);
	for (int i = 0; i < n; i++) {
		memcpy(buf + 4 + 8 * i, &e[i].tag, 2);
		memcpy(buf + 6 + 8 * i, &e[i].perm, 2);
		memcpy(buf + 8 + 8 * i, &e[i].id, 4);
	}
	return 4 + 8 * (size_t)n;
}

Test(acl, perms_with_and_without_mask)
{
	struct ent with_mask[] = {{0x01, 7, 0}, {0x02, 7, 1000}, {0x04, 5, 0}, {0x10, 6, 0}, {0x20, 4, 0}};
	struct ent minimal[] = {{0x01, 6, 0}, {0x04, 5, 0}, {0x20, 1, 0}};
	uint8_t buf[64];
	mode_t p = 0;

	cr_assert_eq(acl_default_perms(buf, acl_value(buf, with_mask, 5), &p), 0);
	cr_assert_eq(p, 0764, "the mask entry, not the owning group's, bounds the group bits: %o", p);
	cr_assert_eq(acl_default_perms(buf, acl_value(buf, minimal, 3), &p), 0);
	cr_assert_eq(p, 0651, "%o", p);
}

Test(acl, malformed)
{
	struct ent no_other[] = {{0x01, 7, 0}, {0x04, 5, 0}};
	struct ent bad_tag[] = {{0x01, 7, 0}, {0x04, 5, 0}, {0x40, 1, 0}, {0x20, 1, 0}};
	struct ent bad_perm[] = {{0x01, 8, 0}, {0x04, 5, 0}, {0x20, 1, 0}};
	uint8_t buf[64];
	mode_t p = 0;

	cr_assert_eq(acl_default_perms(buf, acl_value(buf, no_other, 2), &p), -EINVAL);
	cr_assert_eq(acl_default_perms(buf, acl_value(buf, bad_tag, 4), &p), -EINVAL);
	cr_assert_eq(acl_default_perms(buf, acl_value(buf, bad_perm, 3), &p), -EINVAL);
	cr_assert_eq(acl_default_perms(buf, 3, &p), -EINVAL, "shorter than the header");
	cr_assert_eq(acl_default_perms(buf, acl_value(buf, no_other, 2) + 3, &p), -EINVAL, "a torn entry");
	buf[0] = 1;
	cr_assert_eq(acl_default_perms(buf, 12, &p), -EINVAL, "version 1");
}

/* What the file system under the unit tests makes of mode m under the default ACL e: the same. */
Test(acl, matches_the_kernel)
{
	struct ent acls[][5] = {
	    {{0x01, 7, 0}, {0x02, 7, 1000}, {0x04, 5, 0}, {0x10, 6, 0}, {0x20, 4, 0}},
	    {{0x01, 6, 0}, {0x04, 5, 0}, {0x20, 1, 0}},
	    {{0x01, 5, 0}, {0x04, 0, 0}, {0x08, 7, 100}, {0x10, 3, 0}, {0x20, 0, 0}},
	};
	int counts[] = {5, 3, 5};
	mode_t modes[] = {0666, 0777, 0600, 0751, 02775, 0644};
	uint8_t buf[64];
	char dir[512], path[600];

	umask(022); /* ignored under a default ACL */
	for (int a = 0; a < 3; a++) {
		size_t len = acl_value(buf, acls[a], counts[a]);
		mode_t perms;
		snprintf(dir, sizeof(dir), "%s/d%d", aenv.dir, a);
		cr_assert_eq(mkdir(dir, 0777), 0);
		if (setxattr(dir, ACL_XATTR_DEFAULT, buf, len, 0) < 0) {
			cr_assert(errno == EOPNOTSUPP, "setxattr: %s", strerror(errno));
			cr_skip_test("no POSIX ACLs on %s", aenv.dir);
		}
		cr_assert_eq(acl_default_perms(buf, len, &perms), 0);
		for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
			struct stat st;
			snprintf(path, sizeof(path), "%s/f%zu", dir, m);
			int fd = open(path, O_CREAT | O_EXCL | O_WRONLY, modes[m]);
			cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
			close(fd);
			cr_assert_eq(stat(path, &st), 0);
			cr_assert_eq(st.st_mode & 07777, (modes[m] & ~0777u) | (modes[m] & perms),
				     "acl %d mode %o: the kernel made %o, we say %o", a, modes[m],
				     st.st_mode & 07777, (modes[m] & ~0777u) | (modes[m] & perms));
			snprintf(path, sizeof(path), "%s/d%zu", dir, m);
			cr_assert_eq(mkdir(path, modes[m]), 0);
			cr_assert_eq(stat(path, &st), 0);
			cr_assert_eq(st.st_mode & 0777, modes[m] & perms, "acl %d dir mode %o", a, modes[m]);
		}
	}
}
