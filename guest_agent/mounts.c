/* mounts.c - the VM's volumes, bind shares and tmpfs mounts (boot config
 * tags 19-23, PROTOCOL.md "Boot configuration").
 *
 * Made inside the new root after it is set up and before switch_root, so the
 * workload starts with everything in place.  A volume is an ext4 disk found by
 * its virtio-blk serial; with "populate" an empty volume first receives the
 * image's files at its mount point (Docker's copy-up), copied here with
 * system calls because the guest already sees them with their real owners. */
#define _GNU_SOURCE
#include "mounts.h"
#include "sysfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define STAGE "/mnt/vol"
#define MAX_LINKS 40

/* The ext4 mount points, for the read-only remount before the reboot. */
static char *ext4_targets[64];
static int n_ext4;

static int fail(char *why, size_t n, const char *what, const char *path)
{
	snprintf(why, n, "mount: %s %s: %s", what, path, errno ? strerror(errno) : "invalid");
	return -1;
}

static int has_flag(const char *flags, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = flags; *p; ) {
		size_t w = strcspn(p, ",");
		if (w == len && !strncmp(p, name, len))
			return 1;
		p += w;
		if (*p)
			p++;
	}
	return 0;
}

/* /dev/vdX of the virtio disk whose serial is `serial`, waiting up to 3 s.
 * /sys and /dev have already moved into the new root. */
static int find_disk(const char *root, const char *serial, char *dev, size_t n)
{
	char block[PATH_MAX];
	snprintf(block, sizeof block, "%s/sys/block", root);
	for (int tries = 0; tries < 300; tries++) {
		DIR *d = opendir(block);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			if (strncmp(e->d_name, "vd", 2) || strlen(e->d_name) > 16)
				continue;
			char path[PATH_MAX + 32], buf[64];
			snprintf(path, sizeof path, "%s/%.16s/serial", block, e->d_name);
			if (read_line(path, buf, sizeof buf) < 0)
				continue;
			if (!strcmp(buf, serial)) {
				snprintf(dev, n, "%s/dev/%.16s", root, e->d_name);
				closedir(d);
				return 0;
			}
		}
		if (d)
			closedir(d);
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
	errno = ENODEV;
	return -1;
}

/* The real path under `root` of the absolute guest path `target`, following
 * symlinks inside the root (an absolute link restarts at the root, ".." stops
 * at it) and creating missing directories (with file, the last component is
 * a file: created empty when missing, refused if it is a directory).  out gets
 * root + resolved path. */
static int resolve_in_root(const char *root, const char *target, int file, char *out, size_t n)
{
	char rest[PATH_MAX], done[PATH_MAX] = "";
	int links = 0;
	snprintf(rest, sizeof rest, "%s", target);
	char *p = rest;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		size_t w = strcspn(p, "/");
		char comp[NAME_MAX + 1];
		if (w > NAME_MAX) {
			errno = ENAMETOOLONG;
			return -1;
		}
		memcpy(comp, p, w);
		comp[w] = 0;
		p += w;
		int last = p[strspn(p, "/")] == 0;
		if (!strcmp(comp, "."))
			continue;
		if (!strcmp(comp, "..")) {
			char *slash = strrchr(done, '/');
			if (slash)
				*slash = 0;
			continue;
		}
		char path[PATH_MAX];
		if (snprintf(path, sizeof path, "%s%s/%s", root, done, comp) >= (int)sizeof path) {
			errno = ENAMETOOLONG;
			return -1;
		}
		struct stat st;
		if (lstat(path, &st) < 0) {
			if (errno != ENOENT)
				return -1;
			if (last && file) {
				int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
				if (fd < 0)
					return -1;
				close(fd);
			} else if (mkdir(path, 0755) < 0) {
				return -1;
			}
		} else if (S_ISLNK(st.st_mode)) {
			char link[PATH_MAX], next[PATH_MAX];
			ssize_t len = readlink(path, link, sizeof link - 1);
			if (len < 0 || ++links > MAX_LINKS) {
				errno = ELOOP;
				return -1;
			}
			link[len] = 0;
			if (link[0] == '/')
				done[0] = 0;
			if (snprintf(next, sizeof next, "%s%s", link, p) >= (int)sizeof next) {
				errno = ENAMETOOLONG;
				return -1;
			}
			snprintf(rest, sizeof rest, "%s", next);
			p = rest;
			continue;
		} else if (last && file) {
			if (S_ISDIR(st.st_mode)) {
				errno = EISDIR;
				return -1;
			}
		} else if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
		size_t used = strlen(done);
		snprintf(done + used, sizeof done - used, "/%s", comp);
	}
	if (snprintf(out, n, "%s%s", root, done[0] ? done : "/") >= (int)n) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/* ---- copy-up: the image's directory into an empty volume ---- */

