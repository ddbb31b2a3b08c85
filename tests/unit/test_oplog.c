/* test_oplog.c -- the operation log: appends, the MAC chain, torn tails,
 * segments, undo, group commit and injected I/O faults
 *
 * Damage is done to the segment files directly (flip, cut, swap, repeat bytes
 * of records whose offsets the test tracked while appending), then the
 * verifying reader and oplog_open() must name the first bad position.
 */
#include <dirent.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statfs.h>

#include "../../fs/node.h"
#include "../../replication/oplog.h"
#include "unit.h"

static struct unit_env oenv;
static int ologfd = -1;		/* oenv.dir/log */

static void oplog_setup(void)
{
	unit_env_init(&oenv);
	cr_assert_eq(mkdirat(oenv.dirfd, "log", 0700), 0);
	ologfd = openat(oenv.dirfd, "log", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(ologfd, 0);
}

static void oplog_teardown(void)
{
	if (ologfd >= 0)
		close(ologfd);
	ologfd = -1;
	unit_env_fini(&oenv);
}

TestSuite(oplog, .init = oplog_setup, .fini = oplog_teardown);

/* ---- helpers ---- */

#define OL_SEG_HEADER 64	/* magic, first seq, prev MAC (oplog.h) */

static const char *ol_seg_path(uint64_t first, char *buf, size_t len)
{
	snprintf(buf, len, "%s/log/%016llx.seg", oenv.dir, (unsigned long long)first);
	return buf;
}

static struct oplog *ol_open_ok(void)
{
	struct oplog *log = NULL;
	struct pos bad = { 0, 0 };
	uint64_t cut = 99;
	int ret = oplog_open(&log, ologfd, oenv.key, &cut, &bad);

	cr_assert_eq(ret, 0, "oplog_open: %s (bad seq %llu)", strerror(-ret), (unsigned long long)bad.seq);
	cr_assert_eq(cut, 0, "oplog_open cut %llu bytes of a clean log", (unsigned long long)cut);
	return log;
}

/* The payload of record seq: its length and bytes are a function of seq. */
static uint32_t ol_data_len(uint64_t seq)
{
	return 20 + (uint32_t)(seq * 37 % 211);
}

static void ol_fill(uint8_t *buf, uint64_t seq, uint32_t len)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seq * 31 + i);
}

/* Appends one WRITE record with the payload of the next seq; returns its seq. */
static uint64_t ol_append(struct oplog *log, uint64_t epoch)
{
	uint64_t seq = oplog_last(log).seq + 1;
	uint8_t data[256];
	struct record r = { .type = REC_WRITE, .epoch = epoch, .path = "dir/file", .off = seq * 100 };
	int ret;

	r.data_len = ol_data_len(seq);
	ol_fill(data, seq, r.data_len);
	r.data = data;
	r.time_ns = (int64_t)seq * 1000;
	ret = oplog_append(log, &r);
	cr_assert_eq(ret, 0, "oplog_append of seq %llu: %s", (unsigned long long)seq, strerror(-ret));
	cr_assert_eq(r.seq, seq);
	cr_assert_eq(oplog_last(log).seq, seq);
	return seq;
}

/*
 * Makes a one-segment log of n records (epoch 1), closed again. ends[k] is the
 * offset in the segment just past record k (ends[0]: the segment header).
 */
static void ol_make(int n, uint64_t *ends)
{
	struct oplog *log = ol_open_ok();

	ends[0] = oplog_bytes(log);
	cr_assert_eq(ends[0], OL_SEG_HEADER);
	for (int k = 1; k <= n; k++) {
		ol_append(log, 1);
		ends[k] = oplog_bytes(log);
	}
	cr_assert_eq(oplog_sync(log, (uint64_t)n), 0);
	oplog_free(log);
}

/* Checks one record read back against what ol_append wrote. */
static void ol_check_record(const struct record *r, uint64_t seq)
{
	uint8_t want[256];

	cr_assert_eq(r->seq, seq, "reader returned seq %llu, expected %llu", (unsigned long long)r->seq,
		     (unsigned long long)seq);
	cr_assert_eq(r->type, REC_WRITE);
	cr_assert_str_eq(r->path, "dir/file");
	cr_assert_eq(r->off, seq * 100);
	cr_assert_eq(r->data_len, ol_data_len(seq));
	ol_fill(want, seq, r->data_len);
	cr_assert_arr_eq(r->data, want, r->data_len, "payload of seq %llu differs", (unsigned long long)seq);
}

/*
 * Reads the whole log from seq from with key k. Returns the reader's final
 * result (0 at a clean end, -EBADMSG ...); *count: records returned (all
 * checked); *where: the reader's position afterwards.
 */
static int ol_read_all(const struct key *k, uint64_t from, uint64_t *count, uint64_t *where)
{
	struct oplog_reader *rd;
	struct record r;
	uint64_t seq = from, n = 0;
	int ret;

	ret = oplog_reader_open(&rd, ologfd, k, from);
	cr_assert_eq(ret, 0, "oplog_reader_open: %s", strerror(-ret));
	while ((ret = oplog_reader_next(rd, &r)) == 1) {
		ol_check_record(&r, seq);
		seq++;
		n++;
	}
	oplog_reader_where(rd, where, NULL, 0, NULL);
	oplog_reader_free(rd);
	*count = n;
	return ret;
}

/* Expects a clean read of records 1..n. */
static void ol_expect_clean(uint64_t n)
{
	uint64_t count, where;
	int ret = ol_read_all(oenv.key, 1, &count, &where);

	cr_assert_eq(ret, 0, "reader failed after %llu records at seq %llu: %s", (unsigned long long)count,
		     (unsigned long long)where, strerror(-ret));
	cr_assert_eq(count, n, "reader returned %llu records, expected %llu", (unsigned long long)count,
		     (unsigned long long)n);
}

/* Expects the reader to return records 1..bad-1 and then -EBADMSG naming bad. */
static void ol_expect_reader_bad(const struct key *k, uint64_t bad, const char *what)
{
	uint64_t count, where;
	int ret = ol_read_all(k, 1, &count, &where);

	cr_assert_eq(ret, -EBADMSG, "%s: reader returned %d after %llu records, expected -EBADMSG", what, ret,
		     (unsigned long long)count);
	cr_assert_eq(count, bad - 1, "%s: reader returned %llu records before the damage, expected %llu",
		     what, (unsigned long long)count, (unsigned long long)(bad - 1));
	cr_assert_eq(where, bad, "%s: oplog_reader_where names seq %llu, expected %llu", what,
		     (unsigned long long)where, (unsigned long long)bad);
}

/* Expects oplog_open to refuse the log, naming seq bad, and to change no byte of seg 1. */
static void ol_expect_open_bad(uint64_t bad, const char *what)
{
	struct oplog *log = NULL;
	struct pos p = { 0, 0 };
	uint64_t cut = 0;
	size_t len0, len1;
	char path[512];
	uint8_t *before, *after;
	int ret;

	ol_seg_path(1, path, sizeof(path));
	before = unit_read_file(path, &len0);
	ret = oplog_open(&log, ologfd, oenv.key, &cut, &p);
	if (ret == 0)
		oplog_free(log);
	cr_assert_eq(ret, -EBADMSG, "%s: oplog_open returned %d (cut %llu bytes), expected -EBADMSG", what, ret,
		     (unsigned long long)cut);
	cr_assert_eq(p.seq, bad, "%s: oplog_open names seq %llu, expected %llu", what,
		     (unsigned long long)p.seq, (unsigned long long)bad);
	cr_assert_null(log);
	after = unit_read_file(path, &len1);
	cr_assert_eq(len0, len1, "%s: refused log was changed", what);
	cr_assert_arr_eq(before, after, len0, "%s: refused log was changed", what);
	free(before);
	free(after);
}

/* Replaces segment 1 by seg[0..len). */
static void ol_put_seg1(const uint8_t *seg, size_t len)
{
	char path[512];

	unit_write_file(ol_seg_path(1, path, sizeof(path)), seg, len);
}

static uint8_t *ol_get_seg1(size_t *len)
{
	char path[512];

	return unit_read_file(ol_seg_path(1, path, sizeof(path)), len);
}

/* ---- appending and reading ---- */

Test(oplog, empty_log)
{
	struct oplog *log = ol_open_ok();
	uint8_t mac[CRYPTO_MAC_BYTES], zero[CRYPTO_MAC_BYTES] = { 0 };
	char path[512];

	cr_assert_eq(oplog_last(log).seq, 0);
	cr_assert_eq(oplog_last(log).epoch, 0);
	oplog_last_mac(log, mac);
	cr_assert_arr_eq(mac, zero, sizeof(mac));
	cr_assert_eq(oplog_first_seq(log), 1);
	cr_assert_eq(oplog_durable(log), 0);
	cr_assert_eq(oplog_failed(log), 0);
	cr_assert_eq(oplog_undo_last(log), -EINVAL, "nothing to undo in an empty log");
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), OL_SEG_HEADER);
	oplog_free(log);
	oplog_free(NULL);
	ol_expect_clean(0);
}

