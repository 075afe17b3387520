"""The Networks tab: every network with its driver, subnet, gateway and VMs.

It fetches the list itself (every 2 s while the dashboard runs) through HyprClient, so
the app's own refresh loop does not grow with each kind of object. The network actions
on a selected network have keys (i inspect, D remove); the others (`hypr network create`,
`connect`, ...) are in the command palette (ctrl+p).
"""

from __future__ import annotations

from typing import Any

from hypr_tui.tui.registry import selection_bindings
from hypr_tui.tui.widgets.tables import NAV_BINDINGS, SortableTable

REFRESH_S = 2.0


class NetworkTable(SortableTable):
    BINDINGS = [*NAV_BINDINGS, *selection_bindings("network")]

    COLUMNS = [
        ("name", "NAME", None, lambda n: n.name),
        ("driver", "DRIVER", 8, lambda n: n.driver),
        ("subnet", "SUBNET", 18, lambda n: n.subnet),
        ("gateway", "GATEWAY", 15, lambda n: n.gateway),
        ("internal", "INTERNAL", 8, lambda n: n.internal),
        ("vms", "VMS", None, lambda n: len(n.endpoints)),
    ]
    FLEX = {"name": 0.4, "vms": 0.6}

    def row_key(self, item: Any) -> str:
        return item.id

    def cells(self, item: Any) -> list[Any]:
        vms = ", ".join(f"{e.vm_name} {e.ip}" for e in item.endpoints) or "-"
        return [item.name, item.driver, item.subnet, item.gateway, "yes" if item.internal else "", vms]

    def on_mount(self) -> None:
        self.run_worker(self.refresh_networks(), group="networks", exclusive=True, exit_on_error=False)
        self.set_interval(REFRESH_S, self._tick)

    def _tick(self) -> None:
        self.run_worker(self.refresh_networks(), group="networks", exclusive=True, exit_on_error=False)

    async def refresh_networks(self) -> None:
        client = getattr(self.app, "client", None)
        if client is None or not callable(getattr(client, "list_networks", None)):
            return
        try:
            networks = await client.list_networks()
        except Exception:
            return   # the app's own polling reports a lost engine
        self.show(networks)
