/* test_snapstatus.c -- a snapshot's progress as `repfs status --json` shows it */
#include "unit.h"

#include "../../replication/repl_int.h"

/* the value of "key": in json, as a number */
static double num(const char *json, const char *key)
{
	char pat[64];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(json, pat);
	cr_assert_not_null(p, "no %s in %s", key, json);
	return strtod(p + strlen(pat), NULL);
}

Test(snapstatus, totals_never_fall_below_what_is_done)
{
	struct snap_progress s = { .state = SNAP_TRANSFER, .files_total = 857, .bytes_total = 1000,
				   .files_done = 858, .bytes_done = 1200, .started_ns = 1 };
	char buf[1024];

	cr_assert_gt(snap_status_json(&s, buf, sizeof(buf)), 0);
	cr_assert_eq(num(buf, "files_total"), 858, "%s", buf);
	cr_assert_eq(num(buf, "bytes_total"), 1200, "%s", buf);
	cr_assert_eq(num(buf, "eta_s"), 0, "%s", buf);
	/* below the totals, the leader's counts stand */
	s.files_done = 10;
	s.bytes_done = 100;
	cr_assert_gt(snap_status_json(&s, buf, sizeof(buf)), 0);
	cr_assert_eq(num(buf, "files_total"), 857, "%s", buf);
	cr_assert_eq(num(buf, "bytes_total"), 1000, "%s", buf);
}
