"""The experiment metrics as Opik ``BaseMetric``s, for ``opik.evaluate``.

``core.metrics`` holds the metrics themselves and knows nothing of Opik; this boundary wraps each
one so that the Opik evaluation engine runs the very same scoring code as the local experiment.
Wrappers are built with ``track=False``: scoring never opens a trace of its own.
"""

from __future__ import annotations

from typing import Any

from opik.evaluation.metrics.base_metric import BaseMetric
from opik.evaluation.metrics.score_result import ScoreResult

from skill_pipeline.core.metrics import ChallengeMetric, MetricResult, all_metrics


class OpikMetric(BaseMetric):
    """One ``core.metrics`` metric behind Opik's interface; not-applicable stays ``[]``."""

    def __init__(self, metric: ChallengeMetric) -> None:
        super().__init__(name=metric.name, track=False)
        self.metric = metric

    def score(self, **inputs: Any) -> ScoreResult | list[ScoreResult]:
        result = self.metric.score(**inputs)
        if isinstance(result, list):
            return [_to_opik(one) for one in result]
        return _to_opik(result)


def _to_opik(result: MetricResult) -> ScoreResult:
    return ScoreResult(
        name=result.name, value=result.value, reason=result.reason, scoring_failed=result.scoring_failed
    )


def opik_metrics() -> list[BaseMetric]:
    """Fresh wrappers of every metric, for ``opik.evaluate(scoring_metrics=...)``."""
    return [OpikMetric(metric) for metric in all_metrics()]
