/* test_state.c -- DATADIR/state: round trip, corruption, atomic replacement */
#include "../../replication/state.h"
#include "unit.h"

static struct unit_env senv;

static void state_setup(void)
{
	unit_env_init(&senv);
}

static void state_teardown(void)
{
	unit_env_fini(&senv);
}

TestSuite(state, .init = state_setup, .fini = state_teardown);

static void st_sample(struct node_state *s, const char *name, enum role role, uint64_t epoch,
		      uint64_t checkpoint)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->role = role;
	s->epoch = epoch;
	s->checkpoint = checkpoint;
	key_fingerprint(senv.key, s->key_fpr);
}

static void st_expect_same(const struct node_state *a, const struct node_state *b)
{
	cr_assert_str_eq(a->name, b->name);
	cr_assert_eq(a->role, b->role);
	cr_assert_eq(a->epoch, b->epoch);
	cr_assert_eq(a->checkpoint, b->checkpoint);
	cr_assert_arr_eq(a->key_fpr, b->key_fpr, CRYPTO_MAC_BYTES);
}

static int st_exists(const char *name)
{
	struct stat st;

	return fstatat(senv.dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Test(state, round_trip)
{
	struct node_state s, t;
	char name63[64];

	st_sample(&s, "node-a", ROLE_LEADER, 1, 0);
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	cr_assert_eq(state_load(senv.dirfd, &t), 0);
	st_expect_same(&s, &t);

	memset(name63, 'n', 63);
	name63[63] = 0;
	st_sample(&s, name63, ROLE_FOLLOWER, UINT64_MAX, UINT64_MAX - 1);
	memset(s.key_fpr, 0xff, sizeof(s.key_fpr));
	s.key_fpr[0] = 0;
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	cr_assert_eq(state_load(senv.dirfd, &t), 0);
	st_expect_same(&s, &t);
}

Test(state, save_replaces_and_leaves_no_tmp)
{
	struct node_state s, t;
	struct stat st;

	st_sample(&s, "first", ROLE_FOLLOWER, 3, 10);
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	cr_assert(st_exists("state"));
	cr_assert_not(st_exists("state.tmp"), "state.tmp left behind");
	cr_assert_eq(fstatat(senv.dirfd, "state", &st, 0), 0);
	cr_assert_eq(st.st_mode & 077, 0, "state file readable by group/other: %o", st.st_mode & 0777);

	/* a temporary left by a crash is overwritten and does not survive */
	{
		char p[512];
		unit_path(&senv, "state.tmp", p, sizeof(p));
		unit_write_file(p, "garbage from a crash\n", 21);
	}
	st_sample(&s, "second", ROLE_LEADER, 4, 99);
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	cr_assert_not(st_exists("state.tmp"), "state.tmp left behind");
	cr_assert_eq(state_load(senv.dirfd, &t), 0);
	st_expect_same(&s, &t);
}

Test(state, missing_is_enoent)
{
	struct node_state t;

	cr_assert_eq(state_load(senv.dirfd, &t), -ENOENT);
}

Test(state, any_flipped_byte_is_detected)
{
	static const uint8_t flips[] = { 0x01, 0x02, 0x10, 0x80 };
	struct node_state s, t;
	char path[512];
	uint8_t *orig, *c;
	size_t len, bad_at = 0;
	int bad_ret = 0, bad_flip = 0, bad_byte = 0;

	st_sample(&s, "flip", ROLE_LEADER, 7, 12345);
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	unit_path(&senv, "state", path, sizeof(path));
	orig = unit_read_file(path, &len);
	c = malloc(len);
	for (size_t i = 0; i < len && !bad_flip; i++) {
		for (size_t f = 0; f < sizeof(flips) && !bad_flip; f++) {
			int ret;
			memcpy(c, orig, len);
			c[i] ^= flips[f];
			unit_write_file(path, c, len);
			ret = state_load(senv.dirfd, &t);
			if (ret != -EBADMSG) {
				bad_at = i;
				bad_ret = ret;
				bad_flip = flips[f];
				bad_byte = orig[i];
			}
		}
	}
	free(c);
	free(orig);
	cr_assert_eq(bad_flip, 0, "flip 0x%02x of byte %zu of %zu (0x%02x) not detected (state_load returned %d)",
		     bad_flip, bad_at, len, bad_byte, bad_ret);
}

Test(state, truncated_or_extended_file_is_detected)
{
	struct node_state s, t;
	char path[512];
	uint8_t *orig, *c;
	size_t len, bad_len = 0;
	int extended_ret;

	st_sample(&s, "torn", ROLE_FOLLOWER, 2, 5);
	cr_assert_eq(state_save(senv.dirfd, &s), 0);
	unit_path(&senv, "state", path, sizeof(path));
	orig = unit_read_file(path, &len);
	for (size_t n = 0; n < len && !bad_len; n++) {
		unit_write_file(path, orig, n);
		if (state_load(senv.dirfd, &t) != -EBADMSG)
			bad_len = n;
	}
	c = malloc(len + 8);
	memcpy(c, orig, len);
	memcpy(c + len, "epoch 9\n", 8);
	unit_write_file(path, c, len + 8);
	extended_ret = state_load(senv.dirfd, &t);
	free(c);
	free(orig);
	cr_assert_eq(bad_len, 0, "file cut to %zu of %zu bytes accepted", bad_len, len);
	cr_assert_eq(extended_ret, -EBADMSG, "a line after the checksum accepted");
}

Test(state, role_names)
{
	cr_assert_str_eq(role_name(ROLE_LEADER), "leader");
	cr_assert_str_eq(role_name(ROLE_FOLLOWER), "follower");
	cr_assert_str_eq(role_name((enum role)0), "?");
}
