/* netcfg_test.c - cases for netcfg.c, the "nic" boot field (PROTOCOL.md
 * "Network interfaces"): the same valid and invalid fields as the host's
 * parser test (tests/unit/test_net.py).  Run by `make fuzz-smoke`; exits 1
 * on the first failure. */
#include <stdio.h>
#include <string.h>

#include "netcfg.h"

static int failures;

static void expect_ok(const char *text, uint32_t addr, uint8_t prefix, int has_gw, uint32_t gw, uint32_t mtu)
{
	struct nic_cfg nic;
	char back[128] = "";
	if (netcfg_parse(text, &nic) < 0 || nic.addr != addr || nic.prefix != prefix ||
	    nic.has_gateway != has_gw || (has_gw && nic.gateway != gw) || nic.mtu != mtu ||
	    netcfg_format(&nic, back, sizeof back) < 0 || strcmp(back, text) != 0) {
		fprintf(stderr, "netcfg: [%s] did not parse and print back (got [%s])\n", text, back);
		failures++;
	}
}

static void expect_bad(const char *text)
{
	struct nic_cfg nic;
	if (netcfg_parse(text, &nic) == 0) {
		fprintf(stderr, "netcfg: [%s] parsed but is invalid\n", text);
		failures++;
	}
}

int main(void)
{
	expect_ok("02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1 1500", 0xc0a87f02, 24, 1, 0xc0a87f01, 1500);
	expect_ok("02:00:00:00:00:01 10.89.0.5/16 - 9000", 0x0a590005, 16, 0, 0, 9000);
	expect_ok("ff:ff:ff:ff:ff:ff 0.0.0.0/0 255.255.255.255 65535", 0, 0, 1, 0xffffffff, 65535);
	static const char *const bad[] = {
		"", "02:1f:6a:00:c3:9e 192.168.127.2/24 192.168.127.1",
		"02:1F:6a:00:c3:9e 192.168.127.2/24 - 1500", "02:1f:6a:00:c3 192.168.127.2/24 - 1500",
		"02:1f:6a:00:c3:9e 192.168.127.2/33 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2 - 1500",
		"02:1f:6a:00:c3:9e 192.168.127.256/24 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/24 - 67",
		"02:1f:6a:00:c3:9e 192.168.127.2/24 - 65536", "02:1f:6a:00:c3:9e  192.168.127.2/24 - 1500",
		"02:1f:6a:00:c3:9e 192.168.127.2/24 x 1500", "02:1f:6a:00:c3:9e 192.168.127.02/24 - 1500",
		"02:1f:6a:00:c3:9e 192.168.127.2/24 - 1500 ", "02:1f:6a:00:c3:9e 192.168.127.2/024 - 1500",
		"02:1f:6a:00:c3:9e 192.168.127.2/24 - 99999999999999",
		"02:1f:6a:00:c3:9e 192.168.127.2/02 - 1500", "02:1f:6a:00:c3:9e 192.168.127.2/24 - 01500",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_bad(bad[i]);
	if (failures)
		return 1;
	printf("netcfg: all cases pass\n");
	return 0;
}
