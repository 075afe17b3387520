/* kestrel.c - PID 1 of a HYPR VM: the boot sequence, the event loop, and
 * the VM-wide actions (shutdown, exit, fatal errors).
 *
 * Boot (PROTOCOL.md): early mounts, the two ports, /hypr/config, the overlay
 * root, switch_root, then the workload (or the attach window) and the loop.
 * The loop is one poll(2) over a signalfd (SIGCHLD, SIGIO, stop signals),
 * the agent port, the log port and every session's fds.  Anything fatal
 * before the workload runs is reported as "x error" on the log port and the
 * console, then the VM reboots (QEMU's -no-reboot ends it), so the host
 * sees why instead of a hang. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "boot.h"
#include "net.h"
#include "kestrel.h"

#define MAX_WATCH 256
#define DEFAULT_STOP_SIGNAL 15

struct boot_config cfg;

static int sig_fd = -1;
static struct pollfd watch_fds[MAX_WATCH];
static struct { watch_fn fn; void *ctx; uint32_t gen; } watch_cb[MAX_WATCH];
static int nwatch;
static int64_t wake_at;

static int64_t attach_until;  /* 0: no attach window open */
static int64_t kill_at;       /* SHUTDOWN's grace ends: SIGKILL the workload */
static int stopping;

int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void loop_watch(int fd, short events, watch_fn fn, void *ctx, uint32_t gen)
{
	if (fd < 0 || nwatch >= MAX_WATCH)
		return;
	watch_fds[nwatch] = (struct pollfd){ .fd = fd, .events = events };
	watch_cb[nwatch].fn = fn;
	watch_cb[nwatch].ctx = ctx;
	watch_cb[nwatch].gen = gen;
	nwatch++;
}

void loop_deadline(int64_t at)
{
	if (at < wake_at)
		wake_at = at;
}

/* ---- ending the VM ---- */

static void reap_all(void)
{
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

/* Wait up to ms for every process to be gone, keeping the ports flowing. */
static void wait_for_no_children(int ms)
{
	int64_t end = mono_ms() + ms;
	for (;;) {
		reap_all();
		log_push();
		agent_push();
		if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
			return;
		int64_t left = end - mono_ms();
		if (left <= 0)
			return;
		struct pollfd p = { .fd = sig_fd, .events = POLLIN };
		if (poll(&p, 1, left > 50 ? 50 : (int)left) == 1) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof si) == sizeof si)
				;
		}
	}
}

__attribute__((noreturn)) static void power_off(void)
{
	sync();
	reboot(RB_AUTOBOOT);   /* with QEMU's -no-reboot this ends the VM */
	for (;;)
		pause();
}

void vm_exit(int code)
{
	log_x("exit %d", code);
	log_push();
	agent_push();
	kill(-1, SIGTERM);
	wait_for_no_children(1000);
	kill(-1, SIGKILL);
	wait_for_no_children(500);
	log_flush(2000);
	agent_flush(1000);
	boot_quiesce();
	power_off();
}

__attribute__((noreturn, format(printf, 1, 2)))
static void fatal(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_x("error %s", msg);   /* also printed on the console */
	log_flush(2000);
	power_off();
}

void shutdown_begin(int sig, uint32_t grace_ms)
{
	pid_t pid = workload_pid();
	if (!pid) {
		/* Exited and draining: its own exit path follows.  No workload at
		 * all (agent only, or the attach window): end now. */
		if (!workload_present())
			vm_exit(0);
		return;
	}
	kill(pid, sig);
	if (!stopping || mono_ms() + grace_ms < kill_at)
		kill_at = mono_ms() + grace_ms;
	stopping = 1;
}

int attach_waiting(void)
{
	return attach_until != 0;
}

void attach_taken(void)
{
	attach_until = 0;
}

/* ---- the loop ---- */

