/* record.c -- encoding, decoding and MACs of operation log records */
#include "record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char *const type_names[] = {
	[REC_BRANCH] = "branch",     [REC_CREATE] = "create",	  [REC_LINK] = "link",
	[REC_UNLINK] = "unlink",     [REC_RMDIR] = "rmdir",	  [REC_RENAME] = "rename",
	[REC_SETATTR] = "setattr",   [REC_WRITE] = "write",	  [REC_FALLOCATE] = "fallocate",
	[REC_COPY] = "copy",	     [REC_SETXATTR] = "setxattr", [REC_REMOVEXATTR] = "removexattr",
};

const char *record_type_name(unsigned type)
{
	if (type == 0 || type > REC_TYPE_MAX)
		return "?";
	return type_names[type];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) + 1 : 1;
}

static const char empty[1] = "";

int record_layout(const struct record *r, uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES],
		  struct iovec iov[4], uint32_t *total)
{
	size_t lp = slen(r->path), lp2 = slen(r->path2), ln = slen(r->name);
	uint8_t *b = hdr + REC_HEADER_BYTES;
	uint64_t len;
	int n = 0;

	if (lp > PATH_MAX || lp2 > PATH_MAX || ln > 256 || r->data_len > REC_MAX_DATA + 65536)
		return -EINVAL;
	len = REC_HEADER_BYTES + REC_BODY_BYTES + lp + lp2 + ln + r->data_len + CRYPTO_MAC_BYTES;
	if (len > REC_MAX_BYTES)
		return -EINVAL;

	put32(hdr, (uint32_t)len);
	put16(hdr + 4, r->type);
	put16(hdr + 6, r->flags);
	put64(hdr + 8, r->epoch);
	put64(hdr + 16, r->seq);
	put64(hdr + 24, (uint64_t)r->time_ns);
	put32(hdr + 32, REC_BODY_BYTES);
	put32(hdr + 36, 0);
	memcpy(hdr + 40, r->nonce, REC_NONCE_BYTES);

	memcpy(b, r->id, FILE_ID_BYTES);
	memcpy(b + 16, r->id2, FILE_ID_BYTES);
	put32(b + 32, r->mode);
	put32(b + 36, r->uid);
	put32(b + 40, r->gid);
	put32(b + 44, r->op_flags);
	put64(b + 48, r->rdev);
	put64(b + 56, r->off);
	put64(b + 64, r->off2);
	put64(b + 72, r->len);
	put64(b + 80, (uint64_t)r->atime_ns);
	put64(b + 88, (uint64_t)r->mtime_ns);
	put32(b + 96, (uint32_t)lp);
	put32(b + 100, (uint32_t)lp2);
	put32(b + 104, (uint32_t)ln);
	put32(b + 108, r->data_len);

	iov[n++] = (struct iovec){ hdr, REC_HEADER_BYTES + REC_BODY_BYTES };
	iov[n++] = (struct iovec){ (void *)(r->path ? r->path : empty), lp };
	iov[n++] = (struct iovec){ (void *)(r->path2 ? r->path2 : empty), lp2 };
	iov[n++] = (struct iovec){ (void *)(r->name ? r->name : empty), ln };
	*total = (uint32_t)len;
	return n;
}

void record_mac(const struct key *k, const uint8_t prev[CRYPTO_MAC_BYTES], const struct iovec *meta,
		int nmeta, const void *data, size_t data_len, uint8_t out[CRYPTO_MAC_BYTES])
{
	uint8_t tag[CRYPTO_TAG_BYTES];
	struct mac_state st;

	/* the header (epoch, seq, random nonce) makes the one-time key unique */
	data_tag(k, meta[0].iov_base, REC_HEADER_BYTES, data, data_len, tag);
	mac_init(&st, k);
	mac_update(&st, prev, CRYPTO_MAC_BYTES);
	for (int i = 0; i < nmeta; i++)
		mac_update(&st, meta[i].iov_base, meta[i].iov_len);
	mac_update(&st, tag, sizeof(tag));
	mac_final(&st, out);
}

uint32_t record_peek_len(const uint8_t *buf, size_t avail)
{
	uint32_t len;

	if (avail < 4)
		return 0;
	len = get32(buf);
	if (len < REC_HEADER_BYTES + REC_BODY_BYTES + 3 + CRYPTO_MAC_BYTES || len > REC_MAX_BYTES)
		return 0;
	return len;
}

uint32_t record_implied_len(const uint8_t *buf, size_t avail)
{
	const uint8_t *b = buf + REC_HEADER_BYTES;
	uint64_t len;

	if (avail < REC_HEADER_BYTES + REC_BODY_BYTES)
		return 0;
	len = (uint64_t)REC_HEADER_BYTES + REC_BODY_BYTES + get32(b + 96) + get32(b + 100) + get32(b + 104) +
	      get32(b + 108) + CRYPTO_MAC_BYTES;
	return len > REC_MAX_BYTES ? UINT32_MAX : (uint32_t)len;
}

/* Checks that s[0..n) is a string whose only NUL is its last byte. */
static int valid_str(const uint8_t *s, uint32_t n)
{
	return n >= 1 && s[n - 1] == 0 && memchr(s, 0, n) == s + n - 1;
}

