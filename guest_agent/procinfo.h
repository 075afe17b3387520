/* procinfo.h - the text of PS_REPLY and STATS_REPLY, read from /proc
 * (PROTOCOL.md, "Guest to host").  No helper programs: each process costs
 * three small reads (stat, status, cmdline). */
#ifndef KESTREL_PROCINFO_H
#define KESTREL_PROCINFO_H

#include "buf.h"

/* Longest cmdline shown per process, so one PS line always fits a frame. */
#define PS_CMDLINE_MAX 4096

/* Append one line per process (kernel threads left out). 0 or -1. */
int ps_text(struct buf *out);
/* Append the "key value" lines. 0 or -1. */
int stats_text(struct buf *out);

#endif
