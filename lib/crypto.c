/* crypto.c -- the secrets module: key files, key derivation, record MACs */
#include "crypto.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct key {
	uint8_t master[CRYPTO_KEY_BYTES];
	uint8_t logmac[CRYPTO_KEY_BYTES];	/* subkey 1, "repfslog" */
	uint8_t datamac[CRYPTO_KEY_BYTES];	/* subkey 3, "repfsdat" */
};

_Static_assert(sizeof(struct mac_state) >= sizeof(crypto_generichash_state),
	       "mac_state too small for crypto_generichash_state");

int crypto_init(void)
{
	return sodium_init() < 0 ? -EIO : 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int key_generate(const char *path)
{
	uint8_t buf[CRYPTO_KEY_BYTES];
	int fd, ret;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	randombytes_buf(buf, sizeof(buf));
	ret = write_all(fd, buf, sizeof(buf));
	sodium_memzero(buf, sizeof(buf));
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (ret)
		unlink(path);
	return ret;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int key_load(struct key **out, const char *path)
{
	uint8_t raw[129];
	struct key *k = NULL;
	struct stat st;
	ssize_t n;
	int fd, ret = 0;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if (st.st_mode & 077) {
		ret = -EPERM;
		goto out;
	}
	n = read(fd, raw, sizeof(raw));
	if (n < 0) {
		ret = -errno;
		goto out;
	}
	k = sodium_malloc(sizeof(*k));
	if (!k) {
		ret = -ENOMEM;
		goto out;
	}
	if (n == CRYPTO_KEY_BYTES) {
		memcpy(k->master, raw, CRYPTO_KEY_BYTES);
	} else if (n == 64 || (n == 65 && raw[64] == '\n')) {
		for (int i = 0; i < CRYPTO_KEY_BYTES; i++) {
			int hi = hexval(raw[2 * i]), lo = hexval(raw[2 * i + 1]);
			if (hi < 0 || lo < 0) {
				ret = -EINVAL;
				goto out;
			}
			k->master[i] = (uint8_t)(hi << 4 | lo);
		}
	} else {
		ret = -EINVAL;
		goto out;
	}
	crypto_kdf_derive_from_key(k->logmac, sizeof(k->logmac), 1, "repfslog", k->master);
	crypto_kdf_derive_from_key(k->datamac, sizeof(k->datamac), 3, "repfsdat", k->master);
	*out = k;
	k = NULL;
out:
	sodium_memzero(raw, sizeof(raw));
	if (k)
		sodium_free(k);
	close(fd);
	return ret;
}

void key_free(struct key *k)
{
	if (k)
		sodium_free(k);	/* sodium_free wipes before releasing */
}

void key_derive(const struct key *k, uint64_t id, const char ctx[8], uint8_t out[CRYPTO_KEY_BYTES])
{
	crypto_kdf_derive_from_key(out, CRYPTO_KEY_BYTES, id, ctx, k->master);
}

void key_fingerprint(const struct key *k, uint8_t out[CRYPTO_MAC_BYTES])
{
	static const char label[] = "repfs key fingerprint v1";
	uint8_t sub[CRYPTO_KEY_BYTES];

	key_derive(k, 2, "repfsfpr", sub);
	crypto_generichash(out, CRYPTO_MAC_BYTES, (const uint8_t *)label, sizeof(label) - 1, sub,
			   sizeof(sub));
	sodium_memzero(sub, sizeof(sub));
}

void mac_init(struct mac_state *st, const struct key *k)
{
	crypto_generichash_init((crypto_generichash_state *)st, k->logmac, sizeof(k->logmac),
				CRYPTO_MAC_BYTES);
}

void mac_update(struct mac_state *st, const void *data, size_t len)
{
	crypto_generichash_update((crypto_generichash_state *)st, data, len);
}

void mac_final(struct mac_state *st, uint8_t out[CRYPTO_MAC_BYTES])
{
	crypto_generichash_final((crypto_generichash_state *)st, out, CRYPTO_MAC_BYTES);
	sodium_memzero(st, sizeof(*st));
}

void data_tag(const struct key *k, const void *nonce, size_t nonce_len, const void *data, size_t len,
	      uint8_t tag[CRYPTO_TAG_BYTES])
{
	uint8_t otk[crypto_onetimeauth_KEYBYTES];

	_Static_assert(CRYPTO_TAG_BYTES == crypto_onetimeauth_BYTES, "tag size");
	crypto_generichash(otk, sizeof(otk), nonce, nonce_len, k->datamac, sizeof(k->datamac));
	crypto_onetimeauth(tag, data, len, otk);
	sodium_memzero(otk, sizeof(otk));
}

int mac_equal(const uint8_t a[CRYPTO_MAC_BYTES], const uint8_t b[CRYPTO_MAC_BYTES])
{
	return sodium_memcmp(a, b, CRYPTO_MAC_BYTES);
}

void crypto_random(void *buf, size_t len)
{
	randombytes_buf(buf, len);
}

void crypto_wipe(void *buf, size_t len)
{
	sodium_memzero(buf, len);
}