static void copy_meta(const char *dst, const struct stat *st, int is_link)
{
	int nofollow = is_link ? AT_SYMLINK_NOFOLLOW : 0;
	fchownat(AT_FDCWD, dst, st->st_uid, st->st_gid, nofollow);
	if (!is_link)
		chmod(dst, st->st_mode & 07777);   /* after chown, which clears set-id bits */
	struct timespec times[2] = { st->st_atim, st->st_mtim };
	utimensat(AT_FDCWD, dst, times, nofollow);
}

static void copy_xattrs(const char *src, const char *dst)
{
	char names[4096], value[4096];
	ssize_t len = llistxattr(src, names, sizeof names);
	for (ssize_t off = 0; len > 0 && off < len; off += (ssize_t)strlen(names + off) + 1) {
		ssize_t vlen = lgetxattr(src, names + off, value, sizeof value);
		if (vlen >= 0)
			lsetxattr(dst, names + off, value, (size_t)vlen, 0);
	}
}

static int copy_file(const char *src, const char *dst, const struct stat *st)
{
	int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	off_t left = st->st_size;
	int rc = 0;
	while (left > 0) {
		ssize_t w = sendfile(out, in, NULL, left > (1 << 30) ? (1 << 30) : (size_t)left);
		if (w <= 0) {
			rc = -1;   /* ENOSPC on a small volume, or the file shrank */
			break;
		}
		left -= w;
	}
	close(in);
	if (close(out) < 0)
		rc = -1;
	return rc;
}

/* Hard links inside the copied tree stay hard links. */
struct seen { ino_t ino; dev_t dev; char *path; };
static struct seen *seen;
static size_t n_seen, cap_seen;

static const char *seen_path(const struct stat *st)
{
	for (size_t i = 0; i < n_seen; i++)
		if (seen[i].ino == st->st_ino && seen[i].dev == st->st_dev)
			return seen[i].path;
	return NULL;
}

static void remember(const struct stat *st, const char *path)
{
	if (n_seen == cap_seen) {
		size_t cap = cap_seen ? cap_seen * 2 : 64;
		struct seen *grown = realloc(seen, cap * sizeof *seen);
		if (!grown)
			return;
		seen = grown;
		cap_seen = cap;
	}
	char *copy = strdup(path);
	if (copy)
		seen[n_seen++] = (struct seen){ st->st_ino, st->st_dev, copy };
}

static int copy_tree(const char *src, const char *dst, char *why, size_t n)
{
	DIR *d = opendir(src);
	if (!d)
		return fail(why, n, "copy-up: open", src);
	struct dirent *e;
	int rc = 0;
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char s[PATH_MAX], t[PATH_MAX];
		if (snprintf(s, sizeof s, "%s/%s", src, e->d_name) >= (int)sizeof s ||
		    snprintf(t, sizeof t, "%s/%s", dst, e->d_name) >= (int)sizeof t) {
			errno = ENAMETOOLONG;
			rc = fail(why, n, "copy-up", s);
			break;
		}
		struct stat st;
		if (lstat(s, &st) < 0) {
			rc = fail(why, n, "copy-up: stat", s);
			break;
		}
		const char *first = !S_ISDIR(st.st_mode) && st.st_nlink > 1 ? seen_path(&st) : NULL;
		if (first) {
			if (link(first, t) < 0)
				rc = fail(why, n, "copy-up: link", t);
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			if (mkdir(t, 0700) < 0 || copy_tree(s, t, why, n) < 0) {
				rc = errno == 0 ? -1 : fail(why, n, "copy-up: directory", t);
				break;
			}
		} else if (S_ISREG(st.st_mode)) {
			if (copy_file(s, t, &st) < 0)
				rc = fail(why, n, "copy-up: file", t);
		} else if (S_ISLNK(st.st_mode)) {
			char link_to[PATH_MAX];
			ssize_t len = readlink(s, link_to, sizeof link_to - 1);
			if (len < 0)
				rc = fail(why, n, "copy-up: readlink", s);
			else {
				link_to[len] = 0;
				if (symlink(link_to, t) < 0)
					rc = fail(why, n, "copy-up: symlink", t);
			}
		} else if (mknod(t, st.st_mode, st.st_rdev) < 0) {
			rc = fail(why, n, "copy-up: mknod", t);
		}
		if (rc == 0) {
			copy_xattrs(s, t);
			copy_meta(t, &st, S_ISLNK(st.st_mode));
			if (!S_ISDIR(st.st_mode) && st.st_nlink > 1)
				remember(&st, t);
		}
	}
	closedir(d);
	return rc;
}

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return 0;
	struct dirent *e;
	int empty = 1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

