/* target.c - the fuzz target (see target.h).
 *
 * Properties checked, beyond "no memory error" (ASan/UBSan):
 *  - frame decoder: every frame respects MAX_PAYLOAD and has a known type;
 *    the event sequence does not depend on how the input is split into
 *    reads (one feed versus chunks of sizes derived from the input);
 *  - field lists: the iterator never steps outside the buffer, and the
 *    message decoders agree with it about validity;
 *  - line splitter: records equal those of a byte-at-a-time reference model
 *    (so none is longer than 16 KiB or holds an LF), for any chunking;
 *  - module parameters from a command line: the result's length is what
 *    is returned, a buffer twice the input's size always suffices, and a
 *    small buffer gets a result or -1, never an overflow;
 *  - tar reader (COPY_IN): the events do not depend on the chunking; every
 *    member has a name, permission bits only, no data unless it is a file,
 *    and exactly its size of data; a member written again by the encoder
 *    reads back the same; cleaned names never hold "..", "." or empty
 *    components and are never absolute; PAX records and numeric fields
 *    parsed straight from the input stay in bounds;
 *  - nic fields (boot tag 25): a field that parses prints back byte for byte,
 *    with prefix <= 32 and 68 <= MTU <= 65535. */
#include "target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "frame.h"
#include "logrec.h"
#include "modparam.h"
#include "msg.h"
#include "netcfg.h"
#include "tar.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz: check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static uint64_t fnv(const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* ---- field lists and messages ---- */

static void check_nic(const char *text)
{
	struct nic_cfg nic;
	if (netcfg_parse(text, &nic) < 0)
		return;
	char back[128];
	CHECK(nic.prefix <= 32 && nic.mtu >= 68 && nic.mtu <= 65535);
	CHECK(netcfg_format(&nic, back, sizeof back) > 0);
	CHECK(strcmp(back, text) == 0);
}

/* The input itself as one nic field (up to its first NUL). */
static void check_nic_text(const uint8_t *p, size_t n)
{
	char text[160];
	size_t len = n < sizeof text - 1 ? n : sizeof text - 1;
	memcpy(text, p, len);
	text[len] = 0;
	check_nic(text);
}

static void check_fields(const uint8_t *p, size_t n)
{
	struct fl_iter it;
	uint8_t tag;
	const uint8_t *val;
	uint32_t len;
	int r;
	size_t seen = 0;
	fl_iter_init(&it, p, n);
	while ((r = fl_next(&it, &tag, &val, &len)) == 1) {
		CHECK(val >= p + FIELD_HDR && val + len <= p + n);
		seen += FIELD_HDR + len;
	}
	CHECK(r == 0 ? seen == n : seen < n);
	int well_formed = r == 0;

	const char *why;
	struct boot_config c;
	if (msg_parse_config(p, n, &c, &why) == 0) {
		CHECK(well_formed);
		for (uint32_t i = 0; i < c.argv.n; i++)
			CHECK(c.argv.v[i] != NULL);
		CHECK(c.argv.v[c.argv.n] == NULL && c.env.v[c.env.n] == NULL);
		CHECK(c.health_argv.v[c.health_argv.n] == NULL);
		CHECK(c.nics.v[c.nics.n] == NULL);
		for (uint32_t i = 0; i < c.nics.n; i++)
			check_nic(c.nics.v[i]);
		msg_free_config(&c);
	}
	struct exec_req e;
	if (msg_parse_exec(p, n, &e, &why) == 0) {
		CHECK(well_formed && e.argv.n > 0 && e.argv.v[e.argv.n] == NULL);
		for (uint32_t i = 0; i < e.argv.n; i++)
			CHECK(strlen(e.argv.v[i]) <= n);
		msg_free_exec(&e);
	}
	struct hello_req h;
	if (msg_parse_hello(p, n, &h, &why) == 0)
		CHECK(well_formed && h.has_min && h.has_max);
	struct shutdown_req s;
	if (msg_parse_shutdown(p, n, &s, &why) == 0)
		CHECK(well_formed);
	struct path_req pr;
	if (msg_parse_path(p, n, &pr, &why) == 0) {
		CHECK(well_formed && pr.path && pr.path[0] && strlen(pr.path) <= n);
		msg_free_path(&pr);
	}
}

