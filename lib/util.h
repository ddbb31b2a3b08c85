/* util.h -- small helpers shared by the modules */
#ifndef REPFS_UTIL_H
#define REPFS_UTIL_H

#include <stddef.h>

/* Copies s into out as the inside of a JSON string (quotes, backslashes, controls escaped). */
const char *json_escape(char *out, size_t len, const char *s);

#endif
