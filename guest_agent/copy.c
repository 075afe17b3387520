/* copy.c - STAT, COPY_OUT and COPY_IN (PROTOCOL.md, "Copying files").
 *
 * STAT is answered at once.  A copy is a session of its own (a table apart
 * from the exec sessions, same channel rules):
 *
 *  - COPY_OUT walks the tree with openat/fdopendir, never following a
 *    symbolic link, and produces the tar incrementally: only when the
 *    session has output credit and the agent queue has room does it queue
 *    the next header or the next 64 KiB of the current file.  Its state is
 *    the stack of open directories (with the length of each one's member
 *    name), the current file's fd and the bytes of it still to send.
 *  - COPY_IN feeds STDIN into the tar reader (tar.c) and extracts as it
 *    goes.  Every member is reached from the destination directory by
 *    openat(O_DIRECTORY | O_NOFOLLOW) one component at a time, so nothing
 *    is ever written through a symbolic link, and names that are absolute
 *    or hold ".." are refused.  Directory mtimes are set at the end (the
 *    files created in them would change them again). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "buf.h"
#include "fields.h"
#include "frame.h"
#include "kestrel.h"
#include "msg.h"
#include "tar.h"

#define MAX_COPIES 8
#define MAX_DEPTH 64
#define READ_CHUNK 65536
/* Bytes all COPY_OUTs together send per loop iteration before letting the
 * other fds have their turn. */
#define TICK_BUDGET (1024 * 1024)
#define MAX_DEFERRED 65536
#define CREDIT_CAP ((int64_t)1 << 40)

enum { C_FREE, C_OUT, C_IN };

struct walk_dir {
	DIR *d;
	size_t name_len;   /* the directory's own member name is name[0..name_len) */
};

struct deferred {
	char *path;        /* cleaned member name below the destination */
	int64_t mtime;
};

struct copy {
	int kind;
	uint32_t channel;
	/* COPY_OUT */
	int64_t credit;
	struct buf q;              /* tar bytes ready to send */
	char *name;                /* the current member name */
	size_t name_len, name_cap;
	struct walk_dir stack[MAX_DEPTH];
	int depth;
	int root_fd;               /* the path's parent, until its entry is queued */
	char *root_base;           /* the path's last component, likewise */
	int file_fd;
	uint64_t file_left, file_size;
	int walked;                /* everything, end blocks included, is queued */
	struct buf xattrs;         /* PAX records of the current entry's xattrs */
	struct seen_link *links;   /* non-directories with several links, by inode */
	size_t nlinks, links_cap;
	/* COPY_IN */
	int dir_fd;
	struct tar_reader rd;
	int out_fd;                /* the regular file being written */
	uint64_t data_left;        /* data bytes of the current member */
	uint32_t mode;             /* the current file's metadata, set once it is written */
	uid_t uid;
	gid_t gid;
	int64_t mtime;
	uint32_t in_credit;
	struct deferred *dirs;
	size_t ndirs, dirs_cap;
};

/* The first member name of an inode with several links: later ones become hard links to it. */
struct seen_link {
	dev_t dev;
	ino_t ino;
	char *name;
};

static struct copy copies[MAX_COPIES];
static int inited;

static void init_table(void)
{
	if (inited)
		return;
	inited = 1;
	for (int i = 0; i < MAX_COPIES; i++)
		copies[i].root_fd = copies[i].file_fd = copies[i].dir_fd = copies[i].out_fd = -1;
}