/* ---- frames ---- */

#define MAX_EVENTS 4096

struct evlog {
	size_t n;
	uint64_t ev[MAX_EVENTS];
};

static void record(struct evlog *log, uint64_t v)
{
	if (log->n < MAX_EVENTS)
		log->ev[log->n++] = v;
}

static void run_frames(const uint8_t *data, size_t size, uint32_t seed, struct evlog *log,
		       int check_payloads)
{
	struct frame_dec *d = malloc(sizeof *d);   /* heap: ASan sees past its end */
	CHECK(d);
	frame_dec_init(d, frame_type_from_host);
	size_t off = 0;
	while (off < size) {
		size_t chunk = size - off;
		if (seed) {   /* chunk sizes from a tiny LCG: 1..~300 bytes */
			seed = seed * 1103515245u + 12345u;
			size_t c = 1 + (seed >> 16) % 300;
			if (c < chunk)
				chunk = c;
		}
		const uint8_t *p = data + off;
		size_t left = chunk;
		for (;;) {
			size_t used = 0;
			struct frame f;
			enum frame_ev ev = frame_dec_feed(d, p, left, &used, &f);
			CHECK(used <= left);
			p += used;
			left -= used;
			if (ev == FEV_NONE) {
				CHECK(left == 0);
				break;
			}
			uint64_t h = (uint64_t)ev;
			if (ev == FEV_FRAME) {
				CHECK(f.len <= MAX_PAYLOAD);
				CHECK(frame_type_from_host(f.type));
				CHECK(f.payload >= d->buf && f.payload + f.len <= d->buf + sizeof d->buf);
				h = fnv(f.payload, f.len, h * 31 + f.type) ^ ((uint64_t)f.channel << 8) ^ f.flags;
				if (check_payloads)
					check_fields(f.payload, f.len);
			}
			record(log, h);
		}
		off += chunk;
	}
	free(d);
}

static void check_frames(const uint8_t *data, size_t size)
{
	static struct evlog whole, split;
	whole.n = split.n = 0;
	run_frames(data, size, 0, &whole, 1);
	uint32_t seed = (uint32_t)fnv(data, size < 16 ? size : 16, 14695981039346656037ull) | 1;
	run_frames(data, size, seed, &split, 0);
	CHECK(whole.n == split.n);
	CHECK(!memcmp(whole.ev, split.ev, whole.n * sizeof whole.ev[0]));
}

/* ---- log lines ---- */

struct reclog {
	size_t n;
	uint64_t h;
};

static void on_rec(void *ctx, char kind, const uint8_t *p, size_t n)
{
	struct reclog *r = ctx;
	CHECK(n <= LOG_LINE_MAX);
	CHECK(!memchr(p, '\n', n));
	CHECK(kind == 'o' || kind == 'O');
	r->n++;
	r->h = fnv(p, n, r->h * 31 + (uint64_t)kind) ^ n;
}

/* The splitter's rules, one byte at a time. */
static void reference_lines(const uint8_t *p, size_t n, struct reclog *r)
{
	static uint8_t cur[LOG_LINE_MAX];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			size_t l = len && cur[len - 1] == '\r' ? len - 1 : len;
			on_rec(r, 'o', cur, l);
			len = 0;
			continue;
		}
		if (len == LOG_LINE_MAX) {
			on_rec(r, 'O', cur, len);
			len = 0;
		}
		cur[len++] = p[i];
	}
	if (len)
		on_rec(r, 'O', cur, len);
}

