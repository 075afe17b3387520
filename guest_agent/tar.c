/* tar.c - tar header encoder, push-style reader, PAX records, member names
 * (see tar.h).  No I/O. */
#include "tar.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ustar header fields: offset, length. */
#define H_NAME 0, 100
#define H_MODE 100, 8
#define H_UID 108, 8
#define H_GID 116, 8
#define H_SIZE 124, 12
#define H_MTIME 136, 12
#define H_TYPE 156
#define H_LINK 157, 100
#define H_MAGIC 257
#define H_DEVMAJOR 329, 8
#define H_DEVMINOR 337, 8
#define H_PREFIX 345, 155
/* NUM(h, H_SIZE, &v) -> tar_number(h + 124, 12, &v) */
#define AT(h, off, len) (h) + (off), (len)
#define NUM(h, f, out) tar_number(AT(h, f), out)
#define STR(h, f) field_str(AT(h, f))

/* ---- writing ---- */

static int fits_octal(uint64_t v, size_t width)
{
	/* width - 1 digits and a NUL */
	return v < ((uint64_t)1 << (3 * (width - 1)));
}

static void put_octal(uint8_t *f, size_t width, uint64_t v)
{
	f[width - 1] = 0;
	for (size_t i = width - 1; i-- > 0; v >>= 3)
		f[i] = (uint8_t)('0' + (v & 7));
}

static void put_str(uint8_t *f, size_t width, const char *s)
{
	size_t n = strlen(s);
	memcpy(f, s, n < width ? n : width);
}

static size_t digits(size_t v)
{
	size_t d = 1;
	while (v >= 10) {
		v /= 10;
		d++;
	}
	return d;
}

/* One PAX record: "LEN key=value\n", LEN counting the whole record.  The value
 * may hold any bytes (an xattr's): the length, not a terminator, delimits it. */
int tar_pax_record_n(struct buf *b, const char *key, const void *val, size_t vn)
{
	size_t base = strlen(key) + vn + 3;
	size_t len = base + 1;
	while (base + digits(len) != len)
		len = base + digits(len);
	char head[32];
	int hn = snprintf(head, sizeof head, "%zu ", len);
	if (buf_append(b, head, (size_t)hn) < 0 || buf_append(b, key, strlen(key)) < 0 ||
	    buf_append(b, "=", 1) < 0 || (vn && buf_append(b, val, vn) < 0) ||
	    buf_append(b, "\n", 1) < 0)
		return -1;
	return 0;
}

static int pax_record(struct buf *b, const char *key, const char *val)
{
	return tar_pax_record_n(b, key, val, strlen(val));
}

static void checksum(uint8_t *h)
{
	memset(h + 148, ' ', 8);
	unsigned sum = 0;
	for (size_t i = 0; i < TAR_BLOCK; i++)
		sum += h[i];
	put_octal(h + 148, 7, sum);   /* six digits, NUL, and the space left there */
}

static void fill_block(uint8_t *h, const char *name, const struct tar_entry *e, char type,
		       uint64_t size)
{
	memset(h, 0, TAR_BLOCK);
	put_str(h, 100, name);
	put_octal(h + 100, 8, e->mode & 07777);
	put_octal(h + 108, 8, fits_octal(e->uid, 8) ? e->uid : 0);
	put_octal(h + 116, 8, fits_octal(e->gid, 8) ? e->gid : 0);
	put_octal(h + 124, 12, fits_octal(size, 12) ? size : 0);
	uint64_t mt = e->mtime >= 0 && fits_octal((uint64_t)e->mtime, 12) ? (uint64_t)e->mtime : 0;
	put_octal(h + 136, 12, mt);
	h[H_TYPE] = (uint8_t)type;
	put_str(h + 157, 100, e->linkname ? e->linkname : "");
	memcpy(h + H_MAGIC, "ustar\0" "00", 8);
	put_octal(h + 329, 8, fits_octal(e->devmajor, 8) ? e->devmajor : 0);
	put_octal(h + 337, 8, fits_octal(e->devminor, 8) ? e->devminor : 0);
	checksum(h);
}

static int put_padding(struct buf *b, uint64_t size)
{
	uint32_t pad = tar_padding(size);
	uint8_t *dst = buf_reserve(b, pad);
	if (pad && !dst)
		return -1;
	memset(dst, 0, pad);
	buf_commit(b, pad);
	return 0;
}

