/* frame.h - the agent port's framing (PROTOCOL.md, "Agent messages").
 *
 * A frame is a 12-byte header (u32 length, u8 type, u8 flags, u16 reserved,
 * u32 channel, all big-endian) and up to MAX_PAYLOAD bytes of payload.
 * The decoder is push-style: feed it whatever read() returned and it hands
 * back one event at a time.  It owns one fixed buffer of FRAME_HDR +
 * MAX_PAYLOAD bytes and never allocates.  It hunts for the SYNC marker at
 * start, after frame_dec_hunt() and after a broken stream, and also
 * recognizes SYNC at any frame boundary. */
#ifndef KESTREL_FRAME_H
#define KESTREL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#define MAX_PAYLOAD 65536u
#define FRAME_HDR 12u
#define SYNC_LEN 8u
#define FLAG_MORE 0x01

extern const uint8_t SYNC_MARKER[SYNC_LEN];

/* Host to guest. */
enum {
	T_HELLO = 0x01, T_EXEC, T_STDIN, T_RESIZE, T_SIGNAL, T_WINDOW,
	T_PS, T_STATS, T_SHUTDOWN, T_KILL, T_PING, T_STAT, T_COPY_OUT, T_COPY_IN,
};
/* Guest to host. */
enum {
	T_HELLO_OK = 0x81, T_STARTED, T_STDOUT, T_STDERR, T_EXIT, T_WINDOW_G,
	T_ERROR, T_PS_REPLY, T_STATS_REPLY, T_OK, T_PONG, T_STAT_REPLY,
};

enum frame_ev {
	FEV_NONE,    /* all input consumed, no event */
	FEV_FRAME,   /* *out holds a frame; its payload lives until the next feed */
	FEV_SYNC,    /* a SYNC marker was read; the decoder is at a frame boundary */
	FEV_BROKEN,  /* bad length or unknown type: the decoder went hunting */
};

struct frame {
	uint8_t type;
	uint8_t flags;
	uint32_t channel;
	uint32_t len;
	const uint8_t *payload;
};

struct frame_dec {
	int state;
	unsigned sync_have;         /* marker bytes matched so far */
	uint32_t have;              /* bytes of the current frame in buf */
	uint32_t need;              /* header + payload length of the current frame */
	int (*type_known)(uint8_t type);
	/* Bytes to decode again before new input: after a bad header, hunting
	 * resumes at the header's second byte (a SYNC may start there). */
	uint8_t replay[2 * FRAME_HDR];
	unsigned replay_off, replay_len;
	int replay_pending;
	uint8_t buf[FRAME_HDR + MAX_PAYLOAD];
};

/* type_known: which frame types this side accepts (others break the stream). */
void frame_dec_init(struct frame_dec *d, int (*type_known)(uint8_t type));
/* Go hunting for SYNC, keeping input not yet decoded (a protocol error). */
void frame_dec_hunt(struct frame_dec *d);
/* Go hunting and forget everything (the peer disconnected). */
void frame_dec_reset(struct frame_dec *d);
/* Decode from data[0..len) until one event; *used: bytes of data consumed.
 * Call again with the rest until FEV_NONE. */
enum frame_ev frame_dec_feed(struct frame_dec *d, const uint8_t *data, size_t len,
			     size_t *used, struct frame *out);

/* Is the decoder inside a frame (or a SYNC marker at a boundary)? */
int frame_dec_partial(const struct frame_dec *d);

/* Write a frame header for a payload of len bytes. */
void frame_hdr_put(uint8_t hdr[FRAME_HDR], uint8_t type, uint8_t flags,
		   uint32_t channel, uint32_t len);

/* Host-to-guest types kestrel accepts. */
int frame_type_from_host(uint8_t type);

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);  p[3] = (uint8_t)v;
}
static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v;
}

#endif
