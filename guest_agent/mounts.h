/* mounts.h - volumes (ext4 disks), bind shares (9p) and tmpfs mounts of a VM
 * (boot config tags 19-23, PROTOCOL.md "Boot configuration"). */
#ifndef KESTREL_MOUNTS_H
#define KESTREL_MOUNTS_H

#include <stddef.h>

#include "msg.h"

/* Make every configured mount inside `root` (the new root, before
 * switch_root), creating mount points; 0, or -1 with a message. */
int mounts_apply(const struct boot_config *cfg, const char *root, char *why, size_t n);
/* Before the reboot, after sync: remount the volumes read-only (clean ext4). */
void mounts_quiesce(void);

#endif
