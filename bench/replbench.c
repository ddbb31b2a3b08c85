/* replbench.c -- the replication and failover workloads of 'make bench' (see bench/README.md)
 *
 *   replbench ports N
 *       N distinct free TCP ports on 127.0.0.1, one a line
 *   replbench converge SECONDS LDATA FDATA...
 *       waits until every follower has applied the leader's last seq (and the
 *       leader too), twice in a row 20 ms apart; prints the milliseconds it took
 *   replbench connected SECONDS LDATA NAME...
 *       waits until the leader's status lists each follower NAME as connected
 *   replbench lag [-r OPS] SECONDS INTERVAL_MS FILE LDATA FDATA...
 *       a writer thread appends 4 KiB chunks to FILE (on the leader's mount) for
 *       SECONDS (at most OPS writes/s with -r; unthrottled by default) while the
 *       main thread samples the leader's "seq" and each follower's "applied"
 *       every INTERVAL_MS through the daemons' control sockets, until the
 *       followers have caught up after the writer ended. The lag of a follower
 *       sample taken at time t with applied = a is t - T(a + 1), where T(s) is
 *       when the leader reached seq s (interpolated linearly between the two
 *       leader samples around it), or 0 if the leader never reached a + 1: how
 *       old the oldest record is that the follower has not applied yet.
 *       Prints key=value pairs: p50_ms p99_ms max_ms (over all followers),
 *       p99_ms_<i> per follower, samples, interval_ms (actual mean),
 *       writes_per_s, write_MBps, caught_up (0/1). With REPLBENCH_SERIES=FILE in
 *       the environment, the raw samples go to FILE: "MS NODE SEQ" a line, NODE
 *       0 for the leader, i for the i-th follower.
 *   replbench failover REPFS PID MNT FILE
 *       kill -9 PID (the leader), runs `REPFS promote MNT` at once, and tries
 *       every millisecond to create MNT/FILE and write 4 KiB to it. Prints
 *       write_ms (from the kill to the first successful write), fsync_ms (to
 *       the first successful fsync after it; "timeout" after 10 s),
 *       promote_ms (how long `repfs promote` ran), promote_rc, attempts, err
 *       (the error of the failed attempts)
 *   replbench switchover REPFS OLDFILE MNT NEWFILE PRE_S POST_S
 *       appends 4 KiB records, each write followed by fsync, to OLDFILE (on the
 *       leader's mount); after PRE_S seconds runs `REPFS promote MNT` (a
 *       follower); when a write or fsync fails the writer moves to NEWFILE (the
 *       same file on MNT), retrying every millisecond, and continues there from
 *       the first record that file lacks; stops POST_S seconds after the first
 *       record acknowledged there. Prints pause_ms (the longest gap between
 *       successive acknowledged records that ends after the promote started, up
 *       to and including the first on MNT), base_gap_ms (the longest gap before
 *       the promote started), acks_old, acks_new, promote_ms, promote_rc,
 *       switch_err, lost (acknowledged records the new file lacks) and bad
 *       (records in the new file whose header is not their number)
 *
 * Exit 0 with the key=value line (or number) on stdout, or 1 with an error on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define REC 4096u

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms)
{
	struct timespec ts = { (time_t)(ms / 1e3), (long)((ms - (double)(time_t)(ms / 1e3) * 1e3) * 1e6) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void die(const char *fmt, const char *a)
{
	fprintf(stderr, "replbench: ");
	fprintf(stderr, fmt, a);
	fputc('\n', stderr);
	exit(1);
}

static double parse_num(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0)
		die("invalid %s", what);
	return v;
}

static const char *errname(int e)
{
	switch (e) {
	case EROFS: return "EROFS";
	case EIO: return "EIO";
	case ENOTCONN: return "ENOTCONN";
	case ECONNABORTED: return "ECONNABORTED";
	case ENOENT: return "ENOENT";
	case EPERM: return "EPERM";
	case EACCES: return "EACCES";
	case ENOSPC: return "ENOSPC";
	case EINTR: return "EINTR";
	case 0: return "none";
	default: return "other";
	}
}

/* ---- the daemons' control socket (DATADIR/ctl.sock: "status\n", JSON back) ---- */

