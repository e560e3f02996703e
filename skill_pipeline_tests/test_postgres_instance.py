"""The production instance config (``deploy/dagster.yaml``) on a real PostgreSQL server.

The server is started by the test itself (``postgres_server.running_postgres``: ``initdb`` into a
temporary folder, a free loopback port). The instance is built from the production file as it is,
with its connection taken from the ``DAGSTER_PG_*`` variables, so what is checked here is what a
deployment loads: the sensor's partitions, the runs, the materialisations, the asset checks and the
concurrency pool all end up in Postgres tables, read back both through the instance and with SQL.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest
import yaml
from dagster._core.instance.config import PoolGranularity

from skill_pipeline.demo.seed import DEMO_SKILLS, demo_skill_id
from skill_pipeline.models import dataset_name
from skill_pipeline_tests.dagster_helpers import check_results, local_resources, materialize_skill, metadata, tick
from skill_pipeline_tests import postgres_server
from skill_pipeline_tests.postgres_server import PostgresServer, PostgresUnavailable, running_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PRODUCTION_YAML = Path(__file__).resolve().parents[1] / "deploy" / "dagster.yaml"
ACTIVE = sorted(demo_skill_id(name) for name, _, active in DEMO_SKILLS if active)
SQL = demo_skill_id("SQL Querying")
NO_PROMOTION = {"ops": {"skill_dataset": {"config": {"max_promotions": 0}}}}
LLM_POOL = "anthropic"


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with running_postgres() as server:
        yield server


@pytest.fixture
def dagster_home(tmp_path, postgres, monkeypatch) -> Path:
    """A DAGSTER_HOME holding the production dagster.yaml, its variables pointing at the test server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    for name, value in postgres.dagster_env().items():
        monkeypatch.setenv(name, value)
    return home


@pytest.fixture
def instance(dagster_home) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        yield instance


def sql(server: PostgresServer, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(server.dsn()) as conn:
        return conn.execute(query, params).fetchall()


def test_missing_postgresql_fails_and_says_how_to_install_it(monkeypatch, tmp_path):
    """No skip: a machine without the server must fail loudly (make test installs it)."""
    monkeypatch.setattr(postgres_server, "BIN_GLOBS", (str(tmp_path / "nowhere" / "*" / "bin"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PostgresUnavailable, match="scripts/ensure_postgres.sh"):
        with running_postgres():
            pass


def test_production_yaml_keeps_secrets_in_the_environment():
    config = yaml.safe_load(PRODUCTION_YAML.read_text())
    connection = config["storage"]["postgres"]["postgres_db"]
    assert {key: value for key, value in connection.items() if key != "scheme"} == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    # SQLAlchemy 2.1 would pick psycopg 3 for a bare postgresql:// URL, on which dagster-postgres
    # 0.29 fails at its first event; see the comment in the file.
    assert connection["scheme"] == "postgresql+psycopg2"


def test_production_yaml_names_the_missing_variable(dagster_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(dg.DagsterInvalidConfigError, match="DAGSTER_PG_HOST"):
        dg.DagsterInstance.from_config(str(dagster_home))


def test_production_instance_uses_postgres_the_run_queue_and_llm_limits(instance):
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.run_coordinator, QueuedRunCoordinator)

    concurrency = instance.get_concurrency_config()
    limits = {(limit["key"], str(limit.get("value"))): limit["limit"] for limit in concurrency.run_queue_config.tag_concurrency_limits}
    assert limits[("skill_pipeline/llm", "anthropic")] >= 1
    assert concurrency.run_queue_config.max_concurrent_runs >= limits[("skill_pipeline/llm", "anthropic")]
    assert concurrency.pool_config.default_pool_limit >= 1
    assert concurrency.pool_config.pool_granularity == PoolGranularity.OP


def test_sensor_and_partitioned_materialisation_land_in_postgres(instance, postgres, tmp_path):
    resources = local_resources(tmp_path)

    # The sensor: partitions for the active demo skills, stored by the Postgres event log storage.
    first = tick(instance, resources, cursor=None)
    assert sorted(r.partition_key for r in first.run_requests) == ACTIVE
    assert sorted(instance.get_dynamic_partitions("skills")) == ACTIVE
    assert sorted(row[0] for row in sql(postgres, "select partition from dynamic_partitions where partitions_def_name = %s", "skills")) == ACTIVE
    again = tick(instance, resources, cursor=first.cursor)
    assert again.run_requests == [] and again.dynamic_partitions_requests == []

    # One skill's partition: scenarios, candidates, dataset and the checks.
    assert LLM_POOL not in instance.event_log_storage.get_concurrency_keys()
    result = materialize_skill(instance, resources, SQL, run_config=NO_PROMOTION)
    assert result.success
    assert metadata(result, "skill_dataset")["item_count"] == 50
    assert len(resources["dataset_store"].read_items(dataset_name(SQL))) == 50
    checks = check_results(result)
    assert checks and all(checks.values()), checks

    # Read back through the instance ...
    record = instance.get_run_record_by_id(result.run_id)
    assert record is not None and record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
    assert record.dagster_run.tags["dagster/partition"] == SQL
    for asset in ("synthetic_scenarios", "gold_standard_candidates", "skill_dataset"):
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None and event.run_id == result.run_id
        assert event.dagster_event.partition == SQL
    # ... and straight from the tables.
    assert sql(postgres, "select status, partition from runs where run_id = %s", result.run_id) == [("SUCCESS", SQL)]
    materialised = sql(
        postgres,
        "select asset_key, partition from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
        result.run_id,
    )
    assert sorted(materialised) == [
        ('["gold_standard_candidates"]', SQL),
        ('["skill_dataset"]', SQL),
        ('["synthetic_scenarios"]', SQL),
    ]
    check_rows = sql(postgres, "select check_name, execution_status from asset_check_executions where run_id = %s", result.run_id)
    assert len(check_rows) == len(checks) and {status for _, status in check_rows} == {"SUCCEEDED"}

    # synthetic_scenarios is in the "anthropic" pool: its step created the pool in Postgres with the
    # default limit of deploy/dagster.yaml, took a slot from it, and gave the slot back.
    default_limit = instance.get_concurrency_config().pool_config.default_pool_limit
    info = instance.event_log_storage.get_concurrency_info(LLM_POOL)
    assert (info.slot_count, info.active_slot_count, info.pending_step_count) == (default_limit, 0, 0)
    assert sql(postgres, 'select "limit" from concurrency_limits where concurrency_key = %s', LLM_POOL) == [(default_limit,)]
    assert sql(postgres, "select count(*) from concurrency_slots where concurrency_key = %s and run_id is not null", LLM_POOL) == [(0,)]
