/* behind.h -- the write-behind queue and the files made ahead, as fs/node.c uses them (fs/behind.c)
 *
 * All of these but behind_start() and behind_stop() are called with the
 * node's seq_lock held, from commit().
 */
#ifndef REPFS_BEHIND_H
#define REPFS_BEHIND_H

#include <pthread.h>
#include <stdint.h>

#include "node.h"

struct behind;

/* The helper thread: started with the node, stopped after replication (it applies what is queued first). */
int behind_start(struct node *n);
void behind_stop(struct node *n);

/* 1 if r, a write or a create about to be committed, is to go behind (its job slot made ready). */
int behind_may(struct node *n, const struct record *r, int hint_fd, int *out_fd);
/* Queues r, in the log, through descriptor fd (a write's borrowed, a create's own); ahead: a file made ahead. */
void behind_push(struct behind *b, const struct record *r, int fd, int ahead);
/* Returns, still under seq_lock, with nothing queued (seq_lock is let go while it waits). */
void behind_drain_locked(struct node *n);
/* A create applied but for its last steps: queues them (returns 1). */
int behind_create_tail(struct node *n, struct record *r, int *fd);
/* 1 if a queued create of a file made ahead gives path its name. */
int behind_name_queued(struct behind *b, const char *path);
/*
 * For a create that may take a file made ahead (a: its parent and name):
 * -EEXIST if the tree has the name; else a file made ahead with *job_fd a
 * duplicate for its job and *a->st what fstat() says of it, or -1 (none:
 * the create makes its own).
 */
int behind_ahead_take(struct node *n, const struct create_at *a, int *job_fd);
/* A file taken by behind_ahead_take() whose record could not be logged: back in the pool. */
void behind_ahead_put(struct node *n, int fd, int job_fd, const struct stat *st);

/* errno of the apply behind that failed (the node then refuses writes), 0 if none or b is NULL */
int behind_failed(const struct behind *b);

/* 1 if a and b, in that order in the log, are writes to one file (b's apply sets its mtime after a's). */
int writes_one_file(const struct record *a, const struct record *b);
/* pthread_mutex_lock() that spins first while the holder, on another CPU, finishes. */
void lock_spinning(pthread_mutex_t *mu);

/* fs/node.c's, for the helper: the applied position's hint file; a test hook's number from the environment. */
void node_applied_mark(struct node *n, uint64_t seq);
unsigned node_test_env(const char *var);

#endif
