/* fuzz_frame.c -- libFuzzer target for the wire frame decoder (net/frame.c)
 *
 * The first input byte picks the decoder's limit and how the rest is cut
 * into chunks; the rest is the byte stream. Checks, beyond "never crashes":
 * every frame the decoder yields is exactly the bytes it came from, the
 * result does not depend on the chunking, re-encoding a frame reproduces
 * it, and an error is sticky.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=gnu11 \
 *         tests/fuzz/fuzz_frame.c net/frame.c -o fuzz_frame
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../net/frame.h"

#define MAX_FRAMES 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

/*
 * Decodes data[0..size) in chunks (chunk 0: one call with everything;
 * otherwise sizes cycling through 1..chunk), recording where each frame
 * ends. Returns the final status (0 or the error) and the frame count.
 */
static int decode(const uint8_t *data, size_t size, uint32_t max, size_t chunk, size_t *ends, size_t *count)
{
	struct frame_dec *d;
	struct frame f;
	size_t off = 0, step = 1, n = 0;
	int ret = 0;

	check(frame_dec_new(&d, max) == 0);
	while (off < size && ret >= 0) {
		size_t c = chunk ? step : size - off;
		if (c > size - off)
			c = size - off;
		step = step % (chunk ? chunk : 1) + 1;
		const uint8_t *p = data + off;
		size_t left = c;
		while ((ret = frame_dec_feed(d, &p, &left, &f)) == 1) {
			size_t end = (size_t)(p - data);
			uint8_t hdr[FRAME_HDR_BYTES];
			uint8_t type;
			uint32_t len;

			/* the frame is the bytes just before where the decoder stopped */
			check(f.len <= (max ? max : FRAME_MAX_PAYLOAD) && f.len <= FRAME_MAX_PAYLOAD);
			check(end >= FRAME_HDR_BYTES + f.len);
			check(frame_get_header(data + end - f.len - FRAME_HDR_BYTES, max, &type, &len) == 0);
			check(type == f.type && len == f.len);
			check(f.len == 0 ? f.payload == NULL
					 : memcmp(f.payload, data + end - f.len, f.len) == 0);
			check(frame_put_header(hdr, f.type, f.len) == 0);
			check(memcmp(hdr, data + end - f.len - FRAME_HDR_BYTES, FRAME_HDR_BYTES) == 0);
			check(n < MAX_FRAMES);
			ends[n++] = end;
			if (f.len) /* the caller may scribble on the payload */
				memset(f.payload, 0xa5, f.len);
		}
		check(ret == 0 || ret == -EBADMSG);
		if (ret == 0)
			check(left == 0);
		off += c;
	}
	if (ret < 0) { /* sticky */
		const uint8_t *p = data;
		size_t left = size;
		check(frame_dec_feed(d, &p, &left, &f) == ret);
	} else {
		check(frame_dec_idle(d) == (n ? ends[n - 1] == size : size == 0));
	}
	frame_dec_free(d);
	*count = n;
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static size_t ends1[MAX_FRAMES], ends2[MAX_FRAMES];
	static const uint32_t limits[] = {0, 1, 16, 128, 4096, FRAME_MAX_PAYLOAD};
	size_t n1, n2;
	uint32_t max;
	int r1, r2;

	if (size < 1)
		return 0;
	max = limits[data[0] % 6];
	size_t chunk = 1 + data[0] / 6 % 40;
	data++;
	size--;

	r1 = decode(data, size, max, 0, ends1, &n1);
	r2 = decode(data, size, max, chunk, ends2, &n2);
	check(r1 == r2);
	check(n1 == n2);
	check(memcmp(ends1, ends2, n1 * sizeof(ends1[0])) == 0);
	return 0;
}
