/* logrec.h - log-port records (PROTOCOL.md, "Log records").
 *
 * A record is "<unix ns> <kind> <payload>\n".  The line splitter turns a
 * process's output stream into records: one per complete line (kind o/e,
 * a CR before the LF dropped), and a partial record (kind O/E) for every
 * 16 KiB of a longer line and for an unterminated tail at end of stream.
 * It is pure (no I/O) so the fuzz harness can check it. */
#ifndef KESTREL_LOGREC_H
#define KESTREL_LOGREC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define LOG_LINE_MAX 16384u

typedef void (*rec_fn)(void *ctx, char kind, const uint8_t *p, size_t n);

struct linesplit {
	char full;   /* kind of a complete line: 'o' or 'e' */
	char part;   /* kind of a partial one:  'O' or 'E' */
	size_t len;
	uint8_t buf[LOG_LINE_MAX];
};

void ls_init(struct linesplit *ls, char full, char part);
void ls_feed(struct linesplit *ls, const uint8_t *p, size_t n, rec_fn emit, void *ctx);
/* End of stream: an unterminated tail becomes a partial record. */
void ls_flush(struct linesplit *ls, rec_fn emit, void *ctx);

/* Append one formatted record to out; 0 or -1 (out of memory). */
int logrec_put(struct buf *out, uint64_t unix_ns, char kind, const uint8_t *p, size_t n);

#endif
