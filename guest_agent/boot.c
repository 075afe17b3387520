/* boot.c - mounts, configuration and switch_root (see boot.h). */
#define _GNU_SOURCE
#include "boot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "modparam.h"
#include "mounts.h"
#include "sysfile.h"

#define NEWROOT "/mnt/root"

/* The ext4 writable layer's mount, kept open: after switch_root its path is
 * out of reach, but /proc/self/fd/N still names it for the final remount. */
static int upper_fd = -1;

__attribute__((format(printf, 3, 4)))
static int failf(char *why, size_t n, const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	va_start(ap, fmt);
	int len = vsnprintf(why, n, fmt, ap);
	va_end(ap);
	if (e && len >= 0 && (size_t)len < n)
		snprintf(why + len, n - (size_t)len, ": %s", strerror(e));
	return -1;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int do_mount(const char *src, const char *dst, const char *type,
		    unsigned long flags, const char *data, char *why, size_t n)
{
	mkdir(dst, 0755);
	if (mount(src, dst, type, flags, data) == 0)
		return 0;
	return failf(why, n, "mount %s (%s) on %s", src, type, dst);
}

int boot_early(char *why, size_t n)
{
	mkdir("/dev", 0755);
	/* EBUSY: the kernel mounted it already (CONFIG_DEVTMPFS_MOUNT). */
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 && errno != EBUSY)
		return failf(why, n, "mount devtmpfs on /dev");
	/* Without an initial console fds 0-2 are closed and the first files
	 * kestrel opens would become some child's stdio. */
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int c = open("/dev/console", O_RDWR | O_NOCTTY);
		if (c < 0)
			c = open("/dev/null", O_RDWR);
		if (c >= 0 && c != fd) {
			dup2(c, fd);
			close(c);
		}
	}
	if (do_mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, why, n) < 0 ||
	    do_mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL, why, n) < 0)
		return -1;
	return 0;
}

static char mod_failed[512];

const char *boot_module_failures(void)
{
	return mod_failed;
}

static void module_failed(const char *name, const char *reason)
{
	size_t len = strlen(mod_failed);
	dprintf(2, "kestrel: module %s: %s\n", name, reason);
	snprintf(mod_failed + len, sizeof mod_failed - len, "%s%s (%s)",
		 len ? ", " : "; modules that failed to load: ", name, reason);
}

void boot_load_modules(void)
{
	static char order[8192], cmdline[4096], params[4096];
	if (read_small(MODULES_ORDER, order, sizeof order) < 0)
		return;
	ssize_t clen = read_small("/proc/cmdline", cmdline, sizeof cmdline);
	if (clen < 0)
		clen = 0;
	for (char *line = order, *next; *line; line = next) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = 0;
		char name[64], path[128];
		if (!*line)
			continue;
		if (modparam_name_of(line, name, sizeof name) < 0) {
			module_failed(line, "not NN-name.ko");
			continue;
		}
		if (modparam_from_cmdline(cmdline, (size_t)clen, name, params, sizeof params) < 0)
			module_failed(name, "parameters too long, some left out");
		snprintf(path, sizeof path, MODULES_DIR "/%.100s", line);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			module_failed(name, strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, params, 0) < 0 && errno != EEXIST)
			module_failed(name, strerror(errno));
		close(fd);
	}
}

