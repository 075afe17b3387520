"""The dashboard's volume and space actions (`do_<action>` of the registry's volume
and system df/prune actions), mixed into HyprApp."""

from __future__ import annotations

import json
from typing import Any


class VolumeActions:
    client: Any
    volumes: tuple | list = ()   # the Volumes tab's rows, replaced on each load

    async def _load_volumes(self) -> None:
        list_volumes = getattr(self.client, "list_volumes", None)
        if list_volumes is None:
            return
        try:
            self.volumes = await list_volumes()
        except Exception as exc:
            self._connection_failed(exc)  # type: ignore[attr-defined]

    def _volume_words(self, title: str, placeholder: str, then) -> None:
        from hypr_tui.tui.screens.modals import PromptScreen

        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")  # type: ignore[attr-defined]
            if words:
                then(words)

        self.push_screen(PromptScreen(title, "", placeholder=placeholder), chosen)  # type: ignore[attr-defined]

    def do_volume_create(self) -> None:
        def create(words: list[str]) -> None:
            options = dict(w.split("=", 1) for w in words[1:] if "=" in w)
            self.perform("volume create", "created volume {result}",  # type: ignore[attr-defined]
                         lambda: _name(self.client.create_volume(words[0], options=options)))

        self._volume_words("hypr volume create", "NAME [size=10g]", create)

    def do_volume_ls(self) -> None:
        self._show_tab("volumes")  # type: ignore[attr-defined]

    def do_volume_inspect(self) -> None:
        from hypr_tui.tui.screens.modals import TextScreen
        from hypr_tui.volumes_cli import volume_json

        def inspect(words: list[str]) -> None:
            async def show() -> None:
                try:
                    text = json.dumps([volume_json(await self.client.get_volume(w)) for w in words], indent=2)
                except Exception as exc:
                    self.notify(f"volume inspect: {exc}", severity="error")  # type: ignore[attr-defined]
                    return
                self.push_screen(TextScreen("hypr volume inspect", text))  # type: ignore[attr-defined]

            self.run_worker(show(), group="info", exit_on_error=False)  # type: ignore[attr-defined]

        self._volume_words("hypr volume inspect", "VOLUME ...", inspect)

    def do_volume_rm(self) -> None:
        def remove(words: list[str]) -> None:
            for name in words:
                self.perform(f"volume rm {name}", "removed volume {result}",  # type: ignore[attr-defined]
                             lambda name=name: self.client.remove_volume(name))

        self._volume_words("hypr volume rm", "VOLUME ...", remove)

    def _confirmed(self, question: str, label: str, then) -> None:
        from hypr_tui.tui.screens.modals import ConfirmScreen

        self.push_screen(ConfirmScreen(question, confirm=label),  # type: ignore[attr-defined]
                         lambda yes: then() if yes else None)

    def do_volume_prune(self) -> None:
        from hypr_tui import formatting as fmt

        async def prune() -> str:
            removed, reclaimed = await self.client.prune_volumes()
            return f"{len(removed)} volumes, {fmt.human_size(reclaimed)}"

        self._confirmed("Remove every anonymous volume no VM uses?", "Prune",
                        lambda: self.perform("volume prune", "pruned {result}", prune))  # type: ignore[attr-defined]

    def do_system_df(self) -> None:
        from hypr_tui.system_cli import df_text
        from hypr_tui.tui.screens.modals import TextScreen

        async def show() -> None:
            try:
                text = df_text(await self.client.system_df(), verbose=True)
            except Exception as exc:
                self.notify(f"system df: {exc}", severity="error")  # type: ignore[attr-defined]
                return
            self.push_screen(TextScreen("hypr system df -v", text))  # type: ignore[attr-defined]

        self.run_worker(show(), group="info", exclusive=True, exit_on_error=False)  # type: ignore[attr-defined]

    def do_system_prune(self) -> None:
        from hypr_tui import formatting as fmt
        from hypr_tui.system_cli import prune_warning

        async def prune() -> str:
            report = await self.client.system_prune()
            return (f"{len(report['vms'])} VMs, {len(report['images'])} images, "
                    f"{fmt.human_size(report['reclaimed'])}")

        self._confirmed(prune_warning(False, False), "Prune",
                        lambda: self.perform("system prune", "pruned {result}", prune))  # type: ignore[attr-defined]


async def _name(call) -> str:
    return (await call).name
