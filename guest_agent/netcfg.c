/* netcfg.c - the "nic" boot field's parser and printer (netcfg.h). */
#include "netcfg.h"

#include <stdio.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* A decimal without leading zeros, at most max; advances *p. */
static int decimal(const char **p, uint32_t max, uint32_t *out)
{
	const char *s = *p;
	uint32_t v = 0;
	int digits = 0;
	while (*s >= '0' && *s <= '9') {
		if (digits == 1 && v == 0)
			return -1;          /* leading zero */
		v = v * 10 + (uint32_t)(*s - '0');
		if (v > max)
			return -1;
		s++;
		digits++;
	}
	if (!digits)
		return -1;
	*p = s;
	*out = v;
	return 0;
}

static int ipv4(const char **p, uint32_t *out)
{
	uint32_t v = 0, octet;
	for (int i = 0; i < 4; i++) {
		if (i && *(*p)++ != '.')
			return -1;
		if (decimal(p, 255, &octet) < 0)
			return -1;
		v = v << 8 | octet;
	}
	*out = v;
	return 0;
}

int netcfg_parse(const char *s, struct nic_cfg *nic)
{
	for (int i = 0; i < 6; i++) {
		if (i && *s++ != ':')
			return -1;
		int hi = hexval(s[0]), lo = hi < 0 ? -1 : hexval(s[1]);
		if (hi < 0 || lo < 0)
			return -1;
		nic->mac[i] = (uint8_t)(hi << 4 | lo);
		s += 2;
	}
	uint32_t prefix, mtu;
	if (*s++ != ' ' || ipv4(&s, &nic->addr) < 0 || *s++ != '/' || decimal(&s, 32, &prefix) < 0 ||
	    *s++ != ' ')
		return -1;
	nic->prefix = (uint8_t)prefix;
	if (s[0] == '-' && s[1] == ' ') {
		nic->has_gateway = 0;
		nic->gateway = 0;
		s++;
	} else {
		if (ipv4(&s, &nic->gateway) < 0)
			return -1;
		nic->has_gateway = 1;
	}
	if (*s++ != ' ' || decimal(&s, 65535, &mtu) < 0 || mtu < 68 || *s)
		return -1;
	nic->mtu = mtu;
	return 0;
}

static void quad(uint32_t a, char *out, size_t n)
{
	snprintf(out, n, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

int netcfg_format(const struct nic_cfg *nic, char *out, size_t outsz)
{
	char addr[16], gw[16] = "-";
	quad(nic->addr, addr, sizeof addr);
	if (nic->has_gateway)
		quad(nic->gateway, gw, sizeof gw);
	int len = snprintf(out, outsz, "%02x:%02x:%02x:%02x:%02x:%02x %s/%u %s %u",
			   nic->mac[0], nic->mac[1], nic->mac[2], nic->mac[3], nic->mac[4], nic->mac[5],
			   addr, nic->prefix, gw, nic->mtu);
	return len < 0 || (size_t)len >= outsz ? -1 : len;
}

uint32_t netcfg_mask(uint8_t prefix)
{
	return prefix == 0 ? 0 : prefix >= 32 ? 0xffffffffu : ~((1u << (32 - prefix)) - 1);
}
