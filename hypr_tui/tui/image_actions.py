"""The dashboard's image actions of the registry (`image inspect`, `image history`, `tag`,
`save`, `image prune`): a mixin of HyprApp, one `do_<action>` each, printing what the
CLI prints (hypr_tui/images_cli.py builds the documents and rows for both)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.syntax import Syntax


class ImageActionsMixin:
    """Needs HyprApp's client, notify, perform, push_screen, run_worker and _load_images."""

    client: Any

    def _show_text(self, title: str, call, render) -> None:  # noqa: ANN001
        from hypr_tui.tui.app import error_text
        from hypr_tui.tui.screens.modals import TextScreen

        async def show() -> None:
            try:
                result = await call()
            except Exception as exc:
                self.notify(f"{title}: {error_text(exc)}", severity="error")
                return
            self.push_screen(TextScreen(title, render(result)))

        self.run_worker(show(), group="inspect", exclusive=True, exit_on_error=False)

    def do_image_inspect(self, ref: str) -> None:
        from hypr_tui.images_cli import inspect_document

        def render(img):  # noqa: ANN001
            text = json.dumps([inspect_document(img)], indent=2)
            return Syntax(text, "json", theme="ansi_dark", background_color="default", word_wrap=True)

        self._show_text(f"hypr image inspect {ref}", lambda: self.client.get_image(ref), render)

    def do_image_history(self, ref: str) -> None:
        from hypr_tui import formatting as fmt
        from hypr_tui.images_cli import history_rows

        def render(entries):  # noqa: ANN001
            return fmt.table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], history_rows(entries))

        self._show_text(f"hypr image history {ref}", lambda: self.client.image_history(ref), render)

    def do_tag(self, ref: str) -> None:
        from hypr_tui.tui.screens.modals import PromptScreen

        def chosen(target: str | None) -> None:
            if target and target.strip():
                async def tag() -> str:
                    new = await self.client.tag_image(ref, target.strip())
                    await self._load_images()
                    return new

                self.perform(f"tag {ref}", "tagged {result}", tag)

        self.push_screen(PromptScreen(f"hypr tag {ref}", "", placeholder="TARGET_IMAGE[:TAG]"), chosen)

    def do_save(self, ref: str) -> None:
        from hypr_tui.tui.screens.modals import PromptScreen

        def chosen(path: str | None) -> None:
            if path and path.strip():
                output = Path(path.strip()).expanduser().absolute()
                self.perform(f"save {ref}", f"saved {ref} to {output}",
                             lambda: self.client.save_images([ref], output))

        self.push_screen(PromptScreen(f"hypr save -o FILE {ref}", "", placeholder="docker-archive to write"), chosen)

    def do_image_prune(self) -> None:
        from hypr_tui import formatting as fmt
        from hypr_tui.tui.screens.modals import ConfirmScreen

        def answered(yes: bool | None) -> None:
            if yes:
                async def prune() -> str:
                    report = await self.client.prune_images(all=False)
                    await self._load_images()
                    return f"{len(report.deleted)} images, {fmt.human_size(report.bytes_reclaimed)}"

                self.perform("image prune", "removed {result}", prune)

        self.push_screen(ConfirmScreen("Remove all dangling images (untagged, used by no VM)?\n\nhypr image prune -f",
                                       confirm="Prune"), answered)
