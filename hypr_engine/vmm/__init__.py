"""VMM adapters (QEMU today) and host probing. The engine reaches hypervisors only through here."""
