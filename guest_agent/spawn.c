/* spawn.c - fork/exec of workloads and exec sessions (see spawn.h).
 *
 * Everything after fork() runs in the child, after kestrel's chroot, so
 * musl's getpwnam()/getgrnam()/getgrouplist() read the image's own files. */
#define _GNU_SOURCE
#include "spawn.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define MAX_GROUPS 256

/* ---- child side ---------------------------------------------------- */

static int status_w = -1;

/* Report a failure to the parent and end the child with its exit code. */
__attribute__((noreturn, format(printf, 2, 3)))
static void fail(int code, const char *fmt, ...)
{
	struct spawn_failure f;
	memset(&f, 0, sizeof f);
	f.code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f.msg, sizeof f.msg, fmt, ap);
	va_end(ap);
	/* One write below PIPE_BUF: atomic, so the parent reads all or nothing. */
	if (write(status_w, &f, sizeof f) < 0) {
		/* nothing more to do: the exit code still tells */
	}
	_exit(code);
}

static int all_digits(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!isdigit((unsigned char)*s))
			return 0;
	return 1;
}

static unsigned long parse_id(const char *s, const char *what)
{
	errno = 0;
	unsigned long v = strtoul(s, NULL, 10);
	if (errno || v > 0xFFFFFFFEul)
		fail(126, "invalid %s id %s", what, s);
	return v;
}

struct ids {
	uid_t uid;
	gid_t gid;
	gid_t groups[MAX_GROUPS];
	int ngroups;
	const char *home;
};

/* The Docker (runc) rules: "uid" or "name", optionally ":gid" or ":group".
 * A passwd entry gives the primary group and HOME; supplementary groups come
 * from /etc/group only when no group was named explicitly. */
static void resolve_user(const char *spec, struct ids *ids)
{
	char *u = strdup(spec ? spec : "0");
	if (!u)
		fail(126, "out of memory");
	char *g = strchr(u, ':');
	if (g)
		*g++ = 0;
	struct passwd *pw;
	if (all_digits(u)) {
		ids->uid = (uid_t)parse_id(u, "user");
		pw = getpwuid(ids->uid);
	} else {
		pw = getpwnam(u);
		if (!pw)
			fail(126, "unable to find user %s: no matching entries in passwd file", u);
		ids->uid = pw->pw_uid;
	}
	ids->gid = pw ? pw->pw_gid : 0;
	ids->home = pw && pw->pw_dir && *pw->pw_dir ? strdup(pw->pw_dir) : "/";
	ids->ngroups = 0;
	if (g && *g) {
		if (all_digits(g)) {
			ids->gid = (gid_t)parse_id(g, "group");
		} else {
			struct group *gr = getgrnam(g);
			if (!gr)
				fail(126, "unable to find group %s: no matching entries in group file", g);
			ids->gid = gr->gr_gid;
		}
	} else if (pw) {
		int n = MAX_GROUPS;
		/* On overflow musl fills MAX_GROUPS and returns -1: keep those. */
		if (getgrouplist(pw->pw_name, ids->gid, ids->groups, &n) < 0 && n > MAX_GROUPS)
			n = MAX_GROUPS;
		ids->ngroups = 0;
		/* musl lists the primary group first and again if /etc/group
		 * names the user in it: keep each gid once. */
		for (int i = 0; i < n; i++) {
			int dup = 0;
			for (int k = 0; k < ids->ngroups; k++)
				dup |= ids->groups[k] == ids->groups[i];
			if (!dup)
				ids->groups[ids->ngroups++] = ids->groups[i];
		}
	}
	free(u);
}

/* mkdir -p, as root, before dropping privileges (Docker does the same). */
static void make_workdir(const char *dir)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
		fail(126, "working directory %s: name too long", dir);
	for (char *p = path + 1; ; p++) {
		if (*p == '/' || *p == 0) {
			char c = *p;
			*p = 0;
			if (mkdir(path, 0755) < 0 && errno != EEXIST)
				fail(126, "mkdir %s: %s", path, strerror(errno));
			*p = c;
			if (!c)
				break;
		}
	}
}

