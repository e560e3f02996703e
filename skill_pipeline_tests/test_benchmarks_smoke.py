"""The benchmarks run, at tiny sizes, and hand back figures of the right shape.

No timing is asserted here: speed targets live in the benchmarks (``make bench`` writes PASS or MISS
with the reason to ``benchmarks/RESULTS.md``); a slow CI machine must not fail the build. What is
asserted is that each benchmark measures what it says (the right sizes, the calls made, the items
written by its scenario definition) and that the report holds every section.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import generation, promotion_scan, read_paths, sensor_tick, sync
from benchmarks.common import Check, markdown_table
from benchmarks.report import BenchmarkResult, main, render, run_all

EXPECTED_COLUMNS: dict[str, set[str]] = {
    "generation": {
        "skills", "calls", "latency_s", "concurrency_bound", "project_s", "sequential_s", "sequential",
        "lower_bound_s", "waves_bound_s", "speedup_vs_sequential", "project_vs_bound", "max_in_flight",
        "client_cpu_ms_per_call",
    },
    "promotion_scan": {
        "answers", "challenges", "eligible", "load_s", "judge_scores_s", "score_s", "total_s", "us_per_answer",
        "baseline_rss_mib", "peak_rss_mib", "kib_per_answer", "db_build_s",
    },
    "sync": {"backend", "scenario", "items_written", "items_deleted", "writes", "seconds", "dataset_items", "version"},
    "sensor_tick": {
        "tick", "active_skills", "evaluation_s", "apply_partitions_s", "partitions_added", "run_requests",
        "run_keys_repeated", "cursor_bytes", "run_requests_serialized_bytes", "skills_requested",
    },
    "read_paths": {"kind", "path", "size", "latency_s", "requests", "seconds"},
}
MODULES = [generation, promotion_scan, sync, sensor_tick, read_paths]


@pytest.fixture(scope="module")
def quick_results() -> dict[str, BenchmarkResult]:
    """Every benchmark once at its quick size (about 15 s in all), shared by the tests below."""
    results, _ = run_all(MODULES, quick=True, echo=False)
    return {result.name: result for result in results}


@pytest.mark.parametrize("name", sorted(EXPECTED_COLUMNS))
def test_each_benchmark_returns_rows_checks_and_notes(quick_results, name):
    result = quick_results[name]
    assert result.error is None, result.error
    assert result.rows
    for row in result.rows:
        assert EXPECTED_COLUMNS[name] <= set(row), f"{name}: missing {EXPECTED_COLUMNS[name] - set(row)}"
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value) and value >= 0, f"{name}.{key} = {value}"
    assert result.checks and all(isinstance(c, Check) and c.target and c.measured for c in result.checks)
    # A missed target always says why.
    assert all(c.passed or c.note for c in result.checks)
    assert all(isinstance(note, str) and note for note in result.notes)


def test_generation_measures_the_calls_it_claims(quick_results):
    rows = quick_results["generation"].rows
    assert [r["skills"] for r in rows] == list(generation.QUICK_SIZES)
    for row in rows:
        assert row["calls"] == 10 * row["skills"]
        assert 1 <= row["max_in_flight"] <= min(row["concurrency_bound"], row["calls"])
        assert row["sequential"] == "measured"
        assert row["lower_bound_s"] == pytest.approx(row["calls"] * row["latency_s"] / min(row["concurrency_bound"], row["calls"]), rel=1e-3)
        # Sequential calls each wait the fake's latency: the sequential loop cannot beat calls x latency.
        assert row["sequential_s"] >= row["calls"] * row["latency_s"]


def test_promotion_scan_reads_every_answer_of_each_size(quick_results):
    rows = quick_results["promotion_scan"].rows
    assert [r["answers"] for r in rows] == list(promotion_scan.QUICK_SIZES)
    for row in rows:
        assert row["challenges"] == promotion_scan.QUICK_CHALLENGES
        assert row["peak_rss_mib"] >= row["baseline_rss_mib"] > 0
        assert row["total_s"] == pytest.approx(row["load_s"] + row["judge_scores_s"] + row["score_s"], abs=2e-3)


def test_sync_runs_the_four_scenarios_on_both_backends(quick_results):
    rows = quick_results["sync"].rows
    backends = {r["backend"] for r in rows}
    assert len(backends) == 2, rows
    for backend in backends:
        mine = [r for r in rows if r["backend"] == backend]
        assert [r["scenario"] for r in mine] == [
            "first sync (50 items)", "rerun, nothing changed", "promotes 5 items", "rerun after the promotion"
        ]
        first = mine[0]
        assert (first["items_written"], first["items_deleted"], first["dataset_items"]) == (50, 0, 50)
        assert all(r["writes"] == r["items_written"] + r["items_deleted"] for r in mine)
    opik = [r for r in rows if "http_requests" in r]
    assert len(opik) == 4 and all(r["http_requests"] >= r["write_requests"] for r in opik)


def test_sensor_tick_evaluates_three_ticks_over_every_skill(quick_results):
    rows = quick_results["sensor_tick"].rows
    assert len(rows) == 3
    assert all(r["active_skills"] == sensor_tick.QUICK_SKILLS for r in rows)
    assert rows[0]["partitions_added"] == sensor_tick.QUICK_SKILLS
    assert rows[0]["cursor_bytes"] > 0


def test_read_paths_measure_each_path_and_both_judge_lookups(quick_results):
    rows = quick_results["read_paths"].rows
    answers = [r for r in rows if r["kind"] == "answers"]
    assert {r["path"] for r in answers} == set(read_paths.PATHS)
    by_path = {r["path"]: r for r in answers}
    assert by_path["rpc"]["requests"] < by_path["keyset"]["requests"]
    assert all(r["peak_rss_mib"] > 0 for r in answers)
    judge = {r["path"]: r for r in rows if r["kind"] == "judge"}
    assert judge["batched"]["requests"] < judge["per_challenge"]["requests"] == read_paths.QUICK_JUDGE_SIZES[0]
    assert judge["batched"]["scores"] == judge["per_challenge"]["scores"]


def test_the_report_holds_machine_targets_and_a_section_per_benchmark(quick_results):
    text = render(list(quick_results.values()), total_seconds=12.0, quick=True)
    assert "## Machine" in text and "| CPUs |" in text and "| Python |" in text
    assert "## Targets" in text
    for module in MODULES:
        assert f"## {module.TITLE}" in text
    assert "Quick run" in text
    assert text.count("**PASS**") + text.count("**MISS**") >= sum(len(r.checks) for r in quick_results.values())


def _stub(title: str, fail: bool = False) -> SimpleNamespace:
    def run(quick: bool = False) -> list[dict]:
        if fail:
            raise RuntimeError("the stub benchmark broke")
        return [{"size": 1 if quick else 100, "seconds": 0.5}]

    def checks(rows: list[dict]) -> list[Check]:
        return [Check(benchmark=title, target="under a second", measured=f"{rows[0]['seconds']} s", passed=True)]

    return SimpleNamespace(__name__=f"benchmarks.{title}", TITLE=title, DESCRIPTION="a stub", run=run, checks=checks)


def test_main_writes_results_and_exits_nonzero_only_when_a_benchmark_breaks(tmp_path: Path, monkeypatch, capsys):
    default = tmp_path / "RESULTS.md"
    monkeypatch.setattr("benchmarks.report.RESULTS_PATH", default)

    # A quick run prints but does not replace the full figures unless told where to write.
    assert main(["--quick"], modules=[_stub("fine")]) == 0
    assert not default.exists()
    assert "under a second" in capsys.readouterr().out

    # A full run writes the default file; a broken benchmark is reported and fails the exit status.
    assert main([], modules=[_stub("fine"), _stub("broken", fail=True)]) == 1
    text = default.read_text()
    assert "## fine" in text and "| 100 | 0.5 |" in text
    assert "## broken" in text and "the stub benchmark broke" in text and "**ERROR**" in text

    out = tmp_path / "elsewhere" / "quick.md"
    assert main(["--quick", "--output", str(out)], modules=[_stub("fine")]) == 0
    assert "| 1 | 0.5 |" in out.read_text()


def test_markdown_table_takes_every_column_and_escapes_pipes():
    table = markdown_table([{"a": 1, "b": "x|y"}, {"a": 2_000_000, "c": None}])
    lines = table.splitlines()
    assert lines[0] == "| a | b | c |"
    assert lines[2] == "| 1 | x\\|y | – |"
    assert lines[3] == "| 2,000,000 | – | – |"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_production_volume_runs_end_to_end_at_its_quick_size():
    """`dagster dev` on the shipped instance (throwaway PostgreSQL), 2 new skills, the fake at 1 s: every
    skill gets its dataset, no paid call is thrown away, the figures have the right shape (≈ 40 s)."""
    from benchmarks import production_volume

    [row] = production_volume.run(quick=True)
    assert row["skills"] == production_volume.QUICK["skills"]
    assert row["skills_without_dataset"] == 0 and row["paid_calls_thrown_away"] == 0
    assert row["accepted_calls"] == 10 * row["skills"] and row["failed_runs"] == 0
    assert row["runs"] == row["skills"] and row["batch_runs"] == 0  # fewer than 8 new skills: a run each
    assert 1 <= row["peak_in_flight"] <= row["allowed_in_flight"]
    assert row["wall_s"] > 0 and row["llm_bound_s"] > 0
    checks = production_volume.checks([row])
    assert checks and all(c.passed or c.note for c in checks)