int tar_put_header(struct buf *b, const struct tar_entry *e)
{
	const char *link = e->linkname ? e->linkname : "";
	struct buf pax = { 0 };
	char num[32];
	int rc = 0;
	if (strlen(e->name) > 100)
		rc |= pax_record(&pax, "path", e->name);
	if (strlen(link) > 100)
		rc |= pax_record(&pax, "linkpath", link);
	if (!fits_octal(e->size, 12)) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)e->size);
		rc |= pax_record(&pax, "size", num);
	}
	if (!fits_octal(e->uid, 8)) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)e->uid);
		rc |= pax_record(&pax, "uid", num);
	}
	if (!fits_octal(e->gid, 8)) {
		snprintf(num, sizeof num, "%llu", (unsigned long long)e->gid);
		rc |= pax_record(&pax, "gid", num);
	}
	if (e->mtime < 0 || !fits_octal((uint64_t)e->mtime, 12)) {
		snprintf(num, sizeof num, "%lld", (long long)e->mtime);
		rc |= pax_record(&pax, "mtime", num);
	}
	if (e->pax_extra && e->pax_extra->len)   /* xattrs, already PAX records */
		rc |= buf_append(&pax, buf_head(e->pax_extra), e->pax_extra->len);
	if (rc) {
		buf_free(&pax);
		return -1;
	}
	if (pax.len) {
		struct tar_entry x = { .name = "././@PaxHeader", .linkname = "", .mode = 0644 };
		uint8_t *h = buf_reserve(b, TAR_BLOCK);
		if (!h)
			goto oom;
		fill_block(h, x.name, &x, 'x', pax.len);
		buf_commit(b, TAR_BLOCK);
		if (buf_append(b, buf_head(&pax), pax.len) < 0 || put_padding(b, pax.len) < 0)
			goto oom;
	}
	buf_free(&pax);
	uint8_t *h = buf_reserve(b, TAR_BLOCK);
	if (!h)
		return -1;
	fill_block(h, e->name, e, e->type, e->size);
	buf_commit(b, TAR_BLOCK);
	return 0;
oom:
	buf_free(&pax);
	return -1;
}

int tar_put_end(struct buf *b)
{
	uint8_t *z = buf_reserve(b, 2 * TAR_BLOCK);
	if (!z)
		return -1;
	memset(z, 0, 2 * TAR_BLOCK);
	buf_commit(b, 2 * TAR_BLOCK);
	return 0;
}

/* ---- reading: fields ---- */

int tar_number(const uint8_t *f, size_t n, int64_t *out)
{
	if (n == 0) {
		*out = 0;
		return 0;
	}
	if (f[0] == 0x80 || f[0] == 0xFF) {   /* base-256 (GNU), as Python reads it */
		int64_t v = f[0] == 0xFF ? -1 : 0;
		for (size_t i = 1; i < n; i++) {
			if (v > (INT64_MAX - f[i]) / 256 || v < INT64_MIN / 256)
				return -1;
			v = v * 256 + f[i];
		}
		*out = v;
		return 0;
	}
	size_t end = 0;
	while (end < n && f[end])
		end++;
	size_t i = 0;
	while (i < end && f[i] == ' ')
		i++;
	while (end > i && f[end - 1] == ' ')
		end--;
	int64_t v = 0;
	for (; i < end; i++) {
		if (f[i] < '0' || f[i] > '7' || v > (INT64_MAX >> 3))
			return -1;
		v = v * 8 + (f[i] - '0');
	}
	*out = v;
	return 0;
}

int tar_checksum_ok(const uint8_t block[TAR_BLOCK])
{
	int64_t want;
	if (tar_number(block + 148, 8, &want) < 0)
		return 0;
	int64_t usum = 0, ssum = 0;
	for (size_t i = 0; i < TAR_BLOCK; i++) {
		uint8_t c = i >= 148 && i < 156 ? ' ' : block[i];
		usum += c;
		ssum += (int8_t)c;
	}
	return want == usum || want == ssum;   /* some old tars summed signed chars */
}

