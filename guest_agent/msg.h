/* msg.h - the structured payloads the host sends, decoded into C structs:
 * the boot configuration (/hypr/config), HELLO, EXEC, SHUTDOWN and the one
 * path of STAT, COPY_OUT and COPY_IN.
 *
 * Decoding is driven by a small table per message (tag -> type -> struct
 * member), so every message gets the same checks: the list is well formed,
 * u16/u32 values have exactly their size, str values hold no NUL, unknown
 * tags are skipped.  Strings are copied (NUL-terminated), so a decoded
 * message outlives the frame buffer. */
#ifndef KESTREL_MSG_H
#define KESTREL_MSG_H

#include <stddef.h>
#include <stdint.h>

/* A NULL-terminated string vector (argv, env). */
struct strv {
	char **v;
	uint32_t n;
};

struct boot_config {
	struct strv argv;         /* 1; empty: no workload */
	struct strv env;          /* 2 */
	char *workdir;            /* 3 */
	char *user;               /* 4 */
	char *hostname;           /* 5 */
	uint32_t stop_signal;     /* 6; 0 when absent */
	char *root_device;        /* 7 */
	char *upper_device;       /* 8 */
	char *hosts;              /* 9 */
	char *resolv;             /* 10 */
	char *vm_id;              /* 11 */
	uint32_t attach_wait_ms;  /* 12 */
	uint32_t tmpfs_size_mb;   /* 13 */
	int has_attach_wait;
	struct strv health_argv;  /* 14; empty: no health check */
	uint32_t health_interval_ms;      /* 15; 0: the default (30 s) */
	uint32_t health_timeout_ms;       /* 16; 0: the default (30 s) */
	uint32_t health_retries;          /* 17; 0: the default (3) */
	uint32_t health_start_period_ms;  /* 18 */
	/* 19-23: mounts, parallel lists, one entry per mount (mounts.c) */
	struct strv mount_type;           /* 19: ext4 | 9p | tmpfs */
	struct strv mount_source;         /* 20: virtio-blk serial, 9p tag, "tmpfs" */
	struct strv mount_target;         /* 21 */
	struct strv mount_data;           /* 22: file system options */
	struct strv mount_flags;          /* 23: ro,nosuid,nodev,noexec,populate */
	struct strv nics;         /* 25; "MAC ADDR/PREFIX GATEWAY MTU" each (netcfg.h) */
};

struct hello_req {
	uint16_t min_version;
	uint16_t max_version;
	int has_min, has_max;
};

struct exec_req {
	struct strv argv;   /* 1 */
	struct strv env;    /* 2 */
	char *workdir;      /* 3 */
	char *user;         /* 4 */
	int tty;            /* 5 */
	uint16_t rows;      /* 6 */
	uint16_t cols;      /* 7 */
	int with_stdin;     /* 8 */
	int main;           /* 9 */
	int has_env;
};

/* STAT, COPY_OUT, COPY_IN: one path. */
struct path_req {
	char *path;         /* 1 (required, not empty) */
};

struct shutdown_req {
	uint32_t signal;    /* 1 */
	uint32_t grace_ms;  /* 2 */
	int has_signal, has_grace;
};

/* Each returns 0, or -1 with *why set to a static message; on -1 nothing
 * needs freeing. */
int msg_parse_config(const uint8_t *p, size_t n, struct boot_config *c, const char **why);
int msg_parse_hello(const uint8_t *p, size_t n, struct hello_req *h, const char **why);
int msg_parse_exec(const uint8_t *p, size_t n, struct exec_req *e, const char **why);
int msg_parse_shutdown(const uint8_t *p, size_t n, struct shutdown_req *s, const char **why);
int msg_parse_path(const uint8_t *p, size_t n, struct path_req *r, const char **why);

void msg_free_config(struct boot_config *c);
void msg_free_exec(struct exec_req *e);
void msg_free_path(struct path_req *r);

#endif
