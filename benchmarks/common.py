"""What every benchmark shares: rows of figures, targets with a verdict, tables, timing.

A benchmark module exposes ``run(quick: bool = False) -> list[dict]`` (rows of figures, one dict a
row, the same keys in every row) and ``checks(rows) -> list[Check]`` (each issue target against
what was measured). The verdicts live here, in the benchmarks, never in unit tests: a slow CI
machine must not fail the build, it must show up as a MISS with its reason in RESULTS.md.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel

Row = dict[str, Any]

# Loopback only: nothing in a benchmark may reach for the internet (the Opik SDK's telemetry, the
# LiteLLM cost map it imports). Set before any benchmark imports the SDKs.
OFFLINE_ENV: dict[str, str] = {
    "OPIK_SENTRY_ENABLE": "false",
    "OPIK_ANALYTICS_ENABLE": "false",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "OPIK_CHECK_TLS_CERTIFICATE": "false",
}


def offline_environment() -> None:
    for name, value in OFFLINE_ENV.items():
        os.environ.setdefault(name, value)


class Check(BaseModel):
    """One target of the issue, what was measured, and, when missed, why and what would close it."""

    benchmark: str
    target: str
    measured: str
    passed: bool
    note: str = ""

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "MISS"


class Timer:
    """Wall seconds of a block, read after it ends (``perf_counter``: monotonic, high resolution)."""

    def __init__(self) -> None:
        self.seconds = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far: ``VmHWM`` of /proc/self/status.

    Not ``ru_maxrss``: Linux keeps a process's maxrss across fork and exec, so a measuring process
    started by a parent that holds 2.5 GiB (the fake's 10⁶ rows) reports the parent's 2.5 GiB
    whatever it used itself. ``VmHWM`` belongs to the address space, which exec replaces.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now, from /proc (the baseline a peak is compared with)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "–"
        if value == 0 or abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) >= 0.001 else f"{value:.2e}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def columns_of(rows: Sequence[Row]) -> list[str]:
    """Every key in first-seen order (rows of one benchmark may differ in optional keys)."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def markdown_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "_no rows_"
    cols = list(columns or columns_of(rows))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines)


def text_table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    """The same table, aligned for a terminal."""
    if not rows:
        return "(no rows)"
    cols = list(columns or columns_of(rows))
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    out = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def checks_table(checks: Sequence[Check]) -> str:
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    for check in checks:
        lines.append(f"| {check.target} | {check.measured} | **{check.verdict}** |")
    return "\n".join(lines)


def print_result(title: str, rows: Sequence[Row], checks: Sequence[Check]) -> None:
    print(f"\n== {title} ==")
    print(text_table(rows))
    for check in checks:
        print(f"  [{check.verdict}] {check.target}: {check.measured}")
        if not check.passed and check.note:
            print(f"         {check.note}")
