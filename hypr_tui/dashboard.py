"""`hypr-tui`: HYPR's full-screen dashboard (Textual). See hypr_tui/tui/."""

from __future__ import annotations

import argparse
import asyncio
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hypr-tui",
        description="HYPR's dashboard: VMs, logs, a terminal into any VM, processes, metrics, images. "
                    "Press ? on any screen for its keys, ctrl+p for every hypr action. "
                    "Honours NO_COLOR.")
    return parser


async def _run() -> int:
    from hypr_engine.client import HyprClient
    from hypr_tui.tui.app import HyprApp

    app = HyprApp(connect=HyprClient.connect)
    try:
        await app.run_async()
    finally:
        if app.client is not None:
            try:
                await asyncio.wait_for(app.client.close(), 10)
            except Exception:
                pass
    return app.return_code or 0


def main(argv: list[str] | None = None) -> None:
    build_parser().parse_args(argv)
    try:
        code = asyncio.run(_run())
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
