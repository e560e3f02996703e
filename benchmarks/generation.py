"""Generation: the project's concurrent design against the seed's sequential one, same run, same fake.

Both go through the real ``AnthropicLLM`` (anthropic SDK, httpx2 pool) against the loopback
Anthropic fake answering every call after a fixed latency. The fake runs in its own process
(``anthropic_process``) so that its CPU is not billed to the client.

- project: ``llm.generate(skills)``, every difficulty of every skill under one ``max_concurrency``
  bound (10 for one skill: its ten difficulties at once; ``PROJECT_BOUND`` for batches);
- seed: the same calls one after another (ten per skill, skills in turn): ``generate([skill])``
  with ``max_concurrency=1`` for each skill, the seed's loop, with the same prompt and parser;
- bound: calls × latency ÷ min(bound, calls), what no client could beat at that concurrency.

The sequential design is run for the small sizes; for the largest (1,000 calls, 200 s at 200 ms)
it is computed as calls × latency, labelled "computed, not run", to keep ``make bench`` within its
budget. That figure is the least the sequential loop could take (measured at the small sizes it
costs a few ms more per call), so the speedup shown for it is not flattered.

Why 32 for batches: in production the bound is sized from the organisation's output-tokens-per-
minute limit, the one that binds for ~1,000 output tokens a call. A call holding its slot for
``latency`` seconds and writing ``tokens`` output tokens, ``bound ≈ OTPM × latency / (60 × tokens)``:
e.g. 200,000 OTPM, 10 s calls of 1,000 tokens → 33. 32 is that order of magnitude, and is what
``SKILL_PIPELINE_LLM_CONCURRENCY`` would be set to; the default (8) is for a small organisation.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from benchmarks.anthropic_process import AnthropicFakeProcess
from benchmarks.common import Check, Row, print_result, timed

TITLE = "Generation"
DESCRIPTION = (
    "The real `AnthropicLLM` (anthropic SDK, its httpx2 pool) against the loopback Anthropic fake, run in a "
    "process of its own and answering every call after a fixed latency. **project**: `llm.generate(skills)`, "
    "every difficulty of every skill under one `max_concurrency` bound (10 for one skill: its ten difficulties "
    "at once; 32 for batches). **sequential**: the seed's design, the same calls one after another, skill after "
    "skill (`generate([skill])` with `max_concurrency=1`). **lower bound**: calls × latency ÷ min(bound, calls); "
    "**waves**: ⌈calls ÷ bound⌉ × latency, the least when every call takes the same time. Timings exclude "
    "building the SDK client (once per process). For 100 skills the sequential design is *computed, not run* "
    "(1,000 calls × 200 ms = 200 s; the least it could take) to keep `make bench` within 10 minutes."
)

SINGLE_SKILL_BOUND = 10
PROJECT_BOUND = 32
LATENCY_SECONDS = 0.2
QUICK_LATENCY_SECONDS = 0.05
SIZES = (1, 10, 100)
QUICK_SIZES = (1, 3)
# Larger than this, the sequential design is computed rather than run (1,000 calls = 200 s).
MAX_SEQUENTIAL_CALLS = 100
TARGET_SPEEDUP_ONE_SKILL = 8.0
TARGET_WITHIN_BOUND = 1.3


def _skills(count: int, prefix: str):
    from skill_pipeline.models import Skill

    created = datetime(2024, 6, 1, tzinfo=timezone.utc)
    return [
        Skill(
            id=f"{prefix}-{i:04d}",
            name=f"Benchmark skill {prefix} {i}",
            description="Capacity planning, load testing, queueing delays and tail latency",
            created_at=created,
        )
        for i in range(count)
    ]


def _llm(fake: AnthropicFakeProcess, bound: int):
    """An ``AnthropicLLM`` whose client is built and whose first connection is open before timing."""
    from skill_pipeline.models import ScenarioRequest
    from skill_pipeline.resources.llm_anthropic import AnthropicLLM

    llm = AnthropicLLM(api_key=fake.api_key, base_url=fake.url, max_concurrency=bound, timeout_seconds=30, max_retries=0)
    warm = _skills(1, f"warm{bound}")[0]
    llm.write_scenarios(ScenarioRequest(skill=warm, difficulty=1))
    return llm


def _check_complete(result: dict, skills: list, label: str) -> None:
    for skill in skills:
        rows = result[skill.id].rows
        if len(rows) != 50:
            raise RuntimeError(f"generation benchmark ({label}): skill {skill.id} got {len(rows)} rows, not 50")


def run(quick: bool = False) -> list[Row]:
    latency = QUICK_LATENCY_SECONDS if quick else LATENCY_SECONDS
    sizes = QUICK_SIZES if quick else SIZES
    rows: list[Row] = []
    with AnthropicFakeProcess(latency) as fake:
        sequential_llm = _llm(fake, 1)
        for n in sizes:
            bound = SINGLE_SKILL_BOUND if n == 1 else PROJECT_BOUND
            llm = _llm(fake, bound)
            skills = _skills(n, f"n{n}")
            calls = 10 * n

            start_index = fake.calls()
            cpu0 = time.process_time()
            with timed() as project:
                result = llm.generate(skills)
            cpu = time.process_time() - cpu0
            stats = fake.stats(start_index)
            _check_complete(result, skills, "project")
            if stats["calls"] != calls or stats["statuses"] != {"200": calls} or stats["problems"]:
                raise RuntimeError(f"generation benchmark: unexpected traffic for {n} skills: {stats}")

            if calls <= MAX_SEQUENTIAL_CALLS:
                seq_skills = _skills(n, f"s{n}")
                with timed() as sequential:
                    for skill in seq_skills:  # the seed: skills one after another, ten calls each in turn
                        _check_complete(sequential_llm.generate([skill]), [skill], "sequential")
                sequential_s = sequential.seconds
                how = "measured"
            else:
                # calls × latency: what the sequential loop cannot beat, so the speedup is not flattered
                # (measured at the small sizes, it costs a few ms more per call than the latency).
                sequential_s = calls * latency
                how = "computed, not run"

            effective = min(bound, calls)
            lower_bound = calls * latency / effective
            # Calls go in waves when they all take the same time: ceil(calls / bound) latencies.
            waves = -(-calls // effective) * latency
            rows.append(
                {
                    "skills": n,
                    "calls": calls,
                    "latency_s": latency,
                    "concurrency_bound": bound,
                    "project_s": round(project.seconds, 3),
                    "sequential_s": round(sequential_s, 3),
                    "sequential": how,
                    "lower_bound_s": round(lower_bound, 3),
                    "waves_bound_s": round(waves, 3),
                    "speedup_vs_sequential": round(sequential_s / project.seconds, 2),
                    "project_vs_bound": round(project.seconds / lower_bound, 3),
                    "max_in_flight": stats["max_in_flight"],
                    "client_cpu_ms_per_call": round(1000 * cpu / calls, 2),
                }
            )
            llm.teardown_after_execution(None)
        sequential_llm.teardown_after_execution(None)
    return rows


def _skills_label(n: int) -> str:
    return f"{n} skill" if n == 1 else f"{n} skills"


def _bound_miss_note(row: Row) -> str:
    """Why the largest size is further than allowed from the bound: waves, client CPU, or the rest."""
    gap = row["project_s"] - row["lower_bound_s"]
    cpu_s = row["client_cpu_ms_per_call"] * row["calls"] / 1000
    budget_ms = 1000 * row["latency_s"] / row["concurrency_bound"]
    if row["waves_bound_s"] > row["lower_bound_s"] * 1.1 and row["project_s"] <= row["waves_bound_s"] * 1.15:
        return (
            f"waves: {row['calls']} calls at {row['concurrency_bound']} in flight take ⌈calls ÷ bound⌉ = "
            f"{row['waves_bound_s'] / row['latency_s']:.0f} latencies ({row['waves_bound_s']:.2f} s) when every call "
            "takes the same time; the measured time is within 15 % of that. More calls per batch (or a bound that "
            "divides the calls) closes it; with real, varied latencies the pool stays full and waves blur."
        )
    if row["client_cpu_ms_per_call"] > budget_ms:
        return (
            f"the client spent {row['client_cpu_ms_per_call']:.1f} ms of CPU per call ({cpu_s:.2f} s for {row['calls']} "
            f"calls) under one GIL, more than the {budget_ms:.1f} ms a call the bound leaves at this latency: the "
            "client, not the latency, sets the pace. Closing it: the SDK's async client (one event loop instead of "
            "threads), the calls split over processes (Dagster runs over partition ranges), or the Message Batches "
            "API for backfills."
        )
    return (
        f"{gap:.2f} s over the bound that neither waves nor client CPU ({cpu_s:.2f} s) explain: thread hand-offs and "
        "connection set-up on a 2-core machine shared with the fake's process. A warm connection pool (keep-alive "
        "connections opened before the batch) or an async client would close it."
    )


def checks(rows: list[Row]) -> list[Check]:
    one = min(rows, key=lambda r: r["skills"])
    most = max(rows, key=lambda r: r["skills"])
    speedup_ok = one["speedup_vs_sequential"] >= TARGET_SPEEDUP_ONE_SKILL
    bound_ok = most["project_vs_bound"] <= TARGET_WITHIN_BOUND
    return [
        Check(
            benchmark="generation",
            target=f"{_skills_label(one['skills'])}: ≥ {TARGET_SPEEDUP_ONE_SKILL:g}× faster than sequential",
            measured=f"{one['speedup_vs_sequential']:.1f}× ({one['project_s']:.2f} s vs {one['sequential_s']:.2f} s)",
            passed=speedup_ok,
            note=(
                ""
                if speedup_ok
                else f"one skill cannot take less than one latency ({one['latency_s']:g} s); the project took "
                f"{one['project_s']:.2f} s, so {one['project_s'] - one['lower_bound_s']:.2f} s went to the client "
                f"(starting the pool, building and parsing ten calls under one GIL, {one['client_cpu_ms_per_call']:.1f} ms "
                "of CPU a call). That overhead is fixed: at the issue's 200 ms (and at real latencies, seconds) it is a "
                "small share; at shorter latencies an async client would shrink it."
            ),
        ),
        Check(
            benchmark="generation",
            target=f"{_skills_label(most['skills'])}: within {TARGET_WITHIN_BOUND:g}× of calls × latency ÷ bound",
            measured=f"{most['project_vs_bound']:.2f}× ({most['project_s']:.2f} s vs {most['lower_bound_s']:.2f} s, "
            f"peak {most['max_in_flight']} in flight of {most['concurrency_bound']})",
            passed=bound_ok,
            note="" if bound_ok else _bound_miss_note(most),
        ),
    ]


def _sdk_connection_limits() -> str:
    """The pool ``AnthropicLLM``'s client gets: it passes only event hooks to ``DefaultHttpxClient``,
    so the SDK's default limits apply."""
    try:
        from anthropic._constants import DEFAULT_CONNECTION_LIMITS
    except ImportError:  # private module: the figure is lost, the benchmark is not
        return "unknown (anthropic._constants moved)"
    return (
        f"max_connections={DEFAULT_CONNECTION_LIMITS.max_connections}, "
        f"max_keepalive_connections={DEFAULT_CONNECTION_LIMITS.max_keepalive_connections}"
    )


