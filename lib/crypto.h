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

/*
 * The secure channel's keys (net/chan.c; docs/protocol.md). A session holds,
 * in sodium_malloc'd memory, the two channel subkeys of the cluster key
 * (context "repfsnet": 1 = handshake MAC key, 2 = PSK), an ephemeral X25519
 * key pair, and then one crypto_secretstream_xchacha20poly1305 state per
 * direction. Secrets are wiped as soon as they are spent and on free.
 * Sealing (tx) and opening (rx) touch disjoint state: one thread may seal
 * while another opens.
 */
#define SESSION_PUBLIC_BYTES 32		/* an X25519 public key */
#define SESSION_HEADER_BYTES 24		/* a secretstream header */
#define SESSION_ABYTES 17		/* secretstream overhead per message */

struct session;

/* Derives the channel subkeys of k and makes a fresh key pair, whose public half goes to pub. -ENOMEM. */
int session_new(struct session **out, const struct key *k, uint8_t pub[SESSION_PUBLIC_BYTES]);
void session_free(struct session *s);	/* NULL is a no-op; wipes everything */

/*
 * BLAKE2b-256 keyed with the handshake subkey over msg: the handshake's proof
 * of the cluster key. Compare results with mac_equal(). Not usable after
 * session_derive() (-EINVAL then, out zeroed).
 */
int session_mac(const struct session *s, const void *msg, size_t len, uint8_t out[CRYPTO_MAC_BYTES]);

/*
 * The session keys: crypto_kx between our key pair and peer (the initiator is
 * the kx client), each direction's key then mixed with the PSK and the
 * handshake transcript: BLAKE2b-256(key = PSK; label || kx key || transcript),
 * label "repfs chan i2r" or "repfs chan r2i". Wipes the ephemeral secret key,
 * the handshake key and the PSK. -EINVAL if peer is a degenerate (low-order)
 * point or the keys were already derived. The session functions below
 * return -EINVAL when called out of this order.
 */
int session_derive(struct session *s, int initiator, const uint8_t peer[SESSION_PUBLIC_BYTES],
		   const void *transcript, size_t len);

/* Starts our sending stream; its header (to send first) goes to header. Wipes the tx key. */
int session_push_init(struct session *s, uint8_t header[SESSION_HEADER_BYTES]);
/* Starts the peer's stream from its header. Wipes the rx key. */
int session_pull_init(struct session *s, const uint8_t header[SESSION_HEADER_BYTES]);

/*
 * Encrypts m[0..mlen) into c[0..mlen + SESSION_ABYTES), tagged FINAL if final
 * (the stream's last message). -EINVAL before session_push_init() or after FINAL.
 */
int session_seal(struct session *s, uint8_t *c, const void *m, size_t mlen, int final);

/*
 * Decrypts and authenticates c[0..clen) into m (room for clen - SESSION_ABYTES),
 * setting *mlen and *final. -EBADMSG if it fails (wrong key, any changed,
 * dropped, repeated or reordered message), if its tag is neither MESSAGE nor
 * FINAL, or before session_pull_init() or after FINAL. A failure ends the
 * stream (every later call fails too); m's contents are then unspecified.
 */
__attribute__((warn_unused_result)) int session_open(struct session *s, void *m, size_t *mlen,
						     const uint8_t *c, size_t clen, int *final);

#endif
