"""`vaxreg bench report`: the results section of docs/performance.md and its plots.

The section sits between `BEGIN_MARKER` and `END_MARKER`; text outside them is kept, so
the rest of the document can be written by hand. Plots are drawn from the `details`
conventions of `bench.results` for whatever results are present; a missing curve is
simply skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from os.path import relpath
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.results import Result, format_number, read_results

BEGIN_MARKER = "<!-- bench:results:begin -->"
END_MARKER = "<!-- bench:results:end -->"
CEILING_PREFIX = "ceiling."


def _latest(results: Iterable[Result]) -> dict[str, Result]:
    """The last result of each scenario name (files are read in order, appended in time)."""
    latest: dict[str, Result] = {}
    for result in results:
        latest[result.scenario] = result
    return latest


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _points(result: Result, key: str) -> list[dict[str, Any]]:
    value = result.details.get(key)
    if not isinstance(value, list):
        return []
    return [p for p in value if isinstance(p, dict)]


def plot_concurrency(result: Result, path: Path) -> bool:
    points = sorted(
        (p for p in _points(result, "series") if "concurrency" in p and "throughput" in p),
        key=lambda p: float(p["concurrency"]),
    )
    if not points:
        return False
    x = [float(p["concurrency"]) for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(x, [float(p["throughput"]) for p in points], marker="o", label=result.scenario)
    if result.ceiling is not None:
        left.axhline(
            result.ceiling,
            linestyle="--",
            color="grey",
            label=f"ceiling ({result.ceiling_unit or result.unit})",
        )
    for axis in (left, right):
        axis.set_xscale("log", base=2)
    left.set_xlabel("concurrency")
    left.set_ylabel(result.unit)
    left.set_title("throughput")
    left.legend()
    for name in ("p50_ms", "p95_ms", "p99_ms"):
        pairs = [(c, p[name]) for c, p in zip(x, points, strict=True) if p.get(name) is not None]
        if pairs:
            right.plot([c for c, _ in pairs], [v for _, v in pairs], marker="o", label=name[:-3])
    right.set_xlabel("concurrency")
    right.set_ylabel("latency (ms)")
    right.set_title("latency")
    right.legend()
    fig.suptitle(result.scenario)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_timeline(result: Result, path: Path) -> bool:
    points = sorted(
        (p for p in _points(result, "timeline") if "t_s" in p and "lag_ms" in p),
        key=lambda p: float(p["t_s"]),
    )
    if not points:
        return False
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot([float(p["t_s"]) for p in points], [float(p["lag_ms"]) for p in points])
    ax.set_xlabel("time into the run (s)")
    ax.set_ylabel("lag (ms)")
    ax.set_title(f"{result.scenario}: lag over time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def scaling_points(name: str, results: Sequence[Result]) -> list[dict[str, Any]]:
    """`details["scaling"]` of the latest result, or one point per result with a `size`."""
    mine = [r for r in results if r.scenario == name]
    if mine and _points(mine[-1], "scaling"):
        points = _points(mine[-1], "scaling")
    else:
        by_size: dict[int, dict[str, Any]] = {}
        for r in mine:
            size = r.details.get("size")
            if isinstance(size, int):
                by_size[size] = {"size": size, "rate": r.value, "seconds": r.details.get("seconds")}
        points = list(by_size.values())
    return sorted((p for p in points if "size" in p), key=lambda p: int(p["size"]))


def plot_scaling(name: str, points: list[dict[str, Any]], unit: str, path: Path) -> bool:
    if not points:
        return False
    sizes = [int(p["size"]) for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    timed = [(s, p["seconds"]) for s, p in zip(sizes, points, strict=True) if p.get("seconds")]
    if timed:
        left.loglog([s for s, _ in timed], [float(t) for _, t in timed], marker="o")
    left.set_xlabel("data size")
    left.set_ylabel("seconds")
    left.set_title("time")
    rated = [(s, p["rate"]) for s, p in zip(sizes, points, strict=True) if p.get("rate")]
    if rated:
        right.semilogx([s for s, _ in rated], [float(r) for _, r in rated], marker="o")
    right.set_xlabel("data size")
    right.set_ylabel(unit)
    right.set_title("rate")
    right.set_ylim(bottom=0)
    fig.suptitle(f"{name}: scaling with data size")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _table(results: Iterable[Result]) -> list[str]:
    rows = [
        "| scenario | value | ceiling | ratio | p50 ms | p95 ms | p99 ms | goal | met |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        ceiling = (
            f"{format_number(r.ceiling)} {r.ceiling_unit or r.unit}"
            if r.ceiling is not None
            else "-"
        )
        ratio = f"{r.ratio:.2f}" if r.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        rows.append(
            f"| {r.scenario} | {format_number(r.value)} {r.unit} | {ceiling} | {ratio} | "
            f"{format_number(r.p50_ms)} | {format_number(r.p95_ms)} | {format_number(r.p99_ms)} | "
            f"{r.goal or '-'} | {met} |"
        )
    return rows


def _machine_lines(results: Sequence[Result]) -> list[str]:
    machine = next((r.machine for r in results if r.machine), {})
    if not machine:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in (machine.get("versions") or {}).items() if v)
    started = sorted(r.started_at for r in results if r.started_at)
    when = f"{started[0]} to {started[-1]}" if started else "unknown"
    return [
        f"Measured {when} on {machine.get('cores')} cores, {machine.get('memory_gib')} GiB, "
        f"{machine.get('cpu_model')}.",
        "",
        f"Versions: {versions}." if versions else "",
        "",
    ]


def render_section(results: Sequence[Result], out: Path, plots_dir: Path) -> tuple[str, list[Path]]:
    """The markdown between the markers, and the plots it refers to (written)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    latest = _latest(results)
    ceilings = [r for n, r in latest.items() if n.startswith(CEILING_PREFIX)]
    scenarios = [r for n, r in latest.items() if not n.startswith(CEILING_PREFIX)]
    written: list[Path] = []

    def image(title: str, path: Path) -> str:
        written.append(path)
        return f"![{title}]({relpath(path, out.parent)})"

    lines = [BEGIN_MARKER, "", "## Measured results", "", *_machine_lines(results)]
    lines += [
        "Generated by `vaxreg bench report` from JSON results; each ratio is to a ceiling",
        "measured in the same run.",
        "",
    ]
    if scenarios:
        lines += ["### Scenarios", "", *_table(scenarios), ""]
    if ceilings:
        lines += ["### Ceilings", "", *_table(ceilings), ""]
    concurrency = [
        image(f"{r.scenario} against concurrency", path)
        for r in scenarios
        if plot_concurrency(r, path := plots_dir / f"{_slug(r.scenario)}-concurrency.png")
    ]
    if concurrency:
        lines += ["### Throughput and latency against concurrency", "", *concurrency, ""]
    timelines = [
        image(f"{r.scenario}: lag over time", path)
        for r in scenarios
        if plot_timeline(r, path := plots_dir / f"{_slug(r.scenario)}-timeline.png")
    ]
    if timelines:
        lines += ["### Lag over time", "", *timelines, ""]
    scaling = []
    for r in scenarios:
        points = scaling_points(r.scenario, results)
        path = plots_dir / f"{_slug(r.scenario)}-scaling.png"
        if len(points) > 1 and plot_scaling(r.scenario, points, r.unit, path):
            scaling.append(image(f"{r.scenario} scaling", path))
            scaling += ["", *_scaling_table(points, r.unit), ""]
    if scaling:
        lines += ["### Scaling with data size", "", *scaling]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n", written