static void check_lines(const uint8_t *data, size_t size)
{
	/* Stretch some small inputs (one in eight, chosen by content so a
	 * crash reproduces) so the 16 KiB limit is reached too. */
	int stretch = size && size < 1024 && fnv(data, size, 7) % 8 == 0;
	size_t reps = stretch ? 17000 / size + 1 : 1;
	size_t total = size * reps;
	uint8_t *in = malloc(total ? total : 1);
	CHECK(in);
	for (size_t i = 0; i < reps; i++)
		memcpy(in + i * size, data, size);
	struct reclog want = { 0, 0 }, got = { 0, 0 };
	reference_lines(in, total, &want);
	struct linesplit *ls = malloc(sizeof *ls);
	CHECK(ls);
	ls_init(ls, 'o', 'O');
	size_t step = 1 + (size ? data[0] : 0) * 37u;
	for (size_t off = 0; off < total; off += step)
		ls_feed(ls, in + off, total - off < step ? total - off : step, on_rec, &got);
	ls_flush(ls, on_rec, &got);
	CHECK(want.n == got.n && want.h == got.h);
	free(ls);
	free(in);
}

/* ---- module parameters ---- */

static void check_modparams(const uint8_t *data, size_t size)
{
	static const char *const modules[] = { "virtio_mmio", "a", "9p" };
	const char *cmd = (const char *)data;
	size_t big = 2 * size + 16, small = size / 3 + 1;
	char *out = malloc(big), *tiny = malloc(small);
	CHECK(out && tiny);
	for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
		int n = modparam_from_cmdline(cmd, size, modules[i], out, big);
		CHECK(n >= 0 && (size_t)n == strlen(out) && (size_t)n < big);
		CHECK(n == 0 || (out[0] != ' ' && out[n - 1] != ' '));
		int m = modparam_from_cmdline(cmd, size, modules[i], tiny, small);
		CHECK(strlen(tiny) < small);
		CHECK(m == -1 || (m == n && !strcmp(out, tiny)));
	}
	char *name = malloc(size + 1);
	CHECK(name);
	memcpy(name, data, size);
	name[size] = 0;
	char mod[16];
	if (modparam_name_of(name, mod, sizeof mod) == 0)
		CHECK(strlen(mod) < sizeof mod && strstr(name, mod));
	free(name);
	free(tiny);
	free(out);
}

/* ---- tar ---- */

static void check_clean_name(const char *name)
{
	char out[512];
	const char *why = NULL;
	int n = tar_clean_name(name, out, sizeof out, &why);
	if (n < 0) {
		CHECK(why != NULL);
		return;
	}
	CHECK(strlen(out) < sizeof out);
	CHECK(out[0] != '/' && (n == 0) == (out[0] == 0));
	int comps = 0;
	for (const char *c = out; *c; ) {
		const char *e = strchr(c, '/');
		size_t len = e ? (size_t)(e - c) : strlen(c);
		CHECK(len > 0);
		CHECK(!(len == 1 && c[0] == '.') && !(len == 2 && c[0] == '.' && c[1] == '.'));
		comps++;
		c += len + (e != NULL);
		CHECK(!e || *c);   /* no trailing '/' */
	}
	CHECK(comps == n);
}

static int has_data(char type)
{
	return !strchr("123456", type) || type == 0;
}

/* The encoder's output for e reads back as e. */
static void check_reencode(const struct tar_entry *e)
{
	struct buf b = { 0 };
	CHECK(tar_put_header(&b, e) == 0);
	CHECK(b.len % TAR_BLOCK == 0);
	struct tar_reader *r = malloc(sizeof *r);
	CHECK(r);
	tar_reader_init(r);
	size_t used = 0, dlen = 0;
	const uint8_t *d = NULL;
	enum tar_ev ev = tar_reader_feed(r, buf_head(&b), b.len, &used, &d, &dlen);
	CHECK(ev == TAR_EV_ENTRY && used == b.len);
	const struct tar_entry *g = &r->entry;
	CHECK(!strcmp(g->name, e->name) && !strcmp(g->linkname, e->linkname));
	CHECK(g->type == e->type && g->mode == e->mode && g->uid == e->uid && g->gid == e->gid);
	CHECK(g->mtime == e->mtime && g->size == e->size);
	tar_reader_free(r);
	free(r);
	buf_free(&b);
}

