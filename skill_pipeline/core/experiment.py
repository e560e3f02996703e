"""Aggregation of experiment scores, the threshold verdict, and the long frame of a paired comparison.

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

import pandas as pd
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
    llm_calls: int = 0

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
    llm_calls: int = 0

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
        out["llm_calls"] = self.llm_calls
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
        llm_calls=sum(r.llm_calls for r in parsed),
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


def comparison_frame(a: ExperimentSummary, b: ExperimentSummary, label_a: str, label_b: str) -> pd.DataFrame:
    """The measures of two summaries side by side, for a typed table in the UI (``assets.metadata``)."""
    rows = [
        {"measure": r.measure, label_a: r.a, label_b: r.b, "delta": r.delta}
        for r in comparison_rows(a, b)
    ]
    return pd.DataFrame(rows, columns=["measure", label_a, label_b, "delta"]).astype(
        {label_a: "float64", label_b: "float64", "delta": "float64"}
    )


# --- the long frame of ``core.comparison`` and its stored form -------------------------------------

FRAME_COLUMNS = ("skill_id", "item_id", "version", "trial", "metric", "score")
PAYLOAD_FORMAT = "paired-scores/1"


def score_frame(rows: Iterable[ScoreRow], *, skill_id: str, version: str, trial: int = 0) -> pd.DataFrame:
    """One experiment's rows as the long frame ``core.comparison`` reads: a row per (item, metric)."""
    records = [
        (skill_id, row.item_id, version, trial, metric, float(value))
        for row in rows
        for metric, value in sorted(row.scores.items())
    ]
    return pd.DataFrame(records, columns=list(FRAME_COLUMNS))


def frame_payload(frame: pd.DataFrame) -> dict[str, Any]:
    """The long frame in a compact JSON form (ids, metrics and versions listed once; scores to 4
    places), small enough for asset metadata: the per-skill record the pooled experiment and the
    regression check read back from the instance's event log, not from a run's pickle."""
    codes = {c: pd.factorize(frame[c], sort=True) for c in ("skill_id", "item_id", "version", "metric")}
    rows = zip(
        codes["skill_id"][0].tolist(), codes["item_id"][0].tolist(), codes["version"][0].tolist(),
        frame["trial"].astype(int).tolist(), codes["metric"][0].tolist(), frame["score"].round(4).tolist(),
    )
    return {
        "format": PAYLOAD_FORMAT,
        **{f"{c}s": [str(v) for v in codes[c][1]] for c in ("skill_id", "item_id", "version", "metric")},
        "rows": [list(r) for r in rows],
    }


def payload_frame(payload: dict[str, Any]) -> pd.DataFrame:
    """Inverse of ``frame_payload``; ``ValueError`` on anything else."""
    if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
        raise ValueError(f"not a {PAYLOAD_FORMAT} payload")
    raw = pd.DataFrame(payload["rows"], columns=["s", "i", "v", "trial", "m", "score"])
    lookup = {c: payload[f"{c}s"] for c in ("skill_id", "item_id", "version", "metric")}
    return pd.DataFrame({
        "skill_id": [lookup["skill_id"][k] for k in raw["s"]],
        "item_id": [lookup["item_id"][k] for k in raw["i"]],
        "version": [lookup["version"][k] for k in raw["v"]],
        "trial": raw["trial"].astype(int),
        "metric": [lookup["metric"][k] for k in raw["m"]],
        "score": raw["score"].astype(float),
    }, columns=list(FRAME_COLUMNS))


def item_differences(frame: pd.DataFrame, baseline: str, candidate: str) -> pd.DataFrame:
    """Per item: its mean over metrics (trials averaged first) under each version and the difference."""
    per_metric = frame.groupby(["skill_id", "item_id", "version", "metric"])["score"].mean()
    per_item = per_metric.groupby(["skill_id", "item_id", "version"]).mean().unstack("version")
    out = pd.DataFrame({
        "skill_id": per_item.index.get_level_values("skill_id"),
        "item_id": per_item.index.get_level_values("item_id"),
        "mean_baseline": per_item.get(baseline, pd.Series(index=per_item.index, dtype=float)).to_numpy(),
        "mean_candidate": per_item.get(candidate, pd.Series(index=per_item.index, dtype=float)).to_numpy(),
    })
    out["diff"] = out["mean_candidate"] - out["mean_baseline"]
    return out.sort_values(["diff", "item_id"]).reset_index(drop=True)


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
        llm_calls=int(output.get("llm_calls") or 0),
    )


def evaluate_locally(items: list[DatasetItem], task: ExperimentTask, threads: int) -> list[ScoreRow]:
    """The experiment without a server: the same task and the same metrics as ``opik.evaluate`` runs."""
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outputs = list(pool.map(task, items))
    return [
        score_row(item, output, score_values(score_challenge(output, item))) for item, output in zip(items, outputs)
    ]
