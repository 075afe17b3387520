"""Live charts of one VM: CPU, memory, network and disk, from the app's ring buffer of
HyprClient.stats samples (the app polls every couple of seconds; see MetricsStore)."""

from __future__ import annotations

from collections import deque
from typing import Iterable

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from hypr_tui.tui import format as tf

HISTORY = 300  # samples kept per VM: 10 minutes at one sample each 2 s


class MetricsStore:
    """A ring buffer of (time, sample) per VM."""

    def __init__(self, maxlen: int = HISTORY) -> None:
        self.maxlen = maxlen
        self._history: dict[str, deque[tuple[float, dict]]] = {}

    def add(self, vm_id: str, t: float, sample: dict) -> None:
        self._history.setdefault(vm_id, deque(maxlen=self.maxlen)).append((t, sample))

    def seed(self, vm_id: str, pairs: Iterable[tuple[float, dict]]) -> None:
        for t, sample in pairs:
            self.add(vm_id, t, sample)

    def history(self, vm_id: str) -> list[tuple[float, dict]]:
        return [(t, s) for t, s in self._history.get(vm_id, ()) if "error" not in s]

    def latest(self, vm_id: str) -> dict | None:
        samples = self._history.get(vm_id)
        if not samples:
            return None
        return samples[-1][1]

    def forget(self, keep: set[str]) -> None:
        for vm_id in list(self._history):
            if vm_id not in keep:
                del self._history[vm_id]


def rates(history: list[tuple[float, dict]], key: str) -> tuple[list[float], list[float]]:
    """(times, bytes a second) from a counter's consecutive samples."""
    xs, ys = [], []
    for (t0, a), (t1, b) in zip(history, history[1:]):
        if t1 > t0 and key in a and key in b:
            xs.append(t1)
            ys.append(max(0.0, (b[key] - a[key]) / (t1 - t0)))
    return xs, ys


class Chart(PlotextPlot):
    DEFAULT_CSS = "Chart { height: 1fr; width: 1fr; }"


class MetricsScreen(Screen):
    BINDINGS = [Binding("escape,q", "back", "Back")]

    def __init__(self, vm) -> None:
        super().__init__()
        self.vm = vm

    def compose(self) -> ComposeResult:
        yield Static(id="metrics-title", classes="screen-title")
        with Grid(id="charts"):
            yield Chart(id="chart-cpu")
            yield Chart(id="chart-mem")
            yield Chart(id="chart-net")
            yield Chart(id="chart-disk")
        yield Footer()

    def on_mount(self) -> None:
        self.app.poll_stats()  # type: ignore[attr-defined]
        self.refresh_data()

    def action_back(self) -> None:
        self.app.pop_screen()

    def refresh_data(self) -> None:
        app = self.app
        for vm in app.vms:  # type: ignore[attr-defined]
            if vm.id == self.vm.id:
                self.vm = vm
        history = app.metrics.history(self.vm.id)  # type: ignore[attr-defined]
        latest = app.metrics.latest(self.vm.id)  # type: ignore[attr-defined]
        now = app.clock()  # type: ignore[attr-defined]
        self._title(history, latest)
        xs = [t - now for t, _ in history]
        self._plot("chart-cpu", f"CPU % ({self.vm.spec.cpus} vCPU)",
                   [("cpu", xs, [s.get("cpu_percent", 0.0) for _, s in history])],
                   ylim=(0, 1.05 * max(100.0 * self.vm.spec.cpus,
                                       max([s.get("cpu_percent", 0) for _, s in history], default=0))))
        limit_mib = (history[-1][1].get("mem_limit", 0) >> 20) if history else self.vm.spec.memory_mb
        self._plot("chart-mem", f"Memory MiB (of {limit_mib})",
                   [("used", xs, [s.get("mem_used", 0) / (1 << 20) for _, s in history])],
                   ylim=(0, 1.05 * max(1, limit_mib)))
        series = []
        for key, label in (("net_rx", "rx"), ("net_tx", "tx")):
            rx, ry = rates(history, key)
            series.append((label, [t - now for t in rx], [v / 1024 for v in ry]))
        self._plot("chart-net", "Network KiB/s", series)
        series = []
        for key, label in (("block_read", "read"), ("block_write", "write")):
            rx, ry = rates(history, key)
            series.append((label, [t - now for t in rx], [v / 1024 for v in ry]))
        self._plot("chart-disk", "Disk KiB/s", series)

    def _title(self, history, latest) -> None:
        parts = [f"[b]metrics[/b] {escape(self.vm.name)}"]
        if self.vm.state != "running":
            parts.append(f"[yellow]{escape(self.vm.state)}[/yellow]: no new samples")
        elif latest is None:
            parts.append("waiting for the first sample…")
        elif "error" in latest:
            parts.append(f"[red]{escape(str(latest['error']))}[/red]")
        else:
            parts.append(f"CPU {latest['cpu_percent']:.1f}%")
            parts.append(f"mem {tf.short_size(latest['mem_used'])}/{tf.short_size(latest['mem_limit'])}")
            parts.append(f"pids {latest.get('pids', '?')}")
            parts.append(f"VMM RSS {tf.short_size(latest.get('vmm_rss', 0))}")
        parts.append(f"{len(history)} samples")
        self.query_one("#metrics-title", Static).update(" │ ".join(parts))

    def _plot(self, chart_id: str, title: str, series, ylim: tuple[float, float] | None = None) -> None:
        chart = self.query_one(f"#{chart_id}", Chart)
        plt = chart.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(title)
        for label, xs, ys in series:
            if xs:
                plt.plot(xs, ys, label=label if len(series) > 1 else None, marker="braille")
        if ylim is None:
            # Headroom above the highest point: plotext draws a point on the very edge past the frame.
            top = max((max(ys, default=0) for _, _, ys in series), default=0)
            ylim = (0, top * 1.2 if top > 0 else 1)
        plt.ylim(*ylim)
        span = max(10.0, max((-min(xs, default=0) for _, xs, _ in series), default=0))
        # A little room past "now" too: a point on the frame is drawn outside it.
        plt.xlim(-span * 1.02, span * 0.03)
        step = next((s for s in (10, 30, 60, 120, 300, 600) if span / s <= 4), 600)
        ticks = [-step * i for i in range(int(span // step), -1, -1)]
        plt.xticks(ticks, [f"{int(t)}s" if t else "now" for t in ticks])
        chart.refresh()
