"""Health checks: configuration (image HEALTHCHECK + flags) and the observed state.

kestrel runs the check inside the guest (boot tags 14-18, PROTOCOL.md) and writes
`x health <status> <failing streak>` on each change and `x health-check <exit code>
<duration ms> <output>` per check to the log. The supervisor follows those
records into `health.json`, which `ps` and `inspect` read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypr_engine.errors import InvalidArgument

NS = 1_000_000_000
DEFAULT_INTERVAL_MS = 30_000
DEFAULT_TIMEOUT_MS = 30_000
DEFAULT_RETRIES = 3
KEEP_CHECKS = 5


@dataclass
class HealthConfig:
    argv: list[str]
    interval_ms: int = DEFAULT_INTERVAL_MS
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    retries: int = DEFAULT_RETRIES
    start_period_ms: int = 0


def from_image(healthcheck: dict[str, Any] | None) -> HealthConfig | None:
    """The image config's Healthcheck (durations in nanoseconds, Docker's format)."""
    if not healthcheck:
        return None
    argv = test_to_argv(healthcheck.get("Test") or [])
    if argv is None:
        return None

    def ms(key: str, default: int) -> int:
        value = healthcheck.get(key) or 0
        return int(value) // 1_000_000 if value else default

    return HealthConfig(
        argv=argv,
        interval_ms=ms("Interval", DEFAULT_INTERVAL_MS),
        timeout_ms=ms("Timeout", DEFAULT_TIMEOUT_MS),
        retries=int(healthcheck.get("Retries") or DEFAULT_RETRIES),
        start_period_ms=ms("StartPeriod", 0),
    )


def test_to_argv(test: list[str]) -> list[str] | None:
    """["CMD", a, b] -> [a, b]; ["CMD-SHELL", s] -> [/bin/sh, -c, s]; ["NONE"] or [] -> None."""
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return list(test[1:]) or None
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return ["/bin/sh", "-c", " ".join(test)]  # a bare string, as Docker accepts


def parse_duration_ms(value: str, flag: str) -> int:
    """Docker's durations: 30s, 1m30s, 500ms, 2h."""
    import re

    text = value.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidArgument(f"invalid {flag} {value!r}: use a duration such as 30s, 1m30s or 500ms")
    scale = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    return int(sum(float(n) * scale[u] for n, u in parts))


def merge(image: HealthConfig | None, *, cmd: str | None, interval: str | None, timeout: str | None,
          retries: int | None, start_period: str | None, disabled: bool) -> HealthConfig | None:
    """`run`'s --health-* flags over the image's HEALTHCHECK, as Docker merges them."""
    if disabled:
        return None
    config = image
    if cmd is not None:
        config = HealthConfig(argv=["/bin/sh", "-c", cmd], **({} if image is None else {
            "interval_ms": image.interval_ms, "timeout_ms": image.timeout_ms,
            "retries": image.retries, "start_period_ms": image.start_period_ms}))
    if config is None:
        if any(v is not None for v in (interval, timeout, retries, start_period)):
            raise InvalidArgument("--health-interval/-timeout/-retries/-start-period need a health check "
                                  "(--health-cmd, or a HEALTHCHECK in the image)")
        return None
    if interval is not None:
        config.interval_ms = _positive(parse_duration_ms(interval, "--health-interval"), "--health-interval")
    if timeout is not None:
        config.timeout_ms = _positive(parse_duration_ms(timeout, "--health-timeout"), "--health-timeout")
    if start_period is not None:
        config.start_period_ms = parse_duration_ms(start_period, "--health-start-period")
    if retries is not None:
        if retries < 1:
            raise InvalidArgument("--health-retries must be at least 1")
        config.retries = retries
    return config


def _positive(ms: int, flag: str) -> int:
    if ms < 1:
        raise InvalidArgument(f"{flag} must be more than zero")
    return ms


@dataclass
class HealthState:
    status: str = "starting"
    failing_streak: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)

    def restart(self) -> None:
        self.status, self.failing_streak = "starting", 0

    def add_check(self, time_ns: int, text: str) -> None:
        code, _, rest = text.partition(" ")
        duration, _, output = rest.partition(" ")
        self.checks.append({
            "End": time_ns / NS,
            "ExitCode": int(code) if code.lstrip("-").isdigit() else -1,
            "DurationMs": int(duration) if duration.isdigit() else 0,
            "Output": output,
        })
        del self.checks[:-KEEP_CHECKS]

    def to_json(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": self.checks}
