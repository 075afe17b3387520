/* net.h - the VM's network interfaces, configured by kestrel before the
 * workload starts (PROTOCOL.md "Network interfaces"). */
#ifndef KESTREL_NET_H
#define KESTREL_NET_H

#include <stddef.h>

#include "msg.h"

/* Configure every interface named by the nic fields (in order) and one
 * default route; 0, or -1 with why set. An invalid field configures none. */
int net_configure(const struct strv *nics, char *why, size_t n);

#endif
