/* procinfo.c - process list and machine statistics from /proc (procinfo.h). */
#include "procinfo.h"
#include "sysfile.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PF_KTHREAD 0x00200000ul

struct pstat {
	char state;
	long ppid;
	unsigned long flags, utime, stime, rss;
	long threads;
	unsigned long long start;
	char comm[64];
};

/* /proc/PID/stat: "pid (comm) S ppid ...": comm may hold spaces and ')',
 * so the fields start after the last ')'. */
static int parse_stat(const char *s, struct pstat *ps)
{
	const char *l = strchr(s, '('), *r = strrchr(s, ')');
	if (!l || !r || r < l || !r[1])
		return -1;
	size_t n = (size_t)(r - l - 1);
	if (n >= sizeof ps->comm)
		n = sizeof ps->comm - 1;
	memcpy(ps->comm, l + 1, n);
	ps->comm[n] = 0;
	/* Fields 3.. of proc(5). */
	unsigned long skip;
	long lskip;
	int got = sscanf(r + 2,
		"%c %ld %ld %ld %ld %ld %lu %lu %lu %lu %lu %lu %lu %ld %ld %ld %ld %ld %ld %llu %lu %lu",
		&ps->state, &ps->ppid, &lskip, &lskip, &lskip, &lskip, &ps->flags,
		&skip, &skip, &skip, &skip, &ps->utime, &ps->stime,
		&lskip, &lskip, &lskip, &lskip, &ps->threads, &lskip, &ps->start, &skip, &ps->rss);
	return got == 22 ? 0 : -1;
}

static long status_uid(long pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if (read_small(path, buf, sizeof buf) < 0)
		return -1;
	const char *u = strstr(buf, "\nUid:");
	return u ? strtol(u + 5, NULL, 10) : -1;
}

/* PS text: TABs separate fields, so control characters become '?'. */
static void put_clean(struct buf *out, const char *s, size_t n, int nul_as_space)
{
	uint8_t *d = buf_reserve(out, n);
	if (!d)
		return;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 && nul_as_space)
			c = ' ';
		else if (c < 0x20 || c == 0x7f)
			c = '?';
		d[i] = c;
	}
	buf_commit(out, n);
}

static int is_pid(const char *s)
{
	for (const char *p = s; *p; p++)
		if (!isdigit((unsigned char)*p))
			return 0;
	return *s != 0;
}

static int read_pstat(long pid, struct pstat *ps)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if (read_small(path, buf, sizeof buf) < 0 || parse_stat(buf, ps) < 0)
		return -1;
	return (ps->flags & PF_KTHREAD) ? -1 : 0;
}

int ps_text(struct buf *out)
{
	DIR *d = opendir("/proc");
	if (!d)
		return -1;
	long page_kb = sysconf(_SC_PAGESIZE) / 1024;
	struct dirent *e;
	while ((e = readdir(d))) {
		struct pstat ps;
		if (!is_pid(e->d_name))
			continue;
		long pid = strtol(e->d_name, NULL, 10);
		if (read_pstat(pid, &ps) < 0)
			continue;
		char line[256], path[64], cmd[PS_CMDLINE_MAX + 1];
		int n = snprintf(line, sizeof line, "%ld\t%ld\t%ld\t%c\t%lu\t%lu\t%llu\t%ld\t",
				 pid, ps.ppid, status_uid(pid), ps.state,
				 ps.rss * (unsigned long)page_kb, ps.utime + ps.stime,
				 ps.start, ps.threads);
		buf_append(out, line, (size_t)n);
		put_clean(out, ps.comm, strlen(ps.comm), 0);
		buf_append(out, "\t", 1);
		snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
		ssize_t cl = read_small(path, cmd, sizeof cmd);
		while (cl > 0 && cmd[cl - 1] == 0)   /* the trailing NUL is no separator */
			cl--;
		if (cl > 0)
			put_clean(out, cmd, (size_t)cl, 1);
		buf_append(out, "\n", 1);
	}
	closedir(d);
	return 0;
}

static unsigned long long meminfo(const char *text, const char *key)
{
	const char *p = strstr(text, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static int count_procs(void)
{
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	struct pstat ps;
	while ((e = readdir(d)))
		if (is_pid(e->d_name) && read_pstat(strtol(e->d_name, NULL, 10), &ps) == 0)
			n++;
	closedir(d);
	return n;
}

/* Whole virtio disks only (vda, vdb, ...), so partitions do not count twice. */
static void disk_bytes(unsigned long long *rd, unsigned long long *wr)
{
	static char buf[16384];
	*rd = *wr = 0;
	if (read_small("/proc/diskstats", buf, sizeof buf) < 0)
		return;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char name[32];
		unsigned long long f[7];
		if (sscanf(line, " %*u %*u %31s %llu %llu %llu %llu %llu %llu %llu",
			   name, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]) != 8)
			continue;
		size_t n = strlen(name);
		if (strncmp(name, "vd", 2) || isdigit((unsigned char)name[n - 1]))
			continue;
		*rd += f[2] * 512;
		*wr += f[6] * 512;
	}
}

static void net_bytes(unsigned long long *rx, unsigned long long *tx)
{
	static char buf[16384];
	*rx = *tx = 0;
	if (read_small("/proc/net/dev", buf, sizeof buf) < 0)
		return;
	for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
		char *colon = strchr(line, ':');
		if (!colon)
			continue;   /* the two header lines */
		*colon = 0;
		while (*line == ' ')
			line++;
		if (!strcmp(line, "lo"))
			continue;
		unsigned long long r, t;
		if (sscanf(colon + 1, "%llu %*u %*u %*u %*u %*u %*u %*u %llu", &r, &t) == 2) {
			*rx += r;
			*tx += t;
		}
	}
}

int stats_text(struct buf *out)
{
	char mem[4096], stat[1024];
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	if (read_small("/proc/meminfo", mem, sizeof mem) < 0)
		mem[0] = 0;
	unsigned long long u = 0, ni = 0, sy = 0, id = 0, io = 0, irq = 0, sirq = 0;
	if (read_small("/proc/stat", stat, sizeof stat) >= 0)
		sscanf(stat, "cpu %llu %llu %llu %llu %llu %llu %llu", &u, &ni, &sy, &id, &io, &irq, &sirq);
	unsigned long long drd, dwr, rx, tx;
	disk_bytes(&drd, &dwr);
	net_bytes(&rx, &tx);
	char text[1024];
	int n = snprintf(text, sizeof text,
		"uptime_ms %llu\nmem_total_kb %llu\nmem_available_kb %llu\n"
		"cpu_user %llu\ncpu_system %llu\ncpu_idle %llu\nticks_per_sec %ld\n"
		"procs %d\ndisk_read_bytes %llu\ndisk_write_bytes %llu\n"
		"net_rx_bytes %llu\nnet_tx_bytes %llu\n",
		(unsigned long long)ts.tv_sec * 1000 + (unsigned long long)ts.tv_nsec / 1000000,
		meminfo(mem, "MemTotal:"), meminfo(mem, "MemAvailable:"),
		u + ni, sy + irq + sirq, id + io, sysconf(_SC_CLK_TCK),
		count_procs(), drd, dwr, rx, tx);
	return buf_append(out, text, (size_t)n);
}