Test(oplog, append_reopen_read_in_order)
{
	uint8_t mac[CRYPTO_MAC_BYTES], mac2[CRYPTO_MAC_BYTES];
	struct oplog *log = ol_open_ok();
	struct oplog_reader *rd;
	struct record r;
	uint64_t bytes;
	char seg[64];
	uint64_t seq, off;
	const uint8_t *raw;
	size_t rawlen;

	for (int i = 1; i <= 50; i++)
		cr_assert_eq(ol_append(log, 1), (uint64_t)i);
	cr_assert_eq(oplog_durable(log), 0, "nothing is durable before a sync");
	cr_assert_eq(oplog_sync(log, 50), 0);
	cr_assert_eq(oplog_durable(log), 50);
	oplog_last_mac(log, mac);
	bytes = oplog_bytes(log);
	oplog_free(log);

	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 50);
	cr_assert_eq(oplog_last(log).epoch, 1);
	cr_assert_eq(oplog_durable(log), 50);
	cr_assert_eq(oplog_bytes(log), bytes);
	oplog_last_mac(log, mac2);
	cr_assert_arr_eq(mac, mac2, sizeof(mac), "last MAC changed across a reopen");
	cr_assert_eq(ol_append(log, 1), 51);
	oplog_free(log);
	ol_expect_clean(51);

	/* from the middle; raw bytes and position of each record */
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 17), 0);
	for (uint64_t s = 17; s <= 51; s++) {
		cr_assert_eq(oplog_reader_next(rd, &r), 1);
		ol_check_record(&r, s);
		raw = oplog_reader_raw(rd, &rawlen);
		cr_assert_eq(record_peek_len(raw, rawlen), rawlen);
		oplog_reader_where(rd, &seq, seg, sizeof(seg), &off);
		cr_assert_eq(seq, s + 1);
		cr_assert_str_eq(seg, "0000000000000001.seg");
	}
	cr_assert_eq(oplog_reader_next(rd, &r), 0);
	cr_assert_eq(oplog_reader_next(rd, &r), 0, "the end stays the end");
	oplog_reader_where(rd, NULL, NULL, 0, &off);
	cr_assert_eq(off, bytes + ((uint64_t)rawlen), "offset after the last record is the file size");
	oplog_reader_free(rd);
}

Test(oplog, reader_follows_a_live_log)
{
	struct oplog *log = ol_open_ok();
	struct oplog_reader *rd;
	struct record r;

	ol_append(log, 1);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	ol_check_record(&r, 1);
	cr_assert_eq(oplog_reader_next(rd, &r), 0);
	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_reader_next(rd, &r), 1, "the reader does not see a record appended later");
	ol_check_record(&r, 2);
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	ol_check_record(&r, 3);
	cr_assert_eq(oplog_reader_next(rd, &r), 0);
	oplog_reader_free(rd);
	oplog_free(log);
}

/*
 * A reader that looked while a record was half written sees it once it is
 * whole, without being reopened (a leader's stream reads records while the
 * next one is being appended).
 */
Test(oplog, reader_sees_a_record_finished_after_it_looked)
{
	uint64_t ends[3];
	struct oplog_reader *rd;
	struct record r;
	uint8_t tail[16];
	char path[PATH_MAX];
	int fd;

	ol_make(2, ends);
	fd = open(ol_seg_path(1, path, sizeof(path)), O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, tail, sizeof(tail), (off_t)ends[2] - (off_t)sizeof(tail)), (ssize_t)sizeof(tail));
	cr_assert_eq(ftruncate(fd, (off_t)ends[2] - (off_t)sizeof(tail)), 0);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	ol_check_record(&r, 1);
	cr_assert_eq(oplog_reader_next(rd, &r), 0, "half a record read as one");
	cr_assert_eq(pwrite(fd, tail, sizeof(tail), (off_t)ends[2] - (off_t)sizeof(tail)), (ssize_t)sizeof(tail));
	cr_assert_eq(oplog_reader_next(rd, &r), 1, "the reader does not see the record finished since");
	ol_check_record(&r, 2);
	cr_assert_eq(oplog_reader_next(rd, &r), 0);
	oplog_reader_free(rd);
	close(fd);
}

Test(oplog, epochs_only_grow)
{
	struct oplog *log = ol_open_ok();
	struct record r = { .type = REC_BRANCH, .epoch = 1 };

	ol_append(log, 1);
	ol_append(log, 2);
	r.epoch = 1;
	cr_assert_eq(oplog_append(log, &r), -ESTALE, "a record of an older epoch was appended");
	cr_assert_eq(oplog_last(log).seq, 2);
	ol_append(log, 5);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).epoch, 5);
	r.epoch = 4;
	cr_assert_eq(oplog_append(log, &r), -ESTALE, "the epoch was lost across a reopen");
	oplog_free(log);
	ol_expect_clean(3);
}

Test(oplog, append_refuses_oversized_record)
{
	struct oplog *log = ol_open_ok();
	static uint8_t big[REC_MAX_DATA + 65536 + 1];
	struct record r = { .type = REC_WRITE, .epoch = 1, .path = "f", .data = big };
	char path[512];

	ol_append(log, 1);
	r.data_len = sizeof(big);
	cr_assert_eq(oplog_append(log, &r), -EINVAL);
	cr_assert_eq(oplog_last(log).seq, 1);
	cr_assert_eq(oplog_failed(log), 0);
	ol_append(log, 1);
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), oplog_bytes(log));
	oplog_free(log);
	ol_expect_clean(2);
}

/* ---- the MAC chain ---- */

Test(oplog, flipped_bit_in_middle_record_is_detected)
{
	uint64_t ends[9];
	size_t len;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(len);
	/* record 4: header fields, nonce, body, path, data, MAC, and bit 0 of its length */
	{
		uint64_t s = ends[3], e = ends[4];
		uint64_t offs[] = { s + 0, s + 4, s + 8, s + 16, s + 24, s + 40, s + 50,
				    s + REC_HEADER_BYTES + 3, s + REC_HEADER_BYTES + 60,
				    s + REC_HEADER_BYTES + REC_BODY_BYTES + 2, e - CRYPTO_MAC_BYTES - 5,
				    e - CRYPTO_MAC_BYTES, e - 1 };
		for (size_t i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
			char what[80];
			snprintf(what, sizeof(what), "bit flipped at offset %llu of record 4",
				 (unsigned long long)(offs[i] - s));
			memcpy(c, seg, len);
			c[offs[i]] ^= 0x01;
			ol_put_seg1(c, len);
			ol_expect_reader_bad(oenv.key, 4, what);
			ol_expect_open_bad(4, what);
		}
	}
	/* the first and second to last records too */
	memcpy(c, seg, len);
	c[ends[0] + REC_HEADER_BYTES + REC_BODY_BYTES + 1] ^= 0x20;
	ol_put_seg1(c, len);
	ol_expect_reader_bad(oenv.key, 1, "bit flipped in record 1");
	ol_expect_open_bad(1, "bit flipped in record 1");
	memcpy(c, seg, len);
	c[ends[7] - 1] ^= 0x80;
	ol_put_seg1(c, len);
	ol_expect_reader_bad(oenv.key, 7, "bit flipped in record 7");
	ol_expect_open_bad(7, "bit flipped in record 7");
	/* and the undamaged log is still fine */
	ol_put_seg1(seg, len);
	ol_expect_clean(8);
	free(c);
	free(seg);
}

/*
 * A flipped high bit of a middle record's length makes the record seem to run
 * past the end of the segment. That is damage followed by valid records, not a
 * torn tail: the reader must not report a clean end, and oplog_open must not
 * cut the valid records after it.
 */
Test(oplog, flipped_length_bit_in_middle_record_is_detected)
{
	uint64_t ends[9], count, where, cut = 0;
	struct oplog *log = NULL;
	struct pos bad = { 0, 0 };
	size_t len;
	uint8_t *seg = NULL;
	int ret;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	cr_assert_lt(ends[8] - ends[3], 4096, "records too big for this test");
	seg[ends[3] + 1] ^= 0x10;	/* length + 4096: past the end of the segment */
	ol_put_seg1(seg, len);
	free(seg);

	ret = ol_read_all(oenv.key, 1, &count, &where);
	cr_assert_eq(ret, -EBADMSG,
		     "reader returned %d (a clean end) after %llu of 8 records: damage at seq 4 went unreported",
		     ret, (unsigned long long)count);
	cr_assert_eq(where, 4);
	ret = oplog_open(&log, ologfd, oenv.key, &cut, &bad);
	if (ret == 0)
		oplog_free(log);
	cr_assert_eq(ret, -EBADMSG, "oplog_open returned %d and cut %llu bytes: records 4..8 silently dropped",
		     ret, (unsigned long long)cut);
	cr_assert_eq(bad.seq, 4);
}

/* Builds seg 1 from its header and records in the given order (1-based; 0 ends). */
static void ol_rebuild(const uint8_t *seg, const uint64_t *ends, const int *order, uint8_t *out, size_t *outlen)
{
	size_t n = OL_SEG_HEADER;

	memcpy(out, seg, OL_SEG_HEADER);
	for (int i = 0; order[i]; i++) {
		int k = order[i];
		memcpy(out + n, seg + ends[k - 1], ends[k] - ends[k - 1]);
		n += ends[k] - ends[k - 1];
	}
	*outlen = n;
}

Test(oplog, dropped_record_is_detected)
{
	static const int order[] = { 1, 2, 3, 5, 6, 7, 8, 0 };
	uint64_t ends[9];
	size_t len, n;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(2 * len);
	ol_rebuild(seg, ends, order, c, &n);
	ol_put_seg1(c, n);
	ol_expect_reader_bad(oenv.key, 4, "record 4 dropped");
	ol_expect_open_bad(4, "record 4 dropped");
	free(c);
	free(seg);
}

Test(oplog, reordered_records_are_detected)
{
	static const int order[] = { 1, 2, 3, 5, 4, 6, 7, 8, 0 };
	uint64_t ends[9];
	size_t len, n;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(2 * len);
	ol_rebuild(seg, ends, order, c, &n);
	cr_assert_eq(n, len);
	ol_put_seg1(c, n);
	ol_expect_reader_bad(oenv.key, 4, "records 4 and 5 swapped");
	ol_expect_open_bad(4, "records 4 and 5 swapped");
	free(c);
	free(seg);
}

Test(oplog, replayed_record_is_detected)
{
	static const int again[] = { 1, 2, 3, 4, 4, 5, 6, 7, 8, 0 };
	static const int back[] = { 1, 2, 3, 4, 5, 6, 2, 7, 8, 0 };
	uint64_t ends[9];
	size_t len, n;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(2 * len);
	ol_rebuild(seg, ends, again, c, &n);
	ol_put_seg1(c, n);
	ol_expect_reader_bad(oenv.key, 5, "record 4 repeated");
	ol_expect_open_bad(5, "record 4 repeated");
	ol_rebuild(seg, ends, back, c, &n);
	ol_put_seg1(c, n);
	ol_expect_reader_bad(oenv.key, 7, "record 2 replayed after 6");
	ol_expect_open_bad(7, "record 2 replayed after 6");
	free(c);
	free(seg);
}

