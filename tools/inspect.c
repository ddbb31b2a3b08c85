/* inspect.c -- 'repfs status', 'repfs log' and 'repfs replay' */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../fs/store.h"
#include "../lib/crypto.h"
#include "../lib/util.h"
#include "../net/ctl.h"
#include "../replication/oplog.h"
#include "../replication/state.h"
#include "cli.h"

/* Finds "key": in a flat JSON object and copies its raw value. */
static int json_field(const char *json, const char *key, char *out, size_t len)
{
	char pat[80];
	const char *p, *e;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p == '"') {
		e = strchr(++p, '"');
	} else if (*p == '[') {
		e = strchr(p, ']');
		if (e)
			e++;
	} else {
		e = p + strcspn(p, ",}");
	}
	if (!e || (size_t)(e - p) >= len)
		return -1;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = 0;
	return 0;
}

static double field_num(const char *json, const char *key)
{
	char v[64];

	return json_field(json, key, v, sizeof(v)) ? 0 : strtod(v, NULL);
}

/* A snapshot in progress as a bar; a finished one as a line. */
static void print_snapshot(const char *json)
{
	const char *snap = strstr(json, "\"snapshot\":{");
	char state[32], obj[2048];
	double done, total, files, ftotal, rate, eta, elapsed;
	const char *end;

	if (!snap || !(end = strchr(snap, '}')) || (size_t)(end - snap) >= sizeof(obj))
		return;
	memcpy(obj, snap + 11, (size_t)(end - snap - 10));
	obj[end - snap - 10] = 0;
	if (json_field(obj, "state", state, sizeof(state)) || !strcmp(state, "none"))
		return;
	done = field_num(obj, "bytes_done");
	total = field_num(obj, "bytes_total");
	files = field_num(obj, "files_done");
	ftotal = field_num(obj, "files_total");
	rate = field_num(obj, "rate_bytes_per_s");
	eta = field_num(obj, "eta_s");
	elapsed = field_num(obj, "elapsed_s");
	if (!strcmp(state, "transferring")) {
		double f = total > 0 ? done / total : ftotal > 0 ? files / ftotal : 0;
		char bar[41];
		if (f > 1)
			f = 1;
		for (int i = 0; i < 40; i++)
			bar[i] = i < (int)(f * 40) ? '#' : '.';
		bar[40] = 0;
		printf("%-16s [%s] %3.0f%%  %.0f/%.0f objects  %.1f/%.1f MiB  %.1f MiB/s  eta %.1f s%s\n", "snapshot", bar,
		       f * 100, files, ftotal, done / 1048576, total / 1048576, rate / 1048576, eta < 0 ? 0 : eta,
		       strstr(obj, "\"yielding\":true") ? "  (one CPU: the leader is serving writes)" : "");
	} else {
		char check[32];
		printf("%-16s %s: %.0f objects, %.1f MiB of %.1f MiB transferred, %.1f s", "snapshot", state, files,
		       field_num(obj, "bytes_received") / 1048576, done / 1048576, elapsed);
		if (!json_field(obj, "check", check, sizeof(check)) && strcmp(check, "none"))
			printf("; checked against the leader: %s", check);
		putchar('\n');
	}
}

