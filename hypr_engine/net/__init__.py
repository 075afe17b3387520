"""Networks of VMs.

- store.py: networks, endpoints (a VM's place on a network: address, MAC, aliases, NIC
  position) and the address allocator, over hypr.db (schema migration "networks").
- driver.py: what a network driver gives the VM start path per NIC (QEMU arguments,
  the guest's NIC configuration, an optional spawn-time descriptor) and the registry.
- gvproxy_driver.py, gvproxy.py, gvproxy_supervisor.py: the `default` network.
- ports.py: `-p`/`-P` parsing, host-port checks, Docker's NetworkSettings.Ports shape.
- guestfiles.py: the guest's /etc/hosts and /etc/resolv.conf.
- service.py: NetService, what VmService calls (create checks, start, release, inspect).
- User networks (driver `bridge`, root only): networks.py, the service behind `hypr network`
  (create, ls, inspect, rm, prune, connect, disconnect) and HostSide (a network's kernel
  objects and resolver); bridge.py, bridges, TAPs and the driver; nft.py, the data dir's
  nftables table (masquerade, isolation, --internal); pool.py, subnets; resolver.py, the
  per-network DNS server process.

Adding a driver (e.g. `bridge` for user networks): a module `hypr_engine/net/bridge.py`
(driver.driver_for imports it on first use) with a class implementing
driver.NetworkDriver (`nic(endpoint, layout) -> NicPlan`, `prepare(endpoint, layout)`),
registered with `driver.register("bridge", BridgeDriver)`. Its NicPlan's `dns` is the
resolver the guest gets (the first user network's wins over gvproxy's: it knows the
VM's peers); `guest.gateway` None gives no default route through the NIC (`--internal`).
Network rows are inserted with store.insert_network; VMs join with store.attach inside
store.write_transaction.
"""