static void on_signals(void *ctx, uint32_t gen, int fd, short revents)
{
	(void)ctx; (void)gen; (void)revents;
	struct signalfd_siginfo si;
	int child = 0, io = 0, stop = 0;
	while (read(fd, &si, sizeof si) == sizeof si) {
		if (si.ssi_signo == SIGCHLD)
			child = 1;
		else if (si.ssi_signo == SIGIO)
			io = 1;
		else
			stop = 1;
	}
	if (child)
		sessions_reap();
	if (io)
		agent_on_sigio();
	if (stop)
		shutdown_begin(cfg.stop_signal, DEFAULT_GRACE_MS);
}

static void timers(void)
{
	int64_t now = mono_ms();
	if (attach_until) {
		if (now >= attach_until) {
			attach_until = 0;
			if (cfg.argv.n > 0)
				workload_start();
		} else {
			loop_deadline(attach_until);
		}
	}
	if (kill_at) {
		pid_t pid = workload_pid();
		if (!pid) {
			kill_at = 0;
		} else if (now >= kill_at) {
			kill(pid, SIGKILL);
			kill_at = 0;
		} else {
			loop_deadline(kill_at);
		}
	}
}

static void run_loop(void)
{
	for (;;) {
		nwatch = 0;
		wake_at = INT64_MAX;
		timers();
		sessions_tick();
		health_tick();
		copies_tick();
		agent_tick();
		log_push();
		agent_push();
		loop_watch(sig_fd, POLLIN, on_signals, NULL, 0);
		log_poll();
		agent_poll();
		sessions_poll();
		health_poll();
		int timeout = -1;
		if (wake_at != INT64_MAX) {
			int64_t d = wake_at - mono_ms();
			timeout = d < 0 ? 0 : d > INT_MAX ? INT_MAX : (int)d;
		}
		int n = poll(watch_fds, (nfds_t)nwatch, timeout);
		if (n < 0 && errno != EINTR)
			fatal("poll: %s", strerror(errno));
		for (int i = 0; n > 0 && i < nwatch; i++)
			if (watch_fds[i].revents)
				watch_cb[i].fn(watch_cb[i].ctx, watch_cb[i].gen, watch_fds[i].fd,
					       watch_fds[i].revents);
	}
}

/* ---- boot ---- */

static void setup_signals(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGPWR);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);   /* a closed stdin pipe is an EPIPE, not a death */
	sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

static void open_ports(void)
{
	static const char *const names[] = { "org.hypr.log", "org.hypr.agent" };
	char paths[2][64];
	boot_find_ports(names, paths, 2, 3000);
	if (paths[0][0])
		log_open(open(paths[0], O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
	if (paths[1][0])
		agent_open(open(paths[1], O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
	else
		dprintf(2, "kestrel: no org.hypr.agent port; serving the log only%s\n",
			boot_module_failures());
}

int main(void)
{
	char why[512];
	setup_signals();
	if (boot_early(why, sizeof why) < 0)
		fatal("%s", why);
	if (sig_fd < 0)
		fatal("signalfd: %s", strerror(errno));
	boot_load_modules();
	open_ports();
	if (boot_load_config(&cfg, why, sizeof why) < 0)
		fatal("%s", why);
	if (cfg.stop_signal < 1 || cfg.stop_signal > 64)
		cfg.stop_signal = DEFAULT_STOP_SIGNAL;
	if (boot_mount_root(&cfg, why, sizeof why) < 0 || boot_switch_root(why, sizeof why) < 0)
		fatal("%s", why);
	boot_loopback_up();
	if (net_configure(&cfg.nics, why, sizeof why) < 0)
		dprintf(2, "kestrel: network: %s\n", why);   /* the VM runs on, without that network */
	if (cfg.has_attach_wait)
		attach_until = mono_ms() + cfg.attach_wait_ms;
	else if (cfg.argv.n > 0)
		workload_start();
	else
		log_x("start 0");   /* no workload: kestrel serves the agent only */
	run_loop();
}