/* The image's files at `at` (a directory of the new root) into the empty volume at STAGE. */
static int populate(const char *at, char *why, size_t n)
{
	struct stat st;
	if (stat(at, &st) < 0 || !S_ISDIR(st.st_mode) || !dir_is_empty(STAGE))
		return 0;
	errno = 0;
	int rc = copy_tree(at, STAGE, why, n);
	for (size_t i = 0; i < n_seen; i++)
		free(seen[i].path);
	n_seen = 0;
	if (rc == 0) {
		copy_meta(STAGE, &st, 0);
		sync();
	}
	return rc;
}

static unsigned long mount_flags(const char *flags)
{
	unsigned long f = 0;
	if (has_flag(flags, "ro"))
		f |= MS_RDONLY;
	if (has_flag(flags, "nosuid"))
		f |= MS_NOSUID;
	if (has_flag(flags, "nodev"))
		f |= MS_NODEV;
	if (has_flag(flags, "noexec"))
		f |= MS_NOEXEC;
	return f;
}

static int mount_one(const char *root, const char *type, const char *source, const char *target,
		     const char *data, const char *flags, char *why, size_t n)
{
	char at[PATH_MAX];
	int file = !strcmp(type, "9pfile");
	errno = 0;
	if (target[0] != '/' || resolve_in_root(root, target, file, at, sizeof at) < 0)
		return fail(why, n, "mount point", target);
	unsigned long mflags = mount_flags(flags);
	const void *opts = data && *data ? data : NULL;
	if (!strcmp(type, "ext4")) {
		char dev[PATH_MAX];
		if (find_disk(root, source, dev, sizeof dev) < 0)
			return fail(why, n, "no disk with serial", source);
		if (has_flag(flags, "populate") && !(mflags & MS_RDONLY)) {
			mkdir(STAGE, 0755);
			if (mount(dev, STAGE, "ext4", mflags, opts) < 0)
				return fail(why, n, "ext4 volume on", target);
			if (populate(at, why, n) < 0) {
				umount2(STAGE, MNT_DETACH);
				return -1;
			}
			if (mount(STAGE, at, NULL, MS_MOVE, NULL) < 0)
				return fail(why, n, "move the volume to", target);
		} else if (mount(dev, at, "ext4", mflags, opts) < 0) {
			return fail(why, n, "ext4 volume on", target);
		}
		if (n_ext4 < (int)(sizeof ext4_targets / sizeof ext4_targets[0]))
			ext4_targets[n_ext4++] = strdup(target);
		return 0;
	}
	if (file) {
		/* A single file: its directory's share is mounted in the initramfs
		 * (out of the workload's reach after switch_root) and the file is
		 * bind-mounted over the target. source is "TAG/NAME". */
		static int n_files;
		char tag[64], stage[64], from[PATH_MAX];
		const char *slash = strchr(source, '/');
		if (!slash || slash == source || (size_t)(slash - source) >= sizeof tag || !slash[1]) {
			errno = EINVAL;
			return fail(why, n, "file share", source);
		}
		memcpy(tag, source, (size_t)(slash - source));
		tag[slash - source] = 0;
		snprintf(stage, sizeof stage, "/mnt/file%d", n_files++);
		snprintf(from, sizeof from, "%s/%s", stage, slash + 1);
		mkdir(stage, 0700);
		if (mount(tag, stage, "9p", mflags, opts) < 0)
			return fail(why, n, "9p share for", target);
		if (mount(from, at, NULL, MS_BIND, NULL) < 0)
			return fail(why, n, "bind the file onto", target);
		if ((mflags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)) &&
		    mount(NULL, at, NULL, MS_REMOUNT | MS_BIND | mflags, NULL) < 0)
			return fail(why, n, "read-only bind of", target);
		return 0;
	}
	if (!strcmp(type, "9p") || !strcmp(type, "tmpfs")) {
		if (mount(source, at, type, mflags, opts) < 0)
			return fail(why, n, type, target);
		return 0;
	}
	errno = EINVAL;
	return fail(why, n, "unknown type for", target);
}

int mounts_apply(const struct boot_config *cfg, const char *root, char *why, size_t n)
{
	size_t count = cfg->mount_type.n;
	if (cfg->mount_source.n != count || cfg->mount_target.n != count ||
	    cfg->mount_data.n != count || cfg->mount_flags.n != count) {
		snprintf(why, n, "mount: the boot configuration's mount lists differ in length");
		return -1;
	}
	for (size_t i = 0; i < count; i++)
		if (mount_one(root, cfg->mount_type.v[i], cfg->mount_source.v[i], cfg->mount_target.v[i],
			      cfg->mount_data.v[i], cfg->mount_flags.v[i], why, n) < 0)
			return -1;
	return 0;
}

void mounts_quiesce(void)
{
	for (int i = n_ext4 - 1; i >= 0; i--)
		mount(NULL, ext4_targets[i], NULL, MS_REMOUNT | MS_RDONLY, NULL);
}
