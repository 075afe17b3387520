/* fields.c - field-list codec (see fields.h). */
#include "fields.h"

#include <stdlib.h>
#include <string.h>

#include "frame.h"

void fl_iter_init(struct fl_iter *it, const uint8_t *buf, size_t len)
{
	it->p = buf;
	it->left = len;
}

int fl_next(struct fl_iter *it, uint8_t *tag, const uint8_t **val, uint32_t *len)
{
	if (it->left == 0)
		return 0;
	if (it->left < FIELD_HDR)
		return -1;
	uint32_t n = get_be32(it->p + 1);
	if (n > it->left - FIELD_HDR)
		return -1;
	*tag = it->p[0];
	*val = it->p + FIELD_HDR;
	*len = n;
	it->p += FIELD_HDR + n;
	it->left -= FIELD_HDR + n;
	return 1;
}

int fl_u16(const uint8_t *val, uint32_t len, uint16_t *out)
{
	if (len != 2)
		return -1;
	*out = get_be16(val);
	return 0;
}

int fl_u32(const uint8_t *val, uint32_t len, uint32_t *out)
{
	if (len != 4)
		return -1;
	*out = get_be32(val);
	return 0;
}

int fl_str_ok(const uint8_t *val, uint32_t len)
{
	return len == 0 || memchr(val, 0, len) == NULL;
}

char *fl_strdup(const uint8_t *val, uint32_t len)
{
	if (!fl_str_ok(val, len))
		return NULL;
	char *s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	if (len)
		memcpy(s, val, len);
	s[len] = 0;
	return s;
}

int fl_put(struct buf *b, uint8_t tag, const void *val, uint32_t len)
{
	uint8_t *p = buf_reserve(b, FIELD_HDR + (size_t)len);
	if (!p)
		return -1;
	p[0] = tag;
	put_be32(p + 1, len);
	if (len)
		memcpy(p + FIELD_HDR, val, len);
	buf_commit(b, FIELD_HDR + (size_t)len);
	return 0;
}

int fl_put_u16(struct buf *b, uint8_t tag, uint16_t v)
{
	uint8_t x[2];
	put_be16(x, v);
	return fl_put(b, tag, x, 2);
}

int fl_put_u32(struct buf *b, uint8_t tag, uint32_t v)
{
	uint8_t x[4];
	put_be32(x, v);
	return fl_put(b, tag, x, 4);
}

int fl_put_str(struct buf *b, uint8_t tag, const char *s)
{
	return fl_put(b, tag, s, (uint32_t)strlen(s));
}