static void print_human(const char *json)
{
	static const char *const rows[][2] = {
		{ "name", "name" },
		{ "role", "role" },
		{ "running", "running" },
		{ "epoch", "epoch" },
		{ "seq", "last seq" },
		{ "durable", "durable seq" },
		{ "applied", "applied seq" },
		{ "checkpoint", "checkpoint" },
		{ "leader", "leader" },
		{ "mode", "replication" },
		{ "sync", "sync mode" },
		{ "fell_back_to_async", "fell back" },
		{ "following", "following" },
		{ "leader_addr", "leader address" },
		{ "leader_seq", "leader seq" },
		{ "lag", "lag (records)" },
		{ "ms_since_leader", "last heard (ms)" },
		{ "last_error", "last error" },
		{ "log_first_seq", "log from seq" },
		{ "log_bytes", "log bytes" },
		{ "datadir", "data directory" },
		{ "mountpoint", "mountpoint" },
		{ "divergent", "divergent writes" },
		{ "fuse_io", "FUSE requests via" },
		{ "writeback_cache", "writeback cache" },
		{ "open_files", "open files" },
		{ "open_files_max", "open files (most)" },
		{ "dir_descriptors", "dir descriptors" },
		{ "dir_descriptors_max", "dir descriptors (most)" },
		{ "uptime_s", "uptime (s)" },
		{ "busy", "busy" },
		{ "faults", "faults" },
	};
	const char *peers, *p, *peers_end = NULL;
	char v[4096], head[16384];

	/* the node's own fields: everything but the peers array */
	peers = strstr(json, "\"peers\":[");
	if (peers) {
		const char *end = peers;
		int depth = 0;
		for (; *end; end++) {
			if (*end == '[')
				depth++;
			else if (*end == ']' && --depth == 0)
				break;
		}
		peers_end = end;
		snprintf(head, sizeof(head), "%.*s%s", (int)(peers - json), json, *end ? end + 1 : "");
	} else {
		snprintf(head, sizeof(head), "%s", json);
	}
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (json_field(head, rows[i][0], v, sizeof(v)))
			continue;
		if (!strcmp(rows[i][0], "faults") && !strcmp(v, "[]"))
			snprintf(v, sizeof(v), "none");
		if (!strcmp(rows[i][0], "last_error") && !*v)
			continue;
		if (!strcmp(rows[i][0], "busy")) {
			if (strcmp(v, "true"))
				continue;
			snprintf(v, sizeof(v), "a change holds the node's locks (is the disk of the data directory "
					       "answering?): the positions above may be behind");
		}
		if (!strcmp(rows[i][0], "mode") && !strcmp(v, "standalone"))
			snprintf(v, sizeof(v), "standalone (no followers to wait for)");
		printf("%-16s %s\n", rows[i][1], v);
	}
	print_snapshot(json);
	if (!peers)
		return;
	p = peers + 9;
	if (*p != ']')
		printf("%-10s %-22s %-9s %10s %10s %10s %8s %10s %8s %s\n", "follower", "address", "connected", "received",
		       "durable", "applied", "lag", "lag bytes", "lag ms", "resync");
	while ((p = strchr(p, '{')) && p < peers_end) {
		char name[80], addr[80], conn[8], rcv[24], dur[24], app[24], lag[24], lagms[24], lagb[24], rs[8], sn[8];
		const char *end = strchr(p, '}');
		char obj[1024];

		if (!end || (size_t)(end - p) >= sizeof(obj))
			break;
		memcpy(obj, p, (size_t)(end - p + 1));
		obj[end - p + 1] = 0;
		if (json_field(obj, "name", name, sizeof(name)) || json_field(obj, "addr", addr, sizeof(addr)) ||
		    json_field(obj, "connected", conn, sizeof(conn)) || json_field(obj, "received", rcv, sizeof(rcv)) ||
		    json_field(obj, "durable", dur, sizeof(dur)) || json_field(obj, "applied", app, sizeof(app)) ||
		    json_field(obj, "lag", lag, sizeof(lag)) || json_field(obj, "lag_ms", lagms, sizeof(lagms)))
			break;
		if (json_field(obj, "lag_bytes", lagb, sizeof(lagb)))
			snprintf(lagb, sizeof(lagb), "?");
		if (json_field(obj, "needs_resync", rs, sizeof(rs)))
			snprintf(rs, sizeof(rs), "?");
		if (json_field(obj, "snapshotting", sn, sizeof(sn)))
			snprintf(sn, sizeof(sn), "false");
		printf("%-10s %-22s %-9s %10s %10s %10s %8s %10s %8s %s\n", name, addr, conn, rcv, dur, app, lag, lagb,
		       lagms, !strcmp(sn, "true") ? "snapshot" : !strcmp(rs, "true") ? "needed" : "-");
		p = end + 1;
	}
}

