/* test_crypto.c -- key files (generate, load, refuse), fingerprints, MACs */
#include "unit.h"

static struct unit_env cenv;

static void crypto_setup(void)
{
	unit_env_init(&cenv);
}

static void crypto_teardown(void)
{
	unit_env_fini(&cenv);
}

TestSuite(crypto, .init = crypto_setup, .fini = crypto_teardown);

/* Writes dir/name with content and mode; returns the path in out. */
static const char *crypto_keyfile(const char *name, const void *buf, size_t len, mode_t mode,
				  char *out, size_t outlen)
{
	unit_path(&cenv, name, out, outlen);
	unlink(out);
	unit_write_file(out, buf, len);
	cr_assert_eq(chmod(out, mode), 0);
	return out;
}

static void crypto_expect_load(const char *path, int want)
{
	struct key *k = (struct key *)(uintptr_t)1;
	int ret = key_load(&k, path);

	cr_assert_eq(ret, want, "key_load '%s' returned %d (%s), expected %d", path, ret,
		     strerror(-ret), want);
	if (want == 0) {
		cr_assert_not_null(k);
		key_free(k);
	} else {
		cr_assert_null(k, "key_load must leave *out NULL on failure");
	}
}

static void crypto_fpr(const struct key *k, uint8_t out[CRYPTO_MAC_BYTES])
{
	key_fingerprint(k, out);
}

Test(crypto, load_rejects_wrong_sizes)
{
	static const size_t sizes[] = { 0, 1, 16, 31, 33, 48, 63, 65, 66, 100, 128, 129, 200, 4096 };
	uint8_t buf[4096];
	char path[512];

	memset(buf, 0x5a, sizeof(buf));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		crypto_keyfile("sized", buf, sizes[i], 0600, path, sizeof(path));
		crypto_expect_load(path, -EINVAL);
	}
}

Test(crypto, load_rejects_bad_hex)
{
	char hex[66], path[512];

	/* 64 characters, but one is not a hex digit */
	memset(hex, 'a', 64);
	hex[17] = 'g';
	crypto_keyfile("badhex", hex, 64, 0600, path, sizeof(path));
	crypto_expect_load(path, -EINVAL);
	/* 65 characters that do not end in a newline */
	memset(hex, 'a', 65);
	crypto_keyfile("badhex", hex, 65, 0600, path, sizeof(path));
	crypto_expect_load(path, -EINVAL);
	/* 63 hex digits and a newline */
	memset(hex, 'a', 63);
	hex[63] = '\n';
	crypto_keyfile("badhex", hex, 64, 0600, path, sizeof(path));
	crypto_expect_load(path, -EINVAL);
}

Test(crypto, load_refuses_group_or_other_access)
{
	static const mode_t modes[] = { 0640, 0604, 0644, 0660, 0606, 0610, 0601, 0620, 0602, 0700 | 0040 };
	uint8_t buf[CRYPTO_KEY_BYTES] = { 1, 2, 3 };
	char path[512];

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		crypto_keyfile("open", buf, sizeof(buf), modes[i], path, sizeof(path));
		crypto_expect_load(path, -EPERM);
	}
	crypto_keyfile("open", buf, sizeof(buf), 0400, path, sizeof(path));
	crypto_expect_load(path, 0);
	crypto_keyfile("open", buf, sizeof(buf), 0600, path, sizeof(path));
	crypto_expect_load(path, 0);
}

Test(crypto, load_missing_is_enoent)
{
	char path[512];

	crypto_expect_load(unit_path(&cenv, "no-such-key", path, sizeof(path)), -ENOENT);
}

Test(crypto, load_refuses_a_directory)
{
	char path[512];

	unit_path(&cenv, "keydir", path, sizeof(path));
	cr_assert_eq(mkdir(path, 0700), 0);
	crypto_expect_load(path, -EINVAL);
}

