/* test_record.c -- record encoding: round trips, limits, malformed input, MACs */
#include <limits.h>

#include "../../replication/record.h"
#include "unit.h"

static struct unit_env renv;

static void record_setup(void)
{
	unit_env_init(&renv);
}

static void record_teardown(void)
{
	unit_env_fini(&renv);
}

TestSuite(record, .init = record_setup, .fini = record_teardown);

/* offsets in the encoded form (record.h) */
#define RT_BODY REC_HEADER_BYTES
#define RT_LP (RT_BODY + 96)
#define RT_LP2 (RT_BODY + 100)
#define RT_LN (RT_BODY + 104)
#define RT_LD (RT_BODY + 108)
#define RT_TAIL (REC_HEADER_BYTES + REC_BODY_BYTES)

static void rt_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t rt_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static const uint8_t rt_zero_mac[CRYPTO_MAC_BYTES];

/* A record with every field set to something distinct for type t. */
static void rt_fill(struct record *r, unsigned t, char *path, char *path2, char *name, uint8_t *data,
		    uint32_t data_len)
{
	memset(r, 0, sizeof(*r));
	r->type = (uint16_t)t;
	r->flags = (uint16_t)(0x8001 ^ t);
	r->epoch = 0x0102030405060708ull + t;
	r->seq = 0x1112131415161718ull * t + 1;
	r->time_ns = -(int64_t)t * 1000000007ll + 1700000000123456789ll;
	for (int i = 0; i < REC_NONCE_BYTES; i++)
		r->nonce[i] = (uint8_t)(0x5c ^ (i * 13 + t));
	for (int i = 0; i < FILE_ID_BYTES; i++) {
		r->id[i] = (uint8_t)(0xa0 + i + t);
		r->id2[i] = (uint8_t)(0x10 * t + i);
	}
	r->mode = 0100644u + t;
	r->uid = 1000u + t;
	r->gid = 0xfffffffeu - t;
	r->op_flags = 0x55aa0000u | t;
	r->rdev = 0xdeadbeef00000000ull | t;
	r->off = 0xffffffffffffff00ull + t;
	r->off2 = 4096ull * t;
	r->len = 0x7fffffffffffffffull - t;
	r->atime_ns = -1 - (int64_t)t;
	r->mtime_ns = INT64_MAX - (int64_t)t;
	sprintf(path, "dir %u/sub/file-%u", t, t);
	sprintf(path2, "other/\xc3\xa9t\xc3\xa9-%u", t);
	sprintf(name, "user.name%u", t);
	for (uint32_t i = 0; i < data_len; i++)
		data[i] = (uint8_t)(i * 7 + t);	/* includes NULs */
	r->path = path;
	r->path2 = path2;
	r->name = name;
	r->data = data_len ? data : NULL;
	r->data_len = data_len;
}

static void rt_expect_same(const struct record *a, const struct record *b)
{
	cr_assert_eq(a->type, b->type);
	cr_assert_eq(a->flags, b->flags);
	cr_assert_eq(a->epoch, b->epoch);
	cr_assert_eq(a->seq, b->seq);
	cr_assert_eq(a->time_ns, b->time_ns);
	cr_assert_arr_eq(a->nonce, b->nonce, REC_NONCE_BYTES);
	cr_assert_arr_eq(a->id, b->id, FILE_ID_BYTES);
	cr_assert_arr_eq(a->id2, b->id2, FILE_ID_BYTES);
	cr_assert_eq(a->mode, b->mode);
	cr_assert_eq(a->uid, b->uid);
	cr_assert_eq(a->gid, b->gid);
	cr_assert_eq(a->op_flags, b->op_flags);
	cr_assert_eq(a->rdev, b->rdev);
	cr_assert_eq(a->off, b->off);
	cr_assert_eq(a->off2, b->off2);
	cr_assert_eq(a->len, b->len);
	cr_assert_eq(a->atime_ns, b->atime_ns);
	cr_assert_eq(a->mtime_ns, b->mtime_ns);
	cr_assert_str_eq(a->path ? a->path : "", b->path);
	cr_assert_str_eq(a->path2 ? a->path2 : "", b->path2);
	cr_assert_str_eq(a->name ? a->name : "", b->name);
	cr_assert_eq(a->data_len, b->data_len);
	if (a->data_len)
		cr_assert_arr_eq(a->data, b->data, a->data_len);
	else
		cr_assert_null(b->data);
}

