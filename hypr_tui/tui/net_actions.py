"""The dashboard's networking actions (a mixin of HyprApp): `port` on the selected VM."""

from __future__ import annotations


class NetActions:
    def do_port(self, vm) -> None:
        from hypr_tui.tui.app import error_text

        async def show() -> None:
            try:
                ports = await self.client.vm_ports(vm.id)
            except Exception as exc:
                self.notify(f"port {vm.name}: {error_text(exc)}", severity="error")
                return
            lines = [f"{p.guest_port}/{p.protocol} -> {p.host_ip}:{p.host_port}"
                     for p in sorted(ports, key=lambda p: (p.guest_port, p.protocol))]
            self.notify("\n".join(lines) or f"{vm.name} publishes no ports")

        self.run_worker(show(), group="port", exclusive=True, exit_on_error=False)
