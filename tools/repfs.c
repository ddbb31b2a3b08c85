/* repfs.c -- the repfs command: keygen, mount, status, log, replay */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/crypto.h"
#include "cli.h"

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("repfs: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int valid_node_name(const char *name)
{
	if (*name && strlen(name) <= 63 && !strpbrk(name, " \t\n\"\\/"))
		return 1;
	die_msg("invalid node name '%.64s' (1-63 characters, no spaces, quotes or slashes)", name);
	return 0;
}

void mountinfo_unescape(char *s)
{
	char *o = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '7' && s[2] && s[3]) {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 4;
		} else {
			*o++ = *s++;
		}
	}
	*o = 0;
}

int resolve_datadir(const char *arg, char *out, size_t len)
{
	char real[PATH_MAX], line[3 * PATH_MAX], probe[PATH_MAX + 16];
	FILE *f;
	int found = -ENOENT;

	if (!realpath(arg, real))
		return -errno;
	snprintf(probe, sizeof(probe), "%s/state", real);
	if (access(probe, F_OK) == 0) {
		snprintf(out, len, "%s", real);
		return 0;
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], type[64], src[2 * PATH_MAX];
		char *sep = strstr(line, " - ");
		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(sep + 3, "%63s %8191s", type, src) != 2)
			continue;
		mountinfo_unescape(mnt);
		mountinfo_unescape(src);
		if (strcmp(mnt, real) || strcmp(type, "fuse.repfs") || strncmp(src, "repfs:", 6))
			continue;
		snprintf(out, len, "%s", src + 6);
		found = 0;
	}
	fclose(f);
	return found;
}

int remembered_keyfile(const char *datadir, char *out, size_t len)
{
	char path[PATH_MAX + 16];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/keyfile", datadir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, out, len - 1);
	close(fd);
	if (n <= 0)
		return -EINVAL;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

static int cmd_keygen(int argc, char **argv)
{
	int ret;

	if (argc != 2) {
		die_msg("usage: repfs keygen KEYFILE");
		return 2;
	}
	ret = key_generate(argv[1]);
	if (ret == -EEXIST) {
		die_msg("key file '%s' already exists; refusing to overwrite it", argv[1]);
		return 1;
	}
	if (ret) {
		die_msg("unable to write key file '%s': %s", argv[1], strerror(-ret));
		return 1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: repfs COMMAND [ARGS]\n"
	      "  keygen KEYFILE                          new cluster key (32 random bytes, mode 0600)\n"
	      "  mount [OPTIONS] DATADIR MOUNTPOINT      run a node (see 'repfs mount --help')\n"
	      "  status DATADIR|MOUNTPOINT [--json]      role, epoch, positions, faults\n"
	      "  log DATADIR [--from SEQ] [--verify] [--key KEYFILE]\n"
	      "                                          print or check the operation log\n"
	      "  replay DATADIR OUTDIR [--key KEYFILE]   apply the whole log to an empty directory\n"
	      "  promote DATADIR|MOUNTPOINT [--force]    make this follower the leader of a new epoch\n"
	      "  verify DATADIR|MOUNTPOINT [--repair]    compare this follower's tree with the leader's\n"
	      "                                          (exit 0: identical, 1: differences listed, 2: error)\n"
	      "  divergent DATADIR [list | show ENTRY | restore [ENTRY] DEST]\n"
	      "                                          writes an old leader kept when it rejoined\n"
	      "  forget DATADIR|MOUNTPOINT NAME          the leader stops keeping its log for, and waiting\n"
	      "                                          for, a follower that is gone for good\n"
	      "stop a node with: fusermount3 -u MOUNTPOINT\n",
	      f);
}

int main(int argc, char **argv)
{
	if (crypto_init()) {
		die_msg("unable to initialise libsodium");
		return 1;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	umask(077);
	if (!strcmp(argv[1], "keygen"))
		return cmd_keygen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "mount"))
		return cmd_mount(argc - 1, argv + 1);
	if (!strcmp(argv[1], "status"))
		return cmd_status(argc - 1, argv + 1);
	if (!strcmp(argv[1], "log"))
		return cmd_log(argc - 1, argv + 1);
	if (!strcmp(argv[1], "replay"))
		return cmd_replay(argc - 1, argv + 1);
	if (!strcmp(argv[1], "promote"))
		return cmd_promote(argc - 1, argv + 1);
	if (!strcmp(argv[1], "verify"))
		return cmd_verify(argc - 1, argv + 1);
	if (!strcmp(argv[1], "divergent"))
		return cmd_divergent(argc - 1, argv + 1);
	if (!strcmp(argv[1], "forget"))
		return cmd_forget(argc - 1, argv + 1);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	die_msg("unknown command '%s' (see 'repfs --help')", argv[1]);
	return 2;
}
