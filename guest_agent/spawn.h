/* spawn.h - start one program the way the protocol describes: in a new
 * session, with a pty or pipes, as a user resolved from the image's
 * /etc/passwd and /etc/group, in a working directory created if missing,
 * with argv[0] searched in the program's own PATH.
 *
 * The child reports through a close-on-exec pipe: end-of-file means execve
 * succeeded; a struct spawn_failure means it did not, with the exit code the
 * protocol wants (127 not found, 126 cannot execute) and a message.  The
 * parent never waits for that answer: status_fd goes into the poll set. */
#ifndef KESTREL_SPAWN_H
#define KESTREL_SPAWN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define SPAWN_MSG_MAX 240

struct spawn_opts {
	char *const *argv;
	char *const *env;      /* complete environment; PATH is looked up here */
	const char *workdir;   /* NULL: "/" */
	const char *user;      /* NULL: root (uid 0, with its /etc/group groups) */
	int tty;
	uint16_t rows, cols;
	int with_stdin;        /* pipes only: a stdin pipe, else /dev/null */
	int merge_output;      /* pipes only: stderr goes to the stdout pipe (err_fd -1) */
};

struct spawn_proc {
	pid_t pid;
	int in_fd;      /* stdin pipe (write end), the pty master, or -1 */
	int out_fd;     /* stdout pipe (read end) or the pty master */
	int err_fd;     /* stderr pipe (read end), -1 with a pty or merge_output */
	int status_fd;  /* the child's exec report; see above */
};

struct spawn_failure {
	int32_t code;
	char msg[SPAWN_MSG_MAX];
};

/* Fork the child.  0, or -1 with a message in err (no child was left). All
 * returned fds are non-blocking and close-on-exec. */
int spawn_start(const struct spawn_opts *o, struct spawn_proc *sp, char *err, size_t errlen);

/* Read the child's exec report: 1 the program runs, 0 it failed (*code and
 * msg filled), -1 no answer yet (EAGAIN). */
int spawn_status(int fd, int *code, char *msg, size_t msglen);

#endif
