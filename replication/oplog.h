/* oplog.h -- the append-only, authenticated operation log
 *
 * The log is a directory of segment files named by the seq of their first
 * record (%016llx.seg). A segment starts with a 64-byte header (magic, first
 * seq, the MAC of the record before it) followed by whole records.
 *
 * Invariants:
 *   - seq increases by exactly one per record, across segments and epochs;
 *     epoch never decreases.
 *   - each record's MAC covers the previous record's MAC, so a flipped bit,
 *     a dropped, reordered, replayed or forged record breaks the chain.
 *   - durable <= last: records up to durable have been fdatasync'd.
 *   - oplog_open() cuts a torn tail (a record running past the end of the last
 *     segment, or a last record that fails its MAC) back to the last whole
 *     record; damage followed by more data is corruption and is refused.
 *
 * Appends come from one thread at a time (the node's sequencer lock); syncs
 * and readers may run concurrently with them. All functions return 0 or a
 * negative errno (-EBADMSG: the chain is broken).
 */
#ifndef REPFS_OPLOG_H
#define REPFS_OPLOG_H

#include <stdint.h>

#include "record.h"

struct oplog;

#define OPLOG_SEGMENT_BYTES (64u << 20)

/*
 * Opens (creating if empty) the log in directory dirfd. The log keeps its own
 * reference to k, which must outlive it. If a torn tail was cut, *cut_bytes says
 * how much (may be NULL). On -EBADMSG, *bad (may be NULL) names the position.
 */
int oplog_open(struct oplog **out, int dirfd, const struct key *k, uint64_t *cut_bytes,
	       struct pos *bad);
/*
 * The same, where every record up to keep_seq is known durable (a node's
 * checkpoint): a segment that starts at or below it is never dropped as the
 * remains of a crash; -EBADMSG instead (damage).
 */
int oplog_open_above(struct oplog **out, int dirfd, const struct key *k, uint64_t keep_seq, uint64_t *cut_bytes,
		     struct pos *bad);
void oplog_free(struct oplog *log);	/* NULL is a no-op; does not sync */

/* Position and MAC of the last record ({0,0} and zeros when empty). */
struct pos oplog_last(struct oplog *log);
void oplog_last_mac(struct oplog *log, uint8_t mac[CRYPTO_MAC_BYTES]);
uint64_t oplog_durable(struct oplog *log);
uint64_t oplog_first_seq(struct oplog *log);	/* oldest seq still held */
uint64_t oplog_bytes(struct oplog *log);	/* bytes held in all segments */

/*
 * What `repfs status` shows of the log, taken under its lock if that comes
 * free within wait_ms. An append that the disk does not finish (a frozen or
 * failing file system) holds the lock: the figures are then read without it,
 * and may be a record behind or from either side of one; returns 1 then.
 */
struct oplog_peek {
	struct pos last;
	uint64_t durable, end_pos, bytes;
	int failed;
};
int oplog_peek(struct oplog *log, struct oplog_peek *p, long wait_ms);

/*
 * Appends r, setting r->seq to last + 1 (r->epoch is the caller's and must not
 * be below the last record's). Written to the segment, not yet durable. On
 * failure nothing of the record remains.
 */
int oplog_append(struct oplog *log, struct record *r);

/*
 * Appends a record encoded elsewhere (a follower receiving the leader's log):
 * it must decode, carry a valid MAC chained on the last record, and be the
 * next seq of an epoch not below the last one; -EBADMSG otherwise (nothing is
 * written). On success *r (may be NULL) is decoded and points into buf.
 */
int oplog_append_raw(struct oplog *log, const uint8_t *buf, size_t len, struct record *r);

/*
 * The same for k records in a row (at most OPLOG_BATCH_MAX), written with one
 * pwritev per segment: a follower appending a burst. Each is checked against
 * the one before it. *done says how many were appended (outs[0..done-1] are
 * decoded, outs may be NULL); if one fails its checks, those before it are
 * appended and -EBADMSG is returned; a failed write leaves none of the
 * records of that write.
 */
