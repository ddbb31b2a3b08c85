/* frame.c -- wire frames: header encoding and the incremental decoder */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * Decoder states: reading the header (hdr_have < FRAME_HDR_BYTES), reading the
 * payload (have < len), or holding a frame just returned (done), which the
 * next call forgets before reading on. err, once set, never clears.
 */
struct frame_dec {
	uint32_t max;
	uint8_t hdr[FRAME_HDR_BYTES];
	uint8_t hdr_have;
	uint8_t type;
	uint32_t len;  /* payload length of the current frame, once the header is in */
	uint32_t have; /* payload bytes of it so far */
	uint8_t *buf;  /* cap bytes */
	uint32_t cap;
	int done;
	int err;
};

static const char *const type_names[] = {
    [FRAME_HELLO] = "hello",   [FRAME_REPLY] = "reply",	  [FRAME_CONFIRM] = "confirm",
    [FRAME_REJECT] = "reject", [FRAME_STREAM] = "stream", [FRAME_SEALED] = "sealed",
};

const char *frame_type_name(unsigned type)
{
	if (type == 0 || type > FRAME_TYPE_MAX)
		return "?";
	return type_names[type];
}

static uint32_t clamp_max(uint32_t max)
{
	return max == 0 || max > FRAME_MAX_PAYLOAD ? FRAME_MAX_PAYLOAD : max;
}

int frame_put_header(uint8_t hdr[FRAME_HDR_BYTES], uint8_t type, size_t len)
{
	if (type == 0 || type > FRAME_TYPE_MAX)
		return -EINVAL;
	if (len > FRAME_MAX_PAYLOAD)
		return -EMSGSIZE;
	for (int i = 0; i < 4; i++)
		hdr[i] = (uint8_t)(len >> (8 * i));
	hdr[4] = type;
	return 0;
}

int frame_get_header(const uint8_t hdr[FRAME_HDR_BYTES], uint32_t max, uint8_t *type, uint32_t *len)
{
	uint32_t n =
	    (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;

	if (hdr[4] == 0 || hdr[4] > FRAME_TYPE_MAX || n > clamp_max(max))
		return -EBADMSG;
	*type = hdr[4];
	*len = n;
	return 0;
}

int frame_encode(void *out, size_t cap, uint8_t type, const void *payload, size_t len, size_t *outlen)
{
	int ret = frame_put_header(out, type, len);

	if (ret)
		return ret;
	if (cap < FRAME_HDR_BYTES || cap - FRAME_HDR_BYTES < len)
		return -ENOSPC;
	if (len)
		memcpy((uint8_t *)out + FRAME_HDR_BYTES, payload, len);
	*outlen = FRAME_HDR_BYTES + len;
	return 0;
}

int frame_dec_new(struct frame_dec **out, uint32_t max)
{
	struct frame_dec *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (!d)
		return -ENOMEM;
	d->max = clamp_max(max);
	*out = d;
	return 0;
}

void frame_dec_free(struct frame_dec *d)
{
	if (!d)
		return;
	free(d->buf);
	free(d);
}

void frame_dec_set_max(struct frame_dec *d, uint32_t max)
{
	d->max = clamp_max(max);
}

int frame_dec_idle(const struct frame_dec *d)
{
	return d->done || d->hdr_have == 0;
}

/* Makes room for the payload of the frame whose header was just read. */
static int reserve(struct frame_dec *d)
{
	uint8_t *p;

	if (d->len <= d->cap)
		return 0;
	p = malloc(d->len); /* the old contents are dead: no realloc copy */
	if (!p)
		return -ENOMEM;
	free(d->buf);
	d->buf = p;
	d->cap = d->len;
	return 0;
}

/* Moves n bytes of input to dst + off (no pointer arithmetic on NULL when n is 0). */
static void take(uint8_t *dst, size_t off, const uint8_t **data, size_t *len, size_t n)
{
	if (!n)
		return;
	memcpy(dst + off, *data, n);
	*data += n;
	*len -= n;
}

int frame_dec_feed(struct frame_dec *d, const uint8_t **data, size_t *len, struct frame *f)
{
	size_t n;

	if (d->err)
		return d->err;
	if (d->done) {
		d->done = 0;
		d->hdr_have = 0;
		d->have = 0;
	}
	if (d->hdr_have < FRAME_HDR_BYTES) {
		n = FRAME_HDR_BYTES - d->hdr_have;
		if (n > *len)
			n = *len;
		take(d->hdr, d->hdr_have, data, len, n);
		d->hdr_have += (uint8_t)n;
		if (d->hdr_have < FRAME_HDR_BYTES)
			return 0;
		d->err = frame_get_header(d->hdr, d->max, &d->type, &d->len);
		if (!d->err)
			d->err = reserve(d);
		if (d->err)
			return d->err;
	}
	n = d->len - d->have;
	if (n > *len)
		n = *len;
	take(d->buf, d->have, data, len, n);
	d->have += (uint32_t)n;
	if (d->have < d->len)
		return 0;
	f->type = d->type;
	f->len = d->len;
	f->payload = d->len ? d->buf : NULL;
	d->done = 1;
	return 1;
}