/* Encodes r chained on prev; the caller frees *buf. */
static void rt_encode(const struct record *r, const uint8_t *prev, uint8_t **buf, size_t *len)
{
	int ret = record_encode(renv.key, prev ? prev : rt_zero_mac, r, buf, len);

	cr_assert_eq(ret, 0, "record_encode: %s", strerror(-ret));
}

static void rt_expect_bad(const uint8_t *buf, size_t len, const char *what)
{
	struct record d;
	int ret = record_decode(buf, len, &d);

	cr_assert_eq(ret, -EBADMSG, "record_decode accepted %s (returned %d)", what, ret);
}

/* A small valid encoding in a fresh buffer of exactly its size. */
static uint8_t *rt_small(size_t *len)
{
	char p[64], p2[64], n[64];
	uint8_t data[40];
	struct record r;
	uint8_t *buf;

	rt_fill(&r, REC_WRITE, p, p2, n, data, sizeof(data));
	rt_encode(&r, NULL, &buf, len);
	return buf;
}

Test(record, round_trip_every_type)
{
	static uint8_t data[3000];
	char path[128], path2[128], name[64];

	for (unsigned t = 1; t <= REC_TYPE_MAX; t++) {
		uint32_t dlens[] = { 0, 1, t * 211 + 5 };
		for (size_t j = 0; j < sizeof(dlens) / sizeof(dlens[0]); j++) {
			struct record r, d;
			uint8_t prev[CRYPTO_MAC_BYTES];
			uint8_t *buf;
			size_t len;

			memset(prev, (int)t, sizeof(prev));
			rt_fill(&r, t, path, path2, name, data, dlens[j]);
			rt_encode(&r, prev, &buf, &len);
			cr_assert_eq(len, REC_HEADER_BYTES + REC_BODY_BYTES + strlen(path) + 1 +
						  strlen(path2) + 1 + strlen(name) + 1 + dlens[j] + CRYPTO_MAC_BYTES);
			cr_assert_eq(record_peek_len(buf, len), len);
			cr_assert_eq(record_decode(buf, len, &d), 0, "decode of %s failed",
				     record_type_name(t));
			rt_expect_same(&r, &d);
			/* the decoded record points into the buffer */
			cr_assert(d.path >= (const char *)buf && d.path < (const char *)buf + len);
			cr_assert(d.name >= (const char *)buf && d.name < (const char *)buf + len);
			cr_assert_eq(record_verify(renv.key, prev, buf, len), 0);
			cr_assert_eq(record_mac_of(buf, len), buf + len - CRYPTO_MAC_BYTES);
			free(buf);
		}
	}
}

Test(record, round_trip_null_strings_and_binary_data)
{
	uint8_t data[5] = { 0, 1, 0, 2, 0 }, *buf;
	struct record r = { .type = REC_SETXATTR, .seq = 9, .data = data, .data_len = 5 }, d;
	size_t len;

	rt_encode(&r, NULL, &buf, &len);
	cr_assert_eq(record_decode(buf, len, &d), 0);
	cr_assert_not_null(d.path);
	cr_assert_str_eq(d.path, "");
	cr_assert_str_eq(d.path2, "");
	cr_assert_str_eq(d.name, "");
	rt_expect_same(&r, &d);
	free(buf);
}

Test(record, layout_matches_encode_and_mac)
{
	uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES], mac[CRYPTO_MAC_BYTES], prev[CRYPTO_MAC_BYTES];
	char path[128], path2[128], name[64];
	uint8_t data[100], *buf, *p;
	struct iovec iov[4];
	struct record r;
	uint32_t total;
	size_t len;
	int n;

	memset(prev, 0x3c, sizeof(prev));
	rt_fill(&r, REC_COPY, path, path2, name, data, sizeof(data));
	n = record_layout(&r, hdr, iov, &total);
	cr_assert_eq(n, 4);
	rt_encode(&r, prev, &buf, &len);
	cr_assert_eq(total, len);
	p = buf;
	for (int i = 0; i < n; i++) {
		cr_assert_arr_eq(p, iov[i].iov_base, iov[i].iov_len, "iovec %d differs", i);
		p += iov[i].iov_len;
	}
	cr_assert_arr_eq(p, data, sizeof(data), "the data follows the strings");
	record_mac(renv.key, prev, iov, n, data, sizeof(data), mac);
	cr_assert_arr_eq(mac, record_mac_of(buf, len), CRYPTO_MAC_BYTES);
	free(buf);
}

