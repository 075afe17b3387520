/* logport.c - the log port: a queue of records written to the
 * org.hypr.log virtio-serial port without ever blocking the loop. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "kestrel.h"
#include "logrec.h"

static int log_fd = -1;
static struct buf queue;

void log_open(int fd)
{
	log_fd = fd;
}

void log_record(char kind, const uint8_t *p, size_t n)
{
	if (log_fd >= 0)
		logrec_put(&queue, unix_ns(), kind, p, n);
}

void log_x(const char *fmt, ...)
{
	char text[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof text)
		n = sizeof text - 1;
	for (int i = 0; i < n; i++)   /* a record is one line */
		if (text[i] == '\n' || text[i] == '\r')
			text[i] = ' ';
	log_record('x', (const uint8_t *)text, (size_t)n);
	if (!strncmp(text, "error ", 6))
		dprintf(2, "kestrel: %s\n", text);   /* the console sees errors too */
}

int log_busy(void)
{
	return queue.len > QUEUE_SOFT_LIMIT;
}

void log_push(void)
{
	while (log_fd >= 0 && queue.len > 0) {
		ssize_t n = write(log_fd, buf_head(&queue), queue.len);
		if (n > 0) {
			buf_consume(&queue, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			buf_clear(&queue);   /* the port is gone: nobody will read */
		return;
	}
}

static void on_writable(void *ctx, uint32_t gen, int fd, short revents)
{
	(void)ctx; (void)gen; (void)fd; (void)revents;
	log_push();
}

void log_poll(void)
{
	if (log_fd >= 0 && queue.len > 0)
		loop_watch(log_fd, POLLOUT, on_writable, NULL, 0);
}

void log_flush(int timeout_ms)
{
	int64_t end = mono_ms() + timeout_ms;
	for (;;) {
		log_push();
		int64_t left = end - mono_ms();
		if (log_fd < 0 || queue.len == 0 || left <= 0)
			return;
		struct pollfd p = { .fd = log_fd, .events = POLLOUT };
		poll(&p, 1, (int)left);
	}
}
