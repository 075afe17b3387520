"""`hypr`: Docker-like headless subcommands.

Parsing and printing only: every action goes through HyprClient. Imports of
the engine are deferred to the command that needs them, so `hypr --help` and
`hypr ps` start fast.

Exit codes are Docker's: 125 when HYPR fails, 126/127 when the workload's
command cannot be invoked / is not found, otherwise the workload's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Callable, Coroutine

from hypr_tui import formatting as fmt


class UsageError(Exception):
    """Bad command-line input caught before any engine work."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2; Docker exits 125 on bad flags
        self.print_usage(sys.stderr)
        print(f"hypr: error: {message}", file=sys.stderr)
        raise SystemExit(125)


def build_parser() -> Parser:
    p = Parser(prog="hypr", description="Run OCI container images as microVMs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    run = sub.add_parser("run", help="create and start a VM from an image")
    _vm_create_args(run)
    run.add_argument("-d", "--detach", action="store_true", help="run in the background and print the VM id")
    run.add_argument("image", metavar="IMAGE")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND", help="command and arguments")

    create = sub.add_parser("create", help="create a VM without starting it")
    _vm_create_args(create)
    create.add_argument("image", metavar="IMAGE")
    create.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")

    start = sub.add_parser("start", help="start stopped VMs")
    start.add_argument("vms", nargs="+", metavar="VM")

    ps = sub.add_parser("ps", help="list VMs")
    ps.add_argument("-a", "--all", action="store_true", help="show all VMs (default: running only)")
    ps.add_argument("-q", "--quiet", action="store_true", help="only print VM ids")
    ps.add_argument("--format", choices=["table", "json"], default="table")

    logs = sub.add_parser("logs", help="print a VM's output")
    logs.add_argument("-f", "--follow", action="store_true", help="follow until the VM exits")
    logs.add_argument("-n", "--tail", default="all", help="lines from the end (default: all)")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    logs.add_argument("vm", metavar="VM")

    ex = sub.add_parser("exec", help="run a command in a running VM")
    ex.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    ex.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    ex.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    ex.add_argument("-w", "--workdir")
    ex.add_argument("-u", "--user")
    ex.add_argument("vm", metavar="VM")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="COMMAND")

    stop = sub.add_parser("stop", help="stop running VMs gracefully")
    stop.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before killing")
    stop.add_argument("vms", nargs="+", metavar="VM")

    rm = sub.add_parser("rm", help="remove VMs")
    rm.add_argument("-f", "--force", action="store_true", help="kill and remove running VMs")
    rm.add_argument("vms", nargs="+", metavar="VM")

    wait = sub.add_parser("wait", help="wait for VMs to exit and print their exit codes")
    wait.add_argument("vms", nargs="+", metavar="VM")

    inspect = sub.add_parser("inspect", help="details of a VM as JSON")
    inspect.add_argument("vms", nargs="+", metavar="VM")

    top = sub.add_parser("top", help="processes running in a VM")
    top.add_argument("vm", metavar="VM")

    load = sub.add_parser("load", help="load images from a docker-archive, oci-archive or OCI layout")
    load.add_argument("-i", "--input", required=True, help="archive file or OCI layout directory")
    load.add_argument("-q", "--quiet", action="store_true")

    imp = sub.add_parser("import", help="make an image from a root filesystem tarball")
    imp.add_argument("tarball")
    imp.add_argument("ref", nargs="?", metavar="REPOSITORY[:TAG]")

    images = sub.add_parser("images", help="list images")
    images.add_argument("-q", "--quiet", action="store_true")
    images.add_argument("--format", choices=["table", "json"], default="table")

    rmi = sub.add_parser("rmi", help="remove images")
    rmi.add_argument("-f", "--force", action="store_true")
    rmi.add_argument("images", nargs="+", metavar="IMAGE")

    system = sub.add_parser("system", help="host information")
    ssub = system.add_subparsers(dest="system_command", metavar="COMMAND", parser_class=Parser)
    info = ssub.add_parser("info", help="accelerator, kernel, initramfs, and why")
    info.add_argument("--format", choices=["table", "json"], default="table")
    return p


def _vm_create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--rm", action="store_true", help="remove the VM when it exits")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("--hostname")
    p.add_argument("--cpus", default="1")
    p.add_argument("-m", "--memory", default="256m")
    p.add_argument("--stop-timeout", type=int)


# --- commands ------------------------------------------------------------------------

