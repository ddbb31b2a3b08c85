/* mount.c -- 'repfs mount': open a DATADIR, mount it, serve until unmounted */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/fuse_ops.h"
#include "../fs/fuse_ring.h"
#include "../fs/inodes.h"
#include "../fs/node.h"
#include "../lib/log.h"
#include "../net/ctl.h"
#include "../replication/repl.h"
#include "cli.h"

struct mount_opts {
	struct node_opts node;
	const char *mountpoint;
	int foreground;
	char *fuse_opts[16];
	int nfuse_opts;
	struct repl_opts repl;
	int ring_off;		/* --io-uring off */
	int wb_on;		/* --writeback on (-1 until given: on unless --commit write) */
	int acl_off;		/* --acl off */
};

static void mount_usage(FILE *f)
{
	fputs("usage: repfs mount [OPTIONS] DATADIR MOUNTPOINT\n"
	      "  --role leader|follower   first start only; afterwards DATADIR remembers\n"
	      "  --name NAME              node name, unique in the cluster (default: host name)\n"
	      "  --key KEYFILE            cluster key (required)\n"
	      "  --listen HOST:PORT       where this node serves replication\n"
	      "  --peer HOST:PORT         another member (repeatable); followers find the leader among them\n"
	      "  --sync async|all|quorum=N   what an fsync waits for (default quorum=1)\n"
	      "  --commit fsync|write     wait at fsync (default) or at every write\n"
	      "  --sync-timeout MS        fall back to async after MS without acknowledgements (default: never)\n"
	      "  --heartbeat MS           heartbeat interval (default 500)\n"
	      "  --leader-timeout MS      a silent leader is given up after MS (default 3000)\n"
	      "  --log-retain SIZE        log kept for lagging followers, e.g. 512M (default 1G)\n"
	      "  --io-uring auto|off      FUSE requests over io_uring where the kernel has it (default auto)\n"
	      "  --writeback on|off       the kernel's writeback cache on a mount started as leader\n"
	      "                           (default on, off with --commit write; docs/decisions.md 3)\n"
	      "  --acl auto|off           POSIX ACLs enforced where the kernel and DATADIR's file system\n"
	      "                           have them (default auto), or mode bits only (docs/decisions.md 8)\n"
	      "  -f                       stay in the foreground\n"
	      "  -o FUSE_OPTIONS          passed to libfuse\n",
	      f);
}

/* Option opt's value v, one of two words: 0 for a, 1 for b, -1 (said) for anything else. */
static int parse_either(const char *opt, const char *v, const char *a, const char *b)
{
	if (!strcmp(v, a))
		return 0;
	if (!strcmp(v, b))
		return 1;
	die_msg("invalid value '%s' for %s (%s or %s)", v, opt, a, b);
	return -1;
}

static int parse_hostport(const char *s)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || colon == s)
		return -1;
	port = strtol(colon + 1, &end, 10);
	return (*end || port <= 0 || port > 65535) ? -1 : 0;
}

