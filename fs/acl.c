/* acl.c -- POSIX ACLs in their extended-attribute form (see acl.h)
 *
 * The form (include/uapi/linux/posix_acl_xattr.h): a little-endian u32
 * version (2), then entries of a u16 tag, a u16 permission set and a u32
 * qualifier (the uid or gid of a named entry). The kernel keeps the entries
 * sorted by tag, with one each of the owner, owning group and other entries.
 */
#include "acl.h"

#include <errno.h>
#include <stdint.h>
#include <sys/stat.h>

#define ACL_VERSION 2
#define ACL_HEAD    4
#define ACL_ENTRY   8

enum {
	TAG_USER_OBJ = 0x01,
	TAG_USER = 0x02,
	TAG_GROUP_OBJ = 0x04,
	TAG_GROUP = 0x08,
	TAG_MASK = 0x10,
	TAG_OTHER = 0x20,
};

static unsigned le16(const uint8_t *p)
{
	return (unsigned)p[0] | (unsigned)p[1] << 8;
}

int acl_default_perms(const void *value, size_t len, mode_t *perms)
{
	const uint8_t *p = value;
	int user_obj = -1, group_obj = -1, mask = -1, other = -1;

	if (len < ACL_HEAD || (len - ACL_HEAD) % ACL_ENTRY ||
	    (p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24) != ACL_VERSION)
		return -EINVAL;
	for (size_t off = ACL_HEAD; off < len; off += ACL_ENTRY) {
		unsigned tag = le16(p + off), perm = le16(p + off + 2);
		if (perm & ~7u)
			return -EINVAL;
		switch (tag) {
		case TAG_USER_OBJ:
			user_obj = (int)perm;
			break;
		case TAG_GROUP_OBJ:
			group_obj = (int)perm;
			break;
		case TAG_MASK:
			mask = (int)perm;
			break;
		case TAG_OTHER:
			other = (int)perm;
			break;
		case TAG_USER:
		case TAG_GROUP:
			break;
		default:
			return -EINVAL;
		}
	}
	if (user_obj < 0 || group_obj < 0 || other < 0)
		return -EINVAL;
	*perms = (mode_t)(user_obj << 6 | (mask >= 0 ? mask : group_obj) << 3 | other);
	return 0;
}
