"""`hypr`: Docker-like headless subcommands, generated from the action registry.

Exit codes are Docker's: 125 when HYPR fails, 126/127 when the workload's
command cannot be invoked / is not found, otherwise the workload's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from hypr_tui.actions import ACTIONS, Action, handler_of
from hypr_tui.commands import UsageError, _report


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2; Docker exits 125 on bad flags
        self.print_usage(sys.stderr)
        print(f"hypr: error: {message}", file=sys.stderr)
        raise SystemExit(125)


def build_parser() -> Parser:
    parser = Parser(prog="hypr", description="Run OCI container images as microVMs.")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    groups: dict[str, argparse._SubParsersAction] = {}
    for action in ACTIONS:
        words = action.words
        holder = top
        for depth, word in enumerate(words[:-1]):
            key = " ".join(words[: depth + 1])
            if key not in groups:
                group = holder.add_parser(word, help=f"{word} commands")
                groups[key] = group.add_subparsers(dest=f"sub_{depth}", metavar="COMMAND", parser_class=Parser,
                                                   required=True)
            holder = groups[key]
        sub = holder.add_parser(words[-1], help=action.help, description=action.help)
        sub.set_defaults(action=action)
        for a in action.args:
            options = dict(a.options)
            if options.get("nargs") == "...":
                options["nargs"] = argparse.REMAINDER
            sub.add_argument(*a.flags, **options)
    return parser


async def _main(action: Action, args: argparse.Namespace) -> int:
    from hypr_engine.client import HyprClient

    client = await HyprClient.connect()
    try:
        return await handler_of(action)(client, args)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    action = getattr(args, "action", None)
    if action is None:
        parser.print_help()
        raise SystemExit(0)
    from hypr_engine.errors import HyprError

    try:
        code = asyncio.run(_main(action, args))
    except UsageError as exc:
        print(f"hypr: error: {exc}", file=sys.stderr)
        code = 125
    except HyprError as exc:
        code = _report(exc)
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # a bug: one line for the user, the traceback on request
        if os.environ.get("HYPR_DEBUG"):
            raise
        print(f"hypr: internal error: {type(exc).__name__}: {exc} (set HYPR_DEBUG=1 for the traceback)",
              file=sys.stderr)
        code = 125
    # Skip the interpreter's teardown (about 70 ms, bench/README.md): everything that
    # matters is closed, and buffered output is flushed here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