async def cmd_run(client, args: argparse.Namespace, *, start: bool = True) -> int:
    spec = _spec_from_args(args)
    vm = await client.create_vm(spec)
    if not start:
        print(vm.id)
        return 0
    vm = await client.start_vm(vm.id)
    if args.detach:
        print(vm.id)
        return 0
    if spec.interactive or spec.tty:
        return await _attach_main(client, vm.id, spec.tty)
    code: int | None = None
    error: str | None = None
    async for rec in client.logs(vm.id, follow=True):
        if rec.kind == "x":
            word, _, rest = rec.payload.partition(b" ")
            if word == b"exit":
                code = int(rest)
            elif word == b"error":
                error = rest.decode(errors="replace")
            continue
        fmt.write_record(rec, timestamps=False)
    if error:
        print(f"hypr: error: {error}", file=sys.stderr)
    if code is None:
        try:
            code = await client.wait_vm(vm.id)
            vm = await client.get_vm(vm.id)
            if vm.error:
                print(f"hypr: error: {vm.error}", file=sys.stderr)
        except Exception:
            print("hypr: error: the VM ended without reporting an exit code", file=sys.stderr)
            code = 125
    return code


async def _attach_main(client, vm_id: str, tty: bool) -> int:
    from hypr_tui.terminal import pump_session

    rows, cols = fmt.terminal_size()
    agent, session = await client.attach_main(vm_id, rows, cols)
    try:
        code = await pump_session(session, interactive=True, tty=tty)
    finally:
        await agent.close()
    try:
        await asyncio.wait_for(client.wait_vm(vm_id), 30)
    except Exception:
        pass
    return code


async def cmd_create(client, args) -> int:
    args.detach = True
    return await cmd_run(client, args, start=False)


async def cmd_start(client, args) -> int:
    rc = 0
    for ref in args.vms:
        try:
            await client.start_vm(ref)
            print(ref)
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_ps(client, args) -> int:
    vms = await client.list_vms(all=args.all)
    if args.quiet:
        for vm in vms:
            print(vm.short_id)
    elif args.format == "json":
        for vm in vms:
            print(json.dumps(fmt.vm_row_json(vm)))
    else:
        print(fmt.table(["VM ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"],
                        [fmt.vm_row(vm) for vm in vms]))
    return 0


async def cmd_logs(client, args) -> int:
    tail = None if args.tail == "all" else _int_arg(args.tail, "--tail", minimum=0)
    await client.get_vm(args.vm)
    async for rec in client.logs(args.vm, follow=args.follow, tail=tail):
        if rec.kind != "x":
            fmt.write_record(rec, timestamps=args.timestamps)
    return 0


async def cmd_exec(client, args) -> int:
    from hypr_engine.models import ExecOptions
    from hypr_tui.terminal import pump_session

    if not args.cmd:
        raise UsageError("exec needs a command after the VM")
    env = [_env_item(e) for e in args.env]
    rows, cols = fmt.terminal_size()
    options = ExecOptions(argv=args.cmd, env=[e for e in env if e], workdir=args.workdir, user=args.user,
                          tty=args.tty, interactive=args.interactive, rows=rows, cols=cols)
    agent, session = await client.exec(args.vm, options)
    try:
        return await pump_session(session, interactive=args.interactive, tty=args.tty)
    finally:
        await agent.close()


async def cmd_stop(client, args) -> int:
    if args.time is not None and args.time < 0:
        raise UsageError("--time must not be negative")
    rc = 0
    for ref in args.vms:
        try:
            await client.stop_vm(ref, timeout=args.time)
            print(ref)
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_rm(client, args) -> int:
    rc = 0
    for ref in args.vms:
        try:
            await client.remove_vm(ref, force=args.force)
            print(ref)
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_wait(client, args) -> int:
    rc = 0
    for ref in args.vms:
        try:
            print(await client.wait_vm(ref))
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_inspect(client, args) -> int:
    out = []
    rc = 0
    for ref in args.vms:
        try:
            out.append(fmt.vm_inspect(await client.get_vm(ref)))
        except _hypr_error() as exc:
            rc = _report(exc)
    print(json.dumps(out, indent=4))
    return rc


async def cmd_top(client, args) -> int:
    procs = await client.processes(args.vm)
    rows = [[p.get("pid", ""), p.get("uid", ""), p.get("state", ""), p.get("rss_kb", ""), p.get("cmdline") or p.get("comm", "")]
            for p in procs]
    print(fmt.table(["PID", "UID", "STATE", "RSS KB", "COMMAND"], rows))
    return 0


async def cmd_load(client, args) -> int:
    from pathlib import Path

    images = await client.load_image(Path(args.input))
    for img in images:
        for tag in img.tags or [img.id]:
            print(f"Loaded image: {tag}" if tag != img.id else f"Loaded image ID: {img.id}")
    return 0


async def cmd_import(client, args) -> int:
    from pathlib import Path

    img = await client.import_image(Path(args.tarball), args.ref)
    print(img.id)
    return 0