/* Status of a node whose daemon is not running, from its state file. */
static int offline_status(const char *datadir, int json)
{
	struct node_state st;
	char buf[PATH_MAX + 1024];
	int dfd, ret;

	dfd = open(datadir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	ret = state_load(dfd, &st);
	close(dfd);
	if (ret)
		return ret;
	snprintf(buf, sizeof(buf),
		 "{\"name\":\"%s\",\"role\":\"%s\",\"running\":false,\"epoch\":%" PRIu64
		 ",\"checkpoint\":%" PRIu64 ",\"datadir\":\"%s\",\"peers\":[],\"faults\":[]}\n",
		 st.name, role_name(st.role), st.epoch, st.checkpoint, datadir);
	if (json)
		fputs(buf, stdout);
	else
		print_human(buf);
	return 0;
}

int cmd_status(int argc, char **argv)
{
	char datadir[PATH_MAX], *reply;
	const char *target = NULL;
	int json = 0, ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] == '-' || target) {
			die_msg("usage: repfs status DATADIR|MOUNTPOINT [--json]");
			return 2;
		} else
			target = argv[i];
	}
	if (!target) {
		die_msg("usage: repfs status DATADIR|MOUNTPOINT [--json]");
		return 2;
	}
	ret = resolve_datadir(target, datadir, sizeof(datadir));
	if (ret) {
		die_msg("'%s' is neither a repfs data directory nor a repfs mountpoint", target);
		return 1;
	}
	reply = malloc(65536);
	if (!reply)
		return 1;
	ret = ctl_request(datadir, "status", reply, 65536);
	if (ret == -ENOENT || ret == -ECONNREFUSED) {
		free(reply);
		ret = offline_status(datadir, json);
		if (ret) {
			die_msg("unable to read the state of '%s': %s", datadir, strerror(-ret));
			return 1;
		}
		return 0;
	}
	if (ret) {
		die_msg("unable to ask the daemon of '%s': %s", datadir, strerror(-ret));
		free(reply);
		return 1;
	}
	if (json)
		fputs(reply, stdout);
	else
		print_human(reply);
	free(reply);
	return 0;
}

struct log_args {
	const char *datadir;
	const char *keyfile;
	const char *outdir;
	uint64_t from;
	int verify;
};

static int parse_log_args(int argc, char **argv, struct log_args *a, int want_outdir, const char *usage)
{
	int pos = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--verify") && !want_outdir) {
			a->verify = 1;
		} else if ((!strcmp(argv[i], "--from") && !want_outdir) || !strcmp(argv[i], "--key")) {
			char *end;
			if (i + 1 >= argc) {
				die_msg("option '%s' needs a value", argv[i]);
				return -1;
			}
			if (!strcmp(argv[i], "--key")) {
				a->keyfile = argv[++i];
				continue;
			}
			a->from = strtoull(argv[++i], &end, 10);
			if (*end || !*argv[i]) {
				die_msg("invalid sequence number '%s'", argv[i]);
				return -1;
			}
		} else if (argv[i][0] == '-') {
			die_msg("unknown option '%s'; usage: %s", argv[i], usage);
			return -1;
		} else if (pos == 0) {
			a->datadir = argv[i];
			pos++;
		} else if (pos == 1 && want_outdir) {
			a->outdir = argv[i];
			pos++;
		} else {
			die_msg("usage: %s", usage);
			return -1;
		}
	}
	if (!a->datadir || (want_outdir && !a->outdir)) {
		die_msg("usage: %s", usage);
		return -1;
	}
	return 0;
}