Test(oplog, truncated_record_in_middle_is_detected)
{
	uint64_t ends[9];
	size_t len;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(len);
	/* cut the last 10 bytes of record 4 out of the segment */
	memcpy(c, seg, ends[4] - 10);
	memcpy(c + ends[4] - 10, seg + ends[4], len - ends[4]);
	ol_put_seg1(c, len - 10);
	ol_expect_reader_bad(oenv.key, 4, "record 4 cut short");
	ol_expect_open_bad(4, "record 4 cut short");
	/* cut 60 bytes out of its middle */
	memcpy(c, seg, ends[3] + 20);
	memcpy(c + ends[3] + 20, seg + ends[3] + 80, len - ends[3] - 80);
	ol_put_seg1(c, len - 60);
	ol_expect_reader_bad(oenv.key, 4, "60 bytes of record 4 missing");
	ol_expect_open_bad(4, "60 bytes of record 4 missing");
	free(c);
	free(seg);
}

Test(oplog, wrong_key_is_detected_at_first_record)
{
	uint64_t ends[9];
	struct key *other;
	char path[512];

	ol_make(8, ends);
	unit_new_key(oenv.dir, "other", path, sizeof(path), &other);
	ol_expect_reader_bad(other, 1, "wrong key");
	/* oplog_open with the wrong key refuses and changes nothing */
	{
		struct oplog *log = NULL;
		struct pos bad = { 0, 0 };
		uint64_t cut = 0;
		int ret = oplog_open(&log, ologfd, other, &cut, &bad);
		if (ret == 0)
			oplog_free(log);
		cr_assert_eq(ret, -EBADMSG);
		cr_assert_eq(bad.seq, 1);
		cr_assert_eq(cut, 0);
	}
	ol_expect_clean(8);
	key_free(other);
}

/*
 * With the wrong key every record fails its MAC, so a last segment holding a
 * single record looks like "a last record that fails its MAC". oplog_open must
 * still not destroy a valid record it merely cannot check.
 */
Test(oplog, wrong_key_open_cuts_nothing)
{
	uint64_t ends[2], cut = 0;
	struct oplog *log = NULL;
	struct pos bad = { 0, 0 };
	struct key *other;
	char path[512];
	int ret;

	ol_make(1, ends);
	unit_new_key(oenv.dir, "other", path, sizeof(path), &other);
	ret = oplog_open(&log, ologfd, other, &cut, &bad);
	if (ret == 0)
		oplog_free(log);
	key_free(other);
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), ends[1],
		     "oplog_open with a wrong key cut %llu bytes: the valid record 1 is gone",
		     (unsigned long long)cut);
	cr_assert_eq(ret, -EBADMSG, "oplog_open with a wrong key returned %d", ret);
}

/* ---- torn tails ---- */

/* Opens a log whose tail was damaged: expects cut bytes, last seq n, then appends fine. */
static void ol_expect_cut(uint64_t want_cut, uint64_t n, const uint64_t *ends, const char *what)
{
	uint8_t mac[CRYPTO_MAC_BYTES];
	struct oplog_reader *rd;
	struct oplog *log = NULL;
	struct pos bad = { 0, 0 };
	struct record r;
	uint64_t cut = 0;
	const uint8_t *raw;
	size_t rawlen;
	char path[512];
	int ret;

	ret = oplog_open(&log, ologfd, oenv.key, &cut, &bad);
	cr_assert_eq(ret, 0, "%s: oplog_open: %s (bad seq %llu)", what, strerror(-ret),
		     (unsigned long long)bad.seq);
	cr_assert_eq(cut, want_cut, "%s: cut %llu bytes, expected %llu", what, (unsigned long long)cut,
		     (unsigned long long)want_cut);
	cr_assert_eq(oplog_last(log).seq, n, "%s: last seq %llu, expected %llu", what,
		     (unsigned long long)oplog_last(log).seq, (unsigned long long)n);
	cr_assert_eq(oplog_last(log).epoch, 1);
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), ends[n], "%s: file not cut back", what);
	/* the last MAC is record n's */
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, n), 0);
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	raw = oplog_reader_raw(rd, &rawlen);
	oplog_last_mac(log, mac);
	cr_assert_arr_eq(mac, record_mac_of(raw, rawlen), CRYPTO_MAC_BYTES);
	oplog_reader_free(rd);
	/* appends continue the chain */
	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, n + 2), 0);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, n + 2);
	oplog_free(log);
	ol_expect_clean(n + 2);
}

Test(oplog, torn_tail_partial_last_record_is_cut)
{
	uint64_t ends[7];
	size_t len;
	uint8_t *seg;

	ol_make(6, ends);
	seg = ol_get_seg1(&len);
	/* a few bytes short, then only part of the header, then just 3 bytes */
	ol_put_seg1(seg, len - 10);
	ol_expect_cut(ends[6] - ends[5] - 10, 5, ends, "last record 10 bytes short");
	free(seg);
}

Test(oplog, torn_tail_short_header_is_cut)
{
	static const uint64_t keep[] = { 1, 3, 4, 20, REC_HEADER_BYTES - 1, REC_HEADER_BYTES,
					 REC_HEADER_BYTES + REC_BODY_BYTES + 5 };
	uint64_t ends[7];
	size_t len;
	uint8_t *seg;

	ol_make(6, ends);
	seg = ol_get_seg1(&len);
	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		char what[80];
		snprintf(what, sizeof(what), "only %llu bytes of the last record", (unsigned long long)keep[i]);
		/* back to 6 records, then tear the 6th */
		ol_put_seg1(seg, ends[5] + keep[i]);
		ol_expect_cut(keep[i], 5, ends, what);
	}
	free(seg);
}

Test(oplog, torn_tail_zero_fill_is_cut)
{
	static const size_t zeros[] = { 1, 4, 100, 4096, 70000 };
	uint64_t ends[5];
	size_t len;
	uint8_t *seg, *c;

	ol_make(4, ends);
	seg = ol_get_seg1(&len);
	c = calloc(1, len + 70000);
	memcpy(c, seg, len);
	for (size_t i = 0; i < sizeof(zeros) / sizeof(zeros[0]); i++) {
		char what[80];
		snprintf(what, sizeof(what), "%zu zero bytes after the last record", zeros[i]);
		memset(c + ends[4], 0, zeros[i]);
		ol_put_seg1(c, ends[4] + zeros[i]);
		ol_expect_cut(zeros[i], 4, ends, what);
		/* ol_expect_cut appended 2 records; start again from 4 */
		ol_put_seg1(seg, len);
	}
	free(c);
	free(seg);
}

Test(oplog, torn_tail_partial_next_header_is_cut)
{
	uint64_t ends[6];
	size_t len;
	uint8_t *seg, *c;

	/* a valid log of 5; the first bytes of its 5th record appended again look
	 * like the start of a 6th record that never finished */
	ol_make(5, ends);
	seg = ol_get_seg1(&len);
	c = malloc(len + 200);
	memcpy(c, seg, len);
	memcpy(c + len, seg + ends[4], 100);
	ol_put_seg1(c, len + 30);
	ol_expect_cut(30, 5, ends, "30 bytes of a next header");
	ol_put_seg1(c, len + 100);
	ol_expect_cut(100, 5, ends, "100 bytes of a next record");
	free(c);
	free(seg);
}

Test(oplog, reader_treats_torn_tail_as_end)
{
	uint64_t ends[6], count, where;
	size_t len;
	uint8_t *seg;

	ol_make(5, ends);
	seg = ol_get_seg1(&len);
	ol_put_seg1(seg, len - 7);
	cr_assert_eq(ol_read_all(oenv.key, 1, &count, &where), 0, "a record still being written is the end");
	cr_assert_eq(count, 4);
	free(seg);
}

Test(oplog, damage_in_middle_is_not_a_torn_tail)
{
	uint64_t ends[9];
	size_t len;
	uint8_t *seg, *c;

	ol_make(8, ends);
	seg = ol_get_seg1(&len);
	c = malloc(len);
	/* zeros over record 3 only: damage, valid records follow */
	memcpy(c, seg, len);
	memset(c + ends[2], 0, ends[3] - ends[2]);
	ol_put_seg1(c, len);
	ol_expect_open_bad(3, "record 3 zeroed");
	ol_expect_reader_bad(oenv.key, 3, "record 3 zeroed");
	free(c);
	free(seg);
}

/* ---- undo ---- */

Test(oplog, undo_last_removes_the_record)
{
	struct oplog *log = ol_open_ok();
	uint8_t mac2[CRYPTO_MAC_BYTES], mac[CRYPTO_MAC_BYTES];
	uint64_t bytes2;
	char path[512];

	ol_append(log, 1);
	ol_append(log, 1);
	oplog_last_mac(log, mac2);
	bytes2 = oplog_bytes(log);
	ol_append(log, 1);
	cr_assert_eq(oplog_undo_last(log), 0);
	cr_assert_eq(oplog_last(log).seq, 2);
	cr_assert_eq(oplog_bytes(log), bytes2);
	oplog_last_mac(log, mac);
	cr_assert_arr_eq(mac, mac2, sizeof(mac));
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), bytes2, "undone bytes left in the file");
	cr_assert_eq(oplog_undo_last(log), -EINVAL, "undo twice");
	ol_expect_clean(2);
	/* the seq is reused by the next append */
	cr_assert_eq(ol_append(log, 1), 3);
	cr_assert_eq(oplog_sync(log, 3), 0);
	/* a group commit may have synced it while its operation failed: undo still works, durably */
	cr_assert_eq(oplog_undo_last(log), 0, "a record synced by a group commit can still be undone");
	cr_assert_eq(oplog_durable(log), 2);
	cr_assert_eq(ol_append(log, 1), 3);
	cr_assert_eq(oplog_sync(log, 3), 0);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 3);
	oplog_free(log);
	ol_expect_clean(3);
}

