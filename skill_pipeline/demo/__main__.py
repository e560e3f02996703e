"""``make demo``: the whole pipeline on the embedded defaults, on a persistent Dagster instance.

Every run is created from the workspace's code location (``demo.launch``): listed under its job and on
the timeline in ``make dev``; the sensor's cursor and run keys are stored, so ``make dev`` repeats nothing.

1. one tick of the skill sensor (on a fresh instance: the startup check that backfills every skill);
2. the sensor's runs: scenarios, candidates and dataset per skill;
3. promotion rounds until no eligible challenge is left to promote (at most max_promotions per
   skill per round, so the real-world share rises step by step);
4. one prompt comparison (v0-terse against v1 on every skill, then pooled) and the all-skills overview;
5. a table per skill. Run it again: nothing is regenerated, written or deleted.

Everything lands in ``$DAGSTER_HOME``, so ``make dev`` shows these runs, partitions and checks.
"""

from __future__ import annotations

import sys

from skill_pipeline.demo.flow import run_demo
from skill_pipeline.demo.launch import demo_instance


def main() -> int:
    instance = demo_instance()
    report = run_demo(instance, echo=print)
    print()
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
