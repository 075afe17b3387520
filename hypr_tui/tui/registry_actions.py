"""The dashboard's registry actions: pull, push, login, logout (a mixin of HyprApp).

They call the same HyprClient methods as `hypr pull/push/login/logout`; a pull or push
reports its progress as notifications (which layer is where) and refreshes the image
list when it ends.
"""

from __future__ import annotations

import asyncio

from textual.widgets import Input

from hypr_tui.tui.screens.modals import PromptScreen


class PasswordScreen(PromptScreen):
    """A PromptScreen whose input is masked."""

    def on_mount(self) -> None:
        self.query_one("#prompt-input", Input).password = True


class RegistryActions:
    """do_pull / do_push / do_login / do_logout for HyprApp (self is the app)."""

    def _transfer(self, verb: str, ref: str, stream_of) -> None:  # noqa: ANN001
        from hypr_tui.tui.app import error_text

        async def run() -> None:
            done = ""
            try:
                async for event in stream_of():
                    if event.stage == "resolved":
                        self.notify(f"{verb} {ref}: {event.message}", timeout=3)
                    elif event.stage == "done":
                        done = event.message
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.notify(f"{verb} {ref}: {error_text(exc)}", severity="error", timeout=8)
                return
            self.notify(f"{verb} {ref}: done {done}".strip())
            await self._load_images()
            self._broadcast()

        self.run_worker(run(), group="actions", exit_on_error=False)

    def do_pull(self) -> None:
        def chosen(text: str | None) -> None:
            words = self._words(text, "arguments")
            if not words:
                return
            args = self._parse_cli(["pull", *words])
            if args is not None:
                self._transfer("pull", args.image,
                               lambda: self.client.pull_image(args.image, platform=args.platform))

        self.push_screen(PromptScreen("hypr pull", "", placeholder="[--platform os/arch] NAME[:TAG|@DIGEST]"),
                         chosen)

    def do_push(self, ref: str) -> None:
        self._transfer("push", ref, lambda: self.client.push_image(ref))

    def do_login(self) -> None:
        def with_user(text: str | None) -> None:
            words = self._words(text, "arguments")
            if len(words) != 2:
                if words:
                    self.notify("login takes SERVER USERNAME", severity="error")
                return
            server, username = words

            def with_password(password: str | None) -> None:
                if password:
                    self.perform(f"login {server}", "{result}",
                                 lambda: self.client.login(server, username, password))

            self.push_screen(PasswordScreen(f"Password for {username} at {server}:"), with_password)

        self.push_screen(PromptScreen("hypr login", "", placeholder="SERVER USERNAME"), with_user)

    def do_logout(self) -> None:
        def chosen(server: str | None) -> None:
            if server and server.strip():
                self.perform(f"logout {server}", "{result}", lambda: self.client.logout(server.strip()))

        self.push_screen(PromptScreen("hypr logout", "", placeholder="SERVER"), chosen)
