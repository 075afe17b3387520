"""Networks: records and addresses (store), what a driver gives a VM's NIC (driver),
the default network's gvproxy (gvproxy, gvproxy_supervisor), published ports (ports),
and the guest's name files (guestfiles)."""
