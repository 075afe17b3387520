/* msg.c - table-driven decoders for the host's structured payloads (msg.h). */
#include "msg.h"

#include <stdlib.h>
#include <string.h>

#include "fields.h"

enum ftype { FT_STR = 1, FT_STRV, FT_U16, FT_U32, FT_FLAG };

struct fspec {
	uint8_t tag;
	uint8_t type;
	size_t off;       /* member in the struct */
	size_t has_off;   /* int member set to 1 when present; 0: none */
};

#define NOHAS ((size_t)-1)

static void *member(void *obj, size_t off)
{
	return (char *)obj + off;
}

static const struct fspec *find_spec(const struct fspec *spec, size_t n, uint8_t tag)
{
	for (size_t i = 0; i < n; i++)
		if (spec[i].tag == tag)
			return &spec[i];
	return NULL;
}

static void free_fields(void *obj, const struct fspec *spec, size_t nspec)
{
	for (size_t i = 0; i < nspec; i++) {
		if (spec[i].type == FT_STR) {
			char **s = member(obj, spec[i].off);
			free(*s);
			*s = NULL;
		} else if (spec[i].type == FT_STRV) {
			struct strv *v = member(obj, spec[i].off);
			for (uint32_t k = 0; v->v && k < v->n; k++)
				free(v->v[k]);
			free(v->v);
			v->v = NULL;
			v->n = 0;
		}
	}
}

/* First pass: the list is well formed, known tags have valid values; count
 * the entries of each repeated tag and allocate their vectors. */
static int check_and_size(const uint8_t *p, size_t n, void *obj,
			  const struct fspec *spec, size_t nspec, const char **why)
{
	struct fl_iter it;
	uint8_t tag;
	const uint8_t *val;
	uint32_t len;
	int r;
	fl_iter_init(&it, p, n);
	while ((r = fl_next(&it, &tag, &val, &len)) == 1) {
		const struct fspec *s = find_spec(spec, nspec, tag);
		if (!s)
			continue;
		if ((s->type == FT_U16 && len != 2) || (s->type == FT_U32 && len != 4)) {
			*why = "integer field of the wrong length";
			return -1;
		}
		if ((s->type == FT_STR || s->type == FT_STRV) && !fl_str_ok(val, len)) {
			*why = "string field holds a NUL byte";
			return -1;
		}
		if (s->type == FT_STRV)
			((struct strv *)member(obj, s->off))->n++;
	}
	if (r < 0) {
		*why = "field runs past the end of the list";
		return -1;
	}
	for (size_t i = 0; i < nspec; i++) {
		if (spec[i].type != FT_STRV)
			continue;
		struct strv *v = member(obj, spec[i].off);
		/* n <= n_bytes / FIELD_HDR, so this cannot overflow. */
		v->v = calloc((size_t)v->n + 1, sizeof(char *));
		if (!v->v) {
			*why = "out of memory";
			return -1;
		}
		v->n = 0;   /* refilled by the second pass */
	}
	return 0;
}

static int store(void *obj, const struct fspec *s, const uint8_t *val, uint32_t len)
{
	if (s->has_off != NOHAS)
		*(int *)member(obj, s->has_off) = 1;
	switch (s->type) {
	case FT_STR: {
		char **dst = member(obj, s->off);
		free(*dst);   /* a repeated single-valued tag: the last one wins */
		*dst = fl_strdup(val, len);
		return *dst ? 0 : -1;
	}
	case FT_STRV: {
		struct strv *v = member(obj, s->off);
		char *str = fl_strdup(val, len);
		if (!str)
			return -1;
		v->v[v->n++] = str;
		return 0;
	}
	case FT_U16:
		return fl_u16(val, len, member(obj, s->off));
	case FT_U32:
		return fl_u32(val, len, member(obj, s->off));
	case FT_FLAG:
		*(int *)member(obj, s->off) = 1;
		return 0;
	}
	return -1;
}

static int parse(const uint8_t *p, size_t n, void *obj, const struct fspec *spec,
		 size_t nspec, const char **why)
{
	if (check_and_size(p, n, obj, spec, nspec, why) < 0) {
		free_fields(obj, spec, nspec);
		return -1;
	}
	struct fl_iter it;
	uint8_t tag;
	const uint8_t *val;
	uint32_t len;
	fl_iter_init(&it, p, n);
	while (fl_next(&it, &tag, &val, &len) == 1) {
		const struct fspec *s = find_spec(spec, nspec, tag);
		if (s && store(obj, s, val, len) < 0) {
			*why = "out of memory";
			free_fields(obj, spec, nspec);
			return -1;
		}
	}
	return 0;
}

#define F(tag, type, st, m) { tag, type, offsetof(st, m), NOHAS }
#define FH(tag, type, st, m, h) { tag, type, offsetof(st, m), offsetof(st, h) }

