/* logrec.c - line splitter and record formatting (see logrec.h). */
#include "logrec.h"

#include <stdio.h>
#include <string.h>

void ls_init(struct linesplit *ls, char full, char part)
{
	ls->full = full;
	ls->part = part;
	ls->len = 0;
}

static void emit_line(struct linesplit *ls, const uint8_t *p, size_t n, rec_fn emit, void *ctx)
{
	if (n > 0 && p[n - 1] == '\r')
		n--;
	emit(ctx, ls->full, p, n);
}

void ls_feed(struct linesplit *ls, const uint8_t *p, size_t n, rec_fn emit, void *ctx)
{
	while (n > 0) {
		/* A full buffer is only a partial record once a byte other than
		 * LF follows: a line of exactly 16 KiB is still one 'o' record. */
		if (ls->len == LOG_LINE_MAX) {
			if (p[0] == '\n') {
				emit_line(ls, ls->buf, ls->len, emit, ctx);
				ls->len = 0;
				p++;
				n--;
				continue;
			}
			emit(ctx, ls->part, ls->buf, ls->len);
			ls->len = 0;
		}
		const uint8_t *nl = memchr(p, '\n', n);
		size_t seg = nl ? (size_t)(nl - p) : n;
		if (nl && ls->len == 0 && seg <= LOG_LINE_MAX) {
			/* The common case: a whole line in the input, no copy. */
			emit_line(ls, p, seg, emit, ctx);
			p += seg + 1;
			n -= seg + 1;
			continue;
		}
		size_t take = LOG_LINE_MAX - ls->len;
		if (take > seg)
			take = seg;
		memcpy(ls->buf + ls->len, p, take);
		ls->len += take;
		p += take;
		n -= take;
		if (nl && take == seg) {
			emit_line(ls, ls->buf, ls->len, emit, ctx);
			ls->len = 0;
			p++;
			n--;
		}
	}
}

void ls_flush(struct linesplit *ls, rec_fn emit, void *ctx)
{
	if (ls->len > 0)
		emit(ctx, ls->part, ls->buf, ls->len);
	ls->len = 0;
}

int logrec_put(struct buf *out, uint64_t unix_ns, char kind, const uint8_t *p, size_t n)
{
	char head[32];
	int h = snprintf(head, sizeof head, "%llu %c ", (unsigned long long)unix_ns, kind);
	uint8_t *dst = buf_reserve(out, (size_t)h + n + 1);
	if (!dst)
		return -1;
	memcpy(dst, head, (size_t)h);
	if (n)
		memcpy(dst + h, p, n);
	dst[h + n] = '\n';
	buf_commit(out, (size_t)h + n + 1);
	return 0;
}