int record_decode(const uint8_t *buf, size_t len, struct record *r)
{
	const uint8_t *b = buf + REC_HEADER_BYTES, *t;
	uint32_t lp, lp2, ln, ld;

	if (len < REC_HEADER_BYTES + REC_BODY_BYTES || record_peek_len(buf, len) != len)
		return -EBADMSG;
	if (get32(buf + 32) != REC_BODY_BYTES)
		return -EBADMSG;
	memset(r, 0, sizeof(*r));
	r->type = get16(buf + 4);
	r->flags = get16(buf + 6);
	r->epoch = get64(buf + 8);
	r->seq = get64(buf + 16);
	r->time_ns = (int64_t)get64(buf + 24);
	memcpy(r->nonce, buf + 40, REC_NONCE_BYTES);
	if (r->type == 0 || r->type > REC_TYPE_MAX)
		return -EBADMSG;

	memcpy(r->id, b, FILE_ID_BYTES);
	memcpy(r->id2, b + 16, FILE_ID_BYTES);
	r->mode = get32(b + 32);
	r->uid = get32(b + 36);
	r->gid = get32(b + 40);
	r->op_flags = get32(b + 44);
	r->rdev = get64(b + 48);
	r->off = get64(b + 56);
	r->off2 = get64(b + 64);
	r->len = get64(b + 72);
	r->atime_ns = (int64_t)get64(b + 80);
	r->mtime_ns = (int64_t)get64(b + 88);
	lp = get32(b + 96);
	lp2 = get32(b + 100);
	ln = get32(b + 104);
	ld = get32(b + 108);
	if ((uint64_t)REC_HEADER_BYTES + REC_BODY_BYTES + lp + lp2 + ln + ld + CRYPTO_MAC_BYTES != len)
		return -EBADMSG;
	if (lp > PATH_MAX || lp2 > PATH_MAX || ln > 256)
		return -EBADMSG;
	t = b + REC_BODY_BYTES;
	if (!valid_str(t, lp) || !valid_str(t + lp, lp2) || !valid_str(t + lp + lp2, ln))
		return -EBADMSG;
	r->path = (const char *)t;
	r->path2 = (const char *)t + lp;
	r->name = (const char *)t + lp + lp2;
	r->data = ld ? t + lp + lp2 + ln : NULL;
	r->data_len = ld;
	return 0;
}

const uint8_t *record_mac_of(const uint8_t *buf, size_t len)
{
	return buf + len - CRYPTO_MAC_BYTES;
}

int record_verify(const struct key *k, const uint8_t prev[CRYPTO_MAC_BYTES], const uint8_t *buf,
		  size_t len)
{
	uint8_t mac[CRYPTO_MAC_BYTES];
	struct iovec meta;
	uint32_t dl;

	if (len < CRYPTO_MAC_BYTES + REC_HEADER_BYTES + REC_BODY_BYTES)
		return -EBADMSG;
	dl = get32(buf + REC_HEADER_BYTES + 108);
	if ((uint64_t)dl + CRYPTO_MAC_BYTES + REC_HEADER_BYTES + REC_BODY_BYTES > len)
		return -EBADMSG;
	meta = (struct iovec){ (void *)buf, len - CRYPTO_MAC_BYTES - dl };
	record_mac(k, prev, &meta, 1, buf + meta.iov_len, dl, mac);
	return mac_equal(mac, record_mac_of(buf, len)) == 0 ? 0 : -EBADMSG;
}

int record_encode(const struct key *k, const uint8_t prev[CRYPTO_MAC_BYTES], const struct record *r,
		  uint8_t **out, size_t *outlen)
{
	uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES];
	struct iovec iov[4];
	uint32_t total;
	uint8_t *buf, *p;
	int n;

	n = record_layout(r, hdr, iov, &total);
	if (n < 0)
		return n;
	buf = malloc(total);
	if (!buf)
		return -ENOMEM;
	p = buf;
	for (int i = 0; i < n; i++) {
		memcpy(p, iov[i].iov_base, iov[i].iov_len);
		p += iov[i].iov_len;
	}
	if (r->data_len)
		memcpy(p, r->data, r->data_len);
	p += r->data_len;
	record_mac(k, prev, iov, n, r->data, r->data_len, p);
	*out = buf;
	*outlen = total;
	return 0;
}

int record_describe(const struct record *r, char *buf, size_t len)
{
	const char *p2 = (r->path2 && *r->path2) ? r->path2 : NULL;
	uint64_t size = r->data_len;
	int n;

	if ((r->type == REC_SETATTR && (r->op_flags & SA_SIZE)) || r->type == REC_FALLOCATE || r->type == REC_COPY)
		size = r->len;
	n = snprintf(buf, len, "%" PRIu64 " %" PRIu64 " %s /%s%s%s %" PRIu64, r->epoch, r->seq,
		     record_type_name(r->type), (r->flags & REC_F_NOPATH) ? "(unlinked)" : r->path, p2 ? " -> /" : "",
		     p2 ? p2 : "", size);
	if (n < 0 || (size_t)n >= len)
		return n;
	if (r->type == REC_WRITE || r->type == REC_FALLOCATE)
		n += snprintf(buf + n, len - (size_t)n, " @%" PRIu64, r->off);
	else if (r->type == REC_SETXATTR || r->type == REC_REMOVEXATTR)
		n += snprintf(buf + n, len - (size_t)n, " %s", r->name);
	else if (r->type == REC_BRANCH)
		n += snprintf(buf + n, len - (size_t)n, " from epoch %" PRIu64 " seq %" PRIu64, r->off, r->len);
	return n;
}
