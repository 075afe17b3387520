/* buf.c - the growable byte queue of buf.h. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

/* Queues that grew past this are shrunk again when they empty, so a burst
 * (a long PS reply, a stdin flood) does not pin memory for the VM's lifetime. */
#define BUF_KEEP (64 * 1024)

uint8_t *buf_reserve(struct buf *b, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len)
		return NULL;
	if (b->off + b->len + n <= b->cap)
		return b->data + b->off + b->len;
	/* Slide the live bytes to the front before growing. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len);
		b->off = 0;
		if (b->len + n <= b->cap)
			return b->data + b->len;
	}
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	uint8_t *p = realloc(b->data, cap);
	if (!p)
		return NULL;
	b->data = p;
	b->cap = cap;
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return 0;
	uint8_t *dst = buf_reserve(b, n);
	if (!dst)
		return -1;
	memcpy(dst, p, n);
	buf_commit(b, n);
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		buf_clear(b);
		return;
	}
	b->off += n;
	b->len -= n;
}

void buf_clear(struct buf *b)
{
	b->off = 0;
	b->len = 0;
	if (b->cap > BUF_KEEP)
		buf_free(b);
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}
