/* frame.c - frame decoder and header encoder (see frame.h). */
#include "frame.h"

#include <string.h>

const uint8_t SYNC_MARKER[SYNC_LEN] = { 0xFF, 'H', 'Y', 'P', 'R', 'S', 'Y', 'N' };

enum { ST_HUNT, ST_BOUNDARY, ST_SYNC, ST_FRAME };

int frame_type_from_host(uint8_t type)
{
	return type >= T_HELLO && type <= T_COPY_IN;
}

void frame_dec_init(struct frame_dec *d, int (*type_known)(uint8_t type))
{
	d->type_known = type_known;
	frame_dec_reset(d);
}

void frame_dec_hunt(struct frame_dec *d)
{
	d->state = ST_HUNT;
	d->sync_have = 0;
	d->have = 0;
	d->need = 0;
}

void frame_dec_reset(struct frame_dec *d)
{
	frame_dec_hunt(d);
	d->replay_off = d->replay_len = 0;
	d->replay_pending = 0;
}

/* Hunting: scan for the whole marker.  Only its first byte is 0xFF, so on a
 * mismatch the match restarts at 1 if the byte is 0xFF, else at 0. */
static enum frame_ev step_hunt(struct frame_dec *d, const uint8_t *p, size_t n, size_t *took)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == SYNC_MARKER[d->sync_have]) {
			if (++d->sync_have == SYNC_LEN) {
				d->sync_have = 0;
				d->state = ST_BOUNDARY;
				*took = i + 1;
				return FEV_SYNC;
			}
		} else {
			d->sync_have = p[i] == 0xFF ? 1 : 0;
		}
	}
	*took = n;
	return FEV_NONE;
}

/* At a boundary, 0xFF can only start a SYNC (no length is that large).
 * Any mismatch in the rest of the marker breaks the stream; the mismatching
 * byte is left for the hunter. */
static enum frame_ev step_sync(struct frame_dec *d, const uint8_t *p, size_t n, size_t *took)
{
	size_t i = 0;
	while (i < n) {
		if (p[i] != SYNC_MARKER[d->sync_have]) {
			frame_dec_hunt(d);
			*took = i;
			return FEV_BROKEN;
		}
		i++;
		if (++d->sync_have == SYNC_LEN) {
			d->sync_have = 0;
			d->state = ST_BOUNDARY;
			*took = i;
			return FEV_SYNC;
		}
	}
	*took = i;
	return FEV_NONE;
}

static enum frame_ev step_frame(struct frame_dec *d, const uint8_t *p, size_t n,
				size_t *took, struct frame *out)
{
	uint32_t want = (d->have < FRAME_HDR ? FRAME_HDR : d->need) - d->have;
	uint32_t take = n < want ? (uint32_t)n : want;
	memcpy(d->buf + d->have, p, take);
	d->have += take;
	*took = take;
	if (d->have == FRAME_HDR && d->need == 0) {
		uint32_t len = get_be32(d->buf);
		if (len > MAX_PAYLOAD || !d->type_known(d->buf[4])) {
			/* Hunt again from the header's second byte. */
			frame_dec_hunt(d);
			d->replay_pending = 1;
			return FEV_BROKEN;
		}
		d->need = FRAME_HDR + len;
	}
	if (d->have < FRAME_HDR || d->have < d->need)
		return FEV_NONE;
	out->type = d->buf[4];
	out->flags = d->buf[5];
	out->channel = get_be32(d->buf + 8);
	out->len = d->need - FRAME_HDR;
	out->payload = d->buf + FRAME_HDR;
	d->state = ST_BOUNDARY;
	d->have = 0;
	d->need = 0;
	return FEV_FRAME;
}

static enum frame_ev step(struct frame_dec *d, const uint8_t *p, size_t n,
			  size_t *took, struct frame *out)
{
	switch (d->state) {
	case ST_HUNT:
		return step_hunt(d, p, n, took);
	case ST_SYNC:
		return step_sync(d, p, n, took);
	case ST_BOUNDARY:
		if (p[0] == 0xFF) {
			d->state = ST_SYNC;
			d->sync_have = 1;
			*took = 1;
			return FEV_NONE;
		}
		d->state = ST_FRAME;
		d->have = 0;
		d->need = 0;
		*took = 0;
		return FEV_NONE;
	default:
		return step_frame(d, p, n, took, out);
	}
}

/* After a bad header: the header's bytes 1..11, then whatever replay input
 * was still waiting, are decoded again. */
static void rebuild_replay(struct frame_dec *d)
{
	uint8_t tmp[sizeof d->replay];
	unsigned n = FRAME_HDR - 1;
	memcpy(tmp, d->buf + 1, n);
	unsigned rest = d->replay_len - d->replay_off;
	if (rest > sizeof tmp - n)   /* cannot happen: rest <= FRAME_HDR - 1 */
		rest = sizeof tmp - n;
	memcpy(tmp + n, d->replay + d->replay_off, rest);
	memcpy(d->replay, tmp, n + rest);
	d->replay_off = 0;
	d->replay_len = n + rest;
	d->replay_pending = 0;
}

enum frame_ev frame_dec_feed(struct frame_dec *d, const uint8_t *data, size_t len,
			     size_t *used, struct frame *out)
{
	size_t i = 0;
	for (;;) {
		int from_replay = d->replay_off < d->replay_len;
		const uint8_t *p = from_replay ? d->replay + d->replay_off : data + i;
		size_t avail = from_replay ? d->replay_len - d->replay_off : len - i;
		if (avail == 0) {
			*used = i;
			return FEV_NONE;
		}
		size_t took = 0;
		enum frame_ev ev = step(d, p, avail, &took, out);
		if (from_replay)
			d->replay_off += (unsigned)took;
		else
			i += took;
		if (d->replay_off == d->replay_len)
			d->replay_off = d->replay_len = 0;
		if (d->replay_pending)
			rebuild_replay(d);
		if (ev != FEV_NONE) {
			*used = i;
			return ev;
		}
	}
}

int frame_dec_partial(const struct frame_dec *d)
{
	return d->state == ST_SYNC || (d->state == ST_FRAME && d->have > 0);
}

void frame_hdr_put(uint8_t hdr[FRAME_HDR], uint8_t type, uint8_t flags,
		   uint32_t channel, uint32_t len)
{
	put_be32(hdr, len);
	hdr[4] = type;
	hdr[5] = flags;
	hdr[6] = hdr[7] = 0;
	put_be32(hdr + 8, channel);
}