static struct copy *find(uint32_t ch)
{
	init_table();
	for (int i = 0; i < MAX_COPIES; i++)
		if (copies[i].kind != C_FREE && copies[i].channel == ch)
			return &copies[i];
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void free_copy(struct copy *c)
{
	close_fd(&c->file_fd);
	close_fd(&c->root_fd);
	close_fd(&c->out_fd);
	close_fd(&c->dir_fd);
	for (int i = 0; i < c->depth; i++)
		closedir(c->stack[i].d);
	buf_free(&c->q);
	buf_free(&c->xattrs);
	for (size_t i = 0; i < c->nlinks; i++)
		free(c->links[i].name);
	free(c->links);
	free(c->name);
	free(c->root_base);
	if (c->kind == C_IN)
		tar_reader_free(&c->rd);
	for (size_t i = 0; i < c->ndirs; i++)
		free(c->dirs[i].path);
	free(c->dirs);
	memset(c, 0, sizeof *c);
	c->root_fd = c->file_fd = c->dir_fd = c->out_fd = -1;
}

static struct copy *new_copy(uint32_t ch, int kind)
{
	init_table();
	for (int i = 0; i < MAX_COPIES; i++) {
		if (copies[i].kind == C_FREE) {
			copies[i].kind = kind;
			copies[i].channel = ch;
			return &copies[i];
		}
	}
	return NULL;
}

/* ERROR for a path: 5 when it does not exist, else 1 with the reason. */
static void path_error(uint32_t ch, const char *path, int err)
{
	char msg[512];
	snprintf(msg, sizeof msg, "%s: %s", path, strerror(err));
	agent_send_error(ch, err == ENOENT || err == ENOTDIR ? 5 : 1, msg);
}

/* ---- STAT ---- */

static void do_stat(uint32_t ch, const uint8_t *p, size_t n)
{
	struct path_req r;
	const char *why;
	if (msg_parse_path(p, n, &r, &why) < 0) {
		agent_send_error(ch, 1, why);
		return;
	}
	struct stat st;
	if (lstat(r.path, &st) < 0) {
		path_error(ch, r.path, errno);
		msg_free_path(&r);
		return;
	}
	const char *type = S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "dir"
			 : S_ISLNK(st.st_mode) ? "symlink" : "other";
	struct buf b = { 0 };
	uint8_t size[8];
	uint64_t sz = st.st_size > 0 ? (uint64_t)st.st_size : 0;
	for (int i = 0; i < 8; i++)
		size[i] = (uint8_t)(sz >> (56 - 8 * i));
	int64_t mt = st.st_mtime < 0 ? 0 : st.st_mtime > UINT32_MAX ? UINT32_MAX : st.st_mtime;
	fl_put_str(&b, 1, type);
	fl_put_u32(&b, 2, (uint32_t)st.st_mode);
	fl_put_u32(&b, 3, (uint32_t)st.st_uid);
	fl_put_u32(&b, 4, (uint32_t)st.st_gid);
	fl_put(&b, 5, size, 8);
	fl_put_u32(&b, 6, (uint32_t)mt);
	if (S_ISLNK(st.st_mode)) {
		char link[PATH_MAX];
		ssize_t k = readlink(r.path, link, sizeof link);
		if (k >= 0)
			fl_put(&b, 7, link, (uint32_t)k);
	}
	agent_send(T_STAT_REPLY, 0, ch, buf_head(&b), b.len);
	buf_free(&b);
	msg_free_path(&r);
}

/* ---- COPY_OUT ---- */

static int set_name(struct copy *c, size_t keep, const char *add)
{
	size_t an = add ? strlen(add) : 0;
	size_t need = keep + (add && keep ? 1 : 0) + an + 2;   /* a '/' for a directory, NUL */
	if (need > c->name_cap) {
		size_t cap = c->name_cap ? c->name_cap : 256;
		while (cap < need)
			cap *= 2;
		char *p = realloc(c->name, cap);
		if (!p)
			return -1;
		c->name = p;
		c->name_cap = cap;
	}
	size_t len = keep;
	if (add) {
		if (keep)
			c->name[len++] = '/';
		memcpy(c->name + len, add, an);
		len += an;
	}
	c->name[len] = 0;
	c->name_len = len;
	return 0;
}

static int gone(int err)
{
	/* the entry vanished, or changed type, since readdir saw it: skip it */
	return err == ENOENT || err == ELOOP || err == ENOTDIR || err == ENXIO;
}

/* The member an earlier link of this inode was stored as, or NULL (and remember this one). */
static char *hard_link_to(struct copy *c, const struct stat *st, int *oom)
{
	for (size_t i = 0; i < c->nlinks; i++)
		if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino)
			return c->links[i].name;
	if (c->nlinks == c->links_cap) {
		size_t cap = c->links_cap ? c->links_cap * 2 : 16;
		struct seen_link *p = realloc(c->links, cap * sizeof *p);
		if (!p) {
			*oom = 1;
			return NULL;
		}
		c->links = p;
		c->links_cap = cap;
	}
	char *name = strdup(c->name);
	if (!name) {
		*oom = 1;
		return NULL;
	}
	c->links[c->nlinks++] = (struct seen_link){ st->st_dev, st->st_ino, name };
	return NULL;
}

