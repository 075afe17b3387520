"""What each `hypr` action does: parse its arguments, call HyprClient, print.

One coroutine per action of actions.py (named there as `handler`). Engine
modules are imported inside the functions that need them, so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from hypr_tui import formatting as fmt


class UsageError(Exception):
    """Bad command-line input caught before any engine work."""


# --- commands ------------------------------------------------------------------------

async def cmd_run(client, args: argparse.Namespace, *, start: bool = True) -> int:
    spec = _spec_from_args(args)
    from hypr_tui.registry_cli import ensure_image  # a missing image is pulled first, as Docker does

    await ensure_image(client, spec.image)
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
    session = await client.attach_main(vm_id, rows, cols)
    try:
        code = await pump_session(session, interactive=True, tty=tty)
    finally:
        await session.close()
    try:
        await asyncio.wait_for(client.wait_vm(vm_id), 30)
    except Exception:
        pass
    return code


async def cmd_create(client, args) -> int:
    args.detach = True
    return await cmd_run(client, args, start=False)


async def cmd_start(client, args) -> int:
    return await _each(args.vms, client.start_vm)

async def cmd_ps(client, args) -> int:
    filters = [_filter_item(f) for f in args.filter]
    vms = [vm for vm in await client.list_vms(all=args.all or any(k == "status" for k, _ in filters))
           if all(fmt.vm_matches(vm, k, v) for k, v in filters)]
    if args.quiet:
        for vm in vms:
            print(vm.short_id)
    elif args.format == "json":
        for vm in vms:
            print(json.dumps(fmt.vm_row_json(vm)))
    elif args.format == "table":
        print(fmt.table(["VM ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
                        [fmt.vm_row(vm) for vm in vms]))
    else:
        for vm in vms:
            print(fmt.render_template(args.format, fmt.vm_row_json(vm)))
    return 0


def _filter_item(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or key not in ("name", "label", "status", "id"):
        raise UsageError(f"invalid filter {item!r}: use name=, label=KEY[=VALUE], status= or id=")
    if key == "status" and value not in ("created", "starting", "running", "stopping", "exited", "restarting",
                                         "removing"):
        raise UsageError(f"invalid status filter {value!r}")
    return key, value


async def cmd_logs(client, args) -> int:
    tail = None if args.tail == "all" else _int_arg(args.tail, "--tail", minimum=0)
    since = fmt.parse_time(args.since, "--since") if args.since else None
    until = fmt.parse_time(args.until, "--until") if args.until else None
    await client.get_vm(args.vm)
    async for rec in client.logs(args.vm, follow=args.follow, tail=tail):
        if rec.kind == "x":
            continue
        if since is not None and rec.time_ns < since * 1e9:
            continue
        if until is not None and rec.time_ns >= until * 1e9:
            if args.follow:
                continue
            break
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
    session = await client.exec(args.vm, options)
    try:
        return await pump_session(session, interactive=args.interactive, tty=args.tty)
    finally:
        await session.close()


async def cmd_stop(client, args) -> int:
    timeout = _timeout(args.time)
    return await _each(args.vms, lambda ref: client.stop_vm(ref, timeout=timeout))

async def cmd_rm(client, args) -> int:
    return await _each(args.vms, lambda ref: client.remove_vm(ref, force=args.force))

async def cmd_wait(client, args) -> int:
    rc = 0
    for ref in args.vms:
        try:
            print(await client.wait_vm(ref))
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def cmd_cp(client, args) -> int:
    from pathlib import Path

    src_vm, src_path = _vm_path(args.src)
    dest_vm, dest_path = _vm_path(args.dest)
    if bool(src_vm) == bool(dest_vm):
        raise UsageError("cp copies between a VM and the host: exactly one of SRC and DEST must be VM:PATH")
    if src_vm:
        await client.copy_from_vm(src_vm, src_path, Path(dest_path).absolute())
    else:
        await client.copy_to_vm(dest_vm, Path(os.path.abspath(src_path)), dest_path, archive=args.archive)
    return 0


def _vm_path(text: str) -> tuple[str | None, str]:
    """`VM:/path` -> (VM, /path); a host path (also one with a ':' after a '/') -> (None, path)."""
    head, sep, tail = text.partition(":")
    if sep and head and "/" not in head:
        return head, tail
    return None, text


async def cmd_restart(client, args) -> int:
    return await _each(args.vms, lambda ref: client.restart_vm(ref, timeout=_timeout(args.time)))


async def cmd_kill(client, args) -> int:
    return await _each(args.vms, lambda ref: client.kill_vm(ref, args.signal))


async def cmd_rename(client, args) -> int:
    await client.rename_vm(args.vm, args.new_name)
    return 0


async def cmd_stats(client, args) -> int:
    refs = args.vms or [vm.id for vm in await client.list_vms(all=args.all)]
    headers = ["VM ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS", "VMM RSS"]
    while True:
        samples = await client.stats(refs)
        rows = [fmt.stats_row(s) for s in samples]
        if not args.no_stream and sys.stdout.isatty():
            sys.stdout.write("\x1b[H\x1b[2J")
        print(fmt.table(headers, rows), flush=True)
        if args.no_stream:
            return 0
        await asyncio.sleep(1)


async def for_each(refs, operation, show=print) -> int:
    """Run `operation` on each reference and `show` what it returns; an error is reported
    and the rest go on (Docker's way with several names). Returns the last error's code."""
    rc = 0
    for ref in refs:
        try:
            show(await operation(ref))
        except _hypr_error() as exc:
            rc = _report(exc)
    return rc


async def inspect_each(refs, document) -> int:
    """`inspect` of several objects: one JSON array of `await document(ref)` for each found."""
    documents: list = []
    rc = await for_each(refs, document, documents.append)
    print(json.dumps(documents, indent=4))
    return rc


def print_lines(lines) -> None:
    for line in lines:
        print(line)


async def _each(refs, operation) -> int:
    """Run an operation per VM, printing each name as Docker does; the last error's code."""
    async def named(ref):
        await operation(ref)
        return ref

    return await for_each(refs, named)


def _timeout(value):
    if value is not None and value < 0:
        raise UsageError("--time must not be negative")
    return value


async def cmd_inspect(client, args) -> int:
    return await inspect_each(args.vms, lambda ref: _vm_document(client, ref))


async def _vm_document(client, ref: str) -> dict:
    return fmt.vm_inspect(await client.get_vm(ref))


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


async def cmd_events(client, args) -> int:
    from hypr_engine.events import Gap, parse_filters

    filters = parse_filters(args.filter)
    since = fmt.parse_time(args.since, "--since") if args.since else None
    until = fmt.parse_time(args.until, "--until") if args.until else None
    async for item in client.events(since_time=since, until_time=until, follow=True, filters=filters):
        if isinstance(item, Gap):
            if args.format == "json":
                print(json.dumps({"Gap": {"Missed": item.missed, "FirstSeq": item.first_seq,
                                          "LastSeq": item.last_seq}}), flush=True)
            else:
                print(f"hypr: warning: missed {item.missed} events (seq {item.first_seq}-{item.last_seq}): "
                      "reading too slowly", file=sys.stderr, flush=True)
            continue
        print(json.dumps(fmt.event_json(item)) if args.format == "json" else fmt.event_line(item), flush=True)
    return 0


async def cmd_system_info(client, args) -> int:
    info = await client.system_info()
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        print(fmt.system_info_text(info))
    return 0


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
        interactive=args.interactive, tty=args.tty, stop_timeout=_timeout(args.stop_timeout),
        stop_signal=args.stop_signal,
        restart=args.restart, labels=dict(_key_value(x, "label") for x in args.label),
        log_opts=dict(_key_value(x, "log option") for x in args.log_opt),
        health_cmd=args.health_cmd, health_interval=args.health_interval, health_timeout=args.health_timeout,
        health_retries=args.health_retries, health_start_period=args.health_start_period,
        no_healthcheck=args.no_healthcheck,
        mounts=_mounts_from_args(args),
        **_net_fields(args),
    )


def _mounts_from_args(args) -> list[dict]:
    """-v, --mount, --tmpfs (volumes_cli.py); relative bind sources resolve here, in the client."""
    from hypr_tui.volumes_cli import mounts_from_args

    return mounts_from_args(args)


def _net_fields(args) -> dict:
    from hypr_tui.net_cli import spec_network_fields

    return spec_network_fields(args)


def _key_value(item: str, what: str) -> tuple[str, str]:
    key, _, value = item.partition("=")
    if not key or any(c.isspace() for c in key):
        raise UsageError(f"invalid {what} {item!r}: expected KEY=VALUE")
    return key, value


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


