/* driver.c - a plain-C fuzz driver for CI (no libFuzzer needed): runs the
 * fuzz target over built-in seeds, the seed files given on the command
 * line (files or directories), then random and mutated inputs, under
 * whatever sanitizers it was built with (make fuzz-smoke: ASan + UBSan).
 *
 *   fuzz-smoke [-n ITERATIONS] [-t SECONDS] [-s SEED] [-w DIR] [CORPUS...]
 *     -w DIR   write the built-in seeds to DIR (a libFuzzer corpus) and exit */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "buf.h"
#include "fields.h"
#include "frame.h"
#include "tar.h"
#include "target.h"

#define FUZZ_INPUT_MAX (3 * 65536)
#define MAX_SEEDS 256

struct input {
	uint8_t *p;
	size_t n;
};

static struct input seeds[MAX_SEEDS];
static int nseeds;

static void add_seed(const void *p, size_t n)
{
	if (nseeds == MAX_SEEDS || n > FUZZ_INPUT_MAX)
		return;
	seeds[nseeds].p = malloc(n ? n : 1);
	memcpy(seeds[nseeds].p, p, n);
	seeds[nseeds].n = n;
	nseeds++;
}

static void put_frame(struct buf *b, uint8_t type, uint32_t ch, const struct buf *payload)
{
	uint8_t h[FRAME_HDR];
	frame_hdr_put(h, type, 0, ch, (uint32_t)payload->len);
	buf_append(b, h, sizeof h);
	buf_append(b, buf_head(payload), payload->len);
}