async def cmd_images(client, args) -> int:
    images = await client.list_images()
    if args.quiet:
        for img in images:
            print(img.short_id)
    elif args.format == "json":
        for img in images:
            print(json.dumps(fmt.image_row_json(img)))
    else:
        rows = []
        for img in images:
            rows += fmt.image_rows(img)
        print(fmt.table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows))
    return 0


async def cmd_rmi(client, args) -> int:
    rc = 0
    for ref in args.images:
        try:
            for line in await client.remove_image(ref, force=args.force):
                print(line)
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_system(client, args) -> int:
    if args.system_command != "info":
        raise UsageError("usage: hypr system info")
    info = await client.system_info()
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(fmt.system_info_text(info))
    return 0


COMMANDS: dict[str, Callable[..., Coroutine[Any, Any, int]]] = {
    "run": cmd_run, "create": cmd_create, "start": cmd_start, "ps": cmd_ps, "logs": cmd_logs,
    "exec": cmd_exec, "stop": cmd_stop, "rm": cmd_rm, "wait": cmd_wait, "inspect": cmd_inspect,
    "top": cmd_top, "load": cmd_load, "import": cmd_import, "images": cmd_images, "rmi": cmd_rmi,
    "system": cmd_system,
}


# --- argument helpers --------------------------------------------------------------------

def _spec_from_args(args):
    from hypr_engine.models import VmSpec

    env: list[str] = []
    for path in args.env_file:
        env += _read_env_file(path)
    env += [e for e in (_env_item(x) for x in args.env) if e]
    entrypoint = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return VmSpec(
        image=args.image, name=args.name, command=cmd or None, entrypoint=entrypoint, env=env,
        workdir=_abs_path(args.workdir, "--workdir"), user=args.user or None, hostname=args.hostname,
        cpus=parse_cpus(args.cpus), memory_mb=parse_memory(args.memory), auto_remove=args.rm,
        interactive=args.interactive, tty=args.tty, stop_timeout=args.stop_timeout,
    )


def _env_item(item: str) -> str | None:
    """`KEY=VALUE` as is; `KEY` takes the host's value (dropped if unset), as Docker does."""
    key, sep, value = item.partition("=")
    if not key or any(c.isspace() for c in key):
        raise UsageError(f"invalid environment variable {item!r}: expected KEY=VALUE")
    if sep:
        return item
    return f"{key}={os.environ[key]}" if key in os.environ else None


def _read_env_file(path: str) -> list[str]:
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror}") from None
    out = []
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            item = _env_item(line)
            if item:
                out.append(item)
    return out


def _abs_path(value: str | None, flag: str) -> str | None:
    if value is not None and not value.startswith("/"):
        raise UsageError(f"{flag} must be an absolute path, got {value!r}")
    return value


def parse_memory(value: str) -> int:
    """Docker's memory syntax (`512m`, `1g`, bytes without a unit) in MiB; at least 64 MiB."""
    text = value.strip().lower()
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    unit = 1
    if text.endswith(("kb", "mb", "gb")):
        unit = units[text[-2]]
        text = text[:-2]
    elif text and text[-1] in units:
        unit = units[text[-1]]
        text = text[:-1]
    try:
        number = float(text)
    except ValueError:
        raise UsageError(f"invalid --memory {value!r}: use a number with b, k, m or g (e.g. 512m)") from None
    mib = int(number * unit) >> 20
    if mib < 64:
        raise UsageError(f"invalid --memory {value!r}: a VM needs at least 64m")
    if mib > 1 << 20:
        raise UsageError(f"invalid --memory {value!r}: more than 1 TiB")
    return mib


def parse_cpus(value: str) -> int:
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"invalid --cpus {value!r}: expected a number") from None
    if not 0 < number <= 64:
        raise UsageError(f"invalid --cpus {value!r}: must be between 0 and 64")
    return max(1, round(number + 0.4999))  # a VM has whole vCPUs: round up


def _int_arg(value: str, flag: str, *, minimum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"invalid {flag} {value!r}: expected a whole number") from None
    if number < minimum:
        raise UsageError(f"invalid {flag} {value!r}: must be at least {minimum}")
    return number


def _hypr_error():
    from hypr_engine.errors import HyprError

    return HyprError


def _report(exc) -> int:
    print(f"hypr: error: {exc.message}", file=sys.stderr)
    if getattr(exc, "detail", None):
        print(exc.detail, file=sys.stderr)
    return exc.exit_code


async def _main(args) -> int:
    from hypr_engine.client import HyprClient

    client = await HyprClient.connect()
    try:
        return await COMMANDS[args.command](client, args)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        raise SystemExit(0)
    from hypr_engine.errors import HyprError

    try:
        code = asyncio.run(_main(args))
    except UsageError as exc:
        print(f"hypr: error: {exc}", file=sys.stderr)
        code = 125
    except HyprError as exc:
        code = _report(exc)
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    raise SystemExit(code)


if __name__ == "__main__":
    main()
