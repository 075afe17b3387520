#include "sysfile.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

ssize_t read_small(const char *path, char *dst, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t n = read(fd, dst + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	dst[len] = 0;
	return (ssize_t)len;
}

ssize_t read_line(const char *path, char *dst, size_t cap)
{
	if (read_small(path, dst, cap) <= 0)
		return -1;
	dst[strcspn(dst, "\n")] = 0;
	return (ssize_t)strlen(dst);
}
