/* session.c - exec sessions and the workload (PROTOCOL.md, "Exec sessions
 * and flow control").
 *
 * One table holds every running program kestrel started: the EXEC sessions
 * of the connected host and the workload.  The workload is a session too:
 * channel 0 and detached when started from the boot configuration, or the
 * `main` EXEC of an attached `run -i/-t`.  A main session copies its output
 * to the log port and its end ends the VM.
 *
 * Life of a session: starting (waiting for the child's exec report) ->
 * running -> reaped (exit status known) -> finished once its output is
 * drained (EOF on every output fd, or EXIT_DRAIN_MS after the exit) ->
 * EXIT sent, slot freed. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "buf.h"
#include "frame.h"
#include "kestrel.h"
#include "logrec.h"
#include "msg.h"
#include "spawn.h"

/* Input written to a process is acknowledged with WINDOW in batches. */
#define WINDOW_BATCH 32768
#define CREDIT_CAP ((int64_t)1 << 40)

struct session {
	int used;
	uint32_t gen;          /* bumped when the slot is freed: stale watches ignore it */
	uint32_t channel;      /* 0: the detached boot workload */
	pid_t pid;
	int tty, main, attached, with_stdin;
	int starting;          /* status_fd open: exec not confirmed yet */
	int reaped, exit_code;
	int status_fd;
	int out_fd, err_fd;    /* -1 once at EOF; with a tty out_fd is the master */
	int in_fd;             /* stdin pipe, the master (tty), or -1 */
	int64_t out_credit;    /* STDOUT+STDERR bytes the host can take */
	uint32_t in_credit;    /* STDIN bytes the host may still send */
	uint32_t in_done;      /* STDIN bytes consumed since the last WINDOW */
	struct buf in_q;
	int in_close;          /* close stdin once in_q is written */
	int64_t drain_until;
	struct linesplit *ls[2];   /* main sessions: stdout and stderr lines for the log */
};

static struct session table[MAX_SESSIONS + 1];   /* + the detached workload */
static uint8_t chunk[MAX_PAYLOAD];

static struct session *find(uint32_t ch)
{
	for (int i = 0; i <= MAX_SESSIONS; i++)
		if (table[i].used && table[i].channel == ch && ch != 0)
			return &table[i];
	return NULL;
}

static struct session *find_main(void)
{
	for (int i = 0; i <= MAX_SESSIONS; i++)
		if (table[i].used && table[i].main)
			return &table[i];
	return NULL;
}

static int count_attached(void)
{
	int n = 0;
	for (int i = 0; i <= MAX_SESSIONS; i++)
		n += table[i].used && table[i].channel != 0;
	return n;
}

/* Close one of the session's fds; the pty master is shared by out_fd and
 * in_fd and is closed when neither uses it any more. */
static void drop_fd(struct session *s, int *which)
{
	int fd = *which;
	*which = -1;
	if (fd >= 0 && fd != s->out_fd && fd != s->in_fd && fd != s->err_fd && fd != s->status_fd)
		close(fd);
}

/* An empty slot; gen moves on so watches of the previous user are ignored. */
static void reset_slot(struct session *s)
{
	uint32_t gen = s->gen + 1;
	memset(s, 0, sizeof *s);
	s->gen = gen;
	s->status_fd = s->out_fd = s->err_fd = s->in_fd = -1;
}

static void free_session(struct session *s)
{
	drop_fd(s, &s->status_fd);
	drop_fd(s, &s->out_fd);
	drop_fd(s, &s->err_fd);
	drop_fd(s, &s->in_fd);
	buf_free(&s->in_q);
	free(s->ls[0]);
	free(s->ls[1]);
	reset_slot(s);
}

/* A session of a previous connection, or one the host misused: its whole
 * process group goes (the pid too, in case setsid() has not run yet). */
static void kill_session(struct session *s)
{
	if (!s->reaped && s->pid > 0) {
		kill(-s->pid, SIGKILL);
		kill(s->pid, SIGKILL);
	}
	free_session(s);
}

/* The workload outlives its host connection: it stops being addressable
 * (channel 0, so a later connection reusing the number cannot reach it). */