static const char *env_get(char *const *env, const char *key)
{
	size_t k = strlen(key);
	for (; env && *env; env++)
		if (!strncmp(*env, key, k) && (*env)[k] == '=')
			return *env + k + 1;
	return NULL;
}

/* The environment plus HOME from the passwd entry when it has none. */
static char **with_home(char *const *env, const char *home)
{
	size_t n = 0;
	while (env && env[n])
		n++;
	char **out = calloc(n + 2, sizeof(char *));
	if (!out)
		fail(126, "out of memory");
	for (size_t i = 0; i < n; i++)
		out[i] = env[i];
	if (!env_get(env, "HOME")) {
		size_t len = strlen(home) + 6;
		out[n] = malloc(len);
		if (!out[n])
			fail(126, "out of memory");
		snprintf(out[n], len, "HOME=%s", home);
	}
	return out;
}

__attribute__((noreturn))
static void exec_failed(const char *path, int err)
{
	struct stat st;
	if (err == ENOENT && stat(path, &st) == 0)
		fail(126, "exec %s: no such file or directory (its interpreter or loader is missing)", path);
	if (err == ENOENT)
		fail(127, "exec %s: no such file or directory", path);
	fail(126, "exec %s: %s", path, strerror(err));
}

/* execvpe() with the program's PATH, not kestrel's, and exact 127/126:
 * not found anywhere -> 127; found but not executable -> 126. */
__attribute__((noreturn))
static void exec_search(char *const argv[], char *const envp[])
{
	const char *file = argv[0];
	if (strchr(file, '/')) {
		execve(file, argv, envp);
		exec_failed(file, errno);
	}
	size_t flen = strlen(file);
	if (flen == 0 || flen > NAME_MAX)
		fail(127, "exec: \"%s\": executable file not found in $PATH", file);
	const char *path = env_get(envp, "PATH");
	if (!path)
		path = DEFAULT_PATH;
	char buf[PATH_MAX];
	int denied = 0;
	for (const char *p = path; ; ) {
		const char *z = strchrnul(p, ':');
		size_t dl = (size_t)(z - p);
		if (dl + flen + 2 <= sizeof buf) {
			if (dl) {
				memcpy(buf, p, dl);
				buf[dl++] = '/';
			}
			memcpy(buf + dl, file, flen + 1);
			execve(buf, argv, envp);
			struct stat st;
			switch (errno) {
			case ENOENT:
				/* The file is there: its interpreter or loader is not. */
				if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
					exec_failed(buf, ENOENT);
				break;
			case EACCES:
				denied = 1;
				break;
			case ENOTDIR:
			case ENAMETOOLONG:
			case ELOOP:
				break;
			default:
				exec_failed(buf, errno);
			}
		}
		if (!*z)
			break;
		p = z + 1;
	}
	if (denied)
		fail(126, "exec: \"%s\": permission denied", file);
	fail(127, "exec: \"%s\": executable file not found in $PATH", file);
}

struct child_fds {
	int in, out, err;   /* become 0, 1, 2 */
	int tty;            /* the pty slave, or -1 */
};

__attribute__((noreturn))
static void child(const struct spawn_opts *o, struct child_fds *fds)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);   /* kestrel ignores it; ignored stays ignored across exec */

	if (setsid() < 0)
		fail(126, "setsid: %s", strerror(errno));
	if (fds->tty >= 0 && ioctl(fds->tty, TIOCSCTTY, 0) < 0)
		fail(126, "TIOCSCTTY: %s", strerror(errno));
	if (fds->in < 0 && (fds->in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0)
		fail(126, "/dev/null: %s", strerror(errno));
	if (dup2(fds->in, 0) < 0 || dup2(fds->out, 1) < 0 || dup2(fds->err, 2) < 0)
		fail(126, "dup2: %s", strerror(errno));

	struct ids ids;
	resolve_user(o->user, &ids);
	const char *wd = o->workdir && *o->workdir ? o->workdir : "/";
	if (wd[0] != '/')
		fail(126, "working directory %s is not absolute", wd);
	make_workdir(wd);
	if (setgroups((size_t)ids.ngroups, ids.groups) < 0)
		fail(126, "setgroups: %s", strerror(errno));
	if (setgid(ids.gid) < 0)
		fail(126, "setgid %u: %s", (unsigned)ids.gid, strerror(errno));
	if (setuid(ids.uid) < 0)
		fail(126, "setuid %u: %s", (unsigned)ids.uid, strerror(errno));
	if (chdir(wd) < 0)
		fail(126, "chdir %s: %s", wd, strerror(errno));
	exec_search(o->argv, with_home(o->env, ids.home));
}