/* 0 and the reply in buf, or -errno */
static int ctl_status(const char *datadir, char *buf, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { 2, 0 };
	size_t got = 0;
	int fd, ret = 0;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", datadir) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || send(fd, "status\n", 7, MSG_NOSIGNAL) < 0) {
		ret = -errno;
		goto out;
	}
	while (got + 1 < len) {
		ssize_t n = recv(fd, buf + got, len - 1 - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = 0;
	if (!got)
		ret = -EPROTO;
out:
	close(fd);
	return ret;
}

/* the first "key":NUMBER in json (top-level keys come before "peers") */
static int json_u64(const char *json, const char *key, uint64_t *out)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	if (!p)
		return -1;
	p += strlen(pat);
	if (*p < '0' || *p > '9')
		return -1;
	*out = strtoull(p, NULL, 10);
	return 0;
}

/* the leader lists follower NAME as connected */
static int peer_connected(const char *json, const char *name)
{
	char pat[128];
	const char *p = strstr(json, "\"peers\":["), *end;

	if (!p)
		return 0;
	snprintf(pat, sizeof(pat), "{\"name\":\"%s\",", name);
	p = strstr(p, pat);
	if (!p)
		return 0;
	end = strchr(p, '}');
	p = strstr(p, "\"connected\":true");
	return p && end && p < end;
}

static int get_pos(const char *datadir, const char *key, uint64_t *v)
{
	static char buf[65536];

	if (ctl_status(datadir, buf, sizeof(buf)))
		return -1;
	return json_u64(buf, key, v);
}

/* ---- ports ---- */

static int cmd_ports(int n)
{
	int fds[64];

	if (n < 1 || n > 64)
		die("invalid count%s", "");
	for (int i = 0; i < n; i++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t len = sizeof(sa);

		fds[i] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    getsockname(fds[i], (struct sockaddr *)&sa, &len) < 0)
			die("unable to find a free port: %s", strerror(errno));
		printf("%u\n", ntohs(sa.sin_port));
	}
	for (int i = 0; i < n; i++)
		close(fds[i]);
	return 0;
}

/* ---- converge / connected ---- */

static int converged_once(const char *ldata, char **fdata, int nf, uint64_t *lseq)
{
	uint64_t seq, applied, fa;

	if (get_pos(ldata, "seq", &seq) || get_pos(ldata, "applied", &applied) || applied != seq)
		return 0;
	for (int i = 0; i < nf; i++)
		if (get_pos(fdata[i], "applied", &fa) || fa != seq)
			return 0;
	*lseq = seq;
	return 1;
}

static int cmd_converge(double secs, const char *ldata, char **fdata, int nf)
{
	double t0 = now_ms(), end = t0 + secs * 1e3;
	uint64_t s1, s2;

	for (;;) {
		if (converged_once(ldata, fdata, nf, &s1)) {
			sleep_ms(20);
			if (converged_once(ldata, fdata, nf, &s2) && s1 == s2) {
				printf("%.0f\n", now_ms() - t0);
				return 0;
			}
		}
		if (now_ms() > end)
			break;
		sleep_ms(20);
	}
	fprintf(stderr, "replbench: the followers did not catch up with the leader within %.0f s:", secs);
	if (get_pos(ldata, "seq", &s1) == 0)
		fprintf(stderr, " leader seq %" PRIu64 ";", s1);
	for (int i = 0; i < nf; i++)
		if (get_pos(fdata[i], "applied", &s2) == 0)
			fprintf(stderr, " %s applied %" PRIu64 ";", fdata[i], s2);
	fputc('\n', stderr);
	return 1;
}

static int cmd_connected(double secs, const char *ldata, char **names, int nn)
{
	static char buf[65536];
	double end = now_ms() + secs * 1e3;

	for (;;) {
		int ok = ctl_status(ldata, buf, sizeof(buf)) == 0;
		for (int i = 0; ok && i < nn; i++)
			ok = peer_connected(buf, names[i]);
		if (ok)
			return 0;
		if (now_ms() > end)
			break;
		sleep_ms(50);
	}
	fprintf(stderr, "replbench: the followers are not all connected to %s after %.0f s\n", ldata, secs);
	return 1;
}

