/* agent.c - the agent port: connection state (hunting for SYNC, waiting for
 * HELLO, connected), the frame decoder, the outgoing queue, and the
 * dispatch of host requests (PROTOCOL.md, "Agent messages").
 *
 * The port is a virtio-serial port backed by a QEMU socket that takes one
 * host client at a time.  While no client is connected the port reports
 * POLLHUP and reads return 0, so kestrel stops polling it and relies on the
 * SIGIO the driver sends when the host side opens (plus a slow re-check). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "fields.h"
#include "frame.h"
#include "kestrel.h"
#include "procinfo.h"

#define RECHECK_MS 2000
/* A frame must be complete this long after its first byte arrived.  The
 * host writes whole frames, so only a host that died mid-frame leaves one
 * incomplete; if its successor connected before kestrel saw the port
 * close, the new SYNC + HELLO would otherwise be swallowed as the rest of
 * the stale frame.  Dropping it lets the successor's retry through. */
#define FRAME_STALL_MS 1000

enum { A_HUNTING, A_AWAIT_HELLO, A_CONNECTED };

static int agent_fd = -1;
static int state = A_HUNTING;
static int host_open = 1;       /* polling the port; 0 while the host is away */
static int64_t recheck_at;
static struct frame_dec dec;
static struct buf out;
static uint8_t in[MAX_PAYLOAD]; /* bytes read and not yet decoded */
static size_t in_off, in_len;
static int64_t partial_since;   /* when the incomplete frame began; 0: none */

static void set_async(int on)
{
	int fl = fcntl(agent_fd, F_GETFL);
	if (fl >= 0)
		fcntl(agent_fd, F_SETFL, on ? fl | O_ASYNC : fl & ~O_ASYNC);
}