/* Opens DATADIR/log and loads the key for it. */
static int open_log_dir(struct log_args *a, char *datadir, size_t len, int *logfd, struct key **k)
{
	char keyfile[PATH_MAX], path[PATH_MAX + 8];
	int ret;

	if (resolve_datadir(a->datadir, datadir, len)) {
		die_msg("'%s' is not a repfs data directory", a->datadir);
		return -1;
	}
	if (!a->keyfile) {
		if (remembered_keyfile(datadir, keyfile, sizeof(keyfile))) {
			die_msg("no key file known for '%s'; pass --key KEYFILE", datadir);
			return -1;
		}
		a->keyfile = keyfile;
	}
	ret = key_load(k, a->keyfile);
	if (ret) {
		die_msg("unable to load key file '%s': %s", a->keyfile,
			ret == -EINVAL ? "not a repfs key" : ret == -EPERM ? "readable by others" : strerror(-ret));
		return -1;
	}
	{
		/* a wrong key would read as damage at seq 1: say what it is */
		struct node_state st;
		uint8_t fpr[CRYPTO_MAC_BYTES];
		int dfd = open(datadir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		ret = dfd < 0 ? -errno : state_load(dfd, &st);
		if (dfd >= 0)
			close(dfd);
		key_fingerprint(*k, fpr);
		if (!ret && mac_equal(fpr, st.key_fpr) != 0) {
			die_msg("key file '%s' is not the key of data directory '%s'", a->keyfile, datadir);
			key_free(*k);
			return -1;
		}
	}
	snprintf(path, sizeof(path), "%s/log", datadir);
	*logfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*logfd < 0) {
		die_msg("unable to open '%s': %s", path, strerror(errno));
		key_free(*k);
		return -1;
	}
	return 0;
}

static void print_record(const struct record *r)
{
	char line[3 * PATH_MAX];

	record_describe(r, line, sizeof(line));
	puts(line);
}

int cmd_log(int argc, char **argv)
{
	struct log_args a = { 0 };
	char datadir[PATH_MAX], seg[32];
	struct oplog_reader *rd = NULL;
	struct key *k = NULL;
	struct record r;
	uint64_t count = 0, first = 0, last = 0, seq, off;
	int logfd = -1, ret, rc = 1;

	if (parse_log_args(argc, argv, &a, 0, "repfs log DATADIR [--from SEQ] [--verify] [--key KEYFILE]"))
		return 2;
	if (open_log_dir(&a, datadir, sizeof(datadir), &logfd, &k))
		return 1;
	ret = oplog_reader_open(&rd, logfd, k, a.verify ? 1 : a.from);
	if (ret) {
		die_msg("unable to read the log of '%s': %s", datadir, strerror(-ret));
		goto out;
	}
	while ((ret = oplog_reader_next(rd, &r)) == 1) {
		if (!count)
			first = r.seq;
		last = r.seq;
		count++;
		if (!a.verify)
			print_record(&r);
	}
	if (ret < 0) {
		oplog_reader_where(rd, &seq, seg, sizeof(seg), &off);
		die_msg("log of '%s' is damaged at seq %" PRIu64 " (segment '%s', offset %" PRIu64 "): %s", datadir,
			seq, seg, off, ret == -EBADMSG ? "bad record or broken chain" : strerror(-ret));
		goto out;
	}
	if (a.verify)
		printf("log of '%s' is intact: %" PRIu64 " records, seq %" PRIu64 "..%" PRIu64 "%s\n", datadir, count,
		       first, last, first > 1 ? " (older records were trimmed)" : "");
	rc = 0;
out:
	oplog_reader_free(rd);
	key_free(k);
	if (logfd >= 0)
		close(logfd);
	return rc;
}

