"""Aggregation of experiment scores, the regression verdict, and prompt-version comparison.

A row is one dataset item's scores (``{metric: value}``, only the metrics that applied to it; see
``core.metrics``). Means are taken so that a metric that did not apply is never counted as 0 or 1:

- per metric: mean over the items it applied to;
- per item: mean of its applicable metrics;
- overall, per difficulty band and per source: mean of the item means in the group, so every
  item weighs the same whatever number of metrics applied to it, and a metric that applies to
  only a few real-world items cannot swing the overall figure as much as one that applies to all.

Items without a single score (nothing applied) are listed in ``items_without_scores`` and
excluded from every mean.
"""

from __future__ import annotations

import math
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Sequence

from pydantic import BaseModel, Field

from skill_pipeline.core.metrics import score_challenge, score_values
from skill_pipeline.models import DatasetItem, Source

DIFFICULTY_BANDS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10))
# Float noise must not turn an exact-boundary result into a failure (0.8 - 0.7 > 0.1 in floats).
_EPSILON = 1e-9


def difficulty_band(difficulty: int) -> str:
    for low, high in DIFFICULTY_BANDS:
        if low <= difficulty <= high:
            return f"{low}-{high}"
    raise ValueError(f"difficulty {difficulty} is outside 1-10")


class ScoreRow(BaseModel):
    """The scores of one dataset item in one experiment."""

    item_id: str
    difficulty: int = Field(ge=1, le=10)
    source: Source
    scores: dict[str, float]
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def mean(self) -> float | None:
        return sum(self.scores.values()) / len(self.scores) if self.scores else None


class GroupSummary(BaseModel):
    """Means for a group of items (a difficulty band or a source)."""

    items: int
    mean: float | None
    metric_means: dict[str, float]


class ExperimentSummary(BaseModel):
    items_scored: int
    items_without_scores: list[str] = Field(default_factory=list)
    overall_mean: float | None
    metric_means: dict[str, float]
    metric_counts: dict[str, int] = Field(description="items each metric applied to")
    by_band: dict[str, GroupSummary]
    by_source: dict[str, GroupSummary]
    input_tokens: int = 0
    output_tokens: int = 0

    def flat_metadata(self) -> dict[str, float | int]:
        """Flat ``name → number`` pairs for asset metadata (rounded to 4 places)."""
        out: dict[str, float | int] = {"items_scored": self.items_scored}
        if self.overall_mean is not None:
            out["mean"] = round(self.overall_mean, 4)
        out.update({f"mean/{name}": round(value, 4) for name, value in self.metric_means.items()})
        for prefix, groups in (("band", self.by_band), ("source", self.by_source)):
            for key, group in groups.items():
                if group.mean is not None:
                    out[f"{prefix}/{key}"] = round(group.mean, 4)
        out["input_tokens"] = self.input_tokens
        out["output_tokens"] = self.output_tokens
        return out


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _metric_means(rows: Iterable[ScoreRow]) -> dict[str, list[float]]:
    table: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for name, value in row.scores.items():
            table[name].append(value)
    return table


def _group(rows: list[ScoreRow]) -> GroupSummary:
    means = [m for m in (r.mean for r in rows) if m is not None]
    return GroupSummary(
        items=len(means),
        mean=_mean(means),
        metric_means={name: sum(v) / len(v) for name, v in sorted(_metric_means(rows).items())},
    )


RowLike = ScoreRow | tuple


def summarise_scores(rows: Iterable[RowLike]) -> ExperimentSummary:
    """Summary of an experiment's rows: ``ScoreRow`` or ``(item_id, difficulty, source, scores)``."""
    parsed: list[ScoreRow] = []
    for row in rows:
        if isinstance(row, ScoreRow):
            parsed.append(row)
        else:
            item_id, difficulty, source, scores = row[:4]
            parsed.append(ScoreRow(item_id=item_id, difficulty=difficulty, source=source, scores=dict(scores)))
    for row in parsed:
        bad = {name: value for name, value in row.scores.items() if not (0.0 <= value <= 1.0)}
        if bad:
            raise ValueError(f"item {row.item_id}: scores outside 0..1 (or NaN): {bad}")
    scored = [r for r in parsed if r.scores]
    per_metric = _metric_means(scored)
    by_band: dict[str, list[ScoreRow]] = defaultdict(list)
    by_source: dict[str, list[ScoreRow]] = defaultdict(list)
    for row in scored:
        by_band[difficulty_band(row.difficulty)].append(row)
        by_source[row.source].append(row)
    return ExperimentSummary(
        items_scored=len(scored),
        items_without_scores=[r.item_id for r in parsed if not r.scores],
        overall_mean=_mean([r.mean for r in scored]),  # type: ignore[misc]
        metric_means={name: sum(v) / len(v) for name, v in sorted(per_metric.items())},
        metric_counts={name: len(v) for name, v in sorted(per_metric.items())},
        by_band={f"{lo}-{hi}": _group(by_band[f"{lo}-{hi}"]) for lo, hi in DIFFICULTY_BANDS if by_band[f"{lo}-{hi}"]},
        by_source={source: _group(group) for source, group in sorted(by_source.items())},
        input_tokens=sum(r.input_tokens for r in parsed),
        output_tokens=sum(r.output_tokens for r in parsed),
    )