/* A write logged as pieces: undo_to takes back every record after the mark, and only within a segment. */
Test(oplog, undo_to_a_mark_removes_the_records_after_it)
{
	struct oplog *log = ol_open_ok();
	struct oplog_mark m, late;
	uint8_t mac2[CRYPTO_MAC_BYTES], mac[CRYPTO_MAC_BYTES];
	uint8_t *data = calloc(1, REC_MAX_DATA);
	struct record big = { .type = REC_WRITE, .epoch = 1, .path = "big" };
	uint64_t bytes2, seq;
	struct stat st;
	char path[512];

	ol_append(log, 1);
	ol_append(log, 1);
	oplog_last_mac(log, mac2);
	bytes2 = oplog_bytes(log);
	oplog_mark(log, &m);
	cr_assert_eq(oplog_undo_to(log, &m), 0, "undo to where the log is: nothing to take back");
	cr_assert_eq(oplog_last(log).seq, 2);
	ol_append(log, 1);
	oplog_mark(log, &late);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 4), 0);	/* a group commit synced them meanwhile */
	cr_assert_eq(oplog_undo_to(log, &m), 0);
	cr_assert_eq(oplog_last(log).seq, 2);
	cr_assert_eq(oplog_durable(log), 2, "durable still counts records that were taken back");
	cr_assert_eq(oplog_bytes(log), bytes2);
	oplog_last_mac(log, mac);
	cr_assert_arr_eq(mac, mac2, sizeof(mac));
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), bytes2, "undone bytes left in the file");
	cr_assert_eq(oplog_undo_to(log, &late), -EXDEV, "a mark past the log's end");
	ol_expect_clean(2);
	cr_assert_eq(ol_append(log, 1), 3, "the seqs are reused");

	/* room for what fits: no roll; room for more: a roll first; more than a segment: refused */
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES / 2), 0);
	cr_assert_eq(stat(ol_seg_path(4, path, sizeof(path)), &st), -1, "rolled over with room left");
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES), -EFBIG);
	/* a mark taken before the log moved on to another segment is refused */
	oplog_mark(log, &m);
	big.data = data;
	big.data_len = REC_MAX_DATA;
	while (oplog_bytes(log) + REC_MAX_BYTES < OPLOG_SEGMENT_BYTES)
		cr_assert_eq(oplog_append(log, &big), 0);
	seq = oplog_last(log).seq;
	cr_assert_eq(oplog_make_room(log, REC_MAX_BYTES), 0);
	cr_assert_eq(stat(ol_seg_path(seq + 1, path, sizeof(path)), &st), 0, "no roll when the room was short");
	cr_assert_eq(oplog_undo_to(log, &m), -EXDEV, "undo across a segment roll");
	cr_assert_eq(oplog_undo_last(log), -EINVAL, "undo of the record before a roll");
	cr_assert_eq(oplog_append(log, &big), 0);
	cr_assert_eq(oplog_last(log).seq, seq + 1);
	cr_assert_eq(oplog_sync(log, oplog_last(log).seq), 0);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, seq + 1, "the log after a roll by make_room does not reopen");
	oplog_free(log);
	free(data);
}

/*
 * A roll writes the new segment's header without syncing it or its name
 * (the next sync does): a crash before that sync can leave the segment with
 * a header of zeros. Such a last segment is dropped at open; so is one on
 * its own, never: a first segment is always synced.
 */
Test(oplog, a_last_segment_with_a_zero_header_is_dropped)
{
	uint8_t zero[OL_SEG_HEADER] = { 0 };
	struct oplog *log = ol_open_ok();
	uint64_t seq, cut = 0;
	char path[512];
	struct stat st;
	int fd;

	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	seq = ol_append(log, 1);
	cr_assert_eq(seq, 3);
	cr_assert_eq(stat(ol_seg_path(3, path, sizeof(path)), &st), 0, "no second segment");
	oplog_free(log);
	/* the crash: the second segment's header never reached the disk */
	fd = open(path, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
	close(fd);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(oplog_open(&log, ologfd, oenv.key, &cut, NULL), 0);
	cr_assert_eq(cut, (uint64_t)st.st_size, "the dropped segment's bytes count as cut");
	cr_assert_eq(oplog_last(log).seq, 2, "the records of a segment with a zero header were kept");
	cr_assert_eq(stat(path, &st), -1, "the segment with a zero header is still there");
	cr_assert_eq(ol_append(log, 1), 3);
	oplog_free(log);
	ol_expect_clean(3);

	/* the only segment with a zero header: damage, not a crash */
	fd = open(ol_seg_path(1, path, sizeof(path)), O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, zero, sizeof(zero), 0), (ssize_t)sizeof(zero));
	close(fd);
	cr_assert_eq(oplog_open(&log, ologfd, oenv.key, NULL, NULL), -EBADMSG);
}

/*
 * Rolls do not sync, so after a crash a segment can lack its tail while the
 * next one's header reached the disk: nothing in the next one was durable
 * (a sync does the closed segments first). It goes, and the log ends where
 * the shorter segment's records do. A closed segment with zeros after its
 * last record keeps the next one and loses the zeros; one whose records are
 * damaged still refuses to open.
 */
Test(oplog, a_segment_missing_its_tail_drops_the_segments_after_it)
{
	struct oplog *log = ol_open_ok();
	uint8_t zero[100] = { 0 };
	uint64_t two, cut = 0;
	struct pos bad = { 0, 0 };
	char path[512], next[512];
	struct stat st;
	int fd;

	ol_append(log, 1);
	ol_append(log, 1);
	two = oplog_bytes(log);
	ol_append(log, 1);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 5), 0);
	oplog_free(log);
	ol_seg_path(1, path, sizeof(path));
	ol_seg_path(4, next, sizeof(next));

	/* zeros after the last whole record of segment 1: cut, segment 4 kept */
	fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, zero, sizeof(zero)), (ssize_t)sizeof(zero));
	close(fd);
	cr_assert_eq(oplog_open(&log, ologfd, oenv.key, &cut, &bad), 0);
	cr_assert_eq(cut, sizeof(zero));
	cr_assert_eq(oplog_last(log).seq, 5);
	oplog_free(log);
	ol_expect_clean(5);

	/* segment 1 lost record 3: segment 4 cannot have been durable */
	cr_assert_eq(truncate(path, (off_t)two), 0);
	cr_assert_eq(stat(next, &st), 0);
	cr_assert_eq(oplog_open(&log, ologfd, oenv.key, &cut, &bad), 0);
	cr_assert_eq(cut, (uint64_t)st.st_size, "cut %llu bytes, segment 4 held %llu", (unsigned long long)cut,
		     (unsigned long long)st.st_size);
	cr_assert_eq(oplog_last(log).seq, 2);
	cr_assert_eq(stat(next, &st), -1, "segment 4 is still there");
	cr_assert_eq(ol_append(log, 1), 3);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	cr_assert_eq(ol_append(log, 1), 4);
	cr_assert_eq(oplog_sync(log, 4), 0);
	oplog_free(log);
	ol_expect_clean(4);

	/* a damaged record in segment 1 (not its tail) still stops the open */
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "X", 1, (off_t)two - 40), 1);
	close(fd);
	cr_assert_eq(oplog_open(&log, ologfd, oenv.key, &cut, &bad), -EBADMSG);
}

/*
 * A middle segment whose header never reached the disk (rolls outran the
 * syncs): nothing after it was durable, so the segments after it go, then
 * it. With a checkpoint above such a segment, that is damage instead.
 */
Test(oplog, a_middle_segment_with_an_unsynced_header_drops_the_rest)
{
	struct oplog *log = ol_open_ok();
	struct pos bad = { 0, 0 };
	uint64_t cut = 0;
	char path[512], p4[512], p6[512];
	struct stat st;

	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	ol_append(log, 1);	/* segment 3 */
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	ol_append(log, 1);	/* segment 4 */
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	ol_append(log, 1);	/* segment 5 */
	cr_assert_eq(oplog_sync(log, 5), 0);
	oplog_free(log);
	ol_seg_path(3, path, sizeof(path));
	ol_seg_path(4, p4, sizeof(p4));
	ol_seg_path(5, p6, sizeof(p6));
	cr_assert_eq(truncate(p4, 0), 0);	/* segment 4: its header and records never written back */

	/* a checkpoint at 4 says record 4 was durable: refused */
	cr_assert_eq(oplog_open_above(&log, ologfd, oenv.key, 4, &cut, &bad), -EBADMSG);
	cr_assert_eq(stat(p6, &st), 0, "a refused open dropped a segment");

	cr_assert_eq(oplog_open_above(&log, ologfd, oenv.key, 2, &cut, &bad), 0);
	cr_assert_eq(oplog_last(log).seq, 3);
	cr_assert_eq(stat(p4, &st), -1, "segment 4 is still there");
	cr_assert_eq(stat(p6, &st), -1, "segment 5 is still there");
	cr_assert_eq(stat(path, &st), 0, "segment 3 went too");
	oplog_free(log);
	ol_expect_clean(3);
}

/* The current segment's blocks are allocated ahead of its end; a roll gives the unused ones back. */
Test(oplog, segments_are_preallocated_and_given_back_at_a_roll)
{
	struct oplog *log = ol_open_ok();
	char path[512];
	struct stat st;

	ol_append(log, 1);
	cr_assert_eq(stat(ol_seg_path(1, path, sizeof(path)), &st), 0);
	cr_assert_lt((uint64_t)st.st_size, 4096, "the size counts preallocated bytes");
	cr_assert_geq((uint64_t)st.st_blocks * 512, 4u << 20, "no blocks allocated ahead: %llu",
		      (unsigned long long)st.st_blocks * 512);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_leq((uint64_t)st.st_blocks * 512, 64u << 10, "the closed segment kept %llu bytes of blocks",
		      (unsigned long long)st.st_blocks * 512);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 1);
	oplog_free(log);
}

