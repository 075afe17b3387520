/* boot.h - the boot sequence of PROTOCOL.md ("Boot configuration"): early
 * mounts, the configuration, the overlay root and everything inside it,
 * switch_root, and finding the virtio-serial ports.  All done with system
 * calls: under TCG every spawned helper would cost tens of milliseconds.
 * Each step returns 0, or -1 with a message for the "x error" record. */
#ifndef KESTREL_BOOT_H
#define KESTREL_BOOT_H

#include <stddef.h>

#include "msg.h"

#define CONFIG_PATH "/hypr/config"
#define CONFIG_MAX (4u << 20)
/* The fallback kernel's initramfs adds its modules here, with a file that
 * lists them in load order (hypr_engine/vmm/fallback.py); the HYPR kernel's
 * has neither (everything built in). */
#define MODULES_DIR "/lib/modules/hypr"
#define MODULES_ORDER MODULES_DIR "/order"

/* devtmpfs on /dev, fds 0-2 open (the console), /proc and /sys. */
int boot_early(char *why, size_t n);
/* Load the modules MODULES_ORDER lists, in order, each with its parameters
 * from /proc/cmdline (as modprobe would pass them).  No order file: nothing
 * to do.  A module built in (EEXIST) is fine; other failures are remembered
 * for boot_module_failures() and the console. */
void boot_load_modules(void);
/* "" or "; modules that failed to load: name (reason), ...", for the
 * error about a device that never appeared. */
const char *boot_module_failures(void);
/* Read and decode /hypr/config. */
int boot_load_config(struct boot_config *cfg, char *why, size_t n);
/* squashfs lower, ext4 or tmpfs upper, overlay at /mnt/root, the mounts and
 * files inside it. */
int boot_mount_root(const struct boot_config *cfg, char *why, size_t n);
/* Delete the initramfs files, move /mnt/root onto / and chroot into it. */
int boot_switch_root(char *why, size_t n);
/* Before the reboot: make the root and the ext4 writable layer read-only,
 * so the file system is clean and the next boot replays no journal. */
void boot_quiesce(void);
/* Bring up the loopback interface (containers expect 127.0.0.1). */
void boot_loopback_up(void);
/* Find the /dev node of each named virtio-serial port, waiting up to wait_ms
 * for the ports to appear (the host names them asynchronously). paths[i]
 * (size n each) gets "" for a port not found.  Returns how many were found. */
int boot_find_ports(const char *const *names, char (*paths)[64], int count, int wait_ms);

#endif
