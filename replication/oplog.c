/* oplog.c -- segment files, appends, group commit and the verifying reader */
#include "oplog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../lib/util.h"

#define SEG_MAGIC "REPFSLG1"
#define SEG_HEADER_BYTES 64

struct oplog {
	int dirfd;
	const struct key *key;
	pthread_mutex_t dir_mu;	/* segments removed outside mu (oplog_trim) vs rewind and reset; before mu */
	pthread_mutex_t mu;	/* protects everything below */
	pthread_cond_t synced;
	int fd;			/* current segment, O_APPEND is not used: we track size */
	uint64_t seg_first;	/* first seq of the current segment */
	uint64_t seg_gstart;	/* its position in the whole log's byte history */
	uint64_t size;		/* bytes in the current segment */
	uint64_t older_bytes;	/* bytes in all earlier segments */
	uint64_t first_seq;	/* oldest seq held */
	struct pos last;
	uint8_t last_mac[CRYPTO_MAC_BYTES];
	uint64_t durable;
	int syncing;
	int dir_unsynced;	/* a segment was made since the last sync: its header and name are not durable */
	uint64_t prealloc_end;	/* the current segment's blocks are allocated up to here (a hint: prealloc()) */
	uint64_t uncached_to;	/* the current segment's page cache was last dropped up to here (uncache()) */
	int readers;		/* followers streaming the log: nothing is dropped (atomic; oplog_readers()) */
	int no_prealloc;	/* the file system cannot (fallocate) */
	int failed;		/* errno after an unrecoverable error */
	/* closed segments not synced since their roll; the next sync makes them durable */
	int pending[8];
	int npending;
	/* undo state for the last append */
	int can_undo;
	uint64_t undo_size;
	struct pos undo_last;
	uint8_t undo_mac[CRYPTO_MAC_BYTES];
	/* random bytes for nonces, drawn a block at a time (one getrandom per 32 appends) */
	uint8_t rnd[32 * REC_NONCE_BYTES];
	size_t rnd_used;
	/* fault injection */
	unsigned fault_write, fault_sync;
	int fault_write_err, fault_sync_err;
	/* received batches: whole blocks around the page cache (write_batch()) */
	int dfd;		/* O_DIRECT descriptor of the segment dfd_dev/dfd_ino, or -1 */
	dev_t dfd_dev;
	ino_t dfd_ino;
	int no_direct;		/* refused here (tmpfs, alignment): the page cache only */
	uint8_t *stage;		/* DIRECT_STAGE bytes, aligned */
};

static void seg_name(char *buf, size_t len, uint64_t first)
{
	snprintf(buf, len, "%016" PRIx64 ".seg", first);
}