static char *dup_n(const void *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* A string field: up to its first NUL. */
static char *field_str(const uint8_t *f, size_t n)
{
	size_t len = 0;
	while (len < n && f[len])
		len++;
	return dup_n(f, len);
}

static int dec_u64(const uint8_t *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* PAX times: [-]seconds[.fraction]; the fraction is dropped. */
static int dec_time(const uint8_t *s, size_t n, int64_t *out)
{
	int neg = n > 0 && s[0] == '-';
	size_t i = (size_t)neg, k = i;
	while (k < n && s[k] != '.')
		k++;
	for (size_t j = k + (k < n); j < n; j++)
		if (s[j] < '0' || s[j] > '9')
			return -1;
	uint64_t v;
	if (dec_u64(s + i, k - i, &v) < 0 || v > (uint64_t)INT64_MAX + (uint64_t)neg)
		return -1;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;   /* two's complement: -2^63 too */
	return 0;
}

static int fail(struct tar_reader *r, const char *why)
{
	r->why = why;
	return -1;
}

static int key_is(const uint8_t *k, size_t n, const char *name)
{
	return strlen(name) == n && !memcmp(k, name, n);
}

static int set_str(struct tar_reader *r, char **dst, const uint8_t *v, size_t n)
{
	free(*dst);
	*dst = NULL;
	if (n == 0)
		return 0;   /* an empty value cancels the override */
	if (memchr(v, 0, n))
		return fail(r, "PAX path with a NUL byte");
	*dst = dup_n(v, n);
	return *dst ? 0 : fail(r, "out of memory");
}

int tar_pax_apply(struct tar_reader *r, const uint8_t *p, size_t n)
{
	size_t i = 0;
	while (i < n) {
		size_t j = i, len = 0;
		while (j < n && p[j] >= '0' && p[j] <= '9') {
			len = len * 10 + (size_t)(p[j] - '0');
			if (len > n)
				return fail(r, "PAX record longer than its header");
			j++;
		}
		if (j == i || j >= n || p[j] != ' ' || len < j - i + 3 || len > n - i ||
		    p[i + len - 1] != '\n')
			return fail(r, "malformed PAX record");
		const uint8_t *key = p + j + 1, *end = p + i + len - 1;
		const uint8_t *eq = memchr(key, '=', (size_t)(end - key));
		if (!eq || eq == key)
			return fail(r, "malformed PAX record");
		size_t kn = (size_t)(eq - key), vn = (size_t)(end - eq - 1);
		const uint8_t *val = eq + 1;
		int rc = 0;
		if (key_is(key, kn, "path")) {
			rc = set_str(r, &r->next_name, val, vn);
		} else if (key_is(key, kn, "linkpath")) {
			rc = set_str(r, &r->next_link, val, vn);
		} else if (key_is(key, kn, "size")) {
			r->has_size = vn > 0;
			if (vn && dec_u64(val, vn, &r->size) < 0)
				rc = fail(r, "bad PAX size");
		} else if (key_is(key, kn, "uid")) {
			r->has_uid = vn > 0;
			if (vn && dec_u64(val, vn, &r->uid) < 0)
				rc = fail(r, "bad PAX uid");
		} else if (key_is(key, kn, "gid")) {
			r->has_gid = vn > 0;
			if (vn && dec_u64(val, vn, &r->gid) < 0)
				rc = fail(r, "bad PAX gid");
		} else if (key_is(key, kn, "mtime")) {
			r->has_mtime = vn > 0;
			if (vn && dec_time(val, vn, &r->mtime) < 0)
				rc = fail(r, "bad PAX mtime");
		}
		if (rc < 0)
			return -1;
		i += len;
	}
	return 0;
}

/* ---- reading: the stream ---- */

enum { R_HEADER, R_EXT, R_DATA, R_PAD, R_END, R_ERROR };

static void clear_overrides(struct tar_reader *r)
{
	free(r->next_name);
	free(r->next_link);
	r->next_name = r->next_link = NULL;
	r->has_size = r->has_uid = r->has_gid = r->has_mtime = 0;
}

static void clear_entry(struct tar_reader *r)
{
	free(r->entry.name);
	free(r->entry.linkname);
	memset(&r->entry, 0, sizeof r->entry);
}

void tar_reader_init(struct tar_reader *r)
{
	memset(r, 0, sizeof *r);
	r->state = R_HEADER;
}

void tar_reader_free(struct tar_reader *r)
{
	clear_overrides(r);
	clear_entry(r);
	free(r->ext);
	r->ext = NULL;
}

static enum tar_ev error_ev(struct tar_reader *r, const char *why)
{
	if (why)
		r->why = why;
	r->state = R_ERROR;
	free(r->ext);
	r->ext = NULL;
	return TAR_EV_ERROR;
}

static int all_zero(const uint8_t *b)
{
	for (size_t i = 0; i < TAR_BLOCK; i++)
		if (b[i])
			return 0;
	return 1;
}

static enum tar_ev apply_ext(struct tar_reader *r)
{
	int rc = 0;
	switch (r->ext_type) {
	case 'x':
		rc = tar_pax_apply(r, r->ext, r->ext_len);
		break;
	case 'L':
	case 'K': {
		char **dst = r->ext_type == 'L' ? &r->next_name : &r->next_link;
		size_t len = strnlen((const char *)r->ext, r->ext_len);
		rc = set_str(r, dst, r->ext, len);
		break;
	}
	default:   /* 'g': global PAX attributes, not used */
		break;
	}
	free(r->ext);
	r->ext = NULL;
	if (rc < 0)
		return error_ev(r, NULL);
	r->have = 0;
	r->pad = tar_padding(r->ext_len);
	r->state = r->pad ? R_PAD : R_HEADER;
	return TAR_EV_NONE;
}

static int has_data(char type)
{
	switch (type) {
	case TAR_LINK: case TAR_SYM: case TAR_CHR: case TAR_BLK: case TAR_DIR: case TAR_FIFO:
		return 0;
	}
	return 1;   /* regular files, and unknown types whose data is skipped */
}

static enum tar_ev on_header(struct tar_reader *r)
{
	const uint8_t *h = r->block;
	if (all_zero(h)) {
		r->state = R_END;
		return TAR_EV_END;
	}
	if (!tar_checksum_ok(h))
		return error_ev(r, "bad tar header checksum");
	char type = (char)h[H_TYPE];
	int64_t size;
	if (NUM(h, H_SIZE, &size) < 0 || size < 0)
		return error_ev(r, "bad size in a tar header");
	if (type == 'x' || type == 'g' || type == 'L' || type == 'K') {
		if ((uint64_t)size > TAR_EXT_MAX)
			return error_ev(r, "tar extended header too long");
		r->ext_type = type;
		r->ext_len = (uint32_t)size;
		r->ext = malloc((size_t)size + 1);
		if (!r->ext)
			return error_ev(r, "out of memory");
		r->ext[size] = 0;
		r->have = 0;
		if (size == 0)
			return apply_ext(r);
		r->state = R_EXT;
		return TAR_EV_NONE;
	}
	clear_entry(r);
	struct tar_entry *e = &r->entry;
	int64_t mode, uid, gid, mtime;
	if (NUM(h, H_MODE, &mode) < 0 || mode < 0 ||
	    NUM(h, H_UID, &uid) < 0 || uid < 0 ||
	    NUM(h, H_GID, &gid) < 0 || gid < 0 ||
	    NUM(h, H_MTIME, &mtime) < 0)
		return error_ev(r, "bad number in a tar header");
	if (r->next_name) {
		e->name = r->next_name;
		r->next_name = NULL;
	} else if (!memcmp(h + H_MAGIC, "ustar\0", 6) && h[345]) {
		char *prefix = STR(h, H_PREFIX), *name = STR(h, H_NAME);
		if (prefix && name) {
			size_t pn = strlen(prefix), nn = strlen(name);
			e->name = malloc(pn + nn + 2);
			if (e->name) {
				memcpy(e->name, prefix, pn);
				e->name[pn] = '/';
				memcpy(e->name + pn + 1, name, nn + 1);
			}
		}
		free(prefix);
		free(name);
	} else {
		e->name = STR(h, H_NAME);
	}
	if (r->next_link) {
		e->linkname = r->next_link;
		r->next_link = NULL;
	} else {
		e->linkname = STR(h, H_LINK);
	}
	if (!e->name || !e->linkname)
		return error_ev(r, "out of memory");
	if (!e->name[0])
		return error_ev(r, "tar member without a name");
	size_t nl = strlen(e->name);
	if (type == '\0' && e->name[nl - 1] == '/')
		type = TAR_DIR;   /* old tars marked directories by the name alone */
	else if (type == '\0' || type == '7')
		type = TAR_REG;
	e->type = type;
	e->mode = (uint32_t)(mode & 07777);
	e->uid = r->has_uid ? r->uid : (uint64_t)uid;
	e->gid = r->has_gid ? r->gid : (uint64_t)gid;
	e->mtime = r->has_mtime ? r->mtime : mtime;
	uint64_t usize = r->has_size ? r->size : (uint64_t)size;
	e->size = has_data(type) ? usize : 0;
	int64_t maj = 0, min = 0;
	if (NUM(h, H_DEVMAJOR, &maj) < 0 || maj < 0 || maj > UINT32_MAX)
		maj = 0;
	if (NUM(h, H_DEVMINOR, &min) < 0 || min < 0 || min > UINT32_MAX)
		min = 0;
	e->devmajor = (uint32_t)maj;
	e->devminor = (uint32_t)min;
	clear_overrides(r);
	r->left = e->size;
	r->state = r->left ? R_DATA : R_HEADER;
	return TAR_EV_ENTRY;
}

enum tar_ev tar_reader_feed(struct tar_reader *r, const uint8_t *p, size_t n, size_t *used,
			    const uint8_t **data, size_t *dlen)
{
	size_t i = 0;
	*data = NULL;
	*dlen = 0;
	for (;;) {
		if (r->state == R_END || r->state == R_ERROR) {
			*used = n;   /* after the end, or after an error: ignored */
			return TAR_EV_NONE;
		}
		if (i == n) {
			*used = i;
			return TAR_EV_NONE;
		}
		size_t avail = n - i;
		switch (r->state) {
		case R_HEADER: {
			size_t take = TAR_BLOCK - r->have < avail ? TAR_BLOCK - r->have : avail;
			memcpy(r->block + r->have, p + i, take);
			r->have += (uint32_t)take;
			i += take;
			if (r->have < TAR_BLOCK)
				break;
			r->have = 0;
			enum tar_ev ev = on_header(r);
			if (ev != TAR_EV_NONE) {
				*used = ev == TAR_EV_END || ev == TAR_EV_ERROR ? n : i;
				return ev;
			}
			break;
		}
		case R_EXT: {
			size_t want = r->ext_len - r->have;
			size_t take = want < avail ? want : avail;
			memcpy(r->ext + r->have, p + i, take);
			r->have += (uint32_t)take;
			i += take;
			if (r->have == r->ext_len && apply_ext(r) == TAR_EV_ERROR) {
				*used = n;
				return TAR_EV_ERROR;
			}
			break;
		}
		case R_DATA: {
			size_t take = r->left < avail ? (size_t)r->left : avail;
			*data = p + i;
			*dlen = take;
			i += take;
			r->left -= take;
			if (r->left == 0) {
				r->pad = tar_padding(r->entry.size);
				r->state = r->pad ? R_PAD : R_HEADER;
			}
			*used = i;
			return TAR_EV_DATA;
		}
		case R_PAD: {
			size_t take = r->pad < avail ? r->pad : avail;
			r->pad -= (uint32_t)take;
			i += take;
			if (r->pad == 0)
				r->state = R_HEADER;
			break;
		}
		}
	}
}

int tar_reader_at_boundary(const struct tar_reader *r)
{
	return r->state == R_END || r->state == R_ERROR ||
	       (r->state == R_HEADER && r->have == 0 && !r->next_name && !r->next_link &&
		!r->has_size && !r->has_uid && !r->has_gid && !r->has_mtime);
}

/* ---- names ---- */

int tar_clean_name(const char *name, char *out, size_t outlen, const char **why)
{
	if (outlen == 0) {
		*why = "member name too long";
		return -1;
	}
	if (name[0] == '/') {
		*why = "absolute member name";
		return -1;
	}
	size_t o = 0;
	int n = 0;
	const char *s = name;
	while (*s) {
		const char *e = s;
		while (*e && *e != '/')
			e++;
		size_t len = (size_t)(e - s);
		if (len == 2 && s[0] == '.' && s[1] == '.') {
			*why = "member name with a .. component";
			return -1;
		}
		if (len > 0 && !(len == 1 && s[0] == '.')) {
			if (o + (o ? 1 : 0) + len + 1 > outlen) {
				*why = "member name too long";
				return -1;
			}
			if (o)
				out[o++] = '/';
			memcpy(out + o, s, len);
			o += len;
			n++;
		}
		s = *e ? e + 1 : e;
	}
	out[o] = 0;
	return n;
}
