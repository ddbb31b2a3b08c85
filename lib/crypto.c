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

/* ---- the secure channel's session keys (net/chan.c) ---- */

_Static_assert(SESSION_PUBLIC_BYTES == crypto_kx_PUBLICKEYBYTES, "kx public key size");
_Static_assert(crypto_kx_SESSIONKEYBYTES == CRYPTO_KEY_BYTES, "kx session key size");
_Static_assert(SESSION_HEADER_BYTES == crypto_secretstream_xchacha20poly1305_HEADERBYTES,
	       "secretstream header size");
_Static_assert(SESSION_ABYTES == crypto_secretstream_xchacha20poly1305_ABYTES, "secretstream overhead");
_Static_assert(crypto_secretstream_xchacha20poly1305_KEYBYTES == CRYPTO_KEY_BYTES, "secretstream key size");

/*
 * Lifecycle: NEW (hskey, psk, key pair) -> session_derive -> KEYS (rxkey,
 * txkey; hskey, psk, sk wiped) -> push_init / pull_init (each wipes its key)
 * -> streaming, until FINAL ends a direction.
 */
enum { SS_NEW, SS_KEYS };
enum { DIR_OFF, DIR_ON, DIR_DONE };

struct session {
	uint8_t hskey[CRYPTO_KEY_BYTES];	/* "repfsnet" 1 */
	uint8_t psk[CRYPTO_KEY_BYTES];		/* "repfsnet" 2 */
	uint8_t pk[crypto_kx_PUBLICKEYBYTES];
	uint8_t sk[crypto_kx_SECRETKEYBYTES];
	uint8_t rxkey[CRYPTO_KEY_BYTES];
	uint8_t txkey[CRYPTO_KEY_BYTES];
	int state;
	/* the sender's half */
	crypto_secretstream_xchacha20poly1305_state tx;
	int tx_state;
	/* the receiver's half */
	crypto_secretstream_xchacha20poly1305_state rx;
	int rx_state;
};

int session_new(struct session **out, const struct key *k, uint8_t pub[SESSION_PUBLIC_BYTES])
{
	struct session *s;

	*out = NULL;
	s = sodium_malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	sodium_memzero(s, sizeof(*s));
	crypto_kdf_derive_from_key(s->hskey, sizeof(s->hskey), 1, "repfsnet", k->master);
	crypto_kdf_derive_from_key(s->psk, sizeof(s->psk), 2, "repfsnet", k->master);
	crypto_kx_keypair(s->pk, s->sk);
	memcpy(pub, s->pk, SESSION_PUBLIC_BYTES);
	s->state = SS_NEW;
	*out = s;
	return 0;
}

void session_free(struct session *s)
{
	if (s)
		sodium_free(s);	/* wipes before releasing */
}

int session_mac(const struct session *s, const void *msg, size_t len, uint8_t out[CRYPTO_MAC_BYTES])
{
	if (s->state != SS_NEW) {
		sodium_memzero(out, CRYPTO_MAC_BYTES);
		return -EINVAL;
	}
	crypto_generichash(out, CRYPTO_MAC_BYTES, msg, len, s->hskey, sizeof(s->hskey));
	return 0;
}

/* out = BLAKE2b-256(key = psk; label || kx || transcript) */
static void mix_psk(uint8_t out[CRYPTO_KEY_BYTES], const uint8_t psk[CRYPTO_KEY_BYTES], const char *label,
		    const uint8_t kx[CRYPTO_KEY_BYTES], const void *transcript, size_t len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, psk, CRYPTO_KEY_BYTES, CRYPTO_KEY_BYTES);
	crypto_generichash_update(&st, (const uint8_t *)label, strlen(label));
	crypto_generichash_update(&st, kx, CRYPTO_KEY_BYTES);
	crypto_generichash_update(&st, transcript, len);
	crypto_generichash_final(&st, out, CRYPTO_KEY_BYTES);
	sodium_memzero(&st, sizeof(st));
}