Test(record, mac_covers_nonce_and_data)
{
	char path[64], path2[64], name[64];
	uint8_t data[64], *a, *b;
	size_t la, lb;
	struct record r;

	rt_fill(&r, REC_WRITE, path, path2, name, data, sizeof(data));
	rt_encode(&r, NULL, &a, &la);
	r.nonce[3] ^= 1;
	rt_encode(&r, NULL, &b, &lb);
	cr_assert_arr_neq(record_mac_of(a, la), record_mac_of(b, lb), CRYPTO_MAC_BYTES);
	cr_assert_eq(record_verify(renv.key, rt_zero_mac, b, lb), 0);
	free(b);
	r.nonce[3] ^= 1;
	data[63] ^= 1;
	rt_encode(&r, NULL, &b, &lb);
	cr_assert_arr_neq(record_mac_of(a, la), record_mac_of(b, lb), CRYPTO_MAC_BYTES);
	free(b);
	free(a);
}

Test(record, layout_limits)
{
	uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES];
	char *longp = malloc(PATH_MAX + 2), name[300];
	uint32_t big = REC_MAX_DATA + 65536;
	uint8_t *data = calloc(1, big + 1), *buf;
	struct record r = { .type = REC_WRITE }, d;
	struct iovec iov[4];
	uint32_t total;
	size_t len;

	cr_assert_not_null(longp);
	cr_assert_not_null(data);
	/* a path of PATH_MAX - 1 characters (PATH_MAX with its NUL) fits */
	memset(longp, 'p', PATH_MAX - 1);
	longp[PATH_MAX - 1] = 0;
	r.path = longp;
	r.path2 = longp;
	memset(name, 'n', 255);
	name[255] = 0;
	r.name = name;
	r.data = data;
	r.data_len = big;
	cr_assert_gt(record_layout(&r, hdr, iov, &total), 0, "largest record refused");
	cr_assert_leq(total, REC_MAX_BYTES);
	rt_encode(&r, NULL, &buf, &len);
	cr_assert_eq(record_decode(buf, len, &d), 0, "largest record does not decode");
	rt_expect_same(&r, &d);
	free(buf);

	/* one byte more anywhere is too much */
	memset(longp, 'p', PATH_MAX);
	longp[PATH_MAX] = 0;
	r.path = longp;
	r.path2 = "x";
	cr_assert_eq(record_layout(&r, hdr, iov, &total), -EINVAL, "path too long accepted");
	cr_assert_eq(record_encode(renv.key, rt_zero_mac, &r, &buf, &len), -EINVAL);
	r.path = "x";
	r.path2 = longp;
	cr_assert_eq(record_layout(&r, hdr, iov, &total), -EINVAL, "path2 too long accepted");
	r.path2 = "x";
	memset(name, 'n', 256);
	name[256] = 0;
	cr_assert_eq(record_layout(&r, hdr, iov, &total), -EINVAL, "name too long accepted");
	name[255] = 0;
	r.data_len = big + 1;
	cr_assert_eq(record_layout(&r, hdr, iov, &total), -EINVAL, "data too long accepted");
	cr_assert_eq(record_encode(renv.key, rt_zero_mac, &r, &buf, &len), -EINVAL);
	r.data_len = UINT32_MAX;
	cr_assert_eq(record_layout(&r, hdr, iov, &total), -EINVAL, "data too long accepted");
	free(longp);
	free(data);
}

Test(record, decode_rejects_bad_length)
{
	size_t len;
	uint8_t *buf = rt_small(&len), *big, *tiny;

	/* the buffer is shorter or longer than the record says */
	rt_expect_bad(buf, len - 1, "a buffer one byte short");
	rt_expect_bad(buf, len - CRYPTO_MAC_BYTES, "a buffer without its MAC");
	big = calloc(1, len + 16);
	memcpy(big, buf, len);
	rt_expect_bad(big, len + 1, "a buffer one byte long");
	/* the length field is wrong */
	rt_put32(big, (uint32_t)len + 1);
	rt_expect_bad(big, len, "a length field one too big");
	rt_put32(big, (uint32_t)len - 1);
	rt_expect_bad(big, len, "a length field one too small");
	rt_put32(big, 0);
	rt_expect_bad(big, len, "a length field of zero");
	rt_put32(big, UINT32_MAX);
	rt_expect_bad(big, len, "a length field of 2^32-1");
	free(big);
	/* buffers too short to hold a header: exact-size allocations so that
	 * AddressSanitizer sees any read past them */
	for (size_t n = 0; n < 8; n++) {
		tiny = malloc(n ? n : 1);
		memcpy(tiny, buf, n);
		rt_expect_bad(tiny, n, "a buffer shorter than a header");
		free(tiny);
	}
	free(buf);
}

