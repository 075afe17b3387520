"""The dashboard's network actions (`hypr network ...`), mixed into HyprApp.

Each asks for the arguments of its `hypr network` subcommand, parsed by the CLI's own
parser, and calls HyprClient; lists and details open in a text screen.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

from rich.syntax import Syntax


class NetworkActions:
    """Mixin: `do_network_*` for HyprApp (needs its perform, _parse_cli, _words, notify)."""

    def _network_prompt(self, verb: str, placeholder: str, then: Callable[[Any], Callable[[], Awaitable[Any]]],
                        done: str) -> None:
        from hypr_tui.tui.screens.modals import PromptScreen

        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")
            if not words:
                return
            args = self._parse_cli(["network", verb, *words])
            if args is not None:
                self.perform(f"network {verb}", done, then(args))

        self.push_screen(PromptScreen(f"hypr network {verb}", "", placeholder=placeholder,
                                      hint="Enter runs it, Esc cancels"), chosen)

    def _network_text(self, title: str, load: Callable[[], Awaitable[str]], as_json: bool) -> None:
        from hypr_tui.tui.screens.modals import TextScreen

        async def show() -> None:
            try:
                text = await load()
            except Exception as exc:
                from hypr_tui.tui.app import error_text

                self.notify(f"{title}: {error_text(exc)}", severity="error")
                return
            body = Syntax(text, "json", theme="ansi_dark", background_color="default", word_wrap=True) \
                if as_json else text
            self.push_screen(TextScreen(title, body))

        self.run_worker(show(), group="info", exclusive=True, exit_on_error=False)

    def do_network_create(self) -> None:
        from hypr_tui.commands import _key_value

        self._network_prompt(
            "create", "[--subnet CIDR] [--gateway IP] [--internal] [--label K=V] NAME",
            lambda a: lambda: self.client.create_network(
                a.name, subnet=a.subnet, gateway=a.gateway, internal=a.internal,
                labels=dict(_key_value(x, "label") for x in a.label)),
            "created network {result.name} ({result.subnet})")

    def do_network_ls(self) -> None:
        async def load() -> str:
            from hypr_tui import formatting as fmt
            from hypr_tui.network_cli import network_rows

            return fmt.table(["NETWORK ID", "NAME", "DRIVER", "SUBNET", "INTERNAL", "VMS"],
                             network_rows(await self.client.list_networks()))

        self._network_text("hypr network ls", load, as_json=False)

    def do_network_inspect(self, network: Any = None) -> None:
        from hypr_tui.tui.screens.modals import PromptScreen

        if network is not None:     # the selected row of the Networks tab (key i)
            async def selected() -> str:
                from hypr_tui.network_cli import network_inspect

                return json.dumps([network_inspect(await self.client.get_network(network.id))], indent=2)

            self._network_text(f"hypr network inspect {network.name}", selected, as_json=True)
            return

        def chosen(text: str | None) -> None:
            refs = self._words(text, "networks")
            if not refs:
                return

            async def load() -> str:
                from hypr_tui.network_cli import network_inspect

                return json.dumps([network_inspect(await self.client.get_network(r)) for r in refs], indent=2)

            self._network_text("hypr network inspect", load, as_json=True)

        self.push_screen(PromptScreen("hypr network inspect", "", placeholder="NETWORK ...",
                                      hint="Enter shows them, Esc cancels"), chosen)

    def do_network_rm(self, network: Any = None) -> None:
        if network is not None:     # the selected row (key D), confirmed by the app
            self.perform("network rm", "removed network {result}",
                         lambda: self.client.remove_network(network.id))
            return

        async def remove_all(args) -> str:
            return ", ".join([await self.client.remove_network(r, force=args.force) for r in args.networks])

        self._network_prompt("rm", "[-f] NETWORK ...", lambda a: lambda: remove_all(a), "removed network {result}")

    def do_network_prune(self) -> None:
        self.perform("network prune", "removed networks: {result}", self.client.prune_networks)

    def do_network_connect(self) -> None:
        self._network_prompt(
            "connect", "[--alias NAME] [--ip IP] NETWORK VM",
            lambda a: lambda: self.client.connect_network(a.network, a.vm, aliases=a.alias, ip=a.ip),
            "connected (a running VM joins at its next start)")

    def do_network_disconnect(self) -> None:
        self._network_prompt(
            "disconnect", "NETWORK VM",
            lambda a: lambda: self.client.disconnect_network(a.network, a.vm),
            "disconnected (a running VM leaves at its next start)")