static int parse_seg_name(const char *name, uint64_t *first)
{
	char *end;

	if (strlen(name) != 20 || strcmp(name + 16, ".seg"))
		return -1;
	*first = strtoull(name, &end, 16);
	return end == name + 16 ? 0 : -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Lists segment first-seqs in ascending order into a malloc'd array. */
static int list_segments(int dirfd, uint64_t **out, size_t *count)
{
	uint64_t *v = NULL, first;
	size_t n = 0, cap = 0;
	struct dirent *de;
	/* a stream of its own: a dup of dirfd would share its position in
	 * the directory with every other thread listing the log at the same time */
	DIR *d = opendir_at(dirfd, ".");

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (parse_seg_name(de->d_name, &first))
			continue;
		if (n == cap) {
			uint64_t *nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = first;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_u64);
	*out = v;
	*count = n;
	return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_all_at(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_seg_header(int fd, uint64_t *first, uint8_t prev[CRYPTO_MAC_BYTES], uint64_t *gstart)
{
	uint8_t h[SEG_HEADER_BYTES];
	int ret = pread_all(fd, h, sizeof(h), 0);

	if (ret)
		return ret == -ENODATA ? -EBADMSG : ret;
	if (memcmp(h, SEG_MAGIC, 8))
		return -EBADMSG;
	memcpy(first, h + 8, 8);	/* little-endian hosts only, see docs */
	memcpy(gstart, h + 16, 8);
	memcpy(prev, h + 24, CRYPTO_MAC_BYTES);
	return 0;
}

/*
 * A new segment: its header, and (sync) the header and the directory entry
 * made durable at once. A roll leaves both to the next oplog_sync(), which
 * must make them durable before any record of the segment counts as
 * durable: the appender does not wait for two syncs behind the writeback
 * of the segments before (tens of milliseconds under a stream of writes).
 * A crash before then leaves the segment short or its header zeros, and
 * oplog_open() drops it: nothing in it was durable.
 */
static int create_segment(struct oplog *log, uint64_t first, const uint8_t prev[CRYPTO_MAC_BYTES],
			  uint64_t gstart, int sync)
{
	uint8_t h[SEG_HEADER_BYTES] = { 0 };
	char name[32];
	int fd, ret;

	seg_name(name, sizeof(name), first);
	fd = openat(log->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	memcpy(h, SEG_MAGIC, 8);
	memcpy(h + 8, &first, 8);
	memcpy(h + 16, &gstart, 8);
	memcpy(h + 24, prev, CRYPTO_MAC_BYTES);
	ret = write_all_at(fd, h, sizeof(h), 0);
	if (!ret && sync && fdatasync(fd) < 0)
		ret = -errno;
	if (!ret && sync && fsync(log->dirfd) < 0)
		ret = -errno;
	if (ret) {
		close(fd);
		unlinkat(log->dirfd, name, 0);
		return ret;
	}
	log->fd = fd;
	log->seg_first = first;
	log->seg_gstart = gstart;
	log->size = SEG_HEADER_BYTES;
	log->prealloc_end = SEG_HEADER_BYTES;
	log->uncached_to = 0;
	if (!sync)
		log->dir_unsynced = 1;
	return 0;
}

/* True if buf[0..len) is all zero bytes. */
static int all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return 0;
	return 1;
}

/*
 * Walks the records of a segment's body buf[0..len) (the bytes after its
 * header), each chained on the one before, starting from prev and last (the
 * position before the first). Leaves prev, last and *end (the bytes of
 * whole records) at the last whole record. Returns 0 at the end of the body,
 * 1 at a torn tail (a prefix of a consistent record running past the end, or
 * zero fill), -EBADMSG at anything else that does not verify.
 */
static int walk_records(const struct key *k, const uint8_t *buf, uint64_t len, uint8_t prev[CRYPTO_MAC_BYTES],
			struct pos *last, uint64_t *end)
{
	uint64_t off = 0;

	while (off < len) {
		const uint8_t *p = buf + off;
		uint64_t avail = len - off;
		uint32_t rl = record_peek_len(p, avail), implied = record_implied_len(p, avail);
		struct record r;

		*end = off;
		if (all_zero(p, avail) || avail < 4 || (rl && rl > avail && (!implied || implied == rl)))
			return 1;
		if (!rl || rl > avail || (implied && implied != rl) || record_decode(p, rl, &r) ||
		    record_verify(k, prev, p, rl) || r.seq != last->seq + 1 || r.epoch < last->epoch)
			return -EBADMSG;
		memcpy(prev, record_mac_of(p, rl), CRYPTO_MAC_BYTES);
		last->seq = r.seq;
		last->epoch = r.epoch;
		off += rl;
	}
	*end = off;
	return 0;
}

/* Reads a segment: its header, and its body into *body (malloc'd, *len bytes). */
static int read_segment(int fd, uint64_t *first, uint8_t prev[CRYPTO_MAC_BYTES], uint64_t *gstart,
			uint8_t **body, uint64_t *len)
{
	struct stat st;
	int ret = read_seg_header(fd, first, prev, gstart);

	*body = NULL;
	if (ret)
		return ret;
	if (fstat(fd, &st) < 0)
		return -errno;
	*len = (uint64_t)st.st_size > SEG_HEADER_BYTES ? (uint64_t)st.st_size - SEG_HEADER_BYTES : 0;
	*body = malloc(*len ? *len : 1);
	if (!*body)
		return -ENOMEM;
	ret = pread_all(fd, *body, *len, SEG_HEADER_BYTES);
	if (ret) {
		free(*body);
		*body = NULL;
	}
	return ret;
}

/*
 * Scans the current (last) segment, leaving log->last, last_mac and size at its
 * last whole record. A torn tail is cut; damage before the tail is -EBADMSG.
 */
static int scan_last_segment(struct oplog *log, uint64_t *cut, struct pos *bad)
{
	uint8_t prev[CRYPTO_MAC_BYTES], *buf = NULL;
	uint64_t first = 0, gstart = 0, len = 0, end = 0;
	int ret = read_segment(log->fd, &first, prev, &gstart, &buf, &len);

	log->seg_gstart = gstart;
	if (ret)
		return ret;
	log->last.seq = first - 1;
	ret = walk_records(log->key, buf, len, prev, &log->last, &end);
	if (ret == 1) {
		if (ftruncate(log->fd, (off_t)(SEG_HEADER_BYTES + end)) < 0 || fdatasync(log->fd) < 0) {
			ret = -errno;
			goto out;
		}
		if (cut)
			*cut += len - end;
		ret = 0;
	} else if (ret < 0) {
		if (bad) {
			bad->epoch = log->last.epoch;
			bad->seq = log->last.seq + 1;
		}
		goto out;
	}
	memcpy(log->last_mac, prev, CRYPTO_MAC_BYTES);
	log->size = SEG_HEADER_BYTES + end;
	log->prealloc_end = log->size;
	log->uncached_to = 0;
	log->seg_first = first;
out:
	free(buf);
	return ret;
}

/*
 * Whether segment a ends where segment b, the one after it, begins: its
 * records whole up to b's first seq, the last one's MAC the one b's header
 * names. Rolls do not sync (create_segment()), so after a crash a can lack
 * its tail while b's header reached the disk; nothing in b was durable then
 * (a sync does the closed segments first). Returns 1 if a continues into b
 * (a tail of zeros after its last record is cut, *cut counting it), 0 if
 * a's end is missing, -EBADMSG if a is damaged or contradicts b.
 */
static int segment_continues(int dirfd, const struct key *k, uint64_t a, uint64_t b, uint64_t *cut,
			     struct pos *bad)
{
	uint8_t aprev[CRYPTO_MAC_BYTES], bprev[CRYPTO_MAC_BYTES], *buf = NULL;
	uint64_t afirst = 0, bfirst = 0, gstart, len = 0, end = 0;
	struct pos last = { 0, 0 };
	char name[32];
	int fa, fb, ret;

	seg_name(name, sizeof(name), a);
	fa = openat(dirfd, name, O_RDWR | O_CLOEXEC);
	seg_name(name, sizeof(name), b);
	fb = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fa < 0 || fb < 0) {
		ret = -errno;
		goto out;
	}
	ret = read_seg_header(fb, &bfirst, bprev, &gstart);
	if (ret) {
		if (bad) {
			bad->epoch = 0;
			bad->seq = b;
		}
		goto out;
	}
	ret = read_segment(fa, &afirst, aprev, &gstart, &buf, &len);
	if (ret)
		goto out;
	last.seq = afirst - 1;
	ret = walk_records(k, buf, len, aprev, &last, &end);
	if (ret >= 0 && last.seq + 1 == bfirst && !memcmp(aprev, bprev, CRYPTO_MAC_BYTES)) {
		if (ret == 1) {
			if (ftruncate(fa, (off_t)(SEG_HEADER_BYTES + end)) < 0 || fdatasync(fa) < 0) {
				ret = -errno;
				goto out;
			}
			if (cut)
				*cut += len - end;
		}
		ret = 1;
	} else if (ret >= 0 && last.seq + 1 < bfirst) {
		ret = 0;
	} else {
		if (bad) {
			bad->epoch = last.epoch;
			bad->seq = last.seq + 1;
		}
		ret = -EBADMSG;
	}
out:
	if (fa >= 0)
		close(fa);
	if (fb >= 0)
		close(fb);
	free(buf);
	return ret;
}

/*
 * True if segment first has a header no sync can have covered: shorter than
 * a header, or (zeros_too) all zeros.
 */
static int unsynced_header(int dirfd, uint64_t first, int zeros_too)
{
	uint8_t h[SEG_HEADER_BYTES];
	char name[32];
	int fd, zero, ret;

	seg_name(name, sizeof(name), first);
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ret = pread_all(fd, h, sizeof(h), 0);
	if (ret == -ENODATA)
		zero = 1;	/* shorter than a header */
	else
		zero = !ret && zeros_too && all_zero(h, sizeof(h));
	close(fd);
	return zero;
}

static int drop_segment(int dirfd, uint64_t first, uint64_t *cut_bytes)
{
	char name[32];
	struct stat st;

	seg_name(name, sizeof(name), first);
	if (fstatat(dirfd, name, &st, 0) < 0 || unlinkat(dirfd, name, 0) < 0 || fsync(dirfd) < 0)
		return -errno;
	if (cut_bytes)
		*cut_bytes += (uint64_t)st.st_size;
	return 0;
}

int oplog_open(struct oplog **out, int dirfd, const struct key *k, uint64_t *cut_bytes,
	       struct pos *bad)
{
	return oplog_open_above(out, dirfd, k, 0, cut_bytes, bad);
}

int oplog_open_above(struct oplog **out, int dirfd, const struct key *k, uint64_t keep_seq, uint64_t *cut_bytes,
		     struct pos *bad)
{
	struct oplog *log;
	uint64_t *segs = NULL;
	size_t nseg = 0, keep;
	int ret;

	*out = NULL;
	if (cut_bytes)
		*cut_bytes = 0;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	log->dirfd = dirfd;
	log->key = k;
	log->fd = -1;
	log->dfd = -1;
	log->rnd_used = sizeof(log->rnd);
	pthread_mutex_init(&log->dir_mu, NULL);
	pthread_mutex_init(&log->mu, NULL);
	pthread_cond_init(&log->synced, NULL);

	ret = list_segments(dirfd, &segs, &nseg);
	if (ret)
		goto out;
	/*
	 * Rolls do not sync (create_segment()), and a sync does the closed
	 * segments first: after a crash, nothing after the first segment that
	 * is not whole was durable. From the end: the last segment goes if its
	 * header is short (or zeros, unless it is the only one); it goes if the
	 * one before it has such a header (not the first: a first segment's
	 * header is always durable), or does not end where it begins
	 * (segment_continues()). Never a segment that starts at or below
	 * keep_seq (the caller's checkpoint: durable for sure): that is damage.
	 */
	for (keep = nseg; keep > 0; keep--) {
		int drop = 0;

		if (unsynced_header(dirfd, segs[keep - 1], keep > 1)) {
			drop = 1;
		} else if (keep > 2 && unsynced_header(dirfd, segs[keep - 2], 1)) {
			drop = 1;
		} else if (keep > 1) {
			ret = segment_continues(dirfd, k, segs[keep - 2], segs[keep - 1], cut_bytes, bad);
			if (ret < 0)
				goto out;
			drop = ret == 0;
		}
		if (!drop)
			break;
		if (segs[keep - 1] <= keep_seq) {
			if (bad) {
				bad->epoch = 0;
				bad->seq = segs[keep - 1];
			}
			ret = -EBADMSG;
			goto out;
		}
	}
	for (; nseg > keep; nseg--)	/* decided: the last first */
		if ((ret = drop_segment(dirfd, segs[nseg - 1], cut_bytes)))
			goto out;
	ret = 0;
	if (nseg == 0) {
		uint8_t zero[CRYPTO_MAC_BYTES] = { 0 };
		ret = create_segment(log, 1, zero, 0, 1);
		if (ret)
			goto out;
		log->first_seq = 1;
	} else {
		char name[32];
		struct stat st;

		for (size_t i = 0; i + 1 < nseg; i++) {
			seg_name(name, sizeof(name), segs[i]);
			if (fstatat(dirfd, name, &st, 0) == 0)
				log->older_bytes += (uint64_t)st.st_size;
		}
		seg_name(name, sizeof(name), segs[nseg - 1]);
		log->fd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
		if (log->fd < 0) {
			ret = -errno;
			goto out;
		}
		ret = scan_last_segment(log, cut_bytes, bad);
		if (ret)
			goto out;
		if (log->seg_first != segs[nseg - 1]) {
			ret = -EBADMSG;
			goto out;
		}
		log->first_seq = segs[0];
		/* the epoch of an empty last segment comes from the segment before */
		if (log->last.seq >= 1 && log->last.epoch == 0 && nseg > 1) {
			struct oplog_reader *rd;
			struct record r;
			if (oplog_reader_open(&rd, dirfd, k, log->last.seq) == 0) {
				if (oplog_reader_next(rd, &r) == 1)
					log->last.epoch = r.epoch;
				oplog_reader_free(rd);
			}
		}
	}
	/*
	 * What survived a restart is durable only once synced: after a kill -9
	 * the page cache held segments no sync had covered yet.
	 */
	for (size_t i = 0; i < nseg; i++) {
		char name[32];
		int fd;

		seg_name(name, sizeof(name), segs[i]);
		fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
		if (fd >= 0 && fdatasync(fd) < 0)
			ret = -errno;
		if (fd >= 0)
			close(fd);
	}
	if (!ret && fsync(dirfd) < 0)
		ret = -errno;
	if (ret)
		goto out;
	log->durable = log->last.seq;
	*out = log;
	log = NULL;
out:
	free(segs);
	oplog_free(log);
	return ret;
}

void oplog_free(struct oplog *log)
{
	if (!log)
		return;
	if (log->fd >= 0)
		close(log->fd);
	if (log->dfd >= 0)
		close(log->dfd);
	free(log->stage);
	for (int i = 0; i < log->npending; i++)
		close(log->pending[i]);
	pthread_mutex_destroy(&log->mu);
	pthread_mutex_destroy(&log->dir_mu);
	pthread_cond_destroy(&log->synced);
	free(log);
}

struct pos oplog_last(struct oplog *log)
{
	struct pos p;

	pthread_mutex_lock(&log->mu);
	p = log->last;
	pthread_mutex_unlock(&log->mu);
	return p;
}

void oplog_last_mac(struct oplog *log, uint8_t mac[CRYPTO_MAC_BYTES])
{
	pthread_mutex_lock(&log->mu);
	memcpy(mac, log->last_mac, CRYPTO_MAC_BYTES);
	pthread_mutex_unlock(&log->mu);
}

uint64_t oplog_durable(struct oplog *log)
{
	uint64_t d;

	pthread_mutex_lock(&log->mu);
	d = log->durable;
	pthread_mutex_unlock(&log->mu);
	return d;
}

int oplog_peek(struct oplog *log, struct oplog_peek *p, long wait_ms)
{
	int busy = lock_within(&log->mu, wait_ms) != 0;

	/* (atomic loads: the word-sized fields are written under mu, which a stuck append holds) */
	p->last.epoch = __atomic_load_n(&log->last.epoch, __ATOMIC_RELAXED);
	p->last.seq = __atomic_load_n(&log->last.seq, __ATOMIC_RELAXED);
	p->durable = __atomic_load_n(&log->durable, __ATOMIC_RELAXED);
	p->end_pos = __atomic_load_n(&log->seg_gstart, __ATOMIC_RELAXED) + __atomic_load_n(&log->size, __ATOMIC_RELAXED);
	p->bytes = __atomic_load_n(&log->older_bytes, __ATOMIC_RELAXED) + __atomic_load_n(&log->size, __ATOMIC_RELAXED);
	p->failed = __atomic_load_n(&log->failed, __ATOMIC_RELAXED);
	if (!busy)
		pthread_mutex_unlock(&log->mu);
	return busy;
}

uint64_t oplog_first_seq(struct oplog *log)
{
	return log->first_seq;
}

uint64_t oplog_bytes(struct oplog *log)
{
	uint64_t b;

	pthread_mutex_lock(&log->mu);
	b = log->older_bytes + log->size;
	pthread_mutex_unlock(&log->mu);
	return b;
}

int oplog_failed(struct oplog *log)
{
	int f;

	pthread_mutex_lock(&log->mu);
	f = log->failed;
	pthread_mutex_unlock(&log->mu);
	return f;
}

void oplog_inject_fault(struct oplog *log, enum oplog_fault what, unsigned nth, int err)
{
	pthread_mutex_lock(&log->mu);
	if (what == OPLOG_FAULT_WRITE) {
		log->fault_write = nth;
		log->fault_write_err = err;
	} else {
		log->fault_sync = nth;
		log->fault_sync_err = err;
	}
	pthread_mutex_unlock(&log->mu);
}

/* Called with mu held. Returns the injected error, or 0. */
static int take_fault(unsigned *counter, int err)
{
	if (*counter && --*counter == 0)
		return err ? -err : -EIO;
	return 0;
}

/* Called with mu held: fresh random bytes for a record's nonce. */
static void next_nonce(struct oplog *log, uint8_t nonce[REC_NONCE_BYTES])
{
	if (log->rnd_used + REC_NONCE_BYTES > sizeof(log->rnd)) {
		crypto_random(log->rnd, sizeof(log->rnd));
		log->rnd_used = 0;
	}
	memcpy(nonce, log->rnd + log->rnd_used, REC_NONCE_BYTES);
	/* used bytes are wiped so that no two appends can take the same ones */
	memset(log->rnd + log->rnd_used, 0, REC_NONCE_BYTES);
	log->rnd_used += REC_NONCE_BYTES;
}

static int writev_all_at(int fd, struct iovec *iov, int n, uint64_t off)
{
	while (n > 0) {
		ssize_t w = pwritev(fd, iov, n, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)w;
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/*
 * Allocates the current segment's blocks ahead of its end, PREALLOC_STEP at
 * a time (fallocate, FALLOC_FL_KEEP_SIZE: the size, and so everything that
 * reads the log, is unchanged). An append into allocated blocks skips
 * ext4's delayed allocation for each page: 256 KiB buffered writes into such
 * a file measured twice as fast here. Best effort: without fallocate, or on
 * a full disk, appends go without it. prealloc_end is only a hint (a
 * truncate frees the blocks past it; it is then moved back).
 */
#define PREALLOC_STEP (4u << 20)
static void prealloc(struct oplog *log, uint64_t end)
{
	uint64_t to;

	if (log->no_prealloc || end <= log->prealloc_end)
		return;
	to = (end + PREALLOC_STEP - 1) / PREALLOC_STEP * PREALLOC_STEP;
	if (fallocate(log->fd, FALLOC_FL_KEEP_SIZE, (off_t)log->size, (off_t)(to - log->size)) < 0 &&
	    (errno == EOPNOTSUPP || errno == ENOSYS))
		log->no_prealloc = 1;
	log->prealloc_end = to;	/* also after ENOSPC: not again before the next step */
}

/*
 * Called with mu held: closes the current segment and starts the next one,
 * waiting for no disk: the next oplog_sync() makes the old segment, the new
 * header and the new name durable (create_segment()).
 */
static int roll_segment(struct oplog *log, uint64_t next_seq)
{
	int oldfd = log->fd, ret;
	uint64_t oldsize = log->size, oldfirst = log->seg_first, oldgstart = log->seg_gstart;
	uint64_t oldprealloc = log->prealloc_end, olduncached = log->uncached_to;

	if (log->npending == (int)(sizeof(log->pending) / sizeof(log->pending[0]))) {
		/* rolls outran syncs: settle the oldest now */
		if (fdatasync(log->pending[0]) < 0)
			return -errno;
		close(log->pending[0]);
		memmove(log->pending, log->pending + 1, (size_t)--log->npending * sizeof(int));
	}
	ret = create_segment(log, next_seq, log->last_mac, log->seg_gstart + oldsize, 0);
	if (ret) {
		log->fd = oldfd;
		log->size = oldsize;
		log->seg_first = oldfirst;
		log->seg_gstart = oldgstart;
		log->uncached_to = olduncached;
		return ret;
	}
	/*
	 * The old segment's blocks past its end go back to the file system: a
	 * truncate to its own size frees them (a hole punched past the end
	 * would not, on ext4).
	 */
	if (oldprealloc > oldsize && ftruncate(oldfd, (off_t)oldsize) < 0) {
		/* best effort: the blocks stay allocated until the segment is trimmed */
	}
	log->older_bytes += oldsize;
	log->pending[log->npending++] = oldfd;
	return 0;
}

int oplog_append(struct oplog *log, struct record *r)
{
	uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES], mac[CRYPTO_MAC_BYTES];
	struct iovec iov[6];
	uint32_t total;
	int n, ret;

	pthread_mutex_lock(&log->mu);
	if (log->failed) {
		ret = -EIO;
		goto out;
	}
	if (r->epoch < log->last.epoch) {
		ret = -ESTALE;
		goto out;
	}
	r->seq = log->last.seq + 1;
	next_nonce(log, r->nonce);
	n = record_layout(r, hdr, iov, &total);
	if (n < 0) {
		ret = n;
		goto out;
	}
	record_mac(log->key, log->last_mac, iov, n, r->data, r->data_len, mac);
	if (r->data_len)
		iov[n++] = (struct iovec){ (void *)r->data, r->data_len };
	iov[n++] = (struct iovec){ mac, sizeof(mac) };

	if (log->size + total > OPLOG_SEGMENT_BYTES && log->size > SEG_HEADER_BYTES) {
		ret = roll_segment(log, r->seq);
		if (ret)
			goto out;
	}
	prealloc(log, log->size + total);
	ret = take_fault(&log->fault_write, log->fault_write_err);
	if (!ret)
		ret = writev_all_at(log->fd, iov, n, log->size);
	if (ret) {
		/* leave nothing of the record behind */
		if (ftruncate(log->fd, (off_t)log->size) < 0)
			log->failed = errno;
		log->prealloc_end = log->size;
		goto out;
	}
	log->can_undo = 1;
	log->undo_size = log->size;
	log->undo_last = log->last;
	memcpy(log->undo_mac, log->last_mac, sizeof(mac));
	log->size += total;
	log->last.seq = r->seq;
	log->last.epoch = r->epoch;
	memcpy(log->last_mac, mac, sizeof(mac));
out:
	pthread_mutex_unlock(&log->mu);
	return ret;
}

/*
 * Received records (a follower's) are appended in batches. Through the page
 * cache every appended byte takes a page of it, which nobody reads again (a
 * follower's log is read at recovery, or once it leads), and on the 2-core
 * bench machine a new page-cache page costs about four times an overwritten
 * one and is later written back by the kernel's flusher on the same CPUs.
 * The whole 4 KiB blocks of a large batch therefore go around the page cache
 * (O_DIRECT, from an aligned copy); the partial blocks at its two ends go
 * through it, so that the segment's size stays exact and no block is ever
 * written both ways at once. Durability is unchanged: oplog_sync()'s
 * fdatasync() also flushes the device's cache for what went around.
 */
#define DIRECT_BLOCK 4096u
#define DIRECT_MIN (512u << 10)	/* smaller batches: the page cache */
#define DIRECT_STAGE (1u << 20)

/* The O_DIRECT descriptor of the current segment, opened on first use; -1: none. */
static int direct_fd(struct oplog *log)
{
	struct stat st;
	char path[64];

	if (log->no_direct || fstat(log->fd, &st) < 0)
		return -1;
	if (log->dfd >= 0 && st.st_dev == log->dfd_dev && st.st_ino == log->dfd_ino)
		return log->dfd;
	if (log->dfd >= 0)
		close(log->dfd);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", log->fd);
	log->dfd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (!log->stage && log->dfd >= 0)
		log->stage = aligned_alloc(DIRECT_BLOCK, DIRECT_STAGE);
	if (log->dfd < 0 || !log->stage) {
		if (log->dfd >= 0)
			close(log->dfd);
		log->dfd = -1;
		log->no_direct = 1;	/* tmpfs has no O_DIRECT: the page cache from now on */
		return -1;
	}
	log->dfd_dev = st.st_dev;
	log->dfd_ino = st.st_ino;
	return log->dfd;
}

/* Copies bytes [from, from + len) of the stream iov[0..n) to dst. */
static void gather(const struct iovec *iov, int n, uint64_t from, size_t len, uint8_t *dst)
{
	for (int i = 0; i < n && len; i++) {
		size_t k;
		if (from >= iov[i].iov_len) {
			from -= iov[i].iov_len;
			continue;
		}
		k = iov[i].iov_len - (size_t)from;
		if (k > len)
			k = len;
		memcpy(dst, (const uint8_t *)iov[i].iov_base + from, k);
		dst += k;
		len -= k;
		from = 0;
	}
}

/* Writes the stream iov[0..n) (pend bytes) at off: see above. */
static int write_batch(struct oplog *log, struct iovec *iov, int n, uint64_t pend, uint64_t off)
{
	uint64_t a = (off + DIRECT_BLOCK - 1) & ~(uint64_t)(DIRECT_BLOCK - 1);
	uint64_t b = (off + pend) & ~(uint64_t)(DIRECT_BLOCK - 1);
	uint8_t edge[DIRECT_BLOCK];
	int dfd, ret = 0;

	if (b <= a || b - a < DIRECT_MIN || (dfd = direct_fd(log)) < 0)
		return writev_all_at(log->fd, iov, n, off);
	/* the head, the whole blocks, the tail: the size grows in order */
	if (a > off) {
		gather(iov, n, 0, (size_t)(a - off), edge);
		if ((ret = write_all_at(log->fd, edge, (size_t)(a - off), off)))
			return ret;
	}
	for (uint64_t at = a; at < b;) {
		size_t k = b - at > DIRECT_STAGE ? DIRECT_STAGE : (size_t)(b - at), done = 0;
		gather(iov, n, at - off, k, log->stage);
		while (done < k) {
			ssize_t w = log->no_direct ? pwrite(log->fd, log->stage + done, k - done, (off_t)(at + done))
						   : pwrite(dfd, log->stage + done, k - done, (off_t)(at + done));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && errno == EINVAL && !log->no_direct) {
				log->no_direct = 1;	/* alignment refused: the page cache */
				continue;
			}
			if (w < 0)
				return -errno;
			done += (size_t)w;
			if (done % DIRECT_BLOCK)
				log->no_direct = 1;	/* a short write left the rest unaligned */
		}
		at += k;
	}
	if (off + pend > b) {
		gather(iov, n, b - off, (size_t)(off + pend - b), edge);
		ret = write_all_at(log->fd, edge, (size_t)(off + pend - b), b);
	}
	return ret;
}

/*
 * Called with mu held: writes the n records in iov (pend bytes) at the end of
 * the segment; last and mac are the last one's position and MAC. On failure
 * nothing of them remains.
 */
static int append_flush(struct oplog *log, struct iovec *iov, int n, uint64_t pend, struct pos last,
			const uint8_t mac[CRYPTO_MAC_BYTES])
{
	int ret;

	if (!n)
		return 0;
	prealloc(log, log->size + pend);
	ret = take_fault(&log->fault_write, log->fault_write_err);
	if (!ret)
		ret = write_batch(log, iov, n, pend, log->size);
	if (ret) {
		if (ftruncate(log->fd, (off_t)log->size) < 0)
			log->failed = errno;
		log->prealloc_end = log->size;
		return ret;
	}
	log->can_undo = 0;
	log->size += pend;
	log->last = last;
	memcpy(log->last_mac, mac, CRYPTO_MAC_BYTES);
	return 0;
}

int oplog_append_raw_many(struct oplog *log, const uint8_t *const bufs[], const size_t lens[], int k,
			  struct record outs[], int *done)
{
	struct iovec iov[OPLOG_BATCH_MAX];
	uint8_t mac[CRYPTO_MAC_BYTES];
	uint64_t pend = 0;
	struct pos last;
	int n = 0, i, ret = 0;

	*done = 0;
	if (k > OPLOG_BATCH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&log->mu);
	if (log->failed) {
		ret = -EIO;
		goto out;
	}
	last = log->last;
	memcpy(mac, log->last_mac, CRYPTO_MAC_BYTES);
	for (i = 0; i < k; i++) {
		struct record r;
		if (record_decode(bufs[i], lens[i], &r) || r.seq != last.seq + 1 || r.epoch < last.epoch ||
		    record_verify(log->key, mac, bufs[i], lens[i])) {
			ret = -EBADMSG;
			break;
		}
		if (log->size + pend + lens[i] > OPLOG_SEGMENT_BYTES && log->size + pend > SEG_HEADER_BYTES) {
			ret = append_flush(log, iov, n, pend, last, mac);
			if (!ret) {
				*done += n;
				n = 0;
				pend = 0;
				ret = roll_segment(log, r.seq);
			}
			if (ret)
				break;
		}
		iov[n++] = (struct iovec){ (void *)bufs[i], lens[i] };
		pend += lens[i];
		last.seq = r.seq;
		last.epoch = r.epoch;
		memcpy(mac, record_mac_of(bufs[i], lens[i]), CRYPTO_MAC_BYTES);
		if (outs)
			outs[i] = r;
	}
	/* the records before a bad one are good: they go in, and the error is reported after them */
	if (n && (!ret || ret == -EBADMSG)) {
		int w = append_flush(log, iov, n, pend, last, mac);
		if (w)
			ret = w;
		else
			*done += n;
	}
out:
	pthread_mutex_unlock(&log->mu);
	return ret;
}

int oplog_append_raw(struct oplog *log, const uint8_t *buf, size_t len, struct record *out)
{
	int done;

	return oplog_append_raw_many(log, &buf, &len, 1, out, &done);
}

/*
 * Cuts the current segment back to size, the log's last record to last.
 * A group commit running meanwhile is waited for first (its fdatasync could
 * otherwise count records appended after the cut as durable); one that made
 * some of the removed records durable is followed by an fdatasync that makes
 * their removal durable too. Called with the lock held.
 */
static int undo_locked(struct oplog *log, uint64_t size, struct pos last, const uint8_t mac[CRYPTO_MAC_BYTES])
{
	while (log->syncing)
		pthread_cond_wait(&log->synced, &log->mu);
	if (ftruncate(log->fd, (off_t)size) < 0) {
		log->failed = errno;
		return -errno;
	}
	if (log->durable > last.seq) {
		if (fdatasync(log->fd) < 0) {
			log->failed = errno;
			return -errno;
		}
		log->durable = last.seq;
	}
	log->size = size;
	log->prealloc_end = size;
	log->last = last;
	memcpy(log->last_mac, mac, CRYPTO_MAC_BYTES);
	log->can_undo = 0;
	return 0;
}

int oplog_undo_last(struct oplog *log)
{
	int ret;

	pthread_mutex_lock(&log->mu);
	ret = log->can_undo ? undo_locked(log, log->undo_size, log->undo_last, log->undo_mac) : -EINVAL;
	pthread_mutex_unlock(&log->mu);
	return ret;
}

void oplog_mark(struct oplog *log, struct oplog_mark *m)
{
	pthread_mutex_lock(&log->mu);
	m->seg_first = log->seg_first;
	m->size = log->size;
	m->last = log->last;
	memcpy(m->mac, log->last_mac, CRYPTO_MAC_BYTES);
	pthread_mutex_unlock(&log->mu);
}

int oplog_undo_to(struct oplog *log, const struct oplog_mark *m)
{
	int ret;

	pthread_mutex_lock(&log->mu);
	if (log->failed)
		ret = -EIO;
	else if (m->seg_first != log->seg_first || m->size > log->size || m->last.seq > log->last.seq)
		ret = -EXDEV;
	else
		ret = undo_locked(log, m->size, m->last, m->mac);
	pthread_mutex_unlock(&log->mu);
	return ret;
}

int oplog_make_room(struct oplog *log, uint64_t bytes)
{
	int ret = 0;

	if (bytes > OPLOG_SEGMENT_BYTES - SEG_HEADER_BYTES)
		return -EFBIG;
	pthread_mutex_lock(&log->mu);
	if (log->failed)
		ret = -EIO;
	else if (log->size + bytes > OPLOG_SEGMENT_BYTES && log->size > SEG_HEADER_BYTES)
		ret = roll_segment(log, log->last.seq + 1);
	if (!ret)
		log->can_undo = 0;	/* an undo of the record before would cut the new segment */
	pthread_mutex_unlock(&log->mu);
	return ret;
}

int oplog_rewind(struct oplog *log, uint64_t seq)
{
	uint64_t *segs = NULL, first, gstart, off = SEG_HEADER_BYTES, older = 0, epoch = 0;
	uint8_t prev[CRYPTO_MAC_BYTES];
	size_t n = 0, k = 0;
	char name[32];
	uint8_t *buf = NULL;
	struct stat st;
	int fd = -1, ret;

	pthread_mutex_lock(&log->dir_mu);
	pthread_mutex_lock(&log->mu);
	ret = list_segments(log->dirfd, &segs, &n);
	if (ret)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (segs[i] <= seq || i == 0)
			k = i;
	if (n == 0 || (segs[k] > seq + 1)) {
		ret = -ERANGE;	/* the log no longer holds seq */
		goto out;
	}
	seg_name(name, sizeof(name), segs[k]);
	fd = openat(log->dirfd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	ret = read_seg_header(fd, &first, prev, &gstart);
	if (ret)
		goto out;
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = pread_all(fd, buf, (size_t)st.st_size - SEG_HEADER_BYTES, SEG_HEADER_BYTES);
	if (ret)
		goto out;
	/* find the end of record seq (or stay at the header if seq is the one before this segment) */
	while (first <= seq && off < (uint64_t)st.st_size) {
		const uint8_t *p = buf + (off - SEG_HEADER_BYTES);
		uint32_t len = record_peek_len(p, (uint64_t)st.st_size - off);
		struct record r;
		if (!len || len > (uint64_t)st.st_size - off || record_decode(p, len, &r)) {
			ret = -EBADMSG;
			goto out;
		}
		memcpy(prev, record_mac_of(p, len), CRYPTO_MAC_BYTES);
		epoch = r.epoch;
		off += len;
		if (r.seq == seq)
			break;
	}
	/* everything after: the rest of this segment, and the segments after it */
	for (size_t i = k + 1; i < n; i++) {
		char later[32];
		seg_name(later, sizeof(later), segs[i]);
		if (unlinkat(log->dirfd, later, 0) < 0) {
			ret = -errno;
			goto out;
		}
	}
	if (ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0 || fsync(log->dirfd) < 0) {
		ret = -errno;
		goto out;
	}
	for (size_t i = 0; i < k; i++) {
		char older_name[32];
		struct stat os;
		seg_name(older_name, sizeof(older_name), segs[i]);
		if (fstatat(log->dirfd, older_name, &os, 0) == 0)
			older += (uint64_t)os.st_size;
	}
	/* the segments before the one kept: durable before durable says so */
	for (int i = 0; i < log->npending; i++) {
		if (fdatasync(log->pending[i]) < 0 && !ret)
			ret = -errno;
		close(log->pending[i]);
	}
	log->npending = 0;
	if (ret)
		log->failed = -ret;
	close(log->fd);
	log->fd = fd;
	fd = -1;
	log->seg_first = first;
	log->seg_gstart = gstart;
	log->size = off;
	log->prealloc_end = off;
	log->uncached_to = 0;
	log->older_bytes = older;
	log->last.seq = seq;
	if (epoch)
		log->last.epoch = epoch;
	memcpy(log->last_mac, prev, CRYPTO_MAC_BYTES);
	log->durable = seq;
	log->can_undo = 0;
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(segs);
	pthread_mutex_unlock(&log->mu);
	pthread_mutex_unlock(&log->dir_mu);
	return ret;
}

int oplog_reset(struct oplog *log, struct pos at, const uint8_t mac[CRYPTO_MAC_BYTES])
{
	uint64_t *segs = NULL;
	size_t n = 0;
	int ret;

	pthread_mutex_lock(&log->dir_mu);
	pthread_mutex_lock(&log->mu);
	ret = list_segments(log->dirfd, &segs, &n);
	if (ret)
		goto out;
	/* all of the old history goes first: a crash in between leaves an empty log, never a gap */
	for (size_t i = 0; i < n; i++) {
		char name[32];
		seg_name(name, sizeof(name), segs[i]);
		if (unlinkat(log->dirfd, name, 0) < 0 && errno != ENOENT) {
			ret = -errno;
			goto out;
		}
	}
	if (fsync(log->dirfd) < 0) {
		ret = -errno;
		goto out;
	}
	for (int i = 0; i < log->npending; i++)
		close(log->pending[i]);
	log->npending = 0;
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
	ret = create_segment(log, at.seq + 1, mac, 0, 1);
	if (ret) {
		log->failed = -ret;
		goto out;
	}
	log->older_bytes = 0;
	log->first_seq = at.seq + 1;
	log->last = at;
	memcpy(log->last_mac, mac, CRYPTO_MAC_BYTES);
	log->durable = at.seq;
	log->can_undo = 0;
out:
	free(segs);
	pthread_mutex_unlock(&log->mu);
	pthread_mutex_unlock(&log->dir_mu);
	return ret;
}

/*
 * The segments to remove are chosen, and the log's bookkeeping moved past
 * them, under mu; they are unlinked after it is released: dropping 64 MiB
 * of page cache takes milliseconds, and appends must not wait for it.
 * dir_mu keeps a rewind or reset from picking one of them meanwhile.
 */
int oplog_trim(struct oplog *log, uint64_t keep_from, uint64_t budget, uint64_t *removed_bytes)
{
	uint64_t *segs = NULL, *sizes = NULL, removed = 0;
	size_t n = 0, gone = 0;
	int ret;

	pthread_mutex_lock(&log->dir_mu);
	pthread_mutex_lock(&log->mu);
	ret = list_segments(log->dirfd, &segs, &n);
	if (!ret && !(sizes = calloc(n ? n : 1, sizeof(*sizes))))
		ret = -ENOMEM;
	/*
	 * A segment goes only once the next one holds a durable record: its
	 * header and name are then durable too (a roll leaves them to the next
	 * sync), and it can be the log's first after a crash.
	 */
	for (size_t i = 0; !ret && i + 1 < n && segs[i + 1] <= keep_from && segs[i + 1] <= log->durable &&
			   segs[i] != log->seg_first && log->older_bytes + log->size > budget;
	     i++) {
		char name[32];
		struct stat st;

		seg_name(name, sizeof(name), segs[i]);
		if (fstatat(log->dirfd, name, &st, 0) < 0) {
			ret = -errno;
			break;
		}
		removed += (uint64_t)st.st_size;
		log->older_bytes -= (uint64_t)st.st_size;
		log->first_seq = segs[i + 1];
		sizes[gone] = (uint64_t)st.st_size;
		segs[gone++] = segs[i];
	}
	pthread_mutex_unlock(&log->mu);
	for (size_t i = 0; i < gone; i++) {
		char name[32];

		seg_name(name, sizeof(name), segs[i]);
		if (unlinkat(log->dirfd, name, 0) < 0) {
			/* this one and those after it stay: count them again */
			ret = -errno;
			pthread_mutex_lock(&log->mu);
			log->first_seq = segs[i];
			for (size_t j = i; j < gone; j++) {
				log->older_bytes += sizes[j];
				removed -= sizes[j];
			}
			pthread_mutex_unlock(&log->mu);
			break;
		}
	}
	if (gone && fsync(log->dirfd) < 0 && !ret)
		ret = -errno;
	pthread_mutex_unlock(&log->dir_mu);
	free(segs);
	free(sizes);
	if (removed_bytes)
		*removed_bytes = removed;
	return ret;
}

/*
 * The page cache of what a sync made durable is dropped, but for the last
 * UNCACHE_KEEP bytes of the current segment, while no follower streams the
 * log (oplog_readers(): one that lags would read its records from the disk).
 * Records are written once and read again only by followers, by recovery
 * or by `repfs log`, which read from the disk like any cold file.
 * Kept, every logged byte would hold a page until memory pressure evicts it;
 * dropped, its pages go back to the allocator while still warm, and the next
 * appends (and the tree's writes) take them again. On the 2-core bench VM a
 * page the guest has not touched lately costs 8-12 us at its first touch
 * against 1.4 us for a recently freed one (docs/decisions.md 14); an untar
 * writes every byte twice (log and tree).
 */
#define UNCACHE_KEEP (4u << 20)
#define UNCACHE_STEP (1u << 20)	/* dropped in steps of at least this: an fsync loop drops rarely */

void oplog_readers(struct oplog *log, int delta)
{
	__atomic_add_fetch(&log->readers, delta, __ATOMIC_RELAXED);
}

/* fd is the segment seg_first, made durable up to size; mu not held, called by the syncing thread. */
static void uncache(struct oplog *log, int fd, uint64_t seg_first, uint64_t size, uint64_t from)
{
	uint64_t to = size > UNCACHE_KEEP ? (size - UNCACHE_KEEP) & ~(uint64_t)4095 : 0;

	if (to < from + UNCACHE_STEP || __atomic_load_n(&log->readers, __ATOMIC_RELAXED))
		return;
	/* from 0: also the pages a lagging reader brought back since */
	if (posix_fadvise(fd, 0, (off_t)to, POSIX_FADV_DONTNEED) != 0)
		return;	/* a hint: nothing depends on it */
	pthread_mutex_lock(&log->mu);
	if (log->seg_first == seg_first)
		log->uncached_to = to;
	pthread_mutex_unlock(&log->mu);
}

int oplog_sync(struct oplog *log, uint64_t seq)
{
	int ret = 0, tries = 0;

	pthread_mutex_lock(&log->mu);
	for (;;) {
		uint64_t target, seg_first, size, uncached_to;
		int fd, npend, pend[8], dirsync;

		if (log->failed) {
			ret = -EIO;
			break;
		}
		if (log->durable >= seq || log->durable >= log->last.seq)
			break;
		if (log->syncing) {
			pthread_cond_wait(&log->synced, &log->mu);
			continue;
		}
		/*
		 * Its own descriptor: a roll may move the segment's to the pending
		 * list meanwhile. Failing to get one (EMFILE) is not a failed
		 * fdatasync: nothing is known lost; tried again for a second, then
		 * left to the next sync.
		 */
		fd = dup(log->fd);
		if (fd < 0) {
			ret = -errno;
			if ((ret == -EMFILE || ret == -ENFILE) && tries++ < 50) {
				pthread_mutex_unlock(&log->mu);
				usleep(20000);
				pthread_mutex_lock(&log->mu);
				ret = 0;
				continue;
			}
			break;
		}
		log->syncing = 1;
		target = log->last.seq;
		seg_first = log->seg_first;
		size = log->size;
		uncached_to = log->uncached_to;
		dirsync = log->dir_unsynced;
		log->dir_unsynced = 0;
		npend = log->npending;
		memcpy(pend, log->pending, sizeof(pend));
		log->npending = 0;
		ret = take_fault(&log->fault_sync, log->fault_sync_err);
		pthread_mutex_unlock(&log->mu);
		/* segments closed since the last sync first, then the current one */
		for (int i = 0; i < npend; i++) {
			if (!ret && fdatasync(pend[i]) < 0)
				ret = -errno;
			if (!ret && !__atomic_load_n(&log->readers, __ATOMIC_RELAXED))
				posix_fadvise(pend[i], 0, 0, POSIX_FADV_DONTNEED);	/* closed: all of it (uncache()) */
			close(pend[i]);
		}
		if (!ret && fdatasync(fd) < 0)
			ret = -errno;
		if (!ret)
			uncache(log, fd, seg_first, size, uncached_to);
		if (!ret && dirsync && fsync(log->dirfd) < 0)	/* the names of segments made since */
			ret = -errno;
		close(fd);
		pthread_mutex_lock(&log->mu);
		log->syncing = 0;
		if (ret) {
			/* after a failed fdatasync the page cache state is unknown */
			log->failed = -ret;
			ret = -EIO;
		} else if (target > log->durable) {
			log->durable = target < log->last.seq ? target : log->last.seq;
		}
		pthread_cond_broadcast(&log->synced);
		if (ret)
			break;
	}
	pthread_mutex_unlock(&log->mu);
	return ret;
}

/* ---- reader ---- */

struct oplog_reader {
	int dirfd;
	const struct key *key;
	uint64_t *segs;
	size_t nseg, cur;	/* index into segs of the open segment */
	int fd;
	uint64_t from;
	uint64_t off, fsize;
	uint64_t expect;	/* seq of the next record */
	uint64_t epoch;
	uint8_t prev[CRYPTO_MAC_BYTES];
	uint8_t *buf;
	size_t buflen, bufcap;
	char segname[32];
	int opened;		/* a segment was opened before (chain across segments) */
	int trust;		/* skip MAC checks (oplog_reader_trust) */
	uint64_t base;		/* the current segment's position in the log's byte history */
};

static int reader_open_seg(struct oplog_reader *rd, size_t i)
{
	uint64_t first;
	struct stat st;
	int ret;

	if (rd->fd >= 0)
		close(rd->fd);
	rd->cur = i;
	seg_name(rd->segname, sizeof(rd->segname), rd->segs[i]);
	rd->fd = openat(rd->dirfd, rd->segname, O_RDONLY | O_CLOEXEC);
	if (rd->fd < 0)
		return -errno;
	{
		uint8_t prev[CRYPTO_MAC_BYTES];
		ret = read_seg_header(rd->fd, &first, prev, &rd->base);
		if (ret)
			return ret;
		/* a segment continues the chain exactly where the one before ended */
		if (rd->opened && mac_equal(prev, rd->prev) != 0)
			return -EBADMSG;
		memcpy(rd->prev, prev, CRYPTO_MAC_BYTES);
	}
	if (first != rd->segs[i])
		return -EBADMSG;
	if (rd->opened && first != rd->expect)
		return -EBADMSG;	/* a segment is missing or misnamed */
	rd->opened = 1;
	rd->expect = first;
	if (fstat(rd->fd, &st) < 0)
		return -errno;
	rd->fsize = (uint64_t)st.st_size;
	rd->off = SEG_HEADER_BYTES;
	return 0;
}

int oplog_reader_open(struct oplog_reader **out, int dirfd, const struct key *k, uint64_t from)
{
	struct oplog_reader *rd;
	size_t start = 0;
	int ret;

	*out = NULL;
	rd = calloc(1, sizeof(*rd));
	if (!rd)
		return -ENOMEM;
	rd->dirfd = dirfd;
	rd->key = k;
	rd->fd = -1;
	rd->from = from ? from : 1;
	ret = list_segments(dirfd, &rd->segs, &rd->nseg);
	if (ret)
		goto fail;
	if (rd->nseg == 0) {
		ret = -ENOENT;
		goto fail;
	}
	for (size_t i = 0; i < rd->nseg; i++)
		if (rd->segs[i] <= rd->from)
			start = i;
	ret = reader_open_seg(rd, start);
	if (ret)
		goto fail;
	*out = rd;
	return 0;
fail:
	oplog_reader_free(rd);
	return ret;
}

/* Reads bytes [from, to) of the record at rd->off into rd->buf (keeping what is before). */
static int reader_fill(struct oplog_reader *rd, size_t from, size_t to)
{
	if (to > rd->bufcap) {
		uint8_t *nb = realloc(rd->buf, to);
		if (!nb)
			return -ENOMEM;
		rd->buf = nb;
		rd->bufcap = to;
	}
	return pread_all(rd->fd, rd->buf + from, to - from, rd->off + from);
}

/*
 * The reader is at the end of the last segment it knows of: lists the
 * segments again, so that a reader following a live log moves on when the log
 * rolls over instead of being reopened (which reads its segment from the start).
 */
static void reader_relist(struct oplog_reader *rd)
{
	uint64_t *segs;
	size_t n;

	if (list_segments(rd->dirfd, &segs, &n))
		return;
	for (size_t j = 0; j < n; j++) {
		if (segs[j] == rd->segs[rd->cur]) {
			free(rd->segs);
			rd->segs = segs;
			rd->nseg = n;
			rd->cur = j;
			return;
		}
	}
	free(segs);	/* our segment is gone (trimmed): leave it to the caller */
}

int oplog_reader_next(struct oplog_reader *rd, struct record *r)
{
	size_t head;
	uint32_t len;
	int ret, fresh = 0;	/* fresh: fsize and the segment list were read in this call */

	for (;;) {
		struct stat st;

		if (rd->off + 4 > rd->fsize && fstat(rd->fd, &st) == 0) {
			rd->fsize = (uint64_t)st.st_size;	/* a live log grows */
			fresh = 1;
		}
		if (rd->off + 4 > rd->fsize) {
			if (rd->cur + 1 >= rd->nseg && fresh != 2) {
				reader_relist(rd);
				fresh = 2;
			}
			if (rd->off != rd->fsize && rd->cur + 1 < rd->nseg)
				return -EBADMSG;	/* garbage at the end of a closed segment */
			if (rd->cur + 1 >= rd->nseg)
				return 0;
			ret = reader_open_seg(rd, rd->cur + 1);
			if (ret)
				return ret;
			continue;
		}
		/* header and body first (or what there is of them), then the rest */
		head = rd->fsize - rd->off < REC_HEADER_BYTES + REC_BODY_BYTES ? (size_t)(rd->fsize - rd->off)
									       : REC_HEADER_BYTES + REC_BODY_BYTES;
		ret = reader_fill(rd, 0, head);
		if (ret)
			return ret == -ENODATA ? 0 : ret;
		len = record_peek_len(rd->buf, head);
		if (!len)
			return -EBADMSG;
		if (head == REC_HEADER_BYTES + REC_BODY_BYTES && record_implied_len(rd->buf, head) != len)
			return -EBADMSG;	/* a damaged length, not a torn tail */
		if (rd->off + len > rd->fsize) {
			if (rd->cur + 1 < rd->nseg)
				return -EBADMSG;
			if (!fresh && fstat(rd->fd, &st) == 0) {
				/* fsize was taken while this record was being written */
				rd->fsize = (uint64_t)st.st_size;
				fresh = 1;
				continue;
			}
			return 0;	/* still being written, or torn */
		}
		ret = reader_fill(rd, head, len);
		if (ret)
			return ret == -ENODATA ? 0 : ret;
		rd->buflen = len;
		if (record_decode(rd->buf, len, r) || (!rd->trust && record_verify(rd->key, rd->prev, rd->buf, len)) ||
		    r->seq != rd->expect || r->epoch < rd->epoch)
			return -EBADMSG;
		memcpy(rd->prev, record_mac_of(rd->buf, len), CRYPTO_MAC_BYTES);
		rd->off += len;
		rd->expect++;
		rd->epoch = r->epoch;
		if (r->seq >= rd->from)
			return 1;
	}
}

void oplog_reader_where(struct oplog_reader *rd, uint64_t *seq, char *seg, size_t seglen,
			uint64_t *offset)
{
	if (seq)
		*seq = rd->expect;
	if (seg)
		snprintf(seg, seglen, "%s", rd->segname);
	if (offset)
		*offset = rd->off;
}

void oplog_reader_trust(struct oplog_reader *rd)
{
	rd->trust = 1;
}

uint64_t oplog_reader_pos(struct oplog_reader *rd)
{
	return rd->base + rd->off;
}

const uint8_t *oplog_reader_raw(struct oplog_reader *rd, size_t *len)
{
	*len = rd->buflen;
	return rd->buf;
}

void oplog_reader_free(struct oplog_reader *rd)
{
	if (!rd)
		return;
	if (rd->fd >= 0)
		close(rd->fd);
	free(rd->segs);
	free(rd->buf);
	free(rd);
}