def regression_verdict(
    current_mean: float | None, previous_mean: float | None, threshold: float, tolerance: float
) -> tuple[bool, str]:
    """Pass unless the mean is under ``threshold`` or fell more than ``tolerance`` since last time.

    Both boundaries pass (a mean equal to the threshold, a drop equal to the tolerance). No
    previous materialisation means only the threshold applies; no current mean (nothing scored)
    fails, since an experiment that measured nothing cannot vouch for the prompt.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be within 0..1, got {threshold}")
    if tolerance < 0 or math.isnan(tolerance):
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if current_mean is None or math.isnan(current_mean):
        return False, "no mean score: the experiment scored no item"
    if current_mean < threshold - _EPSILON:
        return False, f"mean score {current_mean:.4f} is under the threshold {threshold:.4f}"
    if previous_mean is not None and not math.isnan(previous_mean):
        drop = previous_mean - current_mean
        if drop > tolerance + _EPSILON:
            return False, (
                f"mean score {current_mean:.4f} dropped {drop:.4f} from the previous {previous_mean:.4f}, "
                f"more than the tolerance {tolerance:.4f}"
            )
        return True, (
            f"mean score {current_mean:.4f} >= threshold {threshold:.4f}; change from the previous "
            f"{previous_mean:.4f} is {-drop:+.4f} (tolerance {tolerance:.4f})"
        )
    return True, f"mean score {current_mean:.4f} >= threshold {threshold:.4f} (no previous materialisation)"


class ComparisonRow(BaseModel):
    measure: str
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


def comparison_rows(a: ExperimentSummary, b: ExperimentSummary) -> list[ComparisonRow]:
    """The measures of two summaries side by side: overall, metrics, bands, sources, items."""
    rows = [ComparisonRow(measure="mean (overall)", a=a.overall_mean, b=b.overall_mean)]
    for name in sorted(set(a.metric_means) | set(b.metric_means)):
        rows.append(ComparisonRow(measure=name, a=a.metric_means.get(name), b=b.metric_means.get(name)))
    for low, high in DIFFICULTY_BANDS:
        key = f"{low}-{high}"
        ga, gb = a.by_band.get(key), b.by_band.get(key)
        if ga or gb:
            rows.append(ComparisonRow(measure=f"difficulty {key}", a=ga and ga.mean, b=gb and gb.mean))
    for source in sorted(set(a.by_source) | set(b.by_source)):
        ga, gb = a.by_source.get(source), b.by_source.get(source)
        rows.append(ComparisonRow(measure=f"source {source}", a=ga and ga.mean, b=gb and gb.mean))
    rows.append(ComparisonRow(measure="items scored", a=a.items_scored, b=b.items_scored))
    return rows


def _cell(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def compare(a: ExperimentSummary, b: ExperimentSummary, label_a: str = "current", label_b: str = "candidate") -> str:
    """Markdown table of two experiments on the same dataset, for ``MetadataValue.md``."""
    lines = [f"| measure | {label_a} | {label_b} | Δ ({label_b} − {label_a}) |", "|---|---:|---:|---:|"]
    for row in comparison_rows(a, b):
        if row.measure == "items scored":
            a_cell = "–" if row.a is None else str(int(row.a))
            b_cell = "–" if row.b is None else str(int(row.b))
            delta = "–" if row.delta is None else f"{int(row.delta):+d}"
        else:
            a_cell, b_cell, delta = _cell(row.a), _cell(row.b), _cell(row.delta, signed=True)
        lines.append(f"| {row.measure} | {a_cell} | {b_cell} | {delta} |")
    return "\n".join(lines)


# --- running an experiment without a server --------------------------------------------------------

ExperimentTask = Callable[[DatasetItem], dict[str, Any]]


class ExperimentRecord(BaseModel):
    """One experiment over a dataset: where it is recorded and each item's scores."""

    experiment_id: str
    experiment_name: str
    location: str
    rows: list[ScoreRow]


def score_row(item: DatasetItem, output: dict[str, Any], scores: dict[str, float]) -> ScoreRow:
    """One item's row: its scores and the tokens its task output says it cost."""
    usage = output.get("usage") or {}
    return ScoreRow(
        item_id=item.id,
        difficulty=item.difficulty,
        source=item.source,
        scores=scores,
        input_tokens=int(usage.get("input_tokens", 0)),
        output_tokens=int(usage.get("output_tokens", 0)),
    )


def evaluate_locally(items: list[DatasetItem], task: ExperimentTask, threads: int) -> list[ScoreRow]:
    """The experiment without a server: the same task and the same metrics as ``opik.evaluate`` runs."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outputs = list(pool.map(task, items))
    return [
        score_row(item, output, score_values(score_challenge(output, item))) for item, output in zip(items, outputs)
    ]