static int parse_ms(const char *opt, const char *s, int *out)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == 0 || *end || v <= 0 || v > 86400000) {
		die_msg("invalid value '%s' for %s (milliseconds expected)", s, opt);
		return -1;
	}
	*out = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct mount_opts *o)
{
	enum { OPT_ROLE = 256, OPT_NAME, OPT_LISTEN, OPT_PEER, OPT_KEY, OPT_SYNC, OPT_COMMIT, OPT_SYNC_TIMEOUT,
	       OPT_LOG_RETAIN, OPT_HEARTBEAT, OPT_LEADER_TIMEOUT, OPT_IO_URING, OPT_WRITEBACK,
	       OPT_ACL, OPT_HELP };
	static const struct option longopts[] = {
		{ "role", required_argument, 0, OPT_ROLE },
		{ "name", required_argument, 0, OPT_NAME },
		{ "listen", required_argument, 0, OPT_LISTEN },
		{ "peer", required_argument, 0, OPT_PEER },
		{ "key", required_argument, 0, OPT_KEY },
		{ "sync", required_argument, 0, OPT_SYNC },
		{ "commit", required_argument, 0, OPT_COMMIT },
		{ "sync-timeout", required_argument, 0, OPT_SYNC_TIMEOUT },
		{ "log-retain", required_argument, 0, OPT_LOG_RETAIN },
		{ "heartbeat", required_argument, 0, OPT_HEARTBEAT },
		{ "leader-timeout", required_argument, 0, OPT_LEADER_TIMEOUT },
		{ "io-uring", required_argument, 0, OPT_IO_URING },
		{ "writeback", required_argument, 0, OPT_WRITEBACK },
		{ "acl", required_argument, 0, OPT_ACL },
		{ "help", no_argument, 0, OPT_HELP },
		{ 0, 0, 0, 0 },
	};
	int c;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+:fo:", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = 1;
			break;
		case 'o':
			if (o->nfuse_opts >= 16) {
				die_msg("too many -o options");
				return -1;
			}
			o->fuse_opts[o->nfuse_opts++] = optarg;
			break;
		case OPT_ROLE:
			if (!strcmp(optarg, "leader"))
				o->node.role = ROLE_LEADER;
			else if (!strcmp(optarg, "follower"))
				o->node.role = ROLE_FOLLOWER;
			else {
				die_msg("invalid role '%s' (leader or follower)", optarg);
				return -1;
			}
			break;
		case OPT_NAME:
			if (!valid_node_name(optarg))
				return -1;
			o->node.name = optarg;
			break;
		case OPT_KEY:
			o->node.keyfile = optarg;
			break;
		case OPT_LISTEN:
		case OPT_PEER:
			if (parse_hostport(optarg)) {
				die_msg("invalid address '%s' (HOST:PORT expected)", optarg);
				return -1;
			}
			if (c == OPT_LISTEN) {
				o->repl.listen = optarg;
			} else if (o->repl.npeers >= REPL_MAX_PEERS) {
				die_msg("too many --peer options (at most %d)", REPL_MAX_PEERS);
				return -1;
			} else {
				o->repl.peers[o->repl.npeers++] = optarg;
			}
			break;
		case OPT_SYNC:
			if (repl_parse_mode(optarg, &o->repl)) {
				die_msg("invalid sync mode '%s' (async, all or quorum=N)", optarg);
				return -1;
			}
			break;
		case OPT_COMMIT:
			if (strcmp(optarg, "fsync") && strcmp(optarg, "write")) {
				die_msg("invalid commit point '%s' (fsync or write)", optarg);
				return -1;
			}
			o->repl.commit_write = !strcmp(optarg, "write");
			break;
		case OPT_SYNC_TIMEOUT:
			if (parse_ms("--sync-timeout", optarg, &o->repl.sync_timeout_ms))
				return -1;
			break;
		case OPT_HEARTBEAT:
			if (parse_ms("--heartbeat", optarg, &o->repl.heartbeat_ms))
				return -1;
			break;
		case OPT_LEADER_TIMEOUT:
			if (parse_ms("--leader-timeout", optarg, &o->repl.leader_timeout_ms))
				return -1;
			break;
		case OPT_IO_URING:
			if ((o->ring_off = parse_either("--io-uring", optarg, "auto", "off")) < 0)
				return -1;
			break;
		case OPT_ACL:
			if ((o->acl_off = parse_either("--acl", optarg, "auto", "off")) < 0)
				return -1;
			break;
		case OPT_WRITEBACK: {
			int off = parse_either("--writeback", optarg, "on", "off");
			if (off < 0)
				return -1;
			o->wb_on = !off;
			break;
		}
		case OPT_LOG_RETAIN: {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);
			int shift = *end == 'K' || *end == 'k' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : *end == 'T' ? 40 : 0;
			if (shift)
				end++;
			if (!v || *end || *optarg == '-' || v > (~0ull >> shift)) {
				die_msg("invalid size '%s' for --log-retain (bytes, or with K, M, G or T)", optarg);
				return -1;
			}
			o->node.log_retain = (uint64_t)v << shift;
			break;
		}
		case OPT_HELP:
			mount_usage(stdout);
			exit(0);
		case ':':
			die_msg("option '%s' needs a value", argv[optind - 1]);
			return -1;
		default:
			die_msg("unknown option '%s' (see 'repfs mount --help')", argv[optind - 1]);
			return -1;
		}
	}
	if (argc - optind != 2) {
		die_msg("usage: repfs mount [OPTIONS] DATADIR MOUNTPOINT");
		return -1;
	}
	o->node.datadir = argv[optind];
	o->mountpoint = argv[optind + 1];
	if (!o->node.keyfile) {
		die_msg("--key KEYFILE is required (create one with 'repfs keygen')");
		return -1;
	}
	if (o->wb_on > 0 && o->repl.commit_write) {
		die_msg("--writeback on cannot go with --commit write (every write must reach the log when made)");
		return -1;
	}
	if (o->wb_on < 0)
		o->wb_on = !o->repl.commit_write;
	return 0;
}

