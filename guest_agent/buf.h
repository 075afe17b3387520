/* buf.h - a growable byte queue: append at the tail, consume from the head.
 *
 * Used for everything kestrel buffers: the agent port's and the log port's
 * outgoing bytes, each session's pending stdin, reply payloads being built.
 * Callers bound the size themselves (soft limits checked before reading more
 * input), so the queue itself only refuses on allocation failure. */
#ifndef KESTREL_BUF_H
#define KESTREL_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t off;  /* first valid byte */
	size_t len;  /* valid bytes from off */
	size_t cap;
};

/* Append n bytes; 0 or -1 (out of memory, nothing appended). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Room for n more bytes at the tail; fill it, then buf_commit(). NULL: no memory. */
uint8_t *buf_reserve(struct buf *b, size_t n);
void buf_commit(struct buf *b, size_t n);
/* Drop n bytes from the head. */
void buf_consume(struct buf *b, size_t n);
/* Empty the queue, giving back large allocations. */
void buf_clear(struct buf *b);
void buf_free(struct buf *b);

static inline const uint8_t *buf_head(const struct buf *b)
{
	return b->data ? b->data + b->off : (const uint8_t *)"";
}

#endif