static void detach(struct session *s)
{
	s->attached = 0;
	s->channel = 0;
}

static void to_log(void *ctx, char kind, const uint8_t *p, size_t n)
{
	(void)ctx;
	log_record(kind, p, n);
}

/* ---- output ---- */

static int can_read(const struct session *s)
{
	if (s->starting)
		return 0;
	if (s->attached)
		return s->out_credit > 0 && agent_can_stream() && !(s->main && log_busy());
	return s->main && !log_busy();
}

static void deliver(struct session *s, int err, const uint8_t *p, size_t n)
{
	if (s->attached && agent_send(err ? T_STDERR : T_STDOUT, 0, s->channel, p, n) == 0)
		s->out_credit -= (int64_t)n;
	if (s->main && s->ls[err])
		ls_feed(s->ls[err], p, n, to_log, NULL);
}

static void output_closed(struct session *s, int err)
{
	drop_fd(s, err ? &s->err_fd : &s->out_fd);
	if (s->tty)
		drop_fd(s, &s->in_fd);   /* the master is gone for input too */
	if (s->main && s->ls[err])
		ls_flush(s->ls[err], to_log, NULL);
}

/* Read one chunk; 1 data, 0 nothing now (EAGAIN), -1 end of stream. */
static int read_output(struct session *s, int err, int ignore_limits)
{
	int fd = err ? s->err_fd : s->out_fd;
	size_t want = sizeof chunk;
	if (s->attached && (int64_t)want > s->out_credit)
		want = s->out_credit > 0 ? (size_t)s->out_credit : 0;
	if (fd < 0 || want == 0 || (!ignore_limits && !can_read(s)))
		return 0;
	ssize_t n = read(fd, chunk, want);
	if (n > 0) {
		deliver(s, err, chunk, (size_t)n);
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	output_closed(s, err);   /* EOF, or EIO from a master whose slave closed */
	return -1;
}

static void try_finish(struct session *s);
static void drain_main(struct session *s);

static void on_output(void *ctx, uint32_t gen, int fd, short revents)
{
	struct session *s = ctx;
	if (!s->used || s->gen != gen)
		return;
	if (fd == s->out_fd && (revents & (POLLIN | POLLHUP | POLLERR)))
		read_output(s, 0, 0);
	else if (fd == s->err_fd && (revents & (POLLIN | POLLHUP | POLLERR)))
		read_output(s, 1, 0);
	try_finish(s);
}

/* ---- input ---- */

static void give_window(struct session *s, int force)
{
	if (s->in_done == 0 || (!force && s->in_done < WINDOW_BATCH && s->in_q.len > 0))
		return;
	if (s->attached)
		agent_send_u32(T_WINDOW_G, s->channel, s->in_done);
	s->in_credit += s->in_done;
	s->in_done = 0;
}

static void stdin_gone(struct session *s)
{
	s->in_done += (uint32_t)s->in_q.len;   /* the host may send again; it is dropped */
	buf_clear(&s->in_q);
	give_window(s, 1);
	if (!s->tty)
		drop_fd(s, &s->in_fd);
	s->with_stdin = 0;
}

static void write_input(struct session *s)
{
	while (s->in_fd >= 0 && s->in_q.len > 0) {
		ssize_t n = write(s->in_fd, buf_head(&s->in_q), s->in_q.len);
		if (n > 0) {
			buf_consume(&s->in_q, (size_t)n);
			s->in_done += (uint32_t)n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			break;
		stdin_gone(s);   /* EPIPE: the process closed its stdin */
		return;
	}
	give_window(s, 0);
	if (s->in_q.len == 0 && s->in_close && !s->tty)
		drop_fd(s, &s->in_fd);
}

static void on_io(void *ctx, uint32_t gen, int fd, short revents)
{
	struct session *s = ctx;
	if (!s->used || s->gen != gen)
		return;
	if (fd == s->in_fd && (revents & (POLLOUT | POLLERR | POLLHUP)) && s->in_q.len > 0)
		write_input(s);
	if (s->used && s->gen == gen)
		on_output(ctx, gen, fd, revents);
}

/* ---- start ---- */

static void started(struct session *s)
{
	if (s->attached)
		agent_send_u32(T_STARTED, s->channel, (uint32_t)s->pid);
}

static void start_failed(struct session *s, int code, const char *msg)
{
	if (s->attached)
		agent_send_error(s->channel, (uint32_t)code, msg);
	if (s->main) {
		log_x("error %s", msg);
		vm_exit(code);
	}
	kill_session(s);
}

static void on_status(void *ctx, uint32_t gen, int fd, short revents)
{
	struct session *s = ctx;
	(void)fd; (void)revents;
	if (!s->used || s->gen != gen)
		return;
	int code;
	char msg[SPAWN_MSG_MAX];
	int r = spawn_status(s->status_fd, &code, msg, sizeof msg);
	if (r < 0)
		return;
	drop_fd(s, &s->status_fd);
	s->starting = 0;
	if (r == 0) {
		start_failed(s, code, msg);
		return;
	}
	started(s);
	if (s->reaped && s->main)
		drain_main(s);
	try_finish(s);
}

/* The environment with PATH (Docker's default) and, for a tty, TERM added
 * when missing.  The strings are borrowed; only the vector is allocated. */
char **make_env(const struct strv *base, int tty)
{
	int has_path = 0, has_term = 0;
	for (uint32_t i = 0; i < base->n; i++) {
		has_path |= !strncmp(base->v[i], "PATH=", 5);
		has_term |= !strncmp(base->v[i], "TERM=", 5);
	}
	char **env = calloc((size_t)base->n + 3, sizeof(char *));
	if (!env)
		return NULL;
	uint32_t n = 0;
	for (uint32_t i = 0; i < base->n; i++)
		env[n++] = base->v[i];
	if (!has_path)
		env[n++] = "PATH=" DEFAULT_PATH;
	if (tty && !has_term)
		env[n++] = "TERM=xterm";
	return env;
}

static struct session *new_session(void)
{
	for (int i = 0; i <= MAX_SESSIONS; i++) {
		if (!table[i].used) {
			reset_slot(&table[i]);
			table[i].used = 1;
			return &table[i];
		}
	}
	return NULL;
}

/* Fork the program into session s; 0, or -1 with err filled. */
static int launch(struct session *s, const struct spawn_opts *o, char *err, size_t errlen)
{
	struct spawn_proc sp;
	if (spawn_start(o, &sp, err, errlen) < 0)
		return -1;
	s->pid = sp.pid;
	s->status_fd = sp.status_fd;
	s->out_fd = sp.out_fd;
	s->err_fd = sp.err_fd;
	s->in_fd = sp.in_fd;
	s->starting = 1;
	s->tty = o->tty;
	s->with_stdin = o->with_stdin;
	s->out_credit = OUT_CREDIT_INIT;
	s->in_credit = IN_CREDIT_INIT;
	if (s->main) {
		s->ls[0] = malloc(sizeof(struct linesplit));
		s->ls[1] = malloc(sizeof(struct linesplit));
		if (s->ls[0])
			ls_init(s->ls[0], 'o', 'O');
		if (s->ls[1])
			ls_init(s->ls[1], 'e', 'E');
		log_x("start %d", (int)s->pid);
		health_workload_started();   /* "x health starting 0" right after */
	}
	return 0;
}

void session_exec(uint32_t ch, const uint8_t *p, size_t n)
{
	struct exec_req req;
	const char *why;
	if (msg_parse_exec(p, n, &req, &why) < 0) {
		agent_send_error(ch, 1, why);
		return;
	}
	struct session *s = NULL;
	char err[256];
	char **env = NULL;
	if (find(ch)) {
		agent_send_error(ch, 1, "channel already in use");
	} else if (count_attached() >= MAX_SESSIONS) {
		agent_send_error(ch, 4, "too many sessions (at most 32)");
	} else if (req.main && !attach_waiting()) {
		agent_send_error(ch, 1, "no workload is waiting to be attached");
	} else if (!(env = make_env(req.has_env ? &req.env : &cfg.env, req.tty)) ||
		   !(s = new_session())) {
		agent_send_error(ch, 126, "out of memory");
	} else {
		s->channel = ch;
		s->attached = 1;
		s->main = req.main;
		struct spawn_opts o = {
			.argv = req.argv.v, .env = env,
			.workdir = req.workdir ? req.workdir : cfg.workdir,
			.user = req.user ? req.user : cfg.user,
			.tty = req.tty, .rows = req.rows, .cols = req.cols,
			.with_stdin = req.with_stdin,
		};
		if (launch(s, &o, err, sizeof err) < 0) {
			free_session(s);
			agent_send_error(ch, 126, err);
		} else if (req.main) {
			attach_taken();
		}
	}
	free(env);
	msg_free_exec(&req);
}

void workload_start(void)
{
	struct session *s = new_session();
	char **env = s ? make_env(&cfg.env, 0) : NULL;
	char err[256] = "out of memory";
	if (s && env) {
		s->main = 1;
		struct spawn_opts o = {
			.argv = cfg.argv.v, .env = env, .workdir = cfg.workdir,
			.user = cfg.user,
		};
		if (launch(s, &o, err, sizeof err) == 0) {
			free(env);
			return;
		}
	}
	free(env);
	log_x("error cannot start the workload: %s", err);
	vm_exit(126);
}

pid_t workload_pid(void)
{
	struct session *s = find_main();
	return s && !s->reaped ? s->pid : 0;
}

int workload_present(void)
{
	return find_main() != NULL;
}

int session_exists(uint32_t ch)
{
	return find(ch) != NULL;
}

/* ---- host messages for a session ---- */

/* The host misused a session: ERROR ends it on both sides. */
static void reject(struct session *s, const char *why)
{
	agent_send_error(s->channel, 1, why);
	if (s->main) {
		detach(s);   /* the workload is never killed for the host's mistake */
		return;
	}
	kill_session(s);
}

static struct session *session_for(uint32_t ch)
{
	struct session *s = find(ch);
	if (!s)
		agent_send_error(ch, 3, "no such session");
	return s;
}

void session_stdin(uint32_t ch, const uint8_t *p, size_t n)
{
	struct session *s = session_for(ch);
	if (!s)
		return;
	if (n > s->in_credit) {
		reject(s, "STDIN beyond the window the guest granted");
		return;
	}
	if (!s->with_stdin || s->in_fd < 0 || s->in_close) {
		s->in_credit -= (uint32_t)n;   /* nowhere to go: dropped, credit returned */
		s->in_done += (uint32_t)n;
		give_window(s, 1);
		return;
	}
	if (n == 0) {
		s->in_close = 1;
		struct termios t;
		/* A pty cannot be half-closed: send its EOF character instead. */
		if (s->tty) {
			uint8_t eof = tcgetattr(s->in_fd, &t) == 0 ? t.c_cc[VEOF] : 4;
			buf_append(&s->in_q, &eof, 1);
		}
		write_input(s);
		return;
	}
	if (buf_append(&s->in_q, p, n) < 0) {
		reject(s, "out of memory for STDIN");
		return;
	}
	s->in_credit -= (uint32_t)n;
	write_input(s);
}

void session_resize(uint32_t ch, const uint8_t *p, size_t n)
{
	struct session *s = session_for(ch);
	if (!s)
		return;
	if (n != 4) {
		reject(s, "RESIZE needs u16 rows and u16 cols");
		return;
	}
	struct winsize ws = { .ws_row = get_be16(p), .ws_col = get_be16(p + 2) };
	if (s->tty && s->out_fd >= 0)
		ioctl(s->out_fd, TIOCSWINSZ, &ws);   /* the kernel sends SIGWINCH */
}

void session_signal(uint32_t ch, const uint8_t *p, size_t n)
{
	struct session *s = session_for(ch);
	if (!s)
		return;
	uint32_t sig = n == 4 ? get_be32(p) : 0;
	if (n != 4 || sig > 64) {
		reject(s, "SIGNAL needs a u32 signal number");
		return;
	}
	if (!s->reaped)
		kill(s->tty ? -s->pid : s->pid, (int)sig);
}

void session_window(uint32_t ch, const uint8_t *p, size_t n)
{
	struct session *s = find(ch);
	if (!s)
		return;   /* credit in flight for a session that just ended */
	if (n != 4) {
		reject(s, "WINDOW needs a u32");
		return;
	}
	s->out_credit += get_be32(p);
	if (s->out_credit > CREDIT_CAP)
		s->out_credit = CREDIT_CAP;
}

/* ---- connection changes ---- */

void sessions_disconnected(void)
{
	/* Nobody reads the old channels any more; the workload goes on
	 * writing to the log alone.  Other sessions wait for the next HELLO. */
	for (int i = 0; i <= MAX_SESSIONS; i++)
		if (table[i].used && table[i].main)
			detach(&table[i]);
}

void sessions_new_connection(void)
{
	for (int i = 0; i <= MAX_SESSIONS; i++) {
		struct session *s = &table[i];
		if (!s->used)
			continue;
		if (s->main)
			detach(s);
		else
			kill_session(s);
	}
}

/* ---- exit ---- */

static void finish(struct session *s)
{
	int code = s->exit_code;
	if (s->main) {
		for (int i = 0; i < 2; i++)
			if (s->ls[i])
				ls_flush(s->ls[i], to_log, NULL);
	}
	if (s->attached) {
		uint8_t b[4];
		put_be32(b, (uint32_t)code);
		agent_send(T_EXIT, 0, s->channel, b, 4);
	}
	if (s->main)
		vm_exit(code);
	free_session(s);
}

static void try_finish(struct session *s)
{
	if (!s->used || s->starting || !s->reaped)
		return;
	if ((s->out_fd >= 0 || s->err_fd >= 0) && mono_ms() < s->drain_until)
		return;
	finish(s);
}

/* The workload's pipes are read to the end of what is buffered as soon as it
 * exits: a daemon it left behind may hold them open, and its exit ends the
 * VM anyway.  (A pty's end is EIO, which comes once the output is read.) */
static void drain_main(struct session *s)
{
	for (int err = 0; err < 2 && !s->tty; err++) {
		int r;
		while ((r = read_output(s, err, 1)) > 0)
			;
		int fd = err ? s->err_fd : s->out_fd;
		if (r == 0 && fd >= 0 && (!s->attached || s->out_credit > 0))
			output_closed(s, err);
	}
}

static void exited(struct session *s, int status)
{
	s->reaped = 1;
	s->exit_code = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
	s->drain_until = mono_ms() + EXIT_DRAIN_MS;
	if (!s->tty)
		stdin_gone(s);
	if (s->main && !s->starting)
		drain_main(s);
	try_finish(s);
}

void sessions_reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (health_reaped(pid, status))
			continue;   /* the health check, never a session */
		for (int i = 0; i <= MAX_SESSIONS; i++) {
			struct session *s = &table[i];
			if (s->used && !s->reaped && s->pid == pid) {
				exited(s, status);
				break;
			}
		}
	}
}