/* ---- lag ---- */

struct sample {
	double t;
	uint64_t v;
};

struct series {
	struct sample *s;
	size_t n, cap;
};

static void push(struct series *se, double t, uint64_t v)
{
	if (se->n == se->cap) {
		se->cap = se->cap ? se->cap * 2 : 4096;
		se->s = realloc(se->s, se->cap * sizeof(*se->s));
		if (!se->s)
			die("out of memory%s", "");
	}
	se->s[se->n].t = t;
	se->s[se->n].v = v;
	se->n++;
}

struct writer {
	const char *path;
	double secs, rate;
	volatile int done;
	uint64_t ops;
	double t0, t1;
	int err;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	char *buf;
	int fd;

	if (posix_memalign((void **)&buf, 4096, REC))
		die("out of memory%s", "");
	memset(buf, 'x', REC);
	fd = open(w->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0) {
		w->err = errno;
		w->done = 1;
		return NULL;
	}
	w->t0 = now_ms();
	for (;;) {
		double t = now_ms();
		if (t - w->t0 >= w->secs * 1e3)
			break;
		if (w->rate > 0) {
			double due = w->t0 + (double)w->ops * 1e3 / w->rate;
			if (due > t)
				sleep_ms(due - t);
		}
		snprintf(buf, 32, "%" PRIu64 "\n", w->ops);
		if (write(fd, buf, REC) != (ssize_t)REC) {
			w->err = errno ? errno : EIO;
			break;
		}
		w->ops++;
	}
	w->t1 = now_ms();
	close(fd);
	free(buf);
	w->done = 1;
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double p)
{
	size_t i;

	if (!n)
		return 0;
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

/* when the leader reached seq s, from its samples; -1: not within them */
static double leader_time(const struct series *L, uint64_t s)
{
	size_t lo = 0, hi = L->n;

	while (lo < hi) {	/* the first sample with v >= s */
		size_t mid = (lo + hi) / 2;
		if (L->s[mid].v >= s)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (lo == L->n)
		return -1;
	if (lo == 0)
		return L->s[0].t;
	{
		const struct sample *a = &L->s[lo - 1], *b = &L->s[lo];
		return a->t + (double)(s - a->v) / (double)(b->v - a->v) * (b->t - a->t);
	}
}

static int cmd_lag(double rate, double secs, double interval, const char *file, const char *ldata, char **fdata,
		   int nf)
{
	struct writer w = { .path = file, .secs = secs, .rate = rate };
	struct series L = { 0 }, *F = calloc((size_t)nf, sizeof(*F));
	double *lags, *one, next, tstart, tend = 0, caught_deadline = 0;
	size_t nl = 0, total = 0, rounds = 0;
	pthread_t th;
	int caught = 0;

	if (!F)
		die("out of memory%s", "");
	if (pthread_create(&th, NULL, writer_main, &w))
		die("unable to start the writer%s", "");
	tstart = next = now_ms();
	for (;;) {
		uint64_t v;
		double t;
		int all = 1;

		if (get_pos(ldata, "seq", &v) == 0)
			push(&L, (now_ms()), v);
		else
			all = 0;
		for (int i = 0; i < nf; i++) {
			uint64_t a;
			if (get_pos(fdata[i], "applied", &a) == 0) {
				push(&F[i], now_ms(), a);
				if (L.n && a < L.s[L.n - 1].v)
					all = 0;
			} else {
				all = 0;
			}
		}
		rounds++;
		t = now_ms();
		if (w.done) {
			if (!tend) {
				tend = t;
				caught_deadline = t + 60e3;
			} else if (all) {
				caught = 1;
				break;
			} else if (t > caught_deadline) {
				break;
			}
		}
		next += interval;
		if (next > t)
			sleep_ms(next - t);
		else
			next = t;
	}
	pthread_join(th, NULL);
	if (w.err) {
		fprintf(stderr, "replbench: the writer failed on '%s': %s\n", file, strerror(w.err));
		return 1;
	}
	if (getenv("REPLBENCH_SERIES")) {
		/* the raw samples, for a closer look: ms since the start, node (0 = leader), seq */
		FILE *f = fopen(getenv("REPLBENCH_SERIES"), "w");
		if (f) {
			for (size_t j = 0; j < L.n; j++)
				fprintf(f, "%.3f 0 %" PRIu64 "\n", L.s[j].t - tstart, L.s[j].v);
			for (int i = 0; i < nf; i++)
				for (size_t j = 0; j < F[i].n; j++)
					fprintf(f, "%.3f %d %" PRIu64 "\n", F[i].s[j].t - tstart, i + 1, F[i].s[j].v);
			fclose(f);
		}
	}
	for (int i = 0; i < nf; i++)
		total += F[i].n;
	lags = malloc((total + 1) * sizeof(double));
	one = malloc((total + 1) * sizeof(double));
	if (!lags || !one)
		die("out of memory%s", "");
	printf("samples=%zu", total);
	for (int i = 0; i < nf; i++) {
		size_t n1 = 0;
		for (size_t j = 0; j < F[i].n; j++) {
			double tl = leader_time(&L, F[i].s[j].v + 1), lag = 0;
			if (tl >= 0 && F[i].s[j].t > tl)
				lag = F[i].s[j].t - tl;
			lags[nl++] = lag;
			one[n1++] = lag;
		}
		qsort(one, n1, sizeof(double), cmp_double);
		printf(" p99_ms_%d=%.1f max_ms_%d=%.1f", i + 1, pct(one, n1, 99), i + 1, n1 ? one[n1 - 1] : 0.0);
	}
	qsort(lags, nl, sizeof(double), cmp_double);
	printf(" p50_ms=%.1f p99_ms=%.1f max_ms=%.1f interval_ms=%.1f writes_per_s=%.0f write_MBps=%.1f caught_up=%d"
	       " run_s=%.1f\n",
	       pct(lags, nl, 50), pct(lags, nl, 99), nl ? lags[nl - 1] : 0.0,
	       rounds > 1 ? (now_ms() - tstart) / (double)rounds : 0.0, (double)w.ops / ((w.t1 - w.t0) / 1e3),
	       (double)w.ops * REC / 1e6 / ((w.t1 - w.t0) / 1e3), caught, (now_ms() - tstart) / 1e3);
	return 0;
}

/* ---- promote (a child process) ---- */

struct promote {
	const char *repfs, *mnt;
	double delay_s;	/* switchover: wait first */
	pid_t pid;
	double t0, t1;
	int rc;		/* exit status; -1 not finished */
};

static int promote_spawn(struct promote *p)
{
	char *argv[] = { (char *)p->repfs, (char *)"promote", (char *)p->mnt, NULL };
	posix_spawn_file_actions_t fa;
	int ret;

	/* its message goes to our stderr, not into our result line */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	p->rc = -1;
	p->t0 = now_ms();
	ret = posix_spawn(&p->pid, p->repfs, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	return ret;
}

static void promote_reap(struct promote *p, int block)
{
	int st;

	if (p->rc >= 0 || p->pid <= 0)
		return;
	if (waitpid(p->pid, &st, block ? 0 : WNOHANG) == p->pid) {
		p->t1 = now_ms();
		p->rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	}
}

static void *promote_main(void *arg)
{
	struct promote *p = arg;

	sleep_ms(p->delay_s * 1e3);
	if (promote_spawn(p)) {
		p->rc = 127;
		return NULL;
	}
	promote_reap(p, 1);
	return NULL;
}

/* ---- failover ---- */

struct fsyncer {
	int fd;
	volatile int done;
	int err;
	double t;
};

static void *fsync_main(void *arg)
{
	struct fsyncer *f = arg;

	f->err = fsync(f->fd) ? errno : 0;
	f->t = now_ms();
	f->done = 1;
	return NULL;
}

static int cmd_failover(const char *repfs, pid_t pid, const char *mnt, const char *file)
{
	struct promote p = { .repfs = repfs, .mnt = mnt };
	struct fsyncer fs = { 0 };
	char path[4096], buf[REC];
	double t0, tw = -1, deadline;
	long attempts = 0;
	int fd = -1, err = 0;
	pthread_t th;

	snprintf(path, sizeof(path), "%s/%s", mnt, file);
	memset(buf, 'f', sizeof(buf));
	t0 = now_ms();
	if (kill(pid, SIGKILL) < 0)
		die("unable to kill the leader: %s", strerror(errno));
	if (promote_spawn(&p))
		die("unable to run '%s promote'", repfs);
	deadline = t0 + 10e3;
	while (now_ms() < deadline) {
		attempts++;
		fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			if (write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
				tw = now_ms();
				break;
			}
			err = errno;
			close(fd);
			fd = -1;
		} else {
			err = errno;
		}
		promote_reap(&p, 0);
		sleep_ms(1);
	}
	if (tw < 0) {
		promote_reap(&p, 0);
		fprintf(stderr, "replbench: no write succeeded on '%s' within 10 s of the kill (last error %s; promote %s)\n",
			path, strerror(err), p.rc < 0 ? "still running" : p.rc ? "failed" : "succeeded");
		if (p.rc < 0)
			kill(p.pid, SIGKILL);
		return 1;
	}
	/* the first durable write: in quorum mode it waits for a follower of the new leader */
	fs.fd = fd;
	if (pthread_create(&th, NULL, fsync_main, &fs))
		die("unable to start a thread%s", "");
	while (!fs.done && now_ms() < tw + 10e3) {
		promote_reap(&p, 0);
		sleep_ms(1);
	}
	promote_reap(&p, 1);
	printf("write_ms=%.1f", tw - t0);
	if (fs.done && !fs.err)
		printf(" fsync_ms=%.1f", fs.t - t0);
	else
		printf(" fsync_ms=%s", fs.done ? errname(fs.err) : "timeout");
	printf(" promote_ms=%.1f promote_rc=%d attempts=%ld err=%s\n", p.t1 - p.t0, p.rc, attempts, errname(err));
	fflush(stdout);
	if (!fs.done)
		_exit(0);	/* a thread still waits in fsync: exit_group ends it */
	pthread_join(th, NULL);
	close(fd);
	return 0;
}

/* ---- switchover ---- */

static void make_rec(char *buf, uint64_t n)
{
	int h = snprintf(buf, 32, "rec %012" PRIu64 "\n", n);

	memset(buf + h, 'a' + (int)(n % 26), REC - (size_t)h);
}

static int cmd_switchover(const char *repfs, const char *oldf, const char *mnt, const char *newf, double pre,
			  double post)
{
	struct promote p = { .repfs = repfs, .mnt = mnt, .delay_s = pre };
	char *buf;
	double last_ack = 0, first_new = 0, pause = 0, base_gap = 0, t_start;
	uint64_t next = 0, acks_old = 0, acks_new = 0, acked = 0, lost = 0, bad = 0, have = 0;
	int fd, on_new = 0, switch_err = 0, new_err = 0;
	pthread_t th;
	struct stat st;

	if (posix_memalign((void **)&buf, 4096, REC))
		die("out of memory%s", "");
	fd = open(oldf, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		die("unable to create '%s'", oldf);
	if (pthread_create(&th, NULL, promote_main, &p))
		die("unable to start a thread%s", "");
	t_start = now_ms();
	for (;;) {
		double t = now_ms();

		if (on_new && first_new && t - first_new >= post * 1e3)
			break;
		if (t - t_start > (pre + post) * 1e3 + 30e3) {
			fprintf(stderr, "replbench: the writer %s (last error: %s)\n",
				on_new ? "did not get a record acknowledged on the new leader within 30 s"
				       : "was never refused by the old leader",
				strerror(new_err));
			break;
		}
		make_rec(buf, next);
		if (fd >= 0 && write(fd, buf, REC) == (ssize_t)REC && fsync(fd) == 0) {
			double ta = now_ms();
			double gap = last_ack ? ta - last_ack : 0;
			if (p.t0 && ta > p.t0 && (!first_new || ta <= first_new) && gap > pause)
				pause = gap;
			if (!p.t0 && gap > base_gap)
				base_gap = gap;
			last_ack = ta;
			next++;
			acked = next;
			if (on_new) {
				acks_new++;
				if (!first_new) {
					first_new = ta;
					if (gap > pause)
						pause = gap;
				}
			} else {
				acks_old++;
			}
			continue;
		}
		if (!on_new) {
			/* refused: this node is a follower now; move to the new leader */
			switch_err = errno;
			close(fd);
			fd = -1;
			on_new = 1;
		} else if (fd >= 0) {
			close(fd);
			fd = -1;
		}
		new_err = errno;
		sleep_ms(1);
		fd = open(newf, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (fd < 0)
			new_err = errno;
		if (fd >= 0) {
			if (fstat(fd, &st) < 0) {
				close(fd);
				fd = -1;
				continue;
			}
			/* continue after what it holds of the old leader's history */
			have = (uint64_t)st.st_size / REC;
			if (have < acked && acked - have > lost)
				lost = acked - have;
			next = have;
		}
	}
	if (fd >= 0)
		close(fd);
	pthread_join(th, NULL);
	/* every record in the new leader's file is whole and in order */
	fd = open(newf, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		uint64_t k = 0;
		char want[32];
		while (pread(fd, buf, REC, (off_t)(k * REC)) == (ssize_t)REC) {
			int h = snprintf(want, sizeof(want), "rec %012" PRIu64 "\n", k);
			if (memcmp(buf, want, (size_t)h))
				bad++;
			k++;
		}
		if (k < acked)
			lost = acked - k > lost ? acked - k : lost;
		close(fd);
	}
	printf("pause_ms=%.1f base_gap_ms=%.1f acks_old=%" PRIu64 " acks_new=%" PRIu64
	       " promote_ms=%.1f promote_rc=%d switch_err=%s lost=%" PRIu64 " bad=%" PRIu64 "\n",
	       first_new ? pause : -1.0, base_gap, acks_old, acks_new, p.rc >= 0 ? p.t1 - p.t0 : -1.0, p.rc,
	       errname(switch_err), lost, bad);
	free(buf);
	return first_new && p.rc == 0 ? 0 : 1;
}

static void usage(void)
{
	fputs("usage: replbench ports N | converge SECS LDATA FDATA... | connected SECS LDATA NAME... |\n"
	      "       lag [-r OPS] SECS INTERVAL_MS FILE LDATA FDATA... | failover REPFS PID MNT FILE |\n"
	      "       switchover REPFS OLDFILE MNT NEWFILE PRE_S POST_S\n",
	      stderr);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 3)
		usage();
	cmd = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!strcmp(cmd, "ports") && argc == 3)
		return cmd_ports(atoi(argv[2]));
	if (!strcmp(cmd, "converge") && argc >= 5)
		return cmd_converge(parse_num(argv[2], "seconds"), argv[3], argv + 4, argc - 4);
	if (!strcmp(cmd, "connected") && argc >= 5)
		return cmd_connected(parse_num(argv[2], "seconds"), argv[3], argv + 4, argc - 4);
	if (!strcmp(cmd, "lag")) {
		double rate = 0;
		int i = 2;
		if (argc > 3 && !strcmp(argv[2], "-r")) {
			rate = parse_num(argv[3], "rate");
			i = 4;
		}
		if (argc - i < 5)
			usage();
		return cmd_lag(rate, parse_num(argv[i], "seconds"), parse_num(argv[i + 1], "interval"), argv[i + 2],
			       argv[i + 3], argv + i + 4, argc - i - 4);
	}
	if (!strcmp(cmd, "failover") && argc == 6) {
		long pid = strtol(argv[3], NULL, 10);
		if (pid <= 1)
			die("invalid pid '%s'", argv[3]);
		return cmd_failover(argv[2], (pid_t)pid, argv[4], argv[5]);
	}
	if (!strcmp(cmd, "switchover") && argc == 8)
		return cmd_switchover(argv[2], argv[3], argv[4], argv[5], parse_num(argv[6], "seconds"),
				      parse_num(argv[7], "seconds"));
	usage();
	return 2;
}
