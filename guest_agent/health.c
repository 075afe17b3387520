/* health.c - the workload's health check (boot tags 14-18; PROTOCOL.md,
 * "Health checks"), with Docker's semantics.
 *
 * The first check runs `interval` after the workload started, each next one
 * `interval` after the previous one ended; one at a time.  A check is the
 * argv started like an exec (the workload's environment, working directory
 * and user, its own session), stdout and stderr into one pipe of which the
 * first 4 KiB are kept.  It is SIGKILLed (its process group) past the
 * timeout, which counts as a failure with exit code -1.  The status is
 * `starting` until the first success; a failure while `starting` within the
 * start period does not count; `retries` counted failures in a row make it
 * `unhealthy`; a success makes it `healthy` and the streak 0.
 *
 * Nothing here blocks: the check's fds are in the poll set, its deadlines
 * are loop deadlines, and its exit is reaped by sessions_reap(), which hands
 * the pid here first (so it is never taken for a session or the workload). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kestrel.h"
#include "spawn.h"

#define DEFAULT_INTERVAL_MS 30000
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_RETRIES 3
#define OUTPUT_KEEP 4096
#define OUTPUT_LOG 200
/* After the check exits, its output pipe gets this long to reach EOF (a
 * process it left behind may hold it open). */
#define OUTPUT_DRAIN_MS 500

enum { H_STARTING, H_HEALTHY, H_UNHEALTHY };
static const char *const status_name[] = { "starting", "healthy", "unhealthy" };

static struct {
	int enabled;
	int status;
	uint32_t streak;
	int64_t workload_start;
	int64_t next_at;          /* the next check; 0 while one runs */
	uint32_t interval_ms, timeout_ms, retries, start_period_ms;
	/* the running check */
	int running;
	pid_t pid;
	int out_fd, status_fd;
	int64_t began, deadline, drain_until;
	int reaped, exit_code, timed_out, exec_failed;
	char out[OUTPUT_KEEP];
	size_t out_len;
	char fail_msg[SPAWN_MSG_MAX];
} h = { .out_fd = -1, .status_fd = -1 };

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void health_workload_started(void)
{
	if (cfg.health_argv.n == 0 || h.enabled)
		return;
	h.enabled = 1;
	h.status = H_STARTING;
	h.streak = 0;
	h.interval_ms = cfg.health_interval_ms ? cfg.health_interval_ms : DEFAULT_INTERVAL_MS;
	h.timeout_ms = cfg.health_timeout_ms ? cfg.health_timeout_ms : DEFAULT_TIMEOUT_MS;
	h.retries = cfg.health_retries ? cfg.health_retries : DEFAULT_RETRIES;
	h.start_period_ms = cfg.health_start_period_ms;
	h.workload_start = mono_ms();
	h.next_at = h.workload_start + h.interval_ms;
	log_x("health starting 0");
}

/* The output as the log record carries it: control characters (newlines
 * too) as spaces, trailing spaces dropped, at most OUTPUT_LOG bytes, not
 * cutting a UTF-8 sequence. */
static void log_text(const char *in, size_t n, char *out, size_t outlen)
{
	if (n > OUTPUT_LOG) {
		n = OUTPUT_LOG;
		/* back off over continuation bytes to the start of the cut sequence */
		size_t k = n;
		while (k > 0 && n - k < 4 && ((unsigned char)in[k] & 0xC0) == 0x80)
			k--;
		if (k < n && ((unsigned char)in[k] & 0xC0) == 0x80)
			k = n;   /* not UTF-8 after all: cut where we are */
		n = k;
	}
	if (n >= outlen)
		n = outlen - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];
		out[i] = c < 0x20 || c == 0x7F ? ' ' : (char)c;
	}
	while (n > 0 && out[n - 1] == ' ')
		n--;
	out[n] = 0;
}

static void set_result(int code)
{
	int old_status = h.status;
	uint32_t old_streak = h.streak;
	if (code == 0) {
		h.status = H_HEALTHY;
		h.streak = 0;
	} else if (!(h.status == H_STARTING && h.began - h.workload_start < h.start_period_ms)) {
		h.streak++;
		if (h.streak >= h.retries)
			h.status = H_UNHEALTHY;
	}
	if (h.status != old_status || h.streak != old_streak)
		log_x("health %s %u", status_name[h.status], h.streak);
}

