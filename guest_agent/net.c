/* net.c - configure the VM's network interfaces from the boot configuration
 * (PROTOCOL.md "Network interfaces"): by MAC, with ioctls, no DHCP. */
#define _GNU_SOURCE
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "netcfg.h"

#define MAX_NICS 32

static void set_addr(struct sockaddr *sa, uint32_t host_order)
{
	struct sockaddr_in *in = (struct sockaddr_in *)sa;
	memset(in, 0, sizeof *in);
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(host_order);
}

/* The name of the interface with this hardware address, waiting up to wait_ms. */
static int find_by_mac(int s, const uint8_t mac[6], char name[IF_NAMESIZE], int wait_ms)
{
	for (int waited = 0; ; waited += 10) {
		struct if_nameindex *all = if_nameindex();
		for (struct if_nameindex *i = all; all && i->if_index; i++) {
			struct ifreq ifr;
			memset(&ifr, 0, sizeof ifr);
			snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", i->if_name);
			if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0 && !memcmp(ifr.ifr_hwaddr.sa_data, mac, 6)) {
				snprintf(name, IF_NAMESIZE, "%s", i->if_name);
				if_freenameindex(all);
				return 0;
			}
		}
		if (all)
			if_freenameindex(all);
		if (waited >= wait_ms)
			return -1;
		struct timespec ts = { 0, 10 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

static int configure_one(int s, const struct nic_cfg *c, char name[IF_NAMESIZE], char *why, size_t n)
{
	if (find_by_mac(s, c->mac, name, 3000) < 0) {
		snprintf(why, n, "no interface with MAC %02x:%02x:%02x:%02x:%02x:%02x",
			 c->mac[0], c->mac[1], c->mac[2], c->mac[3], c->mac[4], c->mac[5]);
		return -1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	const char *step = "mtu";
	ifr.ifr_mtu = (int)c->mtu;
	if (ioctl(s, SIOCSIFMTU, &ifr) < 0)
		goto fail;
	step = "address";
	set_addr(&ifr.ifr_addr, c->addr);
	if (ioctl(s, SIOCSIFADDR, &ifr) < 0)
		goto fail;
	step = "netmask";
	set_addr(&ifr.ifr_netmask, netcfg_mask(c->prefix));
	if (ioctl(s, SIOCSIFNETMASK, &ifr) < 0)
		goto fail;
	step = "up";
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		goto fail;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
		goto fail;
	return 0;
fail:
	snprintf(why, n, "%s: %s: %s", name, step, strerror(errno));
	return -1;
}

/* Wait (bounded) until the link has carrier: QEMU attaches a stream netdev's
 * descriptor asynchronously, and packets sent before the carrier comes up
 * are dropped, so a workload that talks at once would lose its first ones. */
static void wait_carrier(const char *name, int wait_ms)
{
	char path[64], c = 0;
	snprintf(path, sizeof path, "/sys/class/net/%s/carrier", name);
	for (int waited = 0; waited < wait_ms; waited += 5) {
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t r = fd >= 0 ? read(fd, &c, 1) : -1;
		if (fd >= 0)
			close(fd);
		if (r == 1 && c == '1')
			return;
		struct timespec ts = { 0, 5 * 1000000L };
		nanosleep(&ts, NULL);
	}
}

int net_configure(const struct strv *nics, char *why, size_t n)
{
	struct nic_cfg cfg[MAX_NICS];
	if (nics->n > MAX_NICS) {
		snprintf(why, n, "%u nic fields, at most %d", nics->n, MAX_NICS);
		return -1;
	}
	for (uint32_t i = 0; i < nics->n; i++) {
		if (netcfg_parse(nics->v[i], &cfg[i]) < 0) {
			snprintf(why, n, "invalid nic field %u", i + 1);
			return -1;
		}
	}
	if (nics->n == 0)
		return 0;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0) {
		snprintf(why, n, "socket: %s", strerror(errno));
		return -1;
	}
	int rc = 0, routed = 0;
	for (uint32_t i = 0; i < nics->n && rc == 0; i++) {
		char name[IF_NAMESIZE];
		rc = configure_one(s, &cfg[i], name, why, n);
		if (rc == 0)
			wait_carrier(name, 2000);
		if (rc == 0 && cfg[i].has_gateway && !routed) {
			struct rtentry rt;
			memset(&rt, 0, sizeof rt);
			set_addr(&rt.rt_dst, 0);
			set_addr(&rt.rt_genmask, 0);
			set_addr(&rt.rt_gateway, cfg[i].gateway);
			rt.rt_flags = RTF_UP | RTF_GATEWAY;
			rt.rt_dev = name;
			if (ioctl(s, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
				snprintf(why, n, "%s: default route: %s", name, strerror(errno));
				rc = -1;
			}
			routed = 1;
		}
	}
	close(s);
	return rc;
}