/* Valid conversations and configurations, the starting points of mutation. */
static void builtin_seeds(void)
{
	struct buf s = { 0 }, p = { 0 };
	/* SYNC, HELLO, EXEC with every field, STDIN, RESIZE, WINDOW, PS, PING. */
	buf_append(&s, SYNC_MARKER, SYNC_LEN);
	fl_put_u16(&p, 1, 1); fl_put_u16(&p, 2, 1);
	put_frame(&s, T_HELLO, 0, &p); buf_clear(&p);
	fl_put_str(&p, 1, "sh"); fl_put_str(&p, 1, "-c"); fl_put_str(&p, 1, "echo hi");
	fl_put_str(&p, 2, "PATH=/bin"); fl_put_str(&p, 3, "/tmp"); fl_put_str(&p, 4, "app:wheel");
	fl_put(&p, 5, "", 0); fl_put_u16(&p, 6, 24); fl_put_u16(&p, 7, 80);
	fl_put(&p, 8, "", 0); fl_put(&p, 9, "", 0); fl_put_str(&p, 77, "unknown tag");
	put_frame(&s, T_EXEC, 1, &p); buf_clear(&p);
	buf_append(&p, "input\n", 6); put_frame(&s, T_STDIN, 1, &p); buf_clear(&p);
	put_frame(&s, T_STDIN, 1, &p);
	buf_append(&p, "\x00\x30\x00\x64", 4); put_frame(&s, T_RESIZE, 1, &p); buf_clear(&p);
	buf_append(&p, "\x00\x01\x00\x00", 4); put_frame(&s, T_WINDOW, 1, &p); buf_clear(&p);
	buf_append(&p, "\x00\x00\x00\x0f", 4); put_frame(&s, T_SIGNAL, 1, &p); buf_clear(&p);
	put_frame(&s, T_PS, 2, &p);
	put_frame(&s, T_STATS, 3, &p);
	fl_put_u32(&p, 1, 15); fl_put_u32(&p, 2, 5000);
	put_frame(&s, T_SHUTDOWN, 4, &p); buf_clear(&p);
	buf_append(&p, "ping", 4); put_frame(&s, T_PING, 5, &p); buf_clear(&p);
	fl_put_str(&p, 1, "/etc/hosts"); put_frame(&s, T_STAT, 6, &p);
	put_frame(&s, T_COPY_OUT, 7, &p); buf_clear(&p);
	fl_put_str(&p, 1, "/tmp"); put_frame(&s, T_COPY_IN, 8, &p); buf_clear(&p);
	add_seed(buf_head(&s), s.len);
	/* A stale partial frame, then a new connection's SYNC + HELLO. */
	struct buf t = { 0 };
	buf_append(&t, buf_head(&s) + 20, 30);
	buf_append(&t, buf_head(&s), 40);
	add_seed(buf_head(&t), t.len);
	buf_free(&t);
	/* A boot configuration. */
	buf_clear(&s);
	fl_put_str(&s, 1, "nginx"); fl_put_str(&s, 1, "-g"); fl_put_str(&s, 1, "daemon off;");
	fl_put_str(&s, 2, "A=1"); fl_put_str(&s, 3, "/srv"); fl_put_str(&s, 4, "1000:1000");
	fl_put_str(&s, 5, "vm1"); fl_put_u32(&s, 6, 3); fl_put_str(&s, 7, "/dev/vda");
	fl_put_str(&s, 8, "/dev/vdb"); fl_put_str(&s, 9, "127.0.0.1 localhost\n");
	fl_put_str(&s, 10, "nameserver 1.1.1.1\n"); fl_put_str(&s, 11, "abc");
	fl_put_u32(&s, 12, 3000); fl_put_u32(&s, 13, 64);
	fl_put_str(&s, 25, "02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1 1500");
	fl_put_str(&s, 25, "02:00:00:00:00:01 10.89.0.5/16 - 9000");
	add_seed(buf_head(&s), s.len);
	static const char nic[] = "02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1 1500";
	add_seed(nic, sizeof nic - 1);
	/* Log text: short lines, CRLF, an empty line, no final LF. */
	static const char text[] = "hello\nworld\r\n\n\r\rx\r\nlast line without LF";
	add_seed(text, sizeof text - 1);
	/* A maximal frame and one just past the limit. */
	buf_clear(&s);
	buf_clear(&p);
	uint8_t *big = buf_reserve(&p, MAX_PAYLOAD);
	memset(big, 'A', MAX_PAYLOAD);
	buf_commit(&p, MAX_PAYLOAD);
	put_frame(&s, T_STDIN, 9, &p);
	add_seed(buf_head(&s), s.len);
	uint8_t over[FRAME_HDR];
	frame_hdr_put(over, T_STDIN, 0, 9, MAX_PAYLOAD + 1);
	add_seed(over, sizeof over);
	/* A tar as COPY_OUT writes it: a directory, a file with data, a long
	 * name, a symlink, large ids and an old mtime (PAX records), the end. */
	buf_clear(&s);
	char longname[300];
	memset(longname, 'n', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	memcpy(longname, "dir/", 4);
	struct tar_entry te[] = {
		{ .name = "dir/", .linkname = "", .type = TAR_DIR, .mode = 0755, .mtime = 1700000000 },
		{ .name = "dir/file", .linkname = "", .type = TAR_REG, .mode = 04755, .size = 700,
		  .uid = 1000, .gid = 1000, .mtime = 1700000000 },
		{ .name = longname, .linkname = "", .type = TAR_REG, .mode = 0644, .size = 3,
		  .uid = 5000000000ull, .gid = 3000000, .mtime = -86400 },
		{ .name = "dir/link", .linkname = "../some/target", .type = TAR_SYM, .mode = 0777 },
		{ .name = "dir/hard", .linkname = "dir/file", .type = TAR_LINK, .mode = 0644 },
	};
	for (size_t k = 0; k < sizeof te / sizeof te[0]; k++) {
		tar_put_header(&s, &te[k]);
		uint8_t *d = buf_reserve(&s, te[k].size + tar_padding(te[k].size));
		memset(d, 'd', te[k].size);
		memset(d + te[k].size, 0, tar_padding(te[k].size));
		buf_commit(&s, te[k].size + tar_padding(te[k].size));
	}
	tar_put_end(&s);
	add_seed(buf_head(&s), s.len);
	buf_free(&s);
	buf_free(&p);
}

static void load_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return;
	static uint8_t data[FUZZ_INPUT_MAX];
	size_t n = fread(data, 1, sizeof data, f);
	fclose(f);
	add_seed(data, n);
}

static void load_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return;
	if (!S_ISDIR(st.st_mode)) {
		load_file(path);
		return;
	}
	DIR *d = opendir(path);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char full[4096];
		snprintf(full, sizeof full, "%s/%s", path, e->d_name);
		load_file(full);
	}
	if (d)
		closedir(d);
}

static uint64_t rng_state;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return n ? (uint32_t)(rng_state % n) : 0;
}

static const uint32_t interesting[] = { 0, 1, 4, 5, 12, 0xFF, 65535, 65536, 65537, 0x7FFFFFFF, 0xFFFFFFFF };