int boot_load_config(struct boot_config *cfg, char *why, size_t n)
{
	int fd = open(CONFIG_PATH, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return failf(why, n, "no boot configuration: %s", CONFIG_PATH);
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size > (off_t)CONFIG_MAX) {
		close(fd);
		errno = 0;
		return failf(why, n, "%s is larger than %u bytes", CONFIG_PATH, CONFIG_MAX);
	}
	uint8_t *data = malloc((size_t)st.st_size + 1);
	size_t len = 0;
	while (data && len < (size_t)st.st_size) {
		ssize_t r = read(fd, data + len, (size_t)st.st_size - len);
		if (r <= 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	const char *bad = "short read";
	int rc = data && len == (size_t)st.st_size ? msg_parse_config(data, len, cfg, &bad) : -1;
	free(data);
	if (rc < 0) {
		errno = 0;
		return failf(why, n, "invalid %s: %s", CONFIG_PATH, bad);
	}
	return 0;
}

/* virtio devices normally exist before /init runs; wait a little in case. */
static int wait_for_device(const char *dev, char *why, size_t n)
{
	struct stat st;
	for (int i = 0; i < 300; i++) {
		if (stat(dev, &st) == 0)
			return 0;
		sleep_ms(10);
	}
	failf(why, n, "block device %s", dev);
	size_t used = strlen(why);
	snprintf(why + used, n - used, "%s", mod_failed);
	return -1;
}

/* Write a whole file in the new root, replacing what the image had there
 * (a symlink included, as Docker's bind mounts do). */
static int put_file(const char *rel, const char *text, char *why, size_t n)
{
	char path[256];
	snprintf(path, sizeof path, NEWROOT "/%s", rel);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return failf(why, n, "create %s", path);
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w <= 0) {
			close(fd);
			return failf(why, n, "write %s", path);
		}
		off += (size_t)w;
	}
	close(fd);
	return 0;
}

static int move_into(const char *from, const char *to, char *why, size_t n)
{
	mkdir(to, 0755);
	if (mount(from, to, NULL, MS_MOVE, NULL) == 0)
		return 0;
	return failf(why, n, "move mount %s to %s", from, to);
}

static int mount_upper(const struct boot_config *cfg, char *why, size_t n)
{
	if (cfg->upper_device) {
		if (wait_for_device(cfg->upper_device, why, n) < 0 ||
		    do_mount(cfg->upper_device, "/mnt/upper", "ext4", MS_NOATIME, NULL, why, n) < 0)
			return -1;
		upper_fd = open("/mnt/upper", O_PATH | O_DIRECTORY | O_CLOEXEC);
	} else {
		char opts[64] = "mode=0755";
		if (cfg->tmpfs_size_mb)
			snprintf(opts, sizeof opts, "mode=0755,size=%um", cfg->tmpfs_size_mb);
		if (do_mount("tmpfs", "/mnt/upper", "tmpfs", 0, opts, why, n) < 0)
			return -1;
	}
	if ((mkdir("/mnt/upper/upper", 0755) < 0 && errno != EEXIST) ||
	    (mkdir("/mnt/upper/work", 0755) < 0 && errno != EEXIST))
		return failf(why, n, "mkdir in the writable layer");
	return 0;
}

/* /dev inside the new root: devpts with its own ptmx, /dev/shm and the
 * /proc/self/fd links programs expect. */
