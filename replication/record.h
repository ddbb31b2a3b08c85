/* record.h -- operation log records: what a change is, and its byte encoding
 *
 * A record is one accepted change, at position (epoch, seq). seq is global and
 * increases by one per record across epochs; epoch only ever grows. The byte
 * form (docs/log-format.md) is
 *
 *   header  56 bytes   len u32, type u16, flags u16, epoch u64, seq u64,
 *                      time_ns i64, body_len u32, reserved u32, nonce[16]
 *   body   112 bytes   ids, numeric fields, four lengths
 *   tail   variable    path\0 path2\0 name\0 data
 *   mac     32 bytes   BLAKE2b-256(logkey; prev_mac || header || body ||
 *                      path\0 path2\0 name\0 || tag), where
 *                      tag = Poly1305(one-time key from the header; data)
 *
 * The nonce is random per record, so the one-time key never repeats; bulk
 * data is authenticated at Poly1305 speed, everything else by BLAKE2b, and
 * the chain runs through the BLAKE2b MAC.
 *
 * All integers are little endian. Strings carry their NUL so a decoded record
 * points into the buffer it was decoded from: the caller keeps that buffer
 * alive while it uses the record. Records name objects by file id and path; a
 * zero id means "none" (a rename onto a free name, say).
 */
#ifndef REPFS_RECORD_H
#define REPFS_RECORD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "../lib/crypto.h"

#define FILE_ID_BYTES 16
#define REC_HEADER_BYTES 56
#define REC_NONCE_BYTES 16
#define REC_BODY_BYTES 112
#define REC_MAX_DATA (1u << 20)			 /* largest write payload */
#define REC_MAX_BYTES (REC_MAX_DATA + 3 * 4096 + 65536 + 256) /* paths, name, value */

enum rec_type {
	REC_BRANCH = 1,	     /* first record of an epoch: off = previous epoch, len = its last seq */
	REC_CREATE = 2,	     /* path, id, mode (with type bits), uid, gid, rdev, data = symlink target */
	REC_LINK = 3,	     /* path (existing) -> path2 (new), id */
	REC_UNLINK = 4,	     /* path, id */
	REC_RMDIR = 5,	     /* path, id */
	REC_RENAME = 6,	     /* path -> path2, id, id2 = object replaced at path2 or zero, op_flags */
	REC_SETATTR = 7,     /* path, id, op_flags = SA_* mask, mode, uid, gid, len = size, atime, mtime */
	REC_WRITE = 8,	     /* path, id, off, data */
	REC_FALLOCATE = 9,   /* path, id, op_flags = mode, off, len */
	REC_COPY = 10,	     /* path, id (source) off -> path2, id2 (destination) off2, len */
	REC_SETXATTR = 11,   /* path, id, name, data = value, op_flags = XATTR_CREATE/REPLACE */
	REC_REMOVEXATTR = 12, /* path, id, name */
	REC_TYPE_MAX = 12,
};

/* flags of struct record */
#define REC_F_NOPATH 0x1	/* the object had no name any more (unlinked while open) */
#define REC_F_KEEP_MTIME 0x2	/* write, fallocate: mtime_ns is the file's mtime before it, which
				   the apply keeps (a setattr record carries the writer's, as the
				   kernel's writeback cache sends it) */

/* setattr mask bits (op_flags of REC_SETATTR) */
#define SA_MODE 0x01
#define SA_UID 0x02
#define SA_GID 0x04
#define SA_SIZE 0x08
#define SA_ATIME 0x10
#define SA_MTIME 0x20

struct pos {
	uint64_t epoch;
	uint64_t seq;
};

struct record {
	uint16_t type;
	uint16_t flags;
	uint64_t epoch;
	uint64_t seq;
	int64_t time_ns;	/* wall clock the leader accepted it at; the mtime apply sets */
	uint8_t nonce[REC_NONCE_BYTES];	/* random, set by oplog_append() */

	uint8_t id[FILE_ID_BYTES];
	uint8_t id2[FILE_ID_BYTES];
	uint32_t mode, uid, gid, op_flags;
	uint64_t rdev, off, off2, len;
	int64_t atime_ns, mtime_ns;

	const char *path;	/* relative to the tree root, "" for the root; never NULL once decoded */
	const char *path2;
	const char *name;
	const void *data;
	uint32_t data_len;
};

/* Name of a record type for people ("write", "rename", ...); "?" if unknown. */
const char *record_type_name(unsigned type);

/*
 * Lays r out for writing: fills hdr (REC_HEADER_BYTES + REC_BODY_BYTES bytes)
 * and 4 iovecs in iov (header+body, path, path2, name; the data is r->data),
 * returning 4, or -EINVAL if a field is too long. The MAC is not included.
 * Sets *total to the record's full length including the MAC.
 */
int record_layout(const struct record *r, uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES],
		  struct iovec iov[4], uint32_t *total);

/* MAC of a laid-out record (meta: the iovecs of record_layout), chained on prev. */
void record_mac(const struct key *k, const uint8_t prev[CRYPTO_MAC_BYTES], const struct iovec *meta,
		int nmeta, const void *data, size_t data_len, uint8_t out[CRYPTO_MAC_BYTES]);

/*
 * Reads the length from the first 4 bytes of a header; 0 if it is not a
 * plausible record length (a torn or corrupt header).
 */
uint32_t record_peek_len(const uint8_t *buf, size_t avail);

/*
 * The length the body's four length fields imply, once avail covers the
 * header and body (0 before; UINT32_MAX if absurd). A torn write leaves a
 * prefix of a consistent record, so a header whose length disagrees with it
 * was damaged, not torn.
 */
uint32_t record_implied_len(const uint8_t *buf, size_t avail);

/*
 * Decodes the whole record in buf[0..len) (MAC included, not checked here) into
 * *r, pointing into buf. -EBADMSG if it is malformed. Checking the MAC is
 * record_verify()'s job.
 */
int record_decode(const uint8_t *buf, size_t len, struct record *r);

/* 0 if buf[0..len) carries a valid MAC chained on prev, -EBADMSG otherwise. */
__attribute__((warn_unused_result)) int record_verify(const struct key *k,
						      const uint8_t prev[CRYPTO_MAC_BYTES],
						      const uint8_t *buf, size_t len);

/* The MAC stored at the end of an encoded record. */
const uint8_t *record_mac_of(const uint8_t *buf, size_t len);

/* One line for people: "epoch seq type /path [-> /path2] size [@off|name|from ...]". */
int record_describe(const struct record *r, char *buf, size_t len);

/* Encodes r (with its MAC chained on prev) into a fresh malloc'd buffer. */
int record_encode(const struct key *k, const uint8_t prev[CRYPTO_MAC_BYTES], const struct record *r,
		  uint8_t **out, size_t *outlen);

#endif
