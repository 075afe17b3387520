"""`hypr pull`, `push`, `login`, `logout`, and the pull `hypr run` does for a missing image.

Progress: on a terminal, one rich progress bar per layer; otherwise one plain line per
change of a layer's state (as `docker pull` prints when piped), so logs of scripts stay
readable.
"""

from __future__ import annotations

import getpass
import sys
from typing import TYPE_CHECKING, TextIO

from hypr_tui.commands import UsageError

if TYPE_CHECKING:
    from hypr_engine.oci.registry.progress import Progress

_PULL_WORDS = {
    "waiting": "Pulling fs layer", "exists": "Already exists", "locked": "Waiting for another pull",
    "complete": "Pull complete",
}
_PUSH_WORDS = {"waiting": "Preparing", "exists": "Layer already exists", "pushed": "Pushed", "mounted": "Mounted"}


class TransferView:
    """Shows a pull's or push's progress events on `out`: bars on a terminal, lines otherwise."""

    def __init__(self, out: TextIO, words: dict[str, str], *, quiet: bool = False) -> None:
        self.out = out
        self.words = words
        self.quiet = quiet
        self._bars = None
        self._tasks: dict[str, int] = {}
        self._said: dict[str, str] = {}
        if not quiet and out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress as Bars, TextColumn, TransferSpeedColumn

            self._bars = Bars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                              console=Console(file=out), transient=False)
            self._bars.start()

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self._bars is not None:
            self._bars.console.print(text, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def update(self, event: "Progress") -> None:
        if self.quiet:
            return
        if event.stage == "resolved":
            self.line(event.message)
            return
        if event.stage != "blob":
            return
        word = self.words.get(event.status) or {"downloading": "Downloading", "uploading": "Pushing",
                                                  "retrying": f"Retrying from byte {event.current}"}.get(
            event.status, event.status)
        if event.status == "mounted" and event.message:
            word = f"Mounted {event.message}"
        label = f"{event.short_id}: {word}"
        if self._bars is not None:
            task = self._tasks.get(event.id)
            if task is None:
                task = self._tasks[event.id] = self._bars.add_task(label, total=event.total or None)
            self._bars.update(task, description=label, completed=event.current, total=event.total or None)
            return
        if event.status in ("downloading", "uploading"):
            return      # byte counts only make sense as a bar
        if self._said.get(event.id) != word:
            self._said[event.id] = word
            extra = f" ({event.message})" if event.status == "retrying" and event.message else ""
            self.line(label + extra)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None


async def pull(client, ref: str, *, platform: str | None = None, quiet: bool = False, out: TextIO | None = None):
    """Pull with progress on `out` (stdout); returns the image pulled."""
    from hypr_engine.oci.reference import parse_reference

    view = TransferView(out or sys.stdout, _PULL_WORDS, quiet=quiet)
    image = None
    digest = ""
    downloaded = False
    try:
        async for event in client.pull_image(ref, platform=platform):
            view.update(event)
            downloaded = downloaded or event.status == "complete"
            if event.stage == "done":
                image, digest = event.image, event.message
    finally:
        view.close()
    name = parse_reference(ref)
    view.line(f"Digest: {digest}")
    view.line(f"Status: Downloaded newer image for {name.familiar()}" if downloaded
              else f"Status: Image is up to date for {name.familiar()}")
    return image, str(name)


async def cmd_pull(client, args) -> int:
    _, name = await pull(client, args.image, platform=args.platform, quiet=args.quiet)
    print(name)
    return 0


async def cmd_push(client, args) -> int:
    view = TransferView(sys.stdout, _PUSH_WORDS, quiet=args.quiet)
    try:
        async for event in client.push_image(args.image):
            view.update(event)
            if event.stage == "done":
                view.line(event.message)
    finally:
        view.close()
    return 0


async def cmd_login(client, args) -> int:
    server = args.server or "docker.io"
    username = args.username
    if args.password_stdin and args.password is not None:
        raise UsageError("--password and --password-stdin are mutually exclusive")
    if args.password_stdin:
        if not username:
            raise UsageError("--password-stdin needs --username")
        password = sys.stdin.read().rstrip("\r\n")
    elif args.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password = args.password
    else:
        if not sys.stdin.isatty():
            raise UsageError("cannot prompt for a password: stdin is not a terminal (use --password-stdin)")
        if not username:
            username = input("Username: ").strip()
        password = getpass.getpass("Password: ")
    if not username:
        raise UsageError("login needs a username (-u)")
    print(await client.login(server, username, password))
    return 0


async def cmd_logout(client, args) -> int:
    print(await client.logout(args.server or "docker.io"))
    return 0


async def ensure_image(client, name: str) -> None:
    """`hypr run`'s pull of a missing image (Docker's `--pull missing`), progress on stderr.

    If the pull fails before it printed anything, the error reads as before ("unable to
    find image ... locally") with the pull's reason added, in one line.
    """
    from hypr_engine.errors import HyprError, InvalidArgument, NotFound
    from hypr_engine.oci.reference import parse_reference

    try:
        await client.get_image(name)
        return
    except NotFound as missing:
        try:
            ref = parse_reference(name)
        except InvalidArgument:
            raise missing from None
    announced = False

    class _Announcing:
        """stderr, with Docker's notice written before the first line of progress."""

        def write(self, text: str) -> int:
            nonlocal announced
            if not announced:
                announced = True
                sys.stderr.write(f"Unable to find image '{ref.familiar()}' locally\n")
            return sys.stderr.write(text)

        def flush(self) -> None:
            sys.stderr.flush()

        def isatty(self) -> bool:
            return sys.stderr.isatty()

    try:
        await pull(client, name, out=_Announcing())  # type: ignore[arg-type]
    except HyprError as exc:
        if announced:
            raise
        raise type(exc)(f"unable to find image '{name}' locally, and pulling it failed: {exc.message}") from None