static const struct fspec config_spec[] = {
	F(1, FT_STRV, struct boot_config, argv),
	F(2, FT_STRV, struct boot_config, env),
	F(3, FT_STR, struct boot_config, workdir),
	F(4, FT_STR, struct boot_config, user),
	F(5, FT_STR, struct boot_config, hostname),
	F(6, FT_U32, struct boot_config, stop_signal),
	F(7, FT_STR, struct boot_config, root_device),
	F(8, FT_STR, struct boot_config, upper_device),
	F(9, FT_STR, struct boot_config, hosts),
	F(10, FT_STR, struct boot_config, resolv),
	F(11, FT_STR, struct boot_config, vm_id),
	FH(12, FT_U32, struct boot_config, attach_wait_ms, has_attach_wait),
	F(13, FT_U32, struct boot_config, tmpfs_size_mb),
	F(14, FT_STRV, struct boot_config, health_argv),
	F(15, FT_U32, struct boot_config, health_interval_ms),
	F(16, FT_U32, struct boot_config, health_timeout_ms),
	F(17, FT_U32, struct boot_config, health_retries),
	F(18, FT_U32, struct boot_config, health_start_period_ms),
	F(19, FT_STRV, struct boot_config, mount_type),
	F(20, FT_STRV, struct boot_config, mount_source),
	F(21, FT_STRV, struct boot_config, mount_target),
	F(22, FT_STRV, struct boot_config, mount_data),
	F(23, FT_STRV, struct boot_config, mount_flags),
	F(25, FT_STRV, struct boot_config, nics),
};

static const struct fspec hello_spec[] = {
	FH(1, FT_U16, struct hello_req, min_version, has_min),
	FH(2, FT_U16, struct hello_req, max_version, has_max),
};

static const struct fspec exec_spec[] = {
	F(1, FT_STRV, struct exec_req, argv),
	FH(2, FT_STRV, struct exec_req, env, has_env),
	F(3, FT_STR, struct exec_req, workdir),
	F(4, FT_STR, struct exec_req, user),
	F(5, FT_FLAG, struct exec_req, tty),
	F(6, FT_U16, struct exec_req, rows),
	F(7, FT_U16, struct exec_req, cols),
	F(8, FT_FLAG, struct exec_req, with_stdin),
	F(9, FT_FLAG, struct exec_req, main),
};

static const struct fspec shutdown_spec[] = {
	FH(1, FT_U32, struct shutdown_req, signal, has_signal),
	FH(2, FT_U32, struct shutdown_req, grace_ms, has_grace),
};

static const struct fspec path_spec[] = {
	F(1, FT_STR, struct path_req, path),
};

#define NSPEC(a) (sizeof(a) / sizeof((a)[0]))

int msg_parse_config(const uint8_t *p, size_t n, struct boot_config *c, const char **why)
{
	memset(c, 0, sizeof *c);
	return parse(p, n, c, config_spec, NSPEC(config_spec), why);
}

void msg_free_config(struct boot_config *c)
{
	free_fields(c, config_spec, NSPEC(config_spec));
}

int msg_parse_hello(const uint8_t *p, size_t n, struct hello_req *h, const char **why)
{
	memset(h, 0, sizeof *h);
	if (parse(p, n, h, hello_spec, NSPEC(hello_spec), why) < 0)
		return -1;
	if (!h->has_min || !h->has_max) {
		*why = "HELLO without min_version and max_version";
		return -1;
	}
	return 0;
}

int msg_parse_exec(const uint8_t *p, size_t n, struct exec_req *e, const char **why)
{
	memset(e, 0, sizeof *e);
	if (parse(p, n, e, exec_spec, NSPEC(exec_spec), why) < 0)
		return -1;
	if (e->argv.n == 0) {
		msg_free_exec(e);
		*why = "EXEC without argv";
		return -1;
	}
	return 0;
}

void msg_free_exec(struct exec_req *e)
{
	free_fields(e, exec_spec, NSPEC(exec_spec));
}

int msg_parse_shutdown(const uint8_t *p, size_t n, struct shutdown_req *s, const char **why)
{
	memset(s, 0, sizeof *s);
	return parse(p, n, s, shutdown_spec, NSPEC(shutdown_spec), why);
}

int msg_parse_path(const uint8_t *p, size_t n, struct path_req *r, const char **why)
{
	memset(r, 0, sizeof *r);
	if (parse(p, n, r, path_spec, NSPEC(path_spec), why) < 0)
		return -1;
	if (!r->path || !*r->path) {
		msg_free_path(r);
		*why = "request without a path";
		return -1;
	}
	return 0;
}

void msg_free_path(struct path_req *r)
{
	free_fields(r, path_spec, NSPEC(path_spec));
}