int cmd_replay(int argc, char **argv)
{
	struct log_args a = { 0 };
	char datadir[PATH_MAX];
	struct oplog_reader *rd = NULL;
	struct replay *rp = NULL;
	struct store *st = NULL;
	struct key *k = NULL;
	struct record r;
	uint64_t applied = 0, skipped = 0;
	int logfd = -1, ret, rc = 1;

	if (parse_log_args(argc, argv, &a, 1, "repfs replay DATADIR OUTDIR [--key KEYFILE]"))
		return 2;
	if (open_log_dir(&a, datadir, sizeof(datadir), &logfd, &k))
		return 1;
	umask(0);
	if (mkdir(a.outdir, 0755) < 0 && errno != EEXIST) {
		die_msg("unable to create '%s': %s", a.outdir, strerror(errno));
		goto out;
	}
	{
		DIR *d = opendir(a.outdir);
		struct dirent *de;
		int entries = 0;
		while (d && (de = readdir(d)))
			entries += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
		if (d)
			closedir(d);
		if (!d || entries) {
			die_msg("'%s' must be an empty directory", a.outdir);
			goto out;
		}
	}
	ret = store_open(&st, a.outdir);
	if (ret) {
		die_msg("unable to use '%s' as a tree: %s", a.outdir, strerror(-ret));
		goto out;
	}
	ret = oplog_reader_open(&rd, logfd, k, 1);
	if (ret) {
		die_msg("unable to read the log of '%s': %s", datadir, strerror(-ret));
		goto out;
	}
	ret = oplog_reader_next(rd, &r);
	if (ret == 1 && r.seq != 1) {
		die_msg("the log of '%s' starts at seq %" PRIu64 " (older records were trimmed past --log-retain): "
			"replay needs it whole",
			datadir, r.seq);
		goto out;
	}
	oplog_reader_free(rd);
	rd = NULL;
	ret = oplog_reader_open(&rd, logfd, k, 1);
	if (ret) {
		die_msg("unable to read the log of '%s': %s", datadir, strerror(-ret));
		goto out;
	}
	ret = replay_begin(&rp);
	if (ret)
		goto out;
	while ((ret = oplog_reader_next(rd, &r)) == 1) {
		int a2 = replay_apply(rp, st, &r);
		if (a2 < 0) {
			die_msg("replay of %s at seq %" PRIu64 " on '/%s' failed: %s", record_type_name(r.type), r.seq,
				r.path, strerror(-a2));
			goto out;
		}
		if (a2)
			skipped++;
		else
			applied++;
	}
	if (replay_finish(rp, st) < 0) {
		rp = NULL;
		die_msg("unable to set directory times in '%s'", a.outdir);
		goto out;
	}
	rp = NULL;
	if (ret < 0) {
		die_msg("log of '%s' is damaged (see 'repfs log --verify')", datadir);
		goto out;
	}
	printf("replayed %" PRIu64 " records (%" PRIu64 " skipped) into '%s'\n", applied, skipped, a.outdir);
	rc = 0;
out:
	if (rp)
		replay_finish(rp, st);
	oplog_reader_free(rd);
	store_free(st);
	key_free(k);
	if (logfd >= 0)
		close(logfd);
	return rc;
}

int cmd_verify(int argc, char **argv)
{
	char datadir[PATH_MAX], *reply;
	const char *target = NULL, *body;
	int repair = 0, ret, result;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--repair"))
			repair = 1;
		else if (argv[i][0] == '-' || target) {
			die_msg("usage: repfs verify DATADIR|MOUNTPOINT [--repair]");
			return 2;
		} else
			target = argv[i];
	}
	if (!target) {
		die_msg("usage: repfs verify DATADIR|MOUNTPOINT [--repair]");
		return 2;
	}
	if (resolve_datadir(target, datadir, sizeof(datadir))) {
		die_msg("'%s' is neither a repfs data directory nor a repfs mountpoint", target);
		return 2;
	}
	reply = malloc(1 << 17);
	if (!reply)
		return 2;
	ret = ctl_request(datadir, repair ? "verify repair" : "verify", reply, 1 << 17);
	if (ret) {
		die_msg("the node of '%s' is not running (%s); start it to verify it", datadir, strerror(-ret));
		free(reply);
		return 2;
	}
	if (sscanf(reply, "result %d", &result) != 1) {
		die_msg("unexpected answer from the node of '%s'", datadir);
		free(reply);
		return 2;
	}
	body = strchr(reply, '\n');
	body = body ? body + 1 : "";
	if (result == 2) {
		die_msg("%.*s", (int)strcspn(body, "\n"), body);
	} else {
		fputs(body, stdout);
		if (result == 0)
			printf("identical to the leader\n");
	}
	free(reply);
	return result;
}

