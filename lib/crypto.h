/* crypto.h -- the secrets module: the cluster key, derived keys, MACs, digests
 *
 * This is the only module (besides tests) that includes <sodium.h>. Keys live in
 * sodium_malloc'd memory, are wiped on free, and are never printed: error
 * messages name the key file, never its bytes. Every MAC check is constant time.
 * All functions return 0 or a negative errno unless stated otherwise.
 */
#ifndef REPFS_CRYPTO_H
#define REPFS_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_KEY_BYTES 32
#define CRYPTO_MAC_BYTES 32

struct key;	/* the cluster key and the subkeys derived from it; opaque */

/* Initialises libsodium; call once before anything else. */
int crypto_init(void);

/* Writes 32 fresh random bytes to path with mode 0600; -EEXIST if it exists. */
int key_generate(const char *path);

/*
 * Loads a key file. -ENOENT if missing, -EACCES if unreadable, -EINVAL if it is
 * not exactly 32 bytes (or 64 hex digits), -EPERM if group/other can read it.
 * On success *out is yours; release it with key_free().
 */
int key_load(struct key **out, const char *path);
void key_free(struct key *k);	/* NULL is a no-op; wipes the key */

/*
 * A 32-byte public fingerprint of the key for the state file: a MAC of a fixed
 * string, so a wrong key can be told apart from a corrupt log without revealing
 * anything about the key.
 */
void key_fingerprint(const struct key *k, uint8_t out[CRYPTO_MAC_BYTES]);

/*
 * Incremental MAC of a log record (BLAKE2b-256 keyed with the log subkey):
 * mac_init, mac_update any number of times, mac_final.
 */
struct mac_state {
	uint8_t opaque[384] __attribute__((aligned(64)));
};
void mac_init(struct mac_state *st, const struct key *k);
void mac_update(struct mac_state *st, const void *data, size_t len);
void mac_final(struct mac_state *st, uint8_t out[CRYPTO_MAC_BYTES]);

/*
 * Poly1305 tag of a record's data under a one-time key derived (BLAKE2b, data
 * subkey) from nonce, which must never repeat: the record header, carrying a
 * random 16-byte nonce. Bulk data is authenticated at Poly1305 speed; the tag
 * then enters the record's chained BLAKE2b MAC.
 */
#define CRYPTO_TAG_BYTES 16
void data_tag(const struct key *k, const void *nonce, size_t nonce_len, const void *data, size_t len,
	      uint8_t tag[CRYPTO_TAG_BYTES]);

/* Constant-time comparison: 0 when equal, -1 otherwise. */
__attribute__((warn_unused_result)) int mac_equal(const uint8_t a[CRYPTO_MAC_BYTES],
						  const uint8_t b[CRYPTO_MAC_BYTES]);

/* Fills buf with random bytes (file ids, nonces). */
void crypto_random(void *buf, size_t len);

/* Derives a 32-byte subkey for a purpose ("repfslog", "repfsnet", ...: 8 chars). */
void key_derive(const struct key *k, uint64_t id, const char ctx[8], uint8_t out[CRYPTO_KEY_BYTES]);

/* Wipes memory the compiler may not optimise away. */
void crypto_wipe(void *buf, size_t len);

#endif