static int populate_dev(char *why, size_t n)
{
	if (do_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
		     "newinstance,ptmxmode=0666,mode=0620,gid=5", why, n) < 0)
		return -1;
	unlink(NEWROOT "/dev/ptmx");
	if (symlink("pts/ptmx", NEWROOT "/dev/ptmx") < 0)
		return failf(why, n, "symlink /dev/ptmx");
	if (do_mount("shm", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777", why, n) < 0)
		return -1;
	static const char *const links[][2] = {
		{ "/proc/self/fd", NEWROOT "/dev/fd" },
		{ "/proc/self/fd/0", NEWROOT "/dev/stdin" },
		{ "/proc/self/fd/1", NEWROOT "/dev/stdout" },
		{ "/proc/self/fd/2", NEWROOT "/dev/stderr" },
	};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
		symlink(links[i][0], links[i][1]);   /* EEXIST is fine */
	return 0;
}

static int write_identity(const struct boot_config *cfg, char *why, size_t n)
{
	mkdir(NEWROOT "/etc", 0755);
	if (cfg->hostname && *cfg->hostname) {
		if (sethostname(cfg->hostname, strlen(cfg->hostname)) < 0)
			return failf(why, n, "sethostname %s", cfg->hostname);
		char line[300];
		snprintf(line, sizeof line, "%s\n", cfg->hostname);
		if (put_file("etc/hostname", line, why, n) < 0)
			return -1;
	}
	if (cfg->hosts && put_file("etc/hosts", cfg->hosts, why, n) < 0)
		return -1;
	if (cfg->resolv && put_file("etc/resolv.conf", cfg->resolv, why, n) < 0)
		return -1;
	return 0;
}

int boot_mount_root(const struct boot_config *cfg, char *why, size_t n)
{
	if (!cfg->root_device) {
		errno = 0;
		return failf(why, n, "the boot configuration names no root_device");
	}
	mkdir("/mnt", 0755);
	if (wait_for_device(cfg->root_device, why, n) < 0 ||
	    do_mount(cfg->root_device, "/mnt/lower", "squashfs", MS_RDONLY, NULL, why, n) < 0 ||
	    mount_upper(cfg, why, n) < 0 ||
	    do_mount("overlay", NEWROOT, "overlay", 0,
		     "lowerdir=/mnt/lower,upperdir=/mnt/upper/upper,workdir=/mnt/upper/work", why, n) < 0)
		return -1;
	/* The initramfs's /dev, /proc and /sys move into the new root rather
	 * than being mounted a second time. */
	if (move_into("/dev", NEWROOT "/dev", why, n) < 0 ||
	    move_into("/proc", NEWROOT "/proc", why, n) < 0 ||
	    move_into("/sys", NEWROOT "/sys", why, n) < 0 ||
	    populate_dev(why, n) < 0 ||
	    do_mount("tmpfs", NEWROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755", why, n) < 0)
		return -1;
	if (write_identity(cfg, why, n) < 0)
		return -1;
	return mounts_apply(cfg, NEWROOT, why, n);   /* volumes, shares, tmpfs */
}

/* rm -rf of the initramfs, staying on its file system (mount points such as
 * /mnt/root are other devices and are left alone). */
static void delete_tree(int dirfd, dev_t rootdev)
{
	DIR *d = fdopendir(dirfd);
	if (!d) {
		close(dirfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != rootdev)
			continue;
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				delete_tree(sub, rootdev);
			unlinkat(dirfd, e->d_name, AT_REMOVEDIR);
		} else {
			unlinkat(dirfd, e->d_name, 0);
		}
	}
	closedir(d);
}

int boot_switch_root(char *why, size_t n)
{
	struct stat st;
	if (chdir(NEWROOT) < 0)
		return failf(why, n, "chdir " NEWROOT);
	int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (root >= 0 && fstat(root, &st) == 0)
		delete_tree(root, st.st_dev);
	else if (root >= 0)
		close(root);
	/* pivot_root does not work from an initramfs: move and chroot instead. */
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		return failf(why, n, "move " NEWROOT " onto /");
	if (chroot(".") < 0 || chdir("/") < 0)
		return failf(why, n, "chroot " NEWROOT);
	return 0;
}

void boot_quiesce(void)
{
	sync();
	mounts_quiesce();
	mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL);
	if (upper_fd >= 0) {
		char path[32];
		snprintf(path, sizeof path, "/proc/self/fd/%d", upper_fd);
		mount(NULL, path, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	}
}

void boot_loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
}

static int scan_ports(const char *const *names, char (*paths)[64], int count)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) > 40)
			continue;
		char path[128], name[128];
		snprintf(path, sizeof path, "/sys/class/virtio-ports/%.40s/name", e->d_name);
		if (read_line(path, name, sizeof name) < 0)
			continue;
		for (int i = 0; i < count; i++)
			if (!strcmp(name, names[i]))
				snprintf(paths[i], 64, "/dev/%.40s", e->d_name);
	}
	closedir(d);
	int found = 0;
	for (int i = 0; i < count; i++)
		found += paths[i][0] != 0;
	return found;
}

int boot_find_ports(const char *const *names, char (*paths)[64], int count, int wait_ms)
{
	for (int i = 0; i < count; i++)
		paths[i][0] = 0;
	int found = 0;
	for (int waited = 0; ; waited += 5) {
		found = scan_ports(names, paths, count);
		if (found == count || waited >= wait_ms)
			return found;
		sleep_ms(5);
	}
}