/* Linux's limits (linux/limits.h; musl's sys/xattr.h does not carry them). */
#define XATTR_NAMES_MAX 65536   /* XATTR_LIST_MAX */
#define XATTR_VALUE_MAX 65536   /* XATTR_SIZE_MAX */
#define XATTR_NAME_LEN 255      /* XATTR_NAME_MAX */

/* The entry's extended attributes as PAX `SCHILY.xattr.NAME` records (GNU tar's and
 * Docker's key) in c->xattrs.  A file system without xattrs, or an entry that vanished,
 * gives none; the entry itself still goes. */
static int collect_xattrs(struct copy *c, int pfd, const char *base)
{
	static char names[XATTR_NAMES_MAX];
	static char value[XATTR_VALUE_MAX];
	char path[PATH_MAX + 32];
	buf_clear(&c->xattrs);
	/* l*xattr through /proc/self/fd: the *at forms do not exist, and a symlink's own
	 * attributes need the l- variants. */
	if (snprintf(path, sizeof path, "/proc/self/fd/%d/%s", pfd, base) >= (int)sizeof path)
		return 0;
	ssize_t n = llistxattr(path, names, sizeof names);
	if (n <= 0)
		return 0;
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(names + i) + 1) {
		char key[XATTR_NAME_LEN + 32];
		ssize_t v = lgetxattr(path, names + i, value, sizeof value);
		if (v < 0)
			continue;
		snprintf(key, sizeof key, "SCHILY.xattr.%s", names + i);
		if (tar_pax_record_n(&c->xattrs, key, value, (size_t)v) < 0)
			return -1;
	}
	return 0;
}

/* Queue the header of the entry base in directory pfd, named c->name, and
 * set up its contents (a file to read, a directory to walk). */