/* A control answer {"ok":...,"message":"..."}: its message to stdout (0), or as the error (1). */
static int print_answer(const char *reply)
{
	char msg[2100];

	if (json_field(reply, "message", msg, sizeof(msg)))
		snprintf(msg, sizeof(msg), "%s", reply);
	if (strstr(reply, "\"ok\":true")) {
		printf("%s\n", msg);
		return 0;
	}
	die_msg("%s", msg);
	return 1;
}

int cmd_promote(int argc, char **argv)
{
	char datadir[PATH_MAX], reply[2048];
	const char *target = NULL;
	int force = 0, ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--force"))
			force = 1;
		else if (argv[i][0] == '-' || target) {
			die_msg("usage: repfs promote DATADIR|MOUNTPOINT [--force]");
			return 2;
		} else
			target = argv[i];
	}
	if (!target) {
		die_msg("usage: repfs promote DATADIR|MOUNTPOINT [--force]");
		return 2;
	}
	if (resolve_datadir(target, datadir, sizeof(datadir))) {
		die_msg("'%s' is neither a repfs data directory nor a repfs mountpoint", target);
		return 1;
	}
	ret = ctl_request(datadir, force ? "promote force" : "promote", reply, sizeof(reply));
	if (ret) {
		die_msg("the node of '%s' is not running (%s); start it to promote it", datadir, strerror(-ret));
		return 1;
	}
	return print_answer(reply);
}

int cmd_forget(int argc, char **argv)
{
	static const char usage[] = "usage: repfs forget DATADIR|MOUNTPOINT NAME";
	char datadir[PATH_MAX], req[128], reply[2048];

	if (argc != 3 || argv[1][0] == '-' || argv[2][0] == '-') {
		die_msg("%s", usage);
		return 2;
	}
	if (!valid_node_name(argv[2]))
		return 2;
	if (resolve_datadir(argv[1], datadir, sizeof(datadir))) {
		die_msg("'%s' is neither a repfs data directory nor a repfs mountpoint", argv[1]);
		return 1;
	}
	snprintf(req, sizeof(req), "forget %s", argv[2]);
	if (ctl_request(datadir, req, reply, sizeof(reply))) {
		die_msg("the node of '%s' is not running; a leader forgets followers only while it runs", datadir);
		return 1;
	}
	return print_answer(reply);
}