/* ---- parent side --------------------------------------------------- */

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static int nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static int open_pty(int *master, int *slave, uint16_t rows, uint16_t cols)
{
	char name[64];
	*master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*master < 0)
		return -1;
	if (grantpt(*master) < 0 || unlockpt(*master) < 0 ||
	    ptsname_r(*master, name, sizeof name) != 0)
		return -1;
	*slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (*slave < 0)
		return -1;
	struct winsize ws = { .ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80 };
	return ioctl(*master, TIOCSWINSZ, &ws);
}

int spawn_start(const struct spawn_opts *o, struct spawn_proc *sp, char *err, size_t errlen)
{
	int st[2] = { -1, -1 }, in[2] = { -1, -1 }, out[2] = { -1, -1 }, er[2] = { -1, -1 };
	int master = -1, slave = -1;
	const char *what = "pipe";
	if (pipe2(st, O_CLOEXEC) < 0)
		goto fail;
	if (o->tty) {
		what = "pty";
		if (open_pty(&master, &slave, o->rows, o->cols) < 0)
			goto fail;
	} else if ((o->with_stdin && pipe2(in, O_CLOEXEC) < 0) ||
		   pipe2(out, O_CLOEXEC) < 0 || (!o->merge_output && pipe2(er, O_CLOEXEC) < 0)) {
		goto fail;
	}
	what = "fork";
	pid_t pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0) {
		status_w = st[1];
		struct child_fds fds = { in[0], out[1], o->merge_output ? out[1] : er[1], -1 };
		if (o->tty)
			fds.in = fds.out = fds.err = fds.tty = slave;
		child(o, &fds);
	}
	close_fd(&st[1]);
	close_fd(&slave);
	close_fd(&in[0]);
	close_fd(&out[1]);
	close_fd(&er[1]);
	sp->pid = pid;
	sp->status_fd = st[0];
	if (o->tty) {
		sp->in_fd = sp->out_fd = master;
		sp->err_fd = -1;
	} else {
		sp->in_fd = in[1];
		sp->out_fd = out[0];
		sp->err_fd = er[0];
	}
	nonblock(sp->status_fd);
	nonblock(sp->out_fd);
	if (sp->err_fd >= 0)
		nonblock(sp->err_fd);
	if (sp->in_fd >= 0 && sp->in_fd != sp->out_fd)
		nonblock(sp->in_fd);
	return 0;
fail:
	snprintf(err, errlen, "%s: %s", what, strerror(errno));
	close_fd(&st[0]); close_fd(&st[1]);
	close_fd(&in[0]); close_fd(&in[1]);
	close_fd(&out[0]); close_fd(&out[1]);
	close_fd(&er[0]); close_fd(&er[1]);
	close_fd(&master); close_fd(&slave);
	return -1;
}

int spawn_status(int fd, int *code, char *msg, size_t msglen)
{
	struct spawn_failure f;
	ssize_t n = read(fd, &f, sizeof f);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return -1;
	if (n == (ssize_t)sizeof f) {
		f.msg[sizeof f.msg - 1] = 0;
		*code = f.code == 127 ? 127 : 126;
		snprintf(msg, msglen, "%s", f.msg);
		return 0;
	}
	if (n == 0)
		return 1;
	/* A short read or an error: the child died before it could say. */
	*code = 126;
	snprintf(msg, msglen, "the program could not be started");
	return 0;
}