Test(crypto, load_accepts_hex_equal_to_raw)
{
	uint8_t raw[CRYPTO_KEY_BYTES], f1[CRYPTO_MAC_BYTES], f2[CRYPTO_MAC_BYTES], f3[CRYPTO_MAC_BYTES];
	char hex[70], upper[70], rawpath[512], hexpath[512], nlpath[512];
	struct key *k1, *k2, *k3;

	for (int i = 0; i < CRYPTO_KEY_BYTES; i++)
		raw[i] = (uint8_t)(i * 37 + 11);
	for (int i = 0; i < CRYPTO_KEY_BYTES; i++)
		sprintf(hex + 2 * i, "%02x", raw[i]);
	for (int i = 0; i < 64; i++)
		upper[i] = (char)((hex[i] >= 'a' && hex[i] <= 'f') ? hex[i] - 32 : hex[i]);
	upper[64] = '\n';
	crypto_keyfile("raw", raw, sizeof(raw), 0600, rawpath, sizeof(rawpath));
	crypto_keyfile("hex", hex, 64, 0600, hexpath, sizeof(hexpath));
	crypto_keyfile("hexnl", upper, 65, 0600, nlpath, sizeof(nlpath));

	cr_assert_eq(key_load(&k1, rawpath), 0);
	cr_assert_eq(key_load(&k2, hexpath), 0, "64 hex digits must load");
	cr_assert_eq(key_load(&k3, nlpath), 0, "64 upper-case hex digits and a newline must load");
	crypto_fpr(k1, f1);
	crypto_fpr(k2, f2);
	crypto_fpr(k3, f3);
	cr_assert_arr_eq(f1, f2, CRYPTO_MAC_BYTES, "hex and raw forms of one key differ");
	cr_assert_arr_eq(f1, f3, CRYPTO_MAC_BYTES, "hex and raw forms of one key differ");
	key_free(k1);
	key_free(k2);
	key_free(k3);
}

Test(crypto, generate_makes_0600_file_of_32_bytes)
{
	char path[512];
	struct stat st;
	struct key *k;
	mode_t old = umask(0);
	int ret;

	unit_path(&cenv, "gen", path, sizeof(path));
	ret = key_generate(path);
	umask(old);
	cr_assert_eq(ret, 0);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "key file mode is %o", st.st_mode & 07777);
	cr_assert_eq(st.st_size, CRYPTO_KEY_BYTES);
	cr_assert_eq(key_load(&k, path), 0);
	key_free(k);
}

Test(crypto, generate_refuses_existing_file)
{
	uint8_t before[CRYPTO_MAC_BYTES], after[CRYPTO_MAC_BYTES];
	size_t len0, len1;
	uint8_t *c0, *c1;
	struct key *k;

	crypto_fpr(cenv.key, before);
	c0 = unit_read_file(cenv.keypath, &len0);
	cr_assert_eq(key_generate(cenv.keypath), -EEXIST);
	c1 = unit_read_file(cenv.keypath, &len1);
	cr_assert_eq(len0, len1);
	cr_assert_arr_eq(c0, c1, len0, "key_generate changed an existing key file");
	cr_assert_eq(key_load(&k, cenv.keypath), 0);
	crypto_fpr(k, after);
	cr_assert_arr_eq(before, after, CRYPTO_MAC_BYTES);
	key_free(k);
	free(c0);
	free(c1);
}

Test(crypto, fingerprint_differs_between_keys_and_is_stable)
{
	uint8_t f1[CRYPTO_MAC_BYTES], f1b[CRYPTO_MAC_BYTES], f2[CRYPTO_MAC_BYTES];
	struct key *again, *other;
	char path[512];

	cr_assert_eq(key_load(&again, cenv.keypath), 0);
	unit_new_key(cenv.dir, "other", path, sizeof(path), &other);
	crypto_fpr(cenv.key, f1);
	crypto_fpr(again, f1b);
	crypto_fpr(other, f2);
	cr_assert_arr_eq(f1, f1b, CRYPTO_MAC_BYTES, "one key, two fingerprints");
	cr_assert_arr_neq(f1, f2, CRYPTO_MAC_BYTES, "two keys, one fingerprint");
	key_free(again);
	key_free(other);
}

Test(crypto, fingerprint_does_not_reveal_key_bytes)
{
	uint8_t fpr[CRYPTO_MAC_BYTES];
	size_t len;
	uint8_t *raw = unit_read_file(cenv.keypath, &len);

	cr_assert_eq(len, CRYPTO_KEY_BYTES);
	crypto_fpr(cenv.key, fpr);
	cr_assert_arr_neq(fpr, raw, CRYPTO_KEY_BYTES);
	crypto_wipe(raw, len);
	free(raw);
}

