/* target.c - the fuzz target (see target.h).
 *
 * Properties checked, beyond "no memory error" (ASan/UBSan):
 *  - frame decoder: every frame respects MAX_PAYLOAD and has a known type;
 *    the event sequence does not depend on how the input is split into
 *    reads (one feed versus chunks of sizes derived from the input);
 *  - field lists: the iterator never steps outside the buffer, and the
 *    message decoders agree with it about validity;
 *  - line splitter: records equal those of a byte-at-a-time reference model
 *    (so none is longer than 16 KiB or holds an LF), for any chunking. */
#include "target.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "frame.h"
#include "logrec.h"
#include "msg.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "fuzz: check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); abort(); } } while (0)

static uint64_t fnv(const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* ---- field lists and messages ---- */

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

void fuzz_one(const uint8_t *data, size_t size)
{
	check_frames(data, size);
	check_fields(data, size);
	check_lines(data, size);
}
