/* kestrel.h - what the parts of the running agent share: the event loop's
 * registration calls, the log port, the agent port, the session table and
 * the VM-wide actions (shutdown, exit).  One thread, one poll(2) loop: every
 * fd is non-blocking and registered anew on each iteration with exactly the
 * events the current state wants, so a session without credit or a host
 * that stopped reading stalls only itself. */
#ifndef KESTREL_KESTREL_H
#define KESTREL_KESTREL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "msg.h"

#define KESTREL_AGENT "kestrel 0.2.0"
#define PROTO_VERSION 1
#define MAX_SESSIONS 32
#define OUT_CREDIT_INIT 262144
#define IN_CREDIT_INIT 262144
/* Queued output above which kestrel stops reading the sources that feed it
 * (process output for the log; requests and process output for the agent). */
#define QUEUE_SOFT_LIMIT (256 * 1024)
#define EXIT_DRAIN_MS 5000
#define DEFAULT_GRACE_MS 10000

/* ---- kestrel.c: loop, clock, VM-wide actions ---- */
typedef void (*watch_fn)(void *ctx, uint32_t gen, int fd, short revents);
/* Watch fd for this loop iteration. */
void loop_watch(int fd, short events, watch_fn fn, void *ctx, uint32_t gen);
/* Wake the loop no later than at (mono_ms time). */
void loop_deadline(int64_t at);
int64_t mono_ms(void);
uint64_t unix_ns(void);

extern struct boot_config cfg;
/* The workload is gone: log "x exit", stop everything, reboot. */
__attribute__((noreturn)) void vm_exit(int code);
/* SHUTDOWN: the stop signal now, SIGKILL after grace_ms. */
void shutdown_begin(int sig, uint32_t grace_ms);
/* Is the boot configuration's attach window open (boot tag 12)? */
int attach_waiting(void);
void attach_taken(void);

/* ---- logport.c ---- */
void log_open(int fd);
void log_record(char kind, const uint8_t *p, size_t n);
__attribute__((format(printf, 1, 2))) void log_x(const char *fmt, ...);
int log_busy(void);
void log_push(void);   /* write what is queued, without blocking */
void log_poll(void);
void log_flush(int timeout_ms);

/* ---- agent.c ---- */
void agent_open(int fd);
int agent_send(uint8_t type, uint8_t flags, uint32_t ch, const void *p, size_t n);
int agent_send_u32(uint8_t type, uint32_t ch, uint32_t v);
int agent_send_error(uint32_t ch, uint32_t code, const char *msg);
/* May sessions send output now (connected, queue below the soft limit)? */
int agent_can_stream(void);
void agent_push(void);
void agent_poll(void);
void agent_tick(void);
void agent_on_sigio(void);
void agent_flush(int timeout_ms);

/* ---- session.c ---- */
void sessions_poll(void);
void sessions_tick(void);
void sessions_reap(void);
void sessions_new_connection(void);
void sessions_disconnected(void);
void session_exec(uint32_t ch, const uint8_t *p, size_t n);
void session_stdin(uint32_t ch, const uint8_t *p, size_t n);
void session_resize(uint32_t ch, const uint8_t *p, size_t n);
void session_signal(uint32_t ch, const uint8_t *p, size_t n);
void session_window(uint32_t ch, const uint8_t *p, size_t n);
/* Start the boot configuration's argv as the detached workload. */
void workload_start(void);
/* The workload's pid while it runs, else 0. */
pid_t workload_pid(void);
/* Is there a workload session at all (running, or exited and draining)? */
int workload_present(void);
/* Is ch the channel of an exec session? */
int session_exists(uint32_t ch);
/* The environment with PATH (and TERM for a tty) added when missing; only
 * the vector is allocated. */
char **make_env(const struct strv *base, int tty);

/* ---- health.c: the workload's health check (boot tags 14-18) ---- */
/* The workload started: status `starting`, the first check after interval. */
void health_workload_started(void);
void health_tick(void);
void health_poll(void);
/* sessions_reap() offers every pid here first: 1 if it was the check's. */
int health_reaped(pid_t pid, int status);

/* ---- copy.c: STAT, COPY_OUT, COPY_IN ---- */
/* Handle a request or session message that is the copies' own (1), or
 * leave it to the exec sessions (0). */
int copy_request(uint8_t type, uint32_t ch, const uint8_t *p, size_t n);
void copies_tick(void);
void copies_new_connection(void);

#endif