static void crypto_mac_of(const struct key *k, const char *msg, uint8_t out[CRYPTO_MAC_BYTES])
{
	struct mac_state st;

	mac_init(&st, k);
	mac_update(&st, msg, strlen(msg));
	mac_final(&st, out);
}

Test(crypto, mac_is_keyed_incremental_and_compared)
{
	uint8_t a[CRYPTO_MAC_BYTES], b[CRYPTO_MAC_BYTES], c[CRYPTO_MAC_BYTES], d[CRYPTO_MAC_BYTES];
	struct mac_state st;
	struct key *other;
	char path[512];

	crypto_mac_of(cenv.key, "hello world", a);
	mac_init(&st, cenv.key);
	mac_update(&st, "hello", 5);
	mac_update(&st, " world", 6);
	mac_final(&st, b);
	cr_assert_eq(mac_equal(a, b), 0, "split updates must give the same MAC");
	crypto_mac_of(cenv.key, "hello worle", c);
	cr_assert_neq(mac_equal(a, c), 0);
	unit_new_key(cenv.dir, "other", path, sizeof(path), &other);
	crypto_mac_of(other, "hello world", d);
	cr_assert_neq(mac_equal(a, d), 0, "the MAC must depend on the key");
	for (int i = 0; i < CRYPTO_MAC_BYTES; i++) {
		memcpy(c, a, sizeof(c));
		c[i] ^= 0x80;
		cr_assert_neq(mac_equal(a, c), 0, "mac_equal missed a difference in byte %d", i);
	}
	key_free(other);
}

Test(crypto, derived_subkeys_depend_on_id_context_and_key)
{
	uint8_t a[CRYPTO_KEY_BYTES], a2[CRYPTO_KEY_BYTES], b[CRYPTO_KEY_BYTES], c[CRYPTO_KEY_BYTES],
		d[CRYPTO_KEY_BYTES];
	struct key *other;
	char path[512];

	unit_new_key(cenv.dir, "other", path, sizeof(path), &other);
	key_derive(cenv.key, 1, "repfsnet", a);
	key_derive(cenv.key, 1, "repfsnet", a2);
	key_derive(cenv.key, 2, "repfsnet", b);
	key_derive(cenv.key, 1, "repfsxxx", c);
	key_derive(other, 1, "repfsnet", d);
	cr_assert_arr_eq(a, a2, sizeof(a));
	cr_assert_arr_neq(a, b, sizeof(a));
	cr_assert_arr_neq(a, c, sizeof(a));
	cr_assert_arr_neq(a, d, sizeof(a));
	key_free(other);
}

Test(crypto, free_null_is_noop)
{
	key_free(NULL);
}

static void crypto_tag(const struct key *k, const char *nonce, const char *data, uint8_t tag[CRYPTO_TAG_BYTES])
{
	data_tag(k, nonce, strlen(nonce), data, strlen(data), tag);
}

Test(crypto, data_tag_depends_on_key_nonce_and_data)
{
	uint8_t a[CRYPTO_TAG_BYTES], b[CRYPTO_TAG_BYTES];
	struct key *other;
	char path[512];

	crypto_tag(cenv.key, "header-1", "some data", a);
	crypto_tag(cenv.key, "header-1", "some data", b);
	cr_assert_arr_eq(a, b, sizeof(a), "one key, nonce and message, two tags");
	crypto_tag(cenv.key, "header-2", "some data", b);
	cr_assert_arr_neq(a, b, sizeof(a), "the tag must depend on the nonce");
	crypto_tag(cenv.key, "header-1", "some datb", b);
	cr_assert_arr_neq(a, b, sizeof(a), "the tag must depend on the data");
	crypto_tag(cenv.key, "header-1", "some data ", b);
	cr_assert_arr_neq(a, b, sizeof(a), "the tag must depend on the data's length");
	unit_new_key(cenv.dir, "other", path, sizeof(path), &other);
	crypto_tag(other, "header-1", "some data", b);
	cr_assert_arr_neq(a, b, sizeof(a), "the tag must depend on the key");
	/* empty data still gets a nonce-dependent tag */
	crypto_tag(cenv.key, "header-1", "", a);
	crypto_tag(cenv.key, "header-2", "", b);
	cr_assert_arr_neq(a, b, sizeof(a));
	key_free(other);
}
