"""Fill the embedded stores with the demo app: ``python -m skill_pipeline.demo.stores``.

The stores themselves start empty (a production-shaped resource never writes demo data); the
demo, ``make dev`` and the tests seed them here, explicitly. Seeding is idempotent: rows already
there are left as they are, so seeding twice, or after the pipeline ran, changes nothing.
"""

from __future__ import annotations

import sys
from contextlib import closing
from pathlib import Path

from skill_pipeline.demo.seed import demo_judge_scores, seed_app_database
from skill_pipeline.resources.dataset_store_local import LocalDatasetStore
from skill_pipeline.resources.skill_store_sqlite import SqliteSkillStore, connect


def seed_demo_stores(skill_store: SqliteSkillStore, dataset_store: LocalDatasetStore) -> None:
    """The demo's skills, challenges and answers, and the judge's scores of its challenges."""
    with closing(connect(Path(skill_store.path))) as conn:
        seed_app_database(conn)
    known = dataset_store.judge_scores(demo_judge_scores())
    missing = {cid: value for cid, value in demo_judge_scores().items() if cid not in known}
    if missing:
        dataset_store.record_judge_scores(missing)


def seed_local_home(home: Path) -> tuple[SqliteSkillStore, LocalDatasetStore]:
    """Seed the embedded stores of a local data folder (``SKILL_PIPELINE_HOME``) and return them."""
    skill_store = SqliteSkillStore(path=str(home / "app.sqlite"))
    dataset_store = LocalDatasetStore(path=str(home / "datasets.sqlite"))
    seed_demo_stores(skill_store, dataset_store)
    return skill_store, dataset_store


def main() -> int:
    from skill_pipeline.resources import local_home

    home = local_home()
    skill_store, _ = seed_local_home(home)
    print(f"demo app data in {home}: {len(skill_store.list_skills(active_only=False))} skills")
    return 0


if __name__ == "__main__":
    sys.exit(main())
