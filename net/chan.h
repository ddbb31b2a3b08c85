/* chan.h -- the secure channel between two nodes that hold the cluster key
 *
 * A channel runs over a connected stream socket (TCP or AF_UNIX). The
 * handshake (docs/protocol.md) proves to each side that the other holds the
 * cluster key and derives fresh session keys: ephemeral X25519 (crypto_kx)
 * mixed with a PSK derived from the cluster key, in the spirit of Noise
 * NNpsk0. After it, each direction is one crypto_secretstream_xchacha20poly1305
 * stream and every message is one encrypted frame (net/frame.h): a changed,
 * dropped, repeated, reordered or replayed frame fails to decrypt, and a
 * stream that ends without its FINAL message was cut short.
 *
 * Invariants:
 *  - Nothing is delivered that did not come, in order, from the peer's
 *    chan_send() calls in this very session.
 *  - A failure of authentication or framing is fatal: the channel shuts the
 *    socket down (both directions) and every later call returns the first
 *    error. Only -ETIMEDOUT from chan_recv(), -EMSGSIZE/-EINVAL from
 *    chan_send() and -ENOMEM before anything was sent leave it usable.
 *  - Key material lives in lib/crypto.c (sodium_malloc'd, wiped after use);
 *    no error or log line carries any of it.
 *
 * Ownership: the caller owns fd before, during and after the channel: it
 * closes fd itself, after chan_free(). The channel only reads, writes and
 * shuts it down; it sets TCP_NODELAY where that applies.
 *
 * Threads: one thread may be in chan_recv() while others call chan_send() or
 * chan_close() (senders are serialised by a lock inside). At most one thread
 * receives at a time. chan_free() only once no call is in progress.
 *
 * All functions return 0 (chan_recv: 1 or 0) or a negative errno:
 *   -EKEYREJECTED     the peer failed to prove the cluster key, or refused
 *                     ours (a wrong key on either side, or a tampered handshake)
 *   -EPROTONOSUPPORT  the peer speaks another protocol version
 *   -EPROTO           the peer broke the handshake protocol (not a repfs
 *                     peer, a reflected or mangled handshake)
 *   -EBADMSG          after the handshake: a frame failed to decode or to
 *                     authenticate (corruption or tampering)
 *   -ECONNRESET       the peer's stream ended without its FINAL message
 *                     (crash, reset, or truncation)
 *   -ETIMEDOUT        nothing (or not enough) arrived in time
 *   -EPIPE etc.       socket errors, as the kernel reports them
 */
#ifndef REPFS_CHAN_H
#define REPFS_CHAN_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define CHAN_VERSION 1 /* wire protocol version, in the handshake transcript */
/* Largest message chan_send() takes: a frame minus the type byte, encryption overhead and slack. */
#define CHAN_MAX_PAYLOAD (FRAME_MAX_PAYLOAD - 64)
/* chan_queue() writes the queue once it holds this many bytes */
#define CHAN_QUEUE_BYTES (256u << 10)

struct chan; /* opaque */
struct key;

/*
 * Runs the handshake on fd as the initiator (the side that connected) or the
 * responder, within timeout_ms in all (-1: no limit). On success *out is a
 * ready channel, yours to chan_free(); both sides then know the peer holds k.
 * On failure *out is NULL, nothing encrypted was exchanged, and the peer was
 * told why where possible (a wrong key: both sides return -EKEYREJECTED).
 * The send timeout starts as timeout_ms (see chan_set_send_timeout()).
 */
int chan_handshake(struct chan **out, int fd, const struct key *k, int initiator, int timeout_ms);

/*
 * Sends one message: an application type (any byte, meaning up to the
 * caller) and len bytes (0 ..  CHAN_MAX_PAYLOAD). Returns once the whole
 * frame is in the socket's buffer. -EMSGSIZE if too long (channel intact),
 * -EPIPE after chan_close(), -ETIMEDOUT if the socket accepted nothing for
 * the send timeout (fatal: a frame may be half written), or the channel's
 * error.
 */
int chan_send(struct chan *c, uint8_t type, const void *buf, size_t len);

/*
 * Like chan_send(), but the sealed frame may wait in the channel until
 * chan_flush() (or a chan_send() or chan_close(), which flush too), or until
 * CHAN_QUEUE_BYTES are queued, so that a burst of messages costs one write.
 * Messages keep their order. The same errors as chan_send(); a failed write
 * of queued frames is fatal.
 */
int chan_queue(struct chan *c, uint8_t type, const void *buf, size_t len);

/* Writes whatever chan_queue() left queued. 0, or the channel's (fatal) error. */
int chan_flush(struct chan *c);

/*
 * Receives the next message, waiting up to timeout_ms (-1: no limit, 0: only
 * what has arrived). Returns
 *    1  *type, *buf, *len describe it; *buf belongs to the channel and
 *       stays valid (and writable) until the next chan_recv() or chan_free()
 *    0  the peer closed its stream cleanly (chan_close()); so will every
 *       later call
 *   -ETIMEDOUT  nothing whole arrived in time; a partial frame is kept, and
 *       the channel stays usable
 *   or a fatal error (see the top of this file).
 */
int chan_recv(struct chan *c, uint8_t *type, void **buf, size_t *len, int timeout_ms);

/*
 * Ends our direction cleanly: sends the FINAL message, then shuts the
 * socket down for writing. The peer's chan_recv() then returns 0; we can
 * still receive. A second call is a no-op.
 */
int chan_close(struct chan *c);

/*
 * How long chan_send()/chan_close() wait for the socket to accept more bytes
 * when it is full (per stall, not per message); -1: forever.
 */
void chan_set_send_timeout(struct chan *c, int timeout_ms);

int chan_fd(const struct chan *c);

/*
 * 1 if bytes already read from the socket wait in the channel, so that
 * chan_recv(c, ..., 0) may return a message although poll() on chan_fd()
 * would not wake; 0 otherwise. For the receiving thread.
 */
int chan_buffered(const struct chan *c);

/* Wipes and frees c. Sends nothing and leaves fd open. NULL is a no-op. */
void chan_free(struct chan *c);

/*
 * A one-line, lower-case description of a channel error for logs and status
 * ("peer does not hold the cluster key"); never contains key material.
 */
const char *chan_strerror(int err);

#endif
