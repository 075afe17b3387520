/* modparam.h - a module's parameters from the kernel command line, the way
 * modprobe finds them.
 *
 * When a driver is a module instead of built in, the kernel does not hand it
 * the "module.param=value" tokens of its command line; modprobe does, and
 * kestrel loads modules itself (there is no modprobe in the guest).  Each
 * token whose part before the first '.' names the module ('-' and '_' are
 * the same in module names) becomes "param=value" (or "param") in the
 * string passed to finit_module.  Tokens are separated by blanks outside
 * double quotes; quotes are dropped and a value holding blanks is quoted
 * again; "--" ends the kernel's part of the command line.  Pure (no I/O) so
 * the fuzz harness can check it. */
#ifndef KESTREL_MODPARAM_H
#define KESTREL_MODPARAM_H

#include <stddef.h>

/* Write module's parameters found in cmdline (len bytes, NUL not needed)
 * to out (size outsz > 0, always NUL-terminated), separated by one space.
 * Returns their length, or -1 when they do not fit: out then holds the
 * whole parameters that did. */
int modparam_from_cmdline(const char *cmdline, size_t len, const char *module,
			  char *out, size_t outsz);

/* The module name of a file name such as "07-virtio_mmio.ko": without the
 * leading "NN-" and the ".ko", into out (size outsz > 0).  0, or -1 when the
 * name is not of that form or does not fit. */
int modparam_name_of(const char *file, char *out, size_t outsz);

#endif
