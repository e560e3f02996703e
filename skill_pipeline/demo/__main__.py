"""``make demo``: the whole pipeline on the embedded defaults, on a persistent Dagster instance.

1. one tick of the skill sensor (on a fresh instance: the startup check that backfills every skill);
2. the sensor's runs: scenarios, candidates and dataset per skill;
3. promotion rounds until no eligible challenge is left to promote (at most max_promotions per
   skill per round, so the real-world share rises step by step);
4. a table per skill. Run it again: nothing is regenerated, written or deleted.

Everything lands in ``$DAGSTER_HOME``, so ``make dev`` shows these runs, partitions and checks.
"""

from __future__ import annotations

import sys

import dagster as dg

from skill_pipeline.demo.flow import run_demo


def main() -> int:
    instance = dg.DagsterInstance.get()
    report = run_demo(instance, echo=print)
    print()
    print(report.table())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