int session_derive(struct session *s, int initiator, const uint8_t peer[SESSION_PUBLIC_BYTES],
		   const void *transcript, size_t len)
{
	static const char i2r[] = "repfs chan i2r", r2i[] = "repfs chan r2i";
	uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
	int ret = 0;

	if (s->state != SS_NEW)
		return -EINVAL;
	if (initiator)
		ret = crypto_kx_client_session_keys(rx, tx, s->pk, s->sk, peer);
	else
		ret = crypto_kx_server_session_keys(rx, tx, s->pk, s->sk, peer);
	if (ret) {
		ret = -EINVAL;
		goto out;
	}
	mix_psk(s->txkey, s->psk, initiator ? i2r : r2i, tx, transcript, len);
	mix_psk(s->rxkey, s->psk, initiator ? r2i : i2r, rx, transcript, len);
	s->state = SS_KEYS;
out:
	sodium_memzero(rx, sizeof(rx));
	sodium_memzero(tx, sizeof(tx));
	sodium_memzero(s->sk, sizeof(s->sk));
	sodium_memzero(s->hskey, sizeof(s->hskey));
	sodium_memzero(s->psk, sizeof(s->psk));
	if (ret)
		s->state = -1;	/* spent: nothing more can be done with it */
	return ret;
}

int session_push_init(struct session *s, uint8_t header[SESSION_HEADER_BYTES])
{
	if (s->state != SS_KEYS || s->tx_state != DIR_OFF)
		return -EINVAL;
	crypto_secretstream_xchacha20poly1305_init_push(&s->tx, header, s->txkey);
	sodium_memzero(s->txkey, sizeof(s->txkey));
	s->tx_state = DIR_ON;
	return 0;
}

int session_pull_init(struct session *s, const uint8_t header[SESSION_HEADER_BYTES])
{
	if (s->state != SS_KEYS || s->rx_state != DIR_OFF)
		return -EINVAL;
	/* fails only for an invalid header, and any header is valid in 1.0.18 */
	if (crypto_secretstream_xchacha20poly1305_init_pull(&s->rx, header, s->rxkey) != 0) {
		sodium_memzero(s->rxkey, sizeof(s->rxkey));
		s->rx_state = DIR_DONE;
		return -EBADMSG;
	}
	sodium_memzero(s->rxkey, sizeof(s->rxkey));
	s->rx_state = DIR_ON;
	return 0;
}

int session_seal(struct session *s, uint8_t *c, const void *m, size_t mlen, int final)
{
	uint8_t tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
			    : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;

	if (s->tx_state != DIR_ON || mlen > crypto_secretstream_xchacha20poly1305_MESSAGEBYTES_MAX)
		return -EINVAL;
	crypto_secretstream_xchacha20poly1305_push(&s->tx, c, NULL, m, mlen, NULL, 0, tag);
	if (final) {
		sodium_memzero(&s->tx, sizeof(s->tx));
		s->tx_state = DIR_DONE;
	}
	return 0;
}

int session_open(struct session *s, void *m, size_t *mlen, const uint8_t *c, size_t clen, int *final)
{
	unsigned long long n = 0;
	unsigned char tag = 0;

	*mlen = 0;
	*final = 0;
	if (s->rx_state != DIR_ON || clen < SESSION_ABYTES)
		return -EBADMSG;
	if (crypto_secretstream_xchacha20poly1305_pull(&s->rx, m, &n, &tag, c, clen, NULL, 0) != 0 ||
	    (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE &&
	     tag != crypto_secretstream_xchacha20poly1305_TAG_FINAL)) {
		/* a stream that failed once is never trusted again */
		sodium_memzero(&s->rx, sizeof(s->rx));
		s->rx_state = DIR_DONE;
		return -EBADMSG;
	}
	if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
		sodium_memzero(&s->rx, sizeof(s->rx));
		s->rx_state = DIR_DONE;
		*final = 1;
	}
	*mlen = (size_t)n;
	return 0;
}