def _scaling_table(points: list[dict[str, Any]], unit: str) -> list[str]:
    rows = [f"| size | seconds | {unit} |", "| ---: | ---: | ---: |"]
    for p in points:
        rows.append(
            f"| {int(p['size']):,} | {format_number(p.get('seconds'))} | "
            f"{format_number(p.get('rate'))} |"
        )
    return rows


def splice(document: str, section: str) -> str:
    """Replaces the marked section of `document`, or appends it."""
    begin, end = document.find(BEGIN_MARKER), document.find(END_MARKER)
    if begin != -1 and end > begin:
        return document[:begin] + section.rstrip("\n") + document[end + len(END_MARKER) :]
    separator = "\n" if document.endswith("\n") or not document else "\n\n"
    return document + ("" if not document else separator) + section


def write_report(
    result_files: Sequence[Path], out: Path, *, plots_dir: Path | None = None
) -> list[Path]:
    """Writes the results section into `out` and the plots; returns the files written."""
    results = [r for f in result_files for r in read_results(str(f))]
    if not results:
        raise ValueError("no results in " + ", ".join(map(str, result_files)))
    plots_dir = plots_dir or out.parent / "performance"
    section, plots = render_section(results, out, plots_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    existing = out.read_text(encoding="utf-8") if out.exists() else "# Performance\n"
    out.write_text(splice(existing, section), encoding="utf-8")
    return [out, *plots]