static void run_tar(const uint8_t *data, size_t size, uint32_t seed, struct evlog *log,
		    int deep)
{
	struct tar_reader *r = malloc(sizeof *r);
	CHECK(r);
	tar_reader_init(r);
	size_t off = 0;
	uint64_t got = 0, want = 0, dh = 0;   /* data of the current member */
	int in_entry = 0, done = 0;
	while (off < size && !done) {
		size_t chunk = size - off;
		if (seed) {
			seed = seed * 1103515245u + 12345u;
			size_t c = 1 + (seed >> 16) % 700;
			if (c < chunk)
				chunk = c;
		}
		const uint8_t *p = data + off;
		size_t left = chunk;
		while (!done) {
			size_t used = 0, dlen = 0;
			const uint8_t *d = NULL;
			enum tar_ev ev = tar_reader_feed(r, p, left, &used, &d, &dlen);
			CHECK(used <= left);
			if (ev == TAR_EV_DATA)
				CHECK(d >= p && d + dlen <= p + used && dlen > 0);
			p += used;
			left -= used;
			if (ev == TAR_EV_NONE) {
				CHECK(left == 0);
				break;
			}
			uint64_t h = (uint64_t)ev;
			if (ev != TAR_EV_DATA) {
				record(log, dh);
				dh = 0;
			}
			if (ev == TAR_EV_ENTRY) {
				const struct tar_entry *e = &r->entry;
				CHECK(!in_entry || got == want);
				CHECK(e->name && e->name[0] && e->linkname);
				CHECK(e->mode <= 07777);
				CHECK(e->type != 0 && e->type != '7' && !strchr("xgLK", e->type));
				CHECK(has_data(e->type) || e->size == 0);
				in_entry = 1;
				got = 0;
				want = e->size;
				h = fnv((const uint8_t *)e->name, strlen(e->name), h);
				h = fnv((const uint8_t *)e->linkname, strlen(e->linkname), h * 31 + (uint8_t)e->type);
				h ^= e->mode * 7 + e->uid * 131 + e->gid * 1031 + (uint64_t)e->mtime * 8191 + e->size;
				if (deep) {
					check_clean_name(e->name);
					check_clean_name(e->linkname);
					check_reencode(e);
				}
			} else if (ev == TAR_EV_DATA) {
				/* data comes in as many events as the chunking makes:
				 * hashed as one stream per member */
				CHECK(in_entry);
				got += dlen;
				CHECK(got <= want);
				dh = fnv(d, dlen, dh);
				continue;
			} else {
				if (ev == TAR_EV_END)
					CHECK(!in_entry || got == want);
				done = 1;
			}
			record(log, h);
		}
		off += chunk;
	}
	if (tar_reader_at_boundary(r))
		CHECK(!in_entry || got == want);
	record(log, dh);
	tar_reader_free(r);
	free(r);
}

static void check_tar(const uint8_t *data, size_t size)
{
	static struct evlog whole, split;
	whole.n = split.n = 0;
	run_tar(data, size, 0, &whole, 1);
	uint32_t seed = (uint32_t)fnv(data, size < 16 ? size : 16, 99) | 1;
	run_tar(data, size, seed, &split, 0);
	CHECK(whole.n == split.n);
	CHECK(!memcmp(whole.ev, split.ev, whole.n * sizeof whole.ev[0]));

	/* The pieces, straight on the input. */
	struct tar_reader *r = malloc(sizeof *r);
	CHECK(r);
	tar_reader_init(r);
	if (tar_pax_apply(r, data, size) < 0)
		CHECK(r->why != NULL);
	tar_reader_free(r);
	free(r);
	int64_t v;
	if (tar_number(data, size < 12 ? size : 12, &v) == 0 && size >= 12 && data[0] < 0x80)
		CHECK(v >= 0);   /* octal is never negative */
	if (size >= TAR_BLOCK)
		(void)tar_checksum_ok(data);
	char *name = malloc(size + 1);
	CHECK(name);
	memcpy(name, data, size);
	name[size] = 0;
	check_clean_name(name);
	free(name);
}

void fuzz_one(const uint8_t *data, size_t size)
{
	check_frames(data, size);
	check_fields(data, size);
	check_lines(data, size);
	check_modparams(data, size);
	check_tar(data, size);
	check_nic_text(data, size);
}
