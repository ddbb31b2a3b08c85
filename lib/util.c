/* util.c -- small helpers shared by the modules */
#include "util.h"

#include <stdio.h>

const char *json_escape(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; s && *s && o + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			o += (size_t)snprintf(out + o, len - o, "\\u%04x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	if (len)
		out[o < len ? o : len - 1] = 0;
	return out;
}
