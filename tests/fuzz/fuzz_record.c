/* fuzz_record.c -- libFuzzer target for the log record decoder (replication/record.c)
 *
 * record_decode() must never read outside the buffer it is given, and must
 * refuse or accept consistently: whatever it accepts has its strings and data
 * inside the buffer, NUL-terminated where promised, and lays out again
 * (record_layout) to the very same bytes. The first input byte chooses the
 * mode: even, the rest is decoded as is; odd, the lengths in the header and
 * body are first made consistent with the input and the type valid, so the
 * fuzzer spends its time in the string checks and the round trip rather than
 * on the length sum.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -std=gnu11 \
 *         tests/fuzz/fuzz_record.c replication/record.c lib/crypto.c -lsodium -o fuzz_record
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../replication/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * Makes the lengths add up (path, path2 and name lengths from their own bytes,
 * mod a small bound; data the rest) and the type valid.
 */
static void fix_lengths(uint8_t *buf, size_t len)
{
	const size_t fixed = REC_HEADER_BYTES + REC_BODY_BYTES + CRYPTO_MAC_BYTES;
	uint8_t *b = buf + REC_HEADER_BYTES;
	size_t room, lp, lp2, ln;

	if (len < fixed + 3)
		return;
	room = len - fixed;
	lp = 1 + get32(b + 96) % 64;
	lp2 = 1 + get32(b + 100) % 64;
	ln = 1 + get32(b + 104) % 16;
	if (lp + lp2 + ln > room)
		lp = lp2 = ln = 1;
	put32(buf, (uint32_t)len);
	buf[4] = (uint8_t)(1 + buf[4] % REC_TYPE_MAX);
	buf[5] = 0;
	put32(buf + 32, REC_BODY_BYTES);
	put32(b + 96, (uint32_t)lp);
	put32(b + 100, (uint32_t)lp2);
	put32(b + 104, (uint32_t)ln);
	put32(b + 108, (uint32_t)(room - lp - lp2 - ln));
	/* terminate the strings now and then; the fuzzer decides the rest */
	if (b[0] & 1) {
		uint8_t *t = b + REC_BODY_BYTES;
		t[lp - 1] = t[lp + lp2 - 1] = t[lp + lp2 + ln - 1] = 0;
	}
}

static int in(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *q = p;
	return q >= buf && q <= buf + len && n <= (size_t)(buf + len - q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t hdr[REC_HEADER_BYTES + REC_BODY_BYTES];
	struct iovec iov[4];
	struct record r;
	uint32_t total;
	uint8_t *buf;
	size_t len;
	int ret;

	if (size < 1)
		return 0;
	len = size - 1;
	buf = malloc(len ? len : 1); /* exactly sized: ASan sees any overread */
	check(buf != NULL);
	if (len)
		memcpy(buf, data + 1, len);
	if (data[0] & 1)
		fix_lengths(buf, len);

	(void)record_peek_len(buf, len);
	ret = record_decode(buf, len, &r);
	if (ret == 0) {
		size_t lp = strlen(r.path) + 1, lp2 = strlen(r.path2) + 1, ln = strlen(r.name) + 1;

		check(r.type >= 1 && r.type <= REC_TYPE_MAX);
		check(strcmp(record_type_name(r.type), "?") != 0);
		check(in(r.path, lp, buf, len) && in(r.path2, lp2, buf, len) && in(r.name, ln, buf, len));
		check(r.data_len == 0 ? r.data == NULL : in(r.data, r.data_len, buf, len));
		check(record_mac_of(buf, len) == buf + len - CRYPTO_MAC_BYTES);
		/* lay it out again: the same bytes, but for the reserved word */
		if (record_layout(&r, hdr, iov, &total) == 4) {
			check(total == len);
			check(memcmp(hdr, buf, 36) == 0);
			check(memcmp(hdr + 40, buf + 40, sizeof(hdr) - 40) == 0);
			size_t off = sizeof(hdr);
			for (int i = 1; i < 4; i++) {
				check(memcmp(iov[i].iov_base, buf + off, iov[i].iov_len) == 0);
				off += iov[i].iov_len;
			}
			check(off + r.data_len + CRYPTO_MAC_BYTES == len);
			if (r.data_len)
				check(memcmp(r.data, buf + off, r.data_len) == 0);
		}
	} else {
		check(ret == -EBADMSG);
	}
	free(buf);
	return 0;
}
