/* acl.h -- POSIX ACLs in their extended-attribute form
 *
 * The kernel enforces ACLs on the mount (FUSE_POSIX_ACL); the tree's file
 * system stores them, and inherits a directory's default ACL into what is
 * made in it. What the mount must compute itself is the mode of a new
 * object, which goes into its create record before the tree sees it.
 */
#ifndef REPFS_ACL_H
#define REPFS_ACL_H

#include <stddef.h>
#include <sys/types.h>

#define ACL_XATTR_ACCESS  "system.posix_acl_access"
#define ACL_XATTR_DEFAULT "system.posix_acl_default"

/*
 * The permission bits a directory's default ACL (the value of its
 * system.posix_acl_default) lets an object made in it keep: its owner
 * entry, its mask entry (or, without one, its owning group entry) and its
 * other entry, as rwxrwxrwx bits. A new object's mode is the requested mode
 * ANDed with them, and the umask does not apply (posix_acl_create()).
 * -EINVAL if the value is not a well-formed ACL.
 */
int acl_default_perms(const void *value, size_t len, mode_t *perms);

#endif
