/* modparam.c - module parameters from the kernel command line (see
 * modparam.h). */
#include "modparam.h"

#include <string.h>

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static char fold(char c)
{
	return c == '-' ? '_' : c;
}

/* One token's unquoted characters, one at a time. */
struct tok {
	const char *p, *end;
};

static int tok_next(struct tok *t, char *c)
{
	while (t->p < t->end && *t->p == '"')
		t->p++;
	if (t->p == t->end)
		return 0;
	*c = *t->p++;
	return 1;
}

/* out[*at..] = s[0..n), keeping room for the NUL. */
static int put(char *out, size_t outsz, size_t *at, const char *s, size_t n)
{
	if (*at + n >= outsz)
		return -1;
	memcpy(out + *at, s, n);
	*at += n;
	return 0;
}

/* Append token [s, e) to out if it is "module.param[=value]". */
static int take(const char *s, const char *e, const char *module,
		char *out, size_t outsz, size_t *at)
{
	struct tok t = { s, e };
	char c;
	for (const char *m = module; *m; m++)
		if (!tok_next(&t, &c) || fold(c) != fold(*m))
			return 0;
	if (!tok_next(&t, &c) || c != '.')
		return 0;
	struct tok rest = t;
	if (!tok_next(&t, &c) || c == '=' || blank(c))
		return 0;   /* "module." or "module.=value": no parameter name */
	int blanks = 0, eq = 0;
	while (tok_next(&t, &c)) {
		if (c == '=')
			eq = 1;
		else if (blank(c) && !eq)
			return 0;   /* a blank in the name: not a parameter */
		else if (blank(c))
			blanks = 1;
	}
	size_t start = *at;
	if (start > 0 && put(out, outsz, at, " ", 1) < 0)
		goto full;
	int seen_eq = 0;
	while (tok_next(&rest, &c)) {
		if (put(out, outsz, at, &c, 1) < 0)
			goto full;
		if (c == '=' && !seen_eq) {
			seen_eq = 1;
			if (blanks && put(out, outsz, at, "\"", 1) < 0)
				goto full;
		}
	}
	if (blanks && put(out, outsz, at, "\"", 1) < 0)
		goto full;
	return 0;
full:
	*at = start;
	return -1;
}

int modparam_from_cmdline(const char *cmdline, size_t len, const char *module,
			  char *out, size_t outsz)
{
	size_t at = 0;
	int rc = 0;
	const char *p = cmdline, *end = cmdline + len;
	while (p < end) {
		while (p < end && blank(*p))
			p++;
		const char *s = p;
		int quoted = 0;
		while (p < end && *p && (quoted || !blank(*p))) {
			if (*p == '"')
				quoted = !quoted;
			p++;
		}
		if (p == s)
			break;   /* a NUL: the end */
		if (p - s == 2 && s[0] == '-' && s[1] == '-')
			break;
		if (take(s, p, module, out, outsz, &at) < 0)
			rc = -1;
	}
	out[at] = 0;
	return rc < 0 ? -1 : (int)at;
}

int modparam_name_of(const char *file, char *out, size_t outsz)
{
	const char *p = file;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == file || *p != '-')
		return -1;
	p++;
	size_t n = strlen(p);
	if (n <= 3 || strcmp(p + n - 3, ".ko") != 0 || n - 3 >= outsz)
		return -1;
	memcpy(out, p, n - 3);
	out[n - 3] = 0;
	return 0;
}
