/* frame.h -- the transport's wire frames: length, type, payload over a byte stream
 *
 * A frame is
 *
 *   len   u32 little endian   payload length in bytes, at most the decoder's
 *                             limit (never more than FRAME_MAX_PAYLOAD)
 *   type  u8                  one of enum frame_type
 *   payload len bytes
 *
 * Everything here is pure: no I/O, no globals, no key material. The decoder is
 * incremental: feed it whatever a read returned, in chunks of any size, and it
 * yields whole frames one at a time. A bad length or type is reported once as
 * -EBADMSG and the decoder stays failed ("sticky"): a byte stream that lost
 * its framing cannot be trusted to find it again.
 *
 * The frame layer authenticates nothing; net/chan.c encrypts and authenticates
 * the payload of every frame after the handshake (docs/protocol.md).
 */
#ifndef REPFS_FRAME_H
#define REPFS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR_BYTES	  5
#define FRAME_MAX_PAYLOAD (2u << 20) /* 2 MiB: a 1 MiB log record with ample headroom */
#define FRAME_MAX_BYTES	  (FRAME_HDR_BYTES + FRAME_MAX_PAYLOAD)

enum frame_type {
	FRAME_HELLO = 1,   /* handshake 1, initiator -> responder, clear */
	FRAME_REPLY = 2,   /* handshake 2, responder -> initiator, clear */
	FRAME_CONFIRM = 3, /* handshake 3, initiator -> responder, clear */
	FRAME_REJECT = 4,  /* during the handshake: why the sender refused, clear */
	FRAME_STREAM = 5,  /* a secretstream header: first frame of a direction once accepted */
	FRAME_SEALED = 6,  /* one secretstream message: an encrypted (type, payload) */
	FRAME_TYPE_MAX = 6,
};

/* Name of a frame type for people ("hello", "sealed", ...); "?" if unknown. */
const char *frame_type_name(unsigned type);

/*
 * Writes the header of a frame of type carrying len payload bytes.
 * -EINVAL for a type outside 1..FRAME_TYPE_MAX, -EMSGSIZE if len > FRAME_MAX_PAYLOAD.
 */
int frame_put_header(uint8_t hdr[FRAME_HDR_BYTES], uint8_t type, size_t len);

/*
 * Parses a header, accepting payloads up to max bytes (capped at
 * FRAME_MAX_PAYLOAD). -EBADMSG for a bad type or a length above max.
 */
int frame_get_header(const uint8_t hdr[FRAME_HDR_BYTES], uint32_t max, uint8_t *type, uint32_t *len);

/*
 * Encodes a whole frame into out[0..cap) and sets *outlen to its size
 * (FRAME_HDR_BYTES + len). Errors as frame_put_header(), and -ENOSPC if it
 * does not fit; out is then unspecified.
 */
int frame_encode(void *out, size_t cap, uint8_t type, const void *payload, size_t len, size_t *outlen);

/* A decoded frame. payload points into the decoder: see frame_dec_feed(). */
struct frame {
	uint8_t type;
	uint32_t len;
	uint8_t *payload; /* NULL when len is 0 */
};

struct frame_dec; /* an incremental decoder; opaque */

/*
 * Creates a decoder accepting payloads of at most max bytes (0 or more than
 * FRAME_MAX_PAYLOAD mean FRAME_MAX_PAYLOAD). -ENOMEM.
 */
int frame_dec_new(struct frame_dec **out, uint32_t max);
void frame_dec_free(struct frame_dec *d); /* NULL is a no-op */

/*
 * Changes the limit for frames whose header has not been read yet (the
 * transport raises it once the peer has authenticated). Same rules as _new.
 */
void frame_dec_set_max(struct frame_dec *d, uint32_t max);

/*
 * Consumes bytes from *data (advancing *data and decreasing *len) until one
 * frame is complete or the input is used up. Returns
 *    1  *f holds a frame; bytes after it are left in *data for the next call
 *    0  all input consumed, no whole frame yet (a partial one is kept)
 *   -EBADMSG  a header with a bad type or a length above the limit
 *   -ENOMEM   no memory for the payload
 * Errors are sticky: every later call returns the same error. f->payload
 * stays valid, and may be modified in place, until the next call to
 * frame_dec_feed() or frame_dec_free(); the decoder owns it.
 */
__attribute__((warn_unused_result)) int frame_dec_feed(struct frame_dec *d, const uint8_t **data, size_t *len,
						       struct frame *f);

/* 1 if no partial frame is held (the stream is at a frame boundary), else 0. */
int frame_dec_idle(const struct frame_dec *d);

#endif