void agent_open(int fd)
{
	agent_fd = fd;
	frame_dec_init(&dec, frame_type_from_host);
	/* SIGIO goes to kestrel's signalfd; O_ASYNC is on only while the host
	 * is away, so a busy connection costs no signals. */
	fcntl(fd, F_SETOWN, getpid());
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Queue a frame whatever the state (SYNC replies go out while hunting). */
static int queue_frame(uint8_t type, uint8_t flags, uint32_t ch, const void *p, size_t n)
{
	if (agent_fd < 0 || n > MAX_PAYLOAD)
		return -1;
	uint8_t *dst = buf_reserve(&out, FRAME_HDR + n);
	if (!dst)
		return -1;
	frame_hdr_put(dst, type, flags, ch, (uint32_t)n);
	if (n)
		memcpy(dst + FRAME_HDR, p, n);
	buf_commit(&out, FRAME_HDR + n);
	return 0;
}

int agent_send(uint8_t type, uint8_t flags, uint32_t ch, const void *p, size_t n)
{
	if (state != A_CONNECTED)
		return -1;
	return queue_frame(type, flags, ch, p, n);
}

int agent_send_u32(uint8_t type, uint32_t ch, uint32_t v)
{
	uint8_t b[4];
	put_be32(b, v);
	return agent_send(type, 0, ch, b, 4);
}

static int error_frame(uint32_t ch, uint32_t code, const char *msg, int any_state)
{
	struct buf b = { 0 };
	fl_put_u32(&b, 1, code);
	fl_put(&b, 2, msg, (uint32_t)strnlen(msg, 1024));
	int rc = any_state ? queue_frame(T_ERROR, 0, ch, buf_head(&b), b.len)
			   : agent_send(T_ERROR, 0, ch, buf_head(&b), b.len);
	buf_free(&b);
	return rc;
}

int agent_send_error(uint32_t ch, uint32_t code, const char *msg)
{
	return error_frame(ch, code, msg, 0);
}

int agent_can_stream(void)
{
	return state == A_CONNECTED && out.len < QUEUE_SOFT_LIMIT;
}

/* Leave the connected state: stop sending, drop what the old connection
 * would have received, hunt for the next SYNC. */
static void go_hunting(int forget_input)
{
	if (forget_input) {
		frame_dec_reset(&dec);
		in_off = in_len = 0;
	} else {
		frame_dec_hunt(&dec);
	}
	partial_since = 0;
	if (state != A_HUNTING)
		sessions_disconnected();
	state = A_HUNTING;
	buf_clear(&out);
}

/* Is the host connected?  POLLHUP says it is not. */
static void recheck(void)
{
	struct pollfd p = { .fd = agent_fd, .events = POLLIN };
	if (poll(&p, 1, 0) == 1 && (p.revents & POLLHUP)) {
		recheck_at = mono_ms() + RECHECK_MS;
		return;
	}
	host_open = 1;
	set_async(0);
}

static void host_gone(void)
{
	go_hunting(1);
	host_open = 0;
	set_async(1);
	recheck();   /* it may have come back before O_ASYNC was set */
}

void agent_on_sigio(void)
{
	if (agent_fd >= 0 && !host_open)
		recheck();
}

void agent_tick(void)
{
	if (agent_fd >= 0 && partial_since) {
		if (mono_ms() - partial_since >= FRAME_STALL_MS) {
			partial_since = 0;
			go_hunting(0);
		} else {
			loop_deadline(partial_since + FRAME_STALL_MS);
		}
	}
	if (agent_fd < 0 || host_open)
		return;
	if (mono_ms() >= recheck_at)
		recheck();
	else
		loop_deadline(recheck_at);
}

/* ---- requests ---- */

static void on_hello(const struct frame *f)
{
	struct hello_req h;
	const char *why;
	int bad = msg_parse_hello(f->payload, f->len, &h, &why) < 0;
	if (bad || h.min_version > PROTO_VERSION || h.max_version < PROTO_VERSION) {
		/* Answer after a SYNC (the host discards what comes before it),
		 * then keep hunting. */
		go_hunting(0);
		buf_append(&out, SYNC_MARKER, SYNC_LEN);
		if (bad)
			error_frame(0, 1, why, 1);
		else
			error_frame(0, 2, "unsupported protocol version (kestrel speaks 1)", 1);
		return;
	}
	sessions_new_connection();
	copies_new_connection();
	buf_clear(&out);
	buf_append(&out, SYNC_MARKER, SYNC_LEN);
	state = A_CONNECTED;
	struct buf b = { 0 };
	fl_put_u16(&b, 1, PROTO_VERSION);
	fl_put_str(&b, 2, KESTREL_AGENT);
	fl_put_u32(&b, 3, (uint32_t)workload_pid());
	fl_put_u32(&b, 4, MAX_PAYLOAD);
	agent_send(T_HELLO_OK, 0, 0, buf_head(&b), b.len);
	buf_free(&b);
}

/* Send text as frames of whole lines, MORE on all but the last. */
static void send_text(uint8_t type, uint32_t ch, const struct buf *text)
{
	const uint8_t *p = buf_head(text);
	size_t left = text->len;
	do {
		size_t n = left;
		if (n > MAX_PAYLOAD) {
			n = MAX_PAYLOAD;
			while (n > 0 && p[n - 1] != '\n')
				n--;
			if (n == 0)
				n = MAX_PAYLOAD;   /* one line longer than a frame: cut it */
		}
		agent_send(type, n < left ? FLAG_MORE : 0, ch, p, n);
		p += n;
		left -= n;
	} while (left > 0);
}

static void on_shutdown(const struct frame *f)
{
	struct shutdown_req s;
	const char *why;
	if (msg_parse_shutdown(f->payload, f->len, &s, &why) < 0) {
		agent_send_error(f->channel, 1, why);
		return;
	}
	int sig = s.has_signal ? (int)s.signal : (int)cfg.stop_signal;
	if (sig < 1 || sig > 64) {
		agent_send_error(f->channel, 1, "invalid signal");
		return;
	}
	agent_send(T_OK, 0, f->channel, NULL, 0);
	shutdown_begin(sig, s.has_grace ? s.grace_ms : DEFAULT_GRACE_MS);
}

static void on_kill(const struct frame *f)
{
	uint32_t sig = f->len >= 4 ? get_be32(f->payload) : 0;
	if ((f->len != 4 && f->len != 8) || sig > 64) {
		agent_send_error(f->channel, 1, "KILL needs a u32 signal number (and optionally a u32 pid)");
		return;
	}
	if (f->len == 8) {
		/* A chosen process: any pid but kestrel's own (1). */
		uint32_t target = get_be32(f->payload + 4);
		if (target == 0 || target == 1 || target > INT32_MAX)
			agent_send_error(f->channel, 1, "KILL: invalid pid");
		else if (kill((pid_t)target, (int)sig) < 0)
			agent_send_error(f->channel, errno == ESRCH ? 5 : 1,
					 errno == ESRCH ? "no such process" : "KILL failed");
		else
			agent_send(T_OK, 0, f->channel, NULL, 0);
		return;
	}
	pid_t pid = workload_pid();
	if (!pid || kill(pid, (int)sig) < 0)
		agent_send_error(f->channel, 3, "no workload is running");
	else
		agent_send(T_OK, 0, f->channel, NULL, 0);
}

static void on_request(const struct frame *f)
{
	if (f->type == T_HELLO) {
		on_hello(f);
		return;
	}
	if (f->channel == 0) {
		agent_send_error(0, 1, "channel 0 carries HELLO only");
		return;
	}
	if (copy_request(f->type, f->channel, f->payload, f->len))
		return;   /* STAT, COPY_OUT, COPY_IN, or a message for a copy */
	struct buf text = { 0 };
	switch (f->type) {
	case T_EXEC:   session_exec(f->channel, f->payload, f->len); break;
	case T_STDIN:  session_stdin(f->channel, f->payload, f->len); break;
	case T_RESIZE: session_resize(f->channel, f->payload, f->len); break;
	case T_SIGNAL: session_signal(f->channel, f->payload, f->len); break;
	case T_WINDOW: session_window(f->channel, f->payload, f->len); break;
	case T_PS:
		ps_text(&text);
		send_text(T_PS_REPLY, f->channel, &text);
		break;
	case T_STATS:
		stats_text(&text);
		send_text(T_STATS_REPLY, f->channel, &text);
		break;
	case T_SHUTDOWN: on_shutdown(f); break;
	case T_KILL:     on_kill(f); break;
	case T_PING:     agent_send(T_PONG, 0, f->channel, f->payload, f->len); break;
	}
	buf_free(&text);
}

static void on_frame(const struct frame *f)
{
	if (state == A_AWAIT_HELLO) {
		if (f->type == T_HELLO && f->channel == 0)
			on_hello(f);
		else
			go_hunting(0);   /* SYNC must be followed by HELLO */
		return;
	}
	if (state == A_CONNECTED)
		on_request(f);
}

/* Decode buffered input until it is used up or, at a frame boundary, the
 * outgoing queue is full (a host that sends requests but does not read the
 * replies gets throttled; stopping only between frames means a partial
 * frame always means the host has not sent the rest). */
static void decode_input(void)
{
	while (in_off < in_len) {
		size_t used = 0;
		struct frame f;
		enum frame_ev ev = frame_dec_feed(&dec, in + in_off, in_len - in_off, &used, &f);
		in_off += used;
		if (ev == FEV_SYNC) {
			if (state == A_CONNECTED)
				sessions_disconnected();
			state = A_AWAIT_HELLO;
			buf_clear(&out);
		} else if (ev == FEV_BROKEN) {
			go_hunting(0);
		} else if (ev == FEV_FRAME) {
			on_frame(&f);
			if (out.len >= QUEUE_SOFT_LIMIT)
				break;
		}
	}
	if (in_off == in_len)
		in_off = in_len = 0;
	if (!frame_dec_partial(&dec))
		partial_since = 0;
	else if (!partial_since)
		partial_since = mono_ms();
}

static void on_io(void *ctx, uint32_t gen, int fd, short revents)
{
	(void)ctx; (void)gen; (void)fd;
	if (revents & POLLOUT)
		agent_push();
	if (revents & POLLIN) {
		ssize_t n = read(agent_fd, in, sizeof in);
		if (n > 0) {
			in_off = 0;
			in_len = (size_t)n;
			decode_input();
			return;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR))
			host_gone();
		return;
	}
	if (revents & (POLLHUP | POLLERR))
		host_gone();
}

void agent_push(void)
{
	while (agent_fd >= 0 && host_open && out.len > 0) {
		ssize_t n = write(agent_fd, buf_head(&out), out.len);
		if (n > 0) {
			buf_consume(&out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return;   /* EAGAIN: POLLOUT will say; the host leaving shows as POLLHUP */
	}
}

void agent_poll(void)
{
	if (agent_fd < 0 || !host_open)
		return;
	/* Input left over from a throttled read is decoded before reading more. */
	if (in_off < in_len)
		decode_input();
	short ev = 0;
	if (in_off == in_len && out.len < QUEUE_SOFT_LIMIT)
		ev |= POLLIN;
	if (out.len > 0)
		ev |= POLLOUT;
	loop_watch(agent_fd, ev, on_io, NULL, 0);
}

void agent_flush(int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;
	for (;;) {
		agent_push();
		int64_t left = end - mono_ms();
		if (agent_fd < 0 || !host_open || out.len == 0 || left <= 0)
			return;
		struct pollfd p = { .fd = agent_fd, .events = POLLOUT };
		if (poll(&p, 1, (int)left) == 1 && (p.revents & (POLLHUP | POLLERR)))
			return;
	}
}
