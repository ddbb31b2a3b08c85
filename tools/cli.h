/* cli.h -- the repfs command's subcommands and their shared helpers */
#ifndef REPFS_CLI_H
#define REPFS_CLI_H

#include <stddef.h>

int cmd_mount(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_log(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_promote(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_divergent(int argc, char **argv);
int cmd_forget(int argc, char **argv);

/* Prints "repfs: <message>" to stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A node's name (--name) is valid; else says so and returns 0. */
int valid_node_name(const char *name);

/*
 * Resolves DATADIR|MOUNTPOINT to the data directory: a mounted repfs
 * mountpoint names its DATADIR in its source ("repfs:/path"). 0 or -errno.
 */
int resolve_datadir(const char *arg, char *out, size_t len);

/* Unescapes the octal escapes of /proc/self/mountinfo ("\040": a space) in place. */
void mountinfo_unescape(char *s);

/* The key file a DATADIR was last mounted with (DATADIR/keyfile). */
int remembered_keyfile(const char *datadir, char *out, size_t len);

#endif