def notes(rows: list[Row]) -> list[str]:
    most = max(rows, key=lambda r: r["skills"])
    rate = most["concurrency_bound"] / most["latency_s"]
    core_share = rate * most["client_cpu_ms_per_call"] / 1000
    capped = all(r["max_in_flight"] == min(r["concurrency_bound"], r["calls"]) for r in rows)
    out = [
        (
            "Nothing below the bound caps the concurrency: at every size the peak in flight seen by the fake is "
            "min(bound, calls)"
            if capped
            else "The peak in flight seen by the fake was below min(bound, calls) at some size: "
            + ", ".join(f"{r['skills']} skills {r['max_in_flight']} of {min(r['concurrency_bound'], r['calls'])}" for r in rows)
        )
        + f". `AnthropicLLM` builds its client with `anthropic.DefaultHttpxClient(event_hooks=...)`, so the SDK's pool "
        f"limits apply: {_sdk_connection_limits()}.",
        f"Client CPU is {most['client_cpu_ms_per_call']:.1f} ms per call (SDK request building, reply parsing, "
        f"validation). At {most['concurrency_bound']} calls per {most['latency_s']:g} s that is {core_share:.2f} of a "
        "core; real Claude latencies (seconds, not 200 ms) leave the client mostly idle: the rate limit is what binds.",
        "The production bound (`SKILL_PIPELINE_LLM_CONCURRENCY`, default 8) is sized from the organisation's "
        "output-tokens-per-minute limit, the one that binds at ~1,000 output tokens a call: bound ≈ OTPM × call "
        "seconds ÷ (60 × output tokens per call), e.g. 200,000 OTPM with 10 s calls of 1,000 tokens → 33. The 32 "
        "used here stands for such an organisation.",
    ]
    for row in rows:
        if row["waves_bound_s"] > row["lower_bound_s"] * 1.1:
            out.append(
                f"At {row['skills']} skills most of the gap to the lower bound is waves: {row['calls']} calls at "
                f"{row['concurrency_bound']} in flight are ⌈{row['calls']}/{row['concurrency_bound']}⌉ rounds of "
                f"{row['latency_s']:g} s ({row['waves_bound_s']:.2f} s), not {row['lower_bound_s']:.2f} s "
                f"(measured {row['project_s']:.2f} s)."
            )
    return out


if __name__ == "__main__":
    result_rows = run(quick="--quick" in sys.argv)
    print_result("generation", result_rows, checks(result_rows))