/* A segment is trimmed only once the one after it holds a durable record (its header and name are durable then). */
Test(oplog, trim_waits_for_the_next_segment_to_be_durable)
{
	struct oplog *log = ol_open_ok();
	uint64_t removed = 99;
	char path[512];
	struct stat st;

	ol_append(log, 1);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 2), 0);
	cr_assert_eq(oplog_make_room(log, OPLOG_SEGMENT_BYTES - OL_SEG_HEADER), 0);
	ol_append(log, 1);
	cr_assert_eq(oplog_trim(log, 10, 0, &removed), 0);
	cr_assert_eq(removed, 0, "a segment went before the next one was durable");
	cr_assert_eq(stat(ol_seg_path(1, path, sizeof(path)), &st), 0);
	cr_assert_eq(oplog_sync(log, 3), 0);
	cr_assert_eq(oplog_trim(log, 10, 0, &removed), 0);
	cr_assert_gt(removed, 0);
	cr_assert_eq(stat(path, &st), -1, "segment 1 was not trimmed once segment 3 was durable");
	cr_assert_eq(oplog_first_seq(log), 3);
	oplog_free(log);
}

/* ---- group commit ---- */

#define OL_THREADS 6
#define OL_PER_THREAD 40

struct ol_gc {
	struct oplog *log;
	pthread_mutex_t seq_lock;	/* the caller's sequencer lock: one appender at a time */
	int errors;
	char msg[200];
};

static void *ol_gc_worker(void *arg)
{
	struct ol_gc *g = arg;
	uint8_t data[64];

	memset(data, 'g', sizeof(data));
	for (int i = 0; i < OL_PER_THREAD; i++) {
		struct record r = { .type = REC_WRITE, .epoch = 1, .path = "g", .data = data, .data_len = 64 };
		int ret;
		pthread_mutex_lock(&g->seq_lock);
		ret = oplog_append(g->log, &r);
		pthread_mutex_unlock(&g->seq_lock);
		if (!ret)
			ret = oplog_sync(g->log, r.seq);
		if (!ret && oplog_durable(g->log) < r.seq)
			ret = -ERANGE;
		if (ret) {
			pthread_mutex_lock(&g->seq_lock);
			if (!g->errors++)
				snprintf(g->msg, sizeof(g->msg), "seq %llu: %s", (unsigned long long)r.seq,
					 strerror(-ret));
			pthread_mutex_unlock(&g->seq_lock);
		}
	}
	return NULL;
}

Test(oplog, group_commit_from_many_threads)
{
	struct ol_gc g = { .errors = 0 };
	pthread_t t[OL_THREADS];
	struct oplog_reader *rd;
	struct record r;
	uint64_t n = 0;
	int ret;

	g.log = ol_open_ok();
	pthread_mutex_init(&g.seq_lock, NULL);
	for (int i = 0; i < OL_THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, ol_gc_worker, &g), 0);
	for (int i = 0; i < OL_THREADS; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&g.seq_lock);
	cr_assert_eq(g.errors, 0, "%d failures, first: %s", g.errors, g.msg);
	cr_assert_eq(oplog_last(g.log).seq, OL_THREADS * OL_PER_THREAD);
	cr_assert_eq(oplog_durable(g.log), OL_THREADS * OL_PER_THREAD);
	cr_assert_eq(oplog_sync(g.log, 1), 0, "sync of an already durable seq");
	oplog_free(g.log);
	g.log = ol_open_ok();
	cr_assert_eq(oplog_last(g.log).seq, OL_THREADS * OL_PER_THREAD);
	oplog_free(g.log);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	while ((ret = oplog_reader_next(rd, &r)) == 1)
		cr_assert_eq(r.seq, ++n);
	cr_assert_eq(ret, 0);
	cr_assert_eq(n, OL_THREADS * OL_PER_THREAD);
	oplog_reader_free(rd);
}

struct ol_sync_waiter {
	struct oplog *log;
	uint64_t seq;
	int ret;
};

static void *ol_sync_only(void *arg)
{
	struct ol_sync_waiter *w = arg;

	w->ret = oplog_sync(w->log, w->seq);
	return NULL;
}

Test(oplog, concurrent_syncs_of_one_batch)
{
	struct ol_sync_waiter w[8];
	pthread_t t[8];
	struct oplog *log = ol_open_ok();

	for (int i = 0; i < 100; i++)
		ol_append(log, 1);
	for (int i = 0; i < 8; i++) {
		w[i] = (struct ol_sync_waiter){ log, (uint64_t)(i * 12 + 5), -1 };
		cr_assert_eq(pthread_create(&t[i], NULL, ol_sync_only, &w[i]), 0);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(w[i].ret, 0, "sync to %llu: %s", (unsigned long long)w[i].seq, strerror(-w[i].ret));
	}
	cr_assert_geq(oplog_durable(log), 89);
	cr_assert_eq(oplog_sync(log, 100), 0);
	cr_assert_eq(oplog_durable(log), 100);
	oplog_free(log);
}

/* ---- injected faults ---- */

Test(oplog, write_fault_leaves_no_bytes)
{
	struct oplog *log = ol_open_ok();
	uint8_t mac[CRYPTO_MAC_BYTES], mac2[CRYPTO_MAC_BYTES];
	uint8_t data[32] = { 0 };
	struct record r = { .type = REC_WRITE, .epoch = 1, .path = "f", .data = data, .data_len = 32 };
	char path[512];
	uint64_t size;

	ol_seg_path(1, path, sizeof(path));
	for (int i = 0; i < 3; i++)
		ol_append(log, 1);
	/* the 1st append from now fails */
	size = unit_file_size(path);
	oplog_last_mac(log, mac);
	oplog_inject_fault(log, OPLOG_FAULT_WRITE, 1, EIO);
	cr_assert_eq(oplog_append(log, &r), -EIO);
	cr_assert_eq(unit_file_size(path), size, "a failed append left bytes");
	cr_assert_eq(oplog_last(log).seq, 3);
	oplog_last_mac(log, mac2);
	cr_assert_arr_eq(mac, mac2, sizeof(mac));
	/* the 3rd from now fails with ENOSPC; the two before it work */
	oplog_inject_fault(log, OPLOG_FAULT_WRITE, 3, ENOSPC);
	ol_append(log, 1);
	ol_append(log, 1);
	size = unit_file_size(path);
	cr_assert_eq(oplog_append(log, &r), -ENOSPC);
	cr_assert_eq(unit_file_size(path), size, "a failed append left bytes");
	cr_assert_eq(oplog_last(log).seq, 5);
	cr_assert_eq(oplog_failed(log), 0, "a failed write that was undone does not fail the log");
	oplog_free(log);

	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 5);
	ol_append(log, 1);
	oplog_free(log);
	ol_expect_clean(6);
}

Test(oplog, sync_fault_fails_the_log)
{
	struct oplog *log = ol_open_ok();
	struct record r = { .type = REC_BRANCH, .epoch = 1 };
	char path[512];

	for (int i = 0; i < 3; i++)
		ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 3), 0);
	ol_append(log, 1);
	ol_append(log, 1);
	oplog_inject_fault(log, OPLOG_FAULT_SYNC, 1, EIO);
	cr_assert_eq(oplog_sync(log, 5), -EIO);
	cr_assert_neq(oplog_failed(log), 0);
	cr_assert_eq(oplog_durable(log), 3, "a failed sync made records durable");
	cr_assert_eq(oplog_append(log, &r), -EIO, "append after a failed sync");
	cr_assert_eq(oplog_sync(log, 5), -EIO, "sync after a failed sync");
	cr_assert_eq(oplog_sync(log, 2), -EIO, "sync after a failed sync");
	cr_assert_eq(oplog_last(log).seq, 5);
	cr_assert_eq(unit_file_size(ol_seg_path(1, path, sizeof(path))), oplog_bytes(log));
	oplog_free(log);

	/* a restart finds everything that was written, and it verifies */
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 5);
	cr_assert_eq(oplog_failed(log), 0);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 6), 0);
	oplog_free(log);
	ol_expect_clean(6);
}

/*
 * A sync that finds no free descriptor (the daemon at its limit) tries for
 * a second and fails, but nothing was written badly: neither the log nor
 * the node refuses writes, and the next sync, with a descriptor free
 * again, makes the records durable.
 */
Test(oplog, a_sync_without_a_free_descriptor_does_not_fail_the_log)
{
	struct oplog *log = ol_open_ok();
	struct rlimit old, tight;
	struct node n;
	int spare[64], k = 0, fd;

	for (int i = 0; i < 3; i++)
		ol_append(log, 1);
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* every descriptor below a limit of 64 taken */
	tight = old;
	tight.rlim_cur = 64;
	while (k < 64 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
		spare[k++] = fd;
		if (fd >= 63)
			break;
	}
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &tight), 0);
	cr_assert_eq(oplog_sync(log, 3), -EMFILE);
	/* the node's sync (an fsync, the group commit): EIO, and the node keeps taking writes */
	memset(&n, 0, sizeof(n));
	pthread_mutex_init(&n.seq_lock, NULL);
	n.log = log;
	cr_assert_eq(node_sync_local(&n, 3), -EIO);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	cr_assert_eq(n.fault, 0, "a sync without a descriptor made the node refuse writes");
	cr_assert_eq(oplog_failed(log), 0, "a sync without a descriptor failed the log");
	cr_assert_eq(oplog_durable(log), 0);
	while (k > 0)
		close(spare[--k]);
	cr_assert_eq(node_sync_local(&n, 3), 0);
	cr_assert_eq(oplog_durable(log), 3);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 4), 0);
	pthread_mutex_destroy(&n.seq_lock);
	oplog_free(log);
	ol_expect_clean(4);
}

Test(oplog, sync_fault_on_nth_sync)
{
	struct oplog *log = ol_open_ok();

	oplog_inject_fault(log, OPLOG_FAULT_SYNC, 3, EIO);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 1), 0);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 2), 0);
	ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 3), -EIO);
	cr_assert_neq(oplog_failed(log), 0);
	oplog_free(log);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 3);
	oplog_free(log);
	ol_expect_clean(3);
}

