/* state.c -- reading and atomically replacing DATADIR/state */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#define STATE_FILE "state"
#define STATE_TMP "state.tmp"

const char *role_name(enum role r)
{
	return r == ROLE_LEADER ? "leader" : r == ROLE_FOLLOWER ? "follower" : "?";
}

static void hex(char *out, const uint8_t *in, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", in[i]);
}

static int unhex(uint8_t *out, const char *in, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(in + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return in[2 * n] == 0 ? 0 : -1;
}

static int format_body(char *buf, size_t len, const struct node_state *s)
{
	char fpr[2 * CRYPTO_MAC_BYTES + 1];

	hex(fpr, s->key_fpr, CRYPTO_MAC_BYTES);
	return snprintf(buf, len,
			"repfs-state 1\nname %s\nrole %s\nepoch %" PRIu64 "\ncheckpoint %" PRIu64
			"\nkey-fingerprint %s\n",
			s->name, role_name(s->role), s->epoch, s->checkpoint, fpr);
}

int state_save(int dirfd, const struct node_state *s)
{
	char buf[1024];
	int n, fd, ret = 0;

	n = format_body(buf, sizeof(buf) - 40, s);
	if (n < 0 || (size_t)n >= sizeof(buf) - 40)
		return -EINVAL;
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "checksum %016llx\n",
		      (unsigned long long)XXH64(buf, (size_t)n, 0));
	fd = openat(dirfd, STATE_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n)
		ret = errno ? -errno : -EIO;
	if (!ret && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	if (!ret && renameat(dirfd, STATE_TMP, dirfd, STATE_FILE) < 0)
		ret = -errno;
	if (!ret && fsync(dirfd) < 0)
		ret = -errno;
	if (ret)
		unlinkat(dirfd, STATE_TMP, 0);
	return ret;
}

int state_load(int dirfd, struct node_state *s)
{
	char buf[1025], *line, *save = NULL, *sum;
	unsigned long long want;
	char role[16], fpr[2 * CRYPTO_MAC_BYTES + 2];
	int fd, seen = 0;
	ssize_t n;

	memset(s, 0, sizeof(*s));
	fd = openat(dirfd, STATE_FILE, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	sum = strstr(buf, "checksum ");
	if (!sum || sscanf(sum, "checksum %16llx", &want) != 1)
		return -EBADMSG;
	{
		/* the file must end exactly with the checksum line */
		char line[32];
		snprintf(line, sizeof(line), "checksum %016llx\n", want);
		if (strcmp(sum, line) || XXH64(buf, (size_t)(sum - buf), 0) != want)
			return -EBADMSG;
	}
	*sum = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strcmp(line, "repfs-state 1"))
			seen |= 1;
		else if (sscanf(line, "name %63s", s->name) == 1)
			seen |= 2;
		else if (sscanf(line, "role %15s", role) == 1) {
			s->role = !strcmp(role, "leader") ? ROLE_LEADER : !strcmp(role, "follower") ? ROLE_FOLLOWER : 0;
			if (s->role)
				seen |= 4;
		} else if (sscanf(line, "epoch %" SCNu64, &s->epoch) == 1)
			seen |= 8;
		else if (sscanf(line, "checkpoint %" SCNu64, &s->checkpoint) == 1)
			seen |= 16;
		else if (sscanf(line, "key-fingerprint %65s", fpr) == 1 && !unhex(s->key_fpr, fpr, CRYPTO_MAC_BYTES))
			seen |= 32;
		else
			return -EBADMSG;
	}
	return seen == 63 ? 0 : -EBADMSG;
}
