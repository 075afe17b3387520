/* tar.h - POSIX tar (ustar + PAX extended headers) for COPY_OUT and COPY_IN
 * (PROTOCOL.md, "Copying files").  No I/O here: the encoder appends header
 * blocks to a struct buf, the reader is push-style like the frame decoder
 * (feed it whatever arrived, get one event at a time), and member names are
 * checked and normalized as strings.  copy.c does the file system work.
 *
 * Written: ustar headers; a PAX 'x' header before one whose name or link
 * target is longer than 100 bytes, whose size, uid, gid or mtime does not
 * fit its octal field.  Read: ustar (with its prefix field), old v7 and GNU
 * headers, octal and base-256 numbers, PAX 'x' records (path, linkpath,
 * size, uid, gid, mtime; others ignored), PAX 'g' (ignored), GNU 'L'/'K'
 * long names.  The archive ends at the first all-zero block. */
#ifndef KESTREL_TAR_H
#define KESTREL_TAR_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define TAR_BLOCK 512u
/* Longest PAX header or GNU long name the reader accepts. */
#define TAR_EXT_MAX 65536u

enum {
	TAR_REG = '0', TAR_LINK = '1', TAR_SYM = '2', TAR_CHR = '3',
	TAR_BLK = '4', TAR_DIR = '5', TAR_FIFO = '6',
};

struct tar_entry {
	char *name;         /* NUL-terminated, never empty */
	char *linkname;     /* NUL-terminated, "" when none */
	char type;          /* TAR_*; '\0' and '7' are read as TAR_REG; others as given */
	uint32_t mode;      /* permission bits with setuid, setgid, sticky (07777) */
	uint64_t uid, gid;
	int64_t mtime;      /* seconds */
	uint64_t size;      /* data bytes that follow (0 for all but regular and unknown types) */
	uint32_t devmajor, devminor;
	const struct buf *pax_extra;   /* more PAX records for the header (SCHILY.xattr.*), or NULL */
};

/* ---- writing ---- */

/* Append the header block(s) of e (a PAX header first when needed).  The
 * name of a directory should end in '/'.  0, or -1 when out of memory. */
int tar_put_header(struct buf *b, const struct tar_entry *e);
/* Append one PAX record "LEN key=value\n" whose value is vn bytes (binary-safe). */
int tar_pax_record_n(struct buf *b, const char *key, const void *val, size_t vn);
/* Zero bytes that pad data of size bytes to a whole block. */
static inline uint32_t tar_padding(uint64_t size)
{
	return (uint32_t)((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
}
/* The end of the archive: two zero blocks. */
int tar_put_end(struct buf *b);

/* ---- reading ---- */

enum tar_ev {
	TAR_EV_NONE,    /* all input consumed, no event */
	TAR_EV_ENTRY,   /* r->entry holds the next member; its data events follow */
	TAR_EV_DATA,    /* *data, *dlen: the next bytes of the member's data (in the input) */
	TAR_EV_END,     /* the end-of-archive block; later input is ignored */
	TAR_EV_ERROR,   /* r->why says what is wrong; the reader stays in error */
};

struct tar_reader {
	int state;
	uint8_t block[TAR_BLOCK];
	uint32_t have;          /* bytes in block, or of the extension in ext */
	uint64_t left;          /* data bytes of the member still to come */
	uint32_t pad;           /* padding bytes still to skip */
	char ext_type;          /* 'x', 'g', 'L', 'K' while collecting one */
	uint8_t *ext;
	uint32_t ext_len;
	/* Overrides for the next member, from PAX or GNU headers. */
	char *next_name, *next_link;
	int has_size, has_uid, has_gid, has_mtime;
	uint64_t size, uid, gid;
	int64_t mtime;
	struct tar_entry entry;
	const char *why;
};

void tar_reader_init(struct tar_reader *r);
void tar_reader_free(struct tar_reader *r);
/* Decode from p[0..n) until one event; *used: bytes of p consumed.  Call
 * again with the rest until TAR_EV_NONE.  Data events point into p. */
enum tar_ev tar_reader_feed(struct tar_reader *r, const uint8_t *p, size_t n, size_t *used,
			    const uint8_t **data, size_t *dlen);
/* Is the reader between members (or at the end, or in error)?  An archive
 * that stops elsewhere is truncated. */
int tar_reader_at_boundary(const struct tar_reader *r);

/* Lower-level pieces, exposed for the fuzz target. */
int tar_checksum_ok(const uint8_t block[TAR_BLOCK]);
/* A numeric header field: octal (spaces and NULs around it) or base-256;
 * 0, or -1 when malformed or beyond int64. */
int tar_number(const uint8_t *f, size_t n, int64_t *out);
/* Parse PAX records into r's overrides; 0, or -1 with r->why. */
int tar_pax_apply(struct tar_reader *r, const uint8_t *p, size_t n);

/* ---- names ---- */

/* Normalize a member name for extraction below a directory: "./a//b/" ->
 * "a/b" (no empty or "." components, no leading or trailing '/').  Returns
 * the number of components (0: the archive's root itself), or -1 with *why
 * when the name is absolute, has a ".." component, or does not fit out. */
int tar_clean_name(const char *name, char *out, size_t outlen, const char **why);

#endif
