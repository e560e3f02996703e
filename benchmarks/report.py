"""Runs the benchmarks one after another and writes RESULTS.md: machine, date, figures, verdicts.

A benchmark that raises does not stop the others: its section says what failed, its verdict is an
ERROR, and the process exits non-zero. A missed target is a finding, not a failure: it is written
down with its reason and the exit status stays 0.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import traceback
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

from benchmarks.common import Check, Row, checks_table, markdown_table, print_result, timed

BENCHMARK_MODULES: tuple[str, ...] = (
    "benchmarks.generation",
    "benchmarks.promotion_scan",
    "benchmarks.sync",
    "benchmarks.sensor_tick",
    "benchmarks.read_paths",
    "benchmarks.production_volume",
)
RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
BUDGET_SECONDS = 600.0
PACKAGES = ("dagster", "anthropic", "httpx2", "opik", "pandas", "numpy", "pydantic", "werkzeug")


class BenchmarkResult(BaseModel):
    """One benchmark's outcome: its rows and verdicts, or the error that stopped it."""

    name: str
    title: str
    description: str
    rows: list[Row]
    checks: list[Check]
    notes: list[str]
    seconds: float
    error: str | None = None


def load(name: str) -> ModuleType:
    return importlib.import_module(name)


def run_one(module: Any, quick: bool) -> BenchmarkResult:
    """``module`` is anything with ``run(quick)`` and ``checks(rows)`` (``TITLE``, ``DESCRIPTION`` and
    ``notes(rows)`` are optional)."""
    name = getattr(module, "__name__", str(module)).rsplit(".", 1)[-1]
    title = getattr(module, "TITLE", name)
    description = getattr(module, "DESCRIPTION", "")
    rows: list[Row] = []
    with timed() as elapsed:
        try:
            rows = module.run(quick=quick)
            checks = module.checks(rows)
            notes = module.notes(rows) if hasattr(module, "notes") else []
            error = None
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            checks, notes = [], []
            error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
    return BenchmarkResult(
        name=name, title=title, description=description, rows=rows, checks=checks, notes=notes,
        seconds=elapsed.seconds, error=error,
    )


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except (OSError, ValueError):
        pass
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return {
        "CPUs": str(os.cpu_count()),
        "CPU model": model,
        "RAM": ram,
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "packages": ", ".join(versions),
    }


def budget_check(results: list[BenchmarkResult], total_seconds: float, quick: bool) -> Check:
    passed = total_seconds < BUDGET_SECONDS
    slowest = max(results, key=lambda r: r.seconds) if results else None
    return Check(
        benchmark="suite",
        target=f"`make bench` under {BUDGET_SECONDS / 60:g} minutes on this machine" + (" (quick run)" if quick else ""),
        measured=f"{total_seconds:.0f} s ("
        + ", ".join(f"{r.title.lower()} {r.seconds:.0f} s" for r in results)
        + ")",
        passed=passed,
        note=""
        if passed or slowest is None
        else f"{slowest.title} took {slowest.seconds:.0f} s; run its largest size less often (or computed) to close it.",
    )


def render(results: list[BenchmarkResult], total_seconds: float, quick: bool, when: datetime | None = None) -> str:
    when = when or datetime.now(timezone.utc)
    budget = budget_check(results, total_seconds, quick)
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python -m benchmarks{' --quick' if quick else ''}`) on "
        f"{when.strftime('%Y-%m-%d %H:%M UTC')}. Regenerate rather than edit: every figure below comes from that run.",
    ]
    if quick:
        lines += ["", "**Quick run: tiny sizes for a smoke test. These figures say nothing about the targets.**"]
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in machine().items()]

    lines += ["", "## Targets", "", "| benchmark | target | measured | verdict |", "|---|---|---|---|"]
    for result in results:
        if result.error:
            lines.append(f"| {result.title} | (all) | failed: {result.error.splitlines()[0]} | **ERROR** |")
        for check in result.checks:
            lines.append(f"| {result.title} | {check.target} | {check.measured} | **{check.verdict}** |")
    lines.append(f"| suite | {budget.target} | {budget.measured} | **{budget.verdict}** |")
    misses = [c for r in results for c in r.checks if not c.passed] + ([budget] if not budget.passed else [])
    if misses:
        lines += ["", "Why each MISS, and what would close it:", ""]
        lines += [f"- **{c.benchmark}: {c.target}** — {c.note}" for c in misses]

    for result in results:
        lines += ["", f"## {result.title}", ""]
        if result.description:
            lines += [result.description, ""]
        if result.error:
            lines += ["The benchmark failed:", "", "```", result.error.rstrip(), "```"]
            continue
        lines += [markdown_table(result.rows), "", checks_table(result.checks)]
        if result.notes:
            lines += ["", "Findings:", ""] + [f"- {note}" for note in result.notes]
        lines += ["", f"_{result.seconds:.1f} s for this benchmark._"]
    lines += ["", f"Total: {total_seconds:.0f} s.", ""]
    return "\n".join(lines)


def run_all(
    modules: list[Any] | None = None, quick: bool = False, echo: bool = True
) -> tuple[list[BenchmarkResult], float]:
    results: list[BenchmarkResult] = []
    with timed() as total:
        for module in modules if modules is not None else [load(name) for name in BENCHMARK_MODULES]:
            result = run_one(module, quick)
            if echo:
                if result.error:
                    print(f"\n== {result.title} ==\nFAILED: {result.error}", file=sys.stderr)
                else:
                    print_result(result.title, result.rows, result.checks)
            results.append(result)
    return results, total.seconds


def main(argv: list[str] | None = None, modules: list[Any] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmarks, print their figures and write RESULTS.md (machine, date, figures, verdicts).",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds in all (the smoke test's mode)")
    parser.add_argument(
        "--only", action="append", metavar="NAME",
        help="run only this benchmark (generation, promotion_scan, sync, sensor_tick, read_paths, production_volume); "
        "repeatable",
    )
    parser.add_argument(
        "--output", type=Path, default=None,
        help=f"where to write the results (default: {RESULTS_PATH.name} next to this file for a full run of "
        "every benchmark; nothing for --quick or --only, so a partial run never replaces the full figures)",
    )
    args = parser.parse_args(argv)

    if modules is None:
        names = list(BENCHMARK_MODULES)
        if args.only:
            unknown = [o for o in args.only if f"benchmarks.{o}" not in names]
            if unknown:
                parser.error(f"unknown benchmark(s) {unknown}; known: {[n.rsplit('.', 1)[1] for n in names]}")
            names = [n for n in names if n.rsplit(".", 1)[1] in args.only]
        modules = [load(name) for name in names]
    results, total = run_all(modules, quick=args.quick)

    output = args.output
    if output is None and not args.quick and not args.only:
        output = RESULTS_PATH
    budget = budget_check(results, total, args.quick)
    print(f"\n[{budget.verdict}] {budget.target}: {budget.measured}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        text = render(results, total, args.quick)
        # The hand-run section of production_volume (sizes too slow for `make bench`) is kept.
        from benchmarks.production_volume import HAND_SECTION

        previous = output.read_text(encoding="utf-8") if output.exists() else ""
        if HAND_SECTION in previous:
            text = text.rstrip("\n") + "\n\n" + HAND_SECTION + previous.split(HAND_SECTION, 1)[1]
        output.write_text(text, encoding="utf-8")
        print(f"results written to {output}")
    return 1 if any(r.error for r in results) else 0