/* ---- segments ---- */

/*
 * Segment files whose header's prev MAC is not the MAC of the record before
 * them. ours: prev = the true last MAC (a clean continuation); otherwise a
 * different 32 bytes, with records 6 and 7 correctly chained on them: a
 * segment of another history spliced in.
 */
static void ol_write_seg(uint64_t first, const uint8_t prev[CRYPTO_MAC_BYTES], int nrec, uint64_t epoch)
{
	uint8_t hdr[OL_SEG_HEADER] = { 0 }, chain[CRYPTO_MAC_BYTES];
	uint8_t *out = malloc(1 << 16), data[256];
	size_t n = OL_SEG_HEADER;
	char path[512];

	memcpy(hdr, "REPFSLG1", 8);
	for (int i = 0; i < 8; i++)
		hdr[8 + i] = (uint8_t)(first >> (8 * i));
	memcpy(hdr + 24, prev, CRYPTO_MAC_BYTES);
	memcpy(out, hdr, sizeof(hdr));
	memcpy(chain, prev, sizeof(chain));
	for (int k = 0; k < nrec; k++) {
		uint64_t seq = first + (uint64_t)k;
		struct record r = { .type = REC_WRITE, .epoch = epoch, .seq = seq, .path = "dir/file", .off = seq * 100 };
		uint8_t *buf;
		size_t len;
		r.data_len = ol_data_len(seq);
		ol_fill(data, seq, r.data_len);
		r.data = data;
		crypto_random(r.nonce, sizeof(r.nonce));
		cr_assert_eq(record_encode(oenv.key, chain, &r, &buf, &len), 0);
		memcpy(out + n, buf, len);
		memcpy(chain, record_mac_of(buf, len), CRYPTO_MAC_BYTES);
		n += len;
		free(buf);
	}
	unit_write_file(ol_seg_path(first, path, sizeof(path)), out, n);
	free(out);
}

Test(oplog, segment_written_by_hand_continues_the_chain)
{
	uint8_t mac[CRYPTO_MAC_BYTES];
	struct oplog *log = ol_open_ok();

	/* checks that ol_write_seg writes what oplog writes (for the next test) */
	for (int i = 0; i < 5; i++)
		ol_append(log, 1);
	oplog_last_mac(log, mac);
	oplog_free(log);
	ol_write_seg(6, mac, 2, 1);
	ol_expect_clean(7);
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 7);
	ol_append(log, 1);
	oplog_free(log);
	ol_expect_clean(8);
}

/* Segments 1 (records 1..5, appended), 6 (6..7, epoch 4, by hand), 8 (empty). */
static void ol_three_segments(void)
{
	uint8_t mac[CRYPTO_MAC_BYTES];
	struct oplog *log = ol_open_ok();
	struct oplog_reader *rd;
	struct record r;
	const uint8_t *raw;
	size_t rawlen;

	for (int i = 0; i < 5; i++)
		ol_append(log, 1);
	oplog_last_mac(log, mac);
	oplog_free(log);
	ol_write_seg(6, mac, 2, 4);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(oplog_reader_next(rd, &r), 1);
	raw = oplog_reader_raw(rd, &rawlen);
	memcpy(mac, record_mac_of(raw, rawlen), sizeof(mac));
	oplog_reader_free(rd);
	ol_write_seg(8, mac, 0, 4);
}

Test(oplog, reader_opens_in_a_later_segment)
{
	struct oplog_reader *rd;
	struct record r;
	int ret;

	ol_three_segments();
	ol_expect_clean(7);
	for (uint64_t from = 1; from <= 7; from++) {
		ret = oplog_reader_open(&rd, ologfd, oenv.key, from);
		cr_assert_eq(ret, 0, "oplog_reader_open from seq %llu: %s", (unsigned long long)from, strerror(-ret));
		cr_assert_eq(oplog_reader_next(rd, &r), 1);
		cr_assert_eq(r.seq, from);
		oplog_reader_free(rd);
	}
}

Test(oplog, epoch_of_empty_last_segment_comes_from_the_one_before)
{
	struct record old = { .type = REC_BRANCH, .epoch = 1 };
	struct oplog *log;
	struct pos last;
	int ret;

	ol_three_segments();
	log = ol_open_ok();
	last = oplog_last(log);
	ret = oplog_append(log, &old);
	oplog_free(log);
	cr_assert_eq(last.seq, 7);
	cr_assert_eq(last.epoch, 4, "last epoch after reopen is %llu, not 4", (unsigned long long)last.epoch);
	cr_assert_eq(ret, -ESTALE, "a record of epoch 1 appended after epoch 4");
}

/* ---- append_raw: records encoded elsewhere (a follower) ---- */

/* Pages of [off, off + len) of file name in dirfd that are in the page cache. */
static size_t ol_cached_pages(int dirfd, const char *name, size_t off, size_t len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	size_t pages = (len + 4095) / 4096, cached = 0;
	unsigned char *vec = calloc(pages ? pages : 1, 1);
	void *m;

	cr_assert_geq(fd, 0);
	cr_assert_eq(off % 4096, 0);
	m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
	cr_assert_neq(m, MAP_FAILED);
	cr_assert_eq(mincore(m, len, vec), 0);
	for (size_t i = 0; i < pages; i++)
		cached += vec[i] & 1;
	munmap(m, len);
	free(vec);
	close(fd);
	return cached;
}

