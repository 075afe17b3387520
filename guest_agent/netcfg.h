/* netcfg.h - one network interface of the boot configuration (tag 25, "nic"),
 * as PROTOCOL.md "Network interfaces" defines it:
 *
 *     MAC SP ADDRESS/PREFIX SP GATEWAY|- SP MTU
 *
 * e.g. "02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1 1500".  The parser is
 * strict (lower-case hex, no leading zeros, no extra blanks), so a field that
 * parses prints back byte for byte (netcfg_format).  Pure (no I/O): the fuzz
 * harness checks it. */
#ifndef KESTREL_NETCFG_H
#define KESTREL_NETCFG_H

#include <stddef.h>
#include <stdint.h>

struct nic_cfg {
	uint8_t mac[6];
	uint32_t addr;      /* host byte order */
	uint8_t prefix;     /* 0-32 */
	int has_gateway;
	uint32_t gateway;   /* host byte order; valid when has_gateway */
	uint32_t mtu;       /* 68-65535 */
};

/* Parse a NUL-terminated field; 0, or -1 when it is not exactly of the form. */
int netcfg_parse(const char *s, struct nic_cfg *nic);

/* The field's text into out (size outsz); its length, or -1 when it does not fit. */
int netcfg_format(const struct nic_cfg *nic, char *out, size_t outsz);

/* The netmask of a prefix length (host byte order). */
uint32_t netcfg_mask(uint8_t prefix);

#endif
