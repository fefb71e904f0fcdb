"""PNG plots of a benchmark run (matplotlib, the ``turnstate[bench]`` extra)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from turnstate.bench.results import Run


class PlotsUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotsUnavailableError(
            "--plot needs matplotlib: pip install 'turnstate[bench]' (or pip install matplotlib)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(url: str) -> str:
    """A storage's URL, short enough for a legend: no query but the cluster flag, no long paths."""
    base, _, query = url.partition("?")
    if "cluster=1" in query.split("&"):
        base += " (cluster)"
    return base if len(base) <= 32 else f"{base[:14]}…{base[-16:]}"


def _caption(run: Run) -> str:
    cpu = run.machine.get("cpu", "")
    cores = run.machine.get("cores", "")
    return f"{run.date}, {cpu}, {cores} cores; {run.command}"


def _finish(plt: Any, figure: Any, axes: Any, caption: str, path: Path, *, outside: bool = False) -> None:
    """Legend (beside the plot when ``outside``), the run's caption at the foot, and the PNG written."""
    if outside:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        axes.legend(fontsize=7)
    lines = textwrap.wrap(caption, 200)
    figure.text(0.01, 0.01, "\n".join(lines), fontsize=5.5, va="bottom")
    figure.tight_layout(rect=(0, 0.015 * (len(lines) + 1), 1, 1))
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _throughput(run: Run, axes: Any) -> None:
    for number, result in enumerate(run.storages):
        color = f"C{number % 10}"
        levels = [row.conversations for row in result.concurrency]
        rates = [row.turnstate.turns_per_second for row in result.concurrency]
        axes.plot(levels, rates, "o-", color=color, label=f"turnstate, {_label(result.url)}")
        peers = result.concurrency[0].peers if result.concurrency else []
        for index, peer in enumerate(peers):
            rates = [row.peers[index].turns_per_second for row in result.concurrency]
            style = "x--" if index == 0 else "^:"
            axes.plot(
                levels, rates, style, color=color, alpha=0.7, label=f"{peer.subject}, {_label(result.url)}"
            )
    axes.set(xscale="log", yscale="log", xlabel="concurrent conversations", ylabel="turns per second")
    axes.set_title("Throughput: turnstate per storage (solid), peers on the same turn (dashed, dotted)")
    axes.grid(True, which="both", alpha=0.3)


def _latency(run: Run, axes: Any) -> None:
    names = [_label(result.url) for result in run.storages]
    levels = sorted({row.conversations for result in run.storages for row in result.concurrency})
    width = 0.8 / max(1, len(levels))
    for offset, level in enumerate(levels):
        for index, result in enumerate(run.storages):
            row = next((r for r in result.concurrency if r.conversations == level), None)
            if row is None:
                continue
            x = index + (offset - (len(levels) - 1) / 2) * width
            sample = row.turnstate
            axes.bar(
                x,
                sample.p50_ms,
                width * 0.9,
                color=f"C{offset}",
                label=f"{level} conversations" if index == 0 else None,
            )
            axes.vlines(x, sample.p50_ms, sample.p99_ms, color="black", linewidth=1)
            axes.plot([x], [sample.p95_ms], "k_", markersize=6)
            axes.plot([x], [sample.p99_ms], "kv", markersize=3)
    axes.set_xticks(range(len(names)), names, rotation=15, fontsize=7)
    axes.set(yscale="log", ylabel="turn latency, ms (bar p50, tick p95, triangle p99)")
    axes.set_title("Turn latency percentiles per storage and concurrency")
    axes.grid(True, axis="y", which="both", alpha=0.3)


def _document_size(run: Run, axes: Any) -> None:
    for result in run.storages:
        sizes = [row.document_kb for row in result.sizes]
        axes.plot(
            sizes, [row.turnstate.turns_per_second for row in result.sizes], "o-", label=_label(result.url)
        )
    axes.set(xscale="log", yscale="log", xlabel="conversation document size, KB", ylabel="turns per second")
    axes.set_title("Throughput by document size (8 concurrent conversations)")
    axes.grid(True, which="both", alpha=0.3)


_PLOTS = (
    ("throughput.png", _throughput, True),
    ("latency.png", _latency, False),
    ("document-size.png", _document_size, True),
)


def write_plots(run: Run, directory: Path) -> list[Path]:
    """Write the plots of ``run`` into ``directory`` (created if missing); return their paths."""
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    caption = _caption(run)
    paths = []
    for name, draw, legend_beside in _PLOTS:
        figure, axes = plt.subplots(figsize=(10, 5.5))
        draw(run, axes)
        paths.append(directory / name)
        _finish(plt, figure, axes, caption, paths[-1], outside=legend_beside)
    return paths