Test(oplog, append_raw_copies_a_log_and_refuses_what_breaks_the_chain)
{
	struct oplog *src = ol_open_ok(), *dst;
	struct oplog_reader *rd;
	struct record r, got;
	uint8_t *bufs[6], mac_a[CRYPTO_MAC_BYTES], mac_b[CRYPTO_MAC_BYTES], *bad;
	size_t lens[6];
	const uint8_t *raw;
	uint64_t size;
	int dfd, ret;

	for (int i = 0; i < 6; i++)
		ol_append(src, 2);
	oplog_last_mac(src, mac_a);
	oplog_free(src);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	for (int i = 0; i < 6; i++) {
		cr_assert_eq(oplog_reader_next(rd, &r), 1);
		raw = oplog_reader_raw(rd, &lens[i]);
		bufs[i] = malloc(lens[i]);
		memcpy(bufs[i], raw, lens[i]);
	}
	oplog_reader_free(rd);

	cr_assert_eq(mkdirat(oenv.dirfd, "log2", 0700), 0);
	dfd = openat(oenv.dirfd, "log2", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_eq(oplog_open(&dst, dfd, oenv.key, NULL, NULL), 0);
	/* out of order: record 2 first */
	cr_assert_eq(oplog_append_raw(dst, bufs[1], lens[1], NULL), -EBADMSG);
	cr_assert_eq(oplog_last(dst).seq, 0);
	size = oplog_bytes(dst);
	for (int i = 0; i < 3; i++) {
		ret = oplog_append_raw(dst, bufs[i], lens[i], &got);
		cr_assert_eq(ret, 0, "append_raw of seq %d: %s", i + 1, strerror(-ret));
		ol_check_record(&got, (uint64_t)i + 1);
	}
	/* repeated, skipped ahead, damaged, cut short: all refused, nothing written */
	size = oplog_bytes(dst);
	cr_assert_eq(oplog_append_raw(dst, bufs[2], lens[2], NULL), -EBADMSG, "a repeated record");
	cr_assert_eq(oplog_append_raw(dst, bufs[4], lens[4], NULL), -EBADMSG, "a skipped record");
	bad = malloc(lens[3]);
	memcpy(bad, bufs[3], lens[3]);
	bad[lens[3] / 2] ^= 4;
	cr_assert_eq(oplog_append_raw(dst, bad, lens[3], NULL), -EBADMSG, "a damaged record");
	cr_assert_eq(oplog_append_raw(dst, bufs[3], lens[3] - 1, NULL), -EBADMSG, "a short record");
	cr_assert_eq(oplog_bytes(dst), size);
	cr_assert_eq(oplog_last(dst).seq, 3);
	for (int i = 3; i < 6; i++)
		cr_assert_eq(oplog_append_raw(dst, bufs[i], lens[i], NULL), 0);
	oplog_last_mac(dst, mac_b);
	cr_assert_arr_eq(mac_a, mac_b, sizeof(mac_a));
	cr_assert_eq(oplog_last(dst).epoch, 2);
	cr_assert_eq(oplog_sync(dst, 6), 0);
	oplog_free(dst);
	/* both logs are byte for byte the same */
	{
		char pa[512], pb[512];
		size_t la, lb;
		uint8_t *a, *b;
		snprintf(pb, sizeof(pb), "%s/log2/0000000000000001.seg", oenv.dir);
		a = unit_read_file(ol_seg_path(1, pa, sizeof(pa)), &la);
		b = unit_read_file(pb, &lb);
		cr_assert_eq(la, lb);
		cr_assert_arr_eq(a, b, la);
		free(a);
		free(b);
	}
	for (int i = 0; i < 6; i++)
		free(bufs[i]);
	free(bad);
	close(dfd);
}

Test(oplog, spliced_segment_breaks_the_chain)
{
	uint8_t mac[CRYPTO_MAC_BYTES];
	struct oplog *log = ol_open_ok();

	for (int i = 0; i < 5; i++)
		ol_append(log, 1);
	oplog_last_mac(log, mac);
	oplog_free(log);
	mac[0] ^= 1;	/* records 6 and 7 of another history */
	ol_write_seg(6, mac, 2, 1);
	ol_expect_reader_bad(oenv.key, 6,
			     "segment 6 chained on a MAC other than record 5's (the reader trusts the header's prev MAC)");
}

static void ol_big_fill(uint8_t *data, uint64_t seq)
{
	memcpy(data, &seq, sizeof(seq));
	data[REC_MAX_DATA - 1] = (uint8_t)~seq;
}

Test(oplog, rollover_crosses_segments_and_detects_missing_one)
{
	uint8_t *data = calloc(1, REC_MAX_DATA);
	struct record r = { .type = REC_WRITE, .epoch = 3, .path = "big" };
	struct oplog_reader *rd;
	struct oplog *log;
	struct stat st;
	uint64_t seq, total = 0, per_seg = 0;
	char path[512], seg[64], prevseg[64] = "";
	int ret, nseg = 0;

	cr_assert_not_null(data);
	log = ol_open_ok();
	r.data = data;
	r.data_len = REC_MAX_DATA;
	for (seq = 1; seq == 1 || seq <= per_seg; seq++) {
		ol_big_fill(data, seq);
		cr_assert_eq(oplog_append(log, &r), 0, "append %llu", (unsigned long long)seq);
		if (seq == 1)	/* records per segment: as many as fit after the header */
			per_seg = (OPLOG_SEGMENT_BYTES - OL_SEG_HEADER) / (oplog_bytes(log) - OL_SEG_HEADER);
	}
	cr_assert_gt(per_seg, 30);
	cr_assert_eq(stat(ol_seg_path(per_seg + 1, path, sizeof(path)), &st), -1, "rolled too early");
	ol_big_fill(data, seq);
	/* seq is the first record of segment 2: make it fail after the roll */
	oplog_inject_fault(log, OPLOG_FAULT_WRITE, 1, EIO);
	cr_assert_eq(oplog_append(log, &r), -EIO);
	cr_assert_eq(oplog_last(log).seq, per_seg);
	cr_assert_eq(stat(ol_seg_path(seq, path, sizeof(path)), &st), 0, "no segment %llu after the roll",
		     (unsigned long long)seq);
	cr_assert_eq(st.st_size, OL_SEG_HEADER);
	oplog_free(log);

	/* reopen onto an empty last segment: seq and epoch come from the one before */
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, per_seg);
	cr_assert_eq(oplog_last(log).epoch, 3);
	{
		struct record old = { .type = REC_BRANCH, .epoch = 2 };
		cr_assert_eq(oplog_append(log, &old), -ESTALE);
	}
	/* fill segment 2 and start segment 3 */
	for (seq = per_seg + 1; seq <= 2 * per_seg + 2; seq++) {
		ol_big_fill(data, seq);
		cr_assert_eq(oplog_append(log, &r), 0, "append %llu", (unsigned long long)seq);
	}
	cr_assert_eq(oplog_sync(log, 2 * per_seg + 2), 0);
	for (uint64_t first = 1; first <= 2 * per_seg + 1; first += per_seg) {
		cr_assert_eq(stat(ol_seg_path(first, path, sizeof(path)), &st), 0, "no segment %llu",
			     (unsigned long long)first);
		cr_assert_leq((uint64_t)st.st_size, OPLOG_SEGMENT_BYTES);
		total += (uint64_t)st.st_size;
		nseg++;
	}
	cr_assert_eq(nseg, 3);
	cr_assert_eq(oplog_bytes(log), total);
	oplog_free(log);

	/* reopen, append */
	log = ol_open_ok();
	cr_assert_eq(oplog_last(log).seq, 2 * per_seg + 2);
	cr_assert_eq(oplog_first_seq(log), 1);
	oplog_free(log);

	/* the reader crosses both boundaries */
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	for (seq = 1; (ret = oplog_reader_next(rd, &r)) == 1; seq++) {
		uint64_t got;
		cr_assert_eq(r.seq, seq);
		cr_assert_eq(r.data_len, REC_MAX_DATA);
		memcpy(&got, r.data, sizeof(got));
		cr_assert_eq(got, seq);
		cr_assert_eq(((const uint8_t *)r.data)[REC_MAX_DATA - 1], (uint8_t)~seq);
		oplog_reader_where(rd, NULL, seg, sizeof(seg), NULL);
		if (strcmp(seg, prevseg)) {
			char want[64];
			snprintf(want, sizeof(want), "%016llx.seg", (unsigned long long)seq);
			cr_assert_str_eq(seg, want, "record %llu read from %s", (unsigned long long)seq, seg);
			snprintf(prevseg, sizeof(prevseg), "%s", seg);
		}
	}
	cr_assert_eq(ret, 0);
	cr_assert_eq(seq, 2 * per_seg + 3);
	oplog_reader_free(rd);

	/* a missing middle segment */
	cr_assert_eq(unlink(ol_seg_path(per_seg + 1, path, sizeof(path))), 0);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	for (seq = 1; (ret = oplog_reader_next(rd, &r)) == 1; seq++)
		cr_assert_eq(r.seq, seq);
	cr_assert_eq(ret, -EBADMSG, "a missing segment was not noticed (reader returned %d at seq %llu)", ret,
		     (unsigned long long)seq);
	cr_assert_eq(seq, per_seg + 1);
	oplog_reader_where(rd, &seq, NULL, 0, NULL);
	cr_assert_eq(seq, per_seg + 1, "the reader names seq %llu", (unsigned long long)seq);
	oplog_reader_free(rd);
	free(data);

	/* starting in the last segment (the one before it is gone: fine, pruned) */
	ret = oplog_reader_open(&rd, ologfd, oenv.key, 2 * per_seg + 2);
	cr_assert_eq(ret, 0, "oplog_reader_open in segment 3: %s", strerror(-ret));
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	cr_assert_eq(r.seq, 2 * per_seg + 2);
	oplog_reader_free(rd);
}

/* Copies the records of the log in ologfd (from 1) into bufs/lens; returns how many. */
static int ol_copy_raw(uint8_t **bufs, size_t *lens, int max)
{
	struct oplog_reader *rd;
	struct record r;
	int k = 0;

	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	while (k < max && oplog_reader_next(rd, &r) == 1) {
		const uint8_t *raw = oplog_reader_raw(rd, &lens[k]);
		bufs[k] = malloc(lens[k]);
		memcpy(bufs[k], raw, lens[k]);
		k++;
	}
	oplog_reader_free(rd);
	return k;
}

/* Closes src (its last MAC in mac), copies its first n records' raw bytes
 * into bufs/lens, and opens an empty log "log2" as *dst; returns its dirfd. */
static int ol_copy_to_log2(struct oplog *src, uint8_t mac[CRYPTO_MAC_BYTES], uint8_t **bufs, size_t *lens, int n,
			   struct oplog **dst)
{
	int dfd;

	oplog_last_mac(src, mac);
	oplog_free(src);
	cr_assert_eq(ol_copy_raw(bufs, lens, n), n);
	cr_assert_eq(mkdirat(oenv.dirfd, "log2", 0700), 0);
	dfd = openat(oenv.dirfd, "log2", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_eq(oplog_open(dst, dfd, oenv.key, NULL, NULL), 0);
	return dfd;
}

Test(oplog, append_raw_many_takes_a_burst_across_segments_up_to_a_bad_record)
{
	enum { N = 70 };
	uint8_t *data = calloc(1, REC_MAX_DATA), *bufs[N], mac_a[CRYPTO_MAC_BYTES], mac_b[CRYPTO_MAC_BYTES];
	struct record r = { .type = REC_WRITE, .epoch = 1, .path = "big" }, outs[OPLOG_BATCH_MAX];
	struct oplog *src = ol_open_ok(), *dst;
	size_t lens[N];
	int dfd, done;
	uint8_t saved;

	r.data = data;
	r.data_len = REC_MAX_DATA;
	for (uint64_t seq = 1; seq <= N; seq++) {
		ol_big_fill(data, seq);
		cr_assert_eq(oplog_append(src, &r), 0);
	}
	dfd = ol_copy_to_log2(src, mac_a, bufs, lens, N, &dst);
	/* a burst of 10 whose 8th record is damaged: the 7 before it go in */
	saved = bufs[7][lens[7] / 2];
	bufs[7][lens[7] / 2] ^= 1;
	cr_assert_eq(oplog_append_raw_many(dst, (const uint8_t *const *)bufs, lens, 10, outs, &done), -EBADMSG);
	cr_assert_eq(done, 7);
	cr_assert_eq(outs[6].seq, 7);
	cr_assert_eq(oplog_last(dst).seq, 7);
	bufs[7][lens[7] / 2] = saved;
	/* the rest in one burst, which crosses into the second 64 MiB segment */
	cr_assert_eq(oplog_append_raw_many(dst, (const uint8_t *const *)bufs + 7, lens + 7, N - 7, outs, &done), 0);
	cr_assert_eq(done, N - 7);
	cr_assert_eq(outs[N - 8].seq, N);
	oplog_last_mac(dst, mac_b);
	cr_assert_arr_eq(mac_a, mac_b, sizeof(mac_a), "the copy ends on the same MAC");
	cr_assert_eq(oplog_sync(dst, N), 0);
	cr_assert_gt(oplog_bytes(dst), OPLOG_SEGMENT_BYTES, "one segment holds it all");
	oplog_free(dst);
	{
		/* the copy reads back whole: every record, in order, through the segment boundary */
		struct oplog_reader *rd;
		struct record got;
		uint64_t seq = 0;
		cr_assert_eq(oplog_reader_open(&rd, dfd, oenv.key, 1), 0);
		while (oplog_reader_next(rd, &got) == 1) {
			cr_assert_eq(got.seq, ++seq);
			cr_assert_eq(got.data_len, REC_MAX_DATA);
			cr_assert_eq(((const uint8_t *)got.data)[REC_MAX_DATA - 1], (uint8_t)~seq);
		}
		cr_assert_eq(seq, N);
		oplog_reader_free(rd);
	}
	for (int i = 0; i < N; i++)
		free(bufs[i]);
	free(data);
	close(dfd);
}

/* A reader at the end of the log moves into the segment the log rolls over to. */
Test(oplog, reader_follows_a_live_log_into_its_next_segment)
{
	uint8_t *data = calloc(1, REC_MAX_DATA);
	struct record r = { .type = REC_WRITE, .epoch = 1, .path = "big" }, got;
	struct oplog *log = ol_open_ok();
	struct oplog_reader *rd = NULL;
	uint64_t seq = 0, n = OPLOG_SEGMENT_BYTES / REC_MAX_DATA + 4;
	char path[PATH_MAX];

	r.data = data;
	r.data_len = REC_MAX_DATA;
	for (uint64_t i = 1; i <= n; i++) {
		ol_big_fill(data, i);
		cr_assert_eq(oplog_append(log, &r), 0);
		if (!rd)
			cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
		/* read up to the end after each append, as a leader's stream does */
		while (oplog_reader_next(rd, &got) == 1) {
			cr_assert_eq(got.seq, ++seq);
			cr_assert_eq(((const uint8_t *)got.data)[REC_MAX_DATA - 1], (uint8_t)~seq);
		}
		cr_assert_eq(seq, i, "the reader stopped at seq %llu of %llu", (unsigned long long)seq,
			     (unsigned long long)i);
	}
	{
		int segs = 0;
		DIR *d = opendir(strcat(strcpy(path, oenv.dir), "/log"));
		struct dirent *de;
		cr_assert_not_null(d);
		while ((de = readdir(d)))
			segs += strstr(de->d_name, ".seg") != NULL;
		closedir(d);
		cr_assert_geq(segs, 2, "the log did not roll over");
	}
	oplog_reader_free(rd);
	oplog_free(log);
	free(data);
}

/* A follower that took a snapshot at seq 5 starts its log over there and takes the leader's record 6 next. */
Test(oplog, reset_continues_the_chain_at_a_snapshot)
{
	struct oplog *log = ol_open_ok(), *again;
	struct oplog_reader *rd;
	struct record r;
	uint8_t mac5[CRYPTO_MAC_BYTES], *raw6 = NULL;
	size_t len6 = 0;
	struct pos at = { 1, 5 };

	for (int i = 0; i < 8; i++)
		ol_append(log, 1);
	cr_assert_eq(oplog_sync(log, 8), 0);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 5), 0);
	while (oplog_reader_next(rd, &r) == 1) {
		size_t len;
		const uint8_t *raw = oplog_reader_raw(rd, &len);
		if (r.seq == 5)
			memcpy(mac5, record_mac_of(raw, len), CRYPTO_MAC_BYTES);
		if (r.seq == 6) {
			raw6 = malloc(len);
			memcpy(raw6, raw, len);
			len6 = len;
		}
	}
	oplog_reader_free(rd);
	cr_assert_not_null(raw6);

	cr_assert_eq(oplog_reset(log, at, mac5), 0);
	cr_assert_eq(oplog_last(log).seq, 5);
	cr_assert_eq(oplog_first_seq(log), 6);
	cr_assert_eq(oplog_durable(log), 5);
	cr_assert_eq(oplog_append_raw(log, raw6, len6, NULL), 0, "record 6 continues the chain after the reset");
	raw6[len6 / 2] ^= 1;
	cr_assert_eq(oplog_append_raw(log, raw6, len6, NULL), -EBADMSG, "a damaged or repeated record is still refused");
	cr_assert_eq(oplog_sync(log, 6), 0);
	oplog_free(log);

	/* reopened: the log starts at 6, and its reader checks the chain from the MAC in the header */
	again = ol_open_ok();
	cr_assert_eq(oplog_first_seq(again), 6);
	cr_assert_eq(oplog_last(again).seq, 6);
	oplog_free(again);
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	cr_assert_eq(oplog_reader_next(rd, &r), 1);
	cr_assert_eq(r.seq, 6);
	cr_assert_eq(oplog_reader_next(rd, &r), 0);
	oplog_reader_free(rd);
	free(raw6);
}