Test(record, peek_len_bounds)
{
	uint8_t h[8] = { 0 };

	cr_assert_eq(record_peek_len(h, 0), 0);
	cr_assert_eq(record_peek_len(h, 3), 0);
	rt_put32(h, REC_HEADER_BYTES + REC_BODY_BYTES + 3 + CRYPTO_MAC_BYTES - 1);
	cr_assert_eq(record_peek_len(h, 4), 0, "shorter than the smallest record");
	rt_put32(h, REC_HEADER_BYTES + REC_BODY_BYTES + 3 + CRYPTO_MAC_BYTES);
	cr_assert_eq(record_peek_len(h, 4), REC_HEADER_BYTES + REC_BODY_BYTES + 3 + CRYPTO_MAC_BYTES);
	rt_put32(h, REC_MAX_BYTES);
	cr_assert_eq(record_peek_len(h, 4), REC_MAX_BYTES);
	rt_put32(h, REC_MAX_BYTES + 1);
	cr_assert_eq(record_peek_len(h, 4), 0, "longer than the largest record");
}

Test(record, decode_rejects_bad_body_len_and_type)
{
	size_t len;
	uint8_t *buf = rt_small(&len);
	uint32_t values[] = { 0, REC_BODY_BYTES - 1, REC_BODY_BYTES + 1, UINT32_MAX };
	uint16_t types[] = { 0, REC_TYPE_MAX + 1, 0xffff };

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint8_t *c = malloc(len);
		memcpy(c, buf, len);
		rt_put32(c + 32, values[i]);
		rt_expect_bad(c, len, "a wrong body_len");
		free(c);
	}
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint8_t *c = malloc(len);
		memcpy(c, buf, len);
		c[4] = (uint8_t)types[i];
		c[5] = (uint8_t)(types[i] >> 8);
		rt_expect_bad(c, len, "an unknown type");
		free(c);
	}
	free(buf);
}

/* Copies buf, applies (field += delta) to the four length fields, expects rejection. */
static void rt_expect_bad_lengths(const uint8_t *buf, size_t len, int64_t dp, int64_t dp2, int64_t dn,
				  int64_t dd, const char *what)
{
	uint8_t *c = malloc(len);

	memcpy(c, buf, len);
	rt_put32(c + RT_LP, (uint32_t)(rt_get32(c + RT_LP) + dp));
	rt_put32(c + RT_LP2, (uint32_t)(rt_get32(c + RT_LP2) + dp2));
	rt_put32(c + RT_LN, (uint32_t)(rt_get32(c + RT_LN) + dn));
	rt_put32(c + RT_LD, (uint32_t)(rt_get32(c + RT_LD) + dd));
	rt_expect_bad(c, len, what);
	free(c);
}

Test(record, decode_rejects_wrong_string_lengths)
{
	size_t len;
	uint8_t *buf = rt_small(&len);

	/* the lengths no longer add up to the record */
	rt_expect_bad_lengths(buf, len, 1, 0, 0, 0, "path length one too big");
	rt_expect_bad_lengths(buf, len, 0, -1, 0, 0, "path2 length one too small");
	rt_expect_bad_lengths(buf, len, 0, 0, 0, 1, "data length one too big");
	/* they add up, but the strings no longer end where a NUL is */
	rt_expect_bad_lengths(buf, len, 1, -1, 0, 0, "path longer, path2 shorter");
	rt_expect_bad_lengths(buf, len, -1, 1, 0, 0, "path shorter, path2 longer");
	rt_expect_bad_lengths(buf, len, 0, 1, -1, 0, "path2 longer, name shorter");
	rt_expect_bad_lengths(buf, len, 0, 0, 1, -1, "name eating into data");
	rt_expect_bad_lengths(buf, len, 0, 0, -1, 1, "name shorter, data longer");
	rt_expect_bad_lengths(buf, len, 0, 0, 3, -3, "name eating into data");
	/* a string of length 0 (no room even for its NUL) */
	rt_expect_bad_lengths(buf, len, -(int64_t)rt_get32(buf + RT_LP), 0, 0, rt_get32(buf + RT_LP),
			      "a zero path length");
	rt_expect_bad_lengths(buf, len, 0, 0, -(int64_t)rt_get32(buf + RT_LN), rt_get32(buf + RT_LN),
			      "a zero name length");
	/* lengths that wrap around in 32-bit arithmetic */
	rt_expect_bad_lengths(buf, len, 0x80000000ll, 0, 0, 0x80000000ll, "lengths wrapping at 2^32");
	rt_expect_bad_lengths(buf, len, 0xffffffffll, 1, 0, 0, "lengths wrapping at 2^32");
	rt_expect_bad_lengths(buf, len, 0, 0, 0, -(int64_t)rt_get32(buf + RT_LD) - 1, "data length 2^32-1");
	free(buf);
}

