/* fields.h - the field-list codec (PROTOCOL.md, "Field lists").
 *
 * A field list is a sequence of { u8 tag, u32 length (big-endian), value }.
 * The iterator walks one without copying and reports a field that runs past
 * the end of the buffer; typed getters check the exact value length.
 * Encoders append fields to a struct buf. */
#ifndef KESTREL_FIELDS_H
#define KESTREL_FIELDS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define FIELD_HDR 5u

struct fl_iter {
	const uint8_t *p;
	size_t left;
};

void fl_iter_init(struct fl_iter *it, const uint8_t *buf, size_t len);
/* 1: the next field is in *tag, *val, *len; 0: end of list;
 * -1: the field runs past the end of the buffer (the list is invalid). */
int fl_next(struct fl_iter *it, uint8_t *tag, const uint8_t **val, uint32_t *len);

/* Typed views of one value; -1 when its length is wrong for the type. */
int fl_u16(const uint8_t *val, uint32_t len, uint16_t *out);
int fl_u32(const uint8_t *val, uint32_t len, uint32_t *out);
/* A str value must not contain NUL.  fl_strdup returns a NUL-terminated
 * copy, or NULL if it holds a NUL or memory ran out. */
int fl_str_ok(const uint8_t *val, uint32_t len);
char *fl_strdup(const uint8_t *val, uint32_t len);

/* Encoders: 0 or -1 (out of memory). */
int fl_put(struct buf *b, uint8_t tag, const void *val, uint32_t len);
int fl_put_u16(struct buf *b, uint8_t tag, uint16_t v);
int fl_put_u32(struct buf *b, uint8_t tag, uint32_t v);
int fl_put_str(struct buf *b, uint8_t tag, const char *s);

#endif