/*
 * Received batches: the whole 4 KiB blocks of a large batch go around the
 * page cache (O_DIRECT), the partial ones at its ends through it. Records of
 * odd sizes in batches of odd counts land at every alignment: the copy must
 * read back record for record, keep its exact size, reopen without a cut,
 * and (where the file system has O_DIRECT) hold the whole blocks of a large
 * batch outside the page cache.
 */
Test(oplog, append_raw_many_writes_whole_blocks_around_the_page_cache)
{
	enum { N = 300 };
	uint8_t *data = calloc(1, 60000), *bufs[N], mac_a[CRYPTO_MAC_BYTES], mac_b[CRYPTO_MAC_BYTES];
	struct record r = { .type = REC_WRITE, .epoch = 2, .path = "odd" }, outs[OPLOG_BATCH_MAX];
	struct oplog *src = ol_open_ok(), *dst;
	struct oplog_reader *rd;
	struct record got;
	struct stat st;
	size_t lens[N];
	int dfd, done, at = 0, batch = 1;
	char name[32];

	for (uint64_t seq = 1; seq <= N; seq++) {
		r.data = data;
		r.data_len = 1 + (seq * 7919) % 60000;	/* 1 to 60,000 bytes */
		memset(data, (int)seq, r.data_len);
		cr_assert_eq(oplog_append(src, &r), 0);
	}
	dfd = ol_copy_to_log2(src, mac_a, bufs, lens, N, &dst);
	while (at < N) {	/* batches of 1, 2, 4, ... 37 records */
		int n = batch < N - at ? batch : N - at;
		cr_assert_eq(oplog_append_raw_many(dst, (const uint8_t *const *)bufs + at, lens + at, n, outs, &done), 0);
		cr_assert_eq(done, n);
		at += n;
		batch = batch * 2 % 37 + 1;
	}
	cr_assert_eq(oplog_last(dst).seq, N);
	oplog_last_mac(dst, mac_b);
	cr_assert_eq(memcmp(mac_a, mac_b, CRYPTO_MAC_BYTES), 0);
	/* the segment is exactly as long as what it holds */
	snprintf(name, sizeof(name), "%016llx.seg", 1ull);
	cr_assert_eq(fstatat(dfd, name, &st, 0), 0);
	cr_assert_eq((uint64_t)st.st_size, oplog_bytes(dst));
	/* whole blocks of the last large batch are not in the page cache, where O_DIRECT works */
	{
		int probe = openat(dfd, name, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (probe >= 0) {
			size_t pages = ((size_t)st.st_size + 4095) / 4096, cached;
			cached = ol_cached_pages(dfd, name, 0, (size_t)st.st_size);
			cr_assert_lt(cached, pages / 2, "%zu of %zu pages of the copy are cached", cached, pages);
			close(probe);
		}
	}
	oplog_free(dst);
	/* reopened: nothing to cut, every record reads back as sent */
	{
		struct pos bad = { 0, 0 };
		uint64_t cut = 99;
		cr_assert_eq(oplog_open(&dst, dfd, oenv.key, &cut, &bad), 0);
		cr_assert_eq(cut, 0);
		cr_assert_eq(oplog_last(dst).seq, N);
		oplog_free(dst);
	}
	cr_assert_eq(oplog_reader_open(&rd, dfd, oenv.key, 1), 0);
	for (int i = 0; i < N; i++) {
		size_t len;
		const uint8_t *raw;
		cr_assert_eq(oplog_reader_next(rd, &got), 1, "record %d", i + 1);
		raw = oplog_reader_raw(rd, &len);
		cr_assert_eq(len, lens[i]);
		cr_assert_eq(memcmp(raw, bufs[i], len), 0, "record %d differs", i + 1);
	}
	oplog_reader_free(rd);
	for (int i = 0; i < N; i++)
		free(bufs[i]);
	free(data);
	close(dfd);
}

Test(oplog, a_sync_drops_the_page_cache_of_what_it_made_durable_but_the_tail_unless_a_follower_reads)
{
	enum { N = 200, LEN = 60000 };	/* about 12 MB */
	uint8_t *data = malloc(LEN);
	struct record r = { .type = REC_WRITE, .epoch = 1, .path = "big", .data = data, .data_len = LEN };
	struct oplog *log = ol_open_ok();
	struct oplog_reader *rd;
	struct record got;
	struct statfs sfs;
	const char *seg = "0000000000000001.seg";
	size_t size, head, tail;

	for (int i = 0; i < N; i++) {
		memset(data, i, LEN);
		cr_assert_eq(oplog_append(log, &r), 0);
	}
	size = (size_t)oplog_bytes(log);
	cr_assert_eq(fstatfs(ologfd, &sfs), 0);
	if (sfs.f_type == 0x01021994) {	/* tmpfs: its pages are the file, nothing to drop */
		oplog_free(log);
		free(data);
		return;
	}
	cr_assert_gt(ol_cached_pages(ologfd, seg, 0, 1 << 20), 200, "appended pages are cached before a sync");
	cr_assert_eq(oplog_sync(log, N), 0);
	/* all but the last 4 MiB (to a page) left the cache; the tail stayed */
	head = (size - (4u << 20)) & ~(size_t)4095;
	cr_assert_lt(ol_cached_pages(ologfd, seg, 0, head), 16, "%zu bytes before the tail", head);
	tail = ol_cached_pages(ologfd, seg, head + 4096, size - head - 4096);
	cr_assert_gt(tail, (size - head) / 4096 / 2, "%zu pages of the tail are cached", tail);
	/* while a follower streams the log, nothing is dropped */
	for (int i = 0; i < N; i++)
		cr_assert_eq(oplog_append(log, &r), 0);
	oplog_readers(log, 1);
	cr_assert_eq(oplog_sync(log, 2 * N), 0);
	cr_assert_gt(ol_cached_pages(ologfd, seg, size & ~(size_t)4095, 1 << 20), 200, "pages cached while a follower reads");
	oplog_readers(log, -1);
	/* and everything reads back, now from the disk */
	cr_assert_eq(oplog_reader_open(&rd, ologfd, oenv.key, 1), 0);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(oplog_reader_next(rd, &got), 1, "record %d", i + 1);
		cr_assert_eq(got.data_len, LEN);
		cr_assert_eq(((const uint8_t *)got.data)[LEN - 1], (uint8_t)i);
	}
	oplog_reader_free(rd);
	oplog_free(log);
	free(data);
}