Test(record, decode_rejects_missing_or_extra_nul)
{
	size_t len;
	uint8_t *buf = rt_small(&len);
	uint32_t lp = rt_get32(buf + RT_LP), lp2 = rt_get32(buf + RT_LP2), ln = rt_get32(buf + RT_LN);
	size_t ends[] = { RT_TAIL + lp - 1, RT_TAIL + lp + lp2 - 1, RT_TAIL + lp + lp2 + ln - 1 };
	size_t mids[] = { RT_TAIL + 1, RT_TAIL + lp + 1, RT_TAIL + lp + lp2 + 1 };
	struct record d;

	cr_assert_eq(record_decode(buf, len, &d), 0);
	for (int i = 0; i < 3; i++) {
		uint8_t *c = malloc(len);
		memcpy(c, buf, len);
		cr_assert_eq(c[ends[i]], 0);
		c[ends[i]] = 'x';
		rt_expect_bad(c, len, "a string without its NUL");
		memcpy(c, buf, len);
		c[mids[i]] = 0;
		rt_expect_bad(c, len, "a string with a NUL inside");
		free(c);
	}
	free(buf);
}

Test(record, verify_catches_every_flipped_bit)
{
	char path[64], path2[64], name[64];
	uint8_t data[33], prev[CRYPTO_MAC_BYTES], *buf, *c;
	struct record r;
	size_t len;

	memset(prev, 0x77, sizeof(prev));
	rt_fill(&r, REC_RENAME, path, path2, name, data, sizeof(data));
	rt_encode(&r, prev, &buf, &len);
	cr_assert_eq(record_verify(renv.key, prev, buf, len), 0);
	c = malloc(len);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(c, buf, len);
			c[i] ^= (uint8_t)(1u << bit);
			cr_assert_eq(record_verify(renv.key, prev, c, len), -EBADMSG,
				     "flip of bit %d of byte %zu (of %zu) not caught", bit, i, len);
		}
	}
	free(c);
	free(buf);
}

Test(record, verify_depends_on_prev_key_and_length)
{
	char path[64], path2[64], name[64], kpath[512];
	uint8_t data[10], prev[CRYPTO_MAC_BYTES], *buf;
	struct key *other;
	struct record r;
	size_t len;

	memset(prev, 0x42, sizeof(prev));
	rt_fill(&r, REC_CREATE, path, path2, name, data, sizeof(data));
	rt_encode(&r, prev, &buf, &len);
	cr_assert_eq(record_verify(renv.key, prev, buf, len), 0);
	cr_assert_eq(record_verify(renv.key, rt_zero_mac, buf, len), -EBADMSG, "wrong prev accepted");
	prev[CRYPTO_MAC_BYTES - 1] ^= 1;
	cr_assert_eq(record_verify(renv.key, prev, buf, len), -EBADMSG, "wrong prev accepted");
	prev[CRYPTO_MAC_BYTES - 1] ^= 1;
	unit_new_key(renv.dir, "other", kpath, sizeof(kpath), &other);
	cr_assert_eq(record_verify(other, prev, buf, len), -EBADMSG, "wrong key accepted");
	cr_assert_eq(record_verify(renv.key, prev, buf, len - 1), -EBADMSG, "short buffer accepted");
	cr_assert_eq(record_verify(renv.key, prev, buf, 10), -EBADMSG);
	cr_assert_eq(record_verify(renv.key, prev, buf, 0), -EBADMSG);
	key_free(other);
	free(buf);
}

Test(record, type_names)
{
	static const char *const want[] = { "?",	 "branch", "create", "link",	  "unlink",
					    "rmdir",	 "rename", "setattr", "write",	  "fallocate",
					    "copy",	 "setxattr", "removexattr" };

	for (unsigned t = 0; t <= REC_TYPE_MAX; t++)
		cr_assert_str_eq(record_type_name(t), want[t]);
	cr_assert_str_eq(record_type_name(REC_TYPE_MAX + 1), "?");
	cr_assert_str_eq(record_type_name(~0u), "?");
}