static int emit(struct copy *c, int pfd, const char *base, char *err, size_t errlen)
{
	struct stat st;
	if (fstatat(pfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (gone(errno))
			return 0;
		snprintf(err, errlen, "%s: %s", c->name, strerror(errno));
		return -1;
	}
	struct tar_entry e = {
		.name = c->name, .linkname = "", .mode = st.st_mode & 07777,
		.uid = st.st_uid, .gid = st.st_gid, .mtime = st.st_mtime,
	};
	char link[PATH_MAX];
	int fd = -1;
	DIR *d = NULL;
	if (collect_xattrs(c, pfd, base) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	e.pax_extra = &c->xattrs;
	if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
		int oom = 0;
		char *first = hard_link_to(c, &st, &oom);
		if (oom) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (first) {   /* a later link: a hard link member, no data */
			e.type = TAR_LINK;
			e.linkname = first;
			if (tar_put_header(&c->q, &e) < 0) {
				snprintf(err, errlen, "out of memory");
				return -1;
			}
			return 0;
		}
	}
	if (S_ISREG(st.st_mode)) {
		fd = openat(pfd, base, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			int e2 = fd < 0 ? errno : ENOENT;
			close_fd(&fd);
			if (gone(e2))
				return 0;
			snprintf(err, errlen, "%s: %s", c->name, strerror(e2));
			return -1;
		}
		e.type = TAR_REG;
		e.size = (uint64_t)st.st_size;
	} else if (S_ISDIR(st.st_mode)) {
		if (c->depth == MAX_DEPTH) {
			snprintf(err, errlen, "%s: more than %d directory levels", c->name, MAX_DEPTH);
			return -1;
		}
		fd = openat(pfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || !(d = fdopendir(fd))) {
			int e2 = errno;
			close_fd(&fd);
			if (gone(e2))
				return 0;
			snprintf(err, errlen, "%s: %s", c->name, strerror(e2));
			return -1;
		}
		e.type = TAR_DIR;
		c->name[c->name_len] = '/';   /* set_name left room for it */
		c->name[c->name_len + 1] = 0;
	} else if (S_ISLNK(st.st_mode)) {
		ssize_t k = readlinkat(pfd, base, link, sizeof link - 1);
		if (k < 0) {
			if (gone(errno) || errno == EINVAL)
				return 0;
			snprintf(err, errlen, "%s: %s", c->name, strerror(errno));
			return -1;
		}
		link[k] = 0;
		e.type = TAR_SYM;
		e.linkname = link;
	} else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
		e.type = S_ISCHR(st.st_mode) ? TAR_CHR : TAR_BLK;
		e.devmajor = major(st.st_rdev);
		e.devminor = minor(st.st_rdev);
	} else if (S_ISFIFO(st.st_mode)) {
		e.type = TAR_FIFO;
	} else {
		return 0;   /* a socket: tar cannot hold it */
	}
	int rc = tar_put_header(&c->q, &e);
	if (d) {
		c->name[c->name_len] = 0;   /* without the '/' again */
		if (rc == 0) {
			c->stack[c->depth].d = d;
			c->stack[c->depth].name_len = c->name_len;
			c->depth++;
		} else {
			closedir(d);
		}
	} else if (fd >= 0) {
		if (rc == 0 && e.size > 0) {
			c->file_fd = fd;
			c->file_left = c->file_size = e.size;
		} else {
			close(fd);
		}
	}
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int read_file(struct copy *c, char *err, size_t errlen)
{
	size_t want = c->file_left < READ_CHUNK ? (size_t)c->file_left : READ_CHUNK;
	uint8_t *dst = buf_reserve(&c->q, want);
	if (!dst) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ssize_t n = read(c->file_fd, dst, want);
	if (n < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		snprintf(err, errlen, "%s: %s", c->name, strerror(errno));
		return -1;
	}
	if (n == 0) {   /* the file shrank after its header was sent: zeros */
		memset(dst, 0, want);
		n = (ssize_t)want;
	}
	buf_commit(&c->q, (size_t)n);
	c->file_left -= (uint64_t)n;
	if (c->file_left == 0) {
		close_fd(&c->file_fd);
		uint32_t pad = tar_padding(c->file_size);
		uint8_t *z = buf_reserve(&c->q, pad);
		if (pad && !z) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memset(z, 0, pad);
		buf_commit(&c->q, pad);
	}
	return 0;
}

/* Queue the next piece of the archive; 0, or -1 with err. */
static int produce(struct copy *c, char *err, size_t errlen)
{
	if (c->file_fd >= 0)
		return read_file(c, err, errlen);
	if (c->root_base) {
		int rc = emit(c, c->root_fd, c->root_base, err, errlen);
		free(c->root_base);
		c->root_base = NULL;
		close_fd(&c->root_fd);
		return rc;
	}
	if (c->depth == 0) {
		if (tar_put_end(&c->q) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		c->walked = 1;
		return 0;
	}
	struct walk_dir *w = &c->stack[c->depth - 1];
	errno = 0;
	struct dirent *de = readdir(w->d);
	if (!de) {
		if (errno) {
			snprintf(err, errlen, "%.*s: %s", (int)w->name_len, c->name, strerror(errno));
			return -1;
		}
		closedir(w->d);
		c->depth--;
		return 0;
	}
	if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
		return 0;
	if (set_name(c, w->name_len, de->d_name) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return emit(c, dirfd(w->d), de->d_name, err, errlen);
}

static void out_tick(struct copy *c, size_t *budget)
{
	char err[600];
	while (agent_can_stream() && c->credit > 0 && *budget > 0) {
		if (c->q.len == 0) {
			if (c->walked)
				break;
			if (produce(c, err, sizeof err) < 0) {
				agent_send_error(c->channel, 1, err);
				free_copy(c);
				return;
			}
			continue;
		}
		size_t n = c->q.len;
		if ((int64_t)n > c->credit)
			n = (size_t)c->credit;
		if (n > MAX_PAYLOAD)
			n = MAX_PAYLOAD;
		if (agent_send(T_STDOUT, 0, c->channel, buf_head(&c->q), n) < 0)
			return;
		buf_consume(&c->q, n);
		c->credit -= (int64_t)n;
		*budget = n < *budget ? *budget - n : 0;
	}
	if (c->walked && c->q.len == 0) {
		uint8_t b[4];
		put_be32(b, 0);
		agent_send(T_EXIT, 0, c->channel, b, 4);
		free_copy(c);
		return;
	}
	if (*budget == 0 && c->credit > 0 && agent_can_stream())
		loop_deadline(0);   /* more to do: come back after one poll */
}

static void start_out(uint32_t ch, const uint8_t *p, size_t n)
{
	struct path_req r;
	const char *why;
	if (msg_parse_path(p, n, &r, &why) < 0) {
		agent_send_error(ch, 1, why);
		return;
	}
	/* parent directory and last component; relative paths start at / */
	size_t len = strlen(r.path);
	while (len > 1 && r.path[len - 1] == '/')
		r.path[--len] = 0;
	char *slash = strrchr(r.path, '/');
	const char *base = slash ? slash + 1 : r.path;
	char parent[PATH_MAX];
	if (!strcmp(r.path, "/"))
		base = ".";
	if (!slash || slash == r.path)
		snprintf(parent, sizeof parent, "/");
	else
		snprintf(parent, sizeof parent, "%s%.*s", r.path[0] == '/' ? "" : "/",
			 (int)(slash - r.path), r.path);
	struct stat st;
	int fd = -1;
	struct copy *c = NULL;
	if (strcmp(r.path, "/") && (!strcmp(base, ".") || !strcmp(base, ".."))) {
		agent_send_error(ch, 1, "COPY_OUT path must not end in . or ..");
	} else if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
		   fstatat(fd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		path_error(ch, r.path, errno);
	} else if (!(c = new_copy(ch, C_OUT))) {
		agent_send_error(ch, 4, "busy: too many copies at once (at most 8)");
	} else if (!(c->root_base = strdup(base)) || set_name(c, 0, base) < 0) {
		agent_send_error(ch, 1, "out of memory");
		free_copy(c);
	} else {
		c->root_fd = fd;
		fd = -1;
		c->credit = OUT_CREDIT_INIT;
		agent_send_u32(T_STARTED, ch, 0);
	}
	close_fd(&fd);
	msg_free_path(&r);
}

/* ---- COPY_IN ---- */

/* Open the directory that holds the last component of path (a cleaned
 * member name, modified in place while walking), creating missing ones if
 * create.  *pfd is c->dir_fd or an fd the caller closes. */
static int walk_parent(struct copy *c, char *path, int create, int *pfd, const char **last,
		       const char *member, char *err, size_t errlen)
{
	int fd = c->dir_fd;
	char *s = path;
	for (;;) {
		char *slash = strchr(s, '/');
		if (!slash) {
			*pfd = fd;
			*last = s;
			return 0;
		}
		*slash = 0;
		int next = openat(fd, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, s, 0755) == 0 || errno == EEXIST)
				next = openat(fd, s, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		int e = errno;
		*slash = '/';
		if (fd != c->dir_fd)
			close(fd);
		if (next < 0) {
			if (e == ELOOP || e == ENOTDIR)
				snprintf(err, errlen, "%s: %.*s is a symbolic link or not a directory "
					 "(nothing is written through one)", member, (int)(slash - path), path);
			else
				snprintf(err, errlen, "%s: %s", member, strerror(e));
			return -1;
		}
		fd = next;
		s = slash + 1;
	}
}

/* Make room for a new non-directory at pfd/last: remove what is there
 * (never following it), unless it is a directory. */
static int clear_spot(int pfd, const char *last, const char *member, char *err, size_t errlen)
{
	struct stat st;
	if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	if (S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: cannot replace a directory with a non-directory", member);
		return -1;
	}
	if (unlinkat(pfd, last, 0) < 0 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", member, strerror(errno));
		return -1;
	}
	return 0;
}

static int sys_fail(const char *member, const char *what, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s: %s: %s", member, what, strerror(errno));
	return -1;
}

static int defer_dir(struct copy *c, const char *path, int pfd, const char *last, int64_t mtime)
{
	struct timespec ts[2] = { { .tv_sec = mtime }, { .tv_sec = mtime } };
	if (c->ndirs == MAX_DEFERRED) {   /* too many to remember: now, best effort */
		utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	if (c->ndirs == c->dirs_cap) {
		size_t cap = c->dirs_cap ? 2 * c->dirs_cap : 64;
		struct deferred *d = realloc(c->dirs, cap * sizeof *d);
		if (!d)
			return -1;
		c->dirs = d;
		c->dirs_cap = cap;
	}
	char *p = strdup(path);
	if (!p)
		return -1;
	c->dirs[c->ndirs].path = p;
	c->dirs[c->ndirs].mtime = mtime;
	c->ndirs++;
	return 0;
}

static void set_dir_times(struct copy *c)
{
	char err[16];
	while (c->ndirs > 0) {
		struct deferred *d = &c->dirs[--c->ndirs];
		int pfd;
		const char *last;
		if (walk_parent(c, d->path, 0, &pfd, &last, "", err, sizeof err) == 0) {
			struct timespec ts[2] = { { .tv_sec = d->mtime }, { .tv_sec = d->mtime } };
			utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW);
			if (pfd != c->dir_fd)
				close(pfd);
		}
		free(d->path);
	}
}

static int finish_file(struct copy *c, char *err, size_t errlen)
{
	if (c->out_fd < 0)
		return 0;
	struct timespec ts[2] = { { .tv_sec = c->mtime }, { .tv_sec = c->mtime } };
	/* owner first: chown clears setuid and setgid */
	int rc = fchown(c->out_fd, c->uid, c->gid) < 0 || fchmod(c->out_fd, c->mode) < 0 ||
		 futimens(c->out_fd, ts) < 0;
	if (rc)
		snprintf(err, errlen, "%s: %s", c->rd.entry.name, strerror(errno));
	close_fd(&c->out_fd);
	return rc ? -1 : 0;
}

static int make_member(struct copy *c, int pfd, const char *last, const char *path,
		       const struct tar_entry *e, char *err, size_t errlen)
{
	const char *m = e->name;
	struct timespec ts[2] = { { .tv_sec = e->mtime }, { .tv_sec = e->mtime } };
	uid_t uid = (uid_t)e->uid;
	gid_t gid = (gid_t)e->gid;
	switch (e->type) {
	case TAR_DIR: {
		struct stat st;
		if (fstatat(pfd, last, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode) &&
		    unlinkat(pfd, last, 0) < 0)
			return sys_fail(m, "unlink", err, errlen);
		if (mkdirat(pfd, last, 0700) < 0 && errno != EEXIST)
			return sys_fail(m, "mkdir", err, errlen);
		int fd = openat(pfd, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return sys_fail(m, "open", err, errlen);
		int bad = fchown(fd, uid, gid) < 0 || fchmod(fd, e->mode) < 0;
		int saved = errno;
		close(fd);
		errno = saved;
		if (bad)
			return sys_fail(m, "chown/chmod", err, errlen);
		if (defer_dir(c, path, pfd, last, e->mtime) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	case TAR_REG:
		if (clear_spot(pfd, last, m, err, errlen) < 0)
			return -1;
		c->out_fd = openat(pfd, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (c->out_fd < 0)
			return sys_fail(m, "create", err, errlen);
		c->mode = e->mode;
		c->uid = uid;
		c->gid = gid;
		c->mtime = e->mtime;
		return e->size == 0 ? finish_file(c, err, errlen) : 0;
	case TAR_SYM:
		if (clear_spot(pfd, last, m, err, errlen) < 0)
			return -1;
		if (symlinkat(e->linkname, pfd, last) < 0)
			return sys_fail(m, "symlink", err, errlen);
		if (fchownat(pfd, last, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
			return sys_fail(m, "chown", err, errlen);
		utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	case TAR_LINK: {
		char target[PATH_MAX];
		const char *why;
		int n = tar_clean_name(e->linkname, target, sizeof target, &why);
		if (n <= 0) {
			snprintf(err, errlen, "%s: hard link to %s: %s", m, e->linkname,
				 n == 0 ? "the archive's root" : why);
			return -1;
		}
		int tfd;
		const char *tlast;
		if (walk_parent(c, target, 0, &tfd, &tlast, m, err, errlen) < 0)
			return -1;
		struct stat a, b;
		int rc = 0;
		if (fstatat(tfd, tlast, &a, AT_SYMLINK_NOFOLLOW) == 0 &&
		    fstatat(pfd, last, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			rc = 0;   /* already that file */
		} else if ((rc = clear_spot(pfd, last, m, err, errlen)) == 0 &&
			   linkat(tfd, tlast, pfd, last, 0) < 0) {
			rc = sys_fail(m, "link", err, errlen);
		}
		if (tfd != c->dir_fd)
			close(tfd);
		return rc;
	}
	case TAR_CHR:
	case TAR_BLK:
	case TAR_FIFO: {
		mode_t t = e->type == TAR_CHR ? S_IFCHR : e->type == TAR_BLK ? S_IFBLK : S_IFIFO;
		if (clear_spot(pfd, last, m, err, errlen) < 0)
			return -1;
		if (mknodat(pfd, last, t | 0600, makedev(e->devmajor, e->devminor)) < 0)
			return sys_fail(m, "mknod", err, errlen);
		if (fchownat(pfd, last, uid, gid, AT_SYMLINK_NOFOLLOW) < 0 ||
		    fchmodat(pfd, last, e->mode, AT_SYMLINK_NOFOLLOW) < 0)
			return sys_fail(m, "chown/chmod", err, errlen);
		utimensat(pfd, last, ts, AT_SYMLINK_NOFOLLOW);
		return 0;
	}
	default:
		return 0;   /* an unknown type: its data is skipped */
	}
}

static int begin_entry(struct copy *c, const struct tar_entry *e, char *err, size_t errlen)
{
	char path[PATH_MAX];
	const char *why;
	c->data_left = e->size;
	int n = tar_clean_name(e->name, path, sizeof path, &why);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", e->name, why);
		return -1;
	}
	if (n == 0)
		return 0;   /* the archive's root ("./"): the destination itself, left as it is */
	if (e->uid >= 0xFFFFFFFFu || e->gid >= 0xFFFFFFFFu) {
		snprintf(err, errlen, "%s: uid or gid out of range", e->name);
		return -1;
	}
	char walk[PATH_MAX];
	memcpy(walk, path, strlen(path) + 1);
	int pfd;
	const char *last;
	if (walk_parent(c, walk, 1, &pfd, &last, e->name, err, errlen) < 0)
		return -1;
	int rc = make_member(c, pfd, last, path, e, err, errlen);
	if (pfd != c->dir_fd)
		close(pfd);
	return rc;
}

static int write_data(struct copy *c, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	c->data_left -= n;
	while (c->out_fd >= 0 && n > 0) {
		ssize_t w = write(c->out_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			snprintf(err, errlen, "%s: %s", c->rd.entry.name, w < 0 ? strerror(errno) : "short write");
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return c->data_left == 0 ? finish_file(c, err, errlen) : 0;
}

static int extract(struct copy *c, const uint8_t *p, size_t n, char *err, size_t errlen)
{
	while (n > 0) {
		size_t used = 0, dlen = 0;
		const uint8_t *data = NULL;
		enum tar_ev ev = tar_reader_feed(&c->rd, p, n, &used, &data, &dlen);
		p += used;
		n -= used;
		int rc = 0;
		switch (ev) {
		case TAR_EV_ENTRY:
			rc = begin_entry(c, &c->rd.entry, err, errlen);
			break;
		case TAR_EV_DATA:
			rc = write_data(c, data, dlen, err, errlen);
			break;
		case TAR_EV_ERROR:
			snprintf(err, errlen, "%s", c->rd.why ? c->rd.why : "bad archive");
			rc = -1;
			break;
		default:
			break;
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

static void in_stdin(struct copy *c, const uint8_t *p, size_t n)
{
	char err[600];
	if (n > c->in_credit) {
		agent_send_error(c->channel, 1, "STDIN beyond the window the guest granted");
		free_copy(c);
		return;
	}
	if (n == 0) {   /* the end of the archive */
		if (!tar_reader_at_boundary(&c->rd)) {
			agent_send_error(c->channel, 1, "the archive ends in the middle of a member");
		} else {
			set_dir_times(c);
			uint8_t b[4];
			put_be32(b, 0);
			agent_send(T_EXIT, 0, c->channel, b, 4);
		}
		free_copy(c);
		return;
	}
	c->in_credit -= (uint32_t)n;
	if (extract(c, p, n, err, sizeof err) < 0) {
		agent_send_error(c->channel, 1, err);
		free_copy(c);
		return;
	}
	/* written synchronously: the credit comes back at once */
	agent_send_u32(T_WINDOW_G, c->channel, (uint32_t)n);
	c->in_credit += (uint32_t)n;
}

static void start_in(uint32_t ch, const uint8_t *p, size_t n)
{
	struct path_req r;
	const char *why;
	if (msg_parse_path(p, n, &r, &why) < 0) {
		agent_send_error(ch, 1, why);
		return;
	}
	struct copy *c = NULL;
	struct stat st;
	int fd = open(r.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOTDIR && stat(r.path, &st) == 0) {
			char msg[512];
			snprintf(msg, sizeof msg, "%s: not a directory", r.path);
			agent_send_error(ch, 1, msg);
		} else {
			path_error(ch, r.path, e);
		}
	} else if (!(c = new_copy(ch, C_IN))) {
		agent_send_error(ch, 4, "busy: too many copies at once (at most 8)");
		close(fd);
	} else {
		c->dir_fd = fd;
		tar_reader_init(&c->rd);
		c->in_credit = IN_CREDIT_INIT;
		agent_send_u32(T_STARTED, ch, 0);
	}
	msg_free_path(&r);
}

/* ---- dispatch ---- */

int copy_request(uint8_t type, uint32_t ch, const uint8_t *p, size_t n)
{
	switch (type) {
	case T_STAT:
		do_stat(ch, p, n);
		return 1;
	case T_COPY_OUT:
	case T_COPY_IN:
		if (find(ch) || session_exists(ch))
			agent_send_error(ch, 1, "channel already in use");
		else if (type == T_COPY_OUT)
			start_out(ch, p, n);
		else
			start_in(ch, p, n);
		return 1;
	}
	struct copy *c = find(ch);
	if (!c)
		return 0;
	switch (type) {
	case T_EXEC:
		agent_send_error(ch, 1, "channel already in use");
		return 1;
	case T_STDIN:
		if (c->kind == C_IN) {
			in_stdin(c, p, n);
		} else {
			agent_send_error(ch, 1, "STDIN for a COPY_OUT");
			free_copy(c);
		}
		return 1;
	case T_WINDOW:
		if (n != 4) {
			agent_send_error(ch, 1, "WINDOW needs a u32");
			free_copy(c);
		} else if (c->kind == C_OUT) {
			c->credit += get_be32(p);
			if (c->credit > CREDIT_CAP)
				c->credit = CREDIT_CAP;
		}
		return 1;
	case T_SIGNAL: {
		uint32_t sig = n == 4 ? get_be32(p) : 0;
		if (n != 4 || sig > 64) {
			agent_send_error(ch, 1, "SIGNAL needs a u32 signal number");
			free_copy(c);
		} else if (sig != 0) {   /* a signal ends a copy as it would a process */
			uint8_t b[4];
			put_be32(b, 128 + sig);
			agent_send(T_EXIT, 0, ch, b, 4);
			free_copy(c);
		}
		return 1;
	}
	case T_RESIZE:
		agent_send_error(ch, 1, "RESIZE for a copy");
		free_copy(c);
		return 1;
	}
	return 0;
}

void copies_tick(void)
{
	size_t budget = TICK_BUDGET;
	init_table();
	for (int i = 0; i < MAX_COPIES; i++)
		if (copies[i].kind == C_OUT)
			out_tick(&copies[i], &budget);
}

void copies_new_connection(void)
{
	init_table();
	for (int i = 0; i < MAX_COPIES; i++)
		if (copies[i].kind != C_FREE)
			free_copy(&copies[i]);
}