/* One mutation step on buf (length *n, capacity FUZZ_INPUT_MAX). */
static void mutate_once(uint8_t *b, size_t *n)
{
	size_t len = *n;
	switch (rnd(9)) {
	case 0:   /* flip a bit */
		if (len)
			b[rnd((uint32_t)len)] ^= (uint8_t)(1u << rnd(8));
		break;
	case 1:   /* set a byte */
		if (len)
			b[rnd((uint32_t)len)] = (uint8_t)rnd(256);
		break;
	case 2:   /* an interesting big-endian u32 (lengths!) */
		if (len >= 4) {
			size_t at = rnd((uint32_t)(len - 3));
			put_be32(b + at, interesting[rnd(sizeof interesting / sizeof interesting[0])]);
		}
		break;
	case 3: { /* delete a range */
		if (!len)
			break;
		size_t at = rnd((uint32_t)len), k = 1 + rnd((uint32_t)(len - at));
		memmove(b + at, b + at + k, len - at - k);
		*n = len - k;
		break;
	}
	case 4: { /* duplicate a range */
		if (!len)
			break;
		size_t at = rnd((uint32_t)len), k = 1 + rnd((uint32_t)(len - at));
		if (len + k > FUZZ_INPUT_MAX)
			break;
		memmove(b + at + k, b + at, len - at);
		*n = len + k;
		break;
	}
	case 5: { /* insert a SYNC marker */
		if (len + SYNC_LEN > FUZZ_INPUT_MAX)
			break;
		size_t at = rnd((uint32_t)len + 1);
		memmove(b + at + SYNC_LEN, b + at, len - at);
		memcpy(b + at, SYNC_MARKER, SYNC_LEN);
		*n = len + SYNC_LEN;
		break;
	}
	case 6: { /* splice in part of another seed */
		const struct input *o = &seeds[rnd((uint32_t)nseeds)];
		if (!o->n)
			break;
		size_t from = rnd((uint32_t)o->n), k = 1 + rnd((uint32_t)(o->n - from));
		size_t at = rnd((uint32_t)len + 1);
		if (len + k > FUZZ_INPUT_MAX)
			break;
		memmove(b + at + k, b + at, len - at);
		memcpy(b + at, o->p + from, k);
		*n = len + k;
		break;
	}
	case 7:   /* truncate */
		if (len)
			*n = rnd((uint32_t)len);
		break;
	default:  /* sprinkle LF / CR / 0xFF */
		if (len)
			b[rnd((uint32_t)len)] = "\n\r\xff\0"[rnd(4)];
		break;
	}
}

static int write_seeds(const char *dir)
{
	mkdir(dir, 0755);
	for (int i = 0; i < nseeds; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/seed-%02d", dir, i);
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(seeds[i].p, 1, seeds[i].n, f) != seeds[i].n) {
			perror(path);
			return 1;
		}
		fclose(f);
	}
	printf("wrote %d seeds to %s\n", nseeds, dir);
	return 0;
}

int main(int argc, char **argv)
{
	long iters = 100000, seconds = 25;
	uint64_t seed = (uint64_t)time(NULL);
	const char *write_dir = NULL;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			iters = atol(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			seconds = atol(argv[++i]);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			seed = strtoull(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "-w") && i + 1 < argc)
			write_dir = argv[++i];
		else {
			fprintf(stderr, "usage: %s [-n N] [-t SECONDS] [-s SEED] [-w DIR] [CORPUS...]\n", argv[0]);
			return 2;
		}
	}
	builtin_seeds();
	if (write_dir)
		return write_seeds(write_dir);
	for (; i < argc; i++)
		load_path(argv[i]);
	for (int k = 0; k < nseeds; k++)
		fuzz_one(seeds[k].p, seeds[k].n);

	rng_state = seed ? seed : 1;
	printf("fuzz-smoke: %d seeds ok; mutating with seed %llu\n", nseeds, (unsigned long long)seed);
	static uint8_t b[FUZZ_INPUT_MAX];
	time_t end = time(NULL) + seconds;
	long done = 0;
	for (; done < iters; done++) {
		if ((done & 255) == 0 && time(NULL) >= end)
			break;
		size_t n;
		if (rnd(8) == 0) {   /* pure random bytes */
			n = rnd(512);
			for (size_t k = 0; k < n; k++)
				b[k] = (uint8_t)rnd(256);
		} else {
			const struct input *s = &seeds[rnd((uint32_t)nseeds)];
			memcpy(b, s->p, s->n);
			n = s->n;
			for (uint32_t m = 1 + rnd(8); m > 0; m--)
				mutate_once(b, &n);
		}
		fuzz_one(b, n);
	}
	printf("fuzz-smoke: %ld inputs ok\n", done);
	return 0;
}
