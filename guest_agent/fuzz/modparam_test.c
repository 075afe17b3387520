/* modparam_test.c - cases for modparam.c: what modprobe would pass a module
 * from the kernel command line, and module names of initramfs file names.
 * Run by `make fuzz-smoke`; exits 1 on the first failure. */
#include <stdio.h>
#include <string.h>

#include "modparam.h"

static int failures;

/* want: the parameters; fits: 0 when outsz is too small for all of them. */
static void expect(const char *cmdline, const char *module, int fits, const char *want, size_t outsz)
{
	char out[256];
	int rc = fits ? (int)strlen(want) : -1;
	int got = modparam_from_cmdline(cmdline, strlen(cmdline), module, out, outsz);
	if (got != rc || strcmp(out, want) != 0) {
		fprintf(stderr, "modparam: [%s] %s (size %zu): got %d [%s], want %d [%s]\n",
			cmdline, module, outsz, got, out, rc, want);
		failures++;
	}
}

static void expect_name(const char *file, int rc, const char *want)
{
	char out[16] = "";
	int got = modparam_name_of(file, out, sizeof out);
	if (got != rc || (rc == 0 && strcmp(out, want) != 0)) {
		fprintf(stderr, "modparam: name of [%s]: got %d [%s], want %d [%s]\n",
			file, got, out, rc, want);
		failures++;
	}
}

int main(void)
{
	/* What QEMU's microvm puts on the command line with acpi=off. */
	const char *qemu = "console=ttyS0 reboot=t virtio_mmio.device=512@0xfeb00e00:12 "
			   "virtio_mmio.device=512@0xfeb00c00:11 rdinit=/init";
	expect(qemu, "virtio_mmio", 1, "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11", 256);
	expect(qemu, "virtio-mmio", 1, "device=512@0xfeb00e00:12 device=512@0xfeb00c00:11", 256);
	expect(qemu, "virtio", 1, "", 256);          /* a prefix of another module */
	expect(qemu, "console", 1, "", 256);         /* console=ttyS0 is no module parameter */
	expect("virtio-mmio.device=1 x.y=2", "virtio_mmio", 1, "device=1", 256);
	expect("9p.debug 9p.cache=loose", "9p", 1, "debug cache=loose", 256);
	expect("a.b=\"x y\" a.c=\"z\" \"a.d=1 2\"", "a", 1, "b=\"x y\" c=z d=\"1 2\"", 256);
	expect("a.=1 a. a.b c.a=1 a=1 a", "a", 1, "b", 256);
	expect("a.p.q=1", "a", 1, "p.q=1", 256);     /* dotted names, as the kernel allows */
	expect("a.b=1 -- a.c=2", "a", 1, "b=1", 256);   /* after --: init's arguments */
	expect("a.b=1\n", "a", 1, "b=1", 256);
	expect("", "a", 1, "", 256);
	/* Too small: what fits, and -1. */
	expect("a.long=123456 a.b=1", "a", 0, "b=1", 8);
	expect("a.b=1 a.c=2", "a", 0, "b=1", 5);
	expect_name("07-virtio_mmio.ko", 0, "virtio_mmio");
	expect_name("1-a.ko", 0, "a");
	expect_name("virtio.ko", -1, "");
	expect_name("07-.ko", -1, "");
	expect_name("07-virtio_mmio", -1, "");
	expect_name("07-a_name_too_long_for_it.ko", -1, "");
	if (failures)
		return 1;
	printf("modparam: all cases pass\n");
	return 0;
}