void sessions_tick(void)
{
	int64_t now = mono_ms();
	for (int i = 0; i <= MAX_SESSIONS; i++) {
		struct session *s = &table[i];
		if (!s->used || !s->reaped || s->starting)
			continue;
		if (now >= s->drain_until)
			try_finish(s);
		else
			loop_deadline(s->drain_until);
	}
}

void sessions_poll(void)
{
	for (int i = 0; i <= MAX_SESSIONS; i++) {
		struct session *s = &table[i];
		if (!s->used)
			continue;
		if (s->starting) {
			loop_watch(s->status_fd, POLLIN, on_status, s, s->gen);
			continue;
		}
		short rd = can_read(s) ? POLLIN : 0;
		short wr = s->in_q.len > 0 ? POLLOUT : 0;
		/* Never watch an fd with no events: POLLHUP would still wake us. */
		if (s->tty) {
			if (s->out_fd >= 0 && (rd | wr))
				loop_watch(s->out_fd, rd | wr, on_io, s, s->gen);
			continue;
		}
		if (s->out_fd >= 0 && rd)
			loop_watch(s->out_fd, rd, on_io, s, s->gen);
		if (s->err_fd >= 0 && rd)
			loop_watch(s->err_fd, rd, on_io, s, s->gen);
		if (s->in_fd >= 0 && wr)
			loop_watch(s->in_fd, wr, on_io, s, s->gen);
	}
}