static void complete(void)
{
	int64_t now = mono_ms();
	char text[OUTPUT_LOG + 1], msg[64];
	int code;
	if (h.timed_out) {
		code = -1;
		snprintf(msg, sizeof msg, "Health check exceeded timeout (%u ms)", h.timeout_ms);
		log_text(msg, strlen(msg), text, sizeof text);
	} else if (h.exec_failed) {
		code = h.exit_code;
		log_text(h.fail_msg, strlen(h.fail_msg), text, sizeof text);
	} else {
		code = h.exit_code;
		log_text(h.out, h.out_len, text, sizeof text);
	}
	log_x("health-check %d %lld %s", code, (long long)(now - h.began), text);
	set_result(code);
	close_fd(&h.out_fd);
	close_fd(&h.status_fd);
	h.running = 0;
	h.next_at = now + h.interval_ms;
}

static void start_check(void)
{
	char err[256];
	char **env = make_env(&cfg.env, 0);
	struct spawn_opts o = {
		.argv = cfg.health_argv.v, .env = env, .workdir = cfg.workdir,
		.user = cfg.user, .merge_output = 1,
	};
	struct spawn_proc sp;
	h.began = mono_ms();
	h.next_at = 0;
	h.reaped = h.timed_out = h.exec_failed = 0;
	h.exit_code = 0;
	h.out_len = 0;
	if (!env || spawn_start(&o, &sp, err, sizeof err) < 0) {
		free(env);
		/* nothing started: a failed check, reported at once */
		snprintf(h.fail_msg, sizeof h.fail_msg, "%.200s", env ? err : "out of memory");
		h.exec_failed = 1;
		h.exit_code = -1;
		h.running = 1;
		complete();
		return;
	}
	free(env);
	h.running = 1;
	h.pid = sp.pid;
	h.out_fd = sp.out_fd;
	h.status_fd = sp.status_fd;
	h.deadline = h.began + h.timeout_ms;
}

int health_reaped(pid_t pid, int status)
{
	if (!h.running || h.reaped || pid != h.pid)
		return 0;
	h.reaped = 1;
	if (!h.exec_failed)
		h.exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	h.drain_until = mono_ms() + OUTPUT_DRAIN_MS;
	return 1;
}

static void on_output(void *ctx, uint32_t gen, int fd, short revents)
{
	(void)ctx; (void)gen; (void)revents;
	char chunk[4096];
	if (fd != h.out_fd)
		return;
	ssize_t n = read(fd, chunk, sizeof chunk);
	if (n > 0) {
		size_t keep = OUTPUT_KEEP - h.out_len;
		if (keep > (size_t)n)
			keep = (size_t)n;
		memcpy(h.out + h.out_len, chunk, keep);
		h.out_len += keep;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		close_fd(&h.out_fd);
	}
}

static void on_status(void *ctx, uint32_t gen, int fd, short revents)
{
	(void)ctx; (void)gen; (void)revents;
	int code;
	if (fd != h.status_fd)
		return;
	int r = spawn_status(fd, &code, h.fail_msg, sizeof h.fail_msg);
	if (r < 0)
		return;
	close_fd(&h.status_fd);
	if (r == 0) {   /* not found (127) or cannot execute (126) */
		h.exec_failed = 1;
		h.exit_code = code;
	}
}

void health_tick(void)
{
	if (!h.enabled)
		return;
	int64_t now = mono_ms();
	if (h.running) {
		if (!h.reaped) {
			if (!h.timed_out && now >= h.deadline) {
				kill(-h.pid, SIGKILL);
				kill(h.pid, SIGKILL);   /* before its setsid() */
				h.timed_out = 1;
			} else if (!h.timed_out) {
				loop_deadline(h.deadline);
			}
			return;
		}
		if ((h.out_fd < 0 && h.status_fd < 0) || now >= h.drain_until)
			complete();
		else
			loop_deadline(h.drain_until);
		if (h.running)
			return;
	}
	if (!h.next_at)
		return;
	/* No new check once the workload is gone (its exit ends the VM). */
	if (now >= h.next_at) {
		if (workload_pid())
			start_check();
		else
			h.next_at = 0;
	} else {
		loop_deadline(h.next_at);
	}
}

void health_poll(void)
{
	if (!h.running)
		return;
	if (h.out_fd >= 0)
		loop_watch(h.out_fd, POLLIN, on_output, NULL, 0);
	if (h.status_fd >= 0)
		loop_watch(h.status_fd, POLLIN, on_status, NULL, 0);
}