/*
 * 1 if something is mounted on the absolute path mp (per /proc/self/mountinfo,
 * which answers without asking the file system); dev gets the device
 * ("MAJOR:MINOR") of the last such mount, the one on top.
 */
static int mounted_dev(const char *mp, char dev[32])
{
	char line[3 * PATH_MAX];
	int found = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	while (f && fgets(line, sizeof(line), f)) {
		char m[PATH_MAX], d[32];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", d, m) != 2)
			continue;
		mountinfo_unescape(m);
		if (!strcmp(m, mp)) {
			found = 1;
			if (dev)
				memcpy(dev, d, sizeof(d));
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* ---- the connection's guard ---- */

/*
 * The guard (below) must not abort once the mount is being taken down:
 * after an unmount the connection's number is free, and the next mount
 * (another daemon's) may take it while this one still cleans up. A byte on
 * the guard's socket (*fd, the daemon's end; -1 after) tells it so.
 */
static void guard_release(int *fd)
{
	if (*fd < 0)
		return;
	if (send(*fd, "c", 1, MSG_NOSIGNAL) < 0)	/* (a guard that died meanwhile is no SIGPIPE) */
		rlog(LOG_WARNING, "unable to release the guard of the FUSE connection: %s", strerror(errno));
	close(*fd);
	*fd = -1;
}

/*
 * The kernel aborts a FUSE connection, failing its requests with ENOTCONN,
 * when the last descriptor of /dev/fuse goes: at the daemon's death. But a
 * daemon killed (kill -9) while one of its threads waits for an answer from
 * its own mount (write_back()'s open through it, fs/fuse_ops.c) that a
 * killed thread had taken never finishes dying: that wait is
 * uninterruptible, the process keeps its descriptors (/dev/fuse among
 * them), and a program's request waits for ever, in D state (a fuzz
 * campaign met it twice, in tests/fault/crash_opfuzz.sh with the writeback
 * cache, both times under an lseek's SEEK_DATA). A child process waits for
 * the daemon to end -- the other end of a socket pair only the daemon holds
 * closes, or the thread that forked it, the daemon's main thread, which
 * lives until the session ends, exits (PR_SET_PDEATHSIG) -- and then aborts
 * the connection through fusectl, as the kernel would have, unless the
 * daemon released it first (guard_release(): it ended the session itself).
 * Returns the daemon's end of the socket, -1 if unguarded. Everything it
 * inherited is closed first (the DATADIR lock, /dev/fuse); it calls only
 * async-signal-safe functions (the daemon has threads).
 */
static volatile sig_atomic_t guard_orphaned;

static void guard_on_parent_death(int sig)
{
	(void)sig;
	guard_orphaned = 1;
}

static int guard_connection(const char *mp)
{
	char path[96], dev[32], c;
	unsigned major, minor;
	long conn = -1;
	int p[2];
	pid_t pid, daemon_pid;

	/* the mount on top at mp, ours: its device's minor is the connection's number */
	if (mounted_dev(mp, dev) && sscanf(dev, "%u:%u", &major, &minor) == 2 && major == 0)
		conn = (long)minor;
	if (conn < 0) {
		rlog(LOG_INFO, "no FUSE connection found for '%s' in /proc/self/mountinfo: not guarded", mp);
		return -1;
	}
	snprintf(path, sizeof(path), "/sys/fs/fuse/connections/%ld/abort", conn);
	if (access(path, F_OK) < 0) {
		/* fusectl not mounted (systemd mounts it at boot; this machine has none): as it would */
		if (mount("fusectl", "/sys/fs/fuse/connections", "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ||
		    access(path, F_OK) < 0) {
			rlog(LOG_WARNING, "unable to reach '%s' (fusectl): %s; if this daemon dies, programs using the "
					  "mount may wait until it is unmounted",
			     path, strerror(errno));
			return -1;
		}
		rlog(LOG_NOTICE, "mounted fusectl on /sys/fs/fuse/connections, as systemd does at boot");
	}
	daemon_pid = getpid();
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) < 0 || (pid = fork()) < 0) {
		rlog(LOG_WARNING, "unable to start the guard of FUSE connection %ld: %s", conn, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		struct sigaction ign = { .sa_handler = SIG_IGN };
		struct sigaction wake = { .sa_handler = guard_on_parent_death };	/* no SA_RESTART */
		struct pollfd pf = { .fd = 0, .events = POLLIN };
		sigset_t usr1, waiting;
		ssize_t n;
		int fd;
		if (dup2(p[0], 0) < 0)
			_exit(1);
		close_range(1, ~0U, 0);
		prctl(PR_SET_NAME, "repfs-guard", 0, 0, 0);
		/* a ^C to a foreground daemon's group must not end the guard first */
		sigaction(SIGINT, &ign, NULL);
		sigaction(SIGTERM, &ign, NULL);
		sigaction(SIGHUP, &ign, NULL);
		/* SIGUSR1 at the main thread's end, taken only inside ppoll(): no wake-up lost */
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		sigprocmask(SIG_BLOCK, &usr1, &waiting);
		sigdelset(&waiting, SIGUSR1);
		sigaction(SIGUSR1, &wake, NULL);
		prctl(PR_SET_PDEATHSIG, SIGUSR1, 0, 0, 0);
		if (getppid() != daemon_pid)
			guard_orphaned = 1;	/* it died before the prctl */
		while (!guard_orphaned && ppoll(&pf, 1, NULL, &waiting) < 0 && errno == EINTR)
			;
		/* released (a byte), or the daemon gone (EOF) or its main thread (nothing to read) */
		while ((n = recv(0, &c, 1, MSG_DONTWAIT)) < 0 && errno == EINTR)
			;
		if (n == 1)
			_exit(0);	/* released: the session ended by the daemon's own hand */
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd >= 0 && write(fd, "1", 1) < 0) {
			/* gone meanwhile: nothing to abort */
		}
		_exit(0);
	}
	close(p[0]);
	rlog(LOG_INFO, "FUSE connection %ld is guarded by pid %d (aborted if this daemon dies)", conn, (int)pid);
	return p[1];
}

/*
 * Tests: a child process holds a descriptor of /dev/fuse, as a daemon that
 * cannot finish dying does, so that the daemon's death leaves the
 * connection alive (tests/fault/crash_orphan.sh).
 */
static void test_hold_fuse(int fusefd)
{
	pid_t pid = fork();

	if (pid == 0) {
		if (dup2(fusefd, 3) < 0)	/* without O_CLOEXEC, and nothing else */
			_exit(1);
		close_range(0, 2, 0);
		close_range(4, ~0U, 0);
		for (;;)
			pause();
	}
	if (pid > 0)
		rlog(LOG_INFO, "test hook: /dev/fuse held by pid %d", (int)pid);
}

/* 0 if mp is a directory nothing is mounted on, else prints why. */
static int check_mountpoint(const char *mp, char *real, size_t len)
{
	struct stat st;

	if (stat(mp, &st) < 0) {
		die_msg("mountpoint '%s' is not usable: %s", mp, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		die_msg("mountpoint '%s' is not a directory", mp);
		return -1;
	}
	if (!realpath(mp, real) || strlen(real) >= len) {
		die_msg("mountpoint '%s' is not usable: %s", mp, strerror(errno));
		return -1;
	}
	if (mounted_dev(real, NULL)) {
		die_msg("mountpoint '%s' is in use (something is mounted there)", mp);
		return -1;
	}
	return 0;
}

static void set_bdi(const char *dev, const char *knob, unsigned value, const char *what)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "/sys/class/bdi/%s/%s", dev, knob);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || dprintf(fd, "%u\n", value) < 0)
		rlog(LOG_INFO, "unable to %s ('%s'): %s", what, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * Our own mount's backing device info (named after its device, which
 * /proc/self/mountinfo gives without asking the not yet served mount):
 * * The kernel caps a FUSE mount's readahead at the default 128 KiB whatever
 *   max_readahead says, so a cold sequential read arrives as 128 KiB
 *   requests: read_ahead_kb is raised to the largest request, 1 MiB, eight
 *   times fewer requests.
 * * With the writeback cache (fs/fuse_ops.c, op_init()), FUSE's strict_limit
 *   throttles a writer as soon as the mount holds its share of the system's
 *   dirty pages, a share meant for an untrusted daemon (max_ratio 1%, about
 *   50 MB here): 4 KiB random writes then wait for writeback every few
 *   pages, 62,000/s against 406,000/s without it (docs/decisions.md 3). This
 *   daemon runs as root and is trusted as a disk's driver is: strict_limit
 *   is lifted, and the mount's dirty pages are held to the kernel's global
 *   limits as a disk's are.
 */
static void tune_bdi(const char *mp, int wb)
{
	char dev[32];

	if (!mounted_dev(mp, dev))
		return;
	set_bdi(dev, "read_ahead_kb", (unsigned)(fuse_ops_max_payload() >> 10), "raise the mount's readahead");
	if (wb)
		set_bdi(dev, "strict_limit", 0, "lift the mount's strict dirty-page limit");
}

static int remember_keyfile(struct node *n, const char *keyfile)
{
	char real[PATH_MAX];
	int fd, ret = 0;

	if (!realpath(keyfile, real))
		return -errno;
	fd = openat(n->dfd, "keyfile", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (dprintf(fd, "%s\n", real) < 0)
		ret = -EIO;
	close(fd);
	return ret;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_opts o = { .repl = { .mode = SYNC_QUORUM, .quorum = 1 }, .wb_on = -1 };
	char err[PATH_MAX + 256], mp[PATH_MAX], fsopts[PATH_MAX + 256];
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *lc = NULL;
	struct ctl_server *ctl = NULL;
	struct repl *repl = NULL;
	struct fuse_session *se = NULL;
	struct node *n = NULL;
	int ret = 1, mounted = 0, listenfd = -1, guard = -1;

	if (parse_args(argc, argv, &o))
		return 2;
	if (check_mountpoint(o.mountpoint, mp, sizeof(mp)))
		return 1;
	umask(0);
	if (node_open(&n, &o.node, err, sizeof(err))) {
		die_msg("%s", err);
		return 1;
	}
	snprintf(n->mountpoint, sizeof(n->mountpoint), "%s", mp);
	n->commit_write = o.repl.commit_write;
	if (n->st.role == ROLE_FOLLOWER && !o.repl.npeers)
		rlog(LOG_WARNING, "follower without --peer: serving '%s' read-only, following nobody", n->datadir);
	if (n->st.role == ROLE_LEADER && o.repl.npeers) {
		/* never act as leader before asking the peers whether another one took over */
		uint64_t epoch = 0;
		char who[65] = "";
		repl_highest_epoch(n->key, o.repl.peers, o.repl.npeers, &epoch, who, sizeof(who));
		if (epoch > n->st.epoch) {
			rlog(LOG_WARNING,
			     "peer '%s' is at epoch %" PRIu64 " (ours is %" PRIu64 "): another node was promoted; "
			     "starting as a follower",
			     who, epoch, n->st.epoch);
			if (node_step_down(n, epoch, NULL)) {
				die_msg("unable to record the step-down in '%s/state'", n->datadir);
				goto out;
			}
		}
	}
	if (o.repl.listen) {
		listenfd = repl_listen_socket(o.repl.listen);
		if (listenfd < 0) {
			die_msg("unable to listen on '%s': %s", o.repl.listen, strerror(-listenfd));
			goto out;
		}
	}
	if (strpbrk(n->datadir, ",\\")) {
		die_msg("data directory '%s' must not contain ',' or '\\'", n->datadir);
		goto out;
	}
	if (remember_keyfile(n, o.node.keyfile))
		rlog(LOG_WARNING, "unable to remember the key file path in '%s/keyfile'", n->datadir);
	/* a follower's mount is read-only for the kernel too: EROFS, and ST_RDONLY in statvfs */
	snprintf(fsopts, sizeof(fsopts), "default_permissions,fsname=repfs:%s,subtype=repfs%s%s", n->datadir,
		 geteuid() == 0 ? ",allow_other" : "", n->st.role == ROLE_FOLLOWER ? ",ro" : "");
	if (fuse_opt_add_arg(&args, "repfs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, fsopts))
		goto out;
	for (int i = 0; i < o.nfuse_opts; i++)
		if (fuse_opt_add_arg(&args, "-o") || fuse_opt_add_arg(&args, o.fuse_opts[i]))
			goto out;
	{
		/* programs' open files and directories the kernel holds are descriptors here (fs/inodes.c) */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	n->open_max = ino_fd_share();
	if (ino_table_setup(n)) {
		die_msg("out of memory");
		goto out;
	}
	se = fuse_session_new(&args, &repfs_ll_ops, sizeof(repfs_ll_ops), n);
	if (!se) {
		die_msg("unable to set up FUSE (check the -o options)");
		goto out;
	}
	n->ring_off = o.ring_off;
	n->wb_on = o.wb_on;
	n->acl_off = o.acl_off;
	if (!o.ring_off)
		fring_enable_kernel();
	if (fuse_session_mount(se, mp)) {
		die_msg("unable to mount on '%s' (is /dev/fuse usable?)", mp);
		goto out;
	}
	mounted = 1;
	tune_bdi(mp, n->st.role == ROLE_LEADER && o.wb_on);
	if (fuse_ops_attach_io(se)) {
		die_msg("unable to set up FUSE's device I/O");
		goto out;
	}
	n->se = se;
	n->mount_rw = n->st.role == ROLE_LEADER;
	if (ctl_open(&ctl, n)) {
		die_msg("unable to create the control socket '%s/ctl.sock'", n->datadir);
		goto out;
	}
	rlog(LOG_NOTICE, "mounted '%s' on '%s' as %s, epoch %" PRIu64 ", seq %" PRIu64, n->datadir, mp,
	     role_name(n->st.role), n->st.epoch, oplog_last(n->log).seq);
	if (fuse_daemonize(o.foreground)) {
		die_msg("unable to daemonize");
		goto out;
	}
	rlog_setup(n->st.name, n->logfile, o.foreground);
	guard = guard_connection(mp);
	if (getenv("REPFS_TEST_HOLD_FUSE"))
		test_hold_fuse(fuse_session_fd(se));
	/*
	 * With the writeback cache the daemon writes back its own mount's
	 * dirty pages: its threads (all made from here on, which inherit it)
	 * must not be throttled for dirty pages that only they can clean, nor
	 * have their allocations reclaim by writing back through the mount
	 * (PR_SET_IO_FLUSHER, as FUSE daemons and loop devices do; root has
	 * CAP_SYS_RESOURCE). Without it the mount holds no dirty pages but a
	 * shared mapping's, as before.
	 */
	if (o.wb_on && n->st.role == ROLE_LEADER && prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		rlog(LOG_INFO, "unable to mark the daemon an I/O flusher: %s", strerror(errno));
	if (node_start(n) || ctl_start(ctl)) {
		rlog(LOG_ERR, "unable to start the node's threads");
		goto out;
	}
	ret = repl_start(&repl, n, &o.repl, listenfd);
	listenfd = -1;
	if (ret) {
		ret = 1;
		rlog(LOG_ERR, "unable to start replication; unmounting");
		goto out;
	}
	n->repl = repl;
	if (fuse_set_signal_handlers(se)) {
		rlog(LOG_ERR, "unable to set signal handlers");
		goto out;
	}
	lc = fuse_loop_cfg_create();
	if (!lc)
		goto out;
	fuse_loop_cfg_set_max_threads(lc, 32);
	fuse_loop_cfg_set_idle_threads(lc, 8);
	ret = fuse_session_loop_mt(se, lc) ? 1 : 0;
	guard_release(&guard);	/* unmounted, or about to be (below) */
	if (getenv("REPFS_TEST_STOP_DELAY_MS"))	/* tests: a slow clean-up (tests/fault/crash_orphan.sh) */
		usleep((useconds_t)atoi(getenv("REPFS_TEST_STOP_DELAY_MS")) * 1000);
	fring_stop(n->ring);	/* its threads too finish their requests before the node goes */
	fuse_remove_signal_handlers(se);
	rlog(LOG_NOTICE, "unmounted '%s'; stopping", mp);
out:
	if (lc)
		fuse_loop_cfg_destroy(lc);
	/* first the threads that use the repl: the control thread (status,
	 * verify) and the flusher (its checkpoints ask what followers hold) */
	ctl_stop(ctl);
	node_stop_background(n);
	if (n)
		n->repl = NULL;
	repl_stop(repl);
	if (listenfd >= 0)
		close(listenfd);
	guard_release(&guard);
	if (mounted)
		fuse_session_unmount(se);
	if (n)
		n->se = NULL;
	if (se)
		fuse_session_destroy(se);
	if (n) {
		fring_free(n->ring);
		fring_free(n->ring_new);	/* made at INIT, never granted */
		n->ring = n->ring_new = NULL;
	}
	if (n)
		ino_table_free(n);
	fuse_opt_free_args(&args);
	node_close(n);
	return ret;
}