/* Copies src (a file, symlink or directory tree) to dst. */
static int copy_tree(int sfd, const char *src, int dfd, const char *dst)
{
	struct stat st;
	int ret = 0;

	if (fstatat(sfd, src, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISDIR(st.st_mode)) {
		int in = openat(sfd, src, O_RDONLY | O_DIRECTORY | O_CLOEXEC), out;
		DIR *d;
		struct dirent *de;
		if (in < 0)
			return -errno;
		if (mkdirat(dfd, dst, 0755) < 0 && errno != EEXIST) {
			close(in);
			return -errno;
		}
		out = openat(dfd, dst, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		d = fdopendir(in);
		while (d && out >= 0 && !ret && (de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				ret = copy_tree(dirfd(d), de->d_name, out, de->d_name);
		if (d)
			closedir(d);
		if (out >= 0)
			close(out);
		return ret;
	}
	return copy_entry_at(sfd, src, dfd, dst);
}

int cmd_divergent(int argc, char **argv)
{
	static const char usage[] = "usage: repfs divergent DATADIR [list | show ENTRY | restore [ENTRY] DEST]";
	char datadir[PATH_MAX], path[PATH_MAX + 16];
	const char *what = argc > 2 ? argv[2] : "list";
	struct dirent *de;
	int dfd, n = 0;
	DIR *d;

	if (argc < 2 || argc > 5) {
		die_msg("%s", usage);
		return 2;
	}
	if (resolve_datadir(argv[1], datadir, sizeof(datadir))) {
		die_msg("'%s' is neither a repfs data directory nor a repfs mountpoint", argv[1]);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/divergent", datadir);
	dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		die_msg("unable to open '%s': %s", path, strerror(errno));
		return 1;
	}
	if (!strcmp(what, "list") && argc <= 3) {
		d = fdopendir(dup(dfd));
		while (d && (de = readdir(d))) {
			char rec[PATH_MAX + 300], line[3 * PATH_MAX];
			FILE *f;
			int count = 0;
			if (de->d_name[0] == '.')
				continue;
			n++;
			snprintf(rec, sizeof(rec), "%s/%s/records.txt", path, de->d_name);
			printf("%s: writes of epoch %.*s kept when this node rejoined (restore with "
			       "'repfs divergent %s restore %s DEST')\n",
			       de->d_name, (int)strcspn(de->d_name, "-"), de->d_name, argv[1], de->d_name);
			f = fopen(rec, "re");
			while (f && fgets(line, sizeof(line), f)) {
				if (count++ < 50)
					printf("  %s", line);
			}
			if (count > 50)
				printf("  ... and %d more records\n", count - 50);
			if (f)
				fclose(f);
		}
		if (d)
			closedir(d);
		if (!n)
			printf("no divergent writes in '%s'\n", datadir);
		close(dfd);
		return 0;
	}
	if (!strcmp(what, "show") && argc == 4) {
		char rec[2 * PATH_MAX + 32], line[3 * PATH_MAX];
		FILE *f;
		snprintf(rec, sizeof(rec), "%s/%s/records.txt", path, argv[3]);
		f = strchr(argv[3], '/') ? NULL : fopen(rec, "re");
		if (!f) {
			die_msg("no divergent entry '%s' in '%s'", argv[3], datadir);
			close(dfd);
			return 1;
		}
		while (fgets(line, sizeof(line), f))
			fputs(line, stdout);
		fclose(f);
		printf("files kept as they were before the rejoin: %s/%s/files/\n", path, argv[3]);
		close(dfd);
		return 0;
	}
	if (!strcmp(what, "restore") && (argc == 4 || argc == 5)) {
		const char *dest = argv[argc - 1], *only = argc == 5 ? argv[3] : NULL;
		int ret = 0;
		if (mkdir(dest, 0755) < 0 && errno != EEXIST) {
			die_msg("unable to create '%s': %s", dest, strerror(errno));
			close(dfd);
			return 1;
		}
		d = fdopendir(dup(dfd));
		while (d && !ret && (de = readdir(d))) {
			char files[NAME_MAX + 16];
			if (de->d_name[0] == '.' || (only && strcmp(only, de->d_name)))
				continue;
			snprintf(files, sizeof(files), "%s/files", de->d_name);
			if (faccessat(dfd, files, F_OK, 0) == 0) {
				int out = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
				ret = out < 0 ? -errno : copy_tree(dfd, files, out, ".");
				if (out >= 0)
					close(out);
			}
			n++;
		}
		if (d)
			closedir(d);
		close(dfd);
		if (ret) {
			die_msg("unable to restore into '%s': %s", dest, strerror(-ret));
			return 1;
		}
		if (!n) {
			die_msg("no divergent entry%s%s%s in '%s'", only ? " '" : "", only ? only : "", only ? "'" : "",
				datadir);
			return 1;
		}
		printf("restored the kept files of %d entr%s into '%s'\n", n, n == 1 ? "y" : "ies", dest);
		return 0;
	}
	close(dfd);
	die_msg("%s", usage);
	return 2;
}