#define OPLOG_BATCH_MAX 256
int oplog_append_raw_many(struct oplog *log, const uint8_t *const bufs[], const size_t lens[], int k,
			  struct record outs[], int *done);

/* Removes the last record again (its operation failed); only once per append. */
int oplog_undo_last(struct oplog *log);

/*
 * A point in the log to come back to: oplog_undo_to() removes every record
 * appended after oplog_mark() took it (one write logged as several records,
 * one of which failed to apply). Only within one segment: -EXDEV once the
 * log has moved on to another. oplog_make_room() first rolls over to a new
 * segment unless the current one can take bytes more (-EFBIG if no segment can).
 */
struct oplog_mark {
	uint64_t seg_first, size;
	struct pos last;
	uint8_t mac[CRYPTO_MAC_BYTES];
};
void oplog_mark(struct oplog *log, struct oplog_mark *m);
int oplog_undo_to(struct oplog *log, const struct oplog_mark *m);
int oplog_make_room(struct oplog *log, uint64_t bytes);

/*
 * Returns once every record up to seq is durable (group commit: one fdatasync
 * serves every waiter). After an fdatasync failure the log is failed for good
 * and every later append or sync returns -EIO.
 */
int oplog_sync(struct oplog *log, uint64_t seq);
/*
 * A sync drops the page cache of what it made durable but the last 4 MiB,
 * while no follower streams the log (delta +1 when one starts, -1 when it
 * stops): a follower that lags reads what it needs from the cache.
 */
void oplog_readers(struct oplog *log, int delta);

/*
 * Cuts the log back to end at seq (a diverged node rejoining: what follows
 * seq is another history). -ERANGE if the log no longer holds seq.
 */
int oplog_rewind(struct oplog *log, uint64_t seq);

/*
 * Starts the log over, empty, as if its last record were at (with MAC mac):
 * a follower that took a snapshot of the leader's tree at that position
 * continues the chain from there. Every old segment is removed.
 */
int oplog_reset(struct oplog *log, struct pos at, const uint8_t mac[CRYPTO_MAC_BYTES]);

/*
 * While the log holds more than budget bytes, deletes its oldest segment if
 * that holds only records below keep_from (never the current one).
 * *removed_bytes (may be NULL) says how much went.
 */
int oplog_trim(struct oplog *log, uint64_t keep_from, uint64_t budget, uint64_t *removed_bytes);

/* Nonzero errno if the log has failed (a write or sync error it cannot undo). */
int oplog_failed(struct oplog *log);

/* Test hook: the nth write (or fdatasync) from now fails with err. 0 disables. */
enum oplog_fault { OPLOG_FAULT_WRITE, OPLOG_FAULT_SYNC };
void oplog_inject_fault(struct oplog *log, enum oplog_fault what, unsigned nth, int err);

/* Sequential reader over a log directory; checks every MAC and the chain. */
struct oplog_reader;

/* Starts at the first record whose seq >= from (1 for the beginning). */
int oplog_reader_open(struct oplog_reader **out, int dirfd, const struct key *k, uint64_t from);
/*
 * 1 and *r filled (valid until the next call), 0 at the end, -EBADMSG if a
 * record is damaged or out of chain (oplog_reader_where() names it), other
 * -errno on I/O errors. A record still being written at the end reads as the end.
 */
int oplog_reader_next(struct oplog_reader *rd, struct record *r);
/*
 * Skips checking MACs (the structure is still checked): for a leader shipping
 * its own log to followers, who check every record themselves.
 */
void oplog_reader_trust(struct oplog_reader *rd);
/* Position (expected seq) and segment file of the last error or record. */
void oplog_reader_where(struct oplog_reader *rd, uint64_t *seq, char *seg, size_t seglen,
			uint64_t *offset);
/*
 * Byte position after the record last returned, in the log's byte history
 * (as oplog_peek()'s end_pos): every segment header records where it starts
 * in it, so positions survive trimming and restarts.
 */
uint64_t oplog_reader_pos(struct oplog_reader *rd);
/* The encoded bytes of the record last returned. */
const uint8_t *oplog_reader_raw(struct oplog_reader *rd, size_t *len);
void oplog_reader_free(struct oplog_reader *rd);

#endif
