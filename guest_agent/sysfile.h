/* Small files of /proc and /sys, read whole in one place. */
#ifndef KESTREL_SYSFILE_H
#define KESTREL_SYSFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Up to cap - 1 bytes of a small file, NUL-terminated; the length, or -1 if it cannot be opened. */
ssize_t read_small(const char *path, char *dst, size_t cap);

/* The file's first line without its newline (a sysfs attribute such as a serial or a port
 * name); the length, or -1 if it cannot be opened or is empty. */
ssize_t read_line(const char *path, char *dst, size_t cap);

#endif
