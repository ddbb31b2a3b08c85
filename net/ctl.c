/* ctl.c -- the daemon's control socket and its client */
#include "ctl.h"

#include <fcntl.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../fs/node.h"
#include "../lib/log.h"
#include "../lib/util.h"
#include "../replication/repl.h"

/*
 * Each connection is served by a thread of its own, so that a client that
 * connects and says nothing (stopped, or slow), or a promote that waits for
 * its peers or for a disk, keeps no other request waiting: `repfs status`
 * answers during a promote, and a promote is not held behind a silent
 * client. A client has CTL_IO_TIMEOUT_S to send its line and to take the
 * reply. Promotes and forgets still run one at a time (change_mu).
 */
#define CTL_IO_TIMEOUT_S 5
#define CTL_MAX_SERVING 32	/* beyond: answered "busy" */

struct ctl_server {
	struct node *node;
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t idle;
	int serving;		/* mu: connection threads running; ctl_stop() waits for none */
	int conn[CTL_MAX_SERVING];	/* mu: their sockets (-1: a free slot), shut for reading at a stop */
	int stopping;		/* mu */
	pthread_mutex_t change_mu;	/* one promote or forget at a time */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

/* The connection in slot is no longer this thread's to shut (closed, or handed on): before that. */
static void slot_free(struct ctl_server *s, int slot)
{
	pthread_mutex_lock(&s->mu);
	s->conn[slot] = -1;
	pthread_mutex_unlock(&s->mu);
}

static int sock_addr(struct sockaddr_un *sa, const char *datadir)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if ((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/ctl.sock", datadir) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

struct verify_job {
	struct repl *r;		/* taken (repl_verify_take), or NULL: not replicating */
	int fd;
	int repair;
};

/* A verify takes seconds or, with --repair, a resync: it gets a thread so status keeps answering. */
static void *verify_main(void *arg)
{
	struct verify_job *j = arg;
	size_t len = 65536;
	char *out = malloc(len), err[400], *reply = malloc(len + 512);
	int ret = -ENOMEM;

	thread_name("repfs-verify");
	if (out && reply)
		ret = repl_verify(j->r, j->repair, out, len, err, sizeof(err));
	if (j->r)
		repl_verify_give(j->r);	/* nothing below touches it: repl_stop() may free it now */
	if (out && reply) {
		if (ret < 0)
			snprintf(reply, len + 512, "result 2\n%s\n", err);
		else
			snprintf(reply, len + 512, "result %d\n%s", ret, out);
		if (send(j->fd, reply, strlen(reply), MSG_NOSIGNAL) < 0)
			rlog(LOG_DEBUG, "control client went away: %s", strerror(errno));
	}
	free(out);
	free(reply);
	close(j->fd);
	free(j);
	return NULL;
}

/*
 * Hands c to a verify thread. The repl is taken here, in a connection's
 * thread, which ctl_stop() waits for before the mount stops replication: so
 * repl_stop() waits for every verify it let start.
 */
static int start_verify(struct ctl_server *s, int c, int repair)
{
	struct verify_job *j = malloc(sizeof(*j));
	pthread_t t;
	int ret;

	if (!j)
		return -ENOMEM;
	j->r = s->node->repl;
	j->fd = c;
	j->repair = repair;
	if (j->r && (ret = repl_verify_take(j->r))) {
		free(j);
		return ret;
	}
	if (pthread_create(&t, NULL, verify_main, j)) {
		if (j->r)
			repl_verify_give(j->r);
		free(j);
		return -EAGAIN;
	}
	pthread_detach(t);
	return 0;
}

/* Serves one request on c (in the given slot); returns 1 if c was handed to another thread. */
static int serve_one(struct ctl_server *s, int c, int slot)
{
	char req[256], *reply;
	size_t len = 65536;
	ssize_t n;

	n = recv(c, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return 0;
	req[n] = 0;
	req[strcspn(req, "\r\n")] = 0;
	reply = malloc(len);
	if (!reply)
		return 0;
	if (!strcmp(req, "verify") || !strcmp(req, "verify repair")) {
		int ret;
		slot_free(s, slot);	/* the verify's thread may close c at any time */
		ret = start_verify(s, c, !strcmp(req, "verify repair"));
		if (!ret) {
			free(reply);
			return 1;
		}
		snprintf(reply, len, "result 2\nunable to start the verify: %s\n",
			 ret == -ESHUTDOWN ? "the node is stopping" : strerror(-ret));
	} else if (!strcmp(req, "status")) {
		node_status_json(s->node, reply, len);
	} else if (!strcmp(req, "promote") || !strcmp(req, "promote force") || !strncmp(req, "forget ", 7)) {
		char msg[512], esc[1100];
		int ret = -EINVAL;
		if (!s->node->repl)
			snprintf(msg, sizeof(msg), "replication is not running");
		else {
			pthread_mutex_lock(&s->change_mu);
			if (req[0] == 'f')
				ret = repl_forget(s->node->repl, req + 7, msg, sizeof(msg));
			else
				ret = repl_promote(s->node->repl, !strcmp(req, "promote force"), msg, sizeof(msg));
			pthread_mutex_unlock(&s->change_mu);
		}
		snprintf(reply, len, "{\"ok\":%s,\"message\":\"%s\"}\n", ret ? "false" : "true",
			 json_escape(esc, sizeof(esc), msg));
	} else
		snprintf(reply, len, "{\"error\":\"unknown request\"}\n");
	if (send(c, reply, strlen(reply), MSG_NOSIGNAL) < 0)
		rlog(LOG_DEBUG, "control client went away: %s", strerror(errno));
	free(reply);
	return 0;
}

struct conn {
	struct ctl_server *s;
	int fd;
};

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	struct ctl_server *s = c->s;
	int slot = 0, stopping;

	thread_name("repfs-ctl-req");
	pthread_mutex_lock(&s->mu);
	while (s->conn[slot] >= 0)
		slot++;	/* there is one: serving counts this thread */
	s->conn[slot] = c->fd;
	stopping = s->stopping;
	pthread_mutex_unlock(&s->mu);
	if (stopping || !serve_one(s, c->fd, slot)) {
		slot_free(s, slot);	/* before the close: its number may name another socket after */
		close(c->fd);
	}
	free(c);
	pthread_mutex_lock(&s->mu);
	if (--s->serving == 0)
		pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Serves fd on a thread of its own, or answers that it cannot (a flood of connections). */
static void serve_conn(struct ctl_server *s, int fd)
{
	struct timeval tv = { CTL_IO_TIMEOUT_S, 0 };
	struct conn *c = NULL;
	pthread_attr_t attr;
	pthread_t t;
	int ret = -1;

	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	pthread_mutex_lock(&s->mu);
	if (s->serving < CTL_MAX_SERVING && (c = malloc(sizeof(*c)))) {
		c->s = s;
		c->fd = fd;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ret = pthread_create(&t, &attr, conn_main, c);
		pthread_attr_destroy(&attr);
		if (!ret)
			s->serving++;
	}
	pthread_mutex_unlock(&s->mu);
	if (ret) {
		static const char busy[] = "{\"error\":\"too many control requests at once\"}\n";
		free(c);
		if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			rlog(LOG_DEBUG, "control client went away: %s", strerror(errno));
		close(fd);
	}
}

static void *ctl_main(void *arg)
{
	struct ctl_server *s = arg;
	struct pollfd p[2] = { { s->fd, POLLIN, 0 }, { s->stop_pipe[0], POLLIN, 0 } };

	thread_name("repfs-ctl");
	for (;;) {
		int c;

		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c >= 0)
			serve_conn(s, c);
	}
	return NULL;
}

int ctl_open(struct ctl_server **out, struct node *n)
{
	struct ctl_server *s;
	struct sockaddr_un sa;
	int ret;

	*out = NULL;
	ret = sock_addr(&sa, n->datadir);
	if (ret)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->node = n;
	s->stop_pipe[0] = s->stop_pipe[1] = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->idle, NULL);
	pthread_mutex_init(&s->change_mu, NULL);
	for (int i = 0; i < CTL_MAX_SERVING; i++)
		s->conn[i] = -1;
	snprintf(s->path, sizeof(s->path), "%s", sa.sun_path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		ret = -errno;
		goto fail;
	}
	unlink(s->path);	/* a stale socket of a dead daemon: we hold the lock */
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(s->path, 0600) < 0 ||
	    listen(s->fd, 64) < 0 || pipe2(s->stop_pipe, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	if (s->fd >= 0)
		close(s->fd);
	if (s->stop_pipe[0] >= 0) {
		close(s->stop_pipe[0]);
		close(s->stop_pipe[1]);
	}
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->change_mu);
	free(s);
	return ret;
}

int ctl_start(struct ctl_server *s)
{
	int ret = -pthread_create(&s->thread, NULL, ctl_main, s);

	if (!ret)
		s->started = 1;
	return ret;
}

void ctl_stop(struct ctl_server *s)
{
	if (!s)
		return;
	if (s->started) {
		if (write(s->stop_pipe[1], "x", 1) < 0)
			rlog(LOG_WARNING, "unable to stop the control thread: %s", strerror(errno));
		pthread_join(s->thread, NULL);
	}
	/*
	 * The connections' threads use the node: a silent client's is woken
	 * (its read ends), one that runs a request finishes it.
	 */
	pthread_mutex_lock(&s->mu);
	s->stopping = 1;
	for (int i = 0; i < CTL_MAX_SERVING; i++)
		if (s->conn[i] >= 0)
			(void)shutdown(s->conn[i], SHUT_RD);
	while (s->serving)
		pthread_cond_wait(&s->idle, &s->mu);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->change_mu);
	close(s->fd);
	close(s->stop_pipe[0]);
	close(s->stop_pipe[1]);
	unlink(s->path);
	free(s);
}

int ctl_request(const char *datadir, const char *request, char *buf, size_t len)
{
	struct sockaddr_un sa;
	char line[256];
	size_t got = 0;
	int fd, ret;

	if ((size_t)snprintf(line, sizeof(line), "%s\n", request) >= sizeof(line))
		return -EINVAL;
	ret = sock_addr(&sa, datadir);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* one send: the daemon answers after one read and closes */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || send(fd, line, strlen(line), MSG_NOSIGNAL) < 0) {
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
out:
	close(fd);
	return ret;
}
